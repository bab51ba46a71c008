//! `POST /oauth/token`. So far the `client_credentials` grant: the agent gets an RFC 9068
//! access token for itself, recorded in the ledger (by the digest of its bytes) before
//! it is handed out.

use actix_web::{HttpRequest, HttpResponse, web};
use jsonwebtoken::Header;
use serde_json::{Value, json};
use writ_schemas::{ClientId, Digest, Jti, Timestamp, TokenIssued};

use super::AppState;
use super::oauth_error::{OAuthError, client_form, no_store, read_form_body};
use crate::decide::{Command, Refusal};
use crate::ledger::SubmitError;
use crate::oauth::{Terms, authenticate, client_credentials_terms};

/// Body size accepted at the token endpoint.
pub const FORM_BODY_BYTES_MAX: usize = 16 * 1024;

/// Issues a token.
pub(super) async fn issue(
    state: web::Data<AppState>,
    request: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, OAuthError> {
    let body = read_form_body(payload).await?;
    let (form, presented) = client_form(&request, &body)?;
    let now = state.clock.now();
    let (client_id, terms) = state.ledger.read(|s| {
        let agent = authenticate(s, &state.secrets, &presented, now)?;
        state
            .token_limits
            .check(&agent.client_id, agent.ceilings.token_requests_per_minute)
            .map_err(OAuthError::rate_limited)?;
        match form.get("grant_type").map(String::as_str) {
            None => Err(OAuthError::invalid_request("grant_type is missing")),
            Some("client_credentials") => Ok((
                agent.client_id.clone(),
                client_credentials_terms(agent, &form, &state.issuer)?,
            )),
            Some(other) => Err(OAuthError::unsupported_grant_type(format!(
                "grant_type `{other}` is not supported here"
            ))),
        }
    })?;
    let issued = sign_and_record(&state, client_id, terms, now).await?;
    Ok(no_store().json(issued))
}

async fn sign_and_record(
    state: &AppState,
    client_id: ClientId,
    terms: Terms,
    now: Timestamp,
) -> Result<Value, OAuthError> {
    let iat = now.unix_seconds();
    let ttl = i64::try_from(terms.ttl_seconds).unwrap_or(i64::MAX);
    let exp = iat.saturating_add(ttl);
    let jti = Jti(crate::secrets::new_secret(""));
    let audience: Value = match terms.audience.as_slice() {
        [one] => json!(one),
        many => json!(many),
    };
    let scope = terms.scopes.join(" ");
    let mut claims = json!({
        "iss": state.issuer, "sub": client_id.as_str(), "aud": audience, "client_id": client_id.as_str(),
        "scope": scope, "iat": iat, "exp": exp, "jti": jti.as_str(), "agent_type": terms.agent_type,
    });
    if let Some(task_id) = &terms.task_id {
        claims["task_id"] = json!(task_id);
    }
    if let Some(max) = terms.max_operations {
        claims["max_operations"] = json!(max);
    }
    // One atomic load; the guard is dropped before the await below.
    let (token, kid) = {
        let key = state.signing_keys.current();
        let mut header = Header::new(key.jws_algorithm());
        header.typ = Some("at+jwt".into());
        header.kid = Some(key.kid.to_string());
        let token = jsonwebtoken::encode(&header, &claims, &key.encoding)
            .map_err(|err| OAuthError::server_error(format!("signing failed: {err}")))?;
        (token, key.kid.clone())
    };
    let expires_at = Timestamp::from_unix_micros(exp.saturating_mul(1_000_000)).unwrap_or(now);
    let event = TokenIssued {
        jti,
        digest: Digest::of(token.as_bytes()),
        kid,
        grant_type: "client_credentials".into(),
        client_id: client_id.clone(),
        subject: client_id.to_string(),
        user_id: None,
        actors: vec![],
        delegation_id: None,
        parent_jti: None,
        family_id: None,
        audience: terms.audience.clone(),
        scopes: terms.scopes.clone(),
        issued_at: now,
        expires_at,
        agent_type: terms.agent_type,
        task_id: terms.task_id.clone(),
        max_operations: terms.max_operations,
        expires_on_completion: terms.expires_on_completion,
        intent_description: terms.intent_description.clone(),
    };
    state
        .ledger
        .submit(Command::IssueToken(event))
        .await
        .map_err(refusal)?;
    let mut answer = json!({
        "access_token": token, "token_type": "Bearer", "expires_in": ttl, "scope": scope,
        "agent_type": terms.agent_type, "expires_on_completion": terms.expires_on_completion,
    });
    for (name, value) in [
        ("task_id", terms.task_id.map(Value::from)),
        ("max_operations", terms.max_operations.map(Value::from)),
        (
            "intent_description",
            terms.intent_description.map(Value::from),
        ),
    ] {
        if let Some(value) = value {
            answer[name] = value;
        }
    }
    Ok(answer)
}

fn refusal(err: SubmitError) -> OAuthError {
    match err {
        // The agent changed between the read and the append: refuse as if read after.
        SubmitError::Refused(
            refused @ (Refusal::AgentDisabled(_)
            | Refusal::AgentExpired(..)
            | Refusal::UnknownAgent(_)),
        ) => OAuthError::invalid_client(refused.to_string()),
        SubmitError::Refused(other) => OAuthError::invalid_request(other.to_string()),
        SubmitError::Unavailable(why) => OAuthError::unavailable(why),
        overloaded @ SubmitError::Overloaded(_) => OAuthError::overloaded(overloaded.to_string()),
    }
}
