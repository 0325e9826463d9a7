//! Issue 13, the permission audit at connect: which server-side subscriptions a connection
//! starts with, against Centrifugo's `Handler.OnClientConnecting`, `VerifyConnectToken`, the
//! connect proxy handler and centrifuge's `connectCmd`.

use serde_json::{Value, json};
use spindle_proto::{client, proxy};

use super::test_support::*;
use super::tests_audit::audit_config;
use super::*;
use crate::config::{ChannelOptions, Config, Namespace};

/// [`audit_config`] with a connect proxy, personal channels in `personal`, names of at most 40
/// bytes, and `strict` (clients subscribe; names `^[a-z]+$`).
fn connect_config() -> Config {
    let mut config = audit_config();
    config.client.proxy.connect.enabled = true;
    let personal = &mut config.client.subscribe_to_user_personal_channel;
    personal.enabled = true;
    personal.personal_channel_namespace = "personal".into();
    config.channel.max_length = 40;
    config.channel.namespaces.push(Namespace::new(
        "strict",
        ChannelOptions {
            allow_subscribe_for_client: true,
            channel_regex: "^[a-z]+$".into(),
            ..Default::default()
        },
    ));
    config
}

/// How a connection authenticates.
#[derive(Debug, Clone, Copy)]
enum How<'a> {
    /// A token for this user.
    Token(&'a str),
    /// The `user_id_http_header` user.
    Header(&'a str),
    /// No credentials; anonymous access allowed.
    Anonymous,
    /// No credentials under `client.insecure`.
    Insecure,
    /// The connect proxy's result for this user.
    Proxy(&'a str),
    /// The connect proxy answering without a result; anonymous access allowed.
    ProxyWithoutResult,
}

/// Connects with `channels` in `ConnectRequest.subs`; the granted server-side channels in
/// order, or the failure's code.
fn connect(how: How<'_>, channels: &[&str]) -> Result<Vec<String>, u32> {
    let mut config = connect_config();
    config.client.allow_anonymous_connect_without_token =
        matches!(how, How::Anonymous | How::ProxyWithoutResult);
    config.client.insecure = matches!(how, How::Insecure);
    let rules = rules_from(&config);
    let mut session = session(&rules);
    if let How::Header(user) = how {
        session = session.with_header_user(user.into());
    }
    let request = client::ConnectRequest {
        subs: channels
            .iter()
            .map(|c| (c.to_string(), client::SubscribeRequest::default()))
            .collect(),
        ..connect_request(&match how {
            How::Token(user) => token(json!({"sub": user})),
            _ => String::new(),
        })
    };
    let proxied = |result| proxy::ConnectResponse {
        result,
        ..Default::default()
    };
    let outcome = match how {
        How::Proxy(user) => {
            let result = proxy::ConnectResult {
                user: user.into(),
                ..Default::default()
            };
            session.connect_proxied(&rules, &request, &proxied(Some(result)), t0())
        }
        How::ProxyWithoutResult => session.connect_proxied(&rules, &request, &proxied(None), t0()),
        _ => session.connect(&rules, &request, t0()),
    };
    outcome
        .map(|grant| grant.server_subs.into_iter().map(|s| s.channel).collect())
        .map_err(code)
}

/// D2: `ConnectRequest.subs` counts only with a token or the anonymous / insecure fallback;
/// a header user gets no server-side subscriptions at all (not even the personal channel).
#[test]
fn requested_channels_depend_on_where_credentials_came_from() {
    let asked = ["anon:a", "chat:a"];
    let table: &[(How<'_>, &[&str])] = &[
        (How::Token("42"), &["anon:a", "chat:a", "personal:#42"]),
        (How::Anonymous, &["anon:a"]),
        (How::Insecure, &["anon:a", "chat:a"]),
        (How::ProxyWithoutResult, &["anon:a"]),
        (How::Header("42"), &[]),
        (How::Proxy("42"), &["personal:#42"]),
    ];
    for (how, expected) in table {
        assert_eq!(connect(*how, &asked), Ok(to_strings(expected)), "{how:?}");
    }
}

/// D3: a requested channel of an unknown namespace fails the connect (3501); any other reason
/// the client could not subscribe to it itself skips it silently. Length is not checked
/// there, and stream-proxy namespaces are not excluded (only subscribe-proxy ones).
#[test]
fn requested_channel_names_at_connect() {
    let long = format!("chat:{}", "x".repeat(40));
    // (requested channel, granted, or the connect's failure)
    let table: &[(&str, Result<bool, u32>)] = &[
        ("chat:a", Ok(true)),
        ("nope:a", Err(3501)),
        ("chat:café", Ok(false)),
        ("strict:ABC", Ok(false)),
        ("strict:abc", Ok(true)),
        ("", Ok(false)),
        ("$chat:a", Ok(false)),
        ("proxied:a", Ok(false)),
        ("streamed:a", Ok(true)),
        (&long, Ok(true)),
    ];
    for (channel, expected) in table {
        let got = connect(How::Token("42"), &[channel])
            .map(|granted| granted.iter().any(|c| c == channel));
        assert_eq!(got, *expected, "{channel:?}");
    }
}

/// D5: server-side channels chosen by the token, the connect proxy or the personal channel
/// rule need a known namespace (102) and nothing else; empty names are skipped.
#[test]
fn server_side_channels_need_only_a_known_namespace() {
    let rules = rules_from(&connect_config());
    let long = format!("chat:{}", "x".repeat(40));
    let by_token = |claims: Value| {
        let mut session = session(&rules);
        session
            .connect(&rules, &connect_request(&token(claims)), t0())
            .map(|grant| channels_of(&grant))
            .map_err(code)
    };
    let by_proxy = |result: proxy::ConnectResult| {
        let mut session = session(&rules);
        let answer = proxy::ConnectResponse {
            result: Some(result),
            ..Default::default()
        };
        session
            .connect_proxied(&rules, &connect_request(""), &answer, t0())
            .map(|grant| channels_of(&grant))
            .map_err(code)
    };
    let token_table: &[(Value, Result<Vec<String>, u32>)] = &[
        (
            json!({"channels": ["chat:café"]}),
            Ok(to_strings(&["chat:café"])),
        ),
        (
            json!({"subs": {"strict:ABC": {}}}),
            Ok(to_strings(&["strict:ABC"])),
        ),
        (json!({"channels": [long]}), Ok(vec![long.clone()])),
        (
            json!({"channels": ["", "chat:a"]}),
            Ok(to_strings(&["chat:a"])),
        ),
        (json!({"channels": ["nope:a"]}), Err(102)),
    ];
    for (claims, expected) in token_table {
        let mut claims = claims.clone();
        claims["sub"] = json!("");
        assert_eq!(by_token(claims.clone()), *expected, "{claims}");
    }
    let proxy_table: &[(proxy::ConnectResult, Result<Vec<String>, u32>)] = &[
        (
            proxy::ConnectResult {
                channels: vec!["chat:café".into()],
                ..Default::default()
            },
            Ok(to_strings(&["chat:café"])),
        ),
        (
            proxy::ConnectResult {
                subs: [("nope:a".to_owned(), Default::default())].into(),
                ..Default::default()
            },
            Err(102),
        ),
    ];
    for (result, expected) in proxy_table {
        assert_eq!(by_proxy(result.clone()), *expected, "{result:?}");
    }
    // The personal channel of a non-ASCII user id.
    assert_eq!(
        by_token(json!({"sub": "José"})),
        Ok(to_strings(&["personal:#José"]))
    );
}

/// As Centrifugo: the personal channel replaces a token entry for the same channel (namespace
/// options, no token info), and is not compared at refresh; too many server-side channels
/// (3505) is checked before an expiry already past (110).
#[test]
fn personal_channel_precedence_and_limit_order() {
    let mut config = connect_config();
    config.client.channel_limit = 2;
    let rules = rules_from(&config);
    let mut session = session(&rules);
    let claims = json!({"sub": "42", "exp": T0 + 100, "subs": {"personal:#42": {"info": 1}}});
    let grant = session
        .connect(&rules, &connect_request(&token(claims)), t0())
        .unwrap();
    assert_eq!(channels_of(&grant), ["personal:#42"]);
    assert!(grant.server_subs[0].chan_info.is_empty());
    for sub in &grant.server_subs {
        session.add_subscription(sub);
    }
    let without = client::RefreshRequest {
        token: token(json!({"sub": "42", "exp": T0 + 200})),
    };
    assert!(session.refresh(&rules, &without, at(10)).is_ok());

    let mut session = super::test_support::session(&rules);
    let past = json!({
        "sub": "42", "exp": T0 + 100, "expire_at": T0 - 10,
        "channels": ["chat:a", "chat:b"],
    });
    assert_eq!(
        err(session.connect(&rules, &connect_request(&token(past)), t0())),
        3505
    );
}

fn channels_of(grant: &ConnectGrant) -> Vec<String> {
    grant
        .server_subs
        .iter()
        .map(|s| s.channel.clone())
        .collect()
}

fn to_strings(channels: &[&str]) -> Vec<String> {
    channels.iter().map(|c| c.to_string()).collect()
}
