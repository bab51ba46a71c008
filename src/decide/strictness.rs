//! How strict an agent type is, and so which tokens an agent may hold. Supervision and the
//! ephemeral limits belong to the agent: a token is as strict as the agent registered for
//! it, or stricter, and a token exchanged from another is as strict as that one too.
//!
//! The order is partial. `autonomous` is the laxest: an autonomous agent may hold a token
//! of any type. `supervised` (a person approves critical calls) and `ephemeral` (short
//! lifetime, few operations, revoked on completion) restrict different things, so neither
//! is at least as strict as the other: a supervised agent's tokens are supervised, an
//! ephemeral agent's ephemeral, and a token that would have to be both is refused.

use writ_schemas::AgentType;

/// The type as the API and the ledger write it.
pub fn name(agent_type: AgentType) -> &'static str {
    match agent_type {
        AgentType::Autonomous => "autonomous",
        AgentType::Supervised => "supervised",
        AgentType::Ephemeral => "ephemeral",
    }
}

/// Whether a token of type `token` is at least as strict as `floor` (its agent's
/// registered type, or the type of the token it was exchanged from).
pub fn within(token: AgentType, floor: AgentType) -> bool {
    token == floor || floor == AgentType::Autonomous
}

/// The laxest type at least as strict as both, or none when there is no such type.
pub fn stricter(a: AgentType, b: AgentType) -> Option<AgentType> {
    match (within(a, b), within(b, a)) {
        (true, _) => Some(a),
        (false, true) => Some(b),
        (false, false) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use AgentType::{Autonomous, Ephemeral, Supervised};

    #[test]
    fn an_autonomous_floor_admits_every_type_and_the_others_only_themselves() {
        for token in [Autonomous, Supervised, Ephemeral] {
            assert!(within(token, Autonomous));
        }
        assert!(within(Supervised, Supervised));
        assert!(!within(Autonomous, Supervised));
        assert!(!within(Ephemeral, Supervised));
        assert!(within(Ephemeral, Ephemeral));
        assert!(!within(Autonomous, Ephemeral));
        assert!(!within(Supervised, Ephemeral));
    }

    #[test]
    fn the_stricter_of_two_types_is_none_when_they_restrict_different_things() {
        assert_eq!(stricter(Autonomous, Supervised), Some(Supervised));
        assert_eq!(stricter(Ephemeral, Autonomous), Some(Ephemeral));
        assert_eq!(stricter(Supervised, Supervised), Some(Supervised));
        assert_eq!(stricter(Supervised, Ephemeral), None);
        assert_eq!(stricter(Ephemeral, Supervised), None);
    }
}
