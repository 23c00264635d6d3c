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

/// Most threads in Tokio's blocking pool, where store calls run. Only
/// as many as the store has connections (SQLite: one writer, two readers)
/// work at once; the rest would wait on a connection's lock. With Tokio's
/// default of 512, a burst of device calls that all write (a rollout's
/// first deliveries) started hundreds of threads to wait there, which
/// made a 1,000-device rollout several times slower (BENCHMARKS.md);
/// beyond this many, calls wait in Tokio's queue instead.
const MAX_BLOCKING_THREADS: usize = 64;

fn serve(config: fleetd::config::Config) -> anyhow::Result<()> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .max_blocking_threads(MAX_BLOCKING_THREADS)
        .build()?
        .block_on(fleetd::server::run(config, fleetd::shutdown::signal()))
}
