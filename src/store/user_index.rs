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
    /// Every name indexed (lowercased) with its user; a deleted user's slot stays, unlive, so
    /// that the posting lists keep their order.
    slots: Vec<Slot>,
    slot_of: HashMap<u64, u32>,
    /// The slots whose name holds each trigram, in name order: a search walks them in the
    /// order it answers and stops when the page is full.
    trigrams: HashMap<[u8; 3], Vec<u32>>,
    /// Lowercased email address to the users that gave it (checked against the record on use:
    /// a changed address leaves a stale entry until restart, never a wrong answer).
    emails: HashMap<String, Vec<u64>>,
}

#[derive(Debug)]
struct Slot {
    name: Box<[u8]>,
    id: u64,
    live: bool,
}

fn trigrams(name: &[u8]) -> impl Iterator<Item = [u8; 3]> + '_ {
    name.windows(3).map(|w| [w[0], w[1], w[2]])
}

impl UserIndex {
    /// An index of many users at once (id, name, email), as storage opens: sorted by name
    /// first, so every posting list is built by appending.
    pub fn build<'a>(users: impl IntoIterator<Item = (u64, &'a str, Option<&'a str>)>) -> Self {
        let mut users: Vec<_> = users
            .into_iter()
            .map(|(id, name, email)| (lowercase(name), id, email))
            .collect();
        users.sort_unstable();
        let index = Self::default();
        {
            let mut inner = index.inner.write().unwrap_or_else(|p| p.into_inner());
            for (name, id, email) in users {
                inner.add(id, name);
                if let Some(email) = email {
                    inner.add_email(id, email);
                }
            }
        }
        index
    }

    /// Adds a user's name (and email, if any).
    pub fn insert(&self, id: u64, username: &str, email: Option<&str>) {
        let mut inner = self.inner.write().unwrap_or_else(|p| p.into_inner());
        inner.add(id, lowercase(username));
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

    /// Forgets a deleted user (their slot stays in the posting lists, unlive, until restart).
    pub fn remove(&self, id: u64) {
        let mut inner = self.inner.write().unwrap_or_else(|p| p.into_inner());
        if let Some(slot) = inner.slot_of.remove(&id) {
            inner.slots[slot as usize].live = false;
        }
    }

    /// Users that gave this email address (ignoring case), to be checked against their records.
    pub fn by_email(&self, email: &str) -> Vec<u64> {
        let inner = self.inner.read().unwrap_or_else(|p| p.into_inner());
        inner
            .emails
            .get(&email_key(email))
            .cloned()
            .unwrap_or_default()
    }

    /// Users whose name contains `part` somewhere after its first character (names that start
    /// with it are the prefix search's), in name order: `skip` passed over, at most `limit`.
    /// Empty for text shorter than three characters. Walks the rarest trigram's names in
    /// order and stops once the page is full.
    pub fn containing(&self, part: &str, skip: usize, limit: usize) -> Vec<u64> {
        let part = lowercase(part);
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
        candidates
            .iter()
            .map(|&slot| &inner.slots[slot as usize])
            .filter(|s| s.live && !s.name.starts_with(&part) && contains(&s.name, &part))
            .skip(skip)
            .take(limit)
            .map(|s| s.id)
            .collect()
    }
}

/// How email addresses compare: ASCII case folding only. Unicode lowercasing would let a
/// lookup for `\u{212A}im@example.test` (a Kelvin sign) find `kim@example.test`.
pub fn email_key(email: &str) -> String {
    email.to_ascii_lowercase()
}

fn lowercase(name: &str) -> Box<[u8]> {
    name.to_ascii_lowercase().into_bytes().into_boxed_slice()
}

impl Inner {
    fn add(&mut self, id: u64, name: Box<[u8]>) {
        if self.slot_of.contains_key(&id) {
            return;
        }
        let slot = self.slots.len() as u32;
        let mut seen: Vec<[u8; 3]> = trigrams(&name).collect();
        seen.sort_unstable();
        seen.dedup();
        for t in seen {
            let list = self.trigrams.entry(t).or_default();
            // In name order (then slot order for equal names); appending when the name sorts
            // last, as every name does while `build` runs.
            let slots = &self.slots;
            let at = list.partition_point(|&other| *slots[other as usize].name <= *name);
            list.insert(at, slot);
        }
        self.slots.push(Slot {
            name,
            id,
            live: true,
        });
        self.slot_of.insert(id, slot);
    }

    fn add_email(&mut self, id: u64, email: &str) {
        let ids = self.emails.entry(email_key(email)).or_default();
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
    fn a_bulk_build_and_single_inserts_agree_on_the_order() {
        let built = UserIndex::build([
            (1, "zalic", None),
            (2, "balice", Some("B@x.org")),
            (3, "malic", None),
        ]);
        built.insert(4, "calico", None);
        built.insert(5, "aalic", None);
        assert_eq!(built.containing("alic", 0, 10), vec![5, 2, 4, 3, 1]);
        assert_eq!(built.by_email("b@X.org"), vec![2]);
    }

    #[test]
    fn repeated_trigrams_in_a_name_are_indexed_once() {
        let index = index(&["aaaaaa"]);
        assert_eq!(index.containing("aaaa", 0, 10), Vec::<u64>::new()); // a prefix
        index.insert(2, "baaaa", None);
        assert_eq!(index.containing("aaaa", 0, 10), vec![2]);
    }
}
