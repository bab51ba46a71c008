//! On-behalf-of tokens by user id over real HTTP: a person delegates to an agent by API
//! key; the agent asks `/oauth/token` (or `/oauth/agent-token`) for a token acting for
//! them; PyJWT verifies it (`sub` the person, `act.sub` the agent); introspection shows
//! the delegation; revoking the delegation or deactivating the person ends the token at
//! once; every refusal has its exact status and code; and the ledger verifies, its
//! `TokenRevoked` naming the delegation as the cause.

use serde_json::{Value, json};

use crate::delegation::{api_key, as_user, person};
use crate::kit::*;
use crate::tokens::verify_with_pyjwt;

const USER_ID: &str = "urn:writ:params:oauth:token-type:user-id";

struct Setup {
    dir: tempfile::TempDir,
    server: Server,
    admin: String,
    ada: String,
    ada_key: String,
    client_id: String,
    secret: String,
}

/// A server, a person with an API key, and an agent holding `files:read files:write`.
fn setup() -> Setup {
    let dir = temp();
    let server = Server::start(dir.path(), &[]);
    let admin = server.admin_token();
    let ada = person(&server, &admin, "ada@example.com");
    let (ada_key, _) = api_key(&server, &admin, &ada);
    let agent = json!({"name": "files", "scopes": ["files:read", "files:write"],
                       "grant_types": ["client_credentials"], "require_consent": true});
    let (client_id, secret) = register_agent(&server, &admin, agent);
    Setup {
        dir,
        server,
        admin,
        ada,
        ada_key,
        client_id,
        secret,
    }
}

impl Setup {
    /// The person delegates to the agent; the delegation's id.
    fn delegate(&self, body: Value) -> String {
        let path = format!("/api/v1/agents/{}/delegations", self.client_id);
        let (status, granted) = as_user(&self.server, &self.ada_key, "POST", &path, Some(body));
        assert_eq!(status, 201, "{granted}");
        granted["id"].as_str().unwrap_or_default().to_owned()
    }

    /// `/oauth/token` as the agent with `form` after `grant_type=client_credentials`.
    fn token(&self, form: &[(&str, &str)]) -> (u16, Value) {
        let mut all = vec![("grant_type", "client_credentials")];
        all.extend_from_slice(form);
        let response = http()
            .post(self.server.url("/oauth/token"))
            .basic_auth(&self.client_id, Some(&self.secret))
            .form(&all)
            .send()
            .unwrap_or_else(|err| panic!("{err}"));
        let status = response.status().as_u16();
        (status, response.json().unwrap_or(Value::Null))
    }

    /// An on-behalf-of token request for `user_id` with `more` parameters.
    fn for_user(&self, user_id: &str, more: &[(&str, &str)]) -> (u16, Value) {
        let mut form = vec![("actor_token", user_id), ("actor_token_type", USER_ID)];
        form.extend_from_slice(more);
        self.token(&form)
    }

    fn introspect(&self, token: &str) -> Value {
        introspect(&self.server, &self.client_id, &self.secret, token)
    }

    fn operation(&self, token: &str) -> u16 {
        http()
            .post(self.server.url("/api/v1/operations"))
            .bearer_auth(token)
            .json(&json!({"operation": "files/read"}))
            .send()
            .map(|r| r.status().as_u16())
            .unwrap_or_else(|err| panic!("{err}"))
    }
}

fn refused(answer: &(u16, Value)) -> (u16, &str) {
    (answer.0, answer.1["error"].as_str().unwrap_or_default())
}

