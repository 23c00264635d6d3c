//! The `fleetd` binary: parse the command line, set up logging, run.

use std::process::ExitCode;

use clap::Parser;
use fleetd::cli::{Cli, Command};

/// Device requests allocate and free many small objects across threads;
/// glibc's malloc spent ≈ 17% of a check-in's CPU on them (BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Err(err) = fleetd::logging::init(cli.log_format) {
        eprintln!("fleetd: {err:#}");
        return ExitCode::FAILURE;
    }
    let result = match cli.command {
        Command::Serve(args) => serve(args.into_config()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!("{err:#}");
            ExitCode::FAILURE
        }
    }
}

#[tokio::main]
async fn serve(config: fleetd::config::Config) -> anyhow::Result<()> {
    fleetd::server::run(config, fleetd::shutdown::signal()).await
}
