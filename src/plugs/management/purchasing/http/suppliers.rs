//! `/api/v1/suppliers`: suppliers (soft-deleted) and what each supplies.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::core::audit::{Actor, AuditedTx, Change};
use crate::core::auth::context::AuthContext;
use crate::core::http::json::from_value;
use crate::core::http::problem::{FieldError, Problem};
use crate::core::http::{ApiError, ApiJson, Page, offset_cursor, page, page_limit};
use crate::core::idempotency::{self, CreateKey};
use crate::core::state::AppState;
use crate::plugs::management::api::catalog;
use crate::plugs::management::purchasing::MODULE;
use crate::plugs::management::purchasing::store::{self, Supplier, SupplierProduct};
use crate::shared::ids::new_id;

/// A supplier's fields (create, or the whole record on update with its `version`).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SupplierFields {
    pub name: String,
    pub tax_id: Option<String>,
    pub contact: Option<String>,
    pub email: Option<String>,
    pub phone: Option<String>,
    pub address: Option<String>,
    /// 0 to 365.
    pub payment_terms_days: Option<i32>,
    pub notes: Option<String>,
    /// On update: the version read (a stale one is `409 conflict.version_mismatch`).
    pub version: Option<i64>,
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct SupplierQuery {
    /// Part of the name.
    pub search: Option<String>,
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<i64>,
    #[param(pattern = "^[0-9]{1,7}$")]
    pub cursor: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct PageQuery {
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<i64>,
    #[param(pattern = "^[0-9]{1,7}$")]
    pub cursor: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SuppliedProduct {
    pub product_id: Uuid,
    /// The supplier's own code.
    pub supplier_code: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SupplierVersion {
    pub version: i64,
}

fn clean(value: &Option<String>) -> Option<String> {
    value
        .as_deref()
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(str::to_owned)
}

/// The fields checked; every broken rule is one field error.
fn checked(
    f: &SupplierFields,
    id: Uuid,
    at: chrono::DateTime<chrono::Utc>,
) -> Result<Supplier, ApiError> {
    let mut errors = Vec::new();
    let name = f.name.trim().to_owned();
    if name.is_empty() || name.chars().count() > 200 {
        errors.push(FieldError::new("name", "must be 1 to 200 characters"));
    }
    for (field, value, max) in [
        ("tax_id", &f.tax_id, 50),
        ("contact", &f.contact, 200),
        ("email", &f.email, 254),
        ("phone", &f.phone, 50),
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
    if f.payment_terms_days
        .is_some_and(|d| !(0..=365).contains(&d))
    {
        errors.push(FieldError::new(
            "payment_terms_days",
            "must be from 0 to 365",
        ));
    }
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    Ok(Supplier {
        id,
        name,
        tax_id: clean(&f.tax_id),
        contact: clean(&f.contact),
        email: clean(&f.email),
        phone: clean(&f.phone),
        address: clean(&f.address),
        payment_terms_days: f.payment_terms_days,
        notes: clean(&f.notes),
        created_at: at,
        updated_at: at,
        version: 1,
    })
}

fn no_such_supplier() -> ApiError {
    ApiError::NotFound {
        code: "supplier.not_found",
        detail: "There is no such supplier.".to_owned(),
    }
}

fn audited(s: &Supplier) -> Value {
    json!({"name": s.name, "tax_id": s.tax_id, "contact": s.contact, "email": s.email, "phone": s.phone,
           "address": s.address, "payment_terms_days": s.payment_terms_days, "notes": s.notes})
}

/// Create a supplier. Takes an `Idempotency-Key`.
#[utoipa::path(post, path = "/api/v1/suppliers", tag = "purchasing", security(("bearer" = [])), request_body = SupplierFields,
    params(("Idempotency-Key" = Option<String>, Header, description = "Optional: a retry with the same key answers the same supplier", pattern = "^[!-~]{1,255}$")),
    responses(
        (status = 201, description = "Created", body = Supplier),
        (status = 403, description = "Missing permission (`rbac.forbidden`)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid fields (`validation.failed`), key used with another body (`idempotency.key_reused`)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn create(
    State(state): State<AppState>,
    caller: AuthContext,
    headers: HeaderMap,
    ApiJson(body): ApiJson<Value>,
) -> Result<Response, ApiError> {
    let key = CreateKey::read(&headers, caller.user_id, "suppliers", &body)?;
    let fields: SupplierFields = from_value(body)?;
    if let Some(id) = key.earlier(&mut *state.pool().acquire().await?).await? {
        return replay(&state, id).await;
    }
    let now = state.clock().now();
    let supplier = checked(&fields, new_id(), now)?;
    let mut tx = AuditedTx::begin(state.pool(), Actor::user(&caller), now).await?;
    if let Some(id) = key.claim(&mut tx, supplier.id, caller.user_id, now).await? {
        tx.rollback().await?;
        return replay(&state, id).await;
    }
    store::insert_supplier(&mut tx, &supplier).await?;
    tx.record(
        Change::new(MODULE, "supplier", supplier.id, "supplier.create").after(audited(&supplier)),
    )
    .await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(supplier)).into_response())
}

async fn replay(state: &AppState, id: Uuid) -> Result<Response, ApiError> {
    let mut conn = state.pool().acquire().await?;
    let supplier = store::supplier(&mut conn, id, false)
        .await?
        .ok_or_else(no_such_supplier)?;
    let mut response = (StatusCode::CREATED, Json(supplier)).into_response();
    idempotency::mark_replayed(&mut response);
    Ok(response)
}

/// A page of suppliers by name.
#[utoipa::path(get, path = "/api/v1/suppliers", tag = "purchasing", security(("bearer" = [])), params(SupplierQuery),
    responses(
        (status = 200, description = "A page of suppliers", body = Page<Supplier>),
        (status = 403, description = "Missing permission (`rbac.forbidden`)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Bad limit or cursor (`validation.failed`)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn list(
    State(state): State<AppState>,
    _caller: AuthContext,
    Query(query): Query<SupplierQuery>,
) -> Result<Json<Page<Supplier>>, ApiError> {
    let limit = page_limit(query.limit, 50, 200)?;
    let offset = offset_cursor(query.cursor.as_deref())?;
    let search = query
        .search
        .as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty());
    let mut conn = state.pool().acquire().await?;
    let rows = store::suppliers(&mut conn, search, offset, limit + 1).await?;
    let (items, next_cursor) = page(rows, limit, |_| (offset + limit).to_string());
    Ok(Json(Page { items, next_cursor }))
}

/// One supplier.
#[utoipa::path(get, path = "/api/v1/suppliers/{id}", tag = "purchasing", security(("bearer" = [])), params(("id" = Uuid, Path)),
    responses(
        (status = 200, description = "The supplier", body = Supplier),
        (status = 403, description = "Missing permission (`rbac.forbidden`)", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such supplier (`supplier.not_found`)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn get(
    State(state): State<AppState>,
    _caller: AuthContext,
    Path(id): Path<Uuid>,
) -> Result<Json<Supplier>, ApiError> {
    let mut conn = state.pool().acquire().await?;
    store::supplier(&mut conn, id, false)
        .await?
        .map(Json)
        .ok_or_else(no_such_supplier)
}

/// Replace a supplier's fields (with the `version` read).
#[utoipa::path(put, path = "/api/v1/suppliers/{id}", tag = "purchasing", security(("bearer" = [])), params(("id" = Uuid, Path)), request_body = SupplierFields,
    responses(
        (status = 200, description = "Updated", body = Supplier),
        (status = 403, description = "Missing permission (`rbac.forbidden`)", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such supplier (`supplier.not_found`)", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "A stale version (`conflict.version_mismatch`)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid fields (`validation.failed`)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn update(
    State(state): State<AppState>,
    caller: AuthContext,
    Path(id): Path<Uuid>,
    ApiJson(fields): ApiJson<SupplierFields>,
) -> Result<Json<Supplier>, ApiError> {
    let Some(version) = fields.version else {
        return Err(ApiError::invalid(
            "version",
            "is required: the version you read",
        ));
    };
    let now = state.clock().now();
    let wanted = checked(&fields, id, now)?;
    let mut tx = AuditedTx::begin(state.pool(), Actor::user(&caller), now).await?;
    let before = store::supplier(&mut tx, id, true)
        .await?
        .ok_or_else(no_such_supplier)?;
    ApiError::check_version("supplier", before.version, version)?;
    let after = store::update_supplier(&mut tx, &wanted, now).await?;
    tx.record(
        Change::new(MODULE, "supplier", id, "supplier.update")
            .before(audited(&before))
            .after(audited(&after)),
    )
    .await?;
    tx.commit().await?;
    Ok(Json(after))
}

/// Delete a supplier (kept for its orders' history, gone from lists).
#[utoipa::path(post, path = "/api/v1/suppliers/{id}/delete", tag = "purchasing", security(("bearer" = [])), params(("id" = Uuid, Path)), request_body = SupplierVersion,
    responses(
        (status = 204, description = "Deleted"),
        (status = 403, description = "Missing permission (`rbac.forbidden`)", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such supplier (`supplier.not_found`)", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "A stale version (`conflict.version_mismatch`)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid fields (`validation.failed`)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn delete(
    State(state): State<AppState>,
    caller: AuthContext,
    Path(id): Path<Uuid>,
    ApiJson(body): ApiJson<SupplierVersion>,
) -> Result<StatusCode, ApiError> {
    let now = state.clock().now();
    let mut tx = AuditedTx::begin(state.pool(), Actor::user(&caller), now).await?;
    let before = store::supplier(&mut tx, id, true)
        .await?
        .ok_or_else(no_such_supplier)?;
    ApiError::check_version("supplier", before.version, body.version)?;
    store::delete_supplier(&mut tx, id, now).await?;
    tx.record(Change::new(MODULE, "supplier", id, "supplier.delete").before(audited(&before)))
        .await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Record that a supplier supplies a product, with their code for it.
#[utoipa::path(put, path = "/api/v1/suppliers/{id}/products", tag = "purchasing", security(("bearer" = [])), params(("id" = Uuid, Path)), request_body = SuppliedProduct,
    responses(
        (status = 200, description = "Recorded", body = SupplierProduct),
        (status = 403, description = "Missing permission (`rbac.forbidden`)", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such supplier (`supplier.not_found`)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid fields (`validation.failed`)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn supply(
    State(state): State<AppState>,
    caller: AuthContext,
    Path(id): Path<Uuid>,
    ApiJson(body): ApiJson<SuppliedProduct>,
) -> Result<Json<SupplierProduct>, ApiError> {
    let code = clean(&body.supplier_code);
    if code.as_ref().is_some_and(|c| c.chars().count() > 64) {
        return Err(ApiError::invalid(
            "supplier_code",
            "must be at most 64 characters",
        ));
    }
    let now = state.clock().now();
    let mut tx = AuditedTx::begin(state.pool(), Actor::user(&caller), now).await?;
    store::supplier(&mut tx, id, true)
        .await?
        .ok_or_else(no_such_supplier)?;
    if !catalog::stock_facts(&mut tx, &[body.product_id])
        .await?
        .iter()
        .any(|f| !f.archived)
    {
        return Err(ApiError::invalid("product_id", "is not a product"));
    }
    let mut supplied =
        store::set_supplier_product(&mut tx, id, body.product_id, code.as_deref()).await?;
    tx.record(
        Change::new(
            MODULE,
            "supplier_product",
            format!("{id}:{}", body.product_id),
            "supplier.product",
        )
        .after(json!({"supplier_code": supplied.supplier_code})),
    )
    .await?;
    tx.commit().await?;
    if !caller.has(catalog::COST_PRICE_READ) {
        supplied.last_price = None;
    }
    Ok(Json(supplied))
}

/// What a supplier supplies (the last price paid only for readers of cost prices).
#[utoipa::path(get, path = "/api/v1/suppliers/{id}/products", tag = "purchasing", security(("bearer" = [])), params(("id" = Uuid, Path), PageQuery),
    responses(
        (status = 200, description = "A page of the supplier's products", body = Page<SupplierProduct>),
        (status = 403, description = "Missing permission (`rbac.forbidden`)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Bad limit or cursor (`validation.failed`)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn supplied(
    State(state): State<AppState>,
    caller: AuthContext,
    Path(id): Path<Uuid>,
    Query(query): Query<PageQuery>,
) -> Result<Json<Page<SupplierProduct>>, ApiError> {
    let limit = page_limit(query.limit, 100, 500)?;
    let offset = offset_cursor(query.cursor.as_deref())?;
    let mut conn = state.pool().acquire().await?;
    let mut rows = store::supplier_products(&mut conn, id, offset, limit + 1).await?;
    if !caller.has(catalog::COST_PRICE_READ) {
        rows.iter_mut().for_each(|r| r.last_price = None);
    }
    let (items, next_cursor) = page(rows, limit, |_| (offset + limit).to_string());
    Ok(Json(Page { items, next_cursor }))
}
