//! Cash documents an offline till pushes (`core::sync::push`): `cash_session_open`,
//! `cash_movement` and `cash_session_close`, each recorded as the online endpoint records it, in
//! the push's transaction, dated by the server, with the till's id (a session opened offline
//! keeps the till's id, so the sales pushed after it name it).

use futures_util::future::BoxFuture;
use serde::Deserialize;
use serde_json::{Map, Value, json};
use uuid::Uuid;

use super::http::present;
use super::rules;
use super::store::{self, Closing, Lock};
use super::{CLOSE, MODULE, MOVEMENT, OPEN};
use crate::core::audit::{AuditedTx, Change};
use crate::core::db::violated_constraint;
use crate::core::http::ApiError;
use crate::core::http::problem::FieldError;
use crate::core::settings::Business;
use crate::core::state::AppState;
use crate::core::sync::push::{
    ConflictNote, PushDocument, PushKind, PushRun, Pushed, Refusal, pushed_document,
};

/// The document types.
pub const KINDS: &[PushKind] = &[
    PushKind {
        name: "cash_session_open",
        permission: OPEN,
        batch: 1,
        record: record_open,
    },
    PushKind {
        name: "cash_movement",
        permission: MOVEMENT,
        batch: 64,
        record: record_movements,
    },
    PushKind {
        name: "cash_session_close",
        permission: CLOSE,
        batch: 1,
        record: record_close,
    },
];

fn record_open<'a>(
    state: &'a AppState,
    tx: &'a mut AuditedTx,
    run: &'a PushRun<'a>,
) -> BoxFuture<'a, Result<Vec<Pushed>, Refusal>> {
    Box::pin(each(state, tx, run, open))
}

fn record_movements<'a>(
    state: &'a AppState,
    tx: &'a mut AuditedTx,
    run: &'a PushRun<'a>,
) -> BoxFuture<'a, Result<Vec<Pushed>, Refusal>> {
    Box::pin(each(state, tx, run, movement))
}

fn record_close<'a>(
    state: &'a AppState,
    tx: &'a mut AuditedTx,
    run: &'a PushRun<'a>,
) -> BoxFuture<'a, Result<Vec<Pushed>, Refusal>> {
    Box::pin(each(state, tx, run, close))
}

/// One document's recording.
type One = for<'a> fn(
    &'a AppState,
    &'a mut AuditedTx,
    &'a PushRun<'a>,
    &'a PushDocument,
    &'a Business,
) -> BoxFuture<'a, Result<Pushed, ApiError>>;

/// Records the run's documents one after the other.
async fn each(
    state: &AppState,
    tx: &mut AuditedTx,
    run: &PushRun<'_>,
    one: One,
) -> Result<Vec<Pushed>, Refusal> {
    let business = Business::load(tx)
        .await?
        .ok_or_else(|| Refusal::new(0, ApiError::SetupRequired))?;
    let mut out = Vec::with_capacity(run.documents.len());
    for (at, doc) in run.documents.iter().enumerate() {
        out.push(
            one(state, tx, run, doc, &business)
                .await
                .map_err(|e| Refusal::new(at, e))?,
        );
    }
    Ok(out)
}

fn parse<T: for<'de> Deserialize<'de>>(doc: &PushDocument) -> Result<T, ApiError> {
    serde_json::from_value(doc.body.clone()).map_err(|e| ApiError::invalid("", e.to_string()))
}

pushed_document! {
    /// A session opened on the till.
    struct OfflineOpen {
        opening_float: String,
    }
}

fn open<'a>(
    state: &'a AppState,
    tx: &'a mut AuditedTx,
    run: &'a PushRun<'a>,
    doc: &'a PushDocument,
    business: &'a Business,
) -> BoxFuture<'a, Result<Pushed, ApiError>> {
    Box::pin(async move {
        let _ = state;
        let new: OfflineOpen = parse(doc)?;
        let scale = business.currency_scale;
        let mut errors = Vec::new();
        let Some(float) = rules::amount("opening_float", &new.opening_float, scale, &mut errors)
        else {
            return Err(ApiError::Validation(errors));
        };
        store::insert_session(tx, doc.id, run.device.register_id, float, doc.user_id, run.now)
            .await
            .map_err(|e| match violated_constraint(&e) {
                Some("cash_sessions_one_open") => ApiError::Conflict {
                    code: "cash.session_already_open",
                    detail: "the register has another open cash session on the server: push the till's cash_session_close of it first.".to_owned(),
                },
                Some("cash_sessions_pkey") => ApiError::Conflict {
                    code: "sync.document_conflict",
                    detail: format!("a cash session with id {} exists already.", doc.id),
                },
                _ => e.into(),
            })?;
        let session = present(fetch(tx, doc.id).await?, scale);
        tx.record_for(vec![(
            run.actor(doc),
            Change::new(MODULE, "cash_session", doc.id, "cash_session.open").after(json!({
                "register_id": run.device.register_id, "opening_float": session.opening_float,
                "offline": run.origin(doc),
            })),
        )])
        .await?;
        let mut result = Map::new();
        result.insert("cash_session_id".into(), json!(doc.id));
        Ok(Pushed {
            result,
            conflicts: Vec::new(),
            events: vec![("cash", "cash_session.opened", event_data(&session))],
        })
    })
}

