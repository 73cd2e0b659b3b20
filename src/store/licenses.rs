//! Chatbox licenses: `licenses` maps a license id to its record, `license_keys` maps the
//! SHA-256 of a license key to the license id. The key itself is never stored. Revoking a
//! license removes its record but keeps its key entry, so a revoked key is told apart from a
//! key that never existed (`changed_license_key` rather than `unknown_license_key`).

use serde::{Deserialize, Serialize};
use sled::transaction::Transactional;

use super::{codec, flatten, id_from_key, update_record, Result, Store};

/// A license: who owns it and what its bot may do.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LicenseRecord {
    pub id: u64,
    pub owner: u64,
    /// Capability bits (`decentd_protocol::chatbox::Capability::bit`).
    pub capabilities: u8,
    pub label: String,
    pub created_ms: u64,
    /// Disabled by a member of staff: connections are refused with `disabled_license`.
    pub disabled: bool,
    /// Registered with the in-chat `\chatbox license register` (which replaces the previous
    /// one of these).
    pub from_chat: bool,
}

/// What a license key names.
#[derive(Debug, Clone, PartialEq)]
pub enum KeyLookup {
    Active(LicenseRecord),
    Revoked,
    Unknown,
}

/// The SHA-256 of a license key.
pub type LicenseKeyHash = [u8; 32];

impl Store {
    pub fn insert_license(&self, key: &LicenseKeyHash, license: &LicenseRecord) -> Result<()> {
        let _gate = self.ensure_space()?;
        let value = codec::encode(license)?;
        let id = license.id.to_be_bytes();
        flatten(
            (&self.licenses, &self.license_keys).transaction(|(licenses, keys)| {
                licenses.insert(&id, value.as_slice())?;
                keys.insert(key.as_slice(), &id)?;
                Ok(())
            }),
        )
    }

    pub fn license(&self, id: u64) -> Result<Option<LicenseRecord>> {
        self.licenses
            .get(id.to_be_bytes())?
            .map(|v| codec::decode(&v))
            .transpose()
    }

    pub fn license_by_key(&self, key: &LicenseKeyHash) -> Result<KeyLookup> {
        let Some(id) = self.license_keys.get(key)? else {
            return Ok(KeyLookup::Unknown);
        };
        Ok(match self.license(id_from_key(&id))? {
            Some(license) => KeyLookup::Active(license),
            None => KeyLookup::Revoked,
        })
    }

    /// Every license of a user, oldest first.
    pub fn licenses_of(&self, owner: u64) -> Result<Vec<LicenseRecord>> {
        self.licenses_where(|l| l.owner == owner)
    }

    /// Every license, oldest first.
    pub fn all_licenses(&self) -> Result<Vec<LicenseRecord>> {
        self.licenses_where(|_| true)
    }

    fn licenses_where(&self, keep: impl Fn(&LicenseRecord) -> bool) -> Result<Vec<LicenseRecord>> {
        let mut out = Vec::new();
        for kv in self.licenses.iter() {
            let (_, v) = kv?;
            let license: LicenseRecord = codec::decode(&v)?;
            if keep(&license) {
                out.push(license);
            }
        }
        Ok(out)
    }

    /// Changes a license record; None if it does not exist.
    pub fn update_license(
        &self,
        id: u64,
        change: impl Fn(&mut LicenseRecord),
    ) -> Result<Option<LicenseRecord>> {
        let _gate = self.ensure_space()?;
        update_record(
            &self.licenses,
            &id.to_be_bytes(),
            |r: &mut Option<LicenseRecord>| {
                if let Some(r) = r {
                    change(r);
                }
            },
        )
    }

    /// Revokes a license: its key then names a revoked license. Returns the removed record.
    pub fn revoke_license(&self, id: u64) -> Result<Option<LicenseRecord>> {
        let _gate = self.ensure_space()?;
        self.licenses
            .remove(id.to_be_bytes())?
            .map(|v| codec::decode(&v))
            .transpose()
    }
}
