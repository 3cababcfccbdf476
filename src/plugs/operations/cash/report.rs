//! The X report of a cash session (what it has taken so far; closing does not reset anything):
//! its handler and answer.

use axum::Json;
use axum::extract::{Path, State};
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use super::http::{CashSession, fetch_session, not_your_session};
use super::store::cash_flows;
use super::{MANAGE_ANY, REPORT_ANY};
use crate::core::auth::context::AuthContext;
use crate::core::http::ApiError;
use crate::core::http::problem::Problem;
use crate::core::settings::Business;
use crate::core::state::AppState;
use crate::shared::money::show;

/// Totals of one payment method.
#[derive(Debug, Serialize, ToSchema)]
pub struct MethodTotal {
    pub method: String,
    /// Payments with this method.
    pub count: i64,
    /// What was paid with it (cash before change).
    #[schema(value_type = String)]
    pub amount: String,
}

/// Totals of one tax rate.
#[derive(Debug, Serialize, ToSchema)]
pub struct RateTotal {
    #[schema(value_type = String, example = "0.19")]
    pub rate: String,
    #[schema(value_type = String)]
    pub net: String,
    #[schema(value_type = String)]
    pub tax: String,
    #[schema(value_type = String)]
    pub gross: String,
}

/// The drawer.
#[derive(Debug, Serialize, ToSchema)]
pub struct CashSummary {
    #[schema(value_type = String)]
    pub opening_float: String,
    #[schema(value_type = String)]
    pub cash_payments: String,
    #[schema(value_type = String)]
    pub change_given: String,
    #[schema(value_type = String)]
    pub cash_in: String,
    #[schema(value_type = String)]
    pub cash_out: String,
    /// Cash handed back by returns and voids.
    #[schema(value_type = String)]
    pub cash_refunds: String,
    /// opening_float + cash_payments - change_given + cash_in - cash_out - cash_refunds.
    #[schema(value_type = String)]
    pub expected_cash: String,
    /// Times the drawer was opened without a sale (`POST .../no-sale`).
    pub no_sales: i64,
}

/// The session's returns and voids.
#[derive(Debug, Serialize, ToSchema)]
pub struct RefundSummary {
    pub returns_count: i64,
    pub voids_count: i64,
    /// Their totals (negative).
    #[schema(value_type = String)]
    pub net: String,
    #[schema(value_type = String)]
    pub tax: String,
    #[schema(value_type = String)]
    pub total: String,
    /// What was refunded, by method.
    pub by_refund_method: Vec<MethodTotal>,
}

/// An X report.
#[derive(Debug, Serialize, ToSchema)]
pub struct XReport {
    pub session: CashSession,
    pub currency: String,
    pub sales_count: i64,
    #[schema(value_type = String)]
    pub net: String,
    #[schema(value_type = String)]
    pub tax: String,
    #[schema(value_type = String)]
    pub total: String,
    /// Cash rounding over all sales (positive: customers paid more than the exact totals).
    #[schema(value_type = String)]
    pub cash_rounding: String,
    pub by_payment_method: Vec<MethodTotal>,
    pub by_tax_rate: Vec<RateTotal>,
    pub refunds: RefundSummary,
    pub cash: CashSummary,
    /// Receipt copies (reprints, marked `COPY n`) made at the register during the session.
    pub receipt_copies: i64,
}

/// The X report of a cash session: sales count and totals by payment method and by tax rate.
#[utoipa::path(get, path = "/api/v1/cash-sessions/{id}/report", tag = "cash", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Cash session id")),
    responses(
        (status = 200, description = "The X report", body = XReport),
        (status = 403, description = "Missing permission (`rbac.forbidden`), another cashier's session without `operations.cash.report_any` (`cash.not_your_session`), or the cashier's own open session while counting is blind (`cash.blind_count`)", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such session (`cash.session_not_found`)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn x_report(
    State(state): State<AppState>,
    caller: AuthContext,
    Path(id): Path<Uuid>,
) -> Result<Json<XReport>, ApiError> {
    let mut conn = state.pool().acquire().await?;
    let business = Business::load(&mut conn)
        .await?
        .ok_or(ApiError::SetupRequired)?;
    let scale = business.currency_scale;
    let session = fetch_session(&mut conn, id, scale).await?;
    let sees_any = caller.has(REPORT_ANY) || caller.has(MANAGE_ANY);
    if session.opened_by != caller.user_id && !sees_any {
        caller
            .require(&state, REPORT_ANY)
            .await
            .map_err(|_| not_your_session())?;
    }
    // Blind count: the cashier counts the drawer before learning what it should hold.
    if business.blind_close && session.status == "open" && !sees_any {
        return Err(ApiError::Denied {
            code: "cash.blind_count",
            detail: "Counting is blind here: close the session with the cash you count; its X report, with the expected cash and the variance, follows the close.".to_owned(),
        });
    }
    let (flows, sales, refunds, drawer) = cash_flows(&state, &mut conn, id).await?;
    // An open session's copies run until now, whatever the clock says.
    let until = session
        .closed_at
        .unwrap_or(chrono::DateTime::<chrono::Utc>::MAX_UTC);
    let receipt_copies = crate::plugs::operations::api::cash::receipt_copies(
        &state,
        &mut conn,
        session.register_id,
        session.opened_at,
        until,
    )
    .await?;
    Ok(Json(XReport {
        session,
        currency: business.currency,
        sales_count: sales.count,
        net: show(sales.net, scale),
        tax: show(sales.tax, scale),
        total: show(sales.total, scale),
        cash_rounding: show(sales.cash_rounding, scale),
        by_payment_method: sales
            .by_method
            .into_iter()
            .map(|(method, count, amount)| MethodTotal {
                method,
                count,
                amount: show(amount, scale),
            })
            .collect(),
        by_tax_rate: sales
            .by_rate
            .into_iter()
            .map(|(rate, net, tax, gross)| RateTotal {
                rate: rate.normalize().to_string(),
                net: show(net, scale),
                tax: show(tax, scale),
                gross: show(gross, scale),
            })
            .collect(),
        refunds: RefundSummary {
            returns_count: refunds.returns,
            voids_count: refunds.voids,
            net: show(refunds.net, scale),
            tax: show(refunds.tax, scale),
            total: show(refunds.total, scale),
            by_refund_method: refunds
                .by_method
                .into_iter()
                .map(|(method, count, amount)| MethodTotal {
                    method,
                    count,
                    amount: show(amount, scale),
                })
                .collect(),
        },
        cash: CashSummary {
            opening_float: show(flows.opening_float, scale),
            cash_payments: show(flows.cash_payments, scale),
            change_given: show(flows.change_given, scale),
            cash_in: show(flows.cash_in, scale),
            cash_out: show(flows.cash_out, scale),
            cash_refunds: show(flows.cash_refunds, scale),
            expected_cash: show(flows.expected(), scale),
            no_sales: drawer.no_sales,
        },
        receipt_copies,
    }))
}
