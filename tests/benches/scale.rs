//! Scale: a real collector process (`xunjian serve`, built with this
//! benchmark's optimisations) against N simulated agents on real mTLS gRPC
//! streams, next to the raw SQLite ceiling measured in the same run on the
//! same disk. Prints sustained reports/s and sample rows/s, ack latency
//! percentiles, the collector's CPU (% of one core, over the steady window)
//! and peak RSS, and the end-to-end / ceiling ratio.
//!
//! Run: `cargo bench -p xunjian-tests --bench scale`. Settings (env):
//! `XUNJIAN_SCALE_AGENTS` (default 1000; 10000 works and needs about
//! 11,000 open files per process, which the benchmark sets up when the hard
//! limit allows), `XUNJIAN_SCALE_INTERVAL` (10s), `XUNJIAN_SCALE_DURATION`
//! (steady window, 60s), `XUNJIAN_SCALE_SAMPLES` (100),
//! `XUNJIAN_SCALE_CHECKS` (10), `XUNJIAN_SCALE_RAMP_RATE` (connections/s,
//! 250), `XUNJIAN_SCALE_DIR` (where the collector's data and the ceiling's
//! databases go; default the system temp dir), `XUNJIAN_SCALE_COLLECTOR_BIN`
//! (run this `xunjian` binary instead of the workspace-built harness, e.g.
//! `target/release/xunjian` after `cargo build --release --bin xunjian`),
//! `XUNJIAN_SCALE_WRITER_CACHE_MIB` (the collector's
//! `storage.writer_cache_mib`; unset: its default).
//! With the defaults it takes about 1.5 minutes. It measures and prints; it
//! asserts nothing, so it is not a test.
//!
//! The simulator runs in this process and shares the machine's cores with
//! the collector: on a small machine its own CPU (printed too) caps what
//! the collector can reach.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio_util::sync::CancellationToken;
use xunjian_tests::load::{self, CEILING_BATCHES, FD_HEADROOM, SimConfig, SimEvent};
use xunjian_tests::{Proc, free_port, wait_listening, write_collector_toml};

const HARNESS: &str = env!("CARGO_BIN_EXE_xunjian-harness");
/// Linux reports /proc CPU times in USER_HZ, 100 per second on every
/// architecture the kernel exports to user space.
const TICKS_PER_S: f64 = 100.0;
/// How long the collector may take to stop after SIGTERM.
const STOP_GRACE: Duration = Duration::from_secs(60);

struct Settings {
    agents: usize,
    interval: Duration,
    duration: Duration,
    samples: usize,
    checks: usize,
    ramp_rate: u32,
    dir: PathBuf,
    collector_bin: Option<PathBuf>,
    writer_cache_mib: Option<u32>,
}

fn env_duration(name: &str, default: Duration) -> Duration {
    match std::env::var(name) {
        Ok(v) => humantime::parse_duration(&v)
            .unwrap_or_else(|e| panic!("{name}={v:?} is not a duration (e.g. 30s): {e}")),
        Err(_) => default,
    }
}

impl Settings {
    fn from_env() -> Self {
        Self {
            agents: load::env_or("XUNJIAN_SCALE_AGENTS", 1000),
            interval: env_duration("XUNJIAN_SCALE_INTERVAL", Duration::from_secs(10)),
            duration: env_duration("XUNJIAN_SCALE_DURATION", Duration::from_secs(60)),
            samples: load::env_or("XUNJIAN_SCALE_SAMPLES", 100),
            checks: load::env_or("XUNJIAN_SCALE_CHECKS", 10),
            ramp_rate: load::env_or("XUNJIAN_SCALE_RAMP_RATE", 250),
            dir: std::env::var_os("XUNJIAN_SCALE_DIR").map_or_else(std::env::temp_dir, Into::into),
            collector_bin: std::env::var_os("XUNJIAN_SCALE_COLLECTOR_BIN").map(Into::into),
            writer_cache_mib: std::env::var("XUNJIAN_SCALE_WRITER_CACHE_MIB")
                .ok()
                .map(|v| {
                    v.parse()
                        .unwrap_or_else(|e| panic!("XUNJIAN_SCALE_WRITER_CACHE_MIB={v:?}: {e}"))
                }),
        }
    }
}

