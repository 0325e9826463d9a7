use std::collections::BTreeMap;

use serde_json::json;

use super::*;
use crate::schema::config_schema;
use crate::{ConfigSources, Duration, load};

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// The dotted path an env var resolves to (against an empty tree).
fn env_path(var: &str) -> Option<String> {
    let schema = config_schema().unwrap();
    let tokens: Vec<String> = var.split('_').map(str::to_owned).collect();
    let tokens: Vec<&str> = tokens.iter().map(String::as_str).collect();
    resolve(&schema, &tokens, Mode::Env, None).map(|(steps, _)| dotted(&steps))
}

fn load_env(vars: &[(&str, &str)]) -> crate::Loaded {
    load(&ConfigSources {
        env: pairs(vars),
        ..ConfigSources::default()
    })
    .unwrap()
}

#[test]
fn resolves_paths_whose_keys_contain_underscores() {
    let table: &[(&str, &str)] = &[
        (
            "CLIENT_TOKEN_HMAC_SECRET_KEY",
            "client.token.hmac_secret_key",
        ),
        ("HTTP_SERVER_PORT", "http_server.port"),
        ("HTTP_SERVER_INTERNAL_PORT", "http_server.internal_port"),
        ("HTTP_STREAM_ENABLED", "http_stream.enabled"),
        ("HTTP_API_KEY", "http_api.key"),
        ("UNI_WEBSOCKET_ENABLED", "uni_websocket.enabled"),
        (
            "WEBSOCKET_MESSAGE_SIZE_LIMIT",
            "websocket.message_size_limit",
        ),
        (
            "CLIENT_SUBSCRIPTION_TOKEN_ENABLED",
            "client.subscription_token.enabled",
        ),
        (
            "CLIENT_SUBSCRIPTION_TOKEN_HMAC_SECRET_KEY",
            "client.subscription_token.hmac_secret_key",
        ),
        (
            "CLIENT_PROXY_CONNECT_ENDPOINT",
            "client.proxy.connect.endpoint",
        ),
        (
            "CLIENT_PROXY_CONNECT_HTTP_STATIC_HEADERS",
            "client.proxy.connect.http.static_headers",
        ),
        (
            "CHANNEL_WITHOUT_NAMESPACE_HISTORY_META_TTL",
            "channel.without_namespace.history_meta_ttl",
        ),
        ("CHANNEL_HISTORY_META_TTL", "channel.history_meta_ttl"),
        ("CHANNEL_NAMESPACE_BOUNDARY", "channel.namespace_boundary"),
        ("CHANNEL_NAMESPACES", "channel.namespaces"),
        (
            "CHANNEL_PROXY_SUB_REFRESH_TIMEOUT",
            "channel.proxy.sub_refresh.timeout",
        ),
        (
            "CHANNEL_WITHOUT_NAMESPACE_MAP_MODE",
            "channel.without_namespace.map.mode",
        ),
        ("ENGINE_TYPE", "engine.type"),
        ("ENGINE_REDIS_ADDRESS", "engine.redis.address"),
        ("BROKER_NATS_URL", "broker.nats.url"),
        ("CLIENT", "client"),
        ("MESH_TLS_CA_FILE", "mesh.tls.ca_file"),
        ("RPC_PING_METHOD", "rpc.ping.method"),
    ];
    for (var, want) in table {
        assert_eq!(env_path(var).as_deref(), Some(*want), "{var}");
    }
    for unknown in [
        "CLIENT_TOKEN_HMAC",
        "HTTP_SERVER_PORTS",
        "NOPE",
        "CLIENT__INSECURE",
        "",
    ] {
        assert_eq!(env_path(unknown), None, "{unknown}");
    }
}

#[test]
fn backtracks_when_the_longest_key_leads_nowhere() {
    let leaf = Node::Leaf(Kind::Bool);
    let a_b = Node::Object(BTreeMap::from([("c".to_owned(), leaf.clone())]));
    let a = Node::Object(BTreeMap::from([("b_d".to_owned(), leaf.clone())]));
    let root = Node::Object(BTreeMap::from([
        ("a_b".to_owned(), a_b),
        ("a".to_owned(), a),
    ]));
    let path = |tokens: &[&str]| resolve(&root, tokens, Mode::Env, None).map(|(s, _)| dotted(&s));
    assert_eq!(path(&["A", "B", "C"]).as_deref(), Some("a_b.c"));
    assert_eq!(path(&["A", "B", "D"]).as_deref(), Some("a.b_d"));
    assert_eq!(path(&["A", "B", "E"]), None);
}

