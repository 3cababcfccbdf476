//! The admin console (`/admin`): server-rendered pages for the people who are not at a till.
//!
//! **Sessions.** Signing in runs the API's own login (`core::auth::login`: the same passwords,
//! second factor, throttling and security events) and opens an ordinary session; the browser gets
//! a cookie (`plugpos_console`: `HttpOnly`, `SameSite=Strict`, `Path=/admin`, `Secure` over TLS)
//! holding a random secret whose SHA-256 binds it to that session (`console_sessions`). Every
//! request checks the session as a bearer token's is checked (ended, expired, password or roles
//! reset, user disabled), so logging out, revoking or disabling takes effect at once.
//!
//! **Forms.** Every form carries the session's CSRF token (made at sign-in, compared in constant
//! time); the sign-in form carries a token of its own, doubled in a short-lived cookie. Both
//! cookies are `SameSite=Strict`, so another site's page cannot send them along either.
//!
//! **Actions** call the API's handlers themselves (the same permissions, checks and audit records):
//! the console is another way to make the same requests, never a second path to the database.
//!
//! **Headers.** Every page is sent with a strict Content-Security-Policy (no script, styles from
//! `/admin/static/` only), `X-Frame-Options: DENY`, `nosniff`, no referrer and no caching.

mod api;
mod pages;
mod screens;
mod setup;

use axum::Router;
use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use secrecy::SecretString;
use serde::Deserialize;
use subtle::ConstantTimeEq;
use uuid::Uuid;

use crate::core::auth::access::limit_public_writes;
use crate::core::auth::context::{AuthContext, Authenticated, RequestOrigin, session_caller};
use crate::core::auth::login;
use crate::core::db::changes::KeepsCaches;
use crate::core::http::ApiError;
use crate::core::state::AppState;
use crate::shared::secret;

/// The session cookie.
const COOKIE: &str = "plugpos_console";
/// The sign-in form's CSRF cookie.
const LOGIN_COOKIE: &str = "plugpos_login";

pub use api::ApiRouter;

/// The console's routes; `api` is the API's router, which the console's requests go through.
pub fn routes(api: ApiRouter) -> Router<AppState> {
    use axum::routing::post;
    Router::new()
        .route("/admin", get(screens::home))
        .route(
            "/admin/login",
            get(login_page)
                .post(sign_in)
                .route_layer(axum::middleware::from_fn(limit_public_writes)),
        )
        .route(
            "/admin/setup",
            get(setup::wizard)
                .post(setup::run)
                .route_layer(axum::middleware::from_fn(limit_public_writes)),
        )
        .route("/admin/logout", post(sign_out))
        .route("/admin/act", post(api::act))
        .route("/admin/file/{*path}", get(api::file))
        .route("/admin/ws", get(live_socket))
        .route("/admin/account", get(screens::account))
        .route("/admin/dashboard", get(screens::dashboard))
        .route("/admin/dashboard/live", get(screens::dashboard_live))
        .route("/admin/users", get(screens::users))
        .route("/admin/users/{id}", get(screens::user))
        .route("/admin/roles/{id}", get(screens::role))
        .route("/admin/devices", get(screens::devices))
        .route("/admin/backups", get(screens::backups))
        .route("/admin/backups/{id}/restore", get(screens::restore))
        .route("/admin/audit", get(screens::audit))
        .route("/admin/closings", get(screens::closings))
        .route("/admin/reports", get(screens::reports))
        .route("/admin/reports/{id}", get(screens::report))
        .route("/admin/security", get(screens::security))
        .route("/admin/support", get(screens::support))
        .route("/admin/settings", get(screens::settings))
        .route("/admin/static/admin.css", get(stylesheet))
        .route("/admin/static/live.js", get(live_script))
        .layer(axum::middleware::from_fn(refuse_cross_site))
        .layer(axum::middleware::map_response(secure_headers))
        .layer(axum::Extension(api))
}

/// Marks a console page answered with an error status: the server keeps its HTML body (other
/// error bodies become problem documents).
#[derive(Debug, Clone, Copy)]
pub struct ConsolePage;

/// Refuses a form posted from another site (the browser says so in `Sec-Fetch-Site`), before
/// anything else: the session's CSRF token is the main guard, this one needs no state.
async fn refuse_cross_site(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let cross = req.method() != axum::http::Method::GET
        && req
            .headers()
            .get("sec-fetch-site")
            .is_some_and(|v| v.as_bytes() != b"same-origin");
    if cross {
        return Forbidden("This form did not come from this console.").into_response();
    }
    next.run(req).await
}

