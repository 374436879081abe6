//! `xunjian`: parses arguments and hands over to the library.

use clap::Parser;

/// mimalloc rather than the system allocator: with 10,000 agent streams
/// allocating on the runtime's threads and the writer thread freeing, glibc
/// malloc kept about a third more memory resident than was in use.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    xunjian_collector::cli::run(xunjian_collector::cli::Cli::parse()).await
}
