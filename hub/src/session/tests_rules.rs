//! Building [`SessionRules`] from a configuration: what is refused, by key path.

use super::test_support::*;
use super::*;
use crate::config::Config;

#[test]
fn unsupported_configuration_is_refused_by_key() {
    type Change = fn(&mut Config);
    let cases: Vec<(Change, &str)> = vec![
        (
            |c| c.client.token.jwks_public_endpoint = "https://keys.example.com/jwks".into(),
            "client.token.jwks_public_endpoint",
        ),
        (
            |c| {
                c.client.subscription_token.enabled = true;
                c.client.subscription_token.token.jwks_public_endpoint =
                    "https://keys.example.com/jwks".into();
            },
            "client.subscription_token.jwks_public_endpoint",
        ),
    ];
    for (change, key) in cases {
        let mut config = config();
        change(&mut config);
        match SessionRules::new(&config) {
            Err(SessionRulesError::Unsupported { key: got, .. }) => assert_eq!(got, key),
            other => panic!("{key}: {other:?}"),
        }
    }
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
