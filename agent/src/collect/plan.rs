//! Which collection areas run when. Four rhythms, so a slow tool never holds
//! up the fast metrics:
//! - fast (every `metrics_interval`): system metrics, inode usage, RAID
//!   state, top processes — cheap reads of /proc and /sys;
//! - checks (every `checks_interval`): services and time sync, antivirus,
//!   security baseline, SMART — a few short commands;
//! - slow (every `patches_interval`): package-manager queries;
//! - plugins: each custom check on its own interval.
//!
//! Inventory (hardware, packages, interfaces) goes out with the first fast
//! report and then every `inventory_interval`. `everything` runs all of it
//! at once, for RunNow (inspections) and `xunjian-agent check`.

use std::time::Instant;

use xunjian_proto::{CheckResults, Inventory, MetricBatch, Section, section};

use super::plugins::{PluginCheck, PluginSchedule};
use super::{Findings, SystemCollector, antivirus, baseline, disks, hardware, mdstat, packages, patches, services, smart};
use crate::config::AgentConfig;

/// What the checks rhythm needs from the configuration.
#[derive(Debug, Clone)]
pub struct ChecksPlan {
    pub plugins: Vec<PluginCheck>,
    pub antivirus: Vec<antivirus::GenericAv>,
}

impl ChecksPlan {
    pub fn from_config(config: &AgentConfig) -> Self {
        Self {
            plugins: config.checks.clone(),
            antivirus: config.antivirus.clone(),
        }
    }
}

/// The fast cycle's findings.
pub fn fast(sys: &mut SystemCollector) -> Findings {
    let mut f = Findings {
        metrics: sys.metrics().metrics,
        checks: Vec::new(),
    };
    let mounts: Vec<(String, String, String)> = sys
        .filesystems()
        .into_iter()
        .map(|m| (m.mount_point, m.device, m.fs_type))
        .collect();
    f.extend(disks::inode_metrics(&mounts));
    f.extend(mdstat::collect());
    f.metrics.extend(services::top_processes(&sys.processes(), 5));
    f
}

/// The inventory: what sysinfo knows plus hardware, block devices and
/// installed packages. A package list that could not be read is logged and
/// left empty in this snapshot's field.
pub fn inventory(sys: &mut SystemCollector) -> Inventory {
    let mut inv = sys.inventory();
    hardware::collect_into(&mut inv);
    inv.block_devices = disks::block_devices();
    match packages::collect() {
        Ok(p) => inv.packages = p,
        Err(reason) => tracing::warn!(%reason, "cannot list installed packages"),
    }
    inv
}

/// The checks rhythm: services, antivirus, baseline, SMART.
pub fn checks(plan: &ChecksPlan) -> Findings {
    let mut f = services::collect();
    f.extend(antivirus::collect(&plan.antivirus, chrono::Utc::now()));
    f.extend(baseline::collect());
    f.extend(smart::collect());
    f
}

/// The slow rhythm: package managers.
pub fn slow() -> Findings {
    patches::collect()
}

/// Custom checks that are due now.
pub fn due_plugins(plan: &ChecksPlan, schedule: &mut PluginSchedule, now: Instant) -> Findings {
    let mut f = Findings::default();
    for i in schedule.due(now) {
        if let Some(check) = plan.plugins.get(i) {
            f.extend(super::plugins::run_check(check));
        }
    }
    f
}

/// Everything, for RunNow and `check`.
pub fn everything(sys: &mut SystemCollector, plan: &ChecksPlan) -> Vec<Section> {
    let mut f = fast(sys);
    f.extend(checks(plan));
    f.extend(slow());
    for check in &plan.plugins {
        f.extend(super::plugins::run_check(check));
    }
    let mut sections = sections(f);
    sections.push(Section {
        kind: Some(section::Kind::Inventory(inventory(sys))),
    });
    sections
}

/// Findings as report sections (empty parts left out).
pub fn sections(f: Findings) -> Vec<Section> {
    let mut out = Vec::new();
    if !f.metrics.is_empty() {
        out.push(Section {
            kind: Some(section::Kind::Metrics(MetricBatch { metrics: f.metrics })),
        });
    }
    if !f.checks.is_empty() {
        out.push(Section {
            kind: Some(section::Kind::Checks(CheckResults { results: f.checks })),
        });
    }
    out
}
