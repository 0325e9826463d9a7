//! Accepted connections have Nagle's algorithm off (`TCP_NODELAY`), as in Go and so in
//! Centrifugo. With it on, a small frame written while the previous one is unacknowledged waits
//! for the client's delayed ACK (~40 ms): that was the tail of benchmark figure 1.
//!
//! Read from outside the server process (`spindle_tests::sockets`), on every listener that
//! carries client traffic: the plain port, the HTTPS port and `uni_grpc`.

use crate::webtransport::TlsFiles;
use serde_json::json;
use spindle_tests::sockets::server_nodelay;
use spindle_tests::{OrFail, Server, ServerOptions};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::TcpStream;

/// Connects to `addr` on `server` and reads the option on the server's end once it has
/// accepted the connection.
async fn nodelay_of_accepted(server: &Server, addr: SocketAddr) -> bool {
    let client = TcpStream::connect(addr).await.expect("connect");
    let client_port = client.local_addr().expect("local address").port();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        // The option is set right after the accept that gives the server its descriptor: until
        // then the lookup finds nothing (or, for a moment, reads `false`).
        let read = server_nodelay(server.pid(), addr.port(), client_port).or_fail();
        if read == Some(true) {
            return true;
        }
        if tokio::time::Instant::now() > deadline {
            return read.unwrap_or_else(|| panic!("the server never accepted {client_port}"));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn plain_port() {
    let server = Server::start().await.or_fail();
    assert!(
        nodelay_of_accepted(&server, server.addr()).await,
        "TCP_NODELAY on the plain port"
    );
}

#[tokio::test]
async fn https_port() {
    let tls = TlsFiles::generate();
    let server = Server::start_patched(json!({"http_server": {
        "tls": {"enabled": true, "cert_pem": tls.cert, "key_pem": tls.key}
    }}))
    .await
    .or_fail();
    assert!(
        nodelay_of_accepted(&server, server.addr()).await,
        "TCP_NODELAY on the HTTPS port"
    );
}

#[tokio::test]
async fn uni_grpc_port() {
    let options = ServerOptions::default().with_uni_grpc().or_fail();
    let server = Server::start_with(options).await.or_fail();
    let addr = server.uni_grpc_addr().expect("uni_grpc enabled");
    assert!(
        nodelay_of_accepted(&server, addr).await,
        "TCP_NODELAY on the uni_grpc port"
    );
}
