//! Carrying out inspections in the running collector: the scheduler that
//! requests plan runs when they are due, the loop that picks up requested
//! runs (from the scheduler or `xunjian inspect run` / `selfcheck run`),
//! sends `RunNow` to the hosts in scope, waits a bounded time, and files
//! one record per host plus the run summary, chained into the evidence.
//!
//! A run is a row in `inspection_runs`: `requested` → `running` → `filed`.
//! The CLI only inserts `requested` rows; this loop, which owns the agents'
//! streams, does the rest. A run found `running` at startup (the collector
//! stopped mid-run) is filed from what had arrived, so it is never lost.
//!
//! Missed schedules: a plan whose run fell due while the collector was down
//! runs once at startup (like anacron), not once per missed slot.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::plan::{Candidate, InspectionConfig, PlanKind, Scope, item_selected};
use super::record::{
    HostRecord, HostVerdict, InspectionRun, Item, ItemVerdict, RunKind, RunSummary,
};
use crate::clock::Clock;
use crate::evidence::EvidenceKey;
use crate::ingest::Shared;
use crate::rules::RuleSet;
use crate::schedule::Schedule;
use crate::sla::{Severity, SlaClock, SlaPolicy};
use crate::store::incidents::{Firing, IncidentUpdate};
use crate::store::{StoreError, TaskError, WriteError, WriterHandle, sql};

/// The pseudo-host fleet-wide incidents (no full self-check) are raised
/// against. Enrolled as revoked at the epoch, so it is never in a fleet,
/// a scope or a report.
pub const FLEET_AGENT_ID: &str = "00000000-0000-0000-0000-000000000000";
pub const SELFCHECK_OVERDUE_RULE: &str = "selfcheck.full.overdue";
/// Plan names of CLI-requested runs.
pub const ADHOC_PLAN: &str = "adhoc";
pub const SELFCHECK_FULL_PLAN: &str = "selfcheck-full";
pub const SELFCHECK_PARTIAL_PLAN: &str = "selfcheck-partial";

/// How often requested runs and due schedules are looked for.
const POLL: Duration = Duration::from_secs(1);
/// Time given to the rules to open incidents for an answer before the
/// record links its abnormal items to them.
const LINK_GRACE: Duration = Duration::from_secs(1);
/// Runs carried out at once, at most; more wait as `requested`.
const MAX_CONCURRENT_RUNS: usize = 4;
/// An unanswered host is asked again this often: the agent keeps one
/// pending RunNow and drops others, and a host may reconnect mid-wait.
const ASK_AGAIN: Duration = Duration::from_secs(15);
/// After a retryable failure (storage unavailable) a run waits this long
/// before it is tried again.
const RETRY_AFTER: Duration = Duration::from_secs(30);
/// The longest wait a run may ask for.
const MAX_WAIT_SECONDS: u64 = 3600;

/// What a requested run asks for, stored as JSON in `inspection_runs.scope`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRequest {
    pub kind: RunKind,
    pub plan: String,
    pub scope: Scope,
    pub checks: Vec<String>,
    pub wait_seconds: u64,
}

impl RunRequest {
    /// The request a configured plan makes.
    pub fn for_plan(config: &InspectionConfig, name: &str) -> Option<RunRequest> {
        let plan = config.plan(name)?;
        let kind = match plan.kind {
            PlanKind::Inspection => RunKind::Inspection,
            PlanKind::Selfcheck => RunKind::Selfcheck,
        };
        let checks = match plan.kind {
            PlanKind::Selfcheck if plan.checks == ["*"] => config.selfcheck_checks.clone(),
            _ => plan.checks.clone(),
        };
        Some(RunRequest {
            kind,
            plan: plan.name.clone(),
            scope: plan.scope.clone(),
            checks,
            wait_seconds: plan.wait.unwrap_or(config.wait).as_secs(),
        })
    }

    /// A security self-check of `scope` (full when it is the whole fleet).
    pub fn selfcheck(config: &InspectionConfig, scope: Scope) -> RunRequest {
        let plan = if scope.is_whole_fleet() {
            SELFCHECK_FULL_PLAN
        } else {
            SELFCHECK_PARTIAL_PLAN
        };
        RunRequest {
            kind: RunKind::Selfcheck,
            plan: plan.into(),
            scope,
            checks: config.selfcheck_checks.clone(),
            wait_seconds: config.wait.as_secs(),
        }
    }

    /// An inspection of `scope` with every item, outside any plan.
    pub fn adhoc(config: &InspectionConfig, scope: Scope) -> RunRequest {
        RunRequest {
            kind: RunKind::Inspection,
            plan: ADHOC_PLAN.into(),
            scope,
            checks: vec!["*".into()],
            wait_seconds: config.wait.as_secs(),
        }
    }

