//! Process plumbing shared by every role's binary (`spindle serve | core | edge`, the slim
//! `spindle-edge`): reading the configuration from the machine, logging, the HTTP(S) listeners
//! with their deadlines, `/health`, `/metrics`, signals.
//!
//! Must not: hold domain rules (those live in `spindle-hub`) or depend on the edge, the core or
//! the brokers — the slim edge binary is built from this crate without them.
//!
//! Layout:
//! - [`args`]: the command-line options every role takes.
//! - [`settings`]: the configuration file and environment, handed to `spindle_hub::config`.
//! - [`http`]: the accept loop of every HTTP listener (header / idle deadlines, a bound on
//!   connections without a request); [`tls`]: the HTTPS listener and PEM reading.
//! - [`mesh`]: a role's mesh name, TLS files and options from `mesh.*`.
//! - [`output`]: standard output that tolerates a closed pipe.
//! - [`preflight`]: what a role refuses to start with beyond the tree's own rules (and
//!   `checkconfig` checks the same way).
//! - this file: logging, insecure-switch warnings, serving a router, `/health`, `/metrics`,
//!   signals.

pub mod args;
pub mod http;
pub mod mesh;
pub mod output;
mod pending;
pub mod preflight;
pub mod settings;
pub mod tls;

use anyhow::{Context, Result};
use axum::Router;
use axum::routing::get;
use spindle_hub::config::Config;
use spindle_hub::config::Role;
use std::path::Path;
use std::sync::Arc;
use tokio::net::TcpListener;

/// What every role does before it serves: load the configuration for `role` (from `path`, the
/// environment and `flags`), start logging, say out loud every insecure switch and every
/// warning of the start-up checks (failing on what they refuse), and make the runtime.
pub fn prepare(
    path: Option<&Path>,
    flags: Vec<(String, String)>,
    json_logs: bool,
    role: Role,
) -> Result<(Arc<Config>, tokio::runtime::Runtime)> {
    let config = settings::load(path, flags, false, role)?.config;
    init_logging(&config, json_logs)?;
    warn_insecure(&config);
    for warning in preflight::check(&config)? {
        tracing::warn!("{warning}");
    }
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    Ok((Arc::new(config), runtime))
}

/// Every switch that turns a protection off is said out loud at start, each time.
pub fn warn_insecure(config: &Config) {
    let client = &config.client;
    let switches = [
        (
            "client.insecure",
            client.insecure,
            "no authentication or permission checks at all",
        ),
        (
            "client.insecure_skip_token_signature_verify",
            client.insecure_skip_token_signature_verify,
            "token signatures are not verified: anyone can forge any user's token",
        ),
        (
            "client.token.insecure_skip_jwks_endpoint_safety_check",
            client.token.insecure_skip_jwks_endpoint_safety_check,
            "unverified token claims may choose the JWKS URL",
        ),
        (
            "client.subscription_token.insecure_skip_jwks_endpoint_safety_check",
            client.subscription_token.enabled
                && client
                    .subscription_token
                    .token
                    .insecure_skip_jwks_endpoint_safety_check,
            "unverified token claims may choose the JWKS URL",
        ),
        (
            "http_api.insecure",
            config.http_api.insecure,
            "the server API accepts requests without a key",
        ),
    ];
    for (key, on, consequence) in switches {
        if on {
            tracing::warn!("INSECURE: {key} is on: {consequence}; never use it in production");
        }
    }
}

pub fn init_logging(config: &Config, json: bool) -> Result<()> {
    use tracing_subscriber::EnvFilter;
    let level = config.log.level.as_str();
    let filter = match level {
        "none" => EnvFilter::new("off"),
        level => EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level)),
    };
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    let result = match (config.log.file.as_str(), json) {
        ("", false) => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .with_writer(std::io::stderr)
            .try_init(),
        ("", true) => builder.json().with_writer(std::io::stderr).try_init(),
        (file, json) => {
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(Path::new(file))
                .with_context(|| format!("cannot open log file {file}"))?;
            let writer = std::sync::Mutex::new(file);
            if json {
                builder.json().with_writer(writer).try_init()
            } else {
                builder.with_ansi(false).with_writer(writer).try_init()
            }
        }
    };
    result.map_err(|e| anyhow::anyhow!("cannot start logging: {e}"))
}

/// Serves `router` on `listener` (HTTPS with `identity`) until `shutdown` resolves, with the
/// header, idle and pending-connection limits of [`http`].
pub fn serve_http(
    listener: TcpListener,
    identity: Option<&tls::Identity>,
    router: Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<impl std::future::Future<Output = ()> + Send + 'static> {
    let listener = match identity {
        Some(identity) => Either::Tls(tls::TlsListener::new(
            listener,
            tls::https_config(identity)?,
        )?),
        None => Either::Plain(listener),
    };
    Ok(async move {
        match listener {
            Either::Tls(listener) => http::serve(listener, router, shutdown).await,
            Either::Plain(listener) => http::serve(listener, router, shutdown).await,
        }
    })
}

