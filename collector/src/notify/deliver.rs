//! The notifier task: routing, grouping and delivery with retries.
//!
//! Channel: `Notifier::notify` does `try_send` on a bounded queue
//! (`DeliveryOptions::queue_capacity`, 1024 by default). When it is full the
//! notification is dropped, counted in `Counters::dropped_queue_full` and
//! logged: the alerting path must never wait for chat servers.
//!
//! Delivery: each released batch runs in its own task, at most
//! `per_target_concurrency` (4) at a time per target, so a slow or failing
//! target only delays itself. Batches waiting for a slot are bounded by
//! `per_target_backlog` (256); beyond that they are dropped and counted in
//! that target's `dropped`. Each batch gets up to `max_attempts` (5) tries
//! with exponential, jittered backoff clamped to `max_backoff`; transport
//! errors, timeouts, HTTP 5xx/408/429 and robot rate limits are retried,
//! other refusals (4xx, robot errcodes, SMTP 5xx) fail at once.
//!
//! Shutdown: when every `Notifier` clone is dropped the task sends what is
//! still buffered at once, waits for deliveries in flight (retries included)
//! and ends.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use rand::Rng;
use tokio::sync::{Semaphore, mpsc};
use tokio::task::{JoinHandle, JoinSet};

use super::config::{Channel, NotifyConfig, Target};
use super::format;
use super::group::{Batch, Grouper};
use super::{Notification, NotificationKind, email, webhook};

/// Outcome of one attempt.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    #[error("{0}")]
    Retryable(String),
    #[error("{0}")]
    Permanent(String),
}

/// Tuning; `Default` is what production uses.
#[derive(Debug, Clone)]
pub struct DeliveryOptions {
    pub queue_capacity: usize,
    pub max_attempts: u32,
    pub base_backoff: Duration,
    pub max_backoff: Duration,
    /// Per attempt, connection included.
    pub timeout: Duration,
    pub per_target_concurrency: usize,
    pub per_target_backlog: usize,
}

impl Default for DeliveryOptions {
    fn default() -> Self {
        Self {
            queue_capacity: 1024,
            max_attempts: 5,
            base_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(60),
            timeout: Duration::from_secs(10),
            per_target_concurrency: 4,
            per_target_backlog: 256,
        }
    }
}

/// Snapshot of the counters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counters {
    /// Notifications refused because the queue was full (or the task gone).
    pub dropped_queue_full: u64,
    pub targets: BTreeMap<String, TargetCounters>,
}

/// Per target, counted in messages (batches), not notifications.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TargetCounters {
    pub attempts: u64,
    pub retries: u64,
    pub delivered: u64,
    /// Gave up (permanent error or attempts exhausted).
    pub failed: u64,
    /// Dropped because the target's backlog was full.
    pub dropped: u64,
}

#[derive(Debug, Default)]
struct TargetStats {
    attempts: AtomicU64,
    retries: AtomicU64,
    delivered: AtomicU64,
    failed: AtomicU64,
    dropped: AtomicU64,
}

impl TargetStats {
    fn snapshot(&self) -> TargetCounters {
        TargetCounters {
            attempts: self.attempts.load(Ordering::Relaxed),
            retries: self.retries.load(Ordering::Relaxed),
            delivered: self.delivered.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
        }
    }
}

#[derive(Debug)]
struct Stats {
    dropped_queue_full: AtomicU64,
    targets: BTreeMap<String, Arc<TargetStats>>,
}

/// Handle to the notifier task; cheap to clone.
#[derive(Debug, Clone)]
pub struct Notifier {
    tx: mpsc::Sender<Notification>,
    stats: Arc<Stats>,
}

/// Error starting the notifier.
#[derive(Debug, thiserror::Error)]
#[error("starting the notifier: {0}")]
pub struct StartError(String);

