//! Security baseline self-check: one static table of items ([`ITEMS`]) an
//! auditor can read, thin shims that run a tool or read a file per item,
//! and pure functions that judge what was read.

use std::time::Duration;

use xunjian_proto::{CheckResult, CheckStatus, Metric};

use super::{Findings, check, metric, unknown};

/// One baseline item as shown to an auditor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BaselineItem {
    /// Stable check id.
    pub id: &'static str,
    pub title_en: &'static str,
    pub title_zh: &'static str,
    /// What is read or run, and how it is judged.
    pub checks: &'static str,
    /// The value that passes; also the check result's threshold text.
    pub expected: &'static str,
}

pub const SSH_PERMIT_ROOT_LOGIN: &str = "baseline.ssh.permit_root_login";
pub const SSH_PASSWORD_AUTHENTICATION: &str = "baseline.ssh.password_authentication";
pub const FIREWALL_ACTIVE: &str = "baseline.firewall.active";
pub const ACCOUNTS_UID0: &str = "baseline.accounts.uid0";
pub const ACCOUNTS_EMPTY_PASSWORD: &str = "baseline.accounts.empty_password";
pub const PASSWORD_MAX_DAYS: &str = "baseline.password.max_days";
pub const PASSWORD_MIN_LEN: &str = "baseline.password.min_len";
pub const PASSWORD_WARN_AGE: &str = "baseline.password.warn_age";
pub const NETWORK_LISTENING: &str = "baseline.network.listening";
pub const AUDIT_AUDITD_RUNNING: &str = "baseline.audit.auditd_running";
pub const UPDATES_AUTOMATIC: &str = "baseline.updates.automatic";

/// Metric: listening sockets, labelled `proto` ("tcp", "udp").
pub const METRIC_LISTENING: &str = "net.listening_sockets";

/// PASS_MAX_DAYS above this is a warning.
pub const MAX_PASSWORD_DAYS: i64 = 90;
/// PASS_MIN_LEN below this is a warning.
pub const MIN_PASSWORD_LEN: i64 = 8;
/// PASS_WARN_AGE below this is a warning.
pub const MIN_WARN_AGE_DAYS: i64 = 7;

/// Every baseline item, in report order.
pub const ITEMS: &[BaselineItem] = &[
    BaselineItem {
        id: SSH_PERMIT_ROOT_LOGIN,
        title_en: "SSH root login disabled",
        title_zh: "SSH 禁止 root 直接登录",
        checks: "Effective PermitRootLogin of the OpenSSH server: `sshd -T` (needs root), else \
                 /etc/ssh/sshd_config with its Include files and the OpenSSH default; Match blocks \
                 are not evaluated. No sshd installed: unknown (nothing to judge, not a pass).",
        expected: "no, prohibit-password (alias without-password) or forced-commands-only; yes is critical",
    },
    BaselineItem {
        id: SSH_PASSWORD_AUTHENTICATION,
        title_en: "SSH password authentication disabled",
        title_zh: "SSH 禁用密码认证",
        checks: "Effective PasswordAuthentication of the OpenSSH server, read as for \
                 PermitRootLogin (OpenSSH default: yes).",
        expected: "no; yes is a warning",
    },
    BaselineItem {
        id: FIREWALL_ACTIVE,
        title_en: "Host firewall active",
        title_zh: "主机防火墙已启用",
        checks: "Linux: `nft list ruleset` (an input filter chain with policy drop or rules), \
                 `iptables -S` (INPUT policy DROP or INPUT rules), `ufw status` (active), \
                 `firewall-cmd --state` (running); all need root. Forward-only rules (e.g. \
                 Docker's) do not protect the host and do not count. Windows: EnableFirewall of \
                 each FirewallPolicy profile, Group Policy values taking precedence.",
        expected: "at least one firewall active (Windows: every profile enabled); none active is critical",
    },
    BaselineItem {
        id: ACCOUNTS_UID0,
        title_en: "No UID 0 account besides root",
        title_zh: "除 root 外无 UID 为 0 的账户",
        checks: "/etc/passwd: accounts other than root whose UID is 0.",
        expected: "only root has UID 0; any other is critical",
    },
    BaselineItem {
        id: ACCOUNTS_EMPTY_PASSWORD,
        title_en: "No account with an empty password",
        title_zh: "无空密码账户",
        checks: "Empty password field in /etc/shadow (needs root) or /etc/passwd. Locked \
                 (`!`, `*`) accounts are not empty.",
        expected: "none; any is critical",
    },
    BaselineItem {
        id: PASSWORD_MAX_DAYS,
        title_en: "Password maximum age",
        title_zh: "密码最长使用期限",
        checks: "PASS_MAX_DAYS in /etc/login.defs (applies to accounts created afterwards; \
                 unset means no expiry).",
        expected: "PASS_MAX_DAYS <= 90; more or unset is a warning",
    },
    BaselineItem {
        id: PASSWORD_MIN_LEN,
        title_en: "Password minimum length",
        title_zh: "密码最小长度",
        checks: "PASS_MIN_LEN in /etc/login.defs when set. Unset: unknown, as PAM \
                 (pam_pwquality/pam_unix minlen) then decides and is not read here.",
        expected: "PASS_MIN_LEN >= 8; less is a warning",
    },
    BaselineItem {
        id: PASSWORD_WARN_AGE,
        title_en: "Password expiry warning",
        title_zh: "密码过期提前告警天数",
        checks: "PASS_WARN_AGE in /etc/login.defs (unset means no warning).",
        expected: "PASS_WARN_AGE >= 7; less or unset is a warning",
    },
    BaselineItem {
        id: NETWORK_LISTENING,
        title_en: "Listening network ports",
        title_zh: "监听的网络端口",
        checks: "`ss -H -tulpn`: listening TCP and bound UDP sockets with their processes \
                 (process names need root). Informational, for review.",
        expected: "informational: always ok, the list is for review",
    },
    BaselineItem {
        id: AUDIT_AUDITD_RUNNING,
        title_en: "Audit daemon running",
        title_zh: "审计服务 auditd 运行中",
        checks: "A process named auditd in /proc/*/comm (the kernel thread kauditd does not count).",
        expected: "auditd running; not running is a warning",
    },
    BaselineItem {
        id: UPDATES_AUTOMATIC,
        title_en: "Automatic updates configured",
        title_zh: "已配置自动更新",
        checks: "Debian/Ubuntu: APT::Periodic::Unattended-Upgrade > 0 in /etc/apt/apt.conf.d \
                 (e.g. 20auto-upgrades) and unattended-upgrade installed. RHEL family: \
                 dnf-automatic-install.timer enabled, or dnf-automatic.timer with apply_updates = yes.",
        expected: "configured; not configured is a warning",
    },
];

/// The table entry of an id; `None` for an id not in [`ITEMS`].
pub fn item(id: &str) -> Option<&'static BaselineItem> {
    ITEMS.iter().find(|i| i.id == id)
}

fn title(id: &str) -> &'static str {
    item(id).map_or("Baseline item", |i| i.title_en)
}

fn expected(id: &str) -> &'static str {
    item(id).map_or("", |i| i.expected)
}

fn judged(
    id: &str,
    status: CheckStatus,
    value: impl Into<String>,
    evidence: impl Into<String>,
) -> CheckResult {
    check(id, title(id), status, value, expected(id), evidence)
}

fn not_judged(id: &str, reason: impl Into<String>, evidence: impl Into<String>) -> CheckResult {
    unknown(id, title(id), reason, evidence)
}

// ------------------------------------------------------------------ SSH

/// The two settings judged, lower-cased, as the source gave them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SshSettings {
    pub permit_root_login: Option<String>,
    pub password_authentication: Option<String>,
}

/// OpenSSH's built-in defaults (since 7.0), used when the config file does
/// not set a keyword.
pub const SSHD_DEFAULT_PERMIT_ROOT_LOGIN: &str = "prohibit-password";
pub const SSHD_DEFAULT_PASSWORD_AUTHENTICATION: &str = "yes";

/// Reads `sshd -T` output: one `keyword value` per line, keywords already
/// lower-case.
pub fn parse_sshd_t(text: &str) -> SshSettings {
    let mut out = SshSettings::default();
    for line in text.lines() {
        let mut parts = line.split_whitespace();
        let (Some(key), Some(value)) = (parts.next(), parts.next()) else {
            continue;
        };
        let slot = match key.to_ascii_lowercase().as_str() {
            "permitrootlogin" => &mut out.permit_root_login,
            "passwordauthentication" => &mut out.password_authentication,
            _ => continue,
        };
        if slot.is_none() {
            *slot = Some(value.to_ascii_lowercase());
        }
    }
    out
}

/// What reading sshd_config and its includes found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SshdConfigScan {
    /// First value of each keyword outside Match blocks (sshd uses the
    /// first one it reads).
    pub settings: SshSettings,
    /// Files read, in order.
    pub files: Vec<String>,
    /// A Match block was skipped: some users or addresses may get other
    /// values.
    pub match_blocks_skipped: bool,
    /// Include patterns that matched nothing or could not be read, and
    /// includes nested too deep.
    pub problems: Vec<String>,
}

/// sshd's own limit on nested Include.
const SSHD_INCLUDE_DEPTH: usize = 16;
/// Files read at most, the main one included. sshd gives up on the whole
/// config at the first Include nested too deep; we keep reading, so an
/// Include whose glob matches the including file twice (two patterns, or
/// two such files) would otherwise multiply the reads at every level.
const MAX_SSHD_CONFIG_FILES: usize = 256;

/// Reads an Include pattern: the matching files as (path, text), in
/// order, or why they could not be read.
pub type IncludeReader<'a> = dyn FnMut(&str) -> Result<Vec<(String, String)>, String> + 'a;

/// Walks sshd_config semantics over `main_text`: keywords are
/// case-insensitive, `Keyword value` or `Keyword=value`, the first value
/// wins, `Include` is read in place through `include` (pattern → matching
/// files as (path, text), in order; an error text when none). Lines after a
/// `Match` are conditional and skipped.
pub fn scan_sshd_config(
    main_path: &str,
    main_text: &str,
    include: &mut IncludeReader<'_>,
) -> SshdConfigScan {
    let mut scan = SshdConfigScan::default();
    scan_file(main_path, main_text, include, &mut scan, 0);
    scan
}

