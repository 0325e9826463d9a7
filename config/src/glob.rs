//! Glob patterns, as Centrifugo's (gobwas/glob) for `client.allowed_origins` and the `channels`
//! API: `*` (any run of characters), `?` (one character), `[abc]` / `[a-z]` / `[!a-z]` (one
//! character of a class) and `{one,two}` (alternatives). A backslash makes the next character
//! literal. [`ChannelPattern`] is the `channels` filter, where the empty pattern means every
//! channel.
//!
//! Matching is linear in the text for each alternative (no backtracking blow-up on hostile
//! input such as a long `Origin` header or channel name).

/// A compiled glob pattern.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Glob {
    source: String,
    /// Every expansion of the `{..}` alternatives, each a flat token list.
    alternatives: Vec<Vec<Token>>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Token {
    Literal(char),
    AnyOne,
    AnyRun,
    Class {
        negated: bool,
        ranges: Vec<(char, char)>,
    },
}

/// Most expansions of `{..}` one pattern may have.
const MAX_ALTERNATIVES: usize = 64;
/// Most `{..}` groups one pattern may have: expansion recurses per group, and a pattern may come
/// from an API request, so a long run of groups must not reach the stack's end.
const MAX_GROUPS: usize = 16;

/// Why a pattern was rejected.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GlobError {
    pub pattern: String,
    pub reason: &'static str,
}

impl std::fmt::Display for GlobError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "bad glob pattern {:?}: {}", self.pattern, self.reason)
    }
}

impl std::error::Error for GlobError {}

impl Glob {
    pub fn new(pattern: &str) -> Result<Glob, GlobError> {
        let error = |reason| GlobError {
            pattern: pattern.to_owned(),
            reason,
        };
        let chars: Vec<char> = pattern.chars().collect();
        if group_count(&chars) > MAX_GROUPS {
            return Err(error("too many {..} groups"));
        }
        let alternatives = expand(&chars).map_err(error)?;
        let alternatives = alternatives
            .iter()
            .map(|flat| tokenize(flat))
            .collect::<Result<Vec<_>, _>>()
            .map_err(error)?;
        Ok(Glob {
            source: pattern.to_owned(),
            alternatives,
        })
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    pub fn matches(&self, text: &str) -> bool {
        let text: Vec<char> = text.chars().collect();
        self.alternatives
            .iter()
            .any(|tokens| matches_tokens(tokens, &text))
    }
}

/// The characters that give a pattern its structure, with their positions: those neither
/// escaped nor inside a `[..]` class (the class brackets themselves are left out too).
fn structural(chars: &[char]) -> impl Iterator<Item = (usize, char)> + '_ {
    let (mut i, mut in_class) = (0, false);
    std::iter::from_fn(move || {
        while i < chars.len() {
            let (at, c) = (i, chars[i]);
            i += 1;
            match c {
                '\\' => i += 1,
                '[' if !in_class => in_class = true,
                ']' if in_class => in_class = false,
                _ if !in_class => return Some((at, c)),
                _ => {}
            }
        }
        None
    })
}

/// How many `{` open a group.
fn group_count(chars: &[char]) -> usize {
    structural(chars).filter(|&(_, c)| c == '{').count()
}

/// Expands `{a,b}` groups (nesting allowed) into flat patterns, keeping escapes as they are.
fn expand(chars: &[char]) -> Result<Vec<Vec<char>>, &'static str> {
    // The first group, if any; everything after it is expanded recursively.
    let first = structural(chars).find(|&(_, c)| c == '{' || c == '}');
    let Some((i, c)) = first else {
        return Ok(vec![chars.to_vec()]);
    };
    if c == '}' {
        return Err("unbalanced '}'");
    }
    let (options, end) = split_group(chars, i)?;
    let prefix = &chars[..i];
    let suffixes = expand(&chars[end + 1..])?;
    let mut out = Vec::new();
    for option in options {
        for middle in expand(option)? {
            for suffix in &suffixes {
                if out.len() == MAX_ALTERNATIVES {
                    return Err("too many {..} alternatives");
                }
                let mut flat = prefix.to_vec();
                flat.extend_from_slice(&middle);
                flat.extend_from_slice(suffix);
                out.push(flat);
            }
        }
    }
    Ok(out)
}

