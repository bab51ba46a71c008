//! Several writ nodes over one PostgreSQL ledger, as real processes: what one node
//! issues the other introspects and verifies, a revocation on one reaches the other at
//! once, a quota holds exactly across both, and killing one node mid-load loses nothing
//! it acknowledged while the other keeps serving.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use writ::ledger::postgres::ScratchDatabase;

use crate::kit::*;
use crate::m2m::operation;

/// The issuer every node is configured with, as behind one load balancer.
const ISSUER: &str = "http://writ.nodes.test";

/// One ledger in a scratch database, the keys folder its nodes share, and a data
/// directory per node (its snapshots and lock).
struct Cluster {
    database: ScratchDatabase,
    keys: tempfile::TempDir,
    dirs: Vec<tempfile::TempDir>,
}

impl Cluster {
    fn new() -> Cluster {
        Cluster {
            database: scratch_database(),
            keys: temp(),
            dirs: Vec::new(),
        }
    }

    /// Starts another node, with a data directory of its own.
    fn node(&mut self) -> Server {
        let dir = temp();
        let keys = self.keys.path().display().to_string();
        let flags = [
            "--store",
            self.database.url.as_str(),
            "--keys-dir",
            keys.as_str(),
            "--issuer",
            ISSUER,
        ];
        let server = Server::start(dir.path(), &flags);
        self.dirs.push(dir);
        server
    }

    /// `writ verify --store` on the ledger.
    fn verify(&self) -> Run {
        writ(&["verify", "--store", &self.database.url])
    }

    /// The ledger's export lines.
    fn export(&self) -> Vec<Value> {
        let out = self.keys.path().join("export.jsonl");
        let (dir, shown) = (
            self.dirs[0].path().display().to_string(),
            out.display().to_string(),
        );
        let run = writ(&[
            "export",
            "--data-dir",
            &dir,
            "--store",
            &self.database.url,
            "-o",
            &shown,
        ]);
        assert_eq!(run.code, Some(0), "{}", run.stderr);
        std::fs::read_to_string(&out)
            .unwrap_or_default()
            .lines()
            .map(|line| serde_json::from_str(line).unwrap_or_else(|err| panic!("{err}")))
            .collect()
    }
}

/// Registers a client_credentials agent (scope `s`) on `server`.
fn agent(server: &Server) -> (String, String) {
    let body = json!({"name": "m2m", "scopes": ["s"], "grant_types": ["client_credentials"]});
    register_agent(server, &server.admin_token(), body)
}

fn token(server: &Server, client: &(String, String), extra: &[(&str, &str)]) -> String {
    let mut form = vec![("grant_type", "client_credentials")];
    form.extend_from_slice(extra);
    let body: Value = http()
        .post(server.url("/oauth/token"))
        .basic_auth(&client.0, Some(&client.1))
        .form(&form)
        .send()
        .and_then(|r| r.json())
        .unwrap_or_else(|err| panic!("{err}"));
    body["access_token"]
        .as_str()
        .unwrap_or_else(|| panic!("{body}"))
        .to_owned()
}

fn active(server: &Server, client: &(String, String), token: &str) -> bool {
    introspect(server, &client.0, &client.1, token)["active"] == json!(true)
}

/// Polls `condition` until it holds or 10 seconds pass: whether it ever held.
fn eventually(condition: impl Fn() -> bool) -> bool {
    within(Duration::from_secs(10), condition)
}

/// Polls `condition` until it holds or `limit` passes: whether it ever held.
fn within(limit: Duration, condition: impl Fn() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if condition() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    condition()
}

/// The `kid` in a JWT's header.
fn kid(token: &str) -> String {
    use base64::Engine as _;
    let header = token.split('.').next().unwrap_or_default();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(header)
        .unwrap_or_else(|err| panic!("{err}"));
    let header: Value = serde_json::from_slice(&bytes).unwrap_or_else(|err| panic!("{err}"));
    header["kid"].as_str().unwrap_or_default().to_owned()
}

fn jwks(server: &Server) -> Value {
    http()
        .get(server.url("/.well-known/jwks.json"))
        .send()
        .and_then(|r| r.json())
        .unwrap_or_else(|err| panic!("{err}"))
}

