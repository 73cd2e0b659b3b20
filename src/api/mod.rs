//! HTTP routes under `/api` (and `/`), one module per resource.
//!
//! Handlers read parse → authorize → act → emit → respond. Parameters and sessions come from
//! `params::ApiRequest`; errors are `error::ApiError`. Unknown `/api` routes, and known routes
//! with an unsupported method, answer NOT_FOUND as JSON; anything else unknown is a plain 404.

pub mod meta;
pub mod roles;
pub mod sessions;
pub mod users;

use actix_web::{guard, web, HttpRequest, HttpResponse, Resource};
use serde::Serialize;

use crate::error::ApiError;

/// A resource whose unsupported methods fall through to `not_found`.
fn resource(path: &str) -> Resource {
    web::resource(path).default_service(web::to(not_found))
}

/// Registers every route.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        resource("/")
            .route(
                web::get()
                    .guard(guard::fn_guard(|ctx| {
                        ctx.head()
                            .headers()
                            .get(actix_web::http::header::UPGRADE)
                            .and_then(|v| v.to_str().ok())
                            .is_some_and(|v| v.eq_ignore_ascii_case("websocket"))
                    }))
                    .to(crate::ws::upgrade),
            )
            .route(web::get().to(meta::index)),
    )
    .service(resource("/api").route(web::get().to(meta::api_info)))
    .service(resource("/api/").route(web::get().to(meta::api_info)))
    .service(
        resource("/api/settings")
            .route(web::get().to(meta::get_settings))
            .route(web::patch().to(meta::patch_settings)),
    )
    .service(
        resource("/api/users")
            .route(web::get().to(users::list))
            .route(web::post().to(users::register)),
    )
    .service(
        resource("/api/users/{id}")
            .route(web::get().to(users::get))
            .route(web::patch().to(users::patch))
            .route(web::delete().to(users::delete)),
    )
    .service(
        resource("/api/users/{id}/roles")
            .route(web::get().to(roles::user_roles))
            .route(web::post().to(roles::give)),
    )
    .service(resource("/api/users/{id}/roles/{role}").route(web::delete().to(roles::take)))
    .service(resource("/api/users/{id}/permissions").route(web::get().to(roles::user_permissions)))
    .service(
        resource("/api/roles")
            .route(web::get().to(roles::list))
            .route(web::post().to(roles::create)),
    )
    .service(
        resource("/api/roles/order")
            .route(web::get().to(roles::get_order))
            .route(web::patch().to(roles::set_order)),
    )
    .service(
        resource("/api/roles/{id}")
            .route(web::get().to(roles::get))
            .route(web::patch().to(roles::update))
            .route(web::delete().to(roles::delete)),
    )
    .service(
        resource("/api/username-available/{username}")
            .route(web::get().to(users::username_available)),
    )
    .service(
        resource("/api/sessions")
            .route(web::get().to(sessions::list))
            .route(web::post().to(sessions::login)),
    )
    .service(
        resource("/api/sessions/{id}")
            .route(web::get().to(sessions::get))
            .route(web::delete().to(sessions::logout)),
    );
}

/// The fallback for every unknown route or method.
pub async fn not_found(req: HttpRequest) -> HttpResponse {
    let path = req.path();
    if path == "/api" || path.starts_with("/api/") {
        actix_web::ResponseError::error_response(&ApiError::not_found("API route"))
    } else {
        HttpResponse::NotFound()
            .content_type("text/plain; charset=utf-8")
            .body("404 Not Found\n")
    }
}

/// A 200 response with a JSON body.
pub fn ok(body: impl Serialize) -> HttpResponse {
    HttpResponse::Ok().json(body)
}

/// Parses an id from the URL; a malformed id names nothing, so it is NOT_FOUND.
pub fn path_id(raw: &str, what: &str) -> Result<u64, ApiError> {
    crate::ids::parse_id(raw).ok_or_else(|| ApiError::not_found(what))
}
