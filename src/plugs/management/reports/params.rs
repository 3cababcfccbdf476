//! A report's query string, checked against what the report accepts and resolved (a branch to
//! its registers and locations, a category to its subtree, the period to instants). Every
//! problem is named in one `422`.

use std::collections::HashMap;

use chrono::{Datelike, Duration, NaiveDate};
use uuid::Uuid;

use crate::core::http::ApiError;
use crate::core::http::problem::FieldError;
use crate::core::reports::{Filters, Param, Report};
use crate::core::settings::Business;
use crate::plugs::administration::api::{closings, places};
use crate::plugs::management::api::catalog;

/// Names every report takes besides its parameters.
const ALWAYS: &[&str] = &["format"];
/// The longest period a report covers.
const MAX_DAYS: i64 = 3 * 366;
pub const DEFAULT_LIMIT: i64 = 20;
pub const MAX_LIMIT: i64 = 1000;
const METHODS: &[&str] = &["cash", "card", "voucher", "other"];

/// The format asked for: `json` (default), `csv` or `pdf`.
pub fn format(query: &HashMap<String, String>) -> Result<&str, ApiError> {
    match query.get("format").map(String::as_str) {
        None | Some("json") => Ok("json"),
        Some("csv") => Ok("csv"),
        Some("pdf") => Ok("pdf"),
        Some(_) => Err(ApiError::invalid("format", "must be json, csv or pdf")),
    }
}

fn uuid(query: &HashMap<String, String>, name: &str, errors: &mut Vec<FieldError>) -> Option<Uuid> {
    let text = query.get(name)?;
    match text.parse() {
        Ok(id) => Some(id),
        Err(_) => {
            errors.push(FieldError::new(name, "must be a UUID"));
            None
        }
    }
}

fn date(
    query: &HashMap<String, String>,
    name: &str,
    errors: &mut Vec<FieldError>,
) -> Option<NaiveDate> {
    let text = query.get(name)?;
    match NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        Ok(d) if text.len() == 10 => Some(d),
        _ => {
            errors.push(FieldError::new(name, "must be a date, YYYY-MM-DD"));
            None
        }
    }
}

/// The registers and locations a branch, a register and a location name (`None`: all); a
/// register or location outside the branch asked for leaves none.
async fn places_asked(
    conn: &mut sqlx::PgConnection,
    branch: Option<Uuid>,
    register: Option<Uuid>,
    location: Option<Uuid>,
    errors: &mut Vec<FieldError>,
) -> Result<Places, ApiError> {
    let (mut registers, mut locations) = (None, None);
    if let Some(id) = branch {
        match places::branch_places(conn, id).await? {
            Some(b) => {
                registers = Some(b.registers.iter().map(|r| r.0).collect::<Vec<_>>());
                locations = Some(b.locations);
            }
            None => errors.push(FieldError::new("branch_id", "no such branch")),
        }
    }
    if let Some(id) = register {
        if !places::register_exists(conn, id).await? {
            errors.push(FieldError::new("register_id", "no such register"));
        }
        registers = Some(match registers {
            Some(of_branch) if !of_branch.contains(&id) => Vec::new(),
            _ => vec![id],
        });
    }
    if let Some(id) = location {
        if !places::location_exists(conn, id).await? {
            errors.push(FieldError::new("location_id", "no such location"));
        }
        locations = Some(match locations {
            Some(of_branch) if !of_branch.contains(&id) => Vec::new(),
            _ => vec![id],
        });
    }
    Ok((registers, locations))
}

/// Registers and locations asked for.
type Places = (Option<Vec<Uuid>>, Option<Vec<Uuid>>);

