//! Sales recorded together (the sales writer batches concurrent sales into one statement):
//! each is still its own document with its own number, stock movement and audit record, and a
//! sale the database refuses fails alone.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Value, json};

use crate::helpers::problem;
use crate::shop::Shop;

/// Opens `n - 1` more registers at the shop's location, each with an open session; returns all
/// `n` register ids (the shop's own first, its session opened too).
async fn registers_with_sessions(shop: &Shop, n: usize) -> Vec<String> {
    shop.open_session("0").await;
    let mut registers = vec![shop.register.clone()];
    for i in 1..n {
        let response = shop
            .app
            .post_as(
                "/api/v1/registers",
                &shop.admin,
                &json!({"name": format!("Till {i}"), "location_id": shop.location}),
            )
            .await;
        assert_eq!(response.status(), 201, "{}", response.text().await.unwrap());
        let register = response.json::<Value>().await.unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned();
        let response = shop
            .app
            .post_as(
                "/api/v1/cash-sessions",
                &shop.cashier,
                &json!({"register_id": register, "opening_float": "0"}),
            )
            .await;
        assert_eq!(response.status(), 201, "{}", response.text().await.unwrap());
        registers.push(register);
    }
    registers
}

fn one_line_sale(register: &str, product: &str, quantity: &str) -> Value {
    json!({
        "register_id": register,
        "lines": [{"product_id": product, "quantity": quantity}],
        "payments": [{"method": "cash", "amount": "100"}],
    })
}

#[tokio::test]
async fn concurrent_sales_are_separate_documents_with_their_own_numbers_stock_and_audit() {
    let shop = Shop::open().await;
    let item = shop.product("ITEM", "1.00", &shop.standard, true).await;
    let registers = registers_with_sessions(&shop, 3).await;
    let other = shop
        .app
        .user_token("otto", "cashier pass 456", &["manager"])
        .await;

    // 30 sales at once: ten per register, the cashier who opened the sessions and a manager
    // (who may sell into them), each with its own request id.
    let shop = &shop;
    let requests = (0..30).map(|i| {
        let body = one_line_sale(&registers[i % 3], &item, "1");
        let token = if i % 2 == 0 { &shop.cashier } else { &other };
        async move {
            let response = shop
                .app
                .client
                .post(shop.app.url("/api/v1/sales"))
                .bearer_auth(token)
                .header("Idempotency-Key", format!("batch-{i}"))
                .header("X-Request-Id", format!("sale-request-{i}"))
                .json(&body)
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 201);
            (i, response.json::<Value>().await.unwrap())
        }
    });
    let sales = futures_util::future::join_all(requests).await;

    // Per register, the numbers are 1..=10 without a gap, whatever batches they came in.
    let mut numbers: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    for (_, sale) in &sales {
        let number = sale["receipt_number"].as_str().unwrap();
        let counter: i64 = number.rsplit('-').next().unwrap().parse().unwrap();
        numbers
            .entry(sale["register_id"].as_str().unwrap().to_owned())
            .or_default()
            .push(counter);
    }
    assert_eq!(numbers.len(), 3);
    for list in numbers.values_mut() {
        list.sort_unstable();
        assert_eq!(*list, (1..=10).collect::<Vec<i64>>());
    }
    assert_eq!(shop.stock(&item).await.as_deref(), Some("-30.000"));

    // Each sale has one audit record, naming its own cashier and request, whose stock level is
    // the level right after that sale: together they step down one by one.
    let records: Vec<(String, String, Option<String>, String)> = sqlx::query_as(
        "SELECT entity_id, actor_username, request_id, after_json FROM audit_records WHERE action = 'sale.complete'",
    )
    .fetch_all(&shop.app.pool)
    .await
    .unwrap();
    assert_eq!(records.len(), 30);
    let by_sale: BTreeMap<&str, &(String, String, Option<String>, String)> =
        records.iter().map(|r| (r.0.as_str(), r)).collect();
    let mut levels = BTreeSet::new();
    for (i, sale) in &sales {
        let record = by_sale[sale["id"].as_str().unwrap()];
        let seller = if i % 2 == 0 { "carla" } else { "otto" };
        assert_eq!(record.1, seller);
        assert_eq!(
            record.2.as_deref(),
            Some(format!("sale-request-{i}").as_str())
        );
        let after: Value = serde_json::from_str(&record.3).unwrap();
        assert_eq!(after["receipt_number"], sale["receipt_number"]);
        assert_eq!(after["stock"][0]["delta"], "-1");
        levels.insert(after["stock"][0]["quantity"].as_str().unwrap().to_owned());
    }
    let expected: BTreeSet<String> = (1..=30).map(|n| format!("-{n}.000")).collect();
    assert_eq!(levels, expected, "every sale saw the level after itself");
    let ledger: Vec<String> = sqlx::query_scalar(
        "SELECT g.quantity_after::text FROM stock_ledger g WHERE g.reason_code = 'sale' ORDER BY g.quantity_after DESC",
    )
    .fetch_all(&shop.app.pool)
    .await
    .unwrap();
    assert_eq!(
        ledger,
        (1..=30).map(|n| format!("-{n}.000")).collect::<Vec<_>>()
    );

    let verify: Value = shop
        .app
        .get_as("/api/v1/audit/verify", &shop.admin)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(verify["ok"], true, "{verify}");
}

