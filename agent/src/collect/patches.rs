//! Patch state: pending package updates and how many of them are security
//! updates, whether installed updates want a reboot, and how long ago
//! packages were last upgraded. Linux via apt, zypper, dnf or yum; Windows
//! via PowerShell (Get-HotFix and the Windows Update Agent). The shims only
//! run tools through `crate::exec` or read files; pure parsers, tested on
//! captured output in `agent/testdata/patches/`, turn that into checks.

use std::collections::BTreeSet;
use std::rc::Rc;
use std::time::Duration;

use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use xunjian_proto::CheckStatus;

use super::{Findings, check, metric, unknown};
use crate::exec::{ExecError, Output};

pub const CHECK_PENDING: &str = "patch.pending";
pub const CHECK_SECURITY: &str = "patch.security_pending";
pub const CHECK_REBOOT: &str = "os.reboot_required";
pub const CHECK_LAST_UPDATE: &str = "patch.last_update_age";
pub const METRIC_PENDING: &str = "patch.pending_count";
pub const METRIC_SECURITY: &str = "patch.security_pending_count";
pub const METRIC_LAST_UPDATE_AGE: &str = "patch.last_update_age_s";
/// `patch.last_update_age` warns past this many days.
pub const MAX_LAST_UPDATE_AGE_DAYS: i64 = 30;

const TITLE_PENDING: &str = "Pending package updates";
const TITLE_SECURITY: &str = "Pending security updates";
const TITLE_REBOOT: &str = "Reboot required by installed updates";
const TITLE_LAST_UPDATE: &str = "Time since packages were last upgraded";

/// The exact argv monitoring-plugins `check_apt` uses by default
/// (`UPGRADE_DEFAULT_OPTS` + `upgrade`), so both count the same lines.
pub const APT_ARGS: [&str; 5] = ["-o", "Debug::NoLocking=true", "-s", "-qq", "upgrade"];

/// Evidence strings list at most this many package names.
const EVIDENCE_NAMES: usize = 10;

/// One package update the package manager would install.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Pkg {
    pub name: String,
    /// Empty when the tool does not say.
    pub arch: String,
    /// `None` when the tool does not say (dnf, new packages in apt).
    pub from_version: Option<String>,
    pub to_version: String,
    /// Repository / archive the update comes from, as the tool prints it.
    pub origin: String,
    pub security: bool,
}

/// What `apt-get -s upgrade` would do.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AptResult {
    /// One per `Inst` line, in output order.
    pub pending: Vec<Pkg>,
    /// `Inst` lines that `check_apt` counts as critical (security).
    pub security: usize,
}

/// A check input that could not be obtained: reported as `unknown`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotRun {
    pub reason: String,
    pub evidence: String,
}

impl NotRun {
    fn new(reason: impl Into<String>, evidence: impl Into<String>) -> Self {
        Self {
            reason: reason.into(),
            evidence: evidence.into(),
        }
    }
}

impl From<ExecError> for NotRun {
    fn from(e: ExecError) -> Self {
        NotRun::new(e.to_string(), "")
    }
}

pub type Outcome<T> = Result<T, NotRun>;

/// Pending updates as one package manager reports them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingUpdates {
    pub manager: String,
    pub pending: Vec<Pkg>,
    /// `Err` says why the security count is unknown; the pending count is
    /// still valid then.
    pub security: Result<usize, String>,
    pub evidence: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RebootState {
    pub required: bool,
    pub evidence: String,
}

/// When packages were last upgraded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LastPatch {
    At(DateTime<Utc>),
    /// No upgrade is recorded in the logs, which go back to this time.
    NoneSince(DateTime<Utc>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LastUpdate {
    pub when: LastPatch,
    pub evidence: String,
}

// ---------------------------------------------------------------------------
// Entry points

/// Collects the patch checks now. Blocking and slow (package manager
/// simulations can take minutes): call it from a blocking thread.
pub fn collect() -> Findings {
    collect_at(Utc::now())
}

/// Like [`collect`], with the clock injected for the age computation.
pub fn collect_at(now: DateTime<Utc>) -> Findings {
    let (pending, reboot, last) = platform::gather(now);
    findings(&pending, &reboot, &last, now)
}

/// Turns what was gathered into check results and metrics. Pure.
pub fn findings(
    pending: &Outcome<PendingUpdates>,
    reboot: &Outcome<RebootState>,
    last: &Outcome<LastUpdate>,
    now: DateTime<Utc>,
) -> Findings {
    let mut f = Findings::default();
    match pending {
        Ok(p) => {
            let n = p.pending.len();
            let sec_text = match &p.security {
                Ok(m) => format!("{m} security"),
                Err(_) => "security unknown".to_owned(),
            };
            let status = if n > 0 {
                CheckStatus::Warning
            } else {
                CheckStatus::Ok
            };
            let names = name_list(p.pending.iter().map(|k| k.name.as_str()));
            let evidence = if n > 0 {
                format!("{}; pending: {names}", p.evidence)
            } else {
                p.evidence.clone()
            };
            f.checks.push(check(
                CHECK_PENDING,
                TITLE_PENDING,
                status,
                format!("{n} pending ({sec_text})"),
                "0 pending",
                evidence,
            ));
            f.metrics.push(metric(METRIC_PENDING, n as f64, &[]));
            match &p.security {
                Ok(m) => {
                    let status = if *m > 0 {
                        CheckStatus::Critical
                    } else {
                        CheckStatus::Ok
                    };
                    let sec_names =
                        name_list(p.pending.iter().filter(|k| k.security).map(|k| &*k.name));
                    // zypper counts patches, not packages: no names to add.
                    let evidence = if *m > 0 && !sec_names.is_empty() {
                        format!("{}; security: {sec_names}", p.evidence)
                    } else {
                        p.evidence.clone()
                    };
                    f.checks.push(check(
                        CHECK_SECURITY,
                        TITLE_SECURITY,
                        status,
                        format!("{m} security"),
                        "0 security updates",
                        evidence,
                    ));
                    f.metrics.push(metric(METRIC_SECURITY, *m as f64, &[]));
                }
                Err(reason) => f.checks.push(unknown(
                    CHECK_SECURITY,
                    TITLE_SECURITY,
                    reason.clone(),
                    p.evidence.clone(),
                )),
            }
        }
        Err(e) => {
            for (id, title) in [
                (CHECK_PENDING, TITLE_PENDING),
                (CHECK_SECURITY, TITLE_SECURITY),
            ] {
                f.checks
                    .push(unknown(id, title, e.reason.clone(), e.evidence.clone()));
            }
        }
    }

    f.checks.push(match reboot {
        Ok(r) if r.required => check(
            CHECK_REBOOT,
            TITLE_REBOOT,
            CheckStatus::Warning,
            "required",
            "not required",
            r.evidence.clone(),
        ),
        Ok(r) => check(
            CHECK_REBOOT,
            TITLE_REBOOT,
            CheckStatus::Ok,
            "not required",
            "not required",
            r.evidence.clone(),
        ),
        Err(e) => unknown(
            CHECK_REBOOT,
            TITLE_REBOOT,
            e.reason.clone(),
            e.evidence.clone(),
        ),
    });

    let threshold = format!("<= {MAX_LAST_UPDATE_AGE_DAYS} days");
    let limit = chrono::Duration::days(MAX_LAST_UPDATE_AGE_DAYS);
    match last {
        Ok(LastUpdate {
            when: LastPatch::At(at),
            evidence,
        }) => {
            // A timestamp in the future is clock skew, not a fresh patch.
            let age = (now - *at).max(chrono::Duration::zero());
            let status = if age > limit {
                CheckStatus::Warning
            } else {
                CheckStatus::Ok
            };
            f.checks.push(check(
                CHECK_LAST_UPDATE,
                TITLE_LAST_UPDATE,
                status,
                format!("{} days (last {})", age.num_days(), fmt_time(*at)),
                threshold,
                evidence.clone(),
            ));
            f.metrics.push(metric(
                METRIC_LAST_UPDATE_AGE,
                age.num_seconds() as f64,
                &[],
            ));
        }
        Ok(LastUpdate {
            when: LastPatch::NoneSince(since),
            evidence,
        }) => {
            let span = now - *since;
            // Logs without any upgrade still prove a lower bound on the age.
            if span > limit {
                f.checks.push(check(
                    CHECK_LAST_UPDATE,
                    TITLE_LAST_UPDATE,
                    CheckStatus::Warning,
                    format!(
                        "more than {} days (no upgrade recorded since {})",
                        span.num_days(),
                        fmt_time(*since)
                    ),
                    threshold,
                    evidence.clone(),
                ));
            } else {
                f.checks.push(unknown(
                    CHECK_LAST_UPDATE,
                    TITLE_LAST_UPDATE,
                    format!(
                        "no package upgrade recorded; the logs only go back to {}",
                        fmt_time(*since)
                    ),
                    evidence.clone(),
                ));
            }
        }
        Err(e) => f.checks.push(unknown(
            CHECK_LAST_UPDATE,
            TITLE_LAST_UPDATE,
            e.reason.clone(),
            e.evidence.clone(),
        )),
    }
    f
}

fn fmt_time(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M UTC").to_string()
}

/// `a, b, c (+N more)`, bounded so evidence stays readable.
fn name_list<'a>(names: impl Iterator<Item = &'a str>) -> String {
    let all: Vec<&str> = names.collect();
    let shown = all
        .iter()
        .take(EVIDENCE_NAMES)
        .copied()
        .collect::<Vec<_>>()
        .join(", ");
    match all.len().saturating_sub(EVIDENCE_NAMES) {
        0 => shown,
        more => format!("{shown} (+{more} more)"),
    }
}

/// `` `cmd` exited 0 `` plus the first stderr line, for evidence.
fn run_evidence(out: &Output) -> String {
    let code = out.code.map_or_else(
        || "was killed by a signal".to_owned(),
        |c| format!("exited {c}"),
    );
    match first_line(&out.stderr) {
        Some(err) => format!("`{}` {code} (stderr: {err})", out.command),
        None => format!("`{}` {code}", out.command),
    }
}

fn first_line(s: &str) -> Option<&str> {
    s.lines().map(str::trim).find(|l| !l.is_empty())
}

/// Common refusals: killed, or output cut at the cap (an incomplete list
/// must not be reported as a count).
fn usable(out: &Output) -> Result<(), NotRun> {
    if out.truncated {
        return Err(NotRun::new(
            "output exceeded the capture limit; the list would be incomplete",
            run_evidence(out),
        ));
    }
    if out.code.is_none() {
        return Err(NotRun::new(
            format!("`{}` was killed by a signal", out.command),
            run_evidence(out),
        ));
    }
    Ok(())
}

fn failed(out: &Output) -> NotRun {
    let code = out
        .code
        .map_or_else(|| "a signal".to_owned(), |c| c.to_string());
    let why = first_line(&out.stderr)
        .or_else(|| first_line(&out.stdout))
        .unwrap_or("no output");
    NotRun::new(
        format!("`{}` failed (exit {code}): {why}", out.command),
        run_evidence(out),
    )
}

// ---------------------------------------------------------------------------
// apt

/// Parses `apt-get -s upgrade` output (any `-q` level). Counts exactly what
/// monitoring-plugins `check_apt` counts: lines starting with `Inst `, of
/// which those matching its security pattern are security updates.
pub fn parse_apt_simulate(text: &str) -> AptResult {
    let pending: Vec<Pkg> = text
        .split('\n')
        .filter(|line| line.starts_with("Inst "))
        .map(parse_apt_inst)
        .collect();
    let security = pending.iter().filter(|p| p.security).count();
    AptResult { pending, security }
}

/// `Inst name [old] (new Origin:ver/suite, Other:ver/suite [arch]) [...]`;
/// `[old]` is absent for new packages.
fn parse_apt_inst(line: &str) -> Pkg {
    let security = apt_line_is_security(line);
    let rest = line.strip_prefix("Inst ").unwrap_or(line).trim_end();
    let (name, mut rest) = rest.split_once(' ').unwrap_or((rest, ""));
    rest = rest.trim_start();
    let mut from_version = None;
    if let Some(r) = rest.strip_prefix('[')
        && let Some((old, after)) = r.split_once(']')
    {
        from_version = Some(old.to_owned());
        rest = after.trim_start();
    }
    let (mut to_version, mut origin, mut arch) = (String::new(), String::new(), String::new());
    if let Some(r) = rest.strip_prefix('(') {
        let inner = r.split_once(')').map_or(r, |(i, _)| i);
        let (version, origins) = inner.split_once(' ').unwrap_or((inner, ""));
        to_version = version.to_owned();
        let origins = origins.trim();
        let (o, a) = match origins.strip_suffix(']').and_then(|o| o.rsplit_once('[')) {
            Some((o, a)) => (o.trim(), a.trim()),
            None => (origins, ""),
        };
        origin = o.to_owned();
        arch = a.to_owned();
    }
    Pkg {
        name: name.to_owned(),
        arch,
        from_version,
        to_version,
        origin,
        security,
    }
}

