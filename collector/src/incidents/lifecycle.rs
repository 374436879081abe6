//! The incident state machine: Open → Acknowledged → Resolved → Closed, with
//! reopening inside a window after resolution. Pure functions over a
//! serialisable [`Incident`]; every operator or rules-engine action returns
//! the [`AuditEntry`] to append to the audit log, and a refused action
//! changes nothing.

use std::fmt;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::sla::Severity;

/// Actor of the rules engine's own actions, as `store::incidents` writes it.
pub const RULES_ACTOR: &str = "rules";

/// Longest reopen window a config may set.
const MAX_REOPEN_WINDOW: Duration = Duration::from_secs(30 * 86_400);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    Open,
    Acknowledged,
    Resolved,
    Closed,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Open => "open",
            State::Acknowledged => "acknowledged",
            State::Resolved => "resolved",
            State::Closed => "closed",
        }
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What was done to an incident; [`Action::as_str`] is the `action` column
/// of `incident_events` (the names `store::incidents` already writes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Open,
    Reopen,
    Acknowledge,
    Assign,
    Comment,
    ResolveAuto,
    ResolveManual,
    Close,
    Suppress,
    Unsuppress,
    /// A repeat firing; never audited (it would flood the log), but named in
    /// errors.
    Fire,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Open => "open",
            Action::Reopen => "reopen",
            Action::Acknowledge => "acknowledge",
            Action::Assign => "assign",
            Action::Comment => "comment",
            Action::ResolveAuto => "auto-resolve",
            Action::ResolveManual => "resolve",
            Action::Close => "close",
            Action::Suppress => "suppress",
            Action::Unsuppress => "unsuppress",
            Action::Fire => "fire",
        }
    }

    fn verb(self) -> &'static str {
        match self {
            Action::Open => "open",
            Action::Reopen => "reopen",
            Action::Acknowledge => "acknowledge",
            Action::Assign => "assign",
            Action::Comment => "comment on",
            Action::ResolveAuto => "automatically resolve",
            Action::ResolveManual => "manually resolve",
            Action::Close => "close",
            Action::Suppress => "suppress",
            Action::Unsuppress => "unsuppress",
            Action::Fire => "record a firing on",
        }
    }

    /// States the action is allowed from; the state machine in one table.
    fn allowed_from(self) -> &'static [State] {
        use State::*;
        match self {
            Action::Open => &[],
            Action::Reopen => &[Resolved],
            Action::Acknowledge => &[Open],
            Action::Assign | Action::ResolveAuto | Action::ResolveManual => &[Open, Acknowledged],
            Action::Close => &[Resolved],
            Action::Comment | Action::Fire => &[Open, Acknowledged, Resolved, Closed],
            Action::Suppress | Action::Unsuppress => &[Open, Acknowledged, Resolved],
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.verb())
    }
}

/// One row for the append-only history (`incident_events`: incident_id, at,
/// actor, action, detail; `target` also fits `audit_log`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    pub at: DateTime<Utc>,
    pub actor: String,
    pub action: Action,
    /// The incident id.
    pub target: i64,
    pub detail: String,
}

/// Why an action was refused. Each names the incident and the action.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LifecycleError {
    #[error("cannot {action} incident {id}: it is {state} (allowed from: {})", allowed(*action))]
    InvalidTransition {
        id: i64,
        state: State,
        action: Action,
    },
    #[error("cannot {action} incident {id}: `{field}` must not be empty")]
    Missing {
        id: i64,
        action: Action,
        field: &'static str,
    },
    #[error("cannot {action} incident {id}: {at} is before it opened at {opened_at}")]
    BeforeOpened {
        id: i64,
        action: Action,
        at: DateTime<Utc>,
        opened_at: DateTime<Utc>,
    },
    #[error("cannot {action} incident {id}: it is already {}", if *action == Action::Suppress { "suppressed" } else { "not suppressed" })]
    Unchanged { id: i64, action: Action },
    #[error(
        "cannot {action} incident {id}: the firing is for rule {rule_id:?}, agent {agent_id:?}, key {key:?}, not this incident's"
    )]
    OtherIncident {
        id: i64,
        action: Action,
        rule_id: String,
        agent_id: String,
        key: String,
    },
}

