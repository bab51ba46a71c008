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

/// `POST /api/v1/users` with `email` (and `name`), as (status, error, detail).
fn register(server: &Server, admin: &str, email: &str, name: Option<&str>) -> (u16, Value) {
    let mut body = json!({ "email": email });
    if let Some(name) = name {
        body["name"] = json!(name);
    }
    post(server, admin, "/api/v1/users", &body)
}

#[test]
fn look_alikes_of_a_registered_person_are_refused_with_the_character_named() {
    // With ada@example.com registered, every one of these was accepted (201): two people
    // who look the same on a consent page and in the trail.
    let dir = temp();
    let server = Server::start(dir.path(), &[]);
    let admin = server.admin_token();
    let (status, ada) = register(&server, &admin, "ada@example.com", Some("Ada"));
    assert_eq!(status, 201, "{ada}");
    let ada_id = ada["id"].as_str().unwrap_or_default();
    let invalid = |detail: &str| json!({ "error": "invalid_request", "detail": detail });
    let looks_like = json!({
        "error": "conflict",
        "detail": format!(
            "the email looks like the email of user {ada_id} (the same Unicode TR39 skeleton: characters that can be mistaken for one another, such as Cyrillic and Latin letters, `rn` and `m`, or a letter with and without an accent); register an address that cannot be confused with theirs"
        ),
    });
    let taken = json!({ "error": "conflict", "detail": "a user with that email already exists" });
    let cases = [
        (
            "\u{0430}da@example.com",
            400,
            invalid(
                "email: U+0430 in its local part is Cyrillic among Latin letters: mixing scripts makes look-alikes (Unicode TR39); write it in one script",
            ),
        ),
        // NFKC makes the fullwidth form the very same email.
        ("ａｄａ@ｅｘａｍｐｌｅ.ｃｏｍ", 409, taken.clone()),
        ("ADA@Example.com", 409, taken),
        (
            "a\u{200D}da@example.com",
            400,
            invalid(
                "email: U+200D is invisible (a default-ignorable code point, such as a zero-width joiner): two texts that differ by it look the same; remove it",
            ),
        ),
        ("ada\u{0301}@example.com", 409, looks_like.clone()),
        ("ad\u{0301}a@example.com", 409, looks_like.clone()),
        (
            "\u{202E}ada@example.com",
            400,
            invalid(
                "email: U+202E is a bidirectional control character: it changes the order in which the text is shown, so what is shown is not what is kept; remove it",
            ),
        ),
        (
            "ada@ex\u{0430}mple.com",
            400,
            invalid(
                "email: U+0430 in the domain label `ex\u{0430}mple` is Cyrillic among Latin letters: mixing scripts makes look-alikes (Unicode TR39); write it in one script",
            ),
        ),
        // The same look-alike domain spelt in punycode.
        (
            "ada@xn--exmple-4nf.com",
            400,
            invalid(
                "email: U+0430 in the domain label `ex\u{0430}mple` is Cyrillic among Latin letters: mixing scripts makes look-alikes (Unicode TR39); write it in one script",
            ),
        ),
        // `rn` reads as `m`.
        ("rnada@example.com", 201, Value::Null),
        ("mada@example.com", 409, Value::Null),
    ];
    for (email, status, error) in cases {
        let (got, body) = register(&server, &admin, email, None);
        assert_eq!(got, status, "{email:?}: {body}");
        if !error.is_null() {
            assert_eq!(body, error, "{email:?}");
        }
    }
    let (status, names) = register(&server, &admin, "grace@example.com", Some("Grace\u{202E}"));
    assert_eq!(status, 400, "{names}");
    assert_eq!(
        names["detail"],
        "name: U+202E is a bidirectional control character: it changes the order in which the text is shown, so what is shown is not what is kept; remove it"
    );
    let (_, listed) = call(&server, &admin, "GET", "/api/v1/users", None);
    assert_eq!(
        listed.as_array().map(Vec::len),
        Some(2),
        "ada and rnada: {listed}"
    );
}

#[test]
fn people_with_non_ascii_emails_and_names_are_registered_in_their_normal_form() {
    let dir = temp();
    let server = Server::start(dir.path(), &[]);
    let admin = server.admin_token();
    // A decomposed ë (e + U+0308) is kept composed (NFC within NFKC).
    let (status, zoe) = register(
        &server,
        &admin,
        "zoe\u{0308}@example.com",
        Some("Zoe\u{0308} Ōkubo"),
    );
    assert_eq!(status, 201, "{zoe}");
    assert_eq!(
        (zoe["email"].as_str(), zoe["name"].as_str()),
        (Some("zoë@example.com"), Some("Zoë Ōkubo"))
    );
    let (status, li) = register(&server, &admin, "李@例え.jp", Some("李小龍"));
    assert_eq!(status, 201, "{li}");
    assert_eq!(
        li["email"], "李@xn--r8jz45g.jp",
        "the domain kept in its ASCII form"
    );
    // The same person in another spelling is the same email.
    let (status, again) = register(&server, &admin, "李@xn--r8jz45g.jp", None);
    assert_eq!(
        (status, again["detail"].as_str()),
        (409, Some("a user with that email already exists"))
    );
    // Whole-script Cyrillic, each part in one script, still looks like a Latin person.
    let (status, _) = register(&server, &admin, "aeop@example.com", None);
    assert_eq!(status, 201);
    let (status, cyrillic) = register(
        &server,
        &admin,
        "\u{0430}\u{0435}\u{043E}\u{0440}@example.com",
        None,
    );
    assert_eq!(status, 409, "{cyrillic}");
    // A restart recomputes nothing and keeps refusing: the skeletons are in the ledger.
    assert_eq!(server.stop(), Some(0));
    let server = Server::start(dir.path(), &[]);
    let (status, _) = register(&server, &admin, "zoe@example.com", None);
    assert_eq!(status, 409, "zoe looks like zoë");
}
