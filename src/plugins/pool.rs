//! The threads plugin code runs on.
//!
//! Plugin calls (pre-store hooks, events, commands, init) never run on an HTTP worker or a
//! runtime thread: a worker blocked in a hook that spins to its deadline would stall every
//! other connection it serves. They run here instead, on a fixed set of threads whose
//! scheduling priority is lowered (nice 10), so that even with every plugin thread spinning,
//! the HTTP workers and fan-out threads get the CPU first. The caller awaits the answer
//! without blocking. Jobs beyond the queue are refused at once (`Busy`), before any memory
//! is spent on them.

use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};

/// Niceness of plugin threads: a CPU-bound plugin thread gets about a tenth of the CPU a
/// worker gets when both want it.
const NICE: i32 = 10;

type Job = Box<dyn FnOnce() + Send>;

/// Why a job did not run to its end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PoolError {
    /// The queue is full: too many plugin calls are waiting.
    Busy,
    /// The job panicked (the thread survives).
    Panicked,
}

/// A fixed pool of low-priority threads with a bounded queue.
pub struct CallPool {
    jobs: SyncSender<Job>,
}

impl std::fmt::Debug for CallPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CallPool")
    }
}

impl CallPool {
    /// Starts `threads` threads named `plugin-call-N`, taking jobs from a queue of `queue`.
    pub fn start(threads: usize, queue: usize) -> std::io::Result<Self> {
        let (jobs, rx) = sync_channel::<Job>(queue);
        let rx = Arc::new(Mutex::new(rx));
        for n in 0..threads.max(1) {
            let rx = rx.clone();
            std::thread::Builder::new()
                .name(format!("plugin-call-{n}"))
                .spawn(move || work(&rx))?;
        }
        Ok(Self { jobs })
    }

    /// Queues `job` for a plugin thread at once; the future resolves to its result without
    /// blocking the caller.
    pub fn run<T: Send + 'static>(
        &self,
        job: impl FnOnce() -> T + Send + 'static,
    ) -> impl std::future::Future<Output = Result<T, PoolError>> + 'static {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let boxed: Job = Box::new(move || {
            let _ = tx.send(job());
        });
        // Disconnected only if no thread could start: as good as busy.
        let queued = self.jobs.try_send(boxed).map_err(|e| match e {
            TrySendError::Full(_) | TrySendError::Disconnected(_) => PoolError::Busy,
        });
        async move {
            queued?;
            // A panicking job drops its sender.
            rx.await.map_err(|_| PoolError::Panicked)
        }
    }
}

fn work(jobs: &Mutex<Receiver<Job>>) {
    lower_priority();
    loop {
        let job = {
            let rx = jobs.lock().unwrap_or_else(|e| e.into_inner());
            match rx.recv() {
                Ok(job) => job,
                Err(_) => return,
            }
        };
        if std::panic::catch_unwind(std::panic::AssertUnwindSafe(job)).is_err() {
            tracing::error!("a plugin call panicked");
        }
    }
}

/// Lowers this thread's priority (Linux applies `setpriority` to one thread by its id).
fn lower_priority() {
    let tid = rustix::thread::gettid();
    if let Err(e) = rustix::process::setpriority_process(Some(tid), NICE) {
        tracing::debug!(error = %e, "cannot lower the plugin thread's priority");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn jobs_run_off_the_caller_and_a_full_queue_is_busy() {
        let pool = CallPool::start(1, 1).unwrap();
        let name = pool
            .run(|| std::thread::current().name().map(str::to_owned))
            .await
            .unwrap();
        assert_eq!(name.as_deref(), Some("plugin-call-0"));
        assert_eq!(
            pool.run(|| panic!("boom")).await,
            Err::<(), _>(PoolError::Panicked)
        );
        // The thread survived the panic.
        assert_eq!(pool.run(|| 7).await, Ok(7));

        // One job running, one queued: a third is refused at once.
        let (release, wait) = std::sync::mpsc::channel::<()>();
        let running = tokio::spawn(pool.run(move || wait.recv().ok()));
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        let queued = tokio::spawn(pool.run(|| 2));
        assert_eq!(pool.run(|| 1).await, Err(PoolError::Busy));
        release.send(()).unwrap();
        assert_eq!(running.await.unwrap(), Ok(Some(())));
        assert_eq!(queued.await.unwrap(), Ok(2));
    }
}
