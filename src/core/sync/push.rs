//! The offline push (`POST /api/v1/sync/push`): what a till did while it could not reach the
//! server, recorded once, in the till's order, with a conflict log for what the server would have
//! refused online.
//!
//! Modules declare the document types they take (`Module::push_kinds`: `sale`, `return`,
//! `cash_session_open`...). The push checks every document's common fields, answers the documents
//! it recorded before from `sync_pushed` (the same result, exactly once), and hands the rest to
//! their modules in runs: consecutive documents of one type, at most the type's `batch`, in one
//! audited transaction. The module records them (numbering, stock, cash), says what each did that
//! deserves a look (its conflicts), and the push writes the `sync_pushed` rows, the conflict log
//! entries and an audit record of the run in the same transaction: a run commits whole or not at
//! all. A document the module refuses (a gap in the receipt series, a bad field) ends the push:
//! the documents before it in its run are recorded first, and the answer names the refused one;
//! pushing the same documents again records nothing twice and goes on from there.
//!
//! A till's pushes are one at a time (a lock per device), and the transactions are marked with
//! the transaction-local setting `plugpos.offline_push`, which lets a pushed sale take stock below
//! zero whatever `sales.allow_negative_stock` says (migration 0038).

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use futures_util::future::BoxFuture;
use serde::Serialize;
use serde_json::{Map, Value, json};
use sqlx::PgConnection;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::core::audit::{Actor, AuditedTx, Change};
use crate::core::auth::context::Authenticated;
use crate::core::http::ApiError;
use crate::core::http::problem::FieldError;
use crate::core::http::request_id;
use crate::core::state::AppState;
use crate::shared::ids::new_id;

/// Declares a pushed document type's struct: its own fields and those every document has (which
/// the push checked: `type`, `id`, `created_at`, `user_id`, `register_id`, `receipt_number`), so
/// that an unknown field is refused (`deny_unknown_fields` does not work through `flatten`).
macro_rules! pushed_document {
    ($(#[$meta:meta])* struct $name:ident { $($(#[$fmeta:meta])* $field:ident: $ty:ty,)* }) => {
        $(#[$meta])*
        #[derive(Debug, serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        struct $name {
            #[serde(rename = "type")]
            _kind: String,
            #[serde(rename = "id")]
            _id: uuid::Uuid,
            #[serde(rename = "created_at")]
            _created_at: String,
            #[serde(rename = "user_id")]
            _user_id: uuid::Uuid,
            #[serde(rename = "register_id")]
            _register_id: Option<uuid::Uuid>,
            #[serde(rename = "receipt_number")]
            _receipt_number: Option<String>,
            $($(#[$fmeta])* $field: $ty,)*
        }
    };
}
pub(crate) use pushed_document;

/// 422: a numbered document (a sale, a return) without its `receipt_number`.
pub fn number_required(doc: &PushDocument) -> Option<ApiError> {
    doc.receipt_number.is_none().then(|| {
        ApiError::invalid(
            "receipt_number",
            format!(
                "is required for a {}: the number the till printed",
                doc.kind
            ),
        )
    })
}

/// The most documents one push may carry.
pub const MAX_DOCUMENTS: usize = 10_000;

/// A document type tills push, declared by the module that records it.
pub struct PushKind {
    /// Its `type` in a push (`sale`, `return`...).
    pub name: &'static str,
    /// The permission the document's user must hold (a user without it is recorded anyway, with a
    /// `user_not_allowed` conflict: the till let them).
    pub permission: &'static str,
    /// The most documents of this type recorded in one transaction.
    pub batch: usize,
    pub record: RecordFn,
}

/// Records a run of documents of one type in the push's transaction: one [`Pushed`] per
/// document, in order, or the refusal of one of them (nothing of the run is kept then).
pub type RecordFn = for<'a> fn(
    &'a AppState,
    &'a mut AuditedTx,
    &'a PushRun<'a>,
) -> BoxFuture<'a, Result<Vec<Pushed>, Refusal>>;

/// The till that pushes.
#[derive(Debug, Clone)]
pub struct PushingDevice {
    pub id: Uuid,
    pub name: String,
    /// The register it is bound to: every document it pushes is that register's.
    pub register_id: Uuid,
}

/// A document's user, as the server knows them now.
#[derive(Debug, Clone)]
pub struct DocumentUser {
    pub id: Uuid,
    pub username: String,
    pub roles: Vec<String>,
    pub permissions: HashSet<String>,
    pub disabled: bool,
}

/// One pushed document: the fields every type has, and the whole document for its module.
#[derive(Debug, Clone)]
pub struct PushDocument {
    /// Its position in the push (field errors name `documents[index]`).
    pub index: usize,
    pub kind: String,
    /// The till's id for it, which the recorded document keeps.
    pub id: Uuid,
    /// When the till made it (kept beside the server's `recorded_at`, which dates it).
    pub created_at: DateTime<Utc>,
    pub receipt_number: Option<String>,
    pub user_id: Uuid,
    pub body: Value,
    pub hash: Vec<u8>,
}

/// A run of documents of one type, recorded in one transaction.
pub struct PushRun<'a> {
    pub device: &'a PushingDevice,
    /// Who pushes (logged in on the till now).
    pub pusher: &'a Authenticated,
    pub documents: &'a [PushDocument],
    pub users: &'a HashMap<Uuid, DocumentUser>,
    /// The transaction's time: what the documents are dated (recorded) at.
    pub now: DateTime<Utc>,
}

impl PushRun<'_> {
    /// The user of `doc` (the push checked that they exist).
    pub fn user(&self, doc: &PushDocument) -> &DocumentUser {
        &self.users[&doc.user_id]
    }

    /// The audit actor of `doc`: its user, on this till, in this request.
    pub fn actor(&self, doc: &PushDocument) -> Actor {
        let user = self.user(doc);
        Actor {
            user_id: Some(user.id),
            username: Some(user.username.clone()),
            role: Some(user.roles.join(",")),
            workstation_id: Some(self.device.id.to_string()),
            branch_id: None,
            request_id: request_id::current(),
        }
    }

    /// What every document's audit record says of where it came from.
    pub fn origin(&self, doc: &PushDocument) -> Value {
        json!({"device_id": self.device.id, "till_created_at": doc.created_at, "pushed_by": self.pusher.user_id})
    }
}

