//! Delivery to a register's network printer: a `receipts.print` job per print (queued by
//! `POST .../print`, or after a sale when the register prints by itself) sends the receipt's
//! ESC/POS bytes over TCP. A printer that is off, refusing or out of paper fails the attempt and
//! the job runner tries again with its backoff; the till hears `print.done` or `print.failed`
//! (with the reason) on the `printer` topic. A sale never waits for its printer.

use std::time::Duration;

use anyhow::{Context as _, bail};
use chrono::{DateTime, Utc};
use futures_util::future::BoxFuture;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;
use uuid::Uuid;

use super::escpos::{self, Encoding};
use super::issue::{self, Collection, Document};
use super::store::{self, Printer, Render};
use super::text::columns;
use super::{MODULE, TOPIC};
use crate::core::audit::{Actor, AuditedTx, Change};
use crate::core::http::ApiError;
use crate::core::jobs::runner::JobContext;
use crate::core::jobs::{self, JobKind};
use crate::core::state::AppState;

/// The job that sends one receipt to its register's printer.
pub const PRINT: JobKind = JobKind {
    name: "receipts.print",
    max_attempts: 10,
    description: "Send a receipt to its register's network printer (retried while the printer is off or refuses)",
    retryable: true,
};

/// How long a printer may take to accept the connection and the bytes.
const PRINTER_TIMEOUT: Duration = Duration::from_secs(5);

/// What a print job carries: the document and the copy it prints (numbered when it was asked
/// for, so every attempt sends the same bytes).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PrintJob {
    pub document_id: Uuid,
    /// `sale`, `return` or `void`.
    pub kind: String,
    pub register_id: Uuid,
    pub copy: i32,
}

/// A register's printer as stored, or `none`.
pub async fn printer_of(state: &AppState, register_id: Uuid) -> Result<Printer, sqlx::Error> {
    let found = state
        .cache::<Uuid, Option<Printer>>(10_000)
        .get_or_read(register_id, || async {
            let mut conn = state.pool().acquire().await?;
            store::printer(&mut conn, register_id).await.map(Some)
        })
        .await?;
    Ok(found
        .flatten()
        .unwrap_or_else(|| Printer::none(register_id, state.clock().now())))
}

/// Counts the render, queues the print job and records both, in `tx`; answers the job's id and
/// the copy number.
pub async fn queue(
    tx: &mut AuditedTx,
    document: &Document,
    user_id: Uuid,
    now: DateTime<Utc>,
) -> Result<(Uuid, i32), ApiError> {
    let copy = store::count_render(
        tx,
        Render {
            document_id: document.id(),
            kind: document.kind(),
            register_id: document.register_id(),
            format: "print",
            user_id,
            at: now,
        },
    )
    .await?;
    let payload = PrintJob {
        document_id: document.id(),
        kind: document.kind().to_owned(),
        register_id: document.register_id(),
        copy,
    };
    let job = jobs::enqueue(tx, &PRINT, json!(payload), None, now).await?;
    tx.record(
        Change::new(MODULE, "receipt", document.id(), "receipt.print").after(json!({
            "kind": document.kind(), "number": document.number(), "copy": copy,
            "format": "print", "job_id": job.id(),
        })),
    )
    .await?;
    Ok((job.id(), copy))
}

/// After a sale is recorded: print it when its register prints by itself. Spawned, so the sale's
/// answer never waits for it; a failure is logged (the cashier can still print it).
pub fn after_sale(state: AppState, sale_id: Uuid, register_id: Uuid) -> BoxFuture<'static, ()> {
    Box::pin(async move {
        let printed = async {
            let printer = printer_of(&state, register_id).await?;
            if printer.kind != "network" || !printer.auto_print {
                return Ok::<(), ApiError>(());
            }
            let business = issue::business(&state).await?;
            let mut conn = state.pool().acquire().await?;
            let document = issue::find(
                &mut conn,
                Collection::Sales,
                sale_id,
                business.currency_scale,
            )
            .await?;
            drop(conn);
            let now = state.clock().now();
            let mut tx =
                AuditedTx::begin(state.pool(), Actor::system("receipts.auto_print"), now).await?;
            let cashier = match &document {
                Document::Sale(s) => s.cashier_id,
                Document::Correction(d) => d.cashier_id,
            };
            queue(&mut tx, &document, cashier, now).await?;
            tx.commit().await?;
            Ok(())
        };
        if let Err(e) = printed.await {
            tracing::warn!(sale_id = %sale_id, error = ?e, "cannot queue the automatic print of a sale");
        }
    })
}

/// The `receipts.print` job: render the copy and send it.
pub async fn run(ctx: JobContext) -> anyhow::Result<Value> {
    let job: PrintJob =
        serde_json::from_value(ctx.job.payload.clone()).context("a print job's payload")?;
    let state = &ctx.state;
    let event = |outcome: &str, extra: Value| {
        let mut data = json!({
            "job_id": ctx.job.id, "document_id": job.document_id, "kind": job.kind,
            "register_id": job.register_id, "copy": job.copy, "attempt": ctx.job.attempts,
        });
        if let (Some(data), Some(extra)) = (data.as_object_mut(), extra.as_object()) {
            data.extend(extra.clone());
        }
        state.live().publish(TOPIC, outcome, data);
    };
    match send(state, &job).await {
        Ok(bytes) => {
            event("print.done", json!({ "bytes": bytes }));
            Ok(json!({ "bytes": bytes, "copy": job.copy }))
        }
        Err(e) => {
            let last = ctx.job.attempts >= ctx.job.max_attempts;
            event(
                "print.failed",
                json!({ "reason": format!("{e:#}"), "will_retry": !last }),
            );
            Err(e)
        }
    }
}

async fn send(state: &AppState, job: &PrintJob) -> anyhow::Result<usize> {
    let printer = printer_of(state, job.register_id).await?;
    let (Some(host), Some(port)) = (&printer.host, printer.port) else {
        bail!("the register has no network printer any more");
    };
    let business = issue::business(state).await?;
    let collection = match job.kind.as_str() {
        "sale" => Collection::Sales,
        _ => Collection::Returns,
    };
    let mut conn = state.pool().acquire().await?;
    let document = issue::load(
        &mut conn,
        collection,
        job.document_id,
        business.currency_scale,
    )
    .await?
    .context("the document to print does not exist")?;
    let context = issue::context(&mut conn, &business, &document, job.copy).await?;
    drop(conn);
    let place = issue::audit_place(state, &document).await?;
    let receipt = issue::build(state, &business, &document, &context, &place)?;
    let encoding = Encoding::parse(&printer.encoding).unwrap_or(Encoding::Cp858);
    let kick = printer.drawer_kick && job.copy == 0 && receipt.moves_cash();
    let bytes = escpos::render(
        &receipt,
        columns(u32::try_from(printer.width_mm).unwrap_or(80)),
        encoding,
        kick,
    );
    let port = u16::try_from(port).context("the printer's port")?;
    let mut stream = tokio::time::timeout(
        PRINTER_TIMEOUT,
        tokio::net::TcpStream::connect((host.as_str(), port)),
    )
    .await
    .with_context(|| format!("the printer at {host}:{port} did not answer in time"))?
    .with_context(|| format!("cannot reach the printer at {host}:{port}"))?;
    tokio::time::timeout(PRINTER_TIMEOUT, async {
        stream.write_all(&bytes).await?;
        stream.shutdown().await
    })
    .await
    .with_context(|| format!("the printer at {host}:{port} did not take the receipt in time"))?
    .with_context(|| format!("the printer at {host}:{port} broke off"))?;
    Ok(bytes.len())
}
