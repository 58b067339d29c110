//! Keeps the crate free of import cycles: every module may import only the
//! modules listed after it in the crate documentation (lib.rs).

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// The modules named by the bullets of lib.rs's documentation, top to bottom.
fn documented_order(lib: &str) -> Vec<String> {
    lib.lines()
        .filter_map(|l| l.strip_prefix("//! - `"))
        .filter_map(|l| l.split_once('`').map(|(name, _)| name.to_string()))
        .collect()
}

/// Names lib.rs re-exports at the root (`crate::ControllerState`), by module.
fn root_reexports(lib: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut rest = lib;
    while let Some(i) = rest.find("\npub use ") {
        rest = &rest[i + "\npub use ".len()..];
        let end = rest.find(';').unwrap_or(rest.len());
        let stmt = &rest[..end];
        if let Some((module, names)) = stmt.split_once("::") {
            for name in names.split(|c: char| !(c.is_alphanumeric() || c == '_')) {
                if !name.is_empty() {
                    out.insert(name.to_string(), module.to_string());
                }
            }
        }
    }
    out
}

/// The first path segment after every `crate::` in `text`, also inside
/// `crate::{a::X, b}` groups.
fn crate_paths(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = text;
    while let Some(i) = rest.find("crate::") {
        rest = &rest[i + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let end = group.find('}').unwrap_or(group.len());
            for item in group[..end].split(',') {
                let name: String = item
                    .trim()
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                if !name.is_empty() {
                    out.insert(name);
                }
            }
        } else {
            let name: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            out.insert(name);
        }
    }
    out
}

fn rust_files(path: &Path, out: &mut Vec<PathBuf>) {
    if path.is_dir() {
        let mut entries: Vec<PathBuf> = fs::read_dir(path)
            .expect("read source directory")
            .map(|e| e.expect("directory entry").path())
            .collect();
        entries.sort();
        for e in entries {
            rust_files(&e, out);
        }
    } else if path.extension().is_some_and(|e| e == "rs") {
        out.push(path.to_path_buf());
    }
}

#[test]
fn modules_import_only_modules_below_them() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let lib = fs::read_to_string(src.join("lib.rs")).expect("lib.rs");
    let order = documented_order(&lib);
    let rank: BTreeMap<&str, usize> = order
        .iter()
        .enumerate()
        .map(|(i, m)| (m.as_str(), i))
        .collect();
    let reexports = root_reexports(&lib);
    let mut problems = Vec::new();
    for entry in fs::read_dir(&src).expect("src") {
        let path = entry.expect("entry").path();
        let Some(module) = path.file_stem().and_then(|s| s.to_str()) else {
            continue;
        };
        if module == "lib" || module == "module_order" {
            continue;
        }
        let Some(&mine) = rank.get(module) else {
            problems.push(format!("module {module} is not in lib.rs's module list"));
            continue;
        };
        let mut files = Vec::new();
        rust_files(&path, &mut files);
        for file in files {
            let text = fs::read_to_string(&file).expect("source");
            let shown = file.strip_prefix(&src).unwrap_or(&file).display();
            for name in crate_paths(&text) {
                let target = reexports.get(&name).cloned().unwrap_or(name);
                match rank.get(target.as_str()) {
                    Some(&theirs) if theirs > mine || target == module => {}
                    Some(_) => problems.push(format!(
                        "{shown} imports crate::{target}, which lib.rs lists above {module}"
                    )),
                    None => problems.push(format!(
                        "{shown} imports crate::{target}, which lib.rs does not list"
                    )),
                }
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
