//! The business and its settings as the domain reads them (one query, or the cached copy), with
//! the documented defaults for keys an older setup did not store.

use std::collections::HashMap;

use chrono_tz::Tz;
use rust_decimal::Decimal;
use serde_json::Value;
use sqlx::PgConnection;

use crate::core::state::AppState;

/// Default receipt number format: `{register}` the register's code, `{year}` the year in the
/// business timezone, `{number}` the counter padded to `numbering.receipt_digits`.
pub const DEFAULT_RECEIPT_FORMAT: &str = "{register}-{year}-{number}";

/// What selling needs to know about the business.
#[derive(Debug, Clone)]
pub struct Business {
    pub name: String,
    /// ISO 4217 code.
    pub currency: String,
    /// The currency's minor-unit decimals (2 for EUR, 0 for JPY).
    pub currency_scale: u32,
    pub timezone: Tz,
    /// `tax.prices_include_tax`: catalog prices are gross (true, the default) or net.
    pub prices_include_tax: bool,
    /// `payment.cash_rounding`: the smallest cash amount handed over (`"0.05"` in Switzerland);
    /// defaults to the currency's minor unit, i.e. no rounding.
    pub cash_rounding: Decimal,
    /// `numbering.receipt_format` (see [`DEFAULT_RECEIPT_FORMAT`]).
    pub receipt_format: String,
    /// `numbering.receipt_digits` (default 6).
    pub receipt_digits: usize,
    /// `cash.variance_reason_threshold`: a cash variance larger than this (absolute) needs a
    /// reason at close. Default 0: every variance needs one.
    pub variance_reason_threshold: Decimal,
    /// `cash.blind_close` (default true): a cashier counts the drawer without seeing what the
    /// server expects; the X report of their open session is refused until it is closed.
    pub blind_close: bool,
    /// Every stored setting, for the modules' own keys ([`Business::integer`] and its
    /// siblings); a key not stored falls back to the caller's default, its declared one.
    pub stored: std::sync::Arc<HashMap<String, Value>>,
}

impl Business {
    /// The business as [`load`](Business::load) reads it, kept in memory until the business or
    /// a setting changes (see [`crate::core::db::changes`]). For the paths every sale takes.
    pub async fn cached(state: &AppState) -> Result<Option<Business>, sqlx::Error> {
        state
            .cache::<(), Business>(1)
            .get_or_read((), || async {
                let mut conn = state.pool().acquire().await?;
                Business::load(&mut conn).await
            })
            .await
    }

    /// Reads the business row and its settings. `None` before setup.
    pub async fn load(conn: &mut PgConnection) -> Result<Option<Business>, sqlx::Error> {
        #[derive(sqlx::FromRow)]
        struct Row {
            name: String,
            currency: String,
            timezone: String,
            settings: sqlx::types::Json<HashMap<String, Value>>,
        }
        let row: Option<Row> = sqlx::query_as(
            "SELECT b.name, b.currency::text AS currency, b.timezone, \
                    COALESCE((SELECT jsonb_object_agg(key, value) FROM settings), '{}'::jsonb) AS settings \
             FROM business b",
        )
        .fetch_optional(conn)
        .await?;
        Ok(row.map(|r| Business::from_parts(r.name, r.currency, &r.timezone, &r.settings.0)))
    }

