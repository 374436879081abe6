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

use chrono::{DateTime, NaiveDate, Utc};
use xunjian_collector::report::compute::{ReportParams, compute};
use xunjian_collector::report::model::{OpsReport, PeriodKind};
use xunjian_collector::report::seed::{default_policy, local_days, local_midnight, seed_fleet};
use xunjian_collector::store;

/// Bump when `seed_fleet` changes, so a stale cached database is not reused.
const DATASET_VERSION: u32 = 1;
const DEFAULT_HOSTS: usize = 1000;
const SEED: u64 = 2026;
const RUNS: usize = 3;

fn main() -> Result<(), Box<dyn Error>> {
    let hosts = match std::env::var("XUNJIAN_BENCH_HOSTS") {
        Ok(n) => n.parse()?,
        Err(_) => DEFAULT_HOSTS,
    };
    let tz = chrono_tz::Asia::Shanghai;
    let date = |y| NaiveDate::from_ymd_opt(y, 1, 1).ok_or("bad year");
    let from = local_midnight(tz, date(2026)?);
    let to = local_midnight(tz, date(2027)?);
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
    let params = ReportParams {
        kind: PeriodKind::Annual,
        period_label: "2026".into(),
        from,
        to,
        next_period_days: 365.0,
        timezone: tz,
        days: local_days(tz, from, to),
        patch_max_age_days: 14,
        sla: default_policy(),
        now: to + chrono::Duration::hours(1),
    };
    let mut times = Vec::with_capacity(RUNS);
    for run in 1..=RUNS {
        let started = Instant::now();
        let report = timed(&conn, &params)?;
        let took = started.elapsed();
        println!(
            "run {run}: {:.3} s ({} hosts, {} incidents, {} filesystems, fleet availability {:?})",
            took.as_secs_f64(),
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

/// What is timed: computing the report (rendering joins here once it exists).
fn timed(conn: &rusqlite::Connection, params: &ReportParams) -> Result<OpsReport, Box<dyn Error>> {
    Ok(compute(conn, params)?)
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
