//! `/api/v1/api-keys`: create (the key shown once), list, show, revoke.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;
use uuid::Uuid;

use super::{ApiKey, MANAGE, READ};
use crate::core::audit::{Actor, AuditedTx, Change};
use crate::core::auth::context::AuthContext;
use crate::core::auth::permissions;
use crate::core::http::problem::Problem;
use crate::core::http::{ApiError, ApiJson, Page, PageQuery, keyset_page};
use crate::core::idempotency::CreateKey;
use crate::core::state::AppState;
use crate::shared::ids::new_id;

const MODULE: &str = "core.integrations";

/// A key to make.
#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewApiKey {
    /// What uses it (1 to 100 characters), e.g. "Accounting export".
    pub name: String,
    /// What it may do: 1 to 100 permissions, each one you hold yourself.
    pub permissions: Vec<String>,
    /// When it stops working (in the future); absent: until revoked.
    pub expires_at: Option<DateTime<Utc>>,
}

/// The new key: `key` is shown this once.
#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedApiKey {
    pub api_key: ApiKey,
    /// Send it as `Authorization: Bearer <key>`. Only its hash is kept: it cannot be shown again.
    pub key: Option<String>,
}

fn not_found(id: Uuid) -> ApiError {
    ApiError::NotFound {
        code: "api_key.not_found",
        detail: format!("No API key {id}."),
    }
}

/// The new key's name and its permissions (sorted, once each), or why not.
fn checked(
    new: &NewApiKey,
    caller: &AuthContext,
    now: DateTime<Utc>,
) -> Result<(String, Vec<String>), ApiError> {
    use crate::core::http::problem::FieldError;
    let name = new.name.trim().to_owned();
    let mut errors = Vec::new();
    if name.is_empty() || name.chars().count() > 100 || name.chars().any(char::is_control) {
        errors.push(FieldError::new(
            "name",
            "must be 1 to 100 characters without control characters",
        ));
    }
    if new.permissions.is_empty() || new.permissions.len() > 100 {
        errors.push(FieldError::new(
            "permissions",
            "must name 1 to 100 permissions",
        ));
    }
    if let Some(unknown) = new.permissions.iter().find(|p| !permissions::exists(p)) {
        errors.push(FieldError::new(
            "permissions",
            format!("`{unknown}` is not a permission"),
        ));
    }
    if new.expires_at.is_some_and(|at| at <= now) {
        errors.push(FieldError::new("expires_at", "must be in the future"));
    }
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    // A key never holds more than its maker (nor does a key make keys beyond itself).
    if let Some(beyond) = new.permissions.iter().find(|p| !caller.has(p)) {
        return Err(ApiError::Denied {
            code: "rbac.escalation",
            detail: format!(
                "You do not hold `{beyond}`: a key can only have permissions you hold."
            ),
        });
    }
    let mut granted = new.permissions.clone();
    granted.sort();
    granted.dedup();
    Ok((name, granted))
}

