//! `POST /api/v1/operations`: the token being used records one use, durably, under its
//! quota. An `Idempotency-Key` makes a retry return the first answer without counting.

use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;
use serde_json::json;
use writ_schemas::Digest;

use super::AppState;
use super::error::ApiError;
use crate::decide::{Answer, Command, Refusal};
use crate::ledger::SubmitError;

/// Longest `operation`, `resource` or `Idempotency-Key`.
pub const FIELD_BYTES_MAX: usize = 512;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Operation {
    operation: String,
    resource: Option<String>,
}

fn bounded(field: &str, value: &str) -> Result<(), ApiError> {
    if value.is_empty() || value.len() > FIELD_BYTES_MAX || value.chars().any(char::is_control) {
        return Err(ApiError::invalid(
            field,
            format!("1 to {FIELD_BYTES_MAX} bytes of text"),
        ));
    }
    Ok(())
}

/// Records one operation.
pub(super) async fn record(
    state: web::Data<AppState>,
    request: HttpRequest,
    body: web::Json<Operation>,
) -> Result<HttpResponse, ApiError> {
    let token = super::auth::bearer_token(&request).ok_or_else(|| {
        ApiError::Unauthorized(
            "send the token being used as `Authorization: Bearer <token>`".into(),
        )
    })?;
    let key = match request.headers().get("idempotency-key") {
        None => None,
        Some(value) => {
            let key = value
                .to_str()
                .map_err(|_| ApiError::invalid("Idempotency-Key", "must be visible ASCII"))?;
            bounded("Idempotency-Key", key)?;
            Some(key.to_owned())
        }
    };
    let Operation {
        operation,
        resource,
    } = body.into_inner();
    bounded("operation", &operation)?;
    if let Some(resource) = &resource {
        bounded("resource", resource)?;
    }
    let command = Command::RecordOperation {
        digest: Digest::of(token.as_bytes()),
        operation,
        resource,
        idempotency_key: key,
        approval: None,
    };
    match state.ledger.submit(command).await {
        Ok(receipt) => match receipt.answer {
            Answer::Operation {
                operations_remaining,
                active,
            } => Ok(HttpResponse::Ok()
                .json(json!({ "operations_remaining": operations_remaining, "active": active }))),
            other => Err(ApiError::Unavailable(format!(
                "unexpected answer {other:?}"
            ))),
        },
        Err(refused) => Err(refusal(refused)),
    }
}

/// What a refused `RecordOperation` answers (the gateway's calls count the same way).
pub(super) fn refusal(error: SubmitError) -> ApiError {
    match error {
        SubmitError::Refused(Refusal::QuotaExhausted) => ApiError::QuotaExhausted,
        SubmitError::Refused(Refusal::UnknownToken | Refusal::TokenInactive) => {
            ApiError::Unauthorized("the token is unknown, revoked or expired".into())
        }
        other => other.into(),
    }
}
