//! `decentd backup` and `decentd restore`: one file holding a server's data at one point in
//! time, made while the server runs, and turned back into a data directory.
//!
//! A backup is a tar archive (inspect it with `tar tvf`):
//!
//! - `backup.json`: the manifest (`format`, the decentd version, when, each key space with its
//!   record count, the number of uploads);
//! - `store/<key space>.kv`: every storage record, copied at one point in time
//!   (`store::backup`);
//! - `uploads/<name>`: the uploaded images.
//!
//! A running server makes the backup itself, asked over its control socket
//! (`<data>/control.sock`, readable by the server's own user only): the storage is locked by
//! the running process, and only it can copy a consistent state while writes continue. With no
//! server running, the command opens the data directory itself. The search index is not in the
//! backup: a restored server rebuilds it in the background at its first start.

use serde::{Deserialize, Serialize};
use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::chat::Chat;
use crate::store::{Storage, TreeCount};

/// The archive format this version writes, and the newest it reads.
pub const ARCHIVE_FORMAT: u32 = 1;
const MANIFEST: &str = "backup.json";
/// The directory of the key spaces' records in the archive.
const RECORDS: &str = "store";
/// The control socket's name in the data directory.
pub const CONTROL_SOCKET: &str = "control.sock";

/// What a backup holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    pub format: u32,
    pub decentd: String,
    pub created: String,
    pub trees: Vec<TreeEntry>,
    pub uploads: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TreeEntry {
    pub name: String,
    pub records: u64,
}

impl Manifest {
    pub fn records(&self) -> u64 {
        self.trees.iter().map(|t| t.records).sum()
    }
}

fn tree_entries(counts: Vec<TreeCount>) -> Vec<TreeEntry> {
    counts
        .into_iter()
        .map(|c| TreeEntry {
            name: c.name,
            records: c.records,
        })
        .collect()
}

/// An uploaded image's file name as the server writes them: 32 hex digits and an extension.
pub(crate) fn is_upload_name(name: &str) -> bool {
    let Some((stem, ext)) = name.split_once('.') else {
        return false;
    };
    stem.len() == 32
        && stem.bytes().all(|b| b.is_ascii_hexdigit())
        && matches!(ext, "gif" | "jpg" | "png")
}

