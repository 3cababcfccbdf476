//! `GET /api/v1/ws`: the WebSocket. The protocol is in `docs/api.md`.
//!
//! The bearer token comes in the `Authorization` header or, for browsers (which cannot set
//! headers on a WebSocket), in `?access_token=`; the query form is moved into the header before
//! the route guard runs and removed from the URI, so it never reaches a log line.

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Uri, header};
use axum::middleware::Next;
use axum::response::Response;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::time::{Instant, MissedTickBehavior, interval, timeout};

use crate::core::auth::context::{AuthContext, Authenticated, session_is_current};
use crate::core::http::ApiError;
use crate::core::http::problem::Problem;
use crate::core::security::events::{self, EventKind, SecurityEvent};
use crate::core::state::AppState;

/// Largest message a client may send.
const MAX_CLIENT_MESSAGE: usize = 16 * 1024;

/// Close codes (4000-4999 are the application's).
mod close {
    pub const HEARTBEAT_TIMEOUT: u16 = 4000;
    pub const TOO_SLOW: u16 = 4008;
    pub const SESSION_ENDED: u16 = 4401;
}

/// Moves `?access_token=` into `Authorization` (unless one is there) and drops it from the URI.
pub async fn token_from_query(mut req: Request, next: Next) -> Response {
    let uri = req.uri().clone();
    if let Some(query) = uri.query() {
        let mut token = None;
        let rest: Vec<&str> = query
            .split('&')
            .filter(|pair| match pair.strip_prefix("access_token=") {
                Some(value) => {
                    token = Some(value.to_owned());
                    false
                }
                None => true,
            })
            .collect();
        if let Some(token) = token {
            if !req.headers().contains_key(header::AUTHORIZATION)
                && let Ok(value) = HeaderValue::from_str(&format!("Bearer {token}"))
            {
                req.headers_mut().insert(header::AUTHORIZATION, value);
            }
            let path_and_query = if rest.is_empty() {
                uri.path().to_owned()
            } else {
                format!("{}?{}", uri.path(), rest.join("&"))
            };
            if let Ok(clean) = Uri::builder().path_and_query(path_and_query).build() {
                *req.uri_mut() = clean;
            }
        }
    }
    next.run(req).await
}

