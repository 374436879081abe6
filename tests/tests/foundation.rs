//! Foundation tests (issue 2): enrollment, mTLS identity, durable and
//! idempotent ingest, spool recovery, bad input. Real TLS on 127.0.0.1, real
//! SQLite files, real processes where a crash is the point.

use std::path::Path;
use std::time::Duration;

use prost::Message;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Certificate, Identity};
use uuid::Uuid;
use xunjian_agent::enroll::{self, Credentials, EnrollError};
use xunjian_agent::transport;
use xunjian_collector::clock::{Clock, SystemClock};
use xunjian_collector::store;
use xunjian_proto::{
    AgentMessage, CollectorMessage, Report, agent_message, ingest_client::IngestClient,
};
use xunjian_tests::*;

const HARNESS: &str = env!("CARGO_BIN_EXE_xunjian-harness");
const HOUR: Duration = Duration::from_secs(3600);

fn report_msg(seq: u64, claimed: &str) -> AgentMessage {
    AgentMessage {
        kind: Some(agent_message::Kind::Report(Report {
            sequence: seq,
            collected_at_unix_ms: SystemClock.now_ms(),
            claimed_agent_id: claimed.into(),
            ..Default::default()
        })),
    }
}

/// Opens a raw Ingest stream with `creds`, sends `messages`, and returns the
/// first error status the collector answers with (None if it only acked).
async fn raw_stream(
    url: &str,
    creds: &Credentials,
    messages: Vec<AgentMessage>,
) -> Result<Vec<CollectorMessage>, tonic::Status> {
    let channel = transport::connect(creds, url, None)
        .await
        .expect("connects");
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    for m in messages {
        tx.send(m).await.unwrap();
    }
    let response = IngestClient::new(channel)
        .max_encoding_message_size(64 * 1024 * 1024)
        .stream(ReceiverStream::new(rx))
        .await?;
    let mut inbound = response.into_inner();
    let mut got = Vec::new();
    loop {
        match tokio::time::timeout(PATIENCE, inbound.message())
            .await
            .expect("collector answers")
        {
            Ok(Some(m)) => {
                let is_ack = matches!(m.kind, Some(xunjian_proto::collector_message::Kind::Ack(_)));
                got.push(m);
                if is_ack {
                    return Ok(got);
                }
            }
            Ok(None) => return Ok(got),
            Err(status) => return Err(status),
        }
    }
}

#[tokio::test]
async fn enrolled_agent_report_is_stored_under_its_certificate_identity_and_acked() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("collector");
    let collector = TestCollector::start(&data).await;
    let agent_dir = dir.path().join("agent");
    let creds = enroll_agent(&data, &collector.url(), &agent_dir).await;

    let agent = TestAgent::start(&agent_config(&agent_dir, &collector.url(), HOUR)).await;
    agent.wait_acked(1).await; // the first report goes out at start
    let conn = db(&data);
    assert_eq!(stored_sequences(&conn, creds.agent_id), vec![1]);
    let (hostname, os, last_seq): (String, String, i64) = conn
        .query_row(
            "SELECT hostname, os_name, last_sequence FROM agents WHERE agent_id = ?1",
            [creds.agent_id.to_string()],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap();
    assert_eq!(hostname, sysinfo_hostname());
    assert!(!os.is_empty());
    assert_eq!(last_seq, 1);
    let agent_id = creds.agent_id.to_string();
    let samples = stored_samples(&conn)
        .into_iter()
        .filter(|s| s.agent_id == agent_id && s.name == "cpu.usage_pct" && s.sequence == 1)
        .count();
    assert_eq!(samples, 1);
    // The host listing the CLI prints sees it with usage figures.
    let hosts = store::hosts(&conn).unwrap();
    assert_eq!(hosts.len(), 1);
    assert!(hosts[0].cpu_usage_pct.is_some() && hosts[0].memory_used_pct.is_some());
    // The key never left the agent: only the certificate's hash is stored.
    assert!(
        std::fs::read_to_string(agent_dir.join("agent.key"))
            .unwrap()
            .contains("PRIVATE KEY")
    );

    // `xunjian rules reload` finds the running collector by its pid file,
    // which must not outlive it.
    let pid_file = data.join("xunjian.pid");
    assert_eq!(
        std::fs::read_to_string(&pid_file).unwrap().trim(),
        std::process::id().to_string()
    );
    agent.stop().await;
    collector.stop().await;
    assert!(!pid_file.exists(), "pid file left behind");
}

fn sysinfo_hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .unwrap()
        .trim()
        .to_owned()
}

