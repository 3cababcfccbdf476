//! Receipts (issue 31): every format and width of a discounted, two-rate, split-paid sale with
//! a long accented name; the signed QR code read back from the PDF and checked by another
//! ed25519 implementation; copies marked and counted; delivery to a network printer.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};
use tokio::io::AsyncReadExt;
use unicode_width::UnicodeWidthStr;

use crate::helpers::{database_url, plugpos, problem};
use crate::shop::Shop;

const LONG_NAME: &str = "Crème brûlée à la vanille de Madagascar, édition spéciale";

/// A shop with its receipt settings, and a sale: 2 x the long-named dessert (19 %, 10 %
/// loyalty discount) and a bread (7 %), paid 5.00 by card and 10.00 in cash.
async fn shop_with_a_sale() -> (Shop, Value) {
    let shop = Shop::open().await;
    shop.set("sales.max_cashier_discount_percent", json!(25))
        .await;
    shop.set(
        "receipt.address",
        json!(["5 rue de l'Église", "75001 Paris"]),
    )
    .await;
    shop.set("receipt.tax_id", json!("FR 12 345678901")).await;
    shop.set("receipt.footer_lines", json!(["Merci et à bientôt !"]))
        .await;
    let response = shop
        .app
        .post_as(
            "/api/v1/products",
            &shop.manager,
            &json!({"sku": "CREME", "name": LONG_NAME, "price": "4.50",
                    "tax_class_id": shop.standard, "track_stock": false}),
        )
        .await;
    assert_eq!(response.status(), 201, "{}", response.text().await.unwrap());
    let creme: Value = response.json().await.unwrap();
    let bread = shop.product("BREAD", "1.99", &shop.reduced, false).await;
    shop.open_session("20.00").await;
    let response = shop
        .sell(
            &shop.cashier,
            "receipt-1",
            &json!({"register_id": shop.register,
                "lines": [
                    {"product_id": creme["id"], "quantity": "2",
                     "discount": {"kind": "percent", "value": "10", "reason_code": "loyalty"}},
                    {"product_id": bread, "quantity": "1"}],
                "payments": [{"method": "card", "amount": "5.00"}, {"method": "cash", "amount": "10.00"}]}),
        )
        .await;
    assert_eq!(response.status(), 201, "{}", response.text().await.unwrap());
    let sale = response.json().await.unwrap();
    (shop, sale)
}

async fn receipt(shop: &Shop, path: &str) -> reqwest::Response {
    let response = shop.app.get_as(path, &shop.cashier).await;
    assert_eq!(response.status(), 200, "{path}");
    response
}

async fn receipt_text(shop: &Shop, sale: &str, width: u32) -> String {
    receipt(
        shop,
        &format!("/api/v1/sales/{sale}/receipt?format=text&width={width}"),
    )
    .await
    .text()
    .await
    .unwrap()
}

/// The QR codes in a PDF, read from its pages rendered at 300 dpi (pdftoppm, greyscale).
fn qr_codes_in_pdf(pdf: &[u8]) -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("receipt.pdf");
    std::fs::write(&file, pdf).unwrap();
    let status = std::process::Command::new("pdftoppm")
        .args(["-r", "300", "-gray"])
        .arg(&file)
        .arg(dir.path().join("page"))
        .status()
        .expect("pdftoppm (poppler-utils) is installed");
    assert!(status.success());
    let mut codes = Vec::new();
    let mut pages: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "pgm"))
        .collect();
    pages.sort();
    for page in pages {
        let (w, h, pixels) = pgm(&std::fs::read(page).unwrap());
        let mut image = rqrr::PreparedImage::prepare_from_greyscale(w, h, |x, y| pixels[y * w + x]);
        for grid in image.detect_grids() {
            codes.push(grid.decode().expect("the QR code decodes").1);
        }
    }
    codes
}

