//! `spindle serve`: an edge and a core in one process, joined by the in-process link, behind one
//! HTTP server (HTTPS with `http_server.tls`), and with `webtransport.enabled` a WebTransport
//! endpoint on the UDP port of the same number.

use crate::cli::ServeArgs;
use crate::commands::genconfig::random_secret;
use anyhow::{Context, Result};
use spindle_hub::config::Config;
use spindle_server::settings;
use spindle_server::{
    bind_address, health_router, init_logging, metrics_router, scheme, serve_http, serve_until,
    tls, warn_insecure,
};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use tokio::net::TcpListener;

/// Messages that may wait in each direction of the in-process link.
const LINK_CAPACITY: usize = 4096;

pub fn run(args: ServeArgs) -> Result<ExitCode> {
    let path = args.config.clone().or_else(|| {
        let default = PathBuf::from("config.json");
        default.exists().then_some(default)
    });
    let mut flags = args.config_flags();
    if path.is_none() {
        flags.extend(quickstart_secrets());
    }
    let config = settings::load(
        path.as_deref(),
        flags,
        false,
        spindle_hub::config::Role::Serve,
    )?
    .config;
    init_logging(&config, args.log_json)?;
    warn_insecure(&config);
    for warning in spindle_server::preflight::check(&config)? {
        tracing::warn!("{warning}");
    }
    if let Some(path) = &path {
        tracing::info!(config = %path.display(), "configuration loaded");
    }
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    runtime.block_on(async {
        let config = Arc::new(config);
        let listener = spindle_server::bind_http(&config).await?;
        serve(config, listener, spindle_server::shutdown_signal()).await
    })?;
    Ok(ExitCode::SUCCESS)
}

/// Without a config file, a run still needs secrets to be useful: generate them for this run
/// (unless the environment sets them) and say so.
fn quickstart_secrets() -> Vec<(String, String)> {
    let mut flags = Vec::new();
    let set_by_env = |suffix: &str| {
        ["SPINDLE_", "CENTRIFUGO_"]
            .iter()
            .any(|p| std::env::var_os(format!("{p}{suffix}")).is_some())
    };
    if !set_by_env("CLIENT_TOKEN_HMAC_SECRET_KEY") {
        let secret = random_secret(32);
        eprintln!(
            "spindle: no config file; generated client.token.hmac_secret_key for this run: {secret}"
        );
        flags.push(("client.token.hmac_secret_key".to_owned(), secret));
    }
    if !set_by_env("HTTP_API_KEY") {
        let key = random_secret(32);
        eprintln!("spindle: no config file; generated http_api.key for this run: {key}");
        flags.push(("http_api.key".to_owned(), key));
    }
    eprintln!("spindle: write a permanent config with `spindle genconfig`");
    flags
}

