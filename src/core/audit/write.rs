//! The audited write path: the one way to make a business write. An [`AuditedTx`] is a
//! transaction that refuses to commit unless it has recorded at least one audit record.

use std::ops::{Deref, DerefMut};

use chrono::{DateTime, SubsecRound, Utc};
use serde_json::Value;
use sqlx::{PgConnection, PgPool, Postgres, Transaction};
use uuid::Uuid;

use super::parts::{AuditedPart, compose};
use crate::core::audit::chain;
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

    /// The transaction's time (what its records are stamped with).
    pub fn at(&self) -> DateTime<Utc> {
        self.at
    }

    /// Counts `n` records that a statement run in this transaction appended itself (an
    /// [`AuditedStatement`] run on it): they let it commit as [`AuditedTx::record`]'s do.
    pub fn recorded_by_statement(&mut self, n: usize) {
        self.recorded += n;
    }

    /// Appends an audit record in this transaction.
    pub async fn record(&mut self, change: Change) -> Result<Uuid, AuditError> {
        let actor = self.actor.clone();
        let ids = self.record_for(vec![(actor, change)]).await?;
        Ok(ids[0]) // one entry in, one id out
    }

    /// Appends one audit record per `(actor, change)` in one statement, each stamped with this
    /// transaction's time: a transaction that records the requests of several users at once (the
    /// sales writer) names each request's own user, workstation and request id. Returns the
    /// record ids in the given order.
    pub async fn record_for(
        &mut self,
        entries: Vec<(Actor, Change)>,
    ) -> Result<Vec<Uuid>, AuditError> {
        if let Some((_, change)) = entries
            .iter()
            .find(|(_, c)| c.sensitive && c.reason_code.is_none())
        {
            return Err(AuditError::ReasonRequired(change.action));
        }
        let n = entries.len();
        let ids: Vec<Uuid> = (0..n).map(|_| new_id()).collect();
        let mut columns = RecordColumns::with_capacity(n);
        for (actor, change) in entries {
            columns.push(actor, change);
        }
        // One round trip: the records and their pending markers.
        sqlx::query(
            "WITH r AS (INSERT INTO audit_records (id, at, actor_user_id, actor_username, actor_role, workstation_id, branch_id, \
             module, entity, entity_id, action, before_json, after_json, reason_code, approval_ref, request_id) \
             SELECT r.id, $2, r.user_id, r.username, r.role, r.workstation, r.branch, r.module, r.entity, r.entity_id, \
                    r.action, r.before_json, r.after_json, r.reason_code, r.approval_ref, r.request_id \
             FROM unnest($1::uuid[], $3::uuid[], $4::text[], $5::text[], $6::text[], $7::uuid[], $8::text[], $9::text[], \
                         $10::text[], $11::text[], $12::text[], $13::text[], $14::text[], $15::text[], $16::text[]) \
               AS r(id, user_id, username, role, workstation, branch, module, entity, entity_id, action, before_json, \
                    after_json, reason_code, approval_ref, request_id) \
             RETURNING id) \
             INSERT INTO audit_pending (record_id) SELECT id FROM r",
        )
        .bind(&ids)
        .bind(self.at)
        .bind(&columns.user_id)
        .bind(&columns.username)
        .bind(&columns.role)
        .bind(&columns.workstation_id)
        .bind(&columns.branch_id)
        .bind(&columns.module)
        .bind(&columns.entity)
        .bind(&columns.entity_id)
        .bind(&columns.action)
        .bind(&columns.before)
        .bind(&columns.after)
        .bind(&columns.reason_code)
        .bind(&columns.approval_ref)
        .bind(&columns.request_id)
        .execute(&mut *self.tx)
        .await?;
        self.recorded += n;
        Ok(ids)
    }

    /// Ends the transaction without writing anything, now. (Dropping it rolls back too, but in
    /// the background, possibly after the handler has answered: until then its row locks stay,
    /// and a `SKIP LOCKED` reader, such as a job worker, passes the rows over.)
    pub async fn rollback(self) -> Result<(), sqlx::Error> {
        self.tx.rollback().await
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

/// The audited write path for a write that is one statement (no explicit transaction, so one
/// round trip and its own commit): the caller's CTEs, then the audit CTEs, then the caller's
/// final query. The caller's CTEs must define `audit_in(id, actor_user_id, actor_username,
/// actor_role, workstation_id, branch_id, module, entity, entity_id, action, before_json,
/// after_json, reason_code, approval_ref, request_id)` with one row per record, whose text values
/// are stored as they are (they are what the chain hashes), and bind `$1` to the records' time at
/// the stored precision. Every row written and every record then commit or fail together. Only
/// for changes that are not sensitive (those need [`AuditedTx`] and a reason code).
pub struct AuditedStatement {
    sql: String,
}

/// Appends the records of `audit_in` and marks them pending for the chainer.
const RECORD_CTES: &str = "audit_written AS (INSERT INTO audit_records (id, at, actor_user_id, actor_username, actor_role, workstation_id, \
       branch_id, module, entity, entity_id, action, before_json, after_json, reason_code, approval_ref, request_id) \
       SELECT id, $1, actor_user_id, actor_username, actor_role, workstation_id, branch_id, module, entity, entity_id, action, \
              before_json, after_json, reason_code, approval_ref, request_id FROM audit_in RETURNING id), \
     audit_marked AS (INSERT INTO audit_pending (record_id) SELECT id FROM audit_written)";

impl AuditedStatement {
    /// `WITH <parts>, <audit CTEs> <main>`: the parts composed in order (see [`compose`]).
    pub fn compose(parts: &[AuditedPart], main: &str) -> AuditedStatement {
        AuditedStatement::new(&compose(parts), main)
    }

    /// `WITH <ctes>, <audit CTEs> <main>`.
    pub fn new(ctes: &str, main: &str) -> AuditedStatement {
        AuditedStatement {
            sql: format!("WITH {ctes}, {RECORD_CTES} {main}"),
        }
    }

    /// The statement's text, to bind and run (keep the statement in a `static`, so that its
    /// prepared form is cached per connection).
    pub fn sql(&'static self) -> &'static str {
        &self.sql
    }

    /// To call once the statement succeeded: wakes the chainer, which links its records.
    pub fn committed(&self) {
        chain::wake();
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

/// The columns of several audit records, as arrays for one multi-row insert.
struct RecordColumns {
    user_id: Vec<Option<Uuid>>,
    username: Vec<Option<String>>,
    role: Vec<Option<String>>,
    workstation_id: Vec<Option<String>>,
    branch_id: Vec<Option<Uuid>>,
    module: Vec<&'static str>,
    entity: Vec<&'static str>,
    entity_id: Vec<Option<String>>,
    action: Vec<&'static str>,
    before: Vec<Option<String>>,
    after: Vec<Option<String>>,
    reason_code: Vec<Option<String>>,
    approval_ref: Vec<Option<String>>,
    request_id: Vec<Option<String>>,
}

impl RecordColumns {
    fn with_capacity(n: usize) -> RecordColumns {
        RecordColumns {
            user_id: Vec::with_capacity(n),
            username: Vec::with_capacity(n),
            role: Vec::with_capacity(n),
            workstation_id: Vec::with_capacity(n),
            branch_id: Vec::with_capacity(n),
            module: Vec::with_capacity(n),
            entity: Vec::with_capacity(n),
            entity_id: Vec::with_capacity(n),
            action: Vec::with_capacity(n),
            before: Vec::with_capacity(n),
            after: Vec::with_capacity(n),
            reason_code: Vec::with_capacity(n),
            approval_ref: Vec::with_capacity(n),
            request_id: Vec::with_capacity(n),
        }
    }

    fn push(&mut self, actor: Actor, change: Change) {
        let json = |v: Option<Value>| v.map(|v| v.to_string());
        self.user_id.push(actor.user_id);
        self.username.push(actor.username);
        self.role.push(actor.role);
        self.workstation_id.push(actor.workstation_id);
        self.branch_id.push(actor.branch_id);
        self.module.push(change.module);
        self.entity.push(change.entity);
        self.entity_id.push(change.entity_id);
        self.action.push(change.action);
        self.before.push(json(change.before));
        self.after.push(json(change.after));
        self.reason_code.push(change.reason_code);
        self.approval_ref.push(change.approval_ref);
        self.request_id.push(actor.request_id);
    }
}
