//! Administrator credentials: who may create and revoke them, what names they may have,
//! and the rule that keeps someone able to manage writ: the last live `admin` credential
//! cannot be revoked.
//!
//! The HTTP layer already refuses an `auditor` credential on every endpoint that writes;
//! these commands check the role again here, where the decision is replayed and tested, so
//! that no other way in (a new endpoint, a script on the library) can skip it.

use writ_projections::State;
use writ_schemas::{Actor, AdminRole, AdminTokenIssued, AdminTokenRevoked, Event, Timestamp};

use super::{Answer, Refusal};

/// Most admin credentials kept unrevoked at once: one per operator, pipeline and audit
/// engagement is far fewer; the bound keeps a leaked `admin` credential from growing the
/// state without end. Revoke credentials no longer used to make room.
pub const ADMIN_CREDENTIALS_MAX: usize = 100;
/// Longest admin credential name, in characters.
pub const ADMIN_CREDENTIAL_NAME_CHARS_MAX: usize = 64;

/// The members of `Command::IssueAdminToken`, borrowed.
pub(super) struct Issue<'a> {
    pub token_id: &'a str,
    pub token_hash: &'a writ_schemas::Digest,
    pub by: &'a Actor,
    pub first: bool,
    pub name: &'a str,
    pub role: AdminRole,
    pub expires_at: Option<Timestamp>,
}

pub(super) fn issue(
    state: &State,
    asked: Issue<'_>,
    now: Timestamp,
) -> Result<(Vec<Event>, Answer), Refusal> {
    let Issue {
        token_id,
        token_hash,
        by,
        first,
        name,
        role,
        expires_at,
    } = asked;
    if state.admin_token_by_hash(token_hash).is_some() {
        return Err(Refusal::AdminTokenExists);
    }
    // Nodes starting together on a new ledger: the first one's credential stands.
    if first && state.admin_token_count() > 0 {
        return Err(Refusal::NotFirstAdminToken);
    }
    may_manage(state, by, now)?;
    check_name(name)?;
    if state
        .admin_credentials()
        .iter()
        .any(|credential| credential.name == *name)
    {
        return Err(Refusal::AdminCredentialNameTaken(name.to_owned()));
    }
    if state.admin_token_count() >= ADMIN_CREDENTIALS_MAX {
        return Err(Refusal::TooManyAdminCredentials(ADMIN_CREDENTIALS_MAX));
    }
    if let Some(at) = expires_at.filter(|at| *at <= now) {
        return Err(Refusal::NotInFuture(at));
    }
    let event = AdminTokenIssued {
        token_id: token_id.to_owned(),
        token_hash: *token_hash,
        by: by.clone(),
        name: Some(name.to_owned()),
        role: Some(role),
        expires_at,
    };
    Ok((vec![event.into()], Answer::Done))
}

pub(super) fn revoke(
    state: &State,
    token_id: &str,
    by: &Actor,
    now: Timestamp,
) -> Result<(Vec<Event>, Answer), Refusal> {
    may_manage(state, by, now)?;
    let target = state
        .admin_credential(token_id)
        .ok_or_else(|| Refusal::UnknownAdminCredential(token_id.to_owned()))?;
    let another_admin = state.admin_credentials().iter().any(|credential| {
        credential.token_id != token_id
            && credential.role == AdminRole::Admin
            && credential.is_live(now)
    });
    // Without a live admin credential nobody can manage writ through its API; only the
    // command line on a stopped server could mend it.
    if target.role == AdminRole::Admin && !another_admin {
        return Err(Refusal::LastAdminCredential(token_id.to_owned()));
    }
    let event = AdminTokenRevoked {
        token_id: token_id.to_owned(),
        by: by.clone(),
    };
    Ok((vec![event.into()], Answer::Done))
}

/// Only writ itself (first start, the command line) or a live `admin` credential manages
/// credentials. A credential revoked or expired while its request was on its way is
/// refused here too.
fn may_manage(state: &State, by: &Actor, now: Timestamp) -> Result<(), Refusal> {
    let Actor::Admin { token_id } = by else {
        return match by {
            Actor::System => Ok(()),
            _ => Err(Refusal::NotAdmin),
        };
    };
    let credential = state
        .admin_credential(token_id)
        .filter(|credential| credential.is_live(now))
        .ok_or_else(|| Refusal::AdminCredentialNotLive(token_id.clone()))?;
    match credential.role {
        AdminRole::Admin => Ok(()),
        AdminRole::Auditor => Err(Refusal::InsufficientRole(token_id.clone(), credential.role)),
    }
}

fn check_name(name: &str) -> Result<(), Refusal> {
    let bad = |why: &str| Err(Refusal::BadAdminCredentialName(format!("name: {why}")));
    if name.trim().is_empty() {
        return bad("give the credential a name people will recognise, e.g. \"ci-deploy\"");
    }
    if name.chars().count() > ADMIN_CREDENTIAL_NAME_CHARS_MAX {
        return bad(&format!(
            "at most {ADMIN_CREDENTIAL_NAME_CHARS_MAX} characters"
        ));
    }
    if name.trim() != name || name.chars().any(char::is_control) {
        return bad("no leading or trailing spaces and no control characters");
    }
    // `writ admin token revoke ID|NAME` tells the two apart by this prefix.
    if name.starts_with("adm_") {
        return bad("`adm_` begins credential ids, not names; pick another name");
    }
    Ok(())
}
