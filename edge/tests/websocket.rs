//! The edge over real WebSocket connections on 127.0.0.1, with a fake core behind an in-process
//! link.

mod support;

use bytes::Bytes;
use serde_json::json;
use spindle_mesh::{Down, mesh};
use spindle_proto::{Format, client};
use std::time::Duration;
use support::{Client, Server, config, http_status, publication, start, upgrade_status};
use tokio_tungstenite::tungstenite::Message;

#[tokio::test]
async fn publication_reaches_three_subscribers_with_one_encode_per_format() {
    let server = start(config(json!({}))).await;
    let mut json_a = server.json().await;
    let mut json_b = server.json().await;
    let mut proto = server.protobuf().await;
    assert_eq!(proto.protocol.as_deref(), Some("centrifuge-protobuf"));
    let mut publisher = server.json().await;

    for (client, user) in [
        (&mut json_a, "a"),
        (&mut json_b, "b"),
        (&mut proto, "p"),
        (&mut publisher, "pub"),
    ] {
        let result = client.connect(user).await;
        assert_eq!(result.version, spindle_hub::VERSION);
        assert_eq!((result.ping, result.pong), (25, true));
        assert_eq!(result.client.len(), 36);
    }
    for client in [&mut json_a, &mut json_b, &mut proto] {
        let reply = client.subscribe("news").await;
        assert_eq!(reply.subscribe, Some(client::SubscribeResult::default()));
    }
    assert!(server.interest.lock().unwrap().contains("news"));
    assert_eq!(server.edge.stats().encodes, 0);

    let reply = publisher.publish("news", r#"{"text":"hi"}"#).await;
    assert_eq!(reply.publish, Some(client::PublishResult::default()));
    assert_eq!(reply.error, None);

    // The JSON frame on the wire, exactly.
    let text = json_a.recv_text().await;
    let value: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(value["push"]["channel"], "news");
    assert_eq!(value["push"]["pub"]["data"], json!({"text": "hi"}));
    assert_eq!(value["push"]["pub"]["info"]["user"], "pub");
    for client in [&mut json_b, &mut proto] {
        let push = client.push().await;
        assert_eq!(push.channel, "news");
        let publication = push.r#pub.unwrap();
        assert_eq!(&publication.data[..], br#"{"text":"hi"}"#);
        assert_eq!(publication.info.unwrap().user, "pub");
    }
    let stats = server.edge.stats();
    assert_eq!((stats.events, stats.encodes), (1, 2), "{stats:?}");
    assert_eq!(
        (
            stats.clients,
            stats.users,
            stats.channels,
            stats.subscriptions
        ),
        (4, 4, 1, 3)
    );

    // Unsubscribing the last local subscriber drops the core's interest.
    for client in [&mut json_a, &mut json_b, &mut proto] {
        let id = client.next_id();
        client
            .send(&[client::Command {
                id,
                unsubscribe: Some(client::UnsubscribeRequest {
                    channel: "news".into(),
                }),
                ..Default::default()
            }])
            .await;
        let reply = client.reply(id).await;
        assert_eq!(
            reply.unsubscribe,
            Some(client::UnsubscribeResult::default())
        );
    }
    // The interest change goes out after the replies (nothing waits for a removal).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    while !server.interest.lock().unwrap().is_empty() {
        assert!(std::time::Instant::now() < deadline, "interest still held");
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn token_channels_become_server_side_subscriptions() {
    let server = start(config(json!({}))).await;
    let mut client = server.protobuf().await;
    let claims = json!({
        "sub": "42",
        "exp": support::unix_now() + 3600,
        "channels": ["alerts", "readonly:feed"]
    });
    let result = client
        .connect_with(client::ConnectRequest {
            token: support::token_with(claims),
            ..Default::default()
        })
        .await;
    let channels: Vec<&str> = result.subs.iter().map(|e| e.key.as_str()).collect();
    assert_eq!(channels, ["alerts", "readonly:feed"]);
    assert!(result.expires);
    assert!(server.interest.lock().unwrap().contains("readonly:feed"));

    let mut publisher = server.json().await;
    publisher.connect("pub").await;
    assert!(publisher.publish("alerts", "[1,2]").await.publish.is_some());
    let push = client.push().await;
    assert_eq!(push.channel, "alerts");
    assert_eq!(&push.r#pub.unwrap().data[..], b"[1,2]");
}

#[tokio::test]
async fn publish_without_permission_is_103() {
    let server = start(config(json!({}))).await;
    let mut client = server.protobuf().await;
    client.connect("u1").await;
    let reply = client.publish("readonly:room", r#"{"x":1}"#).await;
    let error = reply.error.unwrap();
    assert_eq!(
        (error.code, error.message.as_str()),
        (103, "permission denied")
    );
    // The connection stays usable.
    let reply = client.subscribe("readonly:room").await;
    assert!(reply.subscribe.is_some());
}

/// Opens a connected JSON client subscribed to "ok" and proves it works by a round trip.
async fn bystander(server: &Server) -> Client {
    let mut client = server.json().await;
    client.connect("bystander").await;
    client.subscribe("ok").await;
    client
}

async fn still_works(client: &mut Client) {
    let data = format!(r#"{{"n":{}}}"#, client.next_id());
    let reply = client.publish("ok", &data).await;
    assert!(reply.publish.is_some(), "{reply:?}");
    let push = client.push().await;
    let publication = push.r#pub.expect("a publication");
    assert_eq!(publication.data, Bytes::from(data));
}

#[tokio::test]
async fn bad_frames_close_only_their_own_connection() {
    let server = start(config(json!({}))).await;
    let mut other = bystander(&server).await;

    // Malformed JSON.
    let mut client = server.json().await;
    client.send_raw(Message::text("{\"id\":1,")).await;
    assert_eq!(client.closed().await.0, 3501);
    still_works(&mut other).await;

    // Protobuf whose length prefix promises more than the frame holds.
    let mut client = server.protobuf().await;
    client
        .send_raw(Message::binary(vec![0x0a, 0x08, 0x01]))
        .await;
    assert_eq!(client.closed().await.0, 3501);
    still_works(&mut other).await;

    // Over websocket.message_size_limit (64 KiB).
    let mut client = server.json().await;
    let big = format!(
        r#"{{"id":1,"connect":{{"data":"{}"}}}}"#,
        "x".repeat(70_000)
    );
    client.send_raw(Message::text(big)).await;
    assert_eq!(client.closed().await, (1009, "message size limit".into()));
    still_works(&mut other).await;

    // A command before connect.
    let mut client = server.json().await;
    client
        .send_raw(Message::text(r#"{"id":1,"subscribe":{"channel":"ok"}}"#))
        .await;
    assert_eq!(client.closed().await, (3501, "bad request".into()));
    still_works(&mut other).await;
}

#[tokio::test]
async fn two_pongs_for_one_ping_close_with_3501() {
    let server = start(config(json!({
        "client": { "ping_interval": "3s", "pong_timeout": "2s" }
    })))
    .await;
    let mut other = bystander(&server).await;
    let mut client = server.json().await;
    let result = client.connect("pinger").await;
    assert_eq!((result.ping, result.pong), (3, true));
    let ping = client.recv_text().await;
    assert_eq!(ping, "{}");
    client.send_raw(Message::text("{}\n{}")).await;
    assert_eq!(client.closed().await.0, 3501);
    still_works(&mut other).await;
}

#[tokio::test]
async fn a_slow_consumer_is_closed_with_3008_while_others_receive() {
    let server = start(config(json!({
        "client": { "queue_max_size": 65536 },
        "websocket": { "write_timeout": "10s" }
    })))
    .await;
    let mut slow = server.json().await;
    slow.connect("slow").await;
    slow.subscribe("feed").await;
    let mut fast = server.protobuf().await;
    fast.connect("fast").await;
    fast.subscribe("feed").await;
    assert_eq!(server.edge.stats().subscriptions, 2);

    // The slow client never reads; the fast one reads every publication before the next is
    // sent, so only the slow one can fall behind.
    let payload = Bytes::from(format!(r#"{{"pad":"{}"}}"#, "x".repeat(16 * 1024)));
    let mut sent = 0;
    while server.edge.stats().subscriptions == 2 {
        assert!(sent < 20_000, "the slow client was never closed");
        let event = publication("feed", payload.clone(), None);
        server
            .core
            .send_event(spindle_mesh::SharedEvent::new(event))
            .await
            .unwrap();
        let push = fast.push().await;
        assert_eq!(push.r#pub.unwrap().data.len(), payload.len());
        sent += 1;
    }
    // The slow client gets what fit in the socket, then the close frame.
    assert_eq!(slow.closed().await, (3008, "slow".into()));
    // The fast one carries on.
    let event = publication("feed", Bytes::from_static(b"{\"after\":true}"), None);
    server
        .core
        .send_event(spindle_mesh::SharedEvent::new(event))
        .await
        .unwrap();
    assert_eq!(
        &fast.push().await.r#pub.unwrap().data[..],
        b"{\"after\":true}"
    );
}

#[tokio::test]
async fn binary_data_closes_json_subscribers_with_3506_and_reaches_protobuf_ones() {
    let server = start(config(json!({}))).await;
    let mut json_client = server.json().await;
    json_client.connect("j").await;
    json_client.subscribe("bin").await;
    let mut proto = server.protobuf().await;
    proto.connect("p").await;
    proto.subscribe("bin").await;
    let id = proto.next_id();
    proto
        .send(&[client::Command {
            id,
            publish: Some(client::PublishRequest {
                channel: "bin".into(),
                data: Bytes::from_static(&[0xff, 0x00, 0x01]),
                ..Default::default()
            }),
            ..Default::default()
        }])
        .await;
    assert!(proto.reply(id).await.publish.is_some());
    assert_eq!(
        &proto.push().await.r#pub.unwrap().data[..],
        &[0xff, 0x00, 0x01]
    );
    assert_eq!(
        json_client.closed().await,
        (3506, "inappropriate protocol".into())
    );
}

#[tokio::test]
async fn non_upgrade_requests_and_foreign_origins_are_refused() {
    let server = start(config(json!({
        "client": { "allowed_origins": ["https://*.good.example"] }
    })))
    .await;
    let plain = "GET /connection/websocket HTTP/1.1\r\nHost: localhost\r\n\r\n";
    assert_eq!(http_status(server.addr, plain).await, 400);
    let url = server.url("");
    assert_eq!(
        upgrade_status(&url, &[("Origin", "https://evil.example")]).await,
        Err(403)
    );
    assert_eq!(
        upgrade_status(&url, &[("Origin", "https://app.GOOD.example")]).await,
        Ok(())
    );
    assert_eq!(upgrade_status(&url, &[]).await, Ok(()));

    let strict = start(config(json!({}))).await;
    let url = strict.url("");
    assert_eq!(
        upgrade_status(&url, &[("Origin", "https://app.good.example")]).await,
        Err(403)
    );
}

/// `uni_websocket` goes through the same checks before its upgrade.
#[tokio::test]
async fn uni_websocket_refuses_non_upgrades_and_foreign_origins() {
    let server = start(config(json!({
        "client": { "allowed_origins": ["https://*.good.example"] },
        "uni_websocket": { "enabled": true }
    })))
    .await;
    let plain = "GET /connection/uni_websocket HTTP/1.1\r\nHost: localhost\r\n\r\n";
    assert_eq!(http_status(server.addr, plain).await, 400);
    let url = format!("ws://{}/connection/uni_websocket", server.addr);
    assert_eq!(
        upgrade_status(&url, &[("Origin", "https://evil.example")]).await,
        Err(403)
    );
    assert_eq!(
        upgrade_status(&url, &[("Origin", "https://app.good.example")]).await,
        Ok(())
    );
}

/// `?format=protobuf` picks Protobuf without the subprotocol; `cf_ws_frame_ping_pong=true`
/// swaps application pings for WebSocket ping frames, answered by the WebSocket library's pongs,
/// and a client that stops answering is closed with 3012.
#[tokio::test]
async fn protobuf_by_query_and_native_pings() {
    let server = start(config(json!({
        "client": { "ping_interval": "1s", "pong_timeout": "500ms" }
    })))
    .await;
    let url = server.url("?format=protobuf&cf_ws_frame_ping_pong=true");
    let mut client = Client::open(&url, Format::Protobuf, None).await;
    let result = client.connect("native").await;
    assert_eq!((result.ping, result.pong), (0, false));

    // Reading answers each ping: three in a row keep the connection open, and none of them is
    // an application ping (an empty reply).
    let mut pings = 0;
    while pings < 3 {
        match client.raw_frame_within(Duration::from_secs(3)).await {
            Some(Message::Ping(_)) => pings += 1,
            Some(other) => panic!("a native ping, not {other:?}"),
            None => panic!("no ping within 3 s (ping_interval 1s)"),
        }
    }

    // Not reading means no pong: after ping_interval + pong_timeout the server closes.
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    loop {
        match client.raw_frame_within(Duration::from_secs(3)).await {
            Some(Message::Ping(_)) => continue,
            Some(Message::Close(Some(frame))) => {
                assert_eq!(u16::from(frame.code), 3012, "{frame:?}");
                assert_eq!(frame.reason.as_str(), "no pong");
                break;
            }
            other => panic!("a close 3012, not {other:?}"),
        }
    }
}

#[tokio::test]
async fn api_control_commands_reach_matching_connections() {
    let server = start(config(json!({}))).await;
    let mut alice = server.json().await;
    alice.connect("alice").await;
    alice.subscribe("room").await;
    let mut alice2 = server.protobuf().await;
    let alice2_id = alice2.connect("alice").await.client;
    let mut bob = server.json().await;
    bob.connect("bob").await;

    let control = |kind| mesh::Control {
        user: "alice".into(),
        kind: Some(kind),
        ..Default::default()
    };
    // Unsubscribe: a push with code 2000.
    let unsubscribe = mesh::control::Kind::Unsubscribe(mesh::UnsubscribeCommand {
        channel: "room".into(),
        ..Default::default()
    });
    server
        .core
        .send(Down::Control(control(unsubscribe)))
        .await
        .unwrap();
    let push = alice.push().await;
    assert_eq!(push.channel, "room");
    assert_eq!(
        push.unsubscribe,
        Some(client::Unsubscribe {
            code: 2000,
            reason: "server unsubscribe".into()
        })
    );
    server.wait_stats(|s| s.subscriptions == 0).await;

    // Subscribe: a subscribe push, and the channel is live.
    let subscribe = mesh::control::Kind::Subscribe(mesh::SubscribeCommand {
        channel: "news".into(),
        ..Default::default()
    });
    server
        .core
        .send(Down::Control(control(subscribe)))
        .await
        .unwrap();
    for client in [&mut alice, &mut alice2] {
        let push = client.push().await;
        assert_eq!(push.channel, "news");
        assert!(push.subscribe.is_some());
    }
    server.wait_stats(|s| s.subscriptions == 2).await;

    // Refresh: a refresh push.
    let expire_at = support::unix_now() + 600;
    let refresh = mesh::control::Kind::Refresh(mesh::RefreshCommand {
        expire_at,
        ..Default::default()
    });
    server
        .core
        .send(Down::Control(control(refresh)))
        .await
        .unwrap();
    for client in [&mut alice, &mut alice2] {
        let refresh = client.push().await.refresh.unwrap();
        assert!(refresh.expires);
        assert!((599..=600).contains(&refresh.ttl));
    }

    // Channels and node surveys.
    let survey = mesh::Survey {
        id: 9,
        kind: Some(mesh::survey::Kind::Channels(mesh::ChannelsSurvey {
            pattern: "n*".into(),
        })),
    };
    let reply = server.core.survey(survey).await.unwrap();
    assert_eq!(reply.id, 9);
    assert_eq!(reply.channels.get("news"), Some(&2));
    let survey = mesh::Survey {
        id: 10,
        kind: Some(mesh::survey::Kind::Node(mesh::NodeSurvey {})),
    };
    let node = server.core.survey(survey).await.unwrap().node.unwrap();
    assert_eq!(
        (
            node.num_clients,
            node.num_users,
            node.num_channels,
            node.num_subs
        ),
        (3, 2, 1, 2)
    );
    assert_eq!(node.node_id, "node-test");

    // Disconnect alice (but not a whitelisted connection), default code 3503.
    let whitelist = vec![alice2_id];
    let disconnect = mesh::control::Kind::Disconnect(mesh::DisconnectCommand {
        whitelist,
        ..Default::default()
    });
    server
        .core
        .send(Down::Control(control(disconnect)))
        .await
        .unwrap();
    assert_eq!(alice.closed().await, (3503, "force disconnect".into()));
    // Bob and the whitelisted connection are untouched.
    let reply = bob.publish("news", "{}").await;
    assert!(reply.publish.is_some());
    let push = alice2.push().await;
    assert_eq!(push.channel, "news");
}

#[tokio::test]
async fn shutdown_closes_everyone_with_3001_and_refuses_new_connections() {
    let server = start(config(json!({}))).await;
    let mut connected = server.json().await;
    connected.connect("u").await;
    let mut fresh = server.protobuf().await;
    server.wait_stats(|s| s.connections == 2).await;
    server.edge.shutdown();
    assert_eq!(connected.closed().await, (3001, "shutdown".into()));
    assert_eq!(fresh.closed().await, (3001, "shutdown".into()));
    assert_eq!(upgrade_status(&server.url(""), &[]).await, Err(503));
    assert!(server.edge.wait_drained(support::WAIT).await);
}
