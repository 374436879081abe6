//! Computes a periodic ops report ([`OpsReport`]) from the store.
//!
//! Everything is evaluated as of `as_of = min(to, now)` (never before
//! `from`): a report for the running month counts only what has happened.
//! Intervals are half-open, `[from, as_of)`; incident milestones
//! (acknowledged, resolved) count when they happened at or before `as_of`,
//! as in [`SlaClock::attainment`]. Unknown is never counted as OK.
//!
//! - **Fleet.** The fleet at an instant `t` is the agents with
//!   `enrolled_at <= t` and no `revoked_at` or one after `t`; `size_start` is
//!   taken at `from`, `size_end` at `as_of`. Added / removed: enrolled /
//!   revoked in `[from, as_of)`, oldest first. Configuration changes:
//!   `config_changes.collected_at` in `[from, as_of)`.
//! - **Availability** counts 5-minute slots. A host is expected in every
//!   slot of `[max(from, enrolled_at), min(as_of, revoked_at))`, the start
//!   rounded up and the end down to a slot (the slot in progress is not
//!   expected yet). `presence_hourly` says how many slots of each UTC hour
//!   had a report; each hour's count is clamped to the slots of that hour
//!   the host was expected in. `pct = seen / expected`, `None` when nothing
//!   was expected; the fleet figure sums slots over hosts. Hosts are listed
//!   worst first, unknown (`None`) before any number.
//! - **Daily buckets.** An hourly row (presence, rollup) belongs to the
//!   local day its UTC hour starts in; with a time zone whose midnight is not
//!   on the hour (India) the straddling hour goes to the earlier day, and the
//!   expected slots are counted the same way. Days that start at or after
//!   `as_of` are `None` (future), never 0.
//! - **Incidents** opened in `[from, as_of)`. "Resolved" means resolved or
//!   closed by `as_of`. `by_rule` carries the title of the rule's latest
//!   incident in the period. `top_recurring` groups by (rule, host) and
//!   ranks by incidents + reopens, then occurrences, then host name and
//!   rule; a pair with one incident and no reopen did not recur and is left
//!   out. Reopen and occurrence counters are the stored ones (the store does
//!   not keep them per instant).
//! - **SLA.** Each incident's clock is `incidents.sla_clock` (JSON of
//!   [`SlaClock`]); rows from before SLA clocks (`''`) or with an unreadable
//!   clock get `SlaClock::new(severity, opened_at, policy)`. Respond and
//!   resolve outcomes are taken at `as_of`; a target still running is not
//!   decided. `pct = on_time / decided`. MTTA / MTTR are means, in minutes
//!   on the SLA calendar, over the incidents that were acknowledged /
//!   resolved. Suppressed incidents (silence, maintenance window) count as
//!   incidents but not in the SLA rows or breaches: the collector runs no
//!   SLA clock for them. A breach is a respond or resolve target missed, with
//!   when it was met late (`None`: still unmet at `as_of`).
//! - **Compliance** is the state at `as_of` of the hosts in the fleet then,
//!   from the latest data strictly before `as_of`:
//!   * patch: metric `patch.security_pending_count`, hourly rollups and, for
//!     the hours after the last rollup, raw samples. Latest value 0:
//!     compliant. Above 0: pending since the hour after the last hour whose
//!     minimum was 0 (or since the first data point if it never was);
//!     compliant while pending for at most `patch_max_age_days`. No data, or
//!     the latest `patch.security_pending` check is `unknown`: unknown.
//!   * antivirus: latest `av.status`; ok compliant, warning/critical not,
//!     unknown or missing unknown.
//!   * baseline: latest result of each `baseline.*` check; any warning or
//!     critical item: not compliant; else any unknown item, or none at all:
//!     unknown; else compliant. Item counts are summed over the fleet.
//!
//!   `pct = compliant / (compliant + non_compliant + unknown)`.
//! - **Capacity**: every `fs.used_pct` series with a `mount` label of the
//!   hosts in the fleet at `as_of` that has hourly rollups in
//!   `[from, as_of)`. Growth is the least-squares slope of the hourly
//!   averages (percentage points per day); start / end are the first / last
//!   hourly average; `days_until_full = (100 - end) / slope` while growing,
//!   counted from the last hour with data. Daily values are the mean of the
//!   day's hourly averages. Soonest to fill first, never-filling last.
//! - **Inspections**: runs filed in `[from, as_of)`, and the abnormal items
//!   of their host records.
//!
//! Hours (`presence_hourly.hour`, `rollups_hourly.hour`) are the UTC
//! milliseconds at which the hour starts, like every stored time.
//!
//! Cost: presence and rollup rows are each read once, in primary-key order,
//! one host or series at a time, and summed here. On SQLite that is faster
//! than doing the sums and the per-day grouping in SQL (a year of 1,000
//! hosts, 26 million rows: about 2 s against 5.5 s with `SUM(x * y)` and a
//! `GROUP BY` day, which sorts); everything else is a few index lookups per
//! host.

use std::cmp::Ordering;
use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension, params};

use crate::report::model::{
    Availability, Breach, Capacity, Compliance, ComplianceException, ComplianceStat, DailyValue,
    Finding, Fleet, FsForecast, HostAvailability, HostCount, HostRef, IncidentStats,
    InspectionRunSummary, InspectionStats, OpsReport, PeriodKind, Recurring, RuleCount,
    SeverityCount, SlaRow,
};
use crate::sla::{Severity, SlaClock, SlaPolicy, Target};
use crate::store::{StoreError, checks, samples};

/// Compliance data older than this at the end of the period says nothing
/// about the host now: it counts as unknown (patches are counted every 6 h
/// and checks run every 5 min, so a week means the host stopped sending).
pub const STALE_AFTER_MS: i64 = 7 * DAY_MS;

/// Abnormal findings listed in a report (about; whole runs are listed).
/// The total is always given.
pub const MAX_LISTED_FINDINGS: usize = 2_000;

const SLOT_MS: i64 = 5 * 60_000;
const HOUR_MS: i64 = 3_600_000;
const DAY_MS: i64 = 86_400_000;
/// Longest list of the "top" tables.
const TOP: usize = 10;

pub const METRIC_FS_USED: &str = "fs.used_pct";
pub const METRIC_SECURITY_PENDING: &str = "patch.security_pending_count";
pub const CHECK_SECURITY_PENDING: &str = "patch.security_pending";
pub const CHECK_ANTIVIRUS: &str = "av.status";
/// Check ids of the security baseline start with this.
pub const BASELINE_PREFIX: &str = "baseline.";

/// What to compute: the period and the settings the figures depend on.
#[derive(Debug, Clone)]
pub struct ReportParams {
    pub kind: PeriodKind,
    /// "2026-11", "2026-Q4", "2026".
    pub period_label: String,
    /// Local midnight at the start (inclusive) and the end (exclusive).
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    /// Length of the next period, for "fills within the next period".
    pub next_period_days: f64,
    pub timezone: chrono_tz::Tz,
    /// The local days of the period, in order, covering `[from, to)`:
    /// ("YYYY-MM-DD", start, end).
    pub days: Vec<(String, DateTime<Utc>, DateTime<Utc>)>,
    pub patch_max_age_days: u32,
    pub sla: SlaPolicy,
    pub now: DateTime<Utc>,
}

/// Computes the report for `params` from `conn` (read-only).
pub fn compute(conn: &Connection, params: &ReportParams) -> Result<OpsReport, StoreError> {
    let span = Span::new(params);
    let days = Days::new(params, span.as_of);
    let hosts = Hosts::load(conn)?;
    Ok(OpsReport {
        kind: params.kind,
        period: params.period_label.clone(),
        from: params.from,
        to: params.to,
        timezone: params.timezone.name().to_owned(),
        generated_at: params.now,
        fleet: fleet(conn, &hosts, &span)?,
        availability: availability(conn, &hosts, &span, &days)?,
        incidents: incidents(conn, &hosts, &span, &days, &params.sla)?,
        compliance: compliance(conn, &hosts, &span, params.patch_max_age_days)?,
        capacity: capacity(conn, &hosts, &span, &days, params.next_period_days)?,
        inspections: inspections(conn, &span)?,
    })
}

