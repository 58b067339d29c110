//! Only `meta` names the database crate: everything else in the registry
//! works through `MetaStore`, `AccountStore` and `CacheBook`.

fn rust_files(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read src").flatten() {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn only_meta_names_redb() {
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let meta = src.join("meta");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut naming = Vec::new();
    for f in files.iter().filter(|f| !f.starts_with(&meta)) {
        let text = std::fs::read_to_string(f).expect("read");
        let names_it = text.lines().any(|l| {
            let code = l.trim_start();
            !code.starts_with("//") && (code.starts_with("use redb") || code.contains("redb::"))
        });
        if names_it {
            naming.push(f.strip_prefix(&src).unwrap_or(f).display().to_string());
        }
    }
    assert!(naming.is_empty(), "redb named outside meta: {naming:?}");
}
