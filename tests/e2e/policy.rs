//! Hostile Cedar policy sets: text nested deep enough to overflow a recursive parser or
//! evaluator (brackets, sets, records, `if` chains, operator and method chains), too many
//! policies, too many bytes. Each is refused on write with a 400 naming its bound, the
//! server stays up, and the ledger verifies; a set at the bounds is accepted and
//! evaluated. A set stored before the bounds existed crashes nothing (start-up, replay,
//! verify, audit, the call): the call it decides is denied, with the reason, in the ledger
//! and the trail. Deeply nested JSON bodies are refused by the JSON parser's depth limit.

use std::path::Path;

use serde_json::{Value, json};

use crate::delegation::{api_key, as_user, person};
use crate::gateway::register_server;
use crate::kit::*;

const USER_ID: &str = "urn:writ:params:oauth:token-type:user-id";

/// The bounds as the 400s name them (src/policy/bounds.rs).
const NESTING: &str = "policy_nesting_depth_max";
const EXPRESSION: &str = "policy_expression_depth_max";
const POLICIES: &str = "policy_set_policies_max";
const BYTES: &str = "policy_set_bytes_max";

/// A permit whose condition is `condition`.
fn when(condition: &str) -> String {
    format!("permit(principal, action, resource) when {{ {condition} }};")
}

/// `open` `depth` times, `inner`, then `close` `depth` times.
fn nested(open: &str, inner: &str, close: &str, depth: usize) -> String {
    format!("{}{inner}{}", open.repeat(depth), close.repeat(depth))
}

/// Every attack, with the bound that refuses it.
fn attacks() -> Vec<(&'static str, String, &'static str)> {
    let one = "permit(principal, action, resource);";
    vec![
        (
            "parentheses 144 deep",
            when(&nested("(", "true", ")", 144)),
            NESTING,
        ),
        (
            "parentheses 10000 deep",
            when(&nested("(", "true", ")", 10_000)),
            NESTING,
        ),
        (
            "a set 143 deep",
            when(&format!(
                "{} == {}",
                nested("[", "1", "]", 143),
                nested("[", "1", "]", 143)
            )),
            NESTING,
        ),
        (
            "a set 5000 deep",
            when(&format!("{}.isEmpty()", nested("[", "1", "]", 5_000))),
            NESTING,
        ),
        (
            "a record 2000 deep",
            when(&format!("{} has a", nested("{a: ", "1", "}", 2_000))),
            NESTING,
        ),
        (
            "calls nested in arguments 1000 deep",
            when(&nested("context.scopes.contains(", "\"x\"", ")", 1_000)),
            NESTING,
        ),
        (
            "if-then-else 1000 deep",
            when(&nested("if true then ", "true", " else false", 1_000)),
            EXPRESSION,
        ),
        (
            "an && chain 3000 long",
            when(&format!("true{}", " && true".repeat(3_000))),
            EXPRESSION,
        ),
        (
            "an || chain 3000 long",
            when(&format!("false{}", " || false".repeat(3_000))),
            EXPRESSION,
        ),
        (
            "a .contains chain 2000 long",
            when(&format!(
                "context.scopes{}",
                ".contains(\"x\")".repeat(2_000)
            )),
            EXPRESSION,
        ),
        (
            "an attribute chain 10000 long",
            when(&format!("context{} == 1", ".a".repeat(10_000))),
            EXPRESSION,
        ),
        (
            "a + chain 5000 long",
            when(&format!("1{} == 1", "+1".repeat(5_000))),
            EXPRESSION,
        ),
        (
            "negations 10000 deep",
            when(&format!("{}true", "!".repeat(10_000))),
            EXPRESSION,
        ),
        ("257 policies", one.repeat(257), POLICIES),
        (
            "32769 bytes",
            format!("{one}{}", " ".repeat(32 * 1024 + 1 - one.len())),
            BYTES,
        ),
    ]
}

