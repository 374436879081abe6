//! Incidents end to end: an agent's measured value crosses a rule's
//! threshold, the incident opens once, is updated while the problem lasts,
//! and resolves automatically when the value recovers. Real agent, real
//! collector, real TLS and SQLite; the value comes from a custom check the
//! test controls.

use std::time::Duration;

use xunjian_tests::*;

/// A real HTTP endpoint on 127.0.0.1 that answers 200 and hands every
/// request body to the test.
async fn webhook_receiver() -> (String, tokio::sync::mpsc::Receiver<String>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    let Ok(n) = sock.read(&mut chunk).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    let text = String::from_utf8_lossy(&buf).to_string();
                    if let Some(end) = text.find("\r\n\r\n") {
                        let len = text[..end]
                            .lines()
                            .find_map(|l| {
                                l.to_ascii_lowercase()
                                    .strip_prefix("content-length:")
                                    .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                            })
                            .unwrap_or(0);
                        if buf.len() >= end + 4 + len {
                            let body =
                                String::from_utf8_lossy(&buf[end + 4..end + 4 + len]).to_string();
                            let _ = sock.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n").await;
                            let _ = tx.send(body).await;
                            return;
                        }
                    }
                }
            });
        }
    });
    (url, rx)
}

fn incident_state(conn: &rusqlite::Connection) -> Option<(i64, String, i64)> {
    conn.query_row(
        "SELECT incident_id, state, occurrences FROM incidents WHERE rule_id = 'fill.high' ORDER BY incident_id DESC LIMIT 1",
        [],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
    )
    .ok()
}

