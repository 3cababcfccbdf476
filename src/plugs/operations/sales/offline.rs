//! Sales an offline till pushes (`core::sync::push`, type `sale`): recorded as the till made
//! them, in the register's receipt series, by the same statement as online sales (run in the
//! push's transaction), with a conflict log entry for what the server would have refused.
//!
//! What the till did is what happened: its prices (a price changed meanwhile, or a product's
//! price list), its tax rates, its discounts (no approval can be checked after the fact), a
//! product archived meanwhile, stock taken below zero. Each of those is recorded and logged; the
//! totals are those the till's lines give by the documented rules (`pricing`), and a till whose
//! stated total they do not give is refused (422 `sync.total_mismatch`): its arithmetic is wrong,
//! and recording other amounts than it took would be worse.

use std::collections::{BTreeMap, HashMap};

use chrono::Datelike;
use futures_util::future::BoxFuture;
use rust_decimal::Decimal;
use serde::Deserialize;
use serde_json::{Map, json};
use uuid::Uuid;

use super::discounts::largest_percent;
use super::prepare::{
    DiscountInput, NewPayment, PreparedSale, apply_discounts, check_payments, discount,
    line_quantity, money, pricing_error,
};
use super::pricing::{LineInput, price};
use super::record::record_in;
use super::store::DiscountRecord;
use super::{CREATE, DISCOUNT, MAX_CASHIER_DISCOUNT};
use crate::core::audit::AuditedTx;
use crate::core::http::ApiError;
use crate::core::http::problem::FieldError;
use crate::core::settings::Business;
use crate::core::state::AppState;
use crate::core::sync::push::{
    ConflictNote, PushDocument, PushKind, PushRun, Pushed, Refusal, number_required,
    pushed_document, sequence_gap,
};
use crate::plugs::administration::api::places;
use crate::plugs::management::api::catalog::{self, SaleProduct};
use crate::plugs::management::api::customers;
use crate::plugs::operations::api::cash;
use crate::shared::money::{round_half_up, show};

/// The document type.
pub const KINDS: &[PushKind] = &[PushKind {
    name: "sale",
    permission: CREATE,
    batch: super::writer::MAX_BATCH * 2,
    record: record_sales,
}];

fn record_sales<'a>(
    state: &'a AppState,
    tx: &'a mut AuditedTx,
    run: &'a PushRun<'a>,
) -> BoxFuture<'a, Result<Vec<Pushed>, Refusal>> {
    Box::pin(record(state, tx, run))
}

pushed_document! {
    /// A sale as the till made it (its `receipt_number` is required).
    struct OfflineSale {
        /// The session the till sold in (opened online, or by a pushed `cash_session_open`).
        cash_session_id: Uuid,
        customer_id: Option<Uuid>,
        lines: Vec<OfflineLine>,
        payments: Vec<NewPayment>,
        discount: Option<DiscountInput>,
        /// The total the till charged.
        total: String,
    }
}

/// A line as the till sold it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct OfflineLine {
    product_id: Uuid,
    quantity: String,
    /// The price the till charged per unit.
    unit_price: String,
    /// The tax rate the till applied (a fraction, as sales show it: "0.19"); default: the
    /// product's tax class's rate now.
    tax_rate: Option<String>,
    discount: Option<DiscountInput>,
}

const MAX_LINES: usize = 500;
const MAX_PAYMENTS: usize = 20;

/// Records a run of pushed sales (all of the till's register) in `tx`.
async fn record(
    state: &AppState,
    tx: &mut AuditedTx,
    run: &PushRun<'_>,
) -> Result<Vec<Pushed>, Refusal> {
    let (prepared, mut conflicts) = prepare_all(state, tx, run).await?;
    check_numbers(tx, run, &prepared).await?;
    let sales: Vec<&PreparedSale> = prepared.iter().collect();
    let (rows, mut provisional) = record_in(tx, &sales, run.now).await?;
    tx.recorded_by_statement(rows.len());
    let mut out = Vec::with_capacity(rows.len());
    for (at, (_, session, number, taken, _)) in rows.into_iter().enumerate() {
        let written = (session, number, provisional[at].take());
        let answer = answer(&run.documents[at], &prepared[at], written, taken)
            .map_err(|e| Refusal::new(at, e))?;
        out.push(Pushed {
            conflicts: std::mem::take(&mut conflicts[at]),
            ..answer
        });
    }
    below_zero(tx, run, &mut out).await?;
    Ok(out)
}

