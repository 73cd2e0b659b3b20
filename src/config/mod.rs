//! Command line, environment and TOML configuration.
//!
//! Every setting of `decentd serve` can come from a flag, an environment variable
//! (`DECENTD_*`), or the TOML file named by `--config`, in that order of precedence, and falls
//! back to a default that works on a small VPS. `resolve` merges the three into `ServerConfig`.

use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::auth::ScryptCost;
use crate::perms::ReadAccess;

mod cli;
pub use cli::*;

/// The version and the commit it was built from (`build.rs`).
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("DECENTD_COMMIT"),
    ")"
);

pub const DEFAULT_LISTEN: &str = "127.0.0.1:3000";
pub const DEFAULT_DATA: &str = "./decentd-data";
pub const DEFAULT_BODY_LIMIT: usize = 1024 * 1024;
/// 10 MB, the API doc's limit for images.
pub const DEFAULT_UPLOAD_LIMIT: usize = 10_000_000;
/// Longest message text, in characters.
pub const DEFAULT_MAX_MESSAGE_LENGTH: usize = 10_000;
/// 30 days.
pub const DEFAULT_SESSION_TTL_SECS: u64 = 30 * 86_400;
/// Lifetime of a session logged in with `rememberMe: false`, extended by every use.
pub const DEFAULT_SHORT_SESSION_TTL_SECS: u64 = 86_400;
/// scrypt N = 2^15, r = 8, p = 1: 32 MiB and roughly 100 ms per hash on one VPS core.
pub const DEFAULT_SCRYPT: ScryptCost = ScryptCost {
    log_n: 15,
    r: 8,
    p: 1,
};
pub const DEFAULT_HASH_CONCURRENCY: usize = 2;
pub const DEFAULT_CACHE_MB: u64 = 64;
pub const DEFAULT_PING_INTERVAL_SECS: u64 = 10;
pub const MAX_PING_INTERVAL_SECS: u64 = 30;
pub const DEFAULT_SHUTDOWN_TIMEOUT_SECS: u64 = 10;
pub const DEFAULT_MAX_WEBSOCKETS: usize = 20_000;
/// Events waiting for one socket before it counts as too slow and is closed.
pub const DEFAULT_WS_SEND_QUEUE: usize = 256;
/// HTTP requests per second from one client address (bursts of five times as many).
pub const DEFAULT_RATE_LIMIT: u32 = 20;
/// HTTP requests per second with one session (bursts of five times as many).
pub const DEFAULT_SESSION_RATE_LIMIT: u32 = 20;
/// Logins, registrations and lost-password requests per minute from one client address.
pub const DEFAULT_LOGIN_RATE_LIMIT: u32 = 10;
/// Uploads per minute from one client address.
pub const DEFAULT_UPLOAD_RATE_LIMIT: u32 = 30;
/// The SignalR hub's keep-alive: a Ping every so many seconds (ASP.NET Core's default).
pub const DEFAULT_HUB_KEEP_ALIVE_SECS: u64 = 15;
/// A hub client that sends nothing (not even a Ping) for this long is closed (ASP.NET Core's
/// default; clients ping every 15 s).
pub const DEFAULT_HUB_CLIENT_TIMEOUT_SECS: u64 = 30;
pub const DEFAULT_WS_WRITE_TIMEOUT_SECS: u64 = 10;
pub const DEFAULT_TCP_SEND_BUFFER_KIB: usize = 128;
pub const DEFAULT_TCP_RECV_BUFFER_KIB: usize = 64;
/// A request body that sends nothing for this long is refused with 408.
pub const DEFAULT_HTTP_BODY_TIMEOUT_SECS: u64 = 15;
/// A response the client does not read for this long is dropped with its connection.
pub const DEFAULT_HTTP_WRITE_TIMEOUT_SECS: u64 = 30;
/// Free disk space below which writes are refused (MiB).
pub const DEFAULT_MIN_FREE_SPACE_MIB: u64 = 64;
/// Connections to PostgreSQL each node keeps at most.
pub const DEFAULT_STORE_POOL: usize = 16;

