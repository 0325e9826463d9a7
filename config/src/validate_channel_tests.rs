//! Tests of the channel, namespace, map, shared-poll and proxy-reference rules.

use super::super::validate::tests::{assert_one, history, problems, proxy, with_namespace};
use crate::{
    ChannelOptions, Config, Duration, MapClientKey, MapMode, NamedProxy, Namespace, RecoveryMode,
    Secret, SharedPollMode, SubscriptionType,
};

#[test]
fn namespace_names() {
    for bad in ["x", "", "has space", "a:b", "ünï"] {
        let mut config = Config::default();
        config
            .channel
            .namespaces
            .push(Namespace::new(bad, ChannelOptions::default()));
        assert_one(
            &config,
            "channel.namespaces[0].name",
            "must match ^[-a-zA-Z0-9_.]{2,}$",
        );
    }
    let mut config = Config::default();
    for name in ["ok", "a-b_c.d", "ok"] {
        config
            .channel
            .namespaces
            .push(Namespace::new(name, ChannelOptions::default()));
    }
    assert_one(
        &config,
        "channel.namespaces[2].name",
        "duplicate namespace name \"ok\"",
    );
}

#[test]
fn history_rules() {
    assert_one(
        &with_namespace(history(10, 0)),
        "channel.namespaces[0].history_size",
        "set together",
    );
    assert_one(
        &with_namespace(history(0, 60)),
        "channel.namespaces[0].history_size",
        "set together",
    );
    assert_eq!(
        problems(&with_namespace(history(10, 60))),
        Vec::<String>::new()
    );
    let mut o = history(10, 60);
    o.history_ttl = Duration::from_millis(1_500);
    assert_one(
        &with_namespace(o),
        "channel.namespaces[0].history_ttl",
        "sub-second",
    );
    let mut o = history(10, 600);
    o.history_meta_ttl = Duration::from_secs(300);
    assert_one(
        &with_namespace(o),
        "channel.namespaces[0].history_meta_ttl",
        "5m0s is shorter",
    );
    let mut config = with_namespace(history(10, 600));
    config.channel.history_meta_ttl = Duration::from_secs(60);
    assert_one(
        &config,
        "channel.namespaces[0].history_meta_ttl",
        "1m0s is shorter than history_ttl 10m0s",
    );
    assert_one(
        &with_namespace(history(10_000_001, 60)),
        "channel.namespaces[0].history_size",
        "outside",
    );
}

#[test]
fn recovery_rules() {
    let o = ChannelOptions {
        force_recovery: true,
        ..Default::default()
    };
    assert_one(
        &with_namespace(o),
        "channel.namespaces[0].force_recovery",
        "requires history",
    );
    let o = ChannelOptions {
        force_recovery: true,
        auto_cache_recover: true,
        ..history(1, 60)
    };
    assert_one(
        &with_namespace(o),
        "channel.namespaces[0].auto_cache_recover",
        "force_recovery_mode \"cache\"",
    );
    let o = ChannelOptions {
        force_recovery: true,
        auto_cache_recover: true,
        force_recovery_mode: RecoveryMode::Cache,
        ..history(1, 60)
    };
    assert_eq!(problems(&with_namespace(o)), Vec::<String>::new());
}

#[test]
fn channel_regex_must_compile() {
    let o = ChannelOptions {
        channel_regex: "^[a-z".into(),
        ..Default::default()
    };
    assert_one(
        &with_namespace(o),
        "channel.namespaces[0].channel_regex",
        "invalid regex",
    );
    let o = ChannelOptions {
        channel_regex: "^(?P<id>[0-9]+)$".into(),
        ..Default::default()
    };
    assert_eq!(problems(&with_namespace(o)), Vec::<String>::new());
}

