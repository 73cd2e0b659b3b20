//! Emotes: `emotes` maps a shortcode to its record, so listing is in shortcode order.

use serde::{Deserialize, Serialize};

use super::{codec, Result, Store};

/// A custom emote.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EmoteRecord {
    pub shortcode: String,
    pub image_url: String,
}

impl Store {
    /// Every emote, by shortcode.
    pub fn emotes(&self) -> Result<Vec<EmoteRecord>> {
        self.emotes
            .iter()
            .values()
            .map(|v| codec::decode(&v?))
            .collect()
    }

    pub fn emote(&self, shortcode: &str) -> Result<Option<EmoteRecord>> {
        self.emotes
            .get(shortcode.as_bytes())?
            .map(|v| codec::decode(&v))
            .transpose()
    }

    /// Stores a new emote. Returns false (storing nothing) if the shortcode is taken.
    pub fn insert_emote(&self, emote: &EmoteRecord) -> Result<bool> {
        let _gate = self.ensure_space()?;
        let value = codec::encode(emote)?;
        let swapped = self.emotes.compare_and_swap(
            emote.shortcode.as_bytes(),
            None as Option<&[u8]>,
            Some(value),
        )?;
        Ok(swapped.is_ok())
    }

    /// Deletes an emote. Returns whether it existed.
    pub fn delete_emote(&self, shortcode: &str) -> Result<bool> {
        let _gate = self.ensure_space()?;
        Ok(self.emotes.remove(shortcode.as_bytes())?.is_some())
    }
}
