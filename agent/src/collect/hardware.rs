//! Machine identity (DMI/SMBIOS on Linux, WMI on Windows), network
//! interfaces, a hypervisor-or-container hint and the CPU socket count.
//! The readers are thin; what they read is turned into protocol types by
//! pure functions that are tested on captured output and never panic.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::Path;

use sysinfo::{IpNetwork, MacAddr};
use xunjian_proto::{Hardware, Inventory, NetworkInterface};

/// Where Linux exposes the SMBIOS identity strings (drivers/firmware/dmi-id.c).
pub const DMI_DIR: &str = "/sys/class/dmi/id";

/// Identity files are one short line; anything longer is not an identity.
const MAX_ID_FILE: u64 = 4096;

/// Fills the hardware, interfaces, virtualization and cpu_sockets fields.
/// Blocking (reads sysfs/procfs, or runs PowerShell on Windows); the fields
/// `system.rs` fills are left alone.
pub fn collect_into(inv: &mut Inventory) {
    #[cfg(target_os = "linux")]
    {
        let dir = Path::new(DMI_DIR);
        let hw = read_dmi(dir);
        let cpuinfo = read_small("/proc/cpuinfo", 16 * 1024 * 1024).unwrap_or_default();
        inv.cpu_sockets = cpu_sockets(&cpuinfo);
        inv.virtualization = detect_virtualization(&hw, !dir.is_dir(), &cpuinfo);
        inv.hardware = Some(hw);
    }
    #[cfg(windows)]
    {
        let classes = windows::query();
        let hw = hardware_from_wmi(&classes);
        // HypervisorPresent is also true on hosts running Hyper-V or VBS, so
        // it says nothing about being a guest; only the identity strings do.
        inv.virtualization = virtualization(
            &hw.system_vendor,
            &hw.system_model,
            false,
            false,
            &ContainerMarkers::default(),
        );
        inv.cpu_sockets = classes.processor_count;
        inv.hardware = Some(hw);
    }
    inv.interfaces = interfaces();
}

// ---------------------------------------------------------------- DMI

/// Reads the SMBIOS identity from a sysfs `dmi/id` directory. Files that are
/// missing or unreadable (serials and the UUID are root-only) give empty
/// strings, as do firmware placeholders such as "To Be Filled By O.E.M.".
pub fn read_dmi(dir: &Path) -> Hardware {
    let read = |name: &str| read_small(dir.join(name), MAX_ID_FILE).unwrap_or_default();
    Hardware {
        system_vendor: clean_identity(&read("sys_vendor")),
        system_model: clean_identity(&read("product_name")),
        serial_number: clean_identity(&read("product_serial")),
        system_uuid: clean_uuid(&read("product_uuid")),
        bios_vendor: clean_identity(&read("bios_vendor")),
        bios_version: clean_identity(&read("bios_version")),
        bios_date: clean_identity(&read("bios_date")),
        board_vendor: clean_identity(&read("board_vendor")),
        board_model: clean_identity(&read("board_name")),
        board_serial: clean_identity(&read("board_serial")),
        chassis_type: chassis_type_name(&read("chassis_type")),
    }
}

/// A file's text, lossily decoded, at most `cap` bytes; `None` when it
/// cannot be opened or read.
fn read_small(path: impl AsRef<Path>, cap: u64) -> Option<String> {
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .ok()?
        .take(cap)
        .read_to_end(&mut bytes)
        .ok()?;
    Some(String::from_utf8_lossy(&bytes).into_owned())
}

/// Strings vendors leave in SMBIOS when they did not fill a field in; they
/// identify nothing, so they are reported as missing. Compared lower-case.
const PLACEHOLDERS: &[&str] = &[
    "to be filled by o.e.m.",
    "to be filled by oem",
    "default string",
    "not specified",
    "not applicable",
    "not available",
    "system serial number",
    "system manufacturer",
    "system product name",
    "system version",
    "base board serial number",
    "chassis serial number",
    "0123456789",
    "123456789",
    "none",
    "n/a",
    "unknown",
    "oem",
    "o.e.m.",
];

/// Trims, drops control characters (some firmware leaves binary junk) and
/// maps placeholders to the empty string.
pub fn clean_identity(raw: &str) -> String {
    let s: String = raw.chars().filter(|c| !c.is_control()).collect();
    let s = s.trim();
    let lower = s.to_ascii_lowercase();
    // All zeros (with separators) is what blank serials look like on many boards.
    let zeros = s.chars().all(|c| matches!(c, '0' | '-' | ' ' | '.'));
    if s.is_empty() || zeros || PLACEHOLDERS.contains(&lower.as_str()) {
        return String::new();
    }
    s.to_owned()
}

/// A system UUID in lower case; all-zero and all-F UUIDs (unset) are empty.
pub fn clean_uuid(raw: &str) -> String {
    let s = clean_identity(raw).to_ascii_lowercase();
    let hex: Vec<char> = s.chars().filter(|c| *c != '-').collect();
    if hex.iter().all(|c| *c == '0') || hex.iter().all(|c| *c == 'f') {
        return String::new();
    }
    s
}

/// The SMBIOS System Enclosure type (spec DSP0134, table "System Enclosure
/// or Chassis Types") as a name. Accepts `"23"`, the WMI array forms
/// `"{23}"`/`"{3,23}"` (first entry wins). "Unknown" (2), 0 and text that is
/// no number give ""; numbers the table does not know are kept as numbers.
pub fn chassis_type_name(raw: &str) -> String {
    let first = wmi_array_first(raw);
    let Ok(n) = first.trim().parse::<u32>() else {
        return String::new();
    };
    // Bit 7 of the raw SMBIOS byte is the chassis lock flag, not the type.
    let n = n & 0x7f;
    let name = match n {
        0 | 2 => "",
        1 => "Other",
        3 => "Desktop",
        4 => "Low Profile Desktop",
        5 => "Pizza Box",
        6 => "Mini Tower",
        7 => "Tower",
        8 => "Portable",
        9 => "Laptop",
        10 => "Notebook",
        11 => "Hand Held",
        12 => "Docking Station",
        13 => "All in One",
        14 => "Sub Notebook",
        15 => "Space-saving",
        16 => "Lunch Box",
        17 => "Main Server Chassis",
        18 => "Expansion Chassis",
        19 => "SubChassis",
        20 => "Bus Expansion Chassis",
        21 => "Peripheral Chassis",
        22 => "RAID Chassis",
        23 => "Rack Mount Chassis",
        24 => "Sealed-case PC",
        25 => "Multi-system Chassis",
        26 => "Compact PCI",
        27 => "Advanced TCA",
        28 => "Blade",
        29 => "Blade Enclosure",
        30 => "Tablet",
        31 => "Convertible",
        32 => "Detachable",
        33 => "IoT Gateway",
        34 => "Embedded PC",
        35 => "Mini PC",
        36 => "Stick PC",
        other => return other.to_string(),
    };
    name.to_owned()
}

