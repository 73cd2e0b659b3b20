//! Permissions and the in-memory permission index (spec 2.5).
//!
//! A role's tri-state permission object is two bitmasks: `allow` (keys set to true) and `deny`
//! (keys set to false). Resolving the cascade walks the applicable permission objects in
//! priority order and lets the first object that mentions a key decide it, which is a few
//! AND/OR operations per object. The index never reads storage: it is loaded at startup and
//! updated by the code that writes roles, role order, user role sets and channel overrides.

use serde_json::{Map, Value};
use std::collections::HashMap;

/// One permission key of the Decent permission table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Permission {
    ManageServer = 0,
    ManageUsers,
    ManageRoles,
    GrantRoles,
    ManageChannels,
    ManagePins,
    ManageEmotes,
    ReadMessages,
    SendMessages,
    DeleteMessages,
    SendSystemMessages,
    UploadImages,
    AllowNonUnique,
}

impl Permission {
    /// Every permission, in table order.
    pub const ALL: [Permission; 13] = [
        Permission::ManageServer,
        Permission::ManageUsers,
        Permission::ManageRoles,
        Permission::GrantRoles,
        Permission::ManageChannels,
        Permission::ManagePins,
        Permission::ManageEmotes,
        Permission::ReadMessages,
        Permission::SendMessages,
        Permission::DeleteMessages,
        Permission::SendSystemMessages,
        Permission::UploadImages,
        Permission::AllowNonUnique,
    ];

    /// The permissions that channel-specific overrides may set.
    pub const CHANNEL_OVERRIDABLE: [Permission; 5] = [
        Permission::ManageChannels,
        Permission::ReadMessages,
        Permission::SendMessages,
        Permission::DeleteMessages,
        Permission::SendSystemMessages,
    ];

    /// The key as it appears in permission objects.
    pub fn key(self) -> &'static str {
        match self {
            Permission::ManageServer => "manageServer",
            Permission::ManageUsers => "manageUsers",
            Permission::ManageRoles => "manageRoles",
            Permission::GrantRoles => "grantRoles",
            Permission::ManageChannels => "manageChannels",
            Permission::ManagePins => "managePins",
            Permission::ManageEmotes => "manageEmotes",
            Permission::ReadMessages => "readMessages",
            Permission::SendMessages => "sendMessages",
            Permission::DeleteMessages => "deleteMessages",
            Permission::SendSystemMessages => "sendSystemMessages",
            Permission::UploadImages => "uploadImages",
            Permission::AllowNonUnique => "allowNonUnique",
        }
    }

    pub fn from_key(key: &str) -> Option<Permission> {
        Permission::ALL.into_iter().find(|p| p.key() == key)
    }

    /// This permission's bit in a mask.
    pub const fn bit(self) -> u32 {
        1 << self as u8
    }
}

/// A bitmask with every permission set.
pub const ALL_BITS: u32 = (1 << Permission::ALL.len()) - 1;

/// A tri-state permission object: each key granted, denied, or unset.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PermissionSet {
    pub allow: u32,
    pub deny: u32,
}

/// Why a JSON permission object was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PermissionObjectError {
    UnknownKey(String),
    NotBoolean(String),
}

impl PermissionSet {
    /// Every permission granted.
    pub const ALL_GRANTED: PermissionSet = PermissionSet {
        allow: ALL_BITS,
        deny: 0,
    };

    pub fn with(mut self, permission: Permission, value: Option<bool>) -> Self {
        let bit = permission.bit();
        self.allow &= !bit;
        self.deny &= !bit;
        match value {
            Some(true) => self.allow |= bit,
            Some(false) => self.deny |= bit,
            None => {}
        }
        self
    }

    pub fn get(&self, permission: Permission) -> Option<bool> {
        let bit = permission.bit();
        if self.allow & bit != 0 {
            Some(true)
        } else if self.deny & bit != 0 {
            Some(false)
        } else {
            None
        }
    }

    /// Keys that this object mentions (true or false).
    pub fn mentioned(&self) -> u32 {
        self.allow | self.deny
    }

    /// Parses a permission object: keys from the table, values boolean (or null for unset).
    pub fn from_json(object: &Map<String, Value>) -> Result<Self, PermissionObjectError> {
        let mut set = PermissionSet::default();
        for (key, value) in object {
            let permission = Permission::from_key(key)
                .ok_or_else(|| PermissionObjectError::UnknownKey(key.clone()))?;
            let value = match value {
                Value::Bool(b) => Some(*b),
                Value::Null => None,
                _ => return Err(PermissionObjectError::NotBoolean(key.clone())),
            };
            set = set.with(permission, value);
        }
        Ok(set)
    }

