//! `POST /oauth/token` and its JSON form `POST /oauth/agent-token`. The
//! `client_credentials` grant: the agent gets an RFC 9068 access token for itself, or,
//! naming a person by `actor_token`, on their behalf under their delegation (`sub` the
//! person, `act.sub` the agent). RFC 8693 token exchange (`oauth/exchange.rs`): the same
//! on a person's behalf from a `subject_token`, or an agent's token for a person
//! delegated one agent further, `act` nesting the chain. Either way the token is recorded
//! in the ledger (by the digest of its bytes) before it is handed out.

use std::collections::BTreeMap;

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use jsonwebtoken::Header;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use writ_projections::Personal;
use writ_schemas::{AssertionUsed, ClientId, Digest, Jti, KeyId, Sealed, Timestamp, TokenIssued};

use super::AppState;
use super::oauth_error::{OAuthError, client_form, no_store, read_form_body};
use crate::decide::{Command, Refusal};
use crate::ledger::SubmitError;
use crate::oauth::{
    ACCESS_TOKEN_TYPE, AuthMethod, ExternalSubject, JWT_TOKEN_TYPE, Presented,
    TOKEN_EXCHANGE_GRANT, Terms, USER_ID_TOKEN_TYPE, authenticate_at_token,
    client_credentials_grant, token_exchange_grant,
};
use crate::people::Field;

/// Body size accepted at the token endpoints.
pub const FORM_BODY_BYTES_MAX: usize = 16 * 1024;

/// Issues a token.
pub(super) async fn issue(
    state: web::Data<AppState>,
    request: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, OAuthError> {
    let body = read_form_body(payload).await?;
    let (form, presented) = client_form(&request, &body)?;
    let issued = grant(&state, &form, &presented).await?;
    Ok(no_store().json(issued))
}

/// `POST /oauth/agent-token`: an on-behalf-of token asked for in JSON. Each member maps
/// onto the `/oauth/token` parameter of the same name, and the request then takes the
/// same path as a form one.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AgentTokenRequest {
    client_id: String,
    client_secret: String,
    delegated_by_user_id: String,
    agent_type: Option<String>,
    scope: Option<String>,
    task_id: Option<String>,
    max_operations: Option<u64>,
    expires_on_completion: Option<bool>,
    intent_description: Option<String>,
    expires_in: Option<u64>,
}

