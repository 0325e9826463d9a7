//! Channel names (docs/protocol.md §7.3): which namespace a channel belongs to, whether it is
//! private or user-limited, and whether its name is acceptable.
//!
//! A [`ChannelResolver`] is built once from the `channel` config section (compiling each
//! namespace's `channel_regex`) and answers per channel without allocating.

use crate::config::{Channel, ChannelOptions};
use regex::Regex;
use std::collections::HashMap;
use thiserror::Error;

/// Why a channel name is not acceptable. Mapped to client codes in [`crate::outcome`].
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum ChannelError {
    #[error("empty channel name")]
    Empty,
    #[error("channel name of {length} bytes is longer than {max}")]
    TooLong { length: usize, max: usize },
    #[error("unknown namespace {0:?}")]
    UnknownNamespace(String),
    #[error("channel name does not match the namespace's rules")]
    InvalidName,
}

/// A namespace's rules, ready to apply.
#[derive(Debug)]
struct Rules {
    options: ChannelOptions,
    regex: Option<Regex>,
}

impl Rules {
    fn new(options: &ChannelOptions) -> Result<Rules, regex::Error> {
        let regex = match options.channel_regex.as_str() {
            "" => None,
            pattern => Some(Regex::new(pattern)?),
        };
        Ok(Rules {
            options: options.clone(),
            regex,
        })
    }

    /// The regex over the part after the namespace, or without one, an ASCII name.
    fn name_matches(&self, channel: &str, rest: &str) -> bool {
        match &self.regex {
            Some(regex) => regex.is_match(rest),
            None => channel.is_ascii(),
        }
    }
}

/// Resolves channel names against the configured namespaces.
#[derive(Debug)]
pub struct ChannelResolver {
    namespaces: HashMap<String, Rules>,
    without_namespace: Rules,
    private_prefix: String,
    namespace_boundary: String,
    user_boundary: String,
    user_separator: String,
    max_length: usize,
}

/// What a channel name means.
#[derive(Debug, Clone, Copy)]
pub struct ResolvedChannel<'r> {
    /// `None` for channels without a namespace.
    pub namespace: Option<&'r str>,
    pub options: &'r ChannelOptions,
    /// Starts with the private prefix: subscribing needs a subscription token.
    pub private: bool,
}

impl ChannelResolver {
    /// Fails only on a `channel_regex` that does not compile (config validation reports those
    /// first, by key path).
    pub fn new(config: &Channel) -> Result<ChannelResolver, regex::Error> {
        let namespaces = config
            .namespaces
            .iter()
            .map(|ns| Ok((ns.name.clone(), Rules::new(&ns.options)?)))
            .collect::<Result<_, regex::Error>>()?;
        Ok(ChannelResolver {
            namespaces,
            without_namespace: Rules::new(&config.without_namespace)?,
            private_prefix: config.private_prefix.clone(),
            namespace_boundary: config.namespace_boundary.clone(),
            user_boundary: config.user_boundary.clone(),
            user_separator: config.user_separator.clone(),
            max_length: match config.max_length {
                0 => 255,
                max => max as usize,
            },
        })
    }

