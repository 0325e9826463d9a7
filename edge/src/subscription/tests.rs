use super::*;
use crate::handle::{ClientId, Mail};
use crate::writer::Outbox;
use prost::Message as _;
use spindle_proto::Format;
use std::collections::BTreeMap;
use tokio::sync::mpsc;

struct Probe {
    sub: Arc<LocalSub>,
    outbox: Arc<Outbox>,
    mailbox: mpsc::Receiver<Mail>,
}

fn probe(format: Format, flags: SubFlags, filter: Option<client::FilterNode>) -> Probe {
    probe_with(format, flags, filter, 100)
}

fn probe_with(
    format: Format,
    flags: SubFlags,
    filter: Option<client::FilterNode>,
    publications: usize,
) -> Probe {
    let outbox = Arc::new(Outbox::new(format, 1 << 20));
    let (tx, mailbox) = mpsc::channel(4);
    let connection = ConnectionHandle::new(ClientId::from("c1"), Arc::clone(&outbox), tx);
    let limits = BufferLimits {
        publications,
        bytes: 1 << 20,
    };
    let sub = LocalSub::new("ch".into(), connection, flags, filter, limits);
    Probe {
        sub,
        outbox,
        mailbox,
    }
}

fn event(offset: u64, epoch: &str, data: &str, prev: &str) -> Arc<PubEvent> {
    event_tagged(offset, epoch, data, prev, &[])
}

fn event_tagged(
    offset: u64,
    epoch: &str,
    data: &str,
    prev: &str,
    tags: &[(&str, &str)],
) -> Arc<PubEvent> {
    let publication = client::Publication {
        data: Bytes::copy_from_slice(data.as_bytes()),
        offset,
        tags: tags
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect::<BTreeMap<_, _>>(),
        time: 123,
        ..Default::default()
    };
    Arc::new(PubEvent::new(
        "ch".into(),
        publication,
        epoch.into(),
        Bytes::copy_from_slice(prev.as_bytes()),
    ))
}

fn offer(subs: &[&Arc<LocalSub>], event: &Arc<PubEvent>) -> u64 {
    let mut variants = Variants::new(event);
    for sub in subs {
        sub.offer(event, &mut variants);
    }
    variants.encodes()
}

/// The publications queued for the client, decoded.
fn sent(probe: &Probe) -> Vec<client::Publication> {
    probe
        .outbox
        .drain()
        .into_iter()
        .map(|bytes| {
            let reply = match probe.outbox.format() {
                Format::Json => serde_json::from_slice::<client::Reply>(&bytes).unwrap(),
                Format::Protobuf => client::Reply::decode_length_delimited(bytes).unwrap(),
            };
            reply.push.unwrap().r#pub.unwrap()
        })
        .collect()
}

