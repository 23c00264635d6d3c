//! Structured logs to stderr via `tracing`.
//!
//! Verbosity: `FLEETD_LOG` if set, else `RUST_LOG`, else `info`. stdout is
//! left alone so that fleetd's output never mixes with anything a wrapper
//! script prints there.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line, for log shippers.
    Json,
}

/// Installs the global subscriber. Call once, first thing in `main`.
pub fn init(format: LogFormat) -> anyhow::Result<()> {
    let directives = std::env::var("FLEETD_LOG")
        .or_else(|_| std::env::var("RUST_LOG"))
        .unwrap_or_else(|_| "info".to_owned());
    let filter = EnvFilter::try_new(&directives).map_err(|e| {
        anyhow::anyhow!("invalid log filter {directives:?} in FLEETD_LOG/RUST_LOG: {e}")
    })?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colour codes only help a human at a terminal; in a file or a log
        // collector they are noise.
        .with_ansi(std::io::stderr().is_terminal());
    let result = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
    result.map_err(|e| anyhow::anyhow!("installing the log subscriber: {e}"))
}
