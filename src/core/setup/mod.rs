//! First-run setup: the business, its settings, the modules' defaults (their `seed`: a branch,
//! location and register), the built-in roles and the first super admin. Runs once, over HTTP (with the one-time token) or
//! from `plugpos init`.

pub mod http;
pub mod token;

use std::str::FromStr;

use anyhow::Context;
use chrono::{DateTime, Utc};
use secrecy::{ExposeSecret, SecretString};
use serde_json::json;
use sqlx::PgPool;
use uuid::Uuid;

use crate::core::audit::{Actor, AuditedTx, Change};
use crate::core::auth::{password, permissions};
use crate::core::http::problem::FieldError;
use crate::core::modules::Registry;
use crate::shared::ids::new_id;

/// The module setup's audit records are filed under.
const MODULE: &str = "core.setup";

/// The built-in role templates of SPEC section 4 (name, description).
pub const BUILTIN_ROLES: [(&str, &str); 5] = [
    (
        "cashier",
        "Sell, take payments, own cash session, create returns; catalog without cost prices",
    ),
    (
        "manager",
        "Everything a cashier can, plus voids, price overrides, return approval, catalog and stock, reports",
    ),
    (
        "accountant",
        "Reports, closings, audit read and export, catalog with cost prices; no selling",
    ),
    (
        "auditor",
        "Read-only: audit read, export and verify, reports, catalog",
    ),
    (
        "super_admin",
        "Everything, including users, roles, modules, settings, backups, restore, diagnostics",
    ),
];

/// Setup input as received, before validation.
pub struct SetupInput {
    pub business_name: String,
    pub currency: String,
    pub timezone: String,
    pub admin_username: String,
    pub admin_password: SecretString,
}

/// Setup input that passed validation.
pub struct ValidSetup {
    pub business_name: String,
    pub currency: iso_currency::Currency,
    pub timezone: chrono_tz::Tz,
    pub admin_username: String,
    pub admin_password: SecretString,
}

/// What setup created.
#[derive(Debug, Clone)]
pub struct SetupOutcome {
    pub business_name: String,
    pub currency: String,
    pub timezone: String,
    pub admin_id: Uuid,
    pub admin_username: String,
    /// What the modules' seeds created, by name (`"register_id"`).
    pub seeded: std::collections::BTreeMap<&'static str, Uuid>,
}

/// Why setup did not happen.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("this instance is already set up; setup runs once")]
    AlreadyDone,
    #[error("invalid setup input")]
    Invalid(Vec<FieldError>),
    #[error(transparent)]
    Failed(#[from] anyhow::Error),
}

impl SetupInput {
    /// Validates every field and reports all problems at once, named by their JSON path.
    pub fn validate(self) -> Result<ValidSetup, Vec<FieldError>> {
        let mut errors = Vec::new();
        let name = self.business_name.trim().to_owned();
        if name.is_empty() || name.chars().count() > 200 {
            errors.push(FieldError::new(
                "business.name",
                "must be 1 to 200 characters",
            ));
        }
        // Codes without a minor unit (XXX "no currency", XAU gold, XDR...) are not money a shop takes.
        let currency =
            iso_currency::Currency::from_code(&self.currency.trim().to_ascii_uppercase())
                .filter(|c| c.exponent().is_some());
        if currency.is_none() {
            errors.push(FieldError::new(
                "business.currency",
                "not an ISO 4217 currency code (e.g. \"EUR\")",
            ));
        }
        let timezone = chrono_tz::Tz::from_str(self.timezone.trim()).ok();
        if timezone.is_none() {
            errors.push(FieldError::new(
                "business.timezone",
                "not an IANA time zone (e.g. \"Europe/Berlin\")",
            ));
        }
        let username = self.admin_username.trim().to_owned();
        let username_ok = (3..=64).contains(&username.chars().count())
            && username
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "._-@".contains(c));
        if !username_ok {
            errors.push(FieldError::new(
                "admin.username",
                "must be 3 to 64 characters of letters, digits, . _ - @",
            ));
        }
        if let Err(why) = password::check_policy(self.admin_password.expose_secret(), &username) {
            errors.push(FieldError::new("admin.password", why));
        }
        match (currency, timezone, errors.is_empty()) {
            (Some(currency), Some(timezone), true) => Ok(ValidSetup {
                business_name: name,
                currency,
                timezone,
                admin_username: username,
                admin_password: self.admin_password,
            }),
            _ => Err(errors),
        }
    }
}

pub use crate::core::db::is_initialized;

/// Validates and runs setup in one transaction. A concurrent or repeated setup gets `AlreadyDone`.
pub async fn run(
    pool: &PgPool,
    modules: &Registry,
    input: SetupInput,
    now: DateTime<Utc>,
) -> Result<SetupOutcome, SetupError> {
    if is_initialized(pool)
        .await
        .context("cannot read the setup state")?
    {
        return Err(SetupError::AlreadyDone);
    }
    let setup = input.validate().map_err(SetupError::Invalid)?;
    let password_hash = password::hash(setup.admin_password.clone()).await?;
    let mut tx = AuditedTx::begin(pool, Actor::system("setup"), now)
        .await
        .context("cannot start the setup transaction")?;
    let outcome = create_everything(&mut tx, modules, &setup, &password_hash).await?;
    tx.commit().await.context("cannot commit setup")?;
    tracing::info!(
        business = %outcome.business_name,
        admin = %outcome.admin_username,
        "setup complete: business, the modules' defaults, built-in roles and super admin created"
    );
    Ok(outcome)
}