#[tokio::test]
async fn unauthenticated_foreign_and_revoked_clients_are_refused_while_a_healthy_agent_streams() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("collector");
    let collector = TestCollector::start(&data).await;
    let url = collector.url();

    let healthy_dir = dir.path().join("healthy");
    let healthy_creds = enroll_agent(&data, &url, &healthy_dir).await;
    let healthy = TestAgent::start(&agent_config(&healthy_dir, &url, HOUR)).await;
    healthy.wait_acked(1).await;

    // 1. No client certificate at all.
    let ca = std::fs::read_to_string(data.join("pki/ca.crt")).unwrap();
    let channel = collector_endpoint(&url, &ca, None).connect().await.unwrap();
    let (_tx, rx) = tokio::sync::mpsc::channel::<AgentMessage>(1);
    let status = IngestClient::new(channel)
        .stream(ReceiverStream::new(rx))
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unauthenticated, "{status:?}");
    assert!(
        status.message().contains("client certificate"),
        "{}",
        status.message()
    );

    // 2. A certificate from another CA (a different collector's).
    let other = tempfile::tempdir().unwrap();
    let other_collector = TestCollector::start(other.path()).await;
    let foreign_dir = dir.path().join("foreign");
    let mut foreign = enroll_agent(other.path(), &other_collector.url(), &foreign_dir).await;
    other_collector.stop().await;
    foreign.ca_pem = ca.clone(); // trusts our collector, presents the other CA's cert
    let result = async {
        let channel = collector_endpoint(&url, &foreign.ca_pem, Some(&foreign))
            .connect()
            .await
            .map_err(|e| e.to_string())?;
        let (tx, rx) = tokio::sync::mpsc::channel::<AgentMessage>(1);
        tx.send(hello_message("")).await.unwrap();
        let resp = IngestClient::new(channel)
            .stream(ReceiverStream::new(rx))
            .await
            .map_err(|s| s.to_string())?;
        resp.into_inner().message().await.map_err(|s| s.to_string())
    }
    .await;
    assert!(
        result.is_err(),
        "a foreign certificate must be refused, got {result:?}"
    );
    let conn = db(&data);
    assert_eq!(
        count(
            &conn,
            &format!(
                "SELECT count(*) FROM reports WHERE agent_id = '{}'",
                foreign.agent_id
            )
        ),
        0
    );

    // 3. A certificate our own CA signed (a stolen CA key, a mis-issued
    // certificate) naming two agents: the healthy one and another. It
    // must speak for neither.
    let two_uris = {
        let issuer = rcgen::Issuer::from_ca_cert_pem(
            &ca,
            rcgen::KeyPair::from_pem(&std::fs::read_to_string(data.join("pki/ca.key")).unwrap())
                .unwrap(),
        )
        .unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::default();
        params.subject_alt_names = [healthy_creds.agent_id, Uuid::new_v4()]
            .into_iter()
            .map(|id| {
                rcgen::SanType::URI(
                    format!("{}{id}", xunjian_proto::AGENT_URI_PREFIX)
                        .try_into()
                        .unwrap(),
                )
            })
            .collect();
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
        let cert = params.signed_by(&key, &issuer).unwrap();
        Credentials {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            ..healthy_creds.clone()
        }
    };
    let reports_before = stored_sequences(&db(&data), healthy_creds.agent_id);
    let status = raw_stream(
        &url,
        &two_uris,
        vec![hello_message(""), report_msg(1_000, "")],
    )
    .await
    .unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unauthenticated, "{status:?}");
    assert!(
        status
            .message()
            .contains("2 URI SANs; exactly one is allowed"),
        "{}",
        status.message()
    );
    assert_eq!(
        stored_sequences(&db(&data), healthy_creds.agent_id),
        reports_before
    );

    // 4. A revoked agent: its open stream is cut and reconnects are refused.
    let revoked_dir = dir.path().join("revoked");
    let revoked_creds = enroll_agent(&data, &url, &revoked_dir).await;
    let revoked = TestAgent::start(&agent_config(&revoked_dir, &url, HOUR)).await;
    revoked.wait_acked(1).await;
    {
        let mut conn = store::open(&data.join("xunjian.db")).unwrap();
        assert!(
            store::revoke_agent(
                &mut conn,
                revoked_creds.agent_id,
                "test",
                "compromised",
                SystemClock.now_ms()
            )
            .unwrap()
        );
    }
    let status = loop {
        match raw_stream(
            &url,
            &revoked_creds,
            vec![hello_message(""), report_msg(100, "")],
        )
        .await
        {
            Err(s) => break s,
            // The revocation list is refreshed every 2 s; until then the
            // stream is still accepted.
            Ok(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    };
    assert_eq!(status.code(), tonic::Code::Unauthenticated, "{status:?}");
    assert!(status.message().contains("revoked"), "{}", status.message());
    // Its open stream is closed within the revocation refresh interval.
    let sessions = collector.collector().sessions();
    wait_until("the revoked agent's stream to be closed", || {
        !sessions.connected().contains(&revoked_creds.agent_id)
    })
    .await;
    let unsent = revoked.collect_one().await;

    // The healthy agent kept streaming through all of this.
    let seq = healthy.collect_one().await;
    healthy.wait_acked(seq).await;

    // The revoked agent's report was spooled but is neither stored nor acked.
    let conn = db(&data);
    assert!(!stored_sequences(&conn, revoked_creds.agent_id).contains(&unsent));
    assert!(revoked.acked() < unsent);
    assert!(revoked.handle.spool_status().pending_reports >= 1);

    revoked.stop().await;
    healthy.stop().await;
    collector.stop().await;
}

#[tokio::test]
async fn an_agent_cannot_write_data_for_another_agent() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("collector");
    let collector = TestCollector::start(&data).await;
    let url = collector.url();
    let a = enroll_agent(&data, &url, &dir.path().join("a")).await;
    let b = enroll_agent(&data, &url, &dir.path().join("b")).await;
    let b_id = b.agent_id.to_string();

    let status = raw_stream(&url, &a, vec![hello_message(""), report_msg(1, &b_id)])
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::PermissionDenied, "{status:?}");
    let status = raw_stream(&url, &a, vec![hello_message(&b_id)])
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::PermissionDenied, "{status:?}");

    let conn = db(&data);
    assert_eq!(count(&conn, "SELECT count(*) FROM reports"), 0);
    // A's own report, with no claim, is stored under A: identity is the certificate's.
    let ok = raw_stream(&url, &a, vec![hello_message(""), report_msg(1, "")])
        .await
        .unwrap();
    assert!(!ok.is_empty());
    assert_eq!(stored_sequences(&conn, a.agent_id), vec![1]);
    assert!(stored_sequences(&conn, b.agent_id).is_empty());
    collector.stop().await;
}

