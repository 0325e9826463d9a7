//! Which Redis holds a channel, and how a channel's keys are named so that they stay together.
//!
//! Client-side sharding picks a shard with Centrifugo's function (jump consistent hash of the
//! FNV-1a 64 hash of the channel name), so that with the same list of addresses a channel
//! lands on the same shard index in both servers, and adding a shard at the end moves only
//! about 1/n of the channels.
//!
//! Every key and PUB/SUB channel of a channel carries the same Redis Cluster hash tag, so a
//! publish script touches one slot and its sharded PUBLISH goes to that slot's node. The tag is
//! the channel itself; a channel containing a brace would cut its own tag short (`}x` gives
//! an empty tag, which Redis ignores, hashing the whole key), so such a channel (and the empty
//! one) is tagged with the hex of its hash instead and its name follows the tag.

use super::super::BrokerError;
use fred::prelude::Config as FredConfig;
use fred::types::config::{Server, ServerConfig, TlsConfig};

/// FNV-1a, 64 bits.
fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for &byte in bytes {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

/// The shard (in `0..shards`) that holds `channel`: Lamping and Veach's jump consistent hash
/// over FNV-1a 64, computed with the same float steps as Centrifugo's `consistentIndex`.
pub(crate) fn shard_index(channel: &str, shards: usize) -> usize {
    if shards <= 1 {
        return 0;
    }
    let buckets = i64::try_from(shards).unwrap_or(i64::MAX);
    let mut key = fnv1a64(channel.as_bytes());
    let (mut b, mut j): (i64, i64) = (-1, 0);
    while j < buckets {
        b = j;
        key = key.wrapping_mul(2_862_933_555_777_941_757).wrapping_add(1);
        j = ((b + 1) as f64 * ((1_i64 << 31) as f64 / ((key >> 33) + 1) as f64)) as i64;
    }
    usize::try_from(b).unwrap_or(0)
}

/// `{channel}`, or `{<hash hex>}.channel` for a channel containing a brace or empty (whose
/// own tag would be cut short or empty).
pub(crate) fn tagged(channel: &str) -> String {
    if channel.is_empty() || channel.contains(['{', '}']) {
        format!("{{{:016x}}}.{channel}", fnv1a64(channel.as_bytes()))
    } else {
        format!("{{{channel}}}")
    }
}

/// The channel of a [`tagged`] name.
pub(crate) fn untag(name: &str) -> Option<&str> {
    let inner = name.strip_prefix('{')?;
    match inner.strip_suffix('}') {
        Some(channel) if !channel.is_empty() && !channel.contains(['{', '}']) => Some(channel),
        _ => {
            let (_, channel) = inner.split_once("}.")?;
            (tagged(channel) == name).then_some(channel)
        }
    }
}

/// One shard: a server, a cluster or a Sentinel-watched master.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RedisServer {
    /// `redis://…`, `rediss://…` (TLS) or `host:port`.
    Single(String),
    /// Seed nodes of a Redis Cluster (`redis://host:port` or `host:port`; the first one's
    /// scheme and credentials are used for all).
    Cluster(Vec<String>),
    /// Sentinels watching the master named `master_name`.
    Sentinel {
        /// Sentinel addresses.
        addresses: Vec<String>,
        /// The master's name in Sentinel.
        master_name: String,
        /// ACL user towards the sentinels (empty: none).
        sentinel_user: String,
        /// Password towards the sentinels (empty: none).
        sentinel_password: String,
    },
}

impl RedisServer {
    /// A short description for errors and logs.
    pub fn describe(&self) -> String {
        match self {
            RedisServer::Single(address) => address.clone(),
            RedisServer::Cluster(seeds) => format!("cluster {}", seeds.join(",")),
            RedisServer::Sentinel {
                addresses,
                master_name,
                ..
            } => format!("sentinel {} (master {master_name})", addresses.join(",")),
        }
    }

    /// True for a Redis Cluster, where delivery uses sharded PUB/SUB.
    pub fn is_cluster(&self) -> bool {
        matches!(self, RedisServer::Cluster(_))
    }
}

fn with_scheme(address: &str) -> String {
    if address.contains("://") {
        address.to_owned()
    } else {
        format!("redis://{address}")
    }
}