/// The options of the group opening at `open`, and the index of its closing `}`.
fn split_group(chars: &[char], open: usize) -> Result<(Vec<&[char]>, usize), &'static str> {
    let mut depth = 0usize;
    let mut start = open + 1;
    let mut options = Vec::new();
    for (i, c) in structural(chars).skip_while(|&(i, _)| i < open) {
        match c {
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    options.push(&chars[start..i]);
                    return Ok((options, i));
                }
            }
            ',' if depth == 1 => {
                options.push(&chars[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    Err("unbalanced '{'")
}

fn tokenize(chars: &[char]) -> Result<Vec<Token>, &'static str> {
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let token = match chars[i] {
            '\\' => {
                i += 1;
                Token::Literal(*chars.get(i).ok_or("trailing '\\'")?)
            }
            '*' => {
                // Runs of stars are one star.
                if tokens.last() == Some(&Token::AnyRun) {
                    i += 1;
                    continue;
                }
                Token::AnyRun
            }
            '?' => Token::AnyOne,
            '[' => {
                let (token, end) = class(chars, i)?;
                i = end;
                token
            }
            c => Token::Literal(c),
        };
        tokens.push(token);
        i += 1;
    }
    Ok(tokens)
}

/// Parses the class opening at `open`; returns it and the index of its `]`.
fn class(chars: &[char], open: usize) -> Result<(Token, usize), &'static str> {
    let mut i = open + 1;
    // `!` only, as gobwas/glob: `^` is an ordinary character.
    let negated = chars.get(i) == Some(&'!');
    if negated {
        i += 1;
    }
    let mut ranges = Vec::new();
    loop {
        let mut low = *chars.get(i).ok_or("unclosed '['")?;
        if low == ']' {
            if ranges.is_empty() {
                return Err("empty class '[]'");
            }
            return Ok((Token::Class { negated, ranges }, i));
        }
        if low == '\\' {
            i += 1;
            low = *chars.get(i).ok_or("unclosed '['")?;
        }
        let mut high = low;
        if let (Some('-'), Some(&end)) = (chars.get(i + 1), chars.get(i + 2))
            && end != ']'
        {
            high = end;
            i += 2;
            if high < low {
                return Err("reversed range in class");
            }
        }
        ranges.push((low, high));
        i += 1;
    }
}

/// Dynamic programming over (token, text position): `reach[j]` is true when the tokens seen so
/// far can consume exactly `text[..j]`.
fn matches_tokens(tokens: &[Token], text: &[char]) -> bool {
    // reach[j]: the tokens so far can match text[..j]. Two buffers, swapped per token.
    let mut reach = vec![false; text.len() + 1];
    let mut next = vec![false; text.len() + 1];
    reach[0] = true;
    for token in tokens {
        next.fill(false);
        match token {
            Token::AnyRun => {
                let mut on = false;
                for j in 0..=text.len() {
                    on |= reach[j];
                    next[j] = on;
                }
            }
            _ => {
                for j in 0..text.len() {
                    if reach[j] && single(token, text[j]) {
                        next[j + 1] = true;
                    }
                }
            }
        }
        std::mem::swap(&mut reach, &mut next);
        if !reach.contains(&true) {
            return false;
        }
    }
    reach[text.len()]
}

fn single(token: &Token, c: char) -> bool {
    match token {
        Token::Literal(l) => *l == c,
        Token::AnyOne => true,
        Token::AnyRun => true,
        Token::Class { negated, ranges } => {
            ranges.iter().any(|&(low, high)| low <= c && c <= high) != *negated
        }
    }
}

/// The `channels` filter: a glob, or every channel for the empty pattern.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChannelPattern(Option<Glob>);

impl ChannelPattern {
    pub fn new(pattern: &str) -> Result<ChannelPattern, GlobError> {
        if pattern.is_empty() {
            return Ok(ChannelPattern(None));
        }
        Glob::new(pattern).map(|glob| ChannelPattern(Some(glob)))
    }

    /// The pattern as written (empty for every channel).
    pub fn as_str(&self) -> &str {
        self.0.as_ref().map_or("", Glob::as_str)
    }

