//! Load and services: the top processes by CPU and memory (from data the
//! caller gathers), failed systemd units (Windows: automatic services that
//! are stopped) and time synchronisation (chrony, systemd's timedatectl,
//! Windows w32time).

use std::time::Duration;

use serde::Deserialize;
use xunjian_proto::{CheckResult, CheckStatus, Metric};

use super::{Findings, check, metric, unknown};

pub const FAILED_UNITS: &str = "service.failed_units";
const FAILED_UNITS_TITLE: &str = "Failed services";
const FAILED_UNITS_THRESHOLD: &str = "no failed units (Windows: no automatic service stopped)";

pub const TIME_SYNC: &str = "time.sync";
const TIME_SYNC_TITLE: &str = "Time synchronisation";
const TIME_SYNC_THRESHOLD: &str = "synchronised with |offset| < 1 s; offset >= 1 s or local clock only is a warning; not synchronised is critical";

/// Metric: CPU use of the processes of one name, in percent of one CPU,
/// labelled name.
pub const METRIC_PROC_CPU: &str = "proc.cpu_pct";
/// Metric: resident memory of the processes of one name, bytes, labelled
/// name.
pub const METRIC_PROC_RSS: &str = "proc.rss_bytes";
/// Metric: clock offset from the time source, seconds, labelled `source`;
/// the sign is the source's own convention, judgements use its magnitude.
pub const METRIC_TIME_OFFSET: &str = "time.offset_s";

/// How many processes of each ranking are reported.
pub const TOP_N: usize = 5;
/// An offset of this many seconds or more is a warning.
pub const MAX_OFFSET_S: f64 = 1.0;

const SYSTEMCTL_TIMEOUT: Duration = Duration::from_secs(30);
const TIME_TIMEOUT: Duration = Duration::from_secs(15);

// ------------------------------------------------------------ processes

/// The top `n` process names by CPU (`proc.cpu_pct`) and by resident
/// memory (`proc.rss_bytes`), the processes of one name added up, labelled
/// name only. A pid label would make a new series for every restarted
/// process (unbounded cardinality over months); grouping by name is what
/// process exporters do. Input rows are `(pid, name, cpu_pct, rss_bytes)`;
/// a CPU value that is not a finite, non-negative number is left out of the
/// CPU sum.
pub fn top_processes<S: AsRef<str>>(procs: &[(u32, S, f64, u64)], n: usize) -> Vec<Metric> {
    // BTreeMap: the same data always gives the same report.
    let mut by_name: std::collections::BTreeMap<&str, (f64, u64)> = Default::default();
    for (_, name, cpu, rss) in procs {
        let entry = by_name.entry(name.as_ref()).or_default();
        if cpu.is_finite() && *cpu >= 0.0 {
            entry.0 += cpu;
        }
        entry.1 += rss;
    }
    let mut by_cpu: Vec<(&str, f64)> = by_name.iter().map(|(n, v)| (*n, v.0)).collect();
    // Ties by name, stable across reports.
    by_cpu.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(b.0)));
    let mut by_rss: Vec<(&str, u64)> = by_name.iter().map(|(n, v)| (*n, v.1)).collect();
    by_rss.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    by_cpu
        .iter()
        .take(n)
        .map(|(name, cpu)| metric(METRIC_PROC_CPU, *cpu, &[("name", name)]))
        .chain(
            by_rss
                .iter()
                .take(n)
                .map(|(name, rss)| metric(METRIC_PROC_RSS, *rss as f64, &[("name", name)])),
        )
        .collect()
}

// ---------------------------------------------------------- systemd units

/// One row of `systemctl list-units --plain --no-legend`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unit {
    pub unit: String,
    pub load: String,
    pub active: String,
    pub sub: String,
    pub description: String,
}

/// Parses `systemctl list-units --state=failed --no-legend --plain`:
/// `UNIT LOAD ACTIVE SUB DESCRIPTION...`. A leading status bullet, which
/// some versions print even with `--plain`, is skipped.
pub fn parse_units(stdout: &str) -> Vec<Unit> {
    stdout
        .lines()
        .filter_map(|line| {
            let mut w = line.split_whitespace().peekable();
            if w.peek().is_some_and(|f| matches!(*f, "●" | "*" | "×")) {
                w.next();
            }
            let unit = w.next()?;
            let load = w.next()?;
            let active = w.next()?;
            let sub = w.next()?;
            // Unit names always carry a type suffix.
            if !unit.contains('.') {
                return None;
            }
            Some(Unit {
                unit: unit.to_owned(),
                load: load.to_owned(),
                active: active.to_owned(),
                sub: sub.to_owned(),
                description: w.collect::<Vec<_>>().join(" "),
            })
        })
        .collect()
}

/// The reason systemd cannot be asked, when its tools say so (not booted
/// with systemd, as in containers, or no bus).
pub fn systemd_unavailable(stderr: &str) -> Option<String> {
    stderr
        .lines()
        .map(str::trim)
        .find(|l| {
            l.contains("has not been booted with systemd")
                || l.starts_with("Failed to connect to bus")
                || l.starts_with("Failed to connect to system scope bus")
        })
        .map(str::to_owned)
}

