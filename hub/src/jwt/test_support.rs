//! Test fixtures (see `testdata/README.md`) and token builders shared by the `jwt` tests.

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use p521::ecdsa::signature::hazmat::RandomizedPrehashSigner as _;
use p521::ecdsa::{Signature as P521Signature, SigningKey as P521SigningKey};
use p521::elliptic_curve::rand_core::{CryptoRng, RngCore};
use serde_json::{Value, json};
use sha2::{Digest as _, Sha512};

pub(crate) const RSA_PRIVATE: &str = include_str!("testdata/rsa_private.pem");
pub(crate) const RSA_PUBLIC: &str = include_str!("testdata/rsa_public.pem");
pub(crate) const RSA_PUBLIC_PKCS1: &str = include_str!("testdata/rsa_public_pkcs1.pem");
pub(crate) const RSA_OTHER_PUBLIC: &str = include_str!("testdata/rsa_other_public.pem");
pub(crate) const EC256_PRIVATE: &str = include_str!("testdata/ec256_private.pem");
pub(crate) const EC256_PUBLIC: &str = include_str!("testdata/ec256_public.pem");
pub(crate) const EC384_PRIVATE: &str = include_str!("testdata/ec384_private.pem");
pub(crate) const EC384_PUBLIC: &str = include_str!("testdata/ec384_public.pem");
pub(crate) const EC521_PRIVATE: &str = include_str!("testdata/ec521_private.pem");
pub(crate) const EC521_PUBLIC: &str = include_str!("testdata/ec521_public.pem");
pub(crate) const EC521_OTHER_PUBLIC: &str = include_str!("testdata/ec521_other_public.pem");
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

/// The P-521 key of `ec521_private.pem` (SEC1 `EC PRIVATE KEY`, read without p521's `pkcs8`).
pub(crate) fn ec521_signer() -> P521SigningKey {
    let body: String = EC521_PRIVATE
        .lines()
        .filter(|line| !line.starts_with("-----"))
        .collect();
    let secret = p521::SecretKey::from_sec1_der(&STANDARD.decode(body).unwrap()).unwrap();
    P521SigningKey::from_bytes(&secret.to_bytes()).unwrap()
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

/// An ES512 token over `claims` (jsonwebtoken cannot sign ES512): header
/// `{"alg":"ES512","typ":"JWT"}` plus `kid`, signature `r || s` (132 bytes), base64url.
pub(crate) fn sign_es512(key: &P521SigningKey, kid: Option<&str>, claims: &Value) -> String {
    let mut header = json!({"alg": "ES512", "typ": "JWT"});
    if let Some(kid) = kid {
        header["kid"] = kid.into();
    }
    let signed = format!(
        "{}.{}",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes())
    );
    let signature = es512_signature(key, signed.as_bytes());
    format!("{signed}.{}", b64(&signature.to_bytes()))
}

/// ECDSA P-521 + SHA-512 of `message` with the deterministic nonce of RFC 6979 §3.2.
///
/// `p521` 0.13 has no RFC 6979 signer, only one that draws its nonce from an RNG, so the nonce
/// is computed here and handed over through [`OneNonce`]. Checked against RFC 6979 A.2.7 by
/// `es512_signer_is_deterministic_rfc6979`.
pub(crate) fn es512_signature(key: &P521SigningKey, message: &[u8]) -> P521Signature {
    let h1: [u8; 64] = Sha512::digest(message).into();
    let k = rfc6979_nonce(&key.to_bytes(), &h1);
    key.sign_prehash_with_rng(&mut OneNonce(k), &h1).unwrap()
}

/// RFC 6979 §3.2 for q = the P-521 order (qlen 521 bits, rlen 66 bytes) and H = SHA-512.
fn rfc6979_nonce(x: &[u8], h1: &[u8; 64]) -> [u8; 66] {
    // bits2octets(h1): h1 < 2^512 < q, so it is only left-padded to 66 bytes.
    let mut h = [0u8; 66];
    h[2..].copy_from_slice(h1);
    let mut v = [0x01u8; 64];
    let mut k = [0x00u8; 64];
    k = hmac_sha512(&k, &[&v, &[0x00], x, &h]);
    v = hmac_sha512(&k, &[&v]);
    k = hmac_sha512(&k, &[&v, &[0x01], x, &h]);
    v = hmac_sha512(&k, &[&v]);
    loop {
        // T = two successive V blocks (1024 bits >= qlen); bits2int keeps its leftmost 521.
        let mut t = [0u8; 128];
        for block in t.chunks_mut(64) {
            v = hmac_sha512(&k, &[&v]);
            block.copy_from_slice(&v);
        }
        let candidate: [u8; 66] = std::array::from_fn(|i| match i {
            0 => t[0] >> 7,
            _ => (t[i - 1] << 1) | (t[i] >> 7),
        });
        // 1 <= k < q, which is exactly what a secret scalar must be.
        if p521::SecretKey::from_slice(&candidate).is_ok() {
            return candidate;
        }
        k = hmac_sha512(&k, &[&v, &[0x00]]);
        v = hmac_sha512(&k, &[&v]);
    }
}

/// HMAC-SHA-512 (RFC 2104) with a 64-byte key over the concatenation of `parts`.
fn hmac_sha512(key: &[u8; 64], parts: &[&[u8]]) -> [u8; 64] {
    let mut block = [0u8; 128];
    block[..64].copy_from_slice(key);
    let mut inner = Sha512::new();
    inner.update(block.map(|b| b ^ 0x36));
    for part in parts {
        inner.update(part);
    }
    let mut outer = Sha512::new();
    outer.update(block.map(|b| b ^ 0x5c));
    outer.update(inner.finalize());
    outer.finalize().into()
}

/// An "RNG" that yields one fixed 66-byte nonce: `p521`'s signer draws its nonce scalar by
/// filling 66 bytes and keeping them when they are below the order, as an RFC 6979 nonce is.
struct OneNonce([u8; 66]);

impl RngCore for OneNonce {
    fn next_u32(&mut self) -> u32 {
        unreachable!("the P-521 signer only fills 66-byte buffers")
    }

    fn next_u64(&mut self) -> u64 {
        unreachable!("the P-521 signer only fills 66-byte buffers")
    }

    fn fill_bytes(&mut self, dest: &mut [u8]) {
        dest.copy_from_slice(&self.0);
    }

    fn try_fill_bytes(
        &mut self,
        dest: &mut [u8],
    ) -> Result<(), p521::elliptic_curve::rand_core::Error> {
        self.fill_bytes(dest);
        Ok(())
    }
}

impl CryptoRng for OneNonce {}
