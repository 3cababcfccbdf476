//! A customer's personal data: everything held about them (`GET .../export`, GDPR Art. 15 and
//! 20), erasing it (`POST .../erase`, Art. 17) and the customers the retention job proposes to
//! erase.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::customers::documents;
use super::no_such_customer;
use crate::core::audit::query::{AuditEntry, about};
use crate::core::audit::{Actor, AuditedTx, Change, personal};
use crate::core::auth::context::AuthContext;
use crate::core::http::problem::Problem;
use crate::core::http::{ApiError, ApiJson, Page, offset_cursor, page, page_limit};
use crate::core::idempotency;
use crate::core::settings::Business;
use crate::core::state::AppState;
use crate::plugs::management::api::customers::CustomerDocument;
use crate::plugs::management::customers::store::{self, Customer, RetentionProposal};
use crate::plugs::management::customers::{ERASE, ERASE_NEEDS_APPROVAL, MODULE};
use crate::plugs::operations::api::approvals::{self, Wanted};

/// What an erased customer is called from then on (their documents keep their id).
pub const ERASED_NAME: &str = "erased customer";

/// Why a customer is erased.
pub const ERASE_REASONS: &[&str] = &[
    "subject_request",
    "retention_expired",
    "consent_withdrawn",
    "other",
];

/// Everything held about a customer.
#[derive(Debug, Serialize, ToSchema)]
pub struct CustomerExport {
    /// `plugpos-customer-export-v1`.
    pub format: &'static str,
    pub exported_at: DateTime<Utc>,
    pub customer: Customer,
    /// Each marketing consent answer recorded (from the audit log), oldest first.
    #[schema(value_type = Vec<Object>)]
    pub consent_history: Vec<Value>,
    /// The sales, returns and voids that name them, newest first.
    pub documents: Vec<CustomerDocument>,
    /// The audit records about them (their own, and those of the documents that name them, in
    /// chain order), personal values opened (`"[erased]"` once erased).
    pub audit_records: Vec<AuditEntry>,
}

