//! Antivirus state: Windows Security Center products and Defender status on
//! Windows; ClamAV databases, Defender for Endpoint (`mdatp`) and configured
//! third-party products on Linux; judged per product and as one per-host
//! `av.status` (protected / outdated / disabled / missing / unknown).

use std::io::Read;
use std::path::{Path, PathBuf};
#[cfg(windows)]
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use serde_json::Value;
use xunjian_proto::CheckStatus;

use super::{Findings, check, metric, unknown};
use crate::exec::{ExecError, Output};

/// The per-host verdict.
pub const STATUS_CHECK_ID: &str = "av.status";
const STATUS_TITLE: &str = "Antivirus protection";
/// Days since the product's definitions were built or installed.
pub const METRIC_SIGNATURE_AGE: &str = "av.signature_age_days";
/// 1 when the product scans files on access, 0 when it does not.
pub const METRIC_REALTIME: &str = "av.realtime_enabled";
/// Definitions older than this are outdated. Seven days is Defender's own
/// default before it flags signatures as out of date, and ClamAV's daily
/// database is rebuilt several times a day, so a week means updates stopped.
pub const MAX_SIGNATURE_AGE_DAYS: u32 = 7;
/// Where Debian, Ubuntu and EPEL packages keep ClamAV's databases.
pub const CLAMAV_DB_DIR: &str = "/var/lib/clamav";
/// Programs whose presence means ClamAV is installed even without databases.
const CLAMAV_PROGRAMS: &[&str] = &["clamd", "clamscan", "freshclam", "clamdscan"];

/// Why captured text could not be read as the expected shape.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("not valid JSON: {0}")]
    Json(String),
    #[error("unexpected JSON shape: {0}")]
    Shape(String),
    #[error("not a ClamAV database header: {0}")]
    NotClamavHeader(String),
    #[error("none of the expected fields found")]
    NoFields,
}

// --- Windows Security Center productState -----------------------------------

/// The real-time scanner state held in byte 1 of `productState` (high
/// nibble; the low nibble says who made the product).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScannerState {
    Off,
    On,
    /// Turned off for a while by the user; it switches itself back on.
    Snoozed,
    /// Licence expired: installed but no longer protecting.
    Expired,
    /// A byte outside the documented values, kept raw.
    Other(u8),
}

/// Signature state held in byte 0 of `productState`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignatureState {
    UpToDate,
    OutOfDate,
    Other(u8),
}

/// A decoded `AntiVirusProduct.productState`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProductState {
    pub raw: u32,
    /// Byte 2: WSC_SECURITY_PROVIDER flags the product registered for.
    pub provider: u8,
    pub scanner: ScannerState,
    /// Low nibble of byte 1 is 1 for Microsoft's own product (Defender).
    pub microsoft: bool,
    pub signatures: SignatureState,
}

/// Decodes `productState`. Microsoft does not document the packing; this is
/// the layout every inventory tool uses, and it matches the captured values
/// (397568 = 0x061100: Defender on, up to date; 401664 = 0x062100: Defender
/// snoozed, up to date).
pub fn decode_product_state(raw: u32) -> ProductState {
    let provider = ((raw >> 16) & 0xFF) as u8;
    let scanner_byte = ((raw >> 8) & 0xFF) as u8;
    let signature_byte = (raw & 0xFF) as u8;
    let owner = scanner_byte & 0x0F;
    let scanner = match (scanner_byte >> 4, owner) {
        (_, o) if o > 1 => ScannerState::Other(scanner_byte),
        (0, _) => ScannerState::Off,
        (1, _) => ScannerState::On,
        (2, _) => ScannerState::Snoozed,
        (3, _) => ScannerState::Expired,
        _ => ScannerState::Other(scanner_byte),
    };
    let signatures = match signature_byte {
        0x00 => SignatureState::UpToDate,
        0x10 => SignatureState::OutOfDate,
        other => SignatureState::Other(other),
    };
    ProductState {
        raw,
        provider,
        scanner,
        microsoft: owner == 1,
        signatures,
    }
}

impl ProductState {
    /// For people: "scanner on, signatures up to date (productState 397568 =
    /// 0x061100)".
    pub fn describe(&self) -> String {
        let scanner = match self.scanner {
            ScannerState::Off => "scanner off".to_owned(),
            ScannerState::On => "scanner on".to_owned(),
            ScannerState::Snoozed => "scanner snoozed (temporarily off)".to_owned(),
            ScannerState::Expired => "product expired".to_owned(),
            ScannerState::Other(b) => format!("scanner state 0x{b:02x} not recognised"),
        };
        let signatures = match self.signatures {
            SignatureState::UpToDate => "signatures up to date".to_owned(),
            SignatureState::OutOfDate => "signatures out of date".to_owned(),
            SignatureState::Other(b) => format!("signature state 0x{b:02x} not recognised"),
        };
        format!(
            "{scanner}, {signatures} (productState {} = 0x{:06x})",
            self.raw, self.raw
        )
    }
}

/// One row of `root\SecurityCenter2` `AntiVirusProduct`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WscProduct {
    pub display_name: String,
    /// `None` when the row did not carry it (e.g. `wmic ... Get displayName`)
    /// or it was not a number.
    pub product_state: Option<u32>,
    pub reporting_exe: Option<String>,
    pub timestamp: Option<String>,
}

/// Parses `Get-CimInstance ... AntiVirusProduct | Select ... | ConvertTo-Json`:
/// an array, or a single object (what PowerShell prints for one product),
/// or nothing at all (no products).
pub fn parse_wsc_json(text: &str) -> Result<Vec<WscProduct>, ParseError> {
    let Some(value) = parse_json_lenient(text)? else {
        return Ok(Vec::new());
    };
    let rows: Vec<&Value> = match &value {
        Value::Array(items) => items.iter().collect(),
        Value::Object(_) => vec![&value],
        Value::Null => Vec::new(),
        _ => {
            return Err(ParseError::Shape(
                "expected an object or an array".to_owned(),
            ));
        }
    };
    let mut out = Vec::new();
    for row in rows {
        let Value::Object(map) = row else {
            return Err(ParseError::Shape("array item is not an object".to_owned()));
        };
        let get = |key: &str| map_get(map, key);
        let product = WscProduct {
            display_name: get("displayName").and_then(json_string).unwrap_or_default(),
            product_state: get("productState")
                .and_then(json_u64)
                .and_then(|v| u32::try_from(v).ok()),
            reporting_exe: get("pathToSignedReportingExe").and_then(json_string),
            timestamp: get("timestamp").and_then(json_string),
        };
        if !product.display_name.is_empty() || product.product_state.is_some() {
            out.push(product);
        }
    }
    Ok(out)
}

/// Parses the list shapes: PowerShell `Format-List` (`name : value`),
/// `wmic ... /Format:List` and console dumps (`name=value`). Banners,
/// prompts and other lines are skipped.
pub fn parse_wsc_list(text: &str) -> Vec<WscProduct> {
    const KEYS: &[&str] = &[
        "displayName",
        "productState",
        "pathToSignedReportingExe",
        "timestamp",
        "instanceGuid",
    ];
    parse_records(text, KEYS)
        .into_iter()
        .filter_map(|record| {
            let get = |k: &str| record_get(&record, k).filter(|v| !v.is_empty());
            let product = WscProduct {
                display_name: get("displayName").unwrap_or_default().to_owned(),
                product_state: get("productState").and_then(|v| v.parse().ok()),
                reporting_exe: get("pathToSignedReportingExe").map(str::to_owned),
                timestamp: get("timestamp").map(str::to_owned),
            };
            (!product.display_name.is_empty() || product.product_state.is_some()).then_some(product)
        })
        .collect()
}

/// A Security Center row judged as a product.
pub fn wsc_product(p: &WscProduct, evidence: &str) -> Product {
    let name = if p.display_name.is_empty() {
        "unnamed product".to_owned()
    } else {
        p.display_name.clone()
    };
    let mut product = Product::new(
        &format!("av.wsc:{}", slug(&name)),
        &format!("Antivirus (Security Center): {name}"),
        &name,
        "wsc",
    );
    product.threshold =
        "Security Center reports the scanner on and signatures up to date".to_owned();
    let mut evidence = evidence.to_owned();
    if let Some(exe) = &p.reporting_exe {
        evidence.push_str(&format!("; pathToSignedReportingExe={exe}"));
    }
    if let Some(ts) = &p.timestamp {
        evidence.push_str(&format!("; timestamp={ts}"));
    }
    product.evidence = evidence;
    let Some(raw) = p.product_state else {
        product.detail = "registered with Security Center".to_owned();
        product.unknown_reason =
            Some("productState was not reported, so its state cannot be judged".to_owned());
        return product;
    };
    let state = decode_product_state(raw);
    product.detail = state.describe();
    product.active = match state.scanner {
        ScannerState::On => Some(true),
        ScannerState::Off | ScannerState::Snoozed | ScannerState::Expired => Some(false),
        ScannerState::Other(_) => None,
    };
    product.realtime = product.active;
    product.signatures_current = match state.signatures {
        SignatureState::UpToDate => Some(true),
        SignatureState::OutOfDate => Some(false),
        SignatureState::Other(_) => None,
    };
    if product.active.is_none() || product.signatures_current.is_none() {
        product.unknown_reason = Some(format!("cannot judge {}", state.describe()));
    }
    product
}

// --- Defender: Get-MpComputerStatus -----------------------------------------

/// The fields of `MSFT_MpComputerStatus` that decide protection. Older
/// Defender versions lack some (`AMRunningMode`, `DefenderSignaturesOutOfDate`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DefenderStatus {
    pub am_service_enabled: Option<bool>,
    pub antivirus_enabled: Option<bool>,
    pub real_time_protection_enabled: Option<bool>,
    pub signature_age_days: Option<u64>,
    pub signature_last_updated: Option<String>,
    pub signature_version: Option<String>,
    pub signatures_out_of_date: Option<bool>,
    /// "Normal", "Passive Mode", "EDR Block Mode", "SxS Passive Mode".
    pub running_mode: Option<String>,
    pub product_version: Option<String>,
}

const MP_KEYS: &[&str] = &[
    "AMServiceEnabled",
    "AntivirusEnabled",
    "RealTimeProtectionEnabled",
    "AntivirusSignatureAge",
    "AntivirusSignatureLastUpdated",
    "AntivirusSignatureVersion",
    "DefenderSignaturesOutOfDate",
    "AMRunningMode",
    "AMProductVersion",
];

/// Parses `Get-MpComputerStatus` printed as `Format-List` (`Name : Value`).
pub fn parse_mp_status_list(text: &str) -> Result<DefenderStatus, ParseError> {
    let records = parse_records(text, MP_KEYS);
    // One instance per host; take the first record that carries fields.
    let Some(record) = records.into_iter().next() else {
        return Err(ParseError::NoFields);
    };
    let get = |k: &str| record_get(&record, k).filter(|v| !v.is_empty());
    Ok(DefenderStatus {
        am_service_enabled: get("AMServiceEnabled").and_then(text_bool),
        antivirus_enabled: get("AntivirusEnabled").and_then(text_bool),
        real_time_protection_enabled: get("RealTimeProtectionEnabled").and_then(text_bool),
        signature_age_days: get("AntivirusSignatureAge").and_then(|v| v.parse().ok()),
        signature_last_updated: get("AntivirusSignatureLastUpdated").map(str::to_owned),
        signature_version: get("AntivirusSignatureVersion").map(str::to_owned),
        signatures_out_of_date: get("DefenderSignaturesOutOfDate").and_then(text_bool),
        running_mode: get("AMRunningMode").map(str::to_owned),
        product_version: get("AMProductVersion").map(str::to_owned),
    })
}

/// Parses `Get-MpComputerStatus | ConvertTo-Json` (a single object; the
/// first element if it comes as an array).
pub fn parse_mp_status_json(text: &str) -> Result<DefenderStatus, ParseError> {
    let value = parse_json_lenient(text)?.ok_or(ParseError::NoFields)?;
    let map = match &value {
        Value::Object(map) => map,
        Value::Array(items) => match items.first() {
            Some(Value::Object(map)) => map,
            _ => return Err(ParseError::Shape("array without an object".to_owned())),
        },
        _ => return Err(ParseError::Shape("expected an object".to_owned())),
    };
    if !MP_KEYS.iter().any(|k| map_get(map, k).is_some()) {
        return Err(ParseError::NoFields);
    }
    let get = |k: &str| map_get(map, k);
    Ok(DefenderStatus {
        am_service_enabled: get("AMServiceEnabled").and_then(json_bool),
        antivirus_enabled: get("AntivirusEnabled").and_then(json_bool),
        real_time_protection_enabled: get("RealTimeProtectionEnabled").and_then(json_bool),
        signature_age_days: get("AntivirusSignatureAge").and_then(json_u64),
        signature_last_updated: get("AntivirusSignatureLastUpdated").and_then(json_date),
        signature_version: get("AntivirusSignatureVersion").and_then(json_string),
        signatures_out_of_date: get("DefenderSignaturesOutOfDate").and_then(json_bool),
        running_mode: get("AMRunningMode").and_then(json_string),
        product_version: get("AMProductVersion").and_then(json_string),
    })
}

/// Whether an `AMRunningMode` means another product (or EDR) is primary and
/// Defender does not scan on access.
pub fn is_passive_mode(mode: &str) -> bool {
    let m = mode.to_ascii_lowercase();
    m.contains("passive") || m.contains("edr block")
}

