//! RFC 8693 token exchange over real HTTP: an agent trades a person's user id, the
//! person's own writ token, or an agent token acting for them (delegated on down a chain
//! of sub-agents) for a token on the person's behalf. Each level narrows scopes, audience,
//! expiry and operations; `act` nests the chain in the JWT (verified by PyJWT) and
//! introspection shows it; the chain is as deep as its agents' policies allow; revoking a
//! token, the delegation or an agent in the chain ends every token below at once; every
//! refusal has its exact status and code. A small identity provider on loopback (its own
//! ES256 key, its JWKS over HTTP or in a file) shows a trusted issuer's JWT exchanged for
//! the writ user with its email, and every way such a JWT is refused. An operation done
//! down a chain is told by `writ audit` as the person's, through each agent in turn, the
//! same from record 1 as from a snapshot. No token outlives the agent that holds it.

use serde_json::{Value, json};

use crate::delegation::{api_key, as_user, person};
use crate::kit::*;
use crate::tokens::verify_with_pyjwt;

pub const EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
pub const USER_ID: &str = "urn:writ:params:oauth:token-type:user-id";
pub const ACCESS_TOKEN: &str = "urn:ietf:params:oauth:token-type:access_token";

/// An agent's credentials.
pub struct Agent {
    pub id: String,
    pub secret: String,
}

pub struct Setup {
    pub dir: tempfile::TempDir,
    pub server: Server,
    pub admin: String,
    pub ada: String,
    pub ada_key: String,
    /// Ada delegates to `a`; `b` and `c` are sub-agents (`c` holds `files:read` only).
    pub a: Agent,
    pub b: Agent,
    pub c: Agent,
}

fn agent(server: &Server, admin: &str, name: &str, scopes: &[&str]) -> Agent {
    let body = json!({"name": name, "scopes": scopes,
                      "grant_types": ["client_credentials", EXCHANGE]});
    let (id, secret) = register_agent(server, admin, body);
    Agent { id, secret }
}

/// A server started with `extra`, ada with an API key, and three agents; ada delegates
/// `files:read files:write` to `a`.
pub fn setup_with(extra: &[&str], env: &[(&str, &str)]) -> Setup {
    let dir = temp();
    let server = Server::start_with(dir.path(), extra, env);
    let admin = server.admin_token();
    let ada = person(&server, &admin, "ada@example.com");
    let (ada_key, _) = api_key(&server, &admin, &ada);
    let all = ["files:read", "files:write", "mail:read"];
    let a = agent(&server, &admin, "orchestrator", &all);
    let b = agent(&server, &admin, "planner", &all);
    let c = agent(&server, &admin, "reader", &["files:read"]);
    let s = Setup {
        dir,
        server,
        admin,
        ada,
        ada_key,
        a,
        b,
        c,
    };
    s.delegate(&s.a, json!({"scopes": ["files:read", "files:write"]}));
    s
}

fn setup() -> Setup {
    setup_with(&[], &[])
}

impl Setup {
    /// Ada delegates to `to`; the delegation's id.
    pub fn delegate(&self, to: &Agent, body: Value) -> String {
        let path = format!("/api/v1/agents/{}/delegations", to.id);
        let (status, granted) = as_user(&self.server, &self.ada_key, "POST", &path, Some(body));
        assert_eq!(status, 201, "{granted}");
        text(&granted["id"])
    }

    /// `/oauth/token` as `client` with `form`.
    pub fn token(&self, client: &Agent, form: &[(&str, &str)]) -> (u16, Value) {
        let response = http()
            .post(self.server.url("/oauth/token"))
            .basic_auth(&client.id, Some(&client.secret))
            .form(form)
            .send()
            .unwrap_or_else(|err| panic!("{err}"));
        let status = response.status().as_u16();
        (status, response.json().unwrap_or(Value::Null))
    }

    /// A token exchange by `client` of `subject` (of `subject_type`) with `more`.
    pub fn exchange(
        &self,
        client: &Agent,
        subject: &str,
        subject_type: &str,
        more: &[(&str, &str)],
    ) -> (u16, Value) {
        let mut form = vec![
            ("grant_type", EXCHANGE),
            ("subject_token", subject),
            ("subject_token_type", subject_type),
        ];
        form.extend_from_slice(more);
        self.token(client, &form)
    }

    /// `exchange` that must succeed; the answer.
    pub fn exchanged(
        &self,
        client: &Agent,
        subject: &str,
        subject_type: &str,
        more: &[(&str, &str)],
    ) -> Value {
        let (status, answer) = self.exchange(client, subject, subject_type, more);
        assert_eq!(status, 200, "{answer}");
        assert_eq!(answer["issued_token_type"], ACCESS_TOKEN, "{answer}");
        answer
    }

