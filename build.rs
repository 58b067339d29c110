//! Link-time settings of the `berth` executable.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The functions start-up runs (`benches/start-up-order.sh` writes it).
const ORDER: &str = "src/start-up.order";

/// The `ld.lld` that matches the list's names to the build's (see there).
const MATCHER: &str = "src/ld-order.sh";

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed={ORDER}");
    println!("cargo:rerun-if-changed={MATCHER}");
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
        let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap_or_default());
        // `BERTH_LINK_ORDER=exact`: the list's names as they are (to
        // measure what the matching does).
        let exact = std::env::var("BERTH_LINK_ORDER").as_deref() == Ok("exact");
        match matching_linker(&root, &lld).filter(|_| !exact) {
            Some(dir) => {
                // rustc puts its own `-B` (rustup's `ld.lld`) before a build
                // script's arguments, so the driver would find that one
                // first; `-fuse-ld=bfd` makes it look for a name rustc's
                // directory lacks, and this `ld.bfd` runs lld.
                println!("cargo:rustc-link-arg-bins=-B{}", dir.display());
                println!("cargo:rustc-link-arg-bins=-fuse-ld=bfd");
            }
            None => {
                println!("cargo:rustc-link-arg-bins=-B{}", lld.display());
                println!("cargo:rustc-link-arg-bins=-fuse-ld=lld");
            }
        }
        let order = root.join(ORDER);
        println!(
            "cargo:rustc-link-arg-bins=-Wl,--symbol-ordering-file={}",
            order.display()
        );
        // Names of another build's generics that this one lacks.
        println!("cargo:rustc-link-arg-bins=-Wl,--no-warn-symbol-ordering");
    }
}

/// A directory holding an `ld.bfd` that runs `src/ld-order.sh` with the
/// `ld.lld` in `lld`: the list's names that a code change has renamed
/// (thin LTO's `.llvm.<hash>` suffixes) still place their functions, so a
/// list made a few commits ago keeps most of its effect. `None` where the
/// paths cannot be written into a shell script as they are.
#[cfg(unix)]
fn matching_linker(root: &Path, lld: &Path) -> Option<PathBuf> {
    let quoted = |p: &Path| {
        let s = p.to_str()?;
        (!s.contains('\'')).then(|| format!("'{s}'"))
    };
    let script = quoted(&root.join(MATCHER))?;
    let real = quoted(&lld.join("ld.lld"))?;
    let dir = PathBuf::from(std::env::var_os("OUT_DIR")?).join("ld");
    std::fs::create_dir_all(&dir).ok()?;
    let wrapper = dir.join("ld.bfd");
    let text = format!("#!/bin/sh\nexec /bin/sh {script} {real} \"$@\"\n");
    std::fs::write(&wrapper, text).ok()?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).ok()?;
    Some(dir)
}

#[cfg(not(unix))]
fn matching_linker(_root: &Path, _lld: &Path) -> Option<PathBuf> {
    None
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
