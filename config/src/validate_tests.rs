use super::*;
use crate::{
    ChannelOptions, Namespace, Proxy, RpcNamespace, StatusToCodeTransform, UniDisconnectTransform,
};

pub(crate) fn problems(config: &Config) -> Vec<String> {
    match config.validate() {
        Ok(()) => Vec::new(),
        Err(ConfigError::Invalid(list)) => list.iter().map(ToString::to_string).collect(),
        Err(other) => panic!("unexpected error {other:?}"),
    }
}

/// Exactly one problem, at `path`, whose reason contains `reason`.
#[track_caller]
pub(crate) fn assert_one(config: &Config, path: &str, reason: &str) {
    let found = problems(config);
    assert_eq!(found.len(), 1, "{found:#?}");
    let prefix = format!("{path}: ");
    assert!(
        found[0].starts_with(&prefix) && found[0].contains(reason),
        "{found:#?}"
    );
}

pub(crate) fn with_namespace(options: ChannelOptions) -> Config {
    let mut config = Config::default();
    config
        .channel
        .namespaces
        .push(Namespace::new("chat", options));
    config
}

pub(crate) fn history(size: u32, ttl_secs: u64) -> ChannelOptions {
    ChannelOptions {
        history_size: size,
        history_ttl: Duration::from_secs(ttl_secs),
        ..Default::default()
    }
}

pub(crate) fn proxy(endpoint: &str) -> Proxy {
    Proxy {
        endpoint: endpoint.to_owned(),
        ..Proxy::default()
    }
}

#[test]
fn defaults_are_valid() {
    assert_eq!(problems(&Config::default()), Vec::<String>::new());
}

#[test]
fn collects_every_problem() {
    let mut config = with_namespace(ChannelOptions {
        history_size: 5,
        ..Default::default()
    });
    config.client.pong_timeout = Duration::from_secs(30);
    config.mesh.cores = vec!["nohost".into()];
    let found = problems(&config);
    assert_eq!(found.len(), 3, "{found:#?}");
    assert!(found[0].starts_with("client.ping_interval: 25s must be greater"));
    assert!(
        found[1].starts_with("channel.namespaces[0].history_size: history_size and history_ttl")
    );
    assert!(found[2].starts_with("mesh.cores[0]: "));
}

#[test]
fn proxy_objects() {
    let mut config = Config::default();
    config.client.proxy.connect.enabled = true;
    config.client.proxy.connect.proxy = proxy("ftp://x");
    assert_one(&config, "client.proxy.connect.endpoint", "expected http(s)");
    config.client.proxy.connect.proxy = Proxy {
        timeout: Duration::ZERO,
        ..proxy("https://x/c")
    };
    assert_one(&config, "client.proxy.connect.timeout", "must not be 0");
    config.client.proxy.connect.proxy.timeout = Duration::from_secs(7_200);
    assert_one(&config, "client.proxy.connect.timeout", "outside");
    let mut p = proxy("https://x/c");
    p.http.status_to_code_transforms = vec![StatusToCodeTransform {
        status_code: 404,
        ..Default::default()
    }];
    config.client.proxy.connect.proxy = p.clone();
    assert_one(
        &config,
        "client.proxy.connect.http.status_to_code_transforms[0]",
        "set to_error.code",
    );
    p.http.status_to_code_transforms[0].to_error.code = 100;
    p.http.status_to_code_transforms[0].to_disconnect.code = 3500;
    config.client.proxy.connect.proxy = p.clone();
    assert_one(
        &config,
        "client.proxy.connect.http.status_to_code_transforms[0]",
        "only one",
    );
    p.http.status_to_code_transforms[0].to_disconnect.code = 0;
    p.http.status_to_code_transforms[0].to_error.message = "x".repeat(124);
    config.client.proxy.connect.proxy = p;
    assert_one(
        &config,
        "client.proxy.connect.http.status_to_code_transforms[0].to_error.message",
        "123",
    );
}

