//! The probe for the per-test deadline (`scripts/test_deadline.py`): one test that never ends.
//! It is ignored, so a normal run never starts it; the test command runs it on purpose under a
//! short deadline and expects the deadline to kill it and name it.

#[test]
#[ignore = "run only by the per-test deadline's self-check in scripts/test.sh"]
fn deadline_probe_never_ends() {
    loop {
        std::thread::park();
    }
}
