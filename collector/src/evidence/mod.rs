//! Tamper-evident audit evidence: a hash chain over the canonical encodings
//! of filed inspection and self-check runs, heads signed with the
//! collector's Ed25519 key, signed export bundles, and an offline verifier.
//!
//! # Formats (version 1; what an auditor reimplements to check by hand)
//!
//! All hashes are SHA-256, written as 64 lower-case hex digits. Times are
//! UTC milliseconds since the epoch, written in decimal.
//!
//! * **Record**: the exact bytes the caller filed, normally produced by
//!   [`canonical_json`]. `record_sha256 = SHA-256(record bytes)`.
//! * **Entry hash**: `entry_sha256 = SHA-256` of this byte layout, where
//!   `<n>:` is the byte length of the UTF-8 text that follows it (so no
//!   choice of kind or reference can be confused with another):
//!
//!   ```text
//!   xunjian-evidence-entry-v1\n
//!   seq=<seq>\n
//!   appended_at=<ms>\n
//!   kind=<n>:<kind>\n
//!   record_ref=<n>:<record_ref>\n
//!   record_sha256=<hex>\n
//!   prev_sha256=<hex>\n
//!   ```
//!
//!   The first entry (seq 1) has `prev_sha256` = 64 zeros; entry n links to
//!   entry n-1's `entry_sha256`.
//! * **Signed head**: the head is signed whenever the chain grows. The
//!   Ed25519 signature covers
//!
//!   ```text
//!   xunjian-evidence-head-v1\n
//!   seq=<seq>\n
//!   entry_sha256=<hex>\n
//!   signed_at=<ms>\n
//!   ```
//!
//!   A valid head for entry n vouches, through the `prev_sha256` links, for
//!   every entry up to n.
//! * **Key fingerprint**: SHA-256 of the raw 32-byte Ed25519 public key.
//! * **Bundle**: see [`export`]; `manifest.sig` is the hex Ed25519
//!   signature over the exact bytes of `manifest.json`.
//!
//! What the chain cannot show on its own: if the newest entries are removed
//! together with their heads, the shorter chain is still consistent. An
//! earlier bundle, or a head fingerprint noted outside the collector, is
//! what catches that.

mod bundle;
mod canonical;
mod chain;
mod key;
#[cfg(test)]
mod tests;
mod verify;

use std::path::PathBuf;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

pub use bundle::{ExportSummary, export};
pub use canonical::canonical_json;
pub use chain::append;
pub use key::{EvidenceKey, KEY_FILE};
pub use verify::{Problem, ProblemKind, VerifyReport, verify, verify_database};

/// The `prev_sha256` of the first entry of the chain.
pub const GENESIS_PREV_SHA256: &str =
    "0000000000000000000000000000000000000000000000000000000000000000";

/// Why an evidence operation could not be carried out. Tampering found by
/// [`verify`] is not an error: it is reported as [`Problem`]s.
#[derive(Debug, thiserror::Error)]
pub enum EvidenceError {
    // The SQLite error is part of the message, not a `source`, so chains
    // printed with `{:#}` do not repeat it (as in `store`).
    #[error("{what}: {error}")]
    Sqlite {
        what: &'static str,
        error: rusqlite::Error,
    },
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "the evidence signing key {path} is unusable ({reason}); it is never replaced automatically, because evidence signed with it could no longer be verified: restore it from a backup"
    )]
    KeyCorrupt { path: PathBuf, reason: String },
    #[error("cannot generate an Ed25519 key: the system random generator failed")]
    KeyGeneration,
    #[error("cannot encode the record canonically: {0}")]
    Encoding(String),
    #[error("invalid evidence entry: {0}")]
    InvalidEntry(String),
    #[error("the evidence table holds an impossible row: {0}")]
    CorruptRow(String),
    #[error("cannot read the record for {kind} {record_ref}: {reason}")]
    Record {
        kind: String,
        record_ref: String,
        reason: String,
    },
    #[error("the export range is empty or reversed: from {from} is not before to {to}")]
    BadRange {
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    },
    #[error("no evidence between {from} and {to}")]
    EmptyRange {
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    },
    #[error("{path} already exists{detail}; choose a new path for the bundle")]
    OutputExists { path: PathBuf, detail: &'static str },
    #[error(
        "{0:?} is not a key fingerprint: expected the 64 hex digits of a SHA-256 (colons allowed)"
    )]
    BadFingerprint(String),
    #[error("cannot read the evidence bundle {path}: {reason}")]
    BundleUnreadable { path: PathBuf, reason: String },
}

pub(crate) fn sql(what: &'static str) -> impl FnOnce(rusqlite::Error) -> EvidenceError {
    move |error| EvidenceError::Sqlite { what, error }
}

pub(crate) fn io(
    what: &'static str,
    path: &std::path::Path,
) -> impl FnOnce(std::io::Error) -> EvidenceError {
    let path = path.to_owned();
    move |source| EvidenceError::Io { what, path, source }
}

/// Where the collector keeps the records the chain hashes. Implemented by
/// the caller over its own tables.
pub trait RecordSource {
    /// The exact bytes that were hashed when the entry was appended (stored by the caller).
    fn record_json(&self, kind: &str, record_ref: &str) -> Result<Vec<u8>, EvidenceError>;
    /// A human-readable HTML rendering of the same record.
    fn record_html(&self, kind: &str, record_ref: &str) -> Result<String, EvidenceError>;
}

/// One link of the chain, as stored in `evidence_chain` and written to a
/// bundle's `chain.jsonl` (`appended_at` in milliseconds).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChainEntry {
    pub seq: i64,
    #[serde(with = "chrono::serde::ts_milliseconds")]
    pub appended_at: DateTime<Utc>,
    pub kind: String,
    pub record_ref: String,
    pub record_sha256: String,
    pub prev_sha256: String,
    pub entry_sha256: String,
}

/// A signature over the chain's head at `seq`, as stored in
/// `evidence_heads` and written to a bundle's `heads.jsonl`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignedHead {
    pub seq: i64,
    pub entry_sha256: String,
    #[serde(with = "chrono::serde::ts_milliseconds")]
    pub signed_at: DateTime<Utc>,
    /// Raw Ed25519 public key, hex.
    pub public_key: String,
    /// Ed25519 signature over the head message, hex.
    pub signature: String,
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(bytes))
}

fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// The first hex digits of a hash, for messages (the full value is in the
/// problem's `expected` / `found`).
fn short(hash: &str) -> String {
    match hash.get(..12) {
        Some(head) if hash.len() > 12 => format!("{head}…"),
        _ => hash.to_owned(),
    }
}
