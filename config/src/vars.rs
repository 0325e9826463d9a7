//! `${CENTRIFUGO_VAR_X}` references in string-map values (`static_headers`, `static_metadata`,
//! `channel_replacements`), expanded from the passed-in environment as Centrifugo does.

use serde_json::Value;

use super::error::ConfigError;
use super::schema::{Kind, Node};

/// Prefixes of variables that string-map values may reference as `${NAME}`.
pub(crate) const VAR_PREFIXES: &[&str] = &["CENTRIFUGO_VAR_", "SPINDLE_VAR_"];

/// Expands `${CENTRIFUGO_VAR_X}` / `${SPINDLE_VAR_X}` in the values of string maps
/// (`static_headers`, `static_metadata`, ...) from `env`, as Centrifugo does. A referenced
/// variable that is not set is an error.
pub(crate) fn expand_map_vars(
    node: &Node,
    value: &mut Value,
    env: &[(String, String)],
    path: &str,
) -> Result<(), ConfigError> {
    let join = |key: &str| {
        if path.is_empty() {
            key.to_owned()
        } else {
            format!("{path}.{key}")
        }
    };
    match (node, value) {
        (Node::Object(children), Value::Object(map)) => {
            for (key, child) in map.iter_mut() {
                if let Some(child_node) = children.get(key) {
                    expand_map_vars(child_node, child, env, &join(key))?;
                }
            }
        }
        (Node::NamedList(element), Value::Array(items)) => {
            for (i, item) in items.iter_mut().enumerate() {
                expand_map_vars(element, item, env, &format!("{path}[{i}]"))?;
            }
        }
        (Node::Leaf(Kind::Map), Value::Object(map)) => {
            for (key, item) in map.iter_mut() {
                if let Value::String(text) = item {
                    *text = expand(text, env).map_err(|reason| ConfigError::InvalidValue {
                        path: join(key),
                        reason,
                    })?;
                }
            }
        }
        _ => {}
    }
    Ok(())
}

fn expand(text: &str, env: &[(String, String)]) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else { break };
        let name = &after[..end];
        out.push_str(&rest[..start]);
        if VAR_PREFIXES.iter().any(|p| name.starts_with(p)) {
            let found = env.iter().rev().find(|(n, _)| n == name);
            let (_, value) =
                found.ok_or_else(|| format!("environment variable {name} is not set"))?;
            out.push_str(value);
        } else {
            out.push_str(&rest[start..start + 3 + end]);
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ConfigFile, ConfigFormat, ConfigSources, load};

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn expands_only_var_references() {
        let env = pairs(&[
            ("CENTRIFUGO_VAR_A", "1"),
            ("SPINDLE_VAR_B", "2"),
            ("HOME", "/root"),
        ]);
        assert_eq!(
            expand("x${CENTRIFUGO_VAR_A}y${SPINDLE_VAR_B}", &env).unwrap(),
            "x1y2"
        );
        assert_eq!(
            expand("${HOME} ${unclosed", &env).unwrap(),
            "${HOME} ${unclosed"
        );
        assert!(expand("${CENTRIFUGO_VAR_MISSING}", &env).is_err());
    }

    #[test]
    fn string_map_values_expand_var_references() {
        let text = r#"{"proxies": [{"name": "auth", "endpoint": "http://app/p",
            "http": {"static_headers": [{"key": "Authorization", "value": "Bearer ${CENTRIFUGO_VAR_TOKEN}"},
                                        {"key": "X-Plain", "value": "${HOME} ${SPINDLE_VAR_B}!"}]}}]}"#;
        let file = ConfigFile {
            text: text.into(),
            format: ConfigFormat::Json,
            name_for_errors: "t".into(),
        };
        let mut sources = ConfigSources {
            file: Some(file),
            env: pairs(&[("CENTRIFUGO_VAR_TOKEN", "t0k"), ("SPINDLE_VAR_B", "b")]),
            ..ConfigSources::default()
        };
        let loaded = load(&sources).unwrap();
        let headers = &loaded
            .config
            .named_proxy("auth")
            .unwrap()
            .http
            .static_headers;
        assert_eq!(headers["Authorization"].expose(), "Bearer t0k");
        assert_eq!(headers["X-Plain"].expose(), "${HOME} b!");
        assert!(
            loaded.warnings.is_empty(),
            "VAR variables are not unknown keys: {:?}",
            loaded.warnings
        );
        sources.env.clear();
        assert_eq!(
            load(&sources),
            Err(ConfigError::InvalidValue {
                path: "proxies[0].http.static_headers.Authorization".into(),
                reason: "environment variable CENTRIFUGO_VAR_TOKEN is not set".into(),
            })
        );
    }
}
