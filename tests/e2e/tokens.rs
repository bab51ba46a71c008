//! `POST /oauth/token` with client_credentials, over real HTTP: tokens verified against
//! the JWKS with an independent JOSE library (PyJWT), recorded in the ledger by digest,
//! and every refusal in RFC 6749's words.

use std::process::Command;

use serde_json::{Value, json};

use crate::kit::*;

struct Setup {
    server: Server,
    client_id: String,
    secret: String,
    admin: String,
    _dir: tempfile::TempDir,
}

fn setup(agent: Value) -> Setup {
    let dir = temp();
    let server = Server::start(dir.path(), &[]);
    let admin = server.admin_token();
    let (client_id, secret) = register_agent(&server, &admin, agent);
    Setup {
        server,
        client_id,
        secret,
        admin,
        _dir: dir,
    }
}

fn agent() -> Value {
    json!({"name": "m2m", "scopes": ["files:read", "files:write"], "grant_types": ["client_credentials"]})
}

fn token(
    setup: &Setup,
    basic: Option<(&str, &str)>,
    form: &[(&str, &str)],
) -> (u16, reqwest::header::HeaderMap, Value) {
    let mut request = http().post(setup.server.url("/oauth/token")).form(form);
    if let Some((id, secret)) = basic {
        request = request.basic_auth(id, Some(secret));
    }
    let response = request.send().unwrap_or_else(|err| panic!("{err}"));
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    (status, headers, response.json().unwrap_or(Value::Null))
}

const VERIFY_PY: &str = r#"
import json, sys, jwt
jwks, token, audience, issuer = json.load(open(sys.argv[1])), sys.argv[2], sys.argv[3], sys.argv[4]
header = jwt.get_unverified_header(token)
assert header["typ"] == "at+jwt", header
key = next(k for k in jwks["keys"] if k["kid"] == header["kid"])
# The key decides the algorithm, never the token's header (RFC 8725 3.1).
assert header["alg"] == key["alg"], (header, key)
print(json.dumps(jwt.decode(token, key=jwt.PyJWK(key).key, algorithms=[key["alg"]], audience=audience, issuer=issuer)))
"#;

/// Verifies `token` with PyJWT against the server's JWKS, with the algorithm its key
/// names; the claims, or why not.
pub fn verify_with_pyjwt(server: &Server, token: &str) -> Result<Value, String> {
    verify_with_pyjwt_for(server, token, &server.base)
}

/// `verify_with_pyjwt` for a server started with `--issuer issuer` (the default audience
/// too), whose tokens outlive its port.
pub fn verify_with_pyjwt_for(server: &Server, token: &str, issuer: &str) -> Result<Value, String> {
    let dir = temp();
    let jwks = http()
        .get(server.url("/.well-known/jwks.json"))
        .send()
        .and_then(|r| r.text())
        .unwrap_or_default();
    let (jwks_path, script) = (dir.path().join("jwks.json"), dir.path().join("verify.py"));
    std::fs::write(&jwks_path, jwks).unwrap_or_else(|err| panic!("{err}"));
    std::fs::write(&script, VERIFY_PY).unwrap_or_else(|err| panic!("{err}"));
    let output = Command::new("python3")
        .arg(&script)
        .arg(&jwks_path)
        .args([token, issuer, issuer])
        .output()
        .unwrap_or_else(|err| panic!("python3 (tools/test.sh installs PyJWT): {err}"));
    if output.status.success() {
        serde_json::from_slice(&output.stdout).map_err(|err| err.to_string())
    } else {
        Err(String::from_utf8_lossy(&output.stderr).into_owned())
    }
}

