//! How many malloc arenas glibc may keep: one per core, not its default of
//! eight per core.
//!
//! glibc gives a thread that finds the other arenas busy an arena of its own,
//! up to eight per core, and memory freed in one arena is reused only by the
//! threads of that arena. berth runs many short-lived threads at once (tokio's
//! blocking pool: database writes, file I/O, the directory deployer's
//! applies), so a burst such as a publish to a fleet left a dozen arenas,
//! each holding the free memory of its own peak: 50.4-50.9 MB peak RSS for
//! 1,000 nodes against 41.5-42.7 MB with `MALLOC_ARENA_MAX=2`, at the same CPU
//! (`benches/README.md`, workload 10). Owns: that one setting, made before
//! any other thread exists. The environment wins: with `MALLOC_ARENA_MAX` set,
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
