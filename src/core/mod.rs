//! Shared infrastructure every plug goes through.

pub mod config;
pub mod data_dir;
pub mod postgres;
