//! Linux software RAID (md) state from `/proc/mdstat`: arrays, members,
//! sync status and rebuild progress, judged per array.

use xunjian_proto::CheckStatus;

use super::{Findings, check, metric, unknown};

/// Where the kernel publishes md state. Absent when the md driver is not
/// loaded, which simply means this host has no software RAID.
pub const MDSTAT_PATH: &str = "/proc/mdstat";

/// One md array as `/proc/mdstat` describes it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MdArray {
    /// e.g. "md0".
    pub name: String,
    /// "active" (true) or "inactive" (false).
    pub active: bool,
    /// "read-only" or "auto-read-only" when the header says so.
    pub read_only: Option<String>,
    /// e.g. "raid1", "linear"; inactive arrays often show none.
    pub level: Option<String>,
    pub members: Vec<MdMember>,
    /// Size in 1 KiB blocks.
    pub blocks: Option<u64>,
    /// The text after "super", e.g. "1.2", "external:imsm".
    pub superblock: Option<String>,
    /// `n` of `[n/m]`: devices the array is configured with.
    pub raid_disks: Option<u32>,
    /// `m` of `[n/m]`: devices currently in sync.
    pub in_sync: Option<u32>,
    /// The `[UU_]` map: `U` in sync, `_` missing or out of sync.
    pub status_map: Option<String>,
    /// A running or queued resync/recovery/reshape/check/repair.
    pub sync: Option<SyncState>,
}

/// One member device of an array.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MdMember {
    /// e.g. "sda1".
    pub name: String,
    /// The role number in brackets.
    pub slot: Option<u32>,
    /// `(F)`: faulty.
    pub failed: bool,
    /// `(S)`: spare.
    pub spare: bool,
    /// `(W)`: write-mostly.
    pub write_mostly: bool,
    /// `(J)`: journal device.
    pub journal: bool,
    /// `(R)`: replacement being built.
    pub replacement: bool,
}

/// A resync-type operation on an array.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SyncState {
    /// "recovery", "resync", "reshape", "check" or "repair".
    pub action: String,
    /// Progress when running, e.g. 12.6.
    pub percent: Option<f64>,
    /// Queued rather than running: "DELAYED" or "PENDING".
    pub queued: Option<String>,
    /// e.g. "127.5min".
    pub finish: Option<String>,
    /// e.g. "33440K/sec".
    pub speed: Option<String>,
}

const SYNC_ACTIONS: &[&str] = &["recovery", "resync", "reshape", "check", "repair"];

/// Parses `/proc/mdstat`. Lines it does not understand are skipped, so a
/// truncated or odd file gives the arrays it could read, never a panic.
pub fn parse(text: &str) -> Vec<MdArray> {
    let mut arrays: Vec<MdArray> = Vec::new();
    for line in text.lines() {
        if let Some(array) = parse_header(line) {
            arrays.push(array);
            continue;
        }
        // Detail lines are indented; a non-indented line ends the array
        // ("unused devices", "Personalities", blank lines are harmless).
        if !line.starts_with([' ', '\t']) {
            continue;
        }
        if let Some(current) = arrays.last_mut() {
            parse_detail(current, line);
        }
    }
    arrays
}

fn parse_header(line: &str) -> Option<MdArray> {
    if line.starts_with([' ', '\t']) {
        return None;
    }
    let mut tokens = line.split_whitespace();
    let name = tokens.next()?;
    if tokens.next()? != ":" {
        return None;
    }
    let active = match tokens.next()? {
        "active" => true,
        "inactive" => false,
        // "Personalities :" and anything else that is not an array.
        _ => return None,
    };
    let mut array = MdArray {
        name: name.to_owned(),
        active,
        ..MdArray::default()
    };
    for token in tokens {
        if let Some(inner) = token.strip_prefix('(').and_then(|t| t.strip_suffix(')')) {
            array.read_only = Some(inner.to_owned());
        } else if token.contains('[') {
            array.members.push(parse_member(token));
        } else if array.level.is_none() && array.members.is_empty() {
            array.level = Some(token.to_owned());
        }
    }
    Some(array)
}

