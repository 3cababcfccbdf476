//! `GET /api/v1/settings` and `PATCH /api/v1/settings`.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::ToSchema;

use super::registry::{self, Setting};
use super::store;
use crate::core::audit::{Actor, AuditedTx, Change};
use crate::core::auth::context::AuthContext;
use crate::core::http::problem::{FieldError, Problem};
use crate::core::http::{ApiError, ApiJson};
use crate::core::settings::file::{self, FileSetting};
use crate::core::state::AppState;

/// The audit record's module.
const MODULE: &str = "core.settings";
/// The longest reason kept with a change.
const MAX_REASON_CHARS: usize = 500;

/// One business setting as the caller may see it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SettingView {
    /// `numbering.receipt_format`.
    pub key: String,
    /// The module that declared it (and reads it).
    pub module: String,
    /// `bool` (a feature switch when it turns a behaviour on or off), `integer`, `amount` (money
    /// as a string like `"0.05"`), `text`, `names` (a list of names) or `objects` (a list of objects).
    #[serde(rename = "type")]
    pub value_type: String,
    /// The value in force.
    pub value: Value,
    pub default: Value,
    /// `database` (stored) or `default`.
    pub source: String,
    /// `min`/`max` (integer, amount), `min_chars`/`max_chars` (text), `max_items` (lists).
    pub constraints: Value,
    pub description: String,
    /// The caller may change it.
    pub writable: bool,
    /// A change needs a `reason`.
    pub needs_reason: bool,
}

/// The business settings the caller may see, and the config file's settings (read-only).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Settings {
    /// Send it back with a change: a change made since is refused (`conflict.version_mismatch`).
    pub version: i64,
    /// By key.
    pub settings: Vec<SettingView>,
    /// The config file's settings (ports, paths, pool sizes, timings), by key, shown to callers
    /// with `administration.system.read`; they change only in the file (and a restart).
    pub config: Vec<FileSetting>,
}

/// A change of some settings, applied as a whole or not at all.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SettingsChange {
    /// New values by key; every key must be a declared setting the caller may change (the
    /// `SettingsValues` schema lists them).
    #[schema(value_type = SettingsValues)]
    pub values: BTreeMap<String, Value>,
    /// The `version` the caller read.
    #[schema(minimum = 0)]
    pub version: i64,
    /// Why: required when a changed setting says `needs_reason` (up to 500 characters).
    #[schema(max_length = 500)]
    pub reason: Option<String>,
}

/// Placeholder schema for `values`; the served document lists every declared setting in it.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct SettingsValues(BTreeMap<String, Value>);

fn view(
    caller: &AuthContext,
    module: &str,
    setting: &Setting,
    stored: &store::Stored,
    currency_scale: u32,
) -> SettingView {
    let default = setting.default.value(currency_scale);
    let value = stored.values.get(setting.key).cloned();
    SettingView {
        key: setting.key.to_owned(),
        module: module.to_owned(),
        value_type: setting.value_type.name().to_owned(),
        source: if value.is_some() {
            "database"
        } else {
            "default"
        }
        .to_owned(),
        value: value.unwrap_or_else(|| default.clone()),
        default,
        constraints: setting.value_type.constraints(),
        description: setting.description.to_owned(),
        writable: setting.write.is_some_and(|p| caller.has(p)),
        needs_reason: setting.needs_reason,
    }
}

fn currency_scale(stored: &store::Stored) -> u32 {
    stored
        .values
        .get("business.currency_scale")
        .and_then(Value::as_u64)
        .and_then(|v| u32::try_from(v).ok())
        .unwrap_or(2)
}

fn present(state: &AppState, caller: &AuthContext, stored: &store::Stored) -> Settings {
    let scale = currency_scale(stored);
    Settings {
        version: stored.version,
        settings: state
            .settings()
            .iter()
            .filter(|(_, s)| caller.has(s.read))
            .map(|(module, s)| view(caller, module, s, stored, scale))
            .collect(),
        config: if caller.has("administration.system.read") {
            file::settings(state.config())
        } else {
            Vec::new()
        },
    }
}

