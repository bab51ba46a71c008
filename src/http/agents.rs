//! The agent registry (admin): register with a secret shown once, the inventory, identity
//! (owner and expiry), review attestations, disable and enable, secret rotation with a
//! grace period, and governance ceilings.

use actix_web::{HttpResponse, web};
use serde::{Deserialize, Serialize};
use writ_projections::{Agent, State};
use writ_schemas::{
    AgentIdentitySet, AgentPolicySet, AgentRegistered, AgentReviewed, AgentSecretRotated,
    AgentType, ClientId, Timestamp, UserId,
};

use super::AppState;
use super::auth::Admin;
use super::error::ApiError;
use crate::decide::Command;
use crate::people::{Datum, People};
use crate::secrets::{new_id, new_secret};

/// How long a rotated-out client secret is still accepted when the rotation names no
/// `previous_secret_grace_seconds`: a day, for deployments to pick up the new one.
pub const SECRET_GRACE_SECONDS_DEFAULT: u64 = 24 * 3600;
/// Longest grace a rotation may give the previous secret: a leaked secret must not be
/// kept alive for long by the very rotation that replaces it.
pub const SECRET_GRACE_SECONDS_MAX: u64 = 7 * 24 * 3600;
/// Most scopes an agent may hold.
pub const SCOPES_MAX: usize = 100;
/// Longest scope token.
pub const SCOPE_BYTES_MAX: usize = 128;
/// Longest agent name.
pub const NAME_BYTES_MAX: usize = 200;
/// Longest review note.
pub const NOTE_BYTES_MAX: usize = 2000;
/// Most entries in a list of URIs (`redirect_uris`, `allowed_audiences`).
pub const URIS_MAX: usize = 32;
/// Longest URI in such a list.
pub const URI_BYTES_MAX: usize = 2048;
/// Highest `max_ttl_seconds` a policy may set.
pub const POLICY_TTL_SECONDS_MAX: u64 = 24 * 3600;
/// Deepest `act` chain a policy may allow.
pub const POLICY_DELEGATION_DEPTH_MAX: u32 = 10;

const GRANT_TYPES: &[&str] = &[
    "client_credentials",
    "urn:ietf:params:oauth:grant-type:token-exchange",
    "authorization_code",
    "refresh_token",
];
const AUTH_METHODS: &[&str] = &[
    "client_secret_basic",
    "client_secret_post",
    "private_key_jwt",
];
/// The method that authenticates with a registered key rather than a secret.
const PRIVATE_KEY_JWT: &str = "private_key_jwt";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct NewAgent {
    name: String,
    scopes: Vec<String>,
    grant_types: Vec<String>,
    #[serde(default)]
    redirect_uris: Vec<String>,
    token_endpoint_auth_method: Option<String>,
    /// The public keys of a `private_key_jwt` agent (a JWK Set).
    jwks: Option<serde_json::Value>,
    #[serde(default)]
    require_consent: bool,
    owner: Option<String>,
    expires_at: Option<String>,
    /// When its client secret stops being accepted (RFC 3339).
    secret_expires_at: Option<String>,
    agent_type: Option<AgentType>,
}

/// An agent as the inventory shows it.
#[derive(Debug, Serialize)]
struct AgentView {
    client_id: String,
    name: String,
    owner: Option<String>,
    owner_email: Option<String>,
    scopes: Vec<String>,
    grant_types: Vec<String>,
    redirect_uris: Vec<String>,
    token_endpoint_auth_method: String,
    require_consent: bool,
    agent_type: AgentType,
    created_at: String,
    expires_at: Option<String>,
    /// When the current client secret stops being accepted.
    secret_expires_at: Option<String>,
    /// Until when the previous secret is still accepted; none once it no longer is.
    previous_secret_valid_until: Option<String>,
    last_used_at: Option<String>,
    status: &'static str,
    governed: bool,
    enabled: bool,
    needs_review: bool,
    reviewed_at: Option<String>,
    open_anomalies: u32,
    policy: PolicyView,
    /// The owner's email as the read models hold it, opened by [`AgentView::open`].
    #[serde(skip)]
    owner_datum: Option<Datum>,
}

impl AgentView {
    /// The view with its owner's email opened: after the read lock, as opening may read
    /// the owner's key from its store.
    fn open(mut self, people: &People) -> AgentView {
        self.owner_email = self.owner_datum.take().map(|d| people.reveal_datum(&d));
        self
    }
}

