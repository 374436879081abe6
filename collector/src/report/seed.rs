//! Synthetic datasets for the report: [`seed_month`], the small hand-made
//! November 2026 that the golden report (`testdata/golden/report-seeded-*.json`)
//! is computed from, and [`seed_fleet`], the bulk fleet the annual-report
//! benchmark (`benches/report.rs`) runs on.
//!
//! Rows are written straight into a freshly migrated database (from
//! `crate::store::open`), bypassing ingest, the way the running collector
//! would have left them. Both are deterministic: `seed_month` uses no
//! randomness, `seed_fleet` a seeded `StdRng`.

use chrono::{DateTime, NaiveDate, Utc};
use chrono_tz::Tz;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rusqlite::{Connection, Transaction, params};

use crate::report::compute::{
    CHECK_ANTIVIRUS, CHECK_SECURITY_PENDING, METRIC_FS_USED, METRIC_SECURITY_PENDING, ReportParams,
};
use crate::report::model::PeriodKind;
use crate::schedule::local_days;
use crate::sla::{Severity, SlaClock, SlaConfig, SlaPolicy};
use crate::store::{StoreError, checks};

const HOUR_MS: i64 = 3_600_000;
const MINUTE_MS: i64 = 60_000;
const DAY_MS: i64 = 86_400_000;

/// The period a seeded dataset is meant to be reported on.
#[derive(Debug, Clone)]
pub struct SeedInfo {
    pub kind: PeriodKind,
    pub period_label: String,
    pub timezone: Tz,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub now: DateTime<Utc>,
    pub next_period_days: f64,
    pub patch_max_age_days: u32,
}

impl SeedInfo {
    /// Report parameters for the seeded period with the default SLA policy.
    pub fn params(&self) -> ReportParams {
        ReportParams {
            kind: self.kind,
            period_label: self.period_label.clone(),
            from: self.from,
            to: self.to,
            next_period_days: self.next_period_days,
            timezone: self.timezone,
            days: local_days(
                self.timezone,
                self.from.with_timezone(&self.timezone).date_naive(),
                self.to.with_timezone(&self.timezone).date_naive(),
            ),
            patch_max_age_days: self.patch_max_age_days,
            sla: default_policy(),
            now: self.now,
        }
    }
}

/// The policy of an empty `[sla]` section.
pub fn default_policy() -> SlaPolicy {
    // The empty section is valid by construction; the plain default is the
    // same policy, so nothing is lost if validation ever changes.
    SlaConfig::default().policy().unwrap_or_default()
}

fn err(what: &'static str) -> impl FnOnce(rusqlite::Error) -> StoreError {
    move |error| StoreError::Sqlite { what, error }
}

/// UTC milliseconds of a constant date. Only called with literal, valid
/// dates, so the fallback is never taken.
fn at(y: i32, m: u32, d: u32, h: u32, mi: u32) -> i64 {
    NaiveDate::from_ymd_opt(y, m, d)
        .and_then(|date| date.and_hms_opt(h, mi, 0))
        .map_or(0, |t| t.and_utc().timestamp_millis())
}

fn utc(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

/// The clock as the collector stores it when the incident opens (the
/// report reads only its due times, not the fired-event flags).
fn sla_clock(severity: Severity, opened_at: i64, policy: &SlaPolicy) -> String {
    // A clock of plain times and flags always serialises.
    serde_json::to_string(&SlaClock::new(severity, utc(opened_at), policy)).unwrap_or_default()
}

struct Seeder<'t> {
    tx: &'t Transaction<'t>,
}

impl Seeder<'_> {
    fn exec(&self, sql: &str, values: impl rusqlite::Params) -> Result<(), StoreError> {
        self.tx
            .prepare_cached(sql)
            .and_then(|mut s| s.execute(values))
            .map(drop)
            .map_err(err("seeding the report dataset"))
    }

    fn agent(
        &self,
        agent_id: &str,
        hostname: &str,
        enrolled_at: i64,
        revoked_at: Option<i64>,
    ) -> Result<(), StoreError> {
        self.exec(
            "INSERT INTO agents (agent_id, hostname, enrolled_at, enrolled_with_token, cert_serial,
                 cert_sha256, agent_version, os_name, os_version, arch, revoked_at)
             VALUES (?1, ?2, ?3, 'seed-token', ?4, ?5, '0.1.0', 'Ubuntu', '24.04', 'x86_64', ?6)",
            params![
                agent_id,
                hostname,
                enrolled_at,
                format!("serial-{hostname}"),
                format!("{:0>64}", hostname.len()),
                revoked_at
            ],
        )
    }

    fn series(&self, agent_id: &str, name: &str, labels: &str) -> Result<i64, StoreError> {
        self.exec(
            "INSERT INTO series (agent_id, name, labels) VALUES (?1, ?2, ?3)",
            params![agent_id, name, labels],
        )?;
        Ok(self.tx.last_insert_rowid())
    }

    fn rollup(
        &self,
        series_id: i64,
        hour: i64,
        min: f64,
        avg: f64,
        max: f64,
    ) -> Result<(), StoreError> {
        self.exec(
            "INSERT INTO rollups_hourly (series_id, hour, min, avg, max, count) VALUES (?1, ?2, ?3, ?4, ?5, 12)",
            params![series_id, hour, min, avg, max],
        )
    }

    /// A check result; `reason` is only for `unknown`.
    fn check(
        &self,
        agent_id: &str,
        at: i64,
        check_id: &str,
        status: &str,
        value: &str,
        reason: &str,
    ) -> Result<(), StoreError> {
        let result = checks::CheckResult {
            evidence: "seeded".into(),
            ..seeded_check(check_id, status, value, reason)
        };
        checks::insert_block(self.tx, agent_id, at / 300_000, at, &[result])
            .map(drop)
            .map_err(err("seeding the report dataset"))
    }
}

