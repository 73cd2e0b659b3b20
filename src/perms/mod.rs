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

/// Who may read without a role: the server-wide permissions of the internal roles `_everyone`
/// and `_user`, a server setting (`readAccess` in `GET/PATCH /api/settings`, `--read-access`
/// for the first start; README "Read access"). Channel overrides apply on top, the same way
/// under every preset.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReadAccess {
    /// Exactly the spec's table: `_everyone` all false, `_user` only `sendMessages`.
    Spec,
    /// Logged-in users also read (`_user`: `sendMessages`, `readMessages`); guests read
    /// nothing. What a new server starts with.
    #[default]
    Members,
    /// Everyone reads, guests included (`_everyone`: `readMessages`), as the reference
    /// server does. What data directories from before this setting keep.
    Public,
}

impl ReadAccess {
    pub const ALL: [ReadAccess; 3] = [ReadAccess::Spec, ReadAccess::Members, ReadAccess::Public];

    pub const fn key(self) -> &'static str {
        match self {
            ReadAccess::Spec => "spec",
            ReadAccess::Members => "members",
            ReadAccess::Public => "public",
        }
    }

    pub fn parse(key: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.key() == key)
    }

    /// The server-wide permission object of `_everyone`: every key false, except
    /// `readMessages` under `public`.
    pub const fn everyone(self) -> PermissionSet {
        let read = match self {
            ReadAccess::Public => Permission::ReadMessages.bit(),
            _ => 0,
        };
        PermissionSet {
            allow: read,
            deny: ALL_BITS & !read,
        }
    }

    /// The server-wide permission object of `_user`: `sendMessages`, and `readMessages`
    /// under `members`.
    pub const fn user(self) -> PermissionSet {
        let read = match self {
            ReadAccess::Members => Permission::ReadMessages.bit(),
            _ => 0,
        };
        PermissionSet {
            allow: Permission::SendMessages.bit() | read,
            deny: 0,
        }
    }
}

impl std::fmt::Display for ReadAccess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.key())
    }
}

impl std::str::FromStr for ReadAccess {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Self::parse(s).ok_or_else(|| format!("`{s}` is not one of spec, members, public"))
    }
}

/// Hashes u64 ids with one multiplication (Fibonacci hashing). Ids are server-issued, not
/// attacker-chosen keys, so a keyed hash buys nothing here and would cost most of a lookup.
#[derive(Default, Clone, Copy)]
pub struct IdHasher(u64);

impl std::hash::Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = (n ^ (n >> 29)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

/// A map keyed by ids.
pub type IdMap<V> = HashMap<u64, V, std::hash::BuildHasherDefault<IdHasher>>;

/// Channel-specific overrides of one channel, by role.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ChannelOverrides {
    pub everyone: PermissionSet,
    pub user: PermissionSet,
    pub roles: HashMap<u64, PermissionSet>,
}

/// A channel's overrides with roles replaced by their rank, sorted most prioritized first.
#[derive(Debug, Clone, Default)]
struct RankedOverrides {
    everyone: PermissionSet,
    user: PermissionSet,
    roles: Vec<(u32, PermissionSet)>,
}

/// All roles, their order, channel overrides and user role sets, in memory.
///
/// The source data (roles by id, user role ids, channel overrides by role id) is kept as given;
/// from it the index derives rank-based forms that resolution walks without hashing: each
/// user's roles as ascending ranks, each channel's overrides as (rank, set) sorted by rank, and
/// role sets by rank. Changing the order re-derives them; that is rare, resolution is not.
#[derive(Debug, Default, Clone)]
pub struct PermissionIndex {
    roles: IdMap<PermissionSet>,
    /// Ordinary role ids, most prioritized first (rank = position).
    order: Vec<u64>,
    rank_of: IdMap<u32>,
    /// Server-wide permission set of the role at each rank.
    by_rank: Vec<PermissionSet>,
    user_roles: IdMap<Vec<u64>>,
    user_ranks: IdMap<Vec<u32>>,
    channels: IdMap<ChannelOverrides>,
    ranked_channels: IdMap<RankedOverrides>,
    read_access: ReadAccess,
    /// How many changes were applied since the index was built.
    seq: u64,
}

