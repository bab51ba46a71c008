//! writ's interactive flow driven by OAuth clients that are not writ's code, run with
//! `node` from tools/clients/: openid-client (discovery, dynamic registration behind a
//! registration token, the code with PKCE, `state` and `iss` checked by the library, one
//! scope unticked at consent, a rotating refresh, introspection and revocation), and the
//! MCP TypeScript SDK's client auth (writ found from the gateway's 401 through its RFC
//! 9728 metadata, open registration of a public client, the code and a refresh, then a
//! tool call through the gateway). Each script checks every step itself and exits
//! non-zero naming the one that failed; these tests start writ, make the person, and
//! show the script's output when it fails.

use std::path::PathBuf;
use std::process::Command;

use serde_json::json;

use crate::delegation::person;
use crate::gateway::{McpServer, register_server};
use crate::kit::*;

const EMAIL: &str = "ada@example.com";
const PASSWORD: &str = "correct horse battery staple";
/// A registration token as an operator would make one (`openssl rand -base64 32`).
const REGISTRATION_TOKEN: &str = "reg-0123456789abcdef0123456789abcdef";

/// Runs `node tools/clients/<script>` with `env` and fails, showing what it printed,
/// unless it exits 0.
fn node(script: &str, env: &[(&str, &str)]) -> String {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tools/clients");
    for package in ["openid-client", "@modelcontextprotocol/sdk"] {
        assert!(
            dir.join("node_modules").join(package).is_dir(),
            "tools/clients/node_modules/{package} is missing: run `(cd tools/clients && npm ci)` \
             (tools/test.sh does it)"
        );
    }
    let output = Command::new("node")
        .arg(script)
        .current_dir(&dir)
        .envs(env.iter().copied())
        .output()
        .unwrap_or_else(|err| panic!("running node (Node 20 or later, on PATH): {err}"));
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "node tools/clients/{script} exited with {}:\n{stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

/// A person who can sign in with `PASSWORD`; their id.
fn person_with_password(server: &Server, admin: &str) -> String {
    let id = person(server, admin, EMAIL);
    let path = format!("/api/v1/users/{id}/password");
    let body = json!({"password": PASSWORD});
    let (status, refused) = call(server, admin, "PUT", &path, Some(body));
    assert_eq!(status, 204, "{refused}");
    id
}

#[test]
fn openid_client_registers_narrows_consent_refreshes_introspects_and_revokes() {
    let dir = temp();
    let server = Server::start(dir.path(), &["--registration-token", REGISTRATION_TOKEN]);
    let admin = server.admin_token();
    person_with_password(&server, &admin);
    let said = node(
        "openid_client.mjs",
        &[
            ("WRIT_ISSUER", &server.base),
            ("WRIT_EMAIL", EMAIL),
            ("WRIT_PASSWORD", PASSWORD),
            ("WRIT_REGISTRATION_TOKEN", REGISTRATION_TOKEN),
        ],
    );
    assert!(said.contains("every step passed"), "{said}");
}

#[test]
fn the_mcp_sdk_finds_writ_from_the_gateway_s_401_and_its_token_calls_a_tool() {
    let mcp = McpServer::start("none", "");
    let dir = temp();
    let server = Server::start(dir.path(), &["--registration", "open"]);
    let admin = server.admin_token();
    let ada = person_with_password(&server, &admin);
    let files = register_server(&server, &admin, "files", &mcp.url, json!({"auth": "none"}));
    let policy = json!({"policies": "@id(\"ada-tools\") permit(principal, action, resource);"});
    let path = format!("/api/v1/users/{ada}/policy-set");
    let (status, refused) = call(&server, &admin, "PUT", &path, Some(policy));
    assert_eq!(status, 204, "{refused}");
    let env = [
        ("WRIT_ISSUER", server.base.as_str()),
        ("WRIT_SERVER_ID", files.as_str()),
        ("WRIT_EMAIL", EMAIL),
        ("WRIT_PASSWORD", PASSWORD),
    ];

    // Before the operator reviews the agent that registered itself, policy refuses its call.
    let said = node("mcp_sdk_auth.mjs", &env);
    assert!(said.contains("refused by policy"), "{said}");
    assert!(mcp.calls().is_empty(), "{:?}", mcp.calls());

    let mut reviewed = env.to_vec();
    reviewed.push(("WRIT_ADMIN_TOKEN", &admin));
    let said = node("mcp_sdk_auth.mjs", &reviewed);
    assert!(said.contains("one tool call through the gateway"), "{said}");
    assert_eq!(mcp.calls(), vec!["echo anonymous".to_owned()]);
}