    fn full_fleet(&self) -> bool {
        self.kind == RunKind::Selfcheck && self.scope.is_whole_fleet()
    }
}

/// Inserts a `requested` run; the running collector carries it out.
pub fn request_run(
    conn: &Connection,
    request: &RunRequest,
    requested_by: &str,
    now: DateTime<Utc>,
) -> Result<i64, StoreError> {
    let scope = serde_json::to_string(request).unwrap_or_default();
    conn.execute(
        "INSERT INTO inspection_runs (kind, plan, full_fleet, scope, request_id, requested_by, requested_at, state)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 'requested')",
        params![
            request.kind.as_str(),
            request.plan,
            request.full_fleet(),
            scope,
            format!("inspection-{}", Uuid::new_v4()),
            requested_by,
            now.timestamp_millis()
        ],
    )
    .map_err(sql("requesting an inspection run"))?;
    Ok(conn.last_insert_rowid())
}

/// The inspection task of the running collector.
pub struct Inspector {
    pub config: InspectionConfig,
    pub db_path: PathBuf,
    pub writer: WriterHandle,
    pub shared: Arc<Shared>,
    pub clock: Arc<dyn Clock>,
    pub rules: RuleSet,
    pub evidence: Arc<EvidenceKey>,
    pub sla: SlaPolicy,
    pub shutdown: CancellationToken,
    /// See [`Inspector::read`]; `Default::default()` when building one.
    pub read_conn: std::sync::OnceLock<std::sync::Mutex<Connection>>,
}

struct Due {
    plan: String,
    schedule: Schedule,
    next: DateTime<Utc>,
}

impl Inspector {
    pub async fn run(self) {
        let this = Arc::new(self);
        let mut due = match this.initial_schedules() {
            Ok(d) => d,
            Err(e) => {
                tracing::error!(error = %e, "cannot read past inspection runs; scheduled inspections are off");
                Vec::new()
            }
        };
        if let Err(e) = this.ensure_fleet_pseudo_host().await {
            tracing::warn!(error = %e, "cannot register the fleet pseudo-host");
        }
        let running: Arc<std::sync::Mutex<HashSet<i64>>> = Default::default();
        let mut tick = tokio::time::interval(POLL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_overdue_check: Option<DateTime<Utc>> = None;
        loop {
            tokio::select! {
                _ = this.shutdown.cancelled() => break,
                _ = tick.tick() => {}
            }
            let now = this.clock.now();
            for d in &mut due {
                if d.next > now {
                    continue;
                }
                d.next = d.schedule.next_after(now);
                let Some(request) = RunRequest::for_plan(&this.config, &d.plan) else {
                    continue;
                };
                let r = this
                    .writer
                    .run(move |c| request_run(c, &request, "scheduler", now).map_err(store_refused))
                    .await;
                match r {
                    Ok(id) => {
                        tracing::info!(plan = %d.plan, run = id, next = %d.next, "scheduled inspection requested")
                    }
                    Err(e) => {
                        tracing::warn!(plan = %d.plan, error = %e, "cannot request a scheduled inspection")
                    }
                }
            }
            match this.pending_runs() {
                Ok(pending) => {
                    for (run_id, state) in pending {
                        let mut set = running.lock().unwrap_or_else(|p| p.into_inner());
                        if set.contains(&run_id)
                            || (state == "requested" && set.len() >= MAX_CONCURRENT_RUNS)
                        {
                            continue;
                        }
                        set.insert(run_id);
                        drop(set);
                        let (this, running) = (this.clone(), running.clone());
                        tokio::spawn(
                            async move {
                                match this.clone().carry_out(run_id).await {
                                    Ok(()) => {}
                                    Err(e) if e.is_retryable() => {
                                        tracing::warn!(run = run_id, error = %e, "inspection run interrupted; retried in 30s");
                                        tokio::time::sleep(RETRY_AFTER).await;
                                    }
                                    Err(e) => {
                                        tracing::error!(run = run_id, error = %e, "inspection run failed");
                                        this.mark_failed(run_id, e.to_string()).await;
                                    }
                                }
                                running.lock().unwrap_or_else(|p| p.into_inner()).remove(&run_id);
                            }
                            .instrument_run(run_id),
                        );
                    }
                }
                Err(e) => tracing::warn!(error = %e, "cannot read requested inspection runs"),
            }
            if last_overdue_check.is_none_or(|t| now - t >= chrono::Duration::seconds(60)) {
                last_overdue_check = Some(now);
                if let Err(e) = this.check_full_selfcheck(now).await {
                    tracing::warn!(error = %e, "cannot check when the last full self-check was");
                }
            }
        }
    }

    /// The connection the polls share (requested runs every second,
    /// answers every 200 ms per run), opened once instead of per poll.
    /// Held only for short queries; building a record opens its own.
    fn read(&self) -> Result<std::sync::MutexGuard<'_, Connection>, StoreError> {
        let conn = match self.read_conn.get() {
            Some(c) => c,
            None => {
                let opened = crate::store::open_read_only(&self.db_path)?;
                self.read_conn.get_or_init(|| std::sync::Mutex::new(opened))
            }
        };
        Ok(conn.lock().unwrap_or_else(|p| p.into_inner()))
    }

