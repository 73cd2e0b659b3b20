//! The real engines of cluster mode, started for tests: PostgreSQL (`initdb` + `postgres`
//! from Debian's `postgresql`) and `nats-server`, each on a free loopback port in a temp
//! directory. `.ci/run` installs both.
//!
//! Services are started from one keeper thread that lives as long as the test process, with
//! the parent-death signal set: when the test binary exits, however it exits, they stop.

use std::collections::HashMap;
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// A free loopback port (free when asked; the service binds it right after).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

type Spawn = (Command, mpsc::Sender<std::io::Result<u32>>);

/// Starts `command` from the keeper thread (so the parent-death signal fires only when the
/// test process ends); returns its pid.
fn keep(command: Command) -> u32 {
    static KEEPER: OnceLock<Mutex<mpsc::Sender<Spawn>>> = OnceLock::new();
    let keeper = KEEPER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<Spawn>();
        std::thread::spawn(move || {
            let mut children: Vec<Child> = Vec::new();
            loop {
                match rx.recv_timeout(Duration::from_millis(200)) {
                    Ok((mut command, reply)) => {
                        unsafe {
                            command.pre_exec(|| {
                                rustix::process::set_parent_process_death_signal(Some(
                                    rustix::process::Signal::TERM,
                                ))
                                .map_err(std::io::Error::from)
                            });
                        }
                        let spawned = command.spawn().map(|child| {
                            let pid = child.id();
                            children.push(child);
                            pid
                        });
                        let _ = reply.send(spawned);
                    }
                    Err(mpsc::RecvTimeoutError::Timeout) => {}
                    Err(mpsc::RecvTimeoutError::Disconnected) => return,
                }
                // Reap the ones that ended.
                children.retain_mut(|c| !matches!(c.try_wait(), Ok(Some(_))));
            }
        });
        Mutex::new(tx)
    });
    let (reply, answer) = mpsc::channel();
    keeper.lock().unwrap().send((command, reply)).unwrap();
    answer.recv().unwrap().expect("start a test service")
}

fn signal(pid: u32, signal: &str) {
    let _ = Command::new("kill")
        .args([&format!("-{signal}"), &pid.to_string()])
        .status();
}

fn pid_alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .unwrap_or_default()
            .contains(") Z ")
}

/// The directory of PostgreSQL's programs (`initdb`, `postgres`).
fn pg_bin() -> PathBuf {
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.path().join("bin"))
                .collect()
        })
        .unwrap_or_default();
    versions.sort();
    versions
        .pop()
        .expect("PostgreSQL is not installed (Debian's postgresql package)")
}

/// The `postgres` system user: PostgreSQL refuses to run as root.
fn postgres_ids() -> Option<(u32, u32)> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    let line = passwd.lines().find(|l| l.starts_with("postgres:"))?;
    let mut fields = line.split(':').skip(2);
    Some((fields.next()?.parse().ok()?, fields.next()?.parse().ok()?))
}

fn as_postgres(command: &mut Command) {
    if rustix::process::geteuid().is_root() {
        let (uid, gid) = postgres_ids().expect("a postgres user to run PostgreSQL as");
        command.uid(uid).gid(gid);
    }
}

/// A PostgreSQL server of its own, in a temp directory.
pub struct Postgres {
    dir: tempfile::TempDir,
    pub port: u16,
    /// Whether PostgreSQL syncs its writes (benchmarks); tests run without.
    fsync: bool,
    pid: Mutex<u32>,
    databases: Mutex<HashMap<PathBuf, String>>,
}

impl Postgres {
    /// Initializes a cluster and starts it. `fsync=off`: tests stop decentd nodes, never the
    /// machine, and committed data survives a stopped PostgreSQL either way.
    pub fn start() -> Self {
        Self::initialized(false)
    }

    /// A cluster with PostgreSQL's defaults, fsync on: for benchmarks.
    pub fn start_durable() -> Self {
        Self::initialized(true)
    }

