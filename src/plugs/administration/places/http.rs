//! `/api/v1/branches`, `/api/v1/locations`, `/api/v1/registers`.

use axum::Json;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::json;
use utoipa::ToSchema;
use uuid::Uuid;

use super::MODULE;
use super::store::{self, Kind, Place};
use crate::core::audit::{Actor, AuditedTx, Change};
use crate::core::auth::context::AuthContext;
use crate::core::db::violated_constraint;
use crate::core::http::problem::Problem;
use crate::core::http::{ApiError, ApiJson, Page, PageQuery, keyset_page};
use crate::core::state::AppState;
use crate::shared::ids::new_id;

/// A new branch, location or register.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewPlace {
    /// 1 to 200 characters, not only spaces.
    #[schema(min_length = 1, max_length = 200)]
    pub name: String,
    /// Required for locations and registers.
    pub branch_id: Option<Uuid>,
    /// Required for registers.
    pub location_id: Option<Uuid>,
    /// Registers: 1 to 12 capital letters or digits, unique; the next free `R<n>` when absent.
    pub code: Option<String>,
}

/// A register's receipt prefix: 1 to 12 capital letters or digits.
fn register_code(code: Option<&str>) -> Result<Option<String>, ApiError> {
    match code.map(str::trim) {
        Some(code)
            if code.is_empty()
                || code.len() > 12
                || !code
                    .bytes()
                    .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit()) =>
        {
            Err(ApiError::invalid(
                "code",
                "must be 1 to 12 capital letters or digits",
            ))
        }
        other => Ok(other.map(str::to_owned)),
    }
}

/// The refusal a violated constraint of a place's table means to the caller.
fn refusal(e: sqlx::Error, kind: Kind, name: &str) -> ApiError {
    match violated_constraint(&e).unwrap_or_default() {
        "registers_code_key" => ApiError::Conflict {
            code: "place.code_taken",
            detail: "Another register has this code.".to_owned(),
        },
        c if c.ends_with("_name_key") => ApiError::Conflict {
            code: "place.name_taken",
            detail: format!("A {} named `{name}` exists already.", kind.entity()),
        },
        c if c.ends_with("_branch_id_fkey") => ApiError::invalid("branch_id", "is not a branch"),
        _ => e.into(),
    }
}

async fn create(
    state: &AppState,
    caller: &AuthContext,
    kind: Kind,
    new: NewPlace,
) -> Result<(StatusCode, Json<Place>), ApiError> {
    let name = new.name.trim().to_owned();
    if name.is_empty() || new.name.chars().count() > 200 {
        return Err(ApiError::invalid("name", "must be 1 to 200 characters"));
    }
    let mut tx = AuditedTx::begin(state.pool(), Actor::user(caller), state.clock().now()).await?;
    let id = new_id();
    let result = match kind {
        Kind::Branch => store::insert_branch(&mut tx, id, &name).await,
        Kind::Location => {
            let branch = new
                .branch_id
                .ok_or_else(|| ApiError::invalid("branch_id", "is required"))?;
            store::insert_location(&mut tx, id, branch, &name).await
        }
        Kind::Register => {
            let location = new
                .location_id
                .ok_or_else(|| ApiError::invalid("location_id", "is required"))?;
            let branch = store::branch_of_location(&mut tx, location)
                .await?
                .ok_or_else(|| ApiError::invalid("location_id", "is not a location"))?;
            let code = register_code(new.code.as_deref())?;
            store::insert_register(&mut tx, id, branch, location, &name, code.as_deref()).await
        }
    };
    result.map_err(|e| refusal(e, kind, &name))?;
    let place = store::get(&mut tx, kind, id)
        .await?
        .ok_or_else(|| ApiError::Internal(anyhow::anyhow!("created {} vanished", kind.entity())))?;
    let after = json!({"name": place.name, "branch_id": place.branch_id, "location_id": place.location_id, "code": place.code});
    tx.record(Change::new(MODULE, kind.entity(), id, kind.action()).after(after))
        .await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(place)))
}

macro_rules! place_routes {
    ($list:ident, $create:ident, $path:literal, $kind:expr, $what:literal) => {
        #[doc = concat!("List ", $what, ".")]
        #[utoipa::path(get, path = $path, tag = "places", security(("bearer" = [])), params(PageQuery),
            responses(
                (status = 200, description = "A page of them, by name", body = Page<Place>),
                (status = 422, description = "Bad limit or cursor (`validation.failed`)", body = Problem, content_type = "application/problem+json"),
                (status = 403, description = "Missing permission (`rbac.forbidden`)", body = Problem, content_type = "application/problem+json"),
                (status = 404, description = "Module disabled (`module.disabled`)", body = Problem, content_type = "application/problem+json"),
            ))]
        pub async fn $list(State(state): State<AppState>, _caller: AuthContext, Query(query): Query<PageQuery>) -> Result<Json<Page<Place>>, ApiError> {
            let mut conn = state.pool().acquire().await?;
            let all = store::list(&mut conn, $kind).await?;
            Ok(Json(keyset_page(all, |p| format!("{}\0{}", p.name, p.id), &query)?))
        }

        #[doc = concat!("Create one of the ", $what, " (audited).")]
        #[utoipa::path(post, path = $path, tag = "places", security(("bearer" = [])), request_body = NewPlace,
            responses(
                (status = 201, description = "Created", body = Place),
                (status = 403, description = "Missing permission (`rbac.forbidden`)", body = Problem, content_type = "application/problem+json"),
                (status = 404, description = "Module disabled (`module.disabled`)", body = Problem, content_type = "application/problem+json"),
                (status = 409, description = "Name taken (`place.name_taken`)", body = Problem, content_type = "application/problem+json"),
                (status = 422, description = "Invalid fields (`validation.failed`)", body = Problem, content_type = "application/problem+json"),
            ))]
        pub async fn $create(State(state): State<AppState>, caller: AuthContext, ApiJson(new): ApiJson<NewPlace>) -> Result<(StatusCode, Json<Place>), ApiError> {
            create(&state, &caller, $kind, new).await
        }
    };
}

place_routes!(
    list_branches,
    create_branch,
    "/api/v1/branches",
    Kind::Branch,
    "branches"
);
place_routes!(
    list_locations,
    create_location,
    "/api/v1/locations",
    Kind::Location,
    "locations"
);
place_routes!(
    list_registers,
    create_register,
    "/api/v1/registers",
    Kind::Register,
    "registers"
);
