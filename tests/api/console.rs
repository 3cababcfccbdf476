//! The admin console in a real browser: headless Chromium driven through chromedriver (Debian's
//! `chromium` and `chromium-driver`, which `.ci/run` installs), against the server as it runs.
//! Screenshots of each screen go to `target/screenshots/` (not committed) for a person to look at.

use std::process::Stdio;

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;

use crate::helpers::{ADMIN_PASSWORD, create_database, database_url, plugpos};
use crate::shop::Shop;

/// A headless Chromium session, with its chromedriver (both end when it is dropped).
struct Browser {
    client: Client,
    _driver: tokio::process::Child,
    /// Chromium's profile, removed with the browser (left in /tmp otherwise).
    _profile: tempfile::TempDir,
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
        let profile = tempfile::tempdir().unwrap();
        let downloads = profile.path().join("downloads");
        std::fs::create_dir(&downloads).unwrap();
        // Files are saved without asking, PDFs too (not shown in a viewer), so a test can read
        // what the browser got.
        let caps = json!({"browserName": "chrome", "goog:chromeOptions": {
            "binary": "/usr/bin/chromium",
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--disable-background-networking", "--disable-component-update", "--disable-sync",
                     "--no-first-run", "--window-size=1366,768",
                     format!("--user-data-dir={}", profile.path().display())],
            "prefs": {"download.default_directory": downloads.display().to_string(),
                      "download.prompt_for_download": false,
                      "plugins.always_open_pdf_externally": true}}});
        let url = format!("http://127.0.0.1:{port}");
        for _ in 0..100 {
            let mut builder =
                ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new());
            builder.capabilities(caps.as_object().unwrap().clone());
            if let Ok(client) = builder.connect(&url).await {
                return Browser {
                    client,
                    _driver: driver,
                    _profile: profile,
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

    /// The text of the first element matching `css`, once there is one (a page that reloads
    /// itself may replace the element between finding and reading it: read again then).
    async fn text(&self, css: &str) -> String {
        for _ in 0..3 {
            let element = self
                .client
                .wait()
                .for_element(Locator::Css(css))
                .await
                .unwrap();
            if let Ok(text) = element.text().await {
                return text;
            }
        }
        panic!("{css} kept being replaced");
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

    /// Clicks `css` (a link or a button that answers with a file) and waits (up to 30 s) for
    /// the browser to have saved the file: its name and bytes.
    async fn download(&self, css: &str) -> (String, Vec<u8>) {
        let dir = self._profile.path().join("downloads");
        let listed =
            || -> Vec<std::fs::DirEntry> { std::fs::read_dir(&dir).unwrap().flatten().collect() };
        let before: Vec<_> = listed().iter().map(|e| e.file_name()).collect();
        self.click(css).await;
        for _ in 0..300 {
            let done = listed().into_iter().find(|e| {
                // Chromium writes into a hidden temporary file, then `*.crdownload`, then
                // renames it to its name once it is whole.
                let name = e.file_name();
                let text = name.to_string_lossy();
                !before.contains(&name) && !text.starts_with('.') && !text.ends_with(".crdownload")
            });
            if let Some(entry) = done {
                let name = entry.file_name().to_string_lossy().into_owned();
                return (name, std::fs::read(entry.path()).unwrap());
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        panic!("clicking {css} saved no file");
    }

    /// Saves the whole page (the window made as tall as it) as
    /// `target/screenshots/console-<name>.png`.
    async fn screenshot(&self, name: &str) {
        let (width, height) = self.client.get_window_size().await.unwrap();
        let tall = self
            .client
            .execute("return document.documentElement.scrollHeight", vec![])
            .await
            .ok()
            .and_then(|h| h.as_u64())
            .unwrap_or(u64::from(height as u32));
        let tall = u32::try_from(tall.clamp(u64::from(height as u32), 6000)).unwrap_or(768);
        self.client
            .set_window_size(width as u32, tall + 120)
            .await
            .unwrap();
        let png = self.client.screenshot().await.unwrap();
        self.client
            .set_window_size(width as u32, height as u32)
            .await
            .unwrap();
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
    /// The value of attribute `name` of the first element matching `css`.
    async fn attr(&self, css: &str, name: &str) -> String {
        self.client
            .wait()
            .for_element(Locator::Css(css))
            .await
            .unwrap()
            .attr(name)
            .await
            .unwrap()
            .unwrap_or_default()
    }

    /// Clicks the submit button of the form named `form` (`data-form`), and waits (up to 10 s)
    /// until the answer replaced the page.
    async fn submit(&self, form: &str) {
        let old = self.client.find(Locator::Css("html")).await.unwrap();
        self.click(&format!("form[data-form='{form}'] button[type=submit]"))
            .await;
        for _ in 0..200 {
            if old.tag_name().await.is_err() {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        panic!("the form {form} was sent, but no page came back");
    }

    /// Every field of the form named `form` as the browser would send it (to post it from a
    /// plain client: a download the browser would save).
    async fn form_fields(&self, form: &str) -> Vec<(String, String)> {
        let mut fields = Vec::new();
        let inputs = self
            .client
            .find_all(Locator::Css(&format!("form[data-form='{form}'] input")))
            .await
            .unwrap();
        for input in inputs {
            let name = input.attr("name").await.unwrap().unwrap_or_default();
            let value = input.attr("value").await.unwrap().unwrap_or_default();
            fields.push((name, value));
        }
        fields
    }

    /// Waits (up to `secs`) until the text at `css` is no longer `old`; the new text.
    async fn changed(&self, css: &str, old: &str, secs: u64) -> Option<String> {
        let until = std::time::Instant::now() + std::time::Duration::from_secs(secs);
        while std::time::Instant::now() < until {
            if let Ok(element) = self.client.find(Locator::Css(css)).await
                && let Ok(text) = element.text().await
                && text != old
            {
                return Some(text);
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        None
    }
}

/// A real `plugpos serve` (the binary, with its job runner and schedules) on a fresh database
/// and data directory, not set up; stopped when dropped.
struct Served {
    port: u16,
    data_dir: tempfile::TempDir,
    _config_dir: tempfile::TempDir,
    child: std::process::Child,
}

impl Served {
    async fn start() -> Served {
        let database = create_database(true).await;
        let data_dir = tempfile::Builder::new()
            .prefix("plugpos-served-")
            .tempdir_in("/tmp")
            .unwrap();
        let config_dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let config = config_dir.path().join("plugpos.toml");
        std::fs::write(
            &config,
            format!(
                "data_dir = \"{}\"\n[http]\nport = {port}\n[database]\nurl = \"{}\"\n",
                data_dir.path().display(),
                database_url(&database)
            ),
        )
        .unwrap();
        let child = plugpos()
            .env("PLUGPOS_CONFIG", &config)
            .arg("serve")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let served = Served {
            port,
            data_dir,
            _config_dir: config_dir,
            child,
        };
        for _ in 0..240 {
            let live = reqwest::get(served.url("/health/live")).await;
            if live.is_ok_and(|r| r.status() == 200)
                && served.data_dir.path().join("setup-token").exists()
            {
                return served;
            }
            tokio::time::sleep(std::time::Duration::from_millis(250)).await;
        }
        panic!("plugpos serve never answered on port {port}");
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn setup_token(&self) -> String {
        std::fs::read_to_string(self.data_dir.path().join("setup-token"))
            .unwrap()
            .trim()
            .to_owned()
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A form's fields, encoded as a browser sends them.
fn encoded(fields: &[(String, String)]) -> String {
    let encode = |s: &str| {
        s.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                    (b as char).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect::<String>()
    };
    fields
        .iter()
        .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// A client that sends the browser's cookie, for what a browser saves rather than shows.
fn plain() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

#[tokio::test]
async fn a_new_install_is_set_up_and_backed_up_from_the_browser_alone() {
    // The binary as installed: `plugpos serve`, its own job runner, nothing set up.
    let app = Served::start().await;
    let browser = Browser::start().await;
    // Not set up: the console leads to the wizard.
    browser.goto(&app.url("/admin")).await;
    browser.wait_path("/admin/setup").await;
    assert_eq!(browser.text("h1").await, "Set up the shop");
    browser.fill("#setup_token", "not the token").await;
    browser.fill("#business-name", "Corner Shop").await;
    browser
        .fill("#admin-password", "correct horse battery")
        .await;
    browser.click("button[type=submit]").await;
    assert_eq!(
        browser.text("#setup_token-error").await,
        "This is not the token in the setup-token file."
    );
    browser.screenshot("setup-refused").await;
    // What was typed stays; the secrets are typed again.
    assert_eq!(browser.attr("#business-name", "value").await, "Corner Shop");
    browser.fill("#setup_token", &app.setup_token()).await;
    browser
        .fill("#admin-password", "correct horse battery")
        .await;
    browser.click("button[type=submit]").await;
    browser.wait_path("/admin/login").await;
    assert!(
        browser
            .text("p.notice")
            .await
            .contains("The shop is set up")
    );
    let status: serde_json::Value = reqwest::get(app.url("/api/v1/setup/status"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(status["initialized"], true);
    // The wizard is gone once the shop is set up.
    browser.goto(&app.url("/admin/setup")).await;
    browser.wait_path("/admin/login").await;

    browser.fill("#username", "admin").await;
    browser.fill("#password", "correct horse battery").await;
    browser.click("button[type=submit]").await;
    browser.wait_path("/admin").await;
    let checklist = browser.text("ul.checklist").await;
    assert!(
        checklist.contains("A register to sell from: done."),
        "{checklist}"
    );
    assert!(checklist.contains("First products"), "{checklist}");
    assert!(checklist.contains("A first valid backup"), "{checklist}");
    browser.screenshot("checklist").await;
    // The checklist's tax classes are added in the browser too, and then show as done.
    browser
        .click("ul.checklist a[href='/admin/settings#tax-classes']")
        .await;
    browser.fill("#tax-class-name", "Standard").await;
    browser.fill("#tax-class-rate", "19 %").await;
    browser.submit("tax-class").await;
    assert!(browser.text("#tax-class-rate-error").await.contains("0.19"));
    browser.fill("#tax-class-rate", "0.19").await;
    browser.submit("tax-class").await;
    assert!(
        browser
            .text("#tax-classes table")
            .await
            .contains("Standard")
    );
    browser.goto(&app.url("/admin")).await;
    assert!(
        browser
            .text("ul.checklist")
            .await
            .contains("Tax classes: done.")
    );
    // And the first product, on the home page.
    browser.fill("#product-sku", "COFFEE").await;
    browser.fill("#product-name", "Coffee beans").await;
    browser.fill("#product-price", "8.90").await;
    browser.submit("product").await;
    assert!(
        browser
            .text("ul.checklist")
            .await
            .contains("First products: done.")
    );
    let cookie = browser.session_cookie().await;
    let products: serde_json::Value = plain()
        .get(app.url("/admin/file/api/v1/products"))
        .header("Cookie", &cookie)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(products["items"][0]["price"], "8.90");

    // The first backup: the server's own job runner takes and checks it, and the page follows
    // it by reloading itself until it is valid.
    browser.click("nav a[href='/admin/backups']").await;
    browser.submit("back-up").await;
    let until = std::time::Instant::now() + std::time::Duration::from_secs(120);
    loop {
        let status = browser.text("main").await;
        if status.contains("Valid: restorable") {
            break;
        }
        assert!(
            std::time::Instant::now() < until,
            "the backup did not turn valid: {status}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
    browser.screenshot("first-backup").await;
    browser.goto(&app.url("/admin")).await;
    assert!(
        browser
            .text("ul.checklist")
            .await
            .contains("A first valid backup: done.")
    );
    browser.client.clone().close().await.unwrap();
}

#[tokio::test]
async fn an_admin_runs_the_shop_from_the_console_and_a_cashier_sees_nothing() {
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

    // Users: a password too short is refused next to its field; then a cashier is created.
    browser.click("nav a[href='/admin/users']").await;
    browser.wait_path("/admin/users").await;
    browser.fill("#create-user-username", "dora").await;
    browser.fill("#create-user-password", "short").await;
    browser.submit("create-user").await;
    let error = browser.text("#create-user-password-error").await;
    assert!(error.contains("10"), "{error}");
    assert_eq!(browser.attr("#create-user-username", "value").await, "dora");
    browser.screenshot("users-refused").await;
    browser
        .fill("#create-user-password", "shelf stock 2026")
        .await;
    browser.submit("create-user").await;
    assert!(
        browser
            .text("p.notice")
            .await
            .contains("The user was created")
    );
    let users = browser.text("main table").await;
    assert!(users.contains("dora"), "{users}");
    let dora = app.login("dora", "shelf stock 2026").await;
    assert_eq!(dora.status(), 200, "the new cashier can sign in at a till");
    let dora: serde_json::Value = dora.json().await.unwrap();
    let me: serde_json::Value = app
        .get_as("/api/v1/auth/me", dora["access_token"].as_str().unwrap())
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(me["roles"], serde_json::json!(["cashier"]));
    browser.screenshot("users").await;

    // Roles: a new one with a permission, then that permission taken away again.
    browser.fill("#create-role-name", "closer").await;
    browser
        .fill("#create-role-description", "Closes the day")
        .await;
    let closings_read = "form[data-form='create-role'] input[value='administration.closings.read']";
    browser.click(closings_read).await;
    browser.submit("create-role").await;
    assert!(browser.text("main").await.contains("The role was created"));
    let role_of = |roles: &serde_json::Value| {
        roles["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == "closer")
            .cloned()
            .unwrap()
    };
    let roles: serde_json::Value = app
        .get_as("/api/v1/roles", &shop.admin)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        role_of(&roles)["permissions"],
        serde_json::json!(["administration.closings.read"])
    );
    browser
        .click(&format!(
            "a[href='/admin/roles/{}']",
            role_of(&roles)["id"].as_str().unwrap()
        ))
        .await;
    browser
        .click("input[value='administration.closings.read']")
        .await;
    browser.submit("role-permissions").await;
    assert!(browser.text("p.notice").await.contains("Saved"));
    browser.screenshot("role").await;
    let roles: serde_json::Value = app
        .get_as("/api/v1/roles", &shop.admin)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(role_of(&roles)["permissions"], serde_json::json!([]));

    // The dashboard's sales today follow a sale made through the API within 2 s.
    let (pen, _) = shop.pen_and_bread().await;
    let session = shop.open_session("50.00").await;
    browser.click("nav a[href='/admin/dashboard']").await;
    browser.wait_path("/admin/dashboard").await;
    assert_eq!(
        browser.attr("#live[data-live=yes]", "data-live").await,
        "yes"
    );
    let today = "div.kpi[data-kpi='sales.today'] .kpi-value";
    let before = browser.text(today).await;
    let sold = shop
        .sell(
            &shop.cashier,
            "console-sale",
            &shop.cash_sale(&pen, "2", "10.00"),
        )
        .await;
    assert_eq!(sold.status(), 201);
    let after = browser.changed(today, &before, 2).await;
    assert_eq!(after.as_deref(), Some("5.00"), "was {before}");
    browser.screenshot("dashboard").await;

    // Closings: close the day, see it listed, open its Z report.
    shop.close_session(&session, "55.00").await;
    browser.click("nav a[href='/admin/closings']").await;
    browser.wait_path("/admin/closings").await;
    browser.submit("close").await;
    assert!(browser.text("p.notice").await.contains("Closed"));
    // The Z report: the browser saves the PDF it opens.
    let (name, pdf) = browser.download("main table a[href$='format=pdf']").await;
    assert!(pdf.starts_with(b"%PDF"), "{name}");
    browser.screenshot("closings").await;

    // "Back up now": queued, then valid once the jobs ran (restored and checked).
    browser.click("nav a[href='/admin/backups']").await;
    browser.wait_path("/admin/backups").await;
    assert!(browser.text("main").await.contains("No backup yet."));
    browser.submit("back-up").await;
    assert!(
        browser
            .text("p.notice")
            .await
            .contains("A backup was queued")
    );
    // The work shows while it waits, and the page follows it by itself.
    assert!(
        browser
            .text("section[aria-labelledby=working] ul")
            .await
            .contains("Taking a backup: waiting to start")
    );
    assert_eq!(
        browser.attr("meta[http-equiv=refresh]", "content").await,
        "5"
    );
    browser.screenshot("backup-queued").await;
    app.run_jobs().await;
    browser.goto(&app.url("/admin/backups")).await;
    assert_eq!(browser.text("td.status-valid").await, "Valid: restorable");
    browser.screenshot("backups").await;
    // A tablet held upright: nothing is cut off.
    browser.client.set_window_size(768, 1024).await.unwrap();
    browser.screenshot("backups-768").await;
    browser.client.set_window_size(1366, 768).await.unwrap();
    // The encrypted file downloads.
    let (name, file) = browser.download("td.actions a[download]").await;
    assert!(name.starts_with("plugpos-backup-"), "{name}");
    assert!(file.starts_with(b"age-encryption.org/v1"));

    // A change after the backup, then the restore: a wrong name is refused next to its field.
    browser.goto(&app.url("/admin/users")).await;
    browser.fill("#create-user-username", "temp").await;
    browser
        .fill("#create-user-password", "shelf count 7777")
        .await;
    browser.submit("create-user").await;
    assert!(browser.text("main table").await.contains("temp"));
    browser.goto(&app.url("/admin/backups")).await;
    browser.click("td.actions a[href$='/restore']").await;
    browser.fill("#restore-confirm", "corner shop").await;
    browser.submit("restore").await;
    let refused = browser.text(".error[role=alert]").await;
    assert!(refused.contains("business name"), "{refused}");
    browser.screenshot("restore-refused").await;
    browser.fill("#restore-confirm", "Corner Shop").await;
    browser.submit("restore").await;
    browser.wait_path("/admin/backups").await;
    assert!(
        browser
            .text("p.notice")
            .await
            .contains("The restore is running")
    );
    // While a restore switches databases the console shows why it is closed.
    {
        let _closed = app
            .state
            .maintenance()
            .enter("A backup is being restored.".to_owned());
        browser.goto(&app.url("/admin/backups")).await;
        assert_eq!(browser.text("h1").await, "Closed for a moment");
        browser.screenshot("maintenance").await;
    }
    let jobs = app.run_jobs().await;
    assert!(
        jobs.iter()
            .any(|j| j.kind == "backup.restore" && j.status == "succeeded"),
        "{jobs:?}"
    );
    // The user made after the backup is gone; the one made before it is there.
    browser.goto(&app.url("/admin/users")).await;
    let users = browser.text("main table").await;
    assert!(users.contains("dora") && !users.contains("temp"), "{users}");

    // Audit: the chain verifies after the restore.
    browser.click("nav a[href='/admin/audit']").await;
    browser.wait_path("/admin/audit").await;
    browser.click("a[href='/admin/audit?verify=1']").await;
    assert!(
        browser
            .text("p.notice")
            .await
            .contains("The chain is intact")
    );
    browser.screenshot("audit").await;

    // Reports: a table and its chart.
    browser.click("nav a[href='/admin/reports']").await;
    browser
        .click("a[href='/admin/reports/management.sales_by_hour']")
        .await;
    browser
        .wait_path("/admin/reports/management.sales_by_hour")
        .await;
    assert!(browser.text("main table").await.contains("5.00"));
    browser.attr("svg.chart rect.bar", "height").await;
    browser.screenshot("report").await;

    // Settings: a value out of range is named next to its field.
    browser.click("nav a[href='/admin/settings']").await;
    browser
        .fill("#settings-values-numbering-receipt_digits", "99")
        .await;
    browser.submit("settings").await;
    let error = browser
        .text("#settings-values-numbering-receipt_digits-error")
        .await;
    assert!(error.contains("1 to 12"), "{error}");
    assert!(
        browser
            .text("#settings-reason-error")
            .await
            .contains("numbering.receipt_digits")
    );
    browser
        .fill("#settings-values-numbering-receipt_digits", "8")
        .await;
    browser
        .fill("#settings-reason", "longer receipt numbers")
        .await;
    browser.submit("settings").await;
    assert!(browser.text("p.notice").await.contains("Saved"));
    assert_eq!(
        browser
            .attr("#settings-values-numbering-receipt_digits", "value")
            .await,
        "8"
    );
    browser.screenshot("settings").await;
    // The business is renamed on the same screen.
    browser.fill("#business-name", "Corner Shop & Co").await;
    browser.submit("business").await;
    assert!(browser.text("p.notice").await.contains("Renamed"));
    assert_eq!(
        browser.attr("#business-name", "value").await,
        "Corner Shop & Co"
    );

    // Devices: a till is added and its one-time code shown.
    browser.goto(&app.url("/admin/devices")).await;
    browser.fill("#create-device-name", "Till 2").await;
    browser.submit("create-device").await;
    let code = browser.text("p.notice").await;
    assert!(code.contains("enrolment code"), "{code}");
    assert!(browser.text("main table").await.contains("Till 2"));

    // Closings verify; audit checkpoints download signed.
    browser.goto(&app.url("/admin/closings?verify=1")).await;
    let verified = browser.text("section p[role=status]").await;
    assert!(
        verified.starts_with("Every closing verifies: 1 checked"),
        "{verified}"
    );

    browser.client.set_window_size(768, 1024).await.unwrap();
    for (screen, name) in [
        ("/admin/users", "users-768"),
        ("/admin/dashboard", "dashboard-768"),
        ("/admin/audit", "audit-768"),
    ] {
        browser.goto(&app.url(screen)).await;
        browser.text("h1").await;
        browser.screenshot(name).await;
    }
    browser.client.set_window_size(1366, 768).await.unwrap();
    for (screen, name) in [
        ("/admin/devices", "devices"),
        ("/admin/security", "security"),
        ("/admin/closings?verify=1", "closings-verified"),
    ] {
        browser.goto(&app.url(screen)).await;
        browser.text("h1").await;
        browser.screenshot(name).await;
    }

    // Support: the checks, and the bundle (what the browser would save).
    browser.goto(&app.url("/admin/support")).await;
    browser.click("a[href='/admin/support?checks=1']").await;
    browser.screenshot("support").await;
    let checks = browser.text("main table").await;
    assert!(checks.contains("data_directory"), "{checks}");
    let cookie = browser.session_cookie().await;
    let (name, bundle) = browser
        .download("form[data-form='bundle'] button[type=submit]")
        .await;
    assert!(
        name.starts_with("plugpos-support-") && name.ends_with(".tar.zst"),
        "{name}"
    );
    assert!(bundle.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]), "zstd");

    // A form without the session's CSRF token is refused, even with the cookie; one from
    // another site is refused before its token is even read.
    let mut fields = browser.form_fields("bundle").await;
    let cross = plain()
        .post(app.url("/admin/act"))
        .header("Cookie", &cookie)
        .header("Sec-Fetch-Site", "cross-site")
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(encoded(&fields))
        .send()
        .await
        .unwrap();
    assert_eq!(cross.status(), 403);
    fields.retain(|(k, _)| k != "csrf");
    for forged in [None, Some("forged")] {
        let mut sent = fields.clone();
        if let Some(token) = forged {
            sent.push(("csrf".to_owned(), token.to_owned()));
        }
        let refused = plain()
            .post(app.url("/admin/act"))
            .header("Cookie", &cookie)
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(encoded(&sent))
            .send()
            .await
            .unwrap();
        assert_eq!(refused.status(), 403, "{forged:?}");
    }

    // The pages are served with a strict policy.
    let page = plain()
        .get(app.url("/admin/backups"))
        .header("Cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    let csp = page.headers()["content-security-policy"].to_str().unwrap();
    assert!(
        csp.contains("default-src 'none'")
            && csp.contains("script-src 'self'")
            && csp.contains("frame-ancestors 'none'"),
        "{csp}"
    );
    assert_eq!(page.headers()["x-frame-options"], "DENY");

    // Signing out ends the session: the old cookie opens nothing.
    browser.click("header button[type=submit]").await;
    browser.wait_path("/admin/login").await;
    let after = plain()
        .get(app.url("/admin/backups"))
        .header("Cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(after.status(), 303, "to the sign-in page");

    // A new user signs in with the first password they were given: the console asks for a new
    // one first, then they sign in again with it.
    browser.sign_in(&shop, "dora", "shelf stock 2026").await;
    browser.wait_path("/admin/account").await;
    assert!(
        browser
            .text("p.error")
            .await
            .contains("Choose a new password")
    );
    browser.goto(&app.url("/admin/users")).await;
    browser.wait_path("/admin/account").await;
    browser
        .fill("#password-current_password", "shelf stock 2026")
        .await;
    browser
        .fill("#password-new_password", "a better one 2027")
        .await;
    browser.screenshot("account").await;
    browser.submit("password").await;
    browser.wait_path("/admin/login").await;
    assert!(
        browser
            .text("p.notice")
            .await
            .contains("password was changed")
    );
    browser.fill("#username", "dora").await;
    browser.fill("#password", "a better one 2027").await;
    browser.click("button[type=submit]").await;
    browser.wait_path("/admin").await;
    assert!(browser.text("p.error").await.contains("no console screens"));
    browser.click("header button[type=submit]").await;
    browser.wait_path("/admin/login").await;

    // A cashier has no console screens, and the screens' URLs answer 403.
    browser.sign_in(&shop, "carla", "cashier pass 123").await;
    browser.wait_path("/admin").await;
    assert!(browser.text("p.error").await.contains("no console screens"));
    assert!(
        browser
            .client
            .find_all(Locator::Css("nav a"))
            .await
            .unwrap()
            .len()
            == 1
    );
    browser.screenshot("cashier").await;
    browser.goto(&app.url("/admin/backups")).await;
    assert_eq!(browser.text("h1").await, "Not allowed");
    let cashier = browser.session_cookie().await;
    for screen in [
        "/admin/backups",
        "/admin/users",
        "/admin/audit",
        "/admin/settings",
        "/admin/support",
        "/admin/dashboard",
        "/admin/closings",
        "/admin/devices",
        "/admin/reports",
        "/admin/security",
        "/admin/dashboard/live",
    ] {
        let refused = plain()
            .get(app.url(screen))
            .header("Cookie", &cashier)
            .send()
            .await
            .unwrap();
        assert_eq!(refused.status(), 403, "{screen}");
    }
    browser.client.clone().close().await.unwrap();
}
