//! Closed sets of configuration values, spelled exactly as Centrifugo spells them.
//!
//! An unknown spelling is a load error that names the key and lists the accepted values.

use std::fmt;

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Defines a string enum: each variant has its canonical spelling (what serialization writes)
/// and optional aliases (also accepted; `""` is how Centrifugo spells several defaults).
macro_rules! string_enum {
    (
        $(#[$meta:meta])*
        pub enum $name:ident default $default:ident {
            $( $(#[$vmeta:meta])* $variant:ident = $spelling:literal $(| $alias:literal)* ),+ $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum $name {
            $( $(#[$vmeta])* $variant ),+
        }

        impl $name {
            /// Every accepted spelling, canonical ones and aliases.
            pub const ACCEPTED: &'static [&'static str] = &[$($spelling $(, $alias)*),+];

            /// The canonical spelling.
            pub fn as_str(self) -> &'static str {
                match self {
                    $( Self::$variant => $spelling ),+
                }
            }

            /// The variant for a spelling, if it is one of [`Self::ACCEPTED`].
            pub fn parse(value: &str) -> Option<Self> {
                match value {
                    $( $spelling $(| $alias)* => Some(Self::$variant), )+
                    _ => None,
                }
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::$default
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(self.as_str())
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                deserializer.deserialize_str(SpellingVisitor($name::ACCEPTED, $name::parse))
            }
        }
    };
}

/// Deserializes one spelling out of an accepted list.
struct SpellingVisitor<T>(&'static [&'static str], fn(&str) -> Option<T>);

impl<T> Visitor<'_> for SpellingVisitor<T> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "one of {}", accepted_list(self.0))
    }

    fn visit_str<E: de::Error>(self, value: &str) -> Result<T, E> {
        (self.1)(value).ok_or_else(|| {
            E::custom(format!(
                "unknown value {value:?} (accepted: {})",
                accepted_list(self.0)
            ))
        })
    }
}

fn accepted_list(accepted: &[&str]) -> String {
    accepted
        .iter()
        .map(|s| format!("{s:?}"))
        .collect::<Vec<_>>()
        .join(", ")
}

string_enum! {
    /// `log.level`.
    pub enum LogLevel default Info {
        /// Log nothing.
        None = "none",
        /// Everything, including per-message tracing.
        Trace = "trace",
        /// Debugging detail.
        Debug = "debug",
        /// Normal operation (the default).
        Info = "info",
        /// Problems that do not stop the server.
        Warn = "warn",
        /// Errors only.
        Error = "error",
    }
}

string_enum! {
    /// `engine.type`: where broker and presence state live unless `broker` /
    /// `presence_manager` are enabled separately.
    pub enum EngineType default Memory {
        /// In-process (single node; the default).
        Memory = "memory",
        /// Redis (`engine.redis`).
        Redis = "redis",
    }
}

string_enum! {
    /// `broker.type`.
    pub enum BrokerType default Memory {
        /// In-process (the default).
        Memory = "memory",
        /// Redis (`broker.redis`).
        Redis = "redis",
        /// NATS PUB/SUB (`broker.nats`); no history.
        Nats = "nats",
        /// Redis for history plus NATS for PUB/SUB (`broker.redisnats`, not supported yet).
        RedisNats = "redisnats",
        /// PostgreSQL stream broker (`broker.postgres`).
        Postgres = "postgres",
    }
}

string_enum! {
    /// `presence_manager.type`.
    pub enum PresenceManagerType default Memory {
        /// In-process (the default).
        Memory = "memory",
        /// Redis (`presence_manager.redis`).
        Redis = "redis",
    }
}

string_enum! {
    /// A namespace's `subscription_type`. `""` is accepted as `stream`.
    pub enum SubscriptionType default Stream {
        /// Classic publication stream (the default).
        Stream = "stream" | "",
        /// Keyed state.
        Map = "map",
        /// Keyed state of the clients present in a channel.
        MapClients = "map_clients",
        /// Keyed state of the users present in a channel.
        MapUsers = "map_users",
        /// Shared polling of backend state.
        SharedPoll = "shared_poll",
    }
}

string_enum! {
    /// `force_recovery_mode`. `""` is accepted as `stream`.
    pub enum RecoveryMode default Stream {
        /// Recover every missed publication (the default).
        Stream = "stream" | "",
        /// Recover only the latest publication.
        Cache = "cache",
    }
}

