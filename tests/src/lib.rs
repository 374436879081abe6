//! Shared harness for the integration tests: real collectors (in-process or
//! as child processes) on 127.0.0.1 with real TLS and a temporary SQLite
//! file, and real agents enrolled through the real enrollment path.

pub mod fuzz_bodies;
pub mod load;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rusqlite::Connection;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;
use xunjian_agent::config::AgentConfig;
use xunjian_agent::enroll::{self, Credentials};
use xunjian_agent::runner::{self, AgentHandle};
use xunjian_collector::clock::{Clock, SystemClock};
use xunjian_collector::config::CollectorConfig;
use xunjian_collector::pki::Pki;
use xunjian_collector::server::Collector;
use xunjian_collector::store;

/// How long a test waits for a condition before failing.
pub const PATIENCE: Duration = Duration::from_secs(30);

/// A collector configuration on 127.0.0.1 with its data in `dir`.
pub fn collector_config(dir: &Path, port: u16) -> CollectorConfig {
    let mut config = CollectorConfig::default();
    config.server.listen = SocketAddr::from(([127, 0, 0, 1], port));
    config.storage.data_dir = dir.to_owned();
    config
}

/// A collector running inside the test process.
pub struct TestCollector {
    pub config: CollectorConfig,
    pub addr: SocketAddr,
    pub ca_fingerprint: String,
    stop: CancellationToken,
    collector: Option<Collector>,
}

impl TestCollector {
    /// Starts on an ephemeral port with its data in `dir`.
    pub async fn start(dir: &Path) -> Self {
        Self::start_on(dir, 0).await
    }

    /// Starts on `port` (0 = ephemeral) with its data in `dir`.
    pub async fn start_on(dir: &Path, port: u16) -> Self {
        Self::start_with(collector_config(dir, port)).await
    }

    /// Starts with a full configuration.
    pub async fn start_with(config: CollectorConfig) -> Self {
        Self::start_with_clock(config, Arc::new(SystemClock)).await
    }

    /// Starts with a full configuration and a clock the test controls.
    pub async fn start_with_clock(config: CollectorConfig, clock: Arc<dyn Clock>) -> Self {
        let stop = CancellationToken::new();
        let collector = Collector::start(&config, clock, stop.clone())
            .await
            .expect("collector starts");
        Self {
            addr: collector.addr(),
            ca_fingerprint: collector.ca_fingerprint().to_owned(),
            config,
            stop,
            collector: Some(collector),
        }
    }

    pub fn url(&self) -> String {
        format!("https://127.0.0.1:{}", self.addr.port())
    }

    pub fn collector(&self) -> &Collector {
        self.collector.as_ref().expect("running")
    }

    /// Starts the orderly stop without waiting for it ([`Self::stop`] waits).
    pub fn begin_stop(&self) {
        self.stop.cancel();
    }

    /// Stops it (orderly) and waits until storage is drained.
    pub async fn stop(mut self) {
        self.stop.cancel();
        if let Some(c) = self.collector.take() {
            c.wait().await.expect("collector stops cleanly");
        }
    }
}

/// Creates an enrollment token on the collector whose data is in `data_dir`.
pub fn token(data_dir: &Path, uses: u32, created_at_ms: i64, ttl: Duration) -> String {
    let pki = Pki::load_or_create(&data_dir.join("pki")).expect("pki");
    let mut conn = store::open(&data_dir.join("xunjian.db")).expect("db");
    let t = store::create_token(
        &mut conn,
        created_at_ms,
        ttl.as_millis() as i64,
        uses,
        "test",
        "",
    )
    .expect("token");
    xunjian_proto::token::format(&t.secret, &pki.ca_fingerprint())
}

/// A valid one-use token, valid for an hour.
pub fn fresh_token(data_dir: &Path) -> String {
    token(data_dir, 1, SystemClock.now_ms(), Duration::from_secs(3600))
}

