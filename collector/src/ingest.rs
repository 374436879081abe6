//! The gRPC services: `Enrollment` (token + CSR → certificate) and `Ingest`
//! (one bidirectional stream per agent: reports in, acks after commit out;
//! `Submit` for one large report outside the stream).
//!
//! Identity comes from the verified TLS peer certificate only; payload fields
//! can at most be checked against it.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use prost::Message;
use rusqlite::Connection;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot};
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status, Streaming};
use tracing::Instrument;
use uuid::Uuid;
use xunjian_proto::{
    Ack, AgentMessage, CollectorMessage, EnrollRequest, EnrollResponse, Policy, Report, Resume,
    RunNow, agent_message, collector_message, enrollment_server, ingest_server, section,
};

use crate::clock::Clock;
use crate::pki::{self, Pki};
use crate::store::writer::StreamGate;
use crate::store::{self, NewAgent, Stored, WriteError, WriterHandle};

/// Responses queued for one agent's stream. When full (the agent does not
/// read), sending waits up to `server.stall_timeout` (default 60 s), then
/// the stream is closed.
const OUT_CAPACITY: usize = 32;
/// Reports of one stream waiting for commit, at most; when full the stream
/// stops reading (back-pressure through HTTP/2 flow control).
const PIPELINE_CAPACITY: usize = 256;
/// How long a new stream may take to send its Hello.
const HELLO_TIMEOUT: Duration = Duration::from_secs(30);
/// How often open streams re-check the revocation list.
pub const REVOCATION_REFRESH: Duration = Duration::from_secs(2);

/// Limits on one report's content; beyond them the report is refused with
/// INVALID_ARGUMENT.
pub mod limits {
    pub const SECTIONS: usize = 64;
    pub const METRICS: usize = 50_000;
    pub const LABELS: usize = 32;
    pub const NAME_LEN: usize = 200;
    pub const LABEL_VALUE_LEN: usize = 1024;
    pub const CHECKS: usize = 10_000;
    pub const TEXT_LEN: usize = 8 * 1024;
}

/// State shared by both services and the background tasks.
pub struct Shared {
    pub writer: WriterHandle,
    pub pki: Arc<Pki>,
    pub clock: Arc<dyn Clock>,
    pub policy: Policy,
    pub shutdown: CancellationToken,
    pub sessions: Sessions,
    /// Reports stored through `Submit` (large ones), since start.
    pub submitted: AtomicU64,
    read: Mutex<Connection>,
    revoked: RwLock<HashSet<Uuid>>,
    permits: Arc<Semaphore>,
    stall_timeout: Duration,
}

/// Limits on the agents' streams (from `[server]`).
#[derive(Debug, Clone, Copy)]
pub struct StreamLimits {
    /// Streams held open at once; more get RESOURCE_EXHAUSTED.
    pub max_agents: usize,
    /// How long an agent may leave its acks unread before its stream is closed.
    pub stall_timeout: Duration,
}

impl Shared {
    pub fn new(
        writer: WriterHandle,
        db_path: PathBuf,
        pki: Arc<Pki>,
        clock: Arc<dyn Clock>,
        policy: Policy,
        limits: StreamLimits,
        shutdown: CancellationToken,
    ) -> Result<Arc<Self>, store::StoreError> {
        let read = store::open_read_only(&db_path)?;
        let revoked = store::revoked_agents(&read)?;
        Ok(Arc::new(Self {
            writer,
            pki,
            clock,
            policy,
            shutdown,
            sessions: Sessions::default(),
            submitted: AtomicU64::new(0),
            read: Mutex::new(read),
            revoked: RwLock::new(revoked),
            permits: Arc::new(Semaphore::new(limits.max_agents)),
            stall_timeout: limits.stall_timeout,
        }))
    }

    fn is_revoked(&self, agent: Uuid) -> bool {
        self.revoked
            .read()
            .map(|s| s.contains(&agent))
            .unwrap_or(true)
    }

