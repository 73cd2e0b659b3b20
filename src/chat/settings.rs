//! Server settings: the spec's name and icon, and the read-access preset of the internal
//! roles (an extension).

use serde::Serialize;
use serde_json::json;

use crate::error::{ApiError, ApiResult, ErrorCode};
use crate::events::Audience;
use crate::perms::{Change, Permission, ReadAccess};
use crate::store::Settings;

use super::roles::{internal_json, RoleRef};
use super::{Caller, Chat};

/// Longest accepted server name.
pub const MAX_SERVER_NAME_LEN: usize = 100;

/// The settings object: the spec's `name` and `iconURL`, and the extension key `readAccess`
/// (the read-access preset of the internal roles).
#[derive(Debug, Serialize)]
pub struct SettingsView {
    pub name: String,
    #[serde(rename = "iconURL")]
    pub icon_url: String,
    #[serde(rename = "readAccess")]
    pub read_access: &'static str,
}

fn settings_view(s: Settings, access: ReadAccess) -> SettingsView {
    SettingsView {
        name: s.name,
        icon_url: s.icon_url,
        read_access: access.key(),
    }
}

/// The settings.
pub fn get(state: &Chat) -> ApiResult<SettingsView> {
    let settings = state.store.settings()?;
    let access = state.perms().read_access();
    Ok(settings_view(settings, access))
}

/// Changes the settings (manageServer). A new read-access preset changes the internal roles.
pub async fn patch(
    state: &Chat,
    caller: Caller<'_>,
    name: Option<String>,
    icon_url: Option<String>,
    read_access: Option<ReadAccess>,
) -> ApiResult<()> {
    state.require(caller.requester(), Permission::ManageServer)?;
    if let Some(name) = &name {
        let len = name.trim().chars().count();
        if len == 0 || len > MAX_SERVER_NAME_LEN {
            return Err(ApiError::new(
                ErrorCode::InvalidName,
                format!("the server name must be 1 to {MAX_SERVER_NAME_LEN} characters"),
            ));
        }
    }
    // An empty icon URL removes the icon; any other is an image URL as an emote's is.
    if let Some(url) = icon_url.as_deref().filter(|u| !u.is_empty()) {
        crate::domain::validate_image_url_of("iconURL", url)?;
    }
    // The stored preset and the index change together, under the index's write lock.
    let (settings, access, before) = state.change_perms(|index| {
        let before = index.read_access();
        let settings = state.store.update_settings(
            &|s| {
                if let Some(name) = &name {
                    s.name = name.trim().to_owned();
                }
                if let Some(url) = &icon_url {
                    s.icon_url = url.clone();
                }
            },
            read_access,
        )?;
        let access = read_access.unwrap_or(before);
        Ok::<_, ApiError>((
            (settings, access, before),
            vec![Change::SetReadAccess(access)],
        ))
    })?;
    let access_changed = access != before;
    state.durable_with_perms().await?;
    if access_changed {
        tracing::info!(read_access = %access, "read access of the internal roles changed");
    }
    state.emit(
        "server-settings/update",
        json!({ "settings": settings_view(settings, access) }),
        Audience::Everyone,
    );
    if access_changed {
        for role in [RoleRef::User, RoleRef::Everyone] {
            state.emit(
                "role/update",
                json!({ "role": internal_json(role, access) }),
                Audience::Everyone,
            );
        }
    }
    Ok(())
}