/// What recording one document gave.
#[derive(Debug, Default)]
pub struct Pushed {
    /// Type-specific fields of its result (`receipt_number`, `total`...).
    pub result: Map<String, Value>,
    pub conflicts: Vec<ConflictNote>,
    /// What to publish once the run committed: (topic, event, data).
    pub events: Vec<(&'static str, &'static str, Value)>,
}

/// Something a pushed document did that the server would have refused online.
#[derive(Debug, Clone)]
pub struct ConflictNote {
    /// `price_changed`, `product_archived`, `stock_negative`...
    pub kind: &'static str,
    pub detail: Value,
}

/// A run's refusal of its `at`th document.
#[derive(Debug)]
pub struct Refusal {
    pub at: usize,
    pub error: ApiError,
}

impl Refusal {
    pub fn new(at: usize, error: impl Into<ApiError>) -> Refusal {
        Refusal {
            at,
            error: error.into(),
        }
    }
}

impl From<sqlx::Error> for Refusal {
    /// A database error refuses the run as a whole (its first document).
    fn from(e: sqlx::Error) -> Refusal {
        Refusal::new(0, e)
    }
}

/// 409 `sync.sequence_gap`: document `doc` does not carry the register's next number.
pub fn sequence_gap(doc: &PushDocument, expected: &str) -> ApiError {
    ApiError::Conflict {
        code: "sync.sequence_gap",
        detail: format!(
            "documents[{}] ({} {}) is numbered {}, but the register's next number is {expected}: the document numbered {expected} is missing; push it first (in order).",
            doc.index,
            doc.kind,
            doc.id,
            doc.receipt_number.as_deref().unwrap_or("(none)"),
        ),
    }
}

/// One document's answer (stored, and answered the same for every push of it).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PushResult {
    #[serde(rename = "type")]
    pub kind: String,
    pub id: Uuid,
    /// `recorded`.
    pub status: String,
    /// The till's time for it.
    pub created_at: DateTime<Utc>,
    /// When the server recorded it: what dates it for cash sessions, closings and reports.
    pub recorded_at: DateTime<Utc>,
    /// The conflict log entries it made (`GET /api/v1/sync/conflicts`).
    pub conflicts: Vec<ConflictRef>,
    /// Type-specific: a sale's `receipt_number` and `total`, a session's `expected_cash`...
    #[serde(flatten)]
    #[schema(value_type = Object)]
    pub detail: Map<String, Value>,
}

