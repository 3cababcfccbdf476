//! A receipt as data (`format=json`): what every other format renders, built from a sale or a
//! return or void, the business's receipt settings, the register, the cashier and the fiscal
//! block. Pure.

use chrono::{DateTime, SecondsFormat, Utc};
use chrono_tz::Tz;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::fiscal::Fields;
use crate::plugs::operations::api::returns::ReturnDoc;
use crate::plugs::operations::api::sales::{DiscountKind, Sale};

/// A receipt.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Receipt {
    /// `sale`, `return` or `void`.
    pub kind: String,
    pub document_id: Uuid,
    /// The receipt number (a sale's) or the correction number (a return's or a void's).
    pub number: String,
    /// 0: the original; n: the n-th copy, marked `COPY n`.
    pub copy: i32,
    /// `COPY n` on every render after the first; none on the original.
    pub copy_mark: Option<String>,
    pub business: BusinessHeader,
    pub register: RegisterShown,
    /// The cashier's display name.
    pub cashier: String,
    /// When the document was recorded (UTC).
    pub issued_at: DateTime<Utc>,
    /// The same in the business timezone, `YYYY-MM-DD HH:MM:SS`.
    pub local_time: String,
    pub timezone: String,
    pub currency: String,
    /// Returns and voids: the receipt number of the sale they correct.
    pub corrects: Option<String>,
    /// Returns and voids: why.
    pub reason_code: Option<String>,
    pub lines: Vec<ReceiptLine>,
    /// What discounts took off (sales).
    #[schema(value_type = String, example = "0.00")]
    pub discount_total: String,
    pub totals: ReceiptTotals,
    /// Per tax rate, rates ascending, each with its letter.
    pub taxes: Vec<ReceiptTax>,
    /// Payments of a sale; refunds of a return or void.
    pub payments: Vec<ReceiptPayment>,
    #[schema(value_type = String, example = "0.00")]
    pub cash_rounding: String,
    #[schema(value_type = String, example = "0.00")]
    pub change: String,
    /// Lines printed at the foot (setting `receipt.footer_lines`).
    pub footer: Vec<String>,
    pub fiscal: FiscalBlock,
}

/// The header: the business's name, address lines and tax id.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct BusinessHeader {
    pub name: String,
    /// Setting `receipt.address`.
    pub address: Vec<String>,
    /// Setting `receipt.tax_id` (none when not set).
    pub tax_id: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RegisterShown {
    pub id: Uuid,
    pub code: String,
    pub name: String,
}

