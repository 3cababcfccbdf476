//! `GET /api/v1/modules`, `POST /api/v1/modules/{id}/enable` and `/disable`.

use axum::Json;
use axum::extract::{Path, Query, State};
use serde::Serialize;
use serde_json::json;
use utoipa::ToSchema;

use crate::core::audit::{Actor, AuditedTx, Change};
use crate::core::auth::context::{AuthContext, Authenticated};
use crate::core::http::problem::Problem;
use crate::core::http::{ApiError, Page, PageQuery, keyset_page};
use crate::core::state::AppState;

/// A registered module.
#[derive(Debug, Serialize, ToSchema)]
pub struct ModuleInfo {
    #[schema(example = "administration.places")]
    pub id: String,
    pub version: String,
    pub description: String,
    pub enabled: bool,
    /// `id` and semver requirement of each module it needs.
    pub dependencies: Vec<DependencyInfo>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DependencyInfo {
    pub id: String,
    pub requirement: String,
}

fn info(state: &AppState, id: &str) -> Option<ModuleInfo> {
    let module = state.registry().get(id)?;
    Some(ModuleInfo {
        id: module.id().to_owned(),
        version: module.version().to_owned(),
        description: module.description().to_owned(),
        enabled: state.modules().is_enabled(module.id()),
        dependencies: module
            .dependencies()
            .iter()
            .map(|d| DependencyInfo {
                id: d.id.to_owned(),
                requirement: d.requirement.to_owned(),
            })
            .collect(),
    })
}

/// Every registered module and whether this business uses it.
#[utoipa::path(get, path = "/api/v1/modules", tag = "modules", security(("bearer" = [])), params(PageQuery),
    responses(
        (status = 200, description = "A page of modules, by id", body = Page<ModuleInfo>),
        (status = 422, description = "Bad limit or cursor (`validation.failed`)", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Not authenticated", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn list(
    State(state): State<AppState>,
    _caller: Authenticated,
    Query(query): Query<PageQuery>,
) -> Result<Json<Page<ModuleInfo>>, ApiError> {
    let all: Vec<ModuleInfo> = state
        .registry()
        .modules()
        .iter()
        .filter_map(|m| info(&state, m.id()))
        .collect();
    Ok(Json(keyset_page(all, |m| m.id.clone(), &query)?))
}

async fn set(
    state: &AppState,
    caller: &AuthContext,
    id: &str,
    enabled: bool,
) -> Result<Json<ModuleInfo>, ApiError> {
    let Some(module) = state.registry().get(id) else {
        return Err(ApiError::NotFound {
            code: "module.not_found",
            detail: format!("No module {id}; core cannot be disabled."),
        });
    };
    if enabled {
        if let Some(dependency) = module
            .dependencies()
            .iter()
            .find(|d| !state.modules().is_enabled(d.id))
        {
            return Err(ApiError::Conflict {
                code: "module.dependency_disabled",
                detail: format!(
                    "{id} needs {}, which is disabled; enable it first.",
                    dependency.id
                ),
            });
        }
    } else if let Some(dependent) = state
        .registry()
        .dependents(id)
        .into_iter()
        .find(|d| state.modules().is_enabled(d))
    {
        return Err(ApiError::Conflict {
            code: "module.required",
            detail: format!(
                "{dependent} depends on {id} and is enabled; disable {dependent} first."
            ),
        });
    }
    let before = state.modules().is_enabled(id);
    let mut tx = AuditedTx::begin(state.pool(), Actor::user(caller), state.clock().now()).await?;
    sqlx::query("UPDATE modules SET enabled = $2, updated_at = now() WHERE id = $1")
        .bind(id)
        .bind(enabled)
        .execute(&mut *tx)
        .await?;
    let action = if enabled {
        "module.enable"
    } else {
        "module.disable"
    };
    tx.record(
        Change::new("core.modules", "module", id, action)
            .before(json!({"enabled": before}))
            .after(json!({"enabled": enabled})),
    )
    .await?;
    tx.commit().await?;
    state.modules().set(id, enabled);
    info(state, id)
        .map(Json)
        .ok_or_else(|| ApiError::Internal(anyhow::anyhow!("module {id} vanished")))
}

/// Enable a module (its dependencies must be enabled).
#[utoipa::path(post, path = "/api/v1/modules/{id}/enable", tag = "modules", security(("bearer" = [])),
    params(("id" = String, Path, description = "Module id")),
    responses(
        (status = 200, description = "Enabled", body = ModuleInfo),
        (status = 403, description = "Missing permission (`rbac.forbidden`)", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such module (`module.not_found`)", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "A dependency is disabled (`module.dependency_disabled`)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn enable(
    State(state): State<AppState>,
    caller: AuthContext,
    Path(id): Path<String>,
) -> Result<Json<ModuleInfo>, ApiError> {
    set(&state, &caller, &id, true).await
}

/// Disable a module: its routes answer 404 `module.disabled` until it is enabled again.
#[utoipa::path(post, path = "/api/v1/modules/{id}/disable", tag = "modules", security(("bearer" = [])),
    params(("id" = String, Path, description = "Module id")),
    responses(
        (status = 200, description = "Disabled", body = ModuleInfo),
        (status = 403, description = "Missing permission (`rbac.forbidden`)", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such module (`module.not_found`)", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "An enabled module depends on it (`module.required`)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn disable(
    State(state): State<AppState>,
    caller: AuthContext,
    Path(id): Path<String>,
) -> Result<Json<ModuleInfo>, ApiError> {
    set(&state, &caller, &id, false).await
}

/// The module registry, each with its access rule (assembled by the server with the other capabilities').
pub fn routes() -> utoipa_axum::router::OpenApiRouter<crate::core::state::AppState> {
    use crate::core::auth::access::Access::{Permission, SelfService};
    use crate::core::auth::access::declare;
    use utoipa_axum::routes;
    utoipa_axum::router::OpenApiRouter::new()
        .routes(declare(SelfService, routes!(list)))
        .routes(declare(
            Permission("administration.modules.manage"),
            routes!(enable),
        ))
        .routes(declare(
            Permission("administration.modules.manage"),
            routes!(disable),
        ))
}
