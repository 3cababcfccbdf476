//! `/api/v1/users`: list, create, view, edit, disable/enable, reset password, unlock.
//!
//! Contact fields (email, phone) are field-level protected: absent from responses without
//! `administration.users.contact_read`, and a write that sets them without
//! `administration.users.contact_write` is refused with 403 `rbac.field_forbidden`.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use serde_json::json;
use sqlx::PgConnection;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::store::{self, NewUserRow, UserRow};
use crate::core::audit::{Actor, AuditedTx, Change};
use crate::core::auth::context::{AuthContext, Authenticated};
use crate::core::auth::sessions::{self, EndReason};
use crate::core::auth::{password, throttle};
use crate::core::http::problem::{FieldError, Problem};
use crate::core::http::{ApiError, ApiJson};
use crate::core::http::{page, page_limit};
use crate::core::rbac::{
    enabled_super_admins, record, record_denial, refuse_escalation, refuse_managing_above,
};
use crate::core::security::events::EventKind;
use crate::core::state::AppState;
use crate::shared::ids::new_id;

/// The module user changes are audited under.
const MODULE: &str = "core.rbac";
const CONTACT_READ: &str = "administration.users.contact_read";
const CONTACT_WRITE: &str = "administration.users.contact_write";
const ROLES_MANAGE: &str = "administration.roles.manage";

/// A user as administrators see them.
#[derive(Debug, Serialize, ToSchema)]
pub struct User {
    pub id: Uuid,
    pub username: String,
    pub display_name: String,
    pub roles: Vec<String>,
    pub disabled: bool,
    pub password_change_required: bool,
    /// Present only with `administration.users.contact_read`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub email: Option<Option<String>>,
    /// Present only with `administration.users.contact_read`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub phone: Option<Option<String>>,
    pub created_at: DateTime<Utc>,
    pub version: i64,
    /// Whether the user has a confirmed second factor (authenticator app).
    pub mfa_enabled: bool,
}

/// A page of users.
#[derive(Debug, Serialize, ToSchema)]
pub struct UserPage {
    pub items: Vec<User>,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

/// Paging.
#[derive(Debug, Deserialize, IntoParams)]
pub struct PageQuery {
    /// 1 to 200 (default 50).
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<i64>,
    /// The `next_cursor` of the previous page.
    #[param(
        pattern = "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
    )]
    pub cursor: Option<String>,
}

/// A new user; they must change the password at first login.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewUser {
    pub username: String,
    #[schema(value_type = String, format = Password, min_length = 10, max_length = 128)]
    pub password: SecretString,
    #[serde(default)]
    pub roles: Vec<String>,
    pub display_name: Option<String>,
    pub email: Option<String>,
    pub phone: Option<String>,
}

/// Changes to a user; absent fields stay as they are.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UserPatch {
    pub display_name: Option<String>,
    pub email: Option<String>,
    pub phone: Option<String>,
    /// The complete new role list (a privilege change).
    pub roles: Option<Vec<String>>,
}

/// A password set by an administrator; the user must change it at next login.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasswordReset {
    #[schema(value_type = String, format = Password, min_length = 10, max_length = 128)]
    pub password: SecretString,
}

/// What the audit log keeps of a user: no password hash, and contact details only as "set or not"
/// (the audit log is read by people who may not see them).
fn audit_view(row: &UserRow) -> serde_json::Value {
    json!({
        "username": row.username,
        "display_name": row.display_name,
        "roles": row.roles,
        "disabled": row.disabled,
        "password_change_required": row.password_change_required,
        "email_set": row.email.is_some(),
        "phone_set": row.phone.is_some(),
    })
}

fn present(row: UserRow, caller: &Authenticated) -> User {
    let contact = caller.has(CONTACT_READ);
    User {
        id: row.id,
        username: row.username,
        display_name: row.display_name,
        roles: row.roles,
        disabled: row.disabled,
        password_change_required: row.password_change_required,
        email: contact.then_some(row.email),
        phone: contact.then_some(row.phone),
        created_at: row.created_at,
        version: row.version,
        mfa_enabled: row.mfa_enabled,
    }
}

