//! The OAuth grants: authenticating the client and working out what a token may carry.
//! Everything here reads the projections and takes `now` as a value; the HTTP layer
//! parses and answers, the sequencer records.

pub(crate) mod assertion;
pub(crate) mod exchange;
pub(crate) mod on_behalf;
pub(crate) mod terms;

pub use exchange::{
    ACCESS_TOKEN_TYPE, ExternalSubject, JWT_TOKEN_TYPE, TOKEN_EXCHANGE_GRANT, token_exchange_grant,
};
pub use on_behalf::{ActingFor, USER_ID_TOKEN_TYPE};
pub use terms::{Terms, agent_terms, client_credentials_terms};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use writ_projections::{Agent, State};
use writ_schemas::{AssertionUsed, ClientId, Timestamp};

use crate::http::oauth_error::OAuthError;
use crate::secrets::SecretHasher;

/// How the client presented its credentials.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMethod {
    /// HTTP Basic (RFC 6749 §2.3.1).
    Basic,
    /// `client_id` and `client_secret` in the form body.
    Post,
    /// `client_id` and `client_secret` in the JSON body of `/oauth/agent-token`.
    Json,
    /// A public client (`token_endpoint_auth_method` `none`): `client_id` alone, its
    /// proof the PKCE verifier of the code or the refresh token it holds.
    None,
    /// `private_key_jwt` (RFC 7523 §2.2): a JWT signed with a registered key, in
    /// `client_assertion`.
    Assertion,
}

impl AuthMethod {
    /// Whether a client registered with `registered` may authenticate this way.
    fn fits(self, registered: &str) -> bool {
        match self {
            AuthMethod::Basic => registered == "client_secret_basic",
            AuthMethod::Post => registered == "client_secret_post",
            // The JSON form has no header to carry the secret, and the secret is the same
            // one either way: any client holding a secret may use it.
            AuthMethod::Json => {
                matches!(registered, "client_secret_basic" | "client_secret_post")
            }
            AuthMethod::None => registered == "none",
            AuthMethod::Assertion => registered == "private_key_jwt",
        }
    }
}

/// Credentials as presented.
#[derive(Clone)]
pub struct Presented {
    /// The client id.
    pub client_id: String,
    /// The secret, or for [`AuthMethod::Assertion`] the signed JWT (never logged:
    /// `Debug` hides it).
    pub secret: String,
    /// How.
    pub method: AuthMethod,
}

impl std::fmt::Debug for Presented {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Presented")
            .field("client_id", &self.client_id)
            .field("method", &self.method)
            .finish()
    }
}

/// Reads client credentials from an `Authorization: Basic` header, the form's
/// `client_secret` or its `client_assertion`; exactly one.
pub fn presented_credentials(
    authorization: Option<&str>,
    form: &std::collections::BTreeMap<String, String>,
) -> Result<Presented, OAuthError> {
    if form.contains_key("client_assertion") || form.contains_key("client_assertion_type") {
        if authorization.is_some() || form.contains_key("client_secret") {
            return Err(OAuthError::invalid_request(
                "use one client authentication method: a client assertion, not also Basic or client_secret",
            ));
        }
        return presented_assertion(form);
    }
    let in_form = form
        .get("client_secret")
        .map(|secret| (form.get("client_id"), secret));
    match (authorization, in_form) {
        (Some(_), Some(_)) => Err(OAuthError::invalid_request(
            "use one client authentication method, not both Basic and client_secret",
        )),
        (Some(header), None) => basic(header),
        (None, Some((Some(client_id), secret))) => Ok(Presented {
            client_id: client_id.clone(),
            secret: secret.clone(),
            method: AuthMethod::Post,
        }),
        (None, Some((None, _))) => Err(OAuthError::invalid_request(
            "client_secret without client_id",
        )),
        (None, None) => match form.get("client_id") {
            Some(client_id) => Ok(Presented {
                client_id: client_id.clone(),
                secret: String::new(),
                method: AuthMethod::None,
            }),
            None => Err(OAuthError::invalid_client(
                "authenticate the client with HTTP Basic or client_id and client_secret",
            )),
        },
    }
}

/// `client_assertion_type` and `client_assertion` (RFC 7521 §4.2); the client is the
/// form's `client_id` if sent, else the assertion's `sub`, verified later either way.
fn presented_assertion(
    form: &std::collections::BTreeMap<String, String>,
) -> Result<Presented, OAuthError> {
    if form.get("client_assertion_type").map(String::as_str) != Some(assertion::ASSERTION_TYPE) {
        return Err(OAuthError::invalid_client(format!(
            "client_assertion_type must be {}",
            assertion::ASSERTION_TYPE
        )));
    }
    let jwt = form.get("client_assertion").ok_or_else(|| {
        OAuthError::invalid_request("client_assertion_type without client_assertion")
    })?;
    let client_id = match form.get("client_id") {
        Some(client_id) => client_id.clone(),
        None => assertion::claimed_client(jwt).ok_or_else(|| {
            OAuthError::invalid_client(
                "the client assertion is not a JWT whose sub names the client",
            )
        })?,
    };
    Ok(Presented {
        client_id,
        secret: jwt.clone(),
        method: AuthMethod::Assertion,
    })
}

