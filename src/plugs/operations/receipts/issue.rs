//! Issuing a receipt: the document (a sale, or a return or void) read through the operations
//! APIs, its audit record's place in the chain, the business's receipt settings, the register
//! and cashier, then the receipt built and sealed with the instance key.

use std::time::Duration;

use sqlx::PgConnection;
use uuid::Uuid;

use super::model::{BusinessHeader, Context, Receipt, RegisterShown};
use super::store;
use crate::core::audit::AuditedTx;
use crate::core::audit::chain;
use crate::core::audit::checkpoint;
use crate::core::http::ApiError;
use crate::core::settings::Business;
use crate::core::state::AppState;
use crate::plugs::administration::api::places;
use crate::plugs::operations::api::returns::{self, ReturnDoc};
use crate::plugs::operations::api::sales::{self, Sale};

/// The settings a receipt prints.
pub const ADDRESS: &str = "receipt.address";
pub const TAX_ID: &str = "receipt.tax_id";
pub const FOOTER: &str = "receipt.footer_lines";

/// A document that prints.
#[derive(Debug, Clone)]
pub enum Document {
    Sale(Box<Sale>),
    Correction(Box<ReturnDoc>),
}

impl Document {
    pub fn id(&self) -> Uuid {
        match self {
            Document::Sale(s) => s.id,
            Document::Correction(d) => d.id,
        }
    }

    /// `sale`, `return` or `void`.
    pub fn kind(&self) -> &str {
        match self {
            Document::Sale(_) => "sale",
            Document::Correction(d) => &d.kind,
        }
    }

    /// The customer the document names, if any.
    pub fn customer_id(&self) -> Option<Uuid> {
        match self {
            Document::Sale(s) => s.customer_id,
            Document::Correction(d) => d.customer_id,
        }
    }

    pub fn register_id(&self) -> Uuid {
        match self {
            Document::Sale(s) => s.register_id,
            Document::Correction(d) => d.register_id,
        }
    }

    pub fn number(&self) -> &str {
        match self {
            Document::Sale(s) => &s.receipt_number,
            Document::Correction(d) => &d.number,
        }
    }

    fn cashier_id(&self) -> Uuid {
        match self {
            Document::Sale(s) => s.cashier_id,
            Document::Correction(d) => d.cashier_id,
        }
    }

    /// The audit record that recorded it: (entity, entity id, action).
    pub fn audit_record(&self) -> (&'static str, Uuid, &'static str) {
        match self {
            Document::Sale(s) => ("sale", s.id, "sale.complete"),
            Document::Correction(d) if d.kind == "void" => {
                ("sale", d.original_sale_id.unwrap_or(d.id), "sale.void")
            }
            Document::Correction(d) => ("return", d.id, "return.create"),
        }
    }
}

/// Which collection a document is asked for under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Collection {
    Sales,
    Returns,
}

/// The business, or `setup.required`.
pub async fn business(state: &AppState) -> Result<Business, ApiError> {
    Business::cached(state)
        .await?
        .ok_or(ApiError::SetupRequired)
}

/// Document `id` of `collection`, or `None`.
pub async fn load(
    conn: &mut PgConnection,
    collection: Collection,
    id: Uuid,
    scale: u32,
) -> Result<Option<Document>, sqlx::Error> {
    Ok(match collection {
        Collection::Sales => sales::sale_document(conn, id, scale)
            .await?
            .map(|s| Document::Sale(Box::new(s))),
        Collection::Returns => returns::correction_document(conn, id, scale)
            .await?
            .map(|d| Document::Correction(Box::new(d))),
    })
}

/// Document `id` of `collection`, or 404 naming it.
pub async fn find(
    conn: &mut PgConnection,
    collection: Collection,
    id: Uuid,
    scale: u32,
) -> Result<Document, ApiError> {
    load(conn, collection, id, scale)
        .await?
        .ok_or_else(|| match collection {
            Collection::Sales => ApiError::NotFound {
                code: "sale.not_found",
                detail: format!("No sale with id {id}."),
            },
            Collection::Returns => ApiError::NotFound {
                code: "return.not_found",
                detail: format!("No return or void with id {id}."),
            },
        })
}

