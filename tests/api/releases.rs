//! Upgrading the data of every earlier release: `tests/fixtures/releases/<version>/` holds a
//! dump made by that release (a day of trade with a return, a void, a closed cash session, a Z
//! closing, a printed receipt and its copy, a signed audit checkpoint) and what it held. The
//! test loads each into an empty database, runs this build's migrations, verifies the audit
//! chain from its first record against its signed checkpoints, and compares the row counts and
//! money totals of the business's own records (documents, master data, the audit log; not the
//! instance's bookkeeping such as permissions or jobs, which migrations may seed). A migration
//! that legitimately changes one of those counts (it moves rows between tables) says so by
//! changing the comparison here, in the same commit.
//!
//! Every release adds its fixture, made by that release's code:
//! `PLUGPOS_FIXTURE_RELEASE=<version> cargo test --test api write_release_fixture -- --ignored`.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use plugpos::core::audit::{chain, checkpoint, verify};
use plugpos::core::db::migrations;
use plugpos::core::postgres::PgBinaries;
use serde::{Deserialize, Serialize};
use serde_json::json;
use sqlx::PgPool;

use crate::closings::trade;
use crate::helpers::{create_database, database_url, pool};
use crate::shop::Shop;

/// What a release's database held when its fixture was made.
#[derive(Debug, Serialize, Deserialize)]
struct Expected {
    release: String,
    schema_version: i64,
    /// The key the fixture's audit checkpoints and closings are signed with (hex).
    audit_public_key: String,
    audit_records: i64,
    audit_head_hash: String,
    /// Rows per table.
    rows: BTreeMap<String, i64>,
    /// Money sums that must not move (`table.column` -> decimal text).
    totals: BTreeMap<String, String>,
}

fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/releases")
}

/// A PostgreSQL client program (`psql`, `pg_dump`) beside the server programs the tests use.
fn pg_tool(name: &str) -> PathBuf {
    let binaries = PgBinaries::find(
        None,
        std::env::var("PATH").ok().as_deref(),
        Path::new("/usr/lib/postgresql"),
    )
    .unwrap();
    let beside = binaries.postgres.with_file_name(name);
    if beside.exists() {
        beside
    } else {
        PathBuf::from(name)
    }
}

/// Tables whose rows are the business's records: a migration must keep every one of them.
const BUSINESS_TABLES: [&str; 28] = [
    "business",
    "branches",
    "locations",
    "registers",
    "users",
    "user_roles",
    "tax_classes",
    "categories",
    "products",
    "product_barcodes",
    "stock_levels",
    "stock_movements",
    "cash_sessions",
    "cash_movements",
    "sales",
    "sale_lines",
    "returns",
    "return_lines",
    "returned_quantities",
    "returned_taxes",
    "receipt_counters",
    "return_counters",
    "closings",
    "receipt_copies",
    "receipt_renders",
    "audit_records",
    "audit_chain",
    "audit_checkpoints",
];

const TOTALS: [&str; 6] = [
    "sales.total",
    "sales.tax",
    "sales.discount_total",
    "returns.total",
    "cash_movements.amount",
    "cash_sessions.counted_cash",
];

async fn facts(pool: &PgPool) -> (BTreeMap<String, i64>, BTreeMap<String, String>) {
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT tablename::text FROM pg_tables WHERE schemaname = 'public' AND tablename <> '_sqlx_migrations' ORDER BY 1",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    let mut rows = BTreeMap::new();
    for table in tables {
        let count: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT count(*) FROM \"{table}\""
        )))
        .fetch_one(pool)
        .await
        .unwrap();
        rows.insert(table, count);
    }
    let mut totals = BTreeMap::new();
    for total in TOTALS {
        let (table, column) = total.split_once('.').unwrap();
        let sum: Option<rust_decimal::Decimal> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT sum({column}) FROM {table}"
        )))
        .fetch_one(pool)
        .await
        .unwrap();
        totals.insert(total.to_owned(), sum.unwrap_or_default().to_string());
    }
    (rows, totals)
}