/// A conflict log entry, in a push result.
#[derive(Debug, Clone, Serialize, serde::Deserialize, ToSchema)]
pub struct ConflictRef {
    pub id: Uuid,
    pub kind: String,
}

/// The answer to a push.
#[derive(Debug, Serialize, ToSchema)]
pub struct PushAnswer {
    /// One per document, in the push's order.
    pub results: Vec<PushResult>,
    /// Documents recorded by this push.
    pub recorded: usize,
    /// Documents an earlier push recorded (answered as then, nothing recorded again).
    pub already_recorded: usize,
}

/// Records `documents` pushed by `pusher` from `device`.
pub async fn push(
    state: &AppState,
    pusher: &Authenticated,
    device: &PushingDevice,
    documents: Vec<PushDocument>,
) -> Result<PushAnswer, ApiError> {
    let lock = crate::core::devices::push_lock(state, device.id);
    let _one_at_a_time = lock.lock().await;
    let kinds = kinds(state);
    let mut conn = state.pool().acquire().await?;
    let users = users_of(&mut conn, &documents).await?;
    let earlier = pushed_before(&mut conn, &documents).await?;
    drop(conn);
    let mut results: Vec<Option<PushResult>> = vec![None; documents.len()];
    let mut already = 0;
    let mut fresh = Vec::new();
    for doc in documents {
        match earlier.get(&doc.id) {
            Some(before) if before.device_id == device.id && before.hash == doc.hash => {
                already += 1;
                results[doc.index] = Some(before.result.clone());
            }
            Some(_) => {
                return Err(ApiError::Conflict {
                    code: "sync.document_conflict",
                    detail: format!(
                        "documents[{}]: a document with id {} was pushed before with other content (or from another till); a new document needs a new id.",
                        doc.index, doc.id
                    ),
                });
            }
            None => fresh.push(doc),
        }
    }
    let mut recorded = 0;
    let mut at = 0;
    while at < fresh.len() {
        let kind = kinds
            .get(fresh[at].kind.as_str())
            .ok_or_else(|| ApiError::Internal(anyhow::anyhow!("unchecked type")))?;
        let end = (at..fresh.len())
            .take(kind.batch.max(1))
            .take_while(|&i| fresh[i].kind == kind.name)
            .last()
            .map_or(at + 1, |i| i + 1);
        let run = &fresh[at..end];
        match record_run(state, pusher, device, kind, run, &users).await {
            Ok(done) => {
                recorded += done.len();
                for (doc, r) in run.iter().zip(done) {
                    results[doc.index] = Some(r);
                }
                at = end;
            }
            Err(refusal) => {
                // Keep what comes before the refused document, then name it.
                if refusal.at > 0 {
                    let before = &run[..refusal.at];
                    let done = record_run(state, pusher, device, kind, before, &users)
                        .await
                        .map_err(|r| r.error)?;
                    recorded += done.len();
                }
                return Err(name_document(refusal.error, &run[refusal.at], recorded));
            }
        }
    }
    Ok(PushAnswer {
        results: results.into_iter().flatten().collect(),
        recorded,
        already_recorded: already,
    })
}

/// The refusal of `doc`, naming it (field errors under `documents[index]`).
fn name_document(error: ApiError, doc: &PushDocument, recorded: usize) -> ApiError {
    let before = match recorded {
        0 => "Nothing of this push was recorded.".to_owned(),
        n => format!(
            "The {n} document(s) before it in this push were recorded; push again from documents[{}].",
            doc.index
        ),
    };
    let prefix = format!("documents[{}] ({} {})", doc.index, doc.kind, doc.id);
    match error {
        ApiError::Validation(errors) => ApiError::Validation(
            errors
                .into_iter()
                .map(|e| FieldError {
                    field: match e.field.as_str() {
                        "" => format!("documents[{}]", doc.index),
                        f => format!("documents[{}].{f}", doc.index),
                    },
                    ..e
                })
                .collect(),
        ),
        ApiError::Conflict { code, detail } => ApiError::Conflict {
            code,
            detail: with_context(&prefix, &detail, &before),
        },
        ApiError::Unprocessable { code, detail } => ApiError::Unprocessable {
            code,
            detail: with_context(&prefix, &detail, &before),
        },
        ApiError::NotFound { code, detail } => ApiError::Unprocessable {
            code,
            detail: with_context(&prefix, &detail, &before),
        },
        other => other,
    }
}

fn with_context(prefix: &str, detail: &str, before: &str) -> String {
    if detail.starts_with("documents[") {
        format!("{detail} {before}")
    } else {
        format!("{prefix}: {detail} {before}")
    }
}

