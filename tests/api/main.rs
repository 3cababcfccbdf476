//! The one integration test binary. Each module covers one area, talking to the server the
//! way the desktop client does (HTTP and JSON) or running the `plugpos` binary like an admin.

// A test should fail loudly at the first surprise; unwrap is how it says so.
#![allow(clippy::unwrap_used)]
// Tests start their manual clocks, and date their fixtures, from the wall clock; the server's own
// code reads time only through `Clock` (clippy.toml).
#![allow(clippy::disallowed_methods)]

mod abuse;
mod architecture;
mod audit;
mod auth;
mod backup_targets;
mod backups;
mod caches;
mod cash;
mod catalog;
mod cli;
mod closings;
mod console;
mod counts;
mod customers;
mod devices;
mod health;
mod helpers;
mod http_basics;
mod incidents;
mod integrations;
mod jobs;
mod lifecycle;
mod live;
mod mfa;
mod migrations;
mod modules;
mod openapi;
mod purchasing;
mod push;
mod rbac;
mod receipts;
mod releases;
mod reports;
mod returns;
mod sale_writer;
mod sales;
mod settings;
mod setup;
mod shop;
mod support;
mod sync;
mod tls;
mod transfers;
mod upgrade;
mod webhooks;
