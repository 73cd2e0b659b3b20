//! Users and their sessions: the `users`, `usernames`, `sessions` and `user_sessions` trees,
//! and deleting a user with everything that hangs off them (licenses in the same transaction,
//! mentions and read state after it, finished at startup after a crash).

use super::user_index::email_key;
use super::*;

/// A login session. The session ID itself is never stored, only its SHA-256 (the key).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionRecord {
    /// A non-secret id of the session, shown in session lists.
    pub handle: u64,
    pub user_id: u64,
    pub created_ms: u64,
    pub expires_ms: u64,
    /// The device that logged in (its user agent), when it said.
    pub device: Option<String>,
    /// The client's device identity (the `UID` header or `secretMachineId`, as a digest).
    pub device_id: Option<String>,
    /// When the session was last used (at most a minute off: uses are recorded once a minute).
    pub last_used_ms: u64,
    /// How far a use or `PATCH /api/sessions/:id` pushes `expires_ms` out.
    pub lifetime_ms: u64,
    /// Whether every use extends the session (`rememberMe: false`).
    pub sliding: bool,
}

/// A session as stored before device identities and lifetimes existed (read only).
#[derive(Deserialize)]
struct SessionRecordV2 {
    handle: u64,
    user_id: u64,
    created_ms: u64,
    expires_ms: u64,
    device: Option<String>,
}

/// A session as stored before `device` existed (read only).
#[derive(Deserialize)]
struct SessionRecordV1 {
    handle: u64,
    user_id: u64,
    created_ms: u64,
    expires_ms: u64,
}

/// Decodes a stored session, also one written before `device` or the lifetime fields existed:
/// postcard is not self-describing, and such a record simply ends before the new fields. An old
/// session keeps its fixed expiry and was last used when it was created.
pub(super) fn decode_session(bytes: &[u8]) -> Result<SessionRecord> {
    codec::decode::<SessionRecord>(bytes).or_else(|error| {
        let old = match codec::decode::<SessionRecordV2>(bytes) {
            Ok(v2) => v2,
            Err(_) => {
                let v1: SessionRecordV1 = codec::decode(bytes).map_err(|_| error)?;
                SessionRecordV2 {
                    handle: v1.handle,
                    user_id: v1.user_id,
                    created_ms: v1.created_ms,
                    expires_ms: v1.expires_ms,
                    device: None,
                }
            }
        };
        Ok(SessionRecord {
            handle: old.handle,
            user_id: old.user_id,
            created_ms: old.created_ms,
            expires_ms: old.expires_ms,
            device: old.device,
            device_id: None,
            last_used_ms: old.created_ms,
            lifetime_ms: old.expires_ms.saturating_sub(old.created_ms),
            sliding: false,
        })
    })
}

impl Store {
    // ---- users ----

    /// Inserts a new user, claiming its name (names are unique ignoring ASCII case).
    pub fn insert_user(&self, user: &UserRecord) -> Result<(), InsertUserError> {
        let _gate = self.ensure_space()?;
        let value = codec::encode(user)?;
        let name = name_key(&user.username);
        let id = user.id.to_be_bytes();
        let r = (&self.users, &self.usernames).transaction(|(users, usernames)| {
            if usernames.get(&name)?.is_some() {
                return Err(abort(InsertUserError::NameTaken));
            }
            usernames.insert(name.as_slice(), &id)?;
            users.insert(&id, value.as_slice())?;
            Ok(())
        });
        r.map_err(|e| match e {
            TransactionError::Abort(e) => e,
            TransactionError::Storage(e) => InsertUserError::Store(e.into()),
        })?;
        self.user_index
            .insert(user.id, &user.username, user.email.as_deref());
        Ok(())
    }

    pub fn user(&self, id: u64) -> Result<Option<UserRecord>> {
        self.users
            .get(id.to_be_bytes())?
            .map(|v| codec::decode(&v))
            .transpose()
    }

    pub fn user_by_name(&self, name: &str) -> Result<Option<UserRecord>> {
        match self.usernames.get(name_key(name))? {
            Some(id) => self.user(id_from_key(&id)),
            None => Ok(None),
        }
    }