/// Defender's status judged as a product.
pub fn defender_product(s: &DefenderStatus, evidence: &str) -> Product {
    let mut p = Product::new(
        "av.defender",
        "Microsoft Defender Antivirus",
        "Microsoft Defender Antivirus",
        "defender",
    );
    p.threshold = format!(
        "service, antivirus and real-time protection enabled, running mode Normal, signatures <= {MAX_SIGNATURE_AGE_DAYS} days old"
    );
    p.evidence = evidence.to_owned();
    // Defender before AMRunningMode existed could only run as the primary AV.
    let mode = s.running_mode.as_deref().unwrap_or("Normal");
    p.passive = is_passive_mode(mode);
    p.realtime = s.real_time_protection_enabled;
    let flags = [
        s.am_service_enabled,
        s.antivirus_enabled,
        s.real_time_protection_enabled,
    ];
    p.active = if p.passive || flags.contains(&Some(false)) {
        Some(false)
    } else if flags.iter().all(|f| *f == Some(true)) {
        Some(true)
    } else {
        None
    };
    let mut notes = vec![format!("running mode {mode}")];
    for (name, v) in [
        ("service", s.am_service_enabled),
        ("antivirus", s.antivirus_enabled),
        ("real-time protection", s.real_time_protection_enabled),
    ] {
        notes.push(match v {
            Some(true) => format!("{name} enabled"),
            Some(false) => format!("{name} DISABLED"),
            None => format!("{name} not reported"),
        });
    }
    // Defender reports ages it cannot compute as all-ones (the scan ages in
    // the fixtures are 4294967295 for "never"); anything past 65534 days is
    // such a marker, not a measurement.
    match s.signature_age_days {
        Some(age) if age < 65535 => {
            p.signature_age_days = Some(age as f64);
            p.signatures_current = Some(
                age <= u64::from(MAX_SIGNATURE_AGE_DAYS) && s.signatures_out_of_date != Some(true),
            );
            notes.push(format!("signatures {age} day(s) old"));
        }
        Some(marker) => {
            p.signatures_current = s.signatures_out_of_date.map(|o| !o);
            notes.push(format!("signature age not measured ({marker})"));
        }
        None => {
            p.signatures_current = s.signatures_out_of_date.map(|o| !o);
            notes.push("signature age not reported".to_owned());
        }
    }
    if s.signatures_out_of_date == Some(true) {
        notes.push("Defender flags signatures out of date".to_owned());
    }
    if let Some(v) = &s.signature_version {
        notes.push(format!("version {v}"));
    }
    if let Some(t) = &s.signature_last_updated {
        notes.push(format!("updated {t}"));
    }
    p.detail = notes.join(", ");
    if p.active.is_none() {
        p.unknown_reason = Some(format!("protection flags incomplete: {}", p.detail));
    } else if p.active == Some(true) && p.signatures_current.is_none() {
        p.unknown_reason = Some(format!("signature age unknown: {}", p.detail));
    }
    p
}

// --- Defender for Endpoint on Linux: mdatp health ---------------------------

/// The fields of `mdatp health --output json` that decide protection.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MdatpHealth {
    pub app_version: Option<String>,
    pub healthy: Option<bool>,
    pub licensed: Option<bool>,
    pub real_time_protection_enabled: Option<bool>,
    pub passive_mode_enabled: Option<bool>,
    /// e.g. "upToDate".
    pub definitions_status: Option<String>,
    /// Unix milliseconds of the last definitions update.
    pub definitions_updated_ms: Option<i64>,
    pub definitions_minutes_ago: Option<u64>,
    pub definitions_version: Option<String>,
    pub health_issues: Vec<String>,
}

/// Parses `mdatp health --output json`. Settings come either bare or wrapped
/// as `{"value": ..., "isManaged": ...}`; keys in camelCase, with the
/// snake_case names of the text output accepted too.
pub fn parse_mdatp_health(text: &str) -> Result<MdatpHealth, ParseError> {
    let value = parse_json_lenient(text)?.ok_or(ParseError::NoFields)?;
    let Value::Object(map) = &value else {
        return Err(ParseError::Shape("expected an object".to_owned()));
    };
    let get = |camel: &str, snake: &str| {
        map_get(map, camel)
            .or_else(|| map_get(map, snake))
            .map(unwrap_managed)
    };
    let h = MdatpHealth {
        app_version: get("appVersion", "app_version").and_then(json_string),
        healthy: get("healthy", "healthy").and_then(json_bool),
        licensed: get("licensed", "licensed").and_then(json_bool),
        real_time_protection_enabled: get(
            "realTimeProtectionEnabled",
            "real_time_protection_enabled",
        )
        .and_then(json_bool),
        passive_mode_enabled: get("passiveModeEnabled", "passive_mode_enabled").and_then(json_bool),
        definitions_status: get("definitionsStatus", "definitions_status").and_then(|v| match v {
            Value::Object(m) => map_get(m, "$type").and_then(json_string),
            other => json_string(other),
        }),
        definitions_updated_ms: get("definitionsUpdated", "definitions_updated")
            .and_then(json_u64)
            .and_then(|v| i64::try_from(v).ok()),
        definitions_minutes_ago: get(
            "definitionsUpdatedMinutesAgo",
            "definitions_updated_minutes_ago",
        )
        .and_then(json_u64),
        definitions_version: get("definitionsVersion", "definitions_version").and_then(json_string),
        health_issues: get("healthIssues", "health_issues")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(json_string).collect())
            .unwrap_or_default(),
    };
    if h.real_time_protection_enabled.is_none()
        && h.passive_mode_enabled.is_none()
        && h.healthy.is_none()
        && h.definitions_status.is_none()
    {
        return Err(ParseError::NoFields);
    }
    Ok(h)
}

/// `mdatp` health judged as a product.
pub fn mdatp_product(h: &MdatpHealth, now: DateTime<Utc>, evidence: &str) -> Product {
    let mut p = Product::new(
        "av.mdatp",
        "Microsoft Defender for Endpoint (Linux)",
        "Microsoft Defender for Endpoint",
        "mdatp",
    );
    p.threshold = format!(
        "real-time protection on, not passive, definitions up to date and <= {MAX_SIGNATURE_AGE_DAYS} days old"
    );
    p.evidence = evidence.to_owned();
    p.passive = h.passive_mode_enabled == Some(true);
    p.realtime = h.real_time_protection_enabled;
    p.active = if p.passive {
        Some(false)
    } else {
        h.real_time_protection_enabled
    };
    let age = h
        .definitions_updated_ms
        .and_then(|ms| Utc.timestamp_millis_opt(ms).single())
        .map(|t| age_days(t, now))
        .or_else(|| h.definitions_minutes_ago.map(|m| m as f64 / 1440.0));
    p.signature_age_days = age;
    let status_ok = h
        .definitions_status
        .as_deref()
        .map(|s| s.replace('_', "").eq_ignore_ascii_case("uptodate"));
    let age_ok = age.map(|a| a <= f64::from(MAX_SIGNATURE_AGE_DAYS));
    p.signatures_current = match (status_ok, age_ok) {
        (Some(false), _) | (_, Some(false)) => Some(false),
        (Some(true), _) | (None, Some(true)) => Some(true),
        (None, None) => None,
    };
    let mut notes = Vec::new();
    if let Some(v) = &h.app_version {
        notes.push(format!("version {v}"));
    }
    notes.push(match h.real_time_protection_enabled {
        Some(true) => "real-time protection on".to_owned(),
        Some(false) => "real-time protection OFF".to_owned(),
        None => "real-time protection not reported".to_owned(),
    });
    if p.passive {
        notes.push("passive mode".to_owned());
    }
    if let Some(s) = &h.definitions_status {
        notes.push(format!("definitions {s}"));
    }
    if let Some(v) = &h.definitions_version {
        notes.push(format!("definitions version {v}"));
    }
    if let Some(a) = age {
        notes.push(format!("definitions {a:.1} day(s) old"));
    }
    if h.healthy == Some(false) {
        notes.push("mdatp reports unhealthy".to_owned());
    }
    if h.licensed == Some(false) {
        notes.push("not licensed".to_owned());
    }
    if !h.health_issues.is_empty() {
        notes.push(format!("health issues: {}", h.health_issues.join("; ")));
    }
    p.detail = notes.join(", ");
    if p.active.is_none() {
        p.unknown_reason = Some(format!(
            "real-time protection state not reported: {}",
            p.detail
        ));
    } else if p.active == Some(true) && p.signatures_current.is_none() {
        p.unknown_reason = Some(format!("definitions state not reported: {}", p.detail));
    }
    p
}

// --- ClamAV ------------------------------------------------------------------

/// The text header at the start of a `.cvd`/`.cld`/`.cud` database:
/// `ClamAV-VDB:build-time:version:signatures:flevel:md5:dsig:builder:epoch`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CvdHeader {
    /// As written, e.g. "22 Jun 2021 20-40 -0400" (sigtool writes `-`
    /// between hours and minutes since `:` separates the fields).
    pub build_time: String,
    pub version: u32,
    pub signatures: Option<u64>,
    pub functionality_level: Option<u32>,
    pub md5: Option<String>,
    /// False when the digital signature is missing or the `X` placeholder of
    /// unsigned `.cud` files.
    pub signed: bool,
    pub builder: Option<String>,
    /// Build time in Unix seconds, written by sigtool since 2004-era headers.
    pub build_epoch: Option<i64>,
}

const CVD_MAGIC: &str = "ClamAV-VDB:";
const CVD_HEADER_LEN: usize = 512;

/// Parses the first (up to) 512 bytes of a database file. Padding spaces and
/// NULs are ignored; a short header (fields cut off) gives what is there as
/// long as the build time and version are present.
pub fn parse_cvd_header(bytes: &[u8]) -> Result<CvdHeader, ParseError> {
    let head = &bytes[..bytes.len().min(CVD_HEADER_LEN)];
    let text = String::from_utf8_lossy(head);
    let text = text
        .trim_end_matches(['\0', ' ', '\n', '\r', '\t'])
        .trim_start_matches('\u{feff}');
    let Some(rest) = text.strip_prefix(CVD_MAGIC) else {
        let start: String = text.chars().take(24).collect();
        return Err(ParseError::NotClamavHeader(format!(
            "starts with {start:?}"
        )));
    };
    let mut fields: Vec<&str> = rest.split(':').collect();
    // A build time written with `HH:MM` (as some tools do) splits in two.
    if fields.len() > 1 && looks_like_minutes_and_zone(fields[1]) {
        let joined_len = fields[0].len() + 1 + fields[1].len();
        fields.splice(0..2, [&rest[..joined_len]]);
    }
    let field = |i: usize| fields.get(i).map(|f| f.trim()).filter(|f| !f.is_empty());
    let build_time = field(0)
        .ok_or_else(|| ParseError::NotClamavHeader("no build time".to_owned()))?
        .to_owned();
    let version = field(1).and_then(|v| v.parse().ok()).ok_or_else(|| {
        ParseError::NotClamavHeader(format!(
            "version {:?} is not a number",
            field(1).unwrap_or("")
        ))
    })?;
    let dsig = field(5);
    Ok(CvdHeader {
        build_time,
        version,
        signatures: field(2).and_then(|v| v.parse().ok()),
        functionality_level: field(3).and_then(|v| v.parse().ok()),
        md5: field(4).map(str::to_owned),
        signed: dsig.is_some_and(|d| d != "X"),
        builder: field(6).map(str::to_owned),
        build_epoch: field(7).and_then(|v| v.parse().ok()),
    })
}

fn looks_like_minutes_and_zone(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 8
        && b[..2].iter().all(u8::is_ascii_digit)
        && b[2] == b' '
        && (b[3] == b'+' || b[3] == b'-')
        && b[4..].iter().all(u8::is_ascii_digit)
}

impl CvdHeader {
    /// When the database was built: the epoch field when present (it is UTC
    /// and unambiguous), else the text time.
    pub fn built_at(&self) -> Option<DateTime<Utc>> {
        if let Some(t) = self
            .build_epoch
            .and_then(|e| Utc.timestamp_opt(e, 0).single())
        {
            return Some(t);
        }
        ["%d %b %Y %H-%M %z", "%d %b %Y %H:%M %z"]
            .iter()
            .find_map(|f| DateTime::parse_from_str(&self.build_time, f).ok())
            .map(|t| t.with_timezone(&Utc))
    }

    fn describe(&self) -> String {
        let mut s = format!("version {}", self.version);
        if let Some(n) = self.signatures {
            s.push_str(&format!(", {n} signatures"));
        }
        s.push_str(&format!(", built {}", self.build_time));
        if !self.signed {
            s.push_str(", unsigned");
        }
        s
    }
}

/// What was found for one database (`daily` or `main`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DbFile {
    Missing,
    /// Present but could not be read or parsed.
    Bad {
        path: PathBuf,
        reason: String,
    },
    Found {
        path: PathBuf,
        header: CvdHeader,
    },
}

/// The databases in a ClamAV database directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClamavDbs {
    pub dir: PathBuf,
    /// The directory exists (even if empty or unreadable).
    pub dir_exists: bool,
    pub daily: DbFile,
    pub main: DbFile,
}

