//! The whole API fuzzed from its document: schemathesis (a property-based tester driven by
//! `schemas/openapi.yaml`, installed by tools/test.sh) against a real `writ serve`, with
//! an admin token, a person's API key, an agent's client credentials and an agent's
//! access token, each applied where an operation's `security` names it. Its examples,
//! coverage, fuzzing and stateful phases run with a fixed seed and a bounded number of
//! cases, and every answer must be no 5xx, of a status and media type the document lists
//! for the operation, with a body its schema accepts. Zero failures are allowed.
//!
//! What the cases make the server fetch stays on this machine: the server's outbound
//! HTTP (client metadata documents, MCP servers, OAuth providers, whatever URLs the cases
//! register) goes through a proxy that is a loopback socket closing every connection, and
//! schemathesis follows no redirect off the server.
//!
//! `WRIT_FUZZ_SEED` and `WRIT_FUZZ_EXAMPLES` change the seed and the cases per operation
//! for a longer local run (the suite's are fixed).

use std::collections::BTreeSet;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::{Value, json};

use crate::kit::*;

/// The suite's seed: a failure it finds is found again by the same run.
const SEED_DEFAULT: u64 = 20_261_204;
/// Test cases per operation and phase: about 4,200 cases in all, 60 to 95 s of CPU for the
/// server and schemathesis together in a debug build.
const EXAMPLES_PER_OPERATION_DEFAULT: u64 = 25;
/// The run is killed past this, so a hung server fails the test rather than the suite.
const RUN_SECONDS_MAX: u64 = 900;

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

/// A loopback socket that closes every connection it is handed, counting them: the proxy
/// the fuzzed server's outbound requests are sent to.
fn sink() -> (String, Arc<AtomicU64>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap_or_else(|err| panic!("{err}"));
    let address = listener.local_addr().unwrap_or_else(|err| panic!("{err}"));
    let refused = Arc::new(AtomicU64::new(0));
    let counted = Arc::clone(&refused);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            counted.fetch_add(1, Ordering::Relaxed);
            drop(stream);
        }
    });
    (format!("http://{address}"), refused)
}

/// The credentials and ids the run starts from, so that the stateful phase has objects to
/// follow and the authenticated operations get past their 401.
struct Seeded {
    admin: String,
    api_key: String,
    client_id: String,
    secret: String,
    access_token: String,
    /// Ids the cases put in `{id}` half the time: another person's, and Ada's delegation.
    ids: Vec<String>,
    server_id: String,
}

fn created(server: &Server, token: &str, path: &str, body: Value) -> Value {
    let (status, answer) = call(server, token, "POST", path, Some(body));
    assert_eq!(status, 201, "POST {path}: {answer}");
    answer
}

fn seed(server: &Server) -> Seeded {
    let admin = server.admin_token();
    let ada = created(
        server,
        &admin,
        "/api/v1/users",
        json!({"email": "ada@example.com", "name": "Ada"}),
    );
    let ada = ada["id"].as_str().unwrap_or_default().to_owned();
    let key = created(
        server,
        &admin,
        &format!("/api/v1/users/{ada}/api-keys"),
        json!({}),
    );
    let api_key = key["key"].as_str().unwrap_or_default().to_owned();
    let (client_id, secret) = register_agent(
        server,
        &admin,
        json!({"name": "fuzzed", "scopes": ["files:read", "files:write"],
               "grant_types": ["client_credentials", "urn:ietf:params:oauth:grant-type:token-exchange"],
               "owner": "ada@example.com"}),
    );
    let granted = http()
        .post(server.url(&format!("/api/v1/agents/{client_id}/delegations")))
        .header("x-api-key", &api_key)
        .json(&json!({"scopes": ["files:read"]}))
        .send()
        .unwrap_or_else(|err| panic!("{err}"));
    assert_eq!(granted.status().as_u16(), 201);
    let delegation: Value = granted.json().unwrap_or_else(|err| panic!("{err}"));
    let bob = created(
        server,
        &admin,
        "/api/v1/users",
        json!({"email": "bob@example.com"}),
    );
    let files = created(
        server,
        &admin,
        "/api/v1/servers",
        json!({"name": "files", "url": "https://mcp.example.com/mcp", "auth": "none"}),
    );
    let text = |value: &Value| value.as_str().unwrap_or_default().to_owned();
    let access_token =
        client_credentials_token(server, &client_id, &secret, &[("expires_in", "3600")]);
    Seeded {
        admin,
        api_key,
        client_id,
        secret,
        access_token,
        ids: vec![text(&bob["id"]), text(&delegation["id"])],
        server_id: text(&files["id"]),
    }
}