fn scan_file(
    path: &str,
    text: &str,
    include: &mut IncludeReader<'_>,
    scan: &mut SshdConfigScan,
    depth: usize,
) {
    scan.files.push(path.to_owned());
    for raw in text.lines() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (key, rest) = split_keyword(line);
        let key = key.to_ascii_lowercase();
        if key == "match" {
            // Match blocks in an included file end with that file.
            scan.match_blocks_skipped = true;
            return;
        }
        if key == "include" {
            for pattern in rest.split_whitespace() {
                let pattern = pattern.trim_matches('"');
                if depth + 1 >= SSHD_INCLUDE_DEPTH {
                    scan.problems
                        .push(format!("Include {pattern}: nested too deep, not read"));
                    continue;
                }
                if scan.files.len() >= MAX_SSHD_CONFIG_FILES {
                    scan.problems.push(format!(
                        "Include {pattern}: over {MAX_SSHD_CONFIG_FILES} files read, not read"
                    ));
                    return;
                }
                match include(pattern) {
                    Ok(files) => {
                        for (p, t) in files {
                            scan_file(&p, &t, include, scan, depth + 1);
                        }
                    }
                    Err(e) => scan.problems.push(format!("Include {pattern}: {e}")),
                }
            }
            continue;
        }
        let value = rest
            .split_whitespace()
            .next()
            .unwrap_or("")
            .trim_matches('"')
            .to_ascii_lowercase();
        if value.is_empty() {
            continue;
        }
        let slot = match key.as_str() {
            "permitrootlogin" => &mut scan.settings.permit_root_login,
            "passwordauthentication" => &mut scan.settings.password_authentication,
            _ => continue,
        };
        if slot.is_none() {
            *slot = Some(value);
        }
    }
}

/// `Keyword value`, `Keyword=value` or `Keyword = value`.
fn split_keyword(line: &str) -> (&str, &str) {
    let end = line
        .find(|c: char| c.is_whitespace() || c == '=')
        .unwrap_or(line.len());
    let (key, rest) = line.split_at(end);
    let rest = rest.trim_start();
    let rest = rest.strip_prefix('=').unwrap_or(rest).trim_start();
    (key, rest)
}

/// Glob match of one path component: `*` any run, `?` one character.
pub fn glob_match(pattern: &str, name: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    let (mut pi, mut ni) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        match p.get(pi) {
            Some('*') => {
                star = Some((pi, ni));
                pi += 1;
            }
            Some(c) if *c == '?' || *c == n[ni] => {
                pi += 1;
                ni += 1;
            }
            _ => match star {
                Some((sp, sn)) => {
                    pi = sp + 1;
                    ni = sn + 1;
                    star = Some((sp, sn + 1));
                }
                None => return false,
            },
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

/// Judges PermitRootLogin. `value` is `None` when the source did not say.
pub fn judge_permit_root_login(value: Option<&str>, evidence: &str) -> CheckResult {
    let id = SSH_PERMIT_ROOT_LOGIN;
    let Some(v) = value else {
        return not_judged(id, "PermitRootLogin not found in the output", evidence);
    };
    let status = match v {
        // without-password is the pre-7.0 name sshd -T still prints.
        "no" | "prohibit-password" | "without-password" | "forced-commands-only" => CheckStatus::Ok,
        "yes" => CheckStatus::Critical,
        other => {
            return not_judged(
                id,
                format!("unrecognised PermitRootLogin value {other:?}"),
                evidence,
            );
        }
    };
    let value = if v == "without-password" {
        "without-password (old name of prohibit-password)".to_owned()
    } else {
        v.to_owned()
    };
    judged(id, status, value, evidence)
}

/// Judges PasswordAuthentication.
pub fn judge_password_authentication(value: Option<&str>, evidence: &str) -> CheckResult {
    let id = SSH_PASSWORD_AUTHENTICATION;
    let Some(v) = value else {
        return not_judged(
            id,
            "PasswordAuthentication not found in the output",
            evidence,
        );
    };
    let status = match v {
        "no" => CheckStatus::Ok,
        "yes" => CheckStatus::Warning,
        other => {
            return not_judged(
                id,
                format!("unrecognised PasswordAuthentication value {other:?}"),
                evidence,
            );
        }
    };
    judged(id, status, v, evidence)
}

/// Both SSH checks from a config scan, filling in OpenSSH defaults and
/// saying so in the value.
pub fn judge_sshd_config(scan: &SshdConfigScan, prefix: &str) -> Vec<CheckResult> {
    let mut evidence = format!("{prefix}read {}", scan.files.join(", "));
    if scan.match_blocks_skipped {
        evidence.push_str("; Match blocks not evaluated (may differ for some users/addresses)");
    }
    for p in &scan.problems {
        evidence.push_str("; ");
        evidence.push_str(p);
    }
    let one =
        |set: &Option<String>, default: &str, judge: fn(Option<&str>, &str) -> CheckResult| {
            let (v, origin) = match set {
                Some(v) => (v.as_str(), "set in config"),
                None => (default, "not set, OpenSSH default"),
            };
            let mut r = judge(Some(v), &evidence);
            if !r.value.is_empty() {
                r.value = format!("{v} ({origin})");
            }
            r
        };
    vec![
        one(
            &scan.settings.permit_root_login,
            SSHD_DEFAULT_PERMIT_ROOT_LOGIN,
            judge_permit_root_login,
        ),
        one(
            &scan.settings.password_authentication,
            SSHD_DEFAULT_PASSWORD_AUTHENTICATION,
            judge_password_authentication,
        ),
    ]
}

// ------------------------------------------------------------- firewall

/// What one firewall tool said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FirewallState {
    /// Filtering traffic; the text says how.
    Active(String),
    /// Queried, and not filtering; the text says what was seen.
    Inactive(String),
    /// Could not be asked (not installed, needs root, failed): why.
    NotQueried(String),
}

/// One tool's answer and what was run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FirewallProbe {
    pub tool: String,
    pub evidence: String,
    pub state: FirewallState,
}

/// Judges `nft list ruleset`: active when a base chain on the input hook
/// of type filter has policy drop or at least one rule. Rules elsewhere
/// (forward, nat) do not protect the host itself.
pub fn nft_state(ruleset: &str) -> FirewallState {
    let mut input_chains = 0usize;
    let mut drop_policy = 0usize;
    let mut rules = 0usize;
    // Per chain: (is input filter base chain, policy drop, rule lines).
    let mut chain: Option<(bool, bool, usize)> = None;
    let mut depth = 0usize;
    let mut chain_depth = 0usize;
    for raw in ruleset.lines() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let opens = line.ends_with('{');
        let closes = line == "}";
        if chain.is_none() && opens && line.starts_with("chain ") {
            chain = Some((false, false, 0));
            depth += 1;
            chain_depth = depth;
            continue;
        }
        if closes {
            if depth == chain_depth
                && let Some((input, drop, n)) = chain.take()
                && input
            {
                input_chains += 1;
                drop_policy += usize::from(drop);
                rules += n;
            }
            depth = depth.saturating_sub(1);
            continue;
        }
        if opens {
            depth += 1;
            continue;
        }
        let Some((input, drop, n)) = chain.as_mut() else {
            continue;
        };
        if depth != chain_depth {
            continue;
        }
        if line.starts_with("type ") {
            let words: Vec<&str> = line
                .split(|c: char| c.is_whitespace() || c == ';')
                .filter(|w| !w.is_empty())
                .collect();
            *input = words.windows(2).any(|w| w == ["type", "filter"])
                && words.windows(2).any(|w| w == ["hook", "input"]);
            *drop = words.windows(2).any(|w| w == ["policy", "drop"]);
        } else if !line.starts_with("policy ") && !line.starts_with("comment ") {
            *n += 1;
        }
    }
    if drop_policy > 0 || rules > 0 {
        FirewallState::Active(format!(
            "nftables: {input_chains} input filter chain(s), {drop_policy} with policy drop, {rules} rule(s)"
        ))
    } else if input_chains > 0 {
        FirewallState::Inactive(format!(
            "nftables: {input_chains} input filter chain(s) with policy accept and no rules"
        ))
    } else {
        FirewallState::Inactive("nftables: no input filter chain".into())
    }
}

/// Judges `iptables -S`: active when INPUT's policy is DROP or INPUT has
/// rules.
pub fn iptables_state(rules: &str) -> FirewallState {
    let mut policy = None;
    let mut input_rules = 0usize;
    for line in rules.lines() {
        let w: Vec<&str> = line.split_whitespace().collect();
        match w.as_slice() {
            ["-P", "INPUT", p, ..] => policy = Some(*p),
            ["-A", "INPUT", ..] => input_rules += 1,
            _ => {}
        }
    }
    let Some(policy) = policy else {
        return FirewallState::NotQueried("iptables -S printed no INPUT policy".into());
    };
    let text = format!("iptables: INPUT policy {policy}, {input_rules} INPUT rule(s)");
    if policy != "ACCEPT" || input_rules > 0 {
        FirewallState::Active(text)
    } else {
        FirewallState::Inactive(text)
    }
}

/// Judges `ufw status`.
pub fn ufw_state(stdout: &str) -> FirewallState {
    match stdout
        .lines()
        .find_map(|l| l.trim().strip_prefix("Status:"))
        .map(str::trim)
    {
        Some("active") => FirewallState::Active("ufw: active".into()),
        Some(s) => FirewallState::Inactive(format!("ufw: {s}")),
        None => FirewallState::NotQueried("ufw status printed no Status line".into()),
    }
}

/// Judges `firewall-cmd --state` ("running" / "not running").
pub fn firewalld_state(stdout: &str) -> FirewallState {
    match stdout.trim() {
        "running" => FirewallState::Active("firewalld: running".into()),
        "" => FirewallState::NotQueried("firewall-cmd --state printed nothing".into()),
        s => FirewallState::Inactive(format!("firewalld: {s}")),
    }
}

/// Judges all probes: ok when one is active; critical when none is but at
/// least one could be queried; unknown when none could be queried.
pub fn judge_firewall(probes: &[FirewallProbe]) -> CheckResult {
    let id = FIREWALL_ACTIVE;
    let evidence = probes
        .iter()
        .map(|p| p.evidence.as_str())
        .collect::<Vec<_>>()
        .join("; ");
    let mut active = Vec::new();
    let mut inactive = Vec::new();
    let mut not_queried = Vec::new();
    for p in probes {
        match &p.state {
            FirewallState::Active(t) => active.push(t.as_str()),
            FirewallState::Inactive(t) => inactive.push(t.as_str()),
            FirewallState::NotQueried(t) => not_queried.push(format!("{}: {t}", p.tool)),
        }
    }
    if !active.is_empty() {
        return judged(id, CheckStatus::Ok, active.join("; "), evidence);
    }
    if !inactive.is_empty() {
        let mut value = format!("no active firewall ({})", inactive.join("; "));
        if !not_queried.is_empty() {
            value.push_str(&format!("; not queried: {}", not_queried.join("; ")));
        }
        return judged(id, CheckStatus::Critical, value, evidence);
    }
    let reason = if not_queried.is_empty() {
        "no firewall tool was probed".to_owned()
    } else {
        format!(
            "no firewall tool could be queried: {}",
            not_queried.join("; ")
        )
    };
    not_judged(id, reason, evidence)
}

