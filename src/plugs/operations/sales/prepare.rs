//! Everything a sale needs before it is written, done by the request itself with reads only:
//! validation, the price-override check and pricing (a refused request replays its key, and a known
//! client-made id replays at once). What comes out is a [`PreparedSale`] for the
//! [writer](super::writer), which numbers and records it.

use std::collections::HashMap;

use chrono::{DateTime, NaiveDate, Utc};
use rust_decimal::Decimal;
use serde::Deserialize;
use serde_json::{Value, json};
use utoipa::ToSchema;
use uuid::Uuid;

use super::discounts::{self, Discount, DiscountKind, allocate, largest_percent};
use super::pricing::{LineInput, PaymentInput, Priced, PricingError, price};
use super::store::{
    self, DiscountRecord, DiscountShown, LineDiscounts, Payment, Sale, SaleLine, TaxLine, Totals,
    show_quantity, show_rate,
};
use super::{DISCOUNT, MAX_CASHIER_DISCOUNT, PRICE_OVERRIDE};
use crate::core::audit::Actor;
use crate::core::auth::context::AuthContext;
use crate::core::http::ApiError;
use crate::core::http::problem::FieldError;
use crate::core::idempotency;
use crate::core::settings::Business;
use crate::core::state::AppState;
use crate::plugs::administration::api::places;
use crate::plugs::management::api::catalog::{self, SaleProduct};
use crate::plugs::management::api::customers::{self, AppliedRule};
use crate::plugs::operations::api::approvals::{self, Wanted};
use crate::plugs::operations::api::cash;
use crate::shared::ids::new_id;
use crate::shared::money::{Money, Quantity, round_half_up, show};

/// A sale to record.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewSale {
    /// Optional client-made id (UUIDv7 recommended): a sale with this id that exists already is
    /// returned as a replay.
    pub id: Option<Uuid>,
    pub register_id: Uuid,
    /// The customer buying (`GET /api/v1/customers`): their group's price lists price the lines.
    pub customer_id: Option<Uuid>,
    pub lines: Vec<NewLine>,
    pub payments: Vec<NewPayment>,
    /// A discount on the whole sale, spread over its lines in proportion.
    pub discount: Option<DiscountInput>,
    /// A manager's approval (`POST /api/v1/approvals`) for what the cashier may not do alone:
    /// `operations.sales.discount` (beyond `sales.max_cashier_discount_percent`) or
    /// `operations.sales.price_override`.
    pub approval_ref: Option<String>,
    /// More approvals, when a sale needs both.
    pub approval_refs: Option<Vec<String>>,
}

/// A line to sell.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewLine {
    pub product_id: Uuid,
    /// More than zero, three decimals at most.
    #[schema(example = "2")]
    pub quantity: String,
    /// Defaults to the catalog price, or the customer's price list price (`GET
    /// /api/v1/customers/{id}/prices`); another price needs `operations.sales.price_override`
    /// or, with a reason, an approval for it. A till that sends the price it showed gets exactly
    /// that price recorded, or a refusal (never another price).
    pub unit_price: Option<String>,
    /// Why the price differs from the catalog's (one of the discount reason codes); required
    /// with an approval.
    pub price_reason: Option<String>,
    /// A discount on this line.
    pub discount: Option<DiscountInput>,
}

/// A discount: `{"kind": "percent"|"amount", "value", "reason_code"}`, or (as before discounts
/// had kinds) a plain amount, which counts as an amount with reason `other`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum DiscountInput {
    Detailed(DiscountRequest),
    #[schema(value_type = String, example = "0.50")]
    Amount(String),
}

/// A discount with its kind and reason.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DiscountRequest {
    #[schema(value_type = DiscountKind)]
    pub kind: String,
    /// A percent (above 0, at most 100) or an amount.
    #[schema(example = "10")]
    pub value: String,
    /// `damaged`, `loyalty`, `staff`, `promotion`, `price_match` or `other`.
    #[schema(example = "loyalty")]
    pub reason_code: String,
}

/// A payment.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewPayment {
    /// Checked with the rest of the sale (a bad one is a field error beside the others).
    #[schema(value_type = PaymentMethod)]
    pub method: String,
    #[schema(example = "10.00")]
    pub amount: String,
}

