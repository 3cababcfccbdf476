//! Shared infrastructure every plug goes through.

pub mod audit;
pub mod auth;
pub mod backup;
pub mod cli;
pub mod config;
pub mod console;
pub mod data_dir;
pub mod db;
pub mod devices;
pub mod doctor;
pub mod health;
pub mod http;
pub mod idempotency;
pub mod integrations;
pub mod jobs;
pub mod live;
pub mod logging;
pub mod metrics;
pub mod modules;
pub mod postgres;
pub mod rbac;
pub mod reports;
pub mod security;
pub mod server;
pub mod settings;
pub mod setup;
pub mod state;
pub mod support;
pub mod sync;
pub mod upgrade;
pub mod version;
pub mod webhooks;

/// The tables and views core owns: the business and its settings, the security tables (users,
/// roles, sessions, MFA, throttling, security events), the audit log, idempotency keys, jobs and
/// schedules, and the module registry's records. Every other table belongs to the module whose
/// manifest names it (`Module::tables`). Plugs never name these in SQL: they use core's Rust API
/// (`settings::Business`, `audit::AuditedTx`, ...). The architecture test holds both sides.
pub const TABLES: &[&str] = &[
    "business",
    "settings",
    "users",
    "roles",
    "role_permissions",
    "user_roles",
    "user_mfa",
    "user_pins",
    "mfa_recovery_codes",
    "sessions",
    "refresh_tokens",
    "login_attempts",
    "security_events",
    "audit_records",
    "audit_pending",
    "audit_chain",
    "audit_checkpoints",
    "audit_subject_keys",
    "idempotency_keys",
    "jobs",
    "schedule_runs",
    "modules",
    "devices",
    "device_enrolments",
    "device_activity",
    "sync_outbox",
    "sync_state",
    "sync_pushed",
    "sync_conflicts",
    "api_keys",
    "api_key_usage",
    "webhooks",
    "webhook_deliveries",
    "console_sessions",
];
