//! management.catalog: tax classes and categories, through the API.

use serde_json::{Value, json};

use crate::helpers::{TestApp, problem};

async fn manager(app: &TestApp) -> String {
    app.add_user("boss", "manager pass 123", &["manager"], false)
        .await;
    app.login_ok("boss", "manager pass 123").await["access_token"]
        .as_str()
        .unwrap()
        .to_owned()
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
        .json()
        .await
        .unwrap();
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
    app.add_user("till", "cashier pass 123", &["cashier"], false)
        .await;
    let cashier = app.login_ok("till", "cashier pass 123").await["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
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
