//! `POST /api/v1/closings`, `GET /api/v1/closings`, `/closings/{id}`, `/closings/{id}/report`.

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, NaiveDate, NaiveTime, Utc};
use ed25519_dalek::Signer;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::period::{self, Kind, Period};
use super::report::{self, AuditHead, ClosingReport, FORMAT, GrandTotals};
use super::store::{self, ClosingRow};
use super::{DAY_STARTS_AT, DEFAULT_DAY_START, MODULE};
use crate::core::audit::checkpoint;
use crate::core::audit::{Actor, AuditedTx, Change};
use crate::core::auth::context::AuthContext;
use crate::core::http::json::from_value;
use crate::core::http::problem::{FieldError, Problem};
use crate::core::http::{ApiError, ApiJson, Page, page, page_limit};
use crate::core::idempotency;
use crate::core::settings::Business;
use crate::core::state::AppState;
use crate::plugs::administration::api::places::{self, BranchPlaces};
use crate::plugs::operations::api::{cash, receipts};
use crate::shared::ids::new_id;

/// A closing to make.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewClosing {
    /// `day`, `month` or `year`.
    #[schema(example = "day")]
    pub kind: String,
    /// `YYYY-MM-DD`: the day, or any day of the month or year. Default for a day closing: the
    /// current business day; required for a month or a year.
    #[schema(example = "2026-12-06")]
    pub business_date: Option<String>,
    /// Default: the business's only branch.
    pub branch_id: Option<Uuid>,
}

/// A closing: its place in the chain, its signature, and the signed report.
#[derive(Debug, Serialize, ToSchema)]
pub struct Closing {
    pub id: Uuid,
    pub seq: i64,
    pub kind: String,
    pub branch_id: Uuid,
    pub business_date: NaiveDate,
    pub period_start: DateTime<Utc>,
    pub period_end: DateTime<Utc>,
    /// Hex SHA-256 of `plugpos-closing-v1\n` followed by `signed_message`.
    pub hash: String,
    pub previous_hash: String,
    /// Hex ed25519 public key (the instance's audit checkpoint key).
    pub public_key: String,
    /// Hex ed25519 signature over the same bytes as `hash`.
    pub signature: String,
    /// The exact JSON text that was hashed and signed.
    pub signed_message: String,
    pub report: ClosingReport,
    pub created_by: Uuid,
    pub created_at: DateTime<Utc>,
}

fn present(row: ClosingRow) -> Result<Closing, ApiError> {
    let report: ClosingReport = serde_json::from_str(&row.signed_message).map_err(|e| {
        ApiError::Internal(anyhow::anyhow!("closing {} cannot be read: {e}", row.id))
    })?;
    Ok(Closing {
        id: row.id,
        seq: row.seq,
        kind: row.kind,
        branch_id: row.branch_id,
        business_date: row.business_date,
        period_start: row.period_start,
        period_end: row.period_end,
        hash: hex::encode(&row.hash),
        previous_hash: hex::encode(&row.previous_hash),
        public_key: hex::encode(&row.public_key),
        signature: hex::encode(&row.signature),
        signed_message: row.signed_message,
        report,
        created_by: row.created_by,
        created_at: row.created_at,
    })
}

fn conflict(code: &'static str, detail: String) -> ApiError {
    ApiError::Conflict { code, detail }
}

/// The business day setting, parsed (its rule keeps it `HH:MM`).
pub fn day_start(business: &Business) -> NaiveTime {
    period::parse_day_start(business.text(DAY_STARTS_AT, DEFAULT_DAY_START))
        .unwrap_or(NaiveTime::MIN)
}

/// What a valid request asks for.
struct Asked {
    kind: Kind,
    date: NaiveDate,
    branch: BranchPlaces,
    period: Period,
}