    /// Users whose name starts with `prefix` (ignoring ASCII case), in name order: `skip`
    /// passed over, at most `limit` returned. Reads only the matching range of the name index.
    pub fn users_by_name_prefix(
        &self,
        prefix: &str,
        skip: usize,
        limit: usize,
    ) -> Result<Vec<UserRecord>> {
        let mut users = Vec::with_capacity(limit.min(64));
        for entry in self
            .usernames
            .scan_prefix(name_key(prefix))
            .skip(skip)
            .take(limit)
        {
            let (_, id) = entry?;
            if let Some(user) = self.user(id_from_key(&id))? {
                users.push(user);
            }
        }
        Ok(users)
    }

    /// Users whose name contains `part` (three or more characters, ignoring ASCII case) but
    /// does not start with it, in name order: `skip` passed over, at most `limit`. From the
    /// in-memory trigram index, not a scan of every user.
    pub fn users_by_name_part(
        &self,
        part: &str,
        skip: usize,
        limit: usize,
    ) -> Result<Vec<UserRecord>> {
        let mut users = Vec::new();
        for id in self.user_index.containing(part, skip, limit) {
            users.extend(self.user(id)?);
        }
        Ok(users)
    }

    /// Users whose email address is `email` (ignoring case).
    pub fn users_by_email(&self, email: &str) -> Result<Vec<UserRecord>> {
        let mut users = Vec::new();
        for id in self.user_index.by_email(email) {
            if let Some(user) = self.user(id)? {
                if user.email.as_deref().map(email_key) == Some(email_key(email)) {
                    users.push(user);
                }
            }
        }
        Ok(users)
    }

    /// The user an ID or a username names (an ID first), as plugins and bots address users.
    pub fn user_by_id_or_name(&self, user: &str) -> Result<Option<UserRecord>> {
        if let Ok(id) = user.parse::<u64>() {
            if let Some(found) = self.user(id)? {
                return Ok(Some(found));
            }
        }
        self.user_by_name(user)
    }

    /// Every user, oldest first.
    pub fn users(&self) -> Result<Vec<UserRecord>> {
        self.users
            .iter()
            .values()
            .map(|v| codec::decode(&v?))
            .collect()
    }

    /// Changes a stored user atomically (the username must not change). Returns the updated
    /// user, or `None` if there is no such user.
    pub fn update_user(
        &self,
        id: u64,
        change: impl Fn(&mut UserRecord),
    ) -> Result<Option<UserRecord>> {
        let _gate = self.ensure_space()?;
        let updated = update_record(
            &self.users,
            &id.to_be_bytes(),
            |user: &mut Option<UserRecord>| {
                if let Some(user) = user {
                    change(user);
                }
            },
        )?;
        if let Some(email) = updated.as_ref().and_then(|u| u.email.as_deref()) {
            self.user_index.set_email(id, email);
        }
        Ok(updated)
    }

    /// Deletes a user, their name and every session of theirs. Returns the deleted user.
    /// Deletes a user: record, name, sessions and chatbox licenses in one transaction, with a
    /// marker under which the rest (mention index, read state) is removed next; startup
    /// finishes what a crash interrupted (`pending_user_purges`). The messages stay.
    pub fn delete_user(&self, id: u64) -> Result<Option<UserRecord>> {
        let _gate = self.ensure_space()?;
        let user = self.delete_user_record(id)?;
        if user.is_some() {
            self.purge_user(id)?;
        }
        Ok(user)
    }

    /// The transactional half of `delete_user`: everything but the leftovers, plus the marker.
    pub(super) fn delete_user_record(&self, id: u64) -> Result<Option<UserRecord>> {
        let Some(user) = self.user(id)? else {
            return Ok(None);
        };
        let name = name_key(&user.username);
        let sessions = self.session_keys_of(id)?;
        let licenses: Vec<[u8; 8]> = self
            .licenses_of(id)?
            .iter()
            .map(|l| l.id.to_be_bytes())
            .collect();
        let marker = user_purge_key(id);
        flatten(
            (
                &self.users,
                &self.usernames,
                &self.sessions,
                &self.user_sessions,
                &self.licenses,
                &self.meta,
                &self.two_factor,
            )
                .transaction(
                    |(
                        users,
                        usernames,
                        sessions_t,
                        user_sessions,
                        licenses_t,
                        meta,
                        two_factor,
                    )| {
                        users.remove(&id.to_be_bytes())?;
                        two_factor.remove(&id.to_be_bytes())?;
                        usernames.remove(name.as_slice())?;
                        for (link, key) in &sessions {
                            user_sessions.remove(link.as_slice())?;
                            sessions_t.remove(key.as_slice())?;
                        }
                        // The keys stay as tombstones: a bot using one hears its license
                        // was revoked.
                        for license in &licenses {
                            licenses_t.remove(license)?;
                        }
                        meta.insert(marker.as_slice(), &[])?;
                        Ok(())
                    },
                ),
        )?;
        self.user_index.remove(id);
        Ok(Some(user))
    }

