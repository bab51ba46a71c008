//! People's upstream sessions lent to an agent, end to end: a real MCP server (the Python
//! `mcp` SDK) whose tools take a bearer token it checks by RFC 7662 introspection at a real
//! OAuth provider (node-oidc-provider), people connecting their accounts there through
//! writ, and the gateway choosing whose token a call carries — the person's own grant,
//! then the shared one — under policy. Also: refreshes (in the background inside the
//! window, on demand when expired), a rejected refresh token breaking the connection
//! once, and no upstream token in the clear in the ledger, the snapshots or the log.

use serde_json::{Value, json};

use crate::delegation::{api_key, as_user, person};
use crate::gateway::{McpServer, allow_every_tool, register_server};
use crate::kit::*;
use crate::upstream::{RS_ID, RS_SECRET, Upstream, connect};

const USER_ID_TYPE: &str = "urn:writ:params:oauth:token-type:user-id";

/// A writ server, its upstream provider, the MCP server behind it and a bot agent.
struct World {
    writ: Server,
    home: Home,
    admin: String,
    upstream: Upstream,
    mcp: McpServer,
    server_id: String,
    client_id: String,
    secret: String,
}

/// A person with an API key, who delegated to the bot and lets it call any tool for them.
struct Person {
    id: String,
    key: String,
}

