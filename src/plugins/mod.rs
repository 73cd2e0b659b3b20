//! The WASM plugin host (DESIGN.md decision 8).
//!
//! Every directory under the plugins directory with a `plugin.toml` is a plugin. Loading one
//! checks the manifest and module, makes sure its bot user exists, and starts its worker: a
//! task that feeds it subscribed events and its commands in order, one call at a time. The
//! pre-store hook runs as part of the posting request (the request waits for it; at most
//! `hook-ms` per plugin), in plugin name order, each plugin seeing the previous one's
//! rewrite. Every plugin call runs on the low-priority plugin threads (`pool`), never on an
//! HTTP worker, so a plugin spinning to its deadline slows only the requests that wait for it. Every action a plugin
//! answers is checked against its capabilities; refused actions are logged and counted. A
//! failed call (trap, deadline, memory cap, bad answer) fails only itself; after
//! `max-failures` in a row the plugin is disabled.

mod actions;
mod events;
pub mod manifest;
pub mod pool;
mod port;
pub mod runtime;

pub use events::dispatch;
use events::{worker, Job};

use serde::Serialize;
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use tokio::sync::mpsc;

use crate::chat::{Chat, Place};
use crate::error::{ApiError, ErrorCode};
use crate::ids::now_ms;
use crate::perms::{Permission, Requester};
use crate::store::{PluginRecord, UserRecord};
use actions::{perform_soon, Context};
use decentd_protocol::chatbox::CommandText;
use decentd_protocol::{Action, CommandEvent, PendingMessage, PluginInput};
use manifest::{Capability, Manifest};
use pool::{CallPool, PoolError};
use runtime::{CallError, Instances, Runtime};

/// Plugin calls waiting for a plugin thread before more are refused as busy.
const CALL_QUEUE: usize = 1024;

/// Counters shown by `GET /api/plugins`.
#[derive(Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Stats {
    calls: AtomicU64,
    failures: AtomicU64,
    refused_actions: AtomicU64,
    dropped_events: AtomicU64,
    /// Calls stopped at their deadline, and the most any of them ran past it (µs).
    deadline_hits: AtomicU64,
    max_overrun_us: AtomicU64,
    #[serde(skip)]
    in_a_row: AtomicU32,
}

/// A loaded plugin.
pub struct Plugin {
    pub manifest: Manifest,
    pub dir: PathBuf,
    instances: Instances,
    pub bot_user: u64,
    enabled: AtomicBool,
    disabled_reason: Mutex<Option<String>>,
    /// The latest failed call: what it was, the error, and when (Unix ms). Since (re)load.
    last_error: Mutex<Option<(String, String, u64)>>,
    stats: Stats,
    queue: mpsc::Sender<Job>,
}

impl Plugin {
    pub fn enabled(&self) -> bool {
        self.enabled.load(Ordering::Acquire)
    }

    fn name(&self) -> &str {
        &self.manifest.name
    }

    /// The plugin as `GET /api/plugins` shows it.
    pub fn view(&self) -> Value {
        let m = &self.manifest;
        let l = &m.limits;
        json!({
            "name": m.name,
            "version": m.version,
            "description": m.description,
            "enabled": self.enabled(),
            "disabledReason": *self.disabled_reason.lock().unwrap_or_else(|e| e.into_inner()),
            "lastError": self.last_error.lock().unwrap_or_else(|e| e.into_inner()).as_ref().map(
                |(call, error, at)| json!({ "call": call, "error": error, "date": crate::ids::unix_seconds(*at) }),
            ),
            "hooks": m.hooks,
            "events": m.events,
            "commands": m.commands,
            "capabilities": m.capabilities.iter().map(|c| c.key()).collect::<Vec<_>>(),
            "limits": {
                "hookMs": l.hook_ms, "eventMs": l.event_ms, "memoryMiB": l.memory_mib,
                "failClosed": l.fail_closed, "maxFailures": l.max_failures, "queue": l.queue,
            },
            "botUserID": self.bot_user.to_string(),
            "stats": self.stats,
        })
    }

