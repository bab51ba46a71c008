//! The compliance trail: one entry per event saying who, via which agents, did what, to
//! what, with which outcome, anchored by the record's seq and hash. Entries name people
//! and agents by id, never by email: the trail stays pseudonymous.
//!
//! An entry is computed from the state *before* its event is applied (so a revocation
//! can still name the person and agent chain of the token it revoked).
//!
//! Architecture Invariant: an entry reads from the state only facts fixed when their
//! subject was created (whom a token, delegation, API key, session grant or refresh token
//! belongs to, and through which agents), and the folds never forget an id. So any later
//! state of the same ledger gives the same entry as the state just before the record: the
//! server tells its trail against its live read models, without replaying (a property
//! test, `the_trail_reads_the_same_against_any_later_state`, holds this). If the read
//! models ever prune, the facts the trail reads must be kept.
//!
//! Personal data enters an entry in one place only, [`personal_of`]: today a token's
//! stated intent. People are named by id everywhere else.

use serde::{Deserialize, Serialize};
use writ_schemas::{Actor, ClientId, Event, Hash, Timestamp, UserId};

use crate::model::{Head, Token};
use crate::state::State;

/// One line of the compliance trail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// The record's seq.
    pub seq: u64,
    /// The record's hash.
    pub hash: Hash,
    /// When it was appended.
    pub ts: Timestamp,
    /// Who did it: `admin:<token id>`, `user:<id>`, `agent:<client id>` or `system`.
    pub actor: String,
    /// The person it was done for or by, when there is one (a pseudonymous id).
    pub user: Option<UserId>,
    /// The agent chain it went through, outermost first (the agent that acted, then the
    /// one that handed on to it, ..., then the one the person delegated to).
    pub agents: Vec<ClientId>,
    /// The event kind.
    pub action: String,
    /// What it acted on (a client id, a jti, a delegation id, ...).
    pub target: String,
    /// How it ended.
    pub outcome: String,
    /// Personal data the event carries, as [`personal_of`] takes it (a token's stated
    /// intent); absent when there is none.
    pub intent: Option<String>,
}

impl AuditEntry {
    /// The entry as a sentence: "user X, via agent A then agent B, did Y on Z, at T,
    /// outcome". The agents read in the order the person's delegation flows: first the
    /// agent they delegated to, then each sub-agent it handed on to. Work an agent did for
    /// a person is said to be the person's, through the agents; anyone else who acted
    /// (an admin revoking, say) is named before them.
    pub fn sentence(&self) -> String {
        let chain_acted = self
            .actor
            .strip_prefix("agent:")
            .is_some_and(|agent| self.agents.iter().any(|a| a.as_str() == agent));
        let who = match &self.user {
            Some(user) if chain_acted || self.actor == format!("user:{user}") => {
                format!("user {user}")
            }
            Some(user) => format!("{} for user {user}", spoken(&self.actor)),
            None => spoken(&self.actor),
        };
        // An agent acting for no one, alone in its chain, is already named as who.
        let alone = self.user.is_none() && chain_acted && self.agents.len() == 1;
        let via = if self.agents.is_empty() || alone {
            String::new()
        } else {
            let flow: Vec<String> = self
                .agents
                .iter()
                .rev()
                .map(|agent| format!("agent {agent}"))
                .collect();
            format!(", via {}", flow.join(" then "))
        };
        format!(
            "{who}{via}, did {} on {}, at {}, {}",
            self.action, self.target, self.ts, self.outcome
        )
    }
}

/// `kind:id` as words: `agent a1`, `admin adm_1`, `user u1`, `system`.
fn spoken(actor: &str) -> String {
    actor.replacen(':', " ", 1)
}

fn actor_text(actor: &Actor) -> (String, Option<UserId>) {
    match actor {
        Actor::Admin { token_id } => (format!("admin:{token_id}"), None),
        Actor::User { user_id } => (format!("user:{user_id}"), Some(user_id.clone())),
        Actor::Agent { client_id } => (format!("agent:{client_id}"), None),
        Actor::System => ("system".to_owned(), None),
    }
}

fn chain_of(token: &Token) -> Vec<ClientId> {
    if token.actors.is_empty() {
        vec![token.client_id.clone()]
    } else {
        token.actors.clone()
    }
}

struct Parts {
    actor: String,
    user: Option<UserId>,
    agents: Vec<ClientId>,
    target: String,
    outcome: String,
}

