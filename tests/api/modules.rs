//! The module registry and the first plug module (administration.places), through the API.

use serde_json::{Value, json};

use crate::helpers::{TestApp, problem};

const ADMIN_PASSWORD: &str = "correct horse battery";

#[tokio::test]
async fn places_are_listed_created_and_audited() {
    let app = TestApp::spawn_initialized_with(|_| {}).await;
    let admin = app.token("admin", ADMIN_PASSWORD).await;
    let branches: Value = app
        .get_as("/api/v1/branches", &admin)
        .await
        .json::<Value>()
        .await
        .unwrap()["items"]
        .clone();
    assert_eq!(branches[0]["name"], "Main branch", "setup created one");
    let branch = branches[0]["id"].as_str().unwrap().to_owned();

    let response = app
        .post_as(
            "/api/v1/locations",
            &admin,
            &json!({"name": "Back room", "branch_id": branch}),
        )
        .await;
    assert_eq!(response.status(), 201);
    let location: Value = response.json().await.unwrap();
    let response = app
        .post_as(
            "/api/v1/registers",
            &admin,
            &json!({"name": "Register 2", "location_id": location["id"]}),
        )
        .await;
    assert_eq!(response.status(), 201);
    let register: Value = response.json().await.unwrap();
    assert_eq!(register["branch_id"], branch.as_str());
    problem(
        app.post_as(
            "/api/v1/registers",
            &admin,
            &json!({"name": "register 2", "location_id": location["id"]}),
        )
        .await,
        409,
        "place.name_taken",
    )
    .await;
    problem(
        app.post_as("/api/v1/registers", &admin, &json!({"name": "Register 3"}))
            .await,
        422,
        "validation.failed",
    )
    .await;
    problem(
        app.post_as(
            "/api/v1/locations",
            &admin,
            &json!({"name": "Nowhere", "branch_id": uuid::Uuid::nil()}),
        )
        .await,
        422,
        "validation.failed",
    )
    .await;

    let audit: Value = app
        .get_as("/api/v1/audit?module=administration.places", &admin)
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
    assert_eq!(actions, ["location.create", "register.create"]);

    // Cashiers may read places (to pick their register) but not create them.
    let cashier = app
        .user_token("till", "cashier pass 123", &["cashier"])
        .await;
    let registers: Value = app
        .get_as("/api/v1/registers", &cashier)
        .await
        .json::<Value>()
        .await
        .unwrap()["items"]
        .clone();
    assert_eq!(registers.as_array().unwrap().len(), 2);
    problem(
        app.post_as("/api/v1/branches", &cashier, &json!({"name": "Pop-up"}))
            .await,
        403,
        "rbac.forbidden",
    )
    .await;
}

#[tokio::test]
async fn a_disabled_module_answers_404_until_enabled_again() {
    let app = TestApp::spawn_initialized_with(|_| {}).await;
    let admin = app.token("admin", ADMIN_PASSWORD).await;
    let modules: Value = app
        .get_as("/api/v1/modules", &admin)
        .await
        .json::<Value>()
        .await
        .unwrap()["items"]
        .clone();
    let places = modules
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["id"] == "administration.places")
        .unwrap();
    assert_eq!(
        (places["enabled"].clone(), places["version"].clone()),
        (json!(true), json!("1.0.0"))
    );
    let stored: String =
        sqlx::query_scalar("SELECT version FROM modules WHERE id = 'administration.places'")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(stored, "1.0.0", "module versions are recorded");

    // Places is needed by stock, cash and sales: it cannot go while they are enabled.
    let body = problem(
        app.post_as(
            "/api/v1/modules/administration.places/disable",
            &admin,
            &json!({}),
        )
        .await,
        409,
        "module.required",
    )
    .await;
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains("depends on administration.places")
    );
    // Cash is needed by sales.
    let body = problem(
        app.post_as(
            "/api/v1/modules/operations.cash/disable",
            &admin,
            &json!({}),
        )
        .await,
        409,
        "module.required",
    )
    .await;
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains("operations.sales")
    );

    // Returns need sales, receipts need returns, closings need receipts, incidents and reports
    // need closings: they go first.
    for id in [
        "management.reports",
        "administration.incidents",
        "administration.closings",
        "operations.receipts",
    ] {
        assert_eq!(
            app.post_as(&format!("/api/v1/modules/{id}/disable"), &admin, &json!({}))
                .await
                .status(),
            200
        );
    }
    problem(
        app.post_as(
            "/api/v1/modules/operations.sales/disable",
            &admin,
            &json!({}),
        )
        .await,
        409,
        "module.required",
    )
    .await;
    assert_eq!(
        app.post_as(
            "/api/v1/modules/operations.returns/disable",
            &admin,
            &json!({})
        )
        .await
        .status(),
        200
    );
    // Then sales goes, and its routes answer 404.
    assert_eq!(
        app.post_as(
            "/api/v1/modules/operations.sales/disable",
            &admin,
            &json!({})
        )
        .await
        .status(),
        200
    );
    let body = problem(
        app.get_as("/api/v1/sales", &admin).await,
        404,
        "module.disabled",
    )
    .await;
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains("operations.sales")
    );
    let modules: Value = app
        .get_as("/api/v1/modules", &admin)
        .await
        .json::<Value>()
        .await
        .unwrap()["items"]
        .clone();
    let sales = modules
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["id"] == "operations.sales")
        .unwrap();
    assert_eq!(sales["enabled"], false);
    assert!(
        sales["dependencies"]
            .to_string()
            .contains("operations.cash"),
        "{sales}"
    );
    // Now cash may go too; sales cannot come back until it does.
    assert_eq!(
        app.post_as(
            "/api/v1/modules/operations.cash/disable",
            &admin,
            &json!({})
        )
        .await
        .status(),
        200
    );
    problem(
        app.post_as(
            "/api/v1/modules/operations.sales/enable",
            &admin,
            &json!({}),
        )
        .await,
        409,
        "module.dependency_disabled",
    )
    .await;
    for id in [
        "operations.cash",
        "operations.sales",
        "operations.returns",
        "operations.receipts",
        "administration.closings",
        "administration.incidents",
        "management.reports",
    ] {
        assert_eq!(
            app.post_as(&format!("/api/v1/modules/{id}/enable"), &admin, &json!({}))
                .await
                .status(),
            200
        );
    }
    assert_eq!(app.get_as("/api/v1/sales", &admin).await.status(), 200);
    problem(
        app.post_as("/api/v1/modules/core.audit/disable", &admin, &json!({}))
            .await,
        404,
        "module.not_found",
    )
    .await;
    let audit: Value = app
        .get_as("/api/v1/audit?entity=module", &admin)
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
    assert_eq!(
        actions,
        [
            "module.disable",
            "module.disable",
            "module.disable",
            "module.disable",
            "module.disable",
            "module.disable",
            "module.disable",
            "module.enable",
            "module.enable",
            "module.enable",
            "module.enable",
            "module.enable",
            "module.enable",
            "module.enable"
        ]
    );
}
