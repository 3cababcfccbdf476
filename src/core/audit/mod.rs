//! The tamper-evident audit log: the audited write path ([`write::AuditedTx`]), the canonical
//! encoding and hash chain ([`encoding`], [`chain`]), and verification ([`verify`]).
//! Only this module writes the audit tables.

pub mod chain;
pub mod checkpoint;
pub mod encoding;
pub mod http;
pub mod parts;
pub mod pdf;
pub mod personal;
pub mod query;
pub mod verify;
pub mod write;

pub use parts::AuditedPart;
pub use query::ProtectedField;
pub use write::{Actor, AuditError, AuditedStatement, AuditedTx, Change};
