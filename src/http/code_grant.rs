//! `POST /oauth/token` for the `authorization_code` grant (RFC 6749 §4.1.3, PKCE S256 per
//! RFC 7636 §4.6) and the `refresh_token` grant (RFC 6749 §6), both answering an access
//! token on the person's behalf and a refresh token that rotates on every use.
//!
//! What a code or refresh token is good for is read here; spending it is decided in the
//! sequencer (`decide::authorization`), so of two redemptions racing the second is the
//! replay it is, and revokes what the first got.

use std::collections::BTreeMap;

use base64::Engine as _;
use serde_json::{Value, json};
use sha2::Digest as _;
use writ_projections::{Agent, State};
use writ_schemas::{ClientId, Digest, FamilyId, RefreshId, RefreshTokenIssued, Timestamp};

use super::AppState;
use super::oauth_error::OAuthError;
use super::token::{AUTHORIZATION_CODE, signed};
use crate::decide::{Answer, Command, Issued, Refusal};
use crate::ledger::SubmitError;
use crate::oauth::{ActingFor, Presented, Terms, agent_terms, authenticate_at_token};

/// How long a refresh family lives from its code's redemption: rotating does not extend it.
pub const REFRESH_TTL_SECONDS: i64 = 30 * 24 * 3600;

/// What the grant will spend, as read before signing.
enum Spend {
    /// A code or refresh token good for new tokens on these terms.
    Fresh {
        digest: Digest,
        client_id: ClientId,
        terms: Box<Terms>,
        family: FamilyId,
        refresh_expires_at: Timestamp,
    },
    /// A code or refresh token already spent: presenting it is a replay.
    Replay { digest: Digest, client_id: ClientId },
}

/// Authenticates the client and answers the grant.
pub(super) async fn grant(
    state: &AppState,
    form: &BTreeMap<String, String>,
    presented: &Presented,
    grant_type: &str,
    now: Timestamp,
) -> Result<Value, OAuthError> {
    let spend = state.ledger.read(|s| {
        let (agent, assertion) =
            authenticate_at_token(s, &state.secrets, presented, &state.issuer, now)?;
        state
            .token_limits
            .check(&agent.client_id, agent.ceilings.token_requests_per_minute)
            .map_err(OAuthError::rate_limited)?;
        if !agent.grant_types.iter().any(|g| g == grant_type) {
            return Err(OAuthError::unauthorized_client(format!(
                "this agent is not registered for the {grant_type} grant"
            )));
        }
        let spend = match grant_type {
            AUTHORIZATION_CODE => from_code(s, agent, form, &state.issuer, now),
            _ => from_refresh(s, agent, form, &state.issuer, now),
        }?;
        Ok((spend, assertion))
    })?;
    let (spend, assertion) = spend;
    let (digest, client_id, issued, answer, refresh_secret) = match spend {
        Spend::Replay { digest, client_id } => (digest, client_id, None, Value::Null, None),
        Spend::Fresh {
            digest,
            client_id,
            terms,
            family,
            refresh_expires_at,
        } => {
            let user_id = terms.acting_for.as_ref().map(|a| a.user_id.clone());
            let (mut token, answer) = signed(
                state,
                client_id.clone(),
                *terms,
                grant_type,
                Some(family.clone()),
                now,
            )?;
            // Spent with the token it pays for (decided in `decide::issue_token`).
            token.client_assertion = assertion;
            let secret = crate::secrets::new_secret("wrr_");
            let refresh = RefreshTokenIssued {
                refresh_id: RefreshId(crate::secrets::new_id("rt_")),
                digest: Digest::of(secret.as_bytes()),
                family_id: family,
                client_id: client_id.clone(),
                user_id,
                scopes: token.scopes.clone(),
                expires_at: refresh_expires_at,
                access_jti: token.jti.clone(),
            };
            let issued = Box::new(Issued { token, refresh });
            (digest, client_id, Some(issued), answer, Some(secret))
        }
    };
    let command = match grant_type {
        AUTHORIZATION_CODE => Command::RedeemCode {
            digest,
            client_id,
            issued,
        },
        _ => Command::Refresh {
            digest,
            client_id,
            issued,
        },
    };
    let done = state.ledger.submit(command).await.map_err(refusal)?;
    match (done.answer, refresh_secret) {
        (Answer::Replayed { .. }, _) | (_, None) => {
            Err(OAuthError::invalid_grant(match grant_type {
                AUTHORIZATION_CODE => {
                    "the authorization code was already used; every token issued from it is now revoked"
                }
                _ => {
                    "the refresh token was already used; its whole family is now revoked and the reuse recorded on the agent"
                }
            }))
        }
        (_, Some(secret)) => {
            let mut answer = answer;
            answer["refresh_token"] = json!(secret);
            Ok(answer)
        }
    }
}

fn required<'f>(form: &'f BTreeMap<String, String>, name: &str) -> Result<&'f str, OAuthError> {
    form.get(name)
        .map(String::as_str)
        .filter(|v| !v.is_empty())
        .ok_or_else(|| OAuthError::invalid_request(format!("{name} is missing")))
}

/// The terms of a token on the person's behalf under `delegation`, for `scopes` and the
/// resource `audience` names (none: writ's default audience).
fn on_behalf_terms(
    agent: &Agent,
    issuer: &str,
    acting_for: ActingFor,
    scopes: &[String],
    audience: Option<&String>,
    now: Timestamp,
) -> Result<Terms, OAuthError> {
    let mut asked = BTreeMap::from([("scope".to_owned(), scopes.join(" "))]);
    if let Some(resource) = audience {
        asked.insert("resource".to_owned(), resource.clone());
    }
    let mut terms = agent_terms(agent, &asked, issuer)?;
    terms.acting_for = Some(acting_for);
    crate::oauth::terms::within_agent_expiry(agent, now, terms)
}

