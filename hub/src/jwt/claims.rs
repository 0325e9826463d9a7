//! Claim models of connection (docs/protocol.md §5.2) and subscription (§5.3) tokens.
//!
//! Everything here runs on a payload whose signature has already been verified. JSON payload
//! claims (`info`, `data`, `meta`) are kept as their exact JSON text so they can be embedded
//! verbatim later; `b64info` / `b64data` (standard base64 with padding) win over them when
//! non-empty. A JSON `null` claim is treated as absent.

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::Deserialize;
use serde_json::value::RawValue;

use super::rules::{Audience, ClaimRules};
use super::verify::TokenError;

/// A verified connection token.
#[derive(Debug, Clone)]
pub struct ConnectionToken {
    /// User id from `sub` (or the configured `user_id_claim`); `""` is an anonymous user.
    pub user_id: String,
    /// When the connection expires (unix seconds): `expire_at` if present and > 0; never
    /// (`None`) if `expire_at` is present and <= 0; otherwise `exp`, or never without `exp`.
    /// A value already in the past is the session's business (error 110), not verification's.
    pub expires_at: Option<i64>,
    /// Connection info (`ClientInfo.conn_info`): decoded `b64info`, else the JSON text of `info`.
    pub info: Option<Vec<u8>>,
    /// `channels`: server-side subscriptions with namespace defaults. The session ignores them
    /// when `subs` is non-empty.
    pub channels: Vec<String>,
    /// `subs`: server-side subscriptions with per-channel options.
    pub subs: BTreeMap<String, SubscribeOptions>,
    /// `meta`: server-only metadata, exact JSON text.
    pub meta: Option<Box<RawValue>>,
    /// `iat` (not validated).
    pub issued_at: Option<i64>,
    /// `jti`.
    pub token_id: Option<String>,
}

/// A verified subscription token.
#[derive(Debug, Clone)]
pub struct SubscriptionToken {
    /// User id from `sub` (or `user_id_claim`); must equal the connection's user (the session
    /// checks).
    pub user_id: String,
    /// `channel` (required, non-empty); must equal the subscribe channel (the session checks).
    pub channel: String,
    /// Legacy `client`: if set, must equal the connection id (the session checks). An empty
    /// string is treated as unset.
    pub client: Option<String>,
    /// Subscription lifetime, same rule as [`ConnectionToken::expires_at`].
    pub expires_at: Option<i64>,
    /// Channel info (`ClientInfo.chan_info`): decoded `b64info`, else the JSON text of `info`.
    pub info: Option<Vec<u8>>,
    /// `SubscribeResult.data`: decoded `b64data`, else the JSON text of `data`.
    pub data: Option<Vec<u8>>,
    /// The `override` claim.
    pub overrides: Override,
    /// `iat` (not validated).
    pub issued_at: Option<i64>,
    /// `jti`.
    pub token_id: Option<String>,
}

/// Options of one server-side subscription in a connection token's `subs` claim.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SubscribeOptions {
    /// Channel info: decoded `b64info`, else the JSON text of `info`.
    pub info: Option<Vec<u8>>,
    /// Subscribe data: decoded `b64data`, else the JSON text of `data`.
    pub data: Option<Vec<u8>>,
    /// The `override` object.
    pub overrides: Override,
}

/// Per-subscription overrides of namespace options, each `{"value": bool}` in the token
/// (`{}` or `{"value": null}` reads as `false`); `None` when absent or `null`. Unknown keys are
/// ignored.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Override {
    /// `presence`.
    pub presence: Option<bool>,
    /// `join_leave`.
    pub join_leave: Option<bool>,
    /// `force_push_join_leave`.
    pub force_push_join_leave: Option<bool>,
    /// `force_recovery`.
    pub force_recovery: Option<bool>,
    /// `force_positioning`.
    pub force_positioning: Option<bool>,
}

/// The top-level claims of a verified payload, each kept as raw JSON until asked for.
pub(crate) struct ClaimMap<'a> {
    map: BTreeMap<String, &'a RawValue>,
}

impl<'a> ClaimMap<'a> {
    /// Parses a payload; anything but a JSON object is malformed.
    pub(crate) fn parse(json: &'a str) -> Result<Self, TokenError> {
        let map = serde_json::from_str(json).map_err(|_| TokenError::Malformed)?;
        Ok(Self { map })
    }

