//! The agent registry over real HTTP: the "register an agent" walkthrough and its errors.

use serde_json::{Value, json};

use crate::kit::*;

#[test]
fn registering_an_agent_walkthrough() {
    let dir = temp();
    let server = Server::start(dir.path(), &[]);
    let admin = server.admin_token();
    let (status, _) = call(
        &server,
        &admin,
        "POST",
        "/api/v1/users",
        Some(json!({"email": "owner@example.com"})),
    );
    assert_eq!(status, 201);

    let (status, created) = call(
        &server,
        &admin,
        "POST",
        "/api/v1/agents",
        Some(json!({
            "name": "Research assistant",
            "scopes": ["files:read", "mail:send"],
            "grant_types": ["client_credentials"],
            "owner": "owner@example.com",
            "expires_at": "2099-01-01T00:00:00Z",
        })),
    );
    assert_eq!(status, 201, "{created}");
    let secret = created["client_secret"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(secret.starts_with("wrt_cs_"), "{created}");
    let agent = &created["agent"];
    let client_id = agent["client_id"].as_str().unwrap_or_default().to_owned();
    assert_eq!(agent["owner_email"], "owner@example.com");
    assert_eq!(agent["expires_at"], "2099-01-01T00:00:00.000000Z");
    assert_eq!(
        (
            agent["status"].as_str(),
            agent["governed"].as_bool(),
            agent["needs_review"].as_bool()
        ),
        (Some("active"), Some(true), Some(true))
    );
    assert!(
        agent.get("client_secret").is_none() && !agent.to_string().contains(&secret),
        "the secret is shown once, outside the agent"
    );

    let (status, _) = call(
        &server,
        &admin,
        "POST",
        &format!("/api/v1/agents/{client_id}/review"),
        Some(json!({"note": "scopes checked"})),
    );
    assert_eq!(status, 204);
    let (_, one) = call(
        &server,
        &admin,
        "GET",
        &format!("/api/v1/agents/{client_id}"),
        None,
    );
    assert_eq!(one["needs_review"], false, "{one}");

    let (status, _) = call(
        &server,
        &admin,
        "PUT",
        &format!("/api/v1/agents/{client_id}/identity"),
        Some(json!({"expires_at": ""})),
    );
    assert_eq!(status, 204);
    let (_, one) = call(
        &server,
        &admin,
        "GET",
        &format!("/api/v1/agents/{client_id}"),
        None,
    );
    assert_eq!(
        (
            one["expires_at"].is_null(),
            one["governed"].as_bool(),
            one["owner_email"].as_str()
        ),
        (true, Some(false), Some("owner@example.com"))
    );

    let (status, rotated) = call(
        &server,
        &admin,
        "POST",
        &format!("/api/v1/agents/{client_id}/secret"),
        None,
    );
    assert_eq!(status, 200, "{rotated}");
    assert!(
        rotated["client_secret"]
            .as_str()
            .is_some_and(|s| s.starts_with("wrt_cs_") && s != secret)
    );
    assert!(rotated["previous_valid_until"].as_str().is_some());

    let (status, _) = call(
        &server,
        &admin,
        "PUT",
        &format!("/api/v1/agents/{client_id}/policy"),
        Some(json!({"max_ttl_seconds": 600, "max_operations": 50})),
    );
    assert_eq!(status, 204);
    let (status, _) = call(
        &server,
        &admin,
        "POST",
        &format!("/api/v1/agents/{client_id}/disable"),
        None,
    );
    assert_eq!(status, 204);
    let (status, body) = call(
        &server,
        &admin,
        "POST",
        &format!("/api/v1/agents/{client_id}/disable"),
        None,
    );
    assert_eq!(status, 409, "{body}");
    let (_, inventory) = call(&server, &admin, "GET", "/api/v1/agents", None);
    let listed = &inventory[0];
    assert_eq!(
        (
            listed["status"].as_str(),
            listed["enabled"].as_bool(),
            listed["policy"]["max_ttl_seconds"].as_u64()
        ),
        (Some("disabled"), Some(false), Some(600)),
        "{inventory}"
    );
    let (status, _) = call(
        &server,
        &admin,
        "POST",
        &format!("/api/v1/agents/{client_id}/enable"),
        None,
    );
    assert_eq!(status, 204);

    // Deactivating the owner orphans the agent.
    let (_, users) = call(&server, &admin, "GET", "/api/v1/users", None);
    let owner_id = users[0]["id"].as_str().unwrap_or_default().to_owned();
    let (status, _) = call(
        &server,
        &admin,
        "POST",
        &format!("/api/v1/users/{owner_id}/deactivate"),
        None,
    );
    assert_eq!(status, 204);
    let (_, one) = call(
        &server,
        &admin,
        "GET",
        &format!("/api/v1/agents/{client_id}"),
        None,
    );
    assert_eq!(one["status"], "orphaned", "{one}");
    assert_eq!(server.stop(), Some(0));
    let run = writ(&["verify", &dir.path().display().to_string()]);
    assert!(run.stdout.starts_with("ok: "), "{}", run.stdout);
}

#[test]
fn bad_agent_registrations_name_the_field() {
    let dir = temp();
    let server = Server::start(dir.path(), &[]);
    let admin = server.admin_token();
    let base = json!({"name": "a", "scopes": ["s"], "grant_types": ["client_credentials"]});
    let with = |key: &str, value: Value| {
        let mut body = base.clone();
        body[key] = value;
        body
    };
    for (body, detail) in [
        (
            with("scopes", json!(["has space"])),
            "scopes: `has space` is not a scope token",
        ),
        (
            with("scopes", json!(["s", "s"])),
            "scopes: `s` is listed twice",
        ),
        (
            with("grant_types", json!(["password"])),
            "grant_types: `password` is not one of",
        ),
        (
            with("grant_types", json!([])),
            "grant_types: name at least one",
        ),
        (with("name", json!("   ")), "name: 1 to 200 bytes"),
        (
            with("owner", json!("nobody@example.com")),
            "owner: no user has the email `nobody@example.com`",
        ),
        (
            with("expires_at", json!("2001-01-01T00:00:00Z")),
            "expires_at: 2001-01-01T00:00:00.000000Z is not in the future",
        ),
        (
            with("expires_at", json!("tomorrow")),
            "expires_at: `tomorrow` is not an RFC 3339 time",
        ),
        (
            with("token_endpoint_auth_method", json!("none")),
            "token_endpoint_auth_method: `none` is not one of",
        ),
        (
            with("redirect_uris", json!(["ftp://x"])),
            "redirect_uris: `ftp://x` is not an absolute http(s) URI",
        ),
    ] {
        let (status, answer) = call(
            &server,
            &admin,
            "POST",
            "/api/v1/agents",
            Some(body.clone()),
        );
        assert_eq!(status, 400, "{body} -> {answer}");
        assert!(
            answer["detail"]
                .as_str()
                .is_some_and(|d| d.starts_with(detail)),
            "{body} -> {answer}"
        );
    }
    for (method, path, body) in [
        ("GET", "/api/v1/agents/agt_missing", None),
        ("POST", "/api/v1/agents/agt_missing/disable", None),
        ("POST", "/api/v1/agents/agt_missing/review", None),
        (
            "PUT",
            "/api/v1/agents/agt_missing/identity",
            Some(json!({"owner": ""})),
        ),
    ] {
        let (status, answer) = call(&server, &admin, method, path, body);
        assert_eq!(
            (status, answer["error"].as_str()),
            (404, Some("not_found")),
            "{method} {path} -> {answer}"
        );
    }
    let (status, answer) = call(
        &server,
        &admin,
        "PUT",
        "/api/v1/agents/agt_missing/policy",
        Some(json!({"max_ttl_seconds": 0})),
    );
    assert_eq!(status, 400, "{answer}");
    assert_eq!(server.stop(), Some(0));
}
