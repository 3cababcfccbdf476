//! A set-up shop to sell in: a manager and a cashier, two tax classes, the register and
//! location setup created, and helpers for products, cash sessions and sales.

use serde_json::{Value, json};

use crate::helpers::{ADMIN_PASSWORD, TestApp};

pub struct Shop {
    pub app: TestApp,
    pub admin: String,
    pub manager: String,
    pub cashier: String,
    pub register: String,
    pub location: String,
    /// 19 %.
    pub standard: String,
    /// 7 %.
    pub reduced: String,
}

impl Shop {
    pub async fn open() -> Shop {
        Self::open_with(|_| {}).await
    }

    pub async fn open_with(configure: impl FnOnce(&mut plugpos::core::config::Config)) -> Shop {
        let app = TestApp::spawn_initialized_with(configure).await;
        let admin = app.token("admin", ADMIN_PASSWORD).await;
        let manager = app
            .user_token("boss", "manager pass 123", &["manager"])
            .await;
        let cashier = app
            .user_token("carla", "cashier pass 123", &["cashier"])
            .await;
        let registers: Value = app
            .get_as("/api/v1/registers", &cashier)
            .await
            .json::<Value>()
            .await
            .unwrap()["items"]
            .clone();
        let register = registers[0]["id"].as_str().unwrap().to_owned();
        let location = registers[0]["location_id"].as_str().unwrap().to_owned();
        let mut shop = Shop {
            app,
            admin,
            manager,
            cashier,
            register,
            location,
            standard: String::new(),
            reduced: String::new(),
        };
        shop.standard = shop.tax_class("Standard", "0.19").await;
        shop.reduced = shop.tax_class("Reduced", "0.07").await;
        shop
    }

    pub async fn tax_class(&self, name: &str, rate: &str) -> String {
        let response = self
            .app
            .post_as(
                "/api/v1/tax-classes",
                &self.manager,
                &json!({"name": name, "rate": rate}),
            )
            .await;
        assert_eq!(response.status(), 201);
        let body: Value = response.json().await.unwrap();
        body["id"].as_str().unwrap().to_owned()
    }

    /// A product; returns its id.
    pub async fn product(&self, sku: &str, price: &str, tax_class: &str, track: bool) -> String {
        let response = self
            .app
            .post_as(
                "/api/v1/products",
                &self.manager,
                &json!({"sku": sku, "name": format!("Product {sku}"), "price": price,
                        "tax_class_id": tax_class, "track_stock": track, "cost_price": "0.50"}),
            )
            .await;
        assert_eq!(response.status(), 201, "{}", response.text().await.unwrap());
        let body: Value = response.json().await.unwrap();
        body["id"].as_str().unwrap().to_owned()
    }

    /// The two products the basic sale tests use: a pen at 2.50 (standard rate, stock tracked,
    /// 10 received) and a bread at 1.99 (reduced rate, not tracked); returns their ids.
    pub async fn pen_and_bread(&self) -> (String, String) {
        let pen = self.product("PEN", "2.50", &self.standard, true).await;
        let bread = self.product("BREAD", "1.99", &self.reduced, false).await;
        self.receive(&pen, "10").await;
        (pen, bread)
    }

    /// Receives `quantity` of `product` into stock at the register's location, as the manager.
    pub async fn receive(&self, product: &str, quantity: &str) {
        let response = self
            .app
            .post_as(
                "/api/v1/stock/adjustments",
                &self.manager,
                &json!({"product_id": product, "quantity_delta": quantity, "reason_code": "received"}),
            )
            .await;
        assert_eq!(response.status(), 201, "{}", response.text().await.unwrap());
    }

    /// Opens a cash session on the register as the cashier; returns its id.
    pub async fn open_session(&self, float: &str) -> String {
        let response = self
            .app
            .post_as(
                "/api/v1/cash-sessions",
                &self.cashier,
                &json!({"register_id": self.register, "opening_float": float}),
            )
            .await;
        assert_eq!(response.status(), 201, "{}", response.text().await.unwrap());
        let body: Value = response.json().await.unwrap();
        body["id"].as_str().unwrap().to_owned()
    }

    /// POST /api/v1/sales with an Idempotency-Key.
    pub async fn sell(&self, token: &str, key: &str, body: &Value) -> reqwest::Response {
        self.app
            .client
            .post(self.app.url("/api/v1/sales"))
            .bearer_auth(token)
            .header("Idempotency-Key", key)
            .json(body)
            .send()
            .await
            .unwrap()
    }

    /// POST /api/v1/returns with an Idempotency-Key.
    pub async fn give_back(&self, token: &str, key: &str, body: &Value) -> reqwest::Response {
        self.app
            .client
            .post(self.app.url("/api/v1/returns"))
            .bearer_auth(token)
            .header("Idempotency-Key", key)
            .json(body)
            .send()
            .await
            .unwrap()
    }

    /// Closes cash session `session` as the cashier with `counted` cash (a variance gets a reason).
    pub async fn close_session(&self, session: &str, counted: &str) {
        let response = self
            .app
            .post_as(
                &format!("/api/v1/cash-sessions/{session}/close"),
                &self.cashier,
                &json!({"counted_cash": counted, "variance_reason": "counted"}),
            )
            .await;
        assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
    }

    /// A one-line cash sale on the register.
    pub fn cash_sale(&self, product: &str, quantity: &str, cash: &str) -> Value {
        json!({
            "register_id": self.register,
            "lines": [{"product_id": product, "quantity": quantity}],
            "payments": [{"method": "cash", "amount": cash}],
        })
    }

    /// Sets a business setting through `PATCH /api/v1/settings`, as the admin.
    pub async fn set(&self, key: &str, value: Value) {
        let current: Value = self
            .app
            .get_as("/api/v1/settings", &self.admin)
            .await
            .json()
            .await
            .unwrap();
        let response = self
            .app
            .patch_as(
                "/api/v1/settings",
                &self.admin,
                &json!({"values": {key: value}, "version": current["version"], "reason": "test"}),
            )
            .await;
        assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
    }

    /// The quantity on hand of `product` at the register's location (None: no level yet).
    pub async fn stock(&self, product: &str) -> Option<String> {
        let body: Value = self
            .app
            .get_as(
                &format!(
                    "/api/v1/stock?product_id={product}&location_id={}",
                    self.location
                ),
                &self.cashier,
            )
            .await
            .json()
            .await
            .unwrap();
        body["items"][0]["quantity"].as_str().map(str::to_owned)
    }
}
