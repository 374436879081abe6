//! Rule evaluation as reports are committed: feeds the rules engine what the
//! writer committed, ticks it every second (for `for`/`clear_for` and agent
//! offline detection) and hands its transitions, as incident updates, to a
//! recorder task that writes them (and SLA clock events) through the writer
//! and announces them.
//!
//! The split is what lets the writer wait for the rules: the writer blocks
//! while the rules' queue is full, so the task taking reports from that
//! queue must never wait on the writer. The recorder's queue is therefore
//! unbounded; it holds incident changes, not reports, and the recorder
//! takes all that is queued (up to 1,024 reports' worth) in one writer job,
//! so it keeps up however many reports touch open incidents.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::Connection;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;
use uuid::Uuid;

use chrono::{DateTime, Utc};

use crate::clock::Clock;
use crate::notify::{Notification, NotificationKind, Notifier};
use crate::rules::{
    Engine, HostFacts, IncidentKey, RuleSet, SPOOL_DROPPED_METRIC, Status, Transition, Value,
};
use crate::sla::{Severity as SlaSeverity, SlaClock, SlaEvent, SlaPolicy};
use crate::store::incidents::{Applied, Firing, HistoryEntry, IncidentUpdate};
use crate::store::writer::Committed;
use crate::store::{self, Silence, WriterHandle};

/// How often the engine is ticked without new data.
pub const TICK: Duration = Duration::from_secs(1);
/// How often hosts' labels and groups are re-read.
pub const FACTS_REFRESH: Duration = Duration::from_secs(60);
/// How often open incidents' SLA clocks are advanced (pre-breach, breach,
/// escalation are recorded at most this late).
pub const SLA_TICK: Duration = Duration::from_secs(10);

/// The alerting task's inputs.
pub struct Alerting {
    pub engine: Engine,
    pub committed: mpsc::Receiver<Committed>,
    pub writer: WriterHandle,
    pub read: Arc<Mutex<Connection>>,
    /// The hosts as stored before ingest started ([`read_hosts`]): their
    /// drop counts are the spool-drop rule's baselines.
    pub hosts: Vec<KnownHost>,
    pub clock: Arc<dyn Clock>,
    pub reopen_window_ms: i64,
    pub sla: SlaPolicy,
    /// Current and upcoming silences, refreshed every [`SLA_TICK`].
    pub silences: Vec<Silence>,
    /// Where incidents are announced; `None` without `[notify]` targets.
    pub notifier: Option<Notifier>,
    /// New rule sets (SIGHUP, `xunjian rules reload`), already validated.
    pub reload: mpsc::Receiver<RuleSet>,
    pub shutdown: CancellationToken,
}

