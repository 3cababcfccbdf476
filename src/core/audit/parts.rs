//! Audited statements composed of parts that modules own, and the `after` JSON of their records.
//!
//! A part is CTE text whose own parameters are numbered `$1..=$n` within the part, and which
//! refers to the statement's record time as `$now`. [`compose`] renumbers every part's
//! parameters after those of the parts before it (`$now` is the statement's `$1`), and checks
//! that each part uses exactly the parameters it declares and defines exactly the CTEs it
//! declares. So adding a column to one part cannot shift another's parameters, and a part that
//! forgets to declare a new parameter fails the statement's composition (the sales writer's at startup: `Module::install`).
//! The caller binds the time, then each part's parameters in its own order.

/// CTEs one module offers to an audited statement (stock's part that takes a sale's goods off
/// the shelf, cash's part that share-locks open sessions, a plug's own rows). The type says
/// where the text may go: into an [`AuditedStatement`](super::AuditedStatement), whose records
/// commit with it.
#[derive(Debug, Clone, Copy)]
pub struct AuditedPart {
    ctes: &'static str,
    params: usize,
    defines: &'static [&'static str],
    reads: &'static [&'static str],
}

impl AuditedPart {
    /// `ctes` uses its own parameters `$1..=$params` (and `$now`) and defines the CTEs `defines`.
    pub const fn new(
        ctes: &'static str,
        params: usize,
        defines: &'static [&'static str],
    ) -> AuditedPart {
        AuditedPart {
            ctes,
            params,
            defines,
            reads: &[],
        }
    }

    /// The CTEs of earlier parts this one reads (`stock_in`, which the caller must define).
    pub const fn reading(self, reads: &'static [&'static str]) -> AuditedPart {
        AuditedPart { reads, ..self }
    }

    /// How many parameters the caller binds for this part.
    pub fn params(self) -> usize {
        self.params
    }
}

/// The parts' CTEs, in order, with their parameters renumbered for one statement: `$now`
/// becomes `$1`, the first part's `$k` becomes `$(1 + k)`, the next part's start after those.
///
/// # Panics
/// When a part uses a parameter it does not declare or leaves one unused, or its text does not
/// define a CTE it declares, or two parts define the same CTE, or a part reads (`FROM`, `JOIN`)
/// another part's CTE it does not declare, or one that no earlier part defines: a composition
/// error is a bug of the statement's text, found at its first use.
pub fn compose(parts: &[AuditedPart]) -> String {
    let mut out = Vec::with_capacity(parts.len());
    let mut offset = 1;
    let mut defined: Vec<&str> = Vec::new();
    let every: Vec<&str> = parts
        .iter()
        .flat_map(|p| p.defines.iter().copied())
        .collect();
    for part in parts {
        for name in read_ctes(part.ctes, &every) {
            assert!(
                part.defines.contains(&name) || part.reads.contains(&name),
                "a part reads the CTE {name} without declaring it: {}",
                part.ctes
            );
        }
        for name in part.reads {
            assert!(
                defined.contains(name),
                "a part reads the CTE {name}, which no earlier part defines"
            );
        }
        let (text, used) = renumber(part.ctes, offset);
        let expected: Vec<usize> = (1..=part.params).collect();
        assert_eq!(
            used, expected,
            "a part uses parameters {used:?} but declares {}: {}",
            part.params, part.ctes
        );
        for name in part.defines {
            assert!(
                part.ctes.starts_with(&format!("{name} AS ("))
                    || part.ctes.contains(&format!(" {name} AS (")),
                "a part declares the CTE {name} but does not define it"
            );
            assert!(!defined.contains(name), "two parts define the CTE {name}");
            defined.push(name);
        }
        out.push(text);
        offset += part.params;
    }
    out.join(", ")
}

/// The names among `ctes` that `text` reads (after `FROM` or `JOIN`).
fn read_ctes<'a>(text: &str, ctes: &[&'a str]) -> Vec<&'a str> {
    let words: Vec<String> = text
        .split(|c: char| !c.is_ascii_alphanumeric() && c != '_')
        .filter(|w| !w.is_empty())
        .map(str::to_ascii_lowercase)
        .collect();
    let mut found = Vec::new();
    for pair in words.windows(2) {
        if matches!(pair[0].as_str(), "from" | "join")
            && let Some(name) = ctes.iter().find(|c| **c == pair[1])
            && !found.contains(name)
        {
            found.push(*name);
        }
    }
    found
}

/// `text` with `$now` as `$1` and each `$k` as `$(offset + k)`; and the sorted, distinct `k` used.
fn renumber(text: &str, offset: usize) -> (String, Vec<usize>) {
    let mut out = String::with_capacity(text.len() + 16);
    let mut used = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        if let Some(tail) = after.strip_prefix("now") {
            out.push_str("$1");
            rest = tail;
            continue;
        }
        let digits = after.bytes().take_while(u8::is_ascii_digit).count();
        match after[..digits].parse::<usize>() {
            Ok(k) => {
                out.push_str(&format!("${}", offset + k));
                used.push(k);
            }
            Err(_) => out.push('$'),
        }
        rest = &after[digits..];
    }
    out.push_str(rest);
    used.sort_unstable();
    used.dedup();
    (out, used)
}

