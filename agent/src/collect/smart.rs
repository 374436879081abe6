//! Disk health from SMART via `smartctl --json` (smartmontools 7.0+): a
//! scan for devices, one `smartctl -a` per device, a pure parser of its
//! JSON and a judgement per device.

use std::time::Duration;

use serde_json::Value;
use xunjian_proto::{CheckResult, CheckStatus};

use super::{Findings, check, metric, unknown};
use crate::exec::{Cmd, ExecError};

const SMARTCTL: &str = "smartctl";
const CHECK_ID: &str = "disk.smart.health";
const CHECK_TITLE: &str = "Disk SMART health";
const THRESHOLD: &str = "SMART overall-health PASSED; reallocated, pending, offline-uncorrectable sectors and SCSI grown defects = 0; \
                         NVMe percentage used < 80%, critical warning = 0, media errors = 0";
/// Per device: a USB bridge or a busy disk can take seconds to answer.
const DEVICE_TIMEOUT: Duration = Duration::from_secs(30);
const SCAN_TIMEOUT: Duration = Duration::from_secs(60);
/// NVMe "percentage used" is the vendor's wear estimate; from 80% on it is
/// time to plan a replacement.
const NVME_WEAR_WARN_PCT: u64 = 80;

/// The meaning of each bit of smartctl's exit status (smartctl(8), "RETURN
/// VALUES"), bit 0 first.
pub const EXIT_STATUS_BITS: [&str; 8] = [
    "command line did not parse",
    "device open failed, device did not return an IDENTIFY DEVICE structure, or device is in a low-power mode",
    "some SMART or other ATA command to the disk failed, or a SMART data structure has a checksum error",
    "SMART status check returned DISK FAILING",
    "prefail attributes at or below threshold",
    "SMART status OK, but some usage or prefail attributes were at or below threshold in the past",
    "the device error log contains records of errors",
    "the device self-test log contains records of errors",
];

/// The meanings of the bits set in a smartctl exit status.
pub fn exit_status_meanings(status: u8) -> Vec<&'static str> {
    EXIT_STATUS_BITS
        .iter()
        .enumerate()
        .filter(|(bit, _)| status & (1 << bit) != 0)
        .map(|(_, text)| *text)
        .collect()
}

/// The transport smartctl talked to the device with.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Protocol {
    Ata,
    Nvme,
    Scsi,
    #[default]
    Unknown,
}

/// What one `smartctl --json -a` said about a device. Fields are `None`
/// when the output did not carry them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SmartDevice {
    /// e.g. "/dev/sda"; from `device.name`, else the device in argv.
    pub name: String,
    /// smartctl's `-d` type, e.g. "sat", "nvme", "megaraid,0".
    pub device_type: String,
    pub protocol: Protocol,
    pub model: String,
    pub serial: String,
    /// `smart_support.available` / `.enabled` (ATA and SCSI only).
    pub smart_available: Option<bool>,
    pub smart_enabled: Option<bool>,
    /// The overall-health self-assessment.
    pub passed: Option<bool>,
    pub temperature_c: Option<i64>,
    pub power_on_hours: Option<u64>,
    /// ATA attribute 5, raw.
    pub reallocated_sectors: Option<u64>,
    /// ATA attribute 197, raw.
    pub pending_sectors: Option<u64>,
    /// ATA attribute 198, raw.
    pub offline_uncorrectable: Option<u64>,
    /// ATA attributes whose normalized value is or was at or below their
    /// threshold: (name, "now" or "past").
    pub failed_attributes: Vec<(String, String)>,
    /// ATA error log entry count.
    pub error_log_count: Option<u64>,
    /// SCSI grown defect list length.
    pub scsi_grown_defects: Option<u64>,
    pub nvme_percentage_used: Option<u64>,
    pub nvme_critical_warning: Option<u64>,
    pub nvme_media_errors: Option<u64>,
    /// `smartctl.exit_status`, the bit mask of [`EXIT_STATUS_BITS`].
    pub exit_status: Option<u8>,
    /// `smartctl.messages[].string`, e.g. why the device could not be opened.
    pub messages: Vec<String>,
}

