//! `src/ld-order.sh`, the linker release builds of berth run: a name of the
//! start-up list whose thin-LTO suffix (`.llvm.<hash>`) a later build no
//! longer has still places that build's function of the same name.
//!
//! A small Rust program stands in for berth: two functions whose symbols are
//! named as thin LTO names them, linked by rustc and an ordering file that
//! names them with other suffixes, the second first. Linked as build.rs
//! links berth (an `ld.bfd` on the driver's path that runs the script with
//! rustc's own `ld.lld`), the second comes first in the executable; linked
//! by rustc's lld alone, the file's names match nothing and the program's
//! order stands.

use std::path::{Path, PathBuf};
use std::process::Command;

const PROGRAM: &str = r#"
#[export_name = "early.llvm.1111"]
#[inline(never)]
pub extern "C" fn early() -> u32 { std::hint::black_box(1) }
#[export_name = "late.llvm.2222"]
#[inline(never)]
pub extern "C" fn late() -> u32 { std::hint::black_box(2) }
fn main() { std::process::exit((early() + late() != 3) as i32) }
"#;

/// The names an earlier build gave the two functions: `late` first.
const ORDER: &str = "late.llvm.9876543210\nearly.llvm.42\nmain\n";

fn rustc() -> String {
    std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into())
}

/// rustc's own `ld.lld` (rustup ships it beside the standard library), the
/// one build.rs prefers.
fn rustc_lld() -> PathBuf {
    let out = Command::new(rustc())
        .args(["--print", "sysroot"])
        .output()
        .expect("rustc --print sysroot");
    let sysroot = String::from_utf8(out.stdout).expect("utf-8");
    let lld =
        Path::new(sysroot.trim()).join("lib/rustlib/x86_64-unknown-linux-gnu/bin/gcc-ld/ld.lld");
    assert!(
        lld.is_file(),
        "no ld.lld at {} (rustup's toolchains carry one)",
        lld.display()
    );
    lld
}

/// Builds `PROGRAM` with `link_args` added and returns the addresses of
/// `early` and `late` in the executable.
fn link_and_locate(work: &Path, link_args: &[String], name: &str) -> (u64, u64) {
    let exe = work.join(name);
    let mut rustc = Command::new(rustc());
    rustc.args(["--edition", "2021", "-C", "opt-level=1"]);
    let order = work.join("order");
    for arg in link_args.iter().cloned().chain([
        format!("-Wl,--symbol-ordering-file={}", order.display()),
        "-Wl,--no-warn-symbol-ordering".into(),
    ]) {
        rustc.arg("-C").arg(format!("link-arg={arg}"));
    }
    let status = rustc
        .arg(work.join("program.rs"))
        .arg("-o")
        .arg(&exe)
        .status()
        .expect("rustc");
    assert!(status.success(), "rustc failed building {name}");
    assert!(Command::new(&exe).status().expect("run").success());
    let nm = Command::new("nm").arg(&exe).output().expect("nm");
    let text = String::from_utf8(nm.stdout).expect("utf-8");
    let at = |symbol: &str| {
        text.lines()
            .find_map(|l| {
                let mut f = l.split_whitespace();
                let addr = f.next()?;
                let name = f.nth(1)?;
                (name == symbol).then(|| u64::from_str_radix(addr, 16).expect("hex"))
            })
            .unwrap_or_else(|| panic!("{symbol} not in {name}"))
    };
    (at("early.llvm.1111"), at("late.llvm.2222"))
}

#[test]
fn renamed_functions_of_the_start_up_list_are_still_placed() {
    if !cfg!(all(
        target_os = "linux",
        target_env = "gnu",
        target_arch = "x86_64"
    )) {
        return;
    }
    let lld = rustc_lld();
    let work = tempfile::tempdir().expect("tmp");
    std::fs::write(work.path().join("program.rs"), PROGRAM).expect("write");
    std::fs::write(work.path().join("order"), ORDER).expect("write");

    // rustc's lld alone: the list's names are not this build's.
    let (early, late) = link_and_locate(work.path(), &[], "direct");
    assert!(
        early < late,
        "lld alone placed late ({late:#x}) before early ({early:#x})"
    );

    // Through the script, as build.rs sets it up.
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/ld-order.sh");
    let dir = work.path().join("driver");
    std::fs::create_dir(&dir).expect("mkdir");
    std::fs::write(
        dir.join("ld.bfd"),
        format!(
            "#!/bin/sh\nexec /bin/sh '{}' '{}' \"$@\"\n",
            script.display(),
            lld.display()
        ),
    )
    .expect("write");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir.join("ld.bfd"), std::fs::Permissions::from_mode(0o755))
        .expect("chmod");
    let args = [format!("-B{}", dir.display()), "-fuse-ld=bfd".to_string()];
    let (early, late) = link_and_locate(work.path(), &args, "matched");
    assert!(
        late < early,
        "late ({late:#x}) not placed before early ({early:#x})"
    );
    // The ordering file itself is left as it was.
    assert_eq!(
        std::fs::read_to_string(work.path().join("order")).expect("read"),
        ORDER
    );
}