/// A Windows Firewall profile's EnableFirewall, from a `reg export`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FirewallProfile {
    /// The key's last component, e.g. "DomainProfile", "StandardProfile".
    pub profile: String,
    /// The full key.
    pub key: String,
    /// `None` when the key has no EnableFirewall dword.
    pub enabled: Option<bool>,
}

/// Decodes a `.reg` file: UTF-16LE with BOM as `reg export` writes it,
/// else UTF-8 (BOM optional). Invalid units become U+FFFD.
pub fn decode_reg_export(bytes: &[u8]) -> String {
    if let Some(rest) = bytes.strip_prefix(&[0xFF, 0xFE]) {
        let units: Vec<u16> = rest
            .chunks_exact(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .collect();
        return String::from_utf16_lossy(&units);
    }
    let rest = bytes.strip_prefix(&[0xEF, 0xBB, 0xBF]).unwrap_or(bytes);
    String::from_utf8_lossy(rest).into_owned()
}

/// The profile keys (`...\FirewallPolicy\<X>Profile` or
/// `...\WindowsFirewall\<X>Profile`; subkeys such as `\Logging` are left
/// out) of a decoded `.reg` export with their EnableFirewall.
pub fn parse_firewall_reg(text: &str) -> Vec<FirewallProfile> {
    let mut out: Vec<FirewallProfile> = Vec::new();
    let mut current: Option<usize> = None;
    for raw in text.lines() {
        let line = raw.trim();
        if let Some(key) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            current = None;
            let mut parts = key.rsplit('\\');
            let (Some(last), Some(parent)) = (parts.next(), parts.next()) else {
                continue;
            };
            let parent = parent.to_ascii_lowercase();
            if last.ends_with("Profile")
                && (parent == "firewallpolicy" || parent == "windowsfirewall")
            {
                out.push(FirewallProfile {
                    profile: last.to_owned(),
                    key: key.to_owned(),
                    enabled: None,
                });
                current = Some(out.len() - 1);
            }
            continue;
        }
        let Some(i) = current else { continue };
        let Some((name, value)) = line.split_once('=') else {
            continue;
        };
        if !name
            .trim()
            .trim_matches('"')
            .eq_ignore_ascii_case("EnableFirewall")
        {
            continue;
        }
        let dword = value
            .trim()
            .strip_prefix("dword:")
            .and_then(|h| u32::from_str_radix(h.trim(), 16).ok());
        if let (Some(d), Some(p)) = (dword, out.get_mut(i)) {
            p.enabled = Some(d != 0);
        }
    }
    out
}

/// Policy profile names (Group Policy) for the local ones.
fn policy_name(local: &str) -> &str {
    match local {
        "StandardProfile" => "PrivateProfile",
        other => other,
    }
}

/// Judges Windows Firewall: per profile, the Group Policy value when set,
/// else the local one; ok when every profile is enabled, critical when one
/// is disabled, unknown when nothing could be read.
pub fn judge_windows_firewall(
    local: &[FirewallProfile],
    policy: &[FirewallProfile],
    evidence: &str,
) -> CheckResult {
    let id = FIREWALL_ACTIVE;
    let mut parts = Vec::new();
    let mut off = Vec::new();
    let mut unread = Vec::new();
    for p in local {
        let gpo = policy
            .iter()
            .find(|g| g.profile.eq_ignore_ascii_case(policy_name(&p.profile)))
            .and_then(|g| g.enabled);
        let (enabled, origin) = match (gpo, p.enabled) {
            (Some(e), _) => (Some(e), "group policy"),
            (None, e) => (e, "local"),
        };
        match enabled {
            Some(true) => parts.push(format!("{}: on ({origin})", p.profile)),
            Some(false) => {
                parts.push(format!("{}: off ({origin})", p.profile));
                off.push(p.profile.clone());
            }
            None => unread.push(p.profile.clone()),
        }
    }
    if parts.is_empty() {
        let reason = if unread.is_empty() {
            "no firewall profile found in the registry export".to_owned()
        } else {
            format!("no EnableFirewall value in {}", unread.join(", "))
        };
        return not_judged(id, reason, evidence);
    }
    if !unread.is_empty() {
        parts.push(format!("no EnableFirewall value: {}", unread.join(", ")));
    }
    let status = if off.is_empty() {
        CheckStatus::Ok
    } else {
        CheckStatus::Critical
    };
    judged(id, status, parts.join("; "), evidence)
}

// ------------------------------------------------------------- accounts

/// Accounts other than root whose UID is 0, from /etc/passwd text.
pub fn uid0_accounts(passwd: &str) -> Vec<String> {
    passwd
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            let name = *f.first()?;
            let uid = f.get(2)?.trim().parse::<u32>().ok()?;
            (uid == 0 && name != "root" && !name.starts_with('#')).then(|| name.to_owned())
        })
        .collect()
}

/// Accounts whose password field is empty (login without a password), from
/// /etc/passwd or /etc/shadow text; lines without a password field are
/// skipped.
pub fn empty_password_accounts(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| {
            let mut f = l.split(':');
            let name = f.next()?.trim();
            let pw = f.next()?;
            (!name.is_empty() && !name.starts_with('#') && !name.starts_with('+') && pw.is_empty())
                .then(|| name.to_owned())
        })
        .collect()
}

/// Judges UID 0 accounts.
pub fn judge_uid0(passwd: &str, evidence: &str) -> CheckResult {
    let id = ACCOUNTS_UID0;
    if !passwd.lines().any(|l| l.split(':').count() >= 3) {
        return not_judged(id, "no account lines in /etc/passwd", evidence);
    }
    let extra = uid0_accounts(passwd);
    if extra.is_empty() {
        judged(id, CheckStatus::Ok, "none", evidence)
    } else {
        judged(id, CheckStatus::Critical, extra.join(", "), evidence)
    }
}

/// Judges empty passwords: `shadow` is the text of /etc/shadow or why it
/// could not be read. An empty field in /etc/passwd already fails.
pub fn judge_empty_password(
    passwd: Option<&str>,
    shadow: Result<&str, &str>,
    evidence: &str,
) -> CheckResult {
    let id = ACCOUNTS_EMPTY_PASSWORD;
    let mut empty: Vec<String> = passwd.map(empty_password_accounts).unwrap_or_default();
    if let Ok(text) = shadow {
        if !text.lines().any(|l| l.split(':').count() >= 2) {
            return not_judged(id, "no account lines in /etc/shadow", evidence);
        }
        empty.extend(empty_password_accounts(text));
    }
    empty.sort();
    empty.dedup();
    if !empty.is_empty() {
        return judged(id, CheckStatus::Critical, empty.join(", "), evidence);
    }
    match shadow {
        Err(why) => not_judged(id, why, evidence),
        Ok(_) => judged(id, CheckStatus::Ok, "none", evidence),
    }
}

// ------------------------------------------------------------ login.defs

/// The password-ageing values of /etc/login.defs; `None` when unset,
/// `Some(Err(text))` when set to something not a number.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LoginDefs {
    pub pass_max_days: Option<Result<i64, String>>,
    pub pass_min_days: Option<Result<i64, String>>,
    pub pass_min_len: Option<Result<i64, String>>,
    pub pass_warn_age: Option<Result<i64, String>>,
}

/// Reads `NAME value` lines (`#` comments); the last setting wins, as in
/// shadow-utils.
pub fn parse_login_defs(text: &str) -> LoginDefs {
    let mut out = LoginDefs::default();
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('#') {
            continue;
        }
        let mut w = line.split_whitespace();
        let (Some(name), Some(value)) = (w.next(), w.next()) else {
            continue;
        };
        let value = value.trim_matches('"');
        let parsed = value.parse::<i64>().map_err(|_| value.to_owned());
        match name {
            "PASS_MAX_DAYS" => out.pass_max_days = Some(parsed),
            "PASS_MIN_DAYS" => out.pass_min_days = Some(parsed),
            "PASS_MIN_LEN" => out.pass_min_len = Some(parsed),
            "PASS_WARN_AGE" => out.pass_warn_age = Some(parsed),
            _ => {}
        }
    }
    out
}

/// The three login.defs checks.
pub fn judge_login_defs(defs: &LoginDefs, evidence: &str) -> Vec<CheckResult> {
    let bad = |id: &str, name: &str, v: &str| {
        not_judged(id, format!("{name} is not a number: {v:?}"), evidence)
    };
    let max_days = match &defs.pass_max_days {
        None => judged(
            PASSWORD_MAX_DAYS,
            CheckStatus::Warning,
            "not set (passwords do not expire)",
            evidence,
        ),
        Some(Err(v)) => bad(PASSWORD_MAX_DAYS, "PASS_MAX_DAYS", v),
        Some(Ok(d)) => {
            // Negative means "no maximum" to shadow-utils.
            let status = if *d < 0 || *d > MAX_PASSWORD_DAYS {
                CheckStatus::Warning
            } else {
                CheckStatus::Ok
            };
            judged(PASSWORD_MAX_DAYS, status, format!("{d} days"), evidence)
        }
    };
    let min_len = match &defs.pass_min_len {
        None => not_judged(
            PASSWORD_MIN_LEN,
            "PASS_MIN_LEN is not set in /etc/login.defs; PAM (pam_pwquality/pam_unix minlen) decides and is not read",
            evidence,
        ),
        Some(Err(v)) => bad(PASSWORD_MIN_LEN, "PASS_MIN_LEN", v),
        Some(Ok(n)) => {
            let status = if *n < MIN_PASSWORD_LEN {
                CheckStatus::Warning
            } else {
                CheckStatus::Ok
            };
            judged(PASSWORD_MIN_LEN, status, n.to_string(), evidence)
        }
    };
    let warn_age = match &defs.pass_warn_age {
        None => judged(
            PASSWORD_WARN_AGE,
            CheckStatus::Warning,
            "not set (no expiry warning)",
            evidence,
        ),
        Some(Err(v)) => bad(PASSWORD_WARN_AGE, "PASS_WARN_AGE", v),
        Some(Ok(d)) => {
            let status = if *d < MIN_WARN_AGE_DAYS {
                CheckStatus::Warning
            } else {
                CheckStatus::Ok
            };
            judged(PASSWORD_WARN_AGE, status, format!("{d} days"), evidence)
        }
    };
    vec![max_days, min_len, warn_age]
}

