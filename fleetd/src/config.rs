//! Everything a running fleetd needs to know, independent of where it came
//! from (command line, environment, a test).

use std::path::PathBuf;
use std::time::Duration;

use crate::store::DatabaseUrl;

#[derive(Debug, Clone)]
pub struct Config {
    /// `host:port` of the admin API; port 0 picks a free one.
    pub listen: String,
    /// Holds the embedded database, `admin-token` and `admin.addr`.
    pub data_dir: PathBuf,
    /// Admin bearer token; `None` means use or create `<data_dir>/admin-token`.
    pub admin_token: Option<String>,
    /// `None` means the SQLite file in `data_dir`.
    pub database_url: Option<DatabaseUrl>,
    /// After a shutdown signal, how long in-flight requests get to finish
    /// before fleetd stops anyway.
    pub shutdown_grace: Duration,
    /// The key-encryption key for CA private keys (see
    /// [`crate::keystore`]). `None` means `<data_dir>/master.key`, created
    /// on first start; a configured file must exist.
    pub master_key_file: Option<PathBuf>,
    /// `host:port` of the device API (mutual TLS). `None` means the admin
    /// address's host with the next port (see
    /// [`crate::device::default_listen`]): `127.0.0.1:8471` by default,
    /// port 0 when the admin API uses port 0.
    pub device_listen: Option<String>,
    /// Host names / IP addresses the device API's server certificate
    /// names (the bound address is added when it is a specific one).
    pub device_server_names: Vec<String>,
    /// How old the device API's set of trusted CAs may get before a new
    /// connection reloads it even though the store reports no change (CAs
    /// whose validity starts or ends). Changes are seen at once anyway.
    pub device_trust_refresh: Duration,
    /// Time between two passes of the rollout engine.
    pub engine_interval: Duration,
    /// Whether creating or changing a rollout through the admin API runs an
    /// engine pass at once (true) or leaves it to the next interval.
    pub engine_wake_on_change: bool,
}

impl Config {
    pub const DEFAULT_LISTEN: &'static str = "127.0.0.1:8470";

    /// Defaults for everything but the data directory.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Config {
            listen: Self::DEFAULT_LISTEN.to_owned(),
            data_dir: data_dir.into(),
            admin_token: None,
            database_url: None,
            shutdown_grace: Duration::from_secs(10),
            master_key_file: None,
            device_listen: None,
            device_server_names: Self::default_device_server_names(),
            device_trust_refresh: crate::device::trust::DEFAULT_REFRESH,
            engine_interval: crate::engine::DEFAULT_INTERVAL,
            engine_wake_on_change: true,
        }
    }

    pub fn default_device_server_names() -> Vec<String> {
        ["localhost", "127.0.0.1", "::1"]
            .map(str::to_owned)
            .to_vec()
    }

    /// The device API address, with the default applied.
    pub fn device_listen(&self) -> String {
        self.device_listen
            .clone()
            .unwrap_or_else(|| crate::device::default_listen(&self.listen))
    }

    /// The master key file, with the default applied.
    pub fn master_key_file(&self) -> PathBuf {
        self.master_key_file
            .clone()
            .unwrap_or_else(|| crate::keystore::default_path(&self.data_dir))
    }

    /// The store to open, with the default applied.
    pub fn database_url(&self) -> DatabaseUrl {
        self.database_url
            .clone()
            .unwrap_or_else(|| DatabaseUrl::default_for(&self.data_dir))
    }
}
