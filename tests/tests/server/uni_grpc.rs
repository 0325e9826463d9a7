//! `uni_grpc` (docs/protocol.md §1.7): `CentrifugoUniStream/Consume` on its own port streams the
//! connect push, API publications as pushes and a disconnect push ending the stream; a refused
//! connect is a disconnect push and the end of the stream.

use serde_json::{Value, json};
use spindle_proto::unistream::centrifugo_uni_stream_client::CentrifugoUniStreamClient;
use spindle_tests::proto::{ConnectRequest, Push};
use spindle_tests::{OrFail, Server, ServerOptions, TIMEOUT, fixture};
use tonic::Streaming;
use tonic::transport::{Certificate, Channel, ClientTlsConfig};

async fn start_uni_grpc() -> Server {
    let options = ServerOptions::default().with_uni_grpc().or_fail();
    Server::start_with(options).await.or_fail()
}

async fn consume(server: &Server, request: ConnectRequest) -> Streaming<Push> {
    let addr = server.uni_grpc_addr().expect("uni_grpc enabled");
    let mut client = tokio::time::timeout(
        TIMEOUT,
        CentrifugoUniStreamClient::connect(format!("http://{addr}")),
    )
    .await
    .expect("gRPC connect in time")
    .expect("gRPC connect");
    tokio::time::timeout(TIMEOUT, client.consume(request))
        .await
        .expect("Consume answered in time")
        .expect("Consume accepted")
        .into_inner()
}

/// The next non-ping push, or `None` at the end of the stream.
async fn next(stream: &mut Streaming<Push>) -> Option<Push> {
    loop {
        let push = tokio::time::timeout(TIMEOUT, stream.message())
            .await
            .expect("a push or the end in time")
            .expect("no gRPC error")?;
        if push != Push::default() {
            return Some(push);
        }
    }
}

#[tokio::test]
async fn receives_and_is_disconnected() {
    let server = start_uni_grpc().await;
    let user = fixture::unique("unigrpc");
    let channel = fixture::unique("chat:unigrpc");
    let token = fixture::token_with(json!({"sub": user, "channels": [channel]}));
    let request = ConnectRequest {
        token,
        ..Default::default()
    };
    let mut stream = consume(&server, request).await;

    let push = next(&mut stream).await.expect("connect push");
    let connect = push.connect.expect("a connect push");
    assert!(!connect.client.is_empty(), "{connect:?}");
    assert!(!connect.session.is_empty(), "{connect:?}");
    assert!(!connect.pong, "{connect:?}");
    assert!(
        connect.subs.iter().any(|entry| entry.key == channel),
        "{connect:?}"
    );

    server.publish(&channel, json!({"n": 1})).await.or_fail();
    let push = next(&mut stream).await.expect("publication push");
    assert_eq!(push.channel, channel, "{push:?}");
    let publication = push.r#pub.expect("a publication");
    let data: Value = serde_json::from_slice(&publication.data).expect("JSON data");
    assert_eq!(data, json!({"n": 1}));

    server
        .api_ok("disconnect", json!({"user": user}))
        .await
        .or_fail();
    let push = next(&mut stream).await.expect("disconnect push");
    assert_eq!(push.disconnect.expect("a disconnect").code, 3503);
    assert!(next(&mut stream).await.is_none(), "stream ends");
}

#[tokio::test]
async fn refused_connect_is_a_disconnect() {
    let server = start_uni_grpc().await;
    let request = ConnectRequest {
        token: fixture::badly_signed_token("mallory"),
        ..Default::default()
    };
    let mut stream = consume(&server, request).await;
    let push = next(&mut stream).await.expect("disconnect push");
    assert_eq!(push.disconnect.expect("a disconnect").code, 3500);
    assert!(next(&mut stream).await.is_none(), "stream ends");

    let request = ConnectRequest {
        token: fixture::expired_token("late"),
        ..Default::default()
    };
    let mut stream = consume(&server, request).await;
    let push = next(&mut stream).await.expect("disconnect push");
    assert_eq!(push.disconnect.expect("a disconnect").code, 3005);
    assert!(next(&mut stream).await.is_none(), "stream ends");
}

#[tokio::test]
async fn shutdown_ends_streams_with_3001() {
    let server = start_uni_grpc().await;
    let request = ConnectRequest {
        token: fixture::token(&fixture::unique("unigrpc")),
        ..Default::default()
    };
    let mut stream = consume(&server, request).await;
    assert!(
        next(&mut stream)
            .await
            .expect("connect push")
            .connect
            .is_some()
    );
    let stopping = tokio::spawn(server.stop());
    let push = next(&mut stream).await.expect("disconnect push");
    assert_eq!(push.disconnect.expect("a disconnect").code, 3001);
    assert!(next(&mut stream).await.is_none(), "stream ends");
    let status = stopping.await.expect("stop task").or_fail();
    assert!(status.success(), "{status}");
}

/// `uni_grpc.tls`: the stream is served over TLS with the configured certificate; a plaintext
/// client gets nothing.
#[tokio::test]
async fn serves_over_tls() {
    let tls = crate::webtransport::TlsFiles::generate();
    let options = ServerOptions::patched(json!({"uni_grpc": {"tls": {
        "enabled": true, "cert_pem": tls.cert, "key_pem": tls.key
    }}}))
    .with_uni_grpc()
    .or_fail();
    let server = Server::start_with(options).await.or_fail();
    let addr = server.uni_grpc_addr().expect("uni_grpc enabled");
    let request = || ConnectRequest {
        token: fixture::token(&fixture::unique("unigrpc-tls")),
        ..Default::default()
    };

    let ca = Certificate::from_pem(std::fs::read(&tls.cert).expect("certificate file"));
    let endpoint = Channel::from_shared(format!("https://localhost:{}", addr.port()))
        .expect("endpoint")
        .tls_config(
            ClientTlsConfig::new()
                .ca_certificate(ca)
                .domain_name("localhost"),
        )
        .expect("client TLS");
    let channel = tokio::time::timeout(TIMEOUT, endpoint.connect())
        .await
        .expect("TLS connect in time")
        .expect("TLS connect");
    let mut stream = tokio::time::timeout(
        TIMEOUT,
        CentrifugoUniStreamClient::new(channel).consume(request()),
    )
    .await
    .expect("Consume answered in time")
    .expect("Consume accepted over TLS")
    .into_inner();
    let push = next(&mut stream).await.expect("connect push");
    assert!(push.connect.is_some(), "{push:?}");

    let plaintext = async {
        let mut client = CentrifugoUniStreamClient::connect(format!("http://{addr}")).await?;
        client
            .consume(request())
            .await?
            .into_inner()
            .message()
            .await?;
        Ok::<_, Box<dyn std::error::Error>>(())
    };
    let outcome = tokio::time::timeout(TIMEOUT, plaintext).await;
    assert!(
        !matches!(outcome, Ok(Ok(()))),
        "a plaintext client must not be served"
    );
}
