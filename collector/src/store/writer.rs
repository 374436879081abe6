//! The single writer: one thread owns the write connection and is fed by a
//! bounded channel. It groups every job waiting in the channel into one
//! transaction (group commit) and answers each job only after that
//! transaction has committed, which is what makes "an ack means committed"
//! true.
//!
//! Channel: capacity [`QUEUE_CAPACITY`] jobs. When it is full, senders wait
//! (`send().await`), which stops the ingest streams from reading further
//! messages, so HTTP/2 flow control pushes back on the agents; their reports
//! wait in their spools. Nothing is dropped.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use prost::Message;
use rusqlite::{Connection, ErrorCode, OptionalExtension, params};
use sha2::{Digest, Sha256};
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;
use xunjian_proto::{CheckStatus, Hello, Inventory, Report, section};

use super::StoreError;
use super::incidents::{self, Applied, IncidentUpdate};
use super::queries::{NewAgent, TokenRefusal, enroll_agent};
use super::series_cache::SeriesCache;

/// Jobs waiting for the writer, at most.
pub const QUEUE_CAPACITY: usize = 1024;
/// The WAL file is cut back to this when it starts over. The checkpointer
/// has it start over from 64 MiB (`server::WAL_RESTART_PAGES`), but a WAL
/// often passes that by a few seconds' growth first: left at this length,
/// the file is reused rather than cut and regrown.
const WAL_FILE_LIMIT_BYTES: i64 = 256 * 1024 * 1024;
/// SQLite's page cache on the writer's connection by default, MiB
/// (`storage.writer_cache_mib`; SQLite's own default is 2 MiB). Each report
/// appends to its agent's runs in the report, block and check-result
/// indexes: at thousands of agents those are hundreds of MiB, and a seek
/// that misses the cache reads the page from the WAL or the file (the OS
/// cache, usually). 16 MiB keeps the collector's memory for its connections
/// (10,000 agents under 1 GiB). At 5,000 reports/s, 64 MiB showed no clear
/// gain over four minutes (README): the setting is there to try, not a
/// recommendation.
pub const DEFAULT_WRITER_CACHE_MIB: u32 = 16;

/// The operator's settings for the writer (`[server]` and `[storage]`).
#[derive(Debug, Clone, Copy)]
pub struct WriterOptions {
    /// New series one agent may create per hour (`server.max_new_series_per_hour`).
    pub max_new_series_per_hour: usize,
    /// The database file's cap (`storage.max_db_bytes`): past it, writes
    /// fail with SQLITE_FULL, retryable like a full disk.
    pub max_db_bytes: Option<u64>,
    /// The writer connection's page cache (`storage.writer_cache_mib`).
    pub cache_mib: u32,
}

impl Default for WriterOptions {
    fn default() -> Self {
        Self {
            max_new_series_per_hour: DEFAULT_MAX_NEW_SERIES_PER_HOUR,
            max_db_bytes: None,
            cache_mib: DEFAULT_WRITER_CACHE_MIB,
        }
    }
}
/// A batch taking this long is logged (debug): where ack latency comes from.
const SLOW_BATCH: Duration = Duration::from_millis(100);
/// Jobs in one transaction, at most.
const MAX_BATCH: usize = 512;
/// New series one agent may create per hour unless configured otherwise
/// (`server.max_new_series_per_hour`). Samples that would create more are
/// dropped, counted in `agents.series_refused_total` and reported to the
/// rules as [`SERIES_REFUSED_METRIC`]: a host emitting a million distinct
/// names cannot grow the database without bound.
pub const DEFAULT_MAX_NEW_SERIES_PER_HOUR: usize = 5_000;
/// The rules see, for every report, how many of its samples were refused.
pub const SERIES_REFUSED_METRIC: &str = "agent.series_refused";
/// An agent clock this far ahead of the collector is not believed: the
/// report's times are taken as the moment it was received.
pub const MAX_CLOCK_AHEAD_MS: i64 = 5 * 60 * 1000;

/// The time a report or sample is stored under: the agent's, unless it is
/// in the future (a clock running ahead), then the time it was received.
/// Past times are kept: a spool delivered after an outage is legitimately
/// old.
pub fn trusted_time(claimed_ms: i64, received_at_ms: i64) -> i64 {
    if claimed_ms > received_at_ms.saturating_add(MAX_CLOCK_AHEAD_MS) {
        received_at_ms
    } else {
        claimed_ms
    }
}

/// Why a write did not happen.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum WriteError {
    /// Storage cannot commit now (disk full, I/O error, locked). Retryable:
    /// the agent keeps the report and sends it again later.
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    /// This job's content cannot be stored; retrying will not help.
    #[error("rejected by storage: {0}")]
    Rejected(String),
    /// The writer has stopped (collector shutting down).
    #[error("storage writer has stopped")]
    Closed,
}

/// A sample's labels as (name, value) pairs, in the order the agent sent
/// them.
pub type Labels = Vec<(String, String)>;

/// A stored report as the rules see it, sent after its transaction
/// committed (so an incident never refers to data that was rolled back).
#[derive(Debug, Clone, PartialEq)]
pub struct Committed {
    pub agent_id: Uuid,
    /// When the agent collected it.
    pub at_ms: i64,
    /// (name, labels as sent, value, time).
    pub metrics: Vec<(String, Labels, f64, i64)>,
    /// (check id, status text, value).
    pub checks: Vec<(String, String, String)>,
    /// The agent's spool drop counter, for the spool-dropping rule.
    pub spool_dropped_total: u64,
    /// Samples of this report dropped by the new-series limit.
    pub series_refused: u64,
}

impl Committed {
    /// Takes the stored report apart rather than copying it: at thousands
    /// of reports a second, cloning every name and label here was 5 % of
    /// the collector's CPU.
    fn from_report(agent_id: Uuid, r: Report, received_at_ms: i64, series_refused: u64) -> Self {
        let collected_at = trusted_time(r.collected_at_unix_ms, received_at_ms);
        let mut metrics = Vec::new();
        let mut checks = Vec::new();
        for s in r.sections {
            match s.kind {
                Some(section::Kind::Metrics(b)) => {
                    metrics.reserve(b.metrics.len());
                    for m in b.metrics {
                        let labels = m.labels.into_iter().map(|l| (l.name, l.value)).collect();
                        let at = if m.at_unix_ms != 0 {
                            trusted_time(m.at_unix_ms, received_at_ms)
                        } else {
                            collected_at
                        };
                        metrics.push((m.name, labels, m.value, at));
                    }
                }
                Some(section::Kind::Checks(c)) => {
                    for c in c.results {
                        checks.push((c.check_id, status_text(c.status).to_owned(), c.value));
                    }
                }
                _ => {}
            }
        }
        Self {
            agent_id,
            at_ms: collected_at,
            metrics,
            checks,
            spool_dropped_total: r.spool.map(|s| s.dropped_reports_total).unwrap_or(0),
            series_refused,
        }
    }
}

