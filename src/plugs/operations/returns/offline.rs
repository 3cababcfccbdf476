//! Returns an offline till pushes (`core::sync::push`, type `return`): priced against their sale's
//! books as online returns are, numbered in the register's correction series as the till numbered
//! them, and written by the same statement, in the push's transaction. A return the till made
//! without the approval it needs online (without a receipt) is recorded and logged as a conflict;
//! one giving back more than is left of its sale, or refunding other than it comes to, is refused
//! (that is arithmetic, not a decision the till could take).

use chrono::Datelike;
use futures_util::future::BoxFuture;
use serde_json::{Map, json};
use uuid::Uuid;

use super::batch::{Books, PreparedReturn, correction_number, judge, write_documents};
use super::http::{
    NewRefund, NewReturnLine, check_product_lines, check_refunds, check_sale_lines, return_customer,
};
use super::rules::RETURN_REASONS;
use super::{CREATE, WITHOUT_RECEIPT};
use crate::core::audit::AuditedTx;
use crate::core::http::ApiError;
use crate::core::http::problem::FieldError;
use crate::core::settings::Business;
use crate::core::state::AppState;
use crate::core::sync::push::{
    ConflictNote, PushDocument, PushKind, PushRun, Pushed, Refusal, number_required,
    pushed_document, sequence_gap,
};
use crate::plugs::administration::api::places;
use crate::plugs::operations::api::{cash, sales};

/// The document type.
pub const KINDS: &[PushKind] = &[PushKind {
    name: "return",
    permission: CREATE,
    batch: 1,
    record: record_returns,
}];

fn record_returns<'a>(
    state: &'a AppState,
    tx: &'a mut AuditedTx,
    run: &'a PushRun<'a>,
) -> BoxFuture<'a, Result<Vec<Pushed>, Refusal>> {
    Box::pin(async move {
        let mut out = Vec::with_capacity(run.documents.len());
        for at in 0..run.documents.len() {
            out.push(
                record(state, tx, run, at)
                    .await
                    .map_err(|e| Refusal::new(at, e))?,
            );
        }
        Ok(out)
    })
}

pushed_document! {
    /// A return as the till made it (its `receipt_number`, in the correction series, is required).
    struct OfflineReturn {
        /// The session whose drawer paid the refund.
        cash_session_id: Uuid,
        original_sale_id: Option<Uuid>,
        customer_id: Option<Uuid>,
        lines: Vec<NewReturnLine>,
        refunds: Vec<NewRefund>,
        reason_code: String,
    }
}

const MAX_LINES: usize = 500;

/// Checks pushed return `doc` with reads: the return ready for the statement, with its conflicts.
async fn check(
    state: &AppState,
    run: &PushRun<'_>,
    doc: &PushDocument,
) -> Result<(PreparedReturn, Vec<ConflictNote>), ApiError> {
    if let Some(e) = number_required(doc) {
        return Err(e);
    }
    let new: OfflineReturn = serde_json::from_value(doc.body.clone())
        .map_err(|e| ApiError::invalid("", e.to_string()))?;
    let business = Business::cached(state)
        .await?
        .ok_or(ApiError::SetupRequired)?;
    let scale = business.currency_scale;
    let register = places::register_for_sale(state, run.device.register_id)
        .await?
        .ok_or_else(|| ApiError::invalid("register_id", "is not a register"))?;
    let mut errors = Vec::new();
    if !RETURN_REASONS.contains(&new.reason_code.as_str()) {
        errors.push(FieldError::new(
            "reason_code",
            format!("must be one of {}", RETURN_REASONS.join(", ")),
        ));
    }
    if new.lines.is_empty() || new.lines.len() > MAX_LINES {
        errors.push(FieldError::new(
            "lines",
            format!("must hold 1 to {MAX_LINES} lines"),
        ));
    }
    let refunds = check_refunds(&new.refunds, scale, &mut errors);
    let sale = match new.original_sale_id {
        Some(id) => {
            let sale = sales::sold_sale_cached(state, id).await?;
            if sale.is_none() {
                errors.push(FieldError::new(
                    "original_sale_id",
                    "is not a sale (push it first)",
                ));
            }
            sale
        }
        None => None,
    };
    let asked = match &sale {
        Some(sale) => check_sale_lines(&new.lines, sale, &mut errors),
        None if new.original_sale_id.is_some() => Vec::new(),
        None => check_product_lines(state, &new.lines, scale, &mut errors).await?,
    };
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    let mut conflicts = Vec::new();
    if new.original_sale_id.is_none() {
        conflicts.push(ConflictNote {
            kind: "approval_missing",
            detail: json!({"action": WITHOUT_RECEIPT, "why": "a return without a receipt needs a manager's approval online"}),
        });
    }
    let customer_id = return_customer(state, new.customer_id, sale.as_ref()).await?;
    let prepared = PreparedReturn {
        id: doc.id,
        actor: run.actor(doc),
        user_id: doc.user_id,
        register_id: run.device.register_id,
        register_code: register.code.clone(),
        location_id: register.location_id,
        session_id: new.cash_session_id,
        sale,
        customer_id,
        asked,
        refunds,
        reason_code: new.reason_code,
        approval: None,
        client_id: true,
        key: format!("sync/{}/{}", run.device.id, doc.id),
        hash: doc.hash.clone(),
        business: business.clone(),
        offline: Some(run.origin(doc)),
    };
    Ok((prepared, conflicts))
}