    /// `client`'s own token (client_credentials).
    fn own_token(&self, client: &Agent) -> String {
        let (status, issued) = self.token(client, &[("grant_type", "client_credentials")]);
        assert_eq!(status, 200, "{issued}");
        text(&issued["access_token"])
    }

    pub fn introspect(&self, token: &str) -> Value {
        introspect(&self.server, &self.a.id, &self.a.secret, token)
    }

    fn active(&self, token: &str) -> bool {
        self.introspect(token)["active"] == true
    }

    /// RFC 7009 revocation of `token` by `client`.
    fn revoke(&self, client: &Agent, token: &str) {
        let status = http()
            .post(self.server.url("/oauth/revoke"))
            .basic_auth(&client.id, Some(&client.secret))
            .form(&[("token", token)])
            .send()
            .map(|r| r.status().as_u16())
            .unwrap_or_else(|err| panic!("{err}"));
        assert_eq!(status, 200);
    }
}

pub fn text(value: &Value) -> String {
    value.as_str().unwrap_or_default().to_owned()
}

pub fn refused(answer: &(u16, Value)) -> (u16, &str) {
    (answer.0, answer.1["error"].as_str().unwrap_or_default())
}

fn says(answer: &(u16, Value), words: &str) -> bool {
    answer.1["error_description"]
        .as_str()
        .is_some_and(|d| d.contains(words))
}

#[test]
fn a_user_id_is_exchanged_for_a_token_on_the_person_s_behalf() {
    let s = setup();
    let issued = s.exchanged(&s.a, &s.ada, USER_ID, &[("scope", "files:read")]);
    assert_eq!(issued["scope"], "files:read");
    let token = text(&issued["access_token"]);
    let claims = verify_with_pyjwt(&s.server, &token).unwrap_or_else(|why| panic!("{why}"));
    assert_eq!(claims["sub"].as_str(), Some(s.ada.as_str()));
    assert_eq!(claims["act"], json!({"sub": s.a.id}));
    let seen = s.introspect(&token);
    assert_eq!(
        (
            &seen["delegated_by"],
            &seen["delegation_chain"],
            &seen["delegation_depth"]
        ),
        (&json!(s.ada), &json!([s.a.id]), &json!(1)),
        "{seen}"
    );
    assert_eq!(s.server.stop(), Some(0));
}

#[test]
fn a_person_s_own_token_is_exchanged_under_their_delegation_and_dies_with_it() {
    let s = setup();
    let mint = |body: Value| {
        as_user(
            &s.server,
            &s.ada_key,
            "POST",
            "/api/v1/me/tokens",
            Some(body),
        )
    };
    let (status, own) = mint(json!({"client_id": s.a.id, "scope": "files:read files:write"}));
    assert_eq!(status, 200, "{own}");
    assert_eq!(own["expires_in"], 300, "short-lived by default");
    let user_token = text(&own["access_token"]);
    let seen = s.introspect(&user_token);
    assert_eq!(
        (&seen["sub"], &seen["delegation_depth"]),
        (&json!(s.ada), &json!(0)),
        "{seen}"
    );

    let issued = s.exchanged(&s.a, &user_token, ACCESS_TOKEN, &[]);
    assert_eq!(issued["scope"], "files:read files:write");
    assert!(
        issued["expires_in"].as_i64().is_some_and(|t| t <= 300),
        "{issued}"
    );
    let obo = text(&issued["access_token"]);
    let seen = s.introspect(&obo);
    assert_eq!(
        (&seen["sub"], &seen["delegation_chain"]),
        (&json!(s.ada), &json!([s.a.id])),
        "{seen}"
    );
    // b has no delegation from ada: her token does not stand in for one.
    let none = s.exchange(&s.b, &user_token, ACCESS_TOKEN, &[]);
    assert_eq!(refused(&none), (403, "invalid_grant"), "{}", none.1);
    assert!(says(&none, "no active delegation for this user"));
    let wider = s.exchange(&s.a, &user_token, ACCESS_TOKEN, &[("scope", "mail:read")]);
    assert_eq!(refused(&wider), (400, "invalid_scope"), "{}", wider.1);

    // Refusals of the minting route itself.
    assert_eq!(mint(json!({"client_id": "agt_missing"})).0, 404);
    assert_eq!(mint(json!({"client_id": s.a.id, "scope": "nope"})).0, 400);
    assert_eq!(mint(json!({"client_id": s.a.id, "expires_in": 0})).0, 400);
    let by_admin = call(
        &s.server,
        &s.admin,
        "POST",
        "/api/v1/me/tokens",
        Some(json!({"client_id": s.a.id})),
    );
    assert_eq!(by_admin.0, 403, "only a person has a token of their own");

    // Revoking the person's token revokes what was exchanged from it.
    s.revoke(&s.a, &user_token);
    assert!(!s.active(&obo));
    let gone = s.exchange(&s.a, &user_token, ACCESS_TOKEN, &[]);
    assert_eq!(refused(&gone), (400, "invalid_grant"), "{}", gone.1);
    assert_eq!(s.server.stop(), Some(0));
}

