//! Inspections end to end: a real collector sends RunNow to real agents
//! over mTLS, files one record per host (an agent that is down is listed as
//! not inspected, with its last contact), links the abnormal finding to the
//! incident the rules raised, chains the record into the evidence, and the
//! exported bundle verifies — until one byte of it changes. A full
//! self-check resolves the "no full self-check this year" incident.

use std::time::Duration;

use sha2::{Digest, Sha256};
use xunjian_collector::clock::Clock;
use xunjian_collector::inspection::record::{HostVerdict, InspectionRun, ItemVerdict};
use xunjian_collector::inspection::runner::{RunRequest, SELFCHECK_OVERDUE_RULE, request_run};
use xunjian_tests::*;

/// The CLI's way in: a read-write connection of its own.
fn writable(data: &std::path::Path) -> rusqlite::Connection {
    xunjian_collector::store::open(&data.join("xunjian.db")).unwrap()
}

async fn wait_filed(conn: &rusqlite::Connection, run_id: i64) -> InspectionRun {
    wait_until("the run to be filed", || {
        conn.query_row(
            "SELECT state FROM inspection_runs WHERE run_id = ?1",
            [run_id],
            |r| r.get::<_, String>(0),
        )
        .is_ok_and(|s| s == "filed")
    })
    .await;
    let body: String = conn
        .query_row(
            "SELECT body FROM inspection_runs WHERE run_id = ?1",
            [run_id],
            |r| r.get(0),
        )
        .unwrap();
    serde_json::from_str(&body).unwrap()
}

