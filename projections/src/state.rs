//! `State`: every read model the sequencer validates against and readers query, as one
//! deterministic fold over the ledger.
//!
//! Architecture Invariant: `apply` reads nothing but the record and the state: no clock,
//! no randomness, no environment, no hash-ordered containers. That is what makes two
//! replays produce byte-identical snapshots. Queries that depend on time take `now`.
//! The token maps, which grow with every issuance and are read on every hot-path call,
//! are `IndexMap`s: looked up by hash, but ordered by insertion, so still deterministic.

use std::collections::BTreeMap;

use indexmap::IndexMap;

use serde::{Deserialize, Serialize};
use writ_schemas::{
    ApiKeyId, ClientId, DelegationId, Digest, Event, FamilyId, GrantId, Jti, RefreshId, Sealed,
    ServerId, Timestamp, UserId,
};

use crate::model::*;

mod moment;
mod policy;
mod queries;
mod session_grants;
mod summary;
pub use policy::PolicySetRecord;
pub use queries::CASCADE_TOKENS_MAX;
pub use summary::{AgentCounts, Summary, TokenCounts};

/// All read models, at one point of the ledger.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct State {
    head: Head,
    agents: BTreeMap<ClientId, Agent>,
    users: BTreeMap<UserId, User>,
    /// Emails recorded in the clear (before sealing existed), lowercased.
    users_by_email: BTreeMap<String, UserId>,
    /// Keyed hashes of sealed emails.
    users_by_email_hash: BTreeMap<Digest, UserId>,
    /// Keyed hashes of emails' TR39 skeletons (registrations that recorded one).
    users_by_email_skeleton: BTreeMap<Digest, UserId>,
    api_keys: BTreeMap<ApiKeyId, ApiKey>,
    api_keys_by_hash: BTreeMap<Digest, ApiKeyId>,
    api_keys_by_user: BTreeMap<UserId, Vec<ApiKeyId>>,
    delegations: BTreeMap<DelegationId, Delegation>,
    delegations_by_user: BTreeMap<UserId, Vec<DelegationId>>,
    servers: BTreeMap<ServerId, Server>,
    connections: BTreeMap<(UserId, ServerId), Connection>,
    /// Ended connections' upstream tokens still to revoke, by person, server and the
    /// connection's generation (a person may connect again before the old tokens are
    /// revoked).
    upstream_revocations: BTreeMap<(UserId, ServerId, u64), PendingRevocation>,
    session_grants: BTreeMap<GrantId, SessionGrant>,
    /// Session grants by the agent and server they lend a session to, oldest first.
    session_grants_by_route: BTreeMap<(ClientId, ServerId), Vec<GrantId>>,
    /// Every token ever issued, in issuance order. Never shrinks: `tokens_by_digest`
    /// holds positions in it. Boxed, so that when the map outgrows its storage it moves
    /// pointers, not whole tokens: moving a million ~1 KB tokens held the sequencer
    /// (and the readers' write lock) for the better part of a second.
    tokens: IndexMap<Jti, Box<Token>>,
    tokens_by_digest: IndexMap<Digest, usize>,
    tokens_by_delegation: BTreeMap<DelegationId, Vec<Jti>>,
    tokens_by_user: BTreeMap<UserId, Vec<Jti>>,
    tokens_by_agent: BTreeMap<ClientId, Vec<Jti>>,
    refresh_tokens: BTreeMap<RefreshId, RefreshToken>,
    refresh_by_digest: BTreeMap<Digest, RefreshId>,
    families: BTreeMap<FamilyId, Family>,
    signing_keys: Vec<SigningKey>,
    checkpoint_keys: Vec<CheckpointKey>,
    /// Admin credentials not revoked, by keyed hash (a revocation removes one).
    admin_tokens: BTreeMap<Digest, AdminCredential>,
    #[serde(default)]
    agent_policy_sets: BTreeMap<ClientId, PolicySetRecord>,
    #[serde(default)]
    user_policy_sets: BTreeMap<UserId, PolicySetRecord>,
    approvals: BTreeMap<String, Approval>,
    codes: BTreeMap<String, AuthorizationCode>,
    codes_by_digest: BTreeMap<Digest, String>,
    /// Approvals by the person who may decide them, oldest first.
    approvals_by_approver: BTreeMap<UserId, Vec<String>>,
    /// Client assertions spent, by client and `jti`, with their `exp`. Kept for good,
    /// like the tokens they were spent on: at most one entry per token, and a set that
    /// never forgets needs no rule for when forgetting is safe.
    client_assertions: BTreeMap<(ClientId, String), Timestamp>,
}