/// schemathesis's configuration: each security scheme of the document with its credential,
/// and the seeded ids, which the cases use for path parameters half the time so that they
/// reach more than the 404 of an unknown id.
fn config(seeded: &Seeded) -> String {
    let Seeded {
        admin,
        api_key,
        client_id,
        secret,
        access_token,
        ids,
        server_id,
    } = seeded;
    let ids = Value::from(ids.clone());
    format!(
        r#"
[dictionaries.agents]
values = ["{client_id}"]

[dictionaries.servers]
values = ["{server_id}"]

[dictionaries.ids]
values = {ids}

[parameters]
"path.client_id" = {{ dictionary = "agents", probability = 0.5 }}
"path.server_id" = {{ dictionary = "servers", probability = 0.5 }}
"path.id" = {{ dictionary = "ids", probability = 0.5 }}

[auth.openapi.adminToken]
bearer = "{admin}"

[auth.openapi.registrationToken]
bearer = "{admin}"

[auth.openapi.apiKey]
api_key = "{api_key}"

[auth.openapi.clientSecretBasic]
username = "{client_id}"
password = "{secret}"

[auth.openapi.accessToken]
bearer = "{access_token}"
"#
    )
}

/// Runs schemathesis in `dir` against `base`; its exit status and everything it printed.
fn schemathesis(dir: &Path, base: &str, config: &Path) -> (bool, String) {
    let seed = env_or("WRIT_FUZZ_SEED", SEED_DEFAULT).to_string();
    let examples = env_or("WRIT_FUZZ_EXAMPLES", EXAMPLES_PER_OPERATION_DEFAULT).to_string();
    let document = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("schemas/openapi.yaml");
    let output = Command::new("timeout")
        .arg(RUN_SECONDS_MAX.to_string())
        .args(["python3", "-m", "schemathesis.cli"])
        .arg("--config-file")
        .arg(config)
        .arg("run")
        .arg(&document)
        .args(["--url", base])
        .args(["--phases", "examples,coverage,fuzzing,stateful"])
        .args([
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance",
        ])
        .args(["--seed", &seed, "--max-examples", &examples])
        // One worker: the order of cases is the seed's alone, and hypothesis's source
        // introspection is not safe across threads on every Python (an "AST constructor
        // recursion depth mismatch" error in a two-worker run).
        .args(["--workers", "1", "--max-redirects", "0", "--request-timeout", "30"])
        .args(["--generation-database", "none", "--no-color"])
        .args(["--report", "junit", "--report-junit-path"])
        .arg(dir.join("junit.xml"))
        .current_dir(dir)
        // Nothing schemathesis sends leaves loopback, even if a redirect were followed.
        .env("HTTP_PROXY", "http://127.0.0.1:9")
        .env("HTTPS_PROXY", "http://127.0.0.1:9")
        .env("NO_PROXY", "127.0.0.1")
        .output()
        .unwrap_or_else(|err| panic!("python3 -m schemathesis.cli (tools/test.sh installs it): {err}"));
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), printed)
}