    /// One call; failures are counted here (disabling is the host's job).
    fn call(
        &self,
        input: &PluginInput,
        deadline: std::time::Duration,
    ) -> Result<Vec<Action>, CallError> {
        self.stats.calls.fetch_add(1, Ordering::Relaxed);
        let series = crate::metrics::PluginCall {
            plugin: self.name().to_owned(),
            call: match input {
                PluginInput::Init { .. } => "init",
                PluginInput::BeforeStore { .. } => "hook",
                PluginInput::Event { .. } => "event",
                PluginInput::Command(_) => "command",
            },
        };
        let metrics = &crate::metrics::METRICS;
        metrics.plugin_calls.get_or_create(&series).inc();
        let started = std::time::Instant::now();
        let bytes = serde_json::to_vec(input).map_err(|e| CallError::Trap(e.to_string()))?;
        let result = self.instances.call(&bytes, deadline);
        metrics
            .plugin_latency
            .get_or_create(&series)
            .observe(started.elapsed().as_secs_f64());
        match result {
            Ok(output) => {
                self.stats.in_a_row.store(0, Ordering::Relaxed);
                Ok(output.actions)
            }
            Err(e) => {
                metrics.plugin_failures.get_or_create(&series).inc();
                if let CallError::Deadline { overrun_us } = e {
                    self.stats.deadline_hits.fetch_add(1, Ordering::Relaxed);
                    self.stats
                        .max_overrun_us
                        .fetch_max(overrun_us, Ordering::Relaxed);
                }
                self.stats.failures.fetch_add(1, Ordering::Relaxed);
                self.stats.in_a_row.fetch_add(1, Ordering::Relaxed);
                Err(e)
            }
        }
    }

    /// Whether the manifest allows an action (in the pre-store hook or not).
    fn allows(&self, action: &Action, in_hook: bool) -> Result<(), String> {
        let needs = match action {
            Action::Accept => return Ok(()),
            Action::Reject { .. } | Action::Rewrite { .. } if !in_hook => {
                return Err("reject and rewrite only answer the pre-store hook".into())
            }
            Action::Reject { .. } | Action::Rewrite { .. } | Action::Delete { .. } => {
                Capability::Moderate
            }
            Action::Say { .. } => Capability::Say,
            Action::Tell { .. } => Capability::Tell,
        };
        if self.manifest.has(needs) {
            Ok(())
        } else {
            Err(format!("needs the {} capability", needs.key()))
        }
    }
}

/// All plugins.
pub struct PluginHost {
    runtime: Option<Arc<Runtime>>,
    pub dir: PathBuf,
    plugins: RwLock<BTreeMap<String, Arc<Plugin>>>,
    /// Enabled plugins with the pre-store hook, in name order.
    hooked: RwLock<Vec<Arc<Plugin>>>,
    /// Command name → enabled owner.
    commands: RwLock<HashMap<String, Arc<Plugin>>>,
    /// Users that plugins post as.
    bots: RwLock<HashSet<u64>>,
    /// The threads plugin calls run on, started with the first call.
    pool: std::sync::OnceLock<CallPool>,
    /// The host itself, for the workers it starts.
    me: std::sync::Weak<PluginHost>,
}

impl std::fmt::Debug for PluginHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<String> = self
            .list()
            .iter()
            .map(|p| p.manifest.name.clone())
            .collect();
        f.debug_struct("PluginHost")
            .field("dir", &self.dir)
            .field("plugins", &names)
            .finish()
    }
}

