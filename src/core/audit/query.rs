//! `GET /api/v1/audit` (filtered, cursor-paginated) and `GET /api/v1/audit/export?format=csv`.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sqlx::PgPool;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::core::audit::encoding::format_time;
use crate::core::audit::{pdf, verify};
use crate::core::http::ApiError;
use crate::core::state::AppState;
use crate::shared::csv_cell;

/// Most records one export holds.
pub(super) const EXPORT_LIMIT: i64 = 100_000;

/// Filters (all optional) and paging, as both the query and the export read them; each documents
/// its own parameters ([`AuditListParams`], [`AuditExportParams`]).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct AuditFilter {
    /// Inclusive, RFC 3339.
    pub from: Option<DateTime<Utc>>,
    /// Exclusive, RFC 3339.
    pub to: Option<DateTime<Utc>>,
    pub user_id: Option<Uuid>,
    pub entity: Option<String>,
    pub entity_id: Option<String>,
    pub action: Option<String>,
    pub module: Option<String>,
    /// 1 to 500 (default 100); not used by exports.
    pub limit: Option<i64>,
    /// The `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// Exports only: `csv` (default) or `pdf`.
    pub format: Option<String>,
}

/// The audit log query's parameters, as documented: the filters and paging (`format` is the
/// export's).
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)] // Documentation only: the handler reads `AuditFilter`.
pub struct AuditListParams {
    /// Inclusive, RFC 3339.
    from: Option<DateTime<Utc>>,
    /// Exclusive, RFC 3339.
    to: Option<DateTime<Utc>>,
    user_id: Option<Uuid>,
    entity: Option<String>,
    entity_id: Option<String>,
    action: Option<String>,
    module: Option<String>,
    /// 1 to 500 (default 100).
    #[param(minimum = 1, maximum = 500)]
    limit: Option<i64>,
    /// The `next_cursor` of the previous page.
    #[param(pattern = "^[0-9]{1,18}$")]
    cursor: Option<String>,
}

/// The audit export's parameters, as documented: the filters and the format (no paging).
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)] // Documentation only: the handler reads `AuditFilter`.
pub struct AuditExportParams {
    /// Inclusive, RFC 3339.
    from: Option<DateTime<Utc>>,
    /// Exclusive, RFC 3339.
    to: Option<DateTime<Utc>>,
    user_id: Option<Uuid>,
    entity: Option<String>,
    entity_id: Option<String>,
    action: Option<String>,
    module: Option<String>,
    /// `csv` (default) or `pdf`.
    #[param(pattern = "^(csv|pdf)$")]
    format: Option<String>,
}

/// Who acted.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditActor {
    pub user_id: Option<Uuid>,
    pub username: Option<String>,
    pub role: Option<String>,
}

/// One chained audit record.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditEntry {
    pub seq: i64,
    pub at: String,
    pub actor: AuditActor,
    pub workstation_id: Option<String>,
    pub branch_id: Option<Uuid>,
    pub module: String,
    pub entity: String,
    pub entity_id: Option<String>,
    pub action: String,
    #[schema(value_type = Option<Object>)]
    pub before: Option<Value>,
    #[schema(value_type = Option<Object>)]
    pub after: Option<Value>,
    pub reason_code: Option<String>,
    pub approval_ref: Option<String>,
    pub request_id: Option<String>,
    pub prev_hash: String,
    pub hash: String,
    /// Fields left out of `before`/`after` because the reader lacks the permission to see
    /// them (`after.cost_price`); the hashes are those of the whole stored record.
    pub redacted: Vec<String>,
}

/// A page of records, in chain order.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditPage {
    pub items: Vec<AuditEntry>,
    pub next_cursor: Option<String>,
}

#[derive(sqlx::FromRow)]
pub(super) struct Row {
    pub(super) seq: i64,
    prev_hash: Vec<u8>,
    hash: Vec<u8>,
    at: DateTime<Utc>,
    actor_user_id: Option<Uuid>,
    actor_username: Option<String>,
    actor_role: Option<String>,
    workstation_id: Option<String>,
    branch_id: Option<Uuid>,
    module: String,
    entity: String,
    entity_id: Option<String>,
    action: String,
    pub(super) before_json: Option<String>,
    pub(super) after_json: Option<String>,
    reason_code: Option<String>,
    approval_ref: Option<String>,
    request_id: Option<String>,
    #[sqlx(skip)]
    redacted: Vec<String>,
}

/// A field of an audited entity that only holders of `permission` may read: the audit log
/// query and exports leave it out of a record's `before` and `after` for other readers (the
/// stored, hashed record is unchanged) and name it in the record's `redacted`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProtectedField {
    /// The module that writes the records (`management.catalog`).
    pub module: &'static str,
    /// The record's entity (`product`).
    pub entity: &'static str,
    /// The top-level key in `before`/`after` (`cost_price`).
    pub field: &'static str,
    pub permission: &'static str,
}