#[tokio::test]
async fn expired_used_up_and_unknown_tokens_are_refused_and_store_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("collector");
    let collector = TestCollector::start(&data).await;
    let url = collector.url();
    let now = SystemClock.now_ms();

    let expired = token(&data, 5, now - 2 * 3_600_000, HOUR);
    let used = token(&data, 1, now, HOUR);
    let unknown = xunjian_proto::token::format(&"0".repeat(32), &collector.ca_fingerprint);
    let first = dir.path().join("first");
    enroll::enroll(&first, &url, &used, None)
        .await
        .expect("first use works");
    let agents_before = count(&db(&data), "SELECT count(*) FROM agents");
    let tokens_before = count(&db(&data), "SELECT sum(uses) FROM enrollment_tokens");

    for (token, expect) in [
        (&expired, "expired"),
        (&used, "no uses left"),
        (&unknown, "unknown enrollment token"),
    ] {
        let agent_dir = dir.path().join(format!("agent-{}", Uuid::new_v4()));
        let err = enroll::enroll(&agent_dir, &url, token, None)
            .await
            .unwrap_err();
        match &err {
            EnrollError::Refused(msg) => {
                assert!(
                    msg.contains("Unauthenticated") && msg.contains(expect),
                    "{msg}"
                )
            }
            other => panic!("expected a refusal naming {expect:?}, got {other}"),
        }
        assert!(
            Credentials::load(&agent_dir).unwrap().is_none(),
            "nothing stored on the agent"
        );
    }
    // A token pinned to another CA is refused by the agent before it sends anything.
    let wrong_pin = xunjian_proto::token::format(&"1".repeat(32), &"ab".repeat(32));
    let err = enroll::enroll(&dir.path().join("pin"), &url, &wrong_pin, None)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("fingerprint"), "{err}");

    let conn = db(&data);
    assert_eq!(count(&conn, "SELECT count(*) FROM agents"), agents_before);
    assert_eq!(
        count(&conn, "SELECT sum(uses) FROM enrollment_tokens"),
        tokens_before
    );
    collector.stop().await;
}

#[tokio::test]
async fn sigkilled_collector_loses_no_acked_report_and_stores_none_twice() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("collector");
    let port = free_port();
    let toml = dir.path().join("collector.toml");
    write_collector_toml(&toml, &data, port);
    let config_arg = toml.to_str().unwrap();
    let start = |n: usize| {
        Proc::spawn(
            Path::new(HARNESS),
            "collector",
            &["--config", config_arg, "serve"],
            &dir.path().join(format!("collector-{n}.log")),
        )
    };
    let mut proc = start(0);
    wait_listening(port).await;
    let url = format!("https://127.0.0.1:{port}");

    let mut agents = Vec::new();
    for i in 0..3 {
        let agent_dir = dir.path().join(format!("agent-{i}"));
        enroll_agent(&data, &url, &agent_dir).await;
        agents.push(
            TestAgent::start(&agent_config(&agent_dir, &url, Duration::from_millis(20))).await,
        );
    }
    let cycles = 3;
    for cycle in 1..=cycles {
        for a in &agents {
            let target = a.acked() + 5;
            a.wait_acked(target).await;
        }
        proc.kill9();
        proc = start(cycle);
        wait_listening(port).await;
    }
    for a in &agents {
        let target = a.acked() + 3;
        a.wait_acked(target).await;
    }
    let acked: Vec<(Uuid, u64)> = agents
        .iter()
        .map(|a| (a.handle.agent_id(), a.acked()))
        .collect();
    for a in agents {
        a.stop().await;
    }
    drop(proc);

    let conn = db(&data);
    for (agent, acked) in acked {
        let stored = stored_sequences(&conn, agent);
        for seq in 1..=acked {
            assert!(
                stored.binary_search(&seq).is_ok(),
                "acked report {seq} of {agent} is missing"
            );
        }
    }
    // Every report's samples were stored once: one sample per series per report.
    let mut seen = std::collections::HashSet::new();
    let doubled = stored_samples(&conn)
        .into_iter()
        .filter(|s| !seen.insert((s.series_id, s.sequence)))
        .count();
    assert_eq!(doubled, 0);
}