#[tokio::test]
async fn a_breach_opens_one_incident_that_resolves_when_the_value_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("collector");
    let mut config = collector_config_with_fill_rules(dir.path());
    let (hook, mut received) = webhook_receiver().await;
    config.notify = toml::from_str(&format!(
        "group_wait = \"0s\"\ngroup_interval = \"1s\"\n[[targets]]\nname = \"ops\"\nkind = \"webhook\"\nurl = \"{hook}\"\n"
    ))
    .unwrap();
    let collector = TestCollector::start_with(config).await;
    let url = collector.url();

    let (script, value) = fill_script_reading_a_file(dir.path(), "50");
    let agent_dir = dir.path().join("agent");
    enroll_agent(&data, &url, &agent_dir).await;
    let agent_config = fill_agent_config(&agent_dir, &url, &script);
    let agent = TestAgent::start(&agent_config).await;
    let conn = db(&data);

    // Below the threshold: nothing opens.
    let seq = agent.collect_one().await;
    agent.wait_acked(seq).await;
    assert_eq!(incident_state(&conn), None);

    // Breach: one incident opens, and a second breaching report updates it.
    std::fs::write(&value, "95").unwrap();
    let seq = agent.collect_one().await;
    agent.wait_acked(seq).await;
    wait_until("the incident to open", || {
        incident_state(&conn).is_some_and(|(_, s, _)| s == "open")
    })
    .await;
    std::fs::write(&value, "97").unwrap();
    let seq = agent.collect_one().await;
    agent.wait_acked(seq).await;
    wait_until("the incident to be updated", || {
        incident_state(&conn).is_some_and(|(_, _, n)| n >= 2)
    })
    .await;
    assert_eq!(
        count(&conn, "SELECT count(*) FROM incidents"),
        1,
        "a still-firing rule must not open another"
    );
    let (peak, title): (f64, String) = conn
        .query_row("SELECT peak_value, title FROM incidents", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .unwrap();
    assert_eq!(peak, 97.0);
    assert!(
        title.starts_with("Fill on ") && title.contains("95"),
        "{title}"
    );

    // Between the recovery and firing thresholds it stays open (hysteresis).
    std::fs::write(&value, "85").unwrap();
    let seq = agent.collect_one().await;
    agent.wait_acked(seq).await;
    wait_until("the 85% observation to update the incident", || {
        incident_state(&conn).is_some_and(|(_, _, n)| n >= 3)
    })
    .await;
    assert_eq!(
        incident_state(&conn).map(|(_, s, _)| s),
        Some("open".to_string())
    );
    // Recovery: below 80 it resolves automatically.
    std::fs::write(&value, "40").unwrap();
    let seq = agent.collect_one().await;
    agent.wait_acked(seq).await;
    wait_until("the incident to resolve", || {
        incident_state(&conn).is_some_and(|(_, s, _)| s == "resolved")
    })
    .await;
    let (resolution, events): (String, i64) = conn
        .query_row(
            "SELECT resolution, (SELECT count(*) FROM incident_events) FROM incidents",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert!(resolution.starts_with("automatic"), "{resolution}");
    assert_eq!(events, 2, "open and auto-resolve");

    // The webhook heard about the opening and the resolution (grouped per
    // host, so possibly in one message), as JSON naming the incident.
    let mut heard = String::new();
    while !(heard.contains("opened") && heard.contains("resolved")) {
        let body = tokio::time::timeout(PATIENCE, received.recv())
            .await
            .expect("a notification within the patience")
            .expect("receiver alive");
        assert!(
            serde_json::from_str::<serde_json::Value>(&body).is_ok(),
            "not JSON: {body}"
        );
        heard.push_str(&body);
    }
    assert!(heard.contains("Fill on"), "{heard}");

    agent.stop().await;
    collector.stop().await;
}

#[tokio::test]
async fn a_silenced_problem_is_recorded_but_suppressed() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("collector");
    let mut config = collector_config_with_fill_rules(dir.path());
    let collector = TestCollector::start_with(config.clone()).await;
    let port = collector.addr.port();
    let agent_dir = dir.path().join("agent");
    let creds = enroll_agent(&data, &collector.url(), &agent_dir).await;
    // Maintenance on this host, for the next hour; the collector picks up
    // silences at start and every 10 s, so restart it to be deterministic.
    {
        let mut conn = xunjian_collector::store::open(&data.join("xunjian.db")).unwrap();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64;
        xunjian_collector::store::add_silence(
            &mut conn,
            Some(creds.agent_id),
            None,
            None,
            now - 1_000,
            now + 3_600_000,
            "disk replacement",
            "test",
            now,
        )
        .unwrap();
    }
    collector.stop().await;
    config.server.listen.set_port(port);
    let collector = TestCollector::start_with(config).await;
    let url = collector.url();

    let script = dir.path().join("check_fill.sh");
    std::fs::write(&script, "echo \"FILL 99 | used=99%\"\nexit 0\n").unwrap();
    let agent_config = fill_agent_config(&agent_dir, &url, &script);
    let agent = TestAgent::start(&agent_config).await;
    let conn = db(&data);
    wait_until("the incident to be recorded", || {
        incident_state(&conn).is_some()
    })
    .await;
    let (suppressed, why): (bool, String) = conn
        .query_row(
            "SELECT i.suppressed, e.detail FROM incidents i JOIN incident_events e USING (incident_id) WHERE e.action = 'suppressed'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert!(suppressed);
    assert!(why.contains("disk replacement"), "{why}");
    agent.stop().await;
    collector.stop().await;
}

#[tokio::test]
async fn an_agent_that_stops_reporting_raises_an_offline_incident_that_resolves_when_it_returns() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("collector");
    // The built-in rules (agent offline after 5 minutes) on a clock the test
    // moves: no waiting for real minutes.
    let clock = ManualClock::new();
    let collector =
        TestCollector::start_with_clock(collector_config(&data, 0), clock.clone()).await;
    let url = collector.url();
    let agent_dir = dir.path().join("agent");
    enroll_agent(&data, &url, &agent_dir).await;
    let agent_cfg = agent_config(&agent_dir, &url, Duration::from_secs(3600));
    let agent = TestAgent::start(&agent_cfg).await;
    agent.wait_acked(1).await;
    agent.stop().await;

    let conn = db(&data);
    let state = |c: &rusqlite::Connection| -> Option<String> {
        c.query_row(
            "SELECT state FROM incidents WHERE rule_id = 'agent.offline' ORDER BY incident_id DESC LIMIT 1",
            [],
            |r| r.get(0),
        )
        .ok()
    };
    // Six minutes pass without a report (the rule says five); the engine's
    // one-second tick notices.
    clock.advance(Duration::from_secs(6 * 60));
    wait_until("the offline incident to open", || {
        state(&conn).as_deref() == Some("open")
    })
    .await;
    let agent = TestAgent::start(&agent_cfg).await;
    wait_until("the offline incident to resolve", || {
        state(&conn).as_deref() == Some("resolved")
    })
    .await;
    agent.stop().await;
    collector.stop().await;
}

