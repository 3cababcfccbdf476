//! The change feed: a till's snapshot, the changes after it, in an order no late commit can
//! slip under, with what the till's user may see, and an outbox pruned behind the tills.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::Duration;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};

use crate::devices::{Till, second_register, till};
use crate::helpers::problem;
use crate::shop::Shop;

/// A till's offline copy: each entity by (entity, key).
type Copy = BTreeMap<(String, String), Value>;

/// Pulls pages of `limit` from `cursor` into `copy` until the feed says the till is up to date
/// (nothing more, nothing held back behind a running transaction: the test cluster's other
/// databases run theirs too); returns the cursor to go on from.
async fn pull(till: &Till<'_>, copy: &mut Copy, cursor: Option<String>, limit: u32) -> String {
    pull_until(till, copy, cursor, limit, true).await
}

/// Like [`pull`]; `settle` false returns as soon as nothing more is served at once (a test's own
/// transaction may be holding the rest back).
async fn pull_until(
    till: &Till<'_>,
    copy: &mut Copy,
    mut cursor: Option<String>,
    limit: u32,
    settle: bool,
) -> String {
    loop {
        let path = match &cursor {
            Some(c) => format!("/api/v1/sync/changes?limit={limit}&cursor={c}"),
            None => format!("/api/v1/sync/changes?limit={limit}"),
        };
        let response = till.get(&path).await;
        assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
        let page: Value = response.json().await.unwrap();
        for item in page["items"].as_array().unwrap() {
            let key = (
                item["entity"].as_str().unwrap().to_owned(),
                item["key"].as_str().unwrap().to_owned(),
            );
            match item["op"].as_str().unwrap() {
                "upsert" => {
                    copy.insert(key, item["data"].clone());
                }
                "delete" => {
                    copy.remove(&key);
                }
                other => panic!("op {other}"),
            }
        }
        let next = page["next_cursor"].as_str().unwrap().to_owned();
        cursor = Some(next.clone());
        if page["more"] == false && (!settle || page["held_back"] == false) {
            return next;
        }
        if page["more"] == false {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    }
}

/// What the server holds now, as a fresh snapshot gives it to this till's user.
async fn snapshot(till: &Till<'_>) -> Copy {
    let mut copy = Copy::new();
    pull(till, &mut copy, None, 1000).await;
    copy
}

fn of<'a>(copy: &'a Copy, entity: &str, key: &str) -> Option<&'a Value> {
    copy.get(&(entity.to_owned(), key.to_owned()))
}

