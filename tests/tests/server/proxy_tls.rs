//! Proxies over TLS: `https://` HTTP proxies and gRPC proxies with `grpc.tls`, against the test
//! backends behind a TLS front whose certificate is signed by a test CA. The server is verified
//! (a backend it cannot verify answers 100), `server_ca_pem` and `insecure_skip_verify` are
//! honoured, and a TLS block that cannot be read refuses to start.

use bytes::Bytes;
use serde_json::{Value, json};
use spindle_tests::backend::Backend;
use spindle_tests::grpc_backend::GrpcBackend;
use spindle_tests::proto::{Command, ConnectRequest, Reply, RpcRequest};
use spindle_tests::tls_front::{CA_PEM, TlsFront};
use spindle_tests::{Client, Format, OrFail, Server};

fn connect_command(data: &Value) -> Command {
    Command {
        connect: Some(ConnectRequest {
            data: Bytes::from(data.to_string()),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn rpc_command(method: &str) -> Command {
    Command {
        rpc: Some(RpcRequest {
            method: method.to_owned(),
            data: Bytes::from_static(b"{}"),
        }),
        ..Default::default()
    }
}

async fn connect(server: &Server, data: &Value) -> (Client, Reply) {
    let mut client = Client::open(&server.ws_url(), Format::Json).await.or_fail();
    let reply = client.request(connect_command(data)).await.or_fail();
    (client, reply)
}

fn error_code(reply: &Reply) -> Option<u32> {
    reply.error.as_ref().map(|e| e.code)
}

#[tokio::test]
async fn https_proxies_verify_the_backend() {
    let backend = Backend::start().await.or_fail();
    let front = TlsFront::start(backend.addr()).await.or_fail();
    let url = |path: &str| format!("https://localhost:{}/{path}", front.port());
    let server = Server::start_patched(json!({
        "client": {"proxy": {"connect": {"enabled": true, "endpoint": url("connect"),
            "http": {"tls": {"enabled": true, "server_ca_pem": CA_PEM}}}}},
        "rpc": {"without_namespace": {"proxy_enabled": true, "proxy_name": "unverified"},
                "namespaces": [{"name": "skip", "proxy_enabled": true, "proxy_name": "skipping"}]},
        "proxies": [
            // No TLS block: the system's roots, which do not know the test CA.
            {"name": "unverified", "endpoint": url("rpc")},
            {"name": "skipping", "endpoint": url("rpc"),
             "http": {"tls": {"enabled": true, "insecure_skip_verify": true}}}
        ]
    }))
    .await
    .or_fail();

    let (mut client, reply) = connect(&server, &json!({"mode": "user", "user": "tls-user"})).await;
    let result = reply
        .connect
        .clone()
        .unwrap_or_else(|| panic!("connect over HTTPS: {reply:?}"));
    assert!(!result.client.is_empty());
    let connects = backend.requests("connect");
    assert_eq!(connects.len(), 1, "the backend was asked through TLS");

    let reply = client.request(rpc_command("echo")).await.or_fail();
    assert_eq!(
        error_code(&reply),
        Some(100),
        "unverifiable backend: {reply:?}"
    );
    let reply = client.request(rpc_command("skip:echo")).await.or_fail();
    assert!(reply.rpc.is_some(), "insecure_skip_verify: {reply:?}");
    assert_eq!(
        backend.requests("rpc").len(),
        1,
        "only the skipping call reached the backend"
    );
}

#[tokio::test]
async fn grpc_proxies_speak_tls() {
    let backend = GrpcBackend::start().await.or_fail();
    let front = TlsFront::start(backend.addr()).await.or_fail();
    let endpoint = format!("localhost:{}", front.port());
    let server = Server::start_patched(json!({
        "client": {"proxy": {"connect": {"enabled": true, "endpoint": endpoint,
            "grpc": {"tls": {"enabled": true, "server_ca_pem": CA_PEM}}}}},
        // Plain gRPC to a TLS port cannot work: 100.
        "rpc": {"proxy": {"endpoint": endpoint}, "without_namespace": {"proxy_enabled": true}}
    }))
    .await
    .or_fail();
    let (mut client, reply) = connect(&server, &json!({"user": "gopher"})).await;
    assert!(
        reply.connect.is_some(),
        "connect over gRPC + TLS: {reply:?}"
    );
    let reply = client.request(rpc_command("sum")).await.or_fail();
    assert_eq!(error_code(&reply), Some(100), "{reply:?}");
}

#[tokio::test]
async fn an_unreadable_tls_block_refuses_to_start() {
    let error = Server::start_patched(json!({
        "client": {"proxy": {"connect": {"enabled": true, "endpoint": "https://localhost:1/c",
            "http": {"tls": {"enabled": true, "server_ca_pem": "no such pem"}}}}}
    }))
    .await
    .map(|_| ())
    .unwrap_err()
    .to_string();
    assert!(error.contains("server_ca_pem"), "{error}");
}