/// Committed reports waiting for the rules, at most. When full the writer
/// waits for room before it acknowledges: a report the rules never saw
/// could hide a breach, so the rules slow ingest down (agents keep the
/// reports in their spools) rather than miss one. The alerting task never
/// waits on the writer while it takes reports, so this cannot deadlock.
pub const COMMITTED_CAPACITY: usize = 4096;

/// The outcome of storing one report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stored {
    /// The (agent, sequence) was already stored: nothing was written again.
    pub duplicate: bool,
}

type Reply<T> = oneshot::Sender<Result<T, WriteError>>;

/// Keeps one stream's reports in order through failures: once a report of
/// the stream is not stored, the writer refuses (retryably) every later
/// report of that stream still queued, so the stream's stored reports are
/// always a prefix of what it sent and the agent resends from the first
/// failed one. Without it, a report queued behind a failed one could
/// commit before it, e.g. when space was freed between two batches.
#[derive(Debug, Clone, Default)]
pub struct StreamGate(Arc<AtomicBool>);

impl StreamGate {
    fn close(&self) {
        self.0.store(true, Ordering::Relaxed);
    }

    fn is_closed(&self) -> bool {
        // Set and read only on the writer thread.
        self.0.load(Ordering::Relaxed)
    }
}

enum TxJob {
    Report {
        agent_id: Uuid,
        report: Report,
        bytes: usize,
        received_at_ms: i64,
        gate: StreamGate,
        done: Reply<Stored>,
    },
    Hello {
        agent_id: Uuid,
        hello: Hello,
        at_ms: i64,
        done: Reply<u64>,
    },
    Enroll {
        secret: String,
        agent: NewAgent,
        now_ms: i64,
        done: Reply<Result<String, TokenRefusal>>,
    },
    Incidents {
        updates: Vec<IncidentUpdate>,
        reopen_window_ms: i64,
        done: Reply<Vec<Applied>>,
    },
    /// Any other write of the running collector (filing inspections,
    /// rollups, retention), as a closure run inside the batch's transaction.
    Task {
        work: TaskFn,
        done: Reply<TaskOutput>,
    },
}

type TaskOutput = Box<dyn std::any::Any + Send>;
type TaskFn = Box<dyn FnOnce(&Connection) -> Result<TaskOutput, TaskError> + Send>;

/// What the writer thread is asked to do: a write inside the next batch's
/// transaction, or to look at the checkpoints asked for.
enum Job {
    Tx(TxJob),
    /// Wakes an idle writer for [`WriterHandle::finish_checkpoint`], whose
    /// reply waits beside the queue, not in it.
    CheckpointWanted,
}

/// Replies of the checkpoints asked for and not run yet. They wait beside
/// the queue so that the writer runs them before its next batch, instead of
/// after every report queued ahead of them: each frame committed in between
/// is one more page the writer copies while acks wait.
type CheckpointsWanted = Arc<std::sync::Mutex<Vec<Reply<WalState>>>>;

/// The WAL after a checkpoint: its length and how much of it is copied into
/// the database file, in pages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WalState {
    pub wal_pages: i64,
    pub checkpointed_pages: i64,
}

/// Runs a PASSIVE checkpoint on `conn` (it never waits for other
/// connections).
pub fn checkpoint_passive(conn: &Connection) -> rusqlite::Result<WalState> {
    conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
        Ok(WalState {
            wal_pages: r.get(1)?,
            checkpointed_pages: r.get(2)?,
        })
    })
}

/// Why a [`WriterHandle::run`] closure failed: SQLite (classified as
/// retryable or not like every write) or the task's own reason.
#[derive(Debug, thiserror::Error)]
pub enum TaskError {
    #[error(transparent)]
    Sqlite(#[from] rusqlite::Error),
    #[error("{0}")]
    Refused(String),
}

/// Sends jobs to the writer thread. Cheap to clone.
#[derive(Clone)]
pub struct WriterHandle {
    tx: mpsc::Sender<Job>,
    checkpoints: CheckpointsWanted,
}

/// The writer thread; [`Writer::join`] waits for it to drain and stop once
/// every [`WriterHandle`] is dropped.
pub struct Writer {
    thread: JoinHandle<()>,
}

impl Writer {
    /// Opens the database (applying migrations) and starts the writer thread.
    /// Committed reports go to `committed` (for the rules), when given.
    pub fn spawn(
        path: &Path,
        committed: Option<mpsc::Sender<Committed>>,
    ) -> Result<(WriterHandle, Writer), StoreError> {
        Self::spawn_with(path, committed, DEFAULT_MAX_NEW_SERIES_PER_HOUR)
    }

    /// [`Writer::spawn`] with the per-agent new-series budget.
    pub fn spawn_with(
        path: &Path,
        committed: Option<mpsc::Sender<Committed>>,
        max_new_series_per_hour: usize,
    ) -> Result<(WriterHandle, Writer), StoreError> {
        let options = WriterOptions {
            max_new_series_per_hour,
            ..WriterOptions::default()
        };
        Self::spawn_configured(path, committed, &options)
    }

    /// [`Writer::spawn`] with the operator's settings.
    pub fn spawn_configured(
        path: &Path,
        committed: Option<mpsc::Sender<Committed>>,
        options: &WriterOptions,
    ) -> Result<(WriterHandle, Writer), StoreError> {
        let WriterOptions {
            max_new_series_per_hour,
            max_db_bytes,
            cache_mib,
        } = *options;
        let conn = super::open(path)?;
        // Checkpoints copy the WAL into the database file and fsync it; done
        // by the writer they stall every commit behind them. The collector
        // runs them from their own connection instead (`checkpointer`).
        conn.pragma_update(None, "wal_autocheckpoint", 0)
            .map_err(super::sql("turning off automatic checkpoints"))?;
        // When the WAL starts over, a file left longer than this (by a burst
        // or an older version) is cut back; shorter, it is reused as is,
        // which spares the file system from allocating and zeroing pages.
        conn.pragma_update(None, "journal_size_limit", WAL_FILE_LIMIT_BYTES)
            .map_err(super::sql("setting the WAL size limit"))?;
        conn.pragma_update(None, "cache_size", -(i64::from(cache_mib) * 1024))
            .map_err(super::sql("sizing the page cache"))?;
        // Each job runs in a savepoint, whose journal of the pages it
        // changes spills to a temporary file past 64 KiB: system calls for
        // every report. In memory it is a copy; it holds one job's pages.
        conn.pragma_update(None, "temp_store", "MEMORY")
            .map_err(super::sql("keeping temporary storage in memory"))?;
        if let Some(max) = max_db_bytes {
            // The limit is a property of this connection, not of the file:
            // it must be set on the connection that writes.
            let limit = super::limit_size(&conn, max)?;
            tracing::info!(
                max_db_bytes = max,
                effective_bytes = limit,
                "database size limited"
            );
        }
        let (tx, rx) = mpsc::channel(QUEUE_CAPACITY);
        let checkpoints = CheckpointsWanted::default();
        let wanted = checkpoints.clone();
        let thread = std::thread::Builder::new()
            .name("xunjian-writer".into())
            .spawn(move || run(conn, rx, wanted, committed, max_new_series_per_hour))
            .map_err(|source| StoreError::Dir {
                path: path.to_owned(),
                source,
            })?;
        Ok((WriterHandle { tx, checkpoints }, Writer { thread }))
    }

