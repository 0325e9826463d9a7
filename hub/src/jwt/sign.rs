//! HS256 signing, for the `gentoken` / `gensubtoken` commands and for tests.

use jsonwebtoken::{Algorithm, EncodingKey, Header};

/// Why a token could not be signed.
#[derive(Debug, thiserror::Error)]
pub enum SignError {
    /// JWT claims must be a JSON object.
    #[error("token claims must be a JSON object")]
    NotAnObject,
    /// The HMAC secret is empty.
    #[error("HMAC secret key is empty")]
    EmptySecret,
    /// The JWT library failed to encode or sign.
    #[error("signing failed: {0}")]
    Jwt(#[from] jsonwebtoken::errors::Error),
}

/// Signs `claims` (a JSON object) with HS256 and `secret` (its bytes, as
/// `client.token.hmac_secret_key` is used). The header is `{"typ":"JWT","alg":"HS256"}`.
pub fn sign_hs256(claims: &serde_json::Value, secret: &str) -> Result<String, SignError> {
    if !claims.is_object() {
        return Err(SignError::NotAnObject);
    }
    if secret.is_empty() {
        return Err(SignError::EmptySecret);
    }
    let key = EncodingKey::from_secret(secret.as_bytes());
    Ok(jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        claims,
        &key,
    )?)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::jwt::{ClaimRules, KeySet, TokenError, peek_header, verify_connection_token};

    #[test]
    fn signed_token_verifies_with_the_same_secret() {
        let token = sign_hs256(
            &json!({"sub": "42", "exp": 2000, "info": {"a": 1}}),
            "s3cret",
        )
        .unwrap();
        let header = peek_header(&token).unwrap();
        assert_eq!(header.alg, "HS256");
        assert_eq!(header.kid, None);
        let keys = KeySet::new().with_hmac_secret("s3cret").unwrap();
        let verified =
            verify_connection_token(&token, &keys, &ClaimRules::default(), 1000).unwrap();
        assert_eq!(verified.user_id, "42");
        assert_eq!(verified.expires_at, Some(2000));
        assert_eq!(verified.info.as_deref(), Some(&br#"{"a":1}"#[..]));

        let other = KeySet::new().with_hmac_secret("other").unwrap();
        let err = verify_connection_token(&token, &other, &ClaimRules::default(), 1000);
        assert_eq!(err.unwrap_err(), TokenError::BadSignature);
    }

    #[test]
    fn refuses_non_objects_and_empty_secrets() {
        assert!(matches!(
            sign_hs256(&json!([1, 2]), "s"),
            Err(SignError::NotAnObject)
        ));
        assert!(matches!(
            sign_hs256(&json!("x"), "s"),
            Err(SignError::NotAnObject)
        ));
        assert!(matches!(
            sign_hs256(&json!({}), ""),
            Err(SignError::EmptySecret)
        ));
        assert_eq!(
            SignError::NotAnObject.to_string(),
            "token claims must be a JSON object"
        );
    }
}