/// One change to the permission index: the only way the index changes after it is built, so
/// that a change made on another node (carried by an event bus) applies exactly as a local one.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Change {
    /// A new role at `position` in the order (0 = most prioritized; past the end = last).
    InsertRole {
        id: u64,
        permissions: PermissionSet,
        position: usize,
    },
    /// An existing role's server-wide permissions.
    UpdateRole {
        id: u64,
        permissions: PermissionSet,
    },
    /// A role removed everywhere: the order, user role sets and channel overrides.
    RemoveRole(u64),
    /// The prioritization order (most prioritized first), naming every role.
    SetOrder(Vec<u64>),
    /// A user's role set (also a new user).
    SetUserRoles {
        user: u64,
        roles: Vec<u64>,
    },
    RemoveUser(u64),
    /// A channel's overrides (also a new channel).
    SetChannelOverrides {
        channel: u64,
        overrides: ChannelOverrides,
    },
    RemoveChannel(u64),
    /// The preset of the internal roles.
    SetReadAccess(ReadAccess),
}

impl PermissionIndex {
    /// Builds an index from roles, the prioritization order and user role sets. Roles missing
    /// from the order are placed last.
    pub fn new(
        roles: impl IntoIterator<Item = (u64, PermissionSet)>,
        order: Vec<u64>,
        users: impl IntoIterator<Item = (u64, Vec<u64>)>,
    ) -> Self {
        let mut index = PermissionIndex {
            roles: roles.into_iter().collect(),
            user_roles: users.into_iter().collect(),
            ..Default::default()
        };
        let mut order: Vec<u64> = order
            .into_iter()
            .filter(|id| index.roles.contains_key(id))
            .collect();
        let mut missing: Vec<u64> = index
            .roles
            .keys()
            .filter(|id| !order.contains(id))
            .copied()
            .collect();
        missing.sort_unstable();
        order.extend(missing);
        index.set_order(order);
        index
    }

    fn rank_user(&self, roles: &[u64]) -> Vec<u32> {
        let mut ranks: Vec<u32> = roles
            .iter()
            .filter_map(|r| self.rank_of.get(r).copied())
            .collect();
        ranks.sort_unstable();
        ranks.dedup();
        ranks
    }

    fn rank_channel(&self, overrides: &ChannelOverrides) -> RankedOverrides {
        let mut roles: Vec<(u32, PermissionSet)> = overrides
            .roles
            .iter()
            .filter_map(|(id, set)| self.rank_of.get(id).map(|r| (*r, *set)))
            .collect();
        roles.sort_unstable_by_key(|(rank, _)| *rank);
        RankedOverrides {
            everyone: overrides.everyone,
            user: overrides.user,
            roles,
        }
    }

    /// Re-derives every rank-based form from the source data.
    fn reindex(&mut self) {
        self.rank_of = self
            .order
            .iter()
            .enumerate()
            .map(|(i, id)| (*id, i as u32))
            .collect();
        self.by_rank = self.order.iter().map(|id| self.roles[id]).collect();
        self.user_ranks = self
            .user_roles
            .iter()
            .map(|(user, roles)| (*user, self.rank_user(roles)))
            .collect();
        self.ranked_channels = self
            .channels
            .iter()
            .map(|(channel, o)| (*channel, self.rank_channel(o)))
            .collect();
    }

    /// Applies one change; returns the index's new sequence number.
    pub fn apply(&mut self, change: Change) -> u64 {
        match change {
            Change::InsertRole {
                id,
                permissions,
                position,
            } => self.insert_role(id, permissions, position),
            Change::UpdateRole { id, permissions } => self.update_role(id, permissions),
            Change::RemoveRole(id) => self.remove_role(id),
            Change::SetOrder(order) => self.set_order(order),
            Change::SetUserRoles { user, roles } => self.set_user_roles(user, roles),
            Change::RemoveUser(user) => self.remove_user(user),
            Change::SetChannelOverrides { channel, overrides } => {
                self.set_channel_overrides(channel, overrides)
            }
            Change::RemoveChannel(channel) => self.remove_channel(channel),
            Change::SetReadAccess(access) => self.read_access = access,
        }
        self.seq += 1;
        self.seq
    }