#[test]
fn ping_must_exceed_pong() {
    let mut config = Config::default();
    config.client.ping_interval = Duration::from_secs(8);
    assert_one(
        &config,
        "client.ping_interval",
        "8s must be greater than client.pong_timeout (8s)",
    );
    config.client.ping_interval = Duration::from_secs(7_200);
    assert_one(&config, "client.ping_interval", "outside");
}

#[test]
fn token_rules() {
    for base in ["client.token", "client.subscription_token"] {
        let set = |f: &dyn Fn(&mut crate::Token)| {
            let mut config = Config::default();
            if base == "client.token" {
                f(&mut config.client.token);
            } else {
                f(&mut config.client.subscription_token.token);
            }
            config
        };
        let both_aud = set(&|t| {
            t.audience = "a".into();
            t.audience_regex = "^a$".into();
        });
        assert_one(
            &both_aud,
            &format!("{base}.audience_regex"),
            "cannot be used together",
        );
        let both_iss = set(&|t| {
            t.issuer = "i".into();
            t.issuer_regex = "^i$".into();
        });
        assert_one(
            &both_iss,
            &format!("{base}.issuer_regex"),
            "cannot be used together",
        );
        assert_one(
            &set(&|t| t.issuer_regex = "(".into()),
            &format!("{base}.issuer_regex"),
            "invalid regex",
        );
        assert_one(
            &set(&|t| t.user_id_claim = "user-id".into()),
            &format!("{base}.user_id_claim"),
            "^[a-zA-Z_]+$",
        );
        assert_eq!(
            problems(&set(&|t| t.user_id_claim = "user_id".into())),
            Vec::<String>::new()
        );
        assert_one(
            &set(&|t| t.jwks_public_endpoint = "ftp://k".into()),
            &format!("{base}.jwks_public_endpoint"),
            "http",
        );
    }
}

#[test]
fn personal_channel_rules() {
    let mut config = Config::default();
    config.client.subscribe_to_user_personal_channel.enabled = true;
    config
        .client
        .subscribe_to_user_personal_channel
        .personal_channel_namespace = "personal".into();
    assert_one(
        &config,
        "client.subscribe_to_user_personal_channel.personal_channel_namespace",
        "namespace \"personal\" not found",
    );
    config
        .channel
        .namespaces
        .push(Namespace::new("personal", ChannelOptions::default()));
    config
        .client
        .subscribe_to_user_personal_channel
        .single_connection = true;
    assert_one(
        &config,
        "client.subscribe_to_user_personal_channel.single_connection",
        "presence",
    );
    config.channel.namespaces[0].options.presence = true;
    assert_eq!(problems(&config), Vec::<String>::new());
}

#[test]
fn unidirectional_transforms() {
    let mut config = Config::default();
    let mut t = UniDisconnectTransform {
        code: 0,
        ..Default::default()
    };
    t.to.reason = "é".into();
    config
        .client
        .connect_code_to_unidirectional_disconnect
        .transforms = vec![t];
    let found = problems(&config);
    let base = "client.connect_code_to_unidirectional_disconnect.transforms[0]";
    assert_eq!(
        found,
        [
            format!("{base}.code: must be set"),
            format!("{base}.to.code: must be set"),
            format!("{base}.to.reason: must be ASCII"),
        ]
    );
}

#[test]
fn engine_rules() {
    let mut config = Config::default();
    config.engine.redis.address = vec!["redis://ok:6379".into(), "nohostport".into()];
    assert_one(&config, "engine.redis.address[1]", "expected host:port");
    config.engine.redis.address.clear();
    assert_eq!(
        problems(&config),
        Vec::<String>::new(),
        "not in use: no address needed"
    );
    config.engine.kind = crate::EngineType::Redis;
    assert_one(&config, "engine.redis.address", "no Redis address");
    config.engine.redis.sentinel_address = vec!["s1:26379,s2:26379".into()];
    assert_one(&config, "engine.redis.sentinel_master_name", "required");
    let mut config = Config::default();
    config.broker.enabled = true;
    config.broker.kind = crate::BrokerType::Postgres;
    assert_one(&config, "broker.postgres.dsn", "must be set");
    config.broker.kind = crate::BrokerType::RedisNats;
    assert_one(&config, "broker.type", "not supported");
}

