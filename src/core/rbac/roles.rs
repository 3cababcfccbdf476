//! `/api/v1/permissions` and `/api/v1/roles`.

use std::collections::BTreeSet;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::json;
use sqlx::PgConnection;
use utoipa::ToSchema;
use uuid::Uuid;

use super::store;
use crate::core::audit::{Actor, AuditedTx, Change};
use crate::core::auth::context::AuthContext;
use crate::core::auth::permissions;
use crate::core::http::problem::{FieldError, Problem};
use crate::core::http::{ApiError, ApiJson, Page, PageQuery, keyset_page};
use crate::core::rbac::{ADMINISTRABLE, record, refuse_escalation};
use crate::core::security::events::EventKind;
use crate::core::state::AppState;
use crate::shared::ids::new_id;

/// The module role changes are audited under.
const MODULE: &str = "core.rbac";

/// A declared permission.
#[derive(Debug, Serialize, ToSchema)]
pub struct PermissionInfo {
    #[schema(example = "operations.sales.void")]
    pub name: &'static str,
    pub description: &'static str,
}

/// A role and its permissions.
#[derive(Debug, Serialize, ToSchema)]
pub struct Role {
    pub id: Uuid,
    pub name: String,
    pub description: String,
    pub builtin: bool,
    pub permissions: Vec<String>,
}

/// A new role.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewRole {
    #[schema(example = "shift_lead")]
    pub name: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub permissions: Vec<String>,
}

/// A role's complete new permission set.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RolePermissions {
    pub permissions: Vec<String>,
}