/// How a customer pays (a closed list, documented as such; a request's method is parsed into it
/// with the sale's other fields, so one answer lists every bad field).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PaymentMethod {
    Cash,
    Card,
    Voucher,
    Other,
}

impl PaymentMethod {
    /// The method named `text`, if it is one.
    pub fn parse(text: &str) -> Option<PaymentMethod> {
        match text {
            "cash" => Some(PaymentMethod::Cash),
            "card" => Some(PaymentMethod::Card),
            "voucher" => Some(PaymentMethod::Voucher),
            "other" => Some(PaymentMethod::Other),
            _ => None,
        }
    }

    /// As stored and answered.
    pub fn as_str(self) -> &'static str {
        match self {
            PaymentMethod::Cash => "cash",
            PaymentMethod::Card => "card",
            PaymentMethod::Voucher => "voucher",
            PaymentMethod::Other => "other",
        }
    }
}

const MAX_LINES: usize = 500;
const MAX_PAYMENTS: usize = 20;

/// A validated, priced sale that has no receipt number yet.
#[derive(Debug)]
pub struct PreparedSale {
    pub id: Uuid,
    /// The id came from the client (so it may exist already).
    pub client_id: bool,
    pub key: String,
    pub request_hash: Vec<u8>,
    /// Who sells, from which workstation, on which request (for the audit record).
    pub actor: Actor,
    pub cashier_id: Uuid,
    pub register_id: Uuid,
    /// The open session the cashier may sell into, as read before writing: the writer records
    /// the sale only if it is still the register's open session.
    pub session_id: Uuid,
    pub register_code: String,
    /// Where its tracked goods are taken from.
    pub location_id: Uuid,
    /// The business settings the sale was priced with (receipt format, timezone, currency).
    pub business: Business,
    pub lines: Vec<(SaleProduct, LineInput)>,
    /// The customer named, if any.
    pub customer_id: Option<Uuid>,
    /// Each line's price list rule, when the customer's list priced it.
    pub price_rules: Vec<Option<AppliedRule>>,
    /// Each line's price before any override: the customer's price, else the catalog's.
    pub bases: Vec<Decimal>,
    /// The payments' methods, in the request's order, with their amounts.
    pub payments: Vec<(PaymentMethod, Decimal)>,
    pub priced: Priced,
    /// Indexes of the lines sold at another price than the catalog's (or the customer's list's).
    pub overridden: Vec<usize>,
    /// Each discount given and what it took off (stored with the sale).
    pub discounts: DiscountRecord,
    /// The approvals used (comma-separated), for the sale and its audit record.
    pub approval_ref: Option<String>,
    /// A sale an offline till pushed: where it came from (device, the till's time, who pushed),
    /// for its audit record.
    pub offline: Option<Value>,
    /// A pushed sale's time on the till: its receipt number is in that year's series.
    pub till_created_at: Option<DateTime<Utc>>,
}

/// What preparing found.
#[derive(Debug)]
pub enum Prepared {
    /// A new sale to write.
    Sale(Box<PreparedSale>),
    /// A retry of the committed sale with this id.
    Replay(Uuid),
}

/// A money field of the request (the currency's scale), or its error in `errors`.
pub(super) fn money(
    field: String,
    text: &str,
    scale: u32,
    errors: &mut Vec<FieldError>,
) -> Option<Decimal> {
    FieldError::gather(errors, field, Money::parse_in(text, scale)).map(Money::value)
}

/// Checks and prices `new` for `caller` with reads only (no transaction, nothing locked), from
/// cached rows where it can (see [`crate::core::db::changes`]). A request whose key or
/// client-made id a committed sale used replays that sale, whatever has changed since (the
/// session closed, a product archived): a refused request looks its key and its id up before it
/// answers, and the writer replays the rest (a key it cannot claim, an id it finds taken).
pub async fn prepare(
    state: &AppState,
    caller: &AuthContext,
    new: NewSale,
    key: String,
    request_hash: Vec<u8>,
) -> Result<Prepared, ApiError> {
    let client_id = new.id;
    match check(state, caller, new, &key, &request_hash).await {
        Ok(prepared) => Ok(prepared),
        Err(refused) => {
            let mut conn = state.pool().acquire().await?;
            if let Some(stored) = idempotency::find(&mut conn, "sales", &key).await? {
                return stored.replay_for(&request_hash).map(Prepared::Replay);
            }
            let Some(id) = client_id else {
                return Err(refused);
            };
            match store::same_sale(&mut conn, id, caller.user_id, &request_hash).await? {
                Some(true) => Ok(Prepared::Replay(id)),
                Some(false) => Err(id_conflict()),
                None => Err(refused),
            }
        }
    }
}

