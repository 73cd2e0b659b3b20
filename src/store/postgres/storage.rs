//! `Storage` on PostgreSQL: each method is one statement or one transaction.

use futures_util::future::BoxFuture;
use std::collections::VecDeque;
use std::sync::Arc;
use tokio_postgres::types::Json;

use super::{big, exec, id, is_unique_violation, record, row, rows, Db, PgStore};
use crate::perms::{ChannelOverrides, PermissionSet, ReadAccess};
use crate::store::*;

/// Lowercased as names are compared (ASCII case only).
fn lower(name: &str) -> String {
    name.to_ascii_lowercase()
}

/// `text` with LIKE's wildcards escaped.
fn like_escaped(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for ch in text.chars() {
        if matches!(ch, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(ch);
    }
    out
}

fn email_key(user: &UserRecord) -> Option<String> {
    user.email
        .as_deref()
        .map(crate::store::user_index::email_key)
}

fn ids_param(ids: &[u64]) -> Vec<i64> {
    ids.iter().map(|v| big(*v)).collect()
}

fn unsupported(what: &str) -> StoreError {
    StoreError::Io(std::io::Error::new(
        std::io::ErrorKind::Unsupported,
        format!("{what} is not available with PostgreSQL storage: use pg_dump and pg_restore, or `decentd export`"),
    ))
}

const META_SETTINGS: &str = "settings";
const META_ROLE_ORDER: &str = "role_order";
const META_ADMIN_ROLE: &str = "admin_role";
const META_READ_ACCESS: &str = "read_access";
const META_DATA_FORMAT: &str = "data_format";

impl PgStore {
    fn meta<T: serde::de::DeserializeOwned>(&self, key: &str) -> Result<Option<T>> {
        self.db.run(async |c| {
            match row(&*c, "SELECT value FROM meta WHERE key = $1", &[&key]).await? {
                Some(r) => Ok(Some(record(&r, 0)?)),
                None => Ok(None),
            }
        })
    }

    fn set_meta<T: serde::Serialize + std::fmt::Debug + Sync>(
        &self,
        key: &str,
        value: &T,
    ) -> Result<()> {
        self.db.run(async |c| {
            exec(&*c, UPSERT_META, &[&key, &Json(value)]).await?;
            Ok(())
        })
    }
}

impl PgStore {
    /// The `record` column (first) of every row a query returns.
    fn records<T: serde::de::DeserializeOwned>(
        &self,
        sql: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<Vec<T>> {
        self.db.run(async |c| {
            rows(&*c, sql, params)
                .await?
                .iter()
                .map(|r| record(r, 0))
                .collect()
        })
    }

    /// The `record` column (first) of the one row a query returns, if any.
    fn record<T: serde::de::DeserializeOwned>(
        &self,
        sql: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<Option<T>> {
        self.db.run(async |c| {
            row(&*c, sql, params)
                .await?
                .map(|r| record(&r, 0))
                .transpose()
        })
    }
}

const UPSERT_META: &str = "INSERT INTO meta (key, value) VALUES ($1, $2) \
     ON CONFLICT (key) DO UPDATE SET value = excluded.value";

/// A plugin's key-value space in `plugin_kv`.
#[derive(Debug)]
struct PgKv {
    db: Db,
    plugin: String,
}

impl KvSpace for PgKv {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.db.run(async |c| {
            let r = row(
                &*c,
                "SELECT value FROM plugin_kv WHERE plugin = $1 AND key = $2",
                &[&self.plugin, &key],
            )
            .await?;
            Ok(match r {
                Some(r) => Some(r.try_get(0)?),
                None => None,
            })
        })
    }
    fn set(&self, key: &[u8], value: &[u8]) -> Result<()> {
        self.db.run(async |c| {
            exec(
                &*c,
                "INSERT INTO plugin_kv (plugin, key, value) VALUES ($1, $2, $3) \
                 ON CONFLICT (plugin, key) DO UPDATE SET value = excluded.value",
                &[&self.plugin, &key, &value],
            )
            .await?;
            Ok(())
        })
    }
    fn delete(&self, key: &[u8]) -> Result<()> {
        self.db.run(async |c| {
            exec(
                &*c,
                "DELETE FROM plugin_kv WHERE plugin = $1 AND key = $2",
                &[&self.plugin, &key],
            )
            .await?;
            Ok(())
        })
    }
    fn len(&self) -> usize {
        let counted = self.db.run(async |c| {
            let r = row(
                &*c,
                "SELECT count(*) FROM plugin_kv WHERE plugin = $1",
                &[&self.plugin],
            )
            .await?;
            Ok(r.map_or(0, |r| r.try_get::<_, i64>(0).unwrap_or(0)) as usize)
        });
        // Unknown: counted as full, so the quota refuses new keys until the database answers.
        counted.unwrap_or(usize::MAX)
    }
}

/// A user's mentions, newest first, read a page at a time.
struct MentionPages {
    db: Db,
    user: i64,
    before: i64,
    page: VecDeque<(u64, u64)>,
    done: bool,
}

const MENTION_PAGE: i64 = 256;

impl Iterator for MentionPages {
    type Item = Result<(u64, u64)>;
    fn next(&mut self) -> Option<Self::Item> {
        if self.page.is_empty() && !self.done {
            let fetched = self.db.run(async |c| {
                let found = rows(
                    &*c,
                    "SELECT message_id, channel_id FROM mentions \
                     WHERE user_id = $1 AND message_id < $2 ORDER BY message_id DESC LIMIT $3",
                    &[&self.user, &self.before, &MENTION_PAGE],
                )
                .await?;
                found
                    .iter()
                    .map(|r| Ok((id(r, 0)?, id(r, 1)?)))
                    .collect::<Result<Vec<_>>>()
            });
            match fetched {
                Ok(found) => {
                    self.done = (found.len() as i64) < MENTION_PAGE;
                    if let Some(last) = found.last() {
                        self.before = big(last.0);
                    }
                    self.page.extend(found);
                }
                Err(e) => {
                    self.done = true;
                    return Some(Err(e));
                }
            }
        }
        self.page.pop_front().map(Ok)
    }
}

impl Storage for PgStore {
    fn ensure_space(&self) -> Result<()> {
        // The database server guards its own disk: a full one refuses the write itself.
        Ok(())
    }
    fn next_id(&self) -> u64 {
        self.ids.next()
    }
    fn durable(&self) -> BoxFuture<'_, Result<()>> {
        // Every write was committed before it returned.
        Box::pin(async { Ok(()) })
    }
    fn writable(&self) -> BoxFuture<'_, Result<()>> {
        let db = self.db.clone();
        Box::pin(async move {
            let checked = db.handle.spawn(async move {
                let c = db
                    .pool
                    .get()
                    .await
                    .map_err(|e| StoreError::Unavailable(e.to_string()))?;
                exec(
                    &c,
                    UPSERT_META,
                    &[&"ready_check", &Json(crate::ids::now_ms())],
                )
                .await?;
                Ok::<_, StoreError>(())
            });
            checked
                .await
                .map_err(|e| StoreError::Unavailable(e.to_string()))?
        })
    }
    fn size_on_disk(&self) -> Result<u64> {
        self.db.run(async |c| {
            let r = row(&*c, "SELECT pg_database_size(current_database())", &[]).await?;
            Ok(r.map_or(0, |r| r.try_get::<_, i64>(0).unwrap_or(0)) as u64)
        })
    }
    fn dump(
        &self,
        _open: &(dyn Fn(&str) -> std::io::Result<DumpOutput> + Sync),
    ) -> Result<Vec<TreeCount>> {
        Err(unsupported("`decentd backup`"))
    }
    fn data_format(&self) -> Result<Option<u32>> {
        self.meta(META_DATA_FORMAT)
    }
    fn set_data_format(&self, format: u32) -> Result<()> {
        self.set_meta(META_DATA_FORMAT, &format)
    }
    fn is_empty(&self) -> bool {
        self.key_counts().iter().all(|(_, n)| *n == 0)
    }
    fn load_tree(&self, _name: &str, _input: &mut dyn std::io::Read) -> Result<u64> {
        Err(unsupported("`decentd restore`"))
    }
    fn export(&self, emit: &mut dyn FnMut(Entity) -> std::io::Result<()>) -> Result<()> {
        PgStore::export(self, emit)
    }
    fn import(&self, entity: &Entity) -> Result<()> {
        PgStore::import(self, entity)
    }
    fn key_counts(&self) -> Vec<(&'static str, usize)> {
        const TABLES: &[&str] = &[
            "meta",
            "users",
            "sessions",
            "roles",
            "channels",
            "purges",
            "messages",
            "mentions",
            "read_state",
            "emotes",
            "plugins",
            "plugin_kv",
            "licenses",
            "license_keys",
            "two_factor",
            "reset_tokens",
            "direct_messages",
            "conversations",
            "direct_read",
            "dm_settings",
        ];
        let counted = self.db.run(async |c| {
            let mut out = Vec::new();
            for table in TABLES {
                // Names from the list above, never from input.
                let sql = if *table == "meta" {
                    "SELECT count(*) FROM meta WHERE key <> 'ready_check'".to_string()
                } else {
                    format!("SELECT count(*) FROM {table}")
                };
                let r = row(&*c, &sql, &[]).await?;
                out.push((
                    *table,
                    r.map_or(0, |r| r.try_get::<_, i64>(0).unwrap_or(0)) as usize,
                ));
            }
            Ok(out)
        });
        counted.unwrap_or_else(|e| {
            tracing::warn!(error = %e, "could not count the database's rows");
            Vec::new()
        })
    }
    fn flush(&self) -> Result<()> {
        self.flush_imports()
    }
    fn settings(&self) -> Result<Settings> {
        Ok(self.meta(META_SETTINGS)?.unwrap_or_default())
    }
    fn update_settings(
        &self,
        change: &dyn Fn(&mut Settings),
        access: Option<ReadAccess>,
    ) -> Result<Settings> {
        self.db.run(async |c| {
            let t = c.transaction().await?;
            let mut settings: Settings = match row(
                &t,
                "SELECT value FROM meta WHERE key = $1 FOR UPDATE",
                &[&META_SETTINGS],
            )
            .await?
            {
                Some(r) => record(&r, 0)?,
                None => Settings::default(),
            };
            change(&mut settings);
            exec(&t, UPSERT_META, &[&META_SETTINGS, &Json(&settings)]).await?;
            if let Some(access) = access {
                exec(&t, UPSERT_META, &[&META_READ_ACCESS, &Json(access.key())]).await?;
            }
            t.commit().await?;
            Ok(settings)
        })
    }
    fn read_access(&self) -> Result<Option<ReadAccess>> {
        Ok(self
            .meta::<String>(META_READ_ACCESS)?
            .and_then(|key| ReadAccess::parse(&key)))
    }
    fn set_read_access(&self, access: ReadAccess) -> Result<()> {
        self.set_meta(META_READ_ACCESS, &access.key())
    }
    fn is_unused(&self) -> bool {
        let unused = self.db.run(async |c| {
            let r = row(
                &*c,
                "SELECT NOT EXISTS (SELECT 1 FROM users) AND NOT EXISTS (SELECT 1 FROM channels)",
                &[],
            )
            .await?;
            Ok(r.is_some_and(|r| r.try_get::<_, bool>(0).unwrap_or(false)))
        });
        unused.unwrap_or(false)
    }
    fn roles(&self) -> Result<Vec<RoleRecord>> {
        self.records("SELECT record FROM roles ORDER BY id", &[])
    }
    fn role_order(&self) -> Result<Vec<u64>> {
        Ok(self.meta(META_ROLE_ORDER)?.unwrap_or_default())
    }
    fn has_admin(&self) -> Result<bool> {
        let Some(admin) = self.meta::<u64>(META_ADMIN_ROLE)? else {
            return Ok(false);
        };
        self.db.run(async |c| {
            let r = row(
                &*c,
                "SELECT EXISTS (SELECT 1 FROM users \
                 WHERE record->'role_ids' @> jsonb_build_array($1::bigint))",
                &[&big(admin)],
            )
            .await?;
            Ok(r.is_some_and(|r| r.try_get::<_, bool>(0).unwrap_or(false)))
        })
    }
    fn ensure_admin_role(&self) -> Result<RoleRecord> {
        let fresh = RoleRecord {
            id: self.next_id(),
            name: ADMIN_ROLE_NAME.into(),
            permissions: PermissionSet::ALL_GRANTED,
        };
        self.db.run(async |c| {
            let t = c.transaction().await?;
            // Nodes starting together create one Admin role between them.
            exec(&t, "SELECT pg_advisory_xact_lock(2)", &[]).await?;
            let admin = row(
                &t,
                "SELECT value FROM meta WHERE key = $1",
                &[&META_ADMIN_ROLE],
            )
            .await?
            .map(|r| record::<u64>(&r, 0))
            .transpose()?;
            if let Some(admin) = admin {
                if let Some(r) =
                    row(&t, "SELECT record FROM roles WHERE id = $1", &[&big(admin)]).await?
                {
                    return record(&r, 0);
                }
            }
            let mut order: Vec<u64> = match row(
                &t,
                "SELECT value FROM meta WHERE key = $1",
                &[&META_ROLE_ORDER],
            )
            .await?
            {
                Some(r) => record(&r, 0)?,
                None => Vec::new(),
            };
            order.retain(|id| *id != fresh.id);
            order.insert(0, fresh.id);
            exec(
                &t,
                "INSERT INTO roles (id, record) VALUES ($1, $2)",
                &[&big(fresh.id), &Json(&fresh)],
            )
            .await?;
            exec(&t, UPSERT_META, &[&META_ROLE_ORDER, &Json(&order)]).await?;
            exec(&t, UPSERT_META, &[&META_ADMIN_ROLE, &Json(fresh.id)]).await?;
            t.commit().await?;
            Ok(fresh.clone())
        })
    }
    fn role(&self, id: u64) -> Result<Option<RoleRecord>> {
        self.record("SELECT record FROM roles WHERE id = $1", &[&big(id)])
    }
    fn insert_role(&self, role: &RoleRecord, order: &[u64]) -> Result<()> {
        self.db.run(async |c| {
            let t = c.transaction().await?;
            exec(
                &t,
                "INSERT INTO roles (id, record) VALUES ($1, $2)",
                &[&big(role.id), &Json(role)],
            )
            .await?;
            exec(&t, UPSERT_META, &[&META_ROLE_ORDER, &Json(order)]).await?;
            t.commit().await?;
            Ok(())
        })
    }
    fn put_role(&self, role: &RoleRecord) -> Result<()> {
        self.db.run(async |c| {
            exec(
                &*c,
                "INSERT INTO roles (id, record) VALUES ($1, $2) \
                 ON CONFLICT (id) DO UPDATE SET record = excluded.record",
                &[&big(role.id), &Json(role)],
            )
            .await?;
            Ok(())
        })
    }
    fn set_role_order(&self, order: &[u64]) -> Result<()> {
        self.set_meta(META_ROLE_ORDER, &order)
    }
    fn delete_role(&self, id: u64) -> Result<Vec<UserRecord>> {
        self.db.run(async |c| {
            let t = c.transaction().await?;
            exec(&t, "DELETE FROM roles WHERE id = $1", &[&big(id)]).await?;
            let mut order: Vec<u64> = match row(
                &t,
                "SELECT value FROM meta WHERE key = $1 FOR UPDATE",
                &[&META_ROLE_ORDER],
            )
            .await?
            {
                Some(r) => record(&r, 0)?,
                None => Vec::new(),
            };
            order.retain(|r| *r != id);
            exec(&t, UPSERT_META, &[&META_ROLE_ORDER, &Json(&order)]).await?;
            let mut holders = Vec::new();
            for r in rows(
                &t,
                "SELECT record FROM users WHERE record->'role_ids' @> jsonb_build_array($1::bigint) \
                 ORDER BY id FOR UPDATE",
                &[&big(id)],
            )
            .await?
            {
                let mut user: UserRecord = record(&r, 0)?;
                user.role_ids.retain(|r| *r != id);
                exec(
                    &t,
                    "UPDATE users SET record = $2 WHERE id = $1",
                    &[&big(user.id), &Json(&user)],
                )
                .await?;
                holders.push(user);
            }
            for r in rows(
                &t,
                "SELECT record FROM channels WHERE record->'overrides'->'roles' ? $1 FOR UPDATE",
                &[&id.to_string()],
            )
            .await?
            {
                let mut channel: ChannelRecord = record(&r, 0)?;
                channel.overrides.roles.remove(&id);
                exec(
                    &t,
                    "UPDATE channels SET record = $2 WHERE id = $1",
                    &[&big(channel.id), &Json(&channel)],
                )
                .await?;
            }
            t.commit().await?;
            Ok(holders)
        })
    }
    fn grant_role(&self, user_id: u64, role_id: u64) -> Result<Option<UserRecord>> {
        self.update_user(user_id, &|user| {
            if !user.role_ids.contains(&role_id) {
                user.role_ids.push(role_id);
            }
        })
    }
    fn insert_user(&self, user: &UserRecord) -> Result<(), InsertUserError> {
        let inserted = self.db.run(async |c| {
            exec(
                &*c,
                "INSERT INTO users (id, name_lower, email_lower, record) VALUES ($1, $2, $3, $4)",
                &[
                    &big(user.id),
                    &lower(&user.username),
                    &email_key(user),
                    &Json(user),
                ],
            )
            .await?;
            Ok(())
        });
        match inserted {
            Err(e) if is_unique_violation(&e) => Err(InsertUserError::NameTaken),
            other => Ok(other?),
        }
    }
    fn user(&self, id: u64) -> Result<Option<UserRecord>> {
        self.record("SELECT record FROM users WHERE id = $1", &[&big(id)])
    }
    fn user_by_name(&self, name: &str) -> Result<Option<UserRecord>> {
        self.record(
            "SELECT record FROM users WHERE name_lower = $1",
            &[&lower(name)],
        )
    }
    fn users_by_name_prefix(
        &self,
        prefix: &str,
        skip: usize,
        limit: usize,
    ) -> Result<Vec<UserRecord>> {
        let pattern = format!("{}%", like_escaped(&lower(prefix)));
        self.records(
            "SELECT record FROM users WHERE name_lower LIKE $1 \
                 ORDER BY name_lower COLLATE \"C\" OFFSET $2 LIMIT $3",
            &[&pattern, &(skip as i64), &(limit as i64)],
        )
    }
    fn users_by_name_part(&self, part: &str, skip: usize, limit: usize) -> Result<Vec<UserRecord>> {
        let part = lower(part);
        if part.chars().count() < 3 || limit == 0 {
            return Ok(Vec::new());
        }
        let escaped = like_escaped(&part);
        let inside = format!("%{escaped}%");
        let start = format!("{escaped}%");
        self.records(
            "SELECT record FROM users WHERE name_lower LIKE $1 AND name_lower NOT LIKE $2 \
                 ORDER BY name_lower COLLATE \"C\" OFFSET $3 LIMIT $4",
            &[&inside, &start, &(skip as i64), &(limit as i64)],
        )
    }
    fn users_by_email(&self, email: &str) -> Result<Vec<UserRecord>> {
        let wanted = crate::store::user_index::email_key(email);
        let mut users: Vec<UserRecord> = self.records(
            "SELECT record FROM users WHERE email_lower = $1 ORDER BY id",
            &[&wanted],
        )?;
        // Rows written before the key was ASCII-only may have been lowercased further.
        users.retain(|u| {
            u.email.as_deref().map(crate::store::user_index::email_key) == Some(wanted.clone())
        });
        Ok(users)
    }
    fn two_factor(&self, user: u64) -> Result<Option<TwoFactorRecord>> {
        self.record(
            "SELECT record FROM two_factor WHERE user_id = $1",
            &[&big(user)],
        )
    }
    fn update_two_factor(
        &self,
        user: u64,
        change: &dyn Fn(&mut Option<TwoFactorRecord>),
    ) -> Result<Option<TwoFactorRecord>> {
        self.db.run(async |c| {
            let t = c.transaction().await?;
            let mut current: Option<TwoFactorRecord> = row(
                &t,
                "SELECT record FROM two_factor WHERE user_id = $1 FOR UPDATE",
                &[&big(user)],
            )
            .await?
            .map(|r| record(&r, 0))
            .transpose()?;
            change(&mut current);
            match &current {
                Some(r) => {
                    exec(
                        &t,
                        "INSERT INTO two_factor (user_id, record) VALUES ($1, $2) \
                         ON CONFLICT (user_id) DO UPDATE SET record = excluded.record",
                        &[&big(user), &Json(r)],
                    )
                    .await?;
                }
                None => {
                    exec(
                        &t,
                        "DELETE FROM two_factor WHERE user_id = $1",
                        &[&big(user)],
                    )
                    .await?;
                }
            }
            t.commit().await?;
            Ok(current)
        })
    }
    fn insert_reset_token(&self, key: &[u8; 32], token: &ResetTokenRecord) -> Result<()> {
        self.db.run(async |c| {
            exec(
                &*c,
                "INSERT INTO reset_tokens (key, user_id, expires_ms, record) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (key) DO UPDATE SET user_id = excluded.user_id, \
                 expires_ms = excluded.expires_ms, record = excluded.record",
                &[
                    &key.as_slice(),
                    &big(token.user_id),
                    &big(token.expires_ms),
                    &Json(token),
                ],
            )
            .await?;
            Ok(())
        })
    }
    fn reset_token(&self, key: &[u8; 32]) -> Result<Option<ResetTokenRecord>> {
        self.record(
            "SELECT record FROM reset_tokens WHERE key = $1",
            &[&key.as_slice()],
        )
    }
    fn reset_tokens_of(&self, user_id: u64) -> Result<Vec<ResetTokenRecord>> {
        self.records(
            "SELECT record FROM reset_tokens WHERE user_id = $1 ORDER BY key",
            &[&big(user_id)],
        )
    }
    fn reset_password(
        &self,
        token_key: &[u8; 32],
        password_hash: &str,
        now_ms: u64,
    ) -> Result<Option<UserRecord>> {
        self.db.run(async |c| {
            let t = c.transaction().await?;
            // Taken in the transaction: two resets with one token cannot both succeed.
            let Some(r) = row(
                &t,
                "DELETE FROM reset_tokens WHERE key = $1 RETURNING record",
                &[&token_key.as_slice()],
            )
            .await?
            else {
                return Ok(None);
            };
            let token: ResetTokenRecord = record(&r, 0)?;
            if token.expires_ms <= now_ms {
                t.commit().await?;
                return Ok(None);
            }
            let user_id = big(token.user_id);
            exec(
                &t,
                "DELETE FROM reset_tokens WHERE user_id = $1",
                &[&user_id],
            )
            .await?;
            let Some(r) = row(
                &t,
                "SELECT record FROM users WHERE id = $1 FOR UPDATE",
                &[&user_id],
            )
            .await?
            else {
                t.commit().await?;
                return Ok(None);
            };
            let mut user: UserRecord = record(&r, 0)?;
            user.password_hash = password_hash.to_owned();
            exec(
                &t,
                "UPDATE users SET record = $2 WHERE id = $1",
                &[&user_id, &Json(&user)],
            )
            .await?;
            exec(&t, "DELETE FROM sessions WHERE user_id = $1", &[&user_id]).await?;
            t.commit().await?;
            Ok(Some(user))
        })
    }
    fn purge_expired_reset_tokens(&self, now_ms: u64) -> Result<usize> {
        self.db.run(async |c| {
            Ok(exec(
                &*c,
                "DELETE FROM reset_tokens WHERE expires_ms <= $1",
                &[&big(now_ms)],
            )
            .await? as usize)
        })
    }
    fn insert_direct_message(&self, message: &DirectMessageRecord) -> Result<()> {
        let (low, high) = (message.from.min(message.to), message.from.max(message.to));
        self.db.run(async |c| {
            // One statement: the message, both sides' conversation, the sender's read mark.
            exec(
                &*c,
                "WITH m AS (INSERT INTO direct_messages (id, low, high, record) \
                     VALUES ($1, $2, $3, $4)), \
                 c AS (INSERT INTO conversations (user_id, other, last_message) \
                     VALUES ($5, $6, $1), ($6, $5, $1) \
                     ON CONFLICT (user_id, other) DO UPDATE SET last_message = excluded.last_message) \
                 INSERT INTO direct_read (user_id, other, up_to) VALUES ($5, $6, $1) \
                     ON CONFLICT (user_id, other) DO UPDATE SET up_to = excluded.up_to",
                &[
                    &big(message.id),
                    &big(low),
                    &big(high),
                    &Json(message),
                    &big(message.from),
                    &big(message.to),
                ],
            )
            .await?;
            Ok(())
        })
    }
    fn direct_message(&self, id: u64) -> Result<Option<DirectMessageRecord>> {
        self.record(
            "SELECT record FROM direct_messages WHERE id = $1",
            &[&big(id)],
        )
    }
    fn update_direct_message(&self, message: &DirectMessageRecord) -> Result<bool> {
        self.db.run(async |c| {
            Ok(exec(
                &*c,
                "UPDATE direct_messages SET record = $2 WHERE id = $1",
                &[&big(message.id), &Json(message)],
            )
            .await?
                > 0)
        })
    }
    fn delete_direct_message(&self, message: &DirectMessageRecord) -> Result<bool> {
        self.db.run(async |c| {
            Ok(exec(
                &*c,
                "DELETE FROM direct_messages WHERE id = $1",
                &[&big(message.id)],
            )
            .await?
                > 0)
        })
    }
    fn direct_messages(
        &self,
        a: u64,
        b: u64,
        after: u64,
        before: u64,
        limit: usize,
    ) -> Result<Vec<DirectMessageRecord>> {
        self.records(
            "SELECT record FROM direct_messages WHERE low = $1 AND high = $2 \
                 AND id > $3 AND id < $4 ORDER BY id DESC LIMIT $5",
            &[
                &big(a.min(b)),
                &big(a.max(b)),
                &big(after),
                &big(before),
                &(limit as i64),
            ],
        )
    }
    fn conversations(&self, user: u64) -> Result<Vec<Conversation>> {
        self.db.run(async |c| {
            rows(
                &*c,
                "SELECT c.other, c.last_message, COALESCE(r.up_to, 0) FROM conversations c \
                 LEFT JOIN direct_read r ON r.user_id = c.user_id AND r.other = c.other \
                 WHERE c.user_id = $1 ORDER BY c.last_message DESC",
                &[&big(user)],
            )
            .await?
            .iter()
            .map(|r| {
                Ok(Conversation {
                    other: id(r, 0)?,
                    last_message: id(r, 1)?,
                    read_up_to: id(r, 2)?,
                })
            })
            .collect()
        })
    }
    fn mark_direct_read(&self, user: u64, other: u64, up_to: u64) -> Result<u64> {
        self.db.run(async |c| {
            let r = row(
                &*c,
                "INSERT INTO direct_read (user_id, other, up_to) VALUES ($1, $2, $3) \
                 ON CONFLICT (user_id, other) \
                 DO UPDATE SET up_to = GREATEST(direct_read.up_to, excluded.up_to) \
                 RETURNING up_to",
                &[&big(user), &big(other), &big(up_to)],
            )
            .await?;
            r.map_or(Ok(up_to), |r| id(&r, 0))
        })
    }
    fn dm_settings(&self, user: u64) -> Result<DmSettings> {
        self.db.run(async |c| {
            Ok(row(
                &*c,
                "SELECT record FROM dm_settings WHERE user_id = $1",
                &[&big(user)],
            )
            .await?
            .map(|r| record(&r, 0))
            .transpose()?
            .unwrap_or_default())
        })
    }
    fn set_dm_settings(&self, user: u64, settings: &DmSettings) -> Result<()> {
        self.db.run(async |c| {
            exec(
                &*c,
                "INSERT INTO dm_settings (user_id, record) VALUES ($1, $2) \
                 ON CONFLICT (user_id) DO UPDATE SET record = excluded.record",
                &[&big(user), &Json(settings)],
            )
            .await?;
            Ok(())
        })
    }
    fn user_by_id_or_name(&self, user: &str) -> Result<Option<UserRecord>> {
        if let Ok(id) = user.parse::<u64>() {
            if let Some(found) = self.user(id)? {
                return Ok(Some(found));
            }
        }
        self.user_by_name(user)
    }
    fn users(&self) -> Result<Vec<UserRecord>> {
        self.records("SELECT record FROM users ORDER BY id", &[])
    }
    fn update_user(&self, id: u64, change: &dyn Fn(&mut UserRecord)) -> Result<Option<UserRecord>> {
        self.db.run(async |c| {
            let t = c.transaction().await?;
            let Some(r) = row(
                &t,
                "SELECT record FROM users WHERE id = $1 FOR UPDATE",
                &[&big(id)],
            )
            .await?
            else {
                return Ok(None);
            };
            let mut user: UserRecord = record(&r, 0)?;
            change(&mut user);
            exec(
                &t,
                "UPDATE users SET record = $2, email_lower = $3 WHERE id = $1",
                &[&big(id), &Json(&user), &email_key(&user)],
            )
            .await?;
            t.commit().await?;
            Ok(Some(user))
        })
    }
    fn delete_user(&self, id: u64) -> Result<Option<UserRecord>> {
        let deleted = self.db.run(async |c| {
            let t = c.transaction().await?;
            let Some(r) = row(
                &t,
                "DELETE FROM users WHERE id = $1 RETURNING record",
                &[&big(id)],
            )
            .await?
            else {
                return Ok(None);
            };
            let user: UserRecord = record(&r, 0)?;
            exec(&t, "DELETE FROM two_factor WHERE user_id = $1", &[&big(id)]).await?;
            exec(&t, "DELETE FROM sessions WHERE user_id = $1", &[&big(id)]).await?;
            // The keys stay: a bot using one hears its license was revoked.
            exec(&t, "DELETE FROM licenses WHERE owner = $1", &[&big(id)]).await?;
            exec(
                &t,
                "INSERT INTO purges (kind, id) VALUES ('user', $1) ON CONFLICT DO NOTHING",
                &[&big(id)],
            )
            .await?;
            t.commit().await?;
            Ok(Some(user))
        })?;
        if deleted.is_some() {
            self.purge_user(id)?;
        }
        Ok(deleted)
    }
    fn pending_user_purges(&self) -> Result<Vec<u64>> {
        self.db.run(async |c| {
            rows(
                &*c,
                "SELECT id FROM purges WHERE kind = 'user' ORDER BY id",
                &[],
            )
            .await?
            .iter()
            .map(|r| id(r, 0))
            .collect()
        })
    }
    fn purge_user(&self, id: u64) -> Result<()> {
        self.db.run(async |c| {
            let t = c.transaction().await?;
            exec(&t, "DELETE FROM mentions WHERE user_id = $1", &[&big(id)]).await?;
            exec(&t, "DELETE FROM read_state WHERE user_id = $1", &[&big(id)]).await?;
            exec(
                &t,
                "DELETE FROM purges WHERE kind = 'user' AND id = $1",
                &[&big(id)],
            )
            .await?;
            t.commit().await?;
            Ok(())
        })
    }
    fn insert_session(&self, key: &SessionKey, session: &SessionRecord) -> Result<()> {
        self.db.run(async |c| {
            exec(
                &*c,
                "INSERT INTO sessions (key, user_id, handle, expires_ms, record) \
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT (key) DO UPDATE SET \
                 user_id = excluded.user_id, handle = excluded.handle, \
                 expires_ms = excluded.expires_ms, record = excluded.record",
                &[
                    &key.as_slice(),
                    &big(session.user_id),
                    &big(session.handle),
                    &big(session.expires_ms),
                    &Json(session),
                ],
            )
            .await?;
            Ok(())
        })
    }
    fn update_session(
        &self,
        key: &SessionKey,
        change: &dyn Fn(&mut SessionRecord),
    ) -> Result<Option<SessionRecord>> {
        self.db.run(async |c| {
            let t = c.transaction().await?;
            let Some(r) = row(
                &t,
                "SELECT record FROM sessions WHERE key = $1 FOR UPDATE",
                &[&key.as_slice()],
            )
            .await?
            else {
                return Ok(None);
            };
            let mut session: SessionRecord = record(&r, 0)?;
            change(&mut session);
            exec(
                &t,
                "UPDATE sessions SET record = $2, expires_ms = $3 WHERE key = $1",
                &[&key.as_slice(), &Json(&session), &big(session.expires_ms)],
            )
            .await?;
            t.commit().await?;
            Ok(Some(session))
        })
    }
    fn session(&self, key: &SessionKey) -> Result<Option<SessionRecord>> {
        self.record(
            "SELECT record FROM sessions WHERE key = $1",
            &[&key.as_slice()],
        )
    }
    fn sessions_of(&self, user_id: u64) -> Result<Vec<(SessionKey, SessionRecord)>> {
        self.db.run(async |c| {
            let mut out = Vec::new();
            for r in rows(
                &*c,
                "SELECT key, record FROM sessions WHERE user_id = $1 ORDER BY handle",
                &[&big(user_id)],
            )
            .await?
            {
                let key: Vec<u8> = r.try_get(0)?;
                if let Ok(key) = SessionKey::try_from(key.as_slice()) {
                    out.push((key, record(&r, 1)?));
                }
            }
            Ok(out)
        })
    }
    fn delete_session(&self, key: &SessionKey) -> Result<bool> {
        self.db.run(async |c| {
            Ok(exec(
                &*c,
                "DELETE FROM sessions WHERE key = $1",
                &[&key.as_slice()],
            )
            .await?
                > 0)
        })
    }
    fn purge_expired_sessions(&self, now_ms: u64) -> Result<usize> {
        self.db.run(async |c| {
            Ok(exec(
                &*c,
                "DELETE FROM sessions WHERE expires_ms <= $1",
                &[&big(now_ms)],
            )
            .await? as usize)
        })
    }
    fn channels(&self) -> Result<Vec<ChannelRecord>> {
        self.records("SELECT record FROM channels ORDER BY id", &[])
    }
    fn channel(&self, id: u64) -> Result<Option<ChannelRecord>> {
        self.record("SELECT record FROM channels WHERE id = $1", &[&big(id)])
    }
    fn insert_channel(&self, channel: &ChannelRecord) -> Result<(), ChannelNameError> {
        let inserted = self.db.run(async |c| {
            exec(
                &*c,
                "INSERT INTO channels (id, name_lower, record) VALUES ($1, $2, $3)",
                &[&big(channel.id), &lower(&channel.name), &Json(channel)],
            )
            .await?;
            Ok(())
        });
        match inserted {
            Err(e) if is_unique_violation(&e) => Err(ChannelNameError::Taken),
            other => Ok(other?),
        }
    }
    fn rename_channel(
        &self,
        id: u64,
        name: &str,
    ) -> Result<Option<ChannelRecord>, ChannelNameError> {
        let renamed = self.db.run(async |c| {
            let t = c.transaction().await?;
            let Some(r) = row(
                &t,
                "SELECT record FROM channels WHERE id = $1 FOR UPDATE",
                &[&big(id)],
            )
            .await?
            else {
                return Ok(None);
            };
            let mut channel: ChannelRecord = record(&r, 0)?;
            channel.name = name.to_owned();
            exec(
                &t,
                "UPDATE channels SET record = $2, name_lower = $3 WHERE id = $1",
                &[&big(id), &Json(&channel), &lower(name)],
            )
            .await?;
            t.commit().await?;
            Ok(Some(channel))
        });
        match renamed {
            Err(e) if is_unique_violation(&e) => Err(ChannelNameError::Taken),
            other => Ok(other?),
        }
    }
    fn set_channel_overrides(
        &self,
        id: u64,
        overrides: &ChannelOverrides,
    ) -> Result<Option<ChannelRecord>> {
        self.db.run(async |c| {
            let t = c.transaction().await?;
            let Some(r) = row(
                &t,
                "SELECT record FROM channels WHERE id = $1 FOR UPDATE",
                &[&big(id)],
            )
            .await?
            else {
                return Ok(None);
            };
            let mut channel: ChannelRecord = record(&r, 0)?;
            channel.overrides = overrides.clone();
            exec(
                &t,
                "UPDATE channels SET record = $2 WHERE id = $1",
                &[&big(id), &Json(&channel)],
            )
            .await?;
            t.commit().await?;
            Ok(Some(channel))
        })
    }
    fn delete_channel(&self, id: u64) -> Result<Option<ChannelRecord>> {
        self.db.run(async |c| {
            let t = c.transaction().await?;
            let Some(r) = row(
                &t,
                "DELETE FROM channels WHERE id = $1 RETURNING record",
                &[&big(id)],
            )
            .await?
            else {
                return Ok(None);
            };
            exec(
                &t,
                "INSERT INTO purges (kind, id) VALUES ('channel', $1) ON CONFLICT DO NOTHING",
                &[&big(id)],
            )
            .await?;
            t.commit().await?;
            Ok(Some(record(&r, 0)?))
        })
    }
    fn pending_purges(&self) -> Result<Vec<u64>> {
        self.db.run(async |c| {
            rows(
                &*c,
                "SELECT id FROM purges WHERE kind = 'channel' ORDER BY id",
                &[],
            )
            .await?
            .iter()
            .map(|r| id(r, 0))
            .collect()
        })
    }
    fn purge_channel(&self, id: u64) -> Result<PurgeStats> {
        self.db.run(async |c| {
            let t = c.transaction().await?;
            let channel = big(id);
            let pins = row(
                &t,
                "SELECT count(*) FROM messages WHERE channel_id = $1 AND pinned",
                &[&channel],
            )
            .await?
            .map_or(Ok(0), |r| r.try_get::<_, i64>(0))?;
            let mentions = exec(
                &t,
                "DELETE FROM mentions WHERE channel_id = $1",
                &[&channel],
            )
            .await?;
            let messages = exec(
                &t,
                "DELETE FROM messages WHERE channel_id = $1",
                &[&channel],
            )
            .await?;
            let read_states = exec(
                &t,
                "DELETE FROM read_state WHERE channel_id = $1",
                &[&channel],
            )
            .await?;
            exec(
                &t,
                "DELETE FROM purges WHERE kind = 'channel' AND id = $1",
                &[&channel],
            )
            .await?;
            t.commit().await?;
            Ok(PurgeStats {
                messages: messages as usize,
                mentions: mentions as usize,
                pins: pins as usize,
                read_states: read_states as usize,
            })
        })
    }
    fn insert_message(&self, message: &MessageRecord) -> Result<bool> {
        let mentions = ids_param(&message.mentions);
        let author = message.author.as_ref().map(|a| big(a.id));
        self.db.run(async |c| {
            // One statement, so one round trip: the channel is locked against a concurrent
            // delete (whose purge then sees the message), the message stored with its
            // mentions, and the author's read mark moved.
            let r = row(
                &*c,
                "WITH ch AS (SELECT id FROM channels WHERE id = $2 FOR SHARE), \
                 ins AS (INSERT INTO messages (id, channel_id, pinned, record) \
                     SELECT $1, $2, $3, $4 FROM ch RETURNING id), \
                 men AS (INSERT INTO mentions (user_id, message_id, channel_id) \
                     SELECT u, $1, $2 FROM unnest($5::bigint[]) AS u, ch), \
                 rd AS (INSERT INTO read_state (channel_id, user_id, up_to) \
                     SELECT $2, $6, $1 FROM ch WHERE $6::bigint IS NOT NULL \
                     ON CONFLICT (channel_id, user_id) \
                     DO UPDATE SET up_to = GREATEST(read_state.up_to, excluded.up_to)) \
                 SELECT count(*) FROM ins",
                &[
                    &big(message.id),
                    &big(message.channel_id),
                    &message.pinned,
                    &Json(message),
                    &mentions,
                    &author,
                ],
            )
            .await?;
            Ok(r.is_some_and(|r| r.try_get::<_, i64>(0).unwrap_or(0) > 0))
        })
    }
    fn repair_message_index(&self, _window: usize) -> Result<usize> {
        // A message and its index are one row here: nothing can dangle.
        Ok(0)
    }
    fn message_channel(&self, id: u64) -> Result<Option<u64>> {
        self.db.run(async |c| {
            row(
                &*c,
                "SELECT channel_id FROM messages WHERE id = $1",
                &[&big(id)],
            )
            .await?
            .map(|r| super::id(&r, 0))
            .transpose()
        })
    }
    fn message(&self, id: u64) -> Result<Option<MessageRecord>> {
        self.record("SELECT record FROM messages WHERE id = $1", &[&big(id)])
    }
    fn messages_after(&self, after: u64, limit: usize) -> Result<Vec<MessageRecord>> {
        self.records(
            "SELECT record FROM messages WHERE id > $1 ORDER BY id LIMIT $2",
            &[&big(after), &(limit as i64)],
        )
    }
    fn direct_messages_after(&self, after: u64, limit: usize) -> Result<Vec<DirectMessageRecord>> {
        self.records(
            "SELECT record FROM direct_messages WHERE id > $1 ORDER BY id LIMIT $2",
            &[&big(after), &(limit as i64)],
        )
    }
    fn message_in(&self, channel: u64, id: u64) -> Result<Option<MessageRecord>> {
        self.record(
            "SELECT record FROM messages WHERE channel_id = $1 AND id = $2",
            &[&big(channel), &big(id)],
        )
    }
    fn messages(
        &self,
        channel: u64,
        before: Option<u64>,
        after: Option<u64>,
        limit: usize,
    ) -> Result<Vec<MessageRecord>> {
        if after == Some(u64::MAX) || before == Some(0) {
            return Ok(Vec::new());
        }
        let low = big(after.unwrap_or(0));
        let high = big(before.unwrap_or(u64::MAX));
        let limit = limit as i64;
        let mut found: Vec<MessageRecord> = self.db.run(async |c| {
            let sql = if after.is_some() {
                "SELECT record FROM messages WHERE channel_id = $1 AND id > $2 AND id < $3 \
                 ORDER BY id LIMIT $4"
            } else {
                "SELECT record FROM messages WHERE channel_id = $1 AND id >= $2 AND id < $3 \
                 ORDER BY id DESC LIMIT $4"
            };
            rows(&*c, sql, &[&big(channel), &low, &high, &limit])
                .await?
                .iter()
                .map(|r| record(r, 0))
                .collect::<Result<Vec<_>>>()
        })?;
        if after.is_none() {
            found.reverse();
        }
        Ok(found)
    }
    fn edit_message(
        &self,
        id: u64,
        text: &str,
        new_mentions: &[u64],
        edited_ms: u64,
    ) -> Result<Option<(MessageRecord, MessageRecord)>> {
        self.db.run(async |c| {
            let t = c.transaction().await?;
            let Some(r) = row(
                &t,
                "SELECT record FROM messages WHERE id = $1 FOR UPDATE",
                &[&big(id)],
            )
            .await?
            else {
                return Ok(None);
            };
            let old: MessageRecord = record(&r, 0)?;
            let mut new = old.clone();
            new.text = text.to_owned();
            new.mentions = new_mentions.to_vec();
            new.edited_ms = Some(edited_ms);
            let removed: Vec<i64> = old
                .mentions
                .iter()
                .filter(|u| !new.mentions.contains(u))
                .map(|u| big(*u))
                .collect();
            let added: Vec<i64> = new
                .mentions
                .iter()
                .filter(|u| !old.mentions.contains(u))
                .map(|u| big(*u))
                .collect();
            exec(
                &t,
                "DELETE FROM mentions WHERE message_id = $1 AND user_id = ANY($2)",
                &[&big(id), &removed],
            )
            .await?;
            exec(
                &t,
                "INSERT INTO mentions (user_id, message_id, channel_id) \
                 SELECT u, $1, $2 FROM unnest($3::bigint[]) AS u ON CONFLICT DO NOTHING",
                &[&big(id), &big(old.channel_id), &added],
            )
            .await?;
            exec(
                &t,
                "UPDATE messages SET record = $2 WHERE id = $1",
                &[&big(id), &Json(&new)],
            )
            .await?;
            t.commit().await?;
            Ok(Some((old, new)))
        })
    }
    fn delete_message(&self, id: u64) -> Result<Option<MessageRecord>> {
        self.db.run(async |c| {
            let t = c.transaction().await?;
            let Some(r) = row(
                &t,
                "DELETE FROM messages WHERE id = $1 RETURNING record",
                &[&big(id)],
            )
            .await?
            else {
                return Ok(None);
            };
            exec(
                &t,
                "DELETE FROM mentions WHERE message_id = $1",
                &[&big(id)],
            )
            .await?;
            t.commit().await?;
            Ok(Some(record(&r, 0)?))
        })
    }
    fn set_pinned(&self, channel: u64, id: u64, pinned: bool) -> Result<PinChange> {
        self.db.run(async |c| {
            let t = c.transaction().await?;
            let Some(r) = row(
                &t,
                "SELECT record FROM messages WHERE channel_id = $1 AND id = $2 FOR UPDATE",
                &[&big(channel), &big(id)],
            )
            .await?
            else {
                return Ok(PinChange::NotFound);
            };
            let mut message: MessageRecord = record(&r, 0)?;
            if message.pinned == pinned {
                return Ok(PinChange::Unchanged);
            }
            message.pinned = pinned;
            exec(
                &t,
                "UPDATE messages SET record = $2, pinned = $3 WHERE id = $1",
                &[&big(id), &Json(&message), &pinned],
            )
            .await?;
            t.commit().await?;
            Ok(PinChange::Changed(message))
        })
    }
    fn pins(&self, channel: u64) -> Result<Vec<MessageRecord>> {
        self.records(
            "SELECT record FROM messages WHERE channel_id = $1 AND pinned ORDER BY id",
            &[&big(channel)],
        )
    }
    fn mentions_of(&self, user: u64) -> Box<dyn Iterator<Item = Result<(u64, u64)>> + '_> {
        Box::new(MentionPages {
            db: self.db.clone(),
            user: big(user),
            before: i64::MAX,
            page: VecDeque::new(),
            done: false,
        })
    }
    fn mark_read(&self, channel: u64, user: u64, up_to: u64) -> Result<()> {
        self.db.run(async |c| {
            exec(
                &*c,
                "INSERT INTO read_state (channel_id, user_id, up_to) VALUES ($1, $2, $3) \
                 ON CONFLICT (channel_id, user_id) \
                 DO UPDATE SET up_to = GREATEST(read_state.up_to, excluded.up_to)",
                &[&big(channel), &big(user), &big(up_to)],
            )
            .await?;
            Ok(())
        })
    }
    fn latest_message_id(&self, channel: u64) -> Result<Option<u64>> {
        self.db.run(async |c| {
            let r = row(
                &*c,
                "SELECT max(id) FROM messages WHERE channel_id = $1",
                &[&big(channel)],
            )
            .await?;
            Ok(
                r.and_then(|r| r.try_get::<_, Option<i64>>(0).ok().flatten())
                    .map(|v| v as u64),
            )
        })
    }
    fn unread(&self, channel: u64, user: u64, cap: usize) -> Result<(usize, Option<u64>)> {
        self.db.run(async |c| {
            let r = row(
                &*c,
                "SELECT count(*), min(id) FROM (SELECT id FROM messages WHERE channel_id = $1 \
                 AND id > COALESCE((SELECT up_to FROM read_state \
                     WHERE channel_id = $1 AND user_id = $2), 0) \
                 ORDER BY id LIMIT $3) AS unread",
                &[&big(channel), &big(user), &(cap as i64)],
            )
            .await?;
            let Some(r) = r else {
                return Ok((0, None));
            };
            let count: i64 = r.try_get(0)?;
            let oldest: Option<i64> = r.try_get(1)?;
            Ok((count as usize, oldest.map(|v| v as u64)))
        })
    }
    fn unread_many(
        &self,
        channels: &[u64],
        user: u64,
        cap: usize,
    ) -> Result<Vec<(usize, Option<u64>)>> {
        let ids: Vec<i64> = channels.iter().map(|&c| big(c)).collect();
        let found = self.db.run(async |c| {
            rows(
                &*c,
                "SELECT ch.id, u.n, u.oldest FROM unnest($1::bigint[]) AS ch(id) \
                 CROSS JOIN LATERAL (SELECT count(*) AS n, min(m.id) AS oldest FROM \
                   (SELECT id FROM messages WHERE channel_id = ch.id \
                    AND id > COALESCE((SELECT up_to FROM read_state \
                        WHERE channel_id = ch.id AND user_id = $2), 0) \
                    ORDER BY id LIMIT $3) AS m) AS u",
                &[&ids, &big(user), &(cap as i64)],
            )
            .await
        })?;
        let mut by_channel = std::collections::HashMap::with_capacity(found.len());
        for r in &found {
            let count: i64 = r.try_get(1)?;
            let oldest: Option<i64> = r.try_get(2)?;
            by_channel.insert(id(r, 0)?, (count as usize, oldest.map(|v| v as u64)));
        }
        Ok(channels
            .iter()
            .map(|c| by_channel.get(c).copied().unwrap_or((0, None)))
            .collect())
    }
    fn emotes(&self) -> Result<Vec<EmoteRecord>> {
        self.records(
            "SELECT record FROM emotes ORDER BY shortcode COLLATE \"C\"",
            &[],
        )
    }
    fn emote(&self, shortcode: &str) -> Result<Option<EmoteRecord>> {
        self.record(
            "SELECT record FROM emotes WHERE shortcode = $1",
            &[&shortcode],
        )
    }
    fn insert_emote(&self, emote: &EmoteRecord) -> Result<bool> {
        self.db.run(async |c| {
            Ok(exec(
                &*c,
                "INSERT INTO emotes (shortcode, record) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                &[&emote.shortcode, &Json(emote)],
            )
            .await?
                > 0)
        })
    }
    fn delete_emote(&self, shortcode: &str) -> Result<bool> {
        self.db.run(async |c| {
            Ok(exec(
                &*c,
                "DELETE FROM emotes WHERE shortcode = $1",
                &[&shortcode],
            )
            .await?
                > 0)
        })
    }
    fn insert_license(&self, key: &LicenseKeyHash, license: &LicenseRecord) -> Result<()> {
        self.db.run(async |c| {
            let t = c.transaction().await?;
            exec(
                &t,
                "INSERT INTO licenses (id, owner, record) VALUES ($1, $2, $3) \
                 ON CONFLICT (id) DO UPDATE SET owner = excluded.owner, record = excluded.record",
                &[&big(license.id), &big(license.owner), &Json(license)],
            )
            .await?;
            exec(
                &t,
                "INSERT INTO license_keys (key, license_id) VALUES ($1, $2) \
                 ON CONFLICT (key) DO UPDATE SET license_id = excluded.license_id",
                &[&key.as_slice(), &big(license.id)],
            )
            .await?;
            t.commit().await?;
            Ok(())
        })
    }
    fn license(&self, id: u64) -> Result<Option<LicenseRecord>> {
        self.record("SELECT record FROM licenses WHERE id = $1", &[&big(id)])
    }
    fn license_by_key(&self, key: &LicenseKeyHash) -> Result<KeyLookup> {
        self.db.run(async |c| {
            let r = row(
                &*c,
                "SELECT l.record FROM license_keys k LEFT JOIN licenses l ON l.id = k.license_id \
                 WHERE k.key = $1",
                &[&key.as_slice()],
            )
            .await?;
            Ok(match r {
                None => KeyLookup::Unknown,
                Some(r) => match r.try_get::<_, Option<Json<LicenseRecord>>>(0)? {
                    Some(license) => KeyLookup::Active(license.0),
                    None => KeyLookup::Revoked,
                },
            })
        })
    }
    fn licenses_of(&self, owner: u64) -> Result<Vec<LicenseRecord>> {
        self.records(
            "SELECT record FROM licenses WHERE owner = $1 ORDER BY id",
            &[&big(owner)],
        )
    }
    fn all_licenses(&self) -> Result<Vec<LicenseRecord>> {
        self.records("SELECT record FROM licenses ORDER BY id", &[])
    }
    fn update_license(
        &self,
        id: u64,
        change: &dyn Fn(&mut LicenseRecord),
    ) -> Result<Option<LicenseRecord>> {
        self.db.run(async |c| {
            let t = c.transaction().await?;
            let Some(r) = row(
                &t,
                "SELECT record FROM licenses WHERE id = $1 FOR UPDATE",
                &[&big(id)],
            )
            .await?
            else {
                return Ok(None);
            };
            let mut license: LicenseRecord = record(&r, 0)?;
            change(&mut license);
            exec(
                &t,
                "UPDATE licenses SET record = $2, owner = $3 WHERE id = $1",
                &[&big(id), &Json(&license), &big(license.owner)],
            )
            .await?;
            t.commit().await?;
            Ok(Some(license))
        })
    }
    fn revoke_license(&self, id: u64) -> Result<Option<LicenseRecord>> {
        self.record(
            "DELETE FROM licenses WHERE id = $1 RETURNING record",
            &[&big(id)],
        )
    }
    fn plugin_record(&self, name: &str) -> Result<Option<PluginRecord>> {
        self.record("SELECT record FROM plugins WHERE name = $1", &[&name])
    }
    fn set_plugin_record(&self, name: &str, plugin: &PluginRecord) -> Result<()> {
        self.db.run(async |c| {
            exec(
                &*c,
                "INSERT INTO plugins (name, record) VALUES ($1, $2) \
                 ON CONFLICT (name) DO UPDATE SET record = excluded.record",
                &[&name, &Json(plugin)],
            )
            .await?;
            Ok(())
        })
    }
    fn plugin_records(&self) -> Result<Vec<(String, PluginRecord)>> {
        self.db.run(async |c| {
            rows(
                &*c,
                "SELECT name, record FROM plugins ORDER BY name COLLATE \"C\"",
                &[],
            )
            .await?
            .iter()
            .map(|r| Ok((r.try_get(0)?, record(r, 1)?)))
            .collect()
        })
    }
    fn next_change_number(&self) -> Result<Option<u64>> {
        self.db.run(async |c| {
            let r = row(&*c, "SELECT nextval('permission_changes')", &[]).await?;
            r.map(|r| id(&r, 0)).transpose()
        })
    }
    fn chatbox_slot(
        &self,
        license: u64,
        now_ms: u64,
        interval_ms: u64,
        queue: u64,
    ) -> Result<Option<Slot>> {
        self.db.run(async |c| {
            let t = c.transaction().await?;
            exec(
                &t,
                "INSERT INTO chatbox_slots (license_id, next_free_ms) VALUES ($1, 0) \
                 ON CONFLICT DO NOTHING",
                &[&big(license)],
            )
            .await?;
            let next_free = row(
                &t,
                "SELECT next_free_ms FROM chatbox_slots WHERE license_id = $1 FOR UPDATE",
                &[&big(license)],
            )
            .await?
            .map_or(Ok(0), |r| id(&r, 0))?;
            let free_at = next_free.max(now_ms);
            let waiting = (free_at - now_ms).div_ceil(interval_ms.max(1));
            let slot = if free_at == now_ms {
                Slot::Now
            } else if waiting > queue {
                Slot::Full
            } else {
                Slot::At(free_at)
            };
            if slot != Slot::Full {
                exec(
                    &t,
                    "UPDATE chatbox_slots SET next_free_ms = $2 WHERE license_id = $1",
                    &[&big(license), &big(free_at + interval_ms)],
                )
                .await?;
            }
            t.commit().await?;
            Ok(Some(slot))
        })
    }
    fn last_change_number(&self) -> Result<Option<u64>> {
        self.db.run(async |c| {
            let r = row(
                &*c,
                "SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM permission_changes",
                &[],
            )
            .await?;
            Ok(Some(r.map(|r| id(&r, 0)).transpose()?.unwrap_or(0)))
        })
    }
    fn plugin_kv(&self, name: &str) -> Arc<dyn KvSpace> {
        Arc::new(PgKv {
            db: self.db.clone(),
            plugin: name.to_owned(),
        })
    }
}
