//! Connection and subscription tokens (JWT): verification and claim models.
//!
//! Owns: the verification keys built from configured material ([`KeySet`], [`Jwks`]), the claim
//! rules of `client.token` ([`ClaimRules`]), the typed results of a verified token
//! ([`ConnectionToken`], [`SubscriptionToken`]) and HS256 signing for the `gentoken` /
//! `gensubtoken` commands and tests ([`sign_hs256`]).
//!
//! **The signature is verified before any claim is read.** [`verify_connection_token`] and
//! [`verify_subscription_token`] parse only the header (`alg`, `kid`) to pick a key, verify the
//! signature over the first two segments with that key, and only then decode the payload. The
//! `jsonwebtoken` crate is used for the signature primitive alone (and the `p521` crate for
//! ES512, which `jsonwebtoken` lacks); all claim checks (`exp`, `nbf`, `aud`, `iss`) are ours,
//! so none of its own validation (or clock) is involved.
//!
//! **No I/O, no clock.** Verification is a pure function of (token text, [`KeySet`],
//! [`ClaimRules`], `now` in unix seconds). A JWK set is given as text to [`Jwks::from_json`];
//! fetching it over HTTP and caching it by (endpoint, kid) is the core's job. The edge calls
//! [`JwksEndpoint::resolve`] to learn which JWK set (endpoint, `kid`) a token needs: it reads
//! the header and, for a templated endpoint, selects one of the configured values by the
//! unverified `iss` / `aud` (see the `jwks_endpoint` module for why that is safe).
//!
//! Errors are [`TokenError`] values and never protocol codes. The session maps them in one
//! place:
//!
//! | where | [`TokenError::Expired`] | any other [`TokenError`] |
//! |---|---|---|
//! | connect | error 109 (token expired) | disconnect 3500 (invalid token) |
//! | connection `refresh` | disconnect 3005 (connection expired) | disconnect 3500 |
//! | subscribe | error 109 | error 103 (permission denied) |
//! | `sub_refresh` | error 109 (deliberate, see docs/protocol.md §5.4) | disconnect 3500 |
//!
//! Layout:
//! - `keys`: [`KeySet`], [`Jwks`], [`KeyError`] — which key verifies which `alg`.
//! - `jwks_endpoint`: [`JwksEndpoint`] — `jwks_public_endpoint`, its templates and safety check.
//! - `rules`: [`ClaimRules`] — audience / issuer / user id claim / insecure skip switch.
//! - `claims`: [`ConnectionToken`], [`SubscriptionToken`], [`SubscribeOptions`], [`Override`].
//! - `verify`: the two verify functions, [`peek_header`], [`TokenError`].
//! - `sign`: [`sign_hs256`], [`SignError`].

mod claims;
mod jwks_endpoint;
mod keys;
mod rules;
mod sign;
mod verify;

#[cfg(test)]
pub(crate) mod test_support;

pub use claims::{ConnectionToken, Override, SubscribeOptions, SubscriptionToken};
pub use jwks_endpoint::{JwksEndpoint, JwksEndpointError, JwksKeyRequest};
pub use keys::{Jwks, KeyError, KeySet};
pub use rules::ClaimRules;
pub use sign::{SignError, sign_hs256};
pub use verify::{
    TokenError, TokenHeader, peek_header, verify_connection_token, verify_subscription_token,
};