impl State {
    /// The empty state, before record 1.
    pub fn new() -> State {
        State::default()
    }

    /// The record this state reflects.
    pub fn head(&self) -> Head {
        self.head
    }

    /// Folds one record in. `event` is the record's decoded event.
    ///
    /// Records must come in ledger order; an event that names an unknown id changes
    /// nothing (the sequencer never writes one; an auditor's replay must not crash on one).
    pub fn apply(&mut self, head: Head, event: &Event) {
        assert!(
            head.seq == self.head.seq + 1,
            "records folded out of order: seq {} after {}",
            head.seq,
            self.head.seq
        );
        self.head = head;
        let at = head
            .ts
            .unwrap_or_else(|| Timestamp::from_unix_micros(0).unwrap_or_else(|| unreachable!()));
        match event {
            Event::AgentRegistered(e) => self.agent_registered(e, at),
            Event::AgentIdentitySet(e) => {
                if let Some(agent) = self.agents.get_mut(&e.client_id) {
                    agent.owner.clone_from(&e.owner);
                    agent.expires_at = e.expires_at;
                }
            }
            Event::AgentSecretRotated(e) => {
                if let Some(agent) = self.agents.get_mut(&e.client_id) {
                    let until = match agent.secret_expires_at {
                        Some(expiry) => e.previous_valid_until.min(expiry),
                        None => e.previous_valid_until,
                    };
                    agent.previous_secret = agent.secret_hash.map(|old| (old, until));
                    agent.secret_hash = Some(e.secret_hash);
                    agent.secret_expires_at = e.secret_expires_at;
                }
            }
            Event::AgentDisabled(e) => self.with_agent(&e.client_id, |agent| agent.enabled = false),
            Event::AgentEnabled(e) => self.with_agent(&e.client_id, |agent| agent.enabled = true),
            Event::AgentReviewed(e) => self.with_agent(&e.client_id, |agent| {
                agent.reviewed_at = Some(at);
                agent.open_anomalies = 0;
            }),
            Event::PolicySetAssigned(e) => self.apply_policy_set(e),
            Event::AgentPolicySet(e) => self.with_agent(&e.client_id, |agent| {
                agent.ceilings = Ceilings {
                    max_ttl_seconds: e.max_ttl_seconds,
                    allowed_scopes: e.allowed_scopes.clone(),
                    allowed_audiences: e.allowed_audiences.clone(),
                    max_delegation_depth: e.max_delegation_depth,
                    token_requests_per_minute: e.token_requests_per_minute,
                    max_operations: e.max_operations,
                }
            }),
            Event::UserRegistered(e) => self.user_registered(e, at),
            Event::UserDeactivated(e) => self.with_user(&e.user_id, |user| user.active = false),
            Event::UserReactivated(e) => self.with_user(&e.user_id, |user| user.active = true),
            Event::UserErased(e) => self.user_erased(&e.user_id),
            Event::ApiKeyIssued(e) => {
                self.api_keys_by_hash.insert(e.key_hash, e.key_id.clone());
                self.api_keys_by_user
                    .entry(e.user_id.clone())
                    .or_default()
                    .push(e.key_id.clone());
                self.api_keys.insert(
                    e.key_id.clone(),
                    ApiKey {
                        key_id: e.key_id.clone(),
                        user_id: e.user_id.clone(),
                        key_hash: e.key_hash,
                        issued_at: at,
                        revoked_at: None,
                    },
                );
            }
            Event::ApiKeyRevoked(e) => {
                if let Some(key) = self.api_keys.get_mut(&e.key_id) {
                    key.revoked_at.get_or_insert(at);
                }
            }
            Event::DelegationGranted(e) => {
                let delegation = Delegation {
                    delegation_id: e.delegation_id.clone(),
                    user_id: e.user_id.clone(),
                    client_id: e.client_id.clone(),
                    scopes: e.scopes.clone(),
                    expires_at: e.expires_at,
                    granted_at: at,
                    revoked_at: None,
                    last_used_at: None,
                };
                self.delegations_by_user
                    .entry(e.user_id.clone())
                    .or_default()
                    .push(e.delegation_id.clone());
                self.delegations.insert(e.delegation_id.clone(), delegation);
            }
            Event::DelegationRevoked(e) => {
                if let Some(delegation) = self.delegations.get_mut(&e.delegation_id) {
                    delegation.revoked_at.get_or_insert(at);
                }
            }
            Event::ServerRegistered(e) => {
                self.servers
                    .entry(e.server_id.clone())
                    .or_insert_with(|| Server {
                        server_id: e.server_id.clone(),
                        name: e.name.clone(),
                        url: e.url.clone(),
                        auth: e.auth.clone(),
                        registered_at: at,
                    });
            }
            Event::ConnectionEstablished(e) => self.connection_established(e, at),
            Event::ConnectionRefreshed(e) => self.connection_refreshed(e, at),
            Event::ServerSecretRewrapped(e) => self.server_secret_rewrapped(e),
            Event::ConnectionRewrapped(e) => self.connection_rewrapped(e),
            Event::ConnectionRefreshFailed(e) => {
                if let Some(c) = self
                    .connections
                    .get_mut(&(e.user_id.clone(), e.server_id.clone()))
                {
                    c.refresh_failures += 1;
                    if e.broken {
                        c.status = ConnectionStatus::Broken;
                    }
                }
            }
            Event::ConnectionDeleted(e) => self.connection_deleted(e, at),
            Event::UpstreamRevocationCompleted(e) => self.upstream_revocation_completed(e, at),
            Event::SessionGrantCreated(e) => {
                let grant = SessionGrant {
                    grant_id: e.grant_id.clone(),
                    client_id: e.client_id.clone(),
                    server_id: e.server_id.clone(),
                    user_id: e.user_id.clone(),
                    shared: e.shared,
                    created_at: at,
                    revoked_at: None,
                };
                self.session_grants_by_route
                    .entry((e.client_id.clone(), e.server_id.clone()))
                    .or_default()
                    .push(e.grant_id.clone());
                self.session_grants.insert(e.grant_id.clone(), grant);
            }
            Event::SessionGrantToggled(e) => {
                if let Some(grant) = self.session_grants.get_mut(&e.grant_id) {
                    grant.shared = e.shared;
                }
            }
            Event::SessionGrantRevoked(e) => {
                if let Some(grant) = self.session_grants.get_mut(&e.grant_id) {
                    grant.revoked_at.get_or_insert(at);
                }
            }
            Event::TokenIssued(e) => self.token_issued(e, at),
            Event::TokenRevoked(e) => {
                if let Some(token) = self.tokens.get_mut(&e.jti)
                    && matches!(token.status, TokenStatus::Live)
                {
                    token.status = TokenStatus::Revoked {
                        cause: e.cause.clone(),
                        at,
                    };
                }
            }
            Event::TokenExhausted(e) => {
                if let Some(token) = self.tokens.get_mut(&e.jti) {
                    token.exhausted = true;
                }
            }
            Event::OperationRecorded(e) => self.operation_recorded(e, at),
            // The operation it counted was folded by its OperationRecorded.
            Event::ToolCallCompleted(_) => {}
            Event::UserPasswordSet(e) => self.with_user(&e.user_id, |user| {
                user.password_hash = Some(e.password_hash.clone());
            }),
            Event::SessionEnded(e) => self.with_user(&e.user_id, |user| {
                // Lapsed ones go first: the record's time decides, so replays agree.
                user.sessions_ended.retain(|_, expires_at| *expires_at > at);
                user.sessions_ended
                    .insert(e.session_id.clone(), e.expires_at);
            }),
            Event::SessionsEnded(e) => self.with_user(&e.user_id, |user| {
                user.session_generation = e.generation;
                user.sessions_ended.clear();
            }),
            Event::SignInFailuresDetected(e) => self.with_user(&e.user_id, |user| {
                user.sign_in_anomalies = user.sign_in_anomalies.saturating_add(1);
                user.sign_in_anomaly_last_at = Some(e.first_failure_at);
            }),
            Event::AuthorizationCodeIssued(e) => {
                self.codes_by_digest.insert(e.digest, e.code_id.clone());
                self.codes.insert(
                    e.code_id.clone(),
                    AuthorizationCode {
                        issued: e.clone(),
                        redeemed: None,
                        replayed: false,
                    },
                );
            }
            Event::AuthorizationCodeRedeemed(e) => {
                if let Some(code) = self.codes.get_mut(&e.code_id) {
                    code.redeemed = Some(e.jti.clone());
                }
            }
            Event::AuthorizationCodeReplayed(e) => {
                let family = self
                    .codes
                    .get_mut(&e.code_id)
                    .and_then(|code| {
                        code.replayed = true;
                        code.redeemed.clone()
                    })
                    .and_then(|jti| self.tokens.get(&jti))
                    .and_then(|token| token.family_id.clone());
                if let Some(family) = family {
                    self.families.entry(family).or_default().reuse_detected = true;
                }
                self.with_agent(&e.client_id, |agent| agent.open_anomalies += 1);
            }
            Event::ApprovalRequested(e) => {
                self.approvals_by_approver
                    .entry(e.approver.clone())
                    .or_default()
                    .push(e.approval_id.clone());
                self.approvals.insert(
                    e.approval_id.clone(),
                    Approval {
                        request: e.clone(),
                        requested_at: at,
                        status: ApprovalStatus::Pending,
                    },
                );
            }
            Event::ApprovalDecided(e) => {
                if let Some(approval) = self.approvals.get_mut(&e.approval_id) {
                    approval.status = match e.decision {
                        writ_schemas::ApprovalDecision::Approved => ApprovalStatus::Approved { at },
                        writ_schemas::ApprovalDecision::Denied => ApprovalStatus::Denied { at },
                    };
                }
            }
            Event::ApprovalUsed(e) => {
                if let Some(approval) = self.approvals.get_mut(&e.approval_id) {
                    approval.status = ApprovalStatus::Used {
                        at,
                        jti: e.jti.clone(),
                    };
                }
            }
            Event::RefreshTokenIssued(e) => self.refresh_issued(e),
            Event::RefreshTokenRotated(e) => {
                if let Some(refresh) = self.refresh_tokens.get_mut(&e.refresh_id) {
                    refresh.replaced_by = Some(e.replaced_by.clone());
                }
            }
            Event::RefreshTokenReuseDetected(e) => {
                self.families
                    .entry(e.family_id.clone())
                    .or_default()
                    .reuse_detected = true;
                self.with_agent(&e.client_id, |agent| agent.open_anomalies += 1);
            }
            Event::RefreshTokenRevoked(e) => {
                self.families
                    .entry(e.family_id.clone())
                    .or_default()
                    .revoked = true;
            }
            Event::AdminTokenIssued(e) => self.admin_token_issued(e, at),
            Event::AdminTokenRevoked(e) => {
                self.admin_tokens
                    .retain(|_, credential| credential.token_id != e.token_id);
            }
            Event::CheckpointKeyPublished(e) => self.checkpoint_keys.push(CheckpointKey {
                name: e.name.clone(),
                public_key: e.public_key.clone(),
                published_at: at,
            }),
            Event::SigningKeyRotated(e) => self.signing_keys.push(SigningKey {
                kid: e.kid.clone(),
                alg: e.alg,
                public_key: e.public_key.clone(),
                jwk: e.jwk.clone(),
                activated_at: at,
            }),
        }
    }

