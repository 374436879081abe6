//! Custom checks in the Nagios / Monitoring Plugins convention: a configured
//! program (never a shell) whose exit code is the state and whose output
//! carries a message and performance data. Each check is reported as
//! `custom.<id>`, its performance data as `custom.<id>.<label>` metrics in
//! base units. Anything that keeps a plugin from giving a state (missing,
//! timed out, crashed, an exit code outside 0-3) is `unknown` with the reason.
//!
//! Output rules follow the Monitoring Plugins development guidelines and the
//! Nagios 3 multi-line format: the first line up to `|` is the message; the
//! rest of that line is performance data, and so is everything after the
//! first `|` of the following (long output) lines.

use std::path::Path;
use std::time::{Duration, Instant};

use humantime_serde::re::humantime::format_duration;
use xunjian_proto::{CheckResult, CheckStatus};

use super::{Findings, check, metric, unknown};
use crate::exec::{Cmd, ExecError, Output};

/// Bytes of output kept per stream. Plugin output is meant to be short;
/// Nagios itself keeps only a few KiB.
pub const OUTPUT_CAP: usize = 64 * 1024;
/// Check ids are `custom.<id>`, metric names `custom.<id>.<label>`.
pub const ID_PREFIX: &str = "custom";

const MAX_ID_LEN: usize = 64;
/// The runner looks for due checks once a second, so shorter intervals could
/// not be honoured.
const MIN_INTERVAL: Duration = Duration::from_secs(1);
const MAX_INTERVAL: Duration = Duration::from_secs(24 * 3600);
/// Characters of the plugin message kept as the check value: it is shown in
/// tables, and one line of 64 KiB would swamp the record.
const MAX_VALUE_CHARS: usize = 1024;
const MAX_EVIDENCE_CHARS: usize = 4096;
/// Sanitized perfdata labels longer than this are cut, so that one odd label
/// cannot make an unbounded metric name.
const MAX_LABEL_CHARS: usize = 128;
/// Metrics kept per run: 64 KiB of output could hold thousands of items,
/// and every one would be a stored series.
const MAX_METRICS: usize = 256;
/// Longer "units" are more likely text run into a number than a unit.
const MAX_UOM_CHARS: usize = 16;

fn default_interval() -> Duration {
    Duration::from_secs(300)
}

fn default_timeout() -> Duration {
    Duration::from_secs(30)
}

/// One custom check from the agent configuration (`[[checks]]`).
#[derive(Debug, Clone, serde::Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PluginCheck {
    /// Reported as check id `custom.<id>`: 1 to 64 of `a-z 0-9 _ . -`.
    pub id: String,
    /// Human title; `Custom check <id>` when absent.
    pub title: Option<String>,
    /// The program and its arguments. The program is an absolute path or a
    /// bare name looked up in [`crate::exec::SYSTEM_PATH`]; no shell is
    /// involved, so quoting and `$VAR` mean nothing.
    pub command: Vec<String>,
    /// Time between runs; default 5 minutes.
    #[serde(default = "default_interval", with = "humantime_serde")]
    pub interval: Duration,
    /// The plugin is killed (with its children) after this; default 30 s,
    /// must be shorter than `interval`.
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
}

impl PluginCheck {
    /// Checks the fields; the message names the check and the field.
    pub fn validate(&self) -> Result<(), String> {
        let id = &self.id;
        let id_ok = (1..=MAX_ID_LEN).contains(&id.len())
            && id
                .bytes()
                .all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'_' | b'.' | b'-'));
        if !id_ok {
            return Err(format!(
                "`id` {id:?} must be 1 to {MAX_ID_LEN} characters of a-z, 0-9, '_', '.' and '-'"
            ));
        }
        let Some(program) = self.command.first() else {
            return Err(format!(
                "check {id:?}: `command` must not be empty; give the program and its arguments as a list"
            ));
        };
        if program.trim().is_empty() {
            return Err(format!(
                "check {id:?}: `command` starts with an empty program name"
            ));
        }
        // Relative paths would depend on the agent's working directory.
        if !Path::new(program).is_absolute()
            && (program.contains('/') || program.contains(std::path::MAIN_SEPARATOR))
        {
            return Err(format!(
                "check {id:?}: `command` program {program:?} must be an absolute path or a bare name looked up in the system PATH"
            ));
        }
        if self.command.iter().any(|a| a.contains('\0')) {
            return Err(format!(
                "check {id:?}: `command` must not contain NUL characters"
            ));
        }
        if !(MIN_INTERVAL..=MAX_INTERVAL).contains(&self.interval) {
            return Err(format!(
                "check {id:?}: `interval` {} is outside 1s..=24h",
                format_duration(self.interval)
            ));
        }
        if self.timeout.is_zero() || self.timeout >= self.interval {
            return Err(format!(
                "check {id:?}: `timeout` {} must be above zero and shorter than `interval` {}",
                format_duration(self.timeout),
                format_duration(self.interval)
            ));
        }
        Ok(())
    }

    /// `custom.<id>`.
    pub fn check_id(&self) -> String {
        format!("{ID_PREFIX}.{}", self.id)
    }

    /// The configured title, or one made from the id.
    pub fn title_text(&self) -> String {
        match &self.title {
            Some(t) if !t.trim().is_empty() => t.clone(),
            _ => format!("Custom check {}", self.id),
        }
    }
}

/// One performance data item, as the plugin wrote it.
#[derive(Debug, Clone, PartialEq)]
pub struct PerfData {
    /// Unquoted, with `''` turned into `'`.
    pub label: String,
    /// In `uom`, as written.
    pub value: f64,
    /// As written: empty, `s`, `ms`, `us`, `%`, `B`, `KB`, `MB`, `GB`, `TB`,
    /// `c`, or another unit made of letters, `%`, `°` and `/`.
    pub uom: String,
    /// Warning range (`10`, `10:`, `~:10`, `10:20`, `@10:20`), as written.
    pub warn: Option<String>,
    /// Critical range, as written.
    pub crit: Option<String>,
    pub min: Option<f64>,
    pub max: Option<f64>,
}

impl PerfData {
    /// The value in base units and that unit: seconds for `s`/`ms`/`us`,
    /// bytes for `B`/`KB`/`MB`/`GB`/`TB`, percent stays percent, `c`
    /// (counter) and plain numbers stay as they are. KB, MB, GB and TB are
    /// taken as powers of 1024 (KiB etc. likewise): the guidelines do not say,
    /// and the Monitoring Plugins' own plugins that print them (check_disk
    /// and check_swap before 2.3) computed them in 1024s. Icinga 2 reads them
    /// as powers of 1000, so the two can differ by up to 10%. Other units
    /// are passed through unconverted. `None` when the result is not finite.
    pub fn base_value(&self) -> Option<(f64, String)> {
        const K: f64 = 1024.0;
        let (factor, unit) = match self.uom.as_str() {
            "ms" => (1e-3, "s"),
            "us" => (1e-6, "s"),
            "B" => (1.0, "B"),
            "KB" | "KiB" => (K, "B"),
            "MB" | "MiB" => (K * K, "B"),
            "GB" | "GiB" => (K * K * K, "B"),
            "TB" | "TiB" => (K * K * K * K, "B"),
            other => (1.0, other),
        };
        let v = self.value * factor;
        v.is_finite().then(|| (v, unit.to_owned()))
    }
}