// ---------------------------------------------------------------- WMI

/// One WMI instance: property name to value as text. Arrays are kept in the
/// `wmic` form `{"a","b"}` / `{3}`, whichever source they came from.
pub type WmiProps = BTreeMap<String, String>;

/// Decodes UTF-16LE (what `wmic` and `reg export` write), with or without
/// a byte-order mark. A trailing odd byte is dropped and unpaired
/// surrogates become U+FFFD.
pub fn decode_utf16le(bytes: &[u8]) -> String {
    let bytes = bytes.strip_prefix(&[0xff, 0xfe]).unwrap_or(bytes);
    let units = bytes
        .chunks_exact(2)
        .map(|pair| u16::from_le_bytes([pair[0], pair[1]]));
    char::decode_utf16(units)
        .map(|r| r.unwrap_or(char::REPLACEMENT_CHARACTER))
        .collect()
}

/// Parses `wmic <class> get /format:list` output (already decoded): blank
/// lines between instances, `Key=Value` lines (CR, CRCRLF and a leading BOM
/// tolerated). Lines without `=` (banners, "No Instance(s) Available.") are
/// ignored.
pub fn parse_wmic_list(text: &str) -> Vec<WmiProps> {
    let mut out = Vec::new();
    let mut cur = WmiProps::new();
    for line in text.lines() {
        let line = line.trim_start_matches('\u{feff}').trim_end_matches('\r');
        if line.trim().is_empty() {
            if !cur.is_empty() {
                out.push(std::mem::take(&mut cur));
            }
            continue;
        }
        if let Some((key, value)) = line.split_once('=') {
            let key = key.trim();
            if !key.is_empty() {
                cur.insert(key.to_owned(), value.trim().to_owned());
            }
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// Parses `Get-CimInstance <class> | ConvertTo-Json` output: one object or
/// an array of objects. Scalars become text, arrays of scalars the `wmic`
/// `{...}` form; nulls and nested objects (CimClass, CimSystemProperties)
/// are left out. Not JSON, or no objects: empty.
pub fn parse_cim_json(text: &str) -> Vec<WmiProps> {
    let Ok(value) = serde_json::from_str::<serde_json::Value>(text.trim_start_matches('\u{feff}'))
    else {
        return Vec::new();
    };
    match value {
        serde_json::Value::Array(items) => items.iter().filter_map(cim_object).collect(),
        v => cim_object(&v).into_iter().collect(),
    }
}

fn cim_object(v: &serde_json::Value) -> Option<WmiProps> {
    let obj = v.as_object()?;
    let mut props = WmiProps::new();
    for (k, v) in obj {
        if let Some(text) = cim_value(v) {
            props.insert(k.clone(), text);
        }
    }
    Some(props)
}

fn cim_value(v: &serde_json::Value) -> Option<String> {
    use serde_json::Value;
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Array(items) => {
            let parts: Option<Vec<String>> = items
                .iter()
                .map(|i| match i {
                    Value::String(s) => Some(format!("\"{s}\"")),
                    Value::Number(n) => Some(n.to_string()),
                    _ => None,
                })
                .collect();
            parts.map(|p| format!("{{{}}}", p.join(",")))
        }
        Value::Null | Value::Object(_) => None,
    }
}

/// The first element of a `wmic` array value (`{"a","b"}` → `a`, `{3}` →
/// `3`); a plain value is returned as it is.
pub fn wmi_array_first(raw: &str) -> String {
    let s = raw.trim();
    let Some(inner) = s.strip_prefix('{').and_then(|r| r.strip_suffix('}')) else {
        return s.to_owned();
    };
    let first = inner.split(',').next().unwrap_or("").trim();
    first.trim_matches('"').to_owned()
}

/// The WMI classes that hold the machine identity, one instance each.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WmiClasses {
    pub computer_system: WmiProps,
    pub bios: WmiProps,
    pub baseboard: WmiProps,
    /// Win32_ComputerSystemProduct (UUID, IdentifyingNumber).
    pub product: WmiProps,
    /// Win32_SystemEnclosure (ChassisTypes).
    pub enclosure: WmiProps,
    /// Win32_Processor instances, i.e. sockets; 0 when unknown.
    pub processor_count: u32,
}

fn prop<'a>(props: &'a WmiProps, key: &str) -> &'a str {
    props
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(key))
        .map(|(_, v)| v.as_str())
        .unwrap_or("")
}

/// Maps the WMI identity classes to `Hardware`, with the same placeholder
/// filtering as DMI.
pub fn hardware_from_wmi(c: &WmiClasses) -> Hardware {
    let mut serial = clean_identity(prop(&c.bios, "SerialNumber"));
    if serial.is_empty() {
        // The same SMBIOS type 1 serial, when Win32_BIOS has none.
        serial = clean_identity(prop(&c.product, "IdentifyingNumber"));
    }
    Hardware {
        system_vendor: clean_identity(prop(&c.computer_system, "Manufacturer")),
        system_model: clean_identity(prop(&c.computer_system, "Model")),
        serial_number: serial,
        system_uuid: clean_uuid(prop(&c.product, "UUID")),
        bios_vendor: clean_identity(prop(&c.bios, "Manufacturer")),
        // Win32_BIOS.Version is the ACPI OEM id ("BOCHS  - 1"), not the
        // firmware version, so only SMBIOSBIOSVersion is used.
        bios_version: clean_identity(prop(&c.bios, "SMBIOSBIOSVersion")),
        bios_date: cim_date(prop(&c.bios, "ReleaseDate")),
        board_vendor: clean_identity(prop(&c.baseboard, "Manufacturer")),
        board_model: clean_identity(prop(&c.baseboard, "Product")),
        board_serial: clean_identity(prop(&c.baseboard, "SerialNumber")),
        chassis_type: chassis_type_name(prop(&c.enclosure, "ChassisTypes")),
    }
}

/// A WMI date as SMBIOS writes it (`MM/DD/YYYY`, the form Linux shows):
/// from CIM_DATETIME `20140401000000.000000+000`, `yyyyMMdd` or ISO
/// `2014-04-01T...`. PowerShell 5's `/Date(ms)/` is left empty: it was
/// shifted by the converting host's time zone, so the day is not certain.
pub fn cim_date(raw: &str) -> String {
    let s = raw.trim();
    let digits: String = if s.len() >= 10 && s.as_bytes().get(4) == Some(&b'-') {
        s.chars().take(10).filter(|c| *c != '-').collect()
    } else {
        s.chars().take(8).collect()
    };
    if digits.len() != 8 || !digits.chars().all(|c| c.is_ascii_digit()) {
        return String::new();
    }
    let (y, m, d) = (&digits[0..4], &digits[4..6], &digits[6..8]);
    let (Ok(mn), Ok(dn), Ok(yn)) = (m.parse::<u32>(), d.parse::<u32>(), y.parse::<u32>()) else {
        return String::new();
    };
    if !(1..=12).contains(&mn) || !(1..=31).contains(&dn) || yn == 0 {
        return String::new();
    }
    format!("{m}/{d}/{y}")
}