#[test]
fn a_token_issued_on_one_node_is_introspected_on_the_other_and_a_revocation_there_reaches_it_within_100_ms()
 {
    let mut cluster = Cluster::new();
    let a = cluster.node();
    let b = cluster.node();
    assert!(
        !b.banner
            .iter()
            .any(|line| line.trim_start().starts_with("admin token")),
        "the second node makes no admin token of its own: {:?}",
        b.banner
    );
    let client = agent(&a);
    let issued = token(&a, &client, &[]);
    // The client registered on A authenticates on B (the nodes share the keys), and B
    // knows A's token from the ledger.
    assert!(eventually(|| active(&b, &client, &issued)));
    let seen = introspect(&b, &client.0, &client.1, &issued);
    assert_eq!(seen["iss"], json!(ISSUER), "{seen}");
    // B's JWKS publishes the key A signed with: one signing key for the ledger.
    let published = jwks(&b);
    assert_eq!(published, jwks(&a));
    let kid = kid(&issued);
    assert!(
        published["keys"]
            .as_array()
            .is_some_and(|keys| keys.iter().any(|key| key["kid"] == json!(kid))),
        "{kid} in {published}"
    );

    let revoked = http()
        .post(b.url("/oauth/revoke"))
        .basic_auth(&client.0, Some(&client.1))
        .form(&[("token", issued.as_str())])
        .send()
        .unwrap_or_else(|err| panic!("{err}"));
    assert_eq!(revoked.status().as_u16(), 200);
    let answered = Instant::now();
    // Poll A: the first request A answers with `active: false` must have been sent within
    // 100 ms of B's answer (sent, not answered: a busy machine may take long to answer).
    let mut polls = 0;
    let first_inactive = loop {
        let sent = Instant::now();
        if !active(&a, &client, &issued) {
            break sent;
        }
        polls += 1;
        assert!(
            answered.elapsed() < Duration::from_secs(10),
            "A never saw the revocation"
        );
    };
    let elapsed = first_inactive.saturating_duration_since(answered);
    assert!(
        elapsed < Duration::from_millis(100),
        "A first answered `active: false` to a request sent {elapsed:?} after B revoked ({polls} polls before)"
    );
    // Readiness and metrics report each node's lag behind the database's head.
    let ready = |server: &Server| -> Value {
        http()
            .get(server.url("/readyz"))
            .send()
            .and_then(|r| r.json())
            .unwrap_or_else(|err| panic!("{err}"))
    };
    assert!(eventually(|| {
        let (on_a, on_b) = (ready(&a), ready(&b));
        on_a["lag"] == json!(0) && on_b["lag"] == json!(0) && on_a["head"] == on_b["head"]
    }));
    let on_b = ready(&b);
    assert_eq!(
        (on_b["status"].as_str(), &on_b["seq"]),
        (Some("ready"), &on_b["head"])
    );
    let metrics = http()
        .get(b.url("/metrics"))
        .send()
        .and_then(|r| r.text())
        .unwrap_or_else(|err| panic!("{err}"));
    assert!(metrics.contains("writ_ledger_lag_records 0"), "{metrics}");
    drop((a, b));
    let verified = cluster.verify();
    assert_eq!(verified.code, Some(0), "{}", verified.stderr);
}

#[test]
fn sixty_four_clients_over_two_nodes_on_one_token_with_1000_operations_get_exactly_1000() {
    let mut cluster = Cluster::new();
    let a = cluster.node();
    let b = cluster.node();
    let client = agent(&a);
    let issued = token(&a, &client, &[("max_operations", "1000")]);
    assert!(eventually(|| active(&b, &client, &issued)));
    let (accepted, exhausted) = (AtomicU32::new(0), AtomicU32::new(0));
    let next = AtomicU32::new(0);
    concurrently(64, || {
        let node = match next.fetch_add(1, Ordering::SeqCst) % 2 {
            0 => &a,
            _ => &b,
        };
        loop {
            let (status, body) = operation(&node.base, &issued, None);
            match status {
                200 => accepted.fetch_add(1, Ordering::SeqCst),
                403 => {
                    assert_eq!(body["error"], json!("quota_exhausted"), "{body}");
                    exhausted.fetch_add(1, Ordering::SeqCst);
                    return;
                }
                other => panic!("unexpected status {other}: {body}"),
            };
        }
    });
    assert_eq!((accepted.into_inner(), exhausted.into_inner()), (1000, 64));
    assert_eq!(a.stop(), Some(0));
    assert_eq!(b.stop(), Some(0));
    let verified = cluster.verify();
    assert_eq!(verified.code, Some(0), "{}", verified.stderr);
    let operations = cluster
        .export()
        .iter()
        .filter(|line| line["event"]["type"] == json!("OperationRecorded"))
        .count();
    assert_eq!(
        operations, 1000,
        "the ledger holds exactly the accepted operations"
    );
}

