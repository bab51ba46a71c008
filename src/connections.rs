//! People's connections to MCP servers' OAuth providers, at run time: starting the
//! authorization code flow with PKCE (S256), taking the provider's answer at the callback,
//! refreshing tokens (ahead of expiry in the background, or on demand when a call finds
//! one expired), and handing the gateway a usable access token.
//!
//! - The flow's `state` is self-contained: the person, the server, the PKCE verifier and
//!   an expiry, wrapped under the key-encryption key. Nothing waits in memory, so any
//!   node of a ledger takes the callback, and a forged or altered state does not open.
//! - Tokens reach the ledger only wrapped (`kek.rs`); they are unwrapped in memory for
//!   the one request that forwards them, and never logged.
//! - Refreshes of one connection take turns (a lock per connection), because a provider
//!   that rotates refresh tokens rejects the second of two concurrent refreshes; each
//!   records the generation it refreshed, so the ledger refuses one decided on a stale
//!   connection (another node got there first) and the caller then uses the newer token.
//! - A provider that rejects the refresh token (`invalid_grant`) breaks the connection:
//!   recorded once, and never tried again until the person connects anew.
//! - A connection that ends has its tokens revoked at the provider (RFC 7009) by a
//!   background task, after the ending is recorded and answered (`revoke.rs`).

use std::collections::HashMap;
use std::sync::{Arc, Weak};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use writ_projections::{Connection, ConnectionStatus};
use writ_schemas::{
    ConnectionEstablished, ConnectionRefreshFailed, ConnectionRefreshed, ServerAuth, ServerId,
    Timestamp, UpstreamOAuth, UserId, Wrapped,
};
use zeroize::Zeroizing;

use crate::decide::{Command, Refusal};
use crate::kek::Keks;
use crate::ledger::{Ledger, SubmitError};

mod revoke;

pub use revoke::{REVOCATION_RETRY_SECONDS_MIN_DEFAULT, REVOCATIONS_PER_PASS_MAX, retry_due_at};

/// How long a person has to finish the flow at the provider.
pub const FLOW_SECONDS_MAX: i64 = 600;
/// Longest a provider's token answer may be.
pub const TOKEN_RESPONSE_BYTES_MAX: usize = 64 * 1024;
/// Longest a request to a provider may take.
pub const PROVIDER_REQUEST_SECONDS_MAX: u64 = 10;
/// An access token this close to its expiry counts as expired: a call forwarded with it
/// could reach the server after it lapsed.
pub const EXPIRY_SKEW_SECONDS: i64 = 30;
/// Default: refresh connections whose access token expires within this many seconds.
pub const REFRESH_WINDOW_SECONDS_DEFAULT: u64 = 600;
/// Default: look for connections to refresh this often.
pub const REFRESH_EVERY_SECONDS_DEFAULT: u64 = 300;
/// Most connections one background pass refreshes (the rest wait for the next pass).
pub const REFRESHES_PER_PASS_MAX: usize = 1000;

/// Why no usable upstream credential could be had.
#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    /// The person holds no connection to the server (never connected, or deleted).
    #[error("OAuth session not found")]
    NotFound,
    /// The connection's access token expired and could not be refreshed (no refresh
    /// token, a broken connection, or the provider refused).
    #[error("OAuth session expired")]
    Expired,
    /// The provider or the ledger could not be reached.
    #[error("{0}")]
    Unavailable(String),
}

/// Why a connection could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The state is not one writ made, or it lapsed.
    #[error("{0}")]
    BadState(String),
    /// The provider refused, or answered something that is not a token response.
    #[error("{0}")]
    Provider(String),
    /// The ledger refused or is unavailable.
    #[error(transparent)]
    Submit(#[from] SubmitError),
}

/// What the flow's `state` carries, wrapped.
#[derive(Debug, Serialize, Deserialize)]
struct FlowState {
    user_id: UserId,
    server_id: ServerId,
    verifier: String,
    expires_unix: i64,
}

/// The associated data of a connection's wrapped tokens: the person, the server, which.
pub fn token_context(user_id: &UserId, server_id: &ServerId, which: &str) -> String {
    format!("connection {which}\n{user_id}\n{server_id}")
}

const STATE_CONTEXT: &str = "connection flow state";

