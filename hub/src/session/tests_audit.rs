//! Issue 13, the permission audit: each decision against Centrifugo v6 (`internal/client`
//! `handler.go`, `jwtverify`, `proxy`; centrifuge's `client.go`), one table per branch that
//! differed. Connect-time server-side channels are in `tests_audit_connect`.

use serde_json::{Value, json};
use spindle_proto::{client, mesh};

use super::test_support::*;
use super::*;
use crate::config::{ChannelOptions, Config, Namespace, RpcNamespace, RpcOptions};

/// The shared test configuration plus:
/// - `streamed`: the (unserved) subscribe stream proxy, one-way; clients may subscribe and
///   publish otherwise;
/// - `bidi`: the same, bidirectional;
/// - `srp`: the sub_refresh proxy; clients may subscribe.
pub(super) fn audit_config() -> Config {
    let mut config = config();
    let open = ChannelOptions {
        allow_subscribe_for_client: true,
        allow_publish_for_client: true,
        ..Default::default()
    };
    let namespaces = [
        (
            "streamed",
            ChannelOptions {
                subscribe_stream_proxy_enabled: true,
                ..open.clone()
            },
        ),
        (
            "bidi",
            ChannelOptions {
                subscribe_stream_proxy_enabled: true,
                subscribe_stream_proxy_bidirectional: true,
                ..open.clone()
            },
        ),
        (
            "srp",
            ChannelOptions {
                sub_refresh_proxy_enabled: true,
                ..open
            },
        ),
    ];
    for (name, options) in namespaces {
        config
            .channel
            .namespaces
            .push(Namespace::new(name, options));
    }
    config
}

/// Connects with a token of these claims and records the server-side subscriptions, as the
/// edge does.
fn connected_with(rules: &SessionRules, claims: Value) -> Session {
    let mut session = session(rules);
    let grant = session
        .connect(rules, &connect_request(&token(claims)), t0())
        .unwrap();
    for sub in &grant.server_subs {
        session.add_subscription(sub);
    }
    session
}

/// D7: no client publication goes into a stream-proxy namespace (Centrifugo's `OnPublish`
/// forwards only into a bidirectional stream the client holds; streams are not served).
#[test]
fn publish_into_stream_proxy_namespaces() {
    let rules = rules_from(&audit_config());
    let session = connected(&rules, "42");
    let table: &[(&str, Result<(), u32>)] = &[
        ("anon:a", Ok(())),
        ("streamed:a", Err(108)),
        ("bidi:a", Err(108)),
    ];
    for (channel, expected) in table {
        let request = client::PublishRequest {
            channel: (*channel).into(),
            data: b"{}".to_vec().into(),
            ..Default::default()
        };
        let got = session
            .authorize_publish(&rules, &request)
            .map(|_| ())
            .map_err(code);
        assert_eq!(got, *expected, "{channel}");
    }
}

/// D11: a client subscribe checks the channel's length (107) before already-subscribed (105)
/// and the channel limit (106), as centrifuge's `validateSubscribeRequest`.
#[test]
fn subscribe_checks_length_before_room() {
    let mut config = audit_config();
    config.client.channel_limit = 1;
    config.channel.max_length = 20;
    let rules = rules_from(&config);
    let mut session = connected(&rules, "42");
    subscribe(&mut session, &rules, &sub_request("chat:a"));
    let table: &[(&str, u32)] = &[
        ("chat:aaaaaaaaaaaaaaaaaaaa", 107),
        ("chat:a", 105),
        ("chat:b", 106),
    ];
    for (channel, expected) in table {
        let got = err(session.authorize_subscribe(&rules, &sub_request(channel), t0()));
        assert_eq!(got, *expected, "{channel}");
    }
}

/// D12: the server API `subscribe` of a connection at `client.channel_limit` closes it with
/// 3505 (centrifuge's `Client.Subscribe`, which checks the limit before already-subscribed);
/// the name is not checked beyond its namespace, and an empty channel is the API's 107.
#[test]
fn api_subscribe_limits_and_names() {
    let mut config = audit_config();
    config.client.channel_limit = 2;
    let rules = rules_from(&config);
    let mut session = connected(&rules, "42");
    subscribe(&mut session, &rules, &sub_request("chat:a"));
    let api = |session: &Session, channel: &str| {
        let command = mesh::SubscribeCommand {
            channel: channel.into(),
            ..Default::default()
        };
        session
            .api_subscribe(&rules, &command, t0())
            .map(|_| ())
            .map_err(code)
    };
    let below: &[(&str, Result<(), u32>)] = &[
        ("", Err(107)),
        ("nope:x", Err(102)),
        ("chat:a", Err(105)),
        ("chat:café", Ok(())),
    ];
    for (channel, expected) in below {
        assert_eq!(
            api(&session, channel),
            *expected,
            "{channel:?} below the limit"
        );
    }
    subscribe(&mut session, &rules, &sub_request("chat:b"));
    for channel in ["chat:c", "chat:a"] {
        assert_eq!(api(&session, channel), Err(3505), "{channel} at the limit");
    }
}