/// CPU time (user + system) of a process, in ticks.
fn cpu_ticks(pid: &str) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces; fields after its closing
    // parenthesis start at field 3 (state): utime is field 14, stime 15.
    let after = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = after.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// A `kB` line of /proc/PID/status (VmRSS, VmHWM), in MiB.
fn status_mib(pid: &str, key: &str) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with(key))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

fn unix_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// CPU of a process between two readings, in % of one core.
fn cpu_pct(before: Option<u64>, after: Option<u64>, over: Duration) -> Option<f64> {
    let ticks = after?.checked_sub(before?)?;
    Some(ticks as f64 / TICKS_PER_S / over.as_secs_f64().max(f64::MIN_POSITIVE) * 100.0)
}

/// CPU ticks of each of a process's threads, summed by thread name (tokio
/// workers share one name, the storage writer has its own).
fn thread_ticks(pid: &str) -> std::collections::BTreeMap<String, u64> {
    let mut out = std::collections::BTreeMap::new();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return out;
    };
    for task in tasks.flatten() {
        let tid = task.file_name().to_string_lossy().into_owned();
        let path = format!("{pid}/task/{tid}");
        let name = std::fs::read_to_string(format!("/proc/{path}/comm")).unwrap_or_default();
        if let Some(ticks) = cpu_ticks(&path) {
            *out.entry(name.trim().to_owned()).or_default() += ticks;
        }
    }
    out
}

/// Readings taken when the steady window starts.
struct WindowStart {
    at: Instant,
    collector_ticks: Option<u64>,
    collector_threads: std::collections::BTreeMap<String, u64>,
    simulator_ticks: Option<u64>,
    /// Every agent has connected by now.
    collector_rss: Option<f64>,
}

/// What the window cost, read when it ends.
#[derive(Default)]
struct WindowEnd {
    collector_cpu: Option<f64>,
    simulator_cpu: Option<f64>,
    collector_rss: Option<f64>,
    /// Busiest thread groups first: (name, % of one core).
    collector_threads: Vec<(String, f64)>,
}

impl WindowStart {
    fn read(pid: &str) -> Self {
        Self {
            at: Instant::now(),
            collector_ticks: cpu_ticks(pid),
            collector_threads: thread_ticks(pid),
            simulator_ticks: cpu_ticks("self"),
            collector_rss: status_mib(pid, "VmRSS:"),
        }
    }

    fn end(&self, pid: &str) -> WindowEnd {
        let over = self.at.elapsed();
        // Threads that ended within the window are missing from one side;
        // they are left out rather than guessed.
        let mut collector_threads: Vec<(String, f64)> = thread_ticks(pid)
            .into_iter()
            .filter_map(|(name, ticks)| {
                let before = self.collector_threads.get(&name).copied();
                Some((name, cpu_pct(before, Some(ticks), over)?))
            })
            .filter(|(_, pct)| *pct >= 0.5)
            .collect();
        collector_threads.sort_by(|a, b| b.1.total_cmp(&a.1));
        WindowEnd {
            collector_threads,
            collector_cpu: cpu_pct(self.collector_ticks, cpu_ticks(pid), over),
            simulator_cpu: cpu_pct(self.simulator_ticks, cpu_ticks("self"), over),
            collector_rss: status_mib(pid, "VmRSS:"),
        }
    }
}

/// The distinct WARN/ERROR messages of the collector's log, with counts.
fn log_problems(log: &Path) -> Vec<(usize, String)> {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let mut counts: std::collections::BTreeMap<String, usize> = Default::default();
    for line in text.lines() {
        let Some(at) = line.find(" WARN ").or_else(|| line.find(" ERROR ")) else {
            continue;
        };
        // Keep the level, target and message; drop the timestamp and the
        // per-agent span fields so repeats group together.
        let rest = &line[at + 1..];
        let key: String = rest
            .split_whitespace()
            .filter(|w| !w.starts_with("agent_stream{") && !w.starts_with("agent="))
            .collect::<Vec<_>>()
            .join(" ");
        *counts.entry(key.chars().take(160).collect()).or_default() += 1;
    }
    let mut out: Vec<(usize, String)> = counts.into_iter().map(|(k, n)| (n, k)).collect();
    out.sort_by_key(|(n, _)| std::cmp::Reverse(*n));
    out
}