    fn with_agent(&mut self, client_id: &ClientId, change: impl FnOnce(&mut Agent)) {
        if let Some(agent) = self.agents.get_mut(client_id) {
            change(agent);
        }
    }

    fn with_user(&mut self, user_id: &UserId, change: impl FnOnce(&mut User)) {
        if let Some(user) = self.users.get_mut(user_id) {
            change(user);
        }
    }

    fn admin_token_issued(&mut self, e: &writ_schemas::AdminTokenIssued, at: Timestamp) {
        // Records from before credentials had names: the ledger's first is `initial`,
        // any later one goes by its id. The first is the one issued into an empty map, as
        // a revocation never takes the last admin credential.
        let name = match &e.name {
            Some(name) => name.clone(),
            None if self.admin_tokens.is_empty() => "initial".to_owned(),
            None => e.token_id.clone(),
        };
        let credential = AdminCredential {
            token_id: e.token_id.clone(),
            name,
            role: e.role.unwrap_or(writ_schemas::AdminRole::Admin),
            created_at: at,
            expires_at: e.expires_at,
        };
        self.admin_tokens.insert(e.token_hash, credential);
    }

    fn agent_registered(&mut self, e: &writ_schemas::AgentRegistered, at: Timestamp) {
        let agent = Agent {
            client_id: e.client_id.clone(),
            name: e.name.clone(),
            owner: e.owner.clone(),
            scopes: e.scopes.clone(),
            grant_types: e.grant_types.clone(),
            redirect_uris: e.redirect_uris.clone(),
            token_endpoint_auth_method: e.token_endpoint_auth_method.clone(),
            secret_hash: e.secret_hash,
            secret_expires_at: e.secret_expires_at,
            previous_secret: None,
            jwks: e
                .jwks
                .as_ref()
                .and_then(|set| serde_json::to_string(set).ok()),
            require_consent: e.require_consent,
            agent_type: e.agent_type,
            expires_at: e.expires_at,
            registered_at: at,
            last_used_at: None,
            enabled: true,
            reviewed_at: None,
            open_anomalies: 0,
            ceilings: Ceilings::default(),
        };
        self.agents.insert(e.client_id.clone(), agent);
    }