fn allowed(action: Action) -> String {
    let states = action.allowed_from();
    if states.is_empty() {
        return "none".into();
    }
    states
        .iter()
        .map(|s| s.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Which way a metric gets worse, so the peak is the worst value seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Worse {
    /// Usage, load, temperature.
    #[default]
    Higher,
    /// Free space, remaining life.
    Lower,
}

/// A rule firing as the rules engine reports it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Firing {
    pub rule_id: String,
    pub agent_id: String,
    /// What the rule fired on within the agent (mount point, unit, disk);
    /// empty for host-wide rules.
    pub key: String,
    pub severity: Severity,
    pub title: String,
    pub description: String,
    pub threshold: String,
    /// The value as displayed ("93.5%", "failed").
    pub value: String,
    /// The value as a number for the peak; `None` for checks without one
    /// (a failed unit); NaN counts as none.
    pub numeric: Option<f64>,
    pub worse: Worse,
    /// The rules engine's flap detection for this key.
    pub flapping: bool,
}

/// How an incident was resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Resolution {
    /// The rules engine saw the condition clear.
    Automatic,
    /// An operator resolved it, giving root cause and actions.
    Manual,
}

/// Reopen policy, the `[incidents]` section.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LifecycleConfig {
    /// A resolved incident that fires again within this window is reopened;
    /// later, a new incident is opened. "0s" never reopens.
    #[serde(default = "default_reopen_window", with = "humantime_serde")]
    pub reopen_window: Duration,
}

fn default_reopen_window() -> Duration {
    Duration::from_secs(3600)
}

impl Default for LifecycleConfig {
    fn default() -> Self {
        Self {
            reopen_window: default_reopen_window(),
        }
    }
}

/// Why a `[incidents]` section was refused; `field` is its dotted name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("field `{field}`: {reason}")]
pub struct LifecycleConfigError {
    pub field: &'static str,
    pub reason: String,
}

impl LifecycleConfig {
    pub fn validate(&self) -> Result<(), LifecycleConfigError> {
        if self.reopen_window > MAX_REOPEN_WINDOW {
            return Err(LifecycleConfigError {
                field: "incidents.reopen_window",
                reason: format!(
                    "{} is longer than 30days",
                    humantime::format_duration(self.reopen_window)
                ),
            });
        }
        Ok(())
    }
}

/// What a repeat firing did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fired {
    /// Still open: counters updated, nothing to audit.
    Occurrence,
    /// Resolved within the reopen window: back to open.
    Reopened(AuditEntry),
    /// Closed, or resolved longer ago than the window: this incident is
    /// left as it is and the caller opens a new one with [`Incident::open`].
    OpenNew,
}

/// One incident. Fields are public for storage and display; change them
/// only through the methods, which keep the state machine and the audit
/// trail consistent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Incident {
    /// `incidents.incident_id`.
    pub id: i64,
    pub rule_id: String,
    pub agent_id: String,
    pub key: String,
    pub severity: Severity,
    pub title: String,
    pub description: String,
    pub threshold: String,
    pub state: State,
    pub opened_at: DateTime<Utc>,
    /// The first acknowledgement: a reopen keeps it, because the SLA
    /// response was given.
    pub acknowledged_at: Option<DateTime<Utc>>,
    pub acknowledged_by: Option<String>,
    pub resolved_at: Option<DateTime<Utc>>,
    pub resolution: Option<Resolution>,
    pub resolved_by: Option<String>,
    pub closed_at: Option<DateTime<Utc>>,
    pub reopen_count: u32,
    /// Values as the rule displays them ("93.5%", "failed").
    pub first_value: String,
    pub last_value: String,
    /// The worst numeric value seen, by the firing's [`Worse`].
    pub peak_value: Option<f64>,
    /// The value at automatic resolution.
    pub recovery_value: Option<String>,
    pub occurrences: u64,
    pub flapping: bool,
    pub last_fired_at: DateTime<Utc>,
    pub assignee: Option<String>,
    /// 故障原因, required for manual resolution.
    pub root_cause: Option<String>,
    /// 处理过程, required for manual resolution.
    pub actions_taken: Option<String>,
    /// Silenced or in maintenance: recorded, but nobody is notified.
    pub suppressed: bool,
}

/// Free text for the audit detail, quoted so its spaces and `=` cannot be
/// mistaken for the key=value structure.
fn quoted(text: &str) -> String {
    format!("{text:?}")
}

