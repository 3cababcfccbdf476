//! `customers`, `price_lists`, `price_list_rules` and `customer_retention`.

use chrono::{DateTime, NaiveDate, Utc};
use rust_decimal::Decimal;
use serde::Serialize;
use sqlx::PgConnection;
use utoipa::ToSchema;
use uuid::Uuid;

use super::rules::{Rule, RuleKind};
use crate::core::audit::AuditedTx;

/// Other matches (not at the start of the name) ranked per search: enough for a type-ahead list.
const SEARCH_CANDIDATES: i64 = 200;
/// Shorter search texts match at the start of the name only.
const SUBSTRING_MIN_CHARS: usize = 3;

/// A customer.
#[derive(Debug, Clone, Serialize, ToSchema, sqlx::FromRow)]
pub struct Customer {
    pub id: Uuid,
    pub name: String,
    pub email: Option<String>,
    pub phone: Option<String>,
    pub tax_id: Option<String>,
    pub address: Option<String>,
    /// The group whose price lists apply (`[a-z0-9][a-z0-9_-]*`).
    pub customer_group: Option<String>,
    pub notes: Option<String>,
    pub marketing_consent: bool,
    /// When the current consent answer was given, and how (`till`, `paper_form`, ...).
    pub consent_at: Option<DateTime<Utc>>,
    pub consent_source: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// Set when deleted (gone from lists and searches; its sales keep naming it).
    pub deleted_at: Option<DateTime<Utc>>,
    /// Set when erased (GDPR Art. 17): its name is "erased customer", its other personal fields empty.
    pub erased_at: Option<DateTime<Utc>>,
    pub version: i64,
}

const COLUMNS: &str = "id, name, email, phone, tax_id, address, customer_group, notes, marketing_consent, consent_at, \
    consent_source, created_at, updated_at, deleted_at, erased_at, version";

/// Customer `id` (deleted ones only when `deleted`), locked for the transaction when `lock`.
pub async fn customer(
    conn: &mut PgConnection,
    id: Uuid,
    deleted: bool,
    lock: bool,
) -> Result<Option<Customer>, sqlx::Error> {
    let sql = format!(
        "SELECT {COLUMNS} FROM customers WHERE id = $1 AND ($2 OR deleted_at IS NULL) {}",
        if lock { "FOR UPDATE" } else { "" }
    );
    sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .bind(deleted)
        .fetch_optional(conn)
        .await
}

/// Inserts `c` with its search text.
pub async fn insert(tx: &mut AuditedTx, c: &Customer, search: &str) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO customers (id, name, email, phone, tax_id, address, customer_group, notes, marketing_consent, \
           consent_at, consent_source, search_text, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $13)",
    )
    .bind(c.id)
    .bind(&c.name)
    .bind(&c.email)
    .bind(&c.phone)
    .bind(&c.tax_id)
    .bind(&c.address)
    .bind(&c.customer_group)
    .bind(&c.notes)
    .bind(c.marketing_consent)
    .bind(c.consent_at)
    .bind(&c.consent_source)
    .bind(search)
    .bind(c.created_at)
    .execute(&mut **tx)
    .await
    .map(drop)
}

/// Replaces customer `c.id`'s fields (and search text) at `now`, moving its version on.
pub async fn update(
    tx: &mut AuditedTx,
    c: &Customer,
    search: &str,
    now: DateTime<Utc>,
) -> Result<Customer, sqlx::Error> {
    let sql = format!(
        "UPDATE customers SET name = $2, email = $3, phone = $4, tax_id = $5, address = $6, customer_group = $7, \
           notes = $8, marketing_consent = $9, consent_at = $10, consent_source = $11, search_text = $12, updated_at = $13, \
           version = version + 1 \
         WHERE id = $1 RETURNING {COLUMNS}"
    );
    sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(c.id)
        .bind(&c.name)
        .bind(&c.email)
        .bind(&c.phone)
        .bind(&c.tax_id)
        .bind(&c.address)
        .bind(&c.customer_group)
        .bind(&c.notes)
        .bind(c.marketing_consent)
        .bind(c.consent_at)
        .bind(&c.consent_source)
        .bind(search)
        .bind(now)
        .fetch_one(&mut **tx)
        .await
}

