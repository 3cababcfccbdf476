//! Authentication: passwords, tokens, sessions, login throttling, and the request's auth context.

pub mod access;
pub mod approver;
pub mod context;
pub mod http;
pub mod login;
pub mod mfa;
pub mod password;
pub mod permissions;
pub mod public_limit;
pub mod sealing;
pub mod sessions;
pub mod throttle;
pub mod tokens;

impl crate::core::state::AppState {
    /// The key that signs access tokens.
    pub fn signing_key(&self) -> &tokens::SigningKey {
        self.part()
    }

    /// Password hashing, bounded in concurrency.
    pub fn hashing(&self) -> &password::PasswordHashing {
        self.part()
    }

    /// Sealing of secrets the server reads back (TOTP seeds).
    pub fn sealing(&self) -> &sealing::SecretSealing {
        self.part()
    }

    /// The per-address limit on unauthenticated writes.
    pub fn public_limit(&self) -> &public_limit::PublicLimit {
        self.part()
    }
}