/// check_apt's `SECURITY_RE`, the POSIX ERE
/// `^[^\(]*\(.* (Debian-Security:|Ubuntu:[^/]*/[^-]*-security)`, matched by
/// hand so our counts agree with it line for line. (In a POSIX bracket
/// expression `\` is literal, so `[^\(]` excludes backslashes too.)
pub fn apt_line_is_security(line: &str) -> bool {
    let Some(open) = line.find('(') else {
        return false;
    };
    if line[..open].contains('\\') {
        return false;
    }
    let tail = &line[open + 1..];
    tail.match_indices(' ').any(|(i, _)| {
        let s = &tail[i + 1..];
        s.starts_with("Debian-Security:")
            || s.strip_prefix("Ubuntu:").is_some_and(|u| {
                // `[^/]*/` reaches only the first '/', `[^-]*-` the first '-'.
                u.split_once('/').is_some_and(|(_, after)| {
                    after
                        .find('-')
                        .is_some_and(|d| after[d..].starts_with("-security"))
                })
            })
    })
}

/// One `check_apt` status line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckAptLine {
    /// `OK`, `WARNING`, `CRITICAL` or `UNKNOWN`.
    pub state: String,
    pub available: usize,
    pub critical: usize,
}

/// Parses `APT CRITICAL: 132 packages available for upgrade (81 critical
/// updates). |...` (first such line in `text`).
pub fn parse_check_apt_line(text: &str) -> Option<CheckAptLine> {
    text.lines().find_map(|line| {
        let t: Vec<&str> = line.split_whitespace().collect();
        if t.len() < 9 || t[0] != "APT" || t[3] != "packages" || t[8] != "critical" {
            return None;
        }
        Some(CheckAptLine {
            state: t[1].strip_suffix(':')?.to_owned(),
            available: t[2].parse().ok()?,
            critical: t[7].strip_prefix('(')?.parse().ok()?,
        })
    })
}

/// Maps a finished `apt-get -s upgrade` run to pending updates. apt-get
/// changes its exit status in simulation mode only on internal errors
/// (check_apt treats those as UNKNOWN too).
pub fn pending_from_apt(run: Result<Output, ExecError>) -> Outcome<PendingUpdates> {
    let out = run?;
    usable(&out)?;
    if out.code != Some(0) {
        return Err(failed(&out));
    }
    let apt = parse_apt_simulate(&out.stdout);
    Ok(PendingUpdates {
        manager: "apt".to_owned(),
        evidence: format!(
            "{}: {} Inst lines, {} from a security archive (check_apt rule)",
            run_evidence(&out),
            apt.pending.len(),
            apt.security
        ),
        security: Ok(apt.security),
        pending: apt.pending,
    })
}

// ---------------------------------------------------------------------------
// dnf / yum

/// Parses `dnf check-update` / `yum check-update` output: `name.arch
/// version repo` rows, where a long `name.arch` may sit alone on its line
/// with the rest on the next, indented one. Packages in the "Obsoleting
/// Packages" block that are not already listed are pending too (the
/// upgrade installs them); the indented installed packages they replace are
/// not.
pub fn parse_check_update(text: &str) -> Vec<Pkg> {
    let mut out: Vec<Pkg> = Vec::new();
    let mut seen: BTreeSet<(String, String)> = BTreeSet::new();
    let mut obsoleting = false;
    // Tokens of a row continued on the next line, and whether that row is
    // an installed package being obsoleted.
    let mut partial: Option<(Vec<&str>, bool)> = None;
    for line in text.lines() {
        if line.trim() == "Obsoleting Packages" {
            obsoleting = true;
            partial = None;
            continue;
        }
        let tokens: Vec<&str> = line.split_whitespace().collect();
        if tokens.is_empty() {
            partial = None;
            continue;
        }
        let indented = line.starts_with(char::is_whitespace);
        let (row, replaced) = match partial.take() {
            Some((mut row, replaced)) if indented => {
                row.extend(tokens);
                (row, replaced)
            }
            _ => {
                // Indented rows outside the obsoletes block are mirror
                // lists and similar chatter.
                if indented && !obsoleting {
                    continue;
                }
                (tokens, indented)
            }
        };
        if row.len() < 3 {
            if looks_like_name_arch(row[0]) {
                partial = Some((row, replaced));
            }
            continue;
        }
        if row.len() != 3 || replaced {
            continue;
        }
        let Some((name, arch)) = split_name_arch(row[0]) else {
            continue;
        };
        if !row[1].contains(|c: char| c.is_ascii_digit()) {
            continue;
        }
        if seen.insert((name.to_owned(), arch.to_owned())) {
            out.push(Pkg {
                name: name.to_owned(),
                arch: arch.to_owned(),
                from_version: None,
                to_version: row[1].to_owned(),
                origin: row[2].to_owned(),
                security: false,
            });
        }
    }
    out
}

fn looks_like_name_arch(s: &str) -> bool {
    split_name_arch(s).is_some()
}

/// `name.arch` → (`name`, `arch`); the arch must look like one.
fn split_name_arch(s: &str) -> Option<(&str, &str)> {
    let (name, arch) = s.rsplit_once('.')?;
    let arch_ok = !arch.is_empty()
        && arch.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && arch.chars().next().is_some_and(|c| c.is_ascii_alphabetic());
    (!name.is_empty() && arch_ok && !name.ends_with(':')).then_some((name, arch))
}

/// `name-[epoch:]version-release.arch` → (`name`, `arch`).
fn split_nevra(s: &str) -> Option<(&str, &str)> {
    let (nvr, arch) = split_name_arch(s)?;
    let mut parts = nvr.rsplitn(3, '-');
    let release = parts.next()?;
    let version = parts.next()?;
    let name = parts.next()?;
    let ok =
        !name.is_empty() && !release.is_empty() && version.contains(|c: char| c.is_ascii_digit());
    ok.then_some((name, arch))
}

/// Packages with a pending security advisory, from `dnf updateinfo list
/// --security` / `yum updateinfo list security` (`ADVISORY Sev/Sec. NEVRA`)
/// or dnf5 (`ADVISORY security Sev NEVRA date time`). Returns distinct
/// (name, arch).
pub fn parse_updateinfo_security(text: &str) -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    for line in text.lines() {
        let t: Vec<&str> = line.split_whitespace().collect();
        // "Security: pkg is an installed security update" is chatter.
        if t.len() < 3 || t[0].ends_with(':') {
            continue;
        }
        let candidate = if t.len() == 3 { t[2] } else { t[3] };
        if let Some((name, arch)) = split_nevra(candidate) {
            out.insert((name.to_owned(), arch.to_owned()));
        }
    }
    out
}

/// Maps `check-update` (exit 100 = updates, 0 = none, else error) and the
/// security advisory listing to pending updates.
pub fn pending_from_rpm_tools(
    manager: &str,
    check_update: Result<Output, ExecError>,
    updateinfo: Result<Output, ExecError>,
) -> Outcome<PendingUpdates> {
    let out = check_update?;
    usable(&out)?;
    let mut pending = parse_check_update(&out.stdout);
    match out.code {
        Some(100) if pending.is_empty() => {
            return Err(NotRun::new(
                "check-update reported updates (exit 100) but no package line could be parsed",
                run_evidence(&out),
            ));
        }
        Some(0 | 100) => {}
        _ => return Err(failed(&out)),
    }
    let mut evidence = format!("{}: {} updates", run_evidence(&out), pending.len());
    let security = match updateinfo {
        Ok(info) if !info.truncated && info.code == Some(0) => {
            let sec = parse_updateinfo_security(&info.stdout);
            for p in &mut pending {
                p.security = sec.contains(&(p.name.clone(), p.arch.clone()));
            }
            evidence.push_str(&format!(
                "; {}: {} packages with security advisories",
                run_evidence(&info),
                sec.len()
            ));
            Ok(sec.len())
        }
        Ok(info) => {
            let e = usable(&info).err().unwrap_or_else(|| failed(&info));
            Err(e.reason)
        }
        Err(e) => Err(e.to_string()),
    };
    Ok(PendingUpdates {
        manager: manager.to_owned(),
        pending,
        security,
        evidence,
    })
}

// ---------------------------------------------------------------------------
// zypper

/// Attributes of each `<update …>` element of `zypper --xmlout
/// list-updates|list-patches` output, with its `<source alias>`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ZypperXmlUpdate {
    pub attrs: Vec<(String, String)>,
    pub source_alias: String,
}

impl ZypperXmlUpdate {
    pub fn attr(&self, name: &str) -> &str {
        self.attrs
            .iter()
            .find(|(n, _)| n == name)
            .map_or("", |(_, v)| v.as_str())
    }
}

/// Scans zypper's XML for `<update>` elements. `Err` unless the document is
/// complete (`<update-status>` … `</update-status>`): a cut-off or error
/// document is not "no updates".
pub fn parse_zypper_xml(xml: &str) -> Result<Vec<ZypperXmlUpdate>, String> {
    if !xml.contains("<update-status") || !xml.contains("</update-status>") {
        let msg = xml
            .split("<message type=\"error\">")
            .nth(1)
            .and_then(|m| m.split('<').next())
            .map(|m| format!(": {}", xml_unescape(m.trim())))
            .unwrap_or_default();
        return Err(format!(
            "zypper XML output has no complete <update-status>{msg}"
        ));
    }
    let mut out = Vec::new();
    let mut rest = xml;
    while let Some(i) = rest.find("<update") {
        let after = &rest[i + "<update".len()..];
        if !after.starts_with(char::is_whitespace) {
            rest = after;
            continue;
        }
        let (attrs, body_start) = xml_attrs(after);
        let body = &after[body_start..];
        let end = body.find("</update>").unwrap_or(body.len());
        let next_update = body.find("<update").unwrap_or(body.len());
        let own = &body[..end.min(next_update)];
        let source_alias = own
            .find("<source")
            .map(|s| xml_attrs(&own[s + "<source".len()..]).0)
            .and_then(|a| a.into_iter().find(|(n, _)| n == "alias"))
            .map(|(_, v)| v)
            .unwrap_or_default();
        out.push(ZypperXmlUpdate {
            attrs,
            source_alias,
        });
        rest = body;
    }
    Ok(out)
}

/// Attributes of a start tag whose name was just consumed; also the byte
/// offset just past its `>` (or the end).
fn xml_attrs(s: &str) -> (Vec<(String, String)>, usize) {
    let mut attrs = Vec::new();
    let b = s.as_bytes();
    let mut i = 0;
    loop {
        while i < b.len() && b[i].is_ascii_whitespace() {
            i += 1;
        }
        if i >= b.len() {
            return (attrs, i);
        }
        if b[i] == b'>' {
            return (attrs, i + 1);
        }
        if b[i] == b'/' {
            i += 1;
            continue;
        }
        let name_start = i;
        while i < b.len() && !matches!(b[i], b'=' | b'>' | b'/') && !b[i].is_ascii_whitespace() {
            i += 1;
        }
        let name = &s[name_start..i];
        while i < b.len() && b[i].is_ascii_whitespace() {
            i += 1;
        }
        if i >= b.len() || b[i] != b'=' {
            if name.is_empty() {
                i += 1;
            }
            continue;
        }
        i += 1;
        while i < b.len() && b[i].is_ascii_whitespace() {
            i += 1;
        }
        let Some(&quote) = b.get(i).filter(|q| matches!(q, b'"' | b'\'')) else {
            continue;
        };
        let value_start = i + 1;
        let value_end = s[value_start..]
            .find(quote as char)
            .map_or(s.len(), |e| value_start + e);
        attrs.push((name.to_owned(), xml_unescape(&s[value_start..value_end])));
        i = (value_end + 1).min(s.len());
    }
}

fn xml_unescape(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}

/// Package updates from `zypper --xmlout list-updates`.
pub fn parse_zypper_xml_updates(xml: &str) -> Result<Vec<Pkg>, String> {
    Ok(parse_zypper_xml(xml)?
        .into_iter()
        .filter(|u| matches!(u.attr("kind"), "package" | ""))
        .map(|u| Pkg {
            name: u.attr("name").to_owned(),
            arch: u.attr("arch").to_owned(),
            from_version: Some(u.attr("edition-old").to_owned()).filter(|v| !v.is_empty()),
            to_version: u.attr("edition").to_owned(),
            origin: u.source_alias.clone(),
            security: false,
        })
        .collect())
}

/// Package updates from the plain `zypper list-updates` table
/// (`S | Repository | Name | Current Version | Available Version | Arch`).
pub fn parse_zypper_updates_table(text: &str) -> Result<Vec<Pkg>, String> {
    let rows = zypper_table(text, &["Name", "Available Version"])?;
    Ok(rows
        .into_iter()
        .map(|r| Pkg {
            name: r.get("Name").to_owned(),
            arch: r.get("Arch").to_owned(),
            from_version: Some(r.get("Current Version").to_owned()).filter(|v| !v.is_empty()),
            to_version: r.get("Available Version").to_owned(),
            origin: r.get("Repository").to_owned(),
            security: false,
        })
        .collect())
}

/// Needed patches from `zypper list-patches` (plain output).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ZypperPatches {
    pub needed: usize,
    pub security_needed: usize,
    /// Names of the needed security patches listed in the table.
    pub security_names: Vec<String>,
}

