//! `products` and `product_barcodes`.

use rust_decimal::Decimal;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::core::audit::AuditedTx;
use crate::shared::text::fold;

/// Substring (not prefix) matches ranked per search: enough for a type-ahead list, bounded cost.
const SEARCH_CANDIDATES: i64 = 200;
/// Shorter search texts match at the start of the name or SKU only.
const SUBSTRING_MIN_CHARS: usize = 3;

/// A product as stored, with its barcodes.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ProductRow {
    pub id: Uuid,
    pub sku: String,
    pub name: String,
    pub barcodes: Vec<String>,
    pub price: Decimal,
    pub cost_price: Option<Decimal>,
    pub tax_class_id: Uuid,
    pub category_id: Option<Uuid>,
    pub track_stock: bool,
    pub active: bool,
    pub version: i64,
}

const SELECT: &str = "SELECT p.id, p.sku, p.name, \
    COALESCE((SELECT array_agg(b.barcode ORDER BY b.barcode) FROM product_barcodes b WHERE b.product_id = p.id), '{}') AS barcodes, \
    p.price, p.cost_price, p.tax_class_id, p.category_id, p.track_stock, p.active, p.version \
    FROM products p";

/// Live product `id`.
pub async fn get(conn: &mut PgConnection, id: Uuid) -> Result<Option<ProductRow>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "{SELECT} WHERE p.id = $1 AND p.archived_at IS NULL"
    )))
    .bind(id)
    .fetch_optional(conn)
    .await
}

/// Locks product `id` until the transaction ends (two edits cannot both pass the version check).
pub async fn lock(tx: &mut AuditedTx, id: Uuid) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT 1 FROM products WHERE id = $1 FOR UPDATE")
        .bind(id)
        .execute(&mut **tx)
        .await
        .map(drop)
}

/// The live products with this barcode.
pub async fn by_barcode(
    conn: &mut PgConnection,
    barcode: &str,
) -> Result<Vec<ProductRow>, sqlx::Error> {
    let sql = format!(
        "{SELECT} JOIN product_barcodes pb ON pb.product_id = p.id WHERE pb.barcode = $1 AND p.archived_at IS NULL"
    );
    sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(barcode)
        .fetch_all(conn)
        .await
}

/// Up to `limit` live products after the first `offset`, by name.
pub async fn by_name(
    conn: &mut PgConnection,
    offset: i64,
    limit: i64,
) -> Result<Vec<ProductRow>, sqlx::Error> {
    let sql =
        format!("{SELECT} WHERE p.archived_at IS NULL ORDER BY p.name, p.id OFFSET $1 LIMIT $2");
    sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(offset)
        .bind(limit)
        .fetch_all(conn)
        .await
}

/// The first `wanted` live products matching folded `search` (see [`fold`]): names and SKUs that
/// start with it, then (for 3 characters or more) other substring matches.
///
/// Ranked in two parts, each cheap at a million products: names/SKUs that start with the text (a
/// range scan of the text_pattern_ops btree, in its byte order `~<~`, so no sort of every match),
/// then other substring matches (at most SEARCH_CANDIDATES of them, shortest names first). Not a
/// prepared statement: the plan must see the text, because a common fragment is found fastest by
/// scanning the table until enough rows match and a rare one through the trigram index, and a
/// generic plan would pick one for all.
pub async fn search(
    conn: &mut PgConnection,
    search: &str,
    wanted: i64,
) -> Result<Vec<ProductRow>, sqlx::Error> {
    let escaped = search
        .trim()
        .replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_");
    let prefix = format!(
        "(SELECT * FROM ({SELECT} WHERE p.archived_at IS NULL AND p.search_text LIKE $1 \
           ORDER BY p.search_text USING ~<~, p.id LIMIT $3) prefix)"
    );
    // One or two characters match at the start only: no trigram narrows them, and a rare
    // one would mean reading every product (the first keystrokes of a type-ahead).
    let sql = if search.trim().chars().count() < SUBSTRING_MIN_CHARS {
        prefix
    } else {
        format!(
            "{prefix} UNION ALL \
             (SELECT * FROM ({SELECT} WHERE p.archived_at IS NULL AND p.search_text LIKE $2 AND p.search_text NOT LIKE $1 \
               LIMIT {SEARCH_CANDIDATES}) other ORDER BY length(other.name), other.name, other.id LIMIT $3)"
        )
    };
    let mut all: Vec<ProductRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .persistent(false)
        .bind(format!("{escaped}%"))
        .bind(format!("%{escaped}%"))
        .bind(wanted)
        .fetch_all(conn)
        .await?;
    all.truncate(usize::try_from(wanted).unwrap_or(0));
    Ok(all)
}

