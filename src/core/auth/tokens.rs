//! Access tokens (JWT, HS256, `typ: at+jwt`, audience `plugpos`) and opaque refresh tokens.
//!
//! The algorithm is fixed here, never taken from the token: `alg: none`, other algorithms, a wrong
//! key, audience or type, and expired tokens are all refused.

use std::path::Path;

use anyhow::Context;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::core::data_dir::write_private_file;

/// The audience every access token is issued for.
pub const AUDIENCE: &str = "plugpos";
/// The JWT `typ` header of access tokens (RFC 9068).
pub const TOKEN_TYPE: &str = "at+jwt";
const KEY_FILE: &str = "jwt-signing.key";

/// The claims of an access token.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AccessClaims {
    /// The user id.
    pub sub: Uuid,
    /// The session id; the session is checked on every request.
    pub sid: Uuid,
    pub aud: String,
    pub iat: u64,
    pub exp: u64,
}

/// The HMAC key that signs access tokens.
#[derive(Clone)]
pub struct SigningKey {
    encoding: EncodingKey,
    decoding: DecodingKey,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SigningKey([REDACTED])")
    }
}

impl SigningKey {
    /// A key from raw bytes (at least 32).
    pub fn from_bytes(bytes: &[u8]) -> SigningKey {
        SigningKey {
            encoding: EncodingKey::from_secret(bytes),
            decoding: DecodingKey::from_secret(bytes),
        }
    }

    /// A new random key (tests; `load_or_create` for real instances).
    pub fn random() -> SigningKey {
        let mut bytes = [0u8; 32];
        rand::rng().fill_bytes(&mut bytes);
        SigningKey::from_bytes(&bytes)
    }

    /// Loads `<keys>/jwt-signing.key`, creating it (0600) on first use.
    pub fn load_or_create(keys_dir: &Path) -> anyhow::Result<SigningKey> {
        let path = keys_dir.join(KEY_FILE);
        if let Ok(text) = std::fs::read_to_string(&path) {
            let bytes = hex::decode(text.trim())
                .with_context(|| format!("{} is damaged", path.display()))?;
            anyhow::ensure!(bytes.len() >= 32, "{} is too short", path.display());
            return Ok(SigningKey::from_bytes(&bytes));
        }
        let mut bytes = [0u8; 32];
        rand::rng().fill_bytes(&mut bytes);
        write_private_file(&path, format!("{}\n", hex::encode(bytes)).as_bytes())?;
        Ok(SigningKey::from_bytes(&bytes))
    }

    /// Signs an access token for `user` in `session`, valid for `lifetime_secs`.
    pub fn issue(
        &self,
        user: Uuid,
        session: Uuid,
        now: u64,
        lifetime_secs: u64,
    ) -> anyhow::Result<String> {
        let mut header = Header::new(Algorithm::HS256);
        header.typ = Some(TOKEN_TYPE.to_owned());
        let claims = AccessClaims {
            sub: user,
            sid: session,
            aud: AUDIENCE.to_owned(),
            iat: now,
            exp: now + lifetime_secs,
        };
        jsonwebtoken::encode(&header, &claims, &self.encoding)
            .context("cannot sign the access token")
    }

    /// Verifies signature, algorithm, type, audience and expiry (against `now`, the app clock).
    pub fn verify(
        &self,
        token: &str,
        now: u64,
    ) -> Result<AccessClaims, jsonwebtoken::errors::Error> {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_audience(&[AUDIENCE]);
        validation.set_required_spec_claims(&["exp", "aud", "sub"]);
        // Expiry is checked below against the app's clock, so tests can move time.
        validation.validate_exp = false;
        let data = jsonwebtoken::decode::<AccessClaims>(token, &self.decoding, &validation)?;
        if data.header.typ.as_deref() != Some(TOKEN_TYPE) {
            return Err(jsonwebtoken::errors::ErrorKind::InvalidToken.into());
        }
        if data.claims.exp <= now {
            return Err(jsonwebtoken::errors::ErrorKind::ExpiredSignature.into());
        }
        Ok(data.claims)
    }
}

/// A new refresh token (256 random bits, base64url) and the hash that is stored.
pub fn new_refresh_token() -> (String, [u8; 32]) {
    crate::shared::secret::new("")
}

/// The stored form of a refresh token.
pub fn hash_refresh_token(token: &str) -> [u8; 32] {
    crate::shared::secret::digest(token)
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

    fn now() -> u64 {
        jsonwebtoken::get_current_timestamp()
    }

    #[test]
    fn issued_tokens_verify_and_tampering_fails() {
        let key = SigningKey::random();
        let (user, session) = (Uuid::now_v7(), Uuid::now_v7());
        let token = key.issue(user, session, now(), 900).unwrap();
        let claims = key.verify(&token, now()).unwrap();
        assert_eq!((claims.sub, claims.sid), (user, session));
        assert!(
            SigningKey::random().verify(&token, now()).is_err(),
            "another key"
        );
        assert!(key.verify(&token, now() + 900).is_err(), "expired at exp");
    }

    #[test]
    fn alg_none_and_wrong_typ_are_refused() {
        let key = SigningKey::random();
        let claims = serde_json::json!({"sub": Uuid::now_v7(), "sid": Uuid::now_v7(), "aud": AUDIENCE, "iat": now(), "exp": now() + 900});
        let body = URL_SAFE_NO_PAD.encode(claims.to_string());
        let none = format!(
            "{}.{body}.",
            URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"at+jwt"}"#)
        );
        assert!(key.verify(&none, now()).is_err());
        let mut header = Header::new(Algorithm::HS256);
        header.typ = Some("JWT".to_owned());
        let wrong_typ = jsonwebtoken::encode(&header, &claims, &key.encoding).unwrap();
        assert!(key.verify(&wrong_typ, now()).is_err());
    }
}
