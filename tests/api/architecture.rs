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
/// `AuditedTx`, or `AuditedStatement` for a write that is one statement (and `AuditedPart` for a
/// module's part of another's statement), named in code rather than in a comment.
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
        // Named in code, not just in a comment.
        let code = without_comments(&text);
        let audited = ["AuditedTx", "AuditedStatement", "AuditedPart"];
        if writes_business && !audited.iter().any(|a| code.contains(a)) {
            offenders.push(file.display().to_string());
        }
        // Raw transactions outside the audit module and the security bookkeeping are suspicious.
        let allowed_raw = [
            "core/audit/",
            "core/auth/login.rs",
            "core/auth/mfa.rs",
            // Login-failure counters (login_attempts: a system table).
            "core/auth/throttle.rs",
            "core/db/",
            // Queue and schedule bookkeeping (jobs, schedule_runs: system tables).
            "core/jobs/schedule.rs",
            // The restore's database switch (ALTER DATABASE ... RENAME, no rows).
            "core/backup/restore.rs",
            // Report rollups: totals derived from the audited sales, rebuilt from them at will.
            "plugs/operations/sales/rollup.rs",
            // Webhook deliveries and their jobs, queued together (bookkeeping of events that were
            // audited where they happened).
            "core/webhooks/mod.rs",
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
        let parts = path_parts(&relative);
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
            // Within a plug too: sales use `operations::api::cash` only because they declare it.
            if other.contains(|c: char| !c.is_ascii_lowercase()) {
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
                if dependency != user && !declared(&user, &dependency) {
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

/// A Rust source without its comment lines.
fn without_comments(source: &str) -> String {
    source
        .lines()
        .filter(|line| !line.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The string literals of a Rust source, comments left out: where its SQL is.
fn string_literals(source: &str) -> Vec<String> {
    let code = without_comments(source);
    let mut literals = Vec::new();
    let chars: Vec<char> = code.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        match chars[i] {
            // A char literal such as '"' or '\"' is not the start of a string.
            '\'' if chars.get(i + 1) == Some(&'"') => i += 2,
            '\'' if chars.get(i + 1) == Some(&'\\') => i += 3,
            // A raw string: r"...", r#"..."#.
            'r' if matches!(chars.get(i + 1), Some('"' | '#'))
                && (i == 0 || !(chars[i - 1].is_alphanumeric() || chars[i - 1] == '_')) =>
            {
                let hashes = chars[i + 1..].iter().take_while(|c| **c == '#').count();
                let open = i + 1 + hashes;
                if chars.get(open) != Some(&'"') {
                    i += 1;
                    continue;
                }
                let close: String = std::iter::once('"')
                    .chain(std::iter::repeat_n('#', hashes))
                    .collect();
                let rest: String = chars[open + 1..].iter().collect();
                let end = rest.find(&close).unwrap_or(rest.len());
                literals.push(rest[..end].to_owned());
                i = open + 1 + rest[..end].chars().count() + close.chars().count();
            }
            '"' => {
                let mut literal = String::new();
                i += 1;
                while i < chars.len() {
                    match chars[i] {
                        '\\' => {
                            i += 1;
                            literal.push(' ');
                        }
                        '"' => break,
                        c => literal.push(c),
                    }
                    i += 1;
                }
                i += 1;
                literals.push(literal);
            }
            _ => i += 1,
        }
    }
    literals
}

/// The tables named in `source`'s SQL (`FROM`, `JOIN`, `INSERT INTO`, `UPDATE`, `DELETE FROM`,
/// `COPY`, `TRUNCATE`), among `known`. Not caught: a second table of a comma join, and a table
/// name built at run time.
fn tables_named(source: &str, known: &[String]) -> Vec<String> {
    let mut found = Vec::new();
    for literal in string_literals(source) {
        let words: Vec<String> = literal
            .split(|c: char| !c.is_ascii_alphanumeric() && c != '_')
            .filter(|w| !w.is_empty())
            .map(str::to_ascii_lowercase)
            .collect();
        for (i, word) in words.iter().enumerate() {
            let after_keyword = matches!(
                word.as_str(),
                "from" | "join" | "update" | "copy" | "truncate"
            ) || (word == "into" && i > 0 && words[i - 1] == "insert");
            if let Some(next) = words.get(i + 1).filter(|_| after_keyword)
                && known.contains(next)
                && !found.contains(next)
            {
                found.push(next.clone());
            }
        }
    }
    found
}

/// Who owns the tables: `core`, or the module whose manifest names them.
fn table_owners() -> std::collections::BTreeMap<String, String> {
    let mut owners = std::collections::BTreeMap::new();
    for table in plugpos::core::TABLES {
        owners.insert((*table).to_owned(), "core".to_owned());
    }
    for module in plugpos::plugs::modules() {
        for table in module.tables() {
            let earlier = owners.insert((*table).to_owned(), module.id().to_owned());
            assert!(
                earlier.is_none(),
                "{table} is claimed by {} and {earlier:?}",
                module.id()
            );
        }
    }
    owners
}

/// A relative path's folders and file name, without `.rs`.
fn path_parts(relative: &Path) -> Vec<String> {
    relative
        .components()
        .map(|c| {
            c.as_os_str()
                .to_string_lossy()
                .trim_end_matches(".rs")
                .to_owned()
        })
        .collect()
}

/// The owner of a source file: `core` under `src/core`; under `src/plugs/<plug>/<module>/` and
/// for `src/plugs/<plug>/api/<module>.rs`, the module `<plug>.<module>`.
fn file_owner(relative: &Path) -> Option<String> {
    match path_parts(relative).as_slice() {
        [src, core, ..] if src == "src" && core == "core" => Some("core".to_owned()),
        [src, plugs, plug, module, _, ..]
            if src == "src" && plugs == "plugs" && module != "api" =>
        {
            Some(format!("{plug}.{module}"))
        }
        [src, plugs, plug, api, module] if src == "src" && plugs == "plugs" && api == "api" => {
            Some(format!("{plug}.{module}"))
        }
        _ => None,
    }
}

/// The SQL in `source` (owned by `owner`) that names another owner's table.
fn foreign_tables(
    file: &str,
    owner: &str,
    source: &str,
    owners: &std::collections::BTreeMap<String, String>,
) -> Vec<String> {
    let known: Vec<String> = owners.keys().cloned().collect();
    tables_named(source, &known)
        .into_iter()
        .filter(|table| owners[table] != owner)
        .map(|table| {
            format!(
                "{file} ({owner}) names {table}, owned by {}",
                owners[&table]
            )
        })
        .collect()
}

#[test]
fn the_ownership_check_catches_a_cross_module_sql_read() {
    let owners = table_owners();
    let cash_reading_sales = r#"
        // FROM sales in a comment is not SQL.
        const TOTALS: &str = "SELECT sum(total) FROM sales WHERE cash_session_id = $1";
        let rows = sqlx::query("SELECT * FROM cash_movements m JOIN registers r ON r.id = $1");
    "#;
    assert_eq!(
        foreign_tables(
            "src/plugs/operations/cash/report.rs",
            "operations.cash",
            cash_reading_sales,
            &owners
        ),
        [
            "src/plugs/operations/cash/report.rs (operations.cash) names sales, owned by operations.sales",
            "src/plugs/operations/cash/report.rs (operations.cash) names registers, owned by administration.places",
        ]
    );
    let a_plug_writing_settings = "sqlx::query(\"UPDATE settings SET value = $1\")";
    assert_eq!(
        foreign_tables(
            "x.rs",
            "management.catalog",
            a_plug_writing_settings,
            &owners
        )
        .len(),
        1
    );
    let tricky = "let q = '\"'; let s = \"SELECT 1 FROM sales\"; let r = r#\"UPDATE stock_levels SET \"x\" = 1\"#;";
    assert_eq!(
        foreign_tables("x.rs", "operations.cash", tricky, &owners).len(),
        2,
        "a char literal and a raw string do not hide SQL"
    );
    let own_tables =
        "\"INSERT INTO cash_movements (id) VALUES ($1)\", \"DELETE FROM cash_sessions\"";
    assert!(foreign_tables("x.rs", "operations.cash", own_tables, &owners).is_empty());
}

/// Every table and view the migrations create has exactly one owner, and every claimed one exists.
#[test]
fn every_table_has_one_owner() {
    let owners = table_owners();
    let mut created = std::collections::BTreeSet::new();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations");
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let sql = std::fs::read_to_string(entry.path())
            .unwrap()
            .to_ascii_lowercase();
        let words: Vec<&str> = sql.split_whitespace().collect();
        for (i, word) in words.iter().enumerate() {
            if *word != "create" {
                continue;
            }
            let rest: Vec<&str> = words[i + 1..]
                .iter()
                .copied()
                .filter(|w| !matches!(*w, "or" | "replace" | "if" | "not" | "exists"))
                .take(2)
                .collect();
            if let [kind, name] = rest.as_slice()
                && matches!(*kind, "table" | "view")
            {
                created.insert(name.trim_end_matches(['(', ';']).to_owned());
            }
        }
    }
    let unowned: Vec<_> = created
        .iter()
        .filter(|t| !owners.contains_key(*t))
        .collect();
    assert!(unowned.is_empty(), "tables nobody owns: {unowned:?}");
    let missing: Vec<_> = owners.keys().filter(|t| !created.contains(*t)).collect();
    assert!(
        missing.is_empty(),
        "owned tables no migration creates: {missing:?}"
    );
}

/// A module's SQL names only its own tables; core's names only core's. Others' rows are
/// reached through their owner's `api` (plugs) or Rust API (core).
#[test]
fn sql_names_only_the_owners_tables() {
    let owners = table_owners();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    rust_files(&root.join("src"), &mut files);
    let mut offenders = Vec::new();
    let mut checked = 0;
    for file in files {
        let relative = file.strip_prefix(root).unwrap();
        let source = std::fs::read_to_string(&file).unwrap();
        let Some(owner) = file_owner(relative) else {
            // Files outside a module (plug roots, shared, main) hold no SQL.
            let known: Vec<String> = owners.keys().cloned().collect();
            for table in tables_named(&source, &known) {
                offenders.push(format!(
                    "{} names {table} but belongs to no module",
                    relative.display()
                ));
            }
            continue;
        };
        checked += 1;
        offenders.extend(foreign_tables(
            &relative.display().to_string(),
            &owner,
            &source,
            &owners,
        ));
    }
    assert!(checked > 50, "the scan found the sources ({checked})");
    assert!(offenders.is_empty(), "{offenders:#?}");
}

/// The functions of `source` longer than `limit` lines (signature to closing brace) whose
/// comment above them does not say why they stay whole, as `name (lines)`.
fn long_functions(source: &str, limit: usize) -> Vec<String> {
    let lines: Vec<&str> = source.lines().collect();
    let mut found = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i].trim_start();
        let signature = [
            "fn ",
            "pub fn ",
            "async fn ",
            "pub async fn ",
            "pub(crate) fn ",
            "pub(crate) async fn ",
        ]
        .iter()
        .find_map(|p| line.strip_prefix(p));
        let Some(rest) = signature else {
            i += 1;
            continue;
        };
        let name: String = rest
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        // The body: from the first `{` to the brace that closes it (a `;` first: no body).
        let (mut depth, mut opened, mut end) = (0i32, false, i);
        'scan: for (j, text) in lines.iter().enumerate().skip(i) {
            for c in text.chars() {
                match c {
                    '{' => (depth, opened) = (depth + 1, true),
                    '}' => depth -= 1,
                    ';' if !opened => break 'scan,
                    _ => {}
                }
                if opened && depth == 0 {
                    end = j;
                    break 'scan;
                }
            }
        }
        let length = end + 1 - i;
        if opened && length > limit {
            let comment: String = lines[..i]
                .iter()
                .rev()
                .take_while(|l| {
                    let l = l.trim_start();
                    l.starts_with("//") || l.starts_with("#[")
                })
                .copied()
                .collect();
            if !comment.contains("Stays whole") {
                found.push(format!("{name} ({length} lines)"));
            }
        }
        i = end.max(i) + 1;
    }
    found
}

