//! The storage writer alone: the simulator's reports (100 samples and 10
//! check results each, agents in random order, as a fleet sends them) fed
//! straight into the collector's writer thread, with the collector's
//! minute-ly maintenance pass asked for every six rounds (a minute of a
//! fleet reporting every 10 s). No TLS, gRPC or rules: this is the most the
//! collector's storage can take, between the raw SQLite ceiling (`ceiling`)
//! and end-to-end ingest (`scale`).
//!
//! The database is given history first (untimed): a store that is fast only
//! while its tables are young would fall behind an hour into production.
//! Then, separately timed, the hourly rollup of everything stored.
//!
//! Run: `cargo bench -p xunjian-tests --bench writer`. Settings:
//! `XUNJIAN_WRITER_AGENTS` (default 10000), `XUNJIAN_WRITER_SAMPLES` (series
//! per report, default 100), `XUNJIAN_WRITER_HISTORY` (rounds stored before
//! the clock starts, after the first that creates the series; default 60,
//! ten minutes of a fleet), `XUNJIAN_WRITER_ROUNDS` (timed rounds, default
//! 12), `XUNJIAN_WRITER_DIR` (where the database goes; default the system
//! temp dir). It measures and prints; it asserts nothing.

use std::collections::VecDeque;
use std::time::Instant;

use tokio::sync::{mpsc, oneshot};

use rand::seq::SliceRandom;
use xunjian_collector::maintenance::{self, HOUR_MS, RetentionConfig};
use xunjian_collector::store::{Stored, WriteError, WriterHandle};
use xunjian_proto::{CheckResult, CheckResults, Metric, MetricBatch, Report, Section, section};
use xunjian_tests::load::{self, SeriesSpec};

// As in the `xunjian` binary: the allocator is part of the writer's cost.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Reports queued in the writer at once, at most (the collector's streams
/// keep about this many waiting under load).
const OUTSTANDING: usize = 1024;
/// Report rounds in one minute of fleet time (agents report every 10 s).
const ROUNDS_PER_MINUTE: usize = 6;
const INTERVAL_MS: i64 = 10_000;

struct Fleet {
    ids: Vec<uuid::Uuid>,
    series: Vec<SeriesSpec>,
    checks: Vec<CheckResult>,
    base_ms: i64,
}

impl Fleet {
    fn report(&self, agent: usize, seq: u64) -> Report {
        let metrics = self
            .series
            .iter()
            .enumerate()
            .map(|(i, s)| Metric {
                value: (agent * 31 + i) as f64 + seq as f64 / 10.0,
                ..s.metric.clone()
            })
            .collect();
        Report {
            sequence: seq,
            collected_at_unix_ms: self.base_ms + seq as i64 * INTERVAL_MS,
            sections: vec![
                Section {
                    kind: Some(section::Kind::Metrics(MetricBatch { metrics })),
                },
                Section {
                    kind: Some(section::Kind::Checks(CheckResults {
                        results: self.checks.clone(),
                    })),
                },
            ],
            ..Default::default()
        }
    }

    /// Stores rounds `rounds` (sequence = round + 1), each in a random
    /// agent order, asking for a maintenance pass every fleet minute.
    async fn store_rounds(
        &self,
        writer: &WriterHandle,
        rounds: std::ops::Range<usize>,
        minute: &mpsc::UnboundedSender<()>,
    ) {
        let mut rng = rand::rng();
        let mut order: Vec<usize> = (0..self.ids.len()).collect();
        let mut pending: VecDeque<oneshot::Receiver<Result<Stored, WriteError>>> =
            VecDeque::with_capacity(OUTSTANDING);
        for round in rounds {
            if round > 0 && round % ROUNDS_PER_MINUTE == 0 {
                let _ = minute.send(());
            }
            order.shuffle(&mut rng);
            for &agent in &order {
                if pending.len() == OUTSTANDING {
                    let done = pending.pop_front().expect("a pending report");
                    done.await.expect("stored").expect("stored");
                }
                let report = self.report(agent, round as u64 + 1);
                let received = report.collected_at_unix_ms + 500;
                pending.push_back(
                    writer
                        .store_report(self.ids[agent], report, 0, received)
                        .await,
                );
            }
        }
        for done in pending {
            done.await.expect("stored").expect("stored");
        }
    }
}