/// Records one run in one transaction: the documents (by their module), their `sync_pushed`
/// rows, their conflict log entries and the run's audit record; then publishes their events.
async fn record_run(
    state: &AppState,
    pusher: &Authenticated,
    device: &PushingDevice,
    kind: &PushKind,
    documents: &[PushDocument],
    users: &HashMap<Uuid, DocumentUser>,
) -> Result<Vec<PushResult>, Refusal> {
    let now = state.clock().now();
    let actor = Actor {
        workstation_id: Some(device.id.to_string()),
        ..Actor::user(pusher)
    };
    let mut tx = AuditedTx::begin(state.pool(), actor, now).await?;
    let now = tx.at();
    sqlx::query("SELECT set_config('plugpos.offline_push', 'on', true)")
        .execute(&mut *tx)
        .await?;
    let run = PushRun {
        device,
        pusher,
        documents,
        users,
        now,
    };
    let mut pushed = (kind.record)(state, &mut tx, &run).await?;
    if pushed.len() != documents.len() {
        return Err(Refusal::new(
            0,
            ApiError::Internal(anyhow::anyhow!(
                "{} answered {} of {} documents",
                kind.name,
                pushed.len(),
                documents.len()
            )),
        ));
    }
    for (doc, p) in documents.iter().zip(pushed.iter_mut()) {
        if !run.user(doc).permissions.contains(kind.permission) || run.user(doc).disabled {
            p.conflicts.push(ConflictNote {
                kind: "user_not_allowed",
                detail: json!({"user_id": doc.user_id, "username": run.user(doc).username, "permission": kind.permission,
                               "disabled": run.user(doc).disabled}),
            });
        }
    }
    let results = store(&mut tx, &run, kind, &pushed).await?;
    let conflicts: Vec<Value> = results
        .iter()
        .flat_map(|r| {
            r.conflicts
                .iter()
                .map(move |c| json!({"document_id": r.id, "id": c.id, "kind": c.kind}))
        })
        .collect();
    tx.record(
        Change::new("core.sync", "device", device.id, "sync.push").after(json!({
            "type": kind.name, "documents": documents.iter().map(|d| d.id).collect::<Vec<_>>(),
            "conflicts": conflicts,
        })),
    )
    .await
    .map_err(|e| Refusal::new(0, e))?;
    tx.commit().await.map_err(|e| Refusal::new(0, e))?;
    for p in pushed {
        for (topic, event, data) in p.events {
            state.live().publish(topic, event, data);
        }
    }
    if !conflicts.is_empty() {
        state.live().publish(
            "sync",
            "sync.conflicts",
            json!({"device_id": device.id, "conflicts": conflicts}),
        );
    }
    Ok(results)
}

/// Writes the run's `sync_pushed` rows and conflict log entries; answers each document's result.
async fn store(
    conn: &mut PgConnection,
    run: &PushRun<'_>,
    kind: &PushKind,
    pushed: &[Pushed],
) -> Result<Vec<PushResult>, sqlx::Error> {
    let mut results = Vec::with_capacity(pushed.len());
    let (mut c_id, mut c_doc, mut c_kind, mut c_detail) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for (doc, p) in run.documents.iter().zip(pushed) {
        let mut conflicts = Vec::with_capacity(p.conflicts.len());
        for c in &p.conflicts {
            let id = new_id();
            c_id.push(id);
            c_doc.push(doc.id);
            c_kind.push(c.kind);
            c_detail.push(c.detail.clone());
            conflicts.push(ConflictRef {
                id,
                kind: c.kind.to_owned(),
            });
        }
        results.push(PushResult {
            kind: kind.name.to_owned(),
            id: doc.id,
            status: "recorded".to_owned(),
            created_at: doc.created_at,
            recorded_at: run.now,
            conflicts,
            detail: p.result.clone(),
        });
    }
    let ids: Vec<Uuid> = results.iter().map(|r| r.id).collect();
    let hashes: Vec<&[u8]> = run.documents.iter().map(|d| d.hash.as_slice()).collect();
    let bodies: Vec<Value> = results.iter().map(|r| json!(r)).collect();
    let created: Vec<DateTime<Utc>> = run.documents.iter().map(|d| d.created_at).collect();
    sqlx::query(
        "INSERT INTO sync_pushed (id, device_id, kind, request_hash, result, till_created_at, recorded_at, pushed_by) \
         SELECT d.id, $2, $3, d.hash, d.result, d.created, $4, $5 \
         FROM unnest($1::uuid[], $6::bytea[], $7::jsonb[], $8::timestamptz[]) AS d(id, hash, result, created)",
    )
    .bind(&ids)
    .bind(run.device.id)
    .bind(kind.name)
    .bind(run.now)
    .bind(run.pusher.user_id)
    .bind(&hashes)
    .bind(&bodies)
    .bind(&created)
    .execute(&mut *conn)
    .await?;
    if !c_id.is_empty() {
        sqlx::query(
            "INSERT INTO sync_conflicts (id, device_id, document_type, document_id, kind, detail, created_at) \
             SELECT c.id, $2, $3, c.doc, c.kind, c.detail, $4 \
             FROM unnest($1::uuid[], $5::uuid[], $6::text[], $7::jsonb[]) AS c(id, doc, kind, detail)",
        )
        .bind(&c_id)
        .bind(run.device.id)
        .bind(kind.name)
        .bind(run.now)
        .bind(&c_doc)
        .bind(&c_kind)
        .bind(&c_detail)
        .execute(&mut *conn)
        .await?;
    }
    Ok(results)
}

