//! `GET /api/v1/setup/status` and `POST /api/v1/setup`.

use axum::Json;
use axum::extract::{FromRequest, Request, State};
use axum::http::StatusCode;
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::core::audit::checkpoint;
use crate::core::http::problem::Problem;
use crate::core::http::{ApiError, ApiJson};
use crate::core::setup::{self, SetupError, SetupInput, token};
use crate::core::state::AppState;

/// Whether first-run setup has happened.
#[derive(Debug, Serialize, ToSchema)]
pub struct SetupStatus {
    pub initialized: bool,
}

/// The first-run setup request.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetupRequest {
    /// The contents of `<data_dir>/setup-token`.
    pub setup_token: String,
    pub business: BusinessInput,
    pub admin: AdminInput,
}

/// The business being set up.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BusinessInput {
    #[schema(example = "Corner Shop")]
    pub name: String,
    /// ISO 4217 code.
    #[schema(example = "EUR")]
    pub currency: String,
    /// IANA time zone.
    #[schema(example = "Europe/Berlin")]
    pub timezone: String,
}

/// The first super admin.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AdminInput {
    #[schema(example = "admin")]
    pub username: String,
    /// At least 10 characters, not a common password, not containing the username.
    #[schema(value_type = String, format = Password)]
    pub password: SecretString,
}

/// What setup created.
#[derive(Debug, Serialize, ToSchema)]
pub struct SetupCreated {
    pub business: BusinessCreated,
    pub admin: AdminCreated,
    /// The default branch, location and register (the places module's seed).
    pub branch_id: Uuid,
    pub location_id: Uuid,
    pub register_id: Uuid,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct BusinessCreated {
    pub name: String,
    pub currency: String,
    pub timezone: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AdminCreated {
    pub id: Uuid,
    pub username: String,
    pub roles: Vec<String>,
}

/// Has this instance been set up?
#[utoipa::path(
    get,
    path = "/api/v1/setup/status",
    tag = "setup",
    responses(
        (status = 200, description = "Setup state", body = SetupStatus),
        (status = 503, description = "The database is unavailable", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn status(State(state): State<AppState>) -> Result<Json<SetupStatus>, ApiError> {
    let initialized = setup::is_initialized(state.pool()).await?;
    Ok(Json(SetupStatus { initialized }))
}

/// First-run setup: creates the business, its defaults, the built-in roles and the super admin.
#[utoipa::path(
    post,
    path = "/api/v1/setup",
    tag = "setup",
    request_body = SetupRequest,
    responses(
        (status = 201, description = "The instance is set up", body = SetupCreated),
        (status = 400, description = "Malformed JSON (`request.malformed_json`)", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Wrong setup token (`setup.invalid_token`)", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Already set up (`setup.already_done`)", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Body is not JSON (`request.unsupported_media_type`)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid fields (`validation.failed`)", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn run(
    State(state): State<AppState>,
    request: Request,
) -> Result<(StatusCode, Json<SetupCreated>), ApiError> {
    let _guard = state.setup_lock().lock().await;
    // "Already set up" comes before anything about the body: setup runs once, whatever is sent.
    if setup::is_initialized(state.pool()).await? {
        return Err(ApiError::SetupAlreadyDone);
    }
    let ApiJson(request) = ApiJson::<SetupRequest>::from_request(request, &state).await?;
    if !token::matches(state.data_dir(), &request.setup_token) {
        tracing::warn!("setup refused: wrong setup token");
        return Err(ApiError::SetupInvalidToken);
    }
    let input = SetupInput {
        business_name: request.business.name,
        currency: request.business.currency,
        timezone: request.business.timezone,
        admin_username: request.admin.username,
        admin_password: request.admin.password,
    };
    let outcome = setup::run(state.pool(), state.registry(), input, state.clock().now())
        .await
        .map_err(|e| match e {
            SetupError::AlreadyDone => ApiError::SetupAlreadyDone,
            SetupError::Invalid(errors) => ApiError::Validation(errors),
            SetupError::Failed(cause) => ApiError::Internal(cause),
        })?;
    state.mark_initialized();
    token::remove(state.data_dir());
    // The key that signs audit checkpoints is born with the business.
    checkpoint::load_or_create_key(&state.data_dir().keys())?;
    // So is the key that decrypts its backups.
    crate::core::backup::key::ensure(&state.data_dir().keys(), state.clock().now())?;
    let (branch_id, location_id, register_id) = (
        seeded(&outcome, "branch_id")?,
        seeded(&outcome, "location_id")?,
        seeded(&outcome, "register_id")?,
    );
    let created = SetupCreated {
        business: BusinessCreated {
            name: outcome.business_name,
            currency: outcome.currency,
            timezone: outcome.timezone,
        },
        admin: AdminCreated {
            id: outcome.admin_id,
            username: outcome.admin_username,
            roles: vec!["super_admin".to_owned()],
        },
        branch_id,
        location_id,
        register_id,
    };
    Ok((StatusCode::CREATED, Json(created)))
}

/// The id of a default that a module's seed created (the places module's are part of the answer).
fn seeded(outcome: &setup::SetupOutcome, name: &str) -> Result<Uuid, ApiError> {
    outcome.seeded.get(name).copied().ok_or_else(|| {
        ApiError::Internal(anyhow::anyhow!(
            "setup ran, but no module's seed created its {name}"
        ))
    })
}

/// First-run setup, each with its access rule (assembled by the server with the other capabilities').
pub fn routes() -> utoipa_axum::router::OpenApiRouter<crate::core::state::AppState> {
    use crate::core::auth::access::Access::Public;
    use crate::core::auth::access::declare;
    use utoipa_axum::routes;
    utoipa_axum::router::OpenApiRouter::new()
        .routes(declare(Public, routes!(status)))
        .routes(declare(Public, routes!(run)))
}
