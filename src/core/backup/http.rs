//! `/api/v1/backups`: take, list, verify and restore backups. The work runs as jobs; the
//! endpoints answer 202 with the job's id (follow it on `GET /api/v1/jobs/{id}` or the `jobs`
//! WebSocket topic).

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::core::audit::{Actor, AuditedTx, Change};
use crate::core::auth::context::AuthContext;
use crate::core::backup::jobs::{CREATE, RESTORE, VERIFY};
use crate::core::backup::{BackupView, Status, targets};
use crate::core::http::problem::Problem;
use crate::core::http::{ApiError, ApiJson, Page, PageQuery, keyset_page};
use crate::core::jobs;
use crate::core::settings::Business;
use crate::core::state::AppState;
use crate::shared::ids::new_id;

pub const READ: &str = "administration.backups.read";
pub const MANAGE: &str = "administration.backups.manage";
pub const RESTORE_PERMISSION: &str = "administration.backups.restore";

/// A job was queued.
#[derive(Debug, Serialize, ToSchema)]
pub struct Accepted {
    pub job_id: Uuid,
    /// The backup the job works on.
    pub backup_id: Uuid,
}

/// Take a full backup now (verified automatically afterwards).
#[utoipa::path(post, path = "/api/v1/backups", tag = "backups", security(("bearer" = [])),
    responses(
        (status = 202, description = "Queued", body = Accepted),
        (status = 403, description = "Missing permission (`rbac.forbidden`)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn create(
    State(state): State<AppState>,
    caller: AuthContext,
) -> Result<(StatusCode, Json<Accepted>), ApiError> {
    let backup_id = new_id();
    let now = state.clock().now();
    let mut tx = AuditedTx::begin(state.pool(), Actor::user(&caller), now).await?;
    let job = jobs::enqueue(
        &mut tx,
        &CREATE,
        json!({"backup_id": backup_id, "kind": "full"}),
        None,
        now,
    )
    .await?;
    tx.record(
        Change::new("core.backup", "backup", backup_id, "backup.request")
            .after(json!({"kind": "full", "job_id": job.id()})),
    )
    .await?;
    tx.commit().await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(Accepted {
            job_id: job.id(),
            backup_id,
        }),
    ))
}

