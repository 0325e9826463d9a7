//! Verification keys: which configured key may verify a token with a given `alg` (and `kid`).
//!
//! Keys are built from values (secrets and PEM text from the configuration, a JWK set document
//! fetched by the core) and validated when built, so a bad key is a startup / fetch error rather
//! than every token failing later.
//!
//! Supported algorithms: HS256/384/512 (HMAC secret), RS256/384/512 (RSA PKCS#1 v1.5), ES256
//! (P-256), ES384 (P-384), ES512 (P-521) and EdDSA (Ed25519, from a JWK set only).
//! PS256/384/512 are not accepted (Centrifugo does not list them): such a token is rejected with
//! [`TokenError::UnsupportedAlgorithm`].
//!
//! Every algorithm but ES512 is verified by the `jsonwebtoken` crate. Its version 11 has no
//! P-521 verifier (its [`Algorithm`] enum has no `ES512`), so ES512 is verified with the RustCrypto
//! `p521` crate: ECDSA over P-521 with SHA-512 of the signing input, the signature being the
//! 132-byte `r || s` concatenation of RFC 7518 §3.4 (an ASN.1 DER signature is refused). `Alg`
//! and `VerifyKey` join the two verifiers.

use std::collections::BTreeMap;
use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, DecodingKey};
use p521::ecdsa::signature::Verifier as _;
use serde::Deserialize;

use super::verify::TokenError;

/// Why configured key material could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// An HMAC secret was given but is empty.
    #[error("HMAC secret key is empty")]
    EmptySecret,
    /// The RSA public key PEM could not be parsed or is not an acceptable public key.
    #[error("invalid RSA public key: {0}")]
    InvalidRsaKey(String),
    /// The ECDSA public key PEM could not be parsed or is not a valid curve point.
    #[error("invalid ECDSA public key: {0}")]
    InvalidEcKey(String),
    /// The JWK set document is not JSON or has no `keys` array.
    #[error("invalid JWK set: {0}")]
    InvalidJwks(String),
}

/// A JWS `alg` we verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Alg {
    /// Verified by `jsonwebtoken`.
    Jwt(Algorithm),
    /// ECDSA P-521 + SHA-512, verified by `p521` (`jsonwebtoken` 11 has no `ES512`).
    Es512,
}

impl From<Algorithm> for Alg {
    fn from(alg: Algorithm) -> Self {
        Alg::Jwt(alg)
    }
}

/// A key that verifies signatures, with the crate that does it.
#[derive(Clone)]
pub(crate) enum VerifyKey {
    /// An HMAC secret, RSA, P-256, P-384 or Ed25519 key, for `jsonwebtoken`.
    Jwt(DecodingKey),
    /// A P-521 public key (ES512).
    P521(p521::ecdsa::VerifyingKey),
}

impl VerifyKey {
    /// Whether `signature` (the token's base64url third segment) signs `message` (the ASCII
    /// `header.payload`) under this key with `alg`. A key never verifies an algorithm of the
    /// other crate; an undecodable signature never verifies.
    pub(crate) fn verifies(&self, alg: Alg, message: &[u8], signature: &str) -> bool {
        match (self, alg) {
            (VerifyKey::Jwt(key), Alg::Jwt(alg)) => matches!(
                jsonwebtoken::crypto::verify(signature, message, key, alg),
                Ok(true)
            ),
            (VerifyKey::P521(key), Alg::Es512) => verify_es512(key, message, signature),
            _ => false,
        }
    }
}

/// ES512 (RFC 7518 §3.4): the signature is exactly 132 bytes, `r || s` as 66-byte big-endian
/// integers, each in `1..n`; the message is hashed with SHA-512. Any other length (an ASN.1 DER
/// signature in particular) does not verify. High `s` values are accepted, as in RFC 7518.
fn verify_es512(key: &p521::ecdsa::VerifyingKey, message: &[u8], signature: &str) -> bool {
    let Ok(bytes) = URL_SAFE_NO_PAD.decode(signature) else {
        return false;
    };
    let Ok(signature) = p521::ecdsa::Signature::from_slice(&bytes) else {
        return false;
    };
    key.verify(message, &signature).is_ok()
}

/// The kind of an asymmetric public key, which fixes the algorithms it may verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KeyKind {
    Rsa,
    P256,
    P384,
    P521,
    Ed25519,
}

impl KeyKind {
    fn accepts(self, alg: Alg) -> bool {
        matches!(
            (self, alg),
            (
                KeyKind::Rsa,
                Alg::Jwt(Algorithm::RS256 | Algorithm::RS384 | Algorithm::RS512)
            ) | (KeyKind::P256, Alg::Jwt(Algorithm::ES256))
                | (KeyKind::P384, Alg::Jwt(Algorithm::ES384))
                | (KeyKind::P521, Alg::Es512)
                | (KeyKind::Ed25519, Alg::Jwt(Algorithm::EdDSA))
        )
    }
}

