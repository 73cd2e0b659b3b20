//! Group commit: many writers share one fsync.
//!
//! A writer that needs its change on disk before it answers calls `GroupCommit::wait`. A
//! dedicated thread takes every waiter queued so far, flushes sled once, then `fdatasync`s the
//! database file, and wakes them all; writers that arrive during a flush ride the next one.
//! Durability then costs one fsync per batch rather than one per request.
//!
//! Why the explicit `fdatasync`: on Linux, sled's flush ends with `sync_file_range`, which
//! writes the pages out but neither flushes the device's write cache nor commits the file's
//! size, so a power loss could still lose the batch (sled's own `fsync` comes from its
//! background flusher up to 500 ms later). An fsync on any descriptor of the file covers what
//! sled wrote through its own.

use std::fs::File;
use std::path::Path;
use std::thread;
use tokio::sync::{mpsc, oneshot};

type Waiter = oneshot::Sender<Result<(), String>>;

/// Handle to the flusher thread. The thread ends when the handle is dropped, and the drop
/// waits for it (so the database is released when the store is).
#[derive(Debug)]
pub struct GroupCommit {
    queue: Option<mpsc::UnboundedSender<Waiter>>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Drop for GroupCommit {
    fn drop(&mut self) {
        self.queue = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl GroupCommit {
    /// Starts the flusher for `db`, whose log is the file `data_file`.
    pub fn start(db: sled::Db, data_file: &Path) -> std::io::Result<Self> {
        let file = File::open(data_file)?;
        let (queue, mut rx) = mpsc::unbounded_channel::<Waiter>();
        let thread = thread::Builder::new()
            .name("decentd-commit".into())
            .spawn(move || {
                while let Some(first) = rx.blocking_recv() {
                    let mut batch = vec![first];
                    while let Ok(more) = rx.try_recv() {
                        batch.push(more);
                    }
                    let started = std::time::Instant::now();
                    let result = db
                        .flush()
                        .map_err(|e| e.to_string())
                        .and_then(|_| file.sync_data().map_err(|e| e.to_string()));
                    let metrics = &crate::metrics::METRICS;
                    metrics
                        .commit_latency
                        .observe(started.elapsed().as_secs_f64());
                    metrics.commit_batch.observe(batch.len() as f64);
                    if let Err(e) = &result {
                        tracing::error!(error = %e, "flushing storage failed");
                    }
                    for waiter in batch {
                        let _ = waiter.send(result.clone());
                    }
                }
            })?;
        Ok(Self {
            queue: Some(queue),
            thread: Some(thread),
        })
    }

    /// Resolves once everything written before the call is on disk.
    pub async fn wait(&self) -> Result<(), String> {
        let (tx, rx) = oneshot::channel();
        self.queue
            .as_ref()
            .ok_or_else(|| "the storage flusher has stopped".to_owned())?
            .send(tx)
            .map_err(|_| "the storage flusher has stopped".to_owned())?;
        rx.await
            .map_err(|_| "the storage flusher has stopped".to_owned())?
    }
}
