//! What a token may carry: scopes, audience, lifetime and the agent-token extensions,
//! from the request, narrowed by the agent and its governance ceilings.

use std::collections::BTreeMap;

use writ_projections::Agent;
use writ_schemas::{AgentType, Timestamp};

use crate::decide::Refusal;
use crate::http::oauth_error::OAuthError;

/// Lifetime of a token when the request names none.
pub const TTL_SECONDS_DEFAULT: u64 = 15 * 60;
/// Longest lifetime unless the agent's policy sets its own ceiling.
pub const TTL_SECONDS_CEILING: u64 = 60 * 60;
/// Lifetime of an ephemeral agent's token when the request names none.
pub const EPHEMERAL_TTL_SECONDS: u64 = 5 * 60;
/// Operations an ephemeral agent's token allows when the request names none.
pub const EPHEMERAL_OPERATIONS: u64 = 10;
/// An `expires_in` beyond this is a mistake, not a wish to be capped.
pub const EXPIRES_IN_SECONDS_ABSURD: u64 = 10 * 365 * 24 * 3600;
/// Longest `task_id`.
pub const TASK_ID_BYTES_MAX: usize = 200;
/// Longest `intent_description`.
pub const INTENT_BYTES_MAX: usize = 1000;

/// The terms of a token about to be issued.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Terms {
    /// Granted scopes.
    pub scopes: Vec<String>,
    /// `aud`.
    pub audience: Vec<String>,
    /// Lifetime.
    pub ttl_seconds: u64,
    /// How the agent runs.
    pub agent_type: AgentType,
    /// Task.
    pub task_id: Option<String>,
    /// Operation quota.
    pub max_operations: Option<u64>,
    /// Revoke on the last operation.
    pub expires_on_completion: bool,
    /// Stated intent, as asked for this token.
    pub intent_description: Option<String>,
    /// The intent of the token this one was exchanged from, kept as the ledger holds it
    /// (sealed under the same person's key) when none was asked for.
    pub intent_inherited: Option<writ_projections::Personal>,
    /// The person an on-behalf-of token acts for (none: the agent acts for itself).
    pub acting_for: Option<super::on_behalf::ActingFor>,
}

type Form = BTreeMap<String, String>;

/// The terms of a `client_credentials` token for `agent`.
pub fn client_credentials_terms(
    agent: &Agent,
    form: &Form,
    issuer: &str,
) -> Result<Terms, OAuthError> {
    if !agent.grant_types.iter().any(|g| g == "client_credentials") {
        return Err(OAuthError::unauthorized_client(
            "this agent is not registered for the client_credentials grant",
        ));
    }
    agent_terms(agent, form, issuer)
}

/// The terms of a token `agent` would hold, from the request narrowed by the agent's
/// scopes and ceilings, whatever the grant (which the caller has checked).
pub fn agent_terms(agent: &Agent, form: &Form, issuer: &str) -> Result<Terms, OAuthError> {
    let agent_type = match form.get("agent_type").map(String::as_str) {
        None => agent.agent_type,
        Some("autonomous") => AgentType::Autonomous,
        Some("supervised") => AgentType::Supervised,
        Some("ephemeral") => AgentType::Ephemeral,
        Some(other) => {
            return Err(OAuthError::invalid_request(format!(
                "agent_type `{other}` is not autonomous, supervised or ephemeral"
            )));
        }
    };
    // A supervised agent asking for an autonomous token would skip its approvals.
    if !crate::decide::strictness::within(agent_type, agent.agent_type) {
        return Err(OAuthError::invalid_request(
            Refusal::LaxerThanAgent(agent.client_id.clone(), agent.agent_type).to_string(),
        ));
    }
    let ephemeral = agent_type == AgentType::Ephemeral;
    let max_operations = operations(agent, form, ephemeral)?;
    let expires_on_completion = match form.get("expires_on_completion").map(String::as_str) {
        None => ephemeral,
        Some("true") => true,
        Some("false") => false,
        Some(other) => {
            return Err(OAuthError::invalid_request(format!(
                "expires_on_completion `{other}` is not true or false"
            )));
        }
    };
    Ok(Terms {
        scopes: scopes(agent, form.get("scope"))?,
        audience: audience(agent, form, issuer)?,
        ttl_seconds: lifetime(agent, form.get("expires_in"), ephemeral)?,
        agent_type,
        task_id: text(form, "task_id", TASK_ID_BYTES_MAX)?,
        max_operations,
        expires_on_completion,
        intent_description: text(form, "intent_description", INTENT_BYTES_MAX)?,
        intent_inherited: None,
        acting_for: None,
    })
}

/// Seconds a token issued at `now` may live within `agent`'s expiry (none: the agent
/// has no expiry). `exp` is whole seconds after `iat`, both counted from whole seconds,
/// so this many never carry it past the expiry. Refused when not one second is left.
pub fn agent_seconds_left(agent: &Agent, now: Timestamp) -> Result<Option<u64>, Refusal> {
    let Some(end) = agent.expires_at else {
        return Ok(None);
    };
    let left = end.unix_seconds().saturating_sub(now.unix_seconds());
    match u64::try_from(left) {
        Ok(seconds) if seconds > 0 => Ok(Some(seconds)),
        _ => Err(Refusal::AgentExpired(agent.client_id.to_string(), end)),
    }
}

