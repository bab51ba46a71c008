//! Approvals of critical tool calls. A supervised agent's call that policy marks critical
//! is not forwarded: an approval is requested of the person the agent acts for (or, for
//! the agent's own token, its owner). That person approves or denies it; an approved call
//! is made once, by the same agent for the same person, to the same tool with the same
//! arguments, before the approval lapses. Spending it is decided together with counting
//! the call's operation (`ApprovalUse` in `RecordOperation`), so two retries racing each
//! other cannot both use one approval.
//!
//! Who must approve is decided here ([`supervised`], [`approver`]) and checked again when
//! the request is recorded: the gateway asks these functions, and the sequencer refuses
//! an approval asked of anyone else or decided by anyone else.

use writ_projections::{Approval, ApprovalStatus, State, Token};
use writ_schemas::{
    Actor, AgentType, ApprovalDecided, ApprovalDecision, ApprovalRequested, ApprovalUsed, Digest,
    Event, ServerId, Timestamp, UserId,
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

/// Whether `token`'s critical calls wait for approval: the token is supervised, or an
/// agent holding it or in its chain is registered supervised, whichever is stricter. The
/// registration counts as well as the token, so a token recorded before issuance held
/// agents to their type still waits.
pub fn supervised(state: &State, token: &Token) -> bool {
    token.agent_type == AgentType::Supervised
        || std::iter::once(&token.client_id)
            .chain(&token.actors)
            .filter_map(|client_id| state.agent(client_id))
            .any(|agent| agent.agent_type == AgentType::Supervised)
}

/// Who approves `token`'s critical calls: the person it acts for, else the owner of the
/// agent holding it (none: nobody can).
pub fn approver(state: &State, token: &Token) -> Option<UserId> {
    token.user_id.clone().or_else(|| {
        state
            .agent(&token.client_id)
            .and_then(|agent| agent.owner.clone())
    })
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
    let Some(approver) = approver(state, token) else {
        return Err(Refusal::NoApprover(request.client_id.to_string()));
    };
    if request.client_id != token.client_id
        || request.user_id != token.user_id
        || request.approver != approver
    {
        return Err(Refusal::WrongApprover(
            request.approval_id.clone(),
            approver,
        ));
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
