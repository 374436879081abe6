//! Xunjian collector: receives agents' reports over mTLS gRPC, stores them in
//! SQLite, and serves the operators' CLI (`xunjian`).

#![forbid(unsafe_code)]

pub mod cli;
pub mod clock;
pub mod config;
pub mod ingest;
pub mod inventory_diff;
pub mod pki;
pub mod rules;
pub mod server;
pub mod store;
pub mod up;
