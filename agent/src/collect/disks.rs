//! Inode usage of mounted filesystems (statvfs) and the host's block
//! devices as Linux sysfs lists them under `/sys/block`.

use std::path::Path;

use xunjian_proto::{BlockDevice, Metric};

use super::{Findings, metric, percent};

/// Where Linux lists block devices, one directory per whole device with its
/// partitions as subdirectories.
pub const SYS_BLOCK: &str = "/sys/block";

/// sysfs `size` is always in 512-byte units, whatever the logical block
/// size of the device.
const SECTOR_BYTES: u64 = 512;

/// `fs.inodes_used_pct` for one filesystem from its statvfs inode counts.
/// `None` when the filesystem reports no inode total (btrfs, vfat, many
/// network filesystems allocate inodes dynamically or have none): that is
/// "not applicable", and reporting 0% would be a lie.
pub fn inode_usage_metric(
    mount: &str,
    device: &str,
    fstype: &str,
    files: u64,
    files_free: u64,
) -> Option<Metric> {
    let used = files.saturating_sub(files_free);
    let pct = percent(used, files)?;
    let labels = [("mount", mount), ("device", device), ("fstype", fstype)];
    Some(metric("fs.inodes_used_pct", pct, &labels))
}

/// Inode usage of each `(mount point, device, fs type)`. Mounts statvfs
/// cannot query (gone, no permission) are skipped with a debug log: their
/// byte usage is reported elsewhere and a missing sample is not 0%.
/// Blocking: statvfs can hang on a dead network mount, so call it from a
/// blocking thread.
pub fn inode_metrics(mounts: &[(String, String, String)]) -> Findings {
    let mut out = Findings::default();
    for (mount, device, fstype) in mounts {
        let Some((files, files_free)) = inode_counts(Path::new(mount)) else {
            continue;
        };
        out.metrics
            .extend(inode_usage_metric(mount, device, fstype, files, files_free));
    }
    out
}

#[cfg(unix)]
// fsfilcnt_t is u64 on 64-bit Linux but u32 on macOS and some 32-bit
// targets: `u64::from` is a no-op on some and needed on others.
#[allow(clippy::useless_conversion)]
fn inode_counts(path: &Path) -> Option<(u64, u64)> {
    match nix::sys::statvfs::statvfs(path) {
        // `files_free` counts inodes free for root too, as `df -i` does.
        Ok(st) => Some((u64::from(st.files()), u64::from(st.files_free()))),
        Err(e) => {
            tracing::debug!(mount = %path.display(), error = %e, "statvfs failed; no inode sample");
            None
        }
    }
}

#[cfg(not(unix))]
fn inode_counts(_path: &Path) -> Option<(u64, u64)> {
    None
}

/// The kind of a whole block device, from its kernel name.
pub fn device_kind(name: &str) -> &'static str {
    if name.starts_with("md") {
        "raid"
    } else if name.starts_with("loop") {
        "loop"
    } else if name.starts_with("dm-") {
        // device-mapper: LVM volumes, dm-crypt, multipath.
        "dm"
    } else if name.starts_with("zram") || name.starts_with("ram") {
        "ram"
    } else if name.starts_with("sr") {
        "rom"
    } else {
        "disk"
    }
}

/// The host's block devices from `/sys/block`. Empty where there is no
/// sysfs (not Linux). Blocking (reads sysfs).
pub fn block_devices() -> Vec<BlockDevice> {
    block_devices_from(Path::new(SYS_BLOCK))
}

