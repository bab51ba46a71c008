//! The HTTP surface (actix-web): routes, and the state every handler shares.
//!
//! Handlers are thin: parse, ask the ledger (submit a command or read the projections),
//! map the answer to HTTP. Nothing here decides anything `decide.rs` should decide.

mod agents;
mod auth;
pub mod error;
mod health;
mod introspect;
pub mod oauth_error;
mod operations;
mod token;
mod users;

use std::sync::Arc;

use actix_web::web;

use crate::ledger::Ledger;

/// What every handler can reach.
pub struct AppState {
    /// The ledger this server fronts.
    pub ledger: Arc<Ledger>,
    /// The issuer URL (`iss`, metadata).
    pub issuer: String,
    /// Hashes presented secrets for lookup.
    pub secrets: crate::secrets::SecretHasher,
    /// Where handlers get `now` (validation of times; the ledger stamps its own).
    pub clock: crate::clock::Clock,
    /// The key tokens are signed with.
    pub signing_key: Arc<crate::keys::CurrentKey>,
}

/// Registers every route.
pub fn routes(config: &mut web::ServiceConfig) {
    config
        .app_data(
            web::JsonConfig::default()
                .limit(error::JSON_BODY_BYTES_MAX)
                .error_handler(error::json_error),
        )
        .service(health::healthz)
        .service(health::readyz)
        .service(
            web::scope("/oauth")
                .app_data(web::PayloadConfig::new(token::FORM_BODY_BYTES_MAX))
                .service(token::issue)
                .service(introspect::introspect)
                .service(introspect::revoke),
        )
        .service(jwks)
        .service(users::create)
        .service(users::list)
        .service(users::deactivate)
        .service(users::reactivate)
        .service(agents::create)
        .service(agents::list)
        .service(agents::one)
        .service(agents::identity)
        .service(agents::review)
        .service(agents::rotate_secret)
        .service(agents::disable)
        .service(agents::enable)
        .service(agents::policy)
        .service(operations::record)
        .default_service(web::to(not_found));
}

async fn not_found(
    request: actix_web::HttpRequest,
) -> Result<actix_web::HttpResponse, error::ApiError> {
    Err(error::ApiError::NotFound(format!(
        "no such endpoint: {} {}",
        request.method(),
        request.path()
    )))
}

/// The public signing keys: the current one and every predecessor a live token may carry.
#[actix_web::get("/.well-known/jwks.json")]
async fn jwks(state: web::Data<AppState>) -> actix_web::HttpResponse {
    let now = state.clock.now();
    let body = state.ledger.read(|s| crate::keys::jwks(s, now));
    actix_web::HttpResponse::Ok()
        .content_type("application/jwk-set+json")
        .json(body)
}
