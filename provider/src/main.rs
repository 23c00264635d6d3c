//! terraform-provider-fleet: started by Terraform, never by hand (except
//! with `-debug`, which serves for a debugger and prints the
//! `TF_REATTACH_PROVIDERS` value to use).
//!
//! The C `main` is ours (`no_main`): Rust's own start-up (checking that
//! fds 0–2 are open, a stack-overflow handler for the main thread, which
//! reads `/proc/self/maps`) costs ≈ 0.05 ms of every start, a tenth of
//! the start to the handshake line (BENCHMARKS.md), and Terraform starts
//! the provider several times per command. Terraform always connects
//! fds 0–2; a stack overflow still ends the process (SIGSEGV, without
//! std's message); SIGPIPE is ignored as std would.

#![no_main]

use std::process::ExitCode;

use terraform_provider_fleet::provider::FleetProvider;
use terraform_provider_fleet::tfplugin::plugin_server::{self, ServeOpts};
use terraform_provider_fleet::tfplugin::server::ProviderService;

#[no_mangle]
pub extern "C" fn main(_argc: i32, _argv: *const *const u8) -> i32 {
    // SAFETY: sets the disposition of one signal before any other thread
    // exists; no handler code is installed.
    #[cfg(unix)]
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_IGN)
    };
    if run() == ExitCode::SUCCESS {
        0
    } else {
        1
    }
}

fn run() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "-version" || a == "--version") {
        println!("terraform-provider-fleet {}", env!("CARGO_PKG_VERSION"));
        return ExitCode::SUCCESS;
    }
    let debug = args.iter().any(|a| a == "-debug" || a == "--debug");
    plugin_server::init_logging();
    let opts = ServeOpts {
        provider_address: "registry.terraform.io/fleetform/fleet".to_string(),
        debug,
    };
    // The handshake line goes out before the runtime is built: Terraform
    // waits for it at every provider start.
    let started = match plugin_server::start(&opts) {
        Ok(started) => started,
        Err(e) => {
            eprintln!("terraform-provider-fleet: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("terraform-provider-fleet: cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(started.serve(ProviderService::new(FleetProvider))) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("terraform-provider-fleet: {e:#}");
            ExitCode::FAILURE
        }
    }
}
