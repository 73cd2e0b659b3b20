//! The command line: `decentd` and its subcommands with their flags and environment
//! variables (clap). `ServeArgs` is resolved into a `ServerConfig` by `config::resolve`.

use clap::{Args, Parser, Subcommand, ValueEnum};
use serde::Deserialize;
use std::path::PathBuf;

use super::{DEFAULT_DATA, VERSION};
use crate::perms::ReadAccess;

/// decentd: a Decent chat server in one binary, with embedded storage.
#[derive(Debug, Parser)]
#[command(name = "decentd", version = VERSION, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server: HTTP API and WebSocket on one port.
    Serve(Box<ServeArgs>),
    /// Grant the Admin role (every permission) to an existing user. Run it while the server is
    /// stopped: the data directory can only be opened by one process at a time.
    MakeAdmin(MakeAdminArgs),
    /// Print a one-time link (valid for an hour) that sets a new password for a user, for
    /// when they lost it and mail is not set up. Run it while the server is stopped.
    ResetPassword(ResetPasswordArgs),
    /// Rebuild the message search index from storage. Run it while the server is stopped.
    Reindex(ReindexArgs),
    /// Back the data up into one file: from the running server (through its control socket,
    /// while writes continue) or, when none runs, from the data directory itself.
    Backup(BackupArgs),
    /// Turn a backup into a data directory (a new or empty one).
    Restore(RestoreArgs),
    /// Write every record and upload as JSON Lines (a documented, versioned format) to move
    /// the server to another decentd version or storage backend.
    Export(ExportArgs),
    /// Turn an export into a data directory (a new or empty one).
    Import(ImportArgs),
    /// Copy a stopped server's data directory into an empty PostgreSQL database (for cluster
    /// mode), with a progress bar and a round-trip check.
    Migrate(MigrateArgs),
    /// Plugin tools.
    #[command(subcommand)]
    Plugin(PluginCommand),
}

/// `decentd plugin ...`
#[derive(Debug, Subcommand)]
pub enum PluginCommand {
    /// Check a plugin (its directory or plugin.toml): manifest, module exports and imports,
    /// capabilities. Exits 1 with the first problem found.
    Check {
        /// The plugin's directory, or its plugin.toml.
        path: PathBuf,
    },
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable key=value lines.
    Text,
    /// One JSON object per line.
    Json,
}

