//! Admin credentials over real HTTP and the real command line: named, with a role
//! (`admin`, or `auditor` that only reads) and an optional expiry; listed and revoked by
//! the API and by `writ admin token`; refused at once when revoked or expired; and named
//! by every record their actions make. One test walks every endpoint the server serves
//! with an auditor credential and proves that none of them writes.

use reqwest::blocking::RequestBuilder;
use serde_json::{Value, json};
use writ::http::endpoints;
use writ_schemas::AdminRole;

use crate::kit::*;

/// An admin call with any method; the status and the JSON body (null when none).
fn send(
    server: &Server,
    token: &str,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let method =
        reqwest::Method::from_bytes(method.as_bytes()).unwrap_or_else(|err| panic!("{err}"));
    let request = http().request(method, server.url(path)).bearer_auth(token);
    let request = match body {
        Some(body) => request.json(&body),
        None => request,
    };
    answer(request)
}

fn answer(request: RequestBuilder) -> (u16, Value) {
    let response = request.send().unwrap_or_else(|err| panic!("{err}"));
    let status = response.status().as_u16();
    (status, response.json().unwrap_or(Value::Null))
}

/// Creates a credential through the API; its id and secret.
fn credential(server: &Server, admin: &str, body: Value) -> (String, String) {
    let (status, created) = send(
        server,
        admin,
        "POST",
        "/api/v1/admin/credentials",
        Some(body),
    );
    assert_eq!(status, 201, "{created}");
    let id = created["credential"]["id"].as_str().unwrap_or_default();
    let token = created["token"].as_str().unwrap_or_default();
    assert!(
        id.starts_with("adm_") && token.starts_with("wrt_admin_"),
        "{created}"
    );
    (id.to_owned(), token.to_owned())
}

fn head_seq(server: &Server, token: &str) -> u64 {
    let (status, head) = send(server, token, "GET", "/api/v1/ledger/head", None);
    assert_eq!(status, 200, "{head}");
    head["seq"].as_u64().unwrap_or_else(|| panic!("{head}"))
}

/// The credentials listed, as (name, role, status).
fn listed(server: &Server, token: &str) -> Vec<(String, String, String)> {
    let (status, list) = send(server, token, "GET", "/api/v1/admin/credentials", None);
    assert_eq!(status, 200, "{list}");
    list.as_array()
        .into_iter()
        .flatten()
        .map(|c| {
            let text = |key: &str| c[key].as_str().unwrap_or_default().to_owned();
            (text("name"), text("role"), text("status"))
        })
        .collect()
}

fn id_of(server: &Server, token: &str, name: &str) -> String {
    let (_, list) = send(server, token, "GET", "/api/v1/admin/credentials", None);
    list.as_array()
        .into_iter()
        .flatten()
        .find(|c| c["name"] == json!(name))
        .and_then(|c| c["id"].as_str())
        .unwrap_or_else(|| panic!("no credential {name} in {list}"))
        .to_owned()
}

/// Endpoints that no admin credential reaches: an agent's or a person's own, and the
/// OAuth client endpoints. An auditor's credential is simply not theirs (401 or 400).
const NOT_FOR_ADMIN_CREDENTIALS: [&str; 12] = [
    "/oauth/authorize",
    "/oauth/token",
    "/oauth/agent-token",
    "/oauth/revoke",
    "/login",
    "/logout",
    "/account/revoke",
    "/account/sessions/end",
    "/api/v1/operations",
    "/api/v1/proxy/{server_id}/tools",
    "/api/v1/connections/callback",
    "/oauth/introspect",
];

/// What the walk fills path parameters with: ids that exist, so that a refusal is about
/// the role and not an unknown id.
struct Ids {
    user: String,
    api_key: String,
    client_id: String,
    delegation: String,
    server: String,
    credential: String,
    seq: u64,
}