/// A product's own columns, as written (its barcodes go separately: [`replace_barcodes`]).
#[derive(Debug)]
pub struct ProductFields<'a> {
    pub name: &'a str,
    pub price: Decimal,
    pub cost_price: Option<Decimal>,
    pub tax_class_id: Uuid,
    pub category_id: Option<Uuid>,
    pub track_stock: bool,
    pub active: bool,
}

/// Inserts a product; its search text is its folded name and SKU.
pub async fn insert(
    tx: &mut AuditedTx,
    id: Uuid,
    sku: &str,
    p: &ProductFields<'_>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO products (id, sku, name, search_text, price, cost_price, tax_class_id, category_id, track_stock, active) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
    )
    .bind(id)
    .bind(sku)
    .bind(p.name)
    .bind(fold(&format!("{} {sku}", p.name)))
    .bind(p.price)
    .bind(p.cost_price)
    .bind(p.tax_class_id)
    .bind(p.category_id)
    .bind(p.track_stock)
    .bind(p.active)
    .execute(&mut **tx)
    .await
    .map(drop)
}

/// Changes product `id` (whose SKU is `sku`); its version moves on by one.
pub async fn update(
    tx: &mut AuditedTx,
    id: Uuid,
    sku: &str,
    p: &ProductFields<'_>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE products SET name = $2, search_text = $3, price = $4, cost_price = $5, tax_class_id = $6, category_id = $7, \
         track_stock = $8, active = $9, version = version + 1, updated_at = now() WHERE id = $1",
    )
    .bind(id)
    .bind(p.name)
    .bind(fold(&format!("{} {sku}", p.name)))
    .bind(p.price)
    .bind(p.cost_price)
    .bind(p.tax_class_id)
    .bind(p.category_id)
    .bind(p.track_stock)
    .bind(p.active)
    .execute(&mut **tx)
    .await
    .map(drop)
}

/// Makes `barcodes` the product's (each barcode belongs to one product: `product_barcodes_pkey`).
pub async fn replace_barcodes(
    tx: &mut AuditedTx,
    id: Uuid,
    barcodes: &[String],
) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM product_barcodes WHERE product_id = $1")
        .bind(id)
        .execute(&mut **tx)
        .await?;
    sqlx::query("INSERT INTO product_barcodes (barcode, product_id) SELECT unnest($1::text[]), $2")
        .bind(barcodes)
        .bind(id)
        .execute(&mut **tx)
        .await
        .map(drop)
}

/// What removing a product did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Removed {
    /// Nothing referred to it: it is gone.
    Deleted,
    /// Sold or stocked before: kept for the records, hidden, its barcodes freed.
    Archived,
}

/// Deletes product `id` if nothing refers to it, else archives it. Anything referring to the
/// product (a sale line, stock) makes the database refuse the delete, which is rolled back to a
/// savepoint before archiving.
pub async fn delete_or_archive(tx: &mut AuditedTx, id: Uuid) -> Result<Removed, sqlx::Error> {
    sqlx::query("SAVEPOINT product_delete")
        .execute(&mut **tx)
        .await?;
    let deleted = async {
        sqlx::query("DELETE FROM product_barcodes WHERE product_id = $1")
            .bind(id)
            .execute(&mut **tx)
            .await?;
        sqlx::query("DELETE FROM products WHERE id = $1")
            .bind(id)
            .execute(&mut **tx)
            .await
    }
    .await;
    match deleted {
        Ok(_) => {
            sqlx::query("RELEASE SAVEPOINT product_delete")
                .execute(&mut **tx)
                .await?;
            Ok(Removed::Deleted)
        }
        Err(e)
            if e.as_database_error()
                .and_then(|d| d.code())
                .is_some_and(|c| c == "23503") =>
        {
            sqlx::query("ROLLBACK TO SAVEPOINT product_delete")
                .execute(&mut **tx)
                .await?;
            sqlx::query("DELETE FROM product_barcodes WHERE product_id = $1")
                .bind(id)
                .execute(&mut **tx)
                .await?;
            sqlx::query(
                "UPDATE products SET archived_at = now(), active = false, version = version + 1, updated_at = now() WHERE id = $1",
            )
            .bind(id)
            .execute(&mut **tx)
            .await?;
            Ok(Removed::Archived)
        }
        Err(e) => Err(e),
    }
}

