//! Bearer secrets the server makes and keeps only as a digest: refresh tokens, device
//! credentials (`pdt_`), API keys (`pk_`). Each is a prefix and 32 random bytes (URL-safe base64,
//! 43 characters); what is stored is its SHA-256.

use base64::Engine;
use rand::RngCore;
use sha2::{Digest, Sha256};

/// A new secret starting with `prefix`, and its stored digest.
pub fn new(prefix: &str) -> (String, [u8; 32]) {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    let secret = format!(
        "{prefix}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    );
    let stored = digest(&secret);
    (secret, stored)
}

/// The stored form of `secret` (as sent: callers trim what they read from a request).
pub fn digest(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_is_its_prefix_and_43_random_characters_kept_as_a_digest() {
        let (a, stored) = new("pk_");
        let (b, _) = new("pk_");
        assert_ne!(a, b);
        assert!(a.starts_with("pk_") && a.len() == 3 + 43, "{a}");
        assert_eq!(digest(&a), stored);
        assert_eq!(new("").0.len(), 43);
    }
}