pushed_document! {
    /// Cash put in or taken out on the till.
    struct OfflineMovement {
        cash_session_id: Uuid,
        kind: String,
        amount: String,
        reason: String,
    }
}

fn movement<'a>(
    state: &'a AppState,
    tx: &'a mut AuditedTx,
    run: &'a PushRun<'a>,
    doc: &'a PushDocument,
    business: &'a Business,
) -> BoxFuture<'a, Result<Pushed, ApiError>> {
    Box::pin(async move {
        let _ = state;
        let new: OfflineMovement = parse(doc)?;
        let scale = business.currency_scale;
        let valid = rules::movement(&new.kind, &new.amount, &new.reason, scale)
            .map_err(ApiError::Validation)?;
        let (session, conflict) =
            session_for_push(tx, run.device.register_id, new.cash_session_id).await?;
        let row = session_of_register(tx, run, session, Lock::Share).await?;
        store::insert_movement(
            tx,
            doc.id,
            row.id,
            valid.kind.as_str(),
            valid.amount,
            &valid.reason,
            doc.user_id,
            run.now,
        )
        .await?;
        let amount = crate::shared::money::show(valid.amount, scale);
        tx.record_for(vec![(
            run.actor(doc),
            Change::new(MODULE, "cash_session", row.id, "cash_session.movement").after(json!({
                "movement_id": doc.id, "kind": valid.kind.as_str(), "amount": amount, "reason": valid.reason,
                "offline": run.origin(doc),
            })),
        )])
        .await?;
        let mut result = Map::new();
        result.insert("cash_session_id".into(), json!(row.id));
        result.insert("amount".into(), json!(amount));
        Ok(Pushed {
            result,
            conflicts: conflict.into_iter().collect(),
            events: vec![(
                "cash",
                "cash_session.movement",
                json!({"id": row.id, "register_id": row.register_id, "kind": valid.kind.as_str(), "amount": amount}),
            )],
        })
    })
}

pushed_document! {
    /// A session closed on the till.
    struct OfflineClose {
        cash_session_id: Uuid,
        counted_cash: String,
        variance_reason: Option<String>,
    }
}

fn close<'a>(
    state: &'a AppState,
    tx: &'a mut AuditedTx,
    run: &'a PushRun<'a>,
    doc: &'a PushDocument,
    business: &'a Business,
) -> BoxFuture<'a, Result<Pushed, ApiError>> {
    Box::pin(async move {
        let new: OfflineClose = parse(doc)?;
        let scale = business.currency_scale;
        let mut errors = Vec::new();
        let Some(counted) = rules::amount("counted_cash", &new.counted_cash, scale, &mut errors)
        else {
            return Err(ApiError::Validation(errors));
        };
        // Closed on the server meanwhile: that close stands; the till's count is logged.
        if let Some(closed) = closed_already(tx, run, new.cash_session_id).await? {
            let mut result = Map::new();
            result.insert("cash_session_id".into(), json!(closed.id));
            result.insert("already_closed".into(), json!(true));
            return Ok(Pushed {
                result,
                conflicts: vec![ConflictNote {
                    kind: "session_closed",
                    detail: json!({"till_session_id": closed.id, "closed_at": closed.closed_at,
                                   "till_counted_cash": crate::shared::money::show(counted, scale),
                                   "server_counted_cash": closed.counted_cash.map(|c| crate::shared::money::show(c, scale))}),
                }],
                events: Vec::new(),
            });
        }
        // Waits for what is in flight on the session, then blocks new writes to it.
        let before = session_of_register(tx, run, new.cash_session_id, Lock::Update).await?;
        let expected = store::cash_flows(state, tx, before.id).await?.0.expected();
        let mut conflicts = Vec::new();
        let reason = match rules::variance_reason(
            new.variance_reason.as_deref(),
            expected,
            counted,
            business.variance_reason_threshold,
            scale,
        ) {
            Ok(reason) => reason,
            // The till closed it without a reason the server asks for: closed all the same.
            Err(why) => {
                conflicts.push(ConflictNote {
                    kind: "variance_unexplained",
                    detail: json!({"cash_session_id": before.id, "expected_cash": crate::shared::money::show(expected, scale),
                                   "counted_cash": crate::shared::money::show(counted, scale), "why": why}),
                });
                new.variance_reason
                    .as_deref()
                    .map(str::trim)
                    .filter(|r| !r.is_empty())
                    .map(|r| r.chars().take(500).collect())
            }
        };
        let closing = Closing {
            closed_by: doc.user_id,
            at: run.now,
            expected,
            counted,
            reason: reason.as_deref(),
        };
        store::close_session(tx, before.id, &closing).await?;
        let session = present(fetch(tx, before.id).await?, scale);
        tx.record_for(vec![(
            run.actor(doc),
            Change::new(MODULE, "cash_session", before.id, "cash_session.close")
                .before(json!({"status": before.status}))
                .after(json!({
                    "status": "closed", "expected_cash": session.expected_cash, "counted_cash": session.counted_cash,
                    "variance": session.variance, "variance_reason": session.variance_reason,
                    "offline": run.origin(doc),
                })),
        )])
        .await?;
        let mut result = Map::new();
        result.insert("cash_session_id".into(), json!(before.id));
        result.insert("expected_cash".into(), json!(session.expected_cash));
        result.insert("variance".into(), json!(session.variance));
        Ok(Pushed {
            result,
            conflicts,
            events: vec![("cash", "cash_session.closed", event_data(&session))],
        })
    })
}

