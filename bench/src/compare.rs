//! Scenario `compare`: the fan-out matrix, Spindle side by side with uWebSockets.js and
//! nats-server measured in the same run (docs/benchmarks.md, "Side by side").
//!
//! For each publish rate, each server in turn is started pinned to the server CPUs, gets the
//! same subscribers and the same publications from this generator (pinned to the other CPU by
//! `main`), and is stopped; the servers alternate within a rate so a drift of the machine
//! touches all of them alike. A run is **invalid** when the generator used more than
//! `generator_limit` of its core (it, not the server, may then be what limits the figures) or
//! when anything was lost. Every run is a JSON line in `<out>/compare.jsonl`; the table prints
//! each server's CPU per delivery and p99 as a ratio against Spindle's; a PNG plot is drawn by
//! `bench/scripts/plot_compare.py`.

use crate::deployment::Deployment;
use crate::fanout::{self, FanoutFigures, FanoutOptions};
use crate::peers::{self, Peer, PeerServer};
use crate::report::Table;
use crate::server::StartOptions;
use crate::wire::Wire;
use anyhow::{Context, Result, bail};
use serde_json::json;
use spindle_proto::Format;
use std::io::Write as _;
use std::path::PathBuf;
use std::time::Duration;

/// One server of the matrix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Contender {
    /// `spindle serve`.
    Spindle,
    /// `spindle core` + one slim `spindle-edge` over QUIC, both on the server CPUs.
    SpindleEdge,
    Peer(Peer),
}

impl Contender {
    pub fn name(self) -> &'static str {
        match self {
            Contender::Spindle => "spindle",
            Contender::SpindleEdge => "spindle-edge",
            Contender::Peer(Peer::Uws) => "uws",
            Contender::Peer(Peer::Nats) => "nats",
        }
    }

    pub fn parse(name: &str) -> Result<Contender> {
        Ok(match name {
            "spindle" => Contender::Spindle,
            "spindle-edge" => Contender::SpindleEdge,
            "uws" => Contender::Peer(Peer::Uws),
            "nats" => Contender::Peer(Peer::Nats),
            other => bail!("unknown server {other:?}: spindle, spindle-edge, uws or nats"),
        })
    }

    fn wire(self) -> Wire {
        match self {
            Contender::Spindle | Contender::SpindleEdge => Wire::Centrifugo(Format::Json),
            Contender::Peer(Peer::Uws) => Wire::Plain,
            Contender::Peer(Peer::Nats) => Wire::Nats,
        }
    }
}

#[derive(Debug, Clone)]
pub struct CompareOptions {
    pub contenders: Vec<Contender>,
    pub rates: Vec<f64>,
    pub subscribers: usize,
    pub size: usize,
    pub duration: Duration,
    pub drain: Duration,
    pub publishers: usize,
    pub connect_concurrency: usize,
    /// How Spindle is started (binary, keys, config patch, server CPUs).
    pub spindle: StartOptions,
    /// Generator CPU above this (% of one core) marks a run invalid.
    pub generator_limit: f64,
    /// Where `compare.jsonl` and `compare.png` go.
    pub out: PathBuf,
    /// Machine CPU busy in the second before the matrix.
    pub machine_busy_before: f64,
}

/// One measured run.
#[derive(Debug, Clone)]
struct Run {
    contender: Contender,
    rate: f64,
    figures: FanoutFigures,
    /// Why the run does not count, if it does not.
    invalid: Option<String>,
}

pub async fn run(options: &CompareOptions) -> Result<Table> {
    std::fs::create_dir_all(&options.out)
        .with_context(|| format!("creating {}", options.out.display()))?;
    let jsonl = options.out.join("compare.jsonl");
    let mut lines = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&jsonl)
        .with_context(|| format!("opening {}", jsonl.display()))?;
    let versions = versions(options).await;
    eprintln!("compare: {versions}");
    // Names this matrix's lines in a file that keeps earlier ones.
    let run_id = format!(
        "{}-{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
        std::process::id()
    );
    let mut runs = Vec::new();
    for &rate in &options.rates {
        for &contender in &options.contenders {
            eprintln!("compare: {} at {rate} publishes/s", contender.name());
            let figures = measure(options, contender, rate)
                .await
                .with_context(|| format!("{} at {rate}/s", contender.name()))?;
            let run = judge(contender, rate, figures, options.generator_limit);
            writeln!(lines, "{}", record(options, &run, &run_id, &versions))?;
            lines.flush()?;
            runs.push(run);
        }
    }
    let png = options.out.join("compare.png");
    let plot = plot(&jsonl, &png).await;
    Ok(table(options, &runs, &jsonl, &png, plot.err()))
}