#[test]
fn namespace_options_by_name_infer_new_entries() {
    assert_eq!(
        env_path("CHANNEL_NAMESPACES_CHAT_HISTORY_SIZE").as_deref(),
        Some("channel.namespaces.chat.history_size")
    );
    // The shortest name whose rest is an option: `chat_room` since `room_presence` is none.
    assert_eq!(
        env_path("CHANNEL_NAMESPACES_CHAT_ROOM_PRESENCE").as_deref(),
        Some("channel.namespaces.chat_room.presence")
    );
    assert_eq!(
        env_path("CHANNEL_NAMESPACES_CHAT_MAP_KEY_TTL").as_deref(),
        Some("channel.namespaces.chat.map.key_ttl")
    );
    assert_eq!(env_path("CHANNEL_NAMESPACES_CHAT_NAME"), None);
    assert_eq!(env_path("CHANNEL_NAMESPACES_CHAT"), None);
    assert_eq!(
        env_path("PROXIES_AUTH_ENDPOINT").as_deref(),
        Some("proxies.auth.endpoint")
    );
    assert_eq!(
        env_path("RPC_NAMESPACES_USERS_PROXY_ENABLED").as_deref(),
        Some("rpc.namespaces.users.proxy_enabled")
    );
}

#[test]
fn existing_names_are_matched_first_longest_first() {
    let schema = config_schema().unwrap();
    let tree = json!({"channel": {"namespaces": [{"name": "a"}, {"name": "a_presence"}]}});
    let tokens = ["CHANNEL", "NAMESPACES", "A", "PRESENCE", "PRESENCE"];
    let (steps, _) = resolve(&schema, &tokens, Mode::Env, Some(&tree)).unwrap();
    assert_eq!(dotted(&steps), "channel.namespaces.a_presence.presence");
    let tokens = ["CHANNEL", "NAMESPACES", "A", "PRESENCE"];
    let (steps, _) = resolve(&schema, &tokens, Mode::Env, Some(&tree)).unwrap();
    assert_eq!(dotted(&steps), "channel.namespaces.a.presence");
}

#[test]
fn values_are_typed_by_their_key() {
    let loaded = load_env(&[
        ("SPINDLE_CLIENT_INSECURE", "1"),
        ("SPINDLE_HTTP_API_INSECURE", "TRUE"),
        ("SPINDLE_HTTP_SERVER_PORT", "9000"),
        ("SPINDLE_CLIENT_PING_INTERVAL", "30s"),
        (
            "SPINDLE_CLIENT_ALLOWED_ORIGINS",
            "http://a.example  http://b.example",
        ),
        (
            "SPINDLE_ENGINE_REDIS_ADDRESS",
            "[\"redis://r1:6379\", \"r2:6379\"]",
        ),
        ("SPINDLE_CLIENT_TOKEN_HMAC_SECRET_KEY", "s3cret with spaces"),
        ("SPINDLE_CHANNEL_WITHOUT_NAMESPACE", "{\"presence\": true}"),
        ("SPINDLE_LOG_LEVEL", "debug"),
    ]);
    let c = &loaded.config;
    assert!(c.client.insecure && c.http_api.insecure);
    assert_eq!(c.http_server.port, 9000);
    assert_eq!(c.client.ping_interval, Duration::from_secs(30));
    assert_eq!(
        c.client.allowed_origins,
        ["http://a.example", "http://b.example"]
    );
    assert_eq!(c.engine.redis.address, ["redis://r1:6379", "r2:6379"]);
    assert_eq!(
        c.client.token.hmac_secret_key.expose(),
        "s3cret with spaces"
    );
    assert!(c.channel.without_namespace.presence);
    assert_eq!(c.log.level, crate::LogLevel::Debug);
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
}

