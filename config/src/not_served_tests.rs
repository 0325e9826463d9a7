use std::collections::BTreeSet;

use super::super::error::ConfigError;
use super::super::schema::{Node, config_schema};
use super::*;

/// The keys code acts on, one schema path per line (`[]` for each element of a named list).
const ACTING_KEYS: &str = include_str!("acting_keys.txt");

const ACTING_KEYS_HEADER: &str = "\
# Every configuration key some code acts on (one schema path per line, [] for each element
# of a named list). The others are NOT_SERVED in not_served.rs, named in a warning at start.
# The test every_key_acts_or_is_not_served fails on a key in neither list: read the code
# that should act on a new key, then add it here or to NOT_SERVED (SPINDLE_BLESS=1 rewrites
# this file from the schema, everything not listed as not served counted as acting).
";

/// Every leaf path of the schema, `[]` marking named-list elements.
fn schema_leaves() -> Vec<String> {
    fn walk(node: &Node, path: &str, out: &mut Vec<String>) {
        match node {
            Node::Object(children) => {
                for (key, child) in children {
                    let child_path = if path.is_empty() {
                        key.clone()
                    } else {
                        format!("{path}.{key}")
                    };
                    walk(child, &child_path, out);
                }
            }
            Node::NamedList(element) => walk(element, &format!("{path}[]"), out),
            Node::Leaf(_) => out.push(path.to_owned()),
        }
    }
    let mut out = Vec::new();
    walk(&config_schema().unwrap(), "", &mut out);
    out
}

fn not_served(path: &str) -> bool {
    NOT_SERVED.iter().any(|(key, _)| {
        path.strip_prefix(key)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with(['.', '[']))
    })
}

#[test]
fn every_key_acts_or_is_not_served() {
    let leaves = schema_leaves();
    if std::env::var("SPINDLE_BLESS").as_deref() == Ok("1") {
        // After reading the code that acts on each new key: every key not listed as not
        // served is recorded as acting.
        let mut text = String::from(ACTING_KEYS_HEADER);
        for leaf in leaves.iter().filter(|leaf| !not_served(leaf)) {
            text.push_str(leaf);
            text.push('\n');
        }
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/src/acting_keys.txt");
        std::fs::write(path, text).unwrap();
        return;
    }
    let acting: BTreeSet<&str> = ACTING_KEYS
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .collect();
    let unclassified: Vec<&String> = leaves
        .iter()
        .filter(|leaf| !acting.contains(leaf.as_str()) && !not_served(leaf))
        .collect();
    assert!(
        unclassified.is_empty(),
        "keys neither acted on (config/src/acting_keys.txt) nor listed as not served \
         (NOT_SERVED in config/src/not_served.rs): {unclassified:?}"
    );
    let known: BTreeSet<&str> = leaves.iter().map(String::as_str).collect();
    let stale: Vec<&&str> = acting.iter().filter(|key| !known.contains(**key)).collect();
    assert!(
        stale.is_empty(),
        "acting_keys.txt names keys the schema does not have: {stale:?}"
    );
    let both: Vec<&&str> = acting.iter().filter(|key| not_served(key)).collect();
    assert!(both.is_empty(), "keys both acting and not served: {both:?}");
    for (key, _) in NOT_SERVED {
        let bare = key.replace("[]", "");
        assert!(
            leaves
                .iter()
                .any(|leaf| leaf.replace("[]", "").starts_with(&bare)),
            "NOT_SERVED names {key}, which the schema does not have"
        );
    }
}

#[test]
fn a_not_served_key_away_from_its_default_is_named_and_fails_strict_mode() {
    use super::super::load::{ConfigFile, ConfigFormat, ConfigSources, load};
    assert!(not_served_warnings(&Config::default()).is_empty());
    let text = r#"{
        "client": {"token": {"hmac_secret_key": "s"}},
        "grpc_api": {"enabled": true, "port": 10000},
        "pid_file": "/run/spindle.pid",
        "admin": {"enabled": false, "password": "switched off: nothing is missed"},
        "channel": {"proxy": {"shared_poll_refresh": {"http_headers": ["cookie"]}}},
        "proxies": [{"name": "backend", "endpoint": "http://127.0.0.1:1", "grpc_metadata": ["x"]}]
    }"#;
    let mut sources = ConfigSources {
        file: Some(ConfigFile {
            text: text.to_owned(),
            format: ConfigFormat::Json,
            name_for_errors: "test.json".to_owned(),
        }),
        ..ConfigSources::default()
    };
    let loaded = load(&sources).unwrap();
    let mut named: Vec<&str> = loaded
        .warnings
        .iter()
        .filter(|w| matches!(w, ConfigWarning::NotServed { .. }))
        .map(ConfigWarning::subject)
        .collect();
    named.sort_unstable();
    // Only what differs from the default is named: `grpc_api.port` is its default.
    assert_eq!(
        named,
        [
            "channel.proxy.shared_poll_refresh.http_headers",
            "grpc_api.enabled",
            "pid_file",
            "proxies[0].grpc_metadata"
        ]
    );
    assert!(
        loaded.warnings.iter().any(|w| w.to_string()
            == "pid_file: not served by Spindle yet, no effect: no pid file is written"),
        "{:?}",
        loaded.warnings
    );
    sources.strict = true;
    assert!(matches!(load(&sources), Err(ConfigError::UnknownKeys(keys)) if keys.len() == 4));
}
