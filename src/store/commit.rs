//! Group commit: many writers share one fsync.
//!
//! A writer that needs its change on disk before it answers calls `GroupCommit::wait`. A
//! dedicated thread takes every waiter queued so far, flushes sled once, and wakes them all;
//! writers that arrive during a flush ride the next one. Durability then costs one fsync per
//! batch rather than one per request.

use std::thread;
use tokio::sync::{mpsc, oneshot};

type Waiter = oneshot::Sender<Result<(), String>>;

/// Handle to the flusher thread. The thread ends when the handle is dropped.
#[derive(Debug)]
pub struct GroupCommit {
    queue: mpsc::UnboundedSender<Waiter>,
}

impl GroupCommit {
    pub fn start(db: sled::Db) -> std::io::Result<Self> {
        let (queue, mut rx) = mpsc::unbounded_channel::<Waiter>();
        thread::Builder::new()
            .name("decentd-commit".into())
            .spawn(move || {
                while let Some(first) = rx.blocking_recv() {
                    let mut batch = vec![first];
                    while let Ok(more) = rx.try_recv() {
                        batch.push(more);
                    }
                    let result = db.flush().map(|_| ()).map_err(|e| e.to_string());
                    if let Err(e) = &result {
                        tracing::error!(error = %e, "flushing storage failed");
                    }
                    for waiter in batch {
                        let _ = waiter.send(result.clone());
                    }
                }
            })?;
        Ok(Self { queue })
    }

    /// Resolves once everything written before the call is on disk.
    pub async fn wait(&self) -> Result<(), String> {
        let (tx, rx) = oneshot::channel();
        self.queue
            .send(tx)
            .map_err(|_| "the storage flusher has stopped".to_owned())?;
        rx.await
            .map_err(|_| "the storage flusher has stopped".to_owned())?
    }
}
