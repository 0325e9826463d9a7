//! Whole-tree tests: the checked-in defaults file, the minimal config of PROTOCOL §7.5 in every
//! format, lookups.

use super::*;

const DEFAULTS_FILE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../infra/config/defaults.json");

fn defaults_json() -> String {
    let mut text = serde_json::to_string_pretty(&Config::default()).unwrap();
    text.push('\n');
    text
}

/// `infra/config/defaults.json` is `Config::default()`; `SPINDLE_BLESS=1` rewrites it.
#[test]
fn defaults_file_matches_the_defaults() {
    let want = defaults_json();
    if std::env::var("SPINDLE_BLESS").as_deref() == Ok("1") {
        std::fs::write(DEFAULTS_FILE, &want).unwrap();
    }
    let have = std::fs::read_to_string(DEFAULTS_FILE).unwrap_or_default();
    assert!(
        have == want,
        "{DEFAULTS_FILE} is stale; rerun with SPINDLE_BLESS=1"
    );
}

#[test]
fn serialized_defaults_load_back_unchanged_and_without_warnings() {
    let sources = ConfigSources {
        file: Some(ConfigFile {
            text: defaults_json(),
            format: ConfigFormat::Json,
            name_for_errors: "defaults".into(),
        }),
        ..ConfigSources::default()
    };
    let loaded = load(&sources).unwrap();
    assert_eq!(loaded.config, Config::default());
    assert_eq!(loaded.warnings, Vec::new());
    let value = serde_json::to_value(Config::default()).unwrap();
    assert_eq!(value["client"]["ping_interval"], "25s");
    assert_eq!(value["channel"]["history_meta_ttl"], "720h0m0s");
    assert_eq!(value["http_server"]["port"], 8000);
    assert_eq!(value["uni_grpc"]["port"], 11000);
    assert_eq!(value["websocket"]["write_timeout"], "1s");
    assert_eq!(value["engine"]["type"], "memory");
}

const MINIMAL_JSON: &str = r#"{
  "client": {"token": {"hmac_secret_key": "secret"}, "allowed_origins": ["http://localhost:3000"]},
  "http_api": {"key": "api-key"},
  "channel": {
    "without_namespace": {"allow_subscribe_for_client": true},
    "namespaces": [
      {"name": "chat", "presence": true, "join_leave": true, "force_push_join_leave": true,
       "history_size": 100, "history_ttl": "300s", "force_recovery": true,
       "allow_subscribe_for_client": true, "allow_publish_for_subscriber": true,
       "allowed_delta_types": ["fossil"]}
    ]
  },
  "admin": {"enabled": false, "password": "p", "secret": "s"}
}"#;

const MINIMAL_YAML: &str = r#"
client:
  token:
    hmac_secret_key: secret
  allowed_origins:
    - http://localhost:3000
http_api:
  key: api-key
channel:
  without_namespace:
    allow_subscribe_for_client: true
  namespaces:
    - name: chat
      presence: true
      join_leave: true
      force_push_join_leave: true
      history_size: 100
      history_ttl: 300s
      force_recovery: true
      allow_subscribe_for_client: true
      allow_publish_for_subscriber: true
      allowed_delta_types: [fossil]
admin:
  enabled: false
  password: p
  secret: s
"#;

const MINIMAL_TOML: &str = r#"
[client]
allowed_origins = ["http://localhost:3000"]

[client.token]
hmac_secret_key = "secret"

[http_api]
key = "api-key"

[channel.without_namespace]
allow_subscribe_for_client = true

[[channel.namespaces]]
name = "chat"
presence = true
join_leave = true
force_push_join_leave = true
history_size = 100
history_ttl = "300s"
force_recovery = true
allow_subscribe_for_client = true
allow_publish_for_subscriber = true
allowed_delta_types = ["fossil"]

[admin]
enabled = false
password = "p"
secret = "s"
"#;

#[test]
fn minimal_protocol_config_loads_in_every_format() {
    let forms = [
        (MINIMAL_JSON, ConfigFormat::Json),
        (MINIMAL_YAML, ConfigFormat::Yaml),
        (MINIMAL_TOML, ConfigFormat::Toml),
    ];
    for (text, format) in forms {
        let sources = ConfigSources {
            file: Some(ConfigFile {
                text: text.into(),
                format,
                name_for_errors: "minimal".into(),
            }),
            ..ConfigSources::default()
        };
        let Loaded { config, warnings } = load(&sources).unwrap();
        assert_eq!(warnings, Vec::new(), "{format}");
        assert_eq!(
            config.client.token.hmac_secret_key.expose(),
            "secret",
            "{format}"
        );
        assert_eq!(config.client.allowed_origins, ["http://localhost:3000"]);
        assert_eq!(config.http_api.key.expose(), "api-key");
        assert!(config.channel.without_namespace.allow_subscribe_for_client);
        assert_eq!(config.channel.namespaces.len(), 1);
        let chat = config.namespace("chat").unwrap();
        assert!(chat.presence && chat.join_leave && chat.force_push_join_leave);
        assert_eq!(
            (chat.history_size, chat.history_ttl),
            (100, Duration::from_secs(300))
        );
        assert!(chat.force_recovery && chat.allow_subscribe_for_client);
        assert!(chat.allow_publish_for_subscriber && !chat.allow_publish_for_client);
        assert_eq!(chat.allowed_delta_types, [DeltaType::Fossil]);
        assert_eq!(chat.force_recovery_mode, RecoveryMode::Stream);
        assert!(!config.admin.enabled);
        assert_eq!(
            (config.admin.password.expose(), config.admin.secret.expose()),
            ("p", "s")
        );
        // Everything else keeps its default.
        assert_eq!(config.client.ping_interval, Duration::from_secs(25));
        assert_eq!(config.http_server, HttpServer::default());
        let shown = format!("{config:?}");
        assert!(
            !shown.contains("api-key") && !shown.contains("\"secret\""),
            "{format}"
        );
    }
}

#[test]
fn lookups() {
    let mut config = Config::default();
    let chat = ChannelOptions {
        presence: true,
        ..ChannelOptions::default()
    };
    config
        .channel
        .namespaces
        .push(Namespace::new("chat", chat.clone()));
    config.rpc.namespaces.push(RpcNamespace {
        name: "users".into(),
        options: RpcOptions {
            proxy_enabled: true,
            ..RpcOptions::default()
        },
    });
    config.proxies.push(NamedProxy {
        name: "auth".into(),
        proxy: Proxy::default(),
    });
    assert_eq!(config.namespace("chat"), Some(&chat));
    assert_eq!(config.namespace("news"), None);
    assert_eq!(config.channel_options(Some("chat")), Some(&chat));
    assert_eq!(
        config.channel_options(None),
        Some(&config.channel.without_namespace)
    );
    assert_eq!(config.channel_options(Some("news")), None);
    assert!(config.rpc_options(Some("users")).unwrap().proxy_enabled);
    assert!(!config.rpc_options(None).unwrap().proxy_enabled);
    assert_eq!(config.rpc_options(Some("posts")), None);
    assert!(config.named_proxy("auth").is_some());
    assert!(config.named_proxy("default").is_none());
}