/// Parses one `smartctl --json -a` output. `Err` only when it is not a
/// smartctl JSON object at all; a device smartctl could not read parses to
/// a `SmartDevice` without health data, with its exit status and messages.
pub fn parse_device(json: &str) -> Result<SmartDevice, String> {
    if json.trim().is_empty() {
        return Err("empty output".to_owned());
    }
    let v: Value = serde_json::from_str(json).map_err(|e| {
        if json.trim_start().starts_with('{') {
            format!("invalid JSON: {e}")
        } else {
            // smartmontools before 7.0 prints an "UNRECOGNIZED OPTION" text.
            "output is not JSON (smartctl 7.0 or newer is needed for --json)".to_owned()
        }
    })?;
    if !v.is_object() {
        return Err("output is not a JSON object".to_owned());
    }
    let name = str_at(&v, "/device/name").unwrap_or_else(|| device_from_argv(&v));
    let protocol = match str_at(&v, "/device/protocol")
        .map(|p| p.to_ascii_uppercase())
        .as_deref()
    {
        Some("ATA") => Protocol::Ata,
        Some("NVME") => Protocol::Nvme,
        Some("SCSI") => Protocol::Scsi,
        _ if v.get("nvme_smart_health_information_log").is_some() => Protocol::Nvme,
        _ if v.get("ata_smart_attributes").is_some() => Protocol::Ata,
        _ => Protocol::Unknown,
    };
    let attr = |id: u64| ata_attribute(&v, id);
    let mut dev = SmartDevice {
        name,
        device_type: str_at(&v, "/device/type").unwrap_or_default(),
        protocol,
        model: str_at(&v, "/model_name")
            .or_else(|| str_at(&v, "/product"))
            .unwrap_or_default(),
        serial: str_at(&v, "/serial_number").unwrap_or_default(),
        smart_available: v
            .pointer("/smart_support/available")
            .and_then(Value::as_bool),
        smart_enabled: v.pointer("/smart_support/enabled").and_then(Value::as_bool),
        passed: v.pointer("/smart_status/passed").and_then(Value::as_bool),
        temperature_c: v
            .pointer("/temperature/current")
            .and_then(Value::as_i64)
            .or_else(|| {
                v.pointer("/nvme_smart_health_information_log/temperature")
                    .and_then(Value::as_i64)
            }),
        power_on_hours: u64_at(&v, "/power_on_time/hours")
            .or_else(|| u64_at(&v, "/nvme_smart_health_information_log/power_on_hours"))
            .or_else(|| attr(9).and_then(raw_count)),
        reallocated_sectors: attr(5).and_then(raw_count),
        pending_sectors: attr(197).and_then(raw_count),
        offline_uncorrectable: attr(198).and_then(raw_count),
        failed_attributes: failed_attributes(&v),
        error_log_count: u64_at(&v, "/ata_smart_error_log/summary/count")
            .or_else(|| u64_at(&v, "/ata_smart_error_log/extended/count")),
        scsi_grown_defects: u64_at(&v, "/scsi_grown_defect_list"),
        nvme_percentage_used: u64_at(&v, "/nvme_smart_health_information_log/percentage_used"),
        nvme_critical_warning: u64_at(&v, "/nvme_smart_health_information_log/critical_warning"),
        nvme_media_errors: u64_at(&v, "/nvme_smart_health_information_log/media_errors"),
        exit_status: u64_at(&v, "/smartctl/exit_status").map(|s| (s & 0xff) as u8),
        messages: Vec::new(),
    };
    if let Some(messages) = v.pointer("/smartctl/messages").and_then(Value::as_array) {
        dev.messages = messages
            .iter()
            .filter_map(|m| m.get("string").and_then(Value::as_str))
            .map(str::to_owned)
            .collect();
    }
    Ok(dev)
}

/// The `(name, type)` pairs of `smartctl --scan-open --json`, each to be
/// passed back as `-d TYPE NAME`. Empty on no devices or unparsable input.
pub fn parse_scan(json: &str) -> Vec<(String, String)> {
    scan_result(json).unwrap_or_default()
}

fn scan_result(json: &str) -> Result<Vec<(String, String)>, String> {
    let v: Value = serde_json::from_str(json).map_err(|e| format!("invalid JSON: {e}"))?;
    if !v.is_object() {
        return Err("output is not a JSON object".to_owned());
    }
    let mut out: Vec<(String, String)> = Vec::new();
    // smartctl leaves the array out entirely when it finds nothing.
    for d in v
        .get("devices")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let Some(name) = d
            .get("name")
            .and_then(Value::as_str)
            .filter(|n| !n.is_empty())
        else {
            continue;
        };
        let dtype = d.get("type").and_then(Value::as_str).unwrap_or("");
        let pair = (name.to_owned(), dtype.to_owned());
        if !out.contains(&pair) {
            out.push(pair);
        }
    }
    Ok(out)
}

fn str_at(v: &Value, pointer: &str) -> Option<String> {
    v.pointer(pointer)
        .and_then(Value::as_str)
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
}

fn u64_at(v: &Value, pointer: &str) -> Option<u64> {
    v.pointer(pointer).and_then(Value::as_u64)
}

/// The last argv word naming a device, for outputs without `device` (a
/// device smartctl could not open).
fn device_from_argv(v: &Value) -> String {
    v.pointer("/smartctl/argv")
        .and_then(Value::as_array)
        .and_then(|argv| {
            argv.iter()
                .filter_map(Value::as_str)
                .rev()
                .find(|a| a.starts_with("/dev/"))
        })
        .unwrap_or_default()
        .to_owned()
}

fn ata_table(v: &Value) -> impl Iterator<Item = &Value> {
    v.pointer("/ata_smart_attributes/table")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
}

fn ata_attribute(v: &Value, id: u64) -> Option<&Value> {
    ata_table(v).find(|a| a.get("id").and_then(Value::as_u64) == Some(id))
}

/// The raw count of an attribute. smartctl's `raw.string` is the value as
/// interpreted for this drive model (honouring its raw-format database),
/// so its leading number is preferred; `raw.value` is the whole 48-bit
/// field, which on some drives packs extra bytes.
fn raw_count(attr: &Value) -> Option<u64> {
    let from_string = attr
        .pointer("/raw/string")
        .and_then(Value::as_str)
        .and_then(|s| {
            let digits: String = s
                .trim_start()
                .chars()
                .take_while(char::is_ascii_digit)
                .collect();
            digits.parse().ok()
        });
    from_string.or_else(|| attr.pointer("/raw/value").and_then(Value::as_u64))
}

fn failed_attributes(v: &Value) -> Vec<(String, String)> {
    ata_table(v)
        .filter_map(|a| {
            let when = a.get("when_failed").and_then(Value::as_str)?.trim();
            if when.is_empty() || when == "-" {
                return None;
            }
            let name = a.get("name").and_then(Value::as_str).unwrap_or("attribute");
            Some((name.to_owned(), when.to_owned()))
        })
        .collect()
}

