//! Dynamic client registration (RFC 7591) over real HTTP: open, behind an initial access
//! token, and off; the metadata it refuses; and the gateway's RFC 9728 metadata, which
//! its 401s point at.

use serde_json::{Value, json};

use crate::kit::*;

/// A registration token as an operator would make one (`openssl rand -base64 32`).
const REGISTRATION_TOKEN: &str = "reg-0123456789abcdef0123456789abcdef";

/// `POST /oauth/register` with `body`, the bearer `token` if given: the status, the
/// `WWW-Authenticate` header and the JSON answer.
fn register(server: &Server, token: Option<&str>, body: &Value) -> (u16, String, Value) {
    let request = http().post(server.url("/oauth/register")).json(body);
    let request = match token {
        Some(token) => request.bearer_auth(token),
        None => request,
    };
    let response = request.send().unwrap_or_else(|err| panic!("{err}"));
    let status = response.status().as_u16();
    let challenge = response
        .headers()
        .get("www-authenticate")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    (status, challenge, response.json().unwrap_or(Value::Null))
}

fn get(server: &Server, path: &str) -> Value {
    http()
        .get(server.url(path))
        .send()
        .and_then(|r| r.json())
        .unwrap_or_else(|err| panic!("{err}"))
}

#[test]
fn open_registration_gives_a_client_that_gets_a_token_and_awaits_review() {
    let dir = temp();
    let server = Server::start(dir.path(), &["--registration", "open"]);
    let admin = server.admin_token();
    let metadata = get(&server, "/.well-known/oauth-authorization-server");
    assert_eq!(
        metadata["registration_endpoint"].as_str(),
        Some(server.url("/oauth/register").as_str()),
        "{metadata}"
    );

    let asked = json!({
        "client_name": "report bot",
        "grant_types": ["client_credentials"],
        "scope": "files:read files:write",
        "client_uri": "https://bot.example",
        "software_id": "ignored",
    });
    let (status, _, client) = register(&server, None, &asked);
    assert_eq!(status, 201, "{client}");
    let client_id = client["client_id"].as_str().unwrap_or_default();
    let secret = client["client_secret"].as_str().unwrap_or_default();
    assert!(
        client_id.starts_with("agt_") && secret.starts_with("wrt_cs_"),
        "{client}"
    );
    assert_eq!(client["client_secret_expires_at"], json!(0));
    assert!(
        client["client_id_issued_at"]
            .as_i64()
            .is_some_and(|t| t > 0)
    );
    assert_eq!(client["scope"], json!("files:read files:write"));
    assert_eq!(
        client["token_endpoint_auth_method"],
        json!("client_secret_basic")
    );
    assert_eq!(client["response_types"], json!([]));
    assert!(
        client.get("client_uri").is_none(),
        "writ does not keep it: {client}"
    );

    let token: Value = http()
        .post(server.url("/oauth/token"))
        .basic_auth(client_id, Some(secret))
        .form(&[
            ("grant_type", "client_credentials"),
            ("scope", "files:read"),
        ])
        .send()
        .and_then(|r| r.json())
        .unwrap_or_else(|err| panic!("{err}"));
    assert!(token["access_token"].is_string(), "{token}");

    let (status, agents) = call(&server, &admin, "GET", "/api/v1/agents", None);
    assert_eq!(status, 200);
    let agent = agents
        .as_array()
        .into_iter()
        .flatten()
        .find(|a| a["client_id"] == json!(client_id))
        .unwrap_or_else(|| panic!("{client_id} is not in the inventory: {agents}"));
    assert_eq!(
        (&agent["name"], &agent["needs_review"], &agent["owner"]),
        (&json!("report bot"), &json!(true), &Value::Null),
        "{agent}"
    );

    // The ledger says the client registered itself.
    assert_eq!(server.stop(), Some(0));
    let export = dir.path().join("export.jsonl");
    export_to(dir.path(), &export);
    let records = std::fs::read_to_string(&export).unwrap_or_default();
    let registered = records
        .lines()
        .find(|line| line.contains("\"type\":\"AgentRegistered\"") && line.contains(client_id))
        .unwrap_or_else(|| panic!("no AgentRegistered for {client_id}"));
    assert!(registered.contains("\"kind\":\"agent\""), "{registered}");
}

