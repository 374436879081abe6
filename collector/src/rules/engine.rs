//! The evaluation engine: pure state machines, one per incident key (rule,
//! agent, label set), fed observations and ticks with caller-supplied UTC
//! millisecond timestamps.
//!
//! Per key: Normal → Pending(since) → Firing → Recovering(since) → Normal.
//! - The firing condition must hold for the rule's `for` (Pending); any
//!   observation that does not satisfy it during Pending returns to Normal
//!   without an incident.
//! - A Firing key resolves only on the *recovery* condition (hysteresis:
//!   values between the recovery and firing thresholds keep it Firing), held
//!   for `clear_for` (Recovering); anything else during Recovering goes back
//!   to Firing.
//! - Every observation of an open incident yields `StillFiring`, so the
//!   caller updates one incident (current/peak value, count) instead of
//!   opening another.
//! - Timers expire in [`Engine::tick`] too, so `for`/`clear_for` complete
//!   without new data: the last observed condition is taken to persist until
//!   an observation contradicts it.
//!
//! Flapping damping: a key that has already fired and resolved more than
//! [`FLAP_LIMIT`] times within [`FLAP_WINDOW_MS`] fires with
//! `flapping: true`, and that incident resolves only after the recovery has
//! held for `max(clear_for, FLAP_HOLD_MS)`. The flag stays on every
//! transition of that incident, so the operator sees why it stays open.
//! One flapping incident held open replaces a stream of open/close pairs.
//!
//! Non-finite metric values are not measurements and are ignored (neither
//! firing nor recovering: unknown is not OK).

use std::collections::{BTreeMap, HashMap, VecDeque};

use super::file::{Rule, RuleSet, Target, format_ms};
use super::template::Context;
use super::{HostFacts, Severity, Status};

/// The metric the collector feeds for `kind = "spool_dropping"` rules: the
/// agent's cumulative `spool_dropped_reports_total` from its Hello/Report.
pub const SPOOL_DROPPED_METRIC: &str = "agent.spool_dropped_total";
/// Fire/resolve cycles within [`FLAP_WINDOW_MS`] beyond which a key flaps.
pub const FLAP_LIMIT: usize = 4;
pub const FLAP_WINDOW_MS: i64 = 3_600_000;
/// Minimum recovery hold for a flapping incident.
pub const FLAP_HOLD_MS: i64 = 600_000;

/// The label under which a check rule's key records the check id.
const CHECK_ID_LABEL: &str = "check_id";

/// Identifies one incident stream: a rule, an agent and a label set (the
/// metric series' labels, or `check_id` for check rules, or none).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IncidentKey {
    pub rule_id: String,
    pub agent_id: String,
    pub labels: BTreeMap<String, String>,
}

impl IncidentKey {
    /// Labels as the store writes them: a JSON object with sorted keys.
    pub fn labels_json(&self) -> String {
        serde_json::to_string(&self.labels).unwrap_or_else(|_| "{}".into())
    }
}

impl std::fmt::Display for IncidentKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {} {}",
            self.rule_id,
            self.agent_id,
            self.labels_json()
        )
    }
}

/// An observed value: a number for metrics and spool counters, text for
/// check values and offline durations.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Number(f64),
    Text(String),
}

impl std::fmt::Display for Value {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Value::Number(n) => f.write_str(&format_number(*n)),
            Value::Text(t) => f.write_str(t),
        }
    }
}

/// Whole numbers without decimals, others with at most two.
pub(super) fn format_number(v: f64) -> String {
    if v == 0.0 {
        // Also turns -0 into "0".
        return "0".into();
    }
    if v.fract() == 0.0 {
        return format!("{v:.0}");
    }
    let s = format!("{v:.2}");
    s.trim_end_matches('0').trim_end_matches('.').to_owned()
}

/// What the caller records. `flapping` is true for every transition of an
/// incident opened while its key was flapping.
#[derive(Debug, Clone, PartialEq)]
pub enum Transition {
    /// Open a new incident.
    Firing {
        key: IncidentKey,
        rule_id: String,
        severity: Severity,
        title: String,
        description: Option<String>,
        value: Value,
        threshold: String,
        at_ms: i64,
        flapping: bool,
    },
    /// The open incident was observed again (update current/peak, count).
    StillFiring {
        key: IncidentKey,
        value: Value,
        at_ms: i64,
        flapping: bool,
    },
    /// Close the open incident.
    Resolved {
        key: IncidentKey,
        at_ms: i64,
        value: Value,
        flapping: bool,
    },
}

impl Transition {
    pub fn key(&self) -> &IncidentKey {
        match self {
            Transition::Firing { key, .. }
            | Transition::StillFiring { key, .. }
            | Transition::Resolved { key, .. } => key,
        }
    }

    pub fn at_ms(&self) -> i64 {
        match self {
            Transition::Firing { at_ms, .. }
            | Transition::StillFiring { at_ms, .. }
            | Transition::Resolved { at_ms, .. } => *at_ms,
        }
    }