/// NVMe critical warning bits (NVMe base spec, SMART / Health log byte 0).
const NVME_CRITICAL_WARNING_BITS: [&str; 6] = [
    "available spare below threshold",
    "temperature outside threshold",
    "NVM subsystem reliability degraded",
    "media placed in read-only mode",
    "volatile memory backup device failed",
    "persistent memory region read-only",
];

fn nvme_warning_text(bits: u64) -> String {
    let names: Vec<&str> = NVME_CRITICAL_WARNING_BITS
        .iter()
        .enumerate()
        .filter(|(bit, _)| bits & (1 << bit) != 0)
        .map(|(_, t)| *t)
        .collect();
    if names.is_empty() {
        format!("NVMe critical warning 0x{bits:02x}")
    } else {
        format!("NVMe critical warning 0x{bits:02x} ({})", names.join(", "))
    }
}

/// The check id of a device: `disk.smart.health:/dev/sda`. Devices behind
/// a RAID controller share one node (`/dev/bus/0 -d megaraid,3`), so the
/// type is added when it carries a port number.
pub fn check_id(name: &str, device_type: &str) -> String {
    if name.is_empty() {
        CHECK_ID.to_owned()
    } else if device_type.contains(',') {
        format!("{CHECK_ID}:{name}:{device_type}")
    } else {
        format!("{CHECK_ID}:{name}")
    }
}

/// Why no health verdict could be had from this output, or `None` when it
/// carries one.
fn unknown_reason(dev: &SmartDevice) -> Option<String> {
    if dev.passed.is_some() {
        return None;
    }
    let name = if dev.name.is_empty() {
        "the device"
    } else {
        dev.name.as_str()
    };
    let msg = dev.messages.join("; ");
    let lower = msg.to_ascii_lowercase();
    let status = dev.exit_status.unwrap_or(0);
    let with_msg = |text: String| {
        if msg.is_empty() {
            text
        } else {
            format!("{text}: {msg}")
        }
    };
    // "Error=5" is Windows' ERROR_ACCESS_DENIED.
    let reason = if lower.contains("error=5") || lower.contains("access is denied") {
        with_msg(format!(
            "needs root (Administrator): smartctl could not open {name}"
        ))
    } else if lower.contains("permission denied") || lower.contains("operation not permitted") {
        with_msg(format!("needs root: smartctl could not open {name}"))
    } else if lower.contains("unable to detect device type") {
        with_msg(format!(
            "no SMART: smartctl cannot detect the device type of {name} (virtual or unsupported disk, e.g. virtio)"
        ))
    } else if dev.smart_available == Some(false) {
        with_msg(format!(
            "no SMART: {name} does not support SMART (virtual or unsupported disk)"
        ))
    } else if dev.smart_enabled == Some(false) {
        with_msg(format!(
            "SMART is disabled on {name} (enable it with `smartctl -s on`)"
        ))
    } else if lower.contains("standby") || lower.contains("sleep") {
        with_msg(format!("{name} is in a low-power mode"))
    } else if status & 0b11 != 0 {
        let bits = exit_status_meanings(status & 0b11).join("; ");
        with_msg(format!("smartctl could not read {name} ({bits})"))
    } else if status & 0b100 != 0 {
        with_msg(format!("a SMART command to {name} failed"))
    } else {
        with_msg(format!(
            "smartctl reported no SMART overall-health status for {name}"
        ))
    };
    Some(reason)
}

/// Check and metrics for one parsed device. `evidence` names the command
/// that produced it; the decoded exit status is appended.
pub fn findings_for(device: &SmartDevice, evidence: &str) -> Findings {
    let mut out = Findings::default();
    let id = check_id(&device.name, &device.device_type);
    let mut evidence = evidence.to_owned();
    if let Some(status) = device.exit_status {
        let meanings = exit_status_meanings(status);
        if !meanings.is_empty() {
            evidence = format!(
                "{evidence}; smartctl exit status {status}: {}",
                meanings.join("; ")
            );
        }
    }
    out.metrics.extend(device_metrics(device));
    if let Some(reason) = unknown_reason(device) {
        out.checks.push(unknown(&id, CHECK_TITLE, reason, evidence));
        return out;
    }
    out.checks.push(judge(device, &id, evidence));
    out
}

