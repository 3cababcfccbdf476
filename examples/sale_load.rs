//! Load generator for `bench/sale_throughput.py`: N concurrent clients post sales for S seconds
//! and the tool prints one JSON line with the count, throughput and latency percentiles.
//!
//! Usage: sale_load BASE_URL CLIENTS SECONDS SETUP.json [me]
//! SETUP.json: {"tokens": [...], "registers": [...], "products": [...]}; client i uses token and
//! register i mod their count (one cashier per register, like a shop), three random products per
//! sale, paid in cash. With `me`, the clients send `GET /api/v1/auth/me` instead (the cheapest
//! authenticated request: what the server costs before a sale does any work).

use std::time::{Duration, Instant};

use rand::Rng;
use serde_json::{Value, json};

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (base, clients, seconds, setup, me) = match args.as_slice() {
        [_, base, clients, seconds, setup] => (base, clients, seconds, setup, false),
        [_, base, clients, seconds, setup, mode] if mode == "me" => {
            (base, clients, seconds, setup, true)
        }
        _ => {
            eprintln!("usage: sale_load BASE_URL CLIENTS SECONDS SETUP.json [me]");
            std::process::exit(2);
        }
    };
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
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut errors = 0u64;
            while Instant::now() < deadline {
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
