//! `client.allowed_origins`: which `Origin` headers may open a connection (globs from
//! [`spindle_hub::glob`]).

use spindle_hub::glob::{Glob, GlobError};

/// `client.allowed_origins`: which `Origin` headers may open a connection.
#[derive(Clone, Debug)]
pub struct OriginPolicy {
    patterns: Vec<Glob>,
    any: bool,
}

impl OriginPolicy {
    /// Patterns are compared lower-cased; `[]` allows only requests without `Origin`, `["*"]`
    /// allows every request.
    pub fn new(patterns: &[String]) -> Result<OriginPolicy, GlobError> {
        let any = patterns.iter().any(|p| p == "*");
        let patterns = patterns
            .iter()
            .map(|p| Glob::new(&p.to_lowercase()))
            .collect::<Result<_, _>>()?;
        Ok(OriginPolicy { patterns, any })
    }

    /// Like [`OriginPolicy::new`], but a pattern that does not parse is logged and never
    /// matches (configuration validation refuses such a pattern before start; this is for a
    /// config that skipped it).
    pub fn lenient(patterns: &[String]) -> OriginPolicy {
        let any = patterns.iter().any(|p| p == "*");
        let patterns = patterns
            .iter()
            .filter_map(|p| {
                Glob::new(&p.to_lowercase())
                    .inspect_err(|error| tracing::warn!(%error, "client.allowed_origins"))
                    .ok()
            })
            .collect();
        OriginPolicy { patterns, any }
    }

    /// Whether a request carrying `origin` (the header value, if any) is allowed.
    pub fn allows(&self, origin: Option<&str>) -> bool {
        let Some(origin) = origin else {
            return true;
        };
        if self.any {
            return true;
        }
        let origin = origin.to_lowercase();
        self.patterns.iter().any(|p| p.matches(&origin))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins() {
        let none = OriginPolicy::new(&[]).unwrap();
        assert!(none.allows(None));
        assert!(!none.allows(Some("https://example.com")));

        let all = OriginPolicy::new(&["*".to_owned()]).unwrap();
        assert!(all.allows(Some("https://evil.example")));

        let some = OriginPolicy::new(&[
            "https://*.Example.com".to_owned(),
            "http://localhost:*".to_owned(),
        ])
        .unwrap();
        assert!(some.allows(Some("https://app.example.com")));
        assert!(some.allows(Some("HTTPS://APP.EXAMPLE.COM")));
        assert!(some.allows(Some("http://localhost:3000")));
        assert!(!some.allows(Some("https://example.org")));
        assert!(some.allows(None));
    }
}
