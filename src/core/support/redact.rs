//! Redaction for the support bundle. Two nets, both always on:
//! - the secrets this instance holds are known by value (the key files, the setup token, the
//!   database URLs' passwords, backup target credentials, `PLUGPOS_*` values named like secrets)
//!   and replaced wherever they appear;
//! - shapes that are secrets whoever's they are: a value under a key named like a secret (in
//!   JSON, `key=value` or `key: value`), a bearer token, a JWT, an age identity, a URL's password,
//!   an `otpauth://` secret, SQL's `PASSWORD '...'`.

use std::path::Path;
use std::sync::LazyLock;

use regex::Regex;
use secrecy::ExposeSecret;
use serde_json::Value;

use crate::core::config::Config;

/// What stands in for a secret.
pub const REDACTED: &str = "[REDACTED]";

/// Known secrets shorter than this are not searched for (they would match ordinary text).
const SHORTEST_SECRET: usize = 8;

/// Does a key's name say its value is secret? (A duration or count named after a token, such as
/// `access_token_minutes`, is not.)
pub fn secret_name(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    if [
        "_minutes",
        "_secs",
        "_seconds",
        "_hours",
        "_days",
        "_count",
        "_bytes",
        "_failures",
    ]
    .iter()
    .any(|unit| name.ends_with(unit))
    {
        return false;
    }
    [
        "password",
        "passwd",
        "passphrase",
        "secret",
        "token",
        "authorization",
        "cookie",
        "credential",
        "private",
        "identity",
        "totp",
        "seed",
        "api_key",
        "apikey",
        "access_key",
        "signing",
        "recovery_code",
    ]
    .iter()
    .any(|word| name.contains(word))
        || ["key", "pin"].contains(&name.as_str())
        || name.ends_with("_key")
        || name.ends_with(".key")
        || name.ends_with("_pin")
}

static SHAPES: LazyLock<Vec<(Regex, &'static str)>> = LazyLock::new(|| {
    let rules: [(&str, &str); 9] = [
        // An API key or a till's device credential, anywhere (`core::integrations`, `core::devices`).
        (r"\b(pk|pdt)_[A-Za-z0-9_-]{20,}", "$1_[REDACTED]"),
        // A bearer (or basic) credential in a header, logged or pasted.
        (
            r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]{8,}",
            "$1 [REDACTED]",
        ),
        // A JWT anywhere.
        (
            r"\beyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*",
            "[REDACTED]",
        ),
        // An age identity.
        (r"AGE-SECRET-KEY-1[0-9A-Z]+", "[REDACTED]"),
        // user:password@ in any URL.
        (
            r"(?i)([a-z][a-z0-9+.-]*://[^:/@\s]*):[^@/\s]+@",
            "$1:[REDACTED]@",
        ),
        // password=... in a URL's query or a libpq keyword string.
        (
            r#"(?i)\b(password|sslpassword|secret|token)=[^&\s"']+"#,
            "$1=[REDACTED]",
        ),
        // SQL: CREATE/ALTER ROLE ... PASSWORD '...'.
        (r"(?i)\bpassword\s+'[^']*'", "PASSWORD '[REDACTED]'"),
        // "key": "value" inside text (JSON logged as a string, escaped or not) where the key is
        // named like a secret.
        (
            r#"(?i)(\\?"[a-z0-9_.-]*(?:password|passwd|passphrase|secret|token|credential|private_key|api_key|totp|pin)[a-z0-9_.-]*\\?"\s*:\s*)\\?"(?:[^"\\]|\\[^"])*\\?""#,
            "$1\"[REDACTED]\"",
        ),
        // key: value / key = value where the key is named like a secret (plain-text lines).
        (
            r#"(?i)\b([a-z0-9_.-]*(?:password|passwd|passphrase|secret|token|credential|private_key|api_key|totp)[a-z0-9_.-]*)(\s*[:=]\s*)("[^"]*"|'[^']*'|[^\s,;&"']+)"#,
            "$1$2[REDACTED]",
        ),
    ];
    rules
        .into_iter()
        .filter_map(|(pattern, replacement)| Regex::new(pattern).ok().map(|r| (r, replacement)))
        .collect()
});

