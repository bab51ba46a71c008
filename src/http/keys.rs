//! `POST /api/v1/keys/rotate` (admin): a new signing key while the server runs. The
//! work is `keys::SigningKeys::rotate`; this parses the request and maps the outcome.

use actix_web::{HttpResponse, web};
use serde::Deserialize;
use serde_json::json;

use super::AppState;
use super::auth::Admin;
use super::error::ApiError;
use crate::keys::{KeyError, parse_algorithm};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Rotation {
    alg: Option<String>,
}

/// Makes a new key current; answers 201 with `{kid, alg, previous_kid}`. An empty body,
/// or no `alg`, keeps the current key's algorithm.
pub(super) async fn rotate(
    state: web::Data<AppState>,
    admin: Admin,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let rotation: Rotation = super::error::optional_json(payload).await?;
    let alg = rotation
        .alg
        .as_deref()
        .map(parse_algorithm)
        .transpose()
        .map_err(|why| ApiError::invalid("alg", why))?;
    let rotated = state
        .signing_keys
        .rotate(&state.ledger, alg, admin.0)
        .await
        .map_err(|err| match err {
            KeyError::Ledger(refused) => refused.into(),
            other => ApiError::Unavailable(other.to_string()),
        })?;
    Ok(HttpResponse::Created().json(json!({
        "kid": rotated.kid.as_str(),
        "alg": rotated.alg.name(),
        "previous_kid": rotated.previous_kid.as_ref().map(|kid| kid.as_str()),
    })))
}
