use super::*;
use crate::{Duration, RecoveryMode};

fn file(text: &str, format: ConfigFormat) -> ConfigSources {
    ConfigSources {
        file: Some(ConfigFile {
            text: text.to_owned(),
            format,
            name_for_errors: "test.cfg".into(),
        }),
        ..ConfigSources::default()
    }
}

fn json(text: &str) -> ConfigSources {
    file(text, ConfigFormat::Json)
}

fn unknown_paths(loaded: &Loaded) -> Vec<String> {
    loaded
        .warnings
        .iter()
        .filter(|w| matches!(w, ConfigWarning::UnknownKey { .. }))
        .map(|w| w.subject().to_owned())
        .collect()
}

#[test]
fn format_from_extension() {
    let table = [
        ("config.json", Some(ConfigFormat::Json)),
        ("/etc/spindle/config.YAML", Some(ConfigFormat::Yaml)),
        ("c.yml", Some(ConfigFormat::Yaml)),
        ("c.toml", Some(ConfigFormat::Toml)),
        ("c.ini", None),
        ("config", None),
    ];
    for (path, want) in table {
        assert_eq!(ConfigFormat::from_path_extension(path), want, "{path}");
    }
}

#[test]
fn no_sources_gives_the_defaults() {
    let loaded = load(&ConfigSources::default()).unwrap();
    assert_eq!(loaded.config, Config::default());
    assert!(loaded.warnings.is_empty());
    let loaded = load(&json("  \n")).unwrap();
    assert_eq!(loaded.config, Config::default());
}

#[test]
fn parse_errors_name_the_format_and_file() {
    let cases = [
        ("{\"client\": ", ConfigFormat::Json),
        ("client: [1,\n  bad: {", ConfigFormat::Yaml),
        ("[client\ninsecure = true", ConfigFormat::Toml),
        ("[1, 2]", ConfigFormat::Json),
        ("- a\n- b\n", ConfigFormat::Yaml),
    ];
    for (text, format) in cases {
        match load(&file(text, format)) {
            Err(ConfigError::Parse {
                format: got,
                message,
            }) => {
                assert_eq!(got, format);
                assert!(message.starts_with("test.cfg: "), "{message}");
            }
            other => panic!("{text}: {other:?}"),
        }
    }
}

#[test]
fn unknown_keys_are_reported_by_full_path() {
    let text = r#"{
        "client": {"tokn": {"hmac_secret_key": "x"}, "token": {"hmac_secrt_key": "y"}},
        "channel": {"namespaces": [
            {"name": "aa"},
            {"name": "bb", "histroy_size": 10, "map": {"moda": "x"}}
        ]},
        "proxies": [{"name": "p1", "endpoint": "http://h/p", "http": {"static_header": {}}}],
        "client_typo": 1,
        "usage_stats": {"disabled": true},
        "broker": {"redisnats": {"redis": {}}},
        "graphite_x": 1,
        "consumers": [{"name": "c1", "type": "kafka", "anything": {"goes": 1}}]
    }"#;
    let loaded = load(&json(text)).unwrap();
    assert_eq!(
        unknown_paths(&loaded),
        [
            "channel.namespaces[1].histroy_size",
            "channel.namespaces[1].map.moda",
            "client.token.hmac_secrt_key",
            "client.tokn",
            "client_typo",
            "graphite_x",
            "proxies[0].http.static_header",
        ]
    );
    assert!(loaded.warnings.contains(&ConfigWarning::UnsupportedKey {
        path: "usage_stats".into()
    }));
    let redisnats = ConfigWarning::UnsupportedKey {
        path: "broker.redisnats".into(),
    };
    assert!(loaded.warnings.contains(&redisnats));
}