async fn secure_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    let set = |headers: &mut HeaderMap, name: &'static str, value: &'static str| {
        headers.insert(name, HeaderValue::from_static(value));
    };
    set(
        headers,
        "content-security-policy",
        "default-src 'none'; script-src 'self'; connect-src 'self'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    );
    set(headers, "x-frame-options", "DENY");
    set(headers, "x-content-type-options", "nosniff");
    set(headers, "referrer-policy", "no-referrer");
    if !headers.contains_key(header::CACHE_CONTROL) {
        set(headers, "cache-control", "no-store");
    }
    response
}

async fn stylesheet() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "max-age=3600"),
        ],
        include_str!("admin.css"),
    )
        .into_response()
}

/// A signed-in console user: who they are and their session's CSRF token.
pub struct Console {
    pub caller: Authenticated,
    csrf: String,
    secret_hash: [u8; 32],
}

impl Console {
    /// Refuses a form whose CSRF token is not the session's (403).
    fn check(&self, sent: &str) -> Result<(), Forbidden> {
        match bool::from(sent.as_bytes().ct_eq(self.csrf.as_bytes())) {
            true => Ok(()),
            false => Err(Forbidden(
                "This form is out of date or did not come from this console. Open the page again and resend it.",
            )),
        }
    }
}

/// A 403 page saying why.
struct Forbidden(&'static str);

impl IntoResponse for Forbidden {
    fn into_response(self) -> Response {
        pages::refused(StatusCode::FORBIDDEN, self.0)
    }
}

/// The value of cookie `name` in the request.
fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// A `Set-Cookie` value for cookie `name` on `path`: `HttpOnly`, `SameSite=Strict`, `Secure` when
/// the server speaks TLS; an empty `value` clears it.
fn set_cookie(state: &AppState, name: &str, value: &str, path: &str) -> HeaderValue {
    let secure = match state.config().http.tls.cert.is_some() {
        true => "; Secure",
        false => "",
    };
    let age = match value.is_empty() {
        true => "; Max-Age=0",
        false => "",
    };
    HeaderValue::from_str(&format!(
        "{name}={value}; Path={path}; HttpOnly; SameSite=Strict{secure}{age}"
    ))
    .unwrap_or_else(|_| HeaderValue::from_static(""))
}

impl FromRequestParts<AppState> for Console {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        // A cookie that opens nothing (any more) is cleared on the way to the sign-in page.
        let to_login = || {
            let mut response = Redirect::to("/admin/login").into_response();
            response
                .headers_mut()
                .append(header::SET_COOKIE, set_cookie(state, COOKIE, "", "/admin"));
            response
        };
        let Some(secret) = cookie(&parts.headers, COOKIE) else {
            return Err(to_login());
        };
        let secret_hash = secret::digest(secret.trim());
        let found: Option<(Uuid, String)> = async {
            let mut conn = state.pool().acquire().await?;
            sqlx::query_as(
                "SELECT session_id, csrf_token FROM console_sessions WHERE secret_hash = $1",
            )
            .bind(secret_hash.as_slice())
            .fetch_optional(&mut *conn)
            .await
        }
        .await
        .map_err(|e| failed(ApiError::from(e)))?;
        let Some((session, csrf)) = found else {
            return Err(to_login());
        };
        let RequestOrigin(origin) = RequestOrigin::from_request_parts(parts, state)
            .await
            .unwrap_or_default();
        let caller = match session_caller(state, session, origin).await {
            Ok(caller) => caller,
            Err(ApiError::SessionEnded) => return Err(to_login()),
            Err(e) => return Err(failed(e)),
        };
        Ok(Console {
            caller,
            csrf,
            secret_hash,
        })
    }
}

#[derive(Debug, Deserialize)]
struct LoginQuery {
    setup: Option<String>,
    changed: Option<String>,
}

#[derive(Debug, Deserialize)]
struct SignIn {
    username: String,
    password: String,
    #[serde(default)]
    code: String,
    csrf: String,
}

/// The sign-in page, with a fresh CSRF token doubled in a cookie for the sign-in form.
async fn login_page(
    State(state): State<AppState>,
    axum::extract::Query(shown): axum::extract::Query<LoginQuery>,
) -> Response {
    if !state.is_initialized().await {
        return Redirect::to("/admin/setup").into_response();
    }
    let (token, _) = secret::new("");
    let notice = match (shown.setup.is_some(), shown.changed.is_some()) {
        (true, _) => Some("The shop is set up. Sign in as its administrator."),
        (false, true) => Some("Your password was changed. Sign in with the new one."),
        (false, false) => None,
    };
    let mut response = pages::login(&token, None, notice).into_response();
    response.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(&state, LOGIN_COOKIE, &token, "/admin/login"),
    );
    response
}

