//! The agent's side of the Ingest stream: connects with its client
//! certificate, sends Hello then every spooled report in order (a large one
//! alone by `Submit`), and applies the collector's acks (deleting acked
//! reports), policies and run-now requests.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use prost::Message;
use tokio::sync::{Notify, mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use xunjian_proto::{
    Ack, AgentMessage, Hello, INLINE_REPORT_MAX_BYTES, Policy, Report, agent_message,
    collector_message, ingest_client::IngestClient,
};

use crate::config::parse_collector_url;
use crate::enroll::Credentials;
use crate::spool::{Spool, SpoolError};

/// Reports sent but not yet acknowledged, at most, per stream.
const WINDOW: u64 = 64;
/// Outgoing messages buffered for the gRPC stream. When full, the sender
/// waits: the HTTP/2 connection is the real bound.
const OUT_CAPACITY: usize = 16;
/// Largest message the agent accepts from the collector.
const MAX_DECODE: usize = 1024 * 1024;
/// Largest report the agent sends (the collector's default limit).
const MAX_ENCODE: usize = 4 * 1024 * 1024;

/// Why a stream ended.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    #[error("cannot connect to {url}: {detail}")]
    Connect { url: String, detail: String },
    #[error("the collector refused the stream: {code:?}: {message}")]
    Refused {
        code: tonic::Code,
        message: String,
        /// The report the collector will never store, when it named one
        /// ([`xunjian_proto::REJECTED_SEQUENCE_METADATA`]).
        rejected: Option<u64>,
    },
    #[error("the collector closed the stream")]
    Closed,
    #[error("spool: {0}")]
    Spool(#[from] SpoolError),
}

impl StreamError {
    /// True when retrying soon cannot help (revoked, not enrolled).
    pub fn is_auth(&self) -> bool {
        matches!(
            self,
            StreamError::Refused {
                code: tonic::Code::Unauthenticated | tonic::Code::PermissionDenied,
                ..
            }
        )
    }
}

/// What the stream loop shares with the rest of the agent.
pub struct Link {
    pub spool: Arc<Mutex<Spool>>,
    /// Signalled after each append to the spool.
    pub new_data: Arc<Notify>,
    /// Highest acknowledged sequence.
    pub acked: watch::Sender<u64>,
    /// The latest policy from the collector.
    pub policy: watch::Sender<Option<Policy>>,
    /// RunNow request ids, for the collection loop. Bounded: a full queue
    /// means a collection is already pending, so extra requests are dropped.
    pub run_now: mpsc::Sender<String>,
}

/// Builds the mTLS channel to the collector.
pub async fn connect(
    creds: &Credentials,
    collector_url: &str,
    server_name: Option<&str>,
) -> Result<Channel, StreamError> {
    let url = parse_collector_url(collector_url).map_err(|detail| StreamError::Connect {
        url: collector_url.to_owned(),
        detail,
    })?;
    let err = |e: tonic::transport::Error| StreamError::Connect {
        url: url.url.clone(),
        detail: error_chain(&e),
    };
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(&creds.ca_pem))
        .identity(Identity::from_pem(&creds.cert_pem, &creds.key_pem))
        .domain_name(server_name.unwrap_or(&url.host).to_owned());
    Endpoint::from_shared(url.url.clone())
        .map_err(err)?
        .connect_timeout(Duration::from_secs(10))
        .http2_keep_alive_interval(Duration::from_secs(30))
        .keep_alive_timeout(Duration::from_secs(20))
        .keep_alive_while_idle(true)
        .tcp_keepalive(Some(Duration::from_secs(60)))
        .tls_config(tls)
        .map_err(err)?
        .connect()
        .await
        .map_err(err)
}

