//! `jwks_public_endpoint`: which JWK set verifies a token, decided **before** its signature is
//! checked and therefore without trusting any claim.
//!
//! An endpoint may be templated (`https://{{tenant}}.example.com/jwks`): each `{{name}}` is
//! filled from the named group `name` of `issuer_regex` (matched against `iss`) or
//! `audience_regex` (against `aud`). Those claims are unverified when the endpoint is chosen, so
//! the safety check (on unless `insecure_skip_jwks_endpoint_safety_check`) allows a placeholder
//! only when its group is a finite set of literal strings — `(?P<tenant>acme|globex)` — and
//! enumerates that set when the configuration is loaded. A token then only *selects* one of the
//! configured values: the text that goes into the URL is the configuration's own, never the
//! claim's, so a forged `iss` can make no request outside the configured endpoints. Values that
//! could change the URL's structure (`/`, `\`, `..`, `?`, `#`, `@`, `%`, whitespace) are refused
//! at load time, and — when the check is skipped — per token.
//!
//! Keys fetched from one resolved endpoint verify only tokens resolved to that endpoint (the
//! core caches by (endpoint, `kid`)), so two issuers using the same `kid` with different keys
//! cannot sign for each other; after the signature verifies, `iss` / `aud` are checked against
//! the same regexes as usual.

use std::collections::{BTreeMap, BTreeSet};

use regex::Regex;
use regex_syntax::ast::{self, Ast, GroupKind};
use serde::Deserialize;

use super::keys::supported_algorithm;
use super::rules::Audience;
use super::verify::{TokenError, decode_payload_unverified, peek_header};

/// Most values one placeholder may take (the product over placeholders is bounded too).
const MAX_VALUES: usize = 1_000;

/// Why a `jwks_public_endpoint` cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwksEndpointError {
    /// A `{{` without `}}`, or a placeholder name that is not `[A-Za-z0-9_]+`.
    #[error("malformed placeholder in JWKS endpoint {0:?}")]
    MalformedPlaceholder(String),
    /// A placeholder that neither `issuer_regex` nor `audience_regex` defines as a named group.
    #[error(
        "JWKS endpoint placeholder {{{{{0}}}}} is not a named group of issuer_regex or audience_regex"
    )]
    UndefinedPlaceholder(String),
    /// `issuer_regex` / `audience_regex` does not parse.
    #[error("{which}: {message}")]
    BadRegex {
        /// `issuer_regex` or `audience_regex`.
        which: &'static str,
        /// The parser's message.
        message: String,
    },
    /// The safety check failed: the group can match more than a fixed set of literal strings.
    #[error(
        "JWKS endpoint URL template: group {name:?} of {which} must be an alternation of literal \
         values such as (?P<{name}>acme|globex), not {found} (an unverified token claim would \
         choose the URL); set insecure_skip_jwks_endpoint_safety_check to accept it"
    )]
    OpenEndedGroup {
        /// The placeholder / group name.
        name: String,
        /// `issuer_regex` or `audience_regex`.
        which: &'static str,
        /// What was found, e.g. `a character class` or `\d`.
        found: String,
    },
    /// A literal value that would change the URL's structure.
    #[error(
        "JWKS endpoint placeholder {name:?} may take the value {value:?}, which is not a safe URL part"
    )]
    UnsafeValue {
        /// The placeholder name.
        name: String,
        /// The offending value.
        value: String,
    },
    /// More values than [`MAX_VALUES`].
    #[error("JWKS endpoint placeholder {0:?} may take more than {MAX_VALUES} values")]
    TooManyValues(String),
}

/// What to fetch for one token: its JWK set URL and the key id within it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwksKeyRequest {
    /// The resolved endpoint URL.
    pub endpoint: String,
    /// The token's `kid`.
    pub kid: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Claim {
    Iss,
    Aud,
}

#[derive(Debug, Clone)]
struct Placeholder {
    claim: Claim,
    /// The values the group can take; `None` when the safety check is skipped.
    allowed: Option<BTreeSet<String>>,
}

#[derive(Debug, Clone)]
enum Part {
    Text(String),
    Var(String),
}

/// A parsed `jwks_public_endpoint`.
#[derive(Debug, Clone)]
pub struct JwksEndpoint {
    parts: Vec<Part>,
    placeholders: BTreeMap<String, Placeholder>,
    issuer_regex: Option<Regex>,
    audience_regex: Option<Regex>,
}

/// The claims a template reads, untrusted.
#[derive(Deserialize)]
struct SelectorClaims {
    #[serde(default)]
    iss: Option<String>,
    #[serde(default)]
    aud: Option<Audience>,
}