    fn user_registered(&mut self, e: &writ_schemas::UserRegistered, at: Timestamp) {
        if let Some(email) = &e.email {
            self.users_by_email
                .insert(email.to_ascii_lowercase(), e.user_id.clone());
        }
        if let Some(hash) = e.email_hash {
            self.users_by_email_hash.insert(hash, e.user_id.clone());
        }
        if let Some(hash) = e.email_skeleton_hash {
            self.users_by_email_skeleton.insert(hash, e.user_id.clone());
        }
        let email = match (&e.email, &e.email_sealed) {
            (_, Some(sealed)) => Personal::Sealed(sealed.clone()),
            (Some(email), None) => Personal::Clear(email.clone()),
            // Decoding refuses a record with neither.
            (None, None) => Personal::Erased,
        };
        let name = match (&e.name, &e.name_sealed) {
            (_, Some(sealed)) => Some(Personal::Sealed(sealed.clone())),
            (Some(name), None) => Some(Personal::Clear(name.clone())),
            (None, None) => None,
        };
        let user = User {
            user_id: e.user_id.clone(),
            email,
            name,
            active: true,
            erased: false,
            registered_at: at,
            password_hash: None,
            session_generation: 0,
            sessions_ended: BTreeMap::new(),
            sign_in_anomalies: 0,
            sign_in_anomaly_last_at: None,
        };
        self.users.insert(e.user_id.clone(), user);
    }

