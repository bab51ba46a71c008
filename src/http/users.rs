//! People: `POST /api/v1/users`, `GET /api/v1/users`, deactivate and reactivate (admin),
//! their API keys: issued by an admin (the key shown once), revoked by an admin or by the
//! key's own person; and "sign out everywhere" (`POST /api/v1/users/{id}/sessions/end`),
//! by the person or an admin.

use actix_web::{HttpResponse, web};
use serde::{Deserialize, Serialize};
use writ_projections::User;
use writ_schemas::{ApiKeyId, UserId};

use super::AppState;
use super::auth::{Admin, Caller};
use super::error::ApiError;
use crate::decide::{Command, Refusal};
use crate::people::{EraseError, Field, People, PeopleError, identity};
use crate::secrets::new_secret;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct NewUser {
    email: String,
    name: Option<String>,
}

#[derive(Debug, Serialize)]
struct UserView {
    id: String,
    email: String,
    name: Option<String>,
    active: bool,
    erased: bool,
    created_at: String,
    /// Runs of failed sign-ins recorded against the person.
    sign_in_anomalies: u32,
    /// When the last such run began.
    sign_in_anomaly_last_at: Option<String>,
    /// Their session generation: how many times all their sessions were ended.
    session_generation: u64,
}

impl UserView {
    /// The person as the API shows them: their email and name opened with their key, or
    /// `"[erased]"`.
    fn of(user: &User, people: &People) -> UserView {
        UserView {
            id: user.user_id.to_string(),
            email: people.reveal(&user.user_id, Field::Email, &user.email),
            name: people.reveal_opt(&user.user_id, Field::Name, user.name.as_ref()),
            active: user.active,
            erased: user.erased,
            created_at: user.registered_at.to_string(),
            sign_in_anomalies: user.sign_in_anomalies,
            sign_in_anomaly_last_at: user.sign_in_anomaly_last_at.map(|at| at.to_string()),
            session_generation: user.session_generation,
        }
    }
}

fn refused(refused: identity::Refused) -> ApiError {
    ApiError::invalid(refused.field, refused.detail)
}

/// Registers a person.
pub(super) async fn create(
    state: web::Data<AppState>,
    admin: Admin,
    body: web::Json<NewUser>,
) -> Result<HttpResponse, ApiError> {
    let NewUser { email, name } = body.into_inner();
    let submitted = email;
    let email = identity::email(&submitted).map_err(refused)?;
    let name = name
        .as_deref()
        .map(identity::name)
        .transpose()
        .map_err(refused)?;
    let people = &state.people;
    let email_hash = people.compared_hash(&email);
    let email_skeleton_hash = people.skeleton_hash(&email);
    // Emails recorded in the clear (before sealing) or hashed before normalization, and
    // skeletons of people registered before skeletons were recorded, are unique too; no
    // new record adds one, so these checks cannot race. The sequencer checks the rest.
    let (taken, looks_like) = state.ledger.read(|s| {
        let taken = people.user_by_email(s, &submitted).is_some()
            || people.user_by_email(s, &email.stored).is_some();
        (taken, people.older_look_alike(s, &email_skeleton_hash))
    });
    if taken {
        return Err(Refusal::EmailTaken.into());
    }
    if let Some(existing) = looks_like {
        return Err(Refusal::EmailLooksTaken(existing).into());
    }
    let user_id = UserId(uuid::Uuid::new_v4().to_string());
    let sealing = || -> Result<Command, PeopleError> {
        Ok(Command::RegisterUser {
            user_id: user_id.clone(),
            email_sealed: people.seal(&user_id, Field::Email, &email.stored)?,
            email_hash,
            email_skeleton_hash,
            name_sealed: name
                .as_deref()
                .map(|name| people.seal(&user_id, Field::Name, name))
                .transpose()?,
            by: admin.0.clone(),
        })
    };
    let command = sealing().map_err(|err| ApiError::Unavailable(err.to_string()))?;
    if let Err(err) = state.ledger.submit(command).await {
        // Nothing was recorded for this id: its key has nothing to open.
        if let Err(destroy) = people.destroy_key(&user_id) {
            tracing::warn!(%user_id, %destroy, "could not remove the key of a user that was not registered");
        }
        return Err(err.into());
    }
    let user = state.ledger.read(|s| s.user(&user_id).cloned());
    let user = user.ok_or_else(|| {
        ApiError::Unavailable("the new user is not visible yet; retry the read".into())
    })?;
    Ok(HttpResponse::Created().json(UserView::of(&user, people)))
}