/// A seeded check result, titled by its id; `reason` only for `unknown`.
fn seeded_check(check_id: &str, status: &str, value: &str, reason: &str) -> checks::CheckResult {
    checks::CheckResult {
        check_id: check_id.into(),
        title: check_id.into(),
        status: status.into(),
        value: value.into(),
        reason: reason.into(),
        ..Default::default()
    }
}

const WEB_01: &str = "00000000-0000-4000-8000-000000000001";
const WEB_02: &str = "00000000-0000-4000-8000-000000000002";
const DB_01: &str = "00000000-0000-4000-8000-000000000003";
const APP_03: &str = "00000000-0000-4000-8000-000000000004";
const OLD_01: &str = "00000000-0000-4000-8000-000000000005";
const BATCH_01: &str = "00000000-0000-4000-8000-000000000006";

/// One incident of the month.
#[derive(Clone, Copy)]
struct SeedIncident {
    id: i64,
    rule: &'static str,
    agent: &'static str,
    severity: Severity,
    title: &'static str,
    opened: i64,
    acknowledged: Option<i64>,
    resolved: Option<i64>,
    reopens: i64,
    occurrences: i64,
    suppressed: bool,
    /// Written before SLA clocks existed: `sla_clock` is ''.
    pre_sla: bool,
}

impl SeedIncident {
    fn new(
        id: i64,
        rule: &'static str,
        agent: &'static str,
        severity: Severity,
        title: &'static str,
        opened: i64,
    ) -> Self {
        Self {
            id,
            rule,
            agent,
            severity,
            title,
            opened,
            acknowledged: None,
            resolved: None,
            reopens: 0,
            occurrences: 1,
            suppressed: false,
            pre_sla: false,
        }
    }

    fn acknowledged(self, at: i64) -> Self {
        Self {
            acknowledged: Some(at),
            ..self
        }
    }

    fn resolved(self, at: i64) -> Self {
        Self {
            resolved: Some(at),
            ..self
        }
    }

    fn reopened(self, reopens: i64, occurrences: i64) -> Self {
        Self {
            reopens,
            occurrences,
            ..self
        }
    }

    fn suppressed(self) -> Self {
        Self {
            suppressed: true,
            ..self
        }
    }

    fn pre_sla(self) -> Self {
        Self {
            pre_sla: true,
            ..self
        }
    }
}

