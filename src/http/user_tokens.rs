//! `POST /api/v1/me/tokens`: a person, by their API key, gets a short-lived writ access
//! token of their own (`sub` the person, no `act`) addressed to one agent (`client_id`),
//! to hand to it. Such a token manages the person's account only with the `writ:manage`
//! scope, which the person must name (the agent holding it could otherwise grant itself
//! more in their name), and it cannot mint
//! another: a leaked one must not renew itself. The agent trades it at `/oauth/token` by token exchange for a token on
//! the person's behalf, under their delegation to it. It is the smallest way to a person's
//! own token until sign-in and the authorization code flow exist, and what that flow will
//! issue has the same shape: recorded as `TokenIssued` with `user_id` and no actors, so
//! revoking it, or deactivating the person, revokes everything exchanged from it.

use actix_web::{HttpResponse, web};
use serde::Deserialize;
use serde_json::json;
use writ_schemas::{ClientId, Digest, Jti, Timestamp, TokenIssued};

use super::AppState;
use super::auth::Caller;
use super::error::{ApiError, optional_json};
use super::oauth_error::no_store;
use crate::decide::{Command, Refusal};
use crate::oauth::terms::{TTL_SECONDS_CEILING, agent_seconds_left};

/// The `grant_type` a person's own token is recorded with.
pub const USER_TOKEN_GRANT: &str = "urn:writ:params:oauth:grant-type:api-key";
/// Lifetime of a person's own token when the request names none: long enough to hand it
/// to an agent, short enough that a leaked one is soon useless.
pub const USER_TOKEN_TTL_SECONDS_DEFAULT: u64 = 5 * 60;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewUserToken {
    client_id: String,
    scope: Option<String>,
    expires_in: Option<u64>,
}

/// Issues the calling person a token of their own for an agent.
pub(super) async fn issue(
    state: web::Data<AppState>,
    caller: Caller,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let user_id = match caller {
        Caller::User(user_id) => user_id,
        // Otherwise a leaked token could renew itself for ever, and its expiry would mean
        // nothing.
        Caller::UserToken(_) => {
            return Err(ApiError::Forbidden(
                "a person's own token cannot mint another; send your API key (`x-api-key: wrt_...`)"
                    .into(),
            ));
        }
        Caller::Admin(_) => return Err(Refusal::NotAPerson.into()),
    };
    let body: NewUserToken = optional_json(payload).await?;
    let ttl_seconds = match body.expires_in {
        None => USER_TOKEN_TTL_SECONDS_DEFAULT,
        Some(seconds) if (1..=TTL_SECONDS_CEILING).contains(&seconds) => seconds,
        Some(_) => {
            return Err(ApiError::invalid(
                "expires_in",
                format!("1 to {TTL_SECONDS_CEILING} seconds"),
            ));
        }
    };
    let client_id = ClientId(body.client_id);
    let now = state.clock.now();
    let (scopes, agent_type, ttl_seconds) = state.ledger.read(|s| {
        let agent = s
            .agent(&client_id)
            .ok_or_else(|| Refusal::UnknownAgent(client_id.to_string()))?;
        let scopes: Vec<String> = match &body.scope {
            // Managing the person's account is never granted by default: they name it.
            None => agent
                .scopes
                .iter()
                .filter(|scope| *scope != super::auth::MANAGE_SCOPE)
                .cloned()
                .collect(),
            Some(asked) => asked
                .split(' ')
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect(),
        };
        if let Some(outside) = scopes.iter().find(|s| !agent.scopes.contains(s)) {
            return Err(ApiError::invalid(
                "scope",
                format!("`{outside}` is not a scope of agent {client_id}"),
            ));
        }
        // The token is the agent's to hold: it never outlives the agent.
        let ttl_seconds = match agent_seconds_left(agent, now)? {
            Some(left) => ttl_seconds.min(left),
            None => ttl_seconds,
        };
        Ok((scopes, agent.agent_type, ttl_seconds))
    })?;
    let iat = now.unix_seconds();
    let exp = iat.saturating_add(i64::try_from(ttl_seconds).unwrap_or(i64::MAX));
    let jti = Jti(crate::secrets::new_secret(""));
    let scope = scopes.join(" ");
    let claims = json!({
        "iss": state.issuer, "sub": user_id.as_str(), "aud": state.issuer,
        "client_id": client_id.as_str(), "scope": scope, "iat": iat, "exp": exp,
        "jti": jti.as_str(),
    });
    let (token, kid) = super::token::sign(&state, &claims)
        .map_err(|err| ApiError::Unavailable(err.description))?;
    let event = TokenIssued {
        jti,
        digest: Digest::of(token.as_bytes()),
        kid,
        grant_type: USER_TOKEN_GRANT.into(),
        client_id,
        subject: user_id.to_string(),
        user_id: Some(user_id),
        actors: vec![],
        delegation_id: None,
        parent_jti: None,
        family_id: None,
        audience: vec![state.issuer.clone()],
        scopes,
        issued_at: now,
        expires_at: Timestamp::from_unix_micros(exp.saturating_mul(1_000_000)).unwrap_or(now),
        agent_type,
        task_id: None,
        max_operations: None,
        expires_on_completion: false,
        intent_description: None,
        intent_sealed: None,
        client_assertion: None,
    };
    state.ledger.submit(Command::IssueToken(event)).await?;
    Ok(no_store().json(json!({
        "access_token": token, "token_type": "Bearer", "expires_in": ttl_seconds,
        "scope": scope, "issued_token_type": crate::oauth::ACCESS_TOKEN_TYPE,
    })))
}
