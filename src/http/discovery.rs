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

/// The resource identifier of one MCP server behind the gateway: the prefix of its
/// `POST /api/v1/proxy/{server_id}/tools`.
pub fn server_resource(issuer: &str, server_id: &str) -> String {
    format!("{}/{server_id}", gateway_resource(issuer))
}

/// Whether a token addressed to `audience` may be used at the gateway for `server_id`
/// (RFC 8707): writ itself or the gateway as a whole admit every server; a server's own
/// resource (or a path under it) admits that server only. A list admits a server when
/// one of its members does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AudienceFit {
    /// The token is for this server (or for all of them).
    Admitted,
    /// The token is for other servers behind the gateway only.
    OtherServer,
    /// The token is for some other resource altogether.
    OtherResource,
}

/// How `audience` fits a call to `server_id` at the gateway of `issuer`.
pub fn audience_fit(audience: &[String], issuer: &str, server_id: &str) -> AudienceFit {
    let gateway = gateway_resource(issuer);
    let server = server_resource(issuer, server_id);
    let under = |aud: &str, prefix: &str| {
        aud == prefix
            || aud
                .strip_prefix(prefix)
                .is_some_and(|rest| rest.starts_with('/'))
    };
    let admits = |aud: &String| *aud == issuer || *aud == gateway || under(aud, &server);
    if audience.iter().any(admits) {
        AudienceFit::Admitted
    } else if audience.iter().any(|aud| under(aud, &gateway)) {
        AudienceFit::OtherServer
    } else {
        AudienceFit::OtherResource
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    const ISSUER: &str = "https://writ.example";

    fn fit(audience: &[&str], server_id: &str) -> AudienceFit {
        let audience: Vec<String> = audience.iter().map(|a| (*a).to_owned()).collect();
        audience_fit(&audience, ISSUER, server_id)
    }

    #[test]
    fn writ_and_the_gateway_admit_every_server() {
        assert_eq!(fit(&[ISSUER], "files"), AudienceFit::Admitted);
        assert_eq!(
            fit(&["https://writ.example/api/v1/proxy"], "files"),
            AudienceFit::Admitted
        );
    }

    #[test]
    fn a_servers_resource_admits_that_server_only() {
        let files = "https://writ.example/api/v1/proxy/files";
        assert_eq!(fit(&[files], "files"), AudienceFit::Admitted);
        assert_eq!(
            fit(&["https://writ.example/api/v1/proxy/files/tools"], "files"),
            AudienceFit::Admitted
        );
        assert_eq!(fit(&[files], "mail"), AudienceFit::OtherServer);
        // A server whose id starts with another's is not under it.
        assert_eq!(fit(&[files], "file"), AudienceFit::OtherServer);
        assert_eq!(
            fit(&["https://writ.example/api/v1/proxy/filesystem"], "files"),
            AudienceFit::OtherServer
        );
    }

    #[test]
    fn a_list_admits_a_server_when_one_member_does() {
        let files = "https://writ.example/api/v1/proxy/files";
        let mail = "https://writ.example/api/v1/proxy/mail";
        assert_eq!(fit(&[files, mail], "mail"), AudienceFit::Admitted);
        assert_eq!(fit(&[files, mail], "calendar"), AudienceFit::OtherServer);
        assert_eq!(
            fit(&["https://elsewhere.example", files], "calendar"),
            AudienceFit::OtherServer
        );
        assert_eq!(
            fit(&["https://elsewhere.example"], "calendar"),
            AudienceFit::OtherResource
        );
        assert_eq!(fit(&[], "calendar"), AudienceFit::OtherResource);
    }
}
