//! Command-line interface of `xunjian-agent` (clap derive; every flag also
//! readable from an environment variable).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use xunjian_proto::Report;

use crate::collect::SystemCollector;
use crate::collect::plan::{self, Plan};
use crate::config::AgentConfig;
use crate::logging::{self, LogFormat};
use crate::{EXIT_CONFIG, enroll, runner, signals};

/// Xunjian agent: collects this host's inspection facts and streams them to
/// the collector.
#[derive(Debug, Parser)]
#[command(name = "xunjian-agent", version, propagate_version = true)]
pub struct Cli {
    /// Log format.
    #[arg(long, global = true, env = "XUNJIAN_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Log level or filter (RUST_LOG overrides it).
    #[arg(long, global = true, env = "XUNJIAN_LOG", default_value = "info")]
    pub log_level: String,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the agent: collect on schedule and stream to the collector.
    Run {
        /// Agent configuration file (TOML).
        #[arg(long, short, env = "XUNJIAN_AGENT_CONFIG")]
        config: PathBuf,
    },
    /// Enroll this host with a collector using a one-time token.
    Enroll {
        /// The collector's address, https://HOST:PORT.
        #[arg(long, env = "XUNJIAN_COLLECTOR")]
        collector: String,
        /// The token printed by `xunjian token create`.
        #[arg(long, env = "XUNJIAN_TOKEN")]
        token: String,
        /// Where to store the key and certificate; defaults to the
        /// `data_dir` of --config, else /var/lib/xunjian-agent.
        #[arg(long, env = "XUNJIAN_AGENT_DATA_DIR")]
        data_dir: Option<PathBuf>,
        /// Agent configuration file whose data_dir to use.
        #[arg(long, short, env = "XUNJIAN_AGENT_CONFIG")]
        config: Option<PathBuf>,
        /// Name to verify the collector's certificate against, when it
        /// differs from the host in --collector.
        #[arg(long, env = "XUNJIAN_SERVER_NAME")]
        server_name: Option<String>,
    },
    /// Collect everything once and print the report; sends nothing.
    Check {
        /// Print JSON (the report as it would be sent).
        #[arg(long)]
        json: bool,
        /// Agent configuration (custom checks, antivirus products, areas);
        /// defaults apply without it.
        #[arg(long, short, env = "XUNJIAN_AGENT_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Check a configuration file and exit (64 when it is invalid).
    Validate {
        #[arg(long, short, env = "XUNJIAN_AGENT_CONFIG")]
        config: PathBuf,
    },
}

/// Runs a parsed command line; returns the process exit code.
pub async fn run(cli: Cli) -> ExitCode {
    logging::init(cli.log_format, &cli.log_level);
    match cli.command {
        Command::Validate { config } => match AgentConfig::load(&config) {
            Ok(_) => {
                println!("{}: ok", config.display());
                ExitCode::SUCCESS
            }
            Err(e) => config_error(e),
        },
        Command::Check { json, config } => {
            let config = match config.map(|c| AgentConfig::load(&c)).transpose() {
                Ok(c) => c.unwrap_or_else(|| {
                    AgentConfig::with_data_dir(crate::config::default_data_dir())
                }),
                Err(e) => return config_error(e),
            };
            check(json, config).await
        }
        Command::Enroll {
            collector,
            token,
            data_dir,
            config,
            server_name,
        } => {
            let data_dir = match (data_dir, config) {
                (Some(d), _) => d,
                (None, Some(c)) => match AgentConfig::load(&c) {
                    Ok(c) => c.data_dir,
                    Err(e) => return config_error(e),
                },
                (None, None) => crate::config::default_data_dir(),
            };
            match enroll::enroll(&data_dir, &collector, &token, server_name.as_deref()).await {
                Ok(creds) => {
                    println!(
                        "enrolled as agent {} with {}; credentials in {}",
                        creds.agent_id,
                        creds.collector_url,
                        data_dir.display()
                    );
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("xunjian-agent: enrollment failed: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Run { config } => {
            let config = match AgentConfig::load(&config) {
                Ok(c) => c,
                Err(e) => return config_error(e),
            };
            let stop = signals::shutdown_token();
            match runner::start(&config, stop).await {
                Ok(agent) => {
                    agent.wait().await;
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("xunjian-agent: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

async fn check(json: bool, config: AgentConfig) -> ExitCode {
    let report = tokio::task::spawn_blocking(move || {
        let plan = Plan::from_config(&config);
        let mut c = SystemCollector::new();
        // CPU usage is measured between two refreshes; a one-shot over the
        // 200 ms minimum mostly sees this process starting up.
        std::thread::sleep(std::time::Duration::from_secs(1));
        Report {
            sequence: 0,
            collected_at_unix_ms: chrono::Utc::now().timestamp_millis(),
            sections: plan::everything(&mut c, &plan),
            ..Default::default()
        }
    })
    .await;
    let Ok(report) = report else {
        eprintln!("xunjian-agent: collection failed");
        return ExitCode::FAILURE;
    };
    if json {
        match serde_json::to_string_pretty(&report) {
            Ok(text) => println!("{text}"),
            Err(e) => {
                eprintln!("xunjian-agent: cannot encode the report: {e}");
                return ExitCode::FAILURE;
            }
        }
    } else {
        print_summary(&report);
    }
    ExitCode::SUCCESS
}

fn print_summary(report: &Report) {
    use xunjian_proto::section::Kind;
    // Who and what first, then measurements, then verdicts.
    let order = |s: &&xunjian_proto::Section| match s.kind {
        Some(Kind::Inventory(_)) => 0,
        Some(Kind::Metrics(_)) => 1,
        _ => 2,
    };
    let mut sections: Vec<&xunjian_proto::Section> = report.sections.iter().collect();
    sections.sort_by_key(order);
    for s in sections {
        match &s.kind {
            Some(Kind::Inventory(i)) => {
                println!("host      {}", i.hostname);
                println!(
                    "os        {} {} (kernel {}, {})",
                    i.os_name, i.os_version, i.kernel_version, i.arch
                );
                println!("cpu       {} x{}", i.cpu_model, i.cpu_logical);
            }
            Some(Kind::Metrics(b)) => {
                for m in &b.metrics {
                    let labels = crate::collect::labels_text(&m.labels);
                    println!("{:<24}{:>16.2} {}", m.name, m.value, labels);
                }
            }
            Some(Kind::Checks(c)) => {
                for r in &c.results {
                    // An unknown carries no value; its reason is the point.
                    let text = if r.reason.is_empty() {
                        &r.value
                    } else {
                        &r.reason
                    };
                    println!(
                        "{:<40} {:<8} {}",
                        r.check_id,
                        format!("{:?}", r.status()),
                        text
                    );
                }
            }
            None => {}
        }
    }
}

fn config_error(e: crate::config::ConfigError) -> ExitCode {
    eprintln!("xunjian-agent: {e}");
    ExitCode::from(EXIT_CONFIG)
}
