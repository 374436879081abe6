//! Durability and fault tests (issue 6): a database that runs out of space,
//! an outage longer than the agent's spool bound, agents SIGKILLed at random
//! points, and peers that stop reading or go silent. Real TLS on 127.0.0.1,
//! real SQLite files, real processes where a crash is the point; every wait
//! is for an event (bounded by `PATIENCE`), never for an amount of time.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use uuid::Uuid;
use xunjian_agent::config::AgentConfig;
use xunjian_agent::enroll::Credentials;
use xunjian_agent::spool::{Spool, SpoolStatus};
use xunjian_collector::clock::{Clock, SystemClock};
use xunjian_collector::store;
use xunjian_proto::{
    AgentMessage, CollectorMessage, Label, Metric, MetricBatch, Report, Section, agent_message,
    collector_message, ingest_client::IngestClient, section,
};
use xunjian_tests::*;

const HARNESS: &str = env!("CARGO_BIN_EXE_xunjian-harness");
const HOUR: Duration = Duration::from_secs(3600);
const MIB: u64 = 1024 * 1024;

/// A Monitoring Plugins style check printing 256 perfdata values with long
/// labels: every report that runs it is about 80 KB, so a 1 MiB spool (the
/// smallest an operator may configure) fills within a dozen reports, and
/// every report needs fresh database pages.
const BULK_SCRIPT: &str = r#"printf 'OK - bulk |'
i=100
while [ $i -lt 356 ]; do
  printf " 'padding_padding_padding_padding_padding_padding_padding_padding_padding_padding_padding_padding_padding_padding_%d'=%d;80;90" $i $i
  i=$((i + 1))
done
echo
"#;

/// An agent running only the `bulk` custom check (no CPU sampling, so a
/// report takes milliseconds), with the smallest spool allowed. It spools
/// two reports at start (the first collection cycle and the first run of
/// the check); after that it collects only when asked (`collect_one`).
fn bulky_agent_config(dir: &Path, agent_dir: &Path, url: &str) -> AgentConfig {
    let script = dir.join("bulk.sh");
    std::fs::write(&script, BULK_SCRIPT).unwrap();
    let mut config = agent_config(agent_dir, url, HOUR);
    config.collect.areas = vec!["plugins".into()];
    config.checks = vec![
        toml::from_str(&format!(
            "id = \"bulk\"\ncommand = [\"/bin/sh\", \"{}\"]\ninterval = \"24h\"\n",
            script.display()
        ))
        .expect("a valid check"),
    ];
    config.spool.max_bytes = MIB;
    config
}

/// Waits until the agent's start-up reports are spooled and acknowledged.
async fn settled(agent: &TestAgent) -> u64 {
    wait_until("the start-up reports to be acknowledged", || {
        let s = agent.handle.spool_status();
        // The spool records an ack before the watermark is published.
        s.last_seq >= 2 && s.acked_seq == s.last_seq && agent.acked() == s.last_seq
    })
    .await;
    agent.acked()
}

/// A TCP relay in front of the collector. It counts the connections it
/// accepts, and it can be frozen: then it forwards nothing and closes
/// nothing, like a path that went silent (a peer powered off, NAT state
/// lost) while both sockets stay open.
struct Relay {
    port: u16,
    frozen: watch::Sender<bool>,
    accepted: Arc<AtomicUsize>,
}

impl Relay {
    async fn start(target: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (frozen, frozen_rx) = watch::channel(false);
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = accepted.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                let frozen = frozen_rx.clone();
                tokio::spawn(async move {
                    let Ok(server) = TcpStream::connect(target).await else {
                        return; // collector down: the client sees the connection close
                    };
                    let (client_read, client_write) = client.into_split();
                    let (server_read, server_write) = server.into_split();
                    tokio::join!(
                        pipe(client_read, server_write, frozen.clone()),
                        pipe(server_read, client_write, frozen),
                    );
                });
            }
        });
        Self {
            port,
            frozen,
            accepted,
        }
    }

    fn url(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }

    fn connections(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    fn freeze(&self) {
        self.frozen.send_replace(true);
    }
}

