//! Webhooks: the shop's other systems are told of sales, returns, closings, low stock and failed
//! backups as they happen.
//!
//! The server's live events (the WebSocket's, `Hub::tap`) are watched by [`dispatch`]; each event a
//! webhook wants becomes a delivery (a row keeping the exact body, with the event's id) and a job
//! (`webhooks.deliver`) in one transaction. The job POSTs the body with
//! `Plugpos-Signature: t=<unix time>,v1=<hex HMAC-SHA256 of "<t>.<body>" under the webhook's secret>`
//! (as Stripe signs), `Plugpos-Event-Id` and `Plugpos-Event`; anything but a 2xx answer (or no
//! answer in 10 s) fails the attempt, and the job queue tries again with backoff, up to
//! [`DELIVER`]'s attempts, after which the delivery is dead. A person can replay any delivery:
//! the same body and event id, signed anew, so receivers drop what they have seen by its id.
//!
//! A webhook cannot be made into a probe of the network: its URL's host must be allowed by the
//! setting `integrations.webhook_targets` (IP ranges such as `192.168.1.0/24`, or exact host
//! names), empty by default, so no webhook can be made until an admin names where they may go.
//! The host is resolved at each delivery and every address it resolves to must be allowed (a
//! listed host name is trusted as named, but never to this machine, link-local addresses or
//! multicast unless a listed range holds them); the request goes to the address that was checked,
//! through no proxy, and redirects are not followed. Ports are not limited: within the allowed
//! ranges, an admin's webhook may reach any port.

pub mod http;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use chrono::{DateTime, Utc};
use hmac::{KeyInit, Mac};
use serde::Serialize;
use serde_json::{Value, json};
use sqlx::PgConnection;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::core::jobs::runner::{Handler, JobContext};
use crate::core::jobs::{self, JobKind};
use crate::core::live::Published;
use crate::core::settings::{DefaultValue, Setting, SettingType};
use crate::core::state::{AppState, WeakState};
use crate::shared::ids::new_id;

/// The events a webhook may want.
pub const EVENTS: &[&str] = &[
    "sale.completed",
    "return.created",
    "closing.created",
    "stock.low",
    "backup.failed",
];

/// The setting that says where webhooks may go.
pub const TARGETS: &str = "integrations.webhook_targets";

/// The settings webhooks read.
pub const SETTINGS: &[Setting] = &[Setting::new(
    TARGETS,
    SettingType::Lines {
        max_items: 50,
        max_chars: 253,
    },
    DefaultValue::EmptyList,
    "Where webhooks may send events: IP ranges (192.168.1.0/24, 10.0.0.7) or exact host names (erp.shop.lan). Empty: no webhook may be made.",
)
.guarded(
    "administration.integrations.read",
    "administration.integrations.manage",
)
.with_rule(targets_rule)];

/// The delivery job: each attempt POSTs once.
pub const DELIVER: JobKind = JobKind {
    name: "webhooks.deliver",
    max_attempts: 8,
    description: "Deliver one event to a webhook (retried with backoff, then dead)",
    retryable: true,
};

/// How long a receiver has to answer.
const TIMEOUT: Duration = Duration::from_secs(10);
/// The active webhooks kept in memory (one entry).
const WEBHOOK_CACHE: usize = 1;

/// One allowed target: a range of addresses or an exact host name.
#[derive(Debug, Clone, PartialEq)]
enum Target {
    Range(ipnet::IpNet),
    Host(String),
}

fn parse_target(text: &str) -> Option<Target> {
    let text = text.trim();
    if let Ok(net) = text.parse::<ipnet::IpNet>() {
        return Some(Target::Range(net));
    }
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Some(Target::Range(ipnet::IpNet::from(ip)));
    }
    let host = text.to_ascii_lowercase();
    let valid = !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|l| {
            (1..=63).contains(&l.len())
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        });
    valid.then_some(Target::Host(host))
}

fn targets_rule(value: &Value) -> Result<(), String> {
    let lines = value.as_array().map(Vec::as_slice).unwrap_or_default();
    match lines
        .iter()
        .filter_map(Value::as_str)
        .find(|l| parse_target(l).is_none())
    {
        Some(bad) => Err(format!(
            "`{bad}` is neither an IP range (192.168.1.0/24), an address nor a host name"
        )),
        None => Ok(()),
    }
}

/// The allowed targets, from the stored setting.
async fn targets(conn: &mut PgConnection) -> Result<Vec<Target>, sqlx::Error> {
    let stored = crate::core::settings::store::load(conn).await?;
    Ok(stored
        .values
        .get(TARGETS)
        .and_then(Value::as_array)
        .map(|lines| {
            lines
                .iter()
                .filter_map(Value::as_str)
                .filter_map(parse_target)
                .collect()
        })
        .unwrap_or_default())
}