    /// Waits until the thread has committed everything queued and stopped.
    pub fn join(self) {
        if self.thread.join().is_err() {
            tracing::error!("storage writer thread panicked");
        }
    }
}

impl WriterHandle {
    /// Jobs waiting in the writer's queue (not the one running).
    pub fn queued(&self) -> usize {
        self.tx.max_capacity() - self.tx.capacity()
    }

    /// Queues a report; the returned receiver resolves after commit. Waits
    /// while the queue is full (back-pressure).
    pub async fn store_report(
        &self,
        agent_id: Uuid,
        report: Report,
        bytes: usize,
        received_at_ms: i64,
    ) -> oneshot::Receiver<Result<Stored, WriteError>> {
        self.store_stream_report(
            agent_id,
            report,
            bytes,
            received_at_ms,
            StreamGate::default(),
        )
        .await
    }

    /// [`WriterHandle::store_report`] for one of a stream's reports, in
    /// stream order: refused if an earlier one behind `gate` was not stored.
    pub async fn store_stream_report(
        &self,
        agent_id: Uuid,
        report: Report,
        bytes: usize,
        received_at_ms: i64,
        gate: StreamGate,
    ) -> oneshot::Receiver<Result<Stored, WriteError>> {
        let (done, rx) = oneshot::channel();
        // A send error drops `done`, so the receiver reports Closed.
        let _ = self
            .tx
            .send(Job::Tx(TxJob::Report {
                agent_id,
                report,
                bytes,
                received_at_ms,
                gate,
                done,
            }))
            .await;
        rx
    }

    /// Records a Hello (agent version, spool state, last seen); returns the
    /// highest sequence stored for the agent.
    pub async fn hello(&self, agent_id: Uuid, hello: Hello, at_ms: i64) -> Result<u64, WriteError> {
        let (done, rx) = oneshot::channel();
        let _ = self
            .tx
            .send(Job::Tx(TxJob::Hello {
                agent_id,
                hello,
                at_ms,
                done,
            }))
            .await;
        rx.await.unwrap_or(Err(WriteError::Closed))
    }

    /// Applies the rules engine's transitions to the incidents.
    pub async fn incidents(
        &self,
        updates: Vec<IncidentUpdate>,
        reopen_window_ms: i64,
    ) -> Result<Vec<Applied>, WriteError> {
        let (done, rx) = oneshot::channel();
        let _ = self
            .tx
            .send(Job::Tx(TxJob::Incidents {
                updates,
                reopen_window_ms,
                done,
            }))
            .await;
        rx.await.unwrap_or(Err(WriteError::Closed))
    }

    /// Runs `work` on the writer thread inside a transaction (its own
    /// savepoint: an error undoes only its writes) and returns its result
    /// after commit. Keep it short: ingest waits behind it.
    pub async fn run<T, F>(&self, work: F) -> Result<T, WriteError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, TaskError> + Send + 'static,
    {
        let (done, rx) = oneshot::channel();
        let work: TaskFn = Box::new(move |conn| work(conn).map(|t| Box::new(t) as TaskOutput));
        let _ = self.tx.send(Job::Tx(TxJob::Task { work, done })).await;
        let out = rx.await.unwrap_or(Err(WriteError::Closed))?;
        // The closure above boxed a `T`, so the downcast cannot fail.
        out.downcast::<T>()
            .map(|t| *t)
            .map_err(|_| WriteError::Rejected("task result of unexpected type".into()))
    }

    /// Checkpoints from the writer's own connection, between two
    /// transactions. A checkpoint from another connection copies the WAL
    /// while the writer keeps appending, so under steady ingest it never
    /// reaches the WAL's end, and SQLite starts the WAL over only after one
    /// has: the WAL would grow without bound (5 GB in 80 s at 10,000
    /// agents). Called right after such a checkpoint, this one copies only
    /// the pages written since, and the next commit starts the WAL over.
    /// It runs before the writer's next batch, ahead of the reports queued.
    pub async fn finish_checkpoint(&self) -> Result<WalState, WriteError> {
        let (done, rx) = oneshot::channel();
        lock_wanted(&self.checkpoints).push(done);
        match self.tx.try_send(Job::CheckpointWanted) {
            // A full queue means a busy writer: it looks before each batch.
            Ok(()) | Err(mpsc::error::TrySendError::Full(_)) => {}
            Err(mpsc::error::TrySendError::Closed(_)) => {
                lock_wanted(&self.checkpoints).clear();
                return Err(WriteError::Closed);
            }
        }
        // The reply is not dropped with the writer's queue: a writer that
        // died (panicked) would leave it waiting for ever.
        tokio::select! {
            biased;
            r = rx => r.unwrap_or(Err(WriteError::Closed)),
            () = self.tx.closed() => Err(WriteError::Closed),
        }
    }

    /// Consumes a token use and registers the agent, atomically.
    pub async fn enroll(
        &self,
        secret: String,
        agent: NewAgent,
        now_ms: i64,
    ) -> Result<Result<String, TokenRefusal>, WriteError> {
        let (done, rx) = oneshot::channel();
        let _ = self
            .tx
            .send(Job::Tx(TxJob::Enroll {
                secret,
                agent,
                now_ms,
                done,
            }))
            .await;
        rx.await.unwrap_or(Err(WriteError::Closed))
    }
}

/// A job's result, held until the transaction commits.
enum Outcome {
    Report(Reply<Stored>, Result<Stored, WriteError>, Option<Committed>),
    Incidents(Reply<Vec<Applied>>, Result<Vec<Applied>, WriteError>),
    Task(Reply<TaskOutput>, Result<TaskOutput, WriteError>),
    Hello(Reply<u64>, Result<u64, WriteError>),
    Enroll(
        Reply<Result<String, TokenRefusal>>,
        Result<Result<String, TokenRefusal>, WriteError>,
    ),
}

impl Outcome {
    fn is_ok(&self) -> bool {
        match self {
            Outcome::Report(_, r, _) => r.is_ok(),
            Outcome::Incidents(_, r) => r.is_ok(),
            Outcome::Task(_, r) => r.is_ok(),
            Outcome::Hello(_, r) => r.is_ok(),
            Outcome::Enroll(_, r) => r.is_ok(),
        }
    }

    /// Replaces the result with an error (the transaction did not commit).
    fn fail(self, err: WriteError) -> Self {
        match self {
            Outcome::Report(d, _, _) => Outcome::Report(d, Err(err), None),
            Outcome::Incidents(d, _) => Outcome::Incidents(d, Err(err)),
            Outcome::Task(d, _) => Outcome::Task(d, Err(err)),
            Outcome::Hello(d, _) => Outcome::Hello(d, Err(err)),
            Outcome::Enroll(d, _) => Outcome::Enroll(d, Err(err)),
        }
    }