/// A validated asymmetric public key.
#[derive(Clone)]
struct PublicKey {
    kind: KeyKind,
    key: VerifyKey,
}

/// Maps a JWS `alg` header value to an algorithm we verify; everything else is unsupported.
pub(crate) fn supported_algorithm(name: &str) -> Result<Alg, TokenError> {
    let alg = match name {
        "HS256" => Algorithm::HS256,
        "HS384" => Algorithm::HS384,
        "HS512" => Algorithm::HS512,
        "RS256" => Algorithm::RS256,
        "RS384" => Algorithm::RS384,
        "RS512" => Algorithm::RS512,
        "ES256" => Algorithm::ES256,
        "ES384" => Algorithm::ES384,
        "ES512" => return Ok(Alg::Es512),
        "EdDSA" => Algorithm::EdDSA,
        // "none", PS*, and anything unknown.
        other => {
            return Err(TokenError::UnsupportedAlgorithm(
                other.chars().take(32).collect(),
            ));
        }
    };
    Ok(Alg::Jwt(alg))
}

/// Up to two keys to try in order (the current HMAC secret, then the previous one).
pub(crate) type Candidates<'a> = [Option<&'a VerifyKey>; 2];

/// The keys that verify connection (and subscription) tokens.
///
/// Built from configuration values with the `with_*` methods. When a JWK set is present
/// ([`KeySet::with_jwks`]) the static keys are not consulted at all, as in Centrifugo: the key
/// is then chosen by the token's `kid` only.
#[derive(Clone, Default)]
pub struct KeySet {
    hmac: Option<VerifyKey>,
    hmac_previous: Option<(VerifyKey, i64)>,
    rsa: Option<PublicKey>,
    ecdsa: Option<PublicKey>,
    jwks: Option<Jwks>,
}

impl KeySet {
    /// An empty key set: every token fails with [`TokenError::NoKey`] (unless
    /// [`ClaimRules::skip_signature_verify`](super::ClaimRules::skip_signature_verify) is set).
    pub fn new() -> Self {
        Self::default()
    }

    /// Enables HS256/HS384/HS512 with `secret` (`client.token.hmac_secret_key`; its bytes are
    /// the key, it is not base64-decoded).
    pub fn with_hmac_secret(mut self, secret: &str) -> Result<Self, KeyError> {
        if secret.is_empty() {
            return Err(KeyError::EmptySecret);
        }
        self.hmac = Some(VerifyKey::Jwt(DecodingKey::from_secret(secret.as_bytes())));
        Ok(self)
    }

    /// Adds the previous HMAC secret during rotation
    /// (`hmac_previous_secret_key` + `hmac_previous_secret_key_valid_until`). It is tried after
    /// the current secret fails, and only while `now < valid_until_unix`.
    pub fn with_hmac_previous_secret(
        mut self,
        secret: &str,
        valid_until_unix: i64,
    ) -> Result<Self, KeyError> {
        if secret.is_empty() {
            return Err(KeyError::EmptySecret);
        }
        self.hmac_previous = Some((
            VerifyKey::Jwt(DecodingKey::from_secret(secret.as_bytes())),
            valid_until_unix,
        ));
        Ok(self)
    }

    /// Enables RS256/RS384/RS512 with an RSA public key PEM (`rsa_public_key`), either
    /// `PUBLIC KEY` (SPKI) or `RSA PUBLIC KEY` (PKCS#1). The modulus must be 1024 to 4096 bits
    /// (the verifier's upper bound).
    pub fn with_rsa_public_key_pem(mut self, pem: &str) -> Result<Self, KeyError> {
        let parsed = DecodingKey::from_rsa_pem(pem.as_bytes())
            .map_err(|e| KeyError::InvalidRsaKey(e.to_string()))?;
        let der = parsed
            .try_get_as_bytes()
            .map_err(|e| KeyError::InvalidRsaKey(e.to_string()))?;
        let (n, e) = parse_pkcs1_public_key(der).ok_or_else(|| {
            KeyError::InvalidRsaKey("not a DER RSAPublicKey (a private key?)".to_owned())
        })?;
        self.rsa = Some(rsa_key(n, e)?);
        Ok(self)
    }

    /// Enables ES256, ES384 or ES512 with an ECDSA public key PEM (`ecdsa_public_key`, SPKI
    /// `PUBLIC KEY`). The curve decides the algorithm: P-256 → ES256, P-384 → ES384, P-521 →
    /// ES512.
    pub fn with_ecdsa_public_key_pem(mut self, pem: &str) -> Result<Self, KeyError> {
        let parsed = DecodingKey::from_ec_pem(pem.as_bytes())
            .map_err(|e| KeyError::InvalidEcKey(e.to_string()))?;
        let point = parsed
            .try_get_as_bytes()
            .map_err(|e| KeyError::InvalidEcKey(e.to_string()))?;
        self.ecdsa = Some(ec_key(point)?);
        Ok(self)
    }

