//! `writ-projections`: writ's read models as pure folds over ledger events.
//!
//! Agents, people, API keys, delegations, session grants, tokens (status, expiry, quota,
//! lineage), refresh families and signing keys live in [`State`]; the compliance trail is
//! [`audit_entry`]; [`snapshot`] turns a state into bytes and back.
//!
//! Architecture Invariant: nothing here does I/O or reads a clock. Every fact a fold
//! needs is in the record; every question about time takes `now` as an argument.

mod audit;
mod model;
pub mod snapshot;
mod state;

pub use audit::{AuditEntry, AuditTrail, audit_entry, personal_of};
pub use model::*;
pub use state::{AgentCounts, CASCADE_TOKENS_MAX, PolicySetRecord, State, Summary, TokenCounts};

#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;