fn db(what: &'static str) -> impl FnOnce(rusqlite::Error) -> StoreError {
    move |error| StoreError::Sqlite { what, error }
}

fn ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

/// Stored milliseconds back to a time; values beyond chrono's range (which
/// no writer produces) saturate rather than fail the whole report.
fn time(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or(if ms < 0 {
        DateTime::<Utc>::MIN_UTC
    } else {
        DateTime::<Utc>::MAX_UTC
    })
}

fn floor_to(t: i64, step: i64) -> i64 {
    t.div_euclid(step) * step
}

fn ceil_to(t: i64, step: i64) -> i64 {
    floor_to(t.saturating_add(step - 1), step)
}

fn pct(part: u64, whole: u64) -> Option<f64> {
    (whole > 0).then(|| part as f64 / whole as f64 * 100.0)
}

/// `None` (unknown) sorts before any number: worst first.
fn cmp_unknown_first(a: Option<f64>, b: Option<f64>) -> Ordering {
    match (a, b) {
        (None, None) => Ordering::Equal,
        (None, Some(_)) => Ordering::Less,
        (Some(_), None) => Ordering::Greater,
        (Some(a), Some(b)) => a.total_cmp(&b),
    }
}

/// The period in milliseconds and the instant it is evaluated at.
struct Span {
    from: i64,
    to: i64,
    /// `min(to, now)`, not before `from`.
    as_of: i64,
}

impl Span {
    fn new(params: &ReportParams) -> Self {
        let from = ms(params.from);
        let to = ms(params.to).max(from);
        Self {
            from,
            to,
            as_of: ms(params.now).clamp(from, to),
        }
    }
}

/// The local days of the period and how hourly rows map onto them.
struct Days {
    labels: Vec<String>,
    /// Local midnights (UTC ms): exact bounds, for events.
    starts: Vec<i64>,
    /// Bounds of the hourly buckets: `bounds[d]..bounds[d + 1]` is day `d`
    /// (midnights rounded up to the hour, the period's own ends kept).
    bounds: Vec<i64>,
    as_of: i64,
}

impl Days {
    fn new(params: &ReportParams, as_of: i64) -> Self {
        let n = params.days.len();
        let mut bounds = Vec::with_capacity(n + 1);
        for (d, (_, start, _)) in params.days.iter().enumerate() {
            bounds.push(if d == 0 {
                ms(params.from)
            } else {
                ceil_to(ms(*start), HOUR_MS)
            });
        }
        if n > 0 {
            bounds.push(ms(params.to));
        }
        Self {
            labels: params.days.iter().map(|(l, _, _)| l.clone()).collect(),
            starts: params.days.iter().map(|(_, s, _)| ms(*s)).collect(),
            bounds,
            as_of,
        }
    }

    fn len(&self) -> usize {
        self.labels.len()
    }

    fn is_future(&self, day: usize) -> bool {
        self.starts[day] >= self.as_of
    }

    /// The day an event at `t` (inside the period) falls on.
    fn of_event(&self, t: i64) -> Option<usize> {
        self.starts.partition_point(|s| *s <= t).checked_sub(1)
    }

    /// One value per day, `None` for future days.
    fn values(&self, value: impl Fn(usize) -> Option<f64>) -> Vec<DailyValue> {
        (0..self.len())
            .map(|d| DailyValue {
                date: self.labels[d].clone(),
                value: if self.is_future(d) { None } else { value(d) },
            })
            .collect()
    }

    /// A cursor for mapping hours given in increasing order to days.
    fn cursor(&self) -> DayCursor<'_> {
        DayCursor {
            bounds: &self.bounds,
            day: 0,
        }
    }
}

/// Maps hours, fed in increasing order, to the day they start in, walking
/// the bounds instead of searching them for every row.
struct DayCursor<'d> {
    bounds: &'d [i64],
    day: usize,
}

impl DayCursor<'_> {
    /// Hours before the first day (the hour straddling `from`) count on the
    /// first day; `None` when the period has no days.
    fn day_of(&mut self, hour: i64) -> Option<usize> {
        let days = self.bounds.len().checked_sub(1).filter(|n| *n > 0)?;
        while self.day + 1 < days && hour >= self.bounds[self.day + 1] {
            self.day += 1;
        }
        Some(self.day)
    }
}

struct Host {
    agent_id: String,
    hostname: String,
    enrolled_at: i64,
    revoked_at: Option<i64>,
}

impl Host {
    fn in_fleet_at(&self, t: i64) -> bool {
        self.enrolled_at <= t && self.revoked_at.is_none_or(|r| r > t)
    }

    fn host_ref(&self) -> HostRef {
        HostRef {
            agent_id: self.agent_id.clone(),
            hostname: self.hostname.clone(),
        }
    }
}

/// Every agent, by host name.
struct Hosts {
    list: Vec<Host>,
    index: HashMap<String, usize>,
}

impl Hosts {
    fn load(conn: &Connection) -> Result<Self, StoreError> {
        let what = "reading agents for the report";
        let mut stmt = conn
            .prepare(
                "SELECT agent_id, hostname, enrolled_at, revoked_at FROM agents
                 ORDER BY hostname, agent_id",
            )
            .map_err(db(what))?;
        let list = stmt
            .query_map([], |r| {
                Ok(Host {
                    agent_id: r.get(0)?,
                    hostname: r.get(1)?,
                    enrolled_at: r.get(2)?,
                    revoked_at: r.get(3)?,
                })
            })
            .map_err(db(what))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(db(what))?;
        let index = list
            .iter()
            .enumerate()
            .map(|(i, h)| (h.agent_id.clone(), i))
            .collect();
        Ok(Self { list, index })
    }

    fn get(&self, agent_id: &str) -> Option<&Host> {
        self.index.get(agent_id).map(|i| &self.list[*i])
    }

    /// Agent ids always come from rows referencing `agents`; a missing one
    /// is still named rather than dropped.
    fn host_ref(&self, agent_id: &str) -> HostRef {
        self.get(agent_id).map_or_else(
            || HostRef {
                agent_id: agent_id.to_owned(),
                hostname: String::new(),
            },
            Host::host_ref,
        )
    }

    fn fleet_at(&self, t: i64) -> impl Iterator<Item = &Host> {
        self.list.iter().filter(move |h| h.in_fleet_at(t))
    }
}

// ---------------------------------------------------------------------------
// Fleet

fn fleet(conn: &Connection, hosts: &Hosts, span: &Span) -> Result<Fleet, StoreError> {
    let in_period = |t: i64| span.from <= t && t < span.as_of;
    let mut added: Vec<&Host> = hosts
        .list
        .iter()
        .filter(|h| in_period(h.enrolled_at))
        .collect();
    added.sort_by_key(|h| h.enrolled_at);
    let mut removed: Vec<&Host> = hosts
        .list
        .iter()
        .filter(|h| h.revoked_at.is_some_and(in_period))
        .collect();
    removed.sort_by_key(|h| h.revoked_at);

    let what = "counting configuration changes";
    let mut stmt = conn
        .prepare(
            "SELECT agent_id, COUNT(*) FROM config_changes
             WHERE collected_at >= ?1 AND collected_at < ?2 GROUP BY agent_id",
        )
        .map_err(db(what))?;
    let mut by_host = stmt
        .query_map(params![span.from, span.as_of], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, u64>(1)?))
        })
        .map_err(db(what))?
        .map(|row| {
            row.map(|(agent, count)| HostCount {
                host: hosts.host_ref(&agent),
                count,
            })
        })
        .collect::<Result<Vec<_>, _>>()
        .map_err(db(what))?;
    by_host.sort_by(|a, b| {
        b.count
            .cmp(&a.count)
            .then_with(|| cmp_host(&a.host, &b.host))
    });

    Ok(Fleet {
        size_start: hosts.fleet_at(span.from).count() as u64,
        size_end: hosts.fleet_at(span.as_of).count() as u64,
        added: added.into_iter().map(Host::host_ref).collect(),
        removed: removed.into_iter().map(Host::host_ref).collect(),
        config_changes_total: by_host.iter().map(|h| h.count).sum(),
        config_changes_by_host: by_host,
    })
}

fn cmp_host(a: &HostRef, b: &HostRef) -> Ordering {
    a.hostname
        .cmp(&b.hostname)
        .then_with(|| a.agent_id.cmp(&b.agent_id))
}

