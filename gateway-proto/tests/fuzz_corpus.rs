//! Runs every fuzz harness on every run of the test suite: first over the checked-in corpus
//! (`fuzz/corpus/<target>/`, grown by `cargo fuzz`), then over proptest-generated garbage and
//! mutations of valid frames. A panic in a decoder fails this test.
//!
//! `SPINDLE_BLESS=1` (re)writes the seed inputs made from the sample messages into the corpus.
#![allow(clippy::unwrap_used)] // a test or bench that cannot set up fails loudly

mod common;

use proptest::prelude::*;
use prost::Message;
use spindle_proto::{Format, encode_reply, fuzz, mesh};
use std::path::{Path, PathBuf};

fn corpus_dir(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target)
}

fn seeds() -> Vec<(&'static str, Vec<u8>)> {
    let command = common::command_with_everything();
    let reply = common::reply_with_everything();
    let mut json_frame = serde_json::to_vec(&command).unwrap();
    json_frame.extend_from_slice(b"\n{}\n");
    let mut pb_frame = command.encode_length_delimited_to_vec();
    pb_frame.push(0);
    let batch =
        serde_json::json!({"commands":[{"publish":{"channel":"a","data":{"x":1}}},{"info":{}}]});
    let frame = mesh::MeshFrame {
        kind: Some(mesh::mesh_frame::Kind::Hello(mesh::Hello {
            node_id: "n".into(),
            role: mesh::Role::Edge as i32,
            protocol_version: 1,
            ..Default::default()
        })),
    };
    let mut mesh_bytes = vec![3];
    mesh_bytes.extend_from_slice(&mesh::encode_frame(&frame));
    mesh_bytes.extend_from_slice(&mesh::encode_frame(&frame));
    let mut ws_bytes = vec![9];
    ws_bytes.extend(spindle_proto::websocket::client_frame(
        false,
        1,
        b"{\"id\":1,",
        [7, 7, 7, 7],
    ));
    ws_bytes.extend(spindle_proto::websocket::client_frame(
        true,
        9,
        b"ping",
        [1, 2, 3, 4],
    ));
    ws_bytes.extend(spindle_proto::websocket::client_frame(
        true,
        0,
        b"\"connect\":{}}",
        [0; 4],
    ));
    ws_bytes.extend(spindle_proto::websocket::client_frame(
        true,
        8,
        &[3, 232],
        [9, 8, 7, 6],
    ));
    vec![
        ("json_commands", json_frame),
        ("protobuf_commands", pb_frame),
        (
            "json_reply",
            encode_reply(Format::Json, &reply).unwrap().to_vec(),
        ),
        ("protobuf_reply", reply.encode_to_vec()),
        ("api_request", serde_json::to_vec(&batch).unwrap()),
        ("mesh_stream", mesh_bytes),
        ("uni_connect", serde_json::to_vec(&command.connect).unwrap()),
        ("websocket_frames", ws_bytes),
    ]
}

#[test]
fn checked_in_corpus_replays_through_every_harness() {
    if std::env::var("SPINDLE_BLESS").as_deref() == Ok("1") {
        for (target, bytes) in seeds() {
            std::fs::create_dir_all(corpus_dir(target)).unwrap();
            std::fs::write(corpus_dir(target).join("seed-sample"), bytes).unwrap();
        }
    }
    for target in fuzz::TARGETS {
        let harness = fuzz::by_name(target).unwrap();
        let entries: Vec<_> = std::fs::read_dir(corpus_dir(target))
            .unwrap_or_else(|e| panic!("corpus for {target} missing: {e}"))
            .map(|entry| entry.unwrap().path())
            .collect();
        assert!(!entries.is_empty(), "empty corpus for {target}");
        for path in entries {
            harness(&std::fs::read(&path).unwrap());
        }
    }
}

/// Each fuzz target (`fuzz/fuzz_targets/<name>.rs`, a `[[bin]]` of `fuzz/Cargo.toml`) runs
/// the harness of its own name, and every harness has a target: a renamed harness cannot
/// quietly turn a fuzz binary into one that tests nothing.
#[test]
fn every_fuzz_target_runs_the_harness_of_its_name() {
    let fuzz_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut files: Vec<String> = std::fs::read_dir(fuzz_dir.join("fuzz_targets"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "rs"))
        .map(|path| path.file_stem().unwrap().to_string_lossy().into_owned())
        .collect();
    files.sort();
    let mut targets: Vec<&str> = fuzz::TARGETS.to_vec();
    targets.sort_unstable();
    assert_eq!(files, targets, "fuzz_targets/*.rs against fuzz::TARGETS");
    let manifest = std::fs::read_to_string(fuzz_dir.join("Cargo.toml")).unwrap();
    for target in targets {
        let source =
            std::fs::read_to_string(fuzz_dir.join(format!("fuzz_targets/{target}.rs"))).unwrap();
        assert!(
            source.contains(&format!("by_name(\"{target}\")")),
            "fuzz_targets/{target}.rs does not run the harness {target}"
        );
        assert!(
            manifest.contains(&format!(
                "name = \"{target}\"\npath = \"fuzz_targets/{target}.rs\""
            )),
            "fuzz/Cargo.toml has no [[bin]] {target}"
        );
        assert!(fuzz::by_name(target).is_some(), "no harness {target}");
    }
}

fn mutated(seed: Vec<u8>) -> impl Strategy<Value = Vec<u8>> {
    let len = seed.len();
    prop::collection::vec((0..len.max(1), any::<u8>(), 0u8..3), 1..8).prop_map(move |edits| {
        let mut bytes = seed.clone();
        for (at, byte, op) in edits {
            let at = at.min(bytes.len());
            match op {
                0 if at < bytes.len() => bytes[at] = byte,
                1 => bytes.insert(at, byte),
                _ => bytes.truncate(at),
            }
        }
        bytes
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn garbage_never_panics_a_decoder(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        for target in fuzz::TARGETS {
            fuzz::by_name(target).unwrap()(&bytes);
        }
    }

    #[test]
    fn mutated_valid_frames_never_panic_a_decoder(
        bytes in (0usize..8).prop_flat_map(|i| mutated(seeds()[i].1.clone())),
    ) {
        for target in fuzz::TARGETS {
            fuzz::by_name(target).unwrap()(&bytes);
        }
    }
}
