//! Queries over MCP servers and session grants: which servers are registered, which grants lend a session to an agent for a server,
//! and whose session a call through the agent would use.

use writ_schemas::{ClientId, ServerId, UserId};

use super::State;
use writ_schemas::{
    ConnectionDeleted, ConnectionEstablished, ConnectionRefreshed, ConnectionRewrapped,
    RevocationOutcome, ServerAuth, ServerSecretRewrapped, Timestamp, UpstreamRevocationCompleted,
    UpstreamTokenKind,
};

use crate::model::{
    Connection, ConnectionStatus, PendingRevocation, PendingToken, Server, SessionGrant,
    UPSTREAM_REVOCATION_ATTEMPTS_MAX,
};

impl State {
    /// A registered MCP server.
    pub fn server(&self, id: &ServerId) -> Option<&Server> {
        self.servers.get(id)
    }

    /// The person's connection to the server, in whatever state it is.
    pub fn connection(&self, user_id: &UserId, server_id: &ServerId) -> Option<&Connection> {
        self.connections.get(&(user_id.clone(), server_id.clone()))
    }

    /// Every connection of the person's.
    pub fn connections_of_user<'s>(
        &'s self,
        user_id: &'s UserId,
    ) -> impl Iterator<Item = &'s Connection> {
        self.connections
            .range((user_id.clone(), ServerId(String::new()))..)
            .take_while(move |((user, _), _)| user == user_id)
            .map(|(_, connection)| connection)
    }

    /// Every held connection with a refresh token whose access token expires before
    /// `before`: the background refresh's work.
    pub fn connections_expiring(&self, before: Timestamp) -> impl Iterator<Item = &Connection> {
        self.connections.values().filter(move |c| {
            c.is_held() && c.refresh_token.is_some() && c.expires_at.is_some_and(|end| end < before)
        })
    }

    pub(super) fn connection_established(&mut self, e: &ConnectionEstablished, at: Timestamp) {
        let key = (e.user_id.clone(), e.server_id.clone());
        let generation = self.connections.get(&key).map_or(0, |c| c.generation) + 1;
        self.connections.insert(
            key,
            Connection {
                user_id: e.user_id.clone(),
                server_id: e.server_id.clone(),
                access_token: e.access_token.clone(),
                refresh_token: e.refresh_token.clone(),
                expires_at: e.expires_at,
                scopes: e.scopes.clone(),
                generation,
                established_at: at,
                refreshed_at: None,
                refresh_failures: 0,
                status: ConnectionStatus::Active,
            },
        );
    }

    pub(super) fn connection_refreshed(&mut self, e: &ConnectionRefreshed, at: Timestamp) {
        if let Some(c) = self
            .connections
            .get_mut(&(e.user_id.clone(), e.server_id.clone()))
        {
            c.generation += 1;
            c.access_token = e.access_token.clone();
            if let Some(refresh) = &e.refresh_token {
                c.refresh_token = Some(refresh.clone());
            }
            c.expires_at = e.expires_at;
            c.refreshed_at = Some(at);
            c.refresh_failures = 0;
        }
    }

    /// A connection ends: its tokens are forgotten for use, and kept to be revoked at the
    /// provider.
    pub(super) fn connection_deleted(&mut self, e: &ConnectionDeleted, at: Timestamp) {
        let Some(c) = self
            .connections
            .get_mut(&(e.user_id.clone(), e.server_id.clone()))
        else {
            return;
        };
        if c.status == ConnectionStatus::Deleted {
            return;
        }
        c.status = ConnectionStatus::Deleted;
        let pending = |token: &writ_schemas::Wrapped| PendingToken {
            token: token.clone(),
            attempts: 0,
            last_attempt_at: None,
        };
        let revocation = PendingRevocation {
            user_id: c.user_id.clone(),
            server_id: c.server_id.clone(),
            generation: c.generation,
            ended_at: at,
            access_token: Some(pending(&c.access_token)),
            refresh_token: c.refresh_token.as_ref().map(pending),
        };
        self.upstream_revocations.insert(
            (c.user_id.clone(), c.server_id.clone(), c.generation),
            revocation,
        );
    }

    /// A revocation's outcome: the token is done with when revoked, not revocable, or out
    /// of attempts; the entry goes when both tokens are.
    pub(super) fn upstream_revocation_completed(
        &mut self,
        e: &UpstreamRevocationCompleted,
        at: Timestamp,
    ) {
        let key = (e.user_id.clone(), e.server_id.clone(), e.generation);
        let Some(revocation) = self.upstream_revocations.get_mut(&key) else {
            return;
        };
        let slot = match e.token {
            UpstreamTokenKind::AccessToken => &mut revocation.access_token,
            UpstreamTokenKind::RefreshToken => &mut revocation.refresh_token,
        };
        let done = match (&e.outcome, slot.as_mut()) {
            (_, None) => false,
            (RevocationOutcome::Failed { .. }, Some(token)) => {
                token.attempts = token.attempts.max(e.attempt);
                token.last_attempt_at = Some(at);
                token.attempts >= UPSTREAM_REVOCATION_ATTEMPTS_MAX
            }
            (RevocationOutcome::Revoked | RevocationOutcome::NotRevocable { .. }, Some(_)) => true,
        };
        if done {
            *slot = None;
        }
        if revocation.access_token.is_none() && revocation.refresh_token.is_none() {
            self.upstream_revocations.remove(&key);
        }
    }

    /// Ended connections' upstream tokens still to revoke (each with attempts left).
    pub fn upstream_revocations(&self) -> impl Iterator<Item = &PendingRevocation> {
        self.upstream_revocations.values()
    }

    /// The pending revocation of the person's connection to the server at `generation`.
    pub fn upstream_revocation(
        &self,
        user_id: &UserId,
        server_id: &ServerId,
        generation: u64,
    ) -> Option<&PendingRevocation> {
        self.upstream_revocations
            .get(&(user_id.clone(), server_id.clone(), generation))
    }

    /// An approval of a critical tool call.
    pub fn approval(&self, approval_id: &str) -> Option<&crate::model::Approval> {
        self.approvals.get(approval_id)
    }

    /// Every approval the person may decide, oldest first.
    pub fn approvals_for_approver<'s>(
        &'s self,
        approver: &UserId,
    ) -> impl Iterator<Item = &'s crate::model::Approval> {
        self.approvals_by_approver
            .get(approver)
            .into_iter()
            .flatten()
            .filter_map(|id| self.approvals.get(id))
    }

    /// Every approval, by id.
    pub fn approvals(&self) -> impl Iterator<Item = &crate::model::Approval> {
        self.approvals.values()
    }

    /// Every connection, in whatever state it is, by person then server.
    pub fn connections(&self) -> impl Iterator<Item = &Connection> {
        self.connections.values()
    }

    /// A re-wrap replaces the ciphertext only: the tokens, their expiry and the generation
    /// are what they were.
    pub(super) fn connection_rewrapped(&mut self, e: &ConnectionRewrapped) {
        if let Some(c) = self
            .connections
            .get_mut(&(e.user_id.clone(), e.server_id.clone()))
        {
            c.access_token = e.access_token.clone();
            c.refresh_token = e.refresh_token.clone();
        }
    }

    pub(super) fn server_secret_rewrapped(&mut self, e: &ServerSecretRewrapped) {
        if let Some(ServerAuth::Oauth(oauth)) = self
            .servers
            .get_mut(&e.server_id)
            .map(|server| &mut server.auth)
        {
            oauth.client_secret = Some(e.client_secret.clone());
        }
    }

    /// Every registered MCP server, by id.
    pub fn servers(&self) -> impl Iterator<Item = &Server> {
        self.servers.values()
    }

    /// Every session grant for the agent and server, revoked ones included, oldest first.
    pub fn session_grants_for(
        &self,
        client_id: &ClientId,
        server_id: &ServerId,
    ) -> impl Iterator<Item = &SessionGrant> {
        self.session_grants_by_route
            .get(&(client_id.clone(), server_id.clone()))
            .into_iter()
            .flatten()
            .filter_map(|id| self.session_grants.get(id))
    }

    /// Every session grant to the agent, for any server, revoked ones included.
    pub fn session_grants_of_agent(
        &self,
        client_id: &ClientId,
    ) -> impl Iterator<Item = &SessionGrant> {
        self.session_grants_by_route
            .iter()
            .filter(move |((agent, _), _)| agent == client_id)
            .flat_map(|(_, ids)| ids)
            .filter_map(|id| self.session_grants.get(id))
    }

    /// The person's own unrevoked grant of their session to the agent for the server.
    pub fn own_session_grant(
        &self,
        client_id: &ClientId,
        server_id: &ServerId,
        user_id: &UserId,
    ) -> Option<&SessionGrant> {
        self.session_grants_for(client_id, server_id)
            .find(|grant| grant.revoked_at.is_none() && grant.user_id == *user_id)
    }

    /// The unrevoked shared grant for the agent and server (at most one exists).
    pub fn shared_session_grant(
        &self,
        client_id: &ClientId,
        server_id: &ServerId,
    ) -> Option<&SessionGrant> {
        self.session_grants_for(client_id, server_id)
            .find(|grant| grant.revoked_at.is_none() && grant.shared)
    }
}

impl State {
    /// Every session grant of the person's, revoked ones included.
    pub fn session_grants_of_user<'s>(
        &'s self,
        user_id: &'s UserId,
    ) -> impl Iterator<Item = &'s SessionGrant> {
        self.session_grants
            .values()
            .filter(move |grant| grant.user_id == *user_id)
    }
}
