//! `/api/v1/tax-classes`: named VAT/sales-tax rates.

use axum::Json;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use rust_decimal::Decimal;
use serde::Deserialize;
use serde_json::json;
use utoipa::ToSchema;

use crate::core::audit::{Actor, AuditedTx, Change};
use crate::core::auth::context::AuthContext;
use crate::core::db::violated_constraint;
use crate::core::http::problem::Problem;
use crate::core::http::{ApiError, ApiJson, Page, PageQuery, keyset_page};
use crate::core::state::AppState;
use crate::plugs::management::catalog::MODULE;
use crate::plugs::management::catalog::store::tax_classes::{self as store, TaxClass};
use crate::shared::ids::new_id;

/// A new tax class.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewTaxClass {
    /// 1 to 100 characters, not only spaces.
    #[schema(min_length = 1, max_length = 100)]
    pub name: String,
    /// A decimal string, at least 0 and below 1, at most 6 decimals.
    #[schema(example = "0.19")]
    pub rate: String,
}

/// Parses a rate: a decimal string in [0, 1) with at most 6 decimals (never a float).
pub fn parse_rate(text: &str) -> Result<Decimal, ApiError> {
    let text = text.trim();
    // Plain decimal notation only: no exponents, no thousands separators.
    let plain = !text.is_empty()
        && text
            .chars()
            .all(|c| c.is_ascii_digit() || c == '.' || c == '-');
    let rate: Decimal =
        text.parse().ok().filter(|_| plain).ok_or_else(|| {
            ApiError::invalid("rate", "must be a decimal string such as \"0.19\"")
        })?;
    if rate < Decimal::ZERO || rate >= Decimal::ONE {
        return Err(ApiError::invalid(
            "rate",
            "must be at least 0 and below 1 (0.19 is 19 %)",
        ));
    }
    if rate.normalize().scale() > 6 {
        return Err(ApiError::invalid("rate", "must have at most 6 decimals"));
    }
    Ok(rate.normalize())
}

/// Every tax class.
#[utoipa::path(get, path = "/api/v1/tax-classes", tag = "catalog", security(("bearer" = [])), params(PageQuery),
    responses(
        (status = 200, description = "A page of tax classes, by name", body = Page<TaxClass>),
        (status = 422, description = "Bad limit or cursor (`validation.failed`)", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Missing permission (`rbac.forbidden`)", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Module disabled (`module.disabled`)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn list(
    State(state): State<AppState>,
    _caller: AuthContext,
    Query(query): Query<PageQuery>,
) -> Result<Json<Page<TaxClass>>, ApiError> {
    let mut conn = state.pool().acquire().await?;
    let classes = store::list(&mut conn).await?;
    Ok(Json(keyset_page(
        classes,
        |c| format!("{}\0{}", c.name, c.id),
        &query,
    )?))
}

/// Create a tax class (audited).
#[utoipa::path(post, path = "/api/v1/tax-classes", tag = "catalog", security(("bearer" = [])), request_body = NewTaxClass,
    responses(
        (status = 201, description = "Created", body = TaxClass),
        (status = 403, description = "Missing permission (`rbac.forbidden`)", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Name taken (`tax_class.name_taken`)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid name or rate (`validation.failed`)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn create(
    State(state): State<AppState>,
    caller: AuthContext,
    ApiJson(new): ApiJson<NewTaxClass>,
) -> Result<(StatusCode, Json<TaxClass>), ApiError> {
    let name = new.name.trim().to_owned();
    if name.is_empty() || new.name.chars().count() > 100 {
        return Err(ApiError::invalid("name", "must be 1 to 100 characters"));
    }
    let rate = parse_rate(&new.rate)?;
    let mut tx = AuditedTx::begin(state.pool(), Actor::user(&caller), state.clock().now()).await?;
    let id = new_id();
    let inserted = store::insert(&mut tx, id, &name, rate).await;
    if let Err(e) = inserted {
        let taken = violated_constraint(&e) == Some("tax_classes_name_key");
        return Err(if taken {
            ApiError::Conflict {
                code: "tax_class.name_taken",
                detail: format!("A tax class named `{name}` exists already."),
            }
        } else {
            e.into()
        });
    }
    tx.record(
        Change::new(MODULE, "tax_class", id, "tax_class.create")
            .after(json!({"name": name, "rate": rate.to_string()})),
    )
    .await?;
    tx.commit().await?;
    Ok((
        StatusCode::CREATED,
        Json(TaxClass {
            id,
            name,
            rate,
            version: 1,
        }),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_are_decimal_fractions() {
        assert_eq!(parse_rate("0.19").unwrap().to_string(), "0.19");
        assert_eq!(parse_rate(" 0.070 ").unwrap().to_string(), "0.07");
        assert_eq!(parse_rate("0").unwrap().to_string(), "0");
        for bad in ["1", "19", "-0.1", "0.1234567", "abc", "1e-2"] {
            assert!(parse_rate(bad).is_err(), "{bad}");
        }
    }
}