/// Issues an on-behalf-of token asked for in JSON.
pub(super) async fn issue_agent_token(
    state: web::Data<AppState>,
    request: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, OAuthError> {
    let body = read_form_body(payload).await?;
    let json = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !json {
        return Err(OAuthError::invalid_request(
            "send the request as application/json",
        ));
    }
    let asked: AgentTokenRequest = serde_json::from_slice(&body).map_err(|err| {
        OAuthError::invalid_request(format!(
            "the body is not a valid agent-token request: {err}"
        ))
    })?;
    let presented = Presented {
        client_id: asked.client_id.clone(),
        secret: asked.client_secret.clone(),
        method: AuthMethod::Json,
    };
    let issued = grant(&state, &agent_token_form(asked), &presented).await?;
    Ok(no_store().json(issued))
}

/// The `/oauth/token` form an agent-token request stands for.
fn agent_token_form(asked: AgentTokenRequest) -> BTreeMap<String, String> {
    let mut form = BTreeMap::from([
        ("grant_type".to_owned(), "client_credentials".to_owned()),
        ("actor_token".to_owned(), asked.delegated_by_user_id),
        ("actor_token_type".to_owned(), USER_ID_TOKEN_TYPE.to_owned()),
    ]);
    let optional = [
        ("agent_type", asked.agent_type),
        ("scope", asked.scope),
        ("task_id", asked.task_id),
        (
            "max_operations",
            asked.max_operations.map(|n| n.to_string()),
        ),
        (
            "expires_on_completion",
            asked.expires_on_completion.map(|b| b.to_string()),
        ),
        ("intent_description", asked.intent_description),
        ("expires_in", asked.expires_in.map(|n| n.to_string())),
    ];
    for (name, value) in optional {
        if let Some(value) = value {
            form.insert(name.to_owned(), value);
        }
    }
    form
}

/// Authenticates the client, works out the token's terms and issues it.
async fn grant(
    state: &AppState,
    form: &BTreeMap<String, String>,
    presented: &Presented,
) -> Result<Value, OAuthError> {
    let now = state.clock.now();
    let grant_type = form.get("grant_type").map(String::as_str);
    let external = match grant_type {
        Some(TOKEN_EXCHANGE_GRANT) => external_subject(state, form, presented, now).await?,
        _ => None,
    };
    if let Some(grant @ (AUTHORIZATION_CODE | REFRESH_TOKEN)) = grant_type {
        return super::code_grant::grant(state, form, presented, grant, now).await;
    }
    if presented.method == AuthMethod::None {
        return Err(OAuthError::invalid_client(
            "a public client (no secret) may only use the authorization_code and refresh_token grants",
        ));
    }
    let (client_id, terms, grant_type, assertion) = state.ledger.read(|s| {
        let (agent, assertion) =
            authenticate_at_token(s, &state.secrets, presented, &state.issuer, now)?;
        state
            .token_limits
            .check(&agent.client_id, agent.ceilings.token_requests_per_minute)
            .map_err(OAuthError::rate_limited)?;
        match grant_type {
            None => Err(OAuthError::invalid_request("grant_type is missing")),
            Some(CLIENT_CREDENTIALS) => Ok((
                agent.client_id.clone(),
                client_credentials_grant(s, agent, form, &state.issuer, now)?,
                CLIENT_CREDENTIALS,
                assertion,
            )),
            Some(TOKEN_EXCHANGE_GRANT) => {
                let (holder, terms) =
                    token_exchange_grant(s, agent, form, &state.issuer, external.as_ref(), now)?;
                Ok((holder, terms, TOKEN_EXCHANGE_GRANT, assertion))
            }
            Some(other) => Err(OAuthError::unsupported_grant_type(format!(
                "grant_type `{other}` is not supported here; send {CLIENT_CREDENTIALS}, {TOKEN_EXCHANGE_GRANT}, {AUTHORIZATION_CODE} or {REFRESH_TOKEN}"
            ))),
        }
    })?;
    let mut answer = sign_and_record(state, client_id, terms, grant_type, assertion, now).await?;
    if grant_type == TOKEN_EXCHANGE_GRANT {
        // RFC 8693 §2.2.1: the type of what was issued.
        answer["issued_token_type"] = json!(ACCESS_TOKEN_TYPE);
    }
    Ok(answer)
}

const CLIENT_CREDENTIALS: &str = "client_credentials";
/// The authorization code grant (RFC 6749 §4.1, with PKCE).
pub(super) const AUTHORIZATION_CODE: &str = "authorization_code";
/// The refresh token grant (RFC 6749 §6), rotating.
pub(super) const REFRESH_TOKEN: &str = "refresh_token";

/// The person a trusted external issuer's JWT in `subject_token` vouches for, verified
/// before the grant is decided (verifying may await the issuer's keys; the read of the
/// projections does not wait). Only a token writ did not issue is tried, writ's own being
/// found by digest and never verified, and only for an authenticated client, so nobody
/// else can make writ fetch keys or check signatures.
async fn external_subject(
    state: &AppState,
    form: &BTreeMap<String, String>,
    presented: &Presented,
    now: Timestamp,
) -> Result<Option<ExternalSubject>, OAuthError> {
    let typed_as_token = form
        .get("subject_token_type")
        .is_some_and(|t| t == ACCESS_TOKEN_TYPE || t == JWT_TOKEN_TYPE);
    let Some(token) = form.get("subject_token").filter(|_| typed_as_token) else {
        return Ok(None);
    };
    let digest = Digest::of(token.as_bytes());
    let writ_token = state.ledger.read(|s| {
        authenticate_at_token(s, &state.secrets, presented, &state.issuer, now)
            .map(|_| s.token_by_digest(&digest).is_some())
    })?;
    if writ_token {
        return Ok(None);
    }
    let mut vouched = state
        .trusted_issuers
        .verify(token, &state.issuer, now)
        .await?;
    if let Some(vouched) = &mut vouched {
        vouched.email_hash = vouched.email.as_deref().map(|e| state.people.email_hash(e));
    }
    Ok(vouched)
}

/// The intent as the ledger records it: sealed under the key of the person the token acts
/// for, in the clear for a token acting for no one (an agent's statement of its own task).
/// An intent inherited from the token it was exchanged from keeps its seal: the person is
/// the same.
fn recorded_intent(
    state: &AppState,
    terms: &Terms,
) -> Result<(Option<String>, Option<Box<Sealed>>), OAuthError> {
    let person = terms.acting_for.as_ref().map(|a| &a.user_id);
    let text = match (&terms.intent_description, &terms.intent_inherited) {
        (Some(text), _) => text.clone(),
        (None, Some(Personal::Sealed(sealed))) if person.is_some() => {
            return Ok((None, Some(Box::new(sealed.clone()))));
        }
        (None, Some(Personal::Clear(text))) => text.clone(),
        (None, _) => return Ok((None, None)),
    };
    match person {
        None => Ok((Some(text), None)),
        Some(user_id) => {
            let sealed = state
                .people
                .seal(user_id, Field::IntentDescription, &text)
                .map_err(|err| OAuthError::unavailable(err.to_string()))?;
            Ok((None, Some(Box::new(sealed))))
        }
    }
}

/// The intent the token response shows: as asked, or as inherited (opened for the answer).
fn shown_intent(state: &AppState, terms: &Terms) -> Option<String> {
    if let Some(text) = &terms.intent_description {
        return Some(text.clone());
    }
    let inherited = terms.intent_inherited.as_ref()?;
    let user_id = terms.acting_for.as_ref().map(|a| &a.user_id)?;
    Some(
        state
            .people
            .reveal(user_id, Field::IntentDescription, inherited),
    )
}

/// An RFC 9068 access token's claims, written straight from the request's terms.
#[derive(Serialize)]
struct Claims<'a> {
    iss: &'a str,
    sub: &'a str,
    aud: Audience<'a>,
    client_id: &'a str,
    scope: &'a str,
    iat: i64,
    exp: i64,
    jti: &'a str,
    agent_type: writ_schemas::AgentType,
    /// RFC 8693 §4.1: the agents are the actors, the newest outermost; the person is
    /// the subject.
    #[serde(skip_serializing_if = "Act::is_empty")]
    act: Act<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    delegation_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    task_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_operations: Option<u64>,
}