impl JwksEndpoint {
    /// Parses `template` with the claim regexes that may define its placeholders (`""` = not
    /// set). With `skip_safety_check` a placeholder may come from any group; values are then
    /// checked per token.
    pub fn new(
        template: &str,
        issuer_regex: &str,
        audience_regex: &str,
        skip_safety_check: bool,
    ) -> Result<Self, JwksEndpointError> {
        let parts = parse_template(template)?;
        let compile = |which: &'static str, pattern: &str| {
            (!pattern.is_empty())
                .then(|| {
                    Regex::new(pattern).map_err(|e| JwksEndpointError::BadRegex {
                        which,
                        message: e.to_string(),
                    })
                })
                .transpose()
        };
        let issuer = compile("issuer_regex", issuer_regex)?;
        let audience = compile("audience_regex", audience_regex)?;
        let mut placeholders = BTreeMap::new();
        for part in &parts {
            let Part::Var(name) = part else { continue };
            if placeholders.contains_key(name) {
                continue;
            }
            let source = [
                (Claim::Iss, "issuer_regex", issuer_regex, &issuer),
                (Claim::Aud, "audience_regex", audience_regex, &audience),
            ]
            .into_iter()
            .find(|(_, _, _, re)| re.as_ref().is_some_and(|re| has_group(re, name)));
            let Some((claim, which, pattern, _)) = source else {
                return Err(JwksEndpointError::UndefinedPlaceholder(name.clone()));
            };
            let allowed = if skip_safety_check {
                None
            } else {
                Some(literal_values(name, which, pattern)?)
            };
            placeholders.insert(name.clone(), Placeholder { claim, allowed });
        }
        Ok(JwksEndpoint {
            parts,
            placeholders,
            issuer_regex: issuer,
            audience_regex: audience,
        })
    }

    /// True when the URL depends on the token's claims.
    pub fn is_templated(&self) -> bool {
        !self.placeholders.is_empty()
    }

    /// Which endpoint and `kid` verify `token`. Reads the header (and, for a templated
    /// endpoint, `iss` / `aud`) **without verifying anything**; refuses before any fetch a
    /// token that could never verify: `alg: none` or unsupported, no `kid`, or claims that name
    /// no configured endpoint.
    pub fn resolve(&self, token: &str) -> Result<JwksKeyRequest, TokenError> {
        let header = peek_header(token)?;
        if header.alg.eq_ignore_ascii_case("none") {
            return Err(TokenError::UnsupportedAlgorithm(header.alg));
        }
        supported_algorithm(&header.alg)?;
        let kid = header
            .kid
            .filter(|k| !k.is_empty())
            .ok_or(TokenError::NoKey)?;
        let claims = if self.is_templated() {
            let payload = decode_payload_unverified(token)?;
            serde_json::from_str::<SelectorClaims>(&payload).map_err(|_| {
                TokenError::InvalidClaims("iss / aud claims are malformed".to_owned())
            })?
        } else {
            SelectorClaims {
                iss: None,
                aud: None,
            }
        };
        let mut endpoint = String::new();
        for part in &self.parts {
            match part {
                Part::Text(text) => endpoint.push_str(text),
                Part::Var(name) => endpoint.push_str(&self.value(name, &claims)?),
            }
        }
        Ok(JwksKeyRequest { endpoint, kid })
    }

    /// The configured value (never the claim's own text when the safety check is on) that
    /// the token's claim selects for placeholder `name`.
    fn value(&self, name: &str, claims: &SelectorClaims) -> Result<String, TokenError> {
        let unknown =
            || TokenError::InvalidClaims(format!("token names no JWKS endpoint ({name})"));
        let placeholder = self.placeholders.get(name).ok_or_else(unknown)?;
        let captured = match placeholder.claim {
            Claim::Iss => self
                .issuer_regex
                .as_ref()
                .zip(claims.iss.as_deref())
                .and_then(|(re, iss)| capture(re, iss, name)),
            Claim::Aud => {
                let candidates: Vec<&str> = match &claims.aud {
                    Some(Audience::One(one)) => vec![one.as_str()],
                    Some(Audience::Many(many)) => many.iter().map(String::as_str).collect(),
                    None => Vec::new(),
                };
                self.audience_regex.as_ref().and_then(|re| {
                    candidates
                        .into_iter()
                        .find_map(|aud| capture(re, aud, name))
                })
            }
        }
        .ok_or_else(unknown)?;
        match &placeholder.allowed {
            Some(allowed) => allowed.get(captured).cloned().ok_or_else(unknown),
            None if is_safe_value(captured) => Ok(captured.to_owned()),
            None => Err(unknown()),
        }
    }
}

fn capture<'t>(re: &Regex, text: &'t str, name: &str) -> Option<&'t str> {
    re.captures(text)?.name(name).map(|m| m.as_str())
}

fn has_group(re: &Regex, name: &str) -> bool {
    re.capture_names().flatten().any(|n| n == name)
}