    fn initialized(fsync: bool) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("pg");
        std::fs::create_dir(&data).unwrap();
        if let Some((uid, gid)) = postgres_ids() {
            let _ = std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid));
            std::os::unix::fs::chown(&data, Some(uid), Some(gid)).unwrap();
        }
        let mut initdb = Command::new(pg_bin().join("initdb"));
        initdb
            .args([
                "-U",
                "postgres",
                "--auth=trust",
                "--no-sync",
                "-E",
                "UTF8",
                "-D",
            ])
            .arg(&data)
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        as_postgres(&mut initdb);
        let out = initdb.output().expect("run initdb");
        assert!(
            out.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let port = free_port();
        let server = Self {
            dir,
            port,
            fsync,
            pid: Mutex::new(0),
            databases: Mutex::new(HashMap::new()),
        };
        server.resume();
        server
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("pg")
    }

    /// Starts the server (again, after `stop`) and waits until it takes queries.
    pub fn resume(&self) {
        let mut postgres = Command::new(pg_bin().join("postgres"));
        postgres
            .arg("-D")
            .arg(self.data())
            .args(["-p", &self.port.to_string(), "-k"])
            .arg(self.dir.path())
            .args([
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                if self.fsync { "fsync=on" } else { "fsync=off" },
                "-c",
                "max_connections=400",
                "-c",
                "shared_buffers=64MB",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        as_postgres(&mut postgres);
        *self.pid.lock().unwrap() = keep(postgres);
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.sql("postgres", "SELECT 1").is_err() {
            assert!(Instant::now() < deadline, "PostgreSQL did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops the server (fast shutdown: sessions are cut, committed data stays).
    pub fn stop(&self) {
        let pid = *self.pid.lock().unwrap();
        signal(pid, "INT");
        let deadline = Instant::now() + Duration::from_secs(30);
        while pid_alive(pid) {
            assert!(Instant::now() < deadline, "PostgreSQL did not stop");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Runs SQL through psql in `database`; its output, or psql's error.
    pub fn sql(&self, database: &str, sql: &str) -> Result<String, String> {
        let out = Command::new("psql")
            .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1"])
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(["-U", "postgres", "-d", database, "-c", sql])
            .output()
            .map_err(|e| e.to_string())?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }

    /// A new, empty database; its URL.
    pub fn database(&self) -> String {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let name = format!(
            "decentd_{}",
            NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        );
        self.sql("postgres", &format!("CREATE DATABASE {name}"))
            .expect("create a database");
        self.url(&name)
    }

    /// The database of a data directory: one per directory, so a server started again on
    /// the same directory finds its data.
    pub fn database_for(&self, data: &Path) -> String {
        let mut known = self.databases.lock().unwrap();
        known
            .entry(data.to_owned())
            .or_insert_with(|| self.database())
            .clone()
    }

    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        signal(*self.pid.lock().unwrap(), "INT");
    }
}

/// The PostgreSQL server shared by a test binary's tests (each test takes databases of its
/// own).
pub fn postgres() -> &'static Postgres {
    static SHARED: OnceLock<Postgres> = OnceLock::new();
    SHARED.get_or_init(Postgres::start)
}

/// Whether test servers use PostgreSQL storage (`DECENTD_TEST_STORE=postgres`): `.ci/run`
/// runs the integration suite once more that way.
pub fn postgres_suite() -> bool {
    std::env::var("DECENTD_TEST_STORE").is_ok_and(|v| v == "postgres")
}

/// A NATS server of its own.
pub struct Nats {
    pub port: u16,
    pid: Mutex<u32>,
}

impl Nats {
    pub fn start() -> Self {
        let nats = Self {
            port: free_port(),
            pid: Mutex::new(0),
        };
        nats.resume();
        nats
    }

    /// Starts the server (again, after `stop`) and waits until it accepts connections.
    pub fn resume(&self) {
        let mut command = Command::new(
            ["/usr/sbin/nats-server", "/usr/bin/nats-server"]
                .into_iter()
                .find(|p| Path::new(p).exists())
                .unwrap_or("nats-server"),
        );
        command
            .args(["-a", "127.0.0.1", "-p", &self.port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        *self.pid.lock().unwrap() = keep(command);
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "nats-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn stop(&self) {
        let pid = *self.pid.lock().unwrap();
        signal(pid, "TERM");
        while pid_alive(pid) {
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        signal(*self.pid.lock().unwrap(), "TERM");
    }
}
