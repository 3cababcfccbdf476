//! The admin console in a real browser: headless Chromium driven through chromedriver (Debian's
//! `chromium` and `chromium-driver`, which `.ci/run` installs), against the server as it runs.
//! Screenshots of each screen go to `target/screenshots/` (not committed) for a person to look at.

use std::process::Stdio;

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;

use crate::helpers::ADMIN_PASSWORD;
use crate::shop::Shop;

/// A headless Chromium session, with its chromedriver (both end when it is dropped).
struct Browser {
    client: Client,
    _driver: tokio::process::Child,
}

impl Browser {
    async fn start() -> Browser {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let driver = tokio::process::Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("chromedriver (Debian's chromium-driver; .ci/run installs it)");
        let caps = json!({"browserName": "chrome", "goog:chromeOptions": {
            "binary": "/usr/bin/chromium",
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--disable-background-networking", "--disable-component-update", "--disable-sync",
                     "--no-first-run", "--window-size=1366,768"]}});
        let url = format!("http://127.0.0.1:{port}");
        for _ in 0..100 {
            let mut builder =
                ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new());
            builder.capabilities(caps.as_object().unwrap().clone());
            if let Ok(client) = builder.connect(&url).await {
                return Browser {
                    client,
                    _driver: driver,
                };
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        panic!("chromedriver did not answer on {url}");
    }

    async fn goto(&self, url: &str) {
        self.client.goto(url).await.unwrap();
    }

    async fn fill(&self, css: &str, text: &str) {
        let field = self.client.find(Locator::Css(css)).await.unwrap();
        field.clear().await.unwrap();
        field.send_keys(text).await.unwrap();
    }

    async fn click(&self, css: &str) {
        self.client
            .find(Locator::Css(css))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
    }

    async fn text(&self, css: &str) -> String {
        self.client
            .wait()
            .for_element(Locator::Css(css))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    async fn path(&self) -> String {
        self.client.current_url().await.unwrap().path().to_owned()
    }

    /// Waits (up to 10 s) until the browser is on `path`: a click that submits a form returns
    /// before the next page has arrived.
    async fn wait_path(&self, path: &str) {
        for _ in 0..200 {
            if self.path().await == path {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        assert_eq!(self.path().await, path);
    }

    /// Saves the page as `target/screenshots/console-<name>.png`.
    async fn screenshot(&self, name: &str) {
        let png = self.client.screenshot().await.unwrap();
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/screenshots");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("console-{name}.png")), png).unwrap();
    }

    async fn sign_in(&self, shop: &Shop, username: &str, password: &str) {
        self.goto(&shop.app.url("/admin")).await;
        assert_eq!(self.path().await, "/admin/login");
        self.fill("#username", username).await;
        self.fill("#password", password).await;
        self.click("button[type=submit]").await;
    }

    /// The console's session cookie, as the browser holds it.
    async fn session_cookie(&self) -> String {
        let cookies = self.client.get_all_cookies().await.unwrap();
        let cookie = cookies
            .iter()
            .find(|c| c.name() == "plugpos_console")
            .expect("the console's cookie");
        assert_eq!(cookie.http_only(), Some(true));
        format!("plugpos_console={}", cookie.value())
    }
}

#[tokio::test]
async fn an_admin_signs_in_takes_a_backup_and_signs_out_and_a_cashier_sees_nothing() {
    let shop = Shop::open().await;
    let app = &shop.app;
    let browser = Browser::start().await;

    // A wrong password is said so, on the page.
    browser.sign_in(&shop, "admin", "not the password").await;
    assert_eq!(browser.text("p.error").await, "Wrong username or password.");
    browser.screenshot("sign-in-refused").await;

    browser.sign_in(&shop, "admin", ADMIN_PASSWORD).await;
    browser.wait_path("/admin").await;
    assert!(browser.text("main").await.contains("Backups"));
    browser.screenshot("home").await;

    // "Back up now": queued, then valid once the jobs ran (restored and checked).
    browser.click("nav a[href='/admin/backups']").await;
    browser.wait_path("/admin/backups").await;
    assert_eq!(browser.text("h1").await, "Backups");
    assert!(browser.text("main").await.contains("No backup yet."));
    browser.click("form.card button[type=submit]").await;
    assert!(
        browser
            .text("p.notice")
            .await
            .contains("A backup was queued")
    );
    app.run_jobs().await;
    browser.goto(&app.url("/admin/backups")).await;
    assert_eq!(browser.text("td.status-valid").await, "Valid: restorable");
    browser.screenshot("backups").await;
    // A tablet held upright: nothing is cut off (the version column gives way).
    browser.client.set_window_size(768, 1024).await.unwrap();
    browser.screenshot("backups-768").await;
    browser.client.set_window_size(1366, 768).await.unwrap();

    // A form without the session's CSRF token is refused, even with the cookie.
    let cookie = browser.session_cookie().await;
    let plain = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    // A form from another site is refused before its token is even read.
    let csrf = browser
        .client
        .find(Locator::Css("form.card input[name=csrf]"))
        .await
        .unwrap()
        .attr("value")
        .await
        .unwrap()
        .unwrap();
    let cross = plain
        .post(app.url("/admin/backups"))
        .header("Cookie", &cookie)
        .header("Sec-Fetch-Site", "cross-site")
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(format!("csrf={csrf}"))
        .send()
        .await
        .unwrap();
    assert_eq!(cross.status(), 403);
    for body in ["", "csrf=forged"] {
        let forged = plain
            .post(app.url("/admin/backups"))
            .header("Cookie", &cookie)
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(forged.status(), 403, "{body}");
    }
    let backups: serde_json::Value = app
        .get_as("/api/v1/backups", &shop.admin)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        backups["items"].as_array().unwrap().len(),
        1,
        "nothing more was queued"
    );

    // The pages are served with a strict policy.
    let page = plain
        .get(app.url("/admin/backups"))
        .header("Cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    let csp = page.headers()["content-security-policy"].to_str().unwrap();
    assert!(
        csp.contains("default-src 'none'") && csp.contains("frame-ancestors 'none'"),
        "{csp}"
    );
    assert_eq!(page.headers()["x-frame-options"], "DENY");

    // Signing out ends the session: the old cookie opens nothing.
    browser.click("header button[type=submit]").await;
    browser.wait_path("/admin/login").await;
    let after = plain
        .get(app.url("/admin/backups"))
        .header("Cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(after.status(), 303, "to the sign-in page");

    // A cashier has no console screens, and the backups' URL answers 403.
    browser.sign_in(&shop, "carla", "cashier pass 123").await;
    browser.wait_path("/admin").await;
    assert!(browser.text("p.error").await.contains("no console screens"));
    browser.screenshot("cashier").await;
    browser.goto(&app.url("/admin/backups")).await;
    assert_eq!(browser.text("h1").await, "Not allowed");
    let cashier = browser.session_cookie().await;
    let refused = plain
        .get(app.url("/admin/backups"))
        .header("Cookie", &cashier)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 403);
    browser.client.clone().close().await.unwrap();
}
