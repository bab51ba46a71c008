//! Re-wrapping under the current key-encryption key: the second half of a key rotation
//! (`writ admin kek rotate`), after a new key was added to the key file. Every secret the
//! read models still use that is wrapped under an older key (a server's OAuth client
//! secret, a held connection's access and refresh tokens) is opened and wrapped again
//! under the current key, one event each, so that the older key can then be removed.
//!
//! It runs with the server stopped: a node still serving knows only the keys it loaded at
//! start, and could not open what is wrapped under the new one.
//!
//! What it leaves under the older key: the ciphertext in past records (history is never
//! rewritten, and nothing opens it again once a newer record replaced it), and the tokens
//! of broken or deleted connections, which are never used again.

use writ_projections::Connection;
use writ_schemas::{
    ConnectionRewrapped, ServerAuth, ServerId, ServerSecretRewrapped, UserId, Wrapped,
};

use crate::connections::token_context;
use crate::decide::{Command, Refusal};
use crate::http::servers::client_secret_context;
use crate::kek::{KekError, Keks};
use crate::ledger::{Ledger, SubmitError};

/// How often one connection is read and re-wrapped again when a refresh replaced its
/// tokens meanwhile (only another node of a shared ledger could), before giving up.
pub const CONNECTION_ATTEMPTS_MAX: usize = 3;

/// What a re-wrap did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Rewrapped {
    /// Servers' OAuth client secrets re-wrapped.
    pub server_secrets: usize,
    /// Connections whose tokens were re-wrapped.
    pub connections: usize,
    /// Connection tokens re-wrapped (an access token, and a refresh token if held).
    pub connection_tokens: usize,
}

impl Rewrapped {
    /// Every secret re-wrapped.
    pub fn secrets(&self) -> usize {
        self.server_secrets + self.connection_tokens
    }
}

/// Why a re-wrap stopped; what was re-wrapped before stays recorded.
#[derive(Debug, thiserror::Error)]
pub enum RewrapError {
    /// A secret did not open with the key it names.
    #[error("{what} did not open: {source}")]
    Unopenable {
        /// Which secret.
        what: String,
        /// Why.
        source: KekError,
    },
    /// A connection refreshed each time it was about to be recorded.
    #[error(
        "the connection of user {0} to server {1} was refreshed {CONNECTION_ATTEMPTS_MAX} times while it was re-wrapped: stop every node of the ledger and run this again"
    )]
    KeptMoving(UserId, ServerId),
    /// The ledger refused or is unavailable.
    #[error(transparent)]
    Submit(#[from] SubmitError),
}

/// Re-wraps every secret in use that is wrapped under a key other than the current one.
pub fn rewrap_stale(ledger: &Ledger, keks: &Keks) -> Result<Rewrapped, RewrapError> {
    let mut done = Rewrapped::default();
    for (server_id, secret) in stale_server_secrets(ledger, keks) {
        let client_secret = rewrap(keks, &secret, &client_secret_context(&server_id), || {
            format!("the client secret of server {server_id}")
        })?;
        let event = ServerSecretRewrapped {
            server_id,
            client_secret,
        };
        ledger.submit_blocking(Command::RewrapServerSecret(event))?;
        done.server_secrets += 1;
    }
    for (user_id, server_id) in stale_connections(ledger, keks) {
        let tokens = rewrap_connection(ledger, keks, &user_id, &server_id)?;
        if tokens > 0 {
            done.connections += 1;
            done.connection_tokens += tokens;
        }
    }
    debug_assert!(stale_server_secrets(ledger, keks).is_empty());
    debug_assert!(stale_connections(ledger, keks).is_empty());
    Ok(done)
}

fn stale_server_secrets(ledger: &Ledger, keks: &Keks) -> Vec<(ServerId, Wrapped)> {
    ledger.read(|s| {
        s.servers()
            .filter_map(|server| match &server.auth {
                ServerAuth::Oauth(oauth) => oauth
                    .client_secret
                    .as_ref()
                    .filter(|secret| keks.is_stale(secret))
                    .map(|secret| (server.server_id.clone(), secret.clone())),
                ServerAuth::None => None,
            })
            .collect()
    })
}

fn stale_connections(ledger: &Ledger, keks: &Keks) -> Vec<(UserId, ServerId)> {
    ledger.read(|s| {
        s.connections()
            .filter(|c| c.is_held() && kek_ids(c).any(|id| id != keks.current_id()))
            .map(|c| (c.user_id.clone(), c.server_id.clone()))
            .collect()
    })
}

/// Re-wraps one connection's tokens, reading it again if a refresh got there first; how
/// many tokens it re-wrapped (none when it no longer needs it).
fn rewrap_connection(
    ledger: &Ledger,
    keks: &Keks,
    user_id: &UserId,
    server_id: &ServerId,
) -> Result<usize, RewrapError> {
    for _ in 0..CONNECTION_ATTEMPTS_MAX {
        let connection = ledger.read(|s| {
            s.connection(user_id, server_id)
                .filter(|c| c.is_held())
                .cloned()
        });
        let Some(connection) = connection else {
            return Ok(0);
        };
        if kek_ids(&connection).all(|id| id == keks.current_id()) {
            return Ok(0);
        }
        let token = |wrapped: &Wrapped, which: &str| {
            rewrap(
                keks,
                wrapped,
                &token_context(user_id, server_id, which),
                || format!("the {which} of user {user_id} at server {server_id}"),
            )
        };
        let event = ConnectionRewrapped {
            user_id: user_id.clone(),
            server_id: server_id.clone(),
            generation: connection.generation,
            access_token: token(&connection.access_token, "access token")?,
            refresh_token: connection
                .refresh_token
                .as_ref()
                .map(|refresh| token(refresh, "refresh token"))
                .transpose()?,
        };
        let tokens = 1 + usize::from(event.refresh_token.is_some());
        match ledger.submit_blocking(Command::RewrapConnection(event)) {
            Ok(_) => return Ok(tokens),
            Err(SubmitError::Refused(Refusal::ConnectionMovedOn(_))) => continue,
            // Broken or deleted meanwhile: its tokens are not used again.
            Err(SubmitError::Refused(Refusal::UnknownConnection(_))) => return Ok(0),
            Err(err) => return Err(err.into()),
        }
    }
    Err(RewrapError::KeptMoving(user_id.clone(), server_id.clone()))
}

/// The ids of the keys the connection's tokens are wrapped under.
fn kek_ids(connection: &Connection) -> impl Iterator<Item = &str> {
    std::iter::once(&connection.access_token)
        .chain(&connection.refresh_token)
        .map(|wrapped| wrapped.kek_id.as_str())
}

/// Opens `wrapped` and wraps it again under the current key, in the same context.
fn rewrap(
    keks: &Keks,
    wrapped: &Wrapped,
    context: &str,
    what: impl FnOnce() -> String,
) -> Result<Wrapped, RewrapError> {
    let plain = keks
        .unwrap(wrapped, context)
        .map_err(|source| RewrapError::Unopenable {
            what: what(),
            source,
        })?;
    Ok(keks.wrap(&plain, context))
}