    fn initial_schedules(&self) -> Result<Vec<Due>, StoreError> {
        let conn = self.read()?;
        let now = self.clock.now();
        let mut due = Vec::new();
        for plan in &self.config.plans {
            // Validated with the config; a failure here is a bug, logged.
            let schedule = match Schedule::parse(&plan.schedule, &self.config.timezone) {
                Ok(s) => s,
                Err(e) => {
                    tracing::error!(plan = %plan.name, error = %e, "bad schedule");
                    continue;
                }
            };
            let last: Option<i64> = conn
                .query_row(
                    "SELECT max(requested_at) FROM inspection_runs WHERE plan = ?1 AND requested_by = 'scheduler'",
                    [&plan.name],
                    |r| r.get(0),
                )
                .map_err(sql("reading the last scheduled run"))?;
            let next = match last.and_then(|ms| Utc.timestamp_millis_opt(ms).single()) {
                // Due while we were down: once now.
                Some(last) => schedule.next_after(last).min(schedule.next_after(now)),
                None => schedule.next_after(now),
            };
            tracing::info!(plan = %plan.name, schedule = %schedule, next = %next, "inspection plan scheduled");
            due.push(Due {
                plan: plan.name.clone(),
                schedule,
                next,
            });
        }
        Ok(due)
    }

    fn pending_runs(&self) -> Result<Vec<(i64, String)>, StoreError> {
        let conn = self.read()?;
        let mut stmt = conn
            .prepare(
                "SELECT run_id, state FROM inspection_runs WHERE state IN ('requested', 'running') ORDER BY run_id",
            )
            .map_err(sql("reading requested runs"))?;
        let rows = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .and_then(|rows| rows.collect())
            .map_err(sql("reading requested runs"))?;
        Ok(rows)
    }

    /// Sends RunNow, waits for the answers (or the wait), files the record.
    /// A run that cannot be carried out (unreadable request, record
    /// refused by storage) is filed as `failed` with the reason, so neither
    /// the collector nor the waiting CLI retries it forever.
    async fn mark_failed(&self, run_id: i64, reason: String) {
        let at = self.clock.now_ms();
        let r = self
            .writer
            .run(move |c| {
                c.execute(
                    "UPDATE inspection_runs SET state = 'failed', failure = ?2, filed_at = ?3
                     WHERE run_id = ?1 AND state IN ('requested', 'running')",
                    params![run_id, reason, at],
                )?;
                Ok(())
            })
            .await;
        if let Err(e) = r {
            tracing::warn!(run = run_id, error = %e, "cannot mark the run failed");
        }
    }

