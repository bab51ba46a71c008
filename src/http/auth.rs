//! Who is calling a management endpoint: an administrator, by a bearer admin credential
//! (`Admin`), or, where people may act too, an administrator or a person (`Caller`): by
//! their API key, or by a writ access token of their own (`sub` the person, no `act`) as
//! a bearer token. An agent's token, on a person's behalf or its own, is never a
//! management credential: an agent acts for a person only within a delegation, and
//! managing delegations is not in one. A person's own token is held by an agent too (it
//! names one as `client_id`), so it manages the person's account only when it carries
//! the `writ:manage` scope ([`MANAGE_SCOPE`]), which the person must ask for by name.
//!
//! An admin credential has a role, `admin` or `auditor` (read-only). Every endpoint
//! declares the role it needs (`endpoints()` in `http/mod.rs`); a credential whose role
//! does not reach it gets 403 `insufficient_role`, an expired one 401, a revoked one 401
//! (its hash is gone from the state). The check lives in the extractors, so a handler
//! cannot forget it.
//!
//! A credential is looked up, never verified: an admin token or API key by its keyed
//! hash, a writ access token by the BLAKE3 digest of its bytes (as introspection finds
//! it; no signature check). One hash and one map lookup each, with nothing compared byte
//! by byte against a stored secret, so timing tells nothing about a key.

use std::future::{Ready, ready};

use actix_web::{FromRequest, HttpRequest, dev::Payload, http::header, web};
use writ_projections::TokenStatus;
use writ_schemas::{Actor, AdminRole, Digest, UserId};

use super::AppState;
use super::error::ApiError;

/// An authenticated administrator, whose credential's role reaches what the endpoint
/// needs.
#[derive(Debug, Clone)]
pub struct Admin(pub Actor);

impl FromRequest for Admin {
    type Error = ApiError;
    type Future = Ready<Result<Admin, ApiError>>;

    fn from_request(request: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(authenticate(request))
    }
}

/// The header that carries a person's API key.
pub const API_KEY_HEADER: &str = "x-api-key";

/// Who is calling an endpoint open to people as well as administrators.
#[derive(Debug, Clone)]
pub enum Caller {
    /// An administrator, by an admin credential whose role reaches what the endpoint needs.
    Admin(Actor),
    /// A person, by one of their API keys.
    User(UserId),
    /// A person, by a writ access token of their own.
    UserToken(UserId),
}

impl Caller {
    /// Who the ledger records as having asked.
    pub fn actor(&self) -> Actor {
        match self {
            Caller::Admin(actor) => actor.clone(),
            Caller::User(user_id) | Caller::UserToken(user_id) => Actor::User {
                user_id: user_id.clone(),
            },
        }
    }

    /// The person calling, if a person is.
    pub fn user_id(&self) -> Option<&UserId> {
        match self {
            Caller::Admin(_) => None,
            Caller::User(user_id) | Caller::UserToken(user_id) => Some(user_id),
        }
    }
}

impl FromRequest for Caller {
    type Error = ApiError;
    type Future = Ready<Result<Caller, ApiError>>;

    fn from_request(request: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(identify(request))
    }
}

fn identify(request: &HttpRequest) -> Result<Caller, ApiError> {
    let Some(key) = request.headers().get(API_KEY_HEADER) else {
        let Some(bearer) = bearer_token(request) else {
            return Err(ApiError::Unauthorized(
                "send a person's API key as `x-api-key: wrt_...`, or a person's own writ access token or an admin credential as `Authorization: Bearer ...`".into(),
            ));
        };
        return match admin_credential(request, bearer)? {
            Some(actor) => Ok(Caller::Admin(actor)),
            None => person_by_token(request, bearer),
        };
    };
    if request.headers().contains_key(header::AUTHORIZATION) {
        return Err(ApiError::Unauthorized(
            "send one credential: either `x-api-key` or `Authorization`, not both".into(),
        ));
    }
    let key = key.to_str().unwrap_or_default().trim();
    if key.starts_with("wrt_admin_") {
        return Err(ApiError::Unauthorized(
            "that is an admin token: send it as `Authorization: Bearer wrt_admin_...`".into(),
        ));
    }
    if !key.starts_with("wrt_") {
        return Err(ApiError::Unauthorized(
            "`x-api-key` must be a writ API key (`wrt_...`), as shown once when it was created"
                .into(),
        ));
    }
    let Some(state) = request.app_data::<web::Data<AppState>>() else {
        return Err(ApiError::Unavailable("the server is not configured".into()));
    };
    let hash = state.secrets.hash(key);
    state.ledger.read(|s| {
        let key = s.api_key_by_hash(&hash).ok_or_else(|| {
            ApiError::Unauthorized("that API key is not one writ issued".into())
        })?;
        if let Some(at) = key.revoked_at {
            return Err(ApiError::Unauthorized(format!(
                "API key {} was revoked at {at}; ask an admin for a new one",
                key.key_id
            )));
        }
        if !s.user(&key.user_id).is_some_and(|user| user.active) {
            return Err(ApiError::Unauthorized(format!(
                "the person this API key acts as (user {}) is deactivated; an admin can reactivate them",
                key.user_id
            )));
        }
        Ok(Caller::User(key.user_id.clone()))
    })
}

/// The scope that makes a person's own token a management credential. `POST
/// /api/v1/me/tokens` grants it only when the person names it, and only for an agent
/// registered with it.
pub const MANAGE_SCOPE: &str = "writ:manage";

