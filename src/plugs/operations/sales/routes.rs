//! `POST /api/v1/sales` (idempotent), `GET /api/v1/sales/{id}`, `GET /api/v1/sales`.

use std::collections::HashMap;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Datelike, SubsecRound, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::pricing::{LineInput, PaymentInput, PricingError, price};
use super::store::{
    self, Payment, Sale, SaleLine, TaxLine, Totals, open_register, show_quantity, show_rate,
};
use super::{PRICE_OVERRIDE, READ};
use crate::core::audit::{Actor, AuditedTx, Change};
use crate::core::auth::context::AuthContext;
use crate::core::http::idempotency::{self, Claim};
use crate::core::http::json::from_value;
use crate::core::http::problem::{FieldError, Problem};
use crate::core::http::{ApiError, ApiJson};
use crate::core::settings::Business;
use crate::core::state::AppState;
use crate::plugs::management::api::{catalog, stock};
use crate::shared::ids::new_id;
use crate::shared::money::{QUANTITY_SCALE, parse_amount, parse_money, show};

const MODULE: &str = "operations.sales";
const MAX_LINES: usize = 500;
const MAX_PAYMENTS: usize = 20;
const METHODS: &[&str] = &["cash", "card", "voucher", "other"];

/// A sale to record.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewSale {
    /// Optional client-made id (UUIDv7 recommended): a sale with this id that exists already is
    /// returned as a replay.
    pub id: Option<Uuid>,
    pub register_id: Uuid,
    pub lines: Vec<NewLine>,
    pub payments: Vec<NewPayment>,
}

/// A line to sell.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewLine {
    pub product_id: Uuid,
    /// More than zero, three decimals at most.
    #[schema(example = "2")]
    pub quantity: String,
    /// Defaults to the catalog price; another price needs `operations.sales.price_override`.
    pub unit_price: Option<String>,
    /// An amount off the line total.
    pub discount: Option<String>,
}

/// A payment.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewPayment {
    /// `cash`, `card`, `voucher` or `other`.
    pub method: String,
    #[schema(example = "10.00")]
    pub amount: String,
}

fn created(sale: Sale, replayed: bool) -> Response {
    let location = format!("/api/v1/sales/{}", sale.id);
    let mut response = (StatusCode::CREATED, Json(sale)).into_response();
    if let Ok(value) = location.parse() {
        response.headers_mut().insert(header::LOCATION, value);
    }
    if replayed {
        let (name, value) = idempotency::replayed();
        response.headers_mut().insert(name, value);
    }
    response
}

async fn replay(state: &AppState, id: Uuid, scale: u32) -> Result<Response, ApiError> {
    let mut conn = state.pool().acquire().await?;
    let sale = store::load(&mut conn, id, scale)
        .await?
        .ok_or_else(|| ApiError::Internal(anyhow::anyhow!("idempotent sale {id} vanished")))?;
    Ok(created(sale, true))
}

fn money(field: String, text: &str, scale: u32, errors: &mut Vec<FieldError>) -> Option<Decimal> {
    parse_money(text, scale)
        .map_err(|why| errors.push(FieldError::new(field, why)))
        .ok()
}

