//! The rules file: TOML text to a validated [`RuleSet`].
//!
//! A file is accepted whole or not at all, so a reload with a mistake keeps
//! the previous set running. Every problem names the line and column: syntax
//! and type errors come from toml's spans (the first one stops parsing);
//! semantic problems are collected across all rules so one edit-reload cycle
//! shows them all.
//!
//! Format (one `[[rule]]` table per rule):
//!
//! ```toml
//! [[rule]]
//! id = "fs.used.warning"                  # unique, [a-z0-9_.-]
//! title = "{labels.mount} on {host} is {value}% full"
//! description = "optional, same placeholders"
//! severity = "III"                        # I (most urgent) .. IV
//! hosts = "all"                           # or any of: labels = {env = "prod"},
//!                                         # groups = ["db"], os = ["linux"]
//! metric = "fs.used_pct"                  # or check = "disk.smart.health:*",
//!                                         # or kind = "agent_offline" | "spool_dropping"
//! match_labels = { fstype = "ext4" }      # metric rules: exact label match
//! op = ">="                               # > >= < <= == !=
//! threshold = 85
//! recover_op = "<"                        # default: the negation of `op`
//! recover_threshold = 80                  # default: `threshold`
//! for = "5m"                              # condition must hold this long (default 0)
//! clear_for = "5m"                        # recovery must hold this long (default 0)
//! ```
//!
//! Check rules take `status = ["warning", "critical"]` (`unknown` may be
//! listed; `ok` is what recovers); `agent_offline` takes `after = "5m"`.

use std::collections::{BTreeMap, HashMap};
use std::ops::Range;

use serde::Deserialize;
use toml::Spanned;

use super::template::{Template, TemplateError};
use super::{HostFacts, Severity, Status};

/// The rules shipped with the collector (`collector/rules/default.toml`).
pub const DEFAULT_RULES_TOML: &str = include_str!("../../rules/default.toml");

/// Longest `for`, `clear_for` or `after`: longer waits are almost certainly
/// a unit mistake ("7y" for "7d").
const MAX_DURATION_MS: i64 = 366 * 86_400_000;
const MAX_ID_LEN: usize = 128;

/// Parses the shipped default rules. Cannot fail in a released build (a test
/// parses the same text), but stays a `Result` so no input can panic.
pub fn default_rules() -> Result<RuleSet, RulesError> {
    parse_rules("collector/rules/default.toml", DEFAULT_RULES_TOML)
}

/// One problem in a rules file. Lines and columns count from 1; columns in
/// characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub line: usize,
    pub column: usize,
    pub reason: String,
}

/// Why a rules file was refused: every problem found, in file order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RulesError {
    pub path: String,
    pub problems: Vec<Problem>,
}

impl std::fmt::Display for RulesError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, p) in self.problems.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{}:{}:{}: {}", self.path, p.line, p.column, p.reason)?;
        }
        Ok(())
    }
}

impl std::error::Error for RulesError {}

/// A validated set of rules, in file order, ids unique.
#[derive(Debug, Clone, Default)]
pub struct RuleSet {
    rules: Vec<Rule>,
    by_id: HashMap<String, usize>,
}

impl RuleSet {
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    pub fn get(&self, id: &str) -> Option<&Rule> {
        self.by_id.get(id).and_then(|&i| self.rules.get(i))
    }

    pub fn len(&self) -> usize {
        self.rules.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }
}

/// One validated rule.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    pub id: String,
    pub title: Template,
    pub description: Option<Template>,
    pub severity: Severity,
    pub scope: Scope,
    pub target: Target,
    /// How long the firing condition must hold before the incident opens.
    pub for_ms: i64,
    /// How long the recovery condition must hold before it resolves.
    pub clear_for_ms: i64,
    /// Line of the rule's `[[rule]]` header, for log messages.
    pub line: usize,
}

impl Rule {
    /// What `{threshold}` renders and what a `Firing` transition carries.
    pub fn threshold_text(&self) -> String {
        match &self.target {
            Target::Metric { fire, .. } => fire.to_string(),
            Target::Check { statuses, .. } => statuses
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(" or "),
            Target::AgentOffline { after_ms } => format_ms(*after_ms),
            Target::SpoolDropping => "rising".into(),
        }
    }
}

/// Which hosts a rule applies to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    All,
    /// Every given criterion must hold; an empty one is not a criterion.
    /// `groups`: the host is in at least one; `os`: a family ("linux",
    /// "windows", "macos", "bsd") or an exact OS name, case-insensitive.
    Hosts {
        labels: BTreeMap<String, String>,
        groups: Vec<String>,
        os: Vec<String>,
    },
}

impl Scope {
    pub fn matches(&self, host: &HostFacts) -> bool {
        match self {
            Scope::All => true,
            Scope::Hosts { labels, groups, os } => {
                labels.iter().all(|(k, v)| host.labels.get(k) == Some(v))
                    && (groups.is_empty() || host.groups.iter().any(|g| groups.contains(g)))
                    && (os.is_empty()
                        || os.iter().any(|o| {
                            host.os_family().is_some_and(|f| o.eq_ignore_ascii_case(f))
                                || (!host.os_name.is_empty()
                                    && o.eq_ignore_ascii_case(host.os_name.trim()))
                        }))
            }
        }
    }
}