fn parse_template(template: &str) -> Result<Vec<Part>, JwksEndpointError> {
    let malformed = || JwksEndpointError::MalformedPlaceholder(template.to_owned());
    let mut parts = Vec::new();
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        if start > 0 {
            parts.push(Part::Text(rest[..start].to_owned()));
        }
        let after = &rest[start + 2..];
        let end = after.find("}}").ok_or_else(malformed)?;
        let name = &after[..end];
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(malformed());
        }
        parts.push(Part::Var(name.to_owned()));
        rest = &after[end + 2..];
    }
    if rest.contains("}}") {
        return Err(malformed());
    }
    if !rest.is_empty() {
        parts.push(Part::Text(rest.to_owned()));
    }
    Ok(parts)
}

/// The finite set of strings group `name` of `pattern` matches, or why it is not finite.
fn literal_values(
    name: &str,
    which: &'static str,
    pattern: &str,
) -> Result<BTreeSet<String>, JwksEndpointError> {
    let parsed =
        ast::parse::Parser::new()
            .parse(pattern)
            .map_err(|e| JwksEndpointError::BadRegex {
                which,
                message: e.to_string(),
            })?;
    let group = find_group(&parsed, name)
        .ok_or_else(|| JwksEndpointError::UndefinedPlaceholder(name.to_owned()))?;
    let open = |found: String| JwksEndpointError::OpenEndedGroup {
        name: name.to_owned(),
        which,
        found,
    };
    let values = enumerate(group, pattern).map_err(|e| match e {
        Enumerate::Open(found) => open(found),
        Enumerate::TooMany => JwksEndpointError::TooManyValues(name.to_owned()),
    })?;
    if let Some(bad) = values.iter().find(|v| !is_safe_value(v)) {
        return Err(JwksEndpointError::UnsafeValue {
            name: name.to_owned(),
            value: bad.clone(),
        });
    }
    Ok(values)
}

/// The piece of `pattern` at `span`, quoted for an error message.
fn quote(pattern: &str, span: &ast::Span) -> String {
    pattern
        .get(span.start.offset..span.end.offset)
        .map(|s| format!("`{s}`"))
        .unwrap_or_default()
}

fn find_group<'a>(node: &'a Ast, name: &str) -> Option<&'a Ast> {
    match node {
        Ast::Group(group) => match &group.kind {
            GroupKind::CaptureName { name: n, .. } if n.name == name => Some(&group.ast),
            _ => find_group(&group.ast, name),
        },
        Ast::Alternation(alt) => alt.asts.iter().find_map(|a| find_group(a, name)),
        Ast::Concat(concat) => concat.asts.iter().find_map(|a| find_group(a, name)),
        Ast::Repetition(rep) => find_group(&rep.ast, name),
        _ => None,
    }
}

enum Enumerate {
    Open(String),
    TooMany,
}

/// Every string `node` matches, when it is built only of literals, concatenation, alternation
/// and plain groups.
fn enumerate(node: &Ast, pattern: &str) -> Result<BTreeSet<String>, Enumerate> {
    let open = |what: &str, span: &ast::Span| {
        Err(Enumerate::Open(format!("{what} {}", quote(pattern, span))))
    };
    match node {
        Ast::Empty(_) => Ok(BTreeSet::from([String::new()])),
        Ast::Literal(literal) => Ok(BTreeSet::from([literal.c.to_string()])),
        Ast::Group(group) => match &group.kind {
            GroupKind::NonCapturing(flags) if !flags.items.is_empty() => {
                open("a group with flags", &group.span)
            }
            _ => enumerate(&group.ast, pattern),
        },
        Ast::Alternation(alt) => {
            let mut all = BTreeSet::new();
            for branch in &alt.asts {
                all.extend(enumerate(branch, pattern)?);
                if all.len() > MAX_VALUES {
                    return Err(Enumerate::TooMany);
                }
            }
            Ok(all)
        }
        Ast::Concat(concat) => {
            let mut all = BTreeSet::from([String::new()]);
            for piece in &concat.asts {
                let next = enumerate(piece, pattern)?;
                if all.len().saturating_mul(next.len()) > MAX_VALUES {
                    return Err(Enumerate::TooMany);
                }
                all = all
                    .iter()
                    .flat_map(|head| next.iter().map(move |tail| format!("{head}{tail}")))
                    .collect();
            }
            Ok(all)
        }
        Ast::Dot(span) => open("any character", span),
        Ast::Flags(flags) => open("flags", &flags.span),
        Ast::Assertion(assertion) => open("an assertion", &assertion.span),
        Ast::ClassUnicode(class) => open("a character class", &class.span),
        Ast::ClassPerl(class) => open("a character class", &class.span),
        Ast::ClassBracketed(class) => open("a character class", &class.span),
        Ast::Repetition(rep) => open("a repetition", &rep.span),
    }
}

/// A value that cannot change the URL's structure: no path separators or traversal, no query,
/// fragment, userinfo or percent-escapes, no whitespace or control characters.
fn is_safe_value(value: &str) -> bool {
    !value.is_empty()
        && !value.contains("..")
        && !value.chars().any(|c| {
            matches!(c, '/' | '\\' | '?' | '#' | '@' | '%') || c.is_whitespace() || c.is_control()
        })
}

#[cfg(test)]
mod tests;
