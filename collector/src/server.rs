//! Runs the collector: PKI, storage writer, the TLS gRPC listener with its
//! limits, background tasks, and an orderly shutdown (stop accepting, end the
//! streams, drain the writer).

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context as _;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Certificate, Identity, Server, ServerTlsConfig};
use tracing::Instrument;
use xunjian_proto::{Policy, enrollment_server::EnrollmentServer, ingest_server::IngestServer};

use crate::alerting::Alerting;
use crate::clock::Clock;
use crate::config::CollectorConfig;
use crate::ingest::{
    EnrollmentService, IngestService, REVOCATION_REFRESH, Sessions, Shared, StreamLimits,
};
use crate::pki::{Pki, PkiError};
use crate::store::writer::COMMITTED_CAPACITY;
use crate::store::{StoreError, Writer};

/// Why the collector could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Pki(#[from] PkiError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("TLS setup failed: {0}")]
    Tls(tonic::transport::Error),
    #[error("the gRPC server failed: {0}")]
    Serve(tonic::transport::Error),
    /// Rules, SLA or notification settings that cannot be used.
    #[error("{0}")]
    Config(String),
}

/// The rule set the collector runs: the configured file, or the built-in
/// default rules.
pub fn load_rules(config: &CollectorConfig) -> Result<crate::rules::RuleSet, ServeError> {
    match &config.alerting.rules_file {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|e| {
                ServeError::Config(format!("cannot read rules file {}: {e}", path.display()))
            })?;
            crate::rules::parse_rules(&path.display().to_string(), &text)
                .map_err(|e| ServeError::Config(e.to_string()))
        }
        None => crate::rules::default_rules().map_err(|e| ServeError::Config(e.to_string())),
    }
}

/// Largest Enroll request accepted (a CSR and a token).
const ENROLL_MAX_MESSAGE: usize = 64 * 1024;
/// Largest message the collector sends.
const MAX_ENCODE_MESSAGE: usize = 1024 * 1024;
/// HTTP/2 streams per connection: an agent needs one; a few spare for
/// reconnect overlap.
const MAX_STREAMS_PER_CONNECTION: u32 = 8;
/// HTTP/2 flow-control windows: bytes an agent may send before the
/// collector has read them. While the writer is behind (a burst of
/// reconnects after an outage), every stream can hold this much: 10,000 ×
/// 64 KiB is 640 MiB. 64 KiB still lets one agent send 640 KiB/s over a
/// 100 ms round trip, far more than it produces.
const STREAM_WINDOW: u32 = 64 * 1024;
const CONNECTION_WINDOW: u32 = 128 * 1024;
/// Requests served concurrently on one connection.
const CONCURRENCY_PER_CONNECTION: usize = 8;

/// How long an orderly stop waits for connections to close, at most (and
/// never longer than `server.stall_timeout`): a stream still open then
/// belongs to a peer that does not read what is sent to it, and HTTP/2 can
/// finish it only when the peer reads. Below the systemd unit's
/// `TimeoutStopSec` (30 s).
const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(10);

/// A running collector.
pub struct Collector {
    addr: SocketAddr,
    ca_fingerprint: String,
    ca_pem: String,
    shared: Arc<Shared>,
    server: JoinHandle<Result<(), tonic::transport::Error>>,
    background: JoinHandle<()>,
    alerting: JoinHandle<()>,
    /// Stops the alerting task: only once ingest has stopped storing, so
    /// the reports acknowledged during the shutdown grace are evaluated too.
    alerting_stop: CancellationToken,
    /// Maintenance, inspections, scheduled reports: all end on shutdown.
    tasks: Vec<JoinHandle<()>>,
    writer: Writer,
    pid_file: std::path::PathBuf,
    shutdown_grace: std::time::Duration,
}