    /// The permission object with only the keys that are set.
    pub fn to_json(&self) -> Map<String, Value> {
        Permission::ALL
            .into_iter()
            .filter_map(|p| self.get(p).map(|v| (p.key().to_owned(), Value::Bool(v))))
            .collect()
    }
}

/// The result of resolving the cascade: the set of granted permissions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Granted(pub u32);

impl Granted {
    pub fn has(self, permission: Permission) -> bool {
        self.0 & permission.bit() != 0
    }

    /// The full permission object, every key true or false.
    pub fn to_json(self) -> Map<String, Value> {
        Permission::ALL
            .into_iter()
            .map(|p| (p.key().to_owned(), Value::Bool(self.has(p))))
            .collect()
    }
}

/// Folds permission objects, most prioritized first, into granted bits.
#[derive(Debug, Default, Clone, Copy)]
struct Cascade {
    decided: u32,
    granted: u32,
}

impl Cascade {
    #[inline]
    fn apply(&mut self, set: &PermissionSet) {
        let fresh = set.mentioned() & !self.decided;
        self.granted |= set.allow & fresh;
        self.decided |= fresh;
    }
}

/// Who is asking: a guest (no valid session) or a logged-in user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Requester {
    Guest,
    User(u64),
}

/// The fixed server-wide permissions of the internal `_everyone` role. The spec's table says
/// "all false"; like the reference server we let everyone read messages, so that a fresh server
/// is usable. Channel overrides can still take reading away. Written down in ARCHITECTURE.md.
pub const EVERYONE_PERMISSIONS: PermissionSet = PermissionSet {
    allow: Permission::ReadMessages.bit(),
    deny: ALL_BITS & !Permission::ReadMessages.bit(),
};

/// The fixed server-wide permissions of the internal `_user` role: `{ sendMessages: true }`.
pub const USER_PERMISSIONS: PermissionSet = PermissionSet {
    allow: Permission::SendMessages.bit(),
    deny: 0,
};

/// Channel-specific overrides of one channel.
#[derive(Debug, Clone, Default)]
pub struct ChannelOverrides {
    pub everyone: PermissionSet,
    pub user: PermissionSet,
    pub roles: HashMap<u64, PermissionSet>,
}

/// All roles, their order, channel overrides and user role sets, in memory.
#[derive(Debug, Default, Clone)]
pub struct PermissionIndex {
    /// Server-wide permissions of ordinary roles.
    roles: HashMap<u64, PermissionSet>,
    /// Ordinary role ids, most prioritized first.
    order: Vec<u64>,
    /// Position of each role in `order`.
    rank: HashMap<u64, usize>,
    /// Each user's roles, sorted by priority.
    user_roles: HashMap<u64, Vec<u64>>,
    channels: HashMap<u64, ChannelOverrides>,
}

impl PermissionIndex {
    /// Builds an index from roles, the prioritization order and user role sets.
    pub fn new(
        roles: impl IntoIterator<Item = (u64, PermissionSet)>,
        order: Vec<u64>,
        users: impl IntoIterator<Item = (u64, Vec<u64>)>,
    ) -> Self {
        let mut index = PermissionIndex {
            roles: roles.into_iter().collect(),
            ..Default::default()
        };
        index.set_order(order);
        for (user, roles) in users {
            index.set_user_roles(user, roles);
        }
        index
    }

    /// Adds or replaces an ordinary role's server-wide permissions. A role missing from the
    /// order is placed last.
    pub fn put_role(&mut self, id: u64, permissions: PermissionSet) {
        self.roles.insert(id, permissions);
        if !self.rank.contains_key(&id) {
            self.rank.insert(id, self.order.len());
            self.order.push(id);
        }
    }

    /// Sets the prioritization order (most prioritized first) and re-sorts user role sets.
    pub fn set_order(&mut self, order: Vec<u64>) {
        self.rank = order.iter().enumerate().map(|(i, id)| (*id, i)).collect();
        self.order = order;
        let users: Vec<u64> = self.user_roles.keys().copied().collect();
        for user in users {
            let roles = self.user_roles.remove(&user).unwrap_or_default();
            self.set_user_roles(user, roles);
        }
    }

    /// Replaces a user's role set; unknown roles are kept out.
    pub fn set_user_roles(&mut self, user: u64, roles: Vec<u64>) {
        let mut roles: Vec<u64> = roles
            .into_iter()
            .filter(|r| self.rank.contains_key(r))
            .collect();
        roles.sort_by_key(|r| self.rank[r]);
        roles.dedup();
        self.user_roles.insert(user, roles);
    }

    pub fn remove_user(&mut self, user: u64) {
        self.user_roles.remove(&user);
    }

    pub fn set_channel_overrides(&mut self, channel: u64, overrides: ChannelOverrides) {
        self.channels.insert(channel, overrides);
    }