#[tokio::test]
async fn reports_collected_while_the_collector_is_down_arrive_in_order_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("collector");
    let collector = TestCollector::start(&data).await;
    let port = collector.addr.port();
    let url = collector.url();
    let agent_dir = dir.path().join("agent");
    let creds = enroll_agent(&data, &url, &agent_dir).await;
    let agent = TestAgent::start(&agent_config(&agent_dir, &url, HOUR)).await;
    agent.wait_acked(1).await;

    collector.stop().await;
    let n = 6;
    for _ in 0..n {
        agent.collect_one().await;
    }
    assert_eq!(agent.acked(), 1);
    assert_eq!(agent.handle.spool_status().pending_reports, n);

    let collector = TestCollector::start_on(&data, port).await;
    agent.wait_acked(1 + n).await;
    let conn = db(&data);
    assert_eq!(
        stored_sequences(&conn, creds.agent_id),
        (1..=1 + n).collect::<Vec<_>>()
    );
    let mut stmt = conn
        .prepare("SELECT received_at FROM reports WHERE agent_id = ?1 ORDER BY sequence")
        .unwrap();
    let received: Vec<i64> = stmt
        .query_map([creds.agent_id.to_string()], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert!(
        received.windows(2).all(|w| w[0] <= w[1]),
        "delivered out of order: {received:?}"
    );
    assert_eq!(agent.handle.spool_status().pending_reports, 0);
    agent.stop().await;
    collector.stop().await;
}

#[tokio::test]
async fn sigkilled_agent_recovers_its_spool_and_delivery_resumes_without_gaps() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("collector");
    let collector = TestCollector::start(&data).await;
    let url = collector.url();
    let agent_dir = dir.path().join("agent");
    let creds = enroll_agent(&data, &url, &agent_dir).await;
    let toml = write_agent_toml(&dir.path().join("agent.toml"), &agent_dir, &url, "10ms");
    let conn = db(&data);
    let last = |conn: &rusqlite::Connection| -> i64 {
        conn.query_row(
            "SELECT last_sequence FROM agents WHERE agent_id = ?1",
            [creds.agent_id.to_string()],
            |r| r.get(0),
        )
        .unwrap()
    };
    for cycle in 0..5 {
        let before = last(&conn);
        let proc = Proc::spawn(
            Path::new(HARNESS),
            "agent",
            &["run", "--config", toml.to_str().unwrap()],
            &dir.path().join(format!("agent-{cycle}.log")),
        );
        // Kill it mid-stream once it has delivered more (spool writes are
        // continuous at a 10 ms interval, so the kill lands mid-write often).
        wait_until("the restarted agent to deliver", || {
            last(&conn) >= before + 10
        })
        .await;
        proc.kill9();
    }
    // A last run, stopped cleanly, to deliver everything left.
    let mut proc = Proc::spawn(
        Path::new(HARNESS),
        "agent",
        &["run", "--config", toml.to_str().unwrap()],
        &dir.path().join("agent-final.log"),
    );
    let before = last(&conn);
    wait_until("the final agent to deliver", || last(&conn) >= before + 10).await;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(proc.pid()),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let status = proc.child.wait().unwrap();
    assert!(status.success(), "agent exits cleanly on SIGTERM: {status}");

    let stored = stored_sequences(&conn, creds.agent_id);
    let max = *stored.last().unwrap();
    assert_eq!(stored, (1..=max).collect::<Vec<_>>(), "sequences have gaps");
    collector.stop().await;
}

fn toml_check(text: &str) -> xunjian_agent::collect::plugins::PluginCheck {
    let check: xunjian_agent::collect::plugins::PluginCheck = toml::from_str(text).unwrap();
    check.validate().unwrap();
    check
}

/// An AgentMessage look-alike whose field 1 (hello) has the wrong wire type:
/// it cannot be decoded as an AgentMessage.
#[derive(Clone, PartialEq, prost::Message)]
struct Garbled {
    #[prost(uint64, tag = "1")]
    hello_as_number: u64,
}

