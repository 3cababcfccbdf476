//! Cron expressions as the configuration writes them (read by config validation and the scheduler).

use std::str::FromStr;

use croner::Cron;

/// Parses a five-field cron expression (or `@daily`-style nickname); `"off"` is not one.
pub fn parse_cron(expression: &str) -> Result<Option<Cron>, String> {
    if expression.trim().eq_ignore_ascii_case("off") {
        return Ok(None);
    }
    if expression.split_whitespace().count() != 5 && !expression.trim_start().starts_with('@') {
        return Err(
            "must be a five-field cron expression (minute hour day-of-month month day-of-week) or \"off\""
                .to_owned(),
        );
    }
    Cron::from_str(expression)
        .map(Some)
        .map_err(|e| format!("is not a valid cron expression: {e}"))
}