    /// Uses a JWK set (`jwks_public_endpoint`, fetched by the core). From then on only the JWK
    /// set is consulted: a token must carry a `kid` naming one of its usable keys.
    pub fn with_jwks(mut self, jwks: Jwks) -> Self {
        self.jwks = Some(jwks);
        self
    }

    /// True when no key at all is configured.
    pub fn is_empty(&self) -> bool {
        self.hmac.is_none()
            && self.hmac_previous.is_none()
            && self.rsa.is_none()
            && self.ecdsa.is_none()
            && self.jwks.is_none()
    }

    /// The keys to try, in order, for a token with `alg` and `kid` at time `now_unix`.
    /// [`TokenError::NoKey`] when none applies.
    pub(crate) fn candidates(
        &self,
        alg: Alg,
        kid: Option<&str>,
        now_unix: i64,
    ) -> Result<Candidates<'_>, TokenError> {
        if let Some(jwks) = &self.jwks {
            let key = kid
                .and_then(|kid| jwks.key_for(kid, alg))
                .ok_or(TokenError::NoKey)?;
            return Ok([Some(key), None]);
        }
        let found = match alg {
            Alg::Jwt(Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512) => {
                let previous = self
                    .hmac_previous
                    .as_ref()
                    .filter(|(_, valid_until)| now_unix < *valid_until)
                    .map(|(key, _)| key);
                [self.hmac.as_ref(), previous]
            }
            _ => {
                let key = [&self.rsa, &self.ecdsa]
                    .into_iter()
                    .flatten()
                    .find(|k| k.kind.accepts(alg))
                    .map(|k| &k.key);
                [key, None]
            }
        };
        match found {
            [None, None] => Err(TokenError::NoKey),
            [None, Some(previous)] => Ok([Some(previous), None]),
            some => Ok(some),
        }
    }
}

impl fmt::Debug for KeySet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeySet")
            .field("hmac", &self.hmac.as_ref().map(|_| "***"))
            .field(
                "hmac_previous_valid_until",
                &self.hmac_previous.as_ref().map(|(_, t)| t),
            )
            .field("rsa", &self.rsa.as_ref().map(|k| k.kind))
            .field("ecdsa", &self.ecdsa.as_ref().map(|k| k.kind))
            .field("jwks", &self.jwks)
            .finish()
    }
}

/// The usable signing keys of a JWK set document (RFC 7517), by `kid`.
///
/// Accepted entries: `kty: RSA` (RS256/384/512), `kty: EC` with `crv` P-256 (ES256), P-384
/// (ES384) or P-521 (ES512), `kty: OKP` with `crv: Ed25519` (EdDSA). An entry's `alg`, when
/// present, narrows it to that one algorithm. Entries are skipped, not fatal, when they have no
/// `kid`, have `use` other than `sig`, are of another type or curve (including `oct`), or hold a
/// malformed key (EC coordinates must be the curve's full size: 32, 48 or 66 bytes, RFC 7518
/// §6.2.1.2): one bad key of an identity provider must not disable the others. For a duplicated
/// `kid` the first usable entry wins.
#[derive(Clone, Default)]
pub struct Jwks {
    keys: BTreeMap<String, JwkEntry>,
}

#[derive(Clone)]
struct JwkEntry {
    key: PublicKey,
    /// The entry's own `alg`, if it named one.
    alg: Option<Alg>,
}

#[derive(Deserialize)]
struct RawJwks {
    keys: Vec<serde_json::Value>,
}

#[derive(Deserialize)]
struct RawJwk {
    kty: String,
    kid: Option<String>,
    #[serde(rename = "use")]
    usage: Option<String>,
    alg: Option<String>,
    crv: Option<String>,
    n: Option<String>,
    e: Option<String>,
    x: Option<String>,
    y: Option<String>,
}

impl Jwks {
    /// Parses a JWK set document (`{"keys": [...]}`), keeping its usable keys.
    ///
    /// Fails only when the text is not a JSON object with a `keys` array; see the type doc for
    /// which entries are skipped. A set with no usable key is valid and verifies nothing.
    pub fn from_json(text: &str) -> Result<Self, KeyError> {
        let raw: RawJwks =
            serde_json::from_str(text).map_err(|e| KeyError::InvalidJwks(e.to_string()))?;
        let mut keys = BTreeMap::new();
        for value in raw.keys {
            let Ok(jwk) = serde_json::from_value::<RawJwk>(value) else {
                continue;
            };
            let Some(kid) = jwk.kid.clone() else {
                continue;
            };
            if let Some(entry) = JwkEntry::from_raw(&jwk) {
                keys.entry(kid).or_insert(entry);
            }
        }
        Ok(Self { keys })
    }

