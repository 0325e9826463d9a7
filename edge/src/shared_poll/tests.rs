use super::*;

fn item(key: &str, version: u64) -> TrackedItem {
    TrackedItem {
        key: key.to_owned(),
        version,
        expires_at: None,
    }
}

#[test]
fn keys_count_once_per_edge_and_a_link_loss_voids_old_references() {
    let keys = SharedPollKeys::default();
    let generation = keys.acquire("poll:a", &["x".into(), "y".into()]);
    keys.acquire("poll:a", &["x".into()]);
    // Nothing was told to the core yet: releasing needs no sync.
    assert!(!keys.release(generation, "poll:a", &["y".into()]));
    {
        let mut state = lock(&keys.state);
        let channel = state.channels.get_mut("poll:a").unwrap();
        assert_eq!(channel.keys["x"].refs, 2);
        assert!(!channel.keys.contains_key("y"));
        channel.told.insert("x".into());
    }
    // x is told: its last release asks for a sync (the untrack).
    assert!(!keys.release(generation, "poll:a", &["x".into()]));
    assert!(keys.release(generation, "poll:a", &["x".into()]));
    keys.link_lost();
    assert!(
        !keys.release(generation, "poll:a", &["x".into()]),
        "void after a link loss"
    );
    assert_eq!(keys.generation(), generation + 1);
}

#[test]
fn a_track_reply_carries_only_what_the_client_lacks() {
    let mut tracks = Tracks::default();
    let held = |key: &str| match key {
        "new" => Held::Value(5, Bytes::from_static(b"{\"v\":5}")),
        "same" => Held::Value(3, Bytes::from_static(b"{\"v\":3}")),
        "revoked" => Held::Removed,
        _ => Held::Nothing,
    };
    let items = [
        item("new", 2),
        item("same", 3),
        item("cold", 0),
        item("revoked", 0),
    ];
    let registered = register(&mut tracks, &items, held, false, Format::Json).unwrap();
    let reply = registered.items;
    assert_eq!(reply.len(), 1);
    assert_eq!((reply[0].key.as_str(), reply[0].version), ("new", 5));
    assert_eq!(registered.removed, vec!["revoked".to_owned()]);
    assert_eq!(tracks.len(), 3, "a key revoked meanwhile is not tracked");
    // With delta on JSON the full value travels as a JSON string (the delta base).
    let mut delta_tracks = Tracks::default();
    let reply = register(&mut delta_tracks, &items[..1], held, true, Format::Json)
        .unwrap()
        .items;
    assert_eq!(&reply[0].data[..], br#""{\"v\":5}""#);
    assert_eq!(
        new_keys(&tracks, &[item("new", 0), item("other", 0)]),
        vec!["other".to_owned()]
    );
}

#[test]
fn expired_signatures_drop_their_keys() {
    let mut tracks = Tracks::default();
    let items = [
        TrackedItem {
            expires_at: Some(100),
            ..item("a", 0)
        },
        TrackedItem {
            expires_at: Some(200),
            ..item("b", 0)
        },
        item("forever", 0),
    ];
    register(&mut tracks, &items, |_| Held::Nothing, false, Format::Json).unwrap();
    assert_eq!(tracks.earliest_expiry(), Some(100));
    assert_eq!(tracks.expire(150), vec!["a".to_owned()]);
    assert_eq!(tracks.earliest_expiry(), Some(200));
    assert_eq!(
        tracks.untrack(&["b".into(), "nope".into()]),
        vec!["b".to_owned()]
    );
    assert_eq!(tracks.close(), vec!["forever".to_owned()]);
}

#[test]
fn only_possible_key_events_take_the_lock_and_idle_channels_are_forgotten() {
    let keys = SharedPollKeys::default();
    let hub = LocalHub::new();
    let stream_publication = mesh::ChannelEvent {
        channel: "poll:a".into(),
        kind: Some(mesh::channel_event::Kind::Publication(
            client::Publication {
                data: Bytes::from_static(b"{}"),
                ..Default::default()
            },
        )),
        ..Default::default()
    };
    // A plain publication is handed back untouched, whatever channels are known.
    keys.acquire("poll:a", &["x".into()]);
    let (back, sync) = keys.fan_out(&hub, stream_publication.clone());
    assert_eq!(back, Some(stream_publication));
    assert!(sync.is_none());
    // A channel with a tracked key stays; without it (nothing told), it goes.
    keys.forget_idle("poll:a");
    assert!(lock(&keys.state).channels.contains_key("poll:a"));
    keys.release(keys.generation(), "poll:a", &["x".into()]);
    keys.forget_idle("poll:a");
    assert!(!lock(&keys.state).channels.contains_key("poll:a"));
}