#[tokio::test]
async fn a_sale_the_database_refuses_fails_alone_and_gives_back_its_number_and_key() {
    let shop = Shop::open().await;
    let item = shop.product("ITEM", "1.00", &shop.standard, true).await;
    shop.open_session("0").await;
    // Stands for anything the database refuses at write time, after the request was validated.
    sqlx::raw_sql(
        "CREATE FUNCTION refuse_seven() RETURNS trigger LANGUAGE plpgsql AS $$ \
         BEGIN IF NEW.quantity = 7 THEN RAISE EXCEPTION 'no sevens today'; END IF; RETURN NEW; END $$; \
         CREATE TRIGGER refuse_seven BEFORE INSERT ON sale_lines FOR EACH ROW EXECUTE FUNCTION refuse_seven();",
    )
    .execute(&shop.app.pool)
    .await
    .unwrap();

    let shop = &shop;
    let requests = (0..12).map(|i| {
        let quantity = if i == 5 { "7" } else { "1" };
        let body = one_line_sale(&shop.register, &item, quantity);
        async move {
            let response = shop.sell(&shop.cashier, &format!("k{i}"), &body).await;
            (i, response)
        }
    });
    for (i, response) in futures_util::future::join_all(requests).await {
        if i == 5 {
            let body = problem(response, 500, "internal").await;
            assert!(
                !body.to_string().contains("sevens"),
                "no internals in the answer: {body}"
            );
        } else {
            assert_eq!(response.status(), 201, "sale {i}");
        }
    }
    let numbers: Vec<i64> =
        sqlx::query_scalar("SELECT receipt_seq FROM sales ORDER BY receipt_seq")
            .fetch_all(&shop.app.pool)
            .await
            .unwrap();
    assert_eq!(numbers, (1..=11).collect::<Vec<i64>>());
    assert_eq!(shop.stock(&item).await.as_deref(), Some("-11.000"));

    // Its key was not kept: once the database accepts it, the same request records the sale.
    sqlx::raw_sql("DROP TRIGGER refuse_seven ON sale_lines")
        .execute(&shop.app.pool)
        .await
        .unwrap();
    let retried = shop
        .sell(
            &shop.cashier,
            "k5",
            &one_line_sale(&shop.register, &item, "7"),
        )
        .await;
    assert_eq!(retried.status(), 201);
    assert!(retried.headers().get("idempotent-replayed").is_none());
    let sale: Value = retried.json().await.unwrap();
    assert!(
        sale["receipt_number"]
            .as_str()
            .unwrap()
            .ends_with("-000012")
    );
    assert_eq!(shop.stock(&item).await.as_deref(), Some("-18.000"));
}