/// What a rule watches.
#[derive(Debug, Clone, PartialEq)]
pub enum Target {
    /// Each series (distinct label set) of the metric is its own incident.
    Metric {
        name: String,
        match_labels: BTreeMap<String, String>,
        fire: Condition,
        recover: Condition,
    },
    /// Each matching check id is its own incident; fires on `statuses`,
    /// recovers on `ok`, any other status leaves the state as it is.
    Check {
        pattern: CheckPattern,
        statuses: Vec<Status>,
    },
    /// No report from the agent for `after`.
    AgentOffline { after_ms: i64 },
    /// The agent's dropped-reports counter rose since its previous report.
    SpoolDropping,
}

/// The kinds of target; also decides which fields and placeholders apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    Metric,
    Check,
    AgentOffline,
    SpoolDropping,
}

impl Kind {
    pub(super) fn name(self) -> &'static str {
        match self {
            Kind::Metric => "metric",
            Kind::Check => "check",
            Kind::AgentOffline => "agent_offline",
            Kind::SpoolDropping => "spool_dropping",
        }
    }
}

impl Target {
    pub(super) fn kind(&self) -> Kind {
        match self {
            Target::Metric { .. } => Kind::Metric,
            Target::Check { .. } => Kind::Check,
            Target::AgentOffline { .. } => Kind::AgentOffline,
            Target::SpoolDropping => Kind::SpoolDropping,
        }
    }
}

/// A check id, or a prefix written with a trailing `*`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckPattern {
    Exact(String),
    Prefix(String),
}

impl CheckPattern {
    pub fn matches(&self, check_id: &str) -> bool {
        match self {
            CheckPattern::Exact(id) => id == check_id,
            CheckPattern::Prefix(p) => check_id.starts_with(p.as_str()),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Gt,
    Ge,
    Lt,
    Le,
    Eq,
    Ne,
}

impl Op {
    pub fn parse(text: &str) -> Option<Op> {
        match text {
            ">" => Some(Op::Gt),
            ">=" => Some(Op::Ge),
            "<" => Some(Op::Lt),
            "<=" => Some(Op::Le),
            "==" => Some(Op::Eq),
            "!=" => Some(Op::Ne),
            _ => None,
        }
    }

    pub fn symbol(self) -> &'static str {
        match self {
            Op::Gt => ">",
            Op::Ge => ">=",
            Op::Lt => "<",
            Op::Le => "<=",
            Op::Eq => "==",
            Op::Ne => "!=",
        }
    }

    pub fn negate(self) -> Op {
        match self {
            Op::Gt => Op::Le,
            Op::Ge => Op::Lt,
            Op::Lt => Op::Ge,
            Op::Le => Op::Gt,
            Op::Eq => Op::Ne,
            Op::Ne => Op::Eq,
        }
    }
}

/// `value <op> threshold`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Condition {
    pub op: Op,
    pub threshold: f64,
}

impl Condition {
    pub fn holds(&self, value: f64) -> bool {
        let t = self.threshold;
        match self.op {
            Op::Gt => value > t,
            Op::Ge => value >= t,
            Op::Lt => value < t,
            Op::Le => value <= t,
            Op::Eq => value == t,
            Op::Ne => value != t,
        }
    }
}

impl std::fmt::Display for Condition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {}",
            self.op.symbol(),
            super::engine::format_number(self.threshold)
        )
    }
}

/// A value where both conditions hold, if any. Each condition's set is a
/// half-line, a point or the complement of a point, so any overlap contains
/// one of the thresholds, a point between them, or a point beyond both.
fn overlap(a: &Condition, b: &Condition) -> Option<f64> {
    let (lo, hi) = (a.threshold.min(b.threshold), a.threshold.max(b.threshold));
    [
        a.threshold,
        b.threshold,
        lo / 2.0 + hi / 2.0,
        -f64::MAX,
        f64::MAX,
    ]
    .into_iter()
    .find(|&v| a.holds(v) && b.holds(v))
}

pub(super) fn format_ms(ms: i64) -> String {
    let secs = u64::try_from(ms / 1000).unwrap_or(0);
    humantime::format_duration(std::time::Duration::from_secs(secs)).to_string()
}

// ------------------------------------------------------------------ parsing

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    rule: Vec<Spanned<RawRule>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    id: Option<Spanned<String>>,
    title: Option<Spanned<String>>,
    description: Option<Spanned<String>>,
    severity: Option<Spanned<String>>,
    hosts: Option<Spanned<String>>,
    labels: Option<Spanned<BTreeMap<String, String>>>,
    groups: Option<Spanned<Vec<String>>>,
    os: Option<Spanned<Vec<Spanned<String>>>>,
    metric: Option<Spanned<String>>,
    match_labels: Option<Spanned<BTreeMap<String, String>>>,
    check: Option<Spanned<String>>,
    kind: Option<Spanned<String>>,
    after: Option<Spanned<String>>,
    op: Option<Spanned<String>>,
    threshold: Option<Spanned<f64>>,
    recover_op: Option<Spanned<String>>,
    recover_threshold: Option<Spanned<f64>>,
    status: Option<Spanned<Vec<Spanned<String>>>>,
    #[serde(rename = "for")]
    for_: Option<Spanned<String>>,
    clear_for: Option<Spanned<String>>,
}