fn fmt_value(value: Option<f64>) -> String {
    value.map_or_else(|| "none".into(), |v| v.to_string())
}

fn non_empty(text: &str) -> Option<&str> {
    Some(text.trim()).filter(|t| !t.is_empty())
}

impl Incident {
    /// Opens an incident for a first firing. `id` is the row id the store
    /// assigns; `suppressed` is whether a silence or maintenance window
    /// covers it now.
    pub fn open(
        id: i64,
        firing: &Firing,
        suppressed: bool,
        at: DateTime<Utc>,
    ) -> Result<(Incident, AuditEntry), LifecycleError> {
        let missing = |field| LifecycleError::Missing {
            id,
            action: Action::Open,
            field,
        };
        let rule_id = non_empty(&firing.rule_id).ok_or_else(|| missing("rule_id"))?;
        let agent_id = non_empty(&firing.agent_id).ok_or_else(|| missing("agent_id"))?;
        let numeric = firing.numeric.filter(|v| !v.is_nan());
        let incident = Incident {
            id,
            rule_id: rule_id.to_owned(),
            agent_id: agent_id.to_owned(),
            key: firing.key.clone(),
            severity: firing.severity,
            title: firing.title.clone(),
            description: firing.description.clone(),
            threshold: firing.threshold.clone(),
            state: State::Open,
            opened_at: at,
            acknowledged_at: None,
            acknowledged_by: None,
            resolved_at: None,
            resolution: None,
            resolved_by: None,
            closed_at: None,
            reopen_count: 0,
            first_value: firing.value.clone(),
            last_value: firing.value.clone(),
            peak_value: numeric,
            recovery_value: None,
            occurrences: 1,
            flapping: firing.flapping,
            last_fired_at: at,
            assignee: None,
            root_cause: None,
            actions_taken: None,
            suppressed,
        };
        let detail = format!(
            "rule={} agent={} key={} severity={} value={} threshold={} suppressed={} title={}",
            incident.rule_id,
            incident.agent_id,
            quoted(&incident.key),
            incident.severity,
            quoted(&firing.value),
            quoted(&firing.threshold),
            suppressed,
            quoted(&incident.title)
        );
        let entry = incident.entry(at, RULES_ACTOR.into(), Action::Open, detail);
        Ok((incident, entry))
    }

    /// Whether notifications should go out for this incident.
    pub fn notifies(&self) -> bool {
        !self.suppressed
    }

    /// Is `firing` about the same thing as this incident?
    pub fn matches(&self, firing: &Firing) -> bool {
        self.rule_id == firing.rule_id.trim()
            && self.agent_id == firing.agent_id.trim()
            && self.key == firing.key
    }

    /// Records a repeat firing of the rule. While open or acknowledged it
    /// only counts; after resolution it reopens within `reopen_window` or
    /// asks for a new incident; after closing it always asks for a new one,
    /// since a closed incident is confirmed finished.
    pub fn fire(
        &mut self,
        firing: &Firing,
        at: DateTime<Utc>,
        reopen_window: Duration,
    ) -> Result<Fired, LifecycleError> {
        self.check(Action::Fire, at)?;
        if !self.matches(firing) {
            return Err(LifecycleError::OtherIncident {
                id: self.id,
                action: Action::Fire,
                rule_id: firing.rule_id.clone(),
                agent_id: firing.agent_id.clone(),
                key: firing.key.clone(),
            });
        }
        match self.state {
            State::Open | State::Acknowledged => {
                self.record(firing, at);
                Ok(Fired::Occurrence)
            }
            State::Closed => Ok(Fired::OpenNew),
            State::Resolved => {
                let resolved_at = self.resolved_at.unwrap_or(self.opened_at);
                let window =
                    chrono::Duration::from_std(reopen_window).unwrap_or(chrono::Duration::MAX);
                let within = resolved_at
                    .checked_add_signed(window)
                    .is_none_or(|limit| at <= limit);
                if !within {
                    return Ok(Fired::OpenNew);
                }
                let previous = self.resolution;
                self.state = State::Open;
                self.reopen_count = self.reopen_count.saturating_add(1);
                // The previous resolution evidently did not hold; its
                // details stay in the audit log.
                self.resolved_at = None;
                self.resolution = None;
                self.resolved_by = None;
                self.recovery_value = None;
                self.root_cause = None;
                self.actions_taken = None;
                self.record(firing, at);
                let detail = format!(
                    "reopen_count={} resolved_at={} previous_resolution={} value={}",
                    self.reopen_count,
                    resolved_at.to_rfc3339(),
                    previous.map_or("none", |r| match r {
                        Resolution::Automatic => "automatic",
                        Resolution::Manual => "manual",
                    }),
                    quoted(&firing.value)
                );
                Ok(Fired::Reopened(self.entry(
                    at,
                    RULES_ACTOR.into(),
                    Action::Reopen,
                    detail,
                )))
            }
        }
    }