/// Reads the `daily` and `main` database headers from `dir`. When both a
/// `.cld` and a `.cvd` exist (an interrupted update), the newer version wins.
pub fn read_clamav_dir(dir: &Path) -> ClamavDbs {
    let read = |base: &str| {
        let mut best = DbFile::Missing;
        for ext in ["cld", "cvd", "cud"] {
            let path = dir.join(format!("{base}.{ext}"));
            let found = match read_head(&path) {
                Ok(None) => continue,
                Ok(Some(bytes)) => match parse_cvd_header(&bytes) {
                    Ok(header) => DbFile::Found { path, header },
                    Err(e) => DbFile::Bad {
                        path,
                        reason: e.to_string(),
                    },
                },
                Err(reason) => DbFile::Bad { path, reason },
            };
            best = match (best, found) {
                (
                    DbFile::Found {
                        path: p1,
                        header: h1,
                    },
                    DbFile::Found {
                        path: p2,
                        header: h2,
                    },
                ) => {
                    if h2.version > h1.version {
                        DbFile::Found {
                            path: p2,
                            header: h2,
                        }
                    } else {
                        DbFile::Found {
                            path: p1,
                            header: h1,
                        }
                    }
                }
                (DbFile::Found { path, header }, _) | (_, DbFile::Found { path, header }) => {
                    DbFile::Found { path, header }
                }
                (DbFile::Bad { path, reason }, _)
                | (DbFile::Missing, DbFile::Bad { path, reason }) => DbFile::Bad { path, reason },
                (DbFile::Missing, DbFile::Missing) => DbFile::Missing,
            };
        }
        best
    };
    ClamavDbs {
        dir: dir.to_owned(),
        dir_exists: dir.exists(),
        daily: read("daily"),
        main: read("main"),
    }
}

fn read_head(path: &Path) -> Result<Option<Vec<u8>>, String> {
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("cannot open {}: {e}", path.display())),
    };
    let mut bytes = Vec::with_capacity(CVD_HEADER_LEN);
    file.take(CVD_HEADER_LEN as u64)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    Ok(Some(bytes))
}

/// Which ClamAV daemons run, from process names (`/proc/*/comm`). The
/// `clamd@scan` unit of Fedora/EPEL runs a process named `clamd` too.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClamavProcesses {
    pub clamd: bool,
    /// The on-access scanner, which hands files to clamd as they are opened.
    pub clamonacc: bool,
}

pub fn clamav_processes(names: &[String]) -> ClamavProcesses {
    ClamavProcesses {
        clamd: names
            .iter()
            .any(|n| n == "clamd" || n.starts_with("clamd@")),
        clamonacc: names.iter().any(|n| n == "clamonacc"),
    }
}

/// ClamAV judged as a product, or `None` when nothing of ClamAV is on the
/// host (no databases, no programs, no daemon).
///
/// ClamAV counts as active when `clamd` runs: on servers clamd is the
/// resident engine that mail filters, ICAP and the on-access scanner hand
/// files to. On-access scanning (`clamonacc`) is reported as
/// `av.realtime_enabled` but not required, because requiring it would call
/// nearly every ClamAV server disabled.
pub fn clamav_product(
    dbs: &ClamavDbs,
    processes: Result<&[String], &str>,
    programs_found: &[String],
    now: DateTime<Utc>,
) -> Option<Product> {
    let procs = processes.map(clamav_processes);
    let any_db = !matches!((&dbs.daily, &dbs.main), (DbFile::Missing, DbFile::Missing));
    let running = procs.is_ok_and(|p| p.clamd || p.clamonacc);
    if !any_db && !running && programs_found.is_empty() {
        return None;
    }
    let mut p = Product::new("av.clamav", "ClamAV", "ClamAV", "clamav");
    p.threshold = format!("clamd running and daily database <= {MAX_SIGNATURE_AGE_DAYS} days old");
    let mut notes = Vec::new();
    let mut reasons = Vec::new();
    match procs {
        Ok(pr) => {
            p.active = Some(pr.clamd);
            p.realtime = Some(pr.clamonacc);
            notes.push(
                if pr.clamd {
                    "clamd running"
                } else {
                    "clamd NOT running"
                }
                .to_owned(),
            );
            notes.push(
                if pr.clamonacc {
                    "on-access scanning (clamonacc) on"
                } else {
                    "no on-access scanning"
                }
                .to_owned(),
            );
        }
        Err(e) => reasons.push(format!("cannot list processes: {e}")),
    }
    let mut evidence = vec![format!("database headers in {}", dbs.dir.display())];
    match &dbs.daily {
        DbFile::Found { path, header } => {
            evidence.push(path.display().to_string());
            match header.built_at() {
                Some(t) => {
                    let age = age_days(t, now);
                    p.signature_age_days = Some(age);
                    p.signatures_current = Some(age <= f64::from(MAX_SIGNATURE_AGE_DAYS));
                    notes.push(format!("daily {}, {age:.1} day(s) old", header.describe()));
                }
                None => {
                    notes.push(format!("daily {}", header.describe()));
                    reasons.push(format!("build time {:?} not understood", header.build_time));
                }
            }
        }
        DbFile::Missing => {
            // Without daily there are no current signatures at all, whatever
            // the reason (freshclam never ran or cannot reach the mirror).
            p.signatures_current = Some(false);
            notes.push(format!("no daily database in {}", dbs.dir.display()));
        }
        DbFile::Bad { path, reason } => {
            evidence.push(path.display().to_string());
            reasons.push(reason.clone());
        }
    }
    match &dbs.main {
        DbFile::Found { header, .. } => notes.push(format!("main {}", header.describe())),
        DbFile::Missing => notes.push("no main database".to_owned()),
        DbFile::Bad { reason, .. } => notes.push(format!("main: {reason}")),
    }
    if !programs_found.is_empty() {
        notes.push(format!("installed: {}", programs_found.join(", ")));
    }
    evidence.push("/proc/*/comm".to_owned());
    p.evidence = evidence.join("; ");
    p.detail = notes.join(", ");
    if !reasons.is_empty() {
        p.unknown_reason = Some(reasons.join("; "));
    }
    Some(p)
}

// --- Configured third-party products ------------------------------------------

/// A product the agent has no specific knowledge of, described in the
/// configuration: its process and where its definitions live.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GenericAv {
    pub name: String,
    /// Process name as in `/proc/<pid>/comm`.
    pub process: String,
    /// A definitions file, or a directory whose newest file counts.
    pub definitions_path: PathBuf,
    pub max_age_days: u32,
}

/// Whether `wanted` is among the process names. The kernel cuts `comm` to
/// 15 bytes, so a longer configured name matches its cut form.
pub fn process_running(names: &[String], wanted: &str) -> bool {
    let cut = truncate_bytes(wanted, 15);
    names.iter().any(|n| n == wanted || n == cut)
}

fn truncate_bytes(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// A configured product judged from whether its process runs and when its
/// definitions last changed.
pub fn generic_product(
    g: &GenericAv,
    running: Result<bool, &str>,
    newest_mtime: Result<DateTime<Utc>, &str>,
    now: DateTime<Utc>,
) -> Product {
    let mut p = Product::new(
        &format!("av.generic:{}", slug(&g.name)),
        &format!("Antivirus: {}", g.name),
        &g.name,
        "generic",
    );
    p.threshold = format!(
        "process {} running and definitions changed within {} days",
        g.process, g.max_age_days
    );
    p.evidence = format!("/proc/*/comm; mtime of {}", g.definitions_path.display());
    p.configured = true;
    let mut notes = Vec::new();
    let mut reasons = Vec::new();
    match running {
        Ok(r) => {
            p.active = Some(r);
            notes.push(format!(
                "process {} {}",
                g.process,
                if r { "running" } else { "NOT running" }
            ));
        }
        Err(e) => reasons.push(format!("cannot list processes: {e}")),
    }
    match newest_mtime {
        Ok(t) => {
            let age = age_days(t, now);
            p.signature_age_days = Some(age);
            p.signatures_current = Some(age <= f64::from(g.max_age_days));
            notes.push(format!("definitions {age:.1} day(s) old"));
        }
        Err(e) => reasons.push(e.to_owned()),
    }
    p.detail = notes.join(", ");
    if !reasons.is_empty() {
        p.unknown_reason = Some(reasons.join("; "));
    }
    p
}

/// The newest modification time of a file, or of the files directly in a
/// directory. Errors name the path and the cause.
pub fn newest_mtime(path: &Path) -> Result<DateTime<Utc>, String> {
    let meta =
        std::fs::metadata(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let mtime = |m: &std::fs::Metadata| m.modified().ok().map(DateTime::<Utc>::from);
    if !meta.is_dir() {
        return mtime(&meta).ok_or_else(|| format!("no modification time for {}", path.display()));
    }
    let entries =
        std::fs::read_dir(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    entries
        .filter_map(Result::ok)
        .filter_map(|e| e.metadata().ok())
        .filter(|m| m.is_file())
        .filter_map(|m| mtime(&m))
        .max()
        .ok_or_else(|| format!("no definition files in {}", path.display()))
}

// --- Products, verdicts and the per-host status -------------------------------

/// One antivirus product as judged from whatever source reported it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Product {
    pub check_id: String,
    pub title: String,
    /// Product name, the `product` label of metrics.
    pub name: String,
    /// Which source reported it: wsc, defender, mdatp, clamav, generic.
    pub source: String,
    /// Protecting now (engine on, not passive). `None`: could not tell.
    pub active: Option<bool>,
    /// Installed on purpose as a secondary product (Defender passive mode).
    pub passive: bool,
    /// Named in the configuration, so expected to run whatever else does.
    pub configured: bool,
    /// Scans files on access.
    pub realtime: Option<bool>,
    pub signatures_current: Option<bool>,
    pub signature_age_days: Option<f64>,
    /// What was seen, for people.
    pub detail: String,
    pub threshold: String,
    pub evidence: String,
    /// Why something could not be judged.
    pub unknown_reason: Option<String>,
}

impl Product {
    fn new(check_id: &str, title: &str, name: &str, source: &str) -> Self {
        Self {
            check_id: check_id.to_owned(),
            title: title.to_owned(),
            name: name.to_owned(),
            source: source.to_owned(),
            ..Self::default()
        }
    }

    pub fn verdict(&self) -> Verdict {
        match (self.active, self.signatures_current) {
            (Some(true), Some(true)) => Verdict::Protecting,
            (Some(true), Some(false)) => Verdict::Outdated,
            (Some(true), None) => Verdict::Undetermined,
            _ if self.passive => Verdict::Passive,
            (Some(false), _) => Verdict::Disabled,
            (None, _) => Verdict::Undetermined,
        }
    }
}

/// How one product stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// On, and definitions current.
    Protecting,
    /// On, but definitions too old.
    Outdated,
    /// Deliberately secondary; another product should be primary.
    Passive,
    /// Installed but not protecting (off, snoozed, expired, not running).
    Disabled,
    Undetermined,
}

/// A source that could not be consulted at all, so a product may exist that
/// we did not see.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceFailure {
    pub check_id: String,
    pub title: String,
    pub reason: String,
    pub evidence: String,
}

/// Everything one collection found.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Survey {
    pub products: Vec<Product>,
    /// Where we looked, for the evidence of `av.status`.
    pub looked: Vec<String>,
    pub failures: Vec<SourceFailure>,
}

/// The per-host verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AvStatus {
    Protected,
    Outdated,
    Disabled,
    Missing,
    Unknown,
}

impl AvStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            AvStatus::Protected => "protected",
            AvStatus::Outdated => "outdated",
            AvStatus::Disabled => "disabled",
            AvStatus::Missing => "missing",
            AvStatus::Unknown => "unknown",
        }
    }
}

/// The per-host status and a sentence saying why.
///
/// A failed source or an undetermined product could hide an active one, so
/// they turn every verdict but `protected` into `unknown`. With every source
/// consulted and nothing found the host has no antivirus: `missing` is a
/// fact about the host, not an inability to look.
pub fn overall_status(survey: &Survey) -> (AvStatus, String) {
    let names = |v: Verdict| -> Vec<String> {
        survey
            .products
            .iter()
            .filter(|p| p.verdict() == v)
            .map(|p| p.name.clone())
            .collect()
    };
    let protecting = names(Verdict::Protecting);
    if !protecting.is_empty() {
        return (
            AvStatus::Protected,
            format!("active with current definitions: {}", protecting.join(", ")),
        );
    }
    let undetermined = names(Verdict::Undetermined);
    if !survey.failures.is_empty() || !undetermined.is_empty() {
        let mut why: Vec<String> = survey
            .failures
            .iter()
            .map(|f| format!("{}: {}", f.title, f.reason))
            .collect();
        why.extend(
            survey
                .products
                .iter()
                .filter(|p| p.verdict() == Verdict::Undetermined)
                .map(|p| {
                    format!(
                        "{}: {}",
                        p.name,
                        p.unknown_reason
                            .as_deref()
                            .unwrap_or("state could not be determined")
                    )
                }),
        );
        return (
            AvStatus::Unknown,
            format!(
                "no product is known to protect this host; {}",
                why.join("; ")
            ),
        );
    }
    let outdated = names(Verdict::Outdated);
    if !outdated.is_empty() {
        return (
            AvStatus::Outdated,
            format!("active but definitions too old: {}", outdated.join(", ")),
        );
    }
    if !survey.products.is_empty() {
        let list: Vec<String> = survey
            .products
            .iter()
            .map(|p| {
                format!(
                    "{} ({})",
                    p.name,
                    if p.verdict() == Verdict::Passive {
                        "passive"
                    } else {
                        "off"
                    }
                )
            })
            .collect();
        return (
            AvStatus::Disabled,
            format!("installed but none active: {}", list.join(", ")),
        );
    }
    if survey.looked.is_empty() {
        return (
            AvStatus::Unknown,
            "no antivirus source is supported on this platform".to_owned(),
        );
    }
    (AvStatus::Missing, "no antivirus product found".to_owned())
}

