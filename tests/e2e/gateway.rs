//! The MCP tool-call gateway against a real MCP server (tools/mcp_server/server.py, the
//! Python `mcp` SDK) on loopback: the call reaches the tool and its result comes back,
//! the operation is counted under the quota, refusals are precise, the outcome is in the
//! ledger, and the MCP session is kept, or opened again when the server has ended it.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::kit::{Home, Server, call, http, temp};
use crate::m2m::{Agent, agent_in};

/// The test MCP server, killed when dropped.
pub struct McpServer {
    child: Child,
    pub url: String,
    pub base: String,
    calls: PathBuf,
    _dir: tempfile::TempDir,
}

impl McpServer {
    /// Starts it with `auth` ("none", or "static" with `token`) and waits until it listens.
    pub fn start(auth: &str, token: &str) -> McpServer {
        McpServer::start_with(auth, token, &[])
    }

    /// `start` with more of its environment (`MCP_INTROSPECT_URL`, ...).
    pub fn start_with(auth: &str, token: &str, env: &[(&str, &str)]) -> McpServer {
        let dir = temp();
        let calls = dir.path().join("calls.log");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap_or_else(|e| panic!("{e}"));
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tools/mcp_server/server.py");
        let child = Command::new("python3")
            .arg(script)
            .env("MCP_PORT", port.to_string())
            .env("MCP_AUTH", auth)
            .env("MCP_TOKEN", token)
            .env("MCP_SUBJECT", "svc-files")
            .env("MCP_CALL_LOG", &calls)
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("python3 tools/mcp_server/server.py: {e}"));
        let base = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "the MCP server did not listen");
            std::thread::sleep(Duration::from_millis(50));
        }
        McpServer {
            child,
            url: format!("{base}/mcp"),
            base,
            calls,
            _dir: dir,
        }
    }

    /// The tool calls it received, one "<tool> <subject>" each.
    pub fn calls(&self) -> Vec<String> {
        std::fs::read_to_string(&self.calls)
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// Ends every session it has opened: requests carrying one are answered 404.
    pub fn expire_sessions(&self) {
        let status = http()
            .post(format!("{}/test/expire-sessions", self.base))
            .send()
            .map(|r| r.status().as_u16());
        assert_eq!(status.ok(), Some(200));
    }
}

impl Drop for McpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A writ server with `mcp` registered (no credential), one agent whose policy lets it
/// call any tool; the agent and the server's id.
fn gateway(home: Home, mcp: &McpServer) -> (Agent, String) {
    let agent = agent_in(home, &[]);
    let admin = agent.server.admin_token();
    let files = register_server(
        &agent.server,
        &admin,
        "files",
        &mcp.url,
        json!({"auth": "none"}),
    );
    allow_every_tool(&agent.server, &admin, &agent.client_id);
    (agent, files)
}

/// Registers an MCP server; its id.
pub fn register_server(server: &Server, admin: &str, name: &str, url: &str, auth: Value) -> String {
    let mut body = json!({"name": name, "url": url});
    if let (Some(body), Some(auth)) = (body.as_object_mut(), auth.as_object()) {
        body.extend(auth.clone());
    }
    let (status, created) = call(server, admin, "POST", "/api/v1/servers", Some(body));
    assert_eq!(status, 201, "registering a server: {created}");
    created["id"].as_str().unwrap_or_default().to_owned()
}

/// Gives the agent a policy set that lets it call every tool.
pub fn allow_every_tool(server: &Server, admin: &str, client_id: &str) {
    let path = format!("/api/v1/agents/{client_id}/policy-set");
    let body = json!({"policies": "@id(\"any-tool\") permit(principal, action, resource);"});
    let (status, refused) = call(server, admin, "PUT", &path, Some(body));
    assert_eq!(status, 204, "setting the agent's policy: {refused}");
}

fn call_tool(agent: &Agent, token: &str, server: &str, body: Value) -> (u16, Value) {
    let response = http()
        .post(agent.server.url(&format!("/api/v1/proxy/{server}/tools")))
        .bearer_auth(token)
        .json(&body)
        .send()
        .unwrap_or_else(|e| panic!("{e}"));
    let status = response.status().as_u16();
    (status, response.json().unwrap_or(Value::Null))
}