/// Export everything held about a customer (GDPR Art. 15 and 20) as one JSON document: profile,
/// consents, the documents that name them and the audit records about them. The export is audited.
#[utoipa::path(get, path = "/api/v1/customers/{id}/export", tag = "customers", security(("bearer" = [])), params(("id" = Uuid, Path)),
    responses(
        (status = 200, description = "The export, as an attachment", body = CustomerExport),
        (status = 403, description = "Missing permission (`rbac.forbidden`)", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such customer (`customer.not_found`)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn export(
    State(state): State<AppState>,
    caller: AuthContext,
    Path(id): Path<Uuid>,
) -> Result<Response, ApiError> {
    let customer = {
        let mut conn = state.pool().acquire().await?;
        store::customer(&mut conn, id, true, false)
            .await?
            .ok_or_else(no_such_customer)?
    };
    let mut all = Vec::new();
    let mut position = None;
    loop {
        let batch = documents(&state, id, position, 500).await?;
        let done = batch.len() < 500;
        position = batch.last().map(|d| (d.at, d.id));
        all.extend(batch);
        if done {
            break;
        }
    }
    let mut records = about(state.pool(), MODULE, "customer", &id.to_string()).await?;
    // And the records of the sales and returns that name them.
    for doc in &all {
        let (module, entity) = match doc.kind.as_str() {
            "sale" => ("operations.sales", "sale"),
            _ => ("operations.returns", "return"),
        };
        records.extend(about(state.pool(), module, entity, &doc.id.to_string()).await?);
    }
    records.sort_by_key(|r| r.seq);
    let mut consent_history: Vec<Value> = Vec::new();
    for record in &records {
        let Some(after) = record.after.as_ref() else {
            continue;
        };
        let answer = json!({"marketing_consent": after["marketing_consent"], "at": after["consent_at"],
                            "source": after["consent_source"]});
        if !after["consent_at"].is_null() && consent_history.last() != Some(&answer) {
            consent_history.push(answer);
        }
    }
    let now = state.clock().now();
    let mut tx = AuditedTx::begin(state.pool(), Actor::user(&caller), now).await?;
    tx.record(
        Change::new(MODULE, "customer", id, "customer.export")
            .after(json!({"documents": all.len(), "audit_records": records.len()})),
    )
    .await?;
    tx.commit().await?;
    let export = CustomerExport {
        format: "plugpos-customer-export-v1",
        exported_at: now,
        customer,
        consent_history,
        documents: all,
        audit_records: records,
    };
    Ok((
        [(
            header::CONTENT_DISPOSITION,
            format!("attachment; filename=\"customer-{id}.json\""),
        )],
        Json(export),
    )
        .into_response())
}

/// An erasure: why, and a second person's approval.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Erasure {
    /// `subject_request`, `retention_expired`, `consent_withdrawn` or `other`.
    #[schema(example = "subject_request")]
    pub reason_code: String,
    /// An approval (`POST /api/v1/approvals`, action `management.customers.erase`,
    /// `scope.customer_id`) from another holder of the permission; required unless the setting
    /// `customers.erase_needs_approval` is off.
    pub approval_ref: Option<String>,
}

/// Erase a customer's personal data (GDPR Art. 17): the name becomes "erased customer", the
/// other personal fields are emptied, the customer's audit key is destroyed (the audit records
/// about them keep verifying, their personal values can no longer be read), and the customer is
/// deleted. The sales and returns that name them stay valid and keep their id. Irreversible.
#[utoipa::path(post, path = "/api/v1/customers/{id}/erase", tag = "customers", security(("bearer" = [])), params(("id" = Uuid, Path)), request_body = Erasure,
    responses(
        (status = 200, description = "Erased", body = Customer),
        (status = 403, description = "Missing permission (`rbac.forbidden`), an approval needed (`approval.required`) or not fitting (`approval.invalid`)", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such customer (`customer.not_found`)", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Erased already (`customer.erased`)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A bad reason code (`validation.failed`)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn erase(
    State(state): State<AppState>,
    caller: AuthContext,
    Path(id): Path<Uuid>,
    ApiJson(body): ApiJson<Erasure>,
) -> Result<Json<Customer>, ApiError> {
    if !ERASE_REASONS.contains(&body.reason_code.as_str()) {
        return Err(ApiError::invalid(
            "reason_code",
            format!("must be one of {}", ERASE_REASONS.join(", ")),
        ));
    }
    let business = Business::cached(&state)
        .await?
        .ok_or(ApiError::SetupRequired)?;
    let now = state.clock().now();
    let mut tx = AuditedTx::begin(state.pool(), Actor::user(&caller), now).await?;
    let before = store::customer(&mut tx, id, true, true)
        .await?
        .ok_or_else(no_such_customer)?;
    if before.erased_at.is_some() {
        return Err(ApiError::Conflict {
            code: "customer.erased",
            detail: "This customer's personal data is erased already.".to_owned(),
        });
    }
    let request = format!("customers.erase:{id}");
    let wanted = Wanted {
        action: ERASE,
        requester: caller.user_id,
        register_id: None,
        subject_id: Some(id),
        sale_id: None,
        amount: None,
        without_receipt: false,
        request: &request,
    };
    let used = match body.approval_ref.as_deref() {
        Some(approval_ref) => Some(approvals::consume(&mut tx, approval_ref, &wanted, now).await?),
        None if business.flag(ERASE_NEEDS_APPROVAL, true) => {
            return Err(approvals::required(ERASE));
        }
        None => None,
    };
    store::erase(&mut tx, id, ERASED_NAME, now).await?;
    let key_destroyed = personal::forget(&mut tx, id).await?;
    idempotency::forget_resource(&mut tx, "customers", id).await?;
    tx.record(
        Change::new(MODULE, "customer", id, "customer.erase")
            .sensitive()
            .reason(
                Some(body.reason_code.clone()),
                used.as_ref().map(|u| u.approval_ref.clone()),
            )
            .after(
                json!({"erased_at": now, "audit_key_destroyed": key_destroyed,
                          "approved_by": used.as_ref().map(|u| u.approver_username.clone())}),
            ),
    )
    .await?;
    tx.commit().await?;
    let mut conn = state.pool().acquire().await?;
    store::customer(&mut conn, id, true, false)
        .await?
        .map(Json)
        .ok_or_else(no_such_customer)
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct ProposalQuery {
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<i64>,
    #[param(pattern = "^[0-9]{1,7}$")]
    pub cursor: Option<String>,
}

/// The customers the retention job proposes to erase (no sale, return or change for longer than
/// `customers.retention_days`), oldest activity first. Nothing is erased without a person
/// erasing each one.
#[utoipa::path(get, path = "/api/v1/customers/retention", tag = "customers", security(("bearer" = [])), params(ProposalQuery),
    responses(
        (status = 200, description = "A page of proposals", body = Page<RetentionProposal>),
        (status = 403, description = "Missing permission (`rbac.forbidden`)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Bad limit or cursor (`validation.failed`)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn retention(
    State(state): State<AppState>,
    _caller: AuthContext,
    Query(query): Query<ProposalQuery>,
) -> Result<Json<Page<RetentionProposal>>, ApiError> {
    let limit = page_limit(query.limit, 100, 500)?;
    let offset = offset_cursor(query.cursor.as_deref())?;
    let mut conn = state.pool().acquire().await?;
    let rows = store::proposals(&mut conn, offset, limit + 1).await?;
    let (items, next_cursor) = page(rows, limit, |_| (offset + limit).to_string());
    Ok(Json(Page { items, next_cursor }))
}