/// Record a completed sale. Send an `Idempotency-Key`: a retry returns the first response with
/// `Idempotent-Replayed: true`, and no sale is ever recorded twice.
#[utoipa::path(post, path = "/api/v1/sales", tag = "sales", security(("bearer" = [])), request_body = NewSale,
    params(("Idempotency-Key" = String, Header, description = "Unique per sale attempt (a UUID); required")),
    responses(
        (status = 201, description = "Recorded (or replayed, with `Idempotent-Replayed: true`)", body = Sale),
        (status = 400, description = "No or bad Idempotency-Key (`idempotency.key_required`, `idempotency.key_invalid`)", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Missing permission (`rbac.forbidden`), e.g. `operations.sales.price_override`", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "No open cash session on the register (`cash.no_open_session`)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid fields (`validation.failed`), payments short (`payment.insufficient`) or non-cash over the total (`payment.overpaid`), key used with another body (`idempotency.key_reused`)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn create(
    State(state): State<AppState>,
    caller: AuthContext,
    headers: HeaderMap,
    ApiJson(body): ApiJson<Value>,
) -> Result<Response, ApiError> {
    let key = idempotency::key(&headers)?;
    let hash = idempotency::request_hash(&body);
    let new: NewSale = from_value(body)?;
    let now = state.clock().now().trunc_subsecs(6);
    let sale_id = new.id.unwrap_or_else(new_id);

    let mut tx = AuditedTx::begin(state.pool(), Actor::user(&caller), now).await?;
    let business = Business::load(&mut tx)
        .await?
        .ok_or(ApiError::SetupRequired)?;
    let scale = business.currency_scale;
    // First the key: a racing retry waits here until this request commits or rolls back.
    let claim =
        idempotency::claim(&mut tx, "sales", &key, &hash, sale_id, caller.user_id, now).await?;
    if let Claim::Replay(id) = claim {
        drop(tx);
        return replay(&state, id, scale).await;
    }
    if new.id.is_some() {
        let exists: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM sales WHERE id = $1)")
            .bind(sale_id)
            .fetch_one(&mut *tx)
            .await?;
        if exists {
            drop(tx);
            return replay(&state, sale_id, scale).await;
        }
    }

    // Validate the shape before touching anything else.
    let mut errors = Vec::new();
    if new.lines.is_empty() || new.lines.len() > MAX_LINES {
        errors.push(FieldError::new(
            "lines",
            format!("must hold 1 to {MAX_LINES} lines"),
        ));
    }
    if new.payments.is_empty() || new.payments.len() > MAX_PAYMENTS {
        errors.push(FieldError::new(
            "payments",
            format!("must hold 1 to {MAX_PAYMENTS} payments"),
        ));
    }
    // The register, its open cash session (share-locked until this sale commits) and the
    // receipt counter (locked too; every early return below rolls back and gives it back).
    let year = now.with_timezone(&business.timezone).year();
    let register = open_register(&mut tx, new.register_id, year).await?;
    if register.is_none() {
        errors.push(FieldError::new("register_id", "is not a register"));
    }
    let product_ids: Vec<Uuid> = new.lines.iter().map(|l| l.product_id).collect();
    let products: HashMap<Uuid, catalog::SaleProduct> =
        catalog::products_for_sale(&mut tx, &product_ids)
            .await?
            .into_iter()
            .map(|p| (p.id, p))
            .collect();
    let mut inputs = Vec::with_capacity(new.lines.len());
    let mut overridden = Vec::new();
    for (i, line) in new.lines.iter().enumerate() {
        let product = match products.get(&line.product_id) {
            Some(p) if p.active => Some(p),
            Some(_) => {
                errors.push(FieldError::new(
                    format!("lines[{i}].product_id"),
                    "is not for sale (inactive)",
                ));
                None
            }
            None => {
                errors.push(FieldError::new(
                    format!("lines[{i}].product_id"),
                    "is not a product",
                ));
                None
            }
        };
        let quantity = match parse_amount(&line.quantity, QUANTITY_SCALE) {
            Ok(q) if q.is_zero() => {
                errors.push(FieldError::new(
                    format!("lines[{i}].quantity"),
                    "must be more than zero",
                ));
                None
            }
            Ok(q) if q >= Decimal::from(1_000_000) => {
                errors.push(FieldError::new(
                    format!("lines[{i}].quantity"),
                    "is too large",
                ));
                None
            }
            Ok(q) => Some(q),
            Err(why) => {
                errors.push(FieldError::new(format!("lines[{i}].quantity"), why));
                None
            }
        };
        let unit_price = match &line.unit_price {
            Some(text) => money(format!("lines[{i}].unit_price"), text, scale, &mut errors),
            None => product.map(|p| p.price),
        };
        let discount = match &line.discount {
            Some(text) => money(format!("lines[{i}].discount"), text, scale, &mut errors),
            None => Some(Decimal::ZERO),
        };
        if let (Some(product), Some(quantity), Some(unit_price), Some(discount)) =
            (product, quantity, unit_price, discount)
        {
            if unit_price != product.price {
                overridden.push(i);
            }
            inputs.push((
                product,
                LineInput {
                    quantity,
                    unit_price,
                    discount,
                    tax_rate: product.tax_rate,
                },
            ));
        }
    }
    let mut payments = Vec::with_capacity(new.payments.len());
    for (i, payment) in new.payments.iter().enumerate() {
        if !METHODS.contains(&payment.method.as_str()) {
            errors.push(FieldError::new(
                format!("payments[{i}].method"),
                "must be cash, card, voucher or other",
            ));
        }
        match money(
            format!("payments[{i}].amount"),
            &payment.amount,
            scale,
            &mut errors,
        ) {
            Some(a) if a.is_zero() => errors.push(FieldError::new(
                format!("payments[{i}].amount"),
                "must be more than zero",
            )),
            Some(a) => payments.push(PaymentInput {
                cash: payment.method == "cash",
                amount: a,
            }),
            None => {}
        }
    }
    let Some(register) = register.filter(|_| errors.is_empty()) else {
        return Err(ApiError::Validation(errors));
    };
    if !overridden.is_empty() {
        caller.require(&state, PRICE_OVERRIDE).await?;
    }
    let line_inputs: Vec<LineInput> = inputs.iter().map(|(_, l)| *l).collect();
    let priced = price(
        &line_inputs,
        &payments,
        business.prices_include_tax,
        scale,
        business.cash_rounding,
    )
    .map_err(|e| match e {
        PricingError::DiscountTooLarge { index } => ApiError::invalid(
            format!("lines[{index}].discount"),
            "is larger than the line amount",
        ),
        PricingError::NonCashExceedsTotal { total, non_cash } => ApiError::Unprocessable {
            code: "payment.overpaid",
            detail: format!(
                "Card, voucher and other payments ({}) exceed the total ({}); only cash may exceed it.",
                show(non_cash, scale),
                show(total, scale)
            ),
        },
        PricingError::Insufficient { due, paid } => ApiError::Unprocessable {
            code: "payment.insufficient",
            detail: format!(
                "The payments ({}) do not cover the amount due ({}).",
                show(paid, scale),
                show(due, scale)
            ),
        },
    })?;

    let (Some(session_id), Some(counter)) = (register.session_id, register.counter) else {
        return Err(ApiError::Conflict {
            code: "cash.no_open_session",
            detail: "This register has no open cash session; open one first (POST /api/v1/cash-sessions).".to_owned(),
        });
    };
    let receipt_number = business.receipt_number(&register.code, year, counter);

    let lines: Vec<SaleLine> = inputs
        .iter()
        .zip(&priced.line_totals)
        .enumerate()
        .map(|(i, ((product, input), total))| SaleLine {
            line_no: i32::try_from(i + 1).unwrap_or(i32::MAX),
            product_id: product.id,
            sku: product.sku.clone(),
            name: product.name.clone(),
            quantity: show_quantity(input.quantity),
            unit_price: show(input.unit_price, scale),
            catalog_price: show(product.price, scale),
            discount: show(input.discount, scale),
            total: show(*total, scale),
            tax_rate: show_rate(input.tax_rate),
        })
        .collect();
    let payment_methods: Vec<String> = new.payments.iter().map(|p| p.method.clone()).collect();
    // One round trip: the sale, its lines, payments and tax buckets (foreign keys are checked at
    // the end of the statement, when the sale row exists).
    let inserted = sqlx::query(
        "WITH s AS (INSERT INTO sales (id, register_id, cash_session_id, cashier_id, receipt_year, receipt_seq, receipt_number, \
             status, currency, prices_include_tax, net, tax, total, cash_rounding, change_due, created_at) \
           VALUES ($1, $2, $3, $4, $5, $6, $7, 'completed', $8, $9, $10, $11, $12, $13, $14, $15) RETURNING id), \
         l AS (INSERT INTO sale_lines (sale_id, line_no, product_id, sku, name, quantity, catalog_price, unit_price, discount, total, tax_class_id, tax_rate) \
           SELECT $1, l.* FROM unnest($16::int[], $17::uuid[], $18::text[], $19::text[], $20::numeric[], $21::numeric[], $22::numeric[], \
                                      $23::numeric[], $24::numeric[], $25::uuid[], $26::numeric[]) AS l), \
         p AS (INSERT INTO sale_payments (sale_id, line_no, method, amount) \
           SELECT $1, p.n, p.method, p.amount FROM unnest($27::text[], $28::numeric[]) WITH ORDINALITY AS p(method, amount, n)) \
         INSERT INTO sale_taxes (sale_id, rate, net, tax, gross) \
           SELECT $1, t.* FROM unnest($29::numeric[], $30::numeric[], $31::numeric[], $32::numeric[]) AS t",
    )
    .bind(sale_id)
    .bind(new.register_id)
    .bind(session_id)
    .bind(caller.user_id)
    .bind(year)
    .bind(counter)
    .bind(&receipt_number)
    .bind(&business.currency)
    .bind(business.prices_include_tax)
    .bind(priced.net)
    .bind(priced.tax)
    .bind(priced.total)
    .bind(priced.cash_rounding)
    .bind(priced.change_due)
    .bind(now)
    .bind(lines.iter().map(|l| l.line_no).collect::<Vec<_>>())
    .bind(inputs.iter().map(|(p, _)| p.id).collect::<Vec<_>>())
    .bind(inputs.iter().map(|(p, _)| p.sku.clone()).collect::<Vec<_>>())
    .bind(inputs.iter().map(|(p, _)| p.name.clone()).collect::<Vec<_>>())
    .bind(inputs.iter().map(|(_, l)| l.quantity).collect::<Vec<_>>())
    .bind(inputs.iter().map(|(p, _)| p.price).collect::<Vec<_>>())
    .bind(inputs.iter().map(|(_, l)| l.unit_price).collect::<Vec<_>>())
    .bind(inputs.iter().map(|(_, l)| l.discount).collect::<Vec<_>>())
    .bind(&priced.line_totals)
    .bind(inputs.iter().map(|(p, _)| p.tax_class_id).collect::<Vec<_>>())
    .bind(inputs.iter().map(|(_, l)| l.tax_rate).collect::<Vec<_>>())
    .bind(&payment_methods)
    .bind(payments.iter().map(|p| p.amount).collect::<Vec<_>>())
    .bind(priced.taxes.iter().map(|t| t.rate).collect::<Vec<_>>())
    .bind(priced.taxes.iter().map(|t| t.net).collect::<Vec<_>>())
    .bind(priced.taxes.iter().map(|t| t.tax).collect::<Vec<_>>())
    .bind(priced.taxes.iter().map(|t| t.gross).collect::<Vec<_>>())
    .execute(&mut *tx)
    .await;
    if let Err(e) = inserted {
        if e.as_database_error().and_then(|d| d.constraint()) == Some("sales_pkey") {
            // The same client id raced in under another key: that sale stands.
            drop(tx);
            return replay(&state, sale_id, scale).await;
        }
        return Err(e.into());
    }

    let tracked: Vec<(Uuid, Decimal)> = inputs
        .iter()
        .filter(|(p, _)| p.track_stock)
        .map(|(p, l)| (p.id, l.quantity))
        .collect();
    let stock_changes = stock::take_for_document(
        &mut tx,
        register.location_id,
        &tracked,
        "sale",
        sale_id,
        caller.user_id,
    )
    .await?;

    let sale = Sale {
        id: sale_id,
        receipt_number,
        status: "completed".to_owned(),
        register_id: new.register_id,
        cash_session_id: session_id,
        cashier_id: caller.user_id,
        currency: business.currency.clone(),
        prices_include_tax: business.prices_include_tax,
        lines,
        totals: Totals {
            net: show(priced.net, scale),
            tax: show(priced.tax, scale),
            total: show(priced.total, scale),
        },
        taxes: priced
            .taxes
            .iter()
            .map(|t| TaxLine {
                rate: show_rate(t.rate),
                net: show(t.net, scale),
                tax: show(t.tax, scale),
                gross: show(t.gross, scale),
            })
            .collect(),
        payments: new
            .payments
            .iter()
            .zip(&payments)
            .map(|(p, input)| Payment {
                method: p.method.clone(),
                amount: show(input.amount, scale),
            })
            .collect(),
        cash_rounding: show(priced.cash_rounding, scale),
        change_due: show(priced.change_due, scale),
        created_at: now,
    };
    let overrides: Vec<Value> = overridden
        .iter()
        .map(|&i| json!({"line_no": i + 1, "catalog_price": sale.lines[i].catalog_price, "unit_price": sale.lines[i].unit_price}))
        .collect();
    tx.record(
        Change::new(MODULE, "sale", sale_id, "sale.complete").after(json!({
            "receipt_number": sale.receipt_number, "register_id": sale.register_id,
            "cash_session_id": session_id, "totals": sale.totals, "taxes": sale.taxes,
            "payments": sale.payments, "change_due": sale.change_due, "cash_rounding": sale.cash_rounding,
            "lines": sale.lines.len(), "price_overrides": overrides, "stock": stock_changes,
            "idempotency_key": key,
        })),
    )
    .await?;
    tx.commit().await?;
    metrics::counter!("plugpos_sales_total").increment(1);
    state.live().publish(
        "sales",
        "sale.completed",
        json!({
            "id": sale.id, "receipt_number": sale.receipt_number, "register_id": sale.register_id,
            "cash_session_id": sale.cash_session_id, "cashier_id": sale.cashier_id,
            "currency": sale.currency, "totals": sale.totals, "created_at": sale.created_at,
        }),
    );
    Ok(created(sale, false))
}

/// One sale.
#[utoipa::path(get, path = "/api/v1/sales/{id}", tag = "sales", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Sale id")),
    responses(
        (status = 200, description = "The sale", body = Sale),
        (status = 403, description = "Missing permission (`rbac.forbidden`)", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such sale (`sale.not_found`)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn get(
    State(state): State<AppState>,
    _caller: AuthContext,
    Path(id): Path<Uuid>,
) -> Result<Json<Sale>, ApiError> {
    let mut conn = state.pool().acquire().await?;
    let scale = Business::load(&mut conn)
        .await?
        .ok_or(ApiError::SetupRequired)?
        .currency_scale;
    store::load(&mut conn, id, scale)
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::NotFound {
            code: "sale.not_found",
            detail: format!("No sale with id {id}."),
        })
}

/// Filters and paging.
#[derive(Debug, Deserialize, IntoParams)]
pub struct SaleQuery {
    /// Sales at or after this time (RFC 3339).
    pub from: Option<DateTime<Utc>>,
    /// Sales before this time (RFC 3339).
    pub to: Option<DateTime<Utc>>,
    pub register_id: Option<Uuid>,
    pub cashier_id: Option<Uuid>,
    /// 1 to 200 (default 50).
    pub limit: Option<i64>,
    pub cursor: Option<String>,
}

/// A sale in a list.
#[derive(Debug, Serialize, ToSchema)]
pub struct SaleSummary {
    pub id: Uuid,
    pub receipt_number: String,
    pub status: String,
    pub register_id: Uuid,
    pub cashier_id: Uuid,
    pub cash_session_id: Uuid,
    #[schema(value_type = String)]
    pub total: String,
    pub created_at: DateTime<Utc>,
}

/// A page of sales, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct SalePage {
    pub items: Vec<SaleSummary>,
    pub next_cursor: Option<String>,
}

/// Sales, newest first, filtered by time, register and cashier.
#[utoipa::path(get, path = "/api/v1/sales", tag = "sales", security(("bearer" = [])), params(SaleQuery),
    responses(
        (status = 200, description = "A page of sales", body = SalePage),
        (status = 403, description = "Missing permission (`rbac.forbidden`)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Bad limit or cursor (`validation.failed`)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn list(
    State(state): State<AppState>,
    caller: AuthContext,
    Query(query): Query<SaleQuery>,
) -> Result<Json<SalePage>, ApiError> {
    debug_assert!(caller.has(READ));
    let limit = query.limit.unwrap_or(50);
    if !(1..=200).contains(&limit) {
        return Err(ApiError::invalid("limit", "must be 1 to 200"));
    }
    // The cursor is the last item's `<created_at micros>_<id>`.
    let after: Option<(DateTime<Utc>, Uuid)> = match &query.cursor {
        Some(c) => Some(
            c.split_once('_')
                .and_then(|(t, id)| {
                    Some((
                        DateTime::from_timestamp_micros(t.parse().ok()?)?,
                        id.parse().ok()?,
                    ))
                })
                .ok_or_else(|| ApiError::invalid("cursor", "is not a cursor from this list"))?,
        ),
        None => None,
    };
    let mut conn = state.pool().acquire().await?;
    let scale = Business::load(&mut conn)
        .await?
        .ok_or(ApiError::SetupRequired)?
        .currency_scale;
    #[derive(sqlx::FromRow)]
    struct Row {
        id: Uuid,
        receipt_number: String,
        status: String,
        register_id: Uuid,
        cashier_id: Uuid,
        cash_session_id: Uuid,
        total: Decimal,
        created_at: DateTime<Utc>,
    }
    let rows: Vec<Row> = sqlx::query_as(
            "SELECT id, receipt_number, status, register_id, cashier_id, cash_session_id, total, created_at FROM sales \
             WHERE ($1::timestamptz IS NULL OR created_at >= $1) AND ($2::timestamptz IS NULL OR created_at < $2) \
               AND ($3::uuid IS NULL OR register_id = $3) AND ($4::uuid IS NULL OR cashier_id = $4) \
               AND ($5::timestamptz IS NULL OR (created_at, id) < ($5, $6)) \
             ORDER BY created_at DESC, id DESC LIMIT $7",
        )
        .bind(query.from)
        .bind(query.to)
        .bind(query.register_id)
        .bind(query.cashier_id)
        .bind(after.map(|a| a.0))
        .bind(after.map(|a| a.1))
        .bind(limit + 1)
        .fetch_all(&mut *conn)
        .await?;
    let mut items: Vec<SaleSummary> = rows
        .into_iter()
        .map(|r| SaleSummary {
            id: r.id,
            receipt_number: r.receipt_number,
            status: r.status,
            register_id: r.register_id,
            cashier_id: r.cashier_id,
            cash_session_id: r.cash_session_id,
            total: show(r.total, scale),
            created_at: r.created_at,
        })
        .collect();
    let next_cursor = if items.len() as i64 > limit {
        items.truncate(usize::try_from(limit).unwrap_or(0));
        items
            .last()
            .map(|s| format!("{}_{}", s.created_at.timestamp_micros(), s.id))
    } else {
        None
    };
    Ok(Json(SalePage { items, next_cursor }))
}