/// Parses what the Windows shim prints: one JSON object keyed by WMI class
/// name (each the `Select-Object *` of its first instance) plus
/// `Win32_Processor` as a count. Missing or malformed parts stay empty.
pub fn parse_windows_bundle(text: &str) -> WmiClasses {
    let Ok(serde_json::Value::Object(top)) =
        serde_json::from_str::<serde_json::Value>(text.trim_start_matches('\u{feff}'))
    else {
        return WmiClasses::default();
    };
    let class = |name: &str| -> WmiProps {
        top.get(name)
            .map(|v| match v {
                serde_json::Value::Array(items) => items.first().and_then(cim_object),
                v => cim_object(v),
            })
            .unwrap_or_default()
            .unwrap_or_default()
    };
    WmiClasses {
        computer_system: class("Win32_ComputerSystem"),
        bios: class("Win32_BIOS"),
        baseboard: class("Win32_BaseBoard"),
        product: class("Win32_ComputerSystemProduct"),
        enclosure: class("Win32_SystemEnclosure"),
        processor_count: top
            .get("Win32_Processor")
            .and_then(serde_json::Value::as_u64)
            .and_then(|n| u32::try_from(n).ok())
            .unwrap_or(0),
    }
}

#[cfg(windows)]
mod windows {
    use std::time::Duration;

    /// One PowerShell run for all classes: its start-up costs more than the
    /// queries. Dates are formatted here because ConvertTo-Json in
    /// PowerShell 5 would shift them by the local time zone.
    const SCRIPT: &str = "$ErrorActionPreference='SilentlyContinue';\
[Console]::OutputEncoding=[Text.Encoding]::UTF8;$o=[ordered]@{};\
foreach($c in 'Win32_ComputerSystem','Win32_BIOS','Win32_BaseBoard','Win32_ComputerSystemProduct','Win32_SystemEnclosure'){\
$i=Get-CimInstance -ClassName $c|Select-Object -First 1 -Property * -ExcludeProperty Cim*;\
if($i.ReleaseDate){$i.ReleaseDate=$i.ReleaseDate.ToString('yyyyMMdd',[Globalization.CultureInfo]::InvariantCulture)};$o[$c]=$i};\
$o['Win32_Processor']=@(Get-CimInstance -ClassName Win32_Processor).Count;$o|ConvertTo-Json -Depth 3 -Compress";

    pub(super) fn query() -> super::WmiClasses {
        let root = std::env::var("SystemRoot").unwrap_or_else(|_| r"C:\Windows".into());
        let ps = format!(r"{root}\System32\WindowsPowerShell\v1.0\powershell.exe");
        let cmd =
            crate::exec::Cmd::new(&ps, &["-NoProfile", "-NonInteractive", "-Command", SCRIPT])
                .timeout(Duration::from_secs(60));
        match cmd.run() {
            Ok(out) => super::parse_windows_bundle(&out.stdout),
            Err(e) => {
                tracing::warn!(error = %e, "WMI hardware query failed");
                super::WmiClasses::default()
            }
        }
    }
}

// ---------------------------------------------------------------- interfaces

