//! The users' SQL: `users` and `user_roles` as the user administration reads and writes them.
//! Writes take the audited transaction, so none can commit without its audit record.

use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::core::audit::AuditedTx;

/// A user as stored, with the names of their roles.
#[derive(Debug, sqlx::FromRow)]
pub struct UserRow {
    pub id: Uuid,
    pub username: String,
    pub display_name: String,
    pub roles: Vec<String>,
    pub disabled: bool,
    pub password_change_required: bool,
    pub email: Option<String>,
    pub phone: Option<String>,
    pub created_at: DateTime<Utc>,
    pub version: i64,
    /// A confirmed second factor.
    pub mfa_enabled: bool,
}

const SELECT_USERS: &str = "SELECT u.id, u.username, u.display_name, \
    COALESCE(array_agg(r.name ORDER BY r.name) FILTER (WHERE r.name IS NOT NULL), '{}') AS roles, \
    u.disabled_at IS NOT NULL AS disabled, u.password_change_required, u.email, u.phone, u.created_at, u.version, \
    EXISTS (SELECT 1 FROM user_mfa m WHERE m.user_id = u.id AND m.confirmed_at IS NOT NULL) AS mfa_enabled \
    FROM users u LEFT JOIN user_roles ur ON ur.user_id = u.id LEFT JOIN roles r ON r.id = ur.role_id";

/// User `id`.
pub async fn user(conn: &mut PgConnection, id: Uuid) -> Result<Option<UserRow>, sqlx::Error> {
    let sql = format!("{SELECT_USERS} WHERE u.id = $1 GROUP BY u.id");
    sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .fetch_optional(conn)
        .await
}

/// Up to `limit` users after id `after`, oldest first.
pub async fn users(
    conn: &mut PgConnection,
    after: Option<Uuid>,
    limit: i64,
) -> Result<Vec<UserRow>, sqlx::Error> {
    let sql = format!(
        "{SELECT_USERS} WHERE $1::uuid IS NULL OR u.id > $1 GROUP BY u.id ORDER BY u.id LIMIT $2"
    );
    sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(after)
        .bind(limit)
        .fetch_all(conn)
        .await
}

/// The roles with these names: (id, name).
pub async fn roles_named(
    conn: &mut PgConnection,
    names: &[String],
) -> Result<Vec<(Uuid, String)>, sqlx::Error> {
    sqlx::query_as("SELECT id, name FROM roles WHERE name = ANY($1)")
        .bind(names)
        .fetch_all(conn)
        .await
}

/// Every permission user `id` holds through their roles.
pub async fn permissions_of_user(
    conn: &mut PgConnection,
    id: Uuid,
) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT DISTINCT rp.permission FROM user_roles ur JOIN role_permissions rp ON rp.role_id = ur.role_id \
         WHERE ur.user_id = $1",
    )
    .bind(id)
    .fetch_all(conn)
    .await
}

/// Every permission the roles `ids` grant together.
pub async fn permissions_of(
    conn: &mut PgConnection,
    ids: &[Uuid],
) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar("SELECT DISTINCT permission FROM role_permissions WHERE role_id = ANY($1)")
        .bind(ids)
        .fetch_all(conn)
        .await
}

/// A user to create (they change the password at first login).
#[derive(Debug)]
pub struct NewUserRow<'a> {
    pub id: Uuid,
    pub username: &'a str,
    pub display_name: &'a str,
    pub password_hash: String,
    pub email: Option<&'a str>,
    pub phone: Option<&'a str>,
}

/// Inserts the user with roles `role_ids`; `false` (nothing written) when the username is taken.
pub async fn insert_user(
    tx: &mut AuditedTx,
    user: NewUserRow<'_>,
    role_ids: &[Uuid],
) -> Result<bool, sqlx::Error> {
    let inserted = sqlx::query(
        "INSERT INTO users (id, username, display_name, password_hash, password_change_required, email, phone) \
         VALUES ($1, $2, $3, $4, true, $5, $6) ON CONFLICT DO NOTHING",
    )
    .bind(user.id)
    .bind(user.username)
    .bind(user.display_name)
    .bind(user.password_hash)
    .bind(user.email)
    .bind(user.phone)
    .execute(&mut **tx)
    .await?;
    if inserted.rows_affected() == 0 {
        return Ok(false);
    }
    add_roles(tx, user.id, role_ids).await?;
    Ok(true)
}

async fn add_roles(tx: &mut AuditedTx, user: Uuid, role_ids: &[Uuid]) -> Result<(), sqlx::Error> {
    sqlx::query("INSERT INTO user_roles (user_id, role_id) SELECT $1, unnest($2::uuid[])")
        .bind(user)
        .bind(role_ids)
        .execute(&mut **tx)
        .await
        .map(drop)
}

/// Changes the profile fields given (`None` keeps one).
pub async fn update_profile(
    tx: &mut AuditedTx,
    id: Uuid,
    display_name: Option<&str>,
    email: Option<&str>,
    phone: Option<&str>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE users SET display_name = COALESCE($2, display_name), email = COALESCE($3, email), phone = COALESCE($4, phone), \
         updated_at = now(), version = version + 1 WHERE id = $1",
    )
    .bind(id)
    .bind(display_name)
    .bind(email)
    .bind(phone)
    .execute(&mut **tx)
    .await
    .map(drop)
}

