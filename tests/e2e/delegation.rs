//! People and delegation over real HTTP: an admin issues a person an API key, the key acts
//! as that person, the person delegates to an agent, lists and revokes what they granted;
//! another person can neither see nor revoke it; revoked keys and deactivated people's
//! keys are refused; and the ledger records it all and verifies. A person's own writ
//! access token acts as them too (but mints no other); an agent's token never does.

use serde_json::{Value, json};

use crate::kit::*;

/// A call as a person, by API key: the status and the JSON body (null when none).
pub fn as_user(
    server: &Server,
    key: &str,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let client = http();
    let request = match method {
        "GET" => client.get(server.url(path)),
        "DELETE" => client.delete(server.url(path)),
        _ => client.post(server.url(path)),
    }
    .header("x-api-key", key);
    let request = match body {
        Some(body) => request.json(&body),
        None => request,
    };
    let response = request.send().unwrap_or_else(|err| panic!("{err}"));
    let status = response.status().as_u16();
    (status, response.json().unwrap_or(Value::Null))
}

/// Registers a person; their id.
pub fn person(server: &Server, admin: &str, email: &str) -> String {
    let (status, user) = call(
        server,
        admin,
        "POST",
        "/api/v1/users",
        Some(json!({ "email": email })),
    );
    assert_eq!(status, 201, "{user}");
    user["id"].as_str().unwrap_or_default().to_owned()
}

/// Issues the person an API key; the key and its id.
pub fn api_key(server: &Server, admin: &str, user_id: &str) -> (String, String) {
    let path = format!("/api/v1/users/{user_id}/api-keys");
    let (status, issued) = call(server, admin, "POST", &path, None);
    assert_eq!(status, 201, "{issued}");
    let field = |name: &str| issued[name].as_str().unwrap_or_default().to_owned();
    (field("key"), field("id"))
}

fn files_agent(server: &Server, admin: &str) -> String {
    let agent = json!({"name": "files", "scopes": ["files:read", "files:write"],
                       "grant_types": ["client_credentials"]});
    register_agent(server, admin, agent).0
}

#[test]
fn a_person_delegates_by_api_key_and_only_they_or_an_admin_see_and_revoke_it() {
    let dir = temp();
    let server = Server::start(dir.path(), &[]);
    let admin = server.admin_token();
    let ada = person(&server, &admin, "ada@example.com");
    let bob = person(&server, &admin, "bob@example.com");
    let (ada_key, _) = api_key(&server, &admin, &ada);
    let (bob_key, _) = api_key(&server, &admin, &bob);
    assert!(
        ada_key.starts_with("wrt_") && ada_key.len() == "wrt_".len() + 43,
        "{ada_key}"
    );
    let client_id = files_agent(&server, &admin);

    let (status, mine) = as_user(&server, &ada_key, "GET", "/api/v1/me/delegations", None);
    assert_eq!((status, mine), (200, json!([])));

    let grants = format!("/api/v1/agents/{client_id}/delegations");
    let body = json!({"scopes": ["files:read"], "expires_at": "2099-01-01T00:00:00Z"});
    let (status, granted) = as_user(&server, &ada_key, "POST", &grants, Some(body));
    assert_eq!(status, 201, "{granted}");
    let id = granted["id"].as_str().unwrap_or_default().to_owned();
    assert!(uuid::Uuid::parse_str(&id).is_ok(), "a UUID: {id}");
    assert_eq!(granted["status"], "active");
    assert_eq!(granted["scopes"], json!(["files:read"]));

    let (status, body) = as_user(
        &server,
        &ada_key,
        "POST",
        &grants,
        Some(json!({"scopes": ["mail:send"]})),
    );
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_request"))
    );
    assert!(
        body["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("mail:send"),
        "{body}"
    );

    let (status, listed) = call(&server, &admin, "GET", &grants, None);
    assert_eq!(status, 200, "{listed}");
    let first = &listed[0];
    assert_eq!(
        (
            listed.as_array().map(Vec::len),
            first["id"].as_str(),
            first["delegator_user_id"].as_str(),
            first["delegator_email"].as_str(),
            first["status"].as_str(),
        ),
        (
            Some(1),
            Some(id.as_str()),
            Some(ada.as_str()),
            Some("ada@example.com"),
            Some("active")
        )
    );
    let (status, mine) = as_user(&server, &ada_key, "GET", "/api/v1/me/delegations", None);
    assert_eq!(status, 200);
    assert_eq!(mine[0]["id"].as_str(), Some(id.as_str()));
    assert_eq!(mine[0]["last_used_at"], Value::Null, "no token used it yet");

    // Bob sees none of it, and cannot revoke it.
    let (_, theirs) = as_user(&server, &bob_key, "GET", "/api/v1/me/delegations", None);
    assert_eq!(theirs, json!([]));
    let (_, theirs) = as_user(&server, &bob_key, "GET", &grants, None);
    assert_eq!(theirs, json!([]));
    let revoke = format!("/api/v1/delegations/{id}");
    let (status, body) = as_user(&server, &bob_key, "DELETE", &revoke, None);
    assert_eq!(
        (status, body["error"].as_str()),
        (403, Some("forbidden")),
        "{body}"
    );

    let (status, _) = as_user(&server, &ada_key, "DELETE", &revoke, None);
    assert_eq!(status, 204);
    let (status, body) = as_user(&server, &ada_key, "DELETE", &revoke, None);
    assert_eq!(
        (status, body["error"].as_str()),
        (409, Some("conflict")),
        "{body}"
    );
    let (_, mine) = as_user(&server, &ada_key, "GET", "/api/v1/me/delegations", None);
    assert_eq!(mine[0]["status"], "revoked");
    assert_eq!(server.stop(), Some(0));

    assert_eq!(events_in_ledger(dir.path(), "ApiKeyIssued"), 2);
    assert_eq!(events_in_ledger(dir.path(), "DelegationGranted"), 1);
    assert_eq!(events_in_ledger(dir.path(), "DelegationRevoked"), 1);
    let run = writ(&["verify", &dir.path().display().to_string()]);
    assert_eq!(run.code, Some(0), "{}{}", run.stdout, run.stderr);
}

