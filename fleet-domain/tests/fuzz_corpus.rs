//! Replays the committed fuzz corpora and regressions (`fuzz/corpus/<target>`,
//! `fuzz/regressions/<target>`) through the same entry points the libFuzzer
//! targets call, so every input a fuzzer once found interesting — and every
//! crash it found — is checked by `make test` without libFuzzer.

use std::path::PathBuf;

fn replay(target: &str, run: fn(&[u8])) {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
    let mut inputs = 0;
    for dir in ["corpus", "regressions"] {
        let Ok(entries) = std::fs::read_dir(root.join(dir).join(target)) else {
            continue;
        };
        for entry in entries {
            let path = entry.expect("readable corpus dir").path();
            if path.file_name().is_some_and(|n| n == ".gitkeep") {
                continue;
            }
            let data = std::fs::read(&path).expect("readable corpus file");
            let outcome = std::panic::catch_unwind(|| run(&data));
            assert!(outcome.is_ok(), "{} fails its invariants", path.display());
            inputs += 1;
        }
    }
    assert!(
        inputs >= 3,
        "the {target} corpus is missing ({inputs} inputs)"
    );
}

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
