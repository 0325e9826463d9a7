//! User-limited channels (`#alice`, `dialog:#alice,bob`) against every way a subscription can be
//! granted (issue 13): only the listed users, a subscription token or insecure mode open one —
//! never `allow_subscribe_for_client`, `_for_anonymous`, the subscribe proxy or the stream
//! proxy, and not a channel requested at connect time either (Centrifugo's `Handler.OnSubscribe`
//! and `OnClientConnecting`).

use serde_json::json;
use spindle_proto::client;

use super::rules::Permission;
use super::test_support::*;
use super::*;
use crate::config::{ChannelOptions, Config, Namespace};

/// Namespaces where everything else would let a client in:
/// - without namespace: user-limited, and any client or anonymous may subscribe;
/// - `proxied`: user-limited, and the subscribe proxy decides;
/// - `streamed`: user-limited, and the subscribe stream proxy decides.
fn open_config() -> Config {
    let mut config = config();
    let open = ChannelOptions {
        allow_user_limited_channels: true,
        allow_subscribe_for_client: true,
        allow_subscribe_for_anonymous: true,
        ..Default::default()
    };
    config.channel.without_namespace = open.clone();
    config.channel.namespaces.retain(|ns| ns.name != "proxied");
    config.channel.namespaces.push(Namespace::new(
        "proxied",
        ChannelOptions {
            subscribe_proxy_enabled: true,
            ..open.clone()
        },
    ));
    config.channel.namespaces.push(Namespace::new(
        "streamed",
        ChannelOptions {
            subscribe_stream_proxy_enabled: true,
            ..open
        },
    ));
    config
}

/// The outcome of a token-less client subscribe: `Ok(true)` granted, `Ok(false)` the backend
/// must be asked first, `Err(code)` refused.
fn client_subscribe(rules: &SessionRules, user: &str, channel: &str) -> Result<bool, u32> {
    let session = connected(rules, user);
    let request = sub_request(channel);
    if session.subscribe_proxy(rules, &request).is_some() {
        return Ok(false);
    }
    match rules.resolver().resolve(channel) {
        Ok(resolved)
            if rules.subscribe_without_token(&resolved, channel, user)
                == Permission::NeedsProxy =>
        {
            return Ok(false);
        }
        _ => {}
    }
    session
        .authorize_subscribe(rules, &request, t0())
        .map(|_| true)
        .map_err(code)
}

#[test]
fn client_subscribe_table() {
    let rules = rules_from(&open_config());
    // (user, channel, outcome)
    let table: &[(&str, &str, Result<bool, u32>)] = &[
        // Not user-limited: the namespace's own rules.
        ("mallory", "news", Ok(true)),
        ("", "news", Ok(true)),
        ("mallory", "proxied:news", Ok(false)),
        ("mallory", "streamed:news", Ok(false)),
        // User-limited: the listed users only, whatever else the namespace allows.
        ("alice", "#alice", Ok(true)),
        ("mallory", "#alice", Err(103)),
        ("", "#alice", Err(103)),
        ("", "#", Err(103)),
        ("bob", "#alice,bob", Ok(true)),
        ("mallory", "#alice,bob", Err(103)),
        ("ali", "#alice", Err(103)),
        ("alice", "proxied:#alice", Ok(true)),
        ("mallory", "proxied:#alice", Err(103)),
        ("alice", "streamed:#alice", Ok(true)),
        ("mallory", "streamed:#alice", Err(103)),
        // The users are the part after the last boundary.
        ("alice", "#bob#alice", Ok(true)),
        ("bob", "#bob#alice", Err(103)),
    ];
    for (user, channel, expected) in table {
        assert_eq!(
            client_subscribe(&rules, user, channel),
            *expected,
            "user {user:?} subscribing to {channel:?}"
        );
    }
}

#[test]
fn without_the_option_a_hash_is_an_ordinary_character() {
    let mut config = open_config();
    config.channel.without_namespace.allow_user_limited_channels = false;
    let rules = rules_from(&config);
    assert_eq!(client_subscribe(&rules, "mallory", "#alice"), Ok(true));
}

#[test]
fn insecure_mode_opens_user_limited_channels() {
    let mut config = open_config();
    config.client.insecure = true;
    let rules = rules_from(&config);
    assert_eq!(client_subscribe(&rules, "mallory", "#alice"), Ok(true));
    assert_eq!(client_subscribe(&rules, "", "proxied:#alice"), Ok(true));
}

#[test]
fn a_subscription_token_opens_a_user_limited_channel() {
    let rules = rules_from(&open_config());
    let session = connected(&rules, "mallory");
    let request = client::SubscribeRequest {
        token: token(json!({"sub": "mallory", "channel": "#alice"})),
        ..sub_request("#alice")
    };
    assert!(session.authorize_subscribe(&rules, &request, t0()).is_ok());
}

#[test]
fn channels_requested_at_connect_follow_the_same_rule() {
    let rules = rules_from(&open_config());
    let requested = |user: &str, channels: &[&str]| -> Vec<String> {
        let mut session = session(&rules);
        let request = client::ConnectRequest {
            subs: channels
                .iter()
                .map(|c| (c.to_string(), client::SubscribeRequest::default()))
                .collect(),
            ..connect_request(&token(json!({"sub": user})))
        };
        let grant = session.connect(&rules, &request, t0()).unwrap();
        let mut granted: Vec<String> = grant
            .server_subs
            .iter()
            .map(|s| s.channel.clone())
            .collect();
        granted.sort();
        granted
    };
    let all = [
        "news",
        "#alice",
        "#alice,bob",
        "proxied:#alice",
        "streamed:#alice",
    ];
    assert_eq!(requested("mallory", &all), ["news"]);
    assert_eq!(
        requested("alice", &all),
        ["#alice", "#alice,bob", "news", "streamed:#alice"]
    );
    assert_eq!(requested("bob", &all), ["#alice,bob", "news"]);
}