    pub fn acknowledge(
        &mut self,
        actor: &str,
        at: DateTime<Utc>,
    ) -> Result<AuditEntry, LifecycleError> {
        let actor = self.actor(Action::Acknowledge, actor)?;
        self.check(Action::Acknowledge, at)?;
        self.state = State::Acknowledged;
        let first = self.acknowledged_at.is_none();
        if first {
            self.acknowledged_at = Some(at);
            self.acknowledged_by = Some(actor.clone());
        }
        let detail = format!("first={first}");
        Ok(self.entry(at, actor, Action::Acknowledge, detail))
    }

    pub fn assign(
        &mut self,
        actor: &str,
        assignee: &str,
        at: DateTime<Utc>,
    ) -> Result<AuditEntry, LifecycleError> {
        let actor = self.actor(Action::Assign, actor)?;
        let assignee = self.required(Action::Assign, "assignee", assignee)?;
        self.check(Action::Assign, at)?;
        let detail = format!(
            "assignee={} previous={}",
            quoted(&assignee),
            self.assignee.as_deref().map_or("none".into(), quoted)
        );
        self.assignee = Some(assignee);
        Ok(self.entry(at, actor, Action::Assign, detail))
    }

    /// Comments live only in the audit log; allowed in every state, so
    /// notes can follow a closed incident.
    pub fn comment(
        &self,
        actor: &str,
        text: &str,
        at: DateTime<Utc>,
    ) -> Result<AuditEntry, LifecycleError> {
        let actor = self.actor(Action::Comment, actor)?;
        let text = self.required(Action::Comment, "text", text)?;
        self.check(Action::Comment, at)?;
        Ok(self.entry(at, actor, Action::Comment, quoted(&text)))
    }

    /// The rules engine saw the condition clear at `recovery_value` (as
    /// displayed).
    pub fn resolve_auto(
        &mut self,
        recovery_value: &str,
        at: DateTime<Utc>,
    ) -> Result<AuditEntry, LifecycleError> {
        self.check(Action::ResolveAuto, at)?;
        self.state = State::Resolved;
        self.resolved_at = Some(at);
        self.resolution = Some(Resolution::Automatic);
        self.resolved_by = Some(RULES_ACTOR.into());
        self.recovery_value = Some(recovery_value.to_owned());
        let detail = format!(
            "recovery_value={} peak_value={} occurrences={}",
            quoted(recovery_value),
            fmt_value(self.peak_value),
            self.occurrences
        );
        Ok(self.entry(at, RULES_ACTOR.into(), Action::ResolveAuto, detail))
    }

    /// An operator resolves the incident; the root cause (故障原因) and the
    /// actions taken (处理过程) are required.
    pub fn resolve_manual(
        &mut self,
        actor: &str,
        root_cause: &str,
        actions_taken: &str,
        at: DateTime<Utc>,
    ) -> Result<AuditEntry, LifecycleError> {
        let actor = self.actor(Action::ResolveManual, actor)?;
        self.check(Action::ResolveManual, at)?;
        let root_cause = self.required(Action::ResolveManual, "root_cause", root_cause)?;
        let actions_taken = self.required(Action::ResolveManual, "actions_taken", actions_taken)?;
        let detail = format!(
            "root_cause={} actions_taken={}",
            quoted(&root_cause),
            quoted(&actions_taken)
        );
        self.state = State::Resolved;
        self.resolved_at = Some(at);
        self.resolution = Some(Resolution::Manual);
        self.resolved_by = Some(actor.clone());
        self.root_cause = Some(root_cause);
        self.actions_taken = Some(actions_taken);
        Ok(self.entry(at, actor, Action::ResolveManual, detail))
    }