/// Stays whole: the checks in the order a refused request must meet them (register, shape, products
/// and prices, discounts, approvals, pricing, session), each using what the one before found.
async fn check(
    state: &AppState,
    caller: &AuthContext,
    new: NewSale,
    key: &str,
    request_hash: &[u8],
) -> Result<Prepared, ApiError> {
    let business = Business::cached(state)
        .await?
        .ok_or(ApiError::SetupRequired)?;
    let scale = business.currency_scale;
    crate::core::devices::check_register(state, caller.origin.device_id, new.register_id).await?;
    let register = register_for_sale(state, new.register_id).await?;

    // Validate the shape before anything else.
    let mut errors = check_counts(&new, register.code.is_some());
    let product_ids: Vec<Uuid> = new.lines.iter().map(|l| l.product_id).collect();
    let products: HashMap<Uuid, SaleProduct> =
        catalog::products_for_sale(state, &product_ids).await?;
    let prices = customer_prices(state, new.customer_id, &mut errors).await?;
    let on = customers::price_date(&business, state.clock().now());
    let CheckedLines {
        mut lines,
        bases,
        rules: price_rules,
        overridden,
        own,
        price_reasons,
    } = check_lines(
        &new.lines,
        &products,
        (
            new.customer_id.is_some(),
            prices.as_deref().map(|p| (p, on)),
        ),
        scale,
        &mut errors,
    );
    let sale_discount = new
        .discount
        .as_ref()
        .and_then(|d| discount("discount", d, scale, &mut errors));
    let (payments, payment_inputs) = check_payments(&new.payments, scale, &mut errors);
    let (Some(register_code), Some(location_id)) = (register.code, register.location_id) else {
        return Err(ApiError::Validation(errors));
    };
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    let discounts = apply_discounts(&mut lines, &own, sale_discount, price_reasons, scale)?;
    // The approvals are bound to this request: its key and its body.
    let request = format!("{key}:{}", hex::encode(request_hash));
    let approval_ref = use_approvals(
        state,
        caller,
        &new,
        &lines,
        &bases,
        &overridden,
        &discounts,
        &request,
    )
    .await?;
    let line_inputs: Vec<LineInput> = lines.iter().map(|(_, l)| *l).collect();
    let priced = price(
        &line_inputs,
        &payment_inputs,
        business.prices_include_tax,
        scale,
        business.cash_rounding,
    )
    .map_err(|e| pricing_error(e, scale))?;
    let Some(session) = register.session else {
        return Err(cash::no_open_session());
    };
    // A session belongs to the cashier who opened it (the writer holds the sale to this session).
    cash::refuse_others(state, caller, session.opened_by).await?;
    Ok(Prepared::Sale(Box::new(PreparedSale {
        id: new.id.unwrap_or_else(new_id),
        client_id: new.id.is_some(),
        key: key.to_owned(),
        request_hash: request_hash.to_vec(),
        actor: Actor::user(caller),
        cashier_id: caller.user_id,
        register_id: new.register_id,
        session_id: session.id,
        register_code,
        location_id,
        business,
        lines,
        customer_id: new.customer_id,
        price_rules,
        bases,
        payments,
        priced,
        overridden,
        discounts,
        approval_ref,
        offline: None,
        till_created_at: None,
    })))
}

/// The request's shape: how many lines and payments, and whether its register exists.
fn check_counts(new: &NewSale, register_exists: bool) -> Vec<FieldError> {
    let mut errors = Vec::new();
    if new.lines.is_empty() || new.lines.len() > MAX_LINES {
        errors.push(FieldError::new(
            "lines",
            format!("must hold 1 to {MAX_LINES} lines"),
        ));
    }
    if new.payments.is_empty() || new.payments.len() > MAX_PAYMENTS {
        errors.push(FieldError::new(
            "payments",
            format!("must hold 1 to {MAX_PAYMENTS} payments"),
        ));
    }
    if !register_exists {
        errors.push(FieldError::new("register_id", "is not a register"));
    }
    errors
}