/// The uploaded images in a data directory, with their sizes.
pub(crate) fn uploads(data: &Path) -> io::Result<Vec<(PathBuf, u64)>> {
    let dir = data.join("uploads");
    let mut found = Vec::new();
    match std::fs::read_dir(&dir) {
        Ok(entries) => {
            for entry in entries {
                let entry = entry?;
                let name = entry.file_name();
                if is_upload_name(&name.to_string_lossy()) {
                    found.push((entry.path(), entry.metadata()?.len()));
                }
            }
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    found.sort();
    Ok(found)
}

/// Removes a file when dropped (a temporary file, on every way out).
pub(crate) struct Temporary(pub(crate) PathBuf);

impl Drop for Temporary {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn tar_header(size: u64) -> tar::Header {
    let mut header = tar::Header::new_gnu();
    header.set_size(size);
    header.set_mode(0o600);
    header.set_mtime(crate::ids::now_ms() / 1000);
    header
}

/// A backup whose records are copied, ready to be written out.
pub struct Prepared {
    records: TemporaryDir,
    /// Each key space's records file and size, in name order.
    files: Vec<(String, PathBuf, u64)>,
    images: Vec<(PathBuf, u64)>,
    pub manifest: Manifest,
    /// The archive's approximate size in bytes.
    pub size: u64,
}

/// Removes a directory and what it holds when dropped.
struct TemporaryDir(PathBuf);

impl Drop for TemporaryDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Copies the storage's records at one point in time (writes wait meanwhile) into temporary
/// files in `data`, one per key space, and lists the uploads.
pub fn prepare(store: &dyn Storage, data: &Path) -> io::Result<Prepared> {
    let records = TemporaryDir(data.join(format!(
        ".backup-{}",
        hex::encode(crate::auth::random_bytes::<8>())
    )));
    std::fs::create_dir(&records.0)?;
    let dir = records.0.clone();
    let open = move |name: &str| -> io::Result<crate::store::DumpOutput> {
        let file = File::create(dir.join(format!("{}.kv", hex::encode(name))))?;
        Ok(Box::new(BufWriter::with_capacity(1 << 20, file)))
    };
    let counts = store.dump(&open).map_err(io::Error::other)?;
    let mut files = Vec::with_capacity(counts.len());
    for count in &counts {
        let path = records.0.join(format!("{}.kv", hex::encode(&count.name)));
        let size = std::fs::metadata(&path)?.len();
        files.push((count.name.clone(), path, size));
    }
    let images = uploads(data)?;
    let size = files.iter().map(|(_, _, size)| size).sum::<u64>()
        + images.iter().map(|(_, size)| size).sum::<u64>()
        + 1024 * (images.len() as u64 + files.len() as u64 + 2);
    let manifest = Manifest {
        format: ARCHIVE_FORMAT,
        decentd: crate::config::VERSION.to_owned(),
        created: crate::ids::iso8601(crate::ids::now_ms()),
        trees: tree_entries(counts),
        uploads: images.len() as u64,
    };
    Ok(Prepared {
        records,
        files,
        images,
        manifest,
        size,
    })
}

impl Prepared {
    /// Writes the archive to `out`.
    pub fn write(self, out: &mut dyn Write) -> io::Result<Manifest> {
        let manifest_json = serde_json::to_vec_pretty(&self.manifest).map_err(io::Error::other)?;
        let mut archive = tar::Builder::new(out);
        archive.append_data(
            &mut tar_header(manifest_json.len() as u64),
            MANIFEST,
            manifest_json.as_slice(),
        )?;
        // Key spaces by name: hex-encoded in the archive, as names may hold any bytes.
        for (name, path, size) in &self.files {
            archive.append_data(
                &mut tar_header(*size),
                format!("{RECORDS}/{}.kv", hex::encode(name)),
                File::open(path)?,
            )?;
        }
        drop(self.records);
        for (path, size) in &self.images {
            let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
            let name = format!("uploads/{}", name.unwrap_or_default());
            // An upload is never changed once written; one removed meanwhile is skipped.
            match File::open(path) {
                Ok(file) => archive.append_data(&mut tar_header(*size), name, file)?,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            }
        }
        archive.into_inner()?.flush()?;
        Ok(self.manifest)
    }
}

/// Serves backups to `decentd backup` on `<data>/control.sock`, from a thread of its own, for
/// the life of the process. One backup runs at a time.
pub fn serve_control(chat: Arc<Chat>, data: &Path) -> io::Result<()> {
    let path = data.join(CONTROL_SOCKET);
    // A socket left by a process that is gone (the storage lock says no other runs here).
    let _ = std::fs::remove_file(&path);
    let listener = UnixListener::bind(&path)?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    let data = data.to_path_buf();
    let one_at_a_time = Arc::new(Mutex::new(()));
    std::thread::Builder::new()
        .name("decentd-control".into())
        .spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let (chat, data, lock) = (chat.clone(), data.clone(), one_at_a_time.clone());
                let _ = std::thread::Builder::new()
                    .name("decentd-backup".into())
                    .spawn(move || {
                        let _one = lock.lock().unwrap_or_else(|e| e.into_inner());
                        if let Err(e) = answer(&chat, &data, stream) {
                            tracing::warn!(error = %e, "a backup over the control socket failed");
                        }
                    });
            }
        })?;
    Ok(())
}