    /// Answers the job. A committed report goes to the rules first, waiting
    /// for room in their queue (see [`COMMITTED_CAPACITY`]): its ack leaves
    /// only once the rules have it.
    fn send(self, committed: Option<&mpsc::Sender<Committed>>, waits: &mut WaitsForRules) {
        match self {
            Outcome::Report(d, r, c) => {
                if let (Some(tx), Some(c)) = (committed, c) {
                    waits.hand_over(tx, c);
                }
                drop(d.send(r))
            }
            Outcome::Incidents(d, r) => drop(d.send(r)),
            Outcome::Task(d, r) => drop(d.send(r)),
            Outcome::Hello(d, r) => drop(d.send(r)),
            Outcome::Enroll(d, r) => drop(d.send(r)),
        }
    }
}

/// Hands committed reports to the rules and keeps account of the time the
/// writer waited for them, logged at most every [`WAIT_LOG_INTERVAL`]: at
/// thousands of reports a second, a line per wait would flood the log when
/// it matters most.
#[derive(Default)]
struct WaitsForRules {
    /// The rules' queue was found closed (said once).
    rules_gone: bool,
    unlogged: Duration,
    total: Duration,
    last_logged: Option<Instant>,
}

const WAIT_LOG_INTERVAL: Duration = Duration::from_secs(10);

impl WaitsForRules {
    fn hand_over(&mut self, tx: &mpsc::Sender<Committed>, c: Committed) {
        let c = match tx.try_send(c) {
            Ok(()) => return,
            Err(mpsc::error::TrySendError::Closed(_)) => return self.rules_stopped(),
            Err(mpsc::error::TrySendError::Full(c)) => c,
        };
        let started = Instant::now();
        // The writer is a plain thread, never a runtime worker, so it may block.
        let sent = tx.blocking_send(c);
        self.waited(started.elapsed());
        if sent.is_err() {
            // Closed while the writer waited: this report is not evaluated.
            self.rules_stopped();
        }
    }

    fn rules_stopped(&mut self) {
        if !self.rules_gone {
            self.rules_gone = true;
            tracing::warn!(
                "the rules have stopped (shutdown, or their task failed): reports stored from now on are not evaluated"
            );
        }
    }

    fn waited(&mut self, d: Duration) {
        self.unlogged += d;
        self.total += d;
        let due = self
            .last_logged
            .is_none_or(|t| t.elapsed() >= WAIT_LOG_INTERVAL);
        if due {
            tracing::warn!(
                waited_ms = self.unlogged.as_millis() as u64,
                waited_total_ms = self.total.as_millis() as u64,
                "rules are behind; storage waited for them (acks are delayed, agents keep spooling)"
            );
            self.unlogged = Duration::ZERO;
            self.last_logged = Some(Instant::now());
        }
    }
}

fn lock_wanted(wanted: &CheckpointsWanted) -> std::sync::MutexGuard<'_, Vec<Reply<WalState>>> {
    // A panic while holding this lock leaves a plain Vec: still usable.
    wanted.lock().unwrap_or_else(|p| p.into_inner())
}

/// Runs the checkpoints asked for, if any, between two transactions.
fn run_wanted_checkpoints(conn: &Connection, wanted: &CheckpointsWanted) {
    let replies = std::mem::take(&mut *lock_wanted(wanted));
    if replies.is_empty() {
        return;
    }
    let started = Instant::now();
    let r = checkpoint_passive(conn).map_err(|e| classify(&e));
    tracing::debug!(ms = started.elapsed().as_millis() as u64, result = ?r, "writer finished a checkpoint");
    for done in replies {
        let _ = done.send(r.clone());
    }
}

fn run(
    mut conn: Connection,
    mut rx: mpsc::Receiver<Job>,
    wanted: CheckpointsWanted,
    committed: Option<mpsc::Sender<Committed>>,
    max_new_series_per_hour: usize,
) {
    let mut series = SeriesCache::new(max_new_series_per_hour);
    let mut waits = WaitsForRules::default();
    while let Some(first) = rx.blocking_recv() {
        let mut jobs = Vec::new();
        let mut next = Some(first);
        while let Some(job) = next.take() {
            if let Job::Tx(job) = job {
                jobs.push(job);
            }
            if jobs.len() < MAX_BATCH {
                next = rx.try_recv().ok();
            }
        }
        // Before this batch: what it commits would be more to copy.
        run_wanted_checkpoints(&conn, &wanted);
        let gates: Vec<Option<StreamGate>> = jobs
            .iter()
            .map(|job| match job {
                TxJob::Report { gate, .. } => Some(gate.clone()),
                _ => None,
            })
            .collect();
        let started = Instant::now();
        let count = jobs.len();
        let outcomes = if jobs.is_empty() {
            Vec::new()
        } else {
            commit_batch(&mut conn, &mut series, jobs, committed.is_some())
        };
        if started.elapsed() >= SLOW_BATCH {
            tracing::debug!(
                jobs = count,
                ms = started.elapsed().as_millis() as u64,
                "slow storage batch"
            );
        }
        // Before the next batch: later reports of a failed stream must see it.
        for (outcome, gate) in outcomes.into_iter().zip(gates) {
            if let Some(gate) = gate
                && !outcome.is_ok()
            {
                gate.close();
            }
            outcome.send(committed.as_ref(), &mut waits);
        }
    }
    // Asked for by a caller that has gone since (a live one keeps a handle,
    // so the queue open): answered, not left in the list.
    run_wanted_checkpoints(&conn, &wanted);
    tracing::debug!("storage writer drained and stopped");
}

/// Applies every job in one transaction, each inside its own savepoint so a
/// job with unstorable content fails alone. A storage-level failure (disk
/// full, I/O) fails the whole batch as retryable. `to_rules`: whether
/// committed reports are handed to the rules (else nothing is built for them).
fn commit_batch(
    conn: &mut Connection,
    series: &mut SeriesCache,
    jobs: Vec<TxJob>,
    to_rules: bool,
) -> Vec<Outcome> {
    let count = jobs.len();
    let tx = match conn.transaction() {
        Ok(tx) => tx,
        Err(e) => {
            let err = classify(&e);
            return jobs
                .into_iter()
                .map(|j| unapplied(j, err.clone()))
                .collect();
        }
    };
    let mut outcomes = Vec::with_capacity(count);
    let mut fatal: Option<WriteError> = None;
    for job in jobs {
        if let Some(err) = &fatal {
            outcomes.push(unapplied(job, err.clone()));
            continue;
        }
        if let TxJob::Report { gate, .. } = &job
            && gate.is_closed()
        {
            // Not fatal: only this stream's later reports are refused.
            let err = WriteError::Unavailable(
                "an earlier report of this stream was not stored; resend from it".into(),
            );
            outcomes.push(unapplied(job, err));
            continue;
        }
        if let Err(e) = tx.execute_batch("SAVEPOINT job") {
            fatal = Some(classify(&e));
            outcomes.push(unapplied(job, classify(&e)));
            continue;
        }
        series.job_started();
        let outcome = apply(&tx, series, job, to_rules);
        let release = if outcome.is_ok() {
            tx.execute_batch("RELEASE job")
        } else {
            series.job_rolled_back();
            tx.execute_batch("ROLLBACK TO job; RELEASE job")
        };
        if let Err(e) = release {
            fatal = Some(classify(&e));
        }
        if let Some(err) = outcome_fatal(&outcome) {
            fatal = Some(err);
        }
        outcomes.push(outcome);
    }
    if let Some(err) = fatal {
        drop(tx); // rolls back
        series.clear();
        tracing::warn!(jobs = count, error = %err, "storage batch rolled back");
        return outcomes.into_iter().map(|o| o.fail(err.clone())).collect();
    }
    if let Err(e) = tx.commit() {
        let err = classify(&e);
        series.clear();
        tracing::warn!(jobs = count, error = %err, "storage commit failed");
        return outcomes.into_iter().map(|o| o.fail(err.clone())).collect();
    }
    series.committed();
    outcomes
}

