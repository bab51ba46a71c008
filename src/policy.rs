//! Tool-call policy in the Cedar language: writ's schema, validation of a policy set on
//! write, and the decision for one tool call as the intersection of the agent's set and
//! the acting person's set.
//!
//! Defaults fail closed: an agent with no policy set may call no tool, and an agent acting
//! for a person who has no policy set may call no tool for them. A call with no acting
//! person (the agent acting as itself) is decided by the agent's set alone. A set that
//! cannot be evaluated denies: one over the bounds, and one with a policy that fails to
//! evaluate (Cedar alone would skip that policy, so a failing forbid would forbid nothing).
//!
//! A permit annotated `@critical` marks the calls it allows as critical: the gateway asks
//! a person to approve them when the agent is `supervised`. `@id("name")` names a policy
//! (else Cedar's `policy0`, `policy1`, ... in order of writing).
//!
//! Parsing happens once per distinct policy set: parsed sets are cached by the digest of
//! their text, so a tool call only hashes the text and evaluates.
//!
//! Hostile text cannot take the process down: `bounds` checks a set's size, policy count
//! and nesting in one flat pass before Cedar sees it (on write, and again before a stored
//! set is first evaluated, so a set stored before the bounds denies with the reason
//! rather than crashing), and every call into Cedar (parsing, validating, evaluating,
//! dropping a parsed set) runs with at least `CEDAR_STACK_BYTES_MIN` of stack left,
//! which the bounded depth fits in.

mod bounds;

use std::collections::{HashMap, HashSet};
use std::str::FromStr;
use std::sync::{Arc, LazyLock};

use cedar_policy::{
    Authorizer, Context, Decision, Entities, Entity, EntityId, EntityTypeName, EntityUid, Policy,
    PolicyId, PolicySet, Request, RestrictedExpression, Schema, ValidationMode, Validator,
};
use parking_lot::RwLock;
use writ_projections::{PolicySetRecord, State};
use writ_schemas::{AgentType, ClientId, ServerId, Timestamp, UserId};

/// writ's Cedar schema: who may call which tool, in what context.
pub const SCHEMA: &str = r#"
entity Agent;
entity User;
entity Tool = { server: String, name: String };
action call_tool appliesTo {
    principal: [Agent, User],
    resource: [Tool],
    context: {
        agent: String,
        agent_type: String,
        scopes: Set<String>,
        delegation_depth: Long,
        time: Long,
    }
};
"#;

pub use bounds::{
    OverBound, POLICY_EXPRESSION_DEPTH_MAX, POLICY_NESTING_DEPTH_MAX, POLICY_SET_BYTES_MAX,
    POLICY_SET_POLICIES_MAX,
};

/// The stack Cedar's work runs on at least, in bytes. The deepest text within the
/// `bounds` needs about 3 MiB to evaluate in a debug build, far less in a release build
/// (`the_deepest_text_within_the_bounds_fits_the_stack`).
pub const CEDAR_STACK_BYTES_MIN: usize = 4 * 1024 * 1024;

/// The size of the fresh stack Cedar's work moves to when the calling thread has less
/// than [`CEDAR_STACK_BYTES_MIN`] left (a server's threads have 2 MiB, so a call moves:
/// the cost is the page faults of the part of it the call touches).
pub const CEDAR_STACK_BYTES: usize = 8 * 1024 * 1024;

/// The most parsed policy sets kept in memory; past it, one is dropped for each new one
/// (a dropped set is parsed again when it next decides a call).
pub const PARSED_POLICY_SETS_MAX: usize = 512;

/// The longest reason a decision gives (and a denied call records), in bytes.
pub const POLICY_REASON_BYTES_MAX: usize = 2048;

/// Runs Cedar's work on a stack with at least [`CEDAR_STACK_BYTES_MIN`] left.
fn on_cedar_stack<R>(work: impl FnOnce() -> R) -> R {
    stacker::maybe_grow(CEDAR_STACK_BYTES_MIN, CEDAR_STACK_BYTES, work)
}

struct Compiled {
    schema: Schema,
    validator: Validator,
    authorizer: Authorizer,
    action: EntityUid,
}

