//! Passwords: the policy, and argon2id hashing with at least OWASP's minimum parameters
//! (19 MiB of memory, 2 iterations, 1 lane).

use anyhow::Context;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use argon2::{Algorithm, Argon2, Params, Version};
use rand::RngCore;
use secrecy::{ExposeSecret, SecretString};

/// Memory cost in KiB (19 MiB).
pub const MEMORY_KIB: u32 = 19 * 1024;
/// Iterations.
pub const ITERATIONS: u32 = 2;
/// Lanes.
pub const PARALLELISM: u32 = 1;
/// Shortest accepted password, in characters.
pub const MIN_LENGTH: usize = 10;
/// Longest accepted password, in characters; longer ones are refused, never truncated.
pub const MAX_LENGTH: usize = 128;

/// The 10,000 most common passwords, most common first, one per line: the head of the
/// "passwords" frequency list of zxcvbn (Dropbox; python port 4.5.0, MIT licence), itself drawn
/// from leaked-password corpora. Compared case-insensitively.
const COMMON_PASSWORDS: &str = include_str!("common-passwords.txt");

fn is_common(password: &str) -> bool {
    static SET: std::sync::OnceLock<std::collections::HashSet<&'static str>> =
        std::sync::OnceLock::new();
    SET.get_or_init(|| COMMON_PASSWORDS.lines().filter(|l| !l.is_empty()).collect())
        .contains(password)
}

/// Checks `password` against the policy; the error says what to change.
pub fn check_policy(password: &str, username: &str) -> Result<(), String> {
    let chars = password.chars().count();
    if chars < MIN_LENGTH {
        return Err(format!("must be at least {MIN_LENGTH} characters"));
    }
    if chars > MAX_LENGTH {
        return Err(format!("must be at most {MAX_LENGTH} characters"));
    }
    let lower = password.to_lowercase();
    // Containment only counts for usernames of 4 or more characters: "kim" inside a passphrase
    // is coincidence, "admin" inside one is a pattern guessers try.
    let name = username.to_lowercase();
    if lower == name || (name.chars().count() >= 4 && lower.contains(&name)) {
        return Err("must not be or contain the username".to_owned());
    }
    if is_common(&lower) {
        return Err("is one of the most common passwords".to_owned());
    }
    Ok(())
}

fn hasher() -> anyhow::Result<Argon2<'static>> {
    let params = Params::new(MEMORY_KIB, ITERATIONS, PARALLELISM, None)
        .map_err(|e| anyhow::anyhow!("invalid argon2 parameters: {e}"))?;
    Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
}

/// Password hashing with a bound on how many hashes run at once, so a login storm cannot
/// exhaust memory (19 MiB each) or starve other requests of CPU, and a bound on how many logins
/// may wait for it, so a flood is refused at once (`auth.busy`) instead of piling up.
pub struct PasswordHashing {
    permits: tokio::sync::Semaphore,
    /// Logins hashing or waiting to: at most `concurrent + queued`.
    admission: std::sync::Arc<tokio::sync::Semaphore>,
    /// Verified against for unknown usernames, so they cost the same time as real ones.
    dummy: tokio::sync::OnceCell<String>,
}

/// The queue of password checks is full: try again shortly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Busy;

/// A login's place in the hashing queue, taken before anything is counted or read, and given
/// back when dropped.
pub struct Admitted<'a> {
    hashing: &'a PasswordHashing,
    _place: tokio::sync::OwnedSemaphorePermit,
}

impl PasswordHashing {
    /// At most `concurrent` hashes at once, and `queued` logins waiting for one.
    pub fn new(concurrent: usize, queued: usize) -> PasswordHashing {
        let concurrent = concurrent.max(1);
        PasswordHashing {
            permits: tokio::sync::Semaphore::new(concurrent),
            admission: std::sync::Arc::new(tokio::sync::Semaphore::new(concurrent + queued)),
            dummy: tokio::sync::OnceCell::new(),
        }
    }