impl Parts {
    fn by(actor: &Actor, target: impl ToString) -> Parts {
        let (actor, user) = actor_text(actor);
        Parts {
            actor,
            user,
            agents: Vec::new(),
            target: target.to_string(),
            outcome: "succeeded".into(),
        }
    }

    fn agent(mut self, client_id: &ClientId) -> Parts {
        self.agents = vec![client_id.clone()];
        self
    }

    fn token(state: &State, jti: &writ_schemas::Jti, outcome: String) -> Parts {
        let token = state.token(jti);
        let agents = token.map(chain_of).unwrap_or_default();
        Parts {
            actor: agents
                .first()
                .map(|a| format!("agent:{a}"))
                .unwrap_or_else(|| "system".into()),
            user: token.and_then(|t| t.user_id.clone()),
            agents,
            target: jti.to_string(),
            outcome,
        }
    }
}

/// The audit entry for `event` at `head`, read against the state before it is applied.
pub fn audit_entry(state: &State, head: Head, event: &Event) -> AuditEntry {
    let parts = parts_of(state, event);
    AuditEntry {
        seq: head.seq,
        hash: head.hash,
        ts: head
            .ts
            .unwrap_or_else(|| Timestamp::from_unix_micros(0).unwrap_or_else(|| unreachable!())),
        actor: parts.actor,
        user: parts.user,
        agents: parts.agents,
        action: event.kind().name().to_owned(),
        target: parts.target,
        outcome: parts.outcome,
        intent: personal_of(event),
    }
}

/// The personal data an event brings into the trail: the one place it is read, so that
/// whatever must hide it (erasure) has one place to do so. Ids are pseudonymous and are
/// not personal data here; emails and names never enter the trail.
pub fn personal_of(event: &Event) -> Option<String> {
    match event {
        Event::TokenIssued(e) => e.intent_description.clone(),
        _ => None,
    }
}