impl Ids {
    fn fill(&self, path: &str) -> String {
        let id = match path {
            p if p.starts_with("/api/v1/users/") => &self.user,
            p if p.starts_with("/api/v1/api-keys/") => &self.api_key,
            p if p.starts_with("/api/v1/delegations/") => &self.delegation,
            p if p.starts_with("/api/v1/admin/credentials/") => &self.credential,
            p if p.starts_with("/api/v1/session-grants/") => "3d2c1b0a-9f8e-4d7c-8b6a-5f4e3d2c1b0a",
            _ => "apr_0000000000000000",
        };
        let path = path
            .replace("{client_id}", &self.client_id)
            .replace("{server_id}", &self.server)
            .replace("{id}", id);
        let seq = self.seq;
        match path.as_str() {
            "/api/v1/ledger/proofs/inclusion" => format!("{path}?seq=1&size={seq}"),
            "/api/v1/ledger/proofs/consistency" => format!("{path}?from=1&to={seq}"),
            // Time travel: the trail as of the first record.
            "/api/v1/audit" => format!("{path}?as_of_seq=1"),
            _ => path,
        }
    }

    /// A body the endpoint would accept from an admin, so that what refuses it is the role.
    fn body(&self, method: &str, path: &str) -> Option<Value> {
        let body = match (method, path) {
            ("POST", "/api/v1/admin/credentials") => json!({"name": "mine now", "role": "admin"}),
            ("POST", "/api/v1/keys/rotate") => json!({"alg": "ES256"}),
            ("POST", "/api/v1/users") => json!({"email": "eve@example.com"}),
            ("PUT", "/api/v1/users/{id}/password") => json!({"password": "a long passphrase here"}),
            ("POST", "/api/v1/agents") => json!({
                "name": "escalator", "scopes": ["files:read"], "grant_types": ["client_credentials"]
            }),
            ("PUT", p) if p.ends_with("/policy-set") => json!({
                "policies": "@id(\"all\") permit(principal, action, resource);"
            }),
            ("PUT", "/api/v1/agents/{client_id}/identity") => {
                json!({"owner": "", "expires_at": ""})
            }
            ("POST", "/api/v1/agents/{client_id}/review") => json!({"note": "fine"}),
            ("PUT", "/api/v1/agents/{client_id}/policy") => json!({"max_ttl_seconds": 600}),
            ("POST", "/api/v1/agents/{client_id}/delegations") => json!({"scopes": ["files:read"]}),
            ("POST", "/api/v1/me/tokens") => json!({"client_id": self.client_id}),
            ("POST", "/api/v1/servers") => json!({
                "name": "other", "url": "http://127.0.0.1:9/mcp", "auth": "none"
            }),
            ("POST", "/api/v1/agents/{client_id}/session-grants") => {
                json!({"server_id": self.server, "shared": true})
            }
            ("POST", "/api/v1/agents/{client_id}/session-grants/toggle") => {
                json!({"server_id": self.server})
            }
            ("POST", "/api/v1/operations") => json!({"operation": "read"}),
            ("POST", "/api/v1/proxy/{server_id}/tools") => {
                json!({"tool_name": "whoami", "arguments": {}})
            }
            ("POST", "/oauth/register") => json!({
                "client_name": "registered by an auditor",
                "grant_types": ["client_credentials"],
                "token_endpoint_auth_method": "client_secret_basic"
            }),
            ("POST", "/oauth/agent-token") => json!({
                "client_id": self.client_id, "client_secret": "wrong",
                "delegated_by_user_id": self.user, "agent_type": "autonomous", "scope": "files:read"
            }),
            _ => return None,
        };
        Some(body)
    }
}