/// Judges one run of the failed-units listing.
pub fn judge_failed_units(
    code: Option<i32>,
    stdout: &str,
    stderr: &str,
    evidence: &str,
) -> CheckResult {
    if let Some(why) = systemd_unavailable(stderr) {
        return unknown(FAILED_UNITS, FAILED_UNITS_TITLE, why, evidence);
    }
    if code != Some(0) {
        let msg = stderr
            .lines()
            .chain(stdout.lines())
            .map(str::trim)
            .find(|l| !l.is_empty())
            .unwrap_or("no output");
        let reason = format!("systemctl {}: {msg}", exit_text(code));
        return unknown(FAILED_UNITS, FAILED_UNITS_TITLE, reason, evidence);
    }
    let units = parse_units(stdout);
    if units.is_empty() && !stdout.trim().is_empty() {
        return unknown(
            FAILED_UNITS,
            FAILED_UNITS_TITLE,
            "unrecognised systemctl output",
            evidence,
        );
    }
    judge_unit_list(
        units
            .iter()
            .map(|u| {
                if u.description.is_empty() {
                    u.unit.clone()
                } else {
                    format!("{} ({})", u.unit, u.description)
                }
            })
            .collect(),
        evidence,
    )
}

fn judge_unit_list(failed: Vec<String>, evidence: &str) -> CheckResult {
    if failed.is_empty() {
        return check(
            FAILED_UNITS,
            FAILED_UNITS_TITLE,
            CheckStatus::Ok,
            "0 failed units",
            FAILED_UNITS_THRESHOLD,
            evidence,
        );
    }
    check(
        FAILED_UNITS,
        FAILED_UNITS_TITLE,
        CheckStatus::Critical,
        format!("{} failed: {}", failed.len(), failed.join(", ")),
        FAILED_UNITS_THRESHOLD,
        evidence,
    )
}

// -------------------------------------------------------- Windows services

/// One service from `Get-CimInstance Win32_Service | Select-Object
/// Name,StartMode,State,ExitCode | ConvertTo-Json`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct WinService {
    #[serde(rename = "Name", default)]
    pub name: String,
    /// "Auto", "Manual", "Disabled", "Boot", "System".
    #[serde(rename = "StartMode", default)]
    pub start_mode: String,
    /// "Running", "Stopped", ...
    #[serde(rename = "State", default)]
    pub state: String,
    /// Win32 exit code of the last stop; absent when not selected.
    #[serde(rename = "ExitCode", default)]
    pub exit_code: Option<i64>,
}

/// Parses the ConvertTo-Json output: an array, or a single object when
/// there was one service.
pub fn parse_win_services(json: &str) -> Result<Vec<WinService>, String> {
    let json = json.trim_start_matches('\u{feff}').trim();
    if json.is_empty() {
        return Err("empty output".into());
    }
    if json.starts_with('{') {
        return serde_json::from_str::<WinService>(json)
            .map(|s| vec![s])
            .map_err(|e| e.to_string());
    }
    serde_json::from_str::<Vec<WinService>>(json).map_err(|e| e.to_string())
}

/// Win32 exit codes that mean "stopped without an error": 0, and 1077
/// (never started since boot).
const CLEAN_EXIT_CODES: [i64; 2] = [0, 1077];

/// Judges automatic services that are not running. Critical when one of
/// them stopped with an error exit code (the Windows counterpart of a
/// failed unit); warning when they stopped cleanly, since trigger-start
/// and delayed services stop by design.
pub fn judge_windows_services(services: &[WinService], evidence: &str) -> CheckResult {
    if services.is_empty() {
        return unknown(
            FAILED_UNITS,
            FAILED_UNITS_TITLE,
            "Win32_Service returned no services",
            evidence,
        );
    }
    let stopped: Vec<&WinService> = services
        .iter()
        .filter(|s| {
            s.start_mode.eq_ignore_ascii_case("Auto") && !s.state.eq_ignore_ascii_case("Running")
        })
        .collect();
    if stopped.is_empty() {
        return check(
            FAILED_UNITS,
            FAILED_UNITS_TITLE,
            CheckStatus::Ok,
            "0 automatic services stopped",
            FAILED_UNITS_THRESHOLD,
            evidence,
        );
    }
    let failed = stopped
        .iter()
        .any(|s| s.exit_code.is_some_and(|c| !CLEAN_EXIT_CODES.contains(&c)));
    let list: Vec<String> = stopped
        .iter()
        .map(|s| match s.exit_code {
            Some(c) => format!("{} ({}, exit code {c})", s.name, s.state),
            None => format!("{} ({})", s.name, s.state),
        })
        .collect();
    check(
        FAILED_UNITS,
        FAILED_UNITS_TITLE,
        if failed {
            CheckStatus::Critical
        } else {
            CheckStatus::Warning
        },
        format!(
            "{} automatic service(s) not running: {}",
            list.len(),
            list.join(", ")
        ),
        FAILED_UNITS_THRESHOLD,
        evidence,
    )
}