    pub fn close(&mut self, actor: &str, at: DateTime<Utc>) -> Result<AuditEntry, LifecycleError> {
        let actor = self.actor(Action::Close, actor)?;
        self.check(Action::Close, at)?;
        self.state = State::Closed;
        self.closed_at = Some(at);
        let detail = format!("reopen_count={}", self.reopen_count);
        Ok(self.entry(at, actor, Action::Close, detail))
    }

    /// Silences (or un-silences) notifications; the incident keeps being
    /// recorded. `reason` is e.g. the silence or maintenance window id.
    pub fn set_suppressed(
        &mut self,
        actor: &str,
        suppressed: bool,
        reason: &str,
        at: DateTime<Utc>,
    ) -> Result<AuditEntry, LifecycleError> {
        let action = if suppressed {
            Action::Suppress
        } else {
            Action::Unsuppress
        };
        let actor = self.actor(action, actor)?;
        self.check(action, at)?;
        if self.suppressed == suppressed {
            return Err(LifecycleError::Unchanged {
                id: self.id,
                action,
            });
        }
        self.suppressed = suppressed;
        Ok(self.entry(
            at,
            actor,
            action,
            format!("reason={}", quoted(reason.trim())),
        ))
    }

    fn record(&mut self, firing: &Firing, at: DateTime<Utc>) {
        self.occurrences = self.occurrences.saturating_add(1);
        self.last_fired_at = self.last_fired_at.max(at);
        self.last_value = firing.value.clone();
        self.flapping = firing.flapping;
        if let Some(v) = firing.numeric.filter(|v| !v.is_nan()) {
            self.peak_value = Some(match (self.peak_value, firing.worse) {
                (None, _) => v,
                (Some(p), Worse::Higher) => p.max(v),
                (Some(p), Worse::Lower) => p.min(v),
            });
        }
    }

    /// Refuses an action the state machine does not allow, or stamped
    /// before the incident existed (the SLA arithmetic assumes order).
    fn check(&self, action: Action, at: DateTime<Utc>) -> Result<(), LifecycleError> {
        if !action.allowed_from().contains(&self.state) {
            return Err(LifecycleError::InvalidTransition {
                id: self.id,
                state: self.state,
                action,
            });
        }
        if at < self.opened_at {
            return Err(LifecycleError::BeforeOpened {
                id: self.id,
                action,
                at,
                opened_at: self.opened_at,
            });
        }
        Ok(())
    }

    fn required(
        &self,
        action: Action,
        field: &'static str,
        text: &str,
    ) -> Result<String, LifecycleError> {
        non_empty(text)
            .map(str::to_owned)
            .ok_or(LifecycleError::Missing {
                id: self.id,
                action,
                field,
            })
    }

    fn actor(&self, action: Action, actor: &str) -> Result<String, LifecycleError> {
        self.required(action, "actor", actor)
    }

