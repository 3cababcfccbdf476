//! `/api/v1/devices`: create a till's device (with its enrolment code), enrol it, list, show,
//! issue a new code, revoke.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;
use uuid::Uuid;

use super::{CodeRefused, Device, MANAGE, READ};
use crate::core::audit::{Actor, AuditedTx, Change};
use crate::core::auth::context::AuthContext;
use crate::core::auth::sessions;
use crate::core::db::violated_constraint;
use crate::core::http::problem::Problem;
use crate::core::http::{ApiError, ApiJson, Page, PageQuery, keyset_page};
use crate::core::idempotency::CreateKey;
use crate::core::state::AppState;
use crate::shared::ids::new_id;

const MODULE: &str = "core.devices";

/// A till to enrol.
#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewDevice {
    /// 1 to 100 characters.
    #[schema(example = "Front till")]
    pub name: String,
    /// The register the till sells on; a register has at most one device that is not revoked.
    pub register_id: Uuid,
}

/// A device with the code that enrols it.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeviceWithCode {
    pub device: Device,
    /// Type it into the till within 15 minutes; shown once (a retried create, or
    /// `POST /api/v1/devices/{id}/enrolment-code`, gives a new one and the old one stops working).
    /// Absent once the device is enrolled.
    #[schema(example = "7KQ2M-X9D4P")]
    pub enrolment_code: Option<String>,
    pub code_expires_at: Option<DateTime<Utc>>,
}

/// The code a till was given.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Enrolment {
    /// As shown (case, dash and spaces do not matter).
    pub code: String,
}

/// The device's credential: keep it in the till's protected storage; it is never shown again.
#[derive(Debug, Serialize, ToSchema)]
pub struct Enrolled {
    pub device_id: Uuid,
    pub register_id: Uuid,
    /// Send it as `X-Device-Token` with the login and every request after it.
    pub device_token: String,
}

fn refusal(e: sqlx::Error) -> ApiError {
    match violated_constraint(&e) {
        Some("devices_one_per_register") => ApiError::Conflict {
            code: "device.register_taken",
            detail:
                "Another device (pending or enrolled) is bound to this register; revoke it first."
                    .to_owned(),
        },
        Some("devices_register_id_fkey") => ApiError::invalid("register_id", "is not a register"),
        _ => e.into(),
    }
}

async fn with_code(
    tx: &mut AuditedTx,
    id: Uuid,
    now: DateTime<Utc>,
) -> Result<DeviceWithCode, ApiError> {
    let code = super::issue_code(tx, id, now).await?;
    let device = super::get(tx, id)
        .await?
        .ok_or_else(|| ApiError::Internal(anyhow::anyhow!("device {id} vanished")))?;
    let expires = code.as_ref().map(|c| c.1);
    if expires.is_some() {
        tx.record(
            Change::new(MODULE, "device", id, "device.issue_code")
                .after(json!({"code_expires_at": expires})),
        )
        .await?;
    }
    Ok(DeviceWithCode {
        device,
        enrolment_code: code.map(|c| c.0),
        code_expires_at: expires,
    })
}

/// Create a device for a register and get its one-time enrolment code (audited).
#[utoipa::path(post, path = "/api/v1/devices", tag = "devices", security(("bearer" = [])), request_body = NewDevice,
    params(("Idempotency-Key" = Option<String>, Header, description = "Optional: a retry with the same key returns the same device, with a new code while it is pending", pattern = "^[!-~]{1,255}$")),
    responses(
        (status = 201, description = "Created, with its enrolment code", body = DeviceWithCode),
        (status = 403, description = "Missing permission (`rbac.forbidden`)", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The register has a device already (`device.register_taken`)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid fields (`validation.failed`), key reused (`idempotency.key_reused`)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn create(
    State(state): State<AppState>,
    caller: AuthContext,
    headers: HeaderMap,
    ApiJson(new): ApiJson<NewDevice>,
) -> Result<(StatusCode, Json<DeviceWithCode>), ApiError> {
    let name = new.name.trim().to_owned();
    if name.is_empty() || name.chars().count() > 100 || name.chars().any(char::is_control) {
        return Err(ApiError::invalid(
            "name",
            "must be 1 to 100 characters without control characters",
        ));
    }
    let key = CreateKey::read(&headers, caller.user_id, "devices", &json!(new))?;
    let now = state.clock().now();
    let mut tx = AuditedTx::begin(state.pool(), Actor::user(&caller), now).await?;
    if let Some(earlier) = key.earlier(&mut tx).await? {
        let answer = with_code(&mut tx, earlier, now).await?;
        tx.commit().await?;
        return Ok((StatusCode::CREATED, Json(answer)));
    }
    let id = new_id();
    if let Some(earlier) = key.claim(&mut tx, id, caller.user_id, now).await? {
        drop(tx);
        let mut tx = AuditedTx::begin(state.pool(), Actor::user(&caller), now).await?;
        let answer = with_code(&mut tx, earlier, now).await?;
        tx.commit().await?;
        return Ok((StatusCode::CREATED, Json(answer)));
    }
    super::create(&mut tx, id, &name, new.register_id, caller.user_id, now)
        .await
        .map_err(refusal)?;
    tx.record(
        Change::new(MODULE, "device", id, "device.create")
            .after(json!({"name": name, "register_id": new.register_id})),
    )
    .await?;
    let answer = with_code(&mut tx, id, now).await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(answer)))
}