// ------------------------------------------------------------------ time

/// Whether the clock follows a time source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncState {
    Synchronised,
    /// Serving its own clock (chrony `local`, w32time local CMOS): no
    /// external reference.
    LocalClockOnly,
    NotSynchronised,
}

/// What a time source said.
#[derive(Debug, Clone, PartialEq)]
pub struct TimeSync {
    /// "chrony", "timedatectl", "w32time".
    pub source: &'static str,
    pub state: SyncState,
    /// Seconds, in the source's sign convention; `None` when it does not
    /// report one.
    pub offset_s: Option<f64>,
    /// The fields the state was read from, for people.
    pub detail: String,
}

/// chrony's reference id for its own `local` clock (127.127.1.1).
const CHRONY_LOCAL_REFID: &str = "7F7F0101";

/// Parses `chronyc -c tracking`: one CSV line of 14 fields; field 5 is the
/// system time offset in seconds and field 14 the leap status.
pub fn parse_chronyc_tracking(stdout: &str) -> Result<TimeSync, String> {
    let line = stdout
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .ok_or("empty output")?;
    let f: Vec<&str> = line.split(',').collect();
    if f.len() < 14 {
        return Err(format!("expected 14 CSV fields, got {}: {line:?}", f.len()));
    }
    let offset = f[4]
        .parse::<f64>()
        .ok()
        .filter(|v| v.is_finite())
        .ok_or_else(|| format!("system time field is not a number: {:?}", f[4]))?;
    let leap = f[13];
    let refid = f[0];
    let state = match leap {
        "Not synchronised" => SyncState::NotSynchronised,
        _ if refid.eq_ignore_ascii_case(CHRONY_LOCAL_REFID) => SyncState::LocalClockOnly,
        "Normal" | "Insert second" | "Delete second" => SyncState::Synchronised,
        other => return Err(format!("unknown leap status {other:?}")),
    };
    let name = if f[1].is_empty() { "-" } else { f[1] };
    Ok(TimeSync {
        source: "chrony",
        state,
        offset_s: Some(offset),
        detail: format!(
            "reference {refid} ({name}), stratum {}, system time {offset} s, leap status {leap}",
            f[2]
        ),
    })
}

/// Parses `timedatectl show` (key=value): NTPSynchronized is the kernel's
/// view, whichever daemon (timesyncd, chrony, ntpd) disciplines the clock.
pub fn parse_timedatectl_show(stdout: &str) -> Result<TimeSync, String> {
    let get = |key: &str| {
        stdout
            .lines()
            .find_map(|l| l.trim().strip_prefix(key)?.strip_prefix('='))
            .map(str::trim)
    };
    let synced = get("NTPSynchronized").ok_or("no NTPSynchronized in the output")?;
    let ntp = get("NTP").unwrap_or("?");
    let state = match synced {
        "yes" => SyncState::Synchronised,
        "no" => SyncState::NotSynchronised,
        other => return Err(format!("unknown NTPSynchronized value {other:?}")),
    };
    Ok(TimeSync {
        source: "timedatectl",
        state,
        offset_s: None,
        detail: format!("NTPSynchronized={synced}, NTP={ntp}"),
    })
}

/// The `Offset:` of `timedatectl timesync-status` (systemd-timesyncd), in
/// seconds: systemd time spans such as `-2.473ms`, `+1min 3.5s`.
pub fn parse_timesync_offset(stdout: &str) -> Option<f64> {
    let value = stdout
        .lines()
        .find_map(|l| l.trim().strip_prefix("Offset:"))?
        .trim();
    let (sign, rest) = match value.strip_prefix('-') {
        Some(r) => (-1.0, r),
        None => (1.0, value.strip_prefix('+').unwrap_or(value)),
    };
    let mut total = 0.0;
    let mut any = false;
    for part in rest.split_whitespace() {
        let split = part
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(part.len());
        let (num, unit) = part.split_at(split);
        let n: f64 = num.parse().ok()?;
        let scale = match unit {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" | "sec" => 1.0,
            "min" | "m" => 60.0,
            "h" => 3600.0,
            "d" => 86_400.0,
            _ => return None,
        };
        total += n * scale;
        any = true;
    }
    (any && total.is_finite()).then_some(sign * total)
}

/// w32time sources that mean the clock is not following any server.
const W32TM_LOCAL_SOURCES: [&str; 2] = ["Local CMOS Clock", "Free-running System Clock"];

