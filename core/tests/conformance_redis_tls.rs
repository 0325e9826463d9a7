//! The Redis broker and presence manager over TLS (`rediss://` addresses, rustls with the
//! ring provider, the server's CA from `engine.redis.tls.server_ca_pem`) pass the conformance
//! suite. The test starts its own TLS `redis-server` with a certificate made by `openssl`;
//! without either it fails, never skips.

mod conformance;
#[path = "support/redis_process.rs"]
mod redis_process;

use conformance::Fixture;
use redis_process::RedisProcess;
use spindle_core::broker::Broker as _;
use spindle_core::broker::{
    EventHandler, RedisBroker, RedisConnection, RedisOptions, RedisServer, RedisTls,
};
use spindle_core::presence::RedisPresenceManager;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

fn server() -> &'static (RedisProcess, u16, String) {
    static SERVER: OnceLock<(RedisProcess, u16, String)> = OnceLock::new();
    SERVER.get_or_init(redis_process::start_tls)
}

fn tls_options(ca: &str) -> RedisOptions {
    let address = format!("rediss://127.0.0.1:{}", server().1);
    RedisOptions {
        tls: RedisTls {
            enabled: false,
            server_ca_pem: ca.to_owned(),
            ..RedisTls::default()
        },
        ..conformance::redis::options(vec![RedisServer::Single(address)])
    }
}

async fn over_tls(handler: Arc<dyn EventHandler>) -> Fixture<RedisBroker, RedisPresenceManager> {
    conformance::redis::fixture(&tls_options(&server().2), handler, "the test TLS redis").await
}

conformance_tests!(over_tls);

/// A server whose certificate the configured CA did not sign is refused.
#[tokio::test]
async fn an_untrusted_certificate_is_refused() {
    let (_, _, other_ca) = redis_process::start_tls();
    let mut options = tls_options(&other_ca);
    options.connect_timeout = Duration::from_millis(500);
    let error = RedisConnection::connect(&options)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("cannot connect to redis at rediss://"),
        "{error}"
    );
}

fn options_for(port: u16, tls: RedisTls) -> RedisOptions {
    RedisOptions {
        servers: vec![RedisServer::Single(format!("rediss://127.0.0.1:{port}"))],
        connect_timeout: Duration::from_millis(800),
        tls,
        ..tls_options("")
    }
}

/// A server that requires client certificates (`--tls-auth-clients yes`) takes the one from
/// `cert_pem` / `key_pem` and refuses a client without one.
#[tokio::test]
async fn a_client_certificate_is_presented_when_configured() {
    let tls = redis_process::start_tls_with(true);
    let with_certificate = RedisTls {
        server_ca_pem: tls.ca.clone(),
        cert_pem: tls.client_cert.clone(),
        key_pem: tls.client_key.clone().into(),
        ..RedisTls::default()
    };
    let connection = RedisConnection::connect(&options_for(tls.port, with_certificate))
        .await
        .unwrap_or_else(|error| panic!("mutual TLS: {error}"));
    let broker =
        RedisBroker::with_connection(connection, Arc::new(conformance::Recorder::default()))
            .await
            .unwrap_or_else(|error| panic!("subscriber over mutual TLS: {error}"));
    broker
        .publish(
            "mtls",
            conformance::publication("hello"),
            &spindle_core::broker::PublishOptions::default(),
        )
        .await
        .unwrap_or_else(|error| panic!("publish over mutual TLS: {error}"));

    let without = RedisTls {
        server_ca_pem: tls.ca.clone(),
        ..RedisTls::default()
    };
    // Refused for the missing client certificate, not for some other reason.
    let Err(refused) = RedisConnection::connect(&options_for(tls.port, without)).await else {
        panic!("a client without a certificate is refused");
    };
    assert!(
        refused.to_string().contains("CertificateRequired"),
        "refused by the TLS handshake: {refused}"
    );
}

/// `insecure_skip_verify` accepts a server the configured CA did not sign.
#[tokio::test]
async fn insecure_skip_verify_accepts_any_server() {
    let (_, _, other_ca) = redis_process::start_tls();
    let insecure = RedisTls {
        server_ca_pem: other_ca,
        insecure_skip_verify: true,
        ..RedisTls::default()
    };
    RedisConnection::connect(&options_for(server().1, insecure))
        .await
        .unwrap_or_else(|error| panic!("insecure_skip_verify: {error}"));
}