fn judge(dev: &SmartDevice, id: &str, evidence: String) -> CheckResult {
    let status_bits = dev.exit_status.unwrap_or(0);
    let mut critical: Vec<String> = Vec::new();
    let mut warning: Vec<String> = Vec::new();
    let mut notes: Vec<String> = Vec::new();

    // A FAILED self-assessment is already the value's first word.
    let failed = dev.passed == Some(false);
    if !failed && status_bits & (1 << 3) != 0 {
        critical.push(EXIT_STATUS_BITS[3].to_owned());
    }
    let failed_now: Vec<&str> = dev
        .failed_attributes
        .iter()
        .filter(|(_, when)| when == "now")
        .map(|(n, _)| n.as_str())
        .collect();
    let failed_past: Vec<&str> = dev
        .failed_attributes
        .iter()
        .filter(|(_, when)| when != "now")
        .map(|(n, _)| n.as_str())
        .collect();
    if !failed_now.is_empty() {
        critical.push(format!(
            "attributes at or below threshold now: {}",
            failed_now.join(", ")
        ));
    } else if status_bits & (1 << 4) != 0 {
        critical.push(EXIT_STATUS_BITS[4].to_owned());
    }
    if !failed_past.is_empty() {
        warning.push(format!(
            "attributes at or below threshold in the past: {}",
            failed_past.join(", ")
        ));
    } else if status_bits & (1 << 5) != 0 {
        warning.push(EXIT_STATUS_BITS[5].to_owned());
    }
    for (count, what) in [
        (dev.reallocated_sectors, "reallocated sectors"),
        (dev.pending_sectors, "pending sectors"),
        (dev.offline_uncorrectable, "offline uncorrectable sectors"),
        (dev.scsi_grown_defects, "SCSI grown defects"),
        (dev.nvme_media_errors, "NVMe media errors"),
    ] {
        if let Some(n) = count.filter(|n| *n > 0) {
            warning.push(format!("{what} {n}"));
        }
    }
    if let Some(p) = dev
        .nvme_percentage_used
        .filter(|p| *p >= NVME_WEAR_WARN_PCT)
    {
        warning.push(format!("NVMe percentage used {p}%"));
    }
    if let Some(w) = dev.nvme_critical_warning.filter(|w| *w != 0) {
        warning.push(nvme_warning_text(w));
    }
    if status_bits & (1 << 7) != 0 {
        warning.push("self-test log has errors".to_owned());
    }
    if status_bits & (1 << 2) != 0 {
        warning.push("some SMART commands failed, data may be incomplete".to_owned());
    }
    // The ATA error log keeps old entries forever and most are transient
    // (cable, power); a warning that never clears would be ignored. It is
    // shown; the sector counters above are what is judged.
    if status_bits & (1 << 6) != 0 || dev.error_log_count.is_some_and(|n| n > 0) {
        match dev.error_log_count.filter(|n| *n > 0) {
            Some(n) => notes.push(format!("device error log has {n} entries")),
            None => notes.push("device error log has entries".to_owned()),
        }
    }

    let status = if failed || !critical.is_empty() {
        CheckStatus::Critical
    } else if !warning.is_empty() {
        CheckStatus::Warning
    } else {
        CheckStatus::Ok
    };
    let mut parts = vec![format!(
        "SMART {}",
        if failed { "FAILED" } else { "PASSED" }
    )];
    parts.extend(critical);
    parts.extend(warning);
    if status == CheckStatus::Ok {
        parts.extend(counters(dev));
    }
    parts.extend(notes);
    let mut value = parts.join("; ");
    let identity = identity(dev);
    if !identity.is_empty() {
        value = format!("{identity}: {value}");
    }
    check(id, CHECK_TITLE, status, value, THRESHOLD, evidence)
}

/// The judged counters, shown on a healthy disk so the record says what
/// was looked at.
fn counters(dev: &SmartDevice) -> Vec<String> {
    [
        (dev.reallocated_sectors, "reallocated"),
        (dev.pending_sectors, "pending"),
        (dev.offline_uncorrectable, "offline uncorrectable"),
        (dev.scsi_grown_defects, "grown defects"),
        (dev.nvme_media_errors, "media errors"),
        (dev.nvme_critical_warning, "critical warning"),
    ]
    .into_iter()
    .filter_map(|(v, what)| v.map(|v| format!("{what} {v}")))
    .chain(
        dev.nvme_percentage_used
            .map(|p| format!("percentage used {p}%")),
    )
    .collect()
}

fn identity(dev: &SmartDevice) -> String {
    match (dev.model.is_empty(), dev.serial.is_empty()) {
        (false, false) => format!("{} (serial {})", dev.model, dev.serial),
        (false, true) => dev.model.clone(),
        (true, false) => format!("serial {}", dev.serial),
        (true, true) => String::new(),
    }
}

fn device_metrics(dev: &SmartDevice) -> Vec<xunjian_proto::Metric> {
    let labels = [("device", dev.name.as_str()), ("model", dev.model.as_str())];
    let mut out = Vec::new();
    let mut push = |name: &str, value: Option<f64>| {
        if let Some(v) = value {
            out.push(metric(name, v, &labels));
        }
    };
    push(
        "disk.smart.temperature_c",
        dev.temperature_c.map(|t| t as f64),
    );
    push(
        "disk.smart.power_on_hours",
        dev.power_on_hours.map(|h| h as f64),
    );
    push(
        "disk.smart.reallocated_sectors",
        dev.reallocated_sectors.map(|n| n as f64),
    );
    push(
        "disk.smart.pending_sectors",
        dev.pending_sectors.map(|n| n as f64),
    );
    push(
        "disk.smart.offline_uncorrectable",
        dev.offline_uncorrectable.map(|n| n as f64),
    );
    push(
        "disk.nvme.percentage_used",
        dev.nvme_percentage_used.map(|n| n as f64),
    );
    push(
        "disk.nvme.media_errors",
        dev.nvme_media_errors.map(|n| n as f64),
    );
    out
}

