//! `/api/v1/products`: the catalog's products, their barcodes, lookup by barcode (the scanner
//! path) and search (case- and accent-insensitive substring of name or SKU). The cost price is
//! field-protected: absent without `management.catalog.cost_price.read`, and setting it without
//! `.write` is refused with 403 `rbac.field_forbidden`.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::json;
use sqlx::PgConnection;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::core::audit::{Actor, AuditedTx, Change};
use crate::core::auth::context::{AuthContext, Authenticated};
use crate::core::db::violated_constraint;
use crate::core::http::problem::{FieldError, Problem};
use crate::core::http::{ApiError, ApiJson};
use crate::core::http::{page, page_limit};
use crate::core::rbac::record_denial;
use crate::core::settings::Business;
use crate::core::state::AppState;
use crate::plugs::management::catalog::store::products::{
    self as store, ProductFields, ProductRow, Removed,
};
use crate::plugs::management::catalog::{COST_PRICE_READ, COST_PRICE_WRITE, MODULE};
use crate::shared::ids::new_id;
use crate::shared::money::parse_amount;
use crate::shared::text::fold;

/// A product.
#[derive(Debug, Serialize, ToSchema)]
pub struct Product {
    pub id: Uuid,
    pub sku: String,
    pub name: String,
    pub barcodes: Vec<String>,
    /// Selling price (tax included, by the business setting), a decimal string.
    #[schema(value_type = String, example = "2.50")]
    pub price: String,
    /// Present only with `management.catalog.cost_price.read`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub cost_price: Option<Option<String>>,
    pub tax_class_id: Uuid,
    pub category_id: Option<Uuid>,
    pub track_stock: bool,
    pub active: bool,
    pub version: i64,
}

/// A new product.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewProduct {
    /// 1 to 64 letters, digits or `. _ / -`.
    #[schema(pattern = "^[A-Za-z0-9._/-]{1,64}$")]
    pub sku: String,
    /// 1 to 200 characters, not only spaces.
    #[schema(min_length = 1, max_length = 200)]
    pub name: String,
    #[serde(default)]
    pub barcodes: Vec<String>,
    #[schema(example = "2.50")]
    pub price: String,
    pub cost_price: Option<String>,
    pub tax_class_id: Uuid,
    pub category_id: Option<Uuid>,
    pub track_stock: Option<bool>,
    pub active: Option<bool>,
}

/// Changes to a product; absent fields stay; `version` must be current.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProductPatch {
    /// 1 to 200 characters, not only spaces.
    #[schema(min_length = 1, max_length = 200)]
    pub name: Option<String>,
    pub price: Option<String>,
    #[serde(default, deserialize_with = "crate::core::http::json::present")]
    #[schema(value_type = Option<String>)]
    pub cost_price: Option<Option<String>>,
    /// The complete new list.
    pub barcodes: Option<Vec<String>>,
    pub tax_class_id: Option<Uuid>,
    #[serde(default, deserialize_with = "crate::core::http::json::present")]
    #[schema(value_type = Option<Uuid>)]
    pub category_id: Option<Option<Uuid>>,
    pub track_stock: Option<bool>,
    pub active: Option<bool>,
    pub version: i64,
}

/// Lookup and paging.
#[derive(Debug, Deserialize, IntoParams)]
pub struct ProductQuery {
    /// Exact barcode (the scanner path).
    pub barcode: Option<String>,
    /// Substring of the name or SKU, case- and accent-insensitive.
    pub search: Option<String>,
    /// 1 to 200 (default 50).
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<i64>,
    /// The `next_cursor` of the previous page.
    #[param(pattern = "^[0-9]{1,7}$")]
    pub cursor: Option<String>,
}

/// A page of products.
#[derive(Debug, Serialize, ToSchema)]
pub struct ProductPage {
    pub items: Vec<Product>,
    pub next_cursor: Option<String>,
}

/// Prices are shown with exactly the currency's number of decimals (`scale`).
fn present_row(row: ProductRow, caller: &Authenticated, scale: u32) -> Product {
    let mut price = row.price;
    price.rescale(scale);
    Product {
        id: row.id,
        sku: row.sku,
        name: row.name,
        barcodes: row.barcodes,
        price: price.to_string(),
        cost_price: caller
            .has(COST_PRICE_READ)
            .then(|| row.cost_price.map(|c| c.to_string())),
        tax_class_id: row.tax_class_id,
        category_id: row.category_id,
        track_stock: row.track_stock,
        active: row.active,
        version: row.version,
    }
}

