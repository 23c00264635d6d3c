//! The admin bearer token.
//!
//! An operator can pass one (`--token` / `FLEETD_TOKEN`); otherwise fleetd
//! keeps one in `<data-dir>/admin-token` (mode 0600), generating it on
//! first start. That makes `fleetd serve` secure by default with zero
//! configuration, and the token survives restarts so Terraform
//! configurations and CI secrets keep working.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};

/// File name of the generated token inside the data directory.
pub const TOKEN_FILE: &str = "admin-token";

/// Where the token in use came from; logged at startup (the token never is).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenOrigin {
    /// `--token` / `FLEETD_TOKEN`.
    Configured,
    /// An existing `admin-token` file.
    File(PathBuf),
    /// A token generated now and saved to this file.
    Generated(PathBuf),
}

/// Returns the token to require and where it came from.
pub fn resolve(
    configured: Option<String>,
    data_dir: &Path,
) -> anyhow::Result<(String, TokenOrigin)> {
    if let Some(token) = configured {
        check(&token).context("invalid --token / FLEETD_TOKEN")?;
        return Ok((token, TokenOrigin::Configured));
    }
    let path = data_dir.join(TOKEN_FILE);
    let generated = generate();
    let created = crate::atomic_file::create_new(&path, format!("{generated}\n").as_bytes(), 0o600)
        .with_context(|| format!("creating admin token file {}", path.display()))?;
    if created {
        return Ok((generated, TokenOrigin::Generated(path)));
    }
    let token = read(&path)?;
    Ok((token, TokenOrigin::File(path)))
}

fn read(path: &Path) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading admin token file {}", path.display()))?;
    let token = text.trim().to_owned();
    check(&token).with_context(|| {
        format!(
            "admin token file {} is unusable; fix it or delete it to generate a new token",
            path.display()
        )
    })?;
    warn_if_readable_by_others(path);
    Ok(token)
}

/// 32 random bytes from the OS-seeded CSPRNG, hex-encoded.
fn generate() -> String {
    hex::encode(rand::random::<[u8; 32]>())
}

/// Tokens travel in an HTTP header: printable ASCII, no spaces.
fn check(token: &str) -> anyhow::Result<()> {
    if token.is_empty() {
        bail!("the admin token is empty");
    }
    if !token.bytes().all(|b| b.is_ascii_graphic()) {
        bail!("the admin token must be printable ASCII without spaces");
    }
    Ok(())
}

#[cfg(unix)]
fn warn_if_readable_by_others(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = std::fs::metadata(path) {
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            tracing::warn!(
                path = %path.display(),
                mode = format!("{mode:o}"),
                "admin token file is readable by other users; chmod 600 it"
            );
        }
    }
}

#[cfg(not(unix))]
fn warn_if_readable_by_others(_path: &Path) {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generates_once_then_reuses() {
        let dir = tempfile::tempdir().unwrap();
        let (first, origin) = resolve(None, dir.path()).unwrap();
        assert_eq!(first.len(), 64);
        assert_eq!(origin, TokenOrigin::Generated(dir.path().join(TOKEN_FILE)));
        let (second, origin) = resolve(None, dir.path()).unwrap();
        assert_eq!(second, first);
        assert_eq!(origin, TokenOrigin::File(dir.path().join(TOKEN_FILE)));
    }

    #[test]
    fn configured_token_wins_and_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let (token, origin) = resolve(Some("s3cret".into()), dir.path()).unwrap();
        assert_eq!(
            (token.as_str(), origin),
            ("s3cret", TokenOrigin::Configured)
        );
        assert!(!dir.path().join(TOKEN_FILE).exists());
        assert!(resolve(Some("has space".into()), dir.path()).is_err());
    }

    #[test]
    fn refuses_an_empty_token_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(TOKEN_FILE), "\n").unwrap();
        let err = format!("{:#}", resolve(None, dir.path()).unwrap_err());
        assert!(err.contains("delete it to generate a new token"), "{err}");
    }
}
