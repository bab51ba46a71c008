//! Queries over MCP servers and session grants: which servers are registered, which grants lend a session to an agent for a server,
//! and whose session a call through the agent would use.

use writ_schemas::{ClientId, ServerId, UserId};

use super::State;
use writ_schemas::{
    ConnectionEstablished, ConnectionRefreshed, ConnectionRewrapped, ServerAuth,
    ServerSecretRewrapped, Timestamp,
};

use crate::model::{Connection, ConnectionStatus, Server, SessionGrant};

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