#[test]
fn the_length_check_finds_a_long_function_without_a_reason() {
    let body = "    step();\n".repeat(101);
    let long = format!("fn long() {{\n{body}}}\n");
    assert_eq!(long_functions(&long, 100), ["long (103 lines)"]);
    let explained = format!("/// Stays whole: one pass.\n{long}");
    assert!(long_functions(&explained, 100).is_empty());
    assert!(long_functions("fn short() {\n    step();\n}\nfn declared();\n", 100).is_empty());
}

/// No function in `src/` runs past 100 lines without a comment saying why it stays whole.
#[test]
fn long_functions_say_why_they_stay_whole() {
    let mut files = Vec::new();
    rust_files(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
        &mut files,
    );
    let mut offenders = Vec::new();
    for file in files {
        let source = std::fs::read_to_string(&file).unwrap();
        for function in long_functions(&source, 100) {
            offenders.push(format!("{}: {function}", file.display()));
        }
    }
    assert!(offenders.is_empty(), "{offenders:#?}");
}

/// The core files by path under `src/core` (`auth/login.rs`), comments left out.
fn core_files() -> std::collections::BTreeMap<String, String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/core");
    let mut files = Vec::new();
    rust_files(&root, &mut files);
    files
        .into_iter()
        .map(|f| {
            let relative = f.strip_prefix(&root).unwrap().display().to_string();
            (
                relative,
                without_comments(&std::fs::read_to_string(&f).unwrap()),
            )
        })
        .collect()
}

