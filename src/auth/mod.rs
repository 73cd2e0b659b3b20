//! Passwords and session IDs.
//!
//! Passwords are hashed with scrypt into PHC strings on tokio's blocking pool, behind a
//! semaphore so a login flood can use at most `concurrency × memory-per-hash` of memory and
//! never stalls the async workers. Verifying a login for an unknown user runs the same scrypt
//! work against a dummy hash, so the two cases cost the same. Session IDs are 256 random bits
//! from the OS; the server keeps only their SHA-256.

use base64::Engine;
use scrypt::password_hash::{PasswordHash, PasswordHasher as _, PasswordVerifier, SaltString};
use scrypt::{Params, Scrypt};
use sha2::{Digest, Sha256};
use std::sync::Arc;
use tokio::sync::Semaphore;

use crate::store::SessionKey;

/// scrypt cost settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScryptCost {
    pub log_n: u8,
    pub r: u32,
    pub p: u32,
}

impl ScryptCost {
    /// Memory one hash needs: 128 · r · 2^log_n bytes.
    pub fn memory_bytes(&self) -> u64 {
        (128 * u64::from(self.r)) << self.log_n
    }
}

/// Why a password operation failed.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("invalid scrypt parameters: {0}")]
    Params(String),
    #[error("password hashing failed: {0}")]
    Hash(String),
    #[error("the password hashing task failed: {0}")]
    Task(String),
}

/// Hashes and verifies passwords with bounded concurrency.
#[derive(Debug, Clone)]
pub struct PasswordHasher {
    params: Params,
    permits: Arc<Semaphore>,
    dummy_hash: Arc<str>,
}

/// Whether two secrets are equal, compared through their SHA-256 digests: how long the
/// comparison takes tells nothing about the secret's bytes.
pub fn same_secret(a: &[u8], b: &[u8]) -> bool {
    use sha2::{Digest, Sha256};
    Sha256::digest(a) == Sha256::digest(b)
}

pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    // The OS CSPRNG failing leaves nothing safe to do; decentd cannot run without it.
    getrandom::getrandom(&mut bytes).expect("the OS random number generator is unavailable");
    bytes
}

fn hash_blocking(params: Params, password: &[u8]) -> Result<String, AuthError> {
    let salt = SaltString::encode_b64(&random_bytes::<16>())
        .map_err(|e| AuthError::Hash(e.to_string()))?;
    Scrypt
        .hash_password_customized(password, None, None, params, &salt)
        .map(|h| h.to_string())
        .map_err(|e| AuthError::Hash(e.to_string()))
}

impl PasswordHasher {
    pub fn new(cost: ScryptCost, concurrency: usize) -> Result<Self, AuthError> {
        let params = Params::new(cost.log_n, cost.r, cost.p, Params::RECOMMENDED_LEN)
            .map_err(|e| AuthError::Params(e.to_string()))?;
        let dummy_hash = hash_blocking(params, b"decentd dummy password")?;
        Ok(Self {
            params,
            permits: Arc::new(Semaphore::new(concurrency.max(1))),
            dummy_hash: dummy_hash.into(),
        })
    }

    async fn run<T: Send + 'static>(
        &self,
        job: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, AuthError> {
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|e| AuthError::Task(e.to_string()))?;
        tokio::task::spawn_blocking(job)
            .await
            .map_err(|e| AuthError::Task(e.to_string()))
    }

    /// Hashes a password into a PHC string.
    pub async fn hash(&self, password: String) -> Result<String, AuthError> {
        let params = self.params;
        self.run(move || hash_blocking(params, password.as_bytes()))
            .await?
    }

    /// Checks a password against a stored hash; `None` (unknown user) checks against a dummy
    /// hash and answers false, at the same cost.
    pub async fn verify(&self, password: String, hash: Option<String>) -> Result<bool, AuthError> {
        let known = hash.is_some();
        let hash = hash.unwrap_or_else(|| self.dummy_hash.to_string());
        let matches = self
            .run(move || match PasswordHash::new(&hash) {
                Ok(parsed) => Scrypt.verify_password(password.as_bytes(), &parsed).is_ok(),
                Err(_) => false,
            })
            .await?;
        Ok(known && matches)
    }
}

/// A new session ID: 256 bits from the OS CSPRNG, base64url without padding (43 characters).
pub fn new_session_id() -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(random_bytes::<32>())
}

/// The key a session is stored under: SHA-256 of its ID.
pub fn session_key(session_id: &str) -> SessionKey {
    Sha256::digest(session_id.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHEAP: ScryptCost = ScryptCost {
        log_n: 4,
        r: 8,
        p: 1,
    };

    #[tokio::test]
    async fn passwords_verify_only_against_their_own_hash() {
        let hasher = PasswordHasher::new(CHEAP, 2).unwrap();
        let hash = hasher.hash("secret1".into()).await.unwrap();
        assert!(hash.starts_with("$scrypt$"));
        assert!(hasher
            .verify("secret1".into(), Some(hash.clone()))
            .await
            .unwrap());
        assert!(!hasher.verify("secret2".into(), Some(hash)).await.unwrap());
        assert!(!hasher.verify("secret1".into(), None).await.unwrap());
    }

    #[test]
    fn session_ids_are_long_random_and_distinct() {
        let a = new_session_id();
        let b = new_session_id();
        assert_eq!(a.len(), 43);
        assert_ne!(a, b);
        assert_ne!(session_key(&a), session_key(&b));
    }

    #[test]
    fn memory_per_hash_follows_scrypt_formula() {
        let cost = ScryptCost {
            log_n: 15,
            r: 8,
            p: 1,
        };
        assert_eq!(cost.memory_bytes(), 32 * 1024 * 1024);
    }
}
