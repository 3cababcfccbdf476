//! The one clock: real time in production, a hand-moved clock in tests (lockouts, token expiry,
//! session lifetimes and schedules are tested by moving it, not by sleeping).

use std::sync::{Arc, Mutex};

use chrono::{DateTime, Duration, Utc};

/// Where "now" comes from.
#[derive(Debug, Clone, Default)]
pub struct Clock {
    manual: Option<Arc<Mutex<DateTime<Utc>>>>,
}

impl Clock {
    /// The system clock.
    pub fn system() -> Clock {
        Clock { manual: None }
    }

    /// A clock that stands still at `start` until moved with [`Clock::advance`].
    pub fn manual(start: DateTime<Utc>) -> Clock {
        Clock {
            manual: Some(Arc::new(Mutex::new(start))),
        }
    }

    /// The current time.
    pub fn now(&self) -> DateTime<Utc> {
        match &self.manual {
            // A poisoned lock only means another test thread panicked; the time inside is still valid.
            Some(time) => *time.lock().unwrap_or_else(|e| e.into_inner()),
            // The one place that reads the system time (clippy.toml forbids it everywhere else).
            #[allow(clippy::disallowed_methods)]
            None => Utc::now(),
        }
    }

    /// Moves a manual clock forward (no effect on the system clock).
    pub fn advance(&self, by: Duration) {
        if let Some(time) = &self.manual {
            let mut time = time.lock().unwrap_or_else(|e| e.into_inner());
            *time += by;
        }
    }
}
