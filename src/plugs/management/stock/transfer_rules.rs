//! The rules of a transfer between locations, apart from the SQL.
//!
//! - A transfer names two different locations and 1 to 500 lines, each a product once with a
//!   positive quantity (three decimals at most); a note is at most 500 characters.
//! - It moves `draft` -> `sent` -> `received`, or `draft` -> `cancelled`; nothing else.
//! - Receiving gives, per line, the quantity that arrived (all of it when the line is not
//!   named). A quantity that differs from the one sent needs a reason: `damaged`, `lost` or
//!   `miscounted`. What arrived is what the destination gains; the difference is recorded on the
//!   line (it left the source when the transfer was sent).

use std::collections::{HashMap, HashSet};

use rust_decimal::Decimal;
use uuid::Uuid;

use crate::core::http::problem::FieldError;
use crate::shared::money::Quantity;

/// Lines a transfer may have.
pub const MAX_LINES: usize = 500;
/// Why what arrived differs from what was sent.
pub const DIFFERENCE_REASONS: [&str; 3] = ["damaged", "lost", "miscounted"];

/// Where a transfer stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Draft,
    Sent,
    Received,
    Cancelled,
}

impl Status {
    pub fn parse(text: &str) -> Option<Status> {
        [
            Status::Draft,
            Status::Sent,
            Status::Received,
            Status::Cancelled,
        ]
        .into_iter()
        .find(|s| s.as_str() == text)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Draft => "draft",
            Status::Sent => "sent",
            Status::Received => "received",
            Status::Cancelled => "cancelled",
        }
    }
}

/// What may be done to a transfer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Send,
    Receive,
    Cancel,
}

impl Action {
    /// The state it leads to, or why it may not be done from `from`.
    pub fn from(self, from: Status) -> Result<Status, String> {
        match (self, from) {
            (Action::Send, Status::Draft) => Ok(Status::Sent),
            (Action::Receive, Status::Sent) => Ok(Status::Received),
            (Action::Cancel, Status::Draft) => Ok(Status::Cancelled),
            (Action::Send, _) => Err(format!(
                "only a draft can be sent; this transfer is {}",
                from.as_str()
            )),
            (Action::Receive, _) => Err(format!(
                "only a sent transfer can be received; this one is {}",
                from.as_str()
            )),
            (Action::Cancel, _) => Err(format!(
                "only a draft can be cancelled; this transfer is {} (a sent one is received, with its differences)",
                from.as_str()
            )),
        }
    }
}

/// A line as asked for.
pub struct LineInput<'a> {
    pub product_id: Uuid,
    pub quantity: &'a str,
}

/// A new transfer that passed the rules: its (product, quantity) lines and its note.
pub type ValidTransfer = (Vec<(Uuid, Decimal)>, Option<String>);

/// Checks a new transfer's locations, lines and note.
pub fn check_new(
    from: Uuid,
    to: Uuid,
    lines: &[LineInput<'_>],
    note: Option<&str>,
) -> Result<ValidTransfer, Vec<FieldError>> {
    let mut errors = Vec::new();
    if from == to {
        errors.push(FieldError::new(
            "to_location_id",
            "must differ from from_location_id",
        ));
    }
    if lines.is_empty() || lines.len() > MAX_LINES {
        errors.push(FieldError::new(
            "lines",
            format!("must have 1 to {MAX_LINES} lines"),
        ));
    }
    let mut seen = HashSet::new();
    let mut valid = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let field = format!("lines[{i}].quantity");
        match Quantity::parse(line.quantity).map(Quantity::value) {
            Ok(q) if q.is_zero() => errors.push(FieldError::new(field, "must be more than zero")),
            Ok(q) if q >= Decimal::from(100_000_000_000i64) => {
                errors.push(FieldError::new(field, "is too large"))
            }
            Ok(q) => valid.push((line.product_id, q)),
            Err(e) => errors.push(FieldError::new(field, e)),
        }
        if !seen.insert(line.product_id) {
            errors.push(FieldError::new(
                format!("lines[{i}].product_id"),
                "names a product a line before it names already: one line per product",
            ));
        }
    }
    let note = note
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .map(str::to_owned);
    if note.as_ref().is_some_and(|n| n.chars().count() > 500) {
        errors.push(FieldError::new("note", "must be at most 500 characters"));
    }
    match errors.is_empty() {
        true => Ok((valid, note)),
        false => Err(errors),
    }
}

/// A line as received.
pub struct ReceivedInput<'a> {
    pub line_no: i32,
    pub received_quantity: &'a str,
    pub difference_reason: Option<&'a str>,
}

/// What arrived on one line.
#[derive(Debug, Clone, PartialEq)]
pub struct Arrived {
    pub line_no: i32,
    pub quantity: Decimal,
    pub difference_reason: Option<String>,
}