impl Alerting {
    pub async fn run(mut self) {
        let mut last_seen: HashMap<String, i64> = HashMap::new();
        let mut known: HashMap<String, HostFacts> = HashMap::new();
        let now = self.clock.now_ms();
        for KnownHost {
            facts,
            last_seen_at: seen,
            spool_dropped_total: dropped,
        } in std::mem::take(&mut self.hosts)
        {
            if let Some(seen) = seen {
                last_seen.insert(facts.agent_id.clone(), seen);
            }
            self.engine.set_host(facts.clone());
            // The spool-drop rule compares each count with the last one it
            // saw. The stored count, from before this start, is that: else
            // drops made while the collector was down (or a report refused
            // right after it came back) would only set the baseline.
            let baseline = self.engine.observe_metric(
                &facts,
                SPOOL_DROPPED_METRIC,
                &Default::default(),
                dropped as f64,
                now,
            );
            debug_assert!(baseline.is_empty(), "a first count is only a baseline");
            known.insert(facts.agent_id.clone(), facts);
        }
        self.silences = load_silences(&self.read, self.clock.now_ms()).await;
        // Labels and groups are set by operators at any time.
        let mut facts_tick = tokio::time::interval(FACTS_REFRESH);
        facts_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut silences_tick = tokio::time::interval(SLA_TICK);
        silences_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let (to_recorder, updates) = mpsc::unbounded_channel();
        let recorder = Recorder {
            writer: self.writer.clone(),
            read: self.read.clone(),
            clock: self.clock.clone(),
            reopen_window_ms: self.reopen_window_ms,
            notifier: self.notifier.take(),
        };
        let recorder = tokio::spawn(recorder.run(updates, SLA_TICK).in_current_span());
        loop {
            let transitions = tokio::select! {
                _ = self.shutdown.cancelled() => break,
                c = self.committed.recv() => {
                    let Some(c) = c else { break };
                    self.evaluate(c, &mut last_seen, &mut known).await
                }
                _ = tick.tick() => {
                    let now = self.clock.now_ms();
                    self.engine.tick(now, &|agent: &str| last_seen.get(agent).copied())
                }
                _ = facts_tick.tick() => {
                    for KnownHost { facts, .. } in load_hosts(&self.read, None).await {
                        self.engine.set_host(facts.clone());
                        known.insert(facts.agent_id.clone(), facts);
                    }
                    continue;
                }
                _ = silences_tick.tick() => {
                    self.silences = load_silences(&self.read, self.clock.now_ms()).await;
                    continue;
                }
                Some(rules) = self.reload.recv() => {
                    let count = rules.len();
                    let now = self.clock.now_ms();
                    // Incidents of rules that were removed or changed cannot
                    // recover by themselves any more: they are resolved, saying why.
                    let dropped = self.engine.replace_rules(rules);
                    tracing::info!(rules = count, closed = dropped.len(), "rules reloaded");
                    dropped
                        .into_iter()
                        .map(|key| Transition::Resolved {
                            key,
                            at_ms: now,
                            value: Value::Text("rule removed or changed by a reload".into()),
                            flapping: false,
                        })
                        .collect()
                }
            };
            self.hand_over(transitions, &known, &to_recorder);
        }
        // The writer may be waiting for room in our queue while the
        // recorder waits for the writer: closing it lets the writer go on.
        // What is already queued was acknowledged: it is still evaluated.
        self.committed.close();
        while let Some(c) = self.committed.recv().await {
            let transitions = self.evaluate(c, &mut last_seen, &mut known).await;
            self.hand_over(transitions, &known, &to_recorder);
        }
        drop(to_recorder);
        // The recorder writes what is queued, then stops.
        let _ = recorder.await;
        tracing::debug!("alerting stopped");
    }

    /// Feeds one committed report to the engine.
    async fn evaluate(
        &mut self,
        c: Committed,
        last_seen: &mut HashMap<String, i64>,
        known: &mut HashMap<String, HostFacts>,
    ) -> Vec<Transition> {
        let agent = c.agent_id.to_string();
        last_seen.insert(agent.clone(), self.clock.now_ms());
        // Facts are loaded once per agent; the inventory that changes them
        // arrives rarely (refreshed on restart).
        if !known.contains_key(&agent) {
            let facts = load_hosts(&self.read, Some(c.agent_id))
                .await
                .into_iter()
                .next()
                .map(|host| host.facts);
            let facts = facts.unwrap_or_else(|| HostFacts {
                agent_id: agent.clone(),
                ..HostFacts::default()
            });
            self.engine.set_host(facts.clone());
            known.insert(agent.clone(), facts);
        }
        let host = &known[&agent];
        let mut out = self.engine.observe_metrics(
            host,
            c.metrics
                .iter()
                .map(|(name, labels, value, at)| (name.as_str(), labels.as_slice(), *value, *at)),
        );
        for (id, status, value) in &c.checks {
            out.extend(self.engine.observe_check(
                host,
                id,
                Status::from_text(status),
                value,
                c.at_ms,
            ));
        }
        out.extend(self.engine.observe_metric(
            host,
            SPOOL_DROPPED_METRIC,
            &Default::default(),
            c.spool_dropped_total as f64,
            c.at_ms,
        ));
        out.extend(self.engine.observe_metric(
            host,
            crate::store::writer::SERIES_REFUSED_METRIC,
            &Default::default(),
            c.series_refused as f64,
            c.at_ms,
        ));
        out
    }

    /// Turns transitions into incident updates for the recorder.
    fn hand_over(
        &self,
        transitions: Vec<Transition>,
        known: &HashMap<String, HostFacts>,
        to_recorder: &mpsc::UnboundedSender<Vec<IncidentUpdate>>,
    ) {
        if transitions.is_empty() {
            return;
        }
        let groups_of = |agent: &str| {
            known
                .get(agent)
                .map(|f| f.groups.clone())
                .unwrap_or_default()
        };
        let updates: Vec<IncidentUpdate> = transitions
            .into_iter()
            .filter_map(|t| to_update(t, &self.sla, &self.silences, &groups_of))
            .collect();
        // Fails only once the recorder has stopped (never before us).
        let _ = to_recorder.send(updates);
    }
}