#[test]
fn client_credentials_issues_a_token_an_independent_jose_library_verifies() {
    let s = setup(agent());
    let (status, headers, body) = token(
        &s,
        Some((&s.client_id, &s.secret)),
        &[
            ("grant_type", "client_credentials"),
            ("scope", "files:read"),
        ],
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        headers.get("cache-control").and_then(|v| v.to_str().ok()),
        Some("no-store")
    );
    assert_eq!(
        (
            body["token_type"].as_str(),
            body["expires_in"].as_u64(),
            body["scope"].as_str()
        ),
        (Some("Bearer"), Some(900), Some("files:read"))
    );
    let jwt = body["access_token"].as_str().unwrap_or_default().to_owned();
    let claims = verify_with_pyjwt(&s.server, &jwt)
        .unwrap_or_else(|why| panic!("PyJWT refused the token: {why}"));
    assert_eq!(
        (claims["sub"].as_str(), claims["client_id"].as_str()),
        (Some(s.client_id.as_str()), Some(s.client_id.as_str()))
    );
    assert_eq!(
        claims["exp"].as_i64().unwrap_or(0) - claims["iat"].as_i64().unwrap_or(0),
        900
    );
    assert_eq!(claims["scope"], "files:read");

    let mut tampered = jwt.clone();
    let middle = tampered.len() / 2;
    tampered.replace_range(
        middle..middle + 1,
        if &jwt[middle..middle + 1] == "A" {
            "B"
        } else {
            "A"
        },
    );
    assert!(
        verify_with_pyjwt(&s.server, &tampered).is_err(),
        "a changed token must not verify"
    );

    // The ledger holds the issuance, found by the digest of the token's bytes.
    let Setup {
        server, _dir: dir, ..
    } = s;
    assert_eq!(server.stop(), Some(0));
    let export = dir.path().join("export.jsonl");
    export_to(dir.path(), &export);
    let text = std::fs::read_to_string(&export).unwrap_or_default();
    let digest = base64::Engine::encode(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD,
        blake3::hash(jwt.as_bytes()).as_bytes(),
    );
    assert!(
        text.contains("\"type\":\"TokenIssued\"") && text.contains(&digest),
        "TokenIssued with the token's digest"
    );
    assert!(!text.contains(&jwt), "the token itself is never stored");
}

#[test]
fn client_secret_post_extensions_and_caps() {
    let s = setup(
        json!({"name": "p", "scopes": ["a"], "grant_types": ["client_credentials"], "token_endpoint_auth_method": "client_secret_post"}),
    );
    let form = [
        ("grant_type", "client_credentials"),
        ("client_id", s.client_id.as_str()),
        ("client_secret", s.secret.as_str()),
        ("agent_type", "ephemeral"),
        ("task_id", "task-42"),
        ("intent_description", "summarise the report"),
        ("expires_in", "999999"),
    ];
    let (status, _, body) = token(&s, None, &form);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["expires_in"], 3600, "capped at the ceiling: {body}");
    assert_eq!(
        (
            body["agent_type"].as_str(),
            body["task_id"].as_str(),
            body["max_operations"].as_u64(),
            body["expires_on_completion"].as_bool()
        ),
        (Some("ephemeral"), Some("task-42"), Some(10), Some(true)),
        "{body}"
    );
    assert_eq!(body["scope"], "a", "no scope asked: all the agent's scopes");
    let (status, _, body) = token(
        &s,
        Some((&s.client_id, &s.secret)),
        &[("grant_type", "client_credentials")],
    );
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_client")),
        "registered for post, not basic: {body}"
    );
}