    /// Number of usable keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// True when the set has no usable key.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The `kid`s of the usable keys, in order (for logging what a fetch yielded).
    pub fn kids(&self) -> impl Iterator<Item = &str> {
        self.keys.keys().map(String::as_str)
    }

    fn key_for(&self, kid: &str, alg: Alg) -> Option<&VerifyKey> {
        let entry = self.keys.get(kid)?;
        let alg_ok = entry.alg.is_none_or(|own| own == alg);
        (alg_ok && entry.key.kind.accepts(alg)).then_some(&entry.key.key)
    }
}

impl fmt::Debug for Jwks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.keys.iter().map(|(kid, e)| (kid, e.key.kind)))
            .finish()
    }
}

impl JwkEntry {
    fn from_raw(jwk: &RawJwk) -> Option<Self> {
        if jwk.usage.as_deref().is_some_and(|u| u != "sig") {
            return None;
        }
        let alg = match &jwk.alg {
            Some(name) => Some(supported_algorithm(name).ok()?),
            None => None,
        };
        let key = match (jwk.kty.as_str(), jwk.crv.as_deref()) {
            ("RSA", _) => {
                let n = b64url(jwk.n.as_deref()?)?;
                let e = b64url(jwk.e.as_deref()?)?;
                rsa_key(&n, &e).ok()?
            }
            ("EC", Some(crv @ ("P-256" | "P-384" | "P-521"))) => {
                let x = b64url(jwk.x.as_deref()?)?;
                let y = b64url(jwk.y.as_deref()?)?;
                let size = match crv {
                    "P-256" => 32,
                    "P-384" => 48,
                    _ => 66,
                };
                if x.len() != size || y.len() != size {
                    return None;
                }
                let point = [&[0x04][..], &x, &y].concat();
                ec_key(&point).ok()?
            }
            ("OKP", Some("Ed25519")) => ed25519_key(&b64url(jwk.x.as_deref()?)?)?,
            _ => return None,
        };
        if alg.is_some_and(|alg| !key.kind.accepts(alg)) {
            return None;
        }
        Some(Self { key, alg })
    }
}

/// base64url without padding (a stray trailing `=` is tolerated).
fn b64url(text: &str) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(text.trim_end_matches('=')).ok()
}

/// Checks RSA public components the way the verifier will, and builds the key.
fn rsa_key(n: &[u8], e: &[u8]) -> Result<PublicKey, KeyError> {
    let invalid = |why: &str| Err(KeyError::InvalidRsaKey(why.to_owned()));
    let n = strip_leading_zeros(n);
    let e = strip_leading_zeros(e);
    let (Some(&n_first), Some(&n_last), Some(&e_last)) = (n.first(), n.last(), e.last()) else {
        return invalid("empty modulus or exponent");
    };
    let bits = n.len() * 8 - n_first.leading_zeros() as usize;
    if !(1024..=4096).contains(&bits) {
        return Err(KeyError::InvalidRsaKey(format!(
            "modulus is {bits} bits, expected 1024 to 4096"
        )));
    }
    if e.len() > 5 {
        return invalid("public exponent too large");
    }
    let exponent = e.iter().fold(0u64, |acc, &b| (acc << 8) | u64::from(b));
    if !(3..(1 << 33)).contains(&exponent) || e_last % 2 == 0 || n_last % 2 == 0 {
        return invalid("bad public exponent or even modulus");
    }
    Ok(PublicKey {
        kind: KeyKind::Rsa,
        key: VerifyKey::Jwt(DecodingKey::from_rsa_raw_components(n, e)),
    })
}

fn strip_leading_zeros(bytes: &[u8]) -> &[u8] {
    let start = bytes.iter().position(|&b| b != 0).unwrap_or(bytes.len());
    &bytes[start..]
}

/// Builds an ECDSA key from a SEC1 point (uncompressed or compressed); the length tells the
/// curve, and the verifier's own point decoding (a dry run for P-256 / P-384) rejects points
/// not on it.
fn ec_key(point: &[u8]) -> Result<PublicKey, KeyError> {
    let not_on_curve = || KeyError::InvalidEcKey("not a point on the curve".to_owned());
    let (kind, alg) = match point.len() {
        33 | 65 => (KeyKind::P256, Algorithm::ES256),
        49 | 97 => (KeyKind::P384, Algorithm::ES384),
        67 | 133 => {
            let key =
                p521::ecdsa::VerifyingKey::from_sec1_bytes(point).map_err(|_| not_on_curve())?;
            return Ok(PublicKey {
                kind: KeyKind::P521,
                key: VerifyKey::P521(key),
            });
        }
        other => {
            return Err(KeyError::InvalidEcKey(format!(
                "unexpected point length {other}"
            )));
        }
    };
    let key = DecodingKey::from_ec_der(point);
    if !usable(&key, alg) {
        return Err(not_on_curve());
    }
    Ok(PublicKey {
        kind,
        key: VerifyKey::Jwt(key),
    })
}

