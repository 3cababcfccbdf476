//! `/api/v1/price-lists`: the price lists of customer groups.

use std::collections::HashSet;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, NaiveDate, Utc};
use rust_decimal::Decimal;
use serde::Deserialize;
use serde_json::{Value, json};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::customers::is_group;
use crate::core::audit::{Actor, AuditedTx, Change};
use crate::core::auth::context::AuthContext;
use crate::core::http::json::from_value;
use crate::core::http::problem::{FieldError, Problem};
use crate::core::http::{ApiError, ApiJson, Page, offset_cursor, page, page_limit};
use crate::core::idempotency::{self, CreateKey};
use crate::core::state::AppState;
use crate::plugs::management::customers::MODULE;
use crate::plugs::management::customers::rules::RuleKind;
use crate::plugs::management::customers::store::{self, PriceList, PriceRule};
use crate::shared::ids::new_id;
use crate::shared::money::parse_amount;

const MAX_RULES: usize = 5_000;

/// A price list (create, or the whole list with its `version` on update; its rules are replaced).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PriceListFields {
    /// 1 to 100 characters.
    pub name: String,
    /// The customer group it prices for.
    #[schema(example = "staff")]
    pub customer_group: String,
    /// First date it applies (calendar date in the business's timezone); none: no start.
    pub valid_from: Option<NaiveDate>,
    /// Last date it applies; none: no end.
    pub valid_to: Option<NaiveDate>,
    /// Up to 5,000 rules; one per product and one per category at most.
    pub rules: Vec<RuleFields>,
    /// On update: the version read.
    pub version: Option<i64>,
}

