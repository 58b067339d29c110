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
/// `BERTH_LINK_ORDER=0`: the directory of an `ld.lld` (on `PATH`, or
/// Debian's `/usr/lib/llvm-N/bin`, the newest).
fn ordering_linker() -> Option<PathBuf> {
    if std::env::var("PROFILE").as_deref() != Ok("release")
        || std::env::var("BERTH_LINK_ORDER").as_deref() == Ok("0")
        || !Path::new(ORDER).exists()
    {
        return None;
    }
    let on_path = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default();
    let mut llvm: Vec<PathBuf> = std::fs::read_dir("/usr/lib")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("llvm-"))
        })
        .map(|p| p.join("bin"))
        .collect();
    // Newest first: llvm-19 before llvm-14.
    llvm.sort_by_key(|p| {
        let v = p
            .parent()
            .and_then(|d| d.file_name())
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_prefix("llvm-"))
            .and_then(|v| v.parse::<u32>().ok());
        std::cmp::Reverse(v)
    });
    let found = on_path.into_iter().chain(llvm).find(|dir| {
        let lld = dir.join("ld.lld");
        lld.is_file()
            && Command::new(&lld)
                .arg("--version")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
    });
    if found.is_none() {
        println!(
            "cargo:warning=ld.lld not found: berth is linked without its start-up ordering \
             (about 9 MB more resident at idle; Debian: apt install lld)"
        );
    }
    found
}