/// Why `url` may not be a webhook's (`None`: it may, as far as its name goes).
fn url_refusal(url: &str, allowed: &[Target]) -> Option<String> {
    let Ok(parsed) = reqwest::Url::parse(url) else {
        return Some("is not a URL".to_owned());
    };
    if !matches!(parsed.scheme(), "http" | "https") {
        return Some("must be http:// or https://".to_owned());
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Some("must not carry a user or password".to_owned());
    }
    let Some(host) = parsed.host_str() else {
        return Some("has no host".to_owned());
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let allowed_here = match host.parse::<IpAddr>() {
        Ok(ip) => in_ranges(ip, allowed),
        Err(_) => allowed.iter().any(|t| match t {
            Target::Host(name) => name.eq_ignore_ascii_case(host),
            // A name's addresses are checked when it is resolved, at each delivery.
            Target::Range(_) => true,
        }),
    };
    (!allowed_here)
        .then(|| format!("`{host}` is not among the allowed targets (setting {TARGETS})"))
}

/// Is `ip` (IPv4-mapped addresses as IPv4) in one of the allowed ranges?
fn in_ranges(ip: IpAddr, allowed: &[Target]) -> bool {
    let ip = ip.to_canonical();
    allowed
        .iter()
        .any(|t| matches!(t, Target::Range(net) if net.contains(&ip)))
}

/// This machine, the link-local network, no address, multicast.
fn is_special(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            v4.is_loopback()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_multicast()
                || v4.is_broadcast()
        }
        IpAddr::V6(v6) => {
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (v6.segments()[0] & 0xffc0) == 0xfe80
        }
    }
}

/// The address to send to: the URL's host resolved, every address allowed (a listed host name
/// is trusted as named).
async fn resolve(url: &reqwest::Url, allowed: &[Target]) -> anyhow::Result<SocketAddr> {
    let host = url.host_str().context("the URL has no host")?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let port = url.port_or_known_default().unwrap_or(80);
    let named = allowed
        .iter()
        .any(|t| matches!(t, Target::Host(name) if name.eq_ignore_ascii_case(host)));
    // A listed name is trusted as named, but never to this machine or the link-local network
    // (cloud metadata) unless a listed range says so.
    let reachable =
        |ip: IpAddr| in_ranges(ip, allowed) || (named && !is_special(ip.to_canonical()));
    let addresses: Vec<SocketAddr> = tokio::net::lookup_host((host, port))
        .await
        .with_context(|| format!("cannot resolve {host}"))?
        .collect();
    let first = *addresses
        .first()
        .with_context(|| format!("{host} has no address"))?;
    if let Some(outside) = addresses.iter().find(|a| !reachable(a.ip())) {
        bail!(
            "{host} resolves to {}, which is not among the allowed targets (setting {TARGETS})",
            outside.ip()
        );
    }
    Ok(first)
}

/// The webhook event a live event is, if any: its name and data.
fn as_webhook_event(published: &Published) -> Option<(&'static str, Value)> {
    let data = published.data.clone();
    match (published.topic.as_str(), published.event.as_str()) {
        ("sales", "sale.completed") => Some(("sale.completed", data)),
        ("returns", "return.completed") => {
            Some(("return.created", json!({"kind": "return", "return": data})))
        }
        ("returns", "sale.voided") => {
            Some(("return.created", json!({"kind": "void", "return": data})))
        }
        ("closings", "closing.created") => Some(("closing.created", data)),
        ("stock", "stock.low") => Some(("stock.low", data)),
        ("jobs", "job.failed" | "job.dead")
            if data["kind"]
                .as_str()
                .is_some_and(|k| k.starts_with("backup.")) =>
        {
            Some(("backup.failed", data))
        }
        _ => None,
    }
}

/// An active webhook, as the dispatcher needs it.
#[derive(Debug, Clone, sqlx::FromRow)]
struct Active {
    id: Uuid,
    events: Vec<String>,
}

async fn active(state: &AppState) -> Result<Arc<Vec<Active>>, sqlx::Error> {
    state
        .cache::<(), Arc<Vec<Active>>>(WEBHOOK_CACHE)
        .get_or_read((), || async {
            let rows: Vec<Active> =
                sqlx::query_as("SELECT id, events FROM webhooks WHERE deleted_at IS NULL")
                    .fetch_all(state.pool())
                    .await?;
            Ok::<_, sqlx::Error>(Some(Arc::new(rows)))
        })
        .await
        .map(Option::unwrap_or_default)
}

