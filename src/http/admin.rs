//! Admin credentials: `POST /api/v1/admin/credentials` (role admin; the credential shown
//! once, only its keyed hash kept), `GET /api/v1/admin/credentials` (either role) and
//! `DELETE /api/v1/admin/credentials/{id}` (role admin). The rules — unique names, the
//! bound on how many, the last live admin credential kept — are decided in
//! `decide/admin.rs`; this module parses and answers.

use actix_web::{HttpResponse, web};
use serde::{Deserialize, Serialize};
use writ_projections::AdminCredential;
use writ_schemas::{AdminRole, Timestamp};

use super::AppState;
use super::auth::Admin;
use super::error::ApiError;
use crate::decide::Command;
use crate::secrets::{new_id, new_secret};

/// The prefix of the credentials writ generates (one given in `WRIT_ADMIN_TOKEN` may
/// have any shape).
pub const ADMIN_CREDENTIAL_PREFIX: &str = "wrt_admin_";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct NewCredential {
    name: String,
    #[serde(default)]
    role: Option<AdminRole>,
    #[serde(default)]
    expires_at: Option<String>,
}

/// A credential as the API shows it (never its secret, which only its creation shows).
#[derive(Debug, Serialize)]
pub struct CredentialView {
    id: String,
    name: String,
    role: AdminRole,
    created_at: String,
    expires_at: Option<String>,
    /// `live`, or `expired` (a revoked credential is not listed).
    status: &'static str,
}

impl CredentialView {
    /// The credential as seen at `now`.
    pub fn of(credential: &AdminCredential, now: Timestamp) -> CredentialView {
        CredentialView {
            id: credential.token_id.clone(),
            name: credential.name.clone(),
            role: credential.role,
            created_at: credential.created_at.to_string(),
            expires_at: credential.expires_at.map(|at| at.to_string()),
            status: if credential.is_live(now) {
                "live"
            } else {
                "expired"
            },
        }
    }
}

/// Creates a credential; its secret is in this answer and nowhere else.
pub(super) async fn create(
    state: web::Data<AppState>,
    admin: Admin,
    body: web::Json<NewCredential>,
) -> Result<HttpResponse, ApiError> {
    let NewCredential {
        name,
        role,
        expires_at,
    } = body.into_inner();
    let now = state.clock.now();
    let expires_at = expires_at
        .as_deref()
        .map(|text| super::agents::parse_time("expires_at", text, now))
        .transpose()?;
    let token = new_secret(ADMIN_CREDENTIAL_PREFIX);
    let token_id = new_id("adm_");
    let command = Command::IssueAdminToken {
        token_id: token_id.clone(),
        token_hash: state.secrets.hash(&token),
        by: admin.0,
        first: false,
        name,
        role: role.unwrap_or(AdminRole::Admin),
        expires_at,
    };
    state.ledger.submit(command).await?;
    let view = state.ledger.read(|s| {
        s.admin_credential(&token_id)
            .map(|credential| CredentialView::of(credential, now))
    });
    let view = view.ok_or_else(|| {
        ApiError::Unavailable("the new credential is not visible yet; retry the read".into())
    })?;
    Ok(HttpResponse::Created().json(serde_json::json!({ "credential": view, "token": token })))
}

/// Lists the credentials not revoked, by name.
pub(super) async fn list(state: web::Data<AppState>, _: Admin) -> HttpResponse {
    let now = state.clock.now();
    let credentials: Vec<CredentialView> = state.ledger.read(|s| {
        s.admin_credentials()
            .into_iter()
            .map(|credential| CredentialView::of(credential, now))
            .collect()
    });
    HttpResponse::Ok().json(credentials)
}

/// Revokes a credential: refused from the next request on, on every node once it has read
/// the record.
pub(super) async fn revoke(
    state: web::Data<AppState>,
    admin: Admin,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let command = Command::RevokeAdminToken {
        token_id: id.into_inner(),
        by: admin.0,
    };
    state.ledger.submit(command).await?;
    Ok(HttpResponse::NoContent().finish())
}
