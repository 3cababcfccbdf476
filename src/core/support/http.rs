//! `POST /api/v1/support-bundle`: the support bundle as a download (audited).

use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;
use utoipa::IntoParams;

use crate::core::audit::{Actor, AuditedTx, Change};
use crate::core::auth::context::AuthContext;
use crate::core::http::ApiError;
use crate::core::http::problem::Problem;
use crate::core::security::events::{self, EventKind, SecurityEvent};
use crate::core::state::AppState;
use crate::core::support::{self, DEFAULT_LOG_DAYS, Sources};
use crate::shared::ids::new_id;

/// Who may export the bundle.
pub const EXPORT: &str = "administration.diagnostics.export";

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct BundleParams {
    /// Days of logs to include (1 to 30); the setting `support.log_days` by default.
    pub log_days: Option<u32>,
}

/// Build the support bundle: version, redacted configuration, scrubbed logs, doctor, backups,
/// migrations, jobs, audit verification, database and system facts, as one `.tar.zst` with a
/// `manifest.json`. No secret is in it. The export is audited.
#[utoipa::path(post, path = "/api/v1/support-bundle", tag = "system", security(("bearer" = [])), params(BundleParams),
    responses(
        (status = 200, description = "The bundle (`application/zstd`: a zstd-compressed tar)", content_type = "application/zstd", body = Vec<u8>),
        (status = 403, description = "Missing permission (`rbac.forbidden`)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "log_days out of range (`validation.failed`)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn export(
    State(state): State<AppState>,
    caller: AuthContext,
    Query(params): Query<BundleParams>,
) -> Result<Response, ApiError> {
    let log_days = match params.log_days {
        Some(days) if !(1..=30).contains(&days) => {
            return Err(ApiError::invalid("log_days", "must be from 1 to 30"));
        }
        Some(days) => days,
        None => setting_log_days(&state).await,
    };
    let database = match tokio::time::timeout(
        std::time::Duration::from_secs(5),
        crate::core::db::ping(state.pool()),
    )
    .await
    {
        Ok(Ok(())) => Ok(state.pool().clone()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("no answer within 5 s".to_owned()),
    };
    let now = state.clock().now();
    let id = new_id();
    let path = state
        .data_dir()
        .root()
        .join("exports")
        .join(format!("support-{id}.tar.zst"));
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .map_err(|e| ApiError::Internal(anyhow::anyhow!("cannot write {}: {e}", path.display())))?;
    let written = support::write(
        Sources {
            config: state.config(),
            data_dir: state.data_dir(),
            database,
            log_days,
            now,
            requested_by: format!("POST /api/v1/support-bundle by {}", caller.username),
            doctor_checks: state.registry().doctor_checks(),
        },
        file,
    )
    .await;
    // Opened before it is unlinked: the download reads it, nothing else can find it.
    let opened = tokio::fs::File::open(&path).await;
    let _ = std::fs::remove_file(&path);
    let manifest = written.map_err(ApiError::Internal)?;
    let file =
        opened.map_err(|e| ApiError::Internal(anyhow::anyhow!("cannot read the bundle: {e}")))?;
    let size = file.metadata().await.map(|m| m.len()).unwrap_or(0);
    let missing: Vec<&str> = manifest
        .files
        .iter()
        .filter(|f| f.error.is_some())
        .map(|f| f.name.as_str())
        .collect();

    let mut tx = AuditedTx::begin(state.pool(), Actor::user(&caller), now).await?;
    tx.record(
        Change::new("core.support", "support_bundle", id, "support_bundle.export").after(json!({
            "files": manifest.files.len(), "incomplete": missing, "bytes": size, "log_days": log_days,
        })),
    )
    .await?;
    events::record(
        &mut tx,
        SecurityEvent {
            kind: EventKind::SensitiveExport,
            user_id: Some(caller.user_id),
            username: Some(&caller.username),
            origin: &caller.origin,
            details: json!({"what": "support_bundle", "files": manifest.files.len()}),
        },
    )
    .await?;
    tx.commit().await?;

    let name = format!("plugpos-support-{}.tar.zst", now.format("%Y%m%d-%H%M%S"));
    Ok((
        [
            (header::CONTENT_TYPE, "application/zstd".to_owned()),
            (header::CONTENT_LENGTH, size.to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{name}\""),
            ),
        ],
        Body::from_stream(tokio_util::io::ReaderStream::new(file)),
    )
        .into_response())
}

use std::os::unix::fs::OpenOptionsExt;

/// What `plugpos doctor` finds.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct DoctorReport {
    /// Each check: `name`, `level` (`ok`, `warn`, `fail`), `detail`, `remedy` (what to do; none
    /// when OK), in the order an admin reads them.
    #[schema(value_type = Vec<Object>)]
    pub checks: Vec<crate::core::doctor::Check>,
}

/// The checks of `plugpos doctor`, run by the server: data directory, disk, database,
/// migrations, the audit chain, the clock, each module's own check (closings, ...), backups.
#[utoipa::path(get, path = "/api/v1/doctor", tag = "system", security(("bearer" = [])),
    responses(
        (status = 200, description = "Every check with its result", body = DoctorReport),
        (status = 403, description = "Missing permission (`rbac.forbidden`)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn doctor(
    State(state): State<AppState>,
    _caller: AuthContext,
) -> Result<axum::Json<DoctorReport>, ApiError> {
    // The checks read files and run programs (blocking calls): on a thread of their own, so a
    // slow disk or database does not hold the runtime's workers.
    let config = state.config().clone();
    let modules = state.registry().doctor_checks();
    let runtime = tokio::runtime::Handle::current();
    let checks = tokio::task::spawn_blocking(move || {
        runtime.block_on(crate::core::doctor::checks(&config, &modules))
    })
    .await
    .map_err(|e| ApiError::Internal(anyhow::anyhow!("the checks stopped: {e}")))?
    .map_err(ApiError::Internal)?;
    Ok(axum::Json(DoctorReport { checks }))
}

/// `support.log_days`, or the default when unset or unreadable.
async fn setting_log_days(state: &AppState) -> u32 {
    sqlx::query_scalar::<_, serde_json::Value>(
        "SELECT value FROM settings WHERE key = 'support.log_days'",
    )
    .fetch_optional(state.pool())
    .await
    .ok()
    .flatten()
    .and_then(|v| v.as_u64())
    .and_then(|v| u32::try_from(v).ok())
    .unwrap_or(DEFAULT_LOG_DAYS)
}

/// The support bundle's route and its access rule.
pub fn routes() -> utoipa_axum::router::OpenApiRouter<AppState> {
    use crate::core::auth::access::Access::Permission;
    use crate::core::auth::access::declare;
    use utoipa_axum::routes;
    utoipa_axum::router::OpenApiRouter::new()
        .routes(declare(Permission(EXPORT), routes!(export)))
        .routes(declare(Permission(EXPORT), routes!(doctor)))
}