/// A rule: for a product or a category (and every category below it), a fixed price or a
/// percent off the catalog price.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RuleFields {
    pub product_id: Option<Uuid>,
    pub category_id: Option<Uuid>,
    #[schema(value_type = RuleKind)]
    pub kind: String,
    /// The price (`fixed_price`, at most 4 decimals) or the percent off (`percent_off`, 0 to 100).
    #[schema(example = "10")]
    pub value: String,
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct PriceListQuery {
    /// Only this group's lists.
    pub customer_group: Option<String>,
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<i64>,
    #[param(pattern = "^[0-9]{1,7}$")]
    pub cursor: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PriceListVersion {
    pub version: i64,
}

fn no_such_list() -> ApiError {
    ApiError::NotFound {
        code: "price_list.not_found",
        detail: "There is no such price list.".to_owned(),
    }
}

/// The fields checked (rules keep their order); every broken rule is one field error.
fn checked(f: &PriceListFields, id: Uuid, now: DateTime<Utc>) -> Result<PriceList, ApiError> {
    let mut errors = Vec::new();
    let name = f.name.trim().to_owned();
    if name.is_empty() || name.chars().count() > 100 {
        errors.push(FieldError::new("name", "must be 1 to 100 characters"));
    }
    let group = f.customer_group.trim().to_owned();
    if !is_group(&group) {
        errors.push(FieldError::new(
            "customer_group",
            "must be 1 to 40 lower-case letters, digits, _ or - (starting with a letter or digit)",
        ));
    }
    if let (Some(from), Some(to)) = (f.valid_from, f.valid_to)
        && from > to
    {
        errors.push(FieldError::new("valid_to", "is before valid_from"));
    }
    if f.rules.len() > MAX_RULES {
        errors.push(FieldError::new(
            "rules",
            format!("must hold at most {MAX_RULES} rules"),
        ));
    }
    let mut seen = HashSet::new();
    let mut rules = Vec::with_capacity(f.rules.len());
    for (i, r) in f.rules.iter().enumerate() {
        let field = |name: &str| format!("rules[{i}].{name}");
        let target = match (r.product_id, r.category_id) {
            (Some(p), None) => Some(("product", p)),
            (None, Some(c)) => Some(("category", c)),
            _ => {
                errors.push(FieldError::new(
                    format!("rules[{i}]"),
                    "must name either a product_id or a category_id",
                ));
                None
            }
        };
        if let Some(target) = target
            && !seen.insert(target)
        {
            errors.push(FieldError::new(
                format!("rules[{i}]"),
                format!("repeats the rule for {} {}", target.0, target.1),
            ));
        }
        let kind = RuleKind::parse(&r.kind);
        if kind.is_none() {
            errors.push(FieldError::new(
                field("kind"),
                "must be fixed_price or percent_off",
            ));
        }
        let value = FieldError::gather(&mut errors, field("value"), parse_amount(&r.value, 4));
        if let (Some(RuleKind::PercentOff), Some(v)) = (kind, value)
            && v > Decimal::ONE_HUNDRED
        {
            errors.push(FieldError::new(
                field("value"),
                "must be 0 to 100 (percent)",
            ));
        }
        if value.is_some_and(|v| v.is_sign_negative()) {
            errors.push(FieldError::new(field("value"), "must not be negative"));
        }
        if value.is_some_and(|v| v >= Decimal::from(10_000_000_000_i64)) {
            errors.push(FieldError::new(field("value"), "is too large"));
        }
        if let (Some(kind), Some(value)) = (kind, value) {
            rules.push(PriceRule {
                id: new_id(),
                product_id: r.product_id,
                category_id: r.category_id,
                kind: kind.as_str().to_owned(),
                value,
            });
        }
    }
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    Ok(PriceList {
        id,
        name,
        customer_group: group,
        valid_from: f.valid_from,
        valid_to: f.valid_to,
        rules,
        created_at: now,
        updated_at: now,
        version: 1,
    })
}

/// A rule's product or category that does not exist is a field error.
fn unknown_target(e: sqlx::Error) -> ApiError {
    let constraint = e
        .as_database_error()
        .and_then(|d| d.constraint())
        .unwrap_or_default()
        .to_owned();
    match constraint.as_str() {
        "price_list_rules_product_id_fkey" => {
            ApiError::invalid("rules", "name a product that does not exist")
        }
        "price_list_rules_category_id_fkey" => {
            ApiError::invalid("rules", "name a category that does not exist")
        }
        _ => e.into(),
    }
}

fn audited(l: &PriceList) -> Value {
    json!({"name": l.name, "customer_group": l.customer_group, "valid_from": l.valid_from, "valid_to": l.valid_to,
           "rules": l.rules})
}

/// Create a price list. Takes an `Idempotency-Key`.
#[utoipa::path(post, path = "/api/v1/price-lists", tag = "customers", security(("bearer" = [])), request_body = PriceListFields,
    params(("Idempotency-Key" = Option<String>, Header, description = "Optional: a retry with the same key answers the same list", pattern = "^[!-~]{1,255}$")),
    responses(
        (status = 201, description = "Created", body = PriceList),
        (status = 403, description = "Missing permission (`rbac.forbidden`)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid fields (`validation.failed`), key used with another body (`idempotency.key_reused`)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn create(
    State(state): State<AppState>,
    caller: AuthContext,
    headers: HeaderMap,
    ApiJson(body): ApiJson<Value>,
) -> Result<Response, ApiError> {
    let key = CreateKey::read(&headers, caller.user_id, "price_lists", &body)?;
    let fields: PriceListFields = from_value(body)?;
    if let Some(id) = key.earlier(&mut *state.pool().acquire().await?).await? {
        return replay(&state, id).await;
    }
    let now = state.clock().now();
    let list = checked(&fields, new_id(), now)?;
    let mut tx = AuditedTx::begin(state.pool(), Actor::user(&caller), now).await?;
    if let Some(id) = key.claim(&mut tx, list.id, caller.user_id, now).await? {
        tx.rollback().await?;
        return replay(&state, id).await;
    }
    store::insert_price_list(&mut tx, &list)
        .await
        .map_err(unknown_target)?;
    tx.record(
        Change::new(MODULE, "price_list", list.id, "price_list.create").after(audited(&list)),
    )
    .await?;
    tx.commit().await?;
    let mut conn = state.pool().acquire().await?;
    let stored = store::price_list(&mut conn, list.id, false)
        .await?
        .ok_or_else(no_such_list)?;
    Ok((StatusCode::CREATED, Json(stored)).into_response())
}

async fn replay(state: &AppState, id: Uuid) -> Result<Response, ApiError> {
    let mut conn = state.pool().acquire().await?;
    let list = store::price_list(&mut conn, id, false)
        .await?
        .ok_or_else(no_such_list)?;
    let mut response = (StatusCode::CREATED, Json(list)).into_response();
    idempotency::mark_replayed(&mut response);
    Ok(response)
}

/// A page of price lists (without their rules), by group and name.
#[utoipa::path(get, path = "/api/v1/price-lists", tag = "customers", security(("bearer" = [])), params(PriceListQuery),
    responses(
        (status = 200, description = "A page of price lists", body = Page<PriceList>),
        (status = 403, description = "Missing permission (`rbac.forbidden`)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Bad limit or cursor (`validation.failed`)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn list(
    State(state): State<AppState>,
    _caller: AuthContext,
    Query(query): Query<PriceListQuery>,
) -> Result<Json<Page<PriceList>>, ApiError> {
    let limit = page_limit(query.limit, 50, 200)?;
    let offset = offset_cursor(query.cursor.as_deref())?;
    let mut conn = state.pool().acquire().await?;
    let rows = store::price_lists(
        &mut conn,
        query.customer_group.as_deref(),
        offset,
        limit + 1,
    )
    .await?;
    let (items, next_cursor) = page(rows, limit, |_| (offset + limit).to_string());
    Ok(Json(Page { items, next_cursor }))
}

/// One price list with its rules.
#[utoipa::path(get, path = "/api/v1/price-lists/{id}", tag = "customers", security(("bearer" = [])), params(("id" = Uuid, Path)),
    responses(
        (status = 200, description = "The price list", body = PriceList),
        (status = 403, description = "Missing permission (`rbac.forbidden`)", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such price list (`price_list.not_found`)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn get(
    State(state): State<AppState>,
    _caller: AuthContext,
    Path(id): Path<Uuid>,
) -> Result<Json<PriceList>, ApiError> {
    let mut conn = state.pool().acquire().await?;
    store::price_list(&mut conn, id, false)
        .await?
        .map(Json)
        .ok_or_else(no_such_list)
}

/// Replace a price list and its rules (with the `version` read).
#[utoipa::path(put, path = "/api/v1/price-lists/{id}", tag = "customers", security(("bearer" = [])), params(("id" = Uuid, Path)), request_body = PriceListFields,
    responses(
        (status = 200, description = "Updated", body = PriceList),
        (status = 403, description = "Missing permission (`rbac.forbidden`)", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such price list (`price_list.not_found`)", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "A stale version (`conflict.version_mismatch`)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid fields (`validation.failed`)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn update(
    State(state): State<AppState>,
    caller: AuthContext,
    Path(id): Path<Uuid>,
    ApiJson(fields): ApiJson<PriceListFields>,
) -> Result<Json<PriceList>, ApiError> {
    let Some(version) = fields.version else {
        return Err(ApiError::invalid(
            "version",
            "is required: the version you read",
        ));
    };
    let now = state.clock().now();
    let wanted = checked(&fields, id, now)?;
    let mut tx = AuditedTx::begin(state.pool(), Actor::user(&caller), now).await?;
    let before = store::price_list(&mut tx, id, true)
        .await?
        .ok_or_else(no_such_list)?;
    ApiError::check_version("price list", before.version, version)?;
    store::update_price_list(&mut tx, &wanted, now)
        .await
        .map_err(unknown_target)?;
    tx.record(
        Change::new(MODULE, "price_list", id, "price_list.update")
            .before(audited(&before))
            .after(audited(&wanted)),
    )
    .await?;
    tx.commit().await?;
    let mut conn = state.pool().acquire().await?;
    store::price_list(&mut conn, id, false)
        .await?
        .map(Json)
        .ok_or_else(no_such_list)
}

/// Delete a price list (its rules stop applying at once).
#[utoipa::path(post, path = "/api/v1/price-lists/{id}/delete", tag = "customers", security(("bearer" = [])), params(("id" = Uuid, Path)), request_body = PriceListVersion,
    responses(
        (status = 204, description = "Deleted"),
        (status = 403, description = "Missing permission (`rbac.forbidden`)", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such price list (`price_list.not_found`)", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "A stale version (`conflict.version_mismatch`)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn delete(
    State(state): State<AppState>,
    caller: AuthContext,
    Path(id): Path<Uuid>,
    ApiJson(body): ApiJson<PriceListVersion>,
) -> Result<StatusCode, ApiError> {
    let now = state.clock().now();
    let mut tx = AuditedTx::begin(state.pool(), Actor::user(&caller), now).await?;
    let before = store::price_list(&mut tx, id, true)
        .await?
        .ok_or_else(no_such_list)?;
    ApiError::check_version("price list", before.version, body.version)?;
    store::delete_price_list(&mut tx, id, now).await?;
    tx.record(Change::new(MODULE, "price_list", id, "price_list.delete").before(audited(&before)))
        .await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}
