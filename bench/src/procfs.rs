//! What Linux says about a process and the machine: CPU time and resident memory from
//! `/proc/<pid>/stat` and `/proc/<pid>/status`, machine CPU from `/proc/stat`, kernel TCP buffer
//! memory from `/proc/net/sockstat`; and raising our own file-descriptor limit.

use anyhow::{Context, Result};
use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
use std::time::{Duration, Instant};

/// CPU time and memory of one process at one instant.
#[derive(Debug, Clone, Copy)]
pub struct ProcessSample {
    pub at: Instant,
    /// utime (user mode), in clock ticks.
    pub user_ticks: u64,
    /// stime (kernel mode: syscalls, and on loopback much of the TCP receive path), in ticks.
    pub system_ticks: u64,
    /// VmRSS in KiB.
    pub rss_kib: u64,
    /// VmHWM (peak RSS) in KiB.
    pub peak_rss_kib: u64,
}

impl ProcessSample {
    /// Samples process `pid` (use [`std::process::id`] for ourselves).
    pub fn take(pid: u32) -> Result<ProcessSample> {
        let at = Instant::now();
        let stat = read(&format!("/proc/{pid}/stat"))?;
        let status = read(&format!("/proc/{pid}/status"))?;
        let (user_ticks, system_ticks) = parse_stat_cpu_ticks(&stat)
            .with_context(|| format!("cannot parse /proc/{pid}/stat"))?;
        Ok(ProcessSample {
            at,
            user_ticks,
            system_ticks,
            rss_kib: parse_status_kib(&status, "VmRSS")
                .with_context(|| format!("no VmRSS in /proc/{pid}/status"))?,
            peak_rss_kib: parse_status_kib(&status, "VmHWM").unwrap_or(0),
        })
    }

    /// The processes `pids` together (ticks and memory summed): a split deployment's core and
    /// edges as one server. `None` without any pid.
    pub fn take_all(pids: &[u32]) -> Result<Option<ProcessSample>> {
        let samples = pids
            .iter()
            .map(|&pid| ProcessSample::take(pid))
            .collect::<Result<Vec<_>>>()?;
        Ok(ProcessSample::sum(&samples))
    }

    /// Samples of several processes as one (ticks and memory summed, the first one's time).
    pub fn sum(samples: &[ProcessSample]) -> Option<ProcessSample> {
        let (first, rest) = samples.split_first()?;
        Some(rest.iter().fold(*first, |sum, one| ProcessSample {
            at: sum.at,
            user_ticks: sum.user_ticks + one.user_ticks,
            system_ticks: sum.system_ticks + one.system_ticks,
            rss_kib: sum.rss_kib + one.rss_kib,
            peak_rss_kib: sum.peak_rss_kib + one.peak_rss_kib,
        }))
    }

    /// CPU used between `self` and `later`, in percent of one core (200 = two full cores).
    pub fn cpu_percent_until(&self, later: &ProcessSample) -> f64 {
        let (user, system) = self.cpu_split_until(later);
        user + system
    }

    /// User and system CPU between `self` and `later`, each in percent of one core.
    pub fn cpu_split_until(&self, later: &ProcessSample) -> (f64, f64) {
        let elapsed = later.at.duration_since(self.at);
        (
            percent(later.user_ticks.saturating_sub(self.user_ticks), elapsed),
            percent(
                later.system_ticks.saturating_sub(self.system_ticks),
                elapsed,
            ),
        )
    }

    /// CPU time used between `self` and `later`, in seconds.
    pub fn cpu_seconds_until(&self, later: &ProcessSample) -> f64 {
        let ticks = (later.user_ticks + later.system_ticks)
            .saturating_sub(self.user_ticks + self.system_ticks);
        ticks as f64 / clock_ticks_per_second() as f64
    }

    /// `81.0 % (user 30.0, system 51.0)`.
    pub fn cpu_summary_until(&self, later: &ProcessSample) -> String {
        let (user, system) = self.cpu_split_until(later);
        format!(
            "{:.1} % (user {user:.1}, system {system:.1})",
            user + system
        )
    }
}

/// Machine-wide CPU counters from `/proc/stat` (all cores), in clock ticks.
#[derive(Debug, Clone, Copy)]
pub struct MachineSample {
    pub at: Instant,
    pub busy_ticks: u64,
    /// Part of `busy_ticks` spent in softirq (on loopback: packet delivery between sockets).
    pub softirq_ticks: u64,
}

