//! What loading and validating can report: [`ConfigError`] (the configuration is not used) and
//! [`ConfigWarning`] (it is used, but something deserves a look).

use std::fmt;

use super::load::ConfigFormat;

/// Why a configuration could not be loaded. Every variant names the key path (or file /
/// variable) it is about.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum ConfigError {
    /// The file text is not valid JSON / YAML / TOML, or its top level is not an object.
    #[error("cannot parse {format} configuration {message}")]
    Parse {
        /// The format the text was read as.
        format: ConfigFormat,
        /// The source name and the parser's message.
        message: String,
    },
    /// One value has the wrong type or spelling (`path` is a dotted key path such as
    /// `channel.namespaces[0].history_ttl`, or an environment variable / flag).
    #[error("{path}: {reason}")]
    InvalidValue {
        /// Where.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// The configuration parsed but breaks rules; every problem found is listed.
    #[error("invalid configuration:{}", list(.0))]
    Invalid(Vec<ConfigProblem>),
    /// Strict mode: keys or variables that would be ignored or have no effect were present
    /// (unknown, unsupported, not served yet, without effect).
    #[error(
        "strict mode: these keys would be ignored or have no effect: {}",
        .0.join(", ")
    )]
    UnknownKeys(Vec<String>),
}

fn list(problems: &[ConfigProblem]) -> String {
    problems.iter().map(|p| format!("\n  {p}")).collect()
}

/// One broken rule found by [`super::Config::validate`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigProblem {
    /// Dotted key path, e.g. `channel.namespaces[2].history_ttl`.
    pub path: String,
    /// What is wrong, in words.
    pub reason: String,
}

impl fmt::Display for ConfigProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.reason)
    }
}

/// Something worth telling the operator about a configuration that loaded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConfigWarning {
    /// A key that neither Spindle nor Centrifugo knows (a typo?). An error in strict mode.
    UnknownKey {
        /// Dotted key path, e.g. `channel.namespaces[1].histroy_size`.
        path: String,
    },
    /// A Centrifugo key for a feature Spindle does not have; it is ignored.
    UnsupportedKey {
        /// Dotted key path.
        path: String,
    },
    /// A `SPINDLE_*` / `CENTRIFUGO_*` variable that names no key. An error in strict mode.
    UnknownEnv {
        /// The variable name.
        name: String,
    },
    /// A `0` where Centrifugo means "unlimited"; Spindle uses the default instead.
    ZeroMeansDefault {
        /// Dotted key path.
        path: String,
        /// The value used.
        default: String,
    },
    /// A setting that does nothing in this combination.
    NoEffect {
        /// Dotted key path.
        path: String,
        /// Why.
        reason: String,
    },
    /// A key Spindle reads but does not act on yet, set to something other than its default.
    NotServed {
        /// Dotted key path.
        path: String,
        /// What is missing.
        reason: String,
    },
}

impl ConfigWarning {
    /// True for the warnings that strict mode turns into [`ConfigError::UnknownKeys`]: every
    /// key that would be ignored or do nothing (a replaced zero acts, with the default).
    pub fn fails_strict(&self) -> bool {
        !matches!(self, ConfigWarning::ZeroMeansDefault { .. })
    }

    /// The key path or variable name the warning is about.
    pub fn subject(&self) -> &str {
        match self {
            ConfigWarning::UnknownKey { path }
            | ConfigWarning::UnsupportedKey { path }
            | ConfigWarning::ZeroMeansDefault { path, .. }
            | ConfigWarning::NoEffect { path, .. }
            | ConfigWarning::NotServed { path, .. } => path,
            ConfigWarning::UnknownEnv { name } => name,
        }
    }
}

impl fmt::Display for ConfigWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigWarning::UnknownKey { path } => write!(f, "{path}: unknown key, ignored"),
            ConfigWarning::UnsupportedKey { path } => {
                write!(
                    f,
                    "{path}: Centrifugo key not supported by Spindle, ignored"
                )
            }
            ConfigWarning::UnknownEnv { name } => {
                write!(
                    f,
                    "{name}: environment variable names no configuration key, ignored"
                )
            }
            ConfigWarning::ZeroMeansDefault { path, default } => write!(
                f,
                "{path}: 0 (unlimited in Centrifugo) is not allowed in Spindle; using the default \
                 {default}"
            ),
            ConfigWarning::NoEffect { path, reason } => write!(f, "{path}: no effect: {reason}"),
            ConfigWarning::NotServed { path, reason } => {
                write!(f, "{path}: not served by Spindle yet, no effect: {reason}")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_paths() {
        let err = ConfigError::Invalid(vec![
            ConfigProblem {
                path: "a.b".into(),
                reason: "bad".into(),
            },
            ConfigProblem {
                path: "c".into(),
                reason: "worse".into(),
            },
        ]);
        assert_eq!(
            err.to_string(),
            "invalid configuration:\n  a.b: bad\n  c: worse"
        );
        let err = ConfigError::InvalidValue {
            path: "x.y".into(),
            reason: "no".into(),
        };
        assert_eq!(err.to_string(), "x.y: no");
        let w = ConfigWarning::UnknownKey {
            path: "channel.namespaces[1].histroy_size".into(),
        };
        assert_eq!(
            w.to_string(),
            "channel.namespaces[1].histroy_size: unknown key, ignored"
        );
        assert!(w.fails_strict());
        assert!(
            ConfigWarning::UnsupportedKey {
                path: "graphite".into()
            }
            .fails_strict()
        );
        assert!(
            !ConfigWarning::ZeroMeansDefault {
                path: "client.queue_max_size".into(),
                default: "1048576".into()
            }
            .fails_strict()
        );
    }
}