/// Lists people, by id.
pub(super) async fn list(state: web::Data<AppState>, _admin: Admin) -> HttpResponse {
    // Copied out under the lock, opened after it: opening may read keys from a store.
    let users: Vec<User> = state.ledger.read(|s| s.users().cloned().collect());
    let users: Vec<UserView> = users
        .iter()
        .map(|user| UserView::of(user, &state.people))
        .collect();
    HttpResponse::Ok().json(users)
}

/// Deactivates a person and revokes every token acting for them.
pub(super) async fn deactivate(
    state: web::Data<AppState>,
    admin: Admin,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let command = Command::DeactivateUser {
        user_id: UserId(id.into_inner()),
        by: admin.0,
    };
    state.ledger.submit(command).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Erases a person (GDPR Art. 17): deactivates them with their tokens, records the
/// erasure, and destroys the key their personal data was sealed under. Their records stay
/// and the chain verifies; their email and name read `"[erased]"` from now on.
pub(super) async fn erase(
    state: web::Data<AppState>,
    admin: Admin,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let user_id = UserId(id.into_inner());
    let erased = crate::people::erase(&state.ledger, &state.people, &user_id, admin.0)
        .await
        .map_err(|err| match err {
            EraseError::Submit(err) => ApiError::from(err),
            err @ EraseError::KeyNotDestroyed { .. } => ApiError::Unavailable(err.to_string()),
        })?;
    // Their connections ended with them: revoke the upstream tokens.
    state.connections.revoke_soon();
    Ok(HttpResponse::Ok().json(serde_json::json!({
        "id": user_id.to_string(),
        "erased": true,
        "tokens_revoked": erased.tokens_revoked,
        "key_destroyed": erased.key_destroyed,
    })))
}

/// Reactivates a person (tokens revoked at deactivation stay revoked).
pub(super) async fn reactivate(
    state: web::Data<AppState>,
    admin: Admin,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let command = Command::ReactivateUser {
        user_id: UserId(id.into_inner()),
        by: admin.0,
    };
    state.ledger.submit(command).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Issues an API key acting as the person; the key is in this response and nowhere else.
pub(super) async fn issue_api_key(
    state: web::Data<AppState>,
    admin: Admin,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let user_id = UserId(id.into_inner());
    let key_id = ApiKeyId(uuid::Uuid::new_v4().to_string());
    let key = new_secret("wrt_");
    let command = Command::IssueApiKey {
        key_id: key_id.clone(),
        user_id: user_id.clone(),
        key_hash: state.secrets.hash(&key),
        by: admin.0,
    };
    state.ledger.submit(command).await?;
    let created_at = state
        .ledger
        .read(|s| s.api_key(&key_id).map(|k| k.issued_at.to_string()))
        .ok_or_else(|| {
            ApiError::Unavailable("the new API key is not visible yet; retry the read".into())
        })?;
    Ok(HttpResponse::Created().json(serde_json::json!({
        "id": key_id.to_string(),
        "key": key,
        "user_id": user_id.to_string(),
        "created_at": created_at,
    })))
}

/// Revokes an API key (an admin, or the person it acts as).
pub(super) async fn revoke_api_key(
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let command = Command::RevokeApiKey {
        key_id: ApiKeyId(id.into_inner()),
        by: caller.actor(),
    };
    state.ledger.submit(command).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Ends every sign-in session of the person ("sign out everywhere"): the person
/// themselves or an admin.
pub(super) async fn end_sessions(
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let command = Command::EndSessions {
        user_id: UserId(id.into_inner()),
        by: caller.actor(),
    };
    state.ledger.submit(command).await?;
    Ok(HttpResponse::NoContent().finish())
}
