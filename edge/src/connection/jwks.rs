//! Keys for tokens verified with a JWK set (`jwks_public_endpoint`, docs/protocol.md §5.1): the hub
//! resolves the token to (endpoint, `kid`) without trusting it, the core fetches that key (it
//! owns the cache), and the session verifies with it through its `*_with_keys` methods.
//!
//! A set without the token's `kid` is given as an empty set, so the session refuses the token
//! as it refuses any unverifiable one (3500 / 103). A fetch that fails is error 100
//! (temporary: the SDK retries), since the token may well be valid.

use super::Connection;
use spindle_hub::jwt::{Jwks, JwksEndpoint, KeySet, TokenError};
use spindle_hub::outcome::Failure;
use spindle_mesh::mesh;

/// Why no keys could be given.
pub(super) enum KeysError {
    /// The token cannot name a key (malformed, `alg: none`, no `kid`, claims naming no
    /// configured endpoint): refused like any invalid token of its kind.
    Token(TokenError),
    /// The core could not fetch the set.
    Unavailable,
}

impl KeysError {
    /// The failure for a token of the kind `as_token` wraps (e.g. `Failure::ConnectionToken`).
    pub(super) fn failure(self, as_token: fn(TokenError) -> Failure) -> Failure {
        match self {
            KeysError::Token(error) => as_token(error),
            KeysError::Unavailable => Failure::Internal,
        }
    }
}

impl Connection {
    /// The fetched keys for `token` when `jwks` is configured for its kind; `None` when not
    /// (or for an empty token): the session then uses its static keys.
    pub(super) async fn token_keys(
        &self,
        jwks: Option<&JwksEndpoint>,
        token: &str,
    ) -> Result<Option<KeySet>, KeysError> {
        let Some(jwks) = jwks.filter(|_| !token.is_empty()) else {
            return Ok(None);
        };
        let wanted = jwks.resolve(token).map_err(KeysError::Token)?;
        let request = mesh::request::Kind::Jwks(mesh::JwksRequest {
            endpoint: wanted.endpoint,
            kid: wanted.kid,
        });
        let response = self
            .shared
            .link()
            .request(Some(request), crate::deadline::JWKS)
            .await
            .map_err(|error| {
                tracing::warn!(client = %self.client, %error, "JWKS request not answered");
                KeysError::Unavailable
            })?;
        let Some(mesh::response::Kind::Jwks(result)) = response.kind else {
            tracing::warn!(client = %self.client, error = ?response.error, "JWK set not available");
            return Err(KeysError::Unavailable);
        };
        let set = if result.jwk.is_empty() {
            Jwks::default()
        } else {
            Jwks::from_json(&format!(r#"{{"keys":[{}]}}"#, result.jwk)).map_err(|error| {
                tracing::warn!(%error, "the core sent an unusable JWK");
                KeysError::Unavailable
            })?
        };
        Ok(Some(KeySet::new().with_jwks(set)))
    }
}