/// `aud`: a string when there is one audience, else an array.
#[derive(Serialize)]
#[serde(untagged)]
enum Audience<'a> {
    One(&'a str),
    Many(&'a [String]),
}

impl<'a> Audience<'a> {
    fn of(audience: &'a [String]) -> Audience<'a> {
        match audience {
            [one] => Audience::One(one),
            many => Audience::Many(many),
        }
    }
}

/// The `act` claim: `{"sub": <outermost actor>, "act": {"sub": <the one before>, ...}}`.
struct Act<'a>(&'a [ClientId]);

impl Act<'_> {
    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl Serialize for Act<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap as _;
        let Some((outermost, earlier)) = self.0.split_first() else {
            return serializer.serialize_none();
        };
        let mut map = serializer.serialize_map(Some(if earlier.is_empty() { 1 } else { 2 }))?;
        map.serialize_entry("sub", outermost.as_str())?;
        if !earlier.is_empty() {
            map.serialize_entry("act", &Act(earlier))?;
        }
        map.end()
    }
}

/// Signs `claims` with the current key: the token and the key's id.
pub(super) fn sign(
    state: &AppState,
    claims: &impl Serialize,
) -> Result<(String, KeyId), OAuthError> {
    // One atomic load; the guard is dropped before the caller awaits anything.
    let key = state.signing_keys.current();
    let mut header = Header::new(key.jws_algorithm());
    header.typ = Some("at+jwt".into());
    header.kid = Some(key.kid.to_string());
    let token = jsonwebtoken::encode(&header, claims, &key.encoding)
        .map_err(|err| OAuthError::server_error(format!("signing failed: {err}")))?;
    Ok((token, key.kid.clone()))
}

async fn sign_and_record(
    state: &AppState,
    client_id: ClientId,
    terms: Terms,
    grant_type: &str,
    assertion: Option<AssertionUsed>,
    now: Timestamp,
) -> Result<Value, OAuthError> {
    let (mut event, answer) = signed(state, client_id, terms, grant_type, None, now)?;
    // Spent in the same record as the token: the assertion cannot pay twice.
    event.client_assertion = assertion;
    state
        .ledger
        .submit(Command::IssueToken(event))
        .await
        .map_err(refusal)?;
    Ok(answer)
}