// ---------------------------------------------------------------------------
// Availability

fn availability(
    conn: &Connection,
    hosts: &Hosts,
    span: &Span,
    days: &Days,
) -> Result<Availability, StoreError> {
    let what = "reading presence";
    // Streamed in hour order and summed here (see "Cost" above).
    let mut stmt = conn
        .prepare(&format!(
            "SELECT hour, slots_seen FROM presence_hourly
             WHERE agent_id = ?1 AND hour > ?2 - {HOUR_MS} AND hour < ?3
             ORDER BY hour"
        ))
        .map_err(db(what))?;
    let mut day_seen = vec![0u64; days.len()];
    let mut day_expected = vec![0u64; days.len()];
    let mut rows = Vec::new();
    for host in &hosts.list {
        let active_end = host.revoked_at.unwrap_or(i64::MAX).min(span.as_of);
        if host.enrolled_at >= span.as_of || active_end <= span.from {
            continue;
        }
        let start = ceil_to(host.enrolled_at.max(span.from), SLOT_MS);
        let end = floor_to(active_end, SLOT_MS);
        let slots = |a: i64, b: i64| {
            let (a, b) = (
                ceil_to(a.max(start), SLOT_MS),
                floor_to(b.min(end), SLOT_MS),
            );
            u64::try_from((b - a) / SLOT_MS).unwrap_or(0)
        };
        let expected = slots(span.from, span.to);
        let mut seen = 0u64;
        if expected > 0 {
            let mut presence = stmt
                .query(params![host.agent_id, start, end])
                .map_err(db(what))?;
            let mut cursor = days.cursor();
            while let Some(row) = presence.next().map_err(db(what))? {
                let hour: i64 = row.get(0).map_err(db(what))?;
                let count: i64 = row.get(1).map_err(db(what))?;
                let count = u64::try_from(count)
                    .unwrap_or(0)
                    .min(slots(hour, hour + HOUR_MS));
                seen += count;
                if let Some(d) = cursor.day_of(hour) {
                    day_seen[d] += count;
                }
            }
            for (d, expected) in day_expected.iter_mut().enumerate() {
                *expected += slots(days.bounds[d], days.bounds[d + 1]);
            }
        }
        rows.push(HostAvailability {
            host: host.host_ref(),
            expected_slots: expected,
            seen_slots: seen.min(expected),
            pct: pct(seen.min(expected), expected),
        });
    }
    rows.sort_by(|a, b| cmp_unknown_first(a.pct, b.pct).then_with(|| cmp_host(&a.host, &b.host)));
    let seen: u64 = rows.iter().map(|r| r.seen_slots).sum();
    let expected: u64 = rows.iter().map(|r| r.expected_slots).sum();
    Ok(Availability {
        fleet_pct: pct(seen, expected),
        daily: days.values(|d| pct(day_seen[d].min(day_expected[d]), day_expected[d])),
        hosts: rows,
    })
}

// ---------------------------------------------------------------------------
// Incidents and SLA

struct IncidentRow {
    incident_id: i64,
    rule_id: String,
    agent_id: String,
    severity: Severity,
    title: String,
    opened_at: i64,
    acknowledged_at: Option<i64>,
    /// Resolved, or closed if no resolution time was kept.
    resolved_at: Option<i64>,
    reopen_count: u64,
    occurrences: u64,
    suppressed: bool,
    sla_clock: String,
}

fn load_incidents(conn: &Connection, span: &Span) -> Result<Vec<IncidentRow>, StoreError> {
    let what = "reading incidents";
    let mut stmt = conn
        .prepare(
            "SELECT incident_id, rule_id, agent_id, severity, title, opened_at, acknowledged_at,
                    coalesce(resolved_at, closed_at), reopen_count, occurrences, suppressed, sla_clock
             FROM incidents WHERE opened_at >= ?1 AND opened_at < ?2
             ORDER BY opened_at, incident_id",
        )
        .map_err(db(what))?;
    stmt.query_map(params![span.from, span.as_of], |r| {
        let severity: String = r.get(3)?;
        let severity = Severity::parse(&severity).ok_or_else(|| {
            rusqlite::Error::FromSqlConversionFailure(
                3,
                rusqlite::types::Type::Text,
                format!("{severity:?} is not a severity (I..IV)").into(),
            )
        })?;
        Ok(IncidentRow {
            incident_id: r.get(0)?,
            rule_id: r.get(1)?,
            agent_id: r.get(2)?,
            severity,
            title: r.get(4)?,
            opened_at: r.get(5)?,
            acknowledged_at: r.get(6)?,
            resolved_at: r.get(7)?,
            reopen_count: r.get(8)?,
            occurrences: r.get(9)?,
            suppressed: r.get(10)?,
            sla_clock: r.get(11)?,
        })
    })
    .map_err(db(what))?
    .collect::<Result<Vec<_>, _>>()
    .map_err(db(what))
}

/// The stored clock, or the one the collector would have started.
fn clock_of(row: &IncidentRow, policy: &SlaPolicy) -> SlaClock {
    if !row.sla_clock.is_empty() {
        match serde_json::from_str(&row.sla_clock) {
            Ok(clock) => return clock,
            Err(error) => tracing::warn!(
                incident_id = row.incident_id,
                %error,
                "unreadable SLA clock; the report uses one started from the policy"
            ),
        }
    }
    SlaClock::new(row.severity, time(row.opened_at), policy)
}

#[derive(Default)]
struct SlaTally {
    response_decided: u64,
    response_on_time: u64,
    resolution_decided: u64,
    resolution_on_time: u64,
    ack_minutes: (f64, u64),
    resolve_minutes: (f64, u64),
}

impl SlaTally {
    fn row(&self, severity: &str) -> SlaRow {
        let mean = |(sum, n): (f64, u64)| (n > 0).then(|| sum / n as f64);
        SlaRow {
            severity: severity.to_owned(),
            response_decided: self.response_decided,
            response_on_time: self.response_on_time,
            response_pct: pct(self.response_on_time, self.response_decided),
            resolution_decided: self.resolution_decided,
            resolution_on_time: self.resolution_on_time,
            resolution_pct: pct(self.resolution_on_time, self.resolution_decided),
            mtta_minutes: mean(self.ack_minutes),
            mttr_minutes: mean(self.resolve_minutes),
        }
    }
}

