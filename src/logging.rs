//! Log setup and the per-request log line.
//!
//! One line per request: method, path, status and latency. The path is the matched pattern
//! (`/api/sessions/{id}`), never the raw path or query, so session IDs never reach the logs.

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use std::sync::OnceLock;
use std::time::Instant;
use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// actix-http logs an ERROR line for every malformed request an anonymous client sends;
/// `net::connection_failed` counts them and logs at debug instead.
const QUIET: &str = "actix_http::h1::dispatcher=off";

type Reload = Box<dyn Fn(EnvFilter) -> Result<(), String> + Send + Sync>;

/// Replaces the filter of the installed subscriber (SIGHUP).
static RELOAD: OnceLock<Reload> = OnceLock::new();

fn env_filter(filter: &str) -> Result<EnvFilter, String> {
    EnvFilter::try_new(format!("{filter},{QUIET}")).map_err(|e| e.to_string())
}

/// Installs the global subscriber, writing to stderr. Safe to call once per process.
pub fn init(format: LogFormat, filter: &str) {
    let filter = env_filter(filter).unwrap_or_else(|_| EnvFilter::new(format!("info,{QUIET}")));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false);
    let reload: Option<Reload> =
        match format {
            LogFormat::Json => {
                let builder = builder.json().flatten_event(true).with_filter_reloading();
                let handle = builder.reload_handle();
                builder.try_init().ok().map(|()| {
                    Box::new(move |f| handle.reload(f).map_err(|e| e.to_string())) as Reload
                })
            }
            LogFormat::Text => {
                let builder = builder.with_filter_reloading();
                let handle = builder.reload_handle();
                builder.try_init().ok().map(|()| {
                    Box::new(move |f| handle.reload(f).map_err(|e| e.to_string())) as Reload
                })
            }
        };
    if let Some(reload) = reload {
        let _ = RELOAD.set(reload);
    }
}

/// Applies a new log filter (`--log`) to the running process.
pub fn set_filter(filter: &str) -> Result<(), String> {
    let reload = RELOAD.get().ok_or("no log subscriber installed")?;
    reload(env_filter(filter)?)
}

/// Paths that load balancers and service managers poll.
const PROBES: [&str; 2] = ["/healthz", "/readyz"];

/// Middleware: logs each request once it has been answered.
/// A request's client address, put in its extensions by the rate limits (`net::rate`).
#[derive(Debug, Clone, Copy)]
pub struct ClientAddr(pub std::net::IpAddr);

pub async fn log_request(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let start = Instant::now();
    let method = req.method().clone();
    // Unmatched paths are logged as sent (cut short): they name no resource, so hold no secret.
    let pattern = req.match_pattern();
    // Metrics series are bounded: unmatched paths and unusual methods share one each.
    let route = pattern.clone().unwrap_or_else(|| "unmatched".into());
    let method_label = match method.as_str() {
        m @ ("GET" | "POST" | "PATCH" | "PUT" | "DELETE" | "OPTIONS" | "HEAD") => m,
        _ => "other",
    };
    let path = pattern.unwrap_or_else(|| req.path().chars().take(100).collect());
    let res = next.call(req).await;
    // The client's address as the rate limits saw it (behind a trusted proxy: the address it
    // names).
    let client = res.as_ref().ok().and_then(|r| {
        actix_web::HttpMessage::extensions(r.request())
            .get::<ClientAddr>()
            .map(|c| c.0)
    });
    let client = client.map(tracing::field::display);
    let status = match &res {
        Ok(r) => r.status().as_u16(),
        Err(e) => e.as_response_error().status_code().as_u16(),
    };
    let elapsed = start.elapsed();
    let latency_us = elapsed.as_micros() as u64;
    let metrics = &crate::metrics::METRICS;
    metrics
        .http_requests
        .get_or_create(&crate::metrics::Request {
            method: method_label.to_owned(),
            route: route.clone(),
            status,
        })
        .inc();
    metrics
        .http_latency
        .get_or_create(&crate::metrics::Route {
            method: method_label.to_owned(),
            route,
        })
        .observe(elapsed.as_secs_f64());
    // Health probes come every second or so: logged at debug level while they succeed. A
    // flood refused by the rate limits would be a line per request: counted in the metrics
    // (`rate_limited_total`) and logged at debug only.
    if (PROBES.contains(&path.as_str()) && status < 400) || status == 429 {
        tracing::debug!(method = %method, path = %path, status, latency_us, client, "request");
    } else {
        tracing::info!(method = %method, path = %path, status, latency_us, client, "request");
    }
    res
}