/// RFC 7636 §4.1: 43 to 128 unreserved characters.
fn valid_verifier(verifier: &str) -> bool {
    (43..=128).contains(&verifier.len())
        && verifier
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
}

/// RFC 7636 §4.2, S256: BASE64URL(SHA-256(verifier)).
pub fn s256(verifier: &str) -> String {
    let hash = sha2::Sha256::digest(verifier.as_bytes());
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(hash)
}

fn from_code(
    s: &State,
    agent: &Agent,
    form: &BTreeMap<String, String>,
    issuer: &str,
    now: Timestamp,
) -> Result<Spend, OAuthError> {
    let digest = Digest::of(required(form, "code")?.as_bytes());
    let client_id = agent.client_id.clone();
    let code = s
        .code_by_digest(&digest)
        .filter(|code| code.issued.client_id == client_id)
        .ok_or_else(|| {
            OAuthError::invalid_grant(
                "the authorization code is not one writ issued to this client",
            )
        })?;
    if code.redeemed.is_some() {
        return Ok(Spend::Replay { digest, client_id });
    }
    let issued = &code.issued;
    if now >= issued.expires_at {
        return Err(OAuthError::invalid_grant(
            "the authorization code has expired (they last 60 seconds); send the person through /oauth/authorize again",
        ));
    }
    if required(form, "redirect_uri")? != issued.redirect_uri {
        return Err(OAuthError::invalid_grant(
            "redirect_uri is not the one the authorization request named",
        ));
    }
    let verifier = required(form, "code_verifier")?;
    if !valid_verifier(verifier) || s256(verifier) != issued.code_challenge {
        return Err(OAuthError::invalid_grant(
            "code_verifier does not match the code_challenge of the authorization request (PKCE S256)",
        ));
    }
    let acting_for = ActingFor {
        user_id: issued.user_id.clone(),
        delegation_id: issued.delegation_id.clone(),
        earlier_actors: vec![],
        parent_jti: None,
    };
    let terms = on_behalf_terms(
        agent,
        issuer,
        acting_for,
        &issued.scopes,
        issued.audience.first(),
        now,
    )?;
    Ok(Spend::Fresh {
        digest,
        client_id,
        terms: Box::new(terms),
        family: FamilyId(crate::secrets::new_id("fam_")),
        refresh_expires_at: now.plus_seconds(REFRESH_TTL_SECONDS),
    })
}

fn from_refresh(
    s: &State,
    agent: &Agent,
    form: &BTreeMap<String, String>,
    issuer: &str,
    now: Timestamp,
) -> Result<Spend, OAuthError> {
    let digest = Digest::of(required(form, "refresh_token")?.as_bytes());
    let client_id = agent.client_id.clone();
    let refresh = s
        .refresh_token_by_digest(&digest)
        .filter(|r| r.client_id == client_id)
        .ok_or_else(|| {
            OAuthError::invalid_grant("the refresh token is not one writ issued to this client")
        })?;
    if s.family(&refresh.family_id)
        .is_some_and(|f| f.reuse_detected)
    {
        return Err(OAuthError::invalid_grant(
            Refusal::RefreshFamilyRevoked.to_string(),
        ));
    }
    if refresh.replaced_by.is_some() {
        return Ok(Spend::Replay { digest, client_id });
    }
    if now >= refresh.expires_at {
        return Err(OAuthError::invalid_grant(
            Refusal::RefreshExpired.to_string(),
        ));
    }
    let scopes: Vec<String> = match form.get("scope") {
        None => refresh.scopes.clone(),
        Some(asked) => {
            let asked: Vec<String> = asked
                .split(' ')
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect();
            if let Some(beyond) = asked.iter().find(|s| !refresh.scopes.contains(s)) {
                return Err(OAuthError::invalid_scope(
                    Refusal::ScopeBeyondRefresh(beyond.clone()).to_string(),
                ));
            }
            asked
        }
    };
    let first = s.token(&refresh.access_jti);
    let (Some(user_id), Some(delegation_id)) = (
        refresh.user_id.clone(),
        first.and_then(|t| t.delegation_id.clone()),
    ) else {
        return Err(OAuthError::invalid_grant(
            "the refresh token acts for no person's delegation",
        ));
    };
    let acting_for = ActingFor {
        user_id,
        delegation_id,
        earlier_actors: vec![],
        parent_jti: None,
    };
    let audience = first.and_then(|t| t.audience.first());
    let terms = on_behalf_terms(agent, issuer, acting_for, &scopes, audience, now)?;
    Ok(Spend::Fresh {
        digest,
        client_id,
        terms: Box::new(terms),
        family: refresh.family_id.clone(),
        refresh_expires_at: refresh.expires_at,
    })
}

fn refusal(err: SubmitError) -> OAuthError {
    match err {
        SubmitError::Refused(
            refused @ (Refusal::UnknownCode
            | Refusal::CodeExpired
            | Refusal::UnknownRefreshToken
            | Refusal::RefreshFamilyRevoked
            | Refusal::RefreshExpired),
        ) => OAuthError::invalid_grant(refused.to_string()),
        SubmitError::Refused(refused @ Refusal::ScopeBeyondRefresh(_)) => {
            OAuthError::invalid_scope(refused.to_string())
        }
        // The person withdrew the grant (or was deactivated) since the code or refresh
        // token was issued.
        SubmitError::Refused(Refusal::DelegationInactive(_)) => OAuthError::invalid_grant(
            "the person withdrew this grant; send them through /oauth/authorize again",
        ),
        SubmitError::Refused(Refusal::UserInactive(_)) => {
            OAuthError::invalid_grant("the person this grant acts for is deactivated")
        }
        other => super::token::refusal(other),
    }
}