    fn entry(
        &self,
        at: DateTime<Utc>,
        actor: String,
        action: Action,
        detail: String,
    ) -> AuditEntry {
        AuditEntry {
            at,
            actor,
            action,
            target: self.id,
            detail,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn t(minute: i64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2025, 3, 4, 2, 0, 0)
            .single()
            .expect("valid test time")
            + chrono::Duration::minutes(minute)
    }

    fn firing(value: f64) -> Firing {
        Firing {
            rule_id: "disk-usage".into(),
            agent_id: "7d0c-agent".into(),
            key: "/var".into(),
            severity: Severity::II,
            title: "/var 使用率过高".into(),
            description: String::new(),
            threshold: "> 90%".into(),
            value: format!("{value}%"),
            numeric: Some(value),
            worse: Worse::Higher,
            flapping: false,
        }
    }

    fn opened() -> Incident {
        Incident::open(1, &firing(91.0), false, t(0)).unwrap().0
    }

    const HOUR: Duration = Duration::from_secs(3600);

    #[test]
    fn full_path_open_to_closed_with_audit_trail() {
        let (mut inc, open) = Incident::open(1, &firing(91.0), false, t(0)).unwrap();
        assert_eq!(inc.state, State::Open);
        assert_eq!(open.action, Action::Open);
        assert_eq!(open.actor, "rules");
        assert_eq!(open.target, 1);
        assert!(open.detail.contains("severity=II"), "{}", open.detail);

        assert_eq!(
            inc.fire(&firing(95.0), t(1), HOUR).unwrap(),
            Fired::Occurrence
        );
        assert_eq!(
            inc.fire(&firing(93.0), t(2), HOUR).unwrap(),
            Fired::Occurrence
        );
        assert_eq!(inc.occurrences, 3);
        assert_eq!(
            (
                inc.first_value.as_str(),
                inc.last_value.as_str(),
                inc.peak_value
            ),
            ("91%", "93%", Some(95.0))
        );
        assert_eq!(inc.last_fired_at, t(2));

        let ack = inc.acknowledge("zhang.san", t(5)).unwrap();
        assert_eq!(inc.state, State::Acknowledged);
        assert_eq!(inc.acknowledged_at, Some(t(5)));
        assert_eq!(
            (ack.action, ack.actor.as_str()),
            (Action::Acknowledge, "zhang.san")
        );

        let assign = inc.assign("zhang.san", "li.si", t(6)).unwrap();
        assert_eq!(inc.assignee.as_deref(), Some("li.si"));
        assert_eq!(assign.detail, "assignee=\"li.si\" previous=none");
        let comment = inc.comment("li.si", "日志目录增长过快", t(7)).unwrap();
        assert_eq!(comment.detail, "\"日志目录增长过快\"");

        let resolve = inc
            .resolve_manual(
                "li.si",
                "应用日志未轮转",
                "清理旧日志并配置 logrotate",
                t(30),
            )
            .unwrap();
        assert_eq!(inc.state, State::Resolved);
        assert_eq!(inc.resolution, Some(Resolution::Manual));
        assert_eq!(inc.resolved_by.as_deref(), Some("li.si"));
        assert_eq!(inc.root_cause.as_deref(), Some("应用日志未轮转"));
        assert!(resolve.detail.contains("logrotate"));

        let close = inc.close("wang.wu", t(60)).unwrap();
        assert_eq!(inc.state, State::Closed);
        assert_eq!(inc.closed_at, Some(t(60)));
        assert_eq!(close.action.as_str(), "close");
        // Notes may follow a closed incident.
        assert!(inc.comment("wang.wu", "复盘完成", t(90)).is_ok());
    }

    #[test]
    fn automatic_resolution_records_the_recovery_value() {
        let mut inc = opened();
        let entry = inc.resolve_auto("62.5%", t(10)).unwrap();
        assert_eq!(inc.state, State::Resolved);
        assert_eq!(inc.resolution, Some(Resolution::Automatic));
        assert_eq!(inc.recovery_value.as_deref(), Some("62.5%"));
        assert_eq!(
            (entry.actor.as_str(), entry.action.as_str()),
            ("rules", "auto-resolve")
        );
        assert_eq!(
            entry.detail,
            "recovery_value=\"62.5%\" peak_value=91 occurrences=1"
        );
        assert_eq!(inc.root_cause, None);
    }

    #[test]
    fn refiring_within_the_window_reopens() {
        let mut inc = opened();
        inc.acknowledge("zhang.san", t(5)).unwrap();
        inc.resolve_auto("60.0%", t(10)).unwrap();
        let Fired::Reopened(entry) = inc.fire(&firing(97.0), t(70), HOUR).unwrap() else {
            panic!("expected a reopen");
        };
        assert_eq!(inc.state, State::Open);
        assert_eq!(inc.reopen_count, 1);
        assert_eq!(inc.resolved_at, None);
        assert_eq!(inc.recovery_value, None);
        // The first response still counts for the SLA.
        assert_eq!(inc.acknowledged_at, Some(t(5)));
        assert_eq!((inc.occurrences, inc.peak_value), (2, Some(97.0)));
        assert_eq!(entry.action, Action::Reopen);
        assert!(
            entry.detail.starts_with("reopen_count=1 "),
            "{}",
            entry.detail
        );
        assert!(entry.detail.contains("previous_resolution=automatic"));
        // And again: acknowledge, resolve, reopen counts up.
        inc.acknowledge("zhang.san", t(71)).unwrap();
        assert_eq!(inc.acknowledged_at, Some(t(5)));
        inc.resolve_auto("ok", t(80)).unwrap();
        assert!(matches!(
            inc.fire(&firing(90.0), t(81), HOUR).unwrap(),
            Fired::Reopened(_)
        ));
        assert_eq!(inc.reopen_count, 2);
    }

    #[test]
    fn refiring_after_the_window_asks_for_a_new_incident() {
        let mut inc = opened();
        inc.resolve_auto("60.0%", t(10)).unwrap();
        let before = inc.clone();
        assert_eq!(
            inc.fire(&firing(97.0), t(71), HOUR).unwrap(),
            Fired::OpenNew
        );
        assert_eq!(inc, before, "the resolved incident is left alone");
        // A zero window never reopens.
        assert_eq!(
            inc.fire(&firing(97.0), t(11), Duration::ZERO).unwrap(),
            Fired::OpenNew
        );
        // A closed incident is final, even inside the window.
        inc.close("wang.wu", t(12)).unwrap();
        assert_eq!(
            inc.fire(&firing(97.0), t(13), HOUR).unwrap(),
            Fired::OpenNew
        );
        let (fresh, _) = Incident::open(2, &firing(97.0), false, t(71)).unwrap();
        assert_eq!((fresh.reopen_count, fresh.occurrences), (0, 1));
    }

    #[test]
    fn manual_resolution_requires_root_cause_and_actions() {
        let mut inc = opened();
        let before = inc.clone();
        let err = inc
            .resolve_manual("li.si", "  ", "重启服务", t(9))
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "cannot manually resolve incident 1: `root_cause` must not be empty"
        );
        let err = inc
            .resolve_manual("li.si", "内存泄漏", "", t(9))
            .unwrap_err();
        assert!(err.to_string().contains("`actions_taken`"), "{err}");
        let err = inc
            .resolve_manual("", "内存泄漏", "重启服务", t(9))
            .unwrap_err();
        assert!(err.to_string().contains("`actor`"), "{err}");
        assert_eq!(inc, before, "a refused action changes nothing");
        inc.resolve_manual("li.si", " 内存泄漏 ", "重启服务", t(9))
            .unwrap();
        assert_eq!(inc.root_cause.as_deref(), Some("内存泄漏"));
    }

