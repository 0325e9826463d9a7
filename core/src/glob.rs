//! Channel name patterns for the `channels` API method: a small glob.
//!
//! Syntax: `*` any run of characters (including none), `?` exactly one character, `[abc]` one of
//! the listed characters, `[a-z]` one in the range, `[!...]` one not listed, `\x` the character
//! `x` itself. Everything else matches itself. The empty pattern matches every channel.
//! Centrifugo's patterns (gobwas/glob) also have `{a,b}` alternatives; here `{`, `}` and `,` are
//! ordinary characters.

use thiserror::Error;

/// A pattern that does not parse.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum GlobError {
    #[error("unclosed character class")]
    UnclosedClass,
    #[error("empty character class")]
    EmptyClass,
    #[error("character range {0:?}-{1:?} is reversed")]
    ReversedRange(char, char),
    #[error("pattern ends with an escape")]
    TrailingEscape,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Literal(char),
    AnyOne,
    AnyRun,
    Class {
        negated: bool,
        ranges: Vec<(char, char)>,
    },
}

impl Token {
    /// For the tokens that consume exactly one character.
    fn matches(&self, c: char) -> bool {
        match self {
            Token::Literal(l) => *l == c,
            Token::AnyOne => true,
            Token::AnyRun => false,
            Token::Class { negated, ranges } => {
                ranges.iter().any(|&(lo, hi)| lo <= c && c <= hi) != *negated
            }
        }
    }
}

/// A compiled pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Glob {
    source: String,
    tokens: Vec<Token>,
}

impl Glob {
    /// Compiles `pattern`.
    pub fn new(pattern: &str) -> Result<Glob, GlobError> {
        let mut tokens = Vec::new();
        let mut chars = pattern.chars();
        while let Some(c) = chars.next() {
            let token = match c {
                '*' => {
                    if tokens.last() == Some(&Token::AnyRun) {
                        continue;
                    }
                    Token::AnyRun
                }
                '?' => Token::AnyOne,
                '\\' => Token::Literal(chars.next().ok_or(GlobError::TrailingEscape)?),
                '[' => parse_class(&mut chars)?,
                c => Token::Literal(c),
            };
            tokens.push(token);
        }
        Ok(Glob {
            source: pattern.to_owned(),
            tokens,
        })
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// Whether `text` matches the whole pattern.
    pub fn matches(&self, text: &str) -> bool {
        if self.source.is_empty() {
            return true;
        }
        let text: Vec<char> = text.chars().collect();
        let (mut p, mut t) = (0, 0);
        // Where to resume after the last `*`: (its token index, text index it last tried).
        let mut resume: Option<(usize, usize)> = None;
        while t < text.len() {
            match self.tokens.get(p) {
                Some(Token::AnyRun) => {
                    resume = Some((p, t));
                    p += 1;
                }
                Some(token) if token.matches(text[t]) => {
                    p += 1;
                    t += 1;
                }
                _ => match resume {
                    Some((star, tried)) => {
                        p = star + 1;
                        t = tried + 1;
                        resume = Some((star, tried + 1));
                    }
                    None => return false,
                },
            }
        }
        self.tokens[p..].iter().all(|token| *token == Token::AnyRun)
    }
}

fn parse_class(chars: &mut std::str::Chars<'_>) -> Result<Token, GlobError> {
    let mut negated = false;
    let mut ranges = Vec::new();
    let mut first = true;
    loop {
        let c = chars.next().ok_or(GlobError::UnclosedClass)?;
        match c {
            '!' if first && !negated => {
                negated = true;
                continue;
            }
            ']' => break,
            _ => {}
        }
        first = false;
        let lo = if c == '\\' {
            chars.next().ok_or(GlobError::UnclosedClass)?
        } else {
            c
        };
        // A `-` followed by `]` is a literal `-`.
        let mut lookahead = chars.clone();
        if lookahead.next() == Some('-') && !matches!(lookahead.next(), Some(']') | None) {
            chars.next();
            let mut hi = chars.next().ok_or(GlobError::UnclosedClass)?;
            if hi == '\\' {
                hi = chars.next().ok_or(GlobError::UnclosedClass)?;
            }
            if hi < lo {
                return Err(GlobError::ReversedRange(lo, hi));
            }
            ranges.push((lo, hi));
        } else {
            ranges.push((lo, lo));
        }
    }
    if ranges.is_empty() {
        return Err(GlobError::EmptyClass);
    }
    Ok(Token::Class { negated, ranges })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_whole_names() {
        let table: &[(&str, &str, bool)] = &[
            ("", "anything", true),
            ("", "", true),
            ("news", "news", true),
            ("news", "news2", false),
            ("*", "", true),
            ("*", "chat:room", true),
            ("chat:*", "chat:room", true),
            ("chat:*", "chat:", true),
            ("chat:*", "news:room", false),
            ("*:room", "chat:room", true),
            ("*room*", "chat:big-room-1", true),
            ("a*b*c", "axxbyyc", true),
            ("a*b*c", "axxbyy", false),
            ("a**c", "abc", true),
            ("?", "x", true),
            ("?", "", false),
            ("?", "é", true),
            ("room?", "room1", true),
            ("room?", "room12", false),
            ("room[12]", "room1", true),
            ("room[12]", "room3", false),
            ("room[0-9]", "room7", true),
            ("room[!0-9]", "room7", false),
            ("room[!0-9]", "roomx", true),
            ("[a-c-]", "-", true),
            ("[]", "x", false), // an error, see below
            ("\\*", "*", true),
            ("\\*", "x", false),
            ("{a,b}", "{a,b}", true),
        ];
        for &(pattern, text, expected) in table {
            match Glob::new(pattern) {
                Ok(glob) => assert_eq!(glob.matches(text), expected, "{pattern:?} ~ {text:?}"),
                Err(_) => assert!(!expected, "{pattern:?} should compile"),
            }
        }
    }

    #[test]
    fn bad_patterns_are_refused() {
        assert_eq!(Glob::new("[ab").unwrap_err(), GlobError::UnclosedClass);
        assert_eq!(Glob::new("[]").unwrap_err(), GlobError::EmptyClass);
        assert_eq!(
            Glob::new("[z-a]").unwrap_err(),
            GlobError::ReversedRange('z', 'a')
        );
        assert_eq!(Glob::new("ab\\").unwrap_err(), GlobError::TrailingEscape);
    }

    #[test]
    fn many_stars_stay_linear_enough() {
        let glob = Glob::new(&"a*".repeat(50)).unwrap();
        assert!(!glob.matches(&"a".repeat(49)));
        assert!(glob.matches(&"a".repeat(60)));
    }
}
