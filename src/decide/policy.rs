//! Decisions about Cedar policy sets (the text is validated before the command is made).

use writ_projections::State;
use writ_schemas::{Actor, Event, PolicySetAssigned, PolicySubject};

use super::{Refusal, known_agent};

/// Records a new policy set for an agent (an admin) or a person (an admin, or that person).
pub(super) fn assign(state: &State, e: &PolicySetAssigned) -> Result<Vec<Event>, Refusal> {
    match &e.subject {
        PolicySubject::Agent { client_id } => {
            known_agent(state, client_id)?;
            if !matches!(e.by, Actor::Admin { .. }) {
                return Err(Refusal::NotPolicyOwner(format!("agent {client_id}")));
            }
        }
        PolicySubject::User { user_id } => {
            if state.user(user_id).is_none() {
                return Err(Refusal::UnknownUser(user_id.clone()));
            }
            let allowed = match &e.by {
                Actor::Admin { .. } => true,
                Actor::User { user_id: by } => by == user_id,
                _ => false,
            };
            if !allowed {
                return Err(Refusal::NotPolicyOwner(format!("user {user_id}")));
            }
        }
    }
    Ok(vec![e.clone().into()])
}