    /// How many changes were applied since the index was built: events carry it, so that a
    /// receiver knows which changes an event follows.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// Adds a role at `position` in the order (0 = most prioritized; past the end = last).
    fn insert_role(&mut self, id: u64, permissions: PermissionSet, position: usize) {
        self.roles.insert(id, permissions);
        self.order.retain(|r| *r != id);
        let position = position.min(self.order.len());
        self.order.insert(position, id);
        self.reindex();
    }

    /// Changes an existing role's server-wide permissions.
    fn update_role(&mut self, id: u64, permissions: PermissionSet) {
        if let Some(rank) = self.rank_of.get(&id) {
            self.by_rank[*rank as usize] = permissions;
            self.roles.insert(id, permissions);
        }
    }

    /// Removes a role everywhere: the order, user role sets and channel overrides.
    fn remove_role(&mut self, id: u64) {
        self.roles.remove(&id);
        self.order.retain(|r| *r != id);
        for roles in self.user_roles.values_mut() {
            roles.retain(|r| *r != id);
        }
        for overrides in self.channels.values_mut() {
            overrides.roles.remove(&id);
        }
        self.reindex();
    }

    /// Sets the prioritization order (most prioritized first). It must name every role.
    fn set_order(&mut self, order: Vec<u64>) {
        self.order = order;
        self.reindex();
    }

    /// Replaces a user's role set.
    fn set_user_roles(&mut self, user: u64, roles: Vec<u64>) {
        let ranks = self.rank_user(&roles);
        self.user_ranks.insert(user, ranks);
        self.user_roles.insert(user, roles);
    }

    fn remove_user(&mut self, user: u64) {
        self.user_roles.remove(&user);
        self.user_ranks.remove(&user);
    }

    /// The preset in force for the internal roles.
    pub fn read_access(&self) -> ReadAccess {
        self.read_access
    }

    /// Sets a channel's overrides (an empty `ChannelOverrides` removes them in effect).
    fn set_channel_overrides(&mut self, channel: u64, overrides: ChannelOverrides) {
        let ranked = self.rank_channel(&overrides);
        self.ranked_channels.insert(channel, ranked);
        self.channels.insert(channel, overrides);
    }

    fn remove_channel(&mut self, channel: u64) {
        self.channels.remove(&channel);
        self.ranked_channels.remove(&channel);
    }

    /// Whether a channel exists (every channel has an entry, with or without overrides).
    pub fn has_channel(&self, channel: u64) -> bool {
        self.channels.contains_key(&channel)
    }

    /// Every channel `who` may read (readMessages), in no order.
    pub fn readable_channels(&self, who: Requester) -> Vec<u64> {
        self.channels
            .keys()
            .copied()
            .filter(|c| self.has(who, Some(*c), Permission::ReadMessages))
            .collect()
    }

    /// A user's role ids as stored (unordered).
    pub fn user_role_ids(&self, user: u64) -> Option<&[u64]> {
        self.user_roles.get(&user).map(Vec::as_slice)
    }

    /// A role's server-wide permissions, if it is an ordinary role.
    pub fn role(&self, id: u64) -> Option<PermissionSet> {
        self.roles.get(&id).copied()
    }

    /// A role's position in the order (0 = most prioritized).
    pub fn rank(&self, id: u64) -> Option<usize> {
        self.rank_of.get(&id).map(|r| *r as usize)
    }

    /// The rank of a user's most prioritized role, if they have any.
    pub fn top_rank(&self, user: u64) -> Option<usize> {
        self.user_ranks
            .get(&user)
            .and_then(|r| r.first())
            .map(|r| *r as usize)
    }