async fn create_everything(
    conn: &mut AuditedTx,
    modules: &Registry,
    setup: &ValidSetup,
    password_hash: &str,
) -> Result<SetupOutcome, SetupError> {
    // The singleton row is the lock: a racing setup inserts nothing and gets AlreadyDone.
    let inserted = sqlx::query(
        "INSERT INTO business (id, name, currency, timezone) VALUES (1, $1, $2, $3) ON CONFLICT (id) DO NOTHING",
    )
    .bind(&setup.business_name)
    .bind(setup.currency.code())
    .bind(setup.timezone.name())
    .execute(&mut **conn)
    .await
    .context("cannot create the business")?;
    if inserted.rows_affected() == 0 {
        return Err(SetupError::AlreadyDone);
    }
    let business = json!({"name": setup.business_name, "currency": setup.currency.code(), "timezone": setup.timezone.name()});
    conn.record(Change::new(MODULE, "business", 1, "business.create").after(business))
        .await
        .context("cannot audit setup")?;
    let settings: serde_json::Map<String, serde_json::Value> = baseline_settings(setup)
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
    conn.record(
        Change::new(MODULE, "settings", "baseline", "settings.create").after(settings.into()),
    )
    .await
    .context("cannot audit setup")?;
    for (key, value) in baseline_settings(setup) {
        sqlx::query("INSERT INTO settings (key, value) VALUES ($1, $2)")
            .bind(key)
            .bind(value)
            .execute(&mut **conn)
            .await
            .with_context(|| format!("cannot store setting {key}"))?;
    }
    let mut seeded = std::collections::BTreeMap::new();
    for module in modules.modules() {
        if let Some(seed) = module.seed() {
            let created = seed(conn)
                .await
                .with_context(|| format!("cannot create the defaults of {}", module.id()))?;
            for row in created {
                conn.record(Change::new(MODULE, row.entity, row.id, row.action).after(row.after))
                    .await
                    .context("cannot audit setup")?;
                seeded.insert(row.name, row.id);
            }
        }
    }
    let super_admin = create_builtin_roles(conn).await?;
    let admin_id = create_admin(conn, setup, password_hash, super_admin).await?;
    Ok(SetupOutcome {
        business_name: setup.business_name.clone(),
        currency: setup.currency.code().to_owned(),
        timezone: setup.timezone.name().to_owned(),
        admin_id,
        admin_username: setup.admin_username.clone(),
        seeded,
    })
}

/// The built-in roles with their permission templates; answers the super admin role's id.
async fn create_builtin_roles(conn: &mut AuditedTx) -> Result<Uuid, SetupError> {
    let mut super_admin = None;
    for (name, description) in BUILTIN_ROLES {
        let id = new_id();
        sqlx::query("INSERT INTO roles (id, name, description, builtin) VALUES ($1, $2, $3, true)")
            .bind(id)
            .bind(name)
            .bind(description)
            .execute(&mut **conn)
            .await
            .with_context(|| format!("cannot create the {name} role"))?;
        for permission in permissions::builtin_template(name) {
            sqlx::query("INSERT INTO role_permissions (role_id, permission) VALUES ($1, $2)")
                .bind(id)
                .bind(permission)
                .execute(&mut **conn)
                .await
                .with_context(|| format!("cannot grant {permission} to the {name} role"))?;
        }
        let granted = permissions::builtin_template(name);
        conn.record(
            Change::new(MODULE, "role", id, "role.create")
                .after(json!({"name": name, "builtin": true, "permissions": granted})),
        )
        .await
        .context("cannot audit setup")?;
        if name == "super_admin" {
            super_admin = Some(id);
        }
    }
    Ok(super_admin.context("the super_admin role is missing from the built-in roles")?)
}

/// The first super admin.
async fn create_admin(
    conn: &mut AuditedTx,
    setup: &ValidSetup,
    password_hash: &str,
    super_admin: Uuid,
) -> Result<Uuid, SetupError> {
    let admin_id = new_id();
    sqlx::query(
        "INSERT INTO users (id, username, display_name, password_hash, password_change_required) \
         VALUES ($1, $2, $2, $3, false)",
    )
    .bind(admin_id)
    .bind(&setup.admin_username)
    .bind(password_hash)
    .execute(&mut **conn)
    .await
    .context("cannot create the admin user")?;
    sqlx::query("INSERT INTO user_roles (user_id, role_id) VALUES ($1, $2)")
        .bind(admin_id)
        .bind(super_admin)
        .execute(&mut **conn)
        .await
        .context("cannot give the admin the super_admin role")?;
    conn.record(
        Change::new(MODULE, "user", admin_id, "user.create")
            .after(json!({"username": setup.admin_username, "roles": ["super_admin"]})),
    )
    .await
    .context("cannot audit setup")?;
    Ok(admin_id)
}

/// The settings every business starts with; administration edits them later.
fn baseline_settings(setup: &ValidSetup) -> Vec<(&'static str, serde_json::Value)> {
    vec![
        (
            "business.currency_scale",
            json!(setup.currency.exponent().unwrap_or(0)),
        ),
        ("tax.prices_include_tax", json!(true)),
        (
            "numbering.receipt_format",
            json!(crate::core::settings::DEFAULT_RECEIPT_FORMAT),
        ),
        ("numbering.receipt_digits", json!(6)),
        (
            "payment.cash_rounding",
            json!(
                rust_decimal::Decimal::new(1, setup.currency.exponent().unwrap_or(0).into())
                    .to_string()
            ),
        ),
        ("cash.variance_reason_threshold", json!("0")),
        ("security.mfa_required_roles", json!([])),
    ]
}