async fn fetch(conn: &mut PgConnection, id: Uuid) -> Result<UserRow, ApiError> {
    store::user(conn, id)
        .await?
        .ok_or_else(|| ApiError::NotFound {
            code: "user.not_found",
            detail: format!("No user with id {id}."),
        })
}

/// Refuses (and records) setting contact fields without the permission to write them.
async fn check_contact_write(
    state: &AppState,
    caller: &Authenticated,
    email: &Option<String>,
    phone: &Option<String>,
) -> Result<(), ApiError> {
    let field = if email.is_some() {
        "email"
    } else if phone.is_some() {
        "phone"
    } else {
        return Ok(());
    };
    if caller.has(CONTACT_WRITE) {
        return Ok(());
    }
    record_denial(
        state,
        caller,
        None,
        json!({"permission": CONTACT_WRITE, "field": field}),
    )
    .await?;
    Err(ApiError::FieldForbidden {
        field: field.to_owned(),
        permission: CONTACT_WRITE.to_owned(),
    })
}

/// Resolves role names, refusing unknown ones and any whose permissions the caller lacks.
async fn resolve_roles(
    state: &AppState,
    conn: &mut PgConnection,
    caller: &Authenticated,
    names: &[String],
) -> Result<Vec<Uuid>, ApiError> {
    if names.is_empty() {
        return Ok(Vec::new());
    }
    if !caller.has(ROLES_MANAGE) {
        record_denial(
            state,
            caller,
            None,
            json!({"permission": ROLES_MANAGE, "reason": "assign_roles"}),
        )
        .await?;
        return Err(ApiError::Forbidden(ROLES_MANAGE.to_owned()));
    }
    let found = store::roles_named(conn, names).await?;
    let unknown: Vec<FieldError> = names
        .iter()
        .enumerate()
        .filter(|(_, n)| !found.iter().any(|(_, f)| f == *n))
        .map(|(i, n)| FieldError::new(format!("roles[{i}]"), format!("unknown role `{n}`")))
        .collect();
    if !unknown.is_empty() {
        return Err(ApiError::Validation(unknown));
    }
    let ids: Vec<Uuid> = found.iter().map(|(id, _)| *id).collect();
    let granted = store::permissions_of(conn, &ids).await?;
    refuse_escalation(state, caller, &granted).await?;
    Ok(ids)
}

fn check_text(errors: &mut Vec<FieldError>, field: &str, value: &Option<String>, max: usize) {
    if let Some(v) = value
        && v.chars().count() > max
    {
        errors.push(FieldError::new(
            field,
            format!("must be at most {max} characters"),
        ));
    }
}

