//! Starting and stopping: `decentd serve` and `decentd make-admin`.
//!
//! `serve` opens the data directory, builds the app, binds, and runs until SIGINT or SIGTERM.
//! Then it stops accepting connections, tells WebSockets the server is going away, lets
//! in-flight requests finish (up to the shutdown timeout), flushes storage and returns.

use actix_web::middleware::from_fn;
use actix_web::{web, App, HttpServer};

use crate::config::{MakeAdminArgs, ServerConfig};
use crate::state::{grant_admin, AppState, StartupError};
use crate::store::Store;
use crate::{api, logging};

/// Runs the server until a stop signal. Must run inside an actix system.
pub async fn serve(config: ServerConfig) -> Result<(), StartupError> {
    let workers = config.workers;
    let shutdown_timeout = config.shutdown_timeout;
    let listen = config.listen.clone();
    tracing::info!(
        data = %config.data.display(),
        scrypt_log_n = config.scrypt.log_n,
        scrypt_memory_mib = config.scrypt.memory_bytes() / (1024 * 1024),
        "starting decentd {}",
        env!("CARGO_PKG_VERSION")
    );
    let state = web::Data::new(AppState::open(config)?);
    actix_web::rt::spawn(crate::ws::hub::dispatch(state.clone().into_inner()));
    let app_state = state.clone();
    let server = HttpServer::new(move || {
        App::new()
            .app_data(app_state.clone())
            .wrap(from_fn(logging::log_request))
            .configure(api::configure)
            .default_service(web::to(api::not_found))
    })
    .workers(workers)
    .shutdown_timeout(shutdown_timeout.as_secs())
    .disable_signals()
    .bind(&listen)
    .map_err(|e| std::io::Error::new(e.kind(), format!("cannot listen on {listen}: {e}")))?;
    for addr in server.addrs() {
        tracing::info!(addr = %addr, "listening");
    }
    let server = server.run();
    let handle = server.handle();
    tokio::pin!(server);
    tokio::select! {
        result = &mut server => result?,
        signal = stop_signal() => {
            tracing::info!(signal, "stopping: finishing in-flight requests");
            state.shutdown.send_replace(true);
            // The server future processes the stop command, so poll both together.
            let (_, result) = tokio::join!(handle.stop(true), &mut server);
            result?;
        }
    }
    state.store.flush()?;
    tracing::info!("storage flushed; stopped");
    Ok(())
}

/// Resolves on SIGINT or SIGTERM with the signal's name.
async fn stop_signal() -> &'static str {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let (Ok(mut term), Ok(mut int)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) else {
            tracing::error!("cannot install signal handlers; stop decentd with SIGKILL");
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

/// `decentd make-admin`: grants the Admin role offline. Returns a message for the operator.
pub fn make_admin(args: &MakeAdminArgs) -> Result<String, String> {
    let store = Store::open(&args.data, 8 * 1024 * 1024).map_err(|e| e.to_string())?;
    let user = grant_admin(&store, &args.username)
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
