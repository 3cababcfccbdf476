//! Shared infrastructure every plug goes through.

pub mod audit;
pub mod auth;
pub mod backup;
pub mod cli;
pub mod config;
pub mod data_dir;
pub mod db;
pub mod health;
pub mod http;
pub mod jobs;
pub mod live;
pub mod logging;
pub mod metrics;
pub mod modules;
pub mod openapi;
pub mod postgres;
pub mod rbac;
pub mod security;
pub mod server;
pub mod settings;
pub mod setup;
pub mod state;
pub mod version;
