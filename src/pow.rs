//! The C library's `pow`, defined in the executable, so that berth does not
//! load `libm.so.6`.
//!
//! The one call berth makes into glibc's libm is tokio's: its multi-threaded
//! scheduler tunes how often a worker looks at the global queue with `pow`.
//! Loading libm for it cost every berth process about 0.5 MB of resident
//! memory from its first instant, whatever it runs: the loader runs libm's
//! function resolvers and maps its tables (four windows of its code, three
//! of its data; see benches/README.md, "Idle memory"). Defined here, the
//! linker resolves that call to this function, and rustc's `--as-needed`
//! leaves libm out of the executable's needed libraries. The work is done
//! by the `libm` crate, the Rust port of musl's mathematics library
//! (accurate to under one unit in the last place, as glibc's is).

/// `pow(x, y)`: `x` raised to the power `y`, with C99's special cases.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
// SAFETY (of the unmangled name): it replaces a C function of the same
// signature and meaning; it takes no pointers and has no side effects.
#[no_mangle]
pub extern "C" fn pow(x: f64, y: f64) -> f64 {
    libm::pow(x, y)
}

#[cfg(all(test, target_os = "linux", target_env = "gnu"))]
mod tests {
    /// Exact powers, C99's special cases, and an inexact value.
    #[test]
    fn pow_gives_c99_results() {
        assert_eq!(super::pow(2.0, 10.0), 1024.0);
        assert_eq!(super::pow(9.0, 0.5), 3.0);
        assert_eq!(super::pow(10.0, -2.0), 0.01);
        assert_eq!(super::pow(f64::NAN, 0.0), 1.0);
        assert_eq!(super::pow(1.0, f64::NAN), 1.0);
        assert!(super::pow(-8.0, 1.0 / 3.0).is_nan());
        assert_eq!(super::pow(0.0, -1.0), f64::INFINITY);
        assert_eq!(super::pow(-0.0, -1.0), f64::NEG_INFINITY);
        assert_eq!(super::pow(0.5, f64::INFINITY), 0.0);
        let x = super::pow(1.1, 7.3);
        assert!((x - 2.005_241_119_382_375).abs() < 1e-12, "{x}");
    }
}
