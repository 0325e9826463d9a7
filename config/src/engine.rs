//! Where shared state lives: `engine`, and the separately configured `broker` and
//! `presence_manager` (Redis, NATS, PostgreSQL sections).

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};

use super::duration::Duration;
use super::enums::{BrokerType, EngineType, PresenceManagerType};
use super::secret::Secret;
use super::server::Tls;

/// `engine`: broker and presence manager in one (used unless `broker.enabled` /
/// `presence_manager.enabled`).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(default)]
pub struct Engine {
    /// `memory` (default) or `redis`.
    #[serde(rename = "type")]
    pub kind: EngineType,
    /// Redis options when `type` is `redis`.
    pub redis: Redis,
}

/// `broker`: a broker configured apart from the engine.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(default)]
pub struct Broker {
    /// Use this section instead of `engine` for PUB/SUB and history. Default `false`.
    pub enabled: bool,
    /// `memory` (default), `redis`, `nats`, `redisnats` or `postgres`.
    #[serde(rename = "type")]
    pub kind: BrokerType,
    /// Options when `type` is `redis`.
    pub redis: Redis,
    /// Options when `type` is `nats` (no history, recovery or cache).
    pub nats: Nats,
    /// Options when `type` is `postgres`.
    pub postgres: Postgres,
}

/// `presence_manager`: presence storage configured apart from the engine.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(default)]
pub struct PresenceManager {
    /// Use this section instead of `engine` for presence. Default `false`.
    pub enabled: bool,
    /// `memory` (default) or `redis`.
    #[serde(rename = "type")]
    pub kind: PresenceManagerType,
    /// Options when `type` is `redis`.
    pub redis: Redis,
}

/// Redis connection and storage options (`engine.redis`, `broker.redis`,
/// `presence_manager.redis`). One struct serves all three, so broker-only keys
/// (`history_use_lists`) and presence-only keys (`presence_*`) are accepted, and ignored, in
/// the section that does not use them.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(default)]
pub struct Redis {
    /// Shard addresses: `redis://[user:pass@]host:port[/db]`, `rediss://…`, `unix://path` or
    /// `host:port`; a string or a list. Default `["redis://127.0.0.1:6379"]`.
    #[serde(deserialize_with = "string_or_list")]
    pub address: Vec<String>,
    /// Key prefix. Default `"centrifugo"`.
    pub prefix: String,
    /// Connect timeout. Default `1s`.
    pub connect_timeout: Duration,
    /// Read / write timeout. Default `4s`.
    pub io_timeout: Duration,
    /// Database number. Default `0`.
    pub db: u32,
    /// ACL user. Default `""`.
    pub user: String,
    /// Password (secret). Default `""`.
    pub password: Secret,
    /// `CLIENT SETNAME` value. Default `""`.
    pub client_name: String,
    /// Speak RESP2 even to RESP3 servers. Default `false`.
    pub force_resp2: bool,
    /// Redis Cluster seed addresses (enables cluster mode); per shard, comma-separated.
    /// Default `[]`.
    #[serde(deserialize_with = "string_or_list")]
    pub cluster_address: Vec<String>,
    /// TLS to Redis. Default: off.
    pub tls: Tls,
    /// Sentinel addresses (enables Sentinel mode); per shard, comma-separated. Default `[]`.
    #[serde(deserialize_with = "string_or_list")]
    pub sentinel_address: Vec<String>,
    /// Sentinel ACL user. Default `""`.
    pub sentinel_user: String,
    /// Sentinel password (secret). Default `""`.
    pub sentinel_password: Secret,
    /// Sentinel master name (required with `sentinel_address`). Default `""`.
    pub sentinel_master_name: String,
    /// `CLIENT SETNAME` towards Sentinel. Default `""`.
    pub sentinel_client_name: String,
    /// TLS to Sentinel. Default: off.
    pub sentinel_tls: Tls,
    /// Read from replicas. Default: off.
    pub replica_client: Toggle,
    /// Broker: keep history in lists (no pagination, idempotency or reverse). Default `false`.
    pub history_use_lists: bool,
    /// Presence: how long an entry lives without refresh. Default `60s`.
    pub presence_ttl: Duration,
    /// Presence: per-field hash expiry (Redis 7.4+). Default `false`.
    pub presence_hash_field_ttl: bool,
    /// Presence: keep a user hash for fast presence stats. Default `false`.
    pub presence_user_mapping: bool,
}

