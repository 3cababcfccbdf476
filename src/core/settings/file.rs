//! The config file's settings as `GET /api/v1/settings` shows them: read-only, each with where
//! its value came from, secrets redacted.

use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use crate::core::config::Config;

/// One setting of the config file (`plugpos.toml`).
#[derive(Debug, Clone, Serialize, ToSchema, PartialEq)]
pub struct FileSetting {
    /// Its key in the file (`http.port`, `schedules.backup_full`).
    pub key: String,
    /// Its value; a secret shows only that it is set.
    pub value: Value,
    /// `default`, `from <file>`, `from PLUGPOS_<KEY>` or `from the command line`.
    pub source: String,
}

/// Every leaf of `config`, by key.
pub fn settings(config: &Config) -> Vec<FileSetting> {
    let mut out = Vec::new();
    if let Ok(value) = serde_json::to_value(config) {
        flatten("", &value, config, &mut out);
    }
    out
}

fn flatten(prefix: &str, value: &Value, config: &Config, out: &mut Vec<FileSetting>) {
    match value {
        Value::Object(map) if prefix.is_empty() || !map.is_empty() => {
            for (k, v) in map {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&key, v, config, out);
            }
        }
        _ => out.push(FileSetting {
            key: prefix.to_owned(),
            value: value.clone(),
            source: config
                .sources
                .get(prefix)
                .cloned()
                .unwrap_or_else(|| "default".to_owned()),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_shows_its_source_and_secrets_stay_hidden() {
        let config = Config::load(
            None,
            [
                ("PLUGPOS_HTTP__PORT".to_owned(), "9000".to_owned()),
                (
                    "PLUGPOS_DATABASE__URL".to_owned(),
                    "postgres://shop:hunter22@db/shop".to_owned(),
                ),
            ],
        )
        .unwrap();
        let shown = settings(&config);
        let get = |key: &str| shown.iter().find(|s| s.key == key).unwrap().clone();
        assert_eq!(get("http.port").value, 9000);
        assert_eq!(get("http.port").source, "from PLUGPOS_HTTP__PORT");
        assert_eq!(get("http.bind").source, "default");
        assert_eq!(get("database.url").value, crate::core::config::REDACTED);
        assert!(!serde_json::to_string(&shown).unwrap().contains("hunter22"));
        assert!(shown.iter().any(|s| s.key == "schedules.backup_full"));
    }
}
