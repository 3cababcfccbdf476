//! `/api/v1/categories`: the category tree (no cycles).

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::json;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::core::audit::{Actor, AuditedTx, Change};
use crate::core::auth::context::AuthContext;
use crate::core::db::violated_constraint;
use crate::core::http::problem::Problem;
use crate::core::http::{ApiError, ApiJson, Page, PageQuery, keyset_page};
use crate::core::state::AppState;
use crate::plugs::management::catalog::MODULE;
use crate::plugs::management::catalog::store::categories::{self as store, Category};
use crate::shared::ids::new_id;

/// A new category.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewCategory {
    /// 1 to 100 characters, not only spaces.
    #[schema(min_length = 1, max_length = 100)]
    pub name: String,
    pub parent_id: Option<Uuid>,
}

/// Changes to a category; `version` must be the current one.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CategoryPatch {
    /// 1 to 100 characters, not only spaces.
    #[schema(min_length = 1, max_length = 100)]
    pub name: Option<String>,
    /// A new parent; `null` moves the category to the top level; absent keeps it.
    #[serde(default, deserialize_with = "crate::core::http::json::present")]
    #[schema(value_type = Option<Uuid>)]
    pub parent_id: Option<Option<Uuid>>,
    pub version: i64,
}

fn check_name(raw: &str) -> Result<String, ApiError> {
    let name = raw.trim();
    if name.is_empty() || raw.chars().count() > 100 {
        return Err(ApiError::invalid("name", "must be 1 to 100 characters"));
    }
    Ok(name.to_owned())
}

fn name_taken(e: &sqlx::Error, name: &str) -> bool {
    let taken = violated_constraint(e) == Some("categories_name_key");
    if taken {
        tracing::debug!(%name, "category name taken");
    }
    taken
}

/// Every category (a flat list; build the tree from `parent_id`).
#[utoipa::path(get, path = "/api/v1/categories", tag = "catalog", security(("bearer" = [])), params(PageQuery),
    responses(
        (status = 200, description = "A page of categories, by name", body = Page<Category>),
        (status = 422, description = "Bad limit or cursor (`validation.failed`)", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Missing permission (`rbac.forbidden`)", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Module disabled (`module.disabled`)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn list(
    State(state): State<AppState>,
    _caller: AuthContext,
    Query(query): Query<PageQuery>,
) -> Result<Json<Page<Category>>, ApiError> {
    let mut conn = state.pool().acquire().await?;
    let categories = store::list(&mut conn).await?;
    Ok(Json(keyset_page(
        categories,
        |c| format!("{}\0{}", c.name, c.id),
        &query,
    )?))
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
        && store::get(&mut tx, parent).await?.is_none()
    {
        return Err(ApiError::invalid("parent_id", "is not a category"));
    }
    let category = Category {
        id: new_id(),
        name,
        parent_id: new.parent_id,
        version: 1,
    };
    let inserted = store::insert(&mut tx, &category).await;
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
    store::lock_tree(&mut tx).await?;
    let before = store::get(&mut tx, id)
        .await?
        .ok_or_else(|| ApiError::NotFound {
            code: "category.not_found",
            detail: format!("No category with id {id}."),
        })?;
    ApiError::check_version("category", before.version, patch.version)?;
    let parent = patch.parent_id.unwrap_or(before.parent_id);
    if let Some(parent) = parent {
        if store::get(&mut tx, parent).await?.is_none() {
            return Err(ApiError::invalid("parent_id", "is not a category"));
        }
        let ancestors = store::ancestors(&mut tx, parent).await?;
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
    let updated = store::update(&mut tx, &after).await;
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
