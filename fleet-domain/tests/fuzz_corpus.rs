//! Replays the committed fuzz corpora and regressions (`fuzz/corpus/<target>`,
//! `fuzz/regressions/<target>`) through the same entry points the libFuzzer
//! targets call, so every input a fuzzer once found interesting — and every
//! crash it found — is checked by `make test` without libFuzzer.

#[path = "../../fuzz/replay.rs"]
mod replay;
use replay::replay;

#[test]
fn query_parser_corpus() {
    replay("query_parser", fleet_domain::query::fuzz_parse);
}

#[test]
fn policy_statements_corpus() {
    replay("policy_statements", fleet_domain::policy::fuzz_statements);
}

#[test]
fn csr_pem_corpus() {
    replay("csr_pem", fleet_domain::pki::fuzz_pem);
}
