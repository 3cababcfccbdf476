//! Purchasing's SQL: `suppliers`, `supplier_products`, `purchase_orders` (with their lines and
//! counter) and `goods_receipts` (with their lines).

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::Serialize;
use sqlx::PgConnection;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::core::audit::AuditedTx;

/// A supplier.
#[derive(Debug, Clone, Serialize, ToSchema, sqlx::FromRow)]
pub struct Supplier {
    pub id: Uuid,
    pub name: String,
    pub tax_id: Option<String>,
    pub contact: Option<String>,
    pub email: Option<String>,
    pub phone: Option<String>,
    pub address: Option<String>,
    pub payment_terms_days: Option<i32>,
    pub notes: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub version: i64,
}

const SUPPLIER: &str = "id, name, tax_id, contact, email, phone, address, payment_terms_days, notes, created_at, \
     updated_at, version";

pub async fn insert_supplier(tx: &mut AuditedTx, s: &Supplier) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO suppliers (id, name, tax_id, contact, email, phone, address, payment_terms_days, notes, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10)",
    )
    .bind(s.id)
    .bind(&s.name)
    .bind(&s.tax_id)
    .bind(&s.contact)
    .bind(&s.email)
    .bind(&s.phone)
    .bind(&s.address)
    .bind(s.payment_terms_days)
    .bind(&s.notes)
    .bind(s.created_at)
    .execute(&mut **tx)
    .await
    .map(drop)
}

/// Live supplier `id` (`FOR UPDATE` when `lock`).
pub async fn supplier(
    conn: &mut PgConnection,
    id: Uuid,
    lock: bool,
) -> Result<Option<Supplier>, sqlx::Error> {
    let sql = format!(
        "SELECT {SUPPLIER} FROM suppliers WHERE id = $1 AND deleted_at IS NULL{}",
        if lock { " FOR UPDATE" } else { "" }
    );
    sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .fetch_optional(conn)
        .await
}

pub async fn update_supplier(
    tx: &mut AuditedTx,
    s: &Supplier,
    at: DateTime<Utc>,
) -> Result<Supplier, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "UPDATE suppliers SET name = $2, tax_id = $3, contact = $4, email = $5, phone = $6, address = $7, \
             payment_terms_days = $8, notes = $9, updated_at = $10, version = version + 1 WHERE id = $1 RETURNING {SUPPLIER}"
    )))
    .bind(s.id)
    .bind(&s.name)
    .bind(&s.tax_id)
    .bind(&s.contact)
    .bind(&s.email)
    .bind(&s.phone)
    .bind(&s.address)
    .bind(s.payment_terms_days)
    .bind(&s.notes)
    .bind(at)
    .fetch_one(&mut **tx)
    .await
}

pub async fn delete_supplier(
    tx: &mut AuditedTx,
    id: Uuid,
    at: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE suppliers SET deleted_at = $2, updated_at = $2, version = version + 1 WHERE id = $1")
        .bind(id)
        .bind(at)
        .execute(&mut **tx)
        .await
        .map(drop)
}

/// A page of live suppliers by name, optionally those whose name contains `search`.
pub async fn suppliers(
    conn: &mut PgConnection,
    search: Option<&str>,
    offset: i64,
    limit: i64,
) -> Result<Vec<Supplier>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {SUPPLIER} FROM suppliers WHERE deleted_at IS NULL \
         AND ($1::text IS NULL OR strpos(lower(name), lower($1)) > 0) ORDER BY lower(name), id OFFSET $2 LIMIT $3"
    )))
    .bind(search)
    .bind(offset)
    .bind(limit)
    .fetch_all(conn)
    .await
}

/// What a supplier supplies.
#[derive(Debug, Clone, Serialize, ToSchema, sqlx::FromRow)]
pub struct SupplierProduct {
    pub product_id: Uuid,
    /// The supplier's own code for it.
    pub supplier_code: Option<String>,
    /// The last price paid (cost readers only).
    #[schema(value_type = Option<String>)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_price: Option<Decimal>,
    pub last_received_at: Option<DateTime<Utc>>,
}

pub async fn set_supplier_product(
    tx: &mut AuditedTx,
    supplier_id: Uuid,
    product_id: Uuid,
    code: Option<&str>,
) -> Result<SupplierProduct, sqlx::Error> {
    sqlx::query_as(
        "INSERT INTO supplier_products (supplier_id, product_id, supplier_code) VALUES ($1, $2, $3) \
         ON CONFLICT (supplier_id, product_id) DO UPDATE SET supplier_code = EXCLUDED.supplier_code \
         RETURNING product_id, supplier_code, last_price, last_received_at",
    )
    .bind(supplier_id)
    .bind(product_id)
    .bind(code)
    .fetch_one(&mut **tx)
    .await
}

