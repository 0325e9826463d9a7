//! The two encodings of the client protocol.

/// A connection speaks one encoding for its whole life (docs/protocol.md §1.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Format {
    /// Go-struct JSON: snake_case keys, zero values omitted, payloads as raw JSON,
    /// messages separated by `\n`.
    Json,
    /// proto3 binary, every message prefixed by its varint length.
    Protobuf,
}

impl Format {
    /// Both formats, for encoding a broadcast once per format.
    pub const ALL: [Format; 2] = [Format::Json, Format::Protobuf];

    /// The name proxies and logs use (`json` / `protobuf`).
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Json => "json",
            Format::Protobuf => "protobuf",
        }
    }
}
