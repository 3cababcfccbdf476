//! The candidates of a sales batch as the column arrays the writer's statement binds
//! (`record.rs`): one element per sale, line, payment, tax bucket or stock movement.

use chrono::{DateTime, Datelike, Utc};
use rust_decimal::Decimal;
use uuid::Uuid;

use super::prepare::PreparedSale;
use super::store::Sale;
use crate::core::audit::parts;
use crate::plugs::management::api::stock::TakeColumns;
use crate::shared::ids::new_id;

/// The candidates of a batch as the statement's column arrays.
#[derive(Default)]
pub(super) struct SaleColumns {
    pub(super) id: Vec<Uuid>,
    pub(super) register_id: Vec<Uuid>,
    pub(super) year: Vec<i32>,
    pub(super) template: Vec<String>,
    pub(super) digits: Vec<i32>,
    pub(super) cashier_id: Vec<Uuid>,
    pub(super) currency: Vec<String>,
    pub(super) prices_include_tax: Vec<bool>,
    pub(super) net: Vec<Decimal>,
    pub(super) tax: Vec<Decimal>,
    pub(super) total: Vec<Decimal>,
    pub(super) cash_rounding: Vec<Decimal>,
    pub(super) change_due: Vec<Decimal>,
    pub(super) key: Vec<String>,
    pub(super) request_hash: Vec<Vec<u8>>,
    pub(super) audit_id: Vec<Uuid>,
    /// The audit record's `after` as far as the request knows it, without its closing brace.
    pub(super) audit_base: Vec<String>,
    pub(super) username: Vec<Option<String>>,
    pub(super) role: Vec<Option<String>>,
    pub(super) workstation_id: Vec<Option<String>>,
    pub(super) request_id: Vec<Option<String>>,
    /// The id came from the client (so it may exist already).
    pub(super) client: Vec<bool>,
    /// Where each sale takes its goods from (its register's location).
    pub(super) location_id: Vec<Uuid>,
    /// The session each sale may go into (its cashier's, or one they may manage).
    pub(super) session_id: Vec<Uuid>,
    /// What each sale's discounts took off, which discounts those were (JSON, or none), and
    /// the approvals it used.
    pub(super) discount_total: Vec<Decimal>,
    pub(super) discount_detail: Vec<Option<String>>,
    pub(super) approval_ref: Vec<Option<String>>,
    pub(super) customer_id: Vec<Option<Uuid>>,
    /// The batch's registers, sorted: their sessions are locked in this order.
    pub(super) registers: Vec<Uuid>,
    pub(super) l_sale: Vec<Uuid>,
    pub(super) l_no: Vec<i32>,
    pub(super) l_product: Vec<Uuid>,
    pub(super) l_sku: Vec<String>,
    pub(super) l_name: Vec<String>,
    pub(super) l_quantity: Vec<Decimal>,
    pub(super) l_catalog_price: Vec<Decimal>,
    pub(super) l_unit_price: Vec<Decimal>,
    pub(super) l_discount: Vec<Decimal>,
    pub(super) l_total: Vec<Decimal>,
    pub(super) l_tax_class: Vec<Uuid>,
    pub(super) l_tax_rate: Vec<Decimal>,
    /// The price list rule of each line (JSON), if one priced it.
    pub(super) l_price_rule: Vec<Option<String>>,
    /// Each line's product's cost price then (margins).
    pub(super) l_unit_cost: Vec<Option<Decimal>>,
    /// The batch's payments and tax buckets, sale after sale; sale `k`'s are elements
    /// `p_from[k]..=p_to[k]` and `t_from[k]..=t_to[k]` (1-based; none when `to < from`), which
    /// the statement slices into the sale's array columns.
    pub(super) p_method: Vec<String>,
    pub(super) p_amount: Vec<Decimal>,
    pub(super) t_rate: Vec<Decimal>,
    pub(super) t_net: Vec<Decimal>,
    pub(super) t_tax: Vec<Decimal>,
    pub(super) t_gross: Vec<Decimal>,
    pub(super) p_from: Vec<i32>,
    pub(super) p_to: Vec<i32>,
    pub(super) t_from: Vec<i32>,
    pub(super) t_to: Vec<i32>,
    pub(super) stock: TakeColumns,
}

