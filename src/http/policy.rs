//! Cedar policy sets of agents and people: `PUT` checks the bounds of `policy::bounds`
//! and validates against writ's schema (a set over a bound is a 400 naming it; one that
//! does not parse or validate, a 400 with Cedar's message), `GET` reads it back.

use actix_web::{HttpResponse, web};
use serde::Deserialize;
use serde_json::json;
use writ_schemas::{ClientId, PolicySetAssigned, PolicySubject, UserId};

use super::AppState;
use super::auth::{Admin, Caller};
use super::error::ApiError;
use crate::decide::Command;
use crate::policy;

/// The body of a policy-set write.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct PolicySetBody {
    policies: String,
}

fn validated(body: PolicySetBody) -> Result<String, ApiError> {
    policy::validate(&body.policies).map_err(|detail| ApiError::BadRequest {
        code: "invalid_policy",
        detail,
    })?;
    Ok(body.policies)
}

/// Sets an agent's policy set (an admin).
pub(super) async fn put_agent(
    state: web::Data<AppState>,
    admin: Admin,
    id: web::Path<String>,
    body: web::Json<PolicySetBody>,
) -> Result<HttpResponse, ApiError> {
    let client_id = ClientId(id.into_inner());
    if !state.ledger.read(|s| s.agent(&client_id).is_some()) {
        return Err(ApiError::NotFound(format!(
            "agent {client_id} does not exist"
        )));
    }
    let policies = validated(body.into_inner())?;
    let event = PolicySetAssigned {
        subject: PolicySubject::Agent { client_id },
        policies,
        by: admin.0,
    };
    state.ledger.submit(Command::AssignPolicySet(event)).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Reads an agent's policy set (an admin).
pub(super) async fn get_agent(
    state: web::Data<AppState>,
    _admin: Admin,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let client_id = ClientId(id.into_inner());
    let (known, policies) = state.ledger.read(|s| {
        (
            s.agent(&client_id).is_some(),
            s.agent_policy_set(&client_id).map(|r| r.policies.clone()),
        )
    });
    if !known {
        return Err(ApiError::NotFound(format!(
            "agent {client_id} does not exist"
        )));
    }
    Ok(HttpResponse::Ok().json(json!({ "client_id": client_id.0, "policies": policies })))
}

fn may_touch(caller: &Caller, user_id: &UserId) -> Result<(), ApiError> {
    match caller.user_id() {
        Some(me) if me != user_id => Err(ApiError::Forbidden(format!(
            "only an admin or user {user_id} may read or set their policy set"
        ))),
        _ => Ok(()),
    }
}

/// Sets a person's policy set (an admin, or that person).
pub(super) async fn put_user(
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<String>,
    body: web::Json<PolicySetBody>,
) -> Result<HttpResponse, ApiError> {
    let user_id = UserId(id.into_inner());
    may_touch(&caller, &user_id)?;
    if !state.ledger.read(|s| s.user(&user_id).is_some()) {
        return Err(ApiError::NotFound(format!(
            "user {user_id} is not registered"
        )));
    }
    let policies = validated(body.into_inner())?;
    let event = PolicySetAssigned {
        subject: PolicySubject::User { user_id },
        policies,
        by: caller.actor(),
    };
    state.ledger.submit(Command::AssignPolicySet(event)).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Reads a person's policy set (an admin, or that person).
pub(super) async fn get_user(
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let user_id = UserId(id.into_inner());
    may_touch(&caller, &user_id)?;
    let (known, policies) = state.ledger.read(|s| {
        (
            s.user(&user_id).is_some(),
            s.user_policy_set(&user_id).map(|r| r.policies.clone()),
        )
    });
    if !known {
        return Err(ApiError::NotFound(format!(
            "user {user_id} is not registered"
        )));
    }
    Ok(HttpResponse::Ok().json(json!({ "user_id": user_id.0, "policies": policies })))
}
