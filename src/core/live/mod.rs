//! Live updates: the hub that fans events out to WebSocket clients (`/api/v1/ws`, see `ws`).
//!
//! Modules declare their topics (each with the permission needed to read it); handlers publish
//! after their transaction commits. Every client has a bounded queue: a client that falls
//! `websocket.queue_capacity` events behind is disconnected instead of growing the server's memory.

pub mod ws;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use chrono::SecondsFormat;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use uuid::Uuid;

use crate::shared::clock::Clock;

/// A topic a module publishes, and who may read it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Topic {
    pub name: &'static str,
    /// Subscribing needs this permission.
    pub permission: &'static str,
    pub description: &'static str,
}

struct Subscriber {
    user: Uuid,
    topics: HashSet<&'static str>,
    tx: mpsc::Sender<Arc<str>>,
    overflowed: Arc<AtomicBool>,
}

/// One client's end of the hub; dropping it disconnects the client.
pub struct Connection {
    pub id: u64,
    pub events: mpsc::Receiver<Arc<str>>,
    /// Set when the client's queue overflowed: the connection must close.
    pub overflowed: Arc<AtomicBool>,
    hub: Arc<Hub>,
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.hub.disconnect(self.id);
    }
}

/// The fan-out of published events to connected clients.
pub struct Hub {
    topics: BTreeMap<&'static str, Topic>,
    capacity: usize,
    /// Stamps each event's `time`.
    clock: Clock,
    next_id: AtomicU64,
    subscribers: Mutex<HashMap<u64, Subscriber>>,
    /// The topic of every event published, for listeners inside the server (the dashboard).
    events: tokio::sync::broadcast::Sender<&'static str>,
    /// Every event whole, for listeners inside the server that pass them on (webhooks).
    published: tokio::sync::broadcast::Sender<Arc<Published>>,
}

/// An event as it was published.
#[derive(Debug, Clone)]
pub struct Published {
    pub topic: String,
    pub event: String,
    pub data: Value,
    pub time: chrono::DateTime<chrono::Utc>,
}

impl Hub {
    /// A hub serving `topics`, queueing at most `capacity` events per client, stamping events by `clock`.
    pub fn new(topics: impl IntoIterator<Item = Topic>, capacity: usize, clock: Clock) -> Hub {
        Hub {
            topics: topics.into_iter().map(|t| (t.name, t)).collect(),
            capacity: capacity.max(1),
            clock,
            next_id: AtomicU64::new(1),
            subscribers: Mutex::new(HashMap::new()),
            events: tokio::sync::broadcast::channel(256).0,
            published: tokio::sync::broadcast::channel(4096).0,
        }
    }

    /// The declared topic called `name`.
    pub fn topic(&self, name: &str) -> Option<Topic> {
        self.topics.get(name).copied()
    }

    /// Every declared topic.
    pub fn topics(&self) -> impl Iterator<Item = &Topic> {
        self.topics.values()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Subscriber>> {
        self.subscribers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Registers a client of `user` with no subscriptions yet, unless `user` has `limit`
    /// connections already.
    pub fn connect(self: &Arc<Self>, user: Uuid, limit: usize) -> Option<Connection> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, events) = mpsc::channel(self.capacity);
        let overflowed = Arc::new(AtomicBool::new(false));
        {
            let mut subscribers = self.lock();
            if subscribers.values().filter(|s| s.user == user).count() >= limit {
                return None;
            }
            subscribers.insert(
                id,
                Subscriber {
                    user,
                    topics: HashSet::new(),
                    tx,
                    overflowed: overflowed.clone(),
                },
            );
        }
        metrics::gauge!("plugpos_websocket_clients").increment(1.0);
        Some(Connection {
            id,
            events,
            overflowed,
            hub: self.clone(),
        })
    }

    /// Replaces the topics client `id` receives.
    pub fn set_topics(&self, id: u64, topics: HashSet<&'static str>) {
        if let Some(subscriber) = self.lock().get_mut(&id) {
            subscriber.topics = topics;
        }
    }

    /// Forgets client `id`.
    pub fn disconnect(&self, id: u64) {
        if self.lock().remove(&id).is_some() {
            metrics::gauge!("plugpos_websocket_clients").decrement(1.0);
        }
    }

    /// Connected clients.
    pub fn clients(&self) -> usize {
        self.lock().len()
    }

