//! The PostgreSQL store as `Entity` records and back (`decentd export`, `decentd migrate`):
//! the same kinds, in the same order, as the sled store writes them.

use tokio_postgres::types::Json;

use super::{big, exec, id, record, row, rows, PgStore};
use crate::store::export::{base64, invalid, key32, unbase64};
use crate::store::*;

/// Messages written per statement on import.
const IMPORT_BATCH: usize = 1_000;
/// Messages read per query on export.
const EXPORT_PAGE: i64 = 5_000;

impl PgStore {
    /// Every record as entities, at one point in time (one repeatable-read transaction), in
    /// the order `import` takes them.
    pub fn export(&self, emit: &mut dyn FnMut(Entity) -> std::io::Result<()>) -> Result<()> {
        self.db.run(async |c| {
            let t = c
                .build_transaction()
                .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
                .read_only(true)
                .start()
                .await?;
            let meta = async |key: &str| -> Result<Option<serde_json::Value>> {
                row(&t, "SELECT value FROM meta WHERE key = $1", &[&key])
                    .await?
                    .map(|r| record(&r, 0))
                    .transpose()
            };
            emit(Entity::Server {
                settings: decode(meta("settings").await?)?,
                read_access: decode(meta("read_access").await?)?,
                role_order: decode(meta("role_order").await?)?,
                admin_role: decode(meta("admin_role").await?)?,
            })?;
            for r in rows(&t, "SELECT record FROM roles ORDER BY id", &[]).await? {
                emit(Entity::Role(record(&r, 0)?))?;
            }
            for r in rows(&t, "SELECT record FROM users ORDER BY id", &[]).await? {
                emit(Entity::User(record(&r, 0)?))?;
            }
            for r in rows(
                &t,
                "SELECT id FROM purges WHERE kind = 'user' ORDER BY id",
                &[],
            )
            .await?
            {
                emit(Entity::UserPurge { user: id(&r, 0)? })?;
            }
            for r in rows(&t, "SELECT key, record FROM sessions ORDER BY key", &[]).await? {
                emit(Entity::Session {
                    key: hex::encode(r.try_get::<_, Vec<u8>>(0)?),
                    session: record(&r, 1)?,
                })?;
            }
            for r in rows(
                &t,
                "SELECT user_id, record FROM two_factor ORDER BY user_id",
                &[],
            )
            .await?
            {
                emit(Entity::TwoFactor {
                    user: id(&r, 0)?,
                    record: record(&r, 1)?,
                })?;
            }
            for r in rows(&t, "SELECT key, record FROM reset_tokens ORDER BY key", &[]).await? {
                emit(Entity::ResetToken {
                    key: hex::encode(r.try_get::<_, Vec<u8>>(0)?),
                    token: record(&r, 1)?,
                })?;
            }
            for r in rows(&t, "SELECT record FROM channels ORDER BY id", &[]).await? {
                emit(Entity::Channel(record(&r, 0)?))?;
            }
            for r in rows(
                &t,
                "SELECT id FROM purges WHERE kind = 'channel' ORDER BY id",
                &[],
            )
            .await?
            {
                emit(Entity::ChannelPurge {
                    channel: id(&r, 0)?,
                })?;
            }
            let (mut channel, mut after) = (-1i64, -1i64);
            loop {
                let page = rows(
                    &t,
                    "SELECT channel_id, id, record FROM messages WHERE (channel_id, id) > ($1, $2) \
                     ORDER BY channel_id, id LIMIT $3",
                    &[&channel, &after, &EXPORT_PAGE],
                )
                .await?;
                for r in &page {
                    emit(Entity::Message(record(r, 2)?))?;
                }
                match page.last() {
                    Some(last) => (channel, after) = (last.try_get(0)?, last.try_get(1)?),
                    None => break,
                }
            }
            for r in rows(
                &t,
                "SELECT channel_id, user_id, up_to FROM read_state ORDER BY channel_id, user_id",
                &[],
            )
            .await?
            {
                emit(Entity::Read {
                    channel: id(&r, 0)?,
                    user: id(&r, 1)?,
                    up_to: id(&r, 2)?,
                })?;
            }
            for r in rows(
                &t,
                "SELECT record FROM emotes ORDER BY shortcode COLLATE \"C\"",
                &[],
            )
            .await?
            {
                emit(Entity::Emote(record(&r, 0)?))?;
            }
            for r in rows(&t, "SELECT record FROM licenses ORDER BY id", &[]).await? {
                emit(Entity::License(record(&r, 0)?))?;
            }
            for r in rows(
                &t,
                "SELECT key, license_id FROM license_keys ORDER BY key",
                &[],
            )
            .await?
            {
                emit(Entity::LicenseKey {
                    key: hex::encode(r.try_get::<_, Vec<u8>>(0)?),
                    license: id(&r, 1)?,
                })?;
            }
            for r in rows(
                &t,
                "SELECT name, record FROM plugins ORDER BY name COLLATE \"C\"",
                &[],
            )
            .await?
            {
                emit(Entity::Plugin {
                    name: r.try_get(0)?,
                    record: record(&r, 1)?,
                })?;
            }
            for r in rows(
                &t,
                "SELECT plugin, key, value FROM plugin_kv ORDER BY plugin COLLATE \"C\", key",
                &[],
            )
            .await?
            {
                emit(Entity::PluginKv {
                    plugin: r.try_get(0)?,
                    key: base64(&r.try_get::<_, Vec<u8>>(1)?),
                    value: base64(&r.try_get::<_, Vec<u8>>(2)?),
                })?;
            }
            let (mut low, mut high, mut after) = (-1i64, -1i64, -1i64);
            loop {
                let page = rows(
                    &t,
                    "SELECT low, high, id, record FROM direct_messages \
                     WHERE (low, high, id) > ($1, $2, $3) ORDER BY low, high, id LIMIT $4",
                    &[&low, &high, &after, &EXPORT_PAGE],
                )
                .await?;
                for r in &page {
                    emit(Entity::DirectMessage(record(r, 3)?))?;
                }
                match page.last() {
                    Some(last) => {
                        (low, high, after) = (last.try_get(0)?, last.try_get(1)?, last.try_get(2)?)
                    }
                    None => break,
                }
            }
            for r in rows(
                &t,
                "SELECT user_id, other, last_message FROM conversations ORDER BY user_id, other",
                &[],
            )
            .await?
            {
                emit(Entity::Conversation {
                    user: id(&r, 0)?,
                    other: id(&r, 1)?,
                    last_message: id(&r, 2)?,
                })?;
            }
            for r in rows(
                &t,
                "SELECT user_id, other, up_to FROM direct_read ORDER BY user_id, other",
                &[],
            )
            .await?
            {
                emit(Entity::DirectRead {
                    user: id(&r, 0)?,
                    other: id(&r, 1)?,
                    up_to: id(&r, 2)?,
                })?;
            }
            for r in rows(
                &t,
                "SELECT user_id, record FROM dm_settings ORDER BY user_id",
                &[],
            )
            .await?
            {
                emit(Entity::DmSettings {
                    user: id(&r, 0)?,
                    settings: record(&r, 1)?,
                })?;
            }
            t.commit().await?;
            Ok(())
        })
    }