fn parse_member(token: &str) -> MdMember {
    let (name, rest) = token.split_once('[').unwrap_or((token, ""));
    let (slot, flags) = rest.split_once(']').unwrap_or((rest, ""));
    MdMember {
        name: name.to_owned(),
        slot: slot.parse().ok(),
        failed: flags.contains("(F)"),
        spare: flags.contains("(S)"),
        write_mostly: flags.contains("(W)"),
        journal: flags.contains("(J)"),
        replacement: flags.contains("(R)"),
    }
}

fn parse_detail(array: &mut MdArray, line: &str) {
    let trimmed = line.trim();
    if trimmed.starts_with("bitmap:") {
        return;
    }
    if let Some(sync) = parse_sync(trimmed) {
        array.sync = Some(sync);
        return;
    }
    let tokens: Vec<&str> = trimmed.split_whitespace().collect();
    if tokens.get(1) == Some(&"blocks") {
        array.blocks = tokens.first().and_then(|t| t.parse().ok());
    }
    for (i, token) in tokens.iter().enumerate() {
        if *token == "super" {
            array.superblock = tokens.get(i + 1).map(|s| (*s).to_owned());
        }
        let Some(inner) = token.strip_prefix('[').and_then(|t| t.strip_suffix(']')) else {
            continue;
        };
        if let Some((n, m)) = inner.split_once('/') {
            if let (Ok(n), Ok(m)) = (n.parse(), m.parse()) {
                array.raid_disks = Some(n);
                array.in_sync = Some(m);
            }
        } else if !inner.is_empty() && inner.chars().all(|c| c == 'U' || c == '_') {
            array.status_map = Some(inner.to_owned());
        }
    }
}

/// `[==>...]  recovery = 12.6% (a/b) finish=127.5min speed=33440K/sec`,
/// or `resync=DELAYED` / `resync=PENDING`.
fn parse_sync(line: &str) -> Option<SyncState> {
    let (pos, action) = SYNC_ACTIONS
        .iter()
        .filter_map(|action| {
            line.match_indices(action)
                .find(|(i, _)| line[i + action.len()..].trim_start().starts_with('='))
                .map(|(i, _)| (i, *action))
        })
        .min_by_key(|(i, _)| *i)?;
    let after = line[pos + action.len()..].trim_start();
    let after = after.strip_prefix('=').unwrap_or(after).trim_start();
    let first = after.split_whitespace().next().unwrap_or("");
    let mut state = SyncState {
        action: action.to_owned(),
        ..SyncState::default()
    };
    if let Some(p) = first.strip_suffix('%') {
        state.percent = p.parse::<f64>().ok().filter(|p| p.is_finite());
    } else if !first.is_empty() {
        state.queued = Some(first.to_owned());
    }
    for token in after.split_whitespace() {
        if let Some(v) = token.strip_prefix("finish=") {
            state.finish = Some(v.to_owned());
        } else if let Some(v) = token.strip_prefix("speed=") {
            state.speed = Some(v.to_owned());
        }
    }
    Some(state)
}

impl MdArray {
    /// An IMSM/DDF metadata container (`super external:imsm`). Containers
    /// are always listed as inactive and hold only spares; the real arrays
    /// built from them (`super external:/md127/0`) are listed separately.
    /// Flagging them would raise a false alarm on every firmware-RAID host.
    pub fn is_container(&self) -> bool {
        self.superblock
            .as_deref()
            .and_then(|s| s.strip_prefix("external:"))
            .is_some_and(|kind| !kind.starts_with('/') && !kind.starts_with('-'))
    }

