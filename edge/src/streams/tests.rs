use super::*;
use bytes::Bytes;

fn streams(publications: usize) -> Streams {
    Streams::new(RepairBounds {
        publications,
        held_bytes: 1 << 20,
        total_bytes: 4 << 20,
    })
}

fn event(channel: &str, offset: u64, epoch: &str) -> Event {
    spindle_mesh::SharedEvent::new(mesh::ChannelEvent {
        channel: channel.into(),
        kind: Some(mesh::channel_event::Kind::Publication(
            client::Publication {
                data: Bytes::from(format!("{{\"n\":{offset}}}")),
                offset,
                time: 1,
                ..Default::default()
            },
        )),
        epoch: epoch.into(),
        prev_data: Bytes::new(),
        prev_version: 0,
        client: String::new(),
    })
}

fn position(offset: u64, epoch: &str) -> StreamPosition {
    StreamPosition {
        offset,
        epoch: epoch.into(),
    }
}

fn history(epoch: &str, top: u64, offsets: std::ops::RangeInclusive<u64>) -> client::HistoryResult {
    client::HistoryResult {
        publications: offsets
            .map(|offset| client::Publication {
                offset,
                time: 99,
                ..Default::default()
            })
            .collect(),
        epoch: epoch.into(),
        offset: top,
    }
}

fn offsets(events: &[Event]) -> Vec<u64> {
    events
        .iter()
        .map(|e| match &e.kind {
            Some(mesh::channel_event::Kind::Publication(p)) => p.offset,
            _ => 0,
        })
        .collect()
}

fn delivered(admit: Admit) -> u64 {
    match admit {
        Admit::Deliver(event, _) => offsets(&[event])[0],
        other => panic!("expected a delivery, got {other:?}"),
    }
}

fn repair_of(admit: Admit) -> RepairId {
    match admit {
        Admit::Repair(_, id) => id,
        other => panic!("expected a repair, got {other:?}"),
    }
}

fn deliver_all(repaired: Repaired) -> Vec<u64> {
    match repaired {
        Repaired::Deliver(events) => offsets(&events),
        Repaired::Lost(why, _) => panic!("expected publications, lost: {why}"),
    }
}

#[test]
fn a_continuing_stream_goes_out_and_duplicates_do_not() {
    let s = streams(100);
    assert_eq!(delivered(s.admit(event("c", 4, "e"), |_| true)), 4);
    assert_eq!(delivered(s.admit(event("c", 5, "e"), |_| true)), 5);
    assert!(matches!(s.admit(event("c", 5, "e"), |_| true), Admit::Hold));
    assert!(matches!(s.admit(event("c", 3, "e"), |_| true), Admit::Hold));
    assert_eq!(delivered(s.admit(event("c", 6, "e"), |_| true)), 6);
    // Not part of a stream: always delivered, no state kept.
    assert_eq!(delivered(s.admit(event("x", 0, ""), |_| true)), 0);
    assert_eq!(s.len(), 1);
    // A channel without subscribers keeps no state.
    assert_eq!(delivered(s.admit(event("gone", 9, "e"), |_| false)), 9);
    assert_eq!(s.len(), 1);
}

#[test]
fn a_gap_is_repaired_once_then_held_events_follow_in_order() {
    let s = streams(100);
    s.top("c", Some(position(2, "e")), |_| true);
    assert_eq!(delivered(s.admit(event("c", 3, "e"), |_| true)), 3);
    // 4 and 5 are lost on the way: 6 opens the gap, 8 and 7 arrive (reordered) meanwhile.
    let id = repair_of(s.admit(event("c", 6, "e"), |_| true));
    assert!(matches!(s.admit(event("c", 8, "e"), |_| true), Admit::Hold));
    assert!(matches!(s.admit(event("c", 7, "e"), |_| true), Admit::Hold));
    assert!(matches!(s.admit(event("c", 9, "e"), |_| true), Admit::Hold));
    let since = s.repair_since("c", id).expect("repairing");
    assert_eq!(since, position(3, "e"));
    // History holds up to 6 when read (7.. came later).
    let repaired = deliver_all(s.repaired("c", id, &since, history("e", 6, 4..=6)));
    assert_eq!(repaired, [4, 5, 6]);
    match s.drain("c", id) {
        Drain::Deliver(events) => assert_eq!(offsets(&events), [7, 8, 9]),
        other => panic!("{other:?}"),
    }
    assert!(matches!(s.drain("c", id), Drain::Done));
    assert_eq!(delivered(s.admit(event("c", 10, "e"), |_| true)), 10);
}