/// What a plugin printed, split by the output rules.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PluginOutput {
    /// The first line up to `|`, trimmed.
    pub message: String,
    /// Lines 2.. up to the first `|` among them, trimmed.
    pub long_output: String,
    pub perfdata: Vec<PerfData>,
}

/// Splits plugin stdout into message, long output and performance data.
/// With `truncated`, the text after the last newline may end mid-number, so
/// its performance data is not trusted.
pub fn parse_output(stdout: &str, truncated: bool) -> PluginOutput {
    let (complete, partial) = if truncated {
        match stdout.rfind('\n') {
            Some(i) => (&stdout[..=i], ""),
            None => ("", stdout),
        }
    } else {
        (stdout, "")
    };
    if complete.is_empty() {
        let message = partial.split('|').next().unwrap_or_default();
        return PluginOutput {
            message: message.trim().to_owned(),
            ..PluginOutput::default()
        };
    }
    let (first, rest) = complete.split_once('\n').unwrap_or((complete, ""));
    let (message, perf_first) = first.split_once('|').unwrap_or((first, ""));
    let (long_output, perf_rest) = rest.split_once('|').unwrap_or((rest, ""));
    let mut perfdata = parse_perfdata(perf_first);
    perfdata.extend(parse_perfdata(perf_rest));
    PluginOutput {
        message: message.trim().to_owned(),
        long_output: long_output.trim().to_owned(),
        perfdata,
    }
}

/// Parses performance data: space-separated
/// `'label'=value[UOM];[warn];[crit];[min];[max]` items. Quoted labels may
/// hold spaces, `=` and `''` (a literal quote). Items that are malformed,
/// have no label, or whose value is `U` (undetermined: unknown, not 0) are
/// left out; a warn/crit that is not a range, or a min/max that is not a
/// number, is dropped while the value is kept. Never panics.
pub fn parse_perfdata(s: &str) -> Vec<PerfData> {
    let mut items = Vec::new();
    let mut rest = s;
    loop {
        rest = rest.trim_start();
        if rest.is_empty() {
            break;
        }
        let (label, after) = if let Some(quoted) = rest.strip_prefix('\'') {
            match quoted_label(quoted) {
                Some(found) => found,
                // Where an unterminated quote ends is anyone's guess; a
                // resync could invent items from the middle of a label.
                None => break,
            }
        } else {
            let token_end = rest.find(char::is_whitespace).unwrap_or(rest.len());
            match rest[..token_end].find('=') {
                Some(eq) => (rest[..eq].to_owned(), &rest[eq..]),
                None => {
                    rest = &rest[token_end..];
                    continue;
                }
            }
        };
        let data_and_rest = after.strip_prefix('=');
        let search_from = data_and_rest.unwrap_or(after);
        let data_end = search_from
            .find(char::is_whitespace)
            .unwrap_or(search_from.len());
        rest = &search_from[data_end..];
        if data_and_rest.is_some()
            && !label.trim().is_empty()
            && let Some(item) = perf_item(label, &search_from[..data_end])
        {
            items.push(item);
        }
    }
    items
}

/// The label after an opening quote, and the text after the closing one.
fn quoted_label(s: &str) -> Option<(String, &str)> {
    let mut label = String::new();
    let mut chars = s.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        if c != '\'' {
            label.push(c);
            continue;
        }
        if let Some((_, '\'')) = chars.peek() {
            label.push('\'');
            chars.next();
            continue;
        }
        return Some((label, &s[i + 1..]));
    }
    None
}

fn perf_item(label: String, data: &str) -> Option<PerfData> {
    let fields: Vec<&str> = data.split(';').collect();
    if fields.len() > 5 {
        return None;
    }
    let field = |i: usize| fields.get(i).copied().unwrap_or_default();
    let (value, uom) = value_and_uom(field(0))?;
    let range = |s: &str| is_range(s).then(|| s.to_owned());
    let number = |s: &str| exact_number(s);
    Some(PerfData {
        label,
        value,
        uom: uom.to_owned(),
        warn: range(field(1)),
        crit: range(field(2)),
        min: number(field(3)),
        max: number(field(4)),
    })
}

/// Splits `12.5ms` into 12.5 and `ms`. `U` and anything not starting with a
/// finite decimal number is refused, as is a unit with digits or
/// punctuation in it (`0,5` from a comma locale must not read as 0).
fn value_and_uom(s: &str) -> Option<(f64, &str)> {
    let len = number_prefix_len(s);
    if len == 0 {
        return None;
    }
    let value: f64 = s[..len].parse().ok()?;
    let uom = &s[len..];
    let uom_ok = uom.chars().count() <= MAX_UOM_CHARS
        && uom
            .chars()
            .all(|c| c.is_alphabetic() || matches!(c, '%' | '°' | '/'));
    (value.is_finite() && uom_ok).then_some((value, uom))
}

fn exact_number(s: &str) -> Option<f64> {
    if s.is_empty() || number_prefix_len(s) != s.len() {
        return None;
    }
    s.parse().ok().filter(|v: &f64| v.is_finite())
}

/// Length of the leading `[+-]digits[.digits][e[+-]digits]`, 0 when there
/// is no digit. Written out because `f64::from_str` also takes `inf`, `NaN`
/// and `infinity`, which no plugin means as a measurement.
fn number_prefix_len(s: &str) -> usize {
    let b = s.as_bytes();
    let mut i = 0;
    if matches!(b.first(), Some(b'+' | b'-')) {
        i += 1;
    }
    let int_start = i;
    while b.get(i).is_some_and(u8::is_ascii_digit) {
        i += 1;
    }
    let mut digits = i - int_start;
    if b.get(i) == Some(&b'.') {
        let frac_start = i + 1;
        let mut j = frac_start;
        while b.get(j).is_some_and(u8::is_ascii_digit) {
            j += 1;
        }
        digits += j - frac_start;
        i = j;
    }
    if digits == 0 {
        return 0;
    }
    if matches!(b.get(i), Some(b'e' | b'E')) {
        let mut j = i + 1;
        if matches!(b.get(j), Some(b'+' | b'-')) {
            j += 1;
        }
        let exp_start = j;
        while b.get(j).is_some_and(u8::is_ascii_digit) {
            j += 1;
        }
        if j > exp_start {
            i = j;
        }
    }
    i
}

