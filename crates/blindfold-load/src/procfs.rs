//! Readings from /proc: CPU time of a process or of some of its threads (user + system,
//! `/proc/<pid>/task/<tid>/stat`, and the scheduler's nanosecond run time from
//! `schedstat` where the kernel keeps it), resident memory, and per-socket receive drops
//! (`/proc/net/udp`, `/proc/net/udp6`). Linux only; read-only; no parsing of anything
//! but these files.

use std::collections::HashSet;
use std::fs;
use std::net::SocketAddr;

/// Which threads to count.
#[derive(Debug, Clone)]
pub enum CpuScope {
    /// Every thread of a process.
    Process(u32),
    /// Threads of a process whose name (`comm`) starts with one of these prefixes.
    Threads(u32, Vec<String>),
}

/// CPU time consumed so far, in seconds.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct CpuTimes {
    /// User time.
    pub user: f64,
    /// System time.
    pub sys: f64,
    /// The busiest single thread's user + system time.
    pub max_thread: f64,
    /// Run time from `schedstat` (0 when the kernel does not provide it): what user +
    /// system add up to, in nanoseconds instead of 10 ms ticks, so a few seconds at a
    /// fraction of a core are measured to better than the ticks' few percent.
    pub run: f64,
}

impl CpuTimes {
    /// `self - earlier`, field by field (the busiest thread is taken as the larger delta
    /// only approximately: the max of the two readings' difference).
    pub fn since(&self, earlier: &CpuTimes) -> CpuTimes {
        CpuTimes {
            user: (self.user - earlier.user).max(0.0),
            sys: (self.sys - earlier.sys).max(0.0),
            max_thread: (self.max_thread - earlier.max_thread).max(0.0),
            run: (self.run - earlier.run).max(0.0),
        }
    }

    /// User + system: the scheduler's run time when known, else the tick counts.
    pub fn total(&self) -> f64 {
        if self.run > 0.0 {
            self.run
        } else {
            self.user + self.sys
        }
    }
}

fn clock_ticks() -> f64 {
    // USER_HZ is 100 on every Linux architecture that exposes /proc/<pid>/stat to
    // userspace unchanged (the kernel converts to it); reading sysconf would need libc's
    // unsafe wrapper, which only forwarder::sys may use.
    100.0
}

/// Parses (comm, utime, stime) out of a `stat` line.
fn parse_stat(text: &str) -> Option<(&str, u64, u64)> {
    // comm is in parentheses and may contain spaces: split at the last ')'.
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let comm = &text[open + 1..close];
    let rest: Vec<&str> = text[close + 1..].split_whitespace().collect();
    // After comm: state(0) ppid(1) ... utime is field 14 overall → index 11 here.
    let utime = rest.get(11)?.parse().ok()?;
    let stime = rest.get(12)?.parse().ok()?;
    Some((comm, utime, stime))
}

/// Reads the CPU times of `scope`; `None` when the process is gone or /proc unreadable.
pub fn cpu(scope: &CpuScope) -> Option<CpuTimes> {
    let (pid, prefixes) = match scope {
        CpuScope::Process(pid) => (*pid, None),
        CpuScope::Threads(pid, p) => (*pid, Some(p)),
    };
    let hz = clock_ticks();
    let mut t = CpuTimes::default();
    for entry in fs::read_dir(format!("/proc/{pid}/task")).ok()? {
        let Ok(entry) = entry else { continue };
        let Ok(text) = fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        let Some((comm, u, s)) = parse_stat(&text) else {
            continue;
        };
        if let Some(prefixes) = prefixes
            && !prefixes.iter().any(|p| comm.starts_with(p.as_str()))
        {
            continue;
        }
        let (u, s) = (u as f64 / hz, s as f64 / hz);
        t.user += u;
        t.sys += s;
        // schedstat: run time (ns), wait time, timeslices.
        let run = fs::read_to_string(entry.path().join("schedstat"))
            .ok()
            .and_then(|l| l.split_whitespace().next()?.parse::<u64>().ok())
            .map_or(0.0, |ns| ns as f64 / 1e9);
        t.run += run;
        t.max_thread = t.max_thread.max(if run > 0.0 { run } else { u + s });
    }
    Some(t)
}

/// Resident set size of a process in bytes.
pub fn rss_bytes(pid: u32) -> Option<u64> {
    let text = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = text.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// This process's id.
pub fn self_pid() -> u32 {
    std::process::id()
}

/// Sum of the receive-drop counters of every UDP socket bound to one of `ports` (any
/// local IP), from /proc/net/udp and /proc/net/udp6. Counts datagrams the kernel threw
/// away because that socket's receive buffer was full.
pub fn udp_drops(ports: &HashSet<u16>) -> u64 {
    let mut sum = 0;
    for file in ["/proc/net/udp", "/proc/net/udp6"] {
        let Ok(text) = fs::read_to_string(file) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let cols: Vec<&str> = line.split_whitespace().collect();
            let (Some(local), Some(drops)) = (cols.get(1), cols.last()) else {
                continue;
            };
            let Some(port) = local
                .rsplit(':')
                .next()
                .and_then(|p| u16::from_str_radix(p, 16).ok())
            else {
                continue;
            };
            if ports.contains(&port) {
                sum += drops.parse::<u64>().unwrap_or(0);
            }
        }
    }
    sum
}

/// The ports of `addrs`, for [`udp_drops`].
pub fn ports_of<'a>(addrs: impl IntoIterator<Item = &'a SocketAddr>) -> HashSet<u16> {
    addrs.into_iter().map(|a| a.port()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_spaces_in_comm() {
        let line = "123 (shard 0) R 1 2 3 4 5 6 7 8 9 10 250 30 0 0 20 0 1 0";
        assert_eq!(parse_stat(line), Some(("shard 0", 250, 30)));
    }

    #[test]
    fn reads_own_cpu_and_rss() {
        let t = cpu(&CpuScope::Process(self_pid())).unwrap();
        assert!(t.total() >= 0.0);
        assert!(rss_bytes(self_pid()).unwrap() > 0);
    }

    #[test]
    fn run_time_agrees_with_the_tick_counts() {
        let name = "procfs-spin";
        let scope = CpuScope::Threads(self_pid(), vec![name.into()]);
        let spin = std::thread::Builder::new()
            .name(name.into())
            .spawn(move || {
                // Spin until the scheduler has run this thread 50 ms (however busy the
                // host), then read both clocks. (The kernel updates a running thread's
                // run time at its ticks, so the first readings may still say 0.)
                let scope = CpuScope::Threads(self_pid(), vec![name.into()]);
                let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
                let mut x = 0u64;
                loop {
                    for _ in 0..100_000 {
                        x = std::hint::black_box(x.wrapping_add(1));
                    }
                    let t = cpu(&scope).unwrap();
                    if t.run >= 0.05 || std::time::Instant::now() > deadline {
                        return t;
                    }
                }
            })
            .unwrap();
        let t = spin.join().unwrap();
        if t.run == 0.0 {
            eprintln!("note: no schedstat on this kernel; ticks only");
            return;
        }
        assert!(t.run >= 0.05, "run {} s", t.run);
        assert_eq!(t.total(), t.run);
        // The tick counts are scaled to the same run time, to within a tick or two.
        assert!((t.user + t.sys - t.run).abs() < 0.03, "{t:?}");
        // Once the thread is gone, nothing matches the scope.
        assert_eq!(cpu(&scope).unwrap().total(), 0.0);
    }

    #[test]
    fn finds_a_bound_socket() {
        let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let ports = ports_of([&s.local_addr().unwrap()]);
        assert_eq!(udp_drops(&ports), 0);
    }
}