    /// Why the array lacks redundancy or is not running; empty when fine.
    pub fn degraded_reasons(&self) -> Vec<String> {
        let mut reasons = Vec::new();
        if !self.active && !self.is_container() {
            reasons.push("array is inactive".to_owned());
        }
        let failed: Vec<&str> = self
            .members
            .iter()
            .filter(|m| m.failed)
            .map(|m| m.name.as_str())
            .collect();
        if !failed.is_empty() {
            reasons.push(format!("failed member(s): {}", failed.join(", ")));
        }
        if let (Some(n), Some(m)) = (self.raid_disks, self.in_sync) {
            if m < n {
                reasons.push(format!("{m} of {n} devices in sync"));
            }
        } else if self.status_map.as_deref().is_some_and(|s| s.contains('_')) {
            reasons.push("a device is missing".to_owned());
        }
        reasons
    }

    pub fn is_degraded(&self) -> bool {
        !self.degraded_reasons().is_empty()
    }

    /// A short description for people: "active raid1 [2/2] [UU]".
    pub fn summary(&self) -> String {
        let mut parts = vec![if self.active { "active" } else { "inactive" }.to_owned()];
        if let Some(ro) = &self.read_only {
            parts.push(format!("({ro})"));
        }
        if let Some(level) = &self.level {
            parts.push(level.clone());
        }
        if self.is_container() {
            parts.push("container".to_owned());
        }
        if let (Some(n), Some(m)) = (self.raid_disks, self.in_sync) {
            parts.push(format!("[{n}/{m}]"));
        }
        if let Some(map) = &self.status_map {
            parts.push(format!("[{map}]"));
        }
        parts.join(" ")
    }
}

impl SyncState {
    fn describe(&self) -> String {
        match (&self.percent, &self.queued) {
            (Some(p), _) => {
                let mut s = format!("{} {p:.1}%", self.action);
                if let Some(f) = &self.finish {
                    s.push_str(&format!(", finish in {f}"));
                }
                s
            }
            (None, Some(q)) => format!("{} {}", self.action, q.to_lowercase()),
            (None, None) => format!("{} running", self.action),
        }
    }
}

const CHECK_TITLE: &str = "Software RAID array state";
const THRESHOLD: &str =
    "active, all devices in sync ([n/n]), no failed (F) member, no resync/recovery/reshape";

/// Check and metrics for parsed arrays. No arrays, no checks: a host
/// without software RAID is normal, not unknown.
pub fn findings_for(arrays: &[MdArray], evidence: &str) -> Findings {
    let mut out = Findings::default();
    for array in arrays {
        let id = format!("disk.raid.state:{}", array.name);
        let reasons = array.degraded_reasons();
        let mut notes = reasons.clone();
        let mut status = if reasons.is_empty() {
            CheckStatus::Ok
        } else {
            CheckStatus::Critical
        };
        if let Some(sync) = &array.sync {
            notes.push(sync.describe());
            // A check is the routine scrub (Debian's monthly checkarray): the
            // array keeps full redundancy meanwhile. The others mean data is
            // being rebuilt or rewritten and redundancy is not yet assured.
            if sync.action != "check" && status == CheckStatus::Ok {
                status = CheckStatus::Warning;
            }
        }
        let mut value = array.summary();
        if !notes.is_empty() {
            value = format!("{value}: {}", notes.join("; "));
        }
        out.checks
            .push(check(&id, CHECK_TITLE, status, value, THRESHOLD, evidence));

        let level = array.level.as_deref().unwrap_or("");
        let labels = [("array", array.name.as_str()), ("level", level)];
        let degraded = if reasons.is_empty() { 0.0 } else { 1.0 };
        out.metrics
            .push(metric("disk.raid.degraded", degraded, &labels));
        if let Some(sync) = &array.sync
            && let Some(p) = sync.percent
        {
            let labels = [
                ("array", array.name.as_str()),
                ("level", level),
                ("action", sync.action.as_str()),
            ];
            out.metrics.push(metric("disk.raid.sync_pct", p, &labels));
        }
    }
    out
}

/// Reads `/proc/mdstat` and judges every array. Blocking.
pub fn collect() -> Findings {
    collect_from(std::path::Path::new(MDSTAT_PATH))
}

