//! Abuse of the unauthenticated door: login floods, guessing from one machine or many, and the
//! bookkeeping they leave behind (issue 28, findings 1 and 13).

use std::net::IpAddr;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::helpers::{ADMIN_PASSWORD, TestApp, problem};
use crate::shop::Shop;

/// A client whose requests come from 127.0.0.`host` (all of 127/8 is this machine's loopback).
fn client_from(host: u8) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(IpAddr::from([127, 0, 0, host]))
        .build()
        .unwrap()
}

async fn login_from(
    app: &TestApp,
    client: &reqwest::Client,
    username: &str,
    password: &str,
) -> reqwest::Response {
    client
        .post(app.url("/api/v1/auth/login"))
        .json(&json!({"username": username, "password": password}))
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn sales_keep_going_while_random_usernames_flood_the_login() {
    let shop = Shop::open().await;
    shop.open_session("100.00").await;
    let tea = shop.product("TEA", "3.00", &shop.standard, false).await;
    // Counted as this app forgets: a restore in another test of this process forgets every
    // pool's connections, which moves every app's generation too.
    let changes = shop.app.state.changes().clone();
    let deadline = Instant::now() + Duration::from_secs(5);
    while !changes.is_listening() {
        assert!(Instant::now() < deadline, "the server never listened");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // The setup's own changes are heard before the count starts. The last write forgot the
    // caches when it answered, but its notification may still be on its way: wait for a change
    // after this marker, then for a quiet spell, so a late notification is not counted.
    shop.app
        .behind_its_back(async {
            sqlx::query("SELECT pg_notify('plugpos_changes', 'test')")
                .execute(&shop.app.pool)
                .await
                .unwrap();
        })
        .await;
    let mut heard = changes.forgotten_here();
    loop {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let now = changes.forgotten_here();
        if now == heard {
            break;
        }
        heard = now;
    }
    let forgotten = changes.forgotten_here();

    let flood: Vec<_> = (0..300)
        .map(|i| {
            let client = shop.app.client.clone();
            let url = shop.app.url("/api/v1/auth/login");
            tokio::spawn(async move {
                let response = client
                    .post(url)
                    .json(&json!({"username": format!("ghost-{i}"), "password": "a random guess"}))
                    .send()
                    .await
                    .unwrap();
                let status = response.status().as_u16();
                let retry_after = response.headers().get("retry-after").cloned();
                let body: Value = response.json().await.unwrap();
                (
                    status,
                    body["code"].as_str().unwrap_or("").to_owned(),
                    retry_after,
                )
            })
        })
        .collect();
    // The app's pool has 5 connections; each login held one while the hasher (2 at a time)
    // worked through the queue, so sales waited behind hundreds of guesses.
    for i in 0..20 {
        let response = shop
            .sell(
                &shop.cashier,
                &format!("flood-{i}"),
                &shop.cash_sale(&tea, "1", "5.00"),
            )
            .await;
        assert_eq!(response.status(), 201, "{}", response.text().await.unwrap());
    }
    let mut busy = 0;
    for answer in flood {
        let (status, code, retry_after) = answer.await.unwrap();
        match (status, code.as_str()) {
            (401, "auth.invalid_credentials") => {}
            (429, "auth.busy") => {
                busy += 1;
                assert_eq!(retry_after.unwrap(), "1");
            }
            other => panic!("unexpected answer to a guess: {other:?}"),
        }
    }
    assert!(busy > 0, "a full hashing queue refuses at once");
    assert_eq!(
        changes.forgotten_here(),
        forgotten,
        "refused logins do not empty the caches sales read"
    );
}

#[tokio::test]
async fn a_machine_guessing_locks_itself_out_not_the_owner_at_another_till() {
    let app = TestApp::spawn_initialized_with(|c| {
        c.auth.throttle_after_failures = 3;
        c.auth.lockout_after_failures = 5;
        c.auth.account_lockout_after_failures = 12;
    })
    .await;
    let guesser = client_from(2);
    for round in 0..5 {
        let response = login_from(&app, &guesser, "admin", "wrong password here").await;
        problem(response, 401, "auth.invalid_credentials").await;
        // Past the throttle each guess waits; the test moves the clock instead.
        if round >= 2 {
            app.clock.advance(chrono::Duration::minutes(6));
        }
    }
    let response = login_from(&app, &guesser, "admin", ADMIN_PASSWORD).await;
    problem(response, 429, "auth.locked").await;
    // The owner, at the till next to it, logs in.
    let till = client_from(3);
    let response = login_from(&app, &till, "admin", ADMIN_PASSWORD).await;
    assert_eq!(response.status(), 200);

    // Many machines together reach the softer account-wide limit: then it is locked everywhere.
    for host in 10..17 {
        let client = client_from(host);
        let response = login_from(&app, &client, "admin", "wrong password here").await;
        problem(response, 401, "auth.invalid_credentials").await;
    }
    let response = login_from(&app, &till, "admin", ADMIN_PASSWORD).await;
    problem(response, 429, "auth.locked").await;
    let locks: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM security_events WHERE kind = 'account_locked' AND username = 'admin'",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(locks, 2, "the address's lock and the account's");
}

#[tokio::test]
async fn a_burst_of_parallel_guesses_is_counted_before_any_is_checked() {
    let app = TestApp::spawn_initialized_with(|c| {
        c.auth.throttle_after_failures = 3;
        c.auth.lockout_after_failures = 10;
        c.auth.max_queued_hashes = 100;
    })
    .await;
    let guesses: Vec<_> = (0..40)
        .map(|_| {
            let client = app.client.clone();
            let url = app.url("/api/v1/auth/login");
            tokio::spawn(async move {
                client
                    .post(url)
                    .json(&json!({"username": "admin", "password": "wrong password here"}))
                    .send()
                    .await
                    .unwrap()
                    .status()
                    .as_u16()
            })
        })
        .collect();
    let mut checked = 0;
    for guess in guesses {
        match guess.await.unwrap() {
            401 => checked += 1,
            429 => {}
            other => panic!("unexpected status {other}"),
        }
    }
    assert_eq!(
        checked, 3,
        "only the guesses before the throttle are checked"
    );
}

#[tokio::test]
async fn one_address_sending_too_many_unauthenticated_writes_waits() {
    let app = TestApp::spawn_initialized_with(|c| {
        c.auth.public_requests_burst = 5;
        c.auth.public_requests_per_minute = 6;
    })
    .await;
    let noisy = client_from(4);
    for _ in 0..5 {
        let response = login_from(&app, &noisy, "ghost", "a random guess").await;
        assert_eq!(response.status(), 401);
    }
    let response = login_from(&app, &noisy, "admin", ADMIN_PASSWORD).await;
    let retry: u64 = response.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=10).contains(&retry), "one request per 10 s: {retry}");
    problem(response, 429, "rate_limited").await;
    let refresh = noisy
        .post(app.url("/api/v1/auth/refresh"))
        .json(&json!({"refresh_token": "x"}))
        .send()
        .await
        .unwrap();
    problem(refresh, 429, "rate_limited").await;
    // Reads stay open (health probes, the API description), and other tills are not affected.
    let health = noisy.get(app.url("/health/live")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    let response = login_from(&app, &client_from(5), "admin", ADMIN_PASSWORD).await;
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn old_login_counters_and_security_events_are_pruned_and_events_are_append_only() {
    let app = TestApp::spawn_initialized_with(|c| {
        c.auth.security_events_retention_days = 90;
    })
    .await;
    problem(
        app.login("ghost", "wrong password here").await,
        401,
        "auth.invalid_credentials",
    )
    .await;
    sqlx::query(
        "INSERT INTO login_attempts (username_key, client, failures, last_failure_at) \
         VALUES ('old', '10.0.0.1', 3, now() - interval '3 days')",
    )
    .execute(&app.pool)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO security_events (id, occurred_at, kind, username, details) \
         VALUES (gen_random_uuid(), now() - interval '100 days', 'login_failed', 'old', '{}')",
    )
    .execute(&app.pool)
    .await
    .unwrap();

    // The server's own role cannot rewrite or delete the evidence, nor prune recent events.
    let app_role = app.state.pool();
    for statement in [
        "UPDATE security_events SET username = 'someone else'",
        "DELETE FROM security_events",
        "SELECT prune_security_events(now())",
    ] {
        let refused = sqlx::query(statement).execute(app_role).await.unwrap_err();
        assert!(
            refused.to_string().contains("permission denied")
                || refused.to_string().contains("last 30 days"),
            "{statement}: {refused}"
        );
    }

    sqlx::query("INSERT INTO jobs (id, kind, max_attempts, run_at) VALUES (gen_random_uuid(), 'maintenance.prune', 1, $1)")
        .bind(app.clock.now())
        .execute(&app.pool)
        .await
        .unwrap();
    let done = app.run_jobs().await;
    let prune = done.iter().find(|j| j.kind == "maintenance.prune").unwrap();
    assert_eq!(prune.status, "succeeded", "{done:?}");
    let result = prune.result.as_ref().unwrap();
    assert_eq!(result["login_counters_deleted"], 1, "{result}");
    assert_eq!(result["security_events_deleted"], 1, "{result}");
    let users: Vec<String> = sqlx::query_scalar("SELECT DISTINCT username_key FROM login_attempts")
        .fetch_all(&app.pool)
        .await
        .unwrap();
    assert_eq!(users, ["ghost"], "yesterday's guesses are still counted");
    let kept: i64 =
        sqlx::query_scalar("SELECT count(*) FROM security_events WHERE username = 'ghost'")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(kept, 1);
}