fn parts_of(state: &State, event: &Event) -> Parts {
    match event {
        Event::AgentRegistered(e) => Parts::by(&e.by, &e.client_id).agent(&e.client_id),
        Event::AgentIdentitySet(e) => Parts::by(&e.by, &e.client_id).agent(&e.client_id),
        Event::AgentSecretRotated(e) => Parts::by(&e.by, &e.client_id).agent(&e.client_id),
        Event::AgentDisabled(e) => Parts::by(&e.by, &e.client_id).agent(&e.client_id),
        Event::AgentEnabled(e) => Parts::by(&e.by, &e.client_id).agent(&e.client_id),
        Event::AgentReviewed(e) => Parts::by(&e.by, &e.client_id).agent(&e.client_id),
        Event::AgentPolicySet(e) => Parts::by(&e.by, &e.client_id).agent(&e.client_id),
        Event::PolicySetAssigned(e) => match &e.subject {
            writ_schemas::PolicySubject::Agent { client_id } => {
                Parts::by(&e.by, format!("policy set of agent {client_id}")).agent(client_id)
            }
            writ_schemas::PolicySubject::User { user_id } => with_user(
                Parts::by(&e.by, format!("policy set of user {user_id}")),
                user_id,
            ),
        },
        Event::UserRegistered(e) => with_user(Parts::by(&e.by, &e.user_id), &e.user_id),
        Event::UserDeactivated(e) => with_user(Parts::by(&e.by, &e.user_id), &e.user_id),
        Event::UserReactivated(e) => with_user(Parts::by(&e.by, &e.user_id), &e.user_id),
        Event::UserErased(e) => with_user(Parts::by(&e.by, &e.user_id), &e.user_id),
        Event::ServerRegistered(e) => Parts::by(&e.by, &e.server_id),
        Event::ConnectionEstablished(e) => connection_parts(&e.user_id, &e.server_id, "connected"),
        Event::ConnectionRefreshed(e) => connection_parts(&e.user_id, &e.server_id, "refreshed"),
        Event::ConnectionRefreshFailed(e) => {
            let outcome = if e.broken {
                format!("refresh failed, connection broken ({})", e.reason)
            } else {
                format!("refresh failed ({})", e.reason)
            };
            connection_parts(&e.user_id, &e.server_id, &outcome)
        }
        Event::ServerSecretRewrapped(e) => {
            let mut parts = Parts::by(&Actor::System, &e.server_id);
            parts.outcome = format!("client secret re-wrapped under {}", e.client_secret.kek_id);
            parts
        }
        Event::ConnectionRewrapped(e) => connection_parts(
            &e.user_id,
            &e.server_id,
            &format!("tokens re-wrapped under {}", e.access_token.kek_id),
        ),
        Event::UpstreamRevocationCompleted(e) => {
            let token = match e.token {
                writ_schemas::UpstreamTokenKind::AccessToken => "access token",
                writ_schemas::UpstreamTokenKind::RefreshToken => "refresh token",
            };
            let outcome = match &e.outcome {
                writ_schemas::RevocationOutcome::Revoked => {
                    format!("{token} revoked upstream (attempt {})", e.attempt)
                }
                writ_schemas::RevocationOutcome::NotRevocable { reason } => {
                    format!("{token} not revocable upstream ({reason})")
                }
                writ_schemas::RevocationOutcome::Failed { reason, .. } => {
                    format!(
                        "{token} revocation failed (attempt {}: {reason})",
                        e.attempt
                    )
                }
            };
            connection_parts(&e.user_id, &e.server_id, &outcome)
        }
        Event::ConnectionDeleted(e) => with_user(
            Parts::by(&e.by, format!("connection to {}", e.server_id)),
            &e.user_id,
        ),
        Event::ApiKeyIssued(e) => with_user(Parts::by(&e.by, &e.key_id), &e.user_id),
        Event::ApiKeyRevoked(e) => {
            let owner = state.api_key(&e.key_id).map(|key| key.user_id.clone());
            let parts = Parts::by(&e.by, &e.key_id);
            match owner {
                Some(owner) => with_user(parts, &owner),
                None => parts,
            }
        }
        Event::DelegationGranted(e) => {
            with_user(Parts::by(&e.by, &e.delegation_id), &e.user_id).agent(&e.client_id)
        }
        Event::DelegationRevoked(e) => {
            let parts = Parts::by(&e.by, &e.delegation_id);
            match state.delegation(&e.delegation_id) {
                Some(d) => with_user(parts, &d.user_id).agent(&d.client_id),
                None => parts,
            }
        }
        Event::SessionGrantCreated(e) => {
            with_user(Parts::by(&e.by, &e.grant_id), &e.user_id).agent(&e.client_id)
        }
        Event::SessionGrantToggled(e) => grant_parts(state, &e.by, &e.grant_id),
        Event::SessionGrantRevoked(e) => grant_parts(state, &e.by, &e.grant_id),
        Event::TokenIssued(e) => {
            let agents = if e.actors.is_empty() {
                vec![e.client_id.clone()]
            } else {
                e.actors.clone()
            };
            Parts {
                actor: format!("agent:{}", e.client_id),
                user: e.user_id.clone(),
                agents,
                target: e.jti.to_string(),
                outcome: format!(
                    "issued ({}, scope \"{}\")",
                    e.grant_type,
                    e.scopes.join(" ")
                ),
            }
        }
        Event::TokenRevoked(e) => {
            let mut parts =
                Parts::token(state, &e.jti, format!("revoked ({})", cause_text(&e.cause)));
            if let writ_schemas::RevocationCause::Requested { by } = &e.cause {
                parts.actor = actor_text(by).0;
            }
            parts
        }
        Event::TokenExhausted(e) => Parts::token(state, &e.jti, "quota exhausted".into()),
        Event::OperationRecorded(e) => {
            let target = match &e.resource {
                Some(resource) => format!("{} {resource}", e.operation),
                None => e.operation.clone(),
            };
            let mut parts = Parts::token(state, &e.jti, "succeeded".into());
            parts.target = format!("{target} with token {}", e.jti);
            parts
        }
        Event::ToolCallCompleted(e) => {
            let outcome = match e.outcome {
                writ_schemas::ToolCallOutcome::Succeeded => "succeeded",
                writ_schemas::ToolCallOutcome::ToolError => "the tool reported an error",
                writ_schemas::ToolCallOutcome::UpstreamFailed => "the MCP server failed",
                writ_schemas::ToolCallOutcome::UpstreamTimedOut => "the MCP server timed out",
                writ_schemas::ToolCallOutcome::PolicyDenied => "denied by policy",
            };
            let mut outcome = outcome.to_owned();
            // Why policy denied it (a set that cannot be evaluated, say): the ledger's own
            // words, told to the auditor.
            if let (writ_schemas::ToolCallOutcome::PolicyDenied, Some(detail)) =
                (&e.outcome, &e.detail)
            {
                outcome.push_str(&format!(": {detail}"));
            }
            if let Some(used) = &e.credential {
                outcome.push_str(&format!(
                    ", with the upstream session of user {}",
                    used.user_id
                ));
                if let Some(grant) = &used.grant_id {
                    outcome.push_str(&format!(" (session grant {grant})"));
                }
            }
            if !e.policy_ids.is_empty() {
                outcome.push_str(&format!("; policies: {}", e.policy_ids.join(", ")));
            }
            let mut parts = Parts::token(state, &e.jti, outcome);
            parts.target = format!(
                "tool {} on server {} with token {}",
                e.tool_name, e.server_id, e.jti
            );
            parts
        }
        Event::SessionEnded(e) => {
            let mut parts = with_user(
                Parts::by(
                    &Actor::User {
                        user_id: e.user_id.clone(),
                    },
                    &e.session_id,
                ),
                &e.user_id,
            );
            parts.outcome = "signed out".into();
            parts
        }
        Event::SessionsEnded(e) => {
            let mut parts = with_user(Parts::by(&e.by, &e.user_id), &e.user_id);
            let why = match e.reason {
                writ_schemas::SessionsEndedReason::SignOutEverywhere => "signed out everywhere",
                writ_schemas::SessionsEndedReason::PasswordChanged => "password changed",
                writ_schemas::SessionsEndedReason::SignOut => "signed out",
            };
            parts.outcome = format!("every session ended ({why}); generation {}", e.generation);
            parts
        }
        Event::SignInFailuresDetected(e) => {
            let mut parts = with_user(Parts::by(&Actor::System, &e.user_id), &e.user_id);
            parts.outcome = format!(
                "{} failed sign-ins since {}",
                e.failures, e.first_failure_at
            );
            parts
        }
        Event::UserPasswordSet(e) => {
            let mut parts = with_user(Parts::by(&e.by, &e.user_id), &e.user_id);
            parts.outcome = "password set".into();
            parts
        }
        Event::AuthorizationCodeIssued(e) => {
            let mut parts = with_user(
                Parts::by(
                    &Actor::User {
                        user_id: e.user_id.clone(),
                    },
                    &e.code_id,
                ),
                &e.user_id,
            )
            .agent(&e.client_id);
            parts.target = format!(
                "authorization code {} under delegation {}",
                e.code_id, e.delegation_id
            );
            parts.outcome = format!("issued (scope \"{}\")", e.scopes.join(" "));
            parts
        }
        Event::AuthorizationCodeRedeemed(e) => {
            let mut parts = Parts::token(state, &e.jti, "redeemed".into());
            parts.target = format!("authorization code {} for token {}", e.code_id, e.jti);
            parts
        }
        Event::AuthorizationCodeReplayed(e) => {
            let user = state.code(&e.code_id).map(|c| c.issued.user_id.clone());
            Parts {
                actor: format!("agent:{}", e.client_id),
                user,
                agents: vec![e.client_id.clone()],
                target: format!("authorization code {}", e.code_id),
                outcome: "replayed; the tokens issued from it are revoked".into(),
            }
        }
        Event::ApprovalRequested(e) => {
            let mut outcome = format!("approval requested from user {}", e.approver);
            if !e.policy_ids.is_empty() {
                outcome.push_str(&format!("; policies: {}", e.policy_ids.join(", ")));
            }
            let mut parts = Parts::token(state, &e.jti, outcome);
            parts.target = format!(
                "tool {} on server {} (approval {})",
                e.tool_name, e.server_id, e.approval_id
            );
            parts
        }
        Event::ApprovalDecided(e) => {
            let parts = Parts::by(&e.by, &e.approval_id);
            let mut parts = match state.approval(&e.approval_id) {
                Some(a) => {
                    let mut parts =
                        with_user(parts, &a.request.approver).agent(&a.request.client_id);
                    parts.target = format!(
                        "tool {} on server {} (approval {})",
                        a.request.tool_name, a.request.server_id, e.approval_id
                    );
                    parts
                }
                None => parts,
            };
            parts.outcome = match e.decision {
                writ_schemas::ApprovalDecision::Approved => "approved".into(),
                writ_schemas::ApprovalDecision::Denied => "denied".into(),
            };
            parts
        }
        Event::ApprovalUsed(e) => {
            let mut parts = Parts::token(state, &e.jti, "approval used".into());
            parts.target = format!("approval {} with token {}", e.approval_id, e.jti);
            parts
        }
        Event::RefreshTokenIssued(e) => {
            refresh_parts(&e.client_id, e.user_id.as_ref(), &e.refresh_id, "issued")
        }
        Event::RefreshTokenRotated(e) => match state.refresh_token(&e.refresh_id) {
            Some(r) => refresh_parts(&r.client_id, r.user_id.as_ref(), &e.refresh_id, "rotated"),
            None => Parts::by(&Actor::System, &e.refresh_id),
        },
        Event::RefreshTokenReuseDetected(e) => {
            let user = state
                .refresh_token(&e.refresh_id)
                .and_then(|r| r.user_id.clone());
            let mut parts = refresh_parts(&e.client_id, user.as_ref(), &e.refresh_id, "");
            parts.outcome = format!("reuse detected; family {} revoked", e.family_id);
            parts
        }
        Event::RefreshTokenRevoked(e) => {
            let (client, user) = state
                .refresh_token(&e.refresh_id)
                .map(|r| (Some(r.client_id.clone()), r.user_id.clone()))
                .unwrap_or((None, None));
            let mut parts = Parts::by(&e.by, &e.refresh_id);
            parts.user = user;
            parts.agents = client.into_iter().collect();
            parts.outcome = format!("revoked; family {} ended", e.family_id);
            parts
        }
        Event::SigningKeyRotated(e) => Parts::by(e.by.as_ref().unwrap_or(&Actor::System), &e.kid),
        Event::AdminTokenIssued(e) => {
            let mut parts = Parts::by(&e.by, &e.token_id);
            parts.outcome = format!(
                "{} credential issued",
                e.role.unwrap_or(writ_schemas::AdminRole::Admin)
            );
            parts
        }
        Event::AdminTokenRevoked(e) => {
            let mut parts = Parts::by(&e.by, &e.token_id);
            parts.outcome = "revoked".into();
            parts
        }
        Event::CheckpointKeyPublished(e) => Parts::by(&Actor::System, &e.name),
    }
}

