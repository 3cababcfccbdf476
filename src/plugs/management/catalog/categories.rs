//! `/api/v1/categories`: the category tree (no cycles).

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::json;
use sqlx::PgConnection;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::core::audit::{Actor, AuditedTx, Change};
use crate::core::auth::context::AuthContext;
use crate::core::db::violated_constraint;
use crate::core::http::problem::Problem;
use crate::core::http::{ApiError, ApiJson};
use crate::core::state::AppState;
use crate::shared::ids::new_id;

const MODULE: &str = "management.catalog";

/// A category.
#[derive(Debug, Clone, Serialize, ToSchema, sqlx::FromRow)]
pub struct Category {
    pub id: Uuid,
    pub name: String,
    /// `null` for a top-level category.
    pub parent_id: Option<Uuid>,
    pub version: i64,
}

/// A new category.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewCategory {
    pub name: String,
    pub parent_id: Option<Uuid>,
}

/// Changes to a category; `version` must be the current one.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CategoryPatch {
    pub name: Option<String>,
    /// A new parent; `null` moves the category to the top level; absent keeps it.
    #[serde(default, deserialize_with = "crate::core::http::json::present")]
    #[schema(value_type = Option<Uuid>)]
    pub parent_id: Option<Option<Uuid>>,
    pub version: i64,
}

fn check_name(name: &str) -> Result<String, ApiError> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 100 {
        return Err(ApiError::invalid("name", "must be 1 to 100 characters"));
    }
    Ok(name.to_owned())
}

async fn fetch(conn: &mut PgConnection, id: Uuid) -> Result<Option<Category>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, name, parent_id, version FROM categories WHERE id = $1 AND archived_at IS NULL",
    )
    .bind(id)
    .fetch_optional(conn)
    .await
}

fn name_taken(e: &sqlx::Error, name: &str) -> bool {
    let taken = violated_constraint(e) == Some("categories_name_key");
    if taken {
        tracing::debug!(%name, "category name taken");
    }
    taken
}

