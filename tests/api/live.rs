//! The WebSocket (`/api/v1/ws`): authentication, topics and their permissions, events, heartbeats.

use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::shop::Shop;

pub(crate) type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

pub(crate) async fn connect(shop: &Shop, token: &str) -> Socket {
    let url = format!("ws://{}/api/v1/ws?access_token={token}", shop.app.address);
    let (socket, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    socket
}

/// The next JSON message (skipping pings), within 5 s.
pub(crate) async fn next(socket: &mut Socket) -> Value {
    loop {
        let message = tokio::time::timeout(Duration::from_secs(5), socket.next())
            .await
            .expect("a message within 5 s")
            .unwrap()
            .unwrap();
        if let Message::Text(text) = message {
            return serde_json::from_str(&text).unwrap();
        }
    }
}

pub(crate) async fn send(socket: &mut Socket, message: Value) {
    socket
        .send(Message::Text(message.to_string().into()))
        .await
        .unwrap();
}

#[tokio::test]
async fn a_subscriber_sees_sale_completed_at_once() {
    let shop = Shop::open().await;
    let item = shop.product("ITEM", "3.00", &shop.standard, false).await;

    // The header form of the token.
    let mut request = format!("ws://{}/api/v1/ws", shop.app.address)
        .into_client_request()
        .unwrap();
    request.headers_mut().insert(
        "authorization",
        format!("Bearer {}", shop.manager).parse().unwrap(),
    );
    let (mut manager, _) = tokio_tungstenite::connect_async(request).await.unwrap();
    let welcome = next(&mut manager).await;
    assert_eq!(welcome["type"], "welcome");
    assert!(
        welcome["topics"]
            .as_array()
            .unwrap()
            .contains(&json!("sales")),
        "{welcome}"
    );
    send(
        &mut manager,
        json!({"type": "subscribe", "topics": ["sales", "cash"]}),
    )
    .await;
    assert_eq!(
        next(&mut manager).await,
        json!({"type": "subscribed", "topics": ["cash", "sales"]})
    );

    let session = shop.open_session("0").await;
    let opened = next(&mut manager).await;
    assert_eq!(
        (&opened["topic"], &opened["event"]),
        (&json!("cash"), &json!("cash_session.opened"))
    );
    assert_eq!(opened["data"]["id"], session.as_str());

    let sold_at = Instant::now();
    let sale: Value = shop
        .sell(&shop.cashier, "k", &shop.cash_sale(&item, "1", "5"))
        .await
        .json()
        .await
        .unwrap();
    let event = next(&mut manager).await;
    let latency = sold_at.elapsed();
    assert_eq!(event["type"], "event");
    assert_eq!(event["topic"], "sales");
    assert_eq!(event["event"], "sale.completed");
    assert_eq!(event["data"]["id"], sale["id"]);
    assert_eq!(event["data"]["receipt_number"], sale["receipt_number"]);
    assert_eq!(event["data"]["totals"]["total"], "3.00");
    // Generous: the event is published right after the commit, before the HTTP answer.
    assert!(latency < Duration::from_secs(2), "{latency:?}");

    send(&mut manager, json!({"type": "ping"})).await;
    assert_eq!(next(&mut manager).await, json!({"type": "pong"}));
    send(
        &mut manager,
        json!({"type": "unsubscribe", "topics": ["sales"]}),
    )
    .await;
    assert_eq!(
        next(&mut manager).await,
        json!({"type": "subscribed", "topics": ["cash"]})
    );
}

#[tokio::test]
async fn topics_need_their_permission_and_tokens_are_checked() {
    let shop = Shop::open().await;
    // A user with no role holds no permission at all.
    let nobody = shop.app.user_token("nobody", "nobody pass 123", &[]).await;
    let mut socket = connect(&shop, &nobody).await;
    let welcome = next(&mut socket).await;
    assert_eq!(welcome["topics"], json!([]));
    send(
        &mut socket,
        json!({"type": "subscribe", "topics": ["sales", "weather"]}),
    )
    .await;
    let forbidden = next(&mut socket).await;
    assert_eq!(
        (&forbidden["code"], &forbidden["topic"]),
        (&json!("rbac.forbidden"), &json!("sales"))
    );
    let unknown = next(&mut socket).await;
    assert_eq!(unknown["code"], "ws.unknown_topic");
    assert_eq!(
        next(&mut socket).await,
        json!({"type": "subscribed", "topics": []})
    );
    send(&mut socket, json!({"type": "dance"})).await;
    assert_eq!(next(&mut socket).await["code"], "ws.bad_message");
    assert!(
        shop.app
            .security_event_kinds()
            .await
            .contains(&"permission_denied".to_owned())
    );

    // No token, or a bad one: the upgrade is refused with 401.
    for url in [
        format!("ws://{}/api/v1/ws", shop.app.address),
        format!("ws://{}/api/v1/ws?access_token=garbage", shop.app.address),
    ] {
        let error = tokio_tungstenite::connect_async(url).await.unwrap_err();
        let tokio_tungstenite::tungstenite::Error::Http(response) = error else {
            panic!("{error:?}")
        };
        assert_eq!(response.status(), 401);
    }
    // A plain GET is told to upgrade.
    let plain = shop.app.get_as("/api/v1/ws", &shop.manager).await;
    crate::helpers::problem(plain, 400, "ws.upgrade_required").await;
}

#[tokio::test]
async fn heartbeats_flow_and_an_ended_session_is_disconnected() {
    let shop = Shop::open_with(|c| c.websocket.heartbeat_secs = 1).await;
    let login = shop.app.login_ok("boss", "manager pass 123").await;
    let token = login["access_token"].as_str().unwrap().to_owned();
    let mut socket = connect(&shop, &token).await;
    assert_eq!(next(&mut socket).await["type"], "welcome");
    let beat = next(&mut socket).await;
    assert_eq!(beat["type"], "heartbeat");

    // Logging out ends the session: the socket is closed at the next heartbeat.
    let logout = shop
        .app
        .client
        .post(shop.app.url("/api/v1/auth/logout"))
        .bearer_auth(&token)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert!(logout.status().is_success());
    let closed = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match socket.next().await {
                Some(Ok(Message::Close(frame))) => return frame.map(|f| u16::from(f.code)),
                Some(Ok(_)) => continue,
                _ => return None,
            }
        }
    })
    .await
    .expect("closed within 5 s");
    assert_eq!(closed, Some(4401));
}