impl World {
    fn start(
        flags: &[&str],
        access_ttl: u64,
        tokens: Option<&std::path::Path>,
        log: Option<&std::path::Path>,
    ) -> World {
        let home = Home::embedded();
        let mut args = home.store_args();
        args.extend(flags.iter().map(|f| (*f).to_owned()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        World::start_at(home, &args, access_ttl, tokens, log)
    }

    /// `start` on the store of the pass (PostgreSQL in the second pass of tools/test.sh),
    /// not always the embedded one: read its ledger with the kit's `events_in_ledger`.
    fn start_on_pass_store(flags: &[&str], access_ttl: u64, tokens: &std::path::Path) -> World {
        let home = Home {
            dir: temp(),
            database: None,
        };
        World::start_at(home, flags, access_ttl, Some(tokens), None)
    }

    fn start_at(
        home: Home,
        args: &[&str],
        access_ttl: u64,
        tokens: Option<&std::path::Path>,
        log: Option<&std::path::Path>,
    ) -> World {
        let writ = Server::start_logged(home.dir.path(), args, &[("RUST_LOG", "debug")], log);
        let admin = writ.admin_token();
        let upstream = Upstream::start_logged(&writ, access_ttl, tokens);
        let introspection = upstream.introspection_url();
        let mcp = McpServer::start_with(
            "introspect",
            "",
            &[
                ("MCP_INTROSPECT_URL", introspection.as_str()),
                ("MCP_INTROSPECT_CLIENT_ID", RS_ID),
                ("MCP_INTROSPECT_CLIENT_SECRET", RS_SECRET),
            ],
        );
        let server_id = register_server(&writ, &admin, "slack", &mcp.url, upstream.registration());
        let bot =
            json!({"name": "slackbot", "scopes": ["chat"], "grant_types": ["client_credentials"]});
        let (client_id, secret) = register_agent(&writ, &admin, bot);
        allow_every_tool(&writ, &admin, &client_id);
        World {
            writ,
            home,
            admin,
            upstream,
            mcp,
            server_id,
            client_id,
            secret,
        }
    }

    fn person(&self, email: &str) -> Person {
        let id = person(&self.writ, &self.admin, email);
        let (key, _) = api_key(&self.writ, &self.admin, &id);
        let path = format!("/api/v1/agents/{}/delegations", self.client_id);
        let (status, granted) = as_user(&self.writ, &key, "POST", &path, None);
        assert_eq!(status, 201, "{granted}");
        let policy = json!({"policies": "@id(\"my-tools\") permit(principal, action, resource);"});
        let response = http()
            .put(self.writ.url(&format!("/api/v1/users/{id}/policy-set")))
            .header("x-api-key", &key)
            .json(&policy)
            .send()
            .map(|r| r.status().as_u16());
        assert_eq!(response.ok(), Some(204));
        Person { id, key }
    }

    /// The bot's token on the person's behalf.
    fn token_for(&self, who: &Person) -> String {
        let body: Value = http()
            .post(self.writ.url("/oauth/token"))
            .basic_auth(&self.client_id, Some(&self.secret))
            .form(&[
                ("grant_type", "client_credentials"),
                ("actor_token", who.id.as_str()),
                ("actor_token_type", USER_ID_TYPE),
            ])
            .send()
            .and_then(|r| r.json())
            .unwrap_or_else(|e| panic!("{e}"));
        body["access_token"]
            .as_str()
            .unwrap_or_else(|| panic!("{body}"))
            .to_owned()
    }

    /// `whoami` through the gateway for the person: the status and the answer.
    fn whoami(&self, who: &Person) -> (u16, Value) {
        let response = http()
            .post(
                self.writ
                    .url(&format!("/api/v1/proxy/{}/tools", self.server_id)),
            )
            .bearer_auth(self.token_for(who))
            .json(&json!({"tool_name": "whoami"}))
            .send()
            .unwrap_or_else(|e| panic!("{e}"));
        let status = response.status().as_u16();
        (status, response.json().unwrap_or(Value::Null))
    }

    /// Whose upstream account the MCP server saw, or the refusal's detail.
    fn seen_as(&self, who: &Person) -> String {
        match self.whoami(who) {
            (200, answer) => answer["result"]["content"][0]["text"]
                .as_str()
                .unwrap_or("")
                .to_owned(),
            (status, answer) => format!("{status} {}", answer["detail"].as_str().unwrap_or("")),
        }
    }

    fn connect(&self, who: &Person, login: &str) {
        let (status, connected) = connect(&self.writ, &who.key, &self.server_id, login);
        assert_eq!(
            (status, connected["status"].as_str()),
            (200, Some("active")),
            "{connected}"
        );
    }

    fn grant(&self, who: &Person, shared: bool) -> Value {
        let path = format!("/api/v1/agents/{}/session-grants", self.client_id);
        let body = json!({"server_id": self.server_id, "shared": shared});
        let (status, grant) = as_user(&self.writ, &who.key, "POST", &path, Some(body));
        assert_eq!(status, 201, "{grant}");
        grant
    }

    fn toggle(&self, who: &Person) -> bool {
        let path = format!("/api/v1/agents/{}/session-grants/toggle", self.client_id);
        let body = json!({"server_id": self.server_id});
        let (status, grant) = as_user(&self.writ, &who.key, "POST", &path, Some(body));
        assert_eq!(status, 200, "{grant}");
        grant["shared"]
            .as_bool()
            .unwrap_or_else(|| panic!("{grant}"))
    }

    fn visible_to(&self, who: &Person) -> Vec<(String, bool)> {
        let path = format!("/api/v1/agents/{}/session-grants", self.client_id);
        let (status, grants) = as_user(&self.writ, &who.key, "GET", &path, None);
        assert_eq!(status, 200, "{grants}");
        grants
            .as_array()
            .into_iter()
            .flatten()
            .map(|g| {
                (
                    g["user_id"].as_str().unwrap_or("").to_owned(),
                    g["shared"] == true,
                )
            })
            .collect()
    }

    fn connection_of(&self, who: &Person) -> Value {
        let (status, listed) = as_user(&self.writ, &who.key, "GET", "/api/v1/connections", None);
        assert_eq!(status, 200, "{listed}");
        listed[0].clone()
    }
}

#[test]
fn alice_shares_her_session_bob_falls_back_to_it_and_carol_s_own_grant_wins() {
    let world = World::start(&[], 3600, None, None);
    let (alice, bob, carol) = (
        world.person("alice@example.com"),
        world.person("bob@example.com"),
        world.person("carol@example.com"),
    );

    // Nobody has lent a session yet.
    assert_eq!(
        world.seen_as(&alice),
        "401 No credentials available for this server"
    );
    // Lending a session needs a connection.
    let path = format!("/api/v1/agents/{}/session-grants", world.client_id);
    let (status, refused) = as_user(
        &world.writ,
        &alice.key,
        "POST",
        &path,
        Some(json!({"server_id": world.server_id})),
    );
    assert_eq!(status, 409, "{refused}");

    world.connect(&alice, "alice");
    let personal = world.grant(&alice, false);
    assert_eq!(personal["shared"], false);
    assert_eq!(world.seen_as(&alice), "alice");
    assert_eq!(
        world.seen_as(&bob),
        "401 No credentials available for this server",
        "a personal grant serves only its person"
    );
    assert!(
        world.visible_to(&bob).is_empty(),
        "Bob never sees Alice's personal grant"
    );

    // Alice promotes it to shared: Bob falls back to it.
    assert!(world.toggle(&alice));
    assert_eq!(world.seen_as(&bob), "alice");
    assert_eq!(world.visible_to(&bob), vec![(alice.id.clone(), true)]);

    // Carol connects and lends her own: hers wins for her, Bob keeps Alice's.
    world.connect(&carol, "carol");
    world.grant(&carol, false);
    assert_eq!(world.seen_as(&carol), "carol");
    assert_eq!(world.seen_as(&bob), "alice");
    let mut carol_sees = world.visible_to(&carol);
    carol_sees.sort();
    let mut expected = vec![(alice.id.clone(), true), (carol.id.clone(), false)];
    expected.sort();
    assert_eq!(carol_sees, expected);

    // Toggling twice restores.
    assert!(!world.toggle(&alice));
    assert_eq!(
        world.seen_as(&bob),
        "401 No credentials available for this server"
    );
    assert!(world.toggle(&alice));
    assert_eq!(world.seen_as(&bob), "alice");

    // Revoking the grant leaves the delegation.
    let grant_id = personal["id"].as_str().unwrap_or_default();
    let (status, _) = as_user(
        &world.writ,
        &alice.key,
        "DELETE",
        &format!("/api/v1/session-grants/{grant_id}"),
        None,
    );
    assert_eq!(status, 204);
    assert_eq!(
        world.seen_as(&bob),
        "401 No credentials available for this server"
    );
    assert_eq!(
        world.seen_as(&alice),
        "401 No credentials available for this server"
    );
    let (_, delegations) = as_user(
        &world.writ,
        &alice.key,
        "GET",
        "/api/v1/me/delegations",
        None,
    );
    assert_eq!(delegations[0]["status"], "active", "{delegations}");

    // The ledger tells whose session each call used.
    let (status, trail) = call(
        &world.writ,
        &world.admin,
        "GET",
        "/api/v1/audit?action=ToolCallCompleted",
        None,
    );
    assert_eq!(status, 200, "{trail}");
    let text = trail.to_string();
    assert!(
        text.contains(&format!("with the upstream session of user {}", alice.id)),
        "{trail}"
    );
    assert!(
        text.contains(&format!("with the upstream session of user {}", carol.id)),
        "{trail}"
    );
    assert_eq!(world.mcp.calls().len(), 5, "{:?}", world.mcp.calls());
}

#[test]
fn a_deleted_connection_is_401_oauth_session_not_found() {
    let world = World::start(&[], 3600, None, None);
    let alice = world.person("alice@example.com");
    world.connect(&alice, "alice");
    world.grant(&alice, true);
    let path = format!("/api/v1/connections/{}", world.server_id);
    let (status, _) = as_user(&world.writ, &alice.key, "DELETE", &path, None);
    assert_eq!(status, 204);
    assert_eq!(world.seen_as(&alice), "401 OAuth session not found");
}

/// The last access and refresh token the provider logged issuing to `log`.
fn last_tokens(log: &std::path::Path) -> (String, String) {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let last = |kind: &str| {
        text.lines()
            .rev()
            .find_map(|l| l.strip_prefix(kind))
            .unwrap_or_else(|| panic!("no {kind}in {text}"))
            .to_owned()
    };
    (last("access "), last("refresh "))
}

impl World {
    /// An admin's DELETE of a connection, `query` naming the person; the status and answer.
    fn admin_deletes(&self, query: &str) -> (u16, Value) {
        let path = format!("/api/v1/connections/{}{query}", self.server_id);
        let response = http()
            .delete(self.writ.url(&path))
            .bearer_auth(&self.admin)
            .send()
            .unwrap_or_else(|e| panic!("{e}"));
        let status = response.status().as_u16();
        (status, response.json().unwrap_or(Value::Null))
    }

    fn delete_connection(&self, who: &Person) {
        let path = format!("/api/v1/connections/{}", self.server_id);
        let (status, body) = as_user(&self.writ, &who.key, "DELETE", &path, None);
        assert_eq!(status, 204, "{body}");
    }

    /// The outcomes of the upstream revocations in the audit trail, oldest first.
    fn revocations(&self) -> Vec<String> {
        let (status, trail) = call(
            &self.writ,
            &self.admin,
            "GET",
            "/api/v1/audit?action=UpstreamRevocationCompleted",
            None,
        );
        assert_eq!(status, 200, "{trail}");
        trail["entries"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|e| e["outcome"].as_str().unwrap_or("").to_owned())
            .collect()
    }

    /// Polls the trail (at most 60 s) until `done` holds for the revocations' outcomes.
    fn await_revocations(&self, done: impl Fn(&[String]) -> bool) -> Vec<String> {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            let outcomes = self.revocations();
            if done(&outcomes) {
                return outcomes;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "not recorded in time: {outcomes:?}"
            );
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }
}

const REVOKED_BOTH: [&str; 2] = [
    "refresh token revoked upstream (attempt 1)",
    "access token revoked upstream (attempt 1)",
];

/// Stops writ and checks its ledger: `kind` recorded `count` times, and `writ verify` holds.
fn stop_and_verify(world: World, kind: &str, count: usize) {
    let World {
        writ: server, home, ..
    } = world;
    assert_eq!(server.stop(), Some(0));
    assert_eq!(events_in_ledger(home.dir.path(), kind), count);
    let dir = home.dir.path().display().to_string();
    let verified = writ(&["verify", &dir]);
    assert_eq!(verified.code, Some(0), "{}", verified.stderr);
}

#[test]
fn a_deleted_connection_s_upstream_tokens_are_revoked_at_the_provider() {
    let dir = temp();
    let tokens = dir.path().join("tokens.log");
    let world = World::start_on_pass_store(&[], 3600, &tokens);
    let alice = world.person("alice@example.com");
    world.connect(&alice, "alice");
    let (access, refresh) = last_tokens(&tokens);
    assert!(world.upstream.active(&access) && world.upstream.active(&refresh));

    world.delete_connection(&alice);
    let outcomes = world.await_revocations(|outcomes| outcomes.len() >= 2);
    assert_eq!(outcomes, REVOKED_BOTH);
    assert!(
        !world.upstream.active(&refresh),
        "the refresh token is dead upstream"
    );
    assert!(
        !world.upstream.active(&access),
        "the access token is dead upstream"
    );
    stop_and_verify(world, "UpstreamRevocationCompleted", 2);
}

#[test]
fn erasing_a_person_revokes_their_upstream_tokens_at_the_provider() {
    let dir = temp();
    let tokens = dir.path().join("tokens.log");
    let world = World::start_on_pass_store(&[], 3600, &tokens);
    let alice = world.person("alice@example.com");
    world.connect(&alice, "alice");
    let (access, refresh) = last_tokens(&tokens);
    let path = format!("/api/v1/users/{}/erase", alice.id);
    let (status, erased) = call(&world.writ, &world.admin, "POST", &path, None);
    assert_eq!(status, 200, "{erased}");
    let outcomes = world.await_revocations(|outcomes| outcomes.len() >= 2);
    assert_eq!(outcomes, REVOKED_BOTH);
    assert!(!world.upstream.active(&refresh) && !world.upstream.active(&access));
    stop_and_verify(world, "ConnectionDeleted", 1);
}

#[test]
fn a_revocation_failed_while_the_provider_was_down_is_retried_until_it_lands() {
    let dir = temp();
    let tokens = dir.path().join("tokens.log");
    let world = World::start_on_pass_store(
        &["--upstream-revocation-retry-seconds-min", "1"],
        3600,
        &tokens,
    );
    let alice = world.person("alice@example.com");
    world.connect(&alice, "alice");
    let (access, refresh) = last_tokens(&tokens);

    world.upstream.revocation_down(true);
    // An admin deletes it, naming whose it is.
    let (status, refused) = world.admin_deletes("");
    assert_eq!(
        (status, refused["detail"].as_str()),
        (
            400,
            Some("user_id: an admin names whose connection to delete")
        ),
        "{refused}"
    );
    let (status, deleted) = world.admin_deletes(&format!("?user_id={}", alice.id));
    assert_eq!(status, 204, "{deleted}");
    let failed = world.await_revocations(|outcomes| outcomes.len() >= 2);
    let down = "revocation failed (attempt 1: temporarily_unavailable: down for maintenance)";
    assert_eq!(
        failed[..2],
        [
            format!("refresh token {down}"),
            format!("access token {down}")
        ],
    );
    assert!(world.upstream.active(&refresh) && world.upstream.active(&access));

    world.upstream.revocation_down(false);
    let outcomes = world.await_revocations(|outcomes| {
        outcomes
            .iter()
            .any(|o| o.starts_with("access token revoked"))
    });
    let revoked: Vec<&String> = outcomes
        .iter()
        .filter(|o| o.contains(" revoked upstream"))
        .collect();
    assert_eq!(revoked.len(), 2, "{outcomes:?}");
    assert!(!world.upstream.active(&refresh) && !world.upstream.active(&access));
    let count = outcomes.len();
    stop_and_verify(world, "UpstreamRevocationCompleted", count);
}

#[test]
fn a_revocation_endpoint_that_holds_the_request_does_not_hold_the_delete() {
    use std::io::Read as _;
    let dir = temp();
    let tokens = dir.path().join("tokens.log");
    let world = World::start_on_pass_store(&[], 3600, &tokens);
    // The same provider, but its revocation endpoint is a listener that takes each
    // request and answers nothing until the test lets it hang up.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("{e}"));
    let port = listener
        .local_addr()
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("{e}"));
    let (arrived_tx, arrived) = std::sync::mpsc::channel::<()>();
    let (hang_up, hang_up_rx) = std::sync::mpsc::channel::<()>();
    std::thread::spawn(move || {
        for stream in listener.incoming().take(2) {
            let Ok(mut stream) = stream else { return };
            let mut request = [0u8; 4096];
            let _ = stream.read(&mut request);
            let _ = arrived_tx.send(());
            let _ = hang_up_rx.recv();
        }
    });
    let mut registration = world.upstream.registration();
    registration["oauth"]["revocation_url"] = json!(format!("http://127.0.0.1:{port}/revoke"));
    let server_id = register_server(
        &world.writ,
        &world.admin,
        "held",
        &world.mcp.url,
        registration,
    );
    let alice = world.person("alice@example.com");
    let (status, connected) = connect(&world.writ, &alice.key, &server_id, "alice");
    assert_eq!(status, 200, "{connected}");

    let path = format!("/api/v1/connections/{server_id}");
    let (status, body) = as_user(&world.writ, &alice.key, "DELETE", &path, None);
    assert_eq!(status, 204, "{body}");
    let wait = std::time::Duration::from_secs(30);
    arrived
        .recv_timeout(wait)
        .unwrap_or_else(|e| panic!("no revocation request: {e}"));
    // Answered, while the provider still holds the refresh token's revocation.
    assert_eq!(world.revocations(), Vec::<String>::new());
    let _ = hang_up.send(());
    arrived
        .recv_timeout(wait)
        .unwrap_or_else(|e| panic!("no second request: {e}"));
    let _ = hang_up.send(());
    let outcomes = world.await_revocations(|outcomes| outcomes.len() >= 2);
    let unanswered = "revocation failed (attempt 1: the provider did not answer: ";
    assert!(
        outcomes[0].starts_with(&format!("refresh token {unanswered}"))
            && outcomes[1].starts_with(&format!("access token {unanswered}")),
        "{outcomes:?}"
    );
    assert!(
        !outcomes.iter().any(|o| o.contains(&port.to_string())),
        "no URL in the reason: {outcomes:?}"
    );
}

#[test]
fn pending_upstream_revocations_survive_a_restart_of_writ() {
    let dir = temp();
    let tokens = dir.path().join("tokens.log");
    let flags = ["--upstream-revocation-retry-seconds-min", "1"];
    let world = World::start_on_pass_store(&flags, 3600, &tokens);
    let alice = world.person("alice@example.com");
    world.connect(&alice, "alice");
    let (access, refresh) = last_tokens(&tokens);
    world.upstream.revocation_down(true);
    world.delete_connection(&alice);
    world.await_revocations(|outcomes| outcomes.len() >= 2);

    // writ stops while the provider is down, and starts again once it is back.
    let World {
        writ: before,
        home,
        admin,
        upstream,
        mcp,
        server_id,
        client_id,
        secret,
    } = world;
    assert_eq!(before.stop(), Some(0));
    upstream.revocation_down(false);
    let writ = Server::start(home.dir.path(), &flags);
    let world = World {
        writ,
        home,
        admin,
        upstream,
        mcp,
        server_id,
        client_id,
        secret,
    };
    let outcomes = world.await_revocations(|outcomes| {
        outcomes
            .iter()
            .filter(|o| o.contains(" revoked upstream"))
            .count()
            == 2
    });
    assert!(
        !world.upstream.active(&refresh) && !world.upstream.active(&access),
        "{outcomes:?}"
    );
    let count = outcomes.len();
    stop_and_verify(world, "UpstreamRevocationCompleted", count);
}

#[test]
fn the_background_task_refreshes_a_connection_expiring_inside_the_window() {
    // Tokens live 5 minutes, inside the default 10-minute window; look every second.
    let world = World::start(
        &["--connection-refresh-every-seconds", "1"],
        300,
        None,
        None,
    );
    let alice = world.person("alice@example.com");
    world.connect(&alice, "alice");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while world.connection_of(&alice)["refreshed_at"].is_null() {
        assert!(
            std::time::Instant::now() < deadline,
            "never refreshed: {}",
            world.connection_of(&alice)
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    world.grant(&alice, false);
    assert_eq!(
        world.seen_as(&alice),
        "alice",
        "the refreshed token works upstream"
    );
}

#[test]
fn an_expired_connection_is_refreshed_on_demand_and_a_revoked_refresh_token_breaks_it_once() {
    let dir = temp();
    let tokens = dir.path().join("tokens.log");
    // Tokens live 10 s: inside writ's 30-second skew, so expired for every call. The
    // background task looks only once an hour.
    let world = World::start(
        &["--connection-refresh-every-seconds", "3600"],
        10,
        Some(&tokens),
        None,
    );
    let alice = world.person("alice@example.com");
    world.connect(&alice, "alice");
    world.grant(&alice, false);
    assert!(world.connection_of(&alice)["refreshed_at"].is_null());
    assert_eq!(world.seen_as(&alice), "alice");
    assert!(
        !world.connection_of(&alice)["refreshed_at"].is_null(),
        "refreshed on demand"
    );

    // Alice revokes writ's refresh token at the provider.
    let log = std::fs::read_to_string(&tokens).unwrap_or_default();
    let refresh = log
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("refresh "))
        .unwrap_or_else(|| panic!("{log}"));
    world.upstream.revoke(refresh);
    assert_eq!(world.seen_as(&alice), "401 OAuth session expired");
    let connection = world.connection_of(&alice);
    let (_, trail) = call(
        &world.writ,
        &world.admin,
        "GET",
        "/api/v1/audit?action=ConnectionRefreshFailed",
        None,
    );
    assert_eq!(
        (
            connection["status"].as_str(),
            connection["refresh_failures"].as_u64()
        ),
        (Some("broken"), Some(1)),
        "{connection} {trail}"
    );
    // Broken: not tried again.
    assert_eq!(world.seen_as(&alice), "401 OAuth session expired");
    assert_eq!(world.connection_of(&alice)["refresh_failures"], 1);
    // Connecting again mends it.
    world.connect(&alice, "alice");
    assert_eq!(world.seen_as(&alice), "alice");
    let World { mut writ, home, .. } = world;
    writ.kill();
    assert_eq!(home.events("ConnectionRefreshFailed"), 1);
}

#[test]
fn no_upstream_token_is_in_the_clear_in_the_ledger_snapshots_or_log() {
    let dir = temp();
    let tokens = dir.path().join("tokens.log");
    let log = dir.path().join("writ.log");
    let world = World::start(
        &["--snapshot-every-records", "5"],
        10,
        Some(&tokens),
        Some(&log),
    );
    let alice = world.person("alice@example.com");
    world.connect(&alice, "alice");
    world.grant(&alice, true);
    assert_eq!(world.seen_as(&alice), "alice");
    let World {
        writ,
        home,
        upstream,
        ..
    } = world;
    assert_eq!(writ.stop(), Some(0));
    drop(upstream);
    let issued = issued_tokens(&tokens);
    assert!(
        issued.len() >= 3,
        "an access token, its refresh token and the refreshed ones: {issued:?}"
    );
    assert_no_upstream_secret_in_the_clear(&home, &[log], &issued);
}

/// Every token the provider logged issuing to `log` ("access T" / "refresh T").
fn issued_tokens(log: &std::path::Path) -> Vec<String> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_once(' ').map(|(_, t)| t.to_owned()))
        .collect()
}