#[test]
fn repaired_publications_carry_no_publish_time() {
    let s = streams(100);
    s.top("c", Some(position(1, "e")), |_| true);
    let id = repair_of(s.admit(event("c", 3, "e"), |_| true));
    let since = s.repair_since("c", id).unwrap();
    let Repaired::Deliver(events) = s.repaired("c", id, &since, history("e", 3, 2..=3)) else {
        panic!("lost")
    };
    for event in &events {
        let Some(mesh::channel_event::Kind::Publication(p)) = &event.kind else {
            panic!("not a publication")
        };
        assert_eq!(p.time, 0, "a repaired publication must never count as late");
    }
}

#[test]
fn what_history_cannot_give_is_unrepairable() {
    let s = streams(10);
    let since = position(3, "e");
    let setup = |s: &Streams| {
        s.forget("c");
        s.top("c", Some(since.clone()), |_| true);
        match s.top("c", Some(position(5, "e")), |_| true) {
            TopCheck::Repair(id) => id,
            other => panic!("{other:?}"),
        }
    };
    let lost = |r: Repaired| match r {
        Repaired::Lost(why, _) => why,
        Repaired::Deliver(events) => panic!("delivered {:?}", offsets(&events)),
    };
    let id = setup(&s);
    assert_eq!(
        lost(s.repaired("c", id, &since, history("other", 5, 1..=5))),
        Unrepairable::EpochChanged
    );
    let id = setup(&s);
    assert_eq!(
        lost(s.repaired("c", id, &since, history("e", 20, 4..=13))),
        Unrepairable::TooFarBehind
    );
    let id = setup(&s);
    assert_eq!(
        lost(s.repaired("c", id, &since, history("e", 6, 5..=6))),
        Unrepairable::Trimmed,
        "4 is no longer in history"
    );
    let id = setup(&s);
    assert_eq!(
        lost(s.repaired("c", id, &since, history("e", 6, 4..=5))),
        Unrepairable::Trimmed,
        "the read stopped short of its own top"
    );
}

#[test]
fn a_core_ahead_starts_a_repair_and_another_epoch_is_lost() {
    let s = streams(100);
    assert_eq!(
        s.top("c", Some(position(5, "e")), |_| true),
        TopCheck::Current
    );
    assert_eq!(
        s.top("c", Some(position(5, "e")), |_| true),
        TopCheck::Current
    );
    let TopCheck::Repair(id) = s.top("c", Some(position(7, "e")), |_| true) else {
        panic!("expected a repair")
    };
    // While it runs, further tops only raise its target.
    assert_eq!(
        s.top("c", Some(position(8, "e")), |_| true),
        TopCheck::Current
    );
    let since = s.repair_since("c", id).unwrap();
    assert_eq!(
        deliver_all(s.repaired("c", id, &since, history("e", 7, 6..=7))),
        [6, 7]
    );
    assert!(
        matches!(s.drain("c", id), Drain::Gap),
        "8 was reported: not done"
    );
    let since = s.repair_since("c", id).unwrap();
    assert_eq!(
        deliver_all(s.repaired("c", id, &since, history("e", 8, 8..=8))),
        [8]
    );
    assert!(matches!(s.drain("c", id), Drain::Done));
    assert_eq!(s.top("c", Some(position(1, "f")), |_| true), TopCheck::Lost);
    assert_eq!(delivered(s.admit(event("c", 2, "f"), |_| true)), 2);
}

