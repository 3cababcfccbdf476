//! The layers every request passes: request context (id, span, log, metrics), problem
//! documents for bare error statuses, security headers, forgetting cached rows after writes,
//! and the setup and maintenance gates.

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderName, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tracing::Instrument;

use crate::core::db::changes::KeepsCaches;
use crate::core::http::error::ApiError;
use crate::core::http::problem::{PROBLEM_JSON, Problem};
use crate::core::http::request_id;
use crate::core::state::AppState;

/// Routes that answer while the instance is not set up yet.
const SETUP_EXEMPT: [&str; 3] = [
    "/api/v1/setup",
    "/api/v1/setup/status",
    "/api/v1/openapi.json",
];

/// Gives the request its id and span, logs and measures it, and makes sure every error leaves
/// as a problem document carrying that id.
pub async fn request_context(req: Request, next: Next) -> Response {
    let id = request_id::from_headers(req.headers());
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let method = req.method().clone();
    let span = tracing::info_span!("request", request_id = %id, method = %method, path = %req.uri().path());
    let started = Instant::now();
    let is_docs = req.uri().path().starts_with("/docs");

    // Text with a NUL character cannot be stored (PostgreSQL refuses it): refused here for the
    // path and query, as `ApiJson` refuses it in bodies, rather than failing in the database.
    let nul =
        req.uri().path().contains("%00") || req.uri().query().is_some_and(|q| q.contains("%00"));
    let mut response = request_id::scope(id.clone(), async {
        if nul {
            return ApiError::BadRequest {
                code: "request.nul_character",
                detail: "The URL holds a NUL character (%00), which no text field accepts."
                    .to_owned(),
            }
            .into_response();
        }
        let response = next.run(req).await;
        problem_for_bare_errors(response)
    })
    .instrument(span.clone())
    .await;

    let elapsed = started.elapsed();
    let status = response.status();
    span.in_scope(|| {
        if status.is_server_error() {
            tracing::warn!(
                status = status.as_u16(),
                latency_ms = elapsed.as_millis() as u64,
                "request finished"
            );
        } else {
            tracing::info!(
                status = status.as_u16(),
                latency_ms = elapsed.as_millis() as u64,
                "request finished"
            );
        }
    });
    let labels = [
        ("method", method.to_string()),
        ("route", route),
        ("status", status.as_u16().to_string()),
    ];
    metrics::counter!("http_requests_total", &labels).increment(1);
    metrics::histogram!("http_request_duration_seconds", &labels).record(elapsed.as_secs_f64());

    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(&id) {
        headers.insert(HeaderName::from_static(request_id::HEADER), value);
    }
    set_security_headers(headers, is_docs);
    response
}

/// Turns an error status without a JSON body (routing's 404 and 405, the timeout's 408, a
/// caught panic's 500) into a problem document, keeping headers such as `Allow`.
fn problem_for_bare_errors(response: Response) -> Response {
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    // A handler that answers an error status with JSON on purpose (readiness's 503 lists its
    // checks) keeps its body; only bodies that are not JSON (empty, plain text) are replaced.
    // The admin console's refusals are pages (HTML) saying why (marked `ConsolePage`; its
    // server-error and maintenance pages say only that, never the cause); any other server
    // error never keeps its body, whatever it is.
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| {
            let v = v.as_bytes();
            v.starts_with(PROBLEM_JSON.as_bytes()) || v.starts_with(b"application/json")
        })
        || response
            .extensions()
            .get::<crate::core::console::ConsolePage>()
            .is_some();
    if is_json {
        return response;
    }
    let (parts, _body) = response.into_parts();
    let mut problem = Problem::for_status(status).into_response();
    for (name, value) in &parts.headers {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            problem.headers_mut().insert(name.clone(), value.clone());
        }
    }
    problem
}

/// `Strict-Transport-Security` on every answer (only layered when the server speaks TLS).
pub async fn strict_transport(req: Request, next: Next) -> Response {
    let mut response = next.run(req).await;
    response
        .headers_mut()
        .entry(header::STRICT_TRANSPORT_SECURITY)
        .or_insert(HeaderValue::from_static("max-age=31536000"));
    response
}

fn set_security_headers(headers: &mut axum::http::HeaderMap, is_docs: bool) {
    let csp = if is_docs {
        // The vendored Swagger UI loads its own scripts and styles (and inline styles).
        "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; frame-ancestors 'none'"
    } else {
        "default-src 'none'; frame-ancestors 'none'"
    };
    let pairs = [
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::CONTENT_SECURITY_POLICY, csp),
        (header::CACHE_CONTROL, "no-store"),
    ];
    for (name, value) in pairs {
        headers
            .entry(name)
            .or_insert(HeaderValue::from_static(value));
    }
}

/// Once a request that may have written (any method but `GET`, `HEAD`, `OPTIONS`) has
/// answered, cached rows are forgotten, unless its handler marked the response [`KeepsCaches`]:
/// the caller's next request sees what it changed without waiting for the database's
/// notification (see [`crate::core::db::changes`]). Outside the timeout and panic layers, so a
/// request that committed and then failed forgets too.
pub async fn forget_cached_after_writes(
    State(state): State<AppState>,
    req: Request,
    next: Next,
) -> Response {
    let safe = matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    let anonymous = !req.headers().contains_key(header::AUTHORIZATION);
    let response = next.run(req).await;
    // A refused request changed nothing cached: an anonymous one answered 4xx (a failed login),
    // or any answered 401 or 429. A flood of them must not keep emptying the caches sales use.
    let status = response.status();
    let refused = (anonymous && status.is_client_error())
        || status == StatusCode::UNAUTHORIZED
        || status == StatusCode::TOO_MANY_REQUESTS;
    if !safe && !refused && response.extensions().get::<KeepsCaches>().is_none() {
        state.changes().forget_all();
    }
    response
}

/// While a restore switches databases, every `/api/v1` route except following jobs (and the API
/// description) answers 503 `maintenance`.
pub async fn maintenance_gate(State(state): State<AppState>, req: Request, next: Next) -> Response {
    if let Some(reason) = state.maintenance().reason() {
        let exempt = req.extensions().get::<MatchedPath>().is_none_or(|p| {
            let p = p.as_str();
            // The admin console writes too (sign-ins, "back up now"): closed as the API is.
            let console = p.starts_with("/admin") && !p.starts_with("/admin/static/");
            (!p.starts_with("/api/v1/") && !console)
                || p == "/api/v1/openapi.json"
                || (req.method() == axum::http::Method::GET && p.starts_with("/api/v1/jobs"))
        });
        if !exempt {
            // A console page says so in a page that reloads itself.
            if req.uri().path().starts_with("/admin") {
                return crate::core::console::maintenance_page(&reason.to_string());
            }
            return ApiError::Maintenance(reason).into_response();
        }
    }
    next.run(req).await
}

/// While the instance is not set up, every `/api/v1` route except setup (and the API
/// description) answers 503 `setup.required`.
pub async fn setup_gate(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let guarded = req.extensions().get::<MatchedPath>().is_some_and(|p| {
        let p = p.as_str();
        p.starts_with("/api/v1/") && !SETUP_EXEMPT.contains(&p)
    });
    if guarded && !state.is_initialized().await {
        return ApiError::SetupRequired.into_response();
    }
    next.run(req).await
}