fn collect_from(path: &std::path::Path) -> Findings {
    match std::fs::read_to_string(path) {
        Ok(text) => findings_for(&parse(&text), &format!("read {}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Findings::default(),
        Err(e) => {
            let mut out = Findings::default();
            out.checks.push(unknown(
                "disk.raid.state",
                CHECK_TITLE,
                format!("cannot read {}: {e}", path.display()),
                format!("read {}", path.display()),
            ));
            out
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EMPTY: &str =
        include_str!("../../testdata/mdstat/pymdstat_mdstat.01_empty-no-arrays.txt");
    const HEALTHY: &str =
        include_str!("../../testdata/mdstat/pymdstat_mdstat.04_healthy-raid1x3-raid5-10disk.txt");
    const RECOVERY: &str =
        include_str!("../../testdata/mdstat/pymdstat_mdstat.05_raid5-degraded-recovery.txt");
    const FAILED: &str =
        include_str!("../../testdata/mdstat/pymdstat_mdstat.07_raid1-failed-member-degraded.txt");
    const INACTIVE: &str =
        include_str!("../../testdata/mdstat/pymdstat_mdstat.09_inactive-all-spares.txt");
    const NVME: &str = include_str!(
        "../../testdata/mdstat/pymdstat_mdstat.10_raid0-nvme-raid1-bitmap-healthy.txt"
    );
    const RESHAPE: &str = include_str!(
        "../../testdata/mdstat/pymdstat_mdstat.13_raid4-reshape-degraded-loopdevs.txt"
    );
    const NO_UNUSED: &str = include_str!(
        "../../testdata/mdstat/pymdstat_mdstat.16_raid5-8disk-bitmap-no-unused-line.txt"
    );
    const ABSENT_NOTE: &str =
        include_str!("../../testdata/mdstat/debian12-this-image_proc-mdstat-ABSENT.txt");
    const COMPOSITE: &str =
        include_str!("../../testdata/mdstat/node_exporter_composite-many-states.txt");

    const ALL: &[&str] = &[
        EMPTY, HEALTHY, RECOVERY, FAILED, INACTIVE, NVME, RESHAPE, NO_UNUSED, COMPOSITE,
    ];

    fn statuses(text: &str) -> Vec<(String, CheckStatus)> {
        findings_for(&parse(text), "test")
            .checks
            .iter()
            .map(|c| (c.check_id.clone(), c.status()))
            .collect()
    }

    fn status_of(text: &str, md: &str) -> CheckStatus {
        let id = format!("disk.raid.state:{md}");
        statuses(text)
            .into_iter()
            .find(|(i, _)| *i == id)
            .map(|(_, s)| s)
            .unwrap_or_else(|| panic!("no check {id}"))
    }

    fn array<'a>(arrays: &'a [MdArray], name: &str) -> &'a MdArray {
        arrays.iter().find(|a| a.name == name).unwrap()
    }

    #[test]
    fn empty_personalities_gives_no_arrays_and_no_checks() {
        assert!(parse(EMPTY).is_empty());
        assert_eq!(findings_for(&parse(EMPTY), "x"), Findings::default());
    }

    #[test]
    fn absent_file_gives_no_checks_and_no_error() {
        // This machine image has no md driver, so no /proc/mdstat.
        assert!(ABSENT_NOTE.contains("No such file or directory"));
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(
            collect_from(&dir.path().join("mdstat")),
            Findings::default()
        );
    }

    #[test]
    fn unreadable_path_is_unknown_with_reason() {
        // A directory cannot be read as a file: an error other than absence.
        let dir = tempfile::tempdir().unwrap();
        let f = collect_from(dir.path());
        assert_eq!(f.checks.len(), 1);
        assert_eq!(f.checks[0].status(), CheckStatus::Unknown);
        assert!(f.checks[0].reason.contains("cannot read"));
    }

    #[test]
    fn healthy_raid1_and_raid5_are_ok() {
        let arrays = parse(HEALTHY);
        let names: Vec<&str> = arrays.iter().map(|a| a.name.as_str()).collect();
        assert_eq!(names, ["md1", "md2", "md3", "md0"]);
        let md3 = array(&arrays, "md3");
        assert_eq!(md3.level.as_deref(), Some("raid5"));
        assert_eq!(md3.members.len(), 10);
        assert_eq!((md3.raid_disks, md3.in_sync), (Some(10), Some(10)));
        assert_eq!(md3.status_map.as_deref(), Some("UUUUUUUUUU"));
        assert_eq!(md3.blocks, Some(1318680576));
        assert!(statuses(HEALTHY).iter().all(|(_, s)| *s == CheckStatus::Ok));
        let f = findings_for(&arrays, "x");
        assert!(
            f.metrics
                .iter()
                .all(|m| m.name == "disk.raid.degraded" && m.value == 0.0)
        );
        assert_eq!(f.metrics.len(), 4);
    }

    #[test]
    fn degraded_raid5_rebuilding_is_critical_with_progress() {
        let arrays = parse(RECOVERY);
        let md = array(&arrays, "md127");
        let sync = md.sync.as_ref().unwrap();
        assert_eq!(sync.action, "recovery");
        assert_eq!(sync.percent, Some(12.6));
        assert_eq!(sync.finish.as_deref(), Some("127.5min"));
        assert_eq!(sync.speed.as_deref(), Some("33440K/sec"));
        let f = findings_for(&arrays, "x");
        let c = &f.checks[0];
        assert_eq!(c.status(), CheckStatus::Critical);
        assert!(c.value.contains("5 of 6 devices in sync"), "{}", c.value);
        assert!(c.value.contains("recovery 12.6%"), "{}", c.value);
        let pct = f
            .metrics
            .iter()
            .find(|m| m.name == "disk.raid.sync_pct")
            .unwrap();
        assert!((pct.value - 12.6).abs() < 1e-9);
        let degraded = f
            .metrics
            .iter()
            .find(|m| m.name == "disk.raid.degraded")
            .unwrap();
        assert_eq!(degraded.value, 1.0);
    }

    #[test]
    fn failed_member_is_critical() {
        let arrays = parse(FAILED);
        let md = array(&arrays, "md1");
        assert!(
            md.members
                .iter()
                .any(|m| m.name == "sde1" && m.failed && m.slot == Some(6))
        );
        assert_eq!(md.status_map.as_deref(), Some("_UUUU_"));
        let c = &findings_for(&arrays, "x").checks[0];
        assert_eq!(c.status(), CheckStatus::Critical);
        assert!(c.value.contains("failed member(s): sde1"), "{}", c.value);
    }

    #[test]
    fn inactive_array_of_spares_is_critical() {
        let arrays = parse(INACTIVE);
        let md2 = array(&arrays, "md2");
        assert!(!md2.active);
        assert_eq!(md2.level, None);
        assert_eq!(md2.members.len(), 4);
        assert!(md2.members.iter().all(|m| m.spare));
        assert_eq!(status_of(INACTIVE, "md2"), CheckStatus::Critical);
        assert_eq!(status_of(INACTIVE, "md0"), CheckStatus::Ok);
        assert_eq!(status_of(INACTIVE, "md1"), CheckStatus::Ok);
    }

    #[test]
    fn raid0_on_nvme_and_bitmap_lines_are_ok() {
        let arrays = parse(NVME);
        assert_eq!(arrays.len(), 4);
        let md126 = array(&arrays, "md126");
        assert_eq!(md126.level.as_deref(), Some("raid0"));
        assert_eq!(md126.members[1].name, "nvme1n1");
        assert_eq!(md126.raid_disks, None);
        assert_eq!(array(&arrays, "md128").superblock.as_deref(), Some("1.2"));
        assert!(statuses(NVME).iter().all(|(_, s)| *s == CheckStatus::Ok));
    }

    #[test]
    fn reshape_on_degraded_raid4_is_critical() {
        let arrays = parse(RESHAPE);
        let md = array(&arrays, "md127");
        assert_eq!(md.sync.as_ref().unwrap().action, "reshape");
        assert_eq!(md.sync.as_ref().unwrap().percent, Some(2.1));
        assert_eq!(status_of(RESHAPE, "md127"), CheckStatus::Critical);
    }

    #[test]
    fn file_without_unused_devices_line_still_parses() {
        let arrays = parse(NO_UNUSED);
        assert_eq!(arrays.len(), 1);
        assert_eq!(arrays[0].members.len(), 8);
        assert_eq!(arrays[0].blocks, Some(95705752576));
        assert_eq!(status_of(NO_UNUSED, "md1"), CheckStatus::Ok);
    }

    #[test]
    fn composite_states_are_judged() {
        use CheckStatus::*;
        let expected = [
            ("md3", Ok),        // raid6 8/8 with spares
            ("md127", Ok),      // raid1 2/2
            ("md0", Ok),        // raid1 2/2
            ("md4", Critical),  // inactive, failed member
            ("md6", Critical),  // [2/1] recovering, failed member
            ("md8", Warning),   // resync 8.5% on a complete array
            ("md201", Ok),      // check (scrub) 5.7%
            ("md7", Critical),  // raid6 [4/3], failed member
            ("md9", Critical),  // failed members still listed
            ("md10", Ok),       // raid0
            ("md11", Critical), // failed member, resync pending
            ("md12", Ok),
            ("md126", Ok), // array inside an IMSM container
            ("md219", Ok), // the IMSM container itself
            ("md00", Ok),
            ("md120", Ok), // linear
            ("md101", Ok), // read-only raid0
        ];
        let got = statuses(COMPOSITE);
        let want: Vec<(String, CheckStatus)> = expected
            .iter()
            .map(|(n, s)| (format!("disk.raid.state:{n}"), *s))
            .collect();
        assert_eq!(got, want);

        let arrays = parse(COMPOSITE);
        let md11 = array(&arrays, "md11");
        assert_eq!(md11.read_only.as_deref(), Some("auto-read-only"));
        assert_eq!(md11.level.as_deref(), Some("raid1"));
        let sync = md11.sync.as_ref().unwrap();
        assert_eq!(
            (sync.action.as_str(), sync.queued.as_deref()),
            ("resync", Some("PENDING"))
        );
        let md9 = array(&arrays, "md9");
        assert_eq!(
            md9.sync.as_ref().unwrap().queued.as_deref(),
            Some("DELAYED")
        );
        assert!(array(&arrays, "md219").is_container());
        assert!(!array(&arrays, "md126").is_container());
        assert_eq!(array(&arrays, "md120").level.as_deref(), Some("linear"));
        let md3 = array(&arrays, "md3");
        assert_eq!(md3.members.iter().filter(|m| m.spare).count(), 2);
    }

    #[test]
    fn every_fixture_gives_one_check_and_one_degraded_metric_per_array() {
        for text in ALL {
            let arrays = parse(text);
            let f = findings_for(&arrays, "x");
            assert_eq!(f.checks.len(), arrays.len());
            let degraded = f
                .metrics
                .iter()
                .filter(|m| m.name == "disk.raid.degraded")
                .count();
            assert_eq!(degraded, arrays.len());
            assert!(
                f.checks
                    .iter()
                    .all(|c| !c.evidence.is_empty() && !c.threshold.is_empty())
            );
        }
    }

    #[test]
    fn never_panics_on_truncated_or_garbage_input() {
        for text in ALL {
            // Cut at every char boundary: a capture can end anywhere.
            for (i, _) in text.char_indices() {
                let _ = findings_for(&parse(&text[..i]), "x");
            }
        }
        for garbage in [
            "",
            "\n\n",
            "md0 :",
            "md0 : active",
            "md0 : active raid1 [",
            "md0 : active raid1 sda[x](F",
            "md0 : active raid1 ]sda[",
            "      [2/] [U_] [/] [] []",
            "md0 : active raid1 sda[0]\n      [=>...] recovery =",
            "md0 : active raid1 sda[0]\n      recovery = NaN% resync=",
            "md0 : active raid1 sda[0]\n      99999999999999999999999 blocks super",
            "\u{0}\u{ffff} : ✓ active\n \t résync = 5%",
        ] {
            let _ = findings_for(&parse(garbage), "x");
        }
    }
}
