//! The dashboard: every KPI the enabled modules declare, computed for the business day now and
//! kept with the time it was computed. A KPI is computed again when it is older than its refresh
//! interval or when an event of a topic that changes it was published (a sale, a return, a cash
//! session). `GET /api/v1/dashboard` answers the caller's KPIs, computing what is due first; the
//! `dashboard` WebSocket topic pushes the values that changed, at most once a second and within
//! about a second of the event that changed them (`dashboard.updated`, one event per permission
//! the KPIs in it need, each sent only to the subscribers holding it).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Value, json};
use tokio::sync::broadcast::error::RecvError;
use tokio::time::Instant;

use crate::core::http::ApiError;
use crate::core::reports::{Kpi, Today};
use crate::core::settings::Business;
use crate::core::state::AppState;
use crate::plugs::administration::api::closings;

/// The WebSocket topic.
pub const TOPIC: &str = "dashboard";
/// Pushes are at least this far apart.
const COALESCE: Duration = Duration::from_secs(1);
/// How often due KPIs are looked at while anyone watches.
const TICK: Duration = Duration::from_secs(5);

/// One KPI's value and when it was computed.
#[derive(Debug, Clone, PartialEq)]
pub struct Computed {
    pub value: Value,
    pub at: DateTime<Utc>,
}

/// The dashboard of this server (a service: one per state).
pub struct Dashboard {
    values: Mutex<HashMap<&'static str, Computed>>,
    /// KPIs an event changed since they were computed.
    dirty: Mutex<HashSet<&'static str>>,
    /// The values last pushed (a `GET` computes values too: what to push is what differs from
    /// this, not what a computation changed).
    pushed: Mutex<HashMap<&'static str, Value>>,
    /// One computation at a time.
    computing: tokio::sync::Mutex<()>,
    task: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Drop for Dashboard {
    fn drop(&mut self) {
        if let Some(task) = self
            .task
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        {
            task.abort();
        }
    }
}

/// The KPIs of the enabled modules.
pub fn kpis(state: &AppState) -> Vec<&'static Kpi> {
    state
        .registry()
        .modules()
        .iter()
        .filter(|m| state.modules().is_enabled(m.id()))
        .flat_map(|m| m.kpis().iter())
        .collect()
}

/// The business day now, for the KPIs.
pub fn today(business: &Business, now: DateTime<Utc>) -> Today {
    let date = closings::business_date(business, now);
    let day = closings::business_day(business, date);
    Today {
        date,
        start: day.start,
        end: day.end,
    }
}

impl Dashboard {
    /// The dashboard of `state`, its pushing task started on first use (inside a runtime).
    pub fn of(state: &AppState) -> Arc<Dashboard> {
        let dashboard = state.service(|_| Dashboard {
            values: Mutex::new(HashMap::new()),
            dirty: Mutex::new(HashSet::new()),
            pushed: Mutex::new(HashMap::new()),
            computing: tokio::sync::Mutex::new(()),
            task: Mutex::new(None),
        });
        let mut task = dashboard
            .task
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if task.is_none() && tokio::runtime::Handle::try_current().is_ok() {
            *task = Some(tokio::spawn(push(
                state.downgrade(),
                Arc::downgrade(&dashboard),
            )));
        }
        drop(task);
        dashboard
    }