async fn fetch(conn: &mut PgConnection, id: Uuid) -> Result<ProductRow, ApiError> {
    store::get(conn, id)
        .await?
        .ok_or_else(|| ApiError::NotFound {
            code: "product.not_found",
            detail: format!("No product with id {id}."),
        })
}

/// The currency's number of decimals, from the cached business (in memory: the scanner path
/// makes no second round trip for it).
async fn currency_scale(state: &AppState) -> Result<u32, ApiError> {
    Ok(Business::cached(state)
        .await?
        .ok_or(ApiError::SetupRequired)?
        .currency_scale)
}

fn audit_view(row: &ProductRow) -> serde_json::Value {
    json!({
        "sku": row.sku, "name": row.name, "barcodes": row.barcodes, "price": row.price.to_string(),
        "cost_price": row.cost_price.map(|c| c.to_string()), "tax_class_id": row.tax_class_id,
        "category_id": row.category_id, "track_stock": row.track_stock, "active": row.active,
    })
}

fn check_barcodes(list: &[String], errors: &mut Vec<FieldError>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for (i, code) in list.iter().enumerate() {
        let code = code.trim();
        if code.is_empty()
            || code.len() > 64
            || !code.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        {
            errors.push(FieldError::new(
                format!("barcodes[{i}]"),
                "must be 1 to 64 letters, digits or -",
            ));
        } else if out.iter().any(|c| c == code) {
            errors.push(FieldError::new(format!("barcodes[{i}]"), "is listed twice"));
        } else {
            out.push(code.to_owned());
        }
    }
    out
}

async fn refuse_cost_write(state: &AppState, caller: &Authenticated) -> Result<(), ApiError> {
    if caller.has(COST_PRICE_WRITE) {
        return Ok(());
    }
    // Recorded on its own connection: the refused request's transaction rolls back.
    record_denial(
        state,
        caller,
        None,
        json!({"permission": COST_PRICE_WRITE, "field": "cost_price"}),
    )
    .await?;
    Err(ApiError::FieldForbidden {
        field: "cost_price".to_owned(),
        permission: COST_PRICE_WRITE.to_owned(),
    })
}

/// Maps unique and foreign-key violations to what the client did wrong.
fn map_write_error(e: sqlx::Error) -> ApiError {
    match violated_constraint(&e).unwrap_or_default() {
        "products_sku_key" => ApiError::Conflict {
            code: "product.sku_taken",
            detail: "Another product has this SKU.".to_owned(),
        },
        "product_barcodes_pkey" => ApiError::Conflict {
            code: "product.barcode_taken",
            detail: "Another product has one of these barcodes.".to_owned(),
        },
        "products_tax_class_id_fkey" => ApiError::invalid("tax_class_id", "is not a tax class"),
        "products_category_id_fkey" => ApiError::invalid("category_id", "is not a category"),
        _ => e.into(),
    }
}