    pub fn matches(&self, channel: &str) -> bool {
        self.0.as_ref().is_none_or(|glob| glob.matches(channel))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn glob(p: &str) -> Glob {
        Glob::new(p).unwrap()
    }

    #[test]
    fn stars_questions_and_literals() {
        assert!(glob("*").matches(""));
        assert!(glob("*").matches("anything at all"));
        assert!(glob("news").matches("news"));
        assert!(!glob("news").matches("news2"));
        assert!(glob("chat:*").matches("chat:room"));
        assert!(!glob("chat:*").matches("news:room"));
        assert!(glob("a?c").matches("abc"));
        assert!(!glob("a?c").matches("ac"));
        assert!(glob("*b*").matches("abc"));
        assert!(glob("a**c").matches("ac"));
        assert!(glob(r"a\*").matches("a*"));
        assert!(!glob(r"a\*").matches("ab"));
    }

    #[test]
    fn classes_and_alternatives() {
        assert!(glob("room[0-9]").matches("room7"));
        assert!(!glob("room[0-9]").matches("roomx"));
        assert!(glob("room[!0-9]").matches("roomx"));
        assert!(glob("[abc]x").matches("bx"));
        assert!(glob("https://{a,b}.example.com").matches("https://b.example.com"));
        assert!(!glob("https://{a,b}.example.com").matches("https://c.example.com"));
        assert!(glob("{x,y{1,2}}").matches("y2"));
        assert!(Glob::new("{a").is_err());
        assert!(Glob::new("[a").is_err());
        assert!(Glob::new("a}").is_err());
        assert!(Glob::new("[z-a]").is_err());
        assert!(glob("[^a]").matches("^"));
        assert!(!glob("[^a]").matches("b"));
        assert!(glob(r"\{a,b\}").matches("{a,b}"));
    }

    /// Arbitrary patterns over the special characters never panic, whether they parse or not,
    /// and whatever parses matches arbitrary text without panicking (a fixed-seed sweep; the
    /// same inputs every run).
    #[test]
    fn arbitrary_patterns_never_panic() {
        const ALPHABET: &[char] = &[
            '{', '}', '[', ']', '!', '^', '-', '*', '?', ',', '\\', 'a', 'é',
        ];
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move |bound: usize| {
            // xorshift64*: cheap, deterministic, good enough to spread the inputs.
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            (state.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 33) as usize % bound
        };
        let mut parsed = 0;
        for _ in 0..20_000 {
            let pattern: String = (0..next(24))
                .map(|_| ALPHABET[next(ALPHABET.len())])
                .collect();
            let text: String = (0..next(12))
                .map(|_| ALPHABET[next(ALPHABET.len())])
                .collect();
            if let Ok(glob) = Glob::new(&pattern) {
                parsed += 1;
                glob.matches(&text);
            }
        }
        assert!(
            parsed > 1_000,
            "the sweep should reach the matcher ({parsed} parsed)"
        );
    }

    #[test]
    fn group_runs_are_bounded() {
        // Would recurse once per group: refused before expanding.
        assert!(Glob::new(&"{a}".repeat(100_000)).is_err());
        assert!(Glob::new(&"{".repeat(100_000)).is_err());
        assert!(glob(&"{a}".repeat(MAX_GROUPS)).matches(&"a".repeat(MAX_GROUPS)));
    }

    #[test]
    fn hostile_text_does_not_blow_up() {
        let pattern = glob("*a*a*a*a*a*a*a*b");
        let text = "a".repeat(10_000);
        assert!(!pattern.matches(&text));
    }

    #[test]
    fn channel_names() {
        let table: &[(&str, &str, bool)] = &[
            ("", "anything", true),
            ("", "", true),
            ("chat:*", "chat:", true),
            ("*:room", "chat:room", true),
            ("*room*", "chat:big-room-1", true),
            ("a*b*c", "axxbyy", false),
            ("?", "é", true),
            ("room?", "room12", false),
            ("[a-c-]", "-", true),
            ("chat:{a,b}", "chat:b", true),
            ("chat:{a,b}", "chat:{a,b}", false),
        ];
        for &(pattern, channel, expected) in table {
            let filter = ChannelPattern::new(pattern).unwrap();
            assert_eq!(
                filter.matches(channel),
                expected,
                "{pattern:?} ~ {channel:?}"
            );
            assert_eq!(filter.as_str(), pattern);
        }
        assert!(ChannelPattern::new("[]").is_err());
        assert!(ChannelPattern::new("ab\\").is_err());
    }
}