fn main() {
    let s = Settings::from_env();
    let fd_limit =
        load::raise_fd_limit(s.agents as u64 + FD_HEADROOM).unwrap_or_else(|e| panic!("{e}"));
    std::fs::create_dir_all(&s.dir).expect("the scale directory can be created");
    let dir = tempfile::tempdir_in(&s.dir).expect("a temporary directory");
    println!(
        "scale benchmark: {} agents, {} samples + {} checks every {}, window {}, ramp {} conn/s, {} CPUs, open-file limit {fd_limit}, data in {}",
        s.agents,
        s.samples,
        s.checks,
        humantime::format_duration(s.interval),
        humantime::format_duration(s.duration),
        s.ramp_rate,
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        dir.path().display()
    );

    // 1. The ceiling, on the same disk, before anything else runs.
    let ceiling_dir = dir.path().join("ceiling");
    std::fs::create_dir_all(&ceiling_dir).expect("ceiling directory");
    let rows = load::ceiling_rows(s.agents, s.samples, 2);
    let runs = load::sqlite_ceiling(&ceiling_dir, s.agents, s.samples, rows, &CEILING_BATCHES)
        .unwrap_or_else(|e| panic!("ceiling run failed: {e}"));
    for run in &runs {
        println!(
            "ceiling  {:>6} rows/transaction: {:>10.0} rows/s",
            run.batch_rows,
            run.rows_per_s()
        );
    }
    let ceiling = load::best_ceiling(&runs).map_or(0.0, |r| r.rows_per_s());

    // 2. The collector, as its own process (children inherit the fd limit).
    let data = dir.path().join("collector");
    let port = free_port();
    let config = dir.path().join("collector.toml");
    write_collector_toml(&config, &data, port);
    if let Some(mib) = s.writer_cache_mib {
        // The file ends in its [storage] table.
        let mut toml = std::fs::read_to_string(&config).expect("the config just written");
        toml.push_str(&format!("writer_cache_mib = {mib}\n"));
        std::fs::write(&config, toml).expect("the config rewritten");
        println!("collector storage.writer_cache_mib = {mib}");
    }
    let log = dir.path().join("collector.log");
    let config_arg = config.to_str().expect("a UTF-8 temp path");
    let collector = match &s.collector_bin {
        Some(bin) => Proc::spawn(bin, "serve", &["--config", config_arg], &log),
        None => Proc::spawn(
            Path::new(HARNESS),
            "collector",
            &["serve", "--config", config_arg],
            &log,
        ),
    };
    let pid = collector.pid().to_string();
    let url = format!("https://127.0.0.1:{port}");

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let summary = runtime.block_on(async {
        wait_listening(port).await;
        // 3. Batch enrollment through the collector's own CA and tables.
        let enrolled = load::enroll_batch(&data, &url, s.agents, unix_ms())
            .unwrap_or_else(|e| panic!("batch enrollment failed: {e}"));
        println!(
            "enrolled {} agents in {:.2} s (keys and certificates {:.2} s, database {:.2} s)",
            enrolled.agents.len(),
            enrolled.total().as_secs_f64(),
            enrolled.keys_and_certs.as_secs_f64(),
            enrolled.database.as_secs_f64()
        );
        let idle_rss = status_mib(&pid, "VmRSS:");

        // 4. The simulated fleet.
        let config = SimConfig {
            collector_url: url.clone(),
            interval: s.interval,
            duration: s.duration,
            samples: s.samples,
            checks: s.checks,
            ramp_rate: s.ramp_rate,
            drain: Duration::from_secs(30),
            progress_every: Duration::from_secs(10),
        };
        let mut start: Option<WindowStart> = None;
        let mut end = WindowEnd::default();
        let summary = load::simulate(
            config,
            enrolled.agents,
            CancellationToken::new(),
            |e| match e {
                SimEvent::SteadyStart => start = Some(WindowStart::read(&pid)),
                SimEvent::Progress(p) => println!("{p}"),
                SimEvent::SteadyEnd => {
                    if let Some(start) = &start {
                        end = start.end(&pid);
                    }
                }
            },
        )
        .await;
        let peak_rss = status_mib(&pid, "VmHWM:");
        let connected_rss = start.and_then(|s| s.collector_rss);
        (summary, idle_rss, connected_rss, end, peak_rss)
    });
    let (summary, idle_rss, connected_rss, end, peak_rss) = summary;

    // 5. Orderly stop under the just-finished load, then count what is stored.
    let stop_started = Instant::now();
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(collector.pid()),
        nix::sys::signal::Signal::SIGTERM,
    );
    let mut collector = collector;
    let stopped = loop {
        match collector.child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if stop_started.elapsed() < STOP_GRACE => {
                std::thread::sleep(Duration::from_millis(50))
            }
            _ => break None,
        }
    };
    let stored_samples: i64 = rusqlite::Connection::open(data.join("xunjian.db"))
        .and_then(|c| {
            c.query_row(
                "SELECT coalesce(sum(samples), 0) FROM sample_blocks",
                [],
                |r| r.get(0),
            )
        })
        .unwrap_or(-1);

    println!("\n{summary}");
    let mib = |v: Option<f64>| v.map_or("?".into(), |v| format!("{v:.0} MiB"));
    let pct = |v: Option<f64>| v.map_or("?".into(), |v| format!("{v:.0}%"));
    println!(
        "collector CPU     {} of one core over the window (simulator {})",
        pct(end.collector_cpu),
        pct(end.simulator_cpu)
    );
    let threads: Vec<String> = end
        .collector_threads
        .iter()
        .map(|(name, pct)| format!("{name} {pct:.0}%"))
        .collect();
    println!("  by thread       {}", threads.join(", "));
    println!(
        "collector RSS     idle {}, all connected {}, end of window {}, peak {}",
        mib(idle_rss),
        mib(connected_rss),
        mib(end.collector_rss),
        mib(peak_rss)
    );
    if let (Some(idle), Some(connected)) = (idle_rss, connected_rss)
        && summary.connected_peak > 0
    {
        println!(
            "                  {:.0} KiB per connected agent (growth from idle, caches included)",
            (connected - idle) * 1024.0 / summary.connected_peak as f64
        );
    }
    println!(
        "ceiling           {ceiling:.0} sample rows/s; end-to-end {:.0} = {:.1}% of it (offered {:.0})",
        summary.sample_rows_per_s,
        summary.sample_rows_per_s / ceiling.max(f64::MIN_POSITIVE) * 100.0,
        summary.offered_sample_rows_per_s
    );
    println!(
        "stop              {} in {:.1} s; {stored_samples} sample rows stored, {} acked{}",
        match stopped {
            Some(status) => format!("exited ({status})"),
            None => "did not exit".into(),
        },
        stop_started.elapsed().as_secs_f64(),
        summary.sample_rows_acked,
        if u64::try_from(stored_samples).is_ok_and(|n| n >= summary.sample_rows_acked) {
            ""
        } else {
            " (FEWER STORED THAN ACKED)"
        }
    );
    let problems = log_problems(&log);
    if problems.is_empty() {
        println!("collector log     no warnings or errors");
    } else {
        println!("collector log     warnings/errors:");
        for (n, message) in problems.iter().take(8) {
            println!("  {n:>7} x {message}");
        }
    }
    if summary.error_total() > 0 || stopped.is_none() || !problems.is_empty() {
        // The data directory goes with the temp dir; the log is kept.
        let kept = s.dir.join(format!("scale-collector-{pid}.log"));
        if std::fs::copy(&log, &kept).is_ok() {
            println!("collector log kept at {}", kept.display());
        }
    }
}