fn incidents(
    conn: &Connection,
    hosts: &Hosts,
    span: &Span,
    days: &Days,
    policy: &SlaPolicy,
) -> Result<IncidentStats, StoreError> {
    let rows = load_incidents(conn, span)?;
    let as_of = time(span.as_of);
    let happened = |t: Option<i64>| t.filter(|t| *t <= span.as_of);

    let mut by_severity = Severity::ALL.map(|s| SeverityCount {
        severity: s.as_str().to_owned(),
        opened: 0,
        resolved: 0,
        open_at_end: 0,
    });
    // rule -> (count, (opened_at, id) of the latest, its title)
    let mut by_rule: BTreeMap<&str, (u64, (i64, i64), &str)> = BTreeMap::new();
    let mut recurring: BTreeMap<(&str, &str), (u64, u64, u64)> = BTreeMap::new();
    let mut by_host: BTreeMap<&str, u64> = BTreeMap::new();
    let mut tallies: [SlaTally; 4] = Default::default();
    let mut all = SlaTally::default();
    let mut breaches = Vec::new();
    let mut daily = vec![0u64; days.len()];

    for row in &rows {
        let resolved = happened(row.resolved_at).is_some();
        let count = &mut by_severity[row.severity as usize];
        count.opened += 1;
        if resolved {
            count.resolved += 1;
        } else {
            count.open_at_end += 1;
        }
        let rule = by_rule.entry(&row.rule_id).or_insert((
            0,
            (row.opened_at, row.incident_id),
            &row.title,
        ));
        rule.0 += 1;
        if (row.opened_at, row.incident_id) >= rule.1 {
            rule.1 = (row.opened_at, row.incident_id);
            rule.2 = &row.title;
        }
        let rec = recurring.entry((&row.rule_id, &row.agent_id)).or_default();
        rec.0 += 1;
        rec.1 += row.reopen_count;
        rec.2 += row.occurrences;
        *by_host.entry(&row.agent_id).or_default() += 1;
        if let Some(d) = days.of_event(row.opened_at).and_then(|d| daily.get_mut(d)) {
            *d += 1;
        }

        if row.suppressed {
            continue;
        }
        let clock = clock_of(row, policy);
        let acknowledged_at = row.acknowledged_at.map(time);
        let resolved_at = row.resolved_at.map(time);
        let att = clock.attainment(policy, as_of, acknowledged_at, None, resolved_at);
        for tally in [&mut tallies[row.severity as usize], &mut all] {
            if let Some(on_time) = att.respond.on_time() {
                tally.response_decided += 1;
                tally.response_on_time += u64::from(on_time);
            }
            if let Some(on_time) = att.resolve.on_time() {
                tally.resolution_decided += 1;
                tally.resolution_on_time += u64::from(on_time);
            }
            if let Some(took) = att.time_to_acknowledge {
                tally.ack_minutes.0 += took.as_secs_f64() / 60.0;
                tally.ack_minutes.1 += 1;
            }
            if let Some(took) = att.time_to_resolve {
                tally.resolve_minutes.0 += took.as_secs_f64() / 60.0;
                tally.resolve_minutes.1 += 1;
            }
        }
        for (target, outcome, name) in [
            (Target::Respond, att.respond, "response"),
            (Target::Resolve, att.resolve, "resolution"),
        ] {
            if outcome.on_time() != Some(false) {
                continue;
            }
            // As in the SLA clock: resolution also ends the response target.
            let met = match target {
                Target::Respond => match (row.acknowledged_at, row.resolved_at) {
                    (Some(a), Some(r)) => Some(a.min(r)),
                    (a, r) => a.or(r),
                },
                _ => row.resolved_at,
            };
            let due = clock.due(target);
            breaches.push(Breach {
                incident_id: row.incident_id,
                host: hosts.host_ref(&row.agent_id),
                rule_id: row.rule_id.clone(),
                severity: row.severity.as_str().to_owned(),
                target: name.to_owned(),
                due_at: due,
                met_at: happened(met).map(time).filter(|m| *m > due),
            });
        }
    }
    breaches.sort_by(|a, b| {
        (a.due_at, a.incident_id, &a.target).cmp(&(b.due_at, b.incident_id, &b.target))
    });

    let mut by_rule: Vec<RuleCount> = by_rule
        .into_iter()
        .map(|(rule_id, (count, _, title))| RuleCount {
            rule_id: rule_id.to_owned(),
            title: title.to_owned(),
            count,
        })
        .collect();
    by_rule.sort_by(|a, b| {
        b.count
            .cmp(&a.count)
            .then_with(|| a.rule_id.cmp(&b.rule_id))
    });

    let mut top_recurring: Vec<Recurring> = recurring
        .into_iter()
        .filter(|(_, (incidents, reopens, _))| incidents + reopens > 1)
        .map(
            |((rule_id, agent_id), (incidents, reopens, occurrences))| Recurring {
                rule_id: rule_id.to_owned(),
                host: hosts.host_ref(agent_id),
                incidents,
                reopens,
                occurrences,
            },
        )
        .collect();
    top_recurring.sort_by(|a, b| {
        (b.incidents + b.reopens)
            .cmp(&(a.incidents + a.reopens))
            .then_with(|| b.occurrences.cmp(&a.occurrences))
            .then_with(|| cmp_host(&a.host, &b.host))
            .then_with(|| a.rule_id.cmp(&b.rule_id))
    });
    top_recurring.truncate(TOP);

    let mut top_hosts: Vec<HostCount> = by_host
        .into_iter()
        .map(|(agent, count)| HostCount {
            host: hosts.host_ref(agent),
            count,
        })
        .collect();
    top_hosts.sort_by(|a, b| {
        b.count
            .cmp(&a.count)
            .then_with(|| cmp_host(&a.host, &b.host))
    });
    top_hosts.truncate(TOP);

    let mut sla: Vec<SlaRow> = Severity::ALL
        .iter()
        .map(|s| tallies[*s as usize].row(s.as_str()))
        .collect();
    sla.push(all.row("all"));

    Ok(IncidentStats {
        opened: rows.len() as u64,
        resolved: by_severity.iter().map(|s| s.resolved).sum(),
        by_severity: by_severity.into(),
        by_rule,
        top_recurring,
        top_hosts,
        sla,
        breaches,
        daily_opened: days.values(|d| Some(daily[d] as f64)),
    })
}

// ---------------------------------------------------------------------------
// Compliance

enum HostCompliance {
    Compliant,
    NonCompliant(String),
    Unknown(String),
}

#[derive(Default)]
struct ComplianceTally {
    compliant: u64,
    non_compliant: u64,
    unknown: u64,
    exceptions: Vec<ComplianceException>,
}

impl ComplianceTally {
    fn add(&mut self, host: &Host, state: HostCompliance) {
        let (status, reason) = match state {
            HostCompliance::Compliant => {
                self.compliant += 1;
                return;
            }
            HostCompliance::NonCompliant(reason) => {
                self.non_compliant += 1;
                ("non_compliant", reason)
            }
            HostCompliance::Unknown(reason) => {
                self.unknown += 1;
                ("unknown", reason)
            }
        };
        self.exceptions.push(ComplianceException {
            host: host.host_ref(),
            status: status.to_owned(),
            reason,
        });
    }

    fn stat(mut self) -> ComplianceStat {
        // "non_compliant" sorts before "unknown".
        self.exceptions.sort_by(|a, b| {
            a.status
                .cmp(&b.status)
                .then_with(|| cmp_host(&a.host, &b.host))
        });
        ComplianceStat {
            compliant: self.compliant,
            non_compliant: self.non_compliant,
            unknown: self.unknown,
            pct: pct(
                self.compliant,
                self.compliant + self.non_compliant + self.unknown,
            ),
            exceptions: self.exceptions,
        }
    }
}

struct CheckRow {
    check_id: String,
    status: String,
    value: String,
    evidence: String,
    reason: String,
    at: i64,
}

impl From<checks::Taken> for CheckRow {
    fn from(t: checks::Taken) -> Self {
        let c = t.result;
        Self {
            check_id: c.check_id,
            status: c.status,
            value: c.value,
            evidence: c.evidence,
            reason: c.reason,
            at: t.at,
        }
    }
}

impl CheckRow {
    /// Older than [`STALE_AFTER_MS`] at `as_of`: what it said is no longer
    /// known (the host stopped sending it).
    fn is_stale(&self, as_of: i64) -> bool {
        as_of - self.at > STALE_AFTER_MS
    }

    fn why_stale(&self, as_of: i64) -> String {
        format!(
            "{}: last result is {:.0} days old",
            self.check_id,
            (as_of - self.at) as f64 / DAY_MS as f64
        )
    }

    fn why_unknown(&self) -> String {
        let why = if self.reason.is_empty() {
            "no reason given"
        } else {
            &self.reason
        };
        format!("{}: unknown ({why})", self.check_id)
    }
}

/// The newest result of `check_id` the host sent before `before`.
fn latest_check(
    conn: &Connection,
    agent_id: &str,
    check_id: &str,
    before: i64,
) -> Result<Option<CheckRow>, StoreError> {
    Ok(checks::latest_before(conn, agent_id, check_id, before)
        .map_err(db("reading the latest check result"))?
        .map(CheckRow::from))
}

/// The newest result of each baseline check the host sent before `before`.
fn baseline_checks(
    conn: &Connection,
    agent_id: &str,
    before: i64,
) -> Result<Vec<CheckRow>, StoreError> {
    Ok(
        checks::latest_with_prefix(conn, agent_id, BASELINE_PREFIX, before)
            .map_err(db("listing baseline checks"))?
            .into_iter()
            .map(CheckRow::from)
            .collect(),
    )
}