/// Live updates over a WebSocket.
///
/// After the upgrade the server sends `{"type":"welcome"}`; the client sends
/// `{"type":"subscribe","topics":[...]}` and receives `{"type":"event",...}` messages for the
/// topics its permissions allow. See docs/api.md.
#[utoipa::path(get, path = "/api/v1/ws", tag = "live", security(("bearer" = [])),
    params(("access_token" = Option<String>, Query, description = "The access token, for clients that cannot send `Authorization`")),
    responses(
        (status = 101, description = "Switching to the WebSocket protocol"),
        (status = 400, description = "Not a WebSocket upgrade request", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No or bad token", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn connect(
    State(state): State<AppState>,
    caller: AuthContext,
    upgrade: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    let upgrade = upgrade.map_err(|e| ApiError::BadRequest {
        code: "ws.upgrade_required",
        detail: format!("This endpoint speaks WebSocket only: {e}."),
    })?;
    Ok(upgrade
        .max_message_size(MAX_CLIENT_MESSAGE)
        .on_upgrade(move |socket| serve(socket, state, caller.0)))
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum ClientMessage {
    Subscribe { topics: Vec<String> },
    Unsubscribe { topics: Vec<String> },
    Ping,
}

async fn serve(mut socket: WebSocket, state: AppState, caller: Authenticated) {
    let hub = state.live().clone();
    let heartbeat = Duration::from_secs(state.config().websocket.heartbeat_secs);
    let mut connection = hub.connect();
    let mut subscribed: HashSet<&'static str> = HashSet::new();
    let allowed: Vec<&str> = hub
        .topics()
        .filter(|t| caller.has(t.permission))
        .map(|t| t.name)
        .collect();
    let welcome = json!({
        "type": "welcome",
        "heartbeat_secs": heartbeat.as_secs(),
        "topics": allowed,
    });
    let mut open = send(&mut socket, &welcome, heartbeat).await;
    let mut beat = interval(heartbeat);
    beat.set_missed_tick_behavior(MissedTickBehavior::Delay);
    beat.tick().await;
    let mut last_heard = Instant::now();
    while open {
        tokio::select! {
            event = connection.events.recv() => {
                match event {
                    Some(text) if !connection.overflowed.load(Ordering::Relaxed) => {
                        open = send_text(&mut socket, Utf8Bytes::from(&*text), heartbeat).await;
                    }
                    _ => {
                        tracing::warn!(user = %caller.username, "websocket client too slow; disconnected");
                        close_with(&mut socket, close::TOO_SLOW, "too slow: events were dropped").await;
                        open = false;
                    }
                }
            }
            frame = socket.recv() => {
                match frame {
                    Some(Ok(Message::Text(text))) => {
                        last_heard = Instant::now();
                        let reply = handle(&state, &caller, &mut subscribed, &text).await;
                        hub.set_topics(connection.id, subscribed.clone());
                        for message in reply {
                            open = open && send(&mut socket, &message, heartbeat).await;
                        }
                    }
                    Some(Ok(Message::Close(_))) | None | Some(Err(_)) => open = false,
                    Some(Ok(Message::Binary(_))) => {
                        last_heard = Instant::now();
                        open = send(&mut socket, &error("ws.bad_message", "Messages are JSON text.", None), heartbeat).await;
                    }
                    Some(Ok(_)) => last_heard = Instant::now(),
                }
            }
            _ = beat.tick() => {
                if last_heard.elapsed() > heartbeat * 2 {
                    close_with(&mut socket, close::HEARTBEAT_TIMEOUT, "no answer to heartbeats").await;
                    open = false;
                } else if !session_is_current(state.pool(), caller.session_id, caller.user_id, state.clock().now()).await.unwrap_or(true) {
                    close_with(&mut socket, close::SESSION_ENDED, "session ended").await;
                    open = false;
                } else {
                    let ping = timeout(heartbeat, socket.send(Message::Ping(Default::default()))).await;
                    open = matches!(ping, Ok(Ok(())))
                        && send(&mut socket, &json!({"type": "heartbeat", "time": state.clock().now()}), heartbeat).await;
                }
            }
        }
    }
    hub.disconnect(connection.id);
}

/// Answers one client message.
async fn handle(
    state: &AppState,
    caller: &Authenticated,
    subscribed: &mut HashSet<&'static str>,
    text: &str,
) -> Vec<Value> {
    let message: ClientMessage = match serde_json::from_str(text) {
        Ok(m) => m,
        Err(e) => {
            return vec![error(
                "ws.bad_message",
                &format!("Not a message this server understands: {e}."),
                None,
            )];
        }
    };
    let hub = state.live();
    match message {
        ClientMessage::Ping => vec![json!({"type": "pong"})],
        ClientMessage::Unsubscribe { topics } => {
            subscribed.retain(|t| !topics.iter().any(|u| u == t));
            vec![subscriptions(subscribed)]
        }
        ClientMessage::Subscribe { topics } => {
            let mut replies = Vec::new();
            for name in topics {
                match hub.topic(&name) {
                    None => replies.push(error(
                        "ws.unknown_topic",
                        &format!("There is no topic `{name}`."),
                        Some(&name),
                    )),
                    Some(topic) if !caller.has(topic.permission) => {
                        if let Ok(mut conn) = state.pool().acquire().await {
                            let _ = events::record(
                                &mut conn,
                                SecurityEvent {
                                    kind: EventKind::PermissionDenied,
                                    user_id: Some(caller.user_id),
                                    username: Some(&caller.username),
                                    origin: &caller.origin,
                                    details: json!({"permission": topic.permission, "topic": topic.name}),
                                },
                            )
                            .await;
                        }
                        replies.push(error(
                            "rbac.forbidden",
                            &format!("Topic `{name}` needs permission `{}`.", topic.permission),
                            Some(&name),
                        ));
                    }
                    Some(topic) => {
                        subscribed.insert(topic.name);
                    }
                }
            }
            replies.push(subscriptions(subscribed));
            replies
        }
    }
}

fn subscriptions(subscribed: &HashSet<&'static str>) -> Value {
    let mut topics: Vec<&str> = subscribed.iter().copied().collect();
    topics.sort_unstable();
    json!({"type": "subscribed", "topics": topics})
}

fn error(code: &str, detail: &str, topic: Option<&str>) -> Value {
    json!({"type": "error", "code": code, "detail": detail, "topic": topic})
}

/// Sends a JSON message; false when the client is gone or does not take it within `limit`.
async fn send(socket: &mut WebSocket, message: &Value, limit: Duration) -> bool {
    send_text(socket, Utf8Bytes::from(message.to_string()), limit).await
}

async fn send_text(socket: &mut WebSocket, text: Utf8Bytes, limit: Duration) -> bool {
    matches!(
        timeout(limit, socket.send(Message::Text(text))).await,
        Ok(Ok(()))
    )
}

async fn close_with(socket: &mut WebSocket, code: u16, reason: &'static str) {
    let frame = CloseFrame {
        code,
        reason: Utf8Bytes::from_static(reason),
    };
    let _ = timeout(
        Duration::from_secs(1),
        socket.send(Message::Close(Some(frame))),
    )
    .await;
}

/// The WebSocket endpoint (its token may come in the query string: browsers cannot set headers).
pub fn routes() -> utoipa_axum::router::OpenApiRouter<crate::core::state::AppState> {
    use crate::core::auth::access::Access::SelfService;
    use crate::core::auth::access::declare;
    use utoipa_axum::routes;
    utoipa_axum::router::OpenApiRouter::new().routes({
        let (schemas, paths, router) = declare(SelfService, routes!(connect));
        (
            schemas,
            paths,
            router.layer(axum::middleware::from_fn(token_from_query)),
        )
    })
}
