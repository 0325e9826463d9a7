//! Scenario `idle`: N connections that connect, subscribe and then only answer pings; what each
//! costs the server in resident memory, and what the kernel holds for their sockets.

use crate::client::Shared;
use crate::procfs::{self, ProcessSample};
use crate::report::{self, Table};
use crate::resources::Samples;
use crate::server::Endpoints;
use crate::swarm::{Swarm, SwarmPlan};
use crate::wire::Wire;
use anyhow::{Result, bail};
use spindle_proto::Format;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct IdleOptions {
    pub clients: usize,
    pub channels: usize,
    /// How long the connections stay idle before the "after" sample (long enough for a server
    /// ping round, 25 s by default, so per-connection buffers touched by pings are counted).
    pub wait: Duration,
    pub format: Format,
    pub connect_concurrency: usize,
    /// Machine CPU busy (% of one core) in the second before the run.
    pub machine_busy_before: f64,
}

pub async fn run(endpoints: &Endpoints, options: &IdleOptions) -> Result<Table> {
    if options.clients == 0 || options.channels == 0 {
        bail!("idle needs at least one client and one channel");
    }
    let channels: Arc<[String]> = (0..options.channels)
        .map(|c| format!("bench-idle-{c}"))
        .collect();
    // Let a freshly started server finish starting before the baseline.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before = Samples::take(&endpoints.processes)?;
    let socket_before = procfs::tcp_socket_memory()?;
    let slab_before = procfs::kernel_slab_memory()?;
    let fds_before = open_fds(&endpoints.pids());

    eprintln!(
        "idle: connecting {} {} clients to {}",
        options.clients,
        options.format.as_str(),
        endpoints.ws_urls_text()
    );
    let shared = Arc::new(Shared::new(Instant::now(), 0));
    let swarm = Swarm::connect(
        &SwarmPlan {
            ws_urls: endpoints.ws_urls.clone().into(),
            hmac_secret: endpoints.hmac_secret.clone(),
            wire: Wire::Centrifugo(options.format),
            connections: options.clients,
            channels,
            expected: 0,
            concurrency: options.connect_concurrency,
        },
        shared.clone(),
    )
    .await?;
    eprintln!(
        "idle: {} connected and subscribed in {:.1} s; idling {:?}",
        options.clients,
        swarm.setup_time.as_secs_f64(),
        options.wait
    );
    let connected = Samples::take(&endpoints.processes)?;
    tokio::time::sleep(options.wait).await;
    let after = Samples::take(&endpoints.processes)?;
    let socket_after = procfs::tcp_socket_memory()?;
    let slab_after = procfs::kernel_slab_memory()?;
    let fds_after = open_fds(&endpoints.pids());
    let setup_time = swarm.setup_time;
    let tallies = swarm.stop().await;
    let pings: u64 = tallies.iter().map(|t| t.pings).sum();
    let lost = shared.lost.load(Ordering::Relaxed);

    let n = options.clients as f64;
    let mut table = Table::new(format!(
        "spindle-bench idle: {} {} clients, {} channel(s), {} s idle",
        report::count(options.clients as u64),
        options.format.as_str(),
        options.channels,
        options.wait.as_secs_f64()
    ));
    table
        .section("setup")
        .row(
            "clients connected + subscribed",
            report::count(options.clients as u64),
        )
        .row("setup time", format!("{:.1} s", setup_time.as_secs_f64()))
        .row("server pings answered", report::count(pings))
        .row("connections lost", report::count(lost));
    if let (Some(b), Some(a)) = (fds_before, fds_after) {
        table.row(
            "server open descriptors before → after",
            format!("{b} → {a}"),
        );
    }
    table.section("server memory (VmRSS)");
    match (before.server, after.server) {
        (Some(b), Some(a)) => {
            let delta = a.rss_kib as f64 - b.rss_kib as f64;
            table
                .row("RSS before", report::bytes(b.rss_kib as f64 * 1024.0))
                .row("RSS after", report::bytes(a.rss_kib as f64 * 1024.0))
                .row(
                    "peak RSS (VmHWM)",
                    report::bytes(a.peak_rss_kib as f64 * 1024.0),
                )
                .row("RSS delta", report::bytes(delta * 1024.0))
                .row("RSS delta per connection", format!("{:.2} KiB", delta / n));
        }
        _ => {
            table.row("server RSS", "n/a (pass --server-pid)");
        }
    }
    let socket_delta = socket_after as f64 - socket_before as f64;
    table
        .section("kernel TCP socket memory (/proc/net/sockstat TCP mem × page size)")
        .row("before", report::bytes(socket_before as f64))
        .row("after", report::bytes(socket_after as f64))
        .row(
            "delta (both ends of every loopback connection)",
            report::bytes(socket_delta),
        )
        .row(
            "delta per connection",
            format!("{:.2} KiB", socket_delta / n / 1024.0),
        );
    let slab_delta = slab_after as f64 - slab_before as f64;
    table
        .section("kernel slab (/proc/meminfo Slab, machine-wide; socket structures)")
        .row("delta", report::bytes(slab_delta))
        .row(
            "delta per connection (both ends)",
            format!("{:.2} KiB", slab_delta / n / 1024.0),
        );
    let bench_delta = after.bench.rss_kib as f64 - before.bench.rss_kib as f64;
    table
        .section("context")
        .row(
            "load generator RSS delta per connection",
            format!("{:.2} KiB", bench_delta / n),
        )
        .row(
            "server CPU while idle",
            idle_cpu(connected.server, after.server),
        )
        .row(
            "machine CPU busy in the second before the run",
            format!("{:.1} %", options.machine_busy_before),
        )
        .row(
            "machine CPU busy while idle",
            format!(
                "{:.1} %",
                connected.machine.busy_percent_until(&after.machine)
            ),
        );
    Ok(table)
}

fn idle_cpu(from: Option<ProcessSample>, to: Option<ProcessSample>) -> String {
    match (from, to) {
        (Some(a), Some(b)) => format!("{:.1} %", a.cpu_percent_until(&b)),
        _ => "n/a".into(),
    }
}

/// Entries of `/proc/<pid>/fd`, over the server's processes (`None` without any).
fn open_fds(pids: &[u32]) -> Option<usize> {
    if pids.is_empty() {
        return None;
    }
    pids.iter()
        .map(|pid| Some(std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count()))
        .sum()
}