#[derive(Debug, Clone, Args, Default)]
pub struct ServeArgs {
    /// TOML file with any of the settings below (flags and environment override it).
    #[arg(long, env = "DECENTD_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Address to listen on for HTTP and WebSocket [default: 127.0.0.1:3000].
    #[arg(long, env = "DECENTD_LISTEN", value_name = "ADDR")]
    pub listen: Option<String>,
    /// Data directory (database and uploads) [default: ./decentd-data].
    #[arg(long, env = "DECENTD_DATA", value_name = "DIR")]
    pub data: Option<PathBuf>,
    /// Plugins directory: one subdirectory per plugin [default: <data>/plugins].
    #[arg(long, env = "DECENTD_PLUGINS", value_name = "DIR")]
    pub plugins: Option<PathBuf>,
    /// Username that holds the built-in Admin role; repeat for several. Granted when the user
    /// registers, or at startup if they exist.
    #[arg(
        long = "admin",
        env = "DECENTD_ADMIN",
        value_name = "NAME",
        value_delimiter = ','
    )]
    pub admins: Vec<String>,
    /// Origin (`https://chat.example.com`) whose web pages may call the API; repeat for
    /// several [default: any origin, as Decent clients connect to any server].
    #[arg(
        long = "cors-origins",
        env = "DECENTD_CORS_ORIGINS",
        value_name = "ORIGIN",
        value_delimiter = ','
    )]
    pub cors_origins: Vec<String>,
    /// Who may read without a role, chosen at the first start: `spec` (nobody: the spec's
    /// table), `members` (logged-in users), `public` (everyone, guests too). Afterwards it is
    /// the `readAccess` server setting (PATCH /api/settings) [default: members].
    #[arg(long, env = "DECENTD_READ_ACCESS", value_name = "PRESET")]
    pub read_access: Option<ReadAccess>,
    /// Largest accepted request body in bytes [default: 1048576].
    #[arg(long, env = "DECENTD_BODY_LIMIT", value_name = "BYTES")]
    pub body_limit: Option<usize>,
    /// Largest accepted image upload in bytes [default: 10000000].
    #[arg(long, env = "DECENTD_UPLOAD_LIMIT", value_name = "BYTES")]
    pub upload_limit: Option<usize>,
    /// Longest message text in characters [default: 10000].
    #[arg(long, env = "DECENTD_MAX_MESSAGE_LENGTH", value_name = "CHARS")]
    pub max_message_length: Option<usize>,
    /// Seconds a login session stays valid [default: 2592000, 30 days].
    #[arg(long, env = "DECENTD_SESSION_TTL", value_name = "SECS")]
    pub session_ttl: Option<u64>,
    /// Seconds a session logged in with `rememberMe: false` lasts after its last use
    /// [default: 86400, 24 hours].
    #[arg(long, env = "DECENTD_SHORT_SESSION_TTL", value_name = "SECS")]
    pub short_session_ttl: Option<u64>,
    /// scrypt cost: log2 of N [default: 15, 32 MiB per hash with r = 8].
    #[arg(long, env = "DECENTD_SCRYPT_LOG_N", value_name = "N")]
    pub scrypt_log_n: Option<u8>,
    /// scrypt block size r [default: 8].
    #[arg(long, env = "DECENTD_SCRYPT_R", value_name = "R")]
    pub scrypt_r: Option<u32>,
    /// scrypt parallelism p [default: 1].
    #[arg(long, env = "DECENTD_SCRYPT_P", value_name = "P")]
    pub scrypt_p: Option<u32>,
    /// Password hashes computed at once; bounds their memory [default: 2].
    #[arg(long, env = "DECENTD_HASH_CONCURRENCY", value_name = "N")]
    pub hash_concurrency: Option<usize>,
    /// Storage page cache in MiB [default: 64].
    #[arg(long, env = "DECENTD_CACHE_MB", value_name = "MIB")]
    pub cache_mb: Option<u64>,
    /// Seconds between WebSocket "pingdata" events, at most 30 [default: 10].
    #[arg(long, env = "DECENTD_PING_INTERVAL", value_name = "SECS")]
    pub ping_interval: Option<u64>,
    /// Most WebSocket connections at once; more are refused with 503 [default: 20000].
    #[arg(long, env = "DECENTD_MAX_WEBSOCKETS", value_name = "N")]
    pub max_websockets: Option<usize>,
    /// Events queued for one WebSocket before it is closed as too slow [default: 256].
    #[arg(long, env = "DECENTD_WS_SEND_QUEUE", value_name = "EVENTS")]
    pub ws_send_queue: Option<usize>,
    /// HTTP requests per second from one client address, in bursts of up to five times as
    /// many; 0: no limit [default: 20].
    #[arg(long, env = "DECENTD_RATE_LIMIT", value_name = "PER_SECOND")]
    pub rate_limit: Option<u32>,
    /// HTTP requests per second with one session, in bursts of up to five times as many; 0: no
    /// limit [default: 20].
    #[arg(long, env = "DECENTD_SESSION_RATE_LIMIT", value_name = "PER_SECOND")]
    pub session_rate_limit: Option<u32>,
    /// Logins, registrations and lost-password requests per minute from one client address; 0:
    /// no limit [default: 10].
    #[arg(long, env = "DECENTD_LOGIN_RATE_LIMIT", value_name = "PER_MINUTE")]
    pub login_rate_limit: Option<u32>,
    /// Image uploads per minute from one client address; 0: no limit [default: 30].
    #[arg(long, env = "DECENTD_UPLOAD_RATE_LIMIT", value_name = "PER_MINUTE")]
    pub upload_rate_limit: Option<u32>,
    /// Proxies (addresses or CIDR ranges, e.g. 127.0.0.1 or 10.0.0.0/8) whose
    /// `X-Forwarded-For` names the client; repeat for several [default: none].
    #[arg(
        long,
        env = "DECENTD_TRUSTED_PROXIES",
        value_name = "CIDR",
        value_delimiter = ','
    )]
    pub trusted_proxies: Vec<String>,
    /// Address of the Prometheus metrics endpoint `/metrics` (e.g. 127.0.0.1:9100) [default:
    /// off].
    #[arg(long, env = "DECENTD_METRICS_LISTEN", value_name = "ADDR")]
    pub metrics_listen: Option<String>,
    /// Seconds between the SignalR hub's Ping messages [default: 15].
    #[arg(long, env = "DECENTD_HUB_KEEP_ALIVE", value_name = "SECS")]
    pub hub_keep_alive: Option<u64>,
    /// Seconds a SignalR hub client may stay silent before it is closed; more than the
    /// keep-alive [default: 30].
    #[arg(long, env = "DECENTD_HUB_CLIENT_TIMEOUT", value_name = "SECS")]
    pub hub_client_timeout: Option<u64>,
    /// Seconds one WebSocket write may take before the socket is closed [default: 10].
    #[arg(long, env = "DECENTD_WS_WRITE_TIMEOUT", value_name = "SECS")]
    pub ws_write_timeout: Option<u64>,
    /// Kernel send buffer per connection in KiB; 0 leaves the kernel's autotuning [default: 128].
    #[arg(long, env = "DECENTD_TCP_SEND_BUFFER", value_name = "KIB")]
    pub tcp_send_buffer: Option<usize>,
    /// Kernel receive buffer per connection in KiB; 0 leaves the kernel's autotuning [default: 64].
    #[arg(long, env = "DECENTD_TCP_RECV_BUFFER", value_name = "KIB")]
    pub tcp_recv_buffer: Option<usize>,
    /// Seconds a request body may send nothing before the request fails with 408 [default: 15].
    #[arg(long, env = "DECENTD_HTTP_BODY_TIMEOUT", value_name = "SECS")]
    pub http_body_timeout: Option<u64>,
    /// Seconds an HTTP response may wait for a client that does not read before the connection
    /// is dropped [default: 30].
    #[arg(long, env = "DECENTD_HTTP_WRITE_TIMEOUT", value_name = "SECS")]
    pub http_write_timeout: Option<u64>,
    /// Refuse writes (507) while the data directory's disk has less than this many MiB free;
    /// 0 disables the check [default: 64].
    #[arg(long, env = "DECENTD_MIN_FREE_SPACE", value_name = "MIB")]
    pub min_free_space: Option<u64>,
    /// Keep everything in PostgreSQL instead of the embedded store in the data directory, e.g.
    /// `postgres://decentd@db/decentd`; several nodes may share one database [default: the
    /// embedded store].
    #[arg(long, env = "DECENTD_STORE", value_name = "URL")]
    pub store: Option<String>,
    /// Connections each node keeps to PostgreSQL at most [default: 16].
    #[arg(long, env = "DECENTD_STORE_POOL", value_name = "N")]
    pub store_pool: Option<usize>,
    /// Carry events between cluster nodes through NATS, e.g. `nats://127.0.0.1:4222`; needs
    /// `--store postgres://...` [default: this node only].
    #[arg(long, env = "DECENTD_BUS", value_name = "URL")]
    pub bus: Option<String>,
    /// Directory of uploaded images; cluster nodes share one (with `--store` only)
    /// [default: DATA/uploads].
    #[arg(long, env = "DECENTD_UPLOADS", value_name = "DIR")]
    pub uploads: Option<PathBuf>,
    /// Accept read-only chatbox guests at /v2/guest [default: false].
    #[arg(long, env = "DECENTD_CHATBOX_GUESTS", value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    pub chatbox_guests: Option<bool>,
    /// Channel (name or ID) a chatbox `say` without `channel` goes to [default: the oldest
    /// channel the bot's owner may post in].
    #[arg(long, env = "DECENTD_CHATBOX_CHANNEL", value_name = "CHANNEL")]
    pub chatbox_channel: Option<String>,
    /// Seconds between a stop signal and the stop, announced to chatbox bots as a scheduled
    /// restart; a second signal stops at once [default: 0].
    #[arg(long, env = "DECENTD_RESTART_GRACE", value_name = "SECS")]
    pub restart_grace: Option<u64>,
    /// Seconds to let in-flight requests finish on SIGINT/SIGTERM [default: 10].
    #[arg(long, env = "DECENTD_SHUTDOWN_TIMEOUT", value_name = "SECS")]
    pub shutdown_timeout: Option<u64>,
    /// HTTP worker threads [default: one per CPU; with --store, four per CPU and at least 16].
    #[arg(long, env = "DECENTD_WORKERS", value_name = "N")]
    pub workers: Option<usize>,
    /// Serve HTTPS with this PEM certificate chain (leaf first); needs --tls-key. Read again
    /// on SIGHUP [default: plain HTTP].
    #[arg(long, env = "DECENTD_TLS_CERT", value_name = "FILE")]
    pub tls_cert: Option<PathBuf>,
    /// The PEM private key (PKCS#8, PKCS#1 or SEC1) of --tls-cert.
    #[arg(long, env = "DECENTD_TLS_KEY", value_name = "FILE")]
    pub tls_key: Option<PathBuf>,
    /// Report `useSecureProtocol: true` in GET /api (set when a TLS proxy fronts decentd)
    /// [default: true with --tls-cert, else false].
    #[arg(long, env = "DECENTD_SECURE", value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    pub secure: Option<bool>,
    /// The address people open the server at, for links in mail (`https://chat.example.com`)
    /// [default: http://<listen>].
    #[arg(long, env = "DECENTD_PUBLIC_URL", value_name = "URL")]
    pub public_url: Option<String>,
    /// SMTP server for lost-password mail: `smtp://host:25` (plain), `smtp://host:587?tls=required`
    /// (STARTTLS) or `smtps://user:password@host:465` [default: none; lost-password requests
    /// answer NO].
    #[arg(long, env = "DECENTD_SMTP_URL", value_name = "URL")]
    pub smtp_url: Option<String>,
    /// Sender of mail, `Name <address>` [default: decentd <noreply@the public URL's host>].
    #[arg(long, env = "DECENTD_MAIL_FROM", value_name = "ADDRESS")]
    pub mail_from: Option<String>,
    /// Log format [default: text].
    #[arg(long, env = "DECENTD_LOG_FORMAT", value_name = "FORMAT")]
    pub log_format: Option<LogFormat>,
    /// Log filter, e.g. `info` or `decentd=debug` [default: info].
    #[arg(long, env = "DECENTD_LOG", value_name = "FILTER")]
    pub log: Option<String>,
}

