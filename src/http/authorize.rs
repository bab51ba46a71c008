//! `/oauth/authorize`: the authorization code flow's front half (RFC 6749 §4.1.1, OAuth
//! 2.1 rules). `response_type=code` only; PKCE `S256` only (`plain` refused, RFC 9700
//! §2.1.1); `state` required and returned; the `redirect_uri` an exact match of one the
//! agent registered; one `resource` (RFC 8707) that becomes the tokens' `aud`. The person
//! signs in (`http::signin`), sees the agent, its owner and the scopes in words, may
//! untick scopes, and approves or denies. Approving records a delegation of the scopes
//! kept (their consent, which `/account` lists and revokes), unless one in force already
//! covers them (a remembered consent, which skips the page); then a code valid 60 seconds
//! goes back with `state` and `iss` (RFC 9207).
//!
//! Errors about the client or its redirect URI are shown to the person, never redirected
//! (RFC 6749 §4.1.2.1): a redirect there would be an open redirect.

use std::collections::BTreeMap;

use actix_web::http::{StatusCode, header};
use actix_web::{HttpRequest, HttpResponse, web};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use maud::html;
use serde::{Deserialize, Serialize};
use writ_projections::{Agent, State};
use writ_schemas::{
    Actor, AgentRegistered, AgentType, AuthorizationCodeIssued, ClientId, DelegationGranted,
    DelegationId, Digest, Timestamp, UserId,
};

use super::AppState;
use super::signin::{html_response, html_response_posting_to, mac, mac_matches, page, session};
use crate::client_metadata::{ClientMetadata, Document};
use crate::decide::{Command, Refusal};
use crate::ledger::SubmitError;
use crate::people::Datum;

/// Seconds a code may wait for its redemption.
pub const CODE_TTL_SECONDS: i64 = 60;
/// Seconds a consent page may wait for its answer.
const CONSENT_TTL_SECONDS: i64 = 600;
const CONSENT_CONTEXT: &str = "writ consent v1";

/// An authorization request that passed every check, as the consent page carries it
/// (MAC'd, so the answer cannot change what was asked).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Asked {
    client_id: ClientId,
    redirect_uri: String,
    state: String,
    code_challenge: String,
    scopes: Vec<String>,
    resource: Option<String>,
    user_id: UserId,
    /// The session the consent page was shown in: the answer must come from it, so a
    /// page left open in a session that ended since cannot consent.
    #[serde(default)]
    session_id: String,
    expires: i64,
}

/// Why the request is refused.
enum Refused {
    /// Shown to the person: the client or the redirect URI cannot be trusted.
    Page(String),
    /// Sent back to the client's redirect URI.
    Redirect {
        redirect_uri: String,
        error: &'static str,
        description: String,
        state: Option<String>,
    },
}

fn error_page(status: StatusCode, why: &str) -> HttpResponse {
    html_response(
        status,
        page(
            "This request cannot go on",
            html! {
                p.error role="alert" { (why) }
                p { "Nothing was granted. Go back to the application and try again, or tell its developers." }
            },
        ),
    )
}

/// `redirect_uri` with `params` added to its query.
fn redirect_to(redirect_uri: &str, params: &[(&str, &str)]) -> HttpResponse {
    let location = match url::Url::parse(redirect_uri) {
        Ok(mut url) => {
            url.query_pairs_mut().extend_pairs(params);
            url.to_string()
        }
        Err(_) => redirect_uri.to_owned(),
    };
    HttpResponse::SeeOther()
        .insert_header((header::LOCATION, location))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .finish()
}

fn refused(issuer: &str, refused: Refused) -> HttpResponse {
    match refused {
        Refused::Page(why) => error_page(StatusCode::BAD_REQUEST, &why),
        Refused::Redirect {
            redirect_uri,
            error,
            description,
            state,
        } => {
            let mut params = vec![
                ("error", error),
                ("error_description", description.as_str()),
                ("iss", issuer),
            ];
            if let Some(state) = &state {
                params.push(("state", state.as_str()));
            }
            redirect_to(&redirect_uri, &params)
        }
    }
}