#[test]
fn killing_one_node_mid_load_leaves_the_other_serving_and_every_acknowledged_operation_in_the_ledger()
 {
    let mut cluster = Cluster::new();
    let a = cluster.node();
    let b = cluster.node();
    let client = agent(&a);
    let issued = token(&a, &client, &[]);
    assert!(eventually(|| active(&b, &client, &issued)));
    let acknowledged = Mutex::new(Vec::<String>::new());
    let (killed, on_b_after_kill) = (AtomicBool::new(false), AtomicU32::new(0));
    let next = AtomicU32::new(0);
    let a = Mutex::new(Some(a));
    let a_base = a
        .lock()
        .unwrap_or_else(|err| panic!("{err}"))
        .as_ref()
        .map(|server| server.base.clone())
        .unwrap_or_default();
    let b_after_kill_wanted = 100;
    std::thread::scope(|scope| {
        for _ in 0..16 {
            scope.spawn(|| {
                let client_no = next.fetch_add(1, Ordering::SeqCst);
                let on_a = client_no.is_multiple_of(2);
                // Bounded: a client stops after this many requests whatever happens.
                for n in 0..2_000 {
                    let key = format!("c{client_no}-{n}");
                    if on_a {
                        // A request to the killed node fails (refused or cut): it was not
                        // acknowledged, so it proves nothing either way.
                        match try_operation(&a_base, &issued, &key) {
                            Some(200) => {}
                            Some(other) => panic!("node A answered {other}"),
                            None if killed.load(Ordering::SeqCst) => return,
                            None => panic!("node A failed before it was killed"),
                        }
                    } else {
                        let (status, body) = operation(&b.base, &issued, Some(&key));
                        assert_eq!(status, 200, "node B keeps serving: {body}");
                        if killed.load(Ordering::SeqCst)
                            && on_b_after_kill.fetch_add(1, Ordering::SeqCst) >= b_after_kill_wanted
                        {
                            acknowledged
                                .lock()
                                .unwrap_or_else(|e| panic!("{e}"))
                                .push(key);
                            return;
                        }
                    }
                    acknowledged
                        .lock()
                        .unwrap_or_else(|e| panic!("{e}"))
                        .push(key);
                }
            });
        }
        scope.spawn(|| {
            // Kill A once the load is well under way on both nodes.
            let under_way = within(Duration::from_secs(120), || {
                acknowledged
                    .lock()
                    .map(|keys| keys.len() >= 200)
                    .unwrap_or(false)
            });
            // Said before the kill: a request to A that fails from here on may have met
            // the kill (it can fail before `kill` returns).
            killed.store(true, Ordering::SeqCst);
            if let Some(mut server) = a.lock().unwrap_or_else(|e| panic!("{e}")).take() {
                server.kill();
            }
            assert!(under_way, "the load never got under way");
        });
    });
    assert!(on_b_after_kill.load(Ordering::SeqCst) > b_after_kill_wanted);
    assert_eq!(b.stop(), Some(0));
    let verified = cluster.verify();
    assert_eq!(verified.code, Some(0), "{}", verified.stderr);
    let recorded: std::collections::HashSet<String> = cluster
        .export()
        .iter()
        .filter(|line| line["event"]["type"] == json!("OperationRecorded"))
        .filter_map(|line| {
            line["event"]["data"]["idempotency_key"]
                .as_str()
                .map(str::to_owned)
        })
        .collect();
    let acknowledged = acknowledged.into_inner().unwrap_or_else(|e| panic!("{e}"));
    let lost: Vec<&String> = acknowledged
        .iter()
        .filter(|key| !recorded.contains(*key))
        .collect();
    assert!(
        lost.is_empty(),
        "{} of {} acknowledged operations are not in the ledger: {lost:?}",
        lost.len(),
        acknowledged.len()
    );
}

/// One operation with an idempotency key: its status, or `None` when the request did not
/// get an answer (the node is gone).
fn try_operation(base: &str, token: &str, key: &str) -> Option<u16> {
    http()
        .post(format!("{base}/api/v1/operations"))
        .bearer_auth(token)
        .header("Idempotency-Key", key)
        .json(&json!({"operation": "tools/call", "resource": "doc"}))
        .send()
        .ok()
        .map(|response| response.status().as_u16())
}

