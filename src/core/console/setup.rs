//! `/admin/setup`: first-run setup in the browser, while the instance is not set up. It sends
//! `POST /api/v1/setup` (the same checks: the setup token from `<data_dir>/setup-token`, the
//! business, the first administrator); afterwards it only leads to the sign-in page.

use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use maud::html;
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::HashMap;
use subtle::ConstantTimeEq;
use tower::ServiceExt;

use super::{ApiRouter, ConsolePage, cookie, pages, set_cookie};
use crate::core::state::AppState;
use crate::shared::secret;

/// The wizard form's CSRF cookie (doubled in the form, as the sign-in form's).
const SETUP_COOKIE: &str = "plugpos_setup";

#[derive(Debug, Default, Deserialize)]
pub struct SetupForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    setup_token: String,
    #[serde(default, rename = "business.name")]
    business_name: String,
    #[serde(default, rename = "business.currency")]
    currency: String,
    #[serde(default, rename = "business.timezone")]
    timezone: String,
    #[serde(default, rename = "admin.username")]
    username: String,
    #[serde(default, rename = "admin.password")]
    password: String,
}

/// The wizard (or, once set up, the sign-in page).
pub async fn wizard(State(state): State<AppState>) -> Response {
    if state.is_initialized().await {
        return Redirect::to("/admin/login").into_response();
    }
    draw(
        &state,
        StatusCode::OK,
        &SetupForm::default(),
        None,
        &HashMap::new(),
    )
}

fn draw(
    state: &AppState,
    status: StatusCode,
    sent: &SetupForm,
    error: Option<&str>,
    fields: &HashMap<String, String>,
) -> Response {
    let (token, _) = secret::new("");
    let field = |name: &str, label: &str, kind: &str, value: &str, hint: Option<&str>| {
        let id = name.replace('.', "-");
        let error = fields.get(name);
        html! {
            label for=(id) { (label) }
            @let described = [hint.map(|_| format!("{id}-hint")), error.map(|_| format!("{id}-error"))]
                .into_iter().flatten().collect::<Vec<_>>().join(" ");
            input #(id) type=(kind) name=(name) value=(value) required
                aria-describedby=[(!described.is_empty()).then_some(described.as_str())];
            @if let Some(hint) = hint { p.hint id=(format!("{id}-hint")) { (hint) } }
            @if let Some(error) = error { p.field-error id=(format!("{id}-error")) { (error) } }
        }
    };
    let currency = if sent.currency.is_empty() {
        "EUR"
    } else {
        &sent.currency
    };
    let timezone = if sent.timezone.is_empty() {
        "Europe/Berlin"
    } else {
        &sent.timezone
    };
    let body = pages::page(
        "Set up the shop",
        None,
        html! {
            h1 { "Set up the shop" }
            div.card {
                p { "This server is not set up yet. Setting it up creates the business, its first branch, shop floor and register, the built-in roles and the administrator's account." }
                @if let Some(error) = error { p.error role="alert" { (error) } }
                form method="post" action="/admin/setup" {
                    input type="hidden" name="csrf" value=(token);
                    fieldset {
                        legend { "1. Prove you installed it" }
                        (field("setup_token", "Setup token", "password", "", Some("The contents of the file setup-token in the server's data directory (the installer printed it too).")))
                    }
                    fieldset {
                        legend { "2. The business" }
                        (field("business.name", "Business name (as printed on receipts)", "text", &sent.business_name, None))
                        (field("business.currency", "Currency (ISO 4217 code, fixed from now on)", "text", currency, Some("For example EUR, GBP, USD, CHF.")))
                        (field("business.timezone", "Time zone", "text", timezone, Some("An IANA name, for example Europe/Berlin or America/New_York: business days are counted in it.")))
                    }
                    fieldset {
                        legend { "3. The administrator" }
                        (field("admin.username", "Username", "text", if sent.username.is_empty() { "admin" } else { &sent.username }, None))
                        (field("admin.password", "Password (at least 10 characters, not a common one)", "password", "", None))
                    }
                    button type="submit" { "Set up" }
                }
            }
        },
    );
    let mut response = (status, body).into_response();
    response.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(state, SETUP_COOKIE, &token, "/admin/setup"),
    );
    response.extensions_mut().insert(ConsolePage);
    response
}

/// Runs setup through the API; afterwards the sign-in page says it is done.
pub async fn run(
    State(state): State<AppState>,
    axum::Extension(ApiRouter(api)): axum::Extension<ApiRouter>,
    extensions: axum::http::Extensions,
    headers: HeaderMap,
    axum::Form(form): axum::Form<SetupForm>,
) -> Response {
    if state.is_initialized().await {
        return Redirect::to("/admin/login").into_response();
    }
    let doubled = cookie(&headers, SETUP_COOKIE).unwrap_or_default();
    if doubled.is_empty() || !bool::from(doubled.as_bytes().ct_eq(form.csrf.as_bytes())) {
        return pages::refused(
            StatusCode::FORBIDDEN,
            "This setup form is out of date. Open the setup page again.",
        );
    }
    let body = json!({
        "setup_token": form.setup_token.trim(),
        "business": {"name": form.business_name, "currency": form.currency.trim(), "timezone": form.timezone.trim()},
        "admin": {"username": form.username.trim(), "password": form.password},
    });
    let request = axum::http::Request::builder()
        .method(Method::POST)
        .uri("/api/v1/setup")
        .header(header::CONTENT_TYPE, "application/json")
        .body(axum::body::Body::from(body.to_string()));
    let Ok(mut request) = request else {
        return super::failed_page(StatusCode::BAD_REQUEST);
    };
    request.extensions_mut().insert(state.clone());
    if let Some(peer) = extensions.get::<axum::extract::ConnectInfo<std::net::SocketAddr>>() {
        request.extensions_mut().insert(*peer);
    }
    if let Some(agent) = headers.get(header::USER_AGENT) {
        request
            .headers_mut()
            .insert(header::USER_AGENT, agent.clone());
    }
    let response = match api.oneshot(request).await {
        Ok(response) => response,
        Err(never) => match never {},
    };
    let status = response.status();
    if status.is_success() {
        let mut done = Redirect::to("/admin/login?setup=done").into_response();
        done.headers_mut().append(
            header::SET_COOKIE,
            set_cookie(&state, SETUP_COOKIE, "", "/admin/setup"),
        );
        return done;
    }
    let problem: Value = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or(Value::Null);
    if status.is_server_error() {
        return super::failed_page(status);
    }
    let mut fields = super::api::field_errors(&problem);
    if problem["code"] == "setup.invalid_token" {
        fields.insert(
            "setup_token".to_owned(),
            "This is not the token in the setup-token file.".to_owned(),
        );
    }
    let error = problem["detail"].as_str().unwrap_or("Setup was refused.");
    draw(&state, status, &form, Some(error), &fields)
}
