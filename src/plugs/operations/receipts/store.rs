//! The receipts module's SQL: `receipt_copies`, `receipt_renders` and `receipt_printers` (its
//! tables). Writes take the audited transaction.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgConnection;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::core::audit::AuditedTx;

/// A register's receipt printer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema, sqlx::FromRow)]
pub struct Printer {
    pub register_id: Uuid,
    /// `none`: the till prints the `escpos` bytes itself; `network`: raw ESC/POS over TCP.
    pub kind: String,
    /// The network printer's address (a name or an IP address).
    pub host: Option<String>,
    /// Its TCP port (9100 usually).
    pub port: Option<i32>,
    /// Paper width: 58 or 80 (mm).
    pub width_mm: i32,
    /// `cp858` (code page 858) or `utf8`.
    pub encoding: String,
    /// Print every sale of the register by itself (network printers).
    pub auto_print: bool,
    /// Open the cash drawer (`ESC p`) when a document moves cash.
    pub drawer_kick: bool,
    pub version: i64,
    pub updated_at: DateTime<Utc>,
}

impl Printer {
    /// A register without a printer set up.
    pub fn none(register_id: Uuid, now: DateTime<Utc>) -> Printer {
        Printer {
            register_id,
            kind: "none".to_owned(),
            host: None,
            port: None,
            width_mm: 80,
            encoding: "cp858".to_owned(),
            auto_print: false,
            drawer_kick: false,
            version: 0,
            updated_at: now,
        }
    }
}

/// Register `register_id`'s printer, if one was set up.
pub async fn printer(
    conn: &mut PgConnection,
    register_id: Uuid,
) -> Result<Option<Printer>, sqlx::Error> {
    sqlx::query_as(
        "SELECT register_id, kind, host, port, width_mm, encoding, auto_print, drawer_kick, version, updated_at \
         FROM receipt_printers WHERE register_id = $1",
    )
    .bind(register_id)
    .fetch_optional(conn)
    .await
}

/// Writes `printer` if the stored one is still at version `printer.version - 1` (none stored:
/// version 0); `false` when another change came first.
pub async fn put_printer(tx: &mut AuditedTx, printer: &Printer) -> Result<bool, sqlx::Error> {
    let sql = match printer.version {
        1 => {
            "INSERT INTO receipt_printers (register_id, kind, host, port, width_mm, encoding, auto_print, drawer_kick, version, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) ON CONFLICT (register_id) DO NOTHING"
        }
        _ => {
            "UPDATE receipt_printers SET kind = $2, host = $3, port = $4, width_mm = $5, encoding = $6, \
                 auto_print = $7, drawer_kick = $8, version = $9, updated_at = $10 \
             WHERE register_id = $1 AND version = $9 - 1"
        }
    };
    let done = sqlx::query(sql)
        .bind(printer.register_id)
        .bind(&printer.kind)
        .bind(&printer.host)
        .bind(printer.port)
        .bind(printer.width_mm)
        .bind(&printer.encoding)
        .bind(printer.auto_print)
        .bind(printer.drawer_kick)
        .bind(printer.version)
        .bind(printer.updated_at)
        .execute(&mut **tx)
        .await?;
    Ok(done.rows_affected() == 1)
}

/// A render to record.
#[derive(Debug, Clone, Copy)]
pub struct Render<'a> {
    pub document_id: Uuid,
    /// `sale`, `return` or `void`.
    pub kind: &'a str,
    pub register_id: Uuid,
    /// `json`, `text`, `escpos`, `pdf` or `print` (sent to the printer).
    pub format: &'a str,
    pub user_id: Uuid,
    pub at: DateTime<Utc>,
}

/// Counts a render of the document and records it; answers its copy number (0: the original).
/// Renders of one document are numbered one at a time (the counter's row lock).
pub async fn count_render(tx: &mut AuditedTx, render: Render<'_>) -> Result<i32, sqlx::Error> {
    let copy: i32 = sqlx::query_scalar(
        "INSERT INTO receipt_copies AS c (document_id, renders) VALUES ($1, 1) \
         ON CONFLICT (document_id) DO UPDATE SET renders = c.renders + 1 RETURNING renders - 1",
    )
    .bind(render.document_id)
    .fetch_one(&mut **tx)
    .await?;
    sqlx::query(
        "INSERT INTO receipt_renders (document_id, copy, kind, register_id, format, rendered_by, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(render.document_id)
    .bind(copy)
    .bind(render.kind)
    .bind(render.register_id)
    .bind(render.format)
    .bind(render.user_id)
    .bind(render.at)
    .execute(&mut **tx)
    .await?;
    Ok(copy)
}

/// The receipt of `document_id` as first issued, if it was.
pub async fn issued(
    conn: &mut PgConnection,
    document_id: Uuid,
) -> Result<Option<serde_json::Value>, sqlx::Error> {
    sqlx::query_scalar::<_, Option<serde_json::Value>>(
        "SELECT original FROM receipt_copies WHERE document_id = $1",
    )
    .bind(document_id)
    .fetch_optional(conn)
    .await
    .map(Option::flatten)
}

/// Keeps `receipt` as the one `document_id` was first issued with (its render was counted in
/// this transaction, so its row exists and is locked).
pub async fn keep_issued(
    tx: &mut AuditedTx,
    document_id: Uuid,
    receipt: &serde_json::Value,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE receipt_copies SET original = $2 WHERE document_id = $1 AND original IS NULL",
    )
    .bind(document_id)
    .bind(receipt)
    .execute(&mut **tx)
    .await
    .map(drop)
}

/// How many copies (renders after the first) were made at `registers` in `[start, end)`.
pub async fn copies_in(
    conn: &mut PgConnection,
    registers: &[Uuid],
    start: DateTime<Utc>,
    end: DateTime<Utc>,
) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT count(*) FROM receipt_renders \
         WHERE copy > 0 AND register_id = ANY($1) AND created_at >= $2 AND created_at < $3",
    )
    .bind(registers)
    .bind(start)
    .bind(end)
    .fetch_one(conn)
    .await
}

/// How many copies were made at `registers` among the renders recorded after `after` up to
/// `through` (their `seq`).
pub async fn copies_between(
    conn: &mut PgConnection,
    registers: &[Uuid],
    after: i64,
    through: i64,
) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT count(*) FROM receipt_renders \
         WHERE copy > 0 AND register_id = ANY($1) AND seq > $2 AND seq <= $3",
    )
    .bind(registers)
    .bind(after)
    .bind(through)
    .fetch_one(conn)
    .await
}

/// The `seq` of the last render recorded (0: none).
pub async fn last_render(conn: &mut PgConnection) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT coalesce(max(seq), 0) FROM receipt_renders")
        .fetch_one(conn)
        .await
}
