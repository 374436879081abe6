//! The running agent: a collection loop that writes each report to the spool,
//! and a sender loop that streams the spool to the collector, reconnecting
//! with backoff. Each loop runs in its own task with its own span.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use prost::Message;
use tokio::sync::{Notify, mpsc, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;
use uuid::Uuid;
use xunjian_proto::{Hello, Policy, Report, Section, section};

use crate::backoff::Backoff;
use crate::collect::SystemCollector;
use crate::collect::plan::{self, Plan};
use crate::collect::plugins::PluginSchedule;
use crate::config::AgentConfig;
use crate::enroll::Credentials;
use crate::spool::{Spool, SpoolError, SpoolStatus};
use crate::transport::{self, Link};

/// How long a stopping agent keeps trying to deliver what is spooled.
pub const DRAIN_GRACE: Duration = Duration::from_secs(5);
/// Pending run-now requests, at most (one is enough: it collects everything).
const RUN_NOW_CAPACITY: usize = 1;

/// Why the agent could not start.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("this agent is not enrolled (no credentials in {0}); run `xunjian-agent enroll` first")]
    NotEnrolled(PathBuf),
    #[error(transparent)]
    Enroll(#[from] crate::enroll::EnrollError),
    #[error("cannot open the spool: {0}")]
    Spool(#[from] SpoolError),
}

/// A started agent.
pub struct AgentHandle {
    agent_id: Uuid,
    spool: Arc<Mutex<Spool>>,
    acked: watch::Receiver<u64>,
    run_now: mpsc::Sender<String>,
    collection: JoinHandle<()>,
    checks: JoinHandle<()>,
    sender: JoinHandle<()>,
}

impl AgentHandle {
    pub fn agent_id(&self) -> Uuid {
        self.agent_id
    }

    /// The highest sequence the collector has acknowledged.
    pub fn acked(&self) -> watch::Receiver<u64> {
        self.acked.clone()
    }

    /// The spool's counters.
    pub fn spool_status(&self) -> SpoolStatus {
        transport::lock(&self.spool).status()
    }

    /// Asks for a full collection now, as a collector's RunNow does. False
    /// when one is already pending.
    pub fn collect_now(&self, request_id: &str) -> bool {
        self.run_now.try_send(request_id.to_owned()).is_ok()
    }

    /// Waits for both loops to end (after the shutdown token is cancelled).
    pub async fn wait(self) {
        let _ = self.collection.await;
        let _ = self.checks.await;
        let _ = self.sender.await;
        tracing::info!("agent stopped");
    }
}

/// Starts an enrolled agent. Cancel `stop` to stop collecting, deliver what
/// can be delivered within [`DRAIN_GRACE`], and end.
pub async fn start(
    config: &AgentConfig,
    stop: CancellationToken,
) -> Result<AgentHandle, AgentError> {
    let creds = Credentials::load(&config.data_dir)?
        .ok_or_else(|| AgentError::NotEnrolled(config.data_dir.clone()))?;
    let spool_dir = config.data_dir.join("spool");
    let max = config.spool.max_bytes;
    let (spool, recovery) = tokio::task::spawn_blocking(move || Spool::open(&spool_dir, max))
        .await
        .map_err(|e| SpoolError::Io {
            path: config.data_dir.join("spool"),
            source: std::io::Error::other(e.to_string()),
        })??;
    if recovery.truncated_bytes > 0 || recovery.lost_records > 0 {
        tracing::warn!(
            truncated_bytes = recovery.truncated_bytes,
            lost_records = recovery.lost_records,
            "spool recovered after an unclean stop"
        );
    }
    let status = spool.status();
    tracing::info!(agent = %creds.agent_id, pending = status.pending_reports, last_seq = status.last_seq, "agent starting");
    let spool = Arc::new(Mutex::new(spool));
    let new_data = Arc::new(Notify::new());
    let (acked_tx, acked_rx) = watch::channel(status.acked_seq);
    let (policy_tx, policy_rx) = watch::channel::<Option<Policy>>(None);
    let (run_now_tx, run_now_rx) = mpsc::channel(RUN_NOW_CAPACITY);
    let agent_id = creds.agent_id;

    let collection = tokio::spawn(
        collection_loop(
            agent_id,
            spool.clone(),
            new_data.clone(),
            config.clone(),
            policy_rx.clone(),
            run_now_rx,
            stop.clone(),
        )
        .instrument(tracing::info_span!("collect", agent = %agent_id)),
    );
    let checks = tokio::spawn(
        checks_loop(
            agent_id,
            spool.clone(),
            new_data.clone(),
            config.clone(),
            policy_rx.clone(),
            stop.clone(),
        )
        .instrument(tracing::info_span!("checks", agent = %agent_id)),
    );
    let link = Link {
        spool: spool.clone(),
        new_data,
        acked: acked_tx,
        policy: policy_tx,
        run_now: run_now_tx.clone(),
    };
    let sender = tokio::spawn(
        sender_loop(config.clone(), creds, link, stop)
            .instrument(tracing::info_span!("send", agent = %agent_id)),
    );
    Ok(AgentHandle {
        agent_id,
        spool,
        acked: acked_rx,
        run_now: run_now_tx,
        collection,
        checks,
        sender,
    })
}

async fn collection_loop(
    agent_id: Uuid,
    spool: Arc<Mutex<Spool>>,
    new_data: Arc<Notify>,
    config: AgentConfig,
    mut policy: watch::Receiver<Option<Policy>>,
    mut run_now: mpsc::Receiver<String>,
    stop: CancellationToken,
) {
    let collector = match tokio::task::spawn_blocking(SystemCollector::new).await {
        Ok(c) => Arc::new(Mutex::new(c)),
        Err(e) => {
            tracing::error!(error = %e, "cannot start the system collector");
            return;
        }
    };
    let plan = Arc::new(Plan::from_config(&config));
    let mut metrics_every = config.collect.metrics_interval;
    let mut inventory_every = config.collect.inventory_interval;
    let mut ticker = tokio::time::interval(metrics_every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_inventory: Option<Instant> = None;
    loop {
        let request_id = tokio::select! {
            _ = stop.cancelled() => break,
            _ = ticker.tick() => String::new(),
            Some(id) = run_now.recv() => id,
            Ok(()) = policy.changed() => {
                let p = policy.borrow_and_update().clone().unwrap_or_default();
                let m = Duration::from_secs(u64::from(p.metrics_interval_s));
                if p.metrics_interval_s > 0 && m != metrics_every {
                    tracing::info!(interval = ?m, "collector policy sets the metrics interval");
                    metrics_every = m;
                    ticker = tokio::time::interval_at(tokio::time::Instant::now() + m, m);
                    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                }
                if p.inventory_interval_s > 0 {
                    inventory_every = Duration::from_secs(u64::from(p.inventory_interval_s));
                }
                continue;
            }
        };
        let run_now = !request_id.is_empty();
        let with_inventory =
            !run_now && last_inventory.is_none_or(|t| t.elapsed() >= inventory_every);
        let enabled = policy
            .borrow()
            .as_ref()
            .map(|p| p.enabled_collectors.clone())
            .unwrap_or_default();
        let p = Arc::new(plan.restricted_to(&enabled));
        let (c, s) = (collector.clone(), spool.clone());
        let result = tokio::task::spawn_blocking(move || {
            let mut c = c.lock().unwrap_or_else(|e| e.into_inner());
            let sections = if run_now {
                // One report with everything, answering the collector.
                plan::everything(&mut c, &p)
            } else {
                let mut sections = plan::sections(plan::fast(&mut c, &p));
                if with_inventory {
                    sections.push(Section {
                        kind: Some(section::Kind::Inventory(plan::inventory(&mut c, &p))),
                    });
                }
                sections
            };
            drop(c);
            spool_report(agent_id, &s, sections, request_id)
        })
        .await;
        match result {
            Ok(Ok(seq)) => {
                if with_inventory {
                    last_inventory = Some(Instant::now());
                }
                tracing::debug!(sequence = seq, run_now, "report spooled");
                new_data.notify_one();
            }
            Ok(Err(e)) => tracing::error!(error = %e, "cannot write the report to the spool"),
            Err(e) => tracing::error!(error = %e, "collection task failed"),
        }
    }
    tracing::debug!("collection stopped");
}

/// The periodic checks, package queries and custom checks, each on its own
/// interval and in its own blocking task, so none delays the fast cycle.
async fn checks_loop(
    agent_id: Uuid,
    spool: Arc<Mutex<Spool>>,
    new_data: Arc<Notify>,
    config: AgentConfig,
    policy: watch::Receiver<Option<Policy>>,
    stop: CancellationToken,
) {
    let plan = Arc::new(Plan::from_config(&config));
    let schedule = Arc::new(Mutex::new(PluginSchedule::new(&plan.plugins)));
    let mut checks = tokio::time::interval(config.collect.checks_interval);
    let mut slow = tokio::time::interval(config.collect.patches_interval);
    // Custom checks carry their own intervals; look for due ones every second.
    let mut plugins = tokio::time::interval(Duration::from_secs(1));
    for t in [&mut checks, &mut slow, &mut plugins] {
        t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    }
    loop {
        let job: Job = tokio::select! {
            _ = stop.cancelled() => break,
            _ = checks.tick() => Job::Checks,
            _ = slow.tick() => Job::Patches,
            _ = plugins.tick() => Job::Plugins,
        };
        let enabled = policy
            .borrow()
            .as_ref()
            .map(|p| p.enabled_collectors.clone())
            .unwrap_or_default();
        let p = Arc::new(plan.restricted_to(&enabled));
        let (s, sched) = (spool.clone(), schedule.clone());
        let result = tokio::task::spawn_blocking(move || {
            let findings = match job {
                Job::Checks => plan::checks(&p),
                Job::Patches => plan::slow(&p),
                Job::Plugins => {
                    let mut sched = sched.lock().unwrap_or_else(|e| e.into_inner());
                    plan::due_plugins(&p, &mut sched, std::time::Instant::now())
                }
            };
            let sections = plan::sections(findings);
            if sections.is_empty() {
                return Ok(None);
            }
            spool_report(agent_id, &s, sections, String::new()).map(Some)
        })
        .await;
        match result {
            Ok(Ok(Some(seq))) => {
                tracing::debug!(sequence = seq, ?job, "checks report spooled");
                new_data.notify_one();
            }
            Ok(Ok(None)) => {}
            Ok(Err(e)) => tracing::error!(error = %e, "cannot write the report to the spool"),
            Err(e) => tracing::error!(error = %e, "checks task failed"),
        }
    }
    tracing::debug!("checks stopped");
}

#[derive(Debug, Clone, Copy)]
enum Job {
    Checks,
    Patches,
    Plugins,
}

/// Appends one report with these sections to the spool; returns its sequence.
fn spool_report(
    agent_id: Uuid,
    spool: &Mutex<Spool>,
    sections: Vec<Section>,
    run_now_request_id: String,
) -> Result<u64, SpoolError> {
    let collected_at_unix_ms = chrono::Utc::now().timestamp_millis();
    let mut spool = transport::lock(spool);
    let status = spool.status();
    spool.append(|sequence| {
        Report {
            sequence,
            collected_at_unix_ms,
            claimed_agent_id: agent_id.to_string(),
            spool: Some(wire_status(&status)),
            sections,
            run_now_request_id,
        }
        .encode_to_vec()
    })
}

async fn sender_loop(config: AgentConfig, creds: Credentials, link: Link, stop: CancellationToken) {
    let url = config
        .collector
        .clone()
        .unwrap_or_else(|| creds.collector_url.clone());
    let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(60));
    loop {
        let hello = Hello {
            agent_version: crate::VERSION.to_owned(),
            capabilities: vec!["metrics".into(), "inventory".into()],
            spool: Some(wire_status(&transport::lock(&link.spool).status())),
            claimed_agent_id: creds.agent_id.to_string(),
        };
        let result = match transport::connect(&creds, &url, config.server_name.as_deref()).await {
            Ok(channel) => {
                transport::stream_once(channel, &link, hello, &stop, DRAIN_GRACE, || {
                    backoff.reset()
                })
                .await
            }
            Err(e) => Err(e),
        };
        match result {
            Ok(()) => break,
            Err(e) if e.is_auth() => {
                tracing::error!(error = %e, "the collector does not accept this agent")
            }
            Err(e) => {
                tracing::warn!(error = %e, "stream to the collector ended");
                if transport::quarantine_rejected(&link, &e).await {
                    // What held the stream back is gone: no reason to wait.
                    backoff.reset();
                }
            }
        }
        if stop.is_cancelled() {
            break;
        }
        let delay = backoff.next_delay();
        tracing::debug!(?delay, "reconnecting after backoff");
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = stop.cancelled() => break,
        }
    }
    tracing::debug!("sender stopped");
}

fn wire_status(s: &SpoolStatus) -> xunjian_proto::SpoolStatus {
    xunjian_proto::SpoolStatus {
        pending_reports: s.pending_reports,
        pending_bytes: s.pending_bytes,
        dropped_reports_total: s.dropped_reports_total,
        dropped_bytes_total: s.dropped_bytes_total,
        max_bytes: s.max_bytes,
    }
}