/// Find products by barcode or search text, or list them by name.
#[utoipa::path(get, path = "/api/v1/products", tag = "catalog", security(("bearer" = [])), params(ProductQuery),
    responses(
        (status = 200, description = "A page of products", body = ProductPage),
        (status = 403, description = "Missing permission (`rbac.forbidden`)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Bad limit or cursor (`validation.failed`)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn list(
    State(state): State<AppState>,
    caller: AuthContext,
    Query(query): Query<ProductQuery>,
) -> Result<Json<ProductPage>, ApiError> {
    let limit = page_limit(query.limit, 50, 200)?;
    let offset = crate::core::http::offset_cursor(query.cursor.as_deref())?;
    let scale = currency_scale(&state).await?;
    let mut conn = state.pool().acquire().await?;
    let rows = if let Some(barcode) = &query.barcode {
        store::by_barcode(&mut conn, barcode.trim()).await?
    } else if let Some(search) = query
        .search
        .as_deref()
        .map(fold)
        .filter(|s| !s.trim().is_empty())
    {
        store::search(&mut conn, &search, offset + limit + 1)
            .await?
            .into_iter()
            .skip(usize::try_from(offset).unwrap_or(0))
            .collect()
    } else {
        store::by_name(&mut conn, offset, limit + 1).await?
    };
    let (rows, next_cursor) = page(rows, limit, |_| (offset + limit).to_string());
    Ok(Json(ProductPage {
        items: rows
            .into_iter()
            .map(|r| present_row(r, &caller, scale))
            .collect(),
        next_cursor,
    }))
}

/// One product.
#[utoipa::path(get, path = "/api/v1/products/{id}", tag = "catalog", security(("bearer" = [])), params(("id" = Uuid, Path, description = "Product id")),
    responses(
        (status = 200, description = "The product", body = Product),
        (status = 403, description = "Missing permission (`rbac.forbidden`)", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such product (`product.not_found`)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn get(
    State(state): State<AppState>,
    caller: AuthContext,
    Path(id): Path<Uuid>,
) -> Result<Json<Product>, ApiError> {
    let mut conn = state.pool().acquire().await?;
    let scale = currency_scale(&state).await?;
    Ok(Json(present_row(
        fetch(&mut conn, id).await?,
        &caller,
        scale,
    )))
}

/// Create a product (audited).
#[utoipa::path(post, path = "/api/v1/products", tag = "catalog", security(("bearer" = [])), request_body = NewProduct,
    responses(
        (status = 201, description = "Created", body = Product),
        (status = 403, description = "Missing permission (`rbac.forbidden`) or cost price (`rbac.field_forbidden`)", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "SKU or barcode taken (`product.sku_taken`, `product.barcode_taken`)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid fields (`validation.failed`)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn create(
    State(state): State<AppState>,
    caller: AuthContext,
    ApiJson(new): ApiJson<NewProduct>,
) -> Result<(StatusCode, Json<Product>), ApiError> {
    let mut tx = AuditedTx::begin(state.pool(), Actor::user(&caller), state.clock().now()).await?;
    if new.cost_price.is_some() {
        refuse_cost_write(&state, &caller).await?;
    }
    let scale = currency_scale(&state).await?;
    let mut errors = Vec::new();
    // Not trimmed: a SKU is matched exactly (the document gives its pattern).
    let sku = new.sku.clone();
    if sku.is_empty()
        || sku.len() > 64
        || !sku
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._/-".contains(c))
    {
        errors.push(FieldError::new(
            "sku",
            "must be 1 to 64 letters, digits or . _ / -",
        ));
    }
    let name = new.name.trim().to_owned();
    if name.is_empty() || new.name.chars().count() > 200 {
        errors.push(FieldError::new("name", "must be 1 to 200 characters"));
    }
    let price = parse_amount(&new.price, scale)
        .map_err(|why| errors.push(FieldError::new("price", why)))
        .ok();
    let cost_price = match &new.cost_price {
        Some(text) => parse_amount(text, 4)
            .map_err(|why| errors.push(FieldError::new("cost_price", why)))
            .ok(),
        None => None,
    };
    let barcodes = check_barcodes(&new.barcodes, &mut errors);
    let (Some(price), true) = (price, errors.is_empty()) else {
        return Err(ApiError::Validation(errors));
    };
    let id = new_id();
    let fields = ProductFields {
        name: &name,
        price,
        cost_price,
        tax_class_id: new.tax_class_id,
        category_id: new.category_id,
        track_stock: new.track_stock.unwrap_or(true),
        active: new.active.unwrap_or(true),
    };
    store::insert(&mut tx, id, &sku, &fields)
        .await
        .map_err(map_write_error)?;
    store::replace_barcodes(&mut tx, id, &barcodes)
        .await
        .map_err(map_write_error)?;
    let row = fetch(&mut tx, id).await?;
    tx.record(Change::new(MODULE, "product", id, "product.create").after(audit_view(&row)))
        .await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(present_row(row, &caller, scale))))
}

/// Change a product. `version` must be the current one (409 `conflict.version_mismatch`).
#[utoipa::path(patch, path = "/api/v1/products/{id}", tag = "catalog", security(("bearer" = [])), request_body = ProductPatch,
    params(("id" = Uuid, Path, description = "Product id")),
    responses(
        (status = 200, description = "Updated", body = Product),
        (status = 403, description = "Missing permission (`rbac.forbidden`) or cost price (`rbac.field_forbidden`)", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such product (`product.not_found`)", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Stale version (`conflict.version_mismatch`) or barcode taken", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid fields (`validation.failed`)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn update(
    State(state): State<AppState>,
    caller: AuthContext,
    Path(id): Path<Uuid>,
    ApiJson(patch): ApiJson<ProductPatch>,
) -> Result<Json<Product>, ApiError> {
    let mut tx = AuditedTx::begin(state.pool(), Actor::user(&caller), state.clock().now()).await?;
    if patch.cost_price.is_some() {
        refuse_cost_write(&state, &caller).await?;
    }
    let scale = currency_scale(&state).await?;
    // Lock the row so two edits cannot both pass the version check.
    store::lock(&mut tx, id).await?;
    let before = fetch(&mut tx, id).await?;
    ApiError::check_version("product", before.version, patch.version)?;
    let mut errors = Vec::new();
    let name = match &patch.name {
        Some(n) if n.trim().is_empty() || n.chars().count() > 200 => {
            errors.push(FieldError::new("name", "must be 1 to 200 characters"));
            None
        }
        other => other.as_ref().map(|n| n.trim().to_owned()),
    };
    let price = match &patch.price {
        Some(text) => parse_amount(text, scale)
            .map_err(|why| errors.push(FieldError::new("price", why)))
            .ok(),
        None => None,
    };
    let cost_price = match &patch.cost_price {
        Some(Some(text)) => parse_amount(text, 4)
            .map_err(|why| errors.push(FieldError::new("cost_price", why)))
            .ok()
            .map(Some),
        Some(None) => Some(None),
        None => None,
    };
    let barcodes = patch
        .barcodes
        .as_ref()
        .map(|list| check_barcodes(list, &mut errors));
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    let name = name.unwrap_or_else(|| before.name.clone());
    let fields = ProductFields {
        name: &name,
        price: price.unwrap_or(before.price),
        cost_price: cost_price.unwrap_or(before.cost_price),
        tax_class_id: patch.tax_class_id.unwrap_or(before.tax_class_id),
        category_id: patch.category_id.unwrap_or(before.category_id),
        track_stock: patch.track_stock.unwrap_or(before.track_stock),
        active: patch.active.unwrap_or(before.active),
    };
    store::update(&mut tx, id, &before.sku, &fields)
        .await
        .map_err(map_write_error)?;
    if let Some(barcodes) = &barcodes {
        store::replace_barcodes(&mut tx, id, barcodes)
            .await
            .map_err(map_write_error)?;
    }
    let after = fetch(&mut tx, id).await?;
    tx.record(
        Change::new(MODULE, "product", id, "product.update")
            .before(audit_view(&before))
            .after(audit_view(&after)),
    )
    .await?;
    tx.commit().await?;
    Ok(Json(present_row(after, &caller, scale)))
}

/// What deleting a product did.
#[derive(Debug, Serialize, ToSchema)]
pub struct Removal {
    pub id: Uuid,
    /// `deleted` (never used) or `archived` (sold or stocked before: kept for the records,
    /// hidden from the catalog, its barcodes freed).
    pub outcome: String,
}

/// Remove a product: deleted if nothing refers to it, otherwise archived (audited).
#[utoipa::path(delete, path = "/api/v1/products/{id}", tag = "catalog", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Product id")),
    responses(
        (status = 200, description = "Deleted or archived", body = Removal),
        (status = 403, description = "Missing permission (`rbac.forbidden`)", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such product (`product.not_found`)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn remove(
    State(state): State<AppState>,
    caller: AuthContext,
    Path(id): Path<Uuid>,
) -> Result<Json<Removal>, ApiError> {
    let mut tx = AuditedTx::begin(state.pool(), Actor::user(&caller), state.clock().now()).await?;
    store::lock(&mut tx, id).await?;
    let before = fetch(&mut tx, id).await?;
    let outcome = match store::delete_or_archive(&mut tx, id).await? {
        Removed::Deleted => {
            tx.record(
                Change::new(MODULE, "product", id, "product.delete").before(audit_view(&before)),
            )
            .await?;
            "deleted"
        }
        Removed::Archived => {
            tx.record(
                Change::new(MODULE, "product", id, "product.archive")
                    .before(audit_view(&before))
                    .after(json!({"archived": true, "active": false, "barcodes": []})),
            )
            .await?;
            "archived"
        }
    };
    tx.commit().await?;
    Ok(Json(Removal {
        id,
        outcome: outcome.to_owned(),
    }))
}