#[test]
fn another_epoch_seen_live_is_reported() {
    let s = streams(100);
    s.top("c", Some(position(5, "e")), |_| true);
    assert!(matches!(
        s.admit(event("c", 1, "f"), |_| true),
        Admit::EpochChanged(..)
    ));
    assert_eq!(delivered(s.admit(event("c", 2, "f"), |_| true)), 2);
}

#[test]
fn a_top_or_an_event_of_the_epoch_left_behind_is_stale() {
    let s = streams(100);
    s.top("c", Some(position(5, "e")), |_| true);
    assert!(matches!(
        s.admit(event("c", 1, "f"), |_| true),
        Admit::EpochChanged(..)
    ));
    // An idle check read "e" before the change; a lane still carried an "e" event.
    assert_eq!(
        s.top("c", Some(position(9, "e")), |_| true),
        TopCheck::Current
    );
    assert!(matches!(s.admit(event("c", 6, "e"), |_| true), Admit::Hold));
    assert_eq!(delivered(s.admit(event("c", 2, "f"), |_| true)), 2);
    // A third epoch is a real change again.
    assert_eq!(s.top("c", Some(position(1, "g")), |_| true), TopCheck::Lost);
}

#[test]
fn a_repair_fans_out_only_after_the_lane_delivery_before_it() {
    use futures_util::FutureExt;
    let s = streams(100);
    s.top("c", Some(position(5, "e")), |_| true);
    let Admit::Deliver(_, fanning) = s.admit(event("c", 6, "e"), |_| true) else {
        panic!("6 continues the stream");
    };
    // The idle check finds 7 at the core while the lane is still handing 6 out.
    let TopCheck::Repair(id) = s.top("c", Some(position(7, "e")), |_| true) else {
        panic!("the core is ahead");
    };
    assert!(s.settled("c").now_or_never().is_none(), "6 is in flight");
    drop(fanning);
    assert!(s.settled("c").now_or_never().is_some(), "6 is out");
    let since = s.repair_since("c", id).unwrap();
    assert_eq!(
        deliver_all(s.repaired("c", id, &since, history("e", 7, 7..=7))),
        [7]
    );
}

#[test]
fn events_beyond_the_hold_bound_are_read_back_from_history() {
    let s = streams(2);
    s.top("c", Some(position(1, "e")), |_| true);
    let id = repair_of(s.admit(event("c", 3, "e"), |_| true));
    for offset in 4..=6 {
        assert!(matches!(
            s.admit(event("c", offset, "e"), |_| true),
            Admit::Hold
        ));
    }
    let since = s.repair_since("c", id).unwrap();
    assert_eq!(
        deliver_all(s.repaired("c", id, &since, history("e", 2, 2..=2))),
        [2]
    );
    match s.drain("c", id) {
        Drain::Deliver(events) => assert_eq!(offsets(&events), [3, 4]),
        other => panic!("{other:?}"),
    }
    assert!(
        matches!(s.drain("c", id), Drain::Gap),
        "5 and 6 were dropped"
    );
    let since = s.repair_since("c", id).unwrap();
    assert_eq!(
        deliver_all(s.repaired("c", id, &since, history("e", 6, 5..=6))),
        [5, 6]
    );
    assert!(matches!(s.drain("c", id), Drain::Done));
}

#[test]
fn a_replaced_repair_does_nothing_more() {
    let s = streams(100);
    s.top("c", Some(position(1, "e")), |_| true);
    let old = repair_of(s.admit(event("c", 3, "e"), |_| true));
    let since = s.repair_since("c", old).unwrap();
    // The link is lost and a new one starts another repair of the channel.
    assert!(s.link_lost().is_empty());
    let TopCheck::Repair(new) = s.top("c", Some(position(4, "e")), |_| true) else {
        panic!("expected a repair")
    };
    assert_ne!(old, new);
    assert!(s.repair_since("c", old).is_none());
    assert!(deliver_all(s.repaired("c", old, &since, history("e", 3, 2..=3))).is_empty());
    assert!(matches!(s.drain("c", old), Drain::Done));
    s.abandon("c", old);
    assert!(
        s.repair_since("c", new).is_some(),
        "the new repair is untouched"
    );
}