/// The document types the enabled modules take, by name.
pub fn kinds(state: &AppState) -> HashMap<&'static str, &'static PushKind> {
    let registry = state.registry();
    let mut out = HashMap::new();
    for module in registry.modules() {
        if state.modules().is_enabled(module.id()) {
            for kind in module.push_kinds() {
                out.insert(kind.name, kind);
            }
        }
    }
    out
}

/// What an earlier push recorded of a document.
struct Earlier {
    device_id: Uuid,
    hash: Vec<u8>,
    result: PushResult,
}

/// The documents of `documents` an earlier push recorded.
async fn pushed_before(
    conn: &mut PgConnection,
    documents: &[PushDocument],
) -> Result<HashMap<Uuid, Earlier>, ApiError> {
    let ids: Vec<Uuid> = documents.iter().map(|d| d.id).collect();
    let rows: Vec<(Uuid, Uuid, Vec<u8>, Value, String)> = sqlx::query_as(
        "SELECT id, device_id, request_hash, result, kind FROM sync_pushed WHERE id = ANY($1)",
    )
    .bind(&ids)
    .fetch_all(&mut *conn)
    .await?;
    let mut out = HashMap::with_capacity(rows.len());
    for (id, device_id, hash, result, kind) in rows {
        let result = stored_result(id, &kind, result).ok_or_else(|| {
            ApiError::Internal(anyhow::anyhow!("pushed document {id} unreadable"))
        })?;
        out.insert(
            id,
            Earlier {
                device_id,
                hash,
                result,
            },
        );
    }
    Ok(out)
}

/// A stored result, read back as it was answered.
fn stored_result(id: Uuid, kind: &str, value: Value) -> Option<PushResult> {
    let Value::Object(mut map) = value else {
        return None;
    };
    let created_at = serde_json::from_value(map.remove("created_at")?).ok()?;
    let recorded_at = serde_json::from_value(map.remove("recorded_at")?).ok()?;
    let conflicts = serde_json::from_value(map.remove("conflicts")?).ok()?;
    let status = map.remove("status")?.as_str()?.to_owned();
    map.remove("type");
    map.remove("id");
    Some(PushResult {
        kind: kind.to_owned(),
        id,
        status,
        created_at,
        recorded_at,
        conflicts,
        detail: map,
    })
}

/// The users the documents name, as they are now.
async fn users_of(
    conn: &mut PgConnection,
    documents: &[PushDocument],
) -> Result<HashMap<Uuid, DocumentUser>, sqlx::Error> {
    let ids: Vec<Uuid> = documents
        .iter()
        .map(|d| d.user_id)
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    #[derive(sqlx::FromRow)]
    struct Row {
        id: Uuid,
        username: String,
        roles: Vec<String>,
        permissions: Vec<String>,
        disabled: bool,
    }
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT u.id, u.username, \
           COALESCE((SELECT array_agg(r.name ORDER BY r.name) FROM user_roles ur JOIN roles r ON r.id = ur.role_id WHERE ur.user_id = u.id), '{}') AS roles, \
           COALESCE((SELECT array_agg(DISTINCT rp.permission) FROM user_roles ur JOIN role_permissions rp ON rp.role_id = ur.role_id WHERE ur.user_id = u.id), '{}') AS permissions, \
           u.disabled_at IS NOT NULL AS disabled \
         FROM users u WHERE u.id = ANY($1)",
    )
    .bind(&ids)
    .fetch_all(&mut *conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| {
            (
                r.id,
                DocumentUser {
                    id: r.id,
                    username: r.username,
                    roles: r.roles,
                    permissions: r.permissions.into_iter().collect(),
                    disabled: r.disabled,
                },
            )
        })
        .collect())
}