/// The protected fields one reader may not see.
pub(super) struct Redaction(Vec<ProtectedField>);

impl Redaction {
    /// Hides `hidden` (the protected fields whose permission the reader lacks).
    pub(super) fn new(hidden: Vec<ProtectedField>) -> Redaction {
        Redaction(hidden)
    }

    /// Leaves the hidden fields out of `row`'s `before` and `after` and names them in its
    /// `redacted`. Records of other entities are not touched.
    pub(super) fn apply(&self, row: &mut Row) {
        let fields: Vec<&ProtectedField> = self
            .0
            .iter()
            .filter(|f| f.module == row.module && f.entity == row.entity)
            .collect();
        if fields.is_empty() {
            return;
        }
        for (side, text) in [
            ("before", &mut row.before_json),
            ("after", &mut row.after_json),
        ] {
            let Some(Ok(Value::Object(mut map))) =
                text.as_deref().map(serde_json::from_str::<Value>)
            else {
                continue;
            };
            let before = row.redacted.len();
            for field in &fields {
                if map.remove(field.field).is_some() {
                    row.redacted.push(format!("{side}.{}", field.field));
                }
            }
            if row.redacted.len() > before {
                *text = Some(Value::Object(map).to_string());
            }
        }
    }
}

impl Row {
    pub(super) fn entry(self) -> AuditEntry {
        let parse = |text: Option<String>| {
            text.map(|t| serde_json::from_str(&t).unwrap_or(Value::String(t)))
        };
        AuditEntry {
            seq: self.seq,
            at: format_time(&self.at),
            actor: AuditActor {
                user_id: self.actor_user_id,
                username: self.actor_username,
                role: self.actor_role,
            },
            workstation_id: self.workstation_id,
            branch_id: self.branch_id,
            module: self.module,
            entity: self.entity,
            entity_id: self.entity_id,
            action: self.action,
            before: parse(self.before_json),
            after: parse(self.after_json),
            reason_code: self.reason_code,
            approval_ref: self.approval_ref,
            request_id: self.request_id,
            prev_hash: hex::encode(self.prev_hash),
            hash: hex::encode(self.hash),
            redacted: self.redacted,
        }
    }
}

/// Every record about `entity` `entity_id` written by `module`, in chain order, with the personal
/// values it holds sealed opened (`"[erased]"` where the subject was erased): what a subject
/// access request (GDPR Art. 15) returns of the audit log.
pub async fn about(
    pool: &PgPool,
    module: &str,
    entity: &str,
    entity_id: &str,
) -> Result<Vec<AuditEntry>, sqlx::Error> {
    crate::core::audit::chain::chain_pending(pool).await?;
    let filter = AuditFilter {
        module: Some(module.to_owned()),
        entity: Some(entity.to_owned()),
        entity_id: Some(entity_id.to_owned()),
        ..AuditFilter::default()
    };
    let mut rows = fetch(pool, &filter, 0, EXPORT_LIMIT).await?;
    let mut texts: Vec<&mut Option<String>> = rows
        .iter_mut()
        .flat_map(|r| [&mut r.before_json, &mut r.after_json])
        .collect();
    crate::core::audit::personal::open_all(&mut *pool.acquire().await?, &mut texts).await?;
    Ok(rows.into_iter().map(Row::entry).collect())
}

pub(super) async fn fetch(
    pool: &PgPool,
    filter: &AuditFilter,
    after_seq: i64,
    limit: i64,
) -> Result<Vec<Row>, sqlx::Error> {
    sqlx::query_as(
        "SELECT c.seq, c.prev_hash, c.hash, r.at, r.actor_user_id, r.actor_username, r.actor_role, r.workstation_id, \
                r.branch_id, r.module, r.entity, r.entity_id, r.action, r.before_json, r.after_json, r.reason_code, \
                r.approval_ref, r.request_id \
         FROM audit_chain c JOIN audit_records r ON r.id = c.record_id \
         WHERE c.seq > $1 \
           AND ($2::timestamptz IS NULL OR r.at >= $2) AND ($3::timestamptz IS NULL OR r.at < $3) \
           AND ($4::uuid IS NULL OR r.actor_user_id = $4) AND ($5::text IS NULL OR r.entity = $5) \
           AND ($6::text IS NULL OR r.entity_id = $6) AND ($7::text IS NULL OR r.action = $7) \
           AND ($8::text IS NULL OR r.module = $8) \
         ORDER BY c.seq LIMIT $9",
    )
    .bind(after_seq)
    .bind(filter.from)
    .bind(filter.to)
    .bind(filter.user_id)
    .bind(&filter.entity)
    .bind(&filter.entity_id)
    .bind(&filter.action)
    .bind(&filter.module)
    .bind(limit)
    .fetch_all(pool)
    .await
}