    /// The topics of events as they are published (a listener that falls behind gets
    /// `Lagged`: events happened).
    pub fn watch(&self) -> tokio::sync::broadcast::Receiver<&'static str> {
        self.events.subscribe()
    }

    /// Every event published from now on, whole (a listener that falls 4096 events behind loses
    /// the oldest and is told so).
    pub fn tap(&self) -> tokio::sync::broadcast::Receiver<Arc<Published>> {
        self.published.subscribe()
    }

    /// The users with a client subscribed to `topic`.
    pub fn subscribers(&self, topic: &str) -> HashSet<Uuid> {
        self.lock()
            .values()
            .filter(|s| s.topics.contains(topic))
            .map(|s| s.user)
            .collect()
    }

    /// Sends `{"type":"event","topic","event","data","time"}` to every client subscribed to
    /// `topic`. Never waits: a client whose queue is full is cut off.
    pub fn publish(&self, topic: &str, event: &str, data: Value) {
        self.publish_to(topic, event, data, |_| true);
    }

    /// [`Hub::publish`], to the clients of the users `to` accepts only (an event part of whose
    /// data needs a further permission).
    pub fn publish_to(&self, topic: &str, event: &str, data: Value, to: impl Fn(Uuid) -> bool) {
        if let Some(declared) = self.topics.get(topic) {
            let _ = self.events.send(declared.name);
        }
        if self.published.receiver_count() > 0 {
            let _ = self.published.send(Arc::new(Published {
                topic: topic.to_owned(),
                event: event.to_owned(),
                data: data.clone(),
                time: self.clock.now(),
            }));
        }
        let message: Arc<str> = json!({
            "type": "event",
            "topic": topic,
            "event": event,
            "data": data,
            "time": self.clock.now().to_rfc3339_opts(SecondsFormat::Millis, true),
        })
        .to_string()
        .into();
        let mut dropped = 0.0;
        self.lock().retain(|_, subscriber| {
            if !subscriber.topics.contains(topic) || !to(subscriber.user) {
                return true;
            }
            match subscriber.tx.try_send(message.clone()) {
                Ok(()) => true,
                Err(mpsc::error::TrySendError::Full(_)) => {
                    subscriber.overflowed.store(true, Ordering::Relaxed);
                    dropped += 1.0;
                    false
                }
                Err(mpsc::error::TrySendError::Closed(_)) => {
                    dropped += 1.0;
                    false
                }
            }
        });
        if dropped > 0.0 {
            metrics::gauge!("plugpos_websocket_clients").decrement(dropped);
        }
    }
}

impl crate::core::state::AppState {
    /// The live-update hub behind `/api/v1/ws`.
    pub fn live(&self) -> &Arc<Hub> {
        self.part()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SALES: Topic = Topic {
        name: "sales",
        permission: "operations.sales.read",
        description: "",
    };

    #[tokio::test]
    async fn events_reach_subscribers_only() {
        let hub = Arc::new(Hub::new([SALES], 4, Clock::system()));
        let mut a = hub.connect(Uuid::nil(), 8).unwrap();
        let mut b = hub.connect(Uuid::nil(), 8).unwrap();
        hub.set_topics(a.id, HashSet::from(["sales"]));
        hub.publish("sales", "sale.completed", json!({"n": 1}));
        let message: Value = serde_json::from_str(&a.events.recv().await.unwrap()).unwrap();
        assert_eq!(message["event"], "sale.completed");
        assert_eq!(message["data"]["n"], 1);
        assert!(b.events.try_recv().is_err());
    }

    #[tokio::test]
    async fn a_client_that_falls_behind_is_cut_off() {
        let hub = Arc::new(Hub::new([SALES], 2, Clock::system()));
        let slow = hub.connect(Uuid::nil(), 8).unwrap();
        hub.set_topics(slow.id, HashSet::from(["sales"]));
        for n in 0..3 {
            hub.publish("sales", "sale.completed", json!({ "n": n }));
        }
        assert!(slow.overflowed.load(Ordering::Relaxed));
        assert_eq!(hub.clients(), 0);
    }

    #[test]
    fn a_user_holds_at_most_the_limit_of_connections() {
        let hub = Arc::new(Hub::new([SALES], 2, Clock::system()));
        let user = Uuid::from_u128(7);
        let first = hub.connect(user, 2).unwrap();
        let _second = hub.connect(user, 2).unwrap();
        assert!(hub.connect(user, 2).is_none());
        assert!(hub.connect(Uuid::from_u128(8), 2).is_some(), "another user");
        drop(first);
        assert!(
            hub.connect(user, 2).is_some(),
            "a dropped connection frees its place"
        );
    }
}
