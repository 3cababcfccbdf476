//! Returns, voids, approvals and no-sale drawer opens (issue 30), against a real database.

use serde_json::{Value, json};

use crate::helpers::problem;
use crate::shop::Shop;

/// A manager's approval of `action` for the cashier, with `scope` (the register added).
async fn approval(shop: &Shop, action: &str, mut scope: Value) -> String {
    scope["register_id"] = json!(shop.register);
    let response = shop
        .app
        .post_as(
            "/api/v1/approvals",
            &shop.cashier,
            &json!({"action": action, "approver": {"username": "boss", "password": "manager pass 123"},
                    "scope": scope}),
        )
        .await;
    assert_eq!(response.status(), 201, "{}", response.text().await.unwrap());
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["approved_by"], "boss");
    body["approval_ref"].as_str().unwrap().to_owned()
}

async fn sale_of(shop: &Shop, key: &str, body: &Value) -> Value {
    let response = shop.sell(&shop.cashier, key, body).await;
    assert_eq!(response.status(), 201, "{}", response.text().await.unwrap());
    response.json().await.unwrap()
}

async fn x_report(shop: &Shop, session: &str) -> Value {
    let response = shop
        .app
        .get_as(
            &format!("/api/v1/cash-sessions/{session}/report"),
            &shop.manager,
        )
        .await;
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

#[tokio::test]
async fn partial_and_full_returns_restock_refund_cash_and_show_in_the_x_report() {
    let shop = Shop::open().await;
    let (pen, bread) = shop.pen_and_bread().await;
    let session = shop.open_session("100.00").await;
    // 3 pens (7.50) and a bread (1.99) for 10.00 cash: change 0.51.
    let sale = sale_of(
        &shop,
        "s1",
        &json!({"register_id": shop.register,
                "lines": [{"product_id": pen, "quantity": "3"}, {"product_id": bread, "quantity": "1"}],
                "payments": [{"method": "cash", "amount": "10.00"}]}),
    )
    .await;
    let sale_id = sale["id"].as_str().unwrap();
    assert_eq!(shop.stock(&pen).await.as_deref(), Some("7.000"));

    // The cashier may not take goods back alone.
    let one_pen = json!({"register_id": shop.register, "original_sale_id": sale_id,
                         "lines": [{"line_no": 1, "quantity": "1"}],
                         "refunds": [{"method": "cash", "amount": "2.50"}], "reason_code": "defective"});
    problem(
        shop.give_back(&shop.cashier, "r1", &one_pen).await,
        403,
        "approval.required",
    )
    .await;
    // With the manager's approval (typed on the till), one pen comes back for 2.50 cash.
    let approval_ref = approval(
        &shop,
        "operations.returns.create",
        json!({"sale_id": sale_id, "amount": "2.50"}),
    )
    .await;
    let mut body = one_pen.clone();
    body["approval_ref"] = json!(approval_ref);
    let response = shop.give_back(&shop.cashier, "r1", &body).await;
    assert_eq!(response.status(), 201, "{}", response.text().await.unwrap());
    let first: Value = response.json().await.unwrap();
    assert_eq!(first["kind"], "return");
    assert!(
        first["number"].as_str().unwrap().contains("-R000001"),
        "{first}"
    );
    assert_eq!(first["totals"]["total"], "-2.50");
    assert_eq!(first["taxes"][0]["rate"], "0.19");
    assert_eq!(first["taxes"][0]["tax"], "-0.40");
    assert_eq!(
        first["refunds"],
        json!([{"method": "cash", "amount": "2.50"}])
    );
    assert_eq!(first["approval_ref"], approval_ref.as_str());
    assert_eq!(shop.stock(&pen).await.as_deref(), Some("8.000"));
    // A retry replays; the approval is not used up by its own request.
    let replay = shop.give_back(&shop.cashier, "r1", &body).await;
    assert_eq!(replay.status(), 201);
    assert_eq!(replay.headers()["idempotent-replayed"], "true");
    assert_eq!(replay.json::<Value>().await.unwrap()["id"], first["id"]);

    // The manager returns the rest alone: 2 pens, one damaged (written off), and the bread, by card.
    let rest = json!({"register_id": shop.register, "original_sale_id": sale_id,
                      "lines": [{"line_no": 1, "quantity": "2", "restock": false}, {"line_no": 2, "quantity": "1"}],
                      "refunds": [{"method": "card", "amount": "6.99"}], "reason_code": "changed_mind"});
    // (Sessions are their cashier's: the manager refunds from the cashier's till with manage_any.)
    let response = shop.give_back(&shop.manager, "r2", &rest).await;
    assert_eq!(response.status(), 201, "{}", response.text().await.unwrap());
    let second: Value = response.json().await.unwrap();
    assert!(second["number"].as_str().unwrap().contains("-R000002"));
    assert_eq!(second["totals"]["total"], "-6.99");
    // Written off: the level does not move, the ledger shows it back and out.
    assert_eq!(shop.stock(&pen).await.as_deref(), Some("8.000"));
    let reasons: Vec<String> = sqlx::query_scalar(
        "SELECT reason_code FROM stock_movements WHERE document_id = $1::text::uuid ORDER BY created_at, quantity_delta DESC",
    )
    .bind(second["id"].as_str().unwrap())
    .fetch_all(&shop.app.pool)
    .await
    .unwrap();
    assert_eq!(reasons, ["return", "damaged"]);

    // Nothing is left: another return is refused, whoever asks.
    problem(
        shop.give_back(&shop.manager, "r3", &one_pen).await,
        409,
        "return.exceeds_returnable",
    )
    .await;
    // The sale shows its returns and what is left per line.
    let read: Value = shop
        .app
        .get_as(&format!("/api/v1/sales/{sale_id}"), &shop.cashier)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(read["returns"].as_array().unwrap().len(), 2);
    assert_eq!(read["lines"][0]["returnable"], "0.000");
    assert_eq!(read["lines"][1]["returnable"], "0.000");
    assert_eq!(
        read["totals"]["total"], "9.49",
        "the sale itself never changes"
    );

    // The X report: 2.50 cash back out of the drawer, the card refund counted by method.
    let report = x_report(&shop, &session).await;
    assert_eq!(report["refunds"]["returns_count"], 2);
    assert_eq!(report["refunds"]["total"], "-9.49");
    assert_eq!(report["cash"]["cash_refunds"], "2.50");
    // 100 + 10.00 - 0.51 change - 2.50 refunded.
    assert_eq!(report["cash"]["expected_cash"], "106.99");
    let methods = &report["refunds"]["by_refund_method"];
    assert_eq!(
        methods[0],
        json!({"method": "card", "count": 1, "amount": "6.99"})
    );
    assert_eq!(
        methods[1],
        json!({"method": "cash", "count": 1, "amount": "2.50"})
    );

    // Listed, newest first, and the audit record carries the reason and the approval.
    let list: Value = shop
        .app
        .get_as("/api/v1/returns?limit=1", &shop.cashier)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(list["items"][0]["id"], second["id"]);
    let next = list["next_cursor"].as_str().unwrap();
    let list: Value = shop
        .app
        .get_as(
            &format!("/api/v1/returns?limit=1&cursor={next}"),
            &shop.cashier,
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(list["items"][0]["id"], first["id"]);
    let (reason, approval): (Option<String>, Option<String>) = sqlx::query_as(
        "SELECT reason_code, approval_ref FROM audit_records WHERE entity = 'return' AND entity_id = $1",
    )
    .bind(first["id"].as_str().unwrap())
    .fetch_one(&shop.app.pool)
    .await
    .unwrap();
    assert_eq!(reason.as_deref(), Some("defective"));
    assert_eq!(approval.as_deref(), Some(approval_ref.as_str()));
}

#[tokio::test]
async fn refunds_must_add_up_and_partial_lines_refund_exact_shares() {
    let shop = Shop::open().await;
    let pen = shop.product("PEN3", "3.33", &shop.standard, true).await;
    shop.receive(&pen, "10").await;
    shop.set("sales.max_cashier_discount_percent", json!(1))
        .await;
    shop.open_session("0.00").await;
    let sale = sale_of(
        &shop,
        "s",
        &json!({"register_id": shop.register,
                "lines": [{"product_id": pen, "quantity": "3", "unit_price": "3.33", "discount": "0.01"}],
                "payments": [{"method": "card", "amount": "9.98"}]}),
    )
    .await;
    let id = sale["id"].as_str().unwrap();
    let back = |q: &str, amount: &str| {
        json!({"register_id": shop.register, "original_sale_id": id,
               "lines": [{"line_no": 1, "quantity": q}],
               "refunds": [{"method": "card", "amount": amount}], "reason_code": "other"})
    };
    let wrong = problem(
        shop.give_back(&shop.manager, "a", &back("1", "3.00")).await,
        422,
        "refund.mismatch",
    )
    .await;
    assert!(
        wrong["detail"].as_str().unwrap().contains("3.33"),
        "{wrong}"
    );
    // 9.98 in three parts: 3.33, 3.32, 3.33, adding up to the line exactly.
    let mut totals = Vec::new();
    for (key, amount) in [("b", "3.33"), ("c", "3.32"), ("d", "3.33")] {
        let response = shop.give_back(&shop.manager, key, &back("1", amount)).await;
        assert_eq!(response.status(), 201, "{}", response.text().await.unwrap());
        totals.push(response.json::<Value>().await.unwrap()["totals"]["total"].clone());
    }
    assert_eq!(totals, [json!("-3.33"), json!("-3.32"), json!("-3.33")]);
    problem(
        shop.give_back(&shop.manager, "e", &json!({"register_id": shop.register, "original_sale_id": id,
               "lines": [{"line_no": 1, "quantity": "4"}], "refunds": [{"method": "card", "amount": "1"}],
               "reason_code": "nonsense"}))
        .await,
        422,
        "validation.failed",
    )
    .await;
}

#[tokio::test]
async fn racing_returns_of_one_line_never_give_back_more_than_was_sold() {
    let shop = Shop::open().await;
    let pen = shop.product("PEN", "2.00", &shop.standard, true).await;
    shop.receive(&pen, "10").await;
    shop.open_session("50.00").await;
    let sale = sale_of(
        &shop,
        "s",
        &json!({"register_id": shop.register, "lines": [{"product_id": pen, "quantity": "5"}],
                "payments": [{"method": "cash", "amount": "10.00"}]}),
    )
    .await;
    let id = sale["id"].as_str().unwrap().to_owned();
    // 12 returns of 1 each, at once, by the manager: exactly 5 get through.
    let attempts = (0..12).map(|i| {
        let shop = &shop;
        let body = json!({"register_id": shop.register, "original_sale_id": id,
                          "lines": [{"line_no": 1, "quantity": "1"}],
                          "refunds": [{"method": "cash", "amount": "2.00"}], "reason_code": "other"});
        async move {
            shop.give_back(&shop.manager, &format!("race-{i}"), &body)
                .await
                .status()
                .as_u16()
        }
    });
    let statuses = futures_util::future::join_all(attempts).await;
    assert_eq!(
        statuses.iter().filter(|s| **s == 201).count(),
        5,
        "{statuses:?}"
    );
    assert!(
        statuses.iter().all(|s| *s == 201 || *s == 409),
        "{statuses:?}"
    );
    assert_eq!(shop.stock(&pen).await.as_deref(), Some("10.000"));
    let numbers: Vec<i64> =
        sqlx::query_scalar("SELECT number_seq FROM returns ORDER BY number_seq")
            .fetch_all(&shop.app.pool)
            .await
            .unwrap();
    assert_eq!(numbers, [1, 2, 3, 4, 5], "gap-free although 7 were refused");
}

#[tokio::test]
async fn returns_arriving_together_refund_exact_shares_and_answer_what_they_stored() {
    let shop = Shop::open().await;
    let pen = shop.product("PEN3", "3.33", &shop.standard, true).await;
    shop.receive(&pen, "10").await;
    shop.open_session("50.00").await;
    // 3 pens at 3.33: 9.99, paid in cash.
    let sale = sale_of(
        &shop,
        "s",
        &json!({"register_id": shop.register,
                "lines": [{"product_id": pen, "quantity": "3"}],
                "payments": [{"method": "cash", "amount": "10.00"}]}),
    )
    .await;
    let id = sale["id"].as_str().unwrap().to_owned();
    assert_eq!(sale["totals"]["total"], "9.99", "{sale}");
    // Three returns of one pen each, sent at once (the writer may take them in one batch), and
    // a retry of the first with its key: each pen refunds 3.33, the retry answers the first.
    let body = json!({"register_id": shop.register, "original_sale_id": id,
                      "lines": [{"line_no": 1, "quantity": "1"}],
                      "refunds": [{"method": "cash", "amount": "3.33"}], "reason_code": "changed_mind"});
    let keys = ["together-1", "together-2", "together-3", "together-1"];
    let sent = keys.iter().map(|key| {
        let (shop, body) = (&shop, &body);
        async move {
            let response = shop.give_back(&shop.manager, key, body).await;
            let status = response.status().as_u16();
            (status, response.json::<Value>().await.unwrap())
        }
    });
    let answers = futures_util::future::join_all(sent).await;
    assert!(answers.iter().all(|(s, _)| *s == 201), "{answers:?}");
    assert_eq!(answers[0].1["id"], answers[3].1["id"], "the retry replays");
    let mut numbers: Vec<&str> = answers[..3]
        .iter()
        .map(|(_, a)| a["number"].as_str().unwrap())
        .collect();
    numbers.sort();
    numbers.dedup();
    assert_eq!(numbers.len(), 3, "{answers:?}");
    let mut tax = 0.0;
    for (_, answer) in &answers[..3] {
        assert_eq!(answer["totals"]["total"], "-3.33", "{answer}");
        tax += answer["totals"]["tax"]
            .as_str()
            .unwrap()
            .parse::<f64>()
            .unwrap();
        // What the request answered is what is stored.
        let stored: Value = shop
            .app
            .get_as(
                &format!("/api/v1/returns/{}", answer["id"].as_str().unwrap()),
                &shop.manager,
            )
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(&stored, answer);
    }
    // The tax given back is exactly the sale's, however the returns were grouped.
    let sold_tax: f64 = sale["totals"]["tax"].as_str().unwrap().parse().unwrap();
    assert!((tax + sold_tax).abs() < 1e-9, "{tax} vs {sold_tax}");
    // Nothing is left to return, and the pens are back on the shelf.
    problem(
        shop.give_back(&shop.manager, "together-4", &body).await,
        409,
        "return.exceeds_returnable",
    )
    .await;
    assert_eq!(shop.stock(&pen).await.as_deref(), Some("10.000"));
    // One audit record per return, each naming its stock movement and its level after it; the
    // ledger's levels run 8, 9, 10 in some order.
    let records: Vec<Value> = sqlx::query_scalar(
        "SELECT after_json::jsonb FROM audit_records WHERE action = 'return.create' ORDER BY at, id",
    )
    .fetch_all(&shop.app.pool)
    .await
    .unwrap();
    assert_eq!(records.len(), 3);
    let mut levels: Vec<f64> = records
        .iter()
        .map(|r| r["stock"][0]["quantity"].as_str().unwrap().parse().unwrap())
        .collect();
    levels.sort_by(f64::total_cmp);
    assert_eq!(levels, [8.0, 9.0, 10.0], "{records:?}");
    let reviews: i64 = sqlx::query_scalar("SELECT count(*) FROM jobs WHERE kind = 'flags.review'")
        .fetch_one(&shop.app.pool)
        .await
        .unwrap();
    assert!(
        (1..=2).contains(&reviews),
        "one review per cashier and half minute: {reviews}"
    );
}

#[tokio::test]
async fn a_return_priced_against_books_that_changed_meanwhile_is_priced_again() {
    let shop = Shop::open().await;
    let pen = shop.product("PEN4", "3.67", &shop.standard, true).await;
    shop.receive(&pen, "10").await;
    shop.open_session("50.00").await;
    // 3 pens at 3.67 less 1.01: the line comes to 10.00, so one pen refunds 3.33, 3.34, 3.33 in turn.
    let response = shop
        .sell(
            &shop.manager,
            "s",
            &json!({"register_id": shop.register,
                    "lines": [{"product_id": pen, "quantity": "3",
                               "discount": {"kind": "amount", "value": "1.01", "reason_code": "loyalty"}}],
                    "payments": [{"method": "cash", "amount": "10.00"}]}),
        )
        .await;
    assert_eq!(response.status(), 201, "{}", response.text().await.unwrap());
    let sale: Value = response.json().await.unwrap();
    assert_eq!(sale["totals"]["total"], "10.00", "{sale}");
    let id = sale["id"].as_str().unwrap().to_owned();
    // Another writer gives the first pen back and has not committed yet.
    let mut other = shop.app.pool.begin().await.unwrap();
    sqlx::query("INSERT INTO returned_quantities (sale_id, line_no, sold, returned) VALUES ($1::uuid, 1, 3, 1)")
        .bind(&id)
        .execute(&mut *other)
        .await
        .unwrap();
    // This return is priced as the first pen (3.33) and waits for that row.
    let body = json!({"register_id": shop.register, "original_sale_id": id,
                      "lines": [{"line_no": 1, "quantity": "1"}],
                      "refunds": [{"method": "cash", "amount": "3.33"}], "reason_code": "other"});
    let sent = {
        let (shop, body) = (&shop, &body);
        async move { shop.give_back(&shop.manager, "stale", body).await }
    };
    let waiting = async {
        for _ in 0..100 {
            let waiters: i64 =
                sqlx::query_scalar("SELECT count(*) FROM pg_locks WHERE NOT granted")
                    .fetch_one(&shop.app.pool)
                    .await
                    .unwrap();
            if waiters > 0 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        other.commit().await.unwrap();
    };
    let (response, ()) = tokio::join!(sent, waiting);
    // Once the other commits, this one is the second pen: 3.34, not the 3.33 it was priced at.
    let problem: Value = response.json().await.unwrap();
    assert_eq!(problem["code"], "refund.mismatch", "{problem}");
    assert!(
        problem["detail"].as_str().unwrap().contains("(3.34)"),
        "{problem}"
    );
    let returned: String = sqlx::query_scalar(
        "SELECT returned::text FROM returned_quantities WHERE sale_id = $1::uuid AND line_no = 1",
    )
    .bind(&id)
    .fetch_one(&shop.app.pool)
    .await
    .unwrap();
    assert_eq!(returned, "1.000", "nothing of the refused return stays");
}

#[tokio::test]
async fn a_void_reverses_everything_once_and_only_while_the_session_is_open() {
    let shop = Shop::open().await;
    let (pen, bread) = shop.pen_and_bread().await;
    let session = shop.open_session("20.00").await;
    let sale = sale_of(
        &shop,
        "s",
        &json!({"register_id": shop.register,
                "lines": [{"product_id": pen, "quantity": "2"}, {"product_id": bread, "quantity": "1"}],
                "payments": [{"method": "card", "amount": "3.00"}, {"method": "cash", "amount": "5.00"}]}),
    )
    .await;
    let id = sale["id"].as_str().unwrap();
    let void = |token: &str, body: Value| {
        let url = shop.app.url(&format!("/api/v1/sales/{id}/void"));
        shop.app
            .client
            .post(url)
            .bearer_auth(token.to_owned())
            .json(&body)
            .send()
    };
    problem(
        void(&shop.cashier, json!({"reason_code": "cashier_error"}))
            .await
            .unwrap(),
        403,
        "approval.required",
    )
    .await;
    // An approval for another sale does not fit.
    let other = approval(
        &shop,
        "operations.sales.void",
        json!({"sale_id": shop.register}),
    )
    .await;
    problem(
        void(
            &shop.cashier,
            json!({"reason_code": "cashier_error", "approval_ref": other}),
        )
        .await
        .unwrap(),
        403,
        "approval.invalid",
    )
    .await;
    let approval_ref = approval(&shop, "operations.sales.void", json!({"sale_id": id})).await;
    let response = void(
        &shop.cashier,
        json!({"reason_code": "cashier_error", "approval_ref": approval_ref}),
    )
    .await
    .unwrap();
    assert_eq!(response.status(), 201, "{}", response.text().await.unwrap());
    let reversal: Value = response.json().await.unwrap();
    assert_eq!(reversal["kind"], "void");
    assert_eq!(reversal["totals"]["total"], "-6.99");
    assert_eq!(
        reversal["totals"]["tax"],
        format!("-{}", sale["totals"]["tax"].as_str().unwrap())
    );
    assert_eq!(reversal["taxes"].as_array().unwrap().len(), 2);
    // Card back as paid, cash back less the change (5.00 - 1.01).
    assert_eq!(
        reversal["refunds"],
        json!([{"method": "card", "amount": "3.00"}, {"method": "cash", "amount": "3.99"}])
    );
    assert_eq!(shop.stock(&pen).await.as_deref(), Some("10.000"));
    let read: Value = shop
        .app
        .get_as(&format!("/api/v1/sales/{id}"), &shop.cashier)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(read["voided_by"], reversal["id"]);
    assert_eq!(read["status"], "completed", "the sale's row never changes");
    assert_eq!(read["lines"][0]["returnable"], "0.000");
    // Twice: refused, also for the manager; and nothing of it can be returned.
    problem(
        void(&shop.manager, json!({"reason_code": "cashier_error"}))
            .await
            .unwrap(),
        409,
        "sale.already_voided",
    )
    .await;
    problem(
        shop.give_back(&shop.manager, "r", &json!({"register_id": shop.register, "original_sale_id": id,
              "lines": [{"line_no": 1, "quantity": "1"}], "refunds": [{"method": "cash", "amount": "2.50"}],
              "reason_code": "other"}))
        .await,
        409,
        "sale.voided",
    )
    .await;
    // The drawer: 20 + 5.00 - 1.01 - 3.99 = 20.00.
    let report = x_report(&shop, &session).await;
    assert_eq!(report["refunds"]["voids_count"], 1);
    assert_eq!(report["cash"]["expected_cash"], "20.00");

    // Once the session is closed a sale can no longer be voided (a return is the way).
    let second = sale_of(&shop, "s2", &shop.cash_sale(&bread, "1", "1.99")).await;
    let response = shop
        .app
        .post_as(
            &format!("/api/v1/cash-sessions/{session}/close"),
            &shop.cashier,
            &json!({"counted_cash": "21.99"}),
        )
        .await;
    assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
    let url = shop.app.url(&format!(
        "/api/v1/sales/{}/void",
        second["id"].as_str().unwrap()
    ));
    let response = shop
        .app
        .client
        .post(url)
        .bearer_auth(&shop.manager)
        .json(&json!({"reason_code": "cashier_error"}))
        .send()
        .await
        .unwrap();
    problem(response, 409, "sale.session_closed").await;
}

#[tokio::test]
async fn approvals_are_single_use_bound_to_their_scope_and_expire() {
    let shop = Shop::open().await;
    let (pen, _) = shop.pen_and_bread().await;
    shop.open_session("0.00").await;
    let sale = sale_of(&shop, "s", &shop.cash_sale(&pen, "2", "5.00")).await;
    let id = sale["id"].as_str().unwrap();
    let one = |approval_ref: &str| {
        json!({"register_id": shop.register, "original_sale_id": id, "lines": [{"line_no": 1, "quantity": "1"}],
               "refunds": [{"method": "cash", "amount": "2.50"}], "reason_code": "other",
               "approval_ref": approval_ref})
    };
    // Used once: a second request with it is refused.
    let approval_ref = approval(&shop, "operations.returns.create", json!({"sale_id": id})).await;
    assert_eq!(
        shop.give_back(&shop.cashier, "a", &one(&approval_ref))
            .await
            .status(),
        201
    );
    problem(
        shop.give_back(&shop.cashier, "b", &one(&approval_ref))
            .await,
        403,
        "approval.invalid",
    )
    .await;
    // Bound to its amount: 1.00 does not cover 2.50.
    let small = approval(
        &shop,
        "operations.returns.create",
        json!({"sale_id": id, "amount": "1.00"}),
    )
    .await;
    problem(
        shop.give_back(&shop.cashier, "c", &one(&small)).await,
        403,
        "approval.invalid",
    )
    .await;
    // Bound to its action.
    let wrong = approval(&shop, "operations.cash.no_sale", json!({})).await;
    problem(
        shop.give_back(&shop.cashier, "d", &one(&wrong)).await,
        403,
        "approval.invalid",
    )
    .await;
    // Bound to the cashier who asked: nobody else can use it (not even a manager on that till).
    shop.app
        .add_user("otto", "cashier pass 456", &["cashier"], false)
        .await;
    let theirs = approval(&shop, "operations.returns.create", json!({"sale_id": id})).await;
    problem(
        shop.give_back(&shop.manager, "e", &one(&theirs)).await,
        403,
        "approval.invalid",
    )
    .await;
    // Expired after 120 s (the default).
    let late = approval(&shop, "operations.returns.create", json!({"sale_id": id})).await;
    shop.app.clock.advance(chrono::Duration::seconds(121));
    problem(
        shop.give_back(&shop.cashier, "f", &one(&late)).await,
        403,
        "approval.invalid",
    )
    .await;
    // Nonsense is refused the same way.
    problem(
        shop.give_back(&shop.cashier, "g", &one("not-a-ref")).await,
        403,
        "approval.invalid",
    )
    .await;

    // An approver must hold the action's permission, and is never the one asking.
    let response = shop
        .app
        .post_as(
            "/api/v1/approvals",
            &shop.cashier,
            &json!({
        "action": "operations.sales.void", "scope": {"register_id": shop.register, "sale_id": id},
        "approver": {"username": "otto", "password": "cashier pass 456"}}),
        )
        .await;
    problem(response, 403, "approval.not_permitted").await;
    let response = shop
        .app
        .post_as(
            "/api/v1/approvals",
            &shop.manager,
            &json!({
        "action": "operations.sales.void", "scope": {"register_id": shop.register, "sale_id": id},
        "approver": {"username": "boss", "password": "manager pass 123"}}),
        )
        .await;
    problem(response, 403, "approval.not_permitted").await;
    // Wrong credentials count as the approver's failed login.
    let response = shop
        .app
        .post_as(
            "/api/v1/approvals",
            &shop.cashier,
            &json!({
        "action": "operations.sales.void", "scope": {"register_id": shop.register, "sale_id": id},
        "approver": {"username": "boss", "password": "guess guess guess"}}),
        )
        .await;
    problem(response, 403, "approval.credentials").await;
    let failed: Vec<Value> = sqlx::query_scalar(
        "SELECT details FROM security_events WHERE kind = 'login_failed' AND username = 'boss'",
    )
    .fetch_all(&shop.app.pool)
    .await
    .unwrap();
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0]["reason"], "approval_password");
    // The grant is audited: who approved what for whom.
    let after: Value = sqlx::query_scalar(
        "SELECT after_json::jsonb FROM audit_records WHERE action = 'approval.grant' ORDER BY at, id LIMIT 1",
    )
    .fetch_one(&shop.app.pool)
    .await
    .unwrap();
    assert_eq!(after["approver"], "boss");
    assert_eq!(after["requester"], "carla");
    assert_eq!(after["action"], "operations.returns.create");
}

#[tokio::test]
async fn approver_pins_approve_and_lock_after_five_wrong_ones() {
    let shop = Shop::open().await;
    let pin = |body: Value| {
        shop.app
            .client
            .put(shop.app.url("/api/v1/auth/pin"))
            .bearer_auth(&shop.manager)
            .json(&body)
            .send()
    };
    problem(
        pin(json!({"current_password": "manager pass 123", "pin": "12a4"}))
            .await
            .unwrap(),
        422,
        "validation.failed",
    )
    .await;
    problem(
        pin(json!({"current_password": "wrong wrong wrong", "pin": "4821"}))
            .await
            .unwrap(),
        422,
        "validation.failed",
    )
    .await;
    assert_eq!(
        pin(json!({"current_password": "manager pass 123", "pin": "4821"}))
            .await
            .unwrap()
            .status(),
        204
    );
    let ask = |code: &str| {
        let body = json!({
            "action": "operations.cash.no_sale", "scope": {"register_id": shop.register},
            "approver": {"username": "boss", "pin": code}});
        shop.app
            .client
            .post(shop.app.url("/api/v1/approvals"))
            .bearer_auth(&shop.cashier)
            .json(&body)
            .send()
    };
    assert_eq!(ask("4821").await.unwrap().status(), 201);
    for _ in 0..5 {
        problem(ask("0000").await.unwrap(), 403, "approval.credentials").await;
    }
    // Locked: even the right PIN is refused until a new one is set (past the login throttle's
    // wait, which five wrong tries from this till also started).
    shop.app.clock.advance(chrono::Duration::minutes(1));
    problem(ask("4821").await.unwrap(), 403, "approval.pin_locked").await;
    assert!(
        shop.app
            .security_event_kinds()
            .await
            .contains(&"pin_locked".to_owned())
    );
    shop.app.clock.advance(chrono::Duration::minutes(1));
    assert_eq!(
        pin(json!({"current_password": "manager pass 123", "pin": "135790"}))
            .await
            .unwrap()
            .status(),
        204
    );
    assert_eq!(ask("135790").await.unwrap().status(), 201);
    let delete = shop
        .app
        .client
        .delete(shop.app.url("/api/v1/auth/pin"))
        .bearer_auth(&shop.manager)
        .send()
        .await
        .unwrap();
    assert_eq!(delete.status(), 204);
    problem(ask("135790").await.unwrap(), 403, "approval.credentials").await;
    let delete = shop
        .app
        .client
        .delete(shop.app.url("/api/v1/auth/pin"))
        .bearer_auth(&shop.manager)
        .send()
        .await
        .unwrap();
    problem(delete, 404, "auth.no_pin").await;
    let stored: String = sqlx::query_scalar(
        "SELECT action FROM audit_records WHERE action LIKE 'user.%pin' ORDER BY at DESC, id DESC LIMIT 1",
    )
    .fetch_one(&shop.app.pool)
    .await
    .unwrap();
    assert_eq!(stored, "user.remove_pin");
}

#[tokio::test]
async fn no_sale_opens_are_approved_recorded_and_counted() {
    let shop = Shop::open().await;
    let session = shop.open_session("10.00").await;
    let path = format!("/api/v1/cash-sessions/{session}/no-sale");
    problem(
        shop.app
            .post_as(
                &path,
                &shop.cashier,
                &json!({"reason": "change for the parking meter"}),
            )
            .await,
        403,
        "approval.required",
    )
    .await;
    let approval_ref = approval(&shop, "operations.cash.no_sale", json!({})).await;
    let response = shop
        .app
        .post_as(
            &path,
            &shop.cashier,
            &json!({"reason": "change for the parking meter", "approval_ref": approval_ref}),
        )
        .await;
    assert_eq!(response.status(), 201, "{}", response.text().await.unwrap());
    let recorded: Value = response.json().await.unwrap();
    assert_eq!(recorded["kind"], "no_sale");
    assert_eq!(recorded["amount"], "0.00");
    problem(
        shop.app
            .post_as(&path, &shop.cashier, &json!({"reason": "  "}))
            .await,
        422,
        "validation.failed",
    )
    .await;
    let report = x_report(&shop, &session).await;
    assert_eq!(report["cash"]["no_sales"], 1);
    assert_eq!(report["cash"]["expected_cash"], "10.00");
}

#[tokio::test]
async fn a_return_without_a_receipt_always_needs_an_approval_for_one() {
    let shop = Shop::open().await;
    let (pen, _) = shop.pen_and_bread().await;
    shop.open_session("10.00").await;
    let body = |approval_ref: Option<&str>| {
        json!({"register_id": shop.register, "lines": [{"product_id": pen, "quantity": "1"}],
               "refunds": [{"method": "cash", "amount": "2.50"}], "reason_code": "defective",
               "approval_ref": approval_ref})
    };
    // Even the manager needs someone's approval.
    problem(
        shop.give_back(&shop.manager, "a", &body(None)).await,
        403,
        "approval.required",
    )
    .await;
    // An approval given for a return against a sale does not cover one without a receipt.
    let sale = sale_of(&shop, "s", &shop.cash_sale(&pen, "1", "2.50")).await;
    let narrow = approval(
        &shop,
        "operations.returns.create",
        json!({"sale_id": sale["id"]}),
    )
    .await;
    problem(
        shop.give_back(&shop.cashier, "b", &body(Some(&narrow)))
            .await,
        403,
        "approval.invalid",
    )
    .await;
    let wide = approval(&shop, "operations.returns.create", json!({})).await;
    let response = shop.give_back(&shop.cashier, "c", &body(Some(&wide))).await;
    assert_eq!(response.status(), 201, "{}", response.text().await.unwrap());
    let doc: Value = response.json().await.unwrap();
    assert_eq!(doc["original_sale_id"], Value::Null);
    assert_eq!(doc["lines"][0]["sale_line_no"], Value::Null);
    assert_eq!(shop.stock(&pen).await.as_deref(), Some("10.000"));
}

#[tokio::test]
async fn discounts_are_spread_taxed_per_bucket_and_need_approval_above_the_cashier_limit() {
    let shop = Shop::open().await;
    let (pen, bread) = shop.pen_and_bread().await;
    shop.set("sales.max_cashier_discount_percent", json!(10))
        .await;
    shop.open_session("0.00").await;
    // 4 pens (10.00, 19 %) with 10 % off the line, a bread (1.99, 7 %), and 1.00 off the sale.
    let body = json!({"register_id": shop.register,
        "lines": [{"product_id": pen, "quantity": "4", "discount": {"kind": "percent", "value": "10", "reason_code": "promotion"}},
                  {"product_id": bread, "quantity": "1"}],
        "discount": {"kind": "amount", "value": "1.00", "reason_code": "loyalty"},
        "payments": [{"method": "card", "amount": "9.99"}]});
    // The pens end up 1.00 + 0.82 = 18.2 % off, above the cashier's 10 %.
    problem(
        shop.sell(&shop.cashier, "d1", &body).await,
        403,
        "approval.required",
    )
    .await;
    let approval_ref = approval(
        &shop,
        "operations.sales.discount",
        json!({"amount": "5.00"}),
    )
    .await;
    let mut approved = body.clone();
    approved["approval_ref"] = json!(approval_ref);
    let response = shop.sell(&shop.cashier, "d1", &approved).await;
    assert_eq!(response.status(), 201, "{}", response.text().await.unwrap());
    let sale: Value = response.json().await.unwrap();
    // Pens: 10.00 - 1.00 = 9.00; bread 1.99; the sale's 1.00 spread 9.00 : 1.99 -> 0.82 + 0.18.
    assert_eq!(sale["lines"][0]["discount"], "1.82");
    assert_eq!(sale["lines"][0]["total"], "8.18");
    assert_eq!(sale["lines"][1]["discount"], "0.18");
    assert_eq!(sale["lines"][1]["total"], "1.81");
    assert_eq!(sale["totals"]["total"], "9.99");
    assert_eq!(sale["discount_total"], "2.00");
    // Taxes on the discounted amounts, per bucket: 8.18 x 0.19 / 1.19 = 1.31; 1.81 x 0.07 / 1.07 = 0.12.
    assert_eq!(
        sale["taxes"][0],
        json!({"rate": "0.07", "net": "1.69", "tax": "0.12", "gross": "1.81"})
    );
    assert_eq!(
        sale["taxes"][1],
        json!({"rate": "0.19", "net": "6.87", "tax": "1.31", "gross": "8.18"})
    );
    assert_eq!(
        sale["discount"],
        json!({"kind": "amount", "value": "1.00", "reason_code": "loyalty", "amount": "1.00"})
    );
    assert_eq!(
        sale["lines"][0]["discounts"],
        json!({"own": {"kind": "percent", "value": "10", "reason_code": "promotion", "amount": "1.00"}, "sale_share": "0.82"})
    );
    assert_eq!(
        sale["lines"][1]["discounts"],
        json!({"own": null, "sale_share": "0.18"})
    );
    assert_eq!(sale["approval_ref"], approval_ref.as_str());
    // The read shows the same; the audit record carries the approval.
    let read: Value = shop
        .app
        .get_as(
            &format!("/api/v1/sales/{}", sale["id"].as_str().unwrap()),
            &shop.cashier,
        )
        .await
        .json()
        .await
        .unwrap();
    for field in [
        "discount",
        "discount_total",
        "approval_ref",
        "lines",
        "taxes",
    ] {
        assert_eq!(read[field], sale[field], "{field}");
    }
    let recorded: Option<String> = sqlx::query_scalar(
        "SELECT approval_ref FROM audit_records WHERE entity = 'sale' AND entity_id = $1",
    )
    .bind(sale["id"].as_str().unwrap())
    .fetch_one(&shop.app.pool)
    .await
    .unwrap();
    assert_eq!(recorded.as_deref(), Some(approval_ref.as_str()));
    // The same approval cannot serve a second sale.
    problem(
        shop.sell(&shop.cashier, "d2", &approved).await,
        403,
        "approval.invalid",
    )
    .await;

    // Within the limit the cashier discounts alone; bad discounts name their field.
    let small = json!({"register_id": shop.register,
        "lines": [{"product_id": pen, "quantity": "1", "discount": {"kind": "percent", "value": "10", "reason_code": "staff"}}],
        "payments": [{"method": "card", "amount": "2.25"}]});
    assert_eq!(shop.sell(&shop.cashier, "d3", &small).await.status(), 201);
    let bad = json!({"register_id": shop.register,
        "lines": [{"product_id": pen, "quantity": "1", "discount": {"kind": "percent", "value": "101", "reason_code": "whim"}}],
        "discount": {"kind": "half", "value": "1", "reason_code": "other"},
        "payments": [{"method": "card", "amount": "1"}]});
    let refused = problem(
        shop.sell(&shop.manager, "d4", &bad).await,
        422,
        "validation.failed",
    )
    .await;
    let fields: Vec<&str> = refused["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert_eq!(
        fields,
        [
            "lines[0].discount.reason_code",
            "lines[0].discount.value",
            "discount.kind"
        ]
    );

    // A price override by a cashier: refused as before, or approved with a reason.
    let mut cheaper = shop.cash_sale(&pen, "2", "4.00");
    cheaper["lines"][0]["unit_price"] = json!("2.00");
    problem(
        shop.sell(&shop.cashier, "o1", &cheaper).await,
        403,
        "rbac.forbidden",
    )
    .await;
    let override_ref = approval(
        &shop,
        "operations.sales.price_override",
        json!({"amount": "1.00"}),
    )
    .await;
    cheaper["approval_ref"] = json!(override_ref);
    problem(
        shop.sell(&shop.cashier, "o2", &cheaper).await,
        422,
        "validation.failed",
    )
    .await;
    cheaper["lines"][0]["price_reason"] = json!("price_match");
    let response = shop.sell(&shop.cashier, "o3", &cheaper).await;
    assert_eq!(response.status(), 201, "{}", response.text().await.unwrap());
    let sold: Value = response.json().await.unwrap();
    assert_eq!(sold["lines"][0]["price_reason"], "price_match");
    assert_eq!(sold["lines"][0]["unit_price"], "2.00");
}