/// An Ed25519 public key must be exactly 32 bytes and a valid point.
fn ed25519_key(raw: &[u8]) -> Option<PublicKey> {
    if raw.len() != 32 {
        return None;
    }
    let key = DecodingKey::from_ed_der(raw);
    usable(&key, Algorithm::EdDSA).then_some(PublicKey {
        kind: KeyKind::Ed25519,
        key: VerifyKey::Jwt(key),
    })
}

/// Whether the verifier accepts `key` for `alg`: verifying an empty signature must fail as a
/// bad signature (`Ok(false)`), not as a bad key (`Err`).
fn usable(key: &DecodingKey, alg: Algorithm) -> bool {
    matches!(jsonwebtoken::crypto::verify("", b"", key, alg), Ok(false))
}

/// Reads a DER PKCS#1 `RSAPublicKey ::= SEQUENCE { modulus INTEGER, publicExponent INTEGER }`
/// and returns (modulus, exponent) as big-endian bytes. `None` for anything else, including
/// private keys (more than two integers).
fn parse_pkcs1_public_key(der: &[u8]) -> Option<(&[u8], &[u8])> {
    let (body, rest) = der_element(der, 0x30)?;
    let (n, body) = der_element(body, 0x02)?;
    let (e, body) = der_element(body, 0x02)?;
    (rest.is_empty() && body.is_empty()).then_some((n, e))
}

