//! The safety check on templated endpoints, and resolving tokens to (endpoint, kid).

use jsonwebtoken::Algorithm;
use serde_json::{Value, json};

use super::*;
use crate::jwt::test_support::{raw_token, rsa_signer, sign};

const TENANTS: &str = r"^https://(?P<tenant>acme|globex)\.example\.com$";

fn endpoint(
    template: &str,
    issuer_regex: &str,
    audience_regex: &str,
) -> Result<JwksEndpoint, JwksEndpointError> {
    JwksEndpoint::new(template, issuer_regex, audience_regex, false)
}

fn rs256(kid: Option<&str>, claims: &Value) -> String {
    sign(Algorithm::RS256, &rsa_signer(), kid, claims)
}

#[test]
fn a_fixed_endpoint_needs_only_a_kid() {
    let jwks = endpoint("https://keys.example.com/jwks", "", "").unwrap();
    assert!(!jwks.is_templated());
    let request = jwks
        .resolve(&rs256(Some("k1"), &json!({"sub": "u"})))
        .unwrap();
    assert_eq!(
        request,
        JwksKeyRequest {
            endpoint: "https://keys.example.com/jwks".to_owned(),
            kid: "k1".to_owned()
        }
    );
    assert_eq!(
        jwks.resolve(&rs256(None, &json!({"sub": "u"}))),
        Err(TokenError::NoKey)
    );
    assert_eq!(
        jwks.resolve(&rs256(Some(""), &json!({"sub": "u"}))),
        Err(TokenError::NoKey)
    );
}

#[test]
fn tokens_that_can_never_verify_are_refused_before_any_fetch() {
    let jwks = endpoint("https://keys.example.com/jwks", "", "").unwrap();
    let none = raw_token(
        &json!({"alg": "none", "kid": "k1"}),
        &json!({"sub": "u"}),
        "",
    );
    assert!(matches!(
        jwks.resolve(&none),
        Err(TokenError::UnsupportedAlgorithm(_))
    ));
    let ps = raw_token(
        &json!({"alg": "PS256", "kid": "k1"}),
        &json!({"sub": "u"}),
        "x",
    );
    assert!(matches!(
        jwks.resolve(&ps),
        Err(TokenError::UnsupportedAlgorithm(_))
    ));
    assert_eq!(jwks.resolve("not a token"), Err(TokenError::Malformed));
}

#[test]
fn issuer_selects_one_of_the_configured_values() {
    let jwks = endpoint("https://{{tenant}}.example.com/jwks", TENANTS, "").unwrap();
    assert!(jwks.is_templated());
    let token = rs256(Some("k1"), &json!({"iss": "https://globex.example.com"}));
    assert_eq!(
        jwks.resolve(&token).unwrap().endpoint,
        "https://globex.example.com/jwks"
    );
}

#[test]
fn an_issuer_outside_the_alternation_names_no_endpoint() {
    let jwks = endpoint("https://{{tenant}}.example.com/jwks", TENANTS, "").unwrap();
    for iss in [
        "https://evil.example.com",
        "https://evil.com/.example.com",
        "https://ACME.example.com",
        "",
    ] {
        let token = rs256(Some("k1"), &json!({"iss": iss}));
        assert!(
            matches!(jwks.resolve(&token), Err(TokenError::InvalidClaims(_))),
            "{iss}"
        );
    }
    let no_iss = rs256(Some("k1"), &json!({"sub": "u"}));
    assert!(matches!(
        jwks.resolve(&no_iss),
        Err(TokenError::InvalidClaims(_))
    ));
    let bad_type = rs256(Some("k1"), &json!({"iss": 5}));
    assert!(matches!(
        jwks.resolve(&bad_type),
        Err(TokenError::InvalidClaims(_))
    ));
}

#[test]
fn audience_groups_fill_placeholders_from_any_element() {
    let jwks = endpoint(
        "https://{{realm}}.auth.example.com/certs",
        "",
        r"^(?P<realm>us|eu|ap)\.auth\.example\.com$",
    )
    .unwrap();
    let token = rs256(Some("k"), &json!({"aud": ["other", "eu.auth.example.com"]}));
    assert_eq!(
        jwks.resolve(&token).unwrap().endpoint,
        "https://eu.auth.example.com/certs"
    );
    let token = rs256(Some("k"), &json!({"aud": "xx.auth.example.com"}));
    assert!(matches!(
        jwks.resolve(&token),
        Err(TokenError::InvalidClaims(why)) if why.contains("names no JWKS endpoint")
    ));
}

#[test]
fn literal_groups_pass_the_safety_check() {
    for (template, regex) in [
        (
            "https://{{host}}/jwks",
            r"^(?P<host>auth\.example\.com|auth\.other\.com)$",
        ),
        ("https://{{host}}/jwks", r"^(?P<host>auth\.example\.com)$"),
        (
            "https://h/{{realm}}/certs",
            r"realms/(?P<realm>test1|test2)",
        ),
        ("https://h/{{realm}}/certs", r"^(?P<realm>a|ab|abc)$"),
        (
            "https://h/{{realm}}/certs",
            r"^(?P<realm>(?:dev|prod)(1|2))$",
        ),
        ("https://h/{{realm}}/certs", r"^(?<realm>foo\x41|foo\x42)$"),
        // A permissive group that is not a placeholder does not matter.
        ("https://h/{{realm}}/certs", r"^(?P<any>.+)/(?P<realm>a|b)$"),
    ] {
        assert!(endpoint(template, regex, "").is_ok(), "{regex}");
    }
    let jwks = endpoint(
        "https://h/{{realm}}/certs",
        r"^(?P<realm>(?:dev|prod)(1|2))$",
        "",
    )
    .unwrap();
    let token = rs256(Some("k"), &json!({"iss": "prod2"}));
    assert_eq!(
        jwks.resolve(&token).unwrap().endpoint,
        "https://h/prod2/certs"
    );
}