async fn pipe(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, mut frozen: watch::Receiver<bool>) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        tokio::select! {
            biased;
            () = until_frozen(&mut frozen) => {
                // Both sockets stay open (owned by this frame) and silent
                // until the test ends.
                std::future::pending::<()>().await;
            }
            n = from.read(&mut buf) => match n {
                Ok(0) | Err(_) => {
                    let _ = to.shutdown().await;
                    return;
                }
                Ok(n) => {
                    if to.write_all(&buf[..n]).await.is_err() {
                        return;
                    }
                }
            },
        }
    }
}

async fn until_frozen(frozen: &mut watch::Receiver<bool>) {
    // The guard `wait_for` returns is not Send: drop it here.
    let _ = frozen.wait_for(|f| *f).await;
}

/// A report of `metrics` distinct series (0 = an empty report).
fn report(seq: u64, metrics: usize) -> AgentMessage {
    let metrics = (0..metrics)
        .map(|i| Metric {
            name: format!("probe.metric_{i}"),
            labels: vec![Label {
                name: "padding".into(),
                value: "p".repeat(64),
            }],
            value: i as f64,
            at_unix_ms: 0,
        })
        .collect();
    AgentMessage {
        kind: Some(agent_message::Kind::Report(Report {
            sequence: seq,
            collected_at_unix_ms: SystemClock.now_ms(),
            sections: vec![Section {
                kind: Some(section::Kind::Metrics(MetricBatch { metrics })),
            }],
            ..Default::default()
        })),
    }
}

/// Opens an Ingest stream as `creds` and sends `messages` (the sender is
/// returned so the stream stays open).
async fn open_stream(
    url: &str,
    creds: &Credentials,
    messages: Vec<AgentMessage>,
) -> (
    mpsc::Sender<AgentMessage>,
    Result<tonic::Streaming<CollectorMessage>, tonic::Status>,
) {
    let channel = collector_endpoint(url, &creds.ca_pem, Some(creds))
        .connect()
        .await
        .expect("connects");
    let (tx, rx) = mpsc::channel(messages.len().max(1));
    for m in messages {
        tx.send(m).await.unwrap();
    }
    let response = IngestClient::new(channel)
        .max_encoding_message_size(64 * 1024 * 1024)
        .stream(ReceiverStream::new(rx))
        .await
        .map(tonic::Response::into_inner);
    (tx, response)
}

/// Sends Hello and one report; returns the stream's end status, or Ok once
/// the report is acknowledged.
async fn send_one(
    url: &str,
    creds: &Credentials,
    report: AgentMessage,
) -> Result<(), tonic::Status> {
    let (_tx, inbound) = open_stream(url, creds, vec![hello_message(""), report]).await;
    let mut inbound = inbound?;
    loop {
        let message = tokio::time::timeout(PATIENCE, inbound.message())
            .await
            .expect("the collector answers")?;
        match message.and_then(|m| m.kind) {
            Some(collector_message::Kind::Ack(_)) => return Ok(()),
            Some(_) => {}
            None => return Err(tonic::Status::unknown("stream ended without an ack")),
        }
    }
}

/// Whether the collector gives `creds` a stream now: Ok after its Resume,
/// or the refusal.
async fn admitted(url: &str, creds: &Credentials) -> Result<(), tonic::Status> {
    let (_tx, inbound) = open_stream(url, creds, vec![hello_message("")]).await;
    let first = tokio::time::timeout(PATIENCE, inbound?.message())
        .await
        .expect("the collector answers")?;
    match first.and_then(|m| m.kind) {
        Some(collector_message::Kind::Resume(_)) => Ok(()),
        other => panic!("expected Resume first, got {other:?}"),
    }
}

/// The agent's rows stored up to `seq`: reports, samples, check results.
fn rows_up_to(conn: &rusqlite::Connection, agent: Uuid, seq: u64) -> (i64, i64, i64) {
    let q = |sql: &str| {
        conn.query_row(sql, rusqlite::params![agent.to_string(), seq as i64], |r| {
            r.get(0)
        })
        .unwrap()
    };
    (
        q("SELECT count(*) FROM reports WHERE agent_id = ?1 AND sequence <= ?2"),
        q(
            "SELECT coalesce(sum(samples), 0) FROM sample_blocks WHERE agent_id = ?1 AND sequence <= ?2",
        ),
        q(
            "SELECT coalesce(sum(results), 0) FROM check_blocks WHERE agent_id = ?1 AND sequence <= ?2",
        ),
    )
}

