//! TLS as a client of the application backend (HTTPS and gRPC proxies, JWKS endpoints), and
//! the PEM reading every TLS block of the configuration shares.
//!
//! A TLS block (`Tls`) as a client: the server is verified against `server_ca_pem` when set,
//! else the system's root certificates; `cert_pem` + `key_pem` present a client certificate
//! (mutual TLS); `insecure_skip_verify` accepts any server certificate (logged loudly: it
//! removes the protection TLS is for). `server_name`, when set, replaces the URL's host as the
//! name checked and sent as SNI. One crypto provider: ring.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use spindle_hub::config::Tls;
use thiserror::Error;

/// Why a TLS block cannot be used as a client.
#[derive(Debug, Error)]
pub enum ClientTlsError {
    /// A PEM field is not PEM text, a readable file or base64 PEM, or holds no usable block.
    #[error("{field}: {message}")]
    Pem {
        /// `server_ca_pem`, `cert_pem` or `key_pem`.
        field: &'static str,
        /// What is wrong.
        message: String,
    },
    /// rustls refused the combination (a key that does not fit the certificate, ...).
    #[error("{0}")]
    Rustls(String),
}

/// The PEM text of a configuration field (text, file or base64), read as every listener reads
/// its own.
pub use spindle_server::tls::pem_of;

/// The certificates of a PEM field (at least one).
pub fn certificates_of(
    field: &'static str,
    value: &str,
) -> Result<Vec<CertificateDer<'static>>, ClientTlsError> {
    let pem_error = |message: String| ClientTlsError::Pem { field, message };
    let pem = pem_of(value).map_err(pem_error)?;
    let certificates = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| pem_error(error.to_string()))?;
    if certificates.is_empty() {
        return Err(pem_error("no CERTIFICATE block".to_owned()));
    }
    Ok(certificates)
}

/// The private key of a PEM field.
pub fn private_key_of(
    field: &'static str,
    value: &str,
) -> Result<PrivateKeyDer<'static>, ClientTlsError> {
    let pem_error = |message: String| ClientTlsError::Pem { field, message };
    let pem = pem_of(value).map_err(pem_error)?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|error| pem_error(error.to_string()))
}

/// The rustls client configuration of a TLS block (see the module doc), with no ALPN set.
pub fn client_config(tls: &Tls) -> Result<ClientConfig, ClientTlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|error| ClientTlsError::Rustls(error.to_string()))?;
    let builder = if tls.insecure_skip_verify {
        tracing::warn!(
            "TLS insecure_skip_verify is on for a backend connection: any server certificate \
             is accepted; use it for tests only"
        );
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnyServer(provider)))
    } else {
        builder.with_root_certificates(roots(tls)?)
    };
    let config = if tls.cert_pem.is_empty() {
        builder.with_no_client_auth()
    } else {
        let chain = certificates_of("cert_pem", &tls.cert_pem)?;
        let key = private_key_of("key_pem", tls.key_pem.expose())?;
        builder
            .with_client_auth_cert(chain, key)
            .map_err(|error| ClientTlsError::Rustls(error.to_string()))?
    };
    Ok(config)
}

/// `server_ca_pem`'s certificates, else the system's roots.
fn roots(tls: &Tls) -> Result<RootCertStore, ClientTlsError> {
    let mut roots = RootCertStore::empty();
    if !tls.server_ca_pem.is_empty() {
        for certificate in certificates_of("server_ca_pem", &tls.server_ca_pem)? {
            roots
                .add(certificate)
                .map_err(|error| ClientTlsError::Pem {
                    field: "server_ca_pem",
                    message: error.to_string(),
                })?;
        }
        return Ok(roots);
    }
    let native = rustls_native_certs::load_native_certs();
    for error in &native.errors {
        tracing::debug!(%error, "a system root certificate could not be read");
    }
    let (added, _ignored) = roots.add_parsable_certificates(native.certs);
    if added == 0 {
        tracing::warn!("no system root certificates found: HTTPS backends need server_ca_pem");
    }
    Ok(roots)
}

/// `insecure_skip_verify`: every certificate is accepted, signatures are still checked so the
/// handshake itself stays well formed.
#[derive(Debug)]
struct AcceptAnyServer(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AcceptAnyServer {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
