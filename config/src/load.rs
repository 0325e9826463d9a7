//! [`load`]: defaults ← file ← environment ← flags, merged as JSON trees, deserialized once
//! with every unknown key reported by path, then normalized and validated.

use std::fmt;
use std::path::Path;

use serde_json::{Map, Value};

use super::env::{apply_env, apply_flags, merge};
use super::error::{ConfigError, ConfigWarning};
use super::normalize::{advisories, zeros_to_defaults};
use super::not_served::not_served_warnings;
use super::schema::{coerce, config_schema};
use super::vars::expand_map_vars;
use super::{Config, Role};

/// Centrifugo sections Spindle does not implement: keys in them are reported as
/// [`ConfigWarning::UnsupportedKey`] rather than as typos.
const UNSUPPORTED_CENTRIFUGO_SECTIONS: &[&str] = &[
    "map_broker",
    "controller",
    "opentelemetry",
    "graphite",
    "usage_stats",
    "broker.redisnats",
];

fn is_unsupported(path: &str) -> bool {
    UNSUPPORTED_CENTRIFUGO_SECTIONS.iter().any(|section| {
        path.strip_prefix(section)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('.'))
    })
}

/// The syntax of a configuration file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConfigFormat {
    /// JSON.
    Json,
    /// YAML.
    Yaml,
    /// TOML.
    Toml,
}

impl ConfigFormat {
    /// The format for a file name by its extension: `json`, `yaml` / `yml`, `toml` (any case).
    /// Looks at the name only; reads nothing.
    pub fn from_path_extension(path: impl AsRef<Path>) -> Option<Self> {
        let ext = path.as_ref().extension()?.to_str()?.to_ascii_lowercase();
        match ext.as_str() {
            "json" => Some(ConfigFormat::Json),
            "yaml" | "yml" => Some(ConfigFormat::Yaml),
            "toml" => Some(ConfigFormat::Toml),
            _ => None,
        }
    }
}

impl fmt::Display for ConfigFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ConfigFormat::Json => "JSON",
            ConfigFormat::Yaml => "YAML",
            ConfigFormat::Toml => "TOML",
        })
    }
}

/// The text of a configuration file, read by the caller.
#[derive(Clone, PartialEq, Eq)]
pub struct ConfigFile {
    /// The file's contents.
    pub text: String,
    /// Its syntax.
    pub format: ConfigFormat,
    /// How errors refer to it, usually the path.
    pub name_for_errors: String,
}

impl fmt::Debug for ConfigFile {
    /// The text may hold secrets: only its length is shown.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConfigFile")
            .field("name_for_errors", &self.name_for_errors)
            .field("format", &self.format)
            .field("text_len", &self.text.len())
            .finish()
    }
}

/// Everything [`load`] reads, gathered by the caller.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct ConfigSources {
    /// The configuration file, if any.
    pub file: Option<ConfigFile>,
    /// The process environment as `(name, value)`; only `SPINDLE_*` and `CENTRIFUGO_*` are read.
    pub env: Vec<(String, String)>,
    /// Command-line settings as `(dotted key path, value)`, e.g. `("http_server.port", "9000")`.
    pub flags: Vec<(String, String)>,
    /// Every key that would be ignored or have no effect is an error
    /// ([`ConfigError::UnknownKeys`]), not a warning.
    pub strict: bool,
    /// The role the configuration is loaded for: validated for it ([`Config::validate_for`])
    /// and reduced to what it keeps ([`Config::for_role`]).
    pub role: Role,
}

impl fmt::Debug for ConfigSources {
    /// Variable and flag values may be secrets: only names are shown.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let env: Vec<&str> = self.env.iter().map(|(name, _)| name.as_str()).collect();
        let flags: Vec<&str> = self.flags.iter().map(|(path, _)| path.as_str()).collect();
        f.debug_struct("ConfigSources")
            .field("file", &self.file)
            .field("env", &env)
            .field("flags", &flags)
            .field("strict", &self.strict)
            .field("role", &self.role)
            .finish()
    }
}

/// A loaded, valid configuration and what is worth telling the operator about it.
#[derive(Clone, Debug, PartialEq)]
pub struct Loaded {
    /// The configuration.
    pub config: Config,
    /// Unknown keys and variables, ignored Centrifugo keys, zeros replaced by defaults,
    /// settings without effect.
    pub warnings: Vec<ConfigWarning>,
}

/// Builds the configuration from its sources. Precedence, low to high: defaults, file,
/// environment, flags. The result is validated ([`Config::validate`]).
pub fn load(sources: &ConfigSources) -> Result<Loaded, ConfigError> {
    let schema = config_schema().map_err(|reason| ConfigError::InvalidValue {
        path: "(defaults)".to_owned(),
        reason,
    })?;
    let mut tree = Value::Object(Map::new());
    let mut warnings = Vec::new();
    if let Some(file) = &sources.file {
        let mut file_tree = parse_file(file)?;
        coerce(&schema, &mut file_tree);
        merge(&mut tree, file_tree);
    }
    apply_env(&mut tree, &schema, &sources.env, &mut warnings)?;
    apply_flags(&mut tree, &schema, &sources.flags)?;
    expand_map_vars(&schema, &mut tree, &sources.env, "")?;
    let mut config = deserialize(&tree, &mut warnings)?;
    zeros_to_defaults(&mut config, &mut warnings);
    config.validate_for(sources.role)?;
    warnings.extend(not_served_warnings(&config));
    warnings.extend(advisories(&config));
    if sources.strict {
        let ignored: Vec<String> = warnings
            .iter()
            .filter(|w| w.fails_strict())
            .map(|w| w.subject().to_owned())
            .collect();
        if !ignored.is_empty() {
            return Err(ConfigError::UnknownKeys(ignored));
        }
    }
    Ok(Loaded {
        config: config.for_role(sources.role),
        warnings,
    })
}

