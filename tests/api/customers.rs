//! Customers, price lists and personal data (issue 33): search, a customer's price list applied
//! by the sale exactly as the till was shown it, the purchase history, the GDPR export and an
//! erasure that leaves no personal value in any column while the audit chain still verifies,
//! and the retention job that proposes (never erases).

use serde_json::{Value, json};

use crate::helpers::problem;
use crate::shop::Shop;

async fn post_keyed(
    shop: &Shop,
    token: &str,
    path: &str,
    key: &str,
    body: &Value,
) -> reqwest::Response {
    shop.app
        .client
        .post(shop.app.url(path))
        .bearer_auth(token)
        .header("Idempotency-Key", key)
        .json(body)
        .send()
        .await
        .unwrap()
}

async fn customer(shop: &Shop, key: &str, body: Value) -> Value {
    let response = post_keyed(shop, &shop.cashier, "/api/v1/customers", key, &body).await;
    assert_eq!(response.status(), 201, "{}", response.text().await.unwrap());
    response.json().await.unwrap()
}

async fn get(shop: &Shop, token: &str, path: &str) -> Value {
    let response = shop.app.get_as(path, token).await;
    assert_eq!(
        response.status(),
        200,
        "{path}: {}",
        response.text().await.unwrap()
    );
    response.json().await.unwrap()
}