/// Parses English `w32tm /query /status [/verbose]`: Leap Indicator 3
/// means not synchronised; a local source means no reference; `Phase
/// Offset` (verbose only) is the offset. Localised output is not
/// recognised and gives an error.
pub fn parse_w32tm_status(stdout: &str) -> Result<TimeSync, String> {
    let get = |key: &str| {
        stdout
            .lines()
            .find_map(|l| l.trim().strip_prefix(key)?.trim_start().strip_prefix(':'))
            .map(str::trim)
    };
    let leap_text = get("Leap Indicator")
        .ok_or("no \"Leap Indicator\" line (w32tm output may be localised)")?;
    let leap: u8 = leap_text
        .split(|c: char| !c.is_ascii_digit())
        .next()
        .and_then(|d| d.parse().ok())
        .ok_or_else(|| format!("unreadable leap indicator {leap_text:?}"))?;
    let source = get("Source").unwrap_or("");
    let offset_s = get("Phase Offset")
        .and_then(|v| v.trim_end_matches('s').parse::<f64>().ok())
        .filter(|v| v.is_finite());
    let state = if leap == 3 {
        SyncState::NotSynchronised
    } else if W32TM_LOCAL_SOURCES
        .iter()
        .any(|l| source.eq_ignore_ascii_case(l))
    {
        SyncState::LocalClockOnly
    } else if source.is_empty() {
        return Err("no Source line".into());
    } else {
        SyncState::Synchronised
    };
    Ok(TimeSync {
        source: "w32time",
        state,
        offset_s,
        detail: format!("Leap Indicator: {leap_text}, Source: {source}"),
    })
}

/// Judges time synchronisation and gives the offset metric when known.
/// `Err` carries why no source could be asked.
pub fn judge_time_sync(
    sync: Result<&TimeSync, &str>,
    evidence: &str,
) -> (CheckResult, Vec<Metric>) {
    let sync = match sync {
        Ok(s) => s,
        Err(why) => {
            return (
                unknown(TIME_SYNC, TIME_SYNC_TITLE, why, evidence),
                Vec::new(),
            );
        }
    };
    let metrics = sync
        .offset_s
        .map(|o| vec![metric(METRIC_TIME_OFFSET, o, &[("source", sync.source)])])
        .unwrap_or_default();
    let offset_text = sync.offset_s.map_or_else(
        || "offset not reported".to_owned(),
        |o| format!("offset {o} s"),
    );
    let (status, what) = match sync.state {
        SyncState::NotSynchronised => (CheckStatus::Critical, "not synchronised"),
        SyncState::LocalClockOnly => (
            CheckStatus::Warning,
            "local clock only, no external reference",
        ),
        SyncState::Synchronised if sync.offset_s.is_some_and(|o| o.abs() >= MAX_OFFSET_S) => {
            (CheckStatus::Warning, "synchronised, offset too large")
        }
        SyncState::Synchronised => (CheckStatus::Ok, "synchronised"),
    };
    let value = format!("{what}, {offset_text} ({}: {})", sync.source, sync.detail);
    (
        check(
            TIME_SYNC,
            TIME_SYNC_TITLE,
            status,
            value,
            TIME_SYNC_THRESHOLD,
            evidence,
        ),
        metrics,
    )
}

// ---------------------------------------------------------------- shims

fn exit_text(code: Option<i32>) -> String {
    code.map_or_else(|| "killed by a signal".to_owned(), |c| format!("exit {c}"))
}

fn first_message(out: &crate::exec::Output) -> String {
    out.stderr
        .lines()
        .chain(out.stdout.lines())
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("no output")
        .to_owned()
}

/// Failed services and time synchronisation for this platform. Blocking
/// (runs tools with a timeout each); call from a blocking thread. Top
/// processes come from [`top_processes`] with the caller's data.
pub fn collect() -> Findings {
    #[cfg(windows)]
    {
        windows::collect()
    }
    #[cfg(not(windows))]
    {
        unix::collect()
    }
}

#[cfg(not(windows))]
mod unix {
    use super::*;
    use crate::exec::Cmd;

    pub(super) fn collect() -> Findings {
        let mut out = Findings::default();
        out.checks.push(failed_units());
        let (c, m) = time_sync();
        out.checks.push(c);
        out.metrics.extend(m);
        out
    }

    fn failed_units() -> CheckResult {
        let args = ["list-units", "--state=failed", "--no-legend", "--plain"];
        match Cmd::new("systemctl", &args)
            .timeout(SYSTEMCTL_TIMEOUT)
            .run()
        {
            Ok(o) => {
                let evidence = format!("{} ({})", o.command, exit_text(o.code));
                judge_failed_units(o.code, &o.stdout, &o.stderr, &evidence)
            }
            Err(e) => unknown(
                FAILED_UNITS,
                FAILED_UNITS_TITLE,
                e.to_string(),
                format!("systemctl {}", args.join(" ")),
            ),
        }
    }