    fn mark(&self, topic: &str, all: &[&'static Kpi]) {
        let mut dirty = self.dirty.lock().unwrap_or_else(PoisonError::into_inner);
        for kpi in all {
            if kpi.changed_by.contains(&topic) {
                dirty.insert(kpi.id);
            }
        }
    }

    fn mark_all(&self, all: &[&'static Kpi]) {
        let mut dirty = self.dirty.lock().unwrap_or_else(PoisonError::into_inner);
        dirty.extend(all.iter().map(|k| k.id));
    }

    /// Computes the KPIs that are due (changed by an event, older than their interval, never
    /// computed, or of another business day). A KPI that fails keeps its last value (the
    /// failure is logged).
    pub async fn refresh(&self, state: &AppState) -> Result<(), ApiError> {
        let _one = self.computing.lock().await;
        let business = Business::cached(state)
            .await?
            .ok_or(ApiError::SetupRequired)?;
        let now = state.clock().now();
        let day = today(&business, now);
        let dirty: HashSet<&'static str> =
            std::mem::take(&mut *self.dirty.lock().unwrap_or_else(PoisonError::into_inner));
        let known: HashMap<&'static str, Computed> = self
            .values
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        for kpi in kpis(state) {
            let due = match known.get(kpi.id) {
                None => true,
                Some(c) => {
                    dirty.contains(kpi.id)
                        || c.at < day.start
                        || now - c.at >= chrono::Duration::seconds(i64::from(kpi.refresh_secs))
                }
            };
            if !due {
                continue;
            }
            let value = match (kpi.run)(state, &day).await {
                Ok(v) => v,
                Err(e) => {
                    tracing::warn!(kpi = kpi.id, error = %e, "cannot compute a KPI; its last value stays");
                    continue;
                }
            };
            self.values
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(kpi.id, Computed { value, at: now });
        }
        Ok(())
    }

    /// The KPIs whose value differs from the one last pushed (now marked pushed).
    fn unpushed(&self, all: &[&'static Kpi]) -> Vec<(&'static Kpi, Computed)> {
        let values = self.values();
        let mut pushed = self.pushed.lock().unwrap_or_else(PoisonError::into_inner);
        let mut out = Vec::new();
        for kpi in all {
            if let Some(now) = values.get(kpi.id)
                && pushed.get(kpi.id) != Some(&now.value)
            {
                pushed.insert(kpi.id, now.value.clone());
                out.push((*kpi, now.clone()));
            }
        }
        out
    }

    /// The current value of every KPI (after [`Dashboard::refresh`]).
    pub fn values(&self) -> HashMap<&'static str, Computed> {
        self.values
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// A KPI as the API shows it.
pub fn shown(kpi: &Kpi, computed: Option<&Computed>) -> Value {
    json!({
        "id": kpi.id,
        "title": kpi.title,
        "unit": kpi.unit,
        "refresh_secs": kpi.refresh_secs,
        "value": computed.map_or(Value::Null, |c| c.value.clone()),
        "computed_at": computed.map(|c| c.at.to_rfc3339_opts(SecondsFormat::Millis, true)),
    })
}

/// The pushing task: wakes on events and every few seconds, computes what is due when someone
/// watches, and publishes what changed, at most once per [`COALESCE`].
async fn push(weak: crate::core::state::WeakState, dashboard: std::sync::Weak<Dashboard>) {
    let Some(mut events) = weak.upgrade().map(|s| s.live().watch()) else {
        return;
    };
    let mut last_push = Instant::now() - COALESCE;
    loop {
        let woke = tokio::time::timeout(TICK, events.recv()).await;
        let (Some(state), Some(board)) = (weak.upgrade(), dashboard.upgrade()) else {
            return;
        };
        let all = kpis(&state);
        let note = |received: Result<&'static str, RecvError>| match received {
            Ok(topic) if topic != TOPIC => board.mark(topic, &all),
            Ok(_) => {}
            Err(RecvError::Lagged(_)) => board.mark_all(&all),
            Err(RecvError::Closed) => {}
        };
        if let Ok(received) = woke {
            if matches!(received, Err(RecvError::Closed)) {
                return;
            }
            note(received);
        }
        let hub = state.live().clone();
        let watchers = hub.subscribers(TOPIC);
        if watchers.is_empty() {
            // Nobody watches: values are computed when asked for (the marks are kept).
            drop(state);
            continue;
        }
        let since = last_push.elapsed();
        if since < COALESCE {
            drop(state);
            tokio::time::sleep(COALESCE - since).await;
        } else {
            drop(state);
        }
        // Events that came meanwhile join this push.
        loop {
            match events.try_recv() {
                Ok(topic) => note(Ok(topic)),
                Err(tokio::sync::broadcast::error::TryRecvError::Lagged(n)) => {
                    note(Err(RecvError::Lagged(n)))
                }
                Err(_) => break,
            }
        }
        let Some(state) = weak.upgrade() else {
            return;
        };
        if let Err(e) = board.refresh(&state).await {
            tracing::debug!(error = %e, "dashboard: cannot compute the KPIs");
            continue;
        }
        let changed = board.unpushed(&all);
        last_push = Instant::now();
        if changed.is_empty() {
            continue;
        }
        publish(&state, &hub.subscribers(TOPIC), changed).await;
    }
}

/// Publishes `changed`, one event per permission its KPIs need, each to the watchers holding it.
async fn publish(
    state: &AppState,
    watchers: &HashSet<uuid::Uuid>,
    changed: Vec<(&'static Kpi, Computed)>,
) {
    let mut by_permission: BTreeMap<&'static str, Vec<Value>> = BTreeMap::new();
    for (kpi, computed) in &changed {
        by_permission
            .entry(kpi.permission)
            .or_default()
            .push(shown(kpi, Some(computed)));
    }
    let users: Vec<uuid::Uuid> = watchers.iter().copied().collect();
    let Ok(mut conn) = state.pool().acquire().await else {
        return;
    };
    for (permission, kpis) in by_permission {
        let holders: HashSet<uuid::Uuid> =
            match crate::core::rbac::store::holders(&mut conn, &users, permission).await {
                Ok(h) => h.into_iter().collect(),
                Err(e) => {
                    tracing::debug!(error = %e, "dashboard: cannot read who may see a KPI");
                    continue;
                }
            };
        state
            .live()
            .publish_to(TOPIC, "dashboard.updated", json!({"kpis": kpis}), |user| {
                holders.contains(&user)
            });
    }
}
