//! `GET /healthz` (the process is up) and `GET /readyz` (the ledger is open and caught up).

use actix_web::{HttpResponse, web};
use serde_json::json;

use super::AppState;

/// The process is up and serving.
pub(super) async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({ "status": "ok" }))
}

/// The ledger is open; the read models reflect its head.
pub(super) async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    let durable = state.ledger.head();
    let visible = state.ledger.read(|s| s.head());
    // The embedded ledger applies a batch right after making it durable; a gap here is
    // a batch in flight, and a node lagging its store (the Postgres backend) is not ready.
    let lag = durable.seq.saturating_sub(visible.seq);
    let body = json!({
        "status": if lag == 0 { "ready" } else { "catching_up" },
        "seq": visible.seq,
        "hash": visible.hash.to_hex(),
        "lag": lag,
    });
    if lag == 0 {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}
