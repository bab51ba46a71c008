//! Discovery: RFC 8414 authorization server metadata and the JWKS (RFC 7517), so a client
//! or resource server can find every endpoint and verify writ's tokens without being
//! told anything but the issuer; and RFC 9728 metadata for the one resource writ itself
//! protects, the tool-call gateway, which its 401s point at.

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
            "client_id_metadata_document_supported": true,
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
    });
    if state.registration.mode != RegistrationMode::Off {
        metadata["registration_endpoint"] = json!(format!("{issuer}/oauth/register"));
    }
    HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "public, max-age=300"))
        .json(metadata)
}

/// Where the gateway's protected resource metadata is (RFC 9728 §3.1: the well-known
/// path inserted before the resource's path), as its 401s name it.
pub fn protected_resource_metadata_url(issuer: &str) -> String {
    format!(
        "{}/.well-known/oauth-protected-resource{GATEWAY_PATH}",
        issuer.trim_end_matches('/')
    )
}

/// The path every gateway URL starts with: the protected resource.
const GATEWAY_PATH: &str = "/api/v1/proxy";

/// The gateway's resource identifier: what a token for it names in `aud`.
pub fn gateway_resource(issuer: &str) -> String {
    format!("{}{GATEWAY_PATH}", issuer.trim_end_matches('/'))
}

/// RFC 9728 metadata of the tool-call gateway: the resource is the prefix every
/// `POST /api/v1/proxy/{server_id}/tools` shares, writ is its authorization server, and
/// its token goes in the `Authorization` header. No `scopes_supported`: which scopes a
/// tool needs is each agent's policy, not one list.
pub(super) async fn protected_resource(state: web::Data<AppState>) -> HttpResponse {
    let issuer = state.issuer.trim_end_matches('/');
    HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "public, max-age=300"))
        .json(json!({
            "resource": format!("{issuer}{GATEWAY_PATH}"),
            "authorization_servers": [state.issuer],
            "bearer_methods_supported": ["header"],
            "resource_name": "writ MCP gateway",
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
