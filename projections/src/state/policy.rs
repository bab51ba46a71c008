//! Cedar policy sets, per agent and per person, as written (the text; writ parses it
//! where it evaluates it, keyed by the digest of the text).

use serde::{Deserialize, Serialize};
use writ_schemas::{ClientId, Digest, PolicySetAssigned, PolicySubject, UserId};

use super::State;

/// A policy set in force: its Cedar text and that text's digest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicySetRecord {
    /// The policies, in the Cedar language.
    pub policies: String,
    /// BLAKE3 of the policies' text, taken once here: the key under which the serving
    /// side keeps the parsed set, so a tool call does not hash the text again.
    pub digest: Digest,
}

impl State {
    pub(super) fn apply_policy_set(&mut self, e: &PolicySetAssigned) {
        let record = PolicySetRecord {
            policies: e.policies.clone(),
            digest: Digest::of(e.policies.as_bytes()),
        };
        match &e.subject {
            PolicySubject::Agent { client_id } => {
                if self.agents.contains_key(client_id) {
                    self.agent_policy_sets.insert(client_id.clone(), record);
                }
            }
            PolicySubject::User { user_id } => {
                if self.users.contains_key(user_id) {
                    self.user_policy_sets.insert(user_id.clone(), record);
                }
            }
        }
    }

    /// The agent's Cedar policy set, if one was ever set.
    pub fn agent_policy_set(&self, client_id: &ClientId) -> Option<&PolicySetRecord> {
        self.agent_policy_sets.get(client_id)
    }

    /// The person's Cedar policy set, if one was ever set.
    pub fn user_policy_set(&self, user_id: &UserId) -> Option<&PolicySetRecord> {
        self.user_policy_sets.get(user_id)
    }
}