/// The node of a core file in the layered graph: `<capability>` for its own code, and
/// `<capability>::http` for a file that declares HTTP operations (`#[utoipa::path`), so a
/// capability's handlers may use what other capabilities' code offers (the caller's identity)
/// without the capability itself depending on them.
fn core_node(files: &std::collections::BTreeMap<String, String>, file: &str) -> Option<String> {
    let capability = file.split('/').next()?.trim_end_matches(".rs");
    if capability == "mod" {
        return None;
    }
    let http = files
        .get(file)
        .is_some_and(|t| t.contains("#[utoipa::path"));
    Some(format!("{capability}{}", if http { "::http" } else { "" }))
}

/// The file a path `crate::core::<capability>[::<item>]` names: the item's own file when it is
/// one, else the capability's root file.
fn core_file_of(
    files: &std::collections::BTreeMap<String, String>,
    capability: &str,
    item: Option<&str>,
) -> Option<String> {
    let candidates = item
        .map(|i| {
            vec![
                format!("{capability}/{i}.rs"),
                format!("{capability}/{i}/mod.rs"),
            ]
        })
        .unwrap_or_default()
        .into_iter()
        .chain([format!("{capability}/mod.rs"), format!("{capability}.rs")]);
    candidates.into_iter().find(|c| files.contains_key(c))
}

