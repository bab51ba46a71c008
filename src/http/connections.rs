//! People's connections to MCP servers' OAuth providers: `GET
//! /api/v1/connections/{server_id}/start` sends the person (by API key or their own token)
//! to the provider with PKCE; the provider sends them back to `GET
//! /api/v1/connections/callback`, which records the connection; `GET /api/v1/connections`
//! lists the caller's connections (never a token) and `DELETE
//! /api/v1/connections/{server_id}` deletes one (an admin: a person's, by `user_id`),
//! whose upstream tokens are then revoked at the provider in the background. The flow
//! itself is `connections.rs`.

use actix_web::{HttpResponse, http::header, web};
use serde::{Deserialize, Serialize};
use writ_projections::{Connection, ConnectionStatus};
use writ_schemas::{ServerAuth, ServerId, UserId};

use super::AppState;
use super::auth::Caller;
use super::error::ApiError;
use crate::connections::ConnectError;
use crate::decide::{Command, Refusal};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Start {
    /// Passed to the provider, to say whom to sign in as.
    login_hint: Option<String>,
}

#[derive(Debug, Deserialize)]
pub(super) struct Callback {
    state: Option<String>,
    code: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct OfUser {
    /// An admin names whose connections to list or delete.
    user_id: Option<String>,
}

/// A connection as the API shows it: never a token.
#[derive(Debug, Serialize)]
struct ConnectionView {
    server_id: String,
    user_id: String,
    status: &'static str,
    scopes: Vec<String>,
    expires_at: Option<String>,
    established_at: String,
    refreshed_at: Option<String>,
    refresh_failures: u64,
    refreshable: bool,
}

fn view(c: &Connection) -> ConnectionView {
    ConnectionView {
        server_id: c.server_id.to_string(),
        user_id: c.user_id.to_string(),
        status: match c.status {
            ConnectionStatus::Active => "active",
            ConnectionStatus::Broken => "broken",
            ConnectionStatus::Deleted => "deleted",
        },
        scopes: c.scopes.clone(),
        expires_at: c.expires_at.map(|t| t.to_string()),
        established_at: c.established_at.to_string(),
        refreshed_at: c.refreshed_at.map(|t| t.to_string()),
        refresh_failures: c.refresh_failures,
        refreshable: c.refresh_token.is_some(),
    }
}

/// Redirects the calling person to the server's provider to connect their account.
pub(super) async fn start(
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<String>,
    query: web::Query<Start>,
) -> Result<HttpResponse, ApiError> {
    let Some(user_id) = caller.user_id().cloned() else {
        return Err(ApiError::Forbidden(
            "a connection is a person's own: start it with their API key or token".into(),
        ));
    };
    let server_id = ServerId(id.into_inner());
    let auth = state
        .ledger
        .read(|s| s.server(&server_id).map(|server| server.auth.clone()));
    let oauth = match auth {
        None => return Err(Refusal::UnknownServer(server_id).into()),
        Some(ServerAuth::None) => return Err(Refusal::ServerNeedsNoConnection(server_id).into()),
        Some(ServerAuth::Oauth(oauth)) => oauth,
    };
    if let Some(hint) = &query.login_hint
        && (hint.len() > 256 || hint.chars().any(char::is_control))
    {
        return Err(ApiError::invalid("login_hint", "at most 256 bytes of text"));
    }
    let url = state
        .connections
        .start_url(
            &oauth,
            &user_id,
            &server_id,
            query.login_hint.as_deref(),
            state.clock.now(),
        )
        .map_err(|err| ApiError::invalid("server", err))?;
    Ok(HttpResponse::Found()
        .insert_header((header::LOCATION, url))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .finish())
}

/// Where the provider sends the person back: records the connection.
pub(super) async fn callback(
    state: web::Data<AppState>,
    query: web::Query<Callback>,
) -> Result<HttpResponse, ApiError> {
    let query = query.into_inner();
    if let Some(error) = query.error {
        return Err(ApiError::BadRequest {
            code: "access_denied",
            detail: format!(
                "the provider did not connect the account: {error}{}",
                query
                    .error_description
                    .map(|d| format!(" ({})", d.chars().take(200).collect::<String>()))
                    .unwrap_or_default()
            ),
        });
    }
    let (Some(flow), Some(code)) = (query.state, query.code) else {
        return Err(ApiError::invalid(
            "code",
            "the provider's answer carries `code` and `state`; start again from /api/v1/connections/{server_id}/start",
        ));
    };
    let (user_id, server_id) = state
        .connections
        .finish(&state.ledger, &flow, &code, state.clock.now())
        .await
        .map_err(|err| match err {
            ConnectError::BadState(why) => ApiError::invalid("state", why),
            ConnectError::Provider(why) => ApiError::BadRequest {
                code: "upstream_refused",
                detail: format!("the provider did not give a token: {why}"),
            },
            ConnectError::Submit(err) => err.into(),
        })?;
    let shown = state
        .ledger
        .read(|s| s.connection(&user_id, &server_id).map(view));
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(shown))
}

/// The caller's connections (an admin: a person's, by `user_id`).
pub(super) async fn list(
    state: web::Data<AppState>,
    caller: Caller,
    query: web::Query<OfUser>,
) -> Result<HttpResponse, ApiError> {
    let user_id = match (caller.user_id(), query.into_inner().user_id) {
        (Some(me), None) => me.clone(),
        (Some(me), Some(other)) if *me.as_str() == other => me.clone(),
        (Some(_), Some(_)) => {
            return Err(ApiError::Forbidden(
                "a person sees only their own connections".into(),
            ));
        }
        (None, Some(user)) => UserId(user),
        (None, None) => {
            return Err(ApiError::invalid(
                "user_id",
                "an admin names whose connections to list",
            ));
        }
    };
    let listed: Vec<ConnectionView> = state.ledger.read(|s| {
        s.connections_of_user(&user_id)
            .filter(|c| c.status != ConnectionStatus::Deleted)
            .map(view)
            .collect()
    });
    Ok(HttpResponse::Ok().json(listed))
}

/// Deletes the caller's connection to a server (an admin: a person's, by `user_id`). The
/// 204 waits on the ledger only: the upstream tokens are revoked at the provider in the
/// background afterwards (`connections/revoke.rs`), each outcome recorded.
pub(super) async fn delete(
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<String>,
    query: web::Query<OfUser>,
) -> Result<HttpResponse, ApiError> {
    let user_id = match (caller.user_id(), query.into_inner().user_id) {
        (Some(me), None) => me.clone(),
        (Some(me), Some(other)) if *me.as_str() == other => me.clone(),
        (Some(_), Some(_)) => {
            return Err(ApiError::Forbidden(
                "a person deletes only their own connections".into(),
            ));
        }
        (None, Some(user)) => UserId(user),
        (None, None) => {
            return Err(ApiError::invalid(
                "user_id",
                "an admin names whose connection to delete",
            ));
        }
    };
    let command = Command::DeleteConnection {
        user_id,
        server_id: ServerId(id.into_inner()),
        by: caller.actor(),
    };
    state.ledger.submit(command).await?;
    state.connections.revoke_soon();
    Ok(HttpResponse::NoContent().finish())
}
