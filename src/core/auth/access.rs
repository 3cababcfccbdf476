//! Deny by default: every route declares, where it is registered, who may call it. The
//! declaration both guards the route and is published in the OpenAPI document as
//! `x-permission`, which the route-coverage and role-matrix tests read.

use std::net::SocketAddr;
use std::time::Instant;

use axum::extract::{ConnectInfo, FromRequestParts, Request};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use utoipa::openapi::extensions::Extensions;
use utoipa::openapi::path::{Operation, PathItem};
use utoipa_axum::router::UtoipaMethodRouter;

use crate::core::auth::context::{AuthContext, Authenticated};
use crate::core::http::ApiError;
use crate::core::state::AppState;

/// The OpenAPI extension that carries a route's access rule.
pub const EXTENSION: &str = "x-permission";

/// Who may call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone (health, setup, login, refresh, the API description).
    Public,
    /// Any logged-in user, even one who must change their password first (me, logout, password change).
    SelfService,
    /// Logged-in users holding this permission.
    Permission(&'static str),
}

impl Access {
    /// How the rule appears in the OpenAPI document.
    pub fn label(self) -> &'static str {
        match self {
            Access::Public => "public",
            Access::SelfService => "authenticated",
            Access::Permission(p) => p,
        }
    }
}

/// Registers `routes` under `access`: guards them and records the rule in their documentation.
pub fn declare(
    access: Access,
    (schemas, mut paths, router): UtoipaMethodRouter<AppState>,
) -> UtoipaMethodRouter<AppState> {
    for item in paths.paths.values_mut() {
        for operation in operations_mut(item) {
            let extensions = operation.extensions.get_or_insert_with(Extensions::default);
            extensions.insert(
                EXTENSION.to_owned(),
                serde_json::Value::from(access.label()),
            );
        }
    }
    let router = match access {
        // Writes anyone may send (login, refresh, setup) are limited per client address.
        Access::Public => router.route_layer(axum::middleware::from_fn(limit_public_writes)),
        Access::SelfService | Access::Permission(_) => router.route_layer(
            axum::middleware::from_fn(move |req: Request, next: Next| guard(access, req, next)),
        ),
    };
    (schemas, paths, router)
}

fn operations_mut(item: &mut PathItem) -> impl Iterator<Item = &mut Operation> {
    [
        item.get.as_mut(),
        item.put.as_mut(),
        item.post.as_mut(),
        item.delete.as_mut(),
        item.options.as_mut(),
        item.head.as_mut(),
        item.patch.as_mut(),
        item.trace.as_mut(),
    ]
    .into_iter()
    .flatten()
}

/// Limits requests that change something and need no login (login, refresh, setup, the console's
/// sign-in) per client address.
pub async fn limit_public_writes(req: Request, next: Next) -> Response {
    let safe = matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    let client = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    if let (false, Some(ip), Some(state)) = (safe, client, req.extensions().get::<AppState>())
        && let Err(retry_after_secs) = state.public_limit().take(ip, Instant::now())
    {
        return ApiError::RateLimited { retry_after_secs }.into_response();
    }
    next.run(req).await
}

async fn guard(access: Access, req: Request, next: Next) -> Response {
    let Some(state) = req.extensions().get::<AppState>().cloned() else {
        return ApiError::Internal(anyhow::anyhow!(
            "the application state is not attached to the request"
        ))
        .into_response();
    };
    let (mut parts, body) = req.into_parts();
    let checked = match access {
        Access::Public => Ok(()),
        Access::SelfService => match Authenticated::from_request_parts(&mut parts, &state).await {
            // A person's own account (password, PIN, second factor, live events) is theirs: an
            // API key acting for them may only say who it is.
            Ok(caller) if caller.api_key.is_some() && parts.uri.path() != "/api/v1/auth/me" => {
                Err(ApiError::Denied {
                    code: "auth.api_key_not_allowed",
                    detail: "API keys cannot use a person's own account endpoints (password, PIN, two-factor, live events).".to_owned(),
                })
            }
            Ok(caller) => {
                parts.extensions.insert(caller);
                Ok(())
            }
            Err(e) => Err(e),
        },
        Access::Permission(permission) => {
            match AuthContext::from_request_parts(&mut parts, &state).await {
                Ok(caller) => match caller.require(&state, permission).await {
                    Ok(()) => {
                        parts.extensions.insert(caller);
                        Ok(())
                    }
                    Err(e) => Err(e),
                },
                Err(e) => Err(e),
            }
        }
    };
    match checked {
        Ok(()) => next.run(Request::from_parts(parts, body)).await,
        Err(e) => e.into_response(),
    }
}