#[tokio::test]
async fn receipt_numbers_follow_the_format_setting_and_grow_past_its_digits() {
    let shop = Shop::open().await;
    shop.set(
        "numbering.receipt_format",
        json!("{year}/{register}/{number}"),
    )
    .await;
    shop.set("numbering.receipt_digits", json!(1)).await;
    let item = shop.product("ITEM", "1.00", &shop.standard, false).await;
    shop.open_session("0").await;
    let code: String = sqlx::query_scalar("SELECT code FROM registers WHERE id = $1::uuid")
        .bind(&shop.register)
        .fetch_one(&shop.app.pool)
        .await
        .unwrap();
    let mut numbers = Vec::new();
    for i in 0..11 {
        let response = shop
            .sell(
                &shop.cashier,
                &format!("fmt-{i}"),
                &shop.cash_sale(&item, "1", "1"),
            )
            .await;
        assert_eq!(response.status(), 201);
        let sale: Value = response.json().await.unwrap();
        let year = &sale["created_at"].as_str().unwrap()[..4];
        assert!(
            sale["receipt_number"]
                .as_str()
                .unwrap()
                .starts_with(&format!("{year}/{code}/"))
        );
        numbers.push(
            sale["receipt_number"]
                .as_str()
                .unwrap()
                .rsplit('/')
                .next()
                .unwrap()
                .to_owned(),
        );
    }
    // One digit pads nothing and cuts nothing: the tenth and eleventh sales are 10 and 11.
    let expected: Vec<String> = (1..=11).map(|n| n.to_string()).collect();
    assert_eq!(numbers, expected);
    let stored: Vec<String> =
        sqlx::query_scalar("SELECT receipt_number FROM sales ORDER BY receipt_seq")
            .fetch_all(&shop.app.pool)
            .await
            .unwrap();
    assert_eq!(stored.last().unwrap().rsplit('/').next(), Some("11"));
}

/// The writer builds a sale's audit `after` as JSON text around what the request knew: a receipt
/// number with characters JSON must escape still gives a record that parses, with every field.
#[tokio::test]
async fn a_sales_audit_record_is_json_whatever_its_receipt_number_holds() {
    let shop = Shop::open().await;
    shop.set(
        "numbering.receipt_format",
        json!("R\"\\{register}{year}{number}"),
    )
    .await;
    let (pen, bread) = shop.pen_and_bread().await;
    shop.open_session("0").await;
    let body = json!({
        "register_id": shop.register,
        "lines": [{"product_id": bread, "quantity": "1"}, {"product_id": pen, "quantity": "2"}],
        "payments": [{"method": "cash", "amount": "10"}],
    });
    let sale: Value = shop
        .sell(&shop.cashier, "esc", &body)
        .await
        .json()
        .await
        .unwrap();
    let year = &sale["created_at"].as_str().unwrap()[..4];
    assert_eq!(
        sale["receipt_number"],
        format!("R\"\\R1{year}000001").as_str()
    );
    let text: String = sqlx::query_scalar(
        "SELECT after_json FROM audit_records WHERE entity = 'sale' AND entity_id = $1",
    )
    .bind(sale["id"].as_str().unwrap())
    .fetch_one(&shop.app.pool)
    .await
    .unwrap();
    let after: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
    assert_eq!(after["receipt_number"], sale["receipt_number"]);
    assert_eq!(after["cash_session_id"], sale["cash_session_id"]);
    assert_eq!(after["totals"], sale["totals"]);
    assert_eq!(after["payments"], sale["payments"]);
    assert_eq!(
        after["stock"],
        json!([{"product_id": pen, "location_id": shop.location, "line_no": 2, "delta": "-2", "quantity": "8.000"}])
    );
}