impl Notifier {
    /// Starts the task (must be called inside a Tokio runtime). `targets`
    /// come from `cfg.resolve(..)`; `cfg` supplies the grouping times.
    pub fn start(
        cfg: &NotifyConfig,
        targets: Vec<Target>,
        opts: DeliveryOptions,
    ) -> Result<(Notifier, JoinHandle<()>), StartError> {
        let client = reqwest::Client::builder()
            .timeout(opts.timeout)
            .connect_timeout(opts.timeout)
            // A redirect would send the body somewhere the operator did not
            // configure.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent("xunjian-collector")
            .build()
            .map_err(|e| StartError(e.to_string()))?;
        let stats = Arc::new(Stats {
            dropped_queue_full: AtomicU64::new(0),
            targets: targets
                .iter()
                .map(|t| (t.name.clone(), Arc::default()))
                .collect(),
        });
        let (tx, rx) = mpsc::channel(opts.queue_capacity.max(1));
        let runtime = targets
            .into_iter()
            .map(|t| {
                let stats = stats.targets.get(&t.name).cloned().unwrap_or_default();
                let rt = TargetRt {
                    slots: Arc::new(Semaphore::new(opts.per_target_concurrency.max(1))),
                    backlog: Arc::new(AtomicUsize::new(0)),
                    stats,
                    target: Arc::new(t),
                };
                (rt.target.name.clone(), rt)
            })
            .collect();
        let task = Task {
            grouper: Grouper::new(cfg.group_wait, cfg.group_interval),
            targets: runtime,
            client,
            opts,
            deliveries: JoinSet::new(),
        };
        let handle = tokio::spawn(task.run(rx));
        Ok((Notifier { tx, stats }, handle))
    }

    /// Queues a notification; never waits. Returns false if it was dropped
    /// (queue full or notifier stopped), which is counted and logged.
    pub fn notify(&self, n: Notification) -> bool {
        match self.tx.try_send(n) {
            Ok(()) => true,
            Err(e) => {
                let before = self
                    .stats
                    .dropped_queue_full
                    .fetch_add(1, Ordering::Relaxed);
                // First drop and then every 1000th: a full queue must not
                // also flood the log.
                if before.is_multiple_of(1000) {
                    let why = match e {
                        mpsc::error::TrySendError::Full(_) => "queue full",
                        mpsc::error::TrySendError::Closed(_) => "notifier stopped",
                    };
                    tracing::warn!(dropped_total = before + 1, why, "notification dropped");
                }
                false
            }
        }
    }

    pub fn counters(&self) -> Counters {
        Counters {
            dropped_queue_full: self.stats.dropped_queue_full.load(Ordering::Relaxed),
            targets: self
                .stats
                .targets
                .iter()
                .map(|(k, v)| (k.clone(), v.snapshot()))
                .collect(),
        }
    }
}

/// Which targets get `n`: every target not marked `escalation_only`, and
/// for a breach also the escalation target of each of those (one level,
/// each target once).
pub fn route<'a>(targets: &'a [Target], n: &Notification) -> Vec<&'a str> {
    let mut out: Vec<&str> = Vec::new();
    for t in targets.iter().filter(|t| !t.escalation_only) {
        if !out.contains(&t.name.as_str()) {
            out.push(&t.name);
        }
    }
    if n.kind == NotificationKind::Breach {
        for t in targets.iter().filter(|t| !t.escalation_only) {
            if let Some(esc) = t.escalation_to.as_deref()
                && !out.contains(&esc)
                && targets.iter().any(|x| x.name == esc)
            {
                out.push(esc);
            }
        }
    }
    out
}

/// Backoff before retry number `retry` (1-based): `base * 2^(retry-1)`,
/// clamped with `min` to `max`, then jittered into [half, full] by
/// `jitter` in [0, 1] so targets failing together do not retry in lockstep.
pub fn backoff(retry: u32, base: Duration, max: Duration, jitter: f64) -> Duration {
    let factor = 2u32.saturating_pow(retry.saturating_sub(1));
    let full = base.saturating_mul(factor).min(max);
    let jitter = if jitter.is_finite() {
        jitter.clamp(0.0, 1.0)
    } else {
        1.0
    };
    full / 2 + (full / 2).mul_f64(jitter)
}

struct TargetRt {
    target: Arc<Target>,
    slots: Arc<Semaphore>,
    backlog: Arc<AtomicUsize>,
    stats: Arc<TargetStats>,
}

