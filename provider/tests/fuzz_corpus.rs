//! Replays the committed fuzz corpora and regressions (`fuzz/corpus/<target>`,
//! `fuzz/regressions/<target>`) through the same entry points the libFuzzer
//! targets call, so every input a fuzzer once found interesting — and every
//! crash it found — is checked by `make test` without libFuzzer.

#[path = "../../fuzz/replay.rs"]
mod replay;
use replay::replay;

#[test]
fn dynamic_value_corpus() {
    replay(
        "dynamic_value",
        terraform_provider_fleet::tfplugin::value::fuzz_decode,
    );
}