#[tokio::test]
async fn job_progress_is_published_on_the_jobs_topic() {
    let shop = Shop::open().await;
    let mut admin = connect(&shop, &shop.admin).await;
    assert_eq!(next(&mut admin).await["type"], "welcome");
    send(&mut admin, json!({"type": "subscribe", "topics": ["jobs"]})).await;
    assert_eq!(next(&mut admin).await["type"], "subscribed");
    let response = shop
        .app
        .post_as("/api/v1/backups", &shop.admin, &json!({}))
        .await;
    assert_eq!(response.status(), 202);
    shop.app.run_jobs().await;
    let mut events = Vec::new();
    loop {
        let message = next(&mut admin).await;
        if message["type"] != "event" {
            continue;
        }
        assert_eq!(message["topic"], "jobs");
        let done =
            message["event"] == "job.succeeded" && message["data"]["kind"] == "backup.verify";
        events.push((
            message["event"].as_str().unwrap().to_owned(),
            message["data"]["kind"].as_str().unwrap().to_owned(),
            message["data"]["progress"]["step"]
                .as_str()
                .map(str::to_owned),
        ));
        if done {
            break;
        }
    }
    let create: Vec<&(String, String, Option<String>)> =
        events.iter().filter(|e| e.1 == "backup.create").collect();
    assert_eq!(create.first().unwrap().0, "job.started", "{events:?}");
    assert!(
        create
            .iter()
            .any(|e| e.0 == "job.progress" && e.2.as_deref() == Some("dump")),
        "{events:?}"
    );
    assert_eq!(create.last().unwrap().0, "job.succeeded", "{events:?}");

    // A cashier may not follow jobs.
    let mut cashier = connect(&shop, &shop.cashier).await;
    let welcome = next(&mut cashier).await;
    assert!(
        !welcome["topics"]
            .as_array()
            .unwrap()
            .contains(&json!("jobs"))
    );
}

/// Waits for the close frame and returns its code.
async fn closed_with(socket: &mut Socket) -> Option<u16> {
    tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match socket.next().await {
                Some(Ok(Message::Close(frame))) => return frame.map(|f| u16::from(f.code)),
                Some(Ok(_)) => continue,
                _ => return None,
            }
        }
    })
    .await
    .expect("closed within 5 s")
}