impl Default for Redis {
    fn default() -> Self {
        Redis {
            address: vec!["redis://127.0.0.1:6379".to_owned()],
            prefix: "centrifugo".to_owned(),
            connect_timeout: Duration::from_secs(1),
            io_timeout: Duration::from_secs(4),
            db: 0,
            user: String::new(),
            password: Secret::default(),
            client_name: String::new(),
            force_resp2: false,
            cluster_address: Vec::new(),
            tls: Tls::default(),
            sentinel_address: Vec::new(),
            sentinel_user: String::new(),
            sentinel_password: Secret::default(),
            sentinel_master_name: String::new(),
            sentinel_client_name: String::new(),
            sentinel_tls: Tls::default(),
            replica_client: Toggle::default(),
            history_use_lists: false,
            presence_ttl: Duration::from_secs(60),
            presence_hash_field_ttl: false,
            presence_user_mapping: false,
        }
    }
}

/// A section that is only switched on or off.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(default)]
pub struct Toggle {
    /// On. Default `false`.
    pub enabled: bool,
}

/// `broker.nats`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(default)]
pub struct Nats {
    /// Subject prefix. Default `"centrifugo"`.
    pub prefix: String,
    /// Server URL. Default `"nats://localhost:4222"`.
    pub url: String,
    /// Connect timeout. Default `1s`.
    pub dial_timeout: Duration,
    /// Write (flush) timeout. Default `1s`.
    pub write_timeout: Duration,
    /// TLS to NATS. Default: off.
    pub tls: Tls,
    /// Allow wildcard subscriptions. Default `false`.
    pub allow_wildcards: bool,
    /// Raw mode: publish payloads as-is to mapped subjects. Default: off.
    pub raw_mode: NatsRawMode,
}

impl Default for Nats {
    fn default() -> Self {
        Nats {
            prefix: "centrifugo".to_owned(),
            url: "nats://localhost:4222".to_owned(),
            dial_timeout: Duration::from_secs(1),
            write_timeout: Duration::from_secs(1),
            tls: Tls::default(),
            allow_wildcards: false,
            raw_mode: NatsRawMode::default(),
        }
    }
}

/// `broker.nats.raw_mode`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(default)]
pub struct NatsRawMode {
    /// On. Default `false`.
    pub enabled: bool,
    /// Substring replacements from channel to subject. Default `{}`.
    pub channel_replacements: BTreeMap<String, String>,
    /// Subject prefix in raw mode. Default `""`.
    pub prefix: String,
}

/// `broker.postgres`: PostgreSQL stream broker (see docs/brokers.md). Spindle uses `dsn`,
/// `pool_size`, `cleanup_interval`, `idempotent_result_ttl`, `stream_retention`,
/// `use_notify`, `table_prefix`, `skip_schema_init` and `outbox`; the other keys are accepted
/// for Centrifugo compatibility and ignored (16 delivery shards are fixed by the schema,
/// payloads are stored as BYTEA, tables are not partitioned).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(default)]
pub struct Postgres {
    /// Connection string, e.g. `postgres://user:pass@host:5432/db` (secret). Default `""`.
    pub dsn: Secret,
    /// TLS to PostgreSQL. Default: off.
    pub tls: Tls,
    /// Connections in the pool, 1..=1000. Default `16`; `0` = default.
    pub pool_size: u32,
    /// Delivery worker shards, 1..=1024. Default `8`; `0` = default.
    pub num_shards: u32,
    /// How often expired rows are removed. Default `1m`.
    pub cleanup_interval: Duration,
    /// Lifetime of idempotent publish results. Default `5m`.
    pub idempotent_result_ttl: Duration,
    /// Store payloads as BYTEA instead of JSONB. Default `false`.
    pub binary_data: bool,
    /// How long delivery (outbox) rows are kept for nodes catching up. Default `24h`.
    pub stream_retention: Duration,
    /// Wake the outbox readers with LISTEN/NOTIFY (else they only poll every
    /// `outbox.poll_interval`). Default `false`.
    pub use_notify: bool,
    /// Separate connection string for LISTEN (secret). Default `""`.
    pub notify_dsn: Secret,
    /// Table and function name prefix (`cf` gives `cf_stream_publish`). Default `"cf"`.
    pub table_prefix: String,
    /// Do not create or upgrade the schema on start (run `spindle migrate`). Default `false`.
    pub skip_schema_init: bool,
    /// Outbox polling.
    pub outbox: PostgresOutbox,
    /// Daily partitions created ahead. Default `2`; `0` = default.
    pub partition_lookahead_days: u32,
    /// Days a partition is kept. Default `7`; `0` = default.
    pub partition_retention_days: u32,
}

