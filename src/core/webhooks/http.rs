//! `/api/v1/webhooks`: make (the signing secret shown once), list, show, delete; each webhook's
//! delivery log and the replay of a delivery.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use base64::Engine;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::{DELIVER, Delivery, EVENTS, Webhook};
use crate::core::audit::{Actor, AuditedTx, Change};
use crate::core::auth::context::AuthContext;
use crate::core::http::problem::{FieldError, Problem};
use crate::core::http::{ApiError, ApiJson, Page, PageQuery, keyset_page, page, page_limit};
use crate::core::idempotency::CreateKey;
use crate::core::integrations::{MANAGE, READ};
use crate::core::state::AppState;
use crate::shared::ids::new_id;

const MODULE: &str = "core.webhooks";

/// A webhook to make.
#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewWebhook {
    /// `http://` or `https://`; its host must be allowed by `integrations.webhook_targets`.
    #[schema(example = "https://erp.shop.lan/plugpos-events")]
    pub url: String,
    /// Some of `sale.completed`, `return.created`, `closing.created`, `stock.low`, `backup.failed`.
    pub events: Vec<String>,
    /// The signing secret (16 to 200 visible characters); absent: the server makes one.
    #[schema(value_type = Option<String>, format = Password)]
    pub secret: Option<String>,
}

/// The new webhook; `secret` is shown once, when the server made it.
#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedWebhook {
    pub webhook: Webhook,
    pub secret: Option<String>,
}

fn not_found(id: Uuid) -> ApiError {
    ApiError::NotFound {
        code: "webhook.not_found",
        detail: format!("No webhook {id}."),
    }
}

async fn checked(
    state: &AppState,
    new: &NewWebhook,
) -> Result<(Vec<String>, String, bool), ApiError> {
    let mut errors = Vec::new();
    let mut conn = state.pool().acquire().await?;
    let allowed = super::targets(&mut conn).await?;
    if let Some(why) = super::url_refusal(&new.url, &allowed) {
        errors.push(FieldError::new("url", why));
    }
    if new.url.len() > 2000 {
        errors.push(FieldError::new("url", "must be at most 2000 characters"));
    }
    if new.events.is_empty() {
        errors.push(FieldError::new("events", "must name at least one event"));
    }
    if let Some(unknown) = new.events.iter().find(|e| !EVENTS.contains(&e.as_str())) {
        errors.push(FieldError::new(
            "events",
            format!("`{unknown}` is not one of {}", EVENTS.join(", ")),
        ));
    }
    let (secret, made) = match &new.secret {
        Some(secret) => {
            if !(16..=200).contains(&secret.len()) || !secret.chars().all(|c| c.is_ascii_graphic())
            {
                errors.push(FieldError::new(
                    "secret",
                    "must be 16 to 200 visible ASCII characters",
                ));
            }
            (secret.clone(), false)
        }
        None => {
            let mut bytes = [0u8; 32];
            rand::rng().fill_bytes(&mut bytes);
            let made = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
            (format!("whsec_{made}"), true)
        }
    };
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    let mut events = new.events.clone();
    events.sort();
    events.dedup();
    Ok((events, secret, made))
}