/// The edges between core's nodes, each with the files that make it.
fn core_edges() -> std::collections::BTreeMap<(String, String), Vec<String>> {
    let files = core_files();
    let mut edges: std::collections::BTreeMap<(String, String), Vec<String>> = Default::default();
    for (file, text) in &files {
        let Some(from) = core_node(&files, file) else {
            continue;
        };
        let capability = file.split('/').next().unwrap().trim_end_matches(".rs");
        let mut targets = Vec::new();
        for (i, _) in text.match_indices("crate::core::") {
            let rest = &text[i + "crate::core::".len()..];
            let word = |s: &str| -> String {
                s.chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect()
            };
            if let Some(group) = rest.strip_prefix('{') {
                for name in group.split('}').next().unwrap_or("").split(',') {
                    let name = word(name.trim());
                    targets.extend(core_file_of(&files, &name, None));
                }
            } else {
                let name = word(rest);
                let item = rest[name.len()..].strip_prefix("::").map(word);
                targets.extend(core_file_of(&files, &name, item.as_deref()));
            }
        }
        for (i, _) in text.match_indices("super::") {
            let item: String = text[i + "super::".len()..]
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            targets.extend(
                core_file_of(&files, capability, Some(&item))
                    .filter(|f| files.contains_key(f) && f != &format!("{capability}/mod.rs")),
            );
        }
        for target in targets {
            if let Some(to) = core_node(&files, &target).filter(|to| *to != from) {
                let users = edges.entry((from.clone(), to)).or_default();
                if !users.contains(file) {
                    users.push(file.clone());
                }
            }
        }
    }
    edges
}

