//! Environment variables and flags: finding the key a variable or flag names (by walking the
//! schema), typing its text by that key, and writing it into the merged JSON tree.
//!
//! Variables: `SPINDLE_<PATH>` / `CENTRIFUGO_<PATH>`, path = upper-case keys joined by `_`.
//! Because keys contain `_` themselves, each object is tried longest key first, backtracking
//! when the rest does not resolve. Named lists take the entry name after the list key
//! (`..._NAMESPACES_CHAT_HISTORY_SIZE`): names already in the list are tried first (longest
//! first); otherwise the shortest name whose remainder is an option names a new entry, in lower
//! case. Flags: dotted paths (`http_server.port`, `channel.namespaces.chat.presence`).

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::duration::Duration;
use super::error::{ConfigError, ConfigWarning};
use super::schema::{Kind, Node, parse_bool, parse_integer};
use super::vars::VAR_PREFIXES;

/// Variables read by the binary or tests, never configuration keys. (`*_VAR_*` variables are
/// values for `${...}` references, not keys either.)
const RESERVED: &[&str] = &["SPINDLE_CONFIG", "SPINDLE_BLESS"];

/// One step of a resolved key path.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Step {
    /// An object key.
    Key(String),
    /// The entry of a named list with this `name`.
    Entry(String),
}

/// The dotted form of a path (entries by name): `channel.namespaces.chat.history_size`.
pub(crate) fn dotted(steps: &[Step]) -> String {
    let parts: Vec<&str> = steps
        .iter()
        .map(|s| match s {
            Step::Key(k) | Step::Entry(k) => k.as_str(),
        })
        .collect();
    parts.join(".")
}

/// How names in a path are split into tokens.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Upper-case tokens split at `_`.
    Env,
    /// Exact tokens split at `.`.
    Flag,
}

impl Mode {
    /// How many tokens `key` spans at the start of `tokens`, if it matches.
    fn match_key(self, key: &str, tokens: &[&str]) -> Option<usize> {
        match self {
            Mode::Flag => (tokens.first() == Some(&key)).then_some(1),
            Mode::Env => {
                let key_tokens: Vec<String> = key
                    .split(|c: char| !c.is_ascii_alphanumeric())
                    .map(str::to_ascii_uppercase)
                    .collect();
                let n = key_tokens.len();
                (tokens.len() >= n && key_tokens.iter().zip(tokens).all(|(k, t)| k == t))
                    .then_some(n)
            }
        }
    }

    /// The name of a new entry spelled by `tokens`, if this mode can spell one that long.
    fn new_name(self, tokens: &[&str]) -> Option<String> {
        match self {
            Mode::Flag => (tokens.len() == 1).then(|| tokens[0].to_owned()),
            Mode::Env => Some(tokens.join("_").to_ascii_lowercase()),
        }
    }
}

/// Finds the path `tokens` names below `node`. `tree` is the merged value at `node` (for the
/// names of existing entries).
fn resolve<'s>(
    node: &'s Node,
    tokens: &[&str],
    mode: Mode,
    tree: Option<&Value>,
) -> Option<(Vec<Step>, &'s Node)> {
    if tokens.is_empty() {
        return Some((Vec::new(), node));
    }
    match node {
        Node::Object(children) => {
            let mut candidates: Vec<(&String, &Node, usize)> = children
                .iter()
                .filter_map(|(key, child)| mode.match_key(key, tokens).map(|n| (key, child, n)))
                .collect();
            candidates.sort_by_key(|c| std::cmp::Reverse(c.2));
            candidates.into_iter().find_map(|(key, child, n)| {
                let (mut steps, target) =
                    resolve(child, &tokens[n..], mode, tree.and_then(|t| t.get(key)))?;
                steps.insert(0, Step::Key(key.clone()));
                Some((steps, target))
            })
        }
        Node::NamedList(element) => {
            let existing: Vec<&str> = tree
                .and_then(Value::as_array)
                .map(|items| {
                    items
                        .iter()
                        .filter_map(|i| i.get("name")?.as_str())
                        .collect()
                })
                .unwrap_or_default();
            let mut known: Vec<(&str, usize)> = existing
                .into_iter()
                .filter_map(|name| mode.match_key(name, tokens).map(|n| (name, n)))
                .collect();
            known.sort_by_key(|k| std::cmp::Reverse(k.1));
            let entry = |name: String, rest: &[&str]| {
                let (mut steps, target) = resolve(element, rest, mode, None)?;
                if rest.is_empty() || steps.first() == Some(&Step::Key("name".to_owned())) {
                    return None;
                }
                steps.insert(0, Step::Entry(name));
                Some((steps, target))
            };
            known
                .into_iter()
                .find_map(|(name, n)| entry(name.to_owned(), &tokens[n..]))
                .or_else(|| {
                    (1..tokens.len())
                        .find_map(|n| entry(mode.new_name(&tokens[..n])?, &tokens[n..]))
                })
        }
        Node::Leaf(_) => None,
    }
}