/// `PUT` a policy set with a person's API key.
fn put_as_user(server: &Server, key: &str, path: &str, policies: &str) -> (u16, Value) {
    let response = http()
        .put(server.url(path))
        .header("x-api-key", key)
        .json(&json!({ "policies": policies }))
        .send()
        .unwrap_or_else(|e| panic!("{e}"));
    let status = response.status().as_u16();
    (status, response.json().unwrap_or(Value::Null))
}

fn healthy(server: &Server) -> bool {
    http()
        .get(server.url("/healthz"))
        .send()
        .is_ok_and(|r| r.status().as_u16() == 200)
}

fn verifies(dir: &Path) {
    let run = writ(&["verify", &dir.display().to_string()]);
    assert_eq!(run.code, Some(0), "{}{}", run.stdout, run.stderr);
}

/// A server, a person with an API key who delegated to an agent, the agent's set
/// allowing every tool, and an MCP server registered (never reached: every call in this
/// module is decided by policy before it would be forwarded).
struct World {
    server: Server,
    admin: String,
    ada: String,
    ada_key: String,
    client_id: String,
    secret: String,
    files: String,
}

fn world(dir: &Path) -> World {
    let server = Server::start(dir, &[]);
    let admin = server.admin_token();
    let ada = person(&server, &admin, "ada@example.com");
    let (ada_key, _) = api_key(&server, &admin, &ada);
    let agent = json!({"name": "files", "scopes": ["files:read"],
                       "grant_types": ["client_credentials"]});
    let (client_id, secret) = register_agent(&server, &admin, agent);
    let files = register_server(
        &server,
        &admin,
        "files",
        "http://127.0.0.1:9/mcp",
        json!({"auth": "none"}),
    );
    crate::gateway::allow_every_tool(&server, &admin, &client_id);
    let path = format!("/api/v1/agents/{client_id}/delegations");
    let (status, granted) = as_user(&server, &ada_key, "POST", &path, Some(json!({})));
    assert_eq!(status, 201, "{granted}");
    World {
        server,
        admin,
        ada,
        ada_key,
        client_id,
        secret,
        files,
    }
}

impl World {
    /// A tool call by the agent for ada.
    fn call_tool(&self) -> (u16, Value) {
        let token = client_credentials_token(
            &self.server,
            &self.client_id,
            &self.secret,
            &[
                ("actor_token", self.ada.as_str()),
                ("actor_token_type", USER_ID),
            ],
        );
        let response = http()
            .post(
                self.server
                    .url(&format!("/api/v1/proxy/{}/tools", self.files)),
            )
            .bearer_auth(token)
            .json(&json!({"tool_name": "read_file", "arguments": {}}))
            .send()
            .unwrap_or_else(|e| panic!("{e}"));
        let status = response.status().as_u16();
        (status, response.json().unwrap_or(Value::Null))
    }

    fn trail_outcomes(&self) -> Vec<String> {
        let (status, trail) = call(
            &self.server,
            &self.admin,
            "GET",
            "/api/v1/audit?action=ToolCallCompleted",
            None,
        );
        assert_eq!(status, 200, "{trail}");
        trail["entries"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|e| e["outcome"].as_str().map(str::to_owned))
            .collect()
    }
}

#[test]
fn deeply_nested_and_oversized_policy_sets_are_refused_naming_the_bound_and_the_server_stays_up() {
    let dir = temp();
    let w = world(dir.path());
    let user_path = format!("/api/v1/users/{}/policy-set", w.ada);
    let agent_path = format!("/api/v1/agents/{}/policy-set", w.client_id);
    for (attack, policies, bound) in attacks() {
        let (status, refused) = put_as_user(&w.server, &w.ada_key, &user_path, &policies);
        assert_eq!(
            (status, refused["error"].as_str()),
            (400, Some("invalid_policy")),
            "{attack}, the person's own set: {refused}"
        );
        let detail = refused["detail"].as_str().unwrap_or_default();
        assert!(detail.contains(bound), "{attack}: {detail}");
        let body = json!({ "policies": policies });
        let (status, refused) = call(&w.server, &w.admin, "PUT", &agent_path, Some(body));
        assert_eq!(status, 400, "{attack}, the agent's set: {refused}");
        assert!(
            refused["detail"]
                .as_str()
                .is_some_and(|d| d.contains(bound)),
            "{attack}: {refused}"
        );
        assert!(healthy(&w.server), "the server is down after {attack}");
    }
    // Nothing was stored: the person still has no set.
    let (status, read) = call(&w.server, &w.admin, "GET", &user_path, None);
    assert_eq!((status, &read["policies"]), (200, &Value::Null), "{read}");
    drop(w);
    verifies(dir.path());
}