    /// A place in the queue for one unauthenticated password check, or [`Busy`] at once.
    pub fn admit(&self) -> Result<Admitted<'_>, Busy> {
        let place = self
            .admission
            .clone()
            .try_acquire_owned()
            .map_err(|_| Busy)?;
        Ok(Admitted {
            hashing: self,
            _place: place,
        })
    }

    /// Hashes a new password (a logged-in user's request: it waits, it is never refused).
    pub async fn hash(&self, password: SecretString) -> anyhow::Result<String> {
        let _permit = self
            .permits
            .acquire()
            .await
            .context("password hashing is shut down")?;
        hash(password).await
    }

    /// Checks a password against a stored hash (a logged-in user's request: it waits).
    pub async fn verify(&self, password: SecretString, phc: String) -> anyhow::Result<bool> {
        let _permit = self
            .permits
            .acquire()
            .await
            .context("password hashing is shut down")?;
        verify(password, phc).await
    }

    /// Spends the same effort as [`verify`](Self::verify) and always answers false (unknown users).
    pub async fn verify_unknown_user(&self, password: SecretString) -> anyhow::Result<bool> {
        let dummy = self
            .dummy
            .get_or_try_init(|| {
                hash(SecretString::from(
                    "plugpos dummy password for unknown users",
                ))
            })
            .await?
            .clone();
        self.verify(password, dummy).await.map(|_| false)
    }
}

impl Admitted<'_> {
    /// Checks `password` against `phc`, or (no such user) spends the same effort and answers false.
    pub async fn verify(
        &self,
        password: SecretString,
        phc: Option<String>,
    ) -> anyhow::Result<bool> {
        match phc {
            Some(phc) => self.hashing.verify(password, phc).await,
            None => self.hashing.verify_unknown_user(password).await,
        }
    }
}

/// Hashes `password` into a PHC string (`$argon2id$v=19$m=19456,t=2,p=1$...`), off the async runtime.
pub async fn hash(password: SecretString) -> anyhow::Result<String> {
    tokio::task::spawn_blocking(move || {
        let mut salt = [0u8; 16];
        rand::rng().fill_bytes(&mut salt);
        let hash = hasher()?
            .hash_password_with_salt(password.expose_secret().as_bytes(), &salt)
            .map_err(|e| anyhow::anyhow!("cannot hash the password: {e}"))?;
        Ok(hash.to_string())
    })
    .await
    .context("the password hashing task failed")?
}

/// Does `password` match the stored PHC string? (Off the async runtime.)
pub async fn verify(password: SecretString, phc: String) -> anyhow::Result<bool> {
    tokio::task::spawn_blocking(move || {
        Ok(hasher()?
            .verify_password(password.expose_secret().as_bytes(), phc.as_str())
            .is_ok())
    })
    .await
    .context("the password verification task failed")?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy() {
        assert!(check_policy("short", "admin").is_err());
        assert!(check_policy("password123", "admin").is_err());
        assert!(
            check_policy("Qwertyuiop", "admin").is_err(),
            "case-insensitive"
        );
        assert_eq!(COMMON_PASSWORDS.lines().count(), 10_000);
        assert!(check_policy("admin-admin-admin", "admin").is_err());
        assert!(check_policy(&"x".repeat(129), "admin").is_err());
        assert!(check_policy("correct horse battery", "admin").is_ok());
        assert!(
            check_policy("kims first pass", "kim").is_ok(),
            "short names may appear"
        );
        assert!(check_policy("kimberly1234", "kimberly1234").is_err());
    }

    #[tokio::test]
    async fn hashes_with_owasp_parameters_and_verifies() {
        let phc = hash(SecretString::from("correct horse battery"))
            .await
            .unwrap();
        assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{phc}");
        assert!(
            verify(SecretString::from("correct horse battery"), phc.clone())
                .await
                .unwrap()
        );
        assert!(
            !verify(SecretString::from("wrong horse battery"), phc)
                .await
                .unwrap()
        );
    }
}