/// Network interfaces with their MAC, addresses (with prefix) and MTU,
/// loopback left out, sorted by name.
pub fn interfaces() -> Vec<NetworkInterface> {
    let networks = sysinfo::Networks::new_with_refreshed_list();
    let mut out: Vec<NetworkInterface> = networks
        .list()
        .iter()
        .filter_map(|(name, data)| {
            interface_from(name, &data.mac_address(), data.ip_networks(), data.mtu())
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// One interface as reported; `None` for loopback. An all-zero MAC (tunnels
/// and other devices without one) is reported as missing.
pub fn interface_from(
    name: &str,
    mac: &MacAddr,
    networks: &[IpNetwork],
    mtu: u64,
) -> Option<NetworkInterface> {
    let all_loopback = !networks.is_empty() && networks.iter().all(|n| n.addr.is_loopback());
    if name == "lo" || name.starts_with("Loopback Pseudo-Interface") || all_loopback {
        return None;
    }
    let mut seen = BTreeSet::new();
    let addresses = networks
        .iter()
        .map(|n| format!("{}/{}", n.addr, n.prefix))
        .filter(|a| seen.insert(a.clone()))
        .collect();
    Some(NetworkInterface {
        name: name.to_owned(),
        mac: if mac.is_unspecified() {
            String::new()
        } else {
            mac.to_string()
        },
        addresses,
        mtu: u32::try_from(mtu).unwrap_or(u32::MAX),
    })
}

// ---------------------------------------------------------------- CPU

/// Distinct `physical id` values in /proc/cpuinfo, i.e. populated sockets;
/// 0 when the kernel does not say (many ARM kernels, some hypervisors).
pub fn cpu_sockets(cpuinfo: &str) -> u32 {
    let ids: BTreeSet<&str> = cpuinfo
        .lines()
        .filter_map(|l| l.split_once(':'))
        .filter(|(k, _)| k.trim() == "physical id")
        .map(|(_, v)| v.trim())
        .filter(|v| !v.is_empty())
        .collect();
    u32::try_from(ids.len()).unwrap_or(u32::MAX)
}

/// Whether the x86 `flags` line lists `hypervisor` (CPUID bit the
/// hypervisor sets for its guests). `None` when there is no `flags` line:
/// other architectures have no such bit, so absence proves nothing there.
pub fn cpuinfo_hypervisor_flag(cpuinfo: &str) -> Option<bool> {
    let flags = cpuinfo
        .lines()
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.trim() == "flags")?
        .1;
    Some(flags.split_whitespace().any(|f| f == "hypervisor"))
}

// ---------------------------------------------------------------- virtualization

/// Signs of running inside a container, read by [`ContainerMarkers::read`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContainerMarkers {
    /// `/.dockerenv` exists.
    pub dockerenv: bool,
    /// `/run/.containerenv` exists (podman, buildah).
    pub containerenv: bool,
    /// `container=` in PID 1's environment (readable by root only); empty
    /// when unset or unreadable.
    pub pid1_container_env: String,
    /// `/proc/1/cgroup` as read.
    pub pid1_cgroup: String,
    /// /etc/hostname, /etc/hosts or /etc/resolv.conf is a mount point of its
    /// own: container runtimes bind-mount them, hosts do not.
    pub etc_files_bind_mounted: bool,
}

impl ContainerMarkers {
    /// Reads the markers of the running system.
    pub fn read() -> Self {
        let environ = std::fs::read("/proc/1/environ").unwrap_or_default();
        Self {
            dockerenv: Path::new("/.dockerenv").exists(),
            containerenv: Path::new("/run/.containerenv").exists(),
            pid1_container_env: container_env(&environ),
            pid1_cgroup: read_small("/proc/1/cgroup", 64 * 1024).unwrap_or_default(),
            etc_files_bind_mounted: etc_files_bind_mounted(
                &read_small("/proc/self/mountinfo", 4 * 1024 * 1024).unwrap_or_default(),
            ),
        }
    }
}

/// The value of `container=` in a NUL-separated environment block.
pub fn container_env(environ: &[u8]) -> String {
    environ
        .split(|b| *b == 0)
        .find_map(|kv| kv.strip_prefix(b"container="))
        .map(|v| String::from_utf8_lossy(v).trim().to_owned())
        .unwrap_or_default()
}

/// Whether /proc/self/mountinfo has one of the files container runtimes
/// bind-mount into every container as a mount point (field 5).
pub fn etc_files_bind_mounted(mountinfo: &str) -> bool {
    mountinfo
        .lines()
        .filter_map(|l| l.split_whitespace().nth(4))
        .any(|mp| matches!(mp, "/etc/hostname" | "/etc/hosts" | "/etc/resolv.conf"))
}

/// The virtualization hint: "docker", "lxc" or "container" when a container
/// marker is found (a container is reported even inside a VM, as
/// systemd-detect-virt does), else the hypervisor from the DMI strings
/// ("kvm", "qemu", "vmware", "hyper-v", "virtualbox", "xen"), "none" when
/// DMI is present and neither it nor the CPU hints at a hypervisor, and ""
/// when it cannot be told (the CPU says "guest" but not whose, or there is
/// no DMI to go by).
pub fn virtualization(
    sys_vendor: &str,
    product_name: &str,
    cpuinfo_flags_has_hypervisor: bool,
    dmi_missing: bool,
    container_markers: &ContainerMarkers,
) -> String {
    if let Some(c) = container_kind(container_markers) {
        return c.to_owned();
    }
    if let Some(h) = hypervisor_from_dmi(sys_vendor, product_name) {
        return h.to_owned();
    }
    if cpuinfo_flags_has_hypervisor || dmi_missing {
        return String::new();
    }
    "none".to_owned()
}

fn container_kind(m: &ContainerMarkers) -> Option<&'static str> {
    match m.pid1_container_env.as_str() {
        "" => {}
        "docker" => return Some("docker"),
        "lxc" | "lxc-libvirt" => return Some("lxc"),
        _ => return Some("container"),
    }
    if m.containerenv {
        return Some("container");
    }
    let cg = m.pid1_cgroup.as_str();
    if cg.contains("/docker/") || cg.contains("/docker-") {
        return Some("docker");
    }
    if cg.contains("/lxc/") || cg.contains("/lxc.payload") {
        return Some("lxc");
    }
    if ["kubepods", "/libpod-", "/containerd/", "/crio-"]
        .iter()
        .any(|p| cg.contains(p))
    {
        return Some("container");
    }
    // /.dockerenv alone is not trusted: images exported from Docker keep it
    // when booted as VMs (this project's own test machine is one).
    if m.etc_files_bind_mounted {
        return Some(if m.dockerenv { "docker" } else { "container" });
    }
    None
}

/// The hypervisor named by the SMBIOS system vendor / product strings
/// (Linux DMI or WMI Win32_ComputerSystem), if any.
pub fn hypervisor_from_dmi(sys_vendor: &str, product_name: &str) -> Option<&'static str> {
    let v = sys_vendor.trim().to_ascii_lowercase();
    let p = product_name.trim().to_ascii_lowercase();
    if v.contains("vmware") || v == "vmw" || p.starts_with("vmware") {
        return Some("vmware");
    }
    if v.contains("innotek") || p.contains("virtualbox") {
        return Some("virtualbox");
    }
    if v.contains("microsoft") && p.contains("virtual machine") {
        return Some("hyper-v");
    }
    if v.contains("xen") || p.contains("hvm domu") {
        return Some("xen");
    }
    // Clouds and management stacks whose guests run on KVM.
    let kvm_vendors = [
        "amazon ec2",
        "google",
        "openstack",
        "kubevirt",
        "digitalocean",
        "alibaba cloud",
        "nutanix",
        "cloud hypervisor",
    ];
    if p == "kvm" || p.starts_with("kvm ") || kvm_vendors.iter().any(|k| v.contains(k)) {
        return Some("kvm");
    }
    // QEMU's own SMBIOS, and the ACPI OEM ids Windows shows without SMBIOS
    // ("BOCHS_", "BXPC____"). KVM acceleration cannot be told from these.
    if v == "qemu" || v.starts_with("bochs") || p.starts_with("bxpc") {
        return Some("qemu");
    }
    None
}

/// The hypervisor named by CPUID leaf 0x40000000's vendor signature.
pub fn hypervisor_from_cpuid(vendor: &str) -> Option<&'static str> {
    match vendor.trim_end_matches('\0').trim() {
        "KVMKVMKVM" | "Linux KVM Hv" => Some("kvm"),
        "Microsoft Hv" => Some("hyper-v"),
        "VMwareVMware" => Some("vmware"),
        "XenVMMXenVMM" => Some("xen"),
        "VBoxVBoxVBox" => Some("virtualbox"),
        "TCGTCGTCGTCG" => Some("qemu"),
        _ => None,
    }
}

/// The 12-byte vendor signature from the 16 bytes of a CPUID leaf as
/// /dev/cpu/N/cpuid returns them (EAX, EBX, ECX, EDX, little-endian).
pub fn cpuid_vendor(leaf: &[u8]) -> String {
    let Some(sig) = leaf.get(4..16) else {
        return String::new();
    };
    String::from_utf8_lossy(sig)
        .trim_end_matches('\0')
        .to_owned()
}

/// Sharpens the DMI-based hint with the CPUID hypervisor signature and
/// /sys/hypervisor/type: they answer when there is no DMI (Firecracker) and
/// tell KVM from plain QEMU emulation. Container hints are kept.
pub fn refine_virtualization(hint: &str, cpuid_vendor: &str, sys_hypervisor_type: &str) -> String {
    let from_cpu = hypervisor_from_cpuid(cpuid_vendor)
        .or_else(|| (sys_hypervisor_type.trim() == "xen").then_some("xen"));
    match (hint, from_cpu) {
        ("", Some(h)) => h.to_owned(),
        ("qemu", Some("kvm")) => "kvm".to_owned(),
        _ => hint.to_owned(),
    }
}

