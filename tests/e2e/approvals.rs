//! Approvals of a supervised agent's critical tool calls, against the real MCP server: the
//! call answers 202 `approval_required` and is not forwarded; only the person it acts for
//! decides; the approved retry (same tool, same arguments) is forwarded once and counted
//! once; a denied one is refused; the person reads the arguments they are asked about,
//! the ledger holds them only sealed, and the audit trail tells the whole story.

use serde_json::{Value, json};

use crate::delegation::{api_key, as_user, person};
use crate::gateway::{McpServer, register_server};
use crate::kit::*;

const USER_ID: &str = "urn:writ:params:oauth:token-type:user-id";

/// Allows every tool but `delete_records`, which it allows as critical.
const AGENT_POLICY: &str = r#"
@id("reads") permit(principal, action, resource) when { resource.name != "delete_records" };
@id("deletes") @critical permit(principal, action, resource) when { resource.name == "delete_records" };
"#;

struct Setup {
    dir: tempfile::TempDir,
    server: Server,
    admin: String,
    mcp: McpServer,
    files: String,
    client_id: String,
    secret: String,
    owner: Option<String>,
}

/// A server with the test MCP server registered, and a supervised agent under
/// [`AGENT_POLICY`], owned by a person registered with `owner`'s email if given.
fn setup(owner: Option<&str>) -> Setup {
    let dir = temp();
    let server = Server::start(dir.path(), &[]);
    let admin = server.admin_token();
    let mcp = McpServer::start("none", "");
    let files = register_server(&server, &admin, "files", &mcp.url, json!({"auth": "none"}));
    let mut agent = json!({"name": "janitor", "scopes": ["files:write"],
                           "grant_types": ["client_credentials"], "agent_type": "supervised"});
    let owner = owner.map(|email| {
        agent["owner"] = json!(email);
        person(&server, &admin, email)
    });
    let (client_id, secret) = register_agent(&server, &admin, agent);
    let path = format!("/api/v1/agents/{client_id}/policy-set");
    let (status, body) = call(
        &server,
        &admin,
        "PUT",
        &path,
        Some(json!({ "policies": AGENT_POLICY })),
    );
    assert_eq!(status, 204, "{body}");
    Setup {
        dir,
        server,
        admin,
        mcp,
        files,
        client_id,
        secret,
        owner,
    }
}

impl Setup {
    /// A token from `/oauth/token`, `form` after `grant_type=client_credentials`.
    fn token(&self, form: &[(&str, &str)]) -> String {
        client_credentials_token(&self.server, &self.client_id, &self.secret, form)
    }

    fn call_tool(&self, token: &str, body: Value) -> (u16, Value) {
        let response = http()
            .post(
                self.server
                    .url(&format!("/api/v1/proxy/{}/tools", self.files)),
            )
            .bearer_auth(token)
            .json(&body)
            .send()
            .unwrap_or_else(|e| panic!("{e}"));
        let status = response.status().as_u16();
        (status, response.json().unwrap_or(Value::Null))
    }

    /// `approve` or `deny` the approval, with `key` (a person's) or as the admin.
    fn decide(&self, key: Option<&str>, id: &str, what: &str) -> (u16, Value) {
        let path = format!("/api/v1/approvals/{id}/{what}");
        match key {
            Some(key) => as_user(&self.server, key, "POST", &path, None),
            None => call(&self.server, &self.admin, "POST", &path, None),
        }
    }

    /// The audit trail's entries as JSON text, oldest first.
    fn trail(&self) -> Vec<String> {
        let (status, trail) = call(&self.server, &self.admin, "GET", "/api/v1/audit", None);
        assert_eq!(status, 200, "{trail}");
        trail["entries"]
            .as_array()
            .into_iter()
            .flatten()
            .map(Value::to_string)
            .collect()
    }
}

fn id_of(answer: &Value) -> String {
    answer["approval_id"]
        .as_str()
        .unwrap_or_else(|| panic!("no approval id in {answer}"))
        .to_owned()
}