static COMPILED: LazyLock<Result<Compiled, String>> = LazyLock::new(|| {
    let (schema, _warnings) =
        Schema::from_cedarschema_str(SCHEMA).map_err(|e| format!("writ's Cedar schema: {e}"))?;
    let action = uid("Action", "call_tool")?;
    Ok(Compiled {
        validator: Validator::new(schema.clone()),
        schema,
        authorizer: Authorizer::new(),
        action,
    })
});

/// Parsed policy sets keyed by the digest of their text (the seq of the record alone would
/// not do: one process may hold more than one ledger's state).
static PARSED: LazyLock<RwLock<HashMap<[u8; 32], Arc<PolicySet>>>> =
    LazyLock::new(|| RwLock::new(HashMap::new()));

fn uid(kind: &str, id: &str) -> Result<EntityUid, String> {
    let kind = EntityTypeName::from_str(kind).map_err(|e| e.to_string())?;
    Ok(EntityUid::from_type_name_and_id(kind, EntityId::new(id)))
}

/// Checks that a policy set is within the bounds, parses and validates against writ's
/// schema. `Err` holds the bound it is over, or Cedar's own message, for a 400.
pub fn validate(text: &str) -> Result<(), String> {
    // The parsed set is dropped on Cedar's stack too: dropping recurses like parsing.
    on_cedar_stack(|| parse_and_validate(text).map(drop))
}

/// `validate`, keeping the parsed set. Runs on the caller's stack: call it on Cedar's.
fn parse_and_validate(text: &str) -> Result<PolicySet, String> {
    bounds::check(text).map_err(|over| over.to_string())?;
    let compiled = COMPILED.as_ref().map_err(Clone::clone)?;
    let parsed = PolicySet::from_str(text).map_err(|e| format!("{e}: {e:?}"))?;
    let mut named = PolicySet::new();
    for policy in parsed.policies() {
        let policy: Policy = match policy.annotation("id") {
            Some(id) => policy.new_id(PolicyId::new(id)),
            None => policy.clone(),
        };
        named
            .add(policy)
            .map_err(|e| format!("policy ids must be unique: {e}"))?;
    }
    if parsed.templates().next().is_some() {
        return Err("templates are not accepted: write policies without slots".into());
    }
    let result = compiled.validator.validate(&named, ValidationMode::Strict);
    if !result.validation_passed() {
        let messages: Vec<String> = result.validation_errors().map(|e| format!("{e}")).collect();
        return Err(format!(
            "the policy set does not validate against writ's schema: {}",
            messages.join("; ")
        ));
    }
    Ok(named)
}

fn parsed(record: &PolicySetRecord) -> Result<Arc<PolicySet>, String> {
    let key = record.digest.0;
    if let Some(set) = PARSED.read().get(&key) {
        return Ok(Arc::clone(set));
    }
    let set = Arc::new(parse_and_validate(&record.policies)?);
    let mut parsed = PARSED.write();
    if parsed.len() >= PARSED_POLICY_SETS_MAX
        && let Some(evicted) = parsed.keys().next().copied()
    {
        parsed.remove(&evicted);
    }
    parsed.insert(key, Arc::clone(&set));
    Ok(set)
}

/// One tool call to decide.
#[derive(Debug, Clone)]
pub struct ToolCallRequest {
    /// The calling agent.
    pub client_id: ClientId,
    /// The person it acts for, if it acts for one.
    pub user_id: Option<UserId>,
    /// The MCP server.
    pub server_id: ServerId,
    /// The tool on it.
    pub tool_name: String,
    /// How the agent runs.
    pub agent_type: AgentType,
    /// The token's scopes.
    pub scopes: Vec<String>,
    /// Agents in the token's `act` chain.
    pub delegation_depth: u32,
    /// The instant of the call.
    pub now: Timestamp,
}

/// The outcome of [`decide_tool_call`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyDecision {
    /// Both applicable sets allow the call.
    pub allowed: bool,
    /// A determining permit is annotated `@critical`.
    pub critical: bool,
    /// The determining policies, each prefixed by whose set it came from
    /// (`agent:<client_id>/<policy id>`, `user:<user_id>/<policy id>`), sorted.
    pub policy_ids: Vec<String>,
    /// A sentence saying why.
    pub reason: String,
}

struct SetOutcome {
    allowed: bool,
    critical: bool,
    policy_ids: Vec<String>,
    reason: String,
}

