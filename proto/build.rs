//! Compiles every `.proto` file under `proto/` into Rust.
//!
//! Parsing is done by `protox` (pure Rust), so no system `protoc` is needed;
//! its file descriptor set is then handed to `tonic-prost-build`, which
//! writes messages plus gRPC client and server code into `OUT_DIR`.

use std::path::{Path, PathBuf};

fn collect_protos(dir: &Path, root: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            collect_protos(&path, root, out)?;
        } else if path.extension().is_some_and(|e| e == "proto") {
            // protox resolves names relative to the include directory.
            out.push(path.strip_prefix(root).expect("under root").to_path_buf());
        }
    }
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?).join("proto");
    println!("cargo:rerun-if-changed={}", root.display());

    let mut files = Vec::new();
    collect_protos(&root, &root, &mut files)?;
    // Stable order keeps the generated output reproducible.
    files.sort();
    for f in &files {
        println!("cargo:rerun-if-changed={}", root.join(f).display());
    }

    // google/protobuf/*.proto come built into protox.
    let fds = protox::compile(&files, [&root])?;

    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        // Server traits get default bodies answering `Unimplemented`, so an
        // implementation only writes the RPCs it supports.
        .generate_default_stubs(true)
        .compile_fds(fds)?;
    Ok(())
}