/// Runs one stream until it fails or `stop` is cancelled and everything
/// pending is acknowledged (or `drain_grace` passes).
pub async fn stream_once(
    channel: Channel,
    link: &Link,
    hello: Hello,
    stop: &CancellationToken,
    drain_grace: Duration,
    on_open: impl FnOnce(),
) -> Result<(), StreamError> {
    let (out_tx, out_rx) = mpsc::channel::<AgentMessage>(OUT_CAPACITY);
    out_tx
        .send(AgentMessage {
            kind: Some(agent_message::Kind::Hello(hello)),
        })
        .await
        .map_err(|_| StreamError::Closed)?;
    let client = IngestClient::new(channel)
        .max_decoding_message_size(MAX_DECODE)
        .max_encoding_message_size(MAX_ENCODE);
    let response = client
        .clone()
        .stream(ReceiverStream::new(out_rx))
        .await
        .map_err(refused)?;
    on_open();
    let mut inbound = response.into_inner();
    let mut sent = current_acked(link)?;
    let mut drain_deadline: Option<tokio::time::Instant> = None;
    // A large report being delivered by `Submit`; nothing else is sent
    // until it is acknowledged, so the collector stores reports in order.
    let mut submitting: Option<Submission> = None;
    let mut submit_supported = true;
    loop {
        let acked = *link.acked.borrow();
        // Keep up to WINDOW reports in flight, oldest first.
        if submitting.is_none() && sent.saturating_sub(acked) < WINDOW {
            let room = (WINDOW - sent.saturating_sub(acked)) as usize;
            let batch = read_after(link, sent, room).await?;
            for (seq, bytes) in batch {
                let report = Report::decode(bytes.as_slice());
                let Ok(report) = report else {
                    // Unreadable record (spool bug or disk corruption): it
                    // cannot be sent; skip it loudly rather than stall.
                    tracing::error!(sequence = seq, "undecodable report in spool; skipping it");
                    sent = seq;
                    continue;
                };
                if submit_supported && bytes.len() > INLINE_REPORT_MAX_BYTES {
                    // Alone, after everything before it is acknowledged.
                    if sent == acked {
                        submitting = Some(Submission::start(&client, seq, report));
                        sent = seq;
                    }
                    break;
                }
                if out_tx
                    .send(AgentMessage {
                        kind: Some(agent_message::Kind::Report(report)),
                    })
                    .await
                    .is_err()
                {
                    return Err(StreamError::Closed);
                }
                sent = seq;
            }
        }
        if stop.is_cancelled() {
            let pending = lock(&link.spool).status().pending_reports;
            let deadline =
                *drain_deadline.get_or_insert_with(|| tokio::time::Instant::now() + drain_grace);
            if pending == 0 || tokio::time::Instant::now() >= deadline {
                tracing::info!(pending, "stream closing for shutdown");
                return Ok(());
            }
        }
        let wake = async {
            match drain_deadline {
                Some(d) => tokio::time::sleep_until(d).await,
                None => stop.cancelled().await,
            }
        };
        let submitted = async {
            match submitting.as_mut() {
                Some(s) => (&mut s.call).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = wake => {}
            _ = link.new_data.notified() => {}
            outcome = submitted => {
                let Some(Submission { sequence, .. }) = submitting.take() else {
                    continue;
                };
                match outcome {
                    Ok(Ok(ack)) => apply_ack(link, ack.into_inner().sequence.min(sequence)).await?,
                    Ok(Err(status)) if status.code() == tonic::Code::Unimplemented => {
                        tracing::info!("the collector predates Submit; sending large reports on the stream");
                        submit_supported = false;
                        sent = sequence - 1;
                    }
                    Ok(Err(status)) => return Err(refused(status)),
                    Err(_) => return Err(StreamError::Closed),
                }
            }
            message = inbound.message() => match message {
                Ok(Some(m)) => handle(link, m).await?,
                Ok(None) => return Err(StreamError::Closed),
                Err(status) => return Err(refused(status)),
            },
        }
    }
}

async fn handle(link: &Link, message: xunjian_proto::CollectorMessage) -> Result<(), StreamError> {
    match message.kind {
        Some(collector_message::Kind::Ack(ack)) => apply_ack(link, ack.sequence).await?,
        Some(collector_message::Kind::Policy(p)) => {
            tracing::debug!(metrics_interval_s = p.metrics_interval_s, "policy received");
            link.policy.send_replace(Some(p));
        }
        Some(collector_message::Kind::Resume(r)) => {
            let spool = link.spool.clone();
            let seq = r.last_stored_sequence;
            let dropped = tokio::task::spawn_blocking(move || lock(&spool).skip_to(seq))
                .await
                .map_err(|_| StreamError::Closed)??;
            if dropped > 0 {
                tracing::error!(
                    dropped,
                    last_stored = seq,
                    "spool numbering was behind the collector's (spool wiped?); continuing after it"
                );
            }
            let acked = lock(&link.spool).status().acked_seq;
            publish_acked(link, acked);
        }
        Some(collector_message::Kind::RunNow(r)) => {
            if link.run_now.try_send(r.request_id).is_err() {
                tracing::debug!("a run-now collection is already pending");
            }
        }
        None => tracing::debug!("ignoring an empty or unknown message from the collector"),
    }
    Ok(())
}

/// A report on its way by `Ingest.Submit`.
struct Submission {
    sequence: u64,
    call: tokio::task::JoinHandle<Result<tonic::Response<Ack>, tonic::Status>>,
}

impl Submission {
    fn start(client: &IngestClient<Channel>, sequence: u64, report: Report) -> Self {
        let mut client = client.clone();
        tracing::debug!(sequence, "sending a large report by Submit");
        let call = tokio::spawn(async move { client.submit(report).await });
        Self { sequence, call }
    }
}

impl Drop for Submission {
    /// A stream that ends takes its submission with it: the report stays in
    /// the spool and goes again on the next stream.
    fn drop(&mut self) {
        self.call.abort();
    }
}

/// Deletes the acknowledged reports from the spool and publishes the ack.
async fn apply_ack(link: &Link, seq: u64) -> Result<(), StreamError> {
    let spool = link.spool.clone();
    tokio::task::spawn_blocking(move || lock(&spool).ack(seq))
        .await
        .map_err(|_| StreamError::Closed)??;
    publish_acked(link, seq);
    Ok(())
}

/// When the stream ended because the collector refused a report for its
/// content, sets that report aside in the spool's quarantine so the next
/// stream starts after it. True when one was quarantined.
pub async fn quarantine_rejected(link: &Link, ended: &StreamError) -> bool {
    let StreamError::Refused {
        rejected: Some(seq),
        message,
        ..
    } = ended
    else {
        return false;
    };
    let (spool, seq, reason) = (link.spool.clone(), *seq, message.clone());
    match tokio::task::spawn_blocking(move || lock(&spool).quarantine(seq, &reason)).await {
        Ok(Ok(true)) => {
            publish_acked(link, seq);
            true
        }
        // Not the head any more (acknowledged meanwhile): nothing to set aside.
        Ok(Ok(false)) => false,
        Ok(Err(e)) => {
            tracing::error!(sequence = seq, error = %e, "cannot quarantine the refused report");
            false
        }
        Err(_) => false,
    }
}

/// Raises the published ack watermark (never lowers it).
fn publish_acked(link: &Link, seq: u64) {
    link.acked.send_if_modified(|cur| {
        let newer = seq > *cur;
        if newer {
            *cur = seq;
        }
        newer
    });
}

fn current_acked(link: &Link) -> Result<u64, StreamError> {
    let acked = lock(&link.spool).status().acked_seq;
    publish_acked(link, acked);
    Ok(acked)
}

async fn read_after(
    link: &Link,
    after: u64,
    max: usize,
) -> Result<Vec<(u64, Vec<u8>)>, StreamError> {
    let spool = link.spool.clone();
    let batch = tokio::task::spawn_blocking(move || lock(&spool).read_after(after, max))
        .await
        .map_err(|_| StreamError::Closed)??;
    Ok(batch)
}

/// Locks the spool. A panic while it was held cannot leave it inconsistent on
/// disk (every write is framed and checksummed), so a poisoned lock is used.
pub fn lock(spool: &Mutex<Spool>) -> std::sync::MutexGuard<'_, Spool> {
    spool.lock().unwrap_or_else(|p| p.into_inner())
}

fn refused(status: tonic::Status) -> StreamError {
    let rejected = (status.code() == tonic::Code::InvalidArgument)
        .then(|| {
            status
                .metadata()
                .get(xunjian_proto::REJECTED_SEQUENCE_METADATA)
        })
        .flatten()
        .and_then(|v| v.to_str().ok()?.parse().ok());
    StreamError::Refused {
        rejected,
        code: status.code(),
        message: status.message().to_owned(),
    }
}

/// An error and its causes on one line: tonic's transport errors hide the
/// useful part (refused, TLS failure) in the source chain.
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}
