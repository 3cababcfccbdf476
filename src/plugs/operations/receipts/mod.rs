//! `operations.receipts`: the receipt of a sale, return or void as data, monospaced text (58
//! and 80 mm), ESC/POS bytes and PDF (A6 receipt, A4 invoice), each with a fiscal block whose
//! QR code is signed by the instance key and can be checked by anyone (`POST
//! /api/v1/receipts/verify`, `plugpos receipt verify`); every render after the first is a
//! numbered, counted and audited copy; a register's network printer gets its receipts through
//! the job runner.
//!
//! `fiscal.rs` (the QR text: build, sign, read), `model.rs` (the receipt as data), `text.rs`
//! (the column layouts), `escpos.rs` and `pdf.rs` (the other renderings) are pure; `issue.rs`
//! gathers a document and what its receipt prints; `verify.rs` checks a code; `print.rs` is the
//! printer delivery; `store.rs` the module's SQL; `http.rs` the handlers.

pub mod escpos;
pub mod fiscal;
pub mod http;
pub mod issue;
pub mod model;
pub mod pdf;
pub mod print;
pub mod store;
pub mod text;
pub mod verify;

use futures_util::FutureExt;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::core::auth::access::{Access, declare};
use crate::core::jobs::runner::Handler;
use crate::core::modules::{Dependency, Module, ModulePermission, Topic, Verified, Verifier};
use crate::core::settings::{DefaultValue, Setting, SettingType};
use crate::core::state::AppState;
use crate::plugs::operations::api::cash::ReceiptCopiesSource;
use crate::plugs::operations::api::sales::AfterSale;

pub(crate) const MODULE: &str = "operations.receipts";

/// Render and print receipts (every render after the first is a counted copy).
pub const PRINT: &str = "operations.receipts.print";
/// Set up a register's receipt printer.
pub const PRINTERS: &str = "operations.receipts.printers";
/// The topic of print outcomes.
pub const TOPIC: &str = "printer";

const PERMISSIONS: &[ModulePermission] = &[
    ModulePermission {
        name: PRINT,
        description: "Print receipts and their copies (each copy is counted and audited)",
        roles: &["cashier", "manager"],
    },
    ModulePermission {
        name: PRINTERS,
        description: "Set up a register's receipt printer",
        roles: &["manager"],
    },
];

const DEPENDENCIES: &[Dependency] = &[
    Dependency {
        id: "management.customers",
        requirement: "^1",
    },
    Dependency {
        id: "operations.sales",
        requirement: "^1",
    },
    Dependency {
        id: "operations.returns",
        requirement: "^1",
    },
    Dependency {
        id: "operations.cash",
        requirement: "^1",
    },
    Dependency {
        id: "administration.places",
        requirement: "^1",
    },
];

const TOPICS: &[Topic] = &[Topic {
    name: TOPIC,
    permission: PRINT,
    description: "print.done, print.failed (with the reason; retried while the printer is off)",
}];

const SETTINGS: &[Setting] = &[
    Setting::new(
        issue::ADDRESS,
        SettingType::Lines {
            max_items: 4,
            max_chars: 48,
        },
        DefaultValue::EmptyList,
        "The business's address as printed under its name on receipts (up to 4 lines).",
    ),
    Setting::new(
        issue::TAX_ID,
        SettingType::Text { max_chars: 32 },
        DefaultValue::Unset,
        "The business's tax id (VAT number), printed on receipts and stated in their signed QR code; null: none.",
    )
    .with_reason(),
    Setting::new(
        issue::FOOTER,
        SettingType::Lines {
            max_items: 6,
            max_chars: 48,
        },
        DefaultValue::EmptyList,
        "Lines printed at the foot of receipts (returns policy, thanks).",
    ),
];

const VERIFIERS: &[Verifier] = &[Verifier {
    name: "receipt",
    run: |pool, keys, args| verify_code(pool, keys, args).boxed(),
}];

/// `plugpos receipt verify CODE`.
async fn verify_code(
    pool: &sqlx::PgPool,
    keys: &std::path::Path,
    args: &[String],
) -> anyhow::Result<Verified> {
    let code = args.first().map(String::as_str).unwrap_or_default();
    let scanned = fiscal::parse(code).map_err(|why| anyhow::anyhow!("{why}"))?;
    let key = verify::instance_key(keys);
    let mut conn = pool.acquire().await?;
    // The command line is the shop's own machine: it compares even an unsigned code.
    let verdict = verify::check(&mut conn, &scanned, key.as_deref(), true).await?;
    Ok(Verified {
        ok: verdict.signature_valid && verdict.record_matches,
        checked: 1,
        problems: verdict.problems,
    })
}

/// The module.
pub struct Receipts;

impl Module for Receipts {
    fn id(&self) -> &'static str {
        MODULE
    }

    fn version(&self) -> &'static str {
        "1.0.0"
    }

    fn description(&self) -> &'static str {
        "Receipts (text, ESC/POS, PDF) with a signed QR code, counted copies and printer delivery"
    }

    fn dependencies(&self) -> &'static [Dependency] {
        DEPENDENCIES
    }

    fn permissions(&self) -> &'static [ModulePermission] {
        PERMISSIONS
    }

    fn topics(&self) -> &'static [Topic] {
        TOPICS
    }

    fn settings(&self) -> &'static [Setting] {
        SETTINGS
    }

    fn tables(&self) -> &'static [&'static str] {
        &["receipt_copies", "receipt_renders", "receipt_printers"]
    }

    /// Gives cash the copies for the X report, and sales the automatic print.
    fn install(&self, state: &AppState) {
        state.provide(ReceiptCopiesSource(|conn, register, start, end| {
            async move { store::copies_in(conn, &[register], start, end).await }.boxed()
        }));
        state.provide(AfterSale(print::after_sale));
    }

    fn jobs(&self) -> Vec<Handler> {
        vec![Handler::new(print::PRINT, |ctx| print::run(ctx).boxed())]
    }

    fn verifiers(&self) -> &'static [Verifier] {
        VERIFIERS
    }

    fn routes(&self) -> OpenApiRouter<AppState> {
        OpenApiRouter::new()
            .routes(declare(
                Access::Permission(PRINT),
                routes!(http::sale_receipt),
            ))
            .routes(declare(
                Access::Permission(PRINT),
                routes!(http::return_receipt),
            ))
            .routes(declare(
                Access::Permission(PRINT),
                routes!(http::print_sale),
            ))
            .routes(declare(
                Access::Permission(PRINT),
                routes!(http::print_return),
            ))
            .routes(declare(
                Access::Public,
                routes!(http::verify::verify_receipt),
            ))
            .routes(declare(Access::Public, routes!(http::verify::public_key)))
            .routes(declare(
                Access::Permission(PRINT),
                routes!(http::printers::get_printer),
            ))
            .routes(declare(
                Access::Permission(PRINTERS),
                routes!(http::printers::put_printer),
            ))
    }
}
