//! `POST /api/v1/receipts/verify`: anyone may check a receipt's QR code;
//! `GET /api/v1/receipts/public-key`: the key to check one with their own tool.

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use super::super::fiscal;
use super::super::verify::{self, Verdict};
use crate::core::http::json::from_value;
use crate::core::http::problem::Problem;
use crate::core::http::{ApiError, ApiJson};
use crate::core::state::AppState;

/// A receipt's QR text to check.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VerifyReceipt {
    /// The text the QR code holds (`PP1|...`).
    pub code: String,
}

/// Check a receipt's QR code: whether its signature is this instance's and whether the server's
/// record of the document states the same fields. No login needed; the answer names fields,
/// never values.
#[utoipa::path(post, path = "/api/v1/receipts/verify", tag = "receipts", request_body = VerifyReceipt,
    responses(
        (status = 200, description = "The verdict (a bad signature or a mismatch is a verdict, not an error)", body = Verdict),
        (status = 422, description = "Not a receipt code (`validation.failed`, naming what is wrong)", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Too many unauthenticated requests (`rate_limited`)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn verify_receipt(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<Value>,
) -> Result<Json<Verdict>, ApiError> {
    let body: VerifyReceipt = from_value(body)?;
    if body.code.len() > 2048 {
        return Err(ApiError::invalid("code", "is longer than any receipt code"));
    }
    let scanned = fiscal::parse(&body.code).map_err(|why| ApiError::invalid("code", why))?;
    let key = verify::instance_key(&state.data_dir().keys());
    let mut conn = state.pool().acquire().await?;
    // Unauthenticated: a code whose signature fails is compared with nothing, so guessing
    // numbers or amounts learns nothing.
    let verdict = verify::check(&mut conn, &scanned, key.as_deref(), false)
        .await
        .map_err(ApiError::Internal)?;
    Ok(Json(verdict))
}

/// The instance's receipt-signing key, public half.
#[derive(Debug, Serialize, ToSchema)]
pub struct PublicKey {
    /// `ed25519`.
    pub algorithm: String,
    /// 32 bytes, hex.
    pub public_key: String,
}

/// The public key receipts' QR codes are signed with (the instance key, also each closing's
/// `public_key`), for an auditor who checks a code with their own tool (docs/api.md, "Receipts").
/// No login needed.
#[utoipa::path(get, path = "/api/v1/receipts/public-key", tag = "receipts",
    responses(
        (status = 200, description = "The key", body = PublicKey),
        (status = 503, description = "The instance has no signing key (`service.unavailable`): before setup, or the key file was lost", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn public_key(State(state): State<AppState>) -> Result<Json<PublicKey>, ApiError> {
    let key =
        crate::core::audit::checkpoint::public_key(&state.data_dir().keys()).ok_or_else(|| {
            ApiError::Unavailable {
                what: "instance signing key",
                cause: "keys/audit-signing.key is missing".to_owned(),
            }
        })?;
    Ok(Json(PublicKey {
        algorithm: "ed25519".to_owned(),
        public_key: key,
    }))
}
