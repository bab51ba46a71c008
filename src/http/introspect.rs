//! `POST /oauth/introspect` (RFC 7662) and `POST /oauth/revoke` (RFC 7009), for
//! authenticated clients. A writ token is found by the BLAKE3 digest of its bytes: one
//! hash and one lookup, no signature check on this path.

use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::{Value, json};
use writ_projections::Token;
use writ_schemas::{Actor, Digest, Timestamp};

use super::AppState;
use super::oauth_error::{OAuthError, client_form, no_store, read_form_body};
use crate::decide::{Command, Refusal};
use crate::ledger::SubmitError;
use crate::oauth::authenticate;
use crate::people::{Intent, People};

/// The authenticated client, the `token` parameter, and whether the client is public
/// (it proved nothing: its `client_id` alone).
fn authenticated_form(
    state: &AppState,
    request: &HttpRequest,
    body: &[u8],
) -> Result<(writ_schemas::ClientId, String, bool), OAuthError> {
    let (form, presented) = client_form(request, body)?;
    let public = presented.method == crate::oauth::AuthMethod::None;
    let now = state.clock.now();
    let client = state.ledger.read(|s| {
        authenticate(s, &state.secrets, &presented, now).map(|agent| agent.client_id.clone())
    })?;
    let token = form
        .get("token")
        .cloned()
        .ok_or_else(|| OAuthError::invalid_request("token is missing"))?;
    Ok((client, token, public))
}

/// What introspection says about a token at `now`.
pub fn introspection(token: Option<&Token>, issuer: &str, now: Timestamp) -> Introspection {
    let Some(token) =
        token.filter(|t| t.is_active(now) && !(t.exhausted && t.expires_on_completion))
    else {
        return Introspection {
            body: json!({ "active": false }),
            intent: None,
        };
    };
    // The chain as RFC 8693 nests it, outermost (current) actor first.
    let chain: Vec<&str> = token.actors.iter().map(|a| a.as_str()).collect();
    let mut body = json!({
        "active": true,
        "iss": issuer,
        "sub": token.subject,
        "client_id": token.client_id.as_str(),
        "scope": token.scopes.join(" "),
        "aud": token.audience,
        "iat": token.issued_at.unix_seconds(),
        "exp": token.expires_at.unix_seconds(),
        "jti": token.jti.as_str(),
        "token_type": "Bearer",
        "agent_type": token.agent_type,
        "delegation_chain": chain,
        "delegation_depth": token.delegation_depth(),
        "expires_on_completion": token.expires_on_completion,
    });
    let optional = [
        (
            "delegated_by",
            token.user_id.as_ref().map(|u| json!(u.as_str())),
        ),
        (
            "delegation_id",
            token.delegation_id.as_ref().map(|d| json!(d.as_str())),
        ),
        ("task_id", token.task_id.as_ref().map(|t| json!(t))),
        ("max_operations", token.max_operations.map(|m| json!(m))),
        (
            "operations_remaining",
            token.operations_remaining().map(|m| json!(m)),
        ),
    ];
    for (name, value) in optional {
        if let Some(value) = value {
            body[name] = value;
        }
    }
    Introspection {
        body,
        intent: Intent::of(token),
    }
}

/// An introspection answer read under the ledger's lock, its stated intent still sealed.
#[derive(Debug)]
pub struct Introspection {
    body: Value,
    intent: Option<Intent>,
}

impl Introspection {
    /// The answer, the intent opened with its person's key: after the lock, since opening
    /// may read the key from its store.
    pub fn open(self, people: &People) -> Value {
        let mut body = self.body;
        if let Some(intent) = self.intent {
            body["intent_description"] = json!(people.open_intent(&intent));
        }
        body
    }
}

/// RFC 7662 introspection. Read-only: it never consumes an operation.
pub(super) async fn introspect(
    state: web::Data<AppState>,
    request: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, OAuthError> {
    let body = read_form_body(payload).await?;
    let (_, token, public) = authenticated_form(&state, &request, &body)?;
    // Anyone may name a public client: it may revoke what it holds, not read others'.
    if public {
        return Err(OAuthError::invalid_client(
            "introspection needs a client that authenticates (RFC 7662 §2.1); a public client cannot introspect",
        ));
    }
    let digest = Digest::of(token.as_bytes());
    let now = state.clock.now();
    let answer = state
        .ledger
        .read(|s| introspection(s.token_by_digest(&digest), &state.issuer, now));
    Ok(no_store().json(answer.open(&state.people)))
}

/// RFC 7009 revocation: revokes the token and everything derived from it. Always 200 for
/// a well-formed request; a token this client does not hold is left alone (saying so
/// would tell a caller which tokens exist).
pub(super) async fn revoke(
    state: web::Data<AppState>,
    request: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, OAuthError> {
    let body = read_form_body(payload).await?;
    let (client, token, _) = authenticated_form(&state, &request, &body)?;
    let digest = Digest::of(token.as_bytes());
    // An access token, or else a refresh token (RFC 7009 §2.1), whose whole family then
    // ends. One issued to another client is refused by the sequencer, and stays active; an
    // unknown token is no error (§2.2).
    let by = Actor::Agent {
        client_id: client.clone(),
    };
    let command = state.ledger.read(|s| {
        let access = s.token_by_digest(&digest).map(|t| Command::RevokeToken {
            jti: t.jti.clone(),
            by: by.clone(),
        });
        access.or_else(|| {
            s.refresh_token_by_digest(&digest)
                .map(|_| Command::RevokeRefreshToken {
                    digest,
                    client_id: client.clone(),
                })
        })
    });
    if let Some(command) = command {
        state
            .ledger
            .submit(command)
            .await
            .map_err(|err| match err {
                SubmitError::Refused(refused @ Refusal::NotTokenHolder(_)) => {
                    OAuthError::unauthorized_client(refused.to_string())
                }
                SubmitError::Overloaded(_) => OAuthError::overloaded(err.to_string()),
                _ => OAuthError::unavailable(err.to_string()),
            })?;
    }
    Ok(no_store().finish())
}