fn text_of(answer: &Value) -> &str {
    answer["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or("")
}

#[test]
fn a_tool_call_reaches_the_mcp_server_and_its_result_comes_back() {
    let mcp = McpServer::start("none", "");
    let (agent, files) = gateway(Home::embedded(), &mcp);
    let token = agent.token(&[("max_operations", "5")]);
    let (status, answer) = call_tool(
        &agent,
        &token,
        &files,
        json!({"tool_name": "echo", "arguments": {"text": "hello through writ"}}),
    );
    assert_eq!(status, 200, "{answer}");
    assert_eq!(text_of(&answer), "hello through writ", "{answer}");
    assert_eq!(answer["is_error"], false, "{answer}");
    assert_eq!(
        answer["operations_remaining"], 4,
        "one operation counted: {answer}"
    );
    assert!(
        answer["call_id"]
            .as_str()
            .is_some_and(|id| id.starts_with("call_"))
    );
    assert_eq!(mcp.calls(), vec!["echo anonymous".to_owned()]);
}

#[test]
fn an_exhausted_quota_is_403_and_the_tool_is_not_called() {
    let mcp = McpServer::start("none", "");
    let (agent, files) = gateway(Home::embedded(), &mcp);
    let token = agent.token(&[("max_operations", "1")]);
    let echo = json!({"tool_name": "echo", "arguments": {"text": "once"}});
    let (status, answer) = call_tool(&agent, &token, &files, echo.clone());
    assert_eq!(
        (status, answer["operations_remaining"].as_u64()),
        (200, Some(0)),
        "{answer}"
    );
    let (status, refused) = call_tool(&agent, &token, &files, echo);
    assert_eq!(
        (status, refused["error"].as_str()),
        (403, Some("quota_exhausted")),
        "{refused}"
    );
    assert_eq!(
        mcp.calls().len(),
        1,
        "the second call never reached the tool"
    );
}

#[test]
fn a_revoked_token_is_401_and_an_unknown_server_404_and_a_bad_body_400() {
    let mcp = McpServer::start("none", "");
    let (agent, files) = gateway(Home::embedded(), &mcp);
    let token = agent.token(&[]);
    let echo = json!({"tool_name": "echo", "arguments": {"text": "x"}});
    let (status, missing) = call_tool(&agent, &token, "nowhere", echo.clone());
    assert_eq!(
        (status, missing["error"].as_str()),
        (404, Some("not_found")),
        "{missing}"
    );
    for bad in [
        json!({"arguments": {}}),
        json!({"tool_name": "", "arguments": {}}),
        json!({"tool_name": "echo", "arguments": [1, 2]}),
        json!({"tool_name": "echo", "extra": true}),
    ] {
        let (status, refused) = call_tool(&agent, &token, &files, bad.clone());
        assert_eq!(status, 400, "{bad} -> {refused}");
        assert!(
            refused["detail"].as_str().is_some_and(|d| !d.is_empty()),
            "{refused}"
        );
    }
    let revoked = http()
        .post(agent.server.url("/oauth/revoke"))
        .basic_auth(&agent.client_id, Some(&agent.secret))
        .form(&[("token", token.as_str())])
        .send()
        .map(|r| r.status().as_u16());
    assert_eq!(revoked.ok(), Some(200));
    let (status, refused) = call_tool(&agent, &token, &files, echo.clone());
    assert_eq!(
        (status, refused["error"].as_str()),
        (401, Some("unauthorized")),
        "{refused}"
    );
    let (status, _) = call_tool(&agent, "not-a-writ-token", &files, echo);
    assert_eq!(status, 401);
    assert!(mcp.calls().is_empty(), "no refused call reached the tool");
}

#[test]
fn a_tool_error_and_a_failing_server_are_recorded_and_answered_as_such() {
    let mcp = McpServer::start("static", "the-upstream-token");
    // The gateway sends no credential to a server registered without auth: this server
    // wants one, so it refuses, and the caller gets a 502 with a sentence, not a 500.
    let (agent, files) = gateway(Home::embedded(), &mcp);
    let token = agent.token(&[("max_operations", "3")]);
    let (status, failed) = call_tool(&agent, &token, &files, json!({"tool_name": "whoami"}));
    assert_eq!(
        (status, failed["error"].as_str()),
        (502, Some("upstream_failed")),
        "{failed}"
    );
    assert!(
        failed["detail"].as_str().is_some_and(|d| d.contains("401")),
        "the sentence says what the server answered: {failed}"
    );
    drop(mcp);
    let (status, unreachable) = call_tool(&agent, &token, &files, json!({"tool_name": "whoami"}));
    assert_eq!(status, 502, "{unreachable}");
    let mut agent = agent;
    agent.server.kill();
    assert_eq!(agent.home.events("ToolCallCompleted"), 2);
    assert_eq!(
        agent.home.events("OperationRecorded"),
        2,
        "failed calls are still counted"
    );
}

#[test]
fn the_outcome_is_in_the_ledger_and_the_audit_trail() {
    let mcp = McpServer::start("none", "");
    let (mut agent, files) = gateway(Home::embedded(), &mcp);
    let token = agent.token(&[]);
    let (status, answer) = call_tool(
        &agent,
        &token,
        &files,
        json!({"tool_name": "delete_records", "arguments": {"table": "invoices"}}),
    );
    assert_eq!(status, 200, "{answer}");
    assert_eq!(text_of(&answer), "deleted all records of invoices");
    let admin = agent.server.admin_token();
    let trail: Value = http()
        .get(agent.server.url("/api/v1/audit"))
        .bearer_auth(&admin)
        .send()
        .and_then(|r| r.json())
        .unwrap_or_else(|e| panic!("{e}"));
    let text = trail.to_string();
    assert!(
        text.contains("ToolCallCompleted")
            && text.contains(&format!("tool delete_records on server {files}"))
            && text.contains("policies: agent:"),
        "{trail}"
    );
    agent.server.kill();
    assert_eq!(agent.home.events("ToolCallCompleted"), 1);
}

#[test]
fn calls_reuse_the_mcp_session_and_open_a_new_one_when_the_server_ended_it() {
    let mcp = McpServer::start("none", "");
    let (agent, files) = gateway(Home::embedded(), &mcp);
    let token = agent.token(&[]);
    let echo = |text: &str| json!({"tool_name": "echo", "arguments": {"text": text}});
    for text in ["one", "two"] {
        let (status, answer) = call_tool(&agent, &token, &files, echo(text));
        assert_eq!((status, text_of(&answer)), (200, text), "{answer}");
    }
    // The second call ran in the first call's session: the server opened one session.
    let sessions = |mcp: &McpServer| {
        let expired: Value = http()
            .get(format!("{}/test/sessions", mcp.base))
            .send()
            .and_then(|r| r.json())
            .unwrap_or_else(|e| panic!("{e}"));
        expired["opened"].as_u64().unwrap_or(0)
    };
    assert_eq!(sessions(&mcp), 1);
    mcp.expire_sessions();
    let (status, answer) = call_tool(&agent, &token, &files, echo("three"));
    assert_eq!((status, text_of(&answer)), (200, "three"), "{answer}");
    assert_eq!(sessions(&mcp), 2, "a new session after the 404");
    assert_eq!(mcp.calls().len(), 3);
}

#[test]
fn the_mcp_client_sends_the_upstream_bearer_and_the_tool_sees_whose_it_is() {
    use writ::mcp::{Limits, McpClient, McpError};
    use zeroize::Zeroizing;
    let mcp = McpServer::start("static", "the-upstream-token");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    runtime.block_on(async {
        let client = McpClient::new(Limits::default()).unwrap_or_else(|e| panic!("{e}"));
        let good = Zeroizing::new("the-upstream-token".to_owned());
        let done = client
            .call_tool(&mcp.url, Some(&good), "whoami", json!({}))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            done.result["content"][0]["text"], "svc-files",
            "{:?}",
            done.result
        );
        assert!(done.initialized && done.session_id.is_some(), "{done:?}");
        let again = client
            .call_tool(&mcp.url, Some(&good), "whoami", json!({}))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(!again.initialized, "the session is reused");
        assert_eq!(again.session_id, done.session_id);
        let bad = Zeroizing::new("another-token".to_owned());
        let refused = client
            .call_tool(&mcp.url, Some(&bad), "whoami", json!({}))
            .await;
        assert!(
            matches!(refused, Err(McpError::Status { status: 401, .. })),
            "{refused:?}"
        );
        let unknown = client
            .call_tool(&mcp.url, Some(&good), "no_such_tool", json!({}))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(
            unknown.is_error,
            "an unknown tool is a tool error: {:?}",
            unknown.result
        );
    });
    assert_eq!(mcp.calls(), vec!["whoami svc-files".to_owned(); 2]);
}