/// Enrolls an agent whose data directory is `agent_dir`.
pub async fn enroll_agent(collector_data: &Path, url: &str, agent_dir: &Path) -> Credentials {
    let token = fresh_token(collector_data);
    enroll::enroll(agent_dir, url, &token, None)
        .await
        .expect("enrollment succeeds")
}

/// An agent configuration for tests: small spool, the given interval, only
/// the `system` area (so every report is one the test asked for; the other
/// areas have tests of their own).
pub fn agent_config(agent_dir: &Path, url: &str, interval: Duration) -> AgentConfig {
    let mut c = AgentConfig::with_data_dir(agent_dir.to_owned());
    c.collector = Some(url.to_owned());
    c.collect.metrics_interval = interval;
    c.collect.areas = vec!["system".into()];
    c.spool.max_bytes = 16 * 1024 * 1024;
    c
}

/// The first message of a raw Ingest stream, claiming `claimed` as the
/// agent id ("" claims nothing).
pub fn hello_message(claimed: &str) -> xunjian_proto::AgentMessage {
    xunjian_proto::AgentMessage {
        kind: Some(xunjian_proto::agent_message::Kind::Hello(
            xunjian_proto::Hello {
                agent_version: "test".into(),
                claimed_agent_id: claimed.into(),
                ..Default::default()
            },
        )),
    }
}

/// A rules file with one rule on the `fill` check's metric: over 90 opens
/// an incident, under 80 resolves it.
pub const FILL_RULES: &str = r#"
[[rule]]
id = "fill.high"
title = "Fill on {host} at {value}%"
severity = "II"
hosts = "all"
metric = "custom.fill.used"
op = ">"
threshold = 90
recover_threshold = 80
"#;

/// A collector config (data in `dir/collector`) with [`FILL_RULES`] as its
/// rules file, written to `dir/rules.toml`.
pub fn collector_config_with_fill_rules(dir: &Path) -> CollectorConfig {
    let rules = dir.join("rules.toml");
    std::fs::write(&rules, FILL_RULES).expect("rules file written");
    let mut config = collector_config(&dir.join("collector"), 0);
    config.alerting.rules_file = Some(rules);
    config
}

/// A `fill` check script (`dir/check_fill.sh`) that reports the number in
/// a file beside it (`dir/value`, written as `initial`): a test changes the
/// value by rewriting that file. Returns (script, value file).
pub fn fill_script_reading_a_file(dir: &Path, initial: &str) -> (PathBuf, PathBuf) {
    let value = dir.join("value");
    std::fs::write(&value, initial).expect("value file written");
    let script = dir.join("check_fill.sh");
    std::fs::write(
        &script,
        format!(
            "v=$(cat {})\necho \"FILL $v | used=$v%\"\nexit 0\n",
            value.display()
        ),
    )
    .expect("script written");
    (script, value)
}

/// An agent running only the system area and the `fill` custom check
/// (`script`, run by /bin/sh), which reports `custom.fill.used`.
pub fn fill_agent_config(agent_dir: &Path, url: &str, script: &Path) -> AgentConfig {
    let mut config = agent_config(agent_dir, url, Duration::from_secs(3600));
    config.collect.areas = vec!["system".into(), "plugins".into()];
    config.checks = vec![
        toml::from_str(&format!(
            "id = \"fill\"\ncommand = [\"/bin/sh\", \"{}\"]\ninterval = \"24h\"\n",
            script.display()
        ))
        .expect("a valid check"),
    ];
    config
}

/// An agent running inside the test process.
pub struct TestAgent {
    pub handle: AgentHandle,
    pub stop: CancellationToken,
}

impl TestAgent {
    pub async fn start(config: &AgentConfig) -> Self {
        let stop = CancellationToken::new();
        let handle = runner::start(config, stop.clone())
            .await
            .expect("agent starts");
        Self { handle, stop }
    }

    pub fn acked(&self) -> u64 {
        *self.handle.acked().borrow()
    }