/// The price lists of customer `id`'s group (none without a customer or a group); a customer
/// that is not one (or deleted, or erased) is a field error.
async fn customer_prices(
    state: &AppState,
    id: Option<Uuid>,
    errors: &mut Vec<FieldError>,
) -> Result<Option<std::sync::Arc<customers::GroupPrices>>, ApiError> {
    let Some(id) = id else {
        return Ok(None);
    };
    let group = {
        let mut conn = state.pool().acquire().await?;
        customers::group_of(&mut conn, id).await?
    };
    match group {
        None => {
            errors.push(FieldError::new("customer_id", "is not a customer"));
            Ok(None)
        }
        Some(None) => Ok(None),
        Some(Some(group)) => Ok(Some(customers::group_prices(state, &group).await?)),
    }
}

/// The lines as checked: ready for pricing but for their discounts, which
/// [`apply_discounts`] adds.
struct CheckedLines {
    lines: Vec<(SaleProduct, LineInput)>,
    /// Each line's price before any override: the customer's list price, else the catalog's.
    bases: Vec<Decimal>,
    /// Each line's price list rule, when one priced it.
    rules: Vec<Option<AppliedRule>>,
    /// Indexes of the lines sold at another price than the catalog's.
    overridden: Vec<usize>,
    /// Each line's own discount.
    own: Vec<Option<Discount>>,
    /// Each line's reason for its price, when given.
    price_reasons: Vec<Option<String>>,
}

/// Each line's product (active), quantity, price, price reason and discount. Bad fields go to
/// `errors`. With a customer (`customer.0`), each line carries the price the till showed
/// (`GET /api/v1/customers/{id}/prices`), so the price recorded is the price shown or the sale
/// is refused; `customer.1` is their group's price lists and the date they apply on.
fn check_lines(
    new: &[NewLine],
    products: &HashMap<Uuid, SaleProduct>,
    customer: (bool, Option<(&customers::GroupPrices, NaiveDate)>),
    scale: u32,
    errors: &mut Vec<FieldError>,
) -> CheckedLines {
    let mut checked = CheckedLines {
        lines: Vec::with_capacity(new.len()),
        bases: Vec::with_capacity(new.len()),
        rules: Vec::with_capacity(new.len()),
        overridden: Vec::new(),
        own: Vec::with_capacity(new.len()),
        price_reasons: Vec::with_capacity(new.len()),
    };
    for (i, line) in new.iter().enumerate() {
        let product = match products.get(&line.product_id) {
            Some(p) if p.active => Some(p.clone()),
            Some(_) => {
                errors.push(FieldError::new(
                    format!("lines[{i}].product_id"),
                    "is not for sale (inactive)",
                ));
                None
            }
            None => {
                errors.push(FieldError::new(
                    format!("lines[{i}].product_id"),
                    "is not a product",
                ));
                None
            }
        };
        let quantity = line_quantity(i, &line.quantity, errors);
        if customer.0 && line.unit_price.is_none() {
            errors.push(FieldError::new(
                format!("lines[{i}].unit_price"),
                "is required with a customer: the price the till showed (GET /api/v1/customers/{id}/prices)",
            ));
        }
        let applied = product.as_ref().and_then(|p| {
            let (group, on) = customer.1?;
            group.price(p.id, p.category_id, p.price, on, scale)
        });
        let base = applied
            .as_ref()
            .map(|a| a.price)
            .or(product.as_ref().map(|p| p.price));
        let unit_price = match &line.unit_price {
            Some(text) => money(format!("lines[{i}].unit_price"), text, scale, errors),
            None => base,
        };
        let own = match &line.discount {
            Some(d) => discount(&format!("lines[{i}].discount"), d, scale, errors).map(Some),
            None => Some(None),
        };
        let reason = match &line.price_reason {
            Some(r) if !discounts::REASONS.contains(&r.as_str()) => {
                errors.push(FieldError::new(
                    format!("lines[{i}].price_reason"),
                    format!("must be one of {}", discounts::REASONS.join(", ")),
                ));
                None
            }
            r => Some(r.clone()),
        };
        if let (
            Some(product),
            Some(quantity),
            Some(unit_price),
            Some(own),
            Some(reason),
            Some(base),
        ) = (product, quantity, unit_price, own, reason, base)
        {
            if unit_price != base {
                checked.overridden.push(i);
            }
            checked.bases.push(base);
            // The rule is the line's only when it set the price (an override did not).
            checked
                .rules
                .push(applied.filter(|a| a.price == unit_price).map(|a| a.rule));
            let tax_rate = product.tax_rate;
            checked.lines.push((
                product,
                LineInput {
                    quantity,
                    unit_price,
                    discount: Decimal::ZERO,
                    tax_rate,
                },
            ));
            checked.own.push(own);
            checked.price_reasons.push(reason);
        }
    }
    checked
}

