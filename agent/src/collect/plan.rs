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
use super::{
    Findings, SystemCollector, antivirus, baseline, disks, hardware, mdstat, packages, patches,
    services, smart,
};
use crate::config::{AgentConfig, CollectConfig};

/// What the areas need from the configuration.
#[derive(Debug, Clone)]
pub struct Plan {
    pub collect: CollectConfig,
    pub plugins: Vec<PluginCheck>,
    pub antivirus: Vec<antivirus::GenericAv>,
}

impl Plan {
    pub fn from_config(config: &AgentConfig) -> Self {
        Self {
            collect: config.collect.clone(),
            plugins: config.checks.clone(),
            antivirus: config.antivirus.clone(),
        }
    }

    fn has(&self, area: &str) -> bool {
        self.collect.has(area)
    }

    /// This plan narrowed to the areas a collector policy enables. The
    /// policy can switch local areas off, never on: an empty list means no
    /// restriction.
    pub fn restricted_to(&self, enabled: &[String]) -> Plan {
        let mut plan = self.clone();
        if !enabled.is_empty() {
            plan.collect.areas.retain(|a| enabled.contains(a));
        }
        plan
    }
}

/// Processes listed in the top-processes view, by CPU and by memory.
const TOP_PROCESSES: usize = 5;

/// The fast cycle's findings.
pub fn fast(sys: &mut SystemCollector, plan: &Plan) -> Findings {
    let mut f = Findings::default();
    if plan.has("system") {
        f.metrics = sys.metrics().metrics;
    }
    if plan.has("disks") {
        let mounts: Vec<(String, String, String)> = sys
            .filesystems()
            .into_iter()
            .map(|m| (m.mount_point, m.device, m.fs_type))
            .collect();
        f.extend(disks::inode_metrics(&mounts));
        f.extend(mdstat::collect());
    }
    if plan.has("services") {
        f.metrics
            .extend(services::top_processes(&sys.processes(), TOP_PROCESSES));
    }
    f
}

/// The inventory: the host's identity (always: the fleet view needs it) plus,
/// with the `inventory` area, hardware, block devices and installed
/// packages. A package list that could not be read is logged and left empty
/// in this snapshot.
pub fn inventory(sys: &mut SystemCollector, plan: &Plan) -> Inventory {
    let mut inv = sys.inventory();
    if !plan.has("inventory") {
        return inv;
    }
    hardware::collect_into(&mut inv);
    inv.block_devices = disks::block_devices();
    match packages::collect() {
        Ok(p) => inv.packages = p,
        Err(reason) => tracing::warn!(%reason, "cannot list installed packages"),
    }
    inv
}

/// The checks rhythm: services, antivirus, baseline, SMART.
pub fn checks(plan: &Plan) -> Findings {
    let mut f = Findings::default();
    if plan.has("services") {
        f.extend(services::collect());
    }
    if plan.has("antivirus") {
        f.extend(antivirus::collect(&plan.antivirus, chrono::Utc::now()));
    }
    if plan.has("baseline") {
        f.extend(baseline::collect());
    }
    if plan.has("smart") {
        f.extend(smart::collect());
    }
    f
}

/// The slow rhythm: package managers.
pub fn slow(plan: &Plan) -> Findings {
    if plan.has("patches") {
        patches::collect()
    } else {
        Findings::default()
    }
}

/// Custom checks that are due now.
pub fn due_plugins(plan: &Plan, schedule: &mut PluginSchedule, now: Instant) -> Findings {
    let mut f = Findings::default();
    if !plan.has("plugins") {
        return f;
    }
    for i in schedule.due(now) {
        if let Some(check) = plan.plugins.get(i) {
            f.extend(super::plugins::run_check(check));
        }
    }
    f
}

/// Everything, for RunNow and `check`.
pub fn everything(sys: &mut SystemCollector, plan: &Plan) -> Vec<Section> {
    let mut f = fast(sys, plan);
    f.extend(checks(plan));
    f.extend(slow(plan));
    if plan.has("plugins") {
        for check in &plan.plugins {
            f.extend(super::plugins::run_check(check));
        }
    }
    let mut sections = sections(f);
    sections.push(Section {
        kind: Some(section::Kind::Inventory(inventory(sys, plan))),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_policy_narrows_the_areas_but_never_widens_them() {
        let mut config = AgentConfig::with_data_dir("/tmp".into());
        config.collect.areas = vec!["system".into(), "smart".into()];
        let plan = Plan::from_config(&config);
        let narrowed = plan.restricted_to(&["smart".into(), "patches".into()]);
        assert_eq!(narrowed.collect.areas, vec!["smart".to_string()]);
        assert_eq!(plan.restricted_to(&[]).collect.areas, plan.collect.areas);
    }
}
