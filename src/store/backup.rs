//! Copies of the whole storage: every record of every key space at one point in time
//! (`dump`), and loading such a copy into an empty store (`load`).
//!
//! A dump closes the write gate (`Store::ensure_space` hands every write a shared guard), so
//! no write is half done while the trees are read and every cross-tree rule holds in the copy:
//! each message has its channel, each mention its message, each index entry its record. Writes
//! that arrive meanwhile wait for the gate, then go on; reads do not take the gate. The gate is
//! held only while the records are copied to local files, one per key space, not while the
//! copy travels on.
//!
//! The format is the store's own: per key space, records `[key length: u32 BE][key][value
//! length: u32 BE][value]`.

use std::io::{self, Read, Write};

use super::{Result, Store};

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

fn write_record(out: &mut dyn Write, key: &[u8], value: &[u8]) -> io::Result<()> {
    out.write_all(&(key.len() as u32).to_be_bytes())?;
    out.write_all(key)?;
    out.write_all(&(value.len() as u32).to_be_bytes())?;
    out.write_all(value)
}

/// One record of a dump: the key and the value.
type Record = (Vec<u8>, Vec<u8>);

/// Reads one length-prefixed field whose length is `len`.
fn read_field(input: &mut dyn Read, len: [u8; 4]) -> io::Result<Vec<u8>> {
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
}

/// Reads one record; None at the end of the input (which may only fall between records).
fn read_record(input: &mut dyn Read) -> io::Result<Option<Record>> {
    let mut len = [0u8; 4];
    match input.read_exact(&mut len[..1]) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    input.read_exact(&mut len[1..])?;
    let key = read_field(input, len)?;
    input.read_exact(&mut len)?;
    let value = read_field(input, len)?;
    Ok(Some((key, value)))
}

/// Where a dump writes one key space.
pub type DumpOutput = Box<dyn Write + Send>;

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

    /// Writes every record of every key space at one point in time, each key space to the
    /// output `open` gives for its name; the key spaces and their record counts, by name.
    pub fn dump(
        &self,
        open: &(dyn Fn(&str) -> io::Result<DumpOutput> + Sync),
    ) -> Result<Vec<TreeCount>> {
        let _closed = self.gate.write();
        // One thread, one key space after the other: reading two key spaces at once made sled's
        // page cache thrash (a million messages took 5× as long, writes waiting all along).
        let mut counts = Vec::new();
        for name in tree_names(&self.db) {
            let tree = self.db.open_tree(&name)?;
            let mut out = open(&name)?;
            let mut records = 0u64;
            for entry in tree.iter() {
                let (key, value) = entry?;
                write_record(&mut out, &key, &value)?;
                records += 1;
            }
            out.flush()?;
            counts.push(TreeCount { name, records });
        }
        Ok(counts)
    }

    /// Loads one key space of a dump made by `dump` into this store (new and empty before the
    /// first); the records loaded. `flush` afterwards.
    pub fn load_tree(&self, name: &str, input: &mut dyn Read) -> Result<u64> {
        let tree = self.db.open_tree(name)?;
        let mut batch = sled::Batch::default();
        let (mut pending, mut loaded) = (0usize, 0u64);
        while let Some((key, value)) = read_record(input)? {
            batch.insert(key, value);
            pending += 1;
            loaded += 1;
            if pending == 10_000 {
                tree.apply_batch(std::mem::take(&mut batch))?;
                pending = 0;
            }
        }
        tree.apply_batch(batch)?;
        Ok(loaded)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_a_damaged_length_is_refused() {
        let mut bytes = Vec::new();
        write_record(&mut bytes, b"key", b"value").unwrap();
        write_record(&mut bytes, b"", b"").unwrap();
        let mut input = bytes.as_slice();
        assert_eq!(
            read_record(&mut input).unwrap(),
            Some((b"key".to_vec(), b"value".to_vec()))
        );
        assert_eq!(read_record(&mut input).unwrap(), Some((vec![], vec![])));
        assert_eq!(read_record(&mut input).unwrap(), None);

        let damaged = u32::MAX.to_be_bytes();
        assert!(read_record(&mut damaged.as_slice()).is_err());
        // A record cut short is an error, not the end.
        assert!(read_record(&mut &bytes[..6]).is_err());
    }
}
