//! Who is asking: a guest, a user (a bot's license owner, a plugin's bot user) or a user with
//! the session they came with.

use crate::error::{ApiError, ApiResult};
use crate::perms::Requester;
use crate::store::UserRecord;

use super::sessions::Session;

/// The requester of a use case.
#[derive(Debug, Clone, Copy)]
pub enum Caller<'a> {
    Guest,
    /// A user acting without a session (bots and plugins act as users).
    User(&'a UserRecord),
    /// A user with the session of the request.
    Session(&'a Session),
}

impl<'a> Caller<'a> {
    /// A caller from an optional session.
    pub fn from_session(session: Option<&'a Session>) -> Self {
        session.map_or(Caller::Guest, Caller::Session)
    }

    /// The session, or NOT_ALLOWED for a use case that needs a logged-in user.
    pub fn session(&self) -> ApiResult<&'a Session> {
        match self {
            Caller::Session(session) => Ok(session),
            _ => Err(ApiError::login_required()),
        }
    }

    /// The user, or NOT_ALLOWED for a use case that needs one.
    pub fn user(&self) -> ApiResult<&'a UserRecord> {
        match self {
            Caller::Guest => Err(ApiError::login_required()),
            Caller::User(user) => Ok(user),
            Caller::Session(session) => Ok(&session.user),
        }
    }

    /// The user's ID, if any.
    pub fn user_id(&self) -> Option<u64> {
        self.user().ok().map(|u| u.id)
    }

    /// Who is asking, for permission checks.
    pub fn requester(&self) -> Requester {
        match self.user_id() {
            Some(id) => Requester::User(id),
            None => Requester::Guest,
        }
    }
}