/// Every category (a flat list; build the tree from `parent_id`).
#[utoipa::path(get, path = "/api/v1/categories", tag = "catalog", security(("bearer" = [])),
    responses(
        (status = 200, description = "Categories", body = [Category]),
        (status = 403, description = "Missing permission (`rbac.forbidden`)", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Module disabled (`module.disabled`)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn list(
    State(state): State<AppState>,
    _caller: AuthContext,
) -> Result<Json<Vec<Category>>, ApiError> {
    let categories = sqlx::query_as("SELECT id, name, parent_id, version FROM categories WHERE archived_at IS NULL ORDER BY name, id")
        .fetch_all(state.pool())
        .await?;
    Ok(Json(categories))
}

/// Create a category (audited).
#[utoipa::path(post, path = "/api/v1/categories", tag = "catalog", security(("bearer" = [])), request_body = NewCategory,
    responses(
        (status = 201, description = "Created", body = Category),
        (status = 403, description = "Missing permission (`rbac.forbidden`)", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "A sibling has that name (`category.name_taken`)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid name or unknown parent (`validation.failed`)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn create(
    State(state): State<AppState>,
    caller: AuthContext,
    ApiJson(new): ApiJson<NewCategory>,
) -> Result<(StatusCode, Json<Category>), ApiError> {
    let name = check_name(&new.name)?;
    let mut tx = AuditedTx::begin(state.pool(), Actor::user(&caller), state.clock().now()).await?;
    if let Some(parent) = new.parent_id
        && fetch(&mut tx, parent).await?.is_none()
    {
        return Err(ApiError::invalid("parent_id", "is not a category"));
    }
    let category = Category {
        id: new_id(),
        name,
        parent_id: new.parent_id,
        version: 1,
    };
    let inserted = sqlx::query("INSERT INTO categories (id, name, parent_id) VALUES ($1, $2, $3)")
        .bind(category.id)
        .bind(&category.name)
        .bind(category.parent_id)
        .execute(&mut *tx)
        .await;
    if let Err(e) = inserted {
        return Err(if name_taken(&e, &category.name) {
            ApiError::Conflict {
                code: "category.name_taken",
                detail: format!("A sibling category is named `{}` already.", category.name),
            }
        } else {
            e.into()
        });
    }
    let after = json!({"name": category.name, "parent_id": category.parent_id});
    tx.record(Change::new(MODULE, "category", category.id, "category.create").after(after))
        .await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(category)))
}

/// Rename or move a category. A stale `version` is refused; so is a move under its own subtree.
#[utoipa::path(patch, path = "/api/v1/categories/{id}", tag = "catalog", security(("bearer" = [])), request_body = CategoryPatch,
    params(("id" = Uuid, Path, description = "Category id")),
    responses(
        (status = 200, description = "Updated", body = Category),
        (status = 403, description = "Missing permission (`rbac.forbidden`)", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such category (`category.not_found`)", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Stale version (`conflict.version_mismatch`) or name taken (`category.name_taken`)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid name, unknown parent or a cycle (`validation.failed`)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn update(
    State(state): State<AppState>,
    caller: AuthContext,
    Path(id): Path<Uuid>,
    ApiJson(patch): ApiJson<CategoryPatch>,
) -> Result<Json<Category>, ApiError> {
    let name = patch.name.as_deref().map(check_name).transpose()?;
    let mut tx = AuditedTx::begin(state.pool(), Actor::user(&caller), state.clock().now()).await?;
    // Serialise moves: two concurrent moves could each be acyclic alone and form a cycle together.
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext('management.catalog.categories'))")
        .execute(&mut *tx)
        .await?;
    let before = fetch(&mut tx, id)
        .await?
        .ok_or_else(|| ApiError::NotFound {
            code: "category.not_found",
            detail: format!("No category with id {id}."),
        })?;
    if before.version != patch.version {
        return Err(ApiError::version_mismatch(
            "category",
            before.version,
            patch.version,
        ));
    }
    let parent = patch.parent_id.unwrap_or(before.parent_id);
    if let Some(parent) = parent {
        if fetch(&mut tx, parent).await?.is_none() {
            return Err(ApiError::invalid("parent_id", "is not a category"));
        }
        let ancestors: Vec<Uuid> = sqlx::query_scalar(
            "WITH RECURSIVE up(id, parent_id) AS (SELECT id, parent_id FROM categories WHERE id = $1 \
             UNION ALL SELECT c.id, c.parent_id FROM categories c JOIN up ON c.id = up.parent_id) SELECT id FROM up",
        )
        .bind(parent)
        .fetch_all(&mut *tx)
        .await?;
        if ancestors.contains(&id) {
            return Err(ApiError::invalid(
                "parent_id",
                "would put the category inside itself",
            ));
        }
    }
    let after = Category {
        id,
        name: name.unwrap_or_else(|| before.name.clone()),
        parent_id: parent,
        version: before.version + 1,
    };
    let updated = sqlx::query("UPDATE categories SET name = $2, parent_id = $3, version = version + 1, updated_at = now() WHERE id = $1")
        .bind(id)
        .bind(&after.name)
        .bind(after.parent_id)
        .execute(&mut *tx)
        .await;
    if let Err(e) = updated {
        return Err(if name_taken(&e, &after.name) {
            ApiError::Conflict {
                code: "category.name_taken",
                detail: format!("A sibling category is named `{}` already.", after.name),
            }
        } else {
            e.into()
        });
    }
    let change = Change::new(MODULE, "category", id, "category.update")
        .before(json!({"name": before.name, "parent_id": before.parent_id}))
        .after(json!({"name": after.name, "parent_id": after.parent_id}));
    tx.record(change).await?;
    tx.commit().await?;
    Ok(Json(after))
}