impl Collector {
    /// Creates or loads the PKI and database, binds the listener and starts
    /// serving. Cancel `shutdown` (or call [`Collector::stop`]) to stop.
    pub async fn start(
        config: &CollectorConfig,
        clock: Arc<dyn Clock>,
        shutdown: CancellationToken,
    ) -> Result<Collector, ServeError> {
        let rules = load_rules(config)?;
        // The inspector links findings to the incidents of these rules.
        let inspection_rules = load_rules(config)?;
        let evidence_key = Arc::new(
            crate::evidence::EvidenceKey::load_or_create(&config.pki_dir())
                .map_err(|e| ServeError::Config(e.to_string()))?,
        );
        let pki = Arc::new(Pki::load_or_create(&config.pki_dir())?);
        let (chain_pem, key_pem) = pki.server_identity(&config.server.names)?;
        let (committed_tx, committed_rx) = tokio::sync::mpsc::channel(COMMITTED_CAPACITY);
        let (writer_handle, writer) = Writer::spawn_configured(
            &config.database_path(),
            Some(committed_tx),
            &crate::store::writer::WriterOptions {
                max_new_series_per_hour: config.server.max_new_series_per_hour,
                max_db_bytes: config.storage.max_db_bytes,
                cache_mib: config.storage.writer_cache_mib,
            },
        )?;
        let policy = Policy {
            metrics_interval_s: config.policy.metrics_interval.map_or(0, secs),
            inventory_interval_s: config.policy.inventory_interval.map_or(0, secs),
            enabled_collectors: config.policy.areas.clone(),
        };
        let shared = Shared::new(
            writer_handle.clone(),
            config.database_path(),
            pki.clone(),
            clock.clone(),
            policy,
            StreamLimits {
                max_agents: agent_limit(config.server.max_agents),
                stall_timeout: config.server.stall_timeout,
            },
            shutdown.clone(),
        )?;
        let (reload_tx, reload_rx) = tokio::sync::mpsc::channel(1);
        let notifier = if config.notify.targets.is_empty() {
            None
        } else {
            let targets = config
                .notify
                .resolve(|name| std::env::var(name).ok())
                .map_err(|e| ServeError::Config(e.to_string()))?;
            let (notifier, _task) =
                crate::notify::Notifier::start(&config.notify, targets, Default::default())
                    .map_err(|e| ServeError::Config(e.to_string()))?;
            Some(notifier)
        };
        let mut tasks = Vec::new();
        tasks.push(tokio::spawn(
            checkpointer(
                config.database_path(),
                writer_handle.clone(),
                shutdown.clone(),
            )
            .instrument(tracing::info_span!("checkpoint")),
        ));
        tasks.push(tokio::spawn(
            maintenance(
                writer_handle.clone(),
                clock.clone(),
                config.retention.clone(),
                shutdown.clone(),
            )
            .instrument(tracing::info_span!("maintenance")),
        ));
        let inspector = crate::inspection::runner::Inspector {
            config: config.inspection.clone(),
            db_path: config.database_path(),
            writer: writer_handle.clone(),
            shared: shared.clone(),
            clock: clock.clone(),
            rules: inspection_rules,
            evidence: evidence_key,
            sla: config
                .sla
                .policy()
                .map_err(|e| ServeError::Config(e.to_string()))?,
            shutdown: shutdown.clone(),
            read_conn: Default::default(),
        };
        tasks.push(tokio::spawn(
            inspector
                .run()
                .instrument(tracing::info_span!("inspections")),
        ));
        tasks.push(tokio::spawn(
            crate::report::scheduled::run(
                Arc::new(config.clone()),
                writer_handle.clone(),
                clock.clone(),
                shutdown.clone(),
            )
            .instrument(tracing::info_span!("scheduled_reports")),
        ));
        let alerting_read = crate::store::open_read_only(&config.database_path())?;
        let alerting_stop = CancellationToken::new();
        let alerting = Alerting {
            engine: crate::rules::Engine::new(rules),
            committed: committed_rx,
            writer: writer_handle,
            // Before the listener: no report can be stored before this read.
            hosts: crate::alerting::read_hosts(&alerting_read, None),
            read: Arc::new(std::sync::Mutex::new(alerting_read)),
            clock,
            reopen_window_ms: i64::try_from(config.incidents.reopen_window.as_millis())
                .unwrap_or(i64::MAX),
            reload: reload_rx,
            sla: config
                .sla
                .policy()
                .map_err(|e| ServeError::Config(e.to_string()))?,
            silences: Vec::new(),
            notifier,
            shutdown: alerting_stop.clone(),
        };
        spawn_reload_on_sighup(config.clone(), reload_tx, shutdown.clone());
        write_pid_file(config);
        let alerting = tokio::spawn(alerting.run().instrument(tracing::info_span!("alerting")));

        let listener = tokio::net::TcpListener::bind(config.server.listen)
            .await
            .map_err(|source| ServeError::Bind {
                addr: config.server.listen,
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| ServeError::Bind {
            addr: config.server.listen,
            source,
        })?;
        let incoming = TcpIncoming::from(listener)
            .with_nodelay(Some(true))
            .with_keepalive(Some(config.server.keepalive_interval * 2));

        // Client certificates are optional at the TLS layer so that Enroll
        // works without one; when one is presented it must chain to our CA,
        // and Ingest refuses streams without one (UNAUTHENTICATED).
        let tls = ServerTlsConfig::new()
            .identity(Identity::from_pem(chain_pem, key_pem))
            .client_ca_root(Certificate::from_pem(pki.ca_pem()))
            .client_auth_optional(true)
            .timeout(std::time::Duration::from_secs(10));
        let max_message = config.server.max_message_bytes;
        let enrollment = EnrollmentServer::new(EnrollmentService(shared.clone()))
            .max_decoding_message_size(ENROLL_MAX_MESSAGE)
            .max_encoding_message_size(MAX_ENCODE_MESSAGE);
        let ingest = IngestServer::new(IngestService(shared.clone()))
            .max_decoding_message_size(max_message)
            .max_encoding_message_size(MAX_ENCODE_MESSAGE);
        let router = Server::builder()
            .tls_config(tls)
            .map_err(ServeError::Tls)?
            .http2_keepalive_interval(Some(config.server.keepalive_interval))
            .http2_keepalive_timeout(Some(config.server.keepalive_timeout))
            .max_concurrent_streams(Some(MAX_STREAMS_PER_CONNECTION))
            .concurrency_limit_per_connection(CONCURRENCY_PER_CONNECTION)
            // What one agent may have in flight, unread, in the collector:
            // bounded, so a slow writer holds agents' data in their spools,
            // not in the collector's memory (10,000 connections).
            .initial_stream_window_size(Some(STREAM_WINDOW))
            .initial_connection_window_size(Some(CONNECTION_WINDOW))
            .add_service(enrollment)
            .add_service(crate::grpc_frames::PrefixFramed(ingest));
        let stop = shutdown.clone();
        let server = tokio::spawn(async move {
            router
                .serve_with_incoming_shutdown(incoming, stop.cancelled_owned())
                .await
        });

        let bg_shared = shared.clone();
        let background = tokio::spawn(
            async move {
                let mut tick = tokio::time::interval(REVOCATION_REFRESH);
                loop {
                    tokio::select! {
                        _ = bg_shared.shutdown.cancelled() => break,
                        _ = tick.tick() => {
                            let s = bg_shared.clone();
                            let _ = tokio::task::spawn_blocking(move || s.refresh_revocations()).await;
                        }
                    }
                }
            }
            .instrument(tracing::info_span!("revocations")),
        );

        tracing::info!(%addr, ca_sha256 = %pki.ca_fingerprint(), db = %config.database_path().display(), "collector listening");
        Ok(Collector {
            addr,
            ca_fingerprint: pki.ca_fingerprint(),
            ca_pem: pki.ca_pem().to_owned(),
            shared,
            server,
            background,
            alerting,
            alerting_stop,
            tasks,
            writer,
            pid_file: pid_file(config),
            shutdown_grace: config.server.stall_timeout.min(SHUTDOWN_GRACE),
        })
    }

    /// The bound address (useful with port 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// SHA-256 of the CA certificate, hex (what enrollment tokens pin).
    pub fn ca_fingerprint(&self) -> &str {
        &self.ca_fingerprint
    }

    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// The storage writer (for jobs run beside ingest: tools, tests).
    pub fn writer(&self) -> &crate::store::WriterHandle {
        &self.shared.writer
    }

    /// Open agent streams (for `RunNow`).
    pub fn sessions(&self) -> &Sessions {
        &self.shared.sessions
    }

    /// Reports stored through `Ingest.Submit` since start.
    pub fn submitted_reports(&self) -> u64 {
        self.shared
            .submitted
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Waits until the shutdown token is cancelled, then stops in order: no
    /// new connections, streams told to go away, writer drained.
    pub async fn wait(self) -> Result<(), ServeError> {
        let Collector {
            shared,
            server,
            background,
            alerting,
            alerting_stop,
            tasks,
            writer,
            pid_file,
            shutdown_grace,
            ..
        } = self;
        let mut server = server;
        // `None`: connections still open `shutdown_grace` after the stop.
        let served = tokio::select! {
            served = &mut server => Some(served),
            () = async {
                shared.shutdown.cancelled().await;
                tokio::time::sleep(shutdown_grace).await;
            } => None,
        };
        shared.shutdown.cancel();
        let _ = background.await;
        // Every report stored so far (the grace's included) reaches the
        // rules' queue before this barrier returns; the alerting task then
        // evaluates what is queued and stops. It holds a writer handle.
        let _ = shared.writer.run(|_| Ok(())).await;
        alerting_stop.cancel();
        let _ = alerting.await;
        for task in tasks {
            let _ = task.await;
        }
        let Some(served) = served else {
            tracing::warn!(
                grace = ?shutdown_grace,
                "connections still open after the shutdown grace (peers not reading); stopping without them"
            );
            // Their services hold writer handles, so the writer thread
            // cannot end yet; a barrier job returns once everything queued
            // before it has committed. The thread ends with the process.
            let _ = shared.writer.run(|_| Ok(())).await;
            drop(writer);
            let _ = std::fs::remove_file(&pid_file);
            tracing::info!("collector stopped");
            return Ok(());
        };
        // The writer stops once the last handle (held by `shared` and the
        // services inside the finished server) is gone.
        drop(shared);
        tokio::task::spawn_blocking(move || writer.join())
            .await
            .ok();
        // A stale pid file could later name an unrelated process.
        let _ = std::fs::remove_file(&pid_file);
        tracing::info!("collector stopped");
        match served {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(ServeError::Serve(e)),
            Err(e) => {
                tracing::error!(error = %e, "server task failed");
                Ok(())
            }
        }
    }

    /// Cancels and waits.
    pub async fn stop(self) -> Result<(), ServeError> {
        self.shared.shutdown.cancel();
        self.wait().await
    }
}

/// Open files kept free for the database, its WAL, read connections,
/// reports and TLS handshakes in progress, besides one socket per agent.
pub const FD_RESERVE: u64 = 1024;

/// Raises the soft open-file limit toward `wanted`, up to the hard limit;
/// returns the soft limit in force.
pub fn raise_fd_limit(wanted: u64) -> nix::Result<u64> {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE)?;
    if soft >= wanted {
        return Ok(soft);
    }
    let new = wanted.min(hard);
    setrlimit(Resource::RLIMIT_NOFILE, new, hard)?;
    Ok(new)
}

/// The agent streams this process can really hold: `max_agents`, or fewer
/// when the open-file limit cannot fit them. Running out of descriptors
/// would not just refuse new agents: SQLite could no longer open its files
/// and every agent's storage would fail, so the limit is lowered instead
/// (logged).
fn agent_limit(max_agents: usize) -> usize {
    let wanted = max_agents as u64 + FD_RESERVE;
    match raise_fd_limit(wanted) {
        Ok(soft) if soft < wanted => {
            let fits = soft.saturating_sub(FD_RESERVE).max(1) as usize;
            tracing::warn!(
                max_agents,
                open_file_limit = soft,
                holding = fits,
                "the open-file limit cannot fit server.max_agents; raise it (systemd LimitNOFILE, ulimit -n) — holding fewer agents"
            );
            fits
        }
        Ok(_) => max_agents,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read or raise the open-file limit");
            max_agents
        }
    }
}