fn integrity(conn: &rusqlite::Connection) -> String {
    conn.query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap()
}

/// `received_at` of the agent's reports in sequence order never goes back.
fn assert_received_in_order(conn: &rusqlite::Connection, agent: Uuid) {
    let mut stmt = conn
        .prepare("SELECT sequence, received_at FROM reports WHERE agent_id = ?1 ORDER BY sequence")
        .unwrap();
    let received: Vec<(i64, i64)> = stmt
        .query_map([agent.to_string()], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert!(
        received.windows(2).all(|w| w[0].1 <= w[1].1),
        "stored out of order, (sequence, received_at): {received:?}"
    );
}

#[tokio::test]
async fn a_full_database_refuses_reports_retryably_and_takes_every_spooled_one_in_order_once_space_is_freed()
 {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("collector");
    let collector = TestCollector::start(&data).await;
    let addr = collector.addr;
    let agent_dir = dir.path().join("agent");
    let creds = enroll_agent(&data, &collector.url(), &agent_dir).await;
    let probe = enroll_agent(&data, &collector.url(), &dir.path().join("probe")).await;
    // The agent goes through a relay that counts its connection attempts.
    let relay = Relay::start(addr).await;
    let agent = TestAgent::start(&bulky_agent_config(dir.path(), &agent_dir, &relay.url())).await;
    let stored_before = settled(&agent).await;
    collector.stop().await;

    // The database is capped at its current size (`storage.max_db_bytes`),
    // with 4 MiB of filler in it standing for data an operator can prune.
    let db_path = data.join("xunjian.db");
    let size = {
        let conn = store::open(&db_path).unwrap();
        conn.execute_batch(
            "CREATE TABLE durability_filler (b BLOB);
             WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 64)
             INSERT INTO durability_filler SELECT zeroblob(65536) FROM n;
             VACUUM;",
        )
        .unwrap();
        let pages = count(&conn, "PRAGMA page_count");
        let page_size = count(&conn, "PRAGMA page_size");
        (pages * page_size) as u64
    };
    let rows_before = rows_up_to(&db(&data), creds.agent_id, stored_before);
    let mut config = collector_config(&data, addr.port());
    config.storage.max_db_bytes = Some(size);
    let collector = TestCollector::start_with(config).await;
    let url = collector.url();

    // Ingest answers a clear, retryable error.
    let status = send_one(&url, &probe, report(1, 500)).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
    assert!(
        status.message().contains("full") && status.message().contains("retry"),
        "{}",
        status.message()
    );

    // The agent keeps collecting into its spool; nothing is acked or dropped.
    let full_reports = 4;
    for _ in 0..full_reports {
        agent.collect_one().await;
    }
    let last = agent.handle.spool_status().last_seq;
    // Two more connections after the last report was spooled: the stream
    // that carried it has ended without its ack, and the agent retried.
    let attempts = relay.connections();
    wait_until("the agent to retry while storage is full", || {
        relay.connections() >= attempts + 2
    })
    .await;
    let spool = agent.handle.spool_status();
    assert_eq!(agent.acked(), stored_before, "acked while full: {spool:?}");
    assert_eq!(spool.pending_reports, full_reports, "{spool:?}");
    assert_eq!(spool.dropped_reports_total, 0, "{spool:?}");
    // What was stored before is intact and unchanged.
    let conn = db(&data);
    assert_eq!(integrity(&conn), "ok");
    assert_eq!(
        stored_sequences(&conn, creds.agent_id),
        (1..=stored_before).collect::<Vec<_>>()
    );
    assert_eq!(
        rows_up_to(&conn, creds.agent_id, stored_before),
        rows_before
    );

    // Space is freed: the running collector takes everything, in order.
    store::open(&db_path)
        .unwrap()
        .execute_batch("DROP TABLE durability_filler")
        .unwrap();
    agent.wait_acked(last).await;
    let next = agent.collect_one().await;
    agent.wait_acked(next).await;
    assert_eq!(
        stored_sequences(&conn, creds.agent_id),
        (1..=next).collect::<Vec<_>>()
    );
    assert_received_in_order(&conn, creds.agent_id);
    assert_eq!(
        rows_up_to(&conn, creds.agent_id, stored_before),
        rows_before
    );
    assert_eq!(integrity(&conn), "ok");
    assert_eq!(
        ack_problems(&conn, &[(creds.agent_id, next)]),
        Vec::<String>::new()
    );
    let spool = agent.handle.spool_status();
    assert_eq!(
        (spool.pending_reports, spool.dropped_reports_total),
        (0, 0),
        "{spool:?}"
    );
    // The probe's refused report can be sent again now.
    send_one(&url, &probe, report(1, 500)).await.unwrap();
    agent.stop().await;
    collector.stop().await;
}

