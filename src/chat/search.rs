//! Searching messages: what the requester may read at the time of the request, matched by the
//! search index (`crate::search`), then loaded from storage and checked again (a hit whose
//! message was deleted, edited away from the words, or whose channel became unreadable is
//! dropped). Keeping the index current: every stored, edited or deleted message is handed to
//! it after its write is durable; at startup the index catches up from storage.

use serde_json::Value;

use crate::error::{ApiError, ApiResult, ErrorCode};
use crate::ids::now_ms;
use crate::search::{words, Doc, SearchIndex, SearchQuery};
use crate::store::{DirectMessageRecord, MessageRecord, Storage};

use super::views::message_json;
use super::{direct, id as path_id, Caller, Chat};

/// Most results one page holds.
pub const MAX_LIMIT: u64 = 50;
/// Messages re-added at startup from before the last committed one: ids of the ten seconds
/// before it (ids are milliseconds shifted left by 20 bits).
const CATCH_UP_MARGIN: u64 = 10_000 << 20;
/// Messages read from storage at a time while indexing.
const BATCH: usize = 2_000;

pub fn channel_doc(m: &MessageRecord) -> Doc {
    Doc {
        id: m.id,
        text: m.text.clone(),
        author: m.author.as_ref().map_or(0, |a| a.id),
        channel: m.channel_id,
        parties: None,
        created_ms: m.created_ms,
    }
}

pub fn direct_doc(m: &DirectMessageRecord) -> Doc {
    Doc {
        id: m.id,
        text: m.text.clone(),
        author: m.from,
        channel: 0,
        parties: Some((m.from, m.to)),
        created_ms: m.created_ms,
    }
}

/// Hands every stored message with an id after `after` to the index: `progress` hears how
/// many so far. Returns how many.
pub fn index_since(
    store: &dyn Storage,
    index: &SearchIndex,
    after: u64,
    progress: &dyn Fn(u64),
) -> ApiResult<u64> {
    let mut done = 0;
    let mut from = after;
    loop {
        let batch = store.messages_after(from, BATCH)?;
        let Some(last) = batch.last() else { break };
        from = last.id;
        for m in &batch {
            index.put_wait(channel_doc(m));
        }
        done += batch.len() as u64;
        progress(done);
    }
    let mut from = after;
    loop {
        let batch = store.direct_messages_after(from, BATCH)?;
        let Some(last) = batch.last() else { break };
        from = last.id;
        for m in &batch {
            index.put_wait(direct_doc(m));
        }
        done += batch.len() as u64;
        progress(done);
    }
    Ok(done)
}

/// Brings the index up to date with storage after a start: re-adds what came after its last
/// commit (a little before, since writes commit slightly out of order). Then, for as long as
/// the server runs, re-reads from storage whatever the index's queue had to drop under load.
pub fn catch_up(chat: &Chat, committed_through: u64) {
    let Some(index) = &chat.search else { return };
    let mut after = Some(committed_through.saturating_sub(CATCH_UP_MARGIN));
    loop {
        if let Some(from) = after {
            match index_since(&*chat.store, index, from, &|_| {}) {
                Ok(0) => {}
                Ok(n) => tracing::info!(messages = n, "search index caught up with storage"),
                Err(e) => {
                    tracing::warn!(error = %e.message, "search index catch-up failed; run `decentd reindex`")
                }
            }
        }
        if *chat.shutdown.borrow() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_secs(2));
        after = index
            .take_overflow()
            .map(|from| from.saturating_sub(CATCH_UP_MARGIN));
    }
}

pub fn index_message(chat: &Chat, m: &MessageRecord) {
    if let Some(index) = &chat.search {
        index.put(channel_doc(m));
    }
}

pub fn index_direct(chat: &Chat, m: &DirectMessageRecord) {
    if let Some(index) = &chat.search {
        index.put(direct_doc(m));
    }
}

pub fn unindex(chat: &Chat, id: u64) {
    if let Some(index) = &chat.search {
        index.delete(id);
    }
}

pub fn unindex_channel(chat: &Chat, channel: u64) {
    if let Some(index) = &chat.search {
        index.delete_channel(channel);
    }
}

