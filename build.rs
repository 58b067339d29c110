//! Link-time settings of the `berth` executable.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let env = std::env::var("CARGO_CFG_TARGET_ENV").unwrap_or_default();
    if os == "linux" && env == "gnu" {
        // Packed relative relocations (DT_RELR, glibc 2.36+): the position-
        // independent executable keeps its address randomisation, but the
        // loader reads about 12 KB of relocations at start instead of about
        // 1 MB, which is resident memory of every running berth. Linkers that
        // do not know the option ignore it with a warning.
        println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    }
}
