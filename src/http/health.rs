//! `GET /healthz` (the process is up) and `GET /readyz` (the ledger is open and caught up).

use actix_web::{HttpResponse, web};
use serde_json::json;

use super::AppState;

/// The process is up and serving.
pub(super) async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({ "status": "ok" }))
}

/// Records a node may be behind its store's head and still be ready. With several nodes
/// over one PostgreSQL ledger, every node is behind for the moment between another node's
/// append and its own catching up (milliseconds, a few batches); a node further behind
/// (starting, or cut off from the database's notifications) is not ready.
pub const READY_LAG_RECORDS_MAX: u64 = 1_000;

/// The ledger is open; the read models reflect its head (within `READY_LAG_RECORDS_MAX`).
pub(super) async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    let durable = state.ledger.head();
    let visible = state.ledger.read(|s| s.head());
    // The embedded ledger applies a batch right after making it durable; a gap there is
    // a batch in flight. With PostgreSQL, `durable` is the database's head as this node
    // last heard of it (its own appends, other nodes' notifications, a periodic read).
    let lag = durable.seq.saturating_sub(visible.seq);
    let ready = lag <= READY_LAG_RECORDS_MAX;
    let body = json!({
        "status": if ready { "ready" } else { "catching_up" },
        "seq": visible.seq,
        "hash": visible.hash.to_hex(),
        "head": durable.seq,
        "lag": lag,
    });
    if ready {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}
