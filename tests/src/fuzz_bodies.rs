//! The bodies of the fuzz targets in `fuzz/`: each takes the bytes libFuzzer
//! made and feeds them to the code that reads one kind of untrusted input,
//! asserting what must hold for any input (no panic, bounded work, and the
//! invariants noted on each body). The `fuzz/` crate calls these from its
//! `fuzz_target!`s; `tests/fuzz_corpus.rs` replays every saved corpus and
//! crash file through them on stable Rust, so CI keeps what fuzzing found.

use std::path::Path;

use chrono::{DateTime, TimeZone, Utc};
use prost::Message;
use uuid::Uuid;
use xunjian_agent::collect::{
    self, Findings, antivirus, baseline, disks, hardware, mdstat, packages, patches, plugins,
    services, smart,
};
use xunjian_agent::exec::{ExecError, Output};
use xunjian_proto::{AgentMessage, Inventory, Report, agent_message, section};

/// A fuzz target body: takes any bytes, panics on a bug.
pub type Body = fn(&[u8]);

/// Every target: its name (the `fuzz/fuzz_targets/<name>.rs` file and the
/// `fuzz/corpus/<name>/` directory) and its body.
pub const TARGETS: &[(&str, Body)] = &[
    ("agent_message", agent_message),
    ("spool_recovery", spool_recovery),
    ("rules", rules),
    ("collector_config", collector_config),
    ("agent_config", agent_config),
    ("evidence_bundle", evidence_bundle),
    ("plugins", plugins),
    ("smart", smart),
    ("mdstat", mdstat),
    ("patches", patches),
    ("antivirus", antivirus),
    ("baseline", baseline),
    ("services", services),
    ("hardware", hardware),
    ("packages", packages),
    ("enrollment_csr", enrollment_csr),
];

/// The body of the target called `name`.
pub fn body(name: &str) -> Option<Body> {
    TARGETS.iter().find(|(n, _)| *n == name).map(|(_, f)| *f)
}

/// A fixed "now": the parsers take time as a parameter.
fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 1, 12, 0, 0)
        .single()
        .unwrap_or_default()
}

/// Up to `n` NUL-separated parts of the input (missing ones empty), for
/// parsers that read several outputs at once. Real fixtures hold no NUL, so
/// a fixture seed is all part 0.
fn parts(text: &str, n: usize) -> Vec<&str> {
    let mut out: Vec<&str> = text.splitn(n, '\0').collect();
    out.resize(n, "");
    out
}

fn output(code: Option<i32>, stdout: &str, stderr: &str) -> Output {
    Output {
        code,
        stdout: stdout.to_owned(),
        stderr: stderr.to_owned(),
        truncated: false,
        command: "fuzz".to_owned(),
    }
}

/// Exit codes worth trying on every captured output: success, the usual
/// failure, a plugin/tool-specific one, and death by a signal.
const EXIT_CODES: [Option<i32>; 4] = [Some(0), Some(1), Some(100), None];

/// What an agent collects from any tool output must pass the collector's
/// report checks: one refused report is refused again on every resend, and
/// the agent's spool delivers in order, so it would block every later one.
fn collector_accepts(what: &str, findings: &Findings) {
    let report = Report {
        sequence: 1,
        sections: collect::plan::sections(findings.clone()),
        ..Default::default()
    };
    if let Err(status) = xunjian_collector::ingest::validate_report(Uuid::nil(), &report, 0) {
        panic!(
            "the collector refuses what {what} produced: {}",
            status.message()
        );
    }
}

fn accepts_checks(what: &str, checks: Vec<xunjian_proto::CheckResult>) {
    collector_accepts(
        what,
        &Findings {
            metrics: Vec::new(),
            checks,
        },
    );
}

// ------------------------------------------------------------ collector side

/// One protobuf `AgentMessage` as the collector's stream reads it, then the
/// report checks, then the inventory diff an accepted report's inventory
/// goes through. Re-encoding is stable, and an inventory never differs from
/// itself.
pub fn agent_message(data: &[u8]) {
    let Ok(message) = AgentMessage::decode(data) else {
        return;
    };
    let encoded = message.encode_to_vec();
    let again =
        AgentMessage::decode(encoded.as_slice()).expect("a message prost encoded decodes again");
    assert_eq!(again.encode_to_vec(), encoded, "re-encoding is not stable");
    let Some(agent_message::Kind::Report(report)) = message.kind else {
        return;
    };
    let agent = Uuid::nil();
    if xunjian_collector::ingest::validate_report(agent, &report, 0).is_err() {
        return;
    }
    let empty = serde_json::to_value(Inventory::default()).unwrap_or_default();
    for s in &report.sections {
        if let Some(section::Kind::Inventory(inv)) = &s.kind {
            let Ok(json) = serde_json::to_value(inv) else {
                continue;
            };
            let changes = xunjian_collector::inventory_diff::diff(&json, &json);
            assert!(
                changes.is_empty(),
                "an inventory differs from itself: {changes:?}"
            );
            xunjian_collector::inventory_diff::diff(&empty, &json);
            xunjian_collector::inventory_diff::diff(&json, &empty);
        }
    }
}