    /// Forgets what the state keeps of an erased person's data (a clear email from an old
    /// record included), frees their email for someone else, and marks what their tokens
    /// said of their intent erased: snapshots taken from now on hold none of it.
    fn user_erased(&mut self, user_id: &UserId) {
        let Some(user) = self.users.get_mut(user_id) else {
            return;
        };
        user.erased = true;
        user.active = false;
        user.email = Personal::Erased;
        if user.name.is_some() {
            user.name = Some(Personal::Erased);
        }
        self.users_by_email.retain(|_, id| id != user_id);
        self.users_by_email_hash.retain(|_, id| id != user_id);
        self.users_by_email_skeleton.retain(|_, id| id != user_id);
        for jti in self.tokens_by_user.get(user_id).into_iter().flatten() {
            if let Some(token) = self.tokens.get_mut(jti)
                && token.intent_description.is_some()
            {
                token.intent_description = Some(Personal::Erased);
            }
        }
    }

    fn token_issued(&mut self, e: &writ_schemas::TokenIssued, at: Timestamp) {
        let jti = e.jti.clone();
        if let Some(assertion) = &e.client_assertion {
            self.client_assertions.insert(
                (e.client_id.clone(), assertion.jti.clone()),
                assertion.expires_at,
            );
        }
        if let Some(parent) = e.parent_jti.as_ref().and_then(|p| self.tokens.get_mut(p)) {
            parent.children.push(jti.clone());
        }
        if let Some(delegation_id) = &e.delegation_id {
            push_keyed(&mut self.tokens_by_delegation, delegation_id, jti.clone());
            if let Some(delegation) = self.delegations.get_mut(delegation_id) {
                delegation.last_used_at = Some(at);
            }
        }
        if let Some(user_id) = &e.user_id {
            push_keyed(&mut self.tokens_by_user, user_id, jti.clone());
        }
        if let Some(family_id) = &e.family_id {
            self.families
                .entry(family_id.clone())
                .or_default()
                .access_jtis
                .push(jti.clone());
        }
        // Every agent in the chain acted, so each one's token list (for cascades on
        // disable) and last use include it.
        let holders =
            std::iter::once(&e.client_id).chain(e.actors.iter().filter(|a| **a != e.client_id));
        for holder in holders {
            self.with_agent(holder, |agent| agent.last_used_at = Some(at));
            push_keyed(&mut self.tokens_by_agent, holder, jti.clone());
        }
        let token = Token {
            jti: jti.clone(),
            digest: e.digest,
            kid: e.kid.clone(),
            grant_type: e.grant_type.clone(),
            client_id: e.client_id.clone(),
            subject: e.subject.clone(),
            user_id: e.user_id.clone(),
            actors: e.actors.clone(),
            delegation_id: e.delegation_id.clone(),
            parent_jti: e.parent_jti.clone(),
            children: Vec::new(),
            family_id: e.family_id.clone(),
            audience: e.audience.clone(),
            scopes: e.scopes.clone(),
            issued_at: e.issued_at,
            expires_at: e.expires_at,
            agent_type: e.agent_type,
            task_id: e.task_id.clone(),
            max_operations: e.max_operations,
            operations_used: 0,
            expires_on_completion: e.expires_on_completion,
            intent_description: match (&e.intent_description, &e.intent_sealed) {
                (_, Some(sealed)) => Some(Personal::Sealed(Sealed::clone(sealed))),
                (Some(intent), None) => Some(Personal::Clear(intent.clone())),
                (None, None) => None,
            },
            status: TokenStatus::Live,
            exhausted: false,
            idempotency: BTreeMap::new(),
        };
        let (at, _) = self.tokens.insert_full(jti, Box::new(token));
        self.tokens_by_digest.insert(e.digest, at);
    }