/// A discount field (`field`), or its errors: a known kind, a value (a percent above 0 and at
/// most 100, or an amount above 0 at the currency's scale) and a reason from the closed list.
pub(super) fn discount(
    field: &str,
    input: &DiscountInput,
    scale: u32,
    errors: &mut Vec<FieldError>,
) -> Option<Discount> {
    let (kind, value, reason) = match input {
        DiscountInput::Amount(value) => ("amount", value.as_str(), "other"),
        DiscountInput::Detailed(d) => (d.kind.as_str(), d.value.as_str(), d.reason_code.as_str()),
    };
    let before = errors.len();
    if !discounts::REASONS.contains(&reason) {
        errors.push(FieldError::new(
            format!("{field}.reason_code"),
            format!("must be one of {}", discounts::REASONS.join(", ")),
        ));
    }
    let checked = match kind {
        "percent" => {
            let percent = FieldError::gather(
                errors,
                format!("{field}.value"),
                crate::shared::money::parse_amount(value, 4),
            );
            match percent {
                Some(p) if p.is_zero() || p > Decimal::ONE_HUNDRED => {
                    errors.push(FieldError::new(
                        format!("{field}.value"),
                        "must be a percent above 0 and at most 100",
                    ));
                    None
                }
                p => p.map(|p| (DiscountKind::Percent, p)),
            }
        }
        "amount" => {
            let name = match input {
                DiscountInput::Amount(_) => field.to_owned(),
                DiscountInput::Detailed(_) => format!("{field}.value"),
            };
            match money(name.clone(), value, scale, errors) {
                Some(a) if a.is_zero() => {
                    errors.push(FieldError::new(name, "must be more than zero"));
                    None
                }
                a => a.map(|a| (DiscountKind::Amount, a)),
            }
        }
        _ => {
            errors.push(FieldError::new(
                format!("{field}.kind"),
                "must be percent or amount",
            ));
            None
        }
    };
    let (kind, value) = checked?;
    (errors.len() == before).then(|| Discount {
        kind,
        value,
        reason_code: reason.to_owned(),
    })
}

/// Sets each line's discount (its own, then its share of the sale's, see
/// [`discounts`](super::discounts)) and says what each took off.
pub(super) fn apply_discounts(
    lines: &mut [(SaleProduct, LineInput)],
    own: &[Option<Discount>],
    sale: Option<Discount>,
    price_reasons: Vec<Option<String>>,
    scale: u32,
) -> Result<DiscountRecord, ApiError> {
    let mut own_off = Vec::with_capacity(lines.len());
    let mut bases = Vec::with_capacity(lines.len());
    for (i, ((_, line), own)) in lines.iter().zip(own).enumerate() {
        let amount = round_half_up(line.quantity * line.unit_price, scale);
        let off = match own {
            Some(d) => d.off(amount, scale).ok_or_else(|| {
                ApiError::invalid(
                    format!("lines[{i}].discount"),
                    "is larger than the line amount",
                )
            })?,
            None => Decimal::ZERO,
        };
        own_off.push(off);
        bases.push(amount - off);
    }
    let sale_off = match &sale {
        Some(d) => d
            .off(bases.iter().sum(), scale)
            .ok_or_else(|| ApiError::invalid("discount", "is larger than the sale"))?,
        None => Decimal::ZERO,
    };
    let shares = allocate(sale_off, &bases, scale);
    let shown = |d: &Discount, amount: Decimal| DiscountShown {
        kind: d.kind,
        value: match d.kind {
            DiscountKind::Percent => d.value.normalize().to_string(),
            DiscountKind::Amount => show(d.value, scale),
        },
        reason_code: d.reason_code.clone(),
        amount: show(amount, scale),
    };
    let mut record = DiscountRecord {
        sale: sale.as_ref().map(|d| shown(d, sale_off)),
        ..DiscountRecord::default()
    };
    for (i, (line, own)) in lines.iter_mut().zip(own).enumerate() {
        line.1.discount = own_off[i] + shares[i];
        let line_no = i32::try_from(i + 1).unwrap_or(i32::MAX);
        if own.is_some() || !shares[i].is_zero() {
            record.lines.insert(
                line_no,
                LineDiscounts {
                    own: own.as_ref().map(|d| shown(d, own_off[i])),
                    sale_share: show(shares[i], scale),
                },
            );
        }
        if let Some(reason) = &price_reasons[i] {
            record.price_reasons.insert(line_no, reason.clone());
        }
    }
    Ok(record)
}

