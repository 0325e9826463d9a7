#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Some(harness) = spindle_proto::fuzz::by_name("mesh_stream") {
        harness(data);
    }
});