/// Ada → a (T1) → b (T2) → c (T3), with the terms each level asks for.
struct Chain {
    t1: String,
    t2: String,
    t3: String,
}

fn three_levels(s: &Setup) -> Chain {
    let issuer = s.server.base.clone();
    let t1 = s.exchanged(
        &s.a,
        &s.ada,
        USER_ID,
        &[
            ("scope", "files:read files:write"),
            ("resource", &issuer),
            ("audience", "https://files.example"),
            ("max_operations", "10"),
            ("expires_in", "1800"),
            ("task_id", "tidy-shared-folder"),
        ],
    );
    // b was handed T1 and exchanges it with its own credentials.
    let t2 = s.exchanged(
        &s.b,
        &text(&t1["access_token"]),
        ACCESS_TOKEN,
        &[
            ("resource", &issuer),
            ("max_operations", "50"),
            ("expires_in", "3600"),
        ],
    );
    // b delegates T2 to c, naming c by c's own token.
    let c_own = s.own_token(&s.c);
    let t3 = s.exchanged(
        &s.b,
        &text(&t2["access_token"]),
        ACCESS_TOKEN,
        &[
            ("actor_token", &c_own),
            ("actor_token_type", ACCESS_TOKEN),
            ("max_operations", "3"),
        ],
    );
    assert_eq!(t1["scope"], "files:read files:write");
    assert_eq!(
        t2["scope"], "files:read files:write",
        "the parent's, unasked"
    );
    assert_eq!(t3["scope"], "files:read", "c holds files:read only");
    assert_eq!(
        [&t1, &t2, &t3].map(|t| t["max_operations"].as_u64()),
        [Some(10), Some(10), Some(3)],
        "capped at what the parent has left"
    );
    let ttl = |t: &Value| t["expires_in"].as_i64().unwrap_or(i64::MAX);
    assert_eq!(ttl(&t1), 1800);
    assert!(ttl(&t2) <= 1800 && ttl(&t2) > 1700, "capped at T1's: {t2}");
    assert!(ttl(&t3) <= ttl(&t2), "b's default 900 s, within T2's: {t3}");
    assert_eq!(t3["task_id"], "tidy-shared-folder", "inherited");
    Chain {
        t1: text(&t1["access_token"]),
        t2: text(&t2["access_token"]),
        t3: text(&t3["access_token"]),
    }
}

#[test]
fn a_three_level_chain_narrows_at_every_level_and_nests_act() {
    let s = setup();
    let chain = three_levels(&s);
    let claims = verify_with_pyjwt(&s.server, &chain.t3).unwrap_or_else(|why| panic!("{why}"));
    assert_eq!(claims["sub"].as_str(), Some(s.ada.as_str()));
    assert_eq!(claims["client_id"].as_str(), Some(s.c.id.as_str()));
    assert_eq!(
        claims["act"],
        json!({"sub": s.c.id, "act": {"sub": s.b.id, "act": {"sub": s.a.id}}}),
        "RFC 8693 §4.1: the newest actor outermost"
    );
    let seen = s.introspect(&chain.t3);
    assert_eq!(seen["delegation_chain"], json!([s.c.id, s.b.id, s.a.id]));
    assert_eq!(seen["delegation_depth"], 3);
    assert_eq!(seen["delegated_by"].as_str(), Some(s.ada.as_str()));
    assert_eq!(
        seen["aud"],
        json!([s.server.base]),
        "T2's narrowed audience"
    );
    assert_eq!(
        s.introspect(&chain.t1)["delegation_id"],
        seen["delegation_id"],
        "the whole chain acts under ada's one delegation"
    );

    // Nothing widens on the way down.
    let t2 = &chain.t2;
    let wider = s.exchange(&s.c, t2, ACCESS_TOKEN, &[("scope", "files:write")]);
    assert_eq!(refused(&wider), (400, "invalid_scope"), "{}", wider.1);
    let other = s.exchange(
        &s.c,
        t2,
        ACCESS_TOKEN,
        &[("resource", "https://files.example")],
    );
    assert_eq!(refused(&other), (400, "invalid_target"), "{}", other.1);
    let outside = s.exchange(&s.b, &chain.t1, ACCESS_TOKEN, &[("scope", "mail:read")]);
    assert_eq!(refused(&outside), (400, "invalid_scope"), "{}", outside.1);

    // Revoking level 1 ends levels 2 and 3 at once.
    s.revoke(&s.a, &chain.t1);
    assert_eq!(
        [&chain.t1, &chain.t2, &chain.t3].map(|t| s.active(t)),
        [false, false, false]
    );
    let again = s.exchange(&s.c, &chain.t2, ACCESS_TOKEN, &[]);
    assert_eq!(refused(&again), (400, "invalid_grant"), "{}", again.1);

    let Setup { dir, server, .. } = s;
    assert_eq!(server.stop(), Some(0));
    let run = writ(&["verify", &dir.path().display().to_string()]);
    assert_eq!(run.code, Some(0), "{}{}", run.stdout, run.stderr);
    let export = dir.path().join("chain.jsonl");
    export_to(dir.path(), &export);
    let records = std::fs::read_to_string(&export).unwrap_or_default();
    let events: Vec<Value> = records
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .map(|record| record["event"].clone())
        .collect();
    let issued: Vec<&Value> = events
        .iter()
        .filter(|e| e["type"] == "TokenIssued" && e["data"]["grant_type"] == EXCHANGE)
        .map(|e| &e["data"])
        .collect();
    assert_eq!(issued.len(), 3);
    assert_eq!(issued[2]["parent_jti"], issued[1]["jti"]);
    assert_eq!(issued[1]["parent_jti"], issued[0]["jti"]);
    assert_eq!(issued[2]["actors"].as_array().map(Vec::len), Some(3));
    let causes: Vec<&Value> = events
        .iter()
        .filter(|e| e["type"] == "TokenRevoked")
        .map(|e| &e["data"]["cause"]["kind"])
        .collect();
    assert_eq!(causes, ["requested", "parent_revoked", "parent_revoked"]);
}