/// A rules file. A file that parses renders every rule's threshold text.
pub fn rules(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(set) = xunjian_collector::rules::parse_rules("fuzz.toml", text) {
        for rule in set.rules() {
            let _ = rule.threshold_text();
            let _ = rule.title.source();
        }
    }
}

/// The agent every fuzzed CSR is signed for.
const FUZZ_AGENT: Uuid = Uuid::from_u128(0x0bad_c0de_0000_4000_8000_0000_0000_0001);

/// A CSR as an unauthenticated client sends it to `Enroll` (DER) →
/// `Pki::sign_agent`: whatever the CSR asks for (names, URIs, extensions),
/// a certificate the CA signs names exactly the agent it was signed for.
/// The same bytes also go to `agent_identity`, the peer-certificate reader.
pub fn enrollment_csr(data: &[u8]) {
    use xunjian_collector::pki::{Pki, agent_identity, pem_to_der};
    static PKI: std::sync::OnceLock<(tempfile::TempDir, Pki)> = std::sync::OnceLock::new();
    let (_dir, pki) = PKI.get_or_init(|| {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let pki = Pki::load_or_create(&dir.path().join("pki")).expect("a CA");
        (dir, pki)
    });
    if let Ok(signed) = pki.sign_agent(data, FUZZ_AGENT) {
        let der = pem_to_der(&signed.pem).expect("a signed certificate is PEM");
        assert_eq!(agent_identity(&der), Ok(FUZZ_AGENT));
    }
    let _ = agent_identity(data);
}

/// CSRs to start from: a plain one, and one asking for two agent URIs and
/// a DNS name (which the CA must not copy).
fn seed_csrs() -> Vec<(&'static str, String, Vec<u8>)> {
    let key = rcgen::KeyPair::generate().expect("a key");
    let plain = rcgen::CertificateParams::default();
    let mut greedy =
        rcgen::CertificateParams::new(vec!["collector.example".into()]).expect("params");
    for id in [FUZZ_AGENT, Uuid::from_u128(2)] {
        greedy.subject_alt_names.push(rcgen::SanType::URI(
            format!("{}{id}", xunjian_proto::AGENT_URI_PREFIX)
                .try_into()
                .expect("a URI"),
        ));
    }
    [("seed-plain", plain), ("seed-two-uris", greedy)]
        .into_iter()
        .map(|(name, params)| {
            let csr = params.serialize_request(&key).expect("a CSR");
            ("enrollment_csr", name.to_owned(), csr.der().to_vec())
        })
        .collect()
}

/// The collector's configuration file.
pub fn collector_config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let path = Path::new("collector.toml");
    if let Ok(config) = xunjian_collector::config::CollectorConfig::parse(path, text) {
        assert!(
            config.validate(path).is_ok(),
            "a parsed config fails validation"
        );
    }
}

/// The agent's configuration file, the collector URL and the enrollment
/// token (both typed by an operator).
pub fn agent_config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let path = Path::new("agent.toml");
    if let Ok(config) = xunjian_agent::config::AgentConfig::parse(path, text) {
        assert!(
            config.validate(path).is_ok(),
            "a parsed config fails validation"
        );
    }
    let _ = xunjian_agent::config::parse_collector_url(text);
    if let Ok(token) = xunjian_proto::token::parse(text) {
        let printed = xunjian_proto::token::format(&token.secret, &token.ca_sha256);
        assert_eq!(
            xunjian_proto::token::parse(&printed).ok(),
            Some(token),
            "a parsed token does not survive printing"
        );
    }
}

/// Scratch space for the targets that must go through files; tmpfs when
/// there is one, since the spool fsyncs.
fn scratch_dir() -> tempfile::TempDir {
    let shm = Path::new("/dev/shm");
    let made = if shm.is_dir() {
        tempfile::Builder::new().prefix("xj-fuzz").tempdir_in(shm)
    } else {
        tempfile::Builder::new().prefix("xj-fuzz").tempdir()
    };
    made.expect("a temporary directory can be made")
}