impl PluginHost {
    /// A host for `dir`; bot users are known from storage even before plugins load.
    pub fn new(dir: PathBuf, records: &[(String, PluginRecord)]) -> Arc<Self> {
        let runtime = Runtime::new()
            .map_err(|e| tracing::error!(error = %e, "plugins are unavailable"))
            .ok()
            .map(Arc::new);
        Arc::new_cyclic(|me| Self {
            runtime,
            dir,
            plugins: RwLock::default(),
            hooked: RwLock::default(),
            commands: RwLock::default(),
            bots: RwLock::new(records.iter().map(|(_, r)| r.bot_user).collect()),
            pool: std::sync::OnceLock::new(),
            me: me.clone(),
        })
    }

    /// The host as a shared handle.
    fn this(&self) -> Arc<Self> {
        self.me
            .upgrade()
            .expect("the plugin host is alive while in use")
    }

    /// Runs one call of `plugin` on a plugin thread; the caller awaits it without blocking.
    /// A full queue or a panic is a failed call like any other.
    async fn call_off_thread(
        &self,
        plugin: &Arc<Plugin>,
        input: PluginInput,
        deadline: std::time::Duration,
    ) -> Result<Vec<Action>, CallError> {
        let pool = self.pool.get_or_init(|| {
            // One per core: more would only take turns on the cores, and a spinning call
            // that is not on a core when its deadline passes is stopped late.
            let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
            CallPool::start(threads, CALL_QUEUE).unwrap_or_else(|e| {
                tracing::error!(error = %e, "cannot start the plugin threads");
                CallPool::start(0, 0).expect("no threads to start")
            })
        });
        let callee = plugin.clone();
        match pool.run(move || callee.call(&input, deadline)).await {
            Ok(result) => result,
            Err(PoolError::Busy) => Err(CallError::Busy),
            Err(PoolError::Panicked) => Err(CallError::Trap("the host panicked".into())),
        }
    }

    pub fn is_bot(&self, user: u64) -> bool {
        self.bots
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .contains(&user)
    }

    pub fn get(&self, name: &str) -> Option<Arc<Plugin>> {
        self.plugins
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
            .cloned()
    }

    pub fn list(&self) -> Vec<Arc<Plugin>> {
        self.plugins
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect()
    }

    /// Rebuilds the hook list and command table from the enabled plugins.
    fn refresh(&self) {
        let plugins = self.plugins.read().unwrap_or_else(|e| e.into_inner());
        let enabled = || plugins.values().filter(|p| p.enabled());
        *self.hooked.write().unwrap_or_else(|e| e.into_inner()) = enabled()
            .filter(|p| p.manifest.wants_hook())
            .cloned()
            .collect();
        let mut commands = HashMap::new();
        for plugin in enabled() {
            for command in &plugin.manifest.commands {
                if let Some(other) = commands.insert(command.clone(), plugin.clone()) {
                    tracing::warn!(
                        command,
                        plugin = plugin.name(),
                        other = other.name(),
                        "two plugins own the same command; the later name wins"
                    );
                }
            }
        }
        *self.commands.write().unwrap_or_else(|e| e.into_inner()) = commands;
    }

