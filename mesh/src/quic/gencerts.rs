//! Development certificates for a mesh (`spindle mesh gencerts`): a cluster CA and, per node,
//! a certificate naming the node (DNS subject alternative name), usable for both the server and
//! the client side of mutual TLS. Production brings its own CA.

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use thiserror::Error;

/// Certificates could not be made.
#[derive(Debug, Error)]
pub enum CertsError {
    #[error("node name {0:?} is not a DNS name (letters, digits, '-' and '.')")]
    BadName(String),
    #[error("no node names given")]
    NoNodes,
    #[error("certificate generation failed: {0}")]
    Rcgen(#[from] rcgen::Error),
}

/// A development CA and one certificate and key per node, all PEM.
#[derive(Debug, Clone)]
pub struct DevelopmentCerts {
    pub ca_pem: String,
    /// (node name, certificate PEM, private key PEM).
    pub nodes: Vec<(String, String, String)>,
}

/// A fresh CA and a certificate for each node (each name a DNS name).
pub fn generate_certs(nodes: &[String]) -> Result<DevelopmentCerts, CertsError> {
    if nodes.is_empty() {
        return Err(CertsError::NoNodes);
    }
    for node in nodes {
        if rustls::pki_types::DnsName::try_from(node.as_str()).is_err() || node.is_empty() {
            return Err(CertsError::BadName(node.clone()));
        }
    }
    let mut ca = CertificateParams::new(Vec::<String>::new())?;
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "Spindle development mesh CA");
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate()?)?;
    let mut issued = Vec::new();
    for node in nodes {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(vec![node.clone()])?;
        params
            .distinguished_name
            .push(DnType::CommonName, node.as_str());
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let certificate = params.signed_by(&key, &ca)?;
        issued.push((node.clone(), certificate.pem(), key.serialize_pem()));
    }
    Ok(DevelopmentCerts {
        ca_pem: ca.pem(),
        nodes: issued,
    })
}