// ------------------------------------------------------ listening sockets

/// One listening or bound socket from `ss -tulpn`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listener {
    /// "tcp" or "udp".
    pub proto: String,
    /// Local address and port as ss prints them, e.g. "0.0.0.0:22", "[::]:22".
    pub local: String,
    pub port: Option<u16>,
    /// (name, pid) of each process holding it; empty when ss did not show
    /// them (other users' processes need root).
    pub processes: Vec<(String, u32)>,
}

/// Parses `ss -H -tulpn` (a header line, as without `-H`, is skipped).
pub fn parse_ss_listeners(text: &str) -> Vec<Listener> {
    let mut out = Vec::new();
    for line in text.lines() {
        let cols: Vec<&str> = line.split_whitespace().collect();
        // Netid State Recv-Q Send-Q Local Peer [Process...]
        let [proto, _state, recv, _send, local, _peer, rest @ ..] = cols.as_slice() else {
            continue;
        };
        let proto = proto.to_ascii_lowercase();
        if !matches!(proto.as_str(), "tcp" | "udp") || recv.parse::<u64>().is_err() {
            continue;
        }
        let port = local
            .rsplit_once(':')
            .and_then(|(_, p)| p.parse::<u16>().ok());
        out.push(Listener {
            proto,
            local: (*local).to_owned(),
            port,
            processes: parse_ss_users(&rest.join(" ")),
        });
    }
    out
}

/// `users:(("sshd",pid=812,fd=3),("sshd",pid=900,fd=3))` → names and pids.
pub fn parse_ss_users(text: &str) -> Vec<(String, u32)> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(start) = rest
        .find("((\"")
        .map(|i| i + 3)
        .or_else(|| rest.find(",(\"").map(|i| i + 3))
    {
        let after = &rest[start..];
        let Some(end) = after.find("\",pid=") else {
            break;
        };
        let name = &after[..end];
        let pid_text = &after[end + 6..];
        let pid_end = pid_text
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(pid_text.len());
        if let Ok(pid) = pid_text[..pid_end].parse::<u32>() {
            out.push((name.to_owned(), pid));
        }
        rest = &pid_text[pid_end..];
    }
    out
}

/// The informational listening-ports check and its metrics. `as_root`:
/// whether ss ran as root, which decides why a process can be missing.
pub fn judge_listeners(
    listeners: &[Listener],
    as_root: bool,
    evidence: &str,
) -> (CheckResult, Vec<Metric>) {
    let describe = |l: &Listener| {
        if l.processes.is_empty() {
            format!("{} {} (process unknown)", l.proto, l.local)
        } else {
            let procs: Vec<String> = l
                .processes
                .iter()
                .map(|(n, p)| format!("{n} pid {p}"))
                .collect();
            format!("{} {} ({})", l.proto, l.local, procs.join(", "))
        }
    };
    let list: Vec<String> = listeners.iter().map(describe).collect();
    let value = if list.is_empty() {
        "0 listening sockets".to_owned()
    } else {
        format!("{} listening socket(s): {}", list.len(), list.join("; "))
    };
    let mut evidence = evidence.to_owned();
    if listeners.iter().any(|l| l.processes.is_empty()) {
        evidence.push_str(if as_root {
            "; process unknown: not visible to root here (kernel socket or another PID namespace)"
        } else {
            "; process unknown: ss shows other users' processes only to root"
        });
    }
    let metrics = ["tcp", "udp"]
        .iter()
        .map(|p| {
            let n = listeners.iter().filter(|l| l.proto == *p).count();
            metric(METRIC_LISTENING, n as f64, &[("proto", p)])
        })
        .collect();
    (
        judged(NETWORK_LISTENING, CheckStatus::Ok, value, evidence),
        metrics,
    )
}

// ----------------------------------------------------------------- auditd

/// Whether a process named exactly `auditd` is among `names` (contents of
/// /proc/*/comm; the kernel's kauditd is not the daemon).
pub fn auditd_running<S: AsRef<str>>(names: &[S]) -> bool {
    names.iter().any(|n| n.as_ref().trim() == "auditd")
}

/// Judges the audit daemon from the process names.
pub fn judge_auditd<S: AsRef<str>>(names: &[S], evidence: &str) -> CheckResult {
    if names.is_empty() {
        return not_judged(
            AUDIT_AUDITD_RUNNING,
            "no process names could be read",
            evidence,
        );
    }
    if auditd_running(names) {
        judged(AUDIT_AUDITD_RUNNING, CheckStatus::Ok, "running", evidence)
    } else {
        judged(
            AUDIT_AUDITD_RUNNING,
            CheckStatus::Warning,
            "not running",
            evidence,
        )
    }
}

// ---------------------------------------------------------------- updates

/// Reads apt configuration text (`a::b "v";` and nested `a { b "v"; };`;
/// `//` and `/* */` comments and `#` directive lines skipped) into
/// lower-cased keys and their values, in order.
pub fn parse_apt_conf(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut scopes: Vec<String> = Vec::new();
    let mut name = String::new();
    let mut line_start = true;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '/' if chars.peek() == Some(&'/') => skip_line(&mut chars),
            '/' if chars.peek() == Some(&'*') => {
                chars.next();
                let mut prev = ' ';
                for x in chars.by_ref() {
                    if prev == '*' && x == '/' {
                        break;
                    }
                    prev = x;
                }
            }
            // #include, #clear: not followed here.
            '#' if line_start => skip_line(&mut chars),
            '"' => {
                let value: String = chars.by_ref().take_while(|v| *v != '"').collect();
                if let Some(key) = name.split_whitespace().last() {
                    let full = scopes
                        .iter()
                        .map(String::as_str)
                        .filter(|s| !s.is_empty())
                        .chain(std::iter::once(key))
                        .collect::<Vec<_>>()
                        .join("::");
                    out.push((full.to_ascii_lowercase(), value));
                }
                name.clear();
            }
            '{' => {
                scopes.push(name.split_whitespace().last().unwrap_or("").to_owned());
                name.clear();
            }
            '}' => {
                scopes.pop();
                name.clear();
            }
            ';' => name.clear(),
            c => name.push(c),
        }
        line_start = c == '\n' || (line_start && c.is_whitespace());
    }
    out
}

fn skip_line(chars: &mut std::iter::Peekable<std::str::Chars<'_>>) {
    for x in chars.by_ref() {
        if x == '\n' {
            break;
        }
    }
}

/// Whether apt reads a file in apt.conf.d: its name is made of letters,
/// digits, `_`, `-` and `.`, and is not a package manager backup.
pub fn apt_reads_part(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        && ![
            ".disabled",
            ".bak",
            ".dpkg-old",
            ".dpkg-dist",
            ".dpkg-new",
            ".dpkg-tmp",
            ".ucf-old",
            ".ucf-dist",
            ".ucf-new",
            ".save",
        ]
        .iter()
        .any(|s| name.ends_with(s))
}

/// The last value of `key` (lower-case) over config files given in the
/// order apt reads them, with the file that set it.
pub fn apt_conf_value(files: &[(String, String)], key: &str) -> Option<(String, String)> {
    let mut found = None;
    for (path, text) in files {
        for (k, v) in parse_apt_conf(text) {
            if k == key {
                found = Some((v, path.clone()));
            }
        }
    }
    found
}

/// Judges unattended-upgrades from the apt configuration (files in read
/// order) and whether the tool is installed.
pub fn judge_apt_automatic(
    files: &[(String, String)],
    installed: bool,
    evidence: &str,
) -> CheckResult {
    let id = UPDATES_AUTOMATIC;
    let enable = apt_conf_value(files, "apt::periodic::enable");
    let uu = apt_conf_value(files, "apt::periodic::unattended-upgrade");
    let days = |v: &str| v.trim().parse::<i64>().ok();
    let value = match (&enable, &uu) {
        (Some((e, f)), _) if days(e) == Some(0) => {
            format!("APT::Periodic::Enable \"{e}\" in {f}: periodic apt jobs disabled")
        }
        (_, None) => "APT::Periodic::Unattended-Upgrade not set".to_owned(),
        (_, Some((v, f))) if days(v).is_none_or(|d| d <= 0) => {
            format!("APT::Periodic::Unattended-Upgrade \"{v}\" in {f}")
        }
        (_, Some((v, f))) => {
            let text = format!("APT::Periodic::Unattended-Upgrade \"{v}\" in {f}");
            if installed {
                return judged(id, CheckStatus::Ok, text, evidence);
            }
            format!("{text}, but unattended-upgrade is not installed")
        }
    };
    judged(id, CheckStatus::Warning, value, evidence)
}

/// Judges dnf-automatic from the enabled timer unit names and
/// /etc/dnf/automatic.conf (when readable).
pub fn judge_dnf_automatic<S: AsRef<str>>(
    enabled_timers: &[S],
    automatic_conf: Option<&str>,
    evidence: &str,
) -> CheckResult {
    let id = UPDATES_AUTOMATIC;
    let has = |t: &str| enabled_timers.iter().any(|n| n.as_ref() == t);
    if has("dnf-automatic-install.timer") {
        return judged(
            id,
            CheckStatus::Ok,
            "dnf-automatic-install.timer enabled",
            evidence,
        );
    }
    if has("dnf-automatic.timer") {
        let apply = automatic_conf.and_then(|c| {
            c.lines().find_map(|l| {
                let (k, v) = l.split_once('=')?;
                (k.trim() == "apply_updates").then(|| v.trim().to_ascii_lowercase())
            })
        });
        return match apply.as_deref() {
            Some("yes" | "true" | "1" | "on") => judged(
                id,
                CheckStatus::Ok,
                "dnf-automatic.timer enabled, apply_updates = yes",
                evidence,
            ),
            Some(v) => judged(
                id,
                CheckStatus::Warning,
                format!(
                    "dnf-automatic.timer enabled but apply_updates = {v} (download/notify only)"
                ),
                evidence,
            ),
            None if automatic_conf.is_none() => not_judged(
                id,
                "dnf-automatic.timer enabled but /etc/dnf/automatic.conf could not be read",
                evidence,
            ),
            None => judged(
                id,
                CheckStatus::Warning,
                "dnf-automatic.timer enabled, apply_updates not set (default no)",
                evidence,
            ),
        };
    }
    judged(
        id,
        CheckStatus::Warning,
        "no dnf-automatic timer enabled",
        evidence,
    )
}

// ---------------------------------------------------------------- shims

const FIREWALL_TIMEOUT: Duration = Duration::from_secs(20);