#[test]
fn refusals_are_rfc_6749_errors() {
    let s = setup(agent());
    let cc = ("grant_type", "client_credentials");
    let ok = Some((s.client_id.as_str(), s.secret.as_str()));
    for (basic, form, status, error, says) in [
        (
            Some((s.client_id.as_str(), "wrong")),
            vec![cc],
            401,
            "invalid_client",
            "unknown client or wrong secret",
        ),
        (
            Some(("agt_nobody", "x")),
            vec![cc],
            401,
            "invalid_client",
            "unknown client",
        ),
        (
            None,
            vec![cc],
            401,
            "invalid_client",
            "authenticate the client",
        ),
        (ok, vec![], 400, "invalid_request", "grant_type is missing"),
        (
            ok,
            vec![("grant_type", "password")],
            400,
            "unsupported_grant_type",
            "`password`",
        ),
        (
            ok,
            vec![cc, ("scope", "files:delete")],
            400,
            "invalid_scope",
            "scope `files:delete` is not granted",
        ),
        (
            ok,
            vec![cc, ("expires_in", "0")],
            400,
            "invalid_request",
            "expires_in must be between",
        ),
        (
            ok,
            vec![cc, ("expires_in", "99999999999999999999")],
            400,
            "invalid_request",
            "is not a whole number",
        ),
        (
            ok,
            vec![cc, ("agent_type", "rogue")],
            400,
            "invalid_request",
            "agent_type `rogue`",
        ),
        (
            ok,
            vec![cc, ("max_operations", "-1")],
            400,
            "invalid_request",
            "max_operations `-1`",
        ),
        (
            ok,
            vec![cc, ("expires_on_completion", "yes")],
            400,
            "invalid_request",
            "expires_on_completion `yes`",
        ),
        (
            ok,
            vec![cc, cc],
            400,
            "invalid_request",
            "`grant_type` is given more than once",
        ),
    ] {
        let (got, headers, body) = token(&s, basic, &form);
        assert_eq!(
            (got, body["error"].as_str()),
            (status, Some(error)),
            "{form:?} -> {body}"
        );
        assert!(
            body["error_description"]
                .as_str()
                .is_some_and(|d| d.contains(says)),
            "{form:?} -> {body}"
        );
        if status == 401 {
            assert!(
                headers.get("www-authenticate").is_some(),
                "401 carries WWW-Authenticate"
            );
        }
    }
    let raw = http()
        .post(s.server.url("/oauth/token"))
        .basic_auth(&s.client_id, Some(&s.secret))
        .header("content-type", "application/json")
        .body("{\"grant_type\":\"client_credentials\"}")
        .send()
        .unwrap_or_else(|err| panic!("{err}"));
    assert_eq!(raw.status(), 400);
    let big = "x".repeat(20_000);
    let (status, _, body) = token(&s, ok, &[cc, ("task_id", big.as_str())]);
    assert_eq!(
        (status, body["error"].as_str()),
        (413, Some("invalid_request")),
        "over the form limit, said in RFC 6749's shape: {body}"
    );
    // A served path asked with another method: 405 naming the one that is served.
    let response = http()
        .get(s.server.url("/oauth/token"))
        .send()
        .unwrap_or_else(|err| panic!("{err}"));
    let allow = response.headers().get("allow").cloned();
    let body: Value = response.json().unwrap_or(Value::Null);
    assert_eq!(
        (
            allow.as_ref().and_then(|v| v.to_str().ok()),
            body["error"].as_str()
        ),
        (Some("POST"), Some("method_not_allowed")),
        "{body}"
    );
}

#[test]
fn disabled_agents_are_refused_and_rotated_secrets_have_a_grace_period() {
    let s = setup(agent());
    let rotated: Value = http()
        .post(
            s.server
                .url(&format!("/api/v1/agents/{}/secret", s.client_id)),
        )
        .bearer_auth(&s.admin)
        .send()
        .and_then(|r| r.json())
        .unwrap_or_else(|err| panic!("{err}"));
    let new_secret = rotated["client_secret"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    for secret in [s.secret.as_str(), new_secret.as_str()] {
        let (status, _, body) = token(
            &s,
            Some((&s.client_id, secret)),
            &[("grant_type", "client_credentials")],
        );
        assert_eq!(
            status, 200,
            "both secrets work during the grace period: {body}"
        );
    }
    let disabled = http()
        .post(
            s.server
                .url(&format!("/api/v1/agents/{}/disable", s.client_id)),
        )
        .bearer_auth(&s.admin)
        .send()
        .map(|r| r.status().as_u16());
    assert_eq!(disabled.ok(), Some(204));
    let (status, _, body) = token(
        &s,
        Some((&s.client_id, &new_secret)),
        &[("grant_type", "client_credentials")],
    );
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_client")),
        "{body}"
    );
    assert!(
        body["error_description"]
            .as_str()
            .is_some_and(|d| d.ends_with("is disabled")),
        "{body}"
    );
}