/// A value typed for its target.
#[derive(Debug, PartialEq)]
enum Typed {
    Value(Value),
    /// Space-separated names for a named list.
    Names(Vec<String>),
}

fn typed(node: &Node, raw: &str) -> Result<Typed, String> {
    let json = |expect: &str| -> Result<Value, String> {
        let text = raw.trim();
        if text.is_empty() && expect == "object" {
            return Ok(Value::Object(Map::new()));
        }
        serde_json::from_str(text).map_err(|e| format!("expected a JSON {expect}: {e}"))
    };
    let value = match node {
        Node::Object(_) | Node::Leaf(Kind::Map) => {
            let v = json("object")?;
            if !v.is_object() {
                return Err("expected a JSON object".to_owned());
            }
            v
        }
        Node::NamedList(_) if raw.trim_start().starts_with('[') => json("array")?,
        Node::NamedList(_) => {
            return Ok(Typed::Names(
                raw.split_whitespace().map(str::to_owned).collect(),
            ));
        }
        Node::Leaf(Kind::Bool) => {
            Value::Bool(parse_bool(raw).ok_or("expected true, false, 1 or 0")?)
        }
        Node::Leaf(Kind::Integer) => parse_integer(raw).ok_or("expected an integer")?,
        Node::Leaf(Kind::Duration) => {
            raw.trim().parse::<Duration>().map_err(|e| e.to_string())?;
            Value::String(raw.trim().to_owned())
        }
        Node::Leaf(Kind::String) => Value::String(raw.to_owned()),
        Node::Leaf(Kind::List) if raw.trim_start().starts_with('[') => json("array")?,
        Node::Leaf(Kind::List) => Value::Array(
            raw.split_whitespace()
                .map(|w| Value::String(w.to_owned()))
                .collect(),
        ),
        Node::Leaf(Kind::Any) => {
            serde_json::from_str(raw.trim()).unwrap_or_else(|_| Value::String(raw.to_owned()))
        }
    };
    Ok(Typed::Value(value))
}

/// Object keys merge recursively; `null` in the overlay leaves the base alone; anything else
/// replaces.
pub(crate) fn merge(base: &mut Value, overlay: Value) {
    match (base, overlay) {
        (_, Value::Null) => {}
        (Value::Object(base_map), Value::Object(overlay_map)) => {
            for (key, value) in overlay_map {
                match base_map.get_mut(&key) {
                    Some(existing) => merge(existing, value),
                    None => {
                        if let Some(value) = without_nulls(value) {
                            base_map.insert(key, value);
                        }
                    }
                }
            }
        }
        (base, overlay) => *base = overlay,
    }
}

/// `value` with `null` object members removed at every depth (`None` for `null` itself).
fn without_nulls(value: Value) -> Option<Value> {
    match value {
        Value::Null => None,
        Value::Object(map) => Some(Value::Object(
            map.into_iter()
                .filter_map(|(k, v)| Some((k, without_nulls(v)?)))
                .collect(),
        )),
        other => Some(other),
    }
}

/// Writes a typed value at `steps`, creating objects and entries on the way.
fn assign(tree: &mut Value, steps: &[Step], value: Typed) {
    let mut node = tree;
    for step in steps {
        node = match step {
            Step::Key(key) => {
                if !node.is_object() {
                    *node = Value::Object(Map::new());
                }
                let Value::Object(map) = node else { return };
                map.entry(key.clone()).or_insert(Value::Null)
            }
            Step::Entry(name) => entry_mut(node, name),
        };
    }
    match value {
        Typed::Value(v) => {
            if node.is_null() || !(node.is_object() && v.is_object()) {
                *node = v;
            } else {
                merge(node, v);
            }
        }
        Typed::Names(names) => {
            let old = node.as_array().cloned().unwrap_or_default();
            let pick = |name: &String| {
                old.iter()
                    .find(|item| item.get("name").and_then(Value::as_str) == Some(name))
                    .cloned()
                    .unwrap_or_else(|| serde_json::json!({ "name": name }))
            };
            *node = Value::Array(names.iter().map(pick).collect());
        }
    }
}

