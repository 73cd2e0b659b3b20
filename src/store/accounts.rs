//! Account security: the `two_factor` tree (a user's TOTP secret, recovery codes and guess
//! count) and the `reset_tokens` tree (lost-password tokens, by the SHA-256 of the token), and
//! resetting a password, which ends every session of the user in the same transaction.

use super::*;

/// A user's two-factor login (TOTP), pending until confirmed with a first code.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TwoFactorRecord {
    /// The shared secret (20 random bytes).
    pub secret: Vec<u8>,
    /// False while enrolled but not yet confirmed: login does not ask for a code yet.
    pub enabled: bool,
    pub created_ms: u64,
    /// SHA-256 of each unused recovery code.
    pub recovery_codes: Vec<[u8; 32]>,
    /// The last time step whose code was accepted: a code is accepted once (RFC 6238, 5.2).
    pub last_step: u64,
    /// When each recent wrong code was given (ms), for the per-account guess limit.
    pub failures: Vec<u64>,
}

/// A lost-password token. Only its SHA-256 is stored (the key).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResetTokenRecord {
    pub user_id: u64,
    pub created_ms: u64,
    pub expires_ms: u64,
}

impl Store {
    pub fn two_factor(&self, user: u64) -> Result<Option<TwoFactorRecord>> {
        self.two_factor
            .get(user.to_be_bytes())?
            .map(|v| codec::decode(&v))
            .transpose()
    }

    /// Changes a user's two-factor record atomically; `None` afterwards removes it. Returns
    /// the record as written.
    pub fn update_two_factor(
        &self,
        user: u64,
        change: &dyn Fn(&mut Option<TwoFactorRecord>),
    ) -> Result<Option<TwoFactorRecord>> {
        let _gate = self.ensure_space()?;
        let key = user.to_be_bytes();
        flatten(self.two_factor.transaction(|t| {
            let mut record: Option<TwoFactorRecord> = match t.get(key)? {
                Some(v) => Some(codec::decode(&v).map_err(abort)?),
                None => None,
            };
            change(&mut record);
            match &record {
                Some(r) => {
                    t.insert(&key, codec::encode(r).map_err(abort)?)?;
                }
                None => {
                    t.remove(&key)?;
                }
            }
            Ok(record)
        }))
    }

    pub fn insert_reset_token(&self, key: &[u8; 32], token: &ResetTokenRecord) -> Result<()> {
        let _gate = self.ensure_space()?;
        self.reset_tokens.insert(key, codec::encode(token)?)?;
        Ok(())
    }

    /// The token stored under `key`, if any (not removed: `reset_password` takes it).
    pub fn reset_token(&self, key: &[u8; 32]) -> Result<Option<ResetTokenRecord>> {
        self.reset_tokens
            .get(key)?
            .map(|v| codec::decode(&v))
            .transpose()
    }

    /// Every stored reset token of a user (the tree holds at most an hour of them).
    pub fn reset_tokens_of(&self, user_id: u64) -> Result<Vec<ResetTokenRecord>> {
        let mut tokens = Vec::new();
        for value in self.reset_tokens.iter().values() {
            let token: ResetTokenRecord = codec::decode(&value?)?;
            if token.user_id == user_id {
                tokens.push(token);
            }
        }
        Ok(tokens)
    }

    /// Sets a user's password hash from a lost-password token, in one transaction: the token
    /// must still be there and unexpired at `now_ms`, and is removed with every other token of
    /// the user and every session of theirs. Returns the user, or `None` if the token was not
    /// (or no longer) valid or the user is gone.
    pub fn reset_password(
        &self,
        token_key: &[u8; 32],
        password_hash: &str,
        now_ms: u64,
    ) -> Result<Option<UserRecord>> {
        let _gate = self.ensure_space()?;
        let Some(token) = self.reset_token(token_key)? else {
            return Ok(None);
        };
        let user_id = token.user_id;
        let sessions = self.session_keys_of(user_id)?;
        let mut tokens = Vec::new();
        for kv in self.reset_tokens.iter() {
            let (k, v) = kv?;
            if codec::decode::<ResetTokenRecord>(&v)?.user_id == user_id {
                tokens.push(k.to_vec());
            }
        }
        let id = user_id.to_be_bytes();
        flatten(
            (
                &self.users,
                &self.sessions,
                &self.user_sessions,
                &self.reset_tokens,
            )
                .transaction(|(users, sessions_t, user_sessions, reset_tokens)| {
                    // Checked again inside: two resets with one token cannot both succeed.
                    let valid = match reset_tokens.get(token_key)? {
                        Some(v) => {
                            let t: ResetTokenRecord = codec::decode(&v).map_err(abort)?;
                            t.user_id == user_id && t.expires_ms > now_ms
                        }
                        None => false,
                    };
                    reset_tokens.remove(token_key.as_slice())?;
                    if !valid {
                        return Ok(None);
                    }
                    for key in &tokens {
                        reset_tokens.remove(key.as_slice())?;
                    }
                    let Some(v) = users.get(id)? else {
                        return Ok(None);
                    };
                    let mut user: UserRecord = codec::decode(&v).map_err(abort)?;
                    user.password_hash = password_hash.to_owned();
                    users.insert(&id, codec::encode(&user).map_err(abort)?)?;
                    for (link, key) in &sessions {
                        user_sessions.remove(link.as_slice())?;
                        sessions_t.remove(key.as_slice())?;
                    }
                    Ok(Some(user))
                }),
        )
    }

    /// Deletes every lost-password token that expired before `now_ms`. Returns how many.
    pub fn purge_expired_reset_tokens(&self, now_ms: u64) -> Result<usize> {
        let mut expired = Vec::new();
        for kv in self.reset_tokens.iter() {
            let (k, v) = kv?;
            if codec::decode::<ResetTokenRecord>(&v)?.expires_ms <= now_ms {
                expired.push(k);
            }
        }
        for key in &expired {
            self.reset_tokens.remove(key)?;
        }
        Ok(expired.len())
    }
}