#[test]
fn an_expired_agent_gets_no_token() {
    let s = setup(
        json!({"name": "short-lived", "scopes": ["s"], "grant_types": ["client_credentials"], "expires_at": (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339()}),
    );
    let (status, _, body) = token(
        &s,
        Some((&s.client_id, &s.secret)),
        &[("grant_type", "client_credentials")],
    );
    assert_eq!(status, 200, "valid for another hour: {body}");
    let Setup {
        server,
        client_id,
        secret,
        admin,
        _dir: dir,
    } = s;
    assert_eq!(server.stop(), Some(0));
    // Two hours later, as far as the server can tell.
    let server = Server::start(dir.path(), &["--clock-offset-seconds", "7200"]);
    let s = Setup {
        server,
        client_id,
        secret,
        admin,
        _dir: dir,
    };
    let (status, _, body) = token(
        &s,
        Some((&s.client_id, &s.secret)),
        &[("grant_type", "client_credentials")],
    );
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_client")),
        "{body}"
    );
    assert!(
        body["error_description"]
            .as_str()
            .is_some_and(|d| d.contains("expired at")),
        "{body}"
    );
    let inventory: Value = http()
        .get(s.server.url(&format!("/api/v1/agents/{}", s.client_id)))
        .bearer_auth(&s.admin)
        .send()
        .and_then(|r| r.json())
        .unwrap_or_else(|err| panic!("{err}"));
    assert_eq!(inventory["status"], "expired");
}

#[test]
fn rfc_8414_metadata_leads_a_client_from_the_issuer_to_a_verified_token() {
    let setup = setup(agent());
    let metadata: Value = http()
        .get(setup.server.url("/.well-known/oauth-authorization-server"))
        .send()
        .and_then(|r| r.json())
        .unwrap_or_else(|err| panic!("{err}"));
    assert_eq!(
        metadata["issuer"].as_str(),
        Some(setup.server.base.as_str())
    );
    assert_eq!(
        metadata["grant_types_supported"],
        json!([
            "authorization_code",
            "refresh_token",
            "client_credentials",
            "urn:ietf:params:oauth:grant-type:token-exchange"
        ])
    );
    assert_eq!(
        metadata["token_endpoint_auth_methods_supported"],
        json!([
            "client_secret_basic",
            "client_secret_post",
            "private_key_jwt",
            "none"
        ])
    );
    assert_eq!(
        metadata["token_endpoint_auth_signing_alg_values_supported"],
        json!(["EdDSA", "ES256", "RS256"])
    );
    assert_eq!(
        metadata["code_challenge_methods_supported"],
        json!(["S256"])
    );
    assert_eq!(metadata["response_types_supported"], json!(["code"]));
    // Every endpoint it names is served here, and the token endpoint issues a token the
    // advertised JWKS verifies.
    let endpoint = |name: &str| metadata[name].as_str().unwrap_or_default().to_owned();
    let issued: Value = http()
        .post(endpoint("token_endpoint"))
        .basic_auth(&setup.client_id, Some(&setup.secret))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .and_then(|r| r.json())
        .unwrap_or_else(|err| panic!("{err}"));
    let access_token = issued["access_token"].as_str().unwrap_or_default();
    assert!(endpoint("jwks_uri").ends_with("/.well-known/jwks.json"));
    let claims = verify_with_pyjwt(&setup.server, access_token);
    assert!(claims.is_ok(), "{claims:?}");
    for name in ["introspection_endpoint", "revocation_endpoint"] {
        let status = http()
            .post(endpoint(name))
            .basic_auth(&setup.client_id, Some(&setup.secret))
            .form(&[("token", access_token)])
            .send()
            .map(|r| r.status().as_u16());
        assert_eq!(status.ok(), Some(200), "{name}");
    }
}