/// Signs in through the API's login; on success the browser gets the session cookie.
async fn sign_in(
    State(state): State<AppState>,
    RequestOrigin(origin): RequestOrigin,
    headers: HeaderMap,
    axum::Form(form): axum::Form<SignIn>,
) -> Response {
    let mut response = signed_in(&state, &origin, &headers, form).await;
    // A sign-in changes no cached table (sessions are cached by id): a flood of them must not
    // empty the caches that sales read.
    response.extensions_mut().insert(KeepsCaches);
    response.extensions_mut().insert(ConsolePage);
    response
}

async fn signed_in(
    state: &AppState,
    origin: &crate::core::security::events::Origin,
    headers: &HeaderMap,
    form: SignIn,
) -> Response {
    let doubled = cookie(headers, LOGIN_COOKIE).unwrap_or_default();
    if doubled.is_empty() || !bool::from(doubled.as_bytes().ct_eq(form.csrf.as_bytes())) {
        return pages::refused(
            StatusCode::FORBIDDEN,
            "This sign-in form is out of date. Open the sign-in page again.",
        );
    }
    let again = |status: StatusCode, message: &str| {
        let (token, _) = secret::new("");
        let mut response = (status, pages::login(&token, Some(message), None)).into_response();
        response.headers_mut().append(
            header::SET_COOKIE,
            set_cookie(state, LOGIN_COOKIE, &token, "/admin/login"),
        );
        response
    };
    let username = form.username.trim();
    if username.is_empty() || username.chars().count() > 128 {
        return again(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Enter your username (at most 128 characters).",
        );
    }
    let code = form.code.trim();
    let second = login::SecondFactor {
        totp_code: (!code.is_empty() && code.len() <= 8).then_some(code),
        recovery_code: (code.len() > 8).then_some(code),
    };
    let password = SecretString::from(form.password);
    let unauthorized = StatusCode::UNAUTHORIZED;
    let issued = match login::login(state, username, password, second, origin).await {
        Ok(issued) => issued,
        Err(ApiError::InvalidCredentials) => {
            return again(unauthorized, "Wrong username or password.");
        }
        Err(ApiError::MfaRequired) => {
            return again(
                unauthorized,
                "Enter the code from your authenticator app as well.",
            );
        }
        Err(ApiError::MfaInvalid) => {
            return again(unauthorized, "That code is not right; try the next one.");
        }
        Err(ApiError::Throttled { retry_after_secs } | ApiError::Locked { retry_after_secs }) => {
            let mut response = again(
                StatusCode::TOO_MANY_REQUESTS,
                &format!("Too many failed sign-ins: try again in {retry_after_secs} seconds."),
            );
            if let Ok(value) = HeaderValue::from_str(&retry_after_secs.to_string()) {
                response.headers_mut().insert(header::RETRY_AFTER, value);
            }
            return response;
        }
        Err(e) => return failed(e),
    };
    match open_console_session(state, &issued).await {
        Ok(secret) => {
            let mut response = Redirect::to("/admin").into_response();
            let headers = response.headers_mut();
            headers.append(
                header::SET_COOKIE,
                set_cookie(state, COOKIE, &secret, "/admin"),
            );
            headers.append(
                header::SET_COOKIE,
                set_cookie(state, LOGIN_COOKIE, "", "/admin/login"),
            );
            response
        }
        Err(e) => failed(e),
    }
}

/// Binds a new cookie secret (and CSRF token) to the session `issued` opened.
async fn open_console_session(
    state: &AppState,
    issued: &login::Issued,
) -> Result<String, ApiError> {
    let now = state.clock().now();
    let claims = state
        .signing_key()
        .verify(
            &issued.access_token,
            u64::try_from(now.timestamp()).unwrap_or(0),
        )
        .map_err(|e| ApiError::Internal(anyhow::anyhow!("a fresh token does not verify: {e}")))?;
    let (secret, hash) = secret::new("pcs_");
    let (csrf, _) = secret::new("");
    let mut conn = state.pool().acquire().await?;
    sqlx::query(
        "INSERT INTO console_sessions (secret_hash, session_id, csrf_token, created_at) VALUES ($1, $2, $3, $4)",
    )
    .bind(hash.as_slice())
    .bind(claims.sid)
    .bind(&csrf)
    .bind(now)
    .execute(&mut *conn)
    .await?;
    Ok(secret)
}