struct Task {
    grouper: Grouper,
    targets: BTreeMap<String, TargetRt>,
    client: reqwest::Client,
    opts: DeliveryOptions,
    deliveries: JoinSet<()>,
}

impl Task {
    async fn run(mut self, mut rx: mpsc::Receiver<Notification>) {
        let list: Vec<Target> = self.targets.values().map(|t| (*t.target).clone()).collect();
        loop {
            let next = self.grouper.next_due();
            let wake = async move {
                match next {
                    Some(t) => tokio::time::sleep_until(tokio::time::Instant::from_std(t)).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                msg = rx.recv() => match msg {
                    Some(n) => {
                        let now = Instant::now();
                        for name in route(&list, &n) {
                            self.grouper.push(name, n.clone(), now);
                        }
                    }
                    None => break,
                },
                () = wake => {}
                // Reap finished deliveries so the set does not grow.
                Some(_) = self.deliveries.join_next(), if !self.deliveries.is_empty() => {}
            }
            for batch in self.grouper.due(Instant::now()) {
                self.dispatch(batch);
            }
        }
        for batch in self.grouper.drain_all() {
            self.dispatch(batch);
        }
        while self.deliveries.join_next().await.is_some() {}
    }

    fn dispatch(&mut self, batch: Batch) {
        let Some(t) = self.targets.get(&batch.target) else {
            return;
        };
        if t.backlog.fetch_add(1, Ordering::Relaxed) >= self.opts.per_target_backlog {
            t.backlog.fetch_sub(1, Ordering::Relaxed);
            t.stats.dropped.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(target_name = %batch.target, host = %batch.host, "notification backlog full, message dropped");
            return;
        }
        let (target, slots, backlog, stats) = (
            t.target.clone(),
            t.slots.clone(),
            t.backlog.clone(),
            t.stats.clone(),
        );
        let client = self.client.clone();
        let opts = self.opts.clone();
        self.deliveries.spawn(async move {
            // The semaphore is never closed; if it were, sending without a
            // slot is still better than losing the message.
            let _slot = slots.acquire_owned().await.ok();
            deliver(&client, &target, &batch, &opts, &stats).await;
            backlog.fetch_sub(1, Ordering::Relaxed);
        });
    }
}

async fn send_once(
    client: &reqwest::Client,
    target: &Target,
    batch: &Batch,
    timeout: Duration,
) -> Result<(), SendError> {
    let attempt = async {
        match &target.channel {
            Channel::Webhook { kind, url } => {
                let body = format::webhook_body(*kind, batch).unwrap_or_default();
                webhook::send(client, *kind, &url.0, body).await
            }
            Channel::Email(s) => email::send(s, format::email(batch), timeout).await,
        }
    };
    tokio::time::timeout(timeout, attempt)
        .await
        .unwrap_or_else(|_| Err(SendError::Retryable(format!("timed out after {timeout:?}"))))
}

async fn deliver(
    client: &reqwest::Client,
    target: &Target,
    batch: &Batch,
    opts: &DeliveryOptions,
    stats: &TargetStats,
) {
    let max = opts.max_attempts.max(1);
    for attempt in 1..=max {
        stats.attempts.fetch_add(1, Ordering::Relaxed);
        let err = match send_once(client, target, batch, opts.timeout).await {
            Ok(()) => {
                stats.delivered.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(target_name = %target.name, host = %batch.host, attempt, "notification delivered");
                return;
            }
            Err(e) => e,
        };
        if matches!(err, SendError::Permanent(_)) || attempt == max {
            stats.failed.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(target_name = %target.name, host = %batch.host, attempt, error = %err, "notification not delivered");
            return;
        }
        stats.retries.fetch_add(1, Ordering::Relaxed);
        let delay = backoff(
            attempt,
            opts.base_backoff,
            opts.max_backoff,
            rand::rng().random::<f64>(),
        );
        tracing::info!(target_name = %target.name, host = %batch.host, attempt, error = %err, ?delay, "notification failed, retrying");
        tokio::time::sleep(delay).await;
    }
}

#[cfg(test)]
mod tests {
    use super::super::config::{EmailSettings, Secret, SmtpSecurity, TargetKind};
    use super::*;
    use chrono::{TimeZone, Utc};
    use std::sync::Mutex;
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
    use tokio::net::TcpListener;