/// Every sale of the run checked and priced as the till made it, with its conflicts so far.
async fn prepare_all(
    state: &AppState,
    tx: &mut AuditedTx,
    run: &PushRun<'_>,
) -> Result<(Vec<PreparedSale>, Vec<Vec<ConflictNote>>), Refusal> {
    let business = Business::cached(state)
        .await?
        .ok_or(ApiError::SetupRequired)
        .map_err(|e| Refusal::new(0, e))?;
    let register = places::register_for_sale(state, run.device.register_id)
        .await?
        .ok_or_else(|| Refusal::new(0, ApiError::invalid("register_id", "is not a register")))?;
    let mut parsed = Vec::with_capacity(run.documents.len());
    for (at, doc) in run.documents.iter().enumerate() {
        if let Some(e) = number_required(doc) {
            return Err(Refusal::new(at, e));
        }
        let sale: OfflineSale = serde_json::from_value(doc.body.clone())
            .map_err(|e| Refusal::new(at, ApiError::invalid("", e.to_string())))?;
        parsed.push(sale);
    }
    let product_ids: Vec<Uuid> = parsed
        .iter()
        .flat_map(|s| s.lines.iter().map(|l| l.product_id))
        .collect();
    let products = catalog::products_for_push(tx, &product_ids).await?;
    let mut prepared = Vec::with_capacity(parsed.len());
    let mut conflicts = Vec::with_capacity(parsed.len());
    // The session each named session's sales go into (itself while open), read once per run.
    let mut sessions = HashMap::new();
    for (at, (doc, sale)) in run.documents.iter().zip(parsed).enumerate() {
        let named = sale.cash_session_id;
        if let std::collections::hash_map::Entry::Vacant(entry) = sessions.entry(named) {
            let into = cash::session_for_push(tx, run.device.register_id, named)
                .await
                .map_err(|e| Refusal::new(at, e))?;
            entry.insert(into);
        }
        let (mut p, mut c) = prepare(
            state,
            run,
            doc,
            sale,
            &products,
            &business,
            register.clone(),
        )
        .await
        .map_err(|e| Refusal::new(at, e))?;
        c.extend(discount_beyond_limit(&p, run, doc, &business));
        if let Some((into, moved)) = sessions.get(&named) {
            p.session_id = *into;
            c.extend(moved.clone());
        }
        prepared.push(p);
        conflicts.push(c);
    }
    Ok((prepared, conflicts))
}

/// A `discount_unapproved` conflict when sale `p` discounts beyond the cashier limit and its user
/// may not (online they would have needed a manager's approval).
fn discount_beyond_limit(
    p: &PreparedSale,
    run: &PushRun<'_>,
    doc: &PushDocument,
    business: &Business,
) -> Option<ConflictNote> {
    let limit = Decimal::from(business.integer(MAX_CASHIER_DISCOUNT, 0));
    let amounts: Vec<(Decimal, Decimal)> = p
        .lines
        .iter()
        .map(|(_, l)| {
            (
                round_half_up(l.quantity * l.unit_price, business.currency_scale),
                l.discount,
            )
        })
        .collect();
    let largest = largest_percent(&amounts);
    (largest > limit && !run.user(doc).permissions.contains(DISCOUNT)).then(|| ConflictNote {
        kind: "discount_unapproved",
        detail: json!({"percent": largest.round_dp(2).normalize().to_string(), "cashier_limit": limit.to_string(),
                       "discount_total": show(p.discount_total(), business.currency_scale)}),
    })
}