/// Make a Z closing of a day, a month or a year: totals computed from the documents in one
/// transaction (which holds document writes back until it commits), the perpetual grand
/// totals, the previous closing's hash and the audit chain's head, signed with the instance's
/// ed25519 key. From then on nothing can be dated inside the period (`409 period.closed`).
/// Accepts an `Idempotency-Key`.
#[utoipa::path(post, path = "/api/v1/closings", tag = "closings", security(("bearer" = [])), request_body = NewClosing,
    params(("Idempotency-Key" = Option<String>, Header, description = "Optional: a retry with the same key answers the same closing", pattern = "^[!-~]{1,255}$")),
    responses(
        (status = 201, description = "Closed", body = Closing),
        (status = 403, description = "Missing permission (`rbac.forbidden`)", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Closed already (`closing.already_closed`), a later day closed already (`closing.out_of_order`), an earlier day with documents still open (`closing.earlier_day_open`), cash sessions still open (`closing.sessions_open`), days of the month or year not closed (`closing.days_open`), an earlier month not closed (`closing.earlier_period_open`)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid fields (`validation.failed`), a period that has not begun (`closing.future`), key used with another body (`idempotency.key_reused`)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn create(
    State(state): State<AppState>,
    caller: AuthContext,
    headers: HeaderMap,
    ApiJson(body): ApiJson<Value>,
) -> Result<Response, ApiError> {
    let client_key = idempotency::optional_key(&headers)?;
    let hash = idempotency::request_hash(&body);
    let new: NewClosing = from_value(body)?;
    let key = client_key.map(|k| idempotency::scoped(&caller.user_id.to_string(), &k));
    if let Some(key) = &key {
        let mut conn = state.pool().acquire().await?;
        if let Some(stored) = idempotency::find(&mut conn, "closings", key).await? {
            let id = stored.replay_for(&hash)?;
            return answer(&state, id, true).await;
        }
    }
    let now = state.clock().now();
    let mut tx = AuditedTx::begin(state.pool(), Actor::user(&caller), now).await?;
    store::lock(&mut tx).await?;
    let business = Business::load(&mut tx)
        .await?
        .ok_or(ApiError::SetupRequired)?;
    let asked = check(&mut tx, &business, &new, now).await?;
    let id = new_id();
    if let Some(key) = &key
        && let Some(stored) =
            idempotency::claim(&mut tx, "closings", key, &hash, id, caller.user_id, now).await?
    {
        tx.rollback().await?;
        return answer(&state, stored.replay_for(&hash)?, true).await;
    }
    let mut asked = asked;
    ready(&mut tx, &mut asked).await?;
    let row = sign(&state, &mut tx, &business, &asked, id, caller.user_id, now).await?;
    store::insert(&mut tx, &row).await?;
    tx.record(
        Change::new(MODULE, "closing", id, "closing.create").after(json!({
            "seq": row.seq, "kind": row.kind, "branch_id": row.branch_id, "business_date": row.business_date,
            "period_start": row.period_start, "period_end": row.period_end, "hash": hex::encode(&row.hash),
        })),
    )
    .await?;
    tx.commit().await?;
    let closing = present(row)?;
    state.live().publish(
        "closings",
        "closing.created",
        json!({"id": closing.id, "kind": closing.kind, "business_date": closing.business_date,
               "branch_id": closing.branch_id, "grand_totals": closing.report.grand_totals}),
    );
    Ok((StatusCode::CREATED, Json(closing)).into_response())
}

async fn answer(state: &AppState, id: Uuid, replayed: bool) -> Result<Response, ApiError> {
    let mut conn = state.pool().acquire().await?;
    let row = store::get(&mut conn, id)
        .await?
        .ok_or_else(|| ApiError::Internal(anyhow::anyhow!("closing {id} vanished")))?;
    let mut response = (StatusCode::CREATED, Json(present(row)?)).into_response();
    if replayed {
        idempotency::mark_replayed(&mut response);
    }
    Ok(response)
}

/// The request's kind, date and branch, and its period, which must have begun.
async fn check(
    conn: &mut sqlx::PgConnection,
    business: &Business,
    new: &NewClosing,
    now: DateTime<Utc>,
) -> Result<Asked, ApiError> {
    let mut errors = Vec::new();
    let kind = Kind::parse(&new.kind);
    if kind.is_none() {
        errors.push(FieldError::new("kind", "must be day, month or year"));
    }
    let starts = day_start(business);
    let today = period::business_date(now, starts, business.timezone);
    let date = match (&new.business_date, kind) {
        (Some(text), _) => match NaiveDate::parse_from_str(text, "%Y-%m-%d") {
            Ok(date) => Some(date),
            Err(_) => {
                errors.push(FieldError::new(
                    "business_date",
                    "must be a date, YYYY-MM-DD",
                ));
                None
            }
        },
        (None, Some(Kind::Day)) => Some(today),
        (None, _) => {
            errors.push(FieldError::new(
                "business_date",
                "is required for a month or year closing (any day of it)",
            ));
            None
        }
    };
    let branch_id = match new.branch_id {
        Some(id) => Some(id),
        None => places::sole_branch(conn).await?,
    };
    let branch = match branch_id {
        Some(id) => places::branch_places(conn, id).await?,
        None => None,
    };
    if branch.is_none() {
        errors.push(FieldError::new(
            "branch_id",
            match new.branch_id {
                Some(_) => "is not a branch",
                None => "is required when the business has several branches",
            },
        ));
    }
    let (Some(kind), Some(date), Some(branch), true) = (kind, date, branch, errors.is_empty())
    else {
        return Err(ApiError::Validation(errors));
    };
    let date = period::first_day(kind, date);
    let period = period::period(kind, date, starts, business.timezone);
    if period.start > now {
        return Err(ApiError::Unprocessable {
            code: "closing.future",
            detail: format!(
                "The {} of {date} has not begun yet (the current business day is {today}).",
                kind.as_str()
            ),
        });
    }
    Ok(Asked {
        kind,
        date,
        branch,
        period,
    })
}

/// Whether the period may be closed now: not closed yet, its turn in order, nothing earlier
/// left open, no cash session open in it.
async fn ready(tx: &mut AuditedTx, asked: &mut Asked) -> Result<(), ApiError> {
    let (kind, date, branch) = (asked.kind.as_str(), asked.date, asked.branch.id);
    if store::find(tx, branch, kind, date).await?.is_some() {
        return Err(conflict(
            "closing.already_closed",
            format!("The {kind} of {date} is closed already; a closing is final."),
        ));
    }
    let last_day = store::latest(tx, branch, "day", None).await?;
    match asked.kind {
        Kind::Day => {
            if let Some(last) = &last_day
                && last.business_date >= date
            {
                return Err(conflict(
                    "closing.out_of_order",
                    format!(
                        "Days close in order: {} is closed already, so {date} can no longer be.",
                        last.business_date
                    ),
                ));
            }
            // The day after a closed one starts where that one ended, so a change of
            // `closing.day_starts_at` between them neither counts an hour twice nor leaves one out.
            if let Some(last) = &last_day
                && last.business_date + chrono::Duration::days(1) == date
                && last.period_end < asked.period.end
            {
                asked.period.start = last.period_end;
            }
            let from = last_day
                .as_ref()
                .map_or(DateTime::<Utc>::UNIX_EPOCH, |l| l.period_end);
            if let Some(at) =
                report::first_document_at(tx, &asked.branch, from, asked.period.start).await?
            {
                return Err(conflict(
                    "closing.earlier_day_open",
                    format!(
                        "A document of {at} lies in an earlier business day that is not closed: close that day first."
                    ),
                ));
            }
            let registers: Vec<Uuid> = asked.branch.registers.iter().map(|r| r.0).collect();
            let open = cash::open_before(tx, &registers, asked.period.end).await?;
            if !open.is_empty() {
                let named: Vec<String> = open
                    .iter()
                    .map(|(s, r)| format!("{s} (register {r})"))
                    .collect();
                return Err(conflict(
                    "closing.sessions_open",
                    format!("Close these cash sessions first: {}.", named.join(", ")),
                ));
            }
        }
        Kind::Month | Kind::Year => {
            if last_day
                .as_ref()
                .is_none_or(|l| l.period_end < asked.period.end)
            {
                return Err(conflict(
                    "closing.days_open",
                    format!(
                        "Close every day of the {kind} first (through its last day); the last closed day is {}.",
                        last_day.map_or("none".to_owned(), |l| l.business_date.to_string())
                    ),
                ));
            }
            let earlier = match asked.kind {
                Kind::Month => store::earlier_open(tx, branch, "month", date).await?,
                _ => store::earlier_open(tx, branch, "month", date + chrono::Months::new(12))
                    .await?
                    .or(store::earlier_open(tx, branch, "year", date).await?),
            };
            if let Some(open) = earlier {
                return Err(conflict(
                    "closing.earlier_period_open",
                    format!(
                        "The period starting {open} has closed days but no closing of its own: close it first."
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// Computes, chains and signs the closing.
#[allow(clippy::too_many_arguments)] // The closing's parts, each used once.
async fn sign(
    state: &AppState,
    tx: &mut AuditedTx,
    business: &Business,
    asked: &Asked,
    id: Uuid,
    user: Uuid,
    now: DateTime<Utc>,
) -> Result<ClosingRow, ApiError> {
    let scale = business.currency_scale;
    let renders = renders_counted(tx, asked).await?;
    let figures = report::figures(tx, &asked.branch, asked.period, renders, scale).await?;
    let grand_totals = match asked.kind {
        Kind::Day => {
            let previous = store::latest(tx, asked.branch.id, "day", None).await?;
            let previous = previous.map(|p| grand_of(&p)).transpose()?;
            report::carried(previous.as_ref(), &figures, scale)
        }
        Kind::Month | Kind::Year => {
            let last = store::latest(tx, asked.branch.id, "day", Some(asked.period.end)).await?;
            match last {
                Some(day) => grand_of(&day)?,
                None => report::carried(None, &figures, scale),
            }
        }
    };
    let (seq, previous_hash) = match store::chain_end(tx).await? {
        Some((seq, hash)) => (seq + 1, hash),
        None => (1, vec![0u8; 32]),
    };
    let (audit_seq, audit_hash) = checkpoint::head(tx).await?;
    let starts = day_start(business);
    let report = ClosingReport {
        format: FORMAT.to_owned(),
        id,
        seq,
        kind: asked.kind.as_str().to_owned(),
        branch_id: asked.branch.id,
        branch: asked.branch.name.clone(),
        business: business.name.clone(),
        business_date: asked.date.to_string(),
        period_start: report::instant(asked.period.start),
        period_end: report::instant(asked.period.end),
        timezone: business.timezone.name().to_owned(),
        day_starts_at: starts.format("%H:%M").to_string(),
        currency: business.currency.clone(),
        figures,
        grand_totals,
        previous_hash: hex::encode(&previous_hash),
        audit_head: AuditHead {
            seq: audit_seq,
            hash: hex::encode(audit_hash),
        },
        created_at: report::instant(now),
        created_by: user,
    };
    let signed_message = serde_json::to_string(&report)
        .map_err(|e| ApiError::Internal(anyhow::anyhow!("cannot serialize a closing: {e}")))?;
    let bytes = report::message(&signed_message);
    let key = checkpoint::load_or_create_key(&state.data_dir().keys())?;
    Ok(ClosingRow {
        id,
        seq,
        kind: report.kind.clone(),
        branch_id: asked.branch.id,
        business_date: asked.date,
        period_start: asked.period.start,
        period_end: asked.period.end,
        hash: Sha256::digest(&bytes).to_vec(),
        previous_hash,
        public_key: key.verifying_key().to_bytes().to_vec(),
        signature: key.sign(&bytes).to_bytes().to_vec(),
        signed_message,
        created_by: user,
        created_at: now,
    })
}

/// The receipt renders a closing counts copies among, (after, through): a day, those since the
/// branch's previous day closing up to the last recorded (the closing holds new ones back); a
/// month or a year, those of its day closings.
async fn renders_counted(tx: &mut AuditedTx, asked: &Asked) -> Result<(i64, i64), ApiError> {
    let branch = asked.branch.id;
    let through_of = |row: Option<ClosingRow>| -> Result<Option<i64>, ApiError> {
        row.map(|r| {
            serde_json::from_str::<ClosingReport>(&r.signed_message)
                .map(|report| report.figures.receipt_renders_through)
                .map_err(|e| {
                    ApiError::Internal(anyhow::anyhow!("closing {} cannot be read: {e}", r.id))
                })
        })
        .transpose()
    };
    Ok(match asked.kind {
        Kind::Day => {
            let after = through_of(store::latest(tx, branch, "day", None).await?)?.unwrap_or(0);
            (after, receipts::last_render(tx).await?)
        }
        Kind::Month | Kind::Year => {
            let before = store::latest(tx, branch, "day", Some(asked.period.start)).await?;
            let after = through_of(before)?.unwrap_or(0);
            let last = store::latest(tx, branch, "day", Some(asked.period.end)).await?;
            (after, through_of(last)?.unwrap_or(after))
        }
    })
}

/// The grand totals a stored closing states.
fn grand_of(row: &ClosingRow) -> Result<GrandTotals, ApiError> {
    serde_json::from_str::<ClosingReport>(&row.signed_message)
        .map(|r| r.grand_totals)
        .map_err(|e| ApiError::Internal(anyhow::anyhow!("closing {} cannot be read: {e}", row.id)))
}

/// Filters and paging.
#[derive(Debug, Deserialize, IntoParams)]
pub struct ClosingQuery {
    /// `day`, `month` or `year`.
    #[param(pattern = "^(day|month|year)$")]
    pub kind: Option<String>,
    pub branch_id: Option<Uuid>,
    /// 1 to 200 (default 50).
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<i64>,
    /// The `next_cursor` of the previous page.
    #[param(pattern = "^[0-9]{1,18}$")]
    pub cursor: Option<String>,
}

/// What checking every closing found.
#[derive(Debug, Serialize, ToSchema)]
pub struct ClosingsVerified {
    /// Nothing wrong.
    pub ok: bool,
    /// How many closings were checked.
    pub checked: usize,
    /// Each problem, naming the closing by its number, kind and date.
    pub problems: Vec<String>,
}

/// Checks every closing as `plugpos closing verify` does: its hash and signature, its place in
/// the chain, what its report says about itself, its figures against the documents now, and its
/// grand totals against the day closing before it.
#[utoipa::path(get, path = "/api/v1/closings/verify", tag = "closings", security(("bearer" = [])),
    responses(
        (status = 200, description = "What the check found (`ok` false names each problem)", body = ClosingsVerified),
        (status = 403, description = "Missing permission (`rbac.forbidden`)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn verify_all(
    State(state): State<AppState>,
    _caller: AuthContext,
) -> Result<Json<ClosingsVerified>, ApiError> {
    let found = super::verify::verify(state.pool(), &state.data_dir().keys())
        .await
        .map_err(ApiError::Internal)?;
    Ok(Json(ClosingsVerified {
        ok: found.ok,
        checked: found.checked,
        problems: found.problems,
    }))
}

/// The closings, newest first.
#[utoipa::path(get, path = "/api/v1/closings", tag = "closings", security(("bearer" = [])), params(ClosingQuery),
    responses(
        (status = 200, description = "A page of closings", body = Page<Closing>),
        (status = 403, description = "Missing permission (`rbac.forbidden`)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Bad filter, limit or cursor (`validation.failed`)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn list(
    State(state): State<AppState>,
    _caller: AuthContext,
    Query(query): Query<ClosingQuery>,
) -> Result<Json<Page<Closing>>, ApiError> {
    let limit = page_limit(query.limit, 50, 200)?;
    if let Some(kind) = &query.kind
        && Kind::parse(kind).is_none()
    {
        return Err(ApiError::invalid("kind", "must be day, month or year"));
    }
    let before = match &query.cursor {
        Some(c) => Some(
            c.parse::<i64>()
                .ok()
                .filter(|s| *s >= 0)
                .ok_or_else(|| ApiError::invalid("cursor", "is not a cursor from this list"))?,
        ),
        None => None,
    };
    let mut conn = state.pool().acquire().await?;
    let rows = store::list(
        &mut conn,
        query.kind.as_deref(),
        query.branch_id,
        before,
        limit + 1,
    )
    .await?;
    let (rows, next_cursor) = page(rows, limit, |r| r.seq.to_string());
    let items = rows.into_iter().map(present).collect::<Result<_, _>>()?;
    Ok(Json(Page { items, next_cursor }))
}

/// One closing.
#[utoipa::path(get, path = "/api/v1/closings/{id}", tag = "closings", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Closing id")),
    responses(
        (status = 200, description = "The closing", body = Closing),
        (status = 403, description = "Missing permission (`rbac.forbidden`)", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such closing (`closing.not_found`)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn get(
    State(state): State<AppState>,
    _caller: AuthContext,
    Path(id): Path<Uuid>,
) -> Result<Json<Closing>, ApiError> {
    let mut conn = state.pool().acquire().await?;
    let row = store::get(&mut conn, id)
        .await?
        .ok_or_else(|| not_found(id))?;
    Ok(Json(present(row)?))
}

fn not_found(id: Uuid) -> ApiError {
    ApiError::NotFound {
        code: "closing.not_found",
        detail: format!("No closing with id {id}."),
    }
}

/// The report's format.
#[derive(Debug, Deserialize, IntoParams)]
pub struct ReportQuery {
    /// `json` (default) or `pdf`.
    #[param(pattern = "^(json|pdf)$")]
    pub format: Option<String>,
}

/// The Z report of a closing: its signed report as JSON, or printed (PDF: the business, the
/// period, the signature's fingerprint, and the tables).
#[utoipa::path(get, path = "/api/v1/closings/{id}/report", tag = "closings", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Closing id"), ReportQuery),
    responses(
        (status = 200, description = "The Z report (JSON, or a PDF with `format=pdf`)",
            content((ClosingReport = "application/json"), (Vec<u8> = "application/pdf"))),
        (status = 403, description = "Missing permission (`rbac.forbidden`)", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such closing (`closing.not_found`)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Unknown format (`validation.failed`)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn report_of(
    State(state): State<AppState>,
    _caller: AuthContext,
    Path(id): Path<Uuid>,
    Query(query): Query<ReportQuery>,
) -> Result<Response, ApiError> {
    let pdf = match query.format.as_deref() {
        None | Some("json") => false,
        Some("pdf") => true,
        Some(_) => return Err(ApiError::invalid("format", "must be json or pdf")),
    };
    let mut conn = state.pool().acquire().await?;
    let row = store::get(&mut conn, id)
        .await?
        .ok_or_else(|| not_found(id))?;
    let closing = present(row)?;
    if !pdf {
        return Ok(Json(closing.report).into_response());
    }
    let bytes = super::pdf::render(&closing);
    Ok((
        [
            (header::CONTENT_TYPE, "application/pdf".to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!(
                    "attachment; filename=\"z-report-{}-{}.pdf\"",
                    closing.kind, closing.business_date
                ),
            ),
        ],
        Body::from(bytes),
    )
        .into_response())
}