#[test]
fn the_test_mcp_server_verifies_a_bearer_by_rfc_7662_introspection() {
    use writ::mcp::{Limits, McpClient, McpError};
    use zeroize::Zeroizing;
    // writ itself is the provider here: the MCP server introspects the bearer at writ's
    // RFC 7662 endpoint, as the agent, and tells whose token it was.
    let provider = agent_in(Home::embedded(), &[]);
    let introspection = provider.server.url("/oauth/introspect");
    let mcp = McpServer::start_with(
        "introspect",
        "",
        &[
            ("MCP_INTROSPECT_URL", introspection.as_str()),
            ("MCP_INTROSPECT_CLIENT_ID", provider.client_id.as_str()),
            ("MCP_INTROSPECT_CLIENT_SECRET", provider.secret.as_str()),
        ],
    );
    let token = Zeroizing::new(provider.token(&[]));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    runtime.block_on(async {
        let client = McpClient::new(Limits::default()).unwrap_or_else(|e| panic!("{e}"));
        let done = client
            .call_tool(&mcp.url, Some(&token), "whoami", json!({}))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            done.result["content"][0]["text"].as_str(),
            Some(provider.client_id.as_str()),
            "{:?}",
            done.result
        );
        let unknown = Zeroizing::new("not-a-token".to_owned());
        let refused = client
            .call_tool(&mcp.url, Some(&unknown), "whoami", json!({}))
            .await;
        assert!(
            matches!(refused, Err(McpError::Status { status: 401, .. })),
            "{refused:?}"
        );
    });
}