fn evaluate(
    compiled: &Compiled,
    set: Option<&PolicySetRecord>,
    whose: &str,
    principal: Result<EntityUid, String>,
    request: &ToolCallRequest,
) -> SetOutcome {
    let denied = |reason: String| SetOutcome {
        allowed: false,
        critical: false,
        policy_ids: Vec::new(),
        reason,
    };
    let Some(record) = set else {
        return denied(format!(
            "{whose} has no policy set (no policy set allows nothing)"
        ));
    };
    let outcome = (|| -> Result<SetOutcome, String> {
        let set = parsed(record)?;
        let principal = principal?;
        let tool_id = format!("{}/{}", request.server_id, request.tool_name);
        let resource = uid("Tool", &tool_id)?;
        let tool = Entity::new(
            resource.clone(),
            HashMap::from([
                (
                    "server".to_string(),
                    RestrictedExpression::new_string(request.server_id.to_string()),
                ),
                (
                    "name".to_string(),
                    RestrictedExpression::new_string(request.tool_name.clone()),
                ),
            ]),
            HashSet::new(),
        )
        .map_err(|e| e.to_string())?;
        let principal_entity = Entity::new_no_attrs(principal.clone(), HashSet::new());
        let entities = Entities::from_entities([tool, principal_entity], Some(&compiled.schema))
            .map_err(|e| e.to_string())?;
        let agent_type = serde_json::to_value(request.agent_type)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        let context = Context::from_pairs([
            (
                "agent".to_string(),
                RestrictedExpression::new_string(request.client_id.to_string()),
            ),
            (
                "agent_type".to_string(),
                RestrictedExpression::new_string(agent_type),
            ),
            (
                "scopes".to_string(),
                RestrictedExpression::new_set(
                    request
                        .scopes
                        .iter()
                        .map(|s| RestrictedExpression::new_string(s.clone())),
                ),
            ),
            (
                "delegation_depth".to_string(),
                RestrictedExpression::new_long(i64::from(request.delegation_depth)),
            ),
            (
                "time".to_string(),
                RestrictedExpression::new_long(request.now.unix_seconds()),
            ),
        ])
        .map_err(|e| e.to_string())?;
        let cedar_request = Request::new(
            principal,
            compiled.action.clone(),
            resource,
            context,
            Some(&compiled.schema),
        )
        .map_err(|e| e.to_string())?;
        let response = compiled
            .authorizer
            .is_authorized(&cedar_request, &set, &entities);
        let mut ids: Vec<&PolicyId> = response.diagnostics().reason().collect();
        ids.sort_by_key(|id| id.to_string());
        let allowed = response.decision() == Decision::Allow;
        let critical = allowed
            && ids
                .iter()
                .any(|id| set.annotation(id, "critical").is_some());
        let policy_ids: Vec<String> = ids.iter().map(|id| format!("{whose}/{id}")).collect();
        let errors: Vec<String> = response
            .diagnostics()
            .errors()
            .map(|e| e.to_string())
            .collect();
        // Cedar skips a policy its evaluation fails on, so a forbid that fails (its
        // stack ran low, say) would forbid nothing: writ fails closed instead.
        if !errors.is_empty() {
            return Err(errors.join("; "));
        }
        let reason = match (allowed, policy_ids.is_empty()) {
            (true, _) => format!("{whose} permits it ({})", policy_ids.join(", ")),
            (false, false) => format!("{whose} forbids it ({})", policy_ids.join(", ")),
            (false, true) => format!("no policy of {whose} permits it"),
        };
        Ok(SetOutcome {
            allowed,
            critical,
            policy_ids,
            reason,
        })
    })();
    outcome.unwrap_or_else(|e| denied(format!("{whose}'s policy set could not be evaluated: {e}")))
}

/// Decides one tool call: the agent's set must allow it and, when the agent acts for a
/// person, so must that person's set. Pure over the state (parsed sets are cached by the
/// record that set them); never fails: anything unexpected denies, a stored set over the
/// bounds among it.
pub fn decide_tool_call(state: &State, request: &ToolCallRequest) -> PolicyDecision {
    on_cedar_stack(|| decide_on_cedar_stack(state, request))
}