/// Runs every baseline item for this platform. Blocking (runs tools with a
/// timeout each); call from a blocking thread.
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

/// First non-empty line of stderr, else stdout, for reasons.
fn first_message(out: &crate::exec::Output) -> String {
    out.stderr
        .lines()
        .chain(out.stdout.lines())
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("no output")
        .to_owned()
}

#[cfg(not(windows))]
mod unix {
    use std::io::ErrorKind;
    use std::path::Path;

    use super::*;
    use crate::exec::{Cmd, ExecError, find_program};

    const SSHD_CONFIG: &str = "/etc/ssh/sshd_config";
    const SSHD_TIMEOUT: Duration = Duration::from_secs(15);
    const SS_TIMEOUT: Duration = Duration::from_secs(20);

    fn exit_text(code: Option<i32>) -> String {
        code.map_or_else(|| "killed by a signal".to_owned(), |c| format!("exit {c}"))
    }

    pub(super) fn collect() -> Findings {
        let mut out = Findings::default();
        out.checks.extend(ssh());
        out.checks.push(firewall());
        let passwd = std::fs::read_to_string("/etc/passwd");
        out.checks.push(match &passwd {
            Ok(text) => judge_uid0(text, "read /etc/passwd"),
            Err(e) => not_judged(
                ACCOUNTS_UID0,
                format!("cannot read /etc/passwd: {e}"),
                "/etc/passwd",
            ),
        });
        out.checks.push(empty_passwords(passwd.as_deref().ok()));
        out.checks.extend(login_defs());
        out.extend(listening());
        out.checks.push(auditd());
        out.checks.push(updates());
        out
    }

    fn ssh() -> Vec<CheckResult> {
        let ids = [SSH_PERMIT_ROOT_LOGIN, SSH_PASSWORD_AUTHENTICATION];
        let sshd_t: Result<(), String> = match Cmd::new("sshd", &["-T"]).timeout(SSHD_TIMEOUT).run()
        {
            Err(ExecError::NotFound(_)) => {
                // No SSH server is not a pass either: nothing was judged.
                return ids
                    .iter()
                    .map(|id| {
                        not_judged(
                            id,
                            "sshd is not installed",
                            "looked for sshd in the system PATH",
                        )
                    })
                    .collect();
            }
            Err(e) => Err(e.to_string()),
            Ok(o) => {
                let s = parse_sshd_t(&o.stdout);
                if o.code == Some(0)
                    && s.permit_root_login.is_some()
                    && s.password_authentication.is_some()
                {
                    let ev = format!("{} (effective settings, {})", o.command, exit_text(o.code));
                    return vec![
                        judge_permit_root_login(s.permit_root_login.as_deref(), &ev),
                        judge_password_authentication(s.password_authentication.as_deref(), &ev),
                    ];
                }
                Err(format!(
                    "{} failed ({}): {}",
                    o.command,
                    exit_text(o.code),
                    first_message(&o)
                ))
            }
        };
        let why = sshd_t.err().unwrap_or_default();
        let main = match std::fs::read_to_string(SSHD_CONFIG) {
            Ok(t) => t,
            Err(e) => {
                let reason = format!("{why}; cannot read {SSHD_CONFIG}: {e}");
                return ids
                    .iter()
                    .map(|id| not_judged(id, reason.clone(), format!("sshd -T; {SSHD_CONFIG}")))
                    .collect();
            }
        };
        let mut include = |pattern: &str| read_include(pattern);
        let scan = scan_sshd_config(SSHD_CONFIG, &main, &mut include);
        judge_sshd_config(&scan, &format!("{why}; fell back to the config files: "))
    }

    /// sshd_config Include: relative to /etc/ssh, glob in the last
    /// component only, files in lexical order.
    fn read_include(pattern: &str) -> Result<Vec<(String, String)>, String> {
        let path = if pattern.starts_with('/') {
            pattern.to_owned()
        } else {
            format!("/etc/ssh/{pattern}")
        };
        let (dir, name) = path.rsplit_once('/').unwrap_or(("/", path.as_str()));
        let dir = if dir.is_empty() { "/" } else { dir };
        let mut names: Vec<String> = if name.contains(['*', '?']) {
            let entries = std::fs::read_dir(dir).map_err(|e| format!("{dir}: {e}"))?;
            entries
                .filter_map(|e| e.ok())
                .filter(|e| e.path().is_file())
                .filter_map(|e| e.file_name().into_string().ok())
                .filter(|n| glob_match(name, n))
                .collect()
        } else {
            vec![name.to_owned()]
        };
        names.sort();
        let mut files = Vec::new();
        for n in names {
            let p = format!("{}/{n}", dir.trim_end_matches('/'));
            match std::fs::read_to_string(&p) {
                Ok(t) => files.push((p, t)),
                // sshd ignores a pattern that matches nothing.
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                Err(e) => return Err(format!("{p}: {e}")),
            }
        }
        Ok(files)
    }

    fn firewall() -> CheckResult {
        let probe =
            |tool: &str, args: &[&str], judge: fn(&str) -> FirewallState, ok_codes: &[i32]| {
                let cmd = Cmd::new(tool, args).timeout(FIREWALL_TIMEOUT);
                let line = std::iter::once(tool)
                    .chain(args.iter().copied())
                    .collect::<Vec<_>>()
                    .join(" ");
                match cmd.run() {
                    Err(ExecError::NotFound(_)) => FirewallProbe {
                        tool: tool.to_owned(),
                        evidence: format!("{line}: not installed"),
                        state: FirewallState::NotQueried("not installed".into()),
                    },
                    Err(e) => FirewallProbe {
                        tool: tool.to_owned(),
                        evidence: line,
                        state: FirewallState::NotQueried(e.to_string()),
                    },
                    Ok(o) => {
                        let evidence = format!("{} ({})", o.command, exit_text(o.code));
                        let state = if o.code.is_some_and(|c| ok_codes.contains(&c)) {
                            judge(&o.stdout)
                        } else {
                            FirewallState::NotQueried(format!(
                                "{}: {}",
                                exit_text(o.code),
                                first_message(&o)
                            ))
                        };
                        FirewallProbe {
                            tool: tool.to_owned(),
                            evidence,
                            state,
                        }
                    }
                }
            };
        let probes = [
            probe("nft", &["list", "ruleset"], nft_state, &[0]),
            probe("iptables", &["-S"], iptables_state, &[0]),
            probe("ufw", &["status"], ufw_state, &[0]),
            // firewall-cmd --state exits 252 when firewalld is not running.
            probe("firewall-cmd", &["--state"], firewalld_state, &[0, 252]),
        ];
        judge_firewall(&probes)
    }

    fn empty_passwords(passwd: Option<&str>) -> CheckResult {
        let evidence = "read /etc/passwd and /etc/shadow (password fields only)";
        match std::fs::read_to_string("/etc/shadow") {
            Ok(t) => judge_empty_password(passwd, Ok(&t), evidence),
            Err(e) if e.kind() == ErrorKind::PermissionDenied => {
                judge_empty_password(passwd, Err("needs root to read /etc/shadow"), evidence)
            }
            Err(e) => {
                let why = format!("cannot read /etc/shadow: {e}");
                judge_empty_password(passwd, Err(&why), evidence)
            }
        }
    }

    fn login_defs() -> Vec<CheckResult> {
        const PATH: &str = "/etc/login.defs";
        match std::fs::read_to_string(PATH) {
            Ok(t) => judge_login_defs(&parse_login_defs(&t), "read /etc/login.defs"),
            Err(e) => [PASSWORD_MAX_DAYS, PASSWORD_MIN_LEN, PASSWORD_WARN_AGE]
                .iter()
                .map(|id| not_judged(id, format!("cannot read {PATH}: {e}"), PATH))
                .collect(),
        }
    }

    fn listening() -> Findings {
        let mut f = Findings::default();
        match Cmd::new("ss", &["-H", "-tulpn"]).timeout(SS_TIMEOUT).run() {
            Ok(o) if o.code == Some(0) => {
                let mut ev = format!("{} ({})", o.command, exit_text(o.code));
                if o.truncated {
                    ev.push_str("; output truncated");
                }
                let (c, m) = judge_listeners(
                    &parse_ss_listeners(&o.stdout),
                    nix::unistd::geteuid().is_root(),
                    &ev,
                );
                f.checks.push(c);
                f.metrics.extend(m);
            }
            Ok(o) => f.checks.push(not_judged(
                NETWORK_LISTENING,
                format!(
                    "{} failed ({}): {}",
                    o.command,
                    exit_text(o.code),
                    first_message(&o)
                ),
                o.command.clone(),
            )),
            Err(e) => f
                .checks
                .push(not_judged(NETWORK_LISTENING, e.to_string(), "ss -H -tulpn")),
        }
        f
    }

    fn auditd() -> CheckResult {
        let names = match super::super::process_names() {
            Ok(names) => names,
            Err(reason) => return not_judged(AUDIT_AUDITD_RUNNING, reason, "/proc/*/comm"),
        };
        judge_auditd(&names, "read /proc/*/comm")
    }

    fn updates() -> CheckResult {
        if Path::new("/etc/apt").is_dir() {
            let mut files = Vec::new();
            let mut names: Vec<String> = std::fs::read_dir("/etc/apt/apt.conf.d")
                .map(|rd| {
                    rd.filter_map(|e| e.ok())
                        .filter_map(|e| e.file_name().into_string().ok())
                        .filter(|n| apt_reads_part(n))
                        .collect()
                })
                .unwrap_or_default();
            names.sort();
            // apt reads the parts first, then the main file.
            let paths = names
                .iter()
                .map(|n| format!("/etc/apt/apt.conf.d/{n}"))
                .chain(std::iter::once("/etc/apt/apt.conf".to_owned()));
            for p in paths {
                if let Ok(t) = std::fs::read_to_string(&p) {
                    files.push((p, t));
                }
            }
            let installed = find_program("unattended-upgrade").is_some();
            return judge_apt_automatic(
                &files,
                installed,
                "read /etc/apt/apt.conf.d/* and /etc/apt/apt.conf; looked for unattended-upgrade in the system PATH",
            );
        }
        if Path::new("/etc/dnf").is_dir() {
            let timers: Vec<String> = std::fs::read_dir("/etc/systemd/system/timers.target.wants")
                .map(|rd| {
                    rd.filter_map(|e| e.ok())
                        .filter_map(|e| e.file_name().into_string().ok())
                        .collect()
                })
                .unwrap_or_default();
            let conf = std::fs::read_to_string("/etc/dnf/automatic.conf").ok();
            return judge_dnf_automatic(
                &timers,
                conf.as_deref(),
                "listed /etc/systemd/system/timers.target.wants; read /etc/dnf/automatic.conf",
            );
        }
        not_judged(
            UPDATES_AUTOMATIC,
            "no supported package manager configuration (/etc/apt, /etc/dnf) found",
            "looked for /etc/apt and /etc/dnf",
        )
    }
}