#[tokio::test]
async fn every_release_fixture_upgrades_to_this_build_with_its_chain_and_totals() {
    let mut releases: Vec<PathBuf> = std::fs::read_dir(fixtures_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("expected.json").exists())
        .collect();
    releases.sort();
    assert!(
        !releases.is_empty(),
        "no release fixtures in {}",
        fixtures_dir().display()
    );
    for release in releases {
        let expected: Expected =
            serde_json::from_slice(&std::fs::read(release.join("expected.json")).unwrap()).unwrap();
        let database = create_database(false).await;
        let dump =
            zstd::decode_all(std::fs::File::open(release.join("dump.sql.zst")).unwrap()).unwrap();
        let mut psql = Command::new(pg_tool("psql"))
            .args([
                "-q",
                "-X",
                "-v",
                "ON_ERROR_STOP=1",
                "-d",
                &database_url(&database),
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        psql.stdin.take().unwrap().write_all(&dump).unwrap();
        let loaded = psql.wait_with_output().unwrap();
        assert!(
            loaded.status.success(),
            "{}: {}",
            release.display(),
            String::from_utf8_lossy(&loaded.stderr)
        );

        let pool = pool(&database);
        let applied = migrations::apply(&pool).await.unwrap();
        migrations::check_current(&pool).await.unwrap();
        assert!(
            applied.iter().all(|v| *v > expected.schema_version),
            "{}: re-applied a migration the release had: {applied:?}",
            expected.release
        );

        let checkpoints = checkpoint::list(&pool).await.unwrap();
        assert!(
            !checkpoints.is_empty(),
            "{}: the fixture has no signed checkpoint",
            expected.release
        );
        let report =
            verify::verify_with_checkpoints(&pool, &checkpoints, Some(&expected.audit_public_key))
                .await
                .unwrap();
        assert!(report.ok, "{}: {report:?}", expected.release);
        assert!(
            report.verified >= expected.audit_records,
            "{}: {report:?}",
            expected.release
        );
        let hash: Vec<u8> = sqlx::query_scalar("SELECT hash FROM audit_chain WHERE seq = $1")
            .bind(expected.audit_records)
            .fetch_one(&pool)
            .await
            .unwrap();
        assert_eq!(
            hex::encode(hash),
            expected.audit_head_hash,
            "{}",
            expected.release
        );

        let (rows, totals) = facts(&pool).await;
        for table in BUSINESS_TABLES {
            let expected_rows = expected.rows.get(table);
            assert!(
                expected_rows.is_some(),
                "{}: no count of {table}",
                expected.release
            );
            assert_eq!(
                rows.get(table),
                expected_rows,
                "{}: rows of {table}",
                expected.release
            );
        }
        assert_eq!(
            totals, expected.totals,
            "{}: money totals",
            expected.release
        );
        pool.close().await;
    }
}

/// Writes this build's fixture (run by hand at a release; see the module's comment).
#[tokio::test]
#[ignore = "writes tests/fixtures/releases/<PLUGPOS_FIXTURE_RELEASE>; run at a release"]
async fn write_release_fixture() {
    let release =
        std::env::var("PLUGPOS_FIXTURE_RELEASE").expect("PLUGPOS_FIXTURE_RELEASE=<version>");
    assert_eq!(
        release,
        env!("CARGO_PKG_VERSION"),
        "a fixture is made by the release it names"
    );
    let shop = Shop::open().await;
    shop.set("sales.max_cashier_discount_percent", json!(25))
        .await;
    let (pen, bread) = shop.pen_and_bread().await;
    let session = trade(&shop, &pen, &bread, "fixture").await;
    shop.close_session(&session, "70.00").await;
    let response = shop
        .app
        .post_as("/api/v1/closings", &shop.manager, &json!({"kind": "day"}))
        .await;
    assert_eq!(response.status(), 201, "{}", response.text().await.unwrap());
    let sale: String = sqlx::query_scalar("SELECT id::text FROM sales ORDER BY created_at LIMIT 1")
        .fetch_one(&shop.app.pool)
        .await
        .unwrap();
    for _ in 0..2 {
        let response = shop
            .app
            .get_as(
                &format!("/api/v1/sales/{sale}/receipt?format=text"),
                &shop.cashier,
            )
            .await;
        assert_eq!(response.status(), 200);
    }
    chain::chain_pending(&shop.app.pool).await.unwrap();
    let response = shop
        .app
        .post_as("/api/v1/audit/checkpoints", &shop.admin, &json!({}))
        .await;
    assert_eq!(response.status(), 201, "{}", response.text().await.unwrap());
    chain::chain_pending(&shop.app.pool).await.unwrap();

    let pool = &shop.app.pool;
    let (records, head): (i64, Vec<u8>) =
        sqlx::query_as("SELECT seq, hash FROM audit_chain ORDER BY seq DESC LIMIT 1")
            .fetch_one(pool)
            .await
            .unwrap();
    let (rows, totals) = facts(pool).await;
    let expected = Expected {
        release: release.clone(),
        schema_version: migrations::embedded_schema_version(),
        audit_public_key: checkpoint::public_key(&shop.app.data_dir.path().join("keys")).unwrap(),
        audit_records: records,
        audit_head_hash: hex::encode(head),
        rows,
        totals,
    };
    let database = pool.connect_options().get_database().unwrap().to_owned();
    let dump = Command::new(pg_tool("pg_dump"))
        .args(["--no-owner", "-d", &database_url(&database)])
        .output()
        .unwrap();
    assert!(
        dump.status.success(),
        "{}",
        String::from_utf8_lossy(&dump.stderr)
    );
    let dir = fixtures_dir().join(&release);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("dump.sql.zst"),
        zstd::encode_all(dump.stdout.as_slice(), 19).unwrap(),
    )
    .unwrap();
    std::fs::write(
        dir.join("expected.json"),
        serde_json::to_string_pretty(&expected).unwrap() + "\n",
    )
    .unwrap();
    eprintln!("wrote {}", dir.display());
}
