//! management.catalog: tax classes and categories, through the API.

use serde_json::{Value, json};

use crate::helpers::{TestApp, problem};

async fn manager(app: &TestApp) -> String {
    app.add_user("boss", "manager pass 123", &["manager"], false)
        .await;
    app.token("boss", "manager pass 123").await
}

#[tokio::test]
async fn tax_classes_take_decimal_rates() {
    let app = TestApp::spawn_initialized_with(|_| {}).await;
    let token = manager(&app).await;
    let response = app
        .post_as(
            "/api/v1/tax-classes",
            &token,
            &json!({"name": "Standard", "rate": "0.190"}),
        )
        .await;
    assert_eq!(response.status(), 201);
    let created: Value = response.json().await.unwrap();
    assert_eq!(
        created["rate"], "0.19",
        "rates are decimal strings, normalised"
    );
    assert_eq!(
        app.post_as(
            "/api/v1/tax-classes",
            &token,
            &json!({"name": "Reduced", "rate": "0.07"})
        )
        .await
        .status(),
        201
    );
    problem(
        app.post_as(
            "/api/v1/tax-classes",
            &token,
            &json!({"name": "standard", "rate": "0.2"}),
        )
        .await,
        409,
        "tax_class.name_taken",
    )
    .await;
    for rate in [json!("1.5"), json!("-0.1"), json!("abc"), json!(0.19)] {
        let body = problem(
            app.post_as(
                "/api/v1/tax-classes",
                &token,
                &json!({"name": "Odd", "rate": rate}),
            )
            .await,
            422,
            "validation.failed",
        )
        .await;
        assert_eq!(body["errors"][0]["field"], "rate", "{rate}: {body}");
    }
    let list: Value = app
        .get_as("/api/v1/tax-classes", &token)
        .await
        .json::<Value>()
        .await
        .unwrap()["items"]
        .clone();
    let names: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["Reduced", "Standard"]);
    let audited: i64 =
        sqlx::query_scalar("SELECT count(*) FROM audit_records WHERE action = 'tax_class.create'")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(audited, 2);
}

