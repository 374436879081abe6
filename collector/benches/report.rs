//! The annual-report benchmark: an annual report for 1,000 hosts with a
//! year of hourly rollups must render in under 10 seconds.
//!
//! Seeds the fleet once (`report::seed::seed_fleet`) into
//! `<target>/xunjian-bench/annual-<hosts>-v<version>.db` and reuses it on
//! later runs; then times the report three times and prints each run and the
//! median. `XUNJIAN_BENCH_HOSTS` changes the fleet size (for a quick look).
//!
//! Run: `cargo bench -p xunjian-collector --bench report`.

use std::error::Error;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use xunjian_collector::config::CollectorConfig;
use xunjian_collector::report::compute::{ReportParams, compute};
use xunjian_collector::report::model::{Lang, OpsReport, PeriodKind};
use xunjian_collector::report::render::{Format, render_report};
use xunjian_collector::report::seed::seed_fleet;
use xunjian_collector::store;

/// Bump when `seed_fleet` changes, so a stale cached database is not reused.
const DATASET_VERSION: u32 = 2;
const DEFAULT_HOSTS: usize = 1000;
const SEED: u64 = 2026;
const RUNS: usize = 3;

fn main() -> Result<(), Box<dyn Error>> {
    let hosts = match std::env::var("XUNJIAN_BENCH_HOSTS") {
        Ok(n) => n.parse()?,
        Err(_) => DEFAULT_HOSTS,
    };
    let mut config = CollectorConfig::default();
    config.reports.timezone = "Asia/Shanghai".into();
    // The same parameters `xunjian report annual --period 2026` uses.
    let probe = xunjian_collector::report::params(&config, PeriodKind::Annual, "2026", Utc::now())?;
    let (from, to) = (probe.from, probe.to);
    let params = xunjian_collector::report::params(
        &config,
        PeriodKind::Annual,
        "2026",
        to + chrono::Duration::hours(1),
    )?;
    let hours = usize::try_from((to - from).num_hours())?;

    let path = bench_dir()?.join(format!("annual-{hosts}-v{DATASET_VERSION}.db"));
    if path.exists() {
        println!("reusing {}", path.display());
    } else {
        let started = Instant::now();
        seed(&path, hosts, hours, to)?;
        println!(
            "seeded {hosts} hosts x {hours} hours in {:.1} s",
            started.elapsed().as_secs_f64()
        );
    }
    println!("database: {} ({})", path.display(), size_of_db(&path)?);

    let conn = store::open_read_only(&path)?;
    let mut times = Vec::with_capacity(RUNS);
    for run in 1..=RUNS {
        let started = Instant::now();
        let (report, computed, sizes) = timed(&conn, &params)?;
        let took = started.elapsed();
        println!(
            "run {run}: {:.3} s (compute {:.3} s; html {} KB, csv {} KB, json {} KB; {} hosts, {} incidents, {} filesystems, fleet availability {:?})",
            took.as_secs_f64(),
            computed.as_secs_f64(),
            sizes[0] / 1024,
            sizes[1] / 1024,
            sizes[2] / 1024,
            report.availability.hosts.len(),
            report.incidents.opened,
            report.capacity.filesystems.len(),
            report.availability.fleet_pct
        );
        times.push(took);
    }
    times.sort();
    let median = times[times.len() / 2];
    println!(
        "median: {:.3} s (target: under 10 s for 1,000 hosts)",
        median.as_secs_f64()
    );
    if median > Duration::from_secs(10) {
        println!("SLOWER THAN THE 10 s TARGET");
    }
    Ok(())
}

/// What is timed: computing the report and rendering it in every format
/// (HTML in Chinese, as the customer gets it).
fn timed(
    conn: &rusqlite::Connection,
    params: &ReportParams,
) -> Result<(OpsReport, Duration, [usize; 3]), Box<dyn Error>> {
    let started = Instant::now();
    let report = compute(conn, params)?;
    let computed = started.elapsed();
    let mut sizes = [0; 3];
    for (i, format) in [Format::Html, Format::Csv, Format::Json]
        .into_iter()
        .enumerate()
    {
        sizes[i] = render_report(&report, Lang::ZhCn, format)?.len();
    }
    Ok((report, computed, sizes))
}

/// Seeds into a temporary file and renames it, so an interrupted seed is
/// never mistaken for a finished one.
fn seed(path: &Path, hosts: usize, hours: usize, end: DateTime<Utc>) -> Result<(), Box<dyn Error>> {
    let partial = path.with_extension("partial");
    for stale in [
        partial.clone(),
        partial.with_extension("partial-wal"),
        partial.with_extension("partial-shm"),
    ] {
        if stale.exists() {
            std::fs::remove_file(stale)?;
        }
    }
    let mut conn = store::open(&partial)?;
    seed_fleet(&mut conn, hosts, hours, end, SEED)?;
    drop(conn);
    std::fs::rename(&partial, path)?;
    Ok(())
}

/// `$CARGO_TARGET_DIR/xunjian-bench`, or next to the target directory the
/// benchmark binary runs from (`<target>/release/deps/report-…`).
fn bench_dir() -> Result<PathBuf, Box<dyn Error>> {
    let target = match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => std::env::current_exe()?
            .ancestors()
            .nth(3)
            .ok_or("cannot find the target directory")?
            .to_owned(),
    };
    let dir = target.join("xunjian-bench");
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

fn size_of_db(path: &Path) -> Result<String, Box<dyn Error>> {
    let bytes = std::fs::metadata(path)?.len();
    Ok(format!("{:.2} GB", bytes as f64 / 1e9))
}