fn main() {
    let agents = load::env_or("XUNJIAN_WRITER_AGENTS", 10_000);
    let samples = load::env_or("XUNJIAN_WRITER_SAMPLES", 100);
    let history = load::env_or("XUNJIAN_WRITER_HISTORY", 60);
    let timed = load::env_or("XUNJIAN_WRITER_ROUNDS", 12).max(1);
    let base = std::env::var_os("XUNJIAN_WRITER_DIR").map_or_else(std::env::temp_dir, Into::into);
    let dir = tempfile::tempdir_in(&base).expect("a temporary directory");
    let path = dir.path().join("writer.db");
    let total = 1 + history + timed;
    let fleet = Fleet {
        ids: load::insert_sim_agents(&path, agents).expect("agents inserted"),
        series: load::host_series(samples),
        checks: load::host_checks(10),
        // The last round is collected now, as in a running fleet.
        base_ms: chrono::Utc::now().timestamp_millis() - total as i64 * INTERVAL_MS,
    };
    let rows = timed * agents * samples;
    println!(
        "storage writer: {agents} agents, reports of {samples} samples and {} checks; \
         1 round creating the series and {history} of history untimed, then {timed} timed ({rows} samples), in {}",
        fleet.checks.len(),
        base.display()
    );

    let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime");
    runtime.block_on(async move {
        let (writer, thread) =
            xunjian_collector::store::Writer::spawn(&path, None).expect("writer starts");
        // The collector's checkpointer, without which the WAL would grow
        // without bound: part of storage's cost.
        let stop = tokio_util::sync::CancellationToken::new();
        let checkpoints = tokio::spawn(xunjian_collector::server::checkpointer(
            path.clone(),
            writer.clone(),
            stop.clone(),
        ));
        let (minute_tx, mut minute_rx) = mpsc::unbounded_channel::<()>();
        let passes = {
            let writer = writer.clone();
            tokio::spawn(async move {
                let retention = RetentionConfig::default();
                while minute_rx.recv().await.is_some() {
                    let now = chrono::Utc::now().timestamp_millis();
                    maintenance::run_pass(&writer, now, &retention)
                        .await
                        .expect("maintenance pass");
                }
            })
        };
        let started = Instant::now();
        fleet.store_rounds(&writer, 0..1 + history, &minute_tx).await;
        println!(
            "  series and history stored in {:.1} s",
            started.elapsed().as_secs_f64()
        );
        let started = Instant::now();
        fleet.store_rounds(&writer, 1 + history..total, &minute_tx).await;
        let secs = started.elapsed().as_secs_f64();
        drop(minute_tx);
        passes.await.expect("passes ran");
        println!(
            "writer: {:.0} samples/s ({:.0} reports/s), {:.2} us per sample",
            rows as f64 / secs,
            (timed * agents) as f64 / secs,
            secs * 1e6 / rows.max(1) as f64
        );
        // The hourly rollups of everything stored, as if the hours had
        // closed: what the collector does once an hour, here all at once.
        let started = Instant::now();
        let far = fleet.base_ms + (total as i64 + 1) * INTERVAL_MS + 2 * HOUR_MS;
        let step = maintenance::run_pass(&writer, far, &RetentionConfig::default())
            .await
            .expect("rollups");
        let secs = started.elapsed().as_secs_f64();
        // Per fleet hour: 360 rounds of every agent's samples.
        let per_sample = secs / step.rows.max(1) as f64;
        println!(
            "rollups: {} samples (and presence rows) folded in {secs:.1} s: {:.2} us a sample, {:.0} s of writer time per hour of this fleet",
            step.rows,
            per_sample * 1e6,
            per_sample * (360 * agents * samples) as f64
        );
        stop.cancel();
        checkpoints.await.expect("checkpointer stopped");
        drop(writer);
        thread.join();
    });
}