/// A provider's token answer (RFC 6749 §5.1).
#[derive(Deserialize)]
struct TokenAnswer {
    access_token: Zeroizing<String>,
    refresh_token: Option<Zeroizing<String>>,
    expires_in: Option<i64>,
    scope: Option<String>,
}

/// A provider's error answer (RFC 6749 §5.2).
#[derive(Deserialize)]
struct ErrorAnswer {
    error: String,
    error_description: Option<String>,
}

/// One lock per connection, that its refreshes take in turn (an entry per connection
/// refreshed since start: as many as there are connections).
type RefreshTurns = parking_lot::Mutex<HashMap<(UserId, ServerId), Arc<tokio::sync::Mutex<()>>>>;

/// The connections service: the HTTP client towards providers, the keys, the ledger.
pub struct Connections {
    client: reqwest::Client,
    keks: Arc<Keks>,
    callback_url: String,
    refreshing: RefreshTurns,
    /// Wakes the revocation task: a connection just ended.
    revocations: tokio::sync::Notify,
}

impl std::fmt::Debug for Connections {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connections")
            .field("callback_url", &self.callback_url)
            .finish_non_exhaustive()
    }
}

impl Connections {
    /// The service for a server whose issuer URL is `issuer`; `Err` when no HTTP client
    /// can be made (its TLS backend did not start): one without the timeouts would let a
    /// provider that never answers hold a refresh forever.
    pub fn new(keks: Arc<Keks>, issuer: &str) -> Result<Connections, reqwest::Error> {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(PROVIDER_REQUEST_SECONDS_MAX))
            .connect_timeout(Duration::from_secs(PROVIDER_REQUEST_SECONDS_MAX))
            .redirect(reqwest::redirect::Policy::none())
            // A fresh connection per request: token requests are rare (one per token
            // lifetime), and a pooled connection the provider closed meanwhile would fail
            // a refresh that cannot safely be sent twice.
            .pool_max_idle_per_host(0)
            .build()?;
        Ok(Connections {
            client,
            keks,
            callback_url: format!(
                "{}/api/v1/connections/callback",
                issuer.trim_end_matches('/')
            ),
            refreshing: parking_lot::Mutex::new(HashMap::new()),
            revocations: tokio::sync::Notify::new(),
        })
    }

    /// The redirect URI to register at every provider.
    pub fn callback_url(&self) -> &str {
        &self.callback_url
    }

    /// The provider URL that starts the person's flow (the person's browser goes there).
    pub fn start_url(
        &self,
        oauth: &UpstreamOAuth,
        user_id: &UserId,
        server_id: &ServerId,
        login_hint: Option<&str>,
        now: Timestamp,
    ) -> Result<String, ConnectError> {
        let mut verifier_bytes = [0u8; 32];
        rand::fill(&mut verifier_bytes);
        let verifier = URL_SAFE_NO_PAD.encode(verifier_bytes);
        let challenge = URL_SAFE_NO_PAD.encode(aws_lc_rs::digest::digest(
            &aws_lc_rs::digest::SHA256,
            verifier.as_bytes(),
        ));
        let flow = FlowState {
            user_id: user_id.clone(),
            server_id: server_id.clone(),
            verifier,
            expires_unix: now.unix_seconds() + FLOW_SECONDS_MAX,
        };
        let plain = Zeroizing::new(serde_json::to_vec(&flow).unwrap_or_default());
        let wrapped = self.keks.wrap(&plain, STATE_CONTEXT);
        let state = format!(
            "{}.{}.{}",
            wrapped.kek_id, wrapped.nonce, wrapped.ciphertext
        );
        let mut url = reqwest::Url::parse(&oauth.authorization_url)
            .map_err(|err| ConnectError::Provider(format!("authorization_url: {err}")))?;
        {
            let mut query = url.query_pairs_mut();
            query
                .append_pair("response_type", "code")
                .append_pair("client_id", &oauth.client_id)
                .append_pair("redirect_uri", &self.callback_url)
                .append_pair("state", &state)
                .append_pair("code_challenge", &challenge)
                .append_pair("code_challenge_method", "S256");
            if !oauth.scopes.is_empty() {
                query.append_pair("scope", &oauth.scopes.join(" "));
            }
            if let Some(hint) = login_hint {
                query.append_pair("login_hint", hint);
            }
        }
        Ok(url.into())
    }

    /// Takes the provider's answer at the callback: exchanges the code and records the
    /// connection. Returns whose connection to which server it is.
    pub async fn finish(
        &self,
        ledger: &Ledger,
        state: &str,
        code: &str,
        now: Timestamp,
    ) -> Result<(UserId, ServerId), ConnectError> {
        let flow = self.open_state(state, now)?;
        let oauth = oauth_of(ledger, &flow.server_id).ok_or_else(|| {
            ConnectError::BadState(format!(
                "server {} takes no OAuth connection",
                flow.server_id
            ))
        })?;
        let form = [
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", self.callback_url.as_str()),
            ("code_verifier", flow.verifier.as_str()),
        ];
        let answer = self
            .token_request(&oauth, &flow.server_id, &form)
            .await
            .map_err(|failure| ConnectError::Provider(failure.reason))?;
        let connection = ConnectionEstablished {
            user_id: flow.user_id.clone(),
            server_id: flow.server_id.clone(),
            access_token: self.wrap(
                &flow.user_id,
                &flow.server_id,
                "access token",
                &answer.access_token,
            ),
            refresh_token: answer
                .refresh_token
                .as_ref()
                .map(|t| self.wrap(&flow.user_id, &flow.server_id, "refresh token", t)),
            expires_at: expiry(now, answer.expires_in),
            scopes: answer
                .scope
                .as_deref()
                .map(|s| s.split_whitespace().map(str::to_owned).collect())
                .unwrap_or_else(|| oauth.scopes.clone()),
        };
        ledger
            .submit(Command::EstablishConnection(connection))
            .await?;
        Ok((flow.user_id, flow.server_id))
    }

    fn open_state(&self, state: &str, now: Timestamp) -> Result<FlowState, ConnectError> {
        let bad = || {
            ConnectError::BadState("the `state` is not one writ issued; start again from /api/v1/connections/{server_id}/start".into())
        };
        let mut parts = state.splitn(3, '.');
        let (Some(kek_id), Some(nonce), Some(ciphertext)) =
            (parts.next(), parts.next(), parts.next())
        else {
            return Err(bad());
        };
        let wrapped = Wrapped {
            kek_id: kek_id.to_owned(),
            nonce: nonce.to_owned(),
            ciphertext: ciphertext.to_owned(),
        };
        let plain = self
            .keks
            .unwrap(&wrapped, STATE_CONTEXT)
            .map_err(|_| bad())?;
        let flow: FlowState = serde_json::from_slice(&plain).map_err(|_| bad())?;
        if now.unix_seconds() > flow.expires_unix {
            return Err(ConnectError::BadState(format!(
                "the connection flow lapsed (it has {} minutes); start again",
                FLOW_SECONDS_MAX / 60
            )));
        }
        Ok(flow)
    }

    fn wrap(&self, user_id: &UserId, server_id: &ServerId, which: &str, token: &str) -> Wrapped {
        self.keks
            .wrap(token.as_bytes(), &token_context(user_id, server_id, which))
    }

    /// A usable access token of the person's at the server, refreshed first if it expired.
    pub async fn access_token(
        &self,
        ledger: &Ledger,
        user_id: &UserId,
        server_id: &ServerId,
        now: Timestamp,
    ) -> Result<Zeroizing<String>, CredentialError> {
        let connection = held(ledger, user_id, server_id)?;
        if fresh(&connection, now) {
            return self.unwrap(&connection.access_token, user_id, server_id, "access token");
        }
        let refreshed = self.refresh(ledger, user_id, server_id, now).await?;
        self.unwrap(&refreshed.access_token, user_id, server_id, "access token")
    }

    fn unwrap(
        &self,
        wrapped: &Wrapped,
        user_id: &UserId,
        server_id: &ServerId,
        which: &str,
    ) -> Result<Zeroizing<String>, CredentialError> {
        self.keks
            .unwrap_text(wrapped, &token_context(user_id, server_id, which))
            .map_err(|err| CredentialError::Unavailable(err.to_string()))
    }

    /// Refreshes the connection unless another refresh did meanwhile; the connection as
    /// it then stands.
    pub async fn refresh(
        &self,
        ledger: &Ledger,
        user_id: &UserId,
        server_id: &ServerId,
        now: Timestamp,
    ) -> Result<Connection, CredentialError> {
        let turn = {
            let mut locks = self.refreshing.lock();
            Arc::clone(
                locks
                    .entry((user_id.clone(), server_id.clone()))
                    .or_default(),
            )
        };
        let _turn = turn.lock().await;
        loop {
            let connection = held(ledger, user_id, server_id)?;
            if fresh(&connection, now) {
                return Ok(connection);
            }
            let Some(refresh_token) = &connection.refresh_token else {
                return Err(CredentialError::Expired);
            };
            let oauth = oauth_of(ledger, server_id).ok_or(CredentialError::NotFound)?;
            let refresh_token = self.unwrap(refresh_token, user_id, server_id, "refresh token")?;
            let form = [
                ("grant_type", "refresh_token"),
                ("refresh_token", refresh_token.as_str()),
            ];
            let command = match self.token_request(&oauth, server_id, &form).await {
                Ok(answer) => Command::RefreshConnection(ConnectionRefreshed {
                    user_id: user_id.clone(),
                    server_id: server_id.clone(),
                    generation: connection.generation,
                    access_token: self.wrap(
                        user_id,
                        server_id,
                        "access token",
                        &answer.access_token,
                    ),
                    refresh_token: answer
                        .refresh_token
                        .as_ref()
                        .map(|t| self.wrap(user_id, server_id, "refresh token", t)),
                    expires_at: expiry(now, answer.expires_in),
                }),
                Err(failure) => Command::FailConnectionRefresh(ConnectionRefreshFailed {
                    user_id: user_id.clone(),
                    server_id: server_id.clone(),
                    generation: connection.generation,
                    reason: failure.reason,
                    broken: failure.rejected,
                }),
            };
            let failed = matches!(command, Command::FailConnectionRefresh(_));
            match ledger.submit(command).await {
                // Another node refreshed it first: use what it recorded.
                Err(SubmitError::Refused(Refusal::ConnectionMovedOn(_))) => continue,
                Err(SubmitError::Refused(Refusal::UnknownConnection(_))) => {
                    return Err(CredentialError::NotFound);
                }
                Err(err) => return Err(CredentialError::Unavailable(err.to_string())),
                Ok(_) if failed => return Err(CredentialError::Expired),
                Ok(_) => return held(ledger, user_id, server_id),
            }
        }
    }

    /// One request to the provider's token endpoint, authenticated as writ's client there.
    async fn token_request(
        &self,
        oauth: &UpstreamOAuth,
        server_id: &ServerId,
        form: &[(&str, &str)],
    ) -> Result<TokenAnswer, ProviderFailure> {
        let request = self.client_request(oauth, server_id, &oauth.token_url, form)?;
        let response = request.send().await.map_err(|err| {
            ProviderFailure::transient(format!(
                "the provider did not answer: {}",
                without_url(&err)
            ))
        })?;
        let status = response.status();
        let bytes = read_limited(response).await?;
        if status.is_success() {
            return serde_json::from_slice(&bytes).map_err(|_| {
                ProviderFailure::transient(format!(
                    "the provider answered {status} without a token response"
                ))
            });
        }
        match serde_json::from_slice::<ErrorAnswer>(&bytes) {
            Ok(error) => Err(ProviderFailure {
                rejected: error.error == "invalid_grant",
                reason: format!(
                    "{}: {}",
                    error.error,
                    error
                        .error_description
                        .unwrap_or_default()
                        .chars()
                        .take(200)
                        .collect::<String>()
                ),
            }),
            Err(_) => Err(ProviderFailure::transient(format!(
                "the provider answered {status}"
            ))),
        }
    }

    /// A form POST to one of the provider's endpoints, authenticated as writ's client
    /// there: HTTP Basic with the client secret when the server holds one (RFC 6749
    /// §2.3.1), else `client_id` in the form (a public client).
    fn client_request(
        &self,
        oauth: &UpstreamOAuth,
        server_id: &ServerId,
        url: &str,
        form: &[(&str, &str)],
    ) -> Result<reqwest::RequestBuilder, ProviderFailure> {
        let secret = match &oauth.client_secret {
            Some(wrapped) => Some(
                self.keks
                    .unwrap_text(
                        wrapped,
                        &crate::http::servers::client_secret_context(server_id),
                    )
                    .map_err(|err| ProviderFailure::transient(err.to_string()))?,
            ),
            None => None,
        };
        let mut body = form.to_vec();
        if secret.is_none() {
            body.push(("client_id", oauth.client_id.as_str()));
        }
        let body = Zeroizing::new(serde_urlencoded::to_string(&body).unwrap_or_default());
        let mut request = self
            .client
            .post(url)
            .header("content-type", "application/x-www-form-urlencoded")
            .header("accept", "application/json")
            .body(body.as_bytes().to_vec());
        if let Some(secret) = &secret {
            // RFC 6749 §2.3.1: both parts form-encoded before Basic.
            let id: String = url_encode(&oauth.client_id);
            let secret: Zeroizing<String> = Zeroizing::new(url_encode(secret));
            request = request.basic_auth(id, Some(secret.as_str()));
        }
        Ok(request)
    }

    /// Refreshes every held connection that expires within `window`; runs until the
    /// ledger is gone.
    pub async fn refresh_in_background(
        self: Arc<Self>,
        ledger: Weak<Ledger>,
        clock: crate::clock::Clock,
        every: Duration,
        window: Duration,
    ) {
        let mut ticks = tokio::time::interval(every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            let Some(ledger) = ledger.upgrade() else {
                return;
            };
            let now = clock.now();
            let before = now.plus_seconds(i64::try_from(window.as_secs()).unwrap_or(i64::MAX));
            let due: Vec<(UserId, ServerId)> = ledger.read(|s| {
                s.connections_expiring(before)
                    .take(REFRESHES_PER_PASS_MAX)
                    .map(|c| (c.user_id.clone(), c.server_id.clone()))
                    .collect()
            });
            for (user_id, server_id) in due {
                // Refresh as if the token expired now: it is inside the window.
                let ahead = before;
                if let Err(err) = self.refresh(&ledger, &user_id, &server_id, ahead).await {
                    tracing::info!(%user_id, %server_id, error = %err, "a connection was not refreshed");
                }
            }
        }
    }
}