pub(super) fn csv_report(rows: Vec<Row>) -> Result<Vec<u8>, ApiError> {
    let mut writer = csv::Writer::from_writer(Vec::new());
    let csv_error = |e: csv::Error| ApiError::Internal(anyhow::Error::new(e));
    writer
        .write_record([
            "seq",
            "at",
            "actor_user_id",
            "actor_username",
            "actor_role",
            "workstation_id",
            "branch_id",
            "module",
            "entity",
            "entity_id",
            "action",
            "before",
            "after",
            "reason_code",
            "approval_ref",
            "request_id",
            "prev_hash",
            "hash",
            "redacted",
        ])
        .map_err(csv_error)?;
    for row in rows {
        let opt = |v: &Option<String>| v.clone().unwrap_or_default();
        let uuid = |v: &Option<Uuid>| v.map(|u| u.to_string()).unwrap_or_default();
        writer
            .write_record(
                [
                    row.seq.to_string(),
                    format_time(&row.at),
                    uuid(&row.actor_user_id),
                    opt(&row.actor_username),
                    opt(&row.actor_role),
                    opt(&row.workstation_id),
                    uuid(&row.branch_id),
                    row.module.clone(),
                    row.entity.clone(),
                    opt(&row.entity_id),
                    row.action.clone(),
                    opt(&row.before_json),
                    opt(&row.after_json),
                    opt(&row.reason_code),
                    opt(&row.approval_ref),
                    opt(&row.request_id),
                    hex::encode(&row.prev_hash),
                    hex::encode(&row.hash),
                    row.redacted.join(" "),
                ]
                .iter()
                .map(|cell| csv_cell::safe(cell).into_owned()),
            )
            .map_err(csv_error)?;
    }
    writer
        .into_inner()
        .map_err(|e| ApiError::Internal(anyhow::anyhow!("cannot finish the CSV: {e}")))
}

/// The PDF report of `rows`, generated by `exported_by` (named on its first page).
pub(super) async fn pdf_report(
    state: &AppState,
    exported_by: &str,
    filter: &AuditFilter,
    rows: &[Row],
) -> Result<Vec<u8>, ApiError> {
    let business: Option<String> = sqlx::query_scalar("SELECT name FROM business")
        .fetch_optional(state.pool())
        .await?;
    let report =
        verify::verify_instance(state.pool(), &state.data_dir().keys(), Vec::new()).await?;
    let head = report.head.as_ref().map_or("empty".to_owned(), |h| {
        format!("record {} ({})", h.seq, h.hash)
    });
    let verification = if report.ok {
        format!(
            "intact: {} records verified, {} signed checkpoint(s) matched",
            report.verified, report.checkpoints_checked
        )
    } else {
        format!(
            "BROKEN at record {}: {}",
            report.first_bad_seq.unwrap_or_default(),
            report.reason.clone().unwrap_or_default()
        )
    };
    let time = |t: Option<DateTime<Utc>>| t.map_or("open".to_owned(), |t| format_time(&t));
    let filters: Vec<String> = [
        ("user", filter.user_id.map(|u| u.to_string())),
        ("entity", filter.entity.clone()),
        ("entity_id", filter.entity_id.clone()),
        ("action", filter.action.clone()),
        ("module", filter.module.clone()),
    ]
    .into_iter()
    .filter_map(|(k, v)| v.map(|v| format!("{k}={v}")))
    .collect();
    let header = pdf::ReportHeader {
        business: business.unwrap_or_else(|| "(not set up)".to_owned()),
        period: match (filter.from, filter.to) {
            (None, None) => "all records".to_owned(),
            (from, to) => format!("{} to {}", time(from), time(to)),
        },
        filters: if filters.is_empty() {
            "none".to_owned()
        } else {
            filters.join(", ")
        },
        head,
        verification,
        generated: format!("{} by {}", format_time(&state.clock().now()), exported_by),
    };
    let table: Vec<pdf::ReportRow> = rows
        .iter()
        .map(|r| pdf::ReportRow {
            seq: r.seq.to_string(),
            at: format_time(&r.at),
            user: r.actor_username.clone().unwrap_or_default(),
            action: r.action.clone(),
            entity: format!("{} {}", r.entity, r.entity_id.clone().unwrap_or_default()),
            details: {
                let details = r
                    .after_json
                    .clone()
                    .or_else(|| r.before_json.clone())
                    .unwrap_or_default();
                // First, so the cell's truncation never hides it.
                match r.redacted.is_empty() {
                    true => details,
                    false => format!("(redacted: {}) {details}", r.redacted.join(", ")),
                }
            },
        })
        .collect();
    tokio::task::spawn_blocking(move || pdf::render(&header, &table))
        .await
        .map_err(|e| ApiError::Internal(anyhow::anyhow!("the PDF renderer failed: {e}")))
}