/// A connection event writ records itself, for the person's connection to a server.
fn connection_parts(user_id: &UserId, server_id: &writ_schemas::ServerId, outcome: &str) -> Parts {
    let mut parts = with_user(
        Parts::by(&Actor::System, format!("connection to {server_id}")),
        user_id,
    );
    parts.outcome = outcome.to_owned();
    parts
}

fn with_user(mut parts: Parts, user_id: &UserId) -> Parts {
    parts.user = Some(user_id.clone());
    parts
}

fn grant_parts(state: &State, by: &Actor, grant_id: &writ_schemas::GrantId) -> Parts {
    let parts = Parts::by(by, grant_id);
    match state.session_grant(grant_id) {
        Some(grant) => with_user(parts, &grant.user_id).agent(&grant.client_id),
        None => parts,
    }
}

fn refresh_parts(
    client_id: &ClientId,
    user: Option<&UserId>,
    id: &impl ToString,
    outcome: &str,
) -> Parts {
    Parts {
        actor: format!("agent:{client_id}"),
        user: user.cloned(),
        agents: vec![client_id.clone()],
        target: id.to_string(),
        outcome: outcome.to_owned(),
    }
}

fn cause_text(cause: &writ_schemas::RevocationCause) -> String {
    use writ_schemas::RevocationCause as C;
    match cause {
        C::Requested { .. } => "requested".into(),
        C::ParentRevoked { parent_jti } => format!("parent token {parent_jti} revoked"),
        C::DelegationRevoked { delegation_id } => format!("delegation {delegation_id} revoked"),
        C::UserDeactivated { user_id } => format!("user {user_id} deactivated"),
        C::AgentDisabled { client_id } => format!("agent {client_id} disabled"),
        C::RefreshFamilyRevoked { family_id } => format!("refresh family {family_id} revoked"),
        C::Completed => "task completed".into(),
    }
}

/// The trail as a fold: entries in ledger order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AuditTrail {
    /// The entries so far.
    pub entries: Vec<AuditEntry>,
}

impl AuditTrail {
    /// Records `event`'s entry (read against `state` before the event is applied).
    pub fn record(&mut self, state: &State, head: Head, event: &Event) {
        self.entries.push(audit_entry(state, head, event));
    }
}