/// How often the WAL is checkpointed into the database file. Often, so
/// each pass is short: at 5,000 reports/s a pass every 2 s copied some
/// 60,000 frames in one burst of about 300 ms, during which the writer's
/// batches ran at half speed; every 500 ms, the p99 ack over ten minutes
/// was 54.1 ms instead of 188.4 (README).
const CHECKPOINT_EVERY: std::time::Duration = std::time::Duration::from_millis(500);

/// A WAL at least this long (pages of 4 KiB: 64 MiB) is started over: the
/// writer finishes the checkpoint (see [`crate::store::WriterHandle::finish_checkpoint`]).
/// Below it, the WAL file is reused as is. At 5,000 reports/s the WAL grows
/// by about 120 MiB a second, so the writer finishes one about every
/// second. 192 MiB, tried, measured worse (p99 149.2 ms over six minutes
/// against 97.7), as did 512 MiB before the catch-up passes flushed the
/// database file.
const WAL_RESTART_PAGES: i64 = 16_384;
/// Passes the checkpointer makes to catch up with the writer before asking
/// it to finish, at most.
const MAX_CATCH_UP_PASSES: usize = 8;
/// A catch-up pass this short leaves little behind it for the writer: what
/// the writer copies when it finishes is what it committed since the last
/// pass began, so it grows with that pass's time, not with its pages.
const SHORT_PASS: std::time::Duration = std::time::Duration::from_millis(15);