    /// Reloads the revocation list; run every [`REVOCATION_REFRESH`].
    pub fn refresh_revocations(&self) {
        let fresh = match self.read.lock() {
            Ok(conn) => store::revoked_agents(&conn),
            Err(_) => return,
        };
        match fresh {
            Ok(set) => {
                if let Ok(mut current) = self.revoked.write() {
                    *current = set;
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot refresh the revocation list"),
        }
    }

    /// The agent a TLS-verified request comes from, or UNAUTHENTICATED.
    fn authenticate<T>(&self, request: &Request<T>) -> Result<Uuid, Status> {
        let certs = request.peer_certs().ok_or_else(|| {
            Status::unauthenticated("a client certificate is required: enroll this agent first")
        })?;
        let leaf = certs.first().ok_or_else(|| {
            Status::unauthenticated("a client certificate is required: enroll this agent first")
        })?;
        let agent =
            pki::agent_identity(leaf).map_err(|e| Status::unauthenticated(e.to_string()))?;
        let auth = {
            let conn = self
                .read
                .lock()
                .map_err(|_| Status::internal("read connection poisoned"))?;
            store::agent_auth(&conn, agent).map_err(|e| Status::unavailable(e.to_string()))?
        };
        let Some(auth) = auth else {
            return Err(Status::unauthenticated(format!(
                "agent {agent} is not enrolled here"
            )));
        };
        if auth.revoked || self.is_revoked(agent) {
            return Err(Status::unauthenticated(format!(
                "agent {agent} has been revoked"
            )));
        }
        if auth.cert_sha256 != pki::cert_sha256(leaf) {
            return Err(Status::unauthenticated(format!(
                "agent {agent} presented a certificate other than the one it was enrolled with"
            )));
        }
        Ok(agent)
    }
}

/// Open agent streams, so the collector can push `RunNow` (inspections).
#[derive(Default)]
pub struct Sessions {
    open: Mutex<HashMap<Uuid, mpsc::Sender<Result<CollectorMessage, Status>>>>,
}

impl Sessions {
    /// Asks a connected agent to collect everything now. False when the agent
    /// has no open stream or its queue is full.
    pub fn run_now(&self, agent: Uuid, request_id: &str) -> bool {
        let sender = self.open.lock().ok().and_then(|m| m.get(&agent).cloned());
        sender.is_some_and(|s| {
            s.try_send(Ok(CollectorMessage {
                kind: Some(collector_message::Kind::RunNow(RunNow {
                    request_id: request_id.to_owned(),
                })),
            }))
            .is_ok()
        })
    }

    /// Agents with an open stream.
    pub fn connected(&self) -> Vec<Uuid> {
        self.open
            .lock()
            .map(|m| m.keys().copied().collect())
            .unwrap_or_default()
    }

    fn insert(&self, agent: Uuid, tx: mpsc::Sender<Result<CollectorMessage, Status>>) {
        if let Ok(mut m) = self.open.lock() {
            m.insert(agent, tx);
        }
    }

    fn remove(&self, agent: Uuid, tx: &mpsc::Sender<Result<CollectorMessage, Status>>) {
        if let Ok(mut m) = self.open.lock()
            && m.get(&agent).is_some_and(|cur| cur.same_channel(tx))
        {
            m.remove(&agent);
        }
    }
}

/// The `Enrollment` service.
pub struct EnrollmentService(pub Arc<Shared>);

#[tonic::async_trait]
impl enrollment_server::Enrollment for EnrollmentService {
    async fn enroll(
        &self,
        request: Request<EnrollRequest>,
    ) -> Result<Response<EnrollResponse>, Status> {
        let shared = &self.0;
        let peer = request.remote_addr();
        let req = request.into_inner();
        if req.token.is_empty() || req.token.len() > 256 {
            return Err(Status::invalid_argument(
                "the enrollment token is missing or too long",
            ));
        }
        if req.csr_der.is_empty() || req.csr_der.len() > 16 * 1024 {
            return Err(Status::invalid_argument(
                "the CSR is missing or larger than 16 KiB",
            ));
        }
        if req.hostname.len() > 255 || req.agent_version.len() > 64 {
            return Err(Status::invalid_argument(
                "hostname or agent version too long",
            ));
        }
        let agent_id = Uuid::new_v4();
        let signed = shared
            .pki
            .sign_agent(&req.csr_der, agent_id)
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        let agent = NewAgent {
            agent_id,
            hostname: req.hostname.clone(),
            agent_version: req.agent_version.clone(),
            cert_serial: signed.serial_hex.clone(),
            cert_sha256: signed.sha256_hex.clone(),
        };
        let now = shared.clock.now_ms();
        match shared.writer.enroll(req.token, agent, now).await {
            Ok(Ok(token_id)) => {
                tracing::info!(agent = %agent_id, hostname = %req.hostname, token = %token_id, ?peer, "agent enrolled");
                Ok(Response::new(EnrollResponse {
                    agent_id: agent_id.to_string(),
                    certificate_pem: signed.pem,
                    ca_chain_pem: shared.pki.ca_pem().to_owned(),
                }))
            }
            Ok(Err(refusal)) => {
                tracing::warn!(?peer, reason = %refusal, "enrollment refused");
                Err(Status::unauthenticated(refusal.to_string()))
            }
            Err(e) => Err(write_status(&e)),
        }
    }
}

/// The `Ingest` service.
pub struct IngestService(pub Arc<Shared>);

#[tonic::async_trait]
impl ingest_server::Ingest for IngestService {
    type StreamStream = ReceiverStream<Result<CollectorMessage, Status>>;

    async fn stream(
        &self,
        request: Request<Streaming<AgentMessage>>,
    ) -> Result<Response<Self::StreamStream>, Status> {
        let shared = self.0.clone();
        let agent = shared.authenticate(&request)?;
        let permit = shared.permits.clone().try_acquire_owned().map_err(|_| {
            Status::resource_exhausted("the collector is at its agent limit; retry later")
        })?;
        let (tx, rx) = mpsc::channel(OUT_CAPACITY);
        let inbound = request.into_inner();
        let span = tracing::info_span!("agent_stream", agent = %agent);
        tokio::spawn(session(shared, agent, inbound, tx, permit).instrument(span));
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    /// One large report outside the stream (see the proto): the same checks
    /// and storage as a stream's report, answered after commit.
    async fn submit(&self, request: Request<Report>) -> Result<Response<Ack>, Status> {
        let shared = &self.0;
        let agent = shared.authenticate(&request)?;
        let report = request.into_inner();
        validate_report(agent, &report, 0)?;
        let sequence = report.sequence;
        let bytes = report.encoded_len();
        let done = shared
            .writer
            .store_report(agent, report, bytes, shared.clock.now_ms())
            .await;
        match done.await.unwrap_or(Err(WriteError::Closed)) {
            Ok(stored) => {
                if !stored.duplicate {
                    shared.submitted.fetch_add(1, Ordering::Relaxed);
                }
                Ok(Response::new(Ack { sequence }))
            }
            Err(e) => {
                tracing::warn!(agent = %agent, sequence, error = %e, "submitted report not stored");
                Err(report_status(sequence, &e))
            }
        }
    }
}

/// What the acker does next, in stream order.
enum Pending {
    Commit(u64, oneshot::Receiver<Result<Stored, WriteError>>),
    Fail(Status),
}

async fn session(
    shared: Arc<Shared>,
    agent: Uuid,
    mut inbound: Streaming<AgentMessage>,
    tx: mpsc::Sender<Result<CollectorMessage, Status>>,
    _permit: OwnedSemaphorePermit,
) {
    let hello = match tokio::time::timeout(HELLO_TIMEOUT, inbound.message()).await {
        Ok(Ok(Some(AgentMessage {
            kind: Some(agent_message::Kind::Hello(h)),
        }))) => h,
        Ok(Ok(None)) => return,
        Ok(Err(status)) => {
            let _ = tx.send(Err(inbound_error(status))).await;
            return;
        }
        Ok(Ok(Some(_))) => {
            let _ = tx
                .send(Err(Status::invalid_argument(
                    "the first message of a stream must be Hello",
                )))
                .await;
            return;
        }
        Err(_) => {
            let _ = tx
                .send(Err(Status::deadline_exceeded("no Hello within 30s")))
                .await;
            return;
        }
    };
    if let Err(status) = check_claim(agent, &hello.claimed_agent_id) {
        let _ = tx.send(Err(status)).await;
        return;
    }
    tracing::info!(version = %hello.agent_version, backlog = hello.spool.map(|s| s.pending_reports).unwrap_or(0), "agent connected");
    let last_stored = match shared
        .writer
        .hello(agent, hello, shared.clock.now_ms())
        .await
    {
        Ok(last) => last,
        Err(e) => {
            let _ = tx.send(Err(write_status(&e))).await;
            return;
        }
    };
    let greeting = [
        collector_message::Kind::Resume(Resume {
            last_stored_sequence: last_stored,
        }),
        collector_message::Kind::Policy(shared.policy.clone()),
    ];
    for kind in greeting {
        if tx
            .send(Ok(CollectorMessage { kind: Some(kind) }))
            .await
            .is_err()
        {
            return;
        }
    }
    shared.sessions.insert(agent, tx.clone());

    let (pending_tx, pending_rx) = mpsc::channel(PIPELINE_CAPACITY);
    let acker =
        tokio::spawn(ack_in_order(pending_rx, tx.clone(), shared.stall_timeout).in_current_span());
    let mut revocation_check = tokio::time::interval(REVOCATION_REFRESH);
    let mut last_seq = 0u64;
    let gate = StreamGate::default();
    let end = loop {
        let message = tokio::select! {
            _ = shared.shutdown.cancelled() => break Some(Status::unavailable("the collector is shutting down")),
            // The acker gave up (agent not reading its acks) or ended the
            // stream: stop now, even if the agent sends nothing more, so
            // its session and agent-limit slot are not held forever.
            _ = pending_tx.closed() => break None,
            _ = revocation_check.tick() => {
                if shared.is_revoked(agent) {
                    break Some(Status::unauthenticated(format!("agent {agent} has been revoked")));
                }
                continue;
            }
            m = inbound.message() => m,
        };
        let report = match message {
            Ok(Some(AgentMessage {
                kind: Some(agent_message::Kind::Report(r)),
            })) => r,
            Ok(Some(AgentMessage {
                kind: Some(agent_message::Kind::Hello(_)),
            })) => {
                break Some(Status::invalid_argument(
                    "Hello may only be the first message of a stream",
                ));
            }
            Ok(Some(AgentMessage { kind: None })) => {
                break Some(Status::invalid_argument("empty message"));
            }
            Ok(None) => break None,
            Err(status) => break Some(inbound_error(status)),
        };
        if let Err(status) = validate_report(agent, &report, last_seq) {
            break Some(status);
        }
        last_seq = report.sequence;
        let bytes = report.encoded_len();
        let done = shared
            .writer
            .store_stream_report(agent, report, bytes, shared.clock.now_ms(), gate.clone())
            .await;
        if pending_tx
            .send(Pending::Commit(last_seq, done))
            .await
            .is_err()
        {
            break None; // the acker gave up (agent not reading)
        }
    };
    if let Some(status) = end {
        tracing::info!(code = ?status.code(), reason = status.message(), "closing agent stream");
        let _ = pending_tx.send(Pending::Fail(status)).await;
    }
    drop(pending_tx);
    let _ = acker.await;
    shared.sessions.remove(agent, &tx);
    tracing::info!("agent stream ended");
}

/// Sends acks in sequence order, each only after its report committed; ends
/// the stream on a storage error or when the agent stops reading.
async fn ack_in_order(
    mut pending: mpsc::Receiver<Pending>,
    tx: mpsc::Sender<Result<CollectorMessage, Status>>,
    stall_timeout: Duration,
) {
    while let Some(item) = pending.recv().await {
        let msg = match item {
            Pending::Commit(seq, done) => match done.await.unwrap_or(Err(WriteError::Closed)) {
                Ok(_) => Ok(CollectorMessage {
                    kind: Some(collector_message::Kind::Ack(Ack { sequence: seq })),
                }),
                Err(e) => {
                    tracing::warn!(sequence = seq, error = %e, "report not stored");
                    Err(report_status(seq, &e))
                }
            },
            Pending::Fail(status) => Err(status),
        };
        let terminal = msg.is_err();
        match tx.send_timeout(msg, stall_timeout).await {
            Ok(()) if !terminal => {}
            Ok(()) => return,
            Err(mpsc::error::SendTimeoutError::Timeout(_)) => {
                tracing::warn!("agent is not reading the stream; closing it");
                return;
            }
            // The stream is already gone (agent disconnected, shutdown).
            Err(mpsc::error::SendTimeoutError::Closed(_)) => return,
        }
    }
}

fn check_claim(agent: Uuid, claimed: &str) -> Result<(), Status> {
    if claimed.is_empty() || Uuid::parse_str(claimed).is_ok_and(|c| c == agent) {
        Ok(())
    } else {
        Err(Status::permission_denied(format!(
            "this stream is authenticated as agent {agent}; it cannot send data as {claimed:?}"
        )))
    }
}

/// Checks a report against the stream's state and the content limits
/// before it is stored: the claim, the sequence, sizes, names, values.
/// Public for the fuzz targets, which feed it arbitrary decoded messages.
pub fn validate_report(agent: Uuid, r: &Report, last_seq: u64) -> Result<(), Status> {
    use limits::*;
    check_claim(agent, &r.claimed_agent_id)?;
    // The content checks name the report: the agent cannot fix it by resending.
    let bad = |m: String| Err(rejected(r.sequence, Status::invalid_argument(m)));
    if r.sequence == 0 || r.sequence <= last_seq {
        return Err(Status::invalid_argument(format!(
            "report sequence {} must be above the previous one on this stream ({last_seq})",
            r.sequence
        )));
    }
    if r.sections.len() > SECTIONS {
        return bad(format!(
            "{} sections in one report; the limit is {SECTIONS}",
            r.sections.len()
        ));
    }
    let mut metrics = 0usize;
    let mut checks = 0usize;
    for s in &r.sections {
        match &s.kind {
            Some(section::Kind::Metrics(b)) => {
                metrics += b.metrics.len();
                for m in &b.metrics {
                    if !valid_name(&m.name) {
                        return bad(format!(
                            "metric name {:?} is not 1..={NAME_LEN} characters of [a-z0-9_.]",
                            truncate(&m.name)
                        ));
                    }
                    if !m.value.is_finite() {
                        return bad(format!("metric {} has a non-finite value", m.name));
                    }
                    if m.labels.len() > LABELS {
                        return bad(format!(
                            "metric {} has {} labels; the limit is {LABELS}",
                            m.name,
                            m.labels.len()
                        ));
                    }
                    let mut names = HashSet::new();
                    for l in &m.labels {
                        if !valid_name(&l.name) || l.value.len() > LABEL_VALUE_LEN {
                            return bad(format!(
                                "metric {} has an invalid label {:?}",
                                m.name,
                                truncate(&l.name)
                            ));
                        }
                        if !names.insert(l.name.as_str()) {
                            return bad(format!("metric {} repeats label {}", m.name, l.name));
                        }
                    }
                }
            }
            Some(section::Kind::Checks(c)) => {
                checks += c.results.len();
                for c in &c.results {
                    if c.check_id.is_empty() || c.check_id.len() > NAME_LEN {
                        return bad("a check result has an empty or over-long check_id".into());
                    }
                    let text = [&c.title, &c.value, &c.threshold, &c.evidence, &c.reason];
                    if text.iter().any(|t| t.len() > TEXT_LEN) {
                        return bad(format!(
                            "check {} has a text field over {TEXT_LEN} bytes",
                            c.check_id
                        ));
                    }
                }
            }
            Some(section::Kind::Inventory(_)) | None => {}
        }
    }
    if metrics > METRICS {
        return bad(format!(
            "{metrics} metrics in one report; the limit is {METRICS}"
        ));
    }
    if checks > CHECKS {
        return bad(format!(
            "{checks} check results in one report; the limit is {CHECKS}"
        ));
    }
    Ok(())
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= limits::NAME_LEN
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'.')
}

fn truncate(s: &str) -> String {
    s.chars().take(40).collect()
}

/// Turns tonic's decode failures into a clear INVALID_ARGUMENT; keeps other
/// statuses (e.g. OUT_OF_RANGE for an oversized message) as they are.
fn inbound_error(status: Status) -> Status {
    if status.code() == tonic::Code::Internal && status.message().contains("decode") {
        Status::invalid_argument(format!("malformed message: {}", status.message()))
    } else {
        status
    }
}

/// Marks `status` as the refusal of report `sequence` for its content
/// ([`xunjian_proto::REJECTED_SEQUENCE_METADATA`]).
fn rejected(sequence: u64, mut status: Status) -> Status {
    status.metadata_mut().insert(
        xunjian_proto::REJECTED_SEQUENCE_METADATA,
        tonic::metadata::MetadataValue::from(sequence),
    );
    status
}

/// [`write_status`] of storing report `sequence`. A storage rejection does
/// not name the report for quarantine: it may come from the database
/// (damaged, an unforeseen error, a batch-level step failing every report
/// in it), and then the reports must wait in the spools, not be set aside.
/// Content the collector will never store is caught before, by
/// [`validate_report`].
fn report_status(sequence: u64, e: &WriteError) -> Status {
    match e {
        WriteError::Rejected(m) => {
            Status::invalid_argument(format!("storage rejected report {sequence}: {m}"))
        }
        other => write_status(other),
    }
}

fn write_status(e: &WriteError) -> Status {
    match e {
        WriteError::Unavailable(m) => {
            Status::unavailable(format!("storage cannot commit now, retry later: {m}"))
        }
        WriteError::Rejected(m) => {
            Status::invalid_argument(format!("storage rejected the request: {m}"))
        }
        WriteError::Closed => Status::unavailable("the collector is shutting down"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use xunjian_proto::{Label, Metric, MetricBatch, Section};

    fn report(seq: u64, metrics: Vec<Metric>) -> Report {
        Report {
            sequence: seq,
            sections: vec![Section {
                kind: Some(section::Kind::Metrics(MetricBatch { metrics })),
            }],
            ..Default::default()
        }
    }

    fn metric(name: &str) -> Metric {
        Metric {
            name: name.into(),
            value: 1.0,
            ..Default::default()
        }
    }

    #[test]
    fn sequences_must_increase() {
        let a = Uuid::new_v4();
        assert!(validate_report(a, &report(1, vec![]), 0).is_ok());
        assert!(validate_report(a, &report(0, vec![]), 0).is_err());
        assert!(validate_report(a, &report(5, vec![]), 5).is_err());
    }

    fn rejected_sequence(status: &Status) -> Option<String> {
        status
            .metadata()
            .get(xunjian_proto::REJECTED_SEQUENCE_METADATA)
            .map(|v| v.to_str().unwrap().to_owned())
    }

    #[test]
    fn a_refusal_for_content_names_the_report_and_others_do_not() {
        let a = Uuid::new_v4();
        let bad_name = validate_report(a, &report(7, vec![metric("Bad Name")]), 0).unwrap_err();
        assert_eq!(bad_name.code(), tonic::Code::InvalidArgument);
        assert_eq!(rejected_sequence(&bad_name).as_deref(), Some("7"));
        // Out of order is the stream's fault, not the report's: resending
        // in order fixes it, so nothing is named.
        let order = validate_report(a, &report(5, vec![]), 5).unwrap_err();
        assert_eq!(order.code(), tonic::Code::InvalidArgument);
        assert_eq!(rejected_sequence(&order), None);
        let mut other = report(8, vec![metric("Bad Name")]);
        other.claimed_agent_id = Uuid::new_v4().to_string();
        assert_eq!(
            rejected_sequence(&validate_report(a, &other, 0).unwrap_err()),
            None
        );
        // Storage's own refusals may be the database's fault: not named.
        let stored = report_status(
            9,
            &WriteError::Rejected("database disk image is malformed".into()),
        );
        assert_eq!(
            (stored.code(), rejected_sequence(&stored)),
            (tonic::Code::InvalidArgument, None)
        );
        let busy = report_status(9, &WriteError::Unavailable("disk full".into()));
        assert_eq!(
            (busy.code(), rejected_sequence(&busy)),
            (tonic::Code::Unavailable, None)
        );
    }

    #[test]
    fn claims_for_other_agents_are_denied() {
        let a = Uuid::new_v4();
        let mut r = report(1, vec![]);
        r.claimed_agent_id = Uuid::new_v4().to_string();
        assert_eq!(
            validate_report(a, &r, 0).unwrap_err().code(),
            tonic::Code::PermissionDenied
        );
        r.claimed_agent_id = a.to_string();
        assert!(validate_report(a, &r, 0).is_ok());
    }

    #[test]
    fn content_limits_are_enforced() {
        let a = Uuid::new_v4();
        assert!(validate_report(a, &report(1, vec![metric("Bad Name")]), 0).is_err());
        let mut nan = metric("x");
        nan.value = f64::NAN;
        assert!(validate_report(a, &report(1, vec![nan]), 0).is_err());
        let mut dup = metric("x");
        dup.labels = vec![
            Label {
                name: "a".into(),
                value: "1".into(),
            },
            Label {
                name: "a".into(),
                value: "2".into(),
            },
        ];
        assert!(validate_report(a, &report(1, vec![dup]), 0).is_err());
        let many: Vec<Metric> = (0..=limits::METRICS).map(|_| metric("x")).collect();
        let err = validate_report(a, &report(1, many), 0).unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument);
        assert!(err.message().contains("limit"), "{}", err.message());
    }

    #[test]
    fn huge_label_sets_are_refused_naming_the_metric_and_the_limit() {
        let a = Uuid::new_v4();
        let labelled = |n: usize, value_len: usize| {
            let mut m = metric("disk.used_pct");
            m.labels = (0..n)
                .map(|i| Label {
                    name: format!("l{i}"),
                    value: "v".repeat(value_len),
                })
                .collect();
            m
        };
        assert!(validate_report(a, &report(1, vec![labelled(limits::LABELS, 10)]), 0).is_ok());
        for huge in [limits::LABELS + 1, 100_000] {
            let err = validate_report(a, &report(1, vec![labelled(huge, 10)]), 0).unwrap_err();
            assert_eq!(err.code(), tonic::Code::InvalidArgument);
            assert_eq!(
                err.message(),
                format!(
                    "metric disk.used_pct has {huge} labels; the limit is {}",
                    limits::LABELS
                )
            );
        }
        let long = labelled(1, limits::LABEL_VALUE_LEN + 1);
        let err = validate_report(a, &report(1, vec![long]), 0).unwrap_err();
        assert!(err.message().contains("invalid label"), "{}", err.message());
        assert!(
            validate_report(a, &report(1, vec![labelled(1, limits::LABEL_VALUE_LEN)]), 0).is_ok()
        );
    }
}
