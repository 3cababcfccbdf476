//! `/api/v1/stock/counts`: counting a location's shelves, posting the differences, and the
//! variance report.
//!
//! A line's book quantity is the level when the product was last counted, so the difference
//! posted (counted - book) leaves out what was sold meanwhile: the level after posting is the
//! level now plus that difference. Counts are open until posted or cancelled; scans add up.

use std::collections::{HashMap, HashSet};

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
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
use crate::plugs::administration::api::places;
use crate::plugs::management::api::catalog;
use crate::plugs::management::stock::MODULE;
use crate::plugs::management::stock::store::counts::{self, Count, CountLine};
use crate::shared::ids::new_id;
use crate::shared::money::Quantity;

/// Lines one request may enter.
const MAX_BATCH: usize = 1000;

/// A new count.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewCount {
    pub location_id: Uuid,
    /// `all` (every product at the location), `category` (with `category_id`) or `products`
    /// (with `product_ids`).
    #[schema(example = "all")]
    pub scope: String,
    pub category_id: Option<Uuid>,
    pub product_ids: Option<Vec<Uuid>>,
    pub note: Option<String>,
}

/// Counted quantities: scanner-friendly (a barcode or a product id per line; the same product
/// scanned again adds up).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CountedBatch {
    /// 1 to 1000 lines.
    pub lines: Vec<CountedLine>,
    /// `add` (default: scans add up) or `set` (the quantity replaces what was counted).
    pub mode: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CountedLine {
    pub product_id: Option<Uuid>,
    pub barcode: Option<String>,
    #[schema(example = "1")]
    pub quantity: String,
}

/// What the batch changed.
#[derive(Debug, Serialize, ToSchema)]
pub struct CountedLines {
    pub version: i64,
    pub lines: Vec<CountLine>,
}

