//! `decentd export` and `decentd import`: a whole server as JSON Lines, for moving it between
//! decentd versions and storage backends. Unlike a backup (the store's own records, for this
//! version), an export names every record by kind and field, so another version, another
//! backend or a script can read it.
//!
//! The file, one JSON object per line:
//!
//! 1. `{"kind": "header", "format": "decentd-export", "version": 1, "decentd": ..., "created": ...}`
//! 2. the records, each `{"kind": <kind>, ...its fields}` (`store::Entity`: `server`, `role`,
//!    `user`, `session`, `channel`, `message`, `read`, `emote`, `license`, `direct_message`,
//!    ...), in an order an importer can take them in;
//! 3. the uploaded images, `{"kind": "upload", "name": ..., "data": <base64>}`;
//! 4. `{"kind": "end", "records": N, "uploads": M}`, so a cut file is told from a whole one.
//!
//! An importer refuses a newer `version`; a newer decentd reads this one. The search index is
//! not exported: an imported server rebuilds it in the background at its first start.

use base64::Engine;
use serde::{Deserialize, Serialize};
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::path::Path;
use std::time::Instant;

use crate::backup::{self, Counted};
use crate::store::{Entity, Storage, StoreError};

/// The export format this version writes, and the newest it reads.
pub const EXPORT_VERSION: u32 = 1;
const FORMAT_NAME: &str = "decentd-export";
/// The longest line read: an upload (10 MiB at most) in base64, with room to spare.
const MAX_LINE: u64 = 32 * 1024 * 1024;

/// The lines that are not records.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum Frame {
    Header {
        format: String,
        version: u32,
        decentd: String,
        created: String,
    },
    Upload {
        name: String,
        data: String,
    },
    End {
        records: u64,
        uploads: u64,
    },
}

fn line(out: &mut dyn Write, value: &impl Serialize) -> io::Result<()> {
    serde_json::to_writer(&mut *out, value).map_err(io::Error::other)?;
    out.write_all(b"\n")
}

fn records_bar(what: &str) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new_spinner();
    if let Ok(style) = indicatif::ProgressStyle::with_template(&format!(
        "{{spinner}} {what} {{human_pos}} records ({{per_sec}}, {{elapsed}})"
    )) {
        bar.set_style(style);
    }
    bar
}

/// Writes the store and the uploads of `data` to `out`; (records, uploads).
fn write_export(
    store: &dyn Storage,
    data: &Path,
    out: &mut dyn Write,
) -> Result<(u64, u64), String> {
    let failed = |e: &dyn std::fmt::Display| format!("writing the export: {e}");
    line(
        out,
        &Frame::Header {
            format: FORMAT_NAME.into(),
            version: EXPORT_VERSION,
            decentd: crate::config::VERSION.into(),
            created: crate::ids::iso8601(crate::ids::now_ms()),
        },
    )
    .map_err(|e| failed(&e))?;
    let bar = records_bar("exporting");
    let mut records = 0u64;
    store
        .export(&mut |entity| {
            records += 1;
            if records.is_multiple_of(4096) {
                bar.set_position(records);
            }
            line(out, &entity)
        })
        .map_err(|e| failed(&e))?;
    bar.finish_and_clear();
    let images = backup::uploads(data).map_err(|e| failed(&e))?;
    let mut uploads = 0u64;
    for (path, _) in &images {
        let bytes = match std::fs::read(path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(failed(&e)),
        };
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let data = base64::engine::general_purpose::STANDARD.encode(bytes);
        line(out, &Frame::Upload { name, data }).map_err(|e| failed(&e))?;
        uploads += 1;
    }
    line(out, &Frame::End { records, uploads }).map_err(|e| failed(&e))?;
    Ok((records, uploads))
}

/// `decentd export --data DIR --to FILE`. A stopped server's directory is read directly; a
/// running server (its directory is locked) is backed up first, and the export is made from
/// that copy, so writes go on meanwhile.
pub fn export_command(data: &Path, to: &Path) -> Result<String, String> {
    let started = Instant::now();
    if !data.join("db").exists() {
        return Err(format!("{} holds no decentd data", data.display()));
    }
    let (records, uploads) = match crate::store::open(data, 64 * 1024 * 1024, 0) {
        Ok(store) => {
            crate::upgrade::refuse_newer(&*store, data)?;
            backup::write_whole(to, |out| write_export(&*store, data, out), |_, n| Ok(n))?
        }
        Err(StoreError::Locked(_)) => {
            let scratch = tempfile_dir(to)?;
            let copy = scratch.0.join("backup.tar");
            let copied = scratch.0.join("data");
            backup::backup_command(data, &copy)?;
            backup::restore_into(&copy, &copied)?;
            std::fs::remove_file(&copy).map_err(|e| e.to_string())?;
            let store =
                crate::store::open(&copied, 64 * 1024 * 1024, 0).map_err(|e| e.to_string())?;
            backup::write_whole(to, |out| write_export(&*store, &copied, out), |_, n| Ok(n))?
        }
        Err(e) => return Err(e.to_string()),
    };
    let size = std::fs::metadata(to).map(|m| m.len()).unwrap_or(0);
    Ok(format!(
        "exported {records} records and {uploads} uploads ({:.1} MiB) in {:.1} s to {}",
        backup::mib(size),
        started.elapsed().as_secs_f64(),
        to.display()
    ))
}

