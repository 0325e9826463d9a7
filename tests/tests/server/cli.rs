//! The non-serving commands, as a shell user runs them.

use spindle_tests::fixture;
use std::process::{Command, Stdio};

/// Runs `spindle <args>` with its standard output closed by the reader before anything is
/// written (as `| head -c 0` does); returns its stderr after asserting a clean exit.
fn run_with_closed_stdout(args: &[&str]) -> String {
    let mut child = Command::new(fixture::binary_path())
        .args(args)
        .env(
            "SPINDLE_CLIENT_TOKEN_HMAC_SECRET_KEY",
            fixture::hmac_secret(),
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spindle starts (build it first: cargo build -p spindle --bin spindle)");
    drop(child.stdout.take());
    let output = child.wait_with_output().expect("spindle ends");
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(!stderr.contains("panicked"), "{args:?} panicked: {stderr}");
    assert!(output.status.success(), "{args:?} failed: {stderr}");
    stderr
}

#[test]
fn a_closed_pipe_ends_output_quietly() {
    run_with_closed_stdout(&["gentoken", "-u", "someone"]);
    run_with_closed_stdout(&["gensubtoken", "-u", "someone", "-s", "news"]);
    run_with_closed_stdout(&["version"]);
}
