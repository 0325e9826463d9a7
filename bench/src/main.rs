//! `spindle-bench`: arguments in, one scenario run against a started or attached server, a
//! table of figures out.

use anyhow::{Context, Result};
use clap::Parser;
use spindle_bench::cli::{Cli, CompareArgs, PublishModeArg, Scenario, TargetArgs};
use spindle_bench::compare::{self, CompareOptions, Contender};
use spindle_bench::deployment::Deployment;
use spindle_bench::fanout::{self, FanoutOptions};
use spindle_bench::history_publish::{self, HistoryPublishOptions, Mode};
use spindle_bench::http::ApiEndpoint;
use spindle_bench::idle::{self, IdleOptions};
use spindle_bench::map_sync::{self, MapSyncOptions};
use spindle_bench::procfs;
use spindle_bench::reconnect_storm::{self, StormOptions};
use spindle_bench::server::{self, Endpoints, ServerProcess, StartOptions};
use spindle_bench::shared_poll::{self, SharedPollOptions};
use spindle_bench::wire::Wire;
use std::process::ExitCode;
use std::time::Duration;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("spindle-bench: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(mut cli: Cli) -> Result<()> {
    // Before anything is spawned: a server we start inherits the raised limit.
    let fd = procfs::raise_fd_limit()?;
    if let Scenario::Compare(args) = &cli.scenario {
        // Before the runtime's threads exist, so they all inherit it.
        procfs::pin_main_thread(&args.bench_cpus)?;
        cli.target.server_cpus.get_or_insert_with(|| "0".into());
    }
    let threads = cli.threads.unwrap_or_else(procfs::cores).max(1);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let connections = match &cli.scenario {
        Scenario::Fanout(args) => args.subscribers + args.publishers,
        Scenario::Idle(args) => args.clients,
        Scenario::HistoryPublish(args) => args.concurrency,
        Scenario::ReconnectStorm(args) => args.clients,
        Scenario::MapSync(_) => 2,
        Scenario::SharedPoll(args) => args.clients,
        Scenario::Compare(args) => args.subscribers + args.publishers,
    };
    print_environment(threads, fd, connections);
    let machine_busy_before = machine_busy_for(Duration::from_secs(1))?;
    eprintln!("machine CPU busy before the run: {machine_busy_before:.1} % of one core");
    if machine_busy_before > 20.0 {
        eprintln!("warning: the machine is not idle; other work will disturb the figures");
    }
    if let Scenario::Compare(args) = &cli.scenario {
        return runtime.block_on(compare_matrix(&cli.target, args, machine_busy_before));
    }
    runtime.block_on(async move {
        // The shared-poll scenario is the application backend: it runs before the server,
        // whose config points at it.
        let backend = match &cli.scenario {
            Scenario::SharedPoll(_) => Some(shared_poll::Backend::start().await?),
            _ => None,
        };
        let patch = match (&cli.scenario, &backend) {
            (Scenario::SharedPoll(args), Some(backend)) => Some(shared_poll::server_patch(
                backend.url(),
                Duration::from_millis(args.interval_ms),
            )),
            _ => scenario_patch(&cli.scenario),
        };
        let (managed, endpoints) = target(&cli.target, patch).await?;
        let format = cli.target.format.into();
        let concurrency = cli.target.connect_concurrency;
        let result = match &cli.scenario {
            Scenario::Fanout(args) => {
                let options = FanoutOptions {
                    subscribers: args.subscribers,
                    channels: args.channels,
                    rate: args.rate,
                    duration: Duration::from_secs_f64(args.duration),
                    size: args.size,
                    wire: Wire::Centrifugo(format),
                    target: None,
                    publishers: args.publishers,
                    drain: Duration::from_secs_f64(args.drain),
                    connect_concurrency: concurrency,
                    machine_busy_before,
                };
                fanout::run(&endpoints, &options).await
            }
            Scenario::Idle(args) => {
                let options = IdleOptions {
                    clients: args.clients,
                    channels: args.channels,
                    wait: Duration::from_secs_f64(args.wait),
                    format,
                    connect_concurrency: concurrency,
                    machine_busy_before,
                };
                idle::run(&endpoints, &options).await
            }
            Scenario::HistoryPublish(args) => {
                let options = HistoryPublishOptions {
                    channels: args.channels,
                    mode: match args.mode {
                        PublishModeArg::Single => Mode::Single,
                        PublishModeArg::Batch => Mode::Batch {
                            size: args.batch_size,
                            parallel: args.parallel,
                        },
                    },
                    concurrency: args.concurrency,
                    duration: Duration::from_secs_f64(args.duration),
                    size: args.size,
                    history_size: args.history.history_size,
                    verify_channels: args.verify_channels,
                    machine_busy_before,
                };
                history_publish::run(&endpoints, &options).await
            }
            Scenario::ReconnectStorm(args) => {
                let options = StormOptions {
                    clients: args.clients,
                    channels: if args.channels == 0 {
                        args.clients
                    } else {
                        args.channels
                    },
                    missed: args.missed,
                    format,
                    connect_concurrency: concurrency,
                    reconnect_concurrency: args.reconnect_concurrency,
                    batch_size: args.batch_size,
                    linger: Duration::from_secs_f64(args.linger),
                    machine_busy_before,
                };
                reconnect_storm::run(&endpoints, &options).await
            }
            Scenario::MapSync(args) => {
                let options = MapSyncOptions {
                    keys: args.keys,
                    page_size: args.page_size,
                    value_size: args.value_size,
                    runs: args.runs,
                    format,
                    machine_busy_before,
                };
                map_sync::run(&endpoints, &options).await
            }
            Scenario::SharedPoll(args) => {
                let options = SharedPollOptions {
                    clients: args.clients,
                    keys: args.keys,
                    interval: Duration::from_millis(args.interval_ms),
                    intervals: args.intervals,
                    format,
                    connect_concurrency: concurrency,
                    machine_busy_before,
                };
                match &backend {
                    Some(backend) => shared_poll::run(&endpoints, backend, &options).await,
                    None => Err(anyhow::anyhow!("no backend")),
                }
            }
            Scenario::Compare(_) => unreachable!("runs on its own above"),
        };
        if let Some(server) = managed {
            if result.is_err() {
                eprintln!("--- server stderr (tail) ---\n{}", server.stderr_tail());
            }
            if let Err(error) = server.stop().await {
                eprintln!("spindle-bench: stopping the server: {error:#}");
            }
        }
        println!("{}", result?);
        Ok(())
    })
}

