//! `GET /api/v1/jobs`, `GET /api/v1/jobs/{id}`, `POST /api/v1/jobs/{id}/retry`,
//! `GET /api/v1/schedules`, and the `jobs` WebSocket topic.

use axum::Json;
use axum::extract::{Path, Query, State};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::{MANAGE, READ};
use crate::core::audit::{Actor, AuditedTx, Change};
use crate::core::auth::context::AuthContext;
use crate::core::http::problem::Problem;
use crate::core::http::{ApiError, offset_cursor};
use crate::core::http::{Page, PageQuery, keyset_page, page, page_limit};
use crate::core::jobs::runner::Handlers;
use crate::core::jobs::schedule::{self, ScheduleView};
use crate::core::jobs::{COLUMNS, Job, STATUSES};
use crate::core::state::AppState;

/// Filters and paging.
#[derive(Debug, Deserialize, IntoParams)]
pub struct JobQuery {
    /// `queued`, `running`, `succeeded`, `failed` or `dead`.
    #[param(pattern = "^(queued|running|succeeded|failed|dead)$")]
    pub status: Option<String>,
    /// e.g. `backup.create`.
    pub kind: Option<String>,
    /// 1 to 200 (default 50).
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<i64>,
    /// The `next_cursor` of the previous page.
    #[param(pattern = "^[0-9]{1,7}$")]
    pub cursor: Option<String>,
}

/// A page of jobs, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct JobPage {
    pub items: Vec<Job>,
    pub next_cursor: Option<String>,
}

/// Jobs, newest first.
#[utoipa::path(get, path = "/api/v1/jobs", tag = "jobs", security(("bearer" = [])), params(JobQuery),
    responses(
        (status = 200, description = "A page of jobs", body = JobPage),
        (status = 403, description = "Missing permission (`rbac.forbidden`)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Unknown status, bad limit or cursor (`validation.failed`)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn list(
    State(state): State<AppState>,
    _caller: AuthContext,
    Query(query): Query<JobQuery>,
) -> Result<Json<JobPage>, ApiError> {
    let limit = page_limit(query.limit, 50, 200)?;
    if let Some(status) = &query.status
        && !STATUSES.contains(&status.as_str())
    {
        return Err(ApiError::invalid(
            "status",
            "must be queued, running, succeeded, failed or dead",
        ));
    }
    let offset = offset_cursor(query.cursor.as_deref())?;
    let rows: Vec<Job> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM jobs WHERE ($1::text IS NULL OR status = $1) AND ($2::text IS NULL OR kind = $2) \
         ORDER BY created_at DESC, id DESC LIMIT $3 OFFSET $4"
    )))
    .bind(&query.status)
    .bind(&query.kind)
    .bind(limit + 1)
    .bind(offset)
    .fetch_all(state.pool())
    .await?;
    let (items, next_cursor) = page(rows, limit, |_| (offset + limit).to_string());
    Ok(Json(JobPage { items, next_cursor }))
}

fn not_found(id: Uuid) -> ApiError {
    ApiError::NotFound {
        code: "job.not_found",
        detail: format!("There is no job {id}."),
    }
}