/// A JWT's header, read without verifying anything.
pub fn jwt_header(token: &str) -> Value {
    let header = token.split('.').next().unwrap_or_default();
    base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, header)
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .unwrap_or(Value::Null)
}

/// A token for the agent `client_id` by client_credentials (HTTP Basic).
pub fn client_token(server: &Server, client_id: &str, secret: &str) -> String {
    let body: Value = http()
        .post(server.url("/oauth/token"))
        .basic_auth(client_id, Some(secret))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .and_then(|r| r.json())
        .unwrap_or_else(|err| panic!("{err}"));
    body["access_token"]
        .as_str()
        .unwrap_or_else(|| panic!("no token: {body}"))
        .to_owned()
}

/// A copy of `token` with one character of its signature changed.
pub fn tampered(token: &str) -> String {
    let mut changed = token.to_owned();
    let at = token.rfind('.').unwrap_or(0) + 5;
    let swap = if &token[at..at + 1] == "A" { "B" } else { "A" };
    changed.replace_range(at..at + 1, swap);
    changed
}

#[test]
fn es256_and_rs256_servers_sign_tokens_pyjwt_verifies_with_the_published_key() {
    for (alg, kty, members, by_env) in [
        ("ES256", "EC", &["crv", "x", "y"][..], false),
        ("RS256", "RSA", &["n", "e"][..], true),
    ] {
        let dir = temp();
        // One through the flag, one through the environment.
        let server = if by_env {
            Server::start_with(dir.path(), &[], &[("WRIT_SIGNING_ALG", alg)])
        } else {
            Server::start(dir.path(), &["--signing-alg", alg])
        };
        let jwks: Value = http()
            .get(server.url("/.well-known/jwks.json"))
            .send()
            .and_then(|r| r.json())
            .unwrap_or_else(|err| panic!("{err}"));
        let keys = jwks["keys"].as_array().cloned().unwrap_or_default();
        assert_eq!(keys.len(), 1, "{jwks}");
        let key = &keys[0];
        assert_eq!(
            (
                key["kty"].as_str(),
                key["alg"].as_str(),
                key["use"].as_str()
            ),
            (Some(kty), Some(alg), Some("sig")),
            "{key}"
        );
        for member in members {
            assert!(
                key[member].as_str().is_some_and(|v| !v.is_empty()),
                "{alg} {member}: {key}"
            );
        }
        if alg == "ES256" {
            assert_eq!(key["crv"], "P-256");
        }
        let admin = server.admin_token();
        let (client_id, secret) = register_agent(&server, &admin, agent());
        let token = client_token(&server, &client_id, &secret);
        let header = jwt_header(&token);
        assert_eq!(
            (
                header["alg"].as_str(),
                header["kid"].as_str(),
                header["typ"].as_str()
            ),
            (Some(alg), key["kid"].as_str(), Some("at+jwt"))
        );
        let claims = verify_with_pyjwt(&server, &token)
            .unwrap_or_else(|why| panic!("PyJWT refused the {alg} token: {why}"));
        assert_eq!(claims["client_id"].as_str(), Some(client_id.as_str()));
        assert!(
            verify_with_pyjwt(&server, &tampered(&token)).is_err(),
            "a changed {alg} token must not verify"
        );
        assert_eq!(server.stop(), Some(0));
    }
}

/// RFC 7009 revocation of `token` by the client `client_id`; the status and the answer.
fn revoke(s: &Setup, client_id: &str, secret: &str, token: &str) -> (u16, Value) {
    let response = http()
        .post(s.server.url("/oauth/revoke"))
        .basic_auth(client_id, Some(secret))
        .form(&[("token", token)])
        .send()
        .unwrap_or_else(|err| panic!("{err}"));
    let status = response.status().as_u16();
    (status, response.json().unwrap_or(Value::Null))
}