/// A binary PGM (P5, 8 bits): width, height, pixels.
fn pgm(bytes: &[u8]) -> (usize, usize, Vec<u8>) {
    let mut fields = Vec::new();
    let mut at = 0;
    while fields.len() < 4 {
        while bytes[at].is_ascii_whitespace() {
            at += 1;
        }
        let start = at;
        while !bytes[at].is_ascii_whitespace() {
            at += 1;
        }
        fields.push(String::from_utf8_lossy(&bytes[start..at]).into_owned());
    }
    assert_eq!(fields[0], "P5");
    assert_eq!(fields[3], "255");
    let (w, h): (usize, usize) = (fields[1].parse().unwrap(), fields[2].parse().unwrap());
    (w, h, bytes[at + 1..at + 1 + w * h].to_vec())
}

/// The instance's public key, derived from its key file by another ed25519 implementation.
fn instance_public_key(shop: &Shop) -> ed25519_compact::PublicKey {
    let text =
        std::fs::read_to_string(shop.app.data_dir.path().join("keys/audit-signing.key")).unwrap();
    let seed: [u8; 32] = hex::decode(text.trim()).unwrap().try_into().unwrap();
    ed25519_compact::KeyPair::from_seed(ed25519_compact::Seed::new(seed)).pk
}

/// Checks a QR text's signature as docs/api.md describes it, without the server's code.
fn signature_holds(key: &ed25519_compact::PublicKey, code: &str) -> bool {
    let (signed, signature) = code.rsplit_once('|').unwrap();
    let signed = format!("{signed}|");
    let Ok(signature) = URL_SAFE_NO_PAD.decode(signature) else {
        return false;
    };
    let Ok(signature) = ed25519_compact::Signature::from_slice(&signature) else {
        return false;
    };
    key.verify(signed.as_bytes(), &signature).is_ok()
}