/// What became of pushed sale `doc` in the statement: written (session, number, the sale as
/// answered) with the till's number, or why not.
fn answer(
    doc: &PushDocument,
    prepared: &PreparedSale,
    written: (Option<Uuid>, Option<String>, Option<super::store::Sale>),
    taken: bool,
) -> Result<Pushed, ApiError> {
    let (Some(session), Some(number), Some(mut sale)) = written else {
        return Err(match taken {
            true => super::prepare::id_conflict(),
            false => ApiError::Conflict {
                code: "cash.no_open_session",
                detail: format!(
                    "its cash session {} is not the register's open session (closed on the server meanwhile, or never opened: push its cash_session_open first).",
                    prepared.session_id
                ),
            },
        });
    };
    // Another sale took the number meanwhile (the counter had no row to lock): nothing of this
    // run is kept, and the till hears which number is next.
    if doc.receipt_number.as_deref() != Some(number.as_str()) {
        return Err(sequence_gap(doc, &number));
    }
    sale.cash_session_id = session;
    sale.receipt_number = number;
    let mut result = Map::new();
    result.insert("receipt_number".into(), json!(sale.receipt_number));
    result.insert("cash_session_id".into(), json!(session));
    result.insert("total".into(), json!(sale.totals.total));
    Ok(Pushed {
        result,
        conflicts: Vec::new(),
        events: vec![(
            "sales",
            "sale.completed",
            json!({
                "id": sale.id, "receipt_number": sale.receipt_number, "register_id": sale.register_id,
                "cash_session_id": sale.cash_session_id, "cashier_id": sale.cashier_id,
                "currency": sale.currency, "totals": sale.totals, "created_at": sale.created_at,
                "offline": true,
            }),
        )],
    })
}

/// Checks, under the register's receipt counters' row locks (taken here, held to the end of the
/// push's transaction), that the sales carry the register's next numbers, in order; the
/// statement then gives each exactly that number (and the caller checks it did).
async fn check_numbers(
    tx: &mut AuditedTx,
    run: &PushRun<'_>,
    sales: &[PreparedSale],
) -> Result<(), Refusal> {
    let years: Vec<i32> = sales
        .iter()
        .map(|s| s.till_year())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    let rows: Vec<(i32, i64)> = sqlx::query_as(
        "SELECT year, last_number FROM receipt_counters WHERE register_id = $1 AND year = ANY($2) \
         ORDER BY year FOR UPDATE",
    )
    .bind(run.device.register_id)
    .bind(&years)
    .fetch_all(&mut **tx)
    .await?;
    let mut last: BTreeMap<i32, i64> = rows.into_iter().collect();
    for (at, (sale, doc)) in sales.iter().zip(run.documents).enumerate() {
        let year = sale.till_year();
        let next = last.get(&year).copied().unwrap_or(0) + 1;
        let expected = receipt_number(&sale.business, &sale.register_code, year, next);
        if doc.receipt_number.as_deref() != Some(expected.as_str()) {
            return Err(Refusal::new(at, sequence_gap(doc, &expected)));
        }
        last.insert(year, next);
    }
    Ok(())
}

/// Receipt number `seq` of register `code` in `year`, as the sales statement formats it.
fn receipt_number(business: &Business, code: &str, year: i32, seq: i64) -> String {
    let digits = business.receipt_digits;
    business
        .receipt_template(code, year)
        .replace("{number}", &format!("{seq:0digits$}"))
}

/// Adds a `stock_negative` conflict for each line that left its product below zero.
async fn below_zero(
    tx: &mut AuditedTx,
    run: &PushRun<'_>,
    out: &mut [Pushed],
) -> Result<(), sqlx::Error> {
    let ids: Vec<Uuid> = run.documents.iter().map(|d| d.id).collect();
    let rows: Vec<(Uuid, i32, Uuid, String, Decimal, Decimal)> = sqlx::query_as(
        "SELECT l.sale_id, l.line_no, l.product_id, l.sku, l.quantity, l.stock_after FROM sale_lines l \
         WHERE l.sale_id = ANY($1) AND l.stock_after < 0 ORDER BY l.sale_id, l.line_no",
    )
    .bind(&ids)
    .fetch_all(&mut **tx)
    .await?;
    let at: HashMap<Uuid, usize> = ids.iter().enumerate().map(|(i, id)| (*id, i)).collect();
    for (sale, line_no, product, sku, quantity, after) in rows {
        if let Some(&i) = at.get(&sale) {
            out[i].conflicts.push(ConflictNote {
                kind: "stock_negative",
                detail: json!({"line_no": line_no, "product_id": product, "sku": sku,
                               "quantity": quantity.normalize().to_string(), "stock_after": after.normalize().to_string()}),
            });
        }
    }
    Ok(())
}

