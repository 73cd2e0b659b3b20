//! Starting and stopping: `decentd serve` and `decentd make-admin`.
//!
//! `serve` opens the data directory, builds the app, binds, and runs until SIGINT or SIGTERM.
//! Then it stops accepting connections, tells WebSockets the server is going away, lets
//! in-flight requests finish (up to the shutdown timeout), flushes storage and returns.

use actix_http::{HttpService, Protocol};
use actix_service::{fn_service, ServiceFactoryExt};
use actix_web::dev::{AppConfig, Server};
use actix_web::middleware::{from_fn, NormalizePath, TrailingSlash};
use actix_web::{guard, web, App};
use std::sync::Arc;

use crate::chat::{grant_admin, Chat, StartupError};
use crate::chatbox::{BotDoor, Gateway};
use crate::config::{MakeAdminArgs, ResetPasswordArgs, ServeArgs, ServerConfig};
use crate::net::{is_websocket_upgrade, TimedStream};
use crate::plugins::PluginHost;
use crate::ws::WsDoor;
use crate::{api, logging};

/// Every door's routes: `/` (the WebSocket, the web client, or the instance details as JSON),
/// the web client's files, the chatbox gateway under `/v2`, and the HTTP API.
fn doors(cfg: &mut web::ServiceConfig) {
    use crate::chatbox::socket as chatbox;
    use crate::ws::signalr;
    cfg.service(
        web::resource("/")
            .route(
                web::get()
                    .guard(guard::fn_guard(|ctx| is_websocket_upgrade(ctx.head())))
                    .to(crate::ws::upgrade),
            )
            .route(
                web::get()
                    .guard(guard::fn_guard(|ctx| crate::web::wants_json(ctx.head())))
                    .to(api::meta::instance),
            )
            .route(web::get().to(crate::web::index))
            .default_service(web::to(crate::net::not_found)),
    )
    // The embedded web client's files.
    .service(web::resource("/app/{path:.*}").route(web::get().to(crate::web::file)))
    // The chatbox bot gateway (extension): `/v2/guest`, `/v2/:licenseKey`, and a closing
    // packet for any other /v2 path.
    .service(
        web::scope("/v2")
            .service(web::resource("/guest").route(web::get().to(chatbox::guest)))
            .service(web::resource("/{key}").route(web::get().to(chatbox::connect)))
            .default_service(web::to(chatbox::unsupported)),
    )
    .service(
        web::resource("/v2")
            .route(web::get().to(chatbox::unsupported))
            .default_service(web::to(crate::net::not_found)),
    )
    // The SignalR hub (extension): negotiate, the WebSockets transport, and a clear refusal
    // of the other transports.
    .service(
        web::resource("/hub/negotiate")
            .route(web::post().to(signalr::negotiate))
            .default_service(web::to(crate::net::not_found)),
    )
    .service(
        web::resource("/hub")
            .route(
                web::get()
                    .guard(guard::fn_guard(|ctx| is_websocket_upgrade(ctx.head())))
                    .to(signalr::connect),
            )
            .default_service(web::to(signalr::other_transport)),
    )
    .configure(api::configure);
}

/// Serves `/metrics` on its own address (one worker), so that it can stay off the public
/// listener; stopped with the server.
fn metrics_server(
    addr: &str,
    chat: web::Data<Chat>,
) -> std::io::Result<actix_web::dev::ServerHandle> {
    let server = actix_web::HttpServer::new(move || {
        App::new()
            .app_data(chat.clone())
            .configure(api::metrics::configure)
            .default_service(web::to(crate::net::not_found))
    })
    .workers(1)
    .disable_signals()
    .bind(addr)
    .map_err(|e| {
        std::io::Error::new(
            e.kind(),
            format!("cannot listen for metrics on {addr}: {e}"),
        )
    })?;
    for bound in server.addrs() {
        tracing::info!(addr = %bound, "metrics listening");
    }
    let server = server.run();
    let handle = server.handle();
    actix_web::rt::spawn(server);
    Ok(handle)
}

