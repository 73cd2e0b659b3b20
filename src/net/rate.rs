//! HTTP rate limits: token buckets (the `governor` crate's GCRA) per client address and per
//! session, with stricter buckets per address for logins, registrations and lost-password
//! requests, and for uploads. A request over a limit is answered 429 with `Retry-After` and the
//! spec's error body (`FAILED`, with `retryAfter` in seconds) before anything else runs; each
//! refusal is counted in the metrics by limit.
//!
//! The client address is the connection's peer, or, when the peer is one of
//! `--trusted-proxies`, the nearest address in `X-Forwarded-For` that is not a trusted proxy.
//! IPv6 clients are counted by their /64 (one subscriber's network). The session is read from
//! the raw request (header or query) without looking it up, so an unknown session ID is still
//! limited, and never held: only a hash of it is. Buckets of clients that went quiet are
//! dropped every minute, so the tables stay as small as the set of recent clients. Health
//! probes are not limited.

use actix_web::body::{BoxBody, EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::{header, Method, StatusCode};
use actix_web::middleware::Next;
use actix_web::{web, HttpResponse, ResponseError};
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};
use ipnet::IpNet;
use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::net::{IpAddr, Ipv6Addr};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use crate::config::ServerConfig;
use crate::error::{ApiError, ErrorCode};
use crate::metrics::{Limit, RateLimited, METRICS};

/// A client: its address (an IPv6 one cut to its /64).
type Address = IpAddr;

/// The limits of one server; replaced whole when the configuration is reloaded (SIGHUP).
#[derive(Debug)]
pub struct RateLimits {
    current: parking_lot::RwLock<Arc<Limiters>>,
    /// Hashes session IDs (keyed per process, so they cannot be chosen to collide).
    hasher: RandomState,
    clock: DefaultClock,
}

/// The buckets of one configuration.
#[derive(Debug)]
struct Limiters {
    address: Option<DefaultKeyedRateLimiter<Address>>,
    session: Option<DefaultKeyedRateLimiter<u64>>,
    login: Option<DefaultKeyedRateLimiter<Address>>,
    upload: Option<DefaultKeyedRateLimiter<Address>>,
    trusted: Vec<IpNet>,
    /// The settings they were made from, to keep the buckets when nothing changed.
    settings: [u32; 4],
}

impl Limiters {
    fn new(config: &ServerConfig) -> Self {
        Self {
            address: per_second(config.rate_limit).map(DefaultKeyedRateLimiter::dashmap),
            session: per_second(config.session_rate_limit).map(DefaultKeyedRateLimiter::dashmap),
            login: per_minute(config.login_rate_limit).map(DefaultKeyedRateLimiter::dashmap),
            upload: per_minute(config.upload_rate_limit).map(DefaultKeyedRateLimiter::dashmap),
            trusted: config.trusted_proxies.clone(),
            settings: settings(config),
        }
    }
}

fn settings(config: &ServerConfig) -> [u32; 4] {
    [
        config.rate_limit,
        config.session_rate_limit,
        config.login_rate_limit,
        config.upload_rate_limit,
    ]
}

/// A quota of `n` per second in bursts of `5n`, or of `n` per minute in bursts of `n`.
fn per_second(n: u32) -> Option<Quota> {
    let n = NonZeroU32::new(n)?;
    Some(Quota::per_second(n).allow_burst(n.saturating_mul(NonZeroU32::new(5)?)))
}

fn per_minute(n: u32) -> Option<Quota> {
    Some(Quota::per_minute(NonZeroU32::new(n)?))
}

impl RateLimits {
    pub fn new(config: &ServerConfig) -> Self {
        Self {
            current: parking_lot::RwLock::new(Arc::new(Limiters::new(config))),
            hasher: RandomState::new(),
            clock: DefaultClock::default(),
        }
    }

    /// Applies reloaded settings: new buckets when a limit changed (everyone starts full), the
    /// same buckets otherwise; the trusted proxies at once.
    pub fn replace(&self, config: &ServerConfig) {
        let mut current = self.current.write();
        if current.settings == settings(config) {
            // The same limits: keep the buckets, take the proxies (unless a request holds
            // the current set this instant; then everyone starts full).
            if let Some(limits) = Arc::get_mut(&mut current) {
                limits.trusted = config.trusted_proxies.clone();
                return;
            }
        }
        *current = Arc::new(Limiters::new(config));
    }

