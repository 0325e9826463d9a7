use super::signature::{SignatureTimes, sign, times, verify};
use super::*;
use crate::config::{ChannelOptions, SharedPollOptions};

#[test]
fn signatures_round_trip_and_bind_every_field() {
    let signature = sign("k", "poll:a", "42", &["x", "y"], 100, 200);
    let want = SignatureTimes {
        issued_at: 100,
        expires_at: 200,
    };
    assert_eq!(
        verify("k", "poll:a", "42", &["x", "y"], &signature),
        Some(want)
    );
    assert_eq!(times(&signature), Some(want));
    assert!(signature.starts_with("100:200:") && signature.len() == 8 + 64);
    for (secret, channel, user, keys) in [
        ("other", "poll:a", "42", &["x", "y"][..]),
        ("k", "poll:b", "42", &["x", "y"][..]),
        ("k", "poll:a", "43", &["x", "y"][..]),
        ("k", "poll:a", "42", &["y", "x"][..]),
        ("k", "poll:a", "42", &["x"][..]),
        // NUL separators: a colon cannot move between user and channel.
        ("k", "a", "42:poll", &["x", "y"][..]),
    ] {
        assert_eq!(
            verify(secret, channel, user, keys, &signature),
            None,
            "{channel} {user}"
        );
    }
    // The times are covered by the MAC.
    let moved = signature.replacen("200", "999", 1);
    assert_eq!(verify("k", "poll:a", "42", &["x", "y"], &moved), None);
    // Upper-case hex is not what signers make.
    let upper = format!("100:200:{}", signature[8..].to_uppercase());
    assert_eq!(verify("k", "poll:a", "42", &["x", "y"], &upper), None);
}

/// A vector computed independently (Python's `hmac` over `iat\0exp\0user\0channel\0
/// hex(sha256("a\0b"))`, the construction of Centrifugo's `track_signature.go`).
#[test]
fn signature_matches_the_reference_construction() {
    assert_eq!(
        sign("secret", "prices", "u1", &["a", "b"], 1, 2),
        "1:2:1e54cf76b751cf7d57b6d4213e76bd204517ec6c1dbb2b8149d6019672ef2379"
    );
}

#[test]
fn settings_resolve_defaults() {
    assert_eq!(
        SharedPollSettings::for_channel(&ChannelOptions::default()),
        None
    );
    let options = ChannelOptions {
        subscription_type: crate::config::SubscriptionType::SharedPoll,
        shared_poll: SharedPollOptions {
            refresh_batch_size: 7,
            ..Default::default()
        },
        ..Default::default()
    };
    let settings = SharedPollSettings::for_channel(&options).unwrap();
    assert_eq!(settings.refresh_interval, DEFAULT_REFRESH_INTERVAL);
    assert_eq!(settings.refresh_batch_size, 7);
    assert_eq!(
        settings.max_keys_per_connection,
        DEFAULT_MAX_KEYS_PER_CONNECTION
    );
    assert_eq!(settings.shutdown_delay, DEFAULT_SHUTDOWN_DELAY);
    assert_eq!(
        settings.track_expired_extra_delay,
        DEFAULT_TRACK_EXPIRED_EXTRA_DELAY
    );
    assert!(!settings.versioned && !settings.publish_enabled);
}
