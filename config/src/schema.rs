//! The shape of the configuration, read off the serialized defaults: which keys exist and what
//! kind of value each holds. Environment variables and flags are resolved and typed against it,
//! and file values are coerced by it the way Centrifugo's loader is lenient (`"8000"` for a
//! port, `"*"` for a list).

use std::collections::BTreeMap;

use serde_json::Value;

use super::Config;
use super::channel::Namespace;
use super::duration::Duration;
use super::proxy::NamedProxy;
use super::rpc::RpcNamespace;

/// A node of the schema tree.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Node {
    /// A section with known keys.
    Object(BTreeMap<String, Node>),
    /// A list of objects identified by their `name` key; the node is the element's shape.
    NamedList(Box<Node>),
    /// A value.
    Leaf(Kind),
}

/// The kind of a leaf value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Bool,
    Integer,
    String,
    Duration,
    /// A list of plain values.
    List,
    /// A map with free keys (`static_headers`).
    Map,
    /// Anything (`null` defaults).
    Any,
}

/// The lists whose entries are objects with a `name`, with the default of one entry.
pub(crate) fn named_list_template(path: &str) -> Option<Result<Value, serde_json::Error>> {
    match path {
        "channel.namespaces" => Some(serde_json::to_value(Namespace::default())),
        "rpc.namespaces" => Some(serde_json::to_value(RpcNamespace::default())),
        "proxies" => Some(serde_json::to_value(NamedProxy::default())),
        _ => None,
    }
}

/// The schema of [`Config`].
pub(crate) fn config_schema() -> Result<Node, String> {
    let defaults = serde_json::to_value(Config::default()).map_err(|e| e.to_string())?;
    build(&defaults, "")
}

fn build(value: &Value, path: &str) -> Result<Node, String> {
    Ok(match value {
        Value::Object(map) if map.is_empty() => Node::Leaf(Kind::Map),
        Value::Object(map) => {
            let mut children = BTreeMap::new();
            for (key, child) in map {
                let child_path = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                children.insert(key.clone(), build(child, &child_path)?);
            }
            Node::Object(children)
        }
        Value::Array(_) => match named_list_template(path) {
            Some(template) => {
                let template = template.map_err(|e| e.to_string())?;
                Node::NamedList(Box::new(build(&template, "")?))
            }
            None => Node::Leaf(Kind::List),
        },
        Value::Bool(_) => Node::Leaf(Kind::Bool),
        Value::Number(_) => Node::Leaf(Kind::Integer),
        // Durations serialize as Go duration strings; no plain string default parses as one.
        Value::String(s) if s.parse::<Duration>().is_ok() => Node::Leaf(Kind::Duration),
        Value::String(_) => Node::Leaf(Kind::String),
        Value::Null => Node::Leaf(Kind::Any),
    })
}

#[cfg(test)]
impl Node {
    /// The child node for `key` of an object node.
    pub(crate) fn child(&self, key: &str) -> Option<&Node> {
        match self {
            Node::Object(children) => children.get(key),
            _ => None,
        }
    }
}

/// Loosens file values the way Centrifugo's loader does: numeric and boolean strings where a
/// number or boolean is expected, numbers and booleans where a string is expected, a single
/// string where a list is expected, a `key` / `value` list where a string map is expected.
pub(crate) fn coerce(node: &Node, value: &mut Value) {
    match (node, value) {
        (Node::Object(children), Value::Object(map)) => {
            for (key, child) in map.iter_mut() {
                if let Some(child_node) = children.get(key) {
                    coerce(child_node, child);
                }
            }
        }
        (Node::NamedList(element), Value::Array(items)) => {
            for item in items {
                coerce(element, item);
            }
        }
        (Node::Leaf(kind), value) => {
            if let Some(replacement) = coerce_leaf(*kind, value) {
                *value = replacement;
            }
        }
        _ => {}
    }
}