#[tokio::test]
async fn malformed_and_oversized_messages_get_clear_errors_and_others_carry_on() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("collector");
    let collector = TestCollector::start(&data).await;
    let url = collector.url();
    let healthy_dir = dir.path().join("healthy");
    enroll_agent(&data, &url, &healthy_dir).await;
    let healthy = TestAgent::start(&agent_config(&healthy_dir, &url, HOUR)).await;
    healthy.wait_acked(1).await;
    let bad = enroll_agent(&data, &url, &dir.path().join("bad")).await;

    // Malformed bytes on the stream.
    let channel = transport::connect(&bad, &url, None).await.unwrap();
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.unwrap();
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    tx.send(Garbled { hello_as_number: 7 }).await.unwrap();
    let codec = tonic_prost::ProstCodec::<Garbled, CollectorMessage>::default();
    let path = tonic::codegen::http::uri::PathAndQuery::from_static("/xunjian.v1.Ingest/Stream");
    let result = match grpc
        .streaming(tonic::Request::new(ReceiverStream::new(rx)), path, codec)
        .await
    {
        Ok(resp) => resp.into_inner().message().await.map(|_| ()),
        Err(s) => Err(s),
    };
    let status = result.unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    assert!(
        status.message().contains("malformed"),
        "{}",
        status.message()
    );

    // An oversized report (5 MiB, over the 4 MiB default limit).
    let mut big = report_msg(1, "");
    if let Some(agent_message::Kind::Report(r)) = &mut big.kind {
        r.run_now_request_id = "x".repeat(5 * 1024 * 1024);
    }
    assert!(big.encoded_len() > 4 * 1024 * 1024);
    let status = raw_stream(&url, &bad, vec![hello_message(""), big])
        .await
        .unwrap_err();
    assert!(
        matches!(
            status.code(),
            tonic::Code::OutOfRange | tonic::Code::ResourceExhausted
        ),
        "{status:?}"
    );
    assert!(
        status.message().contains("too large"),
        "{}",
        status.message()
    );

    // An out-of-protocol message: a report before Hello.
    let status = raw_stream(&url, &bad, vec![report_msg(1, "")])
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");

    let conn = db(&data);
    assert!(stored_sequences(&conn, bad.agent_id).is_empty());
    let seq = healthy.collect_one().await;
    healthy.wait_acked(seq).await;
    healthy.stop().await;
    collector.stop().await;
}

#[test]
fn bad_config_files_are_rejected_naming_the_problem_and_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        let out = std::process::Command::new(HARNESS)
            .args(args)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let data = dir.path().join("never-created");
    let cases = [
        (
            "collector",
            format!(
                "[server]\nlisten = \"127.0.0.1:1\"\nlisen = 2\n[storage]\ndata_dir = \"{}\"\n",
                data.display()
            ),
            "lisen",
        ),
        (
            "collector",
            format!(
                "[storage]\ndata_dir = \"{}\"\n[policy]\nmetrics_interval = \"0s\"\n",
                data.display()
            ),
            "policy.metrics_interval",
        ),
        ("collector", "[server\n".to_string(), "invalid config file"),
        (
            "agent",
            "collector = \"http://plain:80\"\n".to_string(),
            "`collector`",
        ),
        (
            "agent",
            "[spool]\nmax_bytes = 5\n".to_string(),
            "spool.max_bytes",
        ),
    ];
    for (i, (role, text, expect)) in cases.iter().enumerate() {
        let path = dir.path().join(format!("bad-{i}.toml"));
        std::fs::write(&path, text).unwrap();
        let p = path.to_str().unwrap();
        let (code, stderr) = match *role {
            "collector" => run(&["collector", "--config", p, "validate"]),
            _ => run(&["agent", "validate", "--config", p]),
        };
        assert_eq!(code, Some(64), "{role} case {i}: {stderr}");
        assert!(
            stderr.contains(expect),
            "{role} case {i}: expected {expect:?} in {stderr}"
        );
        if *role == "collector" {
            let (code, _) = run(&["collector", "--config", p, "serve"]);
            assert_eq!(code, Some(64));
        } else {
            let (code, _) = run(&["agent", "run", "--config", p]);
            assert_eq!(code, Some(64));
        }
    }
    assert!(!data.exists(), "a rejected config must not create anything");
    // A good one passes.
    let good = dir.path().join("good.toml");
    std::fs::write(&good, "[server]\nlisten = \"127.0.0.1:7443\"\n").unwrap();
    assert_eq!(
        run(&["collector", "--config", good.to_str().unwrap(), "validate"]).0,
        Some(0)
    );
}

