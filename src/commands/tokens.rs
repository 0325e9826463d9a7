//! `gentoken` / `gensubtoken`: HS256 tokens signed with the configured secret, for development
//! and tests.

use crate::cli::TokenArgs;
use anyhow::{Result, bail};
use serde_json::{Map, Value, json};
use spindle_hub::config::{Config, Token};
use spindle_hub::jwt::sign_hs256;
use spindle_server::output;
use std::time::{SystemTime, UNIX_EPOCH};

fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

fn claims(token: &Token, args: &TokenArgs) -> Map<String, Value> {
    let user_claim = match token.user_id_claim.as_str() {
        "" => "sub",
        custom => custom,
    };
    let now = now_unix();
    let mut claims = Map::new();
    claims.insert(user_claim.to_owned(), json!(args.user));
    claims.insert("iat".to_owned(), json!(now));
    if args.ttl >= 0 {
        claims.insert("exp".to_owned(), json!(now + args.ttl));
    }
    claims
}

fn sign(token: &Token, claims: Map<String, Value>, what: &str) -> Result<String> {
    if token.hmac_secret_key.is_empty() {
        bail!("no HMAC secret configured for {what} tokens (client.token.hmac_secret_key)");
    }
    sign_hs256(&Value::Object(claims), token.hmac_secret_key.expose())
        .map_err(|e| anyhow::anyhow!("cannot sign token: {e}"))
}

fn print(token: &str, args: &TokenArgs, what: &str) -> Result<()> {
    if args.quiet {
        output::line(token)?;
    } else {
        let lifetime = match args.ttl {
            ttl if ttl < 0 => "without expiry".to_owned(),
            ttl => format!("with ttl {ttl}s"),
        };
        output::line(format_args!(
            "HMAC SHA-256 {what} token for user {:?} {lifetime}:\n{token}",
            args.user
        ))?;
    }
    Ok(())
}

pub fn connection(config: &Config, args: &TokenArgs) -> Result<()> {
    let key = &config.client.token;
    let token = sign(key, claims(key, args), "connection")?;
    print(&token, args, "connection")
}

pub fn subscription(config: &Config, args: &TokenArgs, channel: &str) -> Result<()> {
    if channel.is_empty() {
        bail!("a subscription token needs a channel (-s)");
    }
    let key = if config.client.subscription_token.enabled {
        &config.client.subscription_token.token
    } else {
        &config.client.token
    };
    let mut claims = claims(key, args);
    claims.insert("channel".to_owned(), json!(channel));
    let token = sign(key, claims, "subscription")?;
    print(&token, args, "subscription")
}

/// `checktoken` / `checksubtoken`: verifies with the configured keys and prints the claims the
/// server would use.
pub fn check(config: &Config, token: &str, subscription: bool) -> Result<std::process::ExitCode> {
    let rules = spindle_hub::session::SessionRules::new(config)
        .map_err(|e| anyhow::anyhow!("invalid client configuration: {e}"))?;
    let now = now_unix();
    let verdict = if subscription {
        rules
            .verify_subscription_token(token, now)
            .map(|t| format!("{t:#?}"))
    } else {
        rules
            .verify_connection_token(token, now)
            .map(|t| format!("{t:#?}"))
    };
    match verdict {
        Ok(claims) => {
            output::line(format_args!("valid token:\n{claims}"))?;
            Ok(std::process::ExitCode::SUCCESS)
        }
        Err(error) => {
            output::line(format_args!("invalid token: {error}"))?;
            Ok(std::process::ExitCode::FAILURE)
        }
    }
}
