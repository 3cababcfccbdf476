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

use crate::core::auth::context::{AuthContext, Authenticated, session_permissions};
use crate::core::http::ApiError;
use crate::core::http::problem::Problem;
use crate::core::live::{Connection, Hub};
use crate::core::security::events::{self, EventKind, SecurityEvent};
use crate::core::state::AppState;

/// Largest message a client may send.
const MAX_CLIENT_MESSAGE: usize = 16 * 1024;

/// Close codes (4000-4999 are the application's).
mod close {
    pub const HEARTBEAT_TIMEOUT: u16 = 4000;
    pub const TOO_SLOW: u16 = 4008;
    pub const SESSION_ENDED: u16 = 4401;
    pub const TOO_MANY_MESSAGES: u16 = 4029;
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
        (status = 429, description = "The user holds `websocket.max_connections_per_user` connections already (`ws.too_many_connections`)", body = Problem, content_type = "application/problem+json"),
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
    let limit = state.config().websocket.max_connections_per_user;
    let Some(connection) = state.live().connect(caller.user_id, limit) else {
        return Err(ApiError::Limited {
            code: "ws.too_many_connections",
            detail: format!(
                "This user holds {limit} WebSocket connections already; close one first."
            ),
        });
    };
    Ok(upgrade
        .max_message_size(MAX_CLIENT_MESSAGE)
        .max_frame_size(MAX_CLIENT_MESSAGE)
        .on_upgrade(move |socket| serve(socket, state, caller.0, connection)))
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum ClientMessage {
    Subscribe { topics: Vec<String> },
    Unsubscribe { topics: Vec<String> },
    Ping,
}

/// Messages a client may send in a burst, and then per second.
const MESSAGE_BURST: f64 = 20.0;
const MESSAGES_PER_SECOND: f64 = 5.0;
/// Topics one subscribe or unsubscribe may name.
const MAX_TOPICS_PER_MESSAGE: usize = 64;

/// What one connection knows of its caller and subscriptions.
struct Client {
    caller: Authenticated,
    subscribed: HashSet<&'static str>,
    /// The caches' generation the caller's permissions were last checked in: a change to
    /// users, roles or sessions moves it on, and the next event re-checks first.
    checked: u64,
    /// Message allowance (a token bucket).
    allowance: f64,
    refilled: Instant,
    /// A topic was withdrawn while events may still be queued for it: until the queue is
    /// drained, each event's topic is checked before it is sent.
    filtering: bool,
}

/// Why a connection must close.
enum Closing {
    SessionEnded,
    TooManyMessages,
}

/// One connection's life. Stays whole: one loop whose `select!` arms share the socket, the client
/// and `open`; split into functions, each would take all of them.
async fn serve(
    mut socket: WebSocket,
    state: AppState,
    caller: Authenticated,
    mut connection: Connection,
) {
    let hub = state.live().clone();
    let heartbeat = Duration::from_secs(state.config().websocket.heartbeat_secs);
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
    let mut client = Client {
        caller,
        subscribed: HashSet::new(),
        checked: state.changes().generation(),
        allowance: MESSAGE_BURST,
        refilled: Instant::now(),
        filtering: false,
    };
    let mut open = send(&mut socket, &welcome, heartbeat).await;
    let mut beat = interval(heartbeat);
    beat.set_missed_tick_behavior(MissedTickBehavior::Delay);
    beat.tick().await;
    let mut last_heard = Instant::now();
    while open {
        let closing = tokio::select! {
            event = connection.events.recv() => {
                match event {
                    Some(text) if !connection.overflowed.load(Ordering::Relaxed) => {
                        // Permissions may have been withdrawn since they were checked.
                        let mut outcome = Ok(());
                        if state.changes().generation() != client.checked {
                            outcome = recheck(&state, &hub, &connection, &mut client, &mut socket, heartbeat).await;
                        }
                        if outcome.is_ok() && (!client.filtering || still_subscribed(&client, &text)) {
                            open = send_text(&mut socket, Utf8Bytes::from(&*text), heartbeat).await;
                        }
                        if client.filtering && connection.events.is_empty() {
                            client.filtering = false;
                        }
                        outcome.err()
                    }
                    _ => {
                        tracing::warn!(user = %client.caller.username, "websocket client too slow; disconnected");
                        close_with(&mut socket, close::TOO_SLOW, "too slow: events were dropped").await;
                        open = false;
                        None
                    }
                }
            }
            frame = socket.recv() => {
                match frame {
                    Some(Ok(Message::Text(text))) => {
                        last_heard = Instant::now();
                        if take_allowance(&mut client) {
                            let reply = handle(&state, &mut client, &text).await;
                            hub.set_topics(connection.id, client.subscribed.clone());
                            for message in reply {
                                open = open && send(&mut socket, &message, heartbeat).await;
                            }
                            None
                        } else {
                            Some(Closing::TooManyMessages)
                        }
                    }
                    Some(Ok(Message::Close(_))) | None | Some(Err(_)) => {
                        open = false;
                        None
                    }
                    Some(Ok(Message::Binary(_))) => {
                        last_heard = Instant::now();
                        if take_allowance(&mut client) {
                            open = send(&mut socket, &error("ws.bad_message", "Messages are JSON text.", None), heartbeat).await;
                            None
                        } else {
                            Some(Closing::TooManyMessages)
                        }
                    }
                    Some(Ok(_)) => {
                        last_heard = Instant::now();
                        None
                    }
                }
            }
            _ = beat.tick() => {
                if last_heard.elapsed() > heartbeat * 2 {
                    close_with(&mut socket, close::HEARTBEAT_TIMEOUT, "no answer to heartbeats").await;
                    open = false;
                    None
                } else {
                    match recheck(&state, &hub, &connection, &mut client, &mut socket, heartbeat).await {
                        Err(closing) => Some(closing),
                        Ok(()) => {
                            let ping = timeout(heartbeat, socket.send(Message::Ping(Default::default()))).await;
                            open = matches!(ping, Ok(Ok(())))
                                && send(&mut socket, &json!({"type": "heartbeat", "time": state.clock().now()}), heartbeat).await;
                            None
                        }
                    }
                }
            }
        };
        match closing {
            Some(Closing::SessionEnded) => {
                close_with(&mut socket, close::SESSION_ENDED, "session ended").await;
                open = false;
            }
            Some(Closing::TooManyMessages) => {
                let _ = send(
                    &mut socket,
                    &error(
                        "ws.too_many_messages",
                        "More messages than the server takes: at most 20 at once and 5 a second.",
                        None,
                    ),
                    heartbeat,
                )
                .await;
                close_with(&mut socket, close::TOO_MANY_MESSAGES, "too many messages").await;
                open = false;
            }
            None => {}
        }
    }
    drop(connection);
}

/// Takes one message from the client's allowance; false when it has none left.
fn take_allowance(client: &mut Client) -> bool {
    let now = Instant::now();
    let refill = now.duration_since(client.refilled).as_secs_f64() * MESSAGES_PER_SECOND;
    client.allowance = (client.allowance + refill).min(MESSAGE_BURST);
    client.refilled = now;
    if client.allowance < 1.0 {
        return false;
    }
    client.allowance -= 1.0;
    true
}

/// Checks the caller's session and permissions as they stand now: a session that ended (or
/// cannot be checked: the database is down) closes the connection; a topic whose permission was
/// withdrawn is unsubscribed, and the client told.
async fn recheck(
    state: &AppState,
    hub: &Hub,
    connection: &Connection,
    client: &mut Client,
    socket: &mut WebSocket,
    heartbeat: Duration,
) -> Result<(), Closing> {
    let generation = state.changes().generation();
    let caller = &client.caller;
    let now = state.clock().now();
    let Ok(Some(permissions)) =
        session_permissions(state, caller.session_id, caller.user_id, now).await
    else {
        return Err(Closing::SessionEnded);
    };
    client.checked = generation;
    let withdrawn: Vec<&'static str> = client
        .subscribed
        .iter()
        .copied()
        .filter(|name| {
            hub.topic(name)
                .is_none_or(|t| !permissions.contains(t.permission))
        })
        .collect();
    client.caller.permissions = permissions;
    if withdrawn.is_empty() {
        return Ok(());
    }
    client.subscribed.retain(|t| !withdrawn.contains(t));
    hub.set_topics(connection.id, client.subscribed.clone());
    client.filtering = true;
    for name in withdrawn {
        let message = error(
            "rbac.forbidden",
            &format!("The permission for topic `{name}` was withdrawn; it is unsubscribed."),
            Some(name),
        );
        let _ = send(socket, &message, heartbeat).await;
    }
    let _ = send(socket, &subscriptions(&client.subscribed), heartbeat).await;
    Ok(())
}

/// Is the event in `text` on a topic the client is still subscribed to? (It may have been
/// queued before a permission was withdrawn.)
fn still_subscribed(client: &Client, text: &str) -> bool {
    let topic = serde_json::from_str::<Value>(text)
        .ok()
        .and_then(|v| v["topic"].as_str().map(str::to_owned));
    topic.is_some_and(|t| client.subscribed.contains(t.as_str()))
}

/// Answers one client message.
async fn handle(state: &AppState, client: &mut Client, text: &str) -> Vec<Value> {
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
    let caller = &client.caller;
    let subscribed = &mut client.subscribed;
    match message {
        ClientMessage::Ping => vec![json!({"type": "pong"})],
        ClientMessage::Subscribe { topics } | ClientMessage::Unsubscribe { topics }
            if topics.len() > MAX_TOPICS_PER_MESSAGE =>
        {
            vec![error(
                "ws.too_many_topics",
                &format!("Name at most {MAX_TOPICS_PER_MESSAGE} topics in one message."),
                None,
            )]
        }
        ClientMessage::Unsubscribe { topics } => {
            subscribed.retain(|t| !topics.iter().any(|u| u == t));
            vec![subscriptions(subscribed)]
        }
        ClientMessage::Subscribe { mut topics } => {
            topics.sort_unstable();
            topics.dedup();
            let mut replies = Vec::new();
            let mut denied = Vec::new();
            for name in topics {
                match hub.topic(&name) {
                    None => replies.push(error(
                        "ws.unknown_topic",
                        &format!("There is no topic `{name}`."),
                        Some(&name),
                    )),
                    Some(topic) if !caller.has(topic.permission) => {
                        denied.push(json!({"permission": topic.permission, "topic": topic.name}));
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
            // One security event per message, however many topics it was refused.
            if !denied.is_empty()
                && let Ok(mut conn) = state.pool().acquire().await
            {
                let details = match denied.len() {
                    1 => denied.swap_remove(0),
                    _ => json!({"denied": denied}),
                };
                let _ = events::record(
                    &mut conn,
                    SecurityEvent {
                        kind: EventKind::PermissionDenied,
                        user_id: Some(caller.user_id),
                        username: Some(&caller.username),
                        origin: &caller.origin,
                        details,
                    },
                )
                .await;
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
