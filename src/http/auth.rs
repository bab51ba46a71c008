//! Who is calling a management endpoint. So far: an administrator, by a bearer admin
//! token; user API keys and user tokens arrive with the delegation work.

use std::future::{Ready, ready};

use actix_web::{FromRequest, HttpRequest, dev::Payload, http::header, web};
use writ_schemas::Actor;

use super::AppState;
use super::error::ApiError;

/// An authenticated administrator.
#[derive(Debug, Clone)]
pub struct Admin(pub Actor);

impl FromRequest for Admin {
    type Error = ApiError;
    type Future = Ready<Result<Admin, ApiError>>;

    fn from_request(request: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(authenticate(request))
    }
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
    let Some(state) = request.app_data::<web::Data<AppState>>() else {
        return Err(ApiError::Unavailable("the server is not configured".into()));
    };
    let token = bearer_token(request).ok_or_else(|| {
        ApiError::Unauthorized(
            "send an admin token as `Authorization: Bearer wrt_admin_...`".into(),
        )
    })?;
    let hash = state.secrets.hash(token);
    let token_id = state
        .ledger
        .read(|s| s.admin_token_by_hash(&hash).map(str::to_owned));
    match token_id {
        Some(token_id) => Ok(Admin(Actor::Admin { token_id })),
        None => Err(ApiError::Unauthorized(
            "that bearer token is not a valid admin token".into(),
        )),
    }
}