    /// The role ids of a user, most prioritized first.
    pub fn roles_of(&self, user: u64) -> &[u64] {
        self.user_roles.get(&user).map(Vec::as_slice).unwrap_or(&[])
    }

    /// The ordinary roles, most prioritized first.
    pub fn order(&self) -> &[u64] {
        &self.order
    }

    /// Resolves every permission for a requester, server-wide or in a channel.
    pub fn resolve(&self, who: Requester, channel: Option<u64>) -> Granted {
        let mut cascade = Cascade::default();
        let roles = match who {
            Requester::User(id) => self.roles_of(id),
            Requester::Guest => &[],
        };
        let is_user = matches!(who, Requester::User(_));
        if let Some(overrides) = channel.and_then(|c| self.channels.get(&c)) {
            for role in roles {
                if let Some(set) = overrides.roles.get(role) {
                    cascade.apply(set);
                }
            }
            if is_user {
                cascade.apply(&overrides.user);
            }
            cascade.apply(&overrides.everyone);
        }
        for role in roles {
            if let Some(set) = self.roles.get(role) {
                cascade.apply(set);
            }
        }
        if is_user {
            cascade.apply(&USER_PERMISSIONS);
        }
        cascade.apply(&EVERYONE_PERMISSIONS);
        Granted(cascade.granted)
    }

    /// Whether a requester holds one permission, server-wide or in a channel.
    pub fn has(&self, who: Requester, channel: Option<u64>, permission: Permission) -> bool {
        self.resolve(who, channel).has(permission)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn set(v: Value) -> PermissionSet {
        PermissionSet::from_json(v.as_object().unwrap()).unwrap()
    }

    #[test]
    fn the_docs_three_object_example_reads_but_does_not_send() {
        // Most prioritized first, as in the API doc's walkthrough.
        let index = PermissionIndex::new(
            [
                (1, set(json!({"sendMessages": false}))),
                (2, set(json!({"readMessages": true, "sendMessages": true}))),
                (
                    3,
                    set(json!({"readMessages": false, "sendMessages": false})),
                ),
            ],
            vec![1, 2, 3],
            [(7, vec![3, 1, 2])],
        );
        let granted = index.resolve(Requester::User(7), None);
        assert!(granted.has(Permission::ReadMessages));
        assert!(!granted.has(Permission::SendMessages));
    }

    #[test]
    fn order_of_a_users_role_list_does_not_matter() {
        let roles = [
            (1, set(json!({"manageServer": true}))),
            (2, set(json!({"manageServer": false}))),
        ];
        let a = PermissionIndex::new(roles, vec![2, 1], [(7, vec![1, 2])]);
        let b = PermissionIndex::new(roles, vec![2, 1], [(7, vec![2, 1])]);
        assert!(!a.has(Requester::User(7), None, Permission::ManageServer));
        assert!(!b.has(Requester::User(7), None, Permission::ManageServer));
    }

    #[test]
    fn guests_get_only_everyone_and_users_get_send() {
        let index = PermissionIndex::default();
        let guest = index.resolve(Requester::Guest, None);
        let user = index.resolve(Requester::User(1), None);
        assert!(guest.has(Permission::ReadMessages) && !guest.has(Permission::SendMessages));
        assert!(user.has(Permission::SendMessages));
        assert!(!user.has(Permission::ManageServer));
    }

    #[test]
    fn channel_overrides_come_before_server_wide_roles() {
        let mut index = PermissionIndex::new(
            [(1, set(json!({"readMessages": true})))],
            vec![1],
            [(7, vec![1])],
        );
        let mut overrides = ChannelOverrides {
            everyone: set(json!({"readMessages": false})),
            ..Default::default()
        };
        index.set_channel_overrides(9, overrides.clone());
        // The _everyone channel override outranks the user's server-wide role.
        assert!(!index.has(Requester::User(7), Some(9), Permission::ReadMessages));
        assert!(index.has(Requester::User(7), None, Permission::ReadMessages));
        overrides
            .roles
            .insert(1, set(json!({"readMessages": true})));
        index.set_channel_overrides(9, overrides);
        assert!(index.has(Requester::User(7), Some(9), Permission::ReadMessages));
        assert!(!index.has(Requester::Guest, Some(9), Permission::ReadMessages));
    }

    #[test]
    fn permission_objects_round_trip_and_reject_bad_input() {
        let object = json!({"manageRoles": true, "sendMessages": false});
        let parsed = set(object.clone());
        assert_eq!(Value::Object(parsed.to_json()), object);
        let bad_key = json!({"fly": true});
        assert_eq!(
            PermissionSet::from_json(bad_key.as_object().unwrap()),
            Err(PermissionObjectError::UnknownKey("fly".into()))
        );
        let bad_value = json!({"fly": 1, "readMessages": 1});
        assert!(PermissionSet::from_json(bad_value.as_object().unwrap()).is_err());
    }
}