impl Default for Postgres {
    fn default() -> Self {
        Postgres {
            dsn: Secret::default(),
            tls: Tls::default(),
            pool_size: 16,
            num_shards: 8,
            cleanup_interval: Duration::from_secs(60),
            idempotent_result_ttl: Duration::from_secs(300),
            binary_data: false,
            stream_retention: Duration::from_secs(24 * 3_600),
            use_notify: false,
            notify_dsn: Secret::default(),
            table_prefix: "cf".to_owned(),
            skip_schema_init: false,
            outbox: PostgresOutbox::default(),
            partition_lookahead_days: 2,
            partition_retention_days: 7,
        }
    }
}

/// `broker.postgres.outbox`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(default)]
pub struct PostgresOutbox {
    /// Poll interval when idle. Default `100ms`.
    pub poll_interval: Duration,
    /// Rows per poll, 1..=100,000. Default `1000`; `0` = default.
    pub batch_size: u32,
}

impl Default for PostgresOutbox {
    fn default() -> Self {
        PostgresOutbox {
            poll_interval: Duration::from_millis(100),
            batch_size: 1000,
        }
    }
}

/// Accepts `"a"` or `["a", "b"]`.
fn string_or_list<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<String>, D::Error> {
    struct ListVisitor;

    impl<'de> Visitor<'de> for ListVisitor {
        type Value = Vec<String>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a string or a list of strings")
        }

        fn visit_str<E: de::Error>(self, value: &str) -> Result<Vec<String>, E> {
            Ok(if value.is_empty() {
                Vec::new()
            } else {
                vec![value.to_owned()]
            })
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<String>, A::Error> {
            let mut out = Vec::new();
            while let Some(item) = seq.next_element::<String>()? {
                out.push(item);
            }
            Ok(out)
        }
    }

    deserializer.deserialize_any(ListVisitor)
}

/// Checks the form of a PostgreSQL connection string (a `postgres://` / `postgresql://` URL or
/// libpq `key=value` pairs); whether it connects is checked on start. The DSN is never echoed:
/// it may hold a password.
pub(crate) fn check_postgres_dsn(dsn: &str) -> Result<(), String> {
    let dsn = dsn.trim();
    if dsn.is_empty() {
        return Ok(()); // reported as "must be set" by the caller
    }
    if let Some((scheme, rest)) = dsn.split_once("://") {
        return match scheme {
            "postgres" | "postgresql" if !rest.is_empty() => Ok(()),
            "postgres" | "postgresql" => Err("no host after the scheme".to_owned()),
            other => Err(format!(
                "unknown scheme {other:?} (use postgres:// or postgresql://)"
            )),
        };
    }
    if dsn.contains('=') {
        Ok(())
    } else {
        Err("expected a postgres:// URL or key=value pairs".to_owned())
    }
}

/// Table and function name prefix: it is spliced into SQL, so only a plain identifier.
pub(crate) fn check_table_prefix(prefix: &str) -> Result<(), String> {
    let mut chars = prefix.chars();
    let first = chars.next().is_some_and(|c| c.is_ascii_lowercase());
    let rest = chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if first && rest && prefix.len() <= 32 {
        Ok(())
    } else {
        Err(
            "use lower-case letters, digits and _, starting with a letter, at most 32 \
             characters"
                .to_owned(),
        )
    }
}