fn compliance(
    conn: &Connection,
    hosts: &Hosts,
    span: &Span,
    patch_max_age_days: u32,
) -> Result<Compliance, StoreError> {
    let mut patch = ComplianceTally::default();
    let mut antivirus = ComplianceTally::default();
    let mut baseline = ComplianceTally::default();
    let (mut passed, mut failed, mut unknown) = (0u64, 0u64, 0u64);
    for host in hosts.fleet_at(span.as_of) {
        patch.add(
            host,
            patch_state(conn, host, span.as_of, patch_max_age_days)?,
        );
        antivirus.add(
            host,
            match latest_check(conn, &host.agent_id, CHECK_ANTIVIRUS, span.as_of)? {
                None => HostCompliance::Unknown(format!("no {CHECK_ANTIVIRUS} reported")),
                Some(c) if c.is_stale(span.as_of) => {
                    HostCompliance::Unknown(c.why_stale(span.as_of))
                }
                Some(c) => match c.status.as_str() {
                    "ok" => HostCompliance::Compliant,
                    "warning" | "critical" => HostCompliance::NonCompliant(
                        [&c.value, &c.evidence, &c.status]
                            .into_iter()
                            .find(|s| !s.is_empty())
                            .cloned()
                            .unwrap_or_default(),
                    ),
                    _ => HostCompliance::Unknown(c.why_unknown()),
                },
            },
        );
        let items = baseline_checks(conn, &host.agent_id, span.as_of)?;
        let ids = |status: &[&str]| {
            items
                .iter()
                // A stale result is unknown, whatever it said then.
                .filter(|i| {
                    let now = if i.is_stale(span.as_of) {
                        "unknown"
                    } else {
                        i.status.as_str()
                    };
                    status.contains(&now)
                })
                .map(|i| i.check_id.as_str())
                .collect::<Vec<_>>()
        };
        let failing = ids(&["warning", "critical"]);
        let unsure = ids(&["unknown"]);
        let ok = ids(&["ok"]);
        passed += ok.len() as u64;
        failed += failing.len() as u64;
        unknown += unsure.len() as u64;
        baseline.add(
            host,
            if !failing.is_empty() {
                HostCompliance::NonCompliant(format!("failing: {}", failing.join(", ")))
            } else if items.is_empty() {
                HostCompliance::Unknown("no baseline results".into())
            } else if !unsure.is_empty() {
                HostCompliance::Unknown(format!("not determined: {}", unsure.join(", ")))
            } else {
                HostCompliance::Compliant
            },
        );
    }
    Ok(Compliance {
        patch_max_age_days,
        patch: patch.stat(),
        antivirus: antivirus.stat(),
        baseline: baseline.stat(),
        baseline_items_passed: passed,
        baseline_items_failed: failed,
        baseline_items_unknown: unknown,
        // Unknown items count against the rate, as unknown hosts do in
        // the compliance figures: "100 %" with half the items undetermined
        // would be a claim nobody checked.
        baseline_item_pass_pct: pct(passed, passed + failed + unknown),
    })
}

/// Where one `patch.security_pending_count` series stands at `as_of`.
struct PendingSeries {
    /// Start of the latest hour with data.
    latest_hour: i64,
    /// The latest value seen (the last raw sample, or the last hour's
    /// maximum when only rollups are left).
    latest_value: f64,
    /// When the current pending streak started.
    pending_since: i64,
}

fn patch_state(
    conn: &Connection,
    host: &Host,
    as_of: i64,
    max_age_days: u32,
) -> Result<HostCompliance, StoreError> {
    if let Some(check) = latest_check(conn, &host.agent_id, CHECK_SECURITY_PENDING, as_of)?
        && check.status == "unknown"
    {
        return Ok(HostCompliance::Unknown(check.why_unknown()));
    }
    let what = "reading patch series";
    let mut stmt = conn
        .prepare_cached("SELECT series_id FROM series WHERE agent_id = ?1 AND name = ?2")
        .map_err(db(what))?;
    let ids = stmt
        .query_map(params![host.agent_id, METRIC_SECURITY_PENDING], |r| {
            r.get::<_, i64>(0)
        })
        .map_err(db(what))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(db(what))?;
    let mut latest: Option<PendingSeries> = None;
    for id in ids {
        if let Some(state) = pending_series(conn, id, as_of)?
            && latest
                .as_ref()
                .is_none_or(|l| state.latest_hour > l.latest_hour)
        {
            latest = Some(state);
        }
    }
    let Some(state) = latest else {
        return Ok(HostCompliance::Unknown(format!(
            "no {METRIC_SECURITY_PENDING} data"
        )));
    };
    if as_of - state.latest_hour > STALE_AFTER_MS {
        return Ok(HostCompliance::Unknown(format!(
            "last {METRIC_SECURITY_PENDING} is {:.0} days old",
            (as_of - state.latest_hour) as f64 / DAY_MS as f64
        )));
    }
    if state.latest_value <= 0.0 {
        return Ok(HostCompliance::Compliant);
    }
    let age_days = (as_of - state.pending_since).max(0) as f64 / DAY_MS as f64;
    if age_days <= f64::from(max_age_days) {
        return Ok(HostCompliance::Compliant);
    }
    Ok(HostCompliance::NonCompliant(format!(
        "{} security updates pending for {age_days:.1} days",
        state.latest_value.round()
    )))
}