#[test]
fn proxy_names_and_references() {
    let config = Config {
        proxies: vec![
            NamedProxy {
                name: "default".into(),
                proxy: proxy("http://a/p"),
            },
            NamedProxy {
                name: "a".into(),
                proxy: proxy("http://a/p"),
            },
            NamedProxy {
                name: "auth".into(),
                proxy: proxy("http://a/p"),
            },
            NamedProxy {
                name: "auth".into(),
                proxy: proxy("grpc://backend:9000"),
            },
        ],
        ..Config::default()
    };
    let found = problems(&config);
    assert_eq!(
        found,
        [
            "proxies[0].name: \"default\" is reserved",
            "proxies[1].name: \"a\" must match ^[-a-zA-Z0-9_.]{2,}$",
            "proxies[3].name: duplicate proxy name \"auth\"",
        ]
    );
    let mut config = Config {
        proxies: vec![NamedProxy {
            name: "auth".into(),
            proxy: proxy("backend:9000"),
        }],
        ..Config::default()
    };
    config.channel.without_namespace.subscribe_proxy_enabled = true;
    config.channel.without_namespace.subscribe_proxy_name = "auth".into();
    config.channel.without_namespace.publish_proxy_name = "missing".into();
    assert_one(
        &config,
        "channel.without_namespace.publish_proxy_name",
        "proxy \"missing\" not found",
    );
}

#[test]
fn enabled_default_proxy_must_be_configured() {
    let o = ChannelOptions {
        subscribe_proxy_enabled: true,
        ..Default::default()
    };
    let mut config = with_namespace(o.clone());
    config.channel.without_namespace = o;
    // Reported once for the kind, not per namespace.
    assert_one(&config, "channel.proxy.subscribe.endpoint", "must be set");
    config.channel.proxy.subscribe = proxy("http://app/subscribe");
    assert_eq!(problems(&config), Vec::<String>::new());
    let o = ChannelOptions {
        subscribe_proxy_enabled: true,
        subscribe_proxy_name: String::new(),
        ..Default::default()
    };
    assert_one(
        &with_namespace(o),
        "channel.namespaces[0].subscribe_proxy_name",
        "must name a proxy",
    );
}

#[test]
fn subscribe_stream_proxy_excludes_the_others() {
    let o = ChannelOptions {
        subscribe_stream_proxy_enabled: true,
        publish_proxy_enabled: true,
        ..Default::default()
    };
    let mut config = with_namespace(o);
    config.channel.proxy.subscribe_stream = proxy("grpc:9000");
    config.channel.proxy.publish = proxy("http://app/publish");
    assert_one(
        &config,
        "channel.namespaces[0].subscribe_stream_proxy_enabled",
        "cannot be combined",
    );
}