#[cfg(target_os = "linux")]
fn detect_virtualization(hw: &Hardware, dmi_missing: bool, cpuinfo: &str) -> String {
    let flag = cpuinfo_hypervisor_flag(cpuinfo);
    let markers = ContainerMarkers::read();
    let hint = virtualization(
        &hw.system_vendor,
        &hw.system_model,
        flag.unwrap_or(false),
        dmi_missing,
        &markers,
    );
    // Without an x86 flags line there is no evidence of bare metal.
    let hint = if flag.is_none() && hint == "none" {
        String::new()
    } else {
        hint
    };
    // The hypervisor leaf is only meaningful when the CPU says it is a guest.
    let leaf = if flag == Some(true) {
        read_cpuid_hypervisor_leaf().unwrap_or_default()
    } else {
        Vec::new()
    };
    let sys_type = read_small("/sys/hypervisor/type", MAX_ID_FILE).unwrap_or_default();
    refine_virtualization(&hint, &cpuid_vendor(&leaf), &sys_type)
}

/// CPUID leaf 0x40000000 through the cpuid driver (root only, and only when
/// the module is loaded); the file offset is the leaf number.
#[cfg(target_os = "linux")]
fn read_cpuid_hypervisor_leaf() -> Option<Vec<u8>> {
    use std::io::{Seek, SeekFrom};
    let mut f = std::fs::File::open("/dev/cpu/0/cpuid").ok()?;
    f.seek(SeekFrom::Start(0x4000_0000)).ok()?;
    let mut buf = vec![0u8; 16];
    f.read_exact(&mut buf).ok()?;
    Some(buf)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::IpAddr;

    fn testdata(name: &str) -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("testdata/hardware")
            .join(name)
    }

    fn fixture_bytes(name: &str) -> Vec<u8> {
        let path = testdata(name);
        std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    fn fixture(name: &str) -> String {
        String::from_utf8(fixture_bytes(name)).unwrap()
    }

    fn wmi_fixture(name: &str) -> Vec<WmiProps> {
        parse_wmic_list(&decode_utf16le(&fixture_bytes(name)))
    }

    #[test]
    fn dmi_of_a_real_dell_server() {
        // node_exporter's sysfs fixture of a PowerEdge R6515 (see PROVENANCE.md).
        let hw = read_dmi(&testdata("sys-class-dmi-id_dell-poweredge-r6515"));
        assert_eq!(hw.system_vendor, "Dell Inc.");
        assert_eq!(hw.system_model, "PowerEdge R6515");
        assert_eq!(hw.serial_number, "7N62AI2");
        assert_eq!(hw.system_uuid, "83340ca8-cb49-4474-8c29-d2088ca84dd9");
        assert_eq!(hw.bios_vendor, "Dell Inc.");
        assert_eq!(hw.bios_version, "2.2.4");
        assert_eq!(hw.bios_date, "04/12/2021");
        assert_eq!(hw.board_vendor, "Dell Inc.");
        assert_eq!(hw.board_model, "07PXPY");
        assert_eq!(hw.board_serial, ".7N62AI2.GRTCL6944100GP.");
        assert_eq!(hw.chassis_type, "Rack Mount Chassis");
        assert_eq!(
            hypervisor_from_dmi(&hw.system_vendor, &hw.system_model),
            None
        );
    }

    #[test]
    fn dmi_tree_built_from_fixture_values_with_placeholders_and_unreadable_files() {
        // Values from the WMI fixtures (Lenovo ThinkPad E14 Gen 2, the
        // Proxmox BIOS date), laid out as the kernel's dmi/id files
        // (drivers/firmware/dmi-id.c: one value, newline-terminated).
        let dir = tempfile::tempdir().unwrap();
        let w = |name: &str, value: &str| std::fs::write(dir.path().join(name), value).unwrap();
        w("sys_vendor", "LENOVO\n");
        w("product_name", "20TBS57S00\n");
        w("bios_date", "04/01/2014\n");
        w("bios_vendor", "  To Be Filled By O.E.M.  \n");
        w("board_vendor", "LENOVO\n");
        w("board_name", "Default string\n");
        w("board_serial", "Not Specified\n");
        w("product_uuid", "00000000-0000-0000-0000-000000000000\n");
        w("bios_version", "0123456789\n");
        w("chassis_type", "10\n");
        // A directory where a file is expected reads like a file that is
        // there but not readable (as root, mode 0400 files stay readable).
        std::fs::create_dir(dir.path().join("product_serial")).unwrap();
        let hw = read_dmi(dir.path());
        assert_eq!(hw.system_vendor, "LENOVO");
        assert_eq!(hw.system_model, "20TBS57S00");
        assert_eq!(hw.bios_date, "04/01/2014");
        assert_eq!(hw.board_vendor, "LENOVO");
        assert_eq!(hw.chassis_type, "Notebook");
        for (field, v) in [
            ("bios_vendor", &hw.bios_vendor),
            ("board_model", &hw.board_model),
            ("board_serial", &hw.board_serial),
            ("system_uuid", &hw.system_uuid),
            ("bios_version", &hw.bios_version),
            ("serial_number", &hw.serial_number),
        ] {
            assert_eq!(v, "", "{field}");
        }
    }

    #[test]
    fn absent_dmi_directory_gives_all_empty() {
        // This machine has none (sys-class-dmi-id-ABSENT.txt).
        assert!(fixture("sys-class-dmi-id-ABSENT.txt").contains("No such file or directory"));
        let hw = read_dmi(Path::new("/nonexistent/xunjian/dmi/id"));
        assert_eq!(hw, Hardware::default());
    }

    #[test]
    fn placeholders_and_junk_are_empty() {
        for junk in [
            "",
            "   ",
            "To be filled by O.E.M.",
            "DEFAULT STRING",
            "System Serial Number",
            "0000000000",
            "00000000-0000",
            "\u{1c}\n",
            "None",
        ] {
            assert_eq!(clean_identity(junk), "", "{junk:?}");
        }
        assert_eq!(
            clean_identity(" PowerEdge\u{1c} R6515\n"),
            "PowerEdge R6515"
        );
        assert_eq!(clean_uuid("FFFFFFFF-FFFF-FFFF-FFFF-FFFFFFFFFFFF"), "");
        assert_eq!(
            clean_uuid("4C4C4544-0042-3510-8052-B4C04F4E4D32\n"),
            "4c4c4544-0042-3510-8052-b4c04f4e4d32"
        );
    }

    #[test]
    fn chassis_types_follow_the_smbios_table() {
        for (raw, name) in [
            ("1", "Other"),
            ("2", ""),
            ("3", "Desktop"),
            ("9", "Laptop"),
            ("10", "Notebook"),
            ("17", "Main Server Chassis"),
            ("23\n", "Rack Mount Chassis"),
            ("{3}", "Desktop"),
            ("{10,12}", "Notebook"),
            ("151", "Rack Mount Chassis"), // lock bit set
            ("99", "99"),
            ("0", ""),
            ("", ""),
            ("abc", ""),
            ("{}", ""),
            ("-1", ""),
            ("99999999999999999999", ""),
        ] {
            assert_eq!(chassis_type_name(raw), name, "{raw:?}");
        }
    }

    #[test]
    fn utf16_decoding_tolerates_bom_odd_length_and_lone_surrogates() {
        assert_eq!(decode_utf16le(&[0xff, 0xfe, b'A', 0, b'=', 0]), "A=");
        assert_eq!(decode_utf16le(&[b'A', 0, b'B']), "A");
        assert_eq!(decode_utf16le(&[0x00, 0xd8, b'x', 0]), "\u{fffd}x");
        assert_eq!(decode_utf16le(&[]), "");
    }

    #[test]
    fn wmic_bios_list_of_a_proxmox_vm() {
        let items = wmi_fixture("glpi-agent_wmic-list_Win32_Bios_proxmox-qemu.utf16le.wmi");
        assert_eq!(items.len(), 1);
        let bios = &items[0];
        assert_eq!(bios["Version"], "BOCHS  - 1");
        assert_eq!(bios["SMBIOSPresent"], "FALSE");
        assert_eq!(wmi_array_first(&bios["BIOSVersion"]), "BOCHS  - 1");
        let hw = hardware_from_wmi(&WmiClasses {
            bios: bios.clone(),
            ..Default::default()
        });
        // No SMBIOS in this VM: Windows has no vendor, version or serial.
        assert_eq!(hw.bios_vendor, "");
        assert_eq!(hw.bios_version, "");
        assert_eq!(hw.serial_number, "");
        assert_eq!(hw.bios_date, "04/01/2014");
    }

    #[test]
    fn wmic_computer_system_lists() {
        let lenovo =
            wmi_fixture("glpi-agent_wmic-list_Win32_ComputerSystem_win11-lenovo-e14.utf16le.wmi");
        assert_eq!(lenovo.len(), 1);
        assert_eq!(lenovo[0]["UserName"], r"AzureAD\JohnDoe");
        assert_eq!(lenovo[0]["BootOptionOnLimit"], "");
        let hw = hardware_from_wmi(&WmiClasses {
            computer_system: lenovo[0].clone(),
            ..Default::default()
        });
        assert_eq!(hw.system_vendor, "LENOVO");
        assert_eq!(hw.system_model, "20TBS57S00");
        assert_eq!(
            virtualization(
                "LENOVO",
                "20TBS57S00",
                false,
                false,
                &ContainerMarkers::default()
            ),
            "none"
        );

        let qemu =
            wmi_fixture("glpi-agent_wmic-list_Win32_ComputerSystem_proxmox-qemu.utf16le.wmi");
        assert_eq!(qemu.len(), 1);
        let hw = hardware_from_wmi(&WmiClasses {
            computer_system: qemu[0].clone(),
            ..Default::default()
        });
        assert_eq!(
            (hw.system_vendor.as_str(), hw.system_model.as_str()),
            ("BOCHS_", "BXPC____")
        );
        assert_eq!(
            virtualization(
                &hw.system_vendor,
                &hw.system_model,
                false,
                false,
                &ContainerMarkers::default()
            ),
            "qemu"
        );
    }

    #[test]
    fn wmic_list_garbage_and_truncation() {
        assert!(parse_wmic_list("").is_empty());
        assert!(parse_wmic_list("No Instance(s) Available.\r\n").is_empty());
        let two = parse_wmic_list("\r\r\nA=1\r\r\nB==x\r\r\n\r\r\n\r\r\nA=2\r\r\n=skipped\r\r\n");
        assert_eq!(two.len(), 2);
        assert_eq!(two[0]["B"], "=x");
        assert_eq!(two[1]["A"], "2");
        // Cut in the middle of a UTF-16 fixture, at an odd byte.
        let bytes =
            fixture_bytes("glpi-agent_wmic-list_Win32_ComputerSystem_win11-lenovo-e14.utf16le.wmi");
        for cut in [0, 1, 2, 3, 101, bytes.len() / 2 + 1, bytes.len() - 1] {
            let items = parse_wmic_list(&decode_utf16le(&bytes[..cut]));
            let _ = hardware_from_wmi(&WmiClasses {
                computer_system: items.first().cloned().unwrap_or_default(),
                ..Default::default()
            });
        }
        // Arbitrary bytes must not panic either.
        let noise: Vec<u8> = (0..4096u32)
            .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
            .collect();
        let _ = parse_wmic_list(&decode_utf16le(&noise));
        let _ = parse_cim_json(&String::from_utf8_lossy(&noise));
    }

    #[test]
    fn cim_json_of_computer_system() {
        // Constructed (no Windows capture available): the shape of
        // `Get-CimInstance Win32_ComputerSystem | ConvertTo-Json` with the
        // Lenovo fixture's values.
        let items = parse_cim_json(&fixture(
            "constructed_Get-CimInstance_Win32_ComputerSystem_ConvertTo-Json.json",
        ));
        assert_eq!(items.len(), 1);
        let cs = &items[0];
        assert_eq!(cs["Roles"], r#"{"LM_Workstation","LM_Server","NT"}"#);
        assert_eq!(cs["PCSystemType"], "2");
        assert_eq!(cs["HypervisorPresent"], "false");
        assert!(!cs.contains_key("CimClass"));
        assert!(!cs.contains_key("PrimaryOwnerContact")); // null
        let hw = hardware_from_wmi(&WmiClasses {
            computer_system: cs.clone(),
            ..Default::default()
        });
        assert_eq!(hw.system_vendor, "LENOVO");
        assert_eq!(hw.system_model, "20TBS57S00");
    }

    #[test]
    fn cim_json_edge_cases() {
        assert!(parse_cim_json("").is_empty());
        assert!(parse_cim_json("null").is_empty());
        assert!(parse_cim_json("[1, \"x\"]").is_empty());
        assert!(parse_cim_json("{\"Manufacturer\": \"LEN").is_empty());
        let two = parse_cim_json("\u{feff}[{\"A\":1},{\"A\":[{}]}]");
        assert_eq!(two.len(), 2);
        assert_eq!(two[0]["A"], "1");
        assert!(!two[1].contains_key("A"));
    }

    #[test]
    fn windows_shim_bundle() {
        // Constructed: what the Windows shim's script prints (values from
        // the Lenovo fixture and typical Lenovo BIOS strings).
        let c = parse_windows_bundle(&fixture("constructed_windows-hardware-bundle.json"));
        assert_eq!(c.processor_count, 1);
        let hw = hardware_from_wmi(&c);
        assert_eq!(hw.system_vendor, "LENOVO");
        assert_eq!(hw.system_model, "20TBS57S00");
        assert_eq!(hw.serial_number, "PF2ABCDE");
        assert_eq!(hw.system_uuid, "5d1e7a2c-2b3f-11b2-a85c-9e1a3a4c8f01");
        assert_eq!(hw.bios_vendor, "LENOVO");
        assert_eq!(hw.bios_version, "R1AET45W (1.21 )");
        assert_eq!(hw.bios_date, "03/08/2022");
        assert_eq!(hw.board_vendor, "LENOVO");
        assert_eq!(hw.board_model, "20TBS57S00");
        assert_eq!(hw.board_serial, "L1HF12345678");
        assert_eq!(hw.chassis_type, "Notebook");
        assert_eq!(parse_windows_bundle("not json"), WmiClasses::default());
        assert_eq!(
            parse_windows_bundle("{\"Win32_Processor\": -1}"),
            WmiClasses::default()
        );
    }

    #[test]
    fn wmi_dates() {
        for (raw, want) in [
            ("20140401000000.000000+000", "04/01/2014"),
            ("20220308", "03/08/2022"),
            ("2022-03-08T00:00:00+08:00", "03/08/2022"),
            ("/Date(1396310400000)/", ""),
            ("20141301000000.000000+000", ""),
            ("2014", ""),
            ("", ""),
            ("２０１４０４０１", ""),
        ] {
            assert_eq!(cim_date(raw), want, "{raw:?}");
        }
    }

    fn net(addr: &str, prefix: u8) -> IpNetwork {
        IpNetwork {
            addr: addr.parse::<IpAddr>().unwrap(),
            prefix,
        }
    }

    #[test]
    fn interface_mapping() {
        // Constructed from what `ip -br addr` shows on this machine.
        let eth0 = interface_from(
            "eth0",
            &MacAddr([0x02, 0xfc, 0x00, 0x00, 0x00, 0x01]),
            &[
                net("192.0.2.2", 24),
                net("fd00::2", 64),
                net("fe80::fc:ff:fe00:1", 64),
                net("192.0.2.2", 24),
            ],
            1500,
        )
        .unwrap();
        assert_eq!(eth0.mac, "02:fc:00:00:00:01");
        assert_eq!(
            eth0.addresses,
            vec!["192.0.2.2/24", "fd00::2/64", "fe80::fc:ff:fe00:1/64"]
        );
        assert_eq!(eth0.mtu, 1500);
        assert!(
            interface_from("lo", &MacAddr::UNSPECIFIED, &[net("127.0.0.1", 8)], 65536).is_none()
        );
        assert!(interface_from("lo0", &MacAddr::UNSPECIFIED, &[net("::1", 128)], 16384).is_none());
        let ifb = interface_from("ifb0", &MacAddr::UNSPECIFIED, &[], u64::MAX).unwrap();
        assert_eq!((ifb.mac.as_str(), ifb.mtu), ("", u32::MAX));
        assert!(ifb.addresses.is_empty());
    }

    #[test]
    fn live_interfaces_match_sysfs() {
        let got = interfaces();
        eprintln!("live interfaces: {got:?}");
        assert!(got.iter().all(|i| i.name != "lo"));
        assert!(
            got.iter()
                .flat_map(|i| &i.addresses)
                .all(|a| a.contains('/'))
        );
        let Ok(entries) = std::fs::read_dir("/sys/class/net") else {
            return;
        };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name == "lo" {
                continue;
            }
            let iface = got.iter().find(|i| i.name == name);
            let iface = iface.unwrap_or_else(|| panic!("{name} missing from {got:?}"));
            let mtu = read_small(e.path().join("mtu"), 64).unwrap_or_default();
            assert_eq!(iface.mtu.to_string(), mtu.trim(), "{name}");
        }
    }

    #[test]
    fn sockets_from_cpuinfo() {
        // This machine (2 vCPUs, one socket) and node_exporter's laptop.
        let here = fixture("proc-cpuinfo_debian12-firecracker-2vcpu.txt");
        assert_eq!(cpu_sockets(&here), 1);
        assert_eq!(cpuinfo_hypervisor_flag(&here), Some(true));
        let laptop = fixture("proc-cpuinfo_node-exporter-i7-8650u.txt");
        assert_eq!(cpu_sockets(&laptop), 1);
        assert_eq!(cpuinfo_hypervisor_flag(&laptop), Some(false));
        // Constructed: two sockets, in the kernel's layout.
        let two = "processor\t: 0\nphysical id\t: 0\n\nprocessor\t: 1\nphysical id\t: 1\n\nprocessor\t: 2\nphysical id\t: 0\n";
        assert_eq!(cpu_sockets(two), 2);
        // ARM-style: no physical id, no flags line.
        let arm = "processor\t: 0\nBogoMIPS\t: 50.00\nFeatures\t: fp asimd evtstrm\n";
        assert_eq!(cpu_sockets(arm), 0);
        assert_eq!(cpuinfo_hypervisor_flag(arm), None);
        assert_eq!(cpu_sockets(""), 0);
        assert_eq!(cpu_sockets(&here[..here.len() / 3]), 1);
        assert_eq!(cpu_sockets("physical id\t:\nphysical id"), 0);
    }

    #[test]
    fn container_marker_sources() {
        // Real docker mountinfo (cgroup v2) vs this Firecracker VM's.
        assert!(etc_files_bind_mounted(&fixture(
            "mountinfo_docker-cgroupv2_pre-commit-test.txt"
        )));
        assert!(!etc_files_bind_mounted(&fixture(
            "proc-self-mountinfo_debian12-firecracker.txt"
        )));
        assert!(!etc_files_bind_mounted(""));
        assert!(!etc_files_bind_mounted("garbage\n1 2\n"));
        assert_eq!(container_env(b"HOME=/\0container=lxc\0TERM=linux\0"), "lxc");
        assert_eq!(container_env(b"HOME=/\0TERM=linux"), "");
        assert_eq!(container_env(b"container"), "");
        assert_eq!(container_env(&[0xff, 0, b'c']), "");
    }

    #[test]
    fn virtualization_table() {
        let none = ContainerMarkers::default();
        let here = ContainerMarkers {
            dockerenv: true,
            pid1_cgroup: fixture("proc-1-cgroup_debian12-firecracker.txt"),
            etc_files_bind_mounted: etc_files_bind_mounted(&fixture(
                "proc-self-mountinfo_debian12-firecracker.txt",
            )),
            ..Default::default()
        };
        let docker = ContainerMarkers {
            dockerenv: true,
            etc_files_bind_mounted: etc_files_bind_mounted(&fixture(
                "mountinfo_docker-cgroupv2_pre-commit-test.txt",
            )),
            pid1_cgroup: "0::/\n".into(),
            ..Default::default()
        };
        let m = |f: fn(&mut ContainerMarkers)| {
            let mut c = ContainerMarkers::default();
            f(&mut c);
            c
        };
        let cases: Vec<(&str, &str, bool, bool, ContainerMarkers, &str)> = vec![
            // DMI strings (vendor, product) as real guests report them.
            (
                "QEMU",
                "Standard PC (i440FX + PIIX, 1996)",
                true,
                false,
                none.clone(),
                "qemu",
            ),
            ("BOCHS_", "BXPC____", false, false, none.clone(), "qemu"),
            ("Red Hat", "KVM", true, false, none.clone(), "kvm"),
            (
                "OpenStack Foundation",
                "OpenStack Nova",
                true,
                false,
                none.clone(),
                "kvm",
            ),
            (
                "Google",
                "Google Compute Engine",
                true,
                false,
                none.clone(),
                "kvm",
            ),
            ("Amazon EC2", "m5.large", true, false, none.clone(), "kvm"),
            ("Xen", "HVM domU", true, false, none.clone(), "xen"),
            (
                "VMware, Inc.",
                "VMware Virtual Platform",
                true,
                false,
                none.clone(),
                "vmware",
            ),
            (
                "VMware, Inc.",
                "VMware7,1",
                true,
                false,
                none.clone(),
                "vmware",
            ),
            (
                "innotek GmbH",
                "VirtualBox",
                true,
                false,
                none.clone(),
                "virtualbox",
            ),
            (
                "Microsoft Corporation",
                "Virtual Machine",
                true,
                false,
                none.clone(),
                "hyper-v",
            ),
            (
                "Microsoft Corporation",
                "Surface Pro 7",
                false,
                false,
                none.clone(),
                "none",
            ),
            (
                "Dell Inc.",
                "PowerEdge R6515",
                false,
                false,
                none.clone(),
                "none",
            ),
            // Guest of a hypervisor the strings do not name: can't tell.
            (
                "Dell Inc.",
                "PowerEdge R6515",
                true,
                false,
                none.clone(),
                "",
            ),
            // No DMI: a guest (Firecracker) or an ARM board — can't tell.
            ("", "", true, true, none.clone(), ""),
            ("", "", false, true, none.clone(), ""),
            // This machine: a stale /.dockerenv in a Firecracker VM.
            ("", "", true, true, here, ""),
            // Containers win, also inside a VM.
            (
                "QEMU",
                "Standard PC (Q35 + ICH9, 2009)",
                true,
                false,
                docker,
                "docker",
            ),
            (
                "",
                "",
                false,
                true,
                m(|c| c.pid1_container_env = "docker".into()),
                "docker",
            ),
            (
                "",
                "",
                false,
                true,
                m(|c| c.pid1_container_env = "lxc".into()),
                "lxc",
            ),
            (
                "",
                "",
                false,
                true,
                m(|c| c.pid1_container_env = "systemd-nspawn".into()),
                "container",
            ),
            (
                "",
                "",
                false,
                true,
                m(|c| c.containerenv = true),
                "container",
            ),
            (
                "",
                "",
                false,
                true,
                m(|c| c.pid1_cgroup = "12:pids:/docker/3f2a\n".into()),
                "docker",
            ),
            (
                "",
                "",
                false,
                true,
                m(|c| c.pid1_cgroup = "0::/lxc.payload.web\n".into()),
                "lxc",
            ),
            (
                "",
                "",
                false,
                true,
                m(|c| c.pid1_cgroup = "0::/kubepods/burstable/pod1\n".into()),
                "container",
            ),
            (
                "",
                "",
                false,
                true,
                m(|c| c.etc_files_bind_mounted = true),
                "container",
            ),
        ];
        for (vendor, product, flag, missing, markers, want) in cases {
            assert_eq!(
                virtualization(vendor, product, flag, missing, &markers),
                want,
                "{vendor:?} {product:?} flag={flag} dmi_missing={missing} {markers:?}"
            );
        }
    }

    #[test]
    fn cpuid_signature_refines_the_hint() {
        // Leaf 0x40000000 as read from /dev/cpu/0/cpuid on this machine.
        let leaf = fixture_bytes("dev-cpu-0-cpuid_leaf-40000000_debian12-firecracker.bin");
        assert_eq!(cpuid_vendor(&leaf), "KVMKVMKVM");
        assert_eq!(refine_virtualization("", &cpuid_vendor(&leaf), ""), "kvm");
        assert_eq!(refine_virtualization("qemu", "KVMKVMKVM", ""), "kvm");
        assert_eq!(refine_virtualization("qemu", "TCGTCGTCGTCG", ""), "qemu");
        assert_eq!(refine_virtualization("docker", "KVMKVMKVM", ""), "docker");
        assert_eq!(refine_virtualization("vmware", "KVMKVMKVM", ""), "vmware");
        assert_eq!(refine_virtualization("", "", "xen\n"), "xen");
        assert_eq!(refine_virtualization("", "Microsoft Hv", ""), "hyper-v");
        assert_eq!(refine_virtualization("", "\u{0}\u{1}garbage", ""), "");
        assert_eq!(cpuid_vendor(&leaf[..7]), "");
        assert_eq!(cpuid_vendor(&[]), "");
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn live_collection_on_this_machine() {
        let mut inv = Inventory {
            hostname: "kept".into(),
            ..Default::default()
        };
        collect_into(&mut inv);
        eprintln!(
            "live: virtualization={:?} cpu_sockets={} hardware={:?}",
            inv.virtualization, inv.cpu_sockets, inv.hardware
        );
        assert_eq!(inv.hostname, "kept");
        assert!(
            [
                "kvm",
                "qemu",
                "vmware",
                "hyper-v",
                "virtualbox",
                "xen",
                "docker",
                "lxc",
                "container",
                "none",
                ""
            ]
            .contains(&inv.virtualization.as_str())
        );
        assert!(inv.hardware.is_some());
        if !Path::new(DMI_DIR).exists() {
            assert_eq!(inv.hardware, Some(Hardware::default()));
        }
        let cpuinfo = read_small("/proc/cpuinfo", 16 << 20).unwrap_or_default();
        assert_eq!(inv.cpu_sockets, cpu_sockets(&cpuinfo));
    }
}