/// `from` and `to` (defaults: the month so far; a `from` in the future alone: that day).
fn period(
    query: &HashMap<String, String>,
    today: NaiveDate,
    errors: &mut Vec<FieldError>,
) -> (NaiveDate, NaiveDate) {
    let (mut from, mut to) = (today.with_day(1).unwrap_or(today), today);
    let before = errors.len();
    if let Some(d) = date(query, "from", errors) {
        from = d;
    }
    if let Some(d) = date(query, "to", errors) {
        to = d;
    }
    if query.contains_key("from") && !query.contains_key("to") && from > today {
        to = from;
    }
    if errors.len() > before {
        // Compared only once both are dates.
    } else if from > to {
        errors.push(FieldError::new("to", "must not be before `from`"));
    } else if (to - from).num_days() >= MAX_DAYS {
        errors.push(FieldError::new(
            "to",
            format!("a report covers at most {MAX_DAYS} days"),
        ));
    }
    (from, to)
}

/// Names the query's parameters `report` does not take.
fn refuse_unknown(report: &Report, query: &HashMap<String, String>, errors: &mut Vec<FieldError>) {
    let mut unknown: Vec<&String> = query
        .keys()
        .filter(|k| {
            !ALWAYS.contains(&k.as_str())
                && !report
                    .params
                    .iter()
                    .any(|p| p.names().contains(&k.as_str()))
        })
        .collect();
    unknown.sort();
    for name in unknown {
        errors.push(FieldError::new(
            name.as_str(),
            format!("`{}` does not take this parameter", report.id),
        ));
    }
}

/// `limit` (default [`DEFAULT_LIMIT`]).
fn limit(query: &HashMap<String, String>, errors: &mut Vec<FieldError>) -> i64 {
    match query.get("limit") {
        None => DEFAULT_LIMIT,
        Some(text) => match text.parse::<i64>() {
            Ok(n) if (1..=MAX_LIMIT).contains(&n) => n,
            _ => {
                errors.push(FieldError::new(
                    "limit",
                    format!("must be a whole number from 1 to {MAX_LIMIT}"),
                ));
                DEFAULT_LIMIT
            }
        },
    }
}

/// Checks `query` against `report` and resolves it, for a caller who sees costs or not.
pub async fn filters(
    conn: &mut sqlx::PgConnection,
    business: &Business,
    now: chrono::DateTime<chrono::Utc>,
    report: &Report,
    query: &HashMap<String, String>,
    sees_costs: bool,
) -> Result<Filters, ApiError> {
    let accepts = |p: Param| report.params.contains(&p);
    let mut errors = Vec::new();
    refuse_unknown(report, query, &mut errors);
    // Only what the report takes is read further (an unknown name is one error, not two).
    let query: HashMap<String, String> = query
        .iter()
        .filter(|(k, _)| {
            report
                .params
                .iter()
                .any(|p| p.names().contains(&k.as_str()))
        })
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let query = &query;
    let today = closings::business_date(business, now);
    let (from, to) = if accepts(Param::Period) {
        period(query, today, &mut errors)
    } else {
        (today.with_day(1).unwrap_or(today), today)
    };
    let branch = uuid(query, "branch_id", &mut errors);
    let register = uuid(query, "register_id", &mut errors);
    let cashier = uuid(query, "cashier_id", &mut errors);
    let category = uuid(query, "category_id", &mut errors);
    let product = uuid(query, "product_id", &mut errors);
    let customer = uuid(query, "customer_id", &mut errors);
    let location = uuid(query, "location_id", &mut errors);
    let method = query.get("method").cloned();
    if let Some(m) = &method
        && !METHODS.contains(&m.as_str())
    {
        errors.push(FieldError::new(
            "method",
            "must be cash, card, voucher or other",
        ));
    }
    let limit = limit(query, &mut errors);
    let (registers, locations) =
        places_asked(conn, branch, register, location, &mut errors).await?;
    let categories = match category {
        Some(id) => {
            let tree = catalog::category_tree(conn, id).await?;
            if tree.is_empty() {
                errors.push(FieldError::new("category_id", "no such category"));
            }
            Some(tree)
        }
        None => None,
    };
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    let start = closings::business_day(business, from).start;
    let end = closings::business_day(business, to + Duration::days(1)).start;
    Ok(Filters {
        from,
        to,
        start,
        end,
        branch,
        registers,
        locations,
        cashier,
        categories,
        product,
        customer,
        method,
        limit,
        today,
        sees_costs,
    })
}