/// One job, with its progress, result or last error.
#[utoipa::path(get, path = "/api/v1/jobs/{id}", tag = "jobs", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Job id")),
    responses(
        (status = 200, description = "The job", body = Job),
        (status = 403, description = "Missing permission (`rbac.forbidden`)", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such job (`job.not_found`)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn get(
    State(state): State<AppState>,
    _caller: AuthContext,
    Path(id): Path<Uuid>,
) -> Result<Json<Job>, ApiError> {
    let mut conn = state.pool().acquire().await?;
    crate::core::jobs::get(&mut conn, id)
        .await?
        .map(Json)
        .ok_or_else(|| not_found(id))
}

/// Queue a dead job again, with a fresh set of attempts (audited).
#[utoipa::path(post, path = "/api/v1/jobs/{id}/retry", tag = "jobs", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Job id")),
    responses(
        (status = 200, description = "The job, queued again", body = Job),
        (status = 403, description = "Missing permission (`rbac.forbidden`)", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such job (`job.not_found`)", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Only dead jobs are retried (`job.not_dead`); the same unique job is already pending (`job.duplicate`); a restore is never retried here (`job.not_retryable`)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn retry(
    State(state): State<AppState>,
    caller: AuthContext,
    Path(id): Path<Uuid>,
) -> Result<Json<Job>, ApiError> {
    let now = state.clock().now();
    let mut tx = AuditedTx::begin(state.pool(), Actor::user(&caller), now).await?;
    let before: Job = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM jobs WHERE id = $1 FOR UPDATE"
    )))
    .bind(id)
    .fetch_optional(&mut *tx)
    .await?
    .ok_or_else(|| not_found(id))?;
    if state
        .part::<Handlers>()
        .kind(&before.kind)
        .is_some_and(|kind| !kind.retryable)
    {
        tx.rollback().await?;
        return Err(ApiError::Conflict {
            code: "job.not_retryable",
            detail: format!(
                "A {} job is not queued again; start a new one (a restore: POST /api/v1/backups/{{id}}/restore).",
                before.kind
            ),
        });
    }
    if before.status != "dead" {
        // Release the row now: a worker claiming jobs skips locked rows.
        tx.rollback().await?;
        return Err(ApiError::Conflict {
            code: "job.not_dead",
            detail: format!("The job is {}; only dead jobs are retried.", before.status),
        });
    }
    let updated: Result<Job, sqlx::Error> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "UPDATE jobs SET status = 'queued', attempts = 0, run_at = $2, finished_at = NULL, updated_at = $2 \
         WHERE id = $1 RETURNING {COLUMNS}"
    )))
    .bind(id)
    .bind(now)
    .fetch_one(&mut *tx)
    .await;
    let job = match updated {
        Ok(job) => job,
        Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
            tx.rollback().await?;
            return Err(ApiError::Conflict {
                code: "job.duplicate",
                detail: "The same unique job is already queued or running.".to_owned(),
            });
        }
        Err(e) => return Err(e.into()),
    };
    sqlx::query("SELECT pg_notify($1, '')")
        .bind(crate::core::jobs::CHANNEL)
        .execute(&mut *tx)
        .await?;
    tx.record(
        Change::new("core.jobs", "job", id, "job.retry")
            .before(serde_json::json!({"status": before.status, "attempts": before.attempts, "last_error": before.last_error}))
            .after(serde_json::json!({"status": job.status, "kind": job.kind})),
    )
    .await?;
    tx.commit().await?;
    Ok(Json(job))
}

/// The schedules: cron expression, timezone, last and next run.
#[utoipa::path(get, path = "/api/v1/schedules", tag = "jobs", security(("bearer" = [])), params(PageQuery),
    responses(
        (status = 200, description = "A page of schedules, by name", body = Page<ScheduleView>),
        (status = 422, description = "Bad limit or cursor (`validation.failed`)", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Missing permission (`rbac.forbidden`)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn schedules(
    State(state): State<AppState>,
    _caller: AuthContext,
    Query(query): Query<PageQuery>,
) -> Result<Json<Page<ScheduleView>>, ApiError> {
    let all = schedule::views(&state).await?;
    Ok(Json(keyset_page(all, |s| s.name.clone(), &query)?))
}

/// Jobs and schedules, each with its access rule (assembled by the server with the other capabilities').
pub fn routes() -> utoipa_axum::router::OpenApiRouter<crate::core::state::AppState> {
    use crate::core::auth::access::Access::Permission;
    use crate::core::auth::access::declare;
    use utoipa_axum::routes;
    utoipa_axum::router::OpenApiRouter::new()
        .routes(declare(Permission(READ), routes!(list)))
        .routes(declare(Permission(READ), routes!(get)))
        .routes(declare(Permission(MANAGE), routes!(retry)))
        .routes(declare(Permission(READ), routes!(schedules)))
}
