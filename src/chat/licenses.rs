//! License keys: 256 random bits as 64 hex characters, shown once; only their SHA-256 is
//! stored. A license's capabilities never exceed what its owner may do: `read` and `command`
//! need nothing more than an account (events are filtered by what the owner may read), `say`
//! and `tell` need sendMessages server-wide; the check runs when the license is created and
//! again on every connection, and `say` also needs sendMessages in the target channel.

use sha2::{Digest, Sha256};

use serde_json::{json, Value};

use crate::auth::random_bytes;
use crate::error::{ApiError, ApiResult, ErrorCode};
use crate::ids::{now_ms, unix_seconds};
use crate::perms::{Permission, Requester};
use crate::store::{KeyLookup, LicenseKeyHash, LicenseRecord, UserRecord};
use decentd_protocol::chatbox::{Capability, CloseReason};

use super::{id, Caller, Chat};

/// Longest license label, in characters.
pub const MAX_LABEL_CHARS: usize = 64;

/// Who a bot connection acts as: a license (with its owner and effective capabilities) or a
/// guest.
#[derive(Debug, Clone)]
pub struct Identity {
    pub license: Option<u64>,
    pub owner: Option<UserRecord>,
    /// Capability bits, already clamped to what the owner may do now.
    pub capabilities: u8,
}

impl Identity {
    pub fn has(&self, capability: Capability) -> bool {
        self.capabilities & capability.bit() != 0
    }

    pub fn requester(&self) -> Requester {
        self.owner
            .as_ref()
            .map_or(Requester::Guest, |o| Requester::User(o.id))
    }
}

/// Length of a license key in characters.
pub const KEY_CHARS: usize = 64;

/// A new random license key.
pub fn new_key() -> String {
    hex::encode(random_bytes::<32>())
}

/// The stored form of a key; None if it cannot be a key (`invalid_license_key`).
pub fn key_hash(key: &str) -> Option<LicenseKeyHash> {
    (key.len() == KEY_CHARS && key.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| Sha256::digest(key.to_ascii_lowercase().as_bytes()).into())
}

/// The capabilities a user may give a license now, as bits.
pub fn allowed(state: &Chat, user: u64) -> u8 {
    let mut bits = Capability::Read.bit() | Capability::Command.bit();
    if state
        .perms()
        .has(Requester::User(user), None, Permission::SendMessages)
    {
        bits |= Capability::Say.bit() | Capability::Tell.bit();
    }
    bits
}

/// Who a key connects as, or why it may not.
pub fn identify(state: &Chat, key: &str) -> Result<Identity, CloseReason> {
    let hash = key_hash(key).ok_or(CloseReason::InvalidLicenseKey)?;
    let lookup = state.store.license_by_key(&hash).map_err(|e| {
        tracing::error!(error = %e, "cannot look a license up");
        CloseReason::FatalError
    })?;
    let license = match lookup {
        KeyLookup::Active(license) => license,
        KeyLookup::Revoked => return Err(CloseReason::ChangedLicenseKey),
        KeyLookup::Unknown => return Err(CloseReason::UnknownLicenseKey),
    };
    if license.disabled {
        return Err(CloseReason::DisabledLicense);
    }
    let owner = match state.store.user(license.owner) {
        Ok(Some(owner)) => owner,
        Ok(None) => return Err(CloseReason::ChangedLicenseKey),
        Err(e) => {
            tracing::error!(error = %e, "cannot load a license owner");
            return Err(CloseReason::FatalError);
        }
    };
    Ok(Identity {
        license: Some(license.id),
        capabilities: license.capabilities & allowed(state, owner.id),
        owner: Some(owner),
    })
}