/// Uses the approvals the sale needs and the request carries: a price override without
/// `operations.sales.price_override` (each overridden line with a `price_reason`; without an
/// approval it is refused as before, `403 rbac.forbidden`), a discount beyond the cashier limit
/// without `operations.sales.discount`. Each is used by this request's key, so a retry of the
/// same request may use it again; the one exception to "a sale request writes nothing itself".
#[allow(clippy::too_many_arguments)]
async fn use_approvals(
    state: &AppState,
    caller: &AuthContext,
    new: &NewSale,
    lines: &[(SaleProduct, LineInput)],
    bases: &[Decimal],
    overridden: &[usize],
    discounts: &DiscountRecord,
    key: &str,
) -> Result<Option<String>, ApiError> {
    // Most sales have neither an override nor a discount: nothing to check.
    if overridden.is_empty() && discounts.sale.is_none() && discounts.lines.is_empty() {
        return Ok(None);
    }
    let business = Business::cached(state)
        .await?
        .ok_or(ApiError::SetupRequired)?;
    let scale = business.currency_scale;
    let refs: Vec<&str> = new
        .approval_ref
        .iter()
        .chain(new.approval_refs.iter().flatten())
        .map(String::as_str)
        .collect();
    let mut needed: Vec<(&str, Decimal)> = Vec::new();
    if !overridden.is_empty() && !caller.has(PRICE_OVERRIDE) {
        if refs.is_empty() {
            caller.require(state, PRICE_OVERRIDE).await?;
        }
        if let Some(&i) = overridden.iter().find(|&&i| {
            !discounts
                .price_reasons
                .contains_key(&i32::try_from(i + 1).unwrap_or(i32::MAX))
        }) {
            return Err(ApiError::invalid(
                format!("lines[{i}].price_reason"),
                "is required for a price approved by a manager",
            ));
        }
        let reduction = overridden
            .iter()
            .map(|&i| {
                let (_, line) = &lines[i];
                ((bases[i] - line.unit_price) * line.quantity).max(Decimal::ZERO)
            })
            .sum();
        needed.push((PRICE_OVERRIDE, round_half_up(reduction, scale)));
    }
    let amounts: Vec<(Decimal, Decimal)> = lines
        .iter()
        .map(|(_, l)| (round_half_up(l.quantity * l.unit_price, scale), l.discount))
        .collect();
    let limit = Decimal::from(business.integer(MAX_CASHIER_DISCOUNT, 0));
    if largest_percent(&amounts) > limit && !caller.has(DISCOUNT) {
        needed.push((DISCOUNT, amounts.iter().map(|a| a.1).sum()));
    }
    if needed.is_empty() {
        return Ok(None);
    }
    let mut conn = state.pool().acquire().await?;
    let now = state.clock().now();
    let mut used: Vec<String> = Vec::new();
    for (action, amount) in needed {
        if refs.is_empty() {
            return Err(approvals::required(action));
        }
        let wanted = Wanted {
            action,
            requester: caller.user_id,
            register_id: Some(new.register_id),
            subject_id: None,
            sale_id: new.id,
            amount: Some(amount),
            without_receipt: false,
            request: key,
        };
        let mut found = None;
        for r in refs.iter().filter(|r| !used.iter().any(|u| u == *r)) {
            if let Some(u) = approvals::try_consume(&mut conn, r, &wanted, now).await? {
                found = Some(u);
                break;
            }
        }
        used.push(found.ok_or_else(approvals::invalid)?.approval_ref);
    }
    Ok(Some(used.join(",")))
}