/// D13: RPC routing as Centrifugo's `OnRPC` and its rpc proxy handler: without any RPC proxy,
/// 104 for everything but the ping while the ping is on, 108 for everything while it is off.
#[test]
fn rpc_routing_follows_the_configured_proxies() {
    #[derive(Debug, PartialEq)]
    enum Got {
        Ping,
        Proxy,
        Code(u32),
    }
    let route = |rules: &SessionRules, method: &str| match rules.route_rpc(method) {
        Ok(RpcRoute::Ping) => Got::Ping,
        Ok(RpcRoute::Proxy(_)) => Got::Proxy,
        Err(failure) => Got::Code(code(failure)),
    };
    let with = |ping: bool, namespace_proxy: bool| {
        let mut config = audit_config();
        config.rpc.ping.enabled = ping;
        config.rpc.namespaces.push(RpcNamespace {
            name: "users".into(),
            options: RpcOptions {
                proxy_enabled: namespace_proxy,
                ..Default::default()
            },
        });
        rules_from(&config)
    };
    // (ping on, a namespace with the proxy, method, outcome)
    let table: &[(bool, bool, &str, Got)] = &[
        (true, false, "ping", Got::Ping),
        (true, false, "get", Got::Code(104)),
        (true, false, "users:get", Got::Code(104)),
        (true, false, "nope:get", Got::Code(104)),
        (false, false, "ping", Got::Code(108)),
        (false, false, "get", Got::Code(108)),
        (false, false, "users:get", Got::Code(108)),
        (false, false, "nope:get", Got::Code(108)),
        (false, true, "users:get", Got::Proxy),
        (false, true, "nope:get", Got::Code(104)),
        (false, true, "get", Got::Code(108)),
        // An empty namespace name is no namespace.
        (false, true, ":get", Got::Code(108)),
        (true, true, "ping", Got::Ping),
    ];
    for (ping, proxy, method, expected) in table {
        let rules = with(*ping, *proxy);
        assert_eq!(
            route(&rules, method),
            *expected,
            "ping {ping}, proxy {proxy}, {method}"
        );
    }
}

/// D14: a connection refresh disconnects with 3010 only when a channel of the new token is
/// not subscribed, or a subscription from the connect token is missing from it
/// (Centrifugo's `tokenChannelsChanged`).
#[test]
fn refresh_compares_token_channels_with_subscriptions() {
    let rules = rules_from(&audit_config());
    let connect_claims = json!({"sub": "42", "exp": T0 + 100, "channels": ["chat:a"]});
    let refresh = |session: &mut Session, channels: &[&str]| {
        let claims = json!({"sub": "42", "exp": T0 + 200, "channels": channels});
        let request = client::RefreshRequest {
            token: token(claims),
        };
        session
            .refresh(&rules, &request, at(10))
            .map(|_| ())
            .map_err(code)
    };
    // The connection holds chat:a (token) and chat:b (client).
    let table: &[(&[&str], Result<(), u32>)] = &[
        (&["chat:a"], Ok(())),
        (&["chat:a", "chat:b"], Ok(())),
        (&["chat:b"], Err(3010)),
        (&["chat:a", "chat:c"], Err(3010)),
        (&[], Err(3010)),
    ];
    for (channels, expected) in table {
        let mut session = connected_with(&rules, connect_claims.clone());
        subscribe(&mut session, &rules, &sub_request("chat:b"));
        assert_eq!(refresh(&mut session, channels), *expected, "{channels:?}");
    }
    // Once chat:a is gone (API unsubscribe), a token without it is fine, one with it is not.
    let mut session = connected_with(&rules, connect_claims.clone());
    session.remove_subscription("chat:a");
    assert_eq!(refresh(&mut session, &[]), Ok(()));
    assert_eq!(refresh(&mut session, &["chat:a"]), Err(3010));
    // Resubscribed by the client, it is no longer the token's.
    subscribe(&mut session, &rules, &sub_request("chat:a"));
    assert_eq!(refresh(&mut session, &[]), Ok(()));
}

/// D14: the connect proxy's channels are not the token's: a later token refresh naming them
/// (subscribed) is fine.
#[test]
fn refresh_after_a_connect_proxy_checks_subscriptions_only() {
    let mut config = audit_config();
    config.client.proxy.connect.enabled = true;
    let rules = rules_from(&config);
    let mut session = session(&rules);
    let answer = spindle_proto::proxy::ConnectResponse {
        result: Some(spindle_proto::proxy::ConnectResult {
            user: "42".into(),
            expire_at: T0 + 100,
            channels: vec!["chat:a".into()],
            ..Default::default()
        }),
        ..Default::default()
    };
    let grant = session
        .connect_proxied(&rules, &connect_request(""), &answer, t0())
        .unwrap();
    for sub in &grant.server_subs {
        session.add_subscription(sub);
    }
    let table: &[(Value, Result<(), u32>)] = &[
        (json!(["chat:a"]), Ok(())),
        (json!([]), Ok(())),
        (json!(["chat:z"]), Err(3010)),
    ];
    for (channels, expected) in table {
        let claims = json!({"sub": "42", "exp": T0 + 200, "channels": channels});
        let request = client::RefreshRequest {
            token: token(claims),
        };
        let got = session
            .refresh(&rules, &request, at(10))
            .map(|_| ())
            .map_err(code);
        assert_eq!(got, *expected, "{channels}");
    }
}