fn bad(address: &str, error: impl std::fmt::Display) -> BrokerError {
    BrokerError::Unavailable(format!("redis address {address:?}: {error}"))
}

/// TLS towards Redis (`engine.redis.tls`), also used for every `rediss://` address. The
/// fields are those of a client TLS block (see [`crate::tls`]): PEM text, a file path or base64.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RedisTls {
    /// TLS even for `redis://` / `host:port` addresses (`tls.enabled`).
    pub enabled: bool,
    /// The CA(s) that signed the server's certificate (`tls.server_ca_pem`); empty: the
    /// system's roots.
    pub server_ca_pem: String,
    /// A client certificate chain to present (`tls.cert_pem`, with `key_pem`); empty: none.
    pub cert_pem: String,
    /// The client certificate's key (`tls.key_pem`).
    pub key_pem: spindle_hub::config::Secret,
    /// Accept any server certificate (`tls.insecure_skip_verify`; tests only, logged).
    pub insecure_skip_verify: bool,
}

/// The rustls connector (ring provider) of `tls`.
fn tls_config(address: &str, tls: &RedisTls) -> Result<TlsConfig, BrokerError> {
    use fred::types::config::TlsConnector;
    let block = spindle_hub::config::Tls {
        enabled: true,
        cert_pem: tls.cert_pem.clone(),
        key_pem: tls.key_pem.clone(),
        server_ca_pem: tls.server_ca_pem.clone(),
        insecure_skip_verify: tls.insecure_skip_verify,
        ..Default::default()
    };
    let config = crate::tls::client_config(&block).map_err(|e| bad(address, format!("tls.{e}")))?;
    Ok(TlsConfig::from(TlsConnector::from(config)))
}

/// Parses one `redis://` / `rediss://` / `host:port` address: the fred config of that single
/// server (credentials, database and, for `rediss://` or `tls.enabled`, TLS).
pub(crate) fn single_config(address: &str, tls: &RedisTls) -> Result<FredConfig, BrokerError> {
    let url = with_scheme(address);
    let mut config = FredConfig::from_url_centralized(&url).map_err(|e| bad(address, e))?;
    if tls.enabled || url.starts_with("rediss://") {
        config.tls = Some(tls_config(address, tls)?);
    }
    Ok(config)
}

fn host_port(address: &str) -> Result<(String, u16), BrokerError> {
    match single_config(address, &RedisTls::default())?.server {
        ServerConfig::Centralized { server } => Ok((server.host.to_string(), server.port)),
        _ => Err(bad(address, "not a single server address")),
    }
}