/// Edge and core in one process, joined by the in-process link, on `listener` (already bound:
/// the node is named after the port it really got, `-p 0`) until `shutdown` resolves.
async fn serve(
    config: Arc<Config>,
    listener: TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let local = listener.local_addr()?;
    let identity = spindle_core::NodeIdentity::new(&config, local.port());
    let rules = spindle_hub::session::SessionRules::new(&config)
        .map_err(|e| anyhow::anyhow!("{e}"))
        .context("invalid client configuration")?;
    let ((edge_link, edge_inbox), (core_link, core_inbox)) =
        spindle_mesh::in_process(LINK_CAPACITY);

    let node = spindle_core::Node::connect(Arc::clone(&config), identity.clone())
        .await
        .context("cannot start the core")?;
    node.attach_edge(identity.uid.clone(), core_link, core_inbox);
    let edge_identity = spindle_edge::NodeIdentity {
        uid: identity.uid.clone(),
        name: identity.name.clone(),
    };
    let edge = spindle_edge::Edge::new(Arc::clone(&config), rules, edge_link, edge_identity);
    tokio::spawn({
        let edge = edge.clone();
        async move { edge.run_inbox(edge_inbox).await }
    });

    // uni_grpc: its own gRPC server, stopped with the HTTP server; bound before the HTTP
    // listener, so it is up once the listening line is printed.
    let (stopping_tx, stopping) = tokio::sync::watch::channel(false);
    let uni_grpc = if config.uni_grpc.enabled {
        let tls = if config.uni_grpc.tls.enabled {
            let (cert_pem, key_pem) = tls::pem_pair("uni_grpc.tls", &config.uni_grpc.tls)?;
            Some(spindle_edge::UniGrpcTls { cert_pem, key_pem })
        } else {
            None
        };
        let address = format!("{}:{}", uni_grpc_address(&config), config.uni_grpc.port);
        let listener = TcpListener::bind(&address)
            .await
            .with_context(|| format!("cannot listen on {address} (uni_grpc)"))?;
        let local = listener.local_addr()?;
        println!("spindle: uni_grpc listening on {local}");
        tracing::info!(%local, "uni_grpc serving");
        let edge = edge.clone();
        let mut stopping = stopping.clone();
        Some(tokio::spawn(async move {
            let stop = async move {
                let _ = stopping.wait_for(|stop| *stop).await;
            };
            if let Err(error) = edge.serve_uni_grpc(listener, tls, stop).await {
                tracing::error!(%error, "uni_grpc server failed");
            }
        }))
    } else {
        None
    };

    let tls_identity = if config.http_server.tls.enabled {
        Some(tls::identity("http_server.tls", &config.http_server.tls)?)
    } else {
        None
    };

    // The internal endpoints (API, health) on their own port when `internal_port` says so.
    let api = node.api_router();
    // 200 `{}` while the broker delivers; 503 with the reason while it does not.
    let health_node = node.clone();
    // `/metrics` goes where `/health` goes (the internal port when there is one).
    let metrics_node = node.clone();
    let links = spindle_core::role::metrics::CoreLinks::default();
    let health = health_router(&config, move || health_node.health())
        .merge(metrics_router(&config, move || {
            spindle_core::role::metrics::core(&metrics_node, &links)
        }));
    let http = &config.http_server;
    let (external, internal) = if http.internal_port != 0 && http.internal_port != local.port() {
        let (external, internal) = if config.http_api.external {
            (edge.router().merge(api), health)
        } else {
            (edge.router(), health.merge(api))
        };
        let internal_identity = if http.internal_tls.enabled {
            Some(tls::identity(
                "http_server.internal_tls",
                &http.internal_tls,
            )?)
        } else if !http.tls_external {
            tls_identity.clone()
        } else {
            None
        };
        let host = match http.internal_address.as_str() {
            "" => bind_address(&config),
            host => host,
        };
        let address = format!("{host}:{}", http.internal_port);
        let internal_listener = TcpListener::bind(&address)
            .await
            .with_context(|| format!("cannot listen on {address} (internal endpoints)"))?;
        let internal_local = internal_listener.local_addr()?;
        println!(
            "spindle: internal endpoints on {internal_local} ({})",
            scheme(internal_identity.is_some())
        );
        let mut stopping = stopping.clone();
        let stop = async move {
            let _ = stopping.wait_for(|stop| *stop).await;
        };
        let server = serve_http(
            internal_listener,
            internal_identity.as_ref(),
            internal,
            stop,
        )?;
        (external, Some(tokio::spawn(server)))
    } else {
        (edge.router().merge(api).merge(health), None)
    };

    // WebTransport: UDP on the port the HTTPS listener got (so port 0 works in tests).
    let webtransport = match webtransport_identity(&config, tls_identity.as_ref())? {
        Some(identity) => {
            let socket = std::net::UdpSocket::bind(local)
                .with_context(|| format!("cannot listen on UDP {local} (webtransport)"))?;
            println!("spindle: webtransport on udp {local}");
            tracing::info!(%local, "webtransport serving");
            let edge = edge.clone();
            let mut stopping = stopping.clone();
            Some(tokio::spawn(async move {
                let stop = async move {
                    let _ = stopping.wait_for(|stop| *stop).await;
                };
                let tls::Identity { certificates, key } = identity;
                if let Err(error) = edge
                    .serve_webtransport(socket, certificates, key, stop)
                    .await
                {
                    tracing::error!(%error, "webtransport endpoint failed");
                }
            }))
        }
        None => None,
    };

    let scheme = scheme(tls_identity.is_some());
    // Scripts and tests read this line as "<prefix><address>": keep it exactly so.
    println!("spindle: listening on {local}");
    tracing::info!(%local, scheme, version = spindle_hub::VERSION, "spindle serving");

    // `shutdown.timeout` bounds everything after the signal: the HTTP servers, the close
    // handshakes of client connections, the other endpoints.
    let limit = config.shutdown.timeout.as_std();
    let on_signal = {
        let edge = edge.clone();
        move || {
            tracing::info!("shutting down: closing client connections with 3001");
            edge.shutdown();
            let _ = stopping_tx.send(true);
        }
    };
    let deadline = serve_until(
        listener,
        tls_identity.as_ref(),
        external,
        shutdown,
        on_signal,
        limit,
    )
    .await?;
    let left = || deadline.saturating_duration_since(tokio::time::Instant::now());
    if let Some(internal) = internal
        && tokio::time::timeout(left(), internal).await.is_err()
    {
        tracing::warn!("the internal endpoints did not stop within shutdown.timeout");
    }
    // Upgraded WebSocket connections are not the HTTP server's: let their close frames go out.
    if !edge.wait_drained(left()).await {
        tracing::warn!("some connections did not close within shutdown.timeout ({limit:?})");
    }
    if let Some(uni_grpc) = uni_grpc
        && tokio::time::timeout(left(), uni_grpc).await.is_err()
    {
        tracing::warn!("the uni_grpc server did not stop within shutdown.timeout");
    }
    if let Some(webtransport) = webtransport
        && tokio::time::timeout(left(), webtransport).await.is_err()
    {
        tracing::warn!("the webtransport endpoint did not stop within shutdown.timeout");
    }
    tracing::info!("stopped");
    Ok(())
}

/// The identity WebTransport serves with, when it is on. It needs HTTP/3 and TLS (QUIC has no
/// plaintext form); the config check already insists on `http_server.http3.enabled`.
fn webtransport_identity(
    config: &Config,
    identity: Option<&tls::Identity>,
) -> Result<Option<tls::Identity>> {
    if !config.webtransport.enabled {
        return Ok(None);
    }
    anyhow::ensure!(
        config.http_server.http3.enabled,
        "webtransport.enabled needs http_server.http3.enabled"
    );
    match identity {
        Some(identity) => Ok(Some(identity.clone())),
        None => Err(anyhow::anyhow!(
            "webtransport.enabled needs http_server.tls (enabled, cert_pem, key_pem): \
             HTTP/3 runs over QUIC, which is always encrypted"
        )),
    }
}

fn uni_grpc_address(config: &Config) -> &str {
    match config.uni_grpc.address.as_str() {
        "" => "0.0.0.0",
        address => address,
    }
}
