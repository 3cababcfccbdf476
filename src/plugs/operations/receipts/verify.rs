//! Checking a receipt's QR text: does the signature hold under this instance's key, and does
//! the server's record of that document state the same fields? Used by
//! `POST /api/v1/receipts/verify` and `plugpos receipt verify`. The answer names fields, never
//! values: it reveals nothing beyond what is printed.

use std::collections::BTreeSet;
use std::path::Path;

use serde::Serialize;
use sqlx::PgConnection;
use utoipa::ToSchema;

use super::fiscal::{self, Scanned};
use super::issue::{self, Collection, Document};
use super::model::Receipt;
use super::store;
use crate::core::audit::{chain, checkpoint};
use crate::core::settings::Business;
use crate::plugs::operations::api::{returns, sales};

/// What a check found.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Verdict {
    /// The QR text's format (`PP1`).
    pub format: String,
    /// The signature is this instance's, over exactly these fields.
    pub signature_valid: bool,
    /// The server holds this document and its record states the same fields.
    pub record_matches: bool,
    /// The fields whose printed value differs from the record (names only).
    pub mismatched_fields: Vec<String>,
    /// Each finding, in words.
    pub problems: Vec<String>,
}

/// Checks `scanned` against `public_key` (none: this instance has no key yet) and the database.
/// A code whose signature fails is compared with the records only when `unsigned_too` (the
/// command line); otherwise the answer says nothing of what the server holds.
pub async fn check(
    conn: &mut PgConnection,
    scanned: &Scanned,
    public_key: Option<&[u8]>,
    unsigned_too: bool,
) -> anyhow::Result<Verdict> {
    let mut problems = Vec::new();
    let signature_valid = public_key.is_some_and(|k| scanned.signed_by(k));
    if public_key.is_none() {
        problems
            .push("this instance has no signing key: no receipt of it can be verified".to_owned());
    } else if !signature_valid {
        problems.push(
            "the signature does not hold: the code was altered or not issued by this instance"
                .to_owned(),
        );
    }
    let mut mismatched = Vec::new();
    if !signature_valid && !unsigned_too {
        problems.push("the record was not looked up: only a signed code is compared".to_owned());
        return Ok(Verdict {
            format: fiscal::FORMAT.to_owned(),
            signature_valid,
            record_matches: false,
            mismatched_fields: mismatched,
            problems,
        });
    }
    let record = record_fields(conn, scanned).await?;
    let record_matches = match record {
        Some((issued, now)) => {
            // Against the receipt as issued, and against the document and chain as they are
            // now (its tax id aside: the setting may have changed since).
            let mut differ = BTreeSet::new();
            if let Some(issued) = &issued {
                differ.extend(issued.differences(&scanned.fields));
            }
            differ.extend(
                now.differences(&scanned.fields)
                    .into_iter()
                    .filter(|f| issued.is_none() || *f != "tax_id"),
            );
            mismatched = fiscal::FIELD_NAMES
                .iter()
                .filter(|f| differ.contains(*f))
                .map(|f| (*f).to_owned())
                .collect();
            if !mismatched.is_empty() {
                problems.push(format!(
                    "the record of this document differs in: {}",
                    mismatched.join(", ")
                ));
            }
            mismatched.is_empty()
        }
        None => {
            problems.push("this instance holds no such document".to_owned());
            false
        }
    };
    Ok(Verdict {
        format: fiscal::FORMAT.to_owned(),
        signature_valid,
        record_matches,
        mismatched_fields: mismatched,
        problems,
    })
}

/// What the server's records state of the scanned document, if it holds it: the fields of the
/// receipt as issued (none if it was never rendered), and those recomputed from the document
/// and the audit chain now.
async fn record_fields(
    conn: &mut PgConnection,
    scanned: &Scanned,
) -> anyhow::Result<Option<(Option<fiscal::Fields>, fiscal::Fields)>> {
    let Some(business) = Business::load(conn).await? else {
        return Ok(None);
    };
    let scale = business.currency_scale;
    let number = &scanned.fields.number;
    let document = match scanned.fields.kind {
        'S' => match sales::sale_numbered(conn, number).await? {
            Some(id) => issue::load(conn, Collection::Sales, id, scale).await?,
            None => None,
        },
        _ => match returns::correction_numbered(conn, number).await? {
            Some((id, _)) => issue::load(conn, Collection::Returns, id, scale).await?,
            None => None,
        },
    };
    let Some(document) = document else {
        return Ok(None);
    };
    // A printed document's record was chained before its receipt could be sealed.
    let (entity, id, action) = document.audit_record();
    let place = chain::chained(conn, entity, &id.to_string(), action).await?;
    let context = issue::context(conn, &business, &document, 0).await?;
    let receipt = match &document {
        Document::Sale(sale) => Receipt::of_sale(sale, &context),
        Document::Correction(doc) => Receipt::of_correction(doc, &context, scale),
    };
    let (seq, hash) = place.map_or((0, String::new()), |(s, h)| (s, hex::encode(h)));
    let issued = store::issued(conn, document.id())
        .await?
        .and_then(|kept| serde_json::from_value::<Receipt>(kept).ok())
        .and_then(|r| fiscal::parse(&r.fiscal.qr).ok())
        .map(|s| s.fields);
    Ok(Some((issued, receipt.fields(seq, &hash))))
}

/// The instance's public key from `keys`, as bytes.
pub fn instance_key(keys: &Path) -> Option<Vec<u8>> {
    checkpoint::public_key(keys).and_then(|hex_key| hex::decode(hex_key).ok())
}