    /// Waits until the collector has acknowledged `seq`.
    pub async fn wait_acked(&self, seq: u64) {
        let mut rx = self.handle.acked();
        let r = tokio::time::timeout(PATIENCE, rx.wait_for(|a| *a >= seq)).await;
        assert!(
            matches!(r, Ok(Ok(_))),
            "agent {} did not get ack {seq} (acked {}, spool {:?})",
            self.handle.agent_id(),
            self.acked(),
            self.handle.spool_status()
        );
    }

    /// Collects one more report now; returns its sequence once spooled.
    pub async fn collect_one(&self) -> u64 {
        let before = self.handle.spool_status().last_seq;
        wait_until("a run-now request to be queued", || {
            self.handle.collect_now("test")
        })
        .await;
        wait_until("the report to be spooled", || {
            self.handle.spool_status().last_seq > before
        })
        .await;
        self.handle.spool_status().last_seq
    }

    pub async fn stop(self) {
        self.stop.cancel();
        self.handle.wait().await;
    }
}

/// Polls `cond` every 10 ms until it holds; fails the test after [`PATIENCE`].
/// This waits for an event, never for an amount of time.
pub async fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < PATIENCE, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A read-only connection to a collector's database.
pub fn db(collector_data: &Path) -> Connection {
    store::open_read_only(&collector_data.join("xunjian.db")).expect("db opens")
}

/// Sequences stored for an agent, ascending.
pub fn stored_sequences(conn: &Connection, agent: Uuid) -> Vec<u64> {
    let mut stmt = conn
        .prepare("SELECT sequence FROM reports WHERE agent_id = ?1 ORDER BY sequence")
        .unwrap();
    stmt.query_map([agent.to_string()], |r| r.get::<_, i64>(0))
        .unwrap()
        .map(|r| r.unwrap() as u64)
        .collect()
}

/// Integer result of a query.
pub fn count(conn: &Connection, sql: &str) -> i64 {
    conn.query_row(sql, [], |r| r.get(0)).unwrap()
}

/// An endpoint for hand-driven calls to a test collector at `url`, trusting
/// `ca_pem`: with `client`, presenting its certificate and key (mutual
/// TLS); without, presenting no certificate.
pub fn collector_endpoint(
    url: &str,
    ca_pem: &str,
    client: Option<&Credentials>,
) -> tonic::transport::Endpoint {
    use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(ca_pem))
        .domain_name("127.0.0.1");
    if let Some(c) = client {
        tls = tls.identity(Identity::from_pem(&c.cert_pem, &c.key_pem));
    }
    Endpoint::from_shared(url.to_owned())
        .expect("a valid URL")
        .tls_config(tls)
        .expect("a valid TLS configuration")
}

/// One stored metric sample, unpacked from its block.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredSample {
    pub agent_id: String,
    pub name: String,
    pub labels: String,
    pub series_id: i64,
    pub sequence: i64,
    pub at: i64,
    pub value: f64,
}

/// (agent, sequence, at, body) of every row of a block table, in block
/// order.
fn blocks(conn: &Connection, table: &str) -> Vec<(String, i64, i64, Vec<u8>)> {
    conn.prepare(&format!(
        "SELECT agent_id, sequence, at, body FROM {table} ORDER BY block_id"
    ))
    .unwrap()
    .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
    .unwrap()
    .collect::<Result<_, _>>()
    .unwrap()
}

/// Every stored sample, block by block (test databases are small).
pub fn stored_samples(conn: &Connection) -> Vec<StoredSample> {
    let series: std::collections::HashMap<i64, (String, String)> = conn
        .prepare("SELECT series_id, name, labels FROM series")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, (r.get(1)?, r.get(2)?))))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let mut out = Vec::new();
    for (agent_id, sequence, at, body) in blocks(conn, "sample_blocks") {
        for (series_id, value) in store::samples::decode(&body).unwrap() {
            let (name, labels) = series.get(&series_id).cloned().unwrap_or_default();
            out.push(StoredSample {
                agent_id: agent_id.clone(),
                name,
                labels,
                series_id,
                sequence,
                at,
                value,
            });
        }
    }
    out
}