#[test]
fn an_agent_acts_for_a_person_under_their_delegation_until_they_revoke_it() {
    let s = setup();
    let delegation = s.delegate(json!({"scopes": ["files:read"]}));
    let (status, issued) = s.for_user(&s.ada, &[]);
    assert_eq!(status, 200, "{issued}");
    assert_eq!(issued["scope"], "files:read", "narrowed by the delegation");
    let token = issued["access_token"]
        .as_str()
        .unwrap_or_default()
        .to_owned();

    let claims = verify_with_pyjwt(&s.server, &token)
        .unwrap_or_else(|why| panic!("PyJWT refused the token: {why}"));
    assert_eq!(claims["sub"].as_str(), Some(s.ada.as_str()));
    assert_eq!(claims["act"], json!({"sub": s.client_id}));
    assert_eq!(claims["client_id"].as_str(), Some(s.client_id.as_str()));
    assert_eq!(claims["delegation_id"].as_str(), Some(delegation.as_str()));

    let seen = s.introspect(&token);
    assert_eq!(seen["active"], true, "{seen}");
    assert_eq!(seen["sub"].as_str(), Some(s.ada.as_str()));
    assert_eq!(seen["delegated_by"].as_str(), Some(s.ada.as_str()));
    assert_eq!(seen["delegation_id"].as_str(), Some(delegation.as_str()));
    assert_eq!(seen["delegation_chain"], json!([s.client_id]));
    assert_eq!(seen["delegation_depth"], 1);
    assert_eq!(s.operation(&token), 200);

    let (_, mine) = as_user(&s.server, &s.ada_key, "GET", "/api/v1/me/delegations", None);
    assert!(mine[0]["last_used_at"].is_string(), "{mine}");

    let revoke = format!("/api/v1/delegations/{delegation}");
    assert_eq!(
        as_user(&s.server, &s.ada_key, "DELETE", &revoke, None).0,
        204
    );
    assert_eq!(s.introspect(&token), json!({"active": false}));
    assert_eq!(s.operation(&token), 401);
    let again = s.for_user(&s.ada, &[]);
    assert_eq!(refused(&again), (403, "invalid_grant"), "{}", again.1);

    let Setup {
        dir,
        server,
        ada: s_ada,
        client_id: s_client_id,
        ..
    } = s;
    assert_eq!(server.stop(), Some(0));
    let run = writ(&["verify", &dir.path().display().to_string()]);
    assert_eq!(run.code, Some(0), "{}{}", run.stdout, run.stderr);
    let export = dir.path().join("obo.jsonl");
    export_to(dir.path(), &export);
    let text = std::fs::read_to_string(&export).unwrap_or_default();
    let events_of = |kind: &str| -> Vec<Value> {
        text.lines()
            .filter_map(|line| serde_json::from_str::<Value>(line).ok())
            .map(|record| record["event"].clone())
            .filter(|event| event["type"] == kind)
            .map(|event| event["data"].clone())
            .collect()
    };
    let issued = events_of("TokenIssued");
    assert_eq!(issued.len(), 1);
    assert_eq!(
        (
            &issued[0]["user_id"],
            &issued[0]["actors"],
            &issued[0]["delegation_id"]
        ),
        (&json!(s_ada), &json!([s_client_id]), &json!(delegation)),
        "{}",
        issued[0]
    );
    let revoked = events_of("TokenRevoked");
    assert_eq!(revoked.len(), 1, "{text}");
    assert_eq!(
        revoked[0]["cause"],
        json!({"kind": "delegation_revoked", "delegation_id": delegation}),
        "the cause names the delegation"
    );
}

#[test]
fn on_behalf_of_refusals_have_their_exact_status_and_code() {
    let s = setup();
    let bob = person(&s.server, &s.admin, "bob@example.com");

    // No delegation yet; an unknown id says the same, so ids cannot be probed.
    let none = s.for_user(&s.ada, &[]);
    assert_eq!(refused(&none), (403, "invalid_grant"), "{}", none.1);
    let description = none.1["error_description"].as_str().unwrap_or_default();
    assert!(
        description.contains("no active delegation for this user"),
        "{description}"
    );
    let unknown = s.for_user("00000000-0000-4000-8000-000000000000", &[]);
    assert_eq!(refused(&unknown), (403, "invalid_grant"));
    assert_eq!(unknown.1["error_description"], none.1["error_description"]);
    assert_eq!(
        refused(&s.for_user("not-a-uuid", &[])),
        (400, "invalid_grant")
    );

    // The two parameters come together, with the one type served.
    let alone = s.token(&[("actor_token", &s.ada)]);
    assert_eq!(refused(&alone), (400, "invalid_request"));
    assert!(
        alone.1["error_description"]
            .as_str()
            .unwrap_or_default()
            .contains(USER_ID)
    );
    assert_eq!(
        refused(&s.token(&[("actor_token_type", USER_ID)])),
        (400, "invalid_request")
    );
    let other_type = [
        ("actor_token", s.ada.as_str()),
        ("actor_token_type", "urn:x"),
    ];
    assert_eq!(refused(&s.token(&other_type)), (400, "invalid_request"));

    // Scopes and expiry within the delegation.
    s.delegate(json!({"scopes": ["files:read"], "expires_at": "2099-01-01T00:00:00Z"}));
    let wide = s.for_user(&s.ada, &[("scope", "files:read files:write")]);
    assert_eq!(refused(&wide), (400, "invalid_scope"), "{}", wide.1);
    let (status, ok) = s.for_user(&s.ada, &[("scope", "files:read"), ("expires_in", "600")]);
    assert_eq!(
        (status, ok["expires_in"].as_u64()),
        (200, Some(600)),
        "{ok}"
    );
    // Another person's delegation does not let the agent act for bob.
    assert_eq!(refused(&s.for_user(&bob, &[])), (403, "invalid_grant"));

    // A deactivated delegator, and their token ends at once.
    let token = ok["access_token"].as_str().unwrap_or_default().to_owned();
    let deactivate = format!("/api/v1/users/{}/deactivate", s.ada);
    assert_eq!(call(&s.server, &s.admin, "POST", &deactivate, None).0, 204);
    assert_eq!(s.introspect(&token), json!({"active": false}));
    let gone = s.for_user(&s.ada, &[]);
    assert_eq!(refused(&gone), (403, "invalid_grant"));
    let description = gone.1["error_description"].as_str().unwrap_or_default();
    assert!(
        description.contains("delegator user is deactivated"),
        "{description}"
    );
    let reactivate = format!("/api/v1/users/{}/reactivate", s.ada);
    assert_eq!(call(&s.server, &s.admin, "POST", &reactivate, None).0, 204);
    let (status, back) = s.for_user(&s.ada, &[]);
    assert_eq!(
        status, 200,
        "the delegation outlives the deactivation: {back}"
    );

    // The agent's own M2M token is unchanged by require_consent and delegations.
    let (status, own) = s.token(&[]);
    assert_eq!(status, 200, "{own}");
    let seen = s.introspect(own["access_token"].as_str().unwrap_or_default());
    assert_eq!(seen["sub"].as_str(), Some(s.client_id.as_str()));
    assert_eq!(
        (seen["delegation_depth"].as_u64(), seen.get("delegation_id")),
        (Some(0), None)
    );
    assert_eq!(s.server.stop(), Some(0));
}