/// Parses `zypper list-patches`. zypper's own summary line `N patches needed
/// (M security patches)` is authoritative when present; otherwise the table
/// rows with status `needed` are counted.
pub fn parse_zypper_patches(text: &str) -> Result<ZypperPatches, String> {
    let summary = text.lines().find_map(|l| {
        let t: Vec<&str> = l.split_whitespace().collect();
        let ok = t.len() >= 6
            && matches!(t[1], "patch" | "patches")
            && t[2] == "needed"
            && matches!(t[5], "patch)" | "patches)")
            && t[4] == "security";
        if !ok {
            return None;
        }
        Some((
            t[0].parse::<usize>().ok()?,
            t[3].strip_prefix('(')?.parse::<usize>().ok()?,
        ))
    });
    let table = zypper_table(text, &["Name", "Category", "Status"]);
    let mut res = ZypperPatches::default();
    match table {
        Ok(rows) => {
            for r in rows.iter().filter(|r| r.get("Status") == "needed") {
                res.needed += 1;
                if r.get("Category") == "security" {
                    res.security_needed += 1;
                    res.security_names.push(r.get("Name").to_owned());
                }
            }
        }
        Err(e) if summary.is_none() => {
            return if text.lines().any(|l| l.trim() == "No updates found.") {
                Ok(res)
            } else {
                Err(e)
            };
        }
        Err(_) => {}
    }
    if let Some((needed, security)) = summary {
        res.needed = needed;
        res.security_needed = security;
    }
    Ok(res)
}

struct TableRow {
    header: Rc<Vec<String>>,
    cells: Vec<String>,
}

impl TableRow {
    fn get(&self, column: &str) -> &str {
        self.header
            .iter()
            .position(|h| h == column)
            .and_then(|i| self.cells.get(i))
            .map_or("", String::as_str)
    }
}

/// Rows of zypper's `a | b | c` tables whose header has `required` columns.
/// Several tables may follow each other (zypper lists update-stack patches
/// first); each header starts a new one.
fn zypper_table(text: &str, required: &[&str]) -> Result<Vec<TableRow>, String> {
    let is_rule = |l: &str| l.chars().all(|c| c == '-' || c == '+' || c.is_whitespace());
    let mut rows = Vec::new();
    let mut seen_header = false;
    let mut current: Option<Rc<Vec<String>>> = None;
    for line in text.lines() {
        if is_rule(line) {
            continue;
        }
        if !line.contains('|') {
            // Prose between tables ends the current one.
            current = None;
            continue;
        }
        let cells: Vec<String> = line.split('|').map(|c| c.trim().to_owned()).collect();
        if required.iter().all(|r| cells.iter().any(|c| c == r)) {
            seen_header = true;
            current = Some(Rc::new(cells));
            continue;
        }
        if let Some(header) = &current {
            // The last column (a summary) may itself contain '|'.
            let cells: Vec<String> = line
                .splitn(header.len(), '|')
                .map(|c| c.trim().to_owned())
                .collect();
            if cells.len() == header.len() {
                rows.push(TableRow {
                    header: Rc::clone(header),
                    cells,
                });
            }
        }
    }
    if !seen_header {
        return Err(format!(
            "no zypper table with columns {} found",
            required.join(", ")
        ));
    }
    Ok(rows)
}

/// zypper exits 100/101 when updates / security updates are needed.
fn zypper_ok(out: &Output) -> Result<(), NotRun> {
    usable(out)?;
    match out.code {
        Some(0 | 100 | 101) => Ok(()),
        _ => Err(failed(out)),
    }
}

/// Maps `zypper --xmlout list-updates` and `zypper list-patches` runs to
/// pending updates. The security count is zypper's count of needed security
/// patches (a patch may cover several packages).
pub fn pending_from_zypper(
    list_updates: Result<Output, ExecError>,
    list_patches: Result<Output, ExecError>,
) -> Outcome<PendingUpdates> {
    let out = list_updates?;
    zypper_ok(&out)?;
    let pending =
        parse_zypper_xml_updates(&out.stdout).map_err(|e| NotRun::new(e, run_evidence(&out)))?;
    let mut evidence = format!("{}: {} package updates", run_evidence(&out), pending.len());
    let security = match list_patches {
        Ok(p) => match zypper_ok(&p) {
            Ok(()) => match parse_zypper_patches(&p.stdout) {
                Ok(z) => {
                    evidence.push_str(&format!(
                        "; {}: {} patches needed, {} security patches ({})",
                        run_evidence(&p),
                        z.needed,
                        z.security_needed,
                        name_list(z.security_names.iter().map(String::as_str))
                    ));
                    Ok(z.security_needed)
                }
                Err(e) => Err(e),
            },
            Err(e) => Err(e.reason),
        },
        Err(e) => Err(e.to_string()),
    };
    Ok(PendingUpdates {
        manager: "zypper".to_owned(),
        pending,
        security,
        evidence,
    })
}

// ---------------------------------------------------------------------------
// Reboot required

/// Package names in `/var/run/reboot-required.pkgs`, deduplicated.
pub fn parse_reboot_required_pkgs(text: &str) -> Vec<String> {
    let mut seen = BTreeSet::new();
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && seen.insert(*l))
        .map(str::to_owned)
        .collect()
}

/// Debian/Ubuntu: packages create `/var/run/reboot-required` (listing
/// themselves in `.pkgs`) when they need a reboot.
pub fn reboot_from_flag_file(path: &str, exists: bool, pkgs: Option<&str>) -> RebootState {
    if !exists {
        return RebootState {
            required: false,
            evidence: format!("{path} does not exist"),
        };
    }
    let names = pkgs.map(parse_reboot_required_pkgs).unwrap_or_default();
    let evidence = if names.is_empty() {
        format!("{path} exists")
    } else {
        format!(
            "{path} exists; requested by: {}",
            name_list(names.iter().map(String::as_str))
        )
    };
    RebootState {
        required: true,
        evidence,
    }
}

/// `needs-restarting -r`: exit 1 with its "Reboot is required" text means
/// required, exit 0 means not; anything else (a crash also exits 1) is
/// unknown.
pub fn reboot_from_needs_restarting(run: Result<Output, ExecError>) -> Outcome<RebootState> {
    let out = run?;
    usable(&out)?;
    let says_reboot = out.stdout.to_ascii_lowercase().contains("reboot");
    match out.code {
        Some(0) => Ok(RebootState {
            required: false,
            evidence: format!(
                "{}: {}",
                run_evidence(&out),
                first_line(&out.stdout).unwrap_or("")
            ),
        }),
        Some(1) if says_reboot => Ok(RebootState {
            required: true,
            evidence: format!(
                "{}: {}",
                run_evidence(&out),
                out.stdout.trim().replace('\n', " / ")
            ),
        }),
        _ => Err(failed(&out)),
    }
}

/// `zypper needs-rebooting`: exit 102 (ZYPPER_EXIT_INF_REBOOT_NEEDED) means
/// required, 0 not.
pub fn reboot_from_zypper(run: Result<Output, ExecError>) -> Outcome<RebootState> {
    let out = run?;
    usable(&out)?;
    match out.code {
        Some(0) => Ok(RebootState {
            required: false,
            evidence: run_evidence(&out),
        }),
        Some(102) => Ok(RebootState {
            required: true,
            evidence: run_evidence(&out),
        }),
        _ => Err(failed(&out)),
    }
}

// ---------------------------------------------------------------------------
// Last upgrade time

/// Upgrade history found in one log, in the log's (local) time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LogUpgrades {
    pub last_upgrade: Option<NaiveDateTime>,
    pub oldest_record: Option<NaiveDateTime>,
}

impl LogUpgrades {
    fn merge(self, other: LogUpgrades) -> LogUpgrades {
        LogUpgrades {
            last_upgrade: self.last_upgrade.max(other.last_upgrade),
            oldest_record: match (self.oldest_record, other.oldest_record) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            },
        }
    }

    fn note(&mut self, t: NaiveDateTime, upgrade: bool) {
        self.oldest_record = Some(self.oldest_record.map_or(t, |o| o.min(t)));
        if upgrade {
            self.last_upgrade = self.last_upgrade.max(Some(t));
        }
    }
}

fn parse_log_time(date: &str, time: &str) -> Option<NaiveDateTime> {
    NaiveDateTime::parse_from_str(&format!("{date} {time}"), "%Y-%m-%d %H:%M:%S").ok()
}

/// `/var/log/apt/history.log`: `Start-Date:` of each transaction that has
/// an `Upgrade:` line (installs and removals are not patching).
pub fn parse_apt_history(text: &str) -> LogUpgrades {
    let mut res = LogUpgrades::default();
    let mut start: Option<NaiveDateTime> = None;
    let mut upgraded = false;
    let mut flush = |start: &mut Option<NaiveDateTime>, upgraded: &mut bool| {
        if let Some(t) = start.take() {
            res.note(t, *upgraded);
        }
        *upgraded = false;
    };
    for line in text.lines() {
        if let Some(v) = line.strip_prefix("Start-Date:") {
            flush(&mut start, &mut upgraded);
            let t: Vec<&str> = v.split_whitespace().collect();
            start = t.get(1).and_then(|time| parse_log_time(t[0], time));
        } else if line.starts_with("Upgrade:") {
            upgraded = true;
        }
    }
    flush(&mut start, &mut upgraded);
    res
}

/// `/var/log/dpkg.log`: `YYYY-MM-DD HH:MM:SS upgrade pkg old new` lines.
pub fn parse_dpkg_log(text: &str) -> LogUpgrades {
    let mut res = LogUpgrades::default();
    for line in text.lines() {
        let t: Vec<&str> = line.split_whitespace().collect();
        if t.len() < 3 {
            continue;
        }
        if let Some(when) = parse_log_time(t[0], t[1]) {
            res.note(when, t[2] == "upgrade");
        }
    }
    res
}

/// Newest `%{INSTALLTIME}` (Unix seconds, one per line) from `rpm -qa
/// --queryformat '%{INSTALLTIME}\n'`: locale-proof, unlike `rpm -qa --last`.
pub fn parse_rpm_installtimes(text: &str) -> Option<DateTime<Utc>> {
    text.lines()
        .filter_map(|l| l.trim().parse::<i64>().ok())
        .filter(|t| *t > 0)
        .max()
        .and_then(|t| DateTime::from_timestamp(t, 0))
}

/// Last upgrade from rpm's install times (any install counts: rpm does not
/// record whether a package replaced an older one).
pub fn last_update_from_rpm(run: Result<Output, ExecError>) -> Outcome<LastUpdate> {
    let out = run?;
    usable(&out)?;
    if out.code != Some(0) {
        return Err(failed(&out));
    }
    let at = parse_rpm_installtimes(&out.stdout)
        .ok_or_else(|| NotRun::new("rpm printed no install time", run_evidence(&out)))?;
    Ok(LastUpdate {
        when: LastPatch::At(at),
        evidence: format!("{}: newest package install time", run_evidence(&out)),
    })
}

/// Combines the logs' upgrade history; `to_utc` resolves their local time.
pub fn last_update_from_logs(
    logs: &[(&str, LogUpgrades)],
    unreadable: &[String],
    to_utc: impl Fn(NaiveDateTime) -> Option<DateTime<Utc>>,
) -> Outcome<LastUpdate> {
    let all = logs
        .iter()
        .fold(LogUpgrades::default(), |acc, (_, l)| acc.merge(*l));
    let names: Vec<&str> = logs.iter().map(|(n, _)| *n).collect();
    let mut evidence = if names.is_empty() {
        "no package log found".to_owned()
    } else {
        format!("read {}", names.join(", "))
    };
    if !unreadable.is_empty() {
        evidence.push_str(&format!("; could not read {}", unreadable.join(", ")));
    }
    if let Some(t) = all.last_upgrade.and_then(&to_utc) {
        let src = logs
            .iter()
            .find(|(_, l)| l.last_upgrade == all.last_upgrade)
            .map_or("", |(n, _)| *n);
        return Ok(LastUpdate {
            when: LastPatch::At(t),
            evidence: format!("{evidence}; last upgrade recorded in {src}"),
        });
    }
    match all.oldest_record.and_then(&to_utc) {
        Some(since) => Ok(LastUpdate {
            when: LastPatch::NoneSince(since),
            evidence,
        }),
        None => Err(NotRun::new("no package log records found", evidence)),
    }
}

// ---------------------------------------------------------------------------
// Windows

/// One installed hotfix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HotFix {
    /// `KB4495590`, or whatever id the system gives.
    pub id: String,
    pub description: String,
    pub installed_on: Option<NaiveDate>,
}

