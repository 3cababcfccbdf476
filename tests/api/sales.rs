//! operations.sales: totals, taxes, rounding, numbering, idempotency, immutability, through the API.

use std::collections::BTreeSet;

use chrono::Datelike;
use serde_json::{Value, json};

use crate::helpers::problem;
use crate::shop::Shop;

#[tokio::test]
async fn a_sale_is_priced_numbered_stored_and_takes_stock() {
    let shop = Shop::open().await;
    let (pen, bread) = shop.pen_and_bread().await;
    let session = shop.open_session("100.00").await;

    let body = json!({
        "register_id": shop.register,
        "lines": [{"product_id": pen, "quantity": "2"}, {"product_id": bread, "quantity": "1"}],
        "payments": [{"method": "cash", "amount": "10.00"}],
    });
    let response = shop.sell(&shop.cashier, "sale-1", &body).await;
    assert_eq!(response.status(), 201);
    assert!(response.headers().get("idempotent-replayed").is_none());
    let sale: Value = response.json().await.unwrap();
    let year = chrono::Utc::now()
        .with_timezone(&chrono_tz::Europe::Berlin)
        .year();
    assert_eq!(sale["receipt_number"], format!("R1-{year}-000001"));
    assert_eq!(sale["status"], "completed");
    assert_eq!(sale["cash_session_id"], session.as_str());
    assert_eq!(
        sale["totals"],
        json!({"net": "6.06", "tax": "0.93", "total": "6.99"})
    );
    assert_eq!(
        sale["taxes"],
        json!([
            {"rate": "0.07", "net": "1.86", "tax": "0.13", "gross": "1.99"},
            {"rate": "0.19", "net": "4.20", "tax": "0.80", "gross": "5.00"},
        ])
    );
    assert_eq!(sale["change_due"], "3.01");
    assert_eq!(sale["lines"][0]["total"], "5.00");
    assert_eq!(sale["lines"][0]["quantity"], "2.000");
    assert_eq!(sale["lines"][0]["sku"], "PEN");
    assert_eq!(
        sale["payments"],
        json!([{"method": "cash", "amount": "10.00"}])
    );

    // Reading it back gives the same document.
    let id = sale["id"].as_str().unwrap();
    let read: Value = shop
        .app
        .get_as(&format!("/api/v1/sales/{id}"), &shop.cashier)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(read, sale);
    let list: Value = shop
        .app
        .get_as(
            &format!("/api/v1/sales?register_id={}", shop.register),
            &shop.manager,
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(list["items"][0]["id"], id);
    assert_eq!(list["items"][0]["total"], "6.99");

    // Tracked stock went from 10 to 8 in the same transaction; untracked has no level.
    assert_eq!(shop.stock(&pen).await.as_deref(), Some("8.000"));
    assert_eq!(shop.stock(&bread).await, None);

    // The sale is audited with its stock change.
    let audit: Value = shop
        .app
        .get_as("/api/v1/audit?entity=sale", &shop.admin)
        .await
        .json()
        .await
        .unwrap();
    let record = &audit["items"][0];
    assert_eq!(record["action"], "sale.complete");
    assert_eq!(record["entity_id"], id);
    assert_eq!(record["after"]["stock"][0]["quantity"], "8.000");
    assert_eq!(record["after"]["stock"][0]["delta"], "-2");
}

/// A `stock_ledger` row: product, reason, delta, level after, line number, location.
type LedgerRow = (String, String, String, Option<String>, Option<i32>, String);

#[tokio::test]
async fn a_sales_tracked_lines_are_its_stock_movements() {
    let shop = Shop::open().await;
    let (pen, bread) = shop.pen_and_bread().await;
    shop.open_session("0").await;
    // The pen on two lines, the untracked bread between them.
    let body = json!({
        "register_id": shop.register,
        "lines": [{"product_id": pen, "quantity": "2"}, {"product_id": bread, "quantity": "1"},
                  {"product_id": pen, "quantity": "1"}],
        "payments": [{"method": "card", "amount": "9.49"}],
    });
    let response = shop.sell(&shop.cashier, "ledger-1", &body).await;
    assert_eq!(response.status(), 201, "{}", response.text().await.unwrap());
    let sale: Value = response.json().await.unwrap();
    let id = sale["id"].as_str().unwrap();
    assert_eq!(shop.stock(&pen).await.as_deref(), Some("7.000"));

    // One ledger: the adjustment, then each tracked line with the level right after it.
    let ledger: Vec<LedgerRow> = sqlx::query_as(
        "SELECT product_id::text, reason_code, quantity_delta::text, quantity_after::text, line_no, location_id::text \
         FROM stock_ledger ORDER BY created_at, line_no NULLS FIRST",
    )
    .fetch_all(&shop.app.pool)
    .await
    .unwrap();
    let at = shop.location.clone();
    assert_eq!(
        ledger,
        vec![
            (
                pen.clone(),
                "received".into(),
                "10.000".into(),
                Some("10.000".into()),
                None,
                at.clone()
            ),
            (
                pen.clone(),
                "sale".into(),
                "-2.000".into(),
                Some("8.000".into()),
                Some(1),
                at.clone()
            ),
            (
                pen.clone(),
                "sale".into(),
                "-1.000".into(),
                Some("7.000".into()),
                Some(3),
                at.clone()
            ),
        ]
    );
    let documents: Vec<Option<String>> =
        sqlx::query_scalar("SELECT document_id::text FROM stock_ledger WHERE reason_code = 'sale'")
            .fetch_all(&shop.app.pool)
            .await
            .unwrap();
    assert_eq!(documents, vec![Some(id.to_owned()); 2]);

    // The audit record says the same, line by line.
    let audit: Value = shop
        .app
        .get_as("/api/v1/audit?entity=sale", &shop.admin)
        .await
        .json()
        .await
        .unwrap();
    let stock = &audit["items"][0]["after"]["stock"];
    assert_eq!(
        stock,
        &json!([
            {"product_id": pen, "location_id": at, "line_no": 1, "delta": "-2", "quantity": "8.000"},
            {"product_id": pen, "location_id": at, "line_no": 3, "delta": "-1", "quantity": "7.000"},
        ])
    );
}

/// Inserts a sale row by hand (as someone with database access might) on `register` in session
/// `session`, with these payment and tax arrays; gives the constraint that refused it, if any.
async fn insert_sale_by_hand(
    shop: &Shop,
    register: &str,
    session: &str,
    payments: (&str, &str),
    taxes: [&str; 4],
) -> Option<String> {
    let result = sqlx::query(
        "INSERT INTO sales (id, register_id, cash_session_id, cashier_id, receipt_year, receipt_seq, receipt_number, \
           status, currency, prices_include_tax, net, tax, total, change_due, created_at, location_id, \
           payment_methods, payment_amounts, tax_rates, tax_nets, tax_amounts, tax_grosses) \
         SELECT gen_random_uuid(), $1::uuid, $2::uuid, opened_by, 2026, 999, 'X-999', 'completed', 'EUR', true, 0, 0, 0, 0, \
           now(), $3::uuid, $4::text[], $5::numeric[], $6::numeric[], $7::numeric[], $8::numeric[], $9::numeric[] \
         FROM cash_sessions WHERE id = $2::uuid",
    )
    .bind(register)
    .bind(session)
    .bind(&shop.location)
    .bind(payments.0)
    .bind(payments.1)
    .bind(taxes[0])
    .bind(taxes[1])
    .bind(taxes[2])
    .bind(taxes[3])
    .execute(&shop.app.pool)
    .await;
    match result {
        Ok(_) => None,
        Err(e) => Some(
            e.as_database_error()
                .and_then(|d| d.constraint())
                .map(str::to_owned)
                .unwrap_or_else(|| panic!("refused without a constraint: {e}")),
        ),
    }
}

#[tokio::test]
async fn the_database_refuses_a_sale_on_another_registers_session() {
    let shop = Shop::open().await;
    let session = shop.open_session("0").await;
    let other: Value = shop
        .app
        .post_as(
            "/api/v1/registers",
            &shop.admin,
            &json!({"name": "Second till", "location_id": shop.location}),
        )
        .await
        .json()
        .await
        .unwrap();
    let no_taxes = ["{}", "{}", "{}", "{}"];
    assert_eq!(
        insert_sale_by_hand(
            &shop,
            other["id"].as_str().unwrap(),
            &session,
            ("{}", "{}"),
            no_taxes
        )
        .await,
        Some("sales_cash_session_register_fkey".to_owned())
    );
}

#[tokio::test]
async fn the_database_refuses_payments_and_taxes_that_do_not_line_up() {
    let shop = Shop::open().await;
    let session = shop.open_session("0").await;
    let register = shop.register.clone();
    // One constraint checks both kinds; each case breaks one rule of one kind.
    let refused = Some("sales_payments_taxes_check");
    let tax = ["{0.19}", "{1.68}", "{0.32}", "{2.00}"];
    for pay in [
        ("{cash}", "{1,2}"),
        ("{cash,cheque}", "{1,2}"),
        ("{cash}", "{0}"),
        ("{cash,NULL}", "{1,2}"),
        ("{cash}", "{NULL}"),
        ("{{cash},{card}}", "{1,2}"),
    ] {
        let got = insert_sale_by_hand(&shop, &register, &session, pay, tax).await;
        assert_eq!(got.as_deref(), refused, "{pay:?}");
    }
    for bucket in [
        ["{0.19,0.07}", "{1.68}", "{0.32}", "{2.00}"],
        ["{0.19,0.07}", "{1,1}", "{0,0}", "{1,1}"],
        ["{0.07,0.07}", "{1,1}", "{0,0}", "{1,1}"],
        ["{NULL}", "{1.68}", "{0.32}", "{2.00}"],
        ["{0.19}", "{1.68}", "{NULL}", "{2.00}"],
    ] {
        let got = insert_sale_by_hand(&shop, &register, &session, ("{cash}", "{2}"), bucket).await;
        assert_eq!(got.as_deref(), refused, "{bucket:?}");
    }
    // The same row with arrays that line up is accepted, and reads back as its payments and buckets.
    assert_eq!(
        insert_sale_by_hand(
            &shop,
            &register,
            &session,
            ("{card,cash}", "{1.5,0.5}"),
            ["{0.07,0.19}", "{0.93,0.84}", "{0.07,0.16}", "{1.00,1.00}"]
        )
        .await,
        None
    );
    let read: Vec<(i32, String, rust_decimal::Decimal)> = sqlx::query_as(
        "SELECT p.line_no, p.method, p.amount FROM sale_payments p JOIN sales s ON s.id = p.sale_id \
         WHERE s.receipt_number = 'X-999' ORDER BY p.line_no",
    )
    .fetch_all(&shop.app.pool)
    .await
    .unwrap();
    assert_eq!(
        read,
        [
            (1, "card".to_owned(), "1.5".parse().unwrap()),
            (2, "cash".to_owned(), "0.5".parse().unwrap())
        ]
    );
    let buckets: Vec<(String, String)> = sqlx::query_as(
        "SELECT t.rate::text, t.tax::text FROM sale_taxes t JOIN sales s ON s.id = t.sale_id \
         WHERE s.receipt_number = 'X-999' ORDER BY t.rate",
    )
    .fetch_all(&shop.app.pool)
    .await
    .unwrap();
    assert_eq!(
        buckets,
        [
            ("0.070000".to_owned(), "0.0700".to_owned()),
            ("0.190000".to_owned(), "0.1600".to_owned())
        ]
    );
}

#[tokio::test]
async fn discounts_cash_rounding_and_payment_rules() {
    let shop = Shop::open().await;
    shop.set("payment.cash_rounding", json!("0.05")).await;
    // The cashier may give up to 5 % alone (the default is 0: every discount needs an approval).
    shop.set("sales.max_cashier_discount_percent", json!(5))
        .await;
    let item = shop.product("ITEM", "10.03", &shop.standard, false).await;
    shop.open_session("0").await;

    // 10.03 in cash rounds to 10.05: a 20 note gets 9.95 back.
    let sale: Value = shop
        .sell(&shop.cashier, "r-1", &shop.cash_sale(&item, "1", "20"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(sale["totals"]["total"], "10.03");
    assert_eq!(sale["cash_rounding"], "0.02");
    assert_eq!(sale["change_due"], "9.95");

    // A discount comes off the line before tax; split card + cash.
    let body = json!({
        "register_id": shop.register,
        "lines": [{"product_id": item, "quantity": "3", "discount": "1.09"}],
        "payments": [{"method": "card", "amount": "20.00"}, {"method": "cash", "amount": "10"}],
    });
    let sale: Value = shop
        .sell(&shop.cashier, "r-2", &body)
        .await
        .json()
        .await
        .unwrap();
    // 3 x 10.03 = 30.09 - 1.09 = 29.00; tax 29 x 0.19 / 1.19 = 4.63; cash due 9.00.
    assert_eq!(sale["lines"][0]["total"], "29.00");
    assert_eq!(
        sale["totals"],
        json!({"net": "24.37", "tax": "4.63", "total": "29.00"})
    );
    assert_eq!(sale["change_due"], "1.00");
    assert_eq!(sale["cash_rounding"], "0.00");

    let refused = [
        (
            json!({"register_id": shop.register, "lines": [{"product_id": item, "quantity": "1", "discount": "10.04"}],
                   "payments": [{"method": "cash", "amount": "1"}]}),
            422,
            "validation.failed",
        ),
        (
            json!({"register_id": shop.register, "lines": [{"product_id": item, "quantity": "1"}],
                   "payments": [{"method": "card", "amount": "10.04"}]}),
            422,
            "payment.overpaid",
        ),
        (
            json!({"register_id": shop.register, "lines": [{"product_id": item, "quantity": "1"}],
                   "payments": [{"method": "card", "amount": "5"}, {"method": "cash", "amount": "5.02"}]}),
            422,
            "payment.insufficient",
        ),
        (
            json!({"register_id": shop.register, "lines": [{"product_id": item, "quantity": "0"}],
                   "payments": [{"method": "cash", "amount": "1"}]}),
            422,
            "validation.failed",
        ),
        (
            json!({"register_id": shop.register, "lines": [{"product_id": item, "quantity": "1"}],
                   "payments": [{"method": "bitcoin", "amount": "11"}]}),
            422,
            "validation.failed",
        ),
        (
            json!({"register_id": shop.register, "lines": [],
                   "payments": [{"method": "cash", "amount": "1"}]}),
            422,
            "validation.failed",
        ),
        (
            json!({"register_id": shop.register, "lines": [{"product_id": item, "quantity": 1}],
                   "payments": [{"method": "cash", "amount": "11"}]}),
            422,
            "validation.failed",
        ),
    ];
    // A bad method is a field error beside the sale's other bad fields, in one answer.
    let body = json!({"register_id": shop.register, "lines": [{"product_id": item, "quantity": "0"}],
                      "payments": [{"method": "bitcoin", "amount": "11"}]});
    let both = problem(
        shop.sell(&shop.cashier, "bad-both", &body).await,
        422,
        "validation.failed",
    )
    .await;
    assert_eq!(
        both["errors"],
        json!([{"field": "lines[0].quantity", "message": "must be more than zero"},
               {"field": "payments[0].method", "message": "must be cash, card, voucher or other"}])
    );
    for (i, (body, status, code)) in refused.into_iter().enumerate() {
        let body = problem(
            shop.sell(&shop.cashier, &format!("bad-{i}"), &body).await,
            status,
            code,
        )
        .await;
        if code == "validation.failed" {
            assert!(body["errors"][0]["field"].is_string(), "{body}");
        }
    }
    // None of the refused sales consumed a receipt number.
    let next: Value = shop
        .sell(&shop.cashier, "r-3", &shop.cash_sale(&item, "1", "10.05"))
        .await
        .json()
        .await
        .unwrap();
    assert!(
        next["receipt_number"]
            .as_str()
            .unwrap()
            .ends_with("-000003"),
        "{next}"
    );
}

#[tokio::test]
async fn retries_replay_and_a_reused_key_is_refused() {
    let shop = Shop::open().await;
    let item = shop.product("ITEM", "4.00", &shop.standard, true).await;
    let session = shop.open_session("0").await;
    let body = shop.cash_sale(&item, "1", "5");
    let first = shop.sell(&shop.cashier, "key-A", &body).await;
    assert_eq!(first.status(), 201);
    let first: Value = first.json().await.unwrap();

    // The same body re-serialised (other key order) is the same request.
    let reordered = json!({
        "payments": [{"amount": "5", "method": "cash"}],
        "lines": [{"quantity": "1", "product_id": item}],
        "register_id": shop.register,
    });
    let retry = shop.sell(&shop.cashier, "key-A", &reordered).await;
    assert_eq!(retry.status(), 201);
    assert_eq!(retry.headers()["idempotent-replayed"], "true");
    let retry: Value = retry.json().await.unwrap();
    assert_eq!(retry, first, "a replay returns the original body");

    problem(
        shop.sell(&shop.cashier, "key-A", &shop.cash_sale(&item, "2", "10"))
            .await,
        422,
        "idempotency.key_reused",
    )
    .await;
    let no_key = shop
        .app
        .post_as("/api/v1/sales", &shop.cashier, &body)
        .await;
    problem(no_key, 400, "idempotency.key_required").await;

    // A client-made id that exists returns that sale, whatever the key.
    let mut with_id = shop.cash_sale(&item, "1", "5");
    with_id["id"] = json!("01938a6e-0000-7000-8000-000000000001");
    let made = shop.sell(&shop.cashier, "key-B", &with_id).await;
    assert_eq!(made.status(), 201);
    let made: Value = made.json().await.unwrap();
    assert_eq!(made["id"], "01938a6e-0000-7000-8000-000000000001");
    let again = shop.sell(&shop.cashier, "key-C", &with_id).await;
    assert_eq!(again.status(), 201);
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    assert_eq!(again.json::<Value>().await.unwrap(), made);
    // The same id with another body is another request: refused, not answered with that sale
    // (issue 28, finding 10).
    let mut other_body = shop.cash_sale(&item, "3", "15");
    other_body["id"] = with_id["id"].clone();
    problem(
        shop.sell(&shop.cashier, "key-B2", &other_body).await,
        409,
        "sale.id_conflict",
    )
    .await;

    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM sales")
        .fetch_one(&shop.app.pool)
        .await
        .unwrap();
    assert_eq!(count, 2, "two sales, however many retries");
    assert_eq!(
        shop.stock(&item).await.as_deref(),
        Some("-2.000"),
        "stock taken once per sale (and allowed below zero)"
    );

    // Once the session is closed a new sale is refused, but a retry still gets its answer.
    let closed = shop
        .app
        .post_as(
            &format!("/api/v1/cash-sessions/{session}/close"),
            &shop.cashier,
            &json!({"counted_cash": "8.00"}),
        )
        .await;
    assert_eq!(closed.status(), 200, "{}", closed.text().await.unwrap());
    problem(
        shop.sell(&shop.cashier, "key-D", &body).await,
        409,
        "cash.no_open_session",
    )
    .await;
    let late = shop.sell(&shop.cashier, "key-A", &body).await;
    assert_eq!(late.status(), 201);
    assert_eq!(late.headers()["idempotent-replayed"], "true");
    assert_eq!(late.json::<Value>().await.unwrap(), first);
    // So does a client-made id under a key never seen, refused first for the closed session.
    let late_id = shop.sell(&shop.cashier, "key-E", &with_id).await;
    assert_eq!(late_id.status(), 201);
    assert_eq!(late_id.headers()["idempotent-replayed"], "true");
    assert_eq!(late_id.json::<Value>().await.unwrap(), made);
    let numbered: i64 = sqlx::query_scalar("SELECT sum(last_number)::bigint FROM receipt_counters")
        .fetch_one(&shop.app.pool)
        .await
        .unwrap();
    assert_eq!(numbered, 2, "replays took no receipt number");
    problem(
        shop.sell(&shop.cashier, "key-A", &shop.cash_sale(&item, "2", "10"))
            .await,
        422,
        "idempotency.key_reused",
    )
    .await;
}

/// A key belongs to the caller at the register: another user reusing it records their own sale
/// and never gets the first user's back; a client id reused by another user is refused
/// (issue 28, finding 10).
#[tokio::test]
async fn idempotency_keys_and_client_ids_belong_to_their_caller() {
    let shop = Shop::open().await;
    let item = shop.product("ITEM", "4.00", &shop.standard, false).await;
    shop.open_session("0").await;
    let mut body = shop.cash_sale(&item, "1", "5");
    body["id"] = json!("01938a6e-0000-7000-8000-0000000000aa");
    let first = shop.sell(&shop.cashier, "shared-key", &body).await;
    assert_eq!(first.status(), 201);
    let first: Value = first.json().await.unwrap();

    // The manager may sell into the cashier's session; the same key is theirs, not the cashier's.
    let plain = shop.cash_sale(&item, "1", "5");
    let own = shop.sell(&shop.manager, "shared-key", &plain).await;
    assert_eq!(own.status(), 201);
    assert!(own.headers().get("idempotent-replayed").is_none());
    let own: Value = own.json().await.unwrap();
    assert_ne!(own["id"], first["id"]);
    let boss: uuid::Uuid = sqlx::query_scalar("SELECT id FROM users WHERE username = 'boss'")
        .fetch_one(&shop.app.pool)
        .await
        .unwrap();
    assert_eq!(own["cashier_id"], boss.to_string());

    // The cashier's client id, sent by the manager with the very same body: refused.
    problem(
        shop.sell(&shop.manager, "another-key", &body).await,
        409,
        "sale.id_conflict",
    )
    .await;
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM sales")
        .fetch_one(&shop.app.pool)
        .await
        .unwrap();
    assert_eq!(count, 2);
}

#[tokio::test]
async fn racing_retries_record_one_sale() {
    let shop = Shop::open().await;
    let item = shop.product("ITEM", "4.00", &shop.standard, false).await;
    shop.open_session("0").await;
    let body = shop.cash_sale(&item, "1", "5");
    let attempts = (0..8).map(|_| shop.sell(&shop.cashier, "same-key", &body));
    let responses = futures_util::future::join_all(attempts).await;
    let mut ids = BTreeSet::new();
    let mut originals = 0;
    for response in responses {
        assert_eq!(response.status(), 201);
        if response.headers().get("idempotent-replayed").is_none() {
            originals += 1;
        }
        let sale: Value = response.json().await.unwrap();
        ids.insert(sale["id"].as_str().unwrap().to_owned());
    }
    assert_eq!((ids.len(), originals), (1, 1));
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM sales")
        .fetch_one(&shop.app.pool)
        .await
        .unwrap();
    assert_eq!(count, 1);
}

#[tokio::test]
async fn receipt_numbers_are_gap_free_under_concurrent_sales() {
    let shop = Shop::open().await;
    let item = shop.product("ITEM", "1.00", &shop.standard, true).await;
    let inactive = shop.product("OLD", "1.00", &shop.standard, true).await;
    let version: Value = shop
        .app
        .get_as(&format!("/api/v1/products/{inactive}"), &shop.manager)
        .await
        .json()
        .await
        .unwrap();
    let patch = shop
        .app
        .client
        .patch(shop.app.url(&format!("/api/v1/products/{inactive}")))
        .bearer_auth(&shop.manager)
        .json(&json!({"active": false, "version": version["version"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(patch.status(), 200);
    shop.open_session("0").await;

    // 24 good sales and 8 that fail, all at once on one register.
    let shop = &shop;
    let requests = (0..32).map(|i| {
        let body = if i % 4 == 3 {
            shop.cash_sale(&inactive, "1", "1")
        } else {
            shop.cash_sale(&item, "1", "1")
        };
        let key = format!("k{i}");
        async move { shop.sell(&shop.cashier, &key, &body).await.status() }
    });
    let statuses = futures_util::future::join_all(requests).await;
    assert_eq!(statuses.iter().filter(|s| s.as_u16() == 201).count(), 24);
    assert_eq!(statuses.iter().filter(|s| s.as_u16() == 422).count(), 8);
    let numbers: Vec<i64> =
        sqlx::query_scalar("SELECT receipt_seq FROM sales ORDER BY receipt_seq")
            .fetch_all(&shop.app.pool)
            .await
            .unwrap();
    assert_eq!(numbers, (1..=24).collect::<Vec<i64>>());
    assert_eq!(shop.stock(&item).await.as_deref(), Some("-24.000"));
}

#[tokio::test]
async fn selling_needs_an_open_session_and_permissions() {
    let shop = Shop::open().await;
    let item = shop.product("ITEM", "2.00", &shop.standard, false).await;
    problem(
        shop.sell(&shop.cashier, "k1", &shop.cash_sale(&item, "1", "2"))
            .await,
        409,
        "cash.no_open_session",
    )
    .await;
    shop.open_session("0").await;

    // Another price than the catalog's needs price_override: cashiers lack it, managers have it.
    let mut cheaper = shop.cash_sale(&item, "1", "2");
    cheaper["lines"][0]["unit_price"] = json!("1.50");
    let body = problem(
        shop.sell(&shop.cashier, "k2", &cheaper).await,
        403,
        "rbac.forbidden",
    )
    .await;
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains("operations.sales.price_override")
    );
    assert!(
        shop.app
            .security_event_kinds()
            .await
            .contains(&"permission_denied".to_owned())
    );
    let mut same = shop.cash_sale(&item, "1", "2");
    same["lines"][0]["unit_price"] = json!("2.00");
    assert_eq!(shop.sell(&shop.cashier, "k3", &same).await.status(), 201);
    let sale: Value = shop
        .sell(&shop.manager, "k4", &cheaper)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(sale["lines"][0]["unit_price"], "1.50");
    assert_eq!(sale["lines"][0]["catalog_price"], "2.00");
    assert_eq!(sale["change_due"], "0.50");

    // Accountants and auditors read sales but do not sell.
    let auditor = shop
        .app
        .user_token("audrey", "auditor pass 123", &["auditor"])
        .await;
    problem(
        shop.sell(&auditor, "k5", &shop.cash_sale(&item, "1", "2"))
            .await,
        403,
        "rbac.forbidden",
    )
    .await;
    assert_eq!(
        shop.app.get_as("/api/v1/sales", &auditor).await.status(),
        200
    );
    problem(
        shop.app
            .get_as(
                "/api/v1/sales/01938a6e-0000-7000-8000-000000000009",
                &auditor,
            )
            .await,
        404,
        "sale.not_found",
    )
    .await;
}

#[tokio::test]
async fn completed_sales_are_immutable_in_the_database() {
    let shop = Shop::open().await;
    let item = shop.product("ITEM", "2.00", &shop.standard, false).await;
    shop.open_session("0").await;
    let sale: Value = shop
        .sell(&shop.cashier, "k", &shop.cash_sale(&item, "1", "2"))
        .await
        .json()
        .await
        .unwrap();
    let id: uuid::Uuid = sale["id"].as_str().unwrap().parse().unwrap();
    // Even the database superuser is refused by the triggers.
    for sql in [
        "UPDATE sales SET total = 0 WHERE id = $1",
        "UPDATE sales SET receipt_number = 'X' WHERE id = $1",
        "DELETE FROM sales WHERE id = $1",
        "UPDATE sale_lines SET quantity = 5 WHERE sale_id = $1",
        "UPDATE sales SET payment_amounts = '{1}' WHERE id = $1",
        "UPDATE sales SET payment_methods = payment_methods || '{card}' WHERE id = $1",
        "UPDATE sales SET tax_amounts = '{0}' WHERE id = $1",
    ] {
        let error = sqlx::query(sql)
            .bind(id)
            .execute(&shop.app.pool)
            .await
            .unwrap_err();
        assert!(error.to_string().contains("immutable"), "{sql}: {error}");
    }
    // Nor can it gain a line later (issue 28, finding 17): lines come only with their sale.
    let added = sqlx::query(
        "INSERT INTO sale_lines SELECT (jsonb_populate_record(NULL::sale_lines, to_jsonb(l) || '{\"line_no\": 99}')).* \
         FROM sale_lines l WHERE l.sale_id = $1",
    )
    .bind(id)
    .execute(&shop.app.pool)
    .await
    .unwrap_err();
    assert_eq!(
        added.as_database_error().and_then(|d| d.constraint()),
        Some("sale_lines_with_their_sale"),
        "{added}"
    );
    // Nor can a line point to a sale that does not exist (the same check, since 0017, in place of
    // the foreign key).
    let orphan = sqlx::query(
        "INSERT INTO sale_lines SELECT (jsonb_populate_record(NULL::sale_lines, to_jsonb(l) || \
           jsonb_build_object('sale_id', gen_random_uuid()))).* FROM sale_lines l WHERE l.sale_id = $1",
    )
    .bind(id)
    .execute(&shop.app.pool)
    .await
    .unwrap_err();
    assert_eq!(
        orphan.as_database_error().and_then(|d| d.constraint()),
        Some("sale_lines_with_their_sale"),
        "{orphan}"
    );
    let read: Value = shop
        .app
        .get_as(&format!("/api/v1/sales/{id}"), &shop.cashier)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(read, sale);
}

/// Migration 0014 moved each sale's payments and tax buckets from their own tables into arrays on
/// its row. A database recorded before it (rebuilt here: the two tables as 0010 made them, filled
/// from the sales, the arrays gone) reads back the same after the upgrade.
#[tokio::test]
async fn sales_recorded_before_0014_read_the_same_after_it() {
    let shop = Shop::open().await;
    let (pen, bread) = shop.pen_and_bread().await;
    let session = shop.open_session("50").await;
    let mut ids = Vec::new();
    for (key, payments) in [
        ("u-1", json!([{"method": "cash", "amount": "20"}])),
        (
            "u-2",
            json!([{"method": "card", "amount": "5.00"}, {"method": "cash", "amount": "2.00"}]),
        ),
    ] {
        let body = json!({
            "register_id": shop.register,
            "lines": [{"product_id": pen, "quantity": "2"}, {"product_id": bread, "quantity": "1"}],
            "payments": payments,
        });
        let sale: Value = shop
            .sell(&shop.cashier, key, &body)
            .await
            .json()
            .await
            .unwrap();
        ids.push(sale["id"].as_str().unwrap().to_owned());
    }
    let read = || async {
        let mut bodies = Vec::new();
        for id in &ids {
            let sale: Value = shop
                .app
                .get_as(&format!("/api/v1/sales/{id}"), &shop.cashier)
                .await
                .json()
                .await
                .unwrap();
            bodies.push(sale);
        }
        let report: Value = shop
            .app
            .get_as(
                &format!("/api/v1/cash-sessions/{session}/report"),
                &shop.manager,
            )
            .await
            .json()
            .await
            .unwrap();
        (bodies, report)
    };
    let before = read().await;
    assert_eq!(before.0[1]["payments"].as_array().unwrap().len(), 2);
    assert_eq!(before.0[1]["taxes"].as_array().unwrap().len(), 2);

    let pool = &shop.app.pool;
    let mut tx = pool.begin().await.unwrap();
    for sql in [
        "DROP VIEW sale_payments, sale_taxes",
        "CREATE TABLE sale_payments (sale_id uuid NOT NULL REFERENCES sales (id), line_no int NOT NULL CHECK (line_no > 0), \
           method text NOT NULL CHECK (method IN ('cash', 'card', 'voucher', 'other')), \
           amount numeric(14,4) NOT NULL CHECK (amount > 0), PRIMARY KEY (sale_id, line_no))",
        "CREATE TABLE sale_taxes (sale_id uuid NOT NULL REFERENCES sales (id), rate numeric(7,6) NOT NULL, \
           net numeric(14,4) NOT NULL, tax numeric(14,4) NOT NULL, gross numeric(14,4) NOT NULL, PRIMARY KEY (sale_id, rate))",
        "INSERT INTO sale_payments SELECT s.id, p.no, p.method, p.amount \
           FROM sales s, unnest(s.payment_methods, s.payment_amounts) WITH ORDINALITY AS p(method, amount, no)",
        "INSERT INTO sale_taxes SELECT s.id, t.* FROM sales s, unnest(s.tax_rates, s.tax_nets, s.tax_amounts, s.tax_grosses) AS t",
        "ALTER TABLE sales DROP CONSTRAINT sales_payments_taxes_check, \
           DROP COLUMN payment_methods, DROP COLUMN payment_amounts, DROP COLUMN tax_rates, DROP COLUMN tax_nets, \
           DROP COLUMN tax_amounts, DROP COLUMN tax_grosses",
        "DROP FUNCTION sale_payments_and_taxes_valid(text[], numeric[], numeric[], numeric[], numeric[], numeric[])",
        "DELETE FROM _sqlx_migrations WHERE version = 14",
    ] {
        sqlx::query(sql).execute(&mut *tx).await.unwrap();
    }
    tx.commit().await.unwrap();
    let counts: (i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM sale_payments), (SELECT count(*) FROM sale_taxes)",
    )
    .fetch_one(pool)
    .await
    .unwrap();
    assert_eq!(counts, (3, 4), "the pre-0014 tables hold the sales' rows");

    assert_eq!(
        plugpos::core::db::migrations::apply(pool).await.unwrap(),
        [14]
    );
    assert_eq!(read().await, before);
    // And they are as immutable as before.
    let error = sqlx::query("UPDATE sales SET payment_amounts = '{7}' WHERE id = $1::uuid")
        .bind(&ids[1])
        .execute(pool)
        .await
        .unwrap_err();
    assert!(error.to_string().contains("immutable"), "{error}");
}
