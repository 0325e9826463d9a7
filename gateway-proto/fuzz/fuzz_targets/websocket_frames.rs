#![no_main]
// A harness missing from spindle_proto::fuzz::by_name must crash the run, not fuzz nothing
// (gateway-proto/tests/fuzz_corpus.rs ties these files to fuzz::TARGETS).
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    match spindle_proto::fuzz::by_name("websocket_frames") {
        Some(harness) => harness(data),
        None => panic!("no fuzz harness named websocket_frames"),
    }
});
