//! Copies of the whole storage: every record of every key space at one point in time
//! (`dump`), and loading such a copy into an empty store (`load`).
//!
//! A dump closes the write gate (`Store::ensure_space` hands every write a shared guard), so
//! no write is half done while the trees are read and every cross-tree rule holds in the copy:
//! each message has its channel, each mention its message, each index entry its record. Writes
//! that arrive meanwhile wait for the gate, then go on; reads never wait. The gate is held only
//! while the records are copied to `out` (a local file: sequential writes), not while the copy
//! travels on.
//!
//! The format is the store's own, for the same store only (`export` moves data between
//! versions): records `[tree index: u8][key length: u32 BE][key][value length: u32 BE][value]`,
//! the tree index naming a position in the list of tree names the dump returns.

use std::io::{self, Read, Write};

use super::{Result, Store, StoreError};

/// Records of one key space in a dump.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TreeCount {
    pub name: String,
    pub records: u64,
}

/// The key spaces to copy: all of sled's, by name (new ones are included without a change
/// here), sled's default tree too.
fn tree_names(db: &sled::Db) -> Vec<String> {
    let mut names: Vec<String> = db
        .tree_names()
        .into_iter()
        .map(|n| String::from_utf8_lossy(&n).into_owned())
        .collect();
    names.sort();
    names
}

fn write_record(out: &mut dyn Write, tree: u8, key: &[u8], value: &[u8]) -> io::Result<()> {
    out.write_all(&[tree])?;
    out.write_all(&(key.len() as u32).to_be_bytes())?;
    out.write_all(key)?;
    out.write_all(&(value.len() as u32).to_be_bytes())?;
    out.write_all(value)
}

/// One record of a dump: the key space's index, the key, the value.
type Record = (u8, Vec<u8>, Vec<u8>);

/// Reads one record; None at the end of the input.
fn read_record(input: &mut dyn Read) -> io::Result<Option<Record>> {
    let mut tree = [0u8; 1];
    match input.read_exact(&mut tree) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let mut field = || -> io::Result<Vec<u8>> {
        let mut len = [0u8; 4];
        input.read_exact(&mut len)?;
        let len = u32::from_be_bytes(len) as usize;
        // Keys and values are bounded by what the server writes; a corrupt length is refused
        // before memory is spent on it.
        if len > 64 * 1024 * 1024 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "a record is larger than 64 MiB: the backup is damaged",
            ));
        }
        let mut bytes = vec![0u8; len];
        input.read_exact(&mut bytes)?;
        Ok(bytes)
    };
    let key = field()?;
    let value = field()?;
    Ok(Some((tree[0], key, value)))
}

/// The key in `meta` that holds the data directory's format version.
const FORMAT_KEY: &[u8] = b"format";

impl Store {
    /// The data directory's format version: None for a directory that never recorded one
    /// (format 1, written before versions were recorded, or a new empty store).
    pub fn data_format(&self) -> Result<Option<u32>> {
        Ok(self.meta.get(FORMAT_KEY)?.and_then(|v| {
            let bytes: [u8; 4] = v.as_ref().try_into().ok()?;
            Some(u32::from_be_bytes(bytes))
        }))
    }

    /// Records the data directory's format version, durably.
    pub fn set_data_format(&self, format: u32) -> Result<()> {
        self.meta.insert(FORMAT_KEY, &format.to_be_bytes())?;
        self.db.flush()?;
        Ok(())
    }

    /// Whether the store holds nothing yet (a new data directory).
    pub fn is_empty(&self) -> bool {
        self.users.is_empty() && self.meta.is_empty() && self.channels.is_empty()
    }

    /// Writes every record of every key space to `out` at one point in time; the key spaces
    /// and their record counts, in the order of their indexes in the records.
    pub fn dump(&self, out: &mut dyn Write) -> Result<Vec<TreeCount>> {
        let _closed = self.gate.write();
        let names = tree_names(&self.db);
        if names.len() > usize::from(u8::MAX) + 1 {
            return Err(StoreError::Io(io::Error::other(
                "too many key spaces to dump",
            )));
        }
        let mut counts = Vec::with_capacity(names.len());
        for (index, name) in names.iter().enumerate() {
            let tree = self.db.open_tree(name)?;
            let mut records = 0u64;
            for entry in tree.iter() {
                let (key, value) = entry?;
                write_record(out, index as u8, &key, &value)?;
                records += 1;
            }
            counts.push(TreeCount {
                name: name.clone(),
                records,
            });
        }
        out.flush()?;
        Ok(counts)
    }

    /// Loads a dump made by `dump` (with `names` its key spaces in index order) into this
    /// store, which must be empty; `progress` gets the records loaded so far. The records
    /// loaded per key space; the store is flushed to disk before it returns.
    pub fn load(
        &self,
        names: &[String],
        input: &mut dyn Read,
        progress: &dyn Fn(u64),
    ) -> Result<Vec<TreeCount>> {
        if !self.is_empty() {
            return Err(StoreError::Io(io::Error::other(
                "the store to load into is not empty",
            )));
        }
        let trees = names
            .iter()
            .map(|n| self.db.open_tree(n))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        let mut counts: Vec<TreeCount> = names
            .iter()
            .map(|n| TreeCount {
                name: n.clone(),
                records: 0,
            })
            .collect();
        let mut batches: Vec<sled::Batch> = names.iter().map(|_| sled::Batch::default()).collect();
        let mut pending = 0usize;
        let mut loaded = 0u64;
        while let Some((index, key, value)) = read_record(input)? {
            let index = usize::from(index);
            let Some(batch) = batches.get_mut(index) else {
                return Err(StoreError::Io(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("a record names key space {index}, which the backup does not list"),
                )));
            };
            batch.insert(key, value);
            counts[index].records += 1;
            pending += 1;
            loaded += 1;
            if pending == 10_000 {
                for (tree, batch) in trees.iter().zip(batches.iter_mut()) {
                    tree.apply_batch(std::mem::take(batch))?;
                }
                pending = 0;
                progress(loaded);
            }
        }
        for (tree, batch) in trees.iter().zip(batches) {
            tree.apply_batch(batch)?;
        }
        progress(loaded);
        self.db.flush()?;
        Ok(counts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_a_damaged_length_is_refused() {
        let mut bytes = Vec::new();
        write_record(&mut bytes, 3, b"key", b"value").unwrap();
        write_record(&mut bytes, 0, b"", b"").unwrap();
        let mut input = bytes.as_slice();
        assert_eq!(
            read_record(&mut input).unwrap(),
            Some((3, b"key".to_vec(), b"value".to_vec()))
        );
        assert_eq!(read_record(&mut input).unwrap(), Some((0, vec![], vec![])));
        assert_eq!(read_record(&mut input).unwrap(), None);

        let mut damaged = vec![1u8];
        damaged.extend_from_slice(&u32::MAX.to_be_bytes());
        assert!(read_record(&mut damaged.as_slice()).is_err());
        // A record cut short is an error, not the end.
        assert!(read_record(&mut &bytes[..6]).is_err());
    }
}
