//! End-to-end verification tests: tokens signed with the checked-in test keys.

use jsonwebtoken::Algorithm;
use proptest::prelude::*;
use regex::Regex;
use serde_json::{Value, json};

use super::*;
use crate::jwt::test_support::*;
use crate::jwt::{Jwks, Override, SubscribeOptions};

const SECRET: &str = "test-hmac-secret";

fn hmac_keys() -> KeySet {
    KeySet::new().with_hmac_secret(SECRET).unwrap()
}

fn hs256(claims: &Value) -> String {
    sign_hmac(Algorithm::HS256, SECRET.as_bytes(), claims)
}

fn connect(token: &str, keys: &KeySet) -> Result<ConnectionToken, TokenError> {
    verify_connection_token(token, keys, &ClaimRules::default(), NOW)
}

fn subscribe(token: &str, keys: &KeySet) -> Result<SubscriptionToken, TokenError> {
    verify_subscription_token(token, keys, &ClaimRules::default(), NOW)
}

fn user_of(result: Result<ConnectionToken, TokenError>) -> Result<String, TokenError> {
    result.map(|t| t.user_id)
}

// ---- algorithms ----

#[test]
fn every_hmac_algorithm_verifies() {
    for alg in [Algorithm::HS256, Algorithm::HS384, Algorithm::HS512] {
        let token = sign_hmac(
            alg,
            SECRET.as_bytes(),
            &json!({"sub": "u1", "exp": NOW + 60}),
        );
        let verified = connect(&token, &hmac_keys()).unwrap();
        assert_eq!(verified.user_id, "u1", "{alg:?}");
        assert_eq!(verified.expires_at, Some(NOW + 60), "{alg:?}");
    }
}

#[test]
fn every_rsa_algorithm_verifies_with_pem_key() {
    let keys = KeySet::new().with_rsa_public_key_pem(RSA_PUBLIC).unwrap();
    for alg in [Algorithm::RS256, Algorithm::RS384, Algorithm::RS512] {
        let token = sign(alg, &rsa_signer(), None, &json!({"sub": "rsa-user"}));
        assert_eq!(
            user_of(connect(&token, &keys)),
            Ok("rsa-user".to_owned()),
            "{alg:?}"
        );
    }
}

#[test]
fn ecdsa_algorithms_verify_with_pem_keys() {
    let p256 = KeySet::new()
        .with_ecdsa_public_key_pem(EC256_PUBLIC)
        .unwrap();
    let p384 = KeySet::new()
        .with_ecdsa_public_key_pem(EC384_PUBLIC)
        .unwrap();
    let es256 = sign(
        Algorithm::ES256,
        &ec256_signer(),
        None,
        &json!({"sub": "ec"}),
    );
    let es384 = sign(
        Algorithm::ES384,
        &ec384_signer(),
        None,
        &json!({"sub": "ec"}),
    );
    assert_eq!(user_of(connect(&es256, &p256)), Ok("ec".to_owned()));
    assert_eq!(user_of(connect(&es384, &p384)), Ok("ec".to_owned()));
    // The curve fixes the algorithm.
    assert_eq!(user_of(connect(&es384, &p256)), Err(TokenError::NoKey));
    assert_eq!(user_of(connect(&es256, &p384)), Err(TokenError::NoKey));
}

#[test]
fn jwks_verifies_each_key_type_by_kid() {
    let keys = KeySet::new().with_jwks(Jwks::from_json(JWKS).unwrap());
    let claims = json!({"sub": "jwks-user"});
    let cases = [
        sign(Algorithm::RS256, &rsa_signer(), Some("rsa-1"), &claims),
        sign(Algorithm::RS384, &rsa_signer(), Some("rsa-1"), &claims),
        sign(
            Algorithm::RS512,
            &rsa_signer(),
            Some("rsa-rs512-only"),
            &claims,
        ),
        sign(Algorithm::ES256, &ec256_signer(), Some("ec-256"), &claims),
        sign(Algorithm::ES384, &ec384_signer(), Some("ec-384"), &claims),
        sign(Algorithm::EdDSA, &ed25519_signer(), Some("ed-1"), &claims),
        sign_es512(&ec521_signer(), Some("ec-521"), &claims),
    ];
    for token in &cases {
        assert_eq!(
            user_of(connect(token, &keys)),
            Ok("jwks-user".to_owned()),
            "{token}"
        );
    }
}

#[test]
fn jwks_unknown_missing_or_mismatched_kid_is_refused() {
    let keys = KeySet::new().with_jwks(Jwks::from_json(JWKS).unwrap());
    let claims = json!({"sub": "u"});
    let unknown = sign(Algorithm::RS256, &rsa_signer(), Some("nope"), &claims);
    let missing = sign(Algorithm::RS256, &rsa_signer(), None, &claims);
    let narrowed = sign(
        Algorithm::RS256,
        &rsa_signer(),
        Some("rsa-rs512-only"),
        &claims,
    );
    let skipped = sign(Algorithm::RS256, &rsa_signer(), Some("rsa-enc"), &claims);
    let wrong_type = sign(Algorithm::RS256, &rsa_signer(), Some("ec-256"), &claims);
    for token in [unknown, missing, narrowed, skipped, wrong_type] {
        assert_eq!(user_of(connect(&token, &keys)), Err(TokenError::NoKey));
    }
    // The kid names the Ed25519 key but the token was signed by the RSA key.
    let mut forged = sign(Algorithm::EdDSA, &ed25519_signer(), Some("ed-1"), &claims);
    let rsa_sig = sign(Algorithm::RS256, &rsa_signer(), None, &claims);
    forged.truncate(forged.rfind('.').unwrap() + 1);
    forged.push_str(&rsa_sig[rsa_sig.rfind('.').unwrap() + 1..]);
    assert_eq!(
        user_of(connect(&forged, &keys)),
        Err(TokenError::BadSignature)
    );
}