    pub fn flapping(&self) -> bool {
        match self {
            Transition::Firing { flapping, .. }
            | Transition::StillFiring { flapping, .. }
            | Transition::Resolved { flapping, .. } => *flapping,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Normal,
    Pending { since: i64 },
    Firing { flapping: bool },
    Recovering { since: i64, flapping: bool },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Signal {
    Fire,
    Recover,
    /// Neither condition holds (between the thresholds, or a check status
    /// that neither fires nor is `ok`).
    Hold,
}

#[derive(Debug, Clone)]
struct KeyState {
    phase: Phase,
    last: Value,
    /// When this key fired, within the flap window, oldest first.
    fired_at: VecDeque<i64>,
    /// Spool rules: the agent's previous dropped-reports total.
    counter: Option<f64>,
}

impl KeyState {
    fn new(value: Value) -> Self {
        KeyState {
            phase: Phase::Normal,
            last: value,
            fired_at: VecDeque::new(),
            counter: None,
        }
    }

    fn is_open(&self) -> bool {
        matches!(self.phase, Phase::Firing { .. } | Phase::Recovering { .. })
    }
}

/// Evaluates a [`RuleSet`] against observations. Keys with nothing to
/// remember (Normal, no recent firing, no counter) are dropped at each
/// [`Engine::tick`], so memory follows the number of open or recent
/// incidents, not of series.
#[derive(Debug, Default)]
pub struct Engine {
    rules: RuleSet,
    hosts: HashMap<String, HostFacts>,
    states: HashMap<IncidentKey, KeyState>,
}

impl Engine {
    pub fn new(rules: RuleSet) -> Self {
        Engine {
            rules,
            ..Engine::default()
        }
    }

    pub fn rules(&self) -> &RuleSet {
        &self.rules
    }

    /// Installs a reloaded rule set. State is kept for keys whose rule id
    /// survived and still applies (same kind of target, same metric or a
    /// matching check id, host still in scope); the others are dropped and
    /// the open incidents among them returned, for the caller to close as
    /// "rule removed or changed" (they did not recover, so no `Resolved`).
    pub fn replace_rules(&mut self, rules: RuleSet) -> Vec<IncidentKey> {
        let mut dropped = Vec::new();
        let hosts = &self.hosts;
        self.states.retain(|key, state| {
            let keep = match (self.rules.get(&key.rule_id), rules.get(&key.rule_id)) {
                (Some(old), Some(new)) => still_applies(old, new, key, hosts.get(&key.agent_id)),
                _ => false,
            };
            if !keep && state.is_open() {
                dropped.push(key.clone());
            }
            keep
        });
        self.rules = rules;
        dropped.sort();
        dropped
    }

    /// Makes a host known without an observation (at startup, from the
    /// agents table), so `agent_offline` rules cover hosts that never report
    /// after a collector restart. Observations also keep facts current.
    pub fn set_host(&mut self, host: HostFacts) {
        self.hosts.insert(host.agent_id.clone(), host);
    }

    /// Forgets a host (revoked or deleted) and all its state; returns the
    /// open incidents dropped.
    pub fn forget_host(&mut self, agent_id: &str) -> Vec<IncidentKey> {
        self.hosts.remove(agent_id);
        let mut dropped = Vec::new();
        self.states.retain(|key, state| {
            let keep = key.agent_id != agent_id;
            if !keep && state.is_open() {
                dropped.push(key.clone());
            }
            keep
        });
        dropped.sort();
        dropped
    }

    /// Keys with an open incident (Firing or Recovering), sorted.
    pub fn open_incidents(&self) -> Vec<IncidentKey> {
        let mut keys: Vec<IncidentKey> = self
            .states
            .iter()
            .filter(|(_, s)| s.is_open())
            .map(|(k, _)| k.clone())
            .collect();
        keys.sort();
        keys
    }

    /// One metric sample (also the spool counter, as
    /// [`SPOOL_DROPPED_METRIC`]).
    pub fn observe_metric(
        &mut self,
        host: &HostFacts,
        name: &str,
        labels: &BTreeMap<String, String>,
        value: f64,
        at_ms: i64,
    ) -> Vec<Transition> {
        let labels: Vec<(String, String)> =
            labels.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        self.observe_metrics(host, [(name, labels.as_slice(), value, at_ms)])
    }

    /// The samples of one report of `host`: what depends only on the host
    /// (its facts, which rules' scopes take it in) is worked out once for
    /// all of them, not once a sample. A sample's labels are (name, value)
    /// pairs as the agent sent them (names are unique: ingest refuses a
    /// repeated one); the sorted map of an incident key is built only when
    /// a rule matches.
    pub fn observe_metrics<'m>(
        &mut self,
        host: &HostFacts,
        samples: impl IntoIterator<Item = (&'m str, &'m [(String, String)], f64, i64)>,
    ) -> Vec<Transition> {
        remember(&mut self.hosts, host);
        let in_scope: Vec<&Rule> = self
            .rules
            .rules()
            .iter()
            .filter(|rule| rule.scope.matches(host))
            .collect();
        let mut out = Vec::new();
        for (name, labels, value, at_ms) in samples {
            if !value.is_finite() {
                continue;
            }
            for rule in &in_scope {
                match &rule.target {
                    Target::Metric {
                        name: metric,
                        match_labels,
                        fire,
                        recover,
                    } if metric == name
                        && match_labels
                            .iter()
                            .all(|(k, v)| labels.iter().any(|(lk, lv)| lk == k && lv == v)) =>
                    {
                        let signal = if fire.holds(value) {
                            Signal::Fire
                        } else if recover.holds(value) {
                            Signal::Recover
                        } else {
                            Signal::Hold
                        };
                        let key = key(rule, host, labels.iter().cloned().collect());
                        let v = Value::Number(value);
                        if signal != Signal::Fire && !self.states.contains_key(&key) {
                            continue;
                        }
                        let state = self
                            .states
                            .entry(key.clone())
                            .or_insert_with(|| KeyState::new(v.clone()));
                        out.extend(step(rule, host, &key, state, signal, v, at_ms, true));
                    }
                    Target::SpoolDropping if name == SPOOL_DROPPED_METRIC => {
                        let key = key(rule, host, BTreeMap::new());
                        let v = Value::Number(value);
                        let state = self
                            .states
                            .entry(key.clone())
                            .or_insert_with(|| KeyState::new(v.clone()));
                        // The first figure seen is only a baseline: after a
                        // collector restart every agent that ever dropped would
                        // otherwise raise an incident for old drops. A total that
                        // went down (agent reinstalled) is a new baseline too.
                        let signal = match state.counter.replace(value) {
                            None => continue,
                            Some(prev) if value > prev => Signal::Fire,
                            Some(prev) if value == prev => Signal::Recover,
                            Some(_) => Signal::Hold,
                        };
                        out.extend(step(rule, host, &key, state, signal, v, at_ms, true));
                    }
                    _ => {}
                }
            }
        }
        out
    }

    /// One check result. `value` is the check's measured value as text.
    pub fn observe_check(
        &mut self,
        host: &HostFacts,
        check_id: &str,
        status: Status,
        value: &str,
        at_ms: i64,
    ) -> Vec<Transition> {
        remember(&mut self.hosts, host);
        let mut out = Vec::new();
        for rule in self.rules.rules() {
            let Target::Check { pattern, statuses } = &rule.target else {
                continue;
            };
            if !pattern.matches(check_id) || !rule.scope.matches(host) {
                continue;
            }
            let signal = if statuses.contains(&status) {
                Signal::Fire
            } else if status == Status::Ok {
                Signal::Recover
            } else {
                Signal::Hold
            };
            let key = key(
                rule,
                host,
                BTreeMap::from([(CHECK_ID_LABEL.to_owned(), check_id.to_owned())]),
            );
            if signal != Signal::Fire && !self.states.contains_key(&key) {
                continue;
            }
            let v = Value::Text(value.to_owned());
            let state = self
                .states
                .entry(key.clone())
                .or_insert_with(|| KeyState::new(v.clone()));
            out.extend(step(rule, host, &key, state, signal, v, at_ms, true));
        }
        out
    }

    /// Expires `for`/`clear_for` timers and evaluates `agent_offline` rules
    /// against `last_seen` (the agent's last report time; `None` = never
    /// seen, which is not judged: an agent enrolled a moment ago has not had
    /// the chance to report). Ticks yield only `Firing`/`Resolved`: they
    /// carry no new measurement worth an update. Output is sorted by key.
    pub fn tick(
        &mut self,
        now_ms: i64,
        last_seen: &dyn Fn(&str) -> Option<i64>,
    ) -> Vec<Transition> {
        let mut out = Vec::new();
        for (key, state) in &mut self.states {
            let Some(rule) = self.rules.get(&key.rule_id) else {
                continue;
            };
            let fallback;
            let host = match self.hosts.get(&key.agent_id) {
                Some(h) => h,
                None => {
                    fallback = HostFacts {
                        agent_id: key.agent_id.clone(),
                        ..HostFacts::default()
                    };
                    &fallback
                }
            };
            match state.phase {
                Phase::Pending { since } if elapsed(since, now_ms) >= rule.for_ms => {
                    out.push(fire(rule, host, key, state, now_ms));
                }
                Phase::Recovering { since, flapping }
                    if elapsed(since, now_ms) >= clear_ms(rule, flapping) =>
                {
                    out.push(resolve(key, state, now_ms, flapping));
                }
                _ => {}
            }
        }

        for rule in self.rules.rules() {
            let Target::AgentOffline { after_ms } = rule.target else {
                continue;
            };
            for host in self.hosts.values() {
                if !rule.scope.matches(host) {
                    continue;
                }
                let Some(last) = last_seen(&host.agent_id) else {
                    continue;
                };
                let silent = elapsed(last, now_ms);
                let signal = if silent >= after_ms {
                    Signal::Fire
                } else {
                    Signal::Recover
                };
                let key = key(rule, host, BTreeMap::new());
                if signal != Signal::Fire && !self.states.contains_key(&key) {
                    continue;
                }
                let v = Value::Text(format_ms(silent));
                let state = self
                    .states
                    .entry(key.clone())
                    .or_insert_with(|| KeyState::new(v.clone()));
                out.extend(step(rule, host, &key, state, signal, v, now_ms, false));
            }
        }

        let window_start = now_ms.saturating_sub(FLAP_WINDOW_MS);
        self.states.retain(|_, s| {
            s.phase != Phase::Normal
                || s.counter.is_some()
                || s.fired_at.back().is_some_and(|&t| t > window_start)
        });
        // Stable: two transitions of one key keep their order.
        out.sort_by(|a, b| a.key().cmp(b.key()));
        out
    }
}

fn remember(hosts: &mut HashMap<String, HostFacts>, host: &HostFacts) {
    if hosts.get(&host.agent_id) != Some(host) {
        hosts.insert(host.agent_id.clone(), host.clone());
    }
}

fn key(rule: &Rule, host: &HostFacts, labels: BTreeMap<String, String>) -> IncidentKey {
    IncidentKey {
        rule_id: rule.id.clone(),
        agent_id: host.agent_id.clone(),
        labels,
    }
}

/// Whether a key's state still means the same thing under the new rule.
fn still_applies(old: &Rule, new: &Rule, key: &IncidentKey, host: Option<&HostFacts>) -> bool {
    let target = match (&old.target, &new.target) {
        (
            Target::Metric { name: a, .. },
            Target::Metric {
                name: b,
                match_labels,
                ..
            },
        ) => {
            a == b
                && match_labels
                    .iter()
                    .all(|(k, v)| key.labels.get(k) == Some(v))
        }
        (Target::Check { .. }, Target::Check { pattern, .. }) => key
            .labels
            .get(CHECK_ID_LABEL)
            .is_some_and(|id| pattern.matches(id)),
        (Target::AgentOffline { .. }, Target::AgentOffline { .. })
        | (Target::SpoolDropping, Target::SpoolDropping) => true,
        _ => false,
    };
    target && host.is_none_or(|h| new.scope.matches(h))
}

fn elapsed(since: i64, now: i64) -> i64 {
    now.saturating_sub(since)
}

fn clear_ms(rule: &Rule, flapping: bool) -> i64 {
    if flapping {
        rule.clear_for_ms.max(FLAP_HOLD_MS)
    } else {
        rule.clear_for_ms
    }
}

/// Advances one key's state machine; see the module documentation.
/// `still` = whether an open incident gets a `StillFiring` update.
#[allow(clippy::too_many_arguments)]
fn step(
    rule: &Rule,
    host: &HostFacts,
    key: &IncidentKey,
    state: &mut KeyState,
    signal: Signal,
    value: Value,
    at: i64,
    still: bool,
) -> Option<Transition> {
    state.last = value;
    let still_firing = |state: &KeyState, flapping: bool| {
        still.then(|| Transition::StillFiring {
            key: key.clone(),
            value: state.last.clone(),
            at_ms: at,
            flapping,
        })
    };
    match (state.phase, signal) {
        (Phase::Normal, Signal::Fire) if rule.for_ms == 0 => Some(fire(rule, host, key, state, at)),
        (Phase::Normal, Signal::Fire) => {
            state.phase = Phase::Pending { since: at };
            None
        }
        (Phase::Normal, _) => None,
        (Phase::Pending { since }, Signal::Fire) => {
            (elapsed(since, at) >= rule.for_ms).then(|| fire(rule, host, key, state, at))
        }
        (Phase::Pending { .. }, _) => {
            state.phase = Phase::Normal;
            None
        }
        (Phase::Firing { flapping }, Signal::Recover) => {
            if clear_ms(rule, flapping) == 0 {
                Some(resolve(key, state, at, flapping))
            } else {
                state.phase = Phase::Recovering {
                    since: at,
                    flapping,
                };
                still_firing(state, flapping)
            }
        }
        (Phase::Firing { flapping }, _) => still_firing(state, flapping),
        (Phase::Recovering { since, flapping }, Signal::Recover) => {
            if elapsed(since, at) >= clear_ms(rule, flapping) {
                Some(resolve(key, state, at, flapping))
            } else {
                still_firing(state, flapping)
            }
        }
        (Phase::Recovering { flapping, .. }, _) => {
            state.phase = Phase::Firing { flapping };
            still_firing(state, flapping)
        }
    }
}

fn fire(
    rule: &Rule,
    host: &HostFacts,
    key: &IncidentKey,
    state: &mut KeyState,
    at: i64,
) -> Transition {
    let window_start = at.saturating_sub(FLAP_WINDOW_MS);
    while state.fired_at.front().is_some_and(|&t| t <= window_start) {
        state.fired_at.pop_front();
    }
    // Each earlier firing in the window has resolved (the key is firing
    // again), so their count is the number of completed cycles.
    let flapping = state.fired_at.len() > FLAP_LIMIT;
    state.fired_at.push_back(at);
    while state.fired_at.len() > FLAP_LIMIT + 1 {
        state.fired_at.pop_front();
    }
    state.phase = Phase::Firing { flapping };

    let value = state.last.to_string();
    let threshold = rule.threshold_text();
    let ctx = Context {
        host: host.display_name(),
        value: &value,
        threshold: &threshold,
        labels: &key.labels,
        check_id: key.labels.get(CHECK_ID_LABEL).map_or("", String::as_str),
    };
    Transition::Firing {
        key: key.clone(),
        rule_id: rule.id.clone(),
        severity: rule.severity,
        title: rule.title.render(&ctx),
        description: rule.description.as_ref().map(|d| d.render(&ctx)),
        value: state.last.clone(),
        threshold,
        at_ms: at,
        flapping,
    }
}

fn resolve(key: &IncidentKey, state: &mut KeyState, at: i64, flapping: bool) -> Transition {
    state.phase = Phase::Normal;
    Transition::Resolved {
        key: key.clone(),
        at_ms: at,
        value: state.last.clone(),
        flapping,
    }
}

#[cfg(test)]
mod tests {
    use super::super::parse_rules;
    use super::*;

    const MIN: i64 = 60_000;

    fn engine(rules: &str) -> Engine {
        Engine::new(parse_rules("t.toml", rules).unwrap_or_else(|e| panic!("{e}")))
    }

    fn host(id: &str) -> HostFacts {
        HostFacts {
            agent_id: id.into(),
            hostname: format!("{id}.example"),
            os_name: "Ubuntu".into(),
            ..HostFacts::default()
        }
    }

    fn mount(m: &str) -> BTreeMap<String, String> {
        BTreeMap::from([
            ("mount".to_owned(), m.to_owned()),
            ("device".to_owned(), "/dev/vda1".to_owned()),
        ])
    }

    /// A compact view of transitions: ("F"/"S"/"R", value, at).
    fn kinds(ts: &[Transition]) -> Vec<(&'static str, String, i64)> {
        ts.iter()
            .map(|t| match t {
                Transition::Firing { value, at_ms, .. } => ("F", value.to_string(), *at_ms),
                Transition::StillFiring { value, at_ms, .. } => ("S", value.to_string(), *at_ms),
                Transition::Resolved { value, at_ms, .. } => ("R", value.to_string(), *at_ms),
            })
            .collect()
    }

    fn never(_: &str) -> Option<i64> {
        None
    }

    const FS: &str = r#"
[[rule]]
id = "fs"
title = "{labels.mount} on {host} at {value}% ({threshold}%), fstype {labels.fstype}"
description = "device {labels.device}"
severity = "III"
hosts = "all"
metric = "fs.used_pct"
op = ">="
threshold = 85
recover_threshold = 80
"#;

    #[test]
    fn threshold_and_recovery_hysteresis() {
        let mut e = engine(FS);
        let h = host("a1");
        let mut obs =
            |v: f64, at: i64| kinds(&e.observe_metric(&h, "fs.used_pct", &mount("/"), v, at));
        assert_eq!(obs(70.0, 0), []);
        assert_eq!(obs(84.9, 1), []);
        assert_eq!(obs(85.0, 2), [("F", "85".into(), 2)]);
        // Between the recovery (80) and firing (85) thresholds: still open.
        assert_eq!(obs(82.5, 3), [("S", "82.5".into(), 3)]);
        assert_eq!(obs(80.0, 4), [("S", "80".into(), 4)]);
        assert_eq!(obs(79.99, 5), [("R", "79.99".into(), 5)]);
        // Back between the thresholds from below: no new incident.
        assert_eq!(obs(84.0, 6), []);
        assert_eq!(obs(90.0, 7), [("F", "90".into(), 7)]);
    }

    #[test]
    fn firing_renders_templates_and_each_series_is_its_own_incident() {
        let mut e = engine(FS);
        let mut h = host("a1");
        h.hostname.clear();
        let t = e.observe_metric(&h, "fs.used_pct", &mount("/var"), 91.256, 10);
        let [
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
            },
        ] = t.as_slice()
        else {
            panic!("{t:?}")
        };
        assert_eq!(rule_id, "fs");
        assert_eq!(*severity, Severity::III);
        // No host name yet: the agent id stands in; a missing label is `?`.
        assert_eq!(title, "/var on a1 at 91.26% (>= 85%), fstype ?");
        assert_eq!(description.as_deref(), Some("device /dev/vda1"));
        assert_eq!(*value, Value::Number(91.256));
        assert_eq!(threshold, ">= 85");
        assert_eq!((*at_ms, *flapping), (10, false));
        assert_eq!(
            key.labels_json(),
            r#"{"device":"/dev/vda1","mount":"/var"}"#
        );
        assert_eq!(key.agent_id, "a1");

        // Another mount on the same host, and the same mount on another
        // host, are separate incidents.
        let t = e.observe_metric(&h, "fs.used_pct", &mount("/"), 99.0, 11);
        assert_eq!(kinds(&t), [("F", "99".into(), 11)]);
        let t = e.observe_metric(&host("a2"), "fs.used_pct", &mount("/var"), 99.0, 11);
        assert_eq!(kinds(&t), [("F", "99".into(), 11)]);
        assert_eq!(e.open_incidents().len(), 3);
        // Other metrics and non-finite values do nothing.
        assert!(
            e.observe_metric(&h, "fs.free_bytes", &mount("/"), 1.0, 12)
                .is_empty()
        );
        assert!(
            e.observe_metric(&h, "fs.used_pct", &mount("/"), f64::NAN, 12)
                .is_empty()
        );
        assert!(
            e.observe_metric(&h, "fs.used_pct", &mount("/"), f64::INFINITY, 12)
                .is_empty()
        );
        assert_eq!(e.open_incidents().len(), 3);
    }

    #[test]
    fn still_firing_updates_the_open_incident_instead_of_duplicating_it() {
        let mut e = engine(FS);
        let h = host("a1");
        let mut all = Vec::new();
        for (i, v) in [90.0, 95.0, 97.5, 92.0, 86.0].into_iter().enumerate() {
            all.extend(e.observe_metric(&h, "fs.used_pct", &mount("/"), v, i as i64 * MIN));
        }
        let firing = all
            .iter()
            .filter(|t| matches!(t, Transition::Firing { .. }))
            .count();
        assert_eq!(firing, 1);
        assert_eq!(
            kinds(&all)[1..],
            [
                ("S", "95".into(), MIN),
                ("S", "97.5".into(), 2 * MIN),
                ("S", "92".into(), 3 * MIN),
                ("S", "86".into(), 4 * MIN)
            ]
        );
        assert!(all.iter().all(|t| t.key() == all[0].key()));
        // Ticks carry no measurement: no StillFiring from them.
        assert!(e.tick(5 * MIN, &never).is_empty());
    }

    const MEM: &str = r#"
[[rule]]
id = "mem"
title = "memory {value}"
severity = "III"
hosts = "all"
metric = "memory.used_pct"
op = ">"
threshold = 95
recover_threshold = 90
for = "5m"
clear_for = "10m"
"#;

    #[test]
    fn for_delays_firing_and_a_dip_while_pending_cancels_it() {
        let mut e = engine(MEM);
        let h = host("a1");
        let none = BTreeMap::new();
        let mut obs =
            |v: f64, at: i64| kinds(&e.observe_metric(&h, "memory.used_pct", &none, v, at));
        assert_eq!(obs(96.0, 0), []);
        assert_eq!(obs(97.0, 4 * MIN), []);
        // Crossing back (even only to between the thresholds) resets.
        assert_eq!(obs(93.0, 4 * MIN + 1), []);
        assert_eq!(obs(96.0, 5 * MIN), []);
        assert_eq!(obs(96.0, 9 * MIN), []);
        assert_eq!(obs(96.5, 10 * MIN), [("F", "96.5".into(), 10 * MIN)]);
        // Recovery must hold for clear_for; a relapse restarts it.
        assert_eq!(obs(50.0, 11 * MIN), [("S", "50".into(), 11 * MIN)]);
        assert_eq!(obs(92.0, 15 * MIN), [("S", "92".into(), 15 * MIN)]);
        assert_eq!(obs(50.0, 16 * MIN), [("S", "50".into(), 16 * MIN)]);
        assert_eq!(obs(50.0, 25 * MIN), [("S", "50".into(), 25 * MIN)]);
        assert_eq!(obs(50.0, 26 * MIN), [("R", "50".into(), 26 * MIN)]);
    }

    #[test]
    fn for_and_clear_for_complete_on_tick_without_new_data() {
        let mut e = engine(MEM);
        let h = host("a1");
        let none = BTreeMap::new();
        assert!(
            e.observe_metric(&h, "memory.used_pct", &none, 99.0, 0)
                .is_empty()
        );
        assert!(e.tick(5 * MIN - 1, &never).is_empty());
        let t = e.tick(5 * MIN, &never);
        assert_eq!(kinds(&t), [("F", "99".into(), 5 * MIN)]);
        let Transition::Firing { title, .. } = &t[0] else {
            panic!()
        };
        assert_eq!(title, "memory 99");
        assert!(e.tick(6 * MIN, &never).is_empty());

        let t = e.observe_metric(&h, "memory.used_pct", &none, 10.0, 7 * MIN);
        assert_eq!(kinds(&t), [("S", "10".into(), 7 * MIN)]);
        assert!(e.tick(17 * MIN - 1, &never).is_empty());
        assert_eq!(
            kinds(&e.tick(17 * MIN, &never)),
            [("R", "10".into(), 17 * MIN)]
        );
        assert!(e.open_incidents().is_empty());
        assert!(e.tick(18 * MIN, &never).is_empty());
    }

    #[test]
    fn check_rules_fire_on_listed_statuses_and_resolve_only_on_ok() {
        let mut e = engine(
            r#"
[[rule]]
id = "smart"
title = "{check_id} on {host}: {check_value} ({threshold})"
severity = "II"
hosts = "all"
check = "disk.smart.health:*"
status = ["critical"]

[[rule]]
id = "av.unknown"
title = "av unknown on {host}: {value}"
severity = "IV"
hosts = "all"
check = "av.status"
status = ["unknown"]
"#,
        );
        let h = host("a1");
        let mut obs = |id: &str, s: Status, v: &str, at: i64| e.observe_check(&h, id, s, v, at);
        assert!(obs("disk.smart.health:sda", Status::Ok, "PASSED", 0).is_empty());
        let t = obs("disk.smart.health:sda", Status::Critical, "FAILED", 1);
        let [Transition::Firing { title, key, .. }] = t.as_slice() else {
            panic!("{t:?}")
        };
        assert_eq!(
            title,
            "disk.smart.health:sda on a1.example: FAILED (critical)"
        );
        assert_eq!(key.labels_json(), r#"{"check_id":"disk.smart.health:sda"}"#);
        // Another disk is another incident; the prefix must match.
        assert_eq!(
            kinds(&obs("disk.smart.health:sdb", Status::Critical, "x", 2)).len(),
            1
        );
        assert!(obs("disk.smart.healthy", Status::Critical, "x", 2).is_empty());
        // Unknown and warning are not OK: the incident stays open.
        assert_eq!(
            kinds(&obs(
                "disk.smart.health:sda",
                Status::Unknown,
                "no smartctl",
                3
            )),
            [("S", "no smartctl".into(), 3)]
        );
        assert_eq!(
            kinds(&obs("disk.smart.health:sda", Status::Warning, "w", 4)),
            [("S", "w".into(), 4)]
        );
        assert_eq!(
            kinds(&obs("disk.smart.health:sda", Status::Ok, "PASSED", 5)),
            [("R", "PASSED".into(), 5)]
        );
        // A rule may fire on unknown when it lists it.
        assert_eq!(
            kinds(&obs("av.status", Status::Unknown, "", 6)),
            [("F", "".into(), 6)]
        );
        assert_eq!(
            kinds(&obs("av.status", Status::Critical, "disabled", 7)),
            [("S", "disabled".into(), 7)]
        );
        assert_eq!(
            kinds(&obs("av.status", Status::Ok, "protected", 8)),
            [("R", "protected".into(), 8)]
        );
        assert_eq!(Status::from_text("bogus"), Status::Unknown);
    }

    #[test]
    fn scope_limits_which_hosts_a_rule_sees() {
        let mut e = engine(
            r#"
[[rule]]
id = "prod.cpu"
title = "cpu {value}"
severity = "II"
labels = { env = "prod" }
os = ["linux"]
metric = "cpu.usage_pct"
op = ">"
threshold = 90
"#,
        );
        let none = BTreeMap::new();
        let mut prod = host("p");
        prod.labels.insert("env".into(), "prod".into());
        let mut prod_win = prod.clone();
        prod_win.agent_id = "w".into();
        prod_win.os_name = "Windows".into();
        assert_eq!(
            e.observe_metric(&prod, "cpu.usage_pct", &none, 95.0, 0)
                .len(),
            1
        );
        assert!(
            e.observe_metric(&prod_win, "cpu.usage_pct", &none, 95.0, 0)
                .is_empty()
        );
        assert!(
            e.observe_metric(&host("t"), "cpu.usage_pct", &none, 95.0, 0)
                .is_empty()
        );
    }

    #[test]
    fn flapping_is_marked_and_held_open_for_the_damping_period() {
        let mut e = engine(FS);
        let h = host("a1");
        let mut obs = |v: f64, at: i64| e.observe_metric(&h, "fs.used_pct", &mount("/"), v, at);
        let mut t = 0;
        for cycle in 0..FLAP_LIMIT + 1 {
            let fired = obs(90.0, t);
            assert_eq!(kinds(&fired)[0].0, "F", "cycle {cycle}");
            assert!(!fired[0].flapping(), "cycle {cycle}");
            let resolved = obs(70.0, t + MIN);
            assert_eq!(kinds(&resolved)[0].0, "R", "cycle {cycle}");
            t += 2 * MIN;
        }
        // Fired and resolved 5 times within the hour: the next incident is
        // flapping and needs 10 minutes clear (clear_for is 0) to resolve.
        let fired = obs(90.0, t);
        assert!(
            matches!(fired[0], Transition::Firing { flapping: true, .. }),
            "{fired:?}"
        );
        let still = obs(70.0, t + MIN);
        assert!(
            matches!(still[0], Transition::StillFiring { flapping: true, .. }),
            "{still:?}"
        );
        assert!(obs(90.0, t + 2 * MIN)[0].flapping());
        assert_eq!(kinds(&obs(70.0, t + 3 * MIN))[0].0, "S");
        assert!(e.tick(t + 13 * MIN - 1, &never).is_empty());
        let resolved = e.tick(t + 13 * MIN, &never);
        assert!(
            matches!(resolved[0], Transition::Resolved { flapping: true, .. }),
            "{resolved:?}"
        );

        // An hour later the history has aged out: normal behaviour again.
        let later = t + 80 * MIN;
        let fired = e.observe_metric(&h, "fs.used_pct", &mount("/"), 90.0, later);
        assert!(!fired[0].flapping());
        let resolved = e.observe_metric(&h, "fs.used_pct", &mount("/"), 70.0, later + 1);
        assert_eq!(kinds(&resolved)[0].0, "R");
    }

    const OFFLINE: &str = r#"
[[rule]]
id = "offline"
title = "{host} silent for {value}"
description = "threshold {threshold}"
severity = "II"
hosts = "all"
kind = "agent_offline"
after = "5m"
"#;

    #[test]
    fn offline_agents_are_detected_by_tick() {
        let mut e = engine(OFFLINE);
        e.set_host(host("a1"));
        e.set_host(host("a2"));
        e.set_host(host("new"));
        let seen = |id: &str| match id {
            "a1" => Some(0),
            "a2" => Some(4 * MIN),
            _ => None,
        };
        assert!(e.tick(5 * MIN - 1, &seen).is_empty());
        let t = e.tick(5 * MIN + 12_000, &seen);
        let [
            Transition::Firing {
                key,
                title,
                description,
                ..
            },
        ] = t.as_slice()
        else {
            panic!("{t:?}")
        };
        assert_eq!(key.agent_id, "a1");
        assert_eq!(title, "a1.example silent for 5m 12s");
        assert_eq!(description.as_deref(), Some("threshold 5m"));
        // Still offline: no repeat, no update.
        assert!(e.tick(6 * MIN, &seen).is_empty());
        // a2 goes silent too; "new" was never seen and is not judged.
        let t = e.tick(9 * MIN, &seen);
        assert_eq!(t.len(), 1);
        assert_eq!(t[0].key().agent_id, "a2");
        // a1 reports again.
        let back = |id: &str| if id == "a1" { Some(10 * MIN) } else { seen(id) };
        let t = e.tick(10 * MIN, &back);
        assert_eq!(kinds(&t), [("R", "0s".into(), 10 * MIN)]);
        assert_eq!(t[0].key().agent_id, "a1");
        assert_eq!(e.open_incidents().len(), 1);
        assert_eq!(e.forget_host("a2").len(), 1);
        assert!(e.open_incidents().is_empty());
    }

    #[test]
    fn spool_dropping_fires_when_the_dropped_counter_rises() {
        let mut e = engine(
            r#"
[[rule]]
id = "spool"
title = "{host} dropping ({value} dropped)"
severity = "III"
hosts = "all"
kind = "spool_dropping"
clear_for = "30m"
"#,
        );
        let h = host("a1");
        let none = BTreeMap::new();
        let mut obs =
            |v: f64, at: i64| kinds(&e.observe_metric(&h, SPOOL_DROPPED_METRIC, &none, v, at));
        // The first figure is a baseline, even when non-zero.
        assert_eq!(obs(12.0, 0), []);
        assert_eq!(obs(12.0, MIN), []);
        assert_eq!(obs(15.0, 2 * MIN), [("F", "15".into(), 2 * MIN)]);
        assert_eq!(obs(20.0, 3 * MIN), [("S", "20".into(), 3 * MIN)]);
        assert_eq!(obs(20.0, 4 * MIN), [("S", "20".into(), 4 * MIN)]);
        assert_eq!(obs(20.0, 34 * MIN), [("R", "20".into(), 34 * MIN)]);
        // A counter that goes down (agent reinstalled) is a new baseline.
        assert_eq!(obs(0.0, 35 * MIN), []);
        assert_eq!(obs(1.0, 36 * MIN), [("F", "1".into(), 36 * MIN)]);
        // The counter survives ticks that prune idle state.
        e.tick(200 * MIN, &never);
        let t = e.observe_metric(&h, SPOOL_DROPPED_METRIC, &none, 1.0, 201 * MIN);
        assert_eq!(kinds(&t), [("S", "1".into(), 201 * MIN)]);
    }

    #[test]
    fn reload_keeps_state_of_surviving_rules_and_returns_dropped_incidents() {
        let two = format!("{FS}\n{MEM}");
        let mut e = engine(&two);
        let h = host("a1");
        let none = BTreeMap::new();
        assert_eq!(
            e.observe_metric(&h, "fs.used_pct", &mount("/"), 90.0, 0)
                .len(),
            1
        );
        assert_eq!(
            e.observe_metric(&h, "memory.used_pct", &none, 99.0, 0)
                .len(),
            0
        );
        // "fs" survives with a new threshold; "mem" is gone.
        let new = FS.replace("threshold = 85", "threshold = 88");
        let dropped = e.replace_rules(parse_rules("t.toml", &new).unwrap());
        assert!(dropped.is_empty(), "pending mem was not open: {dropped:?}");
        let t = e.observe_metric(&h, "fs.used_pct", &mount("/"), 91.0, 1);
        assert_eq!(kinds(&t), [("S", "91".into(), 1)]);
        // A rule whose id survives but watches something else starts over.
        let other = FS.replace("fs.used_pct", "fs.inodes_used_pct");
        let dropped = e.replace_rules(parse_rules("t.toml", &other).unwrap());
        assert_eq!(dropped.len(), 1);
        assert_eq!(dropped[0].rule_id, "fs");
        assert!(e.open_incidents().is_empty());
        assert_eq!(e.rules().len(), 1);
    }

    #[test]
    fn extreme_and_out_of_order_times_do_not_panic() {
        let mut e = engine(&format!("{MEM}\n{OFFLINE}"));
        let h = host("a1");
        let none = BTreeMap::new();
        for at in [i64::MAX, i64::MIN, 0, i64::MAX, -1] {
            e.observe_metric(&h, "memory.used_pct", &none, 99.0, at);
            e.observe_metric(&h, "memory.used_pct", &none, 1.0, at);
            e.tick(at, &|_| Some(i64::MIN));
            e.tick(at, &|_| Some(i64::MAX));
        }
        assert_eq!(format_number(-0.0), "0");
        assert_eq!(format_number(1e20), "100000000000000000000");
        assert_eq!(format_number(2.5), "2.5");
    }
}
