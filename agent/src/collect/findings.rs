//! The shared vocabulary of the collection areas: metric samples, check
//! results (with `unknown` for checks that could not run) and `Findings`.

use xunjian_proto::{CheckResult, CheckStatus, Label, Metric};

/// The collector refuses a whole report in which one check result has a
/// text field longer than this (its `ingest::limits::TEXT_LEN`), and the
/// agent resends a refused report forever, so longer texts are cut here.
pub const MAX_TEXT_BYTES: usize = 8 * 1024;
/// Likewise for metric label values (the collector's `LABEL_VALUE_LEN`).
pub const MAX_LABEL_VALUE_BYTES: usize = 1024;
/// Likewise for check ids (the collector's `NAME_LEN`); ids carry device
/// and array names, which are short on real systems but not bounded.
pub const MAX_CHECK_ID_BYTES: usize = 200;

/// `text` cut to at most `max` bytes at a character boundary, ending in `…`
/// when it was cut.
pub fn clamp_text(text: String, max: usize) -> String {
    if text.len() <= max {
        return text;
    }
    let mut end = max.saturating_sub('…'.len_utf8());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

/// A metric sample with labels; its time is the report's.
pub fn metric(name: &str, value: f64, labels: &[(&str, &str)]) -> Metric {
    Metric {
        name: name.to_owned(),
        labels: labels
            .iter()
            .map(|(n, v)| Label {
                name: (*n).to_owned(),
                value: clamp_text((*v).to_owned(), MAX_LABEL_VALUE_BYTES),
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
        check_id: clamp_text(id.to_owned(), MAX_CHECK_ID_BYTES),
        title: clamp_text(title.to_owned(), MAX_TEXT_BYTES),
        status: status as i32,
        value: clamp_text(value.into(), MAX_TEXT_BYTES),
        threshold: clamp_text(threshold.into(), MAX_TEXT_BYTES),
        evidence: clamp_text(evidence.into(), MAX_TEXT_BYTES),
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
        check_id: clamp_text(id.to_owned(), MAX_CHECK_ID_BYTES),
        title: clamp_text(title.to_owned(), MAX_TEXT_BYTES),
        status: CheckStatus::Unknown as i32,
        value: String::new(),
        threshold: String::new(),
        evidence: clamp_text(evidence.into(), MAX_TEXT_BYTES),
        reason: clamp_text(reason.into(), MAX_TEXT_BYTES),
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by fuzzing: `needs-restarting -r` output quoted whole as
    /// evidence (`fuzz/corpus/patches`), and md array and SMART device
    /// names of 200+ bytes in check ids (`fuzz/artifacts/{mdstat,smart}`),
    /// made checks the collector refuses.
    #[test]
    fn long_texts_are_cut_to_what_the_collector_accepts() {
        let long = "重启".repeat(MAX_TEXT_BYTES);
        let c = unknown("os.reboot_required", "t", long.clone(), long.clone());
        assert!(c.reason.len() <= MAX_TEXT_BYTES && c.reason.ends_with('…'));
        assert!(c.evidence.len() <= MAX_TEXT_BYTES);
        let c = check(
            "x",
            "t",
            CheckStatus::Ok,
            long.clone(),
            long.clone(),
            long.clone(),
        );
        assert!(
            [c.value, c.threshold, c.evidence]
                .iter()
                .all(|t| t.len() <= MAX_TEXT_BYTES)
        );
        let c = unknown(&format!("disk.raid.state:{long}"), "t", "r", "e");
        assert!(c.check_id.len() <= MAX_CHECK_ID_BYTES);
        let m = metric("m", 1.0, &[("device", long.as_str())]);
        assert!(m.labels[0].value.len() <= MAX_LABEL_VALUE_BYTES);
        assert_eq!(clamp_text("short".into(), MAX_TEXT_BYTES), "short");
        assert_eq!(
            clamp_text("a".repeat(MAX_TEXT_BYTES), MAX_TEXT_BYTES).len(),
            MAX_TEXT_BYTES
        );
    }
}
