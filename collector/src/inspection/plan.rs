//! Inspection plans and self-checks as configured (`[inspection]`): when
//! they run, which hosts they cover, which items they judge and how.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

use crate::schedule::Schedule;

/// `[inspection]` in the collector config.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InspectionConfig {
    /// IANA time zone of the plans' schedules and of the records' times.
    #[serde(default = "default_timezone")]
    pub timezone: String,
    /// How long a run waits for the hosts in scope to answer before filing;
    /// the ones that did not are filed as not inspected.
    #[serde(default = "default_wait", with = "humantime_serde")]
    pub wait: Duration,
    /// Metric items judged in every record: metric name -> abnormal at or
    /// above this value (one item per series, e.g. per mount).
    #[serde(default = "default_thresholds")]
    pub thresholds: BTreeMap<String, f64>,
    /// Item patterns of a security self-check.
    #[serde(default = "default_selfcheck_checks")]
    pub selfcheck_checks: Vec<String>,
    /// An incident is raised when no full self-check was filed this long.
    #[serde(default = "default_full_selfcheck_every", with = "humantime_serde")]
    pub full_selfcheck_every: Duration,
    #[serde(default)]
    pub plans: Vec<PlanConfig>,
}

/// One `[[inspection.plans]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlanConfig {
    pub name: String,
    /// "daily 08:00", "weekly mon 08:00", "monthly 1 08:00",
    /// "quarterly 1 08:00", "cron 0 8 * * 1-5".
    pub schedule: String,
    /// "inspection" (default) or "selfcheck" (a self-check; full when the
    /// scope is the whole fleet).
    #[serde(default)]
    pub kind: PlanKind,
    #[serde(default)]
    pub scope: Scope,
    /// Item patterns (`*` at the end matches a prefix); default every item.
    #[serde(default = "default_checks")]
    pub checks: Vec<String>,
    /// Overrides `inspection.wait`.
    #[serde(default, with = "humantime_serde")]
    pub wait: Option<Duration>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PlanKind {
    #[default]
    Inspection,
    Selfcheck,
}

/// Which hosts: every given criterion must hold; none = the whole fleet.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct Scope {
    /// In at least one of these groups.
    #[serde(default)]
    pub groups: Vec<String>,
    /// Carrying all of these labels.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Hostname, or agent id (or a prefix of at least 8 characters).
    #[serde(default)]
    pub hosts: Vec<String>,
}

/// Shortest agent-id prefix a scope accepts.
pub const MIN_ID_PREFIX: usize = 8;

/// A host as scope matching sees it.
#[derive(Debug, Clone)]
pub struct Candidate {
    pub agent_id: String,
    pub hostname: String,
    pub labels: BTreeMap<String, String>,
    pub groups: Vec<String>,
}

impl Scope {
    pub fn is_whole_fleet(&self) -> bool {
        self.groups.is_empty() && self.labels.is_empty() && self.hosts.is_empty()
    }

    pub fn matches(&self, host: &Candidate) -> bool {
        (self.groups.is_empty() || self.groups.iter().any(|g| host.groups.contains(g)))
            && self
                .labels
                .iter()
                .all(|(k, v)| host.labels.get(k) == Some(v))
            && (self.hosts.is_empty()
                || self.hosts.iter().any(|h| {
                    *h == host.hostname
                        // An id prefix must be long enough not to be a
                        // hostname that happens to be hex.
                        || (h.len() >= MIN_ID_PREFIX && host.agent_id.starts_with(h.as_str()))
                }))
    }

    /// Parses the CLI's `--scope` values: `all`, `group=G`, `label=K=V`,
    /// `host=H` (repeatable; criteria combine as in the config).
    pub fn parse_cli(values: &[String]) -> Result<Scope, String> {
        let mut scope = Scope::default();
        for v in values {
            if v == "all" {
                continue;
            }
            let Some((kind, rest)) = v.split_once('=') else {
                return Err(format!(
                    "scope `{v}`: expected all, group=NAME, label=KEY=VALUE or host=NAME"
                ));
            };
            match kind {
                "group" if !rest.is_empty() => scope.groups.push(rest.to_owned()),
                "host" if !rest.is_empty() => scope.hosts.push(rest.to_owned()),
                "label" => match rest.split_once('=') {
                    Some((k, val)) if !k.is_empty() => {
                        scope.labels.insert(k.to_owned(), val.to_owned());
                    }
                    _ => return Err(format!("scope `{v}`: expected label=KEY=VALUE")),
                },
                _ => {
                    return Err(format!(
                        "scope `{v}`: expected all, group=NAME, label=KEY=VALUE or host=NAME"
                    ));
                }
            }
        }
        Ok(scope)
    }
}

impl std::fmt::Display for Scope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.is_whole_fleet() {
            return f.write_str("all hosts");
        }
        let mut parts = Vec::new();
        if !self.groups.is_empty() {
            parts.push(format!("group {}", self.groups.join(" or ")));
        }
        for (k, v) in &self.labels {
            parts.push(format!("label {k}={v}"));
        }
        if !self.hosts.is_empty() {
            parts.push(format!("host {}", self.hosts.join(" or ")));
        }
        f.write_str(&parts.join(", "))
    }
}

/// Whether an item id is selected by a plan's patterns: exact, or a
/// prefix ending in `*`.
pub fn item_selected(patterns: &[String], item_id: &str) -> bool {
    patterns.iter().any(|p| match p.strip_suffix('*') {
        Some(prefix) => item_id.starts_with(prefix),
        None => p == item_id,
    })
}