/// Removes expired sessions and reset tokens every hour (startup removes expired sessions
/// too), off the async workers.
async fn purge_sessions_hourly(chat: Arc<Chat>) {
    let mut hourly = tokio::time::interval(std::time::Duration::from_secs(3600));
    hourly.tick().await;
    loop {
        hourly.tick().await;
        let chat = chat.clone();
        let purged = tokio::task::spawn_blocking(move || {
            crate::chat::sessions::purge_expired(&chat)?;
            crate::chat::lost_password::purge_expired(&chat)
        })
        .await;
        if let Ok(Err(e)) = purged {
            tracing::warn!(error = %e.message, "removing expired sessions failed; retried in an hour");
        }
    }
}

/// Runs the server until a stop signal. Must run inside an actix system.
/// Runs the server until it is stopped. With `reload`, the command line it was started with,
/// SIGHUP reads the configuration again (see `reload`).
pub async fn serve(config: ServerConfig, reload: Option<ServeArgs>) -> Result<(), StartupError> {
    let workers = config.workers;
    raise_open_file_limit(config.max_websockets);
    let listeners = listen_sockets(&config)?;
    // HTTPS: every connection starts with a handshake; the certificate is swapped on SIGHUP.
    let invalid = crate::config::ConfigError::Invalid;
    let certificates = match &config.tls {
        Some(files) => Some(crate::net::tls::Certificates::load(files).map_err(invalid)?),
        None => None,
    };
    let acceptor = match &certificates {
        Some(c) => Some(crate::net::tls::acceptor(c.clone()).map_err(invalid)?),
        None => None,
    };
    let shutdown_timeout = config.shutdown_timeout;
    tracing::info!(
        data = %config.data.display(),
        scrypt_log_n = config.scrypt.log_n,
        scrypt_memory_mib = config.scrypt.memory_bytes() / (1024 * 1024),
        "starting decentd {}",
        crate::config::VERSION
    );
    // The core, then each door attached to it.
    let store = match &config.store {
        Some(url) => crate::store::open_postgres(url, config.store_pool)?,
        None => {
            let store =
                crate::store::open(&config.data, config.cache_bytes, config.min_free_space)?;
            crate::upgrade::upgrade(&*store, &config.data)?;
            store
        }
    };
    // Taken before the permission index is loaded: changes from then on arrive over NATS.
    let first_change = match &config.bus {
        Some(_) => store.last_change_number()?.unwrap_or(0),
        None => 0,
    };
    let chat = Arc::new(Chat::with_store(config, store)?);
    if let Some(url) = chat.config.bus.clone() {
        let cluster = crate::chat::cluster::Cluster::connect(chat.clone(), &url, first_change)
            .await
            .map_err(StartupError::Cluster)?;
        chat.attach_cluster(cluster);
        tracing::info!(bus = %url, "joined the cluster");
    }
    let state = chat.clone();
    // Nodes sharing an uploads directory leave each other's uploads in progress alone.
    let shared = state.config.store.is_some();
    let interrupted = api::uploads::remove_interrupted_uploads(
        &state.config.uploads,
        std::time::Duration::from_secs(if shared { 3600 } else { 0 }),
    )?;
    if interrupted > 0 {
        tracing::info!(interrupted, "removed uploads a crash interrupted");
    }
    let plugins = PluginHost::new(chat.config.plugins.clone(), &chat.store.plugin_records()?);
    chat.attach_plugins(plugins.clone());
    let gateway = Arc::new(Gateway::default());
    chat.attach_bots(gateway.clone());
    let connections = crate::net::limit::ConnectionLimit::new(chat.config.max_websockets);
    let ws = Arc::new(WsDoor::new(chat.clone(), connections.clone()));
    chat.attach_connections(Arc::new(crate::ws::hub::Port(Arc::downgrade(&ws))));
    let bots = Arc::new(BotDoor {
        chat: chat.clone(),
        gateway: gateway.clone(),
        connections,
    });
    crate::ws::hub::start_fanout(&ws)?;
    actix_web::rt::spawn(crate::plugins::dispatch(chat.clone(), plugins.clone()));
    actix_web::rt::spawn(crate::chatbox::dispatch(chat.clone(), gateway.clone()));
    actix_web::rt::spawn(crate::net::summarize_failed_connections());
    actix_web::rt::spawn(crate::memory::report_periodically());
    actix_web::rt::spawn(purge_sessions_hourly(chat.clone()));
    if let Err(e) = crate::backup::serve_control(chat.clone(), &chat.config.data) {
        // Serving goes on; only `decentd backup` of the running server is unavailable.
        tracing::warn!(
            error = %e,
            dir = %chat.config.data.display(),
            "cannot open the control socket: `decentd backup` will not reach this server (a data path over ~100 bytes is too long for a socket)"
        );
    }
    {
        let chat = chat.clone();
        let through = chat.search_committed_through;
        std::thread::Builder::new()
            .name("search-catch-up".into())
            .spawn(move || crate::chat::search::catch_up(&chat, through))?;
    }
    plugins.load_all(&chat).await;
    let (chat_data, ws_data, bots_data) = (
        web::Data::from(chat.clone()),
        web::Data::from(ws),
        web::Data::from(bots),
    );
    let limits = web::Data::new(crate::net::rate::RateLimits::new(&chat.config));
    let limits_for_reload = limits.clone();
    actix_web::rt::spawn(crate::net::rate::forget_idle_clients(limits.clone()));
    let app = move || {
        App::new()
            .app_data(chat_data.clone())
            .app_data(ws_data.clone())
            .app_data(bots_data.clone())
            .app_data(limits.clone())
            .wrap(from_fn(crate::net::limit_body_reads))
            .wrap(from_fn(crate::net::rate::limit))
            .wrap(from_fn(logging::log_request))
            .wrap(cors(&chat_data.config.cors_origins))
            // Every answer (JSON errors included) is what its Content-Type says: no browser
            // sniffs a JSON answer into a page.
            .wrap(
                actix_web::middleware::DefaultHeaders::new()
                    .add((actix_web::http::header::X_CONTENT_TYPE_OPTIONS, "nosniff")),
            )
            // One rule for every route: a trailing slash names the same route.
            .wrap(NormalizePath::new(TrailingSlash::Trim))
            .configure(doors)
            .default_service(web::to(crate::net::not_found))
    };
    // actix-web's HttpServer, assembled by hand to add the upgrade service: WebSocket upgrade
    // requests still go through the app, but their connections are handed over to us
    // (`ws::upgrade`).
    let mut server = Server::build()
        .workers(workers)
        .shutdown_timeout(shutdown_timeout.as_secs())
        .disable_signals();
    // Told on a graceful stop, so idle keep-alive connections close at once (as HttpServer does).
    let stopping = server.graceful_shutdown_signal();
    let write_timeout = state.config.http_write_timeout;
    let stall_budget = crate::net::StallBudget::new(crate::net::MAX_STALLED);
    let scheme = if acceptor.is_some() { "https" } else { "http" };
    for listener in listeners {
        let addr = listener.local_addr()?;
        let (app, stopping, stall_budget) = (app.clone(), stopping.clone(), stall_budget.clone());
        let acceptor = acceptor.clone();
        server = server.listen(format!("decentd-{addr}"), listener, move || {
            let stopping = stopping.clone();
            let for_app = |app: App<_>| actix_service::map_config(app, |_| AppConfig::default());
            // Responses and frames are written whole; Nagle's algorithm would only hold a small
            // frame back until the client acknowledges the previous one.
            let http = HttpService::build()
                .graceful_shutdown_signal(move || {
                    let stopping = stopping.clone();
                    async move { stopping.notified().await }
                })
                .local_addr(addr)
                .upgrade(crate::net::upgrade::service(for_app(app())))
                .finish(for_app(app()));
            let (stall_budget, acceptor) = (stall_budget.clone(), acceptor.clone());
            fn_service(move |stream: tokio::net::TcpStream| {
                let (stall_budget, acceptor) = (stall_budget.clone(), acceptor.clone());
                async move {
                    let _ = stream.set_nodelay(true);
                    let peer = stream.peer_addr().ok();
                    let io = match &acceptor {
                        None => crate::net::Io::Plain(stream),
                        Some(acceptor) => crate::net::Io::Tls(Box::new(
                            crate::net::tls::handshake(acceptor, stream)
                                .await
                                .map_err(actix_http::error::DispatchError::Io)?,
                        )),
                    };
                    let stream = TimedStream::new(io, write_timeout, stall_budget);
                    Ok::<_, actix_http::error::DispatchError>((stream, Protocol::Http1, peer))
                }
            })
            .and_then(http)
            .map_err(|e| {
                crate::net::connection_failed(&e);
                e
            })
        })?;
        tracing::info!(addr = %addr, scheme, "listening");
        // Compresses the embedded web client now rather than in the first visitor's request.
        let gzipped_bytes = crate::web::gzipped_size();
        tracing::debug!(gzipped_bytes, "web client ready");
        let token = state
            .setup_token
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        if let Some(token) = token {
            tracing::warn!(
                link = %format!("{scheme}://{addr}/#setup={token}"),
                "no administrator yet: open this link in a browser to create the administrator account (it works once; a restart makes a new one)"
            );
        }
    }
    let metrics = match &state.config.metrics_listen {
        Some(addr) => Some(metrics_server(addr, web::Data::from(state.clone()))?),
        None => None,
    };
    let server = server.run();
    let handle = server.handle();
    tokio::pin!(server);
    let mut signals = Signals::install();
    let mut hangups = Hangups::install();
    let mut restart = state.restart.subscribe();
    let grace = state.config.restart_grace;
    let why = loop {
        let due = restart.borrow_and_update().as_ref().map(|r| r.at_ms);
        let scheduled_stop = async move {
            match due {
                Some(at) => {
                    let wait = at.saturating_sub(crate::ids::now_ms());
                    tokio::time::sleep(std::time::Duration::from_millis(wait)).await
                }
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            result = &mut server => {
                result?;
                break None;
            }
            signal = signals.next() => {
                // With a grace period, the first signal schedules the stop (and tells the
                // bots); a second signal, or one during a scheduled stop, stops at once.
                if grace.is_zero() || restart.borrow().is_some() {
                    break Some(signal);
                }
                tracing::info!(signal, seconds = grace.as_secs(), "stopping after the restart grace period; signal again to stop now");
                crate::chat::restart::schedule(
                    &state,
                    crate::chat::Restart::new("automatic", grace.as_secs()),
                );
            }
            _ = restart.changed() => {}
            () = scheduled_stop => break Some("scheduled restart"),
            () = hangups.next() => match &reload {
                Some(args) => {
                    reload_on_hangup(args, &state, &plugins, &limits_for_reload, certificates.as_deref()).await
                }
                None => tracing::info!("SIGHUP ignored: no command line to reload from"),
            },
        }
    };
    if let Some(why) = why {
        tracing::info!(why, "stopping: finishing in-flight requests");
        state.shutdown.send_replace(true);
        if let Some(metrics) = &metrics {
            metrics.stop(false).await;
        }
        // The server future processes the stop command, so poll both together.
        let (_, result) = tokio::join!(handle.stop(true), &mut server);
        result?;
    }
    state.store.flush()?;
    if let Some(index) = &state.search {
        index.close();
    }
    let _ = std::fs::remove_file(state.config.data.join(crate::backup::CONTROL_SOCKET));
    tracing::info!("storage flushed; stopped");
    Ok(())
}

/// CORS for every route: Decent clients connect to any server, so any origin may call the API
/// unless `--cors-origins` names the ones that may. Preflights are answered here for the
/// methods and headers clients send. A request from another origin is not refused (WebSocket
/// upgrades must keep working from anywhere; browsers apply CORS to them), it only gets no CORS
/// headers, so a browser will not let that page read the answer. Credentialed requests are
/// allowed (the origin is echoed): decentd sets no cookies, so they carry nothing a page could
/// abuse, and SignalR's browser client sends its negotiate with credentials by default.
fn cors(origins: &[String]) -> actix_cors::Cors {
    use actix_web::http::{header, Method};
    let mut cors = actix_cors::Cors::default()
        .allowed_methods([
            Method::GET,
            Method::POST,
            Method::PATCH,
            Method::PUT,
            Method::DELETE,
        ])
        .allowed_headers([
            header::HeaderName::from_static("x-session-id"),
            header::HeaderName::from_static("uid"),
            header::HeaderName::from_static("totp"),
            header::CONTENT_TYPE,
            header::AUTHORIZATION,
            // What SignalR's browser client adds to negotiate.
            header::HeaderName::from_static("x-requested-with"),
            header::HeaderName::from_static("x-signalr-user-agent"),
        ])
        .supports_credentials()
        .max_age(86_400)
        .block_on_origin_mismatch(false);
    if origins.is_empty() {
        cors = cors.allow_any_origin();
    }
    for origin in origins {
        cors = cors.allowed_origin(origin);
    }
    cors
}

/// Raises the soft open-file limit toward what `max_websockets` sockets need (each socket is
/// one descriptor; storage and HTTP clients need some more), up to the hard limit.
fn raise_open_file_limit(max_websockets: usize) {
    let wanted = max_websockets as u64 + 1024;
    match rlimit::increase_nofile_limit(wanted) {
        Ok(got) if got < max_websockets as u64 => tracing::warn!(
            open_files = got,
            max_websockets,
            "the open-file limit is below --max-websockets; raise the hard limit (ulimit -Hn) \
             or lower --max-websockets"
        ),
        Ok(got) if got < wanted => tracing::info!(
            open_files = got,
            max_websockets,
            "the open-file limit leaves little room beyond --max-websockets"
        ),
        Ok(got) => tracing::debug!(open_files = got, "open-file limit"),
        Err(e) => tracing::warn!(error = %e, "cannot raise the open-file limit"),
    }
}

/// Binds every address `--listen` resolves to, with the configured kernel buffer sizes
/// (accepted connections inherit them).
fn listen_sockets(config: &ServerConfig) -> std::io::Result<Vec<std::net::TcpListener>> {
    use socket2::{Domain, Socket, Type};
    use std::net::ToSocketAddrs;
    let listen = &config.listen;
    let context = |e: std::io::Error| {
        std::io::Error::new(e.kind(), format!("cannot listen on {listen}: {e}"))
    };
    let mut listeners = Vec::new();
    for addr in listen.to_socket_addrs().map_err(context)? {
        let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None).map_err(context)?;
        socket.set_reuse_address(true).map_err(context)?;
        if config.tcp_send_buffer > 0 {
            socket
                .set_send_buffer_size(config.tcp_send_buffer)
                .map_err(context)?;
        }
        if config.tcp_recv_buffer > 0 {
            socket
                .set_recv_buffer_size(config.tcp_recv_buffer)
                .map_err(context)?;
        }
        socket.bind(&addr.into()).map_err(context)?;
        socket.listen(1024).map_err(context)?;
        listeners.push(socket.into());
    }
    Ok(listeners)
}

