//! What a process refuses to start with that the configuration tree alone does not show, run
//! the same way by every role at start and by `spindle checkconfig`: keys that do not parse,
//! TLS files that cannot be read, WebTransport without TLS. Plus warnings for configurations
//! that start but cannot work.

use crate::tls;
use anyhow::{Result, anyhow, bail};
use spindle_hub::config::Config;
use spindle_hub::session::SessionRules;

/// Fails on the first thing that would stop the server from starting; returns the warnings.
pub fn check(config: &Config) -> Result<Vec<String>> {
    SessionRules::new(config).map_err(|error| anyhow!("{error}"))?;
    let http = &config.http_server;
    let tls_blocks = [
        ("http_server.tls", &http.tls),
        ("http_server.internal_tls", &http.internal_tls),
        ("uni_grpc.tls", &config.uni_grpc.tls),
    ];
    for (path, block) in tls_blocks {
        if block.enabled {
            tls::identity(path, block)?;
        }
    }
    if config.webtransport.enabled {
        if !http.http3.enabled {
            bail!("webtransport.enabled needs http_server.http3.enabled");
        }
        if !http.tls.enabled {
            bail!(
                "webtransport.enabled needs http_server.tls (enabled, cert_pem, key_pem): \
                 HTTP/3 runs over QUIC, which is always encrypted"
            );
        }
    }
    Ok(warnings(config))
}

/// Configurations that start but cannot work.
fn warnings(config: &Config) -> Vec<String> {
    let mut out = Vec::new();
    let client = &config.client;
    let token = &client.token;
    let can_verify = !token.hmac_secret_key.is_empty()
        || !token.rsa_public_key.is_empty()
        || !token.ecdsa_public_key.is_empty()
        || !token.jwks_public_endpoint.is_empty()
        || client.insecure_skip_token_signature_verify;
    let without_token = client.insecure
        || client.allow_anonymous_connect_without_token
        || client.proxy.connect.enabled
        || !client.user_id_http_header.is_empty();
    if !can_verify && !without_token {
        out.push(
            "no client can connect: client.token has no key (hmac_secret_key, rsa_public_key, \
             ecdsa_public_key or jwks_public_endpoint) and nothing admits a connection without \
             a token (client.insecure, allow_anonymous_connect_without_token, the connect \
             proxy, user_id_http_header)"
                .to_owned(),
        );
    }
    out
}
