//! A one-screen account of a state: counts of everything, with statuses at an instant.
//! What `writ replay` prints.

use serde::Serialize;
use writ_schemas::Timestamp;

use super::State;
use crate::model::{AgentStatus, TokenStatus};

/// Counts of a state's read models, statuses taken at `at`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Summary {
    /// The record the state reflects.
    pub seq: u64,
    /// Its hash.
    pub hash: String,
    /// Its time (statuses are taken then).
    pub at: Option<Timestamp>,
    /// Agents by status.
    pub agents: AgentCounts,
    /// People registered / active.
    pub users: (usize, usize),
    /// API keys issued / revoked.
    pub api_keys: (usize, usize),
    /// Delegations granted / active.
    pub delegations: (usize, usize),
    /// Session grants created / active / shared.
    pub session_grants: (usize, usize, usize),
    /// Tokens by status.
    pub tokens: TokenCounts,
    /// Refresh families / with reuse detected.
    pub refresh_families: (usize, usize),
    /// Signing keys recorded.
    pub signing_keys: usize,
}

/// Agents by status.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct AgentCounts {
    /// All agents.
    pub total: usize,
    /// Active.
    pub active: usize,
    /// Disabled.
    pub disabled: usize,
    /// Expired.
    pub expired: usize,
    /// Owner deactivated.
    pub orphaned: usize,
    /// Never reviewed.
    pub needs_review: usize,
}

/// Tokens by status.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct TokenCounts {
    /// Ever issued.
    pub issued: usize,
    /// Usable at the instant.
    pub active: usize,
    /// Revoked.
    pub revoked: usize,
    /// Past expiry (not revoked).
    pub expired: usize,
    /// Quota used up.
    pub exhausted: usize,
    /// Operations recorded across all tokens.
    pub operations: u64,
}

impl State {
    /// Counts as of the state's head, statuses at the head's time.
    pub fn summary(&self) -> Summary {
        let head = self.head();
        let at = head
            .ts
            .unwrap_or_else(|| Timestamp::from_unix_micros(0).unwrap_or_else(|| unreachable!()));
        let mut agents = AgentCounts::default();
        for agent in self.agents.values() {
            agents.total += 1;
            agents.needs_review += usize::from(agent.reviewed_at.is_none());
            match self.agent_status(agent, at) {
                AgentStatus::Active => agents.active += 1,
                AgentStatus::Disabled => agents.disabled += 1,
                AgentStatus::Expired => agents.expired += 1,
                AgentStatus::Orphaned => agents.orphaned += 1,
            }
        }
        let mut tokens = TokenCounts::default();
        for token in self.tokens.values() {
            tokens.issued += 1;
            tokens.operations += token.operations_used;
            tokens.exhausted += usize::from(token.exhausted);
            match &token.status {
                TokenStatus::Revoked { .. } => tokens.revoked += 1,
                TokenStatus::Live if token.is_active(at) => tokens.active += 1,
                TokenStatus::Live => tokens.expired += 1,
            }
        }
        let count = |n: usize, pred: usize| (n, pred);
        Summary {
            seq: head.seq,
            hash: head.hash.to_hex(),
            at: head.ts,
            agents,
            users: count(
                self.users.len(),
                self.users.values().filter(|u| u.active).count(),
            ),
            api_keys: count(
                self.api_keys.len(),
                self.api_keys
                    .values()
                    .filter(|k| k.revoked_at.is_some())
                    .count(),
            ),
            delegations: count(
                self.delegations.len(),
                self.delegations
                    .values()
                    .filter(|d| d.is_active(at))
                    .count(),
            ),
            session_grants: (
                self.session_grants.len(),
                self.session_grants
                    .values()
                    .filter(|g| g.revoked_at.is_none())
                    .count(),
                self.session_grants
                    .values()
                    .filter(|g| g.revoked_at.is_none() && g.shared)
                    .count(),
            ),
            tokens,
            refresh_families: (
                self.families.len(),
                self.families.values().filter(|f| f.reuse_detected).count(),
            ),
            signing_keys: self.signing_keys.len(),
        }
    }
}