    async fn carry_out(self: Arc<Self>, run_id: i64) -> Result<(), RunError> {
        let (request, request_id, requested_by, requested_at, state, started_at) =
            self.load_run(run_id)?;
        let started = match (state.as_str(), started_at) {
            // Resumed after a restart: the wait counts from the first start.
            ("running", Some(at)) => at,
            _ => {
                let now = self.clock.now();
                self.writer
                    .run(move |c| {
                        c.execute(
                            "UPDATE inspection_runs SET state = 'running', started_at = ?2 WHERE run_id = ?1 AND state = 'requested'",
                            params![run_id, now.timestamp_millis()],
                        )?;
                        Ok(())
                    })
                    .await?;
                now
            }
        };
        let hosts = self.hosts_in_scope(&request.scope)?;
        // The wait is measured on the monotonic clock from what remains of
        // it now (a resumed run has less left): a wall clock stepped back,
        // or a test clock that stands still, cannot make a run wait forever.
        let wait = chrono::Duration::seconds(request.wait_seconds.min(MAX_WAIT_SECONDS) as i64);
        let remaining = (started + wait - self.clock.now())
            .to_std()
            .unwrap_or_default();
        let until = tokio::time::Instant::now() + remaining;
        tracing::info!(run = run_id, plan = %request.plan, hosts = hosts.len(), "inspection run started");
        let mut asked: HashMap<String, tokio::time::Instant> = HashMap::new();
        let mut answered: HashMap<String, (i64, i64)>;
        loop {
            answered = self.answers(&request_id)?;
            let now = tokio::time::Instant::now();
            for h in &hosts {
                if answered.contains_key(&h.agent_id)
                    || asked
                        .get(&h.agent_id)
                        .is_some_and(|at| now.duration_since(*at) < ASK_AGAIN)
                {
                    continue;
                }
                if let Ok(id) = h.agent_id.parse::<Uuid>()
                    && self.shared.sessions.run_now(id, &request_id)
                {
                    asked.insert(h.agent_id.clone(), now);
                }
            }
            if hosts.iter().all(|h| answered.contains_key(&h.agent_id))
                || now >= until
                || self.shutdown.is_cancelled()
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        if self.shutdown.is_cancelled() {
            // Left `running`: the next start files it.
            return Ok(());
        }
        if !answered.is_empty() {
            tokio::time::sleep(LINK_GRACE).await;
        }
        let filed_at = self.clock.now();
        // Reading every answer's items is a burst of queries: off the runtime.
        let this = self.clone();
        let req = request.clone();
        let run = tokio::task::spawn_blocking(move || {
            this.build_record(
                run_id,
                &req,
                &requested_by,
                requested_at,
                started,
                filed_at,
                &hosts,
                &answered,
            )
        })
        .await
        .map_err(|e| RunError::Bad(format!("building the record of run {run_id}: {e}")))??;
        let summary = run.summary.clone();
        let evidence = self.evidence.clone();
        let full = request.full_fleet();
        self.writer.run(move |c| file(c, &run, &evidence)).await?;
        tracing::info!(
            run = run_id,
            in_scope = summary.hosts_in_scope,
            inspected = summary.hosts_inspected,
            abnormal = summary.hosts_abnormal,
            not_reached = summary.hosts_not_reached,
            "inspection run filed"
        );
        if full {
            self.check_full_selfcheck(filed_at).await?;
        }
        Ok(())
    }

    #[allow(clippy::type_complexity)]
    fn load_run(
        &self,
        run_id: i64,
    ) -> Result<
        (
            RunRequest,
            String,
            String,
            DateTime<Utc>,
            String,
            Option<DateTime<Utc>>,
        ),
        RunError,
    > {
        let conn = self.read()?;
        let (scope, request_id, by, at, state, started): (String, String, String, i64, String, Option<i64>) = conn
            .query_row(
                "SELECT scope, request_id, requested_by, requested_at, state, started_at FROM inspection_runs WHERE run_id = ?1",
                [run_id],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?)),
            )
            .map_err(sql("reading an inspection run"))?;
        let request: RunRequest = serde_json::from_str(&scope)
            .map_err(|e| RunError::Bad(format!("run {run_id} has an unreadable request: {e}")))?;
        Ok((request, request_id, by, ms(at), state, started.map(ms)))
    }

    fn hosts_in_scope(&self, scope: &Scope) -> Result<Vec<Candidate>, StoreError> {
        let conn = self.read()?;
        hosts_in_scope(&conn, scope)
    }

    /// (agent id) -> (sequence, collected_at) of its answer.
    fn answers(&self, request_id: &str) -> Result<HashMap<String, (i64, i64)>, StoreError> {
        let conn = self.read()?;
        let mut stmt = conn
            .prepare_cached(
                "SELECT agent_id, min(sequence), min(collected_at) FROM reports
                 WHERE run_now_request_id = ?1 AND run_now_request_id != '' GROUP BY agent_id",
            )
            .map_err(sql("reading inspection answers"))?;
        let rows = stmt
            .query_map([request_id], |r| Ok((r.get(0)?, (r.get(1)?, r.get(2)?))))
            .and_then(|rows| rows.collect())
            .map_err(sql("reading inspection answers"))?;
        Ok(rows)
    }

    #[allow(clippy::too_many_arguments)]
    fn build_record(
        &self,
        run_id: i64,
        request: &RunRequest,
        requested_by: &str,
        requested_at: DateTime<Utc>,
        started_at: DateTime<Utc>,
        filed_at: DateTime<Utc>,
        hosts: &[Candidate],
        answered: &HashMap<String, (i64, i64)>,
    ) -> Result<InspectionRun, StoreError> {
        let conn = crate::store::open_read_only(&self.db_path)?;
        let mut records = Vec::with_capacity(hosts.len());
        for h in hosts {
            let (cert, last_seen): (String, Option<i64>) = conn
                .query_row(
                    "SELECT cert_sha256, last_seen_at FROM agents WHERE agent_id = ?1",
                    [&h.agent_id],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .map_err(sql("reading a host"))?;
            let record = match answered.get(&h.agent_id) {
                Some(&(sequence, collected_at)) => {
                    let items = self.items(&conn, &h.agent_id, sequence, collected_at, request)?;
                    HostRecord {
                        agent_id: h.agent_id.clone(),
                        hostname: h.hostname.clone(),
                        agent_cert_sha256: cert,
                        verdict: host_verdict(&items),
                        measured_at: Some(ms(collected_at)),
                        report_sequence: Some(sequence),
                        last_seen_at: last_seen.map(ms),
                        items,
                    }
                }
                None => HostRecord {
                    agent_id: h.agent_id.clone(),
                    hostname: h.hostname.clone(),
                    agent_cert_sha256: cert,
                    verdict: HostVerdict::NotInspected,
                    measured_at: None,
                    report_sequence: None,
                    last_seen_at: last_seen.map(ms),
                    items: Vec::new(),
                },
            };
            records.push(record);
        }
        records.sort_by(|a, b| (&a.hostname, &a.agent_id).cmp(&(&b.hostname, &b.agent_id)));
        Ok(InspectionRun {
            run_id,
            kind: request.kind,
            plan: request.plan.clone(),
            full_fleet: request.full_fleet(),
            scope: request.scope.to_string(),
            checks: request.checks.clone(),
            requested_by: requested_by.to_owned(),
            requested_at,
            started_at,
            filed_at,
            wait_seconds: request.wait_seconds,
            summary: summarize(&records),
            hosts: records,
        })
    }

    /// The judged items of one answer: its check results and the metric
    /// items with thresholds, as far as the plan selects them.
    fn items(
        &self,
        conn: &Connection,
        agent: &str,
        sequence: i64,
        collected_at: i64,
        request: &RunRequest,
    ) -> Result<Vec<Item>, StoreError> {
        let mut items = Vec::new();
        let results = crate::store::checks::of_report(conn, agent, sequence, collected_at)
            .map_err(sql("reading check results"))?;
        for c in results {
            let id = c.check_id;
            if !item_selected(&request.checks, &id) {
                continue;
            }
            let verdict = match c.status.as_str() {
                "ok" => ItemVerdict::Normal,
                "warning" | "critical" => ItemVerdict::Abnormal,
                _ => ItemVerdict::Unknown,
            };
            let detail = if c.reason.is_empty() {
                c.evidence
            } else {
                c.reason
            };
            let labels = BTreeMap::from([("check_id".to_owned(), id.clone())]);
            let incident_id = match verdict {
                ItemVerdict::Abnormal => self.incident_for(conn, agent, &id, None, &labels)?,
                _ => None,
            };
            items.push(Item {
                item_id: id,
                title: c.title,
                value: c.value,
                threshold: c.threshold,
                verdict,
                measured_at: ms(collected_at),
                detail,
                incident_id,
            });
        }
        let mut series = conn
            .prepare_cached(
                "SELECT series_id, name, labels FROM series WHERE agent_id = ?1 AND name = ?2",
            )
            .map_err(sql("reading series"))?;
        for (metric, limit) in &self.config.thresholds {
            let found: Vec<(i64, String, String)> = series
                .query_map(params![agent, metric], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                })
                .and_then(|rows| rows.collect())
                .map_err(sql("reading series"))?;
            for (series_id, name, labels_json) in found {
                let labels: BTreeMap<String, String> =
                    serde_json::from_str(&labels_json).unwrap_or_default();
                let id = metric_item_id(&name, &labels);
                if !item_selected(&request.checks, &id) && !item_selected(&request.checks, &name) {
                    continue;
                }
                // The answer's own sample (its sequence), taken within five
                // minutes of the answer.
                let mut found = None;
                crate::store::samples::visit_points(
                    conn,
                    series_id,
                    collected_at - 300_000,
                    collected_at + 300_001,
                    false,
                    |p| {
                        if p.sequence == sequence {
                            found = Some((p.value, p.at));
                        }
                        found.is_none()
                    },
                )
                .map_err(sql("reading samples"))?;
                let Some((value, at)) = found else {
                    continue;
                };
                let verdict = if !value.is_finite() {
                    ItemVerdict::Unknown
                } else if value >= *limit {
                    ItemVerdict::Abnormal
                } else {
                    ItemVerdict::Normal
                };
                let incident_id = match verdict {
                    ItemVerdict::Abnormal => {
                        self.incident_for(conn, agent, &name, Some(()), &labels)?
                    }
                    _ => None,
                };
                items.push(Item {
                    item_id: id,
                    title: metric_title(&name, &labels),
                    value: format!("{value:.1}"),
                    threshold: format!("< {limit}"),
                    verdict,
                    measured_at: ms(at),
                    detail: String::new(),
                    incident_id,
                });
            }
        }
        Ok(items)
    }

    /// The open incident a rule keeps for this finding: same rule target,
    /// same host, same label set (the key the rules engine uses).
    fn incident_for(
        &self,
        conn: &Connection,
        agent: &str,
        target: &str,
        metric: Option<()>,
        labels: &BTreeMap<String, String>,
    ) -> Result<Option<i64>, StoreError> {
        use crate::rules::Target;
        let mut stmt = conn
            .prepare_cached(
                "SELECT incident_id FROM incidents WHERE incident_key = ?1 AND state IN ('open', 'acknowledged')
                 ORDER BY opened_at DESC LIMIT 1",
            )
            .map_err(sql("reading incidents"))?;
        for rule in self.rules.rules() {
            let applies = match (&rule.target, metric) {
                (Target::Check { pattern, .. }, None) => pattern.matches(target),
                (
                    Target::Metric {
                        name, match_labels, ..
                    },
                    Some(()),
                ) => name == target && match_labels.iter().all(|(k, v)| labels.get(k) == Some(v)),
                _ => false,
            };
            if !applies {
                continue;
            }
            let key = crate::rules::IncidentKey {
                rule_id: rule.id.clone(),
                agent_id: agent.to_owned(),
                labels: labels.clone(),
            };
            if let Some(id) = stmt
                .query_row([crate::alerting::key_text(&key)], |r| r.get(0))
                .optional()
                .map_err(sql("reading incidents"))?
            {
                return Ok(Some(id));
            }
        }
        Ok(None)
    }

    async fn ensure_fleet_pseudo_host(&self) -> Result<(), WriteError> {
        self.writer
            .run(|c| {
                c.execute(
                    "INSERT OR IGNORE INTO agents (agent_id, hostname, enrolled_at, enrolled_with_token, cert_serial, cert_sha256, revoked_at)
                     VALUES (?1, '(fleet)', 0, '', '', '', 0)",
                    [FLEET_AGENT_ID],
                )?;
                Ok(())
            })
            .await
    }

    /// Opens the "no full self-check" incident when the last one is older
    /// than `full_selfcheck_every` (or, before the first one, the first
    /// enrollment is), resolves it after one.
    async fn check_full_selfcheck(&self, now: DateTime<Utc>) -> Result<(), RunError> {
        let key = crate::alerting::key_text(&crate::rules::IncidentKey {
            rule_id: SELFCHECK_OVERDUE_RULE.into(),
            agent_id: FLEET_AGENT_ID.into(),
            labels: BTreeMap::new(),
        });
        // In a block: the read guard must not live across the write below.
        let (last, overdue, open) = {
            let conn = self.read()?;
            let last = last_full_selfcheck(&conn)?;
            // Before the first full self-check the year counts from the first
            // enrollment: a new installation is not overdue on day one.
            let first_enrolled: Option<i64> = conn
                .query_row(
                    "SELECT min(enrolled_at) FROM agents WHERE agent_id != ?1",
                    [FLEET_AGENT_ID],
                    |r| r.get(0),
                )
                .map_err(sql("reading the first enrollment"))?;
            let every = chrono::Duration::from_std(self.config.full_selfcheck_every)
                .unwrap_or(chrono::Duration::days(365));
            let overdue = match last.or(first_enrolled) {
                Some(since) => now - ms(since) > every,
                None => false,
            };
            let open: bool = conn
            .query_row(
                "SELECT EXISTS (SELECT 1 FROM incidents WHERE incident_key = ?1 AND state IN ('open', 'acknowledged'))",
                [&key],
                |r| r.get(0),
            )
            .map_err(sql("reading incidents"))?;
            (last, overdue, open)
        };
        let at_ms = now.timestamp_millis();
        let update = match (overdue, open) {
            (true, false) => {
                let since =
                    last.map_or("never".to_owned(), |t| ms(t).format("%Y-%m-%d").to_string());
                let clock = SlaClock::new(Severity::III, now, &self.sla);
                IncidentUpdate::Firing(Firing {
                    rule_id: SELFCHECK_OVERDUE_RULE.into(),
                    agent_id: FLEET_AGENT_ID.parse().unwrap_or_default(),
                    key,
                    severity: Severity::III.as_str().into(),
                    title: "No full security self-check in the last year".into(),
                    description: format!(
                        "The last full self-check of the whole fleet was filed {since}; run `xunjian selfcheck run --scope all`."
                    ),
                    value: since,
                    numeric: None,
                    threshold: humantime::format_duration(self.config.full_selfcheck_every)
                        .to_string(),
                    at_ms,
                    flapping: false,
                    sla_clock: serde_json::to_string(&clock).unwrap_or_default(),
                    suppressed_by: None,
                })
            }
            (false, true) => IncidentUpdate::Resolved {
                key,
                value: "full self-check filed".into(),
                at_ms,
            },
            _ => return Ok(()),
        };
        self.writer.incidents(vec![update], 0).await?;
        Ok(())
    }
}

