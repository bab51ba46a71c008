//! Discovery: RFC 8414 authorization server metadata and the JWKS (RFC 7517), so a client
//! or resource server can find every endpoint and verify writ's tokens without being
//! told anything but the issuer.

use actix_web::http::header;
use actix_web::{HttpResponse, web};
use serde_json::json;

use super::AppState;

/// RFC 8414 metadata. It names only what this server does today: a feature appears
/// here in the change that serves it.
pub(super) async fn metadata(state: web::Data<AppState>) -> HttpResponse {
    let issuer = state.issuer.trim_end_matches('/');
    let client_auth = ["client_secret_basic", "client_secret_post"];
    HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "public, max-age=300"))
        .json(json!({
            "issuer": state.issuer,
            "authorization_endpoint": format!("{issuer}/oauth/authorize"),
            "token_endpoint": format!("{issuer}/oauth/token"),
            "introspection_endpoint": format!("{issuer}/oauth/introspect"),
            "revocation_endpoint": format!("{issuer}/oauth/revoke"),
            "jwks_uri": format!("{issuer}/.well-known/jwks.json"),
            "grant_types_supported": [
                "authorization_code",
                "refresh_token",
                "client_credentials",
                crate::oauth::TOKEN_EXCHANGE_GRANT,
            ],
            "response_types_supported": ["code"],
            "response_modes_supported": ["query"],
            "code_challenge_methods_supported": ["S256"],
            "authorization_response_iss_parameter_supported": true,
            "token_endpoint_auth_methods_supported": [
                "client_secret_basic",
                "client_secret_post",
                "private_key_jwt",
                "none",
            ],
            "token_endpoint_auth_signing_alg_values_supported":
                crate::oauth::assertion::ASSERTION_ALGORITHMS,
            "introspection_endpoint_auth_methods_supported": client_auth,
            "revocation_endpoint_auth_methods_supported": client_auth,
        }))
}

/// The public signing keys: the current one and every predecessor a live token may carry.
pub(super) async fn jwks(state: web::Data<AppState>) -> actix_web::HttpResponse {
    let now = state.clock.now();
    let body = state.ledger.read(|s| crate::keys::jwks(s, now));
    actix_web::HttpResponse::Ok()
        .content_type("application/jwk-set+json")
        .json(body)
}
