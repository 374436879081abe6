//! Rule evaluation as reports are committed: feeds the rules engine what the
//! writer committed, ticks it every second (for `for`/`clear_for` and agent
//! offline detection) and writes its transitions as incident updates
//! through the writer. Runs as one task owning the engine.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::Connection;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::clock::Clock;
use crate::rules::{
    Engine, HostFacts, IncidentKey, RuleSet, SPOOL_DROPPED_METRIC, Status, Transition, Value,
};
use crate::store::incidents::{Applied, Firing, IncidentUpdate};
use crate::store::writer::Committed;
use crate::store::{self, WriterHandle};

/// How often the engine is ticked without new data.
pub const TICK: Duration = Duration::from_secs(1);

/// The alerting task's inputs.
pub struct Alerting {
    pub engine: Engine,
    pub committed: mpsc::Receiver<Committed>,
    pub writer: WriterHandle,
    pub read: Arc<Mutex<Connection>>,
    pub clock: Arc<dyn Clock>,
    pub reopen_window_ms: i64,
    /// New rule sets (SIGHUP, `xunjian rules reload`), already validated.
    pub reload: mpsc::Receiver<RuleSet>,
    pub shutdown: CancellationToken,
}

impl Alerting {
    pub async fn run(mut self) {
        let mut last_seen: HashMap<String, i64> = HashMap::new();
        for (facts, seen) in load_hosts(&self.read, None).await {
            if let Some(seen) = seen {
                last_seen.insert(facts.agent_id.clone(), seen);
            }
            self.engine.set_host(facts);
        }
        let mut known: HashMap<String, HostFacts> = HashMap::new();
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let transitions = tokio::select! {
                _ = self.shutdown.cancelled() => break,
                c = self.committed.recv() => {
                    let Some(c) = c else { break };
                    let agent = c.agent_id.to_string();
                    last_seen.insert(agent.clone(), self.clock.now_ms());
                    // Facts are loaded once per agent; the inventory that
                    // changes them arrives rarely (refreshed on restart).
                    if !known.contains_key(&agent) {
                        let facts = load_hosts(&self.read, Some(c.agent_id)).await.into_iter().next().map(|(f, _)| f);
                        let facts = facts.unwrap_or_else(|| HostFacts { agent_id: agent.clone(), ..HostFacts::default() });
                        self.engine.set_host(facts.clone());
                        known.insert(agent.clone(), facts);
                    }
                    let host = &known[&agent];
                    let mut out = Vec::new();
                    for (name, labels, value, at) in &c.metrics {
                        out.extend(self.engine.observe_metric(host, name, labels, *value, *at));
                    }
                    for (id, status, value) in &c.checks {
                        out.extend(self.engine.observe_check(host, id, Status::from_text(status), value, c.at_ms));
                    }
                    out.extend(self.engine.observe_metric(
                        host,
                        SPOOL_DROPPED_METRIC,
                        &Default::default(),
                        c.spool_dropped_total as f64,
                        c.at_ms,
                    ));
                    out
                }
                _ = tick.tick() => {
                    let now = self.clock.now_ms();
                    self.engine.tick(now, &|agent: &str| last_seen.get(agent).copied())
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
            if transitions.is_empty() {
                continue;
            }
            let updates: Vec<IncidentUpdate> =
                transitions.into_iter().filter_map(to_update).collect();
            match self.writer.incidents(updates, self.reopen_window_ms).await {
                Ok(applied) => {
                    for a in applied {
                        match a {
                            Applied::Opened(id) => tracing::warn!(incident = id, "incident opened"),
                            Applied::Reopened(id) => {
                                tracing::warn!(incident = id, "incident reopened")
                            }
                            Applied::Resolved(id) => {
                                tracing::info!(incident = id, "incident resolved automatically")
                            }
                            Applied::Updated(_) | Applied::Nothing => {}
                        }
                    }
                }
                Err(e) => tracing::error!(error = %e, "cannot record incident changes"),
            }
        }
        tracing::debug!("alerting stopped");
    }
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

fn to_update(t: Transition) -> Option<IncidentUpdate> {
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
            IncidentUpdate::Firing(Firing {
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

/// Host facts (and last-seen times) from the agents table: all agents, or one.
async fn load_hosts(
    read: &Arc<Mutex<Connection>>,
    one: Option<Uuid>,
) -> Vec<(HostFacts, Option<i64>)> {
    let read = read.clone();
    let result = tokio::task::spawn_blocking(move || {
        let conn = read.lock().unwrap_or_else(|e| e.into_inner());
        store::host_facts(&conn, one)
    })
    .await;
    match result {
        Ok(Ok(rows)) => rows
            .into_iter()
            .map(|row| {
                (
                    HostFacts {
                        agent_id: row.agent_id,
                        hostname: row.hostname,
                        os_name: row.os_name,
                        ..HostFacts::default()
                    },
                    row.last_seen_at,
                )
            })
            .collect(),
        Ok(Err(e)) => {
            tracing::error!(error = %e, "cannot read host facts for the rules");
            Vec::new()
        }
        Err(_) => Vec::new(),
    }
}
