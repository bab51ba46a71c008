//! Approvals of critical tool calls. A supervised agent's call that policy marks critical
//! is not forwarded: an approval is requested of the person the agent acts for (or, for
//! the agent's own token, its owner). That person approves or denies it; an approved call
//! is made once, by the same agent for the same person, to the same tool with the same
//! arguments, before the approval lapses. Spending it is decided together with counting
//! the call's operation (`ApprovalUse` in `RecordOperation`), so two retries racing each
//! other cannot both use one approval.

use writ_projections::{Approval, ApprovalStatus, State, Token};
use writ_schemas::{
    Actor, ApprovalDecided, ApprovalDecision, ApprovalRequested, ApprovalUsed, Digest, Event,
    ServerId, Timestamp,
};

use super::{Answer, Refusal};

/// The call an approval is presented for, as the retry makes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApprovalUse {
    /// The approval's id.
    pub approval_id: String,
    /// The server called.
    pub server_id: ServerId,
    /// The tool called.
    pub tool_name: String,
    /// Digest of the arguments it is called with.
    pub arguments_digest: Digest,
}

pub(super) fn request(
    state: &State,
    request: &ApprovalRequested,
    now: Timestamp,
) -> Result<(Vec<Event>, Answer), Refusal> {
    let token = state.token(&request.jti).ok_or(Refusal::UnknownToken)?;
    if !token.is_active(now) {
        return Err(Refusal::TokenInactive);
    }
    if state.approval(&request.approval_id).is_some() {
        return Err(Refusal::ApprovalExists(request.approval_id.clone()));
    }
    if !state.user(&request.approver).is_some_and(|u| u.active) {
        return Err(Refusal::NoApprover(request.client_id.to_string()));
    }
    Ok((vec![request.clone().into()], Answer::Done))
}

pub(super) fn decide(
    state: &State,
    approval_id: &str,
    decision: ApprovalDecision,
    by: &Actor,
    now: Timestamp,
) -> Result<(Vec<Event>, Answer), Refusal> {
    let approval = state
        .approval(approval_id)
        .ok_or_else(|| Refusal::UnknownApproval(approval_id.to_owned()))?;
    let is_approver =
        matches!(by, Actor::User { user_id } if *user_id == approval.request.approver);
    if !is_approver {
        return Err(Refusal::NotApprover(approval_id.to_owned()));
    }
    if approval.is_expired(now) {
        return Err(Refusal::ApprovalExpired(approval_id.to_owned()));
    }
    if approval.status != ApprovalStatus::Pending {
        return Err(Refusal::ApprovalSettled(
            approval_id.to_owned(),
            approval.status.name(),
        ));
    }
    let decided = ApprovalDecided {
        approval_id: approval_id.to_owned(),
        decision,
        by: by.clone(),
    };
    Ok((vec![decided.into()], Answer::Done))
}

/// The event that spends `presented` for a call made with `token`, or why it cannot be.
pub(super) fn spend(
    state: &State,
    token: &Token,
    presented: &ApprovalUse,
    now: Timestamp,
) -> Result<Event, Refusal> {
    let id = &presented.approval_id;
    let approval: &Approval = state
        .approval(id)
        .filter(|a| a.request.client_id == token.client_id && a.request.user_id == token.user_id)
        .ok_or_else(|| Refusal::UnknownApproval(id.clone()))?;
    let request = &approval.request;
    if request.server_id != presented.server_id
        || request.tool_name != presented.tool_name
        || request.arguments_digest != presented.arguments_digest
    {
        return Err(Refusal::ApprovalMismatch(id.clone()));
    }
    match &approval.status {
        _ if approval.is_expired(now) => Err(Refusal::ApprovalExpired(id.clone())),
        ApprovalStatus::Pending => Err(Refusal::ApprovalPending(id.clone())),
        ApprovalStatus::Denied { .. } => Err(Refusal::ApprovalDenied(id.clone())),
        ApprovalStatus::Used { .. } => Err(Refusal::ApprovalSettled(id.clone(), "used")),
        ApprovalStatus::Approved { .. } => Ok(ApprovalUsed {
            approval_id: id.clone(),
            jti: token.jti.clone(),
        }
        .into()),
    }
}