/// Collects until `done` holds for the spool status; returns that status.
async fn collect_until(agent: &TestAgent, done: impl Fn(&SpoolStatus) -> bool) -> SpoolStatus {
    loop {
        let status = agent.handle.spool_status();
        if done(&status) {
            return status;
        }
        agent.collect_one().await;
    }
}

#[tokio::test]
async fn an_outage_within_the_spool_bound_loses_nothing_and_past_it_drops_the_oldest_counted_and_reported()
 {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("collector");
    let collector = TestCollector::start(&data).await;
    let port = collector.addr.port();
    let agent_dir = dir.path().join("agent");
    let creds = enroll_agent(&data, &collector.url(), &agent_dir).await;
    let agent = TestAgent::start(&bulky_agent_config(
        dir.path(),
        &agent_dir,
        &collector.url(),
    ))
    .await;
    settled(&agent).await;

    // Outage 1: the spool fills to three quarters of its bound.
    collector.stop().await;
    let within = collect_until(&agent, |s| s.pending_bytes >= 3 * MIB / 4).await;
    assert_eq!(within.dropped_reports_total, 0, "{within:?}");
    let collector = TestCollector::start_on(&data, port).await;
    agent.wait_acked(within.last_seq).await;
    let conn = db(&data);
    assert_eq!(
        stored_sequences(&conn, creds.agent_id),
        (1..=within.last_seq).collect::<Vec<_>>()
    );
    assert_received_in_order(&conn, creds.agent_id);

    // Outage 2: past the bound, then a few more reports.
    collector.stop().await;
    let first_drop = collect_until(&agent, |s| s.dropped_reports_total > 0).await;
    let past = collect_until(&agent, |s| s.last_seq >= first_drop.last_seq + 3).await;
    let dropped = past.dropped_reports_total;
    assert!(
        past.pending_bytes <= MIB + 128 * 1024,
        "bound not kept: {past:?}"
    );
    assert_eq!(
        past.acked_seq + dropped + past.pending_reports,
        past.last_seq
    );
    let collector = TestCollector::start_on(&data, port).await;
    agent.wait_acked(past.last_seq).await;

    // Exactly the oldest `dropped` are missing; delivery is contiguous after the gap.
    let expected: Vec<u64> = (1..=past.acked_seq)
        .chain(past.acked_seq + dropped + 1..=past.last_seq)
        .collect();
    assert_eq!(stored_sequences(&conn, creds.agent_id), expected);
    assert_received_in_order(&conn, creds.agent_id);
    assert_eq!(agent.handle.spool_status().dropped_reports_total, dropped);
    // The drop is reported to the collector and raises the default rule's incident.
    let agent_id = creds.agent_id.to_string();
    let reported = || {
        conn.query_row(
            "SELECT spool_dropped_reports_total FROM agents WHERE agent_id = ?1",
            [&agent_id],
            |r| r.get::<_, i64>(0),
        )
        .unwrap()
    };
    wait_until("the drop count to reach the collector", || {
        reported() == dropped as i64
    })
    .await;
    let incident = format!(
        "SELECT count(*) FROM incidents WHERE rule_id = 'agent.spool_dropping' AND agent_id = '{agent_id}' AND state = 'open'"
    );
    wait_until("the spool-drop incident to open", || {
        count(&conn, &incident) == 1
    })
    .await;
    assert_eq!(
        ack_problems(&conn, &[(creds.agent_id, past.acked_seq)]),
        Vec::<String>::new()
    );
    agent.stop().await;
    collector.stop().await;
}