/// Dates as Windows prints InstalledOn: `M/D/YYYY[ time]` (en-US and WMI),
/// `D.M.YYYY`, `YYYY-MM-DD`, `YYYYMMDD`, or a 16-hex-digit FILETIME (a
/// known Win32_QuickFixEngineering quirk).
pub fn parse_windows_date(s: &str) -> Option<NaiveDate> {
    let s = s.split_whitespace().next()?;
    let nums = |sep: char| -> Option<Vec<u32>> {
        s.split(sep)
            .map(|p| p.parse::<u32>().ok())
            .collect::<Option<Vec<_>>>()
    };
    if s.contains('/') {
        let p = nums('/')?;
        return (p.len() == 3).then(|| NaiveDate::from_ymd_opt(p[2] as i32, p[0], p[1]))?;
    }
    if s.contains('.') {
        let p = nums('.')?;
        return (p.len() == 3).then(|| NaiveDate::from_ymd_opt(p[2] as i32, p[1], p[0]))?;
    }
    if s.contains('-') {
        let date = s.split('T').next()?;
        return NaiveDate::parse_from_str(date, "%Y-%m-%d").ok();
    }
    if s.len() == 8 && s.bytes().all(|b| b.is_ascii_digit()) {
        return NaiveDate::parse_from_str(s, "%Y%m%d").ok();
    }
    if s.len() == 16 && s.bytes().all(|b| b.is_ascii_hexdigit()) {
        // 100 ns ticks since 1601-01-01.
        let ticks = i64::from_str_radix(s, 16).ok()?;
        let secs = ticks / 10_000_000 - 11_644_473_600;
        return DateTime::from_timestamp(secs, 0).map(|d| d.date_naive());
    }
    None
}

/// The default `Get-HotFix` table (fixed-width columns under dashes).
pub fn parse_hotfix_table(text: &str) -> Vec<HotFix> {
    let lines: Vec<&str> = text.lines().collect();
    let Some(h) = lines
        .iter()
        .position(|l| l.split_whitespace().any(|w| w == "HotFixID"))
    else {
        return Vec::new();
    };
    let Some(dashes) = lines.get(h + 1).filter(|l| l.trim_start().starts_with('-')) else {
        return Vec::new();
    };
    // Column starts are where each run of dashes starts (char positions).
    let dash_chars: Vec<char> = dashes.chars().collect();
    let starts: Vec<usize> = (0..dash_chars.len())
        .filter(|&i| dash_chars[i] == '-' && (i == 0 || dash_chars[i - 1] != '-'))
        .collect();
    let header = cut_columns(lines[h], &starts);
    let col = |name: &str| header.iter().position(|c| c == name);
    let (Some(id_col), desc_col, date_col) =
        (col("HotFixID"), col("Description"), col("InstalledOn"))
    else {
        return Vec::new();
    };
    lines[h + 2..]
        .iter()
        .filter(|l| !l.trim().is_empty())
        .filter_map(|l| {
            let cells = cut_columns(l, &starts);
            let id = cells.get(id_col)?.clone();
            (!id.is_empty()).then(|| HotFix {
                id,
                description: desc_col
                    .and_then(|c| cells.get(c))
                    .cloned()
                    .unwrap_or_default(),
                installed_on: date_col
                    .and_then(|c| cells.get(c))
                    .and_then(|d| parse_windows_date(d)),
            })
        })
        .collect()
}

fn cut_columns(line: &str, starts: &[usize]) -> Vec<String> {
    let chars: Vec<char> = line.chars().collect();
    starts
        .iter()
        .enumerate()
        .map(|(i, &s)| {
            let end = starts
                .get(i + 1)
                .copied()
                .unwrap_or(chars.len())
                .min(chars.len());
            chars
                .get(s.min(end)..end)
                .map(|c| c.iter().collect::<String>().trim().to_owned())
                .unwrap_or_default()
        })
        .collect()
}

/// `wmic qfe list /format:list` output (already decoded from UTF-16):
/// blank-line separated `Key=Value` records. On XP some records carry
/// `HotFixID=File 1` with the KB number in `ServicePackInEffect`.
pub fn parse_wmic_qfe_list(text: &str) -> Vec<HotFix> {
    let mut out = Vec::new();
    let mut rec: Vec<(String, String)> = Vec::new();
    let mut flush = |rec: &mut Vec<(String, String)>| {
        let get = |k: &str| {
            rec.iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(k))
                .map_or("", |(_, v)| v.as_str())
        };
        let hotfix = get("HotFixID");
        let sp = get("ServicePackInEffect");
        let id = if !is_kb(hotfix) && is_kb(sp) {
            sp
        } else {
            hotfix
        };
        if !id.is_empty() {
            out.push(HotFix {
                id: id.to_owned(),
                description: get("Description").to_owned(),
                installed_on: parse_windows_date(get("InstalledOn")),
            });
        }
        rec.clear();
    };
    for line in text.lines() {
        let line = line.trim_matches(|c: char| c.is_whitespace() || c == '\u{feff}');
        if line.is_empty() {
            flush(&mut rec);
        } else if let Some((k, v)) = line.split_once('=') {
            rec.push((k.trim().to_owned(), v.trim().to_owned()));
        }
    }
    flush(&mut rec);
    out
}

fn is_kb(s: &str) -> bool {
    s.len() > 2 && s[..2].eq_ignore_ascii_case("KB") && s[2..].bytes().all(|b| b.is_ascii_digit())
}

/// Object or array → list of objects (ConvertTo-Json prints a lone item
/// as an object).
fn json_items(v: &serde_json::Value) -> Vec<&serde_json::Map<String, serde_json::Value>> {
    match v {
        serde_json::Value::Array(a) => a.iter().filter_map(|x| x.as_object()).collect(),
        serde_json::Value::Object(o) => vec![o],
        _ => Vec::new(),
    }
}

fn json_get<'a>(
    o: &'a serde_json::Map<String, serde_json::Value>,
    key: &str,
) -> Option<&'a serde_json::Value> {
    o.get(key).or_else(|| {
        o.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v)
    })
}

fn json_str(o: &serde_json::Map<String, serde_json::Value>, key: &str) -> String {
    match json_get(o, key) {
        Some(serde_json::Value::String(s)) => s.trim().to_owned(),
        Some(serde_json::Value::Number(n)) => n.to_string(),
        _ => String::new(),
    }
}

fn json_strs(o: &serde_json::Map<String, serde_json::Value>, key: &str) -> Vec<String> {
    match json_get(o, key) {
        Some(serde_json::Value::Array(a)) => a
            .iter()
            .filter_map(|v| match v {
                serde_json::Value::String(s) => Some(s.clone()),
                serde_json::Value::Number(n) => Some(n.to_string()),
                _ => None,
            })
            .collect(),
        Some(serde_json::Value::String(s)) => vec![s.clone()],
        Some(serde_json::Value::Number(n)) => vec![n.to_string()],
        _ => Vec::new(),
    }
}

/// The PowerShell the Windows shim runs for installed hotfixes; dates are
/// formatted in the script so the JSON does not depend on the culture or
/// PowerShell version.
pub const HOTFIX_SCRIPT: &str = "ConvertTo-Json -Compress -InputObject @(Get-HotFix | \
     Select-Object HotFixID,Description,@{n='InstalledOn';e={if ($_.InstalledOn) \
     {$_.InstalledOn.ToString('yyyy-MM-dd')}}})";

/// Parses [`HOTFIX_SCRIPT`] output: `[{"HotFixID","Description","InstalledOn"}]`.
pub fn parse_hotfix_json(text: &str) -> Result<Vec<HotFix>, String> {
    let v: serde_json::Value = serde_json::from_str(text.trim().trim_start_matches('\u{feff}'))
        .map_err(|e| format!("Get-HotFix output is not JSON: {e}"))?;
    Ok(json_items(&v)
        .into_iter()
        .filter_map(|o| {
            let id = json_str(o, "HotFixID");
            (!id.is_empty()).then(|| HotFix {
                id,
                description: json_str(o, "Description"),
                installed_on: parse_windows_date(&json_str(o, "InstalledOn")),
            })
        })
        .collect())
}

/// A pending update from the Windows Update Agent (IUpdate).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct WuUpdate {
    pub title: String,
    pub kb: Vec<String>,
    /// IUpdate.MsrcSeverity: Critical/Important/Moderate/Low, empty for
    /// non-security updates.
    pub msrc_severity: String,
    /// IUpdate.Categories[].CategoryID (GUIDs, not localized).
    pub category_ids: Vec<String>,
    pub security: bool,
}

/// WSUS classification "Security Updates".
pub const WU_SECURITY_CATEGORY: &str = "0fa1201d-4330-4fa8-8ae9-b877473b6441";

/// The Windows Update Agent query the Windows shim runs. The wrapping
/// object carries ISearchResult.ResultCode (2 = succeeded, 3 = succeeded
/// with errors) so an empty list can be told from a failed search.
pub const WU_SCRIPT: &str = "$r = (New-Object -ComObject Microsoft.Update.Session).\
     CreateUpdateSearcher().Search('IsInstalled=0 and IsHidden=0'); \
     ConvertTo-Json -Compress -Depth 4 -InputObject ([pscustomobject]@{ \
     ResultCode = [int]$r.ResultCode; Updates = @($r.Updates | ForEach-Object { \
     [pscustomobject]@{ Title = $_.Title; KBArticleIDs = @($_.KBArticleIDs); \
     MsrcSeverity = $_.MsrcSeverity; CategoryIDs = @($_.Categories | \
     ForEach-Object { $_.CategoryID }) } }) })";

/// Parses [`WU_SCRIPT`] output. Security = an MSRC severity or the
/// "Security Updates" classification.
pub fn parse_wu_pending_json(text: &str) -> Result<Vec<WuUpdate>, String> {
    let v: serde_json::Value = serde_json::from_str(text.trim().trim_start_matches('\u{feff}'))
        .map_err(|e| format!("Windows Update search output is not JSON: {e}"))?;
    let obj = v
        .as_object()
        .ok_or("Windows Update search output is not an object")?;
    let code = json_get(obj, "ResultCode").and_then(serde_json::Value::as_i64);
    if !matches!(code, Some(2 | 3)) {
        return Err(format!(
            "Windows Update search did not succeed (ResultCode {})",
            code.map_or_else(|| "missing".to_owned(), |c| c.to_string())
        ));
    }
    let updates = json_get(obj, "Updates").ok_or("no Updates in Windows Update output")?;
    Ok(json_items(updates)
        .into_iter()
        .map(|o| {
            let msrc_severity = json_str(o, "MsrcSeverity");
            let category_ids: Vec<String> = json_strs(o, "CategoryIDs")
                .into_iter()
                .map(|c| c.to_ascii_lowercase())
                .collect();
            let security =
                !msrc_severity.is_empty() || category_ids.iter().any(|c| c == WU_SECURITY_CATEGORY);
            WuUpdate {
                title: json_str(o, "Title"),
                kb: json_strs(o, "KBArticleIDs"),
                msrc_severity,
                category_ids,
                security,
            }
        })
        .collect())
}

/// Maps the Windows Update search run to pending updates.
pub fn pending_from_wu(run: Result<Output, ExecError>) -> Outcome<PendingUpdates> {
    let out = run?;
    usable(&out)?;
    if out.code != Some(0) {
        return Err(failed(&out));
    }
    // The script is long; name what it does instead of quoting it.
    let ev = "PowerShell Windows Update Agent search 'IsInstalled=0 and IsHidden=0' exited 0";
    let updates = parse_wu_pending_json(&out.stdout).map_err(|e| NotRun::new(e, ev))?;
    let pending: Vec<Pkg> = updates
        .into_iter()
        .map(|u| Pkg {
            name: u
                .kb
                .first()
                .map_or_else(|| u.title.clone(), |kb| format!("KB{kb}")),
            to_version: u.title,
            origin: "Windows Update".to_owned(),
            security: u.security,
            ..Pkg::default()
        })
        .collect();
    let security = pending.iter().filter(|p| p.security).count();
    Ok(PendingUpdates {
        manager: "windows-update".to_owned(),
        evidence: format!("{ev}: {} updates", pending.len()),
        pending,
        security: Ok(security),
    })
}

/// Last patch date from the installed hotfixes.
pub fn last_update_from_hotfixes(hotfixes: &[HotFix], evidence: &str) -> Outcome<LastUpdate> {
    let newest = hotfixes
        .iter()
        .filter_map(|h| h.installed_on.map(|d| (d, &h.id)))
        .max();
    match newest {
        Some((d, id)) => Ok(LastUpdate {
            when: LastPatch::At(d.and_time(chrono::NaiveTime::MIN).and_utc()),
            evidence: format!("{evidence}: newest hotfix {id} installed {d}"),
        }),
        None => Err(NotRun::new(
            format!("none of {} hotfixes has an install date", hotfixes.len()),
            evidence.to_owned(),
        )),
    }
}

// ---------------------------------------------------------------------------
// Platform shims

#[cfg(not(windows))]
mod platform {
    use std::path::Path;

    use chrono::{DateTime, Local, NaiveDateTime, TimeZone, Utc};

    use super::*;
    use crate::exec::{Cmd, find_program};

    const REBOOT_FLAG: &str = "/var/run/reboot-required";
    const APT_LOGS: [&str; 3] = [
        "/var/log/apt/history.log",
        "/var/log/dpkg.log",
        "/var/log/dpkg.log.1",
    ];

    #[derive(Clone, Copy, PartialEq, Eq)]
    enum Backend {
        Apt,
        Zypper,
        Dnf,
        Yum,
    }