/// One control request: `backup\n` → a header line (`{"bytes": N}`, or `{"error": ...}`),
/// then the archive.
fn answer(chat: &Chat, data: &Path, stream: UnixStream) -> io::Result<()> {
    stream.set_read_timeout(Some(std::time::Duration::from_secs(10)))?;
    let mut line = String::new();
    BufReader::new((&stream).take(64)).read_line(&mut line)?;
    let mut out = BufWriter::with_capacity(1 << 20, &stream);
    if line.trim() != "backup" {
        let error = "unknown request; this socket answers `backup`";
        writeln!(out, "{}", serde_json::json!({ "error": error }))?;
        return out.flush();
    }
    let started = Instant::now();
    let prepared = match prepare(&*chat.store, data) {
        Ok(prepared) => prepared,
        Err(e) => {
            writeln!(out, "{}", serde_json::json!({ "error": e.to_string() }))?;
            return out.flush();
        }
    };
    let copied_ms = started.elapsed().as_millis() as u64;
    writeln!(out, "{}", serde_json::json!({ "bytes": prepared.size }))?;
    let manifest = prepared.write(&mut out)?;
    out.flush()?;
    tracing::info!(
        records = manifest.records(),
        uploads = manifest.uploads,
        copied_ms,
        total_ms = started.elapsed().as_millis() as u64,
        "backup made"
    );
    Ok(())
}

/// Counts the bytes that pass, for a progress bar.
pub(crate) struct Counted<'a, T> {
    pub(crate) inner: T,
    pub(crate) bar: &'a indicatif::ProgressBar,
}

impl<T: Write> Write for Counted<'_, T> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.bar.inc(n as u64);
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

impl<T: Read> Read for Counted<'_, T> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.bar.inc(n as u64);
        Ok(n)
    }
}

pub(crate) fn bytes_bar(total: u64, what: &str) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(total);
    if let Ok(style) = indicatif::ProgressStyle::with_template(&format!(
        "{{spinner}} {what} {{bytes}}/{{total_bytes}} ({{bytes_per_sec}}, {{eta}} left) {{wide_bar}}"
    )) {
        bar.set_style(style);
    }
    bar
}

pub(crate) fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// `decentd backup --to FILE`: asks the server running on `data` for a backup, or makes one
/// itself when none runs. The file appears whole or not at all (written aside, synced,
/// renamed).
pub fn backup_command(data: &Path, to: &Path) -> Result<String, String> {
    let started = Instant::now();
    let manifest = write_whole(
        to,
        |out| match UnixStream::connect(data.join(CONTROL_SOCKET)) {
            Ok(stream) => {
                let mut stream = stream;
                stream
                    .write_all(b"backup\n")
                    .map_err(|e| format!("the server's control socket: {e}"))?;
                let mut reader = BufReader::with_capacity(1 << 20, stream);
                let mut header = String::new();
                (&mut reader)
                    .take(4096)
                    .read_line(&mut header)
                    .map_err(|e| format!("the server's control socket: {e}"))?;
                let header: serde_json::Value = serde_json::from_str(&header).map_err(|_| {
                    "the server answered the backup request with nonsense".to_owned()
                })?;
                if let Some(error) = header["error"].as_str() {
                    return Err(format!("the server could not make a backup: {error}"));
                }
                let bar = bytes_bar(header["bytes"].as_u64().unwrap_or(0), "backing up");
                let mut counted = Counted {
                    inner: out,
                    bar: &bar,
                };
                io::copy(&mut reader, &mut counted)
                    .map_err(|e| format!("receiving the backup: {e}"))?;
                bar.finish_and_clear();
                Ok(None)
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused
                ) =>
            {
                // No server: open the data directory here.
                if !data.join("db").exists() {
                    return Err(format!("{} holds no decentd data", data.display()));
                }
                let store =
                    crate::store::open(data, 64 * 1024 * 1024, 0).map_err(|e| e.to_string())?;
                let prepared =
                    prepare(&*store, data).map_err(|e| format!("copying the records: {e}"))?;
                let bar = bytes_bar(prepared.size, "backing up");
                let mut counted = Counted {
                    inner: out,
                    bar: &bar,
                };
                let manifest = prepared
                    .write(&mut counted)
                    .map_err(|e| format!("writing the backup: {e}"))?;
                bar.finish_and_clear();
                Ok(Some(manifest))
            }
            Err(e) => Err(format!("the server's control socket: {e}")),
        },
        // The archive must be whole: read its manifest back.
        |partial, manifest| match manifest {
            Some(m) => Ok(m),
            None => read_manifest(partial),
        },
    )?;
    let size = std::fs::metadata(to).map(|m| m.len()).unwrap_or(0);
    Ok(format!(
        "backed up {} records in {} key spaces and {} uploads ({:.1} MiB) in {:.1} s to {}",
        manifest.records(),
        manifest.trees.len(),
        manifest.uploads,
        mib(size),
        started.elapsed().as_secs_f64(),
        to.display()
    ))
}

