//! `spindle genconfig`: a minimal working configuration with fresh random secrets.

use anyhow::{Context, Result, bail};
use rand::Rng;
use rand::distr::Alphanumeric;
use serde_json::{Value, json};
use std::path::Path;

/// A random alphanumeric secret of `length` characters from the OS-seeded generator.
pub fn random_secret(length: usize) -> String {
    rand::rng()
        .sample_iter(&Alphanumeric)
        .take(length)
        .map(char::from)
        .collect()
}

/// The minimal configuration: token and API secrets, no allowed origins, admin off.
pub fn minimal_config() -> Value {
    json!({
        "client": {
            "token": { "hmac_secret_key": random_secret(64) },
            "allowed_origins": []
        },
        "http_api": { "key": random_secret(64) },
        "admin": {
            "enabled": false,
            "password": random_secret(16),
            "secret": random_secret(64)
        }
    })
}

pub fn run(path: &Path) -> Result<()> {
    if path.exists() {
        bail!("{} already exists; not overwriting it", path.display());
    }
    let config = minimal_config();
    let extension = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    let text = match extension.as_str() {
        "json" => serde_json::to_string_pretty(&config)? + "\n",
        "yaml" | "yml" => serde_yaml::to_string(&config)?,
        "toml" => toml::to_string_pretty(&config)?,
        other => bail!("unknown config format {other:?} (use .json, .yaml, .yml or .toml)"),
    };
    std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))?;
    spindle_server::output::line(format_args!("spindle: wrote {}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_random_and_sized() {
        let a = random_secret(64);
        assert_eq!(a.len(), 64);
        assert!(a.chars().all(|c| c.is_ascii_alphanumeric()));
        assert_ne!(a, random_secret(64));
    }
}