    fn backend() -> Option<Backend> {
        // apt first: Debian can carry a dnf package without using it.
        [
            ("apt-get", Backend::Apt),
            ("zypper", Backend::Zypper),
            ("dnf", Backend::Dnf),
            ("yum", Backend::Yum),
        ]
        .into_iter()
        .find(|(p, _)| find_program(p).is_some())
        .map(|(_, b)| b)
    }

    pub(super) fn gather(
        now: DateTime<Utc>,
    ) -> (
        Outcome<PendingUpdates>,
        Outcome<RebootState>,
        Outcome<LastUpdate>,
    ) {
        let Some(b) = backend() else {
            let none = || {
                NotRun::new(
                    "no supported package manager found (apt-get, zypper, dnf, yum)",
                    format!("looked in {}", crate::exec::SYSTEM_PATH),
                )
            };
            return (Err(none()), Err(none()), Err(none()));
        };
        (pending(b, now), reboot(b), last_update(b))
    }

    fn pending(b: Backend, now: DateTime<Utc>) -> Outcome<PendingUpdates> {
        let slow = Duration::from_secs(300);
        match b {
            Backend::Apt => {
                let run = Cmd::new("apt-get", &APT_ARGS)
                    .timeout(Duration::from_secs(120))
                    .run();
                let mut p = pending_from_apt(run)?;
                // apt-get -s only sees the last `apt update`; stale lists
                // under-report, so say how old they are.
                if let Some(age) = apt_lists_age(now) {
                    p.evidence.push_str(&format!(
                        "; package lists refreshed {} days ago",
                        age.num_days()
                    ));
                }
                Ok(p)
            }
            Backend::Zypper => pending_from_zypper(
                Cmd::new("zypper", &["--non-interactive", "--xmlout", "list-updates"])
                    .timeout(slow)
                    .run(),
                Cmd::new("zypper", &["--non-interactive", "list-patches"])
                    .timeout(slow)
                    .run(),
            ),
            Backend::Dnf => pending_from_rpm_tools(
                "dnf",
                Cmd::new("dnf", &["-q", "check-update"]).timeout(slow).run(),
                Cmd::new("dnf", &["-q", "updateinfo", "list", "--security"])
                    .timeout(slow)
                    .run(),
            ),
            Backend::Yum => pending_from_rpm_tools(
                "yum",
                Cmd::new("yum", &["-q", "check-update"]).timeout(slow).run(),
                Cmd::new("yum", &["-q", "updateinfo", "list", "security"])
                    .timeout(slow)
                    .run(),
            ),
        }
    }

    fn apt_lists_age(now: DateTime<Utc>) -> Option<chrono::Duration> {
        [
            "/var/lib/apt/periodic/update-success-stamp",
            "/var/lib/apt/lists",
        ]
        .iter()
        .find_map(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok())
        .map(|t| now - DateTime::<Utc>::from(t))
    }

    fn reboot(b: Backend) -> Outcome<RebootState> {
        let t = Duration::from_secs(60);
        match b {
            Backend::Apt => {
                let exists = Path::new(REBOOT_FLAG).exists();
                let pkgs = std::fs::read_to_string(format!("{REBOOT_FLAG}.pkgs")).ok();
                Ok(reboot_from_flag_file(REBOOT_FLAG, exists, pkgs.as_deref()))
            }
            Backend::Zypper => reboot_from_zypper(
                Cmd::new("zypper", &["--non-interactive", "needs-rebooting"])
                    .timeout(t)
                    .run(),
            ),
            Backend::Dnf | Backend::Yum => {
                if find_program("needs-restarting").is_some() {
                    reboot_from_needs_restarting(
                        Cmd::new("needs-restarting", &["-r"]).timeout(t).run(),
                    )
                } else if b == Backend::Dnf {
                    reboot_from_needs_restarting(
                        Cmd::new("dnf", &["-q", "needs-restarting", "-r"])
                            .timeout(t)
                            .run(),
                    )
                } else {
                    Err(NotRun::new(
                        "needs-restarting is not installed (package yum-utils)",
                        "",
                    ))
                }
            }
        }
    }

    fn last_update(b: Backend) -> Outcome<LastUpdate> {
        if b != Backend::Apt {
            return last_update_from_rpm(
                Cmd::new("rpm", &["-qa", "--queryformat", "%{INSTALLTIME}\\n"])
                    .timeout(Duration::from_secs(120))
                    .run(),
            );
        }
        let mut logs = Vec::new();
        let mut unreadable = Vec::new();
        for path in APT_LOGS {
            match std::fs::read(path) {
                Ok(bytes) => {
                    let text = String::from_utf8_lossy(&bytes);
                    let parsed = if path.contains("history") {
                        parse_apt_history(&text)
                    } else {
                        parse_dpkg_log(&text)
                    };
                    logs.push((path, parsed));
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => unreadable.push(format!("{path} ({e})")),
            }
        }
        last_update_from_logs(&logs, &unreadable, local_to_utc)
    }

    /// The logs are written in local time.
    fn local_to_utc(t: NaiveDateTime) -> Option<DateTime<Utc>> {
        Local
            .from_local_datetime(&t)
            .earliest()
            .map(|d| d.with_timezone(&Utc))
    }
}

#[cfg(windows)]
mod platform {
    use super::*;
    use crate::exec::Cmd;

    const POWERSHELL: &str = r"C:\Windows\System32\WindowsPowerShell\v1.0\powershell.exe";
    const REBOOT_KEY: &str =
        r"HKLM:\SOFTWARE\Microsoft\Windows\CurrentVersion\WindowsUpdate\Auto Update\RebootRequired";

    fn ps(script: &str, secs: u64) -> Result<Output, ExecError> {
        Cmd::new(
            POWERSHELL,
            &["-NoProfile", "-NonInteractive", "-Command", script],
        )
        .timeout(Duration::from_secs(secs))
        .run()
    }

    pub(super) fn gather(
        _now: DateTime<Utc>,
    ) -> (
        Outcome<PendingUpdates>,
        Outcome<RebootState>,
        Outcome<LastUpdate>,
    ) {
        let pending = pending_from_wu(ps(WU_SCRIPT, 600));
        let reboot = ps(&format!("Test-Path '{REBOOT_KEY}'"), 60)
            .map_err(NotRun::from)
            .and_then(|o| match o.stdout.trim() {
                "True" => Ok(RebootState {
                    required: true,
                    evidence: format!("{REBOOT_KEY} exists"),
                }),
                "False" => Ok(RebootState {
                    required: false,
                    evidence: format!("{REBOOT_KEY} absent"),
                }),
                _ => Err(failed(&o)),
            });
        let last = ps(HOTFIX_SCRIPT, 120).map_err(NotRun::from).and_then(|o| {
            usable(&o)?;
            let fixes = parse_hotfix_json(&o.stdout).map_err(|e| NotRun::new(e, "Get-HotFix"))?;
            last_update_from_hotfixes(&fixes, "Get-HotFix")
        });
        (pending, reboot, last)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    macro_rules! fixture {
        ($name:literal) => {
            include_str!(concat!("../../testdata/patches/", $name))
        };
    }

    const DEB12_APT: &str = fixture!("debian12-this-image_apt-get-s-upgrade.txt");
    const DEB12_APT_EXIT: &str = fixture!("debian12-this-image_apt-get-s-upgrade.txt.exitcode");
    const DEB12_CHECK_APT: &str = fixture!("debian12-this-image_check_apt.txt");
    const DEB12_CHECK_APT_EXIT: &str = fixture!("debian12-this-image_check_apt.txt.exitcode");
    const DEB12_APT_LIST: &str = fixture!("debian12-this-image_apt-list-upgradable.txt");
    const DEB12_HISTORY: &str = fixture!("debian12-this-image_apt-history.log.excerpt.txt");
    const DEB12_DPKG_LOG: &str = fixture!("debian12-this-image_dpkg.log.excerpt.txt");
    const MP_DEBIAN6_NONE: &str =
        fixture!("monitoring-plugins_check_apt_debian6_apt-get-s-upgrade_no-updates.txt");
    const MP_DEBIAN6_SEC: &str =
        fixture!("monitoring-plugins_check_apt_debian6_apt-get-s-upgrade_with-Debian-Security.txt");
    const MP_UBUNTU1204: &str =
        fixture!("monitoring-plugins_check_apt_ubuntu1204_apt-get-s-upgrade_precise-security.txt");
    const OSC_DEBIAN12: &str =
        fixture!("osconfig_debian12_apt-get-just-print-full-upgrade.stdout.txt");
    const OSC_UBUNTU2404: &str =
        fixture!("osconfig_ubuntu2404_apt-get-just-print-full-upgrade.stdout.txt");
    const YUM_CENTOS7: &str = fixture!("osconfig_centos7_yum-check-update.stdout.txt");
    const YUM_RHEL7: &str = fixture!("osconfig_rhel7_yum-check-update_wrapped-names.stdout.txt");
    const DNF_OL8: &str = fixture!("osconfig_oraclelinux8_dnf-check-update.stdout.txt");
    const DNF_ROCKY8: &str = fixture!("osconfig_rocky8_dnf-check-update_obsoleting.stdout.txt");
    const ZYP_PATCHES: &str = fixture!("osconfig_sles15sp5_zypper-list-patches.stdout.txt");
    const ZYP_UPD15: &str = fixture!("osconfig_sles15sp5_zypper-list-updates.stdout.txt");
    const ZYP_UPD12: &str = fixture!("osconfig_sles12sp5_zypper-list-updates.stdout.txt");
    const ZYP_XML: &str = fixture!("salt_zypper-xmlout-list-updates_sles12sp1.xml");
    const HOTFIX_TABLE: &str = fixture!("msdocs_Get-HotFix_table_Server01.txt");
    const QFE_XP_UTF16: &[u8] = include_bytes!(
        "../../testdata/patches/glpi-agent_wmic-list_Win32_QuickFixEngineering_winxp.utf16le.wmi"
    );

    /// UTF-16LE (with or without BOM) → String, as wmic writes its files.
    fn decode_utf16le(bytes: &[u8]) -> String {
        let units: Vec<u16> = bytes
            .chunks_exact(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .collect();
        let s = String::from_utf16_lossy(&units);
        s.strip_prefix('\u{feff}').unwrap_or(&s).to_owned()
    }

    fn out(command: &str, code: Option<i32>, stdout: &str, stderr: &str) -> Output {
        Output {
            code,
            stdout: stdout.to_owned(),
            stderr: stderr.to_owned(),
            truncated: false,
            command: command.to_owned(),
        }
    }

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn naive(s: &str) -> NaiveDateTime {
        NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S").unwrap()
    }

    fn find<'a>(f: &'a Findings, id: &str) -> &'a xunjian_proto::CheckResult {
        f.checks.iter().find(|c| c.check_id == id).unwrap()
    }

    fn metric_value(f: &Findings, name: &str) -> Option<f64> {
        f.metrics.iter().find(|m| m.name == name).map(|m| m.value)
    }

    // ---- apt ----

    #[test]
    fn apt_this_image_agrees_with_check_apt_captured_at_the_same_moment() {
        assert_eq!(DEB12_APT_EXIT.trim(), "exit=0");
        assert_eq!(DEB12_CHECK_APT_EXIT.trim(), "exit=2"); // CRITICAL
        let apt = parse_apt_simulate(DEB12_APT);
        let check_apt = parse_check_apt_line(DEB12_CHECK_APT).unwrap();
        assert_eq!(check_apt.state, "CRITICAL");
        assert_eq!(apt.pending.len(), check_apt.available);
        assert_eq!(apt.security, check_apt.critical);
        assert_eq!((apt.pending.len(), apt.security), (132, 81));
    }

    #[test]
    fn apt_fixtures_give_check_apt_counts() {
        // Expected values: `/usr/lib/nagios/plugins/check_apt --input-file=F`
        // (monitoring-plugins 2.3.3, Debian 12) on each fixture.
        for (text, pending, security) in [
            (MP_DEBIAN6_NONE, 0, 0),
            (MP_DEBIAN6_SEC, 19, 4),
            (MP_UBUNTU1204, 25, 14),
            (OSC_DEBIAN12, 15, 0),
            (OSC_UBUNTU2404, 53, 0),
            (DEB12_APT, 132, 81),
        ] {
            let r = parse_apt_simulate(text);
            assert_eq!((r.pending.len(), r.security), (pending, security));
        }
    }

