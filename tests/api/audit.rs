//! The audit log: every write leaves its record, the chain stays linear under concurrent
//! writers, the database refuses changes, and tampering is found with the first bad record.

use plugpos::core::audit::encoding::{AuditRecord, chain_hash};
use plugpos::core::audit::{Actor, AuditedTx, Change, chain, verify};
use serde_json::{Value, json};

use crate::helpers::{TestApp, create_database, database_url, plugpos, pool, problem};

const ADMIN_PASSWORD: &str = "correct horse battery";

async fn actions(app: &TestApp) -> Vec<(i64, String, Option<String>)> {
    chain::chain_pending(&app.pool).await.unwrap();
    sqlx::query_as(
        "SELECT c.seq, r.action, r.actor_username FROM audit_chain c JOIN audit_records r ON r.id = c.record_id ORDER BY c.seq",
    )
    .fetch_all(&app.pool)
    .await
    .unwrap()
}

#[tokio::test]
async fn every_write_leaves_exactly_its_audit_record() {
    let app = TestApp::spawn_initialized_with(|_| {}).await;
    let setup: Vec<String> = actions(&app).await.into_iter().map(|(_, a, _)| a).collect();
    assert_eq!(
        setup,
        [
            "business.create",
            "settings.create",
            "branch.create",
            "location.create",
            "register.create",
            "role.create",
            "role.create",
            "role.create",
            "role.create",
            "role.create",
            "user.create",
        ]
    );
    let admin = app.token("admin", ADMIN_PASSWORD).await;
    let created: Value = app
        .client
        .post(app.url("/api/v1/users"))
        .bearer_auth(&admin)
        .header("x-request-id", "audit-test-1")
        .json(&json!({"username": "kim", "password": "first day pass 1", "roles": ["cashier"], "email": "kim@example.org"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = created["id"].as_str().unwrap().to_owned();
    let patch = app
        .client
        .patch(app.url(&format!("/api/v1/users/{id}")))
        .bearer_auth(&admin)
        .json(&json!({"display_name": "Kim K.", "roles": ["manager"]}));
    assert_eq!(patch.send().await.unwrap().status(), 200);
    for step in ["disable", "enable", "unlock"] {
        assert!(
            app.post_as(&format!("/api/v1/users/{id}/{step}"), &admin, &json!({}))
                .await
                .status()
                .is_success()
        );
    }
    let reset = json!({"password": "reset by admin 1"});
    assert_eq!(
        app.post_as(
            &format!("/api/v1/users/{id}/reset-password"),
            &admin,
            &reset
        )
        .await
        .status(),
        204
    );
    let role: Value = app
        .post_as(
            "/api/v1/roles",
            &admin,
            &json!({"name": "shift_lead", "permissions": ["administration.users.read"]}),
        )
        .await
        .json()
        .await
        .unwrap();
    let url = format!("/api/v1/roles/{}/permissions", role["id"].as_str().unwrap());
    let response = app
        .client
        .put(app.url(&url))
        .bearer_auth(&admin)
        .json(&json!({"permissions": []}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let kim = app.token("kim", "reset by admin 1").await;
    let change =
        json!({"current_password": "reset by admin 1", "new_password": "kims own secret 9"});
    assert_eq!(
        app.post_as("/api/v1/auth/password", &kim, &change)
            .await
            .status(),
        204
    );
    // Reads, logins and refused writes leave no audit record.
    app.get_as("/api/v1/users", &admin).await;
    problem(
        app.post_as("/api/v1/roles", &admin, &json!({"name": "shift_lead"}))
            .await,
        409,
        "role.name_taken",
    )
    .await;

    let after: Vec<(i64, String, Option<String>)> =
        actions(&app).await.into_iter().skip(setup.len()).collect();
    let names: Vec<&str> = after.iter().map(|(_, a, _)| a.as_str()).collect();
    assert_eq!(
        names,
        [
            "user.create",
            "user.update",
            "user.disable",
            "user.enable",
            "user.unlock",
            "user.reset_password",
            "role.create",
            "role.set_permissions",
            "user.change_password",
        ]
    );
    assert_eq!(after[0].2.as_deref(), Some("admin"));
    assert_eq!(after.last().unwrap().2.as_deref(), Some("kim"));

    let (role, request_id, before, after_json): (Option<String>, Option<String>, Option<String>, Option<String>) = sqlx::query_as(
        "SELECT actor_role, request_id, before_json, after_json FROM audit_records WHERE action = 'user.update'",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(role.as_deref(), Some("super_admin"));
    assert!(request_id.is_some());
    let before: Value = serde_json::from_str(&before.unwrap()).unwrap();
    let after_json: Value = serde_json::from_str(&after_json.unwrap()).unwrap();
    assert_eq!(
        (
            before["display_name"].as_str(),
            after_json["display_name"].as_str()
        ),
        (Some("kim"), Some("Kim K."))
    );
    assert_eq!(
        (before["roles"].clone(), after_json["roles"].clone()),
        (json!(["cashier"]), json!(["manager"]))
    );
    assert_eq!(
        after_json["email_set"], true,
        "contact details are not copied into the audit log"
    );
    let create_request: Option<String> = sqlx::query_scalar("SELECT request_id FROM audit_records WHERE action = 'user.create' AND actor_username = 'admin'")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(create_request.as_deref(), Some("audit-test-1"));

    let report: Value = app
        .get_as("/api/v1/audit/verify", &admin)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(report["ok"], true, "{report}");
    assert_eq!(report["verified"], 20);
    assert_eq!(report["head"]["seq"], 20);
}

#[tokio::test]
async fn a_write_without_an_audit_record_cannot_commit() {
    let pool = pool(&create_database(true).await);
    let mut tx = AuditedTx::begin(&pool, Actor::system("test"), chrono::Utc::now())
        .await
        .unwrap();
    sqlx::query("INSERT INTO branches (id, name) VALUES ($1, 'Sneaky')")
        .bind(uuid::Uuid::now_v7())
        .execute(&mut *tx)
        .await
        .unwrap();
    let err = tx.commit().await.unwrap_err().to_string();
    assert!(err.contains("at least one audit record"), "{err}");
    let branches: i64 = sqlx::query_scalar("SELECT count(*) FROM branches")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(branches, 0, "the write was rolled back");
}

#[tokio::test]
async fn the_database_refuses_to_change_audit_rows() {
    let app = TestApp::spawn_initialized_with(|_| {}).await;
    chain::chain_pending(&app.pool).await.unwrap();
    for statement in [
        "UPDATE audit_records SET action = 'user.delete' WHERE action = 'user.create'",
        "DELETE FROM audit_records",
        "TRUNCATE audit_records CASCADE",
        "UPDATE audit_chain SET hash = prev_hash",
        "DELETE FROM audit_chain WHERE seq = 1",
        "TRUNCATE audit_chain",
    ] {
        let err = sqlx::raw_sql(statement)
            .execute(&app.pool)
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("append-only"), "{statement}: {err}");
    }
}

/// 16 writers at once, 150 audited writes each, with rollbacks mixed in: one linear chain.
#[tokio::test]
async fn concurrent_writers_make_one_chain_without_gaps() {
    let pool = pool(&create_database(true).await);
    let mut writers = Vec::new();
    for writer in 0..16 {
        let pool = pool.clone();
        writers.push(tokio::spawn(async move {
            for i in 0..150 {
                let mut tx = AuditedTx::begin(&pool, Actor::system("load"), chrono::Utc::now())
                    .await
                    .unwrap();
                tx.record(
                    Change::new("test.load", "thing", format!("{writer}-{i}"), "thing.touch")
                        .after(json!({"i": i})),
                )
                .await
                .unwrap();
                if i % 10 == 9 {
                    // A writer that gives up (or dies) mid-transaction leaves nothing behind.
                    drop(tx);
                } else {
                    tx.commit().await.unwrap();
                }
            }
        }));
    }
    for writer in writers {
        writer.await.unwrap();
    }
    chain::chain_pending(&pool).await.unwrap();
    let report = verify::verify(&pool).await.unwrap();
    assert!(report.ok, "{report:?}");
    assert_eq!(report.verified, 16 * 135);
    assert_eq!(report.pending, 0);
    let (min, max, count): (i64, i64, i64) =
        sqlx::query_as("SELECT min(seq), max(seq), count(*) FROM audit_chain")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!((min, max, count), (1, 16 * 135, 16 * 135));
}

/// Tampering as the database superuser with the append-only triggers switched off.
async fn tamper(pool: &sqlx::PgPool, sql: &str) {
    let mut conn = pool.acquire().await.unwrap();
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "SET session_replication_role = replica; {sql}; SET session_replication_role = origin;"
    )))
    .execute(&mut *conn)
    .await
    .unwrap();
}

async fn chained_app() -> TestApp {
    let app = TestApp::spawn_initialized_with(|_| {}).await;
    chain::chain_pending(&app.pool).await.unwrap();
    assert!(verify::verify(&app.pool).await.unwrap().ok);
    app
}

#[tokio::test]
async fn a_changed_field_is_found() {
    let app = chained_app().await;
    tamper(&app.pool, "UPDATE audit_records SET actor_username = 'mallory' WHERE id = (SELECT record_id FROM audit_chain WHERE seq = 4)").await;
    let report = verify::verify(&app.pool).await.unwrap();
    assert_eq!(
        (report.ok, report.first_bad_seq, report.verified),
        (false, Some(4), 3)
    );
    assert!(report.reason.unwrap().contains("changed"));
    let admin = app.token("admin", ADMIN_PASSWORD).await;
    let body: Value = app
        .get_as("/api/v1/audit/verify", &admin)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(body["first_bad_seq"], 4);
    assert!(
        app.security_event_kinds()
            .await
            .contains(&"audit_verification_failed".to_owned())
    );
}

#[tokio::test]
async fn a_deleted_middle_record_is_found() {
    let app = chained_app().await;
    tamper(&app.pool, "DELETE FROM audit_chain WHERE seq = 6").await;
    let report = verify::verify(&app.pool).await.unwrap();
    assert_eq!((report.ok, report.first_bad_seq), (false, Some(6)));
    assert!(report.reason.unwrap().contains("missing"));
}

#[tokio::test]
async fn swapped_records_are_found() {
    let app = chained_app().await;
    tamper(
        &app.pool,
        "UPDATE audit_chain SET seq = 999999999 WHERE seq = 7; UPDATE audit_chain SET seq = 7 WHERE seq = 8; \
         UPDATE audit_chain SET seq = 8 WHERE seq = 999999999",
    )
    .await;
    let report = verify::verify(&app.pool).await.unwrap();
    assert_eq!((report.ok, report.first_bad_seq), (false, Some(7)));
}

#[tokio::test]
async fn a_record_inserted_in_the_middle_is_found() {
    let app = chained_app().await;
    // A forger who knows the encoding: shift records 5.. up by one and put a well-hashed fake at 5.
    let fake = AuditRecord {
        id: uuid::Uuid::now_v7(),
        at: chrono::Utc::now(),
        actor_user_id: None,
        actor_username: Some("setup".to_owned()),
        actor_role: None,
        workstation_id: None,
        branch_id: None,
        module: "core.setup".to_owned(),
        entity: "user".to_owned(),
        entity_id: Some("ghost".to_owned()),
        action: "user.create".to_owned(),
        before_json: None,
        after_json: Some(r#"{"username":"ghost"}"#.to_owned()),
        reason_code: None,
        approval_ref: None,
        request_id: None,
    };
    let prev: Vec<u8> = sqlx::query_scalar("SELECT hash FROM audit_chain WHERE seq = 4")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    let stored: AuditRecord = sqlx::query_as("SELECT * FROM audit_records LIMIT 1")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    let at = stored.at; // a timestamp at the stored precision
    let fake = AuditRecord { at, ..fake };
    let hash = chain_hash(&prev.clone().try_into().unwrap(), 5, &fake);
    tamper(
        &app.pool,
        &format!(
            "CREATE TEMP TABLE shifted AS SELECT * FROM audit_chain WHERE seq >= 5; DELETE FROM audit_chain WHERE seq >= 5; \
             INSERT INTO audit_chain (seq, record_id, prev_hash, hash, chained_at) SELECT seq + 1, record_id, prev_hash, hash, chained_at FROM shifted; \
             INSERT INTO audit_records (id, at, actor_username, module, entity, entity_id, action, after_json) \
               VALUES ('{}', '{}', 'setup', 'core.setup', 'user', 'ghost', 'user.create', '{{\"username\":\"ghost\"}}'); \
             INSERT INTO audit_chain (seq, record_id, prev_hash, hash) VALUES (5, '{}', '\\x{}', '\\x{}')",
            fake.id,
            at.to_rfc3339(),
            fake.id,
            hex::encode(&prev),
            hex::encode(hash)
        ),
    )
    .await;
    let report = verify::verify(&app.pool).await.unwrap();
    assert_eq!(
        (report.ok, report.first_bad_seq),
        (false, Some(6)),
        "{report:?}"
    );
    assert!(report.reason.unwrap().contains("previous hash"));
}

#[tokio::test]
async fn a_record_slipped_in_outside_the_chain_is_found() {
    let app = chained_app().await;
    tamper(
        &app.pool,
        "INSERT INTO audit_records (id, at, module, entity, action) VALUES (gen_random_uuid(), now(), 'core.setup', 'user', 'user.create')",
    )
    .await;
    let report = verify::verify(&app.pool).await.unwrap();
    assert!(!report.ok);
    assert!(report.reason.unwrap().contains("outside the chain"));
}

#[tokio::test]
async fn cli_verifies_and_fails_on_a_broken_chain() {
    let app = chained_app().await;
    let database: String = sqlx::query_scalar("SELECT current_database()")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    let verify = || {
        let mut command = plugpos();
        command
            .args(["audit", "verify", "--data-dir"])
            .arg(app.data_dir.path())
            .env("PLUGPOS_DATABASE__URL", database_url(&database));
        crate::helpers::run(command)
    };
    let output = verify().await;
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["ok"], true);
    tamper(&app.pool, "UPDATE audit_records SET action = 'user.delete' WHERE id = (SELECT record_id FROM audit_chain WHERE seq = 2)").await;
    let output = verify().await;
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("the audit chain is broken at record 2"),
        "{stderr}"
    );
}

async fn checkpoint_file(app: &TestApp, admin: &str) -> (Value, std::path::PathBuf) {
    let response = app
        .post_as("/api/v1/audit/checkpoints", admin, &json!({}))
        .await;
    assert_eq!(response.status(), 201);
    let checkpoint: Value = response.json().await.unwrap();
    let path = app.data_dir.path().join("exports/checkpoint.json");
    std::fs::write(&path, checkpoint.to_string()).unwrap();
    (checkpoint, path)
}

async fn cli_verify(
    app: &TestApp,
    database: &str,
    checkpoint: &std::path::Path,
) -> std::process::Output {
    let mut command = plugpos();
    command
        .args(["audit", "verify", "--data-dir"])
        .arg(app.data_dir.path())
        .arg("--checkpoint")
        .arg(checkpoint)
        .env("PLUGPOS_DATABASE__URL", database_url(database));
    crate::helpers::run(command).await
}

#[tokio::test]
async fn a_truncated_tail_is_found_through_a_checkpoint() {
    let app = chained_app().await;
    use std::os::unix::fs::PermissionsExt;
    let key = app.data_dir.path().join("keys/audit-signing.key");
    assert_eq!(
        std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600,
        "created at setup"
    );
    let admin = app.token("admin", ADMIN_PASSWORD).await;
    let (checkpoint, file) = checkpoint_file(&app, &admin).await;
    assert_eq!(checkpoint["seq"], 11);
    let listed: Value = app
        .get_as("/api/v1/audit/checkpoints", &admin)
        .await
        .json::<Value>()
        .await
        .unwrap()["items"]
        .clone();
    assert_eq!(listed[0], checkpoint);

    // Remove the last three records, and the stored checkpoints with them.
    tamper(
        &app.pool,
        "CREATE TEMP TABLE gone AS SELECT record_id FROM audit_chain WHERE seq >= 9; DELETE FROM audit_chain WHERE seq >= 9; \
         DELETE FROM audit_records WHERE id IN (SELECT record_id FROM gone); DELETE FROM audit_checkpoints",
    )
    .await;
    assert!(
        verify::verify(&app.pool).await.unwrap().ok,
        "recomputation alone cannot see a shorter chain"
    );
    let database: String = sqlx::query_scalar("SELECT current_database()")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    let output = cli_verify(&app, &database, &file).await;
    assert!(!output.status.success());
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["first_bad_seq"], 9, "{report}");
    assert!(
        report["reason"]
            .as_str()
            .unwrap()
            .contains("tail was removed"),
        "{report}"
    );
}