/// What schemathesis's JUnit report says: the names of its test cases (`GET /healthz`, one
/// per operation, and one for the stateful phase), and how many failed or errored.
fn junit(report: &Path) -> (BTreeSet<String>, u64, u64) {
    let junit = std::fs::read_to_string(report).unwrap_or_default();
    let suites = junit
        .split("<testsuites")
        .nth(1)
        .and_then(|rest| rest.split('>').next())
        .unwrap_or_default();
    let attribute = |name: &str| {
        suites
            .split(&format!(" {name}=\""))
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    };
    let names = junit
        .split("<testcase name=\"")
        .skip(1)
        .filter_map(|rest| rest.split('"').next())
        .map(str::to_owned)
        .collect();
    (names, attribute("failures"), attribute("errors"))
}

/// The test cases schemathesis's summary says it generated (`Test cases: N generated`).
fn cases_generated(printed: &str) -> u64 {
    printed
        .split(" generated,")
        .next()
        .and_then(|before| before.split_whitespace().last())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// Every operation `schemas/openapi.yaml` describes, as `METHOD /path`.
fn documented_operations() -> BTreeSet<String> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("schemas/openapi.yaml");
    let text = std::fs::read_to_string(path).unwrap_or_else(|err| panic!("{err}"));
    let document: Value = serde_saphyr::from_str(&text).unwrap_or_else(|err| panic!("{err}"));
    let methods = ["get", "put", "post", "delete", "patch"];
    let mut operations = BTreeSet::new();
    for (path, item) in document["paths"].as_object().into_iter().flatten() {
        for method in methods.iter().filter(|m| item.get(**m).is_some()) {
            operations.insert(format!("{} {path}", method.to_uppercase()));
        }
    }
    operations
}

#[test]
fn schemathesis_finds_no_failure_in_the_whole_api() {
    let dir = temp();
    let (proxy, outbound) = sink();
    let env = [
        ("HTTP_PROXY", proxy.as_str()),
        ("HTTPS_PROXY", proxy.as_str()),
        ("ALL_PROXY", proxy.as_str()),
        ("http_proxy", proxy.as_str()),
        ("https_proxy", proxy.as_str()),
        ("all_proxy", proxy.as_str()),
        ("NO_PROXY", ""),
        ("no_proxy", ""),
    ];
    let server = Server::start_with(&dir.path().join("data"), &[], &env);
    let seeded = seed(&server);
    let config_path = dir.path().join("schemathesis.toml");
    std::fs::write(&config_path, config(&seeded)).unwrap_or_else(|err| panic!("{err}"));
    let (passed, printed) = schemathesis(dir.path(), &server.url(""), &config_path);
    println!("{printed}");
    let (tested, failed, errored) = junit(&dir.path().join("junit.xml"));
    let generated = cases_generated(&printed);
    println!(
        "schemathesis: {} operations, {generated} test cases, {failed} failed, {errored} errors; \
         {} outbound connections refused",
        tested.len(),
        outbound.load(Ordering::Relaxed)
    );
    assert!(
        passed && failed == 0 && errored == 0,
        "schemathesis found failures (its report is above)"
    );
    let untested: Vec<_> = documented_operations()
        .difference(&tested)
        .cloned()
        .collect();
    assert!(
        untested.is_empty(),
        "schemathesis tested none of {untested:?}"
    );
    assert!(
        generated > 10 * tested.len() as u64,
        "schemathesis generated only {generated} test cases"
    );
    assert_eq!(server.stop(), Some(0), "the server survived the run");
}

