//! Word filter: messages containing a listed word (ASCII case-insensitive, whole words only:
//! "heck" does not match inside "checking") are rejected, or stored with each occurrence
//! masked, depending on `mode` in the config.

use decentd_plugin::{export_plugin, reject, rewrite, Action, PendingMessage, Plugin, Value};

#[derive(Default)]
pub struct WordFilter {
    words: Vec<String>,
    reject: bool,
}

/// Whether a byte belongs to a word: letters, digits, `_`, and any byte of a non-ASCII
/// character (so a listed word next to an accented letter is still inside a word).
fn in_word(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || byte == b'_' || !byte.is_ascii()
}

impl WordFilter {
    /// The text with every listed word masked, if any was found as a whole word.
    pub fn mask(&self, text: &str) -> Option<String> {
        let lower = text.to_ascii_lowercase();
        let mut masked = text.as_bytes().to_vec();
        let mut found = false;
        for word in &self.words {
            let mut from = 0;
            while let Some(at) = lower[from..].find(word.as_str()) {
                let start = from + at;
                let end = start + word.len();
                let bytes = lower.as_bytes();
                let whole = (start == 0 || !in_word(bytes[start - 1]))
                    && (end == bytes.len() || !in_word(bytes[end]));
                if whole {
                    masked[start..end].fill(b'*');
                    found = true;
                }
                from = start + 1;
            }
        }
        // Only ASCII bytes of ASCII words were replaced, so the text stays UTF-8.
        found.then(|| String::from_utf8(masked).unwrap_or_default())
    }
}

impl Plugin for WordFilter {
    fn init(&mut self, config: &Value) {
        self.words = config["words"]
            .as_array()
            .map(|words| {
                words
                    .iter()
                    .filter_map(Value::as_str)
                    .filter(|w| !w.is_empty() && w.is_ascii())
                    .map(str::to_ascii_lowercase)
                    .collect()
            })
            .unwrap_or_default();
        self.reject = config["mode"] == "reject";
    }

    fn before_store(&mut self, message: &PendingMessage) -> Vec<Action> {
        match self.mask(&message.text) {
            None => Vec::new(),
            Some(_) if self.reject => vec![reject("the message contains a blocked word")],
            Some(masked) => vec![rewrite(masked)],
        }
    }
}

export_plugin!(WordFilter);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_case_insensitively() {
        let mut f = WordFilter::default();
        f.init(&decentd_plugin::json!({"words": ["darn"], "mode": "rewrite"}));
        assert_eq!(f.mask("Darn it, darn!").unwrap(), "**** it, ****!");
        assert!(f.mask("fine").is_none());
    }

    #[test]
    fn matches_whole_words_only() {
        let mut f = WordFilter::default();
        f.init(&decentd_plugin::json!({"words": ["heck"], "mode": "rewrite"}));
        assert!(f.mask("checking the heckle").is_none());
        assert_eq!(
            f.mask("heck, (heck) heck_no heck").unwrap(),
            "****, (****) heck_no ****"
        );
        assert!(f.mask("héck heckö").is_none());
    }
}
