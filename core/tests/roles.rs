//! The roles as libraries (docs/architecture.md §1): a core and an edge started in one process
//! on listeners the test bound (port 0), linked over real QUIC on 127.0.0.1; a WebSocket client
//! on the edge publishes and gets its publication back through the core; then each role stops
//! when its shutdown future resolves, as `spindle core` / `spindle edge` stop on SIGTERM.
#![allow(clippy::unwrap_used)]

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use spindle_hub::config::{Config, ConfigFile, ConfigFormat, ConfigSources, Role, load};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::Message;

fn config(tree: &Value, role: Role) -> Arc<Config> {
    let sources = ConfigSources {
        file: Some(ConfigFile {
            text: tree.to_string(),
            format: ConfigFormat::Json,
            name_for_errors: "test".into(),
        }),
        role,
        ..ConfigSources::default()
    };
    Arc::new(load(&sources).unwrap().config)
}

fn role_config(dir: &Path, node: &str, mesh: Value) -> Value {
    let file = |name: String| dir.join(name).to_string_lossy().into_owned();
    let mut tree = json!({
        "client": {"insecure": true},
        "channel": {"without_namespace": {
            "allow_subscribe_for_client": true,
            "allow_publish_for_client": true
        }},
        "health": {"enabled": true},
        "shutdown": {"timeout": "3s"},
        "mesh": {
            "node_name": node,
            "tls": {
                "cert_file": file(format!("{node}.pem")),
                "key_file": file(format!("{node}.key")),
                "ca_file": file("ca.pem".to_owned())
            }
        }
    });
    for (key, value) in mesh.as_object().unwrap() {
        tree["mesh"][key] = value.clone();
    }
    tree
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_core_and_an_edge_run_in_process_and_stop_when_told() {
    let dir = std::env::temp_dir().join(format!("spindle-roles-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let certs = spindle_mesh::quic::generate_certs(&["core1".into(), "edge1".into()]).unwrap();
    std::fs::write(dir.join("ca.pem"), &certs.ca_pem).unwrap();
    for (node, cert, key) in &certs.nodes {
        std::fs::write(dir.join(format!("{node}.pem")), cert).unwrap();
        std::fs::write(dir.join(format!("{node}.key")), key).unwrap();
    }

    let mesh_socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let mesh_addr = mesh_socket.local_addr().unwrap();
    let core_config = config(
        &role_config(&dir, "core1", json!({"listen": mesh_addr.to_string()})),
        Role::Core,
    );
    let edge_config = config(
        &role_config(&dir, "edge1", json!({"cores": [mesh_addr.to_string()]})),
        Role::Edge,
    );
    let core_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let edge_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let edge_addr = edge_listener.local_addr().unwrap();
    let (stop_core, core_stopped) = tokio::sync::oneshot::channel::<()>();
    let (stop_edge, edge_stopped) = tokio::sync::oneshot::channel::<()>();
    let core = tokio::spawn(spindle_core::role::run(
        core_config,
        core_listener,
        mesh_socket,
        async {
            let _ = core_stopped.await;
        },
    ));
    let edge = tokio::spawn(spindle_edge::role::run(edge_config, edge_listener, async {
        let _ = edge_stopped.await;
    }));

    // The edge answers 503 until it is linked: retry the upgrade until it is.
    let url = format!("ws://{edge_addr}/connection/websocket");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let mut socket = loop {
        match tokio_tungstenite::connect_async(&url).await {
            Ok((socket, _)) => break socket,
            Err(error) => {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "edge not linked: {error}"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    let commands = [
        json!({"id": 1, "connect": {}}),
        json!({"id": 2, "subscribe": {"channel": "news"}}),
        json!({"id": 3, "publish": {"channel": "news", "data": {"n": 1}}}),
    ];
    for command in &commands {
        socket
            .send(Message::text(command.to_string()))
            .await
            .unwrap();
    }
    let publication = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(message) = socket.next().await {
            let Message::Text(text) = message.unwrap() else {
                continue;
            };
            for line in text.as_str().lines() {
                let reply: Value = serde_json::from_str(line).unwrap();
                assert!(reply.get("error").is_none(), "{reply}");
                if reply["push"]["pub"].is_object() {
                    return reply["push"]["pub"]["data"].clone();
                }
            }
        }
        panic!("the connection ended before the publication came back");
    })
    .await
    .expect("the publication back through the core within 10 s");
    assert_eq!(publication, json!({"n": 1}));

    // Told to stop, each role returns (within shutdown.timeout), cleanly.
    stop_edge.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(10), edge)
        .await
        .expect("the edge stopped")
        .unwrap()
        .unwrap();
    stop_core.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(10), core)
        .await
        .expect("the core stopped")
        .unwrap()
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}