#[tokio::test]
async fn an_inspection_files_every_host_links_incidents_and_verifies_as_evidence() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("collector");
    let mut config = collector_config_with_fill_rules(dir.path());
    config.inspection.wait = Duration::from_secs(4);
    config
        .inspection
        .thresholds
        .insert("custom.fill.used".into(), 90.0);
    let collector = TestCollector::start_with(config.clone()).await;
    let url = collector.url();

    // Host A answers; its fill value is over the threshold.
    let script = dir.path().join("check_fill.sh");
    std::fs::write(&script, "echo \"FILL 95 | used=95%\"\nexit 1\n").unwrap();
    let a_dir = dir.path().join("agent-a");
    let a_creds = enroll_agent(&data, &url, &a_dir).await;
    let agent_a = TestAgent::start(&fill_agent_config(&a_dir, &url, &script)).await;
    // Host B reported once, then went down.
    let b_dir = dir.path().join("agent-b");
    let b_creds = enroll_agent(&data, &url, &b_dir).await;
    let agent_b = TestAgent::start(&agent_config(&b_dir, &url, Duration::from_secs(3600))).await;
    let seq = agent_b.collect_one().await;
    agent_b.wait_acked(seq).await;
    agent_b.stop().await;

    // The breach opens the incident before the inspection.
    let seq = agent_a.collect_one().await;
    agent_a.wait_acked(seq).await;
    let conn = db(&data);
    wait_until("the fill incident", || {
        count(
            &conn,
            "SELECT count(*) FROM incidents WHERE rule_id = 'fill.high' AND state = 'open'",
        ) == 1
    })
    .await;
    let incident: i64 = conn
        .query_row(
            "SELECT incident_id FROM incidents WHERE rule_id = 'fill.high'",
            [],
            |r| r.get(0),
        )
        .unwrap();

    let request = RunRequest::adhoc(&config.inspection, Default::default());
    let run_id = request_run(&writable(&data), &request, "test", chrono::Utc::now()).unwrap();
    let run = wait_filed(&conn, run_id).await;

    assert_eq!(run.summary.hosts_in_scope, 2);
    assert_eq!(run.summary.hosts_inspected, 1);
    assert_eq!(run.summary.hosts_not_reached, 1);
    let a = run
        .hosts
        .iter()
        .find(|h| h.agent_id == a_creds.agent_id.to_string())
        .expect("host A in the record");
    let b = run
        .hosts
        .iter()
        .find(|h| h.agent_id == b_creds.agent_id.to_string())
        .expect("host B listed, not left out");
    assert_eq!(b.verdict, HostVerdict::NotInspected);
    assert!(
        b.last_seen_at.is_some(),
        "a host not reached shows when it was last seen"
    );
    assert!(b.items.is_empty());
    assert_eq!(a.verdict, HostVerdict::Abnormal);
    assert!(a.measured_at.is_some() && a.report_sequence.is_some());
    assert_eq!(a.agent_cert_sha256.len(), 64);
    let fill = a
        .items
        .iter()
        .find(|i| i.item_id.starts_with("custom.fill.used"))
        .expect("the metric item");
    assert_eq!(fill.verdict, ItemVerdict::Abnormal);
    assert_eq!(fill.value, "95.0");
    assert_eq!(
        fill.incident_id,
        Some(incident),
        "the finding links to its incident"
    );
    let check = a
        .items
        .iter()
        .find(|i| i.item_id == "custom.fill")
        .expect("the check item");
    assert_eq!(check.verdict, ItemVerdict::Abnormal);
    assert!(
        a.items
            .iter()
            .any(|i| i.item_id.starts_with("cpu.usage_pct"))
    );

    // Relational copies for reports, and the evidence chain entry.
    assert_eq!(count(&conn, "SELECT count(*) FROM inspection_records"), 2);
    let (record_sha, kind): (String, String) = conn
        .query_row(
            "SELECT record_sha256, kind FROM evidence_chain WHERE seq = 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    let body: String = conn
        .query_row(
            "SELECT body FROM inspection_runs WHERE run_id = ?1",
            [run_id],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(record_sha, hex::encode(Sha256::digest(body.as_bytes())));
    assert_eq!(kind, "inspection");
    let refused = writable(&data)
        .execute(
            "UPDATE inspection_runs SET body = '{}' WHERE run_id = ?1",
            [run_id],
        )
        .unwrap_err();
    assert!(
        refused.to_string().contains("cannot change"),
        "a filed record cannot be changed: {refused}"
    );

    // Export the day's evidence and verify it offline; then change a byte.
    let key = xunjian_collector::evidence::EvidenceKey::load_or_create(&data.join("pki")).unwrap();
    let bundle = dir.path().join("bundle");
    let read = xunjian_collector::store::open_read_only(&data.join("xunjian.db")).unwrap();
    let source = xunjian_collector::inspection::evidence_source::RunSource {
        conn: &read,
        timezone: chrono_tz::UTC,
    };
    let now = chrono::Utc::now();
    xunjian_collector::evidence::export(
        &read,
        &key,
        now - chrono::Duration::days(1),
        now + chrono::Duration::days(1),
        &source,
        &bundle,
        now,
    )
    .unwrap();
    let report = xunjian_collector::evidence::verify(&bundle, Some(&key.fingerprint())).unwrap();
    assert!(report.ok, "{report}");
    let html = std::fs::read_dir(bundle.join("records"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "html"))
        .expect("the record as HTML");
    assert!(std::fs::read_to_string(&html).unwrap().contains("巡检"));
    let json = std::fs::read_dir(bundle.join("records"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "json"))
        .unwrap();
    let mut bytes = std::fs::read(&json).unwrap();
    let at = bytes.iter().position(|b| *b == b'9').unwrap();
    bytes[at] = b'8';
    std::fs::write(&json, bytes).unwrap();
    let report = xunjian_collector::evidence::verify(&bundle, Some(&key.fingerprint())).unwrap();
    assert!(!report.ok);
    assert!(
        report.problems[0].to_string().contains("entry 1"),
        "{report}"
    );

    agent_a.stop().await;
    collector.stop().await;
}

#[tokio::test]
async fn a_full_selfcheck_resolves_the_no_selfcheck_this_year_incident() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("collector");
    let mut config = collector_config(&data, 0);
    config.inspection.wait = Duration::from_secs(20);
    let clock = ManualClock::new();
    let collector = TestCollector::start_with_clock(config.clone(), clock.clone()).await;
    let url = collector.url();
    let agent_dir = dir.path().join("agent");
    enroll_agent(&data, &url, &agent_dir).await;
    let agent = TestAgent::start(&agent_config(&agent_dir, &url, Duration::from_secs(3600))).await;
    let conn = db(&data);
    let overdue = format!(
        "SELECT count(*) FROM incidents WHERE rule_id = '{SELFCHECK_OVERDUE_RULE}' AND state = 'open'"
    );
    // A new installation is not overdue; a year after the first enrollment
    // without a full self-check it is.
    let seq = agent.collect_one().await;
    agent.wait_acked(seq).await;
    assert_eq!(count(&conn, &overdue), 0);
    clock.advance(Duration::from_secs(366 * 86_400));
    wait_until("the overdue incident", || count(&conn, &overdue) == 1).await;

    // A partial self-check is filed but does not count as the full one
    // (`last_full_selfcheck_ignores_partial_and_incomplete_runs` tests the
    // rule itself).
    let partial = RunRequest::selfcheck(
        &config.inspection,
        xunjian_collector::inspection::plan::Scope::parse_cli(&["host=nobody".into()]).unwrap(),
    );
    assert!(!partial.scope.is_whole_fleet());
    let run = request_run(&writable(&data), &partial, "test", clock.now()).unwrap();
    let filed = wait_filed(&conn, run).await;
    assert!(!filed.full_fleet);
    assert_eq!(filed.summary.hosts_in_scope, 0);
    assert_eq!(count(&conn, &overdue), 1);

    let full = RunRequest::selfcheck(&config.inspection, Default::default());
    let run = request_run(&writable(&data), &full, "test", clock.now()).unwrap();
    let filed = wait_filed(&conn, run).await;
    assert!(filed.full_fleet);
    assert_eq!(filed.summary.hosts_inspected, 1);
    // Only security items are judged in a self-check.
    assert!(
        filed.hosts[0]
            .items
            .iter()
            .all(|i| !i.item_id.starts_with("cpu.")),
        "{:?}",
        filed.hosts[0].items
    );
    wait_until("the overdue incident to resolve", || {
        count(&conn, &overdue) == 0
    })
    .await;
    assert_eq!(count(&conn, "SELECT count(*) FROM evidence_chain"), 2);

    agent.stop().await;
    collector.stop().await;
}