    /// Writes one exported record with what derives from it. Messages are written in batches:
    /// call `flush` when every record is in.
    pub fn import(&self, entity: &Entity) -> Result<()> {
        if let Entity::Message(message) = entity {
            let mut pending = self.pending.lock();
            pending.push(message.clone());
            if pending.len() >= IMPORT_BATCH {
                let batch = std::mem::take(&mut *pending);
                drop(pending);
                self.insert_messages(&batch)?;
            }
            return Ok(());
        }
        self.flush_imports()?;
        self.db.run(async |c| {
            let upsert_meta = async |key: &str, value: serde_json::Value| -> Result<()> {
                exec(
                    &*c,
                    "INSERT INTO meta (key, value) VALUES ($1, $2) \
                     ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                    &[&key, &Json(value)],
                )
                .await?;
                Ok(())
            };
            match entity {
                Entity::Server {
                    settings,
                    read_access,
                    role_order,
                    admin_role,
                } => {
                    if let Some(v) = settings {
                        upsert_meta("settings", to_json(v)?).await?;
                    }
                    if let Some(v) = read_access {
                        upsert_meta("read_access", to_json(v)?).await?;
                    }
                    if let Some(v) = role_order {
                        upsert_meta("role_order", to_json(v)?).await?;
                    }
                    if let Some(v) = admin_role {
                        upsert_meta("admin_role", to_json(v)?).await?;
                    }
                }
                Entity::Role(role) => {
                    exec(
                        &*c,
                        "INSERT INTO roles (id, record) VALUES ($1, $2)",
                        &[&big(role.id), &Json(role)],
                    )
                    .await?;
                }
                Entity::User(user) => {
                    exec(
                        &*c,
                        "INSERT INTO users (id, name_lower, email_lower, record) \
                         VALUES ($1, $2, $3, $4)",
                        &[
                            &big(user.id),
                            &user.username.to_ascii_lowercase(),
                            &user.email.as_deref().map(crate::store::user_index::email_key),
                            &Json(user),
                        ],
                    )
                    .await?;
                }
                Entity::UserPurge { user } => {
                    exec(
                        &*c,
                        "INSERT INTO purges (kind, id) VALUES ('user', $1)",
                        &[&big(*user)],
                    )
                    .await?;
                }
                Entity::Session { key, session } => {
                    exec(
                        &*c,
                        "INSERT INTO sessions (key, user_id, handle, expires_ms, record) \
                         VALUES ($1, $2, $3, $4, $5)",
                        &[
                            &key32(key)?.as_slice(),
                            &big(session.user_id),
                            &big(session.handle),
                            &big(session.expires_ms),
                            &Json(session),
                        ],
                    )
                    .await?;
                }
                Entity::TwoFactor { user, record } => {
                    exec(
                        &*c,
                        "INSERT INTO two_factor (user_id, record) VALUES ($1, $2)",
                        &[&big(*user), &Json(record)],
                    )
                    .await?;
                }
                Entity::ResetToken { key, token } => {
                    exec(
                        &*c,
                        "INSERT INTO reset_tokens (key, user_id, expires_ms, record) \
                         VALUES ($1, $2, $3, $4)",
                        &[
                            &key32(key)?.as_slice(),
                            &big(token.user_id),
                            &big(token.expires_ms),
                            &Json(token),
                        ],
                    )
                    .await?;
                }
                Entity::Channel(channel) => {
                    exec(
                        &*c,
                        "INSERT INTO channels (id, name_lower, record) VALUES ($1, $2, $3)",
                        &[
                            &big(channel.id),
                            &channel.name.to_ascii_lowercase(),
                            &Json(channel),
                        ],
                    )
                    .await?;
                }
                Entity::ChannelPurge { channel } => {
                    exec(
                        &*c,
                        "INSERT INTO purges (kind, id) VALUES ('channel', $1)",
                        &[&big(*channel)],
                    )
                    .await?;
                }
                Entity::Message(_) => unreachable!("batched above"),
                Entity::Read {
                    channel,
                    user,
                    up_to,
                } => {
                    exec(
                        &*c,
                        "INSERT INTO read_state (channel_id, user_id, up_to) VALUES ($1, $2, $3)",
                        &[&big(*channel), &big(*user), &big(*up_to)],
                    )
                    .await?;
                }
                Entity::Emote(emote) => {
                    exec(
                        &*c,
                        "INSERT INTO emotes (shortcode, record) VALUES ($1, $2)",
                        &[&emote.shortcode, &Json(emote)],
                    )
                    .await?;
                }
                Entity::License(license) => {
                    exec(
                        &*c,
                        "INSERT INTO licenses (id, owner, record) VALUES ($1, $2, $3)",
                        &[&big(license.id), &big(license.owner), &Json(license)],
                    )
                    .await?;
                }
                Entity::LicenseKey { key, license } => {
                    exec(
                        &*c,
                        "INSERT INTO license_keys (key, license_id) VALUES ($1, $2)",
                        &[&key32(key)?.as_slice(), &big(*license)],
                    )
                    .await?;
                }
                Entity::Plugin { name, record } => {
                    exec(
                        &*c,
                        "INSERT INTO plugins (name, record) VALUES ($1, $2)",
                        &[name, &Json(record)],
                    )
                    .await?;
                }
                Entity::PluginKv { plugin, key, value } => {
                    exec(
                        &*c,
                        "INSERT INTO plugin_kv (plugin, key, value) VALUES ($1, $2, $3)",
                        &[plugin, &unbase64(key)?, &unbase64(value)?],
                    )
                    .await?;
                }
                Entity::DirectMessage(message) => {
                    exec(
                        &*c,
                        "INSERT INTO direct_messages (id, low, high, record) VALUES ($1, $2, $3, $4)",
                        &[
                            &big(message.id),
                            &big(message.from.min(message.to)),
                            &big(message.from.max(message.to)),
                            &Json(message),
                        ],
                    )
                    .await?;
                }
                Entity::Conversation {
                    user,
                    other,
                    last_message,
                } => {
                    exec(
                        &*c,
                        "INSERT INTO conversations (user_id, other, last_message) VALUES ($1, $2, $3)",
                        &[&big(*user), &big(*other), &big(*last_message)],
                    )
                    .await?;
                }
                Entity::DirectRead { user, other, up_to } => {
                    exec(
                        &*c,
                        "INSERT INTO direct_read (user_id, other, up_to) VALUES ($1, $2, $3)",
                        &[&big(*user), &big(*other), &big(*up_to)],
                    )
                    .await?;
                }
                Entity::DmSettings { user, settings } => {
                    exec(
                        &*c,
                        "INSERT INTO dm_settings (user_id, record) VALUES ($1, $2)",
                        &[&big(*user), &Json(settings)],
                    )
                    .await?;
                }
            }
            Ok(())
        })
    }

