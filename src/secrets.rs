//! The install's secrets in its data dir: made once from the OS's random source, kept in files
//! only their owner may read, and read back on every start. There are no default secrets: a
//! value left out of the configuration is generated here.

use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use anyhow::Context;

/// The file of a generated webhook secret, in the data dir.
pub const WEBHOOK_SECRET_FILE: &str = "webhook-secret";

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `n` random bytes from the OS, as hex.
pub fn random_hex(n: usize) -> String {
    let mut bytes = vec![0u8; n];
    getrandom::fill(&mut bytes).expect("the OS random source works");
    hex(&bytes)
}

/// Writes `contents` to a new file readable by its owner only; fails if it exists.
pub fn create_private(path: &Path, contents: &str) -> anyhow::Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    file.write_all(contents.as_bytes())?;
    file.sync_all()?;
    Ok(())
}

/// The secret kept in `path`, or a new one made by `make` and kept there; true if new.
pub fn read_or_create(path: &Path, make: impl FnOnce() -> String) -> anyhow::Result<(String, bool)> {
    match std::fs::read_to_string(path) {
        Ok(text) if !text.trim().is_empty() => Ok((text.trim().to_string(), false)),
        Ok(_) => anyhow::bail!("{} is empty", path.display()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let value = make();
            create_private(path, &format!("{value}\n"))?;
            Ok((value, true))
        }
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

/// The webhook secret: the configured one, else the data dir's (generated on first start, as
/// the admin password is). A demo's MockPay needs no secret from anyone; a load generator
/// reads this file (`tigerfans bench --secret-file`).
pub fn webhook_secret(data_dir: &Path, configured: Option<&str>) -> anyhow::Result<String> {
    if let Some(secret) = configured {
        return Ok(secret.to_string());
    }
    let path = data_dir.join(WEBHOOK_SECRET_FILE);
    let (secret, created) = read_or_create(&path, || random_hex(24))?;
    if created {
        tracing::info!(file = %path.display(), "generated the webhook secret (kept in the file)");
    }
    anyhow::ensure!(secret.len() >= 8, "{} holds a webhook secret under 8 bytes", path.display());
    Ok(secret)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_missing_webhook_secret_is_generated_once_and_kept_private() {
        let dir = std::env::temp_dir().join(format!("tigerfans-secrets-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let first = webhook_secret(&dir, None).unwrap();
        assert_eq!(first.len(), 48);
        assert_ne!(first, "mockpay-demo-secret");
        assert_eq!(webhook_secret(&dir, None).unwrap(), first, "kept across restarts");
        let mode = std::fs::metadata(dir.join(WEBHOOK_SECRET_FILE)).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(webhook_secret(&dir, Some("configured-secret")).unwrap(), "configured-secret");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
