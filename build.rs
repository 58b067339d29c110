//! Link-time settings of the `berth` executable.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The functions start-up runs (`benches/start-up-order.sh` writes it).
const ORDER: &str = "src/start-up.order";

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed={ORDER}");
    println!("cargo:rerun-if-env-changed=BERTH_LINK_ORDER");
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let env = std::env::var("CARGO_CFG_TARGET_ENV").unwrap_or_default();
    if os != "linux" || env != "gnu" {
        return;
    }
    // Packed relative relocations (DT_RELR, glibc 2.36+): the position-
    // independent executable keeps its address randomisation, but the
    // loader reads about 12 KB of relocations at start instead of about
    // 1 MB, which is resident memory of every running berth. Linkers that
    // do not know the option ignore it with a warning.
    println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    if let Some(lld) = ordering_linker() {
        // Start-up's functions laid out together: the kernel maps the
        // executable's code 64 KiB around each page a process first runs,
        // so the code start-up runs, spread over 30 MB of text, kept about
        // 190 such windows resident (12 MB of an idle berth's RSS; see
        // benches/README.md, "Idle memory"). GNU ld takes no ordering
        // before binutils 2.43; lld does.
        println!("cargo:rustc-link-arg-bins=-B{}", lld.display());
        println!("cargo:rustc-link-arg-bins=-fuse-ld=lld");
        let order = Path::new(&std::env::var("CARGO_MANIFEST_DIR").unwrap_or_default()).join(ORDER);
        println!(
            "cargo:rustc-link-arg-bins=-Wl,--symbol-ordering-file={}",
            order.display()
        );
        // Names of another build's generics that this one lacks.
        println!("cargo:rustc-link-arg-bins=-Wl,--no-warn-symbol-ordering");
    }
}

/// For a release build with the ordering, not turned off with
/// `BERTH_LINK_ORDER=0`: the directory of an `ld.lld` of LLVM 15 or newer
/// (the first to know packed relocations): the one rustup ships with rustc
/// (its `gcc-ld` wrapper, the linker rustc itself uses by default on x86-64
/// Linux since 1.90, so a fresh machine needs nothing more), else Debian's
/// `/usr/lib/llvm-N/bin`, the newest first, or one on `PATH`.
fn ordering_linker() -> Option<PathBuf> {
    if std::env::var("PROFILE").as_deref() != Ok("release")
        || std::env::var("BERTH_LINK_ORDER").as_deref() == Ok("0")
        || !Path::new(ORDER).exists()
    {
        return None;
    }
    let mut llvm: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name();
            let v = name.to_str()?.strip_prefix("llvm-")?.parse::<u32>().ok()?;
            Some((v, e.path().join("bin")))
        })
        .collect();
    llvm.sort_by_key(|(v, _)| std::cmp::Reverse(*v));
    let on_path = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default();
    let found = rustc_lld()
        .into_iter()
        .chain(llvm.into_iter().map(|(_, dir)| dir))
        .chain(on_path)
        .find(|dir| lld_version(&dir.join("ld.lld")).is_some_and(|v| v >= 15));
    if found.is_none() {
        println!(
            "cargo:warning=ld.lld (LLVM 15 or newer) not found: berth is linked without its \
             start-up ordering (10-13 MB more resident at idle; rustup's toolchains carry one, \
             or on Debian 12: apt install lld-19)"
        );
    }
    found
}

/// The directory of rustc's own `ld.lld` wrapper for the target:
/// `<sysroot>/lib/rustlib/<target>/bin/gcc-ld`, where rustup installs it.
fn rustc_lld() -> Option<PathBuf> {
    let rustc = std::env::var_os("RUSTC")?;
    let target = std::env::var("TARGET").ok()?;
    let out = Command::new(rustc)
        .args(["--print", "sysroot"])
        .stderr(Stdio::null())
        .output()
        .ok()?;
    let sysroot = String::from_utf8(out.stdout).ok()?;
    let dir = Path::new(sysroot.trim())
        .join("lib/rustlib")
        .join(target)
        .join("bin/gcc-ld");
    dir.is_dir().then_some(dir)
}

/// The major version `lld --version` reports ("Debian LLD 19.1.7 ...").
fn lld_version(lld: &Path) -> Option<u32> {
    if !lld.is_file() {
        return None;
    }
    let out = Command::new(lld)
        .arg("--version")
        .stderr(Stdio::null())
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let after = text.split("LLD ").nth(1)?;
    after.split('.').next()?.trim().parse().ok()
}
