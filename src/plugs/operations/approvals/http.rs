//! `POST /api/v1/approvals`: a manager's credentials typed on the cashier's till.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Duration, Utc};
use rust_decimal::Decimal;
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::ToSchema;
use uuid::Uuid;

use super::store::{self, NewApproval};
use super::{
    ACTIONS, BACK_OFFICE, DEFAULT_EXPIRE_SECONDS, EXPIRE_SECONDS, MODULE, WITHOUT_RECEIPT,
};
use crate::core::audit::{Actor, AuditedTx, Change};
use crate::core::auth::approver::{self, Credential};
use crate::core::auth::context::AuthContext;
use crate::core::http::json::from_value;
use crate::core::http::problem::{FieldError, Problem};
use crate::core::http::{ApiError, ApiJson};
use crate::core::idempotency;
use crate::core::settings::Business;
use crate::core::state::AppState;
use crate::plugs::administration::api::places;
use crate::shared::ids::new_id;
use crate::shared::money::Money;

/// Who approves, with their password or their PIN (exactly one).
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ApproverCredentials {
    pub username: String,
    #[schema(value_type = Option<String>, format = Password)]
    pub password: Option<SecretString>,
    #[schema(value_type = Option<String>, format = Password)]
    pub pin: Option<SecretString>,
}

/// What is approved: on which register, for which sale, up to which amount; or, for a
/// back-office action (erasing a customer), which customer.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ApprovalScope {
    /// Required for the till's actions.
    pub register_id: Option<Uuid>,
    /// Required for `management.customers.erase`: the customer to erase.
    pub customer_id: Option<Uuid>,
    /// The sale voided or returned (required for a void; a return approved without one is a
    /// return without a receipt), or the client-made id of a sale being made.
    pub sale_id: Option<Uuid>,
    /// The largest amount covered (refund total, discount, price reduction); none: any.
    #[schema(example = "25.00")]
    pub amount: Option<String>,
}

/// An approval asked for on a till.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewApprovalRequest {
    /// One of `operations.returns.create`, `operations.sales.void`,
    /// `operations.sales.price_override`, `operations.sales.discount`, `operations.cash.no_sale`,
    /// `management.customers.erase` (a back-office action: scoped by `customer_id`).
    #[schema(example = "operations.sales.void")]
    pub action: String,
    pub approver: ApproverCredentials,
    pub scope: ApprovalScope,
}

/// A single-use approval: send `approval_ref` with the action before `expires_at`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ApprovalGiven {
    pub approval_ref: String,
    pub action: String,
    /// The approver's username.
    pub approved_by: String,
    pub expires_at: DateTime<Utc>,
}

/// 403 `approval.not_permitted`.
fn not_permitted(detail: &str) -> ApiError {
    ApiError::Denied {
        code: "approval.not_permitted",
        detail: detail.to_owned(),
    }
}