impl MachineSample {
    pub fn take() -> Result<MachineSample> {
        let at = Instant::now();
        let text = read("/proc/stat")?;
        let (busy_ticks, softirq_ticks) =
            parse_machine_busy_ticks(&text).context("cannot parse /proc/stat")?;
        Ok(MachineSample {
            at,
            busy_ticks,
            softirq_ticks,
        })
    }

    /// Busy CPU between the samples in percent of one core (100 × cores = saturated).
    pub fn busy_percent_until(&self, later: &MachineSample) -> f64 {
        percent(
            later.busy_ticks.saturating_sub(self.busy_ticks),
            later.at.duration_since(self.at),
        )
    }

    /// Softirq CPU between the samples in percent of one core.
    pub fn softirq_percent_until(&self, later: &MachineSample) -> f64 {
        percent(
            later.softirq_ticks.saturating_sub(self.softirq_ticks),
            later.at.duration_since(self.at),
        )
    }
}

fn percent(ticks: u64, elapsed: Duration) -> f64 {
    let seconds = elapsed.as_secs_f64();
    if seconds <= 0.0 {
        return 0.0;
    }
    ticks as f64 / clock_ticks_per_second() as f64 / seconds * 100.0
}

/// Kernel memory held by TCP sockets (all of this network namespace, both ends of loopback
/// connections), in bytes: `/proc/net/sockstat` `TCP: … mem <pages>` × page size.
pub fn tcp_socket_memory() -> Result<u64> {
    let text = read("/proc/net/sockstat")?;
    let pages = parse_sockstat_tcp_mem_pages(&text).context("no TCP mem in /proc/net/sockstat")?;
    Ok(pages * page_size())
}

/// Kernel slab memory (`Slab:` of `/proc/meminfo`, machine-wide) in bytes: where socket
/// structures live, which `sockstat`'s `mem` (queued data only) does not count.
pub fn kernel_slab_memory() -> Result<u64> {
    let text = read("/proc/meminfo")?;
    Ok(parse_status_kib(&text, "Slab").context("no Slab in /proc/meminfo")? * 1024)
}

pub fn page_size() -> u64 {
    rustix::param::page_size() as u64
}

pub fn clock_ticks_per_second() -> u64 {
    rustix::param::clock_ticks_per_second().max(1)
}

/// Number of CPUs this process may run on.
pub fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

/// CPUs of the machine, whatever this process is pinned to (`cpuN` lines of `/proc/stat`):
/// the scale of the machine-wide figures.
pub fn machine_cores() -> usize {
    std::fs::read_to_string("/proc/stat")
        .map(|stat| {
            stat.lines()
                .filter(|line| {
                    line.strip_prefix("cpu")
                        .is_some_and(|rest| rest.starts_with(|c: char| c.is_ascii_digit()))
                })
                .count()
        })
        .unwrap_or(0)
        .max(1)
}

/// The file-descriptor limit before and after [`raise_fd_limit`].
#[derive(Debug, Clone, Copy)]
pub struct FdLimit {
    pub before: Option<u64>,
    pub after: Option<u64>,
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit (children, such as a server we start,
/// inherit it). Each connection costs one descriptor here and one in the server.
pub fn raise_fd_limit() -> Result<FdLimit> {
    let limit = getrlimit(Resource::Nofile);
    let before = limit.current;
    if limit.current != limit.maximum {
        setrlimit(
            Resource::Nofile,
            Rlimit {
                current: limit.maximum,
                maximum: limit.maximum,
            },
        )
        .context("setrlimit(RLIMIT_NOFILE)")?;
    }
    Ok(FdLimit {
        before,
        after: getrlimit(Resource::Nofile).current,
    })
}

/// The local port range for outgoing connections (`ip_local_port_range`), if readable.
pub fn ephemeral_port_range() -> Option<(u16, u16)> {
    let text = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").ok()?;
    let mut parts = text.split_whitespace().map(str::parse::<u16>);
    match (parts.next(), parts.next()) {
        (Some(Ok(low)), Some(Ok(high))) if low <= high => Some((low, high)),
        _ => None,
    }
}

fn read(path: &str) -> Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("cannot read {path}"))
}

/// utime and stime (fields 14 and 15) of a `/proc/<pid>/stat` line. The command name (field 2)
/// is in parentheses and may itself hold spaces and parentheses, so fields are counted from
/// the last `)`.
pub fn parse_stat_cpu_ticks(stat: &str) -> Option<(u64, u64)> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    // after_name starts with field 3 (state); utime is field 14 → index 11 here.
    let mut fields = after_name.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some((utime, stime))
}

