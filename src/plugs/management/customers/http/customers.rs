//! `/api/v1/customers`: customers (soft-deleted), their search, purchase history and prices.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::{PERSONAL, no_such_customer};
use crate::core::audit::personal;
use crate::core::audit::{Actor, AuditError, AuditedTx, Change};
use crate::core::auth::context::AuthContext;
use crate::core::http::json::from_value;
use crate::core::http::problem::{FieldError, Problem};
use crate::core::http::{ApiError, ApiJson, Page, offset_cursor, page, page_limit};
use crate::core::idempotency::{self, CreateKey};
use crate::core::settings::Business;
use crate::core::state::AppState;
use crate::plugs::management::api::catalog;
use crate::plugs::management::api::customers::{
    AppliedRule, CustomerDocument, document_sources, group_prices, price_date,
};
use crate::plugs::management::customers::MODULE;
use crate::plugs::management::customers::rules::{search_key, search_text};
use crate::plugs::management::customers::store::{self, Customer};
use crate::shared::ids::new_id;
use crate::shared::money::show;

/// A customer's fields (create, or the whole record on update with its `version`).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CustomerFields {
    /// 1 to 200 characters.
    pub name: String,
    pub email: Option<String>,
    pub phone: Option<String>,
    pub tax_id: Option<String>,
    pub address: Option<String>,
    /// The group whose price lists apply: lower-case letters, digits, `_` and `-`.
    #[schema(example = "staff")]
    pub customer_group: Option<String>,
    pub notes: Option<String>,
    /// Whether they agreed to marketing; default false.
    pub marketing_consent: Option<bool>,
    /// How the consent answer was given: `till`, `paper_form`, `web`, `email`, `phone` or
    /// `other`; required when the answer changes (the time is recorded by the server).
    pub consent_source: Option<String>,
    /// On update: the version read (a stale one is `409 conflict.version_mismatch`).
    pub version: Option<i64>,
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct CustomerQuery {
    /// Part of the name, email or phone number (case and accents ignored); names that start
    /// with it come first.
    pub search: Option<String>,
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<i64>,
    #[param(pattern = "^[0-9]{1,7}$")]
    pub cursor: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CustomerVersion {
    pub version: i64,
}

/// How a consent answer may have been given.
pub const CONSENT_SOURCES: &[&str] = &["till", "paper_form", "web", "email", "phone", "other"];

pub(super) fn clean(value: &Option<String>) -> Option<String> {
    value
        .as_deref()
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(str::to_owned)
}

/// Is `group` a customer group's name?
pub(super) fn is_group(group: &str) -> bool {
    let mut chars = group.chars();
    group.len() <= 40
        && chars
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
}

/// The fields checked against `before` (none on create) at `now`; every broken rule is one
/// field error. The consent time moves only when the answer changes.
fn checked(
    f: &CustomerFields,
    id: Uuid,
    before: Option<&Customer>,
    now: DateTime<Utc>,
) -> Result<Customer, ApiError> {
    let mut errors = Vec::new();
    let name = f.name.trim().to_owned();
    if name.is_empty() || name.chars().count() > 200 {
        errors.push(FieldError::new("name", "must be 1 to 200 characters"));
    }
    for (field, value, max) in [
        ("email", &f.email, 254),
        ("phone", &f.phone, 50),
        ("tax_id", &f.tax_id, 50),
        ("address", &f.address, 500),
        ("notes", &f.notes, 2000),
    ] {
        if clean(value).is_some_and(|v| v.chars().count() > max) {
            errors.push(FieldError::new(
                field,
                format!("must be at most {max} characters"),
            ));
        }
    }
    if clean(&f.email).is_some_and(|e| !e.contains('@') || e.contains(char::is_whitespace)) {
        errors.push(FieldError::new("email", "is not an email address"));
    }
    if clean(&f.phone).is_some_and(|p| !p.chars().any(|c| c.is_ascii_digit())) {
        errors.push(FieldError::new("phone", "holds no digits"));
    }
    let group = clean(&f.customer_group);
    if group.as_deref().is_some_and(|g| !is_group(g)) {
        errors.push(FieldError::new(
            "customer_group",
            "must be 1 to 40 lower-case letters, digits, _ or - (starting with a letter or digit)",
        ));
    }
    let consent = f.marketing_consent.unwrap_or(false);
    let changed = match before {
        Some(b) => b.marketing_consent != consent,
        None => consent,
    };
    let source = clean(&f.consent_source);
    if changed && source.is_none() {
        errors.push(FieldError::new(
            "consent_source",
            format!(
                "is required when the marketing consent answer changes: one of {}",
                CONSENT_SOURCES.join(", ")
            ),
        ));
    }
    // A closed list: free text here would stay in clear in the audit log after an erasure.
    if source
        .as_deref()
        .is_some_and(|s| !CONSENT_SOURCES.contains(&s))
    {
        errors.push(FieldError::new(
            "consent_source",
            format!("must be one of {}", CONSENT_SOURCES.join(", ")),
        ));
    }
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    let (consent_at, consent_source) = match (changed, before) {
        (true, _) => (Some(now), source),
        (false, Some(b)) => (b.consent_at, b.consent_source.clone()),
        (false, None) => (None, None),
    };
    Ok(Customer {
        id,
        name,
        email: clean(&f.email),
        phone: clean(&f.phone),
        tax_id: clean(&f.tax_id),
        address: clean(&f.address),
        customer_group: group,
        notes: clean(&f.notes),
        marketing_consent: consent,
        consent_at,
        consent_source,
        created_at: before.map_or(now, |b| b.created_at),
        updated_at: now,
        deleted_at: None,
        erased_at: None,
        version: 1,
    })
}

fn search_of(c: &Customer) -> String {
    search_text(&c.name, c.email.as_deref(), c.phone.as_deref())
}

/// A customer as the audit log records it: the personal fields sealed under the customer's own
/// key (erasure destroys it; docs/audit-chain.md).
pub(super) async fn audited(tx: &mut AuditedTx, c: &Customer) -> Result<Value, AuditError> {
    let key = personal::subject_key(tx, c.id).await?;
    Ok(key.seal_fields(
        json!({"name": c.name, "email": c.email, "phone": c.phone, "tax_id": c.tax_id, "address": c.address,
               "notes": c.notes, "customer_group": c.customer_group, "marketing_consent": c.marketing_consent,
               "consent_at": c.consent_at, "consent_source": c.consent_source}),
        PERSONAL,
    ))
}

/// Create a customer. Takes an `Idempotency-Key`.
#[utoipa::path(post, path = "/api/v1/customers", tag = "customers", security(("bearer" = [])), request_body = CustomerFields,
    params(("Idempotency-Key" = Option<String>, Header, description = "Optional: a retry with the same key answers the same customer", pattern = "^[!-~]{1,255}$")),
    responses(
        (status = 201, description = "Created", body = Customer),
        (status = 403, description = "Missing permission (`rbac.forbidden`)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid fields (`validation.failed`), key used with another body (`idempotency.key_reused`)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn create(
    State(state): State<AppState>,
    caller: AuthContext,
    headers: HeaderMap,
    ApiJson(body): ApiJson<Value>,
) -> Result<Response, ApiError> {
    let key = CreateKey::read(&headers, caller.user_id, "customers", &body)?;
    let fields: CustomerFields = from_value(body)?;
    if let Some(id) = key.earlier(&mut *state.pool().acquire().await?).await? {
        return replay(&state, id).await;
    }
    let now = state.clock().now();
    let customer = checked(&fields, new_id(), None, now)?;
    let mut tx = AuditedTx::begin(state.pool(), Actor::user(&caller), now).await?;
    if let Some(id) = key.claim(&mut tx, customer.id, caller.user_id, now).await? {
        tx.rollback().await?;
        return replay(&state, id).await;
    }
    store::insert(&mut tx, &customer, &search_of(&customer)).await?;
    let after = audited(&mut tx, &customer).await?;
    tx.record(Change::new(MODULE, "customer", customer.id, "customer.create").after(after))
        .await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(customer)).into_response())
}

