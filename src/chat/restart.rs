//! A scheduled graceful stop (`POST /api/restart`, or a stop signal with `--restart-grace`):
//! kept in the core, announced to bots by the gateway, carried out by the serve loop.

use crate::error::{ApiError, ApiResult, ErrorCode};
use crate::ids::now_ms;
use crate::perms::Permission;

use super::{Caller, Chat};

/// Longest restart delay `POST /api/restart` accepts, in seconds (a day).
pub const MAX_RESTART_SECONDS: u64 = 86_400;

/// A scheduled graceful stop.
#[derive(Debug, Clone, PartialEq)]
pub struct Restart {
    /// `"manual"` (scheduled over HTTP) or `"automatic"` (a stop signal with a grace period).
    pub kind: &'static str,
    pub seconds: u64,
    pub scheduled_ms: u64,
    pub at_ms: u64,
}

impl Restart {
    pub fn new(kind: &'static str, seconds: u64) -> Self {
        let now = now_ms();
        Self {
            kind,
            seconds,
            scheduled_ms: now,
            at_ms: now + seconds * 1000,
        }
    }
}

/// The scheduled stop, for a caller with manageServer.
pub fn get(chat: &Chat, caller: Caller<'_>) -> ApiResult<Option<Restart>> {
    chat.require(caller.requester(), Permission::ManageServer)?;
    Ok(chat.restart.borrow().clone())
}

/// Schedules a stop in `seconds` (manageServer); ALREADY_PERFORMED while one is scheduled.
pub fn schedule_by(chat: &Chat, caller: Caller<'_>, seconds: u64) -> ApiResult<Restart> {
    chat.require(caller.requester(), Permission::ManageServer)?;
    if chat.restart.borrow().is_some() {
        return Err(ApiError::new(
            ErrorCode::AlreadyPerformed,
            "a restart is already scheduled; cancel it first",
        ));
    }
    let restart = Restart::new("manual", seconds);
    schedule(chat, restart.clone());
    Ok(restart)
}

/// Cancels the scheduled stop (manageServer); NOT_FOUND when none is scheduled.
pub fn cancel_by(chat: &Chat, caller: Caller<'_>) -> ApiResult<()> {
    chat.require(caller.requester(), Permission::ManageServer)?;
    if !cancel(chat) {
        return Err(ApiError::not_found("scheduled restart"));
    }
    Ok(())
}

/// Announces a graceful stop to bots and to the serve loop, which stops the server then.
pub fn schedule(chat: &Chat, restart: Restart) {
    tracing::info!(
        kind = restart.kind,
        seconds = restart.seconds,
        "server restart scheduled"
    );
    if let Some(bots) = chat.bots() {
        bots.restart_scheduled(&restart);
    }
    chat.restart.send_replace(Some(restart));
}

/// Cancels the scheduled stop; false if none was scheduled.
pub fn cancel(chat: &Chat) -> bool {
    let Some(restart) = chat.restart.send_replace(None) else {
        return false;
    };
    tracing::info!(kind = restart.kind, "server restart cancelled");
    if let Some(bots) = chat.bots() {
        bots.restart_cancelled(&restart);
    }
    true
}