fn names(page: &Value) -> Vec<String> {
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn customers_are_created_found_without_accents_updated_by_version_and_deleted() {
    let shop = Shop::open().await;
    problem(
        post_keyed(
            &shop,
            &shop.cashier,
            "/api/v1/customers",
            "c-bad",
            &json!({"name": "", "email": "no-at-sign", "phone": "call me", "customer_group": "Big Spenders",
                    "marketing_consent": true}),
        )
        .await,
        422,
        "validation.failed",
    )
    .await;
    let body = json!({"name": "Zoë Ångström", "email": "zoe@example.org", "phone": "+49 30 1234-567",
                      "customer_group": "staff", "marketing_consent": true, "consent_source": "till"});
    let zoe = customer(&shop, "c-1", body.clone()).await;
    assert_eq!(zoe["version"], 1);
    assert_eq!(zoe["marketing_consent"], true);
    assert!(
        zoe["consent_at"].is_string(),
        "the consent time is recorded"
    );
    let again = post_keyed(&shop, &shop.cashier, "/api/v1/customers", "c-1", &body).await;
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    assert_eq!(again.json::<Value>().await.unwrap()["id"], zoe["id"]);
    problem(
        post_keyed(
            &shop,
            &shop.cashier,
            "/api/v1/customers",
            "c-1",
            &json!({"name": "Other"}),
        )
        .await,
        422,
        "idempotency.key_reused",
    )
    .await;
    customer(
        &shop,
        "c-2",
        json!({"name": "Angela Stone", "phone": "030/999 88"}),
    )
    .await;
    customer(&shop, "c-3", json!({"name": "Bernd Angstrom-Meier"})).await;

    // Accent- and case-insensitive; names that start with the text first, then other matches.
    let found = get(&shop, &shop.cashier, "/api/v1/customers?search=ANG").await;
    assert_eq!(
        names(&found),
        ["Angela Stone", "Zoë Ångström", "Bernd Angstrom-Meier"],
        "a name starting with it, then the shortest other matches"
    );
    let by_email = get(
        &shop,
        &shop.cashier,
        "/api/v1/customers?search=zoe%40example",
    )
    .await;
    assert_eq!(names(&by_email), ["Zoë Ångström"]);
    let by_phone = get(&shop, &shop.cashier, "/api/v1/customers?search=1234%20567").await;
    assert_eq!(
        names(&by_phone),
        ["Zoë Ångström"],
        "phone digits, however typed"
    );
    let paged = get(&shop, &shop.cashier, "/api/v1/customers?limit=2").await;
    assert_eq!(paged["items"].as_array().unwrap().len(), 2);
    let rest = get(
        &shop,
        &shop.cashier,
        &format!(
            "/api/v1/customers?limit=2&cursor={}",
            paged["next_cursor"].as_str().unwrap()
        ),
    )
    .await;
    assert_eq!(names(&rest), ["Zoë Ångström"]);
    assert!(rest["next_cursor"].is_null());

    // Updates carry the version; withdrawing consent needs its source.
    let id = zoe["id"].as_str().unwrap();
    let put = |body: Value| {
        let shop = &shop;
        async move {
            shop.app
                .client
                .put(shop.app.url(&format!("/api/v1/customers/{id}")))
                .bearer_auth(&shop.cashier)
                .json(&body)
                .send()
                .await
                .unwrap()
        }
    };
    problem(
        put(json!({"name": "Zoë Ångström", "marketing_consent": false, "version": 1})).await,
        422,
        "validation.failed",
    )
    .await;
    let response = put(json!({"name": "Zoë Ångström", "email": "zoe@example.org", "customer_group": "staff",
                               "marketing_consent": false, "consent_source": "email", "version": 1}))
    .await;
    assert_eq!(response.status(), 200);
    let updated: Value = response.json().await.unwrap();
    assert_eq!(updated["version"], 2);
    assert_eq!(updated["phone"], Value::Null);
    assert_eq!(updated["consent_source"], "email");
    problem(
        put(json!({"name": "Zoë", "version": 1})).await,
        409,
        "conflict.version_mismatch",
    )
    .await;

    // Soft delete: gone from searches, still readable by id (documents name it).
    let response = shop
        .app
        .post_as(
            &format!("/api/v1/customers/{id}/delete"),
            &shop.cashier,
            &json!({"version": 2}),
        )
        .await;
    assert_eq!(response.status(), 204);
    let found = get(&shop, &shop.cashier, "/api/v1/customers?search=zoe").await;
    assert!(names(&found).is_empty());
    let kept = get(&shop, &shop.cashier, &format!("/api/v1/customers/{id}")).await;
    assert!(kept["deleted_at"].is_string());

    // An auditor reads the audit log without the customers' personal fields.
    let auditor = shop
        .app
        .user_token("audrey", "auditor pass 123", &["auditor"])
        .await;
    let log = get(
        &shop,
        &auditor,
        &format!("/api/v1/audit?entity=customer&entity_id={id}"),
    )
    .await;
    let first = &log["items"][0];
    assert_eq!(first["action"], "customer.create");
    assert!(first["after"].get("name").is_none(), "{first}");
    assert!(
        first["redacted"]
            .as_array()
            .unwrap()
            .contains(&json!("after.name"))
    );
    assert_eq!(first["after"]["customer_group"], "staff");
    // The admin sees them, opened from their sealed form.
    let log = get(
        &shop,
        &shop.admin,
        &format!("/api/v1/audit?entity=customer&entity_id={id}"),
    )
    .await;
    assert_eq!(log["items"][0]["after"]["name"], "Zoë Ångström");
    assert_eq!(log["items"][1]["before"]["phone"], "+49 30 1234-567");
}

/// A price list for group `staff`: 10 % off everything in `category`, a fixed price for `pen`.
async fn staff_list(shop: &Shop, category: &str, pen: &str, from: Option<&str>) -> Value {
    let response = post_keyed(
        shop,
        &shop.manager,
        "/api/v1/price-lists",
        &format!("pl-{}", from.unwrap_or("always")),
        &json!({"name": "Staff prices", "customer_group": "staff", "valid_from": from,
                "rules": [{"category_id": category, "kind": "percent_off", "value": "10"},
                          {"product_id": pen, "kind": "fixed_price", "value": "1.99"}]}),
    )
    .await;
    assert_eq!(response.status(), 201, "{}", response.text().await.unwrap());
    response.json().await.unwrap()
}

#[tokio::test]
async fn a_customers_price_list_prices_the_sale_exactly_as_the_till_showed_it() {
    let shop = Shop::open().await;
    let (pen, _) = shop.pen_and_bread().await; // pen 2.50
    let make = |name: &str, parent: Option<&str>| {
        let body = json!({"name": name, "parent_id": parent});
        let shop = &shop;
        async move {
            let response = shop
                .app
                .post_as("/api/v1/categories", &shop.manager, &body)
                .await;
            assert_eq!(response.status(), 201, "{}", response.text().await.unwrap());
            response.json::<Value>().await.unwrap()["id"]
                .as_str()
                .unwrap()
                .to_owned()
        }
    };
    let food = make("Food", None).await;
    let cheese = make("Cheese", Some(&food)).await;
    let brie = shop.product("BRIE", "3.33", &shop.reduced, false).await;
    let response = shop
        .app
        .patch_as(
            &format!("/api/v1/products/{brie}"),
            &shop.manager,
            &json!({"category_id": cheese, "version": 1}),
        )
        .await;
    assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());

    problem(
        post_keyed(
            &shop,
            &shop.manager,
            "/api/v1/price-lists",
            "pl-bad",
            &json!({"name": "x", "customer_group": "staff", "valid_from": "2026-12-09", "valid_to": "2026-12-01",
                    "rules": [{"kind": "percent_off", "value": "120"}]}),
        )
        .await,
        422,
        "validation.failed",
    )
    .await;
    problem(
        post_keyed(
            &shop,
            &shop.cashier,
            "/api/v1/price-lists",
            "pl-cashier",
            &json!({"name": "x", "customer_group": "staff", "rules": []}),
        )
        .await,
        403,
        "rbac.forbidden",
    )
    .await;
    let list = staff_list(&shop, &food, &pen, None).await;
    assert_eq!(list["rules"].as_array().unwrap().len(), 2);

    let staff = customer(
        &shop,
        "c-staff",
        json!({"name": "Sam Staff", "customer_group": "staff"}),
    )
    .await;
    let walk_in = customer(&shop, "c-walk", json!({"name": "Wally Walk-In"})).await;
    let sid = staff["id"].as_str().unwrap();

    // What the till shows.
    let quote = get(
        &shop,
        &shop.cashier,
        &format!("/api/v1/customers/{sid}/prices?product_ids={pen},{brie}"),
    )
    .await;
    let shown: Vec<(String, String)> = quote["prices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["list_price"].as_str().unwrap().to_owned(),
                p["price"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        shown,
        [
            ("2.50".to_owned(), "1.99".to_owned()),
            ("3.33".to_owned(), "3.00".to_owned()) // 3.33 less 10 % = 2.997, half-up
        ]
    );
    assert_eq!(quote["prices"][0]["price_rule"]["kind"], "fixed_price");
    assert_eq!(quote["prices"][1]["price_rule"]["kind"], "percent_off");
    assert_eq!(
        quote["prices"][1]["price_rule"]["price_list"],
        "Staff prices"
    );

    // The sale records exactly that, with the rule on each line; a till naming a customer sends
    // the prices it showed (a line without one is refused: the server never picks another).
    shop.open_session("50.00").await;
    let sale_body = json!({"register_id": shop.register, "customer_id": sid,
        "lines": [{"product_id": pen, "quantity": "2", "unit_price": "1.99"}, {"product_id": brie, "quantity": "1"}],
        "payments": [{"method": "cash", "amount": "10.00"}]});
    let refused = problem(
        shop.sell(&shop.cashier, "s-unshown", &sale_body).await,
        422,
        "validation.failed",
    )
    .await;
    assert_eq!(refused["errors"][0]["field"], "lines[1].unit_price");
    let mut sale_body = sale_body;
    sale_body["lines"][1]["unit_price"] = json!("3.00");
    let response = shop.sell(&shop.cashier, "s-staff", &sale_body).await;
    assert_eq!(response.status(), 201, "{}", response.text().await.unwrap());
    let sale: Value = response.json().await.unwrap();
    assert_eq!(sale["customer_id"], sid);
    for (line, (list_price, price)) in sale["lines"].as_array().unwrap().iter().zip(&shown) {
        assert_eq!(line["catalog_price"], list_price.as_str());
        assert_eq!(line["unit_price"], price.as_str());
    }
    assert_eq!(
        sale["lines"][0]["price_rule"],
        quote["prices"][0]["price_rule"]
    );
    assert_eq!(
        sale["lines"][1]["price_rule"],
        quote["prices"][1]["price_rule"]
    );
    assert_eq!(sale["totals"]["total"], "6.98"); // 2 x 1.99 + 3.00
    let read = get(
        &shop,
        &shop.cashier,
        &format!("/api/v1/sales/{}", sale["id"].as_str().unwrap()),
    )
    .await;
    assert_eq!(read["lines"], sale["lines"], "as stored");
    assert_eq!(read["customer_id"], sid);

    // A manager's override from the customer's price: the line names no rule, and the audit
    // record says which price the override departed from.
    let mut overridden = sale_body.clone();
    overridden["lines"][0]["unit_price"] = json!("1.80");
    let response = shop.sell(&shop.manager, "s-override", &overridden).await;
    assert_eq!(response.status(), 201, "{}", response.text().await.unwrap());
    let over: Value = response.json().await.unwrap();
    assert_eq!(over["lines"][0]["unit_price"], "1.80");
    assert!(over["lines"][0]["price_rule"].is_null());
    assert_eq!(
        over["lines"][1]["price_rule"],
        quote["prices"][1]["price_rule"]
    );
    let log = get(
        &shop,
        &shop.admin,
        &format!(
            "/api/v1/audit?entity=sale&entity_id={}",
            over["id"].as_str().unwrap()
        ),
    )
    .await;
    let overrides = &log["items"][0]["after"]["price_overrides"];
    assert_eq!(overrides[0]["customer_price"], "1.99", "{overrides}");
    assert_eq!(overrides[0]["catalog_price"], "2.50");
    assert_eq!(overrides[0]["unit_price"], "1.80");

    // A customer without a group pays the catalog price; the staff price for them is an
    // override the cashier may not make.
    let wid = walk_in["id"].as_str().unwrap();
    let plain = get(
        &shop,
        &shop.cashier,
        &format!("/api/v1/customers/{wid}/prices?product_ids={pen}"),
    )
    .await;
    assert_eq!(plain["prices"][0]["price"], "2.50");
    assert!(plain["prices"][0]["price_rule"].is_null());
    let mut other = sale_body.clone();
    other["customer_id"] = json!(wid);
    problem(
        shop.sell(&shop.cashier, "s-walk", &other).await,
        403,
        "rbac.forbidden",
    )
    .await;

    // The list changes (the pen's rule goes): a till still showing 1.99 is refused, never
    // charged another price than it showed.
    let response = shop
        .app
        .client
        .put(shop.app.url(&format!(
            "/api/v1/price-lists/{}",
            list["id"].as_str().unwrap()
        )))
        .bearer_auth(&shop.manager)
        .json(
            &json!({"name": "Staff prices", "customer_group": "staff", "version": 1,
                      "rules": [{"category_id": food, "kind": "percent_off", "value": "10"}]}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
    problem(
        shop.sell(&shop.cashier, "s-stale", &sale_body).await,
        403,
        "rbac.forbidden",
    )
    .await;
    let now = get(
        &shop,
        &shop.cashier,
        &format!("/api/v1/customers/{sid}/prices?product_ids={pen}"),
    )
    .await;
    assert_eq!(now["prices"][0]["price"], "2.50");

    // A list valid only from tomorrow does not apply today.
    let tomorrow = (chrono::Utc::now() + chrono::Duration::days(2))
        .date_naive()
        .to_string();
    let response = post_keyed(
        &shop,
        &shop.manager,
        "/api/v1/price-lists",
        "pl-later",
        &json!({"name": "Later", "customer_group": "staff", "valid_from": tomorrow,
                "rules": [{"product_id": pen, "kind": "fixed_price", "value": "0.99"}]}),
    )
    .await;
    assert_eq!(response.status(), 201);
    let now = get(
        &shop,
        &shop.cashier,
        &format!("/api/v1/customers/{sid}/prices?product_ids={pen}"),
    )
    .await;
    assert_eq!(now["prices"][0]["price"], "2.50");

    // Unknown or deleted customers are refused by name.
    let mut bad = sale_body.clone();
    bad["customer_id"] = json!("0190b3a0-0000-7000-8000-000000000000");
    let refused = problem(
        shop.sell(&shop.cashier, "s-bad", &bad).await,
        422,
        "validation.failed",
    )
    .await;
    assert_eq!(refused["errors"][0]["field"], "customer_id");

    // The purchase history: the sale, and a return against it (which names the customer too).
    let response = shop
        .give_back(
            &shop.manager,
            "r-staff",
            &json!({"register_id": shop.register, "original_sale_id": sale["id"],
                    "lines": [{"line_no": 1, "quantity": "1"}], "refunds": [{"method": "cash", "amount": "1.99"}],
                    "reason_code": "changed_mind"}),
        )
        .await;
    assert_eq!(response.status(), 201, "{}", response.text().await.unwrap());
    let ret: Value = response.json().await.unwrap();
    assert_eq!(ret["customer_id"], sid);
    let history = get(
        &shop,
        &shop.cashier,
        &format!("/api/v1/customers/{sid}/history?limit=1"),
    )
    .await;
    assert_eq!(history["items"][0]["kind"], "return");
    assert_eq!(history["items"][0]["total"], "-1.99");
    // Page by page, newest first: the return, the override sale, the first sale.
    let mut numbers = Vec::new();
    let mut cursor = history["next_cursor"].as_str().map(str::to_owned);
    while let Some(c) = cursor {
        let page = get(
            &shop,
            &shop.cashier,
            &format!("/api/v1/customers/{sid}/history?limit=1&cursor={c}"),
        )
        .await;
        assert_eq!(page["items"][0]["kind"], "sale");
        numbers.push(page["items"][0]["number"].clone());
        cursor = page["next_cursor"].as_str().map(str::to_owned);
    }
    assert_eq!(
        numbers,
        [
            over["receipt_number"].clone(),
            sale["receipt_number"].clone()
        ]
    );
}

/// Every value of any column of any table (text, JSON, arrays, bytes) that contains `needle`,
/// case-insensitively, as `table.column`.
async fn columns_holding(pool: &sqlx::PgPool, needle: &str) -> Vec<String> {
    let columns: Vec<(String, String, String)> = sqlx::query_as(
        "SELECT table_name::text, column_name::text, data_type::text FROM information_schema.columns \
         WHERE table_schema = 'public' AND table_name IN (SELECT tablename FROM pg_tables WHERE schemaname = 'public')",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    let mut found = Vec::new();
    for (table, column, kind) in columns {
        let value = match kind.as_str() {
            "bytea" => format!("encode(\"{column}\", 'escape')"),
            _ => format!("\"{column}\"::text"),
        };
        let sql = format!("SELECT count(*) FROM \"{table}\" WHERE {value} ILIKE '%' || $1 || '%'");
        let n: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
            .bind(needle)
            .fetch_one(pool)
            .await
            .unwrap();
        if n > 0 {
            found.push(format!("{table}.{column}"));
        }
    }
    found
}

#[tokio::test]
async fn a_customer_is_exported_whole_and_erased_without_a_trace_while_the_chain_verifies() {
    let shop = Shop::open().await;
    let (pen, _) = shop.pen_and_bread().await;
    let personal = json!({"name": "Quirin Zyxwerth", "email": "quirin.zyxwerth@example.org",
        "phone": "+49 30 5550 9876", "tax_id": "DE999888777", "address": "Wunderweg 7, 10115 Berlin",
        "notes": "prefers Saturday pickups", "marketing_consent": true, "consent_source": "paper_form"});
    let q = customer(&shop, "c-q", personal.clone()).await;
    let id = q["id"].as_str().unwrap();
    let response = shop
        .app
        .client
        .put(shop.app.url(&format!("/api/v1/customers/{id}")))
        .bearer_auth(&shop.cashier)
        .json(&{
            let mut body = personal.clone();
            body["address"] = json!("Wunderweg 9, 10115 Berlin");
            body["version"] = json!(1);
            body
        })
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    shop.open_session("20.00").await;
    let mut body = shop.cash_sale(&pen, "1", "5.00");
    body["customer_id"] = json!(id);
    body["lines"][0]["unit_price"] = json!("2.50");
    let response = shop.sell(&shop.cashier, "s-q", &body).await;
    assert_eq!(response.status(), 201, "{}", response.text().await.unwrap());
    let sale: Value = response.json().await.unwrap();

    // The export holds everything: profile, consent, the sale with its lines, the audit records
    // about them with their personal values readable. Cashiers may not export.
    problem(
        shop.app
            .get_as(&format!("/api/v1/customers/{id}/export"), &shop.cashier)
            .await,
        403,
        "rbac.forbidden",
    )
    .await;
    let export = get(
        &shop,
        &shop.manager,
        &format!("/api/v1/customers/{id}/export"),
    )
    .await;
    assert_eq!(export["format"], "plugpos-customer-export-v1");
    assert_eq!(export["customer"]["tax_id"], "DE999888777");
    assert_eq!(export["customer"]["address"], "Wunderweg 9, 10115 Berlin");
    assert_eq!(export["consent_history"][0]["marketing_consent"], true);
    assert_eq!(export["consent_history"][0]["source"], "paper_form");
    assert_eq!(export["documents"].as_array().unwrap().len(), 1);
    assert_eq!(export["documents"][0]["number"], sale["receipt_number"]);
    assert_eq!(export["documents"][0]["lines"][0]["sku"], "PEN");
    let actions: Vec<&str> = export["audit_records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        ["customer.create", "customer.update", "sale.complete"]
    );
    assert_eq!(export["audit_records"][2]["after"]["customer_id"], id);
    assert_eq!(
        export["audit_records"][1]["before"]["address"],
        "Wunderweg 7, 10115 Berlin"
    );

    // The A4 invoice is addressed to them (read when printed, never stored with the receipt).
    let invoice = invoice_text(&shop, sale["id"].as_str().unwrap()).await;
    assert!(invoice.contains("Bill to"), "{invoice}");
    assert!(invoice.contains("Quirin Zyxwerth"), "{invoice}");
    assert!(
        invoice.contains("10115 Berlin") && invoice.contains("Tax ID DE999888777"),
        "{invoice}"
    );

    // Before erasure the values are in the database (the customer row): the scan finds them.
    // The planner's statistics never hold samples of them (an erasure could not reach those).
    assert!(!columns_holding(&shop.app.pool, "Zyxwerth").await.is_empty());
    // (With two distinct names, statistics kept would list both among their histogram bounds.)
    customer(
        &shop,
        "c-other",
        json!({"name": "Otto Other", "email": "otto@example.org"}),
    )
    .await;
    sqlx::query("ANALYZE customers")
        .execute(&shop.app.pool)
        .await
        .unwrap();
    let sampled: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_stats WHERE tablename = 'customers' \
           AND concat(most_common_vals::text, histogram_bounds::text) ILIKE '%zyxwerth%'",
    )
    .fetch_one(&shop.app.pool)
    .await
    .unwrap();
    assert_eq!(sampled, 0, "no statistics sample personal values");

    // Erasure needs the permission, a reason and a second person's approval.
    problem(
        shop.app
            .post_as(
                &format!("/api/v1/customers/{id}/erase"),
                &shop.cashier,
                &json!({"reason_code": "subject_request"}),
            )
            .await,
        403,
        "rbac.forbidden",
    )
    .await;
    problem(
        shop.app
            .post_as(
                &format!("/api/v1/customers/{id}/erase"),
                &shop.manager,
                &json!({"reason_code": "because"}),
            )
            .await,
        422,
        "validation.failed",
    )
    .await;
    problem(
        shop.app
            .post_as(
                &format!("/api/v1/customers/{id}/erase"),
                &shop.manager,
                &json!({"reason_code": "subject_request"}),
            )
            .await,
        403,
        "approval.required",
    )
    .await;
    problem(
        shop.app
            .post_as(
                "/api/v1/approvals",
                &shop.manager,
                &json!({"action": "management.customers.erase", "approver": {"username": "boss", "password": "manager pass 123"},
                        "scope": {"customer_id": id}}),
            )
            .await,
        403,
        "approval.not_permitted",
    )
    .await;
    shop.app
        .user_token("mia", "manager pass 456", &["manager"])
        .await;
    let response = shop
        .app
        .post_as(
            "/api/v1/approvals",
            &shop.manager,
            &json!({"action": "management.customers.erase", "approver": {"username": "mia", "password": "manager pass 456"},
                    "scope": {"customer_id": id}}),
        )
        .await;
    assert_eq!(response.status(), 201, "{}", response.text().await.unwrap());
    let approval: Value = response.json().await.unwrap();
    let response = shop
        .app
        .post_as(
            &format!("/api/v1/customers/{id}/erase"),
            &shop.manager,
            &json!({"reason_code": "subject_request", "approval_ref": approval["approval_ref"]}),
        )
        .await;
    assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
    let erased: Value = response.json().await.unwrap();
    assert_eq!(erased["name"], "erased customer");
    assert!(erased["email"].is_null() && erased["address"].is_null() && erased["notes"].is_null());
    assert!(erased["erased_at"].is_string());
    problem(
        shop.app
            .post_as(
                &format!("/api/v1/customers/{id}/erase"),
                &shop.manager,
                &json!({"reason_code": "subject_request", "approval_ref": approval["approval_ref"]}),
            )
            .await,
        409,
        "customer.erased",
    )
    .await;

    // No personal value is left in any column of any table.
    for needle in [
        "Quirin",
        "Zyxwerth",
        "quirin.zyxwerth@example.org",
        "5550 9876",
        "55509876",
        "DE999888777",
        "Wunderweg",
        "Saturday pickups",
    ] {
        assert_eq!(
            columns_holding(&shop.app.pool, needle).await,
            Vec::<String>::new(),
            "{needle} is still stored"
        );
    }

    // The chain verifies; the records about them read "[erased]"; the sale is intact and still
    // names the customer's id.
    chain_verifies(&shop).await;
    let log = get(
        &shop,
        &shop.admin,
        &format!("/api/v1/audit?entity=customer&entity_id={id}"),
    )
    .await;
    assert_eq!(log["items"][0]["after"]["name"], "[erased]");
    assert_eq!(log["items"][0]["after"]["marketing_consent"], true);
    let last = log["items"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["action"], "customer.erase");
    assert_eq!(last["reason_code"], "subject_request");
    assert_eq!(last["approval_ref"], approval["approval_ref"]);
    let kept = get(
        &shop,
        &shop.cashier,
        &format!("/api/v1/sales/{}", sale["id"].as_str().unwrap()),
    )
    .await;
    assert_eq!(kept["customer_id"], id);
    assert_eq!(kept["totals"], sale["totals"]);
    let invoice = invoice_text(&shop, sale["id"].as_str().unwrap()).await;
    assert!(invoice.contains("erased customer"), "{invoice}");
    assert!(
        !invoice.contains("Zyxwerth") && !invoice.contains("Wunderweg"),
        "{invoice}"
    );
    let export = get(
        &shop,
        &shop.manager,
        &format!("/api/v1/customers/{id}/export"),
    )
    .await;
    assert_eq!(export["customer"]["name"], "erased customer");
    assert_eq!(export["documents"].as_array().unwrap().len(), 1);
}

/// The text of sale `id`'s A4 invoice, as `pdftotext` reads it.
async fn invoice_text(shop: &Shop, id: &str) -> String {
    let response = shop
        .app
        .get_as(
            &format!("/api/v1/sales/{id}/receipt?format=pdf&layout=invoice"),
            &shop.manager,
        )
        .await;
    assert_eq!(response.status(), 200);
    let pdf = response.bytes().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("invoice.pdf");
    std::fs::write(&path, &pdf).unwrap();
    let out = std::process::Command::new("pdftotext")
        .args(["-layout", path.to_str().unwrap(), "-"])
        .output()
        .expect("pdftotext (poppler-utils) is installed");
    assert!(out.status.success());
    String::from_utf8_lossy(&out.stdout).into_owned()
}

async fn chain_verifies(shop: &Shop) {
    let report = get(shop, &shop.admin, "/api/v1/audit/verify").await;
    assert_eq!(report["ok"], true, "{report}");
    assert!(report["verified"].as_i64().unwrap() > 5);
}

#[tokio::test]
async fn the_retention_job_proposes_inactive_customers_and_erases_nobody() {
    let shop = Shop::open().await;
    let (pen, _) = shop.pen_and_bread().await;
    let idle = customer(&shop, "c-idle", json!({"name": "Ida Idle"})).await;
    let buyer = customer(&shop, "c-buyer", json!({"name": "Bea Buyer"})).await;
    shop.set("customers.retention_days", json!(30)).await;
    // A month on (tokens expired meanwhile: log in again), Bea buys; two days later the job runs.
    shop.app.clock.advance(chrono::Duration::days(29));
    let cashier = shop.app.token("carla", "cashier pass 123").await;
    let response = shop
        .app
        .post_as(
            "/api/v1/cash-sessions",
            &cashier,
            &json!({"register_id": shop.register, "opening_float": "20.00"}),
        )
        .await;
    assert_eq!(response.status(), 201, "{}", response.text().await.unwrap());
    let mut body = shop.cash_sale(&pen, "1", "5.00");
    body["customer_id"] = buyer["id"].clone();
    body["lines"][0]["unit_price"] = json!("2.50");
    let response = shop.sell(&cashier, "s-buy", &body).await;
    assert_eq!(response.status(), 201, "{}", response.text().await.unwrap());
    shop.app.clock.advance(chrono::Duration::days(2));
    let cashier = shop.app.token("carla", "cashier pass 123").await;
    let manager = shop.app.token("boss", "manager pass 123").await;

    let mut conn = shop.app.pool.acquire().await.unwrap();
    plugpos::core::jobs::enqueue(
        &mut conn,
        &plugpos::plugs::management::customers::retention::JOB,
        json!({}),
        None,
        shop.app.clock.now(),
    )
    .await
    .unwrap();
    drop(conn);
    let done = shop.app.run_jobs().await;
    let job = done
        .iter()
        .find(|j| j.kind == "customers.retention")
        .expect("the retention job ran");
    assert_eq!(job.status, "succeeded", "{job:?}");

    problem(
        shop.app
            .get_as("/api/v1/customers/retention", &cashier)
            .await,
        403,
        "rbac.forbidden",
    )
    .await;
    let proposed = get(&shop, &manager, "/api/v1/customers/retention").await;
    assert_eq!(
        names(&proposed),
        ["Ida Idle"],
        "the buyer bought within 30 days"
    );
    assert_eq!(proposed["items"][0]["customer_id"], idle["id"]);
    let still = get(
        &shop,
        &manager,
        &format!("/api/v1/customers/{}", idle["id"].as_str().unwrap()),
    )
    .await;
    assert!(
        still["erased_at"].is_null() && still["deleted_at"].is_null(),
        "proposed, not erased"
    );
}