    /// The ordinary roles, most prioritized first.
    pub fn order(&self) -> &[u64] {
        &self.order
    }

    /// Walks the cascade; stops early once every bit in `wanted` is decided.
    #[inline]
    fn cascade(&self, who: Requester, channel: Option<u64>, wanted: u32) -> Cascade {
        let mut c = Cascade::default();
        let (ranks, is_user): (&[u32], bool) = match who {
            Requester::User(id) => (
                self.user_ranks.get(&id).map(Vec::as_slice).unwrap_or(&[]),
                true,
            ),
            Requester::Guest => (&[], false),
        };
        if let Some(o) = channel.and_then(|ch| self.ranked_channels.get(&ch)) {
            // Both lists ascend by rank: a merge walk finds the user's overridden roles.
            let (mut i, mut j) = (0, 0);
            while i < ranks.len() && j < o.roles.len() {
                let (rank, set) = &o.roles[j];
                match ranks[i].cmp(rank) {
                    std::cmp::Ordering::Less => i += 1,
                    std::cmp::Ordering::Greater => j += 1,
                    std::cmp::Ordering::Equal => {
                        c.apply(set);
                        i += 1;
                        j += 1;
                    }
                }
            }
            if is_user {
                c.apply(&o.user);
            }
            c.apply(&o.everyone);
            if c.decided & wanted == wanted {
                return c;
            }
        }
        for rank in ranks {
            c.apply(&self.by_rank[*rank as usize]);
            if c.decided & wanted == wanted {
                return c;
            }
        }
        if is_user {
            c.apply(&self.read_access.user());
        }
        c.apply(&self.read_access.everyone());
        c
    }

    /// Resolves every permission for a requester, server-wide or in a channel.
    pub fn resolve(&self, who: Requester, channel: Option<u64>) -> Granted {
        Granted(self.cascade(who, channel, ALL_BITS).granted)
    }

