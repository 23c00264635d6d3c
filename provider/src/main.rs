//! terraform-provider-fleet: started by Terraform, never by hand (except
//! with `-debug`, which serves for a debugger and prints the
//! `TF_REATTACH_PROVIDERS` value to use).

use std::process::ExitCode;

use terraform_provider_fleet::provider::FleetProvider;
use terraform_provider_fleet::tfplugin::plugin_server::{self, ServeOpts};
use terraform_provider_fleet::tfplugin::server::ProviderService;

fn main() -> ExitCode {
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