/// Starts `contender`, runs the fan-out against it, stops it.
async fn measure(
    options: &CompareOptions,
    contender: Contender,
    rate: f64,
) -> Result<FanoutFigures> {
    let fanout = FanoutOptions {
        subscribers: options.subscribers,
        channels: 1,
        rate,
        duration: options.duration,
        size: options.size,
        wire: contender.wire(),
        target: None,
        publishers: options.publishers,
        drain: options.drain,
        connect_concurrency: options.connect_concurrency,
        machine_busy_before: options.machine_busy_before,
    };
    match contender {
        Contender::Spindle | Contender::SpindleEdge => {
            let edges = usize::from(contender == Contender::SpindleEdge);
            let deployment = Deployment::start(&options.spindle, edges, true).await?;
            let result = fanout::measure(&deployment.endpoints(&options.spindle), &fanout).await;
            if result.is_err() {
                eprintln!("--- server stderr (tail) ---\n{}", deployment.stderr_tail());
            }
            deployment.stop().await?;
            Ok(result?.1)
        }
        Contender::Peer(peer) => {
            let server = PeerServer::start(peer, options.spindle.cpus.as_deref()).await?;
            let fanout = FanoutOptions {
                target: Some(server.publish_target()),
                ..fanout
            };
            let result = fanout::measure(&server.endpoints(), &fanout).await;
            server.stop().await;
            Ok(result?.1)
        }
    }
}

fn judge(contender: Contender, rate: f64, figures: FanoutFigures, generator_limit: f64) -> Run {
    let invalid = if figures.generator_cpu_percent > generator_limit {
        Some(format!(
            "generator used {:.0} % of its core (limit {generator_limit:.0} %)",
            figures.generator_cpu_percent
        ))
    } else if figures.missing > 0 || figures.duplicates > 0 || figures.lost_connections > 0 {
        Some(format!(
            "{} missing, {} duplicates, {} connections lost",
            figures.missing, figures.duplicates, figures.lost_connections
        ))
    } else {
        None
    };
    Run {
        contender,
        rate,
        figures,
        invalid,
    }
}

fn record(options: &CompareOptions, run: &Run, run_id: &str, versions: &str) -> serde_json::Value {
    let f = &run.figures;
    json!({
        "run_id": run_id,
        "server": run.contender.name(),
        "rate": run.rate,
        "subscribers": options.subscribers,
        "size": options.size,
        "duration_s": options.duration.as_secs_f64(),
        "published": f.published,
        "expected": f.expected,
        "delivered": f.distinct,
        "missing": f.missing,
        "duplicates": f.duplicates,
        "lost_connections": f.lost_connections,
        "frames": f.frames,
        "deliveries_per_s": f.deliveries_per_second,
        "p50_ms": f.p50_micros as f64 / 1000.0,
        "p99_ms": f.p99_micros as f64 / 1000.0,
        "max_ms": f.max_micros as f64 / 1000.0,
        "server_cpu_percent": f.server_cpu_percent,
        "server_user_percent": f.server_user_percent,
        "cpu_us_per_delivery": f.cpu_micros_per_delivery(),
        "generator_cpu_percent": f.generator_cpu_percent,
        "other_cpu_percent": f.other_cpu_percent,
        "server_rss_kib": f.server_rss_kib,
        "valid": run.invalid.is_none(),
        "invalid_reason": run.invalid,
        "server_cpus": options.spindle.cpus,
        "versions": versions,
        "at_unix_s": std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
    })
}