/// Checks one Redis address (a shard entry may hold several, comma-separated).
pub(crate) fn check_redis_address(entry: &str) -> Result<(), String> {
    for address in entry.split(',').map(str::trim) {
        check_one_redis_address(address).map_err(|reason| format!("{address:?}: {reason}"))?;
    }
    Ok(())
}

fn check_one_redis_address(address: &str) -> Result<(), String> {
    if address.is_empty() {
        return Err("empty address".to_owned());
    }
    let host_port = match address.split_once("://") {
        Some(("unix", path)) => {
            return if path.is_empty() {
                Err("empty socket path".to_owned())
            } else {
                Ok(())
            };
        }
        Some(("redis" | "rediss" | "tcp", rest)) => {
            let authority = rest.split(['/', '?']).next().unwrap_or_default();
            authority
                .rsplit_once('@')
                .map_or(authority, |(_, host)| host)
        }
        Some((scheme, _)) => {
            return Err(format!(
                "unknown scheme {scheme:?} (use redis, rediss, unix or tcp)"
            ));
        }
        None => address,
    };
    let Some((host, port)) = host_port.rsplit_once(':') else {
        return Err("expected host:port".to_owned());
    };
    if host.is_empty() {
        return Err("empty host".to_owned());
    }
    match port.parse::<u16>() {
        Ok(p) if p > 0 => Ok(()),
        _ => Err(format!("bad port {port:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn address_is_string_or_list() {
        let r: Redis = serde_json::from_str(r#"{"address": "redis://h:6379"}"#).unwrap();
        assert_eq!(r.address, vec!["redis://h:6379"]);
        let r: Redis = serde_json::from_str(r#"{"address": ["a:1", "b:2"]}"#).unwrap();
        assert_eq!(r.address, vec!["a:1", "b:2"]);
        assert_eq!(Redis::default().address, vec!["redis://127.0.0.1:6379"]);
        assert!(serde_json::from_str::<Redis>(r#"{"address": 5}"#).is_err());
    }

    #[test]
    fn redis_address_check() {
        for good in [
            "redis://127.0.0.1:6379",
            "rediss://user:pa:ss@host:6380/2",
            "unix:///tmp/redis.sock",
            "localhost:6379",
            "a:1,b:2",
            "[::1]:6379",
        ] {
            assert_eq!(check_redis_address(good), Ok(()), "{good}");
        }
        for (bad, reason) in [
            ("", "empty address"),
            ("localhost", "expected host:port"),
            ("http://h:1", "unknown scheme"),
            ("redis://h:notaport", "bad port"),
            ("redis://:6379", "empty host"),
            ("a:1,", "empty address"),
        ] {
            let err = check_redis_address(bad).unwrap_err();
            assert!(err.contains(reason), "{bad}: {err}");
        }
    }

    #[test]
    fn postgres_dsn_and_prefix_checks() {
        for good in [
            "postgres://postgres@127.0.0.1:5432/test",
            "postgresql://u:p@h/db?sslmode=disable",
            "host=127.0.0.1 user=postgres dbname=test",
        ] {
            assert_eq!(check_postgres_dsn(good), Ok(()), "{good}");
        }
        for bad in ["mysql://h/db", "postgres://", "127.0.0.1:5432"] {
            assert!(check_postgres_dsn(bad).is_err(), "{bad}");
        }
        assert_eq!(check_table_prefix("cf"), Ok(()));
        assert_eq!(check_table_prefix("app_2"), Ok(()));
        for bad in ["", "Cf", "2cf", "cf-x", "cf;drop", &"a".repeat(33)] {
            assert!(check_table_prefix(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn engine_type_uses_the_type_key() {
        let e: Engine = serde_json::from_str(r#"{"type": "redis"}"#).unwrap();
        assert_eq!(e.kind, EngineType::Redis);
        assert_eq!(serde_json::to_value(&e).unwrap()["type"], "redis");
        let b: Broker = serde_json::from_str(r#"{"enabled": true, "type": "nats"}"#).unwrap();
        assert_eq!((b.enabled, b.kind), (true, BrokerType::Nats));
        assert_eq!(b.nats.url, "nats://localhost:4222");
    }
}