#[tokio::test]
async fn a_plan_runs_when_its_schedule_says_and_not_before() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("collector");
    let mut config = collector_config(&data, 0);
    config.inspection.plans = vec![
        toml::from_str(
            "name = \"every-minute\"\nschedule = \"cron * * * * *\"\nchecks = [\"cpu.*\", \"memory.*\"]\n",
        )
        .unwrap(),
    ];
    assert!(config.inspection.problem().is_none());
    let clock = ManualClock::new();
    let collector = TestCollector::start_with_clock(config, clock.clone()).await;
    let url = collector.url();
    let agent_dir = dir.path().join("agent");
    enroll_agent(&data, &url, &agent_dir).await;
    let agent = TestAgent::start(&agent_config(&agent_dir, &url, Duration::from_secs(3600))).await;
    let conn = db(&data);
    let runs = "SELECT count(*) FROM inspection_runs WHERE plan = 'every-minute' AND requested_by = 'scheduler'";
    // The scheduler has been polling while the agent enrolled; the clock has
    // not reached the next minute, so nothing was requested.
    let seq = agent.collect_one().await;
    agent.wait_acked(seq).await;
    assert_eq!(count(&conn, runs), 0);
    clock.advance(Duration::from_secs(61));
    wait_until("the scheduled run", || count(&conn, runs) == 1).await;
    let run_id: i64 = conn
        .query_row(
            "SELECT run_id FROM inspection_runs WHERE plan = 'every-minute'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    let run = wait_filed(&conn, run_id).await;
    assert_eq!(run.requested_by, "scheduler");
    assert_eq!(run.summary.hosts_inspected, 1);
    assert!(
        run.hosts[0]
            .items
            .iter()
            .all(|i| i.item_id.starts_with("cpu.") || i.item_id.starts_with("memory.")),
        "only the plan's items: {:?}",
        run.hosts[0].items
    );
    clock.advance(Duration::from_secs(60));
    wait_until("the next minute's run", || count(&conn, runs) == 2).await;
    agent.stop().await;
    collector.stop().await;
}

#[tokio::test]
async fn a_run_interrupted_by_a_restart_is_filed_by_the_next_collector() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("collector");
    let mut config = collector_config(&data, 0);
    config.inspection.wait = Duration::from_secs(30);
    let clock = ManualClock::new();
    let first = TestCollector::start_with_clock(config.clone(), clock.clone()).await;
    let url = first.url();
    let agent_dir = dir.path().join("agent");
    enroll_agent(&data, &url, &agent_dir).await;
    let agent = TestAgent::start(&agent_config(&agent_dir, &url, Duration::from_secs(3600))).await;
    let seq = agent.collect_one().await;
    agent.wait_acked(seq).await;
    agent.stop().await;

    // The host is down, so the run waits; the collector stops meanwhile.
    let conn = db(&data);
    let request = RunRequest::adhoc(&config.inspection, Default::default());
    let run_id = request_run(&writable(&data), &request, "test", clock.now()).unwrap();
    let state = |conn: &rusqlite::Connection| -> String {
        conn.query_row(
            "SELECT state FROM inspection_runs WHERE run_id = ?1",
            [run_id],
            |r| r.get(0),
        )
        .unwrap()
    };
    wait_until("the run to start", || state(&conn) == "running").await;
    first.stop().await;
    assert_eq!(state(&conn), "running", "an interrupted run is not lost");

    // Restarted after the wait would have ended: filed at once, the silent
    // host listed as not inspected.
    clock.advance(Duration::from_secs(60));
    config.server.listen = "127.0.0.1:0".parse().unwrap();
    let second = TestCollector::start_with_clock(config, clock.clone()).await;
    let run = wait_filed(&conn, run_id).await;
    assert_eq!(run.summary.hosts_in_scope, 1);
    assert_eq!(run.summary.hosts_not_reached, 1);
    assert!(run.filed_at - run.started_at >= chrono::Duration::seconds(60));
    second.stop().await;
}