/// Keeps this node's index in step with a message change made on another cluster node, from
/// its event alone (the event carries the message; storage is not read on the delivery path).
pub fn follow_remote(chat: &Chat, name: &str, data: &serde_json::Value) {
    let Some(index) = &chat.search else {
        return;
    };
    let id_at = |value: &serde_json::Value| value.as_str().and_then(crate::ids::parse_id);
    match name {
        "message/new" | "message/edit" | "dm/new" | "dm/edit" => {
            let m = &data["message"];
            let Some(id) = id_at(&m["id"]) else {
                return;
            };
            let author = id_at(&m["authorID"]).unwrap_or(0);
            let (channel, parties) = match id_at(&m["recipientID"]) {
                Some(recipient) => (0, Some((author, recipient))),
                None => (id_at(&m["channelID"]).unwrap_or(0), None),
            };
            index.put(Doc {
                id,
                text: m["text"].as_str().unwrap_or_default().to_owned(),
                author,
                channel,
                parties,
                created_ms: m["dateCreated"].as_f64().map_or_else(
                    || crate::ids::id_timestamp_ms(id),
                    |s| (s * 1000.0).round() as u64,
                ),
            });
        }
        "message/delete" | "dm/delete" => {
            if let Some(id) = id_at(&data["messageID"]) {
                index.delete(id);
            }
        }
        "channel/delete" => {
            if let Some(id) = id_at(&data["channelID"]) {
                index.delete_channel(id);
            }
        }
        _ => {}
    }
}

/// What a search asks for, as the client gave it.
#[derive(Debug, Default)]
pub struct Request {
    pub q: String,
    pub channel: Option<String>,
    pub author: Option<String>,
    /// ISO 8601 times.
    pub after: Option<String>,
    pub before: Option<String>,
    pub sort: Option<String>,
    pub limit: Option<u64>,
    pub skip: Option<u64>,
}

fn time_ms(text: &str, parameter: &str) -> ApiResult<u64> {
    let parsed = time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .map_err(|_| {
            ApiError::invalid_type(parameter, "an ISO 8601 time, e.g. 2026-11-30T12:00:00Z")
        })?;
    Ok((parsed.unix_timestamp_nanos() / 1_000_000).max(0) as u64)
}

/// Messages the caller may read that contain every word of `q` (each as a word start),
/// newest first or by relevance: channel messages and the caller's own direct messages.
pub fn search(chat: &Chat, caller: Caller<'_>, request: Request) -> ApiResult<Vec<Value>> {
    let Some(index) = &chat.search else {
        return Err(ApiError::new(
            ErrorCode::Failed,
            "search is unavailable: the search index could not be opened (see the log)",
        ));
    };
    let q = request.q.trim();
    if q.is_empty() || q.chars().count() > 200 {
        return Err(ApiError::invalid_type(
            "q",
            "search text of 1 to 200 characters",
        ));
    }
    let who = caller.requester();
    let me = caller.user_id();
    let channels = match &request.channel {
        Some(raw) => {
            let channel = path_id(raw, "channel")?;
            if !chat.can_read(who, channel) {
                return Err(ApiError::not_found("channel"));
            }
            vec![channel]
        }
        None => chat.perms().readable_channels(who),
    };
    let by_relevance = match request.sort.as_deref() {
        None | Some("newest") => false,
        Some("relevance") => true,
        Some(_) => return Err(ApiError::invalid_type("sort", "newest or relevance")),
    };
    let query = SearchQuery {
        text: q.to_owned(),
        channels,
        // Direct messages only when no channel was named.
        party: me.filter(|_| request.channel.is_none()),
        author: request
            .author
            .as_deref()
            .map(|a| path_id(a, "user"))
            .transpose()?,
        after_ms: request
            .after
            .as_deref()
            .map(|t| time_ms(t, "after"))
            .transpose()?,
        before_ms: request
            .before
            .as_deref()
            .map(|t| time_ms(t, "before"))
            .transpose()?,
        by_relevance,
        skip: request.skip.unwrap_or(0).min(10_000) as usize,
        limit: request.limit.unwrap_or(20).clamp(1, MAX_LIMIT) as usize,
    };
    let started = now_ms();
    let ids = index
        .search(&query)
        .map_err(|e| ApiError::internal(format!("search: {e}")))?;
    let query_words = words(q);
    let mut found = Vec::with_capacity(ids.len());
    for id in ids {
        if let Some(m) = chat.store.message(id)? {
            // Checked again now: the channel may have become unreadable since it was indexed.
            if chat.can_read(who, m.channel_id) && crate::search::matches(&m.text, &query_words) {
                found.push(message_json(&m));
            }
        } else if let Some(m) = chat.store.direct_message(id)? {
            let mine = me.is_some_and(|u| u == m.from || u == m.to);
            if mine && crate::search::matches(&m.text, &query_words) {
                found.push(serde_json::to_value(direct::view(&m)).unwrap_or(Value::Null));
            }
        }
    }
    tracing::debug!(results = found.len(), ms = now_ms() - started, "searched");
    Ok(found)
}