/// Watches the server's events for as long as the state lives and queues a delivery for each
/// webhook that wants one.
pub async fn dispatch(state: WeakState) {
    let Some(live) = state.upgrade() else {
        return;
    };
    let mut events = live.live().tap();
    drop(live);
    loop {
        let published = match events.recv().await {
            Ok(published) => published,
            Err(tokio::sync::broadcast::error::RecvError::Lagged(lost)) => {
                tracing::error!(
                    lost,
                    "webhooks fell behind the server's events; some were not delivered"
                );
                continue;
            }
            Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
        };
        let Some(state) = state.upgrade() else {
            return;
        };
        if let Some((event, data)) = as_webhook_event(&published)
            && let Err(e) = queue(&state, event, data, published.time).await
        {
            tracing::error!(
                event,
                error = format!("{e:#}"),
                "cannot queue a webhook delivery"
            );
        }
    }
}

/// Queues `event` for every webhook that wants it (one delivery and one job each, one event id).
pub async fn queue(
    state: &AppState,
    event: &str,
    data: Value,
    at: DateTime<Utc>,
) -> anyhow::Result<usize> {
    let hooks = active(state).await?;
    let wanting: Vec<Uuid> = hooks
        .iter()
        .filter(|h| h.events.iter().any(|e| e == event))
        .map(|h| h.id)
        .collect();
    if wanting.is_empty() {
        return Ok(0);
    }
    let event_id = new_id();
    let body = json!({"id": event_id, "type": event, "created_at": at, "data": data}).to_string();
    let mut tx = state.pool().begin().await?;
    for webhook in &wanting {
        let delivery = new_id();
        sqlx::query(
            "INSERT INTO webhook_deliveries (id, webhook_id, event_id, event, body, status, created_at) \
             VALUES ($1, $2, $3, $4, $5, 'pending', $6)",
        )
        .bind(delivery)
        .bind(webhook)
        .bind(event_id)
        .bind(event)
        .bind(&body)
        .bind(at)
        .execute(&mut *tx)
        .await?;
        jobs::enqueue(
            &mut tx,
            &DELIVER,
            json!({"delivery_id": delivery}),
            None,
            state.clock().now(),
        )
        .await?;
    }
    tx.commit().await?;
    Ok(wanting.len())
}

/// The `Plugpos-Signature` header for `body` sent at unix time `t`.
pub fn signature(secret: &[u8], t: i64, body: &str) -> String {
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret)
        .unwrap_or_else(|_| unreachable!("HMAC takes a key of any length"));
    mac.update(t.to_string().as_bytes());
    mac.update(b".");
    mac.update(body.as_bytes());
    format!("t={t},v1={}", hex::encode(mac.finalize().into_bytes()))
}

/// The job handlers of webhooks.
pub fn handlers() -> Vec<Handler> {
    vec![Handler::new(DELIVER, deliver)]
}

#[derive(sqlx::FromRow)]
struct Sending {
    webhook_id: Uuid,
    url: String,
    secret_sealed: Vec<u8>,
    deleted: bool,
    event_id: Uuid,
    event: String,
    body: String,
}

/// One attempt at one delivery.
async fn deliver(ctx: JobContext) -> anyhow::Result<Value> {
    let state = &ctx.state;
    let delivery: Uuid = serde_json::from_value(ctx.job.payload["delivery_id"].clone())
        .context("the job names no delivery")?;
    let mut conn = state.pool().acquire().await?;
    let sending: Option<Sending> = sqlx::query_as(
        "SELECT w.id AS webhook_id, w.url, w.secret_sealed, w.deleted_at IS NOT NULL AS deleted, d.event_id, d.event, d.body \
         FROM webhook_deliveries d JOIN webhooks w ON w.id = d.webhook_id WHERE d.id = $1",
    )
    .bind(delivery)
    .fetch_optional(&mut *conn)
    .await?;
    let Some(sending) = sending else {
        return Ok(json!({"skipped": "the delivery is gone"}));
    };
    if sending.deleted {
        return Ok(json!({"skipped": "the webhook was deleted"}));
    }
    let now = state.clock().now();
    let outcome = send(state, &mut conn, &sending, now).await;
    let last = ctx.job.attempts >= ctx.job.max_attempts;
    let (status, code, error) = match &outcome {
        Ok(code) => ("delivered", Some(i32::from(*code)), None),
        Err((code, e)) => (
            if last { "dead" } else { "failing" },
            code.map(i32::from),
            Some(format!("{e:#}").chars().take(500).collect::<String>()),
        ),
    };
    sqlx::query(
        "UPDATE webhook_deliveries SET status = $2, attempts = attempts + 1, last_status = $3, last_error = $4, \
           last_attempt_at = $5, delivered_at = CASE WHEN $2 = 'delivered' THEN $5 ELSE delivered_at END \
         WHERE id = $1",
    )
    .bind(delivery)
    .bind(status)
    .bind(code)
    .bind(&error)
    .bind(now)
    .execute(&mut *conn)
    .await?;
    match outcome {
        Ok(code) => Ok(json!({"delivery_id": delivery, "status": code})),
        Err((_, e)) => Err(e),
    }
}

