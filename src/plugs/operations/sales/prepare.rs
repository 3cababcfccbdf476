//! Everything a sale needs before it is written, done by the request itself with reads only:
//! validation, the price-override check and pricing (a refused request replays its key, and a known
//! client-made id replays at once). What comes out is a [`PreparedSale`] for the
//! [writer](super::writer), which numbers and records it.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::Deserialize;
use serde_json::{Value, json};
use utoipa::ToSchema;
use uuid::Uuid;

use super::PRICE_OVERRIDE;
use super::pricing::{LineInput, PaymentInput, Priced, PricingError, price};
use super::store::{self, Payment, Sale, SaleLine, TaxLine, Totals, show_quantity, show_rate};
use crate::core::audit::Actor;
use crate::core::auth::context::AuthContext;
use crate::core::http::ApiError;
use crate::core::http::problem::FieldError;
use crate::core::idempotency;
use crate::core::settings::Business;
use crate::core::state::AppState;
use crate::plugs::administration::api::places;
use crate::plugs::management::api::catalog::{self, SaleProduct};
use crate::plugs::operations::api::cash;
use crate::shared::ids::new_id;
use crate::shared::money::{Money, Quantity, show};

/// A sale to record.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewSale {
    /// Optional client-made id (UUIDv7 recommended): a sale with this id that exists already is
    /// returned as a replay.
    pub id: Option<Uuid>,
    pub register_id: Uuid,
    pub lines: Vec<NewLine>,
    pub payments: Vec<NewPayment>,
}

/// A line to sell.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewLine {
    pub product_id: Uuid,
    /// More than zero, three decimals at most.
    #[schema(example = "2")]
    pub quantity: String,
    /// Defaults to the catalog price; another price needs `operations.sales.price_override`.
    pub unit_price: Option<String>,
    /// An amount off the line total.
    pub discount: Option<String>,
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
    /// The payments' methods, in the request's order, with their amounts.
    pub payments: Vec<(PaymentMethod, Decimal)>,
    pub priced: Priced,
    /// Indexes of the lines sold at another price than the catalog's.
    pub overridden: Vec<usize>,
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
fn money(field: String, text: &str, scale: u32, errors: &mut Vec<FieldError>) -> Option<Decimal> {
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
    let register = register_for_sale(state, new.register_id).await?;

    // Validate the shape before anything else.
    let mut errors = check_counts(&new, register.code.is_some());
    let product_ids: Vec<Uuid> = new.lines.iter().map(|l| l.product_id).collect();
    let products: HashMap<Uuid, SaleProduct> =
        catalog::products_for_sale(state, &product_ids).await?;
    let (lines, overridden) = check_lines(&new.lines, &products, scale, &mut errors);
    let (payments, payment_inputs) = check_payments(new.payments, scale, &mut errors);
    let (Some(register_code), Some(location_id)) = (register.code, register.location_id) else {
        return Err(ApiError::Validation(errors));
    };
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    if !overridden.is_empty() {
        caller.require(state, PRICE_OVERRIDE).await?;
    }
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
        return Err(no_open_session());
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
        payments,
        priced,
        overridden,
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

/// Each line's product (active), quantity, price and discount, ready for pricing, and the
/// indexes of the lines sold at another price than the catalog's. Bad fields go to `errors`.
fn check_lines(
    new: &[NewLine],
    products: &HashMap<Uuid, SaleProduct>,
    scale: u32,
    errors: &mut Vec<FieldError>,
) -> (Vec<(SaleProduct, LineInput)>, Vec<usize>) {
    let mut lines = Vec::with_capacity(new.len());
    let mut overridden = Vec::new();
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
        let unit_price = match &line.unit_price {
            Some(text) => money(format!("lines[{i}].unit_price"), text, scale, errors),
            None => product.as_ref().map(|p| p.price),
        };
        let discount = match &line.discount {
            Some(text) => money(format!("lines[{i}].discount"), text, scale, errors),
            None => Some(Decimal::ZERO),
        };
        if let (Some(product), Some(quantity), Some(unit_price), Some(discount)) =
            (product, quantity, unit_price, discount)
        {
            if unit_price != product.price {
                overridden.push(i);
            }
            let tax_rate = product.tax_rate;
            lines.push((
                product,
                LineInput {
                    quantity,
                    unit_price,
                    discount,
                    tax_rate,
                },
            ));
        }
    }
    (lines, overridden)
}

/// Line `i`'s quantity: more than zero, below a million, three decimals at most.
fn line_quantity(i: usize, text: &str, errors: &mut Vec<FieldError>) -> Option<Decimal> {
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
fn check_payments(
    new: Vec<NewPayment>,
    scale: u32,
    errors: &mut Vec<FieldError>,
) -> (Vec<(PaymentMethod, Decimal)>, Vec<PaymentInput>) {
    let mut payments = Vec::with_capacity(new.len());
    let mut inputs = Vec::with_capacity(new.len());
    for (i, payment) in new.into_iter().enumerate() {
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

fn pricing_error(e: PricingError, scale: u32) -> ApiError {
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

/// 409 `cash.no_open_session`.
pub fn no_open_session() -> ApiError {
    ApiError::Conflict {
        code: "cash.no_open_session",
        detail:
            "This register has no open cash session; open one first (POST /api/v1/cash-sessions)."
                .to_owned(),
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
        Sale {
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
            returns: Vec::new(),
            voided_by: None,
        }
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
        let overrides: Vec<Value> = self
            .overridden
            .iter()
            .filter_map(|&i| sale.lines.get(i))
            .map(|l| json!({"line_no": l.line_no, "catalog_price": l.catalog_price, "unit_price": l.unit_price}))
            .collect();
        json!({
            "register_id": sale.register_id, "totals": sale.totals, "taxes": sale.taxes,
            "payments": sale.payments, "change_due": sale.change_due, "cash_rounding": sale.cash_rounding,
            "lines": sale.lines.len(), "price_overrides": overrides, "idempotency_key": self.key,
        })
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
