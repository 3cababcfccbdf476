//! Roles, users and who may change them. Privilege changes are security events; nobody can
//! grant a permission they do not hold, and the instance always keeps an enabled super admin.

pub mod roles;
pub mod store;
pub mod users;

use serde_json::Value;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::core::auth::context::Authenticated;
use crate::core::http::ApiError;
use crate::core::security::events::{self, EventKind, SecurityEvent};
use crate::core::state::AppState;

/// The permissions that keep the instance administrable; super_admin never loses them.
pub const ADMINISTRABLE: [&str; 4] = [
    "administration.users.read",
    "administration.users.manage",
    "administration.roles.read",
    "administration.roles.manage",
];

/// Refuses (and records) granting any permission the caller does not hold.
pub async fn refuse_escalation(
    state: &AppState,
    caller: &Authenticated,
    granted: &[String],
) -> Result<(), ApiError> {
    if let Some(missing) = granted.iter().find(|p| !caller.has(p)) {
        record_denial(
            state,
            caller,
            None,
            serde_json::json!({"permission": missing, "reason": "grant_not_held"}),
        )
        .await?;
        return Err(ApiError::Forbidden(missing.clone()));
    }
    Ok(())
}

/// Records that `caller` was refused, on its own connection: the refusal stays recorded when
/// the transaction the refused request had begun rolls back.
pub async fn record_denial(
    state: &AppState,
    caller: &Authenticated,
    subject: Option<Uuid>,
    details: Value,
) -> Result<(), ApiError> {
    let mut conn = state.pool().acquire().await?;
    record(
        &mut conn,
        caller,
        EventKind::PermissionDenied,
        subject,
        details,
    )
    .await
}

/// Refuses (403 `rbac.escalation`) managing user `target` when they hold a permission `caller`
/// does not: the same rule as granting roles, so `administration.users.manage` cannot take over
/// an account that holds more (reset its password, then log in as it). The refusal is recorded on
/// its own connection, so it stays recorded whatever the caller's transaction does.
pub async fn refuse_managing_above(
    state: &AppState,
    caller: &Authenticated,
    target: Uuid,
) -> Result<(), ApiError> {
    let held = store::permissions_of_user(&mut *state.pool().acquire().await?, target).await?;
    let Some(missing) = held.into_iter().find(|p| !caller.has(p)) else {
        return Ok(());
    };
    record_denial(
        state,
        caller,
        Some(target),
        serde_json::json!({"permission": missing, "reason": "target_holds_more"}),
    )
    .await?;
    Err(ApiError::Escalation(missing))
}

/// Records a security event caused by `caller`.
pub async fn record(
    conn: &mut PgConnection,
    caller: &Authenticated,
    kind: EventKind,
    subject: Option<Uuid>,
    mut details: Value,
) -> Result<(), ApiError> {
    if let (Some(subject), Some(map)) = (subject, details.as_object_mut()) {
        map.insert(
            "subject_user_id".to_owned(),
            Value::from(subject.to_string()),
        );
    }
    events::record(
        conn,
        SecurityEvent {
            kind,
            user_id: Some(caller.user_id),
            username: Some(&caller.username),
            origin: &caller.origin,
            details,
        },
    )
    .await?;
    Ok(())
}

/// Enabled users holding the super_admin role, counted after the caller's own change, inside its
/// transaction. The count is taken under a transaction lock held until commit: two changes that
/// each remove a super admin (two disables at once) are counted one after the other, so the second
/// sees the first and the last super admin cannot be removed by a race.
pub async fn enabled_super_admins(conn: &mut PgConnection) -> Result<i64, sqlx::Error> {
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext('core.rbac.super_admins'))")
        .execute(&mut *conn)
        .await?;
    sqlx::query_scalar(
        "SELECT count(DISTINCT u.id) FROM users u JOIN user_roles ur ON ur.user_id = u.id JOIN roles r ON r.id = ur.role_id \
         WHERE r.name = 'super_admin' AND u.disabled_at IS NULL",
    )
    .fetch_one(conn)
    .await
}

/// Roles, permissions and users, each with its access rule (assembled by the server with the other capabilities').
pub fn routes() -> utoipa_axum::router::OpenApiRouter<crate::core::state::AppState> {
    use crate::core::auth::access::Access::Permission;
    use crate::core::auth::access::declare;
    use utoipa_axum::routes;
    utoipa_axum::router::OpenApiRouter::new()
        .routes(declare(
            Permission("administration.roles.read"),
            routes!(roles::list_permissions),
        ))
        .routes(declare(
            Permission("administration.roles.read"),
            routes!(roles::list),
        ))
        .routes(declare(
            Permission("administration.roles.manage"),
            routes!(roles::create),
        ))
        .routes(declare(
            Permission("administration.roles.manage"),
            routes!(roles::set_permissions),
        ))
        .routes(declare(
            Permission("administration.users.read"),
            routes!(users::list),
        ))
        .routes(declare(
            Permission("administration.users.read"),
            routes!(users::get),
        ))
        .routes(declare(
            Permission("administration.users.manage"),
            routes!(users::create),
        ))
        .routes(declare(
            Permission("administration.users.manage"),
            routes!(users::update),
        ))
        .routes(declare(
            Permission("administration.users.manage"),
            routes!(users::disable),
        ))
        .routes(declare(
            Permission("administration.users.manage"),
            routes!(users::enable),
        ))
        .routes(declare(
            Permission("administration.users.manage"),
            routes!(users::reset_password),
        ))
        .routes(declare(
            Permission("administration.users.manage"),
            routes!(users::unlock),
        ))
}