#[tokio::test]
async fn run_now_from_the_collector_brings_one_report_with_every_area() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("collector");
    let collector = TestCollector::start(&data).await;
    let url = collector.url();
    let agent_dir = dir.path().join("agent");
    let creds = enroll_agent(&data, &url, &agent_dir).await;
    let mut config = agent_config(&agent_dir, &url, HOUR);
    // Everything but the slow package-manager query and the periodic loop
    // (which would add reports of its own at start).
    config.collect.areas = [
        "system",
        "disks",
        "services",
        "antivirus",
        "baseline",
        "smart",
        "plugins",
        "inventory",
    ]
    .map(String::from)
    .to_vec();
    config.collect.checks_interval = Duration::from_secs(86_400);
    // A real Monitoring Plugin (CI installs monitoring-plugins-basic); its
    // schedule is a day, so only the start and the RunNow run it.
    config.checks = vec![toml_check(
        "id = \"root_disk\"\ncommand = [\"/usr/lib/nagios/plugins/check_disk\", \"-w\", \"1%\", \"-c\", \"1%\", \"-p\", \"/\"]\ninterval = \"24h\"\ntimeout = \"30s\"\n",
    )];
    let agent = TestAgent::start(&config).await;
    agent.wait_acked(1).await;

    let sessions = collector.collector().sessions();
    wait_until("the agent's stream to be registered", || {
        sessions.connected().contains(&creds.agent_id)
    })
    .await;
    assert!(sessions.run_now(creds.agent_id, "inspection-42"));
    let conn = db(&data);
    let query = format!(
        "SELECT sequence FROM reports WHERE agent_id = '{}' AND run_now_request_id = 'inspection-42'",
        creds.agent_id
    );
    wait_until("the run-now report to be stored", || {
        conn.query_row(&query, [], |r| r.get::<_, i64>(0)).is_ok()
    })
    .await;
    let seq: i64 = conn.query_row(&query, [], |r| r.get(0)).unwrap();
    let agent_checks: Vec<StoredCheck> = stored_checks(&conn)
        .into_iter()
        .filter(|c| c.agent_id == creds.agent_id.to_string())
        .collect();
    let checks = |prefix: &str| {
        agent_checks
            .iter()
            .filter(|c| c.sequence == seq && c.result.check_id.starts_with(prefix))
            .count()
    };
    for prefix in [
        "baseline.",
        "av.",
        "disk.smart.",
        "service.",
        "time.",
        "custom.root_disk",
    ] {
        assert!(
            checks(prefix) > 0,
            "no {prefix} check results in the run-now report"
        );
    }
    // Nothing that could not be judged is stored as ok: unknown carries a reason.
    let unexplained: Vec<&StoredCheck> = agent_checks
        .iter()
        .filter(|c| c.result.status == "unknown" && c.result.reason.is_empty())
        .collect();
    assert!(unexplained.is_empty(), "{unexplained:?}");
    assert!(!agent_checks.is_empty());
    // The plugin's performance data became metrics.
    let agent_id = creds.agent_id.to_string();
    let plugin_samples = stored_samples(&conn)
        .into_iter()
        .filter(|s| {
            s.agent_id == agent_id
                && s.sequence == seq as i64
                && s.name.starts_with("custom.root_disk.")
        })
        .count() as i64;
    assert!(
        plugin_samples > 0,
        "check_disk perfdata did not become metrics"
    );
    // The inventory of that report carries hardware and packages.
    let packages: i64 = conn
        .query_row(
            "SELECT json_array_length(body, '$.packages') FROM inventory_snapshots WHERE agent_id = ?1 ORDER BY snapshot_id DESC LIMIT 1",
            [creds.agent_id.to_string()],
            |r| r.get(0),
        )
        .unwrap();
    assert!(packages > 100, "only {packages} packages in the inventory");
    agent.stop().await;
    collector.stop().await;
}

