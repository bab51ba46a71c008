//! The benchmarks' workload: a ledger written straight to embedded storage (no sequencer,
//! no HTTP): an agent, then a token every 100 operations, every operation with an
//! idempotency key. Shared by the benches with `#[path]`.
#![allow(dead_code)]

use std::path::Path;

use writ::ledger::datadir::DataDir;
use writ::ledger::embedded::Embedded;
use writ::ledger::storage::Storage;
use writ_schemas::*;

pub const LEDGER_RECORDS: u64 = 200_000;

fn setup_events() -> Vec<Event> {
    let agent = ClientId::from("bench-agent");
    vec![
        AgentRegistered {
            client_id: agent.clone(),
            name: "bench".into(),
            owner: None,
            scopes: vec!["s".into()],
            grant_types: vec!["client_credentials".into()],
            redirect_uris: vec![],
            token_endpoint_auth_method: "client_secret_basic".into(),
            secret_hash: Some(Digest::of(b"s")),
            secret_expires_at: None,
            require_consent: false,
            agent_type: AgentType::Autonomous,
            expires_at: None,
            by: Actor::System,
            jwks: None,
        }
        .into(),
    ]
}

/// Operations recorded per token before the workload moves to a new token (tokens live
/// 15 minutes by default, so a ledger holds many tokens with a few uses each).
pub const OPERATIONS_PER_TOKEN: u64 = 100;

fn token(index: u64) -> Vec<u8> {
    let now = Timestamp::parse("2026-11-23T09:00:00.000000Z").unwrap();
    let jti = format!("bench-token-{}", index / (OPERATIONS_PER_TOKEN + 1));
    Event::from(TokenIssued {
        digest: Digest::of(jti.as_bytes()),
        jti: Jti(jti),
        kid: KeyId::from("k1"),
        grant_type: "client_credentials".into(),
        client_id: ClientId::from("bench-agent"),
        subject: "bench-agent".into(),
        user_id: None,
        actors: vec![],
        delegation_id: None,
        parent_jti: None,
        family_id: None,
        audience: vec![],
        scopes: vec!["s".into()],
        issued_at: now,
        expires_at: now.plus_seconds(900),
        agent_type: AgentType::Autonomous,
        task_id: None,
        max_operations: Some(OPERATIONS_PER_TOKEN),
        expires_on_completion: false,
        intent_description: None,
        intent_sealed: None,
        client_assertion: None,
    })
    .encode()
    .unwrap()
}

/// The workload's next event: a token every `OPERATIONS_PER_TOKEN` operations, and
/// operations (~200 canonical bytes, each with an idempotency key) on it.
fn operation(index: u64) -> Vec<u8> {
    if index.is_multiple_of(OPERATIONS_PER_TOKEN + 1) {
        return token(index);
    }
    Event::from(OperationRecorded {
        jti: Jti(format!(
            "bench-token-{}",
            index / (OPERATIONS_PER_TOKEN + 1)
        )),
        operation: "tools/call".into(),
        resource: Some(format!("mcp://files/documents/{index}")),
        idempotency_key: Some(format!("op-{index:016}")),
    })
    .encode()
    .unwrap()
}

/// Appends `count` records to `storage` in batches of `batch`.
pub fn fill(storage: &Embedded, count: u64, batch: usize, next_index: &mut u64) {
    let mut events: Vec<Vec<u8>> = setup_events().iter().map(|e| e.encode().unwrap()).collect();
    if storage.head().seq > 0 {
        events.clear();
    }
    let mut records = Vec::with_capacity(batch);
    let mut head = storage.head();
    let ts = Timestamp::parse("2026-11-23T09:00:00.000000Z").unwrap();
    let mut written = 0;
    while written < count {
        records.clear();
        while records.len() < batch && written < count {
            let bytes = if events.is_empty() {
                *next_index += 1;
                operation(*next_index - 1)
            } else {
                events.remove(0)
            };
            let record = Record::seal(head.seq + 1, ts, head.hash, bytes);
            head = writ_projections::Head {
                seq: record.seq,
                hash: record.hash,
                ts: Some(record.ts),
            };
            records.push(record);
            written += 1;
        }
        storage.append(&records).unwrap();
    }
}

pub fn open(dir: &Path) -> Embedded {
    Embedded::open(
        &DataDir::new(dir),
        writ::ledger::embedded::SEGMENT_BYTES_MAX_DEFAULT,
    )
    .unwrap()
    .0
}
