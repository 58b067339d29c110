//! What the kernel says about a process: CPU time and minor page faults
//! (`/proc/<pid>/stat`, CPU time also to the nanosecond from the
//! scheduler's `schedstat`),
//! resident memory now and at its peak (`VmRSS`, `VmHWM` in
//! `/proc/<pid>/status`), and resetting the peak (`clear_refs`), so that one
//! server can be measured workload by workload.

use std::sync::OnceLock;
use std::time::Duration;

/// Clock ticks per second (`getconf CLK_TCK`; 100 on Linux unless told otherwise).
fn ticks_per_second() -> u64 {
    static TCK: OnceLock<u64> = OnceLock::new();
    *TCK.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse().ok())
            .filter(|&t| t > 0)
            .unwrap_or(100)
    })
}

/// User + system CPU time of a process (all its threads); `None` = this one.
/// Zero if the process is gone.
pub fn cpu_time(pid: Option<u32>) -> Duration {
    let path = match pid {
        Some(p) => format!("/proc/{p}/stat"),
        None => "/proc/self/stat".to_owned(),
    };
    let Ok(stat) = std::fs::read_to_string(path) else {
        return Duration::ZERO;
    };
    // The command name may hold spaces and parentheses; fields start after the last ')'.
    let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
        return Duration::ZERO;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // fields[0] is field 3 (state); utime and stime are fields 14 and 15.
    let ticks: u64 = [11, 12]
        .iter()
        .filter_map(|&i| fields.get(i).and_then(|f| f.parse::<u64>().ok()))
        .sum();
    Duration::from_nanos(ticks * 1_000_000_000 / ticks_per_second())
}

/// User and system CPU time of a process (all its threads), apart: what
/// its own code ran, and what the kernel ran for it (file systems, sockets).
/// Zeros if the process is gone.
pub fn cpu_user_system(pid: u32) -> (Duration, Duration) {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return (Duration::ZERO, Duration::ZERO);
    };
    let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
        return (Duration::ZERO, Duration::ZERO);
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| -> Duration {
        let t = fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0);
        Duration::from_nanos(t * 1_000_000_000 / ticks_per_second())
    };
    (ticks(11), ticks(12))
}

/// Minor page faults of a process so far (`minflt`, field 10 of
/// `/proc/<pid>/stat`): first touches of memory it was just given. Zero if
/// the process is gone.
pub fn minor_faults(pid: u32) -> u64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0;
    };
    stat.rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().nth(7)?.parse().ok())
        .unwrap_or(0)
}

/// CPU time of a server made of processes (PostgreSQL: the postmaster and
/// a backend per connection): `pid`'s and its children's user + system
/// time, with what children that have exited left in their parent's
/// `cutime`/`cstime`.
pub fn cpu_time_with_children(pid: u32) -> Duration {
    let fields = |p: &str| -> Option<Vec<u64>> {
        let stat = std::fs::read_to_string(format!("/proc/{p}/stat")).ok()?;
        let rest = stat.rsplit_once(')')?.1;
        // fields[1] is the parent's pid; [11..=14] utime, stime, cutime, cstime.
        Some(
            rest.split_whitespace()
                .take(15)
                .map(|f| f.parse().unwrap_or(0))
                .collect(),
        )
    };
    let ticks = |f: &[u64]| -> u64 { f.get(11..15).map_or(0, |t| t.iter().sum()) };
    let mut total = fields(&pid.to_string()).map_or(0, |f| ticks(&f));
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for e in dir.flatten() {
            let name = e.file_name();
            let Some(name) = name
                .to_str()
                .filter(|n| n.bytes().all(|b| b.is_ascii_digit()))
            else {
                continue;
            };
            if let Some(f) = fields(name).filter(|f| f.get(1) == Some(&(pid as u64))) {
                total += ticks(&f);
            }
        }
    }
    Duration::from_nanos(total * 1_000_000_000 / ticks_per_second())
}

/// Time on CPU of a process's live threads, from the scheduler's
/// nanosecond counters (`/proc/<pid>/task/*/schedstat`), for figures of
/// tens of milliseconds where `cpu_time`'s clock ticks (10 ms) are too
/// coarse. A thread that exits between two readings takes its time with
/// it: compare readings over a window in which the server's threads stay
/// (tokio's workers and Go's do). Zero if the process is gone.
pub fn on_cpu(pid: u32) -> Duration {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Duration::ZERO;
    };
    let ns: u64 = tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .sum();
    Duration::from_nanos(ns)
}

/// A `kB` field of `/proc/<pid>/status`, in bytes.
fn status_bytes(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find_map(|line| {
        let rest = line.strip_prefix(field)?.strip_prefix(':')?;
        let kb: u64 = rest.trim().trim_end_matches("kB").trim().parse().ok()?;
        Some(kb * 1024)
    })
}

/// Resident set size now.
pub fn rss(pid: u32) -> Option<u64> {
    status_bytes(pid, "VmRSS")
}

/// Anonymous resident memory now (heap, stacks; not the mapped executable).
pub fn rss_anon(pid: u32) -> Option<u64> {
    status_bytes(pid, "RssAnon")
}

/// Threads of a process now.
pub fn threads(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("Threads:")?.trim().parse().ok())
}

/// Peak resident set size since start or the last [`reset_peak`].
pub fn peak_rss(pid: u32) -> Option<u64> {
    status_bytes(pid, "VmHWM")
}

/// Resets the peak to the current RSS (`echo 5 > /proc/<pid>/clear_refs`).
pub fn reset_peak(pid: u32) -> bool {
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5").is_ok()
}

/// The one-minute load average.
pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

/// The file system `dir` is on, as `/proc/self/mountinfo` names it (type
/// and source), and for ext4 whether it has a journal: without one, the
/// kernel's inode allocation after many removals dominates the system time
/// of anything creating files there (benches/README.md, the fleet's "Round
/// nine"). `None` where the kernel does not say.
pub fn file_system(dir: &std::path::Path) -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    let dev = std::fs::metadata(dir).ok()?.dev();
    // glibc's dev_t encoding (`gnu_dev_major`, `gnu_dev_minor`).
    let major = ((dev >> 32) & 0xffff_f000) | ((dev >> 8) & 0xfff);
    let minor = ((dev >> 12) & 0xffff_ff00) | (dev & 0xff);
    let id = format!("{major}:{minor}");
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    let line = mountinfo
        .lines()
        .find(|l| l.split(' ').nth(2) == Some(id.as_str()))?;
    // `... - <type> <source> <options>` after the optional fields.
    let mut after = line.split(" - ").nth(1)?.split(' ');
    let (fs_type, source) = (after.next()?, after.next()?);
    if fs_type != "ext4" {
        return Some(format!("{fs_type} ({source})"));
    }
    let name = std::fs::read_link(format!("/sys/dev/block/{id}")).ok()?;
    let name = name.file_name()?.to_string_lossy();
    let journal = std::path::Path::new(&format!("/proc/fs/jbd2/{name}-8")).exists();
    Some(format!(
        "ext4 {} ({source})",
        if journal {
            "with a journal"
        } else {
            "without a journal"
        }
    ))
}