/// A descriptor of the database file for the checkpointer's flushes, open
/// for the life of the process. Closing any descriptor of a file drops all
/// of the process's POSIX locks on it, SQLite's included: with the shared
/// lock gone, another process closing the database could think itself the
/// last and delete the WAL under the live writer. So it is never closed:
/// one per database path the process checkpoints (tests start several).
fn database_flush_handle(db: &std::path::Path) -> std::io::Result<Arc<std::fs::File>> {
    static OPEN: std::sync::Mutex<Vec<(std::path::PathBuf, Arc<std::fs::File>)>> =
        std::sync::Mutex::new(Vec::new());
    let mut open = OPEN.lock().unwrap_or_else(|p| p.into_inner());
    if let Some((_, file)) = open.iter().find(|(path, _)| path == db) {
        return Ok(file.clone());
    }
    let file = Arc::new(std::fs::File::open(db)?);
    open.push((db.to_owned(), file.clone()));
    Ok(file)
}

/// Checkpoints the WAL from a connection of its own (PASSIVE: never waits
/// for the writer or readers), so the writer's commits do not copy pages
/// and fsync the database file. Under steady ingest that checkpoint never
/// reaches the end of the WAL, so once the WAL is long the writer copies
/// the few pages left, between two transactions, and its next commit
/// starts the WAL over. A checkpoint that cannot finish (a long reader) is
/// retried next time; the WAL grows until one does.
///
/// SQLite flushes the database file only at a checkpoint that reaches the
/// WAL's end, which under ingest is the writer's; so each pass here also
/// flushes what it copied, or the writer's finish would wait for the
/// whole cycle's pages to reach the disk.
pub async fn checkpointer(
    db: std::path::PathBuf,
    writer: crate::store::WriterHandle,
    shutdown: CancellationToken,
) {
    let conn = match crate::store::open(&db) {
        Ok(c) => std::sync::Arc::new(std::sync::Mutex::new(c)),
        Err(e) => {
            tracing::error!(error = %e, "cannot open the checkpoint connection; the WAL will grow");
            return;
        }
    };
    let mut tick = tokio::time::interval(CHECKPOINT_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let file = match database_flush_handle(&db) {
        Ok(f) => f,
        Err(e) => {
            tracing::error!(error = %e, "cannot open the database file to flush it; the WAL will grow");
            return;
        }
    };
    let passive = || {
        let conn = conn.clone();
        let file = file.clone();
        async move {
            let started = std::time::Instant::now();
            let r = tokio::task::spawn_blocking(move || {
                let conn = conn.lock().unwrap_or_else(|p| p.into_inner());
                let wal = crate::store::writer::checkpoint_passive(&conn)
                    .context("checkpointing the WAL")?;
                file.sync_data().context("flushing the database file")?;
                anyhow::Ok(wal)
            })
            .await;
            tracing::debug!(ms = started.elapsed().as_millis() as u64, result = ?r, "checkpoint");
            r.map(|r| (r, started.elapsed()))
        }
    };
    'ticks: loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tick.tick() => {}
        }
        let wal = match passive().await {
            Ok((Ok(wal), _)) => wal,
            Ok((Err(e), _)) => {
                tracing::warn!(error = format!("{e:#}"), "checkpoint failed; retried");
                continue;
            }
            Err(_) => break,
        };
        if wal.wal_pages < WAL_RESTART_PAGES {
            continue;
        }
        // What the writer appended during that pass is copied by more
        // passes here, so the writer's own part, which every ack waits
        // behind, is only the last few pages.
        for _ in 0..MAX_CATCH_UP_PASSES {
            match passive().await {
                Ok((Ok(_), took)) if took <= SHORT_PASS => break,
                Ok((Ok(_), _)) => {}
                Ok((Err(e), _)) => {
                    tracing::warn!(error = format!("{e:#}"), "checkpoint failed; retried");
                    continue 'ticks;
                }
                Err(_) => break 'ticks,
            }
        }
        match writer.finish_checkpoint().await {
            Ok(done) if done.checkpointed_pages < done.wal_pages => tracing::debug!(
                wal_pages = done.wal_pages,
                checkpointed = done.checkpointed_pages,
                "checkpoint incomplete (a reader holds an old snapshot); retried"
            ),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "writer checkpoint failed; retried"),
        }
    }
}