/// Writes the file `to` whole or not at all: into a hidden file beside it, synced, checked
/// (`check` sees the written file), then renamed over `to`.
pub(crate) fn write_whole<T, U>(
    to: &Path,
    write: impl FnOnce(&mut BufWriter<File>) -> Result<T, String>,
    check: impl FnOnce(&Path, T) -> Result<U, String>,
) -> Result<U, String> {
    let file_name = to
        .file_name()
        .ok_or_else(|| format!("{} names no file", to.display()))?;
    let partial = to.with_file_name(format!(".{}.partial", file_name.to_string_lossy()));
    let file =
        File::create(&partial).map_err(|e| format!("cannot write {}: {e}", partial.display()))?;
    let partial_guard = Temporary(partial.clone());
    let mut out = BufWriter::with_capacity(1 << 20, file);
    let written = write(&mut out)?;
    let file = out
        .into_inner()
        .map_err(|e| format!("writing {}: {}", partial.display(), e.error()))?;
    file.sync_all()
        .map_err(|e| format!("writing {}: {e}", partial.display()))?;
    let checked = check(&partial, written)?;
    std::fs::rename(&partial, to).map_err(|e| format!("cannot rename to {}: {e}", to.display()))?;
    std::mem::forget(partial_guard);
    if let Some(dir) = to.parent().filter(|d| !d.as_os_str().is_empty()) {
        if let Ok(dir) = File::open(dir) {
            let _ = dir.sync_all();
        }
    }
    Ok(checked)
}