/// No file of the (stopped) server's data directory, nor its export, nor any of `also`,
/// holds one of the `issued` tokens or writ's client secret at the provider.
fn assert_no_upstream_secret_in_the_clear(
    home: &Home,
    also: &[std::path::PathBuf],
    issued: &[String],
) {
    let export = home.dir.path().join("cleartext-check-export.jsonl");
    export_to(home.dir.path(), &export);
    let mut places = vec![export];
    places.extend(also.iter().cloned());
    let mut stack = vec![home.dir.path().to_path_buf()];
    while let Some(at) = stack.pop() {
        for entry in std::fs::read_dir(&at).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path)
            } else {
                places.push(path)
            }
        }
    }
    for place in &places {
        let bytes = std::fs::read(place).unwrap_or_default();
        let text = String::from_utf8_lossy(&bytes);
        for token in issued {
            assert!(
                !text.contains(token.as_str()),
                "{} holds an upstream token in the clear",
                place.display()
            );
        }
        assert!(
            !text.contains(crate::upstream::CLIENT_SECRET),
            "{} holds the client secret",
            place.display()
        );
    }
}

/// `writ admin kek rotate` on the stopped server's data directory; what it said.
fn rotate_kek(home: &Home, env: &[(&str, &str)]) -> Run {
    let dir = home.dir.path().display().to_string();
    let mut args = vec!["admin", "kek", "rotate", "--data-dir", &dir];
    let store = home.store_args();
    args.extend(store.iter().map(String::as_str));
    writ_with_env(&args, env)
}