    /// Drops the buckets of clients that have not been seen for a while.
    pub fn forget_idle(&self) {
        let limits = self.current.read().clone();
        for limiter in [&limits.address, &limits.login, &limits.upload]
            .into_iter()
            .flatten()
        {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
        if let Some(limiter) = &limits.session {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
    }

    /// Checks one request: the limit it is over and how long to wait, if any.
    fn check(&self, req: &ServiceRequest) -> Option<(RateLimited, Duration)> {
        let limits = self.current.read().clone();
        let peer = req.peer_addr().map(|a| a.ip())?;
        let forwarded = req
            .headers()
            .get("x-forwarded-for")
            .and_then(|v| v.to_str().ok());
        let address = client_address(peer, forwarded, &limits.trusted);
        // For the request's log line.
        actix_web::HttpMessage::extensions_mut(req).insert(crate::logging::ClientAddr(address));
        let client = per_network(address);
        let wait = |limiter: &DefaultKeyedRateLimiter<Address>| {
            limiter
                .check_key(&client)
                .err()
                .map(|n| n.wait_time_from(self.clock.now()))
        };
        if req.method() == Method::POST {
            let strict = match req.path().trim_end_matches('/') {
                "/api/sessions"
                | "/api/users"
                | "/api/users/request-lost-password"
                | "/api/users/reset-password" => Some((RateLimited::Login, &limits.login)),
                "/api/upload-image" => Some((RateLimited::Upload, &limits.upload)),
                _ => None,
            };
            if let Some((which, Some(limiter))) = strict {
                if let Some(after) = wait(limiter) {
                    return Some((which, after));
                }
            }
        }
        if let Some(after) = limits.address.as_ref().and_then(wait) {
            return Some((RateLimited::Address, after));
        }
        let (session, limiter) = (session_of(req)?, limits.session.as_ref()?);
        let key = self.hasher.hash_one(session);
        limiter
            .check_key(&key)
            .err()
            .map(|n| (RateLimited::Session, n.wait_time_from(self.clock.now())))
    }
}

/// The client address: the peer, unless it is a trusted proxy; then the nearest address in
/// `X-Forwarded-For` (read from the right) that is not one, or the leftmost when all are.
pub fn client_address(peer: IpAddr, forwarded_for: Option<&str>, trusted: &[IpNet]) -> IpAddr {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    if !is_trusted(&peer) {
        return peer;
    }
    let Some(list) = forwarded_for else {
        return peer;
    };
    let mut client = peer;
    for hop in list.rsplit(',') {
        let Ok(ip) = hop.trim().parse::<IpAddr>() else {
            // A hop that is not an address: whatever lies beyond it cannot be believed.
            break;
        };
        client = ip;
        if !is_trusted(&ip) {
            break;
        }
    }
    client
}

/// IPv4 addresses as they are; IPv6 ones cut to their /64 (IPv4-mapped ones as IPv4).
fn per_network(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

/// The session ID a request names, unverified: `X-Session-ID`, `Authorization` (Bearer or
/// res) or the `sessionID` query parameter.
fn session_of(req: &ServiceRequest) -> Option<&str> {
    if let Some(id) = req.headers().get("x-session-id") {
        return id.to_str().ok();
    }
    if let Some(auth) = req.headers().get(header::AUTHORIZATION) {
        return auth
            .to_str()
            .ok()
            .and_then(|v| v.split_once(' '))
            .map(|(_, id)| id.trim());
    }
    req.query_string()
        .split('&')
        .find_map(|pair| pair.strip_prefix("sessionID="))
}

/// Paths that are never limited: health probes.
fn exempt(path: &str) -> bool {
    matches!(path, "/healthz" | "/readyz")
}

/// The refusal: 429, `Retry-After` in whole seconds (at least 1), the spec's error body.
fn refusal(which: RateLimited, after: Duration) -> HttpResponse {
    let seconds = after.as_secs() + u64::from(after.subsec_nanos() > 0);
    let seconds = seconds.max(1);
    let error = ApiError::new(
        ErrorCode::Failed,
        format!("too many requests; try again in {seconds} s"),
    )
    .status(StatusCode::TOO_MANY_REQUESTS)
    .with("retryAfter", seconds)
    .with("limit", which.name());
    let mut response = error.error_response();
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, header::HeaderValue::from(seconds));
    response
}

/// Middleware: refuses a request over a limit before it is routed.
pub async fn limit(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody, BoxBody>>, actix_web::Error> {
    let over = match req.app_data::<web::Data<RateLimits>>() {
        Some(limits) if !exempt(req.path()) => limits.check(&req),
        _ => None,
    };
    if let Some((which, after)) = over {
        METRICS
            .rate_limited
            .get_or_create(&Limit {
                limit: which.name(),
            })
            .inc();
        tracing::debug!(limit = which.name(), "refusing a request over a rate limit");
        let (req, _) = req.into_parts();
        return Ok(ServiceResponse::new(req, refusal(which, after)).map_into_right_body());
    }
    Ok(next.call(req).await?.map_into_left_body())
}

/// Forgets idle clients every minute, for the life of the server.
pub async fn forget_idle_clients(limits: web::Data<RateLimits>) {
    let mut every = tokio::time::interval(Duration::from_secs(60));
    loop {
        every.tick().await;
        limits.forget_idle();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let trusted: Vec<IpNet> = vec![
            "10.0.0.0/8".parse().unwrap(),
            "127.0.0.1/32".parse().unwrap(),
        ];
        // An untrusted peer: its own address, whatever it claims.
        assert_eq!(
            client_address(ip("203.0.113.9"), Some("198.51.100.1"), &trusted),
            ip("203.0.113.9")
        );
        // A trusted proxy: the nearest untrusted hop from the right.
        assert_eq!(
            client_address(
                ip("127.0.0.1"),
                Some("192.0.2.7, 198.51.100.1, 10.1.2.3"),
                &trusted
            ),
            ip("198.51.100.1")
        );
        // Without the header, or when every hop is trusted.
        assert_eq!(
            client_address(ip("10.0.0.2"), None, &trusted),
            ip("10.0.0.2")
        );
        assert_eq!(
            client_address(ip("10.0.0.2"), Some("10.9.9.9"), &trusted),
            ip("10.9.9.9")
        );
        // Garbage stops the walk at the last believable hop.
        assert_eq!(
            client_address(
                ip("127.0.0.1"),
                Some("198.51.100.1, junk, 10.1.1.1"),
                &trusted
            ),
            ip("10.1.1.1")
        );
    }

    #[test]
    fn ipv6_clients_count_by_their_64() {
        assert_eq!(
            per_network(ip("2001:db8:1:2:3:4:5:6")),
            ip("2001:db8:1:2::")
        );
        assert_eq!(per_network(ip("::ffff:192.0.2.1")), ip("192.0.2.1"));
        assert_eq!(per_network(ip("192.0.2.1")), ip("192.0.2.1"));
    }
}
