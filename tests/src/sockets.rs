//! The server's own end of a TCP connection, read from outside the process: which socket options
//! `spindle` set on a connection it accepted.
//!
//! The connection is found by its two ports in `/proc/<pid>/net/tcp{,6}` (which gives the socket's
//! inode), the inode among `/proc/<pid>/fd/*`, and a copy of that descriptor is taken with
//! `pidfd_getfd` — allowed to the same user with ptrace rights over the server (root in CI),
//! refused otherwise with an error that says so. Linux only.

use crate::{Error, Result};
use rustix::process::{Pid, PidfdFlags, PidfdGetfdFlags, pidfd_getfd, pidfd_open};
use std::os::fd::OwnedFd;

/// Whether `TCP_NODELAY` is on for the server end of the connection from local port
/// `client_port` to the server's port `server_port`; `None` while the server has not accepted
/// the connection yet (no descriptor of its own for it).
pub fn server_nodelay(pid: u32, server_port: u16, client_port: u16) -> Result<Option<bool>> {
    let Some(socket) = server_socket(pid, server_port, client_port)? else {
        return Ok(None);
    };
    rustix::net::sockopt::tcp_nodelay(&socket)
        .map(Some)
        .map_err(|e| Error::new(format!("getsockopt(TCP_NODELAY): {e}")))
}

/// A copy of the server's descriptor for that connection, if it has one yet.
fn server_socket(pid: u32, server_port: u16, client_port: u16) -> Result<Option<OwnedFd>> {
    let inode = ["tcp", "tcp6"].iter().find_map(|table| {
        let text = std::fs::read_to_string(format!("/proc/{pid}/net/{table}")).ok()?;
        inode_of(&text, server_port, client_port)
    });
    let Some(inode) = inode else {
        return Ok(None);
    };
    let wanted = format!("socket:[{inode}]");
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map_err(|e| Error::new(format!("/proc/{pid}/fd: {e}")))?;
    let fd = fds
        .flatten()
        .find(|entry| std::fs::read_link(entry.path()).is_ok_and(|link| link == *wanted))
        .and_then(|entry| entry.file_name().to_str()?.parse::<i32>().ok());
    let Some(fd) = fd else {
        return Ok(None);
    };
    let process = Pid::from_raw(i32::try_from(pid).unwrap_or(0))
        .ok_or_else(|| Error::new(format!("bad pid {pid}")))?;
    let pidfd = pidfd_open(process, PidfdFlags::empty())
        .map_err(|e| Error::new(format!("pidfd_open({pid}): {e}")))?;
    pidfd_getfd(&pidfd, fd, PidfdGetfdFlags::empty())
        .map(Some)
        .map_err(|e| {
            Error::new(format!(
                "pidfd_getfd({pid}, {fd}): {e} (needs ptrace rights over the server)"
            ))
        })
}

/// The inode of the connection whose local port is `local` and remote port `remote`, in the
/// text of a `/proc/net/tcp` or `tcp6` table.
fn inode_of(table: &str, local: u16, remote: u16) -> Option<u64> {
    table.lines().skip(1).find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let port = |address: &str| u16::from_str_radix(address.rsplit(':').next()?, 16).ok();
        let matches = port(fields.get(1)?)? == local && port(fields.get(2)?)? == remote;
        matches.then(|| fields.get(9)?.parse().ok()).flatten()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_a_connection_by_its_ports() {
        let table = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n\
            0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 111 1 0 100 0 0 10 0\n\
            1: 0100007F:1F90 0100007F:A3B2 01 00000000:00000000 00:00000000 00000000     0        0 222 1 0 20 4 30 10 -1\n";
        assert_eq!(inode_of(table, 0x1F90, 0xA3B2), Some(222));
        assert_eq!(inode_of(table, 0x1F90, 0), Some(111));
        assert_eq!(inode_of(table, 0x1F91, 0xA3B2), None);
    }
}
