//! The inspection record (巡检记录) as filed: one run of a plan or a
//! self-check, with one record per host in scope and every check item. Its
//! canonical JSON is what the evidence chain hashes, so fields are only ever
//! added, never renamed.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Verdict of one check item.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ItemVerdict {
    Normal,
    Abnormal,
    /// The agent could not tell (tool missing, no privilege, timeout):
    /// never counted as normal.
    Unknown,
}

/// Verdict of one host in a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HostVerdict {
    /// Every item normal.
    Normal,
    /// At least one item abnormal.
    Abnormal,
    /// No item abnormal, at least one unknown.
    Unknown,
    /// The host did not answer within the wait: listed with its last-seen
    /// time, never left out.
    NotInspected,
}

impl ItemVerdict {
    pub fn as_str(self) -> &'static str {
        match self {
            ItemVerdict::Normal => "normal",
            ItemVerdict::Abnormal => "abnormal",
            ItemVerdict::Unknown => "unknown",
        }
    }
}

impl HostVerdict {
    pub fn as_str(self) -> &'static str {
        match self {
            HostVerdict::Normal => "normal",
            HostVerdict::Abnormal => "abnormal",
            HostVerdict::Unknown => "unknown",
            HostVerdict::NotInspected => "not_inspected",
        }
    }
}

/// "inspection" (a plan, 巡检) or "selfcheck" (security self-check, 安全自查).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunKind {
    Inspection,
    Selfcheck,
}

impl RunKind {
    pub fn as_str(self) -> &'static str {
        match self {
            RunKind::Inspection => "inspection",
            RunKind::Selfcheck => "selfcheck",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InspectionRun {
    pub run_id: i64,
    pub kind: RunKind,
    /// Plan name; for self-checks "selfcheck-full" or "selfcheck-partial".
    pub plan: String,
    /// A full self-check covers the whole fleet.
    pub full_fleet: bool,
    /// The scope as configured/asked, for people ("all hosts", "group=prod").
    pub scope: String,
    /// Check item patterns of the plan.
    pub checks: Vec<String>,
    /// Who asked: "scheduler" or the operator's user name.
    pub requested_by: String,
    pub requested_at: DateTime<Utc>,
    pub started_at: DateTime<Utc>,
    pub filed_at: DateTime<Utc>,
    /// How long the collector waited for answers.
    pub wait_seconds: u64,
    pub summary: RunSummary,
    /// Every host in scope, by hostname.
    pub hosts: Vec<HostRecord>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunSummary {
    pub hosts_in_scope: u64,
    /// Hosts that answered (normal + abnormal + unknown).
    pub hosts_inspected: u64,
    pub hosts_normal: u64,
    pub hosts_abnormal: u64,
    pub hosts_unknown: u64,
    /// Hosts that did not answer.
    pub hosts_not_reached: u64,
    pub items_total: u64,
    pub items_abnormal: u64,
    pub items_unknown: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HostRecord {
    pub agent_id: String,
    pub hostname: String,
    /// SHA-256 of the agent certificate the answer came in on (the
    /// identity that measured).
    pub agent_cert_sha256: String,
    pub verdict: HostVerdict,
    /// When the answering report was collected; `None` if not inspected.
    pub measured_at: Option<DateTime<Utc>>,
    /// Sequence of the answering report.
    pub report_sequence: Option<i64>,
    /// Last contact from the host (for the not inspected).
    pub last_seen_at: Option<DateTime<Utc>>,
    pub items: Vec<Item>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Item {
    /// "baseline.ssh.permit_root_login", "fs.used_pct{mount=/}", ...
    pub item_id: String,
    pub title: String,
    pub value: String,
    pub threshold: String,
    pub verdict: ItemVerdict,
    pub measured_at: DateTime<Utc>,
    /// Evidence or the reason an item is unknown.
    pub detail: String,
    /// The open incident this abnormal finding raised or is part of.
    pub incident_id: Option<i64>,
}
