//! Load generator for `bench/sale_throughput.py`: N concurrent clients post sales for S seconds
//! and the tool prints one JSON line with the count, throughput and latency percentiles.
//!
//! Usage: sale_load BASE_URL CLIENTS SECONDS SETUP.json [me|returns]
//! SETUP.json: {"tokens": [...], "registers": [...], "products": [...]}; client i uses token and
//! register i mod their count (one cashier per register, like a shop), three random products per
//! sale, paid in cash. With `me`, the clients send `GET /api/v1/auth/me` instead (the cheapest
//! authenticated request: what the server costs before a sale does any work). With `returns`,
//! they give back sale lines instead (`POST /api/v1/returns`, one line, refunded in cash), taken
//! in order from SETUP.json's `"returnable": {register: [[sale_id, line_no, amount], ...]}`.

use std::time::{Duration, Instant};

use rand::Rng;
use serde_json::{Value, json};

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (base, clients, seconds, setup, mode) = match args.as_slice() {
        [_, base, clients, seconds, setup] => (base, clients, seconds, setup, ""),
        [_, base, clients, seconds, setup, mode] if mode == "me" || mode == "returns" => {
            (base, clients, seconds, setup, mode.as_str())
        }
        _ => {
            eprintln!("usage: sale_load BASE_URL CLIENTS SECONDS SETUP.json [me|returns]");
            std::process::exit(2);
        }
    };
    let (me, returns) = (mode == "me", mode == "returns");
    let clients: usize = clients.parse().expect("CLIENTS is a number");
    let seconds: u64 = seconds.parse().expect("SECONDS is a number");
    let setup: Value =
        serde_json::from_slice(&std::fs::read(setup).expect("SETUP.json readable")).expect("JSON");
    let list = |key: &str| -> Vec<String> {
        setup[key]
            .as_array()
            .expect("a list")
            .iter()
            .map(|v| v.as_str().expect("a string").to_owned())
            .collect()
    };
    let (tokens, registers, products) = (list("tokens"), list("registers"), list("products"));
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(clients)
        .build()
        .expect("client");
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let mut tasks = Vec::new();
    for i in 0..clients {
        let (client, base) = (client.clone(), base.clone());
        let token = tokens[i % tokens.len()].clone();
        let register = registers[i % registers.len()].clone();
        let products = products.clone();
        // This client's share of its register's returnable lines (clients of one register take
        // every k-th one, so no two give back the same line).
        let sharing = (0..clients)
            .filter(|c| c % registers.len() == i % registers.len())
            .count();
        let rank = (0..i)
            .filter(|c| c % registers.len() == i % registers.len())
            .count();
        let mut returnable: Vec<Value> = setup["returnable"][&register]
            .as_array()
            .map(|l| {
                l.iter()
                    .skip(rank)
                    .step_by(sharing.max(1))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        returnable.reverse();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut errors = 0u64;
            while Instant::now() < deadline {
                let give_back = if returns {
                    match returnable.pop() {
                        Some(line) => Some(line),
                        None => break,
                    }
                } else {
                    None
                };
                let lines: Vec<Value> = {
                    let mut rng = rand::rng();
                    (0..3)
                        .map(|_| {
                            json!({"product_id": products[rng.random_range(0..products.len())], "quantity": "1"})
                        })
                        .collect()
                };
                let body = json!({"register_id": register, "lines": lines,
                                  "payments": [{"method": "cash", "amount": "400.00"}]});
                let started = Instant::now();
                let request = if me {
                    client.get(format!("{base}/api/v1/auth/me"))
                } else if let Some(line) = &give_back {
                    client
                        .post(format!("{base}/api/v1/returns"))
                        .header("Idempotency-Key", uuid::Uuid::now_v7().to_string())
                        .json(&json!({"register_id": register, "original_sale_id": line[0],
                                      "lines": [{"line_no": line[1], "quantity": "1"}],
                                      "refunds": [{"method": "cash", "amount": line[2]}],
                                      "reason_code": "changed_mind"}))
                } else {
                    client
                        .post(format!("{base}/api/v1/sales"))
                        .header("Idempotency-Key", uuid::Uuid::now_v7().to_string())
                        .json(&body)
                };
                let response = request.bearer_auth(&token).send().await;
                let expected = if me { 200 } else { 201 };
                match response {
                    Ok(r) if r.status() == expected => {
                        let _ = r.bytes().await;
                        latencies.push(started.elapsed().as_secs_f64() * 1000.0);
                    }
                    Ok(r) => {
                        errors += 1;
                        if errors < 3 {
                            eprintln!("{}: {}", r.status(), r.text().await.unwrap_or_default());
                        }
                    }
                    Err(e) => {
                        errors += 1;
                        eprintln!("{e}");
                    }
                }
            }
            (latencies, errors)
        }));
    }
    let mut latencies = Vec::new();
    let mut errors = 0;
    for task in tasks {
        let (l, e) = task.await.expect("client task");
        latencies.extend(l);
        errors += e;
    }
    latencies.sort_by(f64::total_cmp);
    let pct = |p: f64| {
        latencies
            .get(((latencies.len() as f64 * p) as usize).min(latencies.len().saturating_sub(1)))
            .copied()
            .unwrap_or(f64::NAN)
    };
    println!(
        "{}",
        json!({
            "clients": clients, "seconds": seconds, "sales": latencies.len(), "errors": errors,
            "tps": latencies.len() as f64 / seconds as f64,
            "p50_ms": pct(0.50), "p99_ms": pct(0.99),
        })
    );
}