#[test]
fn a_revoked_key_and_a_deactivated_person_s_key_are_refused_saying_which() {
    let dir = temp();
    let server = Server::start(dir.path(), &[]);
    let admin = server.admin_token();
    let ada = person(&server, &admin, "ada@example.com");
    let (first, first_id) = api_key(&server, &admin, &ada);
    let (second, _) = api_key(&server, &admin, &ada);
    let mine = "/api/v1/me/delegations";

    // A person revokes their own key, with that very key.
    let (status, _) = as_user(
        &server,
        &first,
        "DELETE",
        &format!("/api/v1/api-keys/{first_id}"),
        None,
    );
    assert_eq!(status, 204);
    let (status, body) = as_user(&server, &first, "GET", mine, None);
    refused_saying(status, &body, "revoked");
    let (status, _) = as_user(&server, &second, "GET", mine, None);
    assert_eq!(status, 200, "the other key still works");

    let deactivate = format!("/api/v1/users/{ada}/deactivate");
    assert_eq!(call(&server, &admin, "POST", &deactivate, None).0, 204);
    let (status, body) = as_user(&server, &second, "GET", mine, None);
    refused_saying(status, &body, "deactivated");
    let reactivate = format!("/api/v1/users/{ada}/reactivate");
    assert_eq!(call(&server, &admin, "POST", &reactivate, None).0, 204);
    assert_eq!(as_user(&server, &second, "GET", mine, None).0, 200);

    // No credential, an unknown key, and two credentials at once.
    let bare = http()
        .get(server.url(mine))
        .send()
        .unwrap_or_else(|err| panic!("{err}"));
    assert_eq!(bare.status().as_u16(), 401);
    let (status, body) = as_user(&server, "wrt_unknown", "GET", mine, None);
    assert_eq!(status, 401, "{body}");
    let both = http()
        .get(server.url(mine))
        .header("x-api-key", &second)
        .bearer_auth(&admin)
        .send()
        .unwrap_or_else(|err| panic!("{err}"));
    assert_eq!(both.status().as_u16(), 401);
    assert_eq!(server.stop(), Some(0));
}

/// A 401 `unauthorized` whose detail says `why`.
fn refused_saying(status: u16, body: &Value, why: &str) {
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("unauthorized")),
        "{body}"
    );
    let detail = body["detail"].as_str().unwrap_or_default();
    assert!(detail.contains(why), "{body}");
}