/// An evidence bundle directory, as `xunjian records verify` reads it. The
/// input is `path NUL contents NUL path NUL contents ...`; paths are
/// relative, `/`-separated, and made safe (no `..`, no absolute paths).
/// Verification may find problems but must not fail on readable files, and
/// it is `ok` only with no problem.
pub fn evidence_bundle(data: &[u8]) {
    let dir = scratch_dir();
    let mut fields = data.split(|b| *b == 0);
    let mut written = 0;
    while let (Some(name), Some(contents)) = (fields.next(), fields.next()) {
        if written == 32 {
            break;
        }
        let name = String::from_utf8_lossy(name);
        let clean: Vec<&str> = name
            .split('/')
            .filter(|p| !p.is_empty() && *p != "." && *p != "..")
            .collect();
        if clean.is_empty() || clean.len() > 4 {
            continue;
        }
        let path = clean
            .iter()
            .fold(dir.path().to_path_buf(), |p, part| p.join(part));
        if let Some(parent) = path.parent()
            && std::fs::create_dir_all(parent).is_err()
        {
            continue;
        }
        if path.is_dir() || std::fs::write(&path, contents).is_err() {
            continue;
        }
        written += 1;
    }
    let report = xunjian_collector::evidence::verify(dir.path(), None)
        .expect("a readable bundle directory always verifies to a report");
    assert_eq!(report.ok, report.problems.is_empty());
}

// ---------------------------------------------------------------- agent side

/// The agent's spool directory after arbitrary damage. The input is
/// `meta_len u16 LE, meta bytes` (0xFFFF: no meta file), then segments as
/// `first_seq u64 LE, len u32 LE, bytes`. Recovery must succeed, hand back
/// exactly the pending records in order, leave a directory that reopens
/// with nothing to repair, and keep working (append, ack).
pub fn spool_recovery(data: &[u8]) {
    use xunjian_agent::spool::{Recovery, Spool};
    const MAX_BYTES: u64 = 4 * 1024 * 1024;
    let dir = scratch_dir();
    let mut rest = data;
    let mut take = |n: usize| -> &[u8] {
        let (head, tail) = rest.split_at(n.min(rest.len()));
        rest = tail;
        head
    };
    let meta_len = take(2);
    let meta_len = match meta_len {
        [a, b] => u16::from_le_bytes([*a, *b]),
        _ => u16::MAX,
    };
    if meta_len != u16::MAX {
        let meta = take(usize::from(meta_len));
        std::fs::write(dir.path().join("spool.meta"), meta).expect("write meta");
    }
    for _ in 0..8 {
        let seq = take(8);
        let Ok(seq) = <[u8; 8]>::try_from(seq) else {
            break;
        };
        let len = take(4);
        let len = match len {
            [a, b, c, d] => u32::from_le_bytes([*a, *b, *c, *d]),
            _ => 0,
        };
        let bytes = take(len as usize);
        let name = format!("{:020}.seg", u64::from_le_bytes(seq));
        std::fs::write(dir.path().join(name), bytes).expect("write segment");
    }

    let (spool, _) = Spool::open(dir.path(), MAX_BYTES).expect("recovery never fails");
    let status = spool.status();
    assert!(status.acked_seq <= status.last_seq);
    let records = spool
        .read_after(0, usize::MAX)
        .expect("reading a recovered spool");
    assert_eq!(records.len() as u64, status.pending_reports);
    let mut prev = status.acked_seq;
    for (seq, _) in &records {
        assert!(*seq > prev, "records out of order or not above the ack");
        assert!(*seq <= status.last_seq);
        prev = *seq;
    }
    drop(spool);

    let (mut spool, recovery) = Spool::open(dir.path(), MAX_BYTES).expect("reopen");
    assert_eq!(
        recovery,
        Recovery::default(),
        "a repaired spool needs repair again"
    );
    assert_eq!(spool.status(), status, "reopening changed the spool");

    match spool.append(|_| b"after recovery".to_vec()) {
        Ok(seq) => {
            assert_eq!(seq, status.last_seq + 1);
            let tail = spool.read_after(seq - 1, 1).expect("read the new record");
            assert_eq!(tail, vec![(seq, b"after recovery".to_vec())]);
            spool.ack(seq).expect("ack everything");
            assert_eq!(spool.status().pending_reports, 0);
        }
        Err(_) => assert_eq!(status.last_seq, u64::MAX),
    }
}

/// Monitoring-Plugins output and performance data, judged as a custom
/// check with every exit code class.
pub fn plugins(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    for p in plugins::parse_perfdata(&text) {
        let _ = p.base_value();
        let _ = plugins::sanitize_label(&p.label);
    }
    let check = plugins::PluginCheck {
        id: "fuzz".into(),
        title: None,
        command: vec!["/bin/true".into()],
        interval: std::time::Duration::from_secs(60),
        timeout: std::time::Duration::from_secs(10),
    };
    for truncated in [false, true] {
        let _ = plugins::parse_output(&text, truncated);
        for code in [Some(0), Some(2), Some(3), Some(7), None] {
            let mut out = output(code, &text, "");
            out.truncated = truncated;
            collector_accepts(
                "plugins::findings_for",
                &plugins::findings_for(&check, &out),
            );
        }
    }
}

