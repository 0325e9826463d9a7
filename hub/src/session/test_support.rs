//! Shared fixtures of the session tests: a configuration with one namespace per rule, HS256
//! tokens, and fixed times.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use spindle_proto::{Command, Format, Request, client};

use super::{Now, Session, SessionRules};
use crate::config::{
    ChannelOptions, Config, DeltaType, Duration as ConfigDuration, Namespace,
    PublicationDataFormat, SubscriptionType,
};
use crate::jwt::sign_hs256;
use crate::outcome::{Failure, Outcome};

/// The HMAC key of `client.token`.
pub(super) const SECRET: &str = "session-test-secret";
/// The HMAC key of shared-poll track signatures (`shared_poll.hmac_secret_key`).
pub(super) const TRACK_SECRET: &str = "track-test-secret";
/// The unix time (seconds) of [`t0`].
pub(super) const T0: i64 = 1_700_000_000;
/// The client id of [`session`].
pub(super) const CLIENT: &str = "client-1";

/// The tests' start time: a fixed monotonic base and unix time `T0`.
pub(super) fn t0() -> Now {
    static BASE: OnceLock<Instant> = OnceLock::new();
    Now {
        mono: *BASE.get_or_init(Instant::now),
        unix_ms: T0 * 1000,
    }
}

/// `t0` plus whole seconds.
pub(super) fn at(secs: u64) -> Now {
    t0().after(Duration::from_secs(secs))
}

/// `t0` plus milliseconds.
pub(super) fn at_ms(ms: u64) -> Now {
    t0().after(Duration::from_millis(ms))
}

fn ns(name: &str, options: ChannelOptions) -> Namespace {
    Namespace::new(name, options)
}

/// The test configuration (the defaults of `client` otherwise: ping 25 s, pong 8 s, delays
/// 25 s, stale 10 s, channel limit 128):
/// - `chat`: authenticated clients subscribe; subscribers publish; presence, join_leave and
///   history with subscriber access; fossil; tags filter.
/// - `anon`: everyone subscribes and publishes (anonymous too); nothing else.
/// - `dialog`: user-limited channels.
/// - `proxied`: subscribe and publish proxies.
/// - `forced`: authenticated clients subscribe; forced recovery, positioning and join/leave
///   push, presence, history.
/// - `json`, `obj`, `bin`: authenticated clients publish with that data format.
/// - `map`, `poll`: map and shared-poll subscription types.
/// - `personal`: presence (for personal channels).
/// - without namespace: nothing allowed.
pub(super) fn config() -> Config {
    let mut config = Config::default();
    config.client.token.hmac_secret_key = crate::config::Secret::new(SECRET);
    config.shared_poll.hmac_secret_key = crate::config::Secret::new(TRACK_SECRET);
    let history = |o: ChannelOptions| ChannelOptions {
        history_size: 10,
        history_ttl: ConfigDuration::from_secs(60),
        ..o
    };
    let publisher = |format| ChannelOptions {
        allow_publish_for_client: true,
        publication_data_format: format,
        ..Default::default()
    };
    config.channel.namespaces = vec![
        ns(
            "chat",
            history(ChannelOptions {
                allow_subscribe_for_client: true,
                allow_publish_for_subscriber: true,
                presence: true,
                join_leave: true,
                allow_presence_for_subscriber: true,
                allow_history_for_subscriber: true,
                allowed_delta_types: vec![DeltaType::Fossil],
                allow_tags_filter: true,
                ..Default::default()
            }),
        ),
        ns(
            "anon",
            ChannelOptions {
                allow_subscribe_for_client: true,
                allow_subscribe_for_anonymous: true,
                allow_publish_for_client: true,
                allow_publish_for_anonymous: true,
                ..Default::default()
            },
        ),
        ns(
            "dialog",
            ChannelOptions {
                allow_user_limited_channels: true,
                ..Default::default()
            },
        ),
        ns(
            "proxied",
            ChannelOptions {
                allow_subscribe_for_client: true,
                allow_publish_for_client: true,
                subscribe_proxy_enabled: true,
                publish_proxy_enabled: true,
                ..Default::default()
            },
        ),
        ns(
            "forced",
            history(ChannelOptions {
                allow_subscribe_for_client: true,
                force_recovery: true,
                force_positioning: true,
                force_push_join_leave: true,
                presence: true,
                join_leave: true,
                ..Default::default()
            }),
        ),
        ns("json", publisher(PublicationDataFormat::Json)),
        ns("obj", publisher(PublicationDataFormat::JsonObject)),
        ns("bin", publisher(PublicationDataFormat::Binary)),
        ns(
            "map",
            ChannelOptions {
                allow_subscribe_for_client: true,
                allow_publish_for_client: true,
                subscription_type: SubscriptionType::Map,
                map: crate::config::MapOptions {
                    mode: crate::config::MapMode::Recoverable,
                    key_ttl: crate::config::Duration::from_secs(60),
                    allow_publish_for_client: true,
                    ..Default::default()
                },
                ..Default::default()
            },
        ),
        ns(
            "poll",
            ChannelOptions {
                allow_subscribe_for_client: true,
                subscription_type: SubscriptionType::SharedPoll,
                shared_poll: crate::config::SharedPollOptions {
                    max_keys_per_connection: 3,
                    ..Default::default()
                },
                ..Default::default()
            },
        ),
        ns(
            "personal",
            ChannelOptions {
                presence: true,
                ..Default::default()
            },
        ),
    ];
    config
}

