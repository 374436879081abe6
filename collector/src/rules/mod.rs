//! Alert rules: the rules file (TOML) parsed into a validated [`RuleSet`], and
//! the pure evaluation [`Engine`] that turns metric samples, check results
//! and the passage of time into incident [`Transition`]s.
//!
//! Nothing here does I/O or reads a clock: the caller passes the file's text
//! and every timestamp (UTC milliseconds), so reloads, `for`/`clear_for`
//! timers and offline detection are tested without sleeping.

mod engine;
mod file;
mod template;

pub use engine::{
    Engine, FLAP_HOLD_MS, FLAP_LIMIT, FLAP_WINDOW_MS, IncidentKey, SPOOL_DROPPED_METRIC,
    Transition, Value,
};
pub use file::{
    CheckPattern, Condition, DEFAULT_RULES_TOML, Op, Problem, Rule, RuleSet, RulesError, Scope,
    Target, default_rules, parse_rules,
};
pub use template::Template;

use std::collections::BTreeMap;

/// How urgent an incident is (I most, IV least): the SLA's severity.
pub use crate::sla::Severity;

/// A check result's status, as stored (`check_results.status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Status {
    Ok,
    Warning,
    Critical,
    Unknown,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Warning => "warning",
            Status::Critical => "critical",
            Status::Unknown => "unknown",
        }
    }

    /// Exact stored spelling only; used where a typo must be an error.
    pub fn parse(text: &str) -> Option<Status> {
        match text {
            "ok" => Some(Status::Ok),
            "warning" => Some(Status::Warning),
            "critical" => Some(Status::Critical),
            "unknown" => Some(Status::Unknown),
            _ => None,
        }
    }

    /// For statuses read back from storage or the wire: anything
    /// unrecognised is `Unknown`, never `Ok` (unknown is not OK).
    pub fn from_text(text: &str) -> Status {
        Status::parse(text).unwrap_or(Status::Unknown)
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a rule's scope is matched against: the host's identity, its
/// operator-assigned labels and groups, and the OS name from its inventory.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostFacts {
    pub agent_id: String,
    pub hostname: String,
    /// As the agent reports it (`sysinfo`'s `System::name()`): "Ubuntu",
    /// "Debian GNU/Linux", "Windows", "Darwin"… Empty until the first
    /// inventory arrives.
    pub os_name: String,
    pub labels: BTreeMap<String, String>,
    pub groups: Vec<String>,
}

impl HostFacts {
    /// The OS family `os = [...]` scopes name. Linux distributions report
    /// their own names ("Ubuntu", "Rocky Linux"), so anything that is not a
    /// recognised other family is Linux; an empty name (no inventory yet)
    /// is no family at all, so OS-scoped rules skip the host until it is
    /// known rather than guessing.
    pub fn os_family(&self) -> Option<&'static str> {
        let name = self.os_name.trim().to_ascii_lowercase();
        if name.is_empty() {
            None
        } else if name.contains("windows") {
            Some("windows")
        } else if name.contains("darwin") || name.contains("macos") || name.contains("mac os") {
            Some("macos")
        } else if name.contains("bsd") {
            Some("bsd")
        } else {
            Some("linux")
        }
    }

    /// What `{host}` renders: the host name, or the agent id before the
    /// first inventory has told us the name.
    pub fn display_name(&self) -> &str {
        if self.hostname.is_empty() {
            &self.agent_id
        } else {
            &self.hostname
        }
    }
}
