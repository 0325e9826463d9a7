//! The shared test configuration (`tests/fixtures/spindle.json`) and what derives from it:
//! secret, API key, tokens, per-test patches, unique names, the binary's location.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use crate::{Error, Result};

/// The `spindle-tests` crate directory (`<workspace>/tests`).
pub fn crate_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The workspace root.
pub fn workspace_dir() -> PathBuf {
    let dir = crate_dir();
    dir.parent().map(Path::to_path_buf).unwrap_or(dir)
}

/// `tests/fixtures/spindle.json`.
pub fn fixture_path() -> PathBuf {
    crate_dir().join("fixtures").join("spindle.json")
}

/// The shared configuration as JSON.
pub fn config() -> Result<Value> {
    let path = fixture_path();
    let text = std::fs::read_to_string(&path)
        .map_err(|e| Error::new(format!("cannot read fixture {}: {e}", path.display())))?;
    serde_json::from_str(&text)
        .map_err(|e| Error::new(format!("fixture {} is not JSON: {e}", path.display())))
}

fn config_string(pointer: &str) -> Result<String> {
    config()?
        .pointer(pointer)
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| Error::new(format!("fixture has no string at {pointer}")))
}

/// `client.token.hmac_secret_key` of the fixture.
pub fn hmac_secret() -> String {
    config_string("/client/token/hmac_secret_key").unwrap_or_else(|e| panic!("{e}"))
}

/// `http_api.key` of the fixture.
pub fn api_key() -> String {
    config_string("/http_api/key").unwrap_or_else(|e| panic!("{e}"))
}

/// Merges `patch` into `base`: objects key by key (recursively), anything else replaces.
/// A `null` inside a patch object removes that key; a `null` patch changes nothing.
pub fn merge(base: &mut Value, patch: &Value) {
    match (base, patch) {
        (_, Value::Null) => {}
        (Value::Object(base), Value::Object(patch)) => {
            for (key, value) in patch {
                if value.is_null() {
                    base.remove(key);
                } else if let Some(existing) = base.get_mut(key) {
                    merge(existing, value);
                } else {
                    base.insert(key.clone(), value.clone());
                }
            }
        }
        (base, patch) => *base = patch.clone(),
    }
}

/// Where the `spindle` binary is: `SPINDLE_BIN`, else `<target dir>/debug/spindle`.
pub fn binary_path() -> PathBuf {
    if let Some(bin) = std::env::var_os("SPINDLE_BIN").filter(|v| !v.is_empty()) {
        return PathBuf::from(bin);
    }
    target_dir().join("debug").join("spindle")
}

/// Where the slim `spindle-edge` binary is: `SPINDLE_EDGE_BIN`, else next to `spindle`
/// (`cargo build -p spindle-edge --bin spindle-edge`).
pub fn edge_binary_path() -> PathBuf {
    if let Some(bin) = std::env::var_os("SPINDLE_EDGE_BIN").filter(|v| !v.is_empty()) {
        return PathBuf::from(bin);
    }
    binary_path().with_file_name("spindle-edge")
}

fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR").filter(|v| !v.is_empty()) {
        Some(dir) => {
            let dir = PathBuf::from(dir);
            if dir.is_relative() {
                workspace_dir().join(dir)
            } else {
                dir
            }
        }
        None => workspace_dir().join("target"),
    }
}

/// Unix time in seconds.
pub fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// A name unique within this test process run, e.g. `unique("chat:room")` →
/// `chat:room-4711-3`.
pub fn unique(prefix: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// Signs `claims` with HS256 and `secret`.
pub fn sign(claims: &Value, secret: &str) -> String {
    spindle_hub::jwt::sign_hs256(claims, secret).unwrap_or_else(|e| panic!("signing failed: {e}"))
}

/// A connection token for `user`, valid for an hour, signed with the fixture's secret.
pub fn token(user: &str) -> String {
    token_with(json!({ "sub": user }))
}

/// A connection token with these claims; `exp` (now + 1 h) and `iat` are added when absent.
pub fn token_with(mut claims: Value) -> String {
    let now = unix_now();
    if let Some(map) = claims.as_object_mut() {
        map.entry("exp").or_insert(json!(now + 3600));
        map.entry("iat").or_insert(json!(now));
    }
    sign(&claims, &hmac_secret())
}

/// A connection token for `user` that expired a minute ago (connect → error 109).
pub fn expired_token(user: &str) -> String {
    let now = unix_now();
    token_with(json!({ "sub": user, "iat": now - 3600, "exp": now - 60 }))
}

/// A token for `user` signed with a secret the server does not know (connect → close 3500).
pub fn badly_signed_token(user: &str) -> String {
    let now = unix_now();
    sign(
        &json!({ "sub": user, "iat": now, "exp": now + 3600 }),
        "not-the-secret-of-the-server",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_patches_objects_and_ignores_null() {
        let mut config = json!({"a": {"b": 1, "c": 2}, "d": [1]});
        merge(&mut config, &Value::Null);
        assert_eq!(config, json!({"a": {"b": 1, "c": 2}, "d": [1]}));
        merge(
            &mut config,
            &json!({"a": {"b": 5, "c": null}, "d": [2], "e": true}),
        );
        assert_eq!(config, json!({"a": {"b": 5}, "d": [2], "e": true}));
    }

    #[test]
    fn fixture_has_secret_and_key() {
        assert!(!hmac_secret().is_empty());
        assert!(!api_key().is_empty());
        assert_eq!(token("u").split('.').count(), 3);
    }
}