/// POSTs the delivery; the receiver's status, or why not (with its status when it answered).
async fn send(
    state: &AppState,
    conn: &mut PgConnection,
    sending: &Sending,
    now: DateTime<Utc>,
) -> Result<u16, (Option<u16>, anyhow::Error)> {
    let fail = |e: anyhow::Error| (None, e);
    let url = reqwest::Url::parse(&sending.url).map_err(|e| fail(e.into()))?;
    let allowed = targets(conn).await.map_err(|e| fail(e.into()))?;
    if let Some(why) = url_refusal(&sending.url, &allowed) {
        return Err(fail(anyhow::anyhow!("the URL {why}")));
    }
    let address = resolve(&url, &allowed).await.map_err(fail)?;
    let secret = state
        .sealing()
        .open(&sending.secret_sealed, sending.webhook_id.as_bytes())
        .map_err(fail)?;
    let host = url.host_str().unwrap_or_default().to_owned();
    let client = reqwest::Client::builder()
        .timeout(TIMEOUT)
        .redirect(reqwest::redirect::Policy::none())
        // A proxy would resolve the name itself, past the check above.
        .no_proxy()
        .resolve(&host, address)
        .build()
        .map_err(|e| fail(e.into()))?;
    let answer = client
        .post(url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header("Plugpos-Event-Id", sending.event_id.to_string())
        .header("Plugpos-Event", &sending.event)
        .header(
            "Plugpos-Signature",
            signature(&secret, now.timestamp(), &sending.body),
        )
        .body(sending.body.clone())
        .send()
        .await
        .map_err(|e| fail(anyhow::anyhow!("no answer: {e}")))?;
    let code = answer.status().as_u16();
    if answer.status().is_success() {
        Ok(code)
    } else {
        Err((Some(code), anyhow::anyhow!("the receiver answered {code}")))
    }
}

/// A webhook as the API shows it (never its secret).
#[derive(Debug, Clone, Serialize, ToSchema, sqlx::FromRow)]
pub struct Webhook {
    pub id: Uuid,
    pub url: String,
    pub events: Vec<String>,
    pub created_at: DateTime<Utc>,
    pub created_by: Uuid,
}

/// One delivery, for the log.
#[derive(Debug, Clone, Serialize, ToSchema, sqlx::FromRow)]
pub struct Delivery {
    pub id: Uuid,
    pub webhook_id: Uuid,
    /// The event's id: the same in every attempt and replay.
    pub event_id: Uuid,
    pub event: String,
    /// `pending`, `delivered`, `failing` (attempts left) or `dead`.
    pub status: String,
    pub attempts: i32,
    /// The receiver's last answer.
    pub last_status: Option<i32>,
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub last_attempt_at: Option<DateTime<Utc>>,
    pub delivered_at: Option<DateTime<Utc>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_are_ranges_addresses_or_host_names() {
        let allowed: Vec<Target> = ["192.168.1.0/24", "10.0.0.7", "ERP.shop.lan"]
            .into_iter()
            .map(|t| parse_target(t).unwrap())
            .collect();
        assert_eq!(url_refusal("http://192.168.1.40:8080/hook", &allowed), None);
        assert_eq!(url_refusal("https://erp.shop.lan/in", &allowed), None);
        assert_eq!(url_refusal("http://10.0.0.7/", &allowed), None);
        for bad in [
            "http://10.0.0.8/",
            "http://169.254.169.254/latest/meta-data",
            "http://127.0.0.1:5432/",
            "ftp://192.168.1.4/",
            "http://user:pw@192.168.1.4/",
            "not a url",
        ] {
            assert!(url_refusal(bad, &allowed).is_some(), "{bad}");
        }
        assert!(
            url_refusal("http://192.168.1.40/", &[]).is_some(),
            "none by default"
        );
        assert!(targets_rule(&json!(["10.0.0.0/8", "erp.lan"])).is_ok());
        assert!(targets_rule(&json!(["10.0.0.0/33"])).is_err());
        assert!(targets_rule(&json!(["not a host!"])).is_err());
    }

    #[test]
    fn the_signature_is_an_hmac_of_time_dot_body() {
        // RFC 4231 test case 2's key and data, split as "<t>.<body>" would be.
        let secret = b"Jefe";
        let shown = signature(secret, 1_700_000_000, r#"{"id":1}"#);
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret).unwrap();
        mac.update(b"1700000000.{\"id\":1}");
        let expected = hex::encode(mac.finalize().into_bytes());
        assert_eq!(shown, format!("t=1700000000,v1={expected}"));
        let mut known = hmac::Hmac::<sha2::Sha256>::new_from_slice(b"Jefe").unwrap();
        known.update(b"what do ya want for nothing?");
        assert_eq!(
            hex::encode(known.finalize().into_bytes()),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
