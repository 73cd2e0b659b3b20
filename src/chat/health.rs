//! Health and readiness, for load balancers and service managers: whether the process answers
//! (`alive`), and whether it can take work now (`readiness`): storage accepts durable writes
//! and the server is not stopping. Cheap enough to poll every second.

use std::time::Duration;

use super::Chat;

/// How long the storage check may take before it counts as failing.
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// One readiness check: its name and, when it fails, why.
#[derive(Debug)]
pub struct Check {
    pub name: &'static str,
    pub problem: Option<String>,
}

/// Runs the readiness checks.
///
/// - `storage`: the disk has the free space writes need, and a flush with its fsync succeeds
///   (with nothing pending this is a cheap no-op write path; a storage engine that failed an
///   I/O fails it).
/// - `accepting`: the server is not stopping.
/// - `bus` (cluster mode): the node is connected to NATS.
pub async fn readiness(chat: &Chat) -> Vec<Check> {
    let storage = match tokio::time::timeout(CHECK_TIMEOUT, chat.store.writable()).await {
        Ok(Ok(())) => None,
        Ok(Err(e)) => Some(e.to_string()),
        Err(_) => Some(format!(
            "a durable write took longer than {} s",
            CHECK_TIMEOUT.as_secs()
        )),
    };
    let stopping = *chat.shutdown.borrow();
    let mut checks = vec![
        Check {
            name: "storage",
            problem: storage,
        },
        Check {
            name: "accepting",
            problem: stopping.then(|| "the server is stopping".to_owned()),
        },
    ];
    if let Some(cluster) = chat.cluster() {
        checks.push(Check {
            name: "bus",
            problem: (!cluster.connected())
                .then(|| "not connected to NATS: other nodes' events do not arrive".to_owned()),
        });
    }
    checks
}