/// The secrets of one instance, and the redaction that removes them.
#[derive(Default)]
pub struct Redactor {
    known: Vec<String>,
}

impl Redactor {
    /// Gathers the secrets `config` and the data directory hold (what cannot be read is skipped).
    pub fn for_instance(config: &Config, data_dir: &Path) -> Redactor {
        let mut known = Vec::new();
        let keys = data_dir.join("keys");
        for entry in std::fs::read_dir(&keys).into_iter().flatten().flatten() {
            if let Ok(text) = std::fs::read_to_string(entry.path()) {
                known.extend(
                    text.lines()
                        .map(str::trim)
                        .filter(|l| !l.is_empty() && !l.starts_with('#'))
                        .map(str::to_owned),
                );
            }
        }
        if let Ok(token) = std::fs::read_to_string(data_dir.join("setup-token")) {
            known.push(token.trim().to_owned());
        }
        for url in [&config.database.url, &config.database.owner_url]
            .into_iter()
            .flatten()
        {
            if let Some(password) = url_password(url.expose_secret()) {
                known.push(password);
            }
        }
        for target in &config.backup.targets {
            if let Some(file) = &target.credentials_file
                && let Ok(text) = std::fs::read_to_string(file)
                && let Ok(table) = text.parse::<toml::Table>()
            {
                known.extend(table.values().filter_map(|v| v.as_str()).map(str::to_owned));
            }
        }
        for (name, value) in std::env::vars() {
            if name.starts_with("PLUGPOS_") && (secret_name(&name) || name.ends_with("URL")) {
                known.push(url_password(&value).unwrap_or(value));
            }
        }
        Redactor::with_known(known)
    }

    /// Also removes the credentials of these backup targets (from their credentials files).
    pub fn learn_targets(&mut self, targets: &[crate::core::config::backup_target::Target]) {
        let mut known = std::mem::take(&mut self.known);
        for target in targets {
            if let Some(file) = &target.credentials_file
                && let Ok(text) = std::fs::read_to_string(file)
                && let Ok(table) = text.parse::<toml::Table>()
            {
                known.extend(table.values().filter_map(|v| v.as_str()).map(str::to_owned));
            }
        }
        *self = Redactor::with_known(known);
    }

    /// A redactor that also removes each of `known` by value.
    pub fn with_known(known: impl IntoIterator<Item = String>) -> Redactor {
        let mut known: Vec<String> = known
            .into_iter()
            .map(|s| s.trim().to_owned())
            .filter(|s| s.len() >= SHORTEST_SECRET)
            .collect();
        // Longest first: a secret containing another is removed whole.
        known.sort_by_key(|s| std::cmp::Reverse(s.len()));
        known.dedup();
        Redactor { known }
    }

    /// Text with every secret replaced.
    pub fn text(&self, text: &str) -> String {
        let mut out = text.to_owned();
        for secret in &self.known {
            if out.contains(secret.as_str()) {
                out = out.replace(secret.as_str(), REDACTED);
            }
        }
        for (shape, replacement) in SHAPES.iter() {
            if shape.is_match(&out) {
                out = shape.replace_all(&out, *replacement).into_owned();
            }
        }
        out
    }

    /// A JSON value with every value under a secret-named key replaced, and every string redacted.
    pub fn json(&self, value: &Value) -> Value {
        match value {
            Value::Object(map) => Value::Object(
                map.iter()
                    .map(|(k, v)| {
                        let v = if secret_name(k) && !v.is_null() {
                            Value::from(REDACTED)
                        } else {
                            self.json(v)
                        };
                        (k.clone(), v)
                    })
                    .collect(),
            ),
            Value::Array(items) => Value::Array(items.iter().map(|v| self.json(v)).collect()),
            Value::String(s) => Value::String(self.text(s)),
            other => other.clone(),
        }
    }