fn pending_series(
    conn: &Connection,
    series_id: i64,
    as_of: i64,
) -> Result<Option<PendingSeries>, StoreError> {
    let what = "reading patch rollups and samples";
    // (hour, max) of the last hour rolled up.
    let last_rollup: Option<(i64, f64)> = conn
        .prepare_cached(
            "SELECT hour, max FROM rollups_hourly WHERE series_id = ?1 AND hour < ?2
             ORDER BY hour DESC LIMIT 1",
        )
        .and_then(|mut s| {
            s.query_row(params![series_id, as_of], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()
        })
        .map_err(db(what))?;
    // Hours not rolled up yet, from the raw samples: (hour, min), oldest
    // first. With no rollup of this series at all, its samples are all in
    // hours the rollups have not reached.
    let rolled_before = crate::maintenance::rolled_up_before(conn).map_err(db(what))?;
    let unrolled_from = last_rollup.map_or(rolled_before.unwrap_or(i64::MIN), |(hour, _)| {
        hour + HOUR_MS
    });
    let points = samples::points(conn, series_id, unrolled_from, as_of).map_err(db(what))?;
    let mut unrolled: Vec<(i64, f64)> = Vec::new();
    for p in &points {
        let hour = p.at.div_euclid(HOUR_MS) * HOUR_MS;
        match unrolled.last_mut() {
            Some((h, min)) if *h == hour => *min = min.min(p.value),
            _ => unrolled.push((hour, p.value)),
        }
    }
    let (latest_hour, latest_value) = match (points.last(), last_rollup) {
        (Some(p), _) => (p.at.div_euclid(HOUR_MS) * HOUR_MS, p.value),
        (None, Some((hour, max))) => (hour, max),
        (None, None) => return Ok(None),
    };
    // The streak started after the last hour at zero, or with the data.
    let zero_hour = match unrolled.iter().rev().find(|(_, min)| *min <= 0.0) {
        Some((hour, _)) => Some(*hour),
        None => conn
            .prepare_cached(
                "SELECT hour FROM rollups_hourly WHERE series_id = ?1 AND hour < ?2 AND min <= 0
                 ORDER BY hour DESC LIMIT 1",
            )
            .and_then(|mut s| {
                s.query_row(params![series_id, as_of], |r| r.get(0))
                    .optional()
            })
            .map_err(db(what))?,
    };
    let pending_since = match zero_hour {
        Some(hour) => (hour + HOUR_MS).min(as_of),
        None => {
            let first_rollup: Option<i64> = conn
                .prepare_cached("SELECT MIN(hour) FROM rollups_hourly WHERE series_id = ?1")
                .and_then(|mut s| s.query_row([series_id], |r| r.get(0)))
                .map_err(db(what))?;
            let first_sample = points.first().map(|p| p.at);
            first_rollup
                .into_iter()
                .chain(first_sample)
                .min()
                .unwrap_or(latest_hour)
        }
    };
    Ok(Some(PendingSeries {
        latest_hour,
        latest_value,
        pending_since,
    }))
}

// ---------------------------------------------------------------------------
// Capacity

/// Least-squares sums of (x = days since `from`, y = hourly average),
/// taken relative to the first point: the slope is the same and the sums
/// lose less to cancellation.
#[derive(Default)]
struct Regression {
    origin: Option<(f64, f64)>,
    n: f64,
    sx: f64,
    sy: f64,
    sxx: f64,
    sxy: f64,
}

impl Regression {
    fn add(&mut self, x: f64, y: f64) {
        let (x0, y0) = *self.origin.get_or_insert((x, y));
        let (x, y) = (x - x0, y - y0);
        self.n += 1.0;
        self.sx += x;
        self.sy += y;
        self.sxx += x * x;
        self.sxy += x * y;
    }

    /// Percentage points per day; `None` with fewer than two hours.
    fn slope(&self) -> Option<f64> {
        let denominator = self.n * self.sxx - self.sx * self.sx;
        (self.n >= 2.0 && denominator > 0.0)
            .then(|| (self.n * self.sxy - self.sx * self.sy) / denominator)
    }
}

fn capacity(
    conn: &Connection,
    hosts: &Hosts,
    span: &Span,
    days: &Days,
    next_period_days: f64,
) -> Result<Capacity, StoreError> {
    let what = "reading filesystem usage";
    let mut series_stmt = conn
        .prepare("SELECT series_id, agent_id, labels FROM series WHERE name = ?1")
        .map_err(db(what))?;
    let mut series = series_stmt
        .query_map([METRIC_FS_USED], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
            ))
        })
        .map_err(db(what))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(db(what))?;
    series.sort_by_key(|(id, _, _)| *id);

    // Streamed in hour order and summed here (see "Cost" above).
    let mut hourly = conn
        .prepare(
            "SELECT hour, avg FROM rollups_hourly
             WHERE series_id = ?1 AND hour >= ?2 AND hour < ?3 ORDER BY hour",
        )
        .map_err(db(what))?;
    let mut filesystems = Vec::new();
    for (series_id, agent_id, labels) in series {
        let Some(host) = hosts.get(&agent_id).filter(|h| h.in_fleet_at(span.as_of)) else {
            continue;
        };
        let Some(mount) = mount_label(&labels) else {
            continue;
        };
        let mut rows = hourly
            .query(params![series_id, span.from, span.as_of])
            .map_err(db(what))?;
        let mut fit = Regression::default();
        let (mut start, mut end) = (None, None);
        let mut day_sums = vec![(0u32, 0.0f64); days.len()];
        let mut cursor = days.cursor();
        while let Some(row) = rows.next().map_err(db(what))? {
            let hour: i64 = row.get(0).map_err(db(what))?;
            let used: f64 = row.get(1).map_err(db(what))?;
            fit.add((hour - span.from) as f64 / DAY_MS as f64, used);
            start.get_or_insert(used);
            end = Some(used);
            if let Some(d) = cursor.day_of(hour) {
                day_sums[d].0 += 1;
                day_sums[d].1 += used;
            }
        }
        let Some(end) = end else {
            continue;
        };
        let slope = fit.slope();
        let days_until_full = slope
            .filter(|s| *s > 0.0)
            .map(|s| ((100.0 - end) / s).max(0.0));
        filesystems.push(FsForecast {
            host: host.host_ref(),
            mount,
            used_pct_start: start,
            used_pct_end: Some(end),
            growth_pct_per_day: slope,
            days_until_full,
            fills_within_next_period: days_until_full.is_some_and(|d| d <= next_period_days),
            daily: days.values(|d| {
                let (n, sum) = day_sums[d];
                (n > 0).then(|| sum / f64::from(n))
            }),
        });
    }
    filesystems.sort_by(|a, b| {
        let soonest = match (a.days_until_full, b.days_until_full) {
            (Some(a), Some(b)) => a.total_cmp(&b),
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (None, None) => Ordering::Equal,
        };
        soonest
            .then_with(|| cmp_host(&a.host, &b.host))
            .then_with(|| a.mount.cmp(&b.mount))
    });
    Ok(Capacity {
        next_period_days,
        filesystems,
    })
}

/// The `mount` label of a series' label JSON (`{"mount":"/",...}`).
fn mount_label(labels: &str) -> Option<String> {
    let map: BTreeMap<String, String> = serde_json::from_str(labels).ok()?;
    map.get("mount").cloned()
}

// ---------------------------------------------------------------------------
// Inspections

