//! Timers: stale close, pings and pongs, connection and subscription expiry.

use std::time::Duration;

use serde_json::json;
use spindle_proto::{Format, client};

use super::test_support::*;
use super::timers::first_ping_delay;
use super::*;
use crate::codes::{Disconnect, Unsubscribe};

fn disconnect(d: Disconnect) -> Vec<TimerAction> {
    vec![TimerAction::Disconnect(d)]
}

#[test]
fn no_connect_within_stale_close_delay_is_3502() {
    let rules = rules();
    let mut session = session(&rules);
    assert_eq!(session.next_deadline(), Some(at(10).mono));
    assert_eq!(session.on_timer(at_ms(9_999)), vec![]);
    assert_eq!(session.on_timer(at(10)), disconnect(Disconnect::STALE));
    assert_eq!(session.next_deadline(), None);
    assert_eq!(session.on_timer(at(20)), vec![]);
}

#[test]
fn a_failed_connect_still_goes_stale() {
    let rules = rules();
    let mut session = session(&rules);
    // No token and no header user: no credentials (3501).
    assert_eq!(
        err(session.connect(&rules, &connect_request(""), at(1))),
        3501
    );
    assert_eq!(session.next_deadline(), Some(at(10).mono));
    assert_eq!(session.on_timer(at(10)), disconnect(Disconnect::STALE));
}

#[test]
fn connecting_cancels_the_stale_timer() {
    let rules = quiet_rules();
    let session = connected(&rules, "42");
    assert_eq!(session.next_deadline(), None);
}

#[test]
fn first_ping_lands_in_the_second_half_of_the_interval() {
    let interval = Duration::from_secs(25);
    assert_eq!(
        first_ping_delay(interval, 0.0),
        Duration::from_millis(12_500)
    );
    assert_eq!(
        first_ping_delay(interval, 0.5),
        Duration::from_millis(18_750)
    );
    assert!(first_ping_delay(interval, 0.999_999_999_9) < interval);
    assert!(first_ping_delay(interval, 1.0) < interval);
    assert_eq!(
        first_ping_delay(interval, -3.0),
        Duration::from_millis(12_500)
    );

    let rules = rules();
    let token = token(json!({"sub": "1"}));
    let mut jittered = super::test_support::session(&rules).with_ping_jitter(0.5);
    jittered
        .connect(&rules, &connect_request(&token), t0())
        .unwrap();
    assert_eq!(jittered.next_deadline(), Some(at_ms(18_750).mono));
    // Without an explicit jitter it comes from the client id, still within the window.
    for id in ["a", "b", "9a4c5d1e-7f00-4d3b-8c1a-2b3c4d5e6f70"] {
        let mut session = Session::new(&rules, id.to_owned(), Format::Protobuf, t0());
        session
            .connect(&rules, &connect_request(&token), t0())
            .unwrap();
        let first = session.next_deadline().unwrap() - t0().mono;
        assert!(
            first >= Duration::from_millis(12_500) && first < interval,
            "{id}: {first:?}"
        );
    }
}

#[test]
fn ping_pong_cycle() {
    let rules = rules();
    let mut session = connected(&rules, "42");
    assert_eq!(session.next_deadline(), Some(at_ms(12_500).mono));
    assert_eq!(session.on_timer(at_ms(12_499)), vec![]);
    assert_eq!(session.on_timer(at_ms(12_500)), vec![TimerAction::SendPing]);
    // Pong due 8 s later.
    assert_eq!(session.next_deadline(), Some(at_ms(20_500).mono));
    assert_eq!(session.on_pong(at(15)), Ok(()));
    // Next ping a full interval after the first.
    assert_eq!(session.next_deadline(), Some(at_ms(37_500).mono));
    assert_eq!(session.on_timer(at_ms(37_500)), vec![TimerAction::SendPing]);
    assert_eq!(session.on_pong(at(40)), Ok(()));
    // Other commands do not count as pongs.
    assert_eq!(session.on_timer(at_ms(62_500)), vec![TimerAction::SendPing]);
    assert_eq!(session.on_timer(at_ms(70_499)), vec![]);
    assert_eq!(
        session.on_timer(at_ms(70_500)),
        disconnect(Disconnect::NO_PONG)
    );
    assert!(!session.is_connected());
    assert_eq!(session.next_deadline(), None);
}