/// Marks customer `id` deleted at `now`.
pub async fn delete(tx: &mut AuditedTx, id: Uuid, now: DateTime<Utc>) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE customers SET deleted_at = $2, updated_at = $2, version = version + 1 WHERE id = $1",
    )
    .bind(id)
    .bind(now)
    .execute(&mut **tx)
    .await
    .map(drop)
}

/// Erases customer `id`'s personal data at `now`: the name becomes `erased_name`, every other
/// personal field and the search text are emptied, consent withdrawn; the row (its id, which the
/// fiscal documents keep) stays, deleted.
pub async fn erase(
    tx: &mut AuditedTx,
    id: Uuid,
    erased_name: &str,
    now: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE customers SET name = $2, email = NULL, phone = NULL, tax_id = NULL, address = NULL, notes = NULL, \
           marketing_consent = false, consent_at = NULL, consent_source = NULL, search_text = '', \
           deleted_at = coalesce(deleted_at, $3), erased_at = $3, updated_at = $3, version = version + 1 \
         WHERE id = $1",
    )
    .bind(id)
    .bind(erased_name)
    .bind(now)
    .execute(&mut **tx)
    .await
    .map(drop)?;
    sqlx::query("DELETE FROM customer_retention WHERE customer_id = $1")
        .bind(id)
        .execute(&mut **tx)
        .await
        .map(drop)
}

/// Up to `limit` live customers after the first `offset`, by name.
pub async fn by_name(
    conn: &mut PgConnection,
    offset: i64,
    limit: i64,
) -> Result<Vec<Customer>, sqlx::Error> {
    let sql = format!(
        "SELECT {COLUMNS} FROM customers WHERE deleted_at IS NULL ORDER BY lower(name), id OFFSET $1 LIMIT $2"
    );
    sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(offset)
        .bind(limit)
        .fetch_all(conn)
        .await
}

/// The first `wanted` live customers matching `key` (see `rules::search_key`): those whose name
/// starts with it, then (for 3 characters or more) other matches of name, email or phone, shortest
/// names first. Planned per text, as the product search is (a common fragment is found fastest by
/// scanning, a rare one through the trigram index).
///
/// The other matches are the first SEARCH_CANDIDATES substring matches, the name-start ones among
/// them dropped afterwards: excluding them in the scan itself (`NOT LIKE 'key%'`) made a first name
/// (which the email repeats: every match also starts with it) read all 200,000 rows to find no
/// other match (120 ms; PERFORMANCE.md). The candidates always come through the trigram index,
/// at most about 2,000 of them (`gin_fuzzy_search_limit`: a common fragment yields a sample of its
/// matches): left to the planner, a table scan bet on finding 200 matches early read most of the
/// table for a rare fragment it took for a common one (`emil.schwa`: 60 ms), and good guesses
/// need statistics, which would hold samples of personal values (migration 0033 keeps none).
pub async fn search(
    conn: &mut PgConnection,
    key: &str,
    wanted: i64,
) -> Result<Vec<Customer>, sqlx::Error> {
    let escaped = key
        .replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_");
    let prefix = format!(
        "(SELECT * FROM (SELECT {COLUMNS} FROM customers WHERE deleted_at IS NULL AND search_text LIKE $1 \
           ORDER BY search_text USING ~<~, id LIMIT $3) prefix)"
    );
    let sql = if key.chars().count() < SUBSTRING_MIN_CHARS {
        prefix
    } else {
        format!(
            "{prefix} UNION ALL \
             (SELECT {COLUMNS} FROM (SELECT {COLUMNS}, search_text FROM customers WHERE deleted_at IS NULL \
                AND search_text LIKE $2 LIMIT {SEARCH_CANDIDATES}) other WHERE other.search_text NOT LIKE $1 \
              ORDER BY length(other.name), other.name, other.id LIMIT $3)"
        )
    };
    let mut tx = crate::core::db::read_with_settings(
        conn,
        &[
            ("enable_seqscan", "off"),
            ("gin_fuzzy_search_limit", "2000"),
        ],
    )
    .await?;
    let mut all: Vec<Customer> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .persistent(false)
        .bind(format!("{escaped}%"))
        .bind(format!("%{escaped}%"))
        .bind(wanted)
        .fetch_all(&mut *tx)
        .await?;
    tx.commit().await?;
    all.truncate(usize::try_from(wanted).unwrap_or(0));
    Ok(all)
}