pub async fn supplier_products(
    conn: &mut PgConnection,
    supplier_id: Uuid,
    offset: i64,
    limit: i64,
) -> Result<Vec<SupplierProduct>, sqlx::Error> {
    sqlx::query_as(
        "SELECT product_id, supplier_code, last_price, last_received_at FROM supplier_products \
         WHERE supplier_id = $1 ORDER BY product_id OFFSET $2 LIMIT $3",
    )
    .bind(supplier_id)
    .bind(offset)
    .bind(limit)
    .fetch_all(conn)
    .await
}

/// A purchase order.
#[derive(Debug, Clone, Serialize, ToSchema, sqlx::FromRow)]
pub struct Order {
    pub id: Uuid,
    pub number: i64,
    pub supplier_id: Uuid,
    /// Where the goods are received.
    pub location_id: Uuid,
    /// `draft`, `ordered`, `partially_received`, `received` or `cancelled`.
    pub status: String,
    pub note: Option<String>,
    pub created_by: Uuid,
    pub created_at: DateTime<Utc>,
    pub ordered_at: Option<DateTime<Utc>>,
    pub version: i64,
    #[sqlx(skip)]
    pub lines: Vec<OrderLine>,
}

/// One product of an order.
#[derive(Debug, Clone, Serialize, ToSchema, sqlx::FromRow)]
pub struct OrderLine {
    pub line_no: i32,
    pub product_id: Uuid,
    #[schema(value_type = String)]
    pub quantity: Decimal,
    /// Cost readers only.
    #[schema(value_type = Option<String>)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unit_cost: Option<Decimal>,
    #[schema(value_type = String)]
    pub received_quantity: Decimal,
}

const ORDER: &str = "id, number, supplier_id, location_id, status, note, created_by, created_at, ordered_at, version";

pub async fn next_order_number(tx: &mut AuditedTx) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(
        "INSERT INTO purchase_order_counters AS c (id, last_number) VALUES (1, 1) \
         ON CONFLICT (id) DO UPDATE SET last_number = c.last_number + 1 RETURNING c.last_number",
    )
    .fetch_one(&mut **tx)
    .await
}

pub async fn insert_order(tx: &mut AuditedTx, o: &Order) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO purchase_orders (id, number, supplier_id, location_id, status, note, created_by, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, 'draft', $5, $6, $7, $7)",
    )
    .bind(o.id)
    .bind(o.number)
    .bind(o.supplier_id)
    .bind(o.location_id)
    .bind(&o.note)
    .bind(o.created_by)
    .bind(o.created_at)
    .execute(&mut **tx)
    .await?;
    let nos: Vec<i32> = o.lines.iter().map(|l| l.line_no).collect();
    let products: Vec<Uuid> = o.lines.iter().map(|l| l.product_id).collect();
    let quantities: Vec<Decimal> = o.lines.iter().map(|l| l.quantity).collect();
    let costs: Vec<Decimal> = o
        .lines
        .iter()
        .map(|l| l.unit_cost.unwrap_or_default())
        .collect();
    sqlx::query(
        "INSERT INTO purchase_order_lines (order_id, line_no, product_id, quantity, unit_cost) \
         SELECT $1, * FROM unnest($2::int[], $3::uuid[], $4::numeric[], $5::numeric[])",
    )
    .bind(o.id)
    .bind(nos)
    .bind(products)
    .bind(quantities)
    .bind(costs)
    .execute(&mut **tx)
    .await
    .map(drop)
}

/// Order `id` with its lines (`FOR UPDATE` of the order when `lock`).
pub async fn order(
    conn: &mut PgConnection,
    id: Uuid,
    lock: bool,
) -> Result<Option<Order>, sqlx::Error> {
    let sql = format!(
        "SELECT {ORDER} FROM purchase_orders WHERE id = $1{}",
        if lock { " FOR UPDATE" } else { "" }
    );
    let Some(mut order) = sqlx::query_as::<_, Order>(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?
    else {
        return Ok(None);
    };
    order.lines = sqlx::query_as(
        "SELECT line_no, product_id, quantity, unit_cost, received_quantity FROM purchase_order_lines \
         WHERE order_id = $1 ORDER BY line_no",
    )
    .bind(id)
    .fetch_all(conn)
    .await?;
    Ok(Some(order))
}

/// A page of orders, newest first (without their lines).
pub async fn orders(
    conn: &mut PgConnection,
    status: Option<&str>,
    supplier_id: Option<Uuid>,
    offset: i64,
    limit: i64,
) -> Result<Vec<Order>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {ORDER} FROM purchase_orders WHERE ($1::text IS NULL OR status = $1) \
         AND ($2::uuid IS NULL OR supplier_id = $2) ORDER BY created_at DESC, id DESC OFFSET $3 LIMIT $4"
    )))
    .bind(status)
    .bind(supplier_id)
    .bind(offset)
    .bind(limit)
    .fetch_all(conn)
    .await
}