/// Line `i`'s quantity: more than zero, below a million, three decimals at most.
pub(super) fn line_quantity(i: usize, text: &str, errors: &mut Vec<FieldError>) -> Option<Decimal> {
    let field = format!("lines[{i}].quantity");
    let quantity = FieldError::gather(errors, &field, Quantity::parse(text))?.value();
    let refused = if quantity.is_zero() {
        "must be more than zero"
    } else if quantity >= Decimal::from(1_000_000) {
        "is too large"
    } else {
        return Some(quantity);
    };
    errors.push(FieldError::new(field, refused));
    None
}

/// Each payment's method and amount (more than zero), as recorded and as pricing needs them.
pub(super) fn check_payments(
    new: &[NewPayment],
    scale: u32,
    errors: &mut Vec<FieldError>,
) -> (Vec<(PaymentMethod, Decimal)>, Vec<PaymentInput>) {
    let mut payments = Vec::with_capacity(new.len());
    let mut inputs = Vec::with_capacity(new.len());
    for (i, payment) in new.iter().enumerate() {
        let method = PaymentMethod::parse(&payment.method);
        if method.is_none() {
            errors.push(FieldError::new(
                format!("payments[{i}].method"),
                "must be cash, card, voucher or other",
            ));
        }
        let field = format!("payments[{i}].amount");
        match FieldError::gather(errors, &field, Money::parse_in(&payment.amount, scale)) {
            Some(a) if a.value().is_zero() => {
                errors.push(FieldError::new(field, "must be more than zero"))
            }
            Some(a) => {
                if let Some(method) = method {
                    inputs.push(PaymentInput {
                        cash: method == PaymentMethod::Cash,
                        amount: a.value(),
                    });
                    payments.push((method, a.value()));
                }
            }
            None => {}
        }
    }
    (payments, inputs)
}

pub(super) fn pricing_error(e: PricingError, scale: u32) -> ApiError {
    match e {
        PricingError::DiscountTooLarge { index } => ApiError::invalid(
            format!("lines[{index}].discount"),
            "is larger than the line amount",
        ),
        PricingError::NonCashExceedsTotal { total, non_cash } => ApiError::Unprocessable {
            code: "payment.overpaid",
            detail: format!(
                "Card, voucher and other payments ({}) exceed the total ({}); only cash may exceed it.",
                show(non_cash, scale),
                show(total, scale)
            ),
        },
        PricingError::Insufficient { due, paid } => ApiError::Unprocessable {
            code: "payment.insufficient",
            detail: format!(
                "The payments ({}) do not cover the amount due ({}).",
                show(paid, scale),
                show(due, scale)
            ),
        },
    }
}

/// 409 `sale.id_conflict`: a client-made id that another request (another body or cashier) used.
pub fn id_conflict() -> ApiError {
    ApiError::Conflict {
        code: "sale.id_conflict",
        detail: "A sale with this id exists and was recorded from another request (another body or cashier); a new sale needs a new id.".to_owned(),
    }
}

impl PreparedSale {
    /// The sale as recorded under `receipt_number` in `cash_session_id` at `now`.
    pub fn to_sale(
        &self,
        cash_session_id: Uuid,
        receipt_number: String,
        now: DateTime<Utc>,
    ) -> Sale {
        let scale = self.business.currency_scale;
        let priced = &self.priced;
        let mut sale = Sale {
            id: self.id,
            receipt_number,
            status: "completed".to_owned(),
            register_id: self.register_id,
            cash_session_id,
            cashier_id: self.cashier_id,
            currency: self.business.currency.clone(),
            prices_include_tax: self.business.prices_include_tax,
            lines: self
                .lines
                .iter()
                .zip(&priced.line_totals)
                .enumerate()
                .map(|(i, ((product, input), total))| SaleLine {
                    line_no: i32::try_from(i + 1).unwrap_or(i32::MAX),
                    product_id: product.id,
                    sku: product.sku.clone(),
                    name: product.name.clone(),
                    quantity: show_quantity(input.quantity),
                    unit_price: show(input.unit_price, scale),
                    catalog_price: show(product.price, scale),
                    discount: show(input.discount, scale),
                    total: show(*total, scale),
                    tax_rate: show_rate(input.tax_rate),
                    discounts: None,
                    price_reason: None,
                    price_rule: self.price_rules.get(i).cloned().flatten(),
                    returnable: show_quantity(input.quantity),
                })
                .collect(),
            totals: Totals {
                net: show(priced.net, scale),
                tax: show(priced.tax, scale),
                total: show(priced.total, scale),
            },
            taxes: priced
                .taxes
                .iter()
                .map(|t| TaxLine {
                    rate: show_rate(t.rate),
                    net: show(t.net, scale),
                    tax: show(t.tax, scale),
                    gross: show(t.gross, scale),
                })
                .collect(),
            payments: self
                .payments
                .iter()
                .map(|(method, amount)| Payment {
                    method: method.as_str().to_owned(),
                    amount: show(*amount, scale),
                })
                .collect(),
            cash_rounding: show(priced.cash_rounding, scale),
            change_due: show(priced.change_due, scale),
            created_at: now,
            discount: None,
            discount_total: show(self.discount_total(), scale),
            approval_ref: self.approval_ref.clone(),
            customer_id: self.customer_id,
            returns: Vec::new(),
            voided_by: None,
        };
        self.discounts.show_on(&mut sale);
        sale
    }