/// A report the collector will never store (here a metric name it refuses,
/// as a faulty plugin could produce) would be resent forever ahead of
/// everything after it: the agent sets it aside in its quarantine, counts it
/// as dropped, and the reports after it are delivered.
#[tokio::test]
async fn a_report_refused_for_its_content_is_quarantined_and_the_reports_after_it_delivered() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("collector");
    let collector = TestCollector::start(&data).await;
    let agent_dir = dir.path().join("agent");
    let creds = enroll_agent(&data, &collector.url(), &agent_dir).await;
    let config = bulky_agent_config(dir.path(), &agent_dir, &collector.url());
    {
        // A good report (its spool count, none sent, reads 0: the rules'
        // baseline for this agent), then the one the collector refuses.
        let (mut spool, _) =
            Spool::open(&config.data_dir.join("spool"), config.spool.max_bytes).unwrap();
        for name in ["probe.ok", "Bad Name"] {
            spool
                .append(|seq| {
                    prost::Message::encode_to_vec(&Report {
                        sequence: seq,
                        collected_at_unix_ms: SystemClock.now_ms(),
                        sections: vec![Section {
                            kind: Some(section::Kind::Metrics(MetricBatch {
                                metrics: vec![Metric {
                                    name: name.into(),
                                    value: 1.0,
                                    ..Default::default()
                                }],
                            })),
                        }],
                        ..Default::default()
                    })
                })
                .unwrap();
        }
    }
    let agent = TestAgent::start(&config).await;
    // The two start-up reports (3 and 4) come after the refused one.
    wait_until("the start-up reports to be acknowledged", || {
        let s = agent.handle.spool_status();
        s.last_seq >= 4 && s.acked_seq == s.last_seq && agent.acked() == s.last_seq
    })
    .await;
    let conn = db(&data);
    assert_eq!(stored_sequences(&conn, creds.agent_id), vec![1, 3, 4]);
    let kept = config
        .data_dir
        .join("spool/quarantine")
        .join(format!("{:020}", 2));
    let reason = std::fs::read_to_string(kept.with_extension("reason")).unwrap();
    assert!(reason.contains("Bad Name"), "{reason}");
    assert!(kept.with_extension("report").exists());
    assert_eq!(agent.handle.spool_status().dropped_reports_total, 1);
    // Counted like any drop: the next report carries it and the default
    // rule, which saw 0 in report 1, opens an incident.
    let seq = agent.collect_one().await;
    agent.wait_acked(seq).await;
    let incident = format!(
        "SELECT count(*) FROM incidents WHERE rule_id = 'agent.spool_dropping' AND agent_id = '{}' AND state = 'open'",
        creds.agent_id
    );
    wait_until("the spool-drop incident to open", || {
        count(&conn, &incident) == 1
    })
    .await;
    agent.stop().await;
    collector.stop().await;
}

/// An agent process's config: the `disks` area only (inode usage from
/// statvfs, no CPU sampling), so it spools a report about every 10 ms.
fn write_fast_agent_toml(path: &Path, agent_dir: &Path, url: &str) {
    std::fs::write(
        path,
        format!(
            "collector = \"{url}\"\ndata_dir = \"{}\"\n[collect]\nmetrics_interval = \"10ms\"\nareas = [\"disks\"]\n",
            agent_dir.display()
        ),
    )
    .unwrap();
}