#[tokio::test]
async fn a_receipt_prints_in_every_format_and_width_with_a_qr_code_anyone_can_verify() {
    let (shop, sale) = shop_with_a_sale().await;
    let id = sale["id"].as_str().unwrap();
    let number = sale["receipt_number"].as_str().unwrap();

    // JSON: the receipt as data, the original.
    let json: Value = receipt(&shop, &format!("/api/v1/sales/{id}/receipt"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(json["copy"], 0);
    assert_eq!(json["copy_mark"], Value::Null);
    assert_eq!(json["number"], number);
    assert_eq!(json["business"]["address"][0], "5 rue de l'Église");
    assert_eq!(json["business"]["tax_id"], "FR 12 345678901");
    assert_eq!(json["cashier"], "carla");
    assert_eq!(json["lines"][0]["name"], LONG_NAME);
    assert_eq!(json["lines"][0]["quantity"], "2");
    assert_eq!(json["lines"][0]["total"], "8.10");
    assert_eq!(
        json["lines"][0]["discounts"][0]["label"],
        "Discount 10% (loyalty)"
    );
    assert_eq!(json["lines"][0]["discounts"][0]["amount"], "-0.90");
    assert_eq!(json["lines"][0]["tax_letter"], "B");
    assert_eq!(json["lines"][1]["tax_letter"], "A");
    assert_eq!(json["taxes"][0]["percent"], "7%");
    assert_eq!(json["taxes"][1]["percent"], "19%");
    assert_eq!(json["totals"]["total"], "10.09");
    assert_eq!(json["payments"].as_array().unwrap().len(), 2);
    assert_eq!(json["change"], "4.91");
    assert_eq!(json["footer"][0], "Merci et à bientôt !");
    let qr = json["fiscal"]["qr"].as_str().unwrap().to_owned();
    let seq = json["fiscal"]["audit_seq"].as_i64().unwrap();
    let hash = json["fiscal"]["audit_hash"].as_str().unwrap();
    // The fiscal block is the sale's own audit record in the chain.
    let (record_seq, record_hash): (i64, Vec<u8>) = sqlx::query_as(
        "SELECT c.seq, c.hash FROM audit_records r JOIN audit_chain c ON c.record_id = r.id \
         WHERE r.entity = 'sale' AND r.entity_id = $1 AND r.action = 'sale.complete'",
    )
    .bind(id)
    .fetch_one(&shop.app.pool)
    .await
    .unwrap();
    assert_eq!((seq, hash), (record_seq, hex::encode(record_hash).as_str()));
    let time = format!("{}Z", &sale["created_at"].as_str().unwrap()[..19]);
    let seq_text = seq.to_string();
    assert_eq!(
        qr.split('|').take(10).collect::<Vec<_>>(),
        [
            "PP1",
            "FR 12 345678901",
            "R1",
            "S",
            number,
            &time,
            "10.09",
            "0.07:1.99:0.13,0.19:8.10:1.29",
            &seq_text,
            hash,
        ]
    );
    let key = instance_public_key(&shop);
    // The key is published for auditors, without login.
    let published: Value = shop
        .app
        .get("/api/v1/receipts/public-key")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(published["algorithm"], "ed25519", "{published}");
    assert_eq!(published["public_key"], hex::encode(&key[..]));
    assert!(signature_holds(&key, &qr));
    let altered = qr.replace("|10.09|", "|1.09|");
    assert!(!signature_holds(&key, &altered), "one field changed");

    // Text, 58 mm (32 columns) and 80 mm (48): every line fits, amounts end on the last
    // columns, the tax table's columns line up, the long name wraps, the first render after
    // the original is COPY 1.
    for (width, cols) in [(58, 32), (80, 48)] {
        let text = receipt_text(&shop, id, width).await;
        let lines: Vec<&str> = text.lines().collect();
        for line in &lines {
            assert!(line.width() <= cols, "{line:?} is wider than {cols}");
        }
        assert!(lines[0].contains("*** COPY"), "{text}");
        let amount = lines
            .iter()
            .find(|l| l.trim_start().starts_with("2 x 4.50"))
            .unwrap();
        assert_eq!(amount.width(), cols);
        assert!(amount.ends_with("8.10 B"));
        let total = lines.iter().find(|l| l.starts_with("TOTAL EUR")).unwrap();
        assert_eq!(total.width(), cols - 2, "{total:?}");
        assert!(total.ends_with("10.09"));
        let change = lines.iter().find(|l| l.starts_with("Change")).unwrap();
        assert_eq!(change.width(), cols - 2);
        let header = lines.iter().position(|l| l.starts_with("Tax ")).unwrap();
        let edge = lines[header].width();
        assert_eq!(lines[header + 1].width(), edge, "{}", lines[header + 1]);
        assert!(lines[header + 1].starts_with("A 7%"));
        assert_eq!(lines[header + 2].width(), edge);
        // The name wrapped at a space, its words all there, in order.
        let start = lines.iter().position(|l| l.starts_with("Crème")).unwrap();
        let name: Vec<&str> = lines[start..]
            .iter()
            .take_while(|l| !l.trim_start().starts_with("2 x"))
            .copied()
            .collect();
        assert!(name.len() >= 2);
        assert_eq!(name.join(" "), LONG_NAME);
    }
    let text = receipt_text(&shop, id, 80).await;
    assert!(text.contains("*** COPY 3 ***"), "{text}");

    // ESC/POS: bold, the QR code stored and printed by the printer's own command, then the cut.
    let bytes = receipt(&shop, &format!("/api/v1/sales/{id}/receipt?format=escpos"))
        .await
        .bytes()
        .await
        .unwrap();
    assert_eq!(&bytes[..2], b"\x1b@");
    assert!(bytes.windows(3).any(|w| w == b"\x1bE\x01"), "bold on");
    let store = b"\x1d(k";
    let at = bytes
        .windows(3)
        .enumerate()
        .filter(|(_, w)| *w == store)
        .map(|(i, _)| i)
        .find(|i| bytes[i + 5] == 49 && bytes[i + 6] == 80)
        .expect("a QR store command");
    let len = u16::from_le_bytes([bytes[at + 3], bytes[at + 4]]) as usize;
    assert_eq!(&bytes[at + 8..at + 5 + len], qr.as_bytes());
    let print = &bytes[at + 5 + len..at + 5 + len + 8];
    assert_eq!(print, b"\x1d(k\x03\x001Q0");
    assert!(bytes.ends_with(b"\x1dVB\x03"), "feed and cut at the end");
    // Code page 858: é is 0x82.
    assert!(bytes.windows(5).any(|w| w == b"Cr\x8ame"));

    // PDF, A6 receipt and A4 invoice: the QR code read back from the rendered page.
    for layout in ["receipt", "invoice"] {
        let response = receipt(
            &shop,
            &format!("/api/v1/sales/{id}/receipt?format=pdf&layout={layout}"),
        )
        .await;
        assert_eq!(response.headers()["content-type"], "application/pdf");
        let pdf = response.bytes().await.unwrap();
        assert!(pdf.starts_with(b"%PDF-"));
        assert!(
            pdf.windows(9).any(|w| w == b"/FontFile"),
            "the font is embedded"
        );
        assert_eq!(qr_codes_in_pdf(&pdf), vec![qr.clone()], "{layout}");
    }

    // The server's check, open to anyone: the code holds; one changed field does not, and
    // neither does the record.
    let verdict: Value = shop
        .app
        .post_json("/api/v1/receipts/verify", &json!({"code": qr}))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(verdict["signature_valid"], true, "{verdict}");
    assert_eq!(verdict["record_matches"], true, "{verdict}");
    let verdict: Value = shop
        .app
        .post_json("/api/v1/receipts/verify", &json!({"code": altered}))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(verdict["signature_valid"], false);
    assert_eq!(verdict["record_matches"], false);
    // Unsigned codes are compared with nothing: guessing amounts learns nothing.
    assert_eq!(verdict["mismatched_fields"], json!([]));
    problem(
        shop.app
            .post_json("/api/v1/receipts/verify", &json!({"code": "hello"}))
            .await,
        422,
        "validation.failed",
    )
    .await;

    // The command line says the same.
    let database: String = sqlx::query_scalar("SELECT current_database()")
        .fetch_one(&shop.app.pool)
        .await
        .unwrap();
    let verify = |code: String| {
        let mut command = plugpos();
        command
            .args(["receipt", "verify", &code, "--data-dir"])
            .arg(shop.app.data_dir.path())
            .env("PLUGPOS_DATABASE__URL", database_url(&database));
        crate::helpers::run(command)
    };
    let output = verify(qr.clone()).await;
    assert!(
        output.status.success(),
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let output = verify(altered).await;
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("signature does not hold"));
    // The shop's own command line compares even an unsigned code, naming the field.
    assert!(
        String::from_utf8_lossy(&output.stdout).contains("differs in: total"),
        "{}",
        String::from_utf8_lossy(&output.stdout)
    );

    // The tax id changes: copies still print the receipt as issued, and its code still holds.
    shop.set("receipt.tax_id", json!("FR 99 999999999")).await;
    let copy: Value = receipt(&shop, &format!("/api/v1/sales/{id}/receipt"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(copy["copy_mark"], "COPY 7");
    assert_eq!(copy["fiscal"]["qr"], qr.as_str());
    assert_eq!(copy["business"]["tax_id"], "FR 12 345678901");
    let verdict: Value = shop
        .app
        .post_json("/api/v1/receipts/verify", &json!({"code": qr}))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(verdict["record_matches"], true, "{verdict}");

    // Every render is counted: one original, then copies 1 to 7, each audited.
    let (renders, copies): (i32, i64) = sqlx::query_as(
        "SELECT (SELECT renders FROM receipt_copies WHERE document_id = $1::uuid), \
                (SELECT count(*) FROM audit_records WHERE entity = 'receipt' AND entity_id = $1)",
    )
    .bind(id)
    .fetch_one(&shop.app.pool)
    .await
    .unwrap();
    assert_eq!((renders, copies), (8, 8));
    let session = sale["cash_session_id"].as_str().unwrap();
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
    assert_eq!(x["receipt_copies"], 7, "{x}");
}

#[tokio::test]
async fn returns_and_voids_print_and_a_reprint_says_copy_1() {
    let (shop, sale) = shop_with_a_sale().await;
    let id = sale["id"].as_str().unwrap();
    let response = shop
        .give_back(
            &shop.manager,
            "receipt-r",
            &json!({"register_id": shop.register, "original_sale_id": id,
                "lines": [{"line_no": 2, "quantity": "1"}],
                "refunds": [{"method": "cash", "amount": "1.99"}], "reason_code": "defective"}),
        )
        .await;
    assert_eq!(response.status(), 201, "{}", response.text().await.unwrap());
    let back: Value = response.json().await.unwrap();
    let path = format!(
        "/api/v1/returns/{}/receipt?format=text&width=58",
        back["id"].as_str().unwrap()
    );
    let original = receipt(&shop, &path).await.text().await.unwrap();
    assert!(!original.contains("COPY"), "{original}");
    assert!(original.contains(&format!("Return {}", back["number"].as_str().unwrap())));
    assert!(original.contains(&format!(
        "Corrects receipt {}",
        sale["receipt_number"].as_str().unwrap()
    )));
    assert!(original.contains("Refund cash"));
    let copy = receipt(&shop, &path).await.text().await.unwrap();
    assert!(copy.contains("*** COPY 1 ***"), "{copy}");
    let audit: Value = sqlx::query_scalar(
        "SELECT after_json::jsonb FROM audit_records WHERE entity = 'receipt' AND entity_id = $1 \
         ORDER BY at DESC, id DESC LIMIT 1",
    )
    .bind(back["id"].as_str().unwrap())
    .fetch_one(&shop.app.pool)
    .await
    .unwrap();
    assert_eq!(audit["copy"], 1);

    // A void: its receipt names the sale and carries its own QR code, which verifies.
    let other = shop
        .sell(
            &shop.cashier,
            "receipt-2",
            &json!({"register_id": shop.register,
                "lines": [{"product_id": sale["lines"][1]["product_id"], "quantity": "1"}],
                "payments": [{"method": "cash", "amount": "2.00"}]}),
        )
        .await
        .json::<Value>()
        .await
        .unwrap();
    let response = shop
        .app
        .post_as(
            &format!("/api/v1/sales/{}/void", other["id"].as_str().unwrap()),
            &shop.manager,
            &json!({"reason_code": "cashier_error"}),
        )
        .await;
    assert_eq!(response.status(), 201, "{}", response.text().await.unwrap());
    let void: Value = response.json().await.unwrap();
    let json: Value = receipt(
        &shop,
        &format!("/api/v1/returns/{}/receipt", void["id"].as_str().unwrap()),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(json["kind"], "void");
    assert_eq!(json["corrects"], other["receipt_number"]);
    let code = json["fiscal"]["qr"].as_str().unwrap();
    assert_eq!(code.split('|').nth(3), Some("V"));
    assert!(signature_holds(&instance_public_key(&shop), code));
    let verdict: Value = shop
        .app
        .post_json("/api/v1/receipts/verify", &json!({"code": code}))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        (&verdict["signature_valid"], &verdict["record_matches"]),
        (&json!(true), &json!(true)),
        "{verdict}"
    );

    // The day's Z report counts the copies made before it (one: the return's reprint); a
    // reprint after the closing leaves the closing verifiable.
    let session = sale["cash_session_id"].as_str().unwrap();
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
    assert_eq!(x["receipt_copies"], 1, "{x}");
    shop.close_session(session, x["cash"]["expected_cash"].as_str().unwrap())
        .await;
    let response = shop
        .app
        .post_as("/api/v1/closings", &shop.manager, &json!({"kind": "day"}))
        .await;
    assert_eq!(response.status(), 201, "{}", response.text().await.unwrap());
    let closing: Value = response.json().await.unwrap();
    assert_eq!(
        closing["report"]["figures"]["receipt_copies"], 1,
        "{closing}"
    );
    shop.app.clock.advance(chrono::Duration::seconds(1));
    let copy = receipt(&shop, &path).await.text().await.unwrap();
    assert!(copy.contains("*** COPY 2 ***"), "{copy}");
    let database: String = sqlx::query_scalar("SELECT current_database()")
        .fetch_one(&shop.app.pool)
        .await
        .unwrap();
    let mut command = plugpos();
    command
        .args(["closing", "verify", "--data-dir"])
        .arg(shop.app.data_dir.path())
        .env("PLUGPOS_DATABASE__URL", database_url(&database));
    let output = crate::helpers::run(command).await;
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    // The next day's Z counts that reprint: every copy in exactly one day closing.
    shop.app.clock.advance(chrono::Duration::days(1));
    let manager = shop.app.token("boss", "manager pass 123").await;
    let response = shop
        .app
        .post_as("/api/v1/closings", &manager, &json!({"kind": "day"}))
        .await;
    assert_eq!(response.status(), 201, "{}", response.text().await.unwrap());
    let next: Value = response.json().await.unwrap();
    assert_eq!(next["report"]["figures"]["receipt_copies"], 1, "{next}");
    let cashier = shop.app.token("carla", "cashier pass 123").await;

    problem(
        shop.app
            .get_as(&format!("/api/v1/sales/{id}/receipt?format=doc"), &cashier)
            .await,
        422,
        "validation.failed",
    )
    .await;
}

/// `PUT /api/v1/registers/{id}/printer` of the shop's register as `token`.
async fn set_printer(shop: &Shop, token: &str, body: &Value) -> reqwest::Response {
    let url = format!("/api/v1/registers/{}/printer", shop.register);
    shop.app
        .client
        .put(shop.app.url(&url))
        .bearer_auth(token)
        .json(body)
        .send()
        .await
        .unwrap()
}

/// `POST /api/v1/sales/{id}/print` as the cashier, with an Idempotency-Key if given.
async fn print(shop: &Shop, id: &str, key: Option<&str>) -> reqwest::Response {
    let mut request = shop
        .app
        .client
        .post(shop.app.url(&format!("/api/v1/sales/{id}/print")))
        .bearer_auth(&shop.cashier);
    if let Some(key) = key {
        request = request.header("Idempotency-Key", key);
    }
    request.send().await.unwrap()
}

/// A printer on 127.0.0.1 that records what it is sent, one connection at a time (without the
/// paper status query, `DLE EOT 4`, which it answers with each of `statuses` in turn, then
/// "paper present"; `None`: it does not answer, like printers without the command).
async fn printer_on(
    listener: tokio::net::TcpListener,
    statuses: Option<Vec<u8>>,
) -> tokio::sync::mpsc::Receiver<Vec<u8>> {
    use tokio::io::AsyncWriteExt;
    let (tx, rx) = tokio::sync::mpsc::channel(8);
    tokio::spawn(async move {
        let mut statuses = statuses.map(|s| s.into_iter());
        while let Ok((mut socket, _)) = listener.accept().await {
            let mut query = [0u8; 3];
            socket.read_exact(&mut query).await.unwrap();
            assert_eq!(query, [0x10, 0x04, 0x04], "the paper status query first");
            if let Some(statuses) = &mut statuses {
                let status = statuses.next().unwrap_or(0x12);
                socket.write_all(&[status]).await.unwrap();
                if status & 0x60 == 0x60 {
                    continue;
                }
            }
            let mut bytes = Vec::new();
            socket.read_to_end(&mut bytes).await.unwrap();
            if tx.send(bytes).await.is_err() {
                return;
            }
        }
    });
    rx
}

#[tokio::test]
async fn a_network_printer_gets_each_sale_and_a_refused_print_is_retried() {
    let (shop, _) = shop_with_a_sale().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let mut printed = printer_on(listener, Some(vec![0x12])).await;
    let response = set_printer(
        &shop,
        &shop.manager,
        &json!({"kind": "network", "host": "127.0.0.1", "port": port,
            "auto_print": true, "drawer_kick": true, "version": 0}),
    )
    .await;
    assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
    // A cashier may not set printers up.
    let response = set_printer(&shop, &shop.cashier, &json!({"kind": "none", "version": 1})).await;
    assert_eq!(response.status(), 403);

    // The till listens on the `printer` topic.
    let mut till = crate::live::connect(&shop, &shop.cashier).await;
    assert_eq!(crate::live::next(&mut till).await["type"], "welcome");
    crate::live::send(
        &mut till,
        json!({"type": "subscribe", "topics": ["printer"]}),
    )
    .await;
    assert_eq!(crate::live::next(&mut till).await["type"], "subscribed");

    // A cash sale made after that prints by itself (queued after the sale answered), with the
    // drawer kick (the one before it does not).
    shop.app.clock.advance(chrono::Duration::seconds(1));
    let bread = sqlx::query_scalar::<_, uuid::Uuid>("SELECT id FROM products WHERE sku = 'BREAD'")
        .fetch_one(&shop.app.pool)
        .await
        .unwrap()
        .to_string();
    let response = shop
        .sell(
            &shop.cashier,
            "print-1",
            &shop.cash_sale(&bread, "1", "2.00"),
        )
        .await;
    assert_eq!(response.status(), 201);
    let sale: Value = response.json().await.unwrap();
    let mut done = Vec::new();
    for _ in 0..100 {
        done = shop.app.run_jobs().await;
        if !done.is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(done.len(), 1);
    assert_eq!(done[0].kind, "receipts.print");
    assert_eq!(done[0].status, "succeeded", "{:?}", done[0].last_error);
    let bytes = printed.recv().await.unwrap();
    assert!(bytes.starts_with(b"\x1b@"));
    assert!(
        bytes.windows(5).any(|w| w == b"\x1bp\x00\x19\xfa"),
        "drawer kick"
    );
    assert!(bytes.ends_with(b"\x1dVB\x03"));
    let number = sale["receipt_number"].as_str().unwrap();
    assert!(
        bytes.windows(number.len()).any(|w| w == number.as_bytes()),
        "{number}: {}",
        String::from_utf8_lossy(&bytes)
    );
    assert!(!bytes.windows(4).any(|w| w == b"COPY"), "the original");
    let event = crate::live::next(&mut till).await;
    assert_eq!(
        (
            &event["topic"],
            &event["event"],
            &event["data"]["document_id"]
        ),
        (&json!("printer"), &json!("print.done"), &sale["id"]),
        "{event}"
    );

    // The printer goes away: the print is refused, the job fails and is retried later.
    drop(printed);
    let gone = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let gone_port = gone.local_addr().unwrap().port();
    drop(gone);
    let response = set_printer(
        &shop,
        &shop.manager,
        &json!({"kind": "network", "host": "127.0.0.1", "port": gone_port, "version": 1}),
    )
    .await;
    assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
    let id = sale["id"].as_str().unwrap();
    let response = print(&shop, id, Some("reprint-1")).await;
    assert_eq!(response.status(), 202);
    let queued: Value = response.json().await.unwrap();
    assert_eq!(queued["copy"], 1);
    let again: Value = print(&shop, id, Some("reprint-1"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(again, queued, "a retried request queues nothing new");
    let failed = shop.app.run_jobs().await;
    let kinds: Vec<_> = failed.iter().map(|j| (&j.kind, &j.status)).collect();
    assert_eq!(failed.len(), 1, "{kinds:?}");
    assert_eq!(failed[0].status, "failed");
    assert!(
        failed[0]
            .last_error
            .as_deref()
            .unwrap()
            .contains("cannot reach the printer"),
        "{:?}",
        failed[0].last_error
    );
    let event = crate::live::next(&mut till).await;
    assert_eq!(event["event"], "print.failed", "{event}");
    assert_eq!(event["data"]["will_retry"], true);
    assert!(
        event["data"]["reason"]
            .as_str()
            .unwrap()
            .contains("cannot reach the printer")
    );
    // The printer is back on the same port; once the backoff has passed the copy prints.
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", gone_port))
        .await
        .unwrap();
    let mut printed = printer_on(listener, None).await;
    assert!(shop.app.run_jobs().await.is_empty(), "not before its time");
    shop.app.clock.advance(chrono::Duration::minutes(1));
    // (The flags review of the discounted sale falls due too.)
    let retried: Vec<_> = shop
        .app
        .run_jobs()
        .await
        .into_iter()
        .filter(|j| j.kind == "receipts.print")
        .collect();
    assert_eq!(retried.len(), 1);
    assert_eq!(
        retried[0].status, "succeeded",
        "{:?}",
        retried[0].last_error
    );
    assert_eq!(retried[0].attempts, 2);
    let bytes = printed.recv().await.unwrap();
    assert!(bytes.windows(14).any(|w| w == b"*** COPY 1 ***"));
    assert!(
        !bytes.windows(2).any(|w| w == b"\x1bp"),
        "a copy opens no drawer"
    );
    assert_eq!(crate::live::next(&mut till).await["event"], "print.done");

    // Out of paper (the roll sensor says so): the attempt fails and is retried with paper in.
    drop(printed);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let paper_port = listener.local_addr().unwrap().port();
    let mut printed = printer_on(listener, Some(vec![0x72])).await;
    let response = set_printer(
        &shop,
        &shop.manager,
        &json!({"kind": "network", "host": "127.0.0.1", "port": paper_port, "version": 2,
            "encoding": "utf8", "width_mm": 58}),
    )
    .await;
    assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
    let response = print(&shop, id, None).await;
    assert_eq!(response.status(), 202);
    let failed: Vec<_> = shop
        .app
        .run_jobs()
        .await
        .into_iter()
        .filter(|j| j.kind == "receipts.print")
        .collect();
    assert_eq!(failed[0].status, "failed");
    assert!(
        failed[0]
            .last_error
            .as_deref()
            .unwrap()
            .contains("out of paper")
    );
    let event = crate::live::next(&mut till).await;
    assert!(
        event["data"]["reason"]
            .as_str()
            .unwrap()
            .contains("out of paper"),
        "{event}"
    );
    shop.app.clock.advance(chrono::Duration::minutes(1));
    let retried: Vec<_> = shop
        .app
        .run_jobs()
        .await
        .into_iter()
        .filter(|j| j.kind == "receipts.print")
        .collect();
    assert_eq!(
        retried[0].status, "succeeded",
        "{:?}",
        retried[0].last_error
    );
    let bytes = printed.recv().await.unwrap();
    assert!(bytes.windows(14).any(|w| w == b"*** COPY 2 ***"));
    // UTF-8 mode (FS ( C, encoding 2) and 58 mm paper: text as UTF-8, QR modules of 4 dots.
    assert!(bytes.windows(7).any(|w| w == b"\x1c(C\x02\x000\x02"));
    let eglise = "Église".as_bytes();
    assert!(bytes.windows(eglise.len()).any(|w| w == eglise));
    assert!(bytes.windows(8).any(|w| w == b"\x1d(k\x03\x001C\x04"));
    let rules: Vec<usize> = bytes
        .split(|b| *b == b'\n')
        .filter(|line| !line.is_empty() && line.iter().all(|b| *b == b'-'))
        .map(<[u8]>::len)
        .collect();
    assert!(
        !rules.is_empty() && rules.iter().all(|n| *n == 32),
        "{rules:?}"
    );

    // A register without a network printer: the till prints itself.
    let response = set_printer(&shop, &shop.manager, &json!({"kind": "none", "version": 2})).await;
    assert_eq!(response.status(), 409, "a stale version");
    let response = set_printer(&shop, &shop.manager, &json!({"kind": "none", "version": 3})).await;
    assert_eq!(response.status(), 200);
    problem(print(&shop, id, None).await, 409, "receipt.no_printer").await;
}