/// The stop signals (SIGINT, SIGTERM), installed once so none is missed between waits.
/// SIGHUP: reload.
struct Hangups {
    #[cfg(unix)]
    signal: Option<tokio::signal::unix::Signal>,
}

impl Hangups {
    fn install() -> Self {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            Self {
                signal: signal(SignalKind::hangup()).ok(),
            }
        }
        #[cfg(not(unix))]
        Self {}
    }

    async fn next(&mut self) {
        #[cfg(unix)]
        if let Some(signal) = &mut self.signal {
            signal.recv().await;
            return;
        }
        std::future::pending::<()>().await
    }
}

/// SIGHUP: reads the configuration again (flags, environment and the `--config` file) and
/// applies what can change while running — the log filter, the rate limits and the trusted
/// proxies — then reloads every plugin directory. Other changed settings are named in the log:
/// they take effect at the next start. An invalid configuration changes nothing.
async fn reload_on_hangup(
    args: &ServeArgs,
    state: &Arc<Chat>,
    plugins: &Arc<PluginHost>,
    limits: &crate::net::rate::RateLimits,
    certificates: Option<&crate::net::tls::Certificates>,
) {
    tracing::info!("SIGHUP: reloading the configuration and the plugins");
    match args.clone().resolve() {
        Ok(new) => {
            if let Err(e) = logging::set_filter(&new.log) {
                tracing::warn!(error = %e, "the new log filter is not valid; keeping the old one");
            }
            limits.replace(&new);
            match (certificates, &new.tls) {
                (Some(certificates), Some(files)) => match certificates.reload(files) {
                    Ok(()) => {
                        tracing::info!(cert = %files.cert.display(), "TLS certificate reloaded")
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "the TLS certificate did not load; the one in use stays")
                    }
                },
                (Some(_), None) => tracing::warn!(
                    "--tls-cert was removed: decentd serves HTTPS until it is restarted"
                ),
                (None, Some(_)) => tracing::warn!(
                    "--tls-cert was added: decentd serves plain HTTP until it is restarted"
                ),
                (None, None) => {}
            }
            // What else changed, with the applied settings taken out of the comparison.
            let mut rest = new.clone();
            rest.log = state.config.log.clone();
            rest.rate_limit = state.config.rate_limit;
            rest.session_rate_limit = state.config.session_rate_limit;
            rest.login_rate_limit = state.config.login_rate_limit;
            rest.upload_rate_limit = state.config.upload_rate_limit;
            rest.trusted_proxies = state.config.trusted_proxies.clone();
            if certificates.is_some() && new.tls.is_some() {
                rest.tls = state.config.tls.clone();
            }
            if format!("{rest:?}") != format!("{:?}", state.config) {
                tracing::warn!(
                    "other settings changed too: they take effect when decentd is restarted"
                );
            }
        }
        Err(e) => tracing::error!(
            error = %e,
            "the configuration is not valid; the running configuration stays"
        ),
    }
    plugins.load_all(state).await;
    tracing::info!(
        "reloaded: log filter, rate limits, trusted proxies, TLS certificate and plugins"
    );
}

