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

/// Tables whose rows are business data: writing them without an `AuditedTx` bypasses the audit log.
const BUSINESS_TABLES: [&str; 22] = [
    "business",
    "settings",
    "branches",
    "locations",
    "registers",
    "roles",
    "role_permissions",
    "users",
    "user_roles",
    "user_mfa",
    "mfa_recovery_codes",
    "tax_classes",
    "categories",
    "products",
    "product_barcodes",
    "stock_levels",
    "stock_movements",
    "cash_sessions",
    "cash_movements",
    "receipt_counters",
    "sales",
    "sale_lines",
];

/// A source file that writes a business table must do so through the audited write path:
/// `AuditedTx`, or `AuditedStatement` for a write that is one statement.
#[test]
fn business_writes_go_through_the_audited_transaction() {
    let mut files = Vec::new();
    rust_files(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
        &mut files,
    );
    let mut offenders = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        let upper = text.to_uppercase();
        let writes_business = BUSINESS_TABLES.iter().any(|table| {
            let t = table.to_uppercase();
            [
                format!("INSERT INTO {t} "),
                format!("INSERT INTO {t}("),
                format!("UPDATE {t} "),
                format!("DELETE FROM {t} "),
            ]
            .iter()
            .any(|needle| upper.contains(needle.as_str()))
        });
        if writes_business && !text.contains("AuditedTx") && !text.contains("AuditedStatement") {
            offenders.push(file.display().to_string());
        }
        // Raw transactions outside the audit module and the security bookkeeping are suspicious.
        let allowed_raw = [
            "core/audit/",
            "core/auth/login.rs",
            "core/auth/mfa.rs",
            "core/db/",
            // Queue and schedule bookkeeping (jobs, schedule_runs: system tables).
            "core/jobs/schedule.rs",
            // The restore's database switch (ALTER DATABASE ... RENAME, no rows).
            "core/backup/restore.rs",
        ];
        if text.contains(".begin().await")
            && !allowed_raw
                .iter()
                .any(|a| file.to_string_lossy().contains(a))
        {
            offenders.push(format!("{} (opens a raw transaction)", file.display()));
        }
    }
    assert!(
        offenders.is_empty(),
        "business writes bypass the audited write path in {offenders:?}"
    );
}

/// A plug reaches another plug only through that plug's `api` module.
#[test]
fn plugs_use_each_other_only_through_their_api() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/plugs");
    let plugs: Vec<String> = std::fs::read_dir(&root)
        .unwrap()
        .flatten()
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(plugs.contains(&"administration".to_owned()));
    let mut offenders = Vec::new();
    for plug in &plugs {
        let mut files = Vec::new();
        rust_files(&root.join(plug), &mut files);
        for file in files {
            let text = std::fs::read_to_string(&file).unwrap();
            for other in plugs.iter().filter(|o| *o != plug) {
                for needle in [
                    format!("crate::plugs::{other}::"),
                    format!("plugpos::plugs::{other}::"),
                ] {
                    for (i, _) in text.match_indices(&needle) {
                        if !text[i + needle.len()..].starts_with("api") {
                            offenders
                                .push(format!("{} uses {other} outside its api", file.display()));
                        }
                    }
                }
            }
        }
    }
    assert!(offenders.is_empty(), "{offenders:?}");
}

/// ... and only when the using module declares a dependency on the module whose api it uses:
/// `crate::plugs::management::api::stock` in `operations/sales/` needs `operations.sales` to
/// depend on `management.stock`.
#[test]
fn plugs_use_only_the_apis_of_declared_dependencies() {
    let modules = plugpos::plugs::modules();
    let declared = |module: &str, dependency: &str| {
        modules
            .iter()
            .find(|m| m.id() == module)
            .is_some_and(|m| m.dependencies().iter().any(|d| d.id == dependency))
    };
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/plugs");
    let mut files = Vec::new();
    rust_files(&root, &mut files);
    let mut uses = 0;
    let mut offenders = Vec::new();
    for file in files {
        let relative = file.strip_prefix(&root).unwrap().to_path_buf();
        let parts: Vec<String> = relative
            .components()
            .map(|c| {
                c.as_os_str()
                    .to_string_lossy()
                    .trim_end_matches(".rs")
                    .to_owned()
            })
            .collect();
        // src/plugs/<plug>/<module>/...: the module that owns this file.
        let [plug, module, _, ..] = parts.as_slice() else {
            continue;
        };
        if module == "api" {
            continue;
        }
        let user = format!("{plug}.{module}");
        let text = std::fs::read_to_string(&file).unwrap();
        for (i, _) in text.match_indices("plugs::") {
            let rest = &text[i + "plugs::".len()..];
            let Some((other, rest)) = rest.split_once("::api::") else {
                continue;
            };
            if other == plug || other.contains(|c: char| !c.is_ascii_lowercase()) {
                continue;
            }
            // `api::stock` or `api::{catalog, stock}`.
            let names: Vec<&str> = match rest.strip_prefix('{') {
                Some(group) => group
                    .split('}')
                    .next()
                    .unwrap()
                    .split(',')
                    .map(|n| n.trim().split("::").next().unwrap().trim())
                    .filter(|n| !n.is_empty())
                    .collect(),
                None => vec![
                    rest.split(|c: char| !c.is_ascii_alphanumeric() && c != '_')
                        .next()
                        .unwrap(),
                ],
            };
            for name in names {
                uses += 1;
                let dependency = format!("{other}.{name}");
                if !declared(&user, &dependency) {
                    offenders.push(format!(
                        "{} uses {dependency} but {user} does not declare it",
                        file.display()
                    ));
                }
            }
        }
    }
    assert!(
        uses >= 2,
        "the scan found the known uses (sales -> catalog, stock)"
    );
    assert!(offenders.is_empty(), "{offenders:?}");
}