#[cfg(windows)]
mod windows {
    use super::*;
    use crate::exec::Cmd;

    const LOCAL_KEY: &str =
        r"HKLM\SYSTEM\CurrentControlSet\Services\SharedAccess\Parameters\FirewallPolicy";
    const POLICY_KEY: &str = r"HKLM\SOFTWARE\Policies\Microsoft\WindowsFirewall";

    pub(super) fn collect() -> Findings {
        let mut out = Findings::default();
        out.checks.push(firewall());
        out
    }

    /// `reg export` writes only to a file: export to a temporary one and
    /// read it back.
    fn export(key: &str) -> Result<Vec<u8>, String> {
        let root = std::env::var("SystemRoot").unwrap_or_else(|_| r"C:\Windows".into());
        let reg = format!(r"{root}\System32\reg.exe");
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let file =
            std::env::temp_dir().join(format!("xunjian-fw-{}-{nanos}.reg", std::process::id()));
        let file_text = file.to_string_lossy().into_owned();
        let out = Cmd::new(&reg, &["export", key, &file_text, "/y"])
            .timeout(FIREWALL_TIMEOUT)
            .run()
            .map_err(|e| e.to_string())?;
        let read = std::fs::read(&file);
        let _ = std::fs::remove_file(&file);
        if out.code != Some(0) {
            return Err(format!("reg export {key}: {}", first_message(&out)));
        }
        read.map_err(|e| format!("reading the export of {key}: {e}"))
    }

    fn firewall() -> CheckResult {
        let local = match export(LOCAL_KEY) {
            Ok(b) => parse_firewall_reg(&decode_reg_export(&b)),
            Err(e) => return not_judged(FIREWALL_ACTIVE, e, format!("reg export {LOCAL_KEY}")),
        };
        // Absent unless a Group Policy configures the firewall.
        let (policy, note) = match export(POLICY_KEY) {
            Ok(b) => (parse_firewall_reg(&decode_reg_export(&b)), "read"),
            Err(_) => (Vec::new(), "absent"),
        };
        let evidence = format!("reg export {LOCAL_KEY}; reg export {POLICY_KEY} ({note})");
        judge_windows_firewall(&local, &policy, &evidence)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SSHD_T: &str =
        include_str!("../../testdata/baseline/debian12-this-image_sshd-T.stdout.txt");
    const SSHD_T_NO_RUN: &str =
        include_str!("../../testdata/baseline/debian12-this-image_sshd-T_no-run-sshd.stderr.txt");
    const SSHD_CONFIG: &str =
        include_str!("../../testdata/baseline/debian12-this-image_etc-ssh-sshd_config.txt");
    const NFT_EMPTY: &str = include_str!(
        "../../testdata/baseline/debian12-this-image_nft-list-ruleset_empty.stdout.txt"
    );
    const NFT_DROP_RULE: &str = include_str!(
        "../../testdata/baseline/debian12-this-image_nft-list-ruleset_testnet-drop-rule.stdout.txt"
    );
    const NFT_EMPTY_CHAINS: &str = include_str!(
        "../../testdata/baseline/debian12-this-image_nft-list-ruleset_iptables-nft-empty-chains.stdout.txt"
    );
    const IPT_DEFAULT: &str = include_str!(
        "../../testdata/baseline/debian12-this-image_iptables-S_default-accept.stdout.txt"
    );
    const IPT_DROP_RULE: &str = include_str!(
        "../../testdata/baseline/debian12-this-image_iptables-S_testnet-drop-rule.stdout.txt"
    );
    const UFW_INACTIVE: &str =
        include_str!("../../testdata/baseline/debian12-this-image_ufw-status.stdout.txt");
    const FW_DOMAIN: &[u8] = include_bytes!(
        "../../testdata/baseline/glpi-agent_reg-export_FirewallPolicy-DomainProfile_win10-enabled.utf16le.reg"
    );
    const FW_PUBLIC: &[u8] = include_bytes!(
        "../../testdata/baseline/glpi-agent_reg-export_FirewallPolicy-PublicProfile_win10-enabled.utf16le.reg"
    );
    const FW_STANDARD_OFF: &[u8] = include_bytes!(
        "../../testdata/baseline/glpi-agent_reg-export_FirewallPolicy-StandardProfile_win7-DISABLED.utf16le.reg"
    );
    const PASSWD: &str = include_str!("../../testdata/baseline/debian12-this-image_etc-passwd.txt");
    const SHADOW: &str =
        include_str!("../../testdata/baseline/debian12-this-image_etc-shadow_no-hashes.txt");
    const LOGIN_DEFS: &str =
        include_str!("../../testdata/baseline/debian12-this-image_login-defs-PASS.txt");
    const SS_H: &str = include_str!("../../testdata/baseline/debian12-this-image_ss-H-tulpn.txt");
    const SS_HEADER: &str =
        include_str!("../../testdata/baseline/debian12-this-image_ss-tulpn.txt");
    const PROC_COMM: &str =
        include_str!("../../testdata/baseline/debian12-this-image_proc-comm-sorted-unique.txt");
    const AUTO_UPGRADES: &str = include_str!(
        "../../testdata/baseline/debian12-unattended-upgrades-2.9.1_20auto-upgrades.txt"
    );
    const AUTO_UPGRADES_OFF: &str = include_str!(
        "../../testdata/baseline/debian12-unattended-upgrades-2.9.1_20auto-upgrades-disabled.txt"
    );

    fn status(r: &CheckResult) -> CheckStatus {
        CheckStatus::try_from(r.status).unwrap_or(CheckStatus::Unspecified)
    }

    /// Inputs no parser may panic on.
    fn garbage() -> Vec<String> {
        let mut g: Vec<String> = [
            "",
            "\n",
            ":",
            "::::::",
            "{",
            "}}}}",
            "chain {",
            "[",
            "[]",
            "\"",
            "\"EnableFirewall\"=dword:",
            "users:((\"",
            "users:((\"x\",pid=",
            "tcp LISTEN 0 128 : :",
            "/* unterminated",
            "a \"unterminated",
            "Include",
            "Match",
            "PermitRootLogin",
            "é∂ƒ©˙∆˚¬…æ",
            "\u{0}\u{1}\u{ffff}",
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        for fixture in [
            SSHD_T,
            SSHD_CONFIG,
            NFT_DROP_RULE,
            IPT_DROP_RULE,
            PASSWD,
            SS_H,
            AUTO_UPGRADES,
        ] {
            for cut in [1, 7, fixture.len() / 2, fixture.len().saturating_sub(3)] {
                let mut end = cut.min(fixture.len());
                while !fixture.is_char_boundary(end) {
                    end -= 1;
                }
                g.push(fixture[..end].to_owned());
            }
        }
        g
    }

    #[test]
    fn items_table_is_complete_and_unique() {
        let mut ids: Vec<&str> = ITEMS.iter().map(|i| i.id).collect();
        let n = ids.len();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), n, "duplicate ids");
        for i in ITEMS {
            assert!(i.id.starts_with("baseline."), "{}", i.id);
            assert!(!i.title_en.is_empty() && !i.checks.is_empty() && !i.expected.is_empty());
            assert!(
                i.title_zh.chars().any(|c| c > '\u{2e80}'),
                "{} lacks a Chinese title",
                i.id
            );
        }
        for id in [
            SSH_PERMIT_ROOT_LOGIN,
            SSH_PASSWORD_AUTHENTICATION,
            FIREWALL_ACTIVE,
            ACCOUNTS_UID0,
            ACCOUNTS_EMPTY_PASSWORD,
            PASSWORD_MAX_DAYS,
            PASSWORD_MIN_LEN,
            PASSWORD_WARN_AGE,
            NETWORK_LISTENING,
            AUDIT_AUDITD_RUNNING,
            UPDATES_AUTOMATIC,
        ] {
            assert!(item(id).is_some(), "{id} missing from ITEMS");
        }
        assert_eq!(ITEMS.len(), 11);
    }

    #[test]
    fn sshd_t_on_this_image_gives_effective_values() {
        let s = parse_sshd_t(SSHD_T);
        assert_eq!(s.permit_root_login.as_deref(), Some("without-password"));
        assert_eq!(s.password_authentication.as_deref(), Some("yes"));
        let r = judge_permit_root_login(s.permit_root_login.as_deref(), "sshd -T");
        assert_eq!(status(&r), CheckStatus::Ok);
        assert_eq!(r.value, "without-password (old name of prohibit-password)");
        assert!(!r.threshold.is_empty());
        let r = judge_password_authentication(s.password_authentication.as_deref(), "sshd -T");
        assert_eq!(status(&r), CheckStatus::Warning);
    }

    #[test]
    fn sshd_t_error_output_has_no_values() {
        // Real: sshd -T on this image before /run/sshd existed (exit 255).
        assert_eq!(parse_sshd_t(SSHD_T_NO_RUN), SshSettings::default());
        let r = judge_permit_root_login(None, "sshd -T");
        assert_eq!(status(&r), CheckStatus::Unknown);
        assert!(!r.reason.is_empty());
    }

    #[test]
    fn permit_root_login_values() {
        for (v, s) in [
            ("no", CheckStatus::Ok),
            ("prohibit-password", CheckStatus::Ok),
            ("forced-commands-only", CheckStatus::Ok),
            ("yes", CheckStatus::Critical),
            ("maybe", CheckStatus::Unknown),
        ] {
            assert_eq!(status(&judge_permit_root_login(Some(v), "e")), s, "{v}");
        }
        assert_eq!(
            status(&judge_password_authentication(Some("no"), "e")),
            CheckStatus::Ok
        );
    }

    #[test]
    fn debian_sshd_config_falls_back_to_openssh_defaults() {
        // Real Debian 12 sshd_config: both keywords are commented out and
        // the Include directory is empty.
        let mut seen = Vec::new();
        let mut include = |p: &str| {
            seen.push(p.to_owned());
            Ok(Vec::new())
        };
        let scan = scan_sshd_config("/etc/ssh/sshd_config", SSHD_CONFIG, &mut include);
        assert_eq!(seen, ["/etc/ssh/sshd_config.d/*.conf"]);
        assert_eq!(scan.settings, SshSettings::default());
        assert!(!scan.match_blocks_skipped);
        let r = judge_sshd_config(&scan, "sshd -T failed; ");
        assert_eq!(status(&r[0]), CheckStatus::Ok);
        assert_eq!(r[0].value, "prohibit-password (not set, OpenSSH default)");
        assert_eq!(status(&r[1]), CheckStatus::Warning);
        assert_eq!(r[1].value, "yes (not set, OpenSSH default)");
        assert!(r[0].evidence.contains("/etc/ssh/sshd_config"));
    }