/// A retryable error inside one job poisons the whole transaction.
fn outcome_fatal(outcome: &Outcome) -> Option<WriteError> {
    let err = match outcome {
        Outcome::Report(_, Err(e), _) => e,
        Outcome::Incidents(_, Err(e)) => e,
        Outcome::Task(_, Err(e)) => e,
        Outcome::Hello(_, Err(e)) => e,
        Outcome::Enroll(_, Err(e)) => e,
        _ => return None,
    };
    matches!(err, WriteError::Unavailable(_)).then(|| err.clone())
}

fn unapplied(job: TxJob, err: WriteError) -> Outcome {
    match job {
        TxJob::Report { done, .. } => Outcome::Report(done, Err(err), None),
        TxJob::Incidents { done, .. } => Outcome::Incidents(done, Err(err)),
        TxJob::Task { done, .. } => Outcome::Task(done, Err(err)),
        TxJob::Hello { done, .. } => Outcome::Hello(done, Err(err)),
        TxJob::Enroll { done, .. } => Outcome::Enroll(done, Err(err)),
    }
}

fn apply(conn: &Connection, series: &mut SeriesCache, job: TxJob, to_rules: bool) -> Outcome {
    match job {
        TxJob::Report {
            agent_id,
            report,
            bytes,
            received_at_ms,
            done,
            ..
        } => {
            let r = store_report(conn, series, agent_id, &report, bytes, received_at_ms);
            let committed = match &r {
                Ok((Stored { duplicate: false }, refused)) if to_rules => Some(
                    Committed::from_report(agent_id, report, received_at_ms, *refused),
                ),
                _ => None,
            };
            Outcome::Report(done, r.map(|(s, _)| s).map_err(|e| classify(&e)), committed)
        }
        TxJob::Hello {
            agent_id,
            hello,
            at_ms,
            done,
        } => {
            let r = store_hello(conn, agent_id, &hello, at_ms);
            Outcome::Hello(done, r.map_err(|e| classify(&e)))
        }
        TxJob::Incidents {
            updates,
            reopen_window_ms,
            done,
        } => {
            let r: rusqlite::Result<Vec<Applied>> = updates
                .iter()
                .map(|u| incidents::apply(conn, u, reopen_window_ms))
                .collect();
            Outcome::Incidents(done, r.map_err(|e| classify(&e)))
        }
        TxJob::Task { work, done } => {
            let r = work(conn).map_err(|e| match e {
                TaskError::Sqlite(e) => classify(&e),
                TaskError::Refused(reason) => WriteError::Rejected(reason),
            });
            Outcome::Task(done, r)
        }
        TxJob::Enroll {
            secret,
            agent,
            now_ms,
            done,
        } => {
            let r = enroll_agent(conn, &secret, &agent, now_ms);
            Outcome::Enroll(
                done,
                r.map_err(|e| match e {
                    StoreError::Sqlite { error, .. } => classify(&error),
                    other => WriteError::Rejected(other.to_string()),
                }),
            )
        }
    }
}

fn classify(e: &rusqlite::Error) -> WriteError {
    match e.sqlite_error_code() {
        Some(
            ErrorCode::DiskFull
            | ErrorCode::SystemIoFailure
            | ErrorCode::DatabaseBusy
            | ErrorCode::DatabaseLocked
            | ErrorCode::ReadOnly
            | ErrorCode::CannotOpen
            | ErrorCode::OutOfMemory,
        ) => WriteError::Unavailable(e.to_string()),
        _ => WriteError::Rejected(e.to_string()),
    }
}

fn store_hello(
    conn: &Connection,
    agent_id: Uuid,
    hello: &Hello,
    at_ms: i64,
) -> rusqlite::Result<u64> {
    let spool = hello.spool.unwrap_or_default();
    conn.prepare_cached(
        "UPDATE agents SET agent_version = ?2, last_seen_at = ?3, spool_pending_reports = ?4,
                spool_dropped_reports_total = max(spool_dropped_reports_total, ?5),
                spool_dropped_bytes_total = max(spool_dropped_bytes_total, ?6)
         WHERE agent_id = ?1",
    )?
    .execute(params![
        agent_id.to_string(),
        hello.agent_version,
        at_ms,
        clamp_i64(spool.pending_reports),
        clamp_i64(spool.dropped_reports_total),
        clamp_i64(spool.dropped_bytes_total)
    ])?;
    let last: i64 = conn
        .prepare_cached("SELECT last_sequence FROM agents WHERE agent_id = ?1")?
        .query_row([agent_id.to_string()], |r| r.get(0))?;
    Ok(u64::try_from(last).unwrap_or(0))
}