/// smartctl `--json` output of one device, and of `--scan`.
pub fn smart(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    if let Ok(device) = smart::parse_device(&text) {
        collector_accepts(
            "smart::findings_for",
            &smart::findings_for(&device, "smartctl"),
        );
    }
    for (name, kind) in smart::parse_scan(&text) {
        let _ = smart::check_id(&name, &kind);
    }
    if let Some(b) = data.first() {
        let _ = smart::exit_status_meanings(*b);
    }
}

/// `/proc/mdstat`.
pub fn mdstat(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let arrays = mdstat::parse(&text);
    for a in &arrays {
        let _ = a.summary();
        let _ = a.degraded_reasons();
    }
    collector_accepts(
        "mdstat::findings_for",
        &mdstat::findings_for(&arrays, "/proc/mdstat"),
    );
}

/// Package-manager and Windows Update output: apt, dnf/yum, zypper (XML
/// and tables), logs, hotfix lists. Part 1 (after a NUL) is the second
/// output of the tools that take two.
pub fn patches(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let p = parts(&text, 2);
    let (a, b) = (p[0], p[1]);
    let ok = |code| -> Result<Output, ExecError> { Ok(output(code, a, b)) };

    let _ = patches::parse_apt_simulate(a);
    let _ = patches::parse_check_apt_line(a);
    for line in a.lines() {
        let _ = patches::apt_line_is_security(line);
        let _ = patches::parse_windows_date(line);
    }
    let _ = patches::parse_check_update(a);
    let _ = patches::parse_updateinfo_security(a);
    let _ = patches::parse_zypper_xml(a);
    let _ = patches::parse_zypper_xml_updates(a);
    let _ = patches::parse_zypper_updates_table(a);
    let _ = patches::parse_zypper_patches(a);
    let _ = patches::parse_reboot_required_pkgs(a);
    let _ = patches::parse_rpm_installtimes(a);
    let _ = patches::parse_hotfix_table(a);
    let _ = patches::parse_wmic_qfe_list(a);
    let _ = patches::parse_wu_pending_json(a);
    let hotfixes = patches::parse_hotfix_json(a).unwrap_or_default();

    let history = patches::parse_apt_history(a);
    let dpkg = patches::parse_dpkg_log(b);
    let logs = [("history.log", history), ("dpkg.log", dpkg)];
    let last_logs = patches::last_update_from_logs(&logs, &[], |t| Some(Utc.from_utc_datetime(&t)));
    let reboot_flag = patches::reboot_from_flag_file("/run/reboot-required", true, Some(b));
    let last_hotfix = patches::last_update_from_hotfixes(&hotfixes, "Get-HotFix");
    let none_pending = || patches::PendingUpdates {
        manager: "apt".into(),
        pending: Vec::new(),
        security: Ok(0),
        evidence: "apt-get -s upgrade".into(),
    };
    collector_accepts(
        "patches (logs, flag file)",
        &patches::findings(
            &Ok(none_pending()),
            &Ok(reboot_flag.clone()),
            &last_logs,
            now(),
        ),
    );
    collector_accepts(
        "patches (hotfixes)",
        &patches::findings(&Ok(none_pending()), &Ok(reboot_flag), &last_hotfix, now()),
    );

    for code in EXIT_CODES {
        let pending = [
            patches::pending_from_apt(ok(code)),
            patches::pending_from_rpm_tools("dnf", ok(code), Ok(output(code, b, ""))),
            patches::pending_from_zypper(ok(code), Ok(output(code, b, ""))),
            patches::pending_from_wu(ok(code)),
        ];
        let reboot = [
            patches::reboot_from_needs_restarting(ok(code)),
            patches::reboot_from_zypper(ok(code)),
        ];
        let last = patches::last_update_from_rpm(ok(code));
        for p in &pending {
            for r in &reboot {
                collector_accepts("patches::findings", &patches::findings(p, r, &last, now()));
            }
        }
    }
}