#[test]
fn es512_verifies_with_pem_key() {
    let keys = KeySet::new()
        .with_ecdsa_public_key_pem(EC521_PUBLIC)
        .unwrap();
    let token = sign_es512(
        &ec521_signer(),
        None,
        &json!({"sub": "p521-user", "exp": NOW + 60}),
    );
    assert_eq!(
        peek_header(&token),
        Ok(TokenHeader {
            alg: "ES512".to_owned(),
            kid: None
        })
    );
    let signature = token.rsplit_once('.').unwrap().1;
    assert_eq!(signature.len(), 176, "132 bytes in base64url");
    let verified = connect(&token, &keys).unwrap();
    assert_eq!(verified.user_id, "p521-user");
    assert_eq!(verified.expires_at, Some(NOW + 60));

    let sub = sign_es512(
        &ec521_signer(),
        None,
        &json!({"sub": "p521-user", "channel": "p521:room"}),
    );
    assert_eq!(
        subscribe(&sub, &keys).map(|t| t.channel),
        Ok("p521:room".to_owned())
    );
    // Claims are still checked after the signature.
    let expired = sign_es512(&ec521_signer(), None, &json!({"exp": NOW}));
    assert_eq!(user_of(connect(&expired, &keys)), Err(TokenError::Expired));
}

#[test]
fn es512_verifies_with_jwk_by_kid() {
    let keys = KeySet::new().with_jwks(Jwks::from_json(JWKS).unwrap());
    let claims = json!({"sub": "jwk-p521"});
    let token = sign_es512(&ec521_signer(), Some("ec-521"), &claims);
    assert_eq!(user_of(connect(&token, &keys)), Ok("jwk-p521".to_owned()));
    // The kid selects the key: another curve's kid, a skipped entry, none at all.
    for kid in [Some("ec-384"), Some("ec-521-stripped"), Some("rsa-1"), None] {
        let token = sign_es512(&ec521_signer(), kid, &claims);
        assert_eq!(
            user_of(connect(&token, &keys)),
            Err(TokenError::NoKey),
            "{kid:?}"
        );
    }
    // An ES384 token naming the P-521 key is refused before its signature is looked at.
    let es384 = sign(Algorithm::ES384, &ec384_signer(), Some("ec-521"), &claims);
    assert_eq!(user_of(connect(&es384, &keys)), Err(TokenError::NoKey));
}

#[test]
fn es512_signer_is_deterministic_rfc6979() {
    // RFC 6979 A.2.7: P-521, SHA-512, message "sample".
    let x = hex(concat!(
        "00FAD06DAA62BA3B25D2FB40133DA757205DE67F5BB0018FEE8C86E1B68C7E75CAA8",
        "96EB32F1F47C70855836A6D16FCC1466F6D8FBEC67DB89EC0C08B0E996B83538"
    ));
    let key = p521::ecdsa::SigningKey::from_slice(&x).unwrap();
    let signature = es512_signature(&key, b"sample");
    assert_eq!(
        signature.to_bytes().to_vec(),
        hex(concat!(
            "00C328FAFCBD79DD77850370C46325D987CB525569FB63C5D3BC53950E6D4C5F174E",
            "25A1EE9017B5D450606ADD152B534931D7D4E8455CC91F9B15BF05EC36E377FA",
            "00617CCE7CF5064806C467F678D3B4080D6F1CC50AF26CA209417308281B68AF2826",
            "23EAA63E5B5C0723D8B8C37FF0777B1A20F8CCB1DCCC43997F1EE0E44DA4A67A"
        ))
    );
    // Same key and claims, same token.
    let claims = json!({"sub": "u"});
    assert_eq!(
        sign_es512(&ec521_signer(), Some("ec-521"), &claims),
        sign_es512(&ec521_signer(), Some("ec-521"), &claims)
    );
}