/// Queued batches of incident changes the recorder writes in one job, at most.
const RECORD_BATCHES: usize = 1024;

/// Writes incident changes and SLA clock events through the writer, in the
/// order they happened, and announces them. One task, so an SLA step never
/// overtakes a transition queued before it.
struct Recorder {
    writer: WriterHandle,
    read: Arc<Mutex<Connection>>,
    clock: Arc<dyn Clock>,
    reopen_window_ms: i64,
    notifier: Option<Notifier>,
}

impl Recorder {
    /// Runs until `updates` closes (the alerting loop stopped), having
    /// written everything queued before; advances SLA clocks every
    /// `sla_every`.
    async fn run(
        self,
        mut updates: mpsc::UnboundedReceiver<Vec<IncidentUpdate>>,
        sla_every: Duration,
    ) {
        let mut sla_tick = tokio::time::interval(sla_every);
        sla_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut batches = Vec::new();
        // Not `biased` toward changes: while incidents are open every
        // report of their hosts queues one, so the queue may never be
        // empty and SLA steps would never run.
        loop {
            tokio::select! {
                n = updates.recv_many(&mut batches, RECORD_BATCHES) => {
                    if n == 0 {
                        break;
                    }
                    // One writer job for everything queued: one job per
                    // report would fall behind while incidents are open.
                    let updates = batches.drain(..).flatten().collect();
                    self.record(updates).await;
                }
                _ = sla_tick.tick() => {
                    // What is queued now is written first: an SLA step
                    // reads the incidents and must not act on one whose
                    // change is still queued. Later changes come after it.
                    let mut queued = updates.len();
                    while queued > 0 {
                        let limit = queued.min(RECORD_BATCHES);
                        let n = updates.recv_many(&mut batches, limit).await;
                        if n == 0 {
                            break;
                        }
                        queued = queued.saturating_sub(n);
                        let updates = batches.drain(..).flatten().collect();
                        self.record(updates).await;
                    }
                    self.advance_sla().await;
                }
            }
        }
    }

    async fn record(&self, updates: Vec<IncidentUpdate>) {
        match self.writer.incidents(updates, self.reopen_window_ms).await {
            Ok(applied) => {
                let mut notices = Vec::new();
                for a in applied {
                    match a {
                        Applied::Opened(id) | Applied::Reopened(id) => {
                            tracing::warn!(incident = id, "incident opened");
                            notices.push((id, NotificationKind::Opened));
                        }
                        Applied::Resolved(id) => {
                            tracing::info!(incident = id, "incident resolved automatically");
                            notices.push((id, NotificationKind::Resolved));
                        }
                        Applied::Updated(_) | Applied::Nothing => {}
                    }
                }
                self.announce(notices).await;
            }
            Err(e) => tracing::error!(error = %e, "cannot record incident changes"),
        }
    }

    /// Advances every open incident's SLA clock and records what happened.
    async fn advance_sla(&self) {
        let read = self.read.clone();
        let pending = tokio::task::spawn_blocking(move || {
            let conn = read.lock().unwrap_or_else(|e| e.into_inner());
            crate::store::incidents::sla_pending(&conn)
        })
        .await;
        let Ok(Ok(pending)) = pending else {
            tracing::warn!("cannot read open incidents for their SLA clocks");
            return;
        };
        let now = self.clock.now_ms();
        let updates: Vec<IncidentUpdate> = pending
            .into_iter()
            .filter_map(|p| {
                sla_step(&p.clock, now, p.acknowledged_at, p.resolved_at).map(|(clock, events)| {
                    IncidentUpdate::Sla {
                        incident_id: p.incident_id,
                        clock,
                        events,
                    }
                })
            })
            .collect();
        if updates.is_empty() {
            return;
        }
        let mut notices = Vec::new();
        for u in &updates {
            if let IncidentUpdate::Sla {
                incident_id,
                events,
                ..
            } = u
            {
                for (_, action, detail) in events {
                    tracing::warn!(incident = incident_id, %action, %detail, "SLA");
                    match action.as_str() {
                        "sla.pre_breach" => {
                            notices.push((*incident_id, NotificationKind::PreBreach))
                        }
                        "sla.breach" => notices.push((*incident_id, NotificationKind::Breach)),
                        _ => {}
                    }
                }
            }
        }
        match self.writer.incidents(updates, self.reopen_window_ms).await {
            Ok(_) => self.announce(notices).await,
            Err(e) => tracing::error!(error = %e, "cannot record SLA events"),
        }
    }