/// Creates a license; answers the record and the key (which is never shown again).
pub async fn create(
    state: &Chat,
    owner: &UserRecord,
    capabilities: u8,
    label: String,
    from_chat: bool,
) -> ApiResult<(LicenseRecord, String)> {
    let key = new_key();
    let hash = key_hash(&key).ok_or_else(|| ApiError::internal("a new key is malformed"))?;
    let license = LicenseRecord {
        id: state.store.next_id(),
        owner: owner.id,
        capabilities,
        label,
        created_ms: now_ms(),
        disabled: false,
        from_chat,
    };
    state.store.insert_license(&hash, &license)?;
    state.store.durable().await?;
    tracing::info!(
        license = license.id,
        owner = %owner.username,
        capabilities = ?Capability::from_bits(capabilities),
        "chatbox license created"
    );
    Ok((license, key))
}

/// Revokes a license and closes its connections with `changed_license_key`.
pub fn revoke(state: &Chat, license: u64) -> ApiResult<LicenseRecord> {
    let record = state
        .store
        .revoke_license(license)?
        .ok_or_else(|| ApiError::not_found("license"))?;
    if let Some(bots) = state.bots() {
        bots.kick_license(license, CloseReason::ChangedLicenseKey);
    }
    tracing::info!(license, owner = record.owner, "chatbox license revoked");
    Ok(record)
}

/// The in-chat `\chatbox ...` command: the private answer.
pub async fn chat_command(state: &Chat, user: &UserRecord, args: &[String]) -> ApiResult<String> {
    let words: Vec<String> = args.iter().map(|a| a.to_ascii_lowercase()).collect();
    if words != ["license", "register"] {
        return Ok(
            "Usage: \\chatbox license register (creates a chatbox license key for your \
                   bots; registering again replaces the previous key)"
                .into(),
        );
    }
    // Registering again replaces the key registered in chat before (its bots are told the
    // key changed).
    for old in state.store.licenses_of(user.id)? {
        if old.from_chat {
            revoke(state, old.id)?;
        }
    }
    let capabilities = allowed(state, user.id);
    let (_, key) = create(state, user, capabilities, "chat".into(), true).await?;
    let names: Vec<&str> = Capability::from_bits(capabilities)
        .into_iter()
        .map(Capability::key)
        .collect();
    Ok(format!(
        "Your chatbox license key is {key} (capabilities: {}). Connect your bot to /v2/{key} on \
         this server. Keep it secret: it is shown only this once, and registering again \
         replaces it.",
        names.join(", ")
    ))
}

/// Parses requested capability names; NOT_ALLOWED for one the user may not give.
pub fn requested(state: &Chat, user: u64, names: &[String]) -> ApiResult<u8> {
    let allowed = allowed(state, user);
    let mut bits = 0;
    for name in names {
        let capability = Capability::from_key(name).ok_or_else(|| {
            ApiError::invalid_type(
                "capabilities",
                "an array of \"read\", \"command\", \"say\", \"tell\"",
            )
        })?;
        if allowed & capability.bit() == 0 {
            return Err(ApiError::new(
                ErrorCode::NotAllowed,
                format!(
                    "you may not give a license the {} capability: it needs the sendMessages permission",
                    capability.key()
                ),
            )
            .with("parameter", "capabilities"));
        }
        bits |= capability.bit();
    }
    Ok(bits)
}

/// A license as the API shows it.
pub fn view(state: &Chat, license: &LicenseRecord) -> Value {
    json!({
        "id": license.id.to_string(),
        "ownerID": license.owner.to_string(),
        "label": license.label,
        "capabilities": Capability::from_bits(license.capabilities),
        "dateCreated": unix_seconds(license.created_ms),
        "disabled": license.disabled,
        "connections": state.bots().map_or(0, |b| b.connections_of(license.id)),
    })
}