    /// Loads every plugin directory; a plugin that fails to load is logged and skipped.
    pub async fn load_all(self: &Arc<Self>, state: &Arc<Chat>) {
        let dir = self.dir.clone();
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                tracing::info!(dir = %dir.display(), "no plugins directory; no plugins loaded");
                return;
            }
            Err(e) => {
                tracing::error!(dir = %dir.display(), error = %e, "cannot read the plugins directory");
                return;
            }
        };
        let mut dirs: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.join("plugin.toml").is_file())
            .collect();
        dirs.sort();
        for path in dirs {
            match self.load(state, &path).await {
                Ok(plugin) => tracing::info!(
                    plugin = plugin.name(), version = %plugin.manifest.version,
                    enabled = plugin.enabled(), "plugin loaded"
                ),
                Err(e) => tracing::error!(dir = %path.display(), error = %e, "plugin not loaded"),
            }
        }
    }

    /// Loads (or reloads) the plugin in `path`, replacing a loaded one of the same name.
    pub async fn load(
        self: &Arc<Self>,
        state: &Arc<Chat>,
        path: &Path,
    ) -> Result<Arc<Plugin>, String> {
        let host = self;
        let runtime = host
            .runtime
            .clone()
            .ok_or("the WASM runtime could not start (see the startup log)")?;
        let (manifest, module_path) = Manifest::load(path)?;
        // Compiling takes up to a few hundred ms of CPU: not on a worker.
        let (manifest, module) = {
            let runtime = runtime.clone();
            tokio::task::spawn_blocking(move || {
                let module = runtime.compile(&manifest, &module_path)?;
                Ok::<_, String>((manifest, module))
            })
            .await
            .map_err(|e| format!("compiling the module panicked: {e}"))??
        };
        let record = ensure_bot(state, host, &manifest.name).await?;
        let kv = manifest
            .has(Capability::Kv)
            .then(|| state.store.plugin_kv(&manifest.name));
        let instances = runtime.instances(&manifest, module, kv);
        let (queue, jobs) = mpsc::channel(manifest.limits.queue);
        let plugin = Arc::new(Plugin {
            dir: path.to_owned(),
            instances,
            bot_user: record.bot_user,
            enabled: AtomicBool::new(record.enabled),
            disabled_reason: Mutex::new(record.disabled_reason),
            last_error: Mutex::new(None),
            stats: Stats::default(),
            queue,
            manifest,
        });
        host.bots
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(plugin.bot_user);
        tokio::spawn(worker(
            state.clone(),
            self.clone(),
            Arc::downgrade(&plugin),
            jobs,
        ));
        host.plugins
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(plugin.manifest.name.clone(), plugin.clone());
        host.refresh();
        Ok(plugin)
    }

    /// Enables or disables a plugin (remembered across restarts).
    pub fn set_enabled(
        &self,
        state: &Chat,
        plugin: &Plugin,
        enabled: bool,
        reason: Option<String>,
    ) -> Result<(), crate::store::StoreError> {
        let reason = if enabled { None } else { reason };
        state.store.set_plugin_record(
            plugin.name(),
            &PluginRecord {
                bot_user: plugin.bot_user,
                enabled,
                disabled_reason: reason.clone(),
            },
        )?;
        plugin.enabled.store(enabled, Ordering::Release);
        plugin.stats.in_a_row.store(0, Ordering::Relaxed);
        *plugin
            .disabled_reason
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = reason;
        self.refresh();
        Ok(())
    }

    /// Logs a failed call and disables a plugin that keeps failing.
    fn failed(&self, state: &Chat, plugin: &Plugin, what: &str, error: &CallError) {
        let in_a_row = plugin.stats.in_a_row.load(Ordering::Relaxed);
        *plugin.last_error.lock().unwrap_or_else(|e| e.into_inner()) =
            Some((what.to_owned(), error.to_string(), now_ms()));
        tracing::warn!(plugin = plugin.name(), call = what, error = %error, in_a_row, "plugin call failed");
        if let Some(backtrace) = error.backtrace() {
            tracing::debug!(
                plugin = plugin.name(),
                call = what,
                backtrace,
                "plugin trap in full"
            );
        }
        if in_a_row >= plugin.manifest.limits.max_failures && plugin.enabled() {
            let reason = format!("failed {in_a_row} calls in a row; last: {error}");
            tracing::error!(plugin = plugin.name(), reason, "disabling plugin");
            if let Err(e) = self.set_enabled(state, plugin, false, Some(reason)) {
                tracing::error!(plugin = plugin.name(), error = %e, "cannot store the plugin's state");
            }
        }
    }

    /// Logs and counts an action outside the plugin's capabilities.
    fn refuse(plugin: &Plugin, action: &Action, why: &str) {
        plugin.stats.refused_actions.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(
            plugin = plugin.name(),
            ?action,
            why,
            "plugin action refused"
        );
    }

    /// Whether any enabled plugin has the pre-store hook (a cheap check for the hot path).
    pub fn has_hooks(&self) -> bool {
        !self
            .hooked
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .is_empty()
    }

    /// Runs the pre-store hook over a message about to be stored: the text to store (maybe
    /// rewritten), or REJECTED_BY_PLUGIN naming the plugin and its reason. The calls run on
    /// the plugin threads; the caller only awaits them.
    pub async fn before_store(
        &self,
        state: &Arc<Chat>,
        author: &UserRecord,
        place: Place,
        message_id: Option<u64>,
        text: String,
    ) -> Result<String, ApiError> {
        let (channel_id, recipient_id) = match place {
            Place::Channel(channel) => (channel.to_string(), None),
            Place::Direct(user) => (String::new(), Some(user.to_string())),
        };
        let hooked = self
            .hooked
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let mut text = text;
        for plugin in hooked {
            let input = PluginInput::BeforeStore {
                message: PendingMessage {
                    channel_id: channel_id.clone(),
                    recipient_id: recipient_id.clone(),
                    message_id: message_id.map(|id| id.to_string()),
                    author: state.chat_user(author),
                    text: text.clone(),
                },
            };
            let deadline = plugin.manifest.limits.hook_deadline();
            let actions = match self.call_off_thread(&plugin, input, deadline).await {
                Ok(actions) => actions,
                // Never store a message the hook did not see.
                Err(CallError::Busy) => {
                    tracing::warn!(
                        plugin = plugin.name(),
                        "pre-store hook not run: the plugin threads are busy"
                    );
                    return Err(ApiError::new(
                        ErrorCode::Failed,
                        "the server's plugins are busy; try again",
                    )
                    .status(actix_web::http::StatusCode::SERVICE_UNAVAILABLE));
                }
                Err(e) => {
                    self.failed(state, &plugin, "message/before-store", &e);
                    if plugin.manifest.limits.fail_closed {
                        return Err(rejected(plugin.name(), "the moderation plugin failed"));
                    }
                    continue;
                }
            };
            let context = Context {
                // A direct message has no channel: a hook's answers there need their own.
                channel: match place {
                    Place::Channel(channel) => Some(channel),
                    Place::Direct(_) => None,
                },
                invoker: Some(author.id),
                private: false,
            };
            let mut later = Vec::new();
            let mut rejection = None;
            for action in actions {
                if let Err(why) = plugin.allows(&action, true) {
                    Self::refuse(&plugin, &action, &why);
                    continue;
                }
                match action {
                    Action::Accept => {}
                    Action::Reject { reason } => {
                        rejection.get_or_insert(reason);
                    }
                    Action::Rewrite { text: new } => {
                        let max = state.config.max_message_length;
                        if crate::domain::validate_message_text(&new, max).is_err() {
                            let action = Action::Rewrite { text: new };
                            Self::refuse(
                                &plugin,
                                &action,
                                "the rewritten text is empty or too long",
                            );
                            continue;
                        }
                        text = new;
                    }
                    other => later.push(other),
                }
            }
            perform_soon(state, &plugin, later, context);
            if let Some(reason) = rejection {
                tracing::info!(plugin = plugin.name(), reason, "message rejected by plugin");
                return Err(rejected(plugin.name(), &reason));
            }
        }
        Ok(text)
    }

    /// The enabled plugin that owns a command, if any.
    pub fn command_owner(&self, name: &str) -> Option<Arc<Plugin>> {
        self.commands
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
            .cloned()
    }

    /// Hands a command to its plugin. NOT_ALLOWED for `^name` without manageServer.
    pub fn run_command(
        &self,
        state: &Chat,
        plugin: Arc<Plugin>,
        command: CommandText,
        user: &UserRecord,
        place: Place,
    ) -> Result<(), ApiError> {
        if command.owner_only
            && !state
                .perms()
                .has(Requester::User(user.id), None, Permission::ManageServer)
        {
            return Err(ApiError::missing_permission(Permission::ManageServer));
        }
        let event = CommandEvent {
            command: command.name,
            args: command.args,
            owner_only: command.owner_only,
            user: state.chat_user(user),
            channel_id: match place {
                Place::Channel(channel) => channel.to_string(),
                Place::Direct(_) => String::new(),
            },
            recipient_id: match place {
                Place::Channel(_) => None,
                Place::Direct(to) => Some(to.to_string()),
            },
        };
        if plugin
            .queue
            .try_send(Job::Command(Box::new(event)))
            .is_err()
        {
            plugin.stats.dropped_events.fetch_add(1, Ordering::Relaxed);
            return Err(ApiError::new(
                ErrorCode::Failed,
                format!("plugin {} is busy; try again", plugin.name()),
            )
            .status(actix_web::http::StatusCode::SERVICE_UNAVAILABLE));
        }
        Ok(())
    }

    /// Queues a bus event for every enabled plugin subscribed to it (dropping, and counting,
    /// when a plugin's queue is full).
    fn dispatch(&self, name: &'static str, data: &Value) {
        let author: Option<u64> = data
            .pointer("/message/authorID")
            .and_then(Value::as_str)
            .and_then(|id| id.parse().ok());
        for plugin in self
            .plugins
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
        {
            if !plugin.enabled() || !plugin.manifest.wants_event(name) {
                continue;
            }
            // A plugin never hears its own bot's messages: no loop of saying and reacting.
            if author == Some(plugin.bot_user) {
                continue;
            }
            let job = Job::Event {
                name,
                data: data.clone(),
            };
            if plugin.queue.try_send(job).is_err() {
                plugin.stats.dropped_events.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(
                    plugin = plugin.name(),
                    event = name,
                    "plugin queue full; event dropped"
                );
            }
        }
    }
}

