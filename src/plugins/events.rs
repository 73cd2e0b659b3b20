//! Events and commands for plugins: the dispatcher that feeds bus events to subscribed
//! plugins, and each plugin's worker, which calls it once at a time, in order.

use serde_json::Value;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::mpsc;

use super::actions::perform;
use super::runtime::CallError;
use super::{Context, Plugin, PluginHost};
use crate::chat::Chat;
use decentd_protocol::{CommandEvent, PluginInput, EVENTS};

/// Work for a plugin's worker.
#[derive(Debug)]
pub(super) enum Job {
    Event { name: &'static str, data: Value },
    Command(Box<CommandEvent>),
}

/// A plugin's worker: its events and commands, one call at a time, in order.
/// It holds the plugin weakly: once a reload replaces the plugin, the queue's sender goes with
/// it and the worker ends.
pub(super) async fn worker(
    state: Arc<Chat>,
    host: Arc<PluginHost>,
    plugin: std::sync::Weak<Plugin>,
    mut jobs: mpsc::Receiver<Job>,
) {
    while let Some(job) = jobs.recv().await {
        let Some(plugin) = plugin.upgrade() else {
            return;
        };
        if !plugin.enabled() {
            continue;
        }
        let (input, context, what) = match job {
            Job::Event { name, data } => {
                let channel = data
                    .pointer("/message/channelID")
                    .and_then(Value::as_str)
                    .and_then(|c| c.parse().ok());
                (
                    PluginInput::Event {
                        event: name.to_owned(),
                        data,
                    },
                    Context {
                        channel,
                        invoker: None,
                        private: false,
                    },
                    name,
                )
            }
            Job::Command(command) => {
                let context = Context {
                    channel: command.channel_id.parse().ok(),
                    invoker: command.user.user_id.parse().ok(),
                    // In a direct message, answers go to the invoker only.
                    private: command.owner_only || command.recipient_id.is_some(),
                };
                (PluginInput::Command(*command), context, "command")
            }
        };
        let deadline = plugin.manifest.limits.event_deadline();
        let actions = match host.call_off_thread(&plugin, input, deadline).await {
            Ok(actions) => actions,
            Err(CallError::Busy) => {
                plugin.stats.dropped_events.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(
                    plugin = plugin.name(),
                    call = what,
                    "plugin call dropped: the plugin threads are busy"
                );
                continue;
            }
            Err(e) => {
                host.failed(&state, &plugin, what, &e);
                continue;
            }
        };
        let mut allowed = Vec::new();
        for action in actions {
            match plugin.allows(&action, false) {
                Ok(()) => allowed.push(action),
                Err(why) => PluginHost::refuse(&plugin, &action, &why),
            }
        }
        perform(&state, &plugin, allowed, context).await;
    }
}

/// Feeds bus events to subscribed plugins until the bus closes.
pub async fn dispatch(state: Arc<Chat>, host: Arc<PluginHost>) {
    let mut events = state.subscribe();
    loop {
        match events.recv().await {
            // Another node's event: its own plugins handle it, once in the cluster.
            Ok(event) if event.remote => {}
            Ok(event) => {
                if let Some(name) = EVENTS.iter().find(|e| **e == event.name) {
                    host.dispatch(name, &event.data);
                }
            }
            Err(RecvError::Lagged(missed)) => {
                tracing::error!(missed, "the plugin dispatcher fell behind the event bus");
            }
            Err(RecvError::Closed) => return,
        }
    }
}