    fn note(kind: NotificationKind, id: i64, host: &str) -> Notification {
        Notification {
            kind,
            incident_id: id,
            severity: "II".into(),
            host: host.into(),
            title: format!("Disk usage high {id}"),
            value: "95%".into(),
            threshold: "90%".into(),
            at: Utc.with_ymd_and_hms(2025, 1, 2, 3, 4, 5).unwrap(),
        }
    }

    fn hook(name: &str, kind: TargetKind, url: &str) -> Target {
        Target {
            name: name.into(),
            escalation_to: None,
            escalation_only: false,
            channel: Channel::Webhook {
                kind,
                url: Secret(reqwest::Url::parse(url).unwrap()),
            },
        }
    }

    fn fast() -> DeliveryOptions {
        DeliveryOptions {
            base_backoff: Duration::from_millis(20),
            max_backoff: Duration::from_millis(200),
            timeout: Duration::from_secs(5),
            ..DeliveryOptions::default()
        }
    }

    fn instant_groups() -> NotifyConfig {
        NotifyConfig {
            group_wait: Duration::ZERO,
            group_interval: Duration::from_secs(30),
            targets: vec![],
        }
    }

    /// A real HTTP/1.1 server on 127.0.0.1: reads each request (headers +
    /// Content-Length body), records the body, answers with what `reply`
    /// says for the n-th request (0-based) after `delay`.
    struct Http {
        url: String,
        bodies: Arc<Mutex<Vec<String>>>,
    }