/// A product as a sale needs it: price, tax rate, stock tracking.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct SaleProduct {
    pub id: Uuid,
    pub sku: String,
    pub name: String,
    pub price: Decimal,
    pub tax_class_id: Uuid,
    /// The tax class's rate as a fraction (0.19 is 19 %).
    pub tax_rate: Decimal,
    pub track_stock: bool,
    pub active: bool,
    /// Its category (a customer's price list may price the category).
    pub category_id: Option<Uuid>,
    /// Its cost price (kept with each line sold, for margins).
    pub cost_price: Option<Decimal>,
}

/// The products with these ids as a sale needs them, archived ones too (an offline till sold
/// them before it learnt): (product, archived).
pub async fn for_push(
    conn: &mut PgConnection,
    ids: &[Uuid],
) -> Result<Vec<(SaleProduct, bool)>, sqlx::Error> {
    #[derive(sqlx::FromRow)]
    struct Row {
        #[sqlx(flatten)]
        product: SaleProduct,
        archived: bool,
    }
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT p.id, p.sku, p.name, p.price, p.tax_class_id, t.rate AS tax_rate, p.track_stock, p.active, p.category_id, \
         p.cost_price, p.archived_at IS NOT NULL AS archived FROM products p JOIN tax_classes t ON t.id = p.tax_class_id \
         WHERE p.id = ANY($1)",
    )
    .bind(ids)
    .fetch_all(conn)
    .await?;
    Ok(rows.into_iter().map(|r| (r.product, r.archived)).collect())
}

/// The live products with these ids as a sale needs them.
pub async fn for_sale(
    conn: &mut PgConnection,
    ids: &[Uuid],
) -> Result<Vec<SaleProduct>, sqlx::Error> {
    sqlx::query_as(
        "SELECT p.id, p.sku, p.name, p.price, p.tax_class_id, t.rate AS tax_rate, p.track_stock, p.active, p.category_id, \
         p.cost_price FROM products p JOIN tax_classes t ON t.id = p.tax_class_id \
         WHERE p.id = ANY($1) AND p.archived_at IS NULL",
    )
    .bind(ids)
    .fetch_all(conn)
    .await
}

/// Does live product `id` track stock? `None` when there is no such product.
pub async fn tracks_stock(conn: &mut PgConnection, id: Uuid) -> Result<Option<bool>, sqlx::Error> {
    sqlx::query_scalar("SELECT track_stock FROM products WHERE id = $1 AND archived_at IS NULL")
        .bind(id)
        .fetch_optional(conn)
        .await
}

/// What stock needs of a product: its names, category, cost and whether it tracks stock.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct StockFacts {
    pub id: Uuid,
    pub sku: String,
    pub name: String,
    pub category_id: Option<Uuid>,
    pub cost_price: Option<rust_decimal::Decimal>,
    pub track_stock: bool,
    /// Archived products are still named (a report of an old count) but take no new stock.
    pub archived: bool,
}

/// The products among `ids` (archived ones flagged), as stock needs them.
pub async fn stock_facts(
    conn: &mut PgConnection,
    ids: &[Uuid],
) -> Result<Vec<StockFacts>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, sku, name, category_id, cost_price, track_stock, archived_at IS NOT NULL AS archived \
         FROM products WHERE id = ANY($1)",
    )
    .bind(ids)
    .fetch_all(conn)
    .await
}

