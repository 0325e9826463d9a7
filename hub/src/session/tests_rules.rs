//! Building [`SessionRules`] from a configuration: what is refused, by key path.

use super::test_support::*;
use super::*;

#[test]
fn a_jwks_endpoint_replaces_the_static_keys() {
    let mut config = config();
    config.client.token.jwks_public_endpoint = "https://{{tenant}}.example.com/jwks".into();
    config.client.token.issuer_regex = "^(?P<tenant>acme|globex)$".into();
    let rules = SessionRules::new(&config).unwrap();
    assert!(rules.connection_jwks().unwrap().is_templated());
    // Subscription tokens share `client.token` unless their own section is enabled.
    assert!(rules.subscription_jwks().is_some());
    assert!(rules.connection_keys.is_empty());

    config.client.subscription_token.enabled = true;
    config.client.subscription_token.token.hmac_secret_key = "sub-secret".into();
    let rules = SessionRules::new(&config).unwrap();
    assert!(rules.connection_jwks().is_some());
    assert!(rules.subscription_jwks().is_none());
    assert!(!rules.subscription_keys.is_empty());

    // Nothing to fetch when signatures are not verified.
    config.client.insecure_skip_token_signature_verify = true;
    assert!(
        SessionRules::new(&config)
            .unwrap()
            .connection_jwks()
            .is_none()
    );
}

#[test]
fn unsafe_jwks_endpoints_are_refused_by_key() {
    let mut config = config();
    config.client.subscription_token.enabled = true;
    config.client.subscription_token.token.jwks_public_endpoint = "https://{{host}}/jwks".into();
    config.client.subscription_token.token.issuer_regex = "^(?P<host>[a-z.]+)$".into();
    let error = SessionRules::new(&config).unwrap_err();
    assert!(
        matches!(&error, SessionRulesError::Jwks { key, .. }
            if key == "client.subscription_token.jwks_public_endpoint"),
        "{error:?}"
    );
    assert!(
        error.to_string().contains("JWKS endpoint URL template"),
        "{error}"
    );
    config
        .client
        .subscription_token
        .token
        .insecure_skip_jwks_endpoint_safety_check = true;
    assert!(
        SessionRules::new(&config)
            .unwrap()
            .subscription_jwks()
            .is_some()
    );
}

#[test]
fn proxies_are_accepted() {
    let mut config = config();
    config.client.proxy.connect.enabled = true;
    config.client.proxy.refresh.enabled = true;
    config.channel.namespaces[0]
        .options
        .sub_refresh_proxy_enabled = true;
    let rules = SessionRules::new(&config).unwrap();
    assert!(rules.refresh_proxy_enabled());
}

#[test]
fn bad_keys_and_regexes_are_refused_by_key() {
    let mut config = config();
    config.client.token.rsa_public_key = "not a pem".into();
    let error = SessionRules::new(&config).unwrap_err();
    assert!(
        matches!(&error, SessionRulesError::Key { key, .. } if key == "client.token.rsa_public_key"),
        "{error:?}"
    );
    let mut config = super::test_support::config();
    config.client.subscription_token.enabled = true;
    config.client.subscription_token.token.audience_regex = "(".into();
    let error = SessionRules::new(&config).unwrap_err();
    assert!(
        matches!(&error, SessionRulesError::ClaimRegex { key, .. }
            if key == "client.subscription_token.audience_regex"),
        "{error:?}"
    );
    let mut config = super::test_support::config();
    config.channel.namespaces[0].options.channel_regex = "(".into();
    assert!(matches!(
        SessionRules::new(&config),
        Err(SessionRulesError::ChannelRegex(_))
    ));
}