/// `[@][start:][end]` with `~` for negative infinity; at least one end given.
fn is_range(s: &str) -> bool {
    let body = s.strip_prefix('@').unwrap_or(s);
    match body.split_once(':') {
        None => exact_number(body).is_some(),
        Some((start, end)) => {
            (!start.is_empty() || !end.is_empty())
                && (start.is_empty() || start == "~" || exact_number(start).is_some())
                && (end.is_empty() || exact_number(end).is_some())
        }
    }
}

/// A perfdata label as a metric name part: lower case, `[a-z0-9_.]`, every
/// other character `_`.
pub fn sanitize_label(label: &str) -> String {
    label
        .chars()
        .flat_map(char::to_lowercase)
        .map(|c| match c {
            'a'..='z' | '0'..='9' | '_' | '.' => c,
            _ => '_',
        })
        .take(MAX_LABEL_CHARS)
        .collect()
}

/// Runs one custom check and reports it. Blocking: up to `timeout`.
pub fn run_check(c: &PluginCheck) -> Findings {
    let id = c.check_id();
    let title = c.title_text();
    let command_line = c.command.join(" ");
    if let Err(reason) = c.validate() {
        return only(unknown(
            &id,
            &title,
            format!("invalid check configuration: {reason}"),
            command_line,
        ));
    }
    let Some((program, args)) = c.command.split_first() else {
        return only(unknown(&id, &title, "no command configured", command_line));
    };
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let cmd = Cmd::new(program, &args)
        .timeout(c.timeout)
        .output_cap(OUTPUT_CAP);
    match cmd.run() {
        Ok(out) => findings_for(c, &out),
        Err(e) => {
            let reason = exec_reason(&e);
            tracing::debug!(check = %id, %reason, "custom check could not run");
            only(unknown(&id, &title, reason, command_line))
        }
    }
}

fn exec_reason(e: &ExecError) -> String {
    match e {
        ExecError::NotFound(p) if Path::new(p).is_absolute() => {
            format!("{p} does not exist or is not a file")
        }
        ExecError::TimedOut { timeout, .. } => {
            format!(
                "timed out after {} and was killed",
                format_duration(*timeout)
            )
        }
        other => other.to_string(),
    }
}

/// Judges what a finished plugin printed (pure; `run_check` runs it).
/// Exit 0-2 map to ok/warning/critical and exit 3 to unknown with the
/// plugin's message; their performance data become metrics. Any other exit,
/// or death by a signal, is outside the plugin protocol: unknown, and its
/// output is not trusted for metrics.
pub fn findings_for(c: &PluginCheck, out: &Output) -> Findings {
    let id = c.check_id();
    let title = c.title_text();
    let parsed = parse_output(&out.stdout, out.truncated);
    let message = match one_line(&parsed.message, MAX_VALUE_CHARS) {
        m if m.is_empty() => "(no output)".to_owned(),
        m => m,
    };
    let evidence = evidence(out, &parsed);
    let status = match out.code {
        Some(0) => CheckStatus::Ok,
        Some(1) => CheckStatus::Warning,
        Some(2) => CheckStatus::Critical,
        Some(3) => {
            let mut result = unknown(
                &id,
                &title,
                format!("the plugin reported UNKNOWN: {message}"),
                evidence,
            );
            result.value = message;
            result.threshold = threshold_text(&parsed.perfdata);
            return Findings {
                metrics: metrics(c, &parsed.perfdata),
                checks: vec![result],
            };
        }
        Some(code) => {
            return only(unknown(
                &id,
                &title,
                format!(
                    "exited with status {code}, not a plugin state (0-3){}",
                    hint(&message, &out.stderr)
                ),
                evidence,
            ));
        }
        None => {
            return only(unknown(
                &id,
                &title,
                format!("was killed by a signal{}", hint(&message, &out.stderr)),
                evidence,
            ));
        }
    };
    Findings {
        metrics: metrics(c, &parsed.perfdata),
        checks: vec![check(
            &id,
            &title,
            status,
            message,
            threshold_text(&parsed.perfdata),
            evidence,
        )],
    }
}

fn only(result: CheckResult) -> Findings {
    Findings {
        metrics: Vec::new(),
        checks: vec![result],
    }
}

fn hint(message: &str, stderr: &str) -> String {
    let stderr = one_line(stderr.lines().next().unwrap_or_default(), 200);
    if !stderr.is_empty() {
        format!(": {stderr}")
    } else if message != "(no output)" {
        format!(": {}", one_line(message, 200))
    } else {
        String::new()
    }
}

fn evidence(out: &Output, parsed: &PluginOutput) -> String {
    let exit = match out.code {
        Some(code) => format!("exit {code}"),
        None => "killed by a signal".to_owned(),
    };
    let mut text = format!("{}: {exit}", out.command);
    if out.truncated {
        text.push_str(&format!(
            "; output over {} KiB, the rest discarded",
            OUTPUT_CAP / 1024
        ));
    }
    if parsed.perfdata.len() > MAX_METRICS {
        text.push_str(&format!(
            "; {} performance data items, only the first {MAX_METRICS} kept",
            parsed.perfdata.len()
        ));
    }
    let stderr = one_line(out.stderr.lines().next().unwrap_or_default(), 200);
    if !stderr.is_empty() {
        text.push_str(&format!("; stderr: {stderr}"));
    }
    if !parsed.long_output.is_empty() {
        text.push('\n');
        text.push_str(&printable(&parsed.long_output));
    }
    truncate_chars(&text, MAX_EVIDENCE_CHARS)
}

/// The first performance data item with a threshold: some plugins
/// (check_load -r) lead with items that have none.
fn threshold_text(perfdata: &[PerfData]) -> String {
    let Some(p) = perfdata
        .iter()
        .find(|p| p.warn.is_some() || p.crit.is_some())
    else {
        return String::new();
    };
    let mut parts = Vec::new();
    if let Some(w) = &p.warn {
        parts.push(format!("warn {w}"));
    }
    if let Some(c) = &p.crit {
        parts.push(format!("crit {c}"));
    }
    let unit = if p.uom.is_empty() {
        String::new()
    } else {
        format!(" ({})", p.uom)
    };
    one_line(
        &format!("{}: {}{unit}", p.label, parts.join(", ")),
        MAX_VALUE_CHARS,
    )
}

fn metrics(c: &PluginCheck, perfdata: &[PerfData]) -> Vec<xunjian_proto::Metric> {
    let mut seen = std::collections::HashSet::new();
    perfdata
        .iter()
        // A repeated label would give two samples of one series.
        .filter(|p| seen.insert(p.label.as_str()))
        .filter_map(|p| {
            let (value, unit) = p.base_value()?;
            let name = format!("{}.{}", c.check_id(), sanitize_label(&p.label));
            let label = one_line(&p.label, MAX_LABEL_CHARS);
            Some(metric(
                &name,
                value,
                &[("uom", unit.as_str()), ("perfdata", label.as_str())],
            ))
        })
        .take(MAX_METRICS)
        .collect()
}

