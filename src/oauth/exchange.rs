//! RFC 8693 token exchange at `/oauth/token`
//! (`grant_type=urn:ietf:params:oauth:grant-type:token-exchange`): an agent, authenticated
//! as the client, trades a `subject_token` for a token on a person's behalf. The subject
//! is one of:
//!
//! - a person's writ user id (`urn:writ:params:oauth:token-type:user-id`): as
//!   `client_credentials` with that id in `actor_token`;
//! - a writ token (`urn:ietf:params:oauth:token-type:access_token` or `...:jwt`), found
//!   by the BLAKE3 digest of its bytes as introspection finds it, never by verifying its
//!   signature: a person's own token (subject a person, no `act`), which the new actor
//!   may act on under the person's delegation to it; or an agent's token acting for a
//!   person, which is delegated one agent further down a chain;
//! - a JWT from a trusted external issuer, verified before this module is reached, whose
//!   `email` names the writ user.
//!
//! **Who is the new actor, and who may ask.** The authenticated client is the party
//! requesting. Without `actor_token` the client is the new actor. With `actor_token` (a
//! live writ token an agent holds for itself, from `client_credentials`) the new actor is
//! that token's agent, and then either it is the client itself, or the client holds
//! `subject_token` (its `client_id`) and so delegates its own token to the agent it names.
//! A sub-agent that was handed the token presents it with its own credentials; an agent
//! cannot delegate a token it neither holds nor was handed, and possession of the subject
//! token plus the new actor's own credentials (or its token) is the proof RFC 8693 asks.
//! The holder of an agent token cannot make itself its own next actor, and an agent
//! appears at most once in a chain.
//!
//! **What narrows.** A chained token starts from the new actor's own terms (its scopes and
//! policy ceilings) and is narrowed to the subject token: scopes (asking for more is
//! `invalid_scope`), audience (`invalid_target`), expiry (capped at the subject token's)
//! and operations (capped at what the subject token has left), and it is never laxer than
//! the subject token (`decide::strictness`: a supervised token's children are
//! supervised); it keeps the subject
//! token's person and delegation, and its `act` chain is the new actor outside the subject
//! token's chain. The chain may be no deeper than the `max_delegation_depth` of any agent
//! in it ([`crate::decide::DELEGATION_DEPTH_DEFAULT`] when unset). A person's own token
//! narrows scopes, expiry and operations the same way but not the audience: it is
//! addressed to writ, where it is exchanged.
//!
//! Reads the projections and takes `now` as a value; the sequencer checks the parent
//! token, the delegation, the person and the depth again when it records the token.

use std::collections::BTreeMap;

use writ_projections::{Agent, State, Token};
use writ_schemas::{AgentType, ClientId, Digest, Timestamp};

use super::on_behalf::{self, ActingFor, NO_DELEGATION, USER_ID_TOKEN_TYPE};
use super::terms::within_agent_expiry;
use super::{Terms, agent_terms};
use crate::decide::strictness;
use crate::http::oauth_error::OAuthError;

/// The RFC 8693 grant type.
pub const TOKEN_EXCHANGE_GRANT: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
/// An OAuth access token (RFC 8693 §3): what writ issues, and a writ token as a subject.
pub const ACCESS_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";
/// A JWT (RFC 8693 §3): a writ token, or a trusted external issuer's.
pub const JWT_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:jwt";

type Form = BTreeMap<String, String>;

/// A person a trusted external issuer vouched for, from its verified JWT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExternalSubject {
    /// The issuer (`iss`).
    pub issuer: String,
    /// The `email` claim, which names the writ user.
    pub email: Option<String>,
    /// The keyed hash of `email` (`People::email_hash`), by which a person whose email
    /// is sealed is found; set by the HTTP layer, which holds the key.
    pub email_hash: Option<writ_schemas::Digest>,
    /// `exp`: the token issued for it never outlives this.
    pub expires_at: Timestamp,
}