#[test]
fn a_critical_call_waits_for_the_delegating_person_and_their_approval_is_used_once() {
    let s = setup(None);
    let ada = person(&s.server, &s.admin, "ada@example.com");
    let bob = person(&s.server, &s.admin, "bob@example.com");
    let (ada_key, _) = api_key(&s.server, &s.admin, &ada);
    let (bob_key, _) = api_key(&s.server, &s.admin, &bob);
    let path = format!("/api/v1/agents/{}/delegations", s.client_id);
    let (status, granted) = as_user(&s.server, &ada_key, "POST", &path, Some(json!({})));
    assert_eq!(status, 201, "{granted}");
    let (status, body) = call(
        &s.server,
        &s.admin,
        "PUT",
        &format!("/api/v1/users/{ada}/policy-set"),
        Some(json!({"policies": "@id(\"mine\") permit(principal, action, resource);"})),
    );
    assert_eq!(status, 204, "{body}");
    let token = s.token(&[("actor_token", ada.as_str()), ("actor_token_type", USER_ID)]);

    // A call policy does not mark critical goes straight through.
    let (status, answer) = s.call_tool(
        &token,
        json!({"tool_name": "echo", "arguments": {"text": "hi"}}),
    );
    assert_eq!(status, 200, "{answer}");

    // The critical one waits, and reaches nobody.
    let delete = json!({"tool_name": "delete_records", "arguments": {"table": "invoices-7f3a9"}});
    let (status, asked) = s.call_tool(&token, delete.clone());
    assert_eq!(
        (status, asked["error"].as_str()),
        (202, Some("approval_required")),
        "{asked}"
    );
    let approval = id_of(&asked);
    assert_eq!(asked["status"], "pending", "{asked}");
    assert_eq!(s.mcp.calls(), vec!["echo anonymous".to_owned()]);
    let mut retry = delete.clone();
    retry["approval_id"] = json!(approval);
    let (status, waiting) = s.call_tool(&token, retry.clone());
    assert_eq!(
        (status, id_of(&waiting)),
        (202, approval.clone()),
        "{waiting}"
    );

    // Ada sees it, with the arguments she is asked about; Bob sees nothing.
    let (status, pending) = as_user(
        &s.server,
        &ada_key,
        "GET",
        "/api/v1/approvals?status=pending",
        None,
    );
    assert_eq!(status, 200, "{pending}");
    assert_eq!(pending[0]["id"], approval.as_str(), "{pending}");
    assert_eq!(
        pending[0]["arguments"],
        json!({"table": "invoices-7f3a9"}),
        "{pending}"
    );
    assert_eq!(pending[0]["tool_name"], "delete_records", "{pending}");
    let decided_by = json!([
        format!("agent:{}/deletes", s.client_id),
        format!("user:{ada}/mine")
    ]);
    assert_eq!(pending[0]["policy_ids"], decided_by, "{pending}");
    let (_, for_bob) = as_user(&s.server, &bob_key, "GET", "/api/v1/approvals", None);
    assert_eq!(for_bob, json!([]));
    let (status, refused) = as_user(
        &s.server,
        &ada_key,
        "GET",
        "/api/v1/approvals?status=soon",
        None,
    );
    assert_eq!(status, 400, "{refused}");

    // Only Ada decides: not Bob, not an admin.
    assert_eq!(s.decide(Some(&bob_key), &approval, "approve").0, 403);
    assert_eq!(s.decide(None, &approval, "approve").0, 403);
    assert_eq!(s.decide(Some(&ada_key), "apr_nope", "approve").0, 404);
    let (status, approved) = s.decide(Some(&ada_key), &approval, "approve");
    assert_eq!(
        (status, approved["status"].as_str()),
        (200, Some("approved")),
        "{approved}"
    );
    let (status, again) = s.decide(Some(&ada_key), &approval, "deny");
    assert_eq!(
        (status, again["error"].as_str()),
        (409, Some("conflict")),
        "{again}"
    );

    // Other arguments are not what she approved.
    let mut other = retry.clone();
    other["arguments"] = json!({"table": "customers"});
    let (status, refused) = s.call_tool(&token, other);
    assert_eq!(status, 409, "{refused}");

    // The approved call is forwarded once; the approval is then spent.
    let (status, done) = s.call_tool(&token, retry.clone());
    assert_eq!(status, 200, "{done}");
    assert_eq!(done["is_error"], false, "{done}");
    let (status, spent) = s.call_tool(&token, retry);
    assert_eq!(status, 409, "{spent}");
    assert!(
        spent["detail"]
            .as_str()
            .is_some_and(|d| d.contains("already used")),
        "{spent}"
    );
    assert_eq!(s.mcp.calls().len(), 2, "{:?}", s.mcp.calls());

    // Asked again and denied: the retry is refused.
    let (_, asked) = s.call_tool(&token, delete.clone());
    let second = id_of(&asked);
    assert_ne!(second, approval);
    let (status, denied) = s.decide(Some(&ada_key), &second, "deny");
    assert_eq!(
        (status, denied["status"].as_str()),
        (200, Some("denied")),
        "{denied}"
    );
    let mut retry = delete;
    retry["approval_id"] = json!(second);
    let (status, refused) = s.call_tool(&token, retry);
    assert_eq!(status, 403, "{refused}");
    assert_eq!(s.mcp.calls().len(), 2);

    // The trail tells it all; the ledger holds the arguments sealed only.
    let trail = s.trail();
    let told = |needle: &str| trail.iter().filter(|t| t.contains(needle)).count();
    assert_eq!(
        told(&format!("approval requested from user {ada}")),
        2,
        "{trail:#?}"
    );
    assert_eq!(told("\"outcome\":\"approved\""), 1, "{trail:#?}");
    assert_eq!(told("\"outcome\":\"denied\""), 1, "{trail:#?}");
    assert_eq!(told("approval used"), 1, "{trail:#?}");
    let Setup { dir, server, .. } = s;
    assert_eq!(server.stop(), Some(0));
    let export = dir.path().join("export.jsonl");
    export_to(dir.path(), &export);
    let records = std::fs::read_to_string(&export).unwrap_or_default();
    assert!(
        records.contains("ApprovalUsed"),
        "the export has the records"
    );
    assert!(
        !records.contains("invoices-7f3a9"),
        "arguments in the clear in the ledger"
    );
}

