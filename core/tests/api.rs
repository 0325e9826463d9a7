//! The HTTP API router driven with `oneshot`, with fake edges reading what reaches them.
// Test helpers outside `#[test]` functions unwrap too: a panic is a failed test.
#![allow(clippy::unwrap_used)]

mod support;

use serde_json::json;
use spindle_hub::config::{Config, ErrorMode, Secret};
use spindle_mesh::mesh::{self, control};
use spindle_proto::client;
use support::{Answers, FakeEdge, KEY, config, node, post, publication, send};

fn router_with(adjust: impl FnOnce(&mut Config)) -> (spindle_core::Node, axum::Router) {
    let node = node(config(adjust));
    let router = node.api_router();
    (node, router)
}

async fn listening(node: &spindle_core::Node, channels: &[&str]) -> FakeEdge {
    let edge = FakeEdge::attach(node, "e1", Answers::default());
    edge.interest(channels, &[]).await;
    edge
}

const UNKNOWN_CHANNEL: &str = r#"{"error":{"code":102,"message":"unknown channel"}}"#;
const BAD_REQUEST: &str = r#"{"error":{"code":107,"message":"bad request"}}"#;
const NOT_AVAILABLE: &str = r#"{"error":{"code":108,"message":"not available"}}"#;
const NOT_FOUND: &str = r#"{"error":{"code":104,"message":"not found"}}"#;

