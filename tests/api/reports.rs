//! Reports, KPIs and the live dashboard (issue 34): every shipped report's figures against a
//! computation made here from the documents the API returned, in JSON, CSV and PDF; columns that
//! need the cost permission hidden from those without it; bad parameters named; the rollups equal
//! to the lines (and a broken one found and repaired); the dashboard pushed within 2 s of a sale.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Datelike, Timelike, Utc};
use chrono_tz::Europe::Berlin;
use rust_decimal::{Decimal, RoundingStrategy};
use serde_json::{Value, json};

use crate::helpers::problem;
use crate::shop::Shop;

fn d(v: &Value) -> Decimal {
    v.as_str()
        .unwrap_or_else(|| panic!("a string amount, not {v}"))
        .parse()
        .unwrap()
}

/// As the API shows money: rounded half away from zero to 2 decimals.
fn money(x: Decimal) -> String {
    let mut r = x.round_dp_with_strategy(2, RoundingStrategy::MidpointAwayFromZero);
    r.rescale(2);
    r.to_string()
}

fn quantity(x: Decimal) -> String {
    x.round_dp(3).normalize().to_string()
}

async fn keyed(shop: &Shop, token: &str, path: &str, key: &str, body: &Value) -> Value {
    let response = shop
        .app
        .client
        .post(shop.app.url(path))
        .bearer_auth(token)
        .header("Idempotency-Key", key)
        .json(body)
        .send()
        .await
        .unwrap();
    assert!(
        response.status().is_success(),
        "{path}: {}",
        response.text().await.unwrap()
    );
    response.json().await.unwrap()
}

async fn report(shop: &Shop, token: &str, id: &str, query: &str) -> Value {
    let response = shop
        .app
        .get_as(&format!("/api/v1/reports/{id}?{query}"), token)
        .await;
    assert_eq!(
        response.status(),
        200,
        "{id}: {}",
        response.text().await.unwrap()
    );
    response.json().await.unwrap()
}

async fn download(shop: &Shop, token: &str, id: &str, query: &str) -> (String, Vec<u8>) {
    let response = shop
        .app
        .get_as(&format!("/api/v1/reports/{id}?{query}"), token)
        .await;
    assert_eq!(response.status(), 200);
    let kind = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned();
    (kind, response.bytes().await.unwrap().to_vec())
}

/// The text `pdftotext -layout` reads from `pdf`.
fn pdf_text(pdf: &[u8]) -> String {
    assert!(pdf.starts_with(b"%PDF-"));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("report.pdf");
    std::fs::write(&path, pdf).unwrap();
    let out = std::process::Command::new("pdftotext")
        .args(["-layout", path.to_str().unwrap(), "-"])
        .output()
        .expect("pdftotext (poppler-utils) is installed");
    assert!(out.status.success());
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn rows(report: &Value) -> &Vec<Value> {
    report["rows"].as_array().unwrap()
}

/// The row whose `key` is `value`.
fn row<'a>(report: &'a Value, key: &str, value: &str) -> &'a Value {
    rows(report)
        .iter()
        .find(|r| r[key].as_str() == Some(value))
        .unwrap_or_else(|| panic!("no row with {key} = {value} in {report}"))
}