/// Parses and validates a rules file; `path_for_messages` only labels errors.
pub fn parse_rules(path_for_messages: &str, text: &str) -> Result<RuleSet, RulesError> {
    let raw: RawFile = toml::from_str(text).map_err(|e| {
        let (line, column) = e.span().map_or((1, 1), |s| line_col(text, s.start));
        RulesError {
            path: path_for_messages.to_owned(),
            problems: vec![Problem {
                line,
                column,
                reason: e.message().trim().to_owned(),
            }],
        }
    })?;

    let mut check = Checker {
        text,
        problems: Vec::new(),
    };
    let mut set = RuleSet::default();
    let mut first_line: HashMap<String, usize> = HashMap::new();
    for raw_rule in raw.rule {
        let header = raw_rule.span();
        // Duplicates are judged on the id as written, so a duplicate is
        // reported even when the first rule with that id has other problems.
        let duplicate = match &raw_rule.get_ref().id {
            Some(id) => match first_line.get(id.get_ref()) {
                Some(&line) => {
                    check.problem(
                        id.span(),
                        format!(
                            "duplicate rule id `{}` (first defined at line {line})",
                            id.get_ref()
                        ),
                    );
                    true
                }
                None => {
                    first_line.insert(id.get_ref().clone(), line_col(text, header.start).0);
                    false
                }
            },
            None => false,
        };
        let Some(rule) = check.rule(header, raw_rule.into_inner()) else {
            continue;
        };
        if !duplicate {
            set.by_id.insert(rule.id.clone(), set.rules.len());
            set.rules.push(rule);
        }
    }
    if check.problems.is_empty() {
        Ok(set)
    } else {
        let mut problems = check.problems;
        problems.sort_by_key(|p| (p.line, p.column));
        Err(RulesError {
            path: path_for_messages.to_owned(),
            problems,
        })
    }
}

/// 1-based line and character column of a byte offset; offsets past the end
/// or inside a character are clamped rather than trusted.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, before[line_start..].chars().count() + 1)
}

struct Checker<'a> {
    text: &'a str,
    problems: Vec<Problem>,
}