    #[test]
    fn apt_inst_lines_are_split_into_fields() {
        let r = parse_apt_simulate(DEB12_APT);
        let gcrypt = r.pending.iter().find(|p| p.name == "libgcrypt20").unwrap();
        assert_eq!(
            gcrypt,
            &Pkg {
                name: "libgcrypt20".into(),
                arch: "amd64".into(),
                from_version: Some("1.10.1-3".into()),
                to_version: "1.10.1-3+deb12u1".into(),
                origin: "Debian:12.15/oldstable, Debian-Security:12/oldstable-security".into(),
                security: true,
            }
        );
        let base = r.pending.iter().find(|p| p.name == "base-files").unwrap();
        assert!(!base.security);
        assert_eq!(base.origin, "Debian:12.15/oldstable");
        // Epochs stay in the version.
        let cap = r.pending.iter().find(|p| p.name == "libcap2").unwrap();
        assert_eq!(cap.from_version.as_deref(), Some("1:2.66-4+deb12u2+b2"));

        // New packages in full-upgrade have no [old] version.
        let r = parse_apt_simulate(OSC_DEBIAN12);
        let gir = r
            .pending
            .iter()
            .find(|p| p.name == "libgirepository-1.0-1")
            .unwrap();
        assert_eq!(gir.from_version, None);
        assert_eq!(gir.to_version, "1.74.0-3");
        assert_eq!(gir.origin, "Debian:12.10/stable");

        // Ubuntu lines with trailing `[]` markers.
        let r = parse_apt_simulate(OSC_UBUNTU2404);
        let perl = r.pending.iter().find(|p| p.name == "perl").unwrap();
        assert_eq!(perl.to_version, "5.38.2-3.2build2.1");
        assert_eq!(perl.origin, "Ubuntu:24.04/noble-updates");
        let r = parse_apt_simulate(MP_UBUNTU1204);
        let libc = r.pending.iter().find(|p| p.name == "libc6-dev").unwrap();
        assert!(libc.security);
        assert_eq!(libc.origin, "Ubuntu:12.04/precise-security");
    }

    #[test]
    fn apt_upgrade_is_a_subset_of_apt_list_upgradable() {
        // Same machine, same moment: `apt list --upgradable` also lists
        // packages `upgrade` keeps back, never fewer.
        let listed: BTreeSet<&str> = DEB12_APT_LIST
            .lines()
            .filter_map(|l| l.split_once('/').map(|(n, _)| n))
            .collect();
        let r = parse_apt_simulate(DEB12_APT);
        for p in &r.pending {
            assert!(listed.contains(p.name.as_str()), "{}", p.name);
        }
    }

    #[test]
    fn apt_security_rule_matches_check_apt_regex_semantics() {
        let yes = [
            "Inst a [1] (2 Debian-Security:12/stable-security [amd64])",
            "Inst a [1] (2 Debian:12/stable, Debian-Security:12/stable-security [amd64])",
            "Inst a [1] (2 Ubuntu:12.04/precise-security [amd64])",
            "Inst a (2 Ubuntu:24.04/noble-security [all])",
            // `.*` can span anything after the first '('.
            "Inst a [1] (2 x) ( Debian-Security:",
        ];
        let no = [
            "Inst a [1] (2 Debian:12/stable [amd64])",
            "Inst a [1] (2 Ubuntu:24.04/noble-updates [amd64])",
            // First '-' after the '/' must start "-security".
            "Inst a [1] (2 Ubuntu:20.04/focal-updates-security [amd64])",
            // Needs the space before the origin, and a '(' before it.
            "Inst a [1] (2,Debian-Security:12 [amd64])",
            "Inst a Debian-Security: [1]",
            // `[^\\(]` in POSIX excludes the backslash too.
            "Inst a\\b (2 Debian-Security:12 [amd64])",
            "",
        ];
        for l in yes {
            assert!(apt_line_is_security(l), "{l}");
        }
        for l in no {
            assert!(!apt_line_is_security(l), "{l}");
        }
    }

    #[test]
    fn check_apt_line_parses_all_states() {
        let p = parse_check_apt_line(
            "APT OK: 0 packages available for upgrade (0 critical updates). |available_upgrades=0;;;0 critical_updates=0;;;0\n",
        )
        .unwrap();
        assert_eq!((p.state.as_str(), p.available, p.critical), ("OK", 0, 0));
        let p = parse_check_apt_line(
            "APT WARNING: 15 packages available for dist-upgrade (0 critical updates).  warnings detected.|x",
        )
        .unwrap();
        assert_eq!(
            (p.state.as_str(), p.available, p.critical),
            ("WARNING", 15, 0)
        );
        assert_eq!(parse_check_apt_line(""), None);
        assert_eq!(parse_check_apt_line("APT CRITICAL: x packages"), None);
    }

    #[test]
    fn apt_run_mapping() {
        let ok = pending_from_apt(Ok(out("apt-get", Some(0), MP_DEBIAN6_SEC, ""))).unwrap();
        assert_eq!((ok.pending.len(), ok.security.clone()), (19, Ok(4)));
        // Nothing to upgrade with -qq is empty output, exit 0: a real zero.
        let none = pending_from_apt(Ok(out("apt-get", Some(0), "", ""))).unwrap();
        assert!(none.pending.is_empty());

        let err = pending_from_apt(Ok(out(
            "apt-get",
            Some(100),
            "",
            "E: The package lists or status file could not be parsed or opened.",
        )))
        .unwrap_err();
        assert!(err.reason.contains("exit 100"), "{err:?}");
        assert!(err.reason.contains("could not be parsed"));
        let missing = pending_from_apt(Err(ExecError::NotFound("apt-get".into()))).unwrap_err();
        assert!(missing.reason.contains("not installed"));
        let mut cut = out("apt-get", Some(0), MP_DEBIAN6_SEC, "");
        cut.truncated = true;
        assert!(pending_from_apt(Ok(cut)).is_err());
        assert!(pending_from_apt(Ok(out("apt-get", None, "", ""))).is_err());
    }

    // ---- dnf / yum ----

    #[test]
    fn yum_centos7_with_preamble_and_obsoletes() {
        let p = parse_check_update(YUM_CENTOS7);
        // 41 listed (one wrapped) + google-cloud-cli, which obsoletes an
        // installed package.
        assert_eq!(p.len(), 42);
        assert_eq!(p[0].name, "bind-export-libs");
        assert_eq!(p[0].arch, "x86_64");
        assert_eq!(p[0].to_version, "32:9.11.4-26.P2.el7_9.16");
        assert_eq!(p[0].origin, "updates");
        let wrapped = p
            .iter()
            .find(|k| k.name == "google-compute-engine-oslogin")
            .unwrap();
        assert_eq!(wrapped.to_version, "1:20240415.00-g1.el7");
        assert_eq!(wrapped.origin, "google-compute-engine");
        assert!(p.iter().any(|k| k.name == "google-cloud-cli"));
        // The obsoleted installed package is not a second google-cloud-sdk.
        assert_eq!(p.iter().filter(|k| k.name == "google-cloud-sdk").count(), 1);
        assert!(!p.iter().any(|k| k.origin.starts_with('@')));
    }

    #[test]
    fn yum_rhel7_wrapped_names() {
        let p = parse_check_update(YUM_RHEL7);
        assert_eq!(p.len(), 17);
        let w = p
            .iter()
            .find(|k| k.name == "redhat-support-lib-python")
            .unwrap();
        assert_eq!(
            (w.arch.as_str(), w.to_version.as_str(), w.origin.as_str()),
            ("noarch", "0.14.0-1.el7_9", "rhui-rhel-7-server-rhui-rpms")
        );
    }

    #[test]
    fn dnf_el8_lists_with_obsoleting_blocks() {
        let ol8 = parse_check_update(DNF_OL8);
        let main_rows = DNF_OL8
            .split("Obsoleting Packages")
            .next()
            .unwrap()
            .lines()
            .filter(|l| l.split_whitespace().count() == 3 && !l.starts_with(' '))
            .count();
        // Every obsoleting package is already listed, so no extras.
        assert_eq!(ol8.len(), main_rows);
        assert_eq!(ol8.len(), 73);
        assert_eq!(ol8.iter().filter(|k| k.name == "kernel-headers").count(), 1);
        let rocky = parse_check_update(DNF_ROCKY8);
        assert_eq!(rocky.len(), 184);
        let nm = rocky.iter().find(|k| k.name == "NetworkManager").unwrap();
        assert_eq!(nm.to_version, "1:1.40.16-19.el8_10");
        assert!(!rocky.iter().any(|k| k.origin.starts_with('@')));
    }

    /// CONSTRUCTED, not captured: no real `updateinfo` capture is in the
    /// fixture set. Lines follow the formats printed by yum 3 / dnf 4
    /// (`ADVISORY Sev/Sec. NEVRA`, as quoted in public RHEL docs and
    /// forum posts) and dnf5 (`Name Type Severity Package Issued`).
    const UPDATEINFO_CONSTRUCTED: &str = "\
RHSA-2024:2394 Important/Sec. kernel-3.10.0-1160.119.1.el7.x86_64
RHSA-2024:2394 Important/Sec. kernel-tools-3.10.0-1160.119.1.el7.x86_64
RHSA-2024:1234 Moderate/Sec.  bind-export-libs-32:9.11.4-26.P2.el7_9.16.x86_64
RHSA-2024:1235 Low/Sec.       tzdata-2024a-1.el7.noarch
RHSA-2024:1236 Low/Sec.       tzdata-2024a-1.el7.noarch
Security: kernel-3.10.0-1160.119.1.el7.x86_64 is an installed security update
updateinfo list done
";

    #[test]
    fn updateinfo_security_packages() {
        let s = parse_updateinfo_security(UPDATEINFO_CONSTRUCTED);
        let names: Vec<&str> = s.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            ["bind-export-libs", "kernel", "kernel-tools", "tzdata"]
        );
        let dnf5 = "Name                Type     Severity  Package                          Issued\n\
                    FEDORA-2024-1a2b3c  security Moderate  curl-8.6.0-7.fc40.x86_64         2024-04-01 00:00:00\n";
        let s = parse_updateinfo_security(dnf5);
        assert!(s.contains(&("curl".to_owned(), "x86_64".to_owned())));
        assert_eq!(s.len(), 1);
    }

    #[test]
    fn dnf_run_mapping_follows_exit_codes() {
        let p = pending_from_rpm_tools(
            "yum",
            Ok(out("yum -q check-update", Some(100), YUM_CENTOS7, "")),
            Ok(out(
                "yum -q updateinfo list security",
                Some(0),
                UPDATEINFO_CONSTRUCTED,
                "",
            )),
        )
        .unwrap();
        assert_eq!(p.pending.len(), 42);
        assert_eq!(p.security, Ok(4));
        let marked: Vec<&str> = p
            .pending
            .iter()
            .filter(|k| k.security)
            .map(|k| k.name.as_str())
            .collect();
        assert_eq!(
            marked,
            ["bind-export-libs", "kernel", "kernel-tools", "tzdata"]
        );

        // 0 = no updates.
        let none = pending_from_rpm_tools(
            "dnf",
            Ok(out("dnf -q check-update", Some(0), "", "")),
            Ok(out("dnf", Some(0), "", "")),
        )
        .unwrap();
        assert!(none.pending.is_empty());
        assert_eq!(none.security, Ok(0));

        // 1 = error, never "0 pending".
        let stderr = fixture!("osconfig_centos7_yum-check-update.stderr.txt");
        let e = pending_from_rpm_tools(
            "yum",
            Ok(out("yum -q check-update", Some(1), "", stderr)),
            Ok(out("yum", Some(0), "", "")),
        )
        .unwrap_err();
        assert!(e.reason.contains("exit 1"), "{e:?}");
        // 100 with nothing parsable is not trusted either.
        assert!(
            pending_from_rpm_tools(
                "dnf",
                Ok(out("dnf", Some(100), "garbage\n", "")),
                Ok(out("dnf", Some(0), "", ""))
            )
            .is_err()
        );
        // updateinfo failing leaves the pending count but security unknown.
        let p = pending_from_rpm_tools(
            "dnf",
            Ok(out("dnf", Some(100), DNF_OL8, "")),
            Ok(out(
                "dnf -q updateinfo list --security",
                Some(1),
                "",
                "Error: boom",
            )),
        )
        .unwrap();
        assert_eq!(p.pending.len(), 73);
        assert!(p.security.unwrap_err().contains("boom"));
    }

    // ---- zypper ----

    #[test]
    fn zypper_xml_list_updates() {
        let p = parse_zypper_xml_updates(ZYP_XML).unwrap();
        assert_eq!(p.len(), 3);
        assert_eq!(
            p[0],
            Pkg {
                name: "SUSEConnect".into(),
                arch: "x86_64".into(),
                from_version: None,
                to_version: "0.2.33-7.1".into(),
                origin: "SLE12-SP1-x86_64-Update".into(),
                security: false,
            }
        );
        assert_eq!(p[2].name, "bind-utils");
        // A cut-off document is an error, not "no updates".
        let cut = &ZYP_XML[..ZYP_XML.len() / 2];
        assert!(parse_zypper_xml_updates(cut).is_err());
        let err = parse_zypper_xml_updates(
            "<?xml version='1.0'?>\n<stream>\n<message type=\"error\">System management is locked by the application with pid 1 (zypper).</message>\n</stream>\n",
        )
        .unwrap_err();
        assert!(err.contains("locked"), "{err}");
        // Complete but empty: a real zero.
        let empty = "<stream><update-status version=\"0.6\"><update-list>\n</update-list></update-status></stream>";
        assert_eq!(parse_zypper_xml_updates(empty).unwrap(), vec![]);
    }

