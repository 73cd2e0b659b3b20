//! HTTP routes under `/api` (and `/`), one module per resource.
//!
//! Handlers read parse → authorize → act → emit → respond. Parameters and sessions come from
//! `params::ApiRequest`; errors are `error::ApiError`. Unknown `/api` routes, and known routes
//! with an unsupported method, answer NOT_FOUND as JSON; anything else unknown is a plain 404.

pub mod channels;
pub mod emotes;
pub mod licenses;
pub mod messages;
pub mod meta;
pub mod plugins;
pub mod roles;
pub mod sessions;
pub mod uploads;
pub mod users;

use actix_web::{guard, web, HttpRequest, HttpResponse, Resource, Scope};
use serde::Serialize;

use crate::chatbox::socket as chatbox;
use crate::error::ApiError;

/// A resource whose unsupported methods fall through to `not_found`.
fn resource(path: &str) -> Resource {
    web::resource(path).default_service(web::to(not_found))
}

/// A scope whose unknown paths fall through to `not_found`.
fn scope(path: &str) -> Scope {
    web::scope(path).default_service(web::to(not_found))
}

/// Registers every route.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        resource("/")
            .route(
                web::get()
                    .guard(guard::fn_guard(|ctx| is_websocket_upgrade(ctx.head())))
                    .to(crate::ws::upgrade),
            )
            .route(web::get().to(meta::index)),
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
    .service(resource("/v2").route(web::get().to(chatbox::unsupported)))
    .service(resource("/api").route(web::get().to(meta::api_info)))
    .service(
        resource("/api/settings")
            .route(web::get().to(meta::get_settings))
            .route(web::patch().to(meta::patch_settings)),
    )
    .service(
        resource("/api/restart")
            .route(web::get().to(meta::get_restart))
            .route(web::post().to(meta::schedule_restart))
            .route(web::delete().to(meta::cancel_restart)),
    )
    .service(resource("/api/upload-image").route(web::post().to(uploads::upload)))
    .service(
        resource("/api/username-available/{username}")
            .route(web::get().to(users::username_available)),
    )
    .service(resource("/uploads/{name}").route(web::get().to(uploads::serve)))
    // Scopes with static prefixes keep route matching cheap: a request only tries the
    // patterns of its own resource family (actix matches dynamic segments with a regex).
    .service(
        scope("/api/channels")
            .service(
                resource("")
                    .route(web::get().to(channels::list))
                    .route(web::post().to(channels::create)),
            )
            .service(resource("/{id}/messages").route(web::get().to(channels::messages)))
            .service(
                resource("/{id}")
                    .route(web::get().to(channels::get))
                    .route(web::patch().to(channels::rename))
                    .route(web::delete().to(channels::delete)),
            )
            .service(resource("/{id}/mark-read").route(web::post().to(channels::mark_read)))
            .service(
                resource("/{id}/role-permissions")
                    .route(web::get().to(channels::get_role_permissions))
                    .route(web::patch().to(channels::set_role_permissions)),
            )
            .service(
                resource("/{id}/pins")
                    .route(web::get().to(channels::pins))
                    .route(web::post().to(channels::pin)),
            )
            .service(resource("/{id}/pins/{message}").route(web::delete().to(channels::unpin))),
    )
    .service(
        scope("/api/messages")
            .service(resource("").route(web::post().to(messages::post)))
            .service(
                resource("/{id}")
                    .route(web::get().to(messages::get))
                    .route(web::patch().to(messages::edit))
                    .route(web::delete().to(messages::delete)),
            ),
    )
    .service(
        scope("/api/users")
            .service(
                resource("")
                    .route(web::get().to(users::list))
                    .route(web::post().to(users::register)),
            )
            .service(
                resource("/{id}")
                    .route(web::get().to(users::get))
                    .route(web::patch().to(users::patch))
                    .route(web::delete().to(users::delete)),
            )
            .service(
                resource("/{id}/roles")
                    .route(web::get().to(roles::user_roles))
                    .route(web::post().to(roles::give)),
            )
            .service(resource("/{id}/roles/{role}").route(web::delete().to(roles::take)))
            .service(resource("/{id}/permissions").route(web::get().to(roles::user_permissions)))
            .service(
                resource("/{id}/channel-permissions/{channel}")
                    .route(web::get().to(roles::user_channel_permissions)),
            )
            .service(resource("/{id}/mentions").route(web::get().to(messages::user_mentions))),
    )
    .service(
        scope("/api/emotes")
            .service(
                resource("")
                    .route(web::get().to(emotes::list))
                    .route(web::post().to(emotes::create)),
            )
            .service(
                resource("/{shortcode}")
                    .route(web::get().to(emotes::view))
                    .route(web::delete().to(emotes::delete)),
            ),
    )
    .service(
        scope("/api/roles")
            .service(
                resource("")
                    .route(web::get().to(roles::list))
                    .route(web::post().to(roles::create)),
            )
            .service(
                resource("/order")
                    .route(web::get().to(roles::get_order))
                    .route(web::patch().to(roles::set_order)),
            )
            .service(
                resource("/{id}")
                    .route(web::get().to(roles::get))
                    .route(web::patch().to(roles::update))
                    .route(web::delete().to(roles::delete)),
            ),
    )
    .service(
        scope("/api/sessions")
            .service(
                resource("")
                    .route(web::get().to(sessions::list))
                    .route(web::post().to(sessions::login)),
            )
            .service(
                resource("/{id}")
                    .route(web::get().to(sessions::get))
                    .route(web::delete().to(sessions::logout)),
            ),
    )
    .service(
        scope("/api/licenses")
            .service(
                resource("")
                    .route(web::get().to(licenses::list))
                    .route(web::post().to(licenses::create)),
            )
            .service(resource("/{id}").route(web::delete().to(licenses::revoke)))
            .service(resource("/{id}/disable").route(web::post().to(licenses::disable)))
            .service(resource("/{id}/enable").route(web::post().to(licenses::enable))),
    )
    .service(
        scope("/api/plugins")
            .service(resource("").route(web::get().to(plugins::list)))
            .service(resource("/{name}").route(web::get().to(plugins::get)))
            .service(resource("/{name}/enable").route(web::post().to(plugins::enable)))
            .service(resource("/{name}/disable").route(web::post().to(plugins::disable)))
            .service(resource("/{name}/reload").route(web::post().to(plugins::reload))),
    );
}

/// Whether a request asks for a WebSocket upgrade.
pub fn is_websocket_upgrade(head: &actix_web::dev::RequestHead) -> bool {
    head.headers()
        .get(actix_web::http::header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"))
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
