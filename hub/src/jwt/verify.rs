//! Token verification: header → key → signature → claims → time → audience / issuer.
//!
//! The returned [`TokenError`] is not a protocol code; the session maps it (see the table in
//! the [`jwt`](super) module doc: connect invalid → disconnect 3500, expired → error 109;
//! subscribe invalid → error 103, expired → error 109).

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;

use super::claims::{self, ClaimMap, ConnectionToken, SubscriptionToken};
use super::keys::{KeySet, supported_algorithm};
use super::rules::ClaimRules;

/// Why a token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Not three base64url segments, or a header / payload that is not a JSON object.
    #[error("malformed token")]
    Malformed,
    /// The header's `alg` is not one we verify: `none` (in any letter case), `PS*`, or unknown.
    /// Holds the `alg` value (at most 32 characters).
    #[error("unsupported token algorithm {0:?}")]
    UnsupportedAlgorithm(String),
    /// No configured key verifies this `alg` (and `kid`, with a JWK set).
    #[error("no key configured for the token's algorithm or key id")]
    NoKey,
    /// The signature does not verify with any candidate key.
    #[error("token signature is invalid")]
    BadSignature,
    /// `exp` is not after `now`, or `nbf` is after `now`.
    #[error("token expired or not yet valid")]
    Expired,
    /// A claim has the wrong type or fails a rule (audience, issuer, `channel`, base64).
    #[error("invalid token claims: {0}")]
    InvalidClaims(String),
}

/// The JOSE header fields that select a key. Read without verification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenHeader {
    /// `alg` as written.
    pub alg: String,
    /// `kid`, if any.
    pub kid: Option<String>,
}

#[derive(Deserialize)]
struct RawHeader {
    alg: String,
    #[serde(default)]
    kid: Option<String>,
}

/// The three segments of a compact JWS.
struct Segments<'a> {
    header: &'a str,
    payload: &'a str,
    signature: &'a str,
    /// `header.payload`: the bytes the signature covers.
    signed: &'a str,
}

fn split(token: &str) -> Result<Segments<'_>, TokenError> {
    let mut parts = token.split('.');
    let (Some(header), Some(payload), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(TokenError::Malformed);
    };
    let signed = token
        .get(..header.len() + 1 + payload.len())
        .ok_or(TokenError::Malformed)?;
    Ok(Segments {
        header,
        payload,
        signature,
        signed,
    })
}

fn decode_segment(segment: &str) -> Result<Vec<u8>, TokenError> {
    URL_SAFE_NO_PAD
        .decode(segment)
        .map_err(|_| TokenError::Malformed)
}

/// Reads a token's header (`alg`, `kid`) **without verifying anything**, so the core can pick
/// which JWK set to fetch. Claims are not looked at.
pub fn peek_header(token: &str) -> Result<TokenHeader, TokenError> {
    read_header(&split(token)?)
}

/// The payload JSON text **without verifying anything**: only for choosing a templated JWKS
/// endpoint ([`JwksEndpoint::resolve`](super::JwksEndpoint::resolve)), whose values are then
/// restricted to the configured ones.
pub(crate) fn decode_payload_unverified(token: &str) -> Result<String, TokenError> {
    String::from_utf8(decode_segment(split(token)?.payload)?).map_err(|_| TokenError::Malformed)
}

fn read_header(segments: &Segments<'_>) -> Result<TokenHeader, TokenError> {
    let raw: RawHeader = serde_json::from_slice(&decode_segment(segments.header)?)
        .map_err(|_| TokenError::Malformed)?;
    Ok(TokenHeader {
        alg: raw.alg,
        kid: raw.kid,
    })
}

/// Verifies the signature and returns the payload JSON text. No claim is read before the
/// signature verifies (or is skipped by `rules.skip_signature_verify`).
fn verified_payload(
    token: &str,
    keys: &KeySet,
    rules: &ClaimRules,
    now_unix: i64,
) -> Result<String, TokenError> {
    let segments = split(token)?;
    let header = read_header(&segments)?;
    if header.alg.eq_ignore_ascii_case("none") {
        return Err(TokenError::UnsupportedAlgorithm(header.alg));
    }
    if !rules.skip_signature_verify {
        let alg = supported_algorithm(&header.alg)?;
        let candidates = keys.candidates(alg, header.kid.as_deref(), now_unix)?;
        decode_segment(segments.signature)?;
        let verified = candidates
            .into_iter()
            .flatten()
            .any(|key| key.verifies(alg, segments.signed.as_bytes(), segments.signature));
        if !verified {
            return Err(TokenError::BadSignature);
        }
    }
    String::from_utf8(decode_segment(segments.payload)?).map_err(|_| TokenError::Malformed)
}

/// The checks shared by both token kinds: `exp` / `nbf` against `now`, then `aud` / `iss`.
fn check_registered_claims(
    claims: &ClaimMap<'_>,
    rules: &ClaimRules,
    now_unix: i64,
) -> Result<(), TokenError> {
    let exp = claims.numeric_date("exp")?;
    let nbf = claims.numeric_date("nbf")?;
    if exp.is_some_and(|exp| exp <= now_unix) || nbf.is_some_and(|nbf| nbf > now_unix) {
        return Err(TokenError::Expired);
    }
    rules.check_audience(claims.audience()?.as_ref())?;
    rules.check_issuer(claims.string("iss")?.as_deref())
}

/// Verifies a connection token at time `now_unix` (unix seconds).
///
/// Order: header → key for (`alg`, `kid`) → signature → payload → `exp` / `nbf` (no leeway:
/// expired when `exp <= now`, not yet valid when `nbf > now`) → `aud` / `iss` → claim types.
/// A `channel` claim makes a connection token invalid.
pub fn verify_connection_token(
    token: &str,
    keys: &KeySet,
    rules: &ClaimRules,
    now_unix: i64,
) -> Result<ConnectionToken, TokenError> {
    let payload = verified_payload(token, keys, rules, now_unix)?;
    let claims = ClaimMap::parse(&payload)?;
    check_registered_claims(&claims, rules, now_unix)?;
    claims::connection_token(&claims, rules)
}

/// Verifies a subscription token at time `now_unix` (unix seconds); same order as
/// [`verify_connection_token`]. The `channel` claim is required and non-empty.
pub fn verify_subscription_token(
    token: &str,
    keys: &KeySet,
    rules: &ClaimRules,
    now_unix: i64,
) -> Result<SubscriptionToken, TokenError> {
    let payload = verified_payload(token, keys, rules, now_unix)?;
    let claims = ClaimMap::parse(&payload)?;
    check_registered_claims(&claims, rules, now_unix)?;
    claims::subscription_token(&claims, rules)
}

#[cfg(test)]
mod tests;