/// A new license for the caller, with the capabilities named (or all they may give): the
/// record and the key, which is shown only this once.
pub async fn create_by(
    state: &Chat,
    caller: Caller<'_>,
    capabilities: Option<&[String]>,
    label: String,
) -> ApiResult<(LicenseRecord, String)> {
    let user = caller.user()?;
    let capabilities = match capabilities {
        Some(names) => requested(state, user.id, names)?,
        None => allowed(state, user.id),
    };
    if label.chars().count() > MAX_LABEL_CHARS || label.chars().any(char::is_control) {
        return Err(ApiError::invalid_type(
            "label",
            "a string of at most 64 characters without control characters",
        ));
    }
    create(state, user, capabilities, label, false).await
}

/// Whose licenses to list.
#[derive(Debug, Clone, Copy)]
pub enum Owners<'a> {
    /// The caller's.
    Mine,
    /// One user's (by ID); another user's needs manageServer.
    User(&'a str),
    /// Everyone's (manageServer).
    All,
}

/// Licenses of the caller, of a user, or of everyone.
pub fn list(state: &Chat, caller: Caller<'_>, owners: Owners<'_>) -> ApiResult<Vec<LicenseRecord>> {
    let me = caller.user()?.id;
    Ok(match owners {
        Owners::All => {
            state.require(caller.requester(), Permission::ManageServer)?;
            state.store.all_licenses()?
        }
        Owners::User(raw) if raw != me.to_string() => {
            state.require(caller.requester(), Permission::ManageServer)?;
            state.store.licenses_of(id(raw, "user")?)?
        }
        _ => state.store.licenses_of(me)?,
    })
}

/// The license an ID names, if the caller owns it or has manageServer; NOT_FOUND otherwise.
fn find(state: &Chat, caller: Caller<'_>, raw: &str, staff_only: bool) -> ApiResult<LicenseRecord> {
    let user = caller.user()?;
    let license = state
        .store
        .license(id(raw, "license")?)?
        .ok_or_else(|| ApiError::not_found("license"))?;
    let staff = state
        .granted(caller.requester(), None)
        .has(Permission::ManageServer);
    if staff {
        return Ok(license);
    }
    if license.owner != user.id {
        return Err(ApiError::not_found("license"));
    }
    if staff_only {
        return Err(ApiError::missing_permission(Permission::ManageServer));
    }
    Ok(license)
}

/// Revokes a license (its owner or manageServer).
pub async fn revoke_by(state: &Chat, caller: Caller<'_>, raw: &str) -> ApiResult<()> {
    let license = find(state, caller, raw, false)?;
    revoke(state, license.id)?;
    state.store.durable().await?;
    Ok(())
}

/// Disables or enables a license (manageServer): the new record. A disabled license's bots
/// are closed with `disabled_license`.
pub async fn switch(
    state: &Chat,
    caller: Caller<'_>,
    raw: &str,
    disabled: bool,
) -> ApiResult<LicenseRecord> {
    let license = find(state, caller, raw, true)?;
    if license.disabled == disabled {
        let what = if disabled { "disabled" } else { "enabled" };
        return Err(ApiError::new(
            ErrorCode::AlreadyPerformed,
            format!("the license is already {what}"),
        ));
    }
    let license = state
        .store
        .update_license(license.id, &|l| l.disabled = disabled)?
        .ok_or_else(|| ApiError::not_found("license"))?;
    state.store.durable().await?;
    if disabled {
        if let Some(bots) = state.bots() {
            bots.kick_license(license.id, CloseReason::DisabledLicense);
        }
    }
    tracing::info!(license = license.id, disabled, "chatbox license switched");
    Ok(license)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_long_random_hex_and_hash_case_insensitively() {
        let a = new_key();
        let b = new_key();
        assert_eq!(a.len(), KEY_CHARS);
        assert_ne!(a, b);
        assert_eq!(key_hash(&a), key_hash(&a.to_ascii_uppercase()));
        assert_ne!(key_hash(&a), key_hash(&b));
        assert_eq!(key_hash("guest"), None);
        assert_eq!(key_hash(&"g".repeat(KEY_CHARS)), None);
        assert_eq!(key_hash(&a[1..]), None);
    }
}
