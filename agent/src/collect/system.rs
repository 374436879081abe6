//! Host identity, OS, uptime, CPU, load, memory, swap and filesystem usage,
//! from one long-lived sysinfo `System` (refreshed selectively each cycle).

use std::collections::HashMap;

use sysinfo::{
    CpuRefreshKind, Disks, MemoryRefreshKind, ProcessRefreshKind, ProcessesToUpdate, RefreshKind,
    System,
};
use xunjian_proto::{Filesystem, Inventory, Metric, MetricBatch};

use super::{metric, percent};

/// Filesystem types that hold no user data: kernel interfaces, in-memory
/// and image filesystems. Their usage is noise (or always 100%, squashfs).
const PSEUDO_FS: &[&str] = &[
    "autofs",
    "binfmt_misc",
    "bpf",
    "cgroup",
    "cgroup2",
    "configfs",
    "debugfs",
    "devpts",
    "devtmpfs",
    "efivarfs",
    "fusectl",
    "hugetlbfs",
    "mqueue",
    "nsfs",
    "proc",
    "pstore",
    "ramfs",
    "rpc_pipefs",
    "securityfs",
    "selinuxfs",
    "squashfs",
    "sysfs",
    "tmpfs",
    "tracefs",
    "fuse.lxcfs",
    "fuse.portal",
    "fuse.gvfsd-fuse",
    "iso9660",
    "overlayfs-meta",
    "nfsd",
    "rootfs",
];

/// True for filesystem types that should not be reported.
pub fn is_pseudo_fs(fs_type: &str) -> bool {
    PSEUDO_FS.contains(&fs_type)
}

/// One mounted filesystem as read from the OS.
#[derive(Debug, Clone, PartialEq)]
pub struct MountUsage {
    pub mount_point: String,
    pub device: String,
    pub fs_type: String,
    pub total_bytes: u64,
    pub available_bytes: u64,
}

/// The filesystems worth reporting: pseudo filesystems and zero-size mounts
/// dropped, and a device mounted several times (bind mounts, container
/// file mounts such as /etc/hosts) reported once, at its shortest mount point.
pub fn data_filesystems(mounts: Vec<MountUsage>) -> Vec<MountUsage> {
    let mut by_device: HashMap<(String, String), MountUsage> = HashMap::new();
    for m in mounts {
        if is_pseudo_fs(&m.fs_type) || m.total_bytes == 0 {
            continue;
        }
        let key = (m.device.clone(), m.fs_type.clone());
        match by_device.get(&key) {
            Some(existing) if existing.mount_point.len() <= m.mount_point.len() => {}
            _ => {
                by_device.insert(key, m);
            }
        }
    }
    let mut out: Vec<MountUsage> = by_device.into_values().collect();
    out.sort_by(|a, b| a.mount_point.cmp(&b.mount_point));
    out
}

/// Usage metrics of one filesystem.
pub fn filesystem_metrics(m: &MountUsage) -> Vec<Metric> {
    let labels = [
        ("mount", m.mount_point.as_str()),
        ("device", m.device.as_str()),
        ("fstype", m.fs_type.as_str()),
    ];
    let used = m.total_bytes.saturating_sub(m.available_bytes);
    let mut out = vec![
        metric("fs.total_bytes", m.total_bytes as f64, &labels),
        metric("fs.free_bytes", m.available_bytes as f64, &labels),
    ];
    if let Some(p) = percent(used, m.total_bytes) {
        out.push(metric("fs.used_pct", p, &labels));
    }
    out
}

/// Collects system facts; keep one for the agent's lifetime so CPU usage is
/// measured between consecutive calls.
pub struct SystemCollector {
    sys: System,
    disks: Disks,
    last_cpu_refresh: std::time::Instant,
}

impl Default for SystemCollector {
    fn default() -> Self {
        Self::new()
    }
}

impl SystemCollector {
    pub fn new() -> Self {
        let sys = System::new_with_specifics(
            RefreshKind::nothing()
                .with_cpu(CpuRefreshKind::everything())
                .with_memory(MemoryRefreshKind::everything()),
        );
        Self {
            sys,
            disks: Disks::new_with_refreshed_list(),
            last_cpu_refresh: std::time::Instant::now(),
        }
    }

    /// Metrics for one cycle. Blocking (reads /proc); call from a blocking
    /// thread.
    pub fn metrics(&mut self) -> MetricBatch {
        // CPU usage is a difference between two refreshes; too short a gap
        // gives noise, so the first cycle after start waits out the minimum.
        let since = self.last_cpu_refresh.elapsed();
        if since < sysinfo::MINIMUM_CPU_UPDATE_INTERVAL {
            std::thread::sleep(sysinfo::MINIMUM_CPU_UPDATE_INTERVAL - since);
        }
        self.sys.refresh_specifics(
            RefreshKind::nothing()
                .with_cpu(CpuRefreshKind::nothing().with_cpu_usage())
                .with_memory(MemoryRefreshKind::everything()),
        );
        self.last_cpu_refresh = std::time::Instant::now();
        self.disks.refresh(true);

        let mut m = Vec::new();
        m.push(metric(
            "cpu.usage_pct",
            f64::from(self.sys.global_cpu_usage()),
            &[],
        ));
        let load = System::load_average();
        m.push(metric("cpu.load1", load.one, &[]));
        m.push(metric("cpu.load5", load.five, &[]));
        m.push(metric("cpu.load15", load.fifteen, &[]));
        let total = self.sys.total_memory();
        let available = self.sys.available_memory();
        m.push(metric("memory.total_bytes", total as f64, &[]));
        m.push(metric("memory.available_bytes", available as f64, &[]));
        if let Some(p) = percent(total.saturating_sub(available), total) {
            m.push(metric("memory.used_pct", p, &[]));
        }
        let swap_total = self.sys.total_swap();
        m.push(metric("swap.total_bytes", swap_total as f64, &[]));
        m.push(metric("swap.used_bytes", self.sys.used_swap() as f64, &[]));
        if let Some(p) = percent(self.sys.used_swap(), swap_total) {
            m.push(metric("swap.used_pct", p, &[]));
        }
        m.push(metric("system.uptime_s", System::uptime() as f64, &[]));
        for fs in self.filesystems() {
            m.extend(filesystem_metrics(&fs));
        }
        MetricBatch { metrics: m }
    }