/// Antivirus sources: Security Center JSON and lists, Defender
/// (Get-MpComputerStatus, mdatp), ClamAV database headers, PowerShell
/// errors; then the Linux and Windows surveys built from them.
pub fn antivirus(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let p = parts(&text, 3);
    let raw = data.get(..4).map_or(0, |b| {
        u32::from_le_bytes(<[u8; 4]>::try_from(b).unwrap_or_default())
    });
    let _ = antivirus::decode_product_state(raw).describe();
    let _ = antivirus::classify_ps_failure(&text);

    let mut products = Vec::new();
    for w in antivirus::parse_wsc_json(&text)
        .unwrap_or_default()
        .iter()
        .chain(antivirus::parse_wsc_list(&text).iter())
    {
        products.push(antivirus::wsc_product(w, "SecurityCenter2"));
    }
    for status in [
        antivirus::parse_mp_status_list(&text),
        antivirus::parse_mp_status_json(&text),
    ]
    .into_iter()
    .flatten()
    {
        products.push(antivirus::defender_product(&status, "Get-MpComputerStatus"));
    }
    if let Ok(h) = antivirus::parse_mdatp_health(&text) {
        products.push(antivirus::mdatp_product(&h, now(), "mdatp health"));
    }
    for product in &products {
        collector_accepts(
            "antivirus::product_findings",
            &antivirus::product_findings(product),
        );
    }

    let clamav = match antivirus::parse_cvd_header(data) {
        Ok(header) => {
            let _ = header.built_at();
            antivirus::DbFile::Found {
                path: "/var/lib/clamav/daily.cvd".into(),
                header,
            }
        }
        Err(e) => antivirus::DbFile::Bad {
            path: "/var/lib/clamav/daily.cvd".into(),
            reason: e.to_string(),
        },
    };
    let probe = antivirus::LinuxProbe {
        clamav: antivirus::ClamavDbs {
            dir: "/var/lib/clamav".into(),
            dir_exists: true,
            daily: clamav,
            main: antivirus::DbFile::Missing,
        },
        clamav_programs: vec!["clamd".into()],
        processes: Ok(p[2].lines().map(str::to_owned).collect()),
        mdatp: Some(Ok(output(Some(0), &text, ""))),
        generic: Vec::new(),
    };
    let survey = antivirus::survey_linux(&probe, now());
    let _ = antivirus::overall_status(&survey);
    collector_accepts(
        "antivirus::survey_linux",
        &antivirus::survey_findings(&survey),
    );

    for code in EXIT_CODES {
        let run = |script: &str| -> Result<Output, ExecError> {
            let stdout = if script == antivirus::WSC_SCRIPT {
                p[0]
            } else {
                p[1]
            };
            Ok(output(code, stdout, p[2]))
        };
        let survey = antivirus::survey_windows(&run, &[]);
        collector_accepts(
            "antivirus::survey_windows",
            &antivirus::survey_findings(&survey),
        );
    }
}

/// Security baseline sources: `sshd -T` and sshd_config with includes
/// (each NUL-separated part after the first is a file every Include
/// matches), firewall tools, registry exports, passwd/shadow, login.defs,
/// `ss`, apt and dnf-automatic settings.
pub fn baseline(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let files: Vec<&str> = text.split('\0').collect();
    let main = files[0];

    let ssh = baseline::parse_sshd_t(&text);
    let mut checks = vec![
        baseline::judge_permit_root_login(ssh.permit_root_login.as_deref(), "sshd -T"),
        baseline::judge_password_authentication(ssh.password_authentication.as_deref(), "sshd -T"),
    ];
    let include = &mut |pattern: &str| -> Result<Vec<(String, String)>, String> {
        if files.len() < 2 || pattern.is_empty() {
            return Err("no match".into());
        }
        Ok(files[1..]
            .iter()
            .enumerate()
            .map(|(i, t)| (format!("/etc/ssh/sshd_config.d/{i}.conf"), (*t).to_owned()))
            .collect())
    };
    let scan = baseline::scan_sshd_config("/etc/ssh/sshd_config", main, include);
    checks.extend(baseline::judge_sshd_config(&scan, "sshd_config"));
    for pattern in main.lines().take(8) {
        let _ = baseline::glob_match(pattern, "50-cloud-init.conf");
    }

    let probes: Vec<baseline::FirewallProbe> = [
        ("nft", baseline::nft_state(&text)),
        ("iptables", baseline::iptables_state(&text)),
        ("ufw", baseline::ufw_state(&text)),
        ("firewalld", baseline::firewalld_state(&text)),
    ]
    .into_iter()
    .map(|(tool, state)| baseline::FirewallProbe {
        tool: tool.into(),
        evidence: tool.into(),
        state,
    })
    .collect();
    checks.push(baseline::judge_firewall(&probes));
    let reg = baseline::parse_firewall_reg(&baseline::decode_reg_export(data));
    checks.push(baseline::judge_windows_firewall(&reg, &reg, "reg export"));

    let _ = baseline::uid0_accounts(&text);
    let _ = baseline::empty_password_accounts(&text);
    checks.push(baseline::judge_uid0(main, "/etc/passwd"));
    checks.push(baseline::judge_empty_password(
        Some(main),
        Ok(files.get(1).copied().unwrap_or(main)),
        "/etc/shadow",
    ));
    checks.extend(baseline::judge_login_defs(
        &baseline::parse_login_defs(&text),
        "/etc/login.defs",
    ));

    let _ = baseline::parse_ss_users(&text);
    let listeners = baseline::parse_ss_listeners(&text);
    let (check, metrics) = baseline::judge_listeners(&listeners, true, "ss -H -tulpn");
    checks.push(check);
    collector_accepts(
        "baseline::judge_listeners",
        &Findings {
            metrics,
            checks: Vec::new(),
        },
    );

    let names: Vec<&str> = main.lines().collect();
    checks.push(baseline::judge_auditd(&names, "/proc/*/comm"));
    let apt_files: Vec<(String, String)> = files
        .iter()
        .enumerate()
        .map(|(i, t)| {
            (
                format!("/etc/apt/apt.conf.d/{i:02}auto-upgrades"),
                (*t).to_owned(),
            )
        })
        .collect();
    for (name, _) in &apt_files {
        let _ = baseline::apt_reads_part(name);
    }
    let _ = baseline::parse_apt_conf(&text);
    let _ = baseline::apt_conf_value(&apt_files, "APT::Periodic::Unattended-Upgrade");
    checks.push(baseline::judge_apt_automatic(
        &apt_files,
        true,
        "apt-config",
    ));
    checks.push(baseline::judge_dnf_automatic(
        &names,
        Some(main),
        "systemctl",
    ));
    accepts_checks("baseline", checks);
}