struct Signals {
    #[cfg(unix)]
    unix: Option<(tokio::signal::unix::Signal, tokio::signal::unix::Signal)>,
}

impl Signals {
    fn install() -> Self {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            let unix = match (
                signal(SignalKind::terminate()),
                signal(SignalKind::interrupt()),
            ) {
                (Ok(term), Ok(int)) => Some((term, int)),
                _ => {
                    tracing::error!("cannot install signal handlers; stop decentd with SIGKILL");
                    None
                }
            };
            Self { unix }
        }
        #[cfg(not(unix))]
        Self {}
    }

    /// Resolves on the next stop signal with its name.
    async fn next(&mut self) -> &'static str {
        #[cfg(unix)]
        {
            let Some((term, int)) = &mut self.unix else {
                return std::future::pending().await;
            };
            tokio::select! {
                _ = term.recv() => "SIGTERM",
                _ = int.recv() => "SIGINT",
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
            "ctrl-c"
        }
    }
}

/// The storage an offline command works on: PostgreSQL at `store`, or the (stopped) data
/// directory's embedded store, refused if a newer decentd wrote it.
fn open_offline(
    data: &std::path::Path,
    store: Option<&str>,
) -> Result<Box<dyn crate::store::Storage>, String> {
    if let Some(url) = store {
        return crate::store::open_postgres(url, 2).map_err(|e| e.to_string());
    }
    let store = crate::store::open(data, 8 * 1024 * 1024, 0).map_err(|e| e.to_string())?;
    crate::upgrade::refuse_newer(&*store, data)?;
    Ok(store)
}