#[derive(Debug, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct PolicyView {
    max_ttl_seconds: Option<u64>,
    allowed_scopes: Option<Vec<String>>,
    allowed_audiences: Option<Vec<String>>,
    max_delegation_depth: Option<u32>,
    max_operations: Option<u64>,
    token_requests_per_minute: Option<u32>,
}

/// The agent as the API shows it, read under the lock; [`AgentView::open`] fills in the
/// owner's email after it.
fn view(state: &State, agent: &Agent, now: Timestamp) -> AgentView {
    let owner = agent.owner.as_ref().and_then(|id| state.user(id));
    let c = &agent.ceilings;
    AgentView {
        client_id: agent.client_id.to_string(),
        name: agent.name.clone(),
        owner: agent.owner.as_ref().map(ToString::to_string),
        owner_email: None,
        owner_datum: owner.map(Datum::email_of),
        scopes: agent.scopes.clone(),
        grant_types: agent.grant_types.clone(),
        redirect_uris: agent.redirect_uris.clone(),
        token_endpoint_auth_method: agent.token_endpoint_auth_method.clone(),
        require_consent: agent.require_consent,
        agent_type: agent.agent_type,
        created_at: agent.registered_at.to_string(),
        expires_at: agent.expires_at.map(|t| t.to_string()),
        secret_expires_at: agent.secret_expires_at.map(|t| t.to_string()),
        previous_secret_valid_until: agent
            .previous_secret
            .map(|(_, until)| until)
            .filter(|until| now < *until)
            .map(|t| t.to_string()),
        last_used_at: agent.last_used_at.map(|t| t.to_string()),
        status: state.agent_status(agent, now).as_str(),
        // Governed: someone is accountable for it and it ends by itself.
        governed: agent.owner.is_some() && agent.expires_at.is_some(),
        enabled: agent.enabled,
        needs_review: agent.reviewed_at.is_none(),
        reviewed_at: agent.reviewed_at.map(|t| t.to_string()),
        open_anomalies: agent.open_anomalies,
        policy: PolicyView {
            max_ttl_seconds: c.max_ttl_seconds,
            allowed_scopes: c.allowed_scopes.clone(),
            allowed_audiences: c.allowed_audiences.clone(),
            max_delegation_depth: c.max_delegation_depth,
            max_operations: c.max_operations,
            token_requests_per_minute: c.token_requests_per_minute,
        },
    }
}

/// A bounded list of URIs: at most `URIS_MAX`, each 1 to `URI_BYTES_MAX` bytes of text
/// without spaces or control characters.
fn check_uris(field: &str, uris: &[String]) -> Result<(), ApiError> {
    if uris.len() > URIS_MAX {
        return Err(ApiError::invalid(
            field,
            format!("at most {URIS_MAX} entries"),
        ));
    }
    match uris.iter().find(|uri| {
        uri.is_empty()
            || uri.len() > URI_BYTES_MAX
            || uri.chars().any(|c| c.is_control() || c.is_whitespace())
    }) {
        Some(bad) => Err(ApiError::invalid(
            field,
            format!(
                "`{}` is not 1 to {URI_BYTES_MAX} bytes without spaces or control characters",
                bad.chars().take(64).collect::<String>()
            ),
        )),
        None => Ok(()),
    }
}

pub(super) fn check_scopes(field: &str, scopes: &[String]) -> Result<(), ApiError> {
    if scopes.len() > SCOPES_MAX {
        return Err(ApiError::invalid(
            field,
            format!("at most {SCOPES_MAX} scopes"),
        ));
    }
    for (index, scope) in scopes.iter().enumerate() {
        // RFC 6749 §3.3: scope-token = 1*( %x21 / %x23-5B / %x5D-7E )
        let valid = !scope.is_empty()
            && scope.len() <= SCOPE_BYTES_MAX
            && scope
                .bytes()
                .all(|b| b == 0x21 || (0x23..=0x5B).contains(&b) || (0x5D..=0x7E).contains(&b));
        if !valid {
            return Err(ApiError::invalid(
                field,
                format!(
                    "`{}` is not a scope token (printable ASCII without spaces, quotes or backslashes, at most {SCOPE_BYTES_MAX} bytes)",
                    scope.chars().take(64).collect::<String>()
                ),
            ));
        }
        if scopes[..index].contains(scope) {
            return Err(ApiError::invalid(
                field,
                format!("`{scope}` is listed twice"),
            ));
        }
    }
    Ok(())
}