    /// chrony first (it reports an offset), then timedatectl.
    fn time_sync() -> (CheckResult, Vec<Metric>) {
        let mut tried = Vec::new();
        let mut evidence = Vec::new();
        match Cmd::new("chronyc", &["-c", "tracking"])
            .timeout(TIME_TIMEOUT)
            .run()
        {
            Ok(o) if o.code == Some(0) => {
                let ev = format!("{} ({})", o.command, exit_text(o.code));
                match parse_chronyc_tracking(&o.stdout) {
                    Ok(s) => return judge_time_sync(Ok(&s), &ev),
                    Err(e) => tried.push(format!("chronyc: {e}")),
                }
                evidence.push(ev);
            }
            // "506 Cannot talk to daemon" when chronyd is not running.
            Ok(o) => {
                tried.push(format!(
                    "chronyc: {} ({})",
                    first_message(&o),
                    exit_text(o.code)
                ));
                evidence.push(o.command.clone());
            }
            Err(e) => {
                tried.push(format!("chronyc: {e}"));
                evidence.push("chronyc -c tracking".into());
            }
        }
        match Cmd::new("timedatectl", &["show"])
            .timeout(TIME_TIMEOUT)
            .run()
        {
            Ok(o) => {
                evidence.push(format!("{} ({})", o.command, exit_text(o.code)));
                let parsed = if let Some(why) = systemd_unavailable(&o.stderr) {
                    Err(why)
                } else if o.code != Some(0) {
                    Err(format!("{} ({})", first_message(&o), exit_text(o.code)))
                } else {
                    parse_timedatectl_show(&o.stdout)
                };
                match parsed {
                    Ok(mut s) => {
                        if s.state == SyncState::Synchronised {
                            add_timesyncd_offset(&mut s, &mut evidence);
                        }
                        return judge_time_sync(Ok(&s), &evidence.join("; "));
                    }
                    Err(e) => tried.push(format!("timedatectl: {e}")),
                }
            }
            Err(e) => {
                tried.push(format!("timedatectl: {e}"));
                evidence.push("timedatectl show".into());
            }
        }
        let why = format!("no time source could be queried: {}", tried.join("; "));
        judge_time_sync(Err(&why), &evidence.join("; "))
    }

    /// Only systemd-timesyncd answers timesync-status; with chrony or ntpd
    /// it fails and the offset stays unknown.
    fn add_timesyncd_offset(s: &mut TimeSync, evidence: &mut Vec<String>) {
        if let Ok(o) = Cmd::new("timedatectl", &["timesync-status"])
            .timeout(TIME_TIMEOUT)
            .run()
        {
            evidence.push(format!("{} ({})", o.command, exit_text(o.code)));
            if o.code == Some(0) {
                s.offset_s = parse_timesync_offset(&o.stdout);
                if s.offset_s.is_some() {
                    s.source = "systemd-timesyncd";
                }
            }
        }
    }
}

#[cfg(windows)]
mod windows {
    use super::*;
    use crate::exec::Cmd;

    const SERVICES_SCRIPT: &str = "$ErrorActionPreference='Stop';\
[Console]::OutputEncoding=[Text.Encoding]::UTF8;\
Get-CimInstance -ClassName Win32_Service|Select-Object Name,StartMode,State,ExitCode|ConvertTo-Json -Compress";

    fn system32(exe: &str) -> String {
        let root = std::env::var("SystemRoot").unwrap_or_else(|_| r"C:\Windows".into());
        format!(r"{root}\System32\{exe}")
    }

    pub(super) fn collect() -> Findings {
        let mut out = Findings::default();
        out.checks.push(services());
        let (c, m) = time_sync();
        out.checks.push(c);
        out.metrics.extend(m);
        out
    }

    fn services() -> CheckResult {
        let ps = system32(r"WindowsPowerShell\v1.0\powershell.exe");
        let evidence = "Get-CimInstance Win32_Service | Select-Object Name,StartMode,State,ExitCode | ConvertTo-Json";
        let run = Cmd::new(
            &ps,
            &["-NoProfile", "-NonInteractive", "-Command", SERVICES_SCRIPT],
        )
        .timeout(SYSTEMCTL_TIMEOUT)
        .run();
        match run {
            Ok(o) if o.code == Some(0) => match parse_win_services(&o.stdout) {
                Ok(s) => judge_windows_services(&s, evidence),
                Err(e) => unknown(
                    FAILED_UNITS,
                    FAILED_UNITS_TITLE,
                    format!("unreadable service list: {e}"),
                    evidence,
                ),
            },
            Ok(o) => unknown(
                FAILED_UNITS,
                FAILED_UNITS_TITLE,
                format!("PowerShell {}: {}", exit_text(o.code), first_message(&o)),
                evidence,
            ),
            Err(e) => unknown(FAILED_UNITS, FAILED_UNITS_TITLE, e.to_string(), evidence),
        }
    }