    async fn http_server(
        delay: Duration,
        reply: impl Fn(usize) -> (u16, &'static str) + Send + Sync + 'static,
    ) -> Http {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook?key=secret", listener.local_addr().unwrap());
        let bodies = Arc::new(Mutex::new(Vec::new()));
        let seen = bodies.clone();
        let reply = Arc::new(reply);
        let count = Arc::new(AtomicUsize::new(0));
        tokio::spawn(async move {
            while let Ok((sock, _)) = listener.accept().await {
                let (seen, reply, count) = (seen.clone(), reply.clone(), count.clone());
                tokio::spawn(async move {
                    let mut r = BufReader::new(sock);
                    let mut len = 0usize;
                    let mut line = String::new();
                    loop {
                        line.clear();
                        if r.read_line(&mut line).await.unwrap_or(0) == 0 {
                            return;
                        }
                        if line == "\r\n" {
                            break;
                        }
                        let lower = line.to_ascii_lowercase();
                        if let Some(v) = lower.strip_prefix("content-length:") {
                            len = v.trim().parse().unwrap_or(0);
                        }
                    }
                    let mut body = vec![0; len];
                    if r.read_exact(&mut body).await.is_err() {
                        return;
                    }
                    let n = count.fetch_add(1, Ordering::SeqCst);
                    seen.lock()
                        .unwrap()
                        .push(String::from_utf8_lossy(&body).into_owned());
                    tokio::time::sleep(delay).await;
                    let (status, text) = reply(n);
                    let resp = format!(
                        "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
                        text.len()
                    );
                    let _ = r.get_mut().write_all(resp.as_bytes()).await;
                    let _ = r.get_mut().shutdown().await;
                });
            }
        });
        Http { url, bodies }
    }

    async fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !cond() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    #[test]
    fn backoff_doubles_is_clamped_and_jittered() {
        let (b, m) = (Duration::from_secs(1), Duration::from_secs(10));
        assert_eq!(backoff(1, b, m, 1.0), Duration::from_secs(1));
        assert_eq!(backoff(3, b, m, 1.0), Duration::from_secs(4));
        assert_eq!(backoff(3, b, m, 0.0), Duration::from_secs(2));
        assert_eq!(backoff(9, b, m, 1.0), Duration::from_secs(10));
        assert_eq!(backoff(u32::MAX, b, m, 1.0), Duration::from_secs(10));
        assert_eq!(backoff(2, b, m, f64::NAN), Duration::from_secs(2));
    }

    #[test]
    fn breaches_also_go_to_the_escalation_target() {
        let mut a = hook("a", TargetKind::Slack, "https://h/a");
        a.escalation_to = Some("boss".into());
        let b = hook("b", TargetKind::Slack, "https://h/b");
        let mut boss = hook("boss", TargetKind::Slack, "https://h/c");
        boss.escalation_only = true;
        let ts = [a, b, boss];
        assert_eq!(
            route(&ts, &note(NotificationKind::Opened, 1, "h")),
            ["a", "b"]
        );
        assert_eq!(
            route(&ts, &note(NotificationKind::Breach, 1, "h")),
            ["a", "b", "boss"]
        );
    }

    #[tokio::test]
    async fn webhook_gets_one_message_per_host_with_the_formatted_body() {
        let plain = http_server(Duration::ZERO, |_| (200, "ok")).await;
        let robot = http_server(Duration::ZERO, |_| (200, r#"{"errcode":0,"errmsg":"ok"}"#)).await;
        let mut cfg = instant_groups();
        cfg.group_wait = Duration::from_millis(300);
        let targets = vec![
            hook("plain", TargetKind::Webhook, &plain.url),
            hook("robot", TargetKind::Wecom, &robot.url),
        ];
        let (n, task) = Notifier::start(&cfg, targets, fast()).unwrap();
        for i in 0..10 {
            assert!(n.notify(note(NotificationKind::Opened, i, "web-1")));
        }
        let c = n.clone();
        wait_for("both delivered", || {
            c.counters().targets.values().all(|t| t.delivered == 1)
        })
        .await;
        drop((n, c));
        task.await.unwrap();
        let bodies = plain.bodies.lock().unwrap().clone();
        assert_eq!(bodies.len(), 1, "ten problems, one message");
        let v: serde_json::Value = serde_json::from_str(&bodies[0]).unwrap();
        assert_eq!(v["host"], "web-1");
        assert_eq!(v["notifications"].as_array().unwrap().len(), 10);
        assert_eq!(v["notifications"][3]["incident_id"], 3);
        let bodies = robot.bodies.lock().unwrap().clone();
        assert_eq!(bodies.len(), 1);
        assert!(
            bodies[0].starts_with(
                r#"{"msgtype":"markdown","markdown":{"content":"**巡检 Xunjian · web-1"#
            ),
            "{}",
            bodies[0]
        );
    }

    #[tokio::test]
    async fn a_server_failing_twice_gets_the_message_on_the_third_attempt() {
        let srv = http_server(Duration::ZERO, |n| {
            if n < 2 { (503, "busy") } else { (200, "ok") }
        })
        .await;
        let (n, task) = Notifier::start(
            &instant_groups(),
            vec![hook("t", TargetKind::Slack, &srv.url)],
            fast(),
        )
        .unwrap();
        n.notify(note(NotificationKind::Opened, 1, "web-1"));
        let c = n.clone();
        wait_for("delivery", || c.counters().targets["t"].delivered == 1).await;
        let got = n.counters().targets["t"];
        assert_eq!(
            got,
            TargetCounters {
                attempts: 3,
                retries: 2,
                delivered: 1,
                failed: 0,
                dropped: 0
            }
        );
        let bodies = srv.bodies.lock().unwrap().clone();
        assert_eq!(bodies.len(), 3);
        assert!(
            bodies.iter().all(|b| b == &bodies[0]),
            "the same message each time"
        );
        drop((n, c));
        task.await.unwrap();
    }

    #[tokio::test]
    async fn an_always_failing_target_is_counted_and_does_not_delay_the_others() {
        // Slow and failing: each answer takes 300 ms, then 500.
        let bad = http_server(Duration::from_millis(300), |_| (500, "down")).await;
        let good = http_server(Duration::ZERO, |_| (200, "ok")).await;
        let targets = vec![
            hook("bad", TargetKind::Webhook, &bad.url),
            hook("good", TargetKind::Webhook, &good.url),
        ];
        let (n, task) = Notifier::start(&instant_groups(), targets, fast()).unwrap();
        let t0 = Instant::now();
        n.notify(note(NotificationKind::Opened, 1, "web-1"));
        n.notify(note(NotificationKind::Opened, 2, "web-2"));
        let c = n.clone();
        wait_for("good delivered", || {
            c.counters().targets["good"].delivered == 2
        })
        .await;
        assert!(
            t0.elapsed() < Duration::from_millis(1000),
            "{:?}",
            t0.elapsed()
        );
        assert_eq!(n.counters().targets["bad"].failed, 0, "bad still retrying");
        wait_for("bad gave up", || c.counters().targets["bad"].failed == 2).await;
        let bad_c = n.counters().targets["bad"];
        assert_eq!((bad_c.attempts, bad_c.retries, bad_c.delivered), (10, 8, 0));
        assert_eq!(bad.bodies.lock().unwrap().len(), 10);
        drop((n, c));
        task.await.unwrap();
    }

    #[tokio::test]
    async fn refusals_are_not_retried() {
        let robot = http_server(Duration::ZERO, |_| {
            (200, r#"{"errcode":93000,"errmsg":"invalid webhook url"}"#)
        })
        .await;
        let gone = http_server(Duration::ZERO, |_| (404, "no such hook")).await;
        let targets = vec![
            hook("robot", TargetKind::Dingtalk, &robot.url),
            hook("gone", TargetKind::Slack, &gone.url),
        ];
        let (n, task) = Notifier::start(&instant_groups(), targets, fast()).unwrap();
        n.notify(note(NotificationKind::Opened, 1, "web-1"));
        let c = n.clone();
        wait_for("both failed", || {
            c.counters().targets.values().all(|t| t.failed == 1)
        })
        .await;
        for t in n.counters().targets.values() {
            assert_eq!((t.attempts, t.retries), (1, 0));
        }
        drop((n, c));
        task.await.unwrap();
    }

    #[tokio::test]
    async fn a_full_queue_drops_and_counts_without_blocking() {
        // Current-thread runtime: the notifier task cannot run between these
        // calls, so the queue fills deterministically.
        let opts = DeliveryOptions {
            queue_capacity: 2,
            ..fast()
        };
        let (n, task) = Notifier::start(&instant_groups(), vec![], opts).unwrap();
        let sent: Vec<bool> = (0..5)
            .map(|i| n.notify(note(NotificationKind::Opened, i, "h")))
            .collect();
        assert_eq!(sent, [true, true, false, false, false]);
        assert_eq!(n.counters().dropped_queue_full, 3);
        drop(n);
        task.await.unwrap();
    }

    #[tokio::test]
    async fn shutdown_sends_what_is_still_grouped() {
        let srv = http_server(Duration::ZERO, |_| (200, "ok")).await;
        let cfg = NotifyConfig {
            group_wait: Duration::from_secs(3600),
            group_interval: Duration::from_secs(3600),
            targets: vec![],
        };
        let (n, task) =
            Notifier::start(&cfg, vec![hook("t", TargetKind::Webhook, &srv.url)], fast()).unwrap();
        n.notify(note(NotificationKind::Resolved, 1, "web-1"));
        drop(n);
        task.await.unwrap();
        assert_eq!(srv.bodies.lock().unwrap().len(), 1);
    }

    /// Plain SMTP on 127.0.0.1, enough of RFC 5321 for one client:
    /// greeting, EHLO, MAIL, RCPT, DATA (dot-terminated), QUIT.
    async fn smtp_server() -> (u16, tokio::sync::oneshot::Receiver<(Vec<String>, String)>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (tx, rx) = tokio::sync::oneshot::channel();
        tokio::spawn(async move {
            let (sock, _) = listener.accept().await.unwrap();
            let (r, mut w) = sock.into_split();
            let mut r = BufReader::new(r);
            let mut commands = Vec::new();
            let mut data = String::new();
            w.write_all(b"220 localhost ESMTP test\r\n").await.unwrap();
            let mut line = String::new();
            loop {
                line.clear();
                if r.read_line(&mut line).await.unwrap() == 0 {
                    break;
                }
                let cmd = line.trim_end().to_owned();
                let upper = cmd.to_ascii_uppercase();
                commands.push(cmd);
                let reply: &[u8] = if upper.starts_with("EHLO") {
                    b"250-localhost\r\n250 8BITMIME\r\n"
                } else if upper.starts_with("MAIL")
                    || upper.starts_with("RCPT")
                    || upper.starts_with("RSET")
                {
                    b"250 OK\r\n"
                } else if upper == "DATA" {
                    w.write_all(b"354 go ahead\r\n").await.unwrap();
                    loop {
                        line.clear();
                        if r.read_line(&mut line).await.unwrap() == 0 || line == ".\r\n" {
                            break;
                        }
                        data.push_str(&line);
                    }
                    b"250 queued\r\n"
                } else if upper == "QUIT" {
                    w.write_all(b"221 bye\r\n").await.unwrap();
                    break;
                } else {
                    b"502 not implemented\r\n"
                };
                w.write_all(reply).await.unwrap();
            }
            let _ = tx.send((commands, data));
        });
        (port, rx)
    }

    /// Just enough base64 to read the test message (no extra dependency).
    fn unbase64(s: &str) -> Vec<u8> {
        const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let (mut out, mut acc, mut bits) = (Vec::new(), 0u32, 0);
        for c in s.bytes() {
            let Some(v) = A.iter().position(|&a| a == c) else {
                continue;
            };
            acc = (acc << 6) | v as u32;
            bits += 6;
            if bits >= 8 {
                bits -= 8;
                out.push((acc >> bits) as u8);
            }
        }
        out
    }

    /// Decodes RFC 2047 `=?utf-8?b?...?=` words in an unfolded header;
    /// whitespace between two encoded words is dropped, as the RFC says.
    fn decode_header(raw: &str) -> String {
        let mut out = Vec::new();
        let mut rest = raw;
        let mut after_word = false;
        while let Some(i) = rest.to_ascii_lowercase().find("=?utf-8?b?") {
            let literal = &rest[..i];
            if !(after_word && literal.trim().is_empty()) {
                out.extend_from_slice(literal.as_bytes());
            }
            let tail = &rest[i + 10..];
            let end = tail.find("?=").unwrap_or(tail.len());
            out.extend(unbase64(&tail[..end]));
            rest = &tail[(end + 2).min(tail.len())..];
            after_word = true;
        }
        out.extend_from_slice(rest.as_bytes());
        String::from_utf8_lossy(&out).trim().to_owned()
    }

    #[tokio::test]
    async fn email_goes_through_a_real_smtp_exchange() {
        let (port, rx) = smtp_server().await;
        let target = Target {
            name: "mail".into(),
            escalation_to: None,
            escalation_only: false,
            channel: Channel::Email(EmailSettings {
                host: "127.0.0.1".into(),
                port,
                security: SmtpSecurity::None,
                credentials: None,
                from: "Xunjian <xunjian@example.com>".parse().unwrap(),
                to: vec!["oncall@example.com".parse().unwrap()],
            }),
        };
        let (n, task) = Notifier::start(&instant_groups(), vec![target], fast()).unwrap();
        n.notify(note(NotificationKind::Breach, 42, "web-1"));
        drop(n);
        task.await.unwrap();
        let (commands, data) = rx.await.unwrap();
        assert!(
            commands
                .iter()
                .any(|c| c.starts_with("MAIL FROM:<xunjian@example.com>")),
            "{commands:?}"
        );
        assert!(
            commands
                .iter()
                .any(|c| c.starts_with("RCPT TO:<oncall@example.com>")),
            "{commands:?}"
        );
        let (head, body) = data.split_once("\r\n\r\n").unwrap();
        // Unfold headers, then find the subject.
        let head = head.replace("\r\n ", " ").replace("\r\n\t", " ");
        let subject = head
            .lines()
            .find_map(|l| l.strip_prefix("Subject: "))
            .expect("subject header");
        assert_eq!(
            decode_header(subject),
            "巡检 Xunjian · web-1 · 已超时 Breach (1 incident)"
        );
        assert!(head.contains("Content-Transfer-Encoding: base64"), "{head}");
        let text = String::from_utf8(unbase64(body)).unwrap();
        assert!(
            text.contains("[已超时 Breach] #42 II Disk usage high 42: 95% (threshold 90%) 2025-01-02 03:04:05 UTC"),
            "{text}"
        );
    }
}