/// HTTPS certificate chain and private key files, as given (read by `net::tls`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// The TOML file: the same settings as the flags, in snake_case.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub listen: Option<String>,
    pub data: Option<PathBuf>,
    pub plugins: Option<PathBuf>,
    pub admins: Option<Vec<String>>,
    pub cors_origins: Option<Vec<String>>,
    pub read_access: Option<ReadAccess>,
    pub body_limit: Option<usize>,
    pub upload_limit: Option<usize>,
    pub max_message_length: Option<usize>,
    pub session_ttl: Option<u64>,
    pub short_session_ttl: Option<u64>,
    pub scrypt_log_n: Option<u8>,
    pub scrypt_r: Option<u32>,
    pub scrypt_p: Option<u32>,
    pub hash_concurrency: Option<usize>,
    pub cache_mb: Option<u64>,
    pub ping_interval: Option<u64>,
    pub max_websockets: Option<usize>,
    pub ws_send_queue: Option<usize>,
    pub ws_write_timeout: Option<u64>,
    pub hub_keep_alive: Option<u64>,
    pub hub_client_timeout: Option<u64>,
    pub metrics_listen: Option<String>,
    pub rate_limit: Option<u32>,
    pub session_rate_limit: Option<u32>,
    pub login_rate_limit: Option<u32>,
    pub upload_rate_limit: Option<u32>,
    pub trusted_proxies: Option<Vec<String>>,
    pub tcp_send_buffer: Option<usize>,
    pub tcp_recv_buffer: Option<usize>,
    pub http_body_timeout: Option<u64>,
    pub http_write_timeout: Option<u64>,
    pub min_free_space: Option<u64>,
    pub chatbox_guests: Option<bool>,
    pub chatbox_channel: Option<String>,
    pub store: Option<String>,
    pub store_pool: Option<usize>,
    pub bus: Option<String>,
    pub uploads: Option<PathBuf>,
    pub restart_grace: Option<u64>,
    pub shutdown_timeout: Option<u64>,
    pub workers: Option<usize>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    pub secure: Option<bool>,
    pub public_url: Option<String>,
    pub smtp_url: Option<String>,
    pub mail_from: Option<String>,
    pub log_format: Option<LogFormat>,
    pub log: Option<String>,
}

/// The settings the server runs with.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub listen: String,
    pub data: PathBuf,
    /// One subdirectory per plugin.
    pub plugins: PathBuf,
    pub admins: Vec<String>,
    /// Origins allowed by CORS; empty: any origin.
    pub cors_origins: Vec<String>,
    /// The read-access preset for a data directory's first start (`None`: not given).
    pub read_access: Option<ReadAccess>,
    pub body_limit: usize,
    pub upload_limit: usize,
    pub max_message_length: usize,
    pub session_ttl: Duration,
    /// Lifetime after the last use of a session logged in with `rememberMe: false`.
    pub short_session_ttl: Duration,
    pub scrypt: ScryptCost,
    pub hash_concurrency: usize,
    pub cache_bytes: u64,
    pub ping_interval: Duration,
    pub max_websockets: usize,
    pub ws_send_queue: usize,
    pub ws_write_timeout: Duration,
    /// HTTP rate limits (0: none): per address and per session per second, logins and uploads
    /// per address per minute.
    pub rate_limit: u32,
    pub session_rate_limit: u32,
    pub login_rate_limit: u32,
    pub upload_rate_limit: u32,
    /// Peers whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// Where `/metrics` is served (None: nowhere).
    pub metrics_listen: Option<String>,
    /// The SignalR hub's Ping interval and client timeout.
    pub hub_keep_alive: Duration,
    pub hub_client_timeout: Duration,
    /// Kernel socket buffer sizes in bytes (0: autotuning).
    pub tcp_send_buffer: usize,
    pub tcp_recv_buffer: usize,
    pub http_body_timeout: Duration,
    pub http_write_timeout: Duration,
    /// Writes are refused while the disk has less free space (bytes; 0: never).
    pub min_free_space: u64,
    /// `/v2/guest` accepts read-only guests.
    pub chatbox_guests: bool,
    /// Where a chatbox `say` without `channel` goes (a name or ID).
    pub chatbox_channel: Option<String>,
    /// PostgreSQL storage (a `postgres://` URL); None: the embedded store in `data`.
    pub store: Option<String>,
    /// Connections to PostgreSQL at most.
    pub store_pool: usize,
    /// The NATS server cluster events travel through; None: this node only.
    pub bus: Option<String>,
    /// Where uploaded images are kept.
    pub uploads: PathBuf,
    /// Delay between a stop signal and the stop, announced to bots.
    pub restart_grace: Duration,
    pub shutdown_timeout: Duration,
    pub workers: usize,
    /// HTTPS certificate and key files (None: plain HTTP).
    pub tls: Option<TlsFiles>,
    pub secure: bool,
    /// Where people open the server, without a trailing slash (links in mail).
    pub public_url: String,
    /// SMTP server URL for lost-password mail, if any.
    pub smtp_url: Option<String>,
    /// Sender of mail.
    pub mail_from: String,
    pub log_format: LogFormat,
    pub log: String,
}