/// The business settings the caller may see (each with its value, default, type, constraints
/// and description) and, for callers with `administration.system.read`, the config file's.
#[utoipa::path(get, path = "/api/v1/settings", tag = "settings", security(("bearer" = [])),
    responses(
        (status = 200, description = "The settings and their version", body = Settings),
        (status = 403, description = "Missing permission (`rbac.forbidden`)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn get(
    State(state): State<AppState>,
    caller: AuthContext,
) -> Result<Json<Settings>, ApiError> {
    let mut conn = state.pool().acquire().await?;
    let stored = store::load(&mut conn).await?;
    Ok(Json(present(&state, &caller, &stored)))
}

/// The checked change: stored values by key, and the keys that need a reason.
fn checked(
    state: &AppState,
    caller: &AuthContext,
    change: &SettingsChange,
    scale: u32,
    in_force: &dyn Fn(&str) -> Option<Value>,
) -> Result<BTreeMap<String, Value>, ApiError> {
    let mut errors = Vec::new();
    let mut values = BTreeMap::new();
    let mut forbidden = None;
    let mut need_reason = Vec::new();
    if change.values.is_empty() {
        errors.push(FieldError::new("values", "must name at least one setting"));
    }
    for (key, value) in &change.values {
        let field = format!("values.{key}");
        // A setting the caller may not see is, to them, no setting at all.
        let Some((_, setting)) = state
            .settings()
            .get(key)
            .filter(|(_, s)| caller.has(s.read))
        else {
            errors.push(FieldError::new(field, "is not a setting"));
            continue;
        };
        let Some(write) = setting.write else {
            errors.push(FieldError::new(field, "is fixed at setup"));
            continue;
        };
        if !caller.has(write) {
            forbidden.get_or_insert(write);
            continue;
        }
        let checked = setting.check(value, scale);
        // A value equal to the one in force changes nothing, and needs no reason.
        let unchanged = checked
            .as_ref()
            .is_ok_and(|stored| in_force(key).as_ref() == Some(stored));
        if setting.needs_reason && !unchanged {
            need_reason.push(key.as_str());
        }
        match checked {
            Ok(stored) => {
                values.insert(key.clone(), stored);
            }
            Err(why) => errors.push(FieldError::new(field, why)),
        }
    }
    let reason = change.reason.as_deref().map(str::trim).unwrap_or_default();
    if reason.chars().count() > MAX_REASON_CHARS || reason.chars().any(char::is_control) {
        errors.push(FieldError::new(
            "reason",
            format!("must be at most {MAX_REASON_CHARS} characters without control characters"),
        ));
    } else if reason.is_empty() && !need_reason.is_empty() {
        errors.push(FieldError::new(
            "reason",
            format!("is required to change {}", need_reason.join(", ")),
        ));
    }
    if change.version < 0 {
        errors.push(FieldError::new(
            "version",
            "must be a version from GET /api/v1/settings",
        ));
    }
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    if let Some(permission) = forbidden {
        return Err(ApiError::Forbidden(permission.to_owned()));
    }
    Ok(values)
}

/// Change settings: validated as a whole (`422` naming each bad key and why), applied in one
/// audited transaction (before and after of each changed key), effective for the next request,
/// and published on the `settings` topic. `version` must be the one read (`409
/// conflict.version_mismatch`). Values equal to those in force change nothing.
#[utoipa::path(patch, path = "/api/v1/settings", tag = "settings", security(("bearer" = [])),
    request_body = SettingsChange,
    responses(
        (status = 200, description = "The settings after the change", body = Settings),
        (status = 403, description = "A setting needs a permission the caller lacks (`rbac.forbidden`)", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Changed since `version` was read (`conflict.version_mismatch`)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Unknown, fixed or invalid settings, or a missing reason (`validation.failed`)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn patch(
    State(state): State<AppState>,
    caller: AuthContext,
    ApiJson(change): ApiJson<SettingsChange>,
) -> Result<Json<Settings>, ApiError> {
    let mut tx = AuditedTx::begin(state.pool(), Actor::user(&caller), state.clock().now()).await?;
    let stored = store::load(&mut tx).await?;
    let scale = currency_scale(&stored);
    let in_force = |key: &str| {
        stored.values.get(key).cloned().or_else(|| {
            state
                .settings()
                .get(key)
                .map(|(_, s)| s.default.value(scale))
        })
    };
    let values = checked(&state, &caller, &change, scale, &in_force)?;
    ApiError::check_version("settings", stored.version, change.version)?;
    let changed: BTreeMap<String, Value> = values
        .into_iter()
        .filter(|(key, value)| in_force(key).as_ref() != Some(value))
        .collect();
    if changed.is_empty() {
        tx.rollback().await?;
        return Ok(Json(present(&state, &caller, &stored)));
    }
    let Some(version) = store::next_version(&mut tx, change.version).await? else {
        return Err(ApiError::version_mismatch(
            "settings",
            stored.version + 1,
            change.version,
        ));
    };
    store::put(&mut tx, &changed).await?;
    let before: serde_json::Map<String, Value> = changed
        .keys()
        .map(|k| (k.clone(), in_force(k).unwrap_or(Value::Null)))
        .collect();
    let reason = change
        .reason
        .as_deref()
        .map(str::trim)
        .filter(|r| !r.is_empty())
        .map(str::to_owned);
    tx.record(
        Change::new(MODULE, "settings", version, "settings.update")
            .before(Value::Object(before))
            .after(json!(changed))
            .reason(reason, None),
    )
    .await?;
    tx.commit().await?;
    // The topic is read with READ: keys that need more to be seen are not named there.
    let keys: Vec<&String> = changed
        .keys()
        .filter(|k| {
            state
                .settings()
                .get(k)
                .is_some_and(|(_, s)| s.read == registry::READ)
        })
        .collect();
    state.live().publish(
        "settings",
        "settings.changed",
        json!({"version": version, "keys": keys}),
    );
    let mut conn = state.pool().acquire().await?;
    let stored = store::load(&mut conn).await?;
    Ok(Json(present(&state, &caller, &stored)))
}

/// Settings routes, each with its access rule.
pub fn routes() -> utoipa_axum::router::OpenApiRouter<AppState> {
    use crate::core::auth::access::Access::Permission;
    use crate::core::auth::access::declare;
    use utoipa_axum::routes;
    utoipa_axum::router::OpenApiRouter::new()
        .routes(declare(Permission(registry::READ), routes!(get, patch)))
        .routes(declare(Permission(registry::READ), routes!(business)))
        .routes(declare(
            Permission(registry::MANAGE),
            routes!(rename_business),
        ))
}

/// The business as set up: its name (which may change), currency and time zone (fixed at
/// setup: money and business days are counted in them).
#[derive(Debug, Serialize, ToSchema)]
pub struct BusinessView {
    pub name: String,
    pub currency: String,
    pub timezone: String,
    /// Moves on with each rename.
    pub version: i64,
}

/// A new name for the business.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BusinessRename {
    /// 1 to 200 characters, not only spaces (printed on receipts and Z reports from now on).
    pub name: String,
    /// The version read (`409 conflict.version_mismatch` when it changed since).
    pub version: i64,
}

async fn business_view(conn: &mut sqlx::PgConnection) -> Result<BusinessView, ApiError> {
    let row: Option<(String, String, String, i64)> =
        sqlx::query_as("SELECT name, currency::text, timezone, version FROM business")
            .fetch_optional(&mut *conn)
            .await?;
    let (name, currency, timezone, version) = row.ok_or(ApiError::SetupRequired)?;
    Ok(BusinessView {
        name,
        currency,
        timezone,
        version,
    })
}

/// The business: name, currency, time zone.
#[utoipa::path(get, path = "/api/v1/business", tag = "settings", security(("bearer" = [])),
    responses(
        (status = 200, description = "The business", body = BusinessView),
        (status = 403, description = "Missing permission (`rbac.forbidden`)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn business(
    State(state): State<AppState>,
    _caller: AuthContext,
) -> Result<Json<BusinessView>, ApiError> {
    let mut conn = state.pool().acquire().await?;
    Ok(Json(business_view(&mut conn).await?))
}

/// Rename the business (receipts, reports and Z reports print the new name from now on; what
/// was already printed or signed keeps the old one). Audited (`business.rename`). A restore
/// asks for the name the business has then.
#[utoipa::path(patch, path = "/api/v1/business", tag = "settings", security(("bearer" = [])),
    request_body = BusinessRename,
    responses(
        (status = 200, description = "Renamed", body = BusinessView),
        (status = 403, description = "Missing permission (`rbac.forbidden`)", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Changed since `version` was read (`conflict.version_mismatch`)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A blank or too long name (`validation.failed`)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn rename_business(
    State(state): State<AppState>,
    caller: AuthContext,
    ApiJson(change): ApiJson<BusinessRename>,
) -> Result<Json<BusinessView>, ApiError> {
    let name = change.name.trim();
    if name.is_empty() || name.chars().count() > 200 || name.chars().any(char::is_control) {
        return Err(ApiError::invalid(
            "name",
            "must be 1 to 200 characters, not only spaces, without control characters",
        ));
    }
    let mut tx = AuditedTx::begin(state.pool(), Actor::user(&caller), state.clock().now()).await?;
    let before = business_view(&mut tx).await?;
    ApiError::check_version("business", before.version, change.version)?;
    if before.name == name {
        tx.rollback().await?;
        return Ok(Json(before));
    }
    sqlx::query("UPDATE business SET name = $1, version = version + 1, updated_at = now()")
        .bind(name)
        .execute(&mut *tx)
        .await?;
    tx.record(
        Change::new(MODULE, "business", before.version + 1, "business.rename")
            .before(json!({"name": before.name}))
            .after(json!({"name": name})),
    )
    .await?;
    let after = business_view(&mut tx).await?;
    tx.commit().await?;
    Ok(Json(after))
}

/// Describes every declared setting in the served document: `SettingsValues` gets one property
/// per setting, with its type, constraints, default and description.
pub fn describe(document: &mut utoipa::openapi::OpenApi, settings: &registry::Registry) {
    use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
    use utoipa::openapi::{ArrayBuilder, RefOr};
    let mut values = ObjectBuilder::new()
        .description(Some(
            "New values by key. Each property is a declared setting (what the caller may change depends on their permissions).",
        ))
        .additional_properties(Some(utoipa::openapi::schema::AdditionalProperties::FreeForm(false)));
    for (module, setting) in settings.iter().filter(|(_, s)| s.write.is_some()) {
        let description = format!(
            "{} ({module}{})",
            setting.description,
            if setting.needs_reason {
                "; a change needs a reason"
            } else {
                ""
            }
        );
        let base = ObjectBuilder::new()
            .description(Some(description))
            .default(Some(setting.default.value(2)));
        let schema: Schema = match setting.value_type {
            registry::SettingType::Bool => base.schema_type(Type::Boolean).into(),
            registry::SettingType::Integer { min, max } => base
                .schema_type(Type::Integer)
                .minimum(Some(min as f64))
                .maximum(Some(max as f64))
                .into(),
            registry::SettingType::Amount { .. } => base
                .schema_type(Type::String)
                .pattern(Some(r"^[0-9]{1,12}(\.[0-9]{1,4})?$"))
                .into(),
            registry::SettingType::Text { max_chars } => base
                .schema_type(Type::String)
                .min_length(Some(1))
                .max_length(Some(max_chars))
                .into(),
            registry::SettingType::Names { max_items } => {
                let item = ObjectBuilder::new()
                    .schema_type(Type::String)
                    .pattern(Some("^[a-z][a-z0-9_]{0,63}$"));
                ArrayBuilder::new()
                    .items(item)
                    .max_items(Some(max_items))
                    .unique_items(true)
                    .description(Some(setting.description))
                    .into()
            }
            registry::SettingType::Lines {
                max_items,
                max_chars,
            } => ArrayBuilder::new()
                .items(
                    ObjectBuilder::new()
                        .schema_type(Type::String)
                        .min_length(Some(1))
                        .max_length(Some(max_chars)),
                )
                .max_items(Some(max_items))
                .description(Some(setting.description))
                .into(),
            registry::SettingType::Objects { max_items } => ArrayBuilder::new()
                .items(ObjectBuilder::new().schema_type(Type::Object))
                .max_items(Some(max_items))
                .description(Some(setting.description))
                .into(),
        };
        values = values.property(setting.key, RefOr::T(schema));
    }
    if let Some(components) = document.components.as_mut() {
        components
            .schemas
            .insert("SettingsValues".to_owned(), RefOr::T(values.into()));
    }
}
