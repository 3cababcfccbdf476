//! Webhooks: allowed targets only, signed deliveries through the job queue, retried with backoff
//! until the receiver takes them, dead after the last attempt, replayable with the same event id.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use hmac::{KeyInit, Mac};
use serde_json::{Value, json};

use crate::helpers::problem;
use crate::shop::Shop;

/// What a receiver was sent: the headers that matter and the body.
#[derive(Debug, Clone)]
struct Received {
    event_id: String,
    event: String,
    signature: String,
    body: String,
}

#[derive(Clone, Default)]
struct Receiver {
    got: Arc<Mutex<Vec<Received>>>,
    /// Answer 500 to this many requests first.
    failures: Arc<Mutex<usize>>,
}

async fn receive(State(r): State<Receiver>, headers: HeaderMap, body: String) -> StatusCode {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    r.got.lock().unwrap().push(Received {
        event_id: header("plugpos-event-id"),
        event: header("plugpos-event"),
        signature: header("plugpos-signature"),
        body,
    });
    let mut failures = r.failures.lock().unwrap();
    if *failures > 0 {
        *failures -= 1;
        StatusCode::INTERNAL_SERVER_ERROR
    } else {
        StatusCode::OK
    }
}

async fn receiver(failures: usize) -> (Receiver, SocketAddr) {
    let r = Receiver {
        failures: Arc::new(Mutex::new(failures)),
        ..Receiver::default()
    };
    let app = axum::Router::new()
        .route("/hook", axum::routing::post(receive))
        .with_state(r.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (r, address)
}

/// Checks `Plugpos-Signature: t=...,v1=...` over `t.body` with `secret`, as a receiver would.
fn verify(secret: &str, signature: &str, body: &str) -> bool {
    let Some((t, v1)) = signature
        .strip_prefix("t=")
        .and_then(|rest| rest.split_once(",v1="))
    else {
        return false;
    };
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{t}.{body}").as_bytes());
    mac.verify_slice(&hex::decode(v1).unwrap_or_default())
        .is_ok()
}

async fn webhook(shop: &Shop, url: &str, events: Value) -> reqwest::Response {
    shop.app
        .post_as(
            "/api/v1/webhooks",
            &shop.admin,
            &json!({"url": url, "events": events}),
        )
        .await
}

/// Runs the due jobs, moving the clock past the backoff, until `done` holds (10 rounds at most).
async fn run_until(shop: &Shop, done: impl Fn() -> bool) {
    for _ in 0..10 {
        shop.app.run_jobs().await;
        if done() {
            return;
        }
        shop.app.clock.advance(chrono::Duration::seconds(5));
    }
    panic!("the deliveries did not finish");
}

#[tokio::test]
async fn a_sale_reaches_the_receiver_signed_after_retries_and_a_replay_keeps_its_event_id() {
    let shop = Shop::open_with(|c| {
        c.jobs.backoff_base_secs = 1;
        c.jobs.backoff_max_secs = 2;
    })
    .await;
    let app = &shop.app;
    tokio::spawn(plugpos::core::webhooks::dispatch(app.state.downgrade()));
    let (flaky, address) = receiver(2).await;
    let url = format!("http://{address}/hook");

    // Nowhere is allowed until an admin names where webhooks may go.
    let body = problem(
        webhook(&shop, &url, json!(["sale.completed"])).await,
        422,
        "validation.failed",
    )
    .await;
    assert!(
        body["errors"]
            .to_string()
            .contains("integrations.webhook_targets"),
        "{body}"
    );
    shop.set("integrations.webhook_targets", json!(["127.0.0.0/8"]))
        .await;
    for probe in [
        "http://169.254.169.254/latest/meta-data",
        "http://10.0.0.1/",
        "file:///etc/passwd",
    ] {
        problem(
            webhook(&shop, probe, json!(["sale.completed"])).await,
            422,
            "validation.failed",
        )
        .await;
    }
    problem(
        webhook(&shop, &url, json!(["sale.exploded"])).await,
        422,
        "validation.failed",
    )
    .await;
    problem(
        app.post_as(
            "/api/v1/webhooks",
            &shop.manager,
            &json!({"url": url, "events": ["sale.completed"]}),
        )
        .await,
        403,
        "rbac.forbidden",
    )
    .await;
    let made = webhook(&shop, &url, json!(["sale.completed", "stock.low"])).await;
    assert_eq!(made.status(), 201, "{}", made.text().await.unwrap());
    let made: Value = made.json().await.unwrap();
    let secret = made["secret"].as_str().unwrap().to_owned();
    let id = made["webhook"]["id"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("whsec_"));
    let listed: Value = app
        .get_as("/api/v1/webhooks", &shop.admin)
        .await
        .json()
        .await
        .unwrap();
    assert!(
        !listed.to_string().contains(&secret),
        "the secret is shown once"
    );

    // A sale: one delivery, through the job queue.
    shop.open_session("50.00").await;
    let tea = shop.product("TEA", "3.00", &shop.standard, false).await;
    let sold = shop
        .sell(&shop.cashier, "s-1", &shop.cash_sale(&tea, "1", "5.00"))
        .await;
    assert_eq!(sold.status(), 201);
    let sold: Value = sold.json().await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let queued: i64 =
            sqlx::query_scalar("SELECT count(*) FROM jobs WHERE kind = 'webhooks.deliver'")
                .fetch_one(&app.pool)
                .await
                .unwrap();
        if queued == 1 {
            break;
        }
        assert!(Instant::now() < deadline, "no delivery was queued");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The receiver fails twice, then takes it.
    let got = flaky.got.clone();
    run_until(&shop, || got.lock().unwrap().len() >= 3).await;
    let received = flaky.got.lock().unwrap().clone();
    assert_eq!(received.len(), 3);
    for r in &received {
        assert_eq!(r.event, "sale.completed");
        assert_eq!(
            r.event_id, received[0].event_id,
            "one event id for every attempt"
        );
        assert_eq!(r.body, received[0].body, "the same body");
        assert!(verify(&secret, &r.signature, &r.body), "{r:?}");
        assert!(!verify("whsec_wrong", &r.signature, &r.body));
    }
    let event: Value = serde_json::from_str(&received[0].body).unwrap();
    assert_eq!(event["type"], "sale.completed");
    assert_eq!(event["id"], received[0].event_id.as_str());
    assert_eq!(event["data"]["id"], sold["id"]);
    let log: Value = app
        .get_as(&format!("/api/v1/webhooks/{id}/deliveries"), &shop.admin)
        .await
        .json()
        .await
        .unwrap();
    let delivery = &log["items"][0];
    assert_eq!(delivery["status"], "delivered", "{log}");
    assert_eq!(delivery["attempts"], 3);
    assert_eq!(delivery["last_status"], 200);

    // A replay: the same event id and body, signed anew.
    let replayed = app
        .post_as(
            &format!(
                "/api/v1/webhooks/{id}/deliveries/{}/replay",
                delivery["id"].as_str().unwrap()
            ),
            &shop.admin,
            &json!({}),
        )
        .await;
    assert_eq!(replayed.status(), 202);
    let got = flaky.got.clone();
    run_until(&shop, || got.lock().unwrap().len() >= 4).await;
    let again = flaky.got.lock().unwrap()[3].clone();
    assert_eq!(again.event_id, received[0].event_id);
    assert_eq!(again.body, received[0].body);
    assert!(verify(&secret, &again.signature, &again.body));
}

#[tokio::test]
async fn a_receiver_that_never_answers_ends_in_the_dead_letters() {
    let shop = Shop::open_with(|c| {
        c.jobs.backoff_base_secs = 1;
        c.jobs.backoff_max_secs = 2;
    })
    .await;
    let app = &shop.app;
    shop.set("integrations.webhook_targets", json!(["127.0.0.1"]))
        .await;
    let (down, address) = receiver(usize::MAX).await;
    let made: Value = webhook(
        &shop,
        &format!("http://{address}/hook"),
        json!(["stock.low"]),
    )
    .await
    .json()
    .await
    .unwrap();
    let id = made["webhook"]["id"].as_str().unwrap().to_owned();
    let queued = plugpos::core::webhooks::queue(
        &app.state,
        "stock.low",
        json!({"product_id": "p"}),
        app.clock.now(),
    )
    .await
    .unwrap();
    assert_eq!(queued, 1);
    let dead = || async {
        let log: Value = app
            .get_as(&format!("/api/v1/webhooks/{id}/deliveries"), &shop.admin)
            .await
            .json()
            .await
            .unwrap();
        log["items"][0].clone()
    };
    for _ in 0..12 {
        app.run_jobs().await;
        if dead().await["status"] == "dead" {
            break;
        }
        app.clock.advance(chrono::Duration::seconds(5));
    }
    let delivery = dead().await;
    assert_eq!(delivery["status"], "dead", "{delivery}");
    assert_eq!(delivery["attempts"], 8);
    assert_eq!(delivery["last_status"], 500);
    assert_eq!(down.got.lock().unwrap().len(), 8);
    let job: String = sqlx::query_scalar("SELECT status FROM jobs WHERE kind = 'webhooks.deliver'")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(job, "dead");
}
