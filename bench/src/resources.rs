//! CPU and memory of the server (when its pid is known), the load generator and the machine,
//! sampled before and after a measured window, and the rows that report them.

use crate::procfs::{MachineSample, ProcessSample};
use crate::report::{self, Table};
use crate::server::ServerProcess;
use anyhow::Result;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// CPU and memory over the measured window, for the server (if its pid is known; a split
/// deployment's processes summed), this load generator and the whole machine.
#[derive(Debug, Clone)]
pub struct Samples {
    pub server: Option<ProcessSample>,
    /// Each server process on its own, when there are several (a core and its edges).
    pub parts: Vec<(String, ProcessSample)>,
    pub bench: ProcessSample,
    pub machine: MachineSample,
}

impl Samples {
    pub fn take(servers: &[ServerProcess]) -> Result<Samples> {
        // Each process sampled once; the server is their sum.
        let mut parts = servers
            .iter()
            .map(|s| Ok((s.name.clone(), ProcessSample::take(s.pid)?)))
            .collect::<Result<Vec<_>>>()?;
        let samples: Vec<ProcessSample> = parts.iter().map(|(_, sample)| *sample).collect();
        let server = ProcessSample::sum(&samples);
        if parts.len() == 1 {
            parts.clear();
        }
        Ok(Samples {
            server,
            parts,
            bench: ProcessSample::take(std::process::id())?,
            machine: MachineSample::take()?,
        })
    }
}

impl Samples {
    /// Machine CPU between `self` and `later` that went to neither the server nor this
    /// generator (softirq the kernel charged to no one, other processes), in % of one core.
    pub fn others_percent_until(&self, later: &Samples) -> f64 {
        let server = match (&self.server, &later.server) {
            (Some(b), Some(a)) => b.cpu_percent_until(a),
            _ => 0.0,
        };
        self.machine.busy_percent_until(&later.machine)
            - server
            - self.bench.cpu_percent_until(&later.bench)
    }
}

/// The resource section of a report: server CPU and RSS, generator CPU, machine CPU (and what
/// of it went to neither process: other work that disturbed the figures).
pub fn resource_rows(table: &mut Table, before: &Samples, after: &Samples, busy_before: f64) {
    let cores = crate::procfs::machine_cores();
    table.section(format!(
        "CPU over the run (% of one core; {cores} cores = {}%) and memory",
        cores * 100
    ));
    match (&before.server, &after.server) {
        (Some(b), Some(a)) => {
            table
                .row("server CPU", b.cpu_summary_until(a))
                .row(
                    "server RSS after the run",
                    report::bytes(a.rss_kib as f64 * 1024.0),
                )
                .row(
                    "server peak RSS (VmHWM)",
                    report::bytes(a.peak_rss_kib as f64 * 1024.0),
                );
        }
        _ => {
            table.row("server CPU / RSS", "n/a (pass --server-pid)");
        }
    }
    for ((name, b), (_, a)) in before.parts.iter().zip(&after.parts) {
        table.row(
            format!("  {name} CPU / RSS after"),
            format!(
                "{} / {}",
                b.cpu_summary_until(a),
                report::bytes(a.rss_kib as f64 * 1024.0)
            ),
        );
    }
    table
        .row(
            "load generator CPU",
            before.bench.cpu_summary_until(&after.bench),
        )
        .row(
            "machine CPU busy (all processes)",
            format!(
                "{:.1} % (softirq {:.1})",
                before.machine.busy_percent_until(&after.machine),
                before.machine.softirq_percent_until(&after.machine)
            ),
        );
    if before.server.is_some() && after.server.is_some() {
        let others = before.others_percent_until(after);
        table.row(
            "machine CPU not charged to server or generator (softirq, other processes)",
            format!("{others:.1} %"),
        );
    }
    table.row(
        "machine CPU busy in the second before the run",
        format!("{busy_before:.1} %"),
    );
}

/// Prints, once a second until aborted, how much `counter` grew (as `<n> <what>/s`), the
/// server's CPU (its processes `pids` summed) and the machine's, so a disturbed run shows
/// while it happens.
pub async fn progress(what: &'static str, counter: Arc<AtomicU64>, pids: Vec<u32>) {
    let mut ticker = tokio::time::interval(Duration::from_secs(1));
    ticker.tick().await;
    let sample = || {
        (
            counter.load(Ordering::Relaxed),
            ProcessSample::take_all(&pids).ok().flatten(),
            MachineSample::take().ok(),
        )
    };
    let mut last = sample();
    let mut second = 0;
    loop {
        ticker.tick().await;
        second += 1;
        let now = sample();
        let server = match (&last.1, &now.1) {
            (Some(b), Some(a)) => format!(", server CPU {:.0} %", b.cpu_percent_until(a)),
            _ => String::new(),
        };
        let machine = match (&last.2, &now.2) {
            (Some(b), Some(a)) => format!(", machine {:.0} %", b.busy_percent_until(a)),
            _ => String::new(),
        };
        eprintln!(
            "  t={second:>3} s: {} {what}/s{server}{machine}",
            report::count(now.0.saturating_sub(last.0))
        );
        last = now;
    }
}
