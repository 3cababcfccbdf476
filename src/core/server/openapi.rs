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
    audit, auth, backup, devices, health, integrations, jobs, live, metrics, modules, rbac,
    security, settings, setup, support, sync, version, webhooks,
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
        (name = "system", description = "Diagnostics: the support bundle"),
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
        .merge(settings::http::routes())
        .merge(support::http::routes())
        .merge(devices::http::routes())
        .merge(sync::http::routes())
        .merge(integrations::http::routes())
        .merge(webhooks::http::routes())
}

/// Core's routes and the registered modules' routes.
pub fn full_router(registry: &Registry) -> OpenApiRouter<AppState> {
    router().merge(registry.router())
}

/// The OpenAPI document of core and the registered modules.
pub fn document(registry: &Registry) -> utoipa::openapi::OpenApi {
    let mut document = full_router(registry).split_for_parts().1;
    declare_common_responses(&mut document);
    if let Ok(declared) = super::assemble::declared_settings(registry) {
        settings::http::describe(&mut document, &declared);
    }
    document
}

/// Adds to every operation the answers the server's layers give whatever the handler (each a
/// problem document), so a generated client knows every status it can meet:
/// 400 for an unreadable path or query (and unreadable JSON), 413 and 415 for a body too large
/// or not JSON, 422 for parameters or a body that break a rule, 401 without a valid token, 403
/// without the permission, 429 for unauthenticated writes over the per-address limit, 408 for
/// a request over the time limit, 500 and 503 (the database unreachable, maintenance, setup
/// not run). An operation's own description of a status is kept.
fn declare_common_responses(document: &mut utoipa::openapi::OpenApi) {
    use utoipa::openapi::RefOr;
    use utoipa::openapi::path::ParameterIn;
    for (path, item) in document.paths.paths.iter_mut() {
        let is_api = path.starts_with("/api/v1/") && path != DOCUMENT_PATH;
        let operations = [
            (&mut item.get, false),
            (&mut item.put, true),
            (&mut item.post, true),
            (&mut item.delete, true),
            (&mut item.patch, true),
        ];
        for (operation, writes) in operations {
            let Some(operation) = operation.as_mut() else {
                continue;
            };
            let params = operation.parameters.as_deref().unwrap_or_default();
            let located = |place: ParameterIn| {
                params
                    .iter()
                    .any(|p| matches!(p, RefOr::T(p) if p.parameter_in == place))
            };
            let (has_query, has_path) = (located(ParameterIn::Query), located(ParameterIn::Path));
            let has_body = operation.request_body.is_some();
            let access = operation
                .extensions
                .as_ref()
                .and_then(|e| e.get(crate::core::auth::access::EXTENSION))
                .and_then(|v| v.as_str())
                .unwrap_or("public")
                .to_owned();
            let mut add: Vec<(&str, &str)> = vec![
                (
                    "408",
                    "The request took longer than the server allows (`request.timeout`)",
                ),
                (
                    "500",
                    "Internal error (`internal`): the log under the same request id says why",
                ),
            ];
            if is_api {
                add.push((
                    "503",
                    "Unavailable: the database (`service.unavailable`), a restore in progress (`maintenance`) or setup not run (`setup.required`)",
                ));
            }
            if has_query || has_path || has_body {
                add.push(("400", "An unreadable path, query string or JSON body"));
            }
            if has_query || has_body {
                add.push((
                    "422",
                    "A parameter or field breaks a rule (`validation.failed`, naming it)",
                ));
            }
            if has_body {
                add.push((
                    "413",
                    "The body is larger than the server accepts (`request.too_large`)",
                ));
                add.push((
                    "415",
                    "The body is not sent as JSON (`request.unsupported_media_type`)",
                ));
            }
            if access != "public" {
                add.push(("401", "No valid access token (`auth.unauthenticated`, `auth.invalid_token`, `auth.session_ended`)"));
            }
            if access != "public" && access != "authenticated" {
                add.push(("403", "Missing permission (`rbac.forbidden`)"));
            }
            if access == "public" && writes {
                add.push((
                    "429",
                    "Too many requests without a login from this address (`rate_limited`)",
                ));
            }
            for (status, description) in add {
                operation
                    .responses
                    .responses
                    .entry(status.to_owned())
                    .or_insert_with(|| RefOr::T(problem_response(description)));
            }
        }
    }
}

fn problem_response(description: &str) -> utoipa::openapi::Response {
    use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
    ResponseBuilder::new()
        .description(description)
        .content(
            crate::core::http::problem::PROBLEM_JSON,
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("Problem")))
                .build(),
        )
        .build()
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