fn event_data(session: &super::http::CashSession) -> Value {
    json!({
        "id": session.id, "register_id": session.register_id, "status": session.status,
        "expected_cash": session.expected_cash, "counted_cash": session.counted_cash, "variance": session.variance,
        "offline": true,
    })
}

/// Session `id` of the till's register if the server closed it already.
async fn closed_already(
    tx: &mut AuditedTx,
    run: &PushRun<'_>,
    id: Uuid,
) -> Result<Option<store::SessionRow>, ApiError> {
    Ok(store::session(tx, id, Lock::None)
        .await?
        .filter(|row| row.register_id == run.device.register_id && row.status != "open"))
}

async fn fetch(tx: &mut AuditedTx, id: Uuid) -> Result<store::SessionRow, ApiError> {
    store::session(tx, id, Lock::None)
        .await?
        .ok_or_else(|| ApiError::Internal(anyhow::anyhow!("session {id} not read back")))
}

/// The session a pushed document named, or the one it goes into: `session` if it is an open
/// session of the till's register; if the server closed it meanwhile (a manager closed the drawer
/// while the till was offline), the register's open session, with a `session_closed` conflict (the
/// document stands, in the drawer that is open now); refused when the register has none (open one
/// and push again) or the session is not the register's.
pub async fn session_for_push(
    conn: &mut sqlx::PgConnection,
    register: Uuid,
    session: Uuid,
) -> Result<(Uuid, Option<ConflictNote>), ApiError> {
    match store::session(conn, session, Lock::None).await? {
        Some(row) if row.register_id != register => {
            Err(ApiError::Validation(vec![FieldError::new(
                "cash_session_id",
                "is not a session of the till's register",
            )]))
        }
        Some(row) if row.status == "open" => Ok((row.id, None)),
        Some(row) => match store::open_session(conn, register).await? {
            Some(open) => Ok((
                open.id,
                Some(ConflictNote {
                    kind: "session_closed",
                    detail: json!({"till_session_id": row.id, "closed_at": row.closed_at, "recorded_in": open.id}),
                }),
            )),
            None => Err(ApiError::Conflict {
                code: "cash.no_open_session",
                detail: format!(
                    "its cash session {session} was closed on the server and the register has no open session: open one on the till and push again (the documents go into it, each logged as a conflict)."
                ),
            }),
        },
        None => Err(ApiError::Validation(vec![FieldError::new(
            "cash_session_id",
            "is not a cash session (push its cash_session_open first)",
        )])),
    }
}

/// Session `id`, locked, if it is an open session of the till's register.
async fn session_of_register(
    tx: &mut AuditedTx,
    run: &PushRun<'_>,
    id: Uuid,
    lock: Lock,
) -> Result<store::SessionRow, ApiError> {
    match store::session(tx, id, lock).await? {
        Some(row) if row.register_id != run.device.register_id => {
            Err(ApiError::Validation(vec![FieldError::new(
                "cash_session_id",
                "is not a session of the till's register",
            )]))
        }
        Some(row) if row.status == "open" => Ok(row),
        Some(_) => Err(ApiError::Conflict {
            code: "cash.session_closed",
            detail: format!("cash session {id} is closed on the server."),
        }),
        None => Err(ApiError::Validation(vec![FieldError::new(
            "cash_session_id",
            "is not a cash session (push its cash_session_open first)",
        )])),
    }
}