async fn replay(state: &AppState, id: Uuid) -> Result<Response, ApiError> {
    let mut conn = state.pool().acquire().await?;
    let customer = store::customer(&mut conn, id, true, false)
        .await?
        .ok_or_else(no_such_customer)?;
    let mut response = (StatusCode::CREATED, Json(customer)).into_response();
    idempotency::mark_replayed(&mut response);
    Ok(response)
}

/// Find customers by name, email or phone, or list them by name.
#[utoipa::path(get, path = "/api/v1/customers", tag = "customers", security(("bearer" = [])), params(CustomerQuery),
    responses(
        (status = 200, description = "A page of customers", body = Page<Customer>),
        (status = 403, description = "Missing permission (`rbac.forbidden`)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Bad limit or cursor (`validation.failed`)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn list(
    State(state): State<AppState>,
    _caller: AuthContext,
    Query(query): Query<CustomerQuery>,
) -> Result<Json<Page<Customer>>, ApiError> {
    let limit = page_limit(query.limit, 50, 200)?;
    let offset = offset_cursor(query.cursor.as_deref())?;
    let mut conn = state.pool().acquire().await?;
    let rows = match query
        .search
        .as_deref()
        .map(search_key)
        .filter(|s| !s.is_empty())
    {
        Some(key) => store::search(&mut conn, &key, offset + limit + 1)
            .await?
            .into_iter()
            .skip(usize::try_from(offset).unwrap_or(0))
            .collect(),
        None => store::by_name(&mut conn, offset, limit + 1).await?,
    };
    let (items, next_cursor) = page(rows, limit, |_| (offset + limit).to_string());
    Ok(Json(Page { items, next_cursor }))
}

/// One customer (a deleted or erased one too: their documents still name them).
#[utoipa::path(get, path = "/api/v1/customers/{id}", tag = "customers", security(("bearer" = [])), params(("id" = Uuid, Path)),
    responses(
        (status = 200, description = "The customer", body = Customer),
        (status = 403, description = "Missing permission (`rbac.forbidden`)", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such customer (`customer.not_found`)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn get(
    State(state): State<AppState>,
    _caller: AuthContext,
    Path(id): Path<Uuid>,
) -> Result<Json<Customer>, ApiError> {
    let mut conn = state.pool().acquire().await?;
    store::customer(&mut conn, id, true, false)
        .await?
        .map(Json)
        .ok_or_else(no_such_customer)
}

/// Replace a customer's fields (with the `version` read).
#[utoipa::path(put, path = "/api/v1/customers/{id}", tag = "customers", security(("bearer" = [])), params(("id" = Uuid, Path)), request_body = CustomerFields,
    responses(
        (status = 200, description = "Updated", body = Customer),
        (status = 403, description = "Missing permission (`rbac.forbidden`)", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such customer, or deleted (`customer.not_found`)", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "A stale version (`conflict.version_mismatch`)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid fields (`validation.failed`)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn update(
    State(state): State<AppState>,
    caller: AuthContext,
    Path(id): Path<Uuid>,
    ApiJson(fields): ApiJson<CustomerFields>,
) -> Result<Json<Customer>, ApiError> {
    let Some(version) = fields.version else {
        return Err(ApiError::invalid(
            "version",
            "is required: the version you read",
        ));
    };
    let now = state.clock().now();
    let mut tx = AuditedTx::begin(state.pool(), Actor::user(&caller), now).await?;
    let before = store::customer(&mut tx, id, false, true)
        .await?
        .ok_or_else(no_such_customer)?;
    ApiError::check_version("customer", before.version, version)?;
    let wanted = checked(&fields, id, Some(&before), now)?;
    let after = store::update(&mut tx, &wanted, &search_of(&wanted), now).await?;
    let (old, new) = (
        audited(&mut tx, &before).await?,
        audited(&mut tx, &after).await?,
    );
    tx.record(
        Change::new(MODULE, "customer", id, "customer.update")
            .before(old)
            .after(new),
    )
    .await?;
    tx.commit().await?;
    Ok(Json(after))
}

/// Delete a customer (kept for the documents that name them, gone from lists and searches).
#[utoipa::path(post, path = "/api/v1/customers/{id}/delete", tag = "customers", security(("bearer" = [])), params(("id" = Uuid, Path)), request_body = CustomerVersion,
    responses(
        (status = 204, description = "Deleted"),
        (status = 403, description = "Missing permission (`rbac.forbidden`)", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such customer, or deleted already (`customer.not_found`)", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "A stale version (`conflict.version_mismatch`)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn delete(
    State(state): State<AppState>,
    caller: AuthContext,
    Path(id): Path<Uuid>,
    ApiJson(body): ApiJson<CustomerVersion>,
) -> Result<StatusCode, ApiError> {
    let now = state.clock().now();
    let mut tx = AuditedTx::begin(state.pool(), Actor::user(&caller), now).await?;
    let before = store::customer(&mut tx, id, false, true)
        .await?
        .ok_or_else(no_such_customer)?;
    ApiError::check_version("customer", before.version, body.version)?;
    store::delete(&mut tx, id, now).await?;
    let old = audited(&mut tx, &before).await?;
    tx.record(Change::new(MODULE, "customer", id, "customer.delete").before(old))
        .await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct HistoryQuery {
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<i64>,
    /// The `next_cursor` of the previous page.
    #[param(
        pattern = "^[0-9]{1,16}_[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"
    )]
    pub cursor: Option<String>,
}

/// The position `(at, id)` a history cursor names.
fn history_cursor(cursor: Option<&str>) -> Result<Option<(DateTime<Utc>, Uuid)>, ApiError> {
    let Some(cursor) = cursor else {
        return Ok(None);
    };
    let bad = || ApiError::invalid("cursor", "is not a cursor from this list");
    let (micros, id) = cursor.split_once('_').ok_or_else(bad)?;
    let micros: i64 = micros.parse().map_err(|_| bad())?;
    let at = DateTime::from_timestamp_micros(micros).ok_or_else(bad)?;
    Ok(Some((at, id.parse().map_err(|_| bad())?)))
}

/// Every document naming customer `id` before `position` (newest first), at most `limit` of
/// each kind, merged.
pub(super) async fn documents(
    state: &AppState,
    id: Uuid,
    position: Option<(DateTime<Utc>, Uuid)>,
    limit: i64,
) -> Result<Vec<CustomerDocument>, ApiError> {
    let scale = Business::cached(state)
        .await?
        .ok_or(ApiError::SetupRequired)?
        .currency_scale;
    let mut conn = state.pool().acquire().await?;
    let mut all = Vec::new();
    for source in document_sources(state)? {
        all.extend((source.documents)(&mut conn, id, position, limit).await?);
    }
    all.sort_by(|a, b| b.at.cmp(&a.at).then(b.id.cmp(&a.id)));
    all.truncate(usize::try_from(limit).unwrap_or(0));
    // Amounts as the currency shows them (stored with four decimals).
    for doc in &mut all {
        doc.total.rescale(scale);
        for line in doc.lines.as_array_mut().into_iter().flatten() {
            for field in ["unit_price", "total"] {
                if let Some(amount) = line[field]
                    .as_str()
                    .and_then(|t| t.parse::<rust_decimal::Decimal>().ok())
                {
                    line[field] = json!(show(amount, scale));
                }
            }
        }
    }
    Ok(all)
}

/// A customer's purchase history: the sales, returns and voids that name them, newest first.
#[utoipa::path(get, path = "/api/v1/customers/{id}/history", tag = "customers", security(("bearer" = [])), params(("id" = Uuid, Path), HistoryQuery),
    responses(
        (status = 200, description = "A page of documents", body = Page<CustomerDocument>),
        (status = 403, description = "Missing permission (`rbac.forbidden`)", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such customer (`customer.not_found`)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Bad limit or cursor (`validation.failed`)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn history(
    State(state): State<AppState>,
    _caller: AuthContext,
    Path(id): Path<Uuid>,
    Query(query): Query<HistoryQuery>,
) -> Result<Json<Page<CustomerDocument>>, ApiError> {
    let limit = page_limit(query.limit, 50, 200)?;
    let position = history_cursor(query.cursor.as_deref())?;
    {
        let mut conn = state.pool().acquire().await?;
        if !store::exists(&mut conn, id).await? {
            return Err(no_such_customer());
        }
    }
    let rows = documents(&state, id, position, limit + 1).await?;
    let (items, next_cursor) = page(rows, limit, |d| {
        format!("{}_{}", d.at.timestamp_micros(), d.id)
    });
    Ok(Json(Page { items, next_cursor }))
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct PricesQuery {
    /// Comma-separated product ids (1 to 200).
    #[param(
        pattern = "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}(,[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}){0,199}$"
    )]
    pub product_ids: String,
}

/// The prices asked for, in the order asked (unknown products left out).
#[derive(Debug, Serialize, ToSchema)]
pub struct CustomerPrices {
    pub prices: Vec<CustomerPrice>,
}

/// A product's price for a customer: what the till shows and the sale records.
#[derive(Debug, Serialize, ToSchema)]
pub struct CustomerPrice {
    pub product_id: Uuid,
    /// The catalog price.
    #[schema(example = "10.00")]
    pub list_price: String,
    /// The price the sale applies for this customer (the list price when no rule applies).
    #[schema(example = "9.00")]
    pub price: String,
    /// The price list rule applied, if any.
    pub price_rule: Option<AppliedRule>,
}

/// The prices a sale naming this customer applies now (their group's price lists), for the
/// till to show. A sale naming a customer sends each shown price as the line's `unit_price`: the
/// sale records exactly it, or, when the price has changed since, treats it as a price override
/// (refused without `operations.sales.price_override` or an approval).
#[utoipa::path(get, path = "/api/v1/customers/{id}/prices", tag = "customers", security(("bearer" = [])), params(("id" = Uuid, Path), PricesQuery),
    responses(
        (status = 200, description = "The prices", body = CustomerPrices),
        (status = 403, description = "Missing permission (`rbac.forbidden`)", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such customer, or deleted (`customer.not_found`)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Bad product ids (`validation.failed`)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn prices(
    State(state): State<AppState>,
    _caller: AuthContext,
    Path(id): Path<Uuid>,
    Query(query): Query<PricesQuery>,
) -> Result<Json<CustomerPrices>, ApiError> {
    let ids: Vec<Uuid> = query
        .product_ids
        .split(',')
        .map(|s| s.trim().parse::<Uuid>())
        .collect::<Result<_, _>>()
        .map_err(|_| ApiError::invalid("product_ids", "must be comma-separated product ids"))?;
    if ids.is_empty() || ids.len() > 200 {
        return Err(ApiError::invalid(
            "product_ids",
            "must name 1 to 200 products",
        ));
    }
    let business = Business::cached(&state)
        .await?
        .ok_or(ApiError::SetupRequired)?;
    let group = {
        let mut conn = state.pool().acquire().await?;
        store::group_of(&mut conn, id)
            .await?
            .ok_or_else(no_such_customer)?
    };
    let rules = match &group {
        Some(g) => Some(group_prices(&state, g).await?),
        None => None,
    };
    let on = price_date(&business, state.clock().now());
    let scale = business.currency_scale;
    let products = catalog::products_for_sale(&state, &ids).await?;
    let prices = ids
        .iter()
        .filter_map(|id| products.get(id))
        .map(|p| {
            let applied = rules
                .as_ref()
                .and_then(|g| g.price(p.id, p.category_id, p.price, on, scale));
            CustomerPrice {
                product_id: p.id,
                list_price: show(p.price, scale),
                price: show(applied.as_ref().map_or(p.price, |a| a.price), scale),
                price_rule: applied.map(|a| a.rule),
            }
        })
        .collect();
    Ok(Json(CustomerPrices { prices }))
}