/// Scans for devices and checks each. Blocking: runs smartctl once per
/// device with a timeout each; call from a blocking thread.
pub fn collect() -> Findings {
    let mut out = Findings::default();
    let scan_cmd = Cmd::new(SMARTCTL, &["--scan-open", "--json"]).timeout(SCAN_TIMEOUT);
    let scan_evidence = "smartctl --scan-open --json";
    let scan = match scan_cmd.run() {
        Ok(o) => o,
        Err(e) => {
            out.checks.push(exec_unknown(CHECK_ID, &e, scan_evidence));
            return out;
        }
    };
    let evidence = format!("{} (exit {})", scan.command, exit_text(scan.code));
    let devices = match scan_result(&scan.stdout) {
        Ok(d) => d,
        Err(e) => {
            let reason = format!(
                "cannot parse smartctl --scan-open output: {e}{}",
                stderr_hint(&scan.stderr)
            );
            out.checks
                .push(unknown(CHECK_ID, CHECK_TITLE, reason, evidence));
            return out;
        }
    };
    if !devices.is_empty() {
        for (name, dtype) in devices {
            out.extend(collect_device(&name, Some(&dtype)));
        }
        return out;
    }
    // The scan only knows sd*/nvme*/... names: virtio (vd*) and xen (xvd*)
    // disks are not listed. Ask about each disk anyway so the record says
    // per disk why there is no SMART, rather than nothing at all.
    let disks: Vec<String> = super::disks::block_devices()
        .into_iter()
        .filter(|d| d.kind == "disk")
        .map(|d| format!("/dev/{}", d.name))
        .collect();
    if disks.is_empty() {
        out.checks.push(unknown(
            CHECK_ID,
            CHECK_TITLE,
            "smartctl found no devices and /sys/block lists no disks",
            evidence,
        ));
        return out;
    }
    for name in disks {
        out.extend(collect_device(&name, None));
    }
    out
}

fn collect_device(name: &str, dtype: Option<&str>) -> Findings {
    let dtype = dtype.filter(|t| !t.is_empty());
    // `-n standby`: never spin up a sleeping disk just to read it; that is
    // reported as unknown ("low-power mode") until it is awake.
    let mut args = vec!["--json", "-a", "-n", "standby"];
    if let Some(t) = dtype {
        args.extend(["-d", t]);
    }
    args.push(name);
    let id = check_id(name, dtype.unwrap_or(""));
    let cmd = Cmd::new(SMARTCTL, &args).timeout(DEVICE_TIMEOUT);
    let mut out = Findings::default();
    let output = match cmd.run() {
        Ok(o) => o,
        Err(e) => {
            out.checks.push(exec_unknown(
                &id,
                &e,
                &format!("smartctl {}", args.join(" ")),
            ));
            return out;
        }
    };
    let evidence = format!("{} (exit {})", output.command, exit_text(output.code));
    if output.truncated {
        out.checks.push(unknown(
            &id,
            CHECK_TITLE,
            "smartctl output exceeded the capture limit",
            evidence,
        ));
        return out;
    }
    match parse_device(&output.stdout) {
        Ok(mut dev) => {
            // Keep the id the scan gave, so it is the same whether or not
            // the device could be read.
            dev.name = name.to_owned();
            dev.device_type = dtype.unwrap_or("").to_owned();
            if dev.exit_status.is_none() {
                dev.exit_status = output.code.map(|c| (c & 0xff) as u8);
            }
            findings_for(&dev, &evidence)
        }
        Err(e) => {
            let reason = format!(
                "cannot parse smartctl output: {e}{}",
                stderr_hint(&output.stderr)
            );
            out.checks.push(unknown(&id, CHECK_TITLE, reason, evidence));
            out
        }
    }
}

fn exec_unknown(id: &str, e: &ExecError, evidence: &str) -> CheckResult {
    // ExecError's text is the reason as it should read, e.g. "smartctl is
    // not installed (not found in ...)".
    unknown(id, CHECK_TITLE, e.to_string(), evidence)
}

fn exit_text(code: Option<i32>) -> String {
    code.map_or_else(|| "killed by signal".to_owned(), |c| c.to_string())
}