#[test]
fn bounds() {
    type Mutate = fn(&mut Config);
    let cases: &[(&str, Mutate, &str)] = &[
        (
            "client.channel_limit",
            |c| c.client.channel_limit = 2_000_000,
            "outside 1..=1000000",
        ),
        (
            "client.queue_max_size",
            |c| c.client.queue_max_size = 10,
            "outside",
        ),
        (
            "client.concurrency",
            |c| c.client.concurrency = 5_000,
            "outside",
        ),
        (
            "websocket.message_size_limit",
            |c| c.websocket.message_size_limit = 128 << 20,
            "outside",
        ),
        (
            "websocket.compression_level",
            |c| c.websocket.compression_level = 10,
            "outside -2..=9",
        ),
        (
            "sse.max_request_body_size",
            |c| c.sse.max_request_body_size = 10,
            "outside",
        ),
        (
            "channel.max_length",
            |c| c.channel.max_length = 70_000,
            "outside",
        ),
        (
            "grpc_api.max_receive_message_size",
            |c| c.grpc_api.max_receive_message_size = u32::MAX,
            "outside",
        ),
        (
            "broker.postgres.pool_size",
            |c| c.broker.postgres.pool_size = 5_000,
            "outside",
        ),
        (
            "broker.postgres.partition_retention_days",
            |c| c.broker.postgres.partition_retention_days = 5_000,
            "outside 1..=3650",
        ),
        (
            "shared_poll.concurrency_limit",
            |c| c.shared_poll.concurrency_limit = 1_000_000,
            "outside",
        ),
        (
            "channel.namespace_boundary",
            |c| c.channel.namespace_boundary.clear(),
            "must not be empty",
        ),
        (
            "http_api.handler_prefix",
            |c| c.http_api.handler_prefix = "api".into(),
            "must start with '/'",
        ),
        (
            "webtransport.enabled",
            |c| c.webtransport.enabled = true,
            "http3",
        ),
        (
            "http_server.h2c_external",
            |c| c.http_server.h2c_external = true,
            "internal_port",
        ),
        (
            "http_server.tls",
            |c| c.http_server.tls.enabled = true,
            "cert_pem",
        ),
    ];
    for (path, mutate, reason) in cases {
        let mut config = Config::default();
        mutate(&mut config);
        assert_one(&config, path, reason);
    }
}

#[test]
fn mesh_rules() {
    let mut config = Config::default();
    config.mesh.listen = "nope".into();
    assert_one(&config, "mesh.listen", "expected host:port");
    let mut config = Config::default();
    config.mesh.tls.cert_file = "c.pem".into();
    assert_one(&config, "mesh.tls", "together");
    let mut config = Config::default();
    config.mesh.heartbeat_interval = Duration::from_millis(10);
    assert_one(&config, "mesh.heartbeat_interval", "outside");
    config.mesh.heartbeat_interval = Duration::from_millis(500);
    config.mesh.cores = vec!["core-a:7100".into(), "core-b:0".into()];
    assert_one(&config, "mesh.cores[1]", "port 0");
    let mut config = Config::default();
    // A link timeout shorter than two heartbeats would drop healthy links.
    config.mesh.link_timeout = Duration::from_millis(900);
    assert_one(&config, "mesh.link_timeout", "outside");
    let mut config = Config::default();
    config.mesh.lanes = 65;
    assert_one(&config, "mesh.lanes", "outside");
    let mut config = Config::default();
    config.mesh.node_name = "edge_1".into();
    assert_one(&config, "mesh.node_name", "DNS name");
    config.mesh.node_name = "edge-1.eu".into();
    assert!(config.validate().is_ok());
}

