//! `loadsim`: thousands of simulated agents on real mTLS gRPC streams from
//! one process, against a running collector; prints progress every 10 s and
//! a summary (sustained rates, ack latency percentiles, errors by kind).
//!
//! The simulated agents' identities are made by `--enroll` (batch
//! enrollment straight into the collector's data directory; see
//! `xunjian_tests::load::enroll_batch`) and saved for later runs.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use clap::Parser;
use tokio_util::sync::CancellationToken;
use xunjian_tests::load::{self, FD_HEADROOM, SimConfig, SimEvent};

/// Simulates a fleet of agents streaming to a collector.
#[derive(Debug, Parser)]
#[command(name = "loadsim")]
struct Args {
    /// The collector's URL.
    #[arg(long, env = "XUNJIAN_LOADSIM_COLLECTOR")]
    collector: String,
    /// The collector's data directory (its CA signs the simulated agents).
    #[arg(long, env = "XUNJIAN_LOADSIM_DATA_DIR")]
    data_dir: PathBuf,
    /// Simulated agents.
    #[arg(long, env = "XUNJIAN_LOADSIM_AGENTS", default_value_t = 1000)]
    agents: usize,
    /// Time between one agent's reports.
    #[arg(long, env = "XUNJIAN_LOADSIM_INTERVAL", default_value = "10s", value_parser = humantime::parse_duration)]
    interval: Duration,
    /// Length of the measured steady state, after the ramp-up.
    #[arg(long, env = "XUNJIAN_LOADSIM_DURATION", default_value = "60s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Metric samples per report.
    #[arg(long, env = "XUNJIAN_LOADSIM_SAMPLES", default_value_t = 100)]
    samples: usize,
    /// Check results per report.
    #[arg(long, env = "XUNJIAN_LOADSIM_CHECKS", default_value_t = 10)]
    checks: usize,
    /// New connections per second during the ramp-up.
    #[arg(long, env = "XUNJIAN_LOADSIM_RAMP_RATE", default_value_t = 250)]
    ramp_rate: u32,
    /// How long agents wait for their last acks after the window.
    #[arg(long, env = "XUNJIAN_LOADSIM_DRAIN", default_value = "30s", value_parser = humantime::parse_duration)]
    drain: Duration,
    /// Enroll `--agents` new simulated agents first (and save them to
    /// `--agents-file`); without it, the agents saved there are used.
    #[arg(long, env = "XUNJIAN_LOADSIM_ENROLL")]
    enroll: bool,
    /// Where simulated agents' credentials are saved. Default:
    /// DATA_DIR/loadsim-agents.json.
    #[arg(long, env = "XUNJIAN_LOADSIM_AGENTS_FILE")]
    agents_file: Option<PathBuf>,
    /// Also print the summary as one JSON line (last line of stdout).
    #[arg(long, env = "XUNJIAN_LOADSIM_JSON")]
    json: bool,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    match run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("loadsim: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> anyhow::Result<()> {
    let limit = load::raise_fd_limit(args.agents as u64 + FD_HEADROOM)?;
    eprintln!("open-file limit {limit}");
    let agents_file = args
        .agents_file
        .clone()
        .unwrap_or_else(|| args.data_dir.join("loadsim-agents.json"));
    let agents = if args.enroll {
        let (data_dir, url, count) = (args.data_dir.clone(), args.collector.clone(), args.agents);
        let enrolled = tokio::task::spawn_blocking(move || {
            load::enroll_batch(&data_dir, &url, count, unix_ms())
        })
        .await
        .context("the enrollment thread failed")??;
        eprintln!(
            "enrolled {} agents in {:.2} s (keys and certificates {:.2} s, database {:.2} s)",
            enrolled.agents.len(),
            enrolled.total().as_secs_f64(),
            enrolled.keys_and_certs.as_secs_f64(),
            enrolled.database.as_secs_f64()
        );
        load::save_agents(&agents_file, &enrolled.agents)?;
        enrolled.agents
    } else {
        load::load_agents(&agents_file, args.agents, &args.collector)?
    };

    let config = SimConfig {
        collector_url: args.collector.clone(),
        interval: args.interval,
        duration: args.duration,
        samples: args.samples,
        checks: args.checks,
        ramp_rate: args.ramp_rate,
        drain: args.drain,
        progress_every: Duration::from_secs(10),
    };
    let cancel = CancellationToken::new();
    let on_signal = cancel.clone();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            eprintln!("interrupted: ending the window now");
            on_signal.cancel();
        }
    });
    let started = Instant::now();
    let summary = load::simulate(config, agents, cancel, |event| match event {
        SimEvent::SteadyStart => eprintln!(
            "[{:>5.0}s] ramp-up done; measuring for {}",
            started.elapsed().as_secs_f64(),
            humantime::format_duration(args.duration)
        ),
        SimEvent::Progress(p) => eprintln!("{p}"),
        SimEvent::SteadyEnd => eprintln!(
            "[{:>5.0}s] window over; draining",
            started.elapsed().as_secs_f64()
        ),
    })
    .await;
    println!("{summary}");
    if args.json {
        println!("{}", serde_json::to_string(&summary)?);
    }
    Ok(())
}

fn unix_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}