fn default_timezone() -> String {
    "UTC".into()
}
fn default_wait() -> Duration {
    Duration::from_secs(120)
}
fn default_checks() -> Vec<String> {
    vec!["*".into()]
}
fn default_thresholds() -> BTreeMap<String, f64> {
    [
        ("cpu.usage_pct", 90.0),
        ("memory.used_pct", 90.0),
        ("fs.used_pct", 85.0),
        ("fs.inodes_used_pct", 90.0),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}
/// The security items: baseline, antivirus, patches, reboot, time sync.
fn default_selfcheck_checks() -> Vec<String> {
    ["baseline.*", "av.*", "patch.*", "os.*", "time.*"]
        .into_iter()
        .map(String::from)
        .collect()
}
fn default_full_selfcheck_every() -> Duration {
    Duration::from_secs(365 * 86_400)
}

impl Default for InspectionConfig {
    fn default() -> Self {
        Self {
            timezone: default_timezone(),
            wait: default_wait(),
            thresholds: default_thresholds(),
            selfcheck_checks: default_selfcheck_checks(),
            full_selfcheck_every: default_full_selfcheck_every(),
            plans: Vec::new(),
        }
    }
}

impl InspectionConfig {
    /// Checks what serde cannot; the error names the field.
    pub fn problem(&self) -> Option<(&'static str, String)> {
        if self.timezone.parse::<chrono_tz::Tz>().is_err() {
            return Some((
                "inspection.timezone",
                format!(
                    "unknown time zone `{}` (use an IANA name such as Asia/Shanghai)",
                    self.timezone
                ),
            ));
        }
        if self.wait < Duration::from_secs(1) || self.wait > Duration::from_secs(3600) {
            return Some(("inspection.wait", "must be between 1s and 1h".into()));
        }
        if self.full_selfcheck_every < Duration::from_secs(86_400) {
            return Some((
                "inspection.full_selfcheck_every",
                "must be at least 1 day".into(),
            ));
        }
        if let Some((name, v)) = self.thresholds.iter().find(|(_, v)| !v.is_finite()) {
            return Some((
                "inspection.thresholds",
                format!("{name} = {v} is not a number"),
            ));
        }
        let mut names = std::collections::HashSet::new();
        for plan in &self.plans {
            if plan.name.is_empty() || !names.insert(plan.name.as_str()) {
                return Some((
                    "inspection.plans.name",
                    format!("`{}` is empty or used twice", plan.name),
                ));
            }
            if let Err(e) = Schedule::parse(&plan.schedule, &self.timezone) {
                return Some((
                    "inspection.plans.schedule",
                    format!("plan `{}`: {e}", plan.name),
                ));
            }
            if plan.checks.is_empty() {
                return Some((
                    "inspection.plans.checks",
                    format!("plan `{}` selects no items", plan.name),
                ));
            }
            if let Some(w) = plan.wait
                && (w < Duration::from_secs(1) || w > Duration::from_secs(3600))
            {
                return Some((
                    "inspection.plans.wait",
                    format!("plan `{}`: must be between 1s and 1h", plan.name),
                ));
            }
        }
        None
    }

    pub fn plan(&self, name: &str) -> Option<&PlanConfig> {
        self.plans.iter().find(|p| p.name == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(name: &str, groups: &[&str], labels: &[(&str, &str)]) -> Candidate {
        Candidate {
            agent_id: format!("{name}-0000"),
            hostname: name.into(),
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
        }
    }

    #[test]
    fn scope_criteria_all_hold() {
        let prod_db = host("db1", &["prod"], &[("role", "db")]);
        let test_web = host("web1", &["test"], &[("role", "web")]);
        let scope = Scope::parse_cli(&["group=prod".into(), "label=role=db".into()]).unwrap();
        assert!(scope.matches(&prod_db));
        assert!(!scope.matches(&test_web));
        let all = Scope::parse_cli(&["all".into()]).unwrap();
        assert!(all.is_whole_fleet() && all.matches(&test_web));
        let by_host = Scope::parse_cli(&["host=web1".into()]).unwrap();
        assert!(by_host.matches(&test_web) && !by_host.matches(&prod_db));
        assert_eq!(scope.to_string(), "group prod, label role=db");
    }

    #[test]
    fn bad_cli_scope_is_explained() {
        for bad in ["prod", "group=", "label=x", "colour=red"] {
            let err = Scope::parse_cli(&[bad.into()]).unwrap_err();
            assert!(err.contains(bad), "{err}");
        }
    }

    #[test]
    fn item_patterns() {
        let p = vec!["baseline.*".to_string(), "av.status".to_string()];
        assert!(item_selected(&p, "baseline.ssh.permit_root_login"));
        assert!(item_selected(&p, "av.status"));
        assert!(!item_selected(&p, "av.status.extra"));
        assert!(!item_selected(&p, "patch.pending"));
        assert!(item_selected(&["*".into()], "anything"));
    }

    #[test]
    fn config_problems_name_the_field() {
        let mut c = InspectionConfig {
            timezone: "Mars/Olympus".into(),
            ..Default::default()
        };
        assert_eq!(c.problem().unwrap().0, "inspection.timezone");
        c.timezone = "Asia/Shanghai".into();
        c.plans.push(PlanConfig {
            name: "daily".into(),
            schedule: "daily 25:00".into(),
            kind: PlanKind::Inspection,
            scope: Scope::default(),
            checks: default_checks(),
            wait: None,
        });
        assert_eq!(c.problem().unwrap().0, "inspection.plans.schedule");
        c.plans[0].schedule = "daily 08:00".into();
        assert!(c.problem().is_none());
        c.plans.push(c.plans[0].clone());
        assert_eq!(c.problem().unwrap().0, "inspection.plans.name");
    }
}