/// The query's parameters; each at most once (RFC 6749 §3.1).
fn parameters(query: &str) -> Result<BTreeMap<String, String>, Refused> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query)
        .map_err(|err| Refused::Page(format!("The request's parameters cannot be read: {err}.")))?;
    let mut map = BTreeMap::new();
    for (name, value) in pairs {
        if map.insert(name.clone(), value).is_some() {
            return Err(Refused::Page(format!(
                "The parameter `{name}` appears more than once."
            )));
        }
    }
    Ok(map)
}

/// Checks the request against the agent's registration; the request as the consent page
/// carries it (for `user_id`).
fn check(
    s: &State,
    params: &BTreeMap<String, String>,
    user_id: Option<&UserId>,
    document: Option<&Document>,
    now: Timestamp,
) -> Result<(Asked, bool), Refused> {
    let client_id = params
        .get("client_id")
        .ok_or_else(|| Refused::Page("The request names no client (`client_id`).".into()))?;
    let agent = s
        .agent(&ClientId(client_id.clone()))
        .filter(|a| a.enabled && a.expires_at.is_none_or(|end| now < end))
        .ok_or_else(|| {
            Refused::Page(format!(
                "No active application is registered as `{client_id}`."
            ))
        })?;
    // A client described by its metadata document: its current redirect URIs are the
    // document's, not those recorded when it first came.
    let registered = document.map_or(&agent.redirect_uris, |d| &d.redirect_uris);
    let redirect_uri = match params.get("redirect_uri") {
        Some(uri) if registered.contains(uri) => uri.clone(),
        Some(_) => {
            return Err(Refused::Page(
                "The redirect URI is not one this application registered.".into(),
            ));
        }
        None => match registered.as_slice() {
            [only] => only.clone(),
            _ => {
                return Err(Refused::Page(
                    "The request names no redirect URI (`redirect_uri`), and the application registered more than one.".into(),
                ));
            }
        },
    };
    let state = params.get("state").filter(|s| !s.is_empty()).cloned();
    let refuse = |error: &'static str, description: String| Refused::Redirect {
        redirect_uri: redirect_uri.clone(),
        error,
        description,
        state: state.clone(),
    };
    if !agent.grant_types.iter().any(|g| g == "authorization_code") {
        return Err(refuse(
            "unauthorized_client",
            "this client is not registered for the authorization_code grant".into(),
        ));
    }
    match params.get("response_type").map(String::as_str) {
        Some("code") => {}
        Some(other) => {
            return Err(refuse(
                "unsupported_response_type",
                format!("response_type `{other}` is not supported; send code"),
            ));
        }
        None => return Err(refuse("invalid_request", "response_type is missing".into())),
    }
    let Some(state_value) = state.clone() else {
        return Err(refuse(
            "invalid_request",
            "state is required (it protects the client against cross-site request forgery)".into(),
        ));
    };
    match params.get("code_challenge_method").map(String::as_str) {
        Some("S256") => {}
        Some("plain") | None => {
            return Err(refuse(
                "invalid_request",
                "PKCE with code_challenge_method=S256 is required; plain is refused".into(),
            ));
        }
        Some(other) => {
            return Err(refuse(
                "invalid_request",
                format!("code_challenge_method `{other}` is not supported; send S256"),
            ));
        }
    }
    let code_challenge = params
        .get("code_challenge")
        .filter(|c| {
            c.len() == 43
                && c.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
        .cloned()
        .ok_or_else(|| {
            refuse(
                "invalid_request",
                "code_challenge must be the 43-character BASE64URL of the verifier's SHA-256"
                    .into(),
            )
        })?;
    let scopes = scopes_of(agent, params.get("scope")).map_err(|d| refuse("invalid_scope", d))?;
    let resource = match params.get("resource") {
        None => None,
        Some(resource) => {
            Some(check_resource(agent, resource).map_err(|d| refuse("invalid_target", d))?)
        }
    };
    let asked = Asked {
        client_id: agent.client_id.clone(),
        redirect_uri,
        state: state_value,
        code_challenge,
        scopes,
        resource,
        user_id: user_id.cloned().unwrap_or_else(|| UserId(String::new())),
        session_id: String::new(),
        expires: now.unix_seconds().saturating_add(CONSENT_TTL_SECONDS),
    };
    let prompt_consent = params
        .get("prompt")
        .is_some_and(|p| p.split(' ').any(|p| p == "consent"));
    Ok((asked, prompt_consent))
}

fn scopes_of(agent: &Agent, asked: Option<&String>) -> Result<Vec<String>, String> {
    let Some(asked) = asked else {
        return Ok(agent.scopes.clone());
    };
    let scopes: Vec<String> = asked
        .split(' ')
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    if scopes.is_empty() {
        return Err("scope names no scope".into());
    }
    match scopes.iter().find(|s| !agent.scopes.contains(s)) {
        Some(outside) => Err(format!(
            "scope `{outside}` is not one this client registered"
        )),
        None => Ok(scopes),
    }
}

/// RFC 8707 §2: an absolute URI without a fragment, inside the agent's allowed audiences.
fn check_resource(agent: &Agent, resource: &str) -> Result<String, String> {
    let parsed = url::Url::parse(resource)
        .map_err(|_| format!("resource `{resource}` is not an absolute URI"))?;
    if parsed.fragment().is_some() {
        return Err("resource must not carry a fragment".into());
    }
    if let Some(allowed) = &agent.ceilings.allowed_audiences
        && !allowed.iter().any(|a| a == resource)
    {
        return Err(format!(
            "resource `{resource}` is outside this agent's policy"
        ));
    }
    Ok(resource.to_owned())
}

/// For a client whose `client_id` is a URL: its metadata document, fetched (or cached),
/// and the client recorded as an agent the first time it comes.
async fn described(
    state: &AppState,
    params: &BTreeMap<String, String>,
    record: bool,
) -> Result<Option<std::sync::Arc<Document>>, Refused> {
    let Some(client_id) = params
        .get("client_id")
        .filter(|id| ClientMetadata::names_document(id))
    else {
        return Ok(None);
    };
    let document = state
        .client_metadata
        .document(client_id)
        .await
        .map_err(|why| Refused::Page(format!("{why}.")))?;
    let client = ClientId(client_id.clone());
    // Recorded only once a person has signed in, so strangers cannot fill the ledger
    // with clients nobody uses.
    if record && state.ledger.read(|s| s.agent(&client).is_none()) {
        let name = document
            .client_name
            .clone()
            .filter(|n| !n.trim().is_empty())
            .unwrap_or_else(|| client_id.clone());
        let scopes = document
            .scope
            .as_deref()
            .unwrap_or_default()
            .split(' ')
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect();
        let agent = AgentRegistered {
            client_id: client.clone(),
            name,
            owner: None,
            scopes,
            grant_types: vec!["authorization_code".into(), "refresh_token".into()],
            redirect_uris: document.redirect_uris.clone(),
            token_endpoint_auth_method: "none".into(),
            secret_hash: None,
            secret_expires_at: None,
            jwks: None,
            require_consent: true,
            agent_type: AgentType::Supervised,
            expires_at: None,
            by: Actor::Agent {
                client_id: client.clone(),
            },
        };
        match state.ledger.submit(Command::RegisterAgent(agent)).await {
            // Another request recorded it first.
            Ok(_) | Err(SubmitError::Refused(Refusal::AgentExists(_))) => {}
            Err(err) => {
                return Err(Refused::Page(format!(
                    "The client could not be recorded: {err}."
                )));
            }
        }
    }
    Ok(Some(document))
}

/// Where the authorization request `return_to` (a sign-in's way back) sends the browser on
/// when it names a redirect URI its agent registered. A grant already given is not asked
/// again, so the sign-in form's answer can end at the client: the sign-in page's CSP must
/// allow that hop as the consent page's does.
pub(super) fn redirect_after_sign_in(s: &State, return_to: &str, now: Timestamp) -> Option<String> {
    let params = parameters(return_to.strip_prefix("/oauth/authorize?")?).ok()?;
    match check(s, &params, None, None, now) {
        Ok((asked, _)) => Some(asked.redirect_uri),
        Err(Refused::Redirect { redirect_uri, .. }) => Some(redirect_uri),
        Err(Refused::Page(_)) => None,
    }
}

/// A delegation from the person to the agent, in force, covering `scopes`.
fn remembered(s: &State, asked: &Asked, now: Timestamp) -> Option<DelegationId> {
    s.delegations_of_user(&asked.user_id)
        .filter(|d| d.client_id == asked.client_id && d.is_active(now) && d.covers(&asked.scopes))
        .map(|d| d.delegation_id.clone())
        .next()
}

/// To the sign-in page, which returns here.
fn to_login(request: &HttpRequest) -> HttpResponse {
    let back = format!("/oauth/authorize?{}", request.query_string());
    let login = format!(
        "/login?{}",
        serde_urlencoded::to_string([("return_to", back.as_str())]).unwrap_or_default()
    );
    HttpResponse::SeeOther()
        .insert_header((header::LOCATION, login))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .finish()
}

/// `GET /oauth/authorize`.
pub(super) async fn authorize(state: web::Data<AppState>, request: HttpRequest) -> HttpResponse {
    let now = state.clock.now();
    let signed_in = session(&state, &request, now);
    let user = signed_in.as_ref().map(|s| s.user_id.clone());
    let params = match parameters(request.query_string()) {
        Ok(params) => params,
        Err(why) => return refused(&state.issuer, why),
    };
    let document = match described(&state, &params, user.is_some()).await {
        Ok(document) => document,
        Err(why) => return refused(&state.issuer, why),
    };
    if let Some(document) = &document
        && user.is_none()
    {
        // Not recorded yet: only the redirect URI can be checked before sign-in.
        let recorded = state
            .ledger
            .read(|s| s.agent(&ClientId(document.client_id.clone())).is_some());
        if !recorded {
            if params
                .get("redirect_uri")
                .is_none_or(|uri| !document.redirect_uris.contains(uri))
            {
                return refused(
                    &state.issuer,
                    Refused::Page(
                        "The redirect URI is not one this application's metadata document names."
                            .into(),
                    ),
                );
            }
            return to_login(&request);
        }
    }
    let checked = state
        .ledger
        .read(|s| check(s, &params, user.as_ref(), document.as_deref(), now));
    let (mut asked, prompt_consent) = match checked {
        Ok(checked) => checked,
        Err(why) => return refused(&state.issuer, why),
    };
    let Some(signed_in) = signed_in else {
        return to_login(&request);
    };
    asked.session_id = signed_in.session_id;
    let delegation = state.ledger.read(|s| remembered(s, &asked, now));
    match delegation {
        Some(delegation) if !prompt_consent => issue_code(&state, asked, delegation, now).await,
        _ => consent_page(&state, &asked),
    }
}

/// A scope in words: `files:read` reads "read files"; anything else as it is.
fn in_words(scope: &str) -> String {
    match scope.split_once(':') {
        Some((thing, verb)) if !thing.is_empty() && !verb.is_empty() => {
            format!(
                "{} {}",
                verb.replace(['_', '-'], " "),
                thing.replace(['_', '-'], " ")
            )
        }
        _ => scope.to_owned(),
    }
}

fn consent_page(state: &AppState, asked: &Asked) -> HttpResponse {
    let payload = serde_json::to_vec(asked).unwrap_or_default();
    let request = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(&payload),
        mac(state, CONSENT_CONTEXT, &payload)
    );
    let (name, owner) = state.ledger.read(|s| {
        let agent = s.agent(&asked.client_id);
        let owner = agent
            .and_then(|a| a.owner.as_ref())
            .and_then(|owner| s.user(owner))
            .map(Datum::email_of);
        (agent.map(|a| a.name.clone()).unwrap_or_default(), owner)
    });
    // Opened after the lock: it may read the owner's key from its store.
    let owner = owner.map(|owner| state.people.reveal_datum(&owner));
    let markup = page(
        "Allow this agent to act for you?",
        html! {
            p { strong { (name) } " (" code { (asked.client_id.as_str()) } ") asks to act on your behalf." }
            p { "Owner: " @match &owner { Some(owner) => { (owner) }, None => { "no owner is recorded for this agent" } } }
            @if let Some(resource) = &asked.resource {
                p { "For: " code { (resource) } }
            }
            form method="post" action="/oauth/authorize" {
                input type="hidden" name="request" value=(request);
                fieldset {
                    legend { "It may:" }
                    @for scope in &asked.scopes {
                        div {
                            input type="checkbox" name="scope" value=(scope) id=(format!("scope-{scope}")) checked;
                            label for=(format!("scope-{scope}")) style="display:inline" {
                                (in_words(scope)) " (" code { (scope) } ")"
                            }
                        }
                    }
                }
                p { "Untick anything you do not want to allow. You can withdraw this at any time on your account page." }
                button type="submit" name="decision" value="approve" { "Allow" }
                button type="submit" name="decision" value="deny" { "Deny" }
            }
        },
    );
    html_response_posting_to(StatusCode::OK, markup, Some(&asked.redirect_uri))
}