    /// The object claim `name` as a map of its own (an absent or `null` claim is empty).
    fn object(&self, name: &str) -> Result<ClaimMap<'a>, TokenError> {
        Ok(ClaimMap {
            map: self.get(name)?.unwrap_or_default(),
        })
    }

    /// The `override` object.
    fn overrides(&self) -> Result<Override, TokenError> {
        let object = self.object("override")?;
        let flag = |name: &str| -> Result<Option<bool>, TokenError> {
            let wrapper: Option<BTreeMap<String, &'a RawValue>> = object.get(name)?;
            let wrapper = wrapper.map(|map| ClaimMap { map });
            match wrapper {
                Some(wrapper) => Ok(Some(wrapper.get::<bool>("value")?.unwrap_or(false))),
                None => Ok(None),
            }
        };
        Ok(Override {
            presence: flag("presence")?,
            join_leave: flag("join_leave")?,
            force_push_join_leave: flag("force_push_join_leave")?,
            force_recovery: flag("force_recovery")?,
            force_positioning: flag("force_positioning")?,
        })
    }

    /// The raw claim, `None` when absent or `null`.
    fn raw(&self, name: &str) -> Option<&'a RawValue> {
        self.map
            .get(name)
            .copied()
            .filter(|raw| raw.get() != "null")
    }

    /// A claim of type `T` (which may borrow raw JSON from the payload); a wrong type is
    /// [`TokenError::InvalidClaims`].
    fn get<T: Deserialize<'a>>(&self, name: &str) -> Result<Option<T>, TokenError> {
        self.raw(name)
            .map(|raw| parse_claim(name, raw.get()))
            .transpose()
    }

    /// A string claim; an empty string is returned as is.
    pub(crate) fn string(&self, name: &str) -> Result<Option<String>, TokenError> {
        self.get(name)
    }

    /// A NumericDate claim (`exp`, `nbf`, `iat`): a JSON number of seconds; a fraction is
    /// rounded down.
    pub(crate) fn numeric_date(&self, name: &str) -> Result<Option<i64>, TokenError> {
        let Some(number) = self.get::<serde_json::Number>(name)? else {
            return Ok(None);
        };
        if let Some(n) = number.as_i64() {
            return Ok(Some(n));
        }
        match number.as_f64() {
            // The bounds keep the cast exact; larger dates are nonsense.
            Some(f) if f.is_finite() && f.abs() < 9.0e15 => Ok(Some(f.floor() as i64)),
            _ => Err(TokenError::InvalidClaims(format!("{name} is out of range"))),
        }
    }

    pub(crate) fn audience(&self) -> Result<Option<Audience>, TokenError> {
        self.get("aud")
    }

    /// The user id claim of `rules`; absent → `""` (anonymous).
    fn user_id(&self, rules: &ClaimRules) -> Result<String, TokenError> {
        Ok(self.string(rules.user_id_claim_name())?.unwrap_or_default())
    }

    /// `expire_at` > 0 → that; `expire_at` <= 0 → never; absent → `exp`.
    fn expires_at(&self) -> Result<Option<i64>, TokenError> {
        match self.get::<i64>("expire_at")? {
            Some(at) if at > 0 => Ok(Some(at)),
            Some(_) => Ok(None),
            None => self.numeric_date("exp"),
        }
    }

    /// Binary payload: base64 claim `b64_name` when non-empty, else the JSON text of `name`.
    fn payload(&self, name: &str, b64_name: &str) -> Result<Option<Vec<u8>>, TokenError> {
        let b64 = self.string(b64_name)?;
        binary(self.raw(name), b64_name, b64)
    }
}

fn parse_claim<'a, T: Deserialize<'a>>(name: &str, json: &'a str) -> Result<T, TokenError> {
    serde_json::from_str(json)
        .map_err(|e| TokenError::InvalidClaims(format!("{name}: {}", first_line(&e.to_string()))))
}

fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or_default()
}

fn binary(
    json: Option<&RawValue>,
    b64_name: &str,
    b64: Option<String>,
) -> Result<Option<Vec<u8>>, TokenError> {
    match b64 {
        Some(text) if !text.is_empty() => STANDARD
            .decode(text)
            .map(Some)
            .map_err(|_| TokenError::InvalidClaims(format!("{b64_name} is not valid base64"))),
        _ => Ok(json
            .filter(|raw| raw.get() != "null")
            .map(|raw| raw.get().as_bytes().to_vec())),
    }
}

/// Builds a connection token from verified claims (time, audience and issuer already checked).
pub(crate) fn connection_token(
    claims: &ClaimMap<'_>,
    rules: &ClaimRules,
) -> Result<ConnectionToken, TokenError> {
    if claims.map.contains_key("channel") {
        return Err(TokenError::InvalidClaims(
            "channel claim in a connection token".to_owned(),
        ));
    }
    let mut subs = BTreeMap::new();
    let raw_subs: BTreeMap<String, Option<BTreeMap<String, &RawValue>>> =
        claims.get("subs")?.unwrap_or_default();
    for (channel, options) in raw_subs {
        let options = ClaimMap {
            map: options.unwrap_or_default(),
        };
        subs.insert(channel, subscribe_options(&options)?);
    }
    Ok(ConnectionToken {
        user_id: claims.user_id(rules)?,
        expires_at: claims.expires_at()?,
        info: claims.payload("info", "b64info")?,
        channels: claims.get("channels")?.unwrap_or_default(),
        subs,
        meta: claims.raw("meta").map(RawValue::to_owned),
        issued_at: claims.numeric_date("iat")?,
        token_id: claims.string("jti")?,
    })
}

fn subscribe_options(options: &ClaimMap<'_>) -> Result<SubscribeOptions, TokenError> {
    Ok(SubscribeOptions {
        info: options.payload("info", "b64info")?,
        data: options.payload("data", "b64data")?,
        overrides: options.overrides()?,
    })
}

