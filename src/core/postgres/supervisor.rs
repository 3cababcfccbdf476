//! Runs the managed cluster as a child of `plugpos serve` and restarts it if it dies.
//!
//! Readiness reads the published [`ClusterState`]: while PostgreSQL is down the instance is
//! unready with the reason, and it becomes ready again by itself once the child is back.

use std::time::Duration;

use anyhow::Context;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::process::Child;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::ManagedCluster;

const START_TIMEOUT: Duration = Duration::from_secs(60);
const STOP_TIMEOUT: Duration = Duration::from_secs(30);
const FIRST_RESTART_DELAY: Duration = Duration::from_secs(1);
const MAX_RESTART_DELAY: Duration = Duration::from_secs(30);

/// What the supervised cluster is doing now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClusterState {
    /// Accepting connections.
    Running { pid: u32 },
    /// Died and is being restarted; `reason` says what happened.
    Restarting { reason: String },
    /// Stopped on purpose (shutdown).
    Stopped,
}

/// Owns the PostgreSQL child process.
pub struct Supervisor {
    state: watch::Receiver<ClusterState>,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Supervisor {
    /// Initializes the cluster if needed, stops a stray postmaster left by an earlier run, starts
    /// PostgreSQL as a child and waits until it accepts connections.
    pub async fn start(cluster: ManagedCluster) -> anyhow::Result<Supervisor> {
        cluster.ensure_initialized().await?;
        if let Some(pid) = cluster.running_pid() {
            tracing::warn!(
                pid,
                "PostgreSQL is already running for this data directory; stopping it to supervise it"
            );
            cluster
                .stop()
                .await
                .context("cannot stop the PostgreSQL left running by an earlier start")?;
        }
        let child = start_child(&cluster).await?;
        let pid = child.id().unwrap_or_default();
        tracing::info!(pid, socket_dir = %cluster.socket_dir().display(), "managed PostgreSQL is running");
        let (state_tx, state) = watch::channel(ClusterState::Running { pid });
        let (stop, stop_rx) = watch::channel(false);
        let task = tokio::spawn(supervise(cluster, child, state_tx, stop_rx));
        Ok(Supervisor { state, stop, task })
    }

    /// A live view of the cluster's state, for readiness and metrics.
    pub fn state(&self) -> watch::Receiver<ClusterState> {
        self.state.clone()
    }

    /// Stops PostgreSQL cleanly (fast shutdown) and waits for the child to exit.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        if let Err(e) = self.task.await {
            tracing::error!(error = %e, "the PostgreSQL supervisor failed while stopping");
        }
    }
}

async fn start_child(cluster: &ManagedCluster) -> anyhow::Result<Child> {
    let mut child = cluster.spawn_child()?;
    if let Err(e) = cluster
        .wait_until_accepting(Some(&mut child), START_TIMEOUT)
        .await
    {
        stop_child(&mut child).await;
        return Err(e);
    }
    Ok(child)
}

async fn supervise(
    cluster: ManagedCluster,
    mut child: Child,
    state: watch::Sender<ClusterState>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            status = child.wait() => {
                let how = status.map(|s| s.to_string()).unwrap_or_else(|e| e.to_string());
                let reason = format!("PostgreSQL stopped unexpectedly ({how}); restarting");
                tracing::error!(%reason, log = %cluster.log_tail(), "managed PostgreSQL died");
                let _ = state.send(ClusterState::Restarting { reason: reason.clone() });
                match restart(&cluster, &state, &mut stop, reason).await {
                    Some(new_child) => child = new_child,
                    None => break,
                }
            }
            _ = stop.changed() => {
                stop_child(&mut child).await;
                cluster.remove_socket_link();
                break;
            }
        }
    }
    let _ = state.send(ClusterState::Stopped);
}

/// Restarts with exponential backoff until it works or a stop is requested (then `None`).
async fn restart(
    cluster: &ManagedCluster,
    state: &watch::Sender<ClusterState>,
    stop: &mut watch::Receiver<bool>,
    reason: String,
) -> Option<Child> {
    let mut delay = FIRST_RESTART_DELAY;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = stop.changed() => return None,
        }
        match start_child(cluster).await {
            Ok(child) => {
                let pid = child.id().unwrap_or_default();
                tracing::info!(pid, "managed PostgreSQL restarted");
                // The connections to the dead server are dead.
                crate::core::db::forget_connections();
                let _ = state.send(ClusterState::Running { pid });
                return Some(child);
            }
            Err(e) => {
                tracing::error!(error = %e, "restarting PostgreSQL failed; trying again");
                let _ = state.send(ClusterState::Restarting {
                    reason: format!("{reason}; last attempt failed: {e}"),
                });
                delay = (delay * 2).min(MAX_RESTART_DELAY);
            }
        }
    }
}

/// SIGINT is PostgreSQL's fast shutdown: roll back open transactions, checkpoint, exit.
async fn stop_child(child: &mut Child) {
    let Some(pid) = child.id() else { return };
    let Ok(raw) = i32::try_from(pid) else { return };
    let _ = kill(Pid::from_raw(raw), Signal::SIGINT);
    if tokio::time::timeout(STOP_TIMEOUT, child.wait())
        .await
        .is_err()
    {
        tracing::error!(pid, "PostgreSQL did not stop in time; killing it");
        let _ = child.kill().await;
    } else {
        tracing::info!(pid, "managed PostgreSQL stopped");
    }
}
