//! Proxies to the application backend (docs/protocol.md §7.4, §8): connect, refresh, subscribe,
//! publish, sub_refresh and rpc against the in-process test backend
//! ([`spindle_tests::backend::Backend`]), including its slow (timeout → 100), HTTP 500 (→ 100),
//! transformed status, `error` and `disconnect` answers; and the gRPC proxy against a tonic
//! backend ([`spindle_tests::grpc_backend::GrpcBackend`]).

use std::time::Duration;

use bytes::Bytes;
use serde_json::{Value, json};
use spindle_tests::backend::Backend;
use spindle_tests::client::payload_json;
use spindle_tests::proto::{
    Command, ConnectRequest, PublishRequest, Reply, RpcRequest, SubscribeRequest,
};
use spindle_tests::{Client, Format, OrFail, Server, TIMEOUT, fixture};

both_formats!(connect_proxy_result_reaches_the_client, rpc_round_trips);

/// A server whose proxies all point at `backend`.
async fn start_with(backend: &Backend) -> Server {
    Server::start_patched(backend.config_patch())
        .await
        .or_fail()
}

fn connect_command(data: &Value) -> Command {
    Command {
        connect: Some(ConnectRequest {
            data: Bytes::from(data.to_string()),
            name: "spindle-tests".into(),
            headers: [("X-Emulated".to_owned(), "emulated-value".to_owned())].into(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Opens a connection and connects without a token through the connect proxy.
async fn connect_reply(server: &Server, format: Format, data: &Value) -> (Client, Reply) {
    let mut client = Client::open(&server.ws_url(), format).await.or_fail();
    let reply = client.request(connect_command(data)).await.or_fail();
    (client, reply)
}

/// A client connected as `user` by the connect proxy.
async fn connected_as(server: &Server, format: Format, user: &str) -> Client {
    let (client, reply) =
        connect_reply(server, format, &json!({"mode": "user", "user": user})).await;
    assert!(reply.connect.is_some(), "connect as {user}: {reply:?}");
    client
}

fn error_code(reply: &Reply) -> u32 {
    reply
        .error
        .as_ref()
        .unwrap_or_else(|| panic!("want an error, got {reply:?}"))
        .code
}

async fn connect_proxy_result_reaches_the_client(format: Format) {
    let backend = Backend::start().await.or_fail();
    let server = start_with(&backend).await;
    let channel = fixture::unique("chat:from-proxy");
    let data = json!({"mode": "user", "user": "alice", "channels": [channel]});
    let (mut client, reply) = connect_reply(&server, format, &data).await;
    let result = reply
        .connect
        .clone()
        .unwrap_or_else(|| panic!("connect: {reply:?}"));
    assert_eq!(
        payload_json(&result.data).or_fail(),
        json!({"welcome": "alice"})
    );
    assert!(!result.expires, "no expire_at: {result:?}");
    assert!(
        result.subs.iter().any(|entry| entry.key == channel),
        "server-side sub from `channels`: {result:?}"
    );

    let request = backend.requests("connect").pop().expect("connect request");
    let body = &request.body;
    assert_eq!(body["client"], json!(result.client));
    assert_eq!(body["transport"], "websocket");
    let protocol = match format {
        Format::Json => "json",
        Format::Protobuf => "protobuf",
    };
    assert_eq!(body["protocol"], protocol);
    assert_eq!(body["encoding"], "json");
    assert_eq!(body["name"], "spindle-tests");
    assert_eq!(body["data"], data);
    assert_eq!(request.header("x-static"), Some("static-value"));
    assert_eq!(request.header("x-emulated"), Some("emulated-value"));
    assert_eq!(request.header("content-type"), Some("application/json"));

    // The proxy's info is the connection's info, visible in its publications.
    let mut other = connected_as(&server, format, "bob").await;
    let own = fixture::unique("chat:info");
    client.subscribe_ok(&own).await.or_fail();
    other.subscribe_ok(&own).await.or_fail();
    client.publish(&own, &json!({"n": 1})).await.or_fail();
    let publication = other.next_publication(&own).await.or_fail();
    let info = publication.info.expect("publisher info");
    assert_eq!(info.user, "alice");
    assert_eq!(
        payload_json(&info.conn_info).or_fail(),
        json!({"name": "alice"})
    );
}

#[tokio::test]
async fn connect_proxy_failures() {
    let backend = Backend::start().await.or_fail();
    let server = start_with(&backend).await;
    let format = Format::Json;

    let (_c, reply) = connect_reply(&server, format, &json!({"mode": "error"})).await;
    assert_eq!(error_code(&reply), 1000, "backend error passes through");

    for mode in ["slow", "500"] {
        let (_c, reply) = connect_reply(&server, format, &json!({"mode": mode})).await;
        let error = reply
            .error
            .clone()
            .unwrap_or_else(|| panic!("{mode}: {reply:?}"));
        assert_eq!(
            (error.code, error.temporary),
            (100, true),
            "{mode}: {error:?}"
        );
    }

    // No `result` and anonymous connections not allowed: no credentials (3501).
    let mut client = Client::open(&server.ws_url(), format).await.or_fail();
    client
        .send(&with_id(connect_command(&json!({"mode": "none"}))))
        .await
        .or_fail();
    assert_eq!(client.expect_close(TIMEOUT).await.or_fail().code, 3501);

    let mut client = Client::open(&server.ws_url(), format).await.or_fail();
    client
        .send(&with_id(connect_command(&json!({"mode": "disconnect"}))))
        .await
        .or_fail();
    let close = client.expect_close(TIMEOUT).await.or_fail();
    assert_eq!(
        (close.code, close.reason.as_str()),
        (4502, "backend says bye")
    );

    // A token still goes through JWT verification, not the proxy.
    let before = backend.requests("connect").len();
    let (_c, result) = Client::connect(&server.ws_url(), format, &fixture::token("tok"))
        .await
        .or_fail();
    assert!(!result.client.is_empty());
    assert_eq!(backend.requests("connect").len(), before);
}

fn with_id(mut command: Command) -> Command {
    command.id = 1;
    command
}

fn subscribe_command(channel: &str, data: Option<&Value>) -> Command {
    Command {
        subscribe: Some(SubscribeRequest {
            channel: channel.to_owned(),
            data: data.map(|d| Bytes::from(d.to_string())).unwrap_or_default(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[tokio::test]
async fn subscribe_proxy_decides() {
    let backend = Backend::start().await.or_fail();
    let server = start_with(&backend).await;
    let mut client = connected_as(&server, Format::Json, "alice").await;

    let allowed = fixture::unique("px:allowed");
    let reply = client
        .request(subscribe_command(&allowed, None))
        .await
        .or_fail();
    let result = reply
        .subscribe
        .clone()
        .unwrap_or_else(|| panic!("{allowed}: {reply:?}"));
    assert_eq!(
        payload_json(&result.data).or_fail(),
        json!({"hello": "alice"})
    );
    let request = backend
        .requests("subscribe")
        .pop()
        .expect("subscribe request");
    assert_eq!(request.body["user"], "alice");
    assert_eq!(request.body["channel"], json!(allowed));
    assert_eq!(
        request.body["meta"],
        json!({"tenant": "t1"}),
        "include_connection_meta"
    );

    let none = fixture::unique("px:none");
    client.subscribe_ok(&none).await.or_fail();

    let denied = fixture::unique("px:denied");
    assert_eq!(error_code(&client.subscribe(&denied).await.or_fail()), 103);
    for failing in ["px:slow", "px:500"] {
        let channel = fixture::unique(failing);
        let reply = client.subscribe(&channel).await.or_fail();
        assert_eq!(error_code(&reply), 100, "{failing}");
    }

    // A named proxy with binary encoding: payload in b64data.
    let named = fixture::unique("named:x");
    let reply = client
        .request(subscribe_command(&named, Some(&json!({"a": 1}))))
        .await
        .or_fail();
    assert!(reply.subscribe.is_some(), "{reply:?}");
    let request = backend
        .requests("named/subscribe")
        .pop()
        .expect("named request");
    assert_eq!(request.body["encoding"], "binary");
    assert_eq!(request.body["b64data"], "eyJhIjoxfQ==");
    assert!(
        request.body.get("meta").is_none(),
        "meta not included: {:?}",
        request.body
    );

    let bye = fixture::unique("px:disconnect");
    client
        .send(&with_id(subscribe_command(&bye, None)))
        .await
        .or_fail();
    assert_eq!(client.expect_close(TIMEOUT).await.or_fail().code, 4502);
}

#[tokio::test]
async fn publish_proxy_rewrites_and_refuses() {
    let backend = Backend::start().await.or_fail();
    let server = start_with(&backend).await;
    let mut publisher = connected_as(&server, Format::Json, "alice").await;
    let mut reader = connected_as(&server, Format::Protobuf, "bob").await;

    let rewrite = fixture::unique("px:rewrite");
    reader.subscribe_ok(&rewrite).await.or_fail();
    let reply = publisher
        .publish(&rewrite, &json!({"text": "hi"}))
        .await
        .or_fail();
    assert!(reply.publish.is_some(), "{reply:?}");
    let publication = reader.next_publication(&rewrite).await.or_fail();
    assert_eq!(
        payload_json(&publication.data).or_fail(),
        json!({"rewritten": true, "original": {"text": "hi"}})
    );
    let request = backend.requests("publish").pop().expect("publish request");
    assert_eq!(request.body["user"], "alice");
    assert_eq!(request.body["data"], json!({"text": "hi"}));

    let plain = fixture::unique("px:plain");
    reader.subscribe_ok(&plain).await.or_fail();
    publisher
        .publish(&plain, &json!({"as": "is"}))
        .await
        .or_fail();
    let publication = reader.next_publication(&plain).await.or_fail();
    assert_eq!(
        payload_json(&publication.data).or_fail(),
        json!({"as": "is"})
    );

    let denied = fixture::unique("px:denied");
    let reply = publisher
        .request(Command {
            publish: Some(PublishRequest {
                channel: denied,
                data: Bytes::from_static(b"{}"),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .or_fail();
    assert_eq!(error_code(&reply), 1403);
    reader
        .expect_silence(Duration::from_millis(300))
        .await
        .or_fail();
}

fn rpc_command(method: &str, data: &Value) -> Command {
    Command {
        rpc: Some(RpcRequest {
            method: method.to_owned(),
            data: Bytes::from(data.to_string()),
        }),
        ..Default::default()
    }
}

async fn rpc_round_trips(format: Format) {
    let backend = Backend::start().await.or_fail();
    let server = start_with(&backend).await;
    let mut client = connected_as(&server, format, "alice").await;

    let reply = client
        .request(rpc_command("echo", &json!({"q": 1})))
        .await
        .or_fail();
    let result = reply
        .rpc
        .clone()
        .unwrap_or_else(|| panic!("echo: {reply:?}"));
    assert_eq!(
        payload_json(&result.data).or_fail(),
        json!({"echo": {"q": 1}, "user": "alice", "method": "echo"})
    );

    let reply = client
        .request(rpc_command("ping", &json!({})))
        .await
        .or_fail();
    assert!(
        reply.rpc.is_some() && reply.error.is_none(),
        "built-in ping: {reply:?}"
    );

    let reply = client
        .request(rpc_command("error", &json!({})))
        .await
        .or_fail();
    let error = reply.error.clone().expect("error");
    assert_eq!((error.code, error.temporary), (1500, true));
    assert_eq!(
        error_code(
            &client
                .request(rpc_command("teapot", &json!({})))
                .await
                .or_fail()
        ),
        1418
    );
    assert_eq!(
        error_code(
            &client
                .request(rpc_command("slow", &json!({})))
                .await
                .or_fail()
        ),
        100
    );
    assert_eq!(
        error_code(
            &client
                .request(rpc_command("500", &json!({})))
                .await
                .or_fail()
        ),
        100
    );
    assert_eq!(
        error_code(
            &client
                .request(rpc_command("off:x", &json!({})))
                .await
                .or_fail()
        ),
        108
    );
    assert_eq!(
        error_code(
            &client
                .request(rpc_command("nope:x", &json!({})))
                .await
                .or_fail()
        ),
        104
    );
    client
        .send(&with_id(rpc_command("disconnect", &json!({}))))
        .await
        .or_fail();
    assert_eq!(client.expect_close(TIMEOUT).await.or_fail().code, 4502);
}

#[tokio::test]
async fn refresh_proxy_extends_or_expires() {
    let backend = Backend::start().await.or_fail();
    let server = start_with(&backend).await;
    let format = Format::Json;

    let data = json!({"mode": "user", "user": "refresh-ok", "expire_in": 1});
    let (mut kept, reply) = connect_reply(&server, format, &data).await;
    let result = reply.connect.clone().unwrap_or_else(|| panic!("{reply:?}"));
    assert!(
        !result.expires,
        "server-side refresh: the client is not asked: {result:?}"
    );

    let data = json!({"mode": "user", "user": "refresh-expire", "expire_in": 1});
    let (mut expiring, reply) = connect_reply(&server, format, &data).await;
    assert!(reply.connect.is_some(), "{reply:?}");
    let close = expiring
        .expect_close(Duration::from_secs(6))
        .await
        .or_fail();
    assert_eq!(close.code, 3005, "refresh proxy said expired");

    // The kept connection was refreshed (with its meta) and still works. Both connections
    // expire at the same second, so its refresh may come just after the other's close.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let request = loop {
        let found = backend
            .requests("refresh")
            .into_iter()
            .find(|r| r.body["user"] == "refresh-ok");
        match found {
            Some(request) => break request,
            None if std::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            None => panic!("no refresh request for refresh-ok within 5 s"),
        }
    };
    assert_eq!(request.body["meta"], json!({"tenant": "t1"}));
    kept.subscribe_ok(&fixture::unique("chat:still"))
        .await
        .or_fail();
    // With a refresh proxy the client has no say: its own refresh closes it with 3501.
    kept.send(&Command {
        id: 1_000,
        refresh: Some(spindle_tests::proto::RefreshRequest {
            token: fixture::token("refresh-ok"),
        }),
        ..Default::default()
    })
    .await
    .or_fail();
    let close = kept.expect_close(Duration::from_secs(5)).await.or_fail();
    assert_eq!(close.code, 3501, "a client refresh with a refresh proxy");
}

#[tokio::test]
async fn sub_refresh_proxy_extends_or_expires() {
    let backend = Backend::start().await.or_fail();
    let server = start_with(&backend).await;
    let mut client = connected_as(&server, Format::Json, "alice").await;

    let keep = fixture::unique("px:keep");
    let reply = client
        .request(subscribe_command(&keep, None))
        .await
        .or_fail();
    let result = reply
        .subscribe
        .clone()
        .unwrap_or_else(|| panic!("{reply:?}"));
    assert!(!result.expires, "server-side sub refresh: {result:?}");
    let expire = fixture::unique("px:expire");
    client.subscribe_ok(&expire).await.or_fail();

    let push = client.next_push(Duration::from_secs(6)).await.or_fail();
    assert_eq!(push.channel, expire, "{push:?}");
    assert_eq!(push.unsubscribe.map(|u| u.code), Some(2501));
    // Both expired together; the kept one's refresh may be asked just after.
    let refreshed = || {
        backend
            .requests("sub_refresh")
            .iter()
            .any(|r| r.body["channel"] == json!(keep))
    };
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    while !refreshed() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(refreshed(), "the kept subscription was refreshed");
    client
        .expect_silence(Duration::from_millis(500))
        .await
        .or_fail();
}

#[tokio::test]
async fn grpc_proxies_speak_centrifugos_service() {
    let backend = spindle_tests::grpc_backend::GrpcBackend::start()
        .await
        .or_fail();
    let endpoint = backend.endpoint();
    let patch = json!({
        "client": {"proxy": {"connect": {"enabled": true, "endpoint": endpoint,
            "grpc": {"static_metadata": {"x-app-key": "k1"}}}}},
        "channel": {
            "proxy": {"subscribe": {"endpoint": endpoint}, "publish": {"endpoint": endpoint},
                      "map_publish": {"endpoint": endpoint}, "map_remove": {"endpoint": endpoint}},
            "namespaces": [{"name": "px", "subscribe_proxy_enabled": true,
                            "publish_proxy_enabled": true},
                           {"name": "gmap", "subscription_type": "map",
                            "map": {"mode": "persistent", "publish_proxy_enabled": true,
                                    "remove_proxy_enabled": true}}]
        },
        "rpc": {"proxy": {"endpoint": format!("grpc://{endpoint}")},
                "without_namespace": {"proxy_enabled": true}}
    });
    let server = Server::start_patched(patch).await.or_fail();
    let (mut client, reply) =
        connect_reply(&server, Format::Protobuf, &json!({"user": "gopher"})).await;
    assert!(reply.connect.is_some(), "{reply:?}");

    let channel = fixture::unique("px:room");
    let reply = client
        .request(subscribe_command(&channel, None))
        .await
        .or_fail();
    let result = reply
        .subscribe
        .clone()
        .unwrap_or_else(|| panic!("{reply:?}"));
    assert_eq!(
        payload_json(&result.data).or_fail(),
        json!({"grpc": true, "user": "gopher"})
    );
    let denied = fixture::unique("px:denied");
    assert_eq!(error_code(&client.subscribe(&denied).await.or_fail()), 103);

    client.publish(&channel, &json!({"x": 1})).await.or_fail();
    let publication = client.next_publication(&channel).await.or_fail();
    assert_eq!(
        payload_json(&publication.data).or_fail(),
        json!({"via": "grpc"})
    );
    let info = publication.info.expect("publisher info");
    assert_eq!(info.user, "gopher");
    assert_eq!(
        payload_json(&info.conn_info).or_fail(),
        json!({"key": "k1"}),
        "static metadata reached the backend"
    );

    let reply = client
        .request(rpc_command("sum", &json!({"a": 1})))
        .await
        .or_fail();
    let result = reply.rpc.clone().unwrap_or_else(|| panic!("{reply:?}"));
    assert_eq!(
        payload_json(&result.data).or_fail(),
        json!({"method": "sum", "echo": {"a": 1}})
    );
    let reply = client
        .request(rpc_command("slow", &json!({})))
        .await
        .or_fail();
    assert_eq!(error_code(&reply), 100, "gRPC call over the 1 s timeout");

    // Map writes through MapPublish / MapRemove: the backend's key, data and tags.
    let board = fixture::unique("gmap:board");
    let map_write = |key: &str, removed: bool| Command {
        publish: Some(PublishRequest {
            channel: board.clone(),
            data: if removed {
                Bytes::new()
            } else {
                Bytes::from_static(br#"{"x":1}"#)
            },
            r#type: 1,
            key: key.to_owned(),
            removed,
        }),
        ..Default::default()
    };
    let reply = client.request(map_write("title", false)).await.or_fail();
    assert!(reply.publish.is_some(), "{reply:?}");
    let state = server
        .api_ok("map_read_state", json!({"channel": board, "limit": 10}))
        .await
        .or_fail();
    assert_eq!(state["entries"][0]["key"], "grpc:title", "{state}");
    assert_eq!(state["entries"][0]["data"], json!({"via": "grpc"}));
    assert_eq!(state["entries"][0]["tags"], json!({"via": "grpc"}));
    let reply = client.request(map_write("locked", true)).await.or_fail();
    assert_eq!(error_code(&reply), 103, "the backend refused the removal");
    let reply = client
        .request(map_write("grpc:title", true))
        .await
        .or_fail();
    assert!(reply.publish.is_some(), "{reply:?}");
    let stats = server
        .api_ok("map_stats", json!({"channel": board}))
        .await
        .or_fail();
    assert_eq!(stats["num_keys"].as_u64().unwrap_or(0), 0, "{stats}");
}
