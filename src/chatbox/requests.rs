//! A bot's `say` and `tell`: checked against the owner's permissions now, then carried out at
//! once or queued in the license's rate-limit lane, whose worker sends queued messages in order
//! at their slots and reports `message_sent` (or the error) to the connection.

use bytestring::ByteString;
use serde_json::json;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

use super::limiter::{Admit, Limiter};
use super::Gateway;
use crate::chat::licenses::{self, Identity};
use crate::chat::Chat;
use crate::perms::{Permission, Requester};
use crate::store::{Slot, UserRecord};
use decentd_protocol::chatbox::{
    BotRequest, ErrorKind, ServerPacket, RATE_INTERVAL_MS, RATE_QUEUE,
};

/// One license's rate limit and the worker that sends its queued messages.
#[derive(Debug)]
pub(super) struct Lane {
    limiter: Mutex<Limiter>,
    jobs: mpsc::UnboundedSender<Queued>,
    /// When the license's last message was stored: a queued message waits for its slot and
    /// also a full interval after that, so that messages are never stored closer together
    /// than the rate allows, even when one took long to store.
    last_done: Mutex<Option<Instant>>,
}

impl Lane {
    fn done(&self) {
        *self.last_done.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
    }

    fn earliest(&self) -> Option<Instant> {
        let last = *self.last_done.lock().unwrap_or_else(|e| e.into_inner());
        last.map(|t| t + Duration::from_millis(RATE_INTERVAL_MS))
    }
}

/// A message waiting for its slot.
#[derive(Debug)]
struct Queued {
    at: Instant,
    identity: Identity,
    action: Prepared,
    id: Option<i64>,
    reply: mpsc::Sender<ByteString>,
}

/// A checked request, ready to carry out as `owner` (loaded when it was checked).
#[derive(Debug, Clone)]
struct Prepared {
    owner: UserRecord,
    target: Target,
    text: String,
    /// The chatbox name shown.
    name: String,
}

/// Where a checked request goes.
#[derive(Debug, Clone, Copy)]
enum Target {
    /// `say`: a channel the owner may post in.
    Channel(u64),
    /// `tell`: an online user.
    User(u64),
}

impl Gateway {
    /// The rate-limit lane of a license (created on first use).
    pub(super) fn lane(&self, state: &Arc<Chat>, license: u64) -> Arc<Lane> {
        let mut lanes = self.lanes.lock().unwrap_or_else(|e| e.into_inner());
        lanes
            .entry(license)
            .or_insert_with(|| {
                let (jobs, rx) = mpsc::unbounded_channel();
                let lane = Arc::new(Lane {
                    limiter: Mutex::new(Limiter::new(
                        Duration::from_millis(RATE_INTERVAL_MS),
                        RATE_QUEUE,
                    )),
                    jobs,
                    last_done: Mutex::new(None),
                });
                actix_web::rt::spawn(lane_worker(state.clone(), Arc::downgrade(&lane), rx));
                lane
            })
            .clone()
    }
}

/// A refusal with an optional message other than the documented one.
pub type Refused = (ErrorKind, Option<String>);

/// The channel a `say` goes to: the one named (ID or name), else the configured default, else
/// the oldest channel the owner may post in.
fn say_channel(state: &Chat, owner: &UserRecord, named: Option<&str>) -> Result<u64, Refused> {
    let who = Requester::User(owner.id);
    let may_post = |channel: u64| {
        state.can_read(who, channel)
            && state
                .perms()
                .has(who, Some(channel), Permission::SendMessages)
    };
    let unknown = |what: &str| {
        (
            ErrorKind::UnknownChannel,
            Some(format!(
                "Channel {what:?} does not exist or you may not post in it."
            )),
        )
    };
    let channels = state
        .store
        .channels()
        .map_err(|e| (ErrorKind::UnknownError, Some(e.to_string())))?;
    let find = |wanted: &str| {
        let by_id = wanted.parse::<u64>().ok();
        channels
            .iter()
            .find(|c| Some(c.id) == by_id || c.name.eq_ignore_ascii_case(wanted))
            .map(|c| c.id)
    };
    let wanted = named.or(state.config.chatbox_channel.as_deref());
    match wanted {
        Some(wanted) => find(wanted)
            .filter(|c| may_post(*c))
            .ok_or_else(|| unknown(wanted)),
        None => channels
            .iter()
            .map(|c| c.id)
            .find(|c| may_post(*c))
            .ok_or_else(|| {
                (
                    ErrorKind::UnknownChannel,
                    Some("There is no channel you may post in.".into()),
                )
            }),
    }
}

/// The online user a `tell` names (by the UUID of its user object, ID or username).
fn tell_target(state: &Chat, user: &str) -> Result<u64, Refused> {
    state
        .user_named(user)
        .ok()
        .flatten()
        .map(|u| u.id)
        .filter(|id| state.presence.is_online(*id))
        .ok_or((ErrorKind::UnknownUser, None))
}

/// Checks a request against the current state of the server.
fn prepare(state: &Chat, identity: &Identity, request: BotRequest) -> Result<Prepared, Refused> {
    // The owner as they are now: renamed, or no longer allowed to send.
    let owner = identity
        .owner
        .as_ref()
        .and_then(|o| state.store.user(o.id).ok().flatten())
        .ok_or((ErrorKind::MissingCapability, None))?;
    if licenses::allowed(state, owner.id) & request.needs().bit() == 0 {
        return Err((ErrorKind::MissingCapability, None));
    }
    let (target, text, name) = match request {
        BotRequest::Say {
            text,
            name,
            channel,
            ..
        } => (
            Target::Channel(say_channel(state, &owner, channel.as_deref())?),
            text,
            name,
        ),
        BotRequest::Tell {
            user, text, name, ..
        } => (Target::User(tell_target(state, &user)?), text, name),
    };
    Ok(Prepared {
        name: name.unwrap_or_else(|| owner.username.clone()),
        owner,
        target,
        text,
    })
}