/// November 2026 in Asia/Shanghai (2026-10-31T16:00Z to 2026-11-30T16:00Z),
/// reported at 2026-12-01T01:00Z. Six hosts:
///
/// - web-01: fully present; patched (a pending count after the period's end
///   must not count); antivirus protected (a later `critical` result after
///   the end must not count); baseline passes.
/// - web-02: a six-hour outage plus half an hour; `/data` grows 1.2 points a
///   day and fills within the next month; 3 security updates pending since
///   2026-11-05T07:00Z (non-compliant); antivirus disabled; two baseline
///   items fail; an abnormal inspection item linked to incident 2.
/// - db-01: one missed slot; patch, antivirus and one baseline item
///   unknown; the recurring CPU problem (two incidents, two reopens).
/// - app-03: enrolled mid-month (2026-11-15T03:17Z); 2 security updates
///   pending for under six days (compliant).
/// - old-01: revoked 2026-11-10T08:00Z; only its pre-SLA incident and its
///   availability until revocation count.
/// - batch-01: stops reporting 2026-11-27T00:00Z; no patch, antivirus or
///   baseline data (unknown); not inspected in the run of 2026-11-28.
///
/// Incidents cover severities I..IV with response and resolution met and
/// missed, one still running at the end, a suppressed one, one before and
/// one after the period.
pub fn seed_month(conn: &mut Connection) -> Result<SeedInfo, StoreError> {
    let tz = chrono_tz::Asia::Shanghai;
    let from = at(2026, 10, 31, 16, 0);
    let to = at(2026, 11, 30, 16, 0);
    let now = at(2026, 12, 1, 1, 0);
    // History starts a week before the period so its edges are exercised.
    let data_from = at(2026, 10, 24, 16, 0);
    let policy = default_policy();

    let tx = conn
        .transaction()
        .map_err(err("starting the seed transaction"))?;
    let s = Seeder { tx: &tx };

    let enrolled = at(2026, 9, 1, 0, 0);
    let app_enrolled = at(2026, 11, 15, 3, 17);
    let old_revoked = at(2026, 11, 10, 8, 0);
    let batch_down = at(2026, 11, 27, 0, 0);
    s.agent(WEB_01, "web-01", enrolled, None)?;
    s.agent(WEB_02, "web-02", enrolled, None)?;
    s.agent(DB_01, "db-01", enrolled, None)?;
    s.agent(APP_03, "app-03", app_enrolled, None)?;
    s.agent(OLD_01, "old-01", at(2026, 8, 1, 0, 0), Some(old_revoked))?;
    s.agent(BATCH_01, "batch-01", enrolled, None)?;

    // Presence: every slot, except the outages.
    let outage = at(2026, 11, 12, 2, 0)..at(2026, 11, 12, 8, 0);
    let half_hour = at(2026, 11, 12, 8, 0);
    let db_missed = at(2026, 11, 20, 10, 0);
    let app_first_hour = at(2026, 11, 15, 3, 0);
    for (agent, start, end) in [
        (WEB_01, data_from, now),
        (WEB_02, data_from, now),
        (DB_01, data_from, now),
        (APP_03, app_first_hour, now),
        (OLD_01, data_from, old_revoked),
        (BATCH_01, data_from, batch_down),
    ] {
        for hour in (start..end).step_by(HOUR_MS as usize) {
            let seen = match (agent, hour) {
                (WEB_02, h) if outage.contains(&h) => continue,
                (WEB_02, h) if h == half_hour => 6,
                (DB_01, h) if h == db_missed => 11,
                // The report at 03:17 falls in the 03:15 slot, before the
                // first slot the host is expected in: clamped away.
                (APP_03, h) if h == app_first_hour => 9,
                _ => 12,
            };
            s.exec(
                "INSERT INTO presence_hourly (agent_id, hour, slots_seen) VALUES (?1, ?2, ?3)",
                params![agent, hour, seen],
            )?;
        }
    }

    // Filesystem usage: (host, labels, first hour, end, value at hour k).
    type Usage = fn(i64) -> f64;
    let root = r#"{"device":"/dev/vda1","fstype":"ext4","mount":"/"}"#;
    let data = r#"{"device":"/dev/vdb1","fstype":"xfs","mount":"/data"}"#;
    let filesystems: [(&str, &str, i64, i64, Usage); 7] = [
        (WEB_01, root, data_from, now, |k| 40.0 + 0.01 * k as f64),
        (
            WEB_01,
            r#"{"device":"tmpfs","fstype":"tmpfs"}"#,
            data_from,
            now,
            |_| 1.0,
        ),
        (WEB_02, root, data_from, now, |k| 35.0 - 0.001 * k as f64),
        (WEB_02, data, data_from, now, |k| 50.0 + 0.05 * k as f64),
        (DB_01, root, data_from, now, |k| 70.0 - 0.002 * k as f64),
        (APP_03, root, app_first_hour, now, |k| {
            20.0 + 0.02 * k as f64
        }),
        (BATCH_01, root, data_from, batch_down, |k| {
            65.0 + 0.01 * k as f64
        }),
    ];
    for (agent, labels, start, end, usage) in filesystems {
        let id = s.series(agent, METRIC_FS_USED, labels)?;
        for (k, hour) in (start..end).step_by(HOUR_MS as usize).enumerate() {
            let v = usage(k as i64);
            s.rollup(id, hour, v - 0.2, v, v + 0.2)?;
        }
    }
    let old_fs = s.series(OLD_01, METRIC_FS_USED, root)?;
    for hour in (data_from..old_revoked).step_by(HOUR_MS as usize) {
        s.rollup(old_fs, hour, 97.0, 97.5, 98.0)?;
    }
    let cpu = s.series(WEB_01, "cpu.used_pct", "{}")?;
    for hour in (data_from..now).step_by(HOUR_MS as usize) {
        s.rollup(cpu, hour, 5.0, 20.0, 90.0)?;
    }

    // Security updates pending: rolled up to 2026-11-30T12:00Z, raw samples
    // after that (as the collector leaves them).
    let last_rolled = at(2026, 11, 30, 12, 0);
    // (host, first hour, pending from, how many): 0 before, then the count.
    let pending = [
        // web-01: patched; something becomes pending after the period.
        (WEB_01, data_from, at(2026, 11, 30, 17, 0), 4.0),
        (WEB_02, data_from, at(2026, 11, 5, 7, 0), 3.0),
        (DB_01, data_from, i64::MAX, 0.0),
        (APP_03, app_first_hour, at(2026, 11, 25, 0, 0), 2.0),
    ];
    for (agent, start, since, count) in pending {
        let value = |t: i64| if t >= since { count } else { 0.0 };
        let id = s.series(agent, METRIC_SECURITY_PENDING, "{}")?;
        for hour in (start..=last_rolled).step_by(HOUR_MS as usize) {
            let v = value(hour);
            s.rollup(id, hour, v, v, v)?;
        }
        if agent == APP_03 {
            continue;
        }
        for t in (last_rolled + HOUR_MS..now).step_by(5 * MINUTE_MS as usize) {
            crate::store::samples::insert_block(
                s.tx,
                agent,
                t / (5 * MINUTE_MS),
                t,
                &[(id, value(t))],
            )
            .map_err(err("seeding the report dataset"))?;
        }
    }

    // Check results. Later results win; some fall after the period.
    let nov3 = at(2026, 11, 3, 12, 0);
    let nov30 = at(2026, 11, 30, 12, 0);
    let dec1 = at(2026, 12, 1, 0, 30);
    let (av, patch) = (CHECK_ANTIVIRUS, CHECK_SECURITY_PENDING);
    let (root_login, firewall) = ("baseline.ssh.permit_root_login", "baseline.firewall.active");
    let empty_password = "baseline.accounts.empty_password";
    s.check(
        WEB_01,
        nov3,
        av,
        "critical",
        "disabled: clamd not running",
        "",
    )?;
    s.check(
        WEB_01,
        nov30,
        av,
        "ok",
        "protected: ClamAV definitions 0 days old",
        "",
    )?;
    s.check(
        WEB_01,
        dec1,
        av,
        "critical",
        "disabled: after the period",
        "",
    )?;
    s.check(WEB_01, nov30, patch, "ok", "0 security", "")?;
    s.check(WEB_01, nov30, root_login, "ok", "no", "")?;
    s.check(WEB_01, nov30, firewall, "ok", "nftables active", "")?;
    s.check(WEB_01, nov30, empty_password, "ok", "none", "")?;
    let defender_off = "disabled: Microsoft Defender real-time protection is off";
    s.check(WEB_02, nov30, av, "critical", defender_off, "")?;
    s.check(WEB_02, nov30, patch, "critical", "3 security", "")?;
    s.check(WEB_02, nov3, firewall, "critical", "inactive", "")?;
    s.check(WEB_02, nov30, firewall, "ok", "nftables active", "")?;
    s.check(WEB_02, nov30, root_login, "critical", "yes", "")?;
    s.check(
        WEB_02,
        nov30,
        "baseline.password.max_days",
        "warning",
        "99999",
        "",
    )?;
    let no_av_state = "no antivirus state could be determined: mdatp health timed out";
    s.check(DB_01, nov30, av, "unknown", "", no_av_state)?;
    s.check(DB_01, nov3, patch, "ok", "0 security", "")?;
    s.check(
        DB_01,
        nov30,
        patch,
        "unknown",
        "",
        "apt-get timed out after 60s",
    )?;
    s.check(DB_01, nov30, root_login, "ok", "no", "")?;
    s.check(
        DB_01,
        nov30,
        firewall,
        "unknown",
        "",
        "nft: permission denied",
    )?;
    s.check(
        APP_03,
        nov30,
        av,
        "ok",
        "protected: ClamAV definitions 1 days old",
        "",
    )?;
    s.check(APP_03, nov30, patch, "warning", "2 security", "")?;
    s.check(APP_03, nov30, root_login, "ok", "no", "")?;
    s.check(APP_03, nov30, firewall, "ok", "nftables active", "")?;
    s.check(APP_03, nov30, empty_password, "ok", "none", "")?;
    s.check(
        OLD_01,
        nov3,
        av,
        "critical",
        "missing: no antivirus product found",
        "",
    )?;

    // Configuration changes need the snapshots they came from.
    let changes: &[(&str, i64, &str, &str, &str)] = &[
        (
            WEB_01,
            at(2026, 10, 20, 3, 0),
            "packages.openssl",
            "3.0.13",
            "3.0.14",
        ),
        (
            WEB_01,
            at(2026, 11, 5, 3, 0),
            "packages.nginx",
            "1.24.0",
            "1.26.1",
        ),
        (
            WEB_01,
            at(2026, 11, 5, 3, 0),
            "services.nginx.enabled",
            "false",
            "true",
        ),
        (
            WEB_01,
            at(2026, 11, 20, 3, 0),
            "users.deploy",
            "",
            "uid=1001",
        ),
        (
            DB_01,
            at(2026, 11, 12, 9, 0),
            "kernel",
            "6.8.0-45",
            "6.8.0-48",
        ),
        (
            APP_03,
            at(2026, 12, 1, 0, 10),
            "packages.curl",
            "8.5.0",
            "8.5.1",
        ),
    ];
    for (agent, t, path, before, after) in changes {
        s.exec(
            "INSERT INTO inventory_snapshots (agent_id, sha256, collected_at, stored_at, body)
             VALUES (?1, ?2, ?3, ?3, '{}')",
            params![agent, format!("{t:0>64}"), t],
        )?;
        let snapshot = tx.last_insert_rowid();
        s.exec(
            "INSERT INTO config_changes (agent_id, snapshot_id, collected_at, path, before, after)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![agent, snapshot, t, path, before, after],
        )?;
    }

    use Severity::{I, II, III, IV};
    let incident = SeedIncident::new;
    let incidents = [
        // I: responded on time, resolution missed and still unmet.
        incident(
            1,
            "host.down",
            BATCH_01,
            I,
            "batch-01 is not reporting",
            at(2026, 11, 27, 0, 10),
        )
        .acknowledged(at(2026, 11, 27, 0, 22)),
        // II: response late, resolved on time; the abnormal inspection item.
        incident(
            2,
            "fs.used_pct.high",
            WEB_02,
            II,
            "/data on web-02 is 90% full",
            at(2026, 11, 27, 22, 0),
        )
        .acknowledged(at(2026, 11, 27, 22, 45))
        .resolved(at(2026, 11, 28, 8, 0)),
        // III: all on time.
        incident(
            3,
            "cpu.used_pct.high",
            DB_01,
            III,
            "CPU above 90% on db-01",
            at(2026, 11, 3, 6, 0),
        )
        .acknowledged(at(2026, 11, 3, 6, 5))
        .resolved(at(2026, 11, 3, 9, 0)),
        // III: the same problem again, reopened twice, resolved late.
        incident(
            4,
            "cpu.used_pct.high",
            DB_01,
            III,
            "CPU above 95% on db-01",
            at(2026, 11, 8, 6, 0),
        )
        .acknowledged(at(2026, 11, 8, 6, 10))
        .resolved(at(2026, 11, 10, 18, 0))
        .reopened(2, 3),
        // IV: recovered before anyone acknowledged: both targets met.
        incident(
            5,
            "av.status",
            WEB_02,
            IV,
            "Antivirus disabled on web-02",
            at(2026, 11, 6, 3, 0),
        )
        .resolved(at(2026, 11, 6, 3, 20))
        .reopened(1, 2),
        // IV: response late, resolution missed and still unmet.
        incident(
            6,
            "patch.security_pending",
            WEB_02,
            IV,
            "3 security updates pending on web-02",
            at(2026, 11, 21, 1, 0),
        )
        .acknowledged(at(2026, 11, 21, 3, 0)),
        // II: a row from before SLA clocks.
        incident(
            7,
            "mem.used_pct.high",
            OLD_01,
            II,
            "Memory above 90% on old-01",
            at(2026, 11, 2, 4, 0),
        )
        .acknowledged(at(2026, 11, 2, 4, 20))
        .resolved(at(2026, 11, 2, 9, 0))
        .pre_sla(),
        // I: opened ten minutes before the end, acknowledged after it:
        // still running at the end.
        incident(
            8,
            "host.down",
            APP_03,
            I,
            "app-03 is not reporting",
            at(2026, 11, 30, 15, 50),
        )
        .acknowledged(at(2026, 11, 30, 16, 30)),
        // III: suppressed by a maintenance window: no SLA.
        incident(
            9,
            "disk.smart",
            APP_03,
            III,
            "SMART pre-failure on app-03 /dev/sda",
            at(2026, 11, 18, 1, 0),
        )
        .resolved(at(2026, 11, 18, 5, 0))
        .suppressed(),
        // Before the period.
        incident(
            10,
            "cpu.used_pct.high",
            WEB_01,
            III,
            "CPU above 90% on web-01",
            at(2026, 10, 28, 10, 0),
        )
        .acknowledged(at(2026, 10, 28, 10, 5))
        .resolved(at(2026, 10, 28, 11, 0)),
        incident(
            11,
            "cpu.used_pct.high",
            WEB_01,
            III,
            "CPU above 90% on web-01",
            at(2026, 11, 25, 10, 0),
        )
        .acknowledged(at(2026, 11, 25, 10, 10))
        .resolved(at(2026, 11, 25, 11, 0)),
        // After the period.
        incident(
            12,
            "host.down",
            DB_01,
            I,
            "db-01 is not reporting",
            at(2026, 12, 1, 0, 30),
        ),
    ];
    for i in incidents {
        let state = match (i.acknowledged, i.resolved) {
            (_, Some(_)) => "resolved",
            (Some(_), None) => "acknowledged",
            (None, None) => "open",
        };
        let clock = if i.pre_sla {
            String::new()
        } else {
            sla_clock(i.severity, i.opened, &policy)
        };
        s.exec(
            "INSERT INTO incidents (incident_id, rule_id, agent_id, incident_key, severity, title, description,
                 state, opened_at, acknowledged_at, resolved_at, last_seen_at, first_value, last_value,
                 threshold, occurrences, reopen_count, suppressed, acknowledged_by, sla_clock)
             VALUES (?1, ?2, ?3, ?2 || '/' || ?3, ?4, ?5, ?5, ?6, ?7, ?8, ?9, coalesce(?9, ?7), '', '', '',
                 ?10, ?11, ?12, CASE WHEN ?8 IS NULL THEN '' ELSE 'ops' END, ?13)",
            params![
                i.id,
                i.rule,
                i.agent,
                i.severity.as_str(),
                i.title,
                state,
                i.opened,
                i.acknowledged,
                i.resolved,
                i.occurrences,
                i.reopens,
                i.suppressed,
                clock
            ],
        )?;
    }

    // Inspection runs: a self-check before the period, one in it, the
    // inspection with findings, and one still requested.
    // (id, kind, plan, full fleet, requested, filed, state,
    //  [in scope, inspected, abnormal, not reached])
    type Run = (
        i64,
        &'static str,
        &'static str,
        bool,
        i64,
        Option<i64>,
        &'static str,
        [i64; 4],
    );
    let runs: &[Run] = &[
        (
            1,
            "selfcheck",
            "selfcheck-full",
            true,
            at(2026, 10, 20, 8, 0),
            Some(at(2026, 10, 20, 8, 5)),
            "filed",
            [6, 6, 0, 0],
        ),
        (
            2,
            "selfcheck",
            "selfcheck-full",
            true,
            at(2026, 11, 15, 8, 0),
            Some(at(2026, 11, 15, 8, 5)),
            "filed",
            [5, 5, 0, 0],
        ),
        (
            3,
            "inspection",
            "daily",
            false,
            at(2026, 11, 28, 2, 0),
            Some(at(2026, 11, 28, 2, 5)),
            "filed",
            [5, 4, 1, 1],
        ),
        (
            4,
            "inspection",
            "daily",
            false,
            at(2026, 11, 30, 2, 0),
            None,
            "requested",
            [0, 0, 0, 0],
        ),
    ];
    for (
        id,
        kind,
        plan,
        full,
        requested,
        filed,
        state,
        [scope, inspected, abnormal, not_reached],
    ) in runs
    {
        s.exec(
            "INSERT INTO inspection_runs (run_id, kind, plan, full_fleet, scope, request_id, requested_by,
                 requested_at, started_at, filed_at, state, hosts_in_scope, hosts_inspected,
                 hosts_abnormal, hosts_not_reached)
             VALUES (?1, ?2, ?3, ?4, 'all hosts', 'seed-run-' || ?1, 'scheduler', ?5, ?6, ?6, ?7, ?8, ?9, ?10, ?11)",
            params![id, kind, plan, full, requested, filed, state, scope, inspected, abnormal, not_reached],
        )?;
    }
    let measured = at(2026, 11, 28, 2, 1);
    let records: &[(i64, &str, &str, &str, Option<i64>)] = &[
        (1, WEB_01, "web-01", "normal", Some(measured)),
        (2, WEB_02, "web-02", "abnormal", Some(measured)),
        (3, DB_01, "db-01", "unknown", Some(measured)),
        (4, APP_03, "app-03", "normal", Some(measured)),
        (5, BATCH_01, "batch-01", "not_inspected", None),
    ];
    for (record, agent, hostname, verdict, measured_at) in records {
        s.exec(
            "INSERT INTO inspection_records (record_id, run_id, agent_id, hostname, verdict, measured_at, last_seen_at)
             VALUES (?1, 3, ?2, ?3, ?4, ?5, ?6)",
            params![record, agent, hostname, verdict, measured_at, measured_at.unwrap_or(batch_down - 5 * MINUTE_MS)],
        )?;
    }
    // (record, item, verdict, value, threshold, incident)
    type Item = (
        i64,
        &'static str,
        &'static str,
        &'static str,
        &'static str,
        Option<i64>,
    );
    let items: &[Item] = &[
        (1, "fs.used_pct{mount=/}", "normal", "48.7", "< 85", None),
        (
            2,
            "fs.used_pct{mount=/data}",
            "abnormal",
            "88.4",
            "< 85",
            Some(2),
        ),
        (
            2,
            "baseline.ssh.permit_root_login",
            "abnormal",
            "yes",
            "no",
            None,
        ),
        (2, "fs.used_pct{mount=/}", "normal", "34.2", "< 85", None),
        (3, "av.status", "unknown", "", "protected", None),
        (4, "fs.used_pct{mount=/}", "normal", "26.3", "< 85", None),
    ];
    for (record, item, verdict, value, threshold, incident) in items {
        s.exec(
            "INSERT INTO inspection_items (record_id, item_id, title, value, threshold, verdict, measured_at, detail, incident_id)
             VALUES (?1, ?2, ?2, ?3, ?4, ?5, ?6, '', ?7)",
            params![record, item, value, threshold, verdict, measured, incident],
        )?;
    }

    tx.commit().map_err(err("committing the seed"))?;
    Ok(SeedInfo {
        kind: PeriodKind::Monthly,
        period_label: "2026-11".into(),
        timezone: tz,
        from: utc(from),
        to: utc(to),
        now: utc(now),
        next_period_days: 31.0,
        patch_max_age_days: 14,
    })
}

