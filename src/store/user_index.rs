//! In-memory lookups over users that the sled key spaces cannot answer by range: usernames
//! that contain a piece of text (a trigram index), and users by email address. Built once when
//! the store opens, kept current by the store's user writes.
//!
//! Names are ASCII (`domain::validate_name`), compared lowercased. A name is indexed under
//! every three-byte window of it; a search for text of three or more characters reads only the
//! names under its rarest trigram, then checks each. Shorter text finds names by prefix only
//! (the sled name index answers those).

use std::collections::HashMap;
use std::sync::RwLock;

/// Names and emails of every user, for substring and email lookups.
#[derive(Debug, Default)]
pub struct UserIndex {
    inner: RwLock<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    /// Lowercased name and user id; a deleted user's slot is `None`.
    slots: Vec<Option<(Box<[u8]>, u64)>>,
    slot_of: HashMap<u64, u32>,
    trigrams: HashMap<[u8; 3], Vec<u32>>,
    /// Lowercased email address to the users that gave it (checked against the record on use:
    /// a changed address leaves a stale entry until restart, never a wrong answer).
    emails: HashMap<String, Vec<u64>>,
}

fn trigrams(name: &[u8]) -> impl Iterator<Item = [u8; 3]> + '_ {
    name.windows(3).map(|w| [w[0], w[1], w[2]])
}

impl UserIndex {
    /// Adds a user's name (and email, if any).
    pub fn insert(&self, id: u64, username: &str, email: Option<&str>) {
        let name = username
            .to_ascii_lowercase()
            .into_bytes()
            .into_boxed_slice();
        let mut inner = self.inner.write().unwrap_or_else(|p| p.into_inner());
        if !inner.slot_of.contains_key(&id) {
            let slot = inner.slots.len() as u32;
            let mut seen: Vec<[u8; 3]> = trigrams(&name).collect();
            seen.sort_unstable();
            seen.dedup();
            for t in seen {
                inner.trigrams.entry(t).or_default().push(slot);
            }
            inner.slots.push(Some((name, id)));
            inner.slot_of.insert(id, slot);
        }
        if let Some(email) = email {
            inner.add_email(id, email);
        }
    }

    /// Records a user's (new) email address.
    pub fn set_email(&self, id: u64, email: &str) {
        self.inner
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .add_email(id, email);
    }

    /// Forgets a deleted user (their trigram entries point at an empty slot until restart).
    pub fn remove(&self, id: u64) {
        let mut inner = self.inner.write().unwrap_or_else(|p| p.into_inner());
        if let Some(slot) = inner.slot_of.remove(&id) {
            inner.slots[slot as usize] = None;
        }
    }

    /// Users that gave this email address (ignoring case), to be checked against their records.
    pub fn by_email(&self, email: &str) -> Vec<u64> {
        let inner = self.inner.read().unwrap_or_else(|p| p.into_inner());
        inner
            .emails
            .get(&email.to_lowercase())
            .cloned()
            .unwrap_or_default()
    }

    /// Users whose name contains `part` somewhere after its first character (names that start
    /// with it are the prefix search's), in name order: `skip` passed over, at most `limit`.
    /// Empty for text shorter than three characters.
    pub fn containing(&self, part: &str, skip: usize, limit: usize) -> Vec<u64> {
        let part = part.to_ascii_lowercase().into_bytes();
        if part.len() < 3 || limit == 0 {
            return Vec::new();
        }
        let inner = self.inner.read().unwrap_or_else(|p| p.into_inner());
        let mut rarest: Option<&Vec<u32>> = None;
        for t in trigrams(&part) {
            match inner.trigrams.get(&t) {
                None => return Vec::new(),
                Some(list) if rarest.is_none_or(|r| list.len() < r.len()) => rarest = Some(list),
                Some(_) => {}
            }
        }
        let Some(candidates) = rarest else {
            return Vec::new();
        };
        let mut found: Vec<(&[u8], u64)> = candidates
            .iter()
            .filter_map(|&slot| inner.slots[slot as usize].as_ref())
            .filter(|(name, _)| !name.starts_with(&part) && contains(name, &part))
            .map(|(name, id)| (&name[..], *id))
            .collect();
        found.sort_unstable();
        found
            .into_iter()
            .skip(skip)
            .take(limit)
            .map(|(_, id)| id)
            .collect()
    }
}

impl Inner {
    fn add_email(&mut self, id: u64, email: &str) {
        let ids = self.emails.entry(email.to_lowercase()).or_default();
        if !ids.contains(&id) {
            ids.push(id);
        }
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index(names: &[&str]) -> UserIndex {
        let index = UserIndex::default();
        for (i, name) in names.iter().enumerate() {
            index.insert(i as u64 + 1, name, None);
        }
        index
    }

    #[test]
    fn finds_names_containing_text_but_not_starting_with_it_in_name_order() {
        let index = index(&["alice", "Malice", "palace", "bob_alice", "Alicia", "xalic"]);
        // "alice" starts with it (the prefix search's); "palace" does not contain it.
        assert_eq!(index.containing("ALIC", 0, 10), vec![4, 2, 6]);
        assert_eq!(index.containing("alic", 1, 1), vec![2]);
        assert_eq!(index.containing("al", 0, 10), Vec::<u64>::new());
        assert_eq!(index.containing("zzz", 0, 10), Vec::<u64>::new());
    }

    #[test]
    fn deleted_users_are_not_found_and_emails_ignore_case() {
        let index = index(&["xcarol", "ycarol"]);
        index.remove(1);
        assert_eq!(index.containing("carol", 0, 10), vec![2]);
        index.set_email(2, "Carol@Example.com");
        assert_eq!(index.by_email("carol@example.COM"), vec![2]);
        assert!(index.by_email("nobody@example.com").is_empty());
    }

    #[test]
    fn repeated_trigrams_in_a_name_are_indexed_once() {
        let index = index(&["aaaaaa"]);
        assert_eq!(index.containing("aaaa", 0, 10), Vec::<u64>::new()); // a prefix
        index.insert(2, "baaaa", None);
        assert_eq!(index.containing("aaaa", 0, 10), vec![2]);
    }
}