/// Carries out a prepared request as the license owner.
async fn execute(state: &Arc<Chat>, identity: &Identity, action: Prepared) -> Result<(), Refused> {
    let Some(license) = identity.license else {
        return Err((ErrorKind::MissingCapability, None));
    };
    let Prepared {
        owner,
        target,
        text,
        name,
    } = action;
    match target {
        Target::Channel(channel) => {
            let via = json!({ "name": name, "licenseID": license.to_string() });
            crate::chat::messages::say_for_bot(state, &owner, channel, text, via)
                .await
                .map(|_| ())
                .map_err(|e| (ErrorKind::UnknownError, Some(e.message)))
        }
        Target::User(user) => {
            use crate::chat::tells::{from_bot, TellRefused};
            from_bot(state, &owner, user, &name, &text).map_err(|refused| match refused {
                TellRefused::Offline => (ErrorKind::UnknownUser, None),
                // As over HTTP, a block and "nobody" answer alike.
                TellRefused::NotAccepted => (
                    ErrorKind::UnknownUser,
                    Some("That user does not accept direct messages from you.".into()),
                ),
                TellRefused::Failed(message) => (ErrorKind::UnknownError, Some(message)),
            })
        }
    }
}

fn error_packet((kind, message): Refused, id: Option<i64>) -> ServerPacket {
    match message {
        Some(message) => ServerPacket::Error {
            error: kind.code().into(),
            message,
            id,
        },
        None => ServerPacket::error(kind, id),
    }
}

/// Handles one `say` or `tell` from a connection: the packet to answer with now.
pub async fn request(
    state: &Arc<Chat>,
    gateway: &Gateway,
    identity: &Identity,
    request: BotRequest,
    reply: &mpsc::Sender<ByteString>,
) -> ServerPacket {
    let id = request.id();
    let action = match prepare(state, identity, request) {
        Ok(action) => action,
        Err(refused) => return error_packet(refused, id),
    };
    let Some(license) = identity.license else {
        return ServerPacket::error(ErrorKind::MissingCapability, id);
    };
    let lane = gateway.lane(state, license);
    let shared = state.store.chatbox_slot(
        license,
        crate::ids::now_ms(),
        RATE_INTERVAL_MS,
        RATE_QUEUE as u64,
    );
    let admit = match shared {
        // Cluster mode: the limit is the license's, whichever nodes its bots are on.
        Ok(Some(Slot::Now)) => Admit::Now,
        Ok(Some(Slot::At(at))) => Admit::Queued(
            Instant::now() + Duration::from_millis(at.saturating_sub(crate::ids::now_ms())),
        ),
        Ok(Some(Slot::Full)) => Admit::Limited,
        Ok(None) => lane
            .limiter
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .admit(Instant::now()),
        Err(e) => {
            tracing::error!(error = %e, "could not take a chatbox rate-limit slot");
            return ServerPacket::error(ErrorKind::UnknownError, id);
        }
    };
    match admit {
        Admit::Now => {
            let outcome = execute(state, identity, action).await;
            lane.done();
            match outcome {
                Ok(()) => ServerPacket::Success {
                    id,
                    reason: decentd_protocol::chatbox::SuccessReason::MessageSent,
                },
                Err(refused) => error_packet(refused, id),
            }
        }
        Admit::Queued(at) => {
            let job = Queued {
                at,
                identity: identity.clone(),
                action,
                id,
                reply: reply.clone(),
            };
            if lane.jobs.send(job).is_err() {
                return ServerPacket::error(ErrorKind::UnknownError, id);
            }
            ServerPacket::Success {
                id,
                reason: decentd_protocol::chatbox::SuccessReason::MessageQueued,
            }
        }
        Admit::Limited => ServerPacket::error(ErrorKind::RateLimited, id),
    }
}

/// Sends a license's queued messages in order, each at its slot; the outcome (`message_sent`
/// or the error) is reported to the connection that sent the message (if it is still open).
async fn lane_worker(
    state: Arc<Chat>,
    lane: std::sync::Weak<Lane>,
    mut jobs: mpsc::UnboundedReceiver<Queued>,
) {
    while let Some(job) = jobs.recv().await {
        let earliest = lane.upgrade().and_then(|lane| lane.earliest());
        let at = earliest.map_or(job.at, |e| e.max(job.at));
        tokio::time::sleep_until(at.into()).await;
        if let Some(lane) = lane.upgrade() {
            lane.limiter
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .dequeued();
        }
        // A license revoked or disabled while its messages waited sends nothing more.
        let active = job.identity.license.is_some_and(
            |id| matches!(state.store.license(id), Ok(Some(license)) if !license.disabled),
        );
        if !active {
            continue;
        }
        // v2 client libraries resolve a `say` only on `message_sent`: a queued message is
        // answered again, with the same id, once it is stored.
        let outcome = execute(&state, &job.identity, job.action).await;
        if let Some(lane) = lane.upgrade() {
            lane.done();
        }
        let packet = match outcome {
            Ok(()) => ServerPacket::Success {
                id: job.id,
                reason: decentd_protocol::chatbox::SuccessReason::MessageSent,
            },
            Err(refused) => error_packet(refused, job.id),
        };
        let _ = job.reply.try_send(packet.to_json().into());
    }
}