    fn operation_recorded(&mut self, e: &writ_schemas::OperationRecorded, at: Timestamp) {
        let Some(token) = self.tokens.get_mut(&e.jti) else {
            return;
        };
        token.operations_used += 1;
        if let Some(key) = &e.idempotency_key {
            let remaining = token.operations_remaining();
            token
                .idempotency
                .entry(IdempotencyKey::of(key))
                .or_insert(remaining);
        }
        if let Some(agent) = self.agents.get_mut(&token.client_id) {
            agent.last_used_at = Some(at);
        }
    }

    fn refresh_issued(&mut self, e: &writ_schemas::RefreshTokenIssued) {
        self.refresh_by_digest
            .insert(e.digest, e.refresh_id.clone());
        self.families
            .entry(e.family_id.clone())
            .or_default()
            .refresh_ids
            .push(e.refresh_id.clone());
        let refresh = RefreshToken {
            refresh_id: e.refresh_id.clone(),
            digest: e.digest,
            family_id: e.family_id.clone(),
            client_id: e.client_id.clone(),
            user_id: e.user_id.clone(),
            scopes: e.scopes.clone(),
            expires_at: e.expires_at,
            access_jti: e.access_jti.clone(),
            replaced_by: None,
        };
        self.refresh_tokens.insert(e.refresh_id.clone(), refresh);
    }
}

/// Appends `item` to `key`'s list, cloning the key only the first time it is seen (these
/// lists grow on every issuance).
fn push_keyed<K: Ord + Clone, T>(lists: &mut BTreeMap<K, Vec<T>>, key: &K, item: T) {
    match lists.get_mut(key) {
        Some(list) => list.push(item),
        None => {
            lists.insert(key.clone(), vec![item]);
        }
    }
}