#[test]
fn a_public_client_gets_no_secret_and_no_client_credentials_token() {
    let dir = temp();
    let server = Server::start(dir.path(), &["--registration", "open"]);
    let asked = json!({
        "redirect_uris": ["http://127.0.0.1:7000/callback", "https://app.example/cb"],
        "token_endpoint_auth_method": "none",
    });
    let (status, _, client) = register(&server, None, &asked);
    assert_eq!(status, 201, "{client}");
    assert!(client.get("client_secret").is_none(), "{client}");
    assert!(client.get("client_secret_expires_at").is_none(), "{client}");
    assert_eq!(
        (&client["grant_types"], &client["response_types"]),
        (&json!(["authorization_code"]), &json!(["code"]))
    );
    let client_id = client["client_id"].as_str().unwrap_or_default();
    let refused = http()
        .post(server.url("/oauth/token"))
        .basic_auth(client_id, Some(""))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .unwrap_or_else(|err| panic!("{err}"));
    assert_eq!(refused.status().as_u16(), 401);
}

#[test]
fn token_registration_refuses_without_or_with_a_wrong_token_and_takes_the_right_one() {
    let dir = temp();
    let server = Server::start(dir.path(), &["--registration-token", REGISTRATION_TOKEN]);
    let admin = server.admin_token();
    let asked = json!({"grant_types": ["client_credentials"], "scope": "s"});
    for token in [
        None,
        Some("wrt_admin_guessed"),
        Some("reg-0123456789abcdef0123456789abcdeX"),
    ] {
        let (status, challenge, body) = register(&server, token, &asked);
        assert_eq!(
            (status, challenge.as_str(), body["error"].as_str()),
            (
                401,
                "Bearer realm=\"writ\", error=\"invalid_token\"",
                Some("invalid_token")
            ),
            "{token:?}: {body}"
        );
    }
    for token in [REGISTRATION_TOKEN, admin.as_str()] {
        let (status, _, body) = register(&server, Some(token), &asked);
        assert_eq!(status, 201, "{body}");
    }
    let (status, agents) = call(&server, &admin, "GET", "/api/v1/agents", None);
    assert_eq!(
        (status, agents.as_array().map(Vec::len)),
        (200, Some(2)),
        "nothing was registered by the refused requests: {agents}"
    );
}

#[test]
fn registration_token_is_refused_at_start_unless_registration_takes_tokens() {
    let dir = temp();
    let shown = dir.path().display().to_string();
    let args = ["serve", "--data-dir", &shown, "--listen", "127.0.0.1:0"];
    let mut open = args.to_vec();
    open.extend([
        "--registration",
        "open",
        "--registration-token",
        REGISTRATION_TOKEN,
    ]);
    let run = writ(&open);
    assert_ne!(run.code, Some(0));
    assert!(
        run.stderr.contains("only with --registration token"),
        "{}",
        run.stderr
    );
    let mut short = args.to_vec();
    short.extend(["--registration-token", "short"]);
    let run = writ(&short);
    assert_ne!(run.code, Some(0));
    assert!(
        run.stderr.contains("at least 32 characters"),
        "{}",
        run.stderr
    );
}

