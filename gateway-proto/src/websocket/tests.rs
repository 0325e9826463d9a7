use super::*;

fn masked(fin: bool, opcode: u8, payload: &[u8], mask: [u8; 4]) -> Vec<u8> {
    client_frame(fin, opcode, payload, mask)
}

const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

fn decode_all(decoder: &mut Decoder, bytes: &[u8]) -> Result<Vec<Event>, Violation> {
    let mut buf = BytesMut::from(bytes);
    let mut events = Vec::new();
    while let Some(event) = decoder.next(&mut buf)? {
        events.push(event);
    }
    Ok(events)
}

#[test]
fn whole_messages_and_control_frames() {
    let mut bytes = masked(true, OP_TEXT, br#"{"id":1,"connect":{}}"#, MASK);
    bytes.extend(masked(true, OP_PING, b"hi", MASK));
    bytes.extend(masked(true, OP_BINARY, &[0, 1, 2, 3, 4, 5, 6], [0; 4]));
    bytes.extend(masked(true, OP_PONG, b"", MASK));
    bytes.extend(masked(true, OP_CLOSE, &[0x03, 0xe8, b'o', b'k'], MASK));
    let events = decode_all(&mut Decoder::new(1024), &bytes).unwrap();
    assert_eq!(
        events,
        [
            Event::Message(Bytes::from_static(br#"{"id":1,"connect":{}}"#)),
            Event::Ping(Bytes::from_static(b"hi")),
            Event::Message(Bytes::from_static(&[0, 1, 2, 3, 4, 5, 6])),
            Event::Pong,
            Event::Close(Bytes::from_static(&[0x03, 0xe8, b'o', b'k'])),
        ]
    );
}

#[test]
fn fragments_are_reassembled_around_control_frames_and_fed_byte_by_byte() {
    let text = "héllo wörld, fragmented";
    let (a, rest) = text.as_bytes().split_at(2); // inside "é"
    let (b, c) = rest.split_at(9);
    let mut bytes = masked(false, OP_TEXT, a, MASK);
    bytes.extend(masked(false, OP_CONTINUATION, b, MASK));
    bytes.extend(masked(true, OP_PING, b"", MASK));
    bytes.extend(masked(true, OP_CONTINUATION, c, MASK));
    let expected = vec![
        Event::Ping(Bytes::new()),
        Event::Message(Bytes::copy_from_slice(text.as_bytes())),
    ];
    assert_eq!(
        decode_all(&mut Decoder::new(1024), &bytes).unwrap(),
        expected
    );

    let mut decoder = Decoder::new(1024);
    let mut buf = BytesMut::new();
    let mut events = Vec::new();
    for &byte in &bytes {
        buf.extend_from_slice(&[byte]);
        while let Some(event) = decoder.next(&mut buf).unwrap() {
            events.push(event);
        }
    }
    assert_eq!(events, expected);
    assert!(buf.is_empty());
}

#[test]
fn long_lengths() {
    for len in [125, 126, 65_535, 65_536, 70_000] {
        let payload = vec![b'a'; len];
        let events = decode_all(
            &mut Decoder::new(1 << 20),
            &masked(true, OP_BINARY, &payload, MASK),
        );
        assert_eq!(
            events.unwrap(),
            [Event::Message(payload.into())],
            "len {len}"
        );
    }
}

#[test]
fn a_message_over_the_limit_is_refused_from_its_header() {
    let mut decoder = Decoder::new(100);
    let frame = masked(true, OP_BINARY, &[0; 101], MASK);
    // Only the header has arrived: refused already.
    assert_eq!(
        decode_all(&mut decoder, &frame[..4]),
        Err(Violation::TooBig)
    );
    // Fragments adding up past the limit.
    let mut bytes = masked(false, OP_TEXT, &[b'a'; 60], MASK);
    bytes.extend(masked(true, OP_CONTINUATION, &[b'a'; 41], MASK));
    assert_eq!(
        decode_all(&mut Decoder::new(100), &bytes),
        Err(Violation::TooBig)
    );
    // A huge declared length.
    let mut huge = vec![0x82, 0xff];
    huge.extend_from_slice(&u64::MAX.to_be_bytes());
    assert_eq!(
        decode_all(&mut Decoder::new(100), &huge),
        Err(Violation::TooBig)
    );
    assert_eq!(
        decode_all(
            &mut Decoder::new(100),
            &masked(true, OP_BINARY, &[0; 100], MASK)
        )
        .unwrap()
        .len(),
        1
    );
}

#[test]
fn protocol_violations() {
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("unmasked", vec![0x81, 0x01, b'a']),
        ("reserved bit", {
            let mut f = masked(true, OP_TEXT, b"a", MASK);
            f[0] |= 0x40;
            f
        }),
        ("unknown opcode", masked(true, 0x3, b"", MASK)),
        ("fragmented ping", masked(false, OP_PING, b"", MASK)),
        ("long ping", masked(true, OP_PING, &[0; 126], MASK)),
        (
            "continuation first",
            masked(true, OP_CONTINUATION, b"a", MASK),
        ),
        ("start inside a message", {
            let mut f = masked(false, OP_TEXT, b"a", MASK);
            f.extend(masked(true, OP_TEXT, b"b", MASK));
            f
        }),
        ("one-byte close", masked(true, OP_CLOSE, &[3], MASK)),
        (
            "close reason not UTF-8",
            masked(true, OP_CLOSE, &[3, 0xe8, 0xff], MASK),
        ),
    ];
    for (name, bytes) in cases {
        assert_eq!(
            decode_all(&mut Decoder::new(1024), &bytes),
            Err(Violation::Protocol),
            "{name}"
        );
    }
    assert_eq!(
        decode_all(
            &mut Decoder::new(1024),
            &masked(true, OP_TEXT, &[0xc3, 0x28], MASK)
        ),
        Err(Violation::NotUtf8)
    );
}

#[test]
fn server_headers() {
    for (len, expected) in [
        (0usize, vec![0x81, 0]),
        (125, vec![0x81, 125]),
        (126, vec![0x81, 126, 0, 126]),
        (65_535, vec![0x81, 126, 0xff, 0xff]),
        (65_536, vec![0x81, 127, 0, 0, 0, 0, 0, 1, 0, 0]),
    ] {
        let (head, used) = header(OP_TEXT, len);
        assert_eq!(&head[..used], &expected[..], "len {len}");
    }
    let close = close_frame(3008, "slow");
    assert_eq!(&close[..], &[0x88, 6, 0x0b, 0xc0, b's', b'l', b'o', b'w']);
    // A reason longer than a control frame allows is cut at a character boundary.
    let close = close_frame(3000, &"é".repeat(100));
    assert!(close.len() <= 2 + 125);
    assert!(std::str::from_utf8(&close[4..]).is_ok());
}