fn coerce_leaf(kind: Kind, value: &Value) -> Option<Value> {
    match (kind, value) {
        (Kind::Bool, Value::String(s)) => parse_bool(s).map(Value::Bool),
        (Kind::Integer, Value::String(s)) => parse_integer(s),
        (Kind::String, Value::Number(n)) => Some(Value::String(n.to_string())),
        (Kind::String, Value::Bool(b)) => Some(Value::String(b.to_string())),
        (Kind::List, Value::String(s)) => Some(Value::Array(vec![Value::String(s.clone())])),
        (Kind::Map, Value::Array(items)) => key_value_list(items),
        _ => None,
    }
}

/// Centrifugo also writes string maps as `[{"key": k, "value": v}, ...]`.
fn key_value_list(items: &[Value]) -> Option<Value> {
    let mut map = serde_json::Map::new();
    for item in items {
        let key = item.get("key")?.as_str()?;
        let value = item.get("value")?.as_str()?;
        map.insert(key.to_owned(), Value::String(value.to_owned()));
    }
    Some(Value::Object(map))
}

/// `true` / `false` (any case), `1` / `0`.
pub(crate) fn parse_bool(text: &str) -> Option<bool> {
    match text.trim() {
        "1" => Some(true),
        "0" => Some(false),
        t if t.eq_ignore_ascii_case("true") => Some(true),
        t if t.eq_ignore_ascii_case("false") => Some(false),
        _ => None,
    }
}

/// A decimal integer as a JSON number.
pub(crate) fn parse_integer(text: &str) -> Option<Value> {
    let text = text.trim();
    if let Ok(n) = text.parse::<u64>() {
        return Some(Value::from(n));
    }
    text.parse::<i64>().ok().map(Value::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at<'a>(node: &'a Node, path: &[&str]) -> &'a Node {
        path.iter().fold(node, |n, key| match n {
            Node::NamedList(element) => element.child(key).unwrap(),
            other => other.child(key).unwrap_or_else(|| panic!("no {key}")),
        })
    }

    #[test]
    fn kinds_come_from_the_defaults() {
        let schema = config_schema().unwrap();
        let table: &[(&[&str], Kind)] = &[
            (&["http_server", "port"], Kind::Integer),
            (&["client", "insecure"], Kind::Bool),
            (&["client", "ping_interval"], Kind::Duration),
            (&["client", "channel_position_max_time_lag"], Kind::Duration),
            (&["channel", "history_meta_ttl"], Kind::Duration),
            (&["client", "token", "hmac_secret_key"], Kind::String),
            (&["client", "allowed_origins"], Kind::List),
            (&["engine", "redis", "address"], Kind::List),
            (&["engine", "type"], Kind::String),
            (&["proxies", "http", "static_headers"], Kind::Map),
            (&["channel", "namespaces", "history_ttl"], Kind::Duration),
            (&["channel", "namespaces", "map", "mode"], Kind::String),
            (&["consumers"], Kind::List),
        ];
        for (path, kind) in table {
            assert_eq!(at(&schema, path), &Node::Leaf(*kind), "{path:?}");
        }
        assert!(matches!(
            at(&schema, &["channel", "namespaces"]),
            Node::NamedList(_)
        ));
        assert!(matches!(
            at(&schema, &["rpc", "namespaces"]),
            Node::NamedList(_)
        ));
    }

    #[test]
    fn coercion_is_lenient_like_centrifugo() {
        let schema = config_schema().unwrap();
        let mut value = serde_json::json!({
            "http_server": {"port": "9000"},
            "client": {"insecure": "TRUE", "allowed_origins": "*",
                       "token": {"hmac_secret_key": 12345}},
            "channel": {"namespaces": [{"name": "a", "history_size": "10"}]},
            "unknown": {"port": "1"},
            "proxies": [{"name": "p", "http": {"static_headers": [{"key": "X", "value": "y"}]}}]
        });
        coerce(&schema, &mut value);
        assert_eq!(value["http_server"]["port"], 9000);
        assert_eq!(value["client"]["insecure"], true);
        assert_eq!(value["client"]["allowed_origins"], serde_json::json!(["*"]));
        assert_eq!(value["client"]["token"]["hmac_secret_key"], "12345");
        assert_eq!(value["channel"]["namespaces"][0]["history_size"], 10);
        assert_eq!(value["unknown"]["port"], "1");
        assert_eq!(
            value["proxies"][0]["http"]["static_headers"],
            serde_json::json!({"X": "y"})
        );
    }
}
