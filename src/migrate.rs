//! (compose) `decentd migrate --from DIR --to postgres://...`: moves a stopped single-node
//! server's embedded store into PostgreSQL for cluster mode, record by record (`store::Entity`,
//! the vocabulary of `decentd export`), with a progress bar, then checks the round trip: the
//! database, exported again, must hold exactly the records that were read, kind by kind.

use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

use crate::store::{Entity, StoreError};

/// Per kind of record: how many, and an order-independent digest of their content.
#[derive(Debug, Default, PartialEq)]
pub struct Tally(BTreeMap<&'static str, (u64, u128)>);

impl Tally {
    /// Counts a record. Its digest is taken over its JSON with sorted keys, so maps that
    /// iterate in any order digest the same.
    pub fn add(&mut self, entity: &Entity) -> Result<(), String> {
        let canonical = serde_json::to_value(entity)
            .map(|v| v.to_string())
            .map_err(|e| format!("a record does not encode: {e}"))?;
        let hash = Sha256::digest(canonical.as_bytes());
        let mut low = [0u8; 16];
        low.copy_from_slice(&hash[..16]);
        let entry = self.0.entry(entity.kind()).or_default();
        entry.0 += 1;
        entry.1 = entry.1.wrapping_add(u128::from_le_bytes(low));
        Ok(())
    }

    pub fn records(&self) -> u64 {
        self.0.values().map(|(n, _)| n).sum()
    }

    /// The kinds whose records differ: (kind, count here, count there).
    pub fn differences(&self, other: &Tally) -> Vec<(&'static str, u64, u64)> {
        let mut kinds: Vec<&'static str> = self.0.keys().chain(other.0.keys()).copied().collect();
        kinds.sort_unstable();
        kinds.dedup();
        kinds
            .into_iter()
            .filter(|k| self.0.get(k) != other.0.get(k))
            .map(|k| {
                (
                    k,
                    self.0.get(k).map_or(0, |e| e.0),
                    other.0.get(k).map_or(0, |e| e.0),
                )
            })
            .collect()
    }
}

/// `decentd migrate`: copies the stopped server in `from` into the empty PostgreSQL database
/// at `to`, and its uploads into `uploads` when given.
pub fn migrate_command(from: &Path, to: &str, uploads: Option<&Path>) -> Result<String, String> {
    let started = Instant::now();
    if !from.join("db").exists() {
        return Err(format!("{} holds no decentd data", from.display()));
    }
    let source = match crate::store::open(from, 64 * 1024 * 1024, 0) {
        Ok(store) => store,
        Err(StoreError::Locked(_)) => {
            return Err(format!(
                "{} is in use by a running decentd: stop it first (writes made during the copy \
                 would be left behind), then start the nodes with --store",
                from.display()
            ))
        }
        Err(e) => return Err(e.to_string()),
    };
    crate::upgrade::refuse_newer(&*source, from)?;
    let target = crate::store::open_postgres(to, 4).map_err(|e| e.to_string())?;
    if !target.is_empty() {
        return Err(
            "the database already holds decentd data: migrate into an empty database".into(),
        );
    }

    let bar = indicatif::ProgressBar::new(
        source
            .key_counts()
            .iter()
            .filter(|(name, _)| EXPORTED.contains(name))
            .map(|(_, n)| *n as u64)
            .sum(),
    );
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "{bar:40} {human_pos}/{human_len} records ({per_sec}, {eta} left)",
    ) {
        bar.set_style(style);
    }
    let mut read = Tally::default();
    let mut failure = None;
    source
        .export(&mut |entity| {
            if let Err(e) = read.add(&entity).and_then(|()| {
                target
                    .import(&entity)
                    .map_err(|e| format!("writing a {} record: {e}", entity.kind()))
            }) {
                failure = Some(e.clone());
                return Err(std::io::Error::other(e));
            }
            bar.inc(1);
            Ok(())
        })
        .map_err(|e| failure.take().unwrap_or_else(|| e.to_string()))?;
    target.flush().map_err(|e| e.to_string())?;
    bar.finish_and_clear();

    // The round trip: what the database now holds, read back.
    let mut written = Tally::default();
    target
        .export(&mut |entity| written.add(&entity).map_err(std::io::Error::other))
        .map_err(|e| e.to_string())?;
    let differences = read.differences(&written);
    if !differences.is_empty() {
        let list: Vec<String> = differences
            .iter()
            .map(|(kind, here, there)| format!("{kind}: {here} read, {there} in the database"))
            .collect();
        return Err(format!(
            "the round-trip check failed; the database holds something else than was read \
             ({}). Drop and recreate the database before trying again.",
            list.join("; ")
        ));
    }

    let copied = match uploads {
        Some(dir) => copy_uploads(from, dir)?,
        None => 0,
    };
    let uploads_note = match uploads {
        Some(dir) => format!(", {copied} uploads into {}", dir.display()),
        None => format!(
            "; uploads stay in {} (give the nodes that directory, or a copy, with --uploads)",
            from.join("uploads").display()
        ),
    };
    Ok(format!(
        "migrated {} records in {:.1} s and checked them all{uploads_note}",
        read.records(),
        started.elapsed().as_secs_f64(),
    ))
}

/// Key spaces whose entries become records (the rest are derived): the progress bar's total.
const EXPORTED: &[&str] = &[
    "users",
    "sessions",
    "roles",
    "channels",
    "messages",
    "read_state",
    "emotes",
    "plugins",
    "plugin_kv",
    "licenses",
    "license_keys",
    "two_factor",
    "reset_tokens",
    "dm_messages",
    "dm_conversations",
    "dm_read",
    "dm_settings",
];

/// Copies the uploaded images of `from` into `to` (made if missing); how many.
fn copy_uploads(from: &Path, to: &Path) -> Result<usize, String> {
    std::fs::create_dir_all(to).map_err(|e| format!("cannot create {}: {e}", to.display()))?;
    let mut copied = 0;
    for (path, _) in crate::backup::uploads(from).map_err(|e| e.to_string())? {
        let Some(name) = path.file_name() else {
            continue;
        };
        std::fs::copy(&path, to.join(name))
            .map_err(|e| format!("cannot copy {}: {e}", path.display()))?;
        copied += 1;
    }
    Ok(copied)
}