string_enum! {
    /// `publication_data_format` (channel-wide or per namespace).
    pub enum PublicationDataFormat default Any {
        /// `""`: any non-empty payload (the default).
        Any = "",
        /// Payload must be valid JSON.
        Json = "json",
        /// Payload must be a JSON object.
        JsonObject = "json_object",
        /// Binary payloads; empty data allowed.
        Binary = "binary",
    }
}

string_enum! {
    /// `http_api.error_mode` / `grpc_api.error_mode`.
    pub enum ErrorMode default Body {
        /// `""`: HTTP 200 with the error in the response body (the default).
        Body = "",
        /// Errors map to transport status codes.
        Transport = "transport",
    }
}

string_enum! {
    /// `map.mode`; required when `subscription_type` is a map type.
    pub enum MapMode default Unset {
        /// `""`: not set (the default; only valid for non-map namespaces).
        Unset = "",
        /// Entries expire by `key_ttl`; no stream.
        Ephemeral = "ephemeral",
        /// Entries expire by `key_ttl`; changes kept in a stream for recovery.
        Recoverable = "recoverable",
        /// Entries never expire; changes kept in a stream.
        Persistent = "persistent",
    }
}

string_enum! {
    /// `map.client_key`: key client publications by connection or by user.
    pub enum MapClientKey default Unset {
        /// `""`: the client chooses keys (the default).
        Unset = "",
        /// Key is the client (connection) id.
        ClientId = "client_id",
        /// Key is the user id.
        UserId = "user_id",
    }
}

string_enum! {
    /// `shared_poll.mode`. `""` is accepted as `versionless`.
    pub enum SharedPollMode default Versionless {
        /// Backend state has no versions (the default).
        Versionless = "versionless" | "",
        /// Backend state carries versions.
        Versioned = "versioned",
    }
}

string_enum! {
    /// An entry of `allowed_delta_types`.
    pub enum DeltaType default Fossil {
        /// Fossil SCM delta encoding (the only one).
        Fossil = "fossil",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_spellings_round_trip() {
        let table: &[(&str, SubscriptionType)] = &[
            ("\"stream\"", SubscriptionType::Stream),
            ("\"\"", SubscriptionType::Stream),
            ("\"map\"", SubscriptionType::Map),
            ("\"map_clients\"", SubscriptionType::MapClients),
            ("\"map_users\"", SubscriptionType::MapUsers),
            ("\"shared_poll\"", SubscriptionType::SharedPoll),
        ];
        for (json, want) in table {
            assert_eq!(
                serde_json::from_str::<SubscriptionType>(json).unwrap(),
                *want
            );
        }
        assert_eq!(
            serde_json::to_string(&SubscriptionType::Stream).unwrap(),
            "\"stream\""
        );
        assert_eq!(
            serde_json::to_string(&PublicationDataFormat::Any).unwrap(),
            "\"\""
        );
        assert_eq!(
            serde_json::to_string(&ErrorMode::Transport).unwrap(),
            "\"transport\""
        );
        assert_eq!(LogLevel::default(), LogLevel::Info);
        assert_eq!(RecoveryMode::parse(""), Some(RecoveryMode::Stream));
        assert_eq!(RecoveryMode::parse("cache"), Some(RecoveryMode::Cache));
        assert_eq!(MapMode::parse("persistent"), Some(MapMode::Persistent));
        assert_eq!(BrokerType::parse("redisnats"), Some(BrokerType::RedisNats));
        assert_eq!(MapClientKey::parse("user_id"), Some(MapClientKey::UserId));
        assert_eq!(SharedPollMode::parse(""), Some(SharedPollMode::Versionless));
    }

    #[test]
    fn unknown_spelling_lists_the_accepted_values() {
        let err = serde_json::from_str::<RecoveryMode>("\"Cache\"")
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown value \"Cache\""), "{err}");
        assert!(
            err.contains("accepted: \"stream\", \"\", \"cache\""),
            "{err}"
        );
        let err = serde_json::from_str::<EngineType>("\"nats\"")
            .unwrap_err()
            .to_string();
        assert!(err.contains("accepted: \"memory\", \"redis\""), "{err}");
        assert!(serde_json::from_str::<DeltaType>("\"xdelta\"").is_err());
        assert!(serde_json::from_str::<LogLevel>("3").is_err());
    }
}