/// Control characters (binary output, stray escapes) as spaces.
fn printable(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() && c != '\n' { ' ' } else { c })
        .collect()
}

fn one_line(s: &str, max_chars: usize) -> String {
    let flat: String = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    truncate_chars(flat.trim(), max_chars)
}

fn truncate_chars(s: &str, max_chars: usize) -> String {
    match s.char_indices().nth(max_chars) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_owned(),
    }
}

/// Which custom checks are due: each on its own interval, all of them at the
/// first call. Time is passed in, so the caller decides the clock.
#[derive(Debug, Clone)]
pub struct PluginSchedule {
    intervals: Vec<Duration>,
    /// When each check's current slot began; `None` before its first run.
    last: Vec<Option<Instant>>,
}

impl PluginSchedule {
    pub fn new(checks: &[PluginCheck]) -> Self {
        Self {
            intervals: checks.iter().map(|c| c.interval).collect(),
            last: vec![None; checks.len()],
        }
    }

    /// Indexes (into the slice given to `new`) of the checks due at `now`,
    /// and marks them as run. Slots advance by whole intervals so a poll
    /// every second does not drift the rhythm; after a gap longer than an
    /// interval (a suspended host) a check runs once, not once per missed
    /// slot.
    pub fn due(&mut self, now: Instant) -> Vec<usize> {
        let mut due = Vec::new();
        for (i, (last, interval)) in self.last.iter_mut().zip(&self.intervals).enumerate() {
            let next_slot = match *last {
                None => now,
                Some(prev) if now.saturating_duration_since(prev) >= *interval => prev
                    .checked_add(*interval)
                    .filter(|slot| now.saturating_duration_since(*slot) < *interval)
                    .unwrap_or(now),
                Some(_) => continue,
            };
            *last = Some(next_slot);
            due.push(i);
        }
        due
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Where Debian's monitoring-plugins-basic puts the plugins.
    const PLUGINS: &str = "/usr/lib/nagios/plugins";

    macro_rules! captured {
        ($name:literal) => {
            (
                include_str!(concat!("../../testdata/plugins/", $name, ".txt")),
                include_str!(concat!("../../testdata/plugins/", $name, ".txt.exitcode")),
            )
        };
    }

    fn output((stdout, exitcode): (&str, &str)) -> Output {
        Output {
            code: exitcode
                .trim()
                .strip_prefix("exit=")
                .and_then(|c| c.parse().ok()),
            stdout: stdout.to_owned(),
            stderr: String::new(),
            truncated: false,
            command: "captured".to_owned(),
        }
    }

    fn plugin(id: &str, command: &[&str]) -> PluginCheck {
        PluginCheck {
            id: id.to_owned(),
            title: None,
            command: command.iter().map(|s| (*s).to_owned()).collect(),
            interval: Duration::from_secs(60),
            timeout: Duration::from_secs(20),
        }
    }

    fn status(f: &Findings) -> CheckStatus {
        CheckStatus::try_from(f.checks[0].status).unwrap_or(CheckStatus::Unspecified)
    }

    fn metric_value(f: &Findings, name: &str) -> Option<f64> {
        f.metrics.iter().find(|m| m.name == name).map(|m| m.value)
    }

    fn label_of(f: &Findings, metric: &str, label: &str) -> Option<String> {
        let m = f.metrics.iter().find(|m| m.name == metric)?;
        m.labels
            .iter()
            .find(|l| l.name == label)
            .map(|l| l.value.clone())
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= 1e-12 * b.abs().max(1.0)
    }

    fn item(label: &str, value: f64, uom: &str) -> PerfData {
        PerfData {
            label: label.to_owned(),
            value,
            uom: uom.to_owned(),
            warn: None,
            crit: None,
            min: None,
            max: None,
        }
    }

    fn some(s: &str) -> Option<String> {
        Some(s.to_owned())
    }

    #[test]
    fn real_check_disk_perfdata_is_bytes_with_thresholds() {
        let (text, _) = captured!("debian12-this-image_check_disk_w20pct_c10pct_p-root");
        let out = parse_output(text, false);
        assert_eq!(
            out.message,
            "DISK OK - free space: / 71488MiB (76% inode=97%);"
        );
        assert_eq!(
            out.perfdata,
            vec![PerfData {
                warn: some("216442024755"),
                crit: some("243497277849"),
                min: Some(0.0),
                max: Some(270552530944.0),
                ..item("/", 22610444288.0, "B")
            }]
        );
    }

    #[test]
    fn real_check_load_trailing_semicolons_and_space() {
        let (text, _) = captured!("debian12-this-image_check_load_w5-4-3_c10-8-6");
        let out = parse_output(text, false);
        let load = |label: &str, value: f64, warn: &str, crit: &str| PerfData {
            warn: some(warn),
            crit: some(crit),
            min: Some(0.0),
            ..item(label, value, "")
        };
        assert_eq!(
            out.perfdata,
            vec![
                load("load1", 0.57, "5.000", "10.000"),
                load("load5", 0.36, "4.000", "8.000"),
                load("load15", 0.49, "3.000", "6.000"),
            ]
        );
    }

    #[test]
    fn real_check_apt_users_procs_perfdata() {
        let apt = parse_output(captured!("debian12-this-image_check_apt").0, false);
        assert_eq!(
            apt.perfdata,
            vec![
                PerfData {
                    min: Some(0.0),
                    ..item("available_upgrades", 132.0, "")
                },
                PerfData {
                    min: Some(0.0),
                    ..item("critical_updates", 81.0, "")
                },
            ]
        );
        let users = parse_output(captured!("debian12-this-image_check_users_w5_c10").0, false);
        assert_eq!(users.message, "USERS OK - 0 users currently logged in");
        assert_eq!(
            users.perfdata,
            vec![PerfData {
                warn: some("5"),
                crit: some("10"),
                min: Some(0.0),
                ..item("users", 0.0, "")
            }]
        );
        let procs = parse_output(captured!("debian12-this-image_check_procs").0, false);
        assert_eq!(procs.message, "PROCS OK: 77 processes");
        assert_eq!(
            procs.perfdata,
            vec![PerfData {
                min: Some(0.0),
                ..item("procs", 77.0, "")
            }]
        );
    }

    #[test]
    fn captured_ok_and_critical_results_become_checks_and_metrics() {
        let c = plugin("disk", &["check_disk"]);
        let f = findings_for(
            &c,
            &output(captured!(
                "debian12-this-image_check_disk_w20pct_c10pct_p-root"
            )),
        );
        assert_eq!(status(&f), CheckStatus::Ok);
        let r = &f.checks[0];
        assert_eq!(r.check_id, "custom.disk");
        assert_eq!(r.title, "Custom check disk");
        assert_eq!(r.value, "DISK OK - free space: / 71488MiB (76% inode=97%);");
        assert_eq!(r.threshold, "/: warn 216442024755, crit 243497277849 (B)");
        assert_eq!(r.evidence, "captured: exit 0");
        assert_eq!(metric_value(&f, "custom.disk._"), Some(22610444288.0));
        assert_eq!(label_of(&f, "custom.disk._", "uom").as_deref(), Some("B"));
        assert_eq!(
            label_of(&f, "custom.disk._", "perfdata").as_deref(),
            Some("/")
        );

        let f = findings_for(
            &c,
            &output(captured!(
                "debian12-this-image_check_disk_w100pct_c100pct_p-root_CRITICAL"
            )),
        );
        assert_eq!(status(&f), CheckStatus::Critical);
        assert_eq!(f.checks[0].threshold, "/: warn 0, crit 0 (B)");
        assert_eq!(metric_value(&f, "custom.disk._"), Some(22289580032.0));

        let apt = plugin("apt", &["check_apt"]);
        let f = findings_for(&apt, &output(captured!("debian12-this-image_check_apt")));
        assert_eq!(status(&f), CheckStatus::Critical);
        assert_eq!(f.checks[0].threshold, "");
        assert_eq!(metric_value(&f, "custom.apt.critical_updates"), Some(81.0));
        assert_eq!(
            label_of(&f, "custom.apt.critical_updates", "uom").as_deref(),
            Some("")
        );

        let swap = plugin("swap", &["check_swap"]);
        let f = findings_for(
            &swap,
            &output(captured!(
                "debian12-this-image_check_swap_w20pct_c10pct_no-swap_CRITICAL"
            )),
        );
        assert_eq!(status(&f), CheckStatus::Critical);
        assert_eq!(metric_value(&f, "custom.swap.swap"), Some(0.0));
    }

    #[test]
    fn threshold_comes_from_the_first_item_that_has_one() {
        let c = plugin("load", &["check_load"]);
        let f = findings_for(
            &c,
            &output(captured!(
                "debian12-this-image_check_load_r_impossible_CRITICAL"
            )),
        );
        assert_eq!(status(&f), CheckStatus::Critical);
        // load1 leads without thresholds; scaled_load1 carries them.
        assert_eq!(
            f.checks[0].threshold,
            "scaled_load1: warn 0.001, crit 0.002"
        );
        assert_eq!(f.metrics.len(), 6);
        assert_eq!(metric_value(&f, "custom.load.scaled_load1"), Some(0.305));
        assert_eq!(metric_value(&f, "custom.load.load15"), Some(0.49));
    }

    #[test]
    fn constructed_from_guidelines_quotes_ranges_units_and_u() {
        let text = include_str!(
            "../../testdata/plugins/constructed-from-guidelines_quoted-labels-ranges.txt"
        );
        let out = parse_output(text, false);
        assert_eq!(out.message, "GUIDELINES OK - each perfdata rule once");
        assert_eq!(
            out.perfdata,
            vec![
                PerfData {
                    warn: some("10"),
                    crit: some("10:"),
                    ..item("label with spaces", 10.0, "")
                },
                PerfData {
                    warn: some("~:10"),
                    crit: some("@10:20"),
                    min: Some(0.0),
                    ..item("it's", 5.0, "s")
                },
                // `undetermined=U` is not here: unknown is not 0.
                PerfData {
                    warn: some("10:20"),
                    ..item("rta", 12.5, "ms")
                },
                item("pl", 0.0, "%"),
                PerfData {
                    warn: some("5948"),
                    crit: some("5958"),
                    min: Some(0.0),
                    max: Some(5968.0),
                    ..item("disk", 2643.0, "MB")
                },
                item("io", 123456.0, "c"),
                item("tiny", 250.0, "us"),
            ]
        );
        let f = findings_for(
            &plugin("g", &["x"]),
            &Output {
                code: Some(0),
                stdout: text.to_owned(),
                stderr: String::new(),
                truncated: false,
                command: "x".to_owned(),
            },
        );
        assert_eq!(
            f.checks[0].threshold,
            "label with spaces: warn 10, crit 10:"
        );
        let expect = [
            ("custom.g.label_with_spaces", 10.0, ""),
            ("custom.g.it_s", 5.0, "s"),
            ("custom.g.rta", 0.0125, "s"),
            ("custom.g.pl", 0.0, "%"),
            ("custom.g.disk", 2643.0 * 1024.0 * 1024.0, "B"),
            ("custom.g.io", 123456.0, "c"),
            ("custom.g.tiny", 0.00025, "s"),
        ];
        assert_eq!(f.metrics.len(), expect.len(), "{:?}", f.metrics);
        for (name, value, uom) in expect {
            let got = metric_value(&f, name).unwrap_or(f64::NAN);
            assert!(close(got, value), "{name}: {got} != {value}");
            assert_eq!(label_of(&f, name, "uom").as_deref(), Some(uom), "{name}");
        }
        assert_eq!(
            label_of(&f, "custom.g.it_s", "perfdata").as_deref(),
            Some("it's")
        );
    }

    #[test]
    fn nagios3_multiline_perfdata_continues_after_the_long_output() {
        let text = include_str!("../../testdata/plugins/nagios-core3-pluginapi_multiline-disk.txt");
        let out = parse_output(text, false);
        assert_eq!(out.message, "DISK OK - free space: / 3326 MB (56%);");
        assert_eq!(
            out.long_output,
            "/ 15272 MB (77%);\n/boot 68 MB (69%);\n/home 69357 MB (27%);\n/var/log 819 MB (84%);"
        );
        let labels: Vec<(&str, f64)> = out
            .perfdata
            .iter()
            .map(|p| (p.label.as_str(), p.value))
            .collect();
        assert_eq!(
            labels,
            [
                ("/", 2643.0),
                ("/boot", 68.0),
                ("/home", 69357.0),
                ("/var/log", 818.0)
            ]
        );
        assert!(out.perfdata.iter().all(|p| p.uom == "MB"));
        let f = findings_for(
            &plugin("disk", &["x"]),
            &Output {
                code: Some(0),
                stdout: text.to_owned(),
                stderr: String::new(),
                truncated: false,
                command: "x".to_owned(),
            },
        );
        assert_eq!(
            metric_value(&f, "custom.disk._var_log"),
            Some(818.0 * 1024.0 * 1024.0)
        );
        assert!(f.checks[0].evidence.contains("\n/boot 68 MB (69%);"));
    }

    #[test]
    fn guidelines_multiline_template_has_no_valid_items() {
        let text = include_str!(
            "../../testdata/plugins/monitoring-plugins-guidelines_multiline-format-template.txt"
        );
        let out = parse_output(text, false);
        assert_eq!(out.message, "SERVICE STATUS: First line of output");
        assert_eq!(
            out.long_output,
            "Any number of subsequent lines of output, but note that buffers\nmay have a limited size"
        );
        assert_eq!(out.perfdata, []);
    }

    #[test]
    fn malformed_items_are_skipped_and_the_rest_kept() {
        let labels =
            |s: &str| -> Vec<String> { parse_perfdata(s).into_iter().map(|p| p.label).collect() };
        let none: [&str; 0] = [];
        for bad in [
            "",
            " \t\n ",
            "|",
            "=",
            "=1",
            "a",
            "a=",
            "a=;",
            "a=U",
            "a=U%;1;2",
            "a=1;2;3;4;5;6",
            "a=1,5",
            "a=0,",
            "a=1x2",
            "a=inf b=NaN c=infinity d=-inf",
            "a=1e999 b=1e999KB",
            "a=. b=- c=+ d=e5 e=--1",
            "'a",
            "'",
            "''",
            "'''=1",
            "'   '=1",
            "'unterminated=1 b=2",
        ] {
            assert_eq!(labels(bad), none, "{bad:?}");
        }
        assert_eq!(labels("a= b=2"), ["b"]);
        assert_eq!(labels("'a' =1 b=2"), ["b"]);
        assert_eq!(labels("x foo bar=3"), ["bar"]);
        assert_eq!(labels("'a=b'=1 ''''=2"), ["a=b", "'"]);
        assert_eq!(
            parse_perfdata("a=1;warn;@;:;x"),
            [item("a", 1.0, "")],
            "bad ranges and bounds are dropped, the value kept"
        );
        assert_eq!(
            parse_perfdata("a=.5 b=5. c=+3 d=-1.5e3KB e=2E-3s"),
            [
                item("a", 0.5, ""),
                item("b", 5.0, ""),
                item("c", 3.0, ""),
                item("d", -1500.0, "KB"),
                item("e", 0.002, "s"),
            ]
        );
        assert_eq!(parse_perfdata("'温度'=3°C"), [item("温度", 3.0, "°C")]);
        assert_eq!(sanitize_label("温度"), "__");
        assert_eq!(
            parse_perfdata("a=5seconds b=5abcdefghijklmnopq"),
            [item("a", 5.0, "seconds")]
        );
    }

    #[test]
    fn parser_survives_huge_binary_and_random_input() {
        let many = "a=1 ".repeat(100_000);
        assert_eq!(parse_perfdata(&many).len(), 100_000);
        let long_label = format!("'{}'=1", "x".repeat(1_000_000));
        assert_eq!(parse_perfdata(&long_label)[0].label.len(), 1_000_000);
        assert_eq!(sanitize_label(&"X".repeat(1000)).len(), MAX_LABEL_CHARS);
        let bytes: Vec<u8> = (0..=255u8).cycle().take(70_000).collect();
        let binary = String::from_utf8_lossy(&bytes);
        let _ = parse_output(&binary, false);
        let _ = parse_output(&binary, true);

        // A small deterministic generator: no extra dependency, same cases
        // on every run.
        let alphabet: Vec<char> = "a'= ;:@~.-+019eEU%BKMsc|\n\t\0é".chars().collect();
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move || {
            seed = seed
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (seed >> 33) as usize
        };
        for _ in 0..20_000 {
            let len = next() % 40;
            let s: String = (0..len)
                .map(|_| alphabet[next() % alphabet.len()])
                .collect();
            for p in parse_perfdata(&s) {
                assert!(p.value.is_finite(), "{s:?}");
                assert!(!p.label.trim().is_empty(), "{s:?}");
            }
            let _ = parse_output(&s, next() % 2 == 0);
        }
    }

    #[test]
    fn truncated_output_keeps_complete_lines_only() {
        let out = parse_output("OK | a=1 b=2\nmore | c=3 d=12", true);
        let labels: Vec<&str> = out.perfdata.iter().map(|p| p.label.as_str()).collect();
        // `d=12` may have been `d=1234` before the cut.
        assert_eq!(labels, ["a", "b"]);
        let out = parse_output("OK but one very long line | a=12", true);
        assert_eq!(out.message, "OK but one very long line");
        assert_eq!(out.perfdata, []);
    }

    #[test]
    fn metric_names_are_sanitized_and_repeated_labels_kept_once() {
        assert_eq!(sanitize_label("/"), "_");
        assert_eq!(sanitize_label("Load 1"), "load_1");
        assert_eq!(sanitize_label("it's"), "it_s");
        assert_eq!(sanitize_label("/dev/shm"), "_dev_shm");
        assert_eq!(sanitize_label("a.b_C-9"), "a.b_c_9");
        let f = findings_for(
            &plugin("dup", &["x"]),
            &Output {
                code: Some(0),
                stdout: "OK | a=1 a=2 b=U\n".to_owned(),
                stderr: String::new(),
                truncated: false,
                command: "x".to_owned(),
            },
        );
        assert_eq!(f.metrics.len(), 1);
        assert_eq!(metric_value(&f, "custom.dup.a"), Some(1.0));

        let many: String = (0..1000).map(|i| format!(" m{i}=1")).collect();
        let f = findings_for(
            &plugin("many", &["x"]),
            &Output {
                code: Some(0),
                stdout: format!("OK |{many}\n'multi\nline'=3\n"),
                stderr: String::new(),
                truncated: false,
                command: "x".to_owned(),
            },
        );
        assert_eq!(f.metrics.len(), MAX_METRICS);
        assert!(
            f.checks[0]
                .evidence
                .contains("1000 performance data items, only the first 256 kept")
        );
        let f = findings_for(
            &plugin("nl", &["x"]),
            &Output {
                code: Some(0),
                stdout: "OK\nlong | 'multi\nline'=3\n".to_owned(),
                stderr: String::new(),
                truncated: false,
                command: "x".to_owned(),
            },
        );
        assert_eq!(
            label_of(&f, "custom.nl.multi_line", "perfdata").as_deref(),
            Some("multi line")
        );
    }

    #[test]
    fn config_parses_with_defaults_and_rejects_unknown_fields() {
        #[derive(serde::Deserialize)]
        struct File {
            checks: Vec<PluginCheck>,
        }
        let file: File = toml::from_str(
            r#"
            [[checks]]
            id = "disk"
            command = ["/usr/lib/nagios/plugins/check_disk", "-w", "20%", "-c", "10%", "-p", "/"]

            [[checks]]
            id = "load.1m"
            title = "Load"
            command = ["check_load"]
            interval = "1m"
            timeout = "10s"
            "#,
        )
        .unwrap();
        let [disk, load] = &file.checks[..] else {
            panic!("{:?}", file.checks.len())
        };
        assert_eq!(disk.interval, Duration::from_secs(300));
        assert_eq!(disk.timeout, Duration::from_secs(30));
        assert_eq!(disk.title, None);
        assert_eq!(disk.check_id(), "custom.disk");
        assert_eq!(load.title_text(), "Load");
        assert_eq!(load.interval, Duration::from_secs(60));
        assert_eq!(disk.validate(), Ok(()));
        assert_eq!(load.validate(), Ok(()));

        let err =
            toml::from_str::<File>("[[checks]]\nid = \"x\"\ncommand = [\"true\"]\nshell = true\n")
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
        assert!(err.contains("shell"), "{err}");
        let err = toml::from_str::<File>(
            "[[checks]]\nid = \"x\"\ncommand = [\"true\"]\ninterval = \"soon\"\n",
        )
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
        assert!(err.contains("interval"), "{err}");
    }

    #[test]
    fn validation_names_the_field() {
        let ok = plugin("ok", &["check_dummy", "0"]);
        let bad = |f: &dyn Fn(&mut PluginCheck)| {
            let mut c = ok.clone();
            f(&mut c);
            c.validate().unwrap_err()
        };
        for (msg, field) in [
            (bad(&|c| c.id = "Disk".into()), "`id`"),
            (bad(&|c| c.id = String::new()), "`id`"),
            (bad(&|c| c.id = "a".repeat(65)), "`id`"),
            (bad(&|c| c.id = "a b".into()), "`id`"),
            (bad(&|c| c.command.clear()), "`command`"),
            (bad(&|c| c.command = vec![" ".into()]), "`command`"),
            (bad(&|c| c.command = vec!["bin/check".into()]), "`command`"),
            (bad(&|c| c.command.push("a\0b".into())), "`command`"),
            (bad(&|c| c.interval = Duration::ZERO), "`interval`"),
            (
                bad(&|c| c.interval = Duration::from_secs(2 * 86_400)),
                "`interval`",
            ),
            (bad(&|c| c.timeout = Duration::ZERO), "`timeout`"),
            (bad(&|c| c.timeout = c.interval), "`timeout`"),
        ] {
            assert!(msg.contains(field), "{msg}");
        }
        let msg = bad(&|c| c.timeout = Duration::from_secs(600));
        assert!(
            msg.contains("\"ok\"") && msg.contains("10m") && msg.contains("1m"),
            "{msg}"
        );
        let mut max_id = ok.clone();
        max_id.id = "a.b_c-1".repeat(10)[..64].to_owned();
        assert_eq!(max_id.validate(), Ok(()));
    }

    #[test]
    fn schedule_runs_all_at_start_then_each_on_its_interval() {
        let secs = Duration::from_secs;
        let mut fast = plugin("fast", &["x"]);
        fast.interval = secs(10);
        let mut slow = plugin("slow", &["x"]);
        slow.interval = secs(30);
        const NONE: [usize; 0] = [];
        let t0 = Instant::now();
        let mut s = PluginSchedule::new(&[fast, slow]);
        assert_eq!(s.due(t0), [0, 1]);
        assert_eq!(s.due(t0), NONE);
        assert_eq!(s.due(t0 + secs(9)), NONE);
        assert_eq!(s.due(t0 + Duration::from_millis(10_900)), [0]);
        // The slot is t0+20s, not 20.9s: polling late does not drift.
        assert_eq!(s.due(t0 + secs(20)), [0]);
        assert_eq!(s.due(t0 + secs(29)), NONE);
        assert_eq!(s.due(t0 + secs(30)), [0, 1]);
        // After a long gap each runs once, not once per missed slot.
        assert_eq!(s.due(t0 + secs(1000)), [0, 1]);
        assert_eq!(s.due(t0 + secs(1001)), NONE);
        assert_eq!(s.due(t0 + secs(1010)), [0]);
        assert_eq!(PluginSchedule::new(&[]).due(t0), NONE);
    }

    // The real plugins: CI installs monitoring-plugins-basic, so a missing
    // plugin must fail these tests, not skip them.
    #[cfg(target_os = "linux")]
    mod real {
        use super::*;

        fn run(id: &str, plugin_name: &str, args: &[&str]) -> Findings {
            let program = format!("{PLUGINS}/{plugin_name}");
            let mut argv = vec![program.as_str()];
            argv.extend_from_slice(args);
            let f = run_check(&plugin(id, &argv));
            assert_eq!(f.checks.len(), 1);
            assert_ne!(
                status(&f),
                CheckStatus::Unknown,
                "{:?} (is monitoring-plugins-basic installed?)",
                f.checks[0]
            );
            f
        }

        #[test]
        fn check_disk_gives_a_state_and_bytes() {
            let f = run("disk", "check_disk", &["-w", "20%", "-c", "10%", "-p", "/"]);
            let r = &f.checks[0];
            assert_eq!(r.check_id, "custom.disk");
            assert!(r.value.starts_with("DISK "), "{r:?}");
            assert!(r.threshold.starts_with("/: warn "), "{r:?}");
            assert!(
                r.evidence
                    .starts_with("/usr/lib/nagios/plugins/check_disk -w 20% -c 10% -p /: exit ")
            );
            assert!(
                metric_value(&f, "custom.disk._").is_some_and(|v| v > 0.0),
                "{f:?}"
            );
            assert_eq!(label_of(&f, "custom.disk._", "uom").as_deref(), Some("B"));
        }

        #[test]
        fn check_disk_with_impossible_thresholds_is_critical() {
            let f = run(
                "disk",
                "check_disk",
                &["-w", "100%", "-c", "100%", "-p", "/"],
            );
            assert_eq!(status(&f), CheckStatus::Critical, "{:?}", f.checks[0]);
            assert!(f.checks[0].value.starts_with("DISK CRITICAL"));
            assert_eq!(f.checks[0].threshold, "/: warn 0, crit 0 (B)");
        }

        #[test]
        fn check_load_gives_three_load_averages() {
            let f = run("load", "check_load", &["-w", "5,4,3", "-c", "10,8,6"]);
            assert!(f.checks[0].value.starts_with("LOAD "), "{:?}", f.checks[0]);
            assert_eq!(f.checks[0].threshold, "load1: warn 5.000, crit 10.000");
            for m in ["load1", "load5", "load15"] {
                let v = metric_value(&f, &format!("custom.load.{m}"));
                assert!(v.is_some_and(|v| v >= 0.0), "{m}: {f:?}");
            }
        }

        #[test]
        fn check_dummy_states_map_to_statuses() {
            let f = run("dummy", "check_dummy", &["1", "disk nearly full"]);
            assert_eq!(status(&f), CheckStatus::Warning);
            assert_eq!(f.checks[0].value, "WARNING: disk nearly full");
            let f = run("dummy", "check_dummy", &["2", "down"]);
            assert_eq!(status(&f), CheckStatus::Critical);
            let f = run_check(&plugin(
                "dummy",
                &[&format!("{PLUGINS}/check_dummy"), "3", "no data"],
            ));
            assert_eq!(status(&f), CheckStatus::Unknown);
            assert_eq!(
                f.checks[0].reason,
                "the plugin reported UNKNOWN: UNKNOWN: no data"
            );
        }
    }

    // Scripts run as `/bin/sh FILE`: executing a file this process has just
    // written can fail with ETXTBSY while another test thread forks.
    #[cfg(unix)]
    mod scripts {
        use super::*;

        fn script(dir: &tempfile::TempDir, body: &str) -> PluginCheck {
            let path = dir.path().join("plugin.sh");
            std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
            let path = path.to_str().unwrap().to_owned();
            plugin("script", &["/bin/sh", &path])
        }

        fn run(body: &str) -> Findings {
            let dir = tempfile::tempdir().unwrap();
            run_check(&script(&dir, body))
        }

        #[test]
        fn exit_3_is_unknown_with_the_plugin_message() {
            let f = run("echo 'SVC UNKNOWN - cannot reach the service | rtt=U;;;'\nexit 3");
            assert_eq!(status(&f), CheckStatus::Unknown);
            assert_eq!(
                f.checks[0].reason,
                "the plugin reported UNKNOWN: SVC UNKNOWN - cannot reach the service"
            );
            assert_eq!(f.metrics, []);
        }

        #[test]
        fn exit_7_is_unknown_and_its_output_untrusted() {
            let f = run("echo 'odd | a=1'\necho 'segfault-ish' >&2\nexit 7");
            assert_eq!(status(&f), CheckStatus::Unknown);
            assert_eq!(
                f.checks[0].reason,
                "exited with status 7, not a plugin state (0-3): segfault-ish"
            );
            assert!(
                f.checks[0]
                    .evidence
                    .contains("exit 7; stderr: segfault-ish")
            );
            assert_eq!(f.metrics, []);
        }

        #[test]
        fn killed_by_a_signal_is_unknown() {
            let f = run("echo 'about to die'\nkill -9 $$");
            assert_eq!(status(&f), CheckStatus::Unknown);
            assert_eq!(f.checks[0].reason, "was killed by a signal: about to die");
        }

        #[test]
        fn a_hanging_plugin_times_out_as_unknown() {
            let dir = tempfile::tempdir().unwrap();
            let mut c = script(&dir, "echo 'OK | a=1'\nsleep 30");
            c.timeout = Duration::from_millis(300);
            let start = Instant::now();
            let f = run_check(&c);
            assert!(start.elapsed() < Duration::from_secs(10));
            assert_eq!(status(&f), CheckStatus::Unknown);
            assert_eq!(f.checks[0].reason, "timed out after 300ms and was killed");
            assert_eq!(f.metrics, []);
        }

        #[test]
        fn huge_output_is_capped_and_complete_lines_still_count() {
            let f = run(
                "echo 'BIG OK | first=1;2;3'\nhead -c 1000000 /dev/zero | tr '\\000' y\necho ' | late=2'",
            );
            assert_eq!(status(&f), CheckStatus::Ok);
            assert_eq!(f.checks[0].value, "BIG OK");
            assert_eq!(f.checks[0].threshold, "first: warn 2, crit 3");
            assert_eq!(metric_value(&f, "custom.script.first"), Some(1.0));
            assert_eq!(metric_value(&f, "custom.script.late"), None);
            assert!(f.checks[0].evidence.contains("over 64 KiB"));
            assert!(f.checks[0].evidence.chars().count() <= MAX_EVIDENCE_CHARS + 1);

            let f = run("head -c 1000000 /dev/zero | tr '\\000' x\necho ' | never=1'\nexit 1");
            assert_eq!(status(&f), CheckStatus::Warning);
            assert_eq!(f.checks[0].value.chars().count(), MAX_VALUE_CHARS + 1);
            assert_eq!(f.metrics, []);
        }

        #[test]
        fn binary_and_empty_output_do_not_break_the_check() {
            let f = run("printf 'OK \\001\\377\\000 bin | a=1 \\377=2\\n'");
            assert_eq!(status(&f), CheckStatus::Ok);
            assert!(
                !f.checks[0].value.chars().any(char::is_control),
                "{:?}",
                f.checks[0]
            );
            assert_eq!(metric_value(&f, "custom.script.a"), Some(1.0));
            assert_eq!(metric_value(&f, "custom.script._"), Some(2.0));

            let f = run("exit 0");
            assert_eq!(status(&f), CheckStatus::Ok);
            assert_eq!(f.checks[0].value, "(no output)");
            let f = run("exit 2");
            assert_eq!(status(&f), CheckStatus::Critical);
        }

        #[test]
        fn long_output_perfdata_is_collected() {
            let f = run("printf 'MULTI OK | a=1\\nline two\\nline three | b=2KB\\nc=3ms\\n'");
            assert_eq!(status(&f), CheckStatus::Ok);
            assert_eq!(f.checks[0].value, "MULTI OK");
            assert_eq!(metric_value(&f, "custom.script.a"), Some(1.0));
            assert_eq!(metric_value(&f, "custom.script.b"), Some(2048.0));
            assert!(metric_value(&f, "custom.script.c").is_some_and(|v| close(v, 0.003)));
            assert!(
                f.checks[0].evidence.ends_with("\nline two\nline three"),
                "{:?}",
                f.checks[0]
            );
        }

        #[test]
        fn missing_unrunnable_and_misconfigured_plugins_are_unknown() {
            let f = run_check(&plugin("x", &["/nonexistent/check_nothing"]));
            assert_eq!(status(&f), CheckStatus::Unknown);
            assert_eq!(
                f.checks[0].reason,
                "/nonexistent/check_nothing does not exist or is not a file"
            );
            let f = run_check(&plugin("x", &["xunjian-no-such-plugin"]));
            assert_eq!(status(&f), CheckStatus::Unknown);
            assert!(
                f.checks[0].reason.contains("not installed"),
                "{:?}",
                f.checks[0]
            );

            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("not-executable");
            std::fs::write(&path, "#!/bin/sh\necho OK\n").unwrap();
            let f = run_check(&plugin("x", &[path.to_str().unwrap()]));
            assert_eq!(status(&f), CheckStatus::Unknown);
            assert!(
                f.checks[0].reason.starts_with("cannot run"),
                "{:?}",
                f.checks[0]
            );

            let mut c = plugin("x", &["true"]);
            c.timeout = c.interval;
            let f = run_check(&c);
            assert_eq!(status(&f), CheckStatus::Unknown);
            assert!(
                f.checks[0]
                    .reason
                    .starts_with("invalid check configuration: "),
                "{:?}",
                f.checks[0]
            );
        }
    }
}
