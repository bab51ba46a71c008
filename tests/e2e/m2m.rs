//! The M2M loop over real HTTP: token, introspection, operations under a quota,
//! revocation; exact quotas under 64 concurrent clients; idempotency across a restart.
//! Each runs on both stores: `name::embedded` and `name::postgres`.

use std::sync::atomic::{AtomicU32, Ordering};

use serde_json::{Value, json};

use crate::kit::*;

pub struct Agent {
    pub server: Server,
    pub client_id: String,
    pub secret: String,
    pub home: Home,
}

/// Runs each named test, `fn name(home: Home)`, on both stores.
macro_rules! on_both_stores {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[test]
            fn embedded() {
                super::$name(crate::kit::Home::embedded())
            }
            #[test]
            fn postgres() {
                super::$name(crate::kit::Home::postgres())
            }
        }
    )*};
}

on_both_stores!(
    m2m_token_then_introspection_then_revocation,
    operations_count_down_retries_never_count_twice_even_across_a_restart,
    sixty_four_clients_on_one_token_with_1000_operations_get_exactly_1000,
);

/// A server started with `flags` and one client_credentials agent (scope `s`) on it.
pub fn agent_on(flags: &[&str]) -> Agent {
    agent_in(Home::embedded(), flags)
}

/// `agent_on` with the ledger in `home`.
pub fn agent_in(home: Home, flags: &[&str]) -> Agent {
    let server = Server::start_in(&home, flags);
    let admin = server.admin_token();
    let body = json!({"name": "m2m", "scopes": ["s"], "grant_types": ["client_credentials"]});
    let (client_id, secret) = register_agent(&server, &admin, body);
    Agent {
        server,
        client_id,
        secret,
        home,
    }
}

impl Agent {
    pub fn token(&self, extra: &[(&str, &str)]) -> String {
        client_credentials_token(&self.server, &self.client_id, &self.secret, extra)
    }

    fn introspect(&self, token: &str) -> Value {
        introspect(&self.server, &self.client_id, &self.secret, token)
    }

    fn operation(&self, token: &str, key: Option<&str>) -> (u16, Value) {
        operation(&self.server.base, token, key)
    }
}

pub fn operation(base: &str, token: &str, key: Option<&str>) -> (u16, Value) {
    let mut request = http()
        .post(format!("{base}/api/v1/operations"))
        .bearer_auth(token)
        .json(&json!({"operation": "tools/call", "resource": "doc"}));
    if let Some(key) = key {
        request = request.header("Idempotency-Key", key);
    }
    let response = request.send().unwrap_or_else(|err| panic!("{err}"));
    let status = response.status().as_u16();
    (status, response.json().unwrap_or(Value::Null))
}

fn m2m_token_then_introspection_then_revocation(home: Home) {
    let a = agent_in(home, &[]);
    let token = a.token(&[("max_operations", "5"), ("task_id", "t-1")]);
    let seen = a.introspect(&token);
    assert_eq!(
        (
            seen["active"].as_bool(),
            seen["client_id"].as_str(),
            seen["scope"].as_str()
        ),
        (Some(true), Some(a.client_id.as_str()), Some("s")),
        "{seen}"
    );
    assert_eq!(
        (
            seen["max_operations"].as_u64(),
            seen["operations_remaining"].as_u64(),
            seen["task_id"].as_str(),
            seen["delegation_depth"].as_u64()
        ),
        (Some(5), Some(5), Some("t-1"), Some(0))
    );
    assert_eq!(
        a.introspect(&token)["operations_remaining"],
        5,
        "introspection never consumes an operation"
    );
    assert_eq!(a.introspect("not-a-token"), json!({"active": false}));
    // The bearer scheme is case-insensitive (RFC 9110 §11.1).
    let lower_case = http()
        .post(a.server.url("/api/v1/operations"))
        .header("authorization", format!("bearer {token}"))
        .json(&json!({"operation": "tools/call"}))
        .send()
        .map(|r| r.status().as_u16());
    assert_eq!(lower_case.ok(), Some(200));

    let unauthenticated = http()
        .post(a.server.url("/oauth/introspect"))
        .form(&[("token", token.as_str())])
        .send()
        .map(|r| r.status().as_u16());
    assert_eq!(unauthenticated.ok(), Some(401));

    let revoked = http()
        .post(a.server.url("/oauth/revoke"))
        .basic_auth(&a.client_id, Some(&a.secret))
        .form(&[("token", token.as_str())])
        .send()
        .map(|r| r.status().as_u16());
    assert_eq!(revoked.ok(), Some(200));
    assert_eq!(
        a.introspect(&token),
        json!({"active": false}),
        "inactive at once"
    );
    let (status, body) = a.operation(&token, None);
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("unauthorized")),
        "{body}"
    );
}

fn operations_count_down_retries_never_count_twice_even_across_a_restart(home: Home) {
    let a = agent_in(home, &[]);
    let token = a.token(&[("max_operations", "3")]);
    assert_eq!(
        a.operation(&token, Some("k1")),
        (200, json!({"operations_remaining": 2, "active": true}))
    );
    assert_eq!(
        a.operation(&token, Some("k1")),
        (200, json!({"operations_remaining": 2, "active": true})),
        "same key: first answer"
    );
    let Agent {
        server,
        client_id,
        secret,
        home,
    } = a;
    assert_eq!(server.stop(), Some(0));
    let server = Server::start_in(&home, &[]);
    assert_eq!(
        operation(&server.base, &token, Some("k1")),
        (200, json!({"operations_remaining": 2, "active": true})),
        "after a restart too"
    );
    assert_eq!(operation(&server.base, &token, None).0, 200);
    assert_eq!(
        operation(&server.base, &token, None),
        (200, json!({"operations_remaining": 0, "active": true}))
    );
    let (status, body) = operation(&server.base, &token, None);
    assert_eq!(
        (status, body["error"].as_str()),
        (403, Some("quota_exhausted")),
        "{body}"
    );
    let a = Agent {
        server,
        client_id,
        secret,
        home,
    };

    // With expires_on_completion the last operation revokes the token in the same append.
    let ephemeral = a.token(&[("max_operations", "1"), ("expires_on_completion", "true")]);
    assert_eq!(
        a.operation(&ephemeral, None),
        (200, json!({"operations_remaining": 0, "active": false}))
    );
    assert_eq!(a.introspect(&ephemeral), json!({"active": false}));
}

fn sixty_four_clients_on_one_token_with_1000_operations_get_exactly_1000(home: Home) {
    let a = agent_in(home, &[]);
    let token = a.token(&[("max_operations", "1000")]);
    let (accepted, exhausted) = (AtomicU32::new(0), AtomicU32::new(0));
    concurrently(64, || {
        loop {
            match operation(&a.server.base, &token, None).0 {
                200 => accepted.fetch_add(1, Ordering::SeqCst),
                403 => {
                    exhausted.fetch_add(1, Ordering::SeqCst);
                    return;
                }
                other => panic!("unexpected status {other}"),
            };
        }
    });
    assert_eq!((accepted.into_inner(), exhausted.into_inner()), (1000, 64));
    let Agent { server, home, .. } = a;
    assert_eq!(server.stop(), Some(0));
    assert_eq!(
        home.events("OperationRecorded"),
        1000,
        "the ledger holds exactly the accepted operations"
    );
}