/// A configuration problem, reported before anything starts.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path} is not valid: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{0}")]
    Invalid(String),
}

/// The public URL (given, or `http://<listen>`), checked and without a trailing slash, and the
/// sender of mail (given, or `decentd <noreply@HOST>` for the public URL's domain).
pub fn public_url_and_sender(
    public_url: Option<String>,
    mail_from: Option<String>,
    listen: &str,
) -> Result<(String, String), ConfigError> {
    let explicit = public_url.is_some();
    let given = public_url.unwrap_or_else(|| format!("http://{listen}"));
    let parsed = url::Url::parse(&given)
        .ok()
        .filter(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some());
    // Only a given URL is checked here: one made from a bad --listen is reported as that.
    if parsed.is_none() && explicit {
        return Err(ConfigError::Invalid(format!(
            "public URL {given:?} must be an http:// or https:// address with a host"
        )));
    }
    let sender = mail_from.unwrap_or_else(|| match parsed.as_ref().and_then(|u| u.host()) {
        Some(url::Host::Domain(domain)) if domain.contains('.') => {
            format!("decentd <noreply@{domain}>")
        }
        _ => "decentd <noreply@localhost>".to_owned(),
    });
    Ok((given.trim_end_matches('/').to_owned(), sender))
}

pub fn load_file(path: &Path) -> Result<FileConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    toml::from_str(&text).map_err(|e| ConfigError::Parse {
        path: path.to_owned(),
        message: e.to_string(),
    })
}

/// An origin as browsers send it: `scheme://host[:port]`, nothing else.
fn validate_origin(origin: &str) -> Result<(), ConfigError> {
    let invalid = || {
        ConfigError::Invalid(format!(
            "--cors-origins: {origin:?} is not an origin; write it as a browser sends it, \
             e.g. https://chat.example.com or http://localhost:8080"
        ))
    };
    let url = url::Url::parse(origin).map_err(|_| invalid())?;
    let bare = url.path() == "/" && !origin.ends_with('/');
    if !matches!(url.scheme(), "http" | "https")
        || url.host_str().is_none()
        || !bare
        || url.query().is_some()
        || url.fragment().is_some()
        || !url.username().is_empty()
    {
        return Err(invalid());
    }
    Ok(())
}

