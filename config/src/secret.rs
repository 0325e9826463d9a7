//! [`Secret`]: a configured string that must not end up in logs.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A secret configuration value: an HMAC key, an API key, a password, a DSN with credentials.
///
/// `Debug` prints `***` (or `""` when the secret is empty, so "not configured" stays visible);
/// there is no `Display`. Serialization writes the plain string, so a configuration written back
/// out (`genconfig`, the defaults file) still works. Read the value with [`Secret::expose`].
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The secret itself. Call this only where the value is used (a signature check, a
    /// connection string), never to log it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// True when no secret is configured.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            f.write_str("\"\"")
        } else {
            f.write_str("***")
        }
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Self {
        Secret(value.to_owned())
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Secret(value)
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(Secret)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_redacts_the_value() {
        let secret = Secret::new("hunter2");
        assert_eq!(format!("{secret:?}"), "***");
        assert!(!format!("{:?}", vec![secret.clone()]).contains("hunter2"));
        assert_eq!(format!("{:?}", Secret::default()), "\"\"");
    }

    #[test]
    fn serializes_as_the_plain_string() {
        let secret = Secret::new("k");
        assert_eq!(serde_json::to_string(&secret).unwrap(), "\"k\"");
        let back: Secret = serde_json::from_str("\"k\"").unwrap();
        assert_eq!(back.expose(), "k");
        assert!(serde_json::from_str::<Secret>("5").is_err());
    }
}
