//! Plugin state: `plugins` maps a plugin name to its record (bot user, enabled flag), and
//! `plugin_kv` holds each plugin's private key-value space under `name ‖ 0 ‖ key`.

use serde::{Deserialize, Serialize};
use sled::Tree;

use super::space::SpaceGuard;
use super::{codec, Result, Store, StoreError};
use std::sync::Arc;

/// What the server remembers about a plugin across restarts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PluginRecord {
    /// The user the plugin posts as.
    pub bot_user: u64,
    pub enabled: bool,
    /// Why it was disabled (by an admin, or after failing too often).
    pub disabled_reason: Option<String>,
}

impl Store {
    pub fn plugin_record(&self, name: &str) -> Result<Option<PluginRecord>> {
        self.plugins
            .get(name.as_bytes())?
            .map(|v| codec::decode(&v))
            .transpose()
    }

    pub fn set_plugin_record(&self, name: &str, record: &PluginRecord) -> Result<()> {
        let _gate = self.ensure_space()?;
        self.plugins
            .insert(name.as_bytes(), codec::encode(record)?)?;
        Ok(())
    }

    /// Every plugin's record, by name.
    pub fn plugin_records(&self) -> Result<Vec<(String, PluginRecord)>> {
        self.plugins
            .iter()
            .map(|kv| {
                let (k, v) = kv?;
                Ok((String::from_utf8_lossy(&k).into_owned(), codec::decode(&v)?))
            })
            .collect()
    }

    /// The private key-value space of one plugin.
    pub fn plugin_kv(&self, name: &str) -> PluginKv {
        let mut prefix = name.as_bytes().to_vec();
        prefix.push(0);
        PluginKv {
            tree: self.plugin_kv.clone(),
            prefix,
            space: self.space.clone(),
        }
    }
}

/// One plugin's key-value space. Keys and values are bytes; sizes are limited by the host.
#[derive(Debug, Clone)]
pub struct PluginKv {
    tree: Tree,
    prefix: Vec<u8>,
    space: Arc<SpaceGuard>,
}

impl PluginKv {
    fn key(&self, key: &[u8]) -> Vec<u8> {
        let mut k = self.prefix.clone();
        k.extend_from_slice(key);
        k
    }
}

impl super::KvSpace for PluginKv {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(self.tree.get(self.key(key))?.map(|v| v.to_vec()))
    }

    fn set(&self, key: &[u8], value: &[u8]) -> Result<()> {
        if !self.space.allows_writes() {
            return Err(StoreError::DiskFull);
        }
        self.tree.insert(self.key(key), value)?;
        Ok(())
    }

    fn delete(&self, key: &[u8]) -> Result<()> {
        if !self.space.allows_writes() {
            return Err(StoreError::DiskFull);
        }
        self.tree.remove(self.key(key))?;
        Ok(())
    }

    fn len(&self) -> usize {
        self.tree.scan_prefix(&self.prefix).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::KvSpace;

    #[test]
    fn plugin_spaces_are_private_and_records_persist() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), 1 << 20).unwrap();
        let a = store.plugin_kv("a");
        let ab = store.plugin_kv("ab");
        a.set(b"k", b"1").unwrap();
        ab.set(b"k", b"2").unwrap();
        assert_eq!(a.get(b"k").unwrap().unwrap(), b"1");
        assert_eq!(ab.get(b"k").unwrap().unwrap(), b"2");
        assert_eq!(a.len(), 1);
        a.delete(b"k").unwrap();
        assert!(a.get(b"k").unwrap().is_none());
        assert_eq!(ab.len(), 1);
        let record = PluginRecord {
            bot_user: 7,
            enabled: false,
            disabled_reason: Some("by an admin".into()),
        };
        store.set_plugin_record("dice", &record).unwrap();
        assert_eq!(store.plugin_record("dice").unwrap(), Some(record.clone()));
        assert_eq!(
            store.plugin_records().unwrap(),
            vec![("dice".into(), record)]
        );
    }
}