/// The side-by-side matrix: it starts every server itself, one run at a time.
async fn compare_matrix(
    target: &TargetArgs,
    args: &CompareArgs,
    machine_busy_before: f64,
) -> Result<()> {
    anyhow::ensure!(
        target.url.is_none() && target.split == 0,
        "compare starts its own servers; --url and --split do not go with it"
    );
    let options = CompareOptions {
        contenders: args
            .servers
            .iter()
            .map(|name| Contender::parse(name))
            .collect::<Result<_>>()?,
        rates: args.rates.clone(),
        subscribers: args.subscribers,
        size: args.size,
        duration: Duration::from_secs_f64(args.duration),
        drain: Duration::from_secs_f64(args.drain),
        publishers: args.publishers,
        connect_concurrency: target.connect_concurrency,
        spindle: start_options(target, None)?,
        generator_limit: args.generator_limit,
        out: args.out.clone(),
        machine_busy_before,
    };
    println!("{}", compare::run(&options).await?);
    Ok(())
}

/// What a scenario needs in a started server's config (history for the history scenarios);
/// `--server-config` is merged over it.
fn scenario_patch(scenario: &Scenario) -> Option<serde_json::Value> {
    match scenario {
        Scenario::Fanout(_) | Scenario::Idle(_) => None,
        Scenario::HistoryPublish(args) => Some(history_publish::server_patch(
            args.history.history_size,
            &args.history.history_ttl,
        )),
        Scenario::ReconnectStorm(args) => Some(reconnect_storm::server_patch(
            args.history.history_size,
            &args.history.history_ttl,
        )),
        Scenario::MapSync(args) => Some(map_sync::server_patch(args.page_size)),
        Scenario::SharedPoll(_) | Scenario::Compare(_) => None,
    }
}