fn decide_on_cedar_stack(state: &State, request: &ToolCallRequest) -> PolicyDecision {
    let compiled = match COMPILED.as_ref() {
        Ok(compiled) => compiled,
        Err(e) => {
            return PolicyDecision {
                allowed: false,
                critical: false,
                policy_ids: Vec::new(),
                reason: e.clone(),
            };
        }
    };
    let agent_whose = format!("agent:{}", request.client_id);
    let agent = evaluate(
        compiled,
        state.agent_policy_set(&request.client_id),
        &agent_whose,
        uid("Agent", &request.client_id.0),
        request,
    );
    let user = request.user_id.as_ref().map(|user_id| {
        evaluate(
            compiled,
            state.user_policy_set(user_id),
            &format!("user:{user_id}"),
            uid("User", &user_id.0),
            request,
        )
    });
    let mut outcomes = vec![agent];
    outcomes.extend(user);
    let allowed = outcomes.iter().all(|o| o.allowed);
    // When denied, the determining policies are those of the sets that denied.
    let deciding: Vec<&SetOutcome> = outcomes.iter().filter(|o| allowed || !o.allowed).collect();
    let mut policy_ids: Vec<String> = deciding
        .iter()
        .flat_map(|o| o.policy_ids.iter().cloned())
        .collect();
    policy_ids.sort();
    let reason = deciding
        .iter()
        .map(|o| o.reason.as_str())
        .collect::<Vec<_>>()
        .join("; ");
    PolicyDecision {
        allowed,
        critical: allowed && outcomes.iter().any(|o| o.critical),
        policy_ids,
        reason: clipped(reason),
    }
}