fn stderr_hint(stderr: &str) -> String {
    stderr
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .map(|l| format!(" (stderr: {})", l.chars().take(200).collect::<String>()))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    const HITACHI_FAILING: &str =
        include_str!("../../testdata/smart/scrutiny_sata-hdd-hitachi-FAILING-reallocated.json");
    const WDC_HEALTHY: &str =
        include_str!("../../testdata/smart/scrutiny_sata-hdd-wdc-14tb-healthy.json");
    const SAMSUNG_860: &str =
        include_str!("../../testdata/smart/scrutiny_sata-ssd-samsung860evo-x-healthy.json");
    const NVME_HEALTHY: &str =
        include_str!("../../testdata/smart/scrutiny_nvme-intel660p-healthy.json");
    const NVME_MEDIA_ERRORS: &str =
        include_str!("../../testdata/smart/scrutiny_nvme-samsung970evo-x-media-errors.json");
    const WINDOWS_OPEN_FAILED: &str =
        include_str!("../../testdata/smart/scrutiny_windows-open-failed-exit2.json");
    const SAS: &str = include_str!("../../testdata/smart/scrutiny_sas-seagate-smartctl6.7.json");
    const REALLOCATED_304: &str =
        include_str!("../../testdata/smart/exporter_sata-hdd-seagate-304-reallocated.json");
    const ERRORLOG_EXIT64: &str =
        include_str!("../../testdata/smart/exporter_sata-hdd-seagate-errorlog-exit64.json");
    const NVME_75PCT: &str =
        include_str!("../../testdata/smart/exporter_nvme-intel-p4510-75pct-used.json");
    const VDA: &str =
        include_str!("../../testdata/smart/debian12-this-image_smartctl-json-a-vda.json");
    const SCAN_EMPTY: &str =
        include_str!("../../testdata/smart/debian12-this-image_smartctl-scan-open.json");
    const VDA_EXIT: &str =
        include_str!("../../testdata/smart/debian12-this-image_smartctl-json-a-vda.json.exitcode");
    const SCAN_EMPTY_EXIT: &str =
        include_str!("../../testdata/smart/debian12-this-image_smartctl-scan-open.json.exitcode");

    /// `exit=N` as the capture script wrote it.
    fn captured_exit(text: &str) -> u8 {
        text.trim().strip_prefix("exit=").unwrap().parse().unwrap()
    }

    const ALL: &[&str] = &[
        HITACHI_FAILING,
        WDC_HEALTHY,
        SAMSUNG_860,
        NVME_HEALTHY,
        NVME_MEDIA_ERRORS,
        WINDOWS_OPEN_FAILED,
        SAS,
        REALLOCATED_304,
        ERRORLOG_EXIT64,
        NVME_75PCT,
        VDA,
        SCAN_EMPTY,
    ];

    fn judged(json: &str) -> (SmartDevice, CheckResult, Findings) {
        let dev = parse_device(json).unwrap();
        let f = findings_for(&dev, "smartctl --json -a DEV");
        assert_eq!(f.checks.len(), 1);
        (dev, f.checks[0].clone(), f)
    }

    fn metric_value(f: &Findings, name: &str) -> Option<f64> {
        f.metrics.iter().find(|m| m.name == name).map(|m| m.value)
    }

    #[test]
    fn exit_status_bits_decode() {
        assert!(exit_status_meanings(0).is_empty());
        // 216 = bits 3, 4, 6, 7 (the failing Hitachi).
        let m = exit_status_meanings(216);
        assert_eq!(
            m,
            [
                EXIT_STATUS_BITS[3],
                EXIT_STATUS_BITS[4],
                EXIT_STATUS_BITS[6],
                EXIT_STATUS_BITS[7]
            ]
        );
        assert_eq!(exit_status_meanings(64), [EXIT_STATUS_BITS[6]]);
        assert_eq!(exit_status_meanings(255).len(), 8);
    }

    #[test]
    fn failing_hitachi_is_critical() {
        let (dev, c, f) = judged(HITACHI_FAILING);
        assert_eq!(dev.protocol, Protocol::Ata);
        assert_eq!(dev.model, "Hitachi HDS721050DLE630");
        assert_eq!(dev.serial, "MSK423Y20S3HBC");
        assert_eq!(dev.passed, Some(false));
        assert_eq!(dev.reallocated_sectors, Some(1975));
        assert_eq!(dev.pending_sectors, Some(8));
        assert_eq!(dev.offline_uncorrectable, Some(0));
        assert_eq!(dev.exit_status, Some(216));
        assert_eq!(dev.temperature_c, Some(25));
        assert_eq!(dev.power_on_hours, Some(65592));
        assert_eq!(dev.error_log_count, Some(56));
        assert!(
            dev.failed_attributes
                .contains(&("Reallocated_Sector_Ct".to_owned(), "now".to_owned()))
        );
        assert_eq!(c.status(), CheckStatus::Critical);
        assert_eq!(c.check_id, "disk.smart.health:/dev/sdc");
        assert!(c.value.contains("SMART FAILED"), "{}", c.value);
        assert!(c.value.contains("reallocated sectors 1975"), "{}", c.value);
        assert!(c.value.contains("pending sectors 8"), "{}", c.value);
        assert!(c.evidence.contains("DISK FAILING"), "{}", c.evidence);
        assert_eq!(
            metric_value(&f, "disk.smart.reallocated_sectors"),
            Some(1975.0)
        );
        assert_eq!(metric_value(&f, "disk.smart.pending_sectors"), Some(8.0));
        let m = f
            .metrics
            .iter()
            .find(|m| m.name == "disk.smart.temperature_c")
            .unwrap();
        let labels: Vec<(&str, &str)> = m
            .labels
            .iter()
            .map(|l| (l.name.as_str(), l.value.as_str()))
            .collect();
        assert_eq!(
            labels,
            [("device", "/dev/sdc"), ("model", "Hitachi HDS721050DLE630")]
        );
    }

    #[test]
    fn healthy_sata_disks_are_ok_with_counters_shown() {
        let (dev, c, f) = judged(WDC_HEALTHY);
        assert_eq!(dev.passed, Some(true));
        assert_eq!(c.status(), CheckStatus::Ok);
        assert!(c.value.contains("SMART PASSED"), "{}", c.value);
        assert!(c.value.contains("reallocated 0"), "{}", c.value);
        assert!(
            c.value
                .starts_with("WDC WD140EDFZ-11A0VA0 (serial 9RK1XXXX)"),
            "{}",
            c.value
        );
        assert!(!c.threshold.is_empty() && !c.evidence.is_empty());
        assert_eq!(metric_value(&f, "disk.smart.temperature_c"), Some(32.0));
        assert_eq!(metric_value(&f, "disk.smart.power_on_hours"), Some(1730.0));
        assert_eq!(
            metric_value(&f, "disk.smart.reallocated_sectors"),
            Some(0.0)
        );
        assert_eq!(metric_value(&f, "disk.smart.pending_sectors"), Some(0.0));

        let (dev, c, f) = judged(SAMSUNG_860);
        assert_eq!(c.status(), CheckStatus::Ok);
        assert_eq!(dev.model, "Samsung SSD 860 EVO 500GB");
        assert_eq!(dev.reallocated_sectors, Some(0));
        assert_eq!(metric_value(&f, "disk.smart.power_on_hours"), Some(14551.0));
    }

    #[test]
    fn reallocated_sectors_on_a_passing_disk_warn() {
        let (dev, c, _) = judged(REALLOCATED_304);
        assert_eq!(dev.passed, Some(true));
        assert_eq!(dev.reallocated_sectors, Some(304));
        assert_eq!(c.status(), CheckStatus::Warning);
        assert!(c.value.contains("reallocated sectors 304"), "{}", c.value);
        assert_eq!(c.check_id, "disk.smart.health:/dev/sda");
    }

    #[test]
    fn error_log_entries_alone_are_shown_not_judged() {
        let (dev, c, _) = judged(ERRORLOG_EXIT64);
        assert_eq!(dev.exit_status, Some(64));
        assert_eq!(dev.error_log_count, Some(98));
        assert_eq!(c.status(), CheckStatus::Ok);
        assert!(
            c.value.contains("device error log has 98 entries"),
            "{}",
            c.value
        );
        assert!(
            c.evidence.contains("error log contains records of errors"),
            "{}",
            c.evidence
        );
    }

    #[test]
    fn nvme_healthy_media_errors_and_wear() {
        let (dev, c, f) = judged(NVME_HEALTHY);
        assert_eq!(dev.protocol, Protocol::Nvme);
        assert_eq!(c.status(), CheckStatus::Ok);
        assert_eq!(metric_value(&f, "disk.nvme.percentage_used"), Some(0.0));
        assert_eq!(metric_value(&f, "disk.smart.temperature_c"), Some(36.0));
        assert_eq!(metric_value(&f, "disk.smart.reallocated_sectors"), None);

        let (dev, c, _) = judged(NVME_MEDIA_ERRORS);
        assert_eq!(dev.nvme_media_errors, Some(7));
        assert_eq!(dev.passed, Some(true));
        assert_eq!(c.status(), CheckStatus::Warning);
        assert!(c.value.contains("NVMe media errors 7"), "{}", c.value);

        // 75% used is below the 80% line.
        let (dev, c, f) = judged(NVME_75PCT);
        assert_eq!(dev.nvme_percentage_used, Some(75));
        assert_eq!(c.status(), CheckStatus::Ok);
        assert_eq!(c.check_id, "disk.smart.health:/dev/nvme6");
        assert_eq!(metric_value(&f, "disk.nvme.percentage_used"), Some(75.0));
        assert_eq!(metric_value(&f, "disk.smart.power_on_hours"), Some(49441.0));

        // The same drive worn to 80%, and with a spare warning.
        let worn = NVME_75PCT.replace("\"percentage_used\": 75", "\"percentage_used\": 80");
        let (_, c, _) = judged(&worn);
        assert_eq!(c.status(), CheckStatus::Warning);
        assert!(c.value.contains("percentage used 80%"), "{}", c.value);
        let spare = NVME_75PCT.replace("\"critical_warning\": 0", "\"critical_warning\": 1");
        let (_, c, _) = judged(&spare);
        assert_eq!(c.status(), CheckStatus::Warning);
        assert!(
            c.value.contains("available spare below threshold"),
            "{}",
            c.value
        );
    }

    #[test]
    fn sas_disk_from_smartctl_6_7() {
        let (dev, c, f) = judged(SAS);
        assert_eq!(dev.protocol, Protocol::Scsi);
        assert_eq!(dev.model, "SEAGATE ST1200MM0088");
        assert_eq!(dev.scsi_grown_defects, Some(0));
        assert_eq!(c.status(), CheckStatus::Ok);
        assert_eq!(metric_value(&f, "disk.smart.temperature_c"), Some(31.0));
        assert_eq!(metric_value(&f, "disk.smart.power_on_hours"), Some(5675.0));
        let grown = SAS.replace(
            "\"scsi_grown_defect_list\": 0",
            "\"scsi_grown_defect_list\": 12",
        );
        let (_, c, _) = judged(&grown);
        assert_eq!(c.status(), CheckStatus::Warning);
    }

    #[test]
    fn open_failed_without_privilege_is_unknown_needs_root() {
        let (dev, c, f) = judged(WINDOWS_OPEN_FAILED);
        assert_eq!(dev.name, "/dev/sda");
        assert_eq!(dev.exit_status, Some(2));
        assert_eq!(c.status(), CheckStatus::Unknown);
        assert_eq!(c.check_id, "disk.smart.health:/dev/sda");
        assert!(c.reason.contains("needs root"), "{}", c.reason);
        assert!(c.reason.contains("Open failed, Error=5"), "{}", c.reason);
        assert!(c.evidence.contains("device open failed"), "{}", c.evidence);
        assert!(f.metrics.is_empty());

        // The Linux wording (smartctl as an ordinary user).
        let linux = WINDOWS_OPEN_FAILED.replace(
            r#"\\\\.\\PhysicalDrive0: Open failed, Error=5"#,
            "Permission denied",
        );
        let (_, c, _) = judged(&linux);
        assert_eq!(c.status(), CheckStatus::Unknown);
        assert!(c.reason.starts_with("needs root"), "{}", c.reason);
        assert!(c.reason.contains("Permission denied"), "{}", c.reason);
    }

    #[test]
    fn virtio_disk_of_this_image_is_unknown_no_smart() {
        let (dev, c, _) = judged(VDA);
        assert_eq!(dev.name, "/dev/vda");
        assert_eq!(dev.exit_status, Some(1));
        // The JSON's exit_status is what the process exited with.
        assert_eq!(dev.exit_status, Some(captured_exit(VDA_EXIT)));
        assert_eq!(c.status(), CheckStatus::Unknown);
        assert_eq!(c.check_id, "disk.smart.health:/dev/vda");
        assert!(c.reason.contains("no SMART"), "{}", c.reason);
        assert!(
            c.reason.contains("Unable to detect device type"),
            "{}",
            c.reason
        );
    }

    #[test]
    fn no_health_status_is_never_ok() {
        for json in [
            r#"{"smartctl":{"exit_status":0},"device":{"name":"/dev/sdx"}}"#,
            r#"{"device":{"name":"/dev/sdx"},"smart_support":{"available":false}}"#,
            r#"{"device":{"name":"/dev/sdx"},"smart_support":{"available":true,"enabled":false}}"#,
            r#"{"smartctl":{"exit_status":4},"device":{"name":"/dev/sdx"}}"#,
            r#"{}"#,
        ] {
            let (_, c, _) = judged(json);
            assert_eq!(c.status(), CheckStatus::Unknown, "{json}");
            assert!(!c.reason.is_empty(), "{json}");
        }
    }

    #[test]
    fn scan_output_lists_devices_for_dash_d() {
        // This image: smartctl 7.3 lists no devices (no "devices" key).
        assert!(parse_scan(SCAN_EMPTY).is_empty());
        assert_eq!(scan_result(SCAN_EMPTY), Ok(Vec::new()));
        assert_eq!(captured_exit(SCAN_EMPTY_EXIT), 0);
        // The documented `--scan-open --json` shape (not a capture).
        let json = r#"{"devices":[
            {"name":"/dev/sda","info_name":"/dev/sda [SAT]","type":"sat","protocol":"ATA"},
            {"name":"/dev/nvme0","info_name":"/dev/nvme0","type":"nvme","protocol":"NVMe"},
            {"name":"/dev/bus/0","info_name":"/dev/bus/0 [megaraid_disk_00]","type":"megaraid,0","protocol":"SCSI"},
            {"name":"/dev/sda","type":"sat"},
            {"info_name":"no name"}]}"#;
        assert_eq!(
            parse_scan(json),
            [
                ("/dev/sda".to_owned(), "sat".to_owned()),
                ("/dev/nvme0".to_owned(), "nvme".to_owned()),
                ("/dev/bus/0".to_owned(), "megaraid,0".to_owned()),
            ]
        );
        assert_eq!(
            check_id("/dev/bus/0", "megaraid,0"),
            "disk.smart.health:/dev/bus/0:megaraid,0"
        );
        assert!(parse_scan("").is_empty());
        assert!(scan_result("# /dev/sda -d sat").is_err());
    }

    #[test]
    fn old_smartctl_text_output_is_an_error() {
        let err = parse_device("=======> UNRECOGNIZED OPTION: json\n").unwrap_err();
        assert!(err.contains("7.0"), "{err}");
        assert!(parse_device("").is_err());
        assert!(parse_device("[1,2]").is_err());
        assert!(parse_device("{\"device\":").is_err());
    }

    #[test]
    fn never_panics_on_truncated_or_odd_input() {
        for json in ALL {
            // Every prefix of the small files, a spread of the large ones.
            let cuts: Vec<usize> = json.char_indices().map(|(i, _)| i).collect();
            let stride = (cuts.len() / 1500).max(1);
            for &i in cuts.iter().step_by(stride) {
                if let Ok(dev) = parse_device(&json[..i]) {
                    let _ = findings_for(&dev, "x");
                }
                let _ = parse_scan(&json[..i]);
            }
        }
        for odd in [
            "null",
            "1",
            "\"x\"",
            r#"{"smart_status":"yes","temperature":{"current":"hot"}}"#,
            r#"{"smart_status":{"passed":true},"temperature":{"current":-300},"power_on_time":{"hours":-1}}"#,
            r#"{"smartctl":{"exit_status":99999,"messages":[1,{"string":5},{"string":"x"}],"argv":"no"}}"#,
            r#"{"ata_smart_attributes":{"table":[{"id":"5"},{"id":5,"raw":{"string":"","value":-1}},{"id":197,"raw":{"string":"99999999999999999999999"}},{"when_failed":7}]}}"#,
            r#"{"smart_status":{"passed":false},"nvme_smart_health_information_log":{"critical_warning":255,"percentage_used":18446744073709551615}}"#,
            r#"{"devices":[null,1,{"name":null},{"name":"/dev/sda","type":7}]}"#,
        ] {
            if let Ok(dev) = parse_device(odd) {
                let _ = findings_for(&dev, "x");
            }
            let _ = parse_scan(odd);
        }
    }

    #[test]
    fn live_collection_on_this_machine() {
        let f = collect();
        assert!(!f.checks.is_empty());
        for c in &f.checks {
            assert!(c.check_id.starts_with(CHECK_ID), "{c:?}");
            assert!(!c.evidence.is_empty(), "{c:?}");
            if c.status() == CheckStatus::Unknown {
                assert!(!c.reason.is_empty(), "{c:?}");
            }
        }
        if crate::exec::find_program(SMARTCTL).is_none() {
            assert_eq!(f.checks.len(), 1);
            assert_eq!(f.checks[0].status(), CheckStatus::Unknown);
            assert!(
                f.checks[0].reason.contains("smartctl is not installed"),
                "{:?}",
                f.checks[0]
            );
        }
    }
}