/// D14: `client.insecure` drops a token's expiry at connect, not at refresh (Centrifugo's
/// `OnRefresh` passes the new token's expiry on as is).
#[test]
fn insecure_refresh_takes_the_token_expiry() {
    let mut config = audit_config();
    config.client.insecure = true;
    let rules = rules_from(&config);
    let mut session = connected_with(&rules, json!({"sub": "42", "exp": T0 + 100}));
    assert_eq!(session.expires_at(), None);
    // (new token claims, expires, ttl)
    let table: &[(Value, bool, u32)] = &[
        (json!({"sub": "42", "exp": T0 + 200}), true, 190),
        (json!({"sub": "42"}), false, 0),
    ];
    for (claims, expires, ttl) in table {
        let request = client::RefreshRequest {
            token: token(claims.clone()),
        };
        let result = session.refresh(&rules, &request, at(10)).unwrap();
        assert_eq!((result.expires, result.ttl), (*expires, *ttl), "{claims}");
    }
}

/// D15: sub_refresh in centrifuge's order — not subscribed (103) first; `type` only matters
/// for shared-poll subscriptions (`authorize_track`), so it is ignored here; server-side subscriptions and
/// any subscription of a `sub_refresh_proxy_enabled` namespace are refreshed by the server
/// (3501).
#[test]
fn sub_refresh_order_and_server_refreshed_subscriptions() {
    let rules = rules_from(&audit_config());
    let fresh = || {
        let mut session = connected_with(&rules, json!({"sub": "42", "channels": ["chat:s"]}));
        subscribe(&mut session, &rules, &sub_request("chat:a"));
        subscribe(&mut session, &rules, &sub_request("srp:a"));
        session
    };
    let request = |channel: &str, r#type: i32| client::SubRefreshRequest {
        channel: channel.into(),
        token: token(json!({"sub": "42", "channel": channel, "exp": T0 + 100})),
        r#type,
        ..Default::default()
    };
    let table: &[(&str, i32, Result<(), u32>)] = &[
        ("chat:a", 0, Ok(())),
        ("chat:a", 1, Ok(())),
        ("chat:none", 1, Err(103)),
        ("chat:none", 0, Err(103)),
        ("chat:s", 0, Err(3501)),
        ("srp:a", 0, Err(3501)),
    ];
    for (channel, r#type, expected) in table {
        let mut session = fresh();
        let got = session
            .sub_refresh(&rules, &request(channel, *r#type), at(1))
            .map(|_| ())
            .map_err(code);
        assert_eq!(got, *expected, "{channel} type {type}");
    }
}

/// D16: a token naming a channel of an unknown namespace is 102, checked where Centrifugo's
/// token verification does (before 3507, the user check and the channel / user / client
/// checks).
#[test]
fn token_channels_of_unknown_namespaces_are_102() {
    let mut config = audit_config();
    config.client.disallow_anonymous_connection_tokens = true;
    let rules = rules_from(&config);

    let mut session = session(&rules);
    let anonymous = token(json!({"sub": "", "channels": ["nope:a"]}));
    assert_eq!(
        err(session.connect(&rules, &connect_request(&anonymous), t0())),
        102,
        "connect"
    );

    let other_user = token(json!({"sub": "43", "subs": {"nope:a": {}}}));
    let mut session = connected(&rules, "42");
    let refresh = client::RefreshRequest { token: other_user };
    assert_eq!(
        err(session.refresh(&rules, &refresh, at(1))),
        102,
        "refresh"
    );

    let session = connected(&rules, "42");
    let subscribe_request = client::SubscribeRequest {
        token: token(json!({"sub": "42", "channel": "nope:a"})),
        ..sub_request("chat:a")
    };
    assert_eq!(
        err(session.authorize_subscribe(&rules, &subscribe_request, t0())),
        102,
        "subscribe"
    );

    let mut session = connected(&rules, "42");
    subscribe(&mut session, &rules, &sub_request("chat:a"));
    let sub_refresh = client::SubRefreshRequest {
        channel: "chat:a".into(),
        token: token(json!({"sub": "42", "channel": "nope:a"})),
        ..Default::default()
    };
    assert_eq!(
        err(session.sub_refresh(&rules, &sub_refresh, at(1))),
        102,
        "sub_refresh"
    );
}