pub async fn set_order_status(
    tx: &mut AuditedTx,
    id: Uuid,
    status: &str,
    at: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE purchase_orders SET status = $2, updated_at = $3, version = version + 1, \
             ordered_at = CASE WHEN $2 = 'ordered' THEN $3 ELSE ordered_at END WHERE id = $1",
    )
    .bind(id)
    .bind(status)
    .bind(at)
    .execute(&mut **tx)
    .await
    .map(drop)
}

/// One line of a goods receipt as written.
pub struct ReceiptLine {
    pub line_no: i32,
    pub product_id: Uuid,
    pub quantity: Decimal,
    pub unit_cost: Decimal,
    pub cost_after: Decimal,
}

pub async fn insert_receipt(
    tx: &mut AuditedTx,
    id: Uuid,
    order_id: Uuid,
    note: Option<&str>,
    by: Uuid,
    at: DateTime<Utc>,
    lines: &[ReceiptLine],
) -> Result<(), sqlx::Error> {
    sqlx::query("INSERT INTO goods_receipts (id, order_id, note, received_by, received_at) VALUES ($1, $2, $3, $4, $5)")
        .bind(id)
        .bind(order_id)
        .bind(note)
        .bind(by)
        .bind(at)
        .execute(&mut **tx)
        .await?;
    let nos: Vec<i32> = lines.iter().map(|l| l.line_no).collect();
    let products: Vec<Uuid> = lines.iter().map(|l| l.product_id).collect();
    let quantities: Vec<Decimal> = lines.iter().map(|l| l.quantity).collect();
    let costs: Vec<Decimal> = lines.iter().map(|l| l.unit_cost).collect();
    let afters: Vec<Decimal> = lines.iter().map(|l| l.cost_after).collect();
    sqlx::query(
        "INSERT INTO goods_receipt_lines (receipt_id, line_no, product_id, quantity, unit_cost, cost_after) \
         SELECT $1, * FROM unnest($2::int[], $3::uuid[], $4::numeric[], $5::numeric[], $6::numeric[])",
    )
    .bind(id)
    .bind(&nos)
    .bind(&products)
    .bind(&quantities)
    .bind(&costs)
    .bind(&afters)
    .execute(&mut **tx)
    .await?;
    sqlx::query(
        "UPDATE purchase_order_lines l SET received_quantity = l.received_quantity + r.quantity \
         FROM unnest($2::int[], $3::numeric[]) AS r (line_no, quantity) WHERE l.order_id = $1 AND l.line_no = r.line_no",
    )
    .bind(order_id)
    .bind(&nos)
    .bind(&quantities)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Records the last price paid to `supplier_id` for each product.
pub async fn note_prices(
    tx: &mut AuditedTx,
    supplier_id: Uuid,
    products: &[Uuid],
    prices: &[Decimal],
    at: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO supplier_products (supplier_id, product_id, last_price, last_received_at) \
         SELECT $1, p, c, $4 FROM unnest($2::uuid[], $3::numeric[]) AS x (p, c) \
         ON CONFLICT (supplier_id, product_id) DO UPDATE SET last_price = EXCLUDED.last_price, last_received_at = EXCLUDED.last_received_at",
    )
    .bind(supplier_id)
    .bind(products)
    .bind(prices)
    .bind(at)
    .execute(&mut **tx)
    .await
    .map(drop)
}

/// The lines of goods receipt `id`: (line, product, quantity, cost after).
pub async fn receipt_lines(
    conn: &mut PgConnection,
    id: Uuid,
) -> Result<Vec<(i32, Uuid, Decimal, Decimal)>, sqlx::Error> {
    sqlx::query_as(
        "SELECT line_no, product_id, quantity, cost_after FROM goods_receipt_lines WHERE receipt_id = $1 ORDER BY line_no",
    )
    .bind(id)
    .fetch_all(conn)
    .await
}
