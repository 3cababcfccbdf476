//! `/api/v1/branches`, `/api/v1/locations`, `/api/v1/registers`.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::json;
use sqlx::PgConnection;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::core::audit::{Actor, AuditedTx, Change};
use crate::core::auth::context::AuthContext;
use crate::core::http::problem::Problem;
use crate::core::http::{ApiError, ApiJson};
use crate::core::state::AppState;
use crate::shared::ids::new_id;

const MODULE: &str = "administration.places";

/// A branch, location or register.
#[derive(Debug, Serialize, ToSchema, sqlx::FromRow)]
pub struct Place {
    pub id: Uuid,
    pub name: String,
    /// The branch (locations and registers).
    pub branch_id: Option<Uuid>,
    /// The location (registers: where their sales take stock from).
    pub location_id: Option<Uuid>,
    /// Registers: the short code that starts their receipt numbers (`R1`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    pub version: i64,
}

/// A new branch, location or register.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewPlace {
    pub name: String,
    /// Required for locations and registers.
    pub branch_id: Option<Uuid>,
    /// Required for registers.
    pub location_id: Option<Uuid>,
    /// Registers: 1 to 12 capital letters or digits, unique; the next free `R<n>` when absent.
    pub code: Option<String>,
}

#[derive(Clone, Copy)]
enum Kind {
    Branch,
    Location,
    Register,
}

impl Kind {
    fn entity(self) -> &'static str {
        match self {
            Kind::Branch => "branch",
            Kind::Location => "location",
            Kind::Register => "register",
        }
    }

    fn action(self) -> &'static str {
        match self {
            Kind::Branch => "branch.create",
            Kind::Location => "location.create",
            Kind::Register => "register.create",
        }
    }
}

async fn list(conn: &mut PgConnection, kind: Kind) -> Result<Vec<Place>, sqlx::Error> {
    let sql = match kind {
        Kind::Branch => {
            "SELECT id, name, NULL::uuid AS branch_id, NULL::uuid AS location_id, NULL::text AS code, version FROM branches WHERE deleted_at IS NULL ORDER BY name"
        }
        Kind::Location => {
            "SELECT id, name, branch_id, NULL::uuid AS location_id, NULL::text AS code, version FROM locations WHERE deleted_at IS NULL ORDER BY name"
        }
        Kind::Register => {
            "SELECT id, name, branch_id, location_id, code, version FROM registers WHERE deleted_at IS NULL ORDER BY name"
        }
    };
    sqlx::query_as(sql).fetch_all(conn).await
}

async fn create(
    state: &AppState,
    caller: &AuthContext,
    kind: Kind,
    new: NewPlace,
) -> Result<(StatusCode, Json<Place>), ApiError> {
    let name = new.name.trim().to_owned();
    if name.is_empty() || name.chars().count() > 200 {
        return Err(ApiError::invalid("name", "must be 1 to 200 characters"));
    }
    let mut tx = AuditedTx::begin(state.pool(), Actor::user(caller), state.clock().now()).await?;
    let id = new_id();
    let result = match kind {
        Kind::Branch => {
            sqlx::query("INSERT INTO branches (id, name) VALUES ($1, $2)")
                .bind(id)
                .bind(&name)
                .execute(&mut *tx)
                .await
        }
        Kind::Location => {
            let branch = new
                .branch_id
                .ok_or_else(|| ApiError::invalid("branch_id", "is required"))?;
            sqlx::query("INSERT INTO locations (id, branch_id, name) VALUES ($1, $2, $3)")
                .bind(id)
                .bind(branch)
                .bind(&name)
                .execute(&mut *tx)
                .await
        }
        Kind::Register => {
            let location = new
                .location_id
                .ok_or_else(|| ApiError::invalid("location_id", "is required"))?;
            let branch: Option<Uuid> = sqlx::query_scalar(
                "SELECT branch_id FROM locations WHERE id = $1 AND deleted_at IS NULL",
            )
            .bind(location)
            .fetch_optional(&mut *tx)
            .await?;
            let branch =
                branch.ok_or_else(|| ApiError::invalid("location_id", "is not a location"))?;
            let code = match new.code.as_deref().map(str::trim) {
                Some(code)
                    if code.is_empty()
                        || code.len() > 12
                        || !code
                            .bytes()
                            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit()) =>
                {
                    return Err(ApiError::invalid(
                        "code",
                        "must be 1 to 12 capital letters or digits",
                    ));
                }
                other => other.map(str::to_owned),
            };
            sqlx::query(
                "INSERT INTO registers (id, branch_id, location_id, name, code) \
                 VALUES ($1, $2, $3, $4, COALESCE($5, 'R' || nextval('register_code_seq')))",
            )
            .bind(id)
            .bind(branch)
            .bind(location)
            .bind(&name)
            .bind(code)
            .execute(&mut *tx)
            .await
        }
    };
    if let Err(e) = result {
        let constraint = e
            .as_database_error()
            .and_then(|d| d.constraint())
            .unwrap_or_default()
            .to_owned();
        return Err(match constraint.as_str() {
            "registers_code_key" => ApiError::Conflict {
                code: "place.code_taken",
                detail: "Another register has this code.".to_owned(),
            },
            c if c.ends_with("_name_key") => ApiError::Conflict {
                code: "place.name_taken",
                detail: format!("A {} named `{name}` exists already.", kind.entity()),
            },
            c if c.ends_with("_branch_id_fkey") => {
                ApiError::invalid("branch_id", "is not a branch")
            }
            _ => e.into(),
        });
    }
    let place = list(&mut tx, kind)
        .await?
        .into_iter()
        .find(|p| p.id == id)
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
        #[utoipa::path(get, path = $path, tag = "places", security(("bearer" = [])),
            responses(
                (status = 200, description = "The list", body = [Place]),
                (status = 403, description = "Missing permission (`rbac.forbidden`)", body = Problem, content_type = "application/problem+json"),
                (status = 404, description = "Module disabled (`module.disabled`)", body = Problem, content_type = "application/problem+json"),
            ))]
        pub async fn $list(State(state): State<AppState>, _caller: AuthContext) -> Result<Json<Vec<Place>>, ApiError> {
            let mut conn = state.pool().acquire().await?;
            Ok(Json(list(&mut conn, $kind).await?))
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
