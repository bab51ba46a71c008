//! The HTTP surface (actix-web): routes, and the state every handler shares.
//!
//! Handlers are thin: parse, ask the ledger (submit a command or read the projections),
//! map the answer to HTTP. Nothing here decides anything `decide.rs` should decide.

mod health;

use std::sync::Arc;

use actix_web::web;

use crate::ledger::Ledger;

/// What every handler can reach.
pub struct AppState {
    /// The ledger this server fronts.
    pub ledger: Arc<Ledger>,
    /// The issuer URL (`iss`, metadata).
    pub issuer: String,
}

/// Registers every route.
pub fn routes(config: &mut web::ServiceConfig) {
    config.service(health::healthz).service(health::readyz);
}