impl Checker<'_> {
    fn problem(&mut self, span: Range<usize>, reason: String) {
        let (line, column) = line_col(self.text, span.start);
        self.problems.push(Problem {
            line,
            column,
            reason,
        });
    }

    /// Validates one rule, recording every problem; `None` if there was any.
    fn rule(&mut self, header: Range<usize>, r: RawRule) -> Option<Rule> {
        let before = self.problems.len();
        let missing = |this: &mut Self, field: &str| {
            this.problem(header.clone(), format!("rule has no `{field}`"));
        };

        let id = match &r.id {
            None => {
                missing(self, "id");
                None
            }
            Some(id) => {
                let v = id.get_ref();
                if v.is_empty()
                    || v.len() > MAX_ID_LEN
                    || !v.bytes().all(|b| {
                        b.is_ascii_lowercase() || b.is_ascii_digit() || b"_.-".contains(&b)
                    })
                {
                    self.problem(
                        id.span(),
                        format!(
                            "rule id {v:?} must be 1 to {MAX_ID_LEN} characters of a-z, 0-9, `_`, `.`, `-`"
                        ),
                    );
                    None
                } else {
                    Some(v.clone())
                }
            }
        };

        let severity = match &r.severity {
            None => {
                missing(self, "severity");
                None
            }
            Some(s) => {
                let parsed = Severity::parse(s.get_ref());
                if parsed.is_none() {
                    self.problem(
                        s.span(),
                        format!(
                            "severity {:?} is not one of \"I\", \"II\", \"III\", \"IV\"",
                            s.get_ref()
                        ),
                    );
                }
                parsed
            }
        };

        let scope = self.scope(&header, &r);
        let target = self.target(&header, &r);
        let for_ms = self.duration(r.for_.as_ref(), "for", true);
        let clear_for_ms = self.duration(r.clear_for.as_ref(), "clear_for", true);

        // Templates are checked against the target's kind; without a valid
        // target the placeholders cannot be judged, and that problem is
        // already reported.
        let kind = target.as_ref().map(Target::kind);
        let title = match (&r.title, kind) {
            (None, _) => {
                missing(self, "title");
                None
            }
            (Some(t), _) if t.get_ref().trim().is_empty() => {
                self.problem(t.span(), "title is empty".into());
                None
            }
            (Some(t), Some(kind)) => self.template(t, "title", kind),
            (Some(_), None) => None,
        };
        let description = match (&r.description, kind) {
            (Some(d), Some(kind)) => self.template(d, "description", kind).map(Some),
            _ => Some(None),
        };

        if self.problems.len() != before {
            return None;
        }
        Some(Rule {
            id: id?,
            title: title?,
            description: description?,
            severity: severity?,
            scope: scope?,
            target: target?,
            for_ms: for_ms?,
            clear_for_ms: clear_for_ms?,
            line: line_col(self.text, header.start).0,
        })
    }

    fn scope(&mut self, header: &Range<usize>, r: &RawRule) -> Option<Scope> {
        let criteria = r.labels.is_some() || r.groups.is_some() || r.os.is_some();
        if let Some(hosts) = &r.hosts {
            if hosts.get_ref() != "all" {
                self.problem(
                    hosts.span(),
                    format!(
                        "hosts = {:?}: the only value is \"all\"; select hosts with `labels`, `groups` or `os`",
                        hosts.get_ref()
                    ),
                );
                return None;
            }
            if criteria {
                self.problem(
                    hosts.span(),
                    "hosts = \"all\" cannot be combined with `labels`, `groups` or `os`".into(),
                );
                return None;
            }
            return Some(Scope::All);
        }
        if !criteria {
            self.problem(
                header.clone(),
                "rule has no scope: set hosts = \"all\" or any of `labels`, `groups`, `os`".into(),
            );
            return None;
        }
        let mut ok = true;
        if let Some(groups) = &r.groups
            && (groups.get_ref().is_empty() || groups.get_ref().iter().any(String::is_empty))
        {
            self.problem(groups.span(), "groups must be non-empty names".into());
            ok = false;
        }
        if let Some(labels) = &r.labels
            && labels.get_ref().is_empty()
        {
            self.problem(labels.span(), "labels = {} selects nothing; omit it".into());
            ok = false;
        }
        if let Some(os) = &r.os {
            if os.get_ref().is_empty() {
                self.problem(os.span(), "os = [] selects no host".into());
                ok = false;
            }
            for o in os.get_ref() {
                if o.get_ref().trim().is_empty() {
                    self.problem(o.span(), "os names must be non-empty".into());
                    ok = false;
                }
            }
        }
        ok.then(|| Scope::Hosts {
            labels: r
                .labels
                .as_ref()
                .map(|l| l.get_ref().clone())
                .unwrap_or_default(),
            groups: r
                .groups
                .as_ref()
                .map(|g| g.get_ref().clone())
                .unwrap_or_default(),
            os: r
                .os
                .as_ref()
                .map(|o| o.get_ref().iter().map(|s| s.get_ref().clone()).collect())
                .unwrap_or_default(),
        })
    }

    fn target(&mut self, header: &Range<usize>, r: &RawRule) -> Option<Target> {
        let chosen: Vec<(&str, Range<usize>)> = [
            ("metric", r.metric.as_ref().map(Spanned::span)),
            ("check", r.check.as_ref().map(Spanned::span)),
            ("kind", r.kind.as_ref().map(Spanned::span)),
        ]
        .into_iter()
        .filter_map(|(name, span)| span.map(|s| (name, s)))
        .collect();
        match chosen.as_slice() {
            [] => {
                self.problem(
                    header.clone(),
                    "rule watches nothing: set one of `metric`, `check` or `kind`".into(),
                );
                return None;
            }
            [_] => {}
            [(first, _), (second, span), ..] => {
                self.problem(
                    span.clone(),
                    format!(
                        "`{first}` and `{second}` are both set: a rule watches one thing; split it into two rules"
                    ),
                );
                return None;
            }
        }

        let kind = if r.metric.is_some() {
            Kind::Metric
        } else if r.check.is_some() {
            Kind::Check
        } else {
            let k = r.kind.as_ref()?;
            match k.get_ref().as_str() {
                "agent_offline" => Kind::AgentOffline,
                "spool_dropping" => Kind::SpoolDropping,
                other => {
                    self.problem(
                        k.span(),
                        format!(
                            "kind {other:?} is not one of \"agent_offline\", \"spool_dropping\" (metrics and checks use `metric =` / `check =`)"
                        ),
                    );
                    return None;
                }
            }
        };

        // Fields that only make sense for another kind are mistakes, not
        // noise to ignore: `threshold` on a check rule would silently do
        // nothing.
        let fields = [
            (
                "match_labels",
                r.match_labels.as_ref().map(Spanned::span),
                Kind::Metric,
            ),
            ("op", r.op.as_ref().map(Spanned::span), Kind::Metric),
            (
                "threshold",
                r.threshold.as_ref().map(Spanned::span),
                Kind::Metric,
            ),
            (
                "recover_op",
                r.recover_op.as_ref().map(Spanned::span),
                Kind::Metric,
            ),
            (
                "recover_threshold",
                r.recover_threshold.as_ref().map(Spanned::span),
                Kind::Metric,
            ),
            ("status", r.status.as_ref().map(Spanned::span), Kind::Check),
            (
                "after",
                r.after.as_ref().map(Spanned::span),
                Kind::AgentOffline,
            ),
        ];
        let mut ok = true;
        for (name, span, applies_to) in fields {
            if let Some(span) = span
                && applies_to != kind
            {
                self.problem(
                    span,
                    format!("`{name}` does not apply to {} rules", kind.name()),
                );
                ok = false;
            }
        }

        let target = match kind {
            Kind::Metric => self.metric_target(header, r),
            Kind::Check => self.check_target(header, r),
            Kind::AgentOffline => match &r.after {
                None => {
                    self.problem(
                        header.clone(),
                        "agent_offline rule has no `after` (e.g. after = \"5m\")".into(),
                    );
                    None
                }
                Some(_) => self
                    .duration(r.after.as_ref(), "after", false)
                    .map(|after_ms| Target::AgentOffline { after_ms }),
            },
            Kind::SpoolDropping => Some(Target::SpoolDropping),
        };
        if ok { target } else { None }
    }

    fn metric_target(&mut self, header: &Range<usize>, r: &RawRule) -> Option<Target> {
        let name = r.metric.as_ref()?;
        let mut ok = true;
        if name.get_ref().trim().is_empty() || name.get_ref().contains('*') {
            self.problem(
                name.span(),
                format!(
                    "metric {:?} must be a metric name (no wildcards)",
                    name.get_ref()
                ),
            );
            ok = false;
        }
        let op = self.op(r.op.as_ref(), "op");
        if r.op.is_none() {
            self.problem(header.clone(), "metric rule has no `op`".into());
        }
        let threshold = self.threshold(r.threshold.as_ref(), "threshold");
        if r.threshold.is_none() {
            self.problem(header.clone(), "metric rule has no `threshold`".into());
        }
        let recover_op = match &r.recover_op {
            Some(_) => self.op(r.recover_op.as_ref(), "recover_op").map(Some),
            None => Some(None),
        };
        let recover_threshold = match &r.recover_threshold {
            Some(_) => self
                .threshold(r.recover_threshold.as_ref(), "recover_threshold")
                .map(Some),
            None => Some(None),
        };
        let (op, threshold, recover_op, recover_threshold) =
            (op?, threshold?, recover_op?, recover_threshold?);
        let fire = Condition { op, threshold };
        let recover = Condition {
            op: recover_op.unwrap_or(op.negate()),
            threshold: recover_threshold.unwrap_or(threshold),
        };
        if let Some(v) = overlap(&fire, &recover) {
            let span = r
                .recover_op
                .as_ref()
                .map(Spanned::span)
                .or(r.recover_threshold.as_ref().map(Spanned::span))
                .unwrap_or(header.clone());
            self.problem(
                span,
                format!(
                    "recovery condition `{recover}` overlaps the firing condition `{fire}` \
                     (both hold at {}); recovery must be the other side of the threshold",
                    super::engine::format_number(v)
                ),
            );
            return None;
        }
        ok.then(|| Target::Metric {
            name: name.get_ref().clone(),
            match_labels: r
                .match_labels
                .as_ref()
                .map(|m| m.get_ref().clone())
                .unwrap_or_default(),
            fire,
            recover,
        })
    }

    fn check_target(&mut self, header: &Range<usize>, r: &RawRule) -> Option<Target> {
        let check = r.check.as_ref()?;
        let text = check.get_ref();
        let pattern = match text.strip_suffix('*') {
            _ if text.trim().is_empty() => None,
            Some(prefix) if !prefix.contains('*') => Some(CheckPattern::Prefix(prefix.to_owned())),
            None if !text.contains('*') => Some(CheckPattern::Exact(text.clone())),
            _ => None,
        };
        if pattern.is_none() {
            self.problem(
                check.span(),
                format!("check {text:?} must be a check id, optionally ending in one `*`"),
            );
        }
        let Some(status) = &r.status else {
            self.problem(
                header.clone(),
                "check rule has no `status` (e.g. status = [\"critical\"])".into(),
            );
            return None;
        };
        let mut statuses = Vec::new();
        for s in status.get_ref() {
            match Status::parse(s.get_ref()) {
                Some(Status::Ok) => self.problem(
                    s.span(),
                    "status \"ok\" cannot fire: `ok` is what resolves a check incident".into(),
                ),
                Some(st) => statuses.push(st),
                None => self.problem(
                    s.span(),
                    format!(
                        "status {:?} is not one of \"warning\", \"critical\", \"unknown\"",
                        s.get_ref()
                    ),
                ),
            }
        }
        if status.get_ref().is_empty() {
            self.problem(status.span(), "status = [] never fires".into());
        }
        statuses.sort();
        statuses.dedup();
        Some(Target::Check {
            pattern: pattern?,
            statuses,
        })
    }

    fn op(&mut self, op: Option<&Spanned<String>>, field: &str) -> Option<Op> {
        let op = op?;
        let parsed = Op::parse(op.get_ref());
        if parsed.is_none() {
            self.problem(
                op.span(),
                format!(
                    "{field} {:?} is not one of >, >=, <, <=, ==, !=",
                    op.get_ref()
                ),
            );
        }
        parsed
    }

    fn threshold(&mut self, t: Option<&Spanned<f64>>, field: &str) -> Option<f64> {
        let t = t?;
        if t.get_ref().is_finite() {
            Some(*t.get_ref())
        } else {
            self.problem(t.span(), format!("{field} must be a finite number"));
            None
        }
    }

    /// An absent optional duration is 0.
    fn duration(&mut self, d: Option<&Spanned<String>>, field: &str, zero_ok: bool) -> Option<i64> {
        let Some(d) = d else { return Some(0) };
        let ms = match humantime::parse_duration(d.get_ref().trim()) {
            Ok(v) => i64::try_from(v.as_millis()).unwrap_or(i64::MAX),
            Err(e) => {
                self.problem(
                    d.span(),
                    format!(
                        "{field} = {:?} is not a duration like \"90s\", \"5m\", \"7d\": {e}",
                        d.get_ref()
                    ),
                );
                return None;
            }
        };
        if ms > MAX_DURATION_MS || (!zero_ok && ms == 0) {
            let bound = if zero_ok {
                "at most 366d"
            } else {
                "more than 0 and at most 366d"
            };
            self.problem(
                d.span(),
                format!("{field} = {:?} must be {bound}", d.get_ref()),
            );
            return None;
        }
        Some(ms)
    }

    fn template(&mut self, t: &Spanned<String>, field: &str, kind: Kind) -> Option<Template> {
        match Template::parse(t.get_ref(), kind) {
            Ok(t) => Some(t),
            Err(TemplateError { offset, reason }) => {
                let span = t.span();
                // Point at the placeholder itself when the source is a plain
                // one-line string (no escapes, so offsets map one to one);
                // otherwise at the start of the value.
                let raw = self.text.get(span.clone()).unwrap_or("");
                let plain =
                    (raw.starts_with('"') && !raw.starts_with("\"\"\"") && !raw.contains('\\'))
                        || (raw.starts_with('\'') && !raw.starts_with("'''"));
                let at = if plain {
                    span.start + 1 + offset
                } else {
                    span.start
                };
                self.problem(at..at, format!("{field}: {reason}"));
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(text: &str) -> Vec<(usize, usize, String)> {
        let e = parse_rules("rules.toml", text).expect_err("must be refused");
        assert_eq!(e.path, "rules.toml");
        e.problems
            .into_iter()
            .map(|p| (p.line, p.column, p.reason))
            .collect()
    }

    fn one_rule(body: &str) -> Rule {
        let text = format!(
            "[[rule]]\nid = \"r\"\ntitle = \"t\"\nseverity = \"II\"\nhosts = \"all\"\n{body}"
        );
        let set = parse_rules("rules.toml", &text).unwrap_or_else(|e| panic!("{e}"));
        set.rules()[0].clone()
    }

    fn host(os_name: &str, labels: &[(&str, &str)], groups: &[&str]) -> HostFacts {
        HostFacts {
            agent_id: "a1".into(),
            hostname: "web1".into(),
            os_name: os_name.into(),
            labels: labels
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            groups: groups.iter().map(|g| (*g).to_owned()).collect(),
        }
    }

    #[test]
    fn default_rules_parse_and_cover_the_required_areas() {
        let set = default_rules().unwrap_or_else(|e| panic!("{e}"));
        let ids: Vec<&str> = set.rules().iter().map(|r| r.id.as_str()).collect();
        assert_eq!(
            ids,
            [
                "fs.used.warning",
                "fs.used.critical",
                "fs.inodes.warning",
                "fs.inodes.critical",
                "memory.used",
                "swap.used",
                "cpu.sustained",
                "disk.smart.critical",
                "disk.smart.warning",
                "disk.raid.critical",
                "disk.raid.warning",
                "av.not_protected",
                "av.unknown",
                "patch.security_pending",
                "os.reboot_required",
                "baseline.critical",
                "service.failed_units",
                "time.sync",
                "agent.offline",
                "agent.series_limit",
                "agent.spool_dropping",
            ]
        );
        let metric = |id: &str| match &set.get(id).unwrap().target {
            Target::Metric {
                name,
                fire,
                recover,
                ..
            } => (name.clone(), fire.to_string(), recover.to_string()),
            other => panic!("{id}: {other:?}"),
        };
        let fs = |w: &str, f: &str, r: &str| {
            ("fs.used_pct".to_owned(), w.to_owned(), r.to_owned()).eq(&metric(f))
        };
        assert!(fs(">= 85", "fs.used.warning", "< 80"));
        assert!(fs(">= 95", "fs.used.critical", "< 90"));
        assert_eq!(set.get("fs.used.warning").unwrap().severity, Severity::III);
        assert_eq!(set.get("fs.used.critical").unwrap().severity, Severity::II);
        assert_eq!(metric("fs.inodes.warning").1, ">= 90");
        assert_eq!(metric("fs.inodes.critical").1, ">= 95");
        assert_eq!(metric("memory.used").1, "> 95");
        assert_eq!(set.get("memory.used").unwrap().for_ms, 300_000);
        assert_eq!(metric("swap.used").1, "> 80");
        assert_eq!(set.get("swap.used").unwrap().for_ms, 600_000);
        assert_eq!(metric("cpu.sustained").0, "cpu.usage_pct");
        assert_eq!(set.get("cpu.sustained").unwrap().for_ms, 900_000);

        let check = |id: &str| match &set.get(id).unwrap().target {
            Target::Check { pattern, statuses } => (pattern.clone(), statuses.clone()),
            other => panic!("{id}: {other:?}"),
        };
        use Status::*;
        let prefix = |p: &str| CheckPattern::Prefix(p.to_owned());
        let exact = |p: &str| CheckPattern::Exact(p.to_owned());
        assert_eq!(
            check("disk.smart.critical"),
            (prefix("disk.smart.health:"), vec![Critical])
        );
        assert_eq!(
            check("disk.smart.warning"),
            (prefix("disk.smart.health:"), vec![Warning])
        );
        assert_eq!(
            check("disk.raid.critical"),
            (prefix("disk.raid.state:"), vec![Critical])
        );
        assert_eq!(set.get("disk.raid.critical").unwrap().severity, Severity::I);
        assert_eq!(
            check("av.not_protected"),
            (exact("av.status"), vec![Warning, Critical])
        );
        assert_eq!(check("av.unknown"), (exact("av.status"), vec![Unknown]));
        assert_eq!(set.get("av.unknown").unwrap().severity, Severity::IV);
        assert_eq!(check("patch.security_pending").1, vec![Critical]);
        assert_eq!(
            set.get("patch.security_pending").unwrap().for_ms,
            7 * 86_400_000
        );
        assert_eq!(
            set.get("os.reboot_required").unwrap().for_ms,
            7 * 86_400_000
        );
        assert_eq!(
            set.get("os.reboot_required").unwrap().severity,
            Severity::IV
        );
        assert_eq!(check("baseline.critical").0, prefix("baseline."));
        assert_eq!(check("service.failed_units").1, vec![Critical]);
        assert_eq!(check("time.sync").1, vec![Warning, Critical]);
        assert_eq!(
            set.get("agent.offline").unwrap().target,
            Target::AgentOffline { after_ms: 300_000 }
        );
        assert_eq!(set.get("agent.offline").unwrap().severity, Severity::II);
        assert_eq!(
            set.get("agent.spool_dropping").unwrap().target,
            Target::SpoolDropping
        );
    }

    #[test]
    fn toml_syntax_errors_name_line_and_column() {
        let p = problems("[[rule]]\nid = \"a\"\ntitle = \"unterminated\nseverity = \"II\"\n");
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].0, 3, "{p:?}");
        let p = problems("# ok\n\n[[rule]\n");
        assert_eq!((p[0].0, p[0].1), (3, 8), "{p:?}");
        let e = parse_rules("x.toml", "[[rule]]\nid = = 1\n").unwrap_err();
        assert!(e.to_string().starts_with("x.toml:2:"), "{e}");
    }

    #[test]
    fn unknown_fields_and_wrong_types_name_the_line() {
        let p = problems("[[rule]]\nid = \"a\"\n  treshold = 5\n");
        assert_eq!((p[0].0, p[0].1), (3, 3), "{p:?}");
        assert!(p[0].2.contains("unknown field `treshold`"), "{p:?}");
        let p = problems("[[rule]]\nid = \"a\"\nthreshold = \"high\"\n");
        assert_eq!(p[0].0, 3, "{p:?}");
        let p = problems("[[rules]]\nid = \"a\"\n");
        assert!(p[0].2.contains("unknown field `rules`"), "{p:?}");
    }

    #[test]
    fn semantic_mistakes_are_all_reported_with_their_lines() {
        let text = r#"# several mistakes, each on a known line
[[rule]]
id = "fs.full"
title = "{host} full"
severity = "V"
hosts = "all"
metric = "fs.used_pct"
op = ">"
threshold = 90

[[rule]]
id = "fs.full"
title = "{host} full"
severity = "II"
hosts = "all"
metric = "fs.used_pct"
op = ">"
threshold = 90

[[rule]]
id = "smart"
title = "Disk {host} {labels.mount} at {velue}"
severity = "II"
hosts = "all"
check = "disk.smart.health:*"
status = ["critical"]

[[rule]]
id = "both"
title = "t"
severity = "III"
hosts = "all"
metric = "cpu.usage_pct"
check = "time.sync"

[[rule]]
id = "Bad Id"
severity = "I"
hosts = "all"
kind = "agent_offline"
after = "soon"
"#;
        let e = parse_rules("rules.toml", text).unwrap_err();
        let p: Vec<(usize, usize, &str)> = e
            .problems
            .iter()
            .map(|p| (p.line, p.column, p.reason.as_str()))
            .collect();
        let has = |line: usize, col: Option<usize>, needle: &str| {
            assert!(
                p.iter().any(|&(l, c, r)| l == line
                    && col.is_none_or(|col| col == c)
                    && r.contains(needle)),
                "no problem at line {line} containing {needle:?}: {p:#?}"
            );
        };
        has(5, Some(12), "severity \"V\" is not one of");
        has(
            12,
            Some(6),
            "duplicate rule id `fs.full` (first defined at line 2)",
        );
        // The column points at the placeholder itself, not the string.
        has(
            22,
            Some(22),
            "placeholder `{labels.mount}` is only available in metric rules",
        );
        has(34, Some(9), "`metric` and `check` are both set");
        has(36, Some(1), "rule has no `title`");
        has(37, Some(6), "rule id \"Bad Id\"");
        has(41, Some(9), "after = \"soon\" is not a duration");
        assert_eq!(p.len(), 7, "{p:#?}");
        // Only the first template problem of a title is reported.
        assert!(!p.iter().any(|&(_, _, r)| r.contains("velue")));
        assert!(
            e.to_string().lines().all(|l| l.starts_with("rules.toml:")),
            "{e}"
        );
    }

    #[test]
    fn misplaced_and_inconsistent_fields_are_refused() {
        let base = "[[rule]]\nid = \"r\"\ntitle = \"t\"\nseverity = \"II\"\nhosts = \"all\"\n";
        let cases = [
            (
                "check = \"time.sync\"\nstatus = [\"critical\"]\nthreshold = 3\n",
                "`threshold` does not apply to check rules",
            ),
            (
                "metric = \"m\"\nop = \">\"\nthreshold = 1\nstatus = [\"critical\"]\n",
                "`status` does not apply to metric rules",
            ),
            (
                "metric = \"m\"\nop = \"=>\"\nthreshold = 1\n",
                "op \"=>\" is not one of",
            ),
            ("metric = \"m\"\nthreshold = 1\n", "metric rule has no `op`"),
            (
                "metric = \"m\"\nop = \">\"\nthreshold = nan\n",
                "threshold must be a finite number",
            ),
            (
                "metric = \"m\"\nop = \">\"\nthreshold = 80\nrecover_op = \"<\"\nrecover_threshold = 90\n",
                "overlaps the firing condition",
            ),
            (
                "metric = \"m\"\nop = \"==\"\nthreshold = 1\nrecover_op = \"!=\"\nrecover_threshold = 2\n",
                "overlaps",
            ),
            (
                "metric = \"fs.*\"\nop = \">\"\nthreshold = 1\n",
                "no wildcards",
            ),
            (
                "check = \"disk.*.health\"\nstatus = [\"critical\"]\n",
                "optionally ending in one `*`",
            ),
            (
                "check = \"time.sync\"\nstatus = [\"ok\"]\n",
                "status \"ok\" cannot fire",
            ),
            (
                "check = \"time.sync\"\nstatus = [\"crit\"]\n",
                "status \"crit\" is not one of",
            ),
            ("check = \"time.sync\"\nstatus = []\n", "never fires"),
            ("check = \"time.sync\"\n", "check rule has no `status`"),
            ("kind = \"agent_offline\"\n", "has no `after`"),
            (
                "kind = \"agent_offline\"\nafter = \"0s\"\n",
                "must be more than 0",
            ),
            ("kind = \"disk_full\"\n", "kind \"disk_full\" is not one of"),
            (
                "kind = \"spool_dropping\"\nfor = \"400d\"\n",
                "at most 366d",
            ),
            ("", "rule watches nothing"),
        ];
        for (body, needle) in cases {
            let p = problems(&format!("{base}{body}"));
            assert!(
                p.iter().any(|(line, _, r)| *line > 0 && r.contains(needle)),
                "{body:?}: {p:?}"
            );
        }
        let scope_cases = [
            ("hosts = \"some\"\n", "the only value is \"all\""),
            ("hosts = \"all\"\ngroups = [\"db\"]\n", "cannot be combined"),
            ("", "rule has no scope"),
            ("os = []\n", "selects no host"),
            ("labels = {}\n", "selects nothing"),
        ];
        for (scope, needle) in scope_cases {
            let text = format!(
                "[[rule]]\nid = \"r\"\ntitle = \"t\"\nseverity = \"II\"\nkind = \"spool_dropping\"\n{scope}"
            );
            let p = problems(&text);
            assert!(
                p.iter().any(|(_, _, r)| r.contains(needle)),
                "{scope:?}: {p:?}"
            );
        }
    }

    #[test]
    fn recovery_defaults_to_the_negated_firing_condition() {
        let fire_and_recover = |body: &str| match one_rule(body).target {
            Target::Metric { fire, recover, .. } => (fire.to_string(), recover.to_string()),
            other => panic!("{other:?}"),
        };
        let pair = |a: &str, b: &str| (a.to_owned(), b.to_owned());
        assert_eq!(
            fire_and_recover("metric = \"m\"\nop = \">\"\nthreshold = 90\n"),
            pair("> 90", "<= 90")
        );
        assert_eq!(
            fire_and_recover(
                "metric = \"m\"\nop = \">=\"\nthreshold = 90\nrecover_threshold = 80.5\n"
            ),
            pair(">= 90", "< 80.5")
        );
        assert_eq!(
            fire_and_recover(
                "metric = \"m\"\nop = \"<\"\nthreshold = 10\nrecover_op = \">\"\nrecover_threshold = 20\n"
            ),
            pair("< 10", "> 20")
        );
        assert_eq!(
            fire_and_recover("metric = \"m\"\nop = \"!=\"\nthreshold = 0\n"),
            pair("!= 0", "== 0")
        );
        let r = one_rule(
            "check = \"x\"\nstatus = [\"unknown\", \"critical\", \"critical\"]\nfor = \"1h 30m\"\nclear_for = \"90s\"\n",
        );
        assert_eq!((r.for_ms, r.clear_for_ms, r.line), (5_400_000, 90_000, 1));
        assert_eq!(r.threshold_text(), "critical or unknown");
    }

    #[test]
    fn scopes_match_labels_groups_and_os() {
        let linux = host("Ubuntu", &[("env", "prod"), ("dc", "sh")], &["web", "db"]);
        let windows = host("Windows", &[("env", "test")], &[]);
        let unknown_os = host("", &[("env", "prod")], &["web"]);
        let scope = |body: &str| one_rule(&format!("kind = \"spool_dropping\"\n{body}")).scope;
        assert_eq!(scope(""), Scope::All);

        let all = Scope::All;
        assert!(all.matches(&linux) && all.matches(&windows) && all.matches(&unknown_os));

        let text = |scope: &str| {
            format!(
                "[[rule]]\nid = \"r\"\ntitle = \"t\"\nseverity = \"II\"\nkind = \"spool_dropping\"\n{scope}"
            )
        };
        let parsed = |s: &str| parse_rules("r", &text(s)).unwrap().rules()[0].scope.clone();
        let prod = parsed("labels = {env = \"prod\"}\n");
        assert!(prod.matches(&linux) && !prod.matches(&windows) && prod.matches(&unknown_os));
        let db = parsed("groups = [\"db\", \"cache\"]\n");
        assert!(db.matches(&linux) && !db.matches(&windows) && !db.matches(&unknown_os));
        let win = parsed("os = [\"windows\"]\n");
        assert!(!win.matches(&linux) && win.matches(&windows) && !win.matches(&unknown_os));
        let lin = parsed("os = [\"Linux\"]\n");
        assert!(lin.matches(&linux) && !lin.matches(&windows) && !lin.matches(&unknown_os));
        let ubuntu = parsed("os = [\"ubuntu\"]\n");
        assert!(ubuntu.matches(&linux) && !ubuntu.matches(&windows));
        let both = parsed(
            "labels = {env = \"prod\"}\ngroups = [\"web\"]\nos = [\"linux\", \"windows\"]\n",
        );
        assert!(both.matches(&linux) && !both.matches(&windows) && !both.matches(&unknown_os));
    }

    #[test]
    fn line_col_counts_characters_and_clamps() {
        let text = "ab\né€x\n";
        assert_eq!(line_col(text, 0), (1, 1));
        assert_eq!(line_col(text, 3), (2, 1));
        assert_eq!(line_col(text, 8), (2, 3));
        // Inside a multi-byte character, and past the end: no panic.
        assert_eq!(line_col(text, 4), (2, 1));
        assert_eq!(line_col(text, 1000), (3, 1));
    }

    #[test]
    fn empty_file_is_an_empty_rule_set() {
        let set = parse_rules("r", "# nothing yet\n").unwrap();
        assert!(set.is_empty());
        assert_eq!(set.len(), 0);
    }
}