/// The reason cut to [`POLICY_REASON_BYTES_MAX`] (Cedar's messages about a stored set can
/// quote much of it, and every denied call records its reason).
fn clipped(mut reason: String) -> String {
    if reason.len() > POLICY_REASON_BYTES_MAX {
        let mut end = POLICY_REASON_BYTES_MAX;
        while !reason.is_char_boundary(end) {
            end -= 1;
        }
        reason.truncate(end);
        reason.push_str(" [...]");
    }
    reason
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use writ_projections::Head;
    use writ_schemas::{
        Actor, AgentRegistered, Digest, Hash, PolicySetAssigned, PolicySubject, Timestamp,
    };

    use super::*;
    use crate::decide::{Command, Refusal, decide};

    fn at() -> Timestamp {
        Timestamp::from_unix_micros(1_800_000_000_000_000).unwrap_or_else(|| unreachable!())
    }

    fn admin() -> Actor {
        Actor::Admin {
            token_id: "adm_1".into(),
        }
    }

    fn run(state: &mut State, command: Command) -> Result<(), Refusal> {
        let (events, _) = decide(state, &command, at())?;
        for event in events {
            let head = Head {
                seq: state.head().seq + 1,
                hash: Hash([7; 32]),
                ts: Some(at()),
            };
            state.apply(head, &event);
        }
        Ok(())
    }

    fn set(subject: PolicySubject, policies: &str, by: Actor) -> Command {
        Command::AssignPolicySet(PolicySetAssigned {
            subject,
            policies: policies.into(),
            by,
        })
    }

    fn agent_set(policies: &str) -> Command {
        set(
            PolicySubject::Agent {
                client_id: ClientId::from("a1"),
            },
            policies,
            admin(),
        )
    }

    fn user_set(policies: &str) -> Command {
        set(
            PolicySubject::User {
                user_id: UserId::from("ada"),
            },
            policies,
            admin(),
        )
    }

    fn world() -> State {
        let mut state = State::new();
        let commands = [
            Command::test_registration(UserId::from("ada"), "ada@example.com"),
            Command::test_registration(UserId::from("bob"), "bob@example.com"),
            Command::RegisterAgent(AgentRegistered {
                client_id: ClientId::from("a1"),
                name: "a1".into(),
                owner: None,
                scopes: vec!["files:read".into()],
                grant_types: vec!["client_credentials".into()],
                redirect_uris: vec![],
                token_endpoint_auth_method: "client_secret_basic".into(),
                secret_hash: Some(Digest::of(b"secret")),
                secret_expires_at: None,
                require_consent: false,
                agent_type: AgentType::Supervised,
                expires_at: None,
                by: Actor::System,
                jwks: None,
            }),
        ];
        for command in commands {
            run(&mut state, command).unwrap_or_else(|r| unreachable!("{r}"));
        }
        state
    }

    fn call(tool: &str) -> ToolCallRequest {
        ToolCallRequest {
            client_id: ClientId::from("a1"),
            user_id: Some(UserId::from("ada")),
            server_id: ServerId::from("srv_files"),
            tool_name: tool.into(),
            agent_type: AgentType::Supervised,
            scopes: vec!["files:read".into()],
            delegation_depth: 1,
            now: at(),
        }
    }

    const AGENT_ALLOWS: &str = r#"
        @id("files")
        permit(principal == Agent::"a1", action == Action::"call_tool", resource)
        when { resource.server == "srv_files" && context.scopes.contains("files:read") };
        @id("deletes") @critical
        permit(principal, action, resource) when { resource.name == "delete_file" };
    "#;

    #[test]
    fn the_agent_allowing_and_the_user_denying_is_denied_by_the_users_policy() {
        let mut state = world();
        run(&mut state, agent_set(AGENT_ALLOWS)).unwrap_or_else(|r| unreachable!("{r}"));
        run(
            &mut state,
            user_set(
                r#"@id("all") permit(principal, action, resource);
                   @id("no_secrets") forbid(principal, action, resource) when { resource.name == "read_secret" };"#,
            ),
        )
        .unwrap_or_else(|r| unreachable!("{r}"));
        let decision = decide_tool_call(&state, &call("read_secret"));
        assert!(!decision.allowed);
        assert_eq!(decision.policy_ids, vec!["user:ada/no_secrets".to_string()]);
    }

    #[test]
    fn both_allowing_is_allowed_with_the_determining_policies_of_both() {
        let mut state = world();
        run(&mut state, agent_set(AGENT_ALLOWS)).unwrap_or_else(|r| unreachable!("{r}"));
        run(&mut state, user_set("permit(principal, action, resource);"))
            .unwrap_or_else(|r| unreachable!("{r}"));
        let decision = decide_tool_call(&state, &call("read_file"));
        assert!(decision.allowed, "{}", decision.reason);
        assert!(!decision.critical);
        assert_eq!(
            decision.policy_ids,
            vec!["agent:a1/files".to_string(), "user:ada/policy0".to_string()]
        );
    }

    #[test]
    fn a_critical_permit_marks_the_call_critical() {
        let mut state = world();
        run(&mut state, agent_set(AGENT_ALLOWS)).unwrap_or_else(|r| unreachable!("{r}"));
        run(&mut state, user_set("permit(principal, action, resource);"))
            .unwrap_or_else(|r| unreachable!("{r}"));
        let decision = decide_tool_call(&state, &call("delete_file"));
        assert!(decision.allowed && decision.critical, "{decision:?}");
        assert!(
            decision
                .policy_ids
                .contains(&"agent:a1/deletes".to_string())
        );
    }

    #[test]
    fn no_policy_set_allows_nothing() {
        let mut state = world();
        assert!(!decide_tool_call(&state, &call("read_file")).allowed);
        run(&mut state, agent_set(AGENT_ALLOWS)).unwrap_or_else(|r| unreachable!("{r}"));
        let decision = decide_tool_call(&state, &call("read_file"));
        assert!(!decision.allowed, "ada has no set: {decision:?}");
        let mut alone = call("read_file");
        alone.user_id = None;
        assert!(decide_tool_call(&state, &alone).allowed);
    }

    #[test]
    fn a_policy_that_does_not_validate_is_refused_with_cedars_message() {
        let unknown_attribute = parse_and_validate(
            "permit(principal, action, resource) when { resource.colour == \"red\" };",
        );
        assert!(
            unknown_attribute
                .as_ref()
                .is_err_and(|e| e.contains("colour")),
            "{unknown_attribute:?}"
        );
        let unknown_action =
            parse_and_validate("permit(principal, action == Action::\"fly\", resource);");
        assert!(unknown_action.is_err(), "{unknown_action:?}");
        let unparsable = parse_and_validate("permit(principal, action, resource");
        assert!(unparsable.is_err());
        let duplicate = parse_and_validate(
            "@id(\"x\") permit(principal, action, resource); @id(\"x\") forbid(principal, action, resource);",
        );
        assert!(duplicate.is_err());
        assert!(parse_and_validate(AGENT_ALLOWS).is_ok());
    }

    #[test]
    fn a_person_may_set_only_their_own_set_and_agent_sets_need_an_admin() {
        let mut state = world();
        let bob = Actor::User {
            user_id: UserId::from("bob"),
        };
        let ada = Actor::User {
            user_id: UserId::from("ada"),
        };
        let policy = "permit(principal, action, resource);";
        let ada_subject = PolicySubject::User {
            user_id: UserId::from("ada"),
        };
        assert!(matches!(
            run(&mut state, set(ada_subject.clone(), policy, bob.clone())),
            Err(Refusal::NotPolicyOwner(_))
        ));
        assert!(run(&mut state, set(ada_subject, policy, ada)).is_ok());
        let agent = PolicySubject::Agent {
            client_id: ClientId::from("a1"),
        };
        assert!(matches!(
            run(&mut state, set(agent, policy, bob)),
            Err(Refusal::NotPolicyOwner(_))
        ));
        let ghost = PolicySubject::Agent {
            client_id: ClientId::from("ghost"),
        };
        assert!(matches!(
            run(&mut state, set(ghost, policy, admin())),
            Err(Refusal::UnknownAgent(_))
        ));
    }

    /// Texts as deep as the bounds let them be, each a different way to nest.
    fn deepest_within_the_bounds() -> Vec<String> {
        let when = |condition: String| {
            format!("permit(principal, action, resource) when {{ {condition} }};")
        };
        let nested = |open: &str, inner: &str, close: &str, depth: usize| {
            format!("{}{inner}{}", open.repeat(depth), close.repeat(depth))
        };
        // `permit(` or `when {` is one of the bracket levels; each open bracket costs two
        // levels of the expression estimate, the top level two, the segment one.
        let inner_chain = POLICY_EXPRESSION_DEPTH_MAX - 2 * POLICY_NESTING_DEPTH_MAX - 3;
        vec![
            when(nested(
                "(",
                &format!("true{}", " && true".repeat(inner_chain)),
                ")",
                POLICY_NESTING_DEPTH_MAX - 1,
            )),
            when(nested(
                "(true && ",
                "true",
                ")",
                POLICY_NESTING_DEPTH_MAX - 1,
            )),
            when(format!(
                "{} == {}",
                nested("[", "1", "]", POLICY_NESTING_DEPTH_MAX - 1),
                nested("[", "1", "]", POLICY_NESTING_DEPTH_MAX - 1)
            )),
            when(format!(
                "{} has a",
                nested("{a: ", "1", "}", POLICY_NESTING_DEPTH_MAX - 1)
            )),
            when(format!(
                "context.scopes.contains({})",
                nested(
                    "if context.scopes.contains(\"x\") then ",
                    "\"y\"",
                    " else \"z\"",
                    (POLICY_EXPRESSION_DEPTH_MAX - 8) / 6
                )
            )),
            when(format!(
                "true{}",
                " && true".repeat(POLICY_EXPRESSION_DEPTH_MAX - 4)
            )),
            when(format!(
                "false{}",
                " || context.delegation_depth + 1 < 2"
                    .repeat((POLICY_EXPRESSION_DEPTH_MAX - 4) / 4)
            )),
        ]
    }

    /// Runs `work` on a thread of `stack_bytes`; whether it finished (an overflow would
    /// abort the test binary instead).
    fn on_thread(stack_bytes: usize, work: impl FnOnce() + Send + 'static) -> bool {
        std::thread::Builder::new()
            .stack_size(stack_bytes)
            .spawn(work)
            .is_ok_and(|thread| thread.join().is_ok())
    }

    #[test]
    fn the_deepest_text_within_the_bounds_fits_the_stack() {
        for text in deepest_within_the_bounds() {
            assert_eq!(bounds::check(&text), Ok(()), "{text}");
            let mut state = world();
            run(&mut state, agent_set(AGENT_ALLOWS)).unwrap_or_else(|r| unreachable!("{r}"));
            run(&mut state, user_set(&text)).unwrap_or_else(|r| unreachable!("{r}"));
            // Within CEDAR_STACK_BYTES_MIN, on the stack as it is.
            let (exact, state_exact) = (text.clone(), state.clone());
            let fits = on_thread(CEDAR_STACK_BYTES_MIN, move || {
                assert!(parse_and_validate(&exact).is_ok(), "{exact}");
                let decision = decide_on_cedar_stack(&state_exact, &call("read_file"));
                assert!(
                    !decision.reason.contains("could not be evaluated"),
                    "{decision:?}"
                );
            });
            assert!(fits, "{text}");
            // From a thread with too little: the work moves to a fresh stack.
            let fits = on_thread(128 * 1024, move || {
                assert_eq!(validate(&text), Ok(()), "{text}");
                let decision = decide_tool_call(&state, &call("read_file"));
                assert!(
                    !decision.reason.contains("could not be evaluated"),
                    "{decision:?}"
                );
            });
            assert!(fits);
        }
    }

    #[test]
    fn a_stored_set_over_the_bounds_denies_with_the_bound_in_the_reason() {
        let mut state = world();
        run(&mut state, agent_set(AGENT_ALLOWS)).unwrap_or_else(|r| unreachable!("{r}"));
        let deep = format!(
            "permit(principal, action, resource) when {{ {}true{} }};",
            "(".repeat(5000),
            ")".repeat(5000)
        );
        // The command does not look at the text (the HTTP layer validated it, or an older
        // release let it through).
        run(&mut state, user_set(&deep)).unwrap_or_else(|r| unreachable!("{r}"));
        let decision = decide_tool_call(&state, &call("read_file"));
        assert!(!decision.allowed);
        assert_eq!(
            decision.reason,
            "user:ada's policy set could not be evaluated: brackets nest more than 16 deep at line 1 (policy_nesting_depth_max); remove redundant brackets"
        );
    }

    #[test]
    fn a_forbid_whose_evaluation_fails_denies_rather_than_being_skipped() {
        let mut state = world();
        run(&mut state, agent_set(AGENT_ALLOWS)).unwrap_or_else(|r| unreachable!("{r}"));
        run(
            &mut state,
            user_set(
                r#"permit(principal, action, resource);
                   @id("overflows") forbid(principal, action, resource)
                   when { context.time * 9223372036854775807 > 0 };"#,
            ),
        )
        .unwrap_or_else(|r| unreachable!("{r}"));
        let decision = decide_tool_call(&state, &call("read_file"));
        assert!(!decision.allowed, "{decision:?}");
        assert!(
            decision.reason.starts_with(
                "user:ada's policy set could not be evaluated: error while evaluating policy `overflows`"
            ),
            "{decision:?}"
        );
    }

    #[test]
    fn parsed_sets_kept_in_memory_are_bounded() {
        let mut state = world();
        run(&mut state, agent_set(AGENT_ALLOWS)).unwrap_or_else(|r| unreachable!("{r}"));
        for n in 0..=PARSED_POLICY_SETS_MAX {
            let text = format!("permit(principal, action, resource) when {{ {n} > 0 }};");
            run(&mut state, user_set(&text)).unwrap_or_else(|r| unreachable!("{r}"));
            let decision = decide_tool_call(&state, &call("read_file"));
            assert_eq!(decision.allowed, n > 0, "{decision:?}");
            assert!(PARSED.read().len() <= PARSED_POLICY_SETS_MAX);
        }
    }

    #[test]
    fn a_long_reason_is_clipped() {
        let long = "é".repeat(POLICY_REASON_BYTES_MAX);
        let clipped = clipped(long);
        assert!(clipped.len() <= POLICY_REASON_BYTES_MAX + " [...]".len());
        assert!(clipped.ends_with(" [...]"));
    }

    #[test]
    fn one_evaluation_timing() {
        let mut state = world();
        run(&mut state, agent_set(AGENT_ALLOWS)).unwrap_or_else(|r| unreachable!("{r}"));
        run(&mut state, user_set("permit(principal, action, resource);"))
            .unwrap_or_else(|r| unreachable!("{r}"));
        let request = call("read_file");
        let _ = decide_tool_call(&state, &request);
        let started = Instant::now();
        let rounds = 1000u32;
        for _ in 0..rounds {
            let _ = decide_tool_call(&state, &request);
        }
        eprintln!("one decide_tool_call: {:?}", started.elapsed() / rounds);
    }
}
