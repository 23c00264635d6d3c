//! Replays a target's committed corpus and regressions
//! (`fuzz/corpus/<target>`, `fuzz/regressions/<target>`) through its entry
//! point. Included by the crates' `tests/fuzz_corpus.rs` (`#[path]`), so
//! that `make test` checks every saved input without libFuzzer.

use std::path::PathBuf;

pub fn replay(target: &str, run: fn(&[u8])) {
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
