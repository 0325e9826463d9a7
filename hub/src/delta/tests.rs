use super::*;
use proptest::prelude::*;

fn round_trip(source: &[u8], target: &[u8]) -> Vec<u8> {
    let delta = create(source, target);
    assert_eq!(
        apply(source, &delta).as_deref(),
        Ok(target),
        "delta {delta:?}"
    );
    delta
}

#[test]
fn integers_use_the_fossil_digits() {
    let mut out = Vec::new();
    for value in [0, 9, 10, 36, 37, 63, 64, 4095, 4096] {
        put_int(&mut out, value);
        out.push(b' ');
    }
    assert_eq!(out, b"0 9 A _ a ~ 10 ~~ 100 ");
    let mut reader = Reader {
        data: b"~~;",
        pos: 0,
    };
    assert_eq!(reader.int(), Ok(4095));
    assert_eq!(int_len(4095), 2);
    assert_eq!(int_len(4096), 3);
}

#[test]
fn checksum_is_the_sum_of_big_endian_words() {
    assert_eq!(checksum(b""), 0);
    assert_eq!(checksum(b"\x00\x00\x00\x01"), 1);
    assert_eq!(checksum(b"\x00\x00\x00\x01\x00\x00\x00\x02"), 3);
    // The tail is padded with zeros on the right.
    assert_eq!(checksum(b"\x01"), 0x0100_0000);
    assert_eq!(checksum(b"\xff\xff\xff\xff\x00\x00\x00\x02"), 1);
}

#[test]
fn a_hand_written_delta_applies() {
    // "hello world" from "hello there world": copy 6 from 0, insert "wor", copy 2 from 15.
    let source = b"hello there world";
    let target = b"hello world";
    let mut delta = b"B\n6@0,3:wor2@F,".to_vec();
    put_int(&mut delta, u64::from(checksum(target)));
    delta.push(b';');
    assert_eq!(apply(source, &delta).unwrap(), target);
}

#[test]
fn similar_payloads_give_small_deltas() {
    let source =
        br#"{"ticker":"AAPL","price":187.12,"volume":123456,"exchange":"NASDAQ","note":"steady"}"#;
    let target =
        br#"{"ticker":"AAPL","price":187.19,"volume":123999,"exchange":"NASDAQ","note":"steady"}"#;
    let delta = round_trip(source, target);
    assert!(
        delta.len() < target.len() / 2,
        "{}",
        String::from_utf8_lossy(&delta)
    );
    // Identical payloads: one copy.
    let same = round_trip(source, source);
    assert!(same.len() < 16, "{}", String::from_utf8_lossy(&same));
}

#[test]
fn short_or_unrelated_inputs_are_one_insert() {
    round_trip(b"", b"");
    round_trip(b"", b"abc");
    round_trip(b"abc", b"");
    let delta = round_trip(b"short", b"a target longer than the source");
    assert!(delta.starts_with(b"V\nV:a target"));
}

#[test]
fn utf8_targets_give_utf8_deltas() {
    let source = "{\"text\":\"ααααααααααααααααααααβββββββββββββββββ γγγγγγγγγγγγγγγγγγγγ\"}";
    let target = "{\"text\":\"ααααααααααααααααααααδββββββββββββββββ γγγγγγγγγγγγγγγγγγγγδ\"}";
    let delta = round_trip(source.as_bytes(), target.as_bytes());
    assert!(std::str::from_utf8(&delta).is_ok());
    assert!(delta.len() < target.len());
}

#[test]
fn malformed_deltas_are_errors() {
    let source = b"0123456789abcdef0123456789";
    let cases: &[(&[u8], ApplyError)] = &[
        (b"", ApplyError::BadInt),
        (b"3", ApplyError::BadHeader),
        (b"3\n", ApplyError::Unterminated),
        (b"3\n3", ApplyError::Unterminated),
        (b"3\n3:ab", ApplyError::InsertOutOfRange),
        (b"3\n3@0;", ApplyError::BadCopy),
        (b"3\n3@Z,", ApplyError::CopyOutOfRange),
        (b"3\n4:abcd", ApplyError::TooLarge),
        (b"3\n3!", ApplyError::UnknownOperator),
        (b"3\n3:abc0;", ApplyError::BadChecksum),
        (b"3\n2:ab0;", ApplyError::BadChecksum),
        (b"~~~~~~~~~~~~\n", ApplyError::BadInt),
        (b"3\n:abc", ApplyError::BadInt),
    ];
    for (delta, error) in cases {
        assert_eq!(
            apply(source, delta),
            Err(*error),
            "{}",
            String::from_utf8_lossy(delta)
        );
    }
    // Right checksum, wrong announced size.
    let mut short = b"4\n3:abc".to_vec();
    put_int(&mut short, u64::from(checksum(b"abc")));
    short.push(b';');
    assert_eq!(apply(source, &short), Err(ApplyError::SizeMismatch));
}

/// A target made from the source by a few edits, as successive publications are.
fn edited() -> impl Strategy<Value = (Vec<u8>, Vec<u8>)> {
    (
        proptest::collection::vec(any::<u8>(), 0..600),
        proptest::collection::vec(
            (
                any::<prop::sample::Index>(),
                0..40usize,
                proptest::collection::vec(any::<u8>(), 0..20),
            ),
            0..6,
        ),
    )
        .prop_map(|(source, edits)| {
            let mut target = source.clone();
            for (at, remove, insert) in edits {
                let start = if target.is_empty() {
                    0
                } else {
                    at.index(target.len())
                };
                let end = (start + remove).min(target.len());
                target.splice(start..end, insert);
            }
            (source, target)
        })
}

proptest! {
    #[test]
    fn random_pairs_round_trip(
        source in proptest::collection::vec(any::<u8>(), 0..300),
        target in proptest::collection::vec(any::<u8>(), 0..300),
    ) {
        let delta = create(&source, &target);
        prop_assert_eq!(apply(&source, &delta), Ok(target));
    }

    #[test]
    fn edited_pairs_round_trip((source, target) in edited()) {
        let delta = create(&source, &target);
        prop_assert_eq!(apply(&source, &delta), Ok(target));
    }

    #[test]
    fn edited_text_round_trips_as_utf8(
        source in "[a-zé\u{4e2d}\u{1f600} ]{0,200}",
        edits in proptest::collection::vec(("[a-zé\u{4e2d}\u{1f600}]{0,8}", 0..200usize), 0..5),
    ) {
        let mut target = source.clone();
        for (insert, at) in edits {
            let mut at = at.min(target.len());
            while !target.is_char_boundary(at) {
                at -= 1;
            }
            target.insert_str(at, &insert);
        }
        let delta = create(source.as_bytes(), target.as_bytes());
        prop_assert!(std::str::from_utf8(&delta).is_ok());
        prop_assert_eq!(apply(source.as_bytes(), &delta), Ok(target.into_bytes()));
    }

    #[test]
    fn arbitrary_deltas_never_panic(
        source in proptest::collection::vec(any::<u8>(), 0..64),
        delta in proptest::collection::vec(any::<u8>(), 0..64),
    ) {
        let _ = apply(&source, &delta);
    }

    #[test]
    fn mutated_deltas_never_panic(
        (source, target) in edited(),
        at in any::<prop::sample::Index>(),
        byte in any::<u8>(),
    ) {
        let mut delta = create(&source, &target);
        let i = at.index(delta.len());
        delta[i] = byte;
        let _ = apply(&source, &delta);
    }
}
