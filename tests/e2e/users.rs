//! The admin credential and the people it manages, over real HTTP: the first start's
//! admin token, `WRIT_ADMIN_TOKEN`, `writ admin token create`, and the users endpoints
//! with their errors.

use serde_json::{Value, json};

use crate::kit::*;

fn post(server: &Server, token: &str, path: &str, body: &Value) -> (u16, Value) {
    call(server, token, "POST", path, Some(body.clone()))
}

#[test]
fn the_first_start_prints_an_admin_token_once_and_it_manages_users() {
    let dir = temp();
    let server = Server::start(dir.path(), &[]);
    let token = server.admin_token();
    assert!(
        token.starts_with("wrt_admin_") && token.len() == "wrt_admin_".len() + 43,
        "{token}"
    );

    let (status, user) = post(
        &server,
        &token,
        "/api/v1/users",
        &json!({"email": "ada@example.com", "name": "Ada"}),
    );
    assert_eq!(status, 201, "{user}");
    assert_eq!(
        (user["email"].as_str(), user["active"].as_bool()),
        (Some("ada@example.com"), Some(true))
    );
    let id = user["id"].as_str().unwrap_or_default().to_owned();
    assert_eq!(id.len(), 36, "a UUID: {id}");

    let listed: Value = http()
        .get(server.url("/api/v1/users"))
        .bearer_auth(&token)
        .send()
        .and_then(|r| r.json())
        .unwrap_or_else(|err| panic!("{err}"));
    assert_eq!(listed.as_array().map(|users| users.len()), Some(1));

    let (status, _) = post(
        &server,
        &token,
        &format!("/api/v1/users/{id}/deactivate"),
        &json!({}),
    );
    assert_eq!(status, 204);
    let (status, body) = post(
        &server,
        &token,
        &format!("/api/v1/users/{id}/deactivate"),
        &json!({}),
    );
    assert_eq!(
        (status, body["error"].as_str()),
        (409, Some("conflict")),
        "{body}"
    );
    let (status, _) = post(
        &server,
        &token,
        &format!("/api/v1/users/{id}/reactivate"),
        &json!({}),
    );
    assert_eq!(status, 204);
    assert_eq!(server.stop(), Some(0));

    // Restarted, it prints no token, and the first one still works.
    let server = Server::start(dir.path(), &[]);
    assert!(
        !server
            .banner
            .iter()
            .any(|line| line.trim_start().starts_with("admin token")),
        "{:?}",
        server.banner
    );
    let (status, _) = post(
        &server,
        &token,
        "/api/v1/users",
        &json!({"email": "grace@example.com"}),
    );
    assert_eq!(status, 201);
    assert_eq!(server.stop(), Some(0));
    let run = writ(&["verify", &dir.path().display().to_string()]);
    assert!(
        run.stdout.starts_with("ok: 7 records verified"),
        "{}",
        run.stdout
    );
}

#[test]
fn writ_admin_token_from_the_environment_and_from_the_command_line() {
    let dir = temp();
    let given = "a-long-enough-admin-token-for-automation-0001";
    let server = Server::start_with(dir.path(), &[], &[("WRIT_ADMIN_TOKEN", given)]);
    assert!(
        server
            .banner
            .iter()
            .any(|line| line == "  admin token: the one given in WRIT_ADMIN_TOKEN"),
        "{:?}",
        server.banner
    );
    let (status, _) = post(
        &server,
        given,
        "/api/v1/users",
        &json!({"email": "env@example.com"}),
    );
    assert_eq!(status, 201);
    assert_eq!(server.stop(), Some(0));

    let run = writ(&[
        "admin",
        "token",
        "create",
        "--name",
        "cli",
        "--data-dir",
        &dir.path().display().to_string(),
    ]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let created = run.stdout.trim().to_owned();
    assert!(created.starts_with("wrt_admin_"), "{created}");
    let server = Server::start(dir.path(), &[]);
    let (status, _) = post(
        &server,
        &created,
        "/api/v1/users",
        &json!({"email": "cli@example.com"}),
    );
    assert_eq!(status, 201);
    assert_eq!(server.stop(), Some(0));

    let short = temp();
    let run = writ_with_env(
        &[
            "serve",
            "--data-dir",
            &short.path().display().to_string(),
            "--listen",
            "127.0.0.1:0",
        ],
        &[("WRIT_ADMIN_TOKEN", "short")],
    );
    assert_eq!(run.code, Some(2));
    assert!(
        run.stderr
            .contains("WRIT_ADMIN_TOKEN must be at least 32 characters"),
        "{}",
        run.stderr
    );
}

#[test]
fn bad_requests_get_a_precise_status_and_a_sentence() {
    let dir = temp();
    let server = Server::start(dir.path(), &[]);
    let token = server.admin_token();
    let client = http();

    let response = client
        .post(server.url("/api/v1/users"))
        .json(&json!({"email": "x@y.z"}))
        .send()
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(response.status(), 401);
    assert!(response.headers().get("www-authenticate").is_some());
    let (status, body) = post(
        &server,
        "wrt_admin_wrong",
        "/api/v1/users",
        &json!({"email": "x@y.z"}),
    );
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("unauthorized")),
        "{body}"
    );

    for (body, field) in [
        (json!({"email": "not an email"}), "email:"),
        (json!({"name": "no email"}), "missing field `email`"),
        (
            json!({"email": "a@b.c", "name": "  "}),
            "name: must not be blank",
        ),
        (
            json!({"email": "a@b.c", "role": "admin"}),
            "unknown field `role`",
        ),
    ] {
        let (status, answer) = post(&server, &token, "/api/v1/users", &body);
        assert_eq!(status, 400, "{body} -> {answer}");
        assert!(
            answer["detail"].as_str().is_some_and(|d| d.contains(field)),
            "{body} -> {answer}"
        );
    }
    let raw = |bytes: Vec<u8>| {
        client
            .post(server.url("/api/v1/users"))
            .bearer_auth(&token)
            .header("content-type", "application/json")
            .body(bytes)
            .send()
            .unwrap_or_else(|e| panic!("{e}"))
    };
    assert_eq!(raw(b"{\"email\": ".to_vec()).status(), 400);
    assert_eq!(raw(vec![0xff, 0xfe, b'{']).status(), 400);
    assert_eq!(
        raw(format!("{{\"email\":\"{}@x.y\"}}", "a".repeat(100_000)).into_bytes()).status(),
        413
    );

    let (status, _) = post(
        &server,
        &token,
        "/api/v1/users",
        &json!({"email": "dup@example.com"}),
    );
    assert_eq!(status, 201);
    let (status, body) = post(
        &server,
        &token,
        "/api/v1/users",
        &json!({"email": "DUP@example.com"}),
    );
    assert_eq!(status, 409, "emails are unique regardless of case: {body}");
    let (status, body) = post(
        &server,
        &token,
        "/api/v1/users/no-such-user/deactivate",
        &json!({}),
    );
    assert_eq!(
        (status, body["error"].as_str()),
        (404, Some("not_found")),
        "{body}"
    );
    let response = client
        .get(server.url("/api/v1/nothing-here"))
        .send()
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(response.status(), 404);

    // After all that, the server still serves and the ledger holds only the good writes.
    assert_eq!(
        client
            .get(server.url("/healthz"))
            .send()
            .map(|r| r.status().as_u16())
            .ok(),
        Some(200)
    );
    assert_eq!(server.stop(), Some(0));
    let run = writ(&["verify", &dir.path().display().to_string()]);
    assert!(
        run.stdout.starts_with("ok: 4 records verified"),
        "{}",
        run.stdout
    );
}
