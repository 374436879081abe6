//! `xunjian-agent`: parses arguments and hands over to the library.

use clap::Parser;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    xunjian_agent::cli::run(xunjian_agent::cli::Cli::parse()).await
}