/// A product (`body` without its tax class and stock tracking, given apart); returns its id.
async fn product(shop: &Shop, mut body: Value, tax: &str, track: bool) -> String {
    body["tax_class_id"] = json!(tax);
    body["track_stock"] = json!(track);
    let response = shop
        .app
        .post_as("/api/v1/products", &shop.manager, &body)
        .await;
    assert_eq!(response.status(), 201, "{}", response.text().await.unwrap());
    response.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// A user `username` whose only role, `role`, holds `permissions`; returns their token.
async fn user_with(
    shop: &Shop,
    role: &str,
    permissions: &[&str],
    username: &str,
    password: &str,
) -> String {
    let body = json!({"name": role, "permissions": permissions});
    assert_eq!(
        shop.app
            .post_as("/api/v1/roles", &shop.admin, &body)
            .await
            .status(),
        201
    );
    shop.app.user_token(username, password, &[role]).await
}

async fn category(shop: &Shop, name: &str, parent: Option<&str>) -> String {
    let response = shop
        .app
        .post_as(
            "/api/v1/categories",
            &shop.manager,
            &json!({"name": name, "parent_id": parent}),
        )
        .await;
    assert_eq!(response.status(), 201, "{}", response.text().await.unwrap());
    response.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// A shop's day: four sales (one with a customer, discounts, cash and card), a return and a
/// void, then the session closed one euro over.
struct Day {
    shop: Shop,
    pen: String,
    bread: String,
    mug: String,
    writing: String,
    pens: String,
    customer: String,
    sales: Vec<Value>,
    corrections: Vec<Value>,
}

async fn a_day() -> Day {
    let shop = Shop::open().await;
    let writing = category(&shop, "Writing", None).await;
    let pens = category(&shop, "Pens", Some(&writing)).await;
    let pen = product(
        &shop,
        json!({"sku": "PEN", "name": "Pen", "price": "2.50", "category_id": pens, "cost_price": "1.20"}),
        &shop.standard,
        true,
    )
    .await;
    let bread = product(
        &shop,
        json!({"sku": "BREAD", "name": "Brot", "price": "1.99", "cost_price": "0.80"}),
        &shop.reduced,
        false,
    )
    .await;
    // No cost price: its lines count as without cost.
    let mug = product(
        &shop,
        json!({"sku": "MUG", "name": "Tasse Ωmega 漢字", "price": "4.00", "category_id": writing}),
        &shop.standard,
        false,
    )
    .await;
    shop.receive(&pen, "20").await;
    let customer = keyed(
        &shop,
        &shop.cashier,
        "/api/v1/customers",
        "c1",
        &json!({"name": "=cmd|' /C calc'!A0 Zoë"}),
    )
    .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let session = shop.open_session("50.00").await;
    let register = shop.register.clone();
    let s1 = keyed(
        &shop,
        &shop.cashier,
        "/api/v1/sales",
        "s1",
        &json!({"register_id": register,
        "lines": [{"product_id": pen, "quantity": "3"}, {"product_id": bread, "quantity": "1"}],
        "payments": [{"method": "cash", "amount": "20.00"}]}),
    )
    .await;
    let s2 = keyed(&shop, &shop.manager, "/api/v1/sales", "s2", &json!({"register_id": register,
        "lines": [{"product_id": pen, "quantity": "2", "discount": {"kind": "percent", "value": "10", "reason_code": "promotion"}},
                  {"product_id": mug, "quantity": "1"}],
        "discount": {"kind": "amount", "value": "0.50", "reason_code": "loyalty"},
        "payments": [{"method": "cash", "amount": "20.00"}]})).await;
    let s3 = keyed(&shop, &shop.cashier, "/api/v1/sales", "s3", &json!({"register_id": register, "customer_id": customer,
        "lines": [{"product_id": pen, "quantity": "1", "unit_price": "2.50"}, {"product_id": bread, "quantity": "2", "unit_price": "1.99"}],
        "payments": [{"method": "card", "amount": "6.48"}]})).await;
    let s4 = keyed(
        &shop,
        &shop.cashier,
        "/api/v1/sales",
        "s4",
        &shop.cash_sale(&bread, "1", "1.99"),
    )
    .await;
    let back = keyed(
        &shop,
        &shop.manager,
        "/api/v1/returns",
        "r1",
        &json!({"register_id": register,
        "original_sale_id": s1["id"], "lines": [{"line_no": 1, "quantity": "1"}],
        "refunds": [{"method": "cash", "amount": "2.50"}], "reason_code": "changed_mind"}),
    )
    .await;
    let response = shop
        .app
        .post_as(
            &format!("/api/v1/sales/{}/void", s4["id"].as_str().unwrap()),
            &shop.manager,
            &json!({"reason_code": "cashier_error"}),
        )
        .await;
    assert_eq!(response.status(), 201, "{}", response.text().await.unwrap());
    let void: Value = response.json().await.unwrap();
    // Expected cash: the float, the cash taken less change, less the cash refunds.
    let x: Value = shop
        .app
        .get_as(
            &format!("/api/v1/cash-sessions/{session}/report"),
            &shop.manager,
        )
        .await
        .json()
        .await
        .unwrap();
    let expected = d(&x["cash"]["expected_cash"]);
    shop.close_session(&session, &money(expected + Decimal::ONE))
        .await;
    Day {
        shop,
        pen,
        bread,
        mug,
        writing,
        pens,
        customer,
        sales: vec![s1, s2, s3, s4],
        corrections: vec![back, void],
    }
}

fn berlin(at: &Value) -> DateTime<chrono_tz::Tz> {
    at.as_str()
        .unwrap()
        .parse::<DateTime<Utc>>()
        .unwrap()
        .with_timezone(&Berlin)
}

#[tokio::test]
async fn sales_reports_equal_the_sums_of_the_documents() {
    let day = a_day().await;
    let shop = &day.shop;
    let today = berlin(&day.sales[0]["created_at"]).date_naive();
    let period = format!("from={today}&to={today}");

    // Sums over the sales as the API returned them.
    let sum = |f: &dyn Fn(&Value) -> Decimal| day.sales.iter().map(f).sum::<Decimal>();
    let gross = sum(&|s| d(&s["totals"]["total"]));
    let net = sum(&|s| d(&s["totals"]["net"]));
    let tax = sum(&|s| d(&s["totals"]["tax"]));
    let discounts = sum(&|s| d(&s["discount_total"]));
    let items: Decimal = day
        .sales
        .iter()
        .flat_map(|s| s["lines"].as_array().unwrap())
        .map(|l| d(&l["quantity"]))
        .sum();

    let by_day = report(shop, &shop.manager, "management.sales_by_day", &period).await;
    assert_eq!(rows(&by_day).len(), 1);
    let r = &rows(&by_day)[0];
    assert_eq!(r["date"], today.to_string());
    assert_eq!(r["sales"], 4);
    assert_eq!(r["items"], quantity(items));
    assert_eq!(r["net"], money(net));
    assert_eq!(r["tax"], money(tax));
    assert_eq!(r["gross"], money(gross));
    assert_eq!(r["discounts"], money(discounts));
    assert_eq!(r["average_basket"], money(gross / Decimal::from(4)));
    assert_eq!(by_day["totals"]["gross"], money(gross));
    assert_eq!(by_day["parameters"]["from"], today.to_string());
    // The default period is the month so far, every day of it listed.
    let month = report(shop, &shop.manager, "management.sales_by_day", "").await;
    assert_eq!(rows(&month).len() as u32, today.day());
    assert_eq!(month["totals"]["gross"], money(gross));

    // Per hour and weekday (business timezone).
    let by_hour = report(shop, &shop.manager, "management.sales_by_hour", &period).await;
    assert_eq!(rows(&by_hour).len(), 24);
    let mut hours: BTreeMap<u32, Decimal> = BTreeMap::new();
    for s in &day.sales {
        *hours.entry(berlin(&s["created_at"]).hour()).or_default() += d(&s["totals"]["total"]);
    }
    for r in rows(&by_hour) {
        let h = r["hour"].as_u64().unwrap() as u32;
        assert_eq!(
            r["gross"],
            money(hours.get(&h).copied().unwrap_or_default()),
            "hour {h}"
        );
    }
    let by_weekday = report(shop, &shop.manager, "management.sales_by_weekday", &period).await;
    let weekday = [
        "Monday",
        "Tuesday",
        "Wednesday",
        "Thursday",
        "Friday",
        "Saturday",
        "Sunday",
    ][today.weekday().num_days_from_monday() as usize];
    assert_eq!(row(&by_weekday, "weekday", weekday)["gross"], money(gross));

    // Per cashier (named) and register.
    let by_cashier = report(shop, &shop.manager, "management.sales_by_cashier", &period).await;
    let mut cashiers: HashMap<String, (i64, Decimal)> = HashMap::new();
    for s in &day.sales {
        let e = cashiers
            .entry(s["cashier_id"].as_str().unwrap().to_owned())
            .or_default();
        e.0 += 1;
        e.1 += d(&s["totals"]["total"]);
    }
    assert_eq!(rows(&by_cashier).len(), 2);
    for r in rows(&by_cashier) {
        let (n, g) = cashiers[r["cashier_id"].as_str().unwrap()];
        assert_eq!(
            (r["sales"].as_i64().unwrap(), r["gross"].clone()),
            (n, json!(money(g)))
        );
    }
    assert!(rows(&by_cashier).iter().any(|r| r["cashier"] == "carla"));
    let by_register = report(shop, &shop.manager, "management.sales_by_register", &period).await;
    assert_eq!(rows(&by_register)[0]["register_id"], shop.register.as_str());
    assert_eq!(rows(&by_register)[0]["gross"], money(gross));
    // A filter: the cashier's own.
    let carla = rows(&by_cashier)
        .iter()
        .find(|r| r["cashier"] == "carla")
        .unwrap();
    let only = report(
        shop,
        &shop.manager,
        "management.sales_by_day",
        &format!(
            "{period}&cashier_id={}",
            carla["cashier_id"].as_str().unwrap()
        ),
    )
    .await;
    assert_eq!(rows(&only)[0]["gross"], carla["gross"]);

    // Per product: quantity, gross, net (each line's gross less its tax, 4 decimals), cost.
    let mut per: HashMap<String, (Decimal, Decimal, Decimal, Decimal, Decimal, i64)> =
        HashMap::new();
    let costs: HashMap<&str, Option<Decimal>> = HashMap::from([
        (day.pen.as_str(), Some(Decimal::new(120, 2))),
        (day.bread.as_str(), Some(Decimal::new(80, 2))),
        (day.mug.as_str(), None),
    ]);
    for s in &day.sales {
        for l in s["lines"].as_array().unwrap() {
            let id = l["product_id"].as_str().unwrap();
            let total = d(&l["total"]);
            let rate = d(&l["tax_rate"]);
            let line_net = (total / (Decimal::ONE + rate))
                .round_dp_with_strategy(4, RoundingStrategy::MidpointAwayFromZero);
            let e = per.entry(id.to_owned()).or_default();
            e.0 += d(&l["quantity"]);
            e.1 += total;
            e.2 += line_net;
            e.3 += d(&l["discount"]);
            match costs[id] {
                Some(c) => e.4 += c * d(&l["quantity"]),
                None => e.5 += 1,
            }
        }
    }
    let by_product = report(shop, &shop.manager, "management.sales_by_product", &period).await;
    assert_eq!(rows(&by_product).len(), 3);
    for (id, (q, g, n, disc, _, _)) in &per {
        let r = row(&by_product, "product_id", id);
        assert_eq!(
            (&r["quantity"], &r["gross"], &r["net"], &r["discounts"]),
            (
                &json!(quantity(*q)),
                &json!(money(*g)),
                &json!(money(*n)),
                &json!(money(*disc))
            ),
            "{id}"
        );
    }
    assert_eq!(
        row(&by_product, "product_id", &day.mug)["product"],
        "MUG Tasse Ωmega 漢字"
    );
    // Largest gross first.
    let grosses: Vec<Decimal> = rows(&by_product).iter().map(|r| d(&r["gross"])).collect();
    assert!(grosses.windows(2).all(|w| w[0] >= w[1]), "{grosses:?}");
    // A category takes its subcategories: Writing is the pen (in Pens) and the mug.
    let writing = report(
        shop,
        &shop.manager,
        "management.sales_by_product",
        &format!("{period}&category_id={}", day.writing),
    )
    .await;
    let mut ids: Vec<&str> = rows(&writing)
        .iter()
        .map(|r| r["product_id"].as_str().unwrap())
        .collect();
    ids.sort_unstable();
    let mut want = vec![day.pen.as_str(), day.mug.as_str()];
    want.sort_unstable();
    assert_eq!(ids, want);
    assert_eq!(
        rows(
            &report(
                shop,
                &shop.manager,
                "management.sales_by_product",
                &format!("{period}&limit=1")
            )
            .await
        )
        .len(),
        1
    );

    // Per category (the product's category; none for the bread).
    let by_category = report(shop, &shop.manager, "management.sales_by_category", &period).await;
    assert_eq!(
        row(&by_category, "category_id", &day.pens)["gross"],
        money(per[&day.pen].1)
    );
    assert_eq!(
        row(&by_category, "category_id", &day.writing)["gross"],
        money(per[&day.mug].1)
    );
    let none = rows(&by_category)
        .iter()
        .find(|r| r["category_id"].is_null())
        .unwrap();
    assert_eq!(
        (none["category"].as_str(), none["gross"].clone()),
        (Some("(no category)"), json!(money(per[&day.bread].1)))
    );

    // Margins at the cost when sold, for a reader of costs.
    let margins = report(
        shop,
        &shop.manager,
        "management.gross_margin_by_product",
        &period,
    )
    .await;
    for (id, (_, _, n, _, cost, missing)) in &per {
        let r = row(&margins, "product_id", id);
        assert_eq!(r["cost"], money(*cost), "{id}");
        // No margin where a line's cost is unknown (the mug has no cost price).
        let margin = if *missing > 0 {
            Value::Null
        } else {
            json!(money(*n - *cost))
        };
        assert_eq!(r["margin"], margin, "{id}");
        assert_eq!(r["lines_without_cost"], *missing, "{id}");
    }
    let pen_margin = row(&margins, "product_id", &day.pen);
    let (_, _, pen_net, _, pen_cost, _) = per[&day.pen];
    assert_eq!(
        pen_margin["margin_percent"],
        format!(
            "{:.1}",
            ((pen_net - pen_cost) * Decimal::ONE_HUNDRED / pen_net)
                .round_dp_with_strategy(1, RoundingStrategy::MidpointAwayFromZero)
        )
    );
    let by_category_margin = report(
        shop,
        &shop.manager,
        "management.gross_margin_by_category",
        &period,
    )
    .await;
    assert_eq!(
        row(&by_category_margin, "category_id", &day.pens)["cost"],
        money(per[&day.pen].4)
    );

    // Discounts per reason and cashier, from each sale's discounts.
    let discount_rows = report(shop, &shop.manager, "management.discounts", &period).await;
    let s2 = &day.sales[1];
    let promotion = d(&s2["lines"][0]["discounts"]["own"]["amount"]);
    let loyalty = d(&s2["discount"]["amount"]);
    assert_eq!(
        row(&discount_rows, "reason_code", "promotion")["amount"],
        money(promotion)
    );
    assert_eq!(
        row(&discount_rows, "reason_code", "loyalty")["amount"],
        money(loyalty)
    );
    assert_eq!(
        row(&discount_rows, "reason_code", "loyalty")["cashier"],
        "boss"
    );
    assert_eq!(discount_rows["totals"]["amount"], money(discounts));

    // Top customers: the one sale naming Zoë.
    let top = report(shop, &shop.manager, "management.top_customers", &period).await;
    assert_eq!(rows(&top).len(), 1);
    assert_eq!(rows(&top)[0]["customer_id"], day.customer.as_str());
    assert_eq!(rows(&top)[0]["gross"], day.sales[2]["totals"]["total"]);
}

#[tokio::test]
async fn corrections_cash_stock_and_closings_reports_equal_their_documents() {
    let day = a_day().await;
    let shop = &day.shop;
    let today = berlin(&day.sales[0]["created_at"]).date_naive();
    let period = format!("from={today}&to={today}");

    // The VAT return: per rate, the sales' buckets plus the corrections' (negative) buckets.
    let mut rates: BTreeMap<Decimal, (Decimal, Decimal, Decimal)> = BTreeMap::new();
    for doc in day.sales.iter().chain(&day.corrections) {
        for t in doc["taxes"].as_array().unwrap() {
            let e = rates.entry(d(&t["rate"]).normalize()).or_default();
            e.0 += d(&t["net"]);
            e.1 += d(&t["tax"]);
            e.2 += d(&t["gross"]);
        }
    }
    let vat = report(shop, &shop.manager, "management.sales_by_tax_rate", &period).await;
    assert_eq!(rows(&vat).len(), rates.len());
    for (rate, (n, t, g)) in &rates {
        let shown = money((rate * Decimal::ONE_HUNDRED).round_dp(1))
            .trim_end_matches('0')
            .to_owned();
        let r = rows(&vat)
            .iter()
            .find(|r| {
                r["rate"]
                    .as_str()
                    .unwrap()
                    .starts_with(shown.trim_end_matches('.'))
            })
            .unwrap_or_else(|| panic!("rate {rate} in {vat}"));
        assert_eq!(
            (&r["net"], &r["tax"], &r["gross"]),
            (&json!(money(*n)), &json!(money(*t)), &json!(money(*g))),
            "{rate}"
        );
    }

    // Payments: cash taken less change; refunds from the return and the void.
    let mut methods: HashMap<String, (Decimal, Decimal)> = HashMap::new();
    for s in &day.sales {
        for p in s["payments"].as_array().unwrap() {
            methods
                .entry(p["method"].as_str().unwrap().to_owned())
                .or_default()
                .0 += d(&p["amount"]);
        }
        methods.entry("cash".into()).or_default().0 -= d(&s["change_due"]);
    }
    for c in &day.corrections {
        for p in c["refunds"].as_array().unwrap() {
            methods
                .entry(p["method"].as_str().unwrap().to_owned())
                .or_default()
                .1 += d(&p["amount"]);
        }
    }
    let payments = report(
        shop,
        &shop.manager,
        "management.sales_by_payment_method",
        &period,
    )
    .await;
    for (method, (received, refunded)) in &methods {
        let r = row(&payments, "method", method);
        assert_eq!(
            (&r["received"], &r["refunded"], &r["net"]),
            (
                &json!(money(*received)),
                &json!(money(*refunded)),
                &json!(money(*received - *refunded))
            ),
            "{method}"
        );
    }
    let card_only = report(
        shop,
        &shop.manager,
        "management.sales_by_payment_method",
        &format!("{period}&method=card"),
    )
    .await;
    assert_eq!(rows(&card_only).len(), 1);

    // Returns and voids per reason and cashier.
    let corrections = report(shop, &shop.manager, "management.returns_and_voids", &period).await;
    for c in &day.corrections {
        let r = row(&corrections, "kind", c["kind"].as_str().unwrap());
        assert_eq!(r["reason_code"], c["reason_code"]);
        assert_eq!(r["cashier"], "boss");
        assert_eq!(r["amount"], money(-d(&c["totals"]["total"])));
    }

    // Those naming the customer: none (the return was of a sale without one).
    let theirs = report(
        shop,
        &shop.manager,
        "management.returns_and_voids",
        &format!("{period}&customer_id={}", day.customer),
    )
    .await;
    assert!(rows(&theirs).is_empty(), "{theirs}");

    // Stock: the pen's level at its cost; the movements as the ledger lists them.
    let level: Decimal = shop.stock(&day.pen).await.unwrap().parse().unwrap();
    let valuation = report(shop, &shop.manager, "management.stock_valuation", "").await;
    let r = row(&valuation, "location_id", &shop.location);
    assert_eq!(
        (&r["products"], &r["quantity"], &r["value"]),
        (
            &json!(1),
            &json!(quantity(level)),
            &json!(money(level * Decimal::new(120, 2)))
        )
    );
    let ledger: Value = shop
        .app
        .get_as("/api/v1/stock/movements?limit=200", &shop.manager)
        .await
        .json()
        .await
        .unwrap();
    let mut reasons: HashMap<String, (i64, Decimal)> = HashMap::new();
    for m in ledger["items"].as_array().unwrap() {
        let e = reasons
            .entry(m["reason_code"].as_str().unwrap().to_owned())
            .or_default();
        e.0 += 1;
        e.1 += d(&m["quantity_delta"]);
    }
    let movements = report(
        shop,
        &shop.manager,
        "management.stock_movements_by_reason",
        &period,
    )
    .await;
    assert_eq!(
        rows(&movements).len(),
        reasons.len(),
        "{movements} against {reasons:?}"
    );
    for (reason, (n, net)) in &reasons {
        let r = row(&movements, "reason_code", reason);
        assert_eq!(
            (r["movements"].as_i64().unwrap(), r["net"].clone()),
            (*n, json!(quantity(*net))),
            "{reason}"
        );
    }
    // Low stock: a minimum above the level.
    let response = shop.app.client.put(shop.app.url("/api/v1/stock/reorder-points")).bearer_auth(&shop.manager)
        .json(&json!({"product_id": day.pen, "location_id": shop.location, "min_quantity": "100", "reorder_quantity": "50", "version": 0}))
        .send().await.unwrap();
    assert_eq!(response.status(), 200);
    let low = report(shop, &shop.manager, "management.low_stock", "").await;
    assert_eq!(rows(&low).len(), 1);
    assert_eq!(
        rows(&low)[0]["shortfall"],
        quantity(Decimal::ONE_HUNDRED - level)
    );

    // The cash session with its variance of one euro.
    let sessions = report(shop, &shop.manager, "management.cash_sessions", &period).await;
    assert_eq!(rows(&sessions).len(), 1);
    assert_eq!(rows(&sessions)[0]["variance"], "1.00");
    let session = &rows(&sessions)[0];
    assert_eq!(
        d(&session["counted"]) - d(&session["expected"]),
        Decimal::ONE
    );
    assert_eq!(session["opening_float"], "50.00");
    assert_eq!(rows(&sessions)[0]["opened_by"], "carla");

    // The day closed: the Z history shows what it signed.
    let response = shop
        .app
        .post_as("/api/v1/closings", &shop.manager, &json!({"kind": "day"}))
        .await;
    assert_eq!(response.status(), 201, "{}", response.text().await.unwrap());
    let closing: Value = response.json().await.unwrap();
    let history = report(shop, &shop.manager, "management.closings", &period).await;
    let r = &rows(&history)[0];
    let totals = &closing["report"]["figures"]["totals"];
    assert_eq!(r["seq"], closing["seq"]);
    assert_eq!(r["sales"], totals["sales"]["count"]);
    assert_eq!(r["total"], money(d(&totals["net"]["total"])));
    assert_eq!(r["sales_total"], money(d(&totals["sales"]["total"])));
    assert_eq!(
        r["corrections_total"],
        money(d(&totals["returns"]["total"]) + d(&totals["voids"]["total"]))
    );
    assert_eq!(r["tax"], money(d(&totals["net"]["tax"])));
    assert_eq!(
        r["cash_variance"],
        money(d(&closing["report"]["figures"]["cash"]["variance"]))
    );
    assert_eq!(r["created_by"], "boss");
}

#[tokio::test]
async fn exports_are_csv_and_pdf_audited_and_hide_what_the_reader_may_not_see() {
    let day = a_day().await;
    let shop = &day.shop;
    let today = berlin(&day.sales[0]["created_at"]).date_naive();
    let period = format!("from={today}&to={today}");
    // A reader of reports who may not see costs.
    let reporter = user_with(
        shop,
        "reporter",
        &[
            "management.reports.read",
            "management.reports.dashboard",
            "management.customers.read",
            "operations.sales.read",
            "management.stock.read",
        ],
        "rita",
        "reporter pass 123",
    )
    .await;

    let listed: Value = shop
        .app
        .get_as("/api/v1/reports", &reporter)
        .await
        .json()
        .await
        .unwrap();
    let margin = listed["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == "management.gross_margin_by_product")
        .unwrap();
    let names: Vec<&str> = margin["columns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["product_id", "product", "quantity", "net"]);
    assert!(listed["next_cursor"].is_null());
    // Each report also needs its own module's read permission: no cash, closings or returns here.
    let ids: Vec<&str> = listed["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 14, "{ids:?}");
    assert!(
        !ids.contains(&"management.cash_sessions")
            && !ids.contains(&"management.returns_and_voids"),
        "{ids:?}"
    );

    let hidden = report(
        shop,
        &reporter,
        "management.gross_margin_by_product",
        &period,
    )
    .await;
    assert!(
        hidden["totals"].get("cost").is_none() && hidden["totals"].get("margin").is_none(),
        "{hidden}"
    );
    let stock = report(shop, &reporter, "management.stock_valuation", "").await;
    assert!(
        rows(&stock)[0].get("value").is_none() && stock["totals"].get("value").is_none(),
        "{stock}"
    );
    for r in rows(&hidden) {
        assert!(r.get("cost").is_none() && r.get("margin").is_none(), "{r}");
    }
    let (kind, csv) = download(
        shop,
        &reporter,
        "management.gross_margin_by_product",
        &format!("{period}&format=csv"),
    )
    .await;
    assert!(kind.starts_with("text/csv"));
    let csv = String::from_utf8(csv).unwrap();
    assert!(
        csv.starts_with("product_id,product,quantity,net\r\n"),
        "{csv}"
    );
    assert!(!csv.contains("cost"));
    let (kind, pdf) = download(
        shop,
        &reporter,
        "management.gross_margin_by_product",
        &format!("{period}&format=pdf"),
    )
    .await;
    assert_eq!(kind, "application/pdf");
    let text = pdf_text(&pdf);
    // (Each CJK character is placed on its own column, which pdftotext reads as spaced.)
    assert!(
        text.contains("Gross margin by product") && text.contains("Tasse Ωmega 漢 字"),
        "{text}"
    );
    let heading = text.lines().find(|l| l.starts_with("Product")).unwrap();
    assert!(
        !heading.contains("Cost") && !heading.contains("Margin"),
        "{text}"
    );
    assert!(
        text.contains("Not shown (needs a permission you do not have): Cost, Margin"),
        "{text}"
    );
    // The manager's PDF has them, the chart and the totals.
    let (_, pdf) = download(
        shop,
        &shop.manager,
        "management.gross_margin_by_product",
        &format!("{period}&format=pdf"),
    )
    .await;
    let text = pdf_text(&pdf);
    assert!(
        text.contains("Margin %") && text.contains("Total") && text.contains("Margin by product"),
        "{text}"
    );

    // CSV: RFC 4180, a customer's name that looks like a formula neutralised.
    let (_, csv) = download(
        shop,
        &reporter,
        "management.top_customers",
        &format!("{period}&format=csv"),
    )
    .await;
    let csv = String::from_utf8(csv).unwrap();
    let line = csv.lines().nth(1).unwrap();
    assert!(line.contains(",'=cmd|' /C calc'!A0 Zoë,"), "{csv}");

    // Every export is audited with its parameters; a JSON view is not.
    let audit: Value = shop
        .app
        .get_as("/api/v1/audit?action=report.export&limit=50", &shop.admin)
        .await
        .json()
        .await
        .unwrap();
    let exports = audit["items"].as_array().unwrap();
    assert_eq!(exports.len(), 4, "{audit}");
    let first = exports
        .iter()
        .find(|e| e["after"]["format"] == "csv" && e["entity_id"] == "management.top_customers")
        .unwrap();
    assert_eq!(first["after"]["parameters"]["from"], today.to_string());
    assert_eq!(first["actor"]["username"], "rita");

    // Every shipped report runs in every format for the manager (all nineteen).
    let listed: Value = shop
        .app
        .get_as("/api/v1/reports", &shop.manager)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(listed["items"].as_array().unwrap().len(), 19, "{listed}");
    for r in listed["items"].as_array().unwrap() {
        let id = r["id"].as_str().unwrap();
        for format in ["json", "csv", "pdf"] {
            let (_, body) = download(shop, &shop.manager, id, &format!("format={format}")).await;
            assert!(!body.is_empty(), "{id} {format}");
            // To look at them: PLUGPOS_REPORT_FILES=/tmp/reports cargo test reports::exports
            if let Ok(dir) = std::env::var("PLUGPOS_REPORT_FILES") {
                std::fs::create_dir_all(&dir).unwrap();
                std::fs::write(format!("{dir}/{id}.{format}"), &body).unwrap();
            }
        }
    }
}

#[tokio::test]
async fn bad_parameters_are_named_and_reports_need_their_permissions() {
    let shop = Shop::open().await;
    let run = |token: String, query: &'static str| {
        let shop = &shop;
        async move {
            shop.app
                .get_as(&format!("/api/v1/reports/{query}"), &token)
                .await
        }
    };
    let refused = problem(
        run(
            shop.manager.clone(),
            "management.sales_by_day?from=2026-13-01&to=2026-01-01&color=red&limit=3&format=csv",
        )
        .await,
        422,
        "validation.failed",
    )
    .await;
    let fields: Vec<&str> = refused["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["color", "limit", "from"], "{refused}");
    let refused = problem(
        run(
            shop.manager.clone(),
            "management.sales_by_day?from=2026-02-01&to=2026-01-01",
        )
        .await,
        422,
        "validation.failed",
    )
    .await;
    assert_eq!(refused["errors"][0]["field"], "to");
    let refused = problem(
        run(
            shop.manager.clone(),
            "management.sales_by_day?from=2020-01-01&to=2026-01-01",
        )
        .await,
        422,
        "validation.failed",
    )
    .await;
    assert_eq!(refused["errors"][0]["field"], "to");
    let refused = problem(run(shop.manager.clone(), "management.sales_by_product?limit=0&category_id=00000000-0000-0000-0000-000000000000&register_id=x").await, 422, "validation.failed").await;
    assert_eq!(refused["errors"].as_array().unwrap().len(), 3, "{refused}");
    problem(
        run(shop.manager.clone(), "management.sales_by_day?format=xlsx").await,
        422,
        "validation.failed",
    )
    .await;
    problem(
        shop.app
            .get_as("/api/v1/reports?cursor=", &shop.manager)
            .await,
        422,
        "validation.failed",
    )
    .await;
    let page: Value = shop
        .app
        .get_as("/api/v1/reports?limit=5", &shop.manager)
        .await
        .json()
        .await
        .unwrap();
    let next = page["next_cursor"].as_str().unwrap().to_owned();
    let rest: Value = shop
        .app
        .get_as(
            &format!("/api/v1/reports?limit=100&cursor={next}"),
            &shop.manager,
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        page["items"].as_array().unwrap().len() + rest["items"].as_array().unwrap().len(),
        19
    );
    assert!(rest["next_cursor"].is_null());
    problem(
        run(shop.manager.clone(), "management.nothing").await,
        404,
        "report.not_found",
    )
    .await;
    // A cashier runs none; a report needing customers needs that too.
    problem(
        run(shop.cashier.clone(), "management.sales_by_day").await,
        403,
        "rbac.forbidden",
    )
    .await;
    let numbers = user_with(
        &shop,
        "numbers",
        &["management.reports.read"],
        "nina",
        "numbers pass 1234",
    )
    .await;
    problem(
        run(numbers.clone(), "management.top_customers").await,
        403,
        "rbac.forbidden",
    )
    .await;
    let listed: Value = shop
        .app
        .get_as("/api/v1/reports", &numbers)
        .await
        .json()
        .await
        .unwrap();
    assert!(
        listed["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["id"] != "management.top_customers")
    );
    // Nothing audited for refusals.
    let audit: Value = shop
        .app
        .get_as("/api/v1/audit?action=report.export", &shop.admin)
        .await
        .json()
        .await
        .unwrap();
    assert!(audit["items"].as_array().unwrap().is_empty());
}

/// The gross of each date of `report` (a sales-by-day report).
fn by_date(report: &Value) -> BTreeMap<String, String> {
    rows(report)
        .iter()
        .filter(|r| r["sales"] != 0)
        .map(|r| {
            (
                r["date"].as_str().unwrap().to_owned(),
                r["gross"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[tokio::test]
async fn rollups_equal_the_lines_and_a_broken_day_is_found_and_rebuilt() {
    use plugpos::plugs::operations::sales::rollup;
    let day = a_day().await;
    let shop = &day.shop;
    let pool = &shop.app.pool;
    let today = berlin(&day.sales[0]["created_at"]).date_naive();
    let period = format!("from={today}&to={today}");
    let gross: Decimal = day.sales.iter().map(|s| d(&s["totals"]["total"])).sum();
    // A report drains the queue: the rollups then equal the lines.
    report(shop, &shop.manager, "management.sales_by_day", &period).await;
    assert!(rollup::check(pool, today, today).await.unwrap().is_empty());
    // Tampered behind the server's back: found, then rebuilt from the lines.
    sqlx::query("UPDATE report_sales_hourly SET gross = gross + 1")
        .execute(pool)
        .await
        .unwrap();
    sqlx::query("UPDATE report_products_monthly SET quantity = quantity + 1")
        .execute(pool)
        .await
        .unwrap();
    let found = rollup::check(pool, today, today).await.unwrap();
    assert!(
        found.iter().any(|(_, what)| what.contains("hour")),
        "{found:?}"
    );
    assert!(
        found.iter().any(|(_, what)| what.contains("month")),
        "{found:?}"
    );
    let dates: Vec<_> = found.iter().map(|(d, _)| *d).collect();
    rollup::repair(pool, &dates).await.unwrap();
    assert!(rollup::check(pool, today, today).await.unwrap().is_empty());
    let by_day = report(shop, &shop.manager, "management.sales_by_day", &period).await;
    assert_eq!(rows(&by_day)[0]["gross"], money(gross));
    // Without their state row, the rollups are built again from every sale, once.
    sqlx::query("DELETE FROM report_rollup_state")
        .execute(pool)
        .await
        .unwrap();
    let again = report(shop, &shop.manager, "management.sales_by_day", &period).await;
    assert_eq!(rows(&again)[0]["gross"], money(gross));

    // The day start moves to 23:59: the morning's sales belong to the day before.
    let before = today.pred_opt().unwrap();
    let both = format!("from={before}&to={today}");
    assert_eq!(
        by_date(&report(shop, &shop.manager, "management.sales_by_day", &both).await),
        BTreeMap::from([(today.to_string(), money(gross))])
    );
    shop.set("closing.day_starts_at", json!("23:59")).await;
    assert_eq!(
        by_date(&report(shop, &shop.manager, "management.sales_by_day", &both).await),
        BTreeMap::from([(before.to_string(), money(gross))])
    );
    let built: (String,) = sqlx::query_as("SELECT day_start FROM report_rollup_state")
        .fetch_one(pool)
        .await
        .unwrap();
    assert_eq!(built.0, "23:59");
    shop.set("closing.day_starts_at", json!("00:00")).await;
    assert!(rollup::check(pool, before, today).await.unwrap().is_empty());

    // Five weeks later, another sale: a period with a whole month (from the monthly rollup) and
    // days around it (from the daily one) adds up to both days' lines.
    shop.app.clock.advance(chrono::Duration::days(35));
    let manager = shop.app.token("boss", "manager pass 123").await;
    let cashier = shop.app.token("carla", "cashier pass 123").await;
    let response = shop
        .app
        .post_as(
            "/api/v1/cash-sessions",
            &cashier,
            &json!({"register_id": shop.register, "opening_float": "10.00"}),
        )
        .await;
    assert_eq!(response.status(), 201);
    let later = keyed(shop, &cashier, "/api/v1/sales", "later", &json!({"register_id": shop.register,
        "lines": [{"product_id": day.pen, "quantity": "4"}], "payments": [{"method": "card", "amount": "10.00"}]})).await;
    let later_day = berlin(&later["created_at"]).date_naive();
    let pens: Decimal = day
        .sales
        .iter()
        .flat_map(|s| s["lines"].as_array().unwrap())
        .filter(|l| l["product_id"] == day.pen.as_str())
        .map(|l| d(&l["quantity"]))
        .sum::<Decimal>()
        + Decimal::from(4);
    let first_of_month = today.with_day(1).unwrap();
    for from in [first_of_month, today, today.pred_opt().unwrap()] {
        let products = report(
            shop,
            &manager,
            "management.sales_by_product",
            &format!("from={from}&to={later_day}"),
        )
        .await;
        assert_eq!(
            row(&products, "product_id", &day.pen)["quantity"],
            quantity(pens),
            "from {from}"
        );
    }
    // Only the later day: the earlier month is left out.
    let products = report(
        shop,
        &manager,
        "management.sales_by_product",
        &format!("from={later_day}&to={later_day}"),
    )
    .await;
    assert_eq!(rows(&products).len(), 1);
    assert_eq!(rows(&products)[0]["quantity"], "4");
    let months = report(
        shop,
        &manager,
        "management.sales_by_day",
        &format!("from={first_of_month}&to={later_day}"),
    )
    .await;
    assert_eq!(
        by_date(&months),
        BTreeMap::from([
            (today.to_string(), money(gross)),
            (later_day.to_string(), "10.00".to_owned())
        ])
    );
}

#[tokio::test]
async fn the_dashboard_pushes_todays_figures_within_two_seconds_of_a_sale() {
    use crate::live::{connect, next, send};
    let shop = Shop::open().await;
    let (pen, _) = shop.pen_and_bread().await;
    shop.open_session("50.00").await;
    let before: Value = shop
        .app
        .get_as("/api/v1/dashboard", &shop.manager)
        .await
        .json()
        .await
        .unwrap();
    let kpi = |board: &Value, id: &str| {
        board["kpis"]
            .as_array()
            .unwrap()
            .iter()
            .find(|k| k["id"] == id)
            .cloned()
    };
    assert_eq!(kpi(&before, "sales.today").unwrap()["value"], "0.00");
    assert_eq!(kpi(&before, "cash.open_sessions").unwrap()["value"], 1);
    assert!(kpi(&before, "sales.gross_margin_percent").is_some());
    // Without the cost permission, no margin.
    let watcher = user_with(
        &shop,
        "watcher",
        &["management.reports.dashboard"],
        "walt",
        "watcher pass 1234",
    )
    .await;
    let theirs: Value = shop
        .app
        .get_as("/api/v1/dashboard", &watcher)
        .await
        .json()
        .await
        .unwrap();
    assert!(kpi(&theirs, "sales.gross_margin_percent").is_none());
    assert!(kpi(&theirs, "sales.today").is_some());
    problem(
        shop.app.get_as("/api/v1/dashboard", &shop.cashier).await,
        403,
        "rbac.forbidden",
    )
    .await;

    let mut manager = connect(&shop, &shop.manager).await;
    let mut other = connect(&shop, &watcher).await;
    for socket in [&mut manager, &mut other] {
        assert_eq!(next(socket).await["type"], "welcome");
        send(
            socket,
            json!({"type": "subscribe", "topics": ["dashboard"]}),
        )
        .await;
        assert_eq!(next(socket).await["type"], "subscribed");
    }
    let sold = std::time::Instant::now();
    let response = shop
        .sell(&shop.cashier, "k1", &shop.cash_sale(&pen, "2", "5.00"))
        .await;
    assert_eq!(response.status(), 201);
    // A reader of the dashboard right after the sale computes the new values first: the push
    // must still come.
    let read: Value = shop
        .app
        .get_as("/api/v1/dashboard", &shop.manager)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(kpi(&read, "sales.today").unwrap()["value"], "5.00");
    let mut seen: HashMap<String, Value> = HashMap::new();
    while !seen.contains_key("sales.today") || !seen.contains_key("sales.gross_margin_percent") {
        let event = next(&mut manager).await;
        if event["type"] != "event" {
            continue;
        }
        assert_eq!(
            (event["topic"].as_str(), event["event"].as_str()),
            (Some("dashboard"), Some("dashboard.updated"))
        );
        for k in event["data"]["kpis"].as_array().unwrap() {
            seen.insert(k["id"].as_str().unwrap().to_owned(), k["value"].clone());
        }
    }
    assert!(
        sold.elapsed() < std::time::Duration::from_secs(2),
        "{:?}",
        sold.elapsed()
    );
    assert_eq!(seen["sales.today"], "5.00");
    assert_eq!(seen["sales.count_today"], 1);
    assert_eq!(seen["sales.average_basket"], "5.00");
    // The pen: 2.50 gross, 2.10 net (19 %), cost 0.50: (4.20 - 1.00) / 4.20 = 76.2 %.
    assert_eq!(seen["sales.gross_margin_percent"], "76.2");
    assert_eq!(
        seen["sales.top_products_today"][0]["product_id"],
        pen.as_str()
    );
    // The other watcher gets the figures, never the margin.
    // (Everything that comes within 2.5 s, not just the first event.)
    let mut theirs: HashMap<String, Value> = HashMap::new();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_millis(2500);
    while let Ok(Some(Ok(message))) =
        tokio::time::timeout_at(deadline, futures_util::StreamExt::next(&mut other)).await
    {
        let tokio_tungstenite::tungstenite::Message::Text(text) = message else {
            continue;
        };
        let event: Value = serde_json::from_str(&text).unwrap();
        if event["type"] == "event" {
            for k in event["data"]["kpis"].as_array().unwrap() {
                theirs.insert(k["id"].as_str().unwrap().to_owned(), k["value"].clone());
            }
        }
    }
    assert_eq!(theirs["sales.today"], "5.00");
    assert!(!theirs.contains_key("sales.gross_margin_percent"));
    // The dashboard's answer agrees, with when each was computed.
    let after: Value = shop
        .app
        .get_as("/api/v1/dashboard", &shop.manager)
        .await
        .json()
        .await
        .unwrap();
    let today = kpi(&after, "sales.today").unwrap();
    assert_eq!(today["value"], "5.00");
    assert!(today["computed_at"].is_string());
    let series = kpi(&after, "sales.per_hour").unwrap();
    assert_eq!(series["value"].as_array().unwrap().len(), 24);
}