#[test]
fn check_json_shows_every_area() {
    let out = std::process::Command::new(HARNESS)
        .args(["agent", "check", "--json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let text = report.to_string();
    for needle in [
        "\"cpu.usage_pct\"",
        "\"fs.used_pct\"",
        "\"fs.inodes_used_pct\"",
        "\"proc.rss_bytes\"",
        "\"disk.smart.health",
        "\"patch.pending\"",
        "\"patch.security_pending\"",
        "\"av.status\"",
        "\"baseline.firewall.active\"",
        "\"baseline.accounts.uid0\"",
        "\"service.failed_units\"",
        "\"time.sync\"",
        "\"packages\"",
        "\"interfaces\"",
    ] {
        assert!(text.contains(needle), "{needle} missing from check --json");
    }
}

#[tokio::test]
async fn an_agent_whose_spool_was_wiped_continues_after_the_collectors_sequence() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("collector");
    let collector = TestCollector::start(&data).await;
    let url = collector.url();
    let agent_dir = dir.path().join("agent");
    let creds = enroll_agent(&data, &url, &agent_dir).await;
    let config = agent_config(&agent_dir, &url, HOUR);
    let agent = TestAgent::start(&config).await;
    agent.wait_acked(1).await;
    for _ in 0..2 {
        let seq = agent.collect_one().await;
        agent.wait_acked(seq).await;
    }
    agent.stop().await;

    // An operator frees space by deleting the spool, keeping the credentials.
    std::fs::remove_dir_all(agent_dir.join("spool")).unwrap();
    let agent = TestAgent::start(&config).await;
    // The collector says it has 3; the agent numbers on from there.
    wait_until("the agent to skip past the collector's sequence", || {
        agent.acked() >= 3
    })
    .await;
    let seq = agent.collect_one().await;
    assert!(seq > 3, "numbering restarted at {seq}");
    agent.wait_acked(seq).await;
    let conn = db(&data);
    assert!(
        stored_sequences(&conn, creds.agent_id).contains(&seq),
        "the new report was taken for a replay"
    );
    // A report spooled before the Resume arrived could not be delivered under
    // its number: it is counted as dropped, never lost silently.
    let dropped = agent.handle.spool_status().dropped_reports_total;
    assert!(dropped <= 1);
    agent.stop().await;
    collector.stop().await;
}

/// A report carrying an inventory of `packages` packages: with 3,000 it is
/// far above `INLINE_REPORT_MAX_BYTES`, like a real desktop's.
fn inventory_report(seq: u64, packages: usize) -> Report {
    use xunjian_proto::{Inventory, Package, Section, section};
    Report {
        sequence: seq,
        collected_at_unix_ms: SystemClock.now_ms(),
        sections: vec![Section {
            kind: Some(section::Kind::Inventory(Inventory {
                hostname: "big-host".into(),
                os_name: "Debian GNU/Linux".into(),
                packages: (0..packages)
                    .map(|i| Package {
                        name: format!("package-{i:04}"),
                        version: format!("1.{i}.0-1"),
                        arch: "amd64".into(),
                        source: "dpkg".into(),
                    })
                    .collect(),
                ..Default::default()
            })),
        }],
        ..Default::default()
    }
}

/// Spools reports 1..=3 while the agent is offline: small, large (over
/// `INLINE_REPORT_MAX_BYTES`), small.
fn spool_small_large_small(agent_dir: &Path, config: &xunjian_agent::config::AgentConfig) {
    let (mut spool, _) =
        xunjian_agent::spool::Spool::open(&agent_dir.join("spool"), config.spool.max_bytes)
            .unwrap();
    for packages in [1, 3000, 1] {
        spool
            .append(|seq| inventory_report(seq, packages).encode_to_vec())
            .unwrap();
    }
}

#[tokio::test]
async fn submit_stores_a_large_report_alone_acks_a_replay_once_and_refuses_bad_ones() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("collector");
    let collector = TestCollector::start(&data).await;
    let url = collector.url();
    let creds = enroll_agent(&data, &url, &dir.path().join("agent")).await;
    let channel = transport::connect(&creds, &url, None)
        .await
        .expect("connects");
    let mut client = IngestClient::new(channel);
    let big = inventory_report(1, 3000);
    assert!(big.encoded_len() > xunjian_proto::INLINE_REPORT_MAX_BYTES);

    let ack = client
        .submit(big.clone())
        .await
        .expect("stored")
        .into_inner();
    assert_eq!(ack.sequence, 1);
    let replay = client.submit(big).await.expect("replay acked").into_inner();
    assert_eq!(replay.sequence, 1);
    let conn = db(&data);
    assert_eq!(stored_sequences(&conn, creds.agent_id), vec![1]);
    let packages = count(
        &conn,
        &format!(
            "SELECT json_array_length(body, '$.packages') FROM inventory_snapshots WHERE agent_id = '{}'",
            creds.agent_id
        ),
    );
    assert_eq!(packages, 3000);
    assert_eq!(
        collector.collector().submitted_reports(),
        1,
        "the replay is not stored again"
    );

    // Refused with the stream's errors, and nothing stored.
    let status = client.submit(inventory_report(0, 1)).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    let mut foreign = inventory_report(2, 1);
    foreign.claimed_agent_id = Uuid::new_v4().to_string();
    let status = client.submit(foreign).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::PermissionDenied, "{status:?}");
    let ca = std::fs::read_to_string(data.join("pki/ca.crt")).unwrap();
    let anonymous = collector_endpoint(&url, &ca, None).connect().await.unwrap();
    let status = IngestClient::new(anonymous)
        .submit(inventory_report(2, 1))
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unauthenticated, "{status:?}");
    assert_eq!(stored_sequences(&conn, creds.agent_id), vec![1]);

    // The stream carries on after it.
    let got = raw_stream(&url, &creds, vec![hello_message(""), report_msg(2, "")])
        .await
        .expect("the stream is accepted");
    assert!(got.iter().any(|m| matches!(
        m.kind,
        Some(xunjian_proto::collector_message::Kind::Ack(
            xunjian_proto::Ack { sequence: 2 }
        ))
    )));
    assert_eq!(stored_sequences(&conn, creds.agent_id), vec![1, 2]);
    collector.stop().await;
}