/// What `subject_token` turned out to be.
enum Subject<'s> {
    /// A person by id.
    Person(writ_schemas::UserId),
    /// A person's own writ token.
    PersonToken(&'s Token),
    /// An agent's writ token acting for a person, to be delegated further.
    AgentToken(&'s Token),
    /// A trusted external issuer's JWT.
    External(&'s ExternalSubject),
}

impl Subject<'_> {
    /// The agent holding the subject token, when it is a writ token.
    fn holder(&self) -> Option<&ClientId> {
        match self {
            Subject::PersonToken(token) | Subject::AgentToken(token) => Some(&token.client_id),
            Subject::Person(_) | Subject::External(_) => None,
        }
    }
}

/// The agent a token exchange issues to (the new actor) and the token's terms, or why not.
/// `external` is the verified subject when `subject_token` is a trusted issuer's JWT.
pub fn token_exchange_grant(
    state: &State,
    client: &Agent,
    form: &Form,
    issuer: &str,
    external: Option<&ExternalSubject>,
    now: Timestamp,
) -> Result<(ClientId, Terms), OAuthError> {
    if !client.grant_types.iter().any(|g| g == TOKEN_EXCHANGE_GRANT) {
        return Err(OAuthError::unauthorized_client(format!(
            "this agent is not registered for the {TOKEN_EXCHANGE_GRANT} grant"
        )));
    }
    if let Some(other) = form
        .get("requested_token_type")
        .filter(|t| *t != ACCESS_TOKEN_TYPE)
    {
        return Err(OAuthError::invalid_request(format!(
            "requested_token_type `{other}` is not issued here; writ issues {ACCESS_TOKEN_TYPE}"
        )));
    }
    let subject = subject(state, form, external, now)?;
    let actor = new_actor(state, client, form, &subject, now)?;
    let terms = agent_terms(actor, form, issuer)?;
    let scope_requested = form.contains_key("scope");
    let terms = match subject {
        Subject::Person(user_id) => {
            on_behalf::on_behalf_of(state, actor, user_id, scope_requested, now, terms)?
        }
        Subject::PersonToken(parent) => {
            let user_id = parent.user_id.clone().ok_or_else(not_for_a_person)?;
            let terms =
                on_behalf::on_behalf_of(state, actor, user_id, scope_requested, now, terms)?;
            let mut terms = narrow_to(parent, actor, form, terms, false, now)?;
            if let Some(acting_for) = &mut terms.acting_for {
                acting_for.parent_jti = Some(parent.jti.clone());
            }
            terms
        }
        Subject::AgentToken(parent) => chain(state, actor, parent, form, terms, now)?,
        Subject::External(vouched) => external_person(state, actor, vouched, form, terms, now)?,
    };
    Ok((
        actor.client_id.clone(),
        within_agent_expiry(actor, now, terms)?,
    ))
}

fn subject<'s>(
    state: &'s State,
    form: &Form,
    external: Option<&'s ExternalSubject>,
    now: Timestamp,
) -> Result<Subject<'s>, OAuthError> {
    let supported = format!("{USER_ID_TOKEN_TYPE}, {ACCESS_TOKEN_TYPE} or {JWT_TOKEN_TYPE}");
    let token = form.get("subject_token").ok_or_else(|| {
        OAuthError::invalid_request(
            "subject_token is missing: send the token, or the user id, the new token acts for",
        )
    })?;
    let token_type = form.get("subject_token_type").ok_or_else(|| {
        OAuthError::invalid_request(format!(
            "subject_token_type is missing (RFC 8693 §2.1): send {supported}"
        ))
    })?;
    match token_type.as_str() {
        USER_ID_TOKEN_TYPE => on_behalf::parse_user_id(token, "subject_token").map(Subject::Person),
        ACCESS_TOKEN_TYPE | JWT_TOKEN_TYPE => {
            match state.token_by_digest(&Digest::of(token.as_bytes())) {
                Some(found) => writ_subject(found, now),
                None => external.map(Subject::External).ok_or_else(|| {
                    OAuthError::invalid_grant(
                        "subject_token is not an active token: writ did not issue it, and it is no JWT from a trusted issuer",
                    )
                }),
            }
        }
        other => Err(OAuthError::invalid_request(format!(
            "subject_token_type `{other}` is not supported; send {supported}"
        ))),
    }
}

/// Live as introspection has it: not revoked, not expired, not spent on completion.
fn live(token: &Token, now: Timestamp) -> bool {
    token.is_active(now) && !(token.exhausted && token.expires_on_completion)
}

fn writ_subject(token: &Token, now: Timestamp) -> Result<Subject<'_>, OAuthError> {
    if !live(token, now) {
        return Err(OAuthError::invalid_grant(
            "subject_token is not an active token: it was revoked or has expired",
        ));
    }
    match (&token.user_id, token.actors.is_empty()) {
        (Some(_), true) => Ok(Subject::PersonToken(token)),
        (Some(_), false) => Ok(Subject::AgentToken(token)),
        (None, _) => Err(not_for_a_person()),
    }
}

fn not_for_a_person() -> OAuthError {
    OAuthError::invalid_grant(
        "subject_token is an agent's token for itself: it acts for no person, so there is nothing to delegate (an agent gets its own token with client_credentials)",
    )
}

