//! `app(state)`: the whole HTTP application (tests drive it in-process; `serve` binds it to a
//! socket): every capability's and module's routes, the middleware, the docs and the fallback.

use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::timeout::TimeoutLayer;

use crate::core::http::problem::Problem;
use crate::core::server::{middleware, openapi};
use crate::core::state::AppState;

/// The whole HTTP application: health, metrics, `/api/v1`, the OpenAPI document and `/docs`.
pub fn app(state: AppState) -> Router {
    // Installed before the first request, so no request goes uncounted.
    crate::core::metrics::handle();
    let (routes, _api) = openapi::full_router(state.registry()).split_for_parts();
    // The admin console's requests go through the API's own routes (their guards and handlers).
    let console_api = crate::core::console::ApiRouter(
        routes
            .clone()
            .layer(DefaultBodyLimit::max(state.config().http.body_limit_bytes))
            .layer(axum::Extension(state.clone()))
            .with_state(state.clone()),
    );
    let http = &state.config().http;
    let layers = ServiceBuilder::new()
        .layer(axum::middleware::from_fn(middleware::request_context))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            middleware::forget_cached_after_writes,
        ))
        .layer(CatchPanicLayer::new())
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            Duration::from_secs(http.request_timeout_secs),
        ))
        .layer(DefaultBodyLimit::max(http.body_limit_bytes));
    let app = routes
        .merge(openapi::docs())
        .merge(crate::core::console::routes(console_api))
        .fallback(not_found)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            middleware::setup_gate,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            middleware::maintenance_gate,
        ))
        // Route guards (core::auth::access) find the state here.
        .layer(axum::Extension(state.clone()))
        .layer(layers);
    // Served over TLS: browsers are told to come back only over HTTPS (a year).
    let app = if http.tls.cert.is_some() {
        app.layer(axum::middleware::from_fn(middleware::strict_transport))
    } else {
        app
    };
    let origins = &http.cors.allowed_origins;
    let app = if origins.is_empty() {
        app
    } else {
        // Outermost: a preflight is answered before authentication (it carries no token).
        app.layer(cors(origins))
    };
    app.with_state(state)
}

/// The CORS layer for `origins` (checked by the configuration): the API's methods and the
/// headers its clients send; answers expose what clients read.
fn cors(origins: &[String]) -> tower_http::cors::CorsLayer {
    use axum::http::{HeaderName, HeaderValue, Method, header};
    let origins: Vec<HeaderValue> = origins
        .iter()
        .filter_map(|o| HeaderValue::from_str(o).ok())
        .collect();
    tower_http::cors::CorsLayer::new()
        .allow_origin(origins)
        .allow_methods([
            Method::GET,
            Method::POST,
            Method::PUT,
            Method::PATCH,
            Method::DELETE,
        ])
        .allow_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            header::IF_MATCH,
            HeaderName::from_static("idempotency-key"),
            HeaderName::from_static("x-request-id"),
        ])
        .expose_headers([
            header::CONTENT_DISPOSITION,
            header::RETRY_AFTER,
            HeaderName::from_static("x-request-id"),
            HeaderName::from_static("idempotent-replayed"),
        ])
        .max_age(Duration::from_secs(600))
}

async fn not_found() -> impl IntoResponse {
    Problem::for_status(StatusCode::NOT_FOUND)
}