/// The fred config of a shard.
pub(crate) fn fred_config(server: &RedisServer, tls: &RedisTls) -> Result<FredConfig, BrokerError> {
    match server {
        RedisServer::Single(address) => single_config(address, tls),
        RedisServer::Cluster(seeds) => {
            let first = seeds
                .first()
                .ok_or_else(|| bad("", "a cluster needs at least one seed address"))?;
            let mut config = single_config(first, tls)?;
            let hosts = seeds
                .iter()
                .map(|seed| host_port(seed))
                .collect::<Result<Vec<_>, _>>()?;
            config.server = ServerConfig::new_clustered(hosts);
            // A cluster has only database 0.
            config.database = None;
            Ok(config)
        }
        RedisServer::Sentinel {
            addresses,
            master_name,
            sentinel_user,
            sentinel_password,
        } => {
            let first = addresses
                .first()
                .ok_or_else(|| bad("", "sentinel mode needs at least one sentinel address"))?;
            let mut config = single_config(first, tls)?;
            // Credentials in a sentinel URL are the sentinel's, not the master's.
            config.username = None;
            config.password = None;
            config.database = None;
            let hosts = addresses
                .iter()
                .map(|address| host_port(address))
                .collect::<Result<Vec<_>, _>>()?;
            let hosts = hosts
                .into_iter()
                .map(|(host, port)| Server::new(host, port));
            let nonempty = |text: &str| (!text.is_empty()).then(|| text.to_owned());
            config.server = ServerConfig::Sentinel {
                hosts: hosts.collect(),
                service_name: master_name.clone(),
                username: nonempty(sentinel_user),
                password: nonempty(sentinel_password),
            };
            Ok(config)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv_matches_the_reference_values() {
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a64(b"foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn jump_hash_is_stable_and_moves_few_channels() {
        assert_eq!(shard_index("anything", 1), 0);
        assert_eq!(shard_index("anything", 0), 0);
        let channels: Vec<String> = (0..10_000).map(|i| format!("chat:{i}")).collect();
        let mut counts = [0usize; 3];
        let mut moved = 0;
        for channel in &channels {
            let three = shard_index(channel, 3);
            counts[three] += 1;
            let four = shard_index(channel, 4);
            // Jump hash only ever moves a channel to the new bucket.
            if four != three {
                assert_eq!(four, 3, "{channel}");
                moved += 1;
            }
        }
        for count in counts {
            assert!((2_900..3_800).contains(&count), "{counts:?}");
        }
        assert!((2_000..3_000).contains(&moved), "{moved} moved");
    }

    /// Values of Centrifugo's `consistentIndex` for the same inputs (its Go steps replayed in
    /// IEEE double arithmetic, as Go computes them).
    #[test]
    fn same_shard_as_centrifugo() {
        for (channel, shards, expected) in [
            ("", 2, 1),
            ("a", 2, 1),
            ("chat", 2, 0),
            ("chat", 3, 0),
            ("news", 2, 1),
            ("chat:index", 5, 0),
            ("user#42", 10, 2),
            ("x", 7, 3),
        ] {
            assert_eq!(
                shard_index(channel, shards),
                expected,
                "{channel} over {shards}"
            );
        }
    }

    #[test]
    fn tags_keep_a_channel_together_and_reverse() {
        for channel in [
            "chat",
            "a:b",
            "x}",
            "}x",
            "{}",
            "a{b}c",
            "",
            "{0123456789abcdef}.x",
        ] {
            let name = tagged(channel);
            assert_eq!(untag(&name), Some(channel), "{name}");
            // The hash tag Redis computes: from the first '{' to the next '}', non-empty.
            let open = name.find('{').unwrap();
            let close = open + 1 + name[open + 1..].find('}').unwrap();
            assert!(close > open + 1, "{name}: empty tag");
        }
        assert_eq!(tagged("chat"), "{chat}");
        assert_eq!(untag("chat"), None);
        assert_eq!(untag("{0123456789abcdef}.x"), None);
    }

    #[test]
    fn addresses_parse() {
        let plain = RedisTls::default();
        let config = single_config("127.0.0.1:6380", &plain).unwrap();
        assert!(config.tls.is_none());
        let config = single_config("rediss://u:p@secure.example:6380/1", &plain).unwrap();
        assert!(config.tls.is_some(), "rediss:// turns TLS on");
        assert_eq!(host_port("rediss://secure.example:6380").unwrap().1, 6380);
        assert_eq!(config.database, Some(1));
        let forced = RedisTls {
            enabled: true,
            ..Default::default()
        };
        assert!(single_config("h:1", &forced).unwrap().tls.is_some());
        let junk = RedisTls {
            enabled: true,
            server_ca_pem: "not a pem".into(),
            ..Default::default()
        };
        let error = single_config("h:1", &junk).unwrap_err().to_string();
        assert!(error.contains("server_ca_pem"), "{error}");
        assert_eq!(
            host_port("redis://user:pw@h:6390/2").unwrap(),
            ("h".to_owned(), 6390)
        );
        let config = single_config("redis://user:pw@h:6390/2", &plain).unwrap();
        assert_eq!(config.username.as_deref(), Some("user"));
        assert_eq!(config.password.as_deref(), Some("pw"));
        assert_eq!(config.database, Some(2));
        let cluster = fred_config(
            &RedisServer::Cluster(vec!["a:1".into(), "redis://b:2".into()]),
            &plain,
        )
        .unwrap();
        assert!(
            matches!(cluster.server, ServerConfig::Clustered { ref hosts, .. } if hosts.len() == 2)
        );
        assert!(single_config("redis://h:notaport", &plain).is_err());
    }
}