/// A scratch directory beside `to`, removed when dropped.
struct Scratch(std::path::PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn tempfile_dir(to: &Path) -> Result<Scratch, String> {
    let parent = to
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let dir = parent.join(format!(
        ".decentd-export-{}",
        hex::encode(crate::auth::random_bytes::<8>())
    ));
    std::fs::create_dir(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    Ok(Scratch(dir))
}

/// `decentd import --from FILE --data DIR`: a data directory (missing or empty) from an
/// export; on failure `DIR` is left as it was.
pub fn import_command(from: &Path, data: &Path) -> Result<String, String> {
    let started = Instant::now();
    let (header, records, uploads) =
        backup::into_new_directory(data, "import", || import_into(from, data))?;
    Ok(format!(
        "imported {records} records and {uploads} uploads in {:.1} s into {} (exported by {} at {}); \
         start the server with --data {} (its search index is rebuilt in the background)",
        started.elapsed().as_secs_f64(),
        data.display(),
        header.1,
        header.2,
        data.display()
    ))
}

/// Reads the next line (without its newline); None at the end. Lines longer than `MAX_LINE`
/// are refused before they are buffered whole.
fn next_line(input: &mut dyn BufRead, buf: &mut Vec<u8>) -> Result<Option<()>, String> {
    buf.clear();
    let n = input
        .take(MAX_LINE + 1)
        .read_until(b'\n', buf)
        .map_err(|e| e.to_string())?;
    if n == 0 {
        return Ok(None);
    }
    if buf.last() == Some(&b'\n') {
        buf.pop();
    } else if n as u64 > MAX_LINE {
        return Err(format!("a line is longer than {} MiB", MAX_LINE >> 20));
    }
    Ok(Some(()))
}

type Header = (u32, String, String);

fn import_into(from: &Path, data: &Path) -> Result<(Header, u64, u64), String> {
    let file = File::open(from).map_err(|e| format!("cannot read {}: {e}", from.display()))?;
    let total = file.metadata().map(|m| m.len()).unwrap_or(0);
    let bar = backup::bytes_bar(total, "importing");
    let mut input = BufReader::with_capacity(
        1 << 20,
        Counted {
            inner: file,
            bar: &bar,
        },
    );
    let mut buf = Vec::new();
    let mut number = 1u64;
    let bad =
        |number: u64, e: &dyn std::fmt::Display| format!("{} line {number}: {e}", from.display());
    let not_export = || {
        format!(
            "{} is not a decentd export (no header line)",
            from.display()
        )
    };
    next_line(&mut input, &mut buf)?.ok_or_else(not_export)?;
    let header = match serde_json::from_slice(&buf) {
        Ok(Frame::Header {
            format,
            version,
            decentd,
            created,
        }) if format == FORMAT_NAME => (version, decentd, created),
        _ => return Err(not_export()),
    };
    if header.0 > EXPORT_VERSION {
        return Err(format!(
            "{} is an export in version {}, made by a newer decentd ({}); import it with that version",
            from.display(),
            header.0,
            header.1
        ));
    }
    std::fs::create_dir_all(data).map_err(|e| format!("cannot create {}: {e}", data.display()))?;
    let store = crate::store::open(data, 64 * 1024 * 1024, 0).map_err(|e| e.to_string())?;
    let uploads_dir = data.join("uploads");
    let (mut records, mut uploads) = (0u64, 0u64);
    let mut ended = None;
    while next_line(&mut input, &mut buf)?.is_some() {
        number += 1;
        if ended.is_some() {
            return Err(bad(number, &"more lines after the end line"));
        }
        let kind = serde_json::from_slice::<KindOnly>(&buf)
            .map_err(|e| bad(number, &e))?
            .kind;
        match kind.as_str() {
            "upload" | "end" | "header" => {
                match serde_json::from_slice::<Frame>(&buf).map_err(|e| bad(number, &e))? {
                    Frame::Upload { name, data } => {
                        if !backup::is_upload_name(&name) {
                            return Err(bad(number, &format!("{name:?} is not an upload's name")));
                        }
                        let bytes = base64::engine::general_purpose::STANDARD
                            .decode(data)
                            .map_err(|e| bad(number, &e))?;
                        std::fs::create_dir_all(&uploads_dir).map_err(|e| e.to_string())?;
                        let target = uploads_dir.join(&name);
                        let mut file = File::create(&target)
                            .map_err(|e| format!("{}: {e}", target.display()))?;
                        file.write_all(&bytes)
                            .and_then(|()| file.sync_all())
                            .map_err(|e| format!("{}: {e}", target.display()))?;
                        uploads += 1;
                    }
                    Frame::End {
                        records: r,
                        uploads: u,
                    } => ended = Some((r, u)),
                    Frame::Header { .. } => return Err(bad(number, &"a second header")),
                }
            }
            _ => {
                let entity: Entity = serde_json::from_slice(&buf).map_err(|e| bad(number, &e))?;
                store.import(&entity).map_err(|e| bad(number, &e))?;
                records += 1;
            }
        }
    }
    match ended {
        None => {
            return Err(format!(
                "{} is cut short (no end line after line {number})",
                from.display()
            ))
        }
        Some((r, u)) if (r, u) != (records, uploads) => {
            return Err(format!(
                "{} is damaged: its end line counts {r} records and {u} uploads, it holds {records} and {uploads}",
                from.display()
            ))
        }
        Some(_) => {}
    }
    store
        .set_data_format(crate::upgrade::DATA_FORMAT)
        .map_err(|e| e.to_string())?;
    store.flush().map_err(|e| e.to_string())?;
    if uploads > 0 {
        if let Ok(dir) = File::open(&uploads_dir) {
            let _ = dir.sync_all();
        }
    }
    bar.finish_and_clear();
    Ok((header, records, uploads))
}

/// A line's `kind`, read before the rest.
#[derive(Deserialize)]
struct KindOnly {
    kind: String,
}