#[test]
fn revoking_another_client_s_token_is_refused_and_the_token_stays_active() {
    let s = setup(agent());
    let (other_id, other_secret) = register_agent(&s.server, &s.admin, agent());
    let victim = client_credentials_token(&s.server, &s.client_id, &s.secret, &[]);
    // The attack: another client revokes a token that is not its own.
    let (status, refused) = revoke(&s, &other_id, &other_secret, &victim);
    assert_eq!(
        (status, &refused),
        (
            400,
            &json!({
                "error": "unauthorized_client",
                "error_description": format!("the token was not issued to client {other_id}: a client may revoke only its own tokens (RFC 7009 §2.1); the token stays active"),
            })
        )
    );
    assert_eq!(
        introspect(&s.server, &s.client_id, &s.secret, &victim)["active"],
        true,
        "the token stays active"
    );
    // An unknown token is no error (RFC 7009 §2.2), and the holder revokes its own.
    assert_eq!(revoke(&s, &other_id, &other_secret, "not-a-token").0, 200);
    assert_eq!(revoke(&s, &s.client_id, &s.secret, &victim).0, 200);
    assert_eq!(
        introspect(&s.server, &s.client_id, &s.secret, &victim)["active"],
        false
    );
}

/// `POST /api/v1/agents/{id}/secret` with `body` (none: an empty body), as the admin.
fn rotate(server: &Server, admin: &str, client_id: &str, body: Option<Value>) -> (u16, Value) {
    call(
        server,
        admin,
        "POST",
        &format!("/api/v1/agents/{client_id}/secret"),
        body,
    )
}

/// Whether `secret` gets `client_id` a token, and the refusal's description if not.
fn secret_works(server: &Server, client_id: &str, secret: &str) -> Result<(), String> {
    let response = http()
        .post(server.url("/oauth/token"))
        .basic_auth(client_id, Some(secret))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .unwrap_or_else(|err| panic!("{err}"));
    let status = response.status().as_u16();
    let body: Value = response.json().unwrap_or(Value::Null);
    match status {
        200 => Ok(()),
        _ => {
            assert_eq!((status, &body["error"]), (401, &json!("invalid_client")));
            Err(body["error_description"]
                .as_str()
                .unwrap_or_default()
                .to_owned())
        }
    }
}

fn instant(value: &Value) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::parse_from_rfc3339(value.as_str().unwrap_or_default())
        .unwrap_or_else(|err| panic!("{value}: {err}"))
        .with_timezone(&chrono::Utc)
}

#[test]
fn a_leaked_secret_is_cut_off_at_once_and_a_rotation_s_grace_and_expiry_are_bounded() {
    let s = setup(agent());
    // The attack: a leaked secret stays valid for a day after the rotation meant to end it.
    let (status, rotated) = rotate(
        &s.server,
        &s.admin,
        &s.client_id,
        Some(json!({"previous_secret_grace_seconds": 0})),
    );
    assert_eq!(status, 200, "{rotated}");
    assert_eq!(
        secret_works(&s.server, &s.client_id, &s.secret),
        Err("unknown client or wrong secret".into()),
        "the leaked secret is refused at once"
    );
    let fresh = rotated["client_secret"].as_str().unwrap_or_default();
    assert_eq!(secret_works(&s.server, &s.client_id, fresh), Ok(()));
    let path = format!("/api/v1/agents/{}", s.client_id);
    let (_, view) = call(&s.server, &s.admin, "GET", &path, None);
    assert_eq!(view["previous_secret_valid_until"], Value::Null, "{view}");
    assert_eq!(view["secret_expires_at"], Value::Null, "{view}");

    // Each bound, refused with the field named.
    for (body, field) in [
        (
            json!({"previous_secret_grace_seconds": 604_801}),
            "previous_secret_grace_seconds",
        ),
        (
            json!({"secret_expires_at": "2001-01-01T00:00:00Z"}),
            "secret_expires_at",
        ),
        (
            json!({"secret_expires_at": "tomorrow"}),
            "secret_expires_at",
        ),
        (json!({"grace": 5}), "grace"),
    ] {
        let (status, refused) = rotate(&s.server, &s.admin, &s.client_id, Some(body));
        assert_eq!(
            (status, &refused["error"]),
            (400, &json!("invalid_request")),
            "{refused}"
        );
        assert!(
            refused["detail"]
                .as_str()
                .is_some_and(|d| d.contains(field)),
            "{refused}"
        );
    }
    assert_eq!(
        secret_works(&s.server, &s.client_id, fresh),
        Ok(()),
        "refused rotations change nothing"
    );
}