    /// Everything its discounts took off.
    pub fn discount_total(&self) -> Decimal {
        self.lines.iter().map(|(_, l)| l.discount).sum()
    }

    /// Its discounts as stored (`None`: none).
    pub fn discount_detail(&self) -> Option<String> {
        (!self.discounts.is_empty())
            .then(|| serde_json::to_string(&self.discounts).unwrap_or_default())
    }

    /// The lines that take a tracked product off stock: (line number, product, quantity).
    pub fn tracked_lines(&self) -> Vec<(i32, Uuid, Decimal)> {
        (1..)
            .zip(&self.lines)
            .filter(|(_, (p, _))| p.track_stock)
            .map(|(line_no, (p, l))| (line_no, p.id, l.quantity))
            .collect()
    }

    /// Its audit record's `after` as far as it is known before writing: totals, taxes, payments,
    /// price overrides and the key. The writer adds `receipt_number`, `cash_session_id` and
    /// `stock` (each level right after the sale) in SQL, when it learns them.
    pub fn audit_base(&self, sale: &Sale) -> Value {
        let scale = self.business.currency_scale;
        let overrides: Vec<Value> = self
            .overridden
            .iter()
            .filter_map(|&i| Some((sale.lines.get(i)?, self.bases.get(i)?)))
            .map(|(l, base)| {
                let mut o = json!({"line_no": l.line_no, "catalog_price": l.catalog_price, "unit_price": l.unit_price});
                // With a customer, the price the override departed from is theirs.
                if self.customer_id.is_some() {
                    o["customer_price"] = json!(show(*base, scale));
                }
                o
            })
            .collect();
        let mut base = json!({
            "register_id": sale.register_id, "totals": sale.totals, "taxes": sale.taxes,
            "payments": sale.payments, "change_due": sale.change_due, "cash_rounding": sale.cash_rounding,
            "lines": sale.lines.len(), "price_overrides": overrides, "idempotency_key": self.key,
            "discount": sale.discount, "discount_total": sale.discount_total,
            "line_discounts": self.discounts.lines, "price_reasons": self.discounts.price_reasons,
        });
        if let Some(offline) = &self.offline {
            base["offline"] = offline.clone();
        }
        // Only a sale naming a customer says so (other sales' records read as they always did).
        if let Some(customer) = self.customer_id {
            base["customer_id"] = json!(customer);
            let priced: Vec<Value> = sale
                .lines
                .iter()
                .filter_map(|l| {
                    Some(json!({"line_no": l.line_no, "price_rule": l.price_rule.as_ref()?}))
                })
                .collect();
            base["price_rules"] = json!(priced);
        }
        base
    }
}

/// A sale's register as the request sees it before writing (nothing locked).
#[derive(Debug, Clone, Default)]
struct RegisterForSale {
    /// The register's code; `None` when there is no such register.
    code: Option<String>,
    /// Where its sales take stock from.
    location_id: Option<Uuid>,
    /// Its open cash session, if any.
    session: Option<cash::OpenSession>,
}

/// Register `register_id` with its open session, from the places' and the cash module's
/// caches. The writer checks the session again.
async fn register_for_sale(
    state: &AppState,
    register_id: Uuid,
) -> Result<RegisterForSale, sqlx::Error> {
    let Some(register) = places::register_for_sale(state, register_id).await? else {
        return Ok(RegisterForSale::default());
    };
    Ok(RegisterForSale {
        code: Some(register.code),
        location_id: Some(register.location_id),
        session: cash::open_session(state, register_id).await?,
    })
}