/// The check result and metrics of one product.
pub fn product_findings(p: &Product) -> Findings {
    let mut out = Findings::default();
    let labels = [("product", p.name.as_str()), ("source", p.source.as_str())];
    if let Some(age) = p.signature_age_days {
        out.metrics.push(metric(METRIC_SIGNATURE_AGE, age, &labels));
    }
    if let Some(rt) = p.realtime {
        out.metrics
            .push(metric(METRIC_REALTIME, if rt { 1.0 } else { 0.0 }, &labels));
    }
    let (status, word) = match p.verdict() {
        Verdict::Protecting => (CheckStatus::Ok, "protecting"),
        Verdict::Outdated => (CheckStatus::Warning, "outdated"),
        Verdict::Passive => (CheckStatus::Ok, "passive mode (not the primary antivirus)"),
        Verdict::Disabled => (CheckStatus::Critical, "disabled"),
        Verdict::Undetermined => {
            let reason = p
                .unknown_reason
                .clone()
                .unwrap_or_else(|| "state could not be determined".to_owned());
            let evidence = if p.detail.is_empty() {
                p.evidence.clone()
            } else {
                format!("{}; seen: {}", p.evidence, p.detail)
            };
            out.checks
                .push(unknown(&p.check_id, &p.title, reason, evidence));
            return out;
        }
    };
    out.checks.push(check(
        &p.check_id,
        &p.title,
        status,
        format!("{word}: {}", p.detail),
        &p.threshold,
        &p.evidence,
    ));
    out
}

/// All checks and metrics of a survey: one per product, one per failed
/// source, and `av.status`.
pub fn survey_findings(survey: &Survey) -> Findings {
    let mut out = Findings::default();
    let protecting: Vec<&str> = survey
        .products
        .iter()
        .filter(|p| p.verdict() == Verdict::Protecting)
        .map(|p| p.name.as_str())
        .collect();
    for p in &survey.products {
        let mut f = product_findings(p);
        // Windows turns Defender off when another product registers, so a
        // discovered product that is off beside an active one is normal.
        if p.verdict() == Verdict::Disabled && !p.configured && !protecting.is_empty() {
            for c in &mut f.checks {
                c.status = CheckStatus::Ok as i32;
                c.value = format!(
                    "off, protection provided by {}: {}",
                    protecting.join(", "),
                    p.detail
                );
            }
        }
        out.extend(f);
    }
    for f in &survey.failures {
        out.checks
            .push(unknown(&f.check_id, &f.title, &f.reason, &f.evidence));
    }
    // Two products with one name (two Security Center rows) must not share
    // an id, or one would overwrite the other downstream.
    let mut seen: Vec<String> = Vec::new();
    for c in &mut out.checks {
        let base = c.check_id.clone();
        let mut n = 1;
        while seen.contains(&c.check_id) {
            n += 1;
            c.check_id = format!("{base}-{n}");
        }
        seen.push(c.check_id.clone());
    }
    let (status, why) = overall_status(survey);
    let evidence = format!("looked at: {}", survey.looked.join("; "));
    let threshold = format!(
        "protected = at least one product enabled with real-time protection and definitions <= {MAX_SIGNATURE_AGE_DAYS} days old"
    );
    let result = match status {
        AvStatus::Unknown => unknown(STATUS_CHECK_ID, STATUS_TITLE, why, evidence),
        s => {
            let level = match s {
                AvStatus::Protected => CheckStatus::Ok,
                AvStatus::Outdated => CheckStatus::Warning,
                _ => CheckStatus::Critical,
            };
            check(
                STATUS_CHECK_ID,
                STATUS_TITLE,
                level,
                format!("{}: {why}", s.as_str()),
                threshold,
                evidence,
            )
        }
    };
    out.checks.push(result);
    out
}

// --- Platform shims -----------------------------------------------------------

/// What the Linux shim gathered, for [`survey_linux`].
#[derive(Debug, Clone)]
pub struct LinuxProbe {
    pub clamav: ClamavDbs,
    /// ClamAV programs found in the system PATH.
    pub clamav_programs: Vec<String>,
    /// Process names from `/proc/*/comm`, or why they could not be listed.
    pub processes: Result<Vec<String>, String>,
    /// `mdatp health --output json`; `None` when mdatp is not installed.
    pub mdatp: Option<Result<Output, ExecError>>,
    /// Each configured product with the newest mtime of its definitions.
    pub generic: Vec<(GenericAv, Result<DateTime<Utc>, String>)>,
}

const MDATP_ARGS: &[&str] = &["health", "--output", "json"];

/// Judges what the Linux shim gathered.
pub fn survey_linux(probe: &LinuxProbe, now: DateTime<Utc>) -> Survey {
    let mut s = Survey::default();
    let procs = probe.processes.as_deref().map_err(String::as_str);
    s.looked.push(format!(
        "ClamAV databases in {}",
        probe.clamav.dir.display()
    ));
    s.looked
        .push(format!("ClamAV programs ({})", CLAMAV_PROGRAMS.join(", ")));
    s.looked.push("running processes (/proc/*/comm)".to_owned());
    s.products.extend(clamav_product(
        &probe.clamav,
        procs,
        &probe.clamav_programs,
        now,
    ));
    s.looked.push("mdatp (Defender for Endpoint)".to_owned());
    let evidence = format!("mdatp {}", MDATP_ARGS.join(" "));
    match &probe.mdatp {
        None | Some(Err(ExecError::NotFound(_))) => {}
        Some(result) => {
            let parsed = match result {
                Ok(out) if out.code == Some(0) => {
                    parse_mdatp_health(&out.stdout).map_err(|e| e.to_string())
                }
                Ok(out) => Err(exit_reason(out)),
                Err(e) => Err(e.to_string()),
            };
            s.products.push(match parsed {
                Ok(h) => mdatp_product(&h, now, &evidence),
                Err(reason) => {
                    let mut p = mdatp_product(&MdatpHealth::default(), now, &evidence);
                    p.detail = "mdatp installed".to_owned();
                    p.unknown_reason = Some(reason);
                    p
                }
            });
        }
    }
    for (g, mtime) in &probe.generic {
        s.looked.push(format!("configured product {}", g.name));
        let running = procs.map(|names| process_running(names, &g.process));
        s.products.push(generic_product(
            g,
            running,
            mtime.as_ref().copied().map_err(String::as_str),
            now,
        ));
    }
    s
}

/// Makes PowerShell write UTF-8: piped output otherwise uses the console
/// code page (GBK on Chinese Windows) and product names arrive garbled.
#[cfg(windows)]
const PS_UTF8: &str = "[Console]::OutputEncoding = [System.Text.Encoding]::UTF8; ";
/// PowerShell that lists Security Center antivirus products as JSON; the
/// `@()` makes zero or one product an array too.
pub const WSC_SCRIPT: &str = "$p = @(Get-CimInstance -Namespace root/SecurityCenter2 -ClassName AntiVirusProduct -ErrorAction Stop | Select-Object displayName,productState,pathToSignedReportingExe,timestamp); ConvertTo-Json -InputObject $p -Compress";
/// PowerShell that prints Defender's status as JSON.
pub const MP_SCRIPT: &str = "Get-MpComputerStatus -ErrorAction Stop | Select-Object AMServiceEnabled,AntivirusEnabled,RealTimeProtectionEnabled,AntivirusSignatureAge,AntivirusSignatureLastUpdated,AntivirusSignatureVersion,DefenderSignaturesOutOfDate,AMRunningMode,AMProductVersion | ConvertTo-Json -Compress";

/// How a failed PowerShell query is read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PsFailure {
    /// The thing queried does not exist here, which is not an error; the
    /// text says what is absent.
    Absent(String),
    Failed,
}

/// Sorts PowerShell errors into "not present on this host" and real
/// failures. Messages are translated on non-English Windows, so the
/// untranslated error ids and HRESULTs are matched as well.
pub fn classify_ps_failure(stderr: &str) -> PsFailure {
    let lower = stderr.to_ascii_lowercase();
    if lower.contains("0x8004100e") || lower.contains("invalid namespace") {
        // WBEM_E_INVALID_NAMESPACE: Windows Server has no Security Center.
        PsFailure::Absent(
            "no Security Center (root/SecurityCenter2 absent, as on Windows Server)".to_owned(),
        )
    } else if lower.contains("commandnotfoundexception") || lower.contains("is not recognized") {
        PsFailure::Absent("Defender PowerShell module not installed".to_owned())
    } else if lower.contains("0x800106ba") {
        // Defender's service is stopped, which Windows does when another
        // product has registered as the primary antivirus.
        PsFailure::Absent("Defender service not running (0x800106ba)".to_owned())
    } else {
        PsFailure::Failed
    }
}

/// Judges the two PowerShell queries of the Windows shim. `run` runs one
/// script; generic products are not supported on Windows yet.
pub fn survey_windows(
    run: &dyn Fn(&str) -> Result<Output, ExecError>,
    generic: &[GenericAv],
) -> Survey {
    let mut s = Survey::default();
    let wsc_evidence = "powershell Get-CimInstance -Namespace root/SecurityCenter2 -ClassName AntiVirusProduct | ConvertTo-Json";
    s.looked
        .push("Security Center (root/SecurityCenter2 AntiVirusProduct)".to_owned());
    let fail = |id: &str, title: &str, reason: String, evidence: &str| SourceFailure {
        check_id: id.to_owned(),
        title: title.to_owned(),
        reason,
        evidence: evidence.to_owned(),
    };
    match run(WSC_SCRIPT) {
        Ok(out) if out.code == Some(0) => match parse_wsc_json(&out.stdout) {
            Ok(rows) => s
                .products
                .extend(rows.iter().map(|r| wsc_product(r, wsc_evidence))),
            Err(e) => s.failures.push(fail(
                "av.wsc",
                "Security Center antivirus products",
                e.to_string(),
                wsc_evidence,
            )),
        },
        Ok(out) => match classify_ps_failure(&out.stderr) {
            PsFailure::Absent(note) => s.looked.push(note),
            PsFailure::Failed => s.failures.push(fail(
                "av.wsc",
                "Security Center antivirus products",
                exit_reason(&out),
                wsc_evidence,
            )),
        },
        Err(e) => s.failures.push(fail(
            "av.wsc",
            "Security Center antivirus products",
            e.to_string(),
            wsc_evidence,
        )),
    }
    let mp_evidence = "powershell Get-MpComputerStatus | ConvertTo-Json";
    s.looked.push("Defender (Get-MpComputerStatus)".to_owned());
    match run(MP_SCRIPT) {
        Ok(out) if out.code == Some(0) => match parse_mp_status_json(&out.stdout) {
            Ok(st) => s.products.push(defender_product(&st, mp_evidence)),
            Err(e) => s.failures.push(fail(
                "av.defender",
                "Microsoft Defender Antivirus",
                e.to_string(),
                mp_evidence,
            )),
        },
        Ok(out) => match classify_ps_failure(&out.stderr) {
            PsFailure::Absent(note) => s.looked.push(note),
            PsFailure::Failed => s.failures.push(fail(
                "av.defender",
                "Microsoft Defender Antivirus",
                exit_reason(&out),
                mp_evidence,
            )),
        },
        Err(e) => s.failures.push(fail(
            "av.defender",
            "Microsoft Defender Antivirus",
            e.to_string(),
            mp_evidence,
        )),
    }
    for g in generic {
        s.failures.push(fail(
            &format!("av.generic:{}", slug(&g.name)),
            &format!("Antivirus: {}", g.name),
            "configured product checks are not supported on Windows yet".to_owned(),
            "",
        ));
    }
    s
}

/// Collects antivirus state (blocking: runs commands and reads files), with
/// ClamAV's databases looked for in [`CLAMAV_DB_DIR`].
///
/// A Linux host where ClamAV (databases, programs or daemon), `mdatp` and
/// every configured product are all absent is `missing` (critical), not
/// `unknown`: each of those places was readable and empty, so the absence
/// is what we measured. `unknown` is kept for a source that failed or a
/// product whose state could not be read.
pub fn collect(generic: &[GenericAv], now: DateTime<Utc>) -> Findings {
    collect_with(generic, Path::new(CLAMAV_DB_DIR), now)
}

/// [`collect`] with ClamAV's database directory given (unused on Windows).
pub fn collect_with(generic: &[GenericAv], clamav_dir: &Path, now: DateTime<Utc>) -> Findings {
    let survey = platform_survey(generic, clamav_dir, now);
    for f in &survey.failures {
        tracing::debug!(check = %f.check_id, reason = %f.reason, "antivirus source failed");
    }
    survey_findings(&survey)
}

#[cfg(not(windows))]
fn platform_survey(generic: &[GenericAv], clamav_dir: &Path, now: DateTime<Utc>) -> Survey {
    use crate::exec::{Cmd, find_program};
    let probe = LinuxProbe {
        clamav: read_clamav_dir(clamav_dir),
        clamav_programs: CLAMAV_PROGRAMS
            .iter()
            .filter(|p| find_program(p).is_some())
            .map(|p| (*p).to_owned())
            .collect(),
        processes: super::process_names(),
        mdatp: find_program("mdatp").map(|_| Cmd::new("mdatp", MDATP_ARGS).run()),
        generic: generic
            .iter()
            .map(|g| (g.clone(), newest_mtime(&g.definitions_path)))
            .collect(),
    };
    survey_linux(&probe, now)
}

#[cfg(windows)]
fn platform_survey(generic: &[GenericAv], _clamav_dir: &Path, _now: DateTime<Utc>) -> Survey {
    let root = std::env::var("SystemRoot").unwrap_or_else(|_| r"C:\Windows".to_owned());
    let ps = format!(r"{root}\System32\WindowsPowerShell\v1.0\powershell.exe");
    let run = |script: &str| {
        let script = format!("{PS_UTF8}{script}");
        crate::exec::Cmd::new(&ps, &["-NoProfile", "-NonInteractive", "-Command", &script])
            .timeout(Duration::from_secs(60))
            .run()
    };
    survey_windows(&run, generic)
}

// --- Small helpers -------------------------------------------------------------