#[test]
fn badly_typed_values_name_the_variable_and_key() {
    let cases: &[(&str, &str, &str)] = &[
        ("SPINDLE_HTTP_SERVER_PORT", "eighty", "expected an integer"),
        (
            "SPINDLE_CLIENT_INSECURE",
            "yes",
            "expected true, false, 1 or 0",
        ),
        ("SPINDLE_CLIENT_PING_INTERVAL", "25", "missing unit"),
        (
            "SPINDLE_CHANNEL_WITHOUT_NAMESPACE",
            "[1]",
            "expected a JSON object",
        ),
        (
            "SPINDLE_CLIENT_ALLOWED_ORIGINS",
            "[oops",
            "expected a JSON array",
        ),
    ];
    for (var, value, reason) in cases {
        let sources = ConfigSources {
            env: pairs(&[(var, value)]),
            ..ConfigSources::default()
        };
        match load(&sources) {
            Err(ConfigError::InvalidValue { path, reason: got }) => {
                assert!(path.starts_with(var), "{path}");
                assert!(got.contains(reason), "{var}: {got}");
            }
            other => panic!("{var}: {other:?}"),
        }
    }
    // A value of the right JSON type but wrong for the key fails at deserialization.
    let sources = ConfigSources {
        env: pairs(&[("SPINDLE_HTTP_SERVER_PORT", "70000")]),
        ..Default::default()
    };
    let err = load(&sources).unwrap_err();
    assert!(
        matches!(&err, ConfigError::InvalidValue { path, .. } if path == "http_server.port"),
        "{err}"
    );
}

#[test]
fn namespaces_from_names_and_per_namespace_options() {
    let loaded = load_env(&[
        ("SPINDLE_CHANNEL_NAMESPACES", "chat news"),
        ("SPINDLE_CHANNEL_NAMESPACES_CHAT_HISTORY_SIZE", "100"),
        ("SPINDLE_CHANNEL_NAMESPACES_CHAT_HISTORY_TTL", "300s"),
        ("SPINDLE_CHANNEL_NAMESPACES_NEWS_PRESENCE", "true"),
        ("CENTRIFUGO_CHANNEL_NAMESPACES_NEWS_JOIN_LEAVE", "true"),
    ]);
    let c = &loaded.config;
    let names: Vec<&str> = c
        .channel
        .namespaces
        .iter()
        .map(|n| n.name.as_str())
        .collect();
    assert_eq!(names, ["chat", "news"]);
    let chat = c.namespace("chat").unwrap();
    assert_eq!(
        (chat.history_size, chat.history_ttl),
        (100, Duration::from_secs(300))
    );
    let news = c.namespace("news").unwrap();
    assert!(news.presence && news.join_leave);
}

#[test]
fn namespaces_as_json_and_names_keep_file_options() {
    let loaded = load_env(&[(
        "SPINDLE_CHANNEL_NAMESPACES",
        r#"[{"name": "feed", "presence": true}, {"name": "x_y", "join_leave": true}]"#,
    )]);
    assert!(loaded.config.namespace("feed").unwrap().presence);
    assert!(loaded.config.namespace("x_y").unwrap().join_leave);

    let mut tree = json!({"channel": {"namespaces": [{"name": "chat", "presence": true},
                                                     {"name": "old"}]}});
    let schema = config_schema().unwrap();
    let mut warnings = Vec::new();
    let env = pairs(&[
        ("SPINDLE_CHANNEL_NAMESPACES", "chat fresh"),
        ("SPINDLE_CHANNEL_NAMESPACES_CHAT_JOIN_LEAVE", "true"),
    ]);
    apply_env(&mut tree, &schema, &env, &mut warnings).unwrap();
    assert_eq!(
        tree["channel"]["namespaces"],
        json!([{"name": "chat", "presence": true, "join_leave": true}, {"name": "fresh"}])
    );
    assert!(warnings.is_empty());
}

