//! The Z closings (issue 30): totals from the documents, grand totals carried over, closed
//! periods refused in the database, and `plugpos closing verify`.

use rust_decimal::Decimal;
use serde_json::{Value, json};

use crate::helpers::{database_url, plugpos, problem};
use crate::shop::Shop;

async fn close_day(shop: &Shop, body: Value) -> reqwest::Response {
    shop.app
        .post_as("/api/v1/closings", &shop.manager, &body)
        .await
}

async fn sell(shop: &Shop, key: &str, body: &Value) -> Value {
    let response = shop.sell(&shop.cashier, key, body).await;
    assert_eq!(response.status(), 201, "{}", response.text().await.unwrap());
    response.json().await.unwrap()
}

fn d(v: &Value) -> Decimal {
    v.as_str().unwrap().parse().unwrap()
}

/// A day of trade: sales by cash and card (one discounted), a partial return, a void, a no-sale.
pub async fn trade(shop: &Shop, pen: &str, bread: &str, tag: &str) -> String {
    let session = shop.open_session("50.00").await;
    let first = sell(
        shop,
        &format!("{tag}-1"),
        &json!({"register_id": shop.register,
        "lines": [{"product_id": pen, "quantity": "2"}, {"product_id": bread, "quantity": "3"}],
        "payments": [{"method": "cash", "amount": "20.00"}]}),
    )
    .await;
    sell(shop, &format!("{tag}-2"), &json!({"register_id": shop.register,
        "lines": [{"product_id": pen, "quantity": "1", "discount": {"kind": "amount", "value": "0.50", "reason_code": "damaged"}}],
        "approval_ref": null,
        "payments": [{"method": "card", "amount": "2.00"}]})).await;
    let third = sell(
        shop,
        &format!("{tag}-3"),
        &shop.cash_sale(bread, "1", "1.99"),
    )
    .await;
    let response = shop
        .give_back(
            &shop.manager,
            &format!("{tag}-r"),
            &json!({"register_id": shop.register,
        "original_sale_id": first["id"], "lines": [{"line_no": 2, "quantity": "1"}],
        "refunds": [{"method": "cash", "amount": "1.99"}], "reason_code": "defective"}),
        )
        .await;
    assert_eq!(response.status(), 201, "{}", response.text().await.unwrap());
    let url = shop.app.url(&format!(
        "/api/v1/sales/{}/void",
        third["id"].as_str().unwrap()
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
    assert_eq!(response.status(), 201, "{}", response.text().await.unwrap());
    let response = shop
        .app
        .post_as(
            &format!("/api/v1/cash-sessions/{session}/no-sale"),
            &shop.manager,
            &json!({"reason": "change"}),
        )
        .await;
    assert_eq!(response.status(), 201);
    session
}

#[tokio::test]
async fn a_day_closing_equals_an_independent_recomputation_and_grand_totals_carry_over() {
    let shop = Shop::open().await;
    // The manager discounts; the cashier may give up to 25 % alone.
    shop.set("sales.max_cashier_discount_percent", json!(25))
        .await;
    let (pen, bread) = shop.pen_and_bread().await;
    let session = trade(&shop, &pen, &bread, "d1").await;
    // Sessions open: refused, naming them.
    let refused = problem(
        close_day(&shop, json!({"kind": "day"})).await,
        409,
        "closing.sessions_open",
    )
    .await;
    assert!(refused["detail"].as_str().unwrap().contains(&session));
    shop.close_session(&session, "70.00").await;

    let response = close_day(&shop, json!({"kind": "day"})).await;
    assert_eq!(response.status(), 201, "{}", response.text().await.unwrap());
    let first: Value = response.json().await.unwrap();
    let figures = &first["report"]["figures"];

    // Recomputed here from the tables, independently of the server's code.
    let pool = &shop.app.pool;
    let (count, total, tax, discounts): (i64, Decimal, Decimal, Decimal) =
        sqlx::query_as("SELECT count(*), sum(total), sum(tax), sum(discount_total) FROM sales")
            .fetch_one(pool)
            .await
            .unwrap();
    assert_eq!(figures["totals"]["sales"]["count"], count);
    assert_eq!(d(&figures["totals"]["sales"]["total"]), total);
    assert_eq!(d(&figures["totals"]["sales"]["tax"]), tax);
    assert_eq!(d(&figures["discounts"]), discounts);
    let corrections: Vec<(String, i64, Decimal)> = sqlx::query_as(
        "SELECT kind, count(*), sum(total) FROM returns GROUP BY kind ORDER BY kind",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    assert_eq!(corrections[0].0, "return");
    assert_eq!(
        (
            figures["totals"]["returns"]["count"].as_i64().unwrap(),
            d(&figures["totals"]["returns"]["total"])
        ),
        (corrections[0].1, corrections[0].2)
    );
    assert_eq!(
        (
            figures["totals"]["voids"]["count"].as_i64().unwrap(),
            d(&figures["totals"]["voids"]["total"])
        ),
        (corrections[1].1, corrections[1].2)
    );
    let net_total = total + corrections.iter().map(|c| c.2).sum::<Decimal>();
    assert_eq!(d(&figures["totals"]["net"]["total"]), net_total);
    // Cash: what came in less change, less what went back out.
    let cash_in: Decimal = sqlx::query_scalar(
        "SELECT sum(p.amount) FROM sales s, unnest(s.payment_methods, s.payment_amounts) p(method, amount) WHERE p.method = 'cash'")
        .fetch_one(pool).await.unwrap();
    let change: Decimal = sqlx::query_scalar("SELECT sum(change_due) FROM sales")
        .fetch_one(pool)
        .await
        .unwrap();
    let cash_out: Decimal = sqlx::query_scalar(
        "SELECT sum(r.amount) FROM returns d, unnest(d.refund_methods, d.refund_amounts) r(method, amount) WHERE r.method = 'cash'")
        .fetch_one(pool).await.unwrap();
    let cash = figures["payments"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["method"] == "cash")
        .unwrap();
    assert_eq!(d(&cash["received"]), cash_in - change);
    assert_eq!(d(&cash["refunded"]), cash_out);
    // Tax buckets: sales and corrections per rate, adding up to the net tax.
    let bucket_tax: Decimal = figures["taxes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| d(&t["tax"]))
        .sum();
    assert_eq!(bucket_tax, d(&figures["totals"]["net"]["tax"]));
    let variance: Decimal = sqlx::query_scalar("SELECT sum(variance) FROM cash_sessions")
        .fetch_one(pool)
        .await
        .unwrap();
    assert_eq!(d(&figures["cash"]["variance"]), variance);
    assert_eq!(figures["cash"]["no_sales"], 1);
    let documents = &figures["documents"][0];
    assert_eq!(documents["sales"]["count"], 3);
    assert!(
        documents["sales"]["first"]
            .as_str()
            .unwrap()
            .ends_with("000001")
    );
    assert!(
        documents["sales"]["last"]
            .as_str()
            .unwrap()
            .ends_with("000003")
    );
    assert_eq!(documents["corrections"]["count"], 2);
    // The grand totals start with the first closing.
    let grand = &first["report"]["grand_totals"];
    assert_eq!(d(&grand["sales"]), total);
    assert_eq!(d(&grand["net"]), net_total);
    assert_eq!(first["seq"], 1);
    assert_eq!(first["previous_hash"], "0".repeat(64));

    // The same day again: final.
    problem(
        close_day(&shop, json!({"kind": "day"})).await,
        409,
        "closing.already_closed",
    )
    .await;

    // Next day: trade, close; the grand totals carry over and the chain goes on.
    shop.app.clock.advance(chrono::Duration::days(1));
    // (A day later the tokens have expired: log in again.)
    let (manager, cashier) = (
        shop.app.token("boss", "manager pass 123").await,
        shop.app.token("carla", "cashier pass 123").await,
    );
    let shop = Shop {
        manager,
        cashier,
        ..shop
    };
    let session = trade(&shop, &pen, &bread, "d2").await;
    shop.close_session(&session, "70.00").await;
    let response = close_day(&shop, json!({"kind": "day"})).await;
    assert_eq!(response.status(), 201, "{}", response.text().await.unwrap());
    let second: Value = response.json().await.unwrap();
    assert_eq!(second["seq"], 2);
    assert_eq!(second["previous_hash"], first["hash"]);
    let day2 = d(&second["report"]["figures"]["totals"]["sales"]["total"]);
    assert_eq!(d(&second["report"]["grand_totals"]["sales"]), total + day2);
    let day2_back = d(&second["report"]["figures"]["totals"]["returns"]["total"])
        + d(&second["report"]["figures"]["totals"]["voids"]["total"]);
    assert_eq!(
        d(&second["report"]["grand_totals"]["returns"]),
        d(&grand["returns"]) - day2_back
    );
    // A month cannot close before its last day is closed.
    let today = second["business_date"].as_str().unwrap();
    problem(
        close_day(&shop, json!({"kind": "month", "business_date": today})).await,
        409,
        "closing.days_open",
    )
    .await;
    problem(
        close_day(&shop, json!({"kind": "month"})).await,
        422,
        "validation.failed",
    )
    .await;
    // Tomorrow has not begun.
    let tomorrow = (chrono::NaiveDate::parse_from_str(today, "%Y-%m-%d").unwrap()
        + chrono::Duration::days(1))
    .to_string();
    problem(
        close_day(&shop, json!({"kind": "day", "business_date": tomorrow})).await,
        422,
        "closing.future",
    )
    .await;

    // Listed newest first; the report as JSON and as a PDF.
    let list: Value = shop
        .app
        .get_as("/api/v1/closings?limit=1", &shop.manager)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(list["items"][0]["id"], second["id"]);
    let next = list["next_cursor"].as_str().unwrap();
    let list: Value = shop
        .app
        .get_as(
            &format!("/api/v1/closings?limit=1&cursor={next}"),
            &shop.manager,
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(list["items"][0]["id"], first["id"]);
    let report: Value = shop
        .app
        .get_as(
            &format!("/api/v1/closings/{}/report", first["id"].as_str().unwrap()),
            &shop.manager,
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(report, first["report"]);
    let pdf = shop
        .app
        .get_as(
            &format!(
                "/api/v1/closings/{}/report?format=pdf",
                first["id"].as_str().unwrap()
            ),
            &shop.manager,
        )
        .await;
    assert_eq!(pdf.status(), 200);
    assert_eq!(pdf.headers()["content-type"], "application/pdf");
    let bytes = pdf.bytes().await.unwrap();
    assert!(bytes.starts_with(b"%PDF-"));
    std::fs::write(
        shop.app.data_dir.path().join("exports/z-report.pdf"),
        &bytes,
    )
    .unwrap();
    if let Ok(dir) = std::env::var("PLUGPOS_KEEP_Z_REPORT") {
        std::fs::write(std::path::Path::new(&dir).join("z-report.pdf"), &bytes).unwrap();
    }
    // The signature verifies with the public key over the documented bytes.
    let message = format!(
        "plugpos-closing-v1\n{}",
        first["signed_message"].as_str().unwrap()
    );
    use sha2::Digest;
    assert_eq!(
        hex::encode(sha2::Sha256::digest(message.as_bytes())),
        first["hash"].as_str().unwrap()
    );
    let key = ed25519_dalek::VerifyingKey::from_bytes(
        &hex::decode(first["public_key"].as_str().unwrap())
            .unwrap()
            .try_into()
            .unwrap(),
    )
    .unwrap();
    let signature = ed25519_dalek::Signature::from_bytes(
        &hex::decode(first["signature"].as_str().unwrap())
            .unwrap()
            .try_into()
            .unwrap(),
    );
    key.verify_strict(message.as_bytes(), &signature).unwrap();
    // Cashiers do not close days.
    problem(
        shop.app
            .post_as("/api/v1/closings", &shop.cashier, &json!({"kind": "day"}))
            .await,
        403,
        "rbac.forbidden",
    )
    .await;
}

#[tokio::test]
async fn a_closed_day_refuses_every_document_dated_inside_it_also_by_sql() {
    let shop = Shop::open().await;
    let (pen, _) = shop.pen_and_bread().await;
    let session = shop.open_session("10.00").await;
    let sale = sell(&shop, "s1", &shop.cash_sale(&pen, "1", "2.50")).await;
    shop.close_session(&session, "12.50").await;
    let response = close_day(&shop, json!({"kind": "day"})).await;
    assert_eq!(response.status(), 201, "{}", response.text().await.unwrap());

    // The clock is still inside the closed day: a sale, a return, a cash movement and a stock
    // adjustment would all be dated in it.
    let session = shop.open_session("10.00").await;
    problem(
        shop.sell(&shop.cashier, "s2", &shop.cash_sale(&pen, "1", "2.50"))
            .await,
        409,
        "period.closed",
    )
    .await;
    problem(shop.give_back(&shop.manager, "r1", &json!({"register_id": shop.register, "original_sale_id": sale["id"],
        "lines": [{"line_no": 1, "quantity": "1"}], "refunds": [{"method": "cash", "amount": "2.50"}],
        "reason_code": "other"})).await, 409, "period.closed").await;
    problem(
        shop.app
            .post_as(
                &format!("/api/v1/cash-sessions/{session}/movements"),
                &shop.cashier,
                &json!({"kind": "in", "amount": "5.00", "reason": "float"}),
            )
            .await,
        409,
        "period.closed",
    )
    .await;
    problem(
        shop.app
            .post_as(
                "/api/v1/stock/adjustments",
                &shop.manager,
                &json!({"product_id": pen, "quantity_delta": "1", "reason_code": "received"}),
            )
            .await,
        409,
        "period.closed",
    )
    .await;
    // Nor can that session be closed inside the closed day (its close counts in a day's cash).
    problem(
        shop.app
            .post_as(
                &format!("/api/v1/cash-sessions/{session}/close"),
                &shop.cashier,
                &json!({"counted_cash": "10.00"}),
            )
            .await,
        409,
        "period.closed",
    )
    .await;
    // Nothing of them was written.
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM sales")
        .fetch_one(&shop.app.pool)
        .await
        .unwrap();
    assert_eq!(count, 1);
    assert_eq!(shop.stock(&pen).await.as_deref(), Some("9.000"));

    // The database refuses it too, whoever writes: the server's own role by SQL.
    let app_pool = shop.app.state.pool();
    let inside: chrono::DateTime<chrono::Utc> =
        sale["created_at"].as_str().unwrap().parse().unwrap();
    let err = sqlx::query("INSERT INTO stock_movements (id, product_id, location_id, quantity_delta, quantity_after, reason_code, created_at) \
                           VALUES (gen_random_uuid(), $1::text::uuid, $2::text::uuid, 1, 10, 'received', $3)")
        .bind(&pen).bind(&shop.location).bind(inside)
        .execute(app_pool).await.unwrap_err();
    assert_eq!(
        err.as_database_error().unwrap().constraint(),
        Some("period_closed")
    );
    let err = sqlx::query("INSERT INTO cash_movements (id, cash_session_id, kind, amount, reason, user_id, created_at) \
                           SELECT gen_random_uuid(), $1::text::uuid, 'in', 1, 'x', opened_by, $2 FROM cash_sessions WHERE id = $1::text::uuid")
        .bind(&session).bind(inside)
        .execute(app_pool).await.unwrap_err();
    assert_eq!(
        err.as_database_error().unwrap().constraint(),
        Some("period_closed")
    );
    let err = sqlx::query(
        "INSERT INTO sales (id, register_id, cash_session_id, cashier_id, receipt_year, receipt_seq, receipt_number, status, currency, \
           prices_include_tax, net, tax, total, cash_rounding, change_due, created_at, location_id, payment_methods, payment_amounts, \
           tax_rates, tax_nets, tax_amounts, tax_grosses) \
         SELECT gen_random_uuid(), register_id, cash_session_id, cashier_id, receipt_year, receipt_seq + 100, receipt_number || 'x', status, \
           currency, prices_include_tax, net, tax, total, cash_rounding, change_due, created_at, location_id, payment_methods, \
           payment_amounts, tax_rates, tax_nets, tax_amounts, tax_grosses FROM sales")
        .execute(app_pool).await.unwrap_err();
    assert_eq!(
        err.as_database_error().unwrap().constraint(),
        Some("period_closed")
    );
    // The closing itself cannot be changed, even by the superuser.
    let err = sqlx::query("UPDATE closings SET signed_message = signed_message || ' '")
        .execute(&shop.app.pool)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("closings are immutable"), "{err}");

    // The next business day is open.
    shop.app.clock.advance(chrono::Duration::days(1));
    let cashier = shop.app.token("carla", "cashier pass 123").await;
    let response = shop
        .sell(&cashier, "s3", &shop.cash_sale(&pen, "1", "2.50"))
        .await;
    assert_eq!(response.status(), 201, "{}", response.text().await.unwrap());
}

#[tokio::test]
async fn days_close_in_order_and_an_earlier_day_with_documents_comes_first() {
    let shop = Shop::open().await;
    let (pen, _) = shop.pen_and_bread().await;
    let session = shop.open_session("0.00").await;
    sell(&shop, "s1", &shop.cash_sale(&pen, "1", "2.50")).await;
    shop.close_session(&session, "2.50").await;
    let day1: Value = shop
        .app
        .get_as("/api/v1/sales?limit=1", &shop.manager)
        .await
        .json()
        .await
        .unwrap();
    let sold_at: chrono::DateTime<chrono::Utc> = day1["items"][0]["created_at"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    shop.app.clock.advance(chrono::Duration::days(2));
    let manager = shop.app.token("boss", "manager pass 123").await;
    let response = shop
        .app
        .post_as("/api/v1/closings", &manager, &json!({"kind": "day"}))
        .await;
    let refused = problem(response, 409, "closing.earlier_day_open").await;
    assert!(
        refused["detail"]
            .as_str()
            .unwrap()
            .contains(&sold_at.format("%Y-%m-%d").to_string()),
        "{refused}"
    );
    let berlin: chrono_tz::Tz = "Europe/Berlin".parse().unwrap();
    let first_day = sold_at.with_timezone(&berlin).date_naive();
    let response = shop
        .app
        .post_as(
            "/api/v1/closings",
            &manager,
            &json!({"kind": "day", "business_date": first_day.to_string()}),
        )
        .await;
    assert_eq!(response.status(), 201, "{}", response.text().await.unwrap());
    // The empty day between need not be closed; today may be now, and then not the day before.
    let response = shop
        .app
        .post_as("/api/v1/closings", &manager, &json!({"kind": "day"}))
        .await;
    assert_eq!(response.status(), 201, "{}", response.text().await.unwrap());
    let response = shop.app.post_as("/api/v1/closings", &manager,
        &json!({"kind": "day", "business_date": (first_day + chrono::Duration::days(1)).to_string()})).await;
    problem(response, 409, "closing.out_of_order").await;
    // The business day may start later than midnight (a bar): the setting is checked.
    let admin = &shop
        .app
        .token("admin", crate::helpers::ADMIN_PASSWORD)
        .await;
    let current: Value = shop
        .app
        .get_as("/api/v1/settings", admin)
        .await
        .json()
        .await
        .unwrap();
    let response = shop
        .app
        .patch_as(
            "/api/v1/settings",
            admin,
            &json!({"values": {"closing.day_starts_at": "25:00"},
        "version": current["version"], "reason": "test"}),
        )
        .await;
    problem(response, 422, "validation.failed").await;
}

#[tokio::test]
async fn closing_verify_passes_then_fails_on_an_altered_closing() {
    let shop = Shop::open().await;
    let (pen, _) = shop.pen_and_bread().await;
    let session = shop.open_session("0.00").await;
    sell(&shop, "s1", &shop.cash_sale(&pen, "2", "5.00")).await;
    shop.close_session(&session, "5.00").await;
    let response = close_day(&shop, json!({"kind": "day"})).await;
    assert_eq!(response.status(), 201, "{}", response.text().await.unwrap());
    let database: String = sqlx::query_scalar("SELECT current_database()")
        .fetch_one(&shop.app.pool)
        .await
        .unwrap();
    let verify = || {
        let mut command = plugpos();
        command
            .args(["closing", "verify", "--data-dir"])
            .arg(shop.app.data_dir.path())
            .env("PLUGPOS_DATABASE__URL", database_url(&database));
        crate::helpers::run(command)
    };
    let output = verify().await;
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["ok"], true);
    assert_eq!(report["checked"], 1);

    // Someone with the superuser's rights rewrites the stated total (the trigger off).
    sqlx::query("ALTER TABLE closings DISABLE TRIGGER closings_immutable")
        .execute(&shop.app.pool)
        .await
        .unwrap();
    sqlx::query("UPDATE closings SET signed_message = replace(signed_message, '\"total\":\"5.00\"', '\"total\":\"4.00\"')")
        .execute(&shop.app.pool).await.unwrap();
    sqlx::query("ALTER TABLE closings ENABLE TRIGGER closings_immutable")
        .execute(&shop.app.pool)
        .await
        .unwrap();
    let output = verify().await;
    assert!(!output.status.success());
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    let problems = report["problems"].to_string();
    assert!(problems.contains("its hash does not match"), "{problems}");
    assert!(problems.contains("totals no longer equal"), "{problems}");
    assert!(String::from_utf8_lossy(&output.stderr).contains("problem(s) in 1 closings"));
}

#[tokio::test]
async fn months_and_years_close_after_their_days_and_carry_the_grand_totals() {
    let shop = Shop::open().await;
    let (pen, _) = shop.pen_and_bread().await;
    let session = shop.open_session("0.00").await;
    sell(&shop, "s1", &shop.cash_sale(&pen, "2", "5.00")).await;
    shop.close_session(&session, "5.00").await;
    let response = close_day(&shop, json!({"kind": "day"})).await;
    assert_eq!(response.status(), 201, "{}", response.text().await.unwrap());
    let today: Value = response.json().await.unwrap();
    let date =
        chrono::NaiveDate::parse_from_str(today["business_date"].as_str().unwrap(), "%Y-%m-%d")
            .unwrap();
    use chrono::Datelike;
    let year_end = chrono::NaiveDate::from_ymd_opt(date.year(), 12, 31).unwrap();
    // A month closes only once its last day is closed.
    problem(
        close_day(
            &shop,
            json!({"kind": "month", "business_date": date.to_string()}),
        )
        .await,
        409,
        "closing.days_open",
    )
    .await;

    // New Year's Day: the last day of the year closes (nothing happened since), then the months, then the year.
    let berlin: chrono_tz::Tz = "Europe/Berlin".parse().unwrap();
    use chrono::TimeZone;
    let new_year = berlin
        .with_ymd_and_hms(date.year() + 1, 1, 1, 1, 0, 0)
        .unwrap()
        .with_timezone(&chrono::Utc);
    shop.app.clock.advance(new_year - shop.app.clock.now());
    let manager = shop.app.token("boss", "manager pass 123").await;
    let post = |body: Value| {
        shop.app
            .client
            .post(shop.app.url("/api/v1/closings"))
            .bearer_auth(&manager)
            .json(&body)
            .send()
    };
    problem(
        post(json!({"kind": "year", "business_date": date.to_string()}))
            .await
            .unwrap(),
        409,
        "closing.days_open",
    )
    .await;
    let last_day: Value = if date == year_end {
        today.clone()
    } else {
        let response = post(json!({"kind": "day", "business_date": year_end.to_string()}))
            .await
            .unwrap();
        assert_eq!(response.status(), 201, "{}", response.text().await.unwrap());
        response.json().await.unwrap()
    };
    // The year waits for its months.
    problem(
        post(json!({"kind": "year", "business_date": date.to_string()}))
            .await
            .unwrap(),
        409,
        "closing.earlier_period_open",
    )
    .await;
    if date.month() != 12 {
        // A later month cannot close before an earlier one.
        problem(
            post(json!({"kind": "month", "business_date": year_end.to_string()}))
                .await
                .unwrap(),
            409,
            "closing.earlier_period_open",
        )
        .await;
    }
    let response = post(json!({"kind": "month", "business_date": date.to_string()}))
        .await
        .unwrap();
    assert_eq!(response.status(), 201, "{}", response.text().await.unwrap());
    let month: Value = response.json().await.unwrap();
    assert_eq!(month["report"]["figures"]["totals"]["sales"]["count"], 1);
    assert_eq!(
        month["business_date"],
        date.with_day(1).unwrap().to_string()
    );
    if date.month() != 12 {
        let response = post(json!({"kind": "month", "business_date": year_end.to_string()}))
            .await
            .unwrap();
        assert_eq!(response.status(), 201, "{}", response.text().await.unwrap());
    }
    let response = post(json!({"kind": "year", "business_date": date.to_string()}))
        .await
        .unwrap();
    assert_eq!(response.status(), 201, "{}", response.text().await.unwrap());
    let year: Value = response.json().await.unwrap();
    assert_eq!(year["business_date"], format!("{}-01-01", date.year()));
    assert_eq!(
        year["report"]["figures"]["totals"]["sales"]["total"],
        "5.00"
    );
    // Months and years state the grand totals of their last day.
    assert_eq!(
        month["report"]["grand_totals"],
        last_day["report"]["grand_totals"]
    );
    assert_eq!(
        year["report"]["grand_totals"],
        last_day["report"]["grand_totals"]
    );
    assert_eq!(
        last_day["report"]["grand_totals"], today["report"]["grand_totals"],
        "an empty day adds nothing"
    );
    problem(
        post(json!({"kind": "year", "business_date": date.to_string()}))
            .await
            .unwrap(),
        409,
        "closing.already_closed",
    )
    .await;

    // The whole chain verifies.
    let database: String = sqlx::query_scalar("SELECT current_database()")
        .fetch_one(&shop.app.pool)
        .await
        .unwrap();
    let mut command = plugpos();
    command
        .args(["closing", "verify", "--data-dir"])
        .arg(shop.app.data_dir.path())
        .env("PLUGPOS_DATABASE__URL", database_url(&database));
    let output = crate::helpers::run(command).await;
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stdout)
    );
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    let days = if date == year_end { 1 } else { 2 };
    let months = if date.month() != 12 { 2 } else { 1 };
    assert_eq!(report["checked"], days + months + 1);
}