/// Checks and prices one pushed sale as the till made it; answers it with its conflicts (those
/// known before it is written).
async fn prepare(
    state: &AppState,
    run: &PushRun<'_>,
    doc: &PushDocument,
    sale: OfflineSale,
    products: &HashMap<Uuid, (SaleProduct, bool)>,
    business: &Business,
    register: places::SaleRegister,
) -> Result<(PreparedSale, Vec<ConflictNote>), ApiError> {
    let scale = business.currency_scale;
    let mut errors = Vec::new();
    if sale.lines.is_empty() || sale.lines.len() > MAX_LINES {
        errors.push(FieldError::new(
            "lines",
            format!("must hold 1 to {MAX_LINES} lines"),
        ));
    }
    if sale.payments.is_empty() || sale.payments.len() > MAX_PAYMENTS {
        errors.push(FieldError::new(
            "payments",
            format!("must hold 1 to {MAX_PAYMENTS} payments"),
        ));
    }
    let mut conflicts = Vec::new();
    let (customer_id, prices) = customer_now(state, sale.customer_id, &mut conflicts).await?;
    let on = customers::price_date(business, doc.created_at);
    let Lines {
        mut lines,
        own,
        bases,
        rules,
    } = lines(
        &sale.lines,
        products,
        (prices.as_deref(), on),
        scale,
        &mut errors,
        &mut conflicts,
    );
    let sale_discount = sale
        .discount
        .as_ref()
        .and_then(|d| discount("discount", d, scale, &mut errors));
    let (payments, payment_inputs) = check_payments(&sale.payments, scale, &mut errors);
    let total = money("total".to_owned(), &sale.total, scale, &mut errors);
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    let price_reasons = vec![None; lines.len()];
    let discounts: DiscountRecord =
        apply_discounts(&mut lines, &own, sale_discount, price_reasons, scale)?;
    let inputs: Vec<LineInput> = lines.iter().map(|(_, l)| *l).collect();
    let priced = price(
        &inputs,
        &payment_inputs,
        business.prices_include_tax,
        scale,
        business.cash_rounding,
    )
    .map_err(|e| pricing_error(e, scale))?;
    if Some(priced.total) != total {
        return Err(ApiError::Unprocessable {
            code: "sync.total_mismatch",
            detail: format!(
                "the till's total is {}, but its lines, discounts and taxes come to {} by the documented rules; nothing of it was recorded.",
                sale.total,
                show(priced.total, scale)
            ),
        });
    }
    let overridden = (0..lines.len())
        .filter(|&i| lines[i].1.unit_price != bases[i])
        .collect();
    let prepared = PreparedSale {
        id: doc.id,
        client_id: true,
        key: format!("sync/{}/{}", run.device.id, doc.id),
        request_hash: doc.hash.clone(),
        actor: run.actor(doc),
        cashier_id: doc.user_id,
        register_id: run.device.register_id,
        session_id: sale.cash_session_id,
        register_code: register.code,
        location_id: register.location_id,
        business: business.clone(),
        lines,
        customer_id,
        price_rules: rules,
        bases,
        payments,
        priced,
        overridden,
        discounts,
        approval_ref: None,
        offline: Some(run.origin(doc)),
        till_created_at: Some(doc.created_at),
    };
    Ok((prepared, conflicts))
}

/// The customer a pushed sale names, as they are now, with their group's price lists: an erased
/// or deleted customer is left out (the sale stands, without them) and logged.
async fn customer_now(
    state: &AppState,
    customer_id: Option<Uuid>,
    conflicts: &mut Vec<ConflictNote>,
) -> Result<(Option<Uuid>, Option<std::sync::Arc<customers::GroupPrices>>), ApiError> {
    let Some(id) = customer_id else {
        return Ok((None, None));
    };
    let group = {
        let mut conn = state.pool().acquire().await?;
        customers::group_of(&mut conn, id).await?
    };
    match group {
        None => {
            conflicts.push(ConflictNote {
                kind: "customer_unknown",
                detail: json!({"customer_id": id}),
            });
            Ok((None, None))
        }
        Some(None) => Ok((Some(id), None)),
        Some(Some(group)) => Ok((
            Some(id),
            Some(customers::group_prices(state, &group).await?),
        )),
    }
}

