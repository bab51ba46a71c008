//! The MCP servers the gateway forwards to: an admin registers one (`POST
//! /api/v1/servers`) with how calls to it are authenticated — `none`, or `oauth`: the
//! organisation's own client at the server's OAuth provider, whose secret is wrapped under
//! the deployment's key-encryption key before it reaches the ledger — and anyone with a
//! management credential lists them (`GET /api/v1/servers`), never with a secret.

use actix_web::{HttpResponse, web};
use serde::{Deserialize, Serialize};
use writ_projections::Server;
use writ_schemas::{ServerAuth, ServerId, ServerRegistered, UpstreamOAuth};

use super::AppState;
use super::agents::check_scopes;
use super::auth::{Admin, Caller};
use super::error::ApiError;
use crate::decide::Command;

/// Longest server name.
pub const SERVER_NAME_CHARS_MAX: usize = 200;
/// Longest URL (a server's endpoint, a provider's endpoints).
pub const URL_BYTES_MAX: usize = 2048;
/// Longest upstream client id or secret.
const CLIENT_CREDENTIAL_BYTES_MAX: usize = 1024;

/// What the associated data of a server's wrapped client secret says.
pub fn client_secret_context(server_id: &ServerId) -> String {
    format!("server client secret\n{server_id}")
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct NewServer {
    name: String,
    url: String,
    auth: AuthKind,
    oauth: Option<NewOAuth>,
}

#[derive(Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
enum AuthKind {
    None,
    Oauth,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewOAuth {
    authorization_url: String,
    token_url: String,
    revocation_url: Option<String>,
    client_id: String,
    client_secret: Option<String>,
    #[serde(default)]
    scopes: Vec<String>,
}

/// A server as the API shows it: never a secret.
#[derive(Debug, Serialize)]
struct ServerView {
    id: String,
    name: String,
    url: String,
    auth: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    oauth: Option<OAuthView>,
    created_at: String,
}

#[derive(Debug, Serialize)]
struct OAuthView {
    authorization_url: String,
    token_url: String,
    revocation_url: Option<String>,
    client_id: String,
    scopes: Vec<String>,
}

fn view(server: &Server) -> ServerView {
    let (auth, oauth) = match &server.auth {
        ServerAuth::None => ("none", None),
        ServerAuth::Oauth(o) => (
            "oauth",
            Some(OAuthView {
                authorization_url: o.authorization_url.clone(),
                token_url: o.token_url.clone(),
                revocation_url: o.revocation_url.clone(),
                client_id: o.client_id.clone(),
                scopes: o.scopes.clone(),
            }),
        ),
    };
    ServerView {
        id: server.server_id.to_string(),
        name: server.name.clone(),
        url: server.url.clone(),
        auth,
        oauth,
        created_at: server.registered_at.to_string(),
    }
}

/// An absolute http(s) URL of at most [`URL_BYTES_MAX`] bytes.
pub(super) fn check_url(field: &str, text: &str) -> Result<(), ApiError> {
    let parsed = reqwest::Url::parse(text).map_err(|err| ApiError::invalid(field, err))?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
        return Err(ApiError::invalid(field, "an absolute http or https URL"));
    }
    if text.len() > URL_BYTES_MAX {
        return Err(ApiError::invalid(
            field,
            format!("at most {URL_BYTES_MAX} bytes"),
        ));
    }
    Ok(())
}

fn check_credential(field: &str, text: &str) -> Result<(), ApiError> {
    if text.is_empty()
        || text.len() > CLIENT_CREDENTIAL_BYTES_MAX
        || text.chars().any(char::is_control)
    {
        return Err(ApiError::invalid(
            field,
            format!("1 to {CLIENT_CREDENTIAL_BYTES_MAX} bytes without control characters"),
        ));
    }
    Ok(())
}

fn oauth_of(
    state: &AppState,
    server_id: &ServerId,
    oauth: NewOAuth,
) -> Result<UpstreamOAuth, ApiError> {
    check_url("oauth.authorization_url", &oauth.authorization_url)?;
    check_url("oauth.token_url", &oauth.token_url)?;
    if let Some(url) = &oauth.revocation_url {
        check_url("oauth.revocation_url", url)?;
    }
    check_credential("oauth.client_id", &oauth.client_id)?;
    if let Some(secret) = &oauth.client_secret {
        check_credential("oauth.client_secret", secret)?;
    }
    check_scopes("oauth.scopes", &oauth.scopes)?;
    let context = client_secret_context(server_id);
    Ok(UpstreamOAuth {
        authorization_url: oauth.authorization_url,
        token_url: oauth.token_url,
        revocation_url: oauth.revocation_url,
        client_id: oauth.client_id,
        client_secret: oauth
            .client_secret
            .map(|secret| state.keks.wrap(secret.as_bytes(), &context)),
        scopes: oauth.scopes,
    })
}

/// Registers an MCP server.
pub(super) async fn create(
    state: web::Data<AppState>,
    admin: Admin,
    body: web::Json<NewServer>,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    let name = body.name.trim();
    if name.is_empty() || name.chars().count() > SERVER_NAME_CHARS_MAX {
        return Err(ApiError::invalid(
            "name",
            format!("1 to {SERVER_NAME_CHARS_MAX} characters"),
        ));
    }
    check_url("url", &body.url)?;
    let server_id = ServerId(format!("srv_{:016x}", rand::random::<u64>()));
    let auth = match (body.auth, body.oauth) {
        (AuthKind::None, None) => ServerAuth::None,
        (AuthKind::None, Some(_)) => {
            return Err(ApiError::invalid(
                "oauth",
                "give it only with `auth: \"oauth\"`",
            ));
        }
        (AuthKind::Oauth, None) => {
            return Err(ApiError::invalid(
                "oauth",
                "`auth: \"oauth\"` needs the provider: authorization_url, token_url, client_id (and client_secret, scopes)",
            ));
        }
        (AuthKind::Oauth, Some(oauth)) => ServerAuth::Oauth(oauth_of(&state, &server_id, oauth)?),
    };
    let event = ServerRegistered {
        server_id: server_id.clone(),
        name: name.to_owned(),
        url: body.url,
        auth,
        by: admin.0,
    };
    state.ledger.submit(Command::RegisterServer(event)).await?;
    let created = state.ledger.read(|s| s.server(&server_id).map(view));
    let created = created.ok_or_else(|| {
        ApiError::Unavailable("the new server is not visible yet; retry the read".into())
    })?;
    Ok(HttpResponse::Created().json(created))
}

/// Every registered server.
pub(super) async fn list(
    state: web::Data<AppState>,
    _caller: Caller,
) -> Result<HttpResponse, ApiError> {
    let listed: Vec<ServerView> = state.ledger.read(|s| s.servers().map(view).collect());
    Ok(HttpResponse::Ok().json(listed))
}
