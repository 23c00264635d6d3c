//! The command line. Every flag maps onto a [`Config`] field; nothing else
//! reads the environment or the arguments.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::config::Config;
use crate::logging::LogFormat;
use crate::store::DatabaseUrl;

#[derive(Debug, Parser)]
#[command(name = "fleetd", version, about = "The Fleetform fleet backend")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,

    /// Log line format on stderr. Verbosity comes from FLEETD_LOG or
    /// RUST_LOG (e.g. `info`, `fleetd=debug,tower_http=debug`).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, env = "FLEETD_LOG_FORMAT")]
    pub log_format: LogFormat,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the admin API until SIGINT or SIGTERM.
    Serve(ServeArgs),
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address of the admin API. Port 0 picks a free port; the address
    /// actually bound is written to <data-dir>/admin.addr.
    #[arg(long, default_value = Config::DEFAULT_LISTEN, env = "FLEETD_LISTEN")]
    pub listen: String,

    /// Directory for the embedded database, the admin token and admin.addr.
    #[arg(long, default_value = "./fleetd-data", env = "FLEETD_DATA_DIR")]
    pub data_dir: PathBuf,

    /// Admin bearer token. Without it fleetd reuses <data-dir>/admin-token,
    /// creating a random one on first start.
    #[arg(long, env = "FLEETD_TOKEN", hide_env_values = true)]
    pub token: Option<String>,

    /// Where state lives: sqlite:PATH (default: sqlite file in the data
    /// directory), or postgres://USER:PASSWORD@HOST:PORT/DATABASE for
    /// a PostgreSQL database that several fleetd replicas can share.
    #[arg(long, env = "FLEETD_DATABASE_URL", hide_env_values = true, value_parser = DatabaseUrl::parse)]
    pub database_url: Option<DatabaseUrl>,

    /// Key-encryption key for CA private keys at rest: 32 raw bytes or 64
    /// hex digits. Default <data-dir>/master.key, created on first start
    /// (mode 0600). Back it up apart from the database; replicas sharing a
    /// database must share it.
    #[arg(long, env = "FLEETD_MASTER_KEY_FILE")]
    pub master_key_file: Option<PathBuf>,

    /// Address of the device API (HTTPS, client certificates required).
    /// Default: the --listen host with the next port (127.0.0.1:8471), or
    /// port 0 when --listen uses port 0. The address bound is written to
    /// <data-dir>/device.addr, the CA devices pin to
    /// <data-dir>/device-server-ca.pem.
    #[arg(long, env = "FLEETD_DEVICE_LISTEN")]
    pub device_listen: Option<String>,

    /// A host name or IP address devices use to reach the device API, put
    /// in its server certificate (repeatable; default localhost,
    /// 127.0.0.1, ::1).
    #[arg(
        long = "device-server-name",
        env = "FLEETD_DEVICE_SERVER_NAMES",
        value_delimiter = ','
    )]
    pub device_server_names: Vec<String>,

    /// Time between two passes of the rollout engine, e.g. `1s`, `250ms`.
    #[arg(long, default_value = "1s", env = "FLEETD_ENGINE_INTERVAL", value_parser = crate::engine::parse_interval)]
    pub engine_interval: std::time::Duration,
}

impl ServeArgs {
    pub fn into_config(self) -> Config {
        Config {
            listen: self.listen,
            data_dir: self.data_dir,
            admin_token: self.token,
            database_url: self.database_url,
            master_key_file: self.master_key_file,
            device_listen: self.device_listen,
            device_server_names: if self.device_server_names.is_empty() {
                Config::default_device_server_names()
            } else {
                self.device_server_names
            },
            engine_interval: self.engine_interval,
            ..Config::new(PathBuf::new())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cli_is_well_formed() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    #[test]
    fn serve_defaults() {
        let cli = Cli::try_parse_from(["fleetd", "serve"]).unwrap();
        let Command::Serve(args) = cli.command;
        let config = args.into_config();
        assert_eq!(config.listen, "127.0.0.1:8470");
        assert_eq!(config.device_listen(), "127.0.0.1:8471");
        assert_eq!(config.data_dir, PathBuf::from("./fleetd-data"));
        assert_eq!(
            config.database_url(),
            DatabaseUrl::default_for(&PathBuf::from("./fleetd-data"))
        );
    }

    #[test]
    fn rejects_unknown_database_schemes() {
        let err = Cli::try_parse_from(["fleetd", "serve", "--database-url", "mysql://x"])
            .unwrap_err()
            .to_string();
        assert!(err.contains("unsupported database URL scheme"), "{err}");
    }
}