async fn record(
    state: &AppState,
    tx: &mut AuditedTx,
    run: &PushRun<'_>,
    at: usize,
) -> Result<Pushed, ApiError> {
    let doc = &run.documents[at];
    let (mut prepared, mut conflicts) = check(state, run, doc).await?;
    let (session, moved) =
        cash::session_for_push(tx, run.device.register_id, prepared.session_id).await?;
    prepared.session_id = session;
    conflicts.extend(moved);
    let business = &prepared.business;
    let register_code = &prepared.register_code;
    let sales: Vec<Uuid> = prepared.sale.iter().map(|s| s.id).collect();
    let books = Books::read(tx, &sales).await?;
    // Priced as of the till's time: its year is the number's series.
    let accepted = judge(&prepared, 0, &books, doc.created_at)?;
    let year = doc.created_at.with_timezone(&business.timezone).year();
    let last: Option<i64> = sqlx::query_scalar(
        "SELECT last_number FROM return_counters WHERE register_id = $1 AND year = $2 FOR UPDATE",
    )
    .bind(run.device.register_id)
    .bind(year)
    .fetch_optional(&mut **tx)
    .await?;
    let expected = correction_number(business, register_code, year, last.unwrap_or(0) + 1);
    if doc.receipt_number.as_deref() != Some(expected.as_str()) {
        return Err(sequence_gap(doc, &expected));
    }
    let written = write_documents(tx, &[&prepared], &[accepted], &books, run.now)
        .await
        .map_err(|e| match crate::core::db::violated_constraint(&e) {
            Some("return_session_closed") => ApiError::Conflict {
                code: "cash.no_open_session",
                detail: format!(
                    "its cash session {} is not the register's open session.",
                    prepared.session_id
                ),
            },
            Some("return_books_changed" | "returned_not_above_sold") => ApiError::Conflict {
                code: "return.contention",
                detail: "other returns or a void of its sale were recorded meanwhile; nothing of it was recorded: push again.".to_owned(),
            },
            _ if e.as_database_error().and_then(|d| d.code()).as_deref() == Some("40P01") => {
                ApiError::Conflict {
                    code: "return.contention",
                    detail: "it met another write of its sale; nothing of it was recorded: push again.".to_owned(),
                }
            }
            Some("returns_pkey") => ApiError::Conflict {
                code: "return.id_conflict",
                detail: format!("a return with id {} exists already.", doc.id),
            },
            _ => e.into(),
        })?;
    tx.recorded_by_statement(written.len());
    let Some((_, shown)) = written.into_iter().next() else {
        return Err(ApiError::Internal(anyhow::anyhow!(
            "return {} not written",
            doc.id
        )));
    };
    // Another return took the number meanwhile (the counter had no row to lock): nothing of it
    // is kept, and the till hears which number is next.
    if shown.number != expected {
        return Err(sequence_gap(doc, &shown.number));
    }
    let mut result = Map::new();
    result.insert("receipt_number".into(), json!(shown.number));
    result.insert("cash_session_id".into(), json!(shown.cash_session_id));
    result.insert("total".into(), json!(shown.totals.total));
    Ok(Pushed {
        result,
        conflicts,
        events: vec![(
            "returns",
            "return.completed",
            json!({"id": shown.id, "number": shown.number, "register_id": shown.register_id,
                   "original_sale_id": shown.original_sale_id, "total": shown.totals.total, "offline": true}),
        )],
    })
}
