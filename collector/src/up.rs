//! `xunjian up`: the quick start. A collector on the embedded database plus
//! an agent for this machine, enrolled through the real enrollment path
//! (token, CSR, pinned CA) on loopback. Ctrl-C stops the agent first (so it
//! can deliver what it holds), then the collector.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio_util::sync::CancellationToken;
use xunjian_agent::config::AgentConfig;
use xunjian_agent::enroll::{self, Credentials};
use xunjian_agent::{runner, signals};

use crate::clock::{Clock, SystemClock};
use crate::config::CollectorConfig;
use crate::server::Collector;
use crate::store;

pub async fn up(
    mut config: CollectorConfig,
    listen: SocketAddr,
    interval: Duration,
) -> anyhow::Result<()> {
    config.server.listen = listen;
    let signal = signals::shutdown_token();
    let collector_stop = CancellationToken::new();
    let collector = Collector::start(&config, Arc::new(SystemClock), collector_stop.clone())
        .await
        .with_context(|| {
            format!(
                "cannot start the collector (data in {})",
                config.storage.data_dir.display()
            )
        })?;
    let url = format!("https://127.0.0.1:{}", collector.addr().port());

    let agent_dir = config.storage.data_dir.join("local-agent");
    ensure_enrolled(&config, &agent_dir, &url, collector.ca_fingerprint()).await?;
    let mut agent_config = AgentConfig::with_data_dir(agent_dir);
    agent_config.collector = Some(url.clone());
    agent_config.collect.metrics_interval = interval;
    let agent_stop = CancellationToken::new();
    let agent = runner::start(&agent_config, agent_stop.clone()).await?;

    println!(
        "xunjian is up: collector on {url}, local agent {}",
        agent.agent_id()
    );
    println!("data directory: {}", config.storage.data_dir.display());
    println!("in another terminal: xunjian hosts   (Ctrl-C here stops both)");

    signal.cancelled().await;
    agent_stop.cancel();
    agent.wait().await;
    collector_stop.cancel();
    collector.wait().await?;
    Ok(())
}

/// Enrolls the local agent unless it already is, with a one-use token. An
/// agent whose enrollment this database does not know (the database was
/// removed) is enrolled afresh.
async fn ensure_enrolled(
    config: &CollectorConfig,
    agent_dir: &std::path::Path,
    url: &str,
    ca_fingerprint: &str,
) -> anyhow::Result<()> {
    let db = config.database_path();
    if let Some(creds) = Credentials::load(agent_dir)? {
        let conn = store::open_read_only(&db)?;
        if store::agent_auth(&conn, creds.agent_id)?.is_some_and(|a| !a.revoked) {
            return Ok(());
        }
        tracing::warn!(agent = %creds.agent_id, "local agent unknown to this database; enrolling it again");
        std::fs::remove_dir_all(agent_dir)
            .with_context(|| format!("removing {}", agent_dir.display()))?;
    }
    let mut conn = store::open(&db)?;
    let token = store::create_token(
        &mut conn,
        SystemClock.now_ms(),
        10 * 60 * 1000,
        1,
        "xunjian up",
        "local agent",
    )?;
    drop(conn);
    let text = xunjian_proto::token::format(&token.secret, ca_fingerprint);
    enroll::enroll(agent_dir, url, &text, None)
        .await
        .context("enrolling the local agent")?;
    Ok(())
}