pub(super) fn parse_time(field: &str, text: &str, now: Timestamp) -> Result<Timestamp, ApiError> {
    let parsed = chrono::DateTime::parse_from_rfc3339(text).map_err(|_| {
        ApiError::invalid(
            field,
            format!("`{text}` is not an RFC 3339 time such as 2027-01-31T12:00:00Z"),
        )
    })?;
    let at = Timestamp::from_datetime(parsed.with_timezone(&chrono::Utc));
    if at <= now {
        return Err(ApiError::invalid(
            field,
            format!("{at} is not in the future"),
        ));
    }
    Ok(at)
}

fn owner_by_email(state: &AppState, field: &str, email: &str) -> Result<UserId, ApiError> {
    state
        .ledger
        .read(|s| {
            state
                .people
                .user_by_email(s, email)
                .map(|user| user.user_id.clone())
        })
        .ok_or_else(|| {
            // The caller's own input, answered to them alone: never logged.
            ApiError::invalid(
                field,
                format!("no user has the email `{email}`; register them first"),
            )
        })
}

fn check_new(body: &NewAgent) -> Result<(), ApiError> {
    if body.name.trim().is_empty()
        || body.name.len() > NAME_BYTES_MAX
        || body.name.chars().any(char::is_control)
    {
        return Err(ApiError::invalid(
            "name",
            format!("1 to {NAME_BYTES_MAX} bytes of text"),
        ));
    }
    check_scopes("scopes", &body.scopes)?;
    if body.grant_types.is_empty() {
        return Err(ApiError::invalid(
            "grant_types",
            format!("name at least one of {}", GRANT_TYPES.join(", ")),
        ));
    }
    if let Some(unknown) = body
        .grant_types
        .iter()
        .find(|g| !GRANT_TYPES.contains(&g.as_str()))
    {
        return Err(ApiError::invalid(
            "grant_types",
            format!("`{unknown}` is not one of {}", GRANT_TYPES.join(", ")),
        ));
    }
    if let Some(method) = body
        .token_endpoint_auth_method
        .as_deref()
        .filter(|m| !AUTH_METHODS.contains(m))
    {
        return Err(ApiError::invalid(
            "token_endpoint_auth_method",
            format!("`{method}` is not one of {}", AUTH_METHODS.join(", ")),
        ));
    }
    check_uris("redirect_uris", &body.redirect_uris)?;
    if let Some(bad) = body.redirect_uris.iter().find(|uri| {
        !(uri.starts_with("https://") || uri.starts_with("http://")) || uri.contains('#')
    }) {
        return Err(ApiError::invalid(
            "redirect_uris",
            format!("`{bad}` is not an absolute http(s) URI without a fragment"),
        ));
    }
    Ok(())
}

/// Registers an agent; its client secret is in this response and nowhere else.
pub(super) async fn create(
    state: web::Data<AppState>,
    admin: Admin,
    body: web::Json<NewAgent>,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    check_new(&body)?;
    let now = state.clock.now();
    let owner = body
        .owner
        .as_deref()
        .map(|email| owner_by_email(&state, "owner", email))
        .transpose()?;
    let expires_at = body
        .expires_at
        .as_deref()
        .map(|text| parse_time("expires_at", text, now))
        .transpose()?;
    let client_id = ClientId(new_id("agt_"));
    let method = body
        .token_endpoint_auth_method
        .clone()
        .unwrap_or_else(|| AUTH_METHODS[0].to_owned());
    let jwks = registered_jwks(&method, body.jwks.as_ref())?;
    // A key-authenticated agent gets no secret: there is nothing for it to hold.
    let secret = jwks.is_none().then(|| new_secret("wrt_cs_"));
    let secret_expires_at = match (&secret, body.secret_expires_at.as_deref()) {
        (_, None) => None,
        (Some(_), Some(text)) => Some(parse_time("secret_expires_at", text, now)?),
        (None, Some(_)) => {
            return Err(ApiError::invalid(
                "secret_expires_at",
                format!("a {PRIVATE_KEY_JWT} agent holds no secret to expire"),
            ));
        }
    };
    let event = AgentRegistered {
        client_id: client_id.clone(),
        name: body.name,
        owner,
        scopes: body.scopes,
        grant_types: body.grant_types,
        redirect_uris: body.redirect_uris,
        token_endpoint_auth_method: method,
        secret_hash: secret.as_deref().map(|secret| state.secrets.hash(secret)),
        secret_expires_at,
        require_consent: body.require_consent,
        agent_type: body.agent_type.unwrap_or(AgentType::Autonomous),
        expires_at,
        by: admin.0,
        jwks,
    };
    state.ledger.submit(Command::RegisterAgent(event)).await?;
    let agent = read_view(&state, &client_id)?;
    Ok(
        HttpResponse::Created()
            .json(serde_json::json!({ "agent": agent, "client_secret": secret })),
    )
}