/// Make a webhook (audited). Its host must be allowed by the setting `integrations.webhook_targets`.
#[utoipa::path(post, path = "/api/v1/webhooks", tag = "integrations", security(("bearer" = [])), request_body = NewWebhook,
    params(("Idempotency-Key" = Option<String>, Header, description = "Optional: a retry with the same key answers the same webhook (without the secret)", pattern = "^[!-~]{1,255}$")),
    responses(
        (status = 201, description = "Made", body = CreatedWebhook),
        (status = 403, description = "Missing permission (`rbac.forbidden`)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid fields, a host not allowed (`validation.failed`), key reused (`idempotency.key_reused`)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn create(
    State(state): State<AppState>,
    caller: AuthContext,
    headers: HeaderMap,
    ApiJson(new): ApiJson<NewWebhook>,
) -> Result<(StatusCode, Json<CreatedWebhook>), ApiError> {
    caller.refuse_api_key()?;
    let (events, secret, made) = checked(&state, &new).await?;
    let now = state.clock().now();
    // The body's digest for the key, without the secret in it.
    let digest = json!({"url": new.url, "events": events, "secret": new.secret.is_some()});
    let key = CreateKey::read(&headers, caller.user_id, "webhooks", &digest)?;
    let mut tx = AuditedTx::begin(state.pool(), Actor::user(&caller), now).await?;
    if let Some(earlier) = key.earlier(&mut tx).await? {
        let webhook = get_row(&mut tx, earlier)
            .await?
            .ok_or_else(|| not_found(earlier))?;
        return Ok((
            StatusCode::CREATED,
            Json(CreatedWebhook {
                webhook,
                secret: None,
            }),
        ));
    }
    let id = new_id();
    if let Some(earlier) = key.claim(&mut tx, id, caller.user_id, now).await? {
        // A retry with the same key committed first: answer what it made.
        drop(tx);
        let mut conn = state.pool().acquire().await?;
        let webhook = get_row(&mut conn, earlier)
            .await?
            .ok_or_else(|| not_found(earlier))?;
        return Ok((
            StatusCode::CREATED,
            Json(CreatedWebhook {
                webhook,
                secret: None,
            }),
        ));
    }
    let sealed = state.sealing().seal(secret.as_bytes(), id.as_bytes())?;
    sqlx::query(
        "INSERT INTO webhooks (id, url, events, secret_sealed, created_by, created_at) VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(id)
    .bind(&new.url)
    .bind(&events)
    .bind(sealed)
    .bind(caller.user_id)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    tx.record(
        Change::new(MODULE, "webhook", id, "webhook.create")
            .after(json!({"url": new.url, "events": events})),
    )
    .await?;
    let webhook = get_row(&mut tx, id).await?.ok_or_else(|| not_found(id))?;
    tx.commit().await?;
    Ok((
        StatusCode::CREATED,
        Json(CreatedWebhook {
            webhook,
            secret: made.then_some(secret),
        }),
    ))
}

async fn get_row(conn: &mut sqlx::PgConnection, id: Uuid) -> Result<Option<Webhook>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, url, events, created_at, created_by FROM webhooks WHERE id = $1 AND deleted_at IS NULL",
    )
    .bind(id)
    .fetch_optional(conn)
    .await
}