/// An API error as a console page: what went wrong for a refusal; for a server error only that
/// it happened (the log has the rest, under the request id).
fn failed(e: ApiError) -> Response {
    let message = e.to_string();
    let status = e.into_response().status();
    match status.is_server_error() {
        true => pages::refused(
            status,
            "Something went wrong on the server; its log has the details. Try again in a moment.",
        ),
        false => pages::refused(status, &message),
    }
}

#[derive(Debug, Deserialize)]
struct Csrf {
    #[serde(default)]
    csrf: String,
}

/// Signs out: the session ends (as `POST /api/v1/auth/logout`) and the cookie goes.
async fn sign_out(
    State(state): State<AppState>,
    console: Console,
    axum::Form(form): axum::Form<Csrf>,
) -> Response {
    if let Err(refused) = console.check(&form.csrf) {
        return refused.into_response();
    }
    if let Err(e) = login::logout(&state, &console.caller).await {
        return failed(e);
    }
    let forgotten = async {
        let mut conn = state.pool().acquire().await?;
        sqlx::query("DELETE FROM console_sessions WHERE secret_hash = $1")
            .bind(console.secret_hash.as_slice())
            .execute(&mut *conn)
            .await
    };
    if let Err(e) = forgotten.await {
        tracing::warn!(error = %e, "cannot forget a console session (it has ended anyway)");
    }
    let mut response = Redirect::to("/admin/login").into_response();
    response
        .headers_mut()
        .append(header::SET_COOKIE, set_cookie(&state, COOKIE, "", "/admin"));
    response
}

/// The console user as the API's handlers take them, if they may use it: a user who must change
/// their password or enrol a second factor first is sent to do that.
fn api_caller(console: &Console) -> Result<AuthContext, Forbidden> {
    if console.caller.password_change_required || console.caller.mfa_enrollment_required {
        return Err(Forbidden(
            "Your account must change its password or set up its second factor before it can use the console (POST /api/v1/auth/password, /api/v1/auth/mfa/enroll).",
        ));
    }
    Ok(AuthContext(console.caller.clone()))
}

/// Refuses a screen that needs `permission` the user lacks (403, recorded as a denial, as the
/// API's route guard does).
async fn require(state: &AppState, console: &Console, permission: &str) -> Result<(), Forbidden> {
    match console.caller.require(state, permission).await {
        Ok(()) => Ok(()),
        Err(_) => Err(Forbidden("Your account may not open this screen.")),
    }
}

/// A page for a bare error status.
fn failed_page(status: StatusCode) -> Response {
    pages::refused(
        status,
        "Something went wrong on the server; its log has the details. Try again in a moment.",
    )
}

/// The page every console address answers while a restore switches databases: it reloads
/// itself every five seconds until the console is back.
pub fn maintenance_page(reason: &str) -> Response {
    let body = pages::page_at(
        "Closed for a moment",
        None,
        "",
        maud::html! {
            h1 { "Closed for a moment" }
            div.card {
                p { (reason) }
                p { "This page reloads itself every five seconds; the console opens again when the work is done." }
            }
        },
        pages::Extras {
            live: false,
            refresh: Some(5),
        },
    );
    let mut response = (StatusCode::SERVICE_UNAVAILABLE, body).into_response();
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
    response.extensions_mut().insert(ConsolePage);
    response
}

/// `/admin/ws`: the API's WebSocket (`GET /api/v1/ws`, the same protocol and permissions) for a
/// console page, signed in by its cookie; only from this server's own pages.
async fn live_socket(
    State(state): State<AppState>,
    console: Console,
    headers: HeaderMap,
    upgrade: Result<
        axum::extract::WebSocketUpgrade,
        axum::extract::ws::rejection::WebSocketUpgradeRejection,
    >,
) -> Response {
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
    let same_origin = headers
        .get(header::ORIGIN)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|origin| {
            host.is_some_and(|host| {
                origin == format!("http://{host}") || origin == format!("https://{host}")
            })
        });
    if !same_origin {
        return Forbidden("The console's live updates are for its own pages.").into_response();
    }
    let caller = match api_caller(&console) {
        Ok(caller) => caller,
        Err(refused) => return refused.into_response(),
    };
    match crate::core::live::ws::connect(State(state), caller, upgrade).await {
        Ok(response) => response,
        Err(e) => failed(e),
    }
}

async fn live_script() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "max-age=3600"),
        ],
        include_str!("live.js"),
    )
        .into_response()
}