/// A value of a record's `after` JSON that the statement computes.
#[derive(Debug, Clone, Copy)]
pub enum SqlJson<'a> {
    /// Any text: a JSON string through `to_json` (escaped by PostgreSQL).
    Text(&'a str),
    /// Text that needs no escaping (a UUID, a decimal number): a JSON string, quoted as is.
    Plain(&'a str),
    /// A number or boolean, as is.
    Number(&'a str),
    /// JSON text the statement built (an [`object`] or [`array`]).
    Json(&'a str),
}

impl SqlJson<'_> {
    /// The SQL expression of `,"name":<value>` (or without the comma for the first field).
    fn member(self, name: &str, first: bool) -> String {
        let comma = if first { "" } else { "," };
        match self {
            SqlJson::Text(e) => format!("'{comma}\"{name}\":' || to_json({e})::text"),
            SqlJson::Plain(e) => format!("'{comma}\"{name}\":\"' || {e} || '\"'"),
            SqlJson::Number(e) | SqlJson::Json(e) => format!("'{comma}\"{name}\":' || {e}"),
        }
    }
}

/// The SQL expression of a record's whole `after`: `open`, an expression holding an object that
/// Rust serialized without its closing brace ([`open_object`]), followed by `fields`. The
/// request's part is serialized once in Rust; the statement adds what only it learns.
pub fn after_json(open: &str, fields: &[(&str, SqlJson<'_>)]) -> String {
    let mut sql = open.to_owned();
    for (name, value) in fields {
        sql.push_str(" || ");
        sql.push_str(&value.member(name, false));
    }
    sql.push_str(" || '}'");
    sql
}

/// The SQL expression of a JSON object of `fields`.
pub fn object(fields: &[(&str, SqlJson<'_>)]) -> String {
    let members: Vec<String> = fields
        .iter()
        .enumerate()
        .map(|(i, (name, value))| value.member(name, i == 0))
        .collect();
    format!("'{{' || {} || '}}'", members.join(" || "))
}

/// The SQL expression of a JSON array of `element` (an expression, usually an [`object`]) over
/// the rows of `from` (`FROM ... WHERE ...`), in `order`; empty when there are none.
pub fn array(element: &str, order: &str, from: &str) -> String {
    format!(
        "'[' || COALESCE((SELECT string_agg({element}, ',' ORDER BY {order}) {from}), '') || ']'"
    )
}

/// `object` as JSON text without its closing brace, for a statement to add fields to
/// ([`after_json`]).
///
/// # Panics
/// When `object` is not a non-empty JSON object (a caller's bug).
pub fn open_object(object: &serde_json::Value) -> String {
    let mut text = object.to_string();
    assert!(
        object.as_object().is_some_and(|o| !o.is_empty()),
        "a non-empty object"
    );
    text.pop();
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_are_numbered_after_the_parts_before_them() {
        let a = AuditedPart::new("a AS (SELECT $1, $2, $now)", 2, &["a"]);
        let b = AuditedPart::new(
            "b AS (SELECT $1 FROM a), c AS (SELECT $now)",
            1,
            &["b", "c"],
        )
        .reading(&["a"]);
        assert_eq!(
            compose(&[a, b]),
            "a AS (SELECT $2, $3, $1), b AS (SELECT $4 FROM a), c AS (SELECT $1)"
        );
    }

    #[test]
    #[should_panic(expected = "declares 1")]
    fn a_part_that_uses_an_undeclared_parameter_is_refused() {
        compose(&[AuditedPart::new("a AS (SELECT $1, $2)", 1, &["a"])]);
    }

    #[test]
    #[should_panic(expected = "reads the CTE a without declaring it")]
    fn a_part_must_declare_what_it_reads() {
        let a = AuditedPart::new("a AS (SELECT 1)", 0, &["a"]);
        let b = AuditedPart::new("b AS (SELECT * FROM a)", 0, &["b"]);
        compose(&[a, b]);
    }

    #[test]
    #[should_panic(expected = "which no earlier part defines")]
    fn a_part_reads_only_what_came_before() {
        let b = AuditedPart::new("b AS (SELECT * FROM a)", 0, &["b"]).reading(&["a"]);
        let a = AuditedPart::new("a AS (SELECT 1)", 0, &["a"]);
        compose(&[b, a]);
    }

    #[test]
    #[should_panic(expected = "two parts define the CTE a")]
    fn two_parts_cannot_define_the_same_cte() {
        let a = AuditedPart::new("a AS (SELECT 1)", 0, &["a"]);
        compose(&[a, a]);
    }

    #[test]
    fn the_after_json_closes_what_rust_opened() {
        let open = open_object(&serde_json::json!({"a": 1}));
        assert_eq!(open, "{\"a\":1");
        let stock = array(
            &object(&[
                ("id", SqlJson::Plain("s.id")),
                ("n", SqlJson::Number("s.n")),
            ]),
            "s.ord",
            "FROM s",
        );
        assert_eq!(
            after_json(
                "w.base",
                &[
                    ("number", SqlJson::Text("w.number")),
                    ("stock", SqlJson::Json(&stock))
                ]
            ),
            "w.base || ',\"number\":' || to_json(w.number)::text || ',\"stock\":' || '[' || \
             COALESCE((SELECT string_agg('{' || '\"id\":\"' || s.id || '\"' || ',\"n\":' || s.n || '}', ',' \
             ORDER BY s.ord) FROM s), '') || ']' || '}'"
        );
    }
}