/// The live products of `barcodes`, as (barcode, product).
pub async fn ids_by_barcode(
    conn: &mut PgConnection,
    barcodes: &[String],
) -> Result<Vec<(String, Uuid)>, sqlx::Error> {
    sqlx::query_as(
        "SELECT pb.barcode, p.id FROM product_barcodes pb JOIN products p ON p.id = pb.product_id \
         WHERE pb.barcode = ANY($1) AND p.archived_at IS NULL",
    )
    .bind(barcodes)
    .fetch_all(conn)
    .await
}

/// Sets product `id`'s cost price (a goods receipt's cost method; the receipt's audit record
/// carries it), bumping its version.
pub async fn set_cost_price(
    tx: &mut crate::core::audit::AuditedTx,
    id: Uuid,
    cost: rust_decimal::Decimal,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE products SET cost_price = $2, version = version + 1, updated_at = now() WHERE id = $1")
        .bind(id)
        .bind(cost)
        .execute(&mut **tx)
        .await
        .map(drop)
}

/// Category `id` and every category below it.
pub async fn category_tree(conn: &mut PgConnection, id: Uuid) -> Result<Vec<Uuid>, sqlx::Error> {
    sqlx::query_scalar(
        "WITH RECURSIVE tree AS (SELECT id FROM categories WHERE id = $1 \
             UNION SELECT c.id FROM categories c JOIN tree t ON c.parent_id = t.id) SELECT id FROM tree",
    )
    .bind(id)
    .fetch_all(conn)
    .await
}

/// For each of `roots`, itself and every category below it, with its distance from the root (0
/// for itself), as (root, category, distance): one query for them all.
pub async fn category_tree_depths(
    conn: &mut PgConnection,
    roots: &[Uuid],
) -> Result<Vec<(Uuid, Uuid, i32)>, sqlx::Error> {
    sqlx::query_as(
        "WITH RECURSIVE tree AS (SELECT id AS root, id, 0 AS depth FROM categories WHERE id = ANY($1) \
             UNION ALL SELECT t.root, c.id, t.depth + 1 FROM categories c JOIN tree t ON c.parent_id = t.id \
             WHERE t.depth < 100) \
         SELECT root, id, depth FROM tree",
    )
    .bind(roots)
    .fetch_all(conn)
    .await
}

/// The live and archived products in any of `categories`.
pub async fn in_categories(
    conn: &mut PgConnection,
    categories: &[Uuid],
) -> Result<Vec<Uuid>, sqlx::Error> {
    sqlx::query_scalar("SELECT id FROM products WHERE category_id = ANY($1)")
        .bind(categories)
        .fetch_all(conn)
        .await
}

/// The category of each of `products` (none for a product without one).
pub async fn categories_of(
    conn: &mut PgConnection,
    products: &[Uuid],
) -> Result<Vec<(Uuid, Option<Uuid>)>, sqlx::Error> {
    sqlx::query_as("SELECT id, category_id FROM products WHERE id = ANY($1)")
        .bind(products)
        .fetch_all(conn)
        .await
}

/// `sku name` of each of `products`.
pub async fn labels(
    conn: &mut PgConnection,
    products: &[Uuid],
) -> Result<Vec<(Uuid, String)>, sqlx::Error> {
    sqlx::query_as("SELECT id, sku || ' ' || name FROM products WHERE id = ANY($1)")
        .bind(products)
        .fetch_all(conn)
        .await
}

/// The name of each of `categories`.
pub async fn category_labels(
    conn: &mut PgConnection,
    categories: &[Uuid],
) -> Result<Vec<(Uuid, String)>, sqlx::Error> {
    sqlx::query_as("SELECT id, name FROM categories WHERE id = ANY($1)")
        .bind(categories)
        .fetch_all(conn)
        .await
}

/// The cost price of each of `products` that has one.
pub async fn cost_prices(
    conn: &mut PgConnection,
    products: &[Uuid],
) -> Result<Vec<(Uuid, rust_decimal::Decimal)>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, cost_price FROM products WHERE id = ANY($1) AND cost_price IS NOT NULL",
    )
    .bind(products)
    .fetch_all(conn)
    .await
}
