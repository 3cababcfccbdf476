//! Authentication. For now: the password policy and argon2id hashing that setup uses.

pub mod password;
