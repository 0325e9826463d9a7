//! `http_server.tls` (and the other TLS blocks of listeners): the certificate chain and key (each
//! a file path, PEM text, or base64-encoded PEM, as Centrifugo reads them), the HTTPS listener,
//! and what a WebTransport endpoint on the UDP twin of a port needs.

use anyhow::{Context, Result, anyhow};
use base64::Engine;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use spindle_hub::config::Tls;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, mpsc};

use crate::pending::{Oldest, Pending};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

/// How long a client may take over its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Handshaken connections waiting for the HTTP server to take them.
const ACCEPTED_BACKLOG: usize = 128;

/// The certificate chain and private key of a TLS block.
#[derive(Debug)]
pub struct Identity {
    pub certificates: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
}

impl Clone for Identity {
    fn clone(&self) -> Self {
        Identity {
            certificates: self.certificates.clone(),
            key: self.key.clone_key(),
        }
    }
}

/// The PEM texts of `tls`'s certificate chain and key, checked to parse (`path` names the block
/// in errors).
pub fn pem_pair(path: &str, tls: &Tls) -> Result<(Vec<u8>, Vec<u8>)> {
    identity(path, tls)?;
    let cert_pem = pem(&tls.cert_pem).with_context(|| format!("{path}.cert_pem"))?;
    let key_pem = pem(tls.key_pem.expose()).with_context(|| format!("{path}.key_pem"))?;
    Ok((cert_pem, key_pem))
}

/// Reads the certificate chain and key of `tls` (`path` names the block in errors).
pub fn identity(path: &str, tls: &Tls) -> Result<Identity> {
    let cert_pem = pem(&tls.cert_pem).with_context(|| format!("{path}.cert_pem"))?;
    let certificates = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| anyhow!("{path}.cert_pem: {e}"))?;
    if certificates.is_empty() {
        return Err(anyhow!("{path}.cert_pem: no CERTIFICATE block"));
    }
    let key_pem = pem(tls.key_pem.expose()).with_context(|| format!("{path}.key_pem"))?;
    let key =
        PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| anyhow!("{path}.key_pem: {e}"))?;
    Ok(Identity { certificates, key })
}

/// The PEM text of a configuration field: the text itself, the file it names, or its base64
/// encoding (as Centrifugo reads them).
pub fn pem_of(value: &str) -> std::result::Result<Vec<u8>, String> {
    if value.contains("-----BEGIN") {
        return Ok(value.as_bytes().to_vec());
    }
    let path = std::path::Path::new(value);
    if path.is_file() {
        return std::fs::read(path).map_err(|error| format!("cannot read {value}: {error}"));
    }
    let compact: String = value.split_whitespace().collect();
    match base64::engine::general_purpose::STANDARD.decode(compact) {
        Ok(decoded) if decoded.windows(10).any(|w| w == b"-----BEGIN") => Ok(decoded),
        _ => Err(format!(
            "{value:?} is neither PEM text, a readable file, nor base64-encoded PEM"
        )),
    }
}

fn pem(value: &str) -> Result<Vec<u8>> {
    pem_of(value).map_err(|error| anyhow!(error))
}

/// The rustls configuration of the HTTPS listener (HTTP/2 and HTTP/1.1 by ALPN).
pub fn https_config(identity: &Identity) -> Result<Arc<rustls::ServerConfig>> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(identity.certificates.clone(), identity.key.clone_key())
        .context("http_server.tls: the certificate and key do not fit together")?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// A TCP listener whose connections come out after their TLS handshake. Handshakes run in
/// their own tasks, so a slow client holds up no one; a failed one is logged and dropped. At
/// most [`crate::http::pending_limit`] run at once: a new connection beyond it ends the oldest
/// handshake still running (`crate::pending`), so peers that connect and never say hello cannot
/// take every descriptor.
#[derive(Debug)]
pub struct TlsListener {
    accepted: mpsc::Receiver<TlsStream<TcpStream>>,
}

/// A handshake in progress, as the bound on them sees it.
#[derive(Default)]
struct Handshake {
    evict: Notify,
}

impl Pending for Handshake {
    fn still_pending(&self) -> bool {
        // Its task holds it until the handshake ends.
        true
    }

    fn evict(&self) {
        self.evict.notify_one();
    }
}

impl TlsListener {
    pub fn new(listener: TcpListener, config: Arc<rustls::ServerConfig>) -> Result<TlsListener> {
        let acceptor = TlsAcceptor::from(config);
        let (tx, accepted) = mpsc::channel(ACCEPTED_BACKLOG);
        let mut handshakes = Oldest::new(crate::http::pending_limit());
        tokio::spawn(async move {
            loop {
                let (mut tcp, peer) = match listener.accept().await {
                    Ok(pair) => pair,
                    Err(error) => {
                        // Out of descriptors and the like: wait instead of spinning.
                        tracing::warn!(%error, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                if tx.is_closed() {
                    return;
                }
                super::no_delay(&mut tcp);
                let acceptor = acceptor.clone();
                let tx = tx.clone();
                let handshake = Arc::new(Handshake::default());
                handshakes.admit(&handshake);
                tokio::spawn(async move {
                    let accept = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp));
                    let stream = tokio::select! {
                        accepted = accept => accepted,
                        () = handshake.evict.notified() => {
                            tracing::debug!(%peer, "too many TLS handshakes at once: closing the oldest");
                            return;
                        }
                    };
                    drop(handshake);
                    match stream {
                        Ok(Ok(stream)) => {
                            let _ = tx.send(stream).await;
                        }
                        Ok(Err(error)) => tracing::debug!(%peer, %error, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                });
            }
        });
        Ok(TlsListener { accepted })
    }
}

impl super::http::Accept for TlsListener {
    type Io = TlsStream<TcpStream>;

    async fn accept(&mut self) -> std::io::Result<Self::Io> {
        match self.accepted.recv().await {
            Some(stream) => Ok(stream),
            // The accepting task only stops once this listener is gone.
            None => std::future::pending().await,
        }
    }
}