#[tokio::test]
async fn categories_form_a_tree_without_cycles() {
    let app = TestApp::spawn_initialized_with(|_| {}).await;
    let token = manager(&app).await;
    let create = |name: &str, parent: Option<&str>| {
        let body = json!({"name": name, "parent_id": parent});
        let request = app
            .client
            .post(app.url("/api/v1/categories"))
            .bearer_auth(&token)
            .json(&body);
        request.send()
    };
    let drinks: Value = create("Drinks", None).await.unwrap().json().await.unwrap();
    let drinks_id = drinks["id"].as_str().unwrap();
    let juice: Value = create("Juice", Some(drinks_id))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let juice_id = juice["id"].as_str().unwrap();
    let apple: Value = create("Apple", Some(juice_id))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    problem(
        create("juice", Some(drinks_id)).await.unwrap(),
        409,
        "category.name_taken",
    )
    .await;
    problem(
        create("Drinks", None).await.unwrap(),
        409,
        "category.name_taken",
    )
    .await;
    assert_eq!(
        create("Juice", None).await.unwrap().status(),
        201,
        "the same name under another parent is fine"
    );
    problem(
        create("Orphan", Some(&uuid::Uuid::nil().to_string()))
            .await
            .unwrap(),
        422,
        "validation.failed",
    )
    .await;

    let patch = |id: &str, body: Value| {
        app.client
            .patch(app.url(&format!("/api/v1/categories/{id}")))
            .bearer_auth(&token)
            .json(&body)
            .send()
    };
    // Moving Drinks under its own grandchild would make a cycle.
    let body = problem(
        patch(drinks_id, json!({"parent_id": apple["id"], "version": 1}))
            .await
            .unwrap(),
        422,
        "validation.failed",
    )
    .await;
    assert_eq!(body["errors"][0]["field"], "parent_id");
    // A stale version is refused; the current one works; null moves to the top level.
    let moved: Value = patch(
        juice_id,
        json!({"parent_id": null, "name": "Juices", "version": 1}),
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    assert_eq!(
        (
            moved["parent_id"].clone(),
            moved["name"].clone(),
            moved["version"].clone()
        ),
        (Value::Null, json!("Juices"), json!(2))
    );
    problem(
        patch(juice_id, json!({"name": "Again", "version": 1}))
            .await
            .unwrap(),
        409,
        "conflict.version_mismatch",
    )
    .await;
    problem(
        patch(&uuid::Uuid::nil().to_string(), json!({"version": 1}))
            .await
            .unwrap(),
        404,
        "category.not_found",
    )
    .await;
    let admin = app.login_ok("admin", "correct horse battery").await;
    let audit: Value = app
        .get_as(
            "/api/v1/audit?entity=category&action=category.update",
            admin["access_token"].as_str().unwrap(),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(audit["items"][0]["before"]["parent_id"], drinks_id);
    assert_eq!(audit["items"][0]["after"]["parent_id"], Value::Null);

    // Cashiers read the catalog but do not change it.
    let cashier = app
        .user_token("till", "cashier pass 123", &["cashier"])
        .await;
    assert_eq!(
        app.get_as("/api/v1/categories", &cashier).await.status(),
        200
    );
    problem(
        app.post_as("/api/v1/categories", &cashier, &json!({"name": "Sneaky"}))
            .await,
        403,
        "rbac.forbidden",
    )
    .await;
}

async fn tax_class(app: &TestApp, token: &str) -> String {
    let created: Value = app
        .post_as(
            "/api/v1/tax-classes",
            token,
            &json!({"name": "Standard", "rate": "0.19"}),
        )
        .await
        .json()
        .await
        .unwrap();
    created["id"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn products_are_found_by_barcode_and_accent_free_search() {
    let app = TestApp::spawn_initialized_with(|_| {}).await;
    let token = manager(&app).await;
    let tax = tax_class(&app, &token).await;
    let new = |sku: &str, name: &str, barcodes: Vec<&str>| json!({"sku": sku, "name": name, "barcodes": barcodes, "price": "2.50", "tax_class_id": tax});
    let response = app
        .post_as(
            "/api/v1/products",
            &token,
            &new("CB-1", "Crème Brûlée", vec!["4006381333931"]),
        )
        .await;
    let status = response.status();
    let creme: Value = response.json().await.unwrap();
    assert_eq!(status, 201, "{creme}");
    assert_eq!(
        (creme["price"].clone(), creme["version"].clone()),
        (json!("2.50"), json!(1))
    );
    for (sku, name) in [
        ("AJ-1", "Apple juice"),
        ("AP-2", "Apple pie"),
        ("PA-3", "Pineapple"),
    ] {
        assert_eq!(
            app.post_as("/api/v1/products", &token, &new(sku, name, vec![]))
                .await
                .status(),
            201
        );
    }
    problem(
        app.post_as("/api/v1/products", &token, &new("cb-1", "Clash", vec![]))
            .await,
        409,
        "product.sku_taken",
    )
    .await;
    problem(
        app.post_as(
            "/api/v1/products",
            &token,
            &new("X-9", "Clash", vec!["4006381333931"]),
        )
        .await,
        409,
        "product.barcode_taken",
    )
    .await;
    let body = problem(
        app.post_as(
            "/api/v1/products",
            &token,
            &json!({"sku": "Q", "name": "Q", "price": "2.505", "tax_class_id": tax}),
        )
        .await,
        422,
        "validation.failed",
    )
    .await;
    assert_eq!(body["errors"][0]["field"], "price", "EUR has two decimals");
    problem(
        app.post_as(
            "/api/v1/products",
            &token,
            &json!({"sku": "Q", "name": "Q", "price": "1", "tax_class_id": uuid::Uuid::nil()}),
        )
        .await,
        422,
        "validation.failed",
    )
    .await;

    let scanned: Value = app
        .get_as("/api/v1/products?barcode=4006381333931", &token)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(scanned["items"][0]["sku"], "CB-1");
    let found: Value = app
        .get_as("/api/v1/products?search=CREME%20brulee", &token)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        found["items"][0]["name"], "Crème Brûlée",
        "case and accents do not matter"
    );
    let apples: Value = app
        .get_as("/api/v1/products?search=apple&limit=2", &token)
        .await
        .json()
        .await
        .unwrap();
    let names: Vec<&str> = apples["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["Apple juice", "Apple pie"],
        "names starting with the text first, alphabetically; then other matches"
    );
    let rest: Value = app
        .get_as(
            &format!(
                "/api/v1/products?search=apple&cursor={}",
                apples["next_cursor"].as_str().unwrap()
            ),
            &token,
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(rest["items"][0]["name"], "Pineapple");
    let by_sku: Value = app
        .get_as("/api/v1/products?search=aj-1", &token)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(by_sku["items"][0]["name"], "Apple juice");
    let mut found_names = Vec::new();
    for text in ["pi", "pp", "ppl"] {
        let page: Value = app
            .get_as(&format!("/api/v1/products?search={text}"), &token)
            .await
            .json()
            .await
            .unwrap();
        let names: Vec<String> = page["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["name"].as_str().unwrap().to_owned())
            .collect();
        found_names.push(names);
    }
    assert_eq!(
        found_names,
        [
            vec!["Pineapple"],
            vec![],
            vec!["Apple pie", "Pineapple", "Apple juice"]
        ],
        "one or two characters match at the start only; three anywhere"
    );
    let none: Value = app
        .get_as("/api/v1/products?search=%25", &token)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        none["items"].as_array().unwrap().len(),
        0,
        "% is searched for, not a wildcard"
    );
}

#[tokio::test]
async fn cost_price_is_field_protected_and_updates_need_the_current_version() {
    let app = TestApp::spawn_initialized_with(|_| {}).await;
    let token = manager(&app).await;
    let tax = tax_class(&app, &token).await;
    let body = json!({"sku": "TEA", "name": "Green tea", "price": "3.20", "cost_price": "1.1000", "tax_class_id": tax, "barcodes": ["111"]});
    let product: Value = app
        .post_as("/api/v1/products", &token, &body)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(product["cost_price"], "1.1000");
    let id = product["id"].as_str().unwrap().to_owned();

    let cashier = app
        .user_token("till", "cashier pass 123", &["cashier"])
        .await;
    let seen: Value = app
        .get_as(&format!("/api/v1/products/{id}"), &cashier)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(seen["name"], "Green tea");
    assert!(
        seen.get("cost_price").is_none(),
        "cashiers never see cost prices: {seen}"
    );
    let listed: Value = app
        .get_as("/api/v1/products?barcode=111", &cashier)
        .await
        .json()
        .await
        .unwrap();
    assert!(listed["items"][0].get("cost_price").is_none());

    // A catalog editor without the cost price permissions may not set it.
    let role = json!({"name": "stocker", "permissions": ["management.catalog.read", "management.catalog.write"]});
    let admin = app.token("admin", "correct horse battery").await;
    assert_eq!(
        app.post_as("/api/v1/roles", &admin, &role).await.status(),
        201
    );
    let stocker = app
        .user_token("stocker", "stocker pass 123", &["stocker"])
        .await;
    let patch = |token: &str, body: Value| {
        app.client
            .patch(app.url(&format!("/api/v1/products/{id}")))
            .bearer_auth(token)
            .json(&body)
            .send()
    };
    let body = problem(
        patch(&stocker, json!({"cost_price": "0.50", "version": 1}))
            .await
            .unwrap(),
        403,
        "rbac.field_forbidden",
    )
    .await;
    assert!(body["detail"].as_str().unwrap().contains("cost_price"));
    // The refusal is recorded although the update's transaction rolled back (issue 28, finding 11).
    let denied: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM security_events WHERE kind = 'permission_denied' AND username = 'stocker' \
         AND details->>'field' = 'cost_price'",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(denied, 1);
    let renamed: Value = patch(&stocker, json!({"name": "Green tea (loose)", "version": 1}))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        (
            renamed["version"].clone(),
            renamed.get("cost_price").is_none()
        ),
        (json!(2), true)
    );

    problem(
        patch(&token, json!({"price": "3.50", "version": 1}))
            .await
            .unwrap(),
        409,
        "conflict.version_mismatch",
    )
    .await;
    let repriced: Value = patch(
        &token,
        json!({"price": "3.50", "barcodes": ["111", "222"], "version": 2}),
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    assert_eq!(
        (repriced["price"].clone(), repriced["barcodes"].clone()),
        (json!("3.50"), json!(["111", "222"]))
    );
    let audit: Value = app
        .get_as("/api/v1/audit?entity=product&action=product.update", &admin)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(audit["items"][1]["before"]["price"], "3.2000");
    assert_eq!(audit["items"][1]["after"]["price"], "3.5000");
}

#[tokio::test]
async fn products_are_deleted_until_sold_then_archived() {
    let shop = crate::shop::Shop::open().await;
    let delete = |id: String| {
        let app = &shop.app;
        let token = shop.manager.clone();
        async move {
            app.client
                .delete(app.url(&format!("/api/v1/products/{id}")))
                .bearer_auth(token)
                .send()
                .await
                .unwrap()
        }
    };
    // Never used: really deleted, and its SKU is free again.
    let typo = shop.product("TYPO", "1.00", &shop.standard, true).await;
    let gone: Value = delete(typo.clone()).await.json().await.unwrap();
    assert_eq!(gone["outcome"], "deleted");
    problem(
        shop.app
            .get_as(&format!("/api/v1/products/{typo}"), &shop.manager)
            .await,
        404,
        "product.not_found",
    )
    .await;
    shop.product("TYPO", "1.00", &shop.standard, true).await;

    // Sold: archived, out of the catalog, barcode freed, the sale intact.
    let response = shop
        .app
        .post_as(
            "/api/v1/products",
            &shop.manager,
            &json!({"sku": "SOLD", "name": "Sold thing", "price": "3.00",
                    "tax_class_id": shop.standard, "barcodes": ["4006381333931"]}),
        )
        .await;
    let sold = response.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    shop.open_session("0").await;
    let sale: Value = shop
        .sell(&shop.cashier, "k", &shop.cash_sale(&sold, "1", "3"))
        .await
        .json()
        .await
        .unwrap();
    let by_cashier = shop
        .app
        .client
        .delete(shop.app.url(&format!("/api/v1/products/{sold}")))
        .bearer_auth(&shop.cashier)
        .send()
        .await
        .unwrap();
    problem(by_cashier, 403, "rbac.forbidden").await;
    let archived: Value = delete(sold.clone()).await.json().await.unwrap();
    assert_eq!(archived["outcome"], "archived");
    let found: Value = shop
        .app
        .get_as("/api/v1/products?barcode=4006381333931", &shop.cashier)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(found["items"], json!([]));
    let reuse = shop
        .app
        .post_as(
            "/api/v1/products",
            &shop.manager,
            &json!({"sku": "NEW", "name": "New thing", "price": "3.00",
                    "tax_class_id": shop.standard, "barcodes": ["4006381333931"]}),
        )
        .await;
    assert_eq!(
        reuse.status(),
        201,
        "the archived product's barcode is free"
    );
    let still: Value = shop
        .app
        .get_as(
            &format!("/api/v1/sales/{}", sale["id"].as_str().unwrap()),
            &shop.cashier,
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(still["lines"][0]["sku"], "SOLD");
    problem(
        shop.sell(&shop.cashier, "k2", &shop.cash_sale(&sold, "1", "3"))
            .await,
        422,
        "validation.failed",
    )
    .await;
    let audit: Value = shop
        .app
        .get_as("/api/v1/audit?entity=product", &shop.admin)
        .await
        .json()
        .await
        .unwrap();
    let actions: Vec<&str> = audit["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["action"].as_str().unwrap())
        .collect();
    assert!(actions.contains(&"product.delete") && actions.contains(&"product.archive"));
}

/// A cursor no list could have made (an offset past any real list) is a 422 naming the cursor,
/// not a 500 from an overflowing LIMIT (issue 28, finding 12).
#[tokio::test]
async fn an_impossible_cursor_is_refused_naming_the_field() {
    let app = crate::helpers::TestApp::spawn_initialized_with(|_| {}).await;
    let admin = app.token("admin", crate::helpers::ADMIN_PASSWORD).await;
    for path in [
        "/api/v1/products?cursor=9223372036854775807",
        "/api/v1/products?search=apple&cursor=9223372036854775807",
        "/api/v1/stock?cursor=9223372036854775000",
        "/api/v1/jobs?cursor=100000001",
    ] {
        let body =
            crate::helpers::problem(app.get_as(path, &admin).await, 422, "validation.failed").await;
        assert_eq!(body["errors"][0]["field"], "cursor", "{path}: {body}");
    }
}

/// Field permissions hold on the audit log too: a reader without the cost price permission gets
/// product records without it, told what was left out, in the query and in both exports
/// (issue 28, finding 2).
#[tokio::test]
async fn the_audit_log_leaves_cost_prices_out_for_readers_without_the_permission() {
    let app = TestApp::spawn_initialized_with(|_| {}).await;
    let token = manager(&app).await;
    let tax = tax_class(&app, &token).await;
    let body = json!({"sku": "TEA", "name": "Green tea", "price": "3.20", "cost_price": "1.1357", "tax_class_id": tax});
    let product: Value = app
        .post_as("/api/v1/products", &token, &body)
        .await
        .json()
        .await
        .unwrap();
    let id = product["id"].as_str().unwrap();
    let patched = app
        .client
        .patch(app.url(&format!("/api/v1/products/{id}")))
        .bearer_auth(&token)
        .json(&json!({"cost_price": "1.2468", "version": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(patched.status(), 200);

    let path = format!("/api/v1/audit?entity=product&entity_id={id}");
    let auditor = app
        .user_token("inspector", "auditor pass 123", &["auditor"])
        .await;
    let seen: Value = app.get_as(&path, &auditor).await.json().await.unwrap();
    let records = seen["items"].as_array().unwrap();
    assert_eq!(records.len(), 2, "{seen}");
    assert_eq!(records[0]["action"], "product.create");
    assert_eq!(records[0]["after"]["name"], "Green tea");
    assert!(records[0]["after"].get("cost_price").is_none(), "{seen}");
    assert_eq!(records[0]["redacted"], json!(["after.cost_price"]));
    assert_eq!(
        records[1]["redacted"],
        json!(["before.cost_price", "after.cost_price"])
    );
    for format in ["csv", "pdf"] {
        let export = app
            .get_as(
                &format!("/api/v1/audit/export?format={format}&entity=product"),
                &auditor,
            )
            .await;
        assert_eq!(export.status(), 200);
        let bytes = export.bytes().await.unwrap();
        let text = String::from_utf8_lossy(&bytes);
        for secret in ["1.1357", "1.2468"] {
            assert!(!text.contains(secret), "{format} export shows {secret}");
        }
    }

    // The admin holds the permission and sees the whole record; the hashes are the same.
    let admin = app.token("admin", "correct horse battery").await;
    let whole: Value = app.get_as(&path, &admin).await.json().await.unwrap();
    assert_eq!(whole["items"][0]["after"]["cost_price"], "1.1357");
    assert_eq!(whole["items"][0]["redacted"], json!([]));
    assert_eq!(whole["items"][0]["hash"], records[0]["hash"]);
}