#[tokio::test]
async fn an_agent_over_the_new_series_limit_raises_an_incident_and_its_samples_are_counted() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("collector");
    let mut config = collector_config(&data, 0);
    config.server.max_new_series_per_hour = 100;
    let collector = TestCollector::start_with(config).await;
    let url = collector.url();
    // A custom check whose performance data has 300 labels: far more new
    // series than the limit of 100.
    let script = dir.path().join("check_many.sh");
    let perf: Vec<String> = (0..300).map(|i| format!("l{i}={i}")).collect();
    std::fs::write(
        &script,
        format!("echo \"MANY OK | {}\"\nexit 0\n", perf.join(" ")),
    )
    .unwrap();
    let agent_dir = dir.path().join("agent");
    enroll_agent(&data, &url, &agent_dir).await;
    let agent = TestAgent::start(&fill_agent_config(&agent_dir, &url, &script)).await;
    let seq = agent.collect_one().await;
    agent.wait_acked(seq).await;
    let conn = db(&data);
    wait_until("the series-limit incident", || {
        count(
            &conn,
            "SELECT count(*) FROM incidents WHERE rule_id = 'agent.series_limit' AND state = 'open'",
        ) == 1
    })
    .await;
    assert_eq!(count(&conn, "SELECT count(*) FROM series"), 100);
    let refused = count(&conn, "SELECT sum(series_refused_total) FROM agents");
    // The plugin parser keeps at most MAX_METRICS perfdata values.
    assert!(refused >= 100, "{refused} refused");
    agent.stop().await;
    collector.stop().await;
}

#[tokio::test]
async fn a_breach_stored_during_the_shutdown_grace_still_opens_its_incident() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("collector");
    let config = collector_config_with_fill_rules(dir.path());
    let collector = TestCollector::start_with(config).await;
    let url = collector.url();
    let (script, value) = fill_script_reading_a_file(dir.path(), "50");
    let agent_dir = dir.path().join("agent");
    enroll_agent(&data, &url, &agent_dir).await;
    let agent = TestAgent::start(&fill_agent_config(&agent_dir, &url, &script)).await;
    // The agent's stream is open (its Hello is a writer job too).
    let seq = agent.collect_one().await;
    agent.wait_acked(seq).await;
    std::fs::write(&value, "95").unwrap();

    // A writer held by a slow job (as by a slow disk): the breaching report
    // waits in its queue while the collector is told to stop.
    let writer = collector.collector().writer().clone();
    let (started_tx, started) = std::sync::mpsc::channel();
    let (release, released) = std::sync::mpsc::channel::<()>();
    let slow = tokio::spawn({
        let writer = writer.clone();
        async move {
            writer
                .run(move |_| {
                    started_tx.send(()).unwrap();
                    let _ = released.recv();
                    Ok(())
                })
                .await
        }
    });
    tokio::task::spawn_blocking(move || started.recv().unwrap())
        .await
        .unwrap();
    let before = writer.queued();
    agent.collect_one().await;
    wait_until("the report to wait for the writer", || {
        writer.queued() > before
    })
    .await;
    collector.begin_stop();
    // Before the fix the alerting task stopped here, on the same token, and
    // the report, stored and acknowledged during the grace, went
    // unevaluated; this pause gives it that time, so the test would see it.
    tokio::time::sleep(Duration::from_millis(500)).await;
    release.send(()).unwrap();
    slow.await.unwrap().unwrap();
    // The writer thread ends once its last handle is gone.
    drop(writer);
    collector.stop().await;
    agent.stop().await;
    assert_eq!(
        incident_state(&db(&data)).map(|(_, state, _)| state),
        Some("open".to_string())
    );
}