/// The webhooks (never their secrets), oldest first.
#[utoipa::path(get, path = "/api/v1/webhooks", tag = "integrations", security(("bearer" = [])), params(PageQuery),
    responses(
        (status = 200, description = "A page of webhooks", body = Page<Webhook>),
        (status = 403, description = "Missing permission (`rbac.forbidden`)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Bad limit or cursor (`validation.failed`)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn list(
    State(state): State<AppState>,
    _caller: AuthContext,
    Query(query): Query<PageQuery>,
) -> Result<Json<Page<Webhook>>, ApiError> {
    let mut conn = state.pool().acquire().await?;
    let all: Vec<Webhook> = sqlx::query_as(
        "SELECT id, url, events, created_at, created_by FROM webhooks WHERE deleted_at IS NULL ORDER BY id",
    )
    .fetch_all(&mut *conn)
    .await?;
    Ok(Json(keyset_page(all, |w| w.id.to_string(), &query)?))
}

/// One webhook.
#[utoipa::path(get, path = "/api/v1/webhooks/{id}", tag = "integrations", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "The webhook")),
    responses(
        (status = 200, description = "The webhook", body = Webhook),
        (status = 403, description = "Missing permission (`rbac.forbidden`)", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such webhook (`webhook.not_found`)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn get(
    State(state): State<AppState>,
    _caller: AuthContext,
    Path(id): Path<Uuid>,
) -> Result<Json<Webhook>, ApiError> {
    let mut conn = state.pool().acquire().await?;
    get_row(&mut conn, id)
        .await?
        .map(Json)
        .ok_or_else(|| not_found(id))
}

/// Delete a webhook: no further deliveries; its log stays (audited).
#[utoipa::path(post, path = "/api/v1/webhooks/{id}/delete", tag = "integrations", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "The webhook")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 403, description = "Missing permission (`rbac.forbidden`)", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such webhook (`webhook.not_found`)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn delete(
    State(state): State<AppState>,
    caller: AuthContext,
    Path(id): Path<Uuid>,
) -> Result<StatusCode, ApiError> {
    caller.refuse_api_key()?;
    let now = state.clock().now();
    let mut tx = AuditedTx::begin(state.pool(), Actor::user(&caller), now).await?;
    let before = get_row(&mut tx, id).await?.ok_or_else(|| not_found(id))?;
    sqlx::query("UPDATE webhooks SET deleted_at = $2 WHERE id = $1")
        .bind(id)
        .bind(now)
        .execute(&mut *tx)
        .await?;
    tx.record(
        Change::new(MODULE, "webhook", id, "webhook.delete")
            .before(json!({"url": before.url, "events": before.events})),
    )
    .await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Paging of the delivery log.
#[derive(Debug, Deserialize, IntoParams)]
pub struct DeliveryQuery {
    /// 1 to 500 (default 100).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<i64>,
    /// The `next_cursor` of the previous page.
    #[param(
        pattern = "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
    )]
    pub cursor: Option<Uuid>,
}

/// A webhook's deliveries, newest first: status, attempts, the receiver's last answer.
#[utoipa::path(get, path = "/api/v1/webhooks/{id}/deliveries", tag = "integrations", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "The webhook"), DeliveryQuery),
    responses(
        (status = 200, description = "A page of deliveries", body = Page<Delivery>),
        (status = 403, description = "Missing permission (`rbac.forbidden`)", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such webhook (`webhook.not_found`)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Bad limit or cursor (`validation.failed`)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn deliveries(
    State(state): State<AppState>,
    _caller: AuthContext,
    Path(id): Path<Uuid>,
    Query(query): Query<DeliveryQuery>,
) -> Result<Json<Page<Delivery>>, ApiError> {
    let limit = page_limit(query.limit, 100, 500)?;
    let mut conn = state.pool().acquire().await?;
    if get_row(&mut conn, id).await?.is_none() {
        return Err(not_found(id));
    }
    // Delivery ids are v7: newest first is by id.
    let rows: Vec<Delivery> = sqlx::query_as(
        "SELECT id, webhook_id, event_id, event, status, attempts, last_status, last_error, created_at, \
                last_attempt_at, delivered_at \
         FROM webhook_deliveries WHERE webhook_id = $1 AND ($2::uuid IS NULL OR id < $2) ORDER BY id DESC LIMIT $3",
    )
    .bind(id)
    .bind(query.cursor)
    .bind(limit + 1)
    .fetch_all(&mut *conn)
    .await?;
    let (items, next_cursor) = page(rows, limit, |d| d.id.to_string());
    Ok(Json(Page { items, next_cursor }))
}

/// Send a delivery again (the same event id and body, signed anew), whatever its status (audited).
#[utoipa::path(post, path = "/api/v1/webhooks/{id}/deliveries/{delivery_id}/replay", tag = "integrations", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "The webhook"), ("delivery_id" = Uuid, Path, description = "The delivery")),
    responses(
        (status = 202, description = "Queued", body = Delivery),
        (status = 403, description = "Missing permission (`rbac.forbidden`)", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such webhook or delivery (`webhook.not_found`, `webhook.delivery_not_found`)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn replay(
    State(state): State<AppState>,
    caller: AuthContext,
    Path((id, delivery_id)): Path<(Uuid, Uuid)>,
) -> Result<(StatusCode, Json<Delivery>), ApiError> {
    caller.refuse_api_key()?;
    let now = state.clock().now();
    let mut tx = AuditedTx::begin(state.pool(), Actor::user(&caller), now).await?;
    if get_row(&mut tx, id).await?.is_none() {
        return Err(not_found(id));
    }
    let delivery: Option<Delivery> = sqlx::query_as(
        "UPDATE webhook_deliveries SET status = 'pending' WHERE id = $1 AND webhook_id = $2 \
         RETURNING id, webhook_id, event_id, event, status, attempts, last_status, last_error, created_at, \
                   last_attempt_at, delivered_at",
    )
    .bind(delivery_id)
    .bind(id)
    .fetch_optional(&mut *tx)
    .await?;
    let delivery = delivery.ok_or_else(|| ApiError::NotFound {
        code: "webhook.delivery_not_found",
        detail: format!("Webhook {id} has no delivery {delivery_id}."),
    })?;
    crate::core::jobs::enqueue(
        &mut tx,
        &DELIVER,
        json!({"delivery_id": delivery_id}),
        None,
        now,
    )
    .await?;
    tx.record(
        Change::new(MODULE, "webhook", id, "webhook.replay")
            .after(json!({"delivery_id": delivery_id, "event_id": delivery.event_id})),
    )
    .await?;
    tx.commit().await?;
    Ok((StatusCode::ACCEPTED, Json(delivery)))
}

/// The webhook routes, each with its access rule.
pub fn routes() -> utoipa_axum::router::OpenApiRouter<AppState> {
    use crate::core::auth::access::Access::Permission;
    use crate::core::auth::access::declare;
    use utoipa_axum::routes;
    utoipa_axum::router::OpenApiRouter::new()
        .routes(declare(Permission(MANAGE), routes!(create)))
        .routes(declare(Permission(READ), routes!(list)))
        .routes(declare(Permission(READ), routes!(get)))
        .routes(declare(Permission(MANAGE), routes!(delete)))
        .routes(declare(Permission(READ), routes!(deliveries)))
        .routes(declare(Permission(MANAGE), routes!(replay)))
}