/// A cycle of the graph, if it has one (its nodes in order, the first again at the end).
fn find_cycle(edges: &[(String, String)]) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        edges: &[(String, String)],
        path: &mut Vec<String>,
        done: &mut std::collections::BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|n| n == node) {
            let mut cycle = path[at..].to_vec();
            cycle.push(node.to_owned());
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_owned());
        for (_, to) in edges.iter().filter(|(from, _)| from == node) {
            if let Some(cycle) = visit(to, edges, path, done) {
                return Some(cycle);
            }
        }
        path.pop();
        done.insert(node.to_owned());
        None
    }
    let mut done = std::collections::BTreeSet::new();
    edges
        .iter()
        .find_map(|(from, _)| visit(from, edges, &mut Vec::new(), &mut done))
}

#[test]
fn the_cycle_check_finds_a_cycle_between_capabilities() {
    let edge = |a: &str, b: &str| (a.to_owned(), b.to_owned());
    let layered = [
        edge("auth::http", "auth"),
        edge("auth", "audit"),
        edge("audit::http", "auth"),
        edge("audit", "http"),
    ];
    assert_eq!(find_cycle(&layered), None);
    let tangled = [
        edge("auth", "audit"),
        edge("audit", "state"),
        edge("state", "auth"),
    ];
    assert_eq!(
        find_cycle(&tangled).unwrap(),
        ["auth", "audit", "state", "auth"]
    );
}

/// Core's capabilities form no cycle: each capability's own code, and its HTTP handlers above it,
/// are nodes; `http` (the primitives) is at the bottom; `server`, `cli` and `console` are the top, which
/// assemble the rest.
#[test]
fn core_has_no_cycle_between_capabilities() {
    let edges = core_edges();
    let pairs: Vec<(String, String)> = edges.keys().cloned().collect();
    if let Some(cycle) = find_cycle(&pairs) {
        let why: Vec<String> = cycle
            .windows(2)
            .map(|w| {
                format!(
                    "{} -> {} ({:?})",
                    w[0],
                    w[1],
                    edges[&(w[0].clone(), w[1].clone())]
                )
            })
            .collect();
        panic!("core has a cycle: {}", why.join("; "));
    }
    let upward: Vec<String> = edges
        .iter()
        .filter(|((from, to), _)| {
            to.ends_with("::http")
                && !from.ends_with("::http")
                // The admin console is, like the server and the CLI, a front over the
                // capabilities: its actions call the API's own handlers (issue 36).
                && !["server", "cli", "console"].contains(&from.as_str())
        })
        .map(|((from, to), files)| format!("{from} -> {to} {files:?}"))
        .collect();
    assert!(
        upward.is_empty(),
        "capability code imports handlers: {upward:?}"
    );
    let from_primitives: Vec<&(String, String)> =
        edges.keys().filter(|(from, _)| from == "http").collect();
    assert!(
        from_primitives.is_empty(),
        "the HTTP primitives import {from_primitives:?}"
    );
    assert!(
        edges.len() > 40,
        "the scan found core's imports ({})",
        edges.len()
    );
}