#[test]
fn an_expired_client_secret_is_refused_and_outlives_no_grace() {
    let dir = temp();
    let server = Server::start(dir.path(), &[]);
    let admin = server.admin_token();
    let in_five_minutes = (chrono::Utc::now() + chrono::Duration::seconds(300)).to_rfc3339();
    let mut body = agent();
    body["secret_expires_at"] = json!(in_five_minutes);
    let (status, created) = call(&server, &admin, "POST", "/api/v1/agents", Some(body));
    assert_eq!(status, 201, "{created}");
    assert_eq!(
        instant(&created["agent"]["secret_expires_at"]).timestamp(),
        instant(&json!(in_five_minutes)).timestamp(),
        "{created}"
    );
    let client_id = created["agent"]["client_id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let first = created["client_secret"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert_eq!(secret_works(&server, &client_id, &first), Ok(()));

    // Rotated with a day's grace and an expiry of its own in an hour: the previous
    // secret's grace ends when that secret itself expires, not a day later.
    let in_an_hour = (chrono::Utc::now() + chrono::Duration::seconds(3600)).to_rfc3339();
    let (status, rotated) = rotate(
        &server,
        &admin,
        &client_id,
        Some(json!({"secret_expires_at": in_an_hour})),
    );
    assert_eq!(status, 200, "{rotated}");
    assert_eq!(
        instant(&rotated["previous_valid_until"]).timestamp(),
        instant(&json!(in_five_minutes)).timestamp(),
        "{rotated}"
    );
    let second = rotated["client_secret"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let (_, view) = call(
        &server,
        &admin,
        "GET",
        &format!("/api/v1/agents/{client_id}"),
        None,
    );
    assert_eq!(
        view["previous_secret_valid_until"], rotated["previous_valid_until"],
        "{view}"
    );
    assert_eq!(
        view["secret_expires_at"], rotated["secret_expires_at"],
        "{view}"
    );
    assert_eq!(
        secret_works(&server, &client_id, &first),
        Ok(()),
        "within its grace"
    );
    assert_eq!(server.stop(), Some(0));

    // Ten minutes on, as far as the server can tell: the first secret is past its expiry.
    let server = Server::start(dir.path(), &["--clock-offset-seconds", "600"]);
    assert_eq!(
        secret_works(&server, &client_id, &first),
        Err("unknown client or wrong secret".into())
    );
    assert_eq!(secret_works(&server, &client_id, &second), Ok(()));
    assert_eq!(server.stop(), Some(0));

    // Two hours on, the second is too, and the refusal says so.
    let server = Server::start(dir.path(), &["--clock-offset-seconds", "7200"]);
    let expired = secret_works(&server, &client_id, &second)
        .err()
        .unwrap_or_default();
    assert!(
        expired.starts_with("the client secret expired at ")
            && expired.ends_with(&format!(
                "an admin rotates it (POST /api/v1/agents/{client_id}/secret)"
            )),
        "{expired}"
    );
}
