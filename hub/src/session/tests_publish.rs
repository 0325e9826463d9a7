//! Publish permission and data formats; presence and history access.

use serde_json::json;
use spindle_proto::client;

use super::test_support::*;
use crate::config::PublicationDataFormat;

fn publish(channel: &str, data: &[u8]) -> client::PublishRequest {
    client::PublishRequest {
        channel: channel.to_owned(),
        data: data.to_vec().into(),
        ..Default::default()
    }
}

#[test]
fn subscribers_publish_with_their_client_info() {
    let rules = rules();
    let mut session = connected(&rules, "42");
    let request = publish("chat:a", br#"{"text":"hi"}"#);
    assert_eq!(err(session.authorize_publish(&rules, &request)), 103);
    let subscribe_request = client::SubscribeRequest {
        token: token(json!({"sub": "42", "channel": "chat:a", "info": {"seat": 1}})),
        ..sub_request("chat:a")
    };
    subscribe(&mut session, &rules, &subscribe_request);
    let grant = session.authorize_publish(&rules, &request).unwrap();
    assert_eq!(grant.channel, "chat:a");
    assert_eq!(grant.data, br#"{"text":"hi"}"#.to_vec());
    assert_eq!(
        grant.info,
        client::ClientInfo {
            user: "42".into(),
            client: CLIENT.into(),
            conn_info: Default::default(),
            chan_info: br#"{"seat":1}"#.to_vec().into(),
        }
    );
}

#[test]
fn clients_publish_with_connection_info_only() {
    let rules = rules();
    let mut session = session(&rules);
    let token = token(json!({"sub": "7", "info": {"n": 1}}));
    session
        .connect(&rules, &connect_request(&token), t0())
        .unwrap();
    let grant = session
        .authorize_publish(&rules, &publish("anon:a", b"1"))
        .unwrap();
    assert_eq!(grant.info.user, "7");
    assert_eq!(&grant.info.conn_info[..], br#"{"n":1}"#);
    assert!(grant.info.chan_info.is_empty());
}

#[test]
fn anonymous_publishers_need_allow_publish_for_anonymous() {
    let rules = rules();
    let mut session = connected(&rules, "");
    assert!(
        session
            .authorize_publish(&rules, &publish("anon:a", b"1"))
            .is_ok()
    );
    // chat allows subscribers, but not anonymous ones.
    let request = client::SubscribeRequest {
        token: token(json!({"sub": "", "channel": "chat:a"})),
        ..sub_request("chat:a")
    };
    subscribe(&mut session, &rules, &request);
    assert_eq!(
        err(session.authorize_publish(&rules, &publish("chat:a", b"1"))),
        103
    );
}

#[test]
fn insecure_publishes_anywhere() {
    let mut config = config();
    config.client.insecure = true;
    let rules = rules_from(&config);
    let session = connected(&rules, "");
    assert!(
        session
            .authorize_publish(&rules, &publish("news", b"1"))
            .is_ok()
    );
}

#[test]
fn data_formats() {
    let rules = rules();
    let session = connected(&rules, "42");
    let check = |channel: &str, data: &[u8]| {
        session
            .authorize_publish(&rules, &publish(channel, data))
            .err()
            .map(code)
    };
    // "" (default): non-empty.
    assert_eq!(check("anon:a", b""), Some(107));
    assert_eq!(check("anon:a", b"x"), None);
    assert_eq!(check("json:a", b"{bad"), Some(107));
    assert_eq!(check("json:a", b""), Some(107));
    assert_eq!(check("json:a", b" [1, 2] "), None);
    assert_eq!(check("obj:a", b"[1]"), Some(107));
    assert_eq!(check("obj:a", b" {\"a\": 1}"), None);
    assert_eq!(check("obj:a", b"{\"a\": 1} x"), Some(107));
    assert_eq!(check("bin:a", b""), None);
    assert_eq!(check("bin:a", &[0xff, 0x00]), None);
}

#[test]
fn channel_wide_data_format_applies_where_the_namespace_has_none() {
    let mut config = config();
    config.channel.publication_data_format = PublicationDataFormat::Json;
    let rules = rules_from(&config);
    let session = connected(&rules, "42");
    assert_eq!(
        err(session.authorize_publish(&rules, &publish("anon:a", b"nope"))),
        107
    );
    assert!(
        session
            .authorize_publish(&rules, &publish("anon:a", b"\"yes\""))
            .is_ok()
    );
    // A namespace's own format wins.
    assert!(
        session
            .authorize_publish(&rules, &publish("bin:a", b"nope"))
            .is_ok()
    );
}

#[test]
fn names_types_and_proxies() {
    let rules = rules();
    let session = connected(&rules, "42");
    let check = |request: client::PublishRequest| err(session.authorize_publish(&rules, &request));
    assert_eq!(check(publish("", b"1")), 3501);
    assert_eq!(check(publish("nope:a", b"1")), 102);
    assert_eq!(check(publish("proxied:a", b"1")), 108);
    assert_eq!(check(publish("map:a", b"1")), 107);
    let map = |channel: &str| client::PublishRequest {
        r#type: 1,
        key: "k".into(),
        ..publish(channel, b"1")
    };
    let grant = session.authorize_publish(&rules, &map("map:a")).unwrap();
    let change = grant.map.unwrap();
    assert_eq!((change.key.as_str(), change.removed), ("k", false));
    let keyless = client::PublishRequest {
        key: String::new(),
        ..map("map:a")
    };
    assert_eq!(check(keyless), 107);
    let removal = client::PublishRequest {
        removed: true,
        ..map("map:a")
    };
    assert_eq!(check(removal), 103, "map.allow_remove_* not set");
    assert_eq!(check(map("anon:a")), 107);
    assert_eq!(
        err(super::test_support::session(&rules)
            .authorize_publish(&rules, &publish("anon:a", b"1"))),
        3501
    );
}

#[test]
fn presence_access() {
    let rules = rules();
    let mut session = connected(&rules, "42");
    assert_eq!(err(session.authorize_presence(&rules, "chat:a")), 103);
    subscribe(&mut session, &rules, &sub_request("chat:a"));
    let options = session.authorize_presence(&rules, "chat:a").unwrap();
    assert!(options.presence);
    assert_eq!(err(session.authorize_presence(&rules, "anon:a")), 108);
    assert_eq!(err(session.authorize_presence(&rules, "nope:a")), 102);
    assert_eq!(err(session.authorize_presence(&rules, "")), 3501);

    let mut config = config();
    config.client.insecure = true;
    let insecure = rules_from(&config);
    let session = connected(&insecure, "");
    assert!(session.authorize_presence(&insecure, "forced:a").is_ok());
    assert_eq!(err(session.authorize_presence(&insecure, "anon:a")), 108);
}

#[test]
fn history_access() {
    let rules = rules();
    let mut session = connected(&rules, "42");
    assert_eq!(err(session.authorize_history(&rules, "chat:a")), 103);
    subscribe(&mut session, &rules, &sub_request("chat:a"));
    let options = session.authorize_history(&rules, "chat:a").unwrap();
    assert_eq!(options.history_size, 10);
    assert_eq!(err(session.authorize_history(&rules, "anon:a")), 108);
    // forced has history but no history permissions.
    assert_eq!(err(session.authorize_history(&rules, "forced:a")), 103);

    let mut config = config();
    config.channel.namespaces[4]
        .options
        .allow_history_for_client = true;
    let client_access = rules_from(&config);
    assert!(
        connected(&client_access, "42")
            .authorize_history(&client_access, "forced:a")
            .is_ok()
    );
    assert_eq!(
        err(connected(&client_access, "").authorize_history(&client_access, "forced:a")),
        103
    );
    config.channel.namespaces[4]
        .options
        .allow_history_for_anonymous = true;
    let anonymous_access = rules_from(&config);
    assert!(
        connected(&anonymous_access, "")
            .authorize_history(&anonymous_access, "forced:a")
            .is_ok()
    );
}
