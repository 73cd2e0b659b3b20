//! License keys: 256 random bits as 64 hex characters, shown once; only their SHA-256 is
//! stored. A license's capabilities never exceed what its owner may do: `read` and `command`
//! need nothing more than an account (events are filtered by what the owner may read), `say`
//! and `tell` need sendMessages server-wide; the check runs when the license is created and
//! again on every connection, and `say` also needs sendMessages in the target channel.

use sha2::{Digest, Sha256};

use super::Identity;
use crate::auth::random_bytes;
use crate::error::{ApiError, ApiResult, ErrorCode};
use crate::ids::now_ms;
use crate::perms::{Permission, Requester};
use crate::state::AppState;
use crate::store::{KeyLookup, LicenseKeyHash, LicenseRecord, UserRecord};
use decentd_protocol::chatbox::{Capability, CloseReason};

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
pub fn allowed(state: &AppState, user: u64) -> u8 {
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
pub fn identify(state: &AppState, key: &str) -> Result<Identity, CloseReason> {
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
    state: &AppState,
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
pub fn revoke(state: &AppState, license: u64) -> ApiResult<LicenseRecord> {
    let record = state
        .store
        .revoke_license(license)?
        .ok_or_else(|| ApiError::not_found("license"))?;
    state
        .chatbox
        .kick_license(license, CloseReason::ChangedLicenseKey);
    tracing::info!(license, owner = record.owner, "chatbox license revoked");
    Ok(record)
}

/// The in-chat `\chatbox ...` command: the private answer.
pub async fn chat_command(
    state: &AppState,
    user: &UserRecord,
    args: &[String],
) -> ApiResult<String> {
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
pub fn requested(state: &AppState, user: u64, names: &[String]) -> ApiResult<u8> {
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