/// Starts a server (or a split deployment: `--split`) unless `--url` points at a running one.
async fn target(
    args: &TargetArgs,
    scenario_patch: Option<serde_json::Value>,
) -> Result<(Option<Deployment>, Endpoints)> {
    if let Some(url) = &args.url {
        anyhow::ensure!(
            args.split == 0,
            "--split starts its own servers; it does not go with --url"
        );
        let api_url = match &args.api_url {
            Some(api) => api.clone(),
            None => server::api_url_for(url)?,
        };
        let api = ApiEndpoint::parse(&api_url)?;
        let api_addr = api.resolve().await?;
        eprintln!("attached to {url} (API {api_url})");
        return Ok((
            None,
            Endpoints {
                ws_urls: vec![url.clone()],
                api,
                api_addr,
                api_key: args.api_key.clone(),
                hmac_secret: args.hmac_secret.clone(),
                processes: args
                    .server_pid
                    .map(|pid| ServerProcess {
                        name: "server".into(),
                        pid,
                    })
                    .into_iter()
                    .collect(),
            },
        ));
    }
    let options = start_options(args, scenario_patch)?;
    let managed = Deployment::start(&options, args.split, args.slim_edges).await?;
    let endpoints = managed.endpoints(&options);
    if let Some(patch) = &options.config_patch {
        eprintln!("server config patch: {patch}");
    }
    let processes: Vec<String> = endpoints
        .processes
        .iter()
        .map(|p| format!("{} pid {}", p.name, p.pid))
        .collect();
    eprintln!(
        "started {} ({}); clients at {}, API at {}",
        options.binary.display(),
        processes.join(", "),
        endpoints.ws_urls_text(),
        endpoints.api_addr
    );
    Ok((Some(managed), endpoints))
}

/// How to start a server: the target arguments, `scenario_patch` under `--server-config`.
fn start_options(
    args: &TargetArgs,
    scenario_patch: Option<serde_json::Value>,
) -> Result<StartOptions> {
    Ok(StartOptions {
        binary: args
            .server_bin
            .clone()
            .unwrap_or_else(server::default_binary),
        api_key: args.api_key.clone(),
        hmac_secret: args.hmac_secret.clone(),
        log_level: args.server_log_level.clone(),
        cpus: args.server_cpus.clone(),
        config_patch: patch_with(
            scenario_patch,
            args.server_config
                .as_deref()
                .map(serde_json::from_str)
                .transpose()
                .context("--server-config is not JSON")?,
        ),
    })
}

/// `user` merged over `scenario`.
fn patch_with(
    scenario: Option<serde_json::Value>,
    user: Option<serde_json::Value>,
) -> Option<serde_json::Value> {
    match (scenario, user) {
        (Some(mut patch), Some(user)) => {
            server::merge(&mut patch, &user);
            Some(patch)
        }
        (patch, None) | (None, patch) => patch,
    }
}

/// Machine CPU busy over `window`, in percent of one core.
fn machine_busy_for(window: Duration) -> Result<f64> {
    let before = procfs::MachineSample::take()?;
    std::thread::sleep(window);
    Ok(before.busy_percent_until(&procfs::MachineSample::take()?))
}

fn print_environment(threads: usize, fd: procfs::FdLimit, connections: usize) {
    let show = |v: Option<u64>| v.map_or_else(|| "unlimited".into(), |v| v.to_string());
    eprintln!(
        "machine: {} cores ({} for this process); load generator: {threads} worker threads; \
         fd limit {} → {}",
        procfs::machine_cores(),
        procfs::cores(),
        show(fd.before),
        show(fd.after)
    );
    if let Some((low, high)) = procfs::ephemeral_port_range() {
        let ports = usize::from(high - low) + 1;
        eprintln!(
            "ephemeral ports {low}–{high}: {ports} per destination; this run needs ~{connections}{}",
            if connections > ports {
                " — TOO MANY, widen net.ipv4.ip_local_port_range"
            } else {
                ""
            }
        );
    }
    if let Some(limit) = fd.after
        && (connections as u64) + 64 > limit
    {
        eprintln!(
            "warning: {connections} connections need more descriptors than the limit {limit}"
        );
    }
}
