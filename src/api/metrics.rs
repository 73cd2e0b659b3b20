//! `GET /metrics` on `--metrics-listen`: every metric in the Prometheus text format
//! (OpenMetrics), with the storage's size read at the scrape.

use actix_web::{web, HttpResponse};

use crate::chat::Chat;
use crate::metrics::METRICS;

/// `GET /metrics`
pub async fn metrics(state: web::Data<Chat>) -> HttpResponse {
    match state.store.size_on_disk() {
        Ok(bytes) => {
            METRICS
                .storage_bytes
                .set(i64::try_from(bytes).unwrap_or(i64::MAX));
        }
        Err(e) => tracing::debug!(error = %e, "cannot read the storage's size"),
    }
    HttpResponse::Ok()
        .content_type("application/openmetrics-text; version=1.0.0; charset=utf-8")
        .insert_header(("Cache-Control", "no-store"))
        .body(METRICS.encode())
}

/// The metrics server's routes: `/metrics` and nothing else.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/metrics", web::get().to(metrics));
}