fn exit_reason(out: &Output) -> String {
    let code = out
        .code
        .map_or_else(|| "a signal".to_owned(), |c| c.to_string());
    let msg = out
        .stderr
        .lines()
        .chain(out.stdout.lines())
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .trim();
    format!("{} exited with {code}: {msg}", out.command)
}

fn age_days(t: DateTime<Utc>, now: DateTime<Utc>) -> f64 {
    // A clock behind the build time gives a negative age; it is current.
    ((now - t).num_seconds() as f64 / 86_400.0).max(0.0)
}

/// Lower-case id part from a product name; other scripts' letters are kept
/// (many products in China register Chinese names).
fn slug(name: &str) -> String {
    let mut out = String::new();
    for c in name.chars() {
        if c.is_alphanumeric() {
            out.extend(c.to_lowercase());
        } else if !out.is_empty() && !out.ends_with('-') {
            out.push('-');
        }
    }
    while out.ends_with('-') {
        out.pop();
    }
    if out.is_empty() {
        "unnamed".to_owned()
    } else {
        out
    }
}

/// JSON from PowerShell: a BOM and surrounding blank space are dropped;
/// nothing at all is `None` (PowerShell prints nothing for no objects).
fn parse_json_lenient(text: &str) -> Result<Option<Value>, ParseError> {
    let text = text.trim_start_matches('\u{feff}').trim();
    if text.is_empty() {
        return Ok(None);
    }
    serde_json::from_str(text)
        .map(Some)
        .map_err(|e| ParseError::Json(e.to_string()))
}

fn map_get<'a>(map: &'a serde_json::Map<String, Value>, key: &str) -> Option<&'a Value> {
    map.get(key)
        .or_else(|| {
            map.iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(key))
                .map(|(_, v)| v)
        })
        .filter(|v| !v.is_null())
}

fn unwrap_managed(v: &Value) -> &Value {
    match v {
        Value::Object(m) if m.contains_key("value") => m.get("value").unwrap_or(v),
        other => other,
    }
}

