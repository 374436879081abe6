//! Soak: the collector process SIGKILLed under load, cycle after cycle (the
//! long variant of `sigkilled_collector_loses_no_acked_report_and_stores_none_twice`).
//! Agents stream continuously; each cycle kills the collector once the
//! agents have received a random number of further acks, restarts it on the
//! same data, and checks against the database that every report any agent
//! had acknowledged is stored, none twice and none half.
//!
//! Run: `cargo bench -p xunjian-tests --bench soak`. `XUNJIAN_SOAK_CYCLES`
//! (default 10) sets the cycles, `XUNJIAN_SOAK_SEED` replays a run's kill
//! points. Prints one line per cycle and a summary; exits non-zero (keeping
//! its directory and logs) if any cycle found a problem.

use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use uuid::Uuid;
use xunjian_tests::*;

const HARNESS: &str = env!("CARGO_BIN_EXE_xunjian-harness");
const AGENTS: usize = 4;
/// Acks (over all agents) between a restart and the next kill, at most.
const MAX_ACKS_BEFORE_KILL: u64 = 600;

#[tokio::main]
async fn main() -> ExitCode {
    let cycles: usize = std::env::var("XUNJIAN_SOAK_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10);
    let mut rng = TestRng::from_env_or_time("XUNJIAN_SOAK_SEED");
    let dir = tempfile::tempdir().expect("a temporary directory");
    let mut collector = CollectorProcess::start(Path::new(HARNESS), dir.path()).await;
    let url = collector.url();

    let mut agents = Vec::new();
    for i in 0..AGENTS {
        let agent_dir = dir.path().join(format!("agent-{i}"));
        enroll_agent(&collector.data, &url, &agent_dir).await;
        // Inode usage only (statvfs, no CPU sampling): a report every ~10 ms.
        let mut config = agent_config(&agent_dir, &url, Duration::from_millis(10));
        config.collect.areas = vec!["disks".into()];
        agents.push(TestAgent::start(&config).await);
    }
    let total_acked = |agents: &[TestAgent]| agents.iter().map(TestAgent::acked).sum::<u64>();

    println!(
        "soak: {cycles} cycles, {AGENTS} agents at 10 ms, data in {}",
        dir.path().display()
    );
    println!("cycle  kill-after-acks  acked-total  stored-total  restart-ms  resume-ms  problems");
    let mut failed_cycles = 0;
    let started = Instant::now();
    for cycle in 1..=cycles {
        let more = rng.between(1, MAX_ACKS_BEFORE_KILL);
        let base = total_acked(&agents);
        wait_until("the agents to receive more acks", || {
            total_acked(&agents) >= base + more
        })
        .await;
        collector.kill9();
        // Acks already on their way are still valid: read the watermarks
        // after the kill, so none is left out.
        let acked: Vec<(Uuid, u64)> = agents
            .iter()
            .map(|a| (a.handle.agent_id(), a.acked()))
            .collect();

        let restart = Instant::now();
        collector.restart().await;
        let restart_ms = restart.elapsed().as_millis();
        for (agent, &(_, before)) in agents.iter().zip(&acked) {
            agent.wait_acked(before + 1).await;
        }
        let resume_ms = restart.elapsed().as_millis();

        let conn = db(&collector.data);
        let problems = ack_problems(&conn, &acked);
        let stored = count(&conn, "SELECT count(*) FROM reports");
        let acked_total: u64 = acked.iter().map(|(_, a)| a).sum();
        println!(
            "{cycle:>5}  {more:>15}  {acked_total:>11}  {stored:>12}  {restart_ms:>10}  {resume_ms:>9}  {}",
            if problems.is_empty() {
                "none".to_owned()
            } else {
                problems.join("; ")
            }
        );
        if !problems.is_empty() {
            failed_cycles += 1;
        }
    }

    let acked: Vec<(Uuid, u64)> = agents
        .iter()
        .map(|a| (a.handle.agent_id(), a.acked()))
        .collect();
    for agent in agents {
        agent.stop().await;
    }
    collector.kill9();
    let conn = db(&collector.data);
    let final_problems = ack_problems(&conn, &acked);
    println!(
        "soak summary: {cycles} cycles in {:.1} s, {} collector runs, {} reports acknowledged, {} stored, {failed_cycles} cycle(s) with problems{}",
        started.elapsed().as_secs_f64(),
        collector.runs(),
        acked.iter().map(|(_, a)| a).sum::<u64>(),
        count(&conn, "SELECT count(*) FROM reports"),
        if final_problems.is_empty() {
            String::new()
        } else {
            format!("; at the end: {}", final_problems.join("; "))
        }
    );
    if failed_cycles > 0 || !final_problems.is_empty() {
        println!("logs kept in {}", dir.keep().display());
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