#[tokio::test]
async fn a_rewritten_chain_is_found_through_a_checkpoint() {
    let app = chained_app().await;
    let admin = app.token("admin", ADMIN_PASSWORD).await;
    let (_, file) = checkpoint_file(&app, &admin).await;
    let database: String = sqlx::query_scalar("SELECT current_database()")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert!(cli_verify(&app, &database, &file).await.status.success());
    // A forged checkpoint (edited after signing) is refused as such.
    let mut forged: Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    forged["seq"] = json!(3);
    let forged_file = app.data_dir.path().join("exports/forged.json");
    std::fs::write(&forged_file, forged.to_string()).unwrap();
    let report: Value =
        serde_json::from_slice(&cli_verify(&app, &database, &forged_file).await.stdout).unwrap();
    assert!(
        report["reason"].as_str().unwrap().contains("signature"),
        "{report}"
    );

    // Rewrite history consistently: change record 2, then recompute every hash from the start.
    tamper(&app.pool, "UPDATE audit_records SET actor_username = 'mallory' WHERE id = (SELECT record_id FROM audit_chain WHERE seq = 2)").await;
    let records: Vec<(i64, AuditRecord)> = {
        let ids: Vec<(i64, uuid::Uuid)> =
            sqlx::query_as("SELECT seq, record_id FROM audit_chain ORDER BY seq")
                .fetch_all(&app.pool)
                .await
                .unwrap();
        let mut out = Vec::new();
        for (seq, id) in ids {
            out.push((
                seq,
                sqlx::query_as("SELECT * FROM audit_records WHERE id = $1")
                    .bind(id)
                    .fetch_one(&app.pool)
                    .await
                    .unwrap(),
            ));
        }
        out
    };
    let mut prev = [0u8; 32];
    let mut sql = String::from("DELETE FROM audit_chain;");
    for (seq, record) in &records {
        let hash = chain_hash(&prev, *seq, record);
        sql.push_str(&format!(
            "INSERT INTO audit_chain (seq, record_id, prev_hash, hash) VALUES ({seq}, '{}', '\\x{}', '\\x{}');",
            record.id,
            hex::encode(prev),
            hex::encode(hash)
        ));
        prev = hash;
    }
    tamper(&app.pool, sql.trim_end_matches(';')).await;
    assert!(
        verify::verify(&app.pool).await.unwrap().ok,
        "a consistent rewrite passes recomputation"
    );
    let output = cli_verify(&app, &database, &file).await;
    assert!(!output.status.success());
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert!(
        report["reason"].as_str().unwrap().contains("rewritten"),
        "{report}"
    );
}