fn basic(header: &str) -> Result<Presented, OAuthError> {
    let refuse = || {
        OAuthError::invalid_client("the Authorization header is not valid HTTP Basic credentials")
    };
    let encoded = header.strip_prefix("Basic ").ok_or_else(refuse)?;
    let decoded = STANDARD.decode(encoded.trim()).map_err(|_| refuse())?;
    let text = String::from_utf8(decoded).map_err(|_| refuse())?;
    let (id, secret) = text.split_once(':').ok_or_else(refuse)?;
    // RFC 6749 §2.3.1: both halves are form-urlencoded before Basic encoding.
    let unescape = |part: &str| {
        serde_urlencoded::from_str::<Vec<(String, String)>>(&format!("v={part}"))
            .ok()
            .and_then(|mut pairs| pairs.pop())
            .map(|(_, value)| value)
            .ok_or_else(refuse)
    };
    Ok(Presented {
        client_id: unescape(id)?,
        secret: unescape(secret)?,
        method: AuthMethod::Basic,
    })
}

/// The terms of a `client_credentials` token: for the agent itself, or, when the request
/// names a person by `actor_token`, on their behalf under their delegation.
pub fn client_credentials_grant(
    state: &State,
    agent: &Agent,
    form: &std::collections::BTreeMap<String, String>,
    issuer: &str,
    now: Timestamp,
) -> Result<Terms, OAuthError> {
    let user_id = on_behalf::named_user(form)?;
    let terms = client_credentials_terms(agent, form, issuer)?;
    let terms = match user_id {
        None => terms,
        Some(user_id) => {
            let scope_requested = form.contains_key("scope");
            on_behalf::on_behalf_of(state, agent, user_id, scope_requested, now, terms)?
        }
    };
    terms::within_agent_expiry(agent, now, terms)
}

/// At the token endpoint: the agent these credentials authenticate, usable at `now`, and
/// the client assertion it spent, if it sent one, to be recorded with what it gets.
/// `issuer` is the audience an assertion names.
pub fn authenticate_at_token<'s>(
    state: &'s State,
    secrets: &SecretHasher,
    presented: &Presented,
    issuer: &str,
    now: Timestamp,
) -> Result<(&'s Agent, Option<AssertionUsed>), OAuthError> {
    if presented.method != AuthMethod::Assertion {
        return authenticate(state, secrets, presented, now).map(|agent| (agent, None));
    }
    let agent = state
        .agent(&ClientId(presented.client_id.clone()))
        .ok_or_else(|| OAuthError::invalid_client("unknown client"))?;
    if !presented.method.fits(&agent.token_endpoint_auth_method) {
        return Err(OAuthError::invalid_client(format!(
            "this client authenticates with {}, not a client assertion",
            agent.token_endpoint_auth_method
        )));
    }
    let used = assertion::verify(agent, &presented.secret, issuer, now)?;
    if state.assertion_used(&agent.client_id, &used.jti) {
        return Err(OAuthError::invalid_client(
            "the client assertion was already used; sign a new one with a fresh jti",
        ));
    }
    usable(agent, now).map(|agent| (agent, Some(used)))
}

/// The agent these credentials authenticate, usable at `now`, or why not. A client
/// assertion is refused here: its `jti` can only be spent where a token is recorded, so
/// only the token endpoint (`authenticate_at_token`) takes one.
pub fn authenticate<'s>(
    state: &'s State,
    secrets: &SecretHasher,
    presented: &Presented,
    now: Timestamp,
) -> Result<&'s Agent, OAuthError> {
    let unknown = || OAuthError::invalid_client("unknown client or wrong secret");
    if presented.method == AuthMethod::Assertion {
        return Err(OAuthError::invalid_client(
            "a client assertion is accepted at the token endpoint only",
        ));
    }
    let agent = state
        .agent(&ClientId(presented.client_id.clone()))
        .ok_or_else(unknown)?;
    if agent.token_endpoint_auth_method == "private_key_jwt" {
        return Err(OAuthError::invalid_client(
            "this client authenticates with private_key_jwt; send a client assertion",
        ));
    }
    if presented.method == AuthMethod::None {
        if agent.token_endpoint_auth_method != "none" {
            return Err(OAuthError::invalid_client(format!(
                "this client authenticates with {}; send its secret",
                agent.token_endpoint_auth_method
            )));
        }
        return usable(agent, now);
    }
    let offered = blake3::Hash::from(secrets.hash(&presented.secret).0);
    // blake3::Hash compares in constant time.
    let current = agent
        .secret_hash
        .is_some_and(|hash| blake3::Hash::from(hash.0) == offered);
    let previous = agent
        .previous_secret
        .is_some_and(|(hash, until)| now < until && blake3::Hash::from(hash.0) == offered);
    if !(current || previous) {
        return Err(unknown());
    }
    // The expiry is in the ledger; whether it has passed is decided against `now`.
    if let Some(expired) = agent.secret_expires_at.filter(|end| current && now >= *end) {
        return Err(OAuthError::invalid_client(format!(
            "the client secret expired at {expired}; an admin rotates it (POST /api/v1/agents/{}/secret)",
            agent.client_id
        )));
    }
    if !presented.method.fits(&agent.token_endpoint_auth_method) {
        return Err(OAuthError::invalid_client(format!(
            "this client authenticates with {}",
            agent.token_endpoint_auth_method
        )));
    }
    usable(agent, now)
}

/// The agent, if it is enabled and unexpired at `now`.
fn usable(agent: &Agent, now: Timestamp) -> Result<&Agent, OAuthError> {
    if !agent.enabled {
        return Err(OAuthError::invalid_client(format!(
            "agent {} is disabled",
            agent.client_id
        )));
    }
    if let Some(end) = agent.expires_at.filter(|end| now >= *end) {
        return Err(OAuthError::invalid_client(format!(
            "agent {} expired at {end}",
            agent.client_id
        )));
    }
    Ok(agent)
}