    /// One log line: JSON lines by key and value, other lines as text.
    pub fn log_line(&self, line: &str) -> String {
        match serde_json::from_str::<Value>(line) {
            Ok(value @ Value::Object(_)) => self.json(&value).to_string(),
            _ => self.text(line),
        }
    }
}

/// The password of a `scheme://user:password@host` URL.
fn url_password(url: &str) -> Option<String> {
    let rest = url.split_once("://")?.1;
    let userinfo = rest.split('@').next().filter(|_| rest.contains('@'))?;
    let password = userinfo.split_once(':')?.1;
    (!password.is_empty()).then(|| password.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_are_redacted_whoever_owns_them() {
        let r = Redactor::default();
        for (input, gone) in [
            ("Authorization: Bearer abcdefgh.ijklmnop.qrstuv", "abcdefgh"),
            (
                "token eyJhbGciOiJI.eyJzdWIiOiIx.c2lnbmF0dXJl here",
                "eyJzdWIiOiIx",
            ),
            ("AGE-SECRET-KEY-1QQPQQZQZ2S3QZQ5", "QQPQQZQZ"),
            (
                "curl -H 'X-Device-Token: pdt_Zm9vYmFyYmF6cXV4cXV1eHF1dXhxdXV4cXV1eA'",
                "Zm9vYmFy",
            ),
            (
                "key pk_Zm9vYmFyYmF6cXV4cXV1eHF1dXhxdXV4cXV1eA in a note",
                "Zm9vYmFy",
            ),
            (
                "postgres://shop:hunter2hunter2@db.local/pos",
                "hunter2hunter2",
            ),
            (
                "host=/run dbname=pos password=hunter2hunter2",
                "hunter2hunter2",
            ),
            (
                "ALTER ROLE plugpos_app PASSWORD 'hunter2hunter2'",
                "hunter2hunter2",
            ),
            (
                "otpauth://totp/Shop:ann?secret=JBSWY3DPEHPK3PXP&issuer=Shop",
                "JBSWY3DPEHPK3PXP",
            ),
            ("admin_password = \"correct horse\"", "correct horse"),
            ("s3 secret_access_key: abc123def456", "abc123def456"),
            (
                r#"body "{\"password\":\"hunter2 hunter2\",\"user\":\"ann\"}""#,
                "hunter2",
            ),
            (
                r#"payload {"api_token": "tok-123456789"} sent"#,
                "tok-123456789",
            ),
        ] {
            let out = r.text(input);
            assert!(!out.contains(gone), "{input} -> {out}");
            assert!(out.contains(REDACTED), "{input} -> {out}");
        }
        assert_eq!(r.text("sold 2 pens for 5.00"), "sold 2 pens for 5.00");
    }

    #[test]
    fn json_values_under_secret_names_and_known_values_go() {
        let r = Redactor::with_known(["s3cr3t-value-known".to_owned(), "short".to_owned()]);
        let line = r#"{"fields":{"message":"login s3cr3t-value-known","password":"pw","totp_code":"123456","idempotency_key":"k-1","user":"ann"},"level":"INFO"}"#;
        let out: Value = serde_json::from_str(&r.log_line(line)).unwrap();
        assert_eq!(out["fields"]["password"], REDACTED);
        assert_eq!(out["fields"]["totp_code"], REDACTED);
        assert_eq!(out["fields"]["idempotency_key"], REDACTED);
        assert_eq!(out["fields"]["user"], "ann");
        assert_eq!(out["fields"]["message"], "login [REDACTED]");
        assert_eq!(
            r.text("a short word"),
            "a short word",
            "short known values are not searched"
        );
        assert!(!secret_name("auth.access_token_minutes"));
        assert!(secret_name("database.url_password") && secret_name("pin"));
    }
}