/// An auditor reads everything and writes nothing: every endpoint in `endpoints()`, asked
/// with an auditor credential and a body an admin would have had accepted, leaves the
/// ledger head where it was; each endpoint that writes and takes admin credentials answers
/// 403 `insufficient_role`, and each read answers without a role refusal.
#[test]
fn an_auditor_credential_walking_every_endpoint_writes_nothing() {
    let dir = temp();
    let server = Server::start(dir.path(), &[]);
    let admin = server.admin_token();
    let (status, ada) = send(
        &server,
        &admin,
        "POST",
        "/api/v1/users",
        Some(json!({"email": "ada@example.com"})),
    );
    assert_eq!(status, 201, "{ada}");
    let user = ada["id"].as_str().unwrap_or_default().to_owned();
    let (status, key) = send(
        &server,
        &admin,
        "POST",
        &format!("/api/v1/users/{user}/api-keys"),
        None,
    );
    assert_eq!(status, 201, "{key}");
    let agent =
        json!({"name": "reader", "scopes": ["files:read"], "grant_types": ["client_credentials"]});
    let (client_id, _) = register_agent(&server, &admin, agent);
    let key_secret = key["key"].as_str().unwrap_or_default();
    let (status, delegation) = answer(
        http()
            .post(server.url(&format!("/api/v1/agents/{client_id}/delegations")))
            .header("x-api-key", key_secret)
            .json(&json!({})),
    );
    assert_eq!(status, 201, "{delegation}");
    let body = json!({"name": "files", "url": "http://127.0.0.1:9/mcp", "auth": "none"});
    let (status, mcp) = send(&server, &admin, "POST", "/api/v1/servers", Some(body));
    assert_eq!(status, 201, "{mcp}");
    let (_, auditor) = credential(&server, &admin, json!({"name": "audit", "role": "auditor"}));
    let ids = Ids {
        user,
        api_key: key["id"].as_str().unwrap_or_default().to_owned(),
        client_id,
        delegation: delegation["id"].as_str().unwrap_or_default().to_owned(),
        server: mcp["id"].as_str().unwrap_or_default().to_owned(),
        credential: id_of(&server, &admin, "initial"),
        seq: head_seq(&server, &admin),
    };
    let before = head_seq(&server, &auditor);

    let mut wrong = Vec::new();
    for endpoint in endpoints() {
        let (method, template) = (endpoint.method.as_str(), endpoint.path);
        let path = ids.fill(template);
        let (status, answer) = send(&server, &auditor, method, &path, ids.body(method, template));
        let seen = format!("{method} {template} -> {status} {answer}");
        let role_refused = status == 403 && answer["error"] == json!("insufficient_role");
        let writes = endpoint.role == AdminRole::Admin;
        if status >= 500 {
            wrong.push(format!("{seen}: a server error"));
        } else if NOT_FOR_ADMIN_CREDENTIALS.contains(&template) {
            if (200..300).contains(&status) && writes {
                wrong.push(format!("{seen}: took an auditor's credential for a write"));
            }
        } else if writes && !role_refused {
            wrong.push(format!("{seen}: a write must refuse the auditor's role"));
        } else if !writes && role_refused {
            wrong.push(format!("{seen}: a read must serve the auditor"));
        }
        if role_refused {
            // The management API says `detail`; OAuth endpoints `error_description`.
            let detail = answer["detail"]
                .as_str()
                .or(answer["error_description"].as_str())
                .unwrap_or_default();
            if !detail.contains("has role auditor") || !detail.contains("needs role admin") {
                wrong.push(format!(
                    "{seen}: the detail must name the role and what is needed"
                ));
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    // The auditor's own questions are answered: the trail, its export, time travel,
    // the head, checkpoints and proofs.
    for path in [
        "/api/v1/audit".to_owned(),
        "/api/v1/audit?as_of_seq=1".to_owned(),
        "/api/v1/audit/export?format=jsonl".to_owned(),
        "/api/v1/audit/delegations?as_of_seq=3".to_owned(),
        "/api/v1/ledger/head".to_owned(),
        format!("/api/v1/ledger/proofs/inclusion?seq=1&size={before}"),
        format!("/api/v1/ledger/proofs/consistency?from=1&to={before}"),
        "/api/v1/admin/credentials".to_owned(),
    ] {
        let response = http()
            .get(server.url(&path))
            .bearer_auth(&auditor)
            .send()
            .unwrap_or_else(|err| panic!("{err}"));
        assert_eq!(response.status().as_u16(), 200, "GET {path}");
    }
    assert_eq!(
        head_seq(&server, &admin),
        before,
        "the auditor's walk wrote to the ledger"
    );
    assert_eq!(server.stop(), Some(0));
}

#[test]
fn admin_credentials_are_created_listed_and_revoked_over_the_api() {
    let dir = temp();
    let server = Server::start(dir.path(), &[]);
    let admin = server.admin_token();
    assert_eq!(
        listed(&server, &admin),
        vec![("initial".into(), "admin".into(), "live".into())]
    );
    let (auditor_id, auditor) =
        credential(&server, &admin, json!({"name": "audit", "role": "auditor"}));
    let (ops_id, ops) = credential(&server, &admin, json!({"name": "ops"}));
    assert_eq!(
        listed(&server, &auditor),
        vec![
            ("audit".into(), "auditor".into(), "live".into()),
            ("initial".into(), "admin".into(), "live".into()),
            ("ops".into(), "admin".into(), "live".into()),
        ]
    );
    let (status, list) = send(&server, &admin, "GET", "/api/v1/admin/credentials", None);
    assert_eq!(status, 200);
    assert!(
        !list.to_string().contains("wrt_admin_"),
        "a listing shows no secret: {list}"
    );

    for (body, status_expected, error) in [
        (json!({"name": "audit"}), 409, "conflict"),
        (json!({"name": ""}), 400, "invalid_request"),
        (json!({"name": "adm_1234"}), 400, "invalid_request"),
        (json!({"name": "x".repeat(65)}), 400, "invalid_request"),
        (
            json!({"name": "late", "expires_at": "2001-01-01T00:00:00Z"}),
            400,
            "invalid_request",
        ),
        (
            json!({"name": "odd", "role": "root"}),
            400,
            "invalid_request",
        ),
    ] {
        let (status, answer) = send(
            &server,
            &admin,
            "POST",
            "/api/v1/admin/credentials",
            Some(body.clone()),
        );
        assert_eq!(
            (status, answer["error"].as_str()),
            (status_expected, Some(error)),
            "{body} -> {answer}"
        );
    }
    let (status, answer) = send(
        &server,
        &auditor,
        "POST",
        "/api/v1/admin/credentials",
        Some(json!({"name": "mine"})),
    );
    assert_eq!(
        (status, answer["error"].as_str()),
        (403, Some("insufficient_role")),
        "{answer}"
    );
    let detail = answer["detail"].as_str().unwrap_or_default();
    assert!(
        detail.contains(&format!("\"audit\" ({auditor_id}) has role auditor")),
        "{detail}"
    );

    // Revoked: refused from the very next request.
    let (status, _) = send(
        &server,
        &admin,
        "DELETE",
        &format!("/api/v1/admin/credentials/{auditor_id}"),
        None,
    );
    assert_eq!(status, 204);
    let (status, answer) = send(&server, &auditor, "GET", "/api/v1/ledger/head", None);
    assert_eq!(
        (status, answer["error"].as_str()),
        (401, Some("unauthorized")),
        "{answer}"
    );
    let (status, answer) = send(
        &server,
        &admin,
        "DELETE",
        &format!("/api/v1/admin/credentials/{auditor_id}"),
        None,
    );
    assert_eq!(
        (status, answer["error"].as_str()),
        (404, Some("not_found")),
        "{answer}"
    );
    // The name of a revoked credential is free again.
    credential(&server, &admin, json!({"name": "audit", "role": "auditor"}));

    // A credential may revoke itself, but the last live admin credential stays.
    let (status, _) = send(
        &server,
        &ops,
        "DELETE",
        &format!("/api/v1/admin/credentials/{ops_id}"),
        None,
    );
    assert_eq!(status, 204);
    let initial = id_of(&server, &admin, "initial");
    let (status, answer) = send(
        &server,
        &admin,
        "DELETE",
        &format!("/api/v1/admin/credentials/{initial}"),
        None,
    );
    assert_eq!(
        (status, answer["error"].as_str()),
        (409, Some("conflict")),
        "{answer}"
    );
    assert!(
        answer["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("last live one with role admin"),
        "{answer}"
    );
    // The 401 hint does not assume the credential's shape.
    let (status, answer) = answer_of(http().get(server.url("/api/v1/users")));
    assert_eq!(status, 401);
    assert_eq!(
        answer["detail"],
        json!("send an admin credential as `Authorization: Bearer <credential>`")
    );
    assert_eq!(server.stop(), Some(0));
}

fn answer_of(request: RequestBuilder) -> (u16, Value) {
    answer(request)
}

/// An expiry is a value the server compares with its clock: a credential that lasts an
/// hour is refused (401) by a server whose clock reads two hours later, and is listed as
/// expired; a credential without an expiry goes on.
#[test]
fn an_admin_credential_past_its_expiry_is_refused() {
    let dir = temp();
    let server = Server::start(dir.path(), &[]);
    let admin = server.admin_token();
    let in_an_hour = (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339();
    let (_, brief) = credential(
        &server,
        &admin,
        json!({"name": "brief", "expires_at": in_an_hour}),
    );
    assert_eq!(head_seq(&server, &brief), head_seq(&server, &admin));
    assert_eq!(server.stop(), Some(0));

    let later = Server::start(dir.path(), &["--clock-offset-seconds", "7200"]);
    let (status, answer) = send(&later, &brief, "GET", "/api/v1/ledger/head", None);
    assert_eq!(
        (status, answer["error"].as_str()),
        (401, Some("unauthorized")),
        "{answer}"
    );
    assert!(
        answer["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("\"brief\""),
        "{answer}"
    );
    assert!(
        answer["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("expired at"),
        "{answer}"
    );
    assert!(listed(&later, &admin).contains(&("brief".into(), "admin".into(), "expired".into())));
    assert_eq!(later.stop(), Some(0));
}

/// Every record an admin's request makes names the credential that made it, and the
/// trail shows it as `admin:<id>`.
#[test]
fn records_name_the_admin_credential_that_acted() {
    let dir = temp();
    let server = Server::start(dir.path(), &[]);
    let admin = server.admin_token();
    let initial = id_of(&server, &admin, "initial");
    let (ops_id, ops) = credential(&server, &admin, json!({"name": "ops"}));
    let (status, _) = send(
        &server,
        &ops,
        "POST",
        "/api/v1/users",
        Some(json!({"email": "bo@example.com"})),
    );
    assert_eq!(status, 201);
    let (status, _) = send(
        &server,
        &ops,
        "POST",
        "/api/v1/keys/rotate",
        Some(json!({})),
    );
    assert_eq!(status, 201);
    let (status, _) = send(
        &server,
        &admin,
        "DELETE",
        &format!("/api/v1/admin/credentials/{ops_id}"),
        None,
    );
    assert_eq!(status, 204);
    let (status, trail) = send(&server, &admin, "GET", "/api/v1/audit?limit=100", None);
    assert_eq!(status, 200, "{trail}");
    assert!(
        trail.to_string().contains(&format!("admin:{ops_id}")),
        "{trail}"
    );
    assert_eq!(server.stop(), Some(0));

    let export = dir.path().join("records.jsonl");
    export_to(dir.path(), &export);
    let records: Vec<Value> = std::fs::read_to_string(&export)
        .unwrap_or_default()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|err| panic!("{err}")))
        .collect();
    let by_of = |kind: &str| -> Vec<Value> {
        records
            .iter()
            .filter(|r| r["event"]["type"] == json!(kind))
            .map(|r| r["event"]["data"]["by"].clone())
            .collect()
    };
    let admin_by = |id: &str| json!({"kind": "admin", "token_id": id});
    assert_eq!(by_of("UserRegistered"), vec![admin_by(&ops_id)]);
    assert!(by_of("SigningKeyRotated").contains(&admin_by(&ops_id)));
    assert_eq!(
        by_of("AdminTokenIssued"),
        vec![json!({"kind": "system"}), admin_by(&initial)]
    );
    assert_eq!(by_of("AdminTokenRevoked"), vec![admin_by(&initial)]);
    let issued = records
        .iter()
        .find(|r| r["event"]["data"]["token_id"] == json!(ops_id))
        .map(|r| r["event"]["data"].clone())
        .unwrap_or_default();
    assert_eq!(
        (issued["name"].as_str(), issued["role"].as_str()),
        (Some("ops"), Some("admin"))
    );
    let run = writ(&["verify", &dir.path().display().to_string()]);
    assert_eq!(run.code, Some(0), "{}{}", run.stdout, run.stderr);
}

/// `writ admin token create | list | revoke` on a data directory: named credentials with
/// a role and an expiry, found by id or name, the last admin credential kept; on the
/// embedded store a running server's lock sends the operator to its API instead.
#[test]
fn writ_admin_token_creates_lists_and_revokes_credentials_on_a_data_dir() {
    let dir = temp();
    let shown = dir.path().display().to_string();
    let server = Server::start(dir.path(), &[]);
    let admin = server.admin_token();
    let create = [
        "admin",
        "token",
        "create",
        "--data-dir",
        &shown,
        "--name",
        "ci",
        "--role",
        "auditor",
        "--expires-in",
        "30d",
    ];
    if !postgres_pass() {
        let run = writ(&create);
        assert_eq!(run.code, Some(2), "{}", run.stderr);
        assert!(
            run.stderr.contains("POST /api/v1/admin/credentials"),
            "{}",
            run.stderr
        );
    }
    assert_eq!(server.stop(), Some(0));

    let run = writ(&create);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let ci = run.stdout.trim().to_owned();
    assert!(ci.starts_with("wrt_admin_"), "{ci}");
    assert!(
        run.stderr.contains("\"ci\", role auditor"),
        "{}",
        run.stderr
    );
    let run = writ(&create);
    assert_eq!(run.code, Some(2));
    assert!(
        run.stderr
            .contains("an admin credential named \"ci\" exists"),
        "{}",
        run.stderr
    );
    for bad in [["--expires-in", "30 days"], ["--expires-at", "yesterday"]] {
        let mut args = vec![
            "admin",
            "token",
            "create",
            "--data-dir",
            &shown,
            "--name",
            "x",
        ];
        args.extend(bad);
        let run = writ(&args);
        assert_eq!(run.code, Some(2), "{bad:?}: {}", run.stderr);
    }

    let run = writ(&["admin", "token", "list", "--data-dir", &shown]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let rows: Vec<Vec<&str>> = run
        .stdout
        .lines()
        .map(|l| l.split('\t').collect())
        .collect();
    assert_eq!(rows.len(), 3, "{}", run.stdout);
    assert_eq!(rows[1][1..3], ["ci", "auditor"]);
    assert_eq!(rows[2][1..5], ["initial", "admin", "never", "live"]);
    assert!(!run.stdout.contains("wrt_admin_"), "{}", run.stdout);

    let server = Server::start(dir.path(), &[]);
    assert_eq!(head_seq(&server, &ci), head_seq(&server, &admin));
    let (status, answer) = send(
        &server,
        &ci,
        "POST",
        "/api/v1/users",
        Some(json!({"email": "ci@example.com"})),
    );
    assert_eq!(
        (status, answer["error"].as_str()),
        (403, Some("insufficient_role")),
        "{answer}"
    );
    assert_eq!(server.stop(), Some(0));

    let run = writ(&["admin", "token", "revoke", "initial", "--data-dir", &shown]);
    assert_eq!(run.code, Some(2));
    assert!(
        run.stderr.contains("last live one with role admin"),
        "{}",
        run.stderr
    );
    let run = writ(&["admin", "token", "revoke", "nobody", "--data-dir", &shown]);
    assert_eq!(run.code, Some(2));
    assert!(
        run.stderr
            .contains("no admin credential has the id or name \"nobody\""),
        "{}",
        run.stderr
    );
    let run = writ(&["admin", "token", "revoke", "ci", "--data-dir", &shown]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);

    let server = Server::start(dir.path(), &[]);
    let (status, _) = send(&server, &ci, "GET", "/api/v1/ledger/head", None);
    assert_eq!(status, 401);
    assert_eq!(listed(&server, &admin).len(), 1);
    assert_eq!(server.stop(), Some(0));
}
