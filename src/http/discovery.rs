//! Discovery: RFC 8414 authorization server metadata and the JWKS (RFC 7517), so a client
//! or resource server can find every endpoint and verify writ's tokens without being
//! told anything but the issuer.

use actix_web::http::header;
use actix_web::{HttpResponse, web};
use serde_json::json;

use super::AppState;
use super::registration::RegistrationMode;

/// RFC 8414 metadata. It names only what this server does today: a feature appears
/// here in the change that serves it.
pub(super) async fn metadata(state: web::Data<AppState>) -> HttpResponse {
    let issuer = state.issuer.trim_end_matches('/');
    let client_auth = ["client_secret_basic", "client_secret_post"];
    let mut metadata = json!({
        "issuer": state.issuer,
        "token_endpoint": format!("{issuer}/oauth/token"),
        "introspection_endpoint": format!("{issuer}/oauth/introspect"),
        "revocation_endpoint": format!("{issuer}/oauth/revoke"),
        "jwks_uri": format!("{issuer}/.well-known/jwks.json"),
        "grant_types_supported": ["client_credentials", crate::oauth::TOKEN_EXCHANGE_GRANT],
        // No authorization endpoint yet, so no response type: RFC 8414 requires the member.
        "response_types_supported": [],
        "token_endpoint_auth_methods_supported": client_auth,
        "introspection_endpoint_auth_methods_supported": client_auth,
        "revocation_endpoint_auth_methods_supported": client_auth,
    });
    if state.registration.mode != RegistrationMode::Off {
        metadata["registration_endpoint"] = json!(format!("{issuer}/oauth/register"));
    }
    HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "public, max-age=300"))
        .json(metadata)
}

/// The public signing keys: the current one and every predecessor a live token may carry.
pub(super) async fn jwks(state: web::Data<AppState>) -> actix_web::HttpResponse {
    let now = state.clock.now();
    let body = state.ledger.read(|s| crate::keys::jwks(s, now));
    actix_web::HttpResponse::Ok()
        .content_type("application/jwk-set+json")
        .json(body)
}
