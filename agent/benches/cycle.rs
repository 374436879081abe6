//! Cost of the agent's collection rhythms on this machine: CPU time (user +
//! system, the agent and the tools it runs) per fast cycle, per checks run
//! and per package-manager run, and the resident memory afterwards.
//!
//! Run: `cargo bench -p xunjian-agent --bench cycle` (budget: fast cycle
//! <= 50 ms CPU). It measures; it asserts nothing, so it is not a test.

use std::time::{Duration, Instant};

use nix::sys::resource::{UsageWho, getrusage};
use xunjian_agent::collect::SystemCollector;
use xunjian_agent::collect::plan::{self, Plan};
use xunjian_agent::config::AgentConfig;

fn cpu() -> Duration {
    let t = |who| {
        getrusage(who)
            .map(|u| {
                let user = u.user_time();
                let sys = u.system_time();
                Duration::new(user.tv_sec() as u64, user.tv_usec() as u32 * 1000)
                    + Duration::new(sys.tv_sec() as u64, sys.tv_usec() as u32 * 1000)
            })
            .unwrap_or_default()
    };
    t(UsageWho::RUSAGE_SELF) + t(UsageWho::RUSAGE_CHILDREN)
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

fn measure(label: &str, runs: u32, mut f: impl FnMut()) {
    f(); // warm-up: first runs open files and fill caches
    let (c0, w0) = (cpu(), Instant::now());
    for _ in 0..runs {
        f();
    }
    let (cpu_each, wall_each) = ((cpu() - c0) / runs, w0.elapsed() / runs);
    println!(
        "{label:<28} runs {runs:>3}  CPU {:>8.2} ms/run  wall {:>8.2} ms/run",
        cpu_each.as_secs_f64() * 1e3,
        wall_each.as_secs_f64() * 1e3
    );
}

fn main() {
    let config = AgentConfig::with_data_dir(std::env::temp_dir());
    let plan = Plan::from_config(&config);
    let mut sys = SystemCollector::new();
    println!(
        "xunjian-agent collection cost on this machine ({} CPUs)",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    // The fast cycle includes sysinfo's 200 ms minimum between CPU samples
    // only as wall time (it sleeps), not as CPU.
    measure("fast cycle", 30, || {
        let _ = plan::fast(&mut sys, &plan);
    });
    measure("inventory", 5, || {
        let _ = plan::inventory(&mut sys, &plan);
    });
    measure("checks (services..smart)", 5, || {
        let _ = plan::checks(&plan);
    });
    measure("patches (package manager)", 2, || {
        let _ = plan::slow(&plan);
    });
    println!("resident memory after the runs: {} KiB", rss_kib());
}