/// Splits one DER element with `tag` off the front of `input`: (contents, remainder).
fn der_element(input: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
    let (&found, rest) = input.split_first()?;
    if found != tag {
        return None;
    }
    let (&first, mut rest) = rest.split_first()?;
    let len = if first < 0x80 {
        usize::from(first)
    } else {
        let count = usize::from(first & 0x7f);
        if count == 0 || count > 4 {
            return None;
        }
        let (len_bytes, after) = rest.split_at_checked(count)?;
        rest = after;
        len_bytes
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b))
    };
    rest.split_at_checked(len)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jwt::test_support::*;

    /// How many keys would be tried, or the error.
    fn tried(
        keys: &KeySet,
        alg: impl Into<Alg>,
        kid: Option<&str>,
        now: i64,
    ) -> Result<usize, TokenError> {
        keys.candidates(alg.into(), kid, now)
            .map(|c| c.iter().flatten().count())
    }

    #[test]
    fn pem_keys_load_and_select_by_alg() {
        let keys = KeySet::new()
            .with_rsa_public_key_pem(RSA_PUBLIC)
            .unwrap()
            .with_ecdsa_public_key_pem(EC256_PUBLIC)
            .unwrap();
        assert_eq!(tried(&keys, Algorithm::RS384, None, 0).unwrap(), 1);
        assert_eq!(tried(&keys, Algorithm::ES256, None, 0).unwrap(), 1);
        assert_eq!(
            tried(&keys, Algorithm::ES384, None, 0),
            Err(TokenError::NoKey)
        );
        assert_eq!(
            tried(&keys, Algorithm::HS256, None, 0),
            Err(TokenError::NoKey)
        );
        assert_eq!(
            tried(&keys, Algorithm::EdDSA, None, 0),
            Err(TokenError::NoKey)
        );
        assert!(!keys.is_empty());
        assert!(KeySet::new().is_empty());
    }

    #[test]
    fn pkcs1_rsa_pem_is_accepted() {
        let keys = KeySet::new()
            .with_rsa_public_key_pem(RSA_PUBLIC_PKCS1)
            .unwrap();
        assert_eq!(tried(&keys, Algorithm::RS256, None, 0).unwrap(), 1);
    }

    #[test]
    fn bad_pem_material_is_refused() {
        let err = KeySet::new()
            .with_rsa_public_key_pem(RSA_PRIVATE)
            .unwrap_err();
        assert!(matches!(err, KeyError::InvalidRsaKey(_)), "{err:?}");
        let err = KeySet::new()
            .with_rsa_public_key_pem(EC256_PUBLIC)
            .unwrap_err();
        assert!(matches!(err, KeyError::InvalidRsaKey(_)), "{err:?}");
        let err = KeySet::new()
            .with_rsa_public_key_pem("not a pem")
            .unwrap_err();
        assert!(matches!(err, KeyError::InvalidRsaKey(_)), "{err:?}");
        let err = KeySet::new()
            .with_ecdsa_public_key_pem(RSA_PUBLIC)
            .unwrap_err();
        assert!(matches!(err, KeyError::InvalidEcKey(_)), "{err:?}");
        let err = KeySet::new()
            .with_rsa_public_key_pem(EC521_PUBLIC)
            .unwrap_err();
        assert!(matches!(err, KeyError::InvalidRsaKey(_)), "{err:?}");
        assert_eq!(
            KeySet::new().with_hmac_secret("").unwrap_err(),
            KeyError::EmptySecret
        );
        assert_eq!(
            KeySet::new().with_hmac_previous_secret("", 10).unwrap_err(),
            KeyError::EmptySecret
        );
    }

    #[test]
    fn previous_hmac_secret_only_before_valid_until() {
        let keys = KeySet::new()
            .with_hmac_secret("current")
            .unwrap()
            .with_hmac_previous_secret("previous", 1000)
            .unwrap();
        assert_eq!(tried(&keys, Algorithm::HS256, None, 999).unwrap(), 2);
        assert_eq!(tried(&keys, Algorithm::HS512, None, 1000).unwrap(), 1);
        let only_previous = KeySet::new()
            .with_hmac_previous_secret("previous", 1000)
            .unwrap();
        assert_eq!(tried(&only_previous, Algorithm::HS256, None, 5).unwrap(), 1);
        assert_eq!(
            tried(&only_previous, Algorithm::HS256, None, 1000),
            Err(TokenError::NoKey)
        );
    }

    #[test]
    fn jwks_keeps_only_usable_keys() {
        let jwks = Jwks::from_json(JWKS).unwrap();
        assert_eq!(
            jwks.kids().collect::<Vec<_>>(),
            [
                "ec-256",
                "ec-384",
                "ec-521",
                "ed-1",
                "rsa-1",
                "rsa-rs512-only"
            ]
        );
        assert_eq!(jwks.len(), 6);
        assert!(!jwks.is_empty());
    }

    #[test]
    fn jwks_selects_by_kid_and_alg() {
        let keys = KeySet::new().with_jwks(Jwks::from_json(JWKS).unwrap());
        let ok = |alg: Alg, kid| tried(&keys, alg, Some(kid), 0);
        assert_eq!(ok(Algorithm::RS256.into(), "rsa-1"), Ok(1));
        assert_eq!(ok(Algorithm::RS512.into(), "rsa-1"), Ok(1));
        assert_eq!(ok(Algorithm::RS512.into(), "rsa-rs512-only"), Ok(1));
        assert_eq!(
            ok(Algorithm::RS256.into(), "rsa-rs512-only"),
            Err(TokenError::NoKey)
        );
        assert_eq!(ok(Algorithm::ES256.into(), "ec-256"), Ok(1));
        assert_eq!(
            ok(Algorithm::ES384.into(), "ec-256"),
            Err(TokenError::NoKey)
        );
        assert_eq!(ok(Algorithm::ES384.into(), "ec-384"), Ok(1));
        assert_eq!(ok(Alg::Es512, "ec-521"), Ok(1));
        assert_eq!(
            ok(Algorithm::ES384.into(), "ec-521"),
            Err(TokenError::NoKey)
        );
        assert_eq!(ok(Alg::Es512, "ec-384"), Err(TokenError::NoKey));
        assert_eq!(ok(Alg::Es512, "ec-521-stripped"), Err(TokenError::NoKey));
        assert_eq!(ok(Algorithm::EdDSA.into(), "ed-1"), Ok(1));
        assert_eq!(ok(Algorithm::RS256.into(), "ed-1"), Err(TokenError::NoKey));
        assert_eq!(
            ok(Algorithm::RS256.into(), "missing"),
            Err(TokenError::NoKey)
        );
        assert_eq!(
            ok(Algorithm::HS256.into(), "hmac-1"),
            Err(TokenError::NoKey)
        );
        assert_eq!(
            tried(&keys, Algorithm::RS256, None, 0),
            Err(TokenError::NoKey)
        );
    }

    #[test]
    fn jwks_replaces_static_keys() {
        let keys = KeySet::new()
            .with_hmac_secret("secret")
            .unwrap()
            .with_jwks(Jwks::from_json(r#"{"keys":[]}"#).unwrap());
        assert_eq!(
            tried(&keys, Algorithm::HS256, None, 0),
            Err(TokenError::NoKey)
        );
    }

    #[test]
    fn jwks_document_errors() {
        for text in ["", "[]", "{}", r#"{"keys":{}}"#, "{\"keys\":[", "null"] {
            let err = Jwks::from_json(text).unwrap_err();
            assert!(matches!(err, KeyError::InvalidJwks(_)), "{text}: {err:?}");
        }
        let jwks = Jwks::from_json(r#"{"keys":[1, "x", {"kid":"a"}, {"kty":"EC","kid":"b","crv":"P-256","x":"AA","y":"AA"}]}"#).unwrap();
        assert_eq!(jwks.len(), 0);
    }

    #[test]
    fn weak_or_odd_rsa_components_are_refused() {
        let small = [0xC3u8; 64];
        assert!(matches!(
            rsa_key(&small, &[1, 0, 1]),
            Err(KeyError::InvalidRsaKey(_))
        ));
        let mut even = [0xC3u8; 256];
        even[255] = 0x02;
        assert!(matches!(
            rsa_key(&even, &[1, 0, 1]),
            Err(KeyError::InvalidRsaKey(_))
        ));
        let odd = [0xC3u8; 256];
        assert!(rsa_key(&odd, &[1, 0, 1]).is_ok());
        assert!(matches!(
            rsa_key(&odd, &[1]),
            Err(KeyError::InvalidRsaKey(_))
        ));
        assert!(matches!(
            rsa_key(&odd, &[]),
            Err(KeyError::InvalidRsaKey(_))
        ));
        assert!(matches!(
            rsa_key(&[0xC3; 520], &[1, 0, 1]),
            Err(KeyError::InvalidRsaKey(_))
        ));
    }

    #[test]
    fn der_reader_rejects_truncation() {
        assert_eq!(
            der_element(&[0x02, 0x01, 0x05], 0x02),
            Some((&[0x05][..], &[][..]))
        );
        assert_eq!(der_element(&[0x02, 0x02, 0x05], 0x02), None);
        assert_eq!(der_element(&[0x02, 0x81], 0x02), None);
        assert_eq!(der_element(&[0x02, 0x85, 1, 1, 1, 1, 1], 0x02), None);
        assert_eq!(der_element(&[0x30, 0x00], 0x02), None);
        assert_eq!(
            parse_pkcs1_public_key(&[0x30, 0x06, 0x02, 0x01, 0x07, 0x02, 0x01, 0x03]),
            Some((&[0x07][..], &[0x03][..]))
        );
        assert_eq!(
            parse_pkcs1_public_key(&[
                0x30, 0x09, 0x02, 0x01, 0x00, 0x02, 0x01, 0x07, 0x02, 0x01, 0x03
            ]),
            None
        );
    }

    #[test]
    fn jwks_ed25519_key_matches_the_pem_fixture() {
        let from_pem = DecodingKey::from_ed_pem(ED25519_PUBLIC.as_bytes()).unwrap();
        let jwks: serde_json::Value = serde_json::from_str(JWKS).unwrap();
        let x = jwks["keys"][6]["x"].as_str().unwrap();
        assert_eq!(jwks["keys"][6]["kid"], "ed-1");
        assert_eq!(b64url(x).unwrap(), from_pem.try_get_as_bytes().unwrap());
        // An Ed25519 PEM is neither an RSA nor an ECDSA key.
        let err = KeySet::new()
            .with_ecdsa_public_key_pem(ED25519_PUBLIC)
            .unwrap_err();
        assert!(matches!(err, KeyError::InvalidEcKey(_)), "{err:?}");
        let err = KeySet::new()
            .with_rsa_public_key_pem(ED25519_PUBLIC)
            .unwrap_err();
        assert!(matches!(err, KeyError::InvalidRsaKey(_)), "{err:?}");
    }

    /// The `ec-521` entry of the JWK set as a SEC1 uncompressed point `04 || x || y`.
    fn jwks_p521_point() -> Vec<u8> {
        let jwks: serde_json::Value = serde_json::from_str(JWKS).unwrap();
        let entry = &jwks["keys"][5];
        assert_eq!(entry["kid"], "ec-521");
        let x = b64url(entry["x"].as_str().unwrap()).unwrap();
        let y = b64url(entry["y"].as_str().unwrap()).unwrap();
        assert_eq!((x.len(), y.len()), (66, 66));
        [&[0x04][..], &x, &y].concat()
    }

    fn p521_point_of(key: &PublicKey) -> Vec<u8> {
        match &key.key {
            VerifyKey::P521(key) => key.to_encoded_point(false).as_bytes().to_vec(),
            VerifyKey::Jwt(_) => panic!("not a P-521 key: {:?}", key.kind),
        }
    }

    #[test]
    fn p521_pem_key_verifies_only_es512() {
        let keys = KeySet::new()
            .with_ecdsa_public_key_pem(EC521_PUBLIC)
            .unwrap();
        assert_eq!(tried(&keys, Alg::Es512, None, 0), Ok(1));
        assert_eq!(
            tried(&keys, Algorithm::ES256, None, 0),
            Err(TokenError::NoKey)
        );
        assert_eq!(
            tried(&keys, Algorithm::ES384, None, 0),
            Err(TokenError::NoKey)
        );
        assert_eq!(
            tried(&keys, Algorithm::RS512, None, 0),
            Err(TokenError::NoKey)
        );
        let ecdsa = keys.ecdsa.as_ref().unwrap();
        assert_eq!(ecdsa.kind, KeyKind::P521);
        // The PEM fixture and the JWK set's `ec-521` entry hold the same point.
        assert_eq!(p521_point_of(ecdsa), jwks_p521_point());
        assert_eq!(
            format!("{keys:?}"),
            concat!(
                "KeySet { hmac: None, hmac_previous_valid_until: None, rsa: None, ",
                "ecdsa: Some(P521), jwks: None }"
            )
        );
        // A P-256 key verifies no ES512 token.
        let p256 = KeySet::new()
            .with_ecdsa_public_key_pem(EC256_PUBLIC)
            .unwrap();
        assert_eq!(tried(&p256, Alg::Es512, None, 0), Err(TokenError::NoKey));
    }

    #[test]
    fn p521_points_are_checked() {
        let point = jwks_p521_point();
        let key = ec_key(&point).unwrap();
        assert_eq!(key.kind, KeyKind::P521);
        assert_eq!(p521_point_of(&key), point);
        // The compressed form (02 or 03 by the parity of y, then x) names the same key.
        let y_is_odd = point[132] & 1;
        let compressed = [&[0x02 | y_is_odd][..], &point[1..67]].concat();
        assert_eq!(compressed.len(), 67);
        assert_eq!(p521_point_of(&ec_key(&compressed).unwrap()), point);
        // A changed coordinate is off the curve.
        let mut off_curve = point.clone();
        off_curve[132] ^= 1;
        let not_on_curve = Err(KeyError::InvalidEcKey(
            "not a point on the curve".to_owned(),
        ));
        assert_eq!(ec_key(&off_curve).map(|k| k.kind), not_on_curve);
        assert_eq!(ec_key(&[0x04; 133]).map(|k| k.kind), not_on_curve);
        assert_eq!(ec_key(&[0x05; 67]).map(|k| k.kind), not_on_curve);
        assert_eq!(
            ec_key(&point[..132]).map(|k| k.kind),
            Err(KeyError::InvalidEcKey(
                "unexpected point length 132".to_owned()
            ))
        );
    }

    #[test]
    fn jwk_p521_entries_need_full_size_coordinates_and_a_matching_alg() {
        let point = jwks_p521_point();
        let x = URL_SAFE_NO_PAD.encode(&point[1..67]);
        let y = URL_SAFE_NO_PAD.encode(&point[67..]);
        let entry = |kid: &str, extra: &str, x: &str, y: &str| {
            format!(r#"{{"kty":"EC","crv":"P-521","kid":"{kid}"{extra},"x":"{x}","y":"{y}"}}"#)
        };
        let short_x = URL_SAFE_NO_PAD.encode(&point[2..67]);
        let long_y = URL_SAFE_NO_PAD.encode([&[0][..], &point[67..]].concat());
        let off_curve = URL_SAFE_NO_PAD.encode([0x01u8; 66]);
        let text = format!(
            r#"{{"keys":[{},{},{},{},{},{},{}]}}"#,
            entry("plain", "", &x, &y),
            entry("es512", r#","alg":"ES512","use":"sig""#, &x, &y),
            entry("es384", r#","alg":"ES384""#, &x, &y),
            entry("enc", r#","use":"enc""#, &x, &y),
            entry("short-x", "", &short_x, &y),
            entry("long-y", "", &x, &long_y),
            entry("off-curve", "", &off_curve, &y),
        );
        let jwks = Jwks::from_json(&text).unwrap();
        assert_eq!(jwks.kids().collect::<Vec<_>>(), ["es512", "plain"]);
        let keys = KeySet::new().with_jwks(jwks);
        assert_eq!(tried(&keys, Alg::Es512, Some("plain"), 0), Ok(1));
        assert_eq!(tried(&keys, Alg::Es512, Some("es512"), 0), Ok(1));
        assert_eq!(
            tried(&keys, Algorithm::ES384, Some("es512"), 0),
            Err(TokenError::NoKey)
        );
        assert_eq!(
            tried(&keys, Alg::Es512, Some("es384"), 0),
            Err(TokenError::NoKey)
        );
    }

    #[test]
    fn es512_is_a_supported_algorithm_name() {
        assert_eq!(supported_algorithm("ES512"), Ok(Alg::Es512));
        assert_eq!(supported_algorithm("ES384"), Ok(Alg::Jwt(Algorithm::ES384)));
        assert_eq!(
            supported_algorithm("es512"),
            Err(TokenError::UnsupportedAlgorithm("es512".to_owned()))
        );
        assert_eq!(
            supported_algorithm("PS512"),
            Err(TokenError::UnsupportedAlgorithm("PS512".to_owned()))
        );
    }

    #[test]
    fn debug_redacts_the_hmac_secret() {
        let keys = KeySet::new().with_hmac_secret("topsecret").unwrap();
        let text = format!("{keys:?}");
        assert!(text.contains("***"), "{text}");
        assert!(!text.contains("topsecret"), "{text}");
    }
}
