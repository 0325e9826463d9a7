//! The forms one publication event takes on the wire, each encoded at most once per format
//! (DESIGN §5): plain; for delta-negotiated subscribers full data as a JSON string (JSON) and
//! the fossil delta against the event's previous data; and, rarely, a delta against one
//! subscriber's own base (its tags filter skipped the previous publication).

use super::PubEvent;
use bytes::Bytes;
use spindle_hub::delta;
use spindle_proto::json::string_payload;
use spindle_proto::{EncodeError, Format, client, encode_reply};

type Encoded = Result<Bytes, EncodeError>;

/// The forms of one publication event, each encoded at most once per format.
#[derive(Debug)]
pub struct Variants<'a> {
    event: &'a PubEvent,
    plain: [Option<Encoded>; 2],
    /// JSON only: full data as a JSON string (Protobuf's full form is the plain one).
    full_json: Option<Encoded>,
    /// The patch against `prev_data` if smaller than the data (`Some(None)`: not smaller).
    patch: Option<Option<Bytes>>,
    delta: [Option<Encoded>; 2],
    encodes: u64,
}

impl<'a> Variants<'a> {
    pub fn new(event: &'a PubEvent) -> Variants<'a> {
        Variants {
            event,
            plain: [None, None],
            full_json: None,
            patch: None,
            delta: [None, None],
            encodes: 0,
        }
    }

    /// Encodes done so far.
    pub fn encodes(&self) -> u64 {
        self.encodes
    }

    fn encode(&mut self, format: Format, data: Bytes, is_delta: bool) -> Encoded {
        self.encodes += 1;
        encode_publication(self.event, format, data, is_delta)
    }

    pub(crate) fn plain(&mut self, format: Format) -> Encoded {
        if let Some(done) = &self.plain[index(format)] {
            return done.clone();
        }
        let encoded = self.encode(format, self.event.publication.data.clone(), false);
        self.plain[index(format)] = Some(encoded.clone());
        encoded
    }

    pub(crate) fn full(&mut self, format: Format) -> Encoded {
        if format == Format::Protobuf {
            return self.plain(format);
        }
        if let Some(done) = &self.full_json {
            return done.clone();
        }
        let encoded = wire_data(format, &self.event.publication.data)
            .and_then(|data| self.encode(format, data, false));
        self.full_json = Some(encoded.clone());
        encoded
    }

    pub(crate) fn shared_delta(&mut self, format: Format) -> Encoded {
        if let Some(done) = &self.delta[index(format)] {
            return done.clone();
        }
        let event = self.event;
        let patch = self
            .patch
            .get_or_insert_with(|| smaller_patch(&event.prev_data, &event.publication.data))
            .clone();
        let encoded = match patch {
            Some(patch) => {
                wire_data(format, &patch).and_then(|data| self.encode(format, data, true))
            }
            None => self.full(format),
        };
        self.delta[index(format)] = Some(encoded.clone());
        encoded
    }

    pub(super) fn own_delta(&mut self, base: &Bytes, format: Format) -> Encoded {
        match smaller_patch(base, &self.event.publication.data) {
            Some(patch) => {
                wire_data(format, &patch).and_then(|data| self.encode(format, data, true))
            }
            None => self.full(format),
        }
    }
}

fn index(format: Format) -> usize {
    match format {
        Format::Json => 0,
        Format::Protobuf => 1,
    }
}

/// A fossil delta from `base` to `data`, when it is smaller than `data`.
pub fn smaller_patch(base: &[u8], data: &[u8]) -> Option<Bytes> {
    let patch = delta::create(base, data);
    (patch.len() < data.len()).then(|| Bytes::from(patch))
}

/// Payload bytes as a delta-negotiated client receives them: a JSON string on JSON. Bytes
/// that are not UTF-8 cannot be a JSON client's payload (the connection closes with 3506, as
/// for any non-JSON payload).
pub fn wire_data(format: Format, data: &Bytes) -> Result<Bytes, EncodeError> {
    match format {
        Format::Json if std::str::from_utf8(data).is_err() => Err(EncodeError::PayloadNotJson),
        Format::Json => Ok(string_payload(data)),
        Format::Protobuf => Ok(data.clone()),
    }
}

fn encode_publication(event: &PubEvent, format: Format, data: Bytes, is_delta: bool) -> Encoded {
    let publication = client::Publication {
        data,
        delta: is_delta,
        ..event.publication.clone()
    };
    let reply = client::Reply {
        push: Some(client::Push {
            channel: event.channel.clone(),
            r#pub: Some(publication),
            ..Default::default()
        }),
        ..Default::default()
    };
    encode_reply(format, &reply)
}
