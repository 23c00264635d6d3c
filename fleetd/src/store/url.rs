//! `--database-url`: which store to open.

use std::fmt;
use std::path::{Path, PathBuf};

/// Where fleetd keeps its state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DatabaseUrl {
    /// The embedded store: `sqlite:PATH`, `sqlite://PATH` (so
    /// `sqlite:///abs/path.db` is absolute) or `sqlite::memory:`.
    Sqlite(SqliteLocation),
    /// `postgres://…` / `postgresql://…`: recognised so the error can say
    /// it is not supported *yet*, rather than that the URL is nonsense.
    Postgres(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SqliteLocation {
    File(PathBuf),
    /// A private in-memory database, gone when fleetd stops. For tests.
    Memory,
}

/// File name of the embedded database inside the data directory.
pub const DEFAULT_SQLITE_FILE: &str = "fleetd.db";

impl DatabaseUrl {
    /// The default: an SQLite file inside the data directory.
    pub fn default_for(data_dir: &Path) -> Self {
        DatabaseUrl::Sqlite(SqliteLocation::File(data_dir.join(DEFAULT_SQLITE_FILE)))
    }

    pub fn parse(url: &str) -> Result<Self, String> {
        if let Some(rest) = url.strip_prefix("sqlite:") {
            let path = rest.strip_prefix("//").unwrap_or(rest);
            return match path {
                "" => Err(format!(
                    "database URL {url:?} has no path; use sqlite:PATH, e.g. sqlite:///var/lib/fleetd/fleetd.db"
                )),
                ":memory:" => Ok(DatabaseUrl::Sqlite(SqliteLocation::Memory)),
                p => Ok(DatabaseUrl::Sqlite(SqliteLocation::File(PathBuf::from(p)))),
            };
        }
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return Ok(DatabaseUrl::Postgres(url.to_owned()));
        }
        let scheme = url.split_once(':').map_or(url, |(s, _)| s);
        Err(format!(
            "unsupported database URL scheme {scheme:?}: use sqlite:PATH (postgres:// is planned)"
        ))
    }
}

impl std::str::FromStr for DatabaseUrl {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        DatabaseUrl::parse(s)
    }
}

impl fmt::Display for DatabaseUrl {
    /// Safe to log: a PostgreSQL password is replaced by `***`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DatabaseUrl::Sqlite(SqliteLocation::File(p)) => write!(f, "sqlite://{}", p.display()),
            DatabaseUrl::Sqlite(SqliteLocation::Memory) => f.write_str("sqlite::memory:"),
            DatabaseUrl::Postgres(url) => f.write_str(&redact_password(url)),
        }
    }
}

/// `postgres://user:secret@host/db` → `postgres://user:***@host/db`.
pub(crate) fn redact_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let Some((userinfo, host)) = rest.split_once('@') else {
        return url.to_owned();
    };
    match userinfo.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_sqlite_forms() {
        assert_eq!(
            DatabaseUrl::parse("sqlite:///var/lib/f.db").unwrap(),
            DatabaseUrl::Sqlite(SqliteLocation::File("/var/lib/f.db".into()))
        );
        assert_eq!(
            DatabaseUrl::parse("sqlite:data/f.db").unwrap(),
            DatabaseUrl::Sqlite(SqliteLocation::File("data/f.db".into()))
        );
        assert_eq!(
            DatabaseUrl::parse("sqlite::memory:").unwrap(),
            DatabaseUrl::Sqlite(SqliteLocation::Memory)
        );
        assert!(DatabaseUrl::parse("sqlite:").is_err());
    }

    #[test]
    fn recognises_postgres_and_refuses_others() {
        assert!(matches!(
            DatabaseUrl::parse("postgres://u:p@h/db").unwrap(),
            DatabaseUrl::Postgres(_)
        ));
        let err = DatabaseUrl::parse("mysql://h/db").unwrap_err();
        assert!(err.contains("\"mysql\""), "{err}");
    }

    #[test]
    fn display_redacts_passwords() {
        let url = DatabaseUrl::parse("postgresql://fleet:hunter2@db:5432/fleet").unwrap();
        assert_eq!(url.to_string(), "postgresql://fleet:***@db:5432/fleet");
    }
}