/// Why a token request failed; `rejected`: the provider refused the grant itself.
struct ProviderFailure {
    rejected: bool,
    reason: String,
}

impl ProviderFailure {
    fn transient(reason: String) -> ProviderFailure {
        ProviderFailure {
            rejected: false,
            reason,
        }
    }
}

fn url_encode(text: &str) -> String {
    serde_urlencoded::to_string([("", text)])
        .unwrap_or_default()
        .trim_start_matches('=')
        .to_owned()
}

/// A reqwest error's text without its URL (which could carry a query with a secret).
fn without_url(err: &reqwest::Error) -> String {
    let mut text = err.to_string();
    if let Some(url) = err.url() {
        text = text.replace(url.as_str(), "the provider's endpoint");
    }
    text
}

async fn read_limited(mut response: reqwest::Response) -> Result<Vec<u8>, ProviderFailure> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|err| {
        ProviderFailure::transient(format!(
            "reading the provider's answer: {}",
            without_url(&err)
        ))
    })? {
        if body.len() + chunk.len() > TOKEN_RESPONSE_BYTES_MAX {
            return Err(ProviderFailure::transient(format!(
                "the provider's answer is over {TOKEN_RESPONSE_BYTES_MAX} bytes"
            )));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

fn expiry(now: Timestamp, expires_in: Option<i64>) -> Option<Timestamp> {
    expires_in
        .filter(|seconds| *seconds > 0)
        .map(|seconds| now.plus_seconds(seconds.min(10 * 365 * 86_400)))
}

/// The access token is good past the skew.
fn fresh(connection: &Connection, now: Timestamp) -> bool {
    connection
        .expires_at
        .is_none_or(|end| now.plus_seconds(EXPIRY_SKEW_SECONDS) < end)
}

fn held(
    ledger: &Ledger,
    user_id: &UserId,
    server_id: &ServerId,
) -> Result<Connection, CredentialError> {
    match ledger.read(|s| s.connection(user_id, server_id).cloned()) {
        None => Err(CredentialError::NotFound),
        Some(c) if c.status == ConnectionStatus::Deleted => Err(CredentialError::NotFound),
        Some(c) if c.status == ConnectionStatus::Broken => Err(CredentialError::Expired),
        Some(c) => Ok(c),
    }
}

fn oauth_of(ledger: &Ledger, server_id: &ServerId) -> Option<UpstreamOAuth> {
    ledger.read(|s| match s.server(server_id).map(|server| &server.auth) {
        Some(ServerAuth::Oauth(oauth)) => Some(oauth.clone()),
        _ => None,
    })
}