/// Builds a subscription token from verified claims (time, audience and issuer already
/// checked).
pub(crate) fn subscription_token(
    claims: &ClaimMap<'_>,
    rules: &ClaimRules,
) -> Result<SubscriptionToken, TokenError> {
    let channel = claims.string("channel")?.unwrap_or_default();
    if channel.is_empty() {
        return Err(TokenError::InvalidClaims(
            "subscription token without channel".to_owned(),
        ));
    }
    Ok(SubscriptionToken {
        user_id: claims.user_id(rules)?,
        channel,
        client: claims.string("client")?.filter(|c| !c.is_empty()),
        expires_at: claims.expires_at()?,
        info: claims.payload("info", "b64info")?,
        data: claims.payload("data", "b64data")?,
        overrides: claims.overrides()?,
        issued_at: claims.numeric_date("iat")?,
        token_id: claims.string("jti")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules() -> ClaimRules {
        ClaimRules::default()
    }

    #[test]
    fn numeric_dates() {
        let map = ClaimMap::parse(
            r#"{"a": 10, "b": 10.9, "c": -1.5, "d": 1e3, "e": "10", "f": 1e300, "g": null,
                "h": 18446744073709551615}"#,
        )
        .unwrap();
        assert_eq!(map.numeric_date("a"), Ok(Some(10)));
        assert_eq!(map.numeric_date("b"), Ok(Some(10)));
        assert_eq!(map.numeric_date("c"), Ok(Some(-2)));
        assert_eq!(map.numeric_date("d"), Ok(Some(1000)));
        assert!(matches!(
            map.numeric_date("e"),
            Err(TokenError::InvalidClaims(_))
        ));
        assert_eq!(
            map.numeric_date("f"),
            Err(TokenError::InvalidClaims("f is out of range".to_owned()))
        );
        assert_eq!(map.numeric_date("g"), Ok(None));
        assert_eq!(
            map.numeric_date("h"),
            Err(TokenError::InvalidClaims("h is out of range".to_owned()))
        );
        assert_eq!(map.numeric_date("missing"), Ok(None));
    }

    #[test]
    fn escaped_and_duplicate_claim_names() {
        // Names are compared after JSON unescaping; for a repeated name the last one wins.
        let map = ClaimMap::parse(r#"{"s\u0075b": "first", "sub": "second"}"#).unwrap();
        assert_eq!(map.user_id(&rules()), Ok("second".to_owned()));
        let map = ClaimMap::parse(r#"{"ch\u0061nnel": "x"}"#).unwrap();
        assert_eq!(
            connection_token(&map, &rules()).map(|t| t.user_id),
            Err(TokenError::InvalidClaims(
                "channel claim in a connection token".to_owned()
            ))
        );
    }

    #[test]
    fn payload_must_be_an_object() {
        for text in ["[]", "1", "\"x\"", "null", "", "{", "{\"a\":1} x"] {
            assert!(
                matches!(ClaimMap::parse(text), Err(TokenError::Malformed)),
                "{text}"
            );
        }
    }

    #[test]
    fn override_values() {
        let map = ClaimMap::parse(
            r#"{"override": {"presence": {"value": true}, "join_leave": null,
                "force_recovery": {"value": false, "extra": 1}, "unknown": {"value": true},
                "force_push_join_leave": {"value": null}}}"#,
        )
        .unwrap();
        assert_eq!(
            map.overrides(),
            Ok(Override {
                presence: Some(true),
                join_leave: None,
                force_push_join_leave: Some(false),
                force_recovery: Some(false),
                force_positioning: None,
            })
        );
    }

    #[test]
    fn deeply_nested_typed_claims_fail_cleanly() {
        let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
        for name in ["aud", "channels", "override", "sub"] {
            let text = format!(r#"{{"{name}": {deep}}}"#);
            let map = ClaimMap::parse(&text).unwrap();
            let result = if name == "override" {
                subscription_token(&map, &rules()).map(|t| t.user_id)
            } else if name == "aud" {
                map.audience().map(|_| String::new())
            } else {
                connection_token(&map, &rules()).map(|t| t.user_id)
            };
            assert!(
                matches!(result, Err(TokenError::InvalidClaims(_))),
                "{name}: {result:?}"
            );
        }
    }

    #[test]
    fn subscription_claims_are_typed() {
        let map = ClaimMap::parse(r#"{"channel": "a", "client": 5}"#).unwrap();
        assert!(matches!(
            subscription_token(&map, &rules()),
            Err(TokenError::InvalidClaims(_))
        ));
        let map = ClaimMap::parse(r#"{"channel": "a", "override": []}"#).unwrap();
        assert!(matches!(
            subscription_token(&map, &rules()),
            Err(TokenError::InvalidClaims(_))
        ));
        let map = ClaimMap::parse(r#"{"channel": "a", "b64data": "AQ"}"#).unwrap();
        assert_eq!(
            subscription_token(&map, &rules()).map(|t| t.data),
            Err(TokenError::InvalidClaims(
                "b64data is not valid base64".to_owned()
            ))
        );
    }
}