#[test]
fn map_rules() {
    let map_ns = |f: &dyn Fn(&mut ChannelOptions)| {
        let mut o = ChannelOptions {
            subscription_type: SubscriptionType::Map,
            ..Default::default()
        };
        o.map.mode = MapMode::Recoverable;
        o.map.key_ttl = Duration::from_secs(60);
        f(&mut o);
        with_namespace(o)
    };
    assert_eq!(problems(&map_ns(&|_| {})), Vec::<String>::new());
    let p = "channel.namespaces[0].map";
    assert_one(
        &map_ns(&|o| o.map.mode = MapMode::Unset),
        &format!("{p}.mode"),
        "required when subscription_type is \"map\"",
    );
    assert_one(
        &map_ns(&|o| o.map.key_ttl = Duration::ZERO),
        &format!("{p}.key_ttl"),
        "required when map.mode is \"recoverable\"",
    );
    assert_one(
        &map_ns(&|o| o.map.mode = MapMode::Persistent),
        &format!("{p}.key_ttl"),
        "must not be set",
    );
    assert_one(
        &map_ns(&|o| {
            o.map.mode = MapMode::Persistent;
            o.map.key_ttl = Duration::ZERO;
            o.subscription_type = SubscriptionType::MapUsers;
        }),
        &format!("{p}.mode"),
        "not allowed",
    );
    assert_one(
        &map_ns(&|o| {
            o.map.mode = MapMode::Ephemeral;
            o.map.stream_size = 10;
        }),
        &format!("{p}.stream_size"),
        "must be 0",
    );
    assert_one(
        &map_ns(&|o| o.map.meta_ttl = Duration::from_secs(30)),
        &format!("{p}.meta_ttl"),
        "shorter than the stream ttl 1m0s",
    );
    assert_one(
        &map_ns(&|o| {
            o.subscription_type = SubscriptionType::Stream;
            o.map.remove_client_on_unsubscribe = true;
        }),
        &format!("{p}.remove_client_on_unsubscribe"),
        "requires a map",
    );
    let mut config = map_ns(&|o| {
        o.map.client_key = MapClientKey::UserId;
        o.map.publish_proxy_enabled = true;
    });
    config.channel.proxy.map_publish = proxy("http://app/map");
    assert_one(&config, &format!("{p}.client_key"), "cannot be used");
    assert_one(
        &map_ns(&|o| {
            o.map.min_page_size = 50;
            o.map.max_page_size = 10;
        }),
        &format!("{p}.min_page_size"),
        "exceeds",
    );
    assert_one(
        &map_ns(&|o| {
            o.map.default_page_size = 5;
            o.map.min_page_size = 10;
        }),
        &format!("{p}.default_page_size"),
        "below",
    );
    assert_one(
        &map_ns(&|o| o.map.max_page_size = 100_001),
        &format!("{p}.max_page_size"),
        "outside",
    );
}

#[test]
fn shared_poll_rules() {
    let mut o = ChannelOptions {
        subscription_type: SubscriptionType::SharedPoll,
        ..Default::default()
    };
    o.shared_poll.proxy_name = "poller".into();
    let mut config = with_namespace(o);
    config.proxies = vec![NamedProxy {
        name: "poller".into(),
        proxy: proxy("http://app/poll"),
    }];
    assert_one(
        &config,
        "channel.namespaces[0].subscription_type",
        "shared_poll.hmac_secret_key",
    );
    config.shared_poll.hmac_secret_key = Secret::new("k");
    assert_eq!(problems(&config), Vec::<String>::new());
    config.channel.namespaces[0]
        .options
        .shared_poll
        .publish_enabled = true;
    assert_one(
        &config,
        "channel.namespaces[0].shared_poll.publish_enabled",
        "versioned",
    );
    config.channel.namespaces[0].options.shared_poll.mode = SharedPollMode::Versioned;
    config.channel.namespaces[0].options.shared_poll.proxy_name = String::new();
    assert_one(
        &config,
        "channel.proxy.shared_poll_refresh.endpoint",
        "must be set",
    );
}

#[test]
fn map_presence_prefixes_point_at_matching_namespaces() {
    let mut config = Config::default();
    let mut clients = ChannelOptions {
        subscription_type: SubscriptionType::MapClients,
        ..Default::default()
    };
    clients.map.mode = MapMode::Ephemeral;
    clients.map.key_ttl = Duration::from_secs(60);
    config
        .channel
        .namespaces
        .push(Namespace::new("who", clients));
    let source = ChannelOptions {
        map_clients_presence_channel_prefix: "who:".into(),
        ..Default::default()
    };
    config
        .channel
        .namespaces
        .push(Namespace::new("room", source));
    assert_eq!(problems(&config), Vec::<String>::new());
    config.channel.namespaces[1]
        .options
        .map_users_presence_channel_prefix = "who:".into();
    assert_one(
        &config,
        "channel.namespaces[1].map_users_presence_channel_prefix",
        "\"map_users\"",
    );
    config.channel.namespaces[1]
        .options
        .map_users_presence_channel_prefix = "nope:".into();
    assert_one(
        &config,
        "channel.namespaces[1].map_users_presence_channel_prefix",
        "not found",
    );
}