    #[test]
    fn zypper_tables() {
        let p15 = parse_zypper_updates_table(ZYP_UPD15).unwrap();
        assert_eq!(p15.len(), 117);
        assert_eq!(p15[0].name, "aaa_base");
        assert_eq!(
            p15[0].from_version.as_deref(),
            Some("84.87+git20180409.04c9dae-150300.10.3.1")
        );
        assert_eq!(p15[0].to_version, "84.87+git20180409.04c9dae-150300.10.6.2");
        assert_eq!(p15[0].origin, "SLE-Module-Basesystem15-SP5-Updates");
        assert_eq!(p15[0].arch, "x86_64");
        assert_eq!(parse_zypper_updates_table(ZYP_UPD12).unwrap().len(), 21);
        assert!(parse_zypper_updates_table("garbage").is_err());
    }

    #[test]
    fn zypper_patches_table_counts_needed_and_security() {
        let z = parse_zypper_patches(ZYP_PATCHES).unwrap();
        // zypper's own summary: "80 patches needed (36 security patches)".
        assert_eq!((z.needed, z.security_needed), (80, 36));
        assert_eq!(z.security_names.len(), 36);
        // The table alone gives the same numbers.
        let without_summary: String = ZYP_PATCHES
            .lines()
            .filter(|l| !l.contains("patches needed"))
            .map(|l| format!("{l}\n"))
            .collect();
        let t = parse_zypper_patches(&without_summary).unwrap();
        assert_eq!((t.needed, t.security_needed), (80, 36));
        // zypper's text when nothing applies (update.cc).
        let none = parse_zypper_patches(
            "Loading repository data...\nReading installed packages...\nNo updates found.\n",
        )
        .unwrap();
        assert_eq!(none, ZypperPatches::default());
        assert!(parse_zypper_patches("").is_err());
        assert!(parse_zypper_patches("Fehler: irgendwas").is_err());
    }

    #[test]
    fn zypper_run_mapping() {
        let p = pending_from_zypper(
            Ok(out("zypper --xmlout list-updates", Some(0), ZYP_XML, "")),
            Ok(out("zypper list-patches", Some(0), ZYP_PATCHES, "")),
        )
        .unwrap();
        assert_eq!((p.pending.len(), p.security.clone()), (3, Ok(36)));
        let locked = pending_from_zypper(
            Ok(out("zypper", Some(7), "", "System management is locked")),
            Ok(out("zypper", Some(0), ZYP_PATCHES, "")),
        )
        .unwrap_err();
        assert!(locked.reason.contains("exit 7"));
        let p = pending_from_zypper(
            Ok(out("zypper", Some(100), ZYP_XML, "")),
            Ok(out(
                "zypper",
                Some(106),
                "",
                "Some repositories have not been refreshed",
            )),
        )
        .unwrap();
        assert!(p.security.is_err());
    }

    // ---- reboot ----

    #[test]
    fn reboot_sources() {
        let r = reboot_from_flag_file(
            "/var/run/reboot-required",
            true,
            Some("linux-image-6.1.0-28-amd64\nlibc6\nlibc6\n"),
        );
        assert!(r.required);
        assert!(
            r.evidence.ends_with("linux-image-6.1.0-28-amd64, libc6"),
            "{}",
            r.evidence
        );
        assert!(!reboot_from_flag_file("/var/run/reboot-required", false, None).required);

        // needs-restarting texts as yum-utils / dnf-plugins-core print them.
        let yes = reboot_from_needs_restarting(Ok(out(
            "needs-restarting -r",
            Some(1),
            "Core libraries or services have been updated since boot-up:\n  * kernel\n\nReboot is required to fully utilize these updates.\nMore information: https://access.redhat.com/solutions/27943\n",
            "",
        )))
        .unwrap();
        assert!(yes.required);
        let no = reboot_from_needs_restarting(Ok(out(
            "needs-restarting -r",
            Some(0),
            "No core libraries or services have been updated since boot-up.\nReboot should not be necessary.\n",
            "",
        )))
        .unwrap();
        assert!(!no.required);
        // A crash also exits 1: unknown, not "required".
        assert!(
            reboot_from_needs_restarting(Ok(out(
                "needs-restarting -r",
                Some(1),
                "",
                "Traceback (most recent call last):"
            )))
            .is_err()
        );
        assert!(
            reboot_from_needs_restarting(Err(ExecError::NotFound("needs-restarting".into())))
                .is_err()
        );
        assert!(
            reboot_from_zypper(Ok(out("zypper needs-rebooting", Some(102), "", "")))
                .unwrap()
                .required
        );
        assert!(
            !reboot_from_zypper(Ok(out("zypper needs-rebooting", Some(0), "", "")))
                .unwrap()
                .required
        );
        assert!(reboot_from_zypper(Ok(out("zypper needs-rebooting", Some(2), "", ""))).is_err());
    }

    // ---- last update ----

    #[test]
    fn apt_history_last_upgrade_ignores_installs_and_purges() {
        let h = parse_apt_history(DEB12_HISTORY);
        assert_eq!(h.last_upgrade, Some(naive("2026-09-22 04:48:20")));
        assert_eq!(h.oldest_record, Some(naive("2025-06-24 14:36:25")));
        let d = parse_dpkg_log(DEB12_DPKG_LOG);
        assert_eq!(d.last_upgrade, Some(naive("2026-09-22 04:51:17")));
        assert_eq!(d.oldest_record, Some(naive("2025-06-24 14:36:25")));

        let utc = |t: NaiveDateTime| Some(t.and_utc());
        let l = last_update_from_logs(
            &[("/var/log/apt/history.log", h), ("/var/log/dpkg.log", d)],
            &[],
            utc,
        )
        .unwrap();
        assert_eq!(l.when, LastPatch::At(at("2026-09-22T04:51:17Z")));
        assert!(
            l.evidence
                .contains("last upgrade recorded in /var/log/dpkg.log")
        );

        // Logs with only installs prove "none since".
        let installs_only = "Start-Date: 2026-11-23  09:00:53\nInstall: a:amd64 (1)\nEnd-Date: 2026-11-23  09:00:58\n";
        let l = last_update_from_logs(
            &[("history.log", parse_apt_history(installs_only))],
            &[],
            utc,
        )
        .unwrap();
        assert_eq!(l.when, LastPatch::NoneSince(at("2026-11-23T09:00:53Z")));
        assert!(last_update_from_logs(&[], &["x (denied)".into()], utc).is_err());
    }

    #[test]
    fn rpm_install_times() {
        // CONSTRUCTED: `rpm -qa --queryformat '%{INSTALLTIME}\n'` prints one
        // Unix time per package.
        assert_eq!(
            parse_rpm_installtimes("1714000000\n1745000000\n1600000000\n(none)\n"),
            Some(at("2025-04-18T18:13:20Z"))
        );
        assert_eq!(parse_rpm_installtimes(""), None);
        let l = last_update_from_rpm(Ok(out("rpm", Some(0), "1745000000\n", ""))).unwrap();
        assert_eq!(l.when, LastPatch::At(at("2025-04-18T18:13:20Z")));
        assert!(last_update_from_rpm(Ok(out("rpm", Some(0), "", ""))).is_err());
        assert!(last_update_from_rpm(Ok(out("rpm", Some(1), "1745000000\n", "error"))).is_err());
    }

    // ---- windows ----

    #[test]
    fn hotfix_table() {
        let h = parse_hotfix_table(HOTFIX_TABLE);
        assert_eq!(h.len(), 3);
        assert_eq!(
            h[1],
            HotFix {
                id: "KB4470788".into(),
                description: "Security Update".into(),
                installed_on: NaiveDate::from_ymd_opt(2019, 1, 22),
            }
        );
        let l = last_update_from_hotfixes(&h, "Get-HotFix").unwrap();
        assert_eq!(l.when, LastPatch::At(at("2019-05-16T00:00:00Z")));
        assert!(l.evidence.contains("KB4495590"));
    }

    #[test]
    fn wmic_qfe_xp_utf16() {
        let text = decode_utf16le(QFE_XP_UTF16);
        let h = parse_wmic_qfe_list(&text);
        assert_eq!(h.len(), 16);
        // XP's "File 1" records carry the KB in ServicePackInEffect.
        assert!(
            h.iter()
                .any(|x| x.id == "KB2079403" && x.installed_on.is_none())
        );
        let kb = h.iter().find(|x| x.id == "KB982665").unwrap();
        assert_eq!(kb.installed_on, NaiveDate::from_ymd_opt(2011, 1, 15));
        assert_eq!(kb.description, "Security Update for Windows XP (KB982665)");
        assert!(h.iter().any(|x| x.id == "XpsEPSC"));
        assert_eq!(h.iter().filter(|x| x.installed_on.is_some()).count(), 10);
    }

    #[test]
    fn windows_dates() {
        let d = |y, m, d| NaiveDate::from_ymd_opt(y, m, d);
        assert_eq!(parse_windows_date("5/16/2019 00:00:00"), d(2019, 5, 16));
        assert_eq!(parse_windows_date("1/15/2011"), d(2011, 1, 15));
        assert_eq!(parse_windows_date("16.05.2019"), d(2019, 5, 16));
        assert_eq!(parse_windows_date("2019-05-16"), d(2019, 5, 16));
        assert_eq!(
            parse_windows_date("2019-05-16T00:00:00+02:00"),
            d(2019, 5, 16)
        );
        assert_eq!(parse_windows_date("20190516"), d(2019, 5, 16));
        // FILETIME for 2011-01-15 00:00:00 UTC.
        assert_eq!(parse_windows_date("01cbb44905b28000"), d(2011, 1, 15));
        for bad in ["", "13/45/2019", "x", "1/2", "99999999999999999999"] {
            assert_eq!(parse_windows_date(bad), None, "{bad}");
        }
    }

