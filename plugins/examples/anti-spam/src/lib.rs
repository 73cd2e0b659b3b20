//! Anti-spam: a fixed window per user, kept in the plugin's key-value space (so it holds
//! across instances and restarts): at most `max` messages per `seconds`; over that, the message
//! is rejected and the user gets a private note.

use decentd_plugin::{
    export_plugin, kv, now_ms, reject, tell, Action, PendingMessage, Plugin, Value,
};

pub struct AntiSpam {
    max: u64,
    window_ms: u64,
}

impl Default for AntiSpam {
    fn default() -> Self {
        Self {
            max: 5,
            window_ms: 10_000,
        }
    }
}

/// The window (start, count) after one more message at `now`.
pub fn count(previous: Option<(u64, u64)>, now: u64, window_ms: u64) -> (u64, u64) {
    match previous {
        Some((start, count)) if now.saturating_sub(start) < window_ms => (start, count + 1),
        _ => (now, 1),
    }
}

fn decode(bytes: &[u8]) -> Option<(u64, u64)> {
    let text = std::str::from_utf8(bytes).ok()?;
    let (start, count) = text.split_once(',')?;
    Some((start.parse().ok()?, count.parse().ok()?))
}

impl Plugin for AntiSpam {
    fn init(&mut self, config: &Value) {
        self.max = config["max"].as_u64().unwrap_or(5).max(1);
        self.window_ms = config["seconds"].as_u64().unwrap_or(10).max(1) * 1000;
    }

    fn before_store(&mut self, message: &PendingMessage) -> Vec<Action> {
        if message.message_id.is_some() {
            return Vec::new(); // edits are not new messages
        }
        let key = format!("window:{}", message.author.uuid);
        let previous = kv::get(&key).as_deref().and_then(decode);
        let (start, n) = count(previous, now_ms(), self.window_ms);
        kv::set(&key, format!("{start},{n}").as_bytes());
        if n <= self.max {
            return Vec::new();
        }
        let seconds = self.window_ms / 1000;
        vec![
            reject(format!("more than {} messages in {seconds} s", self.max)),
            tell(
                message.author.uuid.clone(),
                format!(
                    "Slow down: at most {} messages every {seconds} seconds.",
                    self.max
                ),
            ),
        ]
    }
}

export_plugin!(AntiSpam);

#[cfg(test)]
mod tests {
    use super::count;

    #[test]
    fn windows_reset_after_they_pass() {
        assert_eq!(count(None, 100, 10), (100, 1));
        assert_eq!(count(Some((100, 1)), 105, 10), (100, 2));
        assert_eq!(count(Some((100, 2)), 110, 10), (110, 1));
    }
}