/// Block devices under a `/sys/block`-shaped directory: each entry is a
/// whole device; its subdirectories that contain a `partition` file are its
/// partitions. Unattached loop devices and unconfigured RAM disks (size 0)
/// are left out: they are device nodes, not storage. Sorted by name.
pub fn block_devices_from(sys_block: &Path) -> Vec<BlockDevice> {
    let Ok(entries) = std::fs::read_dir(sys_block) else {
        return Vec::new();
    };
    let mut names: Vec<String> = entries
        .flatten()
        .filter_map(|e| e.file_name().to_str().map(str::to_owned))
        .collect();
    names.sort();
    let mut out = Vec::new();
    for name in names {
        let dir = sys_block.join(&name);
        let kind = device_kind(&name);
        let size_bytes = read_u64(&dir.join("size"))
            .unwrap_or(0)
            .saturating_mul(SECTOR_BYTES);
        if size_bytes == 0 && matches!(kind, "loop" | "ram") {
            continue;
        }
        let rotational = read_trimmed(&dir.join("queue/rotational")).as_deref() == Some("1");
        out.push(BlockDevice {
            name: name.clone(),
            size_bytes,
            // SCSI/SATA/NVMe put identity on the `device` link; virtio puts
            // the serial on the disk itself.
            model: read_trimmed(&dir.join("device/model")).unwrap_or_default(),
            serial: read_trimmed(&dir.join("device/serial"))
                .or_else(|| read_trimmed(&dir.join("serial")))
                .unwrap_or_default(),
            rotational,
            kind: kind.to_owned(),
        });
        out.extend(partitions(&dir, rotational));
    }
    out
}

fn partitions(disk_dir: &Path, rotational: bool) -> Vec<BlockDevice> {
    let Ok(entries) = std::fs::read_dir(disk_dir) else {
        return Vec::new();
    };
    let mut parts: Vec<BlockDevice> = entries
        .flatten()
        .filter(|e| e.path().join("partition").is_file())
        .filter_map(|e| {
            let name = e.file_name().to_str()?.to_owned();
            Some(BlockDevice {
                size_bytes: read_u64(&e.path().join("size"))
                    .unwrap_or(0)
                    .saturating_mul(SECTOR_BYTES),
                name,
                model: String::new(),
                serial: String::new(),
                // Partitions share their disk's medium.
                rotational,
                kind: "part".to_owned(),
            })
        })
        .collect();
    parts.sort_by(|a, b| a.name.cmp(&b.name));
    parts
}

fn read_trimmed(path: &Path) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    let t = text.trim();
    (!t.is_empty()).then(|| t.to_owned())
}

