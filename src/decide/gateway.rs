//! Decisions of the tool-call gateway: recording how a forwarded call ended. The call's
//! operation was recorded (and its quota enforced) by `RecordOperation` before forwarding.

use writ_projections::State;
use writ_schemas::{Event, ToolCallCompleted};

use super::{Answer, Refusal};

/// Records the outcome of a forwarded tool call made with a token writ knows.
pub(super) fn record_tool_call(
    state: &State,
    call: &ToolCallCompleted,
) -> Result<(Vec<Event>, Answer), Refusal> {
    if state.token(&call.jti).is_none() {
        return Err(Refusal::UnknownToken);
    }
    Ok((vec![call.clone().into()], Answer::Done))
}

#[cfg(test)]
mod tests {
    use super::*;
    use writ_schemas::{Jti, ServerId, ToolCallOutcome};

    #[test]
    fn an_outcome_for_a_token_writ_does_not_know_is_refused() {
        let call = ToolCallCompleted {
            call_id: "call_1".into(),
            jti: Jti::from("nobody"),
            server_id: ServerId::from("srv"),
            tool_name: "echo".into(),
            outcome: ToolCallOutcome::Succeeded,
            detail: None,
            credential: None,
            policy_ids: vec![],
        };
        assert_eq!(
            record_tool_call(&State::default(), &call).err(),
            Some(Refusal::UnknownToken)
        );
    }
}