/// A pushed sale's lines as checked, ready for its discounts and pricing.
struct Lines {
    lines: Vec<(SaleProduct, LineInput)>,
    own: Vec<Option<super::discounts::Discount>>,
    /// Each line's price now: the customer's list price, else the catalog's.
    bases: Vec<Decimal>,
    rules: Vec<Option<customers::AppliedRule>>,
}

/// Each line as the till sold it; bad fields go to `errors`, what the server would have refused
/// online (an archived product, another price or tax rate now) to `conflicts`. `prices`: the
/// customer's group's price lists, if any, and the date they apply on.
fn lines(
    sold: &[OfflineLine],
    products: &HashMap<Uuid, (SaleProduct, bool)>,
    prices: (Option<&customers::GroupPrices>, chrono::NaiveDate),
    scale: u32,
    errors: &mut Vec<FieldError>,
    conflicts: &mut Vec<ConflictNote>,
) -> Lines {
    let (prices, on) = prices;
    let mut lines = Vec::with_capacity(sold.len());
    let mut own = Vec::with_capacity(sold.len());
    let mut bases = Vec::with_capacity(sold.len());
    let mut rules = Vec::with_capacity(sold.len());
    for (i, line) in sold.iter().enumerate() {
        let line_no = i + 1;
        let quantity = line_quantity(i, &line.quantity, errors);
        let unit_price = money(
            format!("lines[{i}].unit_price"),
            &line.unit_price,
            scale,
            errors,
        );
        let rate = match &line.tax_rate {
            Some(text) => match crate::shared::money::parse_amount(text, 6) {
                Ok(rate) if rate < Decimal::ONE => Some(rate),
                _ => {
                    errors.push(FieldError::new(
                        format!("lines[{i}].tax_rate"),
                        "must be the rate as a fraction below 1, as sales show it (\"0.19\" for 19 %)",
                    ));
                    None
                }
            },
            None => None,
        };
        let own_discount = match &line.discount {
            Some(d) => discount(&format!("lines[{i}].discount"), d, scale, errors).map(Some),
            None => Some(None),
        };
        let Some((product, archived)) = products.get(&line.product_id) else {
            errors.push(FieldError::new(
                format!("lines[{i}].product_id"),
                "is not a product",
            ));
            continue;
        };
        let (Some(quantity), Some(unit_price), Some(own_discount)) =
            (quantity, unit_price, own_discount)
        else {
            continue;
        };
        if *archived || !product.active {
            conflicts.push(ConflictNote {
                kind: "product_archived",
                detail: json!({"line_no": line_no, "product_id": product.id, "sku": product.sku,
                               "archived": archived, "active": product.active}),
            });
        }
        let applied =
            prices.and_then(|p| p.price(product.id, product.category_id, product.price, on, scale));
        let base = applied.as_ref().map_or(product.price, |a| a.price);
        if unit_price != base {
            conflicts.push(ConflictNote {
                kind: "price_changed",
                detail: json!({"line_no": line_no, "product_id": product.id, "sku": product.sku,
                               "till_price": show(unit_price, scale), "server_price": show(base, scale),
                               "price_list": applied.is_some()}),
            });
        }
        let tax_rate = rate.unwrap_or(product.tax_rate);
        if tax_rate != product.tax_rate {
            conflicts.push(ConflictNote {
                kind: "tax_rate_changed",
                detail: json!({"line_no": line_no, "product_id": product.id, "sku": product.sku,
                               "till_rate": tax_rate.normalize().to_string(), "server_rate": product.tax_rate.normalize().to_string()}),
            });
        }
        rules.push(applied.filter(|a| a.price == unit_price).map(|a| a.rule));
        bases.push(base);
        own.push(own_discount);
        lines.push((
            product.clone(),
            LineInput {
                quantity,
                unit_price,
                discount: Decimal::ZERO,
                tax_rate,
            },
        ));
    }
    Lines {
        lines,
        own,
        bases,
        rules,
    }
}

impl PreparedSale {
    /// The year (business timezone) of a pushed sale's receipt series: the till's.
    fn till_year(&self) -> i32 {
        self.till_created_at
            .unwrap_or_default()
            .with_timezone(&self.business.timezone)
            .year()
    }
}