/// Users, oldest first.
#[utoipa::path(get, path = "/api/v1/users", tag = "rbac", security(("bearer" = [])), params(PageQuery),
    responses(
        (status = 200, description = "A page of users", body = UserPage),
        (status = 403, description = "Missing permission (`rbac.forbidden`)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Bad limit or cursor (`validation.failed`)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn list(
    State(state): State<AppState>,
    caller: AuthContext,
    Query(query): Query<PageQuery>,
) -> Result<Json<UserPage>, ApiError> {
    let limit = page_limit(query.limit, 50, 200)?;
    let after = match &query.cursor {
        Some(c) => Some(
            c.parse::<Uuid>()
                .map_err(|_| ApiError::invalid("cursor", "is not a cursor from this list"))?,
        ),
        None => None,
    };
    let mut conn = state.pool().acquire().await?;
    let rows = store::users(&mut conn, after, limit + 1).await?;
    let (rows, next_cursor) = page(rows, limit, |r| r.id.to_string());
    let items = rows.into_iter().map(|r| present(r, &caller)).collect();
    Ok(Json(UserPage { items, next_cursor }))
}

/// One user.
#[utoipa::path(get, path = "/api/v1/users/{id}", tag = "rbac", security(("bearer" = [])), params(("id" = Uuid, Path, description = "User id")),
    responses(
        (status = 200, description = "The user", body = User),
        (status = 403, description = "Missing permission (`rbac.forbidden`)", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such user (`user.not_found`)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn get(
    State(state): State<AppState>,
    caller: AuthContext,
    Path(id): Path<Uuid>,
) -> Result<Json<User>, ApiError> {
    let mut conn = state.pool().acquire().await?;
    Ok(Json(present(fetch(&mut conn, id).await?, &caller)))
}

/// Create a user (they change the password at first login).
#[utoipa::path(post, path = "/api/v1/users", tag = "rbac", security(("bearer" = [])), request_body = NewUser,
    responses(
        (status = 201, description = "Created", body = User),
        (status = 403, description = "Missing permission (`rbac.forbidden`) or a protected field (`rbac.field_forbidden`)", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Username taken (`user.username_taken`)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid fields (`validation.failed`)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn create(
    State(state): State<AppState>,
    caller: AuthContext,
    ApiJson(new): ApiJson<NewUser>,
) -> Result<(StatusCode, Json<User>), ApiError> {
    let username = new.username.trim().to_owned();
    let mut errors = Vec::new();
    if !((3..=64).contains(&username.chars().count())
        && username
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-@".contains(c)))
    {
        errors.push(FieldError::new(
            "username",
            "must be 3 to 64 characters of letters, digits, . _ - @",
        ));
    }
    if let Err(why) = password::check_policy(new.password.expose_secret(), &username) {
        errors.push(FieldError::new("password", why));
    }
    check_text(&mut errors, "display_name", &new.display_name, 200);
    check_text(&mut errors, "email", &new.email, 254);
    check_text(&mut errors, "phone", &new.phone, 40);
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    let mut conn = state.pool().acquire().await?;
    check_contact_write(&state, &caller, &new.email, &new.phone).await?;
    let role_ids = resolve_roles(&state, &mut conn, &caller, &new.roles).await?;
    // No pooled connection is held while the password hashes (a slow, bounded step).
    drop(conn);
    let hash = state.hashing().hash(new.password).await?;
    let mut tx = AuditedTx::begin(state.pool(), Actor::user(&caller), state.clock().now()).await?;

    let id = new_id();
    let user = NewUserRow {
        id,
        username: &username,
        display_name: new.display_name.as_deref().unwrap_or(&username),
        password_hash: hash,
        email: new.email.as_deref(),
        phone: new.phone.as_deref(),
    };
    if !store::insert_user(&mut tx, user, &role_ids).await? {
        return Err(ApiError::Conflict {
            code: "user.username_taken",
            detail: format!("The username `{username}` is taken."),
        });
    }
    record(
        &mut tx,
        &caller,
        EventKind::PrivilegeChanged,
        Some(id),
        json!({"created": username, "roles": new.roles}),
    )
    .await?;
    let created = fetch(&mut tx, id).await?;
    tx.record(Change::new(MODULE, "user", id, "user.create").after(audit_view(&created)))
        .await?;
    let user = present(created, &caller);
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(user)))
}

/// Edit a user. A new role list is a privilege change: their sessions end at once.
#[utoipa::path(patch, path = "/api/v1/users/{id}", tag = "rbac", security(("bearer" = [])), request_body = UserPatch,
    params(("id" = Uuid, Path, description = "User id")),
    responses(
        (status = 200, description = "Updated", body = User),
        (status = 403, description = "Missing permission (`rbac.forbidden`) or a protected field (`rbac.field_forbidden`); a user who holds a permission you do not (`rbac.escalation`)", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such user (`user.not_found`)", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Would leave no enabled super admin (`rbac.would_lock_out`)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid fields (`validation.failed`)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn update(
    State(state): State<AppState>,
    caller: AuthContext,
    Path(id): Path<Uuid>,
    ApiJson(patch): ApiJson<UserPatch>,
) -> Result<Json<User>, ApiError> {
    refuse_managing_above(&state, &caller, id).await?;
    let mut errors = Vec::new();
    check_text(&mut errors, "display_name", &patch.display_name, 200);
    check_text(&mut errors, "email", &patch.email, 254);
    check_text(&mut errors, "phone", &patch.phone, 40);
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    let mut conn = state.pool().acquire().await?;
    check_contact_write(&state, &caller, &patch.email, &patch.phone).await?;
    let role_ids = match &patch.roles {
        Some(names) if names.is_empty() => {
            if !caller.has(ROLES_MANAGE) {
                return Err(ApiError::Forbidden(ROLES_MANAGE.to_owned()));
            }
            Some(Vec::new())
        }
        Some(names) => Some(resolve_roles(&state, &mut conn, &caller, names).await?),
        None => None,
    };
    drop(conn);
    let mut tx = AuditedTx::begin(state.pool(), Actor::user(&caller), state.clock().now()).await?;

    let before = fetch(&mut tx, id).await?;
    store::update_profile(
        &mut tx,
        id,
        patch.display_name.as_deref(),
        patch.email.as_deref(),
        patch.phone.as_deref(),
    )
    .await?;
    if let Some(role_ids) = role_ids {
        store::replace_roles(&mut tx, id, &role_ids).await?;
        if enabled_super_admins(&mut tx).await? == 0 {
            return Err(ApiError::Conflict {
                code: "rbac.would_lock_out",
                detail: "This would leave no enabled super admin.".to_owned(),
            });
        }
        record(
            &mut tx,
            &caller,
            EventKind::PrivilegeChanged,
            Some(id),
            json!({"roles_before": before.roles, "roles_after": patch.roles}),
        )
        .await?;
    }
    let after = fetch(&mut tx, id).await?;
    let change = Change::new(MODULE, "user", id, "user.update")
        .before(audit_view(&before))
        .after(audit_view(&after));
    tx.record(change).await?;
    let user = present(after, &caller);
    tx.commit().await?;
    Ok(Json(user))
}

async fn set_disabled(
    state: &AppState,
    caller: &AuthContext,
    id: Uuid,
    disable: bool,
) -> Result<Json<User>, ApiError> {
    refuse_managing_above(state, caller, id).await?;
    let mut tx = AuditedTx::begin(state.pool(), Actor::user(caller), state.clock().now()).await?;
    let before = fetch(&mut tx, id).await?;
    store::set_disabled(&mut tx, id, disable).await?;
    if disable {
        if enabled_super_admins(&mut tx).await? == 0 {
            return Err(ApiError::Conflict {
                code: "rbac.would_lock_out",
                detail: "This would leave no enabled super admin.".to_owned(),
            });
        }
        sessions::end_all(&mut tx, id, EndReason::Disabled, state.clock().now()).await?;
    }
    let kind = if disable {
        EventKind::UserDisabled
    } else {
        EventKind::UserEnabled
    };
    record(&mut tx, caller, kind, Some(id), json!({})).await?;
    let after = fetch(&mut tx, id).await?;
    let action = if disable {
        "user.disable"
    } else {
        "user.enable"
    };
    tx.record(
        Change::new(MODULE, "user", id, action)
            .before(audit_view(&before))
            .after(audit_view(&after)),
    )
    .await?;
    let user = present(after, caller);
    tx.commit().await?;
    Ok(Json(user))
}

/// Resetting one's own password or lifting one's own lockout through user administration would
/// skip the current password and its throttle: the caller changes their own password with
/// `POST /auth/password`, and another administrator lifts their lockout.
fn refuse_own_account(caller: &Authenticated, id: Uuid) -> Result<(), ApiError> {
    if caller.user_id != id {
        return Ok(());
    }
    Err(ApiError::Conflict {
        code: "user.own_account",
        detail: "Not for your own account: change your password with POST /api/v1/auth/password; \
                 another administrator lifts your lockout."
            .to_owned(),
    })
}

/// Disable a user: their sessions end at once and they cannot log in.
#[utoipa::path(post, path = "/api/v1/users/{id}/disable", tag = "rbac", security(("bearer" = [])), params(("id" = Uuid, Path, description = "User id")),
    responses(
        (status = 200, description = "Disabled", body = User),
        (status = 403, description = "Missing permission (`rbac.forbidden`); a user who holds a permission you do not (`rbac.escalation`)", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such user (`user.not_found`)", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Would leave no enabled super admin (`rbac.would_lock_out`)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn disable(
    State(state): State<AppState>,
    caller: AuthContext,
    Path(id): Path<Uuid>,
) -> Result<Json<User>, ApiError> {
    set_disabled(&state, &caller, id, true).await
}

/// Enable a disabled user.
#[utoipa::path(post, path = "/api/v1/users/{id}/enable", tag = "rbac", security(("bearer" = [])), params(("id" = Uuid, Path, description = "User id")),
    responses(
        (status = 200, description = "Enabled", body = User),
        (status = 403, description = "Missing permission (`rbac.forbidden`); a user who holds a permission you do not (`rbac.escalation`)", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such user (`user.not_found`)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn enable(
    State(state): State<AppState>,
    caller: AuthContext,
    Path(id): Path<Uuid>,
) -> Result<Json<User>, ApiError> {
    set_disabled(&state, &caller, id, false).await
}

/// Set a new password for a user; they must change it at next login, and their sessions end.
#[utoipa::path(post, path = "/api/v1/users/{id}/reset-password", tag = "rbac", security(("bearer" = [])), request_body = PasswordReset,
    params(("id" = Uuid, Path, description = "User id")),
    responses(
        (status = 204, description = "Reset"),
        (status = 403, description = "Missing permission (`rbac.forbidden`); a user who holds a permission you do not (`rbac.escalation`)", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such user (`user.not_found`)", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Your own account (`user.own_account`): use POST /auth/password", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Weak password (`validation.failed`)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn reset_password(
    State(state): State<AppState>,
    caller: AuthContext,
    Path(id): Path<Uuid>,
    ApiJson(body): ApiJson<PasswordReset>,
) -> Result<StatusCode, ApiError> {
    refuse_own_account(&caller, id)?;
    refuse_managing_above(&state, &caller, id).await?;
    let mut conn = state.pool().acquire().await?;
    let user = fetch(&mut conn, id).await?;
    password::check_policy(body.password.expose_secret(), &user.username)
        .map_err(|why| ApiError::invalid("password", why))?;
    drop(conn);
    let hash = state.hashing().hash(body.password).await?;
    let mut tx = AuditedTx::begin(state.pool(), Actor::user(&caller), state.clock().now()).await?;

    store::reset_password(&mut tx, id, hash).await?;
    sessions::end_all(&mut tx, id, EndReason::PasswordChanged, state.clock().now()).await?;
    record(
        &mut tx,
        &caller,
        EventKind::PasswordReset,
        Some(id),
        json!({}),
    )
    .await?;
    let change = Change::new(MODULE, "user", id, "user.reset_password")
        .after(json!({"password_change_required": true}));
    tx.record(change).await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Lift a login throttle or lockout.
#[utoipa::path(post, path = "/api/v1/users/{id}/unlock", tag = "rbac", security(("bearer" = [])), params(("id" = Uuid, Path, description = "User id")),
    responses(
        (status = 204, description = "Unlocked (or was not locked)"),
        (status = 403, description = "Missing permission (`rbac.forbidden`); a user who holds a permission you do not (`rbac.escalation`)", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such user (`user.not_found`)", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Your own account (`user.own_account`): use POST /auth/password", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn unlock(
    State(state): State<AppState>,
    caller: AuthContext,
    Path(id): Path<Uuid>,
) -> Result<StatusCode, ApiError> {
    refuse_own_account(&caller, id)?;
    refuse_managing_above(&state, &caller, id).await?;
    let mut tx = AuditedTx::begin(state.pool(), Actor::user(&caller), state.clock().now()).await?;
    let user = fetch(&mut tx, id).await?;
    let was_locked = throttle::clear(&mut tx, &throttle::key(&user.username)).await?;
    record(
        &mut tx,
        &caller,
        EventKind::AccountUnlocked,
        Some(id),
        json!({"was_locked": was_locked}),
    )
    .await?;
    tx.record(
        Change::new(MODULE, "user", id, "user.unlock").after(json!({"was_locked": was_locked})),
    )
    .await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}
