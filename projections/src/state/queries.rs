//! Questions the state answers: lookups by id and digest, statuses at an instant, and the
//! lineage a cascade revocation walks.

use std::collections::BTreeSet;

use writ_schemas::{
    ApiKeyId, ClientId, DelegationId, Digest, FamilyId, GrantId, Jti, RefreshId, Timestamp, UserId,
};

use super::State;
use crate::model::*;

/// Tokens a cascade may walk in one command; a larger tree is refused rather than
/// half-revoked (see the sequencer).
pub const CASCADE_TOKENS_MAX: usize = 1_000_000;

impl State {
    /// An agent by client id.
    pub fn agent(&self, client_id: &ClientId) -> Option<&Agent> {
        self.agents.get(client_id)
    }

    /// Every agent, by client id.
    pub fn agents(&self) -> impl Iterator<Item = &Agent> {
        self.agents.values()
    }

    /// An agent's status at `now`.
    pub fn agent_status(&self, agent: &Agent, now: Timestamp) -> AgentStatus {
        if !agent.enabled {
            AgentStatus::Disabled
        } else if agent.expires_at.is_some_and(|end| now >= end) {
            AgentStatus::Expired
        } else if agent
            .owner
            .as_ref()
            .and_then(|owner| self.user(owner))
            .is_some_and(|u| !u.active)
        {
            AgentStatus::Orphaned
        } else {
            AgentStatus::Active
        }
    }

    /// A person by id.
    pub fn user(&self, user_id: &UserId) -> Option<&User> {
        self.users.get(user_id)
    }

    /// A person whose email was recorded in the clear (before sealing existed), by email
    /// (case-insensitive). Sealed emails are found by [`State::user_by_email_hash`].
    pub fn user_by_email(&self, email: &str) -> Option<&User> {
        self.users_by_email
            .get(&email.to_ascii_lowercase())
            .and_then(|id| self.user(id))
    }

    /// A person by the keyed hash of their lowercased email (erased people are not found).
    pub fn user_by_email_hash(&self, email_hash: &Digest) -> Option<&User> {
        self.users_by_email_hash
            .get(email_hash)
            .and_then(|id| self.user(id))
    }

    /// The person whose email has this skeleton's keyed hash: one it could be mistaken
    /// for (erased people are not found; people registered before skeletons were
    /// recorded are not either).
    pub fn user_by_email_skeleton(&self, skeleton_hash: &Digest) -> Option<&User> {
        self.users_by_email_skeleton
            .get(skeleton_hash)
            .and_then(|id| self.user(id))
    }

    /// The people whose registration recorded their email's skeleton, by its keyed hash.
    pub fn email_skeletons(&self) -> impl Iterator<Item = (&Digest, &UserId)> {
        self.users_by_email_skeleton.iter()
    }

    /// Every person, by id.
    pub fn users(&self) -> impl Iterator<Item = &User> {
        self.users.values()
    }

    /// An API key by id.
    pub fn api_key(&self, key_id: &ApiKeyId) -> Option<&ApiKey> {
        self.api_keys.get(key_id)
    }

    /// An API key by its keyed hash.
    pub fn api_key_by_hash(&self, key_hash: &Digest) -> Option<&ApiKey> {
        self.api_keys_by_hash
            .get(key_hash)
            .and_then(|id| self.api_key(id))
    }

    /// A person's API keys, revoked or not, oldest first.
    pub fn api_keys_of_user(&self, user_id: &UserId) -> impl Iterator<Item = &ApiKey> {
        self.api_keys_by_user
            .get(user_id)
            .into_iter()
            .flatten()
            .filter_map(|id| self.api_key(id))
    }

    /// The delegations a person granted, in force or not, oldest first.
    pub fn delegations_of_user(&self, user_id: &UserId) -> impl Iterator<Item = &Delegation> {
        self.delegations_by_user
            .get(user_id)
            .into_iter()
            .flatten()
            .filter_map(|id| self.delegation(id))
    }

    /// A delegation by id.
    pub fn delegation(&self, id: &DelegationId) -> Option<&Delegation> {
        self.delegations.get(id)
    }

    /// Every delegation, by id.
    pub fn delegations(&self) -> impl Iterator<Item = &Delegation> {
        self.delegations.values()
    }

    /// A session grant by id.
    pub fn session_grant(&self, id: &GrantId) -> Option<&SessionGrant> {
        self.session_grants.get(id)
    }

    /// A token by `jti`.
    pub fn token(&self, jti: &Jti) -> Option<&Token> {
        self.tokens.get(jti).map(|token| &**token)
    }

    /// Whether `client_id` already spent a client assertion with this `jti`.
    pub fn assertion_used(&self, client_id: &ClientId, jti: &str) -> bool {
        self.client_assertions
            .contains_key(&(client_id.clone(), jti.to_owned()))
    }