/// The agent the new token is for: the client, or the agent `actor_token` names when the
/// client may name it (see the module's rule).
fn new_actor<'s>(
    state: &'s State,
    client: &'s Agent,
    form: &Form,
    subject: &Subject<'_>,
    now: Timestamp,
) -> Result<&'s Agent, OAuthError> {
    let named = match (form.get("actor_token"), form.get("actor_token_type")) {
        (None, None) => None,
        (Some(token), Some(token_type)) => Some(named_actor(state, token, token_type, now)?),
        _ => {
            return Err(OAuthError::invalid_request(
                "actor_token and actor_token_type come together (RFC 8693 §2.1), or not at all",
            ));
        }
    };
    let holder = subject.holder();
    let actor_id = match named {
        None => &client.client_id,
        Some(id) if *id == client.client_id || holder == Some(&client.client_id) => id,
        Some(_) => {
            return Err(OAuthError::invalid_request(
                "actor_token is another agent's: only the agent holding subject_token may delegate it to another agent; a sub-agent that was handed the token exchanges it with its own credentials",
            ));
        }
    };
    if matches!(subject, Subject::AgentToken(_)) && holder == Some(actor_id) {
        return Err(OAuthError::invalid_request(
            "this agent already holds subject_token: name the sub-agent it delegates to by actor_token, or let the sub-agent exchange the token with its own credentials",
        ));
    }
    let agent = state.agent(actor_id).ok_or_else(|| {
        OAuthError::invalid_request(format!("agent {actor_id} is not registered"))
    })?;
    if !agent.enabled || agent.expires_at.is_some_and(|end| now >= end) {
        return Err(OAuthError::invalid_request(format!(
            "agent {actor_id} is disabled or expired: it can be given no token"
        )));
    }
    Ok(agent)
}

/// The agent whose own live writ token `token` is.
fn named_actor<'s>(
    state: &'s State,
    token: &str,
    token_type: &str,
    now: Timestamp,
) -> Result<&'s ClientId, OAuthError> {
    if token_type != ACCESS_TOKEN_TYPE && token_type != JWT_TOKEN_TYPE {
        return Err(OAuthError::invalid_request(format!(
            "actor_token_type `{token_type}` is not supported here; send {ACCESS_TOKEN_TYPE} with the sub-agent's own writ token"
        )));
    }
    state
        .token_by_digest(&Digest::of(token.as_bytes()))
        .filter(|t| live(t, now) && t.user_id.is_none() && t.actors.is_empty())
        .map(|t| &t.client_id)
        .ok_or_else(|| {
            OAuthError::invalid_request(
                "actor_token is not a live writ token an agent holds for itself (from client_credentials)",
            )
        })
}

/// Delegates an agent's token for a person one agent further: the same person and
/// delegation, the chain one deeper, the terms narrowed to the parent.
fn chain(
    state: &State,
    actor: &Agent,
    parent: &Token,
    form: &Form,
    terms: Terms,
    now: Timestamp,
) -> Result<Terms, OAuthError> {
    if parent.actors.contains(&actor.client_id) {
        return Err(OAuthError::invalid_grant(format!(
            "agent {} already acts in subject_token's chain; a chain passes through each agent once",
            actor.client_id
        )));
    }
    let mut actors = vec![actor.client_id.clone()];
    actors.extend(parent.actors.iter().cloned());
    crate::decide::within_depth(state, &actors)
        .map_err(|refused| OAuthError::grant_forbidden(refused.to_string()))?;
    let (Some(user_id), Some(delegation_id)) = (&parent.user_id, &parent.delegation_id) else {
        return Err(not_for_a_person());
    };
    // The parent would have been revoked with either; said plainly all the same.
    if !state.user(user_id).is_some_and(|user| user.active) {
        return Err(OAuthError::grant_forbidden(
            "delegator user is deactivated; an admin must reactivate them first",
        ));
    }
    if !state
        .delegation(delegation_id)
        .is_some_and(|d| d.is_active(now))
    {
        return Err(OAuthError::grant_forbidden(NO_DELEGATION));
    }
    let mut terms = narrow_to(parent, actor, form, terms, true, now)?;
    terms.acting_for = Some(ActingFor {
        user_id: user_id.clone(),
        delegation_id: delegation_id.clone(),
        earlier_actors: parent.actors.clone(),
        parent_jti: Some(parent.jti.clone()),
    });
    Ok(terms)
}

