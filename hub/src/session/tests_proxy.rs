//! Proxy decisions: when the session asks the backend, and how the answer completes the
//! command (connect, subscribe, publish, rpc, server-side refresh and sub_refresh).

use bytes::Bytes;
use spindle_proto::{client, proxy};

use super::test_support::*;
use super::*;
use crate::config::{RpcNamespace, RpcOptions};

fn proxy_rules(change: impl FnOnce(&mut crate::config::Config)) -> SessionRules {
    let mut config = config();
    config.client.proxy.connect.enabled = true;
    change(&mut config);
    rules_from(&config)
}

fn answer_of(result: proxy::ConnectResult) -> proxy::ConnectResponse {
    proxy::ConnectResponse {
        result: Some(result),
        ..Default::default()
    }
}

#[test]
fn connect_without_token_asks_the_connect_proxy() {
    let rules = proxy_rules(|_| {});
    let mut session = session(&rules);
    let request = connect_request("");
    let call = session.connect_proxy(&rules, &request).unwrap();
    assert_eq!(call.kind, ProxyKind::Connect);
    assert_eq!(call.proxy_name, "default");
    // A token goes through JWT verification instead.
    let with_token = connect_request(&token(serde_json::json!({"sub": "u"})));
    assert!(session.connect_proxy(&rules, &with_token).is_none());

    let answer = answer_of(proxy::ConnectResult {
        user: "alice".into(),
        info: Bytes::from_static(b"{\"n\":1}"),
        data: Bytes::from_static(b"{\"w\":1}"),
        channels: vec!["chat:a".into()],
        meta: Bytes::from_static(b"{\"m\":1}"),
        expire_at: T0 + 100,
        ..Default::default()
    });
    let grant = session
        .connect_proxied(&rules, &request, &answer, t0())
        .unwrap();
    assert_eq!(grant.user, "alice");
    assert_eq!(grant.conn_info, b"{\"n\":1}");
    assert_eq!(&grant.result.data[..], b"{\"w\":1}");
    assert_eq!((grant.result.expires, grant.result.ttl), (true, 100));
    assert_eq!(grant.server_subs.len(), 1);
    assert_eq!(session.meta(), b"{\"m\":1}");
    assert!(
        session.connect_proxy(&rules, &request).is_none(),
        "connected"
    );
}

#[test]
fn connect_proxy_error_disconnect_and_empty_answers() {
    let rules = proxy_rules(|_| {});
    let request = connect_request("");
    let error = proxy::ConnectResponse {
        error: Some(proxy::Error {
            code: 1000,
            message: "no".into(),
            temporary: false,
        }),
        ..Default::default()
    };
    let mut s = session(&rules);
    assert_eq!(err(s.connect_proxied(&rules, &request, &error, t0())), 1000);
    assert!(s.admit(&command(2, spindle_proto::Request::Pong)).is_err());

    let bye = proxy::ConnectResponse {
        disconnect: Some(proxy::Disconnect {
            code: 4501,
            reason: "bye".into(),
        }),
        ..Default::default()
    };
    let mut s = session(&rules);
    assert_eq!(err(s.connect_proxied(&rules, &request, &bye, t0())), 4501);

    // No result: a connect without credentials (3501 unless anonymous is allowed).
    let mut s = session(&rules);
    let empty = proxy::ConnectResponse::default();
    assert_eq!(err(s.connect_proxied(&rules, &request, &empty, t0())), 3501);
    let rules = proxy_rules(|c| c.client.allow_anonymous_connect_without_token = true);
    let mut s = session(&rules);
    let grant = s.connect_proxied(&rules, &request, &empty, t0()).unwrap();
    assert_eq!(grant.user, "");

    // A channel of an unknown namespace: 102.
    let mut s = session(&rules);
    let unknown = answer_of(proxy::ConnectResult {
        user: "u".into(),
        channels: vec!["nope:x".into()],
        ..Default::default()
    });
    assert_eq!(
        err(s.connect_proxied(&rules, &request, &unknown, t0())),
        102
    );
}

