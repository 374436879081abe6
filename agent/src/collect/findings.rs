//! The shared vocabulary of the collection areas: metric samples, check
//! results (with `unknown` for checks that could not run) and `Findings`.

use xunjian_proto::{CheckResult, CheckStatus, Label, Metric};

/// A metric sample with labels; its time is the report's.
pub fn metric(name: &str, value: f64, labels: &[(&str, &str)]) -> Metric {
    Metric {
        name: name.to_owned(),
        labels: labels
            .iter()
            .map(|(n, v)| Label {
                name: (*n).to_owned(),
                value: (*v).to_owned(),
            })
            .collect(),
        value,
        at_unix_ms: 0,
    }
}

/// `used / total` as a percentage, `None` when the total is 0 (unknown is
/// not 0%).
pub fn percent(used: u64, total: u64) -> Option<f64> {
    (total > 0).then(|| used as f64 * 100.0 / total as f64)
}

/// Labels as `{a="1", b="2"}` for people to read.
pub fn labels_text(labels: &[Label]) -> String {
    if labels.is_empty() {
        return String::new();
    }
    let parts: Vec<String> = labels
        .iter()
        .map(|l| format!("{}={:?}", l.name, l.value))
        .collect();
    format!("{{{}}}", parts.join(", "))
}

/// What one collection area produced: samples and check results.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Findings {
    pub metrics: Vec<Metric>,
    pub checks: Vec<CheckResult>,
}

impl Findings {
    pub fn extend(&mut self, other: Findings) {
        self.metrics.extend(other.metrics);
        self.checks.extend(other.checks);
    }
}

/// A check result that ran. `value` is what was measured, `threshold` what
/// it was judged against, `evidence` what was read or run.
pub fn check(
    id: &str,
    title: &str,
    status: CheckStatus,
    value: impl Into<String>,
    threshold: impl Into<String>,
    evidence: impl Into<String>,
) -> CheckResult {
    CheckResult {
        check_id: id.to_owned(),
        title: title.to_owned(),
        status: status as i32,
        value: value.into(),
        threshold: threshold.into(),
        evidence: evidence.into(),
        reason: String::new(),
    }
}

/// A check that could not run: `unknown`, with why. Never reported as OK.
pub fn unknown(
    id: &str,
    title: &str,
    reason: impl Into<String>,
    evidence: impl Into<String>,
) -> CheckResult {
    CheckResult {
        check_id: id.to_owned(),
        title: title.to_owned(),
        status: CheckStatus::Unknown as i32,
        value: String::new(),
        threshold: String::new(),
        evidence: evidence.into(),
        reason: reason.into(),
    }
}

/// Names of running processes, from `/proc/*/comm` (Linux). Processes that
/// exit while the list is read are skipped. Shared by the areas that ask
/// "is this daemon running?" (antivirus, baseline).
#[cfg(not(windows))]
pub fn process_names() -> Result<Vec<String>, String> {
    let entries = std::fs::read_dir("/proc").map_err(|e| format!("cannot read /proc: {e}"))?;
    Ok(entries
        .filter_map(Result::ok)
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .bytes()
                .all(|b| b.is_ascii_digit())
        })
        .filter_map(|e| std::fs::read_to_string(e.path().join("comm")).ok())
        .map(|c| c.trim_end_matches('\n').to_owned())
        .collect())
}