#[test]
fn a_policy_set_at_the_bounds_is_accepted_and_decides_calls() {
    let dir = temp();
    let w = world(dir.path());
    // `permit(` and `when {` are two of the 16 levels of brackets; the chain is as long as
    // the expression bound leaves room for.
    let deep = nested("(", "true", ")", 15);
    let chain = format!("resource.name == \"read_file\"{}", " && true".repeat(150));
    let policies = format!(
        "@id(\"deep\") permit(principal, action, resource) when {{ {deep} }};\n\
         @id(\"long\") forbid(principal, action, resource) when {{ {chain} }};\n\
         @id(\"sets\") permit(principal, action, resource) when {{ {} == {} }};",
        nested("[", "1", "]", 15),
        nested("[", "1", "]", 15),
    );
    let path = format!("/api/v1/users/{}/policy-set", w.ada);
    let (status, body) = put_as_user(&w.server, &w.ada_key, &path, &policies);
    assert_eq!(status, 204, "{body}");
    let (status, denied) = w.call_tool();
    assert_eq!(status, 403, "{denied}");
    let detail = denied["detail"].as_str().unwrap_or_default();
    assert!(
        detail.contains(&format!("user:{} forbids it (user:{}/long)", w.ada, w.ada)),
        "the deep set was evaluated to its forbid: {detail}"
    );
    assert!(healthy(&w.server));
    drop(w);
    verifies(dir.path());
}

/// What an older release could have stored: parentheses 143 deep (accepted then, and
/// fatal to the first call it decided) in ada's set.
fn poison() -> String {
    when(&nested("(", "true", ")", 143))
}

/// Records `policies` as ada's set the way a release before the bounds could have, with
/// the server stopped.
fn store_unchecked(dir: &Path, ada: &str, policies: &str) {
    let file = dir.join("poison.cedar");
    std::fs::write(&file, policies).unwrap_or_else(|e| panic!("{e}"));
    let run = writ(&[
        "internal",
        "assign-unchecked",
        "--data-dir",
        &dir.display().to_string(),
        "--user-id",
        ada,
        "--policies-file",
        &file.display().to_string(),
    ]);
    assert_eq!(run.code, Some(0), "{}{}", run.stdout, run.stderr);
}

