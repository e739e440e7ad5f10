//! Meters read from `/proc` and the process clock (performance.md §6.0 step 6): process CPU
//! time, the CPU time of one named in-process thread (the Kafka mock broker), and the TCP
//! connections this process holds to a given port.
//!
//! Nothing here needs `unsafe`: the CPU clock comes from the `cpu-time` crate
//! (`CLOCK_PROCESS_CPUTIME_ID`, nanosecond resolution, unlike the 10 ms ticks of
//! `/proc/self/stat`), the rest is text parsing.

use std::collections::BTreeSet;
use std::fs;
use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use cpu_time::ProcessTime;

/// CPU time (user + system, all threads, including those that have exited) of this process.
pub fn process_cpu() -> Result<Duration> {
    ProcessTime::try_now()
        .map(|t| t.as_duration())
        .context("reading CLOCK_PROCESS_CPUTIME_ID")
}

/// The 1-minute load average (`/proc/loadavg`): how busy the machine was, to judge the noise.
pub fn load_average() -> Option<f64> {
    let text = fs::read_to_string("/proc/loadavg").ok()?;
    text.split_whitespace().next()?.parse().ok()
}

/// A thread of this process found by name, whose CPU time can be read cheaply.
#[derive(Debug, Clone)]
pub struct NamedThread {
    /// `/proc/self/task/<tid>/schedstat`.
    schedstat: String,
}

impl NamedThread {
    /// The first thread of this process whose `comm` is `name` (e.g. librdkafka's `rdk:mock`).
    pub fn find(name: &str) -> Result<Self> {
        let tasks = fs::read_dir("/proc/self/task").context("listing /proc/self/task")?;
        for task in tasks.flatten() {
            let dir = task.path();
            let comm = fs::read_to_string(dir.join("comm")).unwrap_or_default();
            if comm.trim_end() == name {
                return Ok(Self {
                    schedstat: dir.join("schedstat").to_string_lossy().into_owned(),
                });
            }
        }
        Err(anyhow!("no thread named {name:?} in this process"))
    }

    /// Time this thread has spent on a CPU (first field of `schedstat`, in nanoseconds).
    pub fn cpu(&self) -> Result<Duration> {
        let text = fs::read_to_string(&self.schedstat)
            .with_context(|| format!("reading {}", self.schedstat))?;
        let ns = text
            .split_whitespace()
            .next()
            .and_then(|f| f.parse::<u64>().ok())
            .ok_or_else(|| anyhow!("unexpected {} content {text:?}", self.schedstat))?;
        Ok(Duration::from_nanos(ns))
    }
}

/// Local ports of this process's established TCP connections to `remote_port` (any address).
///
/// `/proc/self/net/tcp{,6}` lists every socket of the network namespace; a socket belongs to
/// this process when its inode is one of the `socket:[inode]` links in `/proc/self/fd`. An
/// in-process server (the Kafka mock broker) has the port as its *local* port on accepted
/// sockets, so only the client side is counted.
pub fn connections_to(remote_port: u16) -> Result<BTreeSet<u16>> {
    let inodes = socket_inodes()?;
    let mut ports = BTreeSet::new();
    for table in ["/proc/self/net/tcp", "/proc/self/net/tcp6"] {
        let text = fs::read_to_string(table).with_context(|| format!("reading {table}"))?;
        for row in text.lines().skip(1).filter_map(TcpRow::parse) {
            if row.established && row.remote_port == remote_port && inodes.contains(&row.inode) {
                ports.insert(row.local_port);
            }
        }
    }
    Ok(ports)
}

/// Inodes of every socket this process has open (`socket:[inode]` links in `/proc/self/fd`).
pub fn socket_inodes() -> Result<BTreeSet<u64>> {
    let mut inodes = BTreeSet::new();
    let fds = fs::read_dir("/proc/self/fd").context("listing /proc/self/fd")?;
    for fd in fds.flatten() {
        // An fd may close between the listing and the readlink: skip it.
        let Ok(target) = fs::read_link(fd.path()) else {
            continue;
        };
        let target = target.to_string_lossy();
        let inode = target
            .strip_prefix("socket:[")
            .and_then(|rest| rest.strip_suffix(']'))
            .and_then(|n| n.parse::<u64>().ok());
        inodes.extend(inode);
    }
    Ok(inodes)
}

/// The fields of one `/proc/net/tcp` row this meter needs.
struct TcpRow {
    local_port: u16,
    remote_port: u16,
    established: bool,
    inode: u64,
}

impl TcpRow {
    /// `sl local rem st tx:rx tr:when retrnsmt uid timeout inode …`; addresses are
    /// `HEXADDR:HEXPORT`, state `01` is ESTABLISHED.
    fn parse(line: &str) -> Option<Self> {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let port = |addr: &str| {
            let (_, hex) = addr.rsplit_once(':')?;
            u16::from_str_radix(hex, 16).ok()
        };
        Some(Self {
            local_port: port(fields.get(1)?)?,
            remote_port: port(fields.get(2)?)?,
            established: *fields.get(3)? == "01",
            inode: fields.get(9)?.parse().ok()?,
        })
    }
}
