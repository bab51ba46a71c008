//! `schemas/openapi.yaml` held to the OpenAPI 3.1 specification by an independent
//! validator (openapi-spec-validator), and to a running server: every endpoint is called,
//! successes and refusals alike, and each answer's status, media type, required headers,
//! error code and body must be ones the document lists for that operation.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Command;

use reqwest::blocking::{Client, RequestBuilder};
use serde_json::{Value, json};

use crate::kit::*;

fn document_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("schemas/openapi.yaml")
}

fn document() -> Value {
    let text = std::fs::read_to_string(document_path()).unwrap_or_else(|err| panic!("{err}"));
    serde_saphyr::from_str(&text).unwrap_or_else(|err| panic!("schemas/openapi.yaml: {err}"))
}

#[test]
fn the_document_is_valid_openapi_3_1() {
    let output = Command::new("python3")
        .args(["-m", "openapi_spec_validator", "--schema", "3.1"])
        .args(["--validation-errors", "all"])
        .arg(document_path())
        .output()
        .unwrap_or_else(|err| {
            panic!("python3 (tools/test.sh installs openapi-spec-validator): {err}")
        });
    assert!(
        output.status.success(),
        "openapi-spec-validator refused schemas/openapi.yaml:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Follows a local `$ref` (`#/components/...`) to what it names.
fn resolve<'d>(document: &'d Value, node: &'d Value) -> &'d Value {
    match node.get("$ref").and_then(Value::as_str) {
        Some(reference) => {
            let target = document.pointer(reference.trim_start_matches('#'));
            resolve(document, target.unwrap_or(&Value::Null))
        }
        None => node,
    }
}

/// The `error` codes a schema allows; `None` when it does not constrain them.
fn error_codes(document: &Value, schema: &Value) -> Option<BTreeSet<String>> {
    let schema = resolve(document, schema);
    let error = &schema["properties"]["error"];
    let mut codes: Option<BTreeSet<String>> = match (&error["const"], error["enum"].as_array()) {
        (Value::String(code), _) => Some(BTreeSet::from([code.clone()])),
        (_, Some(listed)) => Some(
            listed
                .iter()
                .filter_map(|c| c.as_str().map(str::to_owned))
                .collect(),
        ),
        _ => None,
    };
    let intersect = |a: Option<BTreeSet<String>>, b: Option<BTreeSet<String>>| match (a, b) {
        (Some(a), Some(b)) => Some(a.intersection(&b).cloned().collect()),
        (a, b) => a.or(b),
    };
    for part in schema["allOf"].as_array().into_iter().flatten() {
        codes = intersect(codes, error_codes(document, part));
    }
    for key in ["anyOf", "oneOf"] {
        if let Some(alternatives) = schema[key].as_array() {
            let union = alternatives
                .iter()
                .map(|part| error_codes(document, part))
                .try_fold(BTreeSet::new(), |mut all, codes| {
                    all.extend(codes?);
                    Some(all)
                });
            codes = intersect(codes, union);
        }
    }
    codes
}

/// A server, and what it answered, checked against the document as the answers come.
struct Sweep {
    server: Server,
    client: Client,
    admin: String,
    document: Value,
    /// Answers whose bodies the document's schemas must accept (checked in one go).
    samples: Vec<Value>,
    /// Every operation that answered with a 2xx, as (method, path template).
    succeeded: BTreeSet<(String, String)>,
    failures: Vec<String>,
}

/// `template` with its one `{parameter}` replaced by `id`.
fn fill(template: &str, id: &str) -> String {
    match (template.find('{'), template.find('}')) {
        (Some(open), Some(close)) => format!("{}{id}{}", &template[..open], &template[close + 1..]),
        _ => template.to_owned(),
    }
}

impl Sweep {
    /// Sends a request to `template` (its parameter filled with `id`), expecting
    /// `expected`; checks the answer against the document and returns its JSON body.
    fn send(
        &mut self,
        expected: u16,
        method: &str,
        template: &str,
        id: &str,
        build: impl FnOnce(RequestBuilder) -> RequestBuilder,
    ) -> Value {
        let verb =
            reqwest::Method::from_bytes(method.as_bytes()).unwrap_or_else(|err| panic!("{err}"));
        let url = self.server.url(&fill(template, id));
        let response = build(self.client.request(verb, url))
            .send()
            .unwrap_or_else(|err| panic!("{method} {template}: {err}"));
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let text = response.text().unwrap_or_default();
        let json: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        let at = format!("{method} {template} -> {status} {text:.200}");
        if status != expected {
            self.failures
                .push(format!("{at}: this test expected {expected}"));
        }
        let method = method.to_lowercase();
        // A query string is part of the request, not of the documented path.
        let template = template.split_once('?').map_or(template, |(path, _)| path);
        if let Err(disagreement) = self.check(&method, template, status, &headers, text) {
            self.failures.push(format!("{at}: {disagreement}"));
        }
        json
    }

    /// Whether the document lists this answer for the operation; a documented body is
    /// kept as a sample for the schema check.
    fn check(
        &mut self,
        method: &str,
        template: &str,
        status: u16,
        headers: &reqwest::header::HeaderMap,
        text: String,
    ) -> Result<(), String> {
        let operation = &self.document["paths"][template][method];
        let documented = resolve(&self.document, &operation["responses"][status.to_string()]);
        if documented.is_null() {
            return Err("status not documented".into());
        }
        // A redirect is how an OAuth flow's start succeeds.
        if (200..300).contains(&status) || status == 302 || status == 303 {
            self.succeeded
                .insert((method.to_owned(), template.to_owned()));
        }
        for (name, header) in documented["headers"].as_object().into_iter().flatten() {
            let header = resolve(&self.document, header);
            if header["required"] == json!(true) && !headers.contains_key(name.as_str()) {
                return Err(format!("documented header {name} is missing"));
            }
        }
        let Some(content) = documented["content"].as_object() else {
            return match text.is_empty() {
                true => Ok(()),
                false => Err("documented without a body".into()),
            };
        };
        let media_type = headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase();
        let described = content
            .get(&media_type)
            .ok_or_else(|| format!("media type `{media_type}` not documented"))?;
        // JSON lines (`application/x-ndjson`) are text, one document a line.
        let body = match media_type.ends_with("json") && !media_type.ends_with("ndjson") {
            true => serde_json::from_str(&text).unwrap_or(Value::Null),
            false => Value::String(text),
        };
        if let Some(code) = body.get("error").and_then(Value::as_str) {
            match error_codes(&self.document, &described["schema"]) {
                Some(codes) if codes.contains(code) => {}
                listed => {
                    return Err(format!(
                        "error `{code}` is not among those documented ({listed:?})"
                    ));
                }
            }
        }
        self.samples.push(json!({
            "method": method, "path": template, "status": status.to_string(),
            "content_type": media_type, "body": body,
        }));
        Ok(())
    }

    /// An admin call with an optional JSON body.
    fn admin(
        &mut self,
        expected: u16,
        method: &str,
        template: &str,
        id: &str,
        body: Option<Value>,
    ) -> Value {
        let admin = self.admin.clone();
        self.send(expected, method, template, id, |request| {
            let request = request.bearer_auth(admin);
            match body {
                Some(body) => request.json(&body),
                None => request,
            }
        })
    }

    /// A person's call, by API key, with an optional JSON body.
    fn user(
        &mut self,
        expected: u16,
        method: &str,
        template: &str,
        id: &str,
        key: &str,
        body: Option<Value>,
    ) -> Value {
        self.send(expected, method, template, id, |request| {
            let request = request.header("x-api-key", key);
            match body {
                Some(body) => request.json(&body),
                None => request,
            }
        })
    }

    /// An OAuth call, the client authenticated by HTTP Basic when `client` is given.
    fn oauth(
        &mut self,
        expected: u16,
        template: &str,
        client: Option<(&str, &str)>,
        form: &[(&str, &str)],
    ) -> Value {
        self.send(expected, "POST", template, "", |request| {
            let request = request.form(form);
            match client {
                Some((id, secret)) => request.basic_auth(id, Some(secret)),
                None => request,
            }
        })
    }

    /// `POST /api/v1/operations` with a raw body, the token and an idempotency key if given.
    fn operation(
        &mut self,
        expected: u16,
        token: Option<&str>,
        key: Option<&str>,
        body: &str,
    ) -> Value {
        self.send(expected, "POST", "/api/v1/operations", "", |request| {
            let mut request = request
                .header("content-type", "application/json")
                .body(body.to_owned());
            if let Some(token) = token {
                request = request.bearer_auth(token);
            }
            if let Some(key) = key {
                request = request.header("idempotency-key", key);
            }
            request
        })
    }
}

fn ledger(s: &mut Sweep) {
    let head = "/api/v1/ledger/head";
    s.send(401, "GET", head, "", |r| r);
    let size = s.admin(200, "GET", head, "", None)["tree_size"]
        .as_u64()
        .unwrap_or(0);
    let inclusion = "/api/v1/ledger/proofs/inclusion";
    s.admin(
        200,
        "GET",
        &format!("{inclusion}?seq=1&size={size}"),
        "",
        None,
    );
    s.admin(
        400,
        "GET",
        &format!("{inclusion}?seq=1&size={}", size + 1),
        "",
        None,
    );
    s.admin(
        400,
        "GET",
        &format!("{inclusion}?seq=x&size={size}"),
        "",
        None,
    );
    s.send(401, "GET", &format!("{inclusion}?seq=1&size=1"), "", |r| r);
    let consistency = "/api/v1/ledger/proofs/consistency";
    s.admin(
        200,
        "GET",
        &format!("{consistency}?from=1&to={size}"),
        "",
        None,
    );
    s.admin(400, "GET", &format!("{consistency}?from=2&to=1"), "", None);
    s.send(401, "GET", &format!("{consistency}?from=1&to=1"), "", |r| r);
}

/// The auditor's questions: the trail, its exports and time travel, and their refusals.
fn audit(s: &mut Sweep, ada: &str, client_id: &str) {
    s.send(401, "GET", "/api/v1/audit", "", |r| r);
    let page = s.admin(200, "GET", "/api/v1/audit?limit=2", "", None);
    let cursor = page["next_cursor"].as_u64().unwrap_or(0);
    s.admin(
        200,
        "GET",
        &format!("/api/v1/audit?cursor={cursor}&user={ada}&action=DelegationGranted"),
        "",
        None,
    );
    s.admin(400, "GET", "/api/v1/audit?action=Nothing", "", None);
    s.admin(
        200,
        "GET",
        "/api/v1/audit/export?format=csv&as_of_seq=3",
        "",
        None,
    );
    s.admin(
        200,
        "GET",
        &format!("/api/v1/audit/export?agent={client_id}"),
        "",
        None,
    );
    s.admin(400, "GET", "/api/v1/audit/export?format=pdf", "", None);
    s.send(401, "GET", "/api/v1/audit/export", "", |r| r);
    s.admin(200, "GET", "/api/v1/audit/delegations", "", None);
    s.admin(
        200,
        "GET",
        &format!("/api/v1/audit/delegations?as_of_seq=3&user={ada}"),
        "",
        None,
    );
    s.admin(
        400,
        "GET",
        "/api/v1/audit/delegations?as_of_seq=0",
        "",
        None,
    );
    s.send(401, "GET", "/api/v1/audit/delegations", "", |r| r);
    s.admin(
        200,
        "GET",
        &format!("/api/v1/audit/tokens?user={ada}"),
        "",
        None,
    );
    s.admin(404, "GET", "/api/v1/audit/tokens?user=nobody", "", None);
    s.admin(400, "GET", "/api/v1/audit/tokens", "", None);
    s.send(401, "GET", "/api/v1/audit/tokens", "", |r| r);
    let agent = "/api/v1/audit/agents/{client_id}";
    s.admin(200, "GET", agent, client_id, None);
    s.admin(404, "GET", agent, "agt_nobody", None);
    s.admin(
        400,
        "GET",
        &format!("{agent}?as_of=yesterday"),
        client_id,
        None,
    );
    s.send(401, "GET", agent, client_id, |r| r);
}

fn text(value: &Value) -> String {
    value.as_str().unwrap_or_default().to_owned()
}

/// Admin credentials: made, listed, refused to an auditor where they write, revoked.
fn admin_credentials(s: &mut Sweep) {
    let path = "/api/v1/admin/credentials";
    let one = "/api/v1/admin/credentials/{id}";
    s.send(401, "GET", path, "", |r| r);
    let body = json!({"name": "sweep audit", "role": "auditor"});
    let created = s.admin(201, "POST", path, "", Some(body.clone()));
    s.admin(409, "POST", path, "", Some(body));
    s.admin(400, "POST", path, "", Some(json!({"name": ""})));
    let (id, auditor) = (text(&created["credential"]["id"]), text(&created["token"]));
    s.admin(200, "GET", path, "", None);
    s.send(200, "GET", path, "", |r| r.bearer_auth(&auditor));
    s.send(403, "POST", path, "", |r| {
        r.bearer_auth(&auditor).json(&json!({"name": "mine"}))
    });
    s.send(403, "DELETE", one, &id, |r| r.bearer_auth(&auditor));
    s.send(403, "POST", "/api/v1/users", "", |r| {
        r.bearer_auth(&auditor)
            .json(&json!({"email": "eve@example.com"}))
    });
    s.admin(204, "DELETE", one, &id, None);
    s.admin(404, "DELETE", one, &id, None);
    s.send(401, "GET", path, "", |r| r.bearer_auth(&auditor));
    let listed = s.admin(200, "GET", path, "", None);
    let initial = listed
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["name"] == json!("initial"))
        .map(|c| text(&c["id"]))
        .unwrap_or_default();
    s.admin(409, "DELETE", one, &initial, None);
}

/// The users API: registration and its refusals, the list, deactivation and back; the
/// id of the person registered.
fn users(s: &mut Sweep) -> String {
    let users = "/api/v1/users";
    let ada = json!({"email": "ada@example.com", "name": "Ada"});
    s.send(401, "POST", users, "", |r| r.json(&ada));
    let user = s.admin(201, "POST", users, "", Some(ada.clone()));
    s.admin(409, "POST", users, "", Some(ada));
    s.admin(
        400,
        "POST",
        users,
        "",
        Some(json!({"email": "not an email"})),
    );
    let oversize = json!({"email": format!("{}@example.com", "a".repeat(70_000))});
    s.admin(413, "POST", users, "", Some(oversize));
    s.admin(200, "GET", users, "", None);
    let id = text(&user["id"]);
    for action in ["deactivate", "reactivate"] {
        let template = format!("/api/v1/users/{{id}}/{action}");
        s.admin(204, "POST", &template, &id, None);
        s.admin(409, "POST", &template, &id, None);
        s.admin(404, "POST", &template, "no-such-user", None);
    }
    id
}

/// API keys and delegations: a person's key acting as them, granting, listing and
/// revoking delegations, and the refusals between two people and an admin.
fn api_keys_and_delegations(s: &mut Sweep, ada: &str, client_id: &str) {
    let issue = "/api/v1/users/{id}/api-keys";
    s.send(401, "POST", issue, ada, |r| r);
    let issued = s.admin(201, "POST", issue, ada, None);
    let (ada_key, ada_key_id) = (text(&issued["key"]), text(&issued["id"]));
    s.admin(404, "POST", issue, "no-such-user", None);
    let bob = json!({"email": "bob@example.com"});
    let bob = text(&s.admin(201, "POST", "/api/v1/users", "", Some(bob))["id"]);
    let issued = s.admin(201, "POST", issue, &bob, None);
    let (bob_key, bob_key_id) = (text(&issued["key"]), text(&issued["id"]));

    let grants = "/api/v1/agents/{client_id}/delegations";
    let narrow = json!({"scopes": ["files:read"], "expires_at": "2099-01-01T00:00:00Z"});
    let granted = s.user(201, "POST", grants, client_id, &ada_key, Some(narrow));
    s.user(201, "POST", grants, client_id, &ada_key, None);
    let wide = json!({"scopes": ["files:read", "mail:send"]});
    s.user(400, "POST", grants, client_id, &ada_key, Some(wide));
    let past = json!({"expires_at": "2001-01-01T00:00:00Z"});
    s.user(400, "POST", grants, client_id, &ada_key, Some(past));
    s.user(404, "POST", grants, "agt_missing", &ada_key, None);
    s.user(401, "POST", grants, client_id, "wrt_not-a-key", None);
    let oversize = json!({"scopes": ["s".repeat(70_000)]});
    s.user(413, "POST", grants, client_id, &ada_key, Some(oversize));
    s.admin(403, "POST", grants, client_id, None);
    s.admin(200, "GET", grants, client_id, None);
    s.user(200, "GET", grants, client_id, &bob_key, None);
    s.admin(404, "GET", grants, "agt_missing", None);

    let own = "/api/v1/me/tokens";
    let for_agent = json!({"client_id": client_id, "expires_in": 60});
    s.user(200, "POST", own, "", &ada_key, Some(for_agent.clone()));
    s.user(
        404,
        "POST",
        own,
        "",
        &ada_key,
        Some(json!({"client_id": "agt_missing"})),
    );
    let bad_scope = json!({"client_id": client_id, "scope": "mail:send"});
    s.user(400, "POST", own, "", &ada_key, Some(bad_scope));
    s.admin(403, "POST", own, "", Some(for_agent.clone()));
    s.send(401, "POST", own, "", |r| r.json(&for_agent));
    let oversize = json!({"client_id": "c".repeat(70_000)});
    s.user(413, "POST", own, "", &ada_key, Some(oversize));

    let mine = "/api/v1/me/delegations";
    s.user(200, "GET", mine, "", &ada_key, None);
    s.admin(403, "GET", mine, "", None);
    s.send(401, "GET", mine, "", |r| r);

    let revoke = "/api/v1/delegations/{id}";
    let delegation = text(&granted["id"]);
    s.user(403, "DELETE", revoke, &delegation, &bob_key, None);
    s.user(204, "DELETE", revoke, &delegation, &ada_key, None);
    s.admin(409, "DELETE", revoke, &delegation, None);
    s.admin(404, "DELETE", revoke, "no-such-delegation", None);

    let keys = "/api/v1/api-keys/{id}";
    s.user(403, "DELETE", keys, &ada_key_id, &bob_key, None);
    s.user(204, "DELETE", keys, &bob_key_id, &bob_key, None);
    s.admin(409, "DELETE", keys, &bob_key_id, None);
    s.admin(404, "DELETE", keys, "no-such-key", None);
    s.user(401, "GET", mine, "", &bob_key, None);
    s.admin(204, "POST", "/api/v1/users/{id}/deactivate", &bob, None);
    s.admin(409, "POST", issue, &bob, None);
    let erase = "/api/v1/users/{id}/erase";
    s.send(401, "POST", erase, &bob, |r| r);
    s.admin(200, "POST", erase, &bob, None);
    s.admin(409, "POST", erase, &bob, None);
    s.admin(404, "POST", erase, "no-such-user", None);
}

/// The agent registry, every endpoint and some refusals; the agent's id and secret.
fn agents(s: &mut Sweep) -> (String, String) {
    let agents = "/api/v1/agents";
    let agent = json!({"name": "sweep", "scopes": ["files:read"],
                       "grant_types": ["client_credentials", "urn:ietf:params:oauth:grant-type:token-exchange"],
                       "owner": "ada@example.com", "expires_at": "2099-01-01T00:00:00Z"});
    let created = s.admin(201, "POST", agents, "", Some(agent));
    let bad = json!({"name": "x", "scopes": ["has space"], "grant_types": ["client_credentials"]});
    s.admin(400, "POST", agents, "", Some(bad));
    s.admin(200, "GET", agents, "", None);
    let id = text(&created["agent"]["client_id"]);
    let at = |action: &str| format!("/api/v1/agents/{{client_id}}{action}");
    s.admin(404, "GET", &at(""), "agt_missing", None);
    s.admin(200, "GET", &at(""), &id, None);
    s.admin(
        204,
        "PUT",
        &at("/identity"),
        &id,
        Some(json!({"expires_at": ""})),
    );
    s.admin(
        400,
        "PUT",
        &at("/identity"),
        &id,
        Some(json!({"owner": "nobody@example.com"})),
    );
    s.admin(
        204,
        "POST",
        &at("/review"),
        &id,
        Some(json!({"note": "scopes checked"})),
    );
    s.admin(
        413,
        "POST",
        &at("/review"),
        &id,
        Some(json!({"note": "n".repeat(70_000)})),
    );
    let rotated = s.admin(200, "POST", &at("/secret"), &id, None);
    s.admin(
        204,
        "PUT",
        &at("/policy"),
        &id,
        Some(json!({"max_ttl_seconds": 600})),
    );
    s.admin(
        400,
        "PUT",
        &at("/policy"),
        &id,
        Some(json!({"max_ttl_seconds": 0})),
    );
    for action in ["/disable", "/enable"] {
        s.admin(204, "POST", &at(action), &id, None);
        s.admin(409, "POST", &at(action), &id, None);
    }
    keyed_agent(s);
    (id, text(&rotated["client_secret"]))
}

/// A `private_key_jwt` agent: registered with no secret (so none to rotate), and a token
/// for a signed client assertion, which pays once.
fn keyed_agent(s: &mut Sweep) {
    writ::jose::install();
    let key = crate::client_assertion::ed25519_key("k1");
    let body = json!({"name": "keyed", "scopes": ["s"], "grant_types": ["client_credentials"],
                      "token_endpoint_auth_method": "private_key_jwt",
                      "jwks": {"keys": [key.jwk]}});
    let created = s.admin(201, "POST", "/api/v1/agents", "", Some(body));
    let id = text(&created["agent"]["client_id"]);
    s.admin(409, "POST", "/api/v1/agents/{client_id}/secret", &id, None);
    let endpoint = s.server.url("/oauth/token");
    let assertion = crate::client_assertion::sign_assertion(&key, &id, &endpoint);
    let form = [
        ("grant_type", "client_credentials"),
        (
            "client_assertion_type",
            "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        ),
        ("client_assertion", assertion.as_str()),
    ];
    s.oauth(200, "/oauth/token", None, &form);
    s.oauth(401, "/oauth/token", None, &form);
}

/// Tokens, introspection, operations under a quota and revocation.
fn tokens_and_operations(s: &mut Sweep, client_id: &str, secret: &str) {
    let me = Some((client_id, secret));
    let cc = ("grant_type", "client_credentials");
    let extensions = [
        cc,
        ("max_operations", "1"),
        ("task_id", "t-1"),
        ("intent_description", "read a file"),
    ];
    let token = text(&s.oauth(200, "/oauth/token", me, &extensions)["access_token"]);
    s.oauth(401, "/oauth/token", None, &[cc]);
    s.oauth(401, "/oauth/token", Some((client_id, "wrong")), &[cc]);
    s.oauth(400, "/oauth/token", me, &[("grant_type", "password")]);
    s.oauth(400, "/oauth/token", me, &[cc, ("scope", "files:delete")]);
    s.oauth(
        413,
        "/oauth/token",
        me,
        &[cc, ("task_id", &"x".repeat(20_000))],
    );
    s.oauth(200, "/oauth/introspect", me, &[("token", &token)]);
    s.oauth(200, "/oauth/introspect", me, &[("token", "not-a-token")]);
    s.oauth(400, "/oauth/introspect", me, &[]);

    let used = r#"{"operation": "tools/call", "resource": "doc"}"#;
    s.operation(200, Some(&token), Some("k-1"), used);
    s.operation(200, Some(&token), Some("k-1"), used);
    s.operation(403, Some(&token), None, used);
    s.operation(401, None, None, used);
    s.operation(400, Some(&token), None, "{");
    s.oauth(200, "/oauth/revoke", me, &[("token", &token)]);
    s.oauth(401, "/oauth/revoke", None, &[("token", &token)]);
    s.operation(401, Some(&token), None, used);
}

/// MCP servers, policy sets, a person's connection to an upstream provider (its flow
/// through the provider, as a browser follows it) and session grants; the id of the
/// credential-free server `files`.
fn servers_and_sessions(s: &mut Sweep, client_id: &str, mcp_url: &str) -> String {
    let servers = "/api/v1/servers";
    let none = json!({"name": "files", "url": mcp_url, "auth": "none"});
    let files = text(&s.admin(201, "POST", servers, "", Some(none.clone()))["id"]);
    s.admin(
        400,
        "POST",
        servers,
        "",
        Some(json!({"name": "x", "url": "ftp://x", "auth": "none"})),
    );
    s.admin(
        400,
        "POST",
        servers,
        "",
        Some(json!({"name": "x", "url": mcp_url, "auth": "oauth"})),
    );
    s.send(401, "POST", servers, "", |r| r.json(&none));
    let upstream = crate::upstream::Upstream::start(&s.server, 3600);
    let mut oauth = upstream.registration();
    oauth["name"] = json!("slack");
    oauth["url"] = json!(mcp_url);
    let slack = text(&s.admin(201, "POST", servers, "", Some(oauth))["id"]);
    s.admin(200, "GET", servers, "", None);

    let permit = json!({"policies": "@id(\"any-tool\") permit(principal, action, resource);"});
    let invalid =
        json!({"policies": "permit(principal, action, resource) when { resource.colour == 1 };"});
    let agent_policy = "/api/v1/agents/{client_id}/policy-set";
    s.admin(204, "PUT", agent_policy, client_id, Some(permit.clone()));
    s.admin(400, "PUT", agent_policy, client_id, Some(invalid));
    s.admin(
        404,
        "PUT",
        agent_policy,
        "agt_missing",
        Some(permit.clone()),
    );
    s.admin(200, "GET", agent_policy, client_id, None);
    let cleo = json!({"email": "cleo@example.com"});
    let cleo = text(&s.admin(201, "POST", "/api/v1/users", "", Some(cleo))["id"]);
    let key = text(&s.admin(201, "POST", "/api/v1/users/{id}/api-keys", &cleo, None)["key"]);
    let user_policy = "/api/v1/users/{id}/policy-set";
    s.user(204, "PUT", user_policy, &cleo, &key, Some(permit));
    s.user(200, "GET", user_policy, &cleo, &key, None);

    let start = "/api/v1/connections/{server_id}/start";
    s.user(404, "GET", start, "srv_missing", &key, None);
    s.user(400, "GET", start, &files, &key, None);
    s.admin(403, "GET", start, &slack, None);
    let follow = std::mem::replace(&mut s.client, no_redirects());
    let started = s.user(
        302,
        "GET",
        &format!("{start}?login_hint=cleo"),
        &slack,
        &key,
        None,
    );
    assert!(started.is_null());
    // Through the provider, as the person's browser, up to writ's callback.
    let first = no_redirects()
        .get(s.server.url(&format!(
            "/api/v1/connections/{slack}/start?login_hint=cleo"
        )))
        .header("x-api-key", &key)
        .send()
        .unwrap_or_else(|err| panic!("{err}"));
    let browser = reqwest::blocking::Client::builder()
        .cookie_store(true)
        .redirect(stop_at(&s.server.base))
        .build()
        .unwrap_or_else(|err| panic!("{err}"));
    let location = |r: &reqwest::blocking::Response| {
        r.headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let back = browser
        .get(location(&first))
        .send()
        .unwrap_or_else(|err| panic!("{err}"));
    let callback = location(&back);
    let callback = callback
        .strip_prefix(&s.server.base)
        .unwrap_or_else(|| panic!("the provider sent the browser to {callback}"))
        .to_owned();
    s.client = follow;
    s.send(
        400,
        "GET",
        "/api/v1/connections/callback?state=forged&code=x",
        "",
        |r| r,
    );
    s.send(
        400,
        "GET",
        "/api/v1/connections/callback?error=access_denied",
        "",
        |r| r,
    );
    s.send(200, "GET", &callback, "", |r| r);
    let connections = "/api/v1/connections";
    s.user(200, "GET", connections, "", &key, None);
    s.admin(
        200,
        "GET",
        &format!("{connections}?user_id={cleo}"),
        "",
        None,
    );
    s.admin(400, "GET", connections, "", None);

    let grants = "/api/v1/agents/{client_id}/session-grants";
    let lend = json!({"server_id": slack});
    let grant = s.user(201, "POST", grants, client_id, &key, Some(lend.clone()));
    s.user(409, "POST", grants, client_id, &key, Some(lend.clone()));
    s.user(404, "POST", grants, "agt_missing", &key, Some(lend.clone()));
    s.admin(403, "POST", grants, client_id, Some(lend.clone()));
    s.user(
        200,
        "GET",
        &format!("{grants}?server_id={slack}"),
        client_id,
        &key,
        None,
    );
    s.admin(200, "GET", grants, client_id, None);
    let toggle = "/api/v1/agents/{client_id}/session-grants/toggle";
    s.user(200, "POST", toggle, client_id, &key, Some(lend.clone()));
    s.user(
        409,
        "POST",
        toggle,
        client_id,
        &key,
        Some(json!({"server_id": files})),
    );
    let revoke = "/api/v1/session-grants/{id}";
    let grant = text(&grant["id"]);
    s.user(204, "DELETE", revoke, &grant, &key, None);
    s.user(409, "DELETE", revoke, &grant, &key, None);
    s.user(404, "DELETE", revoke, "no-such-grant", &key, None);
    let delete = "/api/v1/connections/{server_id}";
    s.user(204, "DELETE", delete, &slack, &key, None);
    s.user(404, "DELETE", delete, &slack, &key, None);
    drop(upstream);
    files
}

/// A redirect policy that follows redirects until one leads to `base`.
fn stop_at(base: &str) -> reqwest::redirect::Policy {
    let base = base.to_owned();
    reqwest::redirect::Policy::custom(move |attempt| {
        if attempt.url().as_str().starts_with(&base) {
            attempt.stop()
        } else {
            attempt.follow()
        }
    })
}

/// A client that follows no redirect.
fn no_redirects() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap_or_else(|err| panic!("{err}"))
}

/// Dynamic client registration, behind an initial access token (the server's default),
/// and its refusals.
fn registration(s: &mut Sweep) {
    let path = "/oauth/register";
    let register = |s: &mut Sweep, expected: u16, token: Option<&str>, body: &str| {
        let (body, token) = (body.to_owned(), token.map(str::to_owned));
        s.send(expected, "POST", path, "", move |request| {
            let request = request
                .header("content-type", "application/json")
                .body(body);
            match token {
                Some(token) => request.bearer_auth(token),
                None => request,
            }
        })
    };
    let admin = s.admin.clone();
    let admin = Some(admin.as_str());
    let confidential =
        r#"{"client_name": "sweep", "grant_types": ["client_credentials"], "scope": "files:read"}"#;
    let public =
        r#"{"redirect_uris": ["http://127.0.0.1:7000/cb"], "token_endpoint_auth_method": "none"}"#;
    register(s, 201, admin, confidential);
    register(s, 201, admin, public);
    register(s, 401, None, confidential);
    register(s, 401, Some("wrt_admin_not-a-token"), confidential);
    register(
        s,
        400,
        admin,
        r#"{"redirect_uris": ["http://app.example/cb"]}"#,
    );
    register(s, 400, admin, r#"{"grant_types": ["password"]}"#);
    register(s, 400, admin, "not json");
    let big = format!(r#"{{"client_name": "{}"}}"#, "x".repeat(20_000));
    register(s, 413, admin, &big);
}

/// Tool calls through the gateway to the test MCP server (`files`), and their refusals.
fn gateway(s: &mut Sweep, client_id: &str, secret: &str, files: &str) {
    let me = Some((client_id, secret));
    let cc = ("grant_type", "client_credentials");
    let token =
        text(&s.oauth(200, "/oauth/token", me, &[cc, ("max_operations", "1")])["access_token"]);
    let path = "/api/v1/proxy/{server_id}/tools";
    let tool = |s: &mut Sweep, expected: u16, server: &str, token: Option<&str>, body: &str| {
        let body = body.to_owned();
        let token = token.map(str::to_owned);
        s.send(expected, "POST", path, server, move |request| {
            let request = request
                .header("content-type", "application/json")
                .body(body);
            match token {
                Some(token) => request.bearer_auth(token),
                None => request,
            }
        });
    };
    let echo = r#"{"tool_name": "echo", "arguments": {"text": "hi"}}"#;
    tool(s, 200, files, Some(&token), echo);
    tool(s, 403, files, Some(&token), echo);
    tool(s, 404, "nowhere", Some(&token), echo);
    tool(s, 400, files, Some(&token), r#"{"arguments": {}}"#);
    tool(s, 401, files, None, echo);
}

/// A supervised agent's critical call through the gateway, its owner's approvals and
/// their refusals.
fn approvals(s: &mut Sweep, files: &str) {
    let dana = json!({"email": "dana@example.com"});
    let dana = text(&s.admin(201, "POST", "/api/v1/users", "", Some(dana))["id"]);
    let key = text(&s.admin(201, "POST", "/api/v1/users/{id}/api-keys", &dana, None)["key"]);
    let agent = json!({"name": "janitor", "scopes": ["s"], "grant_types": ["client_credentials"],
                       "agent_type": "supervised", "owner": "dana@example.com"});
    let registered = s.admin(201, "POST", "/api/v1/agents", "", Some(agent));
    let (client_id, secret) = (
        text(&registered["agent"]["client_id"]),
        text(&registered["client_secret"]),
    );
    let critical =
        json!({"policies": "@id(\"deletes\") @critical permit(principal, action, resource);"});
    s.admin(
        204,
        "PUT",
        "/api/v1/agents/{client_id}/policy-set",
        &client_id,
        Some(critical),
    );
    let me = Some((client_id.as_str(), secret.as_str()));
    let token = text(
        &s.oauth(
            200,
            "/oauth/token",
            me,
            &[("grant_type", "client_credentials")],
        )["access_token"],
    );
    let path = "/api/v1/proxy/{server_id}/tools";
    let call = |s: &mut Sweep, expected: u16, body: Value| {
        let token = token.clone();
        s.send(expected, "POST", path, files, move |r| {
            r.bearer_auth(token).json(&body)
        })
    };
    let delete = json!({"tool_name": "delete_records", "arguments": {"table": "t"}});
    let first = text(&call(s, 202, delete.clone())["approval_id"]);
    let second = text(&call(s, 202, delete.clone())["approval_id"]);
    let list = "/api/v1/approvals";
    s.user(
        200,
        "GET",
        &format!("{list}?status=pending"),
        "",
        &key,
        None,
    );
    s.admin(200, "GET", list, "", None);
    s.user(400, "GET", &format!("{list}?status=later"), "", &key, None);
    s.send(401, "GET", list, "", |r| r);
    let approve = "/api/v1/approvals/{id}/approve";
    let deny = "/api/v1/approvals/{id}/deny";
    s.admin(403, "POST", approve, &first, None);
    s.user(404, "POST", approve, "apr_missing", &key, None);
    s.send(401, "POST", approve, &first, |r| r);
    s.user(200, "POST", approve, &first, &key, None);
    s.user(409, "POST", approve, &first, &key, None);
    s.admin(403, "POST", deny, &second, None);
    s.user(404, "POST", deny, "apr_missing", &key, None);
    s.send(401, "POST", deny, &second, |r| r);
    s.user(200, "POST", deny, &second, &key, None);
    s.user(409, "POST", deny, &second, &key, None);
    let with = |id: &str| {
        let mut body = delete.clone();
        body["approval_id"] = json!(id);
        body
    };
    call(s, 200, with(&first));
    call(s, 409, with(&first));
    call(s, 403, with(&second));
}

/// A person's password, sign-in, consent and the authorization code and refresh grants.
fn interactive(s: &mut Sweep) {
    let erin = json!({"email": "erin@example.com"});
    let erin = text(&s.admin(201, "POST", "/api/v1/users", "", Some(erin))["id"]);
    let password = "a long enough passphrase";
    let pw = "/api/v1/users/{id}/password";
    s.admin(204, "PUT", pw, &erin, Some(json!({ "password": password })));
    s.admin(400, "PUT", pw, &erin, Some(json!({"password": "short"})));
    let nobody = "00000000-0000-4000-8000-000000000000";
    s.admin(
        404,
        "PUT",
        pw,
        nobody,
        Some(json!({ "password": password })),
    );
    s.send(401, "PUT", pw, &erin, |r| {
        r.json(&json!({ "password": password }))
    });
    let redirect = "http://127.0.0.1:9/cb";
    let agent = json!({"name": "notes", "scopes": ["files:read"], "redirect_uris": [redirect],
                       "grant_types": ["authorization_code", "refresh_token"]});
    let registered = s.admin(201, "POST", "/api/v1/agents", "", Some(agent));
    let (client_id, secret) = (
        text(&registered["agent"]["client_id"]),
        text(&registered["client_secret"]),
    );
    let verifier = "a".repeat(43);
    let challenge = {
        use base64::Engine as _;
        use sha2::Digest as _;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(&verifier))
    };
    let query = serde_urlencoded::to_string([
        ("response_type", "code"),
        ("client_id", client_id.as_str()),
        ("redirect_uri", redirect),
        ("state", "s1"),
        ("code_challenge", challenge.as_str()),
        ("code_challenge_method", "S256"),
    ])
    .unwrap_or_default();
    let authorize = format!("/oauth/authorize?{query}");
    let browser = reqwest::blocking::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap_or_else(|err| panic!("{err}"));
    let plain = std::mem::replace(&mut s.client, browser);
    s.send(303, "GET", &authorize, "", |r| r);
    s.send(
        400,
        "GET",
        "/oauth/authorize?client_id=agt_nobody",
        "",
        |r| r,
    );
    s.send(200, "GET", "/login?return_to=/account", "", |r| r);
    let email = ("email", "erin@example.com");
    s.send(401, "POST", "/login", "", |r| {
        r.form(&[email, ("password", "wrong")])
    });
    s.send(400, "POST", "/login", "", |r| {
        r.form(&[("nothing", "here")])
    });
    s.send(303, "POST", "/login", "", |r| {
        r.form(&[
            email,
            ("password", password),
            ("return_to", authorize.as_str()),
        ])
    });
    s.send(200, "GET", &authorize, "", |r| r);
    let page = s
        .client
        .get(s.server.url(&authorize))
        .send()
        .and_then(|r| r.text())
        .unwrap_or_default();
    let request = hidden_input(&page, "request");
    let answer = "/oauth/authorize";
    s.send(400, "POST", answer, "", |r| {
        r.form(&[("request", "x.y"), ("decision", "approve")])
    });
    s.send(303, "POST", answer, "", |r| {
        r.form(&[("request", request.as_str()), ("decision", "deny")])
    });
    let approved = s
        .client
        .post(s.server.url(answer))
        .form(&[
            ("request", request.as_str()),
            ("decision", "approve"),
            ("scope", "files:read"),
        ])
        .send()
        .unwrap_or_else(|err| panic!("{err}"));
    let back = approved
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let code = url::Url::parse(&back)
        .ok()
        .and_then(|u| {
            u.query_pairs()
                .find(|(n, _)| n == "code")
                .map(|(_, v)| v.into_owned())
        })
        .unwrap_or_default();
    let browser = std::mem::replace(&mut s.client, plain);
    s.send(401, "POST", answer, "", |r| {
        r.form(&[("request", request.as_str()), ("decision", "approve")])
    });
    let me = Some((client_id.as_str(), secret.as_str()));
    let redeem = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", redirect),
        ("code_verifier", verifier.as_str()),
    ];
    let issued = s.oauth(200, "/oauth/token", me, &redeem);
    s.oauth(400, "/oauth/token", me, &redeem);
    let refresh = text(&issued["refresh_token"]);
    let refresh = [
        ("grant_type", "refresh_token"),
        ("refresh_token", refresh.as_str()),
    ];
    s.oauth(400, "/oauth/token", me, &refresh);

    let plain = std::mem::replace(&mut s.client, browser);
    s.send(200, "GET", "/account", "", |r| r);
    let page = s
        .client
        .get(s.server.url("/account"))
        .send()
        .and_then(|r| r.text())
        .unwrap_or_default();
    let (token, delegation) = (
        hidden_input(&page, "form_token"),
        hidden_input(&page, "delegation_id"),
    );
    let revoke = "/account/revoke";
    s.send(403, "POST", revoke, "", |r| {
        r.form(&[
            ("form_token", "forged"),
            ("delegation_id", delegation.as_str()),
        ])
    });
    s.send(400, "POST", revoke, "", |r| r.form(&[("nothing", "here")]));
    s.send(303, "POST", revoke, "", |r| {
        r.form(&[
            ("form_token", token.as_str()),
            ("delegation_id", delegation.as_str()),
        ])
    });
    s.send(409, "POST", revoke, "", |r| {
        r.form(&[
            ("form_token", token.as_str()),
            ("delegation_id", delegation.as_str()),
        ])
    });
    s.send(400, "POST", "/logout", "", |r| {
        r.form(&[("nothing", "here")])
    });
    s.send(303, "POST", "/logout", "", |r| {
        r.form(&[("form_token", token.as_str())])
    });
    // Signed in again, to sign out everywhere from the page and by the API.
    s.send(303, "POST", "/login", "", |r| {
        r.form(&[email, ("password", password)])
    });
    let page = s
        .client
        .get(s.server.url("/account"))
        .send()
        .and_then(|r| r.text())
        .unwrap_or_default();
    let token = hidden_input(&page, "form_token");
    let everywhere = "/account/sessions/end";
    s.send(403, "POST", everywhere, "", |r| {
        r.form(&[("form_token", "forged")])
    });
    s.send(400, "POST", everywhere, "", |r| {
        r.form(&[("nothing", "here")])
    });
    s.send(303, "POST", everywhere, "", |r| {
        r.form(&[("form_token", token.as_str())])
    });
    let ended = "/api/v1/users/{id}/sessions/end";
    s.admin(204, "POST", ended, &erin, None);
    s.admin(
        404,
        "POST",
        ended,
        "00000000-0000-4000-8000-000000000000",
        None,
    );
    s.client = plain;
}

/// Tokens on a person's behalf, by form and by JSON, under the delegation in force from
/// `ada` to the agent, and their refusals.
fn on_behalf(s: &mut Sweep, ada: &str, client_id: &str, secret: &str) {
    let me = Some((client_id, secret));
    let cc = ("grant_type", "client_credentials");
    let user_id = (
        "actor_token_type",
        "urn:writ:params:oauth:token-type:user-id",
    );
    let token = s.oauth(
        200,
        "/oauth/token",
        me,
        &[cc, ("actor_token", ada), user_id],
    );
    s.oauth(
        200,
        "/oauth/introspect",
        me,
        &[("token", &text(&token["access_token"]))],
    );
    let nobody = "00000000-0000-4000-8000-000000000000";
    s.oauth(
        403,
        "/oauth/token",
        me,
        &[cc, ("actor_token", nobody), user_id],
    );
    s.oauth(
        400,
        "/oauth/token",
        me,
        &[cc, ("actor_token", "ada"), user_id],
    );
    s.oauth(400, "/oauth/token", me, &[cc, ("actor_token", ada)]);

    let exchange = (
        "grant_type",
        "urn:ietf:params:oauth:grant-type:token-exchange",
    );
    let user_subject = (
        "subject_token_type",
        "urn:writ:params:oauth:token-type:user-id",
    );
    let exchanged = s.oauth(
        200,
        "/oauth/token",
        me,
        &[exchange, ("subject_token", ada), user_subject],
    );
    let obo = text(&exchanged["access_token"]);
    s.oauth(200, "/oauth/introspect", me, &[("token", &obo)]);
    s.oauth(
        403,
        "/oauth/token",
        me,
        &[exchange, ("subject_token", nobody), user_subject],
    );
    s.oauth(
        400,
        "/oauth/token",
        me,
        &[
            exchange,
            ("subject_token", ada),
            ("subject_token_type", "urn:x"),
        ],
    );
    s.oauth(
        400,
        "/oauth/token",
        me,
        &[
            exchange,
            ("subject_token", "not-a-token"),
            (
                "subject_token_type",
                "urn:ietf:params:oauth:token-type:access_token",
            ),
        ],
    );

    let path = "/oauth/agent-token";
    let asked = json!({"client_id": client_id, "client_secret": secret,
                       "delegated_by_user_id": ada, "max_operations": 2});
    s.send(200, "POST", path, "", |r| r.json(&asked));
    let mut wrong = asked.clone();
    wrong["client_secret"] = json!("wrong");
    s.send(401, "POST", path, "", |r| r.json(&wrong));
    let mut unknown = asked.clone();
    unknown["delegated_by_user_id"] = json!(nobody);
    s.send(403, "POST", path, "", |r| r.json(&unknown));
    let missing = json!({"client_id": client_id, "client_secret": secret});
    s.send(400, "POST", path, "", |r| r.json(&missing));
    let mut oversize = asked;
    oversize["task_id"] = json!("x".repeat(20_000));
    s.send(413, "POST", path, "", |r| r.json(&oversize));
}

/// Runs the samples' bodies through the document's schemas with an independent validator.
const VALIDATE_BODIES_PY: &str = r##"
import json, sys, yaml
from openapi_schema_validator import OAS31Validator
document = yaml.safe_load(open(sys.argv[1]))
def escape(part): return part.replace("~", "~0").replace("/", "~1")
def at(pointer):
    node = document
    for part in pointer.lstrip("#/").split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node
failures = []
for sample in json.load(open(sys.argv[2])):
    pointer = "#/paths/%s/%s/responses/%s" % (escape(sample["path"]), sample["method"], sample["status"])
    pointer = at(pointer).get("$ref", pointer) + "/content/%s/schema" % escape(sample["content_type"])
    root = dict(document, **{"$ref": pointer})
    validator = OAS31Validator(root, format_checker=OAS31Validator.FORMAT_CHECKER)
    for error in validator.iter_errors(sample["body"]):
        failures.append("%s %s %s: %s at %s" % (sample["method"].upper(), sample["path"], sample["status"],
                                                error.message, list(error.absolute_path)))
print("\n".join(failures))
sys.exit(1 if failures else 0)
"##;

#[test]
fn every_endpoint_answers_as_the_document_says() {
    let dir = temp();
    let mcp = crate::gateway::McpServer::start("none", "");
    let server = Server::start(dir.path(), &[]);
    let admin = server.admin_token();
    let mut sweep = Sweep {
        server,
        client: http(),
        admin,
        document: document(),
        samples: Vec::new(),
        succeeded: BTreeSet::new(),
        failures: Vec::new(),
    };
    for path in [
        "/healthz",
        "/readyz",
        "/metrics",
        "/.well-known/oauth-authorization-server",
        "/.well-known/jwks.json",
        "/.well-known/oauth-protected-resource",
        "/.well-known/oauth-protected-resource/api/v1/proxy",
    ] {
        sweep.send(200, "GET", path, "", |r| r);
    }
    let ada = users(&mut sweep);
    admin_credentials(&mut sweep);
    let rotate = "/api/v1/keys/rotate";
    sweep.send(401, "POST", rotate, "", |r| r);
    sweep.admin(400, "POST", rotate, "", Some(json!({"alg": "HS256"})));
    sweep.admin(201, "POST", rotate, "", Some(json!({"alg": "ES256"})));
    registration(&mut sweep);
    let (client_id, secret) = agents(&mut sweep);
    api_keys_and_delegations(&mut sweep, &ada, &client_id);
    tokens_and_operations(&mut sweep, &client_id, &secret);
    let files = servers_and_sessions(&mut sweep, &client_id, &mcp.url);
    gateway(&mut sweep, &client_id, &secret, &files);
    approvals(&mut sweep, &files);
    interactive(&mut sweep);
    on_behalf(&mut sweep, &ada, &client_id, &secret);
    ledger(&mut sweep);
    audit(&mut sweep, &ada, &client_id);

    let Sweep {
        server,
        document,
        samples,
        succeeded,
        mut failures,
        ..
    } = sweep;
    assert_eq!(server.stop(), Some(0));
    for (method, path) in operations(&document) {
        if !succeeded.contains(&(method.clone(), path.clone())) {
            let method = method.to_uppercase();
            failures.push(format!(
                "{method} {path}: no call in this test got a 2xx; add one"
            ));
        }
    }
    if let Err(refused) = validate_bodies(samples) {
        failures.push(refused);
    }
    assert!(
        failures.is_empty(),
        "the server and schemas/openapi.yaml disagree:\n{}",
        failures.join("\n")
    );
}

/// Checks the sampled bodies against the document's schemas with openapi-schema-validator.
fn validate_bodies(samples: Vec<Value>) -> Result<(), String> {
    let dir = temp();
    let samples_path = dir.path().join("samples.json");
    std::fs::write(&samples_path, Value::from(samples).to_string())
        .unwrap_or_else(|err| panic!("{err}"));
    let output = Command::new("python3")
        .args(["-c", VALIDATE_BODIES_PY])
        .arg(document_path())
        .arg(&samples_path)
        .output()
        .unwrap_or_else(|err| {
            panic!("python3 (tools/test.sh installs openapi-spec-validator): {err}")
        });
    match output.status.success() {
        true => Ok(()),
        false => Err(format!(
            "bodies the document's schemas refuse:\n{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )),
    }
}

/// The key set once described Ed25519 keys only, so the JWKS served after a rotation to
/// ES256 or RS256 failed the document's own schema: each algorithm's key, published beside
/// its predecessors, must be one the document describes.
#[test]
fn the_jwks_after_rotations_to_es256_and_rs256_is_one_the_document_describes() {
    let dir = temp();
    let server = Server::start(dir.path(), &[]);
    let admin = server.admin_token();
    let mut sweep = Sweep {
        server,
        client: http(),
        admin,
        document: document(),
        samples: Vec::new(),
        succeeded: BTreeSet::new(),
        failures: Vec::new(),
    };
    let jwks = "/.well-known/jwks.json";
    let mut published = Vec::new();
    for alg in ["ES256", "RS256"] {
        let rotated = sweep.admin(
            201,
            "POST",
            "/api/v1/keys/rotate",
            "",
            Some(json!({"alg": alg})),
        );
        assert_eq!(rotated["alg"], alg, "{rotated}");
        let set = sweep.send(200, "GET", jwks, "", |r| r);
        published = set["keys"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|key| text(&key["alg"]))
            .collect();
    }
    assert_eq!(
        published,
        ["RS256", "ES256", "EdDSA"],
        "the keys published last"
    );
    let Sweep {
        server,
        samples,
        mut failures,
        ..
    } = sweep;
    assert_eq!(server.stop(), Some(0));
    if let Err(refused) = validate_bodies(samples) {
        failures.push(refused);
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Every (method, path) the document describes.
fn operations(document: &Value) -> Vec<(String, String)> {
    document["paths"]
        .as_object()
        .into_iter()
        .flatten()
        .flat_map(|(path, item)| {
            ["get", "put", "post", "delete", "patch"]
                .into_iter()
                .filter_map(move |method| {
                    item.get(method).map(|_| (method.to_owned(), path.clone()))
                })
        })
        .collect()
}