    /// Writes the messages `import` holds back.
    pub(super) fn flush_imports(&self) -> Result<()> {
        let batch = std::mem::take(&mut *self.pending.lock());
        if batch.is_empty() {
            return Ok(());
        }
        self.insert_messages(&batch)
    }

    /// Imported messages in one transaction, with their mentions of existing users (a deleted
    /// user's mentions went with them).
    fn insert_messages(&self, batch: &[MessageRecord]) -> Result<()> {
        let ids: Vec<i64> = batch.iter().map(|m| big(m.id)).collect();
        let channels: Vec<i64> = batch.iter().map(|m| big(m.channel_id)).collect();
        let pinned: Vec<bool> = batch.iter().map(|m| m.pinned).collect();
        let records: Vec<Json<&MessageRecord>> = batch.iter().map(Json).collect();
        let (mut users, mut messages, mut in_channels) = (Vec::new(), Vec::new(), Vec::new());
        for m in batch {
            for user in &m.mentions {
                users.push(big(*user));
                messages.push(big(m.id));
                in_channels.push(big(m.channel_id));
            }
        }
        self.db.run(async |c| {
            let t = c.transaction().await?;
            exec(
                &t,
                "INSERT INTO messages (id, channel_id, pinned, record) \
                 SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::boolean[], $4::jsonb[])",
                &[&ids, &channels, &pinned, &records],
            )
            .await?;
            exec(
                &t,
                "INSERT INTO mentions (user_id, message_id, channel_id) \
                 SELECT m.u, m.m, m.c FROM unnest($1::bigint[], $2::bigint[], $3::bigint[]) \
                 AS m(u, m, c) WHERE EXISTS (SELECT 1 FROM users WHERE users.id = m.u)",
                &[&users, &messages, &in_channels],
            )
            .await?;
            t.commit().await?;
            Ok(())
        })
    }
}

fn decode<T: serde::de::DeserializeOwned>(value: Option<serde_json::Value>) -> Result<Option<T>> {
    value
        .map(serde_json::from_value)
        .transpose()
        .map_err(|e| invalid(format!("a stored setting does not decode: {e}")))
}

fn to_json(value: &impl serde::Serialize) -> Result<serde_json::Value> {
    serde_json::to_value(value).map_err(|e| invalid(format!("a setting does not encode: {e}")))
}