/// A permission taken away from a role stops its members' subscriptions before the next event
/// reaches them (issue 28, finding 7).
#[tokio::test]
async fn a_withdrawn_permission_ends_the_subscription_before_the_next_event() {
    let shop = Shop::open().await;
    let item = shop.product("ITEM", "3.00", &shop.standard, false).await;
    shop.open_session("0").await;
    let role = json!({"name": "watcher", "permissions": ["operations.sales.read"]});
    let created: Value = shop
        .app
        .post_as("/api/v1/roles", &shop.admin, &role)
        .await
        .json()
        .await
        .unwrap();
    let watcher = shop
        .app
        .user_token("wanda", "watcher pass 123", &["watcher"])
        .await;
    let mut socket = connect(&shop, &watcher).await;
    assert_eq!(next(&mut socket).await["type"], "welcome");
    send(
        &mut socket,
        json!({"type": "subscribe", "topics": ["sales"]}),
    )
    .await;
    assert_eq!(next(&mut socket).await["topics"], json!(["sales"]));
    let sold = shop
        .sell(&shop.cashier, "w-1", &shop.cash_sale(&item, "1", "3"))
        .await;
    assert_eq!(sold.status(), 201);
    assert_eq!(next(&mut socket).await["event"], "sale.completed");

    let withdrawn = shop
        .app
        .client
        .put(shop.app.url(&format!(
            "/api/v1/roles/{}/permissions",
            created["id"].as_str().unwrap()
        )))
        .bearer_auth(&shop.admin)
        .json(&json!({"permissions": ["operations.cash.report"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(withdrawn.status(), 200);
    let sold = shop
        .sell(&shop.cashier, "w-2", &shop.cash_sale(&item, "1", "3"))
        .await;
    assert_eq!(sold.status(), 201);
    let told = next(&mut socket).await;
    assert_eq!(
        (&told["code"], &told["topic"]),
        (&json!("rbac.forbidden"), &json!("sales"))
    );
    assert_eq!(
        next(&mut socket).await,
        json!({"type": "subscribed", "topics": []})
    );
    // The second sale's event never arrives.
    send(&mut socket, json!({"type": "ping"})).await;
    assert_eq!(next(&mut socket).await["type"], "pong");
}

/// A client cannot flood the security log, the server or its connections (issue 28, finding 8).
#[tokio::test]
async fn websocket_floods_are_bounded() {
    let shop = Shop::open_with(|c| c.websocket.max_connections_per_user = 2).await;
    let nobody = shop.app.user_token("nobody", "nobody pass 123", &[]).await;
    let mut socket = connect(&shop, &nobody).await;
    assert_eq!(next(&mut socket).await["type"], "welcome");

    // Thousands of topics in one message: refused whole, nothing recorded.
    let many: Vec<&str> = vec!["sales"; 2000];
    send(&mut socket, json!({"type": "subscribe", "topics": many})).await;
    assert_eq!(next(&mut socket).await["code"], "ws.too_many_topics");
    // A forbidden topic named 60 times: one refusal, one security event.
    let repeated: Vec<&str> = vec!["sales"; 60];
    send(
        &mut socket,
        json!({"type": "subscribe", "topics": repeated}),
    )
    .await;
    assert_eq!(next(&mut socket).await["code"], "rbac.forbidden");
    assert_eq!(next(&mut socket).await["type"], "subscribed");
    let events: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM security_events WHERE kind = 'permission_denied' AND username = 'nobody'",
    )
    .fetch_one(&shop.app.pool)
    .await
    .unwrap();
    assert_eq!(events, 1);

    // Two connections per user here; a third is refused before the upgrade.
    let _second = connect(&shop, &nobody).await;
    let url = format!("ws://{}/api/v1/ws?access_token={nobody}", shop.app.address);
    let error = tokio_tungstenite::connect_async(url).await.unwrap_err();
    let tokio_tungstenite::tungstenite::Error::Http(response) = error else {
        panic!("{error:?}")
    };
    assert_eq!(response.status(), 429);

    // A burst of messages beyond the allowance closes the connection.
    for _ in 0..60 {
        if socket
            .send(Message::Text(json!({"type": "ping"}).to_string().into()))
            .await
            .is_err()
        {
            break;
        }
    }
    assert_eq!(closed_with(&mut socket).await, Some(4029));
}