#[test]
fn revoking_the_delegation_or_disabling_an_agent_in_the_chain_ends_everything_below() {
    let s = setup();
    let chain = three_levels(&s);
    let disable = format!("/api/v1/agents/{}/disable", s.b.id);
    assert_eq!(call(&s.server, &s.admin, "POST", &disable, None).0, 204);
    assert_eq!(
        [&chain.t1, &chain.t2, &chain.t3].map(|t| s.active(t)),
        [true, false, false],
        "a's own token for ada stays"
    );
    let enable = format!("/api/v1/agents/{}/enable", s.b.id);
    assert_eq!(call(&s.server, &s.admin, "POST", &enable, None).0, 204);

    let chain = three_levels(&s);
    let (_, mine) = as_user(&s.server, &s.ada_key, "GET", "/api/v1/me/delegations", None);
    let delegation = text(&mine[0]["id"]);
    let revoke = format!("/api/v1/delegations/{delegation}");
    assert_eq!(
        as_user(&s.server, &s.ada_key, "DELETE", &revoke, None).0,
        204
    );
    assert_eq!(
        [&chain.t1, &chain.t2, &chain.t3].map(|t| s.active(t)),
        [false, false, false]
    );
    assert_eq!(s.server.stop(), Some(0));
}

#[test]
fn a_chained_operation_is_told_offline_as_the_person_s_through_each_agent_in_turn() {
    about_the_embedded_store("`writ audit` reads an embedded data directory only");
    let s = setup();
    let t1 = s.exchanged(&s.a, &s.ada, USER_ID, &[]);
    let t2 = s.exchanged(&s.b, &text(&t1["access_token"]), ACCESS_TOKEN, &[]);
    let t2 = text(&t2["access_token"]);
    let jti = text(&s.introspect(&t2)["jti"]);
    let Setup {
        dir,
        server,
        ada,
        a,
        b,
        ..
    } = s;
    // A stop writes a snapshot: the operation below lands after it.
    assert_eq!(server.stop(), Some(0));
    let server = Server::start(dir.path(), &[]);
    let body = json!({"operation": "read", "resource": "report.pdf"});
    let (status, answer) = call(&server, &t2, "POST", "/api/v1/operations", Some(body));
    assert_eq!(status, 200, "{answer}");
    assert_eq!(server.stop(), Some(0));

    let data_dir = dir.path().display().to_string();
    let full = writ(&["audit", "--data-dir", &data_dir]);
    assert_eq!(full.code, Some(0), "{}", full.stderr);
    assert!(
        full.stderr.contains("replayed from record 1"),
        "{}",
        full.stderr
    );
    let line = full
        .stdout
        .lines()
        .find(|line| line.contains("did OperationRecorded"))
        .unwrap_or_else(|| panic!("no operation in the trail:\n{}", full.stdout));
    let told = format!(
        "user {ada}, via agent {} then agent {}, did OperationRecorded on read report.pdf with token {jti}, at ",
        a.id, b.id
    );
    assert!(line.starts_with(&told), "{line}\nwanted {told}...");
    assert!(
        line.ends_with(", succeeded") || line.contains(", succeeded, seq "),
        "{line}"
    );
    assert!(
        !full.stdout.contains("ada@example.com"),
        "the trail names people by id"
    );

    let seq: u64 = line
        .rsplit_once(", seq ")
        .and_then(|(_, rest)| rest.split(',').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no seq in {line}"));
    let from = writ(&[
        "audit",
        "--data-dir",
        &data_dir,
        "--from-seq",
        &seq.to_string(),
    ]);
    assert_eq!(from.code, Some(0), "{}", from.stderr);
    let snapshot: Option<u64> = from
        .stderr
        .rsplit_once("replayed from the snapshot at record ")
        .and_then(|(_, n)| n.trim().parse().ok());
    assert!(
        snapshot.is_some_and(|at| at < seq),
        "a snapshot before the operation: {}",
        from.stderr
    );
    assert_eq!(
        from.stdout.lines().next(),
        Some(line),
        "from a snapshot, the same sentence"
    );
}

#[test]
fn no_token_outlives_the_agent_holding_it_whatever_it_asks() {
    use base64::Engine as _;
    let s = setup();
    let now = chrono::Utc::now().timestamp();
    let ends = now + 300;
    let expires_at = chrono::DateTime::from_timestamp(ends, 0)
        .map(|t| t.to_rfc3339())
        .unwrap_or_else(|| panic!("a time"));
    let body = json!({"name": "short-lived", "scopes": ["files:read"],
                      "grant_types": ["client_credentials", EXCHANGE],
                      "expires_at": expires_at});
    let (id, secret) = register_agent(&s.server, &s.admin, body);
    let short = Agent { id, secret };
    s.delegate(&short, json!({}));
    // Asked for an hour, each kind of token ends by the agent's expiry, not before it.
    let capped = |answer: &Value| {
        let ttl = answer["expires_in"].as_i64().unwrap_or(i64::MAX);
        assert!((1..=300).contains(&ttl), "capped, not refused: {answer}");
        let token = text(&answer["access_token"]);
        let payload = token.split('.').nth(1).unwrap_or_default();
        let claims: Value = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .unwrap_or_else(|| panic!("a JWT: {token}"));
        let exp = claims["exp"].as_i64().unwrap_or(i64::MAX);
        assert!(exp <= ends && exp > now, "exp {exp}, agent ends {ends}");
        assert_eq!(s.introspect(&token)["exp"], json!(exp));
    };
    let hour = ("expires_in", "3600");
    let (status, m2m) = s.token(&short, &[("grant_type", "client_credentials"), hour]);
    assert_eq!(status, 200, "{m2m}");
    capped(&m2m);
    let on_behalf = [
        ("grant_type", "client_credentials"),
        ("actor_token", s.ada.as_str()),
        ("actor_token_type", USER_ID),
        hour,
    ];
    let (status, obo) = s.token(&short, &on_behalf);
    assert_eq!(status, 200, "{obo}");
    capped(&obo);
    capped(&s.exchanged(&short, &s.ada, USER_ID, &[hour]));
    let (status, own) = as_user(
        &s.server,
        &s.ada_key,
        "POST",
        "/api/v1/me/tokens",
        Some(json!({"client_id": short.id, "expires_in": 3600})),
    );
    assert_eq!(status, 200, "{own}");
    capped(&own);
    assert_eq!(s.server.stop(), Some(0));
}

#[test]
fn deactivating_the_person_ends_the_whole_chain() {
    let s = setup();
    let chain = three_levels(&s);
    let deactivate = format!("/api/v1/users/{}/deactivate", s.ada);
    assert_eq!(call(&s.server, &s.admin, "POST", &deactivate, None).0, 204);
    assert_eq!(
        [&chain.t1, &chain.t2, &chain.t3].map(|t| s.active(t)),
        [false, false, false]
    );
    let gone = s.exchange(&s.a, &s.ada, USER_ID, &[]);
    assert_eq!(refused(&gone), (403, "invalid_grant"));
    assert!(says(&gone, "delegator user is deactivated"), "{}", gone.1);
    assert_eq!(s.server.stop(), Some(0));
}

#[test]
fn a_chain_deeper_than_an_agent_s_max_delegation_depth_is_refused() {
    let s = setup();
    let policy = format!("/api/v1/agents/{}/policy", s.a.id);
    let limit = json!({"max_delegation_depth": 2});
    assert_eq!(
        call(&s.server, &s.admin, "PUT", &policy, Some(limit)).0,
        204
    );
    let t1 = text(&s.exchanged(&s.a, &s.ada, USER_ID, &[])["access_token"]);
    let t2 = text(&s.exchanged(&s.b, &t1, ACCESS_TOKEN, &[])["access_token"]);
    let deep = s.exchange(&s.c, &t2, ACCESS_TOKEN, &[]);
    assert_eq!(refused(&deep), (403, "invalid_grant"), "{}", deep.1);
    assert!(says(&deep, "max_delegation_depth"), "{}", deep.1);
    assert!(
        says(&deep, &format!("agent {} allows at most 2", s.a.id)),
        "{}",
        deep.1
    );

    // 0: the agent acts for nobody, not even directly.
    let none = json!({"max_delegation_depth": 0});
    assert_eq!(call(&s.server, &s.admin, "PUT", &policy, Some(none)).0, 204);
    let direct = s.exchange(&s.a, &s.ada, USER_ID, &[]);
    assert_eq!(refused(&direct), (403, "invalid_grant"), "{}", direct.1);
    assert_eq!(s.server.stop(), Some(0));
}

#[test]
fn token_exchange_refusals_have_their_exact_status_and_code() {
    let s = setup();
    let bob = person(&s.server, &s.admin, "bob@example.com");
    let check = |answer: (u16, Value), expected: (u16, &str), words: &str| {
        assert_eq!(refused(&answer), expected, "{}", answer.1);
        assert!(says(&answer, words), "`{words}` in {}", answer.1);
    };
    check(
        s.exchange(&s.a, &bob, USER_ID, &[]),
        (403, "invalid_grant"),
        "no active delegation for this user",
    );
    check(
        s.exchange(&s.a, "ada", USER_ID, &[]),
        (400, "invalid_grant"),
        "not a user id",
    );
    check(
        s.exchange(&s.a, &s.ada, "urn:x", &[]),
        (400, "invalid_request"),
        USER_ID,
    );
    check(
        s.token(&s.a, &[("grant_type", EXCHANGE), ("subject_token", &s.ada)]),
        (400, "invalid_request"),
        "subject_token_type is missing",
    );
    check(
        s.token(&s.a, &[("grant_type", EXCHANGE)]),
        (400, "invalid_request"),
        "subject_token is missing",
    );
    check(
        s.exchange(&s.a, "not.a.token", ACCESS_TOKEN, &[]),
        (400, "invalid_grant"),
        "not an active token",
    );
    check(
        s.exchange(&s.a, &s.ada, USER_ID, &[("requested_token_type", "urn:x")]),
        (400, "invalid_request"),
        ACCESS_TOKEN,
    );
    let own = s.own_token(&s.a);
    check(
        s.exchange(&s.b, &own, ACCESS_TOKEN, &[]),
        (400, "invalid_grant"),
        "acts for no person",
    );

    let t1 = text(&s.exchanged(&s.a, &s.ada, USER_ID, &[])["access_token"]);
    check(
        s.exchange(&s.a, &t1, ACCESS_TOKEN, &[]),
        (400, "invalid_request"),
        "already holds subject_token",
    );
    // c may not name b as the actor for a token c does not hold.
    let b_own = s.own_token(&s.b);
    let as_b = [
        ("actor_token", b_own.as_str()),
        ("actor_token_type", ACCESS_TOKEN),
    ];
    check(
        s.exchange(&s.c, &t1, ACCESS_TOKEN, &as_b),
        (400, "invalid_request"),
        "only the agent holding subject_token",
    );
    check(
        s.exchange(
            &s.a,
            &t1,
            ACCESS_TOKEN,
            &[
                ("actor_token", t1.as_str()),
                ("actor_token_type", ACCESS_TOKEN),
            ],
        ),
        (400, "invalid_request"),
        "actor_token is not a live writ token",
    );
    check(
        s.exchange(&s.a, &t1, ACCESS_TOKEN, &[("actor_token", b_own.as_str())]),
        (400, "invalid_request"),
        "come together",
    );
    let t2 = text(&s.exchanged(&s.b, &t1, ACCESS_TOKEN, &[])["access_token"]);
    let a_own = s.own_token(&s.a);
    let as_a = [
        ("actor_token", a_own.as_str()),
        ("actor_token_type", ACCESS_TOKEN),
    ];
    check(
        s.exchange(&s.b, &t2, ACCESS_TOKEN, &as_a),
        (400, "invalid_grant"),
        "already acts in subject_token's chain",
    );

    // An agent not registered for token exchange.
    let plain = json!({"name": "plain", "scopes": ["files:read"],
                       "grant_types": ["client_credentials"]});
    let (id, secret) = register_agent(&s.server, &s.admin, plain);
    let plain = Agent { id, secret };
    assert_eq!(
        refused(&s.exchange(&plain, &t1, ACCESS_TOKEN, &[])),
        (400, "unauthorized_client")
    );
    // The JSON form still maps onto client_credentials on the person's behalf.
    let asked = json!({"client_id": s.a.id, "client_secret": s.a.secret,
                       "delegated_by_user_id": s.ada});
    let response = http()
        .post(s.server.url("/oauth/agent-token"))
        .json(&asked)
        .send()
        .unwrap_or_else(|err| panic!("{err}"));
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(s.server.stop(), Some(0));
}

/// A tiny identity provider on loopback: it serves its JWKS (ES256, a key made for the
/// test) at `/jwks` and signs JWTs with that key; it counts the fetches.
struct Issuer {
    url: String,
    address: std::net::SocketAddr,
    kid: String,
    key: jsonwebtoken::EncodingKey,
    jwks: String,
    fetches: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// An ES256 key: its signing key and its public JWK.
fn es256_key(kid: &str) -> (jsonwebtoken::EncodingKey, Value) {
    use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair as _};
    use base64::Engine as _;
    let rng = aws_lc_rs::rand::SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
        .unwrap_or_else(|err| panic!("{err}"));
    let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref())
        .unwrap_or_else(|err| panic!("{err}"));
    let point = pair.public_key().as_ref();
    let b64 = |bytes: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    let jwk = json!({"kty": "EC", "crv": "P-256", "x": b64(&point[1..33]), "y": b64(&point[33..65]),
                     "kid": kid, "alg": "ES256", "use": "sig"});
    (jsonwebtoken::EncodingKey::from_ec_der(pkcs8.as_ref()), jwk)
}

