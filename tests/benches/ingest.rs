//! Ingest throughput through TLS + gRPC + storage, with the default rule set
//! and with no rules, and the time from a breaching report's commit (its
//! ack) to the incident row. Real collector on 127.0.0.1, real TLS, a real
//! SQLite file; the senders are raw enrolled streams (no collection cost).
//!
//! Run: `cargo bench -p xunjian-tests --bench ingest`. It measures and
//! prints; it asserts nothing, so it is not a test.

use std::time::{Duration, Instant};

use tokio_stream::wrappers::ReceiverStream;
use xunjian_agent::enroll::Credentials;
use xunjian_agent::transport;
use xunjian_proto::{
    AgentMessage, Hello, Label, Metric, MetricBatch, Report, Section, agent_message,
    collector_message, ingest_client::IngestClient, section,
};
use xunjian_tests::*;

const STREAMS: usize = 8;
const METRICS_PER_REPORT: usize = 40;
const RUN: Duration = Duration::from_secs(8);

fn report(seq: u64, fs_pct: f64) -> AgentMessage {
    report_on(seq, fs_pct, "/")
}

fn report_on(seq: u64, fs_pct: f64, mount: &str) -> AgentMessage {
    let mut metrics: Vec<Metric> = (0..METRICS_PER_REPORT - 1)
        .map(|i| Metric {
            name: format!("bench.m{i}"),
            labels: vec![Label {
                name: "k".into(),
                value: "v".into(),
            }],
            value: i as f64,
            at_unix_ms: 0,
        })
        .collect();
    metrics.push(Metric {
        name: "fs.used_pct".into(),
        labels: vec![Label {
            name: "mount".into(),
            value: mount.into(),
        }],
        value: fs_pct,
        at_unix_ms: 0,
    });
    AgentMessage {
        kind: Some(agent_message::Kind::Report(Report {
            sequence: seq,
            collected_at_unix_ms: chrono_now(),
            sections: vec![Section {
                kind: Some(section::Kind::Metrics(MetricBatch { metrics })),
            }],
            ..Default::default()
        })),
    }
}

fn chrono_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// Streams reports as fast as acks come back (window 64) until `until`;
/// returns the number acknowledged.
async fn pump(url: String, creds: Credentials, until: Instant) -> u64 {
    let channel = transport::connect(&creds, &url, None)
        .await
        .expect("connects");
    let (tx, rx) = tokio::sync::mpsc::channel(128);
    tx.send(AgentMessage {
        kind: Some(agent_message::Kind::Hello(Hello::default())),
    })
    .await
    .unwrap();
    let mut inbound = IngestClient::new(channel)
        .stream(ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    let (mut sent, mut acked) = (0u64, 0u64);
    loop {
        while sent < acked + 64 && Instant::now() < until {
            sent += 1;
            tx.send(report(sent, 50.0)).await.unwrap();
        }
        if Instant::now() >= until && acked >= sent {
            return acked;
        }
        match inbound.message().await {
            Ok(Some(m)) => {
                if let Some(collector_message::Kind::Ack(a)) = m.kind {
                    acked = a.sequence;
                }
            }
            _ => return acked,
        }
    }
}

async fn throughput(label: &str, rules: Option<&str>) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("collector");
    let mut config = collector_config(&data, 0);
    if let Some(text) = rules {
        let path = dir.path().join("rules.toml");
        std::fs::write(&path, text).unwrap();
        config.alerting.rules_file = Some(path);
    }
    let collector = TestCollector::start_with(config).await;
    let mut creds = Vec::new();
    for i in 0..STREAMS {
        creds.push(enroll_agent(&data, &collector.url(), &dir.path().join(format!("a{i}"))).await);
    }
    let until = Instant::now() + RUN;
    let start = Instant::now();
    let tasks: Vec<_> = creds
        .into_iter()
        .map(|c| tokio::spawn(pump(collector.url(), c, until)))
        .collect();
    let mut total = 0;
    for t in tasks {
        total += t.await.unwrap();
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{label:<22} {STREAMS} streams: {:>8.0} reports/s, {:>9.0} samples/s ({total} reports in {secs:.1} s)",
        total as f64 / secs,
        (total as usize * METRICS_PER_REPORT) as f64 / secs
    );
    collector.stop().await;
}

async fn breach_latency() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("collector");
    let collector = TestCollector::start(&data).await; // built-in default rules
    let creds = enroll_agent(&data, &collector.url(), &dir.path().join("a")).await;
    let channel = transport::connect(&creds, &collector.url(), None)
        .await
        .unwrap();
    let (tx, rx) = tokio::sync::mpsc::channel(8);
    tx.send(AgentMessage {
        kind: Some(agent_message::Kind::Hello(Hello::default())),
    })
    .await
    .unwrap();
    let mut inbound = IngestClient::new(channel)
        .stream(ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    let conn = db(&data);
    let mut samples = Vec::new();
    // Each breach is on its own filesystem (its own incident key): the same
    // key breaching and recovering over and over would be flap-damped.
    for i in 0..20u64 {
        let seq = i + 1;
        let mount = format!("/data{i}");
        tx.send(report_on(seq, 99.0, &mount)).await.unwrap();
        loop {
            if let Ok(Some(m)) = inbound.message().await
                && matches!(m.kind, Some(collector_message::Kind::Ack(ref a)) if a.sequence == seq)
            {
                break;
            }
        }
        let acked = Instant::now();
        let opened = |c: &rusqlite::Connection| -> i64 {
            c.query_row(
                "SELECT count(*) FROM incidents WHERE rule_id = 'fs.used.critical'",
                [],
                |r| r.get::<_, i64>(0),
            )
            .unwrap_or(0)
        };
        while opened(&conn) < seq as i64 {
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
        samples.push(acked.elapsed());
    }
    samples.sort();
    println!(
        "breach to incident (from the ack, i.e. after commit): median {:.1} ms, max {:.1} ms over {} breaches",
        samples[samples.len() / 2].as_secs_f64() * 1e3,
        samples[samples.len() - 1].as_secs_f64() * 1e3,
        samples.len()
    );
    collector.stop().await;
}

#[tokio::main]
async fn main() {
    println!(
        "ingest benchmark ({} CPUs, {METRICS_PER_REPORT} samples per report)",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    throughput("no rules", Some("")).await;
    throughput("default rule set", None).await;
    breach_latency().await;
}
