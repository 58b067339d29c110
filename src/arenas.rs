//! glibc's malloc, kept small: how many arenas it may keep (one per core,
//! not its default of eight per core), and its free pages returned once the
//! process goes quiet (`spawn_idle_trim`).
//!
//! glibc gives a thread that finds the other arenas busy an arena of its own,
//! up to eight per core, and memory freed in one arena is reused only by the
//! threads of that arena. berth runs many short-lived threads at once (tokio's
//! blocking pool: database writes, file I/O, the directory deployer's
//! applies), so a burst such as a publish to a fleet left a dozen arenas,
//! each holding the free memory of its own peak: 50.4-50.9 MB peak RSS for
//! 1,000 nodes against 41.5-42.7 MB with `MALLOC_ARENA_MAX=2`, at the same CPU
//! (`benches/README.md`, workload 10). Owns: that setting, made before
//! any other thread exists, and the trims. The environment wins: with `MALLOC_ARENA_MAX` set,
//! glibc has read it and nothing is changed here.

/// Caps glibc's arenas at the number of cores (at least 2), unless
/// `MALLOC_ARENA_MAX` says otherwise. Call first thing in `main`.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
pub fn limit() {
    use std::os::raw::c_int;
    extern "C" {
        fn mallopt(param: c_int, value: c_int) -> c_int;
    }
    /// `M_ARENA_MAX` in glibc's `<malloc.h>`.
    const M_ARENA_MAX: c_int = -8;
    if std::env::var_os("MALLOC_ARENA_MAX").is_some() {
        return;
    }
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let arenas = c_int::try_from(cores.max(2)).unwrap_or(c_int::MAX);
    // SAFETY: mallopt only sets a parameter of glibc's allocator, takes no
    // pointers, and is called before any other thread exists.
    unsafe {
        mallopt(M_ARENA_MAX, arenas);
    }
}

/// Other C libraries (musl) have no per-thread arenas to cap.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn limit() {}

/// How often the trimmer looks at the process's CPU time.
const IDLE_TICK: std::time::Duration = std::time::Duration::from_millis(500);

/// CPU time per tick below which the process counts as quiet, in the
/// kernel's clock ticks (USER_HZ, 10 ms): under 20 ms in half a second.
const QUIET_TICKS: u64 = 2;

/// Whether to trim, tick by tick: once, at the first quiet tick after work.
/// Start-up counts as work.
#[derive(Debug)]
struct IdleTrim {
    worked: bool,
}

impl IdleTrim {
    fn new() -> Self {
        IdleTrim { worked: true }
    }

    /// `cpu`: the process's CPU time since the last tick, in clock ticks.
    fn tick(&mut self, cpu: u64) -> bool {
        if cpu >= QUIET_TICKS {
            self.worked = true;
            return false;
        }
        std::mem::take(&mut self.worked)
    }
}

/// The CPU time of the whole process (every thread, user and system) so
/// far, in clock ticks: `utime` and `stime` of `/proc/self/stat`.
fn cpu_ticks() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // After the command name (which may hold spaces), field 3 onwards.
    let mut fields = stat.rsplit_once(')')?.1.split_whitespace();
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime.saturating_add(stime))
}

/// Gives the heap's free pages back to the kernel when the process goes
/// quiet after work (start-up, a burst of requests): glibc keeps what was
/// freed below the top of each heap resident until then, 0.7 MB of an idle
/// `berth serve`'s 4.1 MB just after start (benches/README.md, idle memory).
/// One look at the CPU time every half second; nothing while work goes on.
/// Call from within the runtime of a long-running role.
pub fn spawn_idle_trim() {
    if !cfg!(all(target_os = "linux", target_env = "gnu")) {
        return;
    }
    let Some(mut last) = cpu_ticks() else {
        return;
    };
    tokio::spawn(async move {
        let mut state = IdleTrim::new();
        let mut tick = tokio::time::interval(IDLE_TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tick.tick().await;
            let Some(now) = cpu_ticks() else {
                return;
            };
            if state.tick(now.saturating_sub(last)) {
                trim();
            }
            // After the trim, so that its own time does not count as work.
            last = cpu_ticks().unwrap_or(now);
        }
    });
}

/// Returns the free pages of every arena to the kernel: by the idle trimmer,
/// and once when a server starts serving, so that what start-up freed does
/// not wait for the first quiet half second.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
pub fn trim() {
    extern "C" {
        fn malloc_trim(pad: usize) -> std::os::raw::c_int;
    }
    // SAFETY: malloc_trim takes no pointers and locks each arena itself;
    // glibc documents it as safe to call from any thread at any time.
    unsafe {
        malloc_trim(0);
    }
}

/// Other C libraries return free memory on their own terms.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn trim() {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trims_once_at_the_first_quiet_tick_after_work() {
        let mut t = IdleTrim::new();
        assert!(t.tick(0), "start-up was work: the first quiet tick trims");
        assert!(!t.tick(0), "once");
        assert!(!t.tick(QUIET_TICKS), "not while working");
        assert!(!t.tick(5 * QUIET_TICKS), "still working");
        assert!(t.tick(QUIET_TICKS - 1), "quiet again: trims");
        assert!(!t.tick(0), "and then rests");
    }

    #[test]
    fn the_cpu_time_counts_every_thread_and_a_trim_returns() {
        /// This thread's own CPU time, in clock ticks.
        fn own_ticks() -> u64 {
            let stat = std::fs::read_to_string("/proc/thread-self/stat").expect("stat");
            let mut f = stat.rsplit_once(')').expect("comm").1.split_whitespace();
            let u: u64 = f.nth(11).and_then(|v| v.parse().ok()).expect("utime");
            let s: u64 = f.next().and_then(|v| v.parse().ok()).expect("stime");
            u + s
        }
        let before = cpu_ticks().expect("/proc/self/stat");
        // Another thread works until it has spent 3 clock ticks of its own;
        // this one waits, spending next to none.
        let spent = std::thread::spawn(|| {
            let start = own_ticks();
            let mut x = 0u64;
            while own_ticks() < start + 3 {
                for i in 0..1_000_000u64 {
                    x = x.wrapping_mul(31).wrapping_add(i);
                }
                std::hint::black_box(x);
            }
            own_ticks() - start
        })
        .join()
        .expect("spin");
        let after = cpu_ticks().expect("/proc/self/stat");
        assert!(
            after - before >= spent,
            "the other thread's {spent} ticks count: {before} then {after}"
        );
        trim();
    }
}