impl ServeArgs {
    /// Merges flags and environment (already in `self`) over the file over the defaults.
    pub fn resolve(self) -> Result<ServerConfig, ConfigError> {
        let file = match &self.config {
            Some(path) => load_file(path)?,
            None => FileConfig::default(),
        };
        let data: PathBuf = self
            .data
            .clone()
            .or(file.data.clone())
            .unwrap_or_else(|| DEFAULT_DATA.into());
        let store = self.store.clone().or(file.store.clone());
        if let Some(url) = &store {
            if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
                return Err(ConfigError::Invalid(format!(
                    "--store must be a postgres:// or postgresql:// URL, not {url:?}"
                )));
            }
        }
        let bus = self.bus.clone().or(file.bus.clone());
        if let Some(url) = &bus {
            if !url.starts_with("nats://") {
                return Err(ConfigError::Invalid(format!(
                    "--bus must be a nats:// URL, not {url:?}"
                )));
            }
            if store.is_none() {
                return Err(ConfigError::Invalid(
                    "--bus connects cluster nodes, which share PostgreSQL storage: \
                     give --store postgres://... too"
                        .into(),
                ));
            }
        }
        let uploads = match self.uploads.clone().or(file.uploads.clone()) {
            Some(_) if store.is_none() => {
                return Err(ConfigError::Invalid(
                    "--uploads is for cluster nodes sharing one directory (with --store \
                     postgres://...); the embedded store keeps uploads in DATA/uploads, \
                     where backups find them"
                        .into(),
                ))
            }
            Some(dir) => dir,
            None => data.join("uploads"),
        };
        let admins = if self.admins.is_empty() {
            file.admins.unwrap_or_default()
        } else {
            self.admins
        };
        let cors_origins = if self.cors_origins.is_empty() {
            file.cors_origins.unwrap_or_default()
        } else {
            self.cors_origins
        };
        for origin in &cors_origins {
            validate_origin(origin)?;
        }
        let ping = self
            .ping_interval
            .or(file.ping_interval)
            .unwrap_or(DEFAULT_PING_INTERVAL_SECS);
        if ping == 0 || ping > MAX_PING_INTERVAL_SECS {
            return Err(ConfigError::Invalid(format!(
                "ping interval must be between 1 and {MAX_PING_INTERVAL_SECS} seconds (spec 3.2), got {ping}"
            )));
        }
        let trusted = if self.trusted_proxies.is_empty() {
            file.trusted_proxies.unwrap_or_default()
        } else {
            self.trusted_proxies
        };
        let trusted_proxies = trusted
            .iter()
            .map(|raw| {
                let raw = raw.trim();
                raw.parse::<ipnet::IpNet>()
                    .or_else(|_| raw.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                    .map_err(|_| {
                        ConfigError::Invalid(format!(
                            "--trusted-proxies: {raw:?} is neither an IP address nor a CIDR range"
                        ))
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let hub_keep_alive = self
            .hub_keep_alive
            .or(file.hub_keep_alive)
            .unwrap_or(DEFAULT_HUB_KEEP_ALIVE_SECS);
        let hub_client_timeout = self
            .hub_client_timeout
            .or(file.hub_client_timeout)
            .unwrap_or(DEFAULT_HUB_CLIENT_TIMEOUT_SECS);
        if hub_keep_alive == 0 || hub_client_timeout <= hub_keep_alive {
            return Err(ConfigError::Invalid(format!(
                "the hub's keep-alive must be at least 1 second and its client timeout longer \
                 (got {hub_keep_alive} and {hub_client_timeout} seconds)"
            )));
        }
        let body_limit = self
            .body_limit
            .or(file.body_limit)
            .unwrap_or(DEFAULT_BODY_LIMIT);
        if body_limit < 1024 {
            return Err(ConfigError::Invalid(format!(
                "body limit must be at least 1024 bytes, got {body_limit}"
            )));
        }
        let upload_limit = self
            .upload_limit
            .or(file.upload_limit)
            .unwrap_or(DEFAULT_UPLOAD_LIMIT);
        let max_message_length = self
            .max_message_length
            .or(file.max_message_length)
            .unwrap_or(DEFAULT_MAX_MESSAGE_LENGTH);
        if max_message_length == 0 {
            return Err(ConfigError::Invalid(
                "max message length must be at least 1 character".into(),
            ));
        }
        let scrypt = ScryptCost {
            log_n: self
                .scrypt_log_n
                .or(file.scrypt_log_n)
                .unwrap_or(DEFAULT_SCRYPT.log_n),
            r: self.scrypt_r.or(file.scrypt_r).unwrap_or(DEFAULT_SCRYPT.r),
            p: self.scrypt_p.or(file.scrypt_p).unwrap_or(DEFAULT_SCRYPT.p),
        };
        let cpus = std::thread::available_parallelism().map_or(2, |n| n.get());
        // A worker waits on PostgreSQL while a query runs (the storage interface is
        // synchronous): with PostgreSQL storage, enough workers to keep the pool busy.
        let workers = self.workers.or(file.workers).unwrap_or(if store.is_some() {
            (cpus * 4).max(DEFAULT_STORE_POOL)
        } else {
            cpus
        });
        let listen = self
            .listen
            .or(file.listen)
            .unwrap_or_else(|| DEFAULT_LISTEN.into());
        let tls = match (
            self.tls_cert.or(file.tls_cert),
            self.tls_key.or(file.tls_key),
        ) {
            (Some(cert), Some(key)) => Some(TlsFiles { cert, key }),
            (None, None) => None,
            (Some(_), None) => {
                return Err(ConfigError::Invalid(
                    "--tls-cert needs --tls-key (the certificate's private key)".into(),
                ))
            }
            (None, Some(_)) => {
                return Err(ConfigError::Invalid(
                    "--tls-key needs --tls-cert (the certificate chain)".into(),
                ))
            }
        };
        let default_public_url = tls.as_ref().map(|_| format!("https://{listen}"));
        let (public_url, mail_from) = public_url_and_sender(
            self.public_url.or(file.public_url).or(default_public_url),
            self.mail_from.or(file.mail_from),
            &listen,
        )?;
        Ok(ServerConfig {
            listen,
            plugins: self
                .plugins
                .or(file.plugins)
                .unwrap_or_else(|| data.join("plugins")),
            data,
            admins,
            cors_origins,
            read_access: self.read_access.or(file.read_access),
            body_limit,
            upload_limit,
            max_message_length,
            session_ttl: Duration::from_secs(
                self.session_ttl
                    .or(file.session_ttl)
                    .unwrap_or(DEFAULT_SESSION_TTL_SECS)
                    .max(1),
            ),
            short_session_ttl: Duration::from_secs(
                self.short_session_ttl
                    .or(file.short_session_ttl)
                    .unwrap_or(DEFAULT_SHORT_SESSION_TTL_SECS)
                    .max(1),
            ),
            scrypt,
            hash_concurrency: self
                .hash_concurrency
                .or(file.hash_concurrency)
                .unwrap_or(DEFAULT_HASH_CONCURRENCY)
                .max(1),
            cache_bytes: self.cache_mb.or(file.cache_mb).unwrap_or(DEFAULT_CACHE_MB) * 1024 * 1024,
            ping_interval: Duration::from_secs(ping),
            metrics_listen: self.metrics_listen.or(file.metrics_listen),
            rate_limit: self
                .rate_limit
                .or(file.rate_limit)
                .unwrap_or(DEFAULT_RATE_LIMIT),
            session_rate_limit: self
                .session_rate_limit
                .or(file.session_rate_limit)
                .unwrap_or(DEFAULT_SESSION_RATE_LIMIT),
            login_rate_limit: self
                .login_rate_limit
                .or(file.login_rate_limit)
                .unwrap_or(DEFAULT_LOGIN_RATE_LIMIT),
            upload_rate_limit: self
                .upload_rate_limit
                .or(file.upload_rate_limit)
                .unwrap_or(DEFAULT_UPLOAD_RATE_LIMIT),
            trusted_proxies,
            hub_keep_alive: Duration::from_secs(hub_keep_alive),
            hub_client_timeout: Duration::from_secs(hub_client_timeout),
            max_websockets: self
                .max_websockets
                .or(file.max_websockets)
                .unwrap_or(DEFAULT_MAX_WEBSOCKETS),
            ws_send_queue: self
                .ws_send_queue
                .or(file.ws_send_queue)
                .unwrap_or(DEFAULT_WS_SEND_QUEUE)
                .max(1),
            tcp_send_buffer: self
                .tcp_send_buffer
                .or(file.tcp_send_buffer)
                .unwrap_or(DEFAULT_TCP_SEND_BUFFER_KIB)
                .saturating_mul(1024),
            tcp_recv_buffer: self
                .tcp_recv_buffer
                .or(file.tcp_recv_buffer)
                .unwrap_or(DEFAULT_TCP_RECV_BUFFER_KIB)
                .saturating_mul(1024),
            ws_write_timeout: Duration::from_secs(
                self.ws_write_timeout
                    .or(file.ws_write_timeout)
                    .unwrap_or(DEFAULT_WS_WRITE_TIMEOUT_SECS)
                    .max(1),
            ),
            http_body_timeout: Duration::from_secs(
                self.http_body_timeout
                    .or(file.http_body_timeout)
                    .unwrap_or(DEFAULT_HTTP_BODY_TIMEOUT_SECS)
                    .max(1),
            ),
            http_write_timeout: Duration::from_secs(
                self.http_write_timeout
                    .or(file.http_write_timeout)
                    .unwrap_or(DEFAULT_HTTP_WRITE_TIMEOUT_SECS)
                    .max(1),
            ),
            min_free_space: self
                .min_free_space
                .or(file.min_free_space)
                .unwrap_or(DEFAULT_MIN_FREE_SPACE_MIB)
                .saturating_mul(1024 * 1024),
            chatbox_guests: self.chatbox_guests.or(file.chatbox_guests).unwrap_or(false),
            chatbox_channel: self.chatbox_channel.or(file.chatbox_channel),
            store,
            store_pool: self
                .store_pool
                .or(file.store_pool)
                .unwrap_or(DEFAULT_STORE_POOL)
                .max(2),
            bus,
            uploads,
            restart_grace: Duration::from_secs(
                self.restart_grace.or(file.restart_grace).unwrap_or(0),
            ),
            shutdown_timeout: Duration::from_secs(
                self.shutdown_timeout
                    .or(file.shutdown_timeout)
                    .unwrap_or(DEFAULT_SHUTDOWN_TIMEOUT_SECS),
            ),
            workers: workers.max(1),
            secure: self.secure.or(file.secure).unwrap_or(tls.is_some()),
            tls,
            public_url,
            smtp_url: self.smtp_url.or(file.smtp_url),
            mail_from,
            log_format: self
                .log_format
                .or(file.log_format)
                .unwrap_or(LogFormat::Text),
            log: self.log.or(file.log).unwrap_or_else(|| "info".into()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_public_url_is_checked_and_names_the_default_sender() {
        let (url, from) =
            public_url_and_sender(Some("https://chat.example.com/".into()), None, "x").unwrap();
        assert_eq!(url, "https://chat.example.com");
        assert_eq!(from, "decentd <noreply@chat.example.com>");
        let (url, from) = public_url_and_sender(None, None, "127.0.0.1:3000").unwrap();
        assert_eq!(url, "http://127.0.0.1:3000");
        assert_eq!(from, "decentd <noreply@localhost>");
        let (_, from) =
            public_url_and_sender(None, Some("Chat <a@b.org>".into()), "127.0.0.1:1").unwrap();
        assert_eq!(from, "Chat <a@b.org>");
        assert!(public_url_and_sender(Some("ftp://x".into()), None, "x").is_err());
        assert!(public_url_and_sender(Some("chat.example.com".into()), None, "x").is_err());
    }
    use std::io::Write;

    #[test]
    fn defaults_work_without_any_input() {
        let config = ServeArgs::default().resolve().unwrap();
        assert_eq!(config.listen, DEFAULT_LISTEN);
        assert_eq!(config.data, PathBuf::from(DEFAULT_DATA));
        assert_eq!(config.body_limit, DEFAULT_BODY_LIMIT);
        assert_eq!(config.scrypt, DEFAULT_SCRYPT);
    }

    #[test]
    fn flags_override_the_file_which_overrides_defaults() {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        writeln!(
            file,
            "listen = \"0.0.0.0:4000\"\nadmins = [\"root\"]\nbody_limit = 4096"
        )
        .unwrap();
        let args = ServeArgs {
            config: Some(file.path().to_owned()),
            body_limit: Some(8192),
            ..Default::default()
        };
        let config = args.resolve().unwrap();
        assert_eq!(config.listen, "0.0.0.0:4000");
        assert_eq!(config.admins, vec!["root".to_owned()]);
        assert_eq!(config.body_limit, 8192);
    }

    #[test]
    fn unknown_file_keys_and_bad_values_are_clear_errors() {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        writeln!(file, "lisen = \"x\"").unwrap();
        let err = ServeArgs {
            config: Some(file.path().to_owned()),
            ..Default::default()
        }
        .resolve()
        .unwrap_err();
        assert!(err.to_string().contains("lisen"), "{err}");
        let err = ServeArgs {
            ping_interval: Some(60),
            ..Default::default()
        }
        .resolve()
        .unwrap_err();
        assert!(err.to_string().contains("ping interval"));
    }
}