fn rejected(plugin: &str, reason: &str) -> ApiError {
    ApiError::new(
        ErrorCode::RejectedByPlugin,
        format!("the message was rejected by plugin {plugin}: {reason}"),
    )
    .with("plugin", plugin)
    .with("reason", reason)
}

/// Makes sure the plugin's bot user exists (`chat::users::ensure_plugin_user`); returns its
/// record.
async fn ensure_bot(state: &Chat, host: &PluginHost, name: &str) -> Result<PluginRecord, String> {
    crate::chat::users::ensure_plugin_user(state, name, |user| {
        host.bots
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(user);
    })
    .await
}

/// `decentd plugin check PATH`: checks a plugin's manifest and module; a summary or the error.
pub fn check(path: &Path) -> Result<String, String> {
    let (manifest, module_path) = Manifest::load(path)?;
    let runtime = Runtime::new()?;
    runtime.compile(&manifest, &module_path)?;
    let list = |v: &[String]| {
        if v.is_empty() {
            "none".to_owned()
        } else {
            v.join(", ")
        }
    };
    let capabilities: Vec<String> = manifest
        .capabilities
        .iter()
        .map(|c| c.key().to_owned())
        .collect();
    Ok(format!(
        "plugin {} {}: ok\n  module: {}\n  hooks: {}\n  events: {}\n  commands: {}\n  capabilities: {}\n  limits: hook {} ms, events {} ms, memory {} MiB, {} after {} failures in a row",
        manifest.name,
        manifest.version,
        module_path.display(),
        list(&manifest.hooks),
        list(&manifest.events),
        list(&manifest.commands),
        list(&capabilities),
        manifest.limits.hook_ms,
        manifest.limits.event_ms,
        manifest.limits.memory_mib,
        if manifest.limits.fail_closed { "fail-closed, disabled" } else { "fail-open, disabled" },
        manifest.limits.max_failures,
    ))
}