fn entry_mut<'v>(node: &'v mut Value, name: &str) -> &'v mut Value {
    if !node.is_array() {
        *node = Value::Array(Vec::new());
    }
    let items = match node {
        Value::Array(items) => items,
        other => return other,
    };
    let found = items
        .iter()
        .position(|i| i.get("name").and_then(Value::as_str) == Some(name));
    let index = found.unwrap_or_else(|| {
        items.push(serde_json::json!({ "name": name }));
        items.len() - 1
    });
    &mut items[index]
}

/// A variable or flag that resolved to a key.
struct Resolved<'s> {
    source: String,
    steps: Vec<Step>,
    node: &'s Node,
    raw: String,
}

fn apply_resolved(tree: &mut Value, mut items: Vec<Resolved<'_>>) -> Result<(), ConfigError> {
    items.sort_by(|a, b| (a.steps.len(), &a.source).cmp(&(b.steps.len(), &b.source)));
    for item in items {
        let value = typed(item.node, &item.raw).map_err(|reason| ConfigError::InvalidValue {
            path: format!("{} ({})", item.source, dotted(&item.steps)),
            reason,
        })?;
        assign(tree, &item.steps, value);
    }
    Ok(())
}

fn has_entry(steps: &[Step]) -> bool {
    steps.iter().any(|s| matches!(s, Step::Entry(_)))
}

/// Applies `SPINDLE_*` / `CENTRIFUGO_*` variables to `tree`. Variables naming no key become
/// warnings; values that do not fit their key are errors.
pub(crate) fn apply_env(
    tree: &mut Value,
    schema: &Node,
    env: &[(String, String)],
    warnings: &mut Vec<ConfigWarning>,
) -> Result<(), ConfigError> {
    // (rank, name, value, tokens); SPINDLE_ outranks CENTRIFUGO_.
    let mut vars: Vec<(u8, &str, &str, Vec<String>)> = Vec::new();
    for (name, value) in env {
        if RESERVED.contains(&name.as_str()) || VAR_PREFIXES.iter().any(|p| name.starts_with(p)) {
            continue;
        }
        let (rank, rest) = if let Some(rest) = name.strip_prefix("SPINDLE_") {
            (1, rest)
        } else if let Some(rest) = name.strip_prefix("CENTRIFUGO_") {
            (0, rest)
        } else {
            continue;
        };
        let tokens = rest.split('_').map(str::to_ascii_uppercase).collect();
        vars.push((rank, name, value, tokens));
    }
    for second_phase in [false, true] {
        let mut chosen: BTreeMap<Vec<Step>, (u8, Resolved<'_>)> = BTreeMap::new();
        for (rank, name, value, tokens) in &vars {
            let tokens: Vec<&str> = tokens.iter().map(String::as_str).collect();
            let Some((steps, node)) = resolve(schema, &tokens, Mode::Env, Some(tree)) else {
                if !second_phase {
                    warnings.push(ConfigWarning::UnknownEnv {
                        name: (*name).to_owned(),
                    });
                }
                continue;
            };
            if has_entry(&steps) != second_phase {
                continue;
            }
            let resolved = Resolved {
                source: (*name).to_owned(),
                steps: steps.clone(),
                node,
                raw: (*value).to_owned(),
            };
            match chosen.get(&steps) {
                Some((existing_rank, _)) if existing_rank > rank => {}
                _ => {
                    chosen.insert(steps, (*rank, resolved));
                }
            }
        }
        apply_resolved(tree, chosen.into_values().map(|(_, r)| r).collect())?;
    }
    Ok(())
}

/// Applies flags (`dotted.key.path`, value) to `tree`. An unknown path is an error.
pub(crate) fn apply_flags(
    tree: &mut Value,
    schema: &Node,
    flags: &[(String, String)],
) -> Result<(), ConfigError> {
    for second_phase in [false, true] {
        let mut items = Vec::new();
        for (path, value) in flags {
            let tokens: Vec<&str> = path.split('.').collect();
            let Some((steps, node)) = resolve(schema, &tokens, Mode::Flag, Some(tree)) else {
                return Err(ConfigError::InvalidValue {
                    path: path.clone(),
                    reason: "unknown configuration key".to_owned(),
                });
            };
            if has_entry(&steps) == second_phase {
                items.push(Resolved {
                    source: path.clone(),
                    steps,
                    node,
                    raw: value.clone(),
                });
            }
        }
        apply_resolved(tree, items)?;
    }
    Ok(())
}

#[cfg(test)]
#[path = "env_tests.rs"]
mod tests;