#[test]
fn a_link_loss_names_the_channels_without_history() {
    let s = streams(100);
    s.top("plain", None, |_| true);
    s.top("kept", Some(position(1, "e")), |_| true);
    assert_eq!(s.link_lost(), ["plain"]);
    assert_eq!(s.len(), 1);
    assert_eq!(s.idle(|_| true), [("kept".to_owned(), position(1, "e"))]);
    assert!(s.idle(|_| false).is_empty());
    assert_eq!(s.len(), 0, "channels without subscribers are forgotten");
}

#[test]
fn a_failed_repair_leaves_the_channel_positioned_so_later_gaps_are_still_seen() {
    let s = streams(100);
    s.top("c", Some(position(3, "e")), |_| true);
    let id = repair_of(s.admit(event("c", 9, "e"), |_| true));
    // Trimmed history: the subscribers are signalled, the stream goes on from the read's top.
    assert!(s.give_up("c", id, Some(position(20, "e"))));
    assert!(!s.give_up("c", id, None), "only once");
    assert!(
        matches!(s.admit(event("c", 22, "e"), |_| true), Admit::Repair(..)),
        "21 is missing: a gap, not a new start"
    );
    // Without a read (a deadline), from the highest offset seen live.
    let s = streams(100);
    s.top("c", Some(position(3, "e")), |_| true);
    let id = repair_of(s.admit(event("c", 9, "e"), |_| true));
    assert!(s.give_up("c", id, None));
    assert_eq!(delivered(s.admit(event("c", 10, "e"), |_| true)), 10);
}

#[test]
fn held_events_are_bounded_for_the_whole_edge_and_released_whatever_ends_a_repair() {
    let s = Streams::new(RepairBounds {
        publications: 100,
        held_bytes: 1 << 20,
        total_bytes: 400,
    });
    s.top("a", Some(position(1, "e")), |_| true);
    s.top("b", Some(position(1, "e")), |_| true);
    let a = repair_of(s.admit(event("a", 3, "e"), |_| true));
    let b = repair_of(s.admit(event("b", 3, "e"), |_| true));
    for offset in 4..20 {
        s.admit(event("a", offset, "e"), |_| true);
        s.admit(event("b", offset, "e"), |_| true);
    }
    // Up to the edge's bound and no further: the rest is read back from history.
    let held = s.held_bytes();
    assert!(held > 0 && held <= 400, "{held}");
    assert!(s.repair_since("b", b).is_some(), "b's repair still runs");
    s.abandon("a", a);
    assert!(s.held_bytes() < held, "a's share went with its repair");
    s.forget("b");
    assert_eq!(s.held_bytes(), 0);
    assert!(
        s.repair_since("b", b).is_none(),
        "b's repair went with its channel"
    );
}

#[test]
fn held_events_go_out_without_their_publish_time() {
    let s = streams(100);
    s.top("c", Some(position(1, "e")), |_| true);
    let id = repair_of(s.admit(event("c", 3, "e"), |_| true));
    let since = s.repair_since("c", id).unwrap();
    deliver_all(s.repaired("c", id, &since, history("e", 2, 2..=2)));
    let Drain::Deliver(events) = s.drain("c", id) else {
        panic!("the held event")
    };
    let Some(mesh::channel_event::Kind::Publication(p)) = &events[0].kind else {
        panic!("not a publication")
    };
    assert_eq!((p.offset, p.time), (3, 0));
    assert_eq!(s.held_bytes(), 0);
}

#[test]
fn a_top_for_a_channel_without_subscribers_keeps_no_state() {
    let s = streams(100);
    assert_eq!(
        s.top("gone", Some(position(5, "e")), |_| false),
        TopCheck::Current
    );
    assert_eq!(s.len(), 0);
    s.top("kept", None, |_| true);
    s.top("other", Some(position(1, "e")), |_| true);
    s.forget_unsubscribed(|channel| channel == "kept");
    assert_eq!(s.len(), 1);
}
