//! A plugin's manifest, `plugin.toml`: who it is, what it subscribes to, what it may do.

use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::domain::validate_name;
use decentd_protocol::{EVENTS, HOOK_BEFORE_STORE};

/// What a plugin may do. Everything a plugin receives or asks for is checked against these.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Capability {
    /// Receive message contents: the pre-store hook and `message/*` events.
    ReadMessages,
    /// Own commands (`\name`, `^name`) and receive their command events.
    Commands,
    /// Post messages as the plugin's bot user.
    Say,
    /// Send private `plugin/tell` events to a user's sockets.
    Tell,
    /// Reject or rewrite messages before they are stored, delete stored ones.
    Moderate,
    /// A private key-value space (`kv_get`, `kv_set`, `kv_delete` imports).
    Kv,
}

impl Capability {
    pub fn key(self) -> &'static str {
        match self {
            Capability::ReadMessages => "read-messages",
            Capability::Commands => "commands",
            Capability::Say => "say",
            Capability::Tell => "tell",
            Capability::Moderate => "moderate",
            Capability::Kv => "kv",
        }
    }
}

/// Per-plugin limits; every field has a default.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Limits {
    /// Deadline of one pre-store hook call, in milliseconds.
    #[serde(default = "default_hook_ms")]
    pub hook_ms: u64,
    /// Deadline of one event or command call, in milliseconds.
    #[serde(default = "default_event_ms")]
    pub event_ms: u64,
    /// Linear memory cap, in MiB.
    #[serde(default = "default_memory_mib")]
    pub memory_mib: u64,
    /// When the pre-store hook fails (trap, deadline, memory, bad answer): true rejects the
    /// message, false (the default) lets it through.
    #[serde(default)]
    pub fail_closed: bool,
    /// Failures in a row after which the plugin is disabled.
    #[serde(default = "default_max_failures")]
    pub max_failures: u32,
    /// Events waiting for the plugin before new ones are dropped (and counted).
    #[serde(default = "default_queue")]
    pub queue: usize,
}

fn default_hook_ms() -> u64 {
    5
}
fn default_event_ms() -> u64 {
    100
}
fn default_memory_mib() -> u64 {
    16
}
fn default_max_failures() -> u32 {
    5
}
fn default_queue() -> usize {
    1024
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            hook_ms: default_hook_ms(),
            event_ms: default_event_ms(),
            memory_mib: default_memory_mib(),
            fail_closed: false,
            max_failures: default_max_failures(),
            queue: default_queue(),
        }
    }
}

impl Limits {
    pub fn hook_deadline(&self) -> Duration {
        Duration::from_millis(self.hook_ms)
    }
    pub fn event_deadline(&self) -> Duration {
        Duration::from_millis(self.event_ms)
    }
    pub fn memory_bytes(&self) -> usize {
        (self.memory_mib as usize).saturating_mul(1024 * 1024)
    }
}

/// `plugin.toml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Also the username of the plugin's bot user: the username rule applies.
    pub name: String,
    pub version: String,
    #[serde(default)]
    pub description: String,
    /// The module file, relative to the manifest: `.wasm`, or `.wat` text.
    #[serde(default = "default_module")]
    pub module: PathBuf,
    /// Hooks: only `message/before-store`.
    #[serde(default)]
    pub hooks: Vec<String>,
    /// Events delivered after the fact.
    #[serde(default)]
    pub events: Vec<String>,
    /// Command names this plugin owns (without `\`).
    #[serde(default)]
    pub commands: Vec<String>,
    #[serde(default)]
    pub capabilities: Vec<Capability>,
    #[serde(default)]
    pub limits: Limits,
    /// Free-form configuration handed to the plugin's `init` call.
    #[serde(default)]
    pub config: toml::Table,
}

fn default_module() -> PathBuf {
    PathBuf::from("plugin.wasm")
}

/// Longest command name.
const MAX_COMMAND: usize = 32;

impl Manifest {
    /// Reads and checks `plugin.toml` (`path` is the file or its directory).
    pub fn load(path: &Path) -> Result<(Manifest, PathBuf), String> {
        let file = if path.is_dir() {
            path.join("plugin.toml")
        } else {
            path.to_owned()
        };
        let text = std::fs::read_to_string(&file)
            .map_err(|e| format!("cannot read {}: {e}", file.display()))?;
        let manifest: Manifest =
            toml::from_str(&text).map_err(|e| format!("{}: {e}", file.display()))?;
        manifest
            .check()
            .map_err(|e| format!("{}: {e}", file.display()))?;
        let dir = file.parent().unwrap_or(Path::new(".")).to_owned();
        let module = dir.join(&manifest.module);
        if !module.is_file() {
            return Err(format!(
                "{}: module {} not found: build the plugin and copy its .wasm there (see \
                 `module =` in plugin.toml)",
                file.display(),
                module.display()
            ));
        }
        Ok((manifest, module))
    }