/// The server works as a role that may only INSERT and SELECT audit rows: even without the
/// triggers it could not change them.
#[tokio::test]
async fn the_application_role_cannot_change_audit_rows() {
    let app = chained_app().await;
    let database: String = sqlx::query_scalar("SELECT current_database()")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    let app_role = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect_with(
            crate::helpers::cluster()
                .cluster
                .connect_options_as(&database, plugpos::core::postgres::APP_ROLE),
        )
        .await
        .unwrap();
    let me: String = sqlx::query_scalar("SELECT current_user::text")
        .fetch_one(&app_role)
        .await
        .unwrap();
    assert_eq!(me, "plugpos_app");
    for statement in [
        "UPDATE audit_records SET action = 'user.delete'",
        "DELETE FROM audit_chain",
        "TRUNCATE audit_records CASCADE",
        "DELETE FROM audit_checkpoints",
        "SET session_replication_role = replica",
    ] {
        let err = sqlx::raw_sql(statement)
            .execute(&app_role)
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("permission denied"), "{statement}: {err}");
    }
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM audit_records")
        .fetch_one(&app_role)
        .await
        .unwrap();
    assert_eq!(count, 11, "it can read them");
}

#[tokio::test]
async fn the_log_is_queried_by_filter_and_exported_as_csv() {
    let app = chained_app().await;
    let admin = app.token("admin", ADMIN_PASSWORD).await;
    let page: Value = app
        .get_as("/api/v1/audit?action=role.create&limit=2", &admin)
        .await
        .json()
        .await
        .unwrap();
    let items = page["items"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    assert_eq!(items[0]["action"], "role.create");
    assert_eq!(items[0]["actor"]["username"], "setup");
    assert_eq!(
        items[0]["after"]["builtin"], true,
        "before/after come back as JSON"
    );
    assert_eq!(
        items[1]["prev_hash"], items[0]["hash"],
        "consecutive roles are consecutive links here"
    );
    let next = page["next_cursor"].as_str().unwrap();
    let rest: Value = app
        .get_as(
            &format!("/api/v1/audit?action=role.create&cursor={next}"),
            &admin,
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(rest["items"].as_array().unwrap().len(), 3);
    assert!(rest["next_cursor"].is_null());
    let users: Value = app
        .get_as("/api/v1/audit?entity=user&module=core.setup", &admin)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(users["items"].as_array().unwrap().len(), 1);
    problem(
        app.get_as("/api/v1/audit?cursor=abc", &admin).await,
        422,
        "validation.failed",
    )
    .await;

    let response = app
        .get_as("/api/v1/audit/export?format=csv&action=role.create", &admin)
        .await;
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/csv")
    );
    let text = response.text().await.unwrap();
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    let headers = reader.headers().unwrap().clone();
    assert_eq!(&headers[0], "seq");
    assert_eq!(&headers[17], "hash");
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert_eq!(rows.len(), 5);
    assert!(rows.iter().all(|r| &r[10] == "role.create"));
    let after: Value = serde_json::from_str(&rows[0][12]).unwrap();
    assert_eq!(after["builtin"], true);

    problem(
        app.get_as("/api/v1/audit/export?format=xlsx", &admin).await,
        422,
        "validation.failed",
    )
    .await;
    // The export itself is audited and flagged as a sensitive export.
    let exports: Value = app
        .get_as("/api/v1/audit?action=audit_log.export", &admin)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(exports["items"][0]["after"]["records"], 5);
    assert!(
        app.security_event_kinds()
            .await
            .contains(&"sensitive_export".to_owned())
    );
}

#[tokio::test]
async fn the_pdf_report_opens_and_reads_right() {
    let app = chained_app().await;
    for i in 0..120 {
        let mut tx = AuditedTx::begin(&app.pool, Actor::system("test"), chrono::Utc::now())
            .await
            .unwrap();
        tx.record(
            Change::new("test.load", "thing", i, "thing.touch")
                .after(json!({"note": "Grüße – 店", "i": i})),
        )
        .await
        .unwrap();
        tx.commit().await.unwrap();
    }
    let admin = app.token("admin", ADMIN_PASSWORD).await;
    let response = app.get_as("/api/v1/audit/export?format=pdf", &admin).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/pdf");
    let bytes = response.bytes().await.unwrap();
    assert!(bytes.starts_with(b"%PDF-"));
    let mut warnings = Vec::new();
    let document =
        printpdf::PdfDocument::parse(&bytes, &printpdf::PdfParseOptions::default(), &mut warnings)
            .unwrap();
    assert!(
        document.pages.len() >= 3,
        "131 rows need several pages, got {}",
        document.pages.len()
    );
    let text: String = document
        .extract_text()
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join("\n");
    for expected in [
        "Audit log - Corner Shop",
        "Verification: intact: 131 records verified",
        "business.create",
        "thing.touch",
        "Page 3",
    ] {
        assert!(
            text.contains(expected),
            "{expected:?} not in the PDF text:\n{}",
            &text[..text.len().min(2000)]
        );
    }
    let exports: Value = app
        .get_as("/api/v1/audit?action=audit_log.export", &admin)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(exports["items"][0]["after"]["format"], "pdf");
}

#[tokio::test]
async fn a_sensitive_action_needs_a_reason_code() {
    let pool = pool(&create_database(true).await);
    let mut tx = AuditedTx::begin(&pool, Actor::system("test"), chrono::Utc::now())
        .await
        .unwrap();
    let void = || Change::new("operations.sales", "sale", "s-1", "sale.void").sensitive();
    let err = tx.record(void()).await.unwrap_err().to_string();
    assert!(
        err.contains("sale.void is a sensitive action: a reason code is required"),
        "{err}"
    );
    let blank = void().reason(Some("  ".to_owned()), None);
    assert!(
        tx.record(blank).await.is_err(),
        "a blank reason is no reason"
    );
    tx.record(void().reason(
        Some("customer_changed_mind".to_owned()),
        Some("APR-7".to_owned()),
    ))
    .await
    .unwrap();
    tx.commit().await.unwrap();
    let (reason, approval): (Option<String>, Option<String>) =
        sqlx::query_as("SELECT reason_code, approval_ref FROM audit_records")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(
        (reason.as_deref(), approval.as_deref()),
        (Some("customer_changed_mind"), Some("APR-7"))
    );
}

/// A cell a spreadsheet would run as a formula (`=`, `+`, `-`, `@`, tab, CR first) is exported
/// with a leading `'` (OWASP's rule), and a workstation id that could carry one is refused at
/// login (issue 28, finding 3).
#[tokio::test]
async fn exported_cells_never_start_a_formula() {
    let app = chained_app().await;
    let mut tx = AuditedTx::begin(
        &app.pool,
        Actor::system("=HYPERLINK(\"x\")"),
        chrono::Utc::now(),
    )
    .await
    .unwrap();
    tx.record(
        Change::new("test.csv", "thing", "@sum(1)", "thing.touch").after(json!({"ok": true})),
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    let admin = app.token("admin", ADMIN_PASSWORD).await;
    let csv = app
        .get_as("/api/v1/audit/export?format=csv&module=test.csv", &admin)
        .await
        .text()
        .await
        .unwrap();
    let row = csv.lines().nth(1).unwrap();
    assert!(row.contains("'=HYPERLINK"), "{row}");
    assert!(row.contains(",'@sum(1),"), "{row}");
    for cell in row.split(',') {
        let cell = cell.trim_start_matches('"');
        assert!(!cell.starts_with(['=', '+', '-', '@']), "{cell} in {row}");
    }
    let refused = app
        .client
        .post(app.url("/api/v1/auth/login"))
        .json(&json!({"username": "admin", "password": ADMIN_PASSWORD, "workstation_id": "=cmd|' /C calc'!A0"}))
        .send()
        .await
        .unwrap();
    let body = problem(refused, 422, "validation.failed").await;
    assert_eq!(body["errors"][0]["field"], "workstation_id");
}