    #[test]
    fn close_only_from_resolved() {
        let mut inc = opened();
        let err = inc.close("wang.wu", t(1)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "cannot close incident 1: it is open (allowed from: resolved)"
        );
        inc.acknowledge("zhang.san", t(2)).unwrap();
        assert!(matches!(
            inc.close("wang.wu", t(3)),
            Err(LifecycleError::InvalidTransition {
                state: State::Acknowledged,
                action: Action::Close,
                ..
            })
        ));
        inc.resolve_auto("ok", t(4)).unwrap();
        inc.close("wang.wu", t(5)).unwrap();
    }

    #[test]
    fn invalid_transitions_name_the_state_and_the_action() {
        let mut inc = opened();
        inc.acknowledge("a", t(1)).unwrap();
        let err = inc.acknowledge("b", t(2)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "cannot acknowledge incident 1: it is acknowledged (allowed from: open)"
        );
        inc.resolve_auto("ok", t(3)).unwrap();
        for err in [
            inc.resolve_auto("ok", t(4)).unwrap_err(),
            inc.resolve_manual("a", "x", "y", t(4)).unwrap_err(),
            inc.assign("a", "b", t(4)).unwrap_err(),
            inc.acknowledge("a", t(4)).unwrap_err(),
        ] {
            let msg = err.to_string();
            assert!(msg.contains("it is resolved"), "{msg}");
        }
        inc.close("a", t(5)).unwrap();
        let msg = inc
            .set_suppressed("a", true, "", t(6))
            .unwrap_err()
            .to_string();
        assert!(
            msg.starts_with("cannot suppress incident 1: it is closed"),
            "{msg}"
        );
        let msg = inc.close("a", t(6)).unwrap_err().to_string();
        assert!(
            msg.contains("cannot close incident 1: it is closed"),
            "{msg}"
        );
    }