fn read_u64(path: &Path) -> Option<u64> {
    read_trimmed(path)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn write(root: &Path, rel: &str, text: &str) {
        let p = root.join(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, text).unwrap();
    }

    #[test]
    fn sysfs_tree_gives_disks_partitions_raid_and_loop() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        // A SATA HDD with two partitions.
        write(root, "sda/size", "1953525168\n");
        write(root, "sda/queue/rotational", "1\n");
        write(root, "sda/device/model", "WDC WD10EZEX-08W\n");
        write(root, "sda/sda1/partition", "1\n");
        write(root, "sda/sda1/size", "2048\n");
        write(root, "sda/sda2/partition", "2\n");
        write(root, "sda/sda2/size", "1953521664\n");
        // Not a partition: no `partition` file.
        write(root, "sda/queue/scheduler", "none\n");
        // NVMe: identity on the controller behind `device`.
        write(root, "nvme0n1/size", "1000215216\n");
        write(root, "nvme0n1/queue/rotational", "0\n");
        write(
            root,
            "nvme0n1/device/model",
            "Samsung SSD 970 EVO 500GB               \n",
        );
        write(root, "nvme0n1/device/serial", "S466NX0M776250H     \n");
        // virtio: serial on the disk, no model.
        write(root, "vda/size", "536870912\n");
        write(root, "vda/queue/rotational", "1\n");
        write(root, "vda/serial", "\n");
        write(root, "md0/size", "1000\n");
        write(root, "md0/queue/rotational", "0\n");
        write(root, "loop0/size", "0\n");
        write(root, "loop1/size", "2048\n");
        write(root, "zram0/size", "0\n");
        // Truncated or garbage attributes.
        write(root, "sdb/size", "garbage");

        let got = block_devices_from(root);
        let names: Vec<&str> = got.iter().map(|d| d.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "loop1", "md0", "nvme0n1", "sda", "sda1", "sda2", "sdb", "vda"
            ]
        );
        let by = |n: &str| got.iter().find(|d| d.name == n).unwrap();

        let sda = by("sda");
        assert_eq!(sda.size_bytes, 1953525168 * 512);
        assert!(sda.rotational);
        assert_eq!(sda.model, "WDC WD10EZEX-08W");
        assert_eq!(sda.kind, "disk");
        let sda2 = by("sda2");
        assert_eq!(
            (sda2.kind.as_str(), sda2.size_bytes, sda2.rotational),
            ("part", 1953521664 * 512, true)
        );
        let nvme = by("nvme0n1");
        assert_eq!(nvme.model, "Samsung SSD 970 EVO 500GB");
        assert_eq!(nvme.serial, "S466NX0M776250H");
        assert!(!nvme.rotational);
        assert_eq!(by("md0").kind, "raid");
        assert_eq!(by("loop1").kind, "loop");
        assert_eq!(by("sdb").size_bytes, 0);
        assert_eq!(by("vda").serial, "");
    }

    #[test]
    fn missing_sysfs_gives_nothing() {
        let dir = tempfile::tempdir().unwrap();
        assert!(block_devices_from(&dir.path().join("nope")).is_empty());
    }

    #[test]
    fn live_block_devices_include_this_machines_disk() {
        let devs = block_devices();
        if !Path::new(SYS_BLOCK).is_dir() {
            assert!(devs.is_empty());
            return;
        }
        // This image has a virtio disk /dev/vda; elsewhere accept any disk.
        let disk = devs
            .iter()
            .find(|d| d.name == "vda")
            .or_else(|| devs.iter().find(|d| d.kind == "disk"));
        if let Some(d) = disk {
            assert!(d.size_bytes > 0, "{d:?}");
        }
        assert!(devs.iter().all(|d| d.size_bytes > 0 || d.kind != "loop"));
    }

    #[test]
    fn inode_percentage_and_not_applicable() {
        let m = inode_usage_metric("/", "/dev/vda", "ext4", 1000, 250).unwrap();
        assert_eq!(m.name, "fs.inodes_used_pct");
        assert!((m.value - 75.0).abs() < 1e-9);
        let labels: Vec<(&str, &str)> = m
            .labels
            .iter()
            .map(|l| (l.name.as_str(), l.value.as_str()))
            .collect();
        assert_eq!(
            labels,
            [("mount", "/"), ("device", "/dev/vda"), ("fstype", "ext4")]
        );
        // btrfs/vfat report 0 inodes: no sample rather than 0%.
        assert!(inode_usage_metric("/boot/efi", "/dev/sda1", "vfat", 0, 0).is_none());
        // More free than total (racy counters) is 0%, not an underflow.
        assert_eq!(
            inode_usage_metric("/", "d", "xfs", 10, 20).unwrap().value,
            0.0
        );
    }

    #[test]
    fn live_inode_usage_of_root_and_missing_mount() {
        let mounts = vec![
            ("/".to_owned(), "rootdev".to_owned(), "any".to_owned()),
            (
                "/xunjian/no/such/mount".to_owned(),
                "x".to_owned(),
                "ext4".to_owned(),
            ),
        ];
        let f = inode_metrics(&mounts);
        assert!(f.checks.is_empty());
        // The missing mount is skipped; / has inodes on ext4/xfs/overlay.
        assert!(f.metrics.len() <= 1);
        for m in &f.metrics {
            assert!((0.0..=100.0).contains(&m.value), "{m:?}");
            assert!(m.labels.iter().any(|l| l.name == "mount" && l.value == "/"));
        }
    }
}