/// A manager approves an action on the cashier's till, with their password or PIN, without
/// logging the cashier out. Wrong credentials count toward the approver's login throttle.
/// Accepts an `Idempotency-Key` (a retry answers the same approval).
#[utoipa::path(post, path = "/api/v1/approvals", tag = "approvals", security(("bearer" = [])), request_body = NewApprovalRequest,
    params(("Idempotency-Key" = Option<String>, Header, description = "Optional: a retry with the same key answers the same approval", pattern = "^[!-~]{1,255}$")),
    responses(
        (status = 201, description = "Approved", body = ApprovalGiven),
        (status = 403, description = "Wrong approver credentials (`approval.credentials`), a locked PIN (`approval.pin_locked`), or an approver who may not approve this (`approval.not_permitted`)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid fields (`validation.failed`), key used with another body (`idempotency.key_reused`)", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "The approver's logins are throttled or locked (`auth.throttled`, `auth.locked`)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn approve(
    State(state): State<AppState>,
    caller: AuthContext,
    headers: HeaderMap,
    ApiJson(body): ApiJson<Value>,
) -> Result<Response, ApiError> {
    let key = idempotency::optional_key(&headers)?;
    let hash = idempotency::request_hash(&body);
    let request: NewApprovalRequest = from_value(body)?;
    let key = key.map(|k| idempotency::scoped(&caller.user_id.to_string(), &k));
    if let Some(key) = &key {
        let mut conn = state.pool().acquire().await?;
        if let Some(stored) = idempotency::find(&mut conn, "approvals", key).await? {
            let id = stored.replay_for(&hash)?;
            return answer(&mut conn, id, true).await;
        }
    }
    let business = Business::cached(&state)
        .await?
        .ok_or(ApiError::SetupRequired)?;
    let (amount, credential) = check_fields(&state, &request, &business).await?;
    let approver = approver::check(
        &state,
        &request.approver.username,
        credential,
        &caller.origin,
    )
    .await?;
    let without_receipt = may_approve(&approver, &caller, &request)?;
    let now = state.clock().now();
    let seconds = business.integer(EXPIRE_SECONDS, DEFAULT_EXPIRE_SECONDS);
    let expires_at = now + Duration::seconds(seconds);
    let id = new_id();
    let mut tx = AuditedTx::begin(state.pool(), Actor::user(&caller), now).await?;
    if let Some(key) = &key
        && let Some(stored) =
            idempotency::claim(&mut tx, "approvals", key, &hash, id, caller.user_id, now).await?
    {
        tx.rollback().await?;
        let id = stored.replay_for(&hash)?;
        let mut conn = state.pool().acquire().await?;
        return answer(&mut conn, id, true).await;
    }
    store::insert(
        &mut tx,
        &NewApproval {
            id,
            action: &request.action,
            requester_id: caller.user_id,
            approver_id: approver.user_id,
            approver_username: &approver.username,
            register_id: request.scope.register_id,
            subject_id: request.scope.customer_id,
            sale_id: request.scope.sale_id,
            amount,
            without_receipt,
            created_at: now,
            expires_at,
        },
    )
    .await?;
    tx.record(
        Change::new(MODULE, "approval", id, "approval.grant").after(json!({
            "action": request.action, "requester_id": caller.user_id, "requester": caller.username,
            "approver_id": approver.user_id, "approver": approver.username,
            "register_id": request.scope.register_id, "customer_id": request.scope.customer_id,
            "sale_id": request.scope.sale_id,
            "amount": amount.map(|a| a.to_string()), "without_receipt": without_receipt,
            "expires_at": expires_at,
        })),
    )
    .await?;
    tx.commit().await?;
    Ok(given(
        ApprovalGiven {
            approval_ref: id.to_string(),
            action: request.action,
            approved_by: approver.username,
            expires_at,
        },
        false,
    ))
}

/// Refuses an approver who is the caller or lacks the action's permission (or, for a return
/// without a receipt, that one too); answers whether it approves a return without a receipt.
fn may_approve(
    approver: &approver::Approver,
    caller: &AuthContext,
    request: &NewApprovalRequest,
) -> Result<bool, ApiError> {
    if approver.user_id == caller.user_id {
        return Err(not_permitted(
            "An approval is a second person's: nobody approves their own request.",
        ));
    }
    let holds = |p: &str| approver.permissions.iter().any(|h| h == p);
    if !holds(&request.action) {
        return Err(not_permitted(&format!(
            "{} may not approve this: it needs the permission {}.",
            approver.username, request.action
        )));
    }
    let without_receipt =
        request.action == "operations.returns.create" && request.scope.sale_id.is_none();
    if without_receipt && !holds(WITHOUT_RECEIPT) {
        return Err(not_permitted(&format!(
            "{} may not approve a return without a receipt: it needs the permission {WITHOUT_RECEIPT}.",
            approver.username
        )));
    }
    Ok(without_receipt)
}

/// The request's fields: its action, amount and register, and exactly one credential.
async fn check_fields(
    state: &AppState,
    request: &NewApprovalRequest,
    business: &Business,
) -> Result<(Option<Decimal>, Credential), ApiError> {
    let mut errors = Vec::new();
    if !ACTIONS.contains(&request.action.as_str()) {
        errors.push(FieldError::new(
            "action",
            format!("must be one of {}", ACTIONS.join(", ")),
        ));
    }
    let amount = match &request.scope.amount {
        Some(text) => FieldError::gather(
            &mut errors,
            "scope.amount",
            Money::parse_in(text, business.currency_scale),
        )
        .map(|m| Some(m.value())),
        None => Some(None),
    };
    if request.action == "operations.sales.void" && request.scope.sale_id.is_none() {
        errors.push(FieldError::new(
            "scope.sale_id",
            "is required to void a sale",
        ));
    }
    let credential = match (&request.approver.password, &request.approver.pin) {
        (Some(password), None) => Some(Credential::Password(password.clone())),
        (None, Some(pin)) => Some(Credential::Pin(pin.clone())),
        _ => {
            errors.push(FieldError::new(
                "approver",
                "must carry either a password or a PIN",
            ));
            None
        }
    };
    let mut conn = state.pool().acquire().await?;
    if BACK_OFFICE.contains(&request.action.as_str()) {
        if request.scope.customer_id.is_none() {
            errors.push(FieldError::new(
                "scope.customer_id",
                "is required: the customer to erase",
            ));
        }
        if request.scope.register_id.is_some() {
            errors.push(FieldError::new(
                "scope.register_id",
                "is not for a back-office action (it is approved for the customer)",
            ));
        }
    } else {
        if request.scope.customer_id.is_some() {
            errors.push(FieldError::new(
                "scope.customer_id",
                "is only for management.customers.erase",
            ));
        }
        match request.scope.register_id {
            None => errors.push(FieldError::new(
                "scope.register_id",
                "is required for a till's action",
            )),
            Some(id) if !places::register_exists(&mut conn, id).await? => {
                errors.push(FieldError::new("scope.register_id", "is not a register"));
            }
            Some(_) => {}
        }
    }
    match (amount, credential, errors.is_empty()) {
        (Some(amount), Some(credential), true) => Ok((amount, credential)),
        _ => Err(ApiError::Validation(errors)),
    }
}

fn given(approval: ApprovalGiven, replayed: bool) -> Response {
    let mut response = (StatusCode::CREATED, Json(approval)).into_response();
    if replayed {
        idempotency::mark_replayed(&mut response);
    }
    response
}

async fn answer(
    conn: &mut sqlx::PgConnection,
    id: Uuid,
    replayed: bool,
) -> Result<Response, ApiError> {
    let (action, expires_at, approved_by) = store::expiry(conn, id)
        .await?
        .ok_or_else(|| ApiError::Internal(anyhow::anyhow!("approval {id} vanished")))?;
    Ok(given(
        ApprovalGiven {
            approval_ref: id.to_string(),
            action,
            approved_by,
            expires_at,
        },
        replayed,
    ))
}