/// The person a bearer writ access token stands for: found by its digest, live, and a
/// person's own (a person as subject, no agent in an `act` chain).
fn person_by_token(request: &HttpRequest, bearer: &str) -> Result<Caller, ApiError> {
    let Some(state) = request.app_data::<web::Data<AppState>>() else {
        return Err(ApiError::Unavailable("the server is not configured".into()));
    };
    let digest = Digest::of(bearer.as_bytes());
    let now = state.clock.now();
    state.ledger.read(|s| {
        let token = s.token_by_digest(&digest).ok_or_else(|| {
            ApiError::Unauthorized(
                "that bearer token is neither a live admin credential nor an access token writ issued"
                    .into(),
            )
        })?;
        if let TokenStatus::Revoked { at, .. } = &token.status {
            return Err(ApiError::Unauthorized(format!(
                "that access token was revoked at {at}; get a new one (`POST /api/v1/me/tokens` with your API key)"
            )));
        }
        if !token.is_active(now) {
            return Err(ApiError::Unauthorized(format!(
                "that access token expired at {}; get a new one (`POST /api/v1/me/tokens` with your API key)",
                token.expires_at
            )));
        }
        let user_id = match (&token.user_id, token.actors.as_slice()) {
            (Some(user_id), []) => user_id,
            (Some(user_id), [holder, ..]) => {
                return Err(ApiError::Unauthorized(format!(
                    "that is agent {holder}'s token on behalf of user {user_id}: an agent acts for a person only within their delegation, never as them on management endpoints; send the person's own token or API key"
                )));
            }
            (None, _) => {
                return Err(ApiError::Unauthorized(format!(
                    "that is agent {}'s own token: management endpoints take a person's own token or API key, or an admin credential",
                    token.client_id
                )));
            }
        };
        // A person's token is held by an agent (its `client_id`): were every such token a
        // management credential, the agent could grant itself a wider or endless
        // delegation in the person's name. Only a token the person asked `writ:manage`
        // for, of an agent registered with that scope, manages their account.
        if !token.scopes.iter().any(|scope| scope == MANAGE_SCOPE) {
            return Err(ApiError::Unauthorized(format!(
                "that is user {user_id}'s token held by agent {}, without the `{MANAGE_SCOPE}` scope: it lets the agent act for them by token exchange, not manage their account; send the person's API key, or a token they asked `{MANAGE_SCOPE}` for",
                token.client_id
            )));
        }
        if !s.user(user_id).is_some_and(|user| user.active) {
            return Err(ApiError::Unauthorized(format!(
                "the person this token stands for (user {user_id}) is deactivated; an admin can reactivate them"
            )));
        }
        Ok(Caller::UserToken(user_id.clone()))
    })
}

/// The credential of an `Authorization: Bearer <credential>` header (RFC 6750 §2.1; the
/// scheme name is case-insensitive, RFC 9110 §11.1), if the request has one.
pub fn bearer_token(request: &HttpRequest) -> Option<&str> {
    let value = request
        .headers()
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, credential) = value.trim().split_once(' ')?;
    let credential = credential.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !credential.is_empty()).then_some(credential)
}

fn authenticate(request: &HttpRequest) -> Result<Admin, ApiError> {
    let token = bearer_token(request).ok_or_else(|| {
        ApiError::Unauthorized(
            "send an admin credential as `Authorization: Bearer <credential>`".into(),
        )
    })?;
    match admin_credential(request, token)? {
        Some(actor) => Ok(Admin(actor)),
        None => Err(ApiError::Unauthorized(
            "that bearer token is not a live admin credential: it was never issued, or it was revoked; ask an admin for one (`POST /api/v1/admin/credentials`, or `writ admin token create` on the data directory)".into(),
        )),
    }
}

/// The roles the endpoints of one path need of an admin credential, by method: put on
/// each path's resource by `routes`, read back here.
#[derive(Debug, Clone, Default)]
pub struct EndpointRoles(pub Vec<(actix_web::http::Method, AdminRole)>);

/// The role this request's endpoint needs. A route without a declaration (none in
/// `endpoints()`) needs the highest: a forgotten declaration fails closed.
fn role_needed(request: &HttpRequest) -> AdminRole {
    request
        .app_data::<EndpointRoles>()
        .and_then(|roles| {
            roles
                .0
                .iter()
                .find(|(method, _)| method == request.method())
                .map(|(_, role)| *role)
        })
        .unwrap_or(AdminRole::Admin)
}

/// The admin credential `bearer` is, as the actor the ledger records, if it is one:
/// `Ok(None)` when no admin credential has its hash (never issued, or revoked), an error
/// when it has expired or its role does not reach what this request's endpoint needs.
pub fn admin_credential(request: &HttpRequest, bearer: &str) -> Result<Option<Actor>, ApiError> {
    let Some(state) = request.app_data::<web::Data<AppState>>() else {
        return Err(ApiError::Unavailable("the server is not configured".into()));
    };
    let hash = state.secrets.hash(bearer);
    let Some(credential) = state.ledger.read(|s| s.admin_token_by_hash(&hash).cloned()) else {
        return Ok(None);
    };
    let now = state.clock.now();
    if !credential.is_live(now) {
        let at = credential
            .expires_at
            .map(|at| at.to_string())
            .unwrap_or_default();
        return Err(ApiError::Unauthorized(format!(
            "admin credential {:?} ({}) expired at {at}; ask an admin for a new one",
            credential.name, credential.token_id
        )));
    }
    let needed = role_needed(request);
    if credential.role < needed {
        return Err(ApiError::InsufficientRole(format!(
            "admin credential {:?} ({}) has role {}, which only reads; {} {} changes writ and needs role {needed}",
            credential.name,
            credential.token_id,
            credential.role,
            request.method(),
            request
                .match_pattern()
                .unwrap_or_else(|| request.path().to_owned()),
        )));
    }
    Ok(Some(Actor::Admin {
        token_id: credential.token_id,
    }))
}
