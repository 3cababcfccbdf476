//! `GET /health/live` and `GET /health/ready`.
//!
//! Live means the process answers. Ready means every startup check passes now: the data
//! directory is writable, the database answers, the schema is current and (with the managed
//! cluster) PostgreSQL is running. A load balancer or the desktop client waits for ready.
//!
//! Anyone on the LAN may ask, so the answer says only which check failed, in fixed words: no
//! path, process id or database error. Why it failed goes to the server's log (at most once a
//! minute while unready), where an admin reads it, and to `GET /api/v1/health/details` for a
//! logged-in holder of `administration.system.read`.

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Serialize;
use utoipa::ToSchema;

use crate::core::db;
use crate::core::db::migrations;
use crate::core::http::problem::Problem;
use crate::core::postgres::supervisor::ClusterState;
use crate::core::state::AppState;

const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// Liveness.
#[derive(Debug, Serialize, ToSchema)]
pub struct Live {
    #[schema(example = "live")]
    pub status: &'static str,
    pub version: &'static str,
}

/// Readiness, with every check.
#[derive(Debug, Serialize, ToSchema)]
pub struct Ready {
    /// `ready` or `unready`.
    #[schema(example = "ready")]
    pub status: &'static str,
    pub checks: Vec<Check>,
    /// Things an admin should look at that do not make the server unready (a backup target more
    /// than a day behind). Only in `GET /api/v1/health/details`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

/// One readiness check.
#[derive(Debug, Serialize, ToSchema)]
pub struct Check {
    /// `data_dir`, `postgres`, `database` or `migrations`.
    pub name: &'static str,
    pub ok: bool,
    /// What was found, in fixed words (`answers`, `unreachable`...); why a check fails is in
    /// the server's log.
    pub detail: String,
}

/// The process is up.
#[utoipa::path(
    get,
    path = "/health/live",
    tag = "health",
    responses(
        (status = 200, description = "The process answers", body = Live),
        (status = 500, description = "Internal error", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn live() -> Json<Live> {
    Json(Live {
        status: "live",
        version: env!("CARGO_PKG_VERSION"),
    })
}

/// Every check that gates readiness, with its state.
#[utoipa::path(
    get,
    path = "/health/ready",
    tag = "health",
    responses(
        (status = 200, description = "Ready: every check passed", body = Ready),
        (status = 503, description = "Unready: at least one check failed (see `checks`)", body = Ready),
        (status = 500, description = "Internal error", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn ready(State(state): State<AppState>) -> (StatusCode, Json<Ready>) {
    let checks = run_checks(&state).await;
    let ok = checks.iter().all(|c| c.ok);
    if !ok {
        log_unready(&checks);
    }
    let checks = checks.into_iter().map(Check::public).collect();
    let status = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        Json(Ready {
            status: if ok { "ready" } else { "unready" },
            checks,
            warnings: Vec::new(),
        }),
    )
}

impl Check {
    /// What anyone may read of the check: its name, its outcome and fixed words for it.
    fn public(self) -> Check {
        let detail = match (self.name, self.ok) {
            ("data_dir", true) => "writable",
            ("data_dir", false) => "not writable",
            ("postgres", true) => "running",
            ("postgres", false) => "not running (the server restarts it)",
            ("database", true) => "answers",
            ("database", false) => "unreachable",
            ("migrations", true) => "schema is current",
            ("migrations", false) => "schema not current (migrations pending, or unknown)",
            (_, true) => "ok",
            (_, false) => "failed",
        };
        Check {
            detail: detail.to_owned(),
            ..self
        }
    }
}

/// Logs why readiness fails, at most once a minute (load balancers ask every few seconds).
fn log_unready(checks: &[Check]) {
    static LAST: std::sync::Mutex<Option<std::time::Instant>> = std::sync::Mutex::new(None);
    let mut last = LAST.lock().unwrap_or_else(|e| e.into_inner());
    if last.is_some_and(|at| at.elapsed() < Duration::from_secs(60)) {
        return;
    }
    *last = Some(std::time::Instant::now());
    for check in checks.iter().filter(|c| !c.ok) {
        tracing::warn!(check = check.name, detail = %check.detail, "not ready");
    }
}

/// The readiness checks with why each failed (paths, the PostgreSQL process, database errors):
/// for admins. Answering needs the database (the caller's session is checked there); while it
/// is down, the server's log says why (`not ready`).
#[utoipa::path(
    get,
    path = "/api/v1/health/details",
    tag = "health",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Ready: every check passed, with what each found", body = Ready),
        (status = 503, description = "Unready: at least one check failed, with why", body = Ready),
    )
)]
pub async fn details(
    State(state): State<AppState>,
    _caller: crate::core::auth::context::AuthContext,
) -> (StatusCode, Json<Ready>) {
    let checks = run_checks(&state).await;
    let ok = checks.iter().all(|c| c.ok);
    let status = match ok {
        true => StatusCode::OK,
        false => StatusCode::SERVICE_UNAVAILABLE,
    };
    (
        status,
        Json(Ready {
            status: if ok { "ready" } else { "unready" },
            checks,
            warnings: warnings(&state),
        }),
    )
}

/// What the last checks of the backup targets found wrong.
fn warnings(state: &AppState) -> Vec<String> {
    let states = crate::core::backup::targets::states(&state.backups());
    let same_disk = states.iter().filter(|(_, s)| s.same_disk).map(|(name, _)| {
        format!("backup target {name} is on the same disk as the data directory: a disk failure loses both")
    });
    states
        .iter()
        .filter(|(_, s)| s.behind)
        .map(|(name, s)| {
            format!(
                "backup target {name} is more than a day behind (newest verified copy: {}){}",
                s.newest_copy_at
                    .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
                    .unwrap_or_else(|| "none".to_owned()),
                s.error
                    .as_ref()
                    .map(|e| format!("; last check: {}", e.message))
                    .unwrap_or_default()
            )
        })
        .chain(same_disk)
        .collect()
}

/// Runs the readiness checks (also used by the server at startup), with the full details.
pub async fn run_checks(state: &AppState) -> Vec<Check> {
    let mut checks = Vec::with_capacity(4);
    let data_dir = state.data_dir().clone();
    let writable = tokio::task::spawn_blocking(move || data_dir.check_writable()).await;
    checks.push(match writable {
        Ok(Ok(())) => Check {
            name: "data_dir",
            ok: true,
            detail: format!("{} is writable", state.data_dir().root().display()),
        },
        Ok(Err(e)) => Check {
            name: "data_dir",
            ok: false,
            detail: format!("{e:#}"),
        },
        Err(e) => Check {
            name: "data_dir",
            ok: false,
            detail: format!("check failed: {e}"),
        },
    });
    let cluster = state.cluster_state();
    let cluster_down = matches!(&cluster, Some(c) if !matches!(c, ClusterState::Running { .. }));
    if let Some(cluster) = cluster {
        checks.push(match cluster {
            ClusterState::Running { pid } => Check {
                name: "postgres",
                ok: true,
                detail: format!("managed cluster running (pid {pid})"),
            },
            ClusterState::Restarting { reason } => Check {
                name: "postgres",
                ok: false,
                detail: reason,
            },
            ClusterState::Stopped => Check {
                name: "postgres",
                ok: false,
                detail: "managed cluster stopped".to_owned(),
            },
        });
    }
    if cluster_down {
        // Asking a database that is known to be down would only wait for the pool's timeout.
        for name in ["database", "migrations"] {
            checks.push(Check {
                name,
                ok: false,
                detail: "skipped: the managed PostgreSQL is not running".to_owned(),
            });
        }
        return checks;
    }
    let database = tokio::time::timeout(CHECK_TIMEOUT, db::ping(state.pool())).await;
    let database_ok = matches!(database, Ok(Ok(())));
    checks.push(match database {
        Ok(Ok(())) => Check {
            name: "database",
            ok: true,
            detail: "answers".to_owned(),
        },
        Ok(Err(e)) => Check {
            name: "database",
            ok: false,
            detail: format!("unreachable: {e}"),
        },
        Err(_) => Check {
            name: "database",
            ok: false,
            detail: format!("no answer within {}s", CHECK_TIMEOUT.as_secs()),
        },
    });
    checks.push(if !database_ok {
        Check {
            name: "migrations",
            ok: false,
            detail: "unknown: the database is unreachable".to_owned(),
        }
    } else {
        match tokio::time::timeout(CHECK_TIMEOUT, migrations::check_current(state.pool())).await {
            Ok(Ok(())) => Check {
                name: "migrations",
                ok: true,
                detail: "schema is current".to_owned(),
            },
            Ok(Err(e)) => Check {
                name: "migrations",
                ok: false,
                detail: e.to_string(),
            },
            Err(_) => Check {
                name: "migrations",
                ok: false,
                detail: "no answer in time".to_owned(),
            },
        }
    });
    checks
}

/// Liveness and readiness, each with its access rule (assembled by the server with the other capabilities').
pub fn routes() -> utoipa_axum::router::OpenApiRouter<crate::core::state::AppState> {
    use crate::core::auth::access::Access::{Permission, Public};
    use crate::core::auth::access::declare;
    use utoipa_axum::routes;
    utoipa_axum::router::OpenApiRouter::new()
        .routes(declare(Public, routes!(live)))
        .routes(declare(Public, routes!(ready)))
        .routes(declare(
            Permission("administration.system.read"),
            routes!(details),
        ))
}