#[test]
fn registrations_beyond_the_server_s_rate_are_429_with_retry_after() {
    let dir = temp();
    let flags = ["--registration", "open", "--registrations-per-minute", "2"];
    let server = Server::start(dir.path(), &flags);
    let asked = json!({"grant_types": ["client_credentials"]});
    for _ in 0..2 {
        let (status, _, body) = register(&server, None, &asked);
        assert_eq!(status, 201, "{body}");
    }
    // Refused metadata spends nothing.
    let (status, _, _) = register(&server, None, &json!({"grant_types": ["password"]}));
    assert_eq!(status, 400);
    let response = http()
        .post(server.url("/oauth/register"))
        .json(&asked)
        .send()
        .unwrap_or_else(|err| panic!("{err}"));
    let retry_after = response
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let status = response.status().as_u16();
    let body: Value = response.json().unwrap_or(Value::Null);
    assert_eq!(
        (status, body["error"].as_str()),
        (429, Some("rate_limited")),
        "{body}"
    );
    // 2 a minute refill one every 30 s.
    assert!(
        retry_after.is_some_and(|s| (1..=30).contains(&s)),
        "{retry_after:?}"
    );
}

#[test]
fn registration_off_refuses_and_the_metadata_names_no_endpoint() {
    let dir = temp();
    let server = Server::start(dir.path(), &["--registration", "off"]);
    let admin = server.admin_token();
    let asked = json!({"grant_types": ["client_credentials"]});
    let (status, _, body) = register(&server, Some(&admin), &asked);
    assert_eq!(
        (status, body["error"].as_str()),
        (403, Some("access_denied")),
        "{body}"
    );
    let metadata = get(&server, "/.well-known/oauth-authorization-server");
    assert!(
        metadata.get("registration_endpoint").is_none(),
        "{metadata}"
    );
}

#[test]
fn bad_metadata_is_refused_with_the_rfc_7591_code() {
    let dir = temp();
    let server = Server::start(dir.path(), &["--registration", "open"]);
    let admin = server.admin_token();
    let cc = json!(["client_credentials"]);
    let cases = [
        (
            json!({"redirect_uris": ["http://app.example/cb"]}),
            "invalid_redirect_uri",
        ),
        (
            json!({"redirect_uris": ["https://app.example/cb#top"]}),
            "invalid_redirect_uri",
        ),
        (
            json!({"redirect_uris": ["app.example/cb"]}),
            "invalid_redirect_uri",
        ),
        (
            json!({"grant_types": ["authorization_code"]}),
            "invalid_redirect_uri",
        ),
        (
            json!({"redirect_uris": ["https://app.example/cb"], "response_types": ["token"]}),
            "invalid_client_metadata",
        ),
        (
            json!({"grant_types": ["password"]}),
            "invalid_client_metadata",
        ),
        (
            json!({"grant_types": cc, "token_endpoint_auth_method": "private_key_jwt", "jwks": {"keys": []}}),
            "invalid_client_metadata",
        ),
        (
            json!({"grant_types": cc, "token_endpoint_auth_method": "client_secret_jwt"}),
            "invalid_client_metadata",
        ),
        (
            json!({"grant_types": cc, "token_endpoint_auth_method": "none"}),
            "invalid_client_metadata",
        ),
        (
            json!({"grant_types": cc, "scope": "a\"b"}),
            "invalid_client_metadata",
        ),
        (
            json!({"grant_types": "client_credentials"}),
            "invalid_client_metadata",
        ),
    ];
    for (asked, code) in cases {
        let (status, _, body) = register(&server, None, &asked);
        assert_eq!(
            (status, body["error"].as_str()),
            (400, Some(code)),
            "{asked}: {body}"
        );
        assert!(body["error_description"].is_string(), "{body}");
    }
    let private_key_jwt =
        json!({"grant_types": cc, "token_endpoint_auth_method": "private_key_jwt"});
    let (_, _, body) = register(&server, None, &private_key_jwt);
    assert!(
        body["error_description"]
            .as_str()
            .is_some_and(|d| d.contains("registers its public keys")),
        "{body}"
    );
    let (status, agents) = call(&server, &admin, "GET", "/api/v1/agents", None);
    assert_eq!(
        (status, agents),
        (200, json!([])),
        "no refused client was registered"
    );
}