/// The checked key set of a `private_key_jwt` registration; none for any other method.
fn registered_jwks(
    method: &str,
    jwks: Option<&serde_json::Value>,
) -> Result<Option<writ_schemas::ClientJwks>, ApiError> {
    match (method == PRIVATE_KEY_JWT, jwks) {
        (true, Some(jwks)) => crate::oauth::assertion::registered_jwks(jwks)
            .map(Some)
            .map_err(|why| ApiError::invalid("jwks", why)),
        (true, None) => Err(ApiError::invalid(
            "jwks",
            "a private_key_jwt agent registers its public keys as a JWK Set",
        )),
        (false, Some(_)) => Err(ApiError::invalid(
            "jwks",
            format!("only for token_endpoint_auth_method {PRIVATE_KEY_JWT}, not {method}"),
        )),
        (false, None) => Ok(None),
    }
}

fn read_view(state: &AppState, client_id: &ClientId) -> Result<AgentView, ApiError> {
    let now = state.clock.now();
    state
        .ledger
        .read(|s| s.agent(client_id).map(|agent| view(s, agent, now)))
        .map(|view| view.open(&state.people))
        .ok_or_else(|| ApiError::NotFound(format!("agent {client_id} is not registered")))
}

/// The inventory.
pub(super) async fn list(state: web::Data<AppState>, _admin: Admin) -> HttpResponse {
    let now = state.clock.now();
    let agents: Vec<AgentView> = state
        .ledger
        .read(|s| s.agents().map(|agent| view(s, agent, now)).collect());
    let agents: Vec<AgentView> = agents
        .into_iter()
        .map(|view| view.open(&state.people))
        .collect();
    HttpResponse::Ok().json(agents)
}

/// One agent.
pub(super) async fn one(
    state: web::Data<AppState>,
    _admin: Admin,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(read_view(&state, &ClientId(id.into_inner()))?))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Identity {
    owner: Option<String>,
    expires_at: Option<String>,
}