#[tokio::test]
async fn an_agent_sends_a_large_report_by_submit_between_stream_reports_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("collector");
    let collector = TestCollector::start(&data).await;
    let url = collector.url();
    let agent_dir = dir.path().join("agent");
    let creds = enroll_agent(&data, &url, &agent_dir).await;
    let config = agent_config(&agent_dir, &url, HOUR);
    // Spooled while offline: small, large, small; the agent adds its own
    // (small: only the system area) at start.
    spool_small_large_small(&agent_dir, &config);
    let agent = TestAgent::start(&config).await;
    agent.wait_acked(4).await;
    let conn = db(&data);
    assert_eq!(stored_sequences(&conn, creds.agent_id), vec![1, 2, 3, 4]);
    let mut stmt = conn
        .prepare("SELECT bytes, received_at FROM reports WHERE agent_id = ?1 ORDER BY sequence")
        .unwrap();
    let rows: Vec<(i64, i64)> = stmt
        .query_map([creds.agent_id.to_string()], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert!(
        rows.windows(2).all(|w| w[0].1 <= w[1].1),
        "stored out of order: {rows:?}"
    );
    let large = rows
        .iter()
        .filter(|(bytes, _)| *bytes as usize > xunjian_proto::INLINE_REPORT_MAX_BYTES)
        .count();
    assert_eq!(large, 1, "{rows:?}");
    assert_eq!(
        collector.collector().submitted_reports(),
        1,
        "the large report went by Submit, the others on the stream"
    );
    assert_eq!(agent.handle.spool_status().pending_reports, 0);
    agent.stop().await;
    collector.stop().await;
}

/// A collector from before `Submit`: streams as the real one does (Resume,
/// an ack per report) and answers `Submit` with UNIMPLEMENTED, as tonic
/// does for a method the server does not have. An older build cannot run
/// here, so this stands in for it.
struct PreSubmitCollector {
    streamed: std::sync::Arc<std::sync::Mutex<Vec<u64>>>,
}

#[tonic::async_trait]
impl xunjian_proto::ingest_server::Ingest for PreSubmitCollector {
    type StreamStream = ReceiverStream<Result<CollectorMessage, tonic::Status>>;

    async fn stream(
        &self,
        request: tonic::Request<tonic::Streaming<AgentMessage>>,
    ) -> Result<tonic::Response<Self::StreamStream>, tonic::Status> {
        use xunjian_proto::collector_message::Kind;
        let mut inbound = request.into_inner();
        let (tx, rx) = tokio::sync::mpsc::channel(64);
        let streamed = self.streamed.clone();
        tokio::spawn(async move {
            let reply = |kind| Ok(CollectorMessage { kind: Some(kind) });
            let _ = tx
                .send(reply(Kind::Resume(xunjian_proto::Resume {
                    last_stored_sequence: 0,
                })))
                .await;
            while let Ok(Some(m)) = inbound.message().await {
                if let Some(agent_message::Kind::Report(r)) = m.kind {
                    streamed.lock().unwrap().push(r.sequence);
                    let ack = xunjian_proto::Ack {
                        sequence: r.sequence,
                    };
                    let _ = tx.send(reply(Kind::Ack(ack))).await;
                }
            }
        });
        Ok(tonic::Response::new(ReceiverStream::new(rx)))
    }

    async fn submit(
        &self,
        _: tonic::Request<Report>,
    ) -> Result<tonic::Response<xunjian_proto::Ack>, tonic::Status> {
        Err(tonic::Status::unimplemented("Method not found"))
    }
}

#[tokio::test]
async fn against_a_collector_without_submit_large_reports_go_on_the_stream_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("collector");
    // A real collector creates the PKI and enrolls the agent, then leaves.
    let collector = TestCollector::start(&data).await;
    let agent_dir = dir.path().join("agent");
    enroll_agent(&data, &collector.url(), &agent_dir).await;
    collector.stop().await;

    let pki = xunjian_collector::pki::Pki::load_or_create(&data.join("pki")).unwrap();
    let (chain, key) = pki.server_identity(&["127.0.0.1".into()]).unwrap();
    let streamed = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("https://{}", listener.local_addr().unwrap());
    let service = xunjian_proto::ingest_server::IngestServer::new(PreSubmitCollector {
        streamed: streamed.clone(),
    });
    let server = tokio::spawn(
        tonic::transport::Server::builder()
            .tls_config(
                tonic::transport::ServerTlsConfig::new()
                    .identity(Identity::from_pem(chain, key))
                    .client_ca_root(Certificate::from_pem(pki.ca_pem())),
            )
            .unwrap()
            .add_service(service)
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)),
    );

    let config = agent_config(&agent_dir, &url, HOUR);
    spool_small_large_small(&agent_dir, &config);
    let agent = TestAgent::start(&config).await;
    agent.wait_acked(4).await;
    assert_eq!(*streamed.lock().unwrap(), vec![1, 2, 3, 4]);
    assert_eq!(agent.handle.spool_status().pending_reports, 0);
    agent.stop().await;
    server.abort();
}
