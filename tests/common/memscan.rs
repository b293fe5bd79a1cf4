//! Scanning a live process's memory for secrets (Linux, `/proc/PID/maps` and
//! `/proc/PID/mem`; the tests run as the processes' owner or root). Used to show a server
//! process holds no group key, with the same scan finding the keys in a participant.

use std::fs::File;
use std::os::unix::fs::FileExt;

/// Which of `needles` occur anywhere in the readable memory of process `pid`.
pub fn find_in_process(pid: u32, needles: &[&[u8]]) -> Vec<bool> {
    let mut found = vec![false; needles.len()];
    // smaps, not maps: its Rss line lets untouched reservations (V8 and PartitionAlloc
    // reserve gigabytes) be skipped instead of read as zero pages.
    let Ok(smaps) = std::fs::read_to_string(format!("/proc/{pid}/smaps")) else {
        return found;
    };
    let Ok(mem) = File::open(format!("/proc/{pid}/mem")) else {
        return found;
    };
    let finders: Vec<_> = needles.iter().map(memchr::memmem::Finder::new).collect();
    let overlap = needles.iter().map(|n| n.len()).max().unwrap_or(0);
    const CHUNK: usize = 8 << 20;
    let mut buf = vec![0u8; CHUNK + overlap];
    let mut regions: Vec<(u64, u64, bool)> = Vec::new();
    for line in smaps.lines() {
        // Resident or swapped out: either way the process holds those bytes.
        if let Some(kb) = line
            .strip_prefix("Rss:")
            .or_else(|| line.strip_prefix("Swap:"))
        {
            if let Some(last) = regions.last_mut() {
                last.2 |= kb.trim().trim_end_matches("kB").trim() != "0";
            }
            continue;
        }
        let mut f = line.split_whitespace();
        let (Some(range), Some(perms)) = (f.next(), f.next()) else {
            continue;
        };
        let Some((a, b)) = range.split_once('-') else {
            continue;
        };
        let (Ok(start), Ok(end)) = (u64::from_str_radix(a, 16), u64::from_str_radix(b, 16)) else {
            continue;
        };
        // Secrets live in writable memory (heap, stacks, anonymous maps); code and
        // read-only file maps cannot hold a key derived at run time.
        if !perms.starts_with("rw") || line.ends_with("[vvar]") || line.ends_with("[vsyscall]") {
            continue;
        }
        regions.push((start, end, false));
    }
    for (start, end, resident) in regions {
        if !resident {
            continue;
        }
        let mut at = start;
        while at < end {
            let len = ((end - at) as usize).min(CHUNK + overlap);
            let Ok(n) = mem.read_at(&mut buf[..len], at) else {
                break;
            };
            if n == 0 {
                break;
            }
            for (i, fd) in finders.iter().enumerate() {
                if !found[i] && fd.find(&buf[..n]).is_some() {
                    found[i] = true;
                }
            }
            at += CHUNK as u64;
        }
    }
    found
}

/// Whether process `pid`'s command line contains `needle` (e.g. Chromium's
/// `--type=renderer`, where pages and their workers run).
pub fn cmdline_contains(pid: u32, needle: &str) -> bool {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|c| String::from_utf8_lossy(&c).contains(needle))
        .unwrap_or(false)
}

/// Process ids of `root` and all its descendants.
pub fn process_tree(root: u32) -> Vec<u32> {
    let mut parent_of: Vec<(u32, u32)> = Vec::new();
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for e in dir.flatten() {
            let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
                continue;
            };
            // The command name may hold spaces: the fields after it follow the last ')'.
            let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
                continue;
            };
            if let Some(ppid) = rest.split_whitespace().nth(1).and_then(|p| p.parse().ok()) {
                parent_of.push((pid, ppid));
            }
        }
    }
    let mut tree = vec![root];
    let mut i = 0;
    while i < tree.len() {
        let p = tree[i];
        tree.extend(parent_of.iter().filter(|(_, pp)| *pp == p).map(|(c, _)| *c));
        i += 1;
    }
    tree
}
