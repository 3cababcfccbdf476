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
use crate::core::settings::Business;
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
/// How long a printer may take to answer the paper status query; one that does not answer it
/// is printed to all the same.
const STATUS_TIMEOUT: Duration = Duration::from_millis(700);

/// Asks the printer for its roll paper sensor (`DLE EOT 4`); out of paper (bits 5 and 6 of the
/// answer) fails the attempt, so the print is retried once paper is in, rather than lost.
async fn paper_check(
    stream: &mut tokio::net::TcpStream,
    host: &str,
    port: u16,
) -> anyhow::Result<()> {
    use tokio::io::AsyncReadExt;
    tokio::time::timeout(PRINTER_TIMEOUT, stream.write_all(&[0x10, 0x04, 0x04]))
        .await
        .with_context(|| format!("the printer at {host}:{port} did not take a status query"))?
        .with_context(|| format!("the printer at {host}:{port} broke off"))?;
    let mut status = [0u8; 1];
    if let Ok(Ok(1)) = tokio::time::timeout(STATUS_TIMEOUT, stream.read(&mut status)).await
        && status[0] & 0x60 == 0x60
    {
        bail!("the printer at {host}:{port} is out of paper");
    }
    Ok(())
}

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

/// Counts the render (issuing the original receipt the first time), queues the print job and
/// records both, in `tx`; answers the job's id and the copy number.
#[allow(clippy::too_many_arguments)] // What a print is of, by whom and when; each used once.
pub async fn queue(
    state: &AppState,
    tx: &mut AuditedTx,
    business: &Business,
    document: &Document,
    place: &(i64, String),
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
    issue::receipt(state, tx, business, document, place, copy).await?;
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
            // Only sales made while the register printed by itself (this task may run after the
            // printer was set up).
            let made = match &document {
                Document::Sale(s) => s.created_at,
                Document::Correction(d) => d.created_at,
            };
            if printer.updated_at >= made {
                return Ok(());
            }
            let place = issue::audit_place(&state, &document).await?;
            let now = state.clock().now();
            let mut tx =
                AuditedTx::begin(state.pool(), Actor::system("receipts.auto_print"), now).await?;
            let cashier = match &document {
                Document::Sale(s) => s.cashier_id,
                Document::Correction(d) => d.cashier_id,
            };
            queue(&state, &mut tx, &business, &document, &place, cashier, now).await?;
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
    // The drawer opens with the first attempt only: a retry minutes later must not open it.
    match send(state, &job, ctx.job.attempts <= 1).await {
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

async fn send(state: &AppState, job: &PrintJob, first_attempt: bool) -> anyhow::Result<usize> {
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
    // The receipt as issued when the print was asked for (every attempt sends the same bytes).
    let kept = store::issued(&mut conn, document.id())
        .await?
        .context("the receipt to print was never issued")?;
    drop(conn);
    let receipt = serde_json::from_value::<super::model::Receipt>(kept)
        .context("the issued receipt cannot be read")?
        .as_copy(job.copy);
    let encoding = Encoding::parse(&printer.encoding).unwrap_or(Encoding::Cp858);
    let kick = printer.drawer_kick && job.copy == 0 && first_attempt && receipt.moves_cash();
    let bytes = escpos::render(
        &receipt,
        columns(u32::try_from(printer.width_mm).unwrap_or(80)),
        encoding,
        kick,
    );
    let port = u16::try_from(port).context("the printer's port")?;
    // An IPv6 address is stored as written in a URL ([::1]); the resolver takes it bare.
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let mut stream = tokio::time::timeout(
        PRINTER_TIMEOUT,
        tokio::net::TcpStream::connect((host, port)),
    )
    .await
    .with_context(|| format!("the printer at {host}:{port} did not answer in time"))?
    .with_context(|| format!("cannot reach the printer at {host}:{port}"))?;
    paper_check(&mut stream, host, port).await?;
    tokio::time::timeout(PRINTER_TIMEOUT, stream.write_all(&bytes))
        .await
        .with_context(|| format!("the printer at {host}:{port} did not take the receipt in time"))?
        .with_context(|| format!("the printer at {host}:{port} broke off"))?;
    // Every byte was handed over: a failing close must not print the receipt a second time.
    if let Err(e) = tokio::time::timeout(PRINTER_TIMEOUT, stream.shutdown()).await {
        tracing::debug!(error = %e, "a printer connection did not close cleanly");
    }
    Ok(bytes.len())
}