#[test]
fn proxies_and_rpc_namespaces_by_name() {
    let loaded = load_env(&[
        ("SPINDLE_PROXIES_AUTH_ENDPOINT", "http://app:3000/proxy"),
        ("SPINDLE_PROXIES_AUTH_TIMEOUT", "3s"),
        ("SPINDLE_RPC_NAMESPACES_USERS_PROXY_ENABLED", "true"),
        ("SPINDLE_RPC_NAMESPACES_USERS_PROXY_NAME", "auth"),
    ]);
    let c = &loaded.config;
    let auth = c.named_proxy("auth").unwrap();
    assert_eq!(
        (auth.endpoint.as_str(), auth.timeout),
        ("http://app:3000/proxy", Duration::from_secs(3))
    );
    let users = c.rpc_options(Some("users")).unwrap();
    assert!(users.proxy_enabled);
    assert_eq!(users.proxy_name, "auth");
}

#[test]
fn spindle_prefix_wins_over_centrifugo() {
    for order in [
        [
            ("CENTRIFUGO_HTTP_SERVER_PORT", "7000"),
            ("SPINDLE_HTTP_SERVER_PORT", "9000"),
        ],
        [
            ("SPINDLE_HTTP_SERVER_PORT", "9000"),
            ("CENTRIFUGO_HTTP_SERVER_PORT", "7000"),
        ],
    ] {
        assert_eq!(load_env(&order).config.http_server.port, 9000);
    }
    assert_eq!(
        load_env(&[("CENTRIFUGO_HTTP_SERVER_PORT", "7000")])
            .config
            .http_server
            .port,
        7000
    );
    let loaded = load_env(&[
        ("CENTRIFUGO_CHANNEL_NAMESPACES_CHAT_PRESENCE", "false"),
        ("SPINDLE_CHANNEL_NAMESPACES_CHAT_PRESENCE", "true"),
    ]);
    assert!(loaded.config.namespace("chat").unwrap().presence);
}

#[test]
fn unknown_variables_are_warnings_and_others_are_ignored() {
    let loaded = load_env(&[
        ("SPINDLE_CLIENT_TOKEN_HMAC", "x"),
        ("CENTRIFUGO_GRAPHITE_ENABLED", "true"),
        ("SPINDLE_CONFIG", "/etc/spindle.json"),
        ("PATH", "/usr/bin"),
        ("spindle_http_server_port", "1"),
    ]);
    let names: Vec<&str> = loaded.warnings.iter().map(ConfigWarning::subject).collect();
    assert_eq!(
        names,
        ["SPINDLE_CLIENT_TOKEN_HMAC", "CENTRIFUGO_GRAPHITE_ENABLED"]
    );
    assert!(loaded.warnings.iter().all(ConfigWarning::fails_strict));
    assert_eq!(loaded.config.http_server.port, 8000);
}

#[test]
fn flags_use_dotted_paths_and_win_over_env() {
    let sources = ConfigSources {
        env: pairs(&[
            ("SPINDLE_HTTP_SERVER_PORT", "9000"),
            ("SPINDLE_CLIENT_INSECURE", "true"),
        ]),
        flags: pairs(&[
            ("http_server.port", "9100"),
            ("channel.namespaces.chat.presence", "true"),
            ("engine.type", "redis"),
            ("client.insecure", "false"),
        ]),
        ..ConfigSources::default()
    };
    let c = load(&sources).unwrap().config;
    assert_eq!(c.http_server.port, 9100);
    assert!(c.namespace("chat").unwrap().presence);
    assert_eq!(c.engine.kind, crate::EngineType::Redis);
    assert!(!c.client.insecure);
    for bad in [
        "http_server.prot",
        "http_server",
        "channel.namespaces.chat",
        "HTTP_SERVER_PORT",
    ] {
        let sources = ConfigSources {
            flags: pairs(&[(bad, "1")]),
            ..ConfigSources::default()
        };
        match load(&sources) {
            Err(ConfigError::InvalidValue { path, reason })
                if path == bad && reason.contains("unknown") => {}
            Err(ConfigError::InvalidValue { path, .. })
                if bad == "http_server" && path.starts_with(bad) => {}
            other => panic!("{bad}: {other:?}"),
        }
    }
}

#[test]
fn merge_rules() {
    let mut base = json!({"a": {"b": 1, "c": [1, 2]}, "d": "x"});
    merge(
        &mut base,
        json!({"a": {"c": [3], "e": null}, "d": null, "f": true}),
    );
    assert_eq!(base, json!({"a": {"b": 1, "c": [3]}, "d": "x", "f": true}));
}