fn parse_file(file: &ConfigFile) -> Result<Value, ConfigError> {
    let fail = |detail: String| ConfigError::Parse {
        format: file.format,
        message: format!("{}: {detail}", file.name_for_errors),
    };
    if file.text.trim().is_empty() {
        return Ok(Value::Object(Map::new()));
    }
    let value: Value = match file.format {
        ConfigFormat::Json => serde_json::from_str(&file.text).map_err(|e| fail(e.to_string()))?,
        ConfigFormat::Yaml => serde_yaml::from_str(&file.text).map_err(|e| fail(e.to_string()))?,
        ConfigFormat::Toml => toml::from_str(&file.text).map_err(|e| fail(e.to_string()))?,
    };
    match value {
        Value::Object(_) => Ok(value),
        Value::Null => Ok(Value::Object(Map::new())),
        _ => Err(fail(
            "the top level must be an object of sections".to_owned(),
        )),
    }
}

/// Deserializes the merged tree, collecting unknown keys; on failure, finds the key at fault.
fn deserialize(tree: &Value, warnings: &mut Vec<ConfigWarning>) -> Result<Config, ConfigError> {
    let mut ignored = Vec::new();
    match serde_ignored::deserialize(tree, |path| ignored.push(format_path(&path))) {
        Ok(config) => {
            for path in ignored {
                warnings.push(if is_unsupported(&path) {
                    ConfigWarning::UnsupportedKey { path }
                } else {
                    ConfigWarning::UnknownKey { path }
                });
            }
            Ok(config)
        }
        Err(err) => Err(locate_error(tree, err.to_string())),
    }
}

fn format_path(path: &serde_ignored::Path<'_>) -> String {
    use serde_ignored::Path as P;
    match path {
        P::Root => String::new(),
        P::Seq { parent, index } => format!("{}[{index}]", format_path(parent)),
        P::Map { parent, key } => match format_path(parent) {
            prefix if prefix.is_empty() => key.clone(),
            prefix => format!("{prefix}.{key}"),
        },
        P::Some { parent } | P::NewtypeStruct { parent } | P::NewtypeVariant { parent } => {
            format_path(parent)
        }
    }
}

/// One step into a JSON tree.
#[derive(Clone)]
enum Seg {
    Key(String),
    Index(usize),
}

/// Narrows a tree that fails to deserialize down to the failing value: at each level, keep
/// only one child (absent keys take their defaults); the first child that still fails holds
/// the error. Returns the error with the dotted path of that value.
fn locate_error(tree: &Value, message: String) -> ConfigError {
    let mut current = tree.clone();
    let mut nav: Vec<Seg> = Vec::new();
    let mut shown = String::new();
    let mut reason = message;
    loop {
        let children: Vec<(Seg, String)> = match node_at(&current, &nav) {
            Some(Value::Object(map)) => map
                .keys()
                .map(|k| {
                    (
                        Seg::Key(k.clone()),
                        if shown.is_empty() {
                            k.clone()
                        } else {
                            format!(".{k}")
                        },
                    )
                })
                .collect(),
            Some(Value::Array(items)) => (0..items.len())
                .map(|i| (Seg::Index(i), format!("[{i}]")))
                .collect(),
            _ => break,
        };
        let narrowed = children.into_iter().find_map(|(seg, label)| {
            let mut trial = current.clone();
            let kept = keep_only(node_at_mut(&mut trial, &nav)?, &seg)?;
            let err = serde_json::from_value::<Config>(trial.clone()).err()?;
            Some((trial, kept, label, err.to_string()))
        });
        let Some((trial, kept, label, err)) = narrowed else {
            break;
        };
        current = trial;
        nav.push(kept);
        shown.push_str(&label);
        reason = err;
    }
    let path = if shown.is_empty() {
        "(top level)".to_owned()
    } else {
        shown
    };
    ConfigError::InvalidValue { path, reason }
}

/// Removes every child of `node` but `seg`; returns where the kept child now is.
fn keep_only(node: &mut Value, seg: &Seg) -> Option<Seg> {
    match (node, seg) {
        (Value::Object(map), Seg::Key(key)) => {
            map.retain(|k, _| k == key);
            Some(Seg::Key(key.clone()))
        }
        (Value::Array(items), Seg::Index(index)) => {
            let item = items.get(*index)?.clone();
            *items = vec![item];
            Some(Seg::Index(0))
        }
        _ => None,
    }
}

fn node_at<'v>(tree: &'v Value, nav: &[Seg]) -> Option<&'v Value> {
    nav.iter().try_fold(tree, |node, seg| match seg {
        Seg::Key(key) => node.get(key),
        Seg::Index(index) => node.get(index),
    })
}

fn node_at_mut<'v>(tree: &'v mut Value, nav: &[Seg]) -> Option<&'v mut Value> {
    nav.iter().try_fold(tree, |node, seg| match seg {
        Seg::Key(key) => node.get_mut(key),
        Seg::Index(index) => node.get_mut(index),
    })
}

#[cfg(test)]
#[path = "load_tests.rs"]
mod tests;