    /// Finds the channel's namespace and checks its name: length, namespace existence, then the
    /// namespace's `channel_regex` over the part after the namespace (or, without a regex, that
    /// the name is ASCII). For channels a client names (subscribe, publish, presence, history).
    pub fn resolve<'r>(&'r self, channel: &str) -> Result<ResolvedChannel<'r>, ChannelError> {
        if channel.is_empty() {
            return Err(ChannelError::Empty);
        }
        self.check_length(channel)?;
        let (resolved, rules, rest) = self.lookup(channel)?;
        if !rules.name_matches(channel, rest) {
            return Err(ChannelError::InvalidName);
        }
        Ok(resolved)
    }

    /// Finds the channel's namespace only (unknown → [`ChannelError::UnknownNamespace`]),
    /// without length or name rules. For channels the server picks — a connection token's
    /// `channels` / `subs`, the connect proxy's result, the personal channel, the API
    /// `subscribe` — which Centrifugo only looks up (`Container.ChannelOptions`), so that, for
    /// example, the personal channel of a non-ASCII user id still works.
    pub fn resolve_namespace<'r>(
        &'r self,
        channel: &str,
    ) -> Result<ResolvedChannel<'r>, ChannelError> {
        self.lookup(channel).map(|(resolved, _, _)| resolved)
    }

    /// Whether the name passes its namespace's `channel_regex` (or, without one, is ASCII);
    /// false for an unknown namespace. Length is not checked.
    pub fn name_is_valid(&self, channel: &str) -> bool {
        self.lookup(channel)
            .is_ok_and(|(_, rules, rest)| rules.name_matches(channel, rest))
    }

    /// `channel.max_length` (a client subscribe checks it before anything else about the
    /// channel, as Centrifugo's `validateSubscribeRequest`).
    pub fn check_length(&self, channel: &str) -> Result<(), ChannelError> {
        if channel.len() > self.max_length {
            return Err(ChannelError::TooLong {
                length: channel.len(),
                max: self.max_length,
            });
        }
        Ok(())
    }

    /// The namespace of `channel`, its rules and the part of the name after the namespace. An
    /// empty namespace name (`:room`) means no namespace, as in Centrifugo, whose namespace
    /// names cannot be empty.
    fn lookup<'r, 'c>(
        &'r self,
        channel: &'c str,
    ) -> Result<(ResolvedChannel<'r>, &'r Rules, &'c str), ChannelError> {
        let (private, unprefixed) = match self.strip_private(channel) {
            Some(rest) => (true, rest),
            None => (false, channel),
        };
        let (namespace, rules, rest) = match self.split_namespace(unprefixed) {
            Some(("", rest)) => (None, &self.without_namespace, rest),
            Some((name, rest)) => match self.namespaces.get_key_value(name) {
                Some((name, rules)) => (Some(name.as_str()), rules, rest),
                None => return Err(ChannelError::UnknownNamespace(name.to_owned())),
            },
            None => (None, &self.without_namespace, unprefixed),
        };
        let resolved = ResolvedChannel {
            namespace,
            options: &rules.options,
            private,
        };
        Ok((resolved, rules, rest))
    }

    /// Whether `channel` is user-limited: its namespace has `allow_user_limited_channels` and
    /// the name holds the user boundary (`#`). Such a channel is open only to the users it lists
    /// (or with a subscription token, or in insecure mode): never to the subscribe proxies or
    /// `allow_subscribe_for_client`, as in Centrifugo.
    pub fn is_user_limited(&self, resolved: &ResolvedChannel<'_>, channel: &str) -> bool {
        resolved.options.allow_user_limited_channels
            && !self.user_boundary.is_empty()
            && channel.contains(self.user_boundary.as_str())
    }

    /// For a user-limited channel (`dialog#42,43`) whose options allow them: whether `user` is
    /// one of the listed users. False for channels that are not user-limited, and for the
    /// anonymous user (stricter than Centrifugo, which lets "" into `dialog#`).
    pub fn user_allowed(&self, resolved: &ResolvedChannel<'_>, channel: &str, user: &str) -> bool {
        if !self.is_user_limited(resolved, channel) || user.is_empty() {
            return false;
        }
        let Some(at) = channel.rfind(self.user_boundary.as_str()) else {
            return false;
        };
        channel[at + self.user_boundary.len()..]
            .split(self.user_separator.as_str())
            .any(|listed| listed == user)
    }

    fn strip_private<'c>(&self, channel: &'c str) -> Option<&'c str> {
        if self.private_prefix.is_empty() {
            return None;
        }
        channel.strip_prefix(self.private_prefix.as_str())
    }

    fn split_namespace<'c>(&self, channel: &'c str) -> Option<(&'c str, &'c str)> {
        if self.namespace_boundary.is_empty() {
            return None;
        }
        channel.split_once(self.namespace_boundary.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Namespace;

    fn resolver() -> ChannelResolver {
        let mut config = Channel::default();
        config.namespaces.push(Namespace::new(
            "chat",
            ChannelOptions {
                presence: true,
                ..Default::default()
            },
        ));
        config.namespaces.push(Namespace::new(
            "dialog",
            ChannelOptions {
                allow_user_limited_channels: true,
                ..Default::default()
            },
        ));
        config.namespaces.push(Namespace::new(
            "strict",
            ChannelOptions {
                channel_regex: "^[a-z]+$".into(),
                ..Default::default()
            },
        ));
        config.max_length = 40;
        ChannelResolver::new(&config).unwrap()
    }

    #[test]
    fn names_resolve_to_their_namespace() {
        let r = resolver();
        let chat = r.resolve("chat:room1").unwrap();
        assert_eq!(chat.namespace, Some("chat"));
        assert!(chat.options.presence && !chat.private);
        let private = r.resolve("$chat:secret").unwrap();
        assert_eq!(private.namespace, Some("chat"));
        assert!(private.private);
        let plain = r.resolve("news").unwrap();
        assert_eq!(plain.namespace, None);
        assert!(!plain.options.presence);
        // Only the first boundary splits.
        assert_eq!(r.resolve("chat:a:b").unwrap().namespace, Some("chat"));
    }

    #[test]
    fn bad_names_are_refused_with_their_reason() {
        let r = resolver();
        assert_eq!(r.resolve("").unwrap_err(), ChannelError::Empty);
        assert_eq!(
            r.resolve("nope:x").unwrap_err(),
            ChannelError::UnknownNamespace("nope".into())
        );
        assert_eq!(
            r.resolve("$nope:x").unwrap_err(),
            ChannelError::UnknownNamespace("nope".into())
        );
        assert_eq!(
            r.resolve(&"x".repeat(41)).unwrap_err(),
            ChannelError::TooLong {
                length: 41,
                max: 40
            }
        );
        assert!(r.resolve(&"x".repeat(40)).is_ok());
        assert_eq!(
            r.resolve("chat:café").unwrap_err(),
            ChannelError::InvalidName
        );
        assert_eq!(r.resolve("strict:abc").unwrap().namespace, Some("strict"));
        assert_eq!(
            r.resolve("strict:ABC").unwrap_err(),
            ChannelError::InvalidName
        );
    }

    #[test]
    fn server_chosen_channels_need_only_a_known_namespace() {
        let r = resolver();
        // (channel, resolve_namespace ok, name_is_valid)
        let table: &[(&str, bool, bool)] = &[
            ("chat:room", true, true),
            ("chat:café", true, false),
            ("#café", true, false),
            ("strict:ABC", true, false),
            ("nope:x", false, false),
        ];
        for (channel, known, valid) in table {
            assert_eq!(r.resolve_namespace(channel).is_ok(), *known, "{channel}");
            assert_eq!(r.name_is_valid(channel), *valid, "{channel}");
        }
        let long = format!("chat:{}", "x".repeat(50));
        assert!(r.resolve_namespace(&long).is_ok() && r.name_is_valid(&long));
        assert!(matches!(
            r.check_length(&long),
            Err(ChannelError::TooLong { .. })
        ));
    }

    #[test]
    fn an_empty_namespace_name_means_no_namespace() {
        let r = resolver();
        let resolved = r.resolve(":room").unwrap();
        assert_eq!(resolved.namespace, None);
        assert!(r.resolve("$:room").unwrap().private);
    }

    #[test]
    fn user_limited_channels_list_their_users() {
        let r = resolver();
        let channel = "dialog:talk#42,43";
        let resolved = r.resolve(channel).unwrap();
        assert!(r.user_allowed(&resolved, channel, "42"));
        assert!(r.user_allowed(&resolved, channel, "43"));
        assert!(!r.user_allowed(&resolved, channel, "4"));
        assert!(!r.user_allowed(&resolved, channel, ""));
        // The namespace must allow them.
        let chat = r.resolve("chat:talk#42").unwrap();
        assert!(!r.user_allowed(&chat, "chat:talk#42", "42"));
        // The last boundary counts.
        let nested = "dialog:a#1#2";
        assert!(r.user_allowed(&r.resolve(nested).unwrap(), nested, "2"));
        assert!(!r.user_allowed(&r.resolve(nested).unwrap(), nested, "1"));
    }

    #[test]
    fn a_bad_regex_fails_construction() {
        let mut config = Channel::default();
        config.without_namespace.channel_regex = "(".into();
        assert!(ChannelResolver::new(&config).is_err());
    }
}
