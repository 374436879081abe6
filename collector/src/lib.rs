//! Xunjian collector: receives agents' reports over mTLS gRPC, stores them in
//! SQLite, and serves the operators' CLI (`xunjian`).

#![forbid(unsafe_code)]

pub mod alerting;
pub mod cli;
pub mod cli_records;
pub mod clock;
pub mod config;
pub mod evidence;
pub mod grpc_frames;
pub mod incidents;
pub mod ingest;
pub mod inspection;
pub mod inventory_diff;
pub mod maintenance;
pub mod notify;
pub mod pki;
pub mod report;
pub mod rules;
pub mod schedule;
pub mod server;
pub mod sla;
pub mod store;
pub mod up;