    /// Users whose deletion was interrupted before their leftovers were removed.
    pub fn pending_user_purges(&self) -> Result<Vec<u64>> {
        self.meta
            .scan_prefix(USER_PURGE_PREFIX)
            .keys()
            .map(|k| Ok(id_from_key(&k?[USER_PURGE_PREFIX.len()..])))
            .collect()
    }

    /// Removes a deleted user's mention index and read state, then the purge marker.
    pub fn purge_user(&self, id: u64) -> Result<()> {
        self.remove_prefix(&self.mentions, &id.to_be_bytes())?;
        let mut read = sled::Batch::default();
        for channel in self.channels.iter().keys() {
            read.remove(&channels::pair_key(id_from_key(&channel?), id));
        }
        self.read_state.apply_batch(read)?;
        self.meta.remove(user_purge_key(id))?;
        Ok(())
    }

    // ---- sessions ----

    pub fn insert_session(&self, key: &SessionKey, session: &SessionRecord) -> Result<()> {
        let _gate = self.ensure_space()?;
        let value = codec::encode(session)?;
        let link = user_session_key(session.user_id, session.handle);
        flatten(
            (&self.sessions, &self.user_sessions).transaction(|(sessions, user_sessions)| {
                sessions.insert(key.as_slice(), value.as_slice())?;
                user_sessions.insert(link.as_slice(), key.as_slice())?;
                Ok(())
            }),
        )
    }

    pub fn session(&self, key: &SessionKey) -> Result<Option<SessionRecord>> {
        self.sessions
            .get(key)?
            .map(|v| decode_session(&v))
            .transpose()
    }

    /// Changes a stored session (its last use and expiry); None if it is gone.
    pub fn update_session(
        &self,
        key: &SessionKey,
        change: impl Fn(&mut SessionRecord),
    ) -> Result<Option<SessionRecord>> {
        let _gate = self.ensure_space()?;
        let updated = self.sessions.transaction(|t| {
            let Some(v) = t.get(key.as_slice())? else {
                return Ok(None);
            };
            let mut session = decode_session(&v).map_err(abort)?;
            change(&mut session);
            let value = codec::encode(&session).map_err(abort)?;
            t.insert(key.as_slice(), value)?;
            Ok(Some(session))
        });
        flatten(updated)
    }

    /// (link key, session key) of every session of a user.
    pub(super) fn session_keys_of(&self, user_id: u64) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        self.user_sessions
            .scan_prefix(user_id.to_be_bytes())
            .map(|kv| {
                let (k, v) = kv?;
                Ok((k.to_vec(), v.to_vec()))
            })
            .collect()
    }

    /// Every session of a user with its key, oldest first.
    pub fn sessions_of(&self, user_id: u64) -> Result<Vec<(SessionKey, SessionRecord)>> {
        let mut out = Vec::new();
        for (_, key) in self.session_keys_of(user_id)? {
            let Ok(key) = SessionKey::try_from(key.as_slice()) else {
                continue;
            };
            if let Some(session) = self.session(&key)? {
                out.push((key, session));
            }
        }
        Ok(out)
    }

    /// Deletes one session. Returns whether it existed.
    pub fn delete_session(&self, key: &SessionKey) -> Result<bool> {
        let _gate = self.ensure_space()?;
        let Some(session) = self.session(key)? else {
            return Ok(false);
        };
        let link = user_session_key(session.user_id, session.handle);
        flatten(
            (&self.sessions, &self.user_sessions).transaction(|(sessions, user_sessions)| {
                sessions.remove(key.as_slice())?;
                user_sessions.remove(link.as_slice())?;
                Ok(())
            }),
        )?;
        Ok(true)
    }

    /// Deletes every session that expired before `now_ms`. Returns how many.
    pub fn purge_expired_sessions(&self, now_ms: u64) -> Result<usize> {
        let mut expired = Vec::new();
        for kv in self.sessions.iter() {
            let (k, v) = kv?;
            let session = decode_session(&v)?;
            if session.expires_ms <= now_ms {
                if let Ok(key) = SessionKey::try_from(k.as_ref()) {
                    expired.push(key);
                }
            }
        }
        for key in &expired {
            self.delete_session(key)?;
        }
        Ok(expired.len())
    }
}