/// When the last full self-check was filed: a self-check of the whole
/// fleet that reached every host in it (a run most hosts missed does not
/// meet the yearly requirement).
pub fn last_full_selfcheck(conn: &Connection) -> Result<Option<i64>, StoreError> {
    conn.query_row(
        "SELECT max(filed_at) FROM inspection_runs
         WHERE kind = 'selfcheck' AND full_fleet = 1 AND state = 'filed' AND hosts_not_reached = 0",
        [],
        |r| r.get(0),
    )
    .map_err(sql("reading the last full self-check"))
}

/// Hosts a scope selects: enrolled, not revoked, by hostname.
pub fn hosts_in_scope(conn: &Connection, scope: &Scope) -> Result<Vec<Candidate>, StoreError> {
    let mut stmt = conn
        .prepare_cached(
            "SELECT agent_id, hostname FROM agents WHERE revoked_at IS NULL ORDER BY hostname, agent_id",
        )
        .map_err(sql("reading hosts"))?;
    let hosts: Vec<(String, String)> = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .and_then(|rows| rows.collect())
        .map_err(sql("reading hosts"))?;
    let mut out = Vec::new();
    for (agent_id, hostname) in hosts {
        let (labels, groups) = crate::store::host_tags(conn, &agent_id)?;
        let candidate = Candidate {
            agent_id,
            hostname,
            labels: labels.into_iter().collect(),
            groups,
        };
        if scope.matches(&candidate) {
            out.push(candidate);
        }
    }
    Ok(out)
}

