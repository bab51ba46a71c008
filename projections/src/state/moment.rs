//! Questions an auditor asks about one moment: which delegations were in force, which
//! tokens could act for a person, what an agent could do. The state answers them as of
//! its own head; `at` is the instant statuses are taken at (expiries), which the caller
//! chooses: the head record's time, or a later instant before the next record.

use writ_schemas::{ClientId, Timestamp, UserId};

use super::State;
use crate::model::{Delegation, Token};

impl Token {
    /// Could act at `at`: live, not expired, and with operations left under its quota.
    pub fn is_usable(&self, at: Timestamp) -> bool {
        self.is_active(at) && !self.exhausted && self.operations_remaining() != Some(0)
    }
}

impl State {
    /// Delegations in force at `at` (not revoked, not lapsed), by id, optionally only
    /// those of one person or to one agent.
    pub fn delegations_in_force<'a>(
        &'a self,
        at: Timestamp,
        user: Option<&'a UserId>,
        agent: Option<&'a ClientId>,
    ) -> impl Iterator<Item = &'a Delegation> + 'a {
        let candidates: Box<dyn Iterator<Item = &'a Delegation> + 'a> = match user {
            Some(user) => Box::new(self.delegations_of_user(user)),
            None => Box::new(self.delegations()),
        };
        candidates
            .filter(move |d| d.is_active(at) && agent.is_none_or(|agent| d.client_id == *agent))
    }

    /// Tokens that could act for `user` at `at` (on their behalf, at any depth of an
    /// agent chain), in issuance order.
    pub fn tokens_acting_for<'a>(
        &'a self,
        user: &UserId,
        at: Timestamp,
    ) -> impl Iterator<Item = &'a Token> + 'a {
        self.tokens_by_user
            .get(user)
            .into_iter()
            .flatten()
            .filter_map(|jti| self.token(jti))
            .filter(move |token| token.is_usable(at))
    }

    /// Tokens an agent held, or acted through in a chain, that could act at `at`, in
    /// issuance order.
    pub fn tokens_usable_by_agent<'a>(
        &'a self,
        agent: &ClientId,
        at: Timestamp,
    ) -> impl Iterator<Item = &'a Token> + 'a {
        self.tokens_by_agent
            .get(agent)
            .into_iter()
            .flatten()
            .filter_map(|jti| self.token(jti))
            .filter(move |token| token.is_usable(at))
    }
}