#[test]
fn the_json_agent_token_form_issues_the_same_token() {
    let s = setup();
    let delegation = s.delegate(json!({}));
    let post = |body: Value| {
        let response = http()
            .post(s.server.url("/oauth/agent-token"))
            .json(&body)
            .send()
            .unwrap_or_else(|err| panic!("{err}"));
        let no_store = response
            .headers()
            .get("cache-control")
            .is_some_and(|v| v.as_bytes() == b"no-store");
        let status = response.status().as_u16();
        assert!(no_store, "Cache-Control: no-store on {status}");
        (status, response.json::<Value>().unwrap_or(Value::Null))
    };
    let asked = json!({"client_id": s.client_id, "client_secret": s.secret,
                       "delegated_by_user_id": s.ada, "agent_type": "ephemeral",
                       "scope": "files:write", "task_id": "t-7", "max_operations": 3,
                       "intent_description": "tidy the shared folder"});
    let (status, issued) = post(asked.clone());
    assert_eq!(status, 200, "{issued}");
    assert_eq!(
        (
            issued["scope"].as_str(),
            issued["max_operations"].as_u64(),
            issued["task_id"].as_str()
        ),
        (Some("files:write"), Some(3), Some("t-7"))
    );
    let token = issued["access_token"].as_str().unwrap_or_default();
    let claims = verify_with_pyjwt(&s.server, token)
        .unwrap_or_else(|why| panic!("PyJWT refused the token: {why}"));
    assert_eq!(claims["sub"].as_str(), Some(s.ada.as_str()));
    assert_eq!(claims["act"]["sub"].as_str(), Some(s.client_id.as_str()));
    let seen = s.introspect(token);
    assert_eq!(seen["delegation_id"].as_str(), Some(delegation.as_str()));
    assert_eq!(seen["agent_type"], "ephemeral");

    let mut wrong = asked.clone();
    wrong["client_secret"] = json!("wrong");
    assert_eq!(refused(&post(wrong)), (401, "invalid_client"));
    let mut malformed = asked.clone();
    malformed["delegated_by_user_id"] = json!("ada");
    assert_eq!(refused(&post(malformed)), (400, "invalid_grant"));
    let mut unknown_member = asked.clone();
    unknown_member["colour"] = json!("blue");
    let answer = post(unknown_member);
    assert_eq!(refused(&answer), (400, "invalid_request"));
    assert!(
        answer.1["error_description"]
            .as_str()
            .unwrap_or_default()
            .contains("colour")
    );
    let mut missing = asked;
    missing
        .as_object_mut()
        .map(|o| o.remove("delegated_by_user_id"));
    assert_eq!(refused(&post(missing)), (400, "invalid_request"));
    let revoke = format!("/api/v1/delegations/{delegation}");
    assert_eq!(
        as_user(&s.server, &s.ada_key, "DELETE", &revoke, None).0,
        204
    );
    let after = json!({"client_id": s.client_id, "client_secret": s.secret,
                       "delegated_by_user_id": s.ada});
    assert_eq!(refused(&post(after)), (403, "invalid_grant"));
    assert_eq!(s.server.stop(), Some(0));
}