/// The key file's key lines.
fn kek_lines(file: &std::path::Path) -> Vec<String> {
    std::fs::read_to_string(file)
        .unwrap_or_default()
        .lines()
        .filter(|line| !line.trim().is_empty() && !line.starts_with('#'))
        .map(str::to_owned)
        .collect()
}

#[test]
fn after_a_kek_rotation_the_old_key_can_be_removed_and_every_upstream_secret_still_opens() {
    let dir = temp();
    let tokens = dir.path().join("tokens.log");
    // Tokens live an hour: outside the refresh window, so the first call after the
    // rotation opens the re-wrapped access token itself rather than a refreshed one.
    let world = World::start(&[], 3600, Some(&tokens), None);
    let alice = world.person("alice@example.com");
    world.connect(&alice, "alice");
    world.grant(&alice, false);
    assert_eq!(world.seen_as(&alice), "alice");
    let World {
        writ,
        home,
        admin,
        upstream,
        mcp,
        server_id,
        client_id,
        secret,
    } = world;
    let running = rotate_kek(&home, &[]);
    assert_eq!(running.code, Some(2), "{running:?}");
    assert!(
        running.stderr.contains("stop it first"),
        "{}",
        running.stderr
    );
    assert_eq!(writ.stop(), Some(0));
    let kek_file = home.dir.path().join("keys").join("kek.keys");
    let before = kek_lines(&kek_file);
    assert_eq!(before.len(), 1, "{before:?}");

    let from_env = rotate_kek(
        &home,
        &[(
            "WRIT_KEK",
            "env-1:BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc",
        )],
    );
    assert_eq!(from_env.code, Some(2), "{from_env:?}");
    assert!(
        from_env.stderr.contains("keep the keys in a file"),
        "{}",
        from_env.stderr
    );
    assert_eq!(
        kek_lines(&kek_file),
        before,
        "a refused rotation adds no key"
    );

    let rotated = rotate_kek(&home, &[]);
    assert_eq!(rotated.code, Some(0), "{rotated:?}");
    let new_id = rotated.stdout.trim().to_owned();
    assert!(
        rotated.stderr.contains("3 secret(s) re-wrapped"),
        "the client secret, the access token and the refresh token: {}",
        rotated.stderr
    );
    assert!(
        rotated.stderr.contains("can be removed"),
        "{}",
        rotated.stderr
    );
    let after = kek_lines(&kek_file);
    assert_eq!(after.len(), 2, "{after:?}");
    assert_eq!(after[0], before[0], "the older key stays until removed");
    assert!(after[1].starts_with(&format!("{new_id} ")), "{after:?}");

    // Nothing is left under the old key: remove it.
    std::fs::write(&kek_file, format!("{}\n", after[1])).unwrap_or_else(|e| panic!("{e}"));
    let world = World {
        writ: Server::start_in(&home, &[]),
        home,
        admin,
        upstream,
        mcp,
        server_id,
        client_id,
        secret,
    };
    assert_eq!(
        world.seen_as(&alice),
        "alice",
        "the re-wrapped access token opens under the new key alone"
    );
    let World {
        writ,
        home,
        admin,
        upstream,
        mcp,
        server_id,
        client_id,
        secret,
    } = world;
    assert_eq!(writ.stop(), Some(0));

    // A window wider than the token's life: the background refresh at start opens the
    // re-wrapped refresh token and client secret.
    let world = World {
        writ: Server::start_in(
            &home,
            &[
                "--connection-refresh-window-seconds",
                "7200",
                "--connection-refresh-every-seconds",
                "1",
            ],
        ),
        home,
        admin,
        upstream,
        mcp,
        server_id,
        client_id,
        secret,
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while world.connection_of(&alice)["refreshed_at"].is_null() {
        let connection = world.connection_of(&alice);
        assert!(
            std::time::Instant::now() < deadline && connection["refresh_failures"] == 0,
            "never refreshed: {connection}"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(world.seen_as(&alice), "alice", "the refreshed token works");
    let World {
        writ,
        home,
        upstream,
        ..
    } = world;
    assert_eq!(writ.stop(), Some(0));
    drop(upstream);
    assert_eq!(home.events("ServerSecretRewrapped"), 1);
    assert_eq!(home.events("ConnectionRewrapped"), 1);
    assert_eq!(home.events("ConnectionRefreshFailed"), 0);
    let issued = issued_tokens(&tokens);
    assert!(
        issued.len() >= 3,
        "two tokens, then a refreshed one: {issued:?}"
    );
    assert_no_upstream_secret_in_the_clear(&home, &[], &issued);
}

#[test]
fn the_agent_allows_and_the_person_denies_so_policy_denies_and_the_trail_names_the_policy() {
    let world = World::start(&[], 3600, None, None);
    let alice = world.person("alice@example.com");
    world.connect(&alice, "alice");
    world.grant(&alice, false);
    assert_eq!(
        world.seen_as(&alice),
        "alice",
        "both sets allow: the call proceeds"
    );

    let put = |policies: &str| {
        let response = http()
            .put(
                world
                    .writ
                    .url(&format!("/api/v1/users/{}/policy-set", alice.id)),
            )
            .header("x-api-key", &alice.key)
            .json(&json!({ "policies": policies }))
            .send()
            .unwrap_or_else(|e| panic!("{e}"));
        let status = response.status().as_u16();
        (status, response.json::<Value>().unwrap_or(Value::Null))
    };
    // A policy that does not validate against the schema is refused with Cedar's words.
    let (status, refused) =
        put(r#"permit(principal, action, resource) when { resource.colour == "red" };"#);
    assert_eq!(
        (status, refused["error"].as_str()),
        (400, Some("invalid_policy")),
        "{refused}"
    );
    assert!(
        refused["detail"]
            .as_str()
            .is_some_and(|d| d.contains("colour")),
        "{refused}"
    );

    let (status, _) = put(r#"@id("my-tools") permit(principal, action, resource);
           @id("no-whoami") forbid(principal, action, resource) when { resource.name == "whoami" };"#);
    assert_eq!(status, 204);
    let seen = world.seen_as(&alice);
    assert!(seen.starts_with("403 Policy denied"), "{seen}");
    assert_eq!(
        world.mcp.calls().len(),
        1,
        "the denied call never reached the tool"
    );

    let (_, trail) = call(
        &world.writ,
        &world.admin,
        "GET",
        "/api/v1/audit?action=ToolCallCompleted",
        None,
    );
    let entries = trail["entries"].as_array().cloned().unwrap_or_default();
    let outcomes: Vec<&str> = entries
        .iter()
        .filter_map(|e| e["outcome"].as_str())
        .collect();
    assert!(
        outcomes[0].contains(&format!("policies: agent:{}/any-tool", world.client_id)),
        "{outcomes:?}"
    );
    assert!(
        outcomes[1].starts_with("denied by policy")
            && outcomes[1].contains(&format!("user:{}/no-whoami", alice.id)),
        "{outcomes:?}"
    );
}
