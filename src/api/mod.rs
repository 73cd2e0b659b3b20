//! The HTTP door: routes under `/api` and `/uploads`, one module per resource.
//!
//! Handlers parse (`params::ApiRequest`), call a use case of the core (`chat`) with the caller
//! and plain values, and render its answer as JSON; errors are `error::ApiError`. Unknown
//! `/api` routes, and known routes with an unsupported method, answer NOT_FOUND as JSON;
//! anything else unknown is a plain 404 (`net::not_found`).

pub mod accounts;
pub mod channels;
pub mod direct;
pub mod emotes;
pub mod health;
pub mod licenses;
pub mod messages;
pub mod meta;
pub mod metrics;
pub mod plugins;
pub mod roles;
pub mod search;
pub mod sessions;
pub mod uploads;
pub mod users;

use actix_web::{web, HttpResponse, Resource, Scope};
use serde::Serialize;

use crate::chat::Caller;
use crate::net::not_found;
use crate::params::ApiRequest;

/// A resource whose unsupported methods fall through to `not_found`.
fn resource(path: &str) -> Resource {
    web::resource(path).default_service(web::to(not_found))
}

/// A scope whose unknown paths fall through to `not_found`.
fn scope(path: &str) -> Scope {
    web::scope(path).default_service(web::to(not_found))
}

/// Registers every route of the HTTP API.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/healthz").route(web::get().to(health::healthz)))
        .service(resource("/readyz").route(web::get().to(health::readyz)))
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
                        .route(web::get().to(channels::role_permissions))
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
                    resource("/request-lost-password")
                        .route(web::post().to(accounts::request_lost_password)),
                )
                .service(
                    resource("/reset-password").route(web::post().to(accounts::reset_password)),
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
                .service(
                    resource("/{id}/permissions").route(web::get().to(roles::user_permissions)),
                )
                .service(
                    resource("/{id}/channel-permissions/{channel}")
                        .route(web::get().to(roles::user_channel_permissions)),
                )
                .service(resource("/{id}/mentions").route(web::get().to(messages::user_mentions)))
                .service(
                    resource("/{id}/messages")
                        .route(web::get().to(direct::list))
                        .route(web::post().to(direct::send)),
                )
                .service(
                    resource("/{id}/messages/mark-read").route(web::post().to(direct::mark_read)),
                )
                .service(
                    resource("/{id}/conversations").route(web::get().to(direct::conversations)),
                )
                .service(
                    resource("/{id}/direct-message-settings")
                        .route(web::get().to(direct::settings))
                        .route(web::patch().to(direct::set_settings)),
                )
                .service(
                    resource("/{id}/two-factor")
                        .route(web::get().to(accounts::status))
                        .route(web::post().to(accounts::enroll)),
                )
                .service(
                    resource("/{id}/two-factor/confirm").route(web::post().to(accounts::confirm)),
                )
                .service(
                    resource("/{id}/two-factor/recovery-codes")
                        .route(web::post().to(accounts::recovery_codes)),
                )
                .service(
                    resource("/{id}/two-factor/disable").route(web::post().to(accounts::disable)),
                ),
        )
        .service(resource("/api/search").route(web::get().to(search::search)))
        .service(
            resource("/api/direct-messages/{id}")
                .route(web::get().to(direct::get))
                .route(web::patch().to(direct::edit))
                .route(web::delete().to(direct::delete)),
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
                        .route(web::get().to(roles::order))
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
                        .route(web::patch().to(sessions::extend))
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

/// A 200 response with a JSON body.
pub fn ok(body: impl Serialize) -> HttpResponse {
    HttpResponse::Ok().json(body)
}

/// The caller of a request.
pub fn caller(req: &ApiRequest) -> Caller<'_> {
    Caller::from_session(req.session())
}