/// Serves `router` on `listener` (HTTPS with `identity`) until `shutdown` resolves (a role's
/// command passes [`shutdown_signal`]: SIGINT / SIGTERM), calls `on_signal` then, and returns
/// once the server has stopped or `limit` (`shutdown.timeout`) after the signal has passed,
/// whichever comes first. Returns the deadline the rest of the shutdown (connection drains,
/// other endpoints) must keep.
pub async fn serve_until(
    listener: TcpListener,
    identity: Option<&tls::Identity>,
    router: Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    on_signal: impl FnOnce() + Send + 'static,
    limit: std::time::Duration,
) -> Result<tokio::time::Instant> {
    let (signalled_tx, mut signalled) = tokio::sync::watch::channel(None);
    let shutdown = async move {
        shutdown.await;
        let _ = signalled_tx.send(Some(tokio::time::Instant::now()));
        on_signal();
    };
    let mut http = std::pin::pin!(serve_http(listener, identity, router, shutdown)?);
    let mut stopped = false;
    let signalled_at = tokio::select! {
        () = &mut http => {
            stopped = true;
            tokio::time::Instant::now()
        }
        at = signalled.wait_for(Option::is_some) => at
            .ok()
            .and_then(|at| *at)
            .unwrap_or_else(tokio::time::Instant::now),
    };
    let deadline = signalled_at + limit;
    if !stopped && tokio::time::timeout_at(deadline, http).await.is_err() {
        tracing::warn!("the HTTP server did not stop within shutdown.timeout ({limit:?})");
    }
    Ok(deadline)
}

/// Binds the main HTTP listener (`address` / `http_server.address`, `http_server.port`).
pub async fn bind_http(config: &Config) -> Result<TcpListener> {
    let address = format!("{}:{}", bind_address(config), config.http_server.port);
    TcpListener::bind(&address)
        .await
        .with_context(|| format!("cannot listen on {address}"))
}

/// `health.handler_prefix`: 200 `{}` while `check` passes, 503 `{"error": reason}` otherwise —
/// when `health.enabled` (as in Centrifugo, off by default); an empty router otherwise.
pub fn health_router(
    config: &Config,
    check: impl Fn() -> Result<(), String> + Clone + Send + Sync + 'static,
) -> Router {
    if !config.health.enabled {
        return Router::new();
    }
    Router::new().route(
        &config.health.handler_prefix,
        get(move || {
            let check = check.clone();
            async move {
                match check() {
                    Ok(()) => (
                        axum::http::StatusCode::OK,
                        axum::Json(serde_json::json!({})),
                    ),
                    Err(error) => (
                        axum::http::StatusCode::SERVICE_UNAVAILABLE,
                        axum::Json(serde_json::json!({ "error": error })),
                    ),
                }
            }
        }),
    )
}

/// `GET <prometheus.handler_prefix>` answering with `render()`, when `prometheus.enabled` (as
/// in Centrifugo, off by default); an empty router otherwise.
pub fn metrics_router(
    config: &Config,
    render: impl Fn() -> String + Clone + Send + Sync + 'static,
) -> Router {
    if !config.prometheus.enabled {
        return Router::new();
    }
    Router::new().route(
        &config.prometheus.handler_prefix,
        get(move || {
            let render = render.clone();
            async move {
                (
                    [(
                        axum::http::header::CONTENT_TYPE,
                        "text/plain; version=0.0.4; charset=utf-8",
                    )],
                    render(),
                )
            }
        }),
    )
}

/// Turns Nagle's algorithm off on an accepted connection, as Go (and so Centrifugo) does for
/// every TCP socket. The writer already joins what is queued into one frame; holding a small
/// frame back until the previous one is acknowledged only adds a delayed-ACK wait (~40 ms) to
/// a publication's delivery.
pub fn no_delay(tcp: &mut tokio::net::TcpStream) {
    if let Err(error) = tcp.set_nodelay(true) {
        tracing::debug!(%error, "cannot set TCP_NODELAY");
    }
}

enum Either {
    Tls(tls::TlsListener),
    Plain(TcpListener),
}

pub fn scheme(tls: bool) -> &'static str {
    if tls { "https" } else { "http" }
}

pub fn bind_address(config: &Config) -> &str {
    match config.http_server.address.as_str() {
        "" => "0.0.0.0",
        address => address,
    }
}

pub async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::warn!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = interrupt => {}
        _ = terminate => {}
    }
}