#[derive(Debug, Args)]
pub struct MakeAdminArgs {
    /// Data directory of the (stopped) server [default: ./decentd-data].
    #[arg(long, env = "DECENTD_DATA", value_name = "DIR", default_value = DEFAULT_DATA)]
    pub data: PathBuf,
    /// PostgreSQL storage of the server, instead of the data directory's embedded store.
    #[arg(long, env = "DECENTD_STORE", value_name = "URL")]
    pub store: Option<String>,
    /// The user to make an admin.
    pub username: String,
}

#[derive(Debug, Args)]
pub struct ReindexArgs {
    /// Data directory of the (stopped) server [default: ./decentd-data].
    #[arg(long, env = "DECENTD_DATA", value_name = "DIR", default_value = DEFAULT_DATA)]
    pub data: PathBuf,
}

#[derive(Debug, Args)]
pub struct BackupArgs {
    /// Data directory of the server [default: ./decentd-data].
    #[arg(long, env = "DECENTD_DATA", value_name = "DIR", default_value = DEFAULT_DATA)]
    pub data: PathBuf,
    /// The backup file to write (replaced whole if it exists).
    #[arg(long, value_name = "FILE")]
    pub to: PathBuf,
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// Data directory of the server, running or stopped [default: ./decentd-data].
    #[arg(long, env = "DECENTD_DATA", value_name = "DIR", default_value = DEFAULT_DATA)]
    pub data: PathBuf,
    /// The export file to write (replaced whole if it exists).
    #[arg(long, value_name = "FILE")]
    pub to: PathBuf,
}