/// systemd units, Windows services, time synchronisation tools.
pub fn services(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let p = parts(&text, 2);
    let _ = services::parse_units(p[0]);
    let _ = services::systemd_unavailable(p[1]);
    let mut checks = Vec::new();
    for code in EXIT_CODES {
        checks.push(services::judge_failed_units(code, p[0], p[1], "systemctl"));
    }
    if let Ok(list) = services::parse_win_services(&text) {
        checks.push(services::judge_windows_services(&list, "Get-Service"));
    }
    let _ = services::parse_timesync_offset(&text);
    let mut metrics = Vec::new();
    for sync in [
        services::parse_chronyc_tracking(&text),
        services::parse_timedatectl_show(&text),
        services::parse_w32tm_status(&text),
    ] {
        let (check, m) = services::judge_time_sync(sync.as_ref().map_err(String::as_str), "tool");
        checks.push(check);
        metrics.extend(m);
    }
    collector_accepts("services", &Findings { metrics, checks });
}

/// Hardware and virtualisation sources: wmic lists (UTF-16LE or not), CIM
/// JSON, the Windows bundle, /proc/cpuinfo, mountinfo, environ, CPUID.
pub fn hardware(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let decoded = hardware::decode_utf16le(data);
    let _ = hardware::parse_wmic_list(&decoded);
    let _ = hardware::parse_wmic_list(&text);
    let _ = hardware::parse_cim_json(&text);
    let _ = hardware::hardware_from_wmi(&hardware::parse_windows_bundle(&text));
    for line in text.lines().take(64) {
        let _ = hardware::clean_identity(line);
        let _ = hardware::clean_uuid(line);
        let _ = hardware::chassis_type_name(line);
        let _ = hardware::wmi_array_first(line);
        let _ = hardware::cim_date(line);
        let _ = hardware::hypervisor_from_cpuid(line);
        let _ = disks::device_kind(line);
    }
    let _ = hardware::cpu_sockets(&text);
    let flag = hardware::cpuinfo_hypervisor_flag(&text);
    let env = hardware::container_env(data);
    let vendor = hardware::cpuid_vendor(data);
    let markers = hardware::ContainerMarkers {
        pid1_container_env: env,
        pid1_cgroup: text.to_string(),
        etc_files_bind_mounted: hardware::etc_files_bind_mounted(&text),
        ..Default::default()
    };
    let p = parts(&text, 2);
    let _ = hardware::hypervisor_from_dmi(p[0], p[1]);
    let hint = hardware::virtualization(p[0], p[1], flag.unwrap_or(false), false, &markers);
    let _ = hardware::refine_virtualization(&hint, &vendor, p[1]);
    let free = data.len() as u64 / 2;
    if let Some(m) = disks::inode_usage_metric(p[0], p[1], "ext4", data.len() as u64, free) {
        collector_accepts(
            "disks::inode_usage_metric",
            &Findings {
                metrics: vec![m],
                checks: Vec::new(),
            },
        );
    }
}

/// dpkg-query, rpm and Windows uninstall-registry package lists.
pub fn packages(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let _ = packages::parse_dpkg(&text);
    let _ = packages::parse_rpm(&text);
    let _ = packages::parse_windows_uninstall(&text);
}

// --------------------------------------------------------------------- seeds

/// Seeds for the targets whose input no tool prints: `(target, file name,
/// bytes)`. Written into `fuzz/corpus/` by `tests/fuzz_corpus.rs` when
/// `XUNJIAN_FUZZ_SEED_DIR` is set, and always run through their bodies.
pub fn generated_seeds() -> Vec<(&'static str, String, Vec<u8>)> {
    let mut seeds = Vec::new();
    for (name, message) in seed_messages() {
        seeds.push(("agent_message", name, message.encode_to_vec()));
    }
    seeds.extend(seed_spools());
    seeds.push(("evidence_bundle", "seed-export".into(), seed_bundle()));
    seeds.extend(seed_csrs());
    seeds
}

