//! The offline push: a till that lost the server pushes what it did, in order, in its register's
//! receipt series; each document is recorded once, as the till made it, and what the server
//! would have refused online goes to the conflict log for a manager.

use serde_json::{Value, json};

use crate::devices::{Till, till};
use crate::helpers::problem;
use crate::shop::Shop;

/// `R1-2026-000007` -> `R1-2026-0000{07 + by}`.
fn after(number: &str, by: u32) -> String {
    let (head, digits) = number.rsplit_once('-').unwrap();
    let next = digits.parse::<u32>().unwrap() + by;
    format!("{head}-{next:0width$}", width = digits.len())
}

/// Correction number `n` of the register and year of receipt `number`.
fn correction(number: &str, n: u32) -> String {
    let (head, digits) = number.rsplit_once('-').unwrap();
    format!("{head}-R{n:0width$}", width = digits.len())
}

async fn push(till: &Till<'_>, device: &str, documents: Value) -> reqwest::Response {
    till.post(
        "/api/v1/sync/push",
        &json!({"device_id": device, "documents": documents}),
    )
    .await
}

/// Pulls the feed from scratch: the products as the till caches them, by id.
async fn pull_products(till: &Till<'_>) -> serde_json::Map<String, Value> {
    let mut products = serde_json::Map::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/api/v1/sync/changes?limit=500&cursor={c}"),
            None => "/api/v1/sync/changes?limit=500".to_owned(),
        };
        let page: Value = till.get(&path).await.json().await.unwrap();
        for item in page["items"].as_array().unwrap() {
            if item["entity"] == "product" && item["op"] == "upsert" {
                products.insert(
                    item["key"].as_str().unwrap().to_owned(),
                    item["data"].clone(),
                );
            }
        }
        cursor = Some(page["next_cursor"].as_str().unwrap().to_owned());
        if page["more"] == false {
            return products;
        }
    }
}