/// The manifest of a backup file (its first entry).
pub fn read_manifest(path: &Path) -> Result<Manifest, String> {
    let file = File::open(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let mut archive = tar::Archive::new(file);
    let mut entries = archive
        .entries()
        .map_err(|e| format!("{} is not a decentd backup: {e}", path.display()))?;
    manifest_entry(&mut entries, path)
}

fn manifest_entry<R: Read>(
    entries: &mut tar::Entries<'_, R>,
    path: &Path,
) -> Result<Manifest, String> {
    let not_backup = || {
        format!(
            "{} is not a decentd backup (no {MANIFEST} first)",
            path.display()
        )
    };
    let mut entry = entries
        .next()
        .ok_or_else(not_backup)?
        .map_err(|_| not_backup())?;
    if entry.path().map_err(|_| not_backup())?.as_os_str() != MANIFEST {
        return Err(not_backup());
    }
    let mut text = String::new();
    (&mut entry)
        .take(1 << 20)
        .read_to_string(&mut text)
        .map_err(|_| not_backup())?;
    let manifest: Manifest = serde_json::from_str(&text).map_err(|_| not_backup())?;
    if manifest.format > ARCHIVE_FORMAT {
        return Err(format!(
            "{} is a backup in format {}, made by a newer decentd ({}); restore it with that version",
            path.display(),
            manifest.format,
            manifest.decentd
        ));
    }
    Ok(manifest)
}

/// `decentd restore --from FILE --data DIR`: a data directory from a backup. `DIR` must be
/// missing or empty; on failure it is left as it was.
pub fn restore_command(from: &Path, data: &Path) -> Result<String, String> {
    let started = Instant::now();
    let (manifest, uploads) = into_new_directory(data, "restore", || restore_into(from, data))?;
    Ok(format!(
        "restored {} records in {} key spaces and {} uploads in {:.1} s into {} (backup of {}, {}); \
         start the server with --data {} (its search index is rebuilt in the background)",
        manifest.records(),
        manifest.trees.len(),
        uploads,
        started.elapsed().as_secs_f64(),
        data.display(),
        manifest.created,
        manifest.decentd,
        data.display()
    ))
}

/// Runs `work`, which fills the data directory `data`: refused unless `data` is missing or
/// empty, and on failure `data` is left as it was. `what` names the command in the refusal.
pub(crate) fn into_new_directory<T>(
    data: &Path,
    what: &str,
    work: impl FnOnce() -> Result<T, String>,
) -> Result<T, String> {
    let existed = data.exists();
    if existed {
        let mut entries =
            std::fs::read_dir(data).map_err(|e| format!("cannot read {}: {e}", data.display()))?;
        if entries.next().is_some() {
            return Err(format!(
                "{} is not empty: {what} into a new directory, then point --data at it",
                data.display()
            ));
        }
    }
    let result = work();
    if result.is_err() {
        // Leave the directory as it was: missing, or empty.
        if existed {
            if let Ok(entries) = std::fs::read_dir(data) {
                for entry in entries.flatten() {
                    let path = entry.path();
                    let _ = std::fs::remove_dir_all(&path).or_else(|_| std::fs::remove_file(&path));
                }
            }
        } else {
            let _ = std::fs::remove_dir_all(data);
        }
    }
    result
}

pub(crate) fn restore_into(from: &Path, data: &Path) -> Result<(Manifest, u64), String> {
    let file = File::open(from).map_err(|e| format!("cannot read {}: {e}", from.display()))?;
    let total = file.metadata().map(|m| m.len()).unwrap_or(0);
    let bar = bytes_bar(total, "restoring");
    let reader = Counted {
        inner: BufReader::with_capacity(1 << 20, file),
        bar: &bar,
    };
    let mut archive = tar::Archive::new(reader);
    let mut entries = archive
        .entries()
        .map_err(|e| format!("{} is not a decentd backup: {e}", from.display()))?;
    let manifest = manifest_entry(&mut entries, from)?;
    let damaged = |e: &dyn std::fmt::Display| format!("{} is damaged: {e}", from.display());
    std::fs::create_dir_all(data).map_err(|e| format!("cannot create {}: {e}", data.display()))?;
    let store = crate::store::open(data, 64 * 1024 * 1024, 0).map_err(|e| e.to_string())?;
    let mut loaded: Vec<TreeEntry> = Vec::new();
    let uploads_dir = data.join("uploads");
    let mut uploads = 0u64;
    for entry in entries {
        let mut entry = entry.map_err(|e| damaged(&e))?;
        let path = entry.path().map_err(|e| damaged(&e))?.into_owned();
        if let Ok(file) = path.strip_prefix(RECORDS) {
            let name = file
                .to_str()
                .and_then(|f| f.strip_suffix(".kv"))
                .and_then(|f| hex::decode(f).ok())
                .and_then(|n| String::from_utf8(n).ok())
                .filter(|n| manifest.trees.iter().any(|t| &t.name == n))
                .ok_or_else(|| damaged(&format!("unexpected entry {}", path.display())))?;
            let records = store
                .load_tree(&name, &mut entry)
                .map_err(|e| damaged(&e))?;
            loaded.push(TreeEntry { name, records });
            continue;
        }
        let name = path
            .strip_prefix("uploads")
            .ok()
            .and_then(|p| p.to_str())
            .filter(|n| is_upload_name(n))
            .ok_or_else(|| damaged(&format!("unexpected entry {}", path.display())))?
            .to_owned();
        std::fs::create_dir_all(&uploads_dir).map_err(|e| e.to_string())?;
        let target = uploads_dir.join(&name);
        let mut file = File::create(&target).map_err(|e| format!("{}: {e}", target.display()))?;
        io::copy(&mut entry, &mut file).map_err(|e| damaged(&e))?;
        file.sync_all().map_err(|e| e.to_string())?;
        uploads += 1;
    }
    store.flush().map_err(|e| e.to_string())?;
    drop(store);
    loaded.sort_by(|a, b| a.name.cmp(&b.name));
    let mut expected = manifest.trees.clone();
    expected.sort_by(|a, b| a.name.cmp(&b.name));
    if loaded != expected {
        return Err(damaged(&"its records differ from its manifest"));
    }
    if uploads != manifest.uploads {
        return Err(damaged(&format!(
            "it lists {} uploads but holds {uploads}",
            manifest.uploads
        )));
    }
    if uploads > 0 {
        if let Ok(dir) = File::open(&uploads_dir) {
            let _ = dir.sync_all();
        }
    }
    bar.finish_and_clear();
    Ok((manifest, uploads))
}
