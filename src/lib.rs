//! `writ`: an authorization server for AI agents whose whole state is a hash-chained,
//! append-only ledger of events.
//!
//! This crate holds the ledger (storage backends, the sequencer, snapshots), the
//! decisions commands lead to, and the offline tools of the `writ` command line. The
//! vocabulary lives in `writ-schemas`, the read models in `writ-projections`.

pub mod checkpoints;
pub mod cli;
pub mod client_metadata;
pub mod clock;
pub mod connections;
pub mod decide;
pub mod harness;
pub mod http;
pub mod issuers;
pub mod jose;
pub mod kek;
pub mod keys;
pub mod ledger;
pub mod listener;
pub mod mcp;
pub mod migrate;
pub mod oauth;
pub mod offline;
pub mod people;
pub mod policy;
pub mod rewrap;
pub mod secrets;
pub mod serve;
pub mod trail;

pub use clock::Clock;
pub use decide::{Answer, Command, Refusal};
pub use ledger::{Ledger, LedgerOptions, OpenReport, Receipt, SubmitError};