fn seed_messages() -> Vec<(String, AgentMessage)> {
    use xunjian_proto::{
        CheckResult, CheckResults, CheckStatus, Filesystem, Hardware, Hello, Label, Metric,
        MetricBatch, NetworkInterface, Package, Section, SpoolStatus,
    };
    let spool = SpoolStatus {
        pending_reports: 3,
        pending_bytes: 4096,
        dropped_reports_total: 1,
        dropped_bytes_total: 512,
        max_bytes: 64 << 20,
    };
    let hello = AgentMessage {
        kind: Some(agent_message::Kind::Hello(Hello {
            agent_version: "0.1.0".into(),
            capabilities: vec!["run_now".into()],
            spool: Some(spool),
            claimed_agent_id: Uuid::nil().to_string(),
        })),
    };
    let label = |name: &str, value: &str| Label {
        name: name.into(),
        value: value.into(),
    };
    let metrics = Section {
        kind: Some(section::Kind::Metrics(MetricBatch {
            metrics: vec![
                Metric {
                    name: "cpu.usage_percent".into(),
                    labels: vec![],
                    value: 12.5,
                    at_unix_ms: 0,
                },
                Metric {
                    name: "fs.used_percent".into(),
                    labels: vec![label("mount", "/"), label("device", "/dev/vda1")],
                    value: 71.0,
                    at_unix_ms: 1_772_366_400_000,
                },
            ],
        })),
    };
    let checks = Section {
        kind: Some(section::Kind::Checks(CheckResults {
            results: vec![CheckResult {
                check_id: "smart.sda".into(),
                title: "SMART health of /dev/sda".into(),
                status: CheckStatus::Ok as i32,
                value: "PASSED".into(),
                threshold: "PASSED".into(),
                evidence: "smartctl --json -a /dev/sda".into(),
                reason: String::new(),
            }],
        })),
    };
    let inventory = Section {
        kind: Some(section::Kind::Inventory(Inventory {
            hostname: "db-1".into(),
            os_name: "Debian GNU/Linux".into(),
            os_version: "12".into(),
            kernel_version: "6.1.0".into(),
            arch: "x86_64".into(),
            boot_time_unix_s: 1_772_000_000,
            cpu_logical: 2,
            memory_total_bytes: 4 << 30,
            filesystems: vec![Filesystem {
                mount_point: "/".into(),
                device: "/dev/vda1".into(),
                fs_type: "ext4".into(),
                total_bytes: 20 << 30,
            }],
            hardware: Some(Hardware {
                system_vendor: "QEMU".into(),
                chassis_type: "Other".into(),
                ..Default::default()
            }),
            interfaces: vec![NetworkInterface {
                name: "eth0".into(),
                mac: "52:54:00:12:34:56".into(),
                addresses: vec!["192.0.2.10/24".into()],
                mtu: 1500,
            }],
            packages: vec![
                Package {
                    name: "openssl".into(),
                    version: "3.0.15-1".into(),
                    arch: "amd64".into(),
                    source: "dpkg".into(),
                },
                Package {
                    name: "curl".into(),
                    version: "7.88.1".into(),
                    arch: "amd64".into(),
                    source: "dpkg".into(),
                },
            ],
            ..Default::default()
        })),
    };
    let report = AgentMessage {
        kind: Some(agent_message::Kind::Report(Report {
            sequence: 7,
            collected_at_unix_ms: 1_772_366_400_000,
            claimed_agent_id: String::new(),
            spool: Some(spool),
            sections: vec![metrics, checks, inventory],
            run_now_request_id: "run-1".into(),
        })),
    };
    vec![("seed-hello".into(), hello), ("seed-report".into(), report)]
}

/// Spool directories written by the real spool, in the `spool_recovery`
/// input format: intact, without meta, with a torn tail, with a flipped
/// byte, and with a segment cut short.
fn seed_spools() -> Vec<(&'static str, String, Vec<u8>)> {
    // Two spools: records 1-3 (1 acked), and records 6-7 after numbering
    // skipped to 5; together they make two segments with a gap.
    let (meta_a, mut segments) = real_spool(0, &[b"one", b"two", b"three"], 1);
    let (_, second) = real_spool(5, &[b"six", b"seven"], 0);
    segments.extend(second);
    let encode = |meta: Option<&[u8]>, segments: &[(u64, Vec<u8>)]| {
        let mut out = Vec::new();
        match meta {
            Some(m) => {
                out.extend_from_slice(&(m.len() as u16).to_le_bytes());
                out.extend_from_slice(m);
            }
            None => out.extend_from_slice(&u16::MAX.to_le_bytes()),
        }
        for (seq, bytes) in segments {
            out.extend_from_slice(&seq.to_le_bytes());
            out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
            out.extend_from_slice(bytes);
        }
        out
    };
    let mut torn = segments.clone();
    if let Some((_, last)) = torn.last_mut() {
        last.extend_from_slice(&[9, 0, 0, 0, 1, 2]);
    }
    let mut flipped = segments.clone();
    if let Some(byte) = flipped.first_mut().and_then(|(_, b)| b.get_mut(20)) {
        *byte ^= 0x40;
    }
    let mut cut = segments.clone();
    if let Some((_, first)) = cut.first_mut() {
        first.truncate(first.len() - 3);
    }
    vec![
        (
            "spool_recovery",
            "seed-intact".into(),
            encode(Some(&meta_a), &segments),
        ),
        (
            "spool_recovery",
            "seed-no-meta".into(),
            encode(None, &segments),
        ),
        (
            "spool_recovery",
            "seed-torn-tail".into(),
            encode(Some(&meta_a), &torn),
        ),
        (
            "spool_recovery",
            "seed-flipped-byte".into(),
            encode(Some(&meta_a), &flipped),
        ),
        (
            "spool_recovery",
            "seed-cut-short".into(),
            encode(Some(&meta_a), &cut),
        ),
    ]
}

