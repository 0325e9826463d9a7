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

/// Runs `spindle checkconfig [args] -c <file holding `config`>`: (exit code, stdout, stderr).
fn checkconfig(config: &str, args: &[&str]) -> (i32, String, String) {
    let dir = spindle_tests::TempDir::new("spindle-checkconfig").expect("a temp dir");
    let path = dir.path().join("config.json");
    std::fs::write(&path, config).expect("write config");
    let output = Command::new(fixture::binary_path())
        .arg("checkconfig")
        .args(args)
        .arg("-c")
        .arg(&path)
        .output()
        .expect("spindle runs (build it first: cargo build -p spindle --bin spindle)");
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(!stderr.contains("panicked"), "{stderr}");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr,
    )
}

#[test]
fn checkconfig_refuses_what_serve_refuses() {
    // The tree is fine; the key inside does not parse — serve refuses it, so must checkconfig.
    let (code, _, stderr) = checkconfig(r#"{"client":{"token":{"rsa_public_key":"nope"}}}"#, &[]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("client.token.rsa_public_key"), "{stderr}");
    // An unreadable TLS certificate.
    let tls = r#"{"client":{"token":{"hmac_secret_key":"k"}},
                  "http_server":{"tls":{"enabled":true,"cert_pem":"/nonexistent.pem","key_pem":"/nonexistent.key"}}}"#;
    let (code, _, stderr) = checkconfig(tls, &[]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("http_server.tls"), "{stderr}");
}

#[test]
fn checkconfig_names_a_bad_key_once() {
    let (code, _, stderr) = checkconfig(r#"{"channel":{"namespaces":[{"name":"bad name"}]}}"#, &[]);
    assert_eq!(code, 1);
    assert_eq!(
        stderr.matches("invalid configuration").count(),
        1,
        "{stderr}"
    );
    assert!(stderr.contains("channel.namespaces[0].name"), "{stderr}");
}

#[test]
fn checkconfig_warns_about_a_config_nobody_can_connect_with() {
    let (code, stdout, stderr) = checkconfig("{}", &[]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("is valid"), "{stdout}");
    assert!(stderr.contains("no client can connect"), "{stderr}");
    let (code, _, stderr) = checkconfig("{}", &["--strict"]);
    assert_eq!(code, 1, "strict mode fails on the warning: {stderr}");
    let (code, _, stderr) = checkconfig(r#"{"client":{"token":{"hmac_secret_key":"k"}}}"#, &[]);
    assert_eq!(code, 0);
    assert!(!stderr.contains("no client can connect"), "{stderr}");
}

#[test]
fn a_feature_spindle_does_not_serve_is_named_and_fails_strict_mode() {
    let config = r#"{"client":{"token":{"hmac_secret_key":"k"}},
        "grpc_api":{"enabled":true},"websocket":{"compression":true},
        "admin":{"enabled":false,"password":"off, so nothing is missed"}}"#;
    let (code, stdout, stderr) = checkconfig(config, &[]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("is valid"), "{stdout}");
    for key in ["grpc_api.enabled", "websocket.compression"] {
        assert!(
            stderr.contains(&format!("{key}: not served by Spindle yet")),
            "{key}: {stderr}"
        );
    }
    assert!(!stderr.contains("admin"), "{stderr}");
    let (code, _, stderr) = checkconfig(config, &["--strict"]);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("grpc_api.enabled, websocket.compression"),
        "{stderr}"
    );
}

#[test]
fn checkconfig_validates_for_one_role() {
    // A subscribe proxy without an endpoint: an edge does not call the backend (its core
    // does), serve does.
    let config = r#"{"client":{"token":{"hmac_secret_key":"k"}},
        "channel":{"without_namespace":{"subscribe_proxy_enabled":true}},
        "mesh":{"node_name":"edge-1","cores":["core-1:7100"],
                "tls":{"cert_file":"c.pem","key_file":"k.pem","ca_file":"ca.pem"}}}"#;
    let (code, _, stderr) = checkconfig(config, &["--role", "edge"]);
    assert_eq!(code, 0, "{stderr}");
    let (code, _, stderr) = checkconfig(config, &[]);
    assert_eq!(code, 1);
    assert!(
        stderr.contains("channel.proxy.subscribe.endpoint"),
        "{stderr}"
    );
    // An edge without a core to dial.
    let lonely = r#"{"client":{"token":{"hmac_secret_key":"k"}}}"#;
    let (code, _, stderr) = checkconfig(lonely, &["--role", "edge"]);
    assert_eq!(code, 1);
    assert!(
        stderr.contains("mesh.cores") && stderr.contains("mesh.tls"),
        "{stderr}"
    );
    let (code, _, stderr) = checkconfig(lonely, &["--role", "nonsense"]);
    assert_eq!(code, 2, "clap refuses an unknown role: {stderr}");
}

/// Runs `spindle <args>` with the fixture config: (exit code, stdout, stderr).
fn spindle(args: &[&str]) -> (i32, String, String) {
    let output = Command::new(fixture::binary_path())
        .args(args)
        .arg("-c")
        .arg(fixture::fixture_path())
        .output()
        .expect("spindle runs (build it first: cargo build -p spindle --bin spindle)");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn tokens_made_by_gentoken_and_gensubtoken_check_out() {
    let (code, token, stderr) = spindle(&["gentoken", "-u", "alice", "-t", "60", "-q"]);
    assert_eq!(code, 0, "{stderr}");
    let token = token.trim();
    assert_eq!(token.split('.').count(), 3, "a JWT: {token}");
    let (code, out, _) = spindle(&["checktoken", token]);
    assert_eq!(code, 0);
    assert!(
        out.contains("valid token") && out.contains("\"alice\""),
        "{out}"
    );

    let (code, sub, stderr) = spindle(&["gensubtoken", "-u", "alice", "-s", "chat:room", "-q"]);
    assert_eq!(code, 0, "{stderr}");
    let (code, out, _) = spindle(&["checksubtoken", sub.trim()]);
    assert_eq!(code, 0);
    assert!(
        out.contains("\"chat:room\"") && out.contains("\"alice\""),
        "{out}"
    );
    // A connection token is not a subscription token, and garbage is neither.
    let (code, _, _) = spindle(&["checksubtoken", token]);
    assert_eq!(code, 1);
    let (code, out, err) = spindle(&["checktoken", "not.a.token"]);
    assert_eq!(code, 1, "{out}{err}");
}