#[test]
fn the_agent_s_own_critical_call_is_its_owner_s_to_approve_and_without_one_nobody_s() {
    let delete = json!({"tool_name": "delete_records", "arguments": {"table": "t"}});

    // An agent acting for no one, with no owner: nobody can approve.
    let s = setup(None);
    let token = s.token(&[]);
    let (status, refused) = s.call_tool(&token, delete.clone());
    assert_eq!(status, 409, "{refused}");
    assert!(
        refused["detail"]
            .as_str()
            .is_some_and(|d| d.contains("nobody can approve")),
        "{refused}"
    );
    drop(s);

    // With an owner, the owner approves the agent's own call.
    let s = setup(Some("cleo@example.com"));
    let cleo = s.owner.clone().unwrap_or_default();
    let (cleo_key, _) = api_key(&s.server, &s.admin, &cleo);
    let token = s.token(&[]);
    let (status, asked) = s.call_tool(&token, delete.clone());
    assert_eq!(status, 202, "{asked}");
    let approval = id_of(&asked);
    let (status, approved) = s.decide(Some(&cleo_key), &approval, "approve");
    assert_eq!(status, 200, "{approved}");
    assert_eq!(approved["approver"], cleo.as_str(), "{approved}");
    assert_eq!(approved["user_id"], Value::Null, "{approved}");
    // A new token of the same agent may make the approved call.
    let fresh = s.token(&[]);
    let mut retry = delete;
    retry["approval_id"] = json!(approval);
    let (status, done) = s.call_tool(&fresh, retry);
    assert_eq!(status, 200, "{done}");
    assert_eq!(s.mcp.calls(), vec!["delete_records anonymous".to_owned()]);
}

/// `/oauth/token` as the agent with `form` after `grant_type=client_credentials`; the
/// status and the answer.
fn token_answer(s: &Setup, form: &[(&str, &str)]) -> (u16, Value) {
    let mut full = vec![("grant_type", "client_credentials")];
    full.extend_from_slice(form);
    let response = http()
        .post(s.server.url("/oauth/token"))
        .basic_auth(&s.client_id, Some(&s.secret))
        .form(&full)
        .send()
        .unwrap_or_else(|e| panic!("{e}"));
    let status = response.status().as_u16();
    (status, response.json().unwrap_or(Value::Null))
}

#[test]
fn a_supervised_agent_asking_for_an_autonomous_token_is_refused_and_its_critical_call_still_waits()
{
    let s = setup(Some("cleo@example.com"));
    // The attack: a supervised agent asks for a token of a laxer type, to make its
    // critical call without anyone's approval. Ephemeral skips approvals too.
    for laxer in ["autonomous", "ephemeral"] {
        let (status, refused) = token_answer(&s, &[("agent_type", laxer)]);
        assert_eq!(
            (status, refused["error"].as_str()),
            (400, Some("invalid_request")),
            "{refused}"
        );
        assert_eq!(
            refused["error_description"],
            format!(
                "agent {} is registered supervised, so its tokens are supervised: ask for agent_type=supervised or leave agent_type out",
                s.client_id
            ),
            "{refused}"
        );
    }
    // What it may have is supervised, asked or not, and its critical call waits.
    let delete = json!({"tool_name": "delete_records", "arguments": {"table": "t"}});
    for form in [vec![], vec![("agent_type", "supervised")]] {
        let (status, issued) = token_answer(&s, &form);
        assert_eq!(status, 200, "{issued}");
        assert_eq!(issued["agent_type"], "supervised", "{issued}");
        let token = issued["access_token"].as_str().unwrap_or_default();
        let (status, asked) = s.call_tool(token, delete.clone());
        assert_eq!(
            (status, asked["error"].as_str()),
            (202, Some("approval_required")),
            "{asked}"
        );
    }
    assert_eq!(
        s.mcp.calls(),
        Vec::<String>::new(),
        "nothing reached the tool"
    );
}