/// How often rollups, presence and retention run.
const MAINTENANCE_EVERY: std::time::Duration = std::time::Duration::from_secs(60);

/// Rollups, presence and retention, once a minute through the writer.
async fn maintenance(
    writer: crate::store::WriterHandle,
    clock: Arc<dyn Clock>,
    retention: crate::maintenance::RetentionConfig,
    shutdown: CancellationToken,
) {
    let mut tick = tokio::time::interval(MAINTENANCE_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tick.tick() => {}
        }
        match crate::maintenance::run_pass(&writer, clock.now_ms(), &retention).await {
            Ok(step) if step.rows > 0 => tracing::debug!(rows = step.rows, "maintenance pass"),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "maintenance pass failed; retried next minute"),
        }
    }
}

/// Where `xunjian rules reload` finds the running collector.
pub fn pid_file(config: &CollectorConfig) -> std::path::PathBuf {
    config.storage.data_dir.join("xunjian.pid")
}

fn write_pid_file(config: &CollectorConfig) {
    if let Err(e) = std::fs::write(pid_file(config), format!("{}\n", std::process::id())) {
        tracing::warn!(error = %e, "cannot write the pid file; `xunjian rules reload` will not find this collector");
    }
}

/// On SIGHUP, re-reads the rules; a file with mistakes is refused (logged
/// with its lines) and the running rules stay in force. Channel capacity 1:
/// a reload requested while one is pending is folded into it.
fn spawn_reload_on_sighup(
    config: CollectorConfig,
    reload: tokio::sync::mpsc::Sender<crate::rules::RuleSet>,
    shutdown: CancellationToken,
) {
    #[cfg(unix)]
    tokio::spawn(
        async move {
            use tokio::signal::unix::{SignalKind, signal};
            let Ok(mut hup) = signal(SignalKind::hangup()) else {
                tracing::warn!("cannot listen for SIGHUP; rules reload needs a restart");
                return;
            };
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = hup.recv() => match load_rules(&config) {
                        Ok(rules) => {
                            let _ = reload.try_send(rules);
                        }
                        Err(e) => tracing::error!(error = %e, "rules file rejected; the running rules stay in force"),
                    },
                }
            }
        }
        .instrument(tracing::info_span!("rules_reload")),
    );
    #[cfg(not(unix))]
    let _ = (config, reload, shutdown);
}

fn secs(d: std::time::Duration) -> u32 {
    u32::try_from(d.as_secs()).unwrap_or(u32::MAX)
}
