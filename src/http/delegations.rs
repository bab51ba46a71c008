//! Delegations: a person lets an agent act for them (`POST
//! /api/v1/agents/{client_id}/delegations`, by their API key), sees what they granted
//! (`GET /api/v1/me/delegations`), and withdraws it (`DELETE /api/v1/delegations/{id}`),
//! which revokes every token derived from it. An admin sees every delegation to an agent
//! and may revoke any; a person sees and revokes only their own.

use actix_web::{HttpResponse, web};
use serde::{Deserialize, Serialize};
use writ_projections::{Delegation, State};
use writ_schemas::{ClientId, DelegationGranted, DelegationId, Timestamp};

use super::AppState;
use super::agents::{check_scopes, parse_time};
use super::auth::Caller;
use super::error::{ApiError, optional_json};
use crate::decide::{Command, Refusal};
use crate::people::{Datum, People};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewDelegation {
    scopes: Option<Vec<String>>,
    expires_at: Option<String>,
}

/// A delegation as the API shows it.
#[derive(Debug, Serialize)]
struct DelegationView {
    id: String,
    client_id: String,
    delegator_user_id: String,
    delegator_email: Option<String>,
    scopes: Vec<String>,
    created_at: String,
    expires_at: Option<String>,
    status: &'static str,
    last_used_at: Option<String>,
    /// The delegator's email as the read models hold it, opened by
    /// [`DelegationView::open`].
    #[serde(skip)]
    delegator_datum: Option<Datum>,
}

impl DelegationView {
    /// The view with the delegator's email opened: after the read lock, as opening may
    /// read the delegator's key from its store.
    fn open(mut self, people: &People) -> DelegationView {
        self.delegator_email = self.delegator_datum.take().map(|d| people.reveal_datum(&d));
        self
    }

    fn open_all(views: Vec<DelegationView>, people: &People) -> Vec<DelegationView> {
        views.into_iter().map(|view| view.open(people)).collect()
    }
}

/// The delegation as the API shows it, read under the lock; [`DelegationView::open`]
/// fills in the delegator's email after it.
fn view(state: &State, delegation: &Delegation, now: Timestamp) -> DelegationView {
    // A delegation that named no scopes delegates all of the agent's.
    let scopes = delegation.scopes.clone().unwrap_or_else(|| {
        state
            .agent(&delegation.client_id)
            .map(|agent| agent.scopes.clone())
            .unwrap_or_default()
    });
    let status = if delegation.revoked_at.is_some() {
        "revoked"
    } else if delegation.is_active(now) {
        "active"
    } else {
        "expired"
    };
    DelegationView {
        id: delegation.delegation_id.to_string(),
        client_id: delegation.client_id.to_string(),
        delegator_user_id: delegation.user_id.to_string(),
        delegator_email: None,
        delegator_datum: state.user(&delegation.user_id).map(Datum::email_of),
        scopes,
        created_at: delegation.granted_at.to_string(),
        expires_at: delegation.expires_at.map(|t| t.to_string()),
        status,
        last_used_at: delegation.last_used_at.map(|t| t.to_string()),
    }
}

/// Grants a delegation from the calling person to the agent (an empty body delegates
/// every scope of the agent's, without end).
pub(super) async fn grant(
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<String>,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let body: NewDelegation = optional_json(payload).await?;
    let Some(user_id) = caller.user_id().cloned() else {
        return Err(Refusal::NotAPerson.into());
    };
    if let Some(scopes) = &body.scopes {
        check_scopes("scopes", scopes)?;
    }
    let now = state.clock.now();
    let expires_at = body
        .expires_at
        .as_deref()
        .map(|text| parse_time("expires_at", text, now))
        .transpose()?;
    let delegation_id = DelegationId(uuid::Uuid::new_v4().to_string());
    let grant = DelegationGranted {
        delegation_id: delegation_id.clone(),
        user_id,
        client_id: ClientId(id.into_inner()),
        scopes: body.scopes,
        expires_at,
        by: caller.actor(),
    };
    state.ledger.submit(Command::GrantDelegation(grant)).await?;
    let now = state.clock.now();
    let created = state.ledger.read(|s| {
        s.delegation(&delegation_id)
            .map(|delegation| view(s, delegation, now))
    });
    let created = created.ok_or_else(|| {
        ApiError::Unavailable("the new delegation is not visible yet; retry the read".into())
    })?;
    Ok(HttpResponse::Created().json(created.open(&state.people)))
}

/// The delegations to one agent: all of them for an admin, the caller's own for a person.
pub(super) async fn of_agent(
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let client_id = ClientId(id.into_inner());
    let now = state.clock.now();
    let listed = state.ledger.read(|s| {
        s.agent(&client_id)?;
        Some(
            s.delegations()
                .filter(|d| d.client_id == client_id)
                .filter(|d| caller.user_id().is_none_or(|user| *user == d.user_id))
                .map(|d| view(s, d, now))
                .collect::<Vec<_>>(),
        )
    });
    let listed =
        listed.ok_or_else(|| ApiError::from(Refusal::UnknownAgent(client_id.to_string())))?;
    Ok(HttpResponse::Ok().json(DelegationView::open_all(listed, &state.people)))
}

/// Everything the calling person has delegated, to any agent, with its last use.
pub(super) async fn mine(
    state: web::Data<AppState>,
    caller: Caller,
) -> Result<HttpResponse, ApiError> {
    let Some(user_id) = caller.user_id() else {
        return Err(ApiError::Forbidden(
            "an admin grants no delegations: call with a person's API key (`x-api-key: wrt_...`) to see theirs, or list an agent's delegations".into(),
        ));
    };
    let now = state.clock.now();
    let listed: Vec<DelegationView> = state.ledger.read(|s| {
        s.delegations_of_user(user_id)
            .map(|d| view(s, d, now))
            .collect()
    });
    Ok(HttpResponse::Ok().json(DelegationView::open_all(listed, &state.people)))
}

/// Revokes a delegation and every token derived from it (its delegator, or an admin).
pub(super) async fn revoke(
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let command = Command::RevokeDelegation {
        delegation_id: DelegationId(id.into_inner()),
        by: caller.actor(),
    };
    state.ledger.submit(command).await?;
    Ok(HttpResponse::NoContent().finish())
}