fn store_report(
    conn: &Connection,
    series: &mut SeriesCache,
    agent_id: Uuid,
    report: &Report,
    bytes: usize,
    received_at_ms: i64,
) -> rusqlite::Result<(Stored, u64)> {
    let agent = agent_id.to_string();
    let seq = clamp_i64(report.sequence);
    let collected_at = trusted_time(report.collected_at_unix_ms, received_at_ms);
    let mut refused = 0u64;
    // Rows of reports past retention are gone; their sequences stay
    // duplicates (an agent replaying one is not sending new data).
    let pruned_through: i64 = conn
        .prepare_cached("SELECT reports_pruned_through FROM agents WHERE agent_id = ?1")?
        .query_row([&agent], |r| r.get(0))
        .optional()?
        .unwrap_or(0);
    if seq <= pruned_through {
        return Ok((Stored { duplicate: true }, 0));
    }
    let inserted = conn
        .prepare_cached(
            "INSERT OR IGNORE INTO reports (agent_id, sequence, collected_at, received_at, bytes, sections, run_now_request_id)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        )?
        .execute(params![
            agent,
            seq,
            collected_at,
            received_at_ms,
            bytes as i64,
            report.sections.len() as i64,
            report.run_now_request_id
        ])?;
    if inserted == 0 {
        return Ok((Stored { duplicate: true }, 0));
    }
    // All of a report's check results go in one block, however many
    // sections carried them.
    let mut check_results = Vec::new();
    for section in &report.sections {
        match &section.kind {
            Some(section::Kind::Metrics(batch)) => {
                // One block per distinct sample time, in first-seen order
                // (a report's samples nearly all share its collection time).
                let mut blocks: Vec<(i64, Vec<(i64, f64)>)> = Vec::with_capacity(1);
                for m in &batch.metrics {
                    let Some(id) = series.id(conn, &agent, &m.name, &m.labels, received_at_ms)?
                    else {
                        refused += 1;
                        continue;
                    };
                    let at = if m.at_unix_ms != 0 {
                        trusted_time(m.at_unix_ms, received_at_ms)
                    } else {
                        collected_at
                    };
                    match blocks.iter_mut().find(|(t, _)| *t == at) {
                        Some((_, samples)) => samples.push((id, m.value)),
                        None => blocks.push((at, vec![(id, m.value)])),
                    }
                }
                for (at, samples) in &blocks {
                    super::samples::insert_block(conn, &agent, seq, *at, samples)?;
                }
            }
            Some(section::Kind::Inventory(inv)) => {
                store_inventory(conn, &agent, inv, collected_at, received_at_ms)?
            }
            Some(section::Kind::Checks(checks)) => {
                check_results.extend(checks.results.iter().map(|c| super::checks::CheckResult {
                    check_id: c.check_id.clone(),
                    title: c.title.clone(),
                    status: status_text(c.status).to_owned(),
                    value: c.value.clone(),
                    threshold: c.threshold.clone(),
                    evidence: c.evidence.clone(),
                    reason: c.reason.clone(),
                }))
            }
            // A section kind from a newer agent: ignored, the rest is stored.
            None => tracing::debug!(agent = %agent, "ignoring unknown section kind"),
        }
    }
    super::checks::insert_block(conn, &agent, seq, collected_at, &check_results)?;
    let spool = report.spool.unwrap_or_default();
    conn.prepare_cached(
        "UPDATE agents SET last_seen_at = ?2,
                last_report_at = max(coalesce(last_report_at, 0), ?3),
                last_sequence = max(last_sequence, ?4),
                clock_skew_ms = ?5,
                spool_pending_reports = ?6,
                spool_dropped_reports_total = max(spool_dropped_reports_total, ?7),
                spool_dropped_bytes_total = max(spool_dropped_bytes_total, ?8),
                series_refused_total = series_refused_total + ?9
         WHERE agent_id = ?1",
    )?
    .execute(params![
        agent,
        received_at_ms,
        collected_at,
        seq,
        // The agent's own claim: a clock running ahead shows as negative.
        received_at_ms.saturating_sub(report.collected_at_unix_ms),
        clamp_i64(spool.pending_reports),
        clamp_i64(spool.dropped_reports_total),
        clamp_i64(spool.dropped_bytes_total),
        refused as i64
    ])?;
    if refused > 0 {
        tracing::warn!(
            agent = %agent,
            refused,
            "new-series limit reached: samples of new series dropped (see the agent.series_limit incident)"
        );
    }
    Ok((Stored { duplicate: false }, refused))
}

/// Stores the inventory only when its content differs from the agent's
/// current one, and keeps the host's identity columns in step.
fn store_inventory(
    conn: &Connection,
    agent: &str,
    inv: &Inventory,
    collected_at: i64,
    received_at_ms: i64,
) -> rusqlite::Result<()> {
    let hash = hex::encode(Sha256::digest(inv.encode_to_vec()));
    let current: Option<Option<String>> = conn
        .prepare_cached("SELECT inventory_sha256 FROM agents WHERE agent_id = ?1")?
        .query_row([agent], |r| r.get(0))
        .optional()?;
    if current.flatten().as_deref() == Some(hash.as_str()) {
        return Ok(());
    }
    let body = serde_json::to_string(inv).unwrap_or_else(|_| "{}".into());
    let previous: Option<String> = conn
        .prepare_cached(
            "SELECT body FROM inventory_snapshots WHERE agent_id = ?1 ORDER BY collected_at DESC, snapshot_id DESC LIMIT 1",
        )?
        .query_row([agent], |r| r.get(0))
        .optional()?;
    conn.prepare_cached(
        "INSERT INTO inventory_snapshots (agent_id, sha256, collected_at, stored_at, body) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![agent, hash, collected_at, received_at_ms, body])?;
    let snapshot_id = conn.last_insert_rowid();
    // The first snapshot is the baseline, not a change.
    if let Some(previous) = previous {
        let old: serde_json::Value = serde_json::from_str(&previous).unwrap_or_default();
        let new: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        let mut insert = conn.prepare_cached(
            "INSERT INTO config_changes (agent_id, snapshot_id, collected_at, path, before, after) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )?;
        for change in crate::inventory_diff::diff(&old, &new) {
            insert.execute(params![
                agent,
                snapshot_id,
                collected_at,
                change.path,
                change.before,
                change.after
            ])?;
        }
    }
    conn.prepare_cached(
        "UPDATE agents SET inventory_sha256 = ?2, hostname = ?3, os_name = ?4, os_version = ?5,
                kernel_version = ?6, arch = ?7
         WHERE agent_id = ?1",
    )?
    .execute(params![
        agent,
        hash,
        inv.hostname,
        inv.os_name,
        inv.os_version,
        inv.kernel_version,
        inv.arch
    ])?;
    Ok(())
}

/// Labels as a JSON object with sorted keys: unambiguous and queryable with
/// SQLite's json functions.
pub fn labels_json(labels: &[xunjian_proto::Label]) -> String {
    let map: BTreeMap<&str, &str> = labels
        .iter()
        .map(|l| (l.name.as_str(), l.value.as_str()))
        .collect();
    serde_json::to_string(&map).unwrap_or_else(|_| "{}".into())
}

/// The stored form of a check status. Unspecified is unknown, never ok.
pub fn status_text(status: i32) -> &'static str {
    match CheckStatus::try_from(status).unwrap_or(CheckStatus::Unspecified) {
        CheckStatus::Ok => "ok",
        CheckStatus::Warning => "warning",
        CheckStatus::Critical => "critical",
        CheckStatus::Unknown | CheckStatus::Unspecified => "unknown",
    }
}

fn clamp_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::enrolled_agent;
    use xunjian_proto::{Inventory, Metric, MetricBatch, Section};

    fn report(seq: u64) -> Report {
        crate::store::fs_report(seq, "/", 42.0)
    }

    async fn store(handle: &WriterHandle, agent: Uuid, seqs: std::ops::RangeInclusive<u64>) {
        for seq in seqs {
            handle
                .store_report(agent, distinct_names(seq, 200), 10, 5)
                .await
                .await
                .unwrap()
                .unwrap();
        }
    }

    type Held<T> = tokio::task::JoinHandle<Result<T, WriteError>>;

    /// Holds the writer inside a task until the returned sender is sent to
    /// (or dropped); the task then ends with `then`.
    async fn hold_writer<T: Send + 'static>(
        handle: &WriterHandle,
        then: impl FnOnce() -> Result<T, TaskError> + Send + 'static,
    ) -> (std::sync::mpsc::Sender<()>, Held<T>) {
        let (release, held) = std::sync::mpsc::channel::<()>();
        let (entered, in_task) = oneshot::channel();
        let task = {
            let handle = handle.clone();
            tokio::spawn(async move {
                handle
                    .run(move |_| {
                        let _ = entered.send(());
                        let _ = held.recv();
                        then()
                    })
                    .await
            })
        };
        in_task.await.unwrap();
        (release, task)
    }

    /// Asks for a checkpoint and returns once the writer can see the request.
    async fn ask_for_checkpoint(handle: &WriterHandle) -> Held<WalState> {
        let checkpoint = {
            let handle = handle.clone();
            tokio::spawn(async move { handle.finish_checkpoint().await })
        };
        while lock_wanted(&handle.checkpoints).is_empty() {
            tokio::task::yield_now().await;
        }
        checkpoint
    }

    #[tokio::test]
    async fn a_checkpoint_the_writer_finishes_lets_the_wal_start_over() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.db");
        let (handle, writer) = Writer::spawn(&path, None).unwrap();
        let agent = enrolled_agent(&handle, &path).await;
        let other = super::super::open(&path).unwrap();

        // What the collector's checkpointer meets under steady ingest: pages
        // committed after the point its checkpoint could copy to. Here a
        // reader's snapshot stands for "during the checkpoint".
        store(&handle, agent, 1..=20).await;
        let reader = super::super::open(&path).unwrap();
        reader.execute_batch("BEGIN").unwrap();
        let _: i64 = reader
            .query_row("SELECT count(*) FROM sample_blocks", [], |r| r.get(0))
            .unwrap();
        store(&handle, agent, 21..=40).await;
        let behind = checkpoint_passive(&other).unwrap();
        assert!(behind.checkpointed_pages < behind.wal_pages, "{behind:?}");
        reader.execute_batch("COMMIT").unwrap();
        // Not wholly copied, so the WAL does not start over: the file grows.
        let wal_file = path.with_extension("db-wal");
        let wal_bytes = || std::fs::metadata(&wal_file).unwrap().len();
        let before = wal_bytes();
        store(&handle, agent, 41..=60).await;
        assert!(wal_bytes() > before, "the WAL started over by itself");

        // The writer copies what is left; its next commit starts over.
        let finished = handle.finish_checkpoint().await.unwrap();
        assert_eq!(finished.checkpointed_pages, finished.wal_pages);
        assert!(finished.wal_pages > behind.wal_pages, "{finished:?}");
        store(&handle, agent, 61..=61).await;
        let restarted = checkpoint_passive(&other).unwrap();
        assert!(
            restarted.wal_pages < finished.wal_pages / 10,
            "the WAL did not start over: {finished:?} then {restarted:?}"
        );
        drop(handle);
        writer.join();
    }

    #[tokio::test]
    async fn a_checkpoint_asked_for_runs_before_the_reports_queued_ahead_of_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.db");
        let (handle, writer) = Writer::spawn(&path, None).unwrap();
        let agent = enrolled_agent(&handle, &path).await;
        let other = super::super::open(&path).unwrap();
        store(&handle, agent, 1..=5).await;

        // The writer is held inside a task while reports queue up and then
        // a checkpoint is asked for.
        let (release, task) = hold_writer(&handle, || Ok(())).await;
        let before = checkpoint_passive(&other).unwrap();
        let mut acks = Vec::new();
        for seq in 6..=25 {
            acks.push(
                handle
                    .store_report(agent, distinct_names(seq, 200), 10, 5)
                    .await,
            );
        }
        let checkpoint = ask_for_checkpoint(&handle).await;
        release.send(()).unwrap();
        task.await.unwrap().unwrap();

        // It copied the WAL as it was before those reports: none of their
        // pages were committed ahead of it.
        let finished = checkpoint.await.unwrap().unwrap();
        assert_eq!(
            finished.wal_pages, before.wal_pages,
            "{before:?} then {finished:?}"
        );
        assert_eq!(finished.checkpointed_pages, finished.wal_pages);
        for ack in acks {
            ack.await.unwrap().unwrap();
        }
        let stored: i64 = other
            .query_row("SELECT count(*) FROM reports", [], |r| r.get(0))
            .unwrap();
        assert_eq!(stored, 25);
        drop(handle);
        writer.join();
    }

    #[tokio::test]
    async fn a_checkpoint_asked_of_a_writer_that_died_is_refused_not_awaited_for_ever() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.db");
        let (handle, writer) = Writer::spawn(&path, None).unwrap();
        let (release, task) = hold_writer(&handle, || -> Result<(), TaskError> {
            panic!("the writer dies while a checkpoint is asked for")
        })
        .await;
        let checkpoint = ask_for_checkpoint(&handle).await;
        release.send(()).unwrap();
        assert!(matches!(task.await.unwrap(), Err(WriteError::Closed)));
        // A hang here is the bug; the limit only keeps the suite from hanging.
        let answer = tokio::time::timeout(Duration::from_secs(30), checkpoint)
            .await
            .expect("the checkpoint's caller was left waiting")
            .unwrap();
        assert!(matches!(answer, Err(WriteError::Closed)), "{answer:?}");
        drop(handle);
        writer.join();
    }

    #[tokio::test]
    async fn replayed_report_is_acknowledged_but_stored_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.db");
        let (handle, writer) = Writer::spawn(&path, None).unwrap();
        let agent = enrolled_agent(&handle, &path).await;
        let first = handle
            .store_report(agent, report(1), 10, 5)
            .await
            .await
            .unwrap()
            .unwrap();
        let again = handle
            .store_report(agent, report(1), 10, 6)
            .await
            .await
            .unwrap()
            .unwrap();
        assert!(!first.duplicate);
        assert!(again.duplicate);
        drop(handle);
        writer.join();
        let conn = super::super::open(&path).unwrap();
        let samples: i64 = conn
            .query_row("SELECT sum(samples) FROM sample_blocks", [], |r| r.get(0))
            .unwrap();
        assert_eq!(samples, 1);
        let labels: String = conn
            .query_row("SELECT labels FROM series", [], |r| r.get(0))
            .unwrap();
        assert_eq!(labels, r#"{"mount":"/"}"#);
    }

    #[tokio::test]
    async fn report_for_unknown_agent_is_rejected_alone() {
        let dir = tempfile::tempdir().unwrap();
        let (handle, writer) = Writer::spawn(&dir.path().join("x.db"), None).unwrap();
        let err = handle
            .store_report(Uuid::new_v4(), report(1), 10, 5)
            .await
            .await
            .unwrap()
            .unwrap_err();
        assert!(matches!(err, WriteError::Rejected(_)), "{err:?}");
        drop(handle);
        writer.join();
    }

    fn inventory_report(seq: u64, os_version: &str, packages: &[(&str, &str)]) -> Report {
        Report {
            sequence: seq,
            collected_at_unix_ms: 1_700_000_000_000 + seq as i64,
            sections: vec![Section {
                kind: Some(section::Kind::Inventory(Inventory {
                    hostname: "h".into(),
                    os_version: os_version.into(),
                    packages: packages
                        .iter()
                        .map(|(n, v)| xunjian_proto::Package {
                            name: (*n).into(),
                            version: (*v).into(),
                            ..Default::default()
                        })
                        .collect(),
                    ..Default::default()
                })),
            }],
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn inventory_is_stored_on_change_only_and_changes_are_recorded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.db");
        let (handle, writer) = Writer::spawn(&path, None).unwrap();
        let agent = enrolled_agent(&handle, &path).await;
        let reports = [
            inventory_report(1, "12.4", &[("curl", "7.88")]),
            inventory_report(2, "12.4", &[("curl", "7.88")]),
            inventory_report(3, "12.5", &[("curl", "7.89"), ("nginx", "1.22")]),
        ];
        for r in reports {
            handle
                .store_report(agent, r, 10, 5)
                .await
                .await
                .unwrap()
                .unwrap();
        }
        drop(handle);
        writer.join();
        let conn = super::super::open(&path).unwrap();
        let snapshots: i64 = conn
            .query_row("SELECT count(*) FROM inventory_snapshots", [], |r| r.get(0))
            .unwrap();
        assert_eq!(
            snapshots, 2,
            "the unchanged second inventory is not stored again"
        );
        let mut stmt = conn
            .prepare("SELECT path, before, after FROM config_changes ORDER BY path")
            .unwrap();
        let changes: Vec<(String, String, String)> = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        assert_eq!(
            changes,
            vec![
                ("os_version".into(), "12.4".into(), "12.5".into()),
                (
                    "packages[curl].version".into(),
                    "7.88".into(),
                    "7.89".into()
                ),
                (
                    "packages[nginx]".into(),
                    String::new(),
                    "name=nginx, version=1.22".into()
                ),
            ]
        );
    }

    fn distinct_names(seq: u64, count: usize) -> Report {
        Report {
            sequence: seq,
            collected_at_unix_ms: 1_700_000_000_000,
            sections: vec![Section {
                kind: Some(section::Kind::Metrics(MetricBatch {
                    metrics: (0..count)
                        .map(|i| Metric {
                            name: format!("spam.m{seq}_{i}"),
                            labels: vec![],
                            value: 1.0,
                            at_unix_ms: 0,
                        })
                        .collect(),
                })),
            }],
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn a_clock_far_ahead_is_recorded_but_not_believed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.db");
        let (handle, writer) = Writer::spawn(&path, None).unwrap();
        let agent = enrolled_agent(&handle, &path).await;
        let received = 1_700_000_000_000;
        let day = 86_400_000;
        // One report from a clock a day ahead, one spooled a day ago.
        let mut ahead = report(1);
        ahead.collected_at_unix_ms = received + day;
        let mut old = report(2);
        old.collected_at_unix_ms = received - day;
        for r in [ahead, old] {
            let done = handle.store_report(agent, r, 1, received).await;
            assert_eq!(done.await.unwrap(), Ok(Stored { duplicate: false }));
        }
        drop(handle);
        writer.join();
        let conn = crate::store::open(&path).unwrap();
        let stored: Vec<(i64, i64)> = conn
            .prepare("SELECT r.collected_at, m.at FROM reports r JOIN sample_blocks m USING (sequence) ORDER BY sequence")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(
            stored,
            vec![(received, received), (received - day, received - day)]
        );
        let skew: i64 = conn
            .query_row("SELECT clock_skew_ms FROM agents", [], |r| r.get(0))
            .unwrap();
        assert_eq!(skew, day, "the last report's delay is recorded");
        assert_eq!(
            trusted_time(received + MAX_CLOCK_AHEAD_MS, received),
            received + MAX_CLOCK_AHEAD_MS
        );
        assert_eq!(
            trusted_time(received + MAX_CLOCK_AHEAD_MS + 1, received),
            received
        );
    }

    #[tokio::test]
    async fn a_million_distinct_names_from_one_agent_are_capped_counted_and_reported() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.db");
        let (tx, mut rx) = mpsc::channel(64);
        let (handle, writer) = Writer::spawn_with(&path, Some(tx), 5_000).unwrap();
        let agent = enrolled_agent(&handle, &path).await;
        // 20 reports of 50,000 (the per-report limit) distinct names.
        let mut refused = 0;
        for seq in 1..=20 {
            let done = handle
                .store_report(agent, distinct_names(seq, 50_000), 1, 1_700_000_000_000)
                .await;
            assert_eq!(done.await.unwrap(), Ok(Stored { duplicate: false }));
            refused += rx.recv().await.unwrap().series_refused;
        }
        drop(handle);
        writer.join();
        assert_eq!(refused, 1_000_000 - 5_000);
        let conn = crate::store::open(&path).unwrap();
        let (series, samples, counted): (i64, i64, i64) = conn
            .query_row(
                "SELECT (SELECT count(*) FROM series), (SELECT sum(samples) FROM sample_blocks),
                        (SELECT series_refused_total FROM agents)",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .unwrap();
        assert_eq!((series, samples, counted), (5_000, 5_000, 995_000));
    }

    #[tokio::test]
    async fn a_full_rules_queue_delays_the_ack_instead_of_skipping_the_report() {
        const NOW: i64 = 1_700_000_000_100;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.db");
        let (tx, mut rules) = mpsc::channel(1);
        let (handle, writer) = Writer::spawn(&path, Some(tx)).unwrap();
        let agent = enrolled_agent(&handle, &path).await;
        let first = handle.store_report(agent, report(1), 1, NOW).await;
        assert_eq!(first.await.unwrap(), Ok(Stored { duplicate: false }));
        // The queue (one place) now holds report 1: report 2 is stored but
        // its ack waits until the rules take something.
        let mut second = handle.store_report(agent, report(2), 1, NOW).await;
        let early = tokio::time::timeout(Duration::from_millis(300), &mut second).await;
        assert!(early.is_err(), "acked while the rules could not take it");
        let mut seen = vec![rules.recv().await.unwrap().at_ms];
        assert_eq!(second.await.unwrap(), Ok(Stored { duplicate: false }));
        seen.push(rules.recv().await.unwrap().at_ms);
        assert_eq!(
            seen,
            [1_700_000_000_001, 1_700_000_000_002],
            "in order, none missed"
        );
        // Once the rules have stopped, storing goes on without them.
        drop(rules);
        let third = handle.store_report(agent, report(3), 1, NOW).await;
        assert_eq!(third.await.unwrap(), Ok(Stored { duplicate: false }));
        drop(handle);
        writer.join();
    }

    #[tokio::test]
    async fn the_writer_cache_is_the_configured_size() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.db");
        let cache = |options: WriterOptions| {
            let path = path.clone();
            async move {
                let (handle, writer) = Writer::spawn_configured(&path, None, &options).unwrap();
                let kib: i64 = handle
                    .run(|c| Ok(c.pragma_query_value(None, "cache_size", |r| r.get(0))?))
                    .await
                    .unwrap();
                drop(handle);
                writer.join();
                kib
            }
        };
        assert_eq!(cache(WriterOptions::default()).await, -16 * 1024);
        let options = WriterOptions {
            cache_mib: 64,
            ..WriterOptions::default()
        };
        assert_eq!(cache(options).await, -64 * 1024);
    }

    #[test]
    fn unspecified_status_is_unknown() {
        assert_eq!(status_text(0), "unknown");
        assert_eq!(status_text(99), "unknown");
        assert_eq!(status_text(CheckStatus::Ok as i32), "ok");
    }
}
