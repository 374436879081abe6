//! `xunjian`: parses arguments and hands over to the library.

use clap::Parser;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    xunjian_collector::cli::run(xunjian_collector::cli::Cli::parse()).await
}
