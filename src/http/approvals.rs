//! Approvals of supervised agents' critical tool calls: the person asked sees what waits
//! for them (`GET /api/v1/approvals`, an admin sees all), with the call's arguments
//! opened from the seal, and approves or denies it (`POST /api/v1/approvals/{id}/approve`
//! or `/deny`). The gateway asks for them and spends them (`http::gateway`); the rules
//! are decided in `decide::approvals`.

use actix_web::{HttpResponse, web};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use writ_projections::{Approval, ApprovalStatus, State};
use writ_schemas::{ApprovalDecision, Timestamp};

use super::AppState;
use super::auth::Caller;
use super::error::ApiError;
use crate::decide::{Command, Refusal};
use crate::people::{Field, People};

/// The statuses a listing may be filtered by.
const STATUSES: [&str; 5] = ["pending", "approved", "denied", "used", "expired"];

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Filter {
    status: Option<String>,
}

/// An approval as the API shows it.
#[derive(Debug, Serialize)]
struct ApprovalView {
    id: String,
    client_id: String,
    user_id: Option<String>,
    approver: String,
    server_id: String,
    tool_name: String,
    /// The arguments as the agent sent them (members sorted), or `"[erased]"`.
    arguments: Value,
    policy_ids: Vec<String>,
    status: &'static str,
    requested_at: String,
    expires_at: String,
}

/// The approval's status at `now`: an open one past its expiry reads `expired`.
fn status_at(approval: &Approval, now: Timestamp) -> &'static str {
    if approval.is_expired(now) {
        "expired"
    } else {
        approval.status.name()
    }
}

/// An approval copied out of the read models with whether its approver was erased, to be
/// shown ([`view`]) after the read lock: showing opens the arguments with a person's key.
fn copied(state: &State, approval: &Approval) -> (Approval, bool) {
    let erased = state
        .user(&approval.request.approver)
        .is_some_and(|user| user.erased);
    (approval.clone(), erased)
}

fn view(people: &People, (approval, erased): &(Approval, bool), now: Timestamp) -> ApprovalView {
    let request = &approval.request;
    let text = people.render_as(
        *erased,
        &request.approver,
        Field::Arguments,
        None,
        Some(&request.arguments_sealed),
    );
    let arguments = text
        .map(|text| serde_json::from_str(&text).unwrap_or(Value::String(text)))
        .unwrap_or(Value::Null);
    ApprovalView {
        id: request.approval_id.clone(),
        client_id: request.client_id.to_string(),
        user_id: request.user_id.as_ref().map(ToString::to_string),
        approver: request.approver.to_string(),
        server_id: request.server_id.to_string(),
        tool_name: request.tool_name.clone(),
        arguments,
        policy_ids: request.policy_ids.clone(),
        status: status_at(approval, now),
        requested_at: approval.requested_at.to_string(),
        expires_at: request.expires_at.to_string(),
    }
}

/// The approvals asked of the calling person (every one, for an admin), oldest first,
/// optionally of one status.
pub(super) async fn list(
    state: web::Data<AppState>,
    caller: Caller,
    filter: web::Query<Filter>,
) -> Result<HttpResponse, ApiError> {
    let status = filter.into_inner().status;
    if let Some(status) = status.as_deref()
        && !STATUSES.contains(&status)
    {
        return Err(ApiError::invalid(
            "status",
            format!("one of {}", STATUSES.join(", ")),
        ));
    }
    let now = state.clock.now();
    let listed = state.ledger.read(|s| {
        let approvals: Box<dyn Iterator<Item = &Approval>> = match caller.user_id() {
            Some(user) => Box::new(s.approvals_for_approver(user)),
            None => Box::new(s.approvals()),
        };
        approvals
            .filter(|a| {
                status
                    .as_deref()
                    .is_none_or(|want| status_at(a, now) == want)
            })
            .map(|a| copied(s, a))
            .collect::<Vec<_>>()
    });
    let listed: Vec<ApprovalView> = listed
        .iter()
        .map(|copy| view(&state.people, copy, now))
        .collect();
    Ok(HttpResponse::Ok().json(listed))
}

/// Approves a critical call: the agent's retry naming the approval is then forwarded, once.
pub(super) async fn approve(
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    decide(&state, &caller, id.into_inner(), ApprovalDecision::Approved).await
}

/// Denies a critical call: the agent's retry naming the approval is refused.
pub(super) async fn deny(
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    decide(&state, &caller, id.into_inner(), ApprovalDecision::Denied).await
}

async fn decide(
    state: &AppState,
    caller: &Caller,
    approval_id: String,
    decision: ApprovalDecision,
) -> Result<HttpResponse, ApiError> {
    if caller.user_id().is_none() {
        return Err(Refusal::NotApprover(approval_id).into());
    }
    let command = Command::DecideApproval {
        approval_id: approval_id.clone(),
        decision,
        by: caller.actor(),
    };
    state.ledger.submit(command).await?;
    let now = state.clock.now();
    let decided = state.ledger.read(|s| {
        s.approval(&approval_id)
            .filter(|a| a.status != ApprovalStatus::Pending)
            .map(|a| copied(s, a))
    });
    let decided = decided.ok_or_else(|| {
        ApiError::Unavailable("the decision is not visible yet; retry the read".into())
    })?;
    Ok(HttpResponse::Ok().json(view(&state.people, &decided, now)))
}