    /// Host identity and configuration facts.
    pub fn inventory(&mut self) -> Inventory {
        let cpus = self.sys.cpus();
        Inventory {
            hostname: System::host_name().unwrap_or_default(),
            os_name: System::name().unwrap_or_default(),
            os_version: System::os_version().unwrap_or_default(),
            kernel_version: System::kernel_version().unwrap_or_default(),
            arch: System::cpu_arch(),
            boot_time_unix_s: i64::try_from(System::boot_time()).unwrap_or(0),
            cpu_model: cpus
                .first()
                .map(|c| c.brand().trim().to_owned())
                .unwrap_or_default(),
            cpu_logical: u32::try_from(cpus.len()).unwrap_or(u32::MAX),
            cpu_physical: System::physical_core_count()
                .and_then(|n| u32::try_from(n).ok())
                .unwrap_or(0),
            memory_total_bytes: self.sys.total_memory(),
            swap_total_bytes: self.sys.total_swap(),
            filesystems: self
                .filesystems()
                .into_iter()
                .map(|f| Filesystem {
                    mount_point: f.mount_point,
                    device: f.device,
                    fs_type: f.fs_type,
                    total_bytes: f.total_bytes,
                })
                .collect(),
            ..Default::default()
        }
    }

    /// Running processes as (pid, name, CPU % since the last call, resident
    /// bytes), for the top-processes view.
    pub fn processes(&mut self) -> Vec<(u32, String, f64, u64)> {
        self.sys.refresh_processes_specifics(
            ProcessesToUpdate::All,
            true,
            ProcessRefreshKind::nothing().with_cpu().with_memory(),
        );
        self.sys
            .processes()
            .values()
            .map(|p| {
                (
                    p.pid().as_u32(),
                    p.name().to_string_lossy().into_owned(),
                    f64::from(p.cpu_usage()),
                    p.memory(),
                )
            })
            .collect()
    }

    /// The data filesystems as of the last refresh.
    pub fn filesystems(&self) -> Vec<MountUsage> {
        data_filesystems(
            self.disks
                .list()
                .iter()
                .map(|d| MountUsage {
                    mount_point: d.mount_point().to_string_lossy().into_owned(),
                    device: d.name().to_string_lossy().into_owned(),
                    fs_type: d.file_system().to_string_lossy().into_owned(),
                    total_bytes: d.total_space(),
                    available_bytes: d.available_space(),
                })
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mount(mp: &str, dev: &str, fs: &str, total: u64, avail: u64) -> MountUsage {
        MountUsage {
            mount_point: mp.into(),
            device: dev.into(),
            fs_type: fs.into(),
            total_bytes: total,
            available_bytes: avail,
        }
    }

    #[test]
    fn pseudo_and_duplicate_mounts_are_dropped() {
        // Shaped like /proc/mounts inside a container on this machine image:
        // overlay root, bind-mounted /etc files from the host disk, tmpfs.
        let got = data_filesystems(vec![
            mount("/", "overlay", "overlay", 100, 50),
            mount("/etc/hosts", "/dev/vda", "ext4", 1000, 900),
            mount("/etc/resolv.conf", "/dev/vda", "ext4", 1000, 900),
            mount("/work", "/dev/vda", "ext4", 1000, 900),
            mount("/dev/shm", "shm", "tmpfs", 64, 64),
            mount("/proc", "proc", "proc", 0, 0),
            mount("/snap/core/1", "/dev/loop0", "squashfs", 10, 0),
        ]);
        let points: Vec<&str> = got.iter().map(|m| m.mount_point.as_str()).collect();
        assert_eq!(points, vec!["/", "/work"]);
    }

    #[test]
    fn filesystem_usage_is_percent_of_total() {
        let ms = filesystem_metrics(&mount("/", "/dev/sda1", "ext4", 200, 50));
        let used = ms.iter().find(|m| m.name == "fs.used_pct").unwrap();
        assert!((used.value - 75.0).abs() < 1e-9);
        assert!(
            used.labels
                .iter()
                .any(|l| l.name == "mount" && l.value == "/")
        );
    }

    #[test]
    fn zero_total_gives_no_percentage() {
        assert_eq!(percent(0, 0), None);
        assert!(
            filesystem_metrics(&mount("/x", "d", "ext4", 0, 0))
                .iter()
                .all(|m| m.name != "fs.used_pct")
        );
    }

    #[test]
    fn live_collection_reports_this_host() {
        let mut c = SystemCollector::new();
        let batch = c.metrics();
        let names: Vec<&str> = batch.metrics.iter().map(|m| m.name.as_str()).collect();
        for expected in ["cpu.usage_pct", "memory.used_pct", "system.uptime_s"] {
            assert!(names.contains(&expected), "missing {expected} in {names:?}");
        }
        let cpu = batch
            .metrics
            .iter()
            .find(|m| m.name == "cpu.usage_pct")
            .unwrap();
        assert!((0.0..=100.0).contains(&cpu.value));
        let inv = c.inventory();
        assert!(inv.memory_total_bytes > 0);
        assert!(inv.cpu_logical > 0);
        assert!(!inv.kernel_version.is_empty());
    }
}