/// One stored check result, unpacked from its block.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredCheck {
    pub agent_id: String,
    pub sequence: i64,
    pub at: i64,
    pub result: store::checks::CheckResult,
}

/// Every stored check result, block by block (test databases are small).
pub fn stored_checks(conn: &Connection) -> Vec<StoredCheck> {
    let mut out = Vec::new();
    for (agent_id, sequence, at, body) in blocks(conn, "check_blocks") {
        for result in store::checks::decode(&body).unwrap() {
            out.push(StoredCheck {
                agent_id: agent_id.clone(),
                sequence,
                at,
                result,
            });
        }
    }
    out
}

/// A clock the test moves by hand (starts at the real time).
#[derive(Debug)]
pub struct ManualClock(std::sync::atomic::AtomicI64);

impl ManualClock {
    pub fn new() -> Arc<Self> {
        Arc::new(Self(std::sync::atomic::AtomicI64::new(
            SystemClock.now_ms(),
        )))
    }

    pub fn advance(&self, by: Duration) {
        self.0
            .fetch_add(by.as_millis() as i64, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> i64 {
        self.0.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// A free TCP port on 127.0.0.1 (bound then released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A child process built from this workspace (`xunjian-harness`), killed
/// when dropped.
pub struct Proc {
    pub child: Child,
    log: PathBuf,
}

impl Proc {
    /// Starts `harness ROLE ARGS…`, logs to `log`.
    pub fn spawn(harness: &Path, role: &str, args: &[&str], log: &Path) -> Self {
        let log_file = std::fs::File::create(log).unwrap();
        let child = Command::new(harness)
            .arg(role)
            .args(args)
            .env(
                "RUST_LOG",
                std::env::var("XUNJIAN_CHILD_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().unwrap())
            .stderr(log_file)
            .spawn()
            .expect("harness binary starts");
        Self {
            child,
            log: log.to_owned(),
        }
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// SIGKILL and reap.
    pub fn kill9(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // A failing test shows what the process said.
        if std::thread::panicking() {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            eprintln!("--- {} ---\n{log}", self.log.display());
        }
    }
}

/// Waits until something accepts TCP connections on `port`.
pub async fn wait_listening(port: u16) {
    wait_until("the collector to listen", || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    })
    .await;
}

/// Writes a collector config file for a process-based collector.
pub fn write_collector_toml(path: &Path, data_dir: &Path, port: u16) {
    std::fs::write(
        path,
        format!(
            "[server]\nlisten = \"127.0.0.1:{port}\"\n[storage]\ndata_dir = \"{}\"\n",
            data_dir.display()
        ),
    )
    .unwrap();
}

/// Writes an agent config file for a process-based agent.
pub fn write_agent_toml(path: &Path, agent_dir: &Path, url: &str, interval: &str) -> PathBuf {
    std::fs::write(
        path,
        format!(
            "collector = \"{url}\"\ndata_dir = \"{}\"\n[collect]\nmetrics_interval = \"{interval}\"\nareas = [\"system\"]\n",
            agent_dir.display()
        ),
    )
    .unwrap();
    path.to_owned()
}

/// A collector running as a child process (`xunjian-harness collector
/// serve`) on a fixed port, so a test can SIGKILL it and start it again on
/// the same data. Run `n` logs to `<dir>/collector-<n>.log`.
pub struct CollectorProcess {
    harness: PathBuf,
    dir: PathBuf,
    config: PathBuf,
    /// The collector's data directory (`<dir>/collector`).
    pub data: PathBuf,
    pub port: u16,
    runs: usize,
    proc: Option<Proc>,
}

impl CollectorProcess {
    /// Writes its config into `dir`, starts it and waits until it listens.
    pub async fn start(harness: &Path, dir: &Path) -> Self {
        let port = free_port();
        let data = dir.join("collector");
        let config = dir.join("collector.toml");
        write_collector_toml(&config, &data, port);
        let mut c = Self {
            harness: harness.to_owned(),
            dir: dir.to_owned(),
            config,
            data,
            port,
            runs: 0,
            proc: None,
        };
        c.restart().await;
        c
    }

    pub fn url(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }

    /// How many times it has been started.
    pub fn runs(&self) -> usize {
        self.runs
    }

    /// SIGKILLs the running process (no orderly shutdown, no flush).
    pub fn kill9(&mut self) {
        if let Some(p) = self.proc.take() {
            p.kill9();
        }
    }

    /// SIGKILLs it if it runs, starts the next run and waits until it listens.
    pub async fn restart(&mut self) {
        self.kill9();
        let log = self.dir.join(format!("collector-{}.log", self.runs));
        let config = self.config.to_str().expect("a UTF-8 temporary path");
        self.proc = Some(Proc::spawn(
            &self.harness,
            "collector",
            &["--config", config, "serve"],
            &log,
        ));
        self.runs += 1;
        wait_listening(self.port).await;
    }
}

/// What contradicts "an ack means stored, and nothing is stored twice",
/// given each agent's acknowledged watermark: acknowledged sequences
/// missing from `reports`, samples or check results stored twice for one
/// report, and rows of a report that is not stored (a half-written report).
/// Empty when all holds.
pub fn ack_problems(conn: &Connection, acked: &[(Uuid, u64)]) -> Vec<String> {
    let mut problems = Vec::new();
    for &(agent, acked) in acked {
        let stored = stored_sequences(conn, agent);
        let missing: Vec<u64> = (1..=acked)
            .filter(|s| stored.binary_search(s).is_err())
            .collect();
        if !missing.is_empty() {
            problems.push(format!(
                "agent {agent}: {} acknowledged report(s) missing, first {:?}",
                missing.len(),
                &missing[..missing.len().min(5)]
            ));
        }
    }
    let checks = [
        (
            "check result blocks stored twice for one report",
            "SELECT count(*) FROM (SELECT 1 FROM check_blocks GROUP BY agent_id, sequence HAVING count(*) > 1)",
        ),
        (
            "samples of a report that is not stored",
            "SELECT count(*) FROM sample_blocks m
             WHERE NOT EXISTS (SELECT 1 FROM reports r WHERE r.agent_id = m.agent_id AND r.sequence = m.sequence)",
        ),
        (
            "check results of a report that is not stored",
            "SELECT count(*) FROM check_blocks c
             WHERE NOT EXISTS (SELECT 1 FROM reports r WHERE r.agent_id = c.agent_id AND r.sequence = c.sequence)",
        ),
    ];
    let mut seen = std::collections::HashSet::new();
    let doubled = stored_samples(conn)
        .into_iter()
        .filter(|s| !seen.insert((s.series_id, s.sequence)))
        .count();
    if doubled > 0 {
        problems.push(format!("{doubled} samples stored twice for one report"));
    }
    for (what, sql) in checks {
        let n = count(conn, sql);
        if n > 0 {
            problems.push(format!("{n} {what}"));
        }
    }
    problems
}

/// A small deterministic random source (xorshift64*) for tests that pick
/// random kill points: seeded from `env_var` when set, else from the time,
/// and printed, so a failing run can be replayed.
#[derive(Debug, Clone)]
pub struct TestRng(u64);

impl TestRng {
    pub fn from_env_or_time(env_var: &str) -> Self {
        let seed = std::env::var(env_var)
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| SystemClock.now_ms().unsigned_abs());
        println!("random seed {seed} (replay with {env_var}={seed})");
        Self(seed.max(1))
    }

    /// A number in `lo..=hi`.
    pub fn between(&mut self, lo: u64, hi: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let x = self.0.wrapping_mul(0x2545_F491_4F6C_DD1D);
        lo + x % (hi - lo + 1)
    }
}
