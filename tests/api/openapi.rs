//! The OpenAPI document and the offline docs UI.

use serde_json::Value;

use crate::helpers::{TestApp, plugpos};

#[tokio::test]
async fn document_covers_every_route_with_problem_errors() {
    let app = TestApp::spawn().await;
    let response = app.get("/api/v1/openapi.json").await;
    assert_eq!(response.status(), 200);
    let document: Value = response.json().await.unwrap();
    assert!(
        document["openapi"].as_str().unwrap().starts_with("3.1"),
        "{}",
        document["openapi"]
    );
    let paths = document["paths"].as_object().unwrap();
    for route in [
        "/health/live",
        "/health/ready",
        "/metrics",
        "/api/v1/setup",
        "/api/v1/setup/status",
        "/api/v1/version",
        "/api/v1/openapi.json",
    ] {
        assert!(paths.contains_key(route), "{route} is not documented");
    }
    for (path, item) in paths {
        for (method, operation) in item.as_object().unwrap() {
            let responses = operation["responses"].as_object().unwrap();
            assert!(
                responses
                    .keys()
                    .any(|s| s.starts_with('2') || (path == "/api/v1/ws" && s == "101")),
                "{method} {path} documents no success"
            );
            let problem_documented = responses.iter().any(|(status, r)| {
                !status.starts_with('2')
                    && r["content"]["application/problem+json"]["schema"]["$ref"]
                        == "#/components/schemas/Problem"
            });
            assert!(
                problem_documented,
                "{method} {path} documents no problem response"
            );
        }
    }
    let setup = &paths["/api/v1/setup"]["post"];
    assert_eq!(
        setup["requestBody"]["content"]["application/json"]["schema"]["$ref"],
        "#/components/schemas/SetupRequest"
    );
    for code in ["201", "400", "403", "409", "415", "422"] {
        assert!(
            setup["responses"].get(code).is_some(),
            "setup documents {code}"
        );
    }
    let problem = &document["components"]["schemas"]["Problem"]["properties"];
    for field in [
        "type",
        "title",
        "status",
        "detail",
        "code",
        "errors",
        "request_id",
    ] {
        assert!(problem.get(field).is_some(), "Problem has {field}");
    }
}

#[tokio::test]
async fn docs_are_served_from_the_binary() {
    let app = TestApp::spawn().await;
    let response = app.get("/docs/").await;
    assert_eq!(response.status(), 200);
    let html = response.text().await.unwrap();
    assert!(html.contains("swagger-ui"), "{html}");
    assert!(!html.contains("https://"), "no external assets: {html}");
    for asset in [
        "/docs/swagger-ui.css",
        "/docs/swagger-ui-bundle.js",
        "/docs/swagger-initializer.js",
    ] {
        let response = app.get(asset).await;
        assert_eq!(response.status(), 200, "{asset}");
    }
    let initializer = app
        .get("/docs/swagger-initializer.js")
        .await
        .text()
        .await
        .unwrap();
    assert!(
        initializer.contains("/api/v1/openapi.json"),
        "{initializer}"
    );
}

#[tokio::test]
async fn cli_prints_the_same_document() {
    let app = TestApp::spawn().await;
    let served: Value = app.get("/api/v1/openapi.json").await.json().await.unwrap();
    let output = plugpos().arg("openapi").output().unwrap();
    assert!(output.status.success());
    let printed: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(printed, served);
}

/// The schema `schema` points to (following one `$ref` into the components).
fn resolve<'a>(document: &'a Value, schema: &'a Value) -> &'a Value {
    match schema["$ref"].as_str() {
        Some(reference) => {
            let name = reference.trim_start_matches("#/components/schemas/");
            &document["components"]["schemas"][name]
        }
        None => schema,
    }
}

/// Every list in the API is `{"items", "next_cursor"}` with `?limit=&cursor=` (SPEC section 7):
/// no operation answers a bare JSON array (issue 28, finding 18).
#[tokio::test]
async fn every_list_is_a_page_with_limit_and_cursor() {
    let app = TestApp::spawn().await;
    let document: Value = app.get("/api/v1/openapi.json").await.json().await.unwrap();
    let mut lists = 0;
    for (path, item) in document["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            let Some(responses) = operation["responses"].as_object() else {
                continue;
            };
            for (status, response) in responses.iter().filter(|(s, _)| s.starts_with('2')) {
                let Some(schema) = response["content"]["application/json"].get("schema") else {
                    continue;
                };
                let schema = resolve(&document, schema);
                assert_ne!(
                    schema["type"], "array",
                    "{method} {path} answers {status} with a bare array"
                );
                let Some(items) = schema["properties"].get("items") else {
                    continue;
                };
                lists += 1;
                assert_eq!(items["type"], "array", "{method} {path}: items is a list");
                assert!(
                    schema["properties"].get("next_cursor").is_some(),
                    "{method} {path}: a page has next_cursor"
                );
                let params: Vec<&str> = operation["parameters"]
                    .as_array()
                    .map(|ps| ps.iter().filter_map(|p| p["name"].as_str()).collect())
                    .unwrap_or_default();
                for name in ["limit", "cursor"] {
                    assert!(params.contains(&name), "{method} {path} takes no `{name}`");
                }
            }
        }
    }
    assert!(
        lists >= 15,
        "only {lists} lists found: is the walk looking at the right place?"
    );
}