    fn from_parts(
        name: String,
        currency: String,
        timezone: &str,
        settings: &HashMap<String, Value>,
    ) -> Business {
        let currency_scale = settings
            .get("business.currency_scale")
            .and_then(Value::as_u64)
            .and_then(|v| u32::try_from(v).ok())
            .filter(|v| *v <= 4)
            .unwrap_or(2);
        let decimal = |key: &str| {
            settings
                .get(key)
                .and_then(Value::as_str)
                .and_then(|s| s.parse::<Decimal>().ok())
        };
        let minor_unit = Decimal::new(1, currency_scale);
        Business {
            name,
            currency,
            currency_scale,
            timezone: timezone.parse().unwrap_or(Tz::UTC),
            prices_include_tax: settings
                .get("tax.prices_include_tax")
                .and_then(Value::as_bool)
                .unwrap_or(true),
            cash_rounding: decimal("payment.cash_rounding")
                .filter(|d| *d >= minor_unit)
                .unwrap_or(minor_unit),
            receipt_format: settings
                .get("numbering.receipt_format")
                .and_then(Value::as_str)
                .filter(|f| f.contains("{number}"))
                .unwrap_or(DEFAULT_RECEIPT_FORMAT)
                .to_owned(),
            receipt_digits: settings
                .get("numbering.receipt_digits")
                .and_then(Value::as_u64)
                .and_then(|v| usize::try_from(v).ok())
                .filter(|v| (1..=12).contains(v))
                .unwrap_or(6),
            variance_reason_threshold: decimal("cash.variance_reason_threshold")
                .filter(|d| *d >= Decimal::ZERO)
                .unwrap_or(Decimal::ZERO),
            blind_close: settings
                .get("cash.blind_close")
                .and_then(Value::as_bool)
                .unwrap_or(true),
            stored: std::sync::Arc::new(settings.clone()),
        }
    }

    /// Integer setting `key`, or `default` (its declared default) when not stored.
    pub fn integer(&self, key: &str, default: i64) -> i64 {
        self.stored
            .get(key)
            .and_then(Value::as_i64)
            .unwrap_or(default)
    }

    /// Amount setting `key` (stored as a decimal string), or `default`.
    pub fn amount(&self, key: &str, default: Decimal) -> Decimal {
        self.stored
            .get(key)
            .and_then(Value::as_str)
            .and_then(|s| s.parse().ok())
            .unwrap_or(default)
    }

    /// Boolean setting `key`, or `default`.
    pub fn flag(&self, key: &str, default: bool) -> bool {
        self.stored
            .get(key)
            .and_then(Value::as_bool)
            .unwrap_or(default)
    }

    /// Text setting `key`, or `default`.
    pub fn text<'a>(&'a self, key: &str, default: &'a str) -> &'a str {
        self.stored
            .get(key)
            .and_then(Value::as_str)
            .unwrap_or(default)
    }

    /// The receipt number for `counter` at `register` in `year`.
    pub fn receipt_number(&self, register: &str, year: i32, counter: i64) -> String {
        let digits = self.receipt_digits;
        self.receipt_template(register, year)
            .replace("{number}", &format!("{counter:0digits$}"))
    }

    /// The receipt number format with `register` and `year` filled in and `{number}` left: for a
    /// writer that learns the counter in SQL. There `{number}` becomes the counter padded with
    /// zeros to [`Business::receipt_digits`] (never cut), as [`Business::receipt_number`] does.
    pub fn receipt_template(&self, register: &str, year: i32) -> String {
        self.receipt_format
            .replace("{register}", register)
            .replace("{year}", &year.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn defaults_and_receipt_numbers() {
        let business = Business::from_parts(
            "Shop".into(),
            "EUR".into(),
            "Europe/Berlin",
            &HashMap::from([("business.currency_scale".to_owned(), json!(2))]),
        );
        assert_eq!(business.cash_rounding.to_string(), "0.01");
        assert!(business.prices_include_tax);
        assert_eq!(business.receipt_number("R1", 2026, 42), "R1-2026-000042");
        let custom = Business::from_parts(
            "Shop".into(),
            "CHF".into(),
            "Europe/Zurich",
            &HashMap::from([
                (
                    "numbering.receipt_format".to_owned(),
                    json!("{year}/{register}/{number}"),
                ),
                ("numbering.receipt_digits".to_owned(), json!(4)),
                ("payment.cash_rounding".to_owned(), json!("0.05")),
            ]),
        );
        assert_eq!(custom.receipt_number("K2", 2027, 7), "2027/K2/0007");
        assert_eq!(custom.cash_rounding.to_string(), "0.05");
    }
}