/// Rules from a configuration (which must be accepted).
pub(super) fn rules_from(config: &Config) -> SessionRules {
    SessionRules::new(config).unwrap()
}

/// Rules of [`config`].
pub(super) fn rules() -> SessionRules {
    rules_from(&config())
}

/// Rules of [`config`] without pings (`ping_interval` 0), for tests of other deadlines.
pub(super) fn quiet_rules() -> SessionRules {
    let mut config = config();
    config.client.ping_interval = ConfigDuration::ZERO;
    rules_from(&config)
}

/// An HS256 token with [`SECRET`].
pub(super) fn token(claims: Value) -> String {
    sign_hs256(&claims, SECRET).unwrap()
}

/// A fresh session opened at `t0`, first ping at exactly half the interval.
pub(super) fn session(rules: &SessionRules) -> Session {
    Session::new(rules, CLIENT.to_owned(), Format::Json, t0()).with_ping_jitter(0.0)
}

/// A connect request with this token.
pub(super) fn connect_request(token: &str) -> client::ConnectRequest {
    client::ConnectRequest {
        token: token.to_owned(),
        ..Default::default()
    }
}

/// A session connected at `t0` as `user` with a non-expiring token.
pub(super) fn connected(rules: &SessionRules, user: &str) -> Session {
    let mut session = session(rules);
    session
        .connect(rules, &connect_request(&token(json!({"sub": user}))), t0())
        .unwrap();
    session
}

/// A subscribe request for `channel`.
pub(super) fn sub_request(channel: &str) -> client::SubscribeRequest {
    client::SubscribeRequest {
        channel: channel.to_owned(),
        ..Default::default()
    }
}

/// Subscribes (authorize + record) and returns the grant.
pub(super) fn subscribe(
    session: &mut Session,
    rules: &SessionRules,
    request: &client::SubscribeRequest,
) -> super::SubscribeGrant {
    let grant = session.authorize_subscribe(rules, request, t0()).unwrap();
    session.add_subscription(&grant);
    grant
}

/// A command carrying `request`.
pub(super) fn command(id: u32, request: Request) -> Command {
    Command { id, request }
}

/// The protocol code a failure becomes (errors < 3000, disconnects ≥ 3000).
pub(super) fn code(failure: Failure) -> u32 {
    match failure.outcome() {
        Outcome::Error(error) => error.code,
        Outcome::Disconnect(disconnect) => disconnect.code,
    }
}

/// The protocol code of a failed result.
pub(super) fn err<T: std::fmt::Debug>(result: Result<T, Failure>) -> u32 {
    code(result.unwrap_err())
}