#[test]
fn unexpected_pongs_are_violations() {
    let rules = rules();
    let mut session = connected(&rules, "42");
    assert_eq!(err(session.on_pong(at(1))), 3501);
    let mut session = connected(&rules, "42");
    session.on_timer(at_ms(12_500));
    assert_eq!(session.on_pong(at(13)), Ok(()));
    assert_eq!(err(session.on_pong(at(14))), 3501);
    let mut unconnected = super::test_support::session(&rules);
    assert_eq!(err(unconnected.on_pong(at(1))), 3501);
}

#[test]
fn without_pong_timeout_pings_never_disconnect() {
    let mut config = config();
    config.client.pong_timeout = crate::config::Duration::ZERO;
    let rules = rules_from(&config);
    let mut session = connected(&rules, "42");
    assert_eq!(session.on_timer(at_ms(12_500)), vec![TimerAction::SendPing]);
    assert_eq!(session.next_deadline(), Some(at_ms(37_500).mono));
    assert_eq!(session.on_timer(at_ms(37_500)), vec![TimerAction::SendPing]);
}

#[test]
fn connection_expiry_closes_after_the_grace_delay() {
    let rules = quiet_rules();
    let mut session = session(&rules);
    let token = token(json!({"sub": "42", "exp": T0 + 100}));
    session
        .connect(&rules, &connect_request(&token), t0())
        .unwrap();
    assert_eq!(session.next_deadline(), Some(at(125).mono));
    assert_eq!(session.on_timer(at_ms(124_999)), vec![]);
    assert_eq!(session.on_timer(at(125)), disconnect(Disconnect::EXPIRED));
}

#[test]
fn client_subscription_expiry_unsubscribes_with_2501_once() {
    let rules = quiet_rules();
    let mut session = connected(&rules, "42");
    for (channel, exp) in [
        ("chat:b", T0 + 60),
        ("chat:a", T0 + 30),
        ("chat:c", T0 + 500),
    ] {
        let request = client::SubscribeRequest {
            token: token(json!({"sub": "42", "channel": channel, "exp": exp})),
            ..sub_request(channel)
        };
        subscribe(&mut session, &rules, &request);
    }
    assert_eq!(session.next_deadline(), Some(at(55).mono));
    let expired = |channel: &str| TimerAction::Unsubscribe(channel.into(), Unsubscribe::EXPIRED);
    assert_eq!(
        session.on_timer(at(90)),
        vec![expired("chat:a"), expired("chat:b")]
    );
    // Reported once; the edge removes them.
    assert_eq!(session.next_deadline(), Some(at(525).mono));
    assert_eq!(session.on_timer(at(91)), vec![]);
    assert!(session.remove_subscription("chat:a").is_some());
    assert!(session.is_connected());
}

#[test]
fn server_side_subscription_expiry_disconnects_with_3006() {
    let rules = quiet_rules();
    let mut session = connected(&rules, "42");
    let command = spindle_proto::mesh::SubscribeCommand {
        channel: "chat:a".into(),
        expire_at: T0 + 30,
        ..Default::default()
    };
    let grant = session.api_subscribe(&rules, &command, t0()).unwrap();
    session.add_subscription(&grant);
    assert_eq!(session.next_deadline(), Some(at(55).mono));
    assert_eq!(
        session.on_timer(at(55)),
        disconnect(Disconnect::SUBSCRIPTION_EXPIRED)
    );
}

#[test]
fn closing_clears_every_deadline() {
    let rules = rules();
    let mut session = connected(&rules, "42");
    assert!(session.next_deadline().is_some());
    session.close();
    assert_eq!(session.next_deadline(), None);
    assert_eq!(session.on_timer(at(100)), vec![]);
}

#[test]
fn now_maps_unix_times_to_instants() {
    let now = t0();
    assert_eq!(now.unix_secs(), T0);
    assert_eq!(at_ms(1_999).unix_secs(), T0 + 1);
    assert_eq!(now.instant_at(T0 + 5, Duration::from_secs(1)), at(6).mono);
    // Past times give `mono` or earlier, never later.
    assert!(now.instant_at(T0 - 5, Duration::ZERO) <= now.mono);
    let negative = Now {
        mono: now.mono,
        unix_ms: -1,
    };
    assert_eq!(negative.unix_secs(), -1);
}
