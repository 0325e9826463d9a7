//! A TLS front for test backends: accepts TLS on 127.0.0.1:0 with the fixture certificate
//! (`tests/fixtures/tls/backend.pem`, for `localhost` and `127.0.0.1`, signed by the test CA
//! `ca.pem`) and relays the plain bytes to a backend, so one backend serves both `http://` and
//! `https://` (and gRPC with and without TLS). ALPN offers `h2` and `http/1.1`.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::{Error, Result};

/// The CA that signed the front's certificate (PEM), for `server_ca_pem`.
pub const CA_PEM: &str = include_str!("../fixtures/tls/ca.pem");
const CERT_PEM: &str = include_str!("../fixtures/tls/backend.pem");
const KEY_PEM: &str = include_str!("../fixtures/tls/backend.key.pem");

/// A running TLS front; stops when dropped.
#[derive(Debug)]
pub struct TlsFront {
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for TlsFront {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl TlsFront {
    /// Starts relaying TLS connections to `target`.
    pub async fn start(target: SocketAddr) -> Result<TlsFront> {
        let failed =
            |what: &str, e: &dyn std::fmt::Display| Error::new(format!("TLS front {what}: {e}"));
        let chain = CertificateDer::pem_slice_iter(CERT_PEM.as_bytes())
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| failed("certificate", &e))?;
        let key =
            PrivateKeyDer::from_pem_slice(KEY_PEM.as_bytes()).map_err(|e| failed("key", &e))?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| failed("config", &e))?
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .map_err(|e| failed("config", &e))?;
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        let acceptor = TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| failed("bind", &e))?;
        let addr = listener.local_addr().map_err(|e| failed("address", &e))?;
        let task = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let Ok(mut plain) = TcpStream::connect(target).await else {
                        return;
                    };
                    let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
                });
            }
        });
        Ok(TlsFront { addr, task })
    }

    /// The port it listens on (connect to `localhost:<port>` to match the certificate).
    pub fn port(&self) -> u16 {
        self.addr.port()
    }
}