/// The first fuzzing run found actix's plain-text 400 "Query deserialize error" for a
/// query parameter an endpoint does not take, or one given twice: every endpoint answers
/// those with the JSON error the document lists.
#[test]
fn an_unknown_or_repeated_query_parameter_is_a_json_400_not_plain_text() {
    let dir = temp();
    let server = Server::start(dir.path(), &[]);
    let seeded = seed(&server);
    let hint = "give each parameter the endpoint takes at most once, and no other";
    let agent = &seeded.client_id;
    let cases = [
        (
            "/api/v1/approvals?status=pending&status=denied".to_owned(),
            format!("query: duplicate field `status`; {hint}"),
        ),
        (
            "/api/v1/approvals?colour=red".to_owned(),
            format!("query: unknown field `colour`, expected `status`; {hint}"),
        ),
        (
            "/api/v1/connections?user_id=a&user_id=b".to_owned(),
            format!("query: duplicate field `user_id`; {hint}"),
        ),
        (
            format!("/api/v1/agents/{agent}/session-grants?server_id=a&server_id=b"),
            format!("query: duplicate field `server_id`; {hint}"),
        ),
    ];
    for (path, detail) in cases {
        let response = http()
            .get(server.url(&path))
            .header("x-api-key", &seeded.api_key)
            .send()
            .unwrap_or_else(|err| panic!("{err}"));
        assert_eq!(response.status().as_u16(), 400, "{path}");
        let media_type = response.headers().get("content-type").cloned();
        assert_eq!(
            media_type.as_ref().and_then(|v| v.to_str().ok()),
            Some("application/json"),
            "{path}"
        );
        let body: Value = response.json().unwrap_or_else(|err| panic!("{err}"));
        assert_eq!(
            body,
            json!({"error": "invalid_request", "detail": detail}),
            "{path}"
        );
    }
    assert_eq!(server.stop(), Some(0));
}

/// The first fuzzing run found an undocumented plain-text 415 for `POST /login`,
/// `/logout` and `/account/revoke` without a form body (and a plain-text 400 for a form
/// missing a field): a person's browser posts these, so the answer is a page saying what
/// was wrong, with the status the document lists.
#[test]
fn a_page_posted_without_its_form_gets_a_page_saying_so_not_plain_text() {
    let dir = temp();
    let server = Server::start(dir.path(), &[]);
    let client = http();
    let not_a_form =
        "The page's form is sent as application/x-www-form-urlencoded; this request's body is not.";
    let cases: [(&str, Option<&str>, u16, &str); 6] = [
        ("/login", None, 415, not_a_form),
        ("/logout", None, 415, not_a_form),
        ("/account/revoke", None, 415, not_a_form),
        (
            "/login",
            Some("email=ada%40example.com"),
            400,
            "The form is not the page's: missing field `password`.",
        ),
        (
            "/account/revoke",
            Some("form_token=x"),
            400,
            "The form is not the page's: missing field `delegation_id`.",
        ),
        (
            "/logout",
            Some("form_token=a&form_token=b"),
            400,
            "The form is not the page's: duplicate field `form_token`.",
        ),
    ];
    for (path, form, status, sentence) in cases {
        let request = client.post(server.url(path));
        let request = match form {
            Some(form) => request
                .header("content-type", "application/x-www-form-urlencoded")
                .body(form.to_owned()),
            None => request,
        };
        let response = request.send().unwrap_or_else(|err| panic!("{err}"));
        assert_eq!(response.status().as_u16(), status, "POST {path} {form:?}");
        let media_type = response.headers().get("content-type").cloned();
        assert_eq!(
            media_type.as_ref().and_then(|v| v.to_str().ok()),
            Some("text/html; charset=utf-8"),
            "POST {path}"
        );
        let page = response.text().unwrap_or_default();
        assert!(page.contains(sentence), "POST {path} {form:?}: {page}");
    }
    let page = client
        .get(server.url("/login?return_to=/account&return_to=/account"))
        .send()
        .unwrap_or_else(|err| panic!("{err}"));
    assert_eq!(page.status().as_u16(), 400);
    let page = page.text().unwrap_or_default();
    assert!(
        page.contains("The link to this page is not one writ made: duplicate field `return_to`."),
        "{page}"
    );
    assert_eq!(server.stop(), Some(0));
}
