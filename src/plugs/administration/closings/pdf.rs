//! The Z report as a PDF: the business, the period, the signature's fingerprint, and the
//! report's tables.

use super::http::Closing;
use crate::shared::pdf::{Report, Table, render as render_pdf};

/// Renders `closing`'s Z report.
///
/// Stays whole: it is the printed page, top to bottom, one table after the other; split up, the
/// order of the page would be spread over functions that say nothing more.
pub fn render(closing: &Closing) -> Vec<u8> {
    let r = &closing.report;
    let f = &r.figures;
    let title = match r.kind.as_str() {
        "day" => format!("Z report - day {}", r.business_date),
        "month" => format!("Z report - month of {}", r.business_date),
        _ => format!("Z report - year of {}", r.business_date),
    };
    let fingerprint = closing.signature.get(..32).unwrap_or_default();
    let header = vec![
        format!("Business: {} - branch {}", r.business, r.branch),
        format!(
            "Period: {} to {} ({}, business day from {})",
            r.period_start, r.period_end, r.timezone, r.day_starts_at
        ),
        format!(
            "Closing no. {} - made {} - currency {}",
            r.seq, r.created_at, r.currency
        ),
        format!("Hash: {}", closing.hash),
        format!("Previous closing: {}", r.previous_hash),
        format!(
            "Audit chain head: record {} ({})",
            r.audit_head.seq, &r.audit_head.hash
        ),
        format!(
            "Signature (ed25519) fingerprint: {fingerprint}... key {}",
            closing.public_key.get(..16).unwrap_or_default()
        ),
    ];
    let amount = |s: &str| s.to_owned();
    let tables = vec![
        Table {
            totals: None,
            title: "Documents per register".into(),
            columns: vec![
                ("Register", 16.0, false),
                ("Sales", 10.0, true),
                ("First", 30.0, false),
                ("Last", 30.0, false),
                ("Corr.", 10.0, true),
                ("First corr.", 30.0, false),
                ("Last corr.", 30.0, false),
            ],
            rows: f
                .documents
                .iter()
                .map(|d| {
                    vec![
                        d.register.clone(),
                        d.sales.count.to_string(),
                        d.sales.first.clone().unwrap_or_default(),
                        d.sales.last.clone().unwrap_or_default(),
                        d.corrections.count.to_string(),
                        d.corrections.first.clone().unwrap_or_default(),
                        d.corrections.last.clone().unwrap_or_default(),
                    ]
                })
                .collect(),
        },
        Table {
            totals: None,
            title: "Totals by document type".into(),
            columns: vec![
                ("Type", 40.0, false),
                ("Count", 18.0, true),
                ("Net", 32.0, true),
                ("Tax", 32.0, true),
                ("Total", 32.0, true),
            ],
            rows: [
                ("Sales", &f.totals.sales),
                ("Returns", &f.totals.returns),
                ("Voids", &f.totals.voids),
                ("Net", &f.totals.net),
            ]
            .into_iter()
            .map(|(name, a)| {
                vec![
                    name.to_owned(),
                    a.count.to_string(),
                    amount(&a.net),
                    amount(&a.tax),
                    amount(&a.total),
                ]
            })
            .collect(),
        },
        Table {
            totals: None,
            title: "By payment method".into(),
            columns: vec![
                ("Method", 40.0, false),
                ("Received", 32.0, true),
                ("Refunded", 32.0, true),
                ("Net", 32.0, true),
            ],
            rows: f
                .payments
                .iter()
                .map(|p| {
                    vec![
                        p.method.clone(),
                        amount(&p.received),
                        amount(&p.refunded),
                        amount(&p.net),
                    ]
                })
                .collect(),
        },
        Table {
            totals: None,
            title: "By tax rate".into(),
            columns: vec![
                ("Rate", 40.0, false),
                ("Net", 32.0, true),
                ("Tax", 32.0, true),
                ("Gross", 32.0, true),
            ],
            rows: f
                .taxes
                .iter()
                .map(|t| {
                    vec![
                        t.rate.clone(),
                        amount(&t.net),
                        amount(&t.tax),
                        amount(&t.gross),
                    ]
                })
                .collect(),
        },
        Table {
            totals: None,
            title: "Discounts and cash".into(),
            columns: vec![("Item", 70.0, false), ("Amount", 40.0, true)],
            rows: vec![
                vec!["Discounts given".into(), amount(&f.discounts)],
                vec![
                    "Cash sessions closed".into(),
                    f.cash.sessions_closed.to_string(),
                ],
                vec!["Cash expected".into(), amount(&f.cash.expected)],
                vec!["Cash counted".into(), amount(&f.cash.counted)],
                vec!["Cash variance".into(), amount(&f.cash.variance)],
                vec![
                    "Drawer opened without a sale".into(),
                    f.cash.no_sales.to_string(),
                ],
                vec![
                    "Receipt copies printed".into(),
                    f.receipt_copies.to_string(),
                ],
            ],
        },
        Table {
            totals: None,
            title: "Perpetual grand totals (since the first closing)".into(),
            columns: vec![("Total", 70.0, false), ("Amount", 40.0, true)],
            rows: vec![
                vec!["Sales".into(), amount(&r.grand_totals.sales)],
                vec!["Returns and voids".into(), amount(&r.grand_totals.returns)],
                vec!["Net".into(), amount(&r.grand_totals.net)],
            ],
        },
    ];
    render_pdf(&Report {
        chart: None,
        title,
        header,
        tables,
        footer: format!("{} - closing {} - {}", r.business, r.seq, closing.hash),
        landscape: false,
    })
}