/// Every backup, newest first. Only `valid` ones have been restored and checked.
#[utoipa::path(get, path = "/api/v1/backups", tag = "backups", security(("bearer" = [])), params(PageQuery),
    responses(
        (status = 200, description = "A page of backups, newest first", body = Page<BackupView>),
        (status = 422, description = "Bad limit or cursor (`validation.failed`)", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Missing permission (`rbac.forbidden`)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn list(
    State(state): State<AppState>,
    _caller: AuthContext,
    Query(query): Query<PageQuery>,
) -> Result<Json<Page<BackupView>>, ApiError> {
    let all: Vec<BackupView> = state
        .backups()
        .list()
        .iter()
        .map(BackupView::from)
        .collect();
    // Newest first: the key counts down with the time-ordered id.
    let newest_first = |b: &BackupView| format!("{:032x}", u128::MAX - b.id.as_u128());
    Ok(Json(keyset_page(all, newest_first, &query)?))
}

/// One backup.
#[utoipa::path(get, path = "/api/v1/backups/{id}", tag = "backups", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Backup id")),
    responses(
        (status = 200, description = "The backup", body = BackupView),
        (status = 403, description = "Missing permission (`rbac.forbidden`)", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such backup (`backup.not_found`)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn get(
    State(state): State<AppState>,
    _caller: AuthContext,
    Path(id): Path<Uuid>,
) -> Result<Json<BackupView>, ApiError> {
    Ok(Json(BackupView::from(&state.backups().load(id)?)))
}

/// Download a backup's file as it is stored: encrypted to the instance's backup key (age), so
/// it is no use without that key (`docs/operations.md`, "Restoring by hand"). Audited
/// (`backup.download`) and recorded as a `sensitive_export` security event.
#[utoipa::path(get, path = "/api/v1/backups/{id}/file", tag = "backups", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Backup id")),
    responses(
        (status = 200, description = "The encrypted backup file (`application/octet-stream`)", content_type = "application/octet-stream", body = Vec<u8>),
        (status = 403, description = "Missing permission (`rbac.forbidden`)", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such backup (`backup.not_found`)", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The backup failed and has no file (`backup.not_restorable`)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn download(
    State(state): State<AppState>,
    caller: AuthContext,
    Path(id): Path<Uuid>,
) -> Result<axum::response::Response, ApiError> {
    use axum::response::IntoResponse;
    let manifest = state.backups().load(id)?;
    let path = state.backups().file_path(id);
    let file = match (manifest.status, tokio::fs::File::open(&path).await) {
        (Status::Valid | Status::Invalid | Status::Pending, Ok(file)) => file,
        _ => {
            return Err(ApiError::Conflict {
                code: "backup.not_restorable",
                detail: format!("Backup {id} has no file to download (it failed)."),
            });
        }
    };
    let size = file.metadata().await.map(|m| m.len()).unwrap_or(0);
    let now = state.clock().now();
    let mut tx = AuditedTx::begin(state.pool(), Actor::user(&caller), now).await?;
    tx.record(
        Change::new("core.backup", "backup", id, "backup.download")
            .after(json!({"bytes": size, "sha256": manifest.sha256})),
    )
    .await?;
    crate::core::security::events::record(
        &mut tx,
        crate::core::security::events::SecurityEvent {
            kind: crate::core::security::events::EventKind::SensitiveExport,
            user_id: Some(caller.user_id),
            username: Some(&caller.username),
            origin: &caller.origin,
            details: json!({"what": "backup", "backup_id": id}),
        },
    )
    .await?;
    tx.commit().await?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| format!("{id}.age"));
    Ok((
        [
            (
                axum::http::header::CONTENT_TYPE,
                "application/octet-stream".to_owned(),
            ),
            (axum::http::header::CONTENT_LENGTH, size.to_string()),
            (
                axum::http::header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"plugpos-backup-{name}\""),
            ),
        ],
        axum::body::Body::from_stream(tokio_util::io::ReaderStream::new(file)),
    )
        .into_response())
}

/// Verify a backup again (restore into a scratch database and check it).
#[utoipa::path(post, path = "/api/v1/backups/{id}/verify", tag = "backups", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Backup id")),
    responses(
        (status = 202, description = "Queued", body = Accepted),
        (status = 403, description = "Missing permission (`rbac.forbidden`)", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such backup (`backup.not_found`)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn verify(
    State(state): State<AppState>,
    _caller: AuthContext,
    Path(id): Path<Uuid>,
) -> Result<(StatusCode, Json<Accepted>), ApiError> {
    state.backups().load(id)?;
    let mut conn = state.pool().acquire().await?;
    let job = jobs::enqueue(
        &mut conn,
        &VERIFY,
        json!({"backup_id": id}),
        Some(&format!("backup.verify:{id}")),
        state.clock().now(),
    )
    .await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(Accepted {
            job_id: job.id(),
            backup_id: id,
        }),
    ))
}

/// What restoring asks for: the business name, typed, as confirmation.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RestoreRequest {
    /// The business name exactly as set up.
    pub confirm: String,
    /// Restore the copy at this backup target (fetched and checked first) rather than the one
    /// on this machine.
    #[schema(max_length = 32)]
    pub from: Option<String>,
}

/// A backup target, its definition (credentials only as the path of their file) and what its
/// last check found.
#[derive(Debug, Serialize, ToSchema)]
pub struct TargetView {
    pub name: String,
    /// `config` (the config file: changed there) or `settings` (the `backup.targets` setting).
    pub source: String,
    /// As written: kind, path or endpoint/bucket/prefix/region, kinds, schedule, retention.
    pub definition: serde_json::Value,
    pub state: targets::TargetState,
}

/// The backup targets (the config file's, then the `backup.targets` setting's) and their state.
#[utoipa::path(get, path = "/api/v1/backups/targets", tag = "backups", security(("bearer" = [])), params(PageQuery),
    responses(
        (status = 200, description = "A page of targets, by name", body = Page<TargetView>),
        (status = 422, description = "Bad limit or cursor (`validation.failed`)", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Missing permission (`rbac.forbidden`)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn list_targets(
    State(state): State<AppState>,
    _caller: AuthContext,
    Query(query): Query<PageQuery>,
) -> Result<Json<Page<TargetView>>, ApiError> {
    let mut conn = state.pool().acquire().await?;
    let all = super::jobs::targets_in_force(&state, &mut conn).await?;
    let states = targets::states(&state.backups());
    let from_file = &state.config().backup.targets;
    let views: Vec<TargetView> = all
        .iter()
        .map(|t| TargetView {
            name: t.name.clone(),
            source: if from_file.iter().any(|f| f.name == t.name) {
                "config"
            } else {
                "settings"
            }
            .to_owned(),
            definition: serde_json::to_value(t).unwrap_or_default(),
            state: states.get(&t.name).cloned().unwrap_or_default(),
        })
        .collect();
    Ok(Json(keyset_page(views, |t| t.name.clone(), &query)?))
}

/// The backups at a target, read from its manifests (newest first): what a restore `from` it
/// can bring back.
#[utoipa::path(get, path = "/api/v1/backups/targets/{name}/backups", tag = "backups", security(("bearer" = [])),
    params(("name" = String, Path, description = "Target name", max_length = 32), PageQuery),
    responses(
        (status = 200, description = "A page of the backups there, newest first", body = Page<BackupView>),
        (status = 404, description = "No such target (`backup.target_not_found`)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Bad limit or cursor (`validation.failed`)", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Missing permission (`rbac.forbidden`)", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The target cannot be reached (`service.unavailable`; the target's state says why)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn list_at_target(
    State(state): State<AppState>,
    _caller: AuthContext,
    Path(name): Path<String>,
    Query(query): Query<PageQuery>,
) -> Result<Json<Page<BackupView>>, ApiError> {
    let target = find_target(&state, &name).await?;
    let opened = targets::open(&target, state.data_dir().root())?;
    let all: Vec<BackupView> = opened
        .manifests()
        .await?
        .iter()
        .map(BackupView::from)
        .collect();
    let newest_first = |b: &BackupView| format!("{:032x}", u128::MAX - b.id.as_u128());
    Ok(Json(keyset_page(all, newest_first, &query)?))
}

async fn find_target(state: &AppState, name: &str) -> Result<targets::Target, ApiError> {
    let mut conn = state.pool().acquire().await?;
    super::jobs::targets_in_force(state, &mut conn)
        .await?
        .into_iter()
        .find(|t| t.name == name)
        .ok_or_else(|| ApiError::NotFound {
            code: "backup.target_not_found",
            detail: format!("There is no backup target named {name}."),
        })
}

/// Restore a backup (super admins only; audited): verify it, enter maintenance mode, back up the
/// current state, switch to the restored database, leave maintenance mode. On any failure the
/// current database stays.
#[utoipa::path(post, path = "/api/v1/backups/{id}/restore", tag = "backups", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Backup id")),
    request_body = RestoreRequest,
    responses(
        (status = 202, description = "Queued", body = Accepted),
        (status = 403, description = "Not a super admin (`rbac.forbidden`)", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such backup (`backup.not_found`), or no backup target named `from` (`backup.target_not_found`)", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The backup is failed or invalid (`backup.not_restorable`), or a restore is already running (`restore.in_progress`)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "The confirmation is not the business name (`restore.confirmation_mismatch`)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn restore(
    State(state): State<AppState>,
    caller: AuthContext,
    Path(id): Path<Uuid>,
    ApiJson(body): ApiJson<RestoreRequest>,
) -> Result<(StatusCode, Json<Accepted>), ApiError> {
    if !caller.roles.iter().any(|r| r == "super_admin") {
        // Recorded as a denial like any other.
        caller.require(&state, "role:super_admin").await?;
    }
    if let Some(name) = &body.from {
        find_target(&state, name).await?;
    }
    let manifest = match &body.from {
        // The copy is fetched and checked by the job.
        Some(_) => None,
        None => Some(state.backups().load(id)?),
    };
    if let Some(manifest) = manifest
        .as_ref()
        .filter(|m| matches!(m.status, Status::Failed | Status::Invalid))
    {
        return Err(ApiError::Conflict {
            code: "backup.not_restorable",
            detail: format!(
                "Backup {id} is {}; it cannot be restored.",
                if manifest.status == Status::Failed {
                    "failed"
                } else {
                    "invalid"
                }
            ),
        });
    }
    let now = state.clock().now();
    let mut tx = AuditedTx::begin(state.pool(), Actor::user(&caller), now).await?;
    let business = Business::load(&mut tx)
        .await?
        .ok_or(ApiError::SetupRequired)?;
    if body.confirm != business.name {
        return Err(ApiError::Unprocessable {
            code: "restore.confirmation_mismatch",
            detail: "Type the business name exactly to confirm the restore.".to_owned(),
        });
    }
    let job = jobs::enqueue(
        &mut tx,
        &RESTORE,
        json!({"backup_id": id, "user_id": caller.user_id, "username": caller.username, "from": body.from}),
        Some("backup.restore"),
        now,
    )
    .await?;
    if let jobs::Enqueued::Existing(_) = job {
        return Err(ApiError::Conflict {
            code: "restore.in_progress",
            detail: "A restore is already queued or running.".to_owned(),
        });
    }
    tx.record(
        Change::new("core.backup", "backup", id, "backup.restore_request").after(
            json!({"backup_id": id, "job_id": job.id(), "from": body.from,
                   "backup_created_at": manifest.as_ref().map(|m| m.created_at)}),
        ),
    )
    .await?;
    tx.commit().await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(Accepted {
            job_id: job.id(),
            backup_id: id,
        }),
    ))
}

/// Backups, verification and the guided restore, each with its access rule (assembled by the server with the other capabilities').
pub fn routes() -> utoipa_axum::router::OpenApiRouter<crate::core::state::AppState> {
    use crate::core::auth::access::Access::Permission;
    use crate::core::auth::access::declare;
    use utoipa_axum::routes;
    utoipa_axum::router::OpenApiRouter::new()
        .routes(declare(Permission(READ), routes!(list)))
        .routes(declare(Permission(MANAGE), routes!(create)))
        .routes(declare(Permission(READ), routes!(get)))
        .routes(declare(Permission(MANAGE), routes!(verify)))
        .routes(declare(Permission(MANAGE), routes!(download)))
        .routes(declare(Permission(RESTORE_PERMISSION), routes!(restore)))
        .routes(declare(Permission(READ), routes!(list_targets)))
        .routes(declare(Permission(READ), routes!(list_at_target)))
}
