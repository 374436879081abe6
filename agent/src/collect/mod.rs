//! Collection areas. Each area is a module with a thin platform shim (read a
//! file, call sysinfo, or run a command) and pure functions that turn what
//! was read into protocol types, tested on captured real output.

pub mod system;

pub use system::SystemCollector;

use xunjian_proto::{Label, Metric};

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