#[test]
fn open_ended_groups_fail_the_safety_check() {
    for (regex, found) in [
        (r"^(?P<t>[a-z0-9-]+)$", "a repetition"),
        (r"^(?P<t>[a-z])$", "a character class"),
        (r"^(?P<t>.+)$", "a repetition"),
        (r"^(?P<t>a.)$", "any character"),
        (r"^(?P<t>\w)$", "a character class `\\w`"),
        (r"^(?P<t>\d)$", "`\\d`"),
        (r"^(?P<t>\pL)$", "`\\pL`"),
        (r"^(?P<t>foo?)$", "a repetition"),
        (r"^(?P<t>a{3})$", "a repetition"),
        (r"^(?P<t>foo|.)$", "any character"),
        (r"^(?P<t>(?i:acme))$", "a group with flags"),
        (r"^(?P<t>^acme)$", "an assertion"),
    ] {
        let error = endpoint("https://{{t}}.example.com/jwks", regex, "").unwrap_err();
        assert!(
            matches!(&error, JwksEndpointError::OpenEndedGroup { name, which: "issuer_regex", .. } if name == "t"),
            "{regex}: {error:?}"
        );
        assert!(error.to_string().contains(found), "{regex}: {error}");
        assert!(
            error.to_string().contains("JWKS endpoint URL template"),
            "{error}"
        );
    }
    let error = endpoint("https://{{r}}.example.com/jwks", "", r"^(?P<r>\S+)$").unwrap_err();
    assert!(error.to_string().contains("audience_regex"), "{error}");
}

#[test]
fn traversal_and_url_structure_are_refused_in_values() {
    for value in [
        "a/b", "..", "x..y", "a?b", "a#b", "u@h", "%2e", "a b", "a\\b",
    ] {
        let regex = format!("^(?P<t>ok|{})$", regex::escape(value));
        let error = endpoint("https://h/{{t}}/jwks", &regex, "").unwrap_err();
        assert!(
            matches!(error, JwksEndpointError::UnsafeValue { .. }),
            "{value}: {error:?}"
        );
    }
    let error = endpoint("https://h/{{t}}/jwks", "^(?P<t>|ok)$", "").unwrap_err();
    assert!(
        matches!(error, JwksEndpointError::UnsafeValue { .. }),
        "{error:?}"
    );
}

#[test]
fn too_many_values_are_refused() {
    let alternatives: Vec<String> = (0..40).map(|i| format!("v{i}")).collect();
    let group = alternatives.join("|");
    let regex = format!("^(?P<t>({group})({group}))$");
    assert_eq!(
        endpoint("https://h/{{t}}/jwks", &regex, "").unwrap_err(),
        JwksEndpointError::TooManyValues("t".to_owned())
    );
}

#[test]
fn template_errors_are_named() {
    for template in [
        "https://{{}}/jwks",
        "https://{{a-b}}/jwks",
        "https://{{a/jwks",
        "https://a}}/jwks",
    ] {
        assert!(
            matches!(
                endpoint(template, "", ""),
                Err(JwksEndpointError::MalformedPlaceholder(_))
            ),
            "{template}"
        );
    }
    assert_eq!(
        endpoint("https://{{tenant}}/jwks", "", "").unwrap_err(),
        JwksEndpointError::UndefinedPlaceholder("tenant".to_owned())
    );
    assert_eq!(
        endpoint("https://{{other}}/jwks", TENANTS, "").unwrap_err(),
        JwksEndpointError::UndefinedPlaceholder("other".to_owned())
    );
    assert!(matches!(
        endpoint("https://{{t}}/jwks", "(?P<t>", ""),
        Err(JwksEndpointError::BadRegex {
            which: "issuer_regex",
            ..
        })
    ));
}

#[test]
fn skipping_the_check_still_refuses_unsafe_claim_values() {
    let jwks = JwksEndpoint::new(
        "https://{{host}}/jwks",
        r"^(?P<host>[a-z0-9.:-]+|.+)$",
        "",
        true,
    )
    .unwrap();
    let ok = rs256(Some("k"), &json!({"iss": "auth.example.com:8443"}));
    assert_eq!(
        jwks.resolve(&ok).unwrap().endpoint,
        "https://auth.example.com:8443/jwks"
    );
    for iss in ["evil.com/x", "a@evil.com", "..", "a b", "x?y"] {
        let token = rs256(Some("k"), &json!({"iss": iss}));
        assert!(
            matches!(
                jwks.resolve(&token),
                Err(TokenError::InvalidClaims(why)) if why.contains("names no JWKS endpoint")
            ),
            "{iss}"
        );
    }
}

#[test]
fn two_placeholders_from_both_claims() {
    let jwks = endpoint(
        "https://{{tenant}}.example.com/{{realm}}/jwks",
        TENANTS,
        r"^(?P<realm>us|eu)$",
    )
    .unwrap();
    let token = rs256(
        Some("k"),
        &json!({"iss": "https://acme.example.com", "aud": "eu"}),
    );
    assert_eq!(
        jwks.resolve(&token).unwrap().endpoint,
        "https://acme.example.com/eu/jwks"
    );
}