/// The table: one section per rate, each server's figures and its ratios against Spindle's.
fn table(
    options: &CompareOptions,
    runs: &[Run],
    jsonl: &std::path::Path,
    png: &std::path::Path,
    plot_error: Option<anyhow::Error>,
) -> Table {
    let mut table = Table::new(format!(
        "spindle-bench compare: {} subscribers, 1 channel, {} B payloads, {} s per run; \
         servers on CPUs {}, generator on the others",
        options.subscribers,
        options.size,
        options.duration.as_secs_f64(),
        options.spindle.cpus.as_deref().unwrap_or("(unpinned)")
    ));
    for &rate in &options.rates {
        let at_rate: Vec<&Run> = runs.iter().filter(|r| r.rate == rate).collect();
        let spindle = at_rate
            .iter()
            .find(|r| r.contender == Contender::Spindle)
            .map(|r| r.figures);
        table.section(format!(
            "{rate} publishes/s ({} deliveries/s); ratio = the other's ÷ Spindle's (> 1: Spindle better)",
            crate::report::count((rate * options.subscribers as f64) as u64)
        ));
        for run in at_rate {
            let f = &run.figures;
            let ratio = match spindle {
                Some(s) if run.contender != Contender::Spindle => format!(
                    "; CPU ratio {:.2}, p99 ratio {:.2}",
                    f.cpu_micros_per_delivery() / s.cpu_micros_per_delivery().max(1e-9),
                    f.p99_micros as f64 / (s.p99_micros.max(1)) as f64
                ),
                _ => String::new(),
            };
            let validity = match &run.invalid {
                None => String::new(),
                Some(why) => format!(" INVALID: {why}"),
            };
            table.row(
                run.contender.name(),
                format!(
                    "{:.2} µs CPU/delivery ({:.0} % of a core, user {:.0} %), p99 {:.1} ms, {}/{} delivered, \
                     generator {:.0} %{ratio}{validity}",
                    f.cpu_micros_per_delivery(),
                    f.server_cpu_percent,
                    f.server_user_percent,
                    f.p99_micros as f64 / 1000.0,
                    crate::report::count(f.distinct),
                    crate::report::count(f.expected),
                    f.generator_cpu_percent,
                ),
            );
        }
    }
    table
        .section("output")
        .row("JSON lines", jsonl.display())
        .row(
            "plot",
            match plot_error {
                None => png.display().to_string(),
                Some(error) => format!("not drawn: {error:#}"),
            },
        );
    table
}

/// The version of every server and of this tree, for the record.
async fn versions(options: &CompareOptions) -> String {
    let mut parts = Vec::new();
    for contender in &options.contenders {
        match contender {
            Contender::Spindle | Contender::SpindleEdge => {}
            Contender::Peer(peer) => parts.push(peers::version(*peer).await),
        }
    }
    let commit = tokio::process::Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .await
        .ok()
        .filter(|out| out.status.success())
        .map_or_else(
            || "unknown".into(),
            |out| String::from_utf8_lossy(&out.stdout).trim().to_owned(),
        );
    parts.insert(
        0,
        format!(
            "spindle {} ({}) at {commit}",
            env!("CARGO_PKG_VERSION"),
            options.spindle.binary.display()
        ),
    );
    parts.join("; ")
}

/// The exit code of `plot_compare.py` when matplotlib is missing.
const NO_MATPLOTLIB: i32 = 3;

/// Draws `png` from the latest matrix in `jsonl` with `bench/scripts/plot_compare.py`,
/// installing matplotlib from PyPI (`pip install --user`) if it is missing.
async fn plot(jsonl: &std::path::Path, png: &std::path::Path) -> Result<()> {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scripts/plot_compare.py");
    let draw = || {
        tokio::process::Command::new("python3")
            .arg(&script)
            .arg(jsonl)
            .arg(png)
            .output()
    };
    let mut output = draw().await.context("cannot run python3")?;
    if output.status.code() == Some(NO_MATPLOTLIB) {
        eprintln!("compare: installing matplotlib for the plot (pip install --user matplotlib)");
        let status = tokio::process::Command::new("python3")
            .args(["-m", "pip", "install", "--quiet", "--user", "matplotlib"])
            .status()
            .await
            .context("cannot run pip")?;
        if !status.success() {
            bail!("pip install matplotlib failed: {status}");
        }
        output = draw().await.context("cannot run python3")?;
    }
    if !output.status.success() {
        bail!(
            "{} failed: {}",
            script.display(),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(())
}