/// `decentd make-admin`: grants the Admin role offline. Returns a message for the operator.
pub fn make_admin(args: &MakeAdminArgs) -> Result<String, String> {
    let store = open_offline(&args.data, args.store.as_deref())?;
    let user = grant_admin(&*store, &args.username)
        .map_err(|e| e.to_string())?
        .ok_or_else(|| {
            format!(
                "there is no user named {} in {}; register first",
                args.username,
                args.data.display()
            )
        })?;
    store.flush().map_err(|e| e.to_string())?;
    Ok(format!("{} now holds the Admin role", user.username))
}

/// `decentd reindex`: rebuilds the search index from storage, with a progress bar.
pub fn reindex(args: &crate::config::ReindexArgs) -> Result<String, String> {
    let store = crate::store::open(&args.data, 64 * 1024 * 1024, 0).map_err(|e| e.to_string())?;
    crate::upgrade::refuse_newer(&*store, &args.data)?;
    let dir = args.data.join("search");
    if dir.exists() {
        std::fs::remove_dir_all(&dir)
            .map_err(|e| format!("cannot remove {}: {e}", dir.display()))?;
    }
    let (index, _) = crate::search::SearchIndex::open(&dir).map_err(|e| e.to_string())?;
    let bar = indicatif::ProgressBar::new_spinner().with_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} {elapsed} {pos} messages indexed ({per_sec})",
        )
        .map_err(|e| e.to_string())?,
    );
    let started = std::time::Instant::now();
    let done = crate::chat::search::index_since(&*store, &index, 0, &|n| bar.set_position(n))
        .map_err(|e| e.message)?;
    index.close();
    bar.finish_and_clear();
    Ok(format!(
        "indexed {done} messages in {:.1} s into {}",
        started.elapsed().as_secs_f64(),
        dir.display()
    ))
}