#[test]
fn a_policy_set_stored_before_the_bounds_denies_its_calls_with_the_reason_and_crashes_nothing() {
    let dir = temp();
    let w = world(dir.path());
    let (ada, admin) = (w.ada.clone(), w.admin.clone());
    assert_eq!(w.server.stop(), Some(0));
    store_unchecked(dir.path(), &ada, &poison());
    verifies(dir.path());
    let shown = dir.path().display().to_string();
    let replayed = writ(&["replay", "--data-dir", &shown]);
    assert_eq!(replayed.code, Some(0), "{}", replayed.stderr);

    let w = World {
        server: Server::start(dir.path(), &[]),
        admin,
        ..w
    };
    assert!(healthy(&w.server), "the server starts on the stored set");
    let reason = format!(
        "user:{ada}'s policy set could not be evaluated: brackets nest more than 16 deep at line 1 ({NESTING})"
    );
    let (status, denied) = w.call_tool();
    assert_eq!(
        (status, denied["error"].as_str()),
        (403, Some("forbidden")),
        "{denied}"
    );
    let detail = denied["detail"].as_str().unwrap_or_default();
    assert!(detail.contains(&reason), "{detail}");
    assert!(healthy(&w.server), "the call did not take the server down");
    let outcomes = w.trail_outcomes();
    assert!(
        outcomes
            .last()
            .is_some_and(|o| o.starts_with("denied by policy: ") && o.contains(&reason)),
        "the trail says why: {outcomes:?}"
    );

    // After a restart (its snapshot, if one was taken, and the same stored set) the call is
    // denied again, and the person may replace the set with one within the bounds.
    let World { server, .. } = w;
    assert_eq!(server.stop(), Some(0));
    let w = World {
        server: Server::start(dir.path(), &[]),
        ..w
    };
    assert_eq!(w.call_tool().0, 403);
    let path = format!("/api/v1/users/{ada}/policy-set");
    let (status, body) = put_as_user(&w.server, &w.ada_key, &path, &poison());
    assert_eq!(status, 400, "{body}");
    let mended = "@id(\"mine\") permit(principal, action, resource);";
    assert_eq!(put_as_user(&w.server, &w.ada_key, &path, mended).0, 204);
    let (status, forwarded) = w.call_tool();
    assert_eq!(
        status, 502,
        "allowed now, and forwarded to nothing: {forwarded}"
    );
    let World { server, .. } = w;
    assert_eq!(server.stop(), Some(0));

    verifies(dir.path());
    let trail = dir.path().join("trail.jsonl");
    let exported = writ(&[
        "export",
        "--data-dir",
        &shown,
        "--audit",
        "-o",
        &trail.display().to_string(),
    ]);
    assert_eq!(exported.code, Some(0), "{}", exported.stderr);
    let text = std::fs::read_to_string(&trail).unwrap_or_default();
    assert_eq!(
        text.lines().filter(|row| row.contains(&reason)).count(),
        2,
        "both denials: {text}"
    );
    let ledger = dir.path().join("ledger.jsonl");
    export_to(dir.path(), &ledger);
    let records = std::fs::read_to_string(&ledger).unwrap_or_default();
    assert_eq!(
        records
            .lines()
            .filter(|r| r.contains("\"policy_denied\"") && r.contains(NESTING))
            .count(),
        2,
        "each denial is recorded with its reason"
    );
    if !postgres_pass() {
        let told = writ(&["audit", "--data-dir", &shown]);
        assert_eq!(told.code, Some(0), "{}", told.stderr);
        let rows = told.stdout.lines().filter(|row| row.contains(&reason));
        assert_eq!(rows.count(), 2, "{}", told.stdout);
    }
}

#[test]
fn json_bodies_nested_past_the_parsers_depth_limit_are_400_and_the_server_stays_up() {
    let dir = temp();
    let w = world(dir.path());
    let token = client_credentials_token(&w.server, &w.client_id, &w.secret, &[]);
    let deep_arguments = format!(
        "{{\"tool_name\": \"read_file\", \"arguments\": {{\"a\": {}}}}}",
        nested("[", "1", "]", 20_000)
    );
    let deep_policy = format!("{{\"policies\": {}}}", nested("[", "1", "]", 20_000));
    let sends = [
        (
            format!("/api/v1/proxy/{}/tools", w.files),
            deep_arguments,
            token,
        ),
        (
            format!("/api/v1/agents/{}/policy-set", w.client_id),
            deep_policy,
            w.admin.clone(),
        ),
    ];
    for (path, body, bearer) in sends {
        let response = http()
            .request(
                if path.contains("proxy") {
                    reqwest::Method::POST
                } else {
                    reqwest::Method::PUT
                },
                w.server.url(&path),
            )
            .bearer_auth(bearer)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .unwrap_or_else(|e| panic!("{e}"));
        let status = response.status().as_u16();
        let refused: Value = response.json().unwrap_or(Value::Null);
        assert_eq!(
            (status, refused["error"].as_str()),
            (400, Some("invalid_request")),
            "{path}: {refused}"
        );
        assert!(healthy(&w.server), "{path}");
    }
}
