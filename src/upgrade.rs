//! Data format versions: a data directory records the format it is in (`DATA_FORMAT`); an
//! older one is backed up, then migrated one format at a time, before the server uses it; a
//! newer one is refused, by the server and by the offline commands, with what to do.

use std::fs::File;
use std::io::{self, BufWriter};
use std::path::Path;

use crate::backup::{prepare, Temporary};
use crate::store::Storage;

/// The data format this version writes: 2 records the format in the data directory itself
/// (format 1, before it, recorded nothing).
pub const DATA_FORMAT: u32 = 2;

/// Brings a data directory to `DATA_FORMAT` before the server uses it: a new directory is
/// stamped; an older one is backed up into `<data>/backups/` and then migrated; a newer one is
/// refused with what to do.
pub fn upgrade(store: &dyn Storage, data: &Path) -> io::Result<()> {
    let found = match store.data_format().map_err(io::Error::other)? {
        Some(format) => format,
        None if store.is_empty() => {
            store
                .set_data_format(DATA_FORMAT)
                .map_err(io::Error::other)?;
            return Ok(());
        }
        None => 1,
    };
    if found == DATA_FORMAT {
        return Ok(());
    }
    if found > DATA_FORMAT {
        return Err(io::Error::other(format!(
            "the data directory {} is in format {found}, written by a newer decentd; this \
             version ({}) reads format {DATA_FORMAT} and older. Run the newer decentd, or restore \
             a backup made before the upgrade (`decentd restore --from FILE --data NEW_DIR`) \
             and run this version on NEW_DIR",
            data.display(),
            crate::config::VERSION
        )));
    }
    let dir = data.join("backups");
    std::fs::create_dir_all(&dir)?;
    let file = dir.join(format!(
        "before-format-{DATA_FORMAT}-{}.tar",
        crate::ids::iso8601(crate::ids::now_ms()).replace(':', "-")
    ));
    tracing::info!(
        from = found,
        to = DATA_FORMAT,
        backup = %file.display(),
        "upgrading the data directory; backing it up first"
    );
    let partial = Temporary(file.with_extension("tar.partial"));
    let mut out = BufWriter::with_capacity(1 << 20, File::create(&partial.0)?);
    prepare(store, data)?.write(&mut out)?;
    out.into_inner().map_err(|e| e.into_error())?.sync_all()?;
    std::fs::rename(&partial.0, &file)?;
    std::mem::forget(partial);
    // Migrations, one format at a time. 1 → 2: the format is recorded (no record changes).
    let mut format = found;
    while format < DATA_FORMAT {
        format += 1;
        store.set_data_format(format).map_err(io::Error::other)?;
    }
    tracing::info!(
        format = DATA_FORMAT,
        backup = %file.display(),
        "data directory upgraded; the backup of the old data stays until you remove it"
    );
    Ok(())
}

/// For the offline commands: refuses a data directory in a newer format than this version
/// reads (they never migrate; the server does).
pub fn refuse_newer(store: &dyn Storage, data: &Path) -> Result<(), String> {
    match store.data_format().map_err(|e| e.to_string())? {
        Some(found) if found > DATA_FORMAT => Err(format!(
            "the data directory {} is in format {found}, written by a newer decentd; use that \
             version's decentd for this command",
            data.display()
        )),
        _ => Ok(()),
    }
}
