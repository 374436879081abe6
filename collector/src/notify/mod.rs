//! Incident notifications: webhooks (generic JSON, WeCom, DingTalk, Slack)
//! and email.
//!
//! ```text
//! alerting / sla ──Notification──► Notifier::notify (try_send, bounded 1024; full → dropped + counted)
//!                                    │
//!                       notifier task: route (escalation) → Grouper (one message per target+host per interval)
//!                                    │
//!                     per-target delivery tasks (≤ 4 in flight each, retries with jittered backoff)
//!                                    ├─► webhook.rs (reqwest, rustls+ring)
//!                                    └─► email.rs   (lettre, rustls+ring)
//! ```
//!
//! Everything up to the delivery tasks is pure (`config`, `format`,
//! `group`, `route`) and tested without I/O; the delivery tests talk to
//! real HTTP and SMTP servers on 127.0.0.1.

pub mod config;
pub mod deliver;
mod email;
pub mod format;
pub mod group;
mod webhook;

use chrono::{DateTime, Utc};
use serde::Serialize;

pub use config::{ConfigError, NotifyConfig, Target, TargetKind};
pub use deliver::{Counters, DeliveryOptions, Notifier, TargetCounters, route};
pub use group::{Batch, Grouper};

/// What happened to an incident.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum NotificationKind {
    /// Opened or reopened.
    Opened,
    /// Still firing with a new value.
    Updated,
    /// The SLA deadline is near.
    PreBreach,
    /// The SLA deadline has passed (also sent to the escalation target).
    Breach,
    Resolved,
}

/// One thing to tell people about one incident. Plain data: the alerting
/// and SLA code build it; nothing here reads the database.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Notification {
    pub kind: NotificationKind,
    pub incident_id: i64,
    /// "I".."IV".
    pub severity: String,
    /// The host's display name (grouping key).
    pub host: String,
    pub title: String,
    pub value: String,
    pub threshold: String,
    pub at: DateTime<Utc>,
}