    /// Whether a requester holds one permission, server-wide or in a channel.
    pub fn has(&self, who: Requester, channel: Option<u64>, permission: Permission) -> bool {
        self.cascade(who, channel, permission.bit()).granted & permission.bit() != 0
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
    fn each_read_access_preset_gives_the_internal_roles_their_table() {
        let mut index = PermissionIndex::default();
        let reads = |index: &PermissionIndex, who| index.has(who, None, Permission::ReadMessages);
        // (preset, guest reads, user reads)
        for (access, guest, user) in [
            (ReadAccess::Spec, false, false),
            (ReadAccess::Members, false, true),
            (ReadAccess::Public, true, true),
        ] {
            index.apply(Change::SetReadAccess(access));
            assert_eq!(reads(&index, Requester::Guest), guest, "{access}");
            assert_eq!(reads(&index, Requester::User(1)), user, "{access}");
            let granted = index.resolve(Requester::User(1), None);
            assert!(granted.has(Permission::SendMessages));
            assert!(!granted.has(Permission::ManageServer));
            assert!(!index.has(Requester::Guest, None, Permission::SendMessages));
        }
        assert_eq!(
            PermissionIndex::default().read_access(),
            ReadAccess::Members
        );
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

/// The spec's algorithm transcribed step by step, checked against the index on random input.
#[cfg(test)]
mod cascade_property {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap;

    /// A permission object as the spec describes it: key → true/false, absent = undefined.
    type Object = HashMap<&'static str, bool>;

    fn object(set: &PermissionSet) -> Object {
        Permission::ALL
            .into_iter()
            .filter_map(|p| set.get(p).map(|v| (p.key(), v)))
            .collect()
    }

    /// Spec 2.5, steps 1-7, for key `k` over the list `r`.
    fn spec_resolve(k: &str, r: &[Object]) -> bool {
        for o in r {
            match o.get(k) {
                Some(true) => return true,
                Some(false) => return false,
                None => continue,
            }
        }
        false
    }

    #[derive(Debug, Clone)]
    struct World {
        roles: Vec<(u64, PermissionSet)>,
        order: Vec<u64>,
        user_roles: Vec<u64>,
        channel: ChannelOverrides,
    }

    fn set_strategy() -> impl Strategy<Value = PermissionSet> {
        (0..=ALL_BITS, 0..=ALL_BITS).prop_map(|(allow, deny)| PermissionSet {
            allow,
            deny: deny & !allow,
        })
    }

    fn world() -> impl Strategy<Value = World> {
        (1usize..8)
            .prop_flat_map(|n| {
                (
                    proptest::collection::vec(set_strategy(), n),
                    Just((1..=n as u64).collect::<Vec<u64>>()).prop_shuffle(),
                    proptest::collection::vec(any::<bool>(), n),
                    proptest::collection::vec(proptest::option::of(set_strategy()), n),
                    set_strategy(),
                    set_strategy(),
                )
            })
            .prop_map(|(sets, order, held, overrides, everyone, user)| {
                let roles: Vec<(u64, PermissionSet)> = sets
                    .into_iter()
                    .enumerate()
                    .map(|(i, s)| (i as u64 + 1, s))
                    .collect();
                let mut user_roles: Vec<u64> = roles
                    .iter()
                    .zip(&held)
                    .filter(|(_, h)| **h)
                    .map(|((id, _), _)| *id)
                    .collect();
                user_roles.reverse(); // The user's own list order must not matter.
                let mask = |s: PermissionSet| {
                    let m = Permission::CHANNEL_OVERRIDABLE
                        .iter()
                        .fold(0, |m, p| m | p.bit());
                    PermissionSet {
                        allow: s.allow & m,
                        deny: s.deny & m,
                    }
                };
                let channel = ChannelOverrides {
                    everyone: mask(everyone),
                    user: mask(user),
                    roles: roles
                        .iter()
                        .zip(overrides)
                        .filter_map(|((id, _), o)| o.map(|o| (*id, mask(o))))
                        .collect(),
                };
                World {
                    roles,
                    order,
                    user_roles,
                    channel,
                }
            })
    }

    /// The ordered list `r` of spec 2.5 for a user (or guest), in a channel or not.
    fn spec_list(w: &World, access: ReadAccess, user: bool, in_channel: bool) -> Vec<Object> {
        let mine: Vec<u64> = w
            .order
            .iter()
            .filter(|id| user && w.user_roles.contains(id))
            .copied()
            .collect();
        let mut r = Vec::new();
        if in_channel {
            for id in &mine {
                if let Some(o) = w.channel.roles.get(id) {
                    r.push(object(o));
                }
            }
            if user {
                r.push(object(&w.channel.user));
            }
            r.push(object(&w.channel.everyone));
        }
        for id in &mine {
            let set = w.roles.iter().find(|(r, _)| r == id).unwrap().1;
            r.push(object(&set));
        }
        if user {
            r.push(object(&access.user()));
        }
        r.push(object(&access.everyone()));
        r
    }

    proptest! {
        #[test]
        fn index_matches_the_spec_for_every_key(w in world()) {
            let mut index = PermissionIndex::new(
                w.roles.clone(),
                w.order.clone(),
                [(100, w.user_roles.clone())],
            );
            index.set_channel_overrides(7, w.channel.clone());
            for access in ReadAccess::ALL {
                index.apply(Change::SetReadAccess(access));
                for (who, user) in [(Requester::User(100), true), (Requester::Guest, false)] {
                    for (channel, in_channel) in [(None, false), (Some(7), true)] {
                        let list = spec_list(&w, access, user, in_channel);
                        let granted = index.resolve(who, channel);
                        for p in Permission::ALL {
                            let expected = spec_resolve(p.key(), &list);
                            prop_assert_eq!(granted.has(p), expected, "{} {:?} {:?} {}", p.key(), who, channel, access);
                            prop_assert_eq!(index.has(who, channel, p), expected);
                        }
                    }
                }
            }
        }
    }
}
