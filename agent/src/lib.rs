//! Xunjian agent: collects inspection facts on a host, spools every report
//! to disk, and streams the spool to the collector over mTLS gRPC.

#![forbid(unsafe_code)]

pub mod backoff;
pub mod cli;
pub mod collect;
pub mod config;
pub mod enroll;
pub mod exec;
pub mod fsutil;
pub mod logging;
pub mod runner;
pub mod signals;
pub mod spool;
pub mod transport;

/// This build's version, sent in Hello and Enroll.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Exit code for a bad configuration or bad arguments (sysexits EX_USAGE).
pub const EXIT_CONFIG: u8 = 64;