    pub fn has(&self, capability: Capability) -> bool {
        self.capabilities.contains(&capability)
    }

    pub fn wants_hook(&self) -> bool {
        self.hooks.iter().any(|h| h == HOOK_BEFORE_STORE)
    }

    pub fn wants_event(&self, event: &str) -> bool {
        self.events.iter().any(|e| e == event)
    }

    /// Every rule a manifest must follow, with the first broken one as the error.
    pub fn check(&self) -> Result<(), String> {
        validate_name(&self.name).map_err(|_| {
            format!(
                "name {:?} must be 1-32 letters, digits, '_' or '-' (it names the bot user)",
                self.name
            )
        })?;
        if self.version.trim().is_empty() {
            return Err("version must not be empty".into());
        }
        for hook in &self.hooks {
            if hook != HOOK_BEFORE_STORE {
                return Err(format!(
                    "unknown hook {hook:?} (the only hook is {HOOK_BEFORE_STORE:?})"
                ));
            }
            if !self.has(Capability::ReadMessages) {
                return Err(format!(
                    "hook {hook:?} needs the \"read-messages\" capability"
                ));
            }
        }
        for event in &self.events {
            if !EVENTS.contains(&event.as_str()) {
                return Err(format!(
                    "unknown event {event:?} (known: {})",
                    EVENTS.join(", ")
                ));
            }
            if event.starts_with("message/") && !self.has(Capability::ReadMessages) {
                return Err(format!(
                    "event {event:?} needs the \"read-messages\" capability"
                ));
            }
        }
        if !self.commands.is_empty() && !self.has(Capability::Commands) {
            return Err("commands need the \"commands\" capability".into());
        }
        for command in &self.commands {
            let ok = !command.is_empty()
                && command.len() <= MAX_COMMAND
                && command
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
            if !ok {
                return Err(format!(
                    "command {command:?} must be 1-{MAX_COMMAND} letters, digits, '_' or '-'"
                ));
            }
        }
        let l = &self.limits;
        // A hook runs inside the posting request: a second is already long for a chat.
        if !(1..=1_000).contains(&l.hook_ms) || !(1..=60_000).contains(&l.event_ms) {
            return Err("limits: hook-ms must be 1-1000 and event-ms 1-60000".into());
        }
        if !(1..=4096).contains(&l.memory_mib) {
            return Err("limits: memory-mib must be 1-4096".into());
        }
        if l.max_failures == 0 || l.queue == 0 {
            return Err("limits: max-failures and queue must be at least 1".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<(), String> {
        let m: Manifest = toml::from_str(text).map_err(|e| e.to_string())?;
        m.check()
    }

    #[test]
    fn manifests_are_checked_with_clear_errors() {
        assert!(parse("name = \"dice\"\nversion = \"1\"\ncommands = [\"roll\"]\ncapabilities = [\"commands\", \"say\"]").is_ok());
        let err = parse("name = \"dice\"\nversion = \"1\"\ncommands = [\"roll\"]").unwrap_err();
        assert!(err.contains("\"commands\" capability"), "{err}");
        let err =
            parse("name = \"f\"\nversion = \"1\"\nhooks = [\"message/before-store\"]").unwrap_err();
        assert!(err.contains("read-messages"), "{err}");
        let err = parse("name = \"f\"\nversion = \"1\"\nevents = [\"message/wat\"]").unwrap_err();
        assert!(err.contains("unknown event"), "{err}");
        let err = parse("name = \"a b\"\nversion = \"1\"").unwrap_err();
        assert!(err.contains("bot user"), "{err}");
        let err = parse("name = \"f\"\nversion = \"1\"\ncapabilities = [\"network\"]").unwrap_err();
        assert!(err.contains("unknown variant"), "{err}");
        let err = parse("name = \"f\"\nversion = \"1\"\nhoks = []").unwrap_err();
        assert!(err.contains("unknown field"), "{err}");
        let err = parse("name = \"f\"\nversion = \"1\"\n[limits]\nmemory-mib = 0").unwrap_err();
        assert!(err.contains("memory-mib"), "{err}");
        // A hook runs inside the posting request: at most a second.
        let err = parse("name = \"f\"\nversion = \"1\"\n[limits]\nhook-ms = 1001").unwrap_err();
        assert!(err.contains("hook-ms must be 1-1000"), "{err}");
        assert!(parse("name = \"f\"\nversion = \"1\"\n[limits]\nhook-ms = 1000").is_ok());
    }
}