/// Bytes in the spool's segment files.
fn spool_bytes(spool_dir: &Path) -> u64 {
    std::fs::read_dir(spool_dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter(|e| e.file_name().to_string_lossy().ends_with(".seg"))
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

/// The agent's last stored sequence as the collector has it.
fn last_stored(conn: &rusqlite::Connection, agent: Uuid) -> u64 {
    conn.query_row(
        "SELECT last_sequence FROM agents WHERE agent_id = ?1",
        [agent.to_string()],
        |r| r.get::<_, i64>(0),
    )
    .unwrap() as u64
}

#[tokio::test]
async fn agents_sigkilled_at_random_points_lose_nothing_they_spooled_and_store_nothing_twice() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("collector");
    let mut collector = Some(TestCollector::start(&data).await);
    let port = collector.as_ref().unwrap().addr.port();
    let url = format!("https://127.0.0.1:{port}");
    let agent_dir = dir.path().join("agent");
    let spool_dir = agent_dir.join("spool");
    let creds = enroll_agent(&data, &url, &agent_dir).await;
    let toml = dir.path().join("agent.toml");
    write_fast_agent_toml(&toml, &agent_dir, &url);
    let spawn = |name: &str| {
        Proc::spawn(
            Path::new(HARNESS),
            "agent",
            &["run", "--config", toml.to_str().unwrap()],
            &dir.path().join(format!("agent-{name}.log")),
        )
    };
    let mut rng = TestRng::from_env_or_time("XUNJIAN_KILL_SEED");
    let conn = db(&data);
    // What each killed agent had made durable, as its next start recovers it.
    let mut spooled_at_kills = Vec::new();
    // Kill points: while sending (collector up; collection goes on every
    // 10 ms, so appends are under way too), while only spooling (collector
    // down), while replaying that backlog, while sending, while spooling.
    let plan = [true, false, true, true, false];
    for (kill, collector_up) in plan.into_iter().enumerate() {
        if collector_up && collector.is_none() {
            collector = Some(TestCollector::start_on(&data, port).await);
        }
        if !collector_up && let Some(c) = collector.take() {
            c.stop().await;
        }
        let proc = spawn(&kill.to_string());
        if collector_up {
            let before = last_stored(&conn, creds.agent_id);
            let more = rng.between(1, 20);
            wait_until("the agent to deliver more", || {
                last_stored(&conn, creds.agent_id) >= before + more
            })
            .await;
        } else {
            let before = spool_bytes(&spool_dir);
            let more = rng.between(1, 16 * 1024);
            wait_until("the agent to spool more", || {
                spool_bytes(&spool_dir) >= before + more
            })
            .await;
        }
        proc.kill9();
        let (spool, recovery) = Spool::open(&spool_dir, 256 * MIB).unwrap();
        let status = spool.status();
        drop(spool);
        println!(
            "kill {kill} (collector {}): {status:?}, {recovery:?}",
            if collector_up { "up" } else { "down" }
        );
        // An ack means stored: everything the killed agent had acked is there.
        let acked_missing = ack_problems(&db(&data), &[(creds.agent_id, status.acked_seq)]);
        assert_eq!(acked_missing, Vec::<String>::new(), "after kill {kill}");
        spooled_at_kills.push(status.last_seq);
    }

    // A last run, stopped cleanly once it has delivered all that was
    // spooled and something new (so it is up and handling signals).
    let collector = match collector {
        Some(c) => c,
        None => TestCollector::start_on(&data, port).await,
    };
    let mut proc = spawn("final");
    let spooled = *spooled_at_kills.iter().max().unwrap();
    wait_until("the final agent to deliver what was spooled", || {
        last_stored(&conn, creds.agent_id) > spooled
    })
    .await;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(proc.pid()),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    // Polled, not a blocking wait: the collector runs on this test's
    // runtime and must keep acking while the agent drains its spool.
    let mut exit = None;
    wait_until("the agent to exit", || {
        exit = proc.child.try_wait().unwrap();
        exit.is_some()
    })
    .await;
    let exit = exit.unwrap();
    assert!(exit.success(), "agent exits cleanly on SIGTERM: {exit}");
    let (spool, _) = Spool::open(&spool_dir, 256 * MIB).unwrap();
    let last = spool.status();

    let stored = stored_sequences(&conn, creds.agent_id);
    let missing: Vec<u64> = (1..=last.last_seq)
        .filter(|s| stored.binary_search(s).is_err())
        .collect();
    assert!(
        missing.len() as u64 <= last.dropped_reports_total,
        "lost without being counted as dropped: {missing:?} ({last:?})"
    );
    assert!(
        stored.last().is_some_and(|&l| l <= last.last_seq),
        "stored beyond the agent's last sequence: {:?} > {}",
        stored.last(),
        last.last_seq
    );
    assert_eq!(
        ack_problems(&conn, &[(creds.agent_id, last.acked_seq)]),
        Vec::<String>::new()
    );
    println!(
        "{} reports stored, {} dropped, kills at {spooled_at_kills:?}",
        stored.len(),
        last.dropped_reports_total
    );
    collector.stop().await;
}

#[tokio::test]
async fn a_peer_that_stops_reading_acks_is_closed_after_the_stall_timeout_and_frees_its_slot() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("collector");
    let mut config = collector_config(&data, 0);
    config.server.max_agents = 1;
    config.server.stall_timeout = Duration::from_secs(1);
    let collector = TestCollector::start_with(config).await;
    let url = collector.url();
    let stuck = enroll_agent(&data, &url, &dir.path().join("stuck")).await;
    let other = enroll_agent(&data, &url, &dir.path().join("other")).await;

    // A client that lets almost nothing of the collector's answers in (a
    // 64-byte HTTP/2 stream window) and never reads them.
    let channel = collector_endpoint(&url, &stuck.ca_pem, Some(&stuck))
        .initial_stream_window_size(64)
        .connect()
        .await
        .unwrap();
    let reports = 300;
    let (tx, rx) = mpsc::channel(reports + 1);
    tx.send(hello_message("")).await.unwrap();
    for seq in 1..=reports as u64 {
        tx.send(report(seq, 0)).await.unwrap();
    }
    let _unread = IngestClient::new(channel)
        .stream(ReceiverStream::new(rx))
        .await
        .unwrap();
    let sessions = collector.collector().sessions();
    wait_until("the stuck stream to be registered", || {
        sessions.connected().contains(&stuck.agent_id)
    })
    .await;
    // It holds the only agent slot.
    let refused = admitted(&url, &other).await.unwrap_err();
    assert_eq!(
        refused.code(),
        tonic::Code::ResourceExhausted,
        "{refused:?}"
    );

    // The collector closes it, although the client keeps the stream open
    // and answers HTTP/2 pings, and frees the slot.
    wait_until("the stalled stream to be closed", || {
        !sessions.connected().contains(&stuck.agent_id)
    })
    .await;
    admitted(&url, &other).await.unwrap();
    // What it sent was stored (only the acks went unread), once.
    let conn = db(&data);
    let stored = stored_sequences(&conn, stuck.agent_id);
    assert!(!stored.is_empty() && stored.len() <= reports, "{stored:?}");
    assert_eq!(
        stored,
        (1..=stored.len() as u64).collect::<Vec<_>>(),
        "stored out of order"
    );
    // An orderly stop is not held up by the peer that does not read
    // (HTTP/2 cannot finish its stream): it ends after the grace.
    tokio::time::timeout(PATIENCE, collector.stop())
        .await
        .expect("the collector stops although a peer is stuck");
    drop(tx);
}

