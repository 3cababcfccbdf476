//! Suspicious-pattern flags and incident notes (issue 30), on a scripted spike.

use serde_json::{Value, json};

use crate::helpers::problem;
use crate::shop::Shop;

#[tokio::test]
async fn flags_fire_on_a_scripted_spike_and_incident_notes_are_append_only() {
    let shop = Shop::open().await;
    let (pen, bread) = shop.pen_and_bread().await;
    // Opening hours that exclude now (the test's clock is the wall clock's time of day): a
    // window of one minute, twelve hours away.
    let now = shop
        .app
        .clock
        .now()
        .with_timezone(&chrono_tz::Europe::Berlin);
    let away = (now + chrono::Duration::hours(12))
        .format("%H:%M")
        .to_string();
    let away_end = (now + chrono::Duration::hours(12) + chrono::Duration::minutes(1))
        .format("%H:%M")
        .to_string();
    shop.set("flags.opening_hours", json!(format!("{away}-{away_end}")))
        .await;
    // The manager works a till: sells, gives back, voids, discounts.
    let session = {
        let response = shop
            .app
            .post_as(
                "/api/v1/cash-sessions",
                &shop.manager,
                &json!({"register_id": shop.register, "opening_float": "20.00"}),
            )
            .await;
        assert_eq!(response.status(), 201);
        response.json::<Value>().await.unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let sell = |key: &'static str, body: Value| {
        let shop = &shop;
        async move {
            let response = shop.sell(&shop.manager, key, &body).await;
            assert_eq!(response.status(), 201, "{}", response.text().await.unwrap());
            response.json::<Value>().await.unwrap()
        }
    };
    let big = sell(
        "big",
        json!({"register_id": shop.register, "lines": [{"product_id": pen, "quantity": "6"}],
                                 "payments": [{"method": "card", "amount": "15.00"}]}),
    )
    .await;
    for i in 0..6 {
        let response = shop.app.client.post(shop.app.url("/api/v1/returns")).bearer_auth(&shop.manager)
            .header("Idempotency-Key", format!("r{i}"))
            .json(&json!({"register_id": shop.register, "original_sale_id": big["id"],
                          "lines": [{"line_no": 1, "quantity": "1"}], "refunds": [{"method": "card", "amount": "2.50"}],
                          "reason_code": "changed_mind"}))
            .send().await.unwrap();
        assert_eq!(response.status(), 201);
    }
    // Paid exactly in cash, voided a minute later.
    let exact = sell("exact", shop.cash_sale(&bread, "1", "1.99")).await;
    shop.app.clock.advance(chrono::Duration::minutes(1));
    let url = shop.app.url(&format!(
        "/api/v1/sales/{}/void",
        exact["id"].as_str().unwrap()
    ));
    let response = shop
        .app
        .client
        .post(url)
        .bearer_auth(&shop.manager)
        .json(&json!({"reason_code": "customer_cancelled"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let void: Value = response.json().await.unwrap();
    let generous = sell(
        "generous",
        json!({"register_id": shop.register,
        "lines": [{"product_id": pen, "quantity": "2"}],
        "discount": {"kind": "percent", "value": "50", "reason_code": "staff"},
        "payments": [{"method": "card", "amount": "2.50"}]}),
    )
    .await;
    let response = shop
        .app
        .post_as(
            &format!("/api/v1/cash-sessions/{session}/no-sale"),
            &shop.manager,
            &json!({"reason": "checking the float"}),
        )
        .await;
    assert_eq!(response.status(), 201);

    // The reviews queued by those documents run half a minute later.
    shop.app.clock.advance(chrono::Duration::seconds(31));
    let jobs = shop.app.run_jobs().await;
    assert!(jobs.iter().any(|j| j.kind == "flags.review"), "{jobs:?}");
    let flags: Value = shop
        .app
        .get_as("/api/v1/flags", &shop.manager)
        .await
        .json()
        .await
        .unwrap();
    let mut rules: Vec<&str> = flags["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["rule"].as_str().unwrap())
        .collect();
    rules.sort_unstable();
    assert_eq!(
        rules,
        [
            "corrections_count",
            "corrections_share",
            "discount",
            "outside_hours",
            "void_after_exact_cash"
        ],
        "{flags}"
    );
    let find = |rule: &str| {
        flags["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["rule"] == rule)
            .unwrap()
            .clone()
    };
    assert_eq!(find("corrections_count")["details"]["count"], 7);
    assert_eq!(
        find("corrections_count")["document_ids"]
            .as_array()
            .unwrap()
            .len(),
        7
    );
    assert_eq!(find("discount")["document_ids"], json!([generous["id"]]));
    assert_eq!(
        find("void_after_exact_cash")["document_ids"],
        json!([exact["id"], void["id"]])
    );
    // Each is a security event; running the rules again raises nothing twice.
    let events: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM security_events WHERE kind = 'suspicious_activity'",
    )
    .fetch_one(&shop.app.pool)
    .await
    .unwrap();
    assert_eq!(events, 5);
    sqlx::query(
        "INSERT INTO jobs (id, kind, payload, max_attempts, run_at, created_at, updated_at) \
                 VALUES (gen_random_uuid(), 'flags.sweep', '{}', 1, now(), now(), now())",
    )
    .execute(&shop.app.pool)
    .await
    .unwrap();
    shop.app.run_jobs().await;
    let again: Value = shop
        .app
        .get_as("/api/v1/flags", &shop.manager)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(again["items"].as_array().unwrap().len(), 5);
    // Cashiers do not see flags; auditors do.
    problem(
        shop.app.get_as("/api/v1/flags", &shop.cashier).await,
        403,
        "rbac.forbidden",
    )
    .await;
    let auditor = shop
        .app
        .user_token("audrey", "auditor pass 123", &["auditor"])
        .await;
    assert_eq!(
        shop.app
            .get_as("/api/v1/flags?rule=discount", &auditor)
            .await
            .status(),
        200
    );

    // An incident note about the flags, then a later one amending it.
    let flag_ids: Vec<Value> = flags["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["id"].clone())
        .collect();
    let response = shop.app.post_as("/api/v1/incidents", &auditor, &json!({
        "title": "Returns spike on register 1", "body": "Seven corrections in one day; asked the manager.",
        "flag_ids": flag_ids, "document_ids": [big["id"]]})).await;
    assert_eq!(response.status(), 201, "{}", response.text().await.unwrap());
    let note: Value = response.json().await.unwrap();
    let response = shop
        .app
        .post_as(
            "/api/v1/incidents",
            &auditor,
            &json!({
        "title": "Explained", "body": "A faulty batch of pens.", "amends": note["id"]}),
        )
        .await;
    assert_eq!(response.status(), 201);
    problem(
        shop.app
            .post_as(
                "/api/v1/incidents",
                &auditor,
                &json!({
        "title": "x", "body": "y", "flag_ids": [note["id"]]}),
            )
            .await,
        422,
        "validation.failed",
    )
    .await;
    let notes: Value = shop
        .app
        .get_as("/api/v1/incidents", &auditor)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(notes["items"][0]["amends"], note["id"]);
    let err = sqlx::query("UPDATE incidents SET body = 'nothing happened'")
        .execute(&shop.app.pool)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("append-only"), "{err}");
    let audited: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM audit_records WHERE action IN ('incident.create', 'flag.raise')",
    )
    .fetch_one(&shop.app.pool)
    .await
    .unwrap();
    assert_eq!(audited, 7);
}

#[tokio::test]
async fn the_hourly_sweep_also_finds_who_sold_into_someone_elses_session() {
    let shop = Shop::open().await;
    let (pen, _) = shop.pen_and_bread().await;
    shop.open_session("0.00").await;
    // The manager sells at half price on the cashier's till (their session, manage_any).
    let response = shop
        .sell(
            &shop.manager,
            "half",
            &json!({"register_id": shop.register, "lines": [{"product_id": pen, "quantity": "2"}],
                    "discount": {"kind": "percent", "value": "50", "reason_code": "staff"},
                    "payments": [{"method": "card", "amount": "2.50"}]}),
        )
        .await;
    assert_eq!(response.status(), 201, "{}", response.text().await.unwrap());
    // Say the review that sale queued was lost: the sweep still finds the seller.
    sqlx::query("DELETE FROM jobs WHERE kind = 'flags.review'")
        .execute(&shop.app.pool)
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO jobs (id, kind, payload, max_attempts, run_at, created_at, updated_at) \
         VALUES (gen_random_uuid(), 'flags.sweep', '{}', 1, now() - interval '1 hour', now(), now())",
    )
    .execute(&shop.app.pool)
    .await
    .unwrap();
    shop.app.run_jobs().await;
    let flags: Value = shop
        .app
        .get_as("/api/v1/flags?rule=discount", &shop.manager)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(flags["items"].as_array().unwrap().len(), 1, "{flags}");
    let me: Value = shop
        .app
        .get_as("/api/v1/auth/me", &shop.manager)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(flags["items"][0]["user_id"], me["id"]);
}
