//! `stock.low` on the `stock` topic: the database notifies `plugpos_stock_low` when a level
//! falls below its minimum (migration 0030's trigger, at commit, whatever wrote the level); this
//! listener, on a connection of its own, publishes each notification to the WebSocket. It ends
//! when the server's live hub is gone.

use std::sync::Weak;
use std::time::Duration;

use serde_json::Value;
use sqlx::postgres::PgListener;

use crate::core::live::Hub;
use crate::core::state::AppState;

/// The channel of migration 0030's trigger.
pub const CHANNEL: &str = "plugpos_stock_low";
const RETRY_MAX: Duration = Duration::from_secs(5);

/// Starts the listener (on the current runtime; without one, nothing).
pub fn start(state: &AppState) {
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return;
    };
    let pool = crate::core::db::lazy_pool((*state.pool().connect_options()).clone(), 1);
    let hub = std::sync::Arc::downgrade(state.live());
    runtime.spawn(listen(hub, pool));
}

async fn listen(hub: Weak<Hub>, pool: sqlx::PgPool) {
    let mut wait = Duration::from_millis(100);
    while hub.strong_count() > 0 {
        match PgListener::connect_with(&pool).await {
            Ok(mut listener) => {
                if listener.listen(CHANNEL).await.is_ok() {
                    wait = Duration::from_millis(100);
                    let why = forward(&hub, &mut listener).await;
                    if hub.strong_count() > 0 {
                        tracing::warn!(reason = %why, "the stock.low listener lost its connection; reconnecting");
                    }
                }
            }
            Err(e) => tracing::debug!(error = %e, "the stock.low listener cannot connect yet"),
        }
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(RETRY_MAX);
    }
    pool.close().await;
}

async fn forward(hub: &Weak<Hub>, listener: &mut PgListener) -> String {
    loop {
        tokio::select! {
            heard = listener.try_recv() => match heard {
                Ok(Some(notification)) => {
                    let Some(hub) = hub.upgrade() else { return "stopped".to_owned() };
                    if let Ok(data) = serde_json::from_str::<Value>(notification.payload()) {
                        hub.publish("stock", "stock.low", data);
                    }
                }
                Ok(None) => return "connection lost".to_owned(),
                Err(e) => return e.to_string(),
            },
            () = tokio::time::sleep(Duration::from_secs(1)) => {
                if hub.strong_count() == 0 {
                    return "stopped".to_owned();
                }
            }
        }
    }
}