fn offsets(publications: &[client::Publication]) -> Vec<u64> {
    publications.iter().map(|p| p.offset).collect()
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
fn buffered_until_live_then_only_what_follows_the_position() {
    let p = probe(Format::Json, POSITIONED, None);
    for offset in 1..=5 {
        offer(&[&p.sub], &event(offset, "e1", "{}", ""));
    }
    assert_eq!(p.outbox.queued_bytes(), 0, "nothing sent while buffering");
    p.sub.set_position(3, "e1");
    p.sub.go_live().unwrap();
    assert_eq!(offsets(&sent(&p)), [4, 5]);
    offer(&[&p.sub], &event(6, "e1", "{}", ""));
    let live = sent(&p);
    assert_eq!(offsets(&live), [6]);
    assert_eq!(live[0].time, 0, "broker-internal time is not sent");
}

#[test]
fn duplicates_are_dropped_and_a_gap_loses_the_position() {
    let mut p = probe(Format::Json, POSITIONED, None);
    p.sub.set_position(10, "e1");
    p.sub.go_live().unwrap();
    offer(&[&p.sub], &event(11, "e1", "{}", ""));
    offer(&[&p.sub], &event(11, "e1", "{}", ""));
    offer(&[&p.sub], &event(9, "e1", "{}", ""));
    assert_eq!(offsets(&sent(&p)), [11]);
    offer(&[&p.sub], &event(13, "e1", "{}", ""));
    assert!(sent(&p).is_empty());
    let Ok(Mail::PositionLost(lost)) = p.mailbox.try_recv() else {
        panic!("the connection is told");
    };
    assert!(Arc::ptr_eq(&lost, &p.sub));
    // Nothing more after a loss, and no second notice.
    offer(&[&p.sub], &event(14, "e1", "{}", ""));
    assert!(sent(&p).is_empty());
    assert!(p.mailbox.try_recv().is_err());
    assert!(p.sub.position().is_none());
}

#[test]
fn another_epoch_loses_the_position_but_an_empty_one_is_adopted() {
    let mut p = probe(Format::Json, POSITIONED, None);
    p.sub.set_position(0, "");
    p.sub.go_live().unwrap();
    offer(&[&p.sub], &event(1, "e1", "{}", ""));
    assert_eq!(p.sub.position(), Some((1, "e1".to_owned())));
    offer(&[&p.sub], &event(2, "e2", "{}", ""));
    assert!(matches!(p.mailbox.try_recv(), Ok(Mail::PositionLost(_))));
    assert_eq!(offsets(&sent(&p)), [1]);
}

#[test]
fn a_gap_in_the_buffer_fails_going_live() {
    let p = probe(Format::Json, POSITIONED, None);
    offer(&[&p.sub], &event(4, "e1", "{}", ""));
    offer(&[&p.sub], &event(6, "e1", "{}", ""));
    p.sub.set_position(3, "e1");
    assert_eq!(p.sub.go_live(), Err(PositionLost));
    assert_eq!(offsets(&sent(&p)), [4]);
}

#[test]
fn buffer_overflow_loses_the_position_and_never_blocks() {
    let mut p = probe_with(Format::Json, POSITIONED, None, 3);
    for offset in 1..=10 {
        offer(&[&p.sub], &event(offset, "e1", "{}", ""));
    }
    assert!(matches!(p.mailbox.try_recv(), Ok(Mail::PositionLost(_))));
    assert!(p.sub.take_buffered().is_err());
    assert_eq!(p.sub.go_live(), Err(PositionLost));
}

#[test]
fn server_side_loss_closes_the_connection() {
    let flags = SubFlags {
        server_side: true,
        ..POSITIONED
    };
    let p = probe(Format::Json, flags, None);
    p.sub.set_position(1, "e1");
    p.sub.go_live().unwrap();
    offer(&[&p.sub], &event(3, "e1", "{}", ""));
    assert_eq!(p.outbox.closing(), Some(Disconnect::INSUFFICIENT_STATE));
}

#[test]
fn filtered_publications_advance_the_position() {
    let filter = client::FilterNode {
        key: "kind".into(),
        cmp: "eq".into(),
        val: "keep".into(),
        ..Default::default()
    };
    let mut p = probe(Format::Json, POSITIONED, Some(filter));
    p.sub.set_position(0, "e1");
    p.sub.go_live().unwrap();
    offer(
        &[&p.sub],
        &event_tagged(1, "e1", "1", "", &[("kind", "keep")]),
    );
    offer(
        &[&p.sub],
        &event_tagged(2, "e1", "2", "", &[("kind", "drop")]),
    );
    offer(&[&p.sub], &event_tagged(3, "e1", "3", "", &[]));
    offer(
        &[&p.sub],
        &event_tagged(4, "e1", "4", "", &[("kind", "keep")]),
    );
    let got = sent(&p);
    assert_eq!(offsets(&got), [1, 4]);
    assert_eq!(got[0].tags["kind"], "keep");
    assert!(p.mailbox.try_recv().is_err(), "no gap seen");
    assert_eq!(p.sub.position(), Some((4, "e1".to_owned())));
}

const PAYLOADS: [&str; 3] = [
    r#"{"ticker":"AAPL","price":"187.12","exchange":"NASDAQ","note":"a long steady note"}"#,
    r#"{"ticker":"AAPL","price":"187.19","exchange":"NASDAQ","note":"a long steady note"}"#,
    r#"{"ticker":"AAPL","price":"187.23","exchange":"NASDAQ","note":"a long steady note"}"#,
];

/// Decodes a delta-negotiated client's publications as the SDKs do.
fn decode_chain(format: Format, publications: &[client::Publication]) -> Vec<String> {
    let mut previous: Vec<u8> = Vec::new();
    let mut out = Vec::new();
    for publication in publications {
        let raw = match format {
            Format::Json => serde_json::from_slice::<String>(&publication.data)
                .expect("data is a JSON string once delta is negotiated")
                .into_bytes(),
            Format::Protobuf => publication.data.to_vec(),
        };
        previous = if publication.delta {
            spindle_hub::delta::apply(&previous, &raw).unwrap()
        } else {
            raw
        };
        out.push(String::from_utf8(previous.clone()).unwrap());
    }
    out
}

#[test]
fn delta_subscribers_get_full_then_shared_deltas() {
    for format in [Format::Json, Format::Protobuf] {
        let flags = SubFlags {
            delta: true,
            ..POSITIONED
        };
        let a = probe(format, flags, None);
        let b = probe(format, flags, None);
        let plain = probe(format, POSITIONED, None);
        for p in [&a, &b, &plain] {
            p.sub.set_position(0, "e1");
            p.sub.go_live().unwrap();
        }
        let subs = [&a.sub, &b.sub, &plain.sub];
        // The first: full for everyone (a JSON string for the delta subscribers): 2 encodes.
        assert_eq!(
            offer(&subs, &event(1, "e1", PAYLOADS[0], "")),
            2 - (format == Format::Protobuf) as u64
        );
        // Then deltas, encoded once for both delta subscribers, plus the plain form.
        assert_eq!(offer(&subs, &event(2, "e1", PAYLOADS[1], PAYLOADS[0])), 2);
        assert_eq!(offer(&subs, &event(3, "e1", PAYLOADS[2], PAYLOADS[1])), 2);
        for p in [&a, &b] {
            let got = sent(p);
            let deltas: Vec<bool> = got.iter().map(|p| p.delta).collect();
            assert_eq!(deltas, [false, true, true], "{format:?}");
            assert!(got[1].data.len() < PAYLOADS[1].len());
            assert_eq!(decode_chain(format, &got), PAYLOADS);
        }
        let got = sent(&plain);
        assert!(got.iter().all(|p| !p.delta));
        assert_eq!(&got[2].data[..], PAYLOADS[2].as_bytes());
    }
}

#[test]
fn a_delta_against_the_subscribers_own_base_after_a_skip() {
    let filter = client::FilterNode {
        key: "k".into(),
        cmp: "ex".into(),
        ..Default::default()
    };
    let flags = SubFlags {
        delta: true,
        ..POSITIONED
    };
    let p = probe(Format::Json, flags, Some(filter));
    p.sub.set_position(0, "e1");
    p.sub.go_live().unwrap();
    offer(
        &[&p.sub],
        &event_tagged(1, "e1", PAYLOADS[0], "", &[("k", "1")]),
    );
    offer(
        &[&p.sub],
        &event_tagged(2, "e1", PAYLOADS[1], PAYLOADS[0], &[]),
    );
    offer(
        &[&p.sub],
        &event_tagged(3, "e1", PAYLOADS[2], PAYLOADS[1], &[("k", "1")]),
    );
    let got = sent(&p);
    assert_eq!(offsets(&got), [1, 3]);
    assert!(got[1].delta);
    assert_eq!(decode_chain(Format::Json, &got), [PAYLOADS[0], PAYLOADS[2]]);
}

#[test]
fn a_publication_without_previous_data_goes_full() {
    let flags = SubFlags {
        delta: true,
        ..POSITIONED
    };
    let p = probe(Format::Json, flags, None);
    p.sub
        .set_delta_base(1, Bytes::from_static(PAYLOADS[0].as_bytes()));
    p.sub.set_position(1, "e1");
    p.sub.go_live().unwrap();
    // Published without delta: full, as a string; the base moves to it.
    offer(&[&p.sub], &event(2, "e1", PAYLOADS[1], ""));
    offer(&[&p.sub], &event(3, "e1", PAYLOADS[2], PAYLOADS[1]));
    let got = sent(&p);
    assert_eq!(
        got.iter().map(|p| p.delta).collect::<Vec<_>>(),
        [false, true]
    );
    assert_eq!(decode_chain(Format::Json, &got), [PAYLOADS[1], PAYLOADS[2]]);
}

#[test]
fn closed_subscriptions_get_nothing() {
    let p = probe(Format::Json, SubFlags::default(), None);
    p.sub.go_live().unwrap();
    p.sub.close();
    offer(&[&p.sub], &event(0, "", "{}", ""));
    assert_eq!(p.outbox.queued_bytes(), 0);
    assert!(!p.sub.in_presence());
}