/// Replaces the user's roles, and ends their tokens' validity (a new security stamp).
pub async fn replace_roles(
    tx: &mut AuditedTx,
    id: Uuid,
    role_ids: &[Uuid],
) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM user_roles WHERE user_id = $1")
        .bind(id)
        .execute(&mut **tx)
        .await?;
    add_roles(tx, id, role_ids).await?;
    sqlx::query("UPDATE users SET security_stamp = gen_random_uuid() WHERE id = $1")
        .bind(id)
        .execute(&mut **tx)
        .await
        .map(drop)
}

/// Disables (with a new security stamp: their tokens stop working) or enables the user.
pub async fn set_disabled(tx: &mut AuditedTx, id: Uuid, disabled: bool) -> Result<(), sqlx::Error> {
    let sql = if disabled {
        "UPDATE users SET disabled_at = COALESCE(disabled_at, now()), security_stamp = gen_random_uuid(), version = version + 1 WHERE id = $1"
    } else {
        "UPDATE users SET disabled_at = NULL, version = version + 1 WHERE id = $1"
    };
    sqlx::query(sql).bind(id).execute(&mut **tx).await.map(drop)
}

/// Sets a new password the user must change at next login (and a new security stamp).
pub async fn reset_password(
    tx: &mut AuditedTx,
    id: Uuid,
    password_hash: String,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE users SET password_hash = $2, password_change_required = true, security_stamp = gen_random_uuid(), \
         version = version + 1 WHERE id = $1",
    )
    .bind(id)
    .bind(password_hash)
    .execute(&mut **tx)
    .await
    .map(drop)
}

/// Every role (or role `id`) with each of its permissions, one row per pair: (id, name,
/// description, built in, permission), by name.
#[allow(clippy::type_complexity)] // One row of a query, named where it is read.
pub async fn role_rows(
    conn: &mut PgConnection,
    id: Option<Uuid>,
) -> Result<Vec<(Uuid, String, String, bool, Option<String>)>, sqlx::Error> {
    sqlx::query_as(
        "SELECT r.id, r.name, r.description, r.builtin, rp.permission FROM roles r \
         LEFT JOIN role_permissions rp ON rp.role_id = r.id WHERE $1::uuid IS NULL OR r.id = $1 ORDER BY r.name, rp.permission",
    )
    .bind(id)
    .fetch_all(conn)
    .await
}

/// Inserts a role granting `permissions`; `false` (nothing written) when the name is taken.
pub async fn insert_role(
    tx: &mut AuditedTx,
    id: Uuid,
    name: &str,
    description: &str,
    permissions: &[String],
) -> Result<bool, sqlx::Error> {
    let inserted = sqlx::query(
        "INSERT INTO roles (id, name, description) VALUES ($1, $2, $3) ON CONFLICT (name) DO NOTHING",
    )
    .bind(id)
    .bind(name)
    .bind(description)
    .execute(&mut **tx)
    .await?;
    if inserted.rows_affected() == 0 {
        return Ok(false);
    }
    grant(tx, id, permissions).await?;
    Ok(true)
}

async fn grant(tx: &mut AuditedTx, role: Uuid, permissions: &[String]) -> Result<(), sqlx::Error> {
    sqlx::query("INSERT INTO role_permissions (role_id, permission) SELECT $1, unnest($2::text[])")
        .bind(role)
        .bind(permissions)
        .execute(&mut **tx)
        .await
        .map(drop)
}

/// Role `id`'s name and permissions, the role locked until the transaction ends.
pub async fn lock_role(
    tx: &mut AuditedTx,
    id: Uuid,
) -> Result<Option<(String, Vec<String>)>, sqlx::Error> {
    let name: Option<String> =
        sqlx::query_scalar("SELECT name FROM roles WHERE id = $1 FOR UPDATE")
            .bind(id)
            .fetch_optional(&mut **tx)
            .await?;
    let Some(name) = name else {
        return Ok(None);
    };
    let permissions =
        sqlx::query_scalar("SELECT permission FROM role_permissions WHERE role_id = $1")
            .bind(id)
            .fetch_all(&mut **tx)
            .await?;
    Ok(Some((name, permissions)))
}

/// Makes role `id` grant exactly `wanted`: revokes the others, grants `added` (those of `wanted`
/// it lacks), and moves its version on.
pub async fn set_permissions(
    tx: &mut AuditedTx,
    id: Uuid,
    wanted: &[String],
    added: &[String],
) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM role_permissions WHERE role_id = $1 AND permission <> ALL($2)")
        .bind(id)
        .bind(wanted)
        .execute(&mut **tx)
        .await?;
    grant(tx, id, added).await?;
    sqlx::query("UPDATE roles SET updated_at = now(), version = version + 1 WHERE id = $1")
        .bind(id)
        .execute(&mut **tx)
        .await
        .map(drop)
}

/// The username of each of `ids`, for reports naming cashiers.
pub async fn usernames(
    conn: &mut PgConnection,
    ids: &[Uuid],
) -> Result<Vec<(Uuid, String)>, sqlx::Error> {
    sqlx::query_as("SELECT id, username FROM users WHERE id = ANY($1)")
        .bind(ids)
        .fetch_all(conn)
        .await
}

/// Which of `users` hold `permission` (through their roles).
pub async fn holders(
    conn: &mut PgConnection,
    users: &[Uuid],
    permission: &str,
) -> Result<Vec<Uuid>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT DISTINCT ur.user_id FROM user_roles ur JOIN role_permissions rp ON rp.role_id = ur.role_id \
         WHERE ur.user_id = ANY($1) AND rp.permission = $2",
    )
    .bind(users)
    .bind(permission)
    .fetch_all(conn)
    .await
}