    #[test]
    fn sshd_config_include_comes_first_and_match_is_skipped() {
        // Constructed (not captured): an include that disables root login,
        // and a later main-file value that sshd ignores (first one wins).
        let main = "Include /etc/ssh/sshd_config.d/*.conf\nPermitRootLogin yes\n\
                    Match User backup\n  PasswordAuthentication yes\n";
        let mut include = |_: &str| {
            Ok(vec![(
                "/etc/ssh/sshd_config.d/10-hardening.conf".to_owned(),
                "permitrootlogin=no\nPasswordAuthentication \"no\"\n".to_owned(),
            )])
        };
        let scan = scan_sshd_config("/etc/ssh/sshd_config", main, &mut include);
        assert_eq!(scan.settings.permit_root_login.as_deref(), Some("no"));
        assert_eq!(scan.settings.password_authentication.as_deref(), Some("no"));
        assert!(scan.match_blocks_skipped);
        assert_eq!(scan.files.len(), 2);
        let r = judge_sshd_config(&scan, "");
        assert_eq!(r[0].value, "no (set in config)");
        assert!(r[1].evidence.contains("Match blocks not evaluated"));
    }

    #[test]
    fn sshd_config_include_loop_stops() {
        // Constructed: a file that includes itself.
        let mut include = |p: &str| Ok(vec![(p.to_owned(), format!("Include {p}\n"))]);
        let scan = scan_sshd_config("/a", "Include /a\n", &mut include);
        assert!(scan.files.len() <= SSHD_INCLUDE_DEPTH);
        assert!(scan.problems.iter().any(|p| p.contains("too deep")));
    }

    /// Found by fuzzing (`fuzz/artifacts/baseline/timeout-*`): includes
    /// that match the including file more than once multiplied the reads
    /// at every level (2^15 files here; 3 patterns would be 3^15).
    #[test]
    fn sshd_config_include_fan_out_is_bounded() {
        let mut reads = 0;
        let mut include = |p: &str| {
            reads += 1;
            Ok(vec![(p.to_owned(), format!("Include {p} {p}\n"))])
        };
        let scan = scan_sshd_config("/a", "Include /a\n", &mut include);
        assert!(scan.files.len() <= MAX_SSHD_CONFIG_FILES);
        assert!(reads <= MAX_SSHD_CONFIG_FILES);
        assert!(scan.problems.iter().any(|p| p.contains("files read")));
    }

    #[test]
    fn glob_matching() {
        assert!(glob_match("*.conf", "10-a.conf"));
        assert!(!glob_match("*.conf", "10-a.conf.bak"));
        assert!(glob_match("a?c", "abc"));
        assert!(glob_match("*", ""));
        assert!(!glob_match("", "a"));
        assert!(glob_match("**x*", "yyxyy"));
    }