#[tokio::test]
async fn a_peer_that_goes_silent_is_dropped_by_keepalive_and_frees_its_slot() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("collector");
    let mut config = collector_config(&data, 0);
    config.server.max_agents = 1;
    // The smallest values the config accepts.
    config.server.keepalive_interval = Duration::from_secs(1);
    config.server.keepalive_timeout = Duration::from_secs(1);
    let collector = TestCollector::start_with(config).await;
    let url = collector.url();
    let relay = Relay::start(collector.addr).await;
    let silent_dir = dir.path().join("silent");
    let silent = enroll_agent(&data, &url, &silent_dir).await;
    let other = enroll_agent(&data, &url, &dir.path().join("other")).await;

    let agent = TestAgent::start(&agent_config(&silent_dir, &relay.url(), HOUR)).await;
    agent.wait_acked(1).await;
    let sessions = collector.collector().sessions();
    wait_until("the agent's stream to be registered", || {
        sessions.connected().contains(&silent.agent_id)
    })
    .await;
    let refused = admitted(&url, &other).await.unwrap_err();
    assert_eq!(
        refused.code(),
        tonic::Code::ResourceExhausted,
        "{refused:?}"
    );

    // The path goes silent: the agent's pings and the collector's go unanswered.
    relay.freeze();
    wait_until("keepalive to close the silent connection", || {
        !sessions.connected().contains(&silent.agent_id)
    })
    .await;
    admitted(&url, &other).await.unwrap();
    agent.stop.cancel();
    collector.stop().await;
}

#[tokio::test]
async fn a_connection_that_never_starts_tls_is_closed_by_the_handshake_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let collector = TestCollector::start(&dir.path().join("collector")).await;
    let mut silent = TcpStream::connect(collector.addr).await.unwrap();
    let mut buf = [0u8; 64];
    // The collector gives a TLS handshake 10 s; it then closes the socket.
    let read = tokio::time::timeout(PATIENCE, silent.read(&mut buf))
        .await
        .expect("the collector closes a connection that never speaks");
    assert!(
        matches!(read, Ok(0) | Err(_)),
        "expected the connection to be closed, read {read:?}"
    );
    collector.stop().await;
}