#[tokio::test]
async fn publish_delivers_raw_data_and_tags() {
    let (node, router) = router_with(|_| {});
    let mut edge = listening(&node, &["news"]).await;
    let body = r#"{"channel":"news","data":{"text": "hi", "n":[1, 2]},"tags":{"k":"v"},
                   "skip_history":true,"idempotency_key":"i","delta":true,"version":3,
                   "version_epoch":"e"}"#;
    let reply = post(&router, "publish", body).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.content_type.as_deref(), Some("application/json"));
    assert_eq!(reply.body, r#"{"result":{}}"#);
    let event = edge.next_event().await;
    let Some(mesh::channel_event::Kind::Publication(p)) = event.kind else {
        panic!()
    };
    assert_eq!(p.data.as_ref(), br#"{"text": "hi", "n":[1, 2]}"#);
    assert_eq!(p.tags.get("k").map(String::as_str), Some("v"));
    assert_eq!(p.info, None);
}

#[tokio::test]
async fn publish_b64data_is_decoded() {
    let (node, router) = router_with(|_| {});
    let mut edge = listening(&node, &["bin:a", "news"]).await;
    let reply = post(
        &router,
        "publish",
        r#"{"channel":"bin:a","b64data":"AAEC/w=="}"#,
    )
    .await;
    assert_eq!(reply.body, r#"{"result":{}}"#);
    assert_eq!(
        publication(&edge.next_event().await),
        ("bin:a", &[0u8, 1, 2, 255][..])
    );
    // b64data wins over data.
    let body = r#"{"channel":"news","data":{"x":1},"b64data":"aGk="}"#;
    assert_eq!(
        post(&router, "publish", body).await.body,
        r#"{"result":{}}"#
    );
    assert_eq!(publication(&edge.next_event().await), ("news", &b"hi"[..]));
}

#[tokio::test]
async fn publish_validation() {
    let (node, router) = router_with(|_| {});
    let mut edge = listening(&node, &["news"]).await;
    let table = [
        (r#"{"data":1}"#, BAD_REQUEST),
        (r#"{"channel":"","data":1}"#, BAD_REQUEST),
        (r#"{"channel":"news"}"#, BAD_REQUEST),
        (r#"{"channel":"news","data":null}"#, BAD_REQUEST),
        (r#"{"channel":"news","b64data":"!!"}"#, BAD_REQUEST),
        (r#"{"channel":"nope:x","data":1}"#, UNKNOWN_CHANNEL),
        // b64data is decoded before the channel is looked up.
        (r#"{"channel":"nope:x","b64data":"!!"}"#, BAD_REQUEST),
        (r#"{"channel":"map:x","data":1}"#, BAD_REQUEST),
        (r#"{"channel":"obj:x","data":[1]}"#, BAD_REQUEST),
        (
            r#"{"channel":"obj:x","b64data":"bm90IGpzb24="}"#,
            BAD_REQUEST,
        ),
        (r#"{"channel":"café","data":1}"#, BAD_REQUEST),
        (r#"{"channel":"obj:x","data":{"a":1}}"#, r#"{"result":{}}"#),
        (r#"{"channel":"bin:x"}"#, r#"{"result":{}}"#),
        (r#"{"channel":"news","data":""}"#, r#"{"result":{}}"#),
    ];
    for (body, expected) in table {
        let reply = post(&router, "publish", body).await;
        assert_eq!(
            (reply.status.as_u16(), reply.body.as_str()),
            (200, expected),
            "{body}"
        );
    }
    // Only the last one was for `news`.
    assert_eq!(
        publication(&edge.next_event().await),
        ("news", &br#""""#[..])
    );
    assert_eq!(node.stats().publications, 3);
}

#[tokio::test]
async fn publication_data_format_falls_back_to_the_channel_section() {
    use spindle_hub::config::PublicationDataFormat;
    let (_node, router) =
        router_with(|c| c.channel.publication_data_format = PublicationDataFormat::JsonObject);
    let reply = post(&router, "publish", r#"{"channel":"news","data":"text"}"#).await;
    assert_eq!(reply.body, BAD_REQUEST);
    let reply = post(&router, "publish", r#"{"channel":"bin:x","data":"text"}"#).await;
    assert_eq!(reply.body, r#"{"result":{}}"#);
}

#[tokio::test]
async fn broadcast_answers_per_channel_in_order() {
    let (node, router) = router_with(|_| {});
    let mut edge = listening(&node, &["news", "chat:a"]).await;
    let body = r#"{"channels":["news","nope:x","","map:m","chat:a"],"data":{"a":1}}"#;
    let reply = post(&router, "broadcast", body).await;
    let expected = json!({"result": {"responses": [
        {"result": {}},
        {"error": {"code": 102, "message": "unknown channel"}},
        {"error": {"code": 107, "message": "bad request"}},
        {"error": {"code": 107, "message": "bad request"}},
        {"result": {}},
    ]}});
    assert_eq!(reply.json(), expected);
    assert_eq!(
        publication(&edge.next_event().await),
        ("news", &br#"{"a":1}"#[..])
    );
    assert_eq!(
        publication(&edge.next_event().await),
        ("chat:a", &br#"{"a":1}"#[..])
    );

    assert_eq!(
        post(&router, "broadcast", r#"{"data":1}"#).await.body,
        BAD_REQUEST
    );
    assert_eq!(
        post(&router, "broadcast", r#"{"channels":[],"data":1}"#)
            .await
            .body,
        BAD_REQUEST
    );
    let bad_b64 = r#"{"channels":["news"],"b64data":"%%"}"#;
    assert_eq!(post(&router, "broadcast", bad_b64).await.body, BAD_REQUEST);
    let no_data = post(&router, "broadcast", r#"{"channels":["news","bin:b"]}"#).await;
    let expected = json!({"result": {"responses": [
        {"error": {"code": 107, "message": "bad request"}},
        {"result": {}},
    ]}});
    assert_eq!(no_data.json(), expected);
}

#[tokio::test]
async fn subscribe_sends_a_control_to_every_edge() {
    let (node, router) = router_with(|_| {});
    let mut e1 = FakeEdge::attach(&node, "e1", Answers::default());
    let mut e2 = FakeEdge::attach(&node, "e2", Answers::default());
    let body = r#"{"channel":"chat:a","user":"u1","client":"c1","session":"s1","expire_at":100,
                   "info":{"x":1},"b64data":"aGk=","recover_since":{"offset":5,"epoch":"ep"},
                   "override":{"presence":{"value":true}}}"#;
    assert_eq!(
        post(&router, "subscribe", body).await.body,
        r#"{"result":{}}"#
    );
    let expected = mesh::Control {
        user: "u1".into(),
        client: "c1".into(),
        session: "s1".into(),
        kind: Some(control::Kind::Subscribe(mesh::SubscribeCommand {
            channel: "chat:a".into(),
            expire_at: 100,
            info: br#"{"x":1}"#.to_vec().into(),
            data: b"hi".to_vec().into(),
            recover_since: Some(client::StreamPosition {
                offset: 5,
                epoch: "ep".into(),
            }),
        })),
    };
    assert_eq!(e1.next_control().await, expected);
    assert_eq!(e2.next_control().await, expected);

    let b64info = r#"{"channel":"chat:a","user":"u","b64info":"e30=","data":[1]}"#;
    assert_eq!(
        post(&router, "subscribe", b64info).await.body,
        r#"{"result":{}}"#
    );
    let Some(control::Kind::Subscribe(command)) = e1.next_control().await.kind else {
        panic!()
    };
    assert_eq!(
        (command.info.as_ref(), command.data.as_ref()),
        (&b"{}"[..], &b"[1]"[..])
    );

    assert_eq!(
        post(&router, "subscribe", r#"{"user":"u"}"#).await.body,
        BAD_REQUEST
    );
    let unknown = r#"{"channel":"nope:a","user":"u"}"#;
    assert_eq!(
        post(&router, "subscribe", unknown).await.body,
        UNKNOWN_CHANNEL
    );
    let bad_info = r#"{"channel":"chat:a","b64info":"*"}"#;
    assert_eq!(post(&router, "subscribe", bad_info).await.body, BAD_REQUEST);
    e1.assert_quiet().await;
}

#[tokio::test]
async fn unsubscribe_disconnect_and_refresh_send_controls() {
    let (node, router) = router_with(|_| {});
    let mut edge = FakeEdge::attach(&node, "e1", Answers::default());
    let control = |user: &str, client: &str, session: &str, kind| mesh::Control {
        user: user.into(),
        client: client.into(),
        session: session.into(),
        kind: Some(kind),
    };

    let body = r#"{"channel":"chat:a","user":"u1","client":"c1","session":"s1"}"#;
    assert_eq!(
        post(&router, "unsubscribe", body).await.body,
        r#"{"result":{}}"#
    );
    let unsubscribe = |channel: &str| {
        control::Kind::Unsubscribe(mesh::UnsubscribeCommand {
            channel: channel.into(),
            ..Default::default()
        })
    };
    assert_eq!(
        edge.next_control().await,
        control("u1", "c1", "s1", unsubscribe("chat:a"))
    );
    // An empty channel is accepted (and useless); an unknown namespace is not.
    assert_eq!(
        post(&router, "unsubscribe", r#"{"user":"u2"}"#).await.body,
        r#"{"result":{}}"#
    );
    assert_eq!(
        edge.next_control().await,
        control("u2", "", "", unsubscribe(""))
    );
    let unknown = r#"{"channel":"nope:a","user":"u"}"#;
    assert_eq!(
        post(&router, "unsubscribe", unknown).await.body,
        UNKNOWN_CHANNEL
    );

    assert_eq!(
        post(&router, "disconnect", r#"{"user":"u1"}"#).await.body,
        r#"{"result":{}}"#
    );
    let disconnect = |code, reason: &str, whitelist: &[&str]| {
        control::Kind::Disconnect(mesh::DisconnectCommand {
            code,
            reason: reason.into(),
            whitelist: whitelist.iter().map(|s| s.to_string()).collect(),
        })
    };
    let forced = disconnect(3503, "force disconnect", &[]);
    assert_eq!(edge.next_control().await, control("u1", "", "", forced));
    let body = r#"{"user":"u1","client":"c1","session":"s1","whitelist":["c2","c3"],
                   "disconnect":{"code":4000,"reason":"bye"}}"#;
    assert_eq!(
        post(&router, "disconnect", body).await.body,
        r#"{"result":{}}"#
    );
    let custom = disconnect(4000, "bye", &["c2", "c3"]);
    assert_eq!(edge.next_control().await, control("u1", "c1", "s1", custom));

    let body = r#"{"user":"u1","client":"c1","session":"s1","expired":true}"#;
    assert_eq!(
        post(&router, "refresh", body).await.body,
        r#"{"result":{}}"#
    );
    let refresh = |expired, expire_at, info: &[u8]| {
        control::Kind::Refresh(mesh::RefreshCommand {
            expired,
            expire_at,
            info: info.to_vec().into(),
        })
    };
    assert_eq!(
        edge.next_control().await,
        control("u1", "c1", "s1", refresh(true, 0, b""))
    );
    let body = r#"{"user":"u1","expire_at":1700000000,"info":{"plan":"pro"}}"#;
    assert_eq!(
        post(&router, "refresh", body).await.body,
        r#"{"result":{}}"#
    );
    let expected = refresh(false, 1_700_000_000, br#"{"plan":"pro"}"#);
    assert_eq!(edge.next_control().await, control("u1", "", "", expected));
    assert_eq!(node.stats().controls, 6);
}

#[tokio::test]
async fn controls_succeed_without_edges() {
    let (_node, router) = router_with(|_| {});
    assert_eq!(
        post(&router, "disconnect", r#"{"user":"u"}"#).await.body,
        r#"{"result":{}}"#
    );
}

#[tokio::test]
async fn channels_merges_surveys_and_filters_by_pattern() {
    let (node, router) = router_with(|_| {});
    let answers = |pairs: &[(&str, u32)]| Answers {
        channels: pairs.iter().map(|(c, n)| (c.to_string(), *n)).collect(),
        ..Default::default()
    };
    let mut e1 = FakeEdge::attach(&node, "e1", answers(&[("news", 2), ("chat:a", 1)]));
    let _e2 = FakeEdge::attach(&node, "e2", answers(&[("news", 3), ("chat:b", 4)]));

    let reply = post(&router, "channels", r#"{"pattern":"chat:*"}"#).await;
    let expected = json!({"result": {"channels": {
        "chat:a": {"num_clients": 1},
        "chat:b": {"num_clients": 4},
    }}});
    assert_eq!(reply.json(), expected);
    assert_eq!(e1.survey_patterns.recv().await.unwrap(), "chat:*");

    let all = post(&router, "channels", "{}").await;
    let expected = json!({"result": {"channels": {
        "chat:a": {"num_clients": 1},
        "chat:b": {"num_clients": 4},
        "news": {"num_clients": 5},
    }}});
    assert_eq!(all.json(), expected);
    // No channel: still `channels` (Centrifugo always writes it; cent cannot decode without).
    let none = post(&router, "channels", r#"{"pattern":"x?"}"#).await;
    assert_eq!(none.body, r#"{"result":{"channels":{}}}"#);
    let batch = post(
        &router,
        "batch",
        r#"{"commands":[{"channels":{"pattern":"x?"}}]}"#,
    )
    .await;
    assert_eq!(batch.body, r#"{"replies":[{"channels":{"channels":{}}}]}"#);
    // Alternatives, as in Centrifugo's patterns.
    let either = post(&router, "channels", r#"{"pattern":"{news,chat:b}"}"#).await;
    let expected = json!({"result": {"channels": {
        "chat:b": {"num_clients": 4},
        "news": {"num_clients": 5},
    }}});
    assert_eq!(either.json(), expected);
    assert_eq!(
        post(&router, "channels", r#"{"pattern":"[ab"}"#).await.body,
        BAD_REQUEST
    );
}

#[tokio::test]
async fn info_reports_this_node_with_edge_counts() {
    let (node, router) = router_with(|_| {});
    let stats = |clients, users, subs| Answers {
        stats: mesh::NodeStats {
            num_clients: clients,
            num_users: users,
            num_subs: subs,
            ..Default::default()
        },
        ..Default::default()
    };
    let e1 = FakeEdge::attach(&node, "e1", stats(2, 1, 3));
    let _e2 = FakeEdge::attach(&node, "e2", stats(3, 2, 4));
    e1.interest(&["news"], &[]).await;
    let mut reply = post(&router, "info", "{}").await.json();
    let nodes = reply["result"]["nodes"].as_array_mut().unwrap();
    assert_eq!(nodes.len(), 1);
    // Uptime is omitted while it is 0 s.
    nodes[0].as_object_mut().unwrap().remove("uptime");
    let expected = json!({"result": {"nodes": [{
        "uid": "node-uid", "name": "node-name", "version": spindle_core::VERSION,
        "num_clients": 5, "num_users": 3, "num_channels": 1, "num_subs": 7,
    }]}});
    assert_eq!(reply, expected);

    // Without edges the counts are present and zero.
    let (_node, router) = router_with(|_| {});
    let reply = post(&router, "info", "").await;
    assert_eq!(reply.status, 400);
    let mut reply = post(&router, "info", "null").await.json();
    reply["result"]["nodes"][0]
        .as_object_mut()
        .unwrap()
        .remove("uptime");
    let expected = json!({"result": {"nodes": [{
        "uid": "node-uid", "name": "node-name", "version": spindle_core::VERSION,
        "num_clients": 0, "num_users": 0, "num_channels": 0, "num_subs": 0,
    }]}});
    assert_eq!(reply, expected);
}

#[tokio::test]
async fn presence_and_history_need_their_namespace_feature() {
    let (_node, router) = router_with(|_| {});
    let table = [
        ("presence", "pres:a", "hist:a"),
        ("presence_stats", "pres:a", "hist:a"),
        ("history", "hist:a", "pres:a"),
        ("history_remove", "hist:a", "pres:a"),
    ];
    for (method, served, other) in table {
        let cases = [
            ("{}".to_owned(), BAD_REQUEST),
            (r#"{"channel":""}"#.to_owned(), BAD_REQUEST),
            (r#"{"channel":"nope:a"}"#.to_owned(), UNKNOWN_CHANNEL),
            (r#"{"channel":"chat:a"}"#.to_owned(), NOT_AVAILABLE),
            (format!(r#"{{"channel":"{other}"}}"#), NOT_AVAILABLE),
        ];
        for (body, expected) in cases {
            assert_eq!(
                post(&router, method, &body).await.body,
                expected,
                "{method} {body}"
            );
        }
        let body = format!(r#"{{"channel":"{served}"}}"#);
        let reply = post(&router, method, &body).await.json();
        assert!(reply.get("result").is_some(), "{method}: {reply}");
    }
}

#[tokio::test]
async fn rpc_has_no_methods() {
    let (_node, router) = router_with(|_| {});
    let reply = post(&router, "rpc", r#"{"method":"getUser","params":{"id":1}}"#).await;
    assert_eq!(reply.body, NOT_FOUND);
    assert_eq!(
        post(&router, "rpc", r#"{"params":{}}"#).await.body,
        BAD_REQUEST
    );
}

#[tokio::test]
async fn batch_answers_in_order_with_method_keys() {
    let (node, router) = router_with(|_| {});
    let mut edge = listening(&node, &["news"]).await;
    let body = r#"{"commands":[
        {"publish":{"channel":"news","data":1}},
        {"publish":{"channel":"nope:x","data":1}},
        null,
        {},
        {"unknown_method":{}},
        {"rpc":{"method":"m"}},
        {"disconnect":{"user":"u"}},
        {"presence_stats":{"channel":"pres:a"}},
        {"broadcast":{"channels":["news"],"data":2}}
    ]}"#;
    let reply = post(&router, "batch", body).await;
    assert_eq!(reply.status, 200);
    let expected = json!({"replies": [
        {"publish": {}},
        {"error": {"code": 102, "message": "unknown channel"}},
        {"error": {"code": 107, "message": "bad request"}},
        {"error": {"code": 104, "message": "not found"}},
        {"error": {"code": 104, "message": "not found"}},
        {"error": {"code": 104, "message": "not found"}},
        {"disconnect": {}},
        {"presence_stats": {"num_clients": 0, "num_users": 0}},
        {"broadcast": {"responses": [{"result": {}}]}},
    ]});
    assert_eq!(reply.json(), expected);
    // Events keep their order; a control message may come before, between or after them (it
    // travels on the control stream, events on their lane).
    let mut events = Vec::new();
    let mut controls = 0;
    for _ in 0..3 {
        match edge.next().await {
            support::Received::Event(event) => events.push(publication(&event).1.to_vec()),
            support::Received::Control(_) => controls += 1,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!((events, controls), (vec![b"1".to_vec(), b"2".to_vec()], 1));

    assert_eq!(post(&router, "batch", "{}").await.body, r#"{"replies":[]}"#);
    assert_eq!(
        post(&router, "batch", r#"{"commands":null}"#).await.body,
        r#"{"replies":[]}"#
    );
    for undecodable in [
        r#"{"commands":[{"publish":{"channel":5}}]}"#,
        r#"{"commands":[["publish"]]}"#,
        r#"{"commands":[1]}"#,
        r#"[[]]"#,
    ] {
        assert_eq!(
            post(&router, "batch", undecodable).await.status,
            400,
            "{undecodable}"
        );
    }
}

#[tokio::test]
async fn parallel_batch_keeps_reply_order() {
    let (node, router) = router_with(|_| {});
    let mut edge = listening(&node, &["news"]).await;
    let mut commands: Vec<serde_json::Value> = (0..100)
        .map(|i| json!({"publish": {"channel": "news", "data": i}}))
        .collect();
    commands.insert(50, json!({"publish": {"channel": "nope:x", "data": 1}}));
    let body = json!({"commands": commands, "parallel": true}).to_string();
    let reply = post(&router, "batch", &body).await.json();
    let replies = reply["replies"].as_array().unwrap();
    assert_eq!(replies.len(), 101);
    for (i, reply) in replies.iter().enumerate() {
        if i == 50 {
            assert_eq!(reply["error"]["code"], 102);
        } else {
            assert_eq!(reply, &json!({"publish": {}}), "{i}");
        }
    }
    for i in 0..100 {
        assert_eq!(
            publication(&edge.next_event().await).1,
            i.to_string().as_bytes()
        );
    }
}

#[tokio::test]
async fn api_key_sources() {
    let (_node, router) = router_with(|_| {});
    let body = r#"{"user":"u"}"#;
    type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], u16);
    let table: &[Case<'_>] = &[
        ("/api/disconnect", &[], 401),
        ("/api/disconnect", &[("x-api-key", KEY)], 200),
        ("/api/disconnect", &[("x-api-key", "wrong")], 401),
        (
            "/api/disconnect",
            &[("authorization", "apikey secret-key")],
            200,
        ),
        (
            "/api/disconnect",
            &[("authorization", "ApiKey secret-key")],
            200,
        ),
        (
            "/api/disconnect",
            &[("authorization", "Bearer secret-key")],
            401,
        ),
        (
            "/api/disconnect",
            &[("authorization", "apikey secret-key more")],
            401,
        ),
        ("/api/disconnect", &[("authorization", "secret-key")], 401),
        // A wrong X-API-Key is not rescued by a right Authorization header ...
        (
            "/api/disconnect",
            &[
                ("x-api-key", "wrong"),
                ("authorization", "apikey secret-key"),
            ],
            401,
        ),
        // ... but the query parameter is checked when the headers did not authorize.
        ("/api/disconnect?api_key=secret-key", &[], 200),
        (
            "/api/disconnect?api_key=secret-key",
            &[("x-api-key", "wrong")],
            200,
        ),
        ("/api/disconnect?api_key=wrong", &[], 401),
        ("/api/disconnect?other=1&api_key=secret%2Dkey", &[], 200),
        ("/api", &[], 401),
        ("/api?api_key=secret-key", &[], 200),
    ];
    for (uri, headers, status) in table {
        let reply = send(&router, "POST", uri, headers, body.to_owned()).await;
        assert_eq!(reply.status.as_u16(), *status, "{uri} {headers:?}");
        if *status == 401 {
            assert_eq!(reply.body, "");
        }
    }
}

#[tokio::test]
async fn an_empty_key_refuses_everything_unless_insecure() {
    let (_node, router) = router_with(|c| c.http_api.key = Secret::default());
    for headers in [
        &[][..],
        &[("x-api-key", "")][..],
        &[("authorization", "apikey ")][..],
    ] {
        let reply = send(&router, "POST", "/api/info?api_key=", headers, "{}").await;
        assert_eq!((reply.status.as_u16(), reply.body.as_str()), (401, ""));
    }
    let (_node, router) = router_with(|c| {
        c.http_api.key = Secret::default();
        c.http_api.insecure = true;
    });
    assert_eq!(
        send(&router, "POST", "/api/info", &[], "{}").await.status,
        200
    );
    let (_node, router) = router_with(|c| c.http_api.insecure = true);
    assert_eq!(
        send(&router, "POST", "/api/info", &[("x-api-key", "no")], "{}")
            .await
            .status,
        200
    );
}

#[tokio::test]
async fn transport_error_mode_from_config() {
    let (_node, router) = router_with(|c| c.http_api.error_mode = ErrorMode::Transport);
    let table = [
        (
            "publish",
            r#"{"channel":"nope:x","data":1}"#,
            404,
            r#"{"code":102,"message":"unknown channel"}"#,
        ),
        (
            "publish",
            r#"{"channel":"news"}"#,
            400,
            r#"{"code":107,"message":"bad request"}"#,
        ),
        (
            "presence",
            r#"{"channel":"chat:a"}"#,
            400,
            r#"{"code":108,"message":"not available"}"#,
        ),
        (
            "history",
            r#"{"channel":"hist:a","since":{"offset":1,"epoch":"gone"}}"#,
            416,
            r#"{"code":112,"message":"unrecoverable position"}"#,
        ),
        (
            "rpc",
            r#"{"method":"m"}"#,
            404,
            r#"{"code":104,"message":"not found"}"#,
        ),
        (
            "publish",
            r#"{"channel":"news","data":1}"#,
            200,
            r#"{"result":{}}"#,
        ),
        // Broadcast item errors stay in the result.
        (
            "broadcast",
            r#"{"channels":["nope:x"],"data":1}"#,
            200,
            r#"{"result":{"responses":[{"error":{"code":102,"message":"unknown channel"}}]}}"#,
        ),
        (
            "broadcast",
            r#"{"channels":[],"data":1}"#,
            400,
            r#"{"code":107,"message":"bad request"}"#,
        ),
        // Batch never uses transport mode.
        (
            "batch",
            r#"{"commands":[{"rpc":{"method":"m"}}]}"#,
            200,
            r#"{"replies":[{"error":{"code":104,"message":"not found"}}]}"#,
        ),
    ];
    for (method, body, status, expected) in table {
        let reply = post(&router, method, body).await;
        assert_eq!(
            (reply.status.as_u16(), reply.body.as_str()),
            (status, expected),
            "{body}"
        );
        assert_eq!(reply.content_type.as_deref(), Some("application/json"));
    }
}

#[tokio::test]
async fn transport_error_mode_from_header() {
    let (_node, router) = router_with(|_| {});
    let headers = [("x-api-key", KEY), ("x-centrifugo-error-mode", "transport")];
    let body = r#"{"channel":"nope:x","data":1}"#;
    let reply = send(&router, "POST", "/api/publish", &headers, body).await;
    assert_eq!(
        (reply.status.as_u16(), reply.body.as_str()),
        (404, r#"{"code":102,"message":"unknown channel"}"#)
    );
    // Without the header: HTTP 200 and the error in the body.
    let reply = post(&router, "publish", body).await;
    assert_eq!(
        (reply.status.as_u16(), reply.body.as_str()),
        (200, UNKNOWN_CHANNEL)
    );
    // The legacy route ignores it.
    let legacy = r#"{"method":"publish","params":{"channel":"nope:x","data":1}}"#;
    let reply = send(&router, "POST", "/api", &headers, legacy).await;
    assert_eq!(
        (reply.status.as_u16(), reply.body.as_str()),
        (200, UNKNOWN_CHANNEL)
    );
}

#[tokio::test]
async fn bad_requests_at_the_http_level() {
    let (_node, router) = router_with(|_| {});
    let key = [("x-api-key", KEY)];
    let get = send(&router, "GET", "/api/publish", &key, "").await;
    assert_eq!(get.status, 405);
    assert_eq!(send(&router, "PUT", "/api", &key, "").await.status, 405);
    let array = r#"["news", "data"]"#;
    for body in [
        "",
        "{",
        "[1]",
        array,
        r#"{"channel":5}"#,
        "{} {}",
        "\u{0}",
        "nul",
    ] {
        let reply = send(&router, "POST", "/api/publish", &key, body).await;
        assert_eq!(
            (reply.status.as_u16(), reply.body.as_str()),
            (400, "Bad Request"),
            "{body:?}"
        );
    }
    let unknown = send(&router, "POST", "/api/nope", &key, "{}").await;
    assert_eq!(unknown.status, 404);
    let upper = send(&router, "POST", "/api/Publish", &key, "{}").await;
    assert_eq!(upper.status, 404);
    let huge = vec![b' '; spindle_core::api::MAX_BODY_SIZE + 1];
    let reply = send(&router, "POST", "/api/info", &key, huge).await;
    assert_eq!(reply.status, 413);
}

#[tokio::test]
async fn handler_prefix_and_disabled() {
    let (_node, router) = router_with(|c| c.http_api.handler_prefix = "/custom/".into());
    let reply = send(&router, "POST", "/custom/info", &[("x-api-key", KEY)], "{}").await;
    assert_eq!(reply.status, 200);
    let reply = send(
        &router,
        "POST",
        "/custom",
        &[("x-api-key", KEY)],
        r#"{"method":"info"}"#,
    )
    .await;
    assert_eq!(reply.status, 200);
    assert_eq!(
        send(&router, "POST", "/api/info", &[("x-api-key", KEY)], "{}")
            .await
            .status,
        404
    );
    let (_node, router) = router_with(|c| c.http_api.disabled = true);
    assert_eq!(
        send(&router, "POST", "/api/info", &[("x-api-key", KEY)], "{}")
            .await
            .status,
        404
    );
}

#[tokio::test]
async fn legacy_route_runs_each_command() {
    let (node, router) = router_with(|_| {});
    let mut edge = listening(&node, &["news"]).await;
    let body = concat!(
        r#"{"id":1,"method":"publish","params":{"channel":"news","data":{"n":1}}}"#,
        "\n",
        r#"{"id":2,"method":"PUBLISH","params":{"channel":"nope:x","data":1}}"#,
        "\n",
        r#"{"id":3,"method":13,"params":{}}"#,
        "\n",
        r#"{"id":4,"method":"Connections","params":{}}"#,
        "\n",
        r#"{"id":5,"method":"broadcast"}"#,
        "\n",
        r#"{"id":6,"params":{"channel":"news","data":2}}"#,
        "\n",
        r#"{"id":7,"method":3,"params":null}"#,
        "\n\n",
        r#"{"method":"rpc","params":{"method":"x"}}"#,
        "\n"
    );
    let reply = send(&router, "POST", "/api", &[("x-api-key", KEY)], body).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.content_type.as_deref(), Some("application/json"));
    let expected = [
        r#"{"id":1,"result":{}}"#,
        r#"{"id":2,"error":{"code":102,"message":"unknown channel"}}"#,
        r#"{"id":3,"error":{"code":104,"message":"not found"}}"#,
        r#"{"id":4,"error":{"code":104,"message":"not found"}}"#,
        r#"{"id":5,"error":{"code":107,"message":"bad request"}}"#,
        r#"{"id":6,"result":{}}"#,
        r#"{"id":7,"result":{}}"#,
        r#"{"error":{"code":104,"message":"not found"}}"#,
    ]
    .join("\n");
    assert_eq!(reply.body, expected);
    assert_eq!(
        publication(&edge.next_event().await),
        ("news", &br#"{"n":1}"#[..])
    );
    assert_eq!(publication(&edge.next_event().await), ("news", &b"2"[..]));
    // Method 3 is disconnect, with null params: the empty request (anonymous users).
    let disconnect = edge.next_control().await;
    assert_eq!(
        (disconnect.user.as_str(), disconnect.client.as_str()),
        ("", "")
    );

    let info = send(
        &router,
        "POST",
        "/api",
        &[("x-api-key", KEY)],
        r#"{"method":"info"}"#,
    )
    .await;
    let info = info.json();
    assert_eq!(info["result"]["nodes"][0]["uid"], "node-uid");
}

#[tokio::test]
async fn legacy_bodies_that_do_not_decode_have_no_effect() {
    let (node, router) = router_with(|_| {});
    let key = [("x-api-key", KEY)];
    let first_is_fine = r#"{"method":"publish","params":{"channel":"news","data":1}}"#;
    let bodies = [
        String::new(),
        format!("{first_is_fine}\n{{\"method\":\"nope\"}}"),
        format!("{first_is_fine}\n{{\"method\":null}}"),
        format!("{first_is_fine}\n{{\"method\":1.5}}"),
        format!("{first_is_fine}\n{{\"id\":-1}}"),
        format!("{first_is_fine}\n{{broken"),
        format!("{first_is_fine}\n[1]"),
    ];
    for body in bodies {
        let reply = send(&router, "POST", "/api", &key, body.clone()).await;
        assert_eq!(
            (reply.status.as_u16(), reply.body.as_str()),
            (400, "Bad Request"),
            "{body}"
        );
    }
    assert_eq!(node.stats().publications, 0);
    let blank = send(&router, "POST", "/api", &key, " \n").await;
    assert_eq!((blank.status.as_u16(), blank.body.as_str()), (200, ""));
}
