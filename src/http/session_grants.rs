//! Session grants: a person lends their upstream session (their connection to an MCP
//! server) to an agent (`POST /api/v1/agents/{client_id}/session-grants`), flips it
//! between personal and shared (`.../session-grants/toggle`), sees the grants that
//! concern them (`GET`, the caller's own plus the shared one, never other people's
//! personal grants; an admin sees all), and revokes one (`DELETE
//! /api/v1/session-grants/{id}`), which leaves any delegation alone. The rules are
//! decided in `decide::session_grants`.

use actix_web::{HttpResponse, web};
use serde::{Deserialize, Serialize};
use writ_projections::{SessionGrant, State};
use writ_schemas::{ClientId, GrantId, ServerId, SessionGrantCreated};

use super::AppState;
use super::auth::Caller;
use super::error::ApiError;
use crate::decide::{Command, Refusal};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct NewGrant {
    server_id: String,
    #[serde(default)]
    shared: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Toggle {
    server_id: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Filter {
    server_id: Option<String>,
}

/// A session grant as the API shows it.
#[derive(Debug, Serialize)]
struct GrantView {
    id: String,
    client_id: String,
    server_id: String,
    user_id: String,
    shared: bool,
    created_at: String,
}

fn view(grant: &SessionGrant) -> GrantView {
    GrantView {
        id: grant.grant_id.to_string(),
        client_id: grant.client_id.to_string(),
        server_id: grant.server_id.to_string(),
        user_id: grant.user_id.to_string(),
        shared: grant.shared,
        created_at: grant.created_at.to_string(),
    }
}

fn server_id(text: String) -> Result<ServerId, ApiError> {
    if text.trim().is_empty() {
        return Err(ApiError::invalid(
            "server_id",
            "name a registered server's id",
        ));
    }
    Ok(ServerId(text))
}

/// Lends the calling person's session with a server to the agent.
pub(super) async fn create(
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<String>,
    body: web::Json<NewGrant>,
) -> Result<HttpResponse, ApiError> {
    let Some(user_id) = caller.user_id().cloned() else {
        return Err(Refusal::NotAPerson.into());
    };
    let body = body.into_inner();
    let grant_id = GrantId(uuid::Uuid::new_v4().to_string());
    let grant = SessionGrantCreated {
        grant_id: grant_id.clone(),
        client_id: ClientId(id.into_inner()),
        server_id: server_id(body.server_id)?,
        user_id,
        shared: body.shared,
        by: caller.actor(),
    };
    state
        .ledger
        .submit(Command::CreateSessionGrant(grant))
        .await?;
    let created = state.ledger.read(|s| s.session_grant(&grant_id).map(view));
    let created = created.ok_or_else(|| {
        ApiError::Unavailable("the new session grant is not visible yet; retry the read".into())
    })?;
    Ok(HttpResponse::Created().json(created))
}

/// The agent's session grants the caller may see: their own and the shared one (all of
/// them, for an admin), unrevoked, optionally for one server.
pub(super) async fn list(
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<String>,
    filter: web::Query<Filter>,
) -> Result<HttpResponse, ApiError> {
    let client_id = ClientId(id.into_inner());
    let server = filter.into_inner().server_id.map(ServerId);
    let listed = state.ledger.read(|s| {
        s.agent(&client_id)?;
        Some(visible(s, &caller, &client_id, server.as_ref()))
    });
    let listed =
        listed.ok_or_else(|| ApiError::from(Refusal::UnknownAgent(client_id.to_string())))?;
    Ok(HttpResponse::Ok().json(listed))
}

fn visible(
    s: &State,
    caller: &Caller,
    client_id: &ClientId,
    server: Option<&ServerId>,
) -> Vec<GrantView> {
    s.session_grants_of_agent(client_id)
        .filter(|g| g.revoked_at.is_none())
        .filter(|g| server.is_none_or(|server| g.server_id == *server))
        .filter(|g| g.shared || caller.user_id().is_none_or(|user| *user == g.user_id))
        .map(view)
        .collect()
}

/// Flips the caller's grant to the agent for a server between personal and shared, and
/// answers with the grant as it now stands.
pub(super) async fn toggle(
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<String>,
    body: web::Json<Toggle>,
) -> Result<HttpResponse, ApiError> {
    let Some(user_id) = caller.user_id().cloned() else {
        return Err(Refusal::NotAPerson.into());
    };
    let client_id = ClientId(id.into_inner());
    let server_id = server_id(body.into_inner().server_id)?;
    let command = Command::ToggleSessionGrant {
        client_id: client_id.clone(),
        server_id: server_id.clone(),
        by: caller.actor(),
    };
    state.ledger.submit(command).await?;
    let toggled = state.ledger.read(|s| {
        s.own_session_grant(&client_id, &server_id, &user_id)
            .map(view)
    });
    let toggled = toggled.ok_or_else(|| {
        ApiError::Unavailable("the toggled session grant is not visible yet; retry the read".into())
    })?;
    Ok(HttpResponse::Ok().json(toggled))
}

/// Revokes a session grant (the person whose session it is, or an admin).
pub(super) async fn revoke(
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let command = Command::RevokeSessionGrant {
        grant_id: GrantId(id.into_inner()),
        by: caller.actor(),
    };
    state.ledger.submit(command).await?;
    Ok(HttpResponse::NoContent().finish())
}
