//! Authentication: passwords, tokens, sessions, login throttling, and the request's auth context.

pub mod password;
pub mod permissions;
pub mod tokens;