    /// A token by the BLAKE3 digest of its bytes: the hot-path lookup.
    pub fn token_by_digest(&self, digest: &Digest) -> Option<&Token> {
        self.tokens_by_digest
            .get(digest)
            .and_then(|at| self.tokens.get_index(*at))
            .map(|(_, token)| &**token)
    }

    /// Number of tokens ever issued.
    pub fn token_count(&self) -> usize {
        self.tokens.len()
    }

    /// A refresh token by id.
    pub fn refresh_token(&self, id: &RefreshId) -> Option<&RefreshToken> {
        self.refresh_tokens.get(id)
    }

    /// A refresh token by the digest of its bytes.
    pub fn refresh_token_by_digest(&self, digest: &Digest) -> Option<&RefreshToken> {
        self.refresh_by_digest
            .get(digest)
            .and_then(|id| self.refresh_token(id))
    }

    /// An authorization code, by id.
    pub fn code(&self, code_id: &str) -> Option<&crate::model::AuthorizationCode> {
        self.codes.get(code_id)
    }

    /// The authorization code whose bytes have this digest.
    pub fn code_by_digest(&self, digest: &Digest) -> Option<&crate::model::AuthorizationCode> {
        self.codes_by_digest
            .get(digest)
            .and_then(|id| self.codes.get(id))
    }

    /// A refresh family.
    pub fn family(&self, id: &FamilyId) -> Option<&Family> {
        self.families.get(id)
    }

    /// The admin credential (not revoked) with this keyed hash, if there is one.
    pub fn admin_token_by_hash(&self, token_hash: &Digest) -> Option<&AdminCredential> {
        self.admin_tokens.get(token_hash)
    }

    /// Number of admin credentials not revoked. Never 0 once the ledger has had one: the
    /// last live `admin` credential cannot be revoked, so this also says whether the
    /// ledger has been started.
    pub fn admin_token_count(&self) -> usize {
        self.admin_tokens.len()
    }

    /// The admin credentials not revoked, by name.
    pub fn admin_credentials(&self) -> Vec<&AdminCredential> {
        let mut credentials: Vec<&AdminCredential> = self.admin_tokens.values().collect();
        credentials.sort_by(|a, b| a.name.cmp(&b.name).then(a.token_id.cmp(&b.token_id)));
        credentials
    }

    /// The admin credential (not revoked) with this id.
    pub fn admin_credential(&self, token_id: &str) -> Option<&AdminCredential> {
        self.admin_tokens
            .values()
            .find(|credential| credential.token_id == token_id)
    }

    /// Signing keys, oldest first.
    pub fn signing_keys(&self) -> &[SigningKey] {
        &self.signing_keys
    }

    /// Checkpoint keys in the order they were published; the last one signs.
    pub fn checkpoint_keys(&self) -> &[CheckpointKey] {
        &self.checkpoint_keys
    }

    /// `jti` and every token derived from it at any depth, roots first, each once.
    pub fn lineage(&self, jti: &Jti) -> Vec<Jti> {
        self.closure(std::iter::once(jti.clone()))
    }

    /// Every token issued under a delegation, and everything derived from them.
    pub fn tokens_under_delegation(&self, id: &DelegationId) -> Vec<Jti> {
        self.closure(
            self.tokens_by_delegation
                .get(id)
                .into_iter()
                .flatten()
                .cloned(),
        )
    }

    /// Every token acting for a person, and everything derived from them.
    pub fn tokens_for_user(&self, id: &UserId) -> Vec<Jti> {
        self.closure(self.tokens_by_user.get(id).into_iter().flatten().cloned())
    }

    /// Every token an agent holds or acted in, and everything derived from them.
    pub fn tokens_of_agent(&self, id: &ClientId) -> Vec<Jti> {
        self.closure(self.tokens_by_agent.get(id).into_iter().flatten().cloned())
    }

    /// Every access token of a refresh family, and everything derived from them.
    pub fn tokens_of_family(&self, id: &FamilyId) -> Vec<Jti> {
        self.closure(
            self.family(id)
                .into_iter()
                .flat_map(|family| family.access_jtis.iter().cloned()),
        )
    }

    fn closure(&self, roots: impl Iterator<Item = Jti>) -> Vec<Jti> {
        let mut seen = BTreeSet::new();
        let mut order = Vec::new();
        let mut stack: Vec<Jti> = roots.collect();
        stack.reverse();
        while let Some(jti) = stack.pop() {
            if order.len() >= CASCADE_TOKENS_MAX || !seen.insert(jti.clone()) {
                continue;
            }
            if let Some(token) = self.token(&jti) {
                stack.extend(token.children.iter().rev().cloned());
                order.push(jti);
            }
        }
        order
    }
}
