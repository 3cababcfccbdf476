//! `GET /api/v1/version`: what the desktop client checks for compatibility after setup.

use axum::Json;
use axum::extract::State;
use serde::Serialize;
use utoipa::ToSchema;

use crate::core::http::ApiError;
use crate::core::http::problem::Problem;
use crate::core::state::AppState;

/// Server and schema versions.
#[derive(Debug, Serialize, ToSchema)]
pub struct VersionInfo {
    /// The plugpos release.
    #[schema(example = "0.1.0")]
    pub version: &'static str,
    /// The API generation (the path prefix).
    #[schema(example = "v1")]
    pub api: &'static str,
    /// The newest migration applied to this database.
    pub schema_version: i64,
    /// The build (a commit id for packaged builds, `dev` otherwise).
    pub build: &'static str,
    /// Every upgrade attempt of this installation, oldest first (`plugpos version --history`).
    pub history: Vec<crate::core::upgrade::history::Entry>,
}

/// Server, API and schema versions.
#[utoipa::path(
    get,
    path = "/api/v1/version",
    tag = "meta",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Versions", body = VersionInfo),
        (status = 401, description = "Not authenticated", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Not set up yet (`setup.required`) or database unavailable", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn version(State(state): State<AppState>) -> Result<Json<VersionInfo>, ApiError> {
    let schema_version: Option<i64> =
        sqlx::query_scalar("SELECT max(version) FROM _sqlx_migrations WHERE success")
            .fetch_one(state.pool())
            .await?;
    Ok(Json(VersionInfo {
        version: env!("CARGO_PKG_VERSION"),
        api: "v1",
        schema_version: schema_version.unwrap_or(0),
        build: option_env!("PLUGPOS_BUILD_ID").unwrap_or("dev"),
        history: crate::core::upgrade::history::read(state.data_dir().root()),
    }))
}