    #[test]
    fn nftables_rulesets_from_this_image() {
        assert!(matches!(nft_state(NFT_EMPTY), FirewallState::Inactive(_)));
        assert!(
            matches!(nft_state(NFT_EMPTY_CHAINS), FirewallState::Inactive(t) if t.contains("policy accept"))
        );
        match nft_state(NFT_DROP_RULE) {
            FirewallState::Active(t) => assert!(t.contains("1 rule(s)"), "{t}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn nftables_drop_policy_and_forward_only() {
        // Constructed in nft's listing syntax: a drop policy on input is
        // active; forward-only rules (as Docker adds) are not.
        let drop = "table inet filter {\n\tchain input {\n\t\ttype filter hook input priority filter; policy drop;\n\t}\n}\n";
        assert!(matches!(nft_state(drop), FirewallState::Active(_)));
        let fwd = "table ip filter {\n\tchain FORWARD {\n\t\ttype filter hook forward priority filter; policy drop;\n\t\tcounter packets 0 bytes 0 jump DOCKER-USER\n\t}\n\tchain DOCKER-USER {\n\t\tcounter packets 0 bytes 0 return\n\t}\n}\n";
        assert!(matches!(nft_state(fwd), FirewallState::Inactive(_)));
    }

    #[test]
    fn iptables_and_ufw_from_this_image() {
        assert!(matches!(
            iptables_state(IPT_DEFAULT),
            FirewallState::Inactive(_)
        ));
        assert!(matches!(
            iptables_state(IPT_DROP_RULE),
            FirewallState::Active(_)
        ));
        assert!(matches!(iptables_state(""), FirewallState::NotQueried(_)));
        assert_eq!(
            ufw_state(UFW_INACTIVE),
            FirewallState::Inactive("ufw: inactive".into())
        );
        // Constructed: the first line ufw prints when enabled.
        assert!(matches!(
            ufw_state("Status: active\n"),
            FirewallState::Active(_)
        ));
        // Constructed: firewall-cmd --state answers.
        assert!(matches!(
            firewalld_state("running\n"),
            FirewallState::Active(_)
        ));
        assert!(matches!(
            firewalld_state("not running\n"),
            FirewallState::Inactive(_)
        ));
    }

    fn probe(tool: &str, state: FirewallState) -> FirewallProbe {
        FirewallProbe {
            tool: tool.into(),
            evidence: format!("{tool} ran"),
            state,
        }
    }

    #[test]
    fn firewall_judgement() {
        let none = [
            probe("nft", nft_state(NFT_EMPTY)),
            probe("iptables", iptables_state(IPT_DEFAULT)),
            probe("ufw", ufw_state(UFW_INACTIVE)),
            probe(
                "firewall-cmd",
                FirewallState::NotQueried("not installed".into()),
            ),
        ];
        let r = judge_firewall(&none);
        assert_eq!(status(&r), CheckStatus::Critical);
        assert!(r.value.starts_with("no active firewall"), "{}", r.value);
        assert!(r.value.contains("firewall-cmd: not installed"));
        let mut one = none.clone();
        one[0] = probe("nft", nft_state(NFT_DROP_RULE));
        assert_eq!(status(&judge_firewall(&one)), CheckStatus::Ok);
        let unqueried = [
            probe(
                "nft",
                FirewallState::NotQueried("exit 1: Operation not permitted".into()),
            ),
            probe("ufw", FirewallState::NotQueried("not installed".into())),
        ];
        let r = judge_firewall(&unqueried);
        assert_eq!(status(&r), CheckStatus::Unknown);
        assert!(r.reason.contains("Operation not permitted"));
        assert_eq!(status(&judge_firewall(&[])), CheckStatus::Unknown);
    }

    #[test]
    fn windows_firewall_reg_exports() {
        let domain = parse_firewall_reg(&decode_reg_export(FW_DOMAIN));
        assert_eq!(domain.len(), 1, "the Logging subkey is not a profile");
        assert_eq!(domain[0].profile, "DomainProfile");
        assert_eq!(domain[0].enabled, Some(true));
        let public = parse_firewall_reg(&decode_reg_export(FW_PUBLIC));
        assert_eq!(public[0].profile, "PublicProfile");
        assert_eq!(public[0].enabled, Some(true));
        let standard = parse_firewall_reg(&decode_reg_export(FW_STANDARD_OFF));
        assert_eq!(standard[0].profile, "StandardProfile");
        assert_eq!(standard[0].enabled, Some(false));

        let all: Vec<FirewallProfile> = [domain.clone(), public.clone(), standard.clone()].concat();
        let r = judge_windows_firewall(&all, &[], "reg export");
        assert_eq!(status(&r), CheckStatus::Critical);
        assert!(
            r.value.contains("StandardProfile: off (local)"),
            "{}",
            r.value
        );
        let on: Vec<FirewallProfile> = [domain, public].concat();
        assert_eq!(
            status(&judge_windows_firewall(&on, &[], "e")),
            CheckStatus::Ok
        );

        // Constructed: a Group Policy export enabling the private profile
        // overrides the local "off".
        let gpo = "Windows Registry Editor Version 5.00\r\n\r\n[HKEY_LOCAL_MACHINE\\SOFTWARE\\Policies\\Microsoft\\WindowsFirewall\\PrivateProfile]\r\n\"EnableFirewall\"=dword:00000001\r\n";
        let policy = parse_firewall_reg(gpo);
        assert_eq!(policy[0].enabled, Some(true));
        let r = judge_windows_firewall(&all, &policy, "e");
        assert_eq!(status(&r), CheckStatus::Ok, "{}", r.value);
        assert!(r.value.contains("StandardProfile: on (group policy)"));
        assert_eq!(
            status(&judge_windows_firewall(&[], &[], "e")),
            CheckStatus::Unknown
        );
    }

    #[test]
    fn reg_decoding_odd_inputs() {
        assert_eq!(decode_reg_export(&[0xFF, 0xFE, b'a']), "");
        assert_eq!(decode_reg_export(&[0xFF, 0xFE, b'a', 0]), "a");
        assert_eq!(decode_reg_export(b"\xEF\xBB\xBFx"), "x");
        assert_eq!(decode_reg_export(&[0xFF, 0xFE, 0x00, 0xD8]), "\u{FFFD}");
        // Truncated in the middle of the fixture: no panic, no false value.
        let cut = &FW_STANDARD_OFF[..FW_STANDARD_OFF.len() / 3];
        let p = parse_firewall_reg(&decode_reg_export(cut));
        assert!(p.iter().all(|p| p.enabled != Some(true)));
    }

    #[test]
    fn accounts_from_this_image() {
        let r = judge_uid0(PASSWD, "read /etc/passwd");
        assert_eq!(status(&r), CheckStatus::Ok);
        assert_eq!(r.value, "none");
        // Real shadow of this image: every password field is locked (*, !).
        assert!(empty_password_accounts(SHADOW).is_empty());
        let r = judge_empty_password(Some(PASSWD), Ok(SHADOW), "e");
        assert_eq!(status(&r), CheckStatus::Ok);
        let r = judge_empty_password(Some(PASSWD), Err("needs root to read /etc/shadow"), "e");
        assert_eq!(status(&r), CheckStatus::Unknown);
        assert_eq!(r.reason, "needs root to read /etc/shadow");
    }

    #[test]
    fn accounts_constructed_failures() {
        // Constructed lines in passwd/shadow format.
        let passwd = format!(
            "{PASSWD}toor:x:0:0:backdoor:/root:/bin/sh\nguest::1001:1001::/home/guest:/bin/sh\n"
        );
        let r = judge_uid0(&passwd, "e");
        assert_eq!(status(&r), CheckStatus::Critical);
        assert_eq!(r.value, "toor");
        let shadow = format!("{SHADOW}dev::19000:0:99999:7:::\nlocked:!:19000:0:99999:7:::\n");
        assert_eq!(empty_password_accounts(&shadow), ["dev"]);
        let r = judge_empty_password(Some(&passwd), Ok(&shadow), "e");
        assert_eq!(status(&r), CheckStatus::Critical);
        assert_eq!(r.value, "dev, guest");
        // An empty passwd field fails even when shadow is unreadable.
        let r = judge_empty_password(Some(&passwd), Err("needs root"), "e");
        assert_eq!(status(&r), CheckStatus::Critical);
        assert_eq!(status(&judge_uid0("", "e")), CheckStatus::Unknown);
        assert_eq!(
            status(&judge_empty_password(None, Ok(""), "e")),
            CheckStatus::Unknown
        );
    }

    #[test]
    fn login_defs_fixture() {
        let d = parse_login_defs(LOGIN_DEFS);
        assert_eq!(d.pass_max_days, Some(Ok(99999)));
        assert_eq!(d.pass_min_days, Some(Ok(0)));
        assert_eq!(d.pass_warn_age, Some(Ok(7)));
        assert_eq!(d.pass_min_len, None);
        let r = judge_login_defs(&d, "read /etc/login.defs");
        assert_eq!(r[0].check_id, PASSWORD_MAX_DAYS);
        assert_eq!(status(&r[0]), CheckStatus::Warning);
        assert_eq!(r[0].value, "99999 days");
        assert_eq!(r[1].check_id, PASSWORD_MIN_LEN);
        assert_eq!(status(&r[1]), CheckStatus::Unknown);
        assert_eq!(r[2].check_id, PASSWORD_WARN_AGE);
        assert_eq!(status(&r[2]), CheckStatus::Ok);
    }

    #[test]
    fn login_defs_constructed_values() {
        // Constructed login.defs lines.
        let d = parse_login_defs(
            "# PASS_MAX_DAYS 1\nPASS_MAX_DAYS 60\nPASS_MIN_LEN 6\nPASS_WARN_AGE abc\n",
        );
        let r = judge_login_defs(&d, "e");
        assert_eq!(status(&r[0]), CheckStatus::Ok);
        assert_eq!(status(&r[1]), CheckStatus::Warning);
        assert_eq!(status(&r[2]), CheckStatus::Unknown);
        let r = judge_login_defs(&parse_login_defs("PASS_MAX_DAYS -1\n"), "e");
        assert_eq!(status(&r[0]), CheckStatus::Warning);
        assert_eq!(status(&r[2]), CheckStatus::Warning);
    }

    #[test]
    fn ss_output_from_this_image() {
        let l = parse_ss_listeners(SS_H);
        assert_eq!(l.len(), 2);
        assert_eq!(l[0].local, "0.0.0.0:2024");
        assert_eq!(l[0].port, Some(2024));
        assert!(l[0].processes.is_empty());
        assert_eq!(l[1].processes, [("xunjian".to_owned(), 30366)]);
        let (c, m) = judge_listeners(&l, false, "ss -H -tulpn");
        let (root, _) = judge_listeners(&l, true, "ss -H -tulpn");
        assert!(root.evidence.contains("another PID namespace"));
        assert_eq!(status(&c), CheckStatus::Ok);
        assert!(c.value.starts_with("2 listening socket(s)"), "{}", c.value);
        assert!(c.value.contains("(process unknown)"));
        assert!(c.evidence.contains("only to root"));
        assert_eq!(m.len(), 2);
        assert_eq!((m[0].name.as_str(), m[0].value), (METRIC_LISTENING, 2.0));
        assert_eq!(m[1].value, 0.0);
        // The shared capture was taken without -H: its header is skipped.
        let l = parse_ss_listeners(SS_HEADER);
        assert_eq!(l.len(), 1);
        assert_eq!(l[0].port, Some(2024));
    }

    #[test]
    fn ss_constructed_udp_ipv6_and_many_users() {
        // Constructed in ss's format: IPv6, scoped address, two processes.
        let text = "udp UNCONN 0 0 127.0.0.53%lo:53 0.0.0.0:* users:((\"systemd-resolve\",pid=501,fd=13))\n\
                    tcp LISTEN 0 128 [::]:22 [::]:* users:((\"sshd\",pid=812,fd=4),(\"sshd\",pid=9000,fd=4))\n";
        let l = parse_ss_listeners(text);
        assert_eq!(l[0].port, Some(53));
        assert_eq!(l[0].processes[0].0, "systemd-resolve");
        assert_eq!(l[1].port, Some(22));
        assert_eq!(l[1].processes.len(), 2);
        let (_, m) = judge_listeners(&l, true, "e");
        assert_eq!(m[1].value, 1.0);
    }

    #[test]
    fn auditd_from_this_image() {
        let names: Vec<&str> = PROC_COMM.lines().collect();
        assert!(names.contains(&"kauditd"));
        let r = judge_auditd(&names, "read /proc/*/comm");
        assert_eq!(status(&r), CheckStatus::Warning);
        assert!(auditd_running(&["systemd", "auditd\n"]));
        let empty: [&str; 0] = [];
        assert_eq!(status(&judge_auditd(&empty, "e")), CheckStatus::Unknown);
    }

    #[test]
    fn unattended_upgrades_files() {
        let on = vec![(
            "/etc/apt/apt.conf.d/20auto-upgrades".to_owned(),
            AUTO_UPGRADES.to_owned(),
        )];
        let r = judge_apt_automatic(&on, true, "e");
        assert_eq!(status(&r), CheckStatus::Ok, "{}", r.value);
        assert!(r.value.contains("\"1\""));
        assert_eq!(
            status(&judge_apt_automatic(&on, false, "e")),
            CheckStatus::Warning
        );
        let off = vec![(
            "/etc/apt/apt.conf.d/20auto-upgrades".to_owned(),
            AUTO_UPGRADES_OFF.to_owned(),
        )];
        assert_eq!(
            status(&judge_apt_automatic(&off, true, "e")),
            CheckStatus::Warning
        );
        let r = judge_apt_automatic(&[], true, "e");
        assert_eq!(r.value, "APT::Periodic::Unattended-Upgrade not set");
        // A later file overrides an earlier one, as apt reads them.
        let both = [on.clone(), off.clone()].concat();
        assert_eq!(
            status(&judge_apt_automatic(&both, true, "e")),
            CheckStatus::Warning
        );
        let both = [off, on].concat();
        assert_eq!(
            status(&judge_apt_automatic(&both, true, "e")),
            CheckStatus::Ok
        );
    }

    #[test]
    fn apt_conf_syntax() {
        // Constructed apt.conf in nested and commented forms.
        let text = "// APT::Periodic::Unattended-Upgrade \"9\";\n/* block\n APT::Periodic::Enable \"0\"; */\n\
                    #clear APT::Periodic;\nAPT {\n  Periodic {\n    Unattended-Upgrade \"2\";\n  };\n};\n\
                    Acquire::http::Proxy \"http://p:3128/\"; // trailing\n";
        let kv = parse_apt_conf(text);
        assert_eq!(
            kv,
            [
                (
                    "apt::periodic::unattended-upgrade".to_owned(),
                    "2".to_owned()
                ),
                (
                    "acquire::http::proxy".to_owned(),
                    "http://p:3128/".to_owned()
                ),
            ]
        );
        let files = vec![(
            "f".to_owned(),
            "APT::Periodic::Enable \"0\";\n".to_owned() + text,
        )];
        assert_eq!(
            status(&judge_apt_automatic(&files, true, "e")),
            CheckStatus::Warning
        );
        assert!(apt_reads_part("20auto-upgrades"));
        assert!(!apt_reads_part("20auto-upgrades.dpkg-old"));
        assert!(!apt_reads_part("50unattended-upgrades~"));
    }

    #[test]
    fn dnf_automatic_states() {
        // Constructed timer names and automatic.conf lines.
        let r = judge_dnf_automatic(&["dnf-automatic-install.timer"], None, "e");
        assert_eq!(status(&r), CheckStatus::Ok);
        let r = judge_dnf_automatic(
            &["dnf-automatic.timer"],
            Some("[commands]\napply_updates = yes\n"),
            "e",
        );
        assert_eq!(status(&r), CheckStatus::Ok);
        let r = judge_dnf_automatic(
            &["dnf-automatic.timer"],
            Some("[commands]\napply_updates = no\n"),
            "e",
        );
        assert_eq!(status(&r), CheckStatus::Warning);
        let r = judge_dnf_automatic(&["dnf-automatic.timer"], None, "e");
        assert_eq!(status(&r), CheckStatus::Unknown);
        let r = judge_dnf_automatic(&["fstrim.timer"], None, "e");
        assert_eq!(status(&r), CheckStatus::Warning);
    }

    #[test]
    fn parsers_do_not_panic_on_garbage() {
        for g in garbage() {
            let _ = parse_sshd_t(&g);
            let mut include = |p: &str| Ok(vec![(p.to_owned(), g.clone())]);
            let _ = scan_sshd_config("/x", &g, &mut include);
            let _ = nft_state(&g);
            let _ = iptables_state(&g);
            let _ = ufw_state(&g);
            let _ = firewalld_state(&g);
            let _ = parse_firewall_reg(&g);
            let _ = decode_reg_export(g.as_bytes());
            let _ = uid0_accounts(&g);
            let _ = empty_password_accounts(&g);
            let _ = judge_login_defs(&parse_login_defs(&g), "e");
            let _ = parse_ss_listeners(&g);
            let _ = parse_ss_users(&g);
            let _ = parse_apt_conf(&g);
            let _ = glob_match(&g, &g);
            let _ = judge_apt_automatic(&[("f".into(), g.clone())], true, "e");
        }
    }

    #[test]
    #[cfg(target_os = "linux")]
    fn collect_runs_here_and_never_reports_ok_without_a_value() {
        let f = collect();
        assert_eq!(f.checks.len(), ITEMS.len(), "{:#?}", f.checks);
        for c in &f.checks {
            assert!(item(&c.check_id).is_some(), "{}", c.check_id);
            if c.status == CheckStatus::Unknown as i32 {
                assert!(!c.reason.is_empty(), "{c:?}");
            } else {
                assert!(!c.value.is_empty() && !c.threshold.is_empty(), "{c:?}");
            }
            assert!(!c.evidence.is_empty(), "{c:?}");
        }
    }
}
