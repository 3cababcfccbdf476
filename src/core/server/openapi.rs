//! The OpenAPI 3.1 document (generated from the handlers by utoipa), `/api/v1/openapi.json`,
//! and the browsable docs at `/docs` (Swagger UI vendored into the binary: no CDN, works offline).

use axum::Json;
use axum::Router;
use axum::extract::State;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use utoipa_swagger_ui::SwaggerUi;

use crate::core::auth::access::{Access, declare};
use crate::core::http::problem::{FieldError, Problem};
use crate::core::modules::Registry;
use crate::core::state::AppState;
use crate::core::{
    audit, auth, backup, health, jobs, live, metrics, modules, rbac, security, setup, version,
};

/// Where the document is served.
pub const DOCUMENT_PATH: &str = "/api/v1/openapi.json";

#[derive(OpenApi)]
#[openapi(
    info(
        title = "3PlugPOS server API",
        description = "Point-of-sale backend API. Every error is an RFC 9457 problem document \
                       (`application/problem+json`) with a stable `code` and the `request_id`."
    ),
    components(schemas(Problem, FieldError)),
    modifiers(&BearerAuth),
    tags(
        (name = "health", description = "Liveness, readiness and metrics"),
        (name = "setup", description = "First-run setup"),
        (name = "auth", description = "Login, tokens, sessions"),
        (name = "rbac", description = "Users, roles and permissions"),
        (name = "security", description = "Security events"),
        (name = "audit", description = "The tamper-evident audit log"),
        (name = "modules", description = "The module registry"),
        (name = "jobs", description = "Background jobs and schedules"),
        (name = "backups", description = "Encrypted, verified backups and the guided restore"),
        (name = "meta", description = "The API description itself"),
    )
)]
struct ApiDoc;

/// Declares the `bearer` security scheme that authenticated operations refer to.
struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
    }
}

/// Every documented route of core: each capability's own `routes()`, and the service routes
/// (metrics, version, this document); `app()` adds the docs UI and the fallback.
pub fn router() -> OpenApiRouter<AppState> {
    use Access::{Public, SelfService};
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(declare(Public, routes!(metrics::scrape)))
        .routes(declare(SelfService, routes!(version::version)))
        .routes(declare(Public, routes!(document_json)))
        .merge(health::routes())
        .merge(setup::http::routes())
        .merge(auth::http::routes())
        .merge(audit::http::routes())
        .merge(modules::http::routes())
        .merge(live::ws::routes())
        .merge(rbac::routes())
        .merge(security::http::routes())
        .merge(jobs::http::routes())
        .merge(backup::http::routes())
}

/// Core's routes and the registered modules' routes.
pub fn full_router(registry: &Registry) -> OpenApiRouter<AppState> {
    router().merge(registry.router())
}

/// The OpenAPI document of core and the registered modules.
pub fn document(registry: &Registry) -> utoipa::openapi::OpenApi {
    full_router(registry).split_for_parts().1
}

/// The Swagger UI at `/docs`, reading the document from [`DOCUMENT_PATH`].
pub fn docs() -> Router<AppState> {
    SwaggerUi::new("/docs")
        .config(utoipa_swagger_ui::Config::new([DOCUMENT_PATH]))
        .into()
}

/// This API's OpenAPI 3.1 description.
#[utoipa::path(
    get,
    path = "/api/v1/openapi.json",
    tag = "meta",
    responses(
        (status = 200, description = "The OpenAPI document", body = Object),
        (status = 500, description = "Internal error", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn document_json(State(state): State<AppState>) -> Json<utoipa::openapi::OpenApi> {
    Json(document_of(&state).0.clone())
}

/// The document of core and the state's modules, built once per state.
struct Document(utoipa::openapi::OpenApi);

fn document_of(state: &AppState) -> std::sync::Arc<Document> {
    state.service(|state| Document(document(state.registry())))
}