    #[test]
    fn hotfix_json() {
        // CONSTRUCTED from the Get-HotFix table fixture, in the shape
        // HOTFIX_SCRIPT prints (no captured PowerShell JSON is available).
        let json = r#"[{"HotFixID":"KB4495590","Description":"Update","InstalledOn":"2019-05-16"},{"HotFixID":"KB4470788","Description":"Security Update","InstalledOn":"2019-01-22"},{"HotFixID":"KB0","Description":"Update","InstalledOn":null}]"#;
        let h = parse_hotfix_json(json).unwrap();
        assert_eq!(h.len(), 3);
        assert_eq!(h[0].installed_on, NaiveDate::from_ymd_opt(2019, 5, 16));
        assert_eq!(h[2].installed_on, None);
        // ConvertTo-Json prints a lone item as an object.
        let one = parse_hotfix_json(r#"{"HotFixID":"KB1","InstalledOn":"2020-01-02"}"#).unwrap();
        assert_eq!(one.len(), 1);
        assert!(parse_hotfix_json("").is_err());
        assert!(parse_hotfix_json("Get-HotFix : Access denied").is_err());
    }

    /// CONSTRUCTED, not captured: no real Windows Update Agent output is in
    /// the fixture set. Shape = WU_SCRIPT's object; fields are documented
    /// IUpdate properties (Title, KBArticleIDs, MsrcSeverity,
    /// Categories[].CategoryID) and ISearchResult.ResultCode
    /// (OperationResultCode: 2 = orcSucceeded).
    const WU_CONSTRUCTED: &str = r#"{"ResultCode":2,"Updates":[
        {"Title":"2024-05 Cumulative Update for Windows Server 2019 (1809) for x64-based Systems (KB5037765)","KBArticleIDs":["5037765"],"MsrcSeverity":"Critical","CategoryIDs":["0FA1201D-4330-4FA8-8AE9-B877473B6441","f702a48c-919b-45d6-9aef-ca4248d50397"]},
        {"Title":"Security Intelligence Update for Microsoft Defender Antivirus - KB2267602 (Version 1.411.1.0)","KBArticleIDs":["2267602"],"MsrcSeverity":null,"CategoryIDs":["e0789628-ce08-4437-be74-2495b842f43b"]},
        {"Title":"2024-05 .NET Framework security update","KBArticleIDs":"5037930","MsrcSeverity":"","CategoryIDs":["0fa1201d-4330-4fa8-8ae9-b877473b6441"]}
    ]}"#;

    #[test]
    fn windows_update_pending_json() {
        let u = parse_wu_pending_json(WU_CONSTRUCTED).unwrap();
        assert_eq!(u.len(), 3);
        assert!(u[0].security);
        assert!(!u[1].security);
        assert!(u[2].security);
        assert_eq!(u[2].kb, ["5037930"]);
        let p = pending_from_wu(Ok(out("powershell", Some(0), WU_CONSTRUCTED, ""))).unwrap();
        assert_eq!((p.pending.len(), p.security.clone()), (3, Ok(2)));
        assert_eq!(p.pending[0].name, "KB5037765");
        let empty = parse_wu_pending_json(r#"{"ResultCode":2,"Updates":[]}"#).unwrap();
        assert!(empty.is_empty());
        // A failed search (orcFailed = 4) is not "0 pending".
        assert!(parse_wu_pending_json(r#"{"ResultCode":4,"Updates":[]}"#).is_err());
        assert!(parse_wu_pending_json("[]").is_err());
        assert!(parse_wu_pending_json("").is_err());
    }

    // ---- findings ----

    fn pending_fixture() -> Outcome<PendingUpdates> {
        pending_from_apt(Ok(out("apt-get -s upgrade", Some(0), DEB12_APT, "")))
    }

    #[test]
    fn findings_from_the_debian_fixture() {
        let now = at("2026-11-22T12:00:00Z");
        let last = Ok(LastUpdate {
            when: LastPatch::At(at("2026-09-22T04:51:17Z")),
            evidence: "dpkg.log".into(),
        });
        let reboot = Ok(reboot_from_flag_file(
            "/var/run/reboot-required",
            false,
            None,
        ));
        let f = findings(&pending_fixture(), &reboot, &last, now);

        let p = find(&f, CHECK_PENDING);
        assert_eq!(p.status, CheckStatus::Warning as i32);
        assert_eq!(p.value, "132 pending (81 security)");
        assert_eq!(p.threshold, "0 pending");
        assert!(p.evidence.contains("apt-get"));
        let s = find(&f, CHECK_SECURITY);
        assert_eq!(s.status, CheckStatus::Critical as i32);
        assert_eq!(s.value, "81 security");
        assert!(s.evidence.contains("(+71 more)"), "{}", s.evidence);
        let r = find(&f, CHECK_REBOOT);
        assert_eq!(r.status, CheckStatus::Ok as i32);
        let a = find(&f, CHECK_LAST_UPDATE);
        assert_eq!(a.status, CheckStatus::Warning as i32);
        assert!(a.value.starts_with("61 days"), "{}", a.value);
        assert_eq!(metric_value(&f, METRIC_PENDING), Some(132.0));
        assert_eq!(metric_value(&f, METRIC_SECURITY), Some(81.0));
        let age = metric_value(&f, METRIC_LAST_UPDATE_AGE).unwrap();
        assert_eq!(age, (now - at("2026-09-22T04:51:17Z")).num_seconds() as f64);
        for c in &f.checks {
            assert!(!c.title.is_empty());
            assert!(!c.evidence.is_empty() || !c.reason.is_empty());
        }
    }

    #[test]
    fn findings_ok_and_unknown_paths() {
        let now = at("2026-11-22T12:00:00Z");
        let clean = Ok(PendingUpdates {
            manager: "apt".into(),
            pending: vec![],
            security: Ok(0),
            evidence: "apt-get exited 0".into(),
        });
        let reboot = Ok(RebootState {
            required: true,
            evidence: "flag".into(),
        });
        let fresh = Ok(LastUpdate {
            when: LastPatch::At(at("2026-11-20T00:00:00Z")),
            evidence: "x".into(),
        });
        let f = findings(&clean, &reboot, &fresh, now);
        assert_eq!(find(&f, CHECK_PENDING).status, CheckStatus::Ok as i32);
        assert_eq!(find(&f, CHECK_PENDING).value, "0 pending (0 security)");
        assert_eq!(find(&f, CHECK_SECURITY).status, CheckStatus::Ok as i32);
        assert_eq!(find(&f, CHECK_REBOOT).status, CheckStatus::Warning as i32);
        assert_eq!(find(&f, CHECK_LAST_UPDATE).status, CheckStatus::Ok as i32);

        // Could not run: unknown, with the reason, and no metrics.
        let missing = Err(NotRun::new("no supported package manager found", "PATH"));
        let f = findings(
            &missing,
            &Err(NotRun::new("r", "")),
            &Err(NotRun::new("l", "")),
            now,
        );
        assert_eq!(f.checks.len(), 4);
        for c in &f.checks {
            assert_eq!(c.status, CheckStatus::Unknown as i32, "{}", c.check_id);
            assert!(!c.reason.is_empty());
            assert!(c.value.is_empty());
        }
        assert!(f.metrics.is_empty());

        // Security unknown but pending known.
        let partial = Ok(PendingUpdates {
            manager: "dnf".into(),
            pending: vec![Pkg {
                name: "a".into(),
                ..Pkg::default()
            }],
            security: Err("updateinfo failed".into()),
            evidence: "dnf".into(),
        });
        let f = findings(&partial, &reboot, &fresh, now);
        assert_eq!(
            find(&f, CHECK_PENDING).value,
            "1 pending (security unknown)"
        );
        assert_eq!(find(&f, CHECK_SECURITY).status, CheckStatus::Unknown as i32);
        assert_eq!(metric_value(&f, METRIC_SECURITY), None);
        assert_eq!(metric_value(&f, METRIC_PENDING), Some(1.0));

        // No upgrade in logs spanning > 30 days proves the warning; a short
        // span proves nothing.
        let none_long = Ok(LastUpdate {
            when: LastPatch::NoneSince(at("2026-09-01T00:00:00Z")),
            evidence: "x".into(),
        });
        let f = findings(&clean, &reboot, &none_long, now);
        let c = find(&f, CHECK_LAST_UPDATE);
        assert_eq!(c.status, CheckStatus::Warning as i32);
        assert!(c.value.starts_with("more than 82 days"), "{}", c.value);
        assert_eq!(metric_value(&f, METRIC_LAST_UPDATE_AGE), None);
        let none_short = Ok(LastUpdate {
            when: LastPatch::NoneSince(at("2026-11-10T00:00:00Z")),
            evidence: "x".into(),
        });
        let f = findings(&clean, &reboot, &none_short, now);
        assert_eq!(
            find(&f, CHECK_LAST_UPDATE).status,
            CheckStatus::Unknown as i32
        );

        // Future timestamps (clock skew) clamp to 0 days.
        let future = Ok(LastUpdate {
            when: LastPatch::At(at("2027-01-01T00:00:00Z")),
            evidence: "x".into(),
        });
        let f = findings(&clean, &reboot, &future, now);
        assert_eq!(metric_value(&f, METRIC_LAST_UPDATE_AGE), Some(0.0));
    }

    // ---- robustness ----

    fn all_parsers(s: &str) {
        let _ = parse_apt_simulate(s);
        let _ = apt_line_is_security(s);
        let _ = parse_check_apt_line(s);
        let _ = parse_check_update(s);
        let _ = parse_updateinfo_security(s);
        let _ = parse_zypper_xml_updates(s);
        let _ = parse_zypper_updates_table(s);
        let _ = parse_zypper_patches(s);
        let _ = parse_reboot_required_pkgs(s);
        let _ = parse_apt_history(s);
        let _ = parse_dpkg_log(s);
        let _ = parse_rpm_installtimes(s);
        let _ = parse_windows_date(s);
        let _ = parse_hotfix_table(s);
        let _ = parse_wmic_qfe_list(s);
        let _ = parse_hotfix_json(s);
        let _ = parse_wu_pending_json(s);
    }

    #[test]
    fn parsers_never_panic() {
        let qfe = decode_utf16le(QFE_XP_UTF16);
        let fixtures = [
            DEB12_APT,
            DEB12_CHECK_APT,
            DEB12_APT_LIST,
            DEB12_HISTORY,
            DEB12_DPKG_LOG,
            MP_DEBIAN6_NONE,
            MP_DEBIAN6_SEC,
            MP_UBUNTU1204,
            OSC_DEBIAN12,
            OSC_UBUNTU2404,
            YUM_CENTOS7,
            YUM_RHEL7,
            DNF_OL8,
            DNF_ROCKY8,
            ZYP_PATCHES,
            ZYP_UPD15,
            ZYP_UPD12,
            ZYP_XML,
            HOTFIX_TABLE,
            &qfe,
            UPDATEINFO_CONSTRUCTED,
            WU_CONSTRUCTED,
        ];
        for text in fixtures {
            // Truncations at many points, including mid-line and mid-char.
            let step = (text.len() / 200).max(1);
            for cut in (0..=text.len()).step_by(step) {
                if text.is_char_boundary(cut) {
                    all_parsers(&text[..cut]);
                    all_parsers(&text[cut..]);
                }
            }
        }
        let garbage = [
            "",
            "\n",
            "\r\n\r\n",
            "\0\0\0",
            "Inst",
            "Inst ",
            "Inst x [",
            "Inst x (",
            "Inst x [1",
            "Inst x [1] (",
            "Inst ((((((",
            "Inst a (b Ubuntu:",
            "Inst a (b Ubuntu:x/",
            "Inst a (b Ubuntu:x/y-",
            "APT",
            "APT OK: 1 packages a b c (x critical",
            "Obsoleting Packages\n    a.b",
            "a.b\n",
            "a.b\n  1",
            "|",
            "||||\n---+---\n|a|",
            "Name | Category | Status\n---\nx",
            "<update",
            "<update a=\"",
            "<update a='b",
            "<update-status><update x=\"1\"",
            "<update-status></update-status><update ",
            "<update-status></update-status><update a=\"&amp;\" b = 'c' d e=f/>",
            "Start-Date:",
            "Start-Date: 2024-13-45  99:99:99\nUpgrade:",
            "9999-99-99 99:99:99 upgrade",
            "-1\n0\n99999999999999999999",
            "HotFixID\n",
            "HotFixID\n--------\nKB1",
            "Source Description HotFixID\n------ ----------- --------\n\u{00e9}\u{00e9}\u{00e9}",
            "=\n=\n\n=",
            "HotFixID=File 1\nServicePackInEffect=KB",
            "{",
            "[",
            "null",
            "{\"ResultCode\":2}",
            "{\"ResultCode\":2,\"Updates\":{\"Title\":1}}",
            "ffffffffffffffff",
            "0/0/0",
            "1/1/-1",
            "Ünïcödé 中文 \u{202e}",
            "12/31/99999999999",
        ];
        for g in garbage {
            all_parsers(g);
            all_parsers(&g.repeat(3));
        }
        // Pseudo-random bytes (deterministic LCG) decoded lossily.
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        for _ in 0..300 {
            let bytes: Vec<u8> = (0..64)
                .map(|_| {
                    x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
                    // Bias towards the characters the parsers care about.
                    let alphabet = b"Inst ()[]|/-:.<>=\"' \nKB0123456789abcdef\xff";
                    alphabet[(x >> 33) as usize % alphabet.len()]
                })
                .collect();
            all_parsers(&String::from_utf8_lossy(&bytes));
        }
    }

    // ---- real tools on this machine ----

    /// Runs our apt collection and the real monitoring-plugins `check_apt`
    /// on this host and requires equal counts. Deliberately FAILS (never
    /// skips) when apt-get or check_apt is missing: CI installs
    /// `monitoring-plugins-basic`.
    #[cfg(target_os = "linux")]
    #[test]
    fn apt_counts_agree_with_check_apt_here() {
        const CHECK_APT: &str = "/usr/lib/nagios/plugins/check_apt";
        assert!(
            crate::exec::find_program(CHECK_APT).is_some(),
            "{CHECK_APT} is missing: install monitoring-plugins-basic (this test must not skip)"
        );
        let ours = || {
            let run = crate::exec::Cmd::new("apt-get", &APT_ARGS)
                .timeout(Duration::from_secs(120))
                .run();
            pending_from_apt(run).expect("apt-get -s upgrade must run on this host")
        };
        let theirs = || {
            let out = crate::exec::Cmd::new(CHECK_APT, &[])
                .timeout(Duration::from_secs(120))
                .run()
                .expect("check_apt runs");
            parse_check_apt_line(&out.stdout)
                .unwrap_or_else(|| panic!("unparsable check_apt output: {out:?}"))
        };
        // Retry once in case apt's lists changed between the two runs.
        let mut result = None;
        for _ in 0..2 {
            let (a, c) = (ours(), theirs());
            let pair = (
                (a.pending.len(), a.security.clone().unwrap()),
                (c.available, c.critical),
            );
            if pair.0 == pair.1 {
                return;
            }
            result = Some(pair);
        }
        let (ours, theirs) = result.unwrap();
        panic!("apt-get -s (ours) {ours:?} != check_apt {theirs:?}");
    }

    /// Feeds every apt fixture to the real `check_apt --input-file` and
    /// requires our parser to count the same. Fails when check_apt is
    /// missing, like the test above.
    #[cfg(target_os = "linux")]
    #[test]
    fn apt_fixture_counts_agree_with_real_check_apt_input_file() {
        const CHECK_APT: &str = "/usr/lib/nagios/plugins/check_apt";
        assert!(
            crate::exec::find_program(CHECK_APT).is_some(),
            "{CHECK_APT} is missing: install monitoring-plugins-basic (this test must not skip)"
        );
        let dir = tempfile::tempdir().unwrap();
        for (i, text) in [
            MP_DEBIAN6_NONE,
            MP_DEBIAN6_SEC,
            MP_UBUNTU1204,
            OSC_DEBIAN12,
            OSC_UBUNTU2404,
            DEB12_APT,
        ]
        .into_iter()
        .enumerate()
        {
            let path = dir.path().join(format!("apt-{i}.txt"));
            std::fs::write(&path, text).unwrap();
            let arg = format!("--input-file={}", path.display());
            let out = crate::exec::Cmd::new(CHECK_APT, &[&arg]).run().unwrap();
            let c = parse_check_apt_line(&out.stdout).unwrap();
            let ours = parse_apt_simulate(text);
            assert_eq!(
                (ours.pending.len(), ours.security),
                (c.available, c.critical),
                "fixture {i}"
            );
        }
    }
}
