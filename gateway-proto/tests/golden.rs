//! Golden frames recorded from the real SDKs (centrifuge-js and centrifuge-python, JSON and
//! Protobuf; see `tests/golden/capture/README.md` for how they were captured).
//!
//! - Every frame an SDK sent decodes into the commands the transcript lists, and survives our
//!   re-encoding unchanged.
//! - Every server message of the transcript is encoded by our encoder into the `out` file the
//!   replay harness (`capture/replay.sh`) feeds back to the real SDK, whose assertions are the
//!   acceptance test. `SPINDLE_BLESS=1` rewrites those files; otherwise they must match exactly.
#![allow(clippy::unwrap_used)] // a test or bench that cannot set up fails loudly

use prost::Message;
use serde::Deserialize;
use serde_json::Value;
use spindle_proto::{Format, client, decode_commands, encode_reply};
use std::path::{Path, PathBuf};

#[derive(Deserialize)]
struct Transcript {
    sdk: String,
    sdk_version: String,
    format: String,
    events: Vec<Event>,
}

#[derive(Deserialize)]
struct Event {
    dir: String,
    file: Option<String>,
    #[serde(default)]
    commands: Vec<Expected>,
    reply: Option<Value>,
}

#[derive(Deserialize)]
struct Expected {
    kind: String,
    id: u32,
}

const COMBINATIONS: [&str; 4] = ["js-json", "js-protobuf", "py-json", "py-protobuf"];

fn golden_dir(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name)
}

fn load(name: &str) -> (Transcript, Format) {
    let path = golden_dir(name).join("transcript.json");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (record with capture/capture.sh)", path.display()));
    let transcript: Transcript = serde_json::from_str(&text).unwrap();
    let format = match transcript.format.as_str() {
        "json" => Format::Json,
        "protobuf" => Format::Protobuf,
        other => panic!("unknown format {other}"),
    };
    (transcript, format)
}

/// Drops the zero values an SDK may write and Centrifugo's encoding omits.
fn without_zero_values(value: Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.into_iter()
                .filter(|(_, v)| {
                    !matches!(v, Value::Null | Value::Bool(false))
                        && v != &Value::from(0)
                        && v != &Value::from("")
                        && v != &Value::Array(vec![])
                })
                .map(|(k, v)| (k, without_zero_values(v)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.into_iter().map(without_zero_values).collect()),
        other => other,
    }
}

#[test]
fn sdk_frames_decode_into_the_recorded_commands_and_re_encode_unchanged() {
    let mut frames = 0;
    for name in COMBINATIONS {
        let (transcript, format) = load(name);
        for event in transcript.events.iter().filter(|e| e.dir == "in") {
            let file = event.file.as_deref().unwrap();
            let bytes = std::fs::read(golden_dir(name).join(file)).unwrap();
            let commands: Vec<_> = decode_commands(format, &bytes, 65536)
                .unwrap_or_else(|e| panic!("{name}/{file}: {e}"))
                .collect::<Result<_, _>>()
                .unwrap_or_else(|e| panic!("{name}/{file}: {e}"));
            let seen: Vec<_> = commands.iter().map(|c| (c.request.name(), c.id)).collect();
            let expected: Vec<_> = event
                .commands
                .iter()
                .map(|c| (c.kind.as_str(), c.id))
                .collect();
            assert_eq!(seen, expected, "{name}/{file}");

            for (index, command) in commands.into_iter().enumerate() {
                let raw = client::Command::from(command);
                match format {
                    Format::Json => {
                        let line = bytes
                            .split(|&b| b == b'\n')
                            .filter(|l| !l.is_empty())
                            .nth(index)
                            .unwrap();
                        let sent: Value = serde_json::from_slice(line).unwrap();
                        let ours: Value = serde_json::to_value(&raw).unwrap();
                        assert_eq!(ours, without_zero_values(sent), "{name}/{file} #{index}");
                    }
                    Format::Protobuf => {
                        let again =
                            client::Command::decode(raw.encode_to_vec().as_slice()).unwrap();
                        assert_eq!(again, raw, "{name}/{file} #{index}");
                    }
                }
            }
            frames += 1;
        }
        assert!(!transcript.sdk.is_empty() && !transcript.sdk_version.is_empty());
    }
    assert!(frames >= 40, "only {frames} golden frames");
}

#[test]
fn server_messages_are_what_our_encoder_writes() {
    // Only `1` rewrites: `SPINDLE_BLESS=0` (or any other value) must still compare.
    let bless = std::env::var("SPINDLE_BLESS").as_deref() == Ok("1");
    let mut mismatches = Vec::new();
    for name in COMBINATIONS {
        let (transcript, format) = load(name);
        for event in transcript.events.iter().filter(|e| e.dir == "out") {
            let file = event.file.as_deref().unwrap();
            let logical = event.reply.as_ref().unwrap();
            let reply: client::Reply = serde_json::from_str(&logical.to_string())
                .unwrap_or_else(|e| panic!("{name}/{file}: reply does not fit our types: {e}"));
            let ours = encode_reply(format, &reply).unwrap();
            if format == Format::Json {
                let ours_value: Value = serde_json::from_slice(&ours).unwrap();
                assert_eq!(
                    &ours_value, logical,
                    "{name}/{file}: not the transcript's reply"
                );
            } else {
                let decoded = client::Reply::decode_length_delimited(ours.clone()).unwrap();
                assert_eq!(decoded, reply);
            }
            let path = golden_dir(name).join(file);
            if bless {
                std::fs::write(&path, &ours).unwrap();
            } else if std::fs::read(&path).unwrap() != ours {
                mismatches.push(format!("{name}/{file}"));
            }
        }
    }
    assert!(
        mismatches.is_empty(),
        "our encoder no longer writes these replay files (SPINDLE_BLESS=1 to accept, then run \
         capture/replay.sh): {mismatches:?}"
    );
}