#[tokio::test]
async fn a_till_takes_a_snapshot_then_follows_the_changes_with_what_its_user_may_see() {
    let shop = Shop::open().await;
    let app = &shop.app;
    let tea = shop.product("TEA", "3.00", &shop.standard, false).await;
    let cake = shop.product("CAKE", "2.50", &shop.reduced, false).await;
    let patched = app
        .patch_as(
            &format!("/api/v1/products/{tea}"),
            &shop.manager,
            &json!({"cost_price": "1.20", "barcodes": ["4006381333931"], "version": 1}),
        )
        .await;
    assert_eq!(patched.status(), 200, "{}", patched.text().await.unwrap());
    let customer: Value = shop
        .app
        .client
        .post(app.url("/api/v1/customers"))
        .bearer_auth(&shop.cashier)
        .header("Idempotency-Key", "c-1")
        .json(
            &json!({"name": "Ada Lovelace", "email": "ada@example.com", "customer_group": "staff"}),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let customer = customer["id"].as_str().unwrap().to_owned();
    let pin = app
        .client
        .put(app.url("/api/v1/auth/pin"))
        .bearer_auth(&shop.cashier)
        .json(&json!({"current_password": "cashier pass 123", "pin": "4821"}))
        .send()
        .await
        .unwrap();
    assert_eq!(pin.status(), 204, "{}", pin.text().await.unwrap());
    let manager_pin = app
        .client
        .put(app.url("/api/v1/auth/pin"))
        .bearer_auth(&shop.manager)
        .json(&json!({"current_password": "manager pass 123", "pin": "9135"}))
        .send()
        .await
        .unwrap();
    assert_eq!(manager_pin.status(), 204);

    // The feed is for enrolled tills.
    problem(
        app.get_as("/api/v1/sync/changes", &shop.cashier).await,
        401,
        "device.required",
    )
    .await;
    let carla = till(&shop, &shop.register, "carla", "cashier pass 123").await;
    let mut copy = Copy::new();
    // Small pages: the snapshot spans several.
    let cursor = pull(&carla, &mut copy, None, 3).await;

    let product = of(&copy, "product", &tea).expect("the product");
    assert_eq!(product["price"], "3.00");
    assert_eq!(product["sku"], "TEA");
    assert_eq!(product["barcodes"], json!(["4006381333931"]));
    assert!(
        product.get("cost_price").is_none(),
        "a cashier sees no cost: {product}"
    );
    assert!(of(&copy, "tax_class", &shop.standard).is_some());
    assert!(of(&copy, "register", &shop.register).is_some());
    assert_eq!(
        of(&copy, "customer", &customer).unwrap()["email"],
        "ada@example.com"
    );
    assert_eq!(of(&copy, "business", "1").unwrap()["currency"], "EUR");
    assert_eq!(
        of(&copy, "setting", "sync.outbox_retention_days").unwrap()["value"],
        30
    );
    let users: Vec<&Value> = copy
        .iter()
        .filter(|((e, _), _)| e == "user")
        .map(|(_, v)| v)
        .collect();
    let names: Vec<&str> = users
        .iter()
        .map(|u| u["username"].as_str().unwrap())
        .collect();
    assert!(
        names.contains(&"carla") && names.contains(&"boss"),
        "{names:?}"
    );
    let boss_user = users.iter().find(|u| u["username"] == "boss").unwrap();
    assert!(
        boss_user["offline_pin"].is_null(),
        "a PIN that approves online never leaves the server: {boss_user}"
    );
    let carla_user = users.iter().find(|u| u["username"] == "carla").unwrap();
    let verifier = carla_user["offline_pin"].as_str().unwrap();
    assert!(verifier.starts_with("$argon2id$"), "{verifier}");
    let (server_pin, password): (String, String) = sqlx::query_as(
        "SELECT p.pin_hash, u.password_hash FROM user_pins p JOIN users u ON u.id = p.user_id WHERE u.username = 'carla'",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_ne!(
        verifier, server_pin,
        "the till's verifier is not the server's hash"
    );
    use argon2::PasswordVerifier;
    let parsed = argon2::PasswordHash::new(verifier).unwrap();
    assert!(
        argon2::Argon2::default()
            .verify_password(b"4821", &parsed)
            .is_ok()
    );
    assert!(
        argon2::Argon2::default()
            .verify_password(b"4822", &parsed)
            .is_err()
    );
    let everything = serde_json::to_string(&copy.values().collect::<Vec<_>>()).unwrap();
    assert!(!everything.contains(&password) && !everything.contains(&server_pin));
    assert!(
        !everything.contains("password"),
        "no password field of any kind"
    );
    assert_eq!(
        copy,
        snapshot(&carla).await,
        "small pages add up to one snapshot"
    );

    // Changes: a price, an archived product, a deleted customer, a disabled user.
    let repriced = app
        .patch_as(
            &format!("/api/v1/products/{tea}"),
            &shop.manager,
            &json!({"price": "3.40", "version": 2}),
        )
        .await;
    assert_eq!(repriced.status(), 200, "{}", repriced.text().await.unwrap());
    let gone = app
        .client
        .delete(app.url(&format!("/api/v1/products/{cake}")))
        .bearer_auth(&shop.manager)
        .send()
        .await
        .unwrap();
    assert!(gone.status().is_success(), "{}", gone.text().await.unwrap());
    let deleted = app
        .post_as(
            &format!("/api/v1/customers/{customer}/delete"),
            &shop.cashier,
            &json!({"version": 1}),
        )
        .await;
    assert!(
        deleted.status().is_success(),
        "{}",
        deleted.text().await.unwrap()
    );
    let boss: String = sqlx::query_scalar("SELECT id::text FROM users WHERE username = 'boss'")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    let disabled = app
        .post_as(
            &format!("/api/v1/users/{boss}/disable"),
            &shop.admin,
            &json!({}),
        )
        .await;
    assert!(
        disabled.status().is_success(),
        "{}",
        disabled.text().await.unwrap()
    );

    let cursor = pull(&carla, &mut copy, Some(cursor), 500).await;
    assert_eq!(of(&copy, "product", &tea).unwrap()["price"], "3.40");
    assert!(
        of(&copy, "product", &cake).is_none(),
        "a deleted product is a tombstone"
    );
    assert!(
        of(&copy, "customer", &customer).is_none(),
        "so is a deleted customer"
    );
    assert!(of(&copy, "user", &boss).is_none(), "and a disabled user");
    assert_eq!(copy, snapshot(&carla).await, "the copy is the server's");

    // A manager on the same till sees the cost price; their cursors are theirs.
    let login = crate::devices::login_on(
        &shop,
        &carla.device_token,
        "admin",
        crate::helpers::ADMIN_PASSWORD,
    )
    .await;
    let admin_till = Till {
        shop: &shop,
        device_token: carla.device_token.clone(),
        access: login.json::<Value>().await.unwrap()["access_token"]
            .as_str()
            .unwrap()
            .to_owned(),
    };
    let admin_copy = snapshot(&admin_till).await;
    assert_eq!(
        of(&admin_copy, "product", &tea).unwrap()["cost_price"],
        "1.2000"
    );
    let under_admin = admin_till
        .get(&format!("/api/v1/sync/changes?cursor={cursor}"))
        .await;
    problem(under_admin, 410, "sync.cursor_expired").await;
    problem(
        carla.get("/api/v1/sync/changes?cursor=c.1.x.y").await,
        422,
        "sync.cursor_invalid",
    )
    .await;
    problem(
        carla.get("/api/v1/sync/changes?limit=0").await,
        422,
        "validation.failed",
    )
    .await;
}

/// A new access token for the till's user (the clock moved past the old one's life).
async fn relogin(till: &Till<'_>) -> String {
    let login =
        crate::devices::login_on(till.shop, &till.device_token, "carla", "cashier pass 123").await;
    assert_eq!(login.status(), 200);
    login.json::<Value>().await.unwrap()["access_token"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// Updates a product's name directly in the database inside `tx`.
async fn rename(tx: &mut sqlx::PgConnection, product: &str, name: &str) {
    sqlx::query("UPDATE products SET name = $2, version = version + 1 WHERE id = $1::uuid")
        .bind(product)
        .bind(name)
        .execute(tx)
        .await
        .unwrap();
}

#[tokio::test]
async fn a_change_committed_late_below_a_position_already_served_still_reaches_the_till() {
    let shop = Shop::open().await;
    let app = &shop.app;
    let a = shop.product("A", "1.00", &shop.standard, false).await;
    let b = shop.product("B", "1.00", &shop.standard, false).await;
    let carla = till(&shop, &shop.register, "carla", "cashier pass 123").await;
    let mut copy = Copy::new();
    let mut cursor = pull(&carla, &mut copy, None, 500).await;

    // 1. T1 writes first (the lower outbox id), T2 writes after it and commits first.
    let mut t1 = app.pool.begin().await.unwrap();
    rename(&mut t1, &a, "A by T1").await;
    let mut t2 = app.pool.begin().await.unwrap();
    rename(&mut t2, &b, "B by T2").await;
    let ids: Vec<i64> = sqlx::query_scalar("SELECT id FROM sync_outbox ORDER BY id")
        .fetch_all(&mut *t2)
        .await
        .unwrap();
    t2.commit().await.unwrap();
    let seen_t2: i64 = ids.last().copied().unwrap();
    let visible: Vec<i64> = sqlx::query_scalar("SELECT id FROM sync_outbox WHERE id >= $1")
        .bind(seen_t2)
        .fetch_all(&app.pool)
        .await
        .unwrap();
    assert_eq!(
        visible,
        vec![seen_t2],
        "T2's change is committed and visible; T1's is not"
    );
    cursor = pull_until(&carla, &mut copy, Some(cursor), 500, false).await;
    t1.commit().await.unwrap();
    cursor = pull(&carla, &mut copy, Some(cursor), 500).await;
    assert_eq!(
        of(&copy, "product", &a).unwrap()["name"],
        "A by T1",
        "T1 was not skipped"
    );
    assert_eq!(of(&copy, "product", &b).unwrap()["name"], "B by T2");

    // 2. T3 takes its transaction id first but writes last; T4 writes and commits in between.
    let mut t3 = app.pool.begin().await.unwrap();
    sqlx::query("SELECT pg_current_xact_id()")
        .execute(&mut *t3)
        .await
        .unwrap();
    let mut t4 = app.pool.begin().await.unwrap();
    rename(&mut t4, &a, "A by T4").await;
    t4.commit().await.unwrap();
    cursor = pull_until(&carla, &mut copy, Some(cursor), 500, false).await;
    rename(&mut t3, &b, "B by T3").await;
    t3.commit().await.unwrap();
    pull(&carla, &mut copy, Some(cursor), 500).await;
    assert_eq!(of(&copy, "product", &a).unwrap()["name"], "A by T4");
    assert_eq!(
        of(&copy, "product", &b).unwrap()["name"],
        "B by T3",
        "T3 was not skipped"
    );
    assert_eq!(copy, snapshot(&carla).await);
}

#[tokio::test]
async fn eight_writers_and_four_tills_end_with_the_servers_copy() {
    let shop = Arc::new(Shop::open().await);
    let mut products = Vec::new();
    for i in 0..20 {
        products.push(
            shop.product(&format!("P{i}"), "1.00", &shop.standard, false)
                .await,
        );
    }
    let registers = vec![
        shop.register.clone(),
        second_register(&shop).await,
        second_register(&shop).await,
        second_register(&shop).await,
    ];
    let tax_class = shop.standard.clone();
    let writing = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let writers: Vec<_> = (0..8u64)
        .map(|w| {
            let pool = shop.app.pool.clone();
            let products = products.clone();
            let tax_class = tax_class.clone();
            tokio::spawn(async move {
                let mut rng = rand::rngs::StdRng::seed_from_u64(w);
                for n in 0..40 {
                    let mut tx = pool.begin().await.unwrap();
                    let product = &products[rng.random_range(0..products.len())];
                    match rng.random_range(0..10) {
                        0..=5 => rename(&mut tx, product, &format!("w{w} n{n}")).await,
                        6 | 7 => {
                            sqlx::query(
                                "INSERT INTO products (id, sku, name, search_text, price, tax_class_id) \
                                 VALUES (gen_random_uuid(), $1, $1, lower($1), 2.50, $2::uuid)",
                            )
                            .bind(format!("N{w}-{n}"))
                            .bind(&tax_class)
                            .execute(&mut *tx)
                            .await
                            .unwrap();
                        }
                        _ => {
                            sqlx::query(
                                "DELETE FROM products WHERE id = (SELECT id FROM products WHERE sku LIKE 'N%' \
                                 ORDER BY random() LIMIT 1 FOR UPDATE SKIP LOCKED)",
                            )
                            .execute(&mut *tx)
                            .await
                            .unwrap();
                        }
                    }
                    // Overlap: hold the transaction a while, then commit (or, now and then, roll back).
                    tokio::time::sleep(std::time::Duration::from_millis(rng.random_range(0..15))).await;
                    if rng.random_range(0..10) == 0 {
                        tx.rollback().await.unwrap();
                    } else {
                        tx.commit().await.unwrap();
                    }
                }
            })
        })
        .collect();
    let users = [("carla", "cashier pass 123")];
    let mut tills = Vec::new();
    for register in &registers {
        let (user, password) = users[0];
        let t = till(&shop, register, user, password).await;
        tills.push((t.device_token, t.access));
    }
    let pullers: Vec<_> = tills
        .into_iter()
        .enumerate()
        .map(|(i, (device_token, access))| {
            let shop = shop.clone();
            let writing = writing.clone();
            tokio::spawn(async move {
                let till = Till {
                    shop: &shop,
                    device_token,
                    access,
                };
                let mut rng = rand::rngs::StdRng::seed_from_u64(100 + i as u64);
                let mut copy = Copy::new();
                let limit = rng.random_range(5..50);
                let mut cursor = pull_until(&till, &mut copy, None, limit, false).await;
                while writing.load(std::sync::atomic::Ordering::Acquire) {
                    let limit = rng.random_range(5..50);
                    cursor = pull_until(&till, &mut copy, Some(cursor), limit, false).await;
                    tokio::time::sleep(std::time::Duration::from_millis(rng.random_range(0..20)))
                        .await;
                }
                pull(&till, &mut copy, Some(cursor), rng.random_range(5..50)).await;
                let server = snapshot(&till).await;
                (copy, server)
            })
        })
        .collect();
    for writer in writers {
        writer.await.unwrap();
    }
    writing.store(false, std::sync::atomic::Ordering::Release);
    let names: BTreeMap<String, String> = sqlx::query_as("SELECT id::text, name FROM products")
        .fetch_all(&shop.app.pool)
        .await
        .unwrap()
        .into_iter()
        .collect();
    for (i, puller) in pullers.into_iter().enumerate() {
        let (copy, server) = puller.await.unwrap();
        let held: BTreeMap<String, String> = copy
            .iter()
            .filter(|((e, _), _)| e == "product")
            .map(|((_, k), v)| (k.clone(), v["name"].as_str().unwrap().to_owned()))
            .collect();
        assert_eq!(
            held, names,
            "till {i} holds every product as the database does"
        );
        assert_eq!(copy, server, "till {i}'s copy is a fresh snapshot's");
    }
}

#[tokio::test]
async fn the_outbox_is_pruned_behind_the_tills_and_a_till_away_too_long_takes_a_new_snapshot() {
    let shop = Shop::open().await;
    let app = &shop.app;
    let tea = shop.product("TEA", "3.00", &shop.standard, false).await;
    let mut carla = till(&shop, &shop.register, "carla", "cashier pass 123").await;
    let mut copy = Copy::new();
    let cursor = pull(&carla, &mut copy, None, 500).await;
    // Confirmed: the till sends the cursor it holds.
    let cursor = pull(&carla, &mut copy, Some(cursor), 500).await;
    let before: i64 = sqlx::query_scalar("SELECT count(*) FROM sync_outbox")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert!(before > 0);
    let mut tx = app.pool.begin().await.unwrap();
    rename(&mut tx, &tea, "Green tea").await;
    tx.commit().await.unwrap();

    let prune = || async {
        sqlx::query("INSERT INTO jobs (id, kind, max_attempts, run_at) VALUES (gen_random_uuid(), 'maintenance.prune', 1, $1)")
            .bind(app.clock.now())
            .execute(&app.pool)
            .await
            .unwrap();
        let done = app.run_jobs().await;
        let job = done.iter().find(|j| j.kind == "maintenance.prune").unwrap();
        assert_eq!(job.status, "succeeded", "{done:?}");
        job.result.as_ref().unwrap()["sync_outbox_deleted"]
            .as_i64()
            .unwrap()
    };
    // Behind the till (and an hour old) goes; what it has not read stays.
    app.clock.advance(Duration::hours(2));
    assert_eq!(prune().await, before);
    carla.access = relogin(&carla).await;
    let cursor = pull(&carla, &mut copy, Some(cursor), 500).await;
    assert_eq!(of(&copy, "product", &tea).unwrap()["name"], "Green tea");

    // A till away longer than the retention must start again.
    let mut tx = app.pool.begin().await.unwrap();
    rename(&mut tx, &tea, "Black tea").await;
    tx.commit().await.unwrap();
    app.clock.advance(Duration::days(31));
    assert!(prune().await >= 1);
    carla.access = relogin(&carla).await;
    let expired = carla
        .get(&format!("/api/v1/sync/changes?cursor={cursor}"))
        .await;
    problem(expired, 410, "sync.cursor_expired").await;
    let fresh_cursor = {
        let mut copy = Copy::new();
        let cursor = pull(&carla, &mut copy, None, 500).await;
        assert_eq!(of(&copy, "product", &tea).unwrap()["name"], "Black tea");
        cursor
    };

    // A restore starts a new timeline: every cursor served before asks for a new snapshot.
    let mut conn = app.pool.acquire().await.unwrap();
    plugpos::core::sync::new_epoch(&mut conn).await.unwrap();
    let before_restore = carla
        .get(&format!("/api/v1/sync/changes?cursor={fresh_cursor}"))
        .await;
    problem(before_restore, 410, "sync.cursor_expired").await;
    let positions: Option<String> =
        sqlx::query_scalar("SELECT sync_xid::text FROM device_activity")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(
        positions, None,
        "no till holds back the pruning of the new timeline"
    );
}