/// `decentd reset-password`: a one-time link that sets a new password for a user.
pub fn reset_password_link(args: &ResetPasswordArgs) -> Result<String, String> {
    let (public_url, _) = crate::config::public_url_and_sender(
        args.public_url.clone(),
        None,
        crate::config::DEFAULT_LISTEN,
    )
    .map_err(|e| e.to_string())?;
    let store = open_offline(&args.data, args.store.as_deref())?;
    let user = store
        .user_by_name(&args.username)
        .map_err(|e| e.to_string())?
        .ok_or_else(|| {
            format!(
                "there is no user named {} in {}",
                args.username,
                args.data.display()
            )
        })?;
    let token =
        crate::chat::lost_password::issue_token(&*store, &user).map_err(|e| e.to_string())?;
    store.flush().map_err(|e| e.to_string())?;
    Ok(format!(
        "Open this link within an hour to set a new password for {} (it works once, and ends \
         every session of theirs):\n{}",
        user.username,
        crate::chat::lost_password::link(&public_url, &token)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ServeArgs;

    #[test]
    fn listeners_carry_the_configured_buffer_sizes() {
        let mut config = ServeArgs {
            listen: Some("127.0.0.1:0".into()),
            tcp_send_buffer: Some(96),
            tcp_recv_buffer: Some(48),
            ..Default::default()
        }
        .resolve()
        .unwrap();
        let listeners = listen_sockets(&config).unwrap();
        let socket = socket2::SockRef::from(&listeners[0]);
        // Linux doubles the requested size for bookkeeping; never less than asked.
        assert!(socket.send_buffer_size().unwrap() >= 96 * 1024);
        assert!(socket.recv_buffer_size().unwrap() >= 48 * 1024);
        assert!(socket.send_buffer_size().unwrap() < 1024 * 1024);

        config.listen = "not an address".into();
        let err = listen_sockets(&config).unwrap_err();
        assert!(err.to_string().contains("cannot listen on not an address"));
    }
}
