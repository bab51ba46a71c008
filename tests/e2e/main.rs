//! writ's end-to-end tests: one binary, a module per capability, each test driving the
//! real `writ` executable (and, for recovery, the library on the same data directory).
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod admin;
mod agents;
mod approvals;
mod audit;
mod authorize;
mod bad_input;
mod bench;
mod browser;
mod client_assertion;
mod clients;
mod crash;
mod delegation;
mod erasure;
mod exchange;
mod fuzz;
mod gateway;
mod keys;
mod kit;
mod ledger;
mod limits;
mod m2m;
mod nodes;
mod obo;
mod openapi;
mod policy;
mod postgres;
mod registration;
mod server;
mod session_grants;
mod signin;
mod slow_clients;
mod spec;
mod tamper;
mod tokens;
mod upstream;
mod users;