/// Make an API key with some of your permissions; the key is in the answer, once (audited).
#[utoipa::path(post, path = "/api/v1/api-keys", tag = "integrations", security(("bearer" = [])), request_body = NewApiKey,
    params(("Idempotency-Key" = Option<String>, Header, description = "Optional: a retry with the same key answers the same API key, without the key (it was shown once)", pattern = "^[!-~]{1,255}$")),
    responses(
        (status = 201, description = "Made; `key` is shown this once", body = CreatedApiKey),
        (status = 403, description = "Missing permission (`rbac.forbidden`), or a permission you do not hold yourself (`rbac.escalation`)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid fields (`validation.failed`), key reused (`idempotency.key_reused`)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn create(
    State(state): State<AppState>,
    caller: AuthContext,
    headers: HeaderMap,
    ApiJson(new): ApiJson<NewApiKey>,
) -> Result<(StatusCode, Json<CreatedApiKey>), ApiError> {
    caller.refuse_api_key()?;
    let now = state.clock().now();
    let (name, granted) = checked(&new, &caller, now)?;
    let idempotency = CreateKey::read(&headers, caller.user_id, "api_keys", &json!(new))?;
    let mut tx = AuditedTx::begin(state.pool(), Actor::user(&caller), now).await?;
    if let Some(earlier) = idempotency.earlier(&mut tx).await? {
        let api_key = super::get(&mut tx, earlier)
            .await?
            .ok_or_else(|| not_found(earlier))?;
        return Ok((
            StatusCode::CREATED,
            Json(CreatedApiKey { api_key, key: None }),
        ));
    }
    let id = new_id();
    if let Some(earlier) = idempotency.claim(&mut tx, id, caller.user_id, now).await? {
        drop(tx);
        let mut conn = state.pool().acquire().await?;
        let api_key = super::get(&mut conn, earlier)
            .await?
            .ok_or_else(|| not_found(earlier))?;
        return Ok((
            StatusCode::CREATED,
            Json(CreatedApiKey { api_key, key: None }),
        ));
    }
    let (key, _) = super::new_key();
    super::create(
        &mut tx,
        id,
        &name,
        &key,
        &granted,
        caller.user_id,
        now,
        new.expires_at,
    )
    .await?;
    tx.record(
        Change::new(MODULE, "api_key", id, "api_key.create").after(json!({
            "name": name, "prefix": super::prefix(&key), "permissions": granted, "expires_at": new.expires_at,
        })),
    )
    .await?;
    let api_key = super::get(&mut tx, id)
        .await?
        .ok_or_else(|| not_found(id))?;
    tx.commit().await?;
    Ok((
        StatusCode::CREATED,
        Json(CreatedApiKey {
            api_key,
            key: Some(key),
        }),
    ))
}

/// The API keys (never the keys), oldest first.
#[utoipa::path(get, path = "/api/v1/api-keys", tag = "integrations", security(("bearer" = [])), params(PageQuery),
    responses(
        (status = 200, description = "A page of keys", body = Page<ApiKey>),
        (status = 403, description = "Missing permission (`rbac.forbidden`)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Bad limit or cursor (`validation.failed`)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn list(
    State(state): State<AppState>,
    _caller: AuthContext,
    Query(query): Query<PageQuery>,
) -> Result<Json<Page<ApiKey>>, ApiError> {
    let mut conn = state.pool().acquire().await?;
    let all = super::list(&mut conn).await?;
    Ok(Json(keyset_page(all, |k| k.id.to_string(), &query)?))
}

/// One API key (never the key).
#[utoipa::path(get, path = "/api/v1/api-keys/{id}", tag = "integrations", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "The key's id")),
    responses(
        (status = 200, description = "The key", body = ApiKey),
        (status = 403, description = "Missing permission (`rbac.forbidden`)", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such key (`api_key.not_found`)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn get(
    State(state): State<AppState>,
    _caller: AuthContext,
    Path(id): Path<Uuid>,
) -> Result<Json<ApiKey>, ApiError> {
    let mut conn = state.pool().acquire().await?;
    super::get(&mut conn, id)
        .await?
        .map(Json)
        .ok_or_else(|| not_found(id))
}

/// Revoke an API key: it stops working at once (audited).
#[utoipa::path(post, path = "/api/v1/api-keys/{id}/revoke", tag = "integrations", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "The key's id")),
    responses(
        (status = 200, description = "Revoked", body = ApiKey),
        (status = 403, description = "Missing permission (`rbac.forbidden`)", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such key (`api_key.not_found`)", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Revoked already (`api_key.revoked`)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn revoke(
    State(state): State<AppState>,
    caller: AuthContext,
    Path(id): Path<Uuid>,
) -> Result<Json<ApiKey>, ApiError> {
    caller.refuse_api_key()?;
    let now = state.clock().now();
    let mut tx = AuditedTx::begin(state.pool(), Actor::user(&caller), now).await?;
    let before = super::get(&mut tx, id)
        .await?
        .ok_or_else(|| not_found(id))?;
    if !super::revoke(&mut tx, id, caller.user_id, now).await? {
        return Err(ApiError::Conflict {
            code: "api_key.revoked",
            detail: format!("API key {} was revoked already.", before.prefix),
        });
    }
    tx.record(
        Change::new(MODULE, "api_key", id, "api_key.revoke")
            .after(json!({"prefix": before.prefix})),
    )
    .await?;
    let after = super::get(&mut tx, id)
        .await?
        .ok_or_else(|| not_found(id))?;
    tx.commit().await?;
    Ok(Json(after))
}

/// The integrations routes, each with its access rule.
pub fn routes() -> utoipa_axum::router::OpenApiRouter<AppState> {
    use crate::core::auth::access::Access::Permission;
    use crate::core::auth::access::declare;
    use utoipa_axum::routes;
    utoipa_axum::router::OpenApiRouter::new()
        .routes(declare(Permission(MANAGE), routes!(create)))
        .routes(declare(Permission(READ), routes!(list)))
        .routes(declare(Permission(READ), routes!(get)))
        .routes(declare(Permission(MANAGE), routes!(revoke)))
}