/// Writes the filed record: the run row (final), one row per host and
/// item, and the evidence chain entry, in one transaction.
fn file(conn: &Connection, run: &InspectionRun, key: &EvidenceKey) -> Result<(), TaskError> {
    let body =
        crate::evidence::canonical_json(run).map_err(|e| TaskError::Refused(e.to_string()))?;
    let s = &run.summary;
    let changed = conn.execute(
        "UPDATE inspection_runs SET state = 'filed', filed_at = ?2, hosts_in_scope = ?3, hosts_inspected = ?4,
                hosts_abnormal = ?5, hosts_not_reached = ?6, body = ?7
         WHERE run_id = ?1 AND state = 'running'",
        params![
            run.run_id,
            run.filed_at.timestamp_millis(),
            s.hosts_in_scope as i64,
            s.hosts_inspected as i64,
            s.hosts_abnormal as i64,
            s.hosts_not_reached as i64,
            String::from_utf8_lossy(&body)
        ],
    )?;
    if changed != 1 {
        return Err(TaskError::Refused(format!(
            "run {} is not running (already filed?)",
            run.run_id
        )));
    }
    let mut record = conn.prepare_cached(
        "INSERT INTO inspection_records (run_id, agent_id, hostname, verdict, measured_at, last_seen_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?;
    let mut item = conn.prepare_cached(
        "INSERT INTO inspection_items (record_id, item_id, title, value, threshold, verdict, measured_at, detail, incident_id)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    )?;
    for h in &run.hosts {
        record.execute(params![
            run.run_id,
            h.agent_id,
            h.hostname,
            h.verdict.as_str(),
            h.measured_at.map(|t| t.timestamp_millis()),
            h.last_seen_at.map(|t| t.timestamp_millis())
        ])?;
        let record_id = conn.last_insert_rowid();
        for i in &h.items {
            item.execute(params![
                record_id,
                i.item_id,
                i.title,
                i.value,
                i.threshold,
                i.verdict.as_str(),
                i.measured_at.timestamp_millis(),
                i.detail,
                i.incident_id
            ])?;
        }
    }
    crate::evidence::append(
        conn,
        key,
        run.filed_at,
        run.kind.as_str(),
        &format!("run:{}", run.run_id),
        &body,
    )
    .map_err(|e| TaskError::Refused(e.to_string()))?;
    Ok(())
}

fn host_verdict(items: &[Item]) -> HostVerdict {
    if items.iter().any(|i| i.verdict == ItemVerdict::Abnormal) {
        HostVerdict::Abnormal
    } else if items.is_empty() || items.iter().any(|i| i.verdict == ItemVerdict::Unknown) {
        // Nothing judged is not "normal".
        HostVerdict::Unknown
    } else {
        HostVerdict::Normal
    }
}

fn summarize(hosts: &[HostRecord]) -> RunSummary {
    let count = |v: HostVerdict| hosts.iter().filter(|h| h.verdict == v).count() as u64;
    let items = hosts.iter().flat_map(|h| &h.items);
    RunSummary {
        hosts_in_scope: hosts.len() as u64,
        hosts_inspected: hosts.len() as u64 - count(HostVerdict::NotInspected),
        hosts_normal: count(HostVerdict::Normal),
        hosts_abnormal: count(HostVerdict::Abnormal),
        hosts_unknown: count(HostVerdict::Unknown),
        hosts_not_reached: count(HostVerdict::NotInspected),
        items_total: items.clone().count() as u64,
        items_abnormal: items
            .clone()
            .filter(|i| i.verdict == ItemVerdict::Abnormal)
            .count() as u64,
        items_unknown: items.filter(|i| i.verdict == ItemVerdict::Unknown).count() as u64,
    }
}

fn metric_item_id(name: &str, labels: &BTreeMap<String, String>) -> String {
    if labels.is_empty() {
        return name.to_owned();
    }
    let parts: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
    format!("{name}{{{}}}", parts.join(","))
}

fn metric_title(name: &str, labels: &BTreeMap<String, String>) -> String {
    let base = match name {
        "cpu.usage_pct" => "CPU usage %",
        "memory.used_pct" => "Memory used %",
        "fs.used_pct" => "Filesystem used %",
        "fs.inodes_used_pct" => "Filesystem inodes used %",
        other => other,
    };
    match labels.get("mount") {
        Some(m) => format!("{base} ({m})"),
        None => base.to_owned(),
    }
}

fn ms(at: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(at).single().unwrap_or_default()
}

fn store_refused(e: StoreError) -> TaskError {
    match e {
        StoreError::Sqlite { error, .. } => TaskError::Sqlite(error),
        other => TaskError::Refused(other.to_string()),
    }
}

/// Why a run could not be carried out.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Write(#[from] WriteError),
    #[error("{0}")]
    Bad(String),
}

impl RunError {
    /// Storage was unavailable (disk full, busy): trying later can work.
    fn is_retryable(&self) -> bool {
        match self {
            RunError::Write(WriteError::Unavailable(_) | WriteError::Closed) => true,
            RunError::Store(StoreError::Sqlite { error, .. }) => matches!(
                error.sqlite_error_code(),
                Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
            ),
            _ => false,
        }
    }
}

trait InstrumentRun: Sized + std::future::Future {
    fn instrument_run(self, run_id: i64) -> tracing::instrument::Instrumented<Self> {
        tracing::Instrument::instrument(self, tracing::info_span!("inspection", run = run_id))
    }
}
impl<F: std::future::Future> InstrumentRun for F {}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(verdict: ItemVerdict) -> Item {
        Item {
            item_id: "x".into(),
            title: "x".into(),
            value: String::new(),
            threshold: String::new(),
            verdict,
            measured_at: ms(0),
            detail: String::new(),
            incident_id: None,
        }
    }

    #[test]
    fn host_verdict_never_calls_unknown_normal() {
        assert_eq!(host_verdict(&[]), HostVerdict::Unknown);
        assert_eq!(
            host_verdict(&[item(ItemVerdict::Normal), item(ItemVerdict::Unknown)]),
            HostVerdict::Unknown
        );
        assert_eq!(
            host_verdict(&[item(ItemVerdict::Unknown), item(ItemVerdict::Abnormal)]),
            HostVerdict::Abnormal
        );
        assert_eq!(
            host_verdict(&[item(ItemVerdict::Normal)]),
            HostVerdict::Normal
        );
    }

    #[test]
    fn last_full_selfcheck_ignores_partial_and_incomplete_runs() {
        let dir = tempfile::tempdir().unwrap();
        let conn = crate::store::open(&dir.path().join("x.db")).unwrap();
        let run = |kind: &str, full: bool, not_reached: i64, state: &str, at: i64| {
            conn.execute(
                "INSERT INTO inspection_runs (kind, plan, full_fleet, scope, request_id, requested_by,
                     requested_at, state, filed_at, hosts_not_reached)
                 VALUES (?1, 'p', ?2, '{}', ?3, 't', 0, ?4, ?5, ?6)",
                params![kind, full, Uuid::new_v4().to_string(), state, at, not_reached],
            )
            .unwrap();
        };
        run("selfcheck", false, 0, "filed", 10); // partial
        run("selfcheck", true, 3, "filed", 20); // full scope, hosts missed
        run("inspection", true, 0, "filed", 30); // not a self-check
        run("selfcheck", true, 0, "failed", 40);
        assert_eq!(last_full_selfcheck(&conn).unwrap(), None);
        run("selfcheck", true, 0, "filed", 50);
        assert_eq!(last_full_selfcheck(&conn).unwrap(), Some(50));
    }

    #[test]
    fn metric_items_are_named_by_series() {
        let labels = BTreeMap::from([("mount".to_owned(), "/".to_owned())]);
        assert_eq!(
            metric_item_id("fs.used_pct", &labels),
            r#"fs.used_pct{mount="/"}"#
        );
        assert_eq!(
            metric_title("fs.used_pct", &labels),
            "Filesystem used % (/)"
        );
        assert_eq!(
            metric_item_id("cpu.usage_pct", &BTreeMap::new()),
            "cpu.usage_pct"
        );
    }
}
