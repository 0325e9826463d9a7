//! Test fixtures (see `testdata/README.md`) and token builders shared by the `jwt` tests.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::Value;

pub(crate) const RSA_PRIVATE: &str = include_str!("testdata/rsa_private.pem");
pub(crate) const RSA_PUBLIC: &str = include_str!("testdata/rsa_public.pem");
pub(crate) const RSA_PUBLIC_PKCS1: &str = include_str!("testdata/rsa_public_pkcs1.pem");
pub(crate) const RSA_OTHER_PUBLIC: &str = include_str!("testdata/rsa_other_public.pem");
pub(crate) const EC256_PRIVATE: &str = include_str!("testdata/ec256_private.pem");
pub(crate) const EC256_PUBLIC: &str = include_str!("testdata/ec256_public.pem");
pub(crate) const EC384_PRIVATE: &str = include_str!("testdata/ec384_private.pem");
pub(crate) const EC384_PUBLIC: &str = include_str!("testdata/ec384_public.pem");
pub(crate) const EC521_PUBLIC: &str = include_str!("testdata/ec521_public.pem");
pub(crate) const ED25519_PRIVATE: &str = include_str!("testdata/ed25519_private.pem");
pub(crate) const ED25519_PUBLIC: &str = include_str!("testdata/ed25519_public.pem");
pub(crate) const JWKS: &str = include_str!("testdata/jwks.json");

/// The "current time" of the tests (2023-11-14).
pub(crate) const NOW: i64 = 1_700_000_000;

pub(crate) fn rsa_signer() -> EncodingKey {
    EncodingKey::from_rsa_pem(RSA_PRIVATE.as_bytes()).unwrap()
}

pub(crate) fn ec256_signer() -> EncodingKey {
    EncodingKey::from_ec_pem(EC256_PRIVATE.as_bytes()).unwrap()
}

pub(crate) fn ec384_signer() -> EncodingKey {
    EncodingKey::from_ec_pem(EC384_PRIVATE.as_bytes()).unwrap()
}

pub(crate) fn ed25519_signer() -> EncodingKey {
    EncodingKey::from_ed_pem(ED25519_PRIVATE.as_bytes()).unwrap()
}

/// Signs `claims` with jsonwebtoken's encoder.
pub(crate) fn sign(alg: Algorithm, key: &EncodingKey, kid: Option<&str>, claims: &Value) -> String {
    let mut header = Header::new(alg);
    header.kid = kid.map(str::to_owned);
    jsonwebtoken::encode(&header, claims, key).unwrap()
}

/// Signs `claims` with an HMAC algorithm and `secret`.
pub(crate) fn sign_hmac(alg: Algorithm, secret: &[u8], claims: &Value) -> String {
    sign(alg, &EncodingKey::from_secret(secret), None, claims)
}

pub(crate) fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// `header.payload.signature` from JSON values and a signature segment, unsigned.
pub(crate) fn raw_token(header: &Value, payload: &Value, signature: &str) -> String {
    format!(
        "{}.{}.{signature}",
        b64(header.to_string().as_bytes()),
        b64(payload.to_string().as_bytes())
    )
}

/// HS256 over exactly these header and payload texts (to test raw JSON preservation).
pub(crate) fn sign_hs256_text(header: &str, payload: &str, secret: &str) -> String {
    let signed = format!("{}.{}", b64(header.as_bytes()), b64(payload.as_bytes()));
    let key = EncodingKey::from_secret(secret.as_bytes());
    let signature = jsonwebtoken::crypto::sign(signed.as_bytes(), &key, Algorithm::HS256).unwrap();
    format!("{signed}.{signature}")
}