/// The meta file and `(first seq, bytes)` of each segment of a real spool
/// numbered from `skip_to + 1`, holding `payloads`, acked up to `acked`.
fn real_spool(skip_to: u64, payloads: &[&[u8]], acked: u64) -> (Vec<u8>, Vec<(u64, Vec<u8>)>) {
    use xunjian_agent::spool::Spool;
    let dir = scratch_dir();
    let (mut spool, _) = Spool::open(dir.path(), 1 << 20).expect("open a seed spool");
    spool.skip_to(skip_to).expect("skip in a seed spool");
    for payload in payloads {
        spool
            .append(|_| payload.to_vec())
            .expect("append to a seed spool");
    }
    spool.ack(acked).expect("ack in a seed spool");
    drop(spool);
    let meta = std::fs::read(dir.path().join("spool.meta")).unwrap_or_default();
    let mut segments: Vec<(u64, Vec<u8>)> = std::fs::read_dir(dir.path())
        .expect("list a seed spool")
        .filter_map(Result::ok)
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let seq = name.strip_suffix(".seg")?.parse().ok()?;
            Some((seq, std::fs::read(e.path()).ok()?))
        })
        .collect();
    segments.sort();
    (meta, segments)
}

/// A bundle exported from a real evidence chain of three entries, as
/// `path NUL contents NUL ...`.
fn seed_bundle() -> Vec<u8> {
    use xunjian_collector::evidence::{self, EvidenceError, EvidenceKey, RecordSource};
    struct Records;
    impl RecordSource for Records {
        fn record_json(&self, kind: &str, record_ref: &str) -> Result<Vec<u8>, EvidenceError> {
            Ok(format!("{{\"kind\":\"{kind}\",\"ref\":\"{record_ref}\"}}").into_bytes())
        }
        fn record_html(&self, kind: &str, record_ref: &str) -> Result<String, EvidenceError> {
            Ok(format!("<h1>{kind} {record_ref}</h1>"))
        }
    }
    let dir = scratch_dir();
    let mut conn =
        xunjian_collector::store::open(&dir.path().join("db.sqlite")).expect("open a seed store");
    let key = EvidenceKey::load_or_create(&dir.path().join("pki")).expect("make a seed key");
    let start = Utc
        .with_ymd_and_hms(2026, 1, 1, 0, 0, 0)
        .single()
        .unwrap_or_default();
    for seq in 1..=3i64 {
        let at = start + chrono::Duration::hours(seq);
        let record_ref = format!("run:{seq}");
        let record = Records
            .record_json("inspection", &record_ref)
            .unwrap_or_default();
        let tx = conn.transaction().expect("seed transaction");
        evidence::append(&tx, &key, at, "inspection", &record_ref, &record)
            .expect("append seed evidence");
        tx.commit().expect("commit seed evidence");
    }
    let out = dir.path().join("bundle");
    evidence::export(
        &conn,
        &key,
        start,
        start + chrono::Duration::hours(10),
        &Records,
        &out,
        now(),
    )
    .expect("export a seed bundle");
    let mut files = Vec::new();
    collect_files(&out, "", &mut files);
    files.sort();
    let mut bytes = Vec::new();
    for (name, contents) in files {
        bytes.extend_from_slice(name.as_bytes());
        bytes.push(0);
        bytes.extend_from_slice(&contents);
        bytes.push(0);
    }
    bytes
}

fn collect_files(dir: &Path, prefix: &str, out: &mut Vec<(String, Vec<u8>)>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.filter_map(Result::ok) {
        let name = format!("{prefix}{}", entry.file_name().to_string_lossy());
        let path = entry.path();
        if path.is_dir() {
            collect_files(&path, &format!("{name}/"), out);
        } else if let Ok(contents) = std::fs::read(&path) {
            out.push((name, contents));
        }
    }
}