/// Sets the owner (by email) and expiry; an empty string clears one, an absent field keeps it.
pub(super) async fn identity(
    state: web::Data<AppState>,
    admin: Admin,
    id: web::Path<String>,
    body: web::Json<Identity>,
) -> Result<HttpResponse, ApiError> {
    let client_id = ClientId(id.into_inner());
    let now = state.clock.now();
    let current = state
        .ledger
        .read(|s| s.agent(&client_id).map(|a| (a.owner.clone(), a.expires_at)));
    let (owner, expires_at) = current
        .ok_or_else(|| ApiError::NotFound(format!("agent {client_id} is not registered")))?;
    let owner = match body.owner.as_deref() {
        None => owner,
        Some("") => None,
        Some(email) => Some(owner_by_email(&state, "owner", email)?),
    };
    let expires_at = match body.expires_at.as_deref() {
        None => expires_at,
        Some("") => None,
        Some(text) => Some(parse_time("expires_at", text, now)?),
    };
    let command = Command::SetAgentIdentity(AgentIdentitySet {
        client_id,
        owner,
        expires_at,
        by: admin.0,
    });
    state.ledger.submit(command).await?;
    Ok(HttpResponse::NoContent().finish())
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Review {
    note: Option<String>,
}

/// Records a review attestation (an empty body is a review without a note).
pub(super) async fn review(
    state: web::Data<AppState>,
    admin: Admin,
    id: web::Path<String>,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let review: Review = super::error::optional_json(payload).await?;
    if review
        .note
        .as_ref()
        .is_some_and(|note| note.len() > NOTE_BYTES_MAX || note.chars().any(char::is_control))
    {
        return Err(ApiError::invalid(
            "note",
            format!("at most {NOTE_BYTES_MAX} bytes, without control characters"),
        ));
    }
    let command = Command::ReviewAgent(AgentReviewed {
        client_id: ClientId(id.into_inner()),
        note: review.note,
        by: admin.0,
    });
    state.ledger.submit(command).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// What a rotation may say; an empty body takes the defaults.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Rotation {
    /// Seconds the previous secret is still accepted, 0 to `SECRET_GRACE_SECONDS_MAX`
    /// (0: refused at once); `SECRET_GRACE_SECONDS_DEFAULT` when absent.
    previous_secret_grace_seconds: Option<u64>,
    /// When the new secret stops being accepted (RFC 3339); none: it does not expire.
    secret_expires_at: Option<String>,
}

/// Rotates the client secret. The previous one is accepted for the grace the rotation
/// names (a leaked one is cut off with 0), and never beyond its own expiry.
pub(super) async fn rotate_secret(
    state: web::Data<AppState>,
    admin: Admin,
    id: web::Path<String>,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let rotation: Rotation = super::error::optional_json(payload).await?;
    let now = state.clock.now();
    let grace = rotation
        .previous_secret_grace_seconds
        .unwrap_or(SECRET_GRACE_SECONDS_DEFAULT);
    if grace > SECRET_GRACE_SECONDS_MAX {
        return Err(ApiError::invalid(
            "previous_secret_grace_seconds",
            format!(
                "at most {SECRET_GRACE_SECONDS_MAX} seconds (7 days); 0 refuses the previous secret at once"
            ),
        ));
    }
    let secret_expires_at = rotation
        .secret_expires_at
        .as_deref()
        .map(|text| parse_time("secret_expires_at", text, now))
        .transpose()?;
    let secret = new_secret("wrt_cs_");
    // Within i64: the grace is at most SECRET_GRACE_SECONDS_MAX.
    let previous_valid_until = now.plus_seconds(i64::try_from(grace).unwrap_or(i64::MAX));
    let client_id = ClientId(id.into_inner());
    let event = AgentSecretRotated {
        client_id: client_id.clone(),
        secret_hash: state.secrets.hash(&secret),
        previous_valid_until,
        secret_expires_at,
        by: admin.0,
    };
    state
        .ledger
        .submit(Command::RotateAgentSecret(event))
        .await?;
    // As the projection holds it: the grace never outlives the previous secret's expiry.
    let previous_valid_until = state
        .ledger
        .read(|s| s.agent(&client_id).and_then(|agent| agent.previous_secret))
        .map_or(previous_valid_until, |(_, until)| until);
    Ok(HttpResponse::Ok().json(serde_json::json!({
        "client_secret": secret,
        "secret_expires_at": secret_expires_at.map(|t| t.to_string()),
        "previous_valid_until": previous_valid_until.to_string(),
    })))
}

/// Disables an agent and revokes every token it holds or acted in.
pub(super) async fn disable(
    state: web::Data<AppState>,
    admin: Admin,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let command = Command::DisableAgent {
        client_id: ClientId(id.into_inner()),
        by: admin.0,
    };
    state.ledger.submit(command).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Enables a disabled agent.
pub(super) async fn enable(
    state: web::Data<AppState>,
    admin: Admin,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let command = Command::EnableAgent {
        client_id: ClientId(id.into_inner()),
        by: admin.0,
    };
    state.ledger.submit(command).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Sets the agent's governance ceilings (absent: no ceiling beyond the defaults).
pub(super) async fn policy(
    state: web::Data<AppState>,
    admin: Admin,
    id: web::Path<String>,
    body: web::Json<PolicyView>,
) -> Result<HttpResponse, ApiError> {
    let p = body.into_inner();
    if p.max_ttl_seconds
        .is_some_and(|ttl| ttl == 0 || ttl > POLICY_TTL_SECONDS_MAX)
    {
        return Err(ApiError::invalid(
            "max_ttl_seconds",
            format!("1 to {POLICY_TTL_SECONDS_MAX}"),
        ));
    }
    if p.max_delegation_depth
        .is_some_and(|depth| depth > POLICY_DELEGATION_DEPTH_MAX)
    {
        return Err(ApiError::invalid(
            "max_delegation_depth",
            format!("0 to {POLICY_DELEGATION_DEPTH_MAX}"),
        ));
    }
    if p.max_operations == Some(0) {
        return Err(ApiError::invalid(
            "max_operations",
            "at least 1 (disable the agent to stop it)",
        ));
    }
    if let Some(scopes) = &p.allowed_scopes {
        check_scopes("allowed_scopes", scopes)?;
    }
    if let Some(audiences) = &p.allowed_audiences {
        check_uris("allowed_audiences", audiences)?;
    }
    if p.token_requests_per_minute == Some(0) {
        return Err(ApiError::invalid(
            "token_requests_per_minute",
            "at least 1 (disable the agent to stop it)",
        ));
    }
    let event = AgentPolicySet {
        client_id: ClientId(id.into_inner()),
        max_ttl_seconds: p.max_ttl_seconds,
        allowed_scopes: p.allowed_scopes,
        allowed_audiences: p.allowed_audiences,
        max_delegation_depth: p.max_delegation_depth,
        max_operations: p.max_operations,
        token_requests_per_minute: p.token_requests_per_minute,
        by: admin.0,
    };
    state.ledger.submit(Command::SetAgentPolicy(event)).await?;
    Ok(HttpResponse::NoContent().finish())
}