#[test]
fn subscribe_proxy_decides_proxied_namespaces() {
    let rules = rules();
    let session = connected(&rules, "alice");
    let request = sub_request("proxied:a");
    let call = session.subscribe_proxy(&rules, &request).unwrap();
    assert_eq!(
        (call.kind, call.proxy_name.as_str()),
        (ProxyKind::Subscribe, "default")
    );
    assert!(
        session
            .subscribe_proxy(&rules, &sub_request("chat:a"))
            .is_none()
    );

    let allowed = proxy::SubscribeResponse {
        result: Some(proxy::SubscribeResult {
            info: Bytes::from_static(b"{\"c\":1}"),
            data: Bytes::from_static(b"{\"d\":1}"),
            r#override: Some(proxy::SubscribeOptionOverride {
                presence: Some(proxy::BoolValue { value: true }),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    let grant = session
        .authorize_subscribe_proxied(&rules, &request, &allowed, t0())
        .unwrap();
    assert_eq!(grant.chan_info, b"{\"c\":1}");
    assert_eq!(&grant.result.data[..], b"{\"d\":1}");
    assert!(grant.options.presence);

    // No result: allowed with the namespace's options.
    let empty = proxy::SubscribeResponse::default();
    assert!(
        session
            .authorize_subscribe_proxied(&rules, &request, &empty, t0())
            .is_ok()
    );
    let denied = proxy::SubscribeResponse {
        error: Some(proxy::Error {
            code: 103,
            message: "permission denied".into(),
            temporary: false,
        }),
        ..Default::default()
    };
    assert_eq!(
        err(session.authorize_subscribe_proxied(&rules, &request, &denied, t0())),
        103
    );
    // Without the answer, the proxy is still required (108).
    assert_eq!(
        err(session.authorize_subscribe(&rules, &request, t0())),
        108
    );
}

#[test]
fn publish_proxy_replaces_data_and_skips_the_allow_rules() {
    let rules = rules();
    let session = connected(&rules, "alice");
    let request = client::PublishRequest {
        channel: "proxied:a".into(),
        data: Bytes::from_static(b"{\"x\":1}"),
        ..Default::default()
    };
    assert!(session.publish_proxy(&rules, &request).is_some());
    let rewritten = proxy::PublishResponse {
        result: Some(proxy::PublishResult {
            data: Bytes::from_static(b"{\"y\":2}"),
            skip_history: true,
            ..Default::default()
        }),
        ..Default::default()
    };
    let grant = session
        .authorize_publish_proxied(&rules, &request, &rewritten)
        .unwrap();
    assert_eq!(grant.data, b"{\"y\":2}");
    assert!(grant.backend.unwrap().skip_history);
    let kept = session
        .authorize_publish_proxied(&rules, &request, &proxy::PublishResponse::default())
        .unwrap();
    assert_eq!(kept.data, b"{\"x\":1}");
}

#[test]
fn rpc_routes() {
    let mut config = config();
    let rules = rules_from(&config);
    assert_eq!(
        rules.route_rpc("ping"),
        Err(crate::outcome::Failure::NotAvailable)
    );
    // No RPC proxy anywhere and no ping: nothing answers (see tests_audit for the table).
    assert_eq!(
        rules.route_rpc("users:get"),
        Err(crate::outcome::Failure::NotAvailable)
    );
    config.rpc.ping.enabled = true;
    config.rpc.without_namespace.proxy_enabled = true;
    config.rpc.namespaces.push(RpcNamespace {
        name: "users".into(),
        options: RpcOptions {
            proxy_enabled: true,
            proxy_name: "users-backend".into(),
        },
    });
    config.rpc.namespaces.push(RpcNamespace {
        name: "off".into(),
        options: RpcOptions::default(),
    });
    let rules = rules_from(&config);
    assert_eq!(rules.route_rpc("ping"), Ok(RpcRoute::Ping));
    let RpcRoute::Proxy(call) = rules.route_rpc("users:get").unwrap() else {
        panic!("users:get goes to the proxy");
    };
    assert_eq!(
        (call.kind, call.proxy_name.as_str()),
        (ProxyKind::Rpc, "users-backend")
    );
    assert!(matches!(rules.route_rpc("plain"), Ok(RpcRoute::Proxy(_))));
    assert_eq!(
        rules.route_rpc("off:x"),
        Err(crate::outcome::Failure::NotAvailable)
    );
    assert_eq!(
        rules.route_rpc("other:x"),
        Err(crate::outcome::Failure::MethodNotFound)
    );
    let failed = proxy::RpcResponse {
        disconnect: Some(proxy::Disconnect {
            code: 4000,
            reason: "r".into(),
        }),
        ..Default::default()
    };
    assert_eq!(err(rpc_outcome(&failed)), 4000);
}

#[test]
fn refresh_proxy_is_asked_at_expiry() {
    let rules = proxy_rules(|c| c.client.proxy.refresh.enabled = true);
    let mut session = session(&rules);
    let answer = answer_of(proxy::ConnectResult {
        user: "alice".into(),
        expire_at: T0 + 10,
        ..Default::default()
    });
    let grant = session
        .connect_proxied(&rules, &connect_request(""), &answer, t0())
        .unwrap();
    assert!(!grant.result.expires, "server-side refresh");
    let refresh = client::RefreshRequest { token: "t".into() };
    assert_eq!(err(session.refresh(&rules, &refresh, at(1))), 3501);

    let actions = session.on_timer(at(10));
    assert!(
        actions.iter().any(
            |a| matches!(a, TimerAction::RefreshProxy(call) if call.kind == ProxyKind::Refresh)
        ),
        "{actions:?}"
    );
    // A failed call is retried later; an extension moves the expiry.
    let failed = proxy::RefreshResponse {
        error: Some(proxy::Error::default()),
        ..Default::default()
    };
    session.refresh_proxied(&failed, at(10)).unwrap();
    assert!(session.is_connected());
    assert!(
        session
            .on_timer(at(11))
            .iter()
            .all(|a| !matches!(a, TimerAction::RefreshProxy(_)))
    );
    let retry = at(10).after(PROXY_RETRY_DELAY);
    assert!(matches!(
        session.on_timer(retry)[..],
        [TimerAction::RefreshProxy(_), ..]
    ));
    let extended = proxy::RefreshResponse {
        result: Some(proxy::RefreshResult {
            expire_at: T0 + 200,
            ..Default::default()
        }),
        ..Default::default()
    };
    session.refresh_proxied(&extended, at(70)).unwrap();
    assert_eq!(session.expires_at(), Some(T0 + 200));
    let expired = proxy::RefreshResponse {
        result: Some(proxy::RefreshResult {
            expired: true,
            ..Default::default()
        }),
        ..Default::default()
    };
    assert_eq!(
        session.refresh_proxied(&expired, at(200)),
        Err(crate::codes::Disconnect::EXPIRED)
    );
    assert!(!session.is_connected());
}

#[test]
fn sub_refresh_proxy_is_asked_at_subscription_expiry() {
    let mut config = config();
    for ns in &mut config.channel.namespaces {
        if ns.name == "proxied" {
            ns.options.sub_refresh_proxy_enabled = true;
        }
    }
    let rules = rules_from(&config);
    let mut session = connected(&rules, "alice");
    let request = sub_request("proxied:a");
    let answer = proxy::SubscribeResponse {
        result: Some(proxy::SubscribeResult {
            expire_at: T0 + 5,
            ..Default::default()
        }),
        ..Default::default()
    };
    let grant = session
        .authorize_subscribe_proxied(&rules, &request, &answer, t0())
        .unwrap();
    assert!(!grant.result.expires, "server-side sub refresh");
    assert!(grant.refresh_proxy.is_some());
    session.add_subscription(&grant);
    let sub_refresh = client::SubRefreshRequest {
        channel: "proxied:a".into(),
        token: "t".into(),
        ..Default::default()
    };
    assert_eq!(err(session.sub_refresh(&rules, &sub_refresh, at(1))), 3501);

    let actions = session.on_timer(at(5));
    assert!(
        actions.iter().any(
            |a| matches!(a, TimerAction::SubRefreshProxy(channel, _) if channel == "proxied:a")
        ),
        "{actions:?}"
    );
    let extended = proxy::SubRefreshResponse {
        result: Some(proxy::SubRefreshResult {
            expire_at: T0 + 100,
            ..Default::default()
        }),
        ..Default::default()
    };
    session
        .sub_refresh_proxied("proxied:a", &extended, at(5))
        .unwrap();
    assert_eq!(
        session.subscription("proxied:a").unwrap().expires_at,
        Some(T0 + 100)
    );
    // Extended to T0 + 100: nothing happens to it before then, the proxy is asked at then.
    let actions = session.on_timer(at(50));
    assert!(
        actions.iter().all(|a| matches!(a, TimerAction::SendPing)),
        "nothing but pings before the new expiry: {actions:?}"
    );
    // The client answered the pings (the ping timers are not what this test is about).
    session.on_pong(at(51)).unwrap();
    let actions = session.on_timer(at(100));
    assert!(
        actions.iter().any(
            |a| matches!(a, TimerAction::SubRefreshProxy(channel, _) if channel == "proxied:a")
        ),
        "the proxy is asked again at the new expiry: {actions:?}"
    );
    let expired = proxy::SubRefreshResponse::default();
    assert_eq!(
        session.sub_refresh_proxied("proxied:a", &expired, at(100)),
        Err(false)
    );
}