impl SaleColumns {
    /// The columns of `sales[candidates]` recorded at `now`, and each candidate's sale as it will
    /// be answered, but for its session and receipt number (known once written).
    pub(super) fn new(
        sales: &[&PreparedSale],
        candidates: &[usize],
        now: DateTime<Utc>,
    ) -> (SaleColumns, Vec<Option<Sale>>) {
        let mut c = SaleColumns::default();
        let mut provisional = Vec::with_capacity(candidates.len());
        for &i in candidates {
            let prepared = sales[i];
            let sale = prepared.to_sale(Uuid::nil(), String::new(), now);
            // Online, the year the sale is recorded in; pushed, the till's (its number is in it).
            let year = prepared
                .till_created_at
                .unwrap_or(now)
                .with_timezone(&prepared.business.timezone)
                .year();
            let priced = &prepared.priced;
            c.id.push(sale.id);
            c.register_id.push(sale.register_id);
            c.year.push(year);
            c.template.push(
                prepared
                    .business
                    .receipt_template(&prepared.register_code, year),
            );
            c.digits
                .push(i32::try_from(prepared.business.receipt_digits).unwrap_or(i32::MAX));
            c.cashier_id.push(sale.cashier_id);
            c.currency.push(sale.currency.clone());
            c.prices_include_tax.push(sale.prices_include_tax);
            c.net.push(priced.net);
            c.tax.push(priced.tax);
            c.total.push(priced.total);
            c.cash_rounding.push(priced.cash_rounding);
            c.change_due.push(priced.change_due);
            c.key.push(prepared.key.clone());
            c.request_hash.push(prepared.request_hash.clone());
            c.audit_id.push(new_id());
            c.audit_base
                .push(parts::open_object(&prepared.audit_base(&sale)));
            c.username.push(prepared.actor.username.clone());
            c.role.push(prepared.actor.role.clone());
            c.workstation_id.push(prepared.actor.workstation_id.clone());
            c.request_id.push(prepared.actor.request_id.clone());
            c.client.push(prepared.client_id);
            c.location_id.push(prepared.location_id);
            c.session_id.push(prepared.session_id);
            c.discount_total.push(prepared.discount_total());
            c.discount_detail.push(prepared.discount_detail());
            c.approval_ref.push(prepared.approval_ref.clone());
            c.customer_id.push(prepared.customer_id);
            c.registers.push(sale.register_id);
            for ((line_no, (product, input)), total) in
                (1..).zip(&prepared.lines).zip(&priced.line_totals)
            {
                c.l_sale.push(sale.id);
                c.l_no.push(line_no);
                c.l_product.push(product.id);
                c.l_sku.push(product.sku.clone());
                c.l_name.push(product.name.clone());
                c.l_quantity.push(input.quantity);
                c.l_catalog_price.push(product.price);
                c.l_unit_price.push(input.unit_price);
                c.l_discount.push(input.discount);
                c.l_total.push(*total);
                c.l_tax_class.push(product.tax_class_id);
                c.l_tax_rate.push(input.tax_rate);
                c.l_unit_cost.push(product.cost_price);
                c.l_price_rule.push(
                    prepared
                        .price_rules
                        .get(usize::try_from(line_no - 1).unwrap_or(usize::MAX))
                        .cloned()
                        .flatten()
                        .and_then(|r| serde_json::to_string(&r).ok()),
                );
            }
            c.p_from.push(position_after(c.p_method.len()));
            for (method, amount) in &prepared.payments {
                c.p_method.push(method.as_str().to_owned());
                c.p_amount.push(*amount);
            }
            c.p_to.push(position_after(c.p_method.len()) - 1);
            c.t_from.push(position_after(c.t_rate.len()));
            for t in &priced.taxes {
                c.t_rate.push(t.rate);
                c.t_net.push(t.net);
                c.t_tax.push(t.tax);
                c.t_gross.push(t.gross);
            }
            c.t_to.push(position_after(c.t_rate.len()) - 1);
            c.stock
                .push(sale.id, prepared.location_id, &prepared.tracked_lines());
            provisional.push(Some(sale));
        }
        c.registers.sort_unstable();
        c.registers.dedup();
        (c, provisional)
    }
}

/// The 1-based position of the element after the first `len` of an array.
fn position_after(len: usize) -> i32 {
    i32::try_from(len + 1).unwrap_or(i32::MAX)
}
