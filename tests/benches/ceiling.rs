//! The raw SQLite ceiling for metric samples: the fastest batched insert of
//! the simulator's sample rows into the collector's own schema and pragmas,
//! with no gRPC, TLS or per-report work. End-to-end ingest rates (the
//! `scale` benchmark, `loadsim`) are judged against it.
//!
//! Run: `cargo bench -p xunjian-tests --bench ceiling`. Settings:
//! `XUNJIAN_CEILING_AGENTS` (default 1000), `XUNJIAN_CEILING_SAMPLES` (series
//! per agent, default 100), `XUNJIAN_CEILING_ROUNDS` (reports per agent
//! inserted per batch size, default 3), `XUNJIAN_CEILING_DIR` (where the
//! temporary databases go; default the system temp dir: use the disk the
//! collector's data lives on). It measures and prints; it asserts nothing.

use xunjian_tests::load::{self, CEILING_BATCHES};

fn main() {
    let agents = load::env_or("XUNJIAN_CEILING_AGENTS", 1000);
    let samples = load::env_or("XUNJIAN_CEILING_SAMPLES", 100);
    let rounds = load::env_or("XUNJIAN_CEILING_ROUNDS", 3);
    let base = std::env::var_os("XUNJIAN_CEILING_DIR").map_or_else(std::env::temp_dir, Into::into);
    let dir = tempfile::tempdir_in(&base).expect("a temporary directory");
    let rows = load::ceiling_rows(agents, samples, rounds);
    println!(
        "SQLite sample-insert ceiling: {agents} agents x {samples} series, {rows} rows per batch size, in {}",
        base.display()
    );
    let runs = load::sqlite_ceiling(dir.path(), agents, samples, rows, &CEILING_BATCHES)
        .unwrap_or_else(|e| panic!("ceiling run failed: {e}"));
    for run in &runs {
        println!(
            "  {:>6} rows per transaction: {:>10.0} rows/s ({:.2} s)",
            run.batch_rows,
            run.rows_per_s(),
            run.seconds
        );
    }
    if let Some(best) = load::best_ceiling(&runs) {
        println!(
            "ceiling: {:.0} sample rows/s (batches of {})",
            best.rows_per_s(),
            best.batch_rows
        );
    }
}