/// Signs the token `terms` describe: its `TokenIssued` (in refresh family `family`, if
/// any) and the answer that hands it out once that is recorded.
pub(super) fn signed(
    state: &AppState,
    client_id: ClientId,
    terms: Terms,
    grant_type: &str,
    family: Option<writ_schemas::FamilyId>,
    now: Timestamp,
) -> Result<(TokenIssued, Value), OAuthError> {
    let iat = now.unix_seconds();
    let ttl = i64::try_from(terms.ttl_seconds).unwrap_or(i64::MAX);
    let exp = iat.saturating_add(ttl);
    let jti = Jti(crate::secrets::new_secret(""));
    let scope = terms.scopes.join(" ");
    let subject = match &terms.acting_for {
        Some(acting_for) => acting_for.user_id.to_string(),
        None => client_id.to_string(),
    };
    // The `act` chain, outermost (this agent) first; empty for the agent's own token.
    let actors: Vec<ClientId> = match &terms.acting_for {
        Some(acting_for) => std::iter::once(client_id.clone())
            .chain(acting_for.earlier_actors.iter().cloned())
            .collect(),
        None => vec![],
    };
    let claims = Claims {
        iss: &state.issuer,
        sub: &subject,
        aud: Audience::of(&terms.audience),
        client_id: client_id.as_str(),
        scope: &scope,
        iat,
        exp,
        jti: jti.as_str(),
        agent_type: terms.agent_type,
        act: Act(&actors),
        delegation_id: terms.acting_for.as_ref().map(|a| a.delegation_id.as_str()),
        task_id: terms.task_id.as_deref(),
        max_operations: terms.max_operations,
    };
    let (intent_description, intent_sealed) = recorded_intent(state, &terms)?;
    let (token, kid) = sign(state, &claims)?;
    let expires_at = Timestamp::from_unix_micros(exp.saturating_mul(1_000_000)).unwrap_or(now);
    let acting_for = terms.acting_for.as_ref();
    let event = TokenIssued {
        jti,
        digest: Digest::of(token.as_bytes()),
        kid,
        grant_type: grant_type.to_owned(),
        client_id: client_id.clone(),
        subject,
        user_id: acting_for.map(|a| a.user_id.clone()),
        actors,
        delegation_id: acting_for.map(|a| a.delegation_id.clone()),
        parent_jti: acting_for.and_then(|a| a.parent_jti.clone()),
        family_id: family,
        audience: terms.audience.clone(),
        scopes: terms.scopes.clone(),
        issued_at: now,
        expires_at,
        agent_type: terms.agent_type,
        task_id: terms.task_id.clone(),
        max_operations: terms.max_operations,
        expires_on_completion: terms.expires_on_completion,
        intent_description,
        intent_sealed,
        client_assertion: None,
    };
    let mut answer = json!({
        "access_token": token, "token_type": "Bearer", "expires_in": ttl, "scope": scope,
        "agent_type": terms.agent_type, "expires_on_completion": terms.expires_on_completion,
    });
    let intent = shown_intent(state, &terms);
    for (name, value) in [
        ("task_id", terms.task_id.map(Value::from)),
        ("max_operations", terms.max_operations.map(Value::from)),
        ("intent_description", intent.map(Value::from)),
    ] {
        if let Some(value) = value {
            answer[name] = value;
        }
    }
    Ok((event, answer))
}

pub(super) fn refusal(err: SubmitError) -> OAuthError {
    match err {
        // The agent changed between the read and the append: refuse as if read after.
        SubmitError::Refused(
            refused @ (Refusal::AgentDisabled(_)
            | Refusal::AgentExpired(..)
            | Refusal::OutlivesAgent(..)
            | Refusal::UnknownAgent(_)),
        ) => OAuthError::invalid_client(refused.to_string()),
        // Two requests raced with one assertion, and this one was sequenced second.
        SubmitError::Refused(refused @ Refusal::AssertionReplayed(_)) => {
            OAuthError::invalid_client(refused.to_string())
        }
        // The delegation or its person changed between the read and the append.
        SubmitError::Refused(Refusal::DelegationInactive(_)) => OAuthError::grant_forbidden(
            "no active delegation for this user; the person must delegate to this agent first",
        ),
        SubmitError::Refused(Refusal::UserInactive(_)) => OAuthError::grant_forbidden(
            "delegator user is deactivated; an admin must reactivate them first",
        ),
        SubmitError::Refused(refused @ Refusal::ScopeNotDelegated(..)) => {
            OAuthError::invalid_scope(refused.to_string())
        }
        // The exchanged token was revoked, expired or used meanwhile.
        SubmitError::Refused(Refusal::ParentInactive(_)) => OAuthError::invalid_grant(
            "subject_token is not an active token: it was revoked or expired meanwhile",
        ),
        SubmitError::Refused(refused @ Refusal::ExceedsParent(..)) => {
            OAuthError::invalid_grant(format!("subject_token changed meanwhile: {refused}"))
        }
        // A policy tightened meanwhile.
        SubmitError::Refused(refused @ Refusal::TooDeep { .. }) => {
            OAuthError::grant_forbidden(refused.to_string())
        }
        SubmitError::Refused(other) => OAuthError::invalid_request(other.to_string()),
        SubmitError::Unavailable(why) => OAuthError::unavailable(why),
        overloaded @ SubmitError::Overloaded(_) => OAuthError::overloaded(overloaded.to_string()),
    }
}