    #[test]
    fn bad_inputs_are_refused_and_change_nothing() {
        let mut inc = opened();
        let before = inc.clone();
        let err = inc.acknowledge("a", t(-1)).unwrap_err();
        assert!(err.to_string().contains("before it opened"), "{err}");
        let mut other = firing(99.0);
        other.key = "/home".into();
        let err = inc.fire(&other, t(1), HOUR).unwrap_err();
        assert!(err.to_string().contains("\"/home\""), "{err}");
        assert!(inc.assign("a", " ", t(1)).is_err());
        assert!(inc.comment("a", "", t(1)).is_err());
        assert_eq!(
            inc.fire(&firing(f64::NAN), t(1), HOUR).unwrap(),
            Fired::Occurrence
        );
        assert_eq!(inc.peak_value, before.peak_value);
        assert_eq!(inc.occurrences, 2);
        let mut blank = firing(1.0);
        blank.rule_id = " ".into();
        let err = Incident::open(9, &blank, false, t(0)).unwrap_err();
        assert!(err.to_string().contains("`rule_id`"), "{err}");
    }

    #[test]
    fn peak_follows_the_direction_that_is_worse() {
        let mut f = firing(20.0);
        f.worse = Worse::Lower;
        let (mut inc, _) = Incident::open(3, &f, false, t(0)).unwrap();
        for (i, v) in [15.0, 18.0, 12.0, 14.0].into_iter().enumerate() {
            f.value = format!("{v} GiB");
            f.numeric = Some(v);
            inc.fire(&f, t(i as i64 + 1), HOUR).unwrap();
        }
        assert_eq!(
            (
                inc.first_value.as_str(),
                inc.last_value.as_str(),
                inc.peak_value
            ),
            ("20%", "14 GiB", Some(12.0))
        );
        // A check without a number still counts.
        f.value = "unknown".into();
        f.numeric = None;
        f.flapping = true;
        inc.fire(&f, t(9), HOUR).unwrap();
        assert_eq!(
            (inc.occurrences, inc.last_value.as_str(), inc.peak_value),
            (6, "unknown", Some(12.0))
        );
        assert!(inc.flapping);
    }

    #[test]
    fn suppressed_incident_is_recorded_but_notifies_nobody() {
        let (mut inc, open) = Incident::open(4, &firing(91.0), true, t(0)).unwrap();
        assert!(inc.suppressed);
        assert!(!inc.notifies());
        assert!(open.detail.contains("suppressed=true"));
        assert_eq!(
            inc.fire(&firing(99.0), t(1), HOUR).unwrap(),
            Fired::Occurrence
        );
        assert_eq!(inc.occurrences, 2);
        let err = inc.set_suppressed("ops", true, "mw-12", t(2)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "cannot suppress incident 4: it is already suppressed"
        );
        let entry = inc
            .set_suppressed("ops", false, "mw-12 ended", t(3))
            .unwrap();
        assert_eq!(entry.action, Action::Unsuppress);
        assert_eq!(entry.detail, "reason=\"mw-12 ended\"");
        assert!(inc.notifies());
        // The lifecycle is otherwise unaffected.
        let entry = inc.set_suppressed("ops", true, "silence-3", t(4)).unwrap();
        assert_eq!(entry.action.as_str(), "suppress");
        inc.resolve_auto("50.0%", t(5)).unwrap();
        assert!(inc.suppressed);
    }

    #[test]
    fn incident_round_trips_through_json() {
        let mut inc = opened();
        inc.acknowledge("zhang.san", t(1)).unwrap();
        inc.resolve_manual("zhang.san", "磁盘满", "扩容", t(2))
            .unwrap();
        let json = serde_json::to_string(&inc).unwrap();
        assert!(json.contains("\"state\":\"resolved\""), "{json}");
        let back: Incident = serde_json::from_str(&json).unwrap();
        assert_eq!(back, inc);
    }

    #[test]
    fn reopen_window_config() {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct File {
            #[serde(default)]
            incidents: LifecycleConfig,
        }
        let parse = |text: &str| toml::from_str::<File>(text).map(|f| f.incidents);
        assert_eq!(parse("").unwrap().reopen_window, HOUR);
        let c = parse("[incidents]\nreopen_window = \"30m\"\n").unwrap();
        assert_eq!(c.reopen_window, Duration::from_secs(1800));
        assert!(c.validate().is_ok());
        let err = parse("[incidents]\nreopen_window = \"31days\"\n")
            .unwrap()
            .validate()
            .unwrap_err();
        assert!(
            err.to_string().contains("`incidents.reopen_window`"),
            "{err}"
        );
        let err = parse("[incidents]\nreopen = \"1h\"\n").err().unwrap();
        assert!(err.to_string().contains("reopen"), "{err}");
    }
}