#[test]
fn strict_mode_turns_ignored_keys_into_an_error() {
    let mut sources = json(r#"{"client": {"insecure": true, "insecur": true}, "graphite": {}}"#);
    sources.env = vec![("SPINDLE_NOT_A_KEY".into(), "1".into())];
    assert_eq!(load(&sources).unwrap().warnings.len(), 3);
    sources.strict = true;
    assert_eq!(
        load(&sources),
        Err(ConfigError::UnknownKeys(vec![
            "SPINDLE_NOT_A_KEY".into(),
            "client.insecur".into(),
            "graphite".into()
        ]))
    );
}

#[test]
fn type_errors_name_the_key_path() {
    let cases: &[(&str, &str, &str)] = &[
        (
            r#"{"client": {"ping_interval": "25"}}"#,
            "client.ping_interval",
            "missing unit",
        ),
        (r#"{"client": "yes"}"#, "client", "invalid type"),
        (
            r#"{"http_server": {"port": 70000}}"#,
            "http_server.port",
            "70000",
        ),
        (
            r#"{"channel": {"namespaces": [{"name": "a"}, {"name": "b", "force_recovery_mode": "cach"}]}}"#,
            "channel.namespaces[1].force_recovery_mode",
            "unknown value \"cach\" (accepted: \"stream\", \"\", \"cache\")",
        ),
        (
            r#"{"channel": {"without_namespace": {"allowed_delta_types": ["fossil", "xdelta"]}}}"#,
            "channel.without_namespace.allowed_delta_types[1]",
            "accepted: \"fossil\"",
        ),
        (
            r#"{"engine": {"type": "etcd"}}"#,
            "engine.type",
            "accepted: \"memory\", \"redis\"",
        ),
        (r#"{"log": {"level": "verbose"}}"#, "log.level", "\"warn\""),
        (
            r#"{"client": {"channel_limit": -1}}"#,
            "client.channel_limit",
            "-1",
        ),
        (
            r#"{"proxies": [{"name": "p", "timeout": "1x"}]}"#,
            "proxies[0].timeout",
            "unknown unit",
        ),
        (
            r#"{"engine": {"redis": {"address": [1]}}}"#,
            "engine.redis.address[0]",
            "invalid type",
        ),
    ];
    for (text, path, reason) in cases {
        match load(&json(text)) {
            Err(ConfigError::InvalidValue {
                path: got_path,
                reason: got,
            }) => {
                assert_eq!(got_path, *path, "{text}");
                assert!(got.contains(reason), "{text}: {got}");
            }
            other => panic!("{text}: {other:?}"),
        }
    }
}

#[test]
fn file_values_are_coerced_like_centrifugo() {
    let yaml = "http_server:\n  port: \"9000\"\n  internal_port: 9001\nclient:\n  insecure: \"true\"\n  \
                allowed_origins: \"*\"\n  token:\n    hmac_secret_key: 12345\n";
    let c = load(&file(yaml, ConfigFormat::Yaml)).unwrap().config;
    assert_eq!(
        (c.http_server.port, c.http_server.internal_port),
        (9000, 9001)
    );
    assert!(c.client.insecure);
    assert_eq!(c.client.allowed_origins, ["*"]);
    assert_eq!(c.client.token.hmac_secret_key.expose(), "12345");
}

#[test]
fn null_in_a_file_means_unset() {
    let c = load(&json(r#"{"client": null, "http_server": {"port": null}}"#))
        .unwrap()
        .config;
    assert_eq!(c.client, Config::default().client);
    assert_eq!(c.http_server.port, 8000);
}

#[test]
fn precedence_is_defaults_file_env_flags() {
    let mut sources = json(
        r#"{"http_server": {"port": 8100, "address": "10.0.0.1"},
                               "client": {"insecure": true, "channel_limit": 64}}"#,
    );
    assert_eq!(load(&sources).unwrap().config.http_server.port, 8100);
    sources.env = vec![("SPINDLE_HTTP_SERVER_PORT".into(), "8200".into())];
    assert_eq!(load(&sources).unwrap().config.http_server.port, 8200);
    sources.flags = vec![("http_server.port".into(), "8300".into())];
    let c = load(&sources).unwrap().config;
    assert_eq!(c.http_server.port, 8300);
    assert_eq!(c.http_server.address, "10.0.0.1");
    assert!(c.client.insecure);
    assert_eq!(c.client.channel_limit, 64);
    assert_eq!(c.client.queue_max_size, 1_048_576);
}

#[test]
fn env_options_merge_into_file_namespaces() {
    let mut sources = json(
        r#"{"channel": {"namespaces": [{"name": "chat", "history_size": 10, "history_ttl": "60s"}]}}"#,
    );
    sources.env = vec![
        (
            "CENTRIFUGO_CHANNEL_NAMESPACES_CHAT_FORCE_RECOVERY".into(),
            "true".into(),
        ),
        (
            "CENTRIFUGO_CHANNEL_NAMESPACES_CHAT_FORCE_RECOVERY_MODE".into(),
            "cache".into(),
        ),
    ];
    let c = load(&sources).unwrap().config;
    let chat = c.namespace("chat").unwrap();
    assert!(chat.force_recovery);
    assert_eq!(chat.force_recovery_mode, RecoveryMode::Cache);
    assert_eq!(chat.history_ttl, Duration::from_secs(60));
    assert_eq!(c.channel.namespaces.len(), 1);
}

#[test]
fn zero_limits_become_defaults_with_warnings() {
    let loaded = load(&json(
        r#"{"client": {"channel_limit": 0, "queue_max_size": 0}}"#,
    ))
    .unwrap();
    assert_eq!(loaded.config.client.channel_limit, 128);
    assert_eq!(loaded.config.client.queue_max_size, 1_048_576);
    let subjects: Vec<&str> = loaded.warnings.iter().map(ConfigWarning::subject).collect();
    assert_eq!(subjects, ["client.channel_limit", "client.queue_max_size"]);
}

#[test]
fn validation_runs_on_load() {
    let err = load(&json(r#"{"channel": {"namespaces": [{"name": "x"}]}}"#)).unwrap_err();
    assert_eq!(
        err,
        ConfigError::Invalid(vec![crate::ConfigProblem {
            path: "channel.namespaces[0].name".into(),
            reason: "\"x\" must match ^[-a-zA-Z0-9_.]{2,}$".into(),
        }])
    );
}

#[test]
fn debug_of_sources_hides_values() {
    let mut sources = json(r#"{"http_api": {"key": "top-secret"}}"#);
    sources.env = vec![("SPINDLE_HTTP_API_KEY".into(), "env-secret".into())];
    sources.flags = vec![("admin.password".into(), "flag-secret".into())];
    let shown = format!("{sources:?}");
    assert!(shown.contains("SPINDLE_HTTP_API_KEY") && shown.contains("admin.password"));
    for secret in ["top-secret", "env-secret", "flag-secret"] {
        assert!(!shown.contains(secret), "{shown}");
    }
    let loaded = load(&sources).unwrap();
    assert!(!format!("{loaded:?}").contains("env-secret"));
    assert_eq!(loaded.config.http_api.key.expose(), "env-secret");
    assert_eq!(loaded.config.admin.password.expose(), "flag-secret");
}