/// `terms` with a lifetime that ends no later than `agent`'s expiry: a token never
/// outlives the agent holding it. Capped rather than refused, unless nothing is left.
pub fn within_agent_expiry(
    agent: &Agent,
    now: Timestamp,
    mut terms: Terms,
) -> Result<Terms, OAuthError> {
    let left = agent_seconds_left(agent, now)
        .map_err(|refused| OAuthError::invalid_client(refused.to_string()))?;
    if let Some(left) = left {
        terms.ttl_seconds = terms.ttl_seconds.min(left);
    }
    Ok(terms)
}

fn scopes(agent: &Agent, requested: Option<&String>) -> Result<Vec<String>, OAuthError> {
    let ceiling = agent.ceilings.allowed_scopes.as_ref();
    let allowed = |scope: &String| ceiling.is_none_or(|allowed| allowed.contains(scope));
    let Some(requested) = requested else {
        return Ok(agent
            .scopes
            .iter()
            .filter(|s| allowed(s))
            .cloned()
            .collect());
    };
    let mut granted: Vec<String> = Vec::new();
    for scope in requested.split(' ').filter(|s| !s.is_empty()) {
        let scope = scope.to_owned();
        if !agent.scopes.contains(&scope) {
            return Err(OAuthError::invalid_scope(format!(
                "scope `{scope}` is not granted to this agent"
            )));
        }
        if !allowed(&scope) {
            return Err(OAuthError::invalid_scope(format!(
                "scope `{scope}` is outside this agent's policy"
            )));
        }
        if !granted.contains(&scope) {
            granted.push(scope);
        }
    }
    Ok(granted)
}

fn audience(agent: &Agent, form: &Form, issuer: &str) -> Result<Vec<String>, OAuthError> {
    let named: Vec<String> = ["resource", "audience"]
        .iter()
        .filter_map(|key| form.get(*key).cloned())
        .collect();
    if named.is_empty() {
        return Ok(vec![issuer.to_owned()]);
    }
    if let Some(allowed) = &agent.ceilings.allowed_audiences
        && let Some(outside) = named.iter().find(|aud| !allowed.contains(aud))
    {
        return Err(OAuthError::invalid_target(format!(
            "audience `{outside}` is outside this agent's policy"
        )));
    }
    Ok(named)
}

fn lifetime(agent: &Agent, requested: Option<&String>, ephemeral: bool) -> Result<u64, OAuthError> {
    let ceiling = agent
        .ceilings
        .max_ttl_seconds
        .unwrap_or(TTL_SECONDS_CEILING);
    let default = if ephemeral {
        EPHEMERAL_TTL_SECONDS
    } else {
        TTL_SECONDS_DEFAULT
    };
    let Some(text) = requested else {
        return Ok(default.min(ceiling));
    };
    let seconds: u64 = text.parse().map_err(|_| {
        OAuthError::invalid_request(format!(
            "expires_in `{text}` is not a whole number of seconds"
        ))
    })?;
    if seconds == 0 || seconds > EXPIRES_IN_SECONDS_ABSURD {
        return Err(OAuthError::invalid_request(format!(
            "expires_in must be between 1 and {EXPIRES_IN_SECONDS_ABSURD} seconds (tokens are capped at {ceiling})"
        )));
    }
    Ok(seconds.min(ceiling))
}

fn operations(agent: &Agent, form: &Form, ephemeral: bool) -> Result<Option<u64>, OAuthError> {
    let ceiling = agent.ceilings.max_operations;
    let Some(text) = form.get("max_operations") else {
        let default = if ephemeral {
            Some(EPHEMERAL_OPERATIONS)
        } else {
            None
        };
        return Ok(match (default, ceiling) {
            (Some(d), Some(c)) => Some(d.min(c)),
            (d, c) => d.or(c),
        });
    };
    let requested: u64 = text
        .parse()
        .ok()
        .filter(|n| *n >= 1 && *n <= writ_schemas::INTEGER_MAGNITUDE_MAX)
        .ok_or_else(|| {
            OAuthError::invalid_request(format!(
                "max_operations `{text}` is not a whole number from 1"
            ))
        })?;
    if let Some(ceiling) = ceiling.filter(|c| requested > *c) {
        return Err(OAuthError::invalid_request(format!(
            "max_operations {requested} is above this agent's ceiling of {ceiling}"
        )));
    }
    Ok(Some(requested))
}

fn text(form: &Form, name: &str, bytes_max: usize) -> Result<Option<String>, OAuthError> {
    match form.get(name) {
        Some(value) if value.len() > bytes_max || value.chars().any(char::is_control) => {
            Err(OAuthError::invalid_request(format!(
                "{name} must be at most {bytes_max} bytes of text without control characters"
            )))
        }
        value => Ok(value.cloned()),
    }
}
