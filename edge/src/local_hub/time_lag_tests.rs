//! `client.channel_position_max_time_lag`: a publication reaching the edge too late after its
//! publish time loses the position of positioned subscribers (client-side: the connection is
//! told and unsubscribes 2500; server-side: disconnect 3010), while subscribers without
//! positioning still get it. Fresh publications and publications without a time pass.

use super::*;
use crate::handle::Mail;
use crate::subscription::{BufferLimits, SubFlags};
use crate::writer::Outbox;
use std::sync::Arc;
use tokio::sync::mpsc;

const LAG: Duration = Duration::from_secs(1);

struct Probe {
    sub: Subscriber,
    outbox: Arc<Outbox>,
    mailbox: mpsc::Receiver<Mail>,
}

/// A live subscription to `ch` at offset 0 of epoch `e1`, registered in `hub`.
fn probe(hub: &LocalHub, id: &str, flags: SubFlags) -> Probe {
    let outbox = Arc::new(Outbox::new(Format::Json, 1 << 20));
    let (tx, mailbox) = mpsc::channel(4);
    let connection = ConnectionHandle::new(ClientId::from(id), Arc::clone(&outbox), tx);
    let limits = BufferLimits {
        publications: 100,
        bytes: 1 << 20,
    };
    let sub = LocalSub::new("ch".into(), connection, flags, None, limits);
    sub.set_position(0, "e1");
    sub.go_live().unwrap();
    hub.subscribe("ch", Arc::clone(&sub));
    Probe {
        sub,
        outbox,
        mailbox,
    }
}

/// A publication at `offset` published at `time` (unix ms, 0 = unknown).
fn publication(offset: u64, time: i64) -> mesh::ChannelEvent {
    mesh::ChannelEvent {
        channel: "ch".into(),
        kind: Some(mesh::channel_event::Kind::Publication(
            client::Publication {
                data: Bytes::from_static(b"{}"),
                offset,
                time,
                ..Default::default()
            },
        )),
        epoch: "e1".into(),
        ..Default::default()
    }
}

fn now_ms() -> i64 {
    crate::clock::unix_ms()
}

const POSITIONED: SubFlags = SubFlags {
    server_side: false,
    positioned: true,
    delta: false,
    push_join_leave: false,
    presence: false,
    keyed: false,
    shared_poll: false,
};

#[test]
fn a_late_publication_loses_positions_but_reaches_the_others() {
    let hub = LocalHub::with_max_time_lag(LAG);
    let mut positioned = probe(&hub, "p", POSITIONED);
    let server_side = probe(
        &hub,
        "s",
        SubFlags {
            server_side: true,
            ..POSITIONED
        },
    );
    let plain = probe(&hub, "n", SubFlags::default());

    // Fresh, then without a time: everyone gets both.
    hub.broadcast(publication(1, now_ms()));
    hub.broadcast(publication(2, 0));
    for probe in [&positioned, &server_side, &plain] {
        assert_eq!(probe.outbox.drain().len(), 2);
    }
    assert_eq!(positioned.sub.position(), Some((2, "e1".to_owned())));
    assert!(positioned.mailbox.try_recv().is_err());

    // Five seconds late with a one-second lag.
    hub.broadcast(publication(3, now_ms() - 5_000));
    assert!(positioned.outbox.drain().is_empty());
    let Ok(Mail::PositionLost(lost)) = positioned.mailbox.try_recv() else {
        panic!("the connection is told (it unsubscribes 2500)");
    };
    assert!(Arc::ptr_eq(&lost, &positioned.sub));
    assert!(positioned.sub.position().is_none());
    assert!(server_side.outbox.drain().is_empty());
    assert_eq!(
        server_side.outbox.closing(),
        Some(Disconnect::INSUFFICIENT_STATE)
    );
    assert_eq!(Disconnect::INSUFFICIENT_STATE.code, 3010);
    let delivered = plain.outbox.drain();
    assert_eq!(delivered.len(), 1, "not positioned: still delivered");
    let reply: client::Reply = serde_json::from_slice(&delivered[0]).unwrap();
    let publication = reply.push.unwrap().r#pub.unwrap();
    assert_eq!((publication.offset, publication.time), (3, 0));
    assert_eq!(plain.outbox.closing(), None);
}

#[test]
fn without_a_max_lag_nothing_is_late() {
    let hub = LocalHub::new();
    let mut positioned = probe(&hub, "p", POSITIONED);
    hub.broadcast(publication(1, 1));
    assert_eq!(positioned.outbox.drain().len(), 1);
    assert!(positioned.mailbox.try_recv().is_err());
    assert_eq!(positioned.sub.position(), Some((1, "e1".to_owned())));
}

#[test]
fn a_late_copy_of_what_the_client_has_is_only_skipped() {
    let hub = LocalHub::with_max_time_lag(LAG);
    let mut positioned = probe(&hub, "p", POSITIONED);
    positioned.sub.set_position(5, "e1");
    hub.broadcast(publication(5, now_ms() - 5_000));
    assert!(positioned.outbox.drain().is_empty());
    assert!(positioned.mailbox.try_recv().is_err());
    hub.broadcast(publication(6, now_ms()));
    assert_eq!(positioned.outbox.drain().len(), 1);
}
