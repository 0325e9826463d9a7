//! Server-side subscriptions at connect: token `channels` / `subs`, the personal channel and
//! `ConnectRequest.subs`.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::json;
use spindle_proto::client;

use super::test_support::*;
use super::*;

#[test]
fn token_channels_become_server_side_subscriptions() {
    let rules = rules();
    let mut session = session(&rules);
    let claims = json!({"sub": "42", "channels": ["forced:b", "chat:a", "chat:a"]});
    let grant = session
        .connect(&rules, &connect_request(&token(claims)), t0())
        .unwrap();
    let channels: Vec<&str> = grant
        .server_subs
        .iter()
        .map(|s| s.channel.as_str())
        .collect();
    assert_eq!(channels, ["chat:a", "forced:b"]);
    let chat = &grant.server_subs[0];
    assert!(chat.server_side);
    assert_eq!(
        chat.options,
        SubscriptionOptions {
            presence: true,
            emit_join_leave: true,
            ..Default::default()
        }
    );
    let forced = &grant.server_subs[1];
    assert_eq!(
        (
            forced.options.recoverable,
            forced.options.positioned,
            forced.options.push_join_leave
        ),
        (true, true, true)
    );
    assert_eq!(
        (
            forced.result.recoverable,
            forced.result.positioned,
            forced.result.expires
        ),
        (true, true, false)
    );
    assert!(grant.result.subs.is_empty());
}

#[test]
fn token_subs_win_over_channels_and_carry_options() {
    let rules = rules();
    let mut session = session(&rules);
    let claims = json!({
        "sub": "42",
        "channels": ["chat:ignored"],
        "subs": {"chat:a": {
            "info": {"role": "admin"},
            "b64data": STANDARD.encode(b"hello"),
            "override": {"presence": {"value": false}, "force_recovery": {"value": true}}
        }}
    });
    let grant = session
        .connect(&rules, &connect_request(&token(claims)), t0())
        .unwrap();
    assert_eq!(grant.server_subs.len(), 1);
    let sub = &grant.server_subs[0];
    assert_eq!(sub.channel, "chat:a");
    assert_eq!(sub.chan_info, br#"{"role":"admin"}"#.to_vec());
    assert_eq!(sub.data, b"hello".to_vec());
    assert_eq!(&sub.result.data[..], b"hello");
    assert_eq!(
        (
            sub.options.presence,
            sub.options.recoverable,
            sub.options.positioned
        ),
        (false, true, true)
    );
}

#[test]
fn unknown_token_namespaces_are_102_and_too_many_channels_3505() {
    let rules = rules();
    let mut session = session(&rules);
    let claims = json!({"sub": "42", "channels": ["chat:a", "nope:b"]});
    assert_eq!(
        err(session.connect(&rules, &connect_request(&token(claims)), t0())),
        102
    );

    let mut config = config();
    config.client.channel_limit = 2;
    let limited = rules_from(&config);
    let two = token(json!({"sub": "42", "channels": ["chat:a", "chat:b"]}));
    let three = token(json!({"sub": "42", "channels": ["chat:a", "chat:b", "chat:c"]}));
    let mut session = super::test_support::session(&limited);
    assert_eq!(
        session
            .connect(&limited, &connect_request(&two), t0())
            .unwrap()
            .server_subs
            .len(),
        2
    );
    let mut session = super::test_support::session(&limited);
    assert_eq!(
        err(session.connect(&limited, &connect_request(&three), t0())),
        3505
    );
}

#[test]
fn personal_channel_for_authenticated_users() {
    let mut config = config();
    config.client.subscribe_to_user_personal_channel.enabled = true;
    config
        .client
        .subscribe_to_user_personal_channel
        .personal_channel_namespace = "personal".to_owned();
    let rules = rules_from(&config);
    assert_eq!(
        rules.personal_channel("42").as_deref(),
        Some("personal:#42")
    );
    assert_eq!(rules.personal_channel(""), None);
    let mut session = session(&rules);
    let grant = session
        .connect(&rules, &connect_request(&token(json!({"sub": "42"}))), t0())
        .unwrap();
    assert_eq!(grant.server_subs.len(), 1);
    assert_eq!(grant.server_subs[0].channel, "personal:#42");
    assert!(grant.server_subs[0].options.presence);
    // Anonymous connections get none.
    let mut session = super::test_support::session(&rules);
    let grant = session
        .connect(&rules, &connect_request(&token(json!({"sub": ""}))), t0())
        .unwrap();
    assert!(grant.server_subs.is_empty());
    // Without a namespace: `#42`.
    config
        .client
        .subscribe_to_user_personal_channel
        .personal_channel_namespace = String::new();
    assert_eq!(
        rules_from(&config).personal_channel("42").as_deref(),
        Some("#42")
    );
}

#[test]
fn connect_request_subs_are_kept_when_the_client_could_subscribe() {
    let rules = rules();
    let mut session = session(&rules);
    let mut request = connect_request(&token(json!({"sub": "42"})));
    let state = |recover: bool, offset: u64, delta: &str| client::SubscribeRequest {
        recover,
        offset,
        epoch: "ep".to_owned(),
        delta: delta.to_owned(),
        ..Default::default()
    };
    request
        .subs
        .insert("chat:a".into(), state(true, 3, "fossil"));
    request.subs.insert("forced:b".into(), state(true, 5, ""));
    request
        .subs
        .insert("$chat:private".into(), state(false, 0, ""));
    request.subs.insert("news".into(), state(false, 0, ""));
    request.subs.insert("proxied:c".into(), state(false, 0, ""));
    let grant = session.connect(&rules, &request, t0()).unwrap();
    let channels: Vec<&str> = grant
        .server_subs
        .iter()
        .map(|s| s.channel.as_str())
        .collect();
    assert_eq!(channels, ["chat:a", "forced:b"]);
    // chat: not recoverable (no force), so no position; fossil negotiated.
    assert_eq!(grant.server_subs[0].recover_since, None);
    assert!(grant.server_subs[0].options.delta && grant.server_subs[0].result.delta);
    assert_eq!(
        grant.server_subs[1].recover_since,
        Some(client::StreamPosition {
            offset: 5,
            epoch: "ep".to_owned()
        })
    );

    // An unknown namespace there is a bad request.
    let mut session = super::test_support::session(&rules);
    request.subs.insert("nope:x".into(), state(false, 0, ""));
    assert_eq!(err(session.connect(&rules, &request, t0())), 3501);
}

#[test]
fn connect_request_subs_position_token_channels_too() {
    let rules = rules();
    let mut session = session(&rules);
    let mut request = connect_request(&token(json!({"sub": "42", "channels": ["forced:b"]})));
    request.subs.insert(
        "forced:b".into(),
        client::SubscribeRequest {
            recover: true,
            offset: 9,
            epoch: "e".into(),
            ..Default::default()
        },
    );
    let grant = session.connect(&rules, &request, t0()).unwrap();
    assert_eq!(
        grant.server_subs[0]
            .recover_since
            .as_ref()
            .map(|p| p.offset),
        Some(9)
    );
}