/// Every permission this server knows, with what it allows.
#[utoipa::path(get, path = "/api/v1/permissions", tag = "rbac", security(("bearer" = [])), params(PageQuery),
    responses(
        (status = 200, description = "A page of permissions, by name", body = Page<PermissionInfo>),
        (status = 422, description = "Bad limit or cursor (`validation.failed`)", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Missing permission (`rbac.forbidden`)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn list_permissions(
    Query(query): Query<PageQuery>,
) -> Result<Json<Page<PermissionInfo>>, ApiError> {
    let all: Vec<PermissionInfo> = permissions::all()
        .into_iter()
        .map(|p| PermissionInfo {
            name: p.name,
            description: p.description,
        })
        .collect();
    Ok(Json(keyset_page(all, |p| p.name.to_owned(), &query)?))
}

async fn load(conn: &mut PgConnection, id: Option<Uuid>) -> Result<Vec<Role>, sqlx::Error> {
    let rows = store::role_rows(conn, id).await?;
    let mut roles: Vec<Role> = Vec::new();
    for (id, name, description, builtin, permission) in rows {
        if roles.last().is_none_or(|r| r.id != id) {
            roles.push(Role {
                id,
                name,
                description,
                builtin,
                permissions: Vec::new(),
            });
        }
        if let (Some(permission), Some(role)) = (permission, roles.last_mut()) {
            role.permissions.push(permission);
        }
    }
    Ok(roles)
}

fn validate_permissions(field: &str, list: &[String]) -> Result<Vec<String>, ApiError> {
    let unknown: Vec<FieldError> = list
        .iter()
        .enumerate()
        .filter(|(_, p)| !permissions::exists(p))
        .map(|(i, p)| FieldError::new(format!("{field}[{i}]"), format!("unknown permission `{p}`")))
        .collect();
    if !unknown.is_empty() {
        return Err(ApiError::Validation(unknown));
    }
    Ok(list
        .iter()
        .cloned()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect())
}

/// All roles with their permissions.
#[utoipa::path(get, path = "/api/v1/roles", tag = "rbac", security(("bearer" = [])), params(PageQuery),
    responses(
        (status = 200, description = "A page of roles with their permissions, by name", body = Page<Role>),
        (status = 422, description = "Bad limit or cursor (`validation.failed`)", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Missing permission (`rbac.forbidden`)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn list(
    State(state): State<AppState>,
    Query(query): Query<PageQuery>,
) -> Result<Json<Page<Role>>, ApiError> {
    let mut conn = state.pool().acquire().await?;
    let all = load(&mut conn, None).await?;
    Ok(Json(keyset_page(all, |r| r.name.clone(), &query)?))
}

/// Create a role. Only permissions the caller holds can be given.
#[utoipa::path(post, path = "/api/v1/roles", tag = "rbac", security(("bearer" = [])), request_body = NewRole,
    responses(
        (status = 201, description = "Created", body = Role),
        (status = 403, description = "Missing permission, or granting one the caller lacks (`rbac.forbidden`)", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Name taken (`role.name_taken`)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid name or unknown permission (`validation.failed`)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn create(
    State(state): State<AppState>,
    caller: AuthContext,
    ApiJson(new): ApiJson<NewRole>,
) -> Result<(StatusCode, Json<Role>), ApiError> {
    let name = new.name.trim().to_owned();
    let name_ok = (2..=64).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if !name_ok {
        return Err(ApiError::invalid(
            "name",
            "must be 2 to 64 of a-z, 0-9 and _, starting with a letter",
        ));
    }
    let granted = validate_permissions("permissions", &new.permissions)?;
    refuse_escalation(&state, &caller, &granted).await?;
    let mut tx = AuditedTx::begin(state.pool(), Actor::user(&caller), state.clock().now()).await?;
    let id = new_id();
    if !store::insert_role(&mut tx, id, &name, new.description.trim(), &granted).await? {
        return Err(ApiError::Conflict {
            code: "role.name_taken",
            detail: format!("A role named `{name}` exists already."),
        });
    }
    record(
        &mut tx,
        &caller,
        EventKind::PrivilegeChanged,
        None,
        json!({"role": name, "created": true, "permissions": granted}),
    )
    .await?;
    let role = load(&mut tx, Some(id))
        .await?
        .pop()
        .ok_or_else(|| ApiError::Internal(anyhow::anyhow!("created role vanished")))?;
    let after = json!({"name": name, "description": role.description, "permissions": granted});
    tx.record(Change::new(MODULE, "role", id, "role.create").after(after))
        .await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(role)))
}

/// Replace a role's permissions. Added ones must be held by the caller; super_admin keeps the
/// permissions that keep the instance administrable.
#[utoipa::path(put, path = "/api/v1/roles/{id}/permissions", tag = "rbac", security(("bearer" = [])), request_body = RolePermissions,
    params(("id" = Uuid, Path, description = "Role id")),
    responses(
        (status = 200, description = "Updated", body = Role),
        (status = 403, description = "Missing permission, or granting one the caller lacks (`rbac.forbidden`)", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such role (`role.not_found`)", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Would leave the instance unadministrable (`rbac.would_lock_out`)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Unknown permission (`validation.failed`)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn set_permissions(
    State(state): State<AppState>,
    caller: AuthContext,
    Path(id): Path<Uuid>,
    ApiJson(body): ApiJson<RolePermissions>,
) -> Result<Json<Role>, ApiError> {
    let wanted = validate_permissions("permissions", &body.permissions)?;
    let mut tx = AuditedTx::begin(state.pool(), Actor::user(&caller), state.clock().now()).await?;
    let Some((name, current)) = store::lock_role(&mut tx, id).await? else {
        return Err(ApiError::NotFound {
            code: "role.not_found",
            detail: format!("No role with id {id}."),
        });
    };
    let added: Vec<String> = wanted
        .iter()
        .filter(|p| !current.contains(p))
        .cloned()
        .collect();
    let removed: Vec<String> = current
        .iter()
        .filter(|p| !wanted.contains(p))
        .cloned()
        .collect();
    refuse_escalation(&state, &caller, &added).await?;
    if name == "super_admin"
        && let Some(kept) = ADMINISTRABLE
            .iter()
            .find(|p| removed.iter().any(|r| r == *p))
    {
        return Err(ApiError::Conflict {
            code: "rbac.would_lock_out",
            detail: format!(
                "super_admin must keep `{kept}`, or nobody could administer this instance."
            ),
        });
    }
    store::set_permissions(&mut tx, id, &wanted, &added).await?;
    record(
        &mut tx,
        &caller,
        EventKind::PrivilegeChanged,
        None,
        json!({"role": name, "added": added, "removed": removed}),
    )
    .await?;
    let role = load(&mut tx, Some(id))
        .await?
        .pop()
        .ok_or_else(|| ApiError::Internal(anyhow::anyhow!("role vanished")))?;
    let change = Change::new(MODULE, "role", id, "role.set_permissions")
        .before(json!({"permissions": current}))
        .after(json!({"permissions": wanted}));
    tx.record(change).await?;
    tx.commit().await?;
    Ok(Json(role))
}