impl Issuer {
    fn start(url: &str) -> Issuer {
        use std::io::{BufRead as _, BufReader, Write as _};
        use std::sync::atomic::Ordering;
        writ::jose::install();
        let kid = "idp-key-1".to_owned();
        let (key, jwk) = es256_key(&kid);
        let jwks = json!({ "keys": [jwk] }).to_string();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("{e}"));
        let address = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
        let fetches = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let thread = std::thread::spawn({
            let (jwks, fetches, stop) = (jwks.clone(), fetches.clone(), stop.clone());
            move || {
                for stream in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(mut stream) = stream else { continue };
                    let mut reader = BufReader::new(&stream);
                    let mut request_line = String::new();
                    let _ = reader.read_line(&mut request_line);
                    let mut line = String::new();
                    while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                        line.clear();
                    }
                    let (status, body) = if request_line.starts_with("GET /jwks ") {
                        fetches.fetch_add(1, Ordering::SeqCst);
                        ("200 OK", jwks.as_str())
                    } else {
                        ("404 Not Found", "{}")
                    };
                    let _ = write!(
                        stream,
                        "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                        body.len()
                    );
                }
            }
        });
        Issuer {
            url: url.to_owned(),
            address,
            kid,
            key,
            jwks,
            fetches,
            stop,
            thread: Some(thread),
        }
    }

    fn jwks_url(&self) -> String {
        format!("http://{}/jwks", self.address)
    }

    /// A JWT from this issuer with `claims` over the defaults, signed with `key` (the
    /// issuer's own unless given) under `kid`.
    fn sign(&self, claims: Value, key: Option<&jsonwebtoken::EncodingKey>, kid: &str) -> String {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or_default();
        let mut all = json!({"iss": self.url, "sub": "idp|ada", "email": "ada@example.com",
                             "iat": now, "exp": now + 300});
        for (name, value) in claims.as_object().into_iter().flatten() {
            all[name] = value.clone();
        }
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
        header.kid = Some(kid.to_owned());
        jsonwebtoken::encode(&header, &all, key.unwrap_or(&self.key))
            .unwrap_or_else(|err| panic!("{err}"))
    }

    fn fetches(&self) -> usize {
        self.fetches.load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl Drop for Issuer {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = std::net::TcpStream::connect(self.address);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[test]
fn a_trusted_issuer_s_jwt_is_exchanged_for_the_writ_user_with_its_email() {
    let idp = Issuer::start("https://id.example");
    let trusted = format!("{}={}", idp.url, idp.jwks_url());
    let s = setup_with(&["--trusted-issuer", &trusted], &[]);
    assert!(
        s.server
            .banner
            .iter()
            .any(|l| l.contains("trusted issuer: https://id.example")),
        "{:?}",
        s.server.banner
    );
    const JWT: &str = "urn:ietf:params:oauth:token-type:jwt";
    let for_writ = json!({"aud": s.server.base});
    let issued = s.exchanged(&s.a, &idp.sign(for_writ.clone(), None, &idp.kid), JWT, &[]);
    assert!(
        issued["expires_in"].as_i64().is_some_and(|t| t <= 300),
        "never past the JWT: {issued}"
    );
    let token = text(&issued["access_token"]);
    let claims = verify_with_pyjwt(&s.server, &token).unwrap_or_else(|why| panic!("{why}"));
    assert_eq!(claims["sub"].as_str(), Some(s.ada.as_str()));
    assert_eq!(claims["act"], json!({"sub": s.a.id}));
    // No aud at all is accepted too, and the access_token type names a JWT as well.
    let no_aud = idp.sign(json!({}), None, &idp.kid);
    assert_eq!(s.exchange(&s.a, &no_aud, ACCESS_TOKEN, &[]).0, 200);

    let check = |subject: String, words: &str| {
        let answer = s.exchange(&s.a, &subject, JWT, &[]);
        assert_eq!(refused(&answer), (400, "invalid_grant"), "{}", answer.1);
        assert!(says(&answer, words), "`{words}` in {}", answer.1);
    };
    check(
        idp.sign(json!({"email": "eve@example.com"}), None, &idp.kid),
        "the external token's subject is not a writ user",
    );
    let (forged, _) = es256_key(&idp.kid);
    check(
        idp.sign(json!({}), Some(&forged), &idp.kid),
        "did not verify",
    );
    check(
        idp.sign(json!({"exp": 1_000_000_000}), None, &idp.kid),
        "expired",
    );
    check(
        idp.sign(json!({"aud": "https://mail.example"}), None, &idp.kid),
        "meant for another service",
    );
    check(
        idp.sign(json!({"email_verified": false}), None, &idp.kid),
        "not verified",
    );
    check(
        idp.sign(json!({"iss": "https://evil.example"}), None, &idp.kid),
        "not an active token",
    );
    check(
        idp.sign(json!({}), None, "idp-key-9"),
        "is not in the issuer's JWKS",
    );
    // The key says ES256: a token claiming HS256 with it is refused before any check.
    let mut hs = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    hs.kid = Some(idp.kid.clone());
    let claims = json!({"iss": idp.url, "email": "ada@example.com", "exp": 4_000_000_000_u64});
    let hmac = jsonwebtoken::encode(
        &hs,
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(idp.jwks.as_bytes()),
    )
    .unwrap_or_else(|err| panic!("{err}"));
    check(hmac, "its key is for ES256");
    assert_eq!(
        idp.fetches(),
        1,
        "an unknown kid does not refetch within the minute"
    );

    // Under no delegation: the same refusal as by user id.
    let (status, _) = s.exchange(&s.b, &idp.sign(for_writ, None, &idp.kid), JWT, &[]);
    assert_eq!(status, 403);
    assert_eq!(s.server.stop(), Some(0));
}

#[test]
fn a_trusted_issuer_s_keys_may_be_a_file_and_a_bad_one_stops_the_start() {
    let idp = Issuer::start("https://id.example");
    let keys = temp();
    let path = keys.path().join("idp.jwks");
    std::fs::write(&path, &idp.jwks).unwrap_or_else(|err| panic!("{err}"));
    let trusted = format!("{}={}", idp.url, path.display());
    let s = setup_with(&[], &[("WRIT_TRUSTED_ISSUERS", &trusted)]);
    let jwt = idp.sign(json!({}), None, &idp.kid);
    let issued = s.exchanged(&s.a, &jwt, ACCESS_TOKEN, &[]);
    assert_eq!(
        s.introspect(&text(&issued["access_token"]))["sub"],
        json!(s.ada)
    );
    assert_eq!(idp.fetches(), 0, "read from the file");
    assert_eq!(s.server.stop(), Some(0));

    let dir = temp();
    let missing = format!("{}={}", idp.url, keys.path().join("missing.jwks").display());
    let run = writ(&[
        "serve",
        "--data-dir",
        &dir.path().display().to_string(),
        "--listen",
        "127.0.0.1:0",
        "--trusted-issuer",
        &missing,
    ]);
    assert_eq!(run.code, Some(2), "{}", run.stderr);
    assert!(run.stderr.contains("missing.jwks"), "{}", run.stderr);
}

#[test]
fn a_token_exchanged_from_a_supervised_one_is_supervised_and_cannot_be_asked_autonomous() {
    let s = setup();
    // a is autonomous and may hold a stricter token: a supervised one for ada.
    let t1 = s.exchanged(&s.a, &s.ada, USER_ID, &[("agent_type", "supervised")]);
    assert_eq!(t1["agent_type"], "supervised", "{t1}");
    let t1 = text(&t1["access_token"]);
    // The attack: b, handed T1, asks for an autonomous child to shed the supervision.
    let laxer = s.exchange(&s.b, &t1, ACCESS_TOKEN, &[("agent_type", "autonomous")]);
    assert_eq!(refused(&laxer), (400, "invalid_request"), "{laxer:?}");
    assert!(
        says(
            &laxer,
            "subject_token is supervised, so a token exchanged from it is supervised too"
        ),
        "{laxer:?}"
    );
    // Unasked, the child inherits the supervision, and so does its own child.
    let t2 = s.exchanged(&s.b, &t1, ACCESS_TOKEN, &[]);
    assert_eq!(t2["agent_type"], "supervised", "{t2}");
    let c_own = s.own_token(&s.c);
    let t3 = s.exchanged(
        &s.b,
        &text(&t2["access_token"]),
        ACCESS_TOKEN,
        &[("actor_token", &c_own), ("actor_token_type", ACCESS_TOKEN)],
    );
    assert_eq!(t3["agent_type"], "supervised", "{t3}");
    assert_eq!(
        s.introspect(&text(&t3["access_token"]))["agent_type"],
        "supervised"
    );
}