#[test]
fn es512_wrong_key_or_tampered_token_is_refused() {
    let keys = KeySet::new()
        .with_ecdsa_public_key_pem(EC521_PUBLIC)
        .unwrap();
    let other = KeySet::new()
        .with_ecdsa_public_key_pem(EC521_OTHER_PUBLIC)
        .unwrap();
    let token = sign_es512(&ec521_signer(), None, &json!({"sub": "alice"}));
    assert_eq!(
        user_of(connect(&token, &other)),
        Err(TokenError::BadSignature)
    );

    let mut parts: Vec<&str> = token.split('.').collect();
    let forged_payload = b64(br#"{"sub":"admin"}"#);
    parts[1] = &forged_payload;
    assert_eq!(
        user_of(connect(&parts.join("."), &keys)),
        Err(TokenError::BadSignature)
    );

    let (head, sig) = token.rsplit_once('.').unwrap();
    let sig_bytes = URL_SAFE_NO_PAD.decode(sig).unwrap();
    for index in [10, 65, 70, 131] {
        let mut flipped = sig_bytes.clone();
        flipped[index] ^= 1;
        assert_eq!(
            user_of(connect(&format!("{head}.{}", b64(&flipped)), &keys)),
            Err(TokenError::BadSignature),
            "byte {index}"
        );
    }
    // r and s swapped.
    let swapped = [&sig_bytes[66..], &sig_bytes[..66]].concat();
    assert_eq!(
        user_of(connect(&format!("{head}.{}", b64(&swapped)), &keys)),
        Err(TokenError::BadSignature)
    );
}

#[test]
fn es512_signature_must_be_fixed_size_r_s() {
    let keys = KeySet::new()
        .with_ecdsa_public_key_pem(EC521_PUBLIC)
        .unwrap();
    let token = sign_es512(&ec521_signer(), None, &json!({"sub": "u"}));
    let (head, sig) = token.rsplit_once('.').unwrap();
    let r_s = URL_SAFE_NO_PAD.decode(sig).unwrap();
    assert_eq!(r_s.len(), 132);
    let with = |signature: &[u8]| user_of(connect(&format!("{head}.{}", b64(signature)), &keys));
    assert_eq!(with(&r_s), Ok("u".to_owned()));

    // The same signature ASN.1 DER encoded (as OpenSSL emits it) is not JWS.
    let signature = p521::ecdsa::Signature::from_slice(&r_s).unwrap();
    let der = signature.to_der();
    assert_eq!(der.as_bytes()[0], 0x30);
    assert_eq!(der.as_bytes().len(), 138);
    assert_eq!(
        p521::ecdsa::Signature::from_der(der.as_bytes()).unwrap(),
        signature
    );
    assert_eq!(with(der.as_bytes()), Err(TokenError::BadSignature));

    // Wrong sizes: truncated, padded, P-384 / P-256 sized, empty.
    for signature in [
        &r_s[..131],
        &[&r_s[..], &[0]].concat()[..],
        &r_s[..96],
        &r_s[..64],
        &[][..],
    ] {
        assert_eq!(
            with(signature),
            Err(TokenError::BadSignature),
            "{} bytes",
            signature.len()
        );
    }
    // The leading zero byte of r is part of the fixed size, not optional.
    assert_eq!((r_s[0], r_s[66]), (0x00, 0x01));
    assert_eq!(with(&r_s[1..]), Err(TokenError::BadSignature));
    // r or s out of 1..n.
    let zero_r = [&[0u8; 66][..], &r_s[66..]].concat();
    assert_eq!(with(&zero_r), Err(TokenError::BadSignature));
    let huge_s = [&r_s[..66], &[0xff; 66][..]].concat();
    assert_eq!(with(&huge_s), Err(TokenError::BadSignature));
    // Not base64url at all.
    assert_eq!(
        user_of(connect(&format!("{head}.{}+/", &sig[..20]), &keys)),
        Err(TokenError::Malformed)
    );
}

#[test]
fn es512_high_s_twin_is_accepted() {
    // ECDSA's (r, n - s) verifies too; RFC 7518 does not require low s, nor does Centrifugo.
    let keys = KeySet::new()
        .with_ecdsa_public_key_pem(EC521_PUBLIC)
        .unwrap();
    let token = sign_es512(&ec521_signer(), None, &json!({"sub": "twin"}));
    let (head, sig) = token.rsplit_once('.').unwrap();
    let signature =
        p521::ecdsa::Signature::from_slice(&URL_SAFE_NO_PAD.decode(sig).unwrap()).unwrap();
    let (r, s) = signature.split_scalars();
    let twin = p521::ecdsa::Signature::from_scalars(r, -*s).unwrap();
    assert_ne!(twin, signature);
    let twin_token = format!("{head}.{}", b64(&twin.to_bytes()));
    assert_eq!(user_of(connect(&twin_token, &keys)), Ok("twin".to_owned()));
}

#[test]
fn es512_needs_a_p521_key() {
    let token = sign_es512(&ec521_signer(), None, &json!({"sub": "u"}));
    let p256 = KeySet::new()
        .with_ecdsa_public_key_pem(EC256_PUBLIC)
        .unwrap();
    assert_eq!(user_of(connect(&token, &p256)), Err(TokenError::NoKey));
    let p384 = KeySet::new()
        .with_ecdsa_public_key_pem(EC384_PUBLIC)
        .unwrap();
    assert_eq!(user_of(connect(&token, &p384)), Err(TokenError::NoKey));
    let others = hmac_keys().with_rsa_public_key_pem(RSA_PUBLIC).unwrap();
    assert_eq!(user_of(connect(&token, &others)), Err(TokenError::NoKey));
    assert_eq!(
        user_of(connect(&token, &KeySet::new())),
        Err(TokenError::NoKey)
    );
    // The P-521 key verifies no ES256 token either.
    let p521 = KeySet::new()
        .with_ecdsa_public_key_pem(EC521_PUBLIC)
        .unwrap();
    let es256 = sign(
        Algorithm::ES256,
        &ec256_signer(),
        None,
        &json!({"sub": "u"}),
    );
    assert_eq!(user_of(connect(&es256, &p521)), Err(TokenError::NoKey));
}

#[test]
fn ps_and_other_algorithms_are_unsupported() {
    let keys = hmac_keys();
    for alg in ["PS256", "PS512", "HS1024", "RSA-OAEP", "es512", ""] {
        let token = raw_token(
            &json!({"alg": alg, "typ": "JWT"}),
            &json!({"sub": "u"}),
            "c2ln",
        );
        assert_eq!(
            user_of(connect(&token, &keys)),
            Err(TokenError::UnsupportedAlgorithm(alg.to_owned()))
        );
    }
    let long = "X".repeat(100);
    let token = raw_token(&json!({"alg": long}), &json!({}), "c2ln");
    assert_eq!(
        user_of(connect(&token, &keys)),
        Err(TokenError::UnsupportedAlgorithm("X".repeat(32)))
    );
    assert_eq!(
        TokenError::UnsupportedAlgorithm("PS256".to_owned()).to_string(),
        "unsupported token algorithm \"PS256\""
    );
}

// ---- forgery ----

#[test]
fn alg_none_is_always_refused() {
    let insecure = ClaimRules {
        skip_signature_verify: true,
        ..ClaimRules::default()
    };
    for alg in ["none", "None", "NONE"] {
        let token = raw_token(&json!({"alg": alg}), &json!({"sub": "admin"}), "");
        let expected = Err(TokenError::UnsupportedAlgorithm(alg.to_owned()));
        assert_eq!(user_of(connect(&token, &hmac_keys())), expected);
        assert_eq!(
            user_of(verify_connection_token(
                &token,
                &hmac_keys(),
                &insecure,
                NOW
            )),
            expected
        );
    }
}

#[test]
fn wrong_key_is_refused() {
    let claims = json!({"sub": "u"});
    let rsa = sign(Algorithm::RS256, &rsa_signer(), None, &claims);
    let other_rsa = KeySet::new()
        .with_rsa_public_key_pem(RSA_OTHER_PUBLIC)
        .unwrap();
    assert_eq!(
        user_of(connect(&rsa, &other_rsa)),
        Err(TokenError::BadSignature)
    );

    let hs = sign_hmac(Algorithm::HS256, b"another-secret", &claims);
    assert_eq!(
        user_of(connect(&hs, &hmac_keys())),
        Err(TokenError::BadSignature)
    );

    let ec = sign(Algorithm::ES256, &ec256_signer(), None, &claims);
    let p256 = KeySet::new()
        .with_ecdsa_public_key_pem(EC256_PUBLIC)
        .unwrap();
    let (head, sig) = ec.rsplit_once('.').unwrap();
    let mut sig_bytes = base64::Engine::decode(&URL_SAFE_NO_PAD, sig).unwrap();
    sig_bytes[10] ^= 1;
    let flipped = format!("{head}.{}", b64(&sig_bytes));
    assert_eq!(
        user_of(connect(&flipped, &p256)),
        Err(TokenError::BadSignature)
    );
}

#[test]
fn tampered_payload_is_refused() {
    let token = hs256(&json!({"sub": "alice"}));
    let mut parts: Vec<&str> = token.split('.').collect();
    let forged_payload = b64(br#"{"sub":"admin"}"#);
    parts[1] = &forged_payload;
    let forged = parts.join(".");
    assert_eq!(
        user_of(connect(&forged, &hmac_keys())),
        Err(TokenError::BadSignature)
    );

    let rsa = sign(
        Algorithm::RS256,
        &rsa_signer(),
        None,
        &json!({"sub": "alice"}),
    );
    let keys = KeySet::new().with_rsa_public_key_pem(RSA_PUBLIC).unwrap();
    let mut parts: Vec<&str> = rsa.split('.').collect();
    parts[1] = &forged_payload;
    assert_eq!(
        user_of(connect(&parts.join("."), &keys)),
        Err(TokenError::BadSignature)
    );
}

#[test]
fn hmac_signed_with_rsa_public_key_is_refused() {
    // The classic confusion: use the (public) RSA PEM text as an HMAC secret.
    let token = sign_hmac(
        Algorithm::HS256,
        RSA_PUBLIC.as_bytes(),
        &json!({"sub": "admin"}),
    );
    let rsa_only = KeySet::new().with_rsa_public_key_pem(RSA_PUBLIC).unwrap();
    assert_eq!(user_of(connect(&token, &rsa_only)), Err(TokenError::NoKey));

    // Both configured: HS256 uses only the HMAC secret, which differs.
    let both = hmac_keys().with_rsa_public_key_pem(RSA_PUBLIC).unwrap();
    assert_eq!(
        user_of(connect(&token, &both)),
        Err(TokenError::BadSignature)
    );

    // An RS256 header over an HMAC signature does not verify with the RSA key.
    let hmac_sig = sign_hmac(
        Algorithm::HS256,
        SECRET.as_bytes(),
        &json!({"sub": "admin"}),
    );
    let sig = hmac_sig.rsplit_once('.').unwrap().1;
    let relabelled = raw_token(
        &json!({"alg": "RS256", "typ": "JWT"}),
        &json!({"sub": "admin"}),
        sig,
    );
    assert_eq!(
        user_of(connect(&relabelled, &both)),
        Err(TokenError::BadSignature)
    );
}

#[test]
fn no_keys_means_no_key() {
    let token = hs256(&json!({"sub": "u"}));
    assert_eq!(
        user_of(connect(&token, &KeySet::new())),
        Err(TokenError::NoKey)
    );
}

#[test]
fn skip_signature_verify_accepts_any_signature_but_checks_claims() {
    let insecure = ClaimRules {
        skip_signature_verify: true,
        ..ClaimRules::default()
    };
    let token = raw_token(
        &json!({"alg": "RS256"}),
        &json!({"sub": "tester"}),
        "garbage!!",
    );
    let verified = verify_connection_token(&token, &KeySet::new(), &insecure, NOW).unwrap();
    assert_eq!(verified.user_id, "tester");
    let expired = raw_token(&json!({"alg": "HS256"}), &json!({"exp": NOW - 1}), "");
    assert_eq!(
        user_of(verify_connection_token(
            &expired,
            &KeySet::new(),
            &insecure,
            NOW
        )),
        Err(TokenError::Expired)
    );
}

// ---- HMAC rotation ----

#[test]
fn previous_hmac_secret_until_valid_until() {
    let keys = KeySet::new()
        .with_hmac_secret("new-secret")
        .unwrap()
        .with_hmac_previous_secret("old-secret", NOW + 10)
        .unwrap();
    let old = sign_hmac(Algorithm::HS256, b"old-secret", &json!({"sub": "u"}));
    let new = sign_hmac(Algorithm::HS384, b"new-secret", &json!({"sub": "u"}));
    let at = |now| {
        user_of(verify_connection_token(
            &old,
            &keys,
            &ClaimRules::default(),
            now,
        ))
    };
    assert_eq!(at(NOW), Ok("u".to_owned()));
    assert_eq!(at(NOW + 9), Ok("u".to_owned()));
    assert_eq!(at(NOW + 10), Err(TokenError::BadSignature));
    assert_eq!(at(NOW + 11), Err(TokenError::BadSignature));
    let current = verify_connection_token(&new, &keys, &ClaimRules::default(), NOW + 100);
    assert_eq!(user_of(current), Ok("u".to_owned()));
}

// ---- time ----

#[test]
fn exp_and_nbf_against_now() {
    let keys = hmac_keys();
    let check = |claims: Value| user_of(connect(&hs256(&claims), &keys));
    assert_eq!(
        check(json!({"sub": "u", "exp": NOW - 1})),
        Err(TokenError::Expired)
    );
    assert_eq!(
        check(json!({"sub": "u", "exp": NOW})),
        Err(TokenError::Expired)
    );
    assert_eq!(
        check(json!({"sub": "u", "exp": NOW + 1})),
        Ok("u".to_owned())
    );
    assert_eq!(
        check(json!({"sub": "u", "nbf": NOW + 1})),
        Err(TokenError::Expired)
    );
    assert_eq!(check(json!({"sub": "u", "nbf": NOW})), Ok("u".to_owned()));
    assert_eq!(
        check(json!({"sub": "u", "exp": 1.5e9})),
        Err(TokenError::Expired)
    );
    assert!(matches!(
        check(json!({"sub": "u", "exp": "tomorrow"})),
        Err(TokenError::InvalidClaims(_))
    ));
    assert!(matches!(
        check(json!({"sub": "u", "nbf": [1]})),
        Err(TokenError::InvalidClaims(_))
    ));
    assert!(matches!(
        check(json!({"sub": "u", "exp": 1e300})),
        Err(TokenError::InvalidClaims(_))
    ));
    // An expired token is reported as expired even when aud would fail too.
    let strict = ClaimRules {
        audience: Some("x".to_owned()),
        ..ClaimRules::default()
    };
    let expired = hs256(&json!({"exp": NOW - 5, "aud": "y"}));
    assert_eq!(
        user_of(verify_connection_token(&expired, &keys, &strict, NOW)),
        Err(TokenError::Expired)
    );
}

#[test]
fn expire_at_overrides_exp_for_lifetime() {
    let keys = hmac_keys();
    let expires = |claims: Value| connect(&hs256(&claims), &keys).map(|t| t.expires_at);
    assert_eq!(expires(json!({"exp": NOW + 60})), Ok(Some(NOW + 60)));
    assert_eq!(
        expires(json!({"exp": NOW as f64 + 60.7})),
        Ok(Some(NOW + 60))
    );
    assert_eq!(expires(json!({"exp": NOW + 60, "expire_at": 0})), Ok(None));
    assert_eq!(expires(json!({"exp": NOW + 60, "expire_at": -3})), Ok(None));
    assert_eq!(
        expires(json!({"exp": NOW + 60, "expire_at": NOW + 3600})),
        Ok(Some(NOW + 3600))
    );
    // expire_at in the past does not fail verification (the session replies 110).
    assert_eq!(expires(json!({"expire_at": NOW - 10})), Ok(Some(NOW - 10)));
    assert_eq!(expires(json!({"sub": "u"})), Ok(None));
    assert_eq!(
        expires(json!({"expire_at": null, "exp": NOW + 5})),
        Ok(Some(NOW + 5))
    );
    assert!(matches!(
        expires(json!({"expire_at": 1.5})),
        Err(TokenError::InvalidClaims(_))
    ));
}

// ---- audience / issuer / user id ----

#[test]
fn audience_rules_end_to_end() {
    let keys = hmac_keys();
    let exact = ClaimRules {
        audience: Some("spindle".to_owned()),
        ..ClaimRules::default()
    };
    let regex = ClaimRules {
        audience_regex: Some(Regex::new("^tenant-[a-z]+$").unwrap()),
        ..ClaimRules::default()
    };
    let check = |rules: &ClaimRules, claims: Value| {
        user_of(verify_connection_token(&hs256(&claims), &keys, rules, NOW))
    };
    assert_eq!(
        check(&exact, json!({"sub": "a", "aud": "spindle"})),
        Ok("a".to_owned())
    );
    assert_eq!(
        check(&exact, json!({"sub": "a", "aud": ["x", "spindle"]})),
        Ok("a".to_owned())
    );
    assert!(matches!(
        check(&exact, json!({"aud": ["x"]})),
        Err(TokenError::InvalidClaims(_))
    ));
    assert!(matches!(
        check(&exact, json!({"sub": "a"})),
        Err(TokenError::InvalidClaims(_))
    ));
    assert!(matches!(
        check(&exact, json!({"aud": 7})),
        Err(TokenError::InvalidClaims(_))
    ));
    assert_eq!(
        check(&regex, json!({"sub": "b", "aud": ["1", "tenant-acme"]})),
        Ok("b".to_owned())
    );
    assert!(matches!(
        check(&regex, json!({"aud": "tenant-42"})),
        Err(TokenError::InvalidClaims(_))
    ));
    // No rule: aud is not checked (but must still be well typed).
    assert_eq!(
        check(
            &ClaimRules::default(),
            json!({"sub": "c", "aud": "anything"})
        ),
        Ok("c".to_owned())
    );
}

#[test]
fn issuer_rules_end_to_end() {
    let keys = hmac_keys();
    let exact = ClaimRules {
        issuer: Some("https://auth.example".to_owned()),
        ..ClaimRules::default()
    };
    let regex = ClaimRules {
        issuer_regex: Some(Regex::new(r"^https://(?P<tenant>\w+)\.auth\.example$").unwrap()),
        ..ClaimRules::default()
    };
    let check = |rules: &ClaimRules, claims: Value| {
        user_of(verify_connection_token(&hs256(&claims), &keys, rules, NOW))
    };
    assert_eq!(
        check(&exact, json!({"sub": "a", "iss": "https://auth.example"})),
        Ok("a".to_owned())
    );
    assert!(matches!(
        check(&exact, json!({"iss": "https://evil"})),
        Err(TokenError::InvalidClaims(_))
    ));
    assert!(matches!(
        check(&exact, json!({"sub": "a"})),
        Err(TokenError::InvalidClaims(_))
    ));
    assert_eq!(
        check(
            &regex,
            json!({"sub": "r", "iss": "https://acme.auth.example"})
        ),
        Ok("r".to_owned())
    );
    assert!(matches!(
        check(&regex, json!({"iss": "https://acme.auth.example.evil"})),
        Err(TokenError::InvalidClaims(_))
    ));
    assert!(matches!(
        check(&regex, json!({"iss": ["https://acme.auth.example"]})),
        Err(TokenError::InvalidClaims(_))
    ));
}

#[test]
fn user_id_claim_replaces_sub() {
    let keys = hmac_keys();
    let rules = ClaimRules {
        user_id_claim: Some("user_id".to_owned()),
        ..ClaimRules::default()
    };
    let token = hs256(&json!({"sub": "from-sub", "user_id": "from-custom"}));
    assert_eq!(
        user_of(verify_connection_token(&token, &keys, &rules, NOW)),
        Ok("from-custom".to_owned())
    );
    let no_custom = hs256(&json!({"sub": "from-sub"}));
    assert_eq!(
        user_of(verify_connection_token(&no_custom, &keys, &rules, NOW)),
        Ok(String::new())
    );
    let number = hs256(&json!({"user_id": 42}));
    assert!(matches!(
        verify_connection_token(&number, &keys, &rules, NOW),
        Err(TokenError::InvalidClaims(_))
    ));
    // Subscription tokens use the same claim.
    let sub = hs256(&json!({"user_id": "x", "channel": "news"}));
    let verified = verify_subscription_token(&sub, &keys, &rules, NOW).unwrap();
    assert_eq!(verified.user_id, "x");
}

#[test]
fn anonymous_and_mistyped_sub() {
    let keys = hmac_keys();
    assert_eq!(
        user_of(connect(&hs256(&json!({})), &keys)),
        Ok(String::new())
    );
    assert_eq!(
        user_of(connect(&hs256(&json!({"sub": ""})), &keys)),
        Ok(String::new())
    );
    let err = connect(&hs256(&json!({"sub": 5})), &keys).unwrap_err();
    assert!(
        matches!(&err, TokenError::InvalidClaims(m) if m.starts_with("sub: ")),
        "{err}"
    );
}

// ---- connection token claims ----

#[test]
fn connection_token_full_claims() {
    let payload = r#"{"sub":"42","exp":1700000100,"iat":1699999000,"jti":"t-1",
        "info": {"name" : "Alice",  "tags":[1, 2]},
        "channels":["news","chat:lobby"],
        "meta": { "plan": "pro" },
        "subs": {
            "personal:42": {"info": {"x":1}, "data": [true], "override": {
                "presence": {"value": true}, "join_leave": {"value": false},
                "force_push_join_leave": {}, "force_positioning": {"value": true}}},
            "b64": {"b64info": "AAEC", "b64data": "/w==", "info": "ignored", "data": "ignored"},
            "empty": {},
            "nulled": null
        }}"#;
    let token = sign_hs256_text(r#"{"alg":"HS256","typ":"JWT"}"#, payload, SECRET);
    let t = connect(&token, &hmac_keys()).unwrap();
    assert_eq!(t.user_id, "42");
    assert_eq!(t.expires_at, Some(1_700_000_100));
    assert_eq!(t.issued_at, Some(1_699_999_000));
    assert_eq!(t.token_id.as_deref(), Some("t-1"));
    assert_eq!(
        t.info.as_deref(),
        Some(&br#"{"name" : "Alice",  "tags":[1, 2]}"#[..])
    );
    assert_eq!(t.channels, ["news", "chat:lobby"]);
    assert_eq!(
        t.meta.as_ref().map(|m| m.get()),
        Some(r#"{ "plan": "pro" }"#)
    );
    assert_eq!(t.subs.len(), 4);
    assert_eq!(
        t.subs["personal:42"],
        SubscribeOptions {
            info: Some(br#"{"x":1}"#.to_vec()),
            data: Some(b"[true]".to_vec()),
            overrides: Override {
                presence: Some(true),
                join_leave: Some(false),
                force_push_join_leave: Some(false),
                force_recovery: None,
                force_positioning: Some(true),
            },
        }
    );
    assert_eq!(
        t.subs["b64"],
        SubscribeOptions {
            info: Some(vec![0, 1, 2]),
            data: Some(vec![0xff]),
            overrides: Override::default()
        }
    );
    assert_eq!(t.subs["empty"], SubscribeOptions::default());
    assert_eq!(t.subs["nulled"], SubscribeOptions::default());
}

#[test]
fn b64info_takes_precedence_over_info() {
    let keys = hmac_keys();
    let info = |claims: Value| connect(&hs256(&claims), &keys).map(|t| t.info);
    assert_eq!(
        info(json!({"info": {"a": 1}, "b64info": "aGk="})),
        Ok(Some(b"hi".to_vec()))
    );
    assert_eq!(
        info(json!({"info": {"a": 1}, "b64info": ""})),
        Ok(Some(br#"{"a":1}"#.to_vec()))
    );
    assert_eq!(
        info(json!({"info": "text"})),
        Ok(Some(br#""text""#.to_vec()))
    );
    assert_eq!(info(json!({"info": null})), Ok(None));
    assert_eq!(info(json!({})), Ok(None));
    assert_eq!(
        info(json!({"b64info": "not base64!"})),
        Err(TokenError::InvalidClaims(
            "b64info is not valid base64".to_owned()
        ))
    );
    assert!(matches!(
        info(json!({"b64info": 12})),
        Err(TokenError::InvalidClaims(_))
    ));
}

#[test]
fn connection_token_with_channel_claim_is_invalid() {
    let keys = hmac_keys();
    for channel in [json!("news"), json!(""), json!(null)] {
        let token = hs256(&json!({"sub": "u", "channel": channel}));
        assert_eq!(
            user_of(connect(&token, &keys)),
            Err(TokenError::InvalidClaims(
                "channel claim in a connection token".to_owned()
            ))
        );
    }
}

#[test]
fn mistyped_connection_claims_are_invalid() {
    let keys = hmac_keys();
    for claims in [
        json!({"channels": "news"}),
        json!({"channels": [1]}),
        json!({"subs": ["news"]}),
        json!({"subs": {"news": 5}}),
        json!({"subs": {"news": []}}),
        json!({"subs": {"news": {"override": {"presence": true}}}}),
        json!({"subs": {"news": {"override": {"presence": {"value": "yes"}}}}}),
        json!({"subs": {"news": {"b64data": "%%%"}}}),
        json!({"jti": 5}),
        json!({"iat": "now"}),
    ] {
        let result = connect(&hs256(&claims), &keys);
        assert!(
            matches!(result, Err(TokenError::InvalidClaims(_))),
            "{claims}: {result:?}"
        );
    }
}

// ---- subscription token claims ----

#[test]
fn subscription_token_full_claims() {
    let claims = json!({
        "sub": "42", "channel": "private:room", "client": "c-1", "exp": NOW + 30,
        "expire_at": NOW + 600, "info": {"role": "mod"}, "b64data": "AQI=", "data": {"ignored": 1},
        "override": {"force_recovery": {"value": true}}, "jti": "s-1", "iat": NOW - 1
    });
    let t = subscribe(&hs256(&claims), &hmac_keys()).unwrap();
    assert_eq!(t.user_id, "42");
    assert_eq!(t.channel, "private:room");
    assert_eq!(t.client.as_deref(), Some("c-1"));
    assert_eq!(t.expires_at, Some(NOW + 600));
    assert_eq!(t.info.as_deref(), Some(&br#"{"role":"mod"}"#[..]));
    assert_eq!(t.data, Some(vec![1, 2]));
    assert_eq!(
        t.overrides,
        Override {
            force_recovery: Some(true),
            ..Override::default()
        }
    );
    assert_eq!(t.token_id.as_deref(), Some("s-1"));
    assert_eq!(t.issued_at, Some(NOW - 1));
}

#[test]
fn subscription_token_defaults() {
    let t = subscribe(
        &hs256(&json!({"channel": "news", "client": "", "data": "x"})),
        &hmac_keys(),
    )
    .unwrap();
    assert_eq!(t.user_id, "");
    assert_eq!(t.client, None);
    assert_eq!(t.expires_at, None);
    assert_eq!(t.info, None);
    assert_eq!(t.data, Some(br#""x""#.to_vec()));
    assert_eq!(t.overrides, Override::default());
}

#[test]
fn subscription_token_requires_channel() {
    let keys = hmac_keys();
    let missing = Err(TokenError::InvalidClaims(
        "subscription token without channel".to_owned(),
    ));
    let result = |claims: Value| subscribe(&hs256(&claims), &keys).map(|t| t.channel);
    assert_eq!(result(json!({"sub": "u"})), missing);
    assert_eq!(result(json!({"sub": "u", "channel": ""})), missing);
    assert_eq!(result(json!({"sub": "u", "channel": null})), missing);
    assert!(matches!(
        result(json!({"channel": ["a"]})),
        Err(TokenError::InvalidClaims(_))
    ));
    assert_eq!(
        result(json!({"channel": "a", "exp": NOW - 1})),
        Err(TokenError::Expired)
    );
}

#[test]
fn subscription_token_with_rsa_and_jwks() {
    let claims = json!({"sub": "u", "channel": "ch"});
    let token = sign(Algorithm::ES256, &ec256_signer(), Some("ec-256"), &claims);
    let keys = KeySet::new().with_jwks(Jwks::from_json(JWKS).unwrap());
    assert_eq!(
        subscribe(&token, &keys).map(|t| t.channel),
        Ok("ch".to_owned())
    );
    let rsa = sign(Algorithm::RS256, &rsa_signer(), None, &claims);
    let other = KeySet::new()
        .with_rsa_public_key_pem(RSA_OTHER_PUBLIC)
        .unwrap();
    assert_eq!(
        subscribe(&rsa, &other).map(|t| t.channel),
        Err(TokenError::BadSignature)
    );
}

// ---- malformed input ----

#[test]
fn malformed_tokens() {
    let keys = hmac_keys();
    let valid = hs256(&json!({"sub": "u"}));
    let cases = [
        String::new(),
        ".".to_owned(),
        "..".to_owned(),
        "a.b".to_owned(),
        format!("{valid}.extra"),
        "!!!.e30.sig".to_owned(),
        format!("{}.e30.sig", b64(b"not json")),
        format!("{}.e30.sig", b64(br#"{"typ":"JWT"}"#)),
        format!("{}.e30.sig", b64(br#"{"alg":5}"#)),
        format!("{}.e30.sig", b64(b"[]")),
    ];
    for token in &cases {
        assert_eq!(
            user_of(connect(token, &keys)),
            Err(TokenError::Malformed),
            "{token}"
        );
    }
    // A bad signature encoding is malformed.
    let (head, _) = valid.rsplit_once('.').unwrap();
    assert_eq!(
        user_of(connect(&format!("{head}.%%"), &keys)),
        Err(TokenError::Malformed)
    );
}

#[test]
fn signed_non_object_payloads_are_malformed() {
    let header = r#"{"alg":"HS256"}"#;
    for payload in ["[]", "\"sub\"", "42", "null", "{\"sub\":", "\u{0}"] {
        let token = sign_hs256_text(header, payload, SECRET);
        assert_eq!(
            user_of(connect(&token, &hmac_keys())),
            Err(TokenError::Malformed),
            "{payload}"
        );
    }
    let not_utf8 = {
        let signed = format!("{}.{}", b64(header.as_bytes()), b64(&[0xff, 0xfe]));
        let key = jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes());
        let sig = jsonwebtoken::crypto::sign(signed.as_bytes(), &key, Algorithm::HS256).unwrap();
        format!("{signed}.{sig}")
    };
    assert_eq!(
        user_of(connect(&not_utf8, &hmac_keys())),
        Err(TokenError::Malformed)
    );
}

#[test]
fn huge_and_deep_tokens_do_not_panic() {
    let keys = hmac_keys();
    let huge = "a".repeat(1 << 20);
    assert_eq!(user_of(connect(&huge, &keys)), Err(TokenError::Malformed));
    let huge3 = format!("{huge}.{huge}.{huge}");
    assert_eq!(user_of(connect(&huge3, &keys)), Err(TokenError::Malformed));

    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let payload = format!(r#"{{"sub":"deep","info":{deep}}}"#);
    let token = sign_hs256_text(r#"{"alg":"HS256"}"#, &payload, SECRET);
    // Raw JSON claims are skipped over, not parsed recursively: deep nesting is kept verbatim.
    let t = connect(&token, &keys).unwrap();
    assert_eq!(t.user_id, "deep");
    assert_eq!(t.info.map(|i| i.len()), Some(200_000));
    let subs_deep = format!(r#"{{"subs":{{"a":{{"data":{deep}}}}}}}"#);
    let token = sign_hs256_text(r#"{"alg":"HS256"}"#, &subs_deep, SECRET);
    let t = connect(&token, &keys).unwrap();
    assert_eq!(t.subs["a"].data.as_ref().map(Vec::len), Some(200_000));
}

#[test]
fn peek_header_reads_alg_and_kid_only() {
    let token = sign(
        Algorithm::RS256,
        &rsa_signer(),
        Some("rsa-1"),
        &json!({"sub": "u"}),
    );
    assert_eq!(
        peek_header(&token),
        Ok(TokenHeader {
            alg: "RS256".to_owned(),
            kid: Some("rsa-1".to_owned())
        })
    );
    assert_eq!(peek_header("x"), Err(TokenError::Malformed));
}

#[test]
fn error_messages() {
    assert_eq!(TokenError::Malformed.to_string(), "malformed token");
    assert_eq!(
        TokenError::NoKey.to_string(),
        "no key configured for the token's algorithm or key id"
    );
    assert_eq!(
        TokenError::BadSignature.to_string(),
        "token signature is invalid"
    );
    assert_eq!(
        TokenError::Expired.to_string(),
        "token expired or not yet valid"
    );
    assert_eq!(
        TokenError::InvalidClaims("x".to_owned()).to_string(),
        "invalid token claims: x"
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_text_never_panics(text in ".{0,300}") {
        let keys = hmac_keys().with_rsa_public_key_pem(RSA_PUBLIC).unwrap();
        let rules = ClaimRules::default();
        prop_assert!(verify_connection_token(&text, &keys, &rules, NOW).is_err());
        prop_assert!(verify_subscription_token(&text, &keys, &rules, NOW).is_err());
    }

    #[test]
    fn arbitrary_segments_never_panic(
        header in proptest::collection::vec(any::<u8>(), 0..64),
        payload in proptest::collection::vec(any::<u8>(), 0..256),
        signature in prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..300),
            // ES512-sized with r and s below 2^521, so the P-521 verifier does its arithmetic.
            proptest::collection::vec(any::<u8>(), 132).prop_map(|mut s| {
                s[0] &= 1;
                s[66] &= 1;
                s
            }),
        ],
        alg in prop::sample::select(
            vec!["HS256", "RS256", "ES256", "ES384", "ES512", "EdDSA", "none"],
        ),
        use_real_header in any::<bool>(),
    ) {
        // The kid names the JWK set's key for the algorithm, so the signature is really checked.
        let kid = match alg {
            "RS256" => "rsa-1",
            "ES256" => "ec-256",
            "ES384" => "ec-384",
            "ES512" => "ec-521",
            _ => "ed-1",
        };
        let header = if use_real_header {
            format!(r#"{{"alg":"{alg}","kid":"{kid}"}}"#).into_bytes()
        } else {
            header
        };
        let token = format!("{}.{}.{}", b64(&header), b64(&payload), b64(&signature));
        let keys = hmac_keys()
            .with_rsa_public_key_pem(RSA_PUBLIC)
            .unwrap()
            .with_ecdsa_public_key_pem(EC521_PUBLIC)
            .unwrap();
        let jwks = KeySet::new().with_jwks(Jwks::from_json(JWKS).unwrap());
        let insecure = ClaimRules { skip_signature_verify: true, ..ClaimRules::default() };
        // Must return without panicking; with skip, arbitrary payloads reach the claim parser.
        for keys in [&keys, &jwks] {
            let _ = verify_connection_token(&token, keys, &ClaimRules::default(), NOW);
            let _ = verify_subscription_token(&token, keys, &insecure, NOW);
            let _ = verify_connection_token(&token, keys, &insecure, NOW);
        }
    }

    #[test]
    fn arbitrary_claims_json_never_panics(value in arbitrary_json()) {
        let insecure = ClaimRules { skip_signature_verify: true, ..ClaimRules::default() };
        let token = raw_token(&json!({"alg": "HS256"}), &value, "");
        let _ = verify_connection_token(&token, &KeySet::new(), &insecure, NOW);
        let _ = verify_subscription_token(&token, &KeySet::new(), &insecure, NOW);
    }
}

/// JSON values biased toward our claim names.
fn arbitrary_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        "[a-zA-Z0-9+/=]{0,12}".prop_map(Value::from),
    ];
    let names = prop::sample::select(vec![
        "sub",
        "exp",
        "nbf",
        "iat",
        "jti",
        "aud",
        "iss",
        "expire_at",
        "info",
        "b64info",
        "channels",
        "subs",
        "meta",
        "channel",
        "client",
        "data",
        "b64data",
        "override",
        "presence",
        "value",
    ]);
    leaf.prop_recursive(4, 64, 8, move |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            proptest::collection::btree_map(names.clone(), inner, 0..6).prop_map(
                |m| Value::Object(m.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
            ),
        ]
    })
}

/// Bytes of a hex string (test vectors).
fn hex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
        .collect()
}