#[test]
fn consumer_rules() {
    let config = Config {
        consumers: vec![
            serde_json::json!({"name": "orders", "type": "kafka"}),
            serde_json::json!({"name": "orders", "type": "kafka"}),
            serde_json::json!({"name": "bad-name", "type": "kafka"}),
            serde_json::json!({"name": "nt"}),
            serde_json::json!("str"),
        ],
        ..Config::default()
    };
    assert_eq!(
        problems(&config),
        [
            "consumers[1].name: duplicate consumer name \"orders\"",
            "consumers[2].name: \"bad-name\" must match ^[a-zA-Z0-9_]{2,}$",
            "consumers[3].type: must be set",
            "consumers[4]: must be an object",
        ]
    );
}

#[test]
fn rpc_rules() {
    let mut config = Config::default();
    config.rpc.namespaces = vec![
        RpcNamespace {
            name: "u".into(),
            ..Default::default()
        },
        RpcNamespace {
            name: "users".into(),
            ..Default::default()
        },
        RpcNamespace {
            name: "users".into(),
            ..Default::default()
        },
    ];
    config.rpc.namespaces[1].options.proxy_name = "ghost".into();
    config.rpc.without_namespace.proxy_enabled = true;
    config.rpc.ping.enabled = true;
    config.rpc.ping.method.clear();
    assert_eq!(
        problems(&config),
        [
            "rpc.namespaces[0].name: \"u\" must match ^[-a-zA-Z0-9_.]{2,}$",
            "rpc.namespaces[1].proxy_name: proxy \"ghost\" not found in proxies",
            "rpc.namespaces[2].name: duplicate rpc namespace name \"users\"",
            "rpc.proxy.endpoint: must be set",
            "rpc.ping.method: must be set when rpc.ping.enabled",
        ]
    );
}

#[test]
fn allowed_origins_must_be_globs() {
    let mut config = Config::default();
    config.client.allowed_origins = vec!["https://*.example.com".into(), "https://[a".into()];
    assert_one(&config, "client.allowed_origins[1]", "unclosed '['");
    config.client.allowed_origins = vec!["https://{a,b}.example.com".into(), "*".into()];
    assert!(problems(&config).is_empty());
}

#[test]
fn each_role_requires_what_it_uses() {
    use crate::Role;
    // A subscribe proxy switched on without an endpoint: the edge asks its core, which calls
    // the backend; serve and core call it themselves.
    let mut config = Config::default();
    config.channel.without_namespace.subscribe_proxy_enabled = true;
    config.mesh.node_name = "node-1".into();
    config.mesh.tls.cert_file = "c.pem".into();
    config.mesh.tls.key_file = "k.pem".into();
    config.mesh.tls.ca_file = "ca.pem".into();
    config.mesh.cores = vec!["core-1:7100".into()];
    assert!(config.validate_for(Role::Edge).is_ok());
    let paths = |role| match config.validate_for(role) {
        Err(ConfigError::Invalid(problems)) => {
            problems.into_iter().map(|p| p.path).collect::<Vec<_>>()
        }
        other => panic!("{other:?}"),
    };
    let expected: Vec<String> = vec!["channel.proxy.subscribe.endpoint".into()];
    assert_eq!(paths(Role::Serve), expected);
    assert_eq!(paths(Role::Core), expected);

    // The mesh: edges and cores need certificates and a name, an edge a core to dial; serve
    // needs none of it.
    let bare = Config::default();
    assert!(bare.validate_for(Role::Serve).is_ok());
    let problems = |role| match bare.validate_for(role) {
        Err(ConfigError::Invalid(problems)) => {
            problems.into_iter().map(|p| p.path).collect::<Vec<_>>()
        }
        other => panic!("{other:?}"),
    };
    assert_eq!(problems(Role::Core), ["mesh.tls", "mesh.node_name"]);
    assert_eq!(
        problems(Role::Edge),
        ["mesh.tls", "mesh.node_name", "mesh.cores"]
    );
}
