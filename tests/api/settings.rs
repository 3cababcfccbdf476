//! `GET /api/v1/settings` and `PATCH /api/v1/settings`: the typed registry, validation as a whole,
//! the version, the audit record, the `settings` topic, and the config file shown read-only.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use crate::helpers::problem;
use crate::shop::Shop;

async fn settings(shop: &Shop, token: &str) -> Value {
    let response = shop.app.get_as("/api/v1/settings", token).await;
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

fn setting<'a>(all: &'a Value, key: &str) -> &'a Value {
    all["settings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["key"] == key)
        .unwrap_or_else(|| panic!("{key} is not listed: {all}"))
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// The next JSON message (skipping pings), within 5 s.
async fn next(socket: &mut Socket) -> Value {
    loop {
        let message = tokio::time::timeout(Duration::from_secs(5), socket.next())
            .await
            .expect("a message within 5 s")
            .unwrap()
            .unwrap();
        if let Message::Text(text) = message {
            return serde_json::from_str(&text).unwrap();
        }
    }
}

async fn patch(shop: &Shop, token: &str, body: Value) -> reqwest::Response {
    shop.app.patch_as("/api/v1/settings", token, &body).await
}

#[tokio::test]
async fn an_admin_changes_the_receipt_format_and_the_variance_threshold_and_the_next_sale_and_close_use_them()
 {
    let shop = Shop::open().await;
    let tea = shop.product("TEA", "3.00", &shop.standard, false).await;
    let before = settings(&shop, &shop.admin).await;
    let format = setting(&before, "numbering.receipt_format");
    assert_eq!(format["value"], "{register}-{year}-{number}");
    assert_eq!(format["type"], "text");
    assert_eq!(format["module"], "operations.sales");
    assert_eq!(format["needs_reason"], true);
    assert_eq!(format["writable"], true);
    assert!(format["description"].as_str().unwrap().contains("{number}"));
    let threshold = setting(&before, "cash.variance_reason_threshold");
    assert_eq!(threshold["type"], "amount");
    assert_eq!(threshold["default"], "0");
    assert_eq!(
        setting(&before, "business.currency_scale")["writable"],
        false
    );

    // A live client hears of the change.
    let url = format!(
        "ws://{}/api/v1/ws?access_token={}",
        shop.app.address, shop.admin
    );
    let (mut socket, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    socket
        .send(Message::Text(
            json!({"type": "subscribe", "topics": ["settings"]})
                .to_string()
                .into(),
        ))
        .await
        .unwrap();
    assert_eq!(next(&mut socket).await["type"], "welcome");
    assert_eq!(
        next(&mut socket).await,
        json!({"type": "subscribed", "topics": ["settings"]})
    );

    let response = patch(
        &shop,
        &shop.admin,
        json!({
            "values": {"numbering.receipt_format": "{year}/{register}/{number}", "numbering.receipt_digits": 4,
                       "cash.variance_reason_threshold": "1.00"},
            "version": before["version"],
            "reason": "the tax office's numbering",
        }),
    )
    .await;
    assert_eq!(response.status(), 200);
    let after: Value = response.json().await.unwrap();
    assert_eq!(after["version"], before["version"].as_i64().unwrap() + 1);
    assert_eq!(
        setting(&after, "numbering.receipt_format")["value"],
        "{year}/{register}/{number}"
    );
    assert_eq!(
        setting(&after, "numbering.receipt_format")["source"],
        "database"
    );
    assert_eq!(
        setting(&after, "cash.variance_reason_threshold")["value"],
        "1",
        "amounts are stored normalised"
    );

    let mut event = next(&mut socket).await;
    while event["type"] != "event" {
        event = next(&mut socket).await;
    }
    assert_eq!(event["topic"], "settings");
    assert_eq!(event["event"], "settings.changed");
    assert_eq!(event["data"]["version"], after["version"]);
    assert_eq!(
        event["data"]["keys"],
        json!([
            "cash.variance_reason_threshold",
            "numbering.receipt_digits",
            "numbering.receipt_format"
        ])
    );

    // The next sale is numbered the new way, without a restart.
    let session = shop.open_session("10.00").await;
    let sale = shop
        .sell(&shop.cashier, "s1", &shop.cash_sale(&tea, "1", "3.00"))
        .await;
    assert_eq!(sale.status(), 201);
    let sale: Value = sale.json().await.unwrap();
    let number = sale["receipt_number"].as_str().unwrap();
    let year = chrono::Utc::now().format("%Y").to_string();
    assert!(
        number.starts_with(&format!("{year}/R1/")) && number.ends_with("/0001"),
        "{number}"
    );
    // And the close: 0.60 short is within the new threshold, so no reason is asked.
    let closed = shop
        .app
        .post_as(
            &format!("/api/v1/cash-sessions/{session}/close"),
            &shop.cashier,
            &json!({"counted_cash": "12.40"}),
        )
        .await;
    assert_eq!(closed.status(), 200, "{}", closed.text().await.unwrap());

    // The change is one audit record with the before and after of each key, and the reason.
    let audit: Value = shop
        .app
        .get_as("/api/v1/audit?action=settings.update", &shop.admin)
        .await
        .json()
        .await
        .unwrap();
    let record = &audit["items"][0];
    assert_eq!(record["entity"], "settings");
    assert_eq!(record["reason_code"], "the tax office's numbering");
    assert_eq!(
        record["before"],
        json!({"cash.variance_reason_threshold": "0", "numbering.receipt_digits": 6,
               "numbering.receipt_format": "{register}-{year}-{number}"})
    );
    assert_eq!(
        record["after"],
        json!({"cash.variance_reason_threshold": "1", "numbering.receipt_digits": 4,
               "numbering.receipt_format": "{year}/{register}/{number}"})
    );
}

#[tokio::test]
async fn bad_changes_are_refused_whole_naming_each_key() {
    let shop = Shop::open().await;
    let current = settings(&shop, &shop.admin).await;
    let version = current["version"].clone();
    let response = patch(
        &shop,
        &shop.admin,
        json!({
            "values": {"numbering.receipt_format": "{year}-{register}", "cash.variance_reason_threshold": "-1",
                       "payment.cash_rounding": "0.001", "numbering.receipt_digits": 4,
                       "sales.colour": "blue", "business.currency_scale": 3},
            "version": version,
        }),
    )
    .await;
    let body = problem(response, 422, "validation.failed").await;
    let errors: Vec<(String, String)> = body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["field"].as_str().unwrap().to_owned(),
                e["message"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let expected = [
        ("values.business.currency_scale", "is fixed at setup"),
        (
            "values.cash.variance_reason_threshold",
            "must be an amount from 0 with at most 2 decimals, like \"0.01\"",
        ),
        (
            "values.numbering.receipt_format",
            "must contain {number} exactly once",
        ),
        (
            "values.payment.cash_rounding",
            "must be an amount from 0.01 up to 100 with at most 2 decimals, like \"0.01\"",
        ),
        ("values.sales.colour", "is not a setting"),
        (
            "reason",
            "is required to change cash.variance_reason_threshold, numbering.receipt_digits, numbering.receipt_format, payment.cash_rounding",
        ),
    ];
    assert_eq!(
        errors,
        expected
            .iter()
            .map(|(f, m)| (f.to_string(), m.to_string()))
            .collect::<Vec<_>>()
    );
    let body = problem(
        patch(
            &shop,
            &shop.admin,
            json!({"values": {"numbering.receipt_format": "{register}-{number}"}, "version": version, "reason": "x"}),
        )
        .await,
        422,
        "validation.failed",
    )
    .await;
    assert_eq!(
        body["errors"][0]["message"],
        "must contain {register} and {year}: the counter restarts per register and year"
    );
    // Nothing changed: not even the one good value.
    let after = settings(&shop, &shop.admin).await;
    assert_eq!(after["version"], version);
    assert_eq!(setting(&after, "numbering.receipt_digits")["value"], 6);
    // A value that needs a reason to change needs none when sent unchanged (a form sends them
    // all), and changes nothing.
    let same = patch(
        &shop,
        &shop.admin,
        json!({"values": {"numbering.receipt_digits": 6}, "version": version}),
    )
    .await;
    assert_eq!(same.status(), 200);
    assert_eq!(settings(&shop, &shop.admin).await["version"], version);

    // A stale version is refused; an unchanged value changes nothing (no new version).
    let ok = patch(
        &shop,
        &shop.admin,
        json!({"values": {"cash.blind_close": false}, "version": version, "reason": "small shop"}),
    )
    .await;
    assert_eq!(ok.status(), 200);
    problem(
        patch(
            &shop,
            &shop.admin,
            json!({"values": {"cash.blind_close": true}, "version": version, "reason": "again"}),
        )
        .await,
        409,
        "conflict.version_mismatch",
    )
    .await;
    let now = settings(&shop, &shop.admin).await;
    let same = patch(
        &shop,
        &shop.admin,
        json!({"values": {"cash.blind_close": false}, "version": now["version"], "reason": "x"}),
    )
    .await;
    let same: Value = same.json().await.unwrap();
    assert_eq!(same["version"], now["version"]);
    problem(
        patch(
            &shop,
            &shop.admin,
            json!({"values": {}, "version": now["version"]}),
        )
        .await,
        422,
        "validation.failed",
    )
    .await;
    problem(
        patch(
            &shop,
            &shop.admin,
            json!({"values": {"cash.blind_close": true}, "version": now["version"], "colour": 1}),
        )
        .await,
        422,
        "validation.failed",
    )
    .await;
}

#[tokio::test]
async fn who_sees_and_changes_what() {
    let shop = Shop::open().await;
    // Cashiers hold no settings permission.
    problem(
        shop.app.get_as("/api/v1/settings", &shop.cashier).await,
        403,
        "rbac.forbidden",
    )
    .await;
    // Managers see the business settings, not the server's configuration, and change nothing.
    let seen = settings(&shop, &shop.manager).await;
    assert_eq!(seen["config"], json!([]));
    assert_eq!(
        setting(&seen, "numbering.receipt_format")["writable"],
        false
    );
    assert!(
        !seen["settings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["key"] == "backup.targets"),
        "backup settings need administration.backups.read"
    );
    problem(
        patch(
            &shop,
            &shop.manager,
            json!({"values": {"numbering.receipt_digits": 5}, "version": seen["version"], "reason": "x"}),
        )
        .await,
        403,
        "rbac.forbidden",
    )
    .await;
    // The admin sees the config file's settings with their source, secrets redacted.
    let all = settings(&shop, &shop.admin).await;
    let config = all["config"].as_array().unwrap();
    let port = config.iter().find(|c| c["key"] == "http.port").unwrap();
    assert_eq!(port["source"], "default");
    let schedule = config
        .iter()
        .find(|c| c["key"] == "schedules.backup_full")
        .unwrap();
    assert!(schedule["value"].is_string());
    assert!(config.iter().any(|c| c["key"] == "auth.lockout_minutes"));
}

#[tokio::test]
async fn the_api_description_lists_every_setting() {
    let shop = Shop::open().await;
    let document: Value = shop
        .app
        .get("/api/v1/openapi.json")
        .await
        .json()
        .await
        .unwrap();
    let values = &document["components"]["schemas"]["SettingsValues"];
    assert_eq!(values["additionalProperties"], false);
    let digits = &values["properties"]["numbering.receipt_digits"];
    assert_eq!(digits["type"], "integer");
    assert_eq!(digits["minimum"], 1.0);
    assert_eq!(digits["maximum"], 12.0);
    assert!(
        digits["description"]
            .as_str()
            .unwrap()
            .contains("operations.sales; a change needs a reason")
    );
    assert_eq!(values["properties"]["cash.blind_close"]["type"], "boolean");
    assert!(
        values["properties"]["business.currency_scale"].is_null(),
        "fixed settings cannot be sent"
    );
}

#[tokio::test]
async fn with_negative_stock_switched_off_the_last_item_is_sold_once() {
    let shop = Shop::open().await;
    let lamp = shop.product("LAMP", "20.00", &shop.standard, true).await;
    shop.receive(&lamp, "1").await;
    shop.open_session("0").await;
    shop.set("sales.allow_negative_stock", json!(false)).await;

    // Two tills sell the last lamp at the same moment: one sale is recorded.
    let body = shop.cash_sale(&lamp, "1", "20.00");
    let (a, b) = tokio::join!(
        shop.sell(&shop.cashier, "a", &body),
        shop.sell(&shop.cashier, "b", &body),
    );
    let mut statuses = [a.status().as_u16(), b.status().as_u16()];
    statuses.sort();
    assert_eq!(statuses, [201, 409]);
    let refused = if a.status() == 409 { a } else { b };
    let body = problem(refused, 409, "stock.insufficient").await;
    assert!(body["detail"].as_str().unwrap().contains(&lamp), "{body}");
    assert_eq!(shop.stock(&lamp).await.as_deref(), Some("0.000"));
    let sold: i64 = sqlx::query_scalar("SELECT count(*) FROM sales")
        .fetch_one(&shop.app.pool)
        .await
        .unwrap();
    assert_eq!(sold, 1);

    // Switched on again (the default), the shelf count may be wrong: the sale goes through.
    shop.set("sales.allow_negative_stock", json!(true)).await;
    let sale = shop
        .sell(&shop.cashier, "c", &shop.cash_sale(&lamp, "1", "20.00"))
        .await;
    assert_eq!(sale.status(), 201);
    assert_eq!(shop.stock(&lamp).await.as_deref(), Some("-1.000"));
}

#[tokio::test]
async fn the_business_is_renamed_once_per_version_and_the_rename_is_audited() {
    let shop = Shop::open().await;
    let app = &shop.app;
    let business: Value = app
        .get_as("/api/v1/business", &shop.admin)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(business["name"], "Corner Shop");
    assert_eq!(business["currency"], "EUR");
    let version = business["version"].as_i64().unwrap();
    let rename = |token: &str, body: Value| {
        app.client
            .patch(app.url("/api/v1/business"))
            .bearer_auth(token)
            .json(&body)
            .send()
    };
    let blank = rename(&shop.admin, json!({"name": "  ", "version": version}))
        .await
        .unwrap();
    let body = problem(blank, 422, "validation.failed").await;
    assert_eq!(body["errors"][0]["field"], "name");
    let cashier = rename(&shop.cashier, json!({"name": "Mine", "version": version}))
        .await
        .unwrap();
    problem(cashier, 403, "rbac.forbidden").await;
    let renamed: Value = rename(
        &shop.admin,
        json!({"name": " Corner Shop & Co ", "version": version}),
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    assert_eq!(renamed["name"], "Corner Shop & Co");
    assert_eq!(renamed["version"], version + 1);
    // A second rename from the same read is refused: someone renamed it meanwhile.
    let stale = rename(&shop.admin, json!({"name": "Other", "version": version}))
        .await
        .unwrap();
    problem(stale, 409, "conflict.version_mismatch").await;
    let audit: Value = app
        .get_as("/api/v1/audit?action=business.rename", &shop.admin)
        .await
        .json()
        .await
        .unwrap();
    let record = &audit["items"][0];
    assert_eq!(record["before"]["name"], "Corner Shop");
    assert_eq!(record["after"]["name"], "Corner Shop & Co");
}