    fn time_sync() -> (CheckResult, Vec<Metric>) {
        let w32tm = system32("w32tm.exe");
        match Cmd::new(&w32tm, &["/query", "/status", "/verbose"])
            .timeout(TIME_TIMEOUT)
            .run()
        {
            Ok(o) if o.code == Some(0) => {
                let ev = format!("w32tm /query /status /verbose ({})", exit_text(o.code));
                match parse_w32tm_status(&o.stdout) {
                    Ok(s) => judge_time_sync(Ok(&s), &ev),
                    Err(e) => judge_time_sync(Err(&e), &ev),
                }
            }
            // e.g. "The service has not been started. (0x80070426)".
            Ok(o) => {
                let why = format!("w32tm {}: {}", exit_text(o.code), first_message(&o));
                judge_time_sync(Err(&why), "w32tm /query /status /verbose")
            }
            Err(e) => judge_time_sync(Err(&e.to_string()), "w32tm /query /status /verbose"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SYSTEMCTL_NO_SYSTEMD_STDERR: &str = include_str!(
        "../../testdata/services/debian12-this-image_systemctl-list-units-failed.stderr.txt"
    );
    const TIMEDATECTL_NO_SYSTEMD_STDERR: &str =
        include_str!("../../testdata/services/debian12-this-image_timedatectl-show.stderr.txt");
    const CHRONY_NO_DAEMON: &str = include_str!(
        "../../testdata/services/debian12-this-image_chronyc-c-tracking_no-daemon.stdout.txt"
    );
    const CHRONY_STARTUP: &str = include_str!(
        "../../testdata/services/debian12-this-image_chronyc-c-tracking_startup.stdout.txt"
    );
    const CHRONY_LOCAL: &str = include_str!(
        "../../testdata/services/debian12-this-image_chronyc-c-tracking_local-stratum10.stdout.txt"
    );
    const WIN_SERVICES: &str = include_str!(
        "../../testdata/services/constructed_Get-CimInstance_Win32_Service_ConvertTo-Json.json"
    );
    const W32TM_SYNCED: &str =
        include_str!("../../testdata/services/constructed_w32tm-query-status-verbose_synced.txt");
    const W32TM_CMOS: &str =
        include_str!("../../testdata/services/constructed_w32tm-query-status_local-cmos.txt");

    fn status(r: &CheckResult) -> CheckStatus {
        CheckStatus::try_from(r.status).unwrap_or(CheckStatus::Unspecified)
    }

    fn label<'a>(m: &'a Metric, name: &str) -> &'a str {
        m.labels
            .iter()
            .find(|l| l.name == name)
            .map_or("", |l| l.value.as_str())
    }

    #[test]
    fn top_processes_ranks_cpu_and_rss() {
        let procs: Vec<(u32, String, f64, u64)> = (1..=8)
            .map(|i| (i, format!("p{i}"), f64::from(i), u64::from(100 - i)))
            .chain([
                (9, "nan".to_owned(), f64::NAN, 0),
                (10, "neg".to_owned(), -1.0, 0),
            ])
            .collect();
        let m = top_processes(&procs, TOP_N);
        let cpu: Vec<&Metric> = m.iter().filter(|m| m.name == METRIC_PROC_CPU).collect();
        let rss: Vec<&Metric> = m.iter().filter(|m| m.name == METRIC_PROC_RSS).collect();
        assert_eq!(cpu.len(), 5);
        assert_eq!(rss.len(), 5);
        assert_eq!((label(cpu[0], "name"), cpu[0].value), ("p8", 8.0));
        assert!(
            cpu[0].labels.iter().all(|l| l.name != "pid"),
            "no pid label"
        );
        assert_eq!(cpu[4].value, 4.0);
        assert_eq!((label(rss[0], "name"), rss[0].value), ("p1", 99.0));
        assert!(cpu.iter().all(|m| m.value.is_finite() && m.value >= 0.0));
        // Fewer processes than N, and borrowed names.
        let few = [(7u32, "sshd", 0.5, 1024u64)];
        assert_eq!(top_processes(&few, TOP_N).len(), 2);
        let none: [(u32, &str, f64, u64); 0] = [];
        assert!(top_processes(&none, TOP_N).is_empty());
        // Processes of one name add up (worker pools, threads).
        let pool = [
            (1u32, "nginx", 1.5, 10u64),
            (2, "nginx", 2.5, 20),
            (3, "sshd", 3.0, 5),
        ];
        let m = top_processes(&pool, TOP_N);
        assert_eq!((label(&m[0], "name"), m[0].value), ("nginx", 4.0));
        assert_eq!(
            m.iter()
                .filter(|m| m.name == METRIC_PROC_RSS)
                .map(|m| m.value)
                .next(),
            Some(30.0)
        );
    }

    #[test]
    fn systemctl_without_systemd_is_unknown() {
        // Real: this image has systemctl but PID 1 is not systemd (exit 1).
        let r = judge_failed_units(
            Some(1),
            "",
            SYSTEMCTL_NO_SYSTEMD_STDERR,
            "systemctl list-units",
        );
        assert_eq!(status(&r), CheckStatus::Unknown);
        assert!(
            r.reason.contains("has not been booted with systemd"),
            "{}",
            r.reason
        );
        assert!(!r.evidence.is_empty());
        let r = judge_failed_units(Some(1), "", "Access denied\n", "e");
        assert_eq!(status(&r), CheckStatus::Unknown);
        assert_eq!(r.reason, "systemctl exit 1: Access denied");
    }

    #[test]
    fn failed_units_listing() {
        // Constructed in the documented --plain --no-legend layout (no
        // systemd on the capture machine).
        let out = "nginx.service loaded failed failed A high performance web server\n\
                   ● ghost.service not-found failed failed ghost.service\n";
        let u = parse_units(out);
        assert_eq!(u.len(), 2);
        assert_eq!(u[0].description, "A high performance web server");
        assert_eq!(u[1].load, "not-found");
        let r = judge_failed_units(Some(0), out, "", "e");
        assert_eq!(status(&r), CheckStatus::Critical);
        assert!(
            r.value.starts_with("2 failed: nginx.service (A high"),
            "{}",
            r.value
        );
        let r = judge_failed_units(Some(0), "", "", "e");
        assert_eq!(status(&r), CheckStatus::Ok);
        assert_eq!(r.value, "0 failed units");
        let r = judge_failed_units(Some(0), "garbage\n", "", "e");
        assert_eq!(status(&r), CheckStatus::Unknown);
    }

    #[test]
    fn windows_services_constructed_sample() {
        let s = parse_win_services(WIN_SERVICES).unwrap();
        assert_eq!(s.len(), 5);
        let r = judge_windows_services(&s, "Get-CimInstance");
        assert_eq!(status(&r), CheckStatus::Critical, "{}", r.value);
        assert!(
            r.value.starts_with("2 automatic service(s) not running"),
            "{}",
            r.value
        );
        assert!(r.value.contains("Spooler (Stopped, exit code 1067)"));
        // Only the cleanly stopped trigger-start service: a warning.
        let clean: Vec<WinService> = s.iter().filter(|x| x.name != "Spooler").cloned().collect();
        assert_eq!(
            status(&judge_windows_services(&clean, "e")),
            CheckStatus::Warning
        );
        let running: Vec<WinService> = s.iter().filter(|x| x.state == "Running").cloned().collect();
        assert_eq!(
            status(&judge_windows_services(&running, "e")),
            CheckStatus::Ok
        );
        assert_eq!(
            status(&judge_windows_services(&[], "e")),
            CheckStatus::Unknown
        );
        // One service: ConvertTo-Json prints an object, not an array.
        let one = parse_win_services(
            "{\"Name\":\"W32Time\",\"StartMode\":\"Auto\",\"State\":\"Running\"}",
        )
        .unwrap();
        assert_eq!(one[0].exit_code, None);
        assert!(parse_win_services("").is_err());
        assert!(parse_win_services("[{\"Name\":").is_err());
    }

    #[test]
    fn chrony_captures_from_this_image() {
        // chronyd freshly started with no reachable server.
        let s = parse_chronyc_tracking(CHRONY_STARTUP).unwrap();
        assert_eq!(s.state, SyncState::NotSynchronised);
        let (c, m) = judge_time_sync(Ok(&s), "chronyc -c tracking");
        assert_eq!(status(&c), CheckStatus::Critical);
        assert_eq!(m.len(), 1);
        assert_eq!((m[0].name.as_str(), m[0].value), (METRIC_TIME_OFFSET, 0.0));
        assert_eq!(label(&m[0], "source"), "chrony");
        // chronyd with `local stratum 10`: leap Normal, but no real source.
        let s = parse_chronyc_tracking(CHRONY_LOCAL).unwrap();
        assert_eq!(s.state, SyncState::LocalClockOnly);
        let (c, _) = judge_time_sync(Ok(&s), "e");
        assert_eq!(status(&c), CheckStatus::Warning);
        // chronyd not running: "506 Cannot talk to daemon" (exit 1).
        assert!(parse_chronyc_tracking(CHRONY_NO_DAEMON).is_err());
    }

    #[test]
    fn chrony_synced_constructed() {
        // Constructed: the local-stratum capture with a real server's refid
        // and offsets substituted.
        let ok = "C0A87B01,192.168.123.1,2,1795425338.646443648,-0.000012345,0.000001,0.00002,1.5,0.001,0.01,0.02,0.001,64.0,Normal\n";
        let (c, m) = judge_time_sync(Ok(&parse_chronyc_tracking(ok).unwrap()), "e");
        assert_eq!(status(&c), CheckStatus::Ok, "{}", c.value);
        assert_eq!(m[0].value, -0.000012345);
        let far = ok.replace("-0.000012345", "-1.500000000");
        let (c, _) = judge_time_sync(Ok(&parse_chronyc_tracking(&far).unwrap()), "e");
        assert_eq!(status(&c), CheckStatus::Warning);
        let odd = ok.replace("Normal", "Confused");
        assert!(parse_chronyc_tracking(&odd).is_err());
    }

    #[test]
    fn timedatectl_without_systemd_and_constructed_show() {
        // Real stderr of `timedatectl show` on this image (exit 1).
        let why = systemd_unavailable(TIMEDATECTL_NO_SYSTEMD_STDERR).unwrap();
        assert!(why.starts_with("System has not been booted with systemd"));
        let (c, m) = judge_time_sync(Err(&why), "timedatectl show");
        assert_eq!(status(&c), CheckStatus::Unknown);
        assert!(m.is_empty());
        assert!(systemd_unavailable("").is_none());
        // Constructed `timedatectl show` key=value output.
        let show = "Timezone=Etc/UTC\nLocalRTC=no\nCanNTP=yes\nNTP=yes\nNTPSynchronized=yes\n";
        let s = parse_timedatectl_show(show).unwrap();
        assert_eq!(s.state, SyncState::Synchronised);
        let (c, m) = judge_time_sync(Ok(&s), "e");
        assert_eq!(status(&c), CheckStatus::Ok);
        assert!(c.value.contains("offset not reported"));
        assert!(m.is_empty());
        let s = parse_timedatectl_show(&show.replace("NTPSynchronized=yes", "NTPSynchronized=no"))
            .unwrap();
        assert_eq!(
            status(&judge_time_sync(Ok(&s), "e").0),
            CheckStatus::Critical
        );
        assert!(parse_timedatectl_show("Timezone=UTC\n").is_err());
    }

    #[test]
    fn timesyncd_offsets() {
        // Constructed `timedatectl timesync-status` lines.
        let text = "       Server: 192.0.2.1 (192.0.2.1)\n         Leap: normal\n       Offset: -2.473ms\n        Delay: 1.325ms\n";
        let o = parse_timesync_offset(text).unwrap();
        assert!((o + 0.002473).abs() < 1e-12, "{o}");
        assert_eq!(parse_timesync_offset("Offset: +1min 3.5s"), Some(63.5));
        assert_eq!(
            parse_timesync_offset("Offset: 250us").map(|v| (v * 1e6).round()),
            Some(250.0)
        );
        assert_eq!(parse_timesync_offset("Offset: n/a"), None);
        assert_eq!(parse_timesync_offset("Offset:"), None);
        assert_eq!(parse_timesync_offset(""), None);
    }

    #[test]
    fn w32tm_constructed_samples() {
        let s = parse_w32tm_status(W32TM_SYNCED).unwrap();
        assert_eq!(s.state, SyncState::Synchronised);
        assert_eq!(s.offset_s, Some(0.0023456));
        let (c, m) = judge_time_sync(Ok(&s), "w32tm");
        assert_eq!(status(&c), CheckStatus::Ok);
        assert_eq!(label(&m[0], "source"), "w32time");
        let s = parse_w32tm_status(W32TM_CMOS).unwrap();
        assert_eq!(s.state, SyncState::NotSynchronised);
        assert_eq!(
            status(&judge_time_sync(Ok(&s), "e").0),
            CheckStatus::Critical
        );
        // Leap 0 but the local clock as source.
        let local = W32TM_CMOS.replace("3(not synchronized)", "0(no warning)");
        assert_eq!(
            parse_w32tm_status(&local).unwrap().state,
            SyncState::LocalClockOnly
        );
        // Localised (German) labels are not guessed at.
        assert!(parse_w32tm_status("Schaltsekundenindikator: 0(keine Warnung)\n").is_err());
    }

    #[test]
    fn parsers_do_not_panic_on_garbage() {
        let mut inputs: Vec<String> = [
            "",
            "\n",
            ",",
            ",,,,,,,,,,,,,",
            ",,,,,,,,,,,,,,,,,,,",
            "=",
            "Offset: -",
            "Offset: 1x",
            "Offset: ..s",
            "Leap Indicator:",
            "Leap Indicator: x",
            "{",
            "[",
            "null",
            "[null]",
            "[{}]",
            "\u{feff}",
            "● ● ●",
            "é∂ƒ©˙∆˚¬…æ\u{0}",
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        for f in [
            CHRONY_LOCAL,
            CHRONY_STARTUP,
            WIN_SERVICES,
            W32TM_SYNCED,
            W32TM_CMOS,
            SYSTEMCTL_NO_SYSTEMD_STDERR,
        ] {
            for cut in [1, f.len() / 3, f.len() / 2, f.len().saturating_sub(2)] {
                let mut end = cut.min(f.len());
                while !f.is_char_boundary(end) {
                    end -= 1;
                }
                inputs.push(f[..end].to_owned());
            }
        }
        for g in &inputs {
            let _ = parse_units(g);
            let _ = judge_failed_units(Some(0), g, g, "e");
            let _ = systemd_unavailable(g);
            let _ = parse_win_services(g);
            if let Ok(s) = parse_chronyc_tracking(g) {
                let _ = judge_time_sync(Ok(&s), "e");
            }
            let _ = parse_timedatectl_show(g);
            let _ = parse_timesync_offset(g);
            let _ = parse_w32tm_status(g);
        }
        // A truncated chrony line is an error, never a synchronised state.
        let cut = &CHRONY_LOCAL[..CHRONY_LOCAL.len() / 2];
        assert!(parse_chronyc_tracking(cut).is_err());
    }

    #[test]
    #[cfg(target_os = "linux")]
    fn collect_runs_here() {
        let f = collect();
        assert_eq!(f.checks.len(), 2);
        for c in &f.checks {
            if c.status == CheckStatus::Unknown as i32 {
                assert!(!c.reason.is_empty(), "{c:?}");
            } else {
                assert!(!c.value.is_empty() && !c.threshold.is_empty(), "{c:?}");
            }
            assert!(!c.evidence.is_empty(), "{c:?}");
        }
    }
}
