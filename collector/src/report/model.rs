//! The numbers of a periodic ops report, computed once (`compute`) and
//! rendered to HTML, CSV and JSON (`render`), so every format carries the
//! same figures.
//!
//! Percentages are `Option<f64>`: `None` means nothing was known (no host,
//! no data), which is shown as "unknown", never as 100 %.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Monthly, quarterly or annual.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PeriodKind {
    Monthly,
    Quarterly,
    Annual,
}

impl PeriodKind {
    /// The name used in config, CLI, file names and CSV: "monthly", ...
    pub fn as_str(self) -> &'static str {
        match self {
            PeriodKind::Monthly => "monthly",
            PeriodKind::Quarterly => "quarterly",
            PeriodKind::Annual => "annual",
        }
    }
}

/// Language of the rendered text (numbers and JSON keys do not change).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Lang {
    #[serde(rename = "en")]
    En,
    #[serde(rename = "zh-CN")]
    ZhCn,
}

impl Lang {
    /// The BCP 47 tag ("en", "zh-CN"): HTML `lang`, file names, config.
    pub fn as_str(self) -> &'static str {
        match self {
            Lang::En => "en",
            Lang::ZhCn => "zh-CN",
        }
    }
}

/// A host as the report names it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HostRef {
    pub agent_id: String,
    pub hostname: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OpsReport {
    pub kind: PeriodKind,
    /// "2026-11", "2026-Q4" or "2026".
    pub period: String,
    /// Start (inclusive) and end (exclusive) of the period, midnight in `timezone`.
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    /// IANA time zone the period boundaries and daily buckets are in.
    pub timezone: String,
    pub generated_at: DateTime<Utc>,
    pub fleet: Fleet,
    pub availability: Availability,
    pub incidents: IncidentStats,
    pub compliance: Compliance,
    pub capacity: Capacity,
    pub inspections: InspectionStats,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Fleet {
    /// Hosts enrolled (and not revoked) at the start and at the end.
    pub size_start: u64,
    pub size_end: u64,
    /// Enrolled during the period.
    pub added: Vec<HostRef>,
    /// Revoked during the period.
    pub removed: Vec<HostRef>,
    /// Configuration changes (inventory differences) in the period.
    pub config_changes_total: u64,
    /// Changes per host, most first.
    pub config_changes_by_host: Vec<HostCount>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HostCount {
    pub host: HostRef,
    pub count: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Availability {
    /// Seen slots over expected slots, all hosts together.
    pub fleet_pct: Option<f64>,
    /// Per host, lowest first.
    pub hosts: Vec<HostAvailability>,
    /// Fleet availability per day of the period (chart).
    pub daily: Vec<DailyValue>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HostAvailability {
    pub host: HostRef,
    /// 5-minute slots in the period while the host was enrolled.
    pub expected_slots: u64,
    /// Of those, slots with at least one report.
    pub seen_slots: u64,
    pub pct: Option<f64>,
}

/// One value per local calendar day, `date` as "YYYY-MM-DD".
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DailyValue {
    pub date: String,
    pub value: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IncidentStats {
    /// Incidents opened in the period.
    pub opened: u64,
    /// Of the opened, how many are resolved or closed by the end.
    pub resolved: u64,
    /// In severity order I, II, III, IV (all four always present).
    pub by_severity: Vec<SeverityCount>,
    /// Most first.
    pub by_rule: Vec<RuleCount>,
    /// Problems that came back most often (occurrences and reopens), top 10.
    pub top_recurring: Vec<Recurring>,
    /// Hosts with most incidents, top 10.
    pub top_hosts: Vec<HostCount>,
    /// SLA attainment per severity (I..IV) plus an "all" row last.
    pub sla: Vec<SlaRow>,
    /// Every breached response or resolution target.
    pub breaches: Vec<Breach>,
    /// Incidents opened per day (chart).
    pub daily_opened: Vec<DailyValue>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SeverityCount {
    /// "I".."IV".
    pub severity: String,
    pub opened: u64,
    pub resolved: u64,
    /// Still open or acknowledged at the end of the period.
    pub open_at_end: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RuleCount {
    pub rule_id: String,
    pub title: String,
    pub count: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Recurring {
    pub rule_id: String,
    pub host: HostRef,
    /// Incidents for this rule and host in the period.
    pub incidents: u64,
    /// Sum of their reopen counts.
    pub reopens: u64,
    pub occurrences: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SlaRow {
    /// "I".."IV" or "all".
    pub severity: String,
    /// Incidents whose response (acknowledge) target is decided: met or
    /// missed, or still unmet after its due time.
    pub response_decided: u64,
    pub response_on_time: u64,
    pub response_pct: Option<f64>,
    pub resolution_decided: u64,
    pub resolution_on_time: u64,
    pub resolution_pct: Option<f64>,
    /// Mean time to acknowledge / to resolve, minutes, over incidents that were.
    pub mtta_minutes: Option<f64>,
    pub mttr_minutes: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Breach {
    pub incident_id: i64,
    pub host: HostRef,
    pub rule_id: String,
    pub severity: String,
    /// "response" or "resolution".
    pub target: String,
    pub due_at: DateTime<Utc>,
    /// When it was met after all (late), `None` if still unmet at the end.
    pub met_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Compliance {
    /// Hosts with no security patch pending longer than `patch_max_age_days`.
    pub patch_max_age_days: u32,
    pub patch: ComplianceStat,
    /// Antivirus protected and current.
    pub antivirus: ComplianceStat,
    /// Hosts passing every baseline item.
    pub baseline: ComplianceStat,
    /// Baseline items passed over all items (failed and unknown ones count
    /// against the rate; both are also counted apart).
    pub baseline_items_passed: u64,
    pub baseline_items_failed: u64,
    pub baseline_items_unknown: u64,
    pub baseline_item_pass_pct: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ComplianceStat {
    pub compliant: u64,
    pub non_compliant: u64,
    /// No data or the agent could not tell: neither compliant nor not.
    pub unknown: u64,
    /// compliant / (compliant + non_compliant + unknown): unknown counts
    /// against, it is never taken for compliant.
    pub pct: Option<f64>,
    /// Every host that is not compliant, with why, then the unknown ones.
    pub exceptions: Vec<ComplianceException>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ComplianceException {
    pub host: HostRef,
    /// "non_compliant" or "unknown".
    pub status: String,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Capacity {
    /// Length of the next period in days (what "fills within the next
    /// period" means).
    pub next_period_days: f64,
    /// Every filesystem, soonest to fill first.
    pub filesystems: Vec<FsForecast>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FsForecast {
    pub host: HostRef,
    pub mount: String,
    pub used_pct_start: Option<f64>,
    pub used_pct_end: Option<f64>,
    /// Least-squares slope of hourly average usage, percentage points per day.
    pub growth_pct_per_day: Option<f64>,
    /// From the end of the period at that rate; `None` when not growing.
    pub days_until_full: Option<f64>,
    pub fills_within_next_period: bool,
    /// Daily average usage (chart).
    pub daily: Vec<DailyValue>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InspectionStats {
    /// Runs filed in the period (inspections and self-checks), oldest first.
    pub runs: Vec<InspectionRunSummary>,
    /// Every abnormal item of those runs.
    pub abnormal_findings: Vec<Finding>,
    /// Every abnormal item of those runs; `abnormal_findings` lists the
    /// latest runs' findings up to a bound (a daily plan over a large fleet
    /// finds millions a year: the full list is in each run's record).
    #[serde(default)]
    pub abnormal_findings_total: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InspectionRunSummary {
    pub run_id: i64,
    /// "inspection" or "selfcheck".
    pub kind: String,
    pub plan: String,
    pub full_fleet: bool,
    pub filed_at: DateTime<Utc>,
    pub hosts_in_scope: u64,
    pub hosts_inspected: u64,
    pub hosts_abnormal: u64,
    pub hosts_not_reached: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Finding {
    pub run_id: i64,
    pub host: HostRef,
    pub item_id: String,
    pub title: String,
    pub value: String,
    pub threshold: String,
    pub measured_at: DateTime<Utc>,
    pub incident_id: Option<i64>,
}
