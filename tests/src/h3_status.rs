//! The HTTP status a WebTransport server answers an extended CONNECT with.
//!
//! wtransport's client reports every refusal as one `SessionRejected`, without the status, so
//! a test of "404 for another path" or "403 for a foreign Origin" needs its own client: this one
//! speaks just enough HTTP/3 over quinn (RFC 9114 control stream and SETTINGS, RFC 9220
//! extended CONNECT, the WebTransport settings) to send the CONNECT and read the response's
//! `:status`. Frames and QPACK come from `wtransport::proto`, the server's own codec.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio_rustls::rustls;
use wtransport::proto::frame::{Frame, FrameKind};
use wtransport::proto::headers::Headers;
use wtransport::proto::session::SessionRequest;
use wtransport::proto::settings::Settings;
use wtransport::proto::stream_header::StreamHeader;

use crate::{Error, Result};

/// Sends `CONNECT url` (`:protocol webtransport`) with `headers` to the server at `addr`, whose
/// certificate must be `certificate` (DER), and returns the response's `:status`.
pub async fn webtransport_status(
    addr: SocketAddr,
    url: &str,
    headers: &[(&str, &str)],
    certificate: &[u8],
) -> Result<u16> {
    tokio::time::timeout(
        Duration::from_secs(10),
        exchange(addr, url, headers, certificate),
    )
    .await
    .map_err(|_| Error::new(format!("no HTTP/3 response from {addr} within 10 s")))?
}

async fn exchange(
    addr: SocketAddr,
    url: &str,
    headers: &[(&str, &str)],
    certificate: &[u8],
) -> Result<u16> {
    let connection = connect(addr, certificate).await?;

    // Our control stream with SETTINGS, kept open: closing it is a connection error.
    let mut control = connection.open_uni().await.map_err(fail("open control"))?;
    let settings = Settings::builder()
        .enable_webtransport()
        .enable_connect_protocol()
        .enable_h3_datagrams()
        .build();
    let mut bytes = Vec::new();
    StreamHeader::new_control()
        .write(&mut bytes)
        .map_err(fail("encode stream header"))?;
    settings
        .generate_frame()
        .write(&mut bytes)
        .map_err(fail("encode settings"))?;
    control
        .write_all(&bytes)
        .await
        .map_err(fail("send settings"))?;

    // An extended CONNECT may go only after the server's SETTINGS allowed it (RFC 9220 §3).
    let mut server_control = connection
        .accept_uni()
        .await
        .map_err(fail("server control stream"))?;
    let mut buffer = Vec::new();
    loop {
        let mut reader = buffer.as_slice();
        if StreamHeader::read(&mut reader)
            .map_err(fail("server stream header"))?
            .is_some()
            && Frame::read(&mut reader)
                .map_err(fail("server settings"))?
                .is_some()
        {
            break;
        }
        read_more(&mut server_control, &mut buffer, "server settings").await?;
    }

    let mut request = SessionRequest::new(url).map_err(fail("url"))?;
    for (name, value) in headers {
        request.insert(*name, *value).map_err(fail("header"))?;
    }
    let (mut send, mut recv) = connection.open_bi().await.map_err(fail("open request"))?;
    let mut bytes = Vec::new();
    request
        .headers()
        .generate_frame()
        .write(&mut bytes)
        .map_err(fail("encode headers"))?;
    send.write_all(&bytes).await.map_err(fail("send request"))?;

    let mut buffer = Vec::new();
    let response = loop {
        let mut reader = buffer.as_slice();
        if let Some(frame) = Frame::read(&mut reader).map_err(fail("response frame"))? {
            if !matches!(frame.kind(), FrameKind::Headers) {
                let kind = frame.kind();
                return Err(Error::new(format!(
                    "a {kind:?} frame before the response headers"
                )));
            }
            break Headers::with_frame(&frame).map_err(fail("decode response headers"))?;
        }
        read_more(&mut recv, &mut buffer, "response").await?;
    };
    let status = response
        .get(":status")
        .ok_or_else(|| Error::new("a response without :status"))?;
    connection.close(0u32.into(), b"done");
    status
        .parse()
        .map_err(|_| Error::new(format!("a :status that is not a number: {status}")))
}

async fn read_more(stream: &mut quinn::RecvStream, buffer: &mut Vec<u8>, what: &str) -> Result<()> {
    match stream.read_chunk(16 * 1024, true).await {
        Ok(Some(chunk)) => {
            buffer.extend_from_slice(&chunk.bytes);
            Ok(())
        }
        Ok(None) => Err(Error::new(format!("{what}: the stream ended early"))),
        Err(error) => Err(Error::new(format!("{what}: {error}"))),
    }
}

async fn connect(addr: SocketAddr, certificate: &[u8]) -> Result<quinn::Connection> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut tls = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(fail("TLS 1.3"))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(Pinned {
            certificate: certificate.to_vec(),
            provider,
        }))
        .with_no_client_auth();
    tls.alpn_protocols = vec![b"h3".to_vec()];
    let crypto =
        quinn::crypto::rustls::QuicClientConfig::try_from(tls).map_err(fail("QUIC TLS"))?;
    let mut endpoint = quinn::Endpoint::client((addr.ip(), 0).into()).map_err(fail("endpoint"))?;
    endpoint.set_default_client_config(quinn::ClientConfig::new(Arc::new(crypto)));
    endpoint
        .connect(addr, "localhost")
        .map_err(fail("connect"))?
        .await
        .map_err(fail("handshake"))
}

fn fail<E: std::fmt::Debug>(what: &'static str) -> impl Fn(E) -> Error {
    move |error| Error::new(format!("{what}: {error:?}"))
}

/// Trusts exactly one certificate (the test server's self-signed one), with real signatures.
#[derive(Debug)]
struct Pinned {
    certificate: Vec<u8>,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl rustls::client::danger::ServerCertVerifier for Pinned {
    fn verify_server_cert(
        &self,
        end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> std::result::Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        if end_entity.as_ref() == self.certificate.as_slice() {
            Ok(rustls::client::danger::ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::General("not the pinned certificate".into()))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> std::result::Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> std::result::Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}