fn inspections(conn: &Connection, span: &Span) -> Result<InspectionStats, StoreError> {
    let what = "reading inspection runs";
    let mut stmt = conn
        .prepare(
            "SELECT run_id, kind, plan, full_fleet, filed_at, hosts_in_scope, hosts_inspected,
                    hosts_abnormal, hosts_not_reached
             FROM inspection_runs
             WHERE state = 'filed' AND filed_at >= ?1 AND filed_at < ?2
             ORDER BY filed_at, run_id",
        )
        .map_err(db(what))?;
    let runs = stmt
        .query_map(params![span.from, span.as_of], |r| {
            Ok(InspectionRunSummary {
                run_id: r.get(0)?,
                kind: r.get(1)?,
                plan: r.get(2)?,
                full_fleet: r.get(3)?,
                filed_at: time(r.get(4)?),
                hosts_in_scope: r.get(5)?,
                hosts_inspected: r.get(6)?,
                hosts_abnormal: r.get(7)?,
                hosts_not_reached: r.get(8)?,
            })
        })
        .map_err(db(what))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(db(what))?;

    let what = "reading inspection findings";
    let mut stmt = conn
        .prepare(
            "SELECT r.run_id, r.agent_id, r.hostname, i.item_id, i.title, i.value, i.threshold,
                    i.measured_at, i.incident_id
             FROM inspection_items i JOIN inspection_records r ON r.record_id = i.record_id
             WHERE r.run_id = ?1 AND i.verdict = 'abnormal'
             ORDER BY r.hostname, r.agent_id, i.item_id",
        )
        .map_err(db(what))?;
    let what_count = "counting inspection findings";
    let abnormal_findings_total: i64 = conn
        .query_row(
            "SELECT count(*) FROM inspection_items i JOIN inspection_records r ON r.record_id = i.record_id
             JOIN inspection_runs u ON u.run_id = r.run_id
             WHERE u.state = 'filed' AND u.filed_at >= ?1 AND u.filed_at < ?2 AND i.verdict = 'abnormal'",
            params![span.from, span.as_of],
            |r| r.get(0),
        )
        .map_err(db(what_count))?;
    let mut abnormal_findings = Vec::new();
    // Newest runs first until the bound, then back in run order.
    for run in runs.iter().rev() {
        if abnormal_findings.len() >= MAX_LISTED_FINDINGS {
            break;
        }
        let found = stmt
            .query_map([run.run_id], |r| {
                Ok(Finding {
                    run_id: r.get(0)?,
                    host: HostRef {
                        agent_id: r.get(1)?,
                        hostname: r.get(2)?,
                    },
                    item_id: r.get(3)?,
                    title: r.get(4)?,
                    value: r.get(5)?,
                    threshold: r.get(6)?,
                    measured_at: time(r.get(7)?),
                    incident_id: r.get(8)?,
                })
            })
            .map_err(db(what))?;
        for finding in found {
            abnormal_findings.push(finding.map_err(db(what))?);
        }
    }
    abnormal_findings.sort_by_key(|f| f.run_id);
    Ok(InspectionStats {
        runs,
        abnormal_findings_total: abnormal_findings_total as u64,
        abnormal_findings,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::render::test_support::assert_golden;
    use crate::report::seed::{self, seed_month};
    use crate::schedule::{local_days, start_of_day};

    fn t(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text).unwrap().to_utc()
    }

    fn fresh_db() -> (tempfile::TempDir, Connection) {
        let dir = tempfile::tempdir().unwrap();
        let conn = crate::store::open(&dir.path().join("report.db")).unwrap();
        (dir, conn)
    }

    /// November 2026 in Asia/Shanghai, bounds worked out by hand: local
    /// midnight is 16:00 UTC the day before.
    fn november(now: DateTime<Utc>) -> ReportParams {
        let tz = chrono_tz::Asia::Shanghai;
        let from = t("2026-10-31T16:00:00Z");
        let to = t("2026-11-30T16:00:00Z");
        assert_eq!(
            start_of_day(tz, chrono::NaiveDate::from_ymd_opt(2026, 11, 1).unwrap()),
            from
        );
        let days = local_days(
            tz,
            chrono::NaiveDate::from_ymd_opt(2026, 11, 1).unwrap(),
            chrono::NaiveDate::from_ymd_opt(2026, 12, 1).unwrap(),
        );
        assert_eq!(days.len(), 30);
        assert_eq!(days[29].0, "2026-11-30");
        ReportParams {
            kind: PeriodKind::Monthly,
            period_label: "2026-11".into(),
            from,
            to,
            next_period_days: 31.0,
            timezone: tz,
            days,
            patch_max_age_days: 14,
            sla: seed::default_policy(),
            now,
        }
    }

    fn agent(conn: &Connection, id: &str, enrolled: &str, revoked: Option<&str>) {
        conn.execute(
            "INSERT INTO agents (agent_id, hostname, enrolled_at, enrolled_with_token, cert_serial, cert_sha256, revoked_at)
             VALUES (?1, ?1, ?2, 't', 's', 'h', ?3)",
            params![id, ms(t(enrolled)), revoked.map(|r| ms(t(r)))],
        )
        .unwrap();
    }

    fn check(conn: &Connection, agent: &str, at: &str, id: &str, status: &str, reason: &str) {
        let result = checks::CheckResult {
            check_id: id.into(),
            title: id.into(),
            status: status.into(),
            reason: reason.into(),
            ..Default::default()
        };
        checks::insert_block(conn, agent, 1, ms(t(at)), &[result]).unwrap();
    }

    #[test]
    fn seeded_month_matches_the_golden_report_in_every_format() {
        let (_dir, mut conn) = fresh_db();
        let info = seed_month(&mut conn).unwrap();
        let params = info.params();
        assert_eq!(params.from, november(params.now).from);
        let report = compute(&conn, &params).unwrap();
        let json = serde_json::to_string_pretty(&report).unwrap() + "\n";
        assert_golden("report-seeded-monthly.json", json.as_bytes());
        // And it reads back as a report.
        let back: OpsReport = serde_json::from_str(&json).unwrap();
        assert_eq!(back.incidents.breaches, report.incidents.breaches);
        // The seeded month as the customer and the spreadsheet get it.
        use crate::report::model::Lang;
        use crate::report::render::{Format, render_report};
        for (lang, tag) in [(Lang::En, "en"), (Lang::ZhCn, "zh-CN")] {
            for (format, ext) in [(Format::Html, "html"), (Format::Csv, "csv")] {
                let out = render_report(&report, lang, format).unwrap();
                assert_golden(&format!("report-seeded-monthly.{tag}.{ext}"), &out);
            }
        }
    }

    #[test]
    fn a_host_enrolled_mid_period_is_expected_from_its_enrollment_only() {
        let (_dir, conn) = fresh_db();
        // Enrolled 03:17: the first expected slot is 03:20.
        agent(&conn, "late", "2026-11-15T03:17:00Z", None);
        let first = ms(t("2026-11-15T03:00:00Z"));
        let end = ms(t("2026-11-30T16:00:00Z"));
        for hour in (first..end).step_by(HOUR_MS as usize) {
            // 9 in the first hour: the 03:15 slot holds the enrolling report.
            let seen = if hour == first { 9 } else { 12 };
            conn.execute(
                "INSERT INTO presence_hourly (agent_id, hour, slots_seen) VALUES ('late', ?1, ?2)",
                params![hour, seen],
            )
            .unwrap();
        }
        let report = compute(&conn, &november(t("2026-12-01T00:00:00Z"))).unwrap();
        let a = &report.availability;
        assert_eq!(a.hosts.len(), 1);
        let expected = (end - ms(t("2026-11-15T03:20:00Z"))) / SLOT_MS;
        assert_eq!(expected, 4472);
        assert_eq!(a.hosts[0].expected_slots, 4472);
        assert_eq!(a.hosts[0].seen_slots, 4472);
        assert_eq!(a.hosts[0].pct, Some(100.0));
        assert_eq!(a.fleet_pct, Some(100.0));
        // Before enrollment nothing was expected: unknown, not 0 % or 100 %.
        assert_eq!(a.daily[0].value, None);
        assert_eq!(a.daily[13].date, "2026-11-14");
        assert_eq!(a.daily[13].value, None);
        assert_eq!(a.daily[14].value, Some(100.0));
        assert_eq!(report.fleet.added.len(), 1);
        assert_eq!((report.fleet.size_start, report.fleet.size_end), (0, 1));
    }

    #[test]
    fn unknown_compliance_is_never_counted_compliant() {
        let (_dir, conn) = fresh_db();
        agent(&conn, "h", "2026-01-01T00:00:00Z", None);
        // Patch: the count said 0, but the latest check could not run.
        conn.execute(
            "INSERT INTO series (series_id, agent_id, name, labels) VALUES (1, 'h', ?1, '{}')",
            [METRIC_SECURITY_PENDING],
        )
        .unwrap();
        conn.execute(
            "INSERT INTO rollups_hourly VALUES (1, ?1, 0, 0, 0, 12)",
            [ms(t("2026-11-29T00:00:00Z"))],
        )
        .unwrap();
        check(
            &conn,
            "h",
            "2026-11-28T00:00:00Z",
            CHECK_SECURITY_PENDING,
            "ok",
            "",
        );
        check(
            &conn,
            "h",
            "2026-11-29T00:00:00Z",
            CHECK_SECURITY_PENDING,
            "unknown",
            "apt-get timed out",
        );
        check(
            &conn,
            "h",
            "2026-11-29T00:00:00Z",
            CHECK_ANTIVIRUS,
            "unknown",
            "no product found",
        );
        check(&conn, "h", "2026-11-29T00:00:00Z", "baseline.a", "ok", "");
        check(
            &conn,
            "h",
            "2026-11-29T00:00:00Z",
            "baseline.b",
            "unknown",
            "no privilege",
        );
        agent(&conn, "silent", "2026-01-01T00:00:00Z", None);

        let c = compute(&conn, &november(t("2026-12-01T00:00:00Z")))
            .unwrap()
            .compliance;
        for (name, stat) in [
            ("patch", &c.patch),
            ("antivirus", &c.antivirus),
            ("baseline", &c.baseline),
        ] {
            assert_eq!(stat.compliant, 0, "{name}");
            assert_eq!(stat.unknown, 2, "{name}");
            assert_eq!(stat.pct, Some(0.0), "{name}");
            assert!(
                stat.exceptions.iter().all(|e| e.status == "unknown"),
                "{name}"
            );
        }
        assert!(c.patch.exceptions[0].reason.contains("apt-get timed out"));
        assert_eq!(
            c.patch.exceptions[1].reason,
            "no patch.security_pending_count data"
        );
        assert_eq!(
            c.baseline.exceptions[0].reason,
            "not determined: baseline.b"
        );
        assert_eq!(c.baseline.exceptions[1].reason, "no baseline results");
        assert_eq!((c.baseline_items_passed, c.baseline_items_unknown), (1, 1));
        assert_eq!(
            c.baseline_item_pass_pct,
            Some(50.0),
            "unknown is not a pass"
        );
    }

    #[test]
    fn results_older_than_a_week_at_the_end_of_the_period_are_unknown() {
        let (_dir, conn) = fresh_db();
        agent(&conn, "quiet", "2026-10-01T00:00:00Z", None);
        // Protected and passing, but nothing since 10 days before the end.
        check(
            &conn,
            "quiet",
            "2026-11-20T00:00:00Z",
            "av.status",
            "ok",
            "",
        );
        check(
            &conn,
            "quiet",
            "2026-11-20T00:00:00Z",
            "baseline.a",
            "ok",
            "",
        );
        let report = compute(&conn, &november(t("2026-12-01T00:00:00Z"))).unwrap();
        let c = &report.compliance;
        assert_eq!((c.antivirus.compliant, c.antivirus.unknown), (0, 1));
        assert!(
            c.antivirus.exceptions[0].reason.contains("days old"),
            "{:?}",
            c.antivirus.exceptions
        );
        assert_eq!((c.baseline.compliant, c.baseline.unknown), (0, 1));
        assert_eq!(c.baseline_items_unknown, 1);
    }

    #[test]
    fn a_report_for_the_running_month_does_not_count_the_future() {
        let (_dir, mut conn) = fresh_db();
        seed_month(&mut conn).unwrap();
        let now = t("2026-11-10T12:00:00Z");
        let report = compute(&conn, &november(now)).unwrap();
        assert_eq!(report.generated_at, now);

        // app-03 enrols on the 15th; old-01 was revoked at 08:00.
        assert!(report.fleet.added.is_empty());
        assert_eq!(report.fleet.removed.len(), 1);
        assert_eq!(report.fleet.size_end, 4);
        // Only slots up to now: web-01 was seen in all of them.
        let from_ms = ms(t("2026-10-31T16:00:00Z"));
        let web01 = report
            .availability
            .hosts
            .iter()
            .find(|h| h.host.hostname == "web-01")
            .unwrap();
        assert_eq!(web01.expected_slots as i64, (ms(now) - from_ms) / SLOT_MS);
        assert_eq!(web01.pct, Some(100.0));
        // 2026-11-10 local starts at 11-09T16:00Z: partly past; the 11th
        // is the future.
        let daily = &report.availability.daily;
        assert_eq!(daily[9].date, "2026-11-10");
        assert_eq!(daily[9].value, Some(100.0));
        assert!(daily[10..].iter().all(|d| d.value.is_none()));
        assert!(
            report.incidents.daily_opened[10..]
                .iter()
                .all(|d| d.value.is_none())
        );
        assert_eq!(report.incidents.daily_opened[0].value, Some(0.0));

        // Incidents opened by now: 3, 4, 5, 7; #4 is resolved later.
        assert_eq!(report.incidents.opened, 4);
        assert_eq!(report.incidents.resolved, 3);
        let iii = &report.incidents.by_severity[2];
        assert_eq!((iii.opened, iii.resolved, iii.open_at_end), (2, 1, 1));
        // #4's resolution was due 11-10T06:00 and is still unmet now.
        let breach = &report.incidents.breaches[0];
        assert_eq!(
            (breach.incident_id, breach.target.as_str()),
            (4, "resolution")
        );
        assert_eq!(breach.met_at, None);

        // web-02's updates have been pending 5 days; web-01's
        // antivirus was last seen disabled (the later "ok" is the future).
        let c = &report.compliance;
        assert!(
            !c.patch
                .exceptions
                .iter()
                .any(|e| e.host.hostname == "web-02")
        );
        assert!(
            c.antivirus
                .exceptions
                .iter()
                .any(|e| e.host.hostname == "web-01" && e.status == "non_compliant")
        );
        assert!(report.inspections.runs.is_empty());
        let fs = &report.capacity.filesystems;
        assert!(
            fs.iter()
                .all(|f| f.daily[10..].iter().all(|d| d.value.is_none()))
        );
        let data = fs.iter().find(|f| f.mount == "/data").unwrap();
        // The last hour before now: 11-10T11:00Z, 403 hours after the data starts.
        assert!((data.used_pct_end.unwrap() - (50.0 + 0.05 * 403.0)).abs() < 1e-9);
    }

    #[test]
    fn capacity_slope_of_a_linear_series() {
        let (_dir, conn) = fresh_db();
        agent(&conn, "h", "2026-01-01T00:00:00Z", None);
        conn.execute(
            "INSERT INTO series (series_id, agent_id, name, labels) VALUES (1, 'h', ?1, ?2)",
            [
                METRIC_FS_USED,
                r#"{"device":"/dev/vda","fstype":"ext4","mount":"/"}"#,
            ],
        )
        .unwrap();
        let from = ms(t("2026-10-31T16:00:00Z"));
        // 10 % at the start, 2 points a day.
        for k in 0..30 * 24 {
            let y = 10.0 + 2.0 * k as f64 / 24.0;
            conn.execute(
                "INSERT INTO rollups_hourly VALUES (1, ?1, ?2, ?2, ?2, 12)",
                params![from + k * HOUR_MS, y],
            )
            .unwrap();
        }
        let report = compute(&conn, &november(t("2026-12-01T00:00:00Z"))).unwrap();
        let fs = &report.capacity.filesystems[0];
        assert_eq!(fs.mount, "/");
        let slope = fs.growth_pct_per_day.unwrap();
        assert!((slope - 2.0).abs() < 1e-9, "{slope}");
        let end = 10.0 + 2.0 * 719.0 / 24.0;
        assert_eq!(fs.used_pct_start, Some(10.0));
        assert!((fs.used_pct_end.unwrap() - end).abs() < 1e-9);
        let days = fs.days_until_full.unwrap();
        assert!((days - (100.0 - end) / 2.0).abs() < 1e-6, "{days}");
        assert!(fs.fills_within_next_period);
        // Day 1 is the mean of its 24 hours: 10 + 2 * 11.5 / 24.
        let first = fs.daily[0].value.unwrap();
        assert!((first - (10.0 + 2.0 * 11.5 / 24.0)).abs() < 1e-9, "{first}");
    }

    #[test]
    fn an_empty_database_gives_unknown_percentages() {
        let (_dir, conn) = fresh_db();
        let report = compute(&conn, &november(t("2026-12-01T00:00:00Z"))).unwrap();
        assert_eq!(report.availability.fleet_pct, None);
        assert!(report.availability.daily.iter().all(|d| d.value.is_none()));
        assert_eq!(report.compliance.patch.pct, None);
        assert_eq!(report.compliance.antivirus.pct, None);
        assert_eq!(report.compliance.baseline.pct, None);
        assert_eq!(report.compliance.baseline_item_pass_pct, None);
        let severities: Vec<&str> = report
            .incidents
            .by_severity
            .iter()
            .map(|s| s.severity.as_str())
            .collect();
        assert_eq!(severities, ["I", "II", "III", "IV"]);
        assert_eq!(report.incidents.sla.len(), 5);
        assert!(report.incidents.sla.iter().all(|r| r.response_pct.is_none()
            && r.resolution_pct.is_none()
            && r.mtta_minutes.is_none()));
        assert!(report.capacity.filesystems.is_empty());
        assert_eq!(report.incidents.daily_opened[0].value, Some(0.0));
    }

    #[test]
    fn hours_fall_on_the_local_day_they_start_in_across_dst() {
        let tz = chrono_tz::America::New_York;
        let date = |d| chrono::NaiveDate::from_ymd_opt(2026, 3, d).unwrap();
        let (from, to) = (start_of_day(tz, date(1)), start_of_day(tz, date(31)));
        let mut params = november(to);
        params.from = from;
        params.to = to;
        params.days = local_days(tz, date(1), date(31));
        // 2026-03-08 has 23 hours.
        assert_eq!(
            params.days[7].2 - params.days[7].1,
            chrono::Duration::hours(23)
        );
        let days = Days::new(&params, ms(to));
        let mut cursor = days.cursor();
        for hour in (ms(from)..ms(to)).step_by(HOUR_MS as usize) {
            let index = cursor.day_of(hour).unwrap();
            let local = time(hour).with_timezone(&tz).date_naive();
            assert_eq!(params.days[index].0, local.to_string(), "{}", time(hour));
        }
    }

    #[test]
    fn days_round_midnight_off_the_hour_down_to_the_earlier_day() {
        let tz = chrono_tz::Asia::Kolkata;
        let date = |d| chrono::NaiveDate::from_ymd_opt(2026, 11, d).unwrap();
        let (from, to) = (start_of_day(tz, date(1)), start_of_day(tz, date(4)));
        let mut params = november(to);
        params.from = from;
        params.to = to;
        params.days = local_days(tz, date(1), date(4));
        let days = Days::new(&params, ms(to));
        let mut cursor = days.cursor();
        // The hour before `from` (18:00Z on Oct 31, 23:30 local) counts on
        // the first day.
        assert_eq!(cursor.day_of(ms(t("2026-10-31T18:00:00Z"))), Some(0));
        // 18:00Z is 23:30 local on the 1st: the hour starts on the 1st.
        assert_eq!(cursor.day_of(ms(t("2026-11-01T18:00:00Z"))), Some(0));
        assert_eq!(cursor.day_of(ms(t("2026-11-01T19:00:00Z"))), Some(1));
        assert_eq!(cursor.day_of(ms(t("2026-11-03T19:00:00Z"))), Some(2));
    }
}