/// Checks the fields every document has; answers the documents, or every bad field at once.
pub async fn check_documents(
    state: &AppState,
    device: &PushingDevice,
    documents: Vec<Value>,
) -> Result<Vec<PushDocument>, ApiError> {
    if documents.is_empty() || documents.len() > MAX_DOCUMENTS {
        return Err(ApiError::invalid(
            "documents",
            format!("must hold 1 to {MAX_DOCUMENTS} documents"),
        ));
    }
    let kinds = kinds(state);
    let mut errors = Vec::new();
    let mut out = Vec::with_capacity(documents.len());
    let mut seen = HashSet::with_capacity(documents.len());
    for (index, body) in documents.into_iter().enumerate() {
        if let Some(doc) = check_document(index, body, &kinds, device, &mut seen, &mut errors) {
            out.push(doc);
        }
    }
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    let mut conn = state.pool().acquire().await?;
    let users = users_of(&mut conn, &out).await?;
    let unknown: Vec<FieldError> = out
        .iter()
        .filter(|d| !users.contains_key(&d.user_id))
        .map(|d| FieldError::new(format!("documents[{}].user_id", d.index), "is not a user"))
        .collect();
    if !unknown.is_empty() {
        return Err(ApiError::Validation(unknown));
    }
    Ok(out)
}

/// Document `index`'s common fields, or their errors in `errors` (`seen`: the ids before it).
fn check_document(
    index: usize,
    body: Value,
    kinds: &HashMap<&'static str, &'static PushKind>,
    device: &PushingDevice,
    seen: &mut HashSet<Uuid>,
    errors: &mut Vec<FieldError>,
) -> Option<PushDocument> {
    let field = |name: &str| format!("documents[{index}].{name}");
    let text = |name: &str| body.get(name).and_then(Value::as_str);
    let kind = match text("type") {
        Some(k) if kinds.contains_key(k) => Some(k.to_owned()),
        _ => {
            let mut known: Vec<&str> = kinds.keys().copied().collect();
            known.sort_unstable();
            errors.push(FieldError::new(
                field("type"),
                format!("must be one of {}", known.join(", ")),
            ));
            None
        }
    };
    let id = match text("id").map(str::parse::<Uuid>) {
        Some(Ok(id)) if seen.insert(id) => Some(id),
        Some(Ok(_)) => {
            errors.push(FieldError::new(field("id"), "appears twice in this push"));
            None
        }
        _ => {
            errors.push(FieldError::new(
                field("id"),
                "must be the document's id (a UUID)",
            ));
            None
        }
    };
    let created_at = match text("created_at").map(DateTime::parse_from_rfc3339) {
        Some(Ok(at)) => Some(at.with_timezone(&Utc)),
        _ => {
            errors.push(FieldError::new(
                field("created_at"),
                "must be the till's time for it (RFC 3339)",
            ));
            None
        }
    };
    let user_id = match text("user_id").map(str::parse::<Uuid>) {
        Some(Ok(id)) => Some(id),
        _ => {
            errors.push(FieldError::new(
                field("user_id"),
                "must be the id of the user who made it",
            ));
            None
        }
    };
    let receipt_number = match body.get("receipt_number") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if (1..=64).contains(&s.chars().count()) => Some(s.clone()),
        Some(_) => {
            errors.push(FieldError::new(
                field("receipt_number"),
                "must be text of 1 to 64 characters",
            ));
            None
        }
    };
    if let Some(register) = body.get("register_id")
        && register.as_str().and_then(|r| r.parse::<Uuid>().ok()) != Some(device.register_id)
    {
        errors.push(FieldError::new(
            field("register_id"),
            "must be the till's register (or left out)",
        ));
    }
    let (kind, id, created_at, user_id) = (kind?, id?, created_at?, user_id?);
    let hash = crate::core::idempotency::request_hash(&body);
    Some(PushDocument {
        index,
        kind,
        id,
        created_at,
        receipt_number,
        user_id,
        body,
        hash,
    })
}