/// A new enrolment code for a pending device (the earlier one stops working; audited).
#[utoipa::path(post, path = "/api/v1/devices/{id}/enrolment-code", tag = "devices", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "The device")),
    responses(
        (status = 200, description = "The device with its new code", body = DeviceWithCode),
        (status = 403, description = "Missing permission (`rbac.forbidden`)", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such device (`device.not_found`)", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Enrolled or revoked already (`device.not_pending`)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn new_code(
    State(state): State<AppState>,
    caller: AuthContext,
    Path(id): Path<Uuid>,
) -> Result<Json<DeviceWithCode>, ApiError> {
    let now = state.clock().now();
    let mut tx = AuditedTx::begin(state.pool(), Actor::user(&caller), now).await?;
    if super::get(&mut tx, id).await?.is_none() {
        return Err(not_found(id));
    }
    let answer = with_code(&mut tx, id, now).await?;
    if answer.enrolment_code.is_none() {
        return Err(ApiError::Conflict {
            code: "device.not_pending",
            detail: format!(
                "Device {id} is {}: only a pending device is enrolled with a code.",
                answer.device.status
            ),
        });
    }
    tx.commit().await?;
    Ok(Json(answer))
}

/// Enrol a till with the code an admin gave it: the answer holds the device's credential, once
/// (audited; no login needed).
#[utoipa::path(post, path = "/api/v1/devices/enrol", tag = "devices", request_body = Enrolment,
    params(("X-App-Version" = Option<String>, Header, description = "The till application's version, kept with the device", pattern = "^[ -~]{1,64}$")),
    responses(
        (status = 201, description = "Enrolled", body = Enrolled),
        (status = 409, description = "The code was used already (`device.code_used`)", body = Problem, content_type = "application/problem+json"),
        (status = 410, description = "The code expired (`device.code_expired`) or its device was revoked (`device.revoked`)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Not a code this server gave, or one replaced by a newer one (`device.code_invalid`)", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Too many requests from this address (`rate_limited`)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn enrol(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiJson(enrolment): ApiJson<Enrolment>,
) -> Result<(StatusCode, Json<Enrolled>), ApiError> {
    let now = state.clock().now();
    let (token, hash) = super::new_token();
    let version = super::app_version(&headers);
    let mut tx = AuditedTx::begin(state.pool(), Actor::system("device enrolment"), now).await?;
    let device =
        match super::enrol(&mut tx, &enrolment.code, &hash, version.as_deref(), now).await? {
            Ok(device) => device,
            Err(refused) => return Err(code_refused(refused)),
        };
    let shown = super::get(&mut tx, device)
        .await?
        .ok_or_else(|| ApiError::Internal(anyhow::anyhow!("device {device} vanished")))?;
    // The till itself acts: the record names it as the workstation.
    let actor = Actor {
        workstation_id: Some(device.to_string()),
        ..Actor::system("device enrolment")
    };
    let change = Change::new(MODULE, "device", device, "device.enrol").after(
        json!({"name": shown.name, "register_id": shown.register_id, "app_version": version}),
    );
    tx.record_for(vec![(actor, change)]).await?;
    tx.commit().await?;
    Ok((
        StatusCode::CREATED,
        Json(Enrolled {
            device_id: device,
            register_id: shown.register_id,
            device_token: token,
        }),
    ))
}

fn code_refused(refused: CodeRefused) -> ApiError {
    match refused {
        CodeRefused::Unknown => ApiError::Unprocessable {
            code: "device.code_invalid",
            detail: "This is not an enrolment code this server gave (or a newer one replaced it); ask an admin for a new code.".to_owned(),
        },
        CodeRefused::Expired => ApiError::Gone {
            code: "device.code_expired",
            detail: "This enrolment code expired (codes work for 15 minutes); ask an admin for a new one.".to_owned(),
        },
        CodeRefused::Used => ApiError::Conflict {
            code: "device.code_used",
            detail: "This enrolment code was used already; a code enrols one till once.".to_owned(),
        },
        CodeRefused::Revoked => ApiError::Gone {
            code: "device.revoked",
            detail: "The device this code was for has been revoked.".to_owned(),
        },
    }
}

fn not_found(id: Uuid) -> ApiError {
    ApiError::NotFound {
        code: "device.not_found",
        detail: format!("No device {id}."),
    }
}

/// The devices, oldest first.
#[utoipa::path(get, path = "/api/v1/devices", tag = "devices", security(("bearer" = [])), params(PageQuery),
    responses(
        (status = 200, description = "A page of devices", body = Page<Device>),
        (status = 403, description = "Missing permission (`rbac.forbidden`)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Bad limit or cursor (`validation.failed`)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn list(
    State(state): State<AppState>,
    _caller: AuthContext,
    Query(query): Query<PageQuery>,
) -> Result<Json<Page<Device>>, ApiError> {
    let mut conn = state.pool().acquire().await?;
    let all = super::list(&mut conn).await?;
    Ok(Json(keyset_page(all, |d| d.id.to_string(), &query)?))
}

/// One device.
#[utoipa::path(get, path = "/api/v1/devices/{id}", tag = "devices", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "The device")),
    responses(
        (status = 200, description = "The device", body = Device),
        (status = 403, description = "Missing permission (`rbac.forbidden`)", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such device (`device.not_found`)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn get(
    State(state): State<AppState>,
    _caller: AuthContext,
    Path(id): Path<Uuid>,
) -> Result<Json<Device>, ApiError> {
    let mut conn = state.pool().acquire().await?;
    super::get(&mut conn, id)
        .await?
        .map(Json)
        .ok_or_else(|| not_found(id))
}

/// Revoke a device: its credential stops working and its sessions end at once (audited).
#[utoipa::path(post, path = "/api/v1/devices/{id}/revoke", tag = "devices", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "The device")),
    responses(
        (status = 200, description = "Revoked", body = Device),
        (status = 403, description = "Missing permission (`rbac.forbidden`)", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such device (`device.not_found`)", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Revoked already (`device.revoked`)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn revoke(
    State(state): State<AppState>,
    caller: AuthContext,
    Path(id): Path<Uuid>,
) -> Result<Json<Device>, ApiError> {
    let now = state.clock().now();
    let mut tx = AuditedTx::begin(state.pool(), Actor::user(&caller), now).await?;
    if super::get(&mut tx, id).await?.is_none() {
        return Err(not_found(id));
    }
    if !super::revoke(&mut tx, id, caller.user_id, now).await? {
        return Err(ApiError::Conflict {
            code: "device.revoked",
            detail: format!("Device {id} was revoked already."),
        });
    }
    let ended = sessions::end_on_device(&mut tx, id, now).await?;
    tx.record(
        Change::new(MODULE, "device", id, "device.revoke").after(json!({"sessions_ended": ended})),
    )
    .await?;
    let device = super::get(&mut tx, id)
        .await?
        .ok_or_else(|| not_found(id))?;
    tx.commit().await?;
    Ok(Json(device))
}

/// The devices routes, each with its access rule.
pub fn routes() -> utoipa_axum::router::OpenApiRouter<AppState> {
    use crate::core::auth::access::Access::{Permission, Public};
    use crate::core::auth::access::declare;
    use utoipa_axum::routes;
    utoipa_axum::router::OpenApiRouter::new()
        .routes(declare(Permission(MANAGE), routes!(create)))
        .routes(declare(Permission(READ), routes!(list)))
        .routes(declare(Public, routes!(enrol)))
        .routes(declare(Permission(READ), routes!(get)))
        .routes(declare(Permission(MANAGE), routes!(new_code)))
        .routes(declare(Permission(MANAGE), routes!(revoke)))
}
