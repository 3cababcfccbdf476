//! The dependency direction of the modular monolith: plugs -> core -> shared.

use std::path::Path;

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

fn offenders(dir: &str, forbidden: &[&str]) -> Vec<String> {
    let mut files = Vec::new();
    rust_files(&Path::new(env!("CARGO_MANIFEST_DIR")).join(dir), &mut files);
    assert!(!files.is_empty(), "no sources under {dir}");
    files
        .iter()
        .filter(|f| {
            let text = std::fs::read_to_string(f).unwrap();
            forbidden.iter().any(|needle| text.contains(needle))
        })
        .map(|f| f.display().to_string())
        .collect()
}

#[test]
fn core_never_imports_a_plug() {
    let found = offenders("src/core", &["crate::plugs", "plugpos::plugs"]);
    assert!(found.is_empty(), "core imports plugs in {found:?}");
}

#[test]
fn shared_imports_neither_core_nor_plugs() {
    let found = offenders("src/shared", &["crate::core", "crate::plugs"]);
    assert!(found.is_empty(), "shared depends outward in {found:?}");
}