/// A `Key:   123 kB` line of `/proc/<pid>/status`, in KiB.
pub fn parse_status_kib(status: &str, key: &str) -> Option<u64> {
    status.lines().find_map(|line| {
        let value = line.strip_prefix(key)?.strip_prefix(':')?;
        let mut parts = value.split_whitespace();
        let number = parts.next()?.parse().ok()?;
        (parts.next() == Some("kB")).then_some(number)
    })
}

/// The `mem` value (pages) of the `TCP:` line of `/proc/net/sockstat`.
pub fn parse_sockstat_tcp_mem_pages(sockstat: &str) -> Option<u64> {
    let line = sockstat.lines().find(|l| l.starts_with("TCP:"))?;
    let mut words = line.split_whitespace();
    while let Some(word) = words.next() {
        if word == "mem" {
            return words.next()?.parse().ok();
        }
    }
    None
}

/// Busy ticks of the aggregate `cpu` line of `/proc/stat` — everything but idle and iowait
/// (guest time is already inside user time) — and the softirq part of them.
pub fn parse_machine_busy_ticks(stat: &str) -> Option<(u64, u64)> {
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let values: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .take(8)
        .map(str::parse)
        .collect::<Result<_, _>>()
        .ok()?;
    // user nice system idle iowait irq softirq steal
    if values.len() < 8 {
        return None;
    }
    let busy = values[0] + values[1] + values[2] + values[5] + values[6] + values[7];
    Some((busy, values[6]))
}

/// Pins the main thread to `cpus` (a `taskset -c` list, e.g. `1` or `1,3`); threads started
/// afterwards inherit it. Call it from `main` before the async runtime starts its workers.
pub fn pin_main_thread(cpus: &str) -> Result<()> {
    // `taskset -p` without `-a` sets the thread whose id it is given: the main thread's id is
    // the process id.
    let tid = std::process::id().to_string();
    let status = std::process::Command::new("taskset")
        .args(["-p", "-c", cpus, &tid])
        .stdout(std::process::Stdio::null())
        .status()
        .context("cannot run taskset (util-linux)")?;
    anyhow::ensure!(status.success(), "taskset -p -c {cpus} failed: {status}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_cpu_ticks_survive_odd_command_names() {
        let stat = "4242 (spin dle) (x)) S 1 4242 4242 0 -1 4194560 1234 0 0 0 \
                    731 269 0 0 20 0 9 0 123456 987654321 2500 18446744073709551615";
        assert_eq!(parse_stat_cpu_ticks(stat), Some((731, 269)));
        assert_eq!(parse_stat_cpu_ticks("garbage"), None);
        assert_eq!(parse_stat_cpu_ticks("1 (a) S 1 2"), None);
    }

    #[test]
    fn our_own_stat_parses() {
        let sample = ProcessSample::take(std::process::id()).unwrap();
        assert!(sample.rss_kib > 0);
        assert!(sample.peak_rss_kib >= sample.rss_kib);
    }

    #[test]
    fn status_values_in_kib() {
        let status =
            "Name:\tspindle\nVmPeak:\t  300000 kB\nVmHWM:\t   20480 kB\nVmRSS:\t   10240 kB\n";
        assert_eq!(parse_status_kib(status, "VmRSS"), Some(10240));
        assert_eq!(parse_status_kib(status, "VmHWM"), Some(20480));
        assert_eq!(parse_status_kib(status, "VmSwap"), None);
        assert_eq!(parse_status_kib("VmRSSX:\t1 kB", "VmRSS"), None);
    }

    #[test]
    fn sockstat_tcp_mem() {
        let text = "sockets: used 39\nTCP: inuse 11 orphan 0 tw 2 alloc 14 mem 457\n\
                    UDP: inuse 0 mem 3\n";
        assert_eq!(parse_sockstat_tcp_mem_pages(text), Some(457));
        assert_eq!(parse_sockstat_tcp_mem_pages("UDP: inuse 0 mem 3\n"), None);
        assert!(tcp_socket_memory().is_ok());
        assert!(kernel_slab_memory().unwrap() > 0);
    }

    #[test]
    fn machine_busy_ticks() {
        let text = "cpu  100 5 50 1000 7 3 2 1 0 0\ncpu0 50 2 25 500 3 1 1 0 0 0\n";
        assert_eq!(parse_machine_busy_ticks(text), Some((161, 2)));
        assert!(MachineSample::take().is_ok());
    }

    #[test]
    fn fd_limit_is_raised_to_the_hard_limit() {
        let limit = raise_fd_limit().unwrap();
        assert_eq!(limit.after, getrlimit(Resource::Nofile).maximum);
    }
}
