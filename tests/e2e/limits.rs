//! Limits over real HTTP: the per-agent token rate (429 with Retry-After, raised by
//! policy) and the bounded write queue (503 with Retry-After, nothing acknowledged lost).

use std::sync::atomic::{AtomicU32, Ordering};

use serde_json::{Value, json};

use crate::kit::*;
use crate::m2m::agent_on;

/// A token request as `client_id`; status, `Retry-After` (seconds) and body.
fn token_request(server: &Server, client_id: &str, secret: &str) -> (u16, Option<u64>, Value) {
    let response = http()
        .post(server.url("/oauth/token"))
        .basic_auth(client_id, Some(secret))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .unwrap_or_else(|err| panic!("{err}"));
    let status = response.status().as_u16();
    let retry_after = retry_after(response.headers());
    (status, retry_after, response.json().unwrap_or(Value::Null))
}

fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<u64> {
    headers
        .get("retry-after")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse().ok())
}

#[test]
fn token_requests_beyond_an_agents_rate_get_429_and_its_policy_can_raise_the_rate() {
    let a = agent_on(&["--token-requests-per-minute", "2"]);
    let admin = a.server.admin_token();
    // Failed authentication does not spend the agent's budget, or anyone could lock it out.
    for _ in 0..3 {
        assert_eq!(token_request(&a.server, &a.client_id, "wrong").0, 401);
    }
    for _ in 0..2 {
        let (status, _, body) = token_request(&a.server, &a.client_id, &a.secret);
        assert_eq!(status, 200, "{body}");
    }
    let (status, retry_after, body) = token_request(&a.server, &a.client_id, &a.secret);
    assert_eq!(
        (status, body["error"].as_str()),
        (429, Some("rate_limited")),
        "{body}"
    );
    // Two a minute refill one every 30 seconds.
    assert!(
        retry_after.is_some_and(|seconds| (1..=30).contains(&seconds)),
        "{retry_after:?}"
    );

    // Another agent has its own budget.
    let body = json!({"name": "other", "scopes": ["s"], "grant_types": ["client_credentials"]});
    let (other_id, other_secret) = register_agent(&a.server, &admin, body);
    assert_eq!(token_request(&a.server, &other_id, &other_secret).0, 200);

    // The agent's policy overrides the server's default at once.
    let policy = format!("/api/v1/agents/{}/policy", a.client_id);
    let (status, body) = call(
        &a.server,
        &admin,
        "PUT",
        &policy,
        Some(json!({"token_requests_per_minute": 0})),
    );
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_request")),
        "{body}"
    );
    let raised = json!({"token_requests_per_minute": 100});
    assert_eq!(call(&a.server, &admin, "PUT", &policy, Some(raised)).0, 204);
    let (status, _, body) = token_request(&a.server, &a.client_id, &a.secret);
    assert_eq!(status, 200, "{body}");
    let (_, agent) = call(
        &a.server,
        &admin,
        "GET",
        &format!("/api/v1/agents/{}", a.client_id),
        None,
    );
    assert_eq!(agent["policy"]["token_requests_per_minute"], 100, "{agent}");
}

#[test]
fn writes_beyond_the_queue_bound_get_503_with_retry_after_and_every_acknowledged_one_is_kept() {
    let a = agent_on(&["--commands-queued-max", "1"]);
    let token = a.token(&[]);
    let (accepted, overloaded) = (AtomicU32::new(0), AtomicU32::new(0));
    concurrently(64, || {
        let client = http();
        for _ in 0..25 {
            let response = client
                .post(a.server.url("/api/v1/operations"))
                .bearer_auth(&token)
                .json(&json!({"operation": "tools/call"}))
                .send()
                .unwrap_or_else(|err| panic!("{err}"));
            let status = response.status().as_u16();
            let wait = retry_after(response.headers());
            let body: Value = response.json().unwrap_or(Value::Null);
            match (status, body["error"].as_str(), wait) {
                (200, None, None) => accepted.fetch_add(1, Ordering::SeqCst),
                (503, Some("unavailable"), Some(1)) => overloaded.fetch_add(1, Ordering::SeqCst),
                other => panic!("unexpected answer {other:?}: {body}"),
            };
        }
    });
    let (accepted, overloaded) = (accepted.into_inner(), overloaded.into_inner());
    assert_eq!(accepted + overloaded, 64 * 25);
    assert!(
        accepted > 0 && overloaded > 0,
        "64 writers on a queue of one: {accepted} accepted, {overloaded} refused"
    );
    // The refusals are counted where an operator looks.
    let metrics = http()
        .get(a.server.url("/metrics"))
        .send()
        .and_then(|r| r.text())
        .unwrap_or_default();
    assert!(
        metrics.contains(&format!(
            "writ_http_requests_total{{route=\"/api/v1/operations\",method=\"POST\",status=\"503\"}} {overloaded}\n"
        )),
        "{metrics}"
    );
    assert!(
        metrics.contains(&format!(
            "writ_ledger_commands_overloaded_total {overloaded}\n"
        )),
        "{metrics}"
    );

    let (server, home) = (a.server, a.home);
    assert_eq!(server.stop(), Some(0));
    assert_eq!(
        home.events("OperationRecorded"),
        accepted as usize,
        "every acknowledged operation, and only those"
    );
}
