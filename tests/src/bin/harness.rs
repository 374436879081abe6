//! Test harness binary: `xunjian-harness collector ARGS…` runs the `xunjian`
//! CLI and `xunjian-harness agent ARGS…` the `xunjian-agent` CLI, so the
//! integration tests can run (and SIGKILL) real collector and agent
//! processes built from this workspace's libraries.

use std::process::ExitCode;

use clap::Parser;

#[tokio::main]
async fn main() -> ExitCode {
    let mut args: Vec<String> = std::env::args().collect();
    let role = if args.len() > 1 {
        args.remove(1)
    } else {
        String::new()
    };
    match role.as_str() {
        "collector" => {
            xunjian_collector::cli::run(xunjian_collector::cli::Cli::parse_from(args)).await
        }
        "agent" => xunjian_agent::cli::run(xunjian_agent::cli::Cli::parse_from(args)).await,
        _ => {
            eprintln!("usage: xunjian-harness collector|agent ARGS...");
            ExitCode::from(64)
        }
    }
}