/// Where the document's audit record sits in the chain: (sequence number, hex hash). A record
/// just committed is chained within milliseconds; this links what is pending if it must, and
/// waits at most about two seconds before answering 503.
pub async fn audit_place(state: &AppState, document: &Document) -> Result<(i64, String), ApiError> {
    let (entity, id, action) = document.audit_record();
    let id = id.to_string();
    for attempt in 0..40 {
        let mut conn = state.pool().acquire().await?;
        if let Some((seq, hash)) = chain::chained(&mut conn, entity, &id, action).await? {
            return Ok((seq, hex::encode(hash)));
        }
        drop(conn);
        if attempt == 0 {
            chain::chain_pending(state.pool()).await?;
        } else {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    Err(ApiError::Unavailable {
        what: "audit chain",
        cause: format!(
            "the audit record of {} {id} is not chained yet",
            document.kind()
        ),
    })
}

/// What the receipt of `document` says besides the document, for its `copy`.
pub async fn context(
    conn: &mut PgConnection,
    business: &Business,
    document: &Document,
    copy: i32,
) -> Result<Context, ApiError> {
    let register = places::register_card(conn, document.register_id())
        .await?
        .ok_or_else(|| {
            ApiError::Internal(anyhow::anyhow!(
                "document {} names register {} that does not exist",
                document.id(),
                document.register_id()
            ))
        })?;
    let cashier = crate::core::rbac::store::user(conn, document.cashier_id())
        .await?
        .map(|u| match u.display_name.trim() {
            "" => u.username,
            name => name.to_owned(),
        })
        .unwrap_or_default();
    let corrects = match document {
        Document::Correction(d) => match d.original_sale_id {
            Some(sale) => sales::sold_sale(conn, sale)
                .await?
                .map(|s| s.receipt_number),
            None => None,
        },
        Document::Sale(_) => None,
    };
    let lines = |key: &str| -> Vec<String> {
        business
            .stored
            .get(key)
            .and_then(|v| v.as_array())
            .map(|items| {
                items
                    .iter()
                    .filter_map(|i| i.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    };
    let tax_id = business.text(TAX_ID, "");
    Ok(Context {
        business: BusinessHeader {
            name: business.name.clone(),
            address: lines(ADDRESS),
            tax_id: (!tax_id.is_empty()).then(|| tax_id.to_owned()),
        },
        register: RegisterShown {
            id: register.id,
            code: register.code,
            name: register.name,
        },
        cashier,
        timezone: business.timezone,
        footer: lines(FOOTER),
        copy,
        corrects,
    })
}

/// The receipt of `document` as its `copy`, in `tx` where its render was just counted: the
/// receipt as first issued (the original is built, sealed and kept the first time).
pub async fn receipt(
    state: &AppState,
    tx: &mut AuditedTx,
    business: &Business,
    document: &Document,
    place: &(i64, String),
    copy: i32,
) -> Result<Receipt, ApiError> {
    if let Some(kept) = store::issued(tx, document.id()).await? {
        let receipt: Receipt = serde_json::from_value(kept).map_err(|e| {
            ApiError::Internal(anyhow::anyhow!(
                "the issued receipt of {} cannot be read: {e}",
                document.id()
            ))
        })?;
        return Ok(receipt.as_copy(copy));
    }
    let context = context(tx, business, document, 0).await?;
    let original = build(state, business, document, &context, place)?;
    store::keep_issued(tx, document.id(), &serde_json::json!(original)).await?;
    Ok(original.as_copy(copy))
}

/// The receipt of `document` as its `copy`, sealed.
pub fn build(
    state: &AppState,
    business: &Business,
    document: &Document,
    context: &Context,
    place: &(i64, String),
) -> Result<Receipt, ApiError> {
    let mut receipt = match document {
        Document::Sale(sale) => Receipt::of_sale(sale, context),
        Document::Correction(doc) => Receipt::of_correction(doc, context, business.currency_scale),
    };
    // Never a new key: receipts signed with the lost one could no longer be checked here.
    let key = checkpoint::load_key(&state.data_dir().keys())
        .map_err(ApiError::Internal)?
        .ok_or_else(|| ApiError::Unavailable {
            what: "instance signing key",
            cause: "keys/audit-signing.key is missing: restore it from the data directory's backup"
                .to_owned(),
        })?;
    receipt.seal(place.0, &place.1, &key);
    Ok(receipt)
}
