//! The storage writer alone: the simulator's reports (100 samples and 10
//! check results each, agents in random order, as a fleet sends them) fed
//! straight into the collector's writer thread, with the minute-ly rollup
//! pass running beside it as in the collector. No TLS, gRPC or rules: this
//! is the most the collector's storage can take, between the raw SQLite
//! ceiling (`ceiling`) and end-to-end ingest (`scale`).
//!
//! Run: `cargo bench -p xunjian-tests --bench writer`. Settings:
//! `XUNJIAN_WRITER_AGENTS` (default 10000), `XUNJIAN_WRITER_SAMPLES` (series
//! per report, default 100), `XUNJIAN_WRITER_ROUNDS` (reports per agent,
//! default 4, the first untimed: it creates the series), `XUNJIAN_WRITER_DIR` (where the database goes; default the
//! system temp dir). It measures and prints; it asserts nothing.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use rand::seq::SliceRandom;
use xunjian_collector::maintenance::{self, RetentionConfig};
use xunjian_collector::store::{Stored, WriteError, Writer};
use xunjian_proto::{CheckResults, Metric, MetricBatch, Report, Section, section};
use xunjian_tests::load;

// As in the `xunjian` binary: the allocator is part of the writer's cost.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Reports queued in the writer at once, at most (the collector's streams
/// keep about this many waiting under load).
const OUTSTANDING: usize = 1024;

fn main() {
    let agents = load::env_or("XUNJIAN_WRITER_AGENTS", 10_000);
    let samples = load::env_or("XUNJIAN_WRITER_SAMPLES", 100);
    let rounds = load::env_or("XUNJIAN_WRITER_ROUNDS", 4).max(2);
    let base = std::env::var_os("XUNJIAN_WRITER_DIR").map_or_else(std::env::temp_dir, Into::into);
    let dir = tempfile::tempdir_in(&base).expect("a temporary directory");
    let path = dir.path().join("writer.db");
    let ids = load::insert_sim_agents(&path, agents).expect("agents inserted");

    let series = load::host_series(samples);
    let checks = load::host_checks(10);
    let mut order: Vec<(usize, u64)> = (0..rounds)
        .flat_map(|round| (0..agents).map(move |a| (a, round as u64 + 1)))
        .collect();
    // Each round in random agent order, rounds in sequence order.
    let mut rng = rand::rng();
    for round in order.chunks_mut(agents.max(1)) {
        round.shuffle(&mut rng);
    }
    let base_ms = chrono::Utc::now().timestamp_millis() - 3_600_000;
    let reports: Vec<(usize, Report)> = order
        .iter()
        .map(|&(agent, seq)| {
            let metrics = series
                .iter()
                .enumerate()
                .map(|(i, s)| Metric {
                    value: (agent * 31 + i) as f64 + seq as f64 / 10.0,
                    ..s.metric.clone()
                })
                .collect();
            let report = Report {
                sequence: seq,
                collected_at_unix_ms: base_ms + seq as i64 * 10_000,
                sections: vec![
                    Section {
                        kind: Some(section::Kind::Metrics(MetricBatch { metrics })),
                    },
                    Section {
                        kind: Some(section::Kind::Checks(CheckResults {
                            results: checks.clone(),
                        })),
                    },
                ],
                ..Default::default()
            };
            (agent, report)
        })
        .collect();
    let rows = reports.len().saturating_sub(agents) * samples;
    println!(
        "storage writer: {agents} agents x {rounds} reports of {samples} samples and {} checks, the first round as warm-up: {rows} sample rows timed, in {}",
        checks.len(),
        base.display()
    );

    let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime");
    let (elapsed, rollup_rows) = runtime.block_on(async move {
        let (writer, thread) = Writer::spawn(&path, None).expect("writer starts");
        let stop = tokio_util::sync::CancellationToken::new();
        let rollups = {
            let writer = writer.clone();
            let stop = stop.clone();
            tokio::spawn(async move {
                let retention = RetentionConfig::default();
                let mut rows = 0;
                while !stop.is_cancelled() {
                    let now = chrono::Utc::now().timestamp_millis();
                    let pass = maintenance::run_pass(&writer, now, &retention).await;
                    rows += pass.expect("maintenance pass").rows;
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                rows
            })
        };
        // The first round creates every series, which a fleet does once:
        // it is stored and rolled up before the clock starts.
        let mut reports = reports.into_iter();
        let mut warm_up = Vec::with_capacity(agents);
        for (agent, report) in reports.by_ref().take(agents) {
            let received = report.collected_at_unix_ms + 500;
            warm_up.push(writer.store_report(ids[agent], report, 0, received).await);
        }
        for done in warm_up {
            done.await.expect("stored").expect("stored");
        }
        let now = chrono::Utc::now().timestamp_millis();
        maintenance::run_pass(&writer, now, &RetentionConfig::default())
            .await
            .expect("warm-up rollups");
        let started = Instant::now();
        let mut pending: VecDeque<oneshot::Receiver<Result<Stored, WriteError>>> =
            VecDeque::with_capacity(OUTSTANDING);
        for (agent, report) in reports {
            if pending.len() == OUTSTANDING {
                let done = pending.pop_front().expect("a pending report");
                done.await.expect("stored").expect("stored");
            }
            let received = report.collected_at_unix_ms + 500;
            pending.push_back(writer.store_report(ids[agent], report, 0, received).await);
        }
        for done in pending {
            done.await.expect("stored").expect("stored");
        }
        let ingest = started.elapsed();
        stop.cancel();
        let mut rolled = rollups.await.expect("rollups ran");
        // What the passes did not reach yet is part of the cost.
        let now = chrono::Utc::now().timestamp_millis();
        rolled += maintenance::run_pass(&writer, now, &RetentionConfig::default())
            .await
            .expect("last pass")
            .rows;
        let total = started.elapsed();
        drop(writer);
        thread.join();
        println!(
            "  reports stored in {:.2} s; with every sample rolled up {:.2} s",
            ingest.as_secs_f64(),
            total.as_secs_f64()
        );
        (total, rolled)
    });
    let secs = elapsed.as_secs_f64();
    println!(
        "writer: {:.0} sample rows/s ({:.0} reports/s), {:.2} us per row; rollups folded {rollup_rows} rows",
        rows as f64 / secs,
        (rows / samples.max(1)) as f64 / secs,
        secs * 1e6 / rows.max(1) as f64
    );
}
