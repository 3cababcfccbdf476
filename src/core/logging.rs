//! System logs: JSON lines to standard output and to daily-rotated files in `<data_dir>/logs`.
//!
//! Every line written while a request is handled carries the request's span, and with it the
//! `request_id`. `RUST_LOG`, when set, overrides `log.level`.

use std::path::Path;

use anyhow::Context;
use tracing_appender::non_blocking::WorkerGuard;
use tracing_appender::rolling::{Builder, Rotation};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use crate::core::config::LogConfig;

/// Keeps the background log writers alive; dropping it flushes them.
#[must_use = "logs are lost when the guard is dropped"]
pub struct LogGuard {
    _guards: Vec<WorkerGuard>,
}

/// The filter: `RUST_LOG` if set, else the configured level.
fn filter(level: &str) -> anyhow::Result<EnvFilter> {
    match std::env::var("RUST_LOG") {
        Ok(value) if !value.trim().is_empty() => EnvFilter::try_new(&value)
            .with_context(|| format!("RUST_LOG={value} is not a valid log filter")),
        _ => EnvFilter::try_new(level)
            .with_context(|| format!("log.level {level:?} is not a valid log filter")),
    }
}

/// Logging for `plugpos serve`.
pub fn init_server(config: &LogConfig, logs_dir: &Path) -> anyhow::Result<LogGuard> {
    let appender = Builder::new()
        .rotation(Rotation::DAILY)
        .filename_prefix("plugpos")
        .filename_suffix("log")
        .max_log_files(config.retention_days)
        .build(logs_dir)
        .with_context(|| format!("cannot write logs to {}", logs_dir.display()))?;
    let (file_writer, file_guard) = tracing_appender::non_blocking(appender);
    let mut guards = vec![file_guard];
    let file_layer = json_layer().with_writer(file_writer);
    let stdout_layer = if config.stdout {
        let (writer, guard) = tracing_appender::non_blocking(std::io::stdout());
        guards.push(guard);
        Some(json_layer().with_writer(writer))
    } else {
        None
    };
    tracing_subscriber::registry()
        .with(filter(&config.level)?)
        .with(file_layer)
        .with(stdout_layer)
        .try_init()
        .context("cannot install the logger")?;
    Ok(LogGuard { _guards: guards })
}

fn json_layer<S>() -> tracing_subscriber::fmt::Layer<
    S,
    tracing_subscriber::fmt::format::JsonFields,
    tracing_subscriber::fmt::format::Format<tracing_subscriber::fmt::format::Json>,
>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    tracing_subscriber::fmt::layer()
        .json()
        .flatten_event(true)
        .with_current_span(true)
        .with_span_list(false)
}

/// Logging for the other commands: warnings and errors, plain, to standard error (their own
/// output goes to standard output).
pub fn init_command() {
    let filter = filter("warn").unwrap_or_else(|_| EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .try_init();
}