#[tokio::test]
async fn a_session_closed_amid_sales_holds_exactly_the_sales_that_were_answered_201() {
    let shop = Shop::open().await;
    let item = shop.product("ITEM", "1.00", &shop.standard, false).await;
    let session = shop.open_session("0").await;
    let shop = &shop;
    let sales = (0..40).map(|i| {
        let body = shop.cash_sale(&item, "1", "1");
        async move { shop.sell(&shop.cashier, &format!("amid-{i}"), &body).await }
    });
    let close = async {
        tokio::time::sleep(std::time::Duration::from_millis(15)).await;
        shop.app
            .post_as(
                &format!("/api/v1/cash-sessions/{session}/close"),
                &shop.cashier,
                &json!({"counted_cash": "0.00", "variance_reason": "test"}),
            )
            .await
    };
    let (responses, closed) = tokio::join!(futures_util::future::join_all(sales), close);
    assert_eq!(closed.status(), 200, "{}", closed.text().await.unwrap());
    let closed: Value = closed.json().await.unwrap();

    // Each sale was either recorded in the session or refused for want of one: none in between.
    let mut recorded = 0;
    for response in responses {
        match response.status().as_u16() {
            201 => {
                let sale: Value = response.json().await.unwrap();
                assert_eq!(sale["cash_session_id"], session.as_str());
                recorded += 1;
            }
            _ => {
                problem(response, 409, "cash.no_open_session").await;
            }
        }
    }
    // The close counted exactly the sales that were acknowledged, and none landed after it.
    assert_eq!(closed["expected_cash"], format!("{recorded}.00"));
    let stored: i64 =
        sqlx::query_scalar("SELECT count(*) FROM sales WHERE cash_session_id = $1::uuid")
            .bind(&session)
            .fetch_one(&shop.app.pool)
            .await
            .unwrap();
    assert_eq!(stored, recorded);
    let numbers: Vec<i64> =
        sqlx::query_scalar("SELECT receipt_seq FROM sales ORDER BY receipt_seq")
            .fetch_all(&shop.app.pool)
            .await
            .unwrap();
    assert_eq!(
        numbers,
        (1..=recorded).collect::<Vec<i64>>(),
        "refused sales took no number"
    );
}

/// The sale record's `after` JSON as the statement builds it, against the expression of the
/// releases before the statement was composed of parts (copied here as it was): the chain hashes
/// the stored text, so the two must give the same bytes for the same sale.
#[tokio::test]
async fn a_sales_audit_json_is_byte_identical_to_the_earlier_statement() {
    const EARLIER: &str = "w.audit_base || ',\"receipt_number\":' || to_json(w.number)::text || ',\"cash_session_id\":\"' || w.session_id \
         || '\",\"stock\":[' || COALESCE((SELECT string_agg('{\"product_id\":\"' || a.product_id || '\",\"location_id\":\"' \
              || a.location_id || '\",\"line_no\":' || a.line_no || ',\"delta\":\"' || a.delta || '\",\"quantity\":\"' \
              || a.quantity_after || '\"}', ',' ORDER BY a.ord) \
            FROM stock_after a WHERE a.document_id = w.id), '') || ']}'";
    let now = plugpos::plugs::operations::sales::record::audit_after_sql();
    let app = crate::helpers::TestApp::spawn().await;
    let sql = format!(
        "WITH w AS (SELECT * FROM (VALUES \
           ('{{\"register_id\":\"x\",\"totals\":{{\"total\":\"1.00\"}}', 'R1-\"2026\"\\\\-ü-0001', \
            '0190a0c8-0000-7000-8000-000000000001'::uuid, '0190a0c8-0000-7000-8000-0000000000a1'::uuid), \
           ('{{\"lines\":0', 'R2-0002', '0190a0c8-0000-7000-8000-000000000002'::uuid, \
            '0190a0c8-0000-7000-8000-0000000000a2'::uuid)) AS v(audit_base, number, session_id, id)), \
         stock_after AS (SELECT * FROM (VALUES \
           ('0190a0c8-0000-7000-8000-0000000000a1'::uuid, '0190a0c8-0000-7000-8000-00000000000b'::uuid, \
            '0190a0c8-0000-7000-8000-00000000000c'::uuid, 2, -1.500::numeric, 7.250::numeric, 2::bigint), \
           ('0190a0c8-0000-7000-8000-0000000000a1'::uuid, '0190a0c8-0000-7000-8000-00000000000d'::uuid, \
            '0190a0c8-0000-7000-8000-00000000000c'::uuid, 1, -3::numeric, -1::numeric, 1::bigint)) \
           AS v(document_id, product_id, location_id, line_no, delta, quantity_after, ord)) \
         SELECT {EARLIER}, {now} FROM w ORDER BY w.id"
    );
    let rows: Vec<(String, String)> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .fetch_all(&app.pool)
        .await
        .unwrap();
    assert_eq!(rows.len(), 2);
    for (earlier, composed) in &rows {
        assert_eq!(composed, earlier);
        let parsed: Value = serde_json::from_str(composed).unwrap();
        assert!(parsed["cash_session_id"].is_string(), "{composed}");
    }
    assert!(
        rows[0].1.contains(r#""stock":[{"product_id""#),
        "{}",
        rows[0].1
    );
    assert!(rows[1].1.ends_with(r#""stock":[]}"#), "{}", rows[1].1);
}
