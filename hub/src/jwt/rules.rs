//! Claim rules of `client.token` (and `client.subscription_token`): audience, issuer, which claim
//! holds the user id, and the insecure switch that skips signature checks.

use regex::Regex;

use super::verify::TokenError;

/// What a verified token's claims must satisfy beyond its signature and time window.
///
/// Every field defaults to "not checked". An empty string counts as not configured, like an
/// empty value in the Centrifugo configuration. The configuration layer enforces that
/// `audience` / `audience_regex` (and `issuer` / `issuer_regex`) are not both set; if both are,
/// both must match.
#[derive(Debug, Clone, Default)]
pub struct ClaimRules {
    /// `audience`: the `aud` claim (a string, or an array of which any element may match) must
    /// equal this.
    pub audience: Option<String>,
    /// `audience_regex`: the `aud` claim (or any element of it) must match this regex. The
    /// regex is searched, not implicitly anchored: write `^…$` to match the whole value.
    pub audience_regex: Option<Regex>,
    /// `issuer`: the `iss` claim must equal this.
    pub issuer: Option<String>,
    /// `issuer_regex`: the `iss` claim must match this regex (searched, like `audience_regex`).
    pub issuer_regex: Option<Regex>,
    /// `user_id_claim`: read the user id from this claim instead of `sub` (the configuration
    /// layer checks the name against `^[a-zA-Z_]+$`). There is no fallback to `sub`.
    pub user_id_claim: Option<String>,
    /// `client.insecure_skip_token_signature_verify`. **For tests only**: when true no key is
    /// looked up and no signature is checked, so anyone can forge any user's token. Claims
    /// and time are still checked, and `alg: none` is still refused.
    pub skip_signature_verify: bool,
}

/// The `aud` claim: one string or an array of strings.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(untagged)]
pub(crate) enum Audience {
    One(String),
    Many(Vec<String>),
}

impl Audience {
    fn any(&self, check: &dyn Fn(&str) -> bool) -> bool {
        match self {
            Audience::One(one) => check(one),
            Audience::Many(many) => many.iter().any(|a| check(a)),
        }
    }
}

impl ClaimRules {
    /// The claim that holds the user id (`sub` unless `user_id_claim` is set).
    pub(crate) fn user_id_claim_name(&self) -> &str {
        match self.user_id_claim.as_deref() {
            Some(name) if !name.is_empty() => name,
            _ => "sub",
        }
    }

    /// Checks `aud` against `audience` and `audience_regex`; an absent claim fails a
    /// configured rule.
    pub(crate) fn check_audience(&self, aud: Option<&Audience>) -> Result<(), TokenError> {
        let matches = |check: &dyn Fn(&str) -> bool| aud.is_some_and(|aud| aud.any(check));
        if let Some(want) = non_empty(&self.audience)
            && !matches(&|a| a == want)
        {
            return Err(TokenError::InvalidClaims(
                "aud does not match audience".to_owned(),
            ));
        }
        if let Some(re) = &self.audience_regex
            && !matches(&|a| re.is_match(a))
        {
            return Err(TokenError::InvalidClaims(
                "aud does not match audience_regex".to_owned(),
            ));
        }
        Ok(())
    }

    /// Checks `iss` against `issuer` and `issuer_regex`; an absent claim fails a configured
    /// rule.
    pub(crate) fn check_issuer(&self, iss: Option<&str>) -> Result<(), TokenError> {
        if let Some(want) = non_empty(&self.issuer)
            && iss != Some(want)
        {
            return Err(TokenError::InvalidClaims(
                "iss does not match issuer".to_owned(),
            ));
        }
        if let Some(re) = &self.issuer_regex
            && !iss.is_some_and(|iss| re.is_match(iss))
        {
            return Err(TokenError::InvalidClaims(
                "iss does not match issuer_regex".to_owned(),
            ));
        }
        Ok(())
    }
}

fn non_empty(value: &Option<String>) -> Option<&str> {
    value.as_deref().filter(|v| !v.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(s: &str) -> Audience {
        Audience::One(s.to_owned())
    }

    fn many(items: &[&str]) -> Audience {
        Audience::Many(items.iter().map(|s| (*s).to_owned()).collect())
    }

    #[test]
    fn no_rules_accept_anything() {
        let rules = ClaimRules::default();
        assert_eq!(rules.check_audience(None), Ok(()));
        assert_eq!(rules.check_audience(Some(&one("x"))), Ok(()));
        assert_eq!(rules.check_issuer(None), Ok(()));
        assert_eq!(rules.user_id_claim_name(), "sub");
    }

    #[test]
    fn empty_strings_mean_not_configured() {
        let rules = ClaimRules {
            audience: Some(String::new()),
            issuer: Some(String::new()),
            user_id_claim: Some(String::new()),
            ..ClaimRules::default()
        };
        assert_eq!(rules.check_audience(None), Ok(()));
        assert_eq!(rules.check_issuer(None), Ok(()));
        assert_eq!(rules.user_id_claim_name(), "sub");
    }

    #[test]
    fn audience_string_or_array() {
        let rules = ClaimRules {
            audience: Some("spindle".to_owned()),
            ..ClaimRules::default()
        };
        assert_eq!(rules.check_audience(Some(&one("spindle"))), Ok(()));
        assert_eq!(
            rules.check_audience(Some(&many(&["other", "spindle"]))),
            Ok(())
        );
        let bad = Err(TokenError::InvalidClaims(
            "aud does not match audience".to_owned(),
        ));
        assert_eq!(rules.check_audience(Some(&one("other"))), bad);
        assert_eq!(rules.check_audience(Some(&many(&[]))), bad);
        assert_eq!(rules.check_audience(None), bad);
    }

    #[test]
    fn audience_regex_any_element() {
        let rules = ClaimRules {
            audience_regex: Some(Regex::new("^app-[0-9]+$").unwrap()),
            ..ClaimRules::default()
        };
        assert_eq!(rules.check_audience(Some(&many(&["x", "app-42"]))), Ok(()));
        let bad = Err(TokenError::InvalidClaims(
            "aud does not match audience_regex".to_owned(),
        ));
        assert_eq!(rules.check_audience(Some(&one("app-x"))), bad);
        assert_eq!(rules.check_audience(None), bad);
    }

    #[test]
    fn issuer_exact_and_regex() {
        let rules = ClaimRules {
            issuer: Some("auth".to_owned()),
            ..ClaimRules::default()
        };
        assert_eq!(rules.check_issuer(Some("auth")), Ok(()));
        let bad = Err(TokenError::InvalidClaims(
            "iss does not match issuer".to_owned(),
        ));
        assert_eq!(rules.check_issuer(Some("Auth")), bad);
        assert_eq!(rules.check_issuer(None), bad);

        let rules = ClaimRules {
            issuer_regex: Some(Regex::new(r"^https://(\w+)\.example\.com$").unwrap()),
            ..ClaimRules::default()
        };
        assert_eq!(
            rules.check_issuer(Some("https://tenant.example.com")),
            Ok(())
        );
        let bad = Err(TokenError::InvalidClaims(
            "iss does not match issuer_regex".to_owned(),
        ));
        assert_eq!(
            rules.check_issuer(Some("https://evil.com/.example.com")),
            bad
        );
        assert_eq!(rules.check_issuer(None), bad);
    }

    #[test]
    fn custom_user_id_claim() {
        let rules = ClaimRules {
            user_id_claim: Some("user_id".to_owned()),
            ..ClaimRules::default()
        };
        assert_eq!(rules.user_id_claim_name(), "user_id");
    }
}