/// An admin credential revoked through one node is refused by that node from the next
/// request, and by the other as soon as it has read the record; meanwhile the other node
/// holds an auditor to its role as the first does.
#[test]
fn an_admin_credential_revoked_on_one_node_is_refused_by_the_other() {
    let mut cluster = Cluster::new();
    let a = cluster.node();
    let b = cluster.node();
    let admin = a.admin_token();
    let body = json!({"name": "audit", "role": "auditor"});
    let (status, created) = call(&a, &admin, "POST", "/api/v1/admin/credentials", Some(body));
    assert_eq!(status, 201, "{created}");
    let id = created["credential"]["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let auditor = created["token"].as_str().unwrap_or_default().to_owned();
    let head_status = |server: &Server| {
        http()
            .get(server.url("/api/v1/ledger/head"))
            .bearer_auth(&auditor)
            .send()
            .map(|r| r.status().as_u16())
            .unwrap_or_else(|err| panic!("{err}"))
    };
    assert!(
        eventually(|| head_status(&b) == 200),
        "B never learnt the credential"
    );
    let (status, answer) = call(
        &b,
        &auditor,
        "POST",
        "/api/v1/users",
        Some(json!({"email": "x@example.com"})),
    );
    assert_eq!(
        (status, answer["error"].as_str()),
        (403, Some("insufficient_role")),
        "{answer}"
    );

    let revoked = http()
        .delete(a.url(&format!("/api/v1/admin/credentials/{id}")))
        .bearer_auth(&admin)
        .send()
        .unwrap_or_else(|err| panic!("{err}"));
    assert_eq!(revoked.status().as_u16(), 204);
    assert_eq!(head_status(&a), 401);
    assert!(
        eventually(|| head_status(&b) == 401),
        "B still takes the revoked credential"
    );
}

/// Ada's session cookie from signing in on `server`.
fn signed_in(server: &Server) -> String {
    let client = reqwest::blocking::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap_or_else(|err| panic!("{err}"));
    let response = client
        .post(server.url("/login"))
        .form(&[
            ("email", "ada@example.com"),
            ("password", "correct horse battery staple"),
            ("return_to", "/account"),
        ])
        .send()
        .unwrap_or_else(|err| panic!("{err}"));
    assert_eq!(response.status().as_u16(), 303);
    response
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|v| v.strip_prefix("writ_session=").map(|_| v))
        .and_then(|v| v.split(';').next())
        .unwrap_or_else(|| panic!("no session cookie"))
        .to_owned()
}

/// `GET /account` on `server` with `cookie`: the status and the page.
fn account_page(server: &Server, cookie: &str) -> (u16, String) {
    let client = reqwest::blocking::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap_or_else(|err| panic!("{err}"));
    let response = client
        .get(server.url("/account"))
        .header("cookie", cookie)
        .send()
        .unwrap_or_else(|err| panic!("{err}"));
    (
        response.status().as_u16(),
        response.text().unwrap_or_default(),
    )
}

#[test]
fn a_session_ended_on_one_node_is_refused_on_the_other() {
    let mut cluster = Cluster::new();
    let a = cluster.node();
    let b = cluster.node();
    let admin = a.admin_token();
    let ada = crate::delegation::person(&a, &admin, "ada@example.com");
    let path = format!("/api/v1/users/{ada}/password");
    let body = json!({"password": "correct horse battery staple"});
    let (status, answer) = call(&a, &admin, "PUT", &path, Some(body));
    assert_eq!(status, 204, "{answer}");

    // Signed in on A, the cookie opens B's page too; signed out on A, neither's.
    let cookie = signed_in(&a);
    assert!(eventually(|| account_page(&b, &cookie).0 == 200));
    let (_, page) = account_page(&a, &cookie);
    let token = hidden_input(&page, "form_token");
    let out = reqwest::blocking::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .and_then(|client| {
            client
                .post(a.url("/logout"))
                .header("cookie", &cookie)
                .form(&[("form_token", token.as_str())])
                .send()
        })
        .unwrap_or_else(|err| panic!("{err}"));
    assert_eq!(out.status().as_u16(), 303);
    assert_eq!(account_page(&a, &cookie).0, 303);
    assert!(eventually(|| account_page(&b, &cookie).0 == 303));

    // "Sign out everywhere" asked of B ends a session signed in on A, on A.
    let again = signed_in(&a);
    assert!(eventually(|| account_page(&b, &again).0 == 200));
    let ended = format!("/api/v1/users/{ada}/sessions/end");
    let (status, answer) = call(&b, &admin, "POST", &ended, None);
    assert_eq!(status, 204, "{answer}");
    assert_eq!(account_page(&b, &again).0, 303);
    assert!(eventually(|| account_page(&a, &again).0 == 303));
}