/// What arrived on every line of a transfer whose lines were sent as `sent` (line number and
/// quantity): the named lines as given, the others in full.
pub fn check_received(
    sent: &[(i32, Decimal)],
    input: &[ReceivedInput<'_>],
) -> Result<Vec<Arrived>, Vec<FieldError>> {
    let mut errors = Vec::new();
    let mut given: HashMap<i32, Arrived> = HashMap::new();
    for (i, line) in input.iter().enumerate() {
        let Some((_, quantity)) = sent.iter().find(|(no, _)| *no == line.line_no) else {
            errors.push(FieldError::new(
                format!("lines[{i}].line_no"),
                "is not a line of this transfer",
            ));
            continue;
        };
        if given.contains_key(&line.line_no) {
            errors.push(FieldError::new(
                format!("lines[{i}].line_no"),
                "is named twice",
            ));
            continue;
        }
        let received = match Quantity::parse(line.received_quantity).map(Quantity::value) {
            Ok(q) => q,
            Err(e) => {
                errors.push(FieldError::new(format!("lines[{i}].received_quantity"), e));
                continue;
            }
        };
        let reason = line
            .difference_reason
            .map(str::trim)
            .filter(|r| !r.is_empty());
        if received != *quantity {
            match reason {
                Some(r) if DIFFERENCE_REASONS.contains(&r) => {}
                Some(_) | None => {
                    errors.push(FieldError::new(
                        format!("lines[{i}].difference_reason"),
                        format!(
                            "{received} arrived of {quantity} sent: say why, one of {}",
                            DIFFERENCE_REASONS.join(", ")
                        ),
                    ));
                    continue;
                }
            }
        }
        given.insert(
            line.line_no,
            Arrived {
                line_no: line.line_no,
                quantity: received,
                difference_reason: (received != *quantity)
                    .then(|| reason.unwrap_or_default().to_owned()),
            },
        );
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(sent
        .iter()
        .map(|(no, quantity)| {
            given.remove(no).unwrap_or(Arrived {
                line_no: *no,
                quantity: *quantity,
                difference_reason: None,
            })
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> Decimal {
        s.parse().unwrap()
    }

    #[test]
    fn a_transfer_moves_draft_sent_received_or_is_cancelled_as_a_draft() {
        assert_eq!(Action::Send.from(Status::Draft), Ok(Status::Sent));
        assert_eq!(Action::Receive.from(Status::Sent), Ok(Status::Received));
        assert_eq!(Action::Cancel.from(Status::Draft), Ok(Status::Cancelled));
        assert!(
            Action::Cancel
                .from(Status::Sent)
                .unwrap_err()
                .contains("only a draft")
        );
        assert!(Action::Send.from(Status::Sent).is_err());
        assert!(Action::Receive.from(Status::Draft).is_err());
        assert!(Action::Receive.from(Status::Received).is_err());
    }

    #[test]
    fn new_transfers_need_two_places_and_one_line_per_product() {
        let a = Uuid::now_v7();
        let p = Uuid::now_v7();
        let lines = [
            LineInput {
                product_id: p,
                quantity: "2",
            },
            LineInput {
                product_id: p,
                quantity: "0",
            },
        ];
        let errors = check_new(a, a, &lines, None).unwrap_err();
        let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            ["to_location_id", "lines[1].quantity", "lines[1].product_id"]
        );
        let (valid, note) = check_new(a, Uuid::now_v7(), &lines[..1], Some("  van 2 ")).unwrap();
        assert_eq!(valid, [(p, d("2"))]);
        assert_eq!(note.as_deref(), Some("van 2"));
    }

    #[test]
    fn what_arrived_defaults_to_what_was_sent_and_a_difference_needs_a_reason() {
        let sent = [(1, d("10")), (2, d("4"))];
        let arrived = check_received(&sent, &[]).unwrap();
        assert_eq!(
            arrived.iter().map(|a| a.quantity).collect::<Vec<_>>(),
            [d("10"), d("4")]
        );
        let short = [ReceivedInput {
            line_no: 1,
            received_quantity: "8",
            difference_reason: None,
        }];
        let errors = check_received(&sent, &short).unwrap_err();
        assert_eq!(errors[0].field, "lines[0].difference_reason");
        assert!(
            errors[0].message.contains("8 arrived of 10 sent"),
            "{}",
            errors[0].message
        );
        let short = [ReceivedInput {
            line_no: 1,
            received_quantity: "8",
            difference_reason: Some("damaged"),
        }];
        let arrived = check_received(&sent, &short).unwrap();
        assert_eq!(
            arrived[0],
            Arrived {
                line_no: 1,
                quantity: d("8"),
                difference_reason: Some("damaged".to_owned())
            }
        );
        assert_eq!(arrived[1].quantity, d("4"));
        let unknown = [ReceivedInput {
            line_no: 9,
            received_quantity: "1",
            difference_reason: None,
        }];
        assert_eq!(
            check_received(&sent, &unknown).unwrap_err()[0].field,
            "lines[0].line_no"
        );
    }
}