fn json_string(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn json_bool(v: &Value) -> Option<bool> {
    match v {
        Value::Bool(b) => Some(*b),
        Value::String(s) => text_bool(s),
        Value::Number(n) => n.as_u64().and_then(|n| match n {
            0 => Some(false),
            1 => Some(true),
            _ => None,
        }),
        _ => None,
    }
}

fn json_u64(v: &Value) -> Option<u64> {
    match v {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// Windows PowerShell 5.1 writes dates as `/Date(ms)/`; PowerShell 7 as
/// ISO 8601 text, kept as is.
fn json_date(v: &Value) -> Option<String> {
    let s = json_string(v)?;
    let ms = s
        .trim()
        .strip_prefix("/Date(")
        .and_then(|r| r.strip_suffix(")/"))
        .and_then(|r| r.parse::<i64>().ok());
    match ms.and_then(|ms| Utc.timestamp_millis_opt(ms).single()) {
        Some(t) => Some(t.format("%Y-%m-%d %H:%M:%S UTC").to_string()),
        None => Some(s),
    }
}

fn text_bool(s: &str) -> Option<bool> {
    match s.trim().to_ascii_lowercase().as_str() {
        "true" => Some(true),
        "false" => Some(false),
        _ => None,
    }
}

/// Splits `name : value` / `name=value` text into records (blank lines or a
/// repeated key start a new one), keeping only `keys` (matched without
/// regard to case and stored in their given spelling).
fn parse_records(text: &str, keys: &[&str]) -> Vec<Vec<(String, String)>> {
    let mut records = Vec::new();
    let mut current: Vec<(String, String)> = Vec::new();
    for line in text.trim_start_matches('\u{feff}').lines() {
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() {
            if !current.is_empty() {
                records.push(std::mem::take(&mut current));
            }
            continue;
        }
        let Some((key, value)) = split_key_value(line) else {
            continue;
        };
        let Some(canonical) = keys.iter().find(|k| k.eq_ignore_ascii_case(key)) else {
            continue;
        };
        if current.iter().any(|(k, _)| k == canonical) {
            records.push(std::mem::take(&mut current));
        }
        current.push(((*canonical).to_owned(), value.to_owned()));
    }
    if !current.is_empty() {
        records.push(current);
    }
    records
}

fn split_key_value(line: &str) -> Option<(&str, &str)> {
    let sep = line.find([':', '='])?;
    let key = line[..sep].trim();
    let valid = !key.is_empty() && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    valid.then(|| (key, line[sep + 1..].trim()))
}

fn record_get<'a>(record: &'a [(String, String)], key: &str) -> Option<&'a str> {
    record
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Duration as Days;

    const WSC_PS_LIST: &str = include_str!(
        "../../testdata/antivirus/pnpt_Get-CimInstance_AntivirusProduct_productState-397568.txt"
    );
    const WSC_METASPLOIT: &str = include_str!(
        "../../testdata/antivirus/metasploit_enum_av_SecurityCenter2_productState-401664_win10-20H2.txt"
    );
    const WSC_WMIC: &str = include_str!(
        "../../testdata/antivirus/pnpt_wmic_AntiVirusProduct_displayName_list_win10-19045.txt"
    );
    const WSC_JSON_ONE: &str = include_str!(
        "../../testdata/antivirus/constructed_SecurityCenter2_ConvertTo-Json_single-object.json"
    );
    const WSC_JSON_TWO: &str = include_str!(
        "../../testdata/antivirus/constructed_SecurityCenter2_ConvertTo-Json_array-third-party.json"
    );
    const MP_MODERN: &str = include_str!(
        "../../testdata/antivirus/msdocs_Get-MpComputerStatus_4.18.24050_2024_vm_rtp-on.txt"
    );
    const MP_LEGACY: &str = include_str!(
        "../../testdata/antivirus/msdocs_Get-MpComputerStatus_4.3.9463_2013_legacy-fields.txt"
    );
    const MP_JSON: &str = include_str!(
        "../../testdata/antivirus/constructed_Get-MpComputerStatus_ConvertTo-Json_from-msdocs-4.18.24050.json"
    );
    const MDATP: &str = include_str!(
        "../../testdata/antivirus/glpi-agent_linux_mdatp-health-json_101.23062_passive-rtp-off.json"
    );
    const CVD_TEST3_FULL: &[u8] =
        include_bytes!("../../testdata/antivirus/clamav-unit_test-3.cvd.full");
    const CVD_TEST1: &[u8] =
        include_bytes!("../../testdata/antivirus/clamav-unit_test-1.cvd.header512");
    const CVD_TEST6: &[u8] =
        include_bytes!("../../testdata/antivirus/clamav-unit_test-6.cvd.header512");
    const CVD_BYTECODE: &[u8] =
        include_bytes!("../../testdata/antivirus/clamav-unit_bytecode.cvd.header512");
    const CUD_UNSIGNED: &[u8] =
        include_bytes!("../../testdata/antivirus/clamav-example_analysis.cud.header512_unsigned-X");
    const CDIFF: &[u8] =
        include_bytes!("../../testdata/antivirus/clamav-unit_test-3.cdiff.header-line_trimmed");
    const CVD_DAILY_2017: &[u8] = include_bytes!(
        "../../testdata/antivirus/mxplusb-clamav-doc_production-daily.cvd-header-line_2017.txt"
    );

    fn at(epoch: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(epoch, 0).single().unwrap()
    }

    fn status_of(f: &Findings) -> (i32, String, String) {
        let c = f
            .checks
            .iter()
            .find(|c| c.check_id == STATUS_CHECK_ID)
            .expect("av.status");
        (c.status, c.value.clone(), c.reason.clone())
    }

    fn metric_value(f: &Findings, name: &str, product: &str) -> Option<f64> {
        f.metrics
            .iter()
            .find(|m| {
                m.name == name
                    && m.labels
                        .iter()
                        .any(|l| l.name == "product" && l.value == product)
            })
            .map(|m| m.value)
    }

    fn looked() -> Vec<String> {
        vec!["somewhere".to_owned()]
    }

    // --- productState -------------------------------------------------------

    #[test]
    fn product_state_decoding_table() {
        use ScannerState::{Expired, Off, On, Snoozed};
        use SignatureState::{OutOfDate, UpToDate};
        // (value, provider, scanner, microsoft, signatures). The first two are
        // the captured fixtures; the rest are values widely reported for
        // Defender and third-party products, decoded by the same layout.
        let table: &[(u32, u8, ScannerState, bool, SignatureState)] = &[
            (397568, 0x06, On, true, UpToDate),       // 0x061100 pnpt fixture
            (401664, 0x06, Snoozed, true, UpToDate),  // 0x062100 metasploit fixture
            (393472, 0x06, Off, true, UpToDate),      // 0x060100
            (397584, 0x06, On, true, OutOfDate),      // 0x061110
            (393488, 0x06, Off, true, OutOfDate),     // 0x060110
            (266240, 0x04, On, false, UpToDate),      // 0x041000 third party
            (262144, 0x04, Off, false, UpToDate),     // 0x040000
            (270336, 0x04, Snoozed, false, UpToDate), // 0x042000
            (274432, 0x04, Expired, false, UpToDate), // 0x043000
            (266256, 0x04, On, false, OutOfDate),     // 0x041010
        ];
        for &(raw, provider, scanner, microsoft, signatures) in table {
            let s = decode_product_state(raw);
            assert_eq!(
                (s.provider, s.scanner, s.microsoft, s.signatures),
                (provider, scanner, microsoft, signatures),
                "{raw} = 0x{raw:06x}"
            );
        }
        assert_eq!(
            decode_product_state(0x061500).scanner,
            ScannerState::Other(0x15)
        );
        assert_eq!(
            decode_product_state(0x064100).scanner,
            ScannerState::Other(0x41)
        );
        assert_eq!(
            decode_product_state(0x061101).signatures,
            SignatureState::Other(1)
        );
        let max = decode_product_state(u32::MAX);
        assert!(matches!(max.scanner, ScannerState::Other(_)));
        assert!(decode_product_state(397568).describe().contains("0x061100"));
    }

    // --- Security Center text and JSON ----------------------------------------

    #[test]
    fn wsc_powershell_list_fixture_is_defender_on_and_current() {
        let rows = parse_wsc_list(WSC_PS_LIST);
        assert_eq!(
            rows,
            vec![WscProduct {
                display_name: "Windows Defender".into(),
                product_state: Some(397568),
                reporting_exe: Some(r"%ProgramFiles%\Windows Defender\MsMpeng.exe".into()),
                timestamp: Some("Mon, 04 Mar 2024 18:28:49 GMT".into()),
            }]
        );
        let p = wsc_product(&rows[0], "fixture");
        assert_eq!(p.check_id, "av.wsc:windows-defender");
        assert_eq!(p.verdict(), Verdict::Protecting);
        assert_eq!(p.realtime, Some(true));
        let f = product_findings(&p);
        assert_eq!(f.checks[0].status, CheckStatus::Ok as i32);
        assert!(
            f.checks[0].value.contains("scanner on"),
            "{}",
            f.checks[0].value
        );
        assert_eq!(
            metric_value(&f, METRIC_REALTIME, "Windows Defender"),
            Some(1.0)
        );
        assert_eq!(
            metric_value(&f, METRIC_SIGNATURE_AGE, "Windows Defender"),
            None
        );
    }

    #[test]
    fn wsc_metasploit_fixture_401664_is_snoozed_so_not_protecting() {
        let rows = parse_wsc_list(WSC_METASPLOIT);
        assert_eq!(rows.len(), 1, "{rows:?}");
        assert_eq!(rows[0].display_name, "Windows Defender");
        assert_eq!(rows[0].product_state, Some(401664));
        assert_eq!(
            rows[0].timestamp.as_deref(),
            Some("Thu, 21 Apr 2022 15:50:46 GMT")
        );
        let p = wsc_product(&rows[0], "fixture");
        assert_eq!(p.verdict(), Verdict::Disabled);
        assert!(p.detail.contains("snoozed"), "{}", p.detail);
        let survey = Survey {
            products: vec![p],
            looked: looked(),
            failures: vec![],
        };
        let f = survey_findings(&survey);
        assert_eq!(f.checks[0].status, CheckStatus::Critical as i32);
        let (status, value, _) = status_of(&f);
        assert_eq!(status, CheckStatus::Critical as i32);
        assert!(value.starts_with("disabled"), "{value}");
    }

    #[test]
    fn wsc_wmic_name_only_is_a_product_of_unknown_state() {
        let rows = parse_wsc_list(WSC_WMIC);
        assert_eq!(rows.len(), 1, "{rows:?}");
        assert_eq!(rows[0].display_name, "Windows Defender");
        assert_eq!(rows[0].product_state, None);
        let p = wsc_product(&rows[0], "wmic");
        assert_eq!(p.verdict(), Verdict::Undetermined);
        let f = survey_findings(&Survey {
            products: vec![p],
            looked: looked(),
            failures: vec![],
        });
        assert_eq!(f.checks[0].status, CheckStatus::Unknown as i32);
        assert!(
            f.checks[0].reason.contains("productState"),
            "{}",
            f.checks[0].reason
        );
        let (status, _, reason) = status_of(&f);
        assert_eq!(status, CheckStatus::Unknown as i32);
        assert!(reason.contains("productState"), "{reason}");
    }

    #[test]
    fn wsc_json_single_object_and_array() {
        let one = parse_wsc_json(WSC_JSON_ONE).unwrap();
        assert_eq!(one, parse_wsc_list(WSC_PS_LIST));
        let two = parse_wsc_json(WSC_JSON_TWO).unwrap();
        assert_eq!(two.len(), 2);
        assert_eq!(two[1].display_name, "360 Total Security");
        let products: Vec<Product> = two.iter().map(|r| wsc_product(r, "json")).collect();
        assert_eq!(products[0].verdict(), Verdict::Disabled);
        assert_eq!(products[1].verdict(), Verdict::Protecting);
        assert_eq!(products[1].check_id, "av.wsc:360-total-security");
        let survey = Survey {
            products,
            looked: looked(),
            failures: vec![],
        };
        let (s, why) = overall_status(&survey);
        assert_eq!(s, AvStatus::Protected);
        assert!(why.contains("360 Total Security"), "{why}");
        let f = survey_findings(&survey);
        assert_eq!(f.checks.len(), 3);
        // Defender off beside an active third-party product is normal.
        assert_eq!(f.checks[0].status, CheckStatus::Ok as i32);
        assert!(
            f.checks[0]
                .value
                .starts_with("off, protection provided by 360 Total Security"),
            "{}",
            f.checks[0].value
        );
        assert_eq!(status_of(&f).0, CheckStatus::Ok as i32);
    }

    #[test]
    fn wsc_json_edge_shapes() {
        assert_eq!(parse_wsc_json(""), Ok(vec![]));
        assert_eq!(parse_wsc_json("  \r\n"), Ok(vec![]));
        assert_eq!(parse_wsc_json("[]"), Ok(vec![]));
        assert_eq!(parse_wsc_json("null"), Ok(vec![]));
        // productState as text, a BOM and stray case: still read.
        let rows =
            parse_wsc_json("\u{feff}[{\"DisplayName\":\"金山毒霸\",\"productState\":\"266240\"}]")
                .unwrap();
        assert_eq!(rows[0].product_state, Some(266240));
        assert_eq!(wsc_product(&rows[0], "").check_id, "av.wsc:金山毒霸");
        assert!(matches!(
            parse_wsc_json("{\"displayName\":"),
            Err(ParseError::Json(_))
        ));
        assert!(matches!(parse_wsc_json("42"), Err(ParseError::Shape(_))));
        assert!(matches!(parse_wsc_json("[1]"), Err(ParseError::Shape(_))));
        // An out-of-range state is not a state.
        let rows = parse_wsc_json("{\"displayName\":\"X\",\"productState\":99999999999}").unwrap();
        assert_eq!(rows[0].product_state, None);
    }

    #[test]
    fn same_named_products_get_distinct_ids() {
        let rows = parse_wsc_list(&format!("{WSC_PS_LIST}\n\n{WSC_PS_LIST}"));
        assert_eq!(rows.len(), 2);
        let survey = Survey {
            products: rows.iter().map(|r| wsc_product(r, "")).collect(),
            looked: looked(),
            failures: vec![],
        };
        let ids: Vec<String> = survey_findings(&survey)
            .checks
            .iter()
            .map(|c| c.check_id.clone())
            .collect();
        assert_eq!(
            ids,
            [
                "av.wsc:windows-defender",
                "av.wsc:windows-defender-2",
                "av.status"
            ]
        );
    }

    // --- Defender ------------------------------------------------------------

    #[test]
    fn defender_modern_list_fixture() {
        let s = parse_mp_status_list(MP_MODERN).unwrap();
        assert_eq!(
            s,
            DefenderStatus {
                am_service_enabled: Some(true),
                antivirus_enabled: Some(true),
                real_time_protection_enabled: Some(true),
                signature_age_days: Some(1),
                signature_last_updated: Some("6/4/2024 8:06:27 AM".into()),
                signature_version: Some("1.413.102.0".into()),
                signatures_out_of_date: Some(false),
                running_mode: Some("Normal".into()),
                product_version: Some("4.18.24050.7".into()),
            }
        );
        let p = defender_product(&s, "Get-MpComputerStatus");
        assert_eq!(p.verdict(), Verdict::Protecting);
        let f = product_findings(&p);
        assert_eq!(f.checks[0].check_id, "av.defender");
        assert_eq!(f.checks[0].status, CheckStatus::Ok as i32);
        assert_eq!(
            metric_value(&f, METRIC_SIGNATURE_AGE, "Microsoft Defender Antivirus"),
            Some(1.0)
        );
        assert_eq!(
            metric_value(&f, METRIC_REALTIME, "Microsoft Defender Antivirus"),
            Some(1.0)
        );
    }

    #[test]
    fn defender_legacy_list_fixture_without_running_mode() {
        let s = parse_mp_status_list(MP_LEGACY).unwrap();
        assert_eq!(s.running_mode, None);
        assert_eq!(s.signatures_out_of_date, None);
        assert_eq!(s.signature_age_days, Some(0));
        assert_eq!(s.product_version.as_deref(), Some("4.3.9463.0"));
        assert_eq!(s.real_time_protection_enabled, Some(true));
        let p = defender_product(&s, "");
        assert_eq!(p.verdict(), Verdict::Protecting);
        assert!(p.detail.contains("running mode Normal"), "{}", p.detail);
    }

    #[test]
    fn defender_constructed_json_matches_the_list_capture() {
        // MP_JSON is hand-written from the values of MP_MODERN (see
        // PROVENANCE.md), in the ConvertTo-Json shape of Windows PowerShell.
        let json = parse_mp_status_json(MP_JSON).unwrap();
        let list = parse_mp_status_list(MP_MODERN).unwrap();
        assert_eq!(
            json.signature_last_updated.as_deref(),
            Some("2024-06-04 15:06:27 UTC")
        );
        assert_eq!(
            DefenderStatus {
                signature_last_updated: None,
                ..json.clone()
            },
            DefenderStatus {
                signature_last_updated: None,
                ..list
            }
        );
        let one = format!("[{MP_JSON}]");
        assert_eq!(parse_mp_status_json(&one).unwrap(), json);
    }

    #[test]
    fn defender_passive_and_edr_block_modes_are_passive() {
        for mode in ["Passive Mode", "SxS Passive Mode", "EDR Block Mode"] {
            let json = MP_JSON.replace("\"Normal\"", &format!("{mode:?}")).replace(
                "\"RealTimeProtectionEnabled\":  true",
                "\"RealTimeProtectionEnabled\":  false",
            );
            let p = defender_product(&parse_mp_status_json(&json).unwrap(), "");
            assert!(p.passive, "{mode}");
            assert_eq!(p.verdict(), Verdict::Passive, "{mode}");
            let f = survey_findings(&Survey {
                products: vec![p],
                looked: looked(),
                failures: vec![],
            });
            assert_eq!(f.checks[0].status, CheckStatus::Ok as i32);
            assert!(
                f.checks[0].value.starts_with("passive"),
                "{}",
                f.checks[0].value
            );
            let (status, value, _) = status_of(&f);
            assert_eq!(status, CheckStatus::Critical as i32, "{mode}");
            assert!(value.starts_with("disabled"), "{value}");
        }
        assert!(!is_passive_mode("Normal"));
    }

    #[test]
    fn defender_rtp_off_old_signatures_and_age_markers() {
        let base = parse_mp_status_list(MP_MODERN).unwrap();
        let off = DefenderStatus {
            real_time_protection_enabled: Some(false),
            ..base.clone()
        };
        let p = defender_product(&off, "");
        assert_eq!(p.verdict(), Verdict::Disabled);
        assert_eq!(
            product_findings(&p).checks[0].status,
            CheckStatus::Critical as i32
        );

        let old = DefenderStatus {
            signature_age_days: Some(30),
            ..base.clone()
        };
        let p = defender_product(&old, "");
        assert_eq!(p.verdict(), Verdict::Outdated);
        assert_eq!(
            product_findings(&p).checks[0].status,
            CheckStatus::Warning as i32
        );

        let flagged = DefenderStatus {
            signatures_out_of_date: Some(true),
            ..base.clone()
        };
        assert_eq!(defender_product(&flagged, "").verdict(), Verdict::Outdated);

        let marker = DefenderStatus {
            signature_age_days: Some(65535),
            signatures_out_of_date: None,
            ..base.clone()
        };
        let p = defender_product(&marker, "");
        assert_eq!(p.signature_age_days, None);
        assert_eq!(p.verdict(), Verdict::Undetermined);
        assert!(p.unknown_reason.unwrap().contains("signature age"));

        let missing_flag = DefenderStatus {
            antivirus_enabled: None,
            ..base
        };
        assert_eq!(
            defender_product(&missing_flag, "").verdict(),
            Verdict::Undetermined
        );
    }

    #[test]
    fn defender_garbage() {
        assert_eq!(parse_mp_status_list(""), Err(ParseError::NoFields));
        assert_eq!(
            parse_mp_status_list("PS C:\\> Get-MpComputerStatus\nerror: nope"),
            Err(ParseError::NoFields)
        );
        assert_eq!(parse_mp_status_json(""), Err(ParseError::NoFields));
        assert_eq!(parse_mp_status_json("{}"), Err(ParseError::NoFields));
        assert!(matches!(
            parse_mp_status_json("[]"),
            Err(ParseError::Shape(_))
        ));
        assert!(matches!(
            parse_mp_status_json("{\"AMServiceEnabled\": tru"),
            Err(ParseError::Json(_))
        ));
        // Truncated list: what is there is read, the rest is unknown.
        let cut = &MP_MODERN[..MP_MODERN.find("AntivirusEnabled").unwrap()];
        let s = parse_mp_status_list(cut).unwrap();
        assert_eq!(s.am_service_enabled, Some(true));
        assert_eq!(s.antivirus_enabled, None);
        assert_eq!(defender_product(&s, "").verdict(), Verdict::Undetermined);
    }

    // --- mdatp -----------------------------------------------------------------

    #[test]
    fn mdatp_fixture_is_passive_with_rtp_off() {
        let h = parse_mdatp_health(MDATP).unwrap();
        assert_eq!(
            h,
            MdatpHealth {
                app_version: Some("101.23062.0010".into()),
                healthy: Some(true),
                licensed: Some(true),
                real_time_protection_enabled: Some(false),
                passive_mode_enabled: Some(true),
                definitions_status: Some("upToDate".into()),
                definitions_updated_ms: Some(1691587153787),
                definitions_minutes_ago: Some(20),
                definitions_version: Some("1.395.30.0".into()),
                health_issues: vec![],
            }
        );
        // "Now" as at capture: 20 minutes after the definitions update.
        let now = at(1691587153) + Days::minutes(20);
        let p = mdatp_product(&h, now, "mdatp health --output json");
        assert_eq!(p.verdict(), Verdict::Passive);
        assert!((p.signature_age_days.unwrap() - 20.0 / 1440.0).abs() < 0.001);
        let probe = LinuxProbe {
            clamav: read_clamav_dir(Path::new("/nonexistent/xunjian/clamav")),
            clamav_programs: vec![],
            processes: Ok(vec!["wdavdaemon".into()]),
            mdatp: Some(Ok(Output {
                code: Some(0),
                stdout: MDATP.into(),
                stderr: String::new(),
                truncated: false,
                command: "mdatp health --output json".into(),
            })),
            generic: vec![],
        };
        let f = survey_findings(&survey_linux(&probe, now));
        let c = f.checks.iter().find(|c| c.check_id == "av.mdatp").unwrap();
        assert_eq!(c.status, CheckStatus::Ok as i32);
        assert_eq!(
            metric_value(&f, METRIC_REALTIME, "Microsoft Defender for Endpoint"),
            Some(0.0)
        );
        let (status, value, _) = status_of(&f);
        assert_eq!(status, CheckStatus::Critical as i32);
        assert!(value.starts_with("disabled"), "{value}");
    }

    #[test]
    fn mdatp_bare_values_and_failures() {
        // Constructed: the same fields without the {"value": ...} wrappers.
        let json = r#"{"realTimeProtectionEnabled":true,"passiveModeEnabled":false,"healthy":true,
            "definitionsStatus":"upToDate","definitionsUpdatedMinutesAgo":90}"#;
        let h = parse_mdatp_health(json).unwrap();
        let p = mdatp_product(&h, Utc::now(), "");
        assert_eq!(p.verdict(), Verdict::Protecting);
        assert!((p.signature_age_days.unwrap() - 0.0625).abs() < 1e-9);
        let stale = MdatpHealth {
            definitions_updated_ms: Some(0),
            ..h.clone()
        };
        assert_eq!(
            mdatp_product(&stale, at(86_400 * 30), "").verdict(),
            Verdict::Outdated
        );
        let bad_status = MdatpHealth {
            definitions_status: Some("outOfDate".into()),
            ..h
        };
        assert_eq!(
            mdatp_product(&bad_status, Utc::now(), "").verdict(),
            Verdict::Outdated
        );

        assert_eq!(parse_mdatp_health(""), Err(ParseError::NoFields));
        assert_eq!(
            parse_mdatp_health("{\"orgId\":\"x\"}"),
            Err(ParseError::NoFields)
        );
        assert!(matches!(
            parse_mdatp_health("[]"),
            Err(ParseError::Shape(_))
        ));
        assert!(matches!(
            parse_mdatp_health("ATTENTION: no license found"),
            Err(ParseError::Json(_))
        ));

        // mdatp installed but failing: the product is there, state unknown.
        let probe = LinuxProbe {
            clamav: read_clamav_dir(Path::new("/nonexistent/xunjian/clamav")),
            clamav_programs: vec![],
            processes: Ok(vec![]),
            mdatp: Some(Err(ExecError::TimedOut {
                program: "mdatp".into(),
                timeout: std::time::Duration::from_secs(30),
            })),
            generic: vec![],
        };
        let f = survey_findings(&survey_linux(&probe, Utc::now()));
        let c = f.checks.iter().find(|c| c.check_id == "av.mdatp").unwrap();
        assert_eq!(c.status, CheckStatus::Unknown as i32);
        assert!(c.reason.contains("did not finish"), "{}", c.reason);
        assert_eq!(status_of(&f).0, CheckStatus::Unknown as i32);
    }

    // --- ClamAV ------------------------------------------------------------------

    #[test]
    fn clamav_full_signed_cvd() {
        let h = parse_cvd_header(CVD_TEST3_FULL).unwrap();
        assert_eq!(
            h,
            CvdHeader {
                build_time: "22 Jun 2021 20-40 -0400".into(),
                version: 3,
                signatures: Some(11),
                functionality_level: Some(81),
                md5: Some("75c84c7f1a2d37d9c2a37b2bc9b3a670".into()),
                signed: true,
                builder: Some("raynman".into()),
                build_epoch: Some(1624408809),
            }
        );
        assert_eq!(h.built_at(), Some(at(1624408809)));
        // The text time agrees with the epoch (to the minute it carries).
        let text_only = CvdHeader {
            build_epoch: None,
            ..h
        };
        assert_eq!(text_only.built_at(), Some(at(1624408800)));
    }

    #[test]
    fn clamav_other_fixture_headers() {
        let h = parse_cvd_header(CVD_TEST1).unwrap();
        assert_eq!(
            (h.version, h.signatures, h.builder.as_deref()),
            (1, Some(0), Some("micasnyd"))
        );
        assert_eq!(h.build_epoch, Some(1624388302));
        let h = parse_cvd_header(CVD_TEST6).unwrap();
        assert_eq!(
            (h.version, h.signatures, h.build_epoch),
            (6, Some(14), Some(1624412045))
        );
        let h = parse_cvd_header(CVD_BYTECODE).unwrap();
        assert_eq!(
            (h.version, h.signatures, h.functionality_level),
            (19, Some(3), Some(51))
        );
        assert_eq!(h.builder.as_deref(), Some("nervous"));
        assert!(h.signed);
        let text = CvdHeader {
            build_epoch: None,
            ..h.clone()
        }
        .built_at()
        .unwrap();
        assert!((h.built_at().unwrap() - text).num_seconds().abs() < 60);
        let h = parse_cvd_header(CUD_UNSIGNED).unwrap();
        assert_eq!(
            (h.version, h.signatures, h.functionality_level),
            (246, Some(4), Some(80))
        );
        assert!(!h.signed);
        assert_eq!(h.builder.as_deref(), Some("clamav"));
        assert!(h.describe().contains("unsigned"));
        let h = parse_cvd_header(CVD_DAILY_2017).unwrap();
        assert_eq!(
            (h.version, h.signatures, h.functionality_level),
            (23182, Some(1741572), Some(63))
        );
        assert_eq!(
            (h.builder.as_deref(), h.build_epoch),
            (Some("neo"), Some(1488891746))
        );
        assert_eq!(h.built_at(), Some(at(1488891746)));
    }

    #[test]
    fn clamav_cdiff_is_not_a_database() {
        assert!(matches!(
            parse_cvd_header(CDIFF),
            Err(ParseError::NotClamavHeader(_))
        ));
    }

    #[test]
    fn clamav_colon_time_nul_padding_and_truncation() {
        // Constructed: a build time written with a colon, as some tools do.
        let h =
            parse_cvd_header(b"ClamAV-VDB:25 Jan 2024 07:22 -0500:27165:2051234:90:abc:X:builder")
                .unwrap();
        assert_eq!(h.build_time, "25 Jan 2024 07:22 -0500");
        assert_eq!(
            (h.version, h.signatures, h.build_epoch),
            (27165, Some(2051234), None)
        );
        assert_eq!(
            h.built_at().unwrap().to_rfc3339(),
            "2024-01-25T12:22:00+00:00"
        );
        // NUL padding instead of spaces.
        let mut nul = CVD_TEST6.to_vec();
        for b in nul.iter_mut().filter(|b| **b == b' ').rev().take(50) {
            *b = 0;
        }
        assert_eq!(
            parse_cvd_header(&nul).unwrap().build_epoch,
            Some(1624412045)
        );
        // Cut after the signature count: the rest is unknown, not invented.
        let cut = parse_cvd_header(&CVD_TEST3_FULL[..40]).unwrap();
        assert_eq!(
            (cut.version, cut.signatures, cut.functionality_level),
            (3, Some(11), None)
        );
        assert!(!cut.signed);
        assert!(parse_cvd_header(&CVD_TEST3_FULL[..20]).is_err());
        for bad in [
            &b""[..],
            b"ClamAV-VDB:",
            b"ClamAV-VDB::::::",
            b"\0\0\0\0",
            b"ClamAV-VDB:x:y",
            b"\xff\xfe\x00C",
        ] {
            assert!(parse_cvd_header(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn clamav_dir_picks_newest_of_cld_and_cvd() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("daily.cvd"), CVD_TEST3_FULL).unwrap();
        std::fs::write(dir.path().join("daily.cld"), CVD_TEST6).unwrap();
        std::fs::write(dir.path().join("main.cvd"), CVD_BYTECODE).unwrap();
        let dbs = read_clamav_dir(dir.path());
        assert!(dbs.dir_exists);
        match &dbs.daily {
            DbFile::Found { path, header } => {
                assert_eq!(header.version, 6);
                assert!(path.ends_with("daily.cld"));
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(&dbs.main, DbFile::Found { header, .. } if header.version == 19));
        // A damaged .cld next to a good .cvd: the good one counts.
        std::fs::write(dir.path().join("daily.cld"), b"garbage").unwrap();
        assert!(
            matches!(read_clamav_dir(dir.path()).daily, DbFile::Found { ref header, .. } if header.version == 3)
        );
        std::fs::remove_file(dir.path().join("daily.cvd")).unwrap();
        assert!(matches!(
            read_clamav_dir(dir.path()).daily,
            DbFile::Bad { .. }
        ));
        let none = read_clamav_dir(&dir.path().join("absent"));
        assert!(!none.dir_exists);
        assert_eq!((none.daily, none.main), (DbFile::Missing, DbFile::Missing));
    }

    #[test]
    fn clamav_product_verdicts() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("daily.cld"), CVD_TEST6).unwrap();
        std::fs::write(dir.path().join("main.cvd"), CVD_BYTECODE).unwrap();
        let dbs = read_clamav_dir(dir.path());
        let built = at(1624412045);
        let procs: Vec<String> = vec!["bash".into(), "clamd".into(), "freshclam".into()];

        let p = clamav_product(&dbs, Ok(&procs), &[], built + Days::days(2)).unwrap();
        assert_eq!(p.verdict(), Verdict::Protecting);
        assert_eq!(p.signature_age_days, Some(2.0));
        let f = product_findings(&p);
        assert_eq!(f.checks[0].check_id, "av.clamav");
        assert_eq!(f.checks[0].status, CheckStatus::Ok as i32);
        assert!(
            f.checks[0].value.contains("daily version 6"),
            "{}",
            f.checks[0].value
        );
        assert_eq!(metric_value(&f, METRIC_SIGNATURE_AGE, "ClamAV"), Some(2.0));
        assert_eq!(metric_value(&f, METRIC_REALTIME, "ClamAV"), Some(0.0));

        let p = clamav_product(&dbs, Ok(&procs), &[], built + Days::days(30)).unwrap();
        assert_eq!(p.verdict(), Verdict::Outdated);

        let no_daemon: Vec<String> = vec!["bash".into()];
        let p = clamav_product(&dbs, Ok(&no_daemon), &[], built).unwrap();
        assert_eq!(p.verdict(), Verdict::Disabled);

        let p = clamav_product(&dbs, Err("cannot read /proc"), &[], built).unwrap();
        assert_eq!(p.verdict(), Verdict::Undetermined);
        assert!(p.unknown_reason.unwrap().contains("/proc"));

        // Installed but never updated: no signatures at all.
        let empty = read_clamav_dir(&dir.path().join("absent"));
        let p = clamav_product(&empty, Ok(&procs), &["clamscan".into()], built).unwrap();
        assert_eq!(p.verdict(), Verdict::Outdated);
        assert!(p.detail.contains("no daily database"), "{}", p.detail);
        assert!(clamav_product(&empty, Ok(&no_daemon), &[], built).is_none());

        // A daily that cannot be read leaves the definitions unknown.
        std::fs::write(dir.path().join("daily.cld"), b"\x1f\x8b garbage").unwrap();
        let bad = read_clamav_dir(dir.path());
        let p = clamav_product(&bad, Ok(&procs), &[], built).unwrap();
        assert_eq!(p.verdict(), Verdict::Undetermined);
        assert!(
            p.unknown_reason
                .unwrap()
                .contains("not a ClamAV database header")
        );
    }

    #[test]
    fn clamav_process_names() {
        let names = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        assert_eq!(
            clamav_processes(&names(&["clamd", "clamonacc"])),
            ClamavProcesses {
                clamd: true,
                clamonacc: true
            }
        );
        assert_eq!(
            clamav_processes(&names(&["clamdscan", "freshclam"])),
            ClamavProcesses::default()
        );
        assert!(clamav_processes(&names(&["clamd@scan"])).clamd);
    }

    // --- Generic products -------------------------------------------------------

    fn sophos() -> GenericAv {
        GenericAv {
            name: "Sophos Protection for Linux".into(),
            process: "sophos_threat_detector".into(),
            definitions_path: PathBuf::from(
                "/opt/sophos-spl/plugins/av/chroot/susi/update_source/vdl",
            ),
            max_age_days: 3,
        }
    }

    #[test]
    fn generic_config_denies_unknown_fields() {
        let g: GenericAv = serde_json::from_str(
            r#"{"name":"Sophos Protection for Linux","process":"sophos_threat_detector",
            "definitions_path":"/opt/sophos-spl/plugins/av/chroot/susi/update_source/vdl","max_age_days":3}"#,
        )
        .unwrap();
        assert_eq!(g, sophos());
        assert!(
            serde_json::from_str::<GenericAv>(
                r#"{"name":"a","process":"b","definitions_path":"/x","max_age_days":1,"extra":1}"#
            )
            .is_err()
        );
        assert!(serde_json::from_str::<GenericAv>(r#"{"name":"a"}"#).is_err());
    }

    #[test]
    fn generic_process_names_are_cut_like_comm() {
        let names = vec!["sophos_threat_d".to_owned(), "sshd".to_owned()];
        assert!(process_running(&names, "sophos_threat_detector"));
        assert!(process_running(&names, "sshd"));
        assert!(!process_running(&names, "ssh"));
        assert!(!process_running(&[], "sshd"));
        assert_eq!(truncate_bytes("éééééééé", 15), "ééééééé");
    }

    #[test]
    fn generic_verdicts() {
        let g = sophos();
        let now = at(1_700_000_000);
        let fresh = Ok(now - Days::days(1));
        let stale = Ok(now - Days::days(10));
        let p = generic_product(&g, Ok(true), fresh, now);
        assert_eq!(p.check_id, "av.generic:sophos-protection-for-linux");
        let status = |p: &Product| product_findings(p).checks[0].status;
        assert_eq!(status(&p), CheckStatus::Ok as i32);
        let p = generic_product(&g, Ok(true), stale, now);
        assert_eq!(status(&p), CheckStatus::Warning as i32);
        assert!(product_findings(&p).checks[0].value.starts_with("outdated"));
        assert_eq!(
            status(&generic_product(&g, Ok(false), fresh, now)),
            CheckStatus::Critical as i32
        );
        assert_eq!(
            status(&generic_product(
                &g,
                Ok(false),
                Err("cannot read /opt: denied"),
                now
            )),
            CheckStatus::Critical as i32
        );
        let p = generic_product(&g, Ok(true), Err("cannot read /opt/x: No such file"), now);
        let c = &product_findings(&p).checks[0];
        assert_eq!(c.status, CheckStatus::Unknown as i32);
        assert!(c.reason.contains("/opt/x"), "{}", c.reason);
        assert_eq!(
            status(&generic_product(&g, Err("no /proc"), fresh, now)),
            CheckStatus::Unknown as i32
        );
    }

    #[test]
    fn newest_mtime_of_file_and_directory() {
        let dir = tempfile::tempdir().unwrap();
        let err = newest_mtime(dir.path()).unwrap_err();
        assert!(err.contains("no definition files"), "{err}");
        let file = dir.path().join("defs.dat");
        std::fs::write(&file, b"x").unwrap();
        let t = newest_mtime(&file).unwrap();
        assert_eq!(newest_mtime(dir.path()).unwrap(), t);
        assert!((Utc::now() - t).num_seconds().abs() < 60);
        let missing = dir.path().join("nope");
        assert!(newest_mtime(&missing).unwrap_err().contains("nope"));
    }

    // --- Per-host status ---------------------------------------------------------

    fn product(active: Option<bool>, current: Option<bool>, passive: bool) -> Product {
        Product {
            check_id: "av.test".into(),
            title: "test".into(),
            name: "Test AV".into(),
            source: "test".into(),
            active,
            passive,
            signatures_current: current,
            ..Product::default()
        }
    }

    #[test]
    fn overall_status_rules() {
        let failure = SourceFailure {
            check_id: "av.wsc".into(),
            title: "Security Center".into(),
            reason: "timed out".into(),
            evidence: String::new(),
        };
        let survey = |products: Vec<Product>, failures: Vec<SourceFailure>| Survey {
            products,
            looked: looked(),
            failures,
        };
        let on = product(Some(true), Some(true), false);
        let old = product(Some(true), Some(false), false);
        let off = product(Some(false), Some(true), false);
        let passive = product(Some(false), None, true);
        let unsure = product(None, None, false);
        let cases = [
            (
                survey(vec![on.clone(), off.clone()], vec![]),
                AvStatus::Protected,
            ),
            (
                survey(vec![on.clone()], vec![failure.clone()]),
                AvStatus::Protected,
            ),
            (
                survey(vec![old.clone(), off.clone()], vec![]),
                AvStatus::Outdated,
            ),
            (
                survey(vec![off.clone(), passive.clone()], vec![]),
                AvStatus::Disabled,
            ),
            (survey(vec![passive.clone()], vec![]), AvStatus::Disabled),
            (survey(vec![], vec![]), AvStatus::Missing),
            (
                survey(vec![off.clone()], vec![failure.clone()]),
                AvStatus::Unknown,
            ),
            (
                survey(vec![old.clone(), unsure.clone()], vec![]),
                AvStatus::Unknown,
            ),
            (survey(vec![], vec![failure]), AvStatus::Unknown),
            (Survey::default(), AvStatus::Unknown),
        ];
        for (i, (s, want)) in cases.iter().enumerate() {
            assert_eq!(overall_status(s).0, *want, "case {i}");
        }
        let levels = [
            (AvStatus::Protected, CheckStatus::Ok),
            (AvStatus::Outdated, CheckStatus::Warning),
            (AvStatus::Disabled, CheckStatus::Critical),
            (AvStatus::Missing, CheckStatus::Critical),
            (AvStatus::Unknown, CheckStatus::Unknown),
        ];
        for (s, want) in cases.iter().map(|(s, w)| (s, *w)) {
            let (status, value, reason) = status_of(&survey_findings(s));
            let level = levels.iter().find(|(a, _)| *a == want).unwrap().1;
            assert_eq!(status, level as i32);
            if want == AvStatus::Unknown {
                assert!(!reason.is_empty() && value.is_empty());
            } else {
                assert!(value.starts_with(want.as_str()), "{value}");
            }
        }
    }

    #[test]
    fn linux_host_without_any_product_is_missing() {
        // This machine's situation: no ClamAV databases or programs, no
        // mdatp, nothing configured; every source answered.
        let probe = LinuxProbe {
            clamav: read_clamav_dir(Path::new("/nonexistent/xunjian/clamav")),
            clamav_programs: vec![],
            processes: Ok(vec!["init".into(), "bash".into()]),
            mdatp: None,
            generic: vec![],
        };
        let f = survey_findings(&survey_linux(&probe, Utc::now()));
        assert_eq!(f.checks.len(), 1);
        assert!(f.metrics.is_empty());
        let (status, value, _) = status_of(&f);
        assert_eq!(status, CheckStatus::Critical as i32);
        assert_eq!(value, "missing: no antivirus product found");
        assert!(
            f.checks[0]
                .evidence
                .contains("ClamAV databases in /nonexistent/xunjian/clamav")
        );
        assert!(f.checks[0].evidence.contains("mdatp"));
    }

    #[test]
    fn linux_survey_with_generic_product() {
        let dir = tempfile::tempdir().unwrap();
        let g = GenericAv {
            definitions_path: dir.path().to_owned(),
            ..sophos()
        };
        let probe = LinuxProbe {
            clamav: read_clamav_dir(&dir.path().join("none")),
            clamav_programs: vec![],
            processes: Ok(vec!["sophos_threat_d".into()]),
            mdatp: None,
            generic: vec![(g, Ok(Utc::now()))],
        };
        let f = survey_findings(&survey_linux(&probe, Utc::now()));
        assert_eq!(
            f.checks[0].check_id,
            "av.generic:sophos-protection-for-linux"
        );
        assert_eq!(f.checks[0].status, CheckStatus::Ok as i32);
        assert_eq!(status_of(&f).0, CheckStatus::Ok as i32);
        assert_eq!(
            metric_value(&f, METRIC_REALTIME, "Sophos Protection for Linux"),
            None
        );
    }

    #[test]
    fn collect_on_this_host_reports_a_status_with_reason() {
        let f = collect(&[], Utc::now());
        let (status, value, reason) = status_of(&f);
        assert!(!value.is_empty() || !reason.is_empty());
        assert_ne!(status, CheckStatus::Unspecified as i32);
        if find_clamav_free_host() {
            assert_eq!(value, "missing: no antivirus product found");
        }
    }

    #[test]
    fn collect_with_a_clamav_directory_reads_it() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("daily.cvd"), CVD_DAILY_2017).unwrap();
        let f = collect_with(&[], dir.path(), at(1488891746) + Days::hours(12));
        let c = f.checks.iter().find(|c| c.check_id == "av.clamav").unwrap();
        // No clamd on this machine: the databases are found, the daemon not
        // (where clamd does run the check is OK).
        assert!(c.value.contains("daily version 23182"), "{}", c.value);
        assert_eq!(metric_value(&f, METRIC_SIGNATURE_AGE, "ClamAV"), Some(0.5));
    }

    /// This development VM has neither ClamAV nor mdatp; elsewhere the
    /// smoke test only checks that a status came back.
    fn find_clamav_free_host() -> bool {
        !Path::new(CLAMAV_DB_DIR).exists()
            && CLAMAV_PROGRAMS
                .iter()
                .chain(&["mdatp"])
                .all(|p| crate::exec::find_program(p).is_none())
            && std::fs::read_dir("/proc").is_ok()
    }

    // --- Windows survey with a stand-in for PowerShell -----------------------------

    fn ps(code: i32, stdout: &str, stderr: &str) -> Result<Output, ExecError> {
        Ok(Output {
            code: Some(code),
            stdout: stdout.into(),
            stderr: stderr.into(),
            truncated: false,
            command: "powershell -Command ...".into(),
        })
    }

    #[test]
    fn windows_survey_from_json() {
        let run = |script: &str| {
            if script == WSC_SCRIPT {
                ps(0, WSC_JSON_TWO, "")
            } else {
                ps(0, MP_JSON, "")
            }
        };
        let s = survey_windows(&run, &[]);
        assert_eq!(s.products.len(), 3);
        let f = survey_findings(&s);
        let ids: Vec<&str> = f.checks.iter().map(|c| c.check_id.as_str()).collect();
        assert_eq!(
            ids,
            [
                "av.wsc:windows-defender",
                "av.wsc:360-total-security",
                "av.defender",
                "av.status"
            ]
        );
        assert_eq!(status_of(&f).0, CheckStatus::Ok as i32);
    }

    #[test]
    fn windows_server_without_security_center() {
        let run = |script: &str| {
            if script == WSC_SCRIPT {
                ps(
                    1,
                    "",
                    "Get-CimInstance : Invalid namespace \nAt line:1 char:8\n+ CategoryInfo : MetadataError",
                )
            } else {
                ps(0, MP_JSON, "")
            }
        };
        let s = survey_windows(&run, &[]);
        assert!(s.failures.is_empty());
        assert!(s.looked.iter().any(|l| l.contains("Windows Server")));
        assert_eq!(overall_status(&s).0, AvStatus::Protected);
    }

    #[test]
    fn windows_failures_are_unknown_never_protected() {
        let run = |script: &str| {
            if script == WSC_SCRIPT {
                Err(ExecError::TimedOut {
                    program: "powershell".into(),
                    timeout: std::time::Duration::from_secs(60),
                })
            } else {
                ps(
                    1,
                    "",
                    "Get-MpComputerStatus : Access denied\r\n+ FullyQualifiedErrorId : HRESULT 0x80070005",
                )
            }
        };
        let f = survey_findings(&survey_windows(&run, &[sophos()]));
        let unknown_ids: Vec<&str> = f
            .checks
            .iter()
            .filter(|c| c.status == CheckStatus::Unknown as i32)
            .map(|c| c.check_id.as_str())
            .collect();
        assert_eq!(
            unknown_ids,
            [
                "av.wsc",
                "av.defender",
                "av.generic:sophos-protection-for-linux",
                "av.status"
            ]
        );
        let defender = f
            .checks
            .iter()
            .find(|c| c.check_id == "av.defender")
            .unwrap();
        assert!(
            defender.reason.contains("Access denied"),
            "{}",
            defender.reason
        );
    }

    #[test]
    fn windows_defender_stopped_for_a_third_party_product() {
        let only_360 = r#"[{"displayName":"360 Total Security","productState":266240}]"#;
        let run = |script: &str| {
            if script == WSC_SCRIPT {
                ps(0, only_360, "")
            } else {
                ps(
                    1,
                    "",
                    "Get-MpComputerStatus : A general error occurred. HRESULT 0x800106ba",
                )
            }
        };
        let s = survey_windows(&run, &[]);
        assert!(s.failures.is_empty());
        assert_eq!(overall_status(&s).0, AvStatus::Protected);
        // Nothing registered and Defender answering with no object: the
        // Defender source failed, so the host is unknown, not missing.
        let none = |_: &str| ps(0, "[]", "");
        let s = survey_windows(&none, &[]);
        assert_eq!(overall_status(&s).0, AvStatus::Unknown);
        let no_defender = |script: &str| {
            if script == WSC_SCRIPT {
                ps(0, "", "")
            } else {
                ps(
                    1,
                    "",
                    "The term 'Get-MpComputerStatus' is not recognized as the name of a cmdlet",
                )
            }
        };
        assert_eq!(
            overall_status(&survey_windows(&no_defender, &[])).0,
            AvStatus::Missing
        );
    }

    #[test]
    fn a_configured_product_that_stopped_stays_critical_beside_another() {
        let now = at(1_700_000_000);
        let survey = Survey {
            products: vec![
                wsc_product(&parse_wsc_json(WSC_JSON_ONE).unwrap()[0], ""),
                generic_product(&sophos(), Ok(false), Ok(now), now),
            ],
            looked: looked(),
            failures: vec![],
        };
        let f = survey_findings(&survey);
        assert_eq!(
            f.checks[1].check_id,
            "av.generic:sophos-protection-for-linux"
        );
        assert_eq!(f.checks[1].status, CheckStatus::Critical as i32);
        assert_eq!(status_of(&f).0, CheckStatus::Ok as i32);
    }

    #[test]
    fn powershell_errors_are_classified_by_untranslated_ids() {
        // Constructed: a Chinese-language Windows error; only the HRESULT
        // and the error id are the same in every language.
        let zh = "Get-CimInstance : 无效命名空间\r\n+ FullyQualifiedErrorId : HRESULT 0x8004100e,Microsoft.Management.Infrastructure.CimCmdlets.GetCimInstanceCommand";
        assert!(matches!(classify_ps_failure(zh), PsFailure::Absent(_)));
        let missing = "+ FullyQualifiedErrorId : CommandNotFoundException";
        assert!(matches!(classify_ps_failure(missing), PsFailure::Absent(_)));
        assert_eq!(
            classify_ps_failure("拒绝访问。 HRESULT 0x80070005"),
            PsFailure::Failed
        );
        assert_eq!(classify_ps_failure(""), PsFailure::Failed);
    }

    // --- Robustness ---------------------------------------------------------------

    #[test]
    fn parsers_never_panic_on_prefixes_and_garbage() {
        let texts = [
            WSC_PS_LIST,
            WSC_METASPLOIT,
            WSC_WMIC,
            WSC_JSON_ONE,
            WSC_JSON_TWO,
            MP_MODERN,
            MP_LEGACY,
            MP_JSON,
            MDATP,
        ];
        let garbage = [
            "",
            "\0",
            "{",
            "}",
            "[",
            "[[[[",
            "null",
            "\"x\"",
            "-1",
            "1e400",
            ":",
            "=",
            " : ",
            "a=b=c",
            "\u{feff}",
            "displayName : \nproductState : 99999999999999999999",
            "productState=-5",
            "ClamAV-VDB:",
            "\u{1F600}:\u{1F600}=",
            "{\"realTimeProtectionEnabled\":{\"value\":{\"value\":1}}}",
            "{\"definitionsUpdated\":\"-1\",\"healthy\":\"yes\"}",
            "{\"definitionsUpdated\":99999999999999999999}",
            "{\"AntivirusSignatureLastUpdated\":\"/Date(99999999999999999)/\",\"AMServiceEnabled\":2}",
        ];
        let run_all = |t: &str| {
            let _ = parse_wsc_json(t);
            for r in parse_wsc_list(t) {
                let _ = product_findings(&wsc_product(&r, ""));
            }
            if let Ok(s) = parse_mp_status_list(t) {
                let _ = product_findings(&defender_product(&s, ""));
            }
            if let Ok(s) = parse_mp_status_json(t) {
                let _ = product_findings(&defender_product(&s, ""));
            }
            if let Ok(h) = parse_mdatp_health(t) {
                let _ = product_findings(&mdatp_product(&h, Utc::now(), ""));
            }
            if let Ok(h) = parse_cvd_header(t.as_bytes()) {
                let _ = h.built_at();
            }
        };
        for t in texts.iter().chain(&garbage) {
            for (i, _) in t.char_indices() {
                run_all(&t[..i]);
            }
            run_all(t);
        }
        for bytes in [
            CVD_TEST3_FULL,
            CVD_TEST1,
            CVD_TEST6,
            CVD_BYTECODE,
            CUD_UNSIGNED,
            CDIFF,
            CVD_DAILY_2017,
        ] {
            for i in 0..bytes.len().min(600) {
                if let Ok(h) = parse_cvd_header(&bytes[..i]) {
                    let _ = h.built_at();
                }
            }
        }
        // Pseudo-random bytes with the magic in front.
        let mut x: u32 = 0x1234_5678;
        for _ in 0..200 {
            let mut buf = b"ClamAV-VDB:".to_vec();
            for _ in 0..64 {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                buf.push((x % 96) as u8 + 32);
                if x & 7 == 0 {
                    buf.push(b':');
                }
            }
            if let Ok(h) = parse_cvd_header(&buf) {
                let _ = h.built_at();
            }
        }
    }
}