async fn issue_code(
    state: &AppState,
    asked: Asked,
    delegation_id: DelegationId,
    now: Timestamp,
) -> HttpResponse {
    let code = crate::secrets::new_secret("");
    let issued = AuthorizationCodeIssued {
        code_id: crate::secrets::new_id("code_"),
        digest: Digest::of(code.as_bytes()),
        client_id: asked.client_id,
        user_id: asked.user_id,
        delegation_id,
        redirect_uri: asked.redirect_uri.clone(),
        code_challenge: asked.code_challenge,
        scopes: asked.scopes,
        audience: asked.resource.into_iter().collect(),
        expires_at: now.plus_seconds(CODE_TTL_SECONDS),
    };
    match state.ledger.submit(Command::IssueCode(issued)).await {
        Ok(_) => redirect_to(
            &asked.redirect_uri,
            &[
                ("code", &code),
                ("state", &asked.state),
                ("iss", &state.issuer),
            ],
        ),
        Err(err) => refused(
            &state.issuer,
            Refused::Redirect {
                redirect_uri: asked.redirect_uri,
                error: "server_error",
                description: err.to_string(),
                state: Some(asked.state),
            },
        ),
    }
}

/// `POST /oauth/authorize`: the consent page's answer.
pub(super) async fn decide(
    state: web::Data<AppState>,
    request: HttpRequest,
    body: web::Bytes,
) -> HttpResponse {
    let now = state.clock.now();
    let Some(signed_in) = session(&state, &request, now) else {
        return error_page(
            StatusCode::UNAUTHORIZED,
            "You are not signed in (or your sign-in lapsed). Go back to the application and start again.",
        );
    };
    let pairs: Vec<(String, String)> = serde_urlencoded::from_bytes(&body).unwrap_or_default();
    let field = |name: &str| {
        pairs
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    };
    let asked = field("request").and_then(|request| {
        let (payload, tag) = request.split_once('.')?;
        let payload = URL_SAFE_NO_PAD.decode(payload).ok()?;
        mac_matches(&state, CONSENT_CONTEXT, &payload, tag)
            .then(|| serde_json::from_slice::<Asked>(&payload).ok())
            .flatten()
    });
    let user = signed_in.user_id;
    let Some(mut asked) = asked.filter(|a| {
        a.user_id == user && a.session_id == signed_in.session_id && now.unix_seconds() < a.expires
    }) else {
        return error_page(
            StatusCode::BAD_REQUEST,
            "This consent form is not one writ showed you, or it waited too long. Go back to the application and start again.",
        );
    };
    if field("decision") != Some("approve") {
        return refused(
            &state.issuer,
            Refused::Redirect {
                redirect_uri: asked.redirect_uri,
                error: "access_denied",
                description: "the person denied the request".into(),
                state: Some(asked.state),
            },
        );
    }
    let kept: Vec<String> = pairs
        .iter()
        .filter(|(n, v)| n == "scope" && asked.scopes.contains(v))
        .map(|(_, v)| v.clone())
        .collect();
    if kept.is_empty() {
        return refused(
            &state.issuer,
            Refused::Redirect {
                redirect_uri: asked.redirect_uri,
                error: "access_denied",
                description: "the person allowed no scope".into(),
                state: Some(asked.state),
            },
        );
    }
    asked.scopes = kept;
    let delegation = match state.ledger.read(|s| remembered(s, &asked, now)) {
        Some(delegation) => delegation,
        None => {
            let delegation_id = DelegationId(uuid::Uuid::new_v4().to_string());
            let grant = DelegationGranted {
                delegation_id: delegation_id.clone(),
                user_id: user.clone(),
                client_id: asked.client_id.clone(),
                scopes: Some(asked.scopes.clone()),
                expires_at: None,
                by: Actor::User { user_id: user },
            };
            if let Err(err) = state.ledger.submit(Command::GrantDelegation(grant)).await {
                return refused(
                    &state.issuer,
                    Refused::Redirect {
                        redirect_uri: asked.redirect_uri,
                        error: "access_denied",
                        description: err.to_string(),
                        state: Some(asked.state),
                    },
                );
            }
            delegation_id
        }
    };
    issue_code(&state, asked, delegation, now).await
}