#[test]
fn the_gateway_s_401_points_at_its_protected_resource_metadata() {
    let dir = temp();
    let server = Server::start(dir.path(), &[]);
    let issuer = server.base.clone();
    let expected = json!({
        "resource": format!("{issuer}/api/v1/proxy"),
        "authorization_servers": [issuer],
        "bearer_methods_supported": ["header"],
        "resource_name": "writ MCP gateway",
    });
    for path in [
        "/.well-known/oauth-protected-resource",
        "/.well-known/oauth-protected-resource/api/v1/proxy",
    ] {
        assert_eq!(get(&server, path), expected, "{path}");
    }

    let refused = http()
        .post(server.url("/api/v1/proxy/files/tools"))
        .json(&json!({"tool_name": "echo"}))
        .send()
        .unwrap_or_else(|err| panic!("{err}"));
    assert_eq!(refused.status().as_u16(), 401);
    let challenge = refused
        .headers()
        .get("www-authenticate")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let url = format!("{issuer}/.well-known/oauth-protected-resource/api/v1/proxy");
    assert_eq!(
        challenge,
        format!("Bearer realm=\"writ\", resource_metadata=\"{url}\"")
    );
    let followed: Value = http()
        .get(&url)
        .send()
        .and_then(|r| r.json())
        .unwrap_or_else(|err| panic!("{err}"));
    assert_eq!(followed, expected);

    // Other endpoints' challenges are their own.
    let management = http()
        .get(server.url("/api/v1/agents"))
        .send()
        .unwrap_or_else(|err| panic!("{err}"));
    assert_eq!(
        management
            .headers()
            .get("www-authenticate")
            .and_then(|v| v.to_str().ok()),
        Some("Bearer realm=\"writ\"")
    );
}

#[test]
fn a_client_registers_its_public_keys_and_pays_for_each_token_with_one_assertion() {
    let dir = temp();
    let issuer = "https://writ.example";
    let server = Server::start(dir.path(), &["--registration", "open", "--issuer", issuer]);
    let key = crate::client_assertion::ed25519_key("ed-1");
    let body = json!({"client_name": "keyed bot", "grant_types": ["client_credentials"],
                      "token_endpoint_auth_method": "private_key_jwt", "scope": "files:read",
                      "jwks": {"keys": [key.jwk]}});
    let (status, _, client) = register(&server, None, &body);
    assert_eq!(status, 201, "{client}");
    assert!(client.get("client_secret").is_none(), "no secret: {client}");
    assert_eq!(client["jwks"]["keys"][0]["kid"], "ed-1", "{client}");
    let client_id = client["client_id"].as_str().unwrap_or_default();

    let assertion =
        crate::client_assertion::sign_assertion(&key, client_id, &format!("{issuer}/oauth/token"));
    let token = |assertion: &str| {
        http()
            .post(server.url("/oauth/token"))
            .form(&[
                ("grant_type", "client_credentials"),
                (
                    "client_assertion_type",
                    "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                ),
                ("client_assertion", assertion),
            ])
            .send()
            .map(|r| r.status().as_u16())
            .unwrap_or_default()
    };
    assert_eq!(token(&assertion), 200);
    assert_eq!(token(&assertion), 401, "the same assertion pays once");

    for bad in [
        json!({"grant_types": ["client_credentials"], "token_endpoint_auth_method": "private_key_jwt"}),
        json!({"grant_types": ["client_credentials"], "token_endpoint_auth_method": "private_key_jwt",
               "jwks": {"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}}),
        json!({"grant_types": ["client_credentials"], "jwks": {"keys": [key.jwk]}}),
    ] {
        let (status, _, refused) = register(&server, None, &bad);
        assert_eq!(
            (status, refused["error"].as_str()),
            (400, Some("invalid_client_metadata")),
            "{bad}: {refused}"
        );
    }
}