#[test]
fn a_token_for_another_resource_is_refused_and_one_for_the_gateway_is_taken() {
    let mcp = McpServer::start("none", "");
    let (agent, files) = gateway(Home::embedded(), &mcp);
    let echo = json!({"tool_name": "echo", "arguments": {"text": "aud"}});
    let elsewhere = agent.token(&[("resource", "https://files.example.com/api")]);
    let (status, refused) = call_tool(&agent, &elsewhere, &files, echo.clone());
    assert_eq!(status, 401, "{refused}");
    assert!(
        refused["detail"]
            .as_str()
            .is_some_and(|d| d.contains("another resource")),
        "{refused}"
    );
    let resource = agent.server.url("/api/v1/proxy");
    let for_gateway = agent.token(&[("resource", resource.as_str())]);
    let (status, answer) = call_tool(&agent, &for_gateway, &files, echo);
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        mcp.calls().len(),
        1,
        "only the gateway's token reached the tool"
    );
}

/// The store this pass runs on: embedded, or PostgreSQL in the PostgreSQL pass.
fn home_of_the_pass() -> Home {
    if crate::kit::postgres_pass() {
        Home::postgres()
    } else {
        Home::embedded()
    }
}

#[test]
fn a_token_for_one_mcp_server_is_refused_at_another() {
    let mcp = McpServer::start("none", "");
    let (agent, files) = gateway(home_of_the_pass(), &mcp);
    let admin = agent.server.admin_token();
    let register = |name: &str| {
        register_server(
            &agent.server,
            &admin,
            name,
            &mcp.url,
            json!({"auth": "none"}),
        )
    };
    let (mail, calendar) = (register("mail"), register("calendar"));
    let resource = |server: &str| agent.server.url(&format!("/api/v1/proxy/{server}"));
    let echo = json!({"tool_name": "echo", "arguments": {"text": "aud"}});

    // The attack: a token asked for the files server, presented at the mail server.
    let for_files = agent.token(&[("resource", resource(&files).as_str())]);
    let response = http()
        .post(agent.server.url(&format!("/api/v1/proxy/{mail}/tools")))
        .bearer_auth(&for_files)
        .json(&echo)
        .send()
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(response.status().as_u16(), 401);
    let challenge = response
        .headers()
        .get("www-authenticate")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let metadata = agent
        .server
        .url("/.well-known/oauth-protected-resource/api/v1/proxy");
    assert_eq!(
        challenge,
        format!("Bearer realm=\"writ\", resource_metadata=\"{metadata}\"")
    );
    let refused: Value = response.json().unwrap_or(Value::Null);
    assert_eq!(
        refused["detail"],
        format!(
            "the token was issued for another MCP server behind this gateway; ask for one with resource={}",
            resource(&mail)
        ),
        "{refused}"
    );
    assert!(mcp.calls().is_empty(), "the refused call reached the tool");
    // At its own server it is taken.
    let (status, answer) = call_tool(&agent, &for_files, &files, echo.clone());
    assert_eq!(status, 200, "{answer}");

    // A token for two servers is taken at either, and at no third.
    let files_and_mail = agent.token(&[
        ("resource", resource(&files).as_str()),
        ("audience", resource(&mail).as_str()),
    ]);
    for server in [&files, &mail] {
        let (status, answer) = call_tool(&agent, &files_and_mail, server, echo.clone());
        assert_eq!(status, 200, "at {server}: {answer}");
    }
    let (status, refused) = call_tool(&agent, &files_and_mail, &calendar, echo.clone());
    assert_eq!(status, 401, "{refused}");
    // writ's own audience and the gateway's are for every server.
    let for_gateway = agent.token(&[("resource", agent.server.url("/api/v1/proxy").as_str())]);
    for token in [agent.token(&[]), for_gateway] {
        let (status, answer) = call_tool(&agent, &token, &calendar, echo.clone());
        assert_eq!(status, 200, "{answer}");
    }
    assert_eq!(mcp.calls().len(), 5, "{:?}", mcp.calls());
}
