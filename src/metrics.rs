//! (base) The server's metrics, in the Prometheus text format at `/metrics` on
//! `--metrics-listen` (off by default), through the `prometheus-client` crate.
//!
//! One process-wide set (`METRICS`), updated where things happen: HTTP requests by route
//! pattern and status with latency histograms (the request middleware), open connections per
//! gateway, events emitted and delivered or dropped per gateway, sockets closed as too slow,
//! plugin calls, failures and latency per plugin, failed logins by reason, the group commit's
//! batch size and flush latency, and the storage's size on disk (read at each scrape). Updating
//! a counter is an atomic add; a labelled one first finds its series under a read lock.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use std::sync::LazyLock;

/// The metrics of this process.
pub static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);

/// An HTTP request's series: method, route pattern (never the path: IDs would make a series
/// per resource) and status.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Request {
    pub method: String,
    pub route: String,
    pub status: u16,
}

/// A latency series of HTTP requests: method and route pattern.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Route {
    pub method: String,
    pub route: String,
}

/// A long-lived gateway: `websocket` (`/`), `hub` (`/hub`) or `chatbox` (`/v2`).
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Gateway {
    pub gateway: &'static str,
}

pub const WEBSOCKET: Gateway = Gateway {
    gateway: "websocket",
};
pub const HUB: Gateway = Gateway { gateway: "hub" };
pub const CHATBOX: Gateway = Gateway { gateway: "chatbox" };

/// A plugin's series: its name and what was called (`hook`, `event`, `command`).
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PluginCall {
    pub plugin: String,
    pub call: &'static str,
}

/// Why a login failed.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LoginFailure {
    pub reason: &'static str,
}

/// Which rate limit refused a request.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq)]
pub enum RateLimited {
    /// Requests per client address.
    Address,
    /// Requests per session.
    Session,
    /// Logins, registrations and lost-password requests per address.
    Login,
    /// Uploads per address.
    Upload,
}

impl RateLimited {
    pub fn name(self) -> &'static str {
        match self {
            Self::Address => "address",
            Self::Session => "session",
            Self::Login => "login",
            Self::Upload => "upload",
        }
    }
}

/// A rate limit's series.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Limit {
    pub limit: &'static str,
}

type Latencies<L> = Family<L, Histogram, fn() -> Histogram>;

/// Seconds, from 100 µs to ~26 s.
fn latency() -> Histogram {
    Histogram::new(exponential_buckets(0.0001, 2.0, 19))
}

/// Every metric, registered once.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    pub http_requests: Family<Request, Counter>,
    pub http_latency: Latencies<Route>,
    pub connections: Family<Gateway, Gauge>,
    pub events_emitted: Counter,
    pub events_delivered: Family<Gateway, Counter>,
    pub events_dropped: Family<Gateway, Counter>,
    pub closed_slow: Family<Gateway, Counter>,
    pub plugin_calls: Family<PluginCall, Counter>,
    pub plugin_failures: Family<PluginCall, Counter>,
    pub plugin_latency: Latencies<PluginCall>,
    pub logins_failed: Family<LoginFailure, Counter>,
    pub rate_limited: Family<Limit, Counter>,
    pub commit_batch: Histogram,
    pub commit_latency: Histogram,
    pub storage_bytes: Gauge,
}

impl Metrics {
    fn new() -> Self {
        let mut registry = Registry::with_prefix("decentd");
        let metrics = Self {
            registry: Registry::default(),
            http_requests: Family::default(),
            http_latency: Family::new_with_constructor(latency),
            connections: Family::default(),
            events_emitted: Counter::default(),
            events_delivered: Family::default(),
            events_dropped: Family::default(),
            closed_slow: Family::default(),
            plugin_calls: Family::default(),
            plugin_failures: Family::default(),
            plugin_latency: Family::new_with_constructor(latency),
            logins_failed: Family::default(),
            rate_limited: Family::default(),
            commit_batch: Histogram::new(exponential_buckets(1.0, 2.0, 12)),
            commit_latency: latency(),
            storage_bytes: Gauge::default(),
        };
        let m = &metrics;
        registry.register(
            "http_requests",
            "HTTP requests answered, by method, route pattern and status",
            m.http_requests.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "Time to answer HTTP requests, by method and route pattern",
            m.http_latency.clone(),
        );
        registry.register(
            "connections",
            "Open long-lived connections per gateway (websocket: /, hub: /hub, chatbox: /v2)",
            m.connections.clone(),
        );
        registry.register(
            "events_emitted",
            "Events published on the event bus",
            m.events_emitted.clone(),
        );
        registry.register(
            "events_delivered",
            "Event frames handed to connections, per gateway",
            m.events_delivered.clone(),
        );
        registry.register(
            "events_dropped",
            "Event frames not delivered because the connection's queue was full or it was closing",
            m.events_dropped.clone(),
        );
        registry.register(
            "connections_closed_slow",
            "Connections closed because they fell behind (queue full or writes stalled)",
            m.closed_slow.clone(),
        );
        registry.register(
            "plugin_calls",
            "Calls into plugins, per plugin and kind (hook, event, command)",
            m.plugin_calls.clone(),
        );
        registry.register(
            "plugin_failures",
            "Plugin calls that trapped, ran out of time or memory, or answered nonsense",
            m.plugin_failures.clone(),
        );
        registry.register(
            "plugin_call_duration_seconds",
            "Time plugin calls took, per plugin and kind",
            m.plugin_latency.clone(),
        );
        registry.register(
            "logins_failed",
            "Refused logins, by reason",
            m.logins_failed.clone(),
        );
        registry.register(
            "rate_limited",
            "HTTP requests refused with 429, by limit (address, session, login, upload)",
            m.rate_limited.clone(),
        );
        registry.register(
            "commit_batch_size",
            "Writers whose changes one group-commit flush made durable",
            m.commit_batch.clone(),
        );
        registry.register(
            "commit_flush_duration_seconds",
            "Time of one group-commit flush (storage flush and fdatasync)",
            m.commit_latency.clone(),
        );
        registry.register(
            "storage_bytes",
            "Size of the storage on disk",
            m.storage_bytes.clone(),
        );
        Self {
            registry,
            ..metrics
        }
    }

    /// Every metric in the Prometheus text format (OpenMetrics).
    pub fn encode(&self) -> String {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)
            .expect("writing to a String cannot fail");
        text
    }
}

/// Counts an open connection of a gateway for as long as it lives.
#[derive(Debug)]
pub struct Connected(&'static Gateway);

impl Connected {
    pub fn new(gateway: &'static Gateway) -> Self {
        METRICS.connections.get_or_create(gateway).inc();
        Self(gateway)
    }
}

impl Drop for Connected {
    fn drop(&mut self) {
        METRICS.connections.get_or_create(self.0).dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_text_format_names_every_metric_with_the_prefix() {
        METRICS
            .http_requests
            .get_or_create(&Request {
                method: "GET".into(),
                route: "/api/channels/{id}".into(),
                status: 200,
            })
            .inc();
        let connected = Connected::new(&HUB);
        let text = METRICS.encode();
        assert!(text.contains(
            "decentd_http_requests_total{method=\"GET\",route=\"/api/channels/{id}\",status=\"200\"} 1"
        ), "{text}");
        assert!(
            text.contains("decentd_connections{gateway=\"hub\"} 1"),
            "{text}"
        );
        drop(connected);
        assert!(METRICS
            .encode()
            .contains("decentd_connections{gateway=\"hub\"} 0"));
        assert!(text.ends_with("# EOF\n"));
    }
}
