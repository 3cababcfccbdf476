//! Checking a receipt's QR text: does the signature hold under this instance's key, and does
//! the server's record of that document state the same fields? Used by
//! `POST /api/v1/receipts/verify` and `plugpos receipt verify`. The answer names fields, never
//! values: it reveals nothing beyond what is printed.

use std::path::Path;

use serde::Serialize;
use sqlx::PgConnection;
use utoipa::ToSchema;

use super::fiscal::{self, Scanned};
use super::issue::{self, Collection, Document};
use super::model::Receipt;
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
pub async fn check(
    conn: &mut PgConnection,
    scanned: &Scanned,
    public_key: Option<&[u8]>,
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
    let record = record_fields(conn, scanned).await?;
    let record_matches = match record {
        Some(fields) => {
            mismatched = fields
                .differences(&scanned.fields)
                .into_iter()
                .map(str::to_owned)
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

/// The fields the server's record of the scanned document states, if it holds it.
async fn record_fields(
    conn: &mut PgConnection,
    scanned: &Scanned,
) -> anyhow::Result<Option<fiscal::Fields>> {
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
    Ok(Some(receipt.fields(seq, &hash)))
}

/// The instance's public key from `keys`, as bytes.
pub fn instance_key(keys: &Path) -> Option<Vec<u8>> {
    checkpoint::public_key(keys).and_then(|hex_key| hex::decode(hex_key).ok())
}