#[test]
fn only_a_person_s_token_asked_for_writ_manage_manages_their_account() {
    use crate::exchange::{ACCESS_TOKEN, Setup, USER_ID, setup_with, text};
    let s = setup_with(&[], &[]);
    let refused = |token: &str, words: &str| {
        let (status, refusal) = call(&s.server, token, "GET", "/api/v1/me/delegations", None);
        assert_eq!(status, 401, "{refusal}");
        let detail = refusal["detail"].as_str().unwrap_or_default();
        assert!(detail.contains(words), "{detail}");
    };
    // Ada's token for agent A: A holds it to act for her by token exchange, and must not
    // be able to grant itself (or B) a wider delegation with it.
    let (status, handed) = as_user(
        &s.server,
        &s.ada_key,
        "POST",
        "/api/v1/me/tokens",
        Some(json!({"client_id": s.a.id})),
    );
    assert_eq!(status, 200, "{handed}");
    let handed = text(&handed["access_token"]);
    refused(&handed, &format!("held by agent {}", s.a.id));
    let to_b = format!("/api/v1/agents/{}/delegations", s.b.id);
    let body = json!({"scopes": ["files:read"]});
    let (status, refusal) = call(&s.server, &handed, "POST", &to_b, Some(body));
    assert_eq!(status, 401, "no delegation granted with it: {refusal}");
    let again = json!({"client_id": s.a.id});
    let (status, refusal) = call(&s.server, &handed, "POST", "/api/v1/me/tokens", Some(again));
    assert_eq!(status, 401, "nor does it renew itself: {refusal}");
    let (status, mine) = as_user(&s.server, &s.ada_key, "GET", "/api/v1/me/delegations", None);
    assert_eq!(status, 200, "{mine}");
    assert_eq!(
        mine.as_array().map(Vec::len),
        Some(1),
        "only the delegation she granted herself: {mine}"
    );

    // An agent registered with `writ:manage`, and a token ada asks that scope for by
    // name, manage her account as her API key does; unasked, even that agent's is refused.
    let body = json!({"name": "account-assistant", "scopes": ["files:read", "writ:manage"],
                      "grant_types": ["client_credentials"]});
    let (assistant, _) = register_agent(&s.server, &s.admin, body);
    let for_assistant = |scope: Option<&str>| {
        let mut body = json!({"client_id": assistant});
        if let Some(scope) = scope {
            body["scope"] = json!(scope);
        }
        let (status, token) = as_user(
            &s.server,
            &s.ada_key,
            "POST",
            "/api/v1/me/tokens",
            Some(body),
        );
        assert_eq!(status, 200, "{token}");
        token
    };
    let unasked = for_assistant(None);
    assert_eq!(unasked["scope"], json!("files:read"), "{unasked}");
    refused(
        &text(&unasked["access_token"]),
        "without the `writ:manage` scope",
    );
    let managing = for_assistant(Some("writ:manage"));
    let managing = text(&managing["access_token"]);
    let (status, mine) = call(&s.server, &managing, "GET", "/api/v1/me/delegations", None);
    assert_eq!(status, 200, "{mine}");
    let to_c = format!("/api/v1/agents/{}/delegations", s.c.id);
    let (status, granted) = call(&s.server, &managing, "POST", &to_c, Some(json!({})));
    assert_eq!(status, 201, "{granted}");
    assert_eq!(
        granted["delegator_user_id"],
        json!(s.ada),
        "as her API key would"
    );
    let again = json!({"client_id": assistant, "scope": "writ:manage"});
    let (status, refusal) = call(
        &s.server,
        &managing,
        "POST",
        "/api/v1/me/tokens",
        Some(again),
    );
    assert_eq!(status, 403, "a token does not renew itself: {refusal}");

    let on_behalf = s.exchanged(&s.a, &s.ada, USER_ID, &[]);
    refused(
        &text(&on_behalf["access_token"]),
        &format!("agent {}'s token on behalf of user {}", s.a.id, s.ada),
    );
    let exchanged = s.exchanged(&s.a, &handed, ACCESS_TOKEN, &[]);
    refused(&text(&exchanged["access_token"]), "on behalf of user");
    let (status, m2m) = s.token(&s.a, &[("grant_type", "client_credentials")]);
    assert_eq!(status, 200, "{m2m}");
    refused(&text(&m2m["access_token"]), "own token");
    refused(
        "not-a-token-writ-issued",
        "neither a live admin credential nor",
    );
    assert_eq!(
        call(&s.server, &s.admin, "GET", "/api/v1/users", None).0,
        200,
        "an admin token still works"
    );

    // A revoked token is refused as revoked; an expired one as expired.
    let (_, second) = as_user(
        &s.server,
        &s.ada_key,
        "POST",
        "/api/v1/me/tokens",
        Some(json!({"client_id": s.a.id})),
    );
    let second = text(&second["access_token"]);
    let revoked = http()
        .post(s.server.url("/oauth/revoke"))
        .basic_auth(&s.a.id, Some(&s.a.secret))
        .form(&[("token", handed.as_str())])
        .send()
        .map(|r| r.status().as_u16());
    assert_eq!(revoked.ok(), Some(200));
    refused(&handed, "was revoked at");
    let Setup { dir, server, .. } = s;
    assert_eq!(server.stop(), Some(0));
    // Ten minutes later, as far as the server can tell: past the default five.
    let server = Server::start(dir.path(), &["--clock-offset-seconds", "600"]);
    let (status, refusal) = call(&server, &second, "GET", "/api/v1/me/delegations", None);
    assert_eq!(status, 401, "{refusal}");
    assert!(
        refusal["detail"]
            .as_str()
            .is_some_and(|d| d.contains("expired at")),
        "{refusal}"
    );
    assert_eq!(server.stop(), Some(0));
}