/// Posting: the version seen, and what becomes of products in scope that nobody counted.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PostCount {
    pub version: i64,
    /// `keep` (default: their levels stay) or `zero` (they were not on the shelf: counted 0).
    pub uncounted: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CountVersion {
    pub version: i64,
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct CountQuery {
    #[param(pattern = "^(open|posted|cancelled)$")]
    pub status: Option<String>,
    pub location_id: Option<Uuid>,
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<i64>,
    #[param(pattern = "^[0-9]{1,7}$")]
    pub cursor: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct ReportQuery {
    /// `json` (default), `csv` or `pdf`.
    #[param(pattern = "^(json|csv|pdf)$")]
    pub format: Option<String>,
}

/// One product of the variance report.
#[derive(Debug, Serialize, ToSchema)]
pub struct VarianceLine {
    pub product_id: Uuid,
    pub sku: String,
    pub name: String,
    #[schema(value_type = String)]
    pub book: String,
    #[schema(value_type = String)]
    pub counted: String,
    /// counted - book.
    #[schema(value_type = String)]
    pub difference: String,
    /// Cost price (only for readers of cost prices).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub unit_cost: Option<String>,
    /// difference x cost price (only for readers of cost prices).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub value: Option<String>,
}

/// The variance report of a count.
#[derive(Debug, Serialize, ToSchema)]
pub struct VarianceReport {
    pub count: Count,
    pub lines: Vec<VarianceLine>,
    /// Sum of the differences' values (only for readers of cost prices).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub total_value: Option<String>,
}

fn no_such_count() -> ApiError {
    ApiError::NotFound {
        code: "stock.count_not_found",
        detail: "There is no such count.".to_owned(),
    }
}

/// Open a count of a location. Takes an `Idempotency-Key`.
#[utoipa::path(post, path = "/api/v1/stock/counts", tag = "stock", security(("bearer" = [])), request_body = NewCount,
    params(("Idempotency-Key" = Option<String>, Header, description = "Optional: a retry with the same key answers the same count", pattern = "^[!-~]{1,255}$")),
    responses(
        (status = 201, description = "Open", body = Count),
        (status = 403, description = "Missing permission (`rbac.forbidden`)", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The location has an open count (`count.already_open`)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid fields (`validation.failed`), key used with another body (`idempotency.key_reused`)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn create(
    State(state): State<AppState>,
    caller: AuthContext,
    headers: HeaderMap,
    ApiJson(body): ApiJson<Value>,
) -> Result<Response, ApiError> {
    let key = CreateKey::read(&headers, caller.user_id, "stock_counts", &body)?;
    let new: NewCount = from_value(body)?;
    let mut conn = state.pool().acquire().await?;
    if let Some(id) = key.earlier(&mut conn).await? {
        return answer(&mut conn, id, StatusCode::CREATED, true).await;
    }
    let (note, unique) = check_new(&mut conn, &new).await?;
    drop(conn);
    let now = state.clock().now();
    let id = new_id();
    let mut tx = AuditedTx::begin(state.pool(), Actor::user(&caller), now).await?;
    if let Some(earlier) = key.claim(&mut tx, id, caller.user_id, now).await? {
        tx.rollback().await?;
        let mut conn = state.pool().acquire().await?;
        return answer(&mut conn, earlier, StatusCode::CREATED, true).await;
    }
    let mut product_ids: Vec<Uuid> = unique.into_iter().collect();
    product_ids.sort();
    let count = Count {
        id,
        location_id: new.location_id,
        scope: new.scope.clone(),
        category_id: new.category_id,
        status: "open".to_owned(),
        note,
        created_by: caller.user_id,
        created_at: now,
        posted_by: None,
        posted_at: None,
        cancelled_by: None,
        cancelled_at: None,
        version: 1,
        lines: 0,
        product_ids,
    };
    counts::insert(&mut tx, &count).await.map_err(
        |e| match crate::core::db::violated_constraint(&e) {
            Some("stock_counts_category_id_fkey") => {
                ApiError::invalid("category_id", "is not a category")
            }
            Some("stock_counts_one_open") => ApiError::Conflict {
                code: "count.already_open",
                detail: "This location has an open count: post or cancel it first (two counts would post the same differences twice).".to_owned(),
            },
            _ => e.into(),
        },
    )?;
    tx.record(Change::new(MODULE, "stock_count", id, "stock_count.create").after(json!({
        "location_id": count.location_id, "scope": count.scope, "category_id": count.category_id,
        "products": count.product_ids.len(), "note": count.note,
    })))
    .await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(count)).into_response())
}

/// A new count checked against the rules and the database: its note and its products (for a
/// `products` count).
async fn check_new(
    conn: &mut sqlx::PgConnection,
    new: &NewCount,
) -> Result<(Option<String>, HashSet<Uuid>), ApiError> {
    let mut errors = Vec::new();
    let product_ids = new.product_ids.clone().unwrap_or_default();
    match (new.scope.as_str(), new.category_id, product_ids.is_empty()) {
        ("all", None, true) | ("category", Some(_), true) | ("products", None, false) => {}
        ("all" | "category" | "products", _, _) => errors.push(FieldError::new(
            "scope",
            "all takes neither category_id nor product_ids; category takes category_id; products takes product_ids",
        )),
        _ => errors.push(FieldError::new("scope", "must be all, category or products")),
    }
    if product_ids.len() > 20_000 {
        errors.push(FieldError::new("product_ids", "at most 20,000 products"));
    }
    let note = new
        .note
        .as_deref()
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .map(str::to_owned);
    if note.as_ref().is_some_and(|n| n.chars().count() > 500) {
        errors.push(FieldError::new("note", "must be at most 500 characters"));
    }
    if !places::location_exists(conn, new.location_id).await? {
        errors.push(FieldError::new("location_id", "is not a location"));
    }
    let unique: HashSet<Uuid> = product_ids.iter().copied().collect();
    if !product_ids.is_empty() {
        let known = catalog::stock_facts(conn, &product_ids).await?;
        if known.len() != unique.len() || known.iter().any(|p| !p.track_stock || p.archived) {
            errors.push(FieldError::new(
                "product_ids",
                "names a product that does not exist or does not track stock",
            ));
        }
    }
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    Ok((note, unique))
}

async fn answer(
    conn: &mut sqlx::PgConnection,
    id: Uuid,
    status: StatusCode,
    replayed: bool,
) -> Result<Response, ApiError> {
    let count = counts::load(conn, id, false)
        .await?
        .ok_or_else(|| ApiError::Internal(anyhow::anyhow!("count {id} vanished")))?;
    let mut response = (status, Json(count)).into_response();
    if replayed {
        idempotency::mark_replayed(&mut response);
    }
    Ok(response)
}

/// A page of counts, newest first.
#[utoipa::path(get, path = "/api/v1/stock/counts", tag = "stock", security(("bearer" = [])), params(CountQuery),
    responses(
        (status = 200, description = "A page of counts", body = Page<Count>),
        (status = 403, description = "Missing permission (`rbac.forbidden`)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Bad filter, limit or cursor (`validation.failed`)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn list(
    State(state): State<AppState>,
    _caller: AuthContext,
    Query(query): Query<CountQuery>,
) -> Result<Json<Page<Count>>, ApiError> {
    let limit = page_limit(query.limit, 50, 200)?;
    let offset = offset_cursor(query.cursor.as_deref())?;
    if query
        .status
        .as_deref()
        .is_some_and(|s| !["open", "posted", "cancelled"].contains(&s))
    {
        return Err(ApiError::invalid(
            "status",
            "must be open, posted or cancelled",
        ));
    }
    let mut conn = state.pool().acquire().await?;
    let rows = counts::list(
        &mut conn,
        query.status.as_deref(),
        query.location_id,
        offset,
        limit + 1,
    )
    .await?;
    let (items, next_cursor) = page(rows, limit, |_| (offset + limit).to_string());
    Ok(Json(Page { items, next_cursor }))
}

/// One count.
#[utoipa::path(get, path = "/api/v1/stock/counts/{id}", tag = "stock", security(("bearer" = [])), params(("id" = Uuid, Path)),
    responses(
        (status = 200, description = "The count", body = Count),
        (status = 403, description = "Missing permission (`rbac.forbidden`)", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such count (`stock.count_not_found`)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn get(
    State(state): State<AppState>,
    _caller: AuthContext,
    Path(id): Path<Uuid>,
) -> Result<Json<Count>, ApiError> {
    let mut conn = state.pool().acquire().await?;
    counts::load(&mut conn, id, false)
        .await?
        .map(Json)
        .ok_or_else(no_such_count)
}

/// Enter counted quantities (a batch of scans). The book quantity of each line becomes the
/// level now.
#[utoipa::path(post, path = "/api/v1/stock/counts/{id}/lines", tag = "stock", security(("bearer" = [])),
    params(("id" = Uuid, Path), ("Idempotency-Key" = Option<String>, Header, description = "Optional: a scanner's retry with the same key adds nothing twice", pattern = "^[!-~]{1,255}$")),
    request_body = CountedBatch,
    responses(
        (status = 200, description = "The lines as they are now", body = CountedLines),
        (status = 403, description = "Missing permission (`rbac.forbidden`)", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such count (`stock.count_not_found`)", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The count is not open (`count.wrong_state`)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid lines: unknown barcode, product outside the count (`validation.failed`)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn enter(
    State(state): State<AppState>,
    caller: AuthContext,
    Path(id): Path<Uuid>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<Value>,
) -> Result<Response, ApiError> {
    let key = CreateKey::read(&headers, caller.user_id, "stock_count_lines", &body)?;
    let batch: CountedBatch = from_value(body)?;
    let add = match batch.mode.as_deref() {
        None | Some("add") => true,
        Some("set") => false,
        Some(_) => return Err(ApiError::invalid("mode", "must be add or set")),
    };
    if batch.lines.is_empty() || batch.lines.len() > MAX_BATCH {
        return Err(ApiError::invalid(
            "lines",
            format!("must have 1 to {MAX_BATCH} lines"),
        ));
    }
    let mut conn = state.pool().acquire().await?;
    let count = counts::load(&mut conn, id, false)
        .await?
        .ok_or_else(no_such_count)?;
    let (products, quantities) = resolve(&mut conn, &count, &batch).await?;
    drop(conn);
    let now = state.clock().now();
    let mut tx = AuditedTx::begin(state.pool(), Actor::user(&caller), now).await?;
    let count = counts::load(&mut tx, id, true)
        .await?
        .ok_or_else(no_such_count)?;
    let products: Vec<Uuid> = products.into_iter().map(|(_, p)| p).collect();
    // A scanner's retry (same key) answers the lines as they are, adding nothing twice.
    if key.claim(&mut tx, id, caller.user_id, now).await?.is_some() {
        tx.rollback().await?;
        let mut conn = state.pool().acquire().await?;
        let lines = counts::lines(&mut conn, id)
            .await?
            .into_iter()
            .filter(|l| products.contains(&l.product_id))
            .collect();
        let version = counts::load(&mut conn, id, false)
            .await?
            .map_or(0, |c| c.version);
        let mut response = Json(CountedLines { version, lines }).into_response();
        idempotency::mark_replayed(&mut response);
        return Ok(response);
    }
    open(&count)?;
    let lines = counts::count_products(
        &mut tx,
        id,
        count.location_id,
        &products,
        &quantities,
        add,
        caller.user_id,
        now,
    )
    .await?;
    let version = counts::touch(&mut tx, id, now).await?;
    tx.record(Change::new(MODULE, "stock_count", id, "stock_count.lines").after(json!({
        "mode": if add { "add" } else { "set" },
        "lines": lines.iter().map(|l| json!({"product_id": l.product_id, "counted": l.counted.to_string(), "book": l.book.to_string()})).collect::<Vec<_>>(),
    })))
    .await?;
    tx.commit().await?;
    Ok(Json(CountedLines { version, lines }).into_response())
}

/// The batch's lines as (line index, product) and quantities: barcodes looked up, every product
/// in the count's scope and tracking stock.
async fn resolve(
    conn: &mut sqlx::PgConnection,
    count: &Count,
    batch: &CountedBatch,
) -> Result<(Vec<(usize, Uuid)>, Vec<Decimal>), ApiError> {
    let barcodes: Vec<String> = batch
        .lines
        .iter()
        .filter_map(|l| l.barcode.clone())
        .collect();
    let by_barcode: HashMap<String, Uuid> = catalog::ids_by_barcode(conn, &barcodes)
        .await?
        .into_iter()
        .collect();
    let mut errors = Vec::new();
    // (the batch line's index, its product), and its quantity.
    let mut products: Vec<(usize, Uuid)> = Vec::new();
    let mut quantities = Vec::new();
    for (i, line) in batch.lines.iter().enumerate() {
        let product = match (line.product_id, &line.barcode) {
            (Some(p), None) => Some(p),
            (None, Some(code)) => {
                let found = by_barcode.get(code).copied();
                if found.is_none() {
                    errors.push(FieldError::new(
                        format!("lines[{i}].barcode"),
                        format!("no product has barcode {code}"),
                    ));
                }
                found
            }
            _ => {
                errors.push(FieldError::new(
                    format!("lines[{i}]"),
                    "give product_id or barcode",
                ));
                None
            }
        };
        match Quantity::parse(&line.quantity).map(Quantity::value) {
            Ok(q) if q < Decimal::from(100_000_000_000i64) => {
                if let Some(p) = product {
                    products.push((i, p));
                    quantities.push(q);
                }
            }
            Ok(_) => errors.push(FieldError::new(
                format!("lines[{i}].quantity"),
                "is too large",
            )),
            Err(e) => errors.push(FieldError::new(format!("lines[{i}].quantity"), e)),
        }
    }
    let unique: Vec<Uuid> = products
        .iter()
        .map(|(_, p)| *p)
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    let facts = catalog::stock_facts(conn, &unique).await?;
    let tree = scope_tree(conn, count).await?;
    for (i, product) in &products {
        let fact = facts.iter().find(|f| f.id == *product);
        let in_scope = fact.is_some_and(|f| in_scope(count, &tree, f));
        if !in_scope {
            errors.push(FieldError::new(
                format!("lines[{i}]"),
                format!("product {product} is not in this count (or does not track stock)"),
            ));
        }
    }
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    Ok((products, quantities))
}

/// The categories a `category` count covers: its category and every one below it.
async fn scope_tree(conn: &mut sqlx::PgConnection, count: &Count) -> Result<Vec<Uuid>, ApiError> {
    Ok(match count.category_id {
        Some(category) if count.scope == "category" => {
            catalog::category_tree(conn, category).await?
        }
        _ => Vec::new(),
    })
}

/// Is product `f` one the count counts (tracked, not archived, in its scope)?
fn in_scope(count: &Count, tree: &[Uuid], f: &catalog::StockFacts) -> bool {
    f.track_stock
        && !f.archived
        && match count.scope.as_str() {
            "category" => f.category_id.is_some_and(|c| tree.contains(&c)),
            "products" => count.product_ids.binary_search(&f.id).is_ok(),
            _ => true,
        }
}

fn open(count: &Count) -> Result<(), ApiError> {
    match count.status.as_str() {
        "open" => Ok(()),
        other => Err(ApiError::Conflict {
            code: "count.wrong_state",
            detail: format!("this count is {other}, not open"),
        }),
    }
}

/// Post a count: each line's difference (counted - book) becomes a `count` movement.
#[utoipa::path(post, path = "/api/v1/stock/counts/{id}/post", tag = "stock", security(("bearer" = [])),
    params(("id" = Uuid, Path)), request_body = PostCount,
    responses(
        (status = 200, description = "Posted", body = Count),
        (status = 403, description = "Missing permission (`rbac.forbidden`)", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such count (`stock.count_not_found`)", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Not open (`count.wrong_state`) or a stale version (`conflict.version_mismatch`)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid fields (`validation.failed`)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn post(
    State(state): State<AppState>,
    caller: AuthContext,
    Path(id): Path<Uuid>,
    ApiJson(body): ApiJson<PostCount>,
) -> Result<Response, ApiError> {
    let zero = match body.uncounted.as_deref() {
        None | Some("keep") => false,
        Some("zero") => true,
        Some(_) => return Err(ApiError::invalid("uncounted", "must be keep or zero")),
    };
    let now = state.clock().now();
    let mut tx = AuditedTx::begin(state.pool(), Actor::user(&caller), now).await?;
    let count = counts::load(&mut tx, id, true)
        .await?
        .ok_or_else(no_such_count)?;
    ApiError::check_version("count", count.version, body.version)?;
    open(&count)?;
    let mut zeroed = 0;
    if zero {
        let candidates = counts::uncounted_with_stock(&mut tx, id, count.location_id).await?;
        let facts = catalog::stock_facts(&mut tx, &candidates).await?;
        let tree = scope_tree(&mut tx, &count).await?;
        let zero_these: Vec<Uuid> = facts
            .iter()
            .filter(|f| in_scope(&count, &tree, f))
            .map(|f| f.id)
            .collect();
        let nothing = vec![Decimal::ZERO; zero_these.len()];
        zeroed = zero_these.len();
        counts::count_products(
            &mut tx,
            id,
            count.location_id,
            &zero_these,
            &nothing,
            false,
            caller.user_id,
            now,
        )
        .await?;
    }
    let differing = usize::try_from(counts::differing_lines(&mut tx, id).await?).unwrap_or(0);
    let movement_ids: Vec<Uuid> = (0..differing).map(|_| new_id()).collect();
    let moved = counts::post(
        &mut tx,
        id,
        count.location_id,
        &movement_ids,
        caller.user_id,
        now,
    )
    .await?;
    if usize::try_from(moved).unwrap_or(0) != differing {
        return Err(ApiError::Internal(anyhow::anyhow!(
            "count {id}: {differing} differences but {moved} movements written; nothing was posted"
        )));
    }
    counts::set_status(&mut tx, id, "posted", caller.user_id, now).await?;
    // Each product's difference, for the auditor: [product, counted, book] (the level moved by
    // counted - book).
    let differences: Vec<Value> = counts::lines(&mut tx, id)
        .await?
        .iter()
        .filter(|l| l.counted != l.book)
        .map(|l| json!([l.product_id, l.counted.to_string(), l.book.to_string()]))
        .collect();
    tx.record(
        Change::new(MODULE, "stock_count", id, "stock_count.post")
            .before(json!({"status": count.status, "version": count.version}))
            .after(json!({"status": "posted", "movements": moved, "uncounted": if zero { "zero" } else { "keep" },
                          "zeroed": zeroed, "differences": differences})),
    )
    .await?;
    tx.commit().await?;
    let mut conn = state.pool().acquire().await?;
    answer(&mut conn, id, StatusCode::OK, false).await
}

/// Cancel an open count (nothing was posted).
#[utoipa::path(post, path = "/api/v1/stock/counts/{id}/cancel", tag = "stock", security(("bearer" = [])),
    params(("id" = Uuid, Path)), request_body = CountVersion,
    responses(
        (status = 200, description = "Cancelled", body = Count),
        (status = 403, description = "Missing permission (`rbac.forbidden`)", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such count (`stock.count_not_found`)", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Not open (`count.wrong_state`) or a stale version (`conflict.version_mismatch`)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid fields (`validation.failed`)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn cancel(
    State(state): State<AppState>,
    caller: AuthContext,
    Path(id): Path<Uuid>,
    ApiJson(body): ApiJson<CountVersion>,
) -> Result<Response, ApiError> {
    let now = state.clock().now();
    let mut tx = AuditedTx::begin(state.pool(), Actor::user(&caller), now).await?;
    let count = counts::load(&mut tx, id, true)
        .await?
        .ok_or_else(no_such_count)?;
    ApiError::check_version("count", count.version, body.version)?;
    open(&count)?;
    counts::set_status(&mut tx, id, "cancelled", caller.user_id, now).await?;
    tx.record(
        Change::new(MODULE, "stock_count", id, "stock_count.cancel")
            .before(json!({"status": count.status, "version": count.version}))
            .after(json!({"status": "cancelled"})),
    )
    .await?;
    tx.commit().await?;
    let mut conn = state.pool().acquire().await?;
    answer(&mut conn, id, StatusCode::OK, false).await
}

/// The variance report: per product, book, counted and difference; with the value at cost for
/// readers of cost prices (`management.catalog.cost_price.read`), in every format.
#[utoipa::path(get, path = "/api/v1/stock/counts/{id}/report", tag = "stock", security(("bearer" = [])),
    params(("id" = Uuid, Path), ReportQuery),
    responses(
        (status = 200, description = "The report as JSON, CSV or PDF", body = VarianceReport,
            content((VarianceReport = "application/json"), (String = "text/csv"), (Vec<u8> = "application/pdf"))),
        (status = 403, description = "Missing permission (`rbac.forbidden`)", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such count (`stock.count_not_found`)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Unknown format (`validation.failed`)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn report(
    State(state): State<AppState>,
    caller: AuthContext,
    Path(id): Path<Uuid>,
    Query(query): Query<ReportQuery>,
) -> Result<Response, ApiError> {
    let format = query.format.as_deref().unwrap_or("json");
    if !["json", "csv", "pdf"].contains(&format) {
        return Err(ApiError::invalid("format", "must be json, csv or pdf"));
    }
    let costs = caller.has(catalog::COST_PRICE_READ);
    let mut conn = state.pool().acquire().await?;
    let count = counts::load(&mut conn, id, false)
        .await?
        .ok_or_else(no_such_count)?;
    let lines = counts::lines(&mut conn, id).await?;
    let ids: Vec<Uuid> = lines.iter().map(|l| l.product_id).collect();
    let facts: HashMap<Uuid, catalog::StockFacts> = catalog::stock_facts(&mut conn, &ids)
        .await?
        .into_iter()
        .map(|f| (f.id, f))
        .collect();
    let mut total = Decimal::ZERO;
    let shown = |q: Decimal| {
        let mut q = q;
        q.rescale(3);
        q.to_string()
    };
    let mut variance = Vec::new();
    for line in &lines {
        let fact = facts.get(&line.product_id);
        let difference = line.counted - line.book;
        let cost = fact.and_then(|f| f.cost_price).filter(|_| costs);
        let value = cost.map(|c| crate::shared::money::round_half_up(c * difference, 2));
        total += value.unwrap_or_default();
        variance.push(VarianceLine {
            product_id: line.product_id,
            sku: fact.map(|f| f.sku.clone()).unwrap_or_default(),
            name: fact
                .map(|f| f.name.clone())
                .unwrap_or_else(|| "(archived product)".to_owned()),
            book: shown(line.book),
            counted: shown(line.counted),
            difference: shown(difference),
            unit_cost: cost.map(|c| crate::shared::money::show(c, 4)),
            value: value.map(|v| v.to_string()),
        });
    }
    let report = VarianceReport {
        count,
        lines: variance,
        total_value: costs.then(|| crate::shared::money::show(total, 2)),
    };
    match format {
        "csv" => Ok(download(
            "text/csv; charset=utf-8",
            "count-variance.csv",
            csv(&report, costs).into_bytes(),
        )),
        "pdf" => Ok(download(
            "application/pdf",
            "count-variance.pdf",
            pdf(&report, costs),
        )),
        _ => Ok(Json(report).into_response()),
    }
}

fn download(content_type: &str, name: &str, body: Vec<u8>) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type.to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{name}\""),
            ),
        ],
        body,
    )
        .into_response()
}

fn csv(report: &VarianceReport, costs: bool) -> String {
    use crate::shared::csv_cell::safe;
    let mut out = String::from(if costs {
        "product_id,sku,name,book,counted,difference,unit_cost,value\n"
    } else {
        "product_id,sku,name,book,counted,difference\n"
    });
    for l in &report.lines {
        let mut row = vec![
            l.product_id.to_string(),
            safe(&l.sku).into_owned(),
            safe(&l.name).into_owned(),
            l.book.clone(),
            l.counted.clone(),
            l.difference.clone(),
        ];
        if costs {
            row.push(l.unit_cost.clone().unwrap_or_default());
            row.push(l.value.clone().unwrap_or_default());
        }
        out.push_str(&row.join(","));
        out.push('\n');
    }
    out
}

fn pdf(report: &VarianceReport, costs: bool) -> Vec<u8> {
    use crate::shared::pdf::{Report, Table, render};
    let c = &report.count;
    let mut columns = vec![
        ("SKU", 28.0, false),
        ("Name", 62.0, false),
        ("Book", 20.0, true),
        ("Counted", 20.0, true),
        ("Diff.", 20.0, true),
    ];
    if costs {
        columns.push(("Value", 25.0, true));
    }
    let rows = report
        .lines
        .iter()
        .map(|l| {
            let mut row = vec![
                l.sku.clone(),
                l.name.clone(),
                l.book.clone(),
                l.counted.clone(),
                l.difference.clone(),
            ];
            if costs {
                row.push(l.value.clone().unwrap_or_default());
            }
            row
        })
        .collect();
    let mut header = vec![
        format!("Count {} of location {}", c.id, c.location_id),
        format!(
            "Scope: {} - status: {} - opened {}",
            c.scope,
            c.status,
            c.created_at.format("%Y-%m-%d %H:%M UTC")
        ),
    ];
    if let Some(at) = c.posted_at {
        header.push(format!("Posted {}", at.format("%Y-%m-%d %H:%M UTC")));
    }
    if let Some(total) = &report.total_value {
        header.push(format!("Value of the differences at cost: {total}"));
    }
    render(&Report {
        chart: None,
        title: "Stock count - variance report".to_owned(),
        header,
        tables: vec![Table {
            totals: None,
            title: "Counted products".to_owned(),
            columns,
            rows,
        }],
        footer: "Book = the level when the product was counted; difference = counted - book."
            .to_owned(),
        landscape: false,
    })
}