/// The group of live customer `id`: `None` when there is no such customer (deleted or erased
/// ones are not), `Some(None)` when they belong to no group.
pub async fn group_of(
    conn: &mut PgConnection,
    id: Uuid,
) -> Result<Option<Option<String>>, sqlx::Error> {
    sqlx::query_scalar("SELECT customer_group FROM customers WHERE id = $1 AND deleted_at IS NULL")
        .bind(id)
        .fetch_optional(conn)
        .await
}

/// Customer `id`'s name, address and tax id (deleted and erased ones too).
pub async fn for_invoice(
    conn: &mut PgConnection,
    id: Uuid,
) -> Result<Option<crate::plugs::management::api::customers::InvoiceCustomer>, sqlx::Error> {
    sqlx::query_as("SELECT name, address, tax_id FROM customers WHERE id = $1")
        .bind(id)
        .fetch_optional(conn)
        .await
}

/// Does customer `id` exist (deleted and erased ones too)?
pub async fn exists(conn: &mut PgConnection, id: Uuid) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM customers WHERE id = $1)")
        .bind(id)
        .fetch_one(conn)
        .await
}

/// A price list with its rules.
#[derive(Debug, Clone, Serialize, ToSchema, sqlx::FromRow)]
pub struct PriceList {
    pub id: Uuid,
    pub name: String,
    pub customer_group: String,
    /// First business date it applies (none: always did).
    pub valid_from: Option<NaiveDate>,
    /// Last business date it applies (none: no end).
    pub valid_to: Option<NaiveDate>,
    #[sqlx(skip)]
    pub rules: Vec<PriceRule>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub version: i64,
}

/// One rule of a price list.
#[derive(Debug, Clone, Serialize, ToSchema, sqlx::FromRow)]
pub struct PriceRule {
    pub id: Uuid,
    pub product_id: Option<Uuid>,
    pub category_id: Option<Uuid>,
    #[schema(value_type = RuleKind)]
    pub kind: String,
    /// The fixed price, or the percent off.
    #[schema(value_type = String, example = "10")]
    #[serde(with = "rust_decimal::serde::str")]
    pub value: Decimal,
}

const LIST_COLUMNS: &str =
    "id, name, customer_group, valid_from, valid_to, created_at, updated_at, version";

/// Price list `id` (live) with its rules, locked when `lock`.
pub async fn price_list(
    conn: &mut PgConnection,
    id: Uuid,
    lock: bool,
) -> Result<Option<PriceList>, sqlx::Error> {
    let sql = format!(
        "SELECT {LIST_COLUMNS} FROM price_lists WHERE id = $1 AND deleted_at IS NULL {}",
        if lock { "FOR UPDATE" } else { "" }
    );
    let list: Option<PriceList> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?;
    let Some(mut list) = list else {
        return Ok(None);
    };
    list.rules = sqlx::query_as(
        "SELECT id, product_id, category_id, kind, value FROM price_list_rules WHERE price_list_id = $1 \
         ORDER BY product_id NULLS LAST, category_id, id",
    )
    .bind(id)
    .fetch_all(conn)
    .await?;
    Ok(Some(list))
}