#[derive(Debug, Args)]
pub struct MigrateArgs {
    /// Data directory of the stopped server.
    #[arg(long, value_name = "DIR")]
    pub from: PathBuf,
    /// The PostgreSQL database to fill, e.g. `postgres://decentd@db/decentd` (empty, or new
    /// from `createdb`).
    #[arg(long, value_name = "URL")]
    pub to: String,
    /// Copy the uploaded images into this directory (the nodes' `--uploads`).
    #[arg(long, value_name = "DIR")]
    pub uploads: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// The export file.
    #[arg(long, value_name = "FILE")]
    pub from: PathBuf,
    /// The data directory to create (missing or empty).
    #[arg(long, value_name = "DIR")]
    pub data: PathBuf,
}

#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// The backup file.
    #[arg(long, value_name = "FILE")]
    pub from: PathBuf,
    /// The data directory to create (missing or empty).
    #[arg(long, value_name = "DIR")]
    pub data: PathBuf,
}

#[derive(Debug, Args)]
pub struct ResetPasswordArgs {
    /// Data directory of the (stopped) server [default: ./decentd-data].
    #[arg(long, env = "DECENTD_DATA", value_name = "DIR", default_value = DEFAULT_DATA)]
    pub data: PathBuf,
    /// PostgreSQL storage of the server, instead of the data directory's embedded store.
    #[arg(long, env = "DECENTD_STORE", value_name = "URL")]
    pub store: Option<String>,
    /// The address people open the server at, for the link [default: http://127.0.0.1:3000].
    #[arg(long, env = "DECENTD_PUBLIC_URL", value_name = "URL")]
    pub public_url: Option<String>,
    /// The user whose password is to be reset.
    pub username: String,
}