/// Rule ids and severities the bulk fleet's incidents are drawn from.
const FLEET_RULES: [(&str, Severity); 6] = [
    ("host.down", Severity::I),
    ("fs.used_pct.high", Severity::II),
    ("mem.used_pct.high", Severity::II),
    ("cpu.used_pct.high", Severity::III),
    ("patch.security_pending", Severity::IV),
    ("av.status", Severity::IV),
];
const FLEET_BASELINE: [&str; 5] = [
    "baseline.ssh.permit_root_login",
    "baseline.ssh.password_authentication",
    "baseline.firewall.active",
    "baseline.accounts.empty_password",
    "baseline.password.max_days",
];

/// A bulk synthetic fleet for the benchmark: `hosts` hosts with `hours`
/// hours of history ending at `end` (exclusive, rounded down to the hour).
///
/// Per host: hourly rollups of five series (`fs.used_pct` for `/` and
/// `/data`, `patch.security_pending_count`, `cpu.used_pct`,
/// `mem.used_pct`), `presence_hourly` for every hour (a few gaps), about two
/// incidents a month, and the latest antivirus, patch and baseline results
/// at the end. About 2 % of hosts enrol during the span and 1 % are revoked.
/// One monthly inspection run with a record per host.
///
/// Speed over safety: it turns journaling and syncing off while it writes
/// (the file is a throwaway; write it under a temporary name), builds the
/// by-hour indexes after the rows instead of row by row, and then restores
/// WAL and `synchronous = FULL`.
pub fn seed_fleet(
    conn: &mut Connection,
    hosts: usize,
    hours: usize,
    end: DateTime<Utc>,
    seed: u64,
) -> Result<(), StoreError> {
    let what = "seeding the bulk fleet";
    for (pragma, value) in [
        ("journal_mode", "OFF"),
        ("synchronous", "OFF"),
        ("cache_size", "-1000000"),
    ] {
        conn.pragma_update(None, pragma, value).map_err(err(what))?;
    }
    conn.execute_batch("DROP INDEX rollups_by_hour; DROP INDEX presence_by_hour;")
        .map_err(err(what))?;
    let mut rng = StdRng::seed_from_u64(seed);
    let end = end.timestamp_millis().div_euclid(HOUR_MS) * HOUR_MS;
    let start = end - hours as i64 * HOUR_MS;
    let policy = default_policy();
    let tx = conn.transaction().map_err(err(what))?;
    {
        let mut agent = tx
            .prepare(
                "INSERT INTO agents (agent_id, hostname, enrolled_at, enrolled_with_token, cert_serial,
                     cert_sha256, agent_version, os_name, os_version, arch, revoked_at)
                 VALUES (?1, ?2, ?3, 'seed-token', ?2, ?1, '0.1.0', 'Ubuntu', '24.04', 'x86_64', ?4)",
            )
            .map_err(err(what))?;
        let mut series = tx
            .prepare("INSERT INTO series (agent_id, name, labels) VALUES (?1, ?2, ?3)")
            .map_err(err(what))?;
        let mut rollup = tx
            .prepare(
                "INSERT INTO rollups_hourly (series_id, hour, min, avg, max, count)
                 VALUES (?1, ?2, ?3, ?4, ?5, 12)",
            )
            .map_err(err(what))?;
        let mut presence = tx
            .prepare("INSERT INTO presence_hourly (agent_id, hour, slots_seen) VALUES (?1, ?2, ?3)")
            .map_err(err(what))?;
        let mut incident = tx
            .prepare(
                "INSERT INTO incidents (rule_id, agent_id, incident_key, severity, title, description,
                     state, opened_at, acknowledged_at, resolved_at, last_seen_at, first_value, last_value,
                     threshold, occurrences, reopen_count, sla_clock)
                 VALUES (?1, ?2, ?1 || '/' || ?2, ?3, ?4, ?4, ?5, ?6, ?7, ?8, coalesce(?8, ?6), '', '', '', ?9, ?10, ?11)",
            )
            .map_err(err(what))?;

        let span_hours = hours as i64;
        for i in 0..hosts {
            let agent_id = format!("00000000-0000-4000-8000-{i:012}");
            let hostname = format!("host-{i:04}");
            let enrolled = if rng.random_bool(0.02) {
                start + rng.random_range(0..span_hours.max(1)) * HOUR_MS + 17 * MINUTE_MS
            } else {
                start - 30 * DAY_MS
            };
            let revoked = rng
                .random_bool(0.01)
                .then(|| enrolled.max(start) + rng.random_range(1..span_hours.max(2)) * HOUR_MS)
                .filter(|r| *r < end);
            agent
                .execute(params![agent_id, hostname, enrolled, revoked])
                .map_err(err(what))?;
            let first_hour = enrolled.max(start).div_euclid(HOUR_MS) * HOUR_MS;
            let last_hour = revoked.unwrap_or(end);
            let host_hours = (first_hour..last_hour).step_by(HOUR_MS as usize);

            // Filesystems: a level, a daily growth (some fill), hourly noise.
            for labels in [
                r#"{"device":"/dev/vda1","fstype":"ext4","mount":"/"}"#,
                r#"{"device":"/dev/vdb1","fstype":"xfs","mount":"/data"}"#,
            ] {
                series
                    .execute(params![agent_id, METRIC_FS_USED, labels])
                    .map_err(err(what))?;
                let id = tx.last_insert_rowid();
                let level = rng.random_range(10.0..60.0);
                // Most grow slowly; one in twenty fills within months.
                let per_day = if rng.random_bool(0.05) {
                    rng.random_range(0.1..0.3)
                } else {
                    rng.random_range(-0.02..0.05)
                };
                let per_hour = per_day / 24.0;
                for (k, hour) in host_hours.clone().enumerate() {
                    let v = (level + per_hour * k as f64 + rng.random_range(-0.5..0.5))
                        .clamp(0.0, 100.0);
                    rollup
                        .execute(params![
                            id,
                            hour,
                            (v - 0.3).max(0.0),
                            v,
                            (v + 0.3).min(100.0)
                        ])
                        .map_err(err(what))?;
                }
            }
            // Pending security updates: streaks that start now and then and
            // end when patched.
            series
                .execute(params![agent_id, METRIC_SECURITY_PENDING, "{}"])
                .map_err(err(what))?;
            let id = tx.last_insert_rowid();
            let mut pending = 0.0f64;
            for hour in host_hours.clone() {
                if pending > 0.0 && rng.random_bool(1.0 / (24.0 * 10.0)) {
                    pending = 0.0;
                } else if pending == 0.0 && rng.random_bool(1.0 / (24.0 * 20.0)) {
                    pending = f64::from(rng.random_range(1..8u8));
                }
                rollup
                    .execute(params![id, hour, pending, pending, pending])
                    .map_err(err(what))?;
            }
            for name in ["cpu.used_pct", "mem.used_pct"] {
                series
                    .execute(params![agent_id, name, "{}"])
                    .map_err(err(what))?;
                let id = tx.last_insert_rowid();
                for hour in host_hours.clone() {
                    let avg: f64 = rng.random_range(5.0..80.0);
                    rollup
                        .execute(params![id, hour, avg * 0.5, avg, (avg * 1.5).min(100.0)])
                        .map_err(err(what))?;
                }
            }
            for hour in host_hours.clone() {
                let seen: u8 = match rng.random_range(0..1000) {
                    0 => continue,
                    1..=4 => rng.random_range(1..12),
                    _ => 12,
                };
                presence
                    .execute(params![agent_id, hour, seen])
                    .map_err(err(what))?;
            }

            // About two incidents a month.
            let host_span = last_hour - first_hour;
            let count = (host_span as f64 / (30.0 * DAY_MS as f64) * 2.0).round() as usize;
            for _ in 0..count {
                let (rule, severity) = FLEET_RULES[rng.random_range(0..FLEET_RULES.len())];
                let opened = first_hour + rng.random_range(0..host_span.max(1));
                // Mostly within the SLA, sometimes late.
                let ack_minutes = if rng.random_bool(0.85) {
                    rng.random_range(1..30)
                } else {
                    rng.random_range(30..180)
                };
                let fix_minutes = if rng.random_bool(0.9) {
                    rng.random_range(10..600)
                } else {
                    rng.random_range(600..4000)
                };
                let acked = opened + ack_minutes * MINUTE_MS;
                let resolved = acked + fix_minutes * MINUTE_MS;
                let (acked, resolved) = (
                    Some(acked).filter(|t| *t < end),
                    Some(resolved).filter(|t| *t < end),
                );
                let state = match (acked, resolved) {
                    (_, Some(_)) => "resolved",
                    (Some(_), None) => "acknowledged",
                    (None, None) => "open",
                };
                incident
                    .execute(params![
                        rule,
                        agent_id,
                        severity.as_str(),
                        format!("{rule} on {hostname}"),
                        state,
                        opened,
                        acked,
                        resolved,
                        rng.random_range(1..4),
                        i64::from(rng.random_bool(0.1)),
                        sla_clock(severity, opened, &policy),
                    ])
                    .map_err(err(what))?;
            }

            // The latest results, just before the end.
            let at = last_hour - 10 * MINUTE_MS;
            let av = match rng.random_range(0..100) {
                0..=89 => ("ok", "protected: definitions 0 days old", ""),
                90..=94 => ("critical", "disabled: real-time protection off", ""),
                _ => ("unknown", "", "antivirus state could not be determined"),
            };
            let mut results = vec![seeded_check(CHECK_ANTIVIRUS, av.0, av.1, av.2)];
            let patch = if pending > 0.0 {
                ("critical", format!("{pending} security"), "")
            } else if rng.random_bool(0.03) {
                ("unknown", String::new(), "apt-get timed out after 60s")
            } else {
                ("ok", "0 security".to_owned(), "")
            };
            results.push(seeded_check(
                CHECK_SECURITY_PENDING,
                patch.0,
                &patch.1,
                patch.2,
            ));
            for id in FLEET_BASELINE {
                let status = match rng.random_range(0..100) {
                    0..=91 => "ok",
                    92..=96 => "critical",
                    _ => "unknown",
                };
                results.push(seeded_check(id, status, "", ""));
            }
            checks::insert_block(&tx, &agent_id, 1, at, &results).map_err(err(what))?;
        }
        // A monthly inspection of the whole fleet.
        let mut run_id = 0i64;
        for filed in (start + 30 * DAY_MS..end).step_by(30 * DAY_MS as usize) {
            run_id += 1;
            tx.execute(
                "INSERT INTO inspection_runs (run_id, kind, plan, full_fleet, scope, request_id, requested_by,
                     requested_at, started_at, filed_at, state, hosts_in_scope, hosts_inspected)
                 VALUES (?1, 'inspection', 'monthly', 1, 'all hosts', 'bench-' || ?1, 'scheduler', ?2, ?2, ?3,
                     'filed', ?4, ?4)",
                params![run_id, filed - 5 * MINUTE_MS, filed, hosts as i64],
            )
            .map_err(err(what))?;
            for i in 0..hosts {
                let agent_id = format!("00000000-0000-4000-8000-{i:012}");
                let abnormal = rng.random_bool(0.05);
                tx.execute(
                    "INSERT INTO inspection_records (run_id, agent_id, hostname, verdict, measured_at, last_seen_at)
                     SELECT ?1, agent_id, hostname, ?3, ?4, ?4 FROM agents
                     WHERE agent_id = ?2 AND enrolled_at <= ?4 AND (revoked_at IS NULL OR revoked_at > ?4)",
                    params![run_id, agent_id, if abnormal { "abnormal" } else { "normal" }, filed],
                )
                .map_err(err(what))?;
                if tx.changes() == 1 && abnormal {
                    tx.execute(
                        "INSERT INTO inspection_items (record_id, item_id, title, value, threshold, verdict,
                             measured_at, detail)
                         VALUES (?1, 'fs.used_pct{mount=/data}', 'Filesystem usage', '91.0', '< 85', 'abnormal', ?2, '')",
                        params![tx.last_insert_rowid(), filed],
                    )
                    .map_err(err(what))?;
                }
            }
        }
    }
    tx.execute_batch(
        "CREATE INDEX rollups_by_hour ON rollups_hourly (hour);
         CREATE INDEX presence_by_hour ON presence_hourly (hour);",
    )
    .map_err(err(what))?;
    tx.commit().map_err(err(what))?;
    for (pragma, value) in [("journal_mode", "WAL"), ("synchronous", "FULL")] {
        conn.pragma_update(None, pragma, value).map_err(err(what))?;
    }
    Ok(())
}
