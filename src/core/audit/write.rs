//! The audited write path: the one way to make a business write. An [`AuditedTx`] is a
//! transaction that refuses to commit unless it has recorded at least one audit record.

use std::ops::{Deref, DerefMut};

use chrono::{DateTime, SubsecRound, Utc};
use serde_json::Value;
use sqlx::{PgConnection, PgPool, Postgres, Transaction};
use uuid::Uuid;

use crate::core::audit::chain;
use crate::core::auth::context::Authenticated;
use crate::core::http::request_id;
use crate::shared::ids::new_id;

/// Who is writing.
#[derive(Debug, Clone, Default)]
pub struct Actor {
    pub user_id: Option<Uuid>,
    pub username: Option<String>,
    /// The actor's roles at the time, comma-separated.
    pub role: Option<String>,
    pub workstation_id: Option<String>,
    pub branch_id: Option<Uuid>,
    pub request_id: Option<String>,
}

impl Actor {
    /// A logged-in user, on the current request.
    pub fn user(caller: &Authenticated) -> Actor {
        Actor {
            user_id: Some(caller.user_id),
            username: Some(caller.username.clone()),
            role: Some(caller.roles.join(",")),
            workstation_id: caller.origin.workstation_id.clone(),
            branch_id: None,
            request_id: request_id::current(),
        }
    }

    /// The system itself (setup, `plugpos init`, jobs), named by what it is doing.
    pub fn system(name: &str) -> Actor {
        Actor {
            username: Some(name.to_owned()),
            request_id: request_id::current(),
            ..Actor::default()
        }
    }
}

/// One change to record.
#[derive(Debug, Clone)]
pub struct Change {
    /// The module that owns the entity (`core.rbac`, `operations.sales`...).
    pub module: &'static str,
    pub entity: &'static str,
    pub entity_id: Option<String>,
    /// `<entity>.<verb>`, e.g. `user.create`.
    pub action: &'static str,
    pub before: Option<Value>,
    pub after: Option<Value>,
    pub reason_code: Option<String>,
    pub approval_ref: Option<String>,
    /// Sensitive actions (voids, refunds, overrides...) cannot be recorded without a reason code.
    pub sensitive: bool,
}

impl Change {
    /// A change of `entity` `entity_id` by `action`.
    pub fn new(
        module: &'static str,
        entity: &'static str,
        entity_id: impl ToString,
        action: &'static str,
    ) -> Change {
        Change {
            module,
            entity,
            entity_id: Some(entity_id.to_string()),
            action,
            before: None,
            after: None,
            reason_code: None,
            approval_ref: None,
            sensitive: false,
        }
    }

    /// Marks the action sensitive: recording it requires a reason code.
    pub fn sensitive(mut self) -> Change {
        self.sensitive = true;
        self
    }

    /// The reason code (mandatory for sensitive actions) and the approval that allowed it, if any.
    pub fn reason(mut self, reason_code: Option<String>, approval_ref: Option<String>) -> Change {
        self.reason_code = reason_code.filter(|r| !r.trim().is_empty());
        self.approval_ref = approval_ref.filter(|r| !r.trim().is_empty());
        self
    }

    pub fn before(mut self, value: Value) -> Change {
        self.before = Some(value);
        self
    }

    pub fn after(mut self, value: Value) -> Change {
        self.after = Some(value);
        self
    }
}

/// Why an audited write did not commit.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("a business write must record at least one audit record before it commits")]
    NothingRecorded,
    #[error("{0} is a sensitive action: a reason code is required")]
    ReasonRequired(&'static str),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

impl From<AuditError> for crate::core::http::ApiError {
    fn from(e: AuditError) -> Self {
        match e {
            AuditError::Database(e) => e.into(),
            AuditError::ReasonRequired(action) => crate::core::http::ApiError::invalid(
                "reason_code",
                format!("is required for {action}"),
            ),
            other => crate::core::http::ApiError::Internal(anyhow::Error::new(other)),
        }
    }
}

/// A business transaction that commits only with its audit records.
pub struct AuditedTx {
    tx: Transaction<'static, Postgres>,
    actor: Actor,
    at: DateTime<Utc>,
    recorded: usize,
}

impl AuditedTx {
    /// Starts a transaction for `actor`; its records are stamped `now` (at the stored precision).
    pub async fn begin(
        pool: &PgPool,
        actor: Actor,
        now: DateTime<Utc>,
    ) -> Result<AuditedTx, sqlx::Error> {
        let tx = pool.begin().await?;
        Ok(AuditedTx {
            tx,
            actor,
            at: now.trunc_subsecs(6),
            recorded: 0,
        })
    }

    /// Appends an audit record in this transaction.
    pub async fn record(&mut self, change: Change) -> Result<Uuid, AuditError> {
        if change.sensitive && change.reason_code.is_none() {
            return Err(AuditError::ReasonRequired(change.action));
        }
        let id = new_id();
        let json = |v: Option<Value>| v.map(|v| v.to_string());
        // One round trip: the record and its pending marker.
        sqlx::query(
            "WITH r AS (INSERT INTO audit_records (id, at, actor_user_id, actor_username, actor_role, workstation_id, branch_id, \
             module, entity, entity_id, action, before_json, after_json, reason_code, approval_ref, request_id) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16) RETURNING id) \
             INSERT INTO audit_pending (record_id) SELECT id FROM r",
        )
        .bind(id)
        .bind(self.at)
        .bind(self.actor.user_id)
        .bind(&self.actor.username)
        .bind(&self.actor.role)
        .bind(&self.actor.workstation_id)
        .bind(self.actor.branch_id)
        .bind(change.module)
        .bind(change.entity)
        .bind(&change.entity_id)
        .bind(change.action)
        .bind(json(change.before))
        .bind(json(change.after))
        .bind(&change.reason_code)
        .bind(&change.approval_ref)
        .bind(&self.actor.request_id)
        .execute(&mut *self.tx)
        .await?;
        self.recorded += 1;
        Ok(id)
    }

    /// Commits, provided at least one record was appended, then wakes the chainer.
    pub async fn commit(self) -> Result<(), AuditError> {
        if self.recorded == 0 {
            self.tx.rollback().await?;
            return Err(AuditError::NothingRecorded);
        }
        self.tx.commit().await?;
        // The write is durable; the chainer links it within moments (a crash before that leaves
        // it pending, and every start chains what is pending).
        chain::wake();
        Ok(())
    }
}

impl Deref for AuditedTx {
    type Target = PgConnection;
    fn deref(&self) -> &PgConnection {
        &self.tx
    }
}

impl DerefMut for AuditedTx {
    fn deref_mut(&mut self) -> &mut PgConnection {
        &mut self.tx
    }
}
