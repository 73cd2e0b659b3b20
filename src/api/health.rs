//! `GET /healthz` (the process answers) and `GET /readyz` (it can take work: 200, or 503 with
//! the failing checks), outside `/api` so that probes need no session or parameters.

use actix_web::{web, HttpResponse};
use serde_json::{json, Map, Value};

use crate::chat::{health, Chat};

/// `GET /healthz`: always 200 while the process serves HTTP.
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok()
        .insert_header(("Cache-Control", "no-store"))
        .json(json!({ "status": "ok" }))
}

/// `GET /readyz`: `{status: "ready", checks: {storage: "ok", accepting: "ok"}}`, or 503 with
/// `status: "unready"` and each failing check's reason.
pub async fn readyz(state: web::Data<Chat>) -> HttpResponse {
    let checks = health::readiness(&state).await;
    let ready = checks.iter().all(|c| c.problem.is_none());
    let detail: Map<String, Value> = checks
        .into_iter()
        .map(|c| {
            let value = c.problem.unwrap_or_else(|| "ok".to_owned());
            (c.name.to_owned(), Value::String(value))
        })
        .collect();
    let body = json!({ "status": if ready { "ready" } else { "unready" }, "checks": detail });
    let mut answer = if ready {
        HttpResponse::Ok()
    } else {
        HttpResponse::ServiceUnavailable()
    };
    answer
        .insert_header(("Cache-Control", "no-store"))
        .json(body)
}