    /// Hands notifications to the notifier (never waits on delivery);
    /// suppressed incidents notify nobody.
    async fn announce(&self, notices: Vec<(i64, NotificationKind)>) {
        let Some(notifier) = &self.notifier else {
            return;
        };
        if notices.is_empty() {
            return;
        }
        let read = self.read.clone();
        let now = time(self.clock.now_ms());
        let rows = tokio::task::spawn_blocking(move || {
            let conn = read.lock().unwrap_or_else(|e| e.into_inner());
            notices
                .into_iter()
                .filter_map(|(id, kind)| {
                    store::incident_for_notice(&conn, id)
                        .ok()
                        .flatten()
                        .map(|r| (id, kind, r))
                })
                .collect::<Vec<_>>()
        })
        .await
        .unwrap_or_default();
        for (id, kind, n) in rows {
            if n.suppressed {
                continue;
            }
            notifier.notify(Notification {
                kind,
                incident_id: id,
                severity: n.severity,
                host: n.hostname,
                title: n.title,
                value: n.last_value,
                threshold: n.threshold,
                at: now,
            });
        }
    }
}

async fn load_silences(read: &Arc<Mutex<Connection>>, now_ms: i64) -> Vec<Silence> {
    let read = read.clone();
    let result = tokio::task::spawn_blocking(move || {
        let conn = read.lock().unwrap_or_else(|e| e.into_inner());
        store::active_silences(&conn, now_ms)
    })
    .await;
    match result {
        Ok(Ok(s)) => s,
        _ => {
            tracing::warn!("cannot read silences; none applied until the next refresh");
            Vec::new()
        }
    }
}