/// The id of the device enrolled on the shop's register (the till's).
async fn device_of(till: &Till<'_>) -> String {
    let shop = till.shop;
    let devices: Value = shop
        .app
        .get_as("/api/v1/devices", &shop.admin)
        .await
        .json()
        .await
        .unwrap();
    let device = devices["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["register_id"] == shop.register.as_str() && d["status"] == "enrolled")
        .unwrap_or_else(|| panic!("no till in {devices}"));
    device["id"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn a_till_pushes_what_it_sold_offline_once_in_its_series_with_conflicts_logged() {
    let shop = Shop::open().await;
    let app = &shop.app;
    let tea = shop.product("TEA", "3.00", &shop.standard, false).await;
    let cake = shop.product("CAKE", "2.50", &shop.reduced, false).await;
    let pen = shop.product("PEN", "1.00", &shop.standard, true).await;
    shop.receive(&pen, "1").await;
    shop.set("sales.allow_negative_stock", json!(false)).await;
    let till = till(&shop, &shop.register, "carla", "cashier pass 123").await;
    let device = device_of(&till).await;
    let me: Value = till.get("/api/v1/auth/me").await.json().await.unwrap();
    let carla = me["id"].as_str().unwrap().to_owned();

    // Online: the till opens its session and sells a cake (so the cake is archived, not deleted).
    let opened = till
        .post(
            "/api/v1/cash-sessions",
            &json!({"register_id": shop.register, "opening_float": "100.00"}),
        )
        .await;
    assert_eq!(opened.status(), 201, "{}", opened.text().await.unwrap());
    let session = opened.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let online = till
        .post("/api/v1/sales", &shop.cash_sale(&cake, "1", "2.50"))
        .await;
    assert_eq!(online.status(), 201, "{}", online.text().await.unwrap());
    let online: Value = online.json().await.unwrap();
    let last = online["receipt_number"].as_str().unwrap().to_owned();

    // The till pulls, then loses the server; meanwhile the tea costs more and the cake goes.
    let cached = pull_products(&till).await;
    assert_eq!(cached[&tea]["price"], "3.00");
    assert_eq!(cached[&cake]["price"], "2.50");
    let repriced = app
        .patch_as(
            &format!("/api/v1/products/{tea}"),
            &shop.manager,
            &json!({"price": "3.50", "version": 1}),
        )
        .await;
    assert_eq!(repriced.status(), 200, "{}", repriced.text().await.unwrap());
    let removed: Value = app
        .client
        .delete(app.url(&format!("/api/v1/products/{cake}")))
        .bearer_auth(&shop.manager)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(removed["outcome"], "archived");

    // Offline, the till sold two teas at the price it knew and the archived cake.
    let tea_sale = uuid::Uuid::now_v7().to_string();
    let cake_sale = uuid::Uuid::now_v7().to_string();
    let documents = json!([
        {"type": "sale", "id": tea_sale, "created_at": "2026-01-15T10:00:00Z", "user_id": carla,
         "receipt_number": after(&last, 1), "cash_session_id": session,
         "lines": [{"product_id": tea, "quantity": "2", "unit_price": "3.00"}],
         "payments": [{"method": "cash", "amount": "10.00"}], "total": "6.00"},
        {"type": "sale", "id": cake_sale, "created_at": "2026-01-15T10:05:00Z", "user_id": carla,
         "receipt_number": after(&last, 2), "cash_session_id": session,
         "lines": [{"product_id": cake, "quantity": "1", "unit_price": "2.50"}],
         "payments": [{"method": "card", "amount": "2.50"}], "total": "2.50"},
    ]);
    let first = push(&till, &device, documents.clone()).await;
    assert_eq!(first.status(), 200, "{}", first.text().await.unwrap());
    let first: Value = first.json().await.unwrap();
    assert_eq!(first["recorded"], 2, "{first}");
    assert_eq!(first["already_recorded"], 0);
    let results = first["results"].as_array().unwrap();
    assert_eq!(results[0]["receipt_number"], after(&last, 1));
    assert_eq!(results[1]["receipt_number"], after(&last, 2));
    assert_eq!(results[0]["created_at"], "2026-01-15T10:00:00Z");
    assert_eq!(results[0]["conflicts"][0]["kind"], "price_changed");
    assert_eq!(results[1]["conflicts"][0]["kind"], "product_archived");

    // Both recorded as the till made them: its prices, its totals, its cashier, its numbers.
    let sold: Value = app
        .get_as(&format!("/api/v1/sales/{tea_sale}"), &shop.manager)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(sold["receipt_number"], after(&last, 1));
    assert_eq!(sold["lines"][0]["unit_price"], "3.00");
    assert_eq!(sold["lines"][0]["catalog_price"], "3.50");
    assert_eq!(sold["totals"]["total"], "6.00");
    assert_eq!(sold["change_due"], "4.00");
    assert_eq!(sold["cashier_id"], carla);
    assert_eq!(sold["cash_session_id"], session);
    // Dated when the server recorded it (so never inside a closed period), the till's time kept.
    assert_eq!(sold["created_at"], results[0]["recorded_at"]);
    assert_ne!(sold["created_at"], "2026-01-15T10:00:00Z");
    let cake_sold: Value = app
        .get_as(&format!("/api/v1/sales/{cake_sale}"), &shop.manager)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(cake_sold["totals"]["total"], "2.50");
    assert_eq!(cake_sold["payments"][0]["method"], "card");

    // Two conflicts, for a manager; a cashier does not see the log.
    let log: Value = app
        .get_as("/api/v1/sync/conflicts?status=open", &shop.manager)
        .await
        .json()
        .await
        .unwrap();
    let entries = log["items"].as_array().unwrap();
    assert_eq!(entries.len(), 2, "{log}");
    let price = entries
        .iter()
        .find(|e| e["kind"] == "price_changed")
        .unwrap();
    assert_eq!(price["document_id"], tea_sale);
    assert_eq!(price["detail"]["till_price"], "3.00");
    assert_eq!(price["detail"]["server_price"], "3.50");
    assert_eq!(price["device_id"], device);
    problem(
        app.get_as("/api/v1/sync/conflicts", &shop.cashier).await,
        403,
        "rbac.forbidden",
    )
    .await;
    problem(
        till.get("/api/v1/sync/conflicts").await,
        403,
        "rbac.forbidden",
    )
    .await;

    // The same push again records nothing new and answers the same results.
    let count = |v: Value| v["items"].as_array().unwrap().len();
    let sales_before = count(
        app.get_as("/api/v1/sales?limit=200", &shop.manager)
            .await
            .json()
            .await
            .unwrap(),
    );
    let again = push(&till, &device, documents.clone()).await;
    assert_eq!(again.status(), 200, "{}", again.text().await.unwrap());
    let again: Value = again.json().await.unwrap();
    assert_eq!(again["recorded"], 0);
    assert_eq!(again["already_recorded"], 2);
    assert_eq!(again["results"], first["results"]);
    let sales_after = count(
        app.get_as("/api/v1/sales?limit=200", &shop.manager)
            .await
            .json()
            .await
            .unwrap(),
    );
    assert_eq!(sales_after, sales_before);
    // Another document under a pushed id is refused.
    let mut changed = documents[0].clone();
    changed["total"] = json!("6.01");
    problem(
        push(&till, &device, json!([changed])).await,
        409,
        "sync.document_conflict",
    )
    .await;

    // A gap is refused, naming the missing number; nothing of that push is recorded.
    let skipped = uuid::Uuid::now_v7().to_string();
    let gap = push(
        &till,
        &device,
        json!([{"type": "sale", "id": skipped, "created_at": "2026-01-15T11:00:00Z", "user_id": carla,
                "receipt_number": after(&last, 4), "cash_session_id": session,
                "lines": [{"product_id": tea, "quantity": "1", "unit_price": "3.00"}],
                "payments": [{"method": "cash", "amount": "3.00"}], "total": "3.00"}]),
    )
    .await;
    let body = problem(gap, 409, "sync.sequence_gap").await;
    assert!(
        body["detail"].as_str().unwrap().contains(&after(&last, 3)),
        "{body}"
    );
    let missing = app
        .get_as(&format!("/api/v1/sales/{skipped}"), &shop.manager)
        .await;
    assert_eq!(missing.status(), 404);

    // A total the lines do not give is refused; a bad field is named under its document.
    let wrong = push(
        &till,
        &device,
        json!([{"type": "sale", "id": uuid::Uuid::now_v7(), "created_at": "2026-01-15T11:00:00Z", "user_id": carla,
                "receipt_number": after(&last, 3), "cash_session_id": session,
                "lines": [{"product_id": tea, "quantity": "1", "unit_price": "3.00"}],
                "payments": [{"method": "cash", "amount": "3.00"}], "total": "2.00"}]),
    )
    .await;
    problem(wrong, 422, "sync.total_mismatch").await;
    let bad = push(
        &till,
        &device,
        json!([{"type": "sale", "id": uuid::Uuid::now_v7(), "created_at": "2026-01-15T11:00:00Z", "user_id": carla,
                "receipt_number": after(&last, 3), "cash_session_id": session,
                "lines": [{"product_id": tea, "quantity": "-1", "unit_price": "3.00"}],
                "payments": [{"method": "cash", "amount": "3.00"}], "total": "3.00"},
               {"type": "refund", "id": "x"}]),
    )
    .await;
    let body = problem(bad, 422, "validation.failed").await;
    let fields: Vec<&str> = body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert!(fields.contains(&"documents[1].type"), "{body}");
    assert!(fields.contains(&"documents[1].id"), "{body}");
    let unnumbered = push(
        &till,
        &device,
        json!([{"type": "sale", "id": uuid::Uuid::now_v7(), "created_at": "2026-01-15T11:00:00Z", "user_id": carla,
                "cash_session_id": session, "lines": [{"product_id": tea, "quantity": "1", "unit_price": "3.00"}],
                "payments": [{"method": "cash", "amount": "3.00"}], "total": "3.00"}]),
    )
    .await;
    let body = problem(unnumbered, 422, "validation.failed").await;
    assert_eq!(
        body["errors"][0]["field"], "documents[0].receipt_number",
        "{body}"
    );

    // Stock below zero (with the switch off), then the drawer: cash out, closed, a new session
    // opened offline and a sale in it, all in one push, in order.
    let pen_sale = uuid::Uuid::now_v7().to_string();
    let new_session = uuid::Uuid::now_v7().to_string();
    let later_sale = uuid::Uuid::now_v7().to_string();
    let tea_back = uuid::Uuid::now_v7().to_string();
    let day = push(
        &till,
        &device,
        json!([
            {"type": "sale", "id": pen_sale, "created_at": "2026-01-15T12:00:00Z", "user_id": carla,
             "receipt_number": after(&last, 3), "cash_session_id": session,
             "lines": [{"product_id": pen, "quantity": "2", "unit_price": "1.00"}],
             "payments": [{"method": "cash", "amount": "2.00"}], "total": "2.00"},
            {"type": "return", "id": tea_back, "created_at": "2026-01-15T12:10:00Z", "user_id": carla,
             "receipt_number": correction(&last, 1), "cash_session_id": session, "original_sale_id": tea_sale,
             "lines": [{"line_no": 1, "quantity": "1"}], "refunds": [{"method": "cash", "amount": "3.00"}],
             "reason_code": "changed_mind"},
            {"type": "cash_movement", "id": uuid::Uuid::now_v7(), "created_at": "2026-01-15T12:30:00Z", "user_id": carla,
             "cash_session_id": session, "kind": "out", "amount": "5.00", "reason": "window cleaner"},
            {"type": "cash_session_close", "id": uuid::Uuid::now_v7(), "created_at": "2026-01-15T18:00:00Z", "user_id": carla,
             "cash_session_id": session, "counted_cash": "102.50"},
            {"type": "cash_session_open", "id": new_session, "created_at": "2026-01-16T08:00:00Z", "user_id": carla,
             "opening_float": "50.00"},
            {"type": "sale", "id": later_sale, "created_at": "2026-01-16T09:00:00Z", "user_id": carla,
             "receipt_number": after(&last, 4), "cash_session_id": new_session,
             "lines": [{"product_id": tea, "quantity": "1", "unit_price": "3.50"}],
             "payments": [{"method": "cash", "amount": "5.00"}], "total": "3.50"},
        ]),
    )
    .await;
    assert_eq!(day.status(), 200, "{}", day.text().await.unwrap());
    let day: Value = day.json().await.unwrap();
    assert_eq!(day["recorded"], 6, "{day}");
    let results = day["results"].as_array().unwrap();
    assert_eq!(results[0]["conflicts"][0]["kind"], "stock_negative");
    assert_eq!(shop.stock(&pen).await.as_deref(), Some("-1.000"));
    assert_eq!(results[1]["receipt_number"], correction(&last, 1));
    assert_eq!(results[1]["total"], "-3.00");
    assert_eq!(
        results[1]["conflicts"][0]["kind"], "user_not_allowed",
        "{day}"
    );
    // 100 float + 2.50 online + 6.00 + 2.00 cash sales - 3.00 refund - 5.00 out = 102.50.
    assert_eq!(results[3]["expected_cash"], "102.50", "{day}");
    assert_eq!(results[3]["variance"], "0.00");
    assert_eq!(results[4]["cash_session_id"], new_session);
    assert!(
        results[5]["conflicts"].as_array().unwrap().is_empty(),
        "{day}"
    );
    let back: Value = app
        .get_as(&format!("/api/v1/returns/{tea_back}"), &shop.manager)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(back["number"], correction(&last, 1), "{back}");
    assert_eq!(back["original_sale_id"], tea_sale);
    let closed: Value = app
        .get_as(&format!("/api/v1/cash-sessions/{session}"), &shop.manager)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(closed["status"], "closed");
    let reopened: Value = app
        .get_as(
            &format!("/api/v1/cash-sessions/{new_session}"),
            &shop.manager,
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(reopened["status"], "open");
    assert_eq!(reopened["opened_by"], carla);
    let later: Value = app
        .get_as(&format!("/api/v1/sales/{later_sale}"), &shop.manager)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(later["cash_session_id"], new_session);
    // Online selling goes on from the till's last number.
    let next = till
        .post("/api/v1/sales", &shop.cash_sale(&tea, "1", "3.50"))
        .await;
    assert_eq!(next.status(), 201, "{}", next.text().await.unwrap());
    assert_eq!(
        next.json::<Value>().await.unwrap()["receipt_number"],
        after(&last, 5)
    );

    // The sale's audit record says where it came from.
    let audit: Value = app
        .get_as(
            &format!("/api/v1/audit?entity=sale&entity_id={tea_sale}"),
            &shop.admin,
        )
        .await
        .json()
        .await
        .unwrap();
    let record = &audit["items"][0];
    assert_eq!(record["actor"]["user_id"], carla, "{audit}");
    assert_eq!(record["workstation_id"], device.as_str());
    assert_eq!(record["after"]["offline"]["device_id"], device, "{audit}");
    assert_eq!(
        record["after"]["offline"]["till_created_at"],
        "2026-01-15T10:00:00Z"
    );

    // A manager resolves an entry once, with a note.
    let id = price["id"].as_str().unwrap();
    let path = format!("/api/v1/sync/conflicts/{id}/resolve");
    problem(
        app.post_as(&path, &shop.cashier, &json!({"note": "fine"}))
            .await,
        403,
        "rbac.forbidden",
    )
    .await;
    problem(
        app.post_as(&path, &shop.manager, &json!({"note": "  "}))
            .await,
        422,
        "validation.failed",
    )
    .await;
    let resolved = app
        .post_as(
            &path,
            &shop.manager,
            &json!({"note": "price label was late; accepted"}),
        )
        .await;
    assert_eq!(resolved.status(), 200, "{}", resolved.text().await.unwrap());
    let resolved: Value = resolved.json().await.unwrap();
    assert_eq!(resolved["status"], "resolved");
    assert_eq!(
        resolved["resolution_note"],
        "price label was late; accepted"
    );
    problem(
        app.post_as(&path, &shop.manager, &json!({"note": "again"}))
            .await,
        409,
        "sync.conflict_resolved",
    )
    .await;
    let open: Value = app
        .get_as("/api/v1/sync/conflicts?status=open", &shop.manager)
        .await
        .json()
        .await
        .unwrap();
    // Left open: the archived cake, the pen below zero, and the return by a cashier who needs a
    // manager's approval for it online.
    let mut kinds: Vec<&str> = open["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    kinds.sort_unstable();
    assert_eq!(
        kinds,
        ["product_archived", "stock_negative", "user_not_allowed"],
        "{open}"
    );

    // A manager closes the till's drawer from the back office while it is offline. Its sales then
    // wait for an open session (409), and go into the one the till opens, logged.
    let closed = app
        .post_as(
            &format!("/api/v1/cash-sessions/{new_session}/close"),
            &shop.manager,
            &json!({"counted_cash": "53.50", "variance_reason": "closed for the night"}),
        )
        .await;
    assert_eq!(closed.status(), 200, "{}", closed.text().await.unwrap());
    let late_sale = uuid::Uuid::now_v7().to_string();
    let late = json!([
        {"type": "sale", "id": late_sale, "created_at": "2026-01-16T19:00:00Z", "user_id": carla,
         "receipt_number": after(&last, 6), "cash_session_id": new_session,
         "lines": [{"product_id": tea, "quantity": "1", "unit_price": "3.50"}],
         "payments": [{"method": "cash", "amount": "3.50"}], "total": "3.50"},
        {"type": "cash_session_close", "id": uuid::Uuid::now_v7(), "created_at": "2026-01-16T20:00:00Z", "user_id": carla,
         "cash_session_id": new_session, "counted_cash": "57.00"},
    ]);
    let body = problem(
        push(&till, &device, late.clone()).await,
        409,
        "cash.no_open_session",
    )
    .await;
    assert!(
        body["detail"].as_str().unwrap().contains("documents[0]"),
        "{body}"
    );
    let reopened = till
        .post(
            "/api/v1/cash-sessions",
            &json!({"register_id": shop.register, "opening_float": "20.00"}),
        )
        .await;
    assert_eq!(reopened.status(), 201);
    let today = reopened.json::<Value>().await.unwrap()["id"].clone();
    let pushed = push(&till, &device, late).await;
    assert_eq!(pushed.status(), 200, "{}", pushed.text().await.unwrap());
    let pushed: Value = pushed.json().await.unwrap();
    assert_eq!(pushed["results"][0]["cash_session_id"], today, "{pushed}");
    assert_eq!(
        pushed["results"][0]["conflicts"][0]["kind"],
        "session_closed"
    );
    assert_eq!(pushed["results"][1]["already_closed"], true, "{pushed}");
    assert_eq!(
        pushed["results"][1]["conflicts"][0]["kind"],
        "session_closed"
    );
    let kept: Value = app
        .get_as(
            &format!("/api/v1/cash-sessions/{new_session}"),
            &shop.manager,
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(kept["counted_cash"], "53.50", "the manager's close stands");
}

#[tokio::test]
async fn only_the_tills_own_session_pushes_for_it() {
    let shop = Shop::open().await;
    let till = till(&shop, &shop.register, "carla", "cashier pass 123").await;
    let device = device_of(&till).await;
    // Without the device's credential: not a till.
    let response = shop
        .app
        .post_as(
            "/api/v1/sync/push",
            &shop.cashier,
            &json!({"device_id": device, "documents": []}),
        )
        .await;
    problem(response, 401, "device.required").await;
    // Another device's id.
    let response = push(&till, &uuid::Uuid::now_v7().to_string(), json!([])).await;
    problem(response, 403, "device.mismatch").await;
    let response = push(&till, &device, json!([])).await;
    problem(response, 422, "validation.failed").await;

    // While the till pushes, its online documents wait: their numbers come after the pushed ones.
    let opened = till
        .post(
            "/api/v1/cash-sessions",
            &json!({"register_id": shop.register, "opening_float": "10.00"}),
        )
        .await;
    assert_eq!(opened.status(), 201, "{}", opened.text().await.unwrap());
    let bread = shop.product("BREAD", "1.99", &shop.reduced, false).await;
    let lock = plugpos::core::devices::push_lock(&shop.app.state, device.parse().unwrap());
    let pushing = lock.lock().await;
    let refused = till
        .post("/api/v1/sales", &shop.cash_sale(&bread, "1", "1.99"))
        .await;
    problem(refused, 409, "sync.push_in_progress").await;
    drop(pushing);
    let sold = till
        .post("/api/v1/sales", &shop.cash_sale(&bread, "1", "1.99"))
        .await;
    assert_eq!(sold.status(), 201, "{}", sold.text().await.unwrap());
}