/// One line.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ReceiptLine {
    pub name: String,
    pub sku: String,
    /// Without trailing zeros (`2`, `0.25`).
    #[schema(value_type = String, example = "2")]
    pub quantity: String,
    #[schema(value_type = String, example = "2.50")]
    pub unit_price: String,
    /// Each discount with what it took off (negative).
    pub discounts: Vec<ReceiptDiscount>,
    /// After discounts (negative on returns and voids).
    #[schema(value_type = String, example = "4.50")]
    pub total: String,
    /// The letter of its tax rate in `taxes`.
    pub tax_letter: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ReceiptDiscount {
    /// `Discount 10% (loyalty)`, `Sale discount`.
    pub label: String,
    #[schema(value_type = String, example = "-0.50")]
    pub amount: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ReceiptTotals {
    #[schema(value_type = String)]
    pub net: String,
    #[schema(value_type = String)]
    pub tax: String,
    #[schema(value_type = String)]
    pub total: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ReceiptTax {
    /// `A`, `B`, ...
    pub letter: String,
    /// As stored (`0.19`).
    #[schema(value_type = String, example = "0.19")]
    pub rate: String,
    /// As printed (`19%`).
    pub percent: String,
    #[schema(value_type = String)]
    pub net: String,
    #[schema(value_type = String)]
    pub tax: String,
    #[schema(value_type = String)]
    pub gross: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ReceiptPayment {
    /// `cash`, `card`, `voucher` or `other`.
    pub method: String,
    #[schema(value_type = String, example = "10.00")]
    pub amount: String,
}

/// The fiscal block: where the document sits in the audit chain, and the signed QR text.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct FiscalBlock {
    pub receipt_number: String,
    /// The register's code.
    pub register: String,
    /// The sequence number of the document's audit record.
    pub audit_seq: i64,
    /// That record's chain hash (64 hex digits).
    pub audit_hash: String,
    /// Its first 16 hex digits, as printed.
    pub audit_hash_short: String,
    /// The QR code's text (format `PP1`, docs/api.md "Receipts").
    pub qr: String,
}

/// What a receipt says besides its document.
#[derive(Debug, Clone)]
pub struct Context {
    pub business: BusinessHeader,
    pub register: RegisterShown,
    pub cashier: String,
    pub timezone: Tz,
    pub footer: Vec<String>,
    pub copy: i32,
    /// Returns and voids: the receipt number of their sale.
    pub corrects: Option<String>,
}

/// `0.19` -> `19%`, `0.055` -> `5.5%`.
pub fn percent(rate: &str) -> String {
    match rate.parse::<Decimal>() {
        Ok(r) => format!("{}%", (r * Decimal::from(100)).normalize()),
        Err(_) => rate.to_owned(),
    }
}

/// `2.000` -> `2`, `0.250` -> `0.25`.
pub fn quantity(text: &str) -> String {
    match text.parse::<Decimal>() {
        Ok(q) => q.normalize().to_string(),
        Err(_) => text.to_owned(),
    }
}

/// `A` for the first rate, `B` for the second, ...
fn letter(index: usize) -> String {
    char::from(b'A' + u8::try_from(index % 26).unwrap_or(0)).to_string()
}

fn negate(amount: &str) -> String {
    match amount.parse::<Decimal>() {
        Ok(a) if !a.is_zero() => (-a).to_string(),
        _ => amount.to_owned(),
    }
}

/// The tax table from a document's (rate, net, tax, gross) per rate, rates ascending, lettered
/// A, B, ...
fn tax_table<'a>(
    rates: impl Iterator<Item = (&'a String, &'a String, &'a String, &'a String)>,
) -> Vec<ReceiptTax> {
    rates
        .enumerate()
        .map(|(i, (rate, net, tax, gross))| ReceiptTax {
            letter: letter(i),
            rate: rate.clone(),
            percent: percent(rate),
            net: net.clone(),
            tax: tax.clone(),
            gross: gross.clone(),
        })
        .collect()
}

/// The letter of `rate` in `taxes` (empty if it has none).
fn letter_of(taxes: &[ReceiptTax], rate: &str) -> String {
    taxes
        .iter()
        .find(|t| t.rate == rate)
        .map(|t| t.letter.clone())
        .unwrap_or_default()
}

impl Receipt {
    /// Sale `sale`'s receipt; its fiscal block comes from [`Receipt::seal`].
    pub fn of_sale(sale: &Sale, ctx: &Context) -> Receipt {
        let taxes = tax_table(
            sale.taxes
                .iter()
                .map(|t| (&t.rate, &t.net, &t.tax, &t.gross)),
        );
        let letter_for = |rate: &str| letter_of(&taxes, rate);
        let lines = sale
            .lines
            .iter()
            .map(|l| {
                let mut discounts = Vec::new();
                if let Some(d) = &l.discounts {
                    if let Some(own) = &d.own {
                        let value = match own.kind {
                            DiscountKind::Percent => format!("{}%", own.value),
                            DiscountKind::Amount => own.value.clone(),
                        };
                        discounts.push(ReceiptDiscount {
                            label: format!("Discount {value} ({})", own.reason_code),
                            amount: negate(&own.amount),
                        });
                    }
                    if d.sale_share.parse::<Decimal>().is_ok_and(|s| !s.is_zero()) {
                        discounts.push(ReceiptDiscount {
                            label: "Sale discount".to_owned(),
                            amount: negate(&d.sale_share),
                        });
                    }
                }
                ReceiptLine {
                    name: l.name.clone(),
                    sku: l.sku.clone(),
                    quantity: quantity(&l.quantity),
                    unit_price: l.unit_price.clone(),
                    discounts,
                    total: l.total.clone(),
                    tax_letter: letter_for(&l.tax_rate),
                }
            })
            .collect();
        Receipt {
            kind: "sale".to_owned(),
            document_id: sale.id,
            number: sale.receipt_number.clone(),
            reason_code: None,
            lines,
            discount_total: sale.discount_total.clone(),
            totals: ReceiptTotals {
                net: sale.totals.net.clone(),
                tax: sale.totals.tax.clone(),
                total: sale.totals.total.clone(),
            },
            taxes,
            payments: sale
                .payments
                .iter()
                .map(|p| ReceiptPayment {
                    method: p.method.clone(),
                    amount: p.amount.clone(),
                })
                .collect(),
            cash_rounding: sale.cash_rounding.clone(),
            change: sale.change_due.clone(),
            ..Receipt::frame(ctx, sale.created_at, &sale.currency)
        }
    }

    /// A return's or a void's receipt.
    pub fn of_correction(doc: &ReturnDoc, ctx: &Context, scale: u32) -> Receipt {
        let taxes = tax_table(
            doc.taxes
                .iter()
                .map(|t| (&t.rate, &t.net, &t.tax, &t.gross)),
        );
        let letter_for = |rate: &str| letter_of(&taxes, rate);
        let lines = doc
            .lines
            .iter()
            .map(|l| ReceiptLine {
                name: l.name.clone(),
                sku: l.sku.clone(),
                quantity: quantity(&format!("-{}", l.quantity)),
                unit_price: l.unit_price.clone(),
                discounts: Vec::new(),
                total: l.total.clone(),
                tax_letter: letter_for(&l.tax_rate),
            })
            .collect();
        let zero = Decimal::new(0, scale).to_string();
        Receipt {
            kind: doc.kind.clone(),
            document_id: doc.id,
            number: doc.number.clone(),
            reason_code: Some(doc.reason_code.clone()),
            lines,
            discount_total: zero.clone(),
            totals: ReceiptTotals {
                net: doc.totals.net.clone(),
                tax: doc.totals.tax.clone(),
                total: doc.totals.total.clone(),
            },
            taxes,
            payments: doc
                .refunds
                .iter()
                .map(|r| ReceiptPayment {
                    method: r.method.clone(),
                    amount: negate(&r.amount),
                })
                .collect(),
            cash_rounding: doc.cash_rounding.clone(),
            change: zero,
            ..Receipt::frame(ctx, doc.created_at, &doc.currency)
        }
    }

    /// The parts every receipt has, around an empty document.
    fn frame(ctx: &Context, at: DateTime<Utc>, currency: &str) -> Receipt {
        Receipt {
            kind: String::new(),
            document_id: Uuid::nil(),
            number: String::new(),
            copy: ctx.copy,
            copy_mark: (ctx.copy > 0).then(|| format!("COPY {}", ctx.copy)),
            business: ctx.business.clone(),
            register: ctx.register.clone(),
            cashier: ctx.cashier.clone(),
            issued_at: at,
            local_time: at
                .with_timezone(&ctx.timezone)
                .format("%Y-%m-%d %H:%M:%S")
                .to_string(),
            timezone: ctx.timezone.name().to_owned(),
            currency: currency.to_owned(),
            corrects: ctx.corrects.clone(),
            reason_code: None,
            lines: Vec::new(),
            discount_total: String::new(),
            totals: ReceiptTotals {
                net: String::new(),
                tax: String::new(),
                total: String::new(),
            },
            taxes: Vec::new(),
            payments: Vec::new(),
            cash_rounding: String::new(),
            change: String::new(),
            footer: ctx.footer.clone(),
            fiscal: FiscalBlock {
                receipt_number: String::new(),
                register: String::new(),
                audit_seq: 0,
                audit_hash: String::new(),
                audit_hash_short: String::new(),
                qr: String::new(),
            },
        }
    }

    /// What its QR code states, given its audit record's place in the chain.
    pub fn fields(&self, audit_seq: i64, audit_hash: &str) -> Fields {
        Fields {
            tax_id: self.business.tax_id.clone().unwrap_or_default(),
            register: self.register.code.clone(),
            kind: match self.kind.as_str() {
                "return" => 'R',
                "void" => 'V',
                _ => 'S',
            },
            number: self.number.clone(),
            time: self.issued_at.to_rfc3339_opts(SecondsFormat::Secs, true),
            total: self.totals.total.clone(),
            taxes: self
                .taxes
                .iter()
                .map(|t| (t.rate.clone(), t.gross.clone(), t.tax.clone()))
                .collect(),
            audit_seq,
            audit_hash: audit_hash.to_owned(),
        }
    }

    /// The same receipt as its `copy` (0: the original).
    pub fn as_copy(mut self, copy: i32) -> Receipt {
        self.copy = copy;
        self.copy_mark = (copy > 0).then(|| format!("COPY {copy}"));
        self
    }

    /// Fills in the fiscal block, its QR text signed by `key`.
    pub fn seal(&mut self, audit_seq: i64, audit_hash: &str, key: &ed25519_dalek::SigningKey) {
        let qr = self.fields(audit_seq, audit_hash).sign(key);
        self.fiscal = FiscalBlock {
            receipt_number: self.number.clone(),
            register: self.register.code.clone(),
            audit_seq,
            audit_hash: audit_hash.to_owned(),
            audit_hash_short: audit_hash.chars().take(16).collect(),
            qr,
        };
    }

    /// Is any of it paid (or refunded) in cash? (The drawer opens for those.)
    pub fn moves_cash(&self) -> bool {
        self.payments.iter().any(|p| p.method == "cash")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_and_quantities_print_short() {
        assert_eq!(percent("0.19"), "19%");
        assert_eq!(percent("0.055"), "5.5%");
        assert_eq!(percent("0.00"), "0%");
        assert_eq!(quantity("2.000"), "2");
        assert_eq!(quantity("0.250"), "0.25");
        assert_eq!(quantity("-1.000"), "-1");
        assert_eq!(letter(0), "A");
        assert_eq!(letter(2), "C");
        assert_eq!(negate("0.50"), "-0.50");
        assert_eq!(negate("0.00"), "0.00");
    }
}