fn time(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

/// A new incident's SLA clock, JSON.
pub fn new_clock(severity: &str, opened_at_ms: i64, policy: &SlaPolicy) -> String {
    // Stored severities are always valid; IV is the safe reading otherwise.
    let severity = SlaSeverity::parse(severity).unwrap_or(SlaSeverity::IV);
    serde_json::to_string(&SlaClock::new(severity, time(opened_at_ms), policy)).unwrap_or_default()
}

/// Advances a stored clock to `now`: the new clock and the events to record
/// (pre-breach warning, breach, escalation — each once), or `None` when
/// nothing happened or the clock is unreadable.
pub fn sla_step(
    clock_json: &str,
    now_ms: i64,
    acknowledged_ms: Option<i64>,
    resolved_ms: Option<i64>,
) -> Option<(String, Vec<HistoryEntry>)> {
    let mut clock: SlaClock = serde_json::from_str(clock_json).ok()?;
    let events = clock.tick(
        time(now_ms),
        acknowledged_ms.map(time),
        None,
        resolved_ms.map(time),
    );
    if events.is_empty() {
        return None;
    }
    let rows = events
        .into_iter()
        .map(|e| {
            let target = e.target();
            let due = clock
                .due(target)
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
            match e {
                SlaEvent::PreBreachWarning { at, .. } => (
                    at.timestamp_millis(),
                    "sla.pre_breach".to_owned(),
                    format!("{} target due {due}", target.as_str()),
                ),
                SlaEvent::Breached { at, .. } => (
                    at.timestamp_millis(),
                    "sla.breach".to_owned(),
                    format!("{} target missed (due {due})", target.as_str()),
                ),
                SlaEvent::Escalate { to_level, at, .. } => (
                    at.timestamp_millis(),
                    "sla.escalate".to_owned(),
                    format!(
                        "{} target breached: escalated to level {to_level}",
                        target.as_str()
                    ),
                ),
            }
        })
        .collect();
    Some((serde_json::to_string(&clock).ok()?, rows))
}

/// The stored key of an incident: rule, agent and label set.
pub fn key_text(key: &IncidentKey) -> String {
    format!("{}|{}|{}", key.rule_id, key.agent_id, key.labels_json())
}

fn value_parts(v: &Value) -> (String, Option<f64>) {
    match v {
        Value::Number(n) => (format!("{n:.2}"), Some(*n)),
        Value::Text(t) => (t.clone(), None),
    }
}

fn to_update(
    t: Transition,
    sla: &SlaPolicy,
    silences: &[Silence],
    groups_of: &dyn Fn(&str) -> Vec<String>,
) -> Option<IncidentUpdate> {
    Some(match t {
        Transition::Firing {
            key,
            rule_id,
            severity,
            title,
            description,
            value,
            threshold,
            at_ms,
            flapping,
        } => {
            let agent_id = Uuid::parse_str(&key.agent_id).ok()?;
            let (value, numeric) = value_parts(&value);
            let suppressed_by = silences
                .iter()
                .find(|s| s.matches(&key.agent_id, &groups_of(&key.agent_id), &rule_id, at_ms))
                .map(|s| {
                    format!(
                        "silence {}: {} (until {})",
                        s.silence_id,
                        s.reason,
                        store::fmt_time(s.ends_at)
                    )
                });
            IncidentUpdate::Firing(Firing {
                suppressed_by,
                sla_clock: new_clock(severity.as_str(), at_ms, sla),
                rule_id,
                agent_id,
                key: key_text(&key),
                severity: severity.as_str().to_owned(),
                title,
                description: description.unwrap_or_default(),
                value,
                numeric,
                threshold,
                at_ms,
                flapping,
            })
        }
        Transition::StillFiring {
            key, value, at_ms, ..
        } => {
            let (value, numeric) = value_parts(&value);
            IncidentUpdate::StillFiring {
                key: key_text(&key),
                value,
                numeric,
                at_ms,
            }
        }
        Transition::Resolved {
            key, at_ms, value, ..
        } => IncidentUpdate::Resolved {
            key: key_text(&key),
            value: value_parts(&value).0,
            at_ms,
        },
    })
}

/// A host as the rules learn it from the agents table.
pub struct KnownHost {
    pub facts: HostFacts,
    pub last_seen_at: Option<i64>,
    /// The agent's spool drop count as last stored.
    pub spool_dropped_total: i64,
}

/// Every host (or one) from the agents table. The collector reads them
/// once before ingest starts ([`Alerting::hosts`]): read later, a stored
/// drop count could already include a report still waiting in the rules'
/// queue, and would hide its new drops.
pub fn read_hosts(conn: &Connection, one: Option<Uuid>) -> Vec<KnownHost> {
    match store::host_facts(conn, one) {
        Ok(rows) => rows
            .into_iter()
            .map(|row| KnownHost {
                facts: HostFacts {
                    agent_id: row.agent_id,
                    hostname: row.hostname,
                    os_name: row.os_name,
                    labels: row.labels,
                    groups: row.groups,
                },
                last_seen_at: row.last_seen_at,
                spool_dropped_total: row.spool_dropped_total,
            })
            .collect(),
        Err(e) => {
            tracing::error!(error = %e, "cannot read host facts for the rules");
            Vec::new()
        }
    }
}

/// [`read_hosts`] on the alerting task's read connection, off the runtime.
async fn load_hosts(read: &Arc<Mutex<Connection>>, one: Option<Uuid>) -> Vec<KnownHost> {
    let read = read.clone();
    tokio::task::spawn_blocking(move || {
        let conn = read.lock().unwrap_or_else(|e| e.into_inner());
        read_hosts(&conn, one)
    })
    .await
    .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use xunjian_proto::Report;

    const MIN: i64 = 60_000;

    /// A report whose one sample breaches a `fs.used_pct >= 85` rule under a
    /// mount of its own, so each report opens an incident.
    fn breaching(seq: u64) -> Report {
        store::fs_report(seq, &format!("/m{seq}"), 99.0)
    }

    /// A writer on a fresh database whose committed reports go to a rules'
    /// queue of `capacity` places (the returned receiver).
    fn writer_feeding_rules(
        capacity: usize,
    ) -> (
        tempfile::TempDir,
        std::path::PathBuf,
        WriterHandle,
        store::Writer,
        mpsc::Receiver<Committed>,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.db");
        let (tx, committed) = mpsc::channel(capacity);
        let (writer, thread) = store::Writer::spawn(&path, Some(tx)).unwrap();
        (dir, path, writer, thread, committed)
    }

    /// Starts the alerting task on the database at `path` with `rules`
    /// (TOML); cancel the token to stop it.
    fn start_alerting(
        path: &std::path::Path,
        writer: &WriterHandle,
        committed: mpsc::Receiver<Committed>,
        rules: &str,
    ) -> (tokio::task::JoinHandle<()>, CancellationToken) {
        let shutdown = CancellationToken::new();
        let read = store::open_read_only(path).unwrap();
        let alerting = Alerting {
            engine: Engine::new(crate::rules::parse_rules("test", rules).unwrap()),
            committed,
            writer: writer.clone(),
            hosts: read_hosts(&read, None),
            read: Arc::new(Mutex::new(read)),
            clock: Arc::new(crate::clock::SystemClock),
            reopen_window_ms: 0,
            sla: SlaPolicy::default(),
            silences: Vec::new(),
            notifier: None,
            reload: mpsc::channel(1).1,
            shutdown: shutdown.clone(),
        };
        (tokio::spawn(alerting.run()), shutdown)
    }

    #[tokio::test]
    async fn drops_counted_before_a_start_are_the_baseline_and_new_ones_open_an_incident() {
        let (_dir, path, writer, thread, committed) = writer_feeding_rules(16);
        let (same, more) = (
            store::enrolled_agent(&writer, &path).await,
            store::enrolled_agent(&writer, &path).await,
        );
        // What both agents had reported before this collector started.
        store::open(&path)
            .unwrap()
            .execute("UPDATE agents SET spool_dropped_reports_total = 3", [])
            .unwrap();
        let (alerting, shutdown) = start_alerting(
            &path,
            &writer,
            committed,
            r#"
[[rule]]
id = "agent.spool_dropping"
title = "{host} dropped {value}"
severity = "III"
hosts = "all"
kind = "spool_dropping"
"#,
        );
        // The first reports this collector sees: one agent's count did not
        // change, the other's did (drops while the collector was down).
        for (agent, dropped) in [(same, 3), (more, 4)] {
            let report = Report {
                spool: Some(xunjian_proto::SpoolStatus {
                    dropped_reports_total: dropped,
                    ..Default::default()
                }),
                ..breaching(1)
            };
            let ack = writer.store_report(agent, report, 1, 5).await;
            assert_eq!(ack.await.unwrap(), Ok(store::Stored { duplicate: false }));
        }
        let conn = store::open_read_only(&path).unwrap();
        let opened = |agent: Uuid| -> i64 {
            conn.query_row(
                "SELECT count(*) FROM incidents WHERE rule_id = 'agent.spool_dropping' AND agent_id = ?1",
                [agent.to_string()],
                |r| r.get(0),
            )
            .unwrap()
        };
        // Evaluated in order: once the second agent's incident is there,
        // the first agent's report has been evaluated too.
        tokio::time::timeout(Duration::from_secs(60), async {
            while opened(more) == 0 {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await
        .expect("the incident for drops made before the start");
        assert_eq!((opened(same), opened(more)), (0, 1));
        shutdown.cancel();
        alerting.await.unwrap();
        drop(writer);
        thread.join();
    }

    #[tokio::test]
    async fn with_a_full_rules_queue_every_report_is_evaluated_and_nothing_deadlocks() {
        // A queue of one place: the writer waits for the rules on nearly
        // every report while the rules' incidents go through the writer.
        let (_dir, path, writer, thread, committed) = writer_feeding_rules(1);
        let agent = store::enrolled_agent(&writer, &path).await;
        let (alerting, shutdown) = start_alerting(
            &path,
            &writer,
            committed,
            r#"
[[rule]]
id = "fs"
title = "{labels.mount} on {host} at {value}%"
severity = "III"
hosts = "all"
metric = "fs.used_pct"
op = ">="
threshold = 85
recover_threshold = 80
"#,
        );
        const REPORTS: u64 = 200;
        let acks = async {
            let mut pending = Vec::new();
            for seq in 1..=REPORTS {
                pending.push(writer.store_report(agent, breaching(seq), 1, 5).await);
            }
            for ack in pending {
                assert_eq!(ack.await.unwrap(), Ok(store::Stored { duplicate: false }));
            }
        };
        // Generous: this guards against a deadlock, not a speed.
        tokio::time::timeout(Duration::from_secs(120), acks)
            .await
            .expect("the writer and the rules deadlocked");
        let conn = store::open_read_only(&path).unwrap();
        let opened = || -> i64 {
            conn.query_row("SELECT count(*) FROM incidents", [], |r| r.get(0))
                .unwrap()
        };
        // Every report reached the rules; their incidents are written by
        // the recorder, which drains its queue before alerting stops.
        shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(120), alerting)
            .await
            .expect("alerting stopped")
            .unwrap();
        assert_eq!(opened(), REPORTS as i64);
        drop(writer);
        thread.join();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sla_steps_run_while_changes_keep_arriving() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.db");
        let (writer, thread) = store::Writer::spawn(&path, None).unwrap();
        let agent = store::enrolled_agent(&writer, &path).await;
        // Open 26 minutes ago at severity II: the response pre-breach
        // warning (80 % of 30 minutes) is due at the first SLA step.
        let now = chrono::Utc::now().timestamp_millis();
        let opened = now - 26 * 60_000;
        let firing = Firing {
            sla_clock: new_clock("II", opened, &SlaPolicy::default()),
            ..crate::store::incidents::test_firing(agent, opened, 99.0)
        };
        let key = firing.key.clone();
        writer
            .incidents(vec![IncidentUpdate::Firing(firing)], 0)
            .await
            .unwrap();
        let recorder = Recorder {
            writer: writer.clone(),
            read: Arc::new(Mutex::new(store::open_read_only(&path).unwrap())),
            clock: Arc::new(crate::clock::SystemClock),
            reopen_window_ms: 0,
            notifier: None,
        };
        // A host still in breach: changes already queued when the recorder
        // starts, and more arriving faster than it writes them.
        let (to_recorder, updates) = mpsc::unbounded_channel();
        let still = move || {
            vec![IncidentUpdate::StillFiring {
                key: key.clone(),
                value: "99".into(),
                numeric: Some(99.0),
                at_ms: chrono::Utc::now().timestamp_millis(),
            }]
        };
        for _ in 0..100 {
            to_recorder.send(still()).unwrap();
        }
        let recorder = tokio::spawn(recorder.run(updates, Duration::from_millis(20)));
        let producing = CancellationToken::new();
        // A thread: a runtime timer cannot wake it more often than every
        // millisecond, slower than the recorder empties the queue here.
        let producer = std::thread::spawn({
            let producing = producing.clone();
            move || {
                while !producing.is_cancelled() {
                    let _ = to_recorder.send(still());
                    std::thread::sleep(Duration::from_micros(50));
                }
            }
        });
        let conn = store::open_read_only(&path).unwrap();
        let warned = || -> i64 {
            conn.query_row(
                "SELECT count(*) FROM incident_events WHERE action = 'sla.pre_breach'",
                [],
                |r| r.get(0),
            )
            .unwrap()
        };
        tokio::time::timeout(Duration::from_secs(60), async {
            while warned() == 0 {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await
        .expect("an SLA step while changes keep arriving");
        producing.cancel();
        producer.join().unwrap();
        recorder.await.unwrap();
        assert_eq!(warned(), 1, "the warning is recorded once");
        drop(writer);
        thread.join();
    }

    #[test]
    fn sla_events_are_recorded_once_each_and_stop_when_met() {
        // Severity II on 7x24: respond 30 min, plan 2 h, resolve 24 h.
        let policy = SlaPolicy::default();
        let opened = 1_700_000_000_000;
        let clock = new_clock("II", opened, &policy);
        assert!(
            sla_step(&clock, opened + MIN, None, None).is_none(),
            "nothing due after a minute"
        );
        // 80% of the 30-minute response budget: pre-breach warning.
        let (clock, events) = sla_step(&clock, opened + 25 * MIN, None, None).unwrap();
        assert_eq!(
            events.iter().map(|e| e.1.as_str()).collect::<Vec<_>>(),
            vec!["sla.pre_breach"]
        );
        assert!(
            sla_step(&clock, opened + 26 * MIN, None, None).is_none(),
            "a warning is recorded once"
        );
        // Past 30 minutes unacknowledged: breach and escalation.
        let (clock, events) = sla_step(&clock, opened + 31 * MIN, None, None).unwrap();
        let actions: Vec<&str> = events.iter().map(|e| e.1.as_str()).collect();
        assert!(
            actions.contains(&"sla.breach") && actions.contains(&"sla.escalate"),
            "{actions:?}"
        );
        // Acknowledged and resolved in time for the other targets: no more events.
        let ack = Some(opened + 40 * MIN);
        let resolved = Some(opened + 50 * MIN);
        let later = sla_step(&clock, opened + 30 * 60 * MIN, ack, resolved);
        assert!(
            later.is_none(),
            "resolution met plan and resolve on time: {later:?}"
        );
        assert!(sla_step("not json", opened, None, None).is_none());
    }
}