/// Up to `limit` live price lists after the first `offset`, by group and name (without rules).
pub async fn price_lists(
    conn: &mut PgConnection,
    group: Option<&str>,
    offset: i64,
    limit: i64,
) -> Result<Vec<PriceList>, sqlx::Error> {
    let sql = format!(
        "SELECT {LIST_COLUMNS} FROM price_lists WHERE deleted_at IS NULL AND ($1::text IS NULL OR customer_group = $1) \
         ORDER BY customer_group, name, id OFFSET $2 LIMIT $3"
    );
    sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(group)
        .bind(offset)
        .bind(limit)
        .fetch_all(conn)
        .await
}

/// Inserts price list `l` with its rules.
pub async fn insert_price_list(tx: &mut AuditedTx, l: &PriceList) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO price_lists (id, name, customer_group, valid_from, valid_to, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $6)",
    )
    .bind(l.id)
    .bind(&l.name)
    .bind(&l.customer_group)
    .bind(l.valid_from)
    .bind(l.valid_to)
    .bind(l.created_at)
    .execute(&mut **tx)
    .await?;
    insert_rules(tx, l).await
}

async fn insert_rules(tx: &mut AuditedTx, l: &PriceList) -> Result<(), sqlx::Error> {
    let ids: Vec<Uuid> = l.rules.iter().map(|r| r.id).collect();
    let products: Vec<Option<Uuid>> = l.rules.iter().map(|r| r.product_id).collect();
    let categories: Vec<Option<Uuid>> = l.rules.iter().map(|r| r.category_id).collect();
    let kinds: Vec<&str> = l.rules.iter().map(|r| r.kind.as_str()).collect();
    let values: Vec<Decimal> = l.rules.iter().map(|r| r.value).collect();
    sqlx::query(
        "INSERT INTO price_list_rules (id, price_list_id, product_id, category_id, kind, value) \
         SELECT r.id, $1, r.product_id, r.category_id, r.kind, r.value \
         FROM unnest($2::uuid[], $3::uuid[], $4::uuid[], $5::text[], $6::numeric[]) AS r(id, product_id, category_id, kind, value)",
    )
    .bind(l.id)
    .bind(&ids)
    .bind(&products)
    .bind(&categories)
    .bind(&kinds)
    .bind(&values)
    .execute(&mut **tx)
    .await
    .map(drop)
}

/// Replaces price list `l.id`'s fields and rules at `now`; answers its new version.
pub async fn update_price_list(
    tx: &mut AuditedTx,
    l: &PriceList,
    now: DateTime<Utc>,
) -> Result<i64, sqlx::Error> {
    let version = sqlx::query_scalar(
        "UPDATE price_lists SET name = $2, customer_group = $3, valid_from = $4, valid_to = $5, updated_at = $6, \
           version = version + 1 WHERE id = $1 RETURNING version",
    )
    .bind(l.id)
    .bind(&l.name)
    .bind(&l.customer_group)
    .bind(l.valid_from)
    .bind(l.valid_to)
    .bind(now)
    .fetch_one(&mut **tx)
    .await?;
    sqlx::query("DELETE FROM price_list_rules WHERE price_list_id = $1")
        .bind(l.id)
        .execute(&mut **tx)
        .await?;
    insert_rules(tx, l).await?;
    Ok(version)
}

/// Marks price list `id` deleted at `now` (its rules stop applying).
pub async fn delete_price_list(
    tx: &mut AuditedTx,
    id: Uuid,
    now: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE price_lists SET deleted_at = $2, updated_at = $2, version = version + 1 WHERE id = $1",
    )
    .bind(id)
    .bind(now)
    .execute(&mut **tx)
    .await
    .map(drop)
}

/// A rule of a group's live list, with what it prices.
pub struct GroupRule {
    pub product_id: Option<Uuid>,
    pub category_id: Option<Uuid>,
    pub rule: Rule,
}