/// Narrows `terms` to `parent`: never more scopes, a later expiry or more operations than
/// it has left, nor (when `audience`) a wider audience. Unnamed, the task and intent are
/// the parent's.
fn narrow_to(
    parent: &Token,
    actor: &Agent,
    form: &Form,
    mut terms: Terms,
    audience: bool,
    now: Timestamp,
) -> Result<Terms, OAuthError> {
    if form.contains_key("scope") {
        if let Some(outside) = terms.scopes.iter().find(|s| !parent.scopes.contains(s)) {
            return Err(OAuthError::invalid_scope(format!(
                "scope `{outside}` is not in subject_token: an exchanged token never gains scopes"
            )));
        }
    } else {
        terms.scopes.retain(|s| parent.scopes.contains(s));
        if terms.scopes.is_empty() && !parent.scopes.is_empty() {
            return Err(OAuthError::invalid_scope(format!(
                "agent {} holds none of subject_token's scopes ({}), or its policy allows none",
                actor.client_id,
                parent.scopes.join(" ")
            )));
        }
    }
    if audience {
        terms.audience = narrow_audience(parent, actor, form, terms.audience)?;
    }
    terms.agent_type = agent_type_within(parent, actor, form, terms.agent_type)?;
    let left = parent.expires_at.unix_seconds() - now.unix_seconds();
    let left = u64::try_from(left)
        .ok()
        .filter(|seconds| *seconds > 0)
        .ok_or_else(|| {
            OAuthError::invalid_grant("subject_token is not an active token: it has expired")
        })?;
    terms.ttl_seconds = terms.ttl_seconds.min(left);
    if let Some(left) = parent.operations_remaining() {
        if left == 0 {
            return Err(OAuthError::invalid_grant(
                "subject_token's operation quota is used up: there is nothing left to delegate",
            ));
        }
        terms.max_operations = Some(terms.max_operations.map_or(left, |n| n.min(left)));
    }
    if terms.task_id.is_none() {
        terms.task_id.clone_from(&parent.task_id);
    }
    if terms.intent_description.is_none() {
        terms
            .intent_inherited
            .clone_from(&parent.intent_description);
    }
    Ok(terms)
}

/// The type of a token exchanged from `parent`: as strict as the parent and as the new
/// actor's registration (`decide::strictness`). Asked for, it must be; unasked, it is the
/// stricter of the two. A child of a supervised token is supervised.
fn agent_type_within(
    parent: &Token,
    actor: &Agent,
    form: &Form,
    terms: AgentType,
) -> Result<AgentType, OAuthError> {
    let floor = parent.agent_type;
    if form.contains_key("agent_type") {
        if !strictness::within(terms, floor) {
            return Err(OAuthError::invalid_request(format!(
                "subject_token is {floor}, so a token exchanged from it is {floor} too: ask for agent_type={floor} or leave agent_type out",
                floor = strictness::name(floor)
            )));
        }
        return Ok(terms);
    }
    strictness::stricter(terms, floor).ok_or_else(|| {
        OAuthError::invalid_request(format!(
            "agent {} is registered {} and subject_token is {}: no token can be both, so it cannot be exchanged to this agent",
            actor.client_id,
            strictness::name(actor.agent_type),
            strictness::name(floor)
        ))
    })
}

/// The requested audience if it lies within the parent's, else the parent's own (within
/// the new actor's `allowed_audiences`).
fn narrow_audience(
    parent: &Token,
    actor: &Agent,
    form: &Form,
    requested: Vec<String>,
) -> Result<Vec<String>, OAuthError> {
    if form.contains_key("resource") || form.contains_key("audience") {
        if let Some(outside) = requested.iter().find(|a| !parent.audience.contains(a)) {
            return Err(OAuthError::invalid_target(format!(
                "audience `{outside}` is not among subject_token's: an exchanged token never widens its audience"
            )));
        }
        return Ok(requested);
    }
    if let Some(allowed) = &actor.ceilings.allowed_audiences
        && let Some(outside) = parent.audience.iter().find(|a| !allowed.contains(a))
    {
        return Err(OAuthError::invalid_target(format!(
            "subject_token's audience `{outside}` is outside agent {}'s policy; name an audience it allows with `resource`",
            actor.client_id
        )));
    }
    Ok(parent.audience.clone())
}

/// A token for the writ user a trusted issuer's JWT names by `email`, under their
/// delegation to the new actor, never outliving the JWT.
fn external_person(
    state: &State,
    actor: &Agent,
    vouched: &ExternalSubject,
    form: &Form,
    terms: Terms,
    now: Timestamp,
) -> Result<Terms, OAuthError> {
    let sealed = vouched
        .email_hash
        .as_ref()
        .and_then(|hash| state.user_by_email_hash(hash));
    let user = sealed
        .or_else(|| vouched.email.as_deref().and_then(|email| state.user_by_email(email)))
        .ok_or_else(|| {
            OAuthError::invalid_grant(format!(
                "the external token's subject is not a writ user: no writ user has its email claim (issuer {})",
                vouched.issuer
            ))
        })?;
    let mut terms = on_behalf::on_behalf_of(
        state,
        actor,
        user.user_id.clone(),
        form.contains_key("scope"),
        now,
        terms,
    )?;
    let left = vouched.expires_at.unix_seconds() - now.unix_seconds();
    let left = u64::try_from(left)
        .ok()
        .filter(|seconds| *seconds > 0)
        .ok_or_else(|| OAuthError::invalid_grant("the external token has expired"))?;
    terms.ttl_seconds = terms.ttl_seconds.min(left);
    Ok(terms)
}