/// The rules of every live price list of `group`.
pub async fn group_rules(
    conn: &mut PgConnection,
    group: &str,
) -> Result<Vec<GroupRule>, sqlx::Error> {
    #[allow(clippy::type_complexity)]
    let rows: Vec<(
        Uuid,
        Uuid,
        String,
        Option<NaiveDate>,
        Option<NaiveDate>,
        Option<Uuid>,
        Option<Uuid>,
        String,
        Decimal,
    )> = sqlx::query_as(
        "SELECT r.id, l.id, l.name, l.valid_from, l.valid_to, r.product_id, r.category_id, r.kind, r.value \
         FROM price_lists l JOIN price_list_rules r ON r.price_list_id = l.id \
         WHERE l.customer_group = $1 AND l.deleted_at IS NULL",
    )
    .bind(group)
    .fetch_all(conn)
    .await?;
    Ok(rows
        .into_iter()
        .filter_map(
            |(id, list_id, list, from, to, product_id, category_id, kind, value)| {
                Some(GroupRule {
                    product_id,
                    category_id,
                    rule: Rule {
                        id,
                        price_list_id: list_id,
                        price_list: list,
                        kind: RuleKind::parse(&kind)?,
                        value,
                        valid_from: from,
                        valid_to: to,
                    },
                })
            },
        )
        .collect())
}

/// A customer the retention job proposes to erase.
#[derive(Debug, Serialize, ToSchema, sqlx::FromRow)]
pub struct RetentionProposal {
    pub customer_id: Uuid,
    pub name: String,
    /// Their last sale, return or change.
    pub last_activity_at: DateTime<Utc>,
    pub proposed_at: DateTime<Utc>,
}

/// Customers not erased (deleted ones too: they still hold personal data) not changed since
/// `before`, with when they last changed.
pub async fn unchanged_since(
    conn: &mut PgConnection,
    before: DateTime<Utc>,
) -> Result<Vec<(Uuid, DateTime<Utc>)>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, updated_at FROM customers WHERE erased_at IS NULL AND updated_at < $1 ORDER BY id",
    )
    .bind(before)
    .fetch_all(conn)
    .await
}

/// Replaces the proposal list with `proposals` (customer, last activity) at `now`; those proposed
/// before keep their first proposal time.
pub async fn propose(
    tx: &mut AuditedTx,
    proposals: &[(Uuid, DateTime<Utc>)],
    now: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    let ids: Vec<Uuid> = proposals.iter().map(|p| p.0).collect();
    let last: Vec<DateTime<Utc>> = proposals.iter().map(|p| p.1).collect();
    sqlx::query("DELETE FROM customer_retention WHERE NOT (customer_id = ANY($1))")
        .bind(&ids)
        .execute(&mut **tx)
        .await?;
    sqlx::query(
        "INSERT INTO customer_retention (customer_id, last_activity_at, proposed_at) \
         SELECT id, last, $3 FROM unnest($1::uuid[], $2::timestamptz[]) AS p(id, last) \
         ON CONFLICT (customer_id) DO UPDATE SET last_activity_at = EXCLUDED.last_activity_at",
    )
    .bind(&ids)
    .bind(&last)
    .bind(now)
    .execute(&mut **tx)
    .await
    .map(drop)
}

/// A page of the proposal list, oldest activity first.
pub async fn proposals(
    conn: &mut PgConnection,
    offset: i64,
    limit: i64,
) -> Result<Vec<RetentionProposal>, sqlx::Error> {
    sqlx::query_as(
        "SELECT r.customer_id, c.name, r.last_activity_at, r.proposed_at \
         FROM customer_retention r JOIN customers c ON c.id = r.customer_id \
         ORDER BY r.last_activity_at, r.customer_id OFFSET $1 LIMIT $2",
    )
    .bind(offset)
    .bind(limit)
    .fetch_all(conn)
    .await
}

/// The name of each of `ids` (`erased customer` once erased), for reports.
pub async fn names(
    conn: &mut PgConnection,
    ids: &[Uuid],
) -> Result<Vec<(Uuid, String)>, sqlx::Error> {
    sqlx::query_as("SELECT id, name FROM customers WHERE id = ANY($1)")
        .bind(ids)
        .fetch_all(conn)
        .await
}
