//! Load generation for scale tests: batch enrollment of simulated agents, a
//! simulator that drives thousands of real mTLS gRPC ingest streams from one
//! process, and the raw SQLite insert ceiling the end-to-end rate is judged
//! against. Used by the `loadsim` binary and the `ceiling` and `scale`
//! benchmarks.

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hdrhistogram::Histogram;
use prost::Message as _;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair};
use rusqlite::params;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;
use xunjian_agent::backoff::Backoff;
use xunjian_agent::enroll::Credentials;
use xunjian_agent::transport;
use xunjian_collector::config::CollectorConfig;
use xunjian_collector::pki::{Pki, PkiError};
use xunjian_collector::store::{self, NewAgent, StoreError, TokenRefusal};
use xunjian_proto::{
    AgentMessage, BlockDevice, CheckResult, CheckStatus, CollectorMessage, Filesystem, Hardware,
    Hello, INLINE_REPORT_MAX_BYTES, Inventory, Label, Metric, MetricBatch, NetworkInterface,
    Package, Report, Section, SpoolStatus, agent_message, collector_message,
    ingest_client::IngestClient, section,
};

/// Why a load run could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(transparent)]
    Pki(#[from] PkiError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{what}: {source}")]
    Sqlite {
        what: &'static str,
        source: rusqlite::Error,
    },
    #[error("cannot make a simulated agent's key or CSR: {0}")]
    Key(rcgen::Error),
    #[error("the batch enrollment token was refused: {0}")]
    Refused(TokenRefusal),
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("agents file {path}: {reason}")]
    AgentsFile { path: PathBuf, reason: String },
    #[error(
        "{wanted} open files are needed but the hard limit is {hard}: raise it (ulimit -Hn, or LimitNOFILE= in a systemd unit) or simulate fewer agents"
    )]
    FdLimit { wanted: u64, hard: u64 },
    #[error("cannot read or set the open-file limit: {0}")]
    Rlimit(nix::Error),
}

fn sqlite(what: &'static str) -> impl FnOnce(rusqlite::Error) -> LoadError {
    move |source| LoadError::Sqlite { what, source }
}

// ------------------------------------------------------------ fd limit

/// Open files a process needs besides its agent connections (database,
/// WAL, logs, listener, runtime internals), with room to spare.
pub const FD_HEADROOM: u64 = xunjian_collector::server::FD_RESERVE;

/// Raises this process's soft open-file limit to at least `wanted` (children
/// started afterwards inherit it). Returns the soft limit now in force.
/// Each simulated agent holds one socket; the collector holds one per agent.
pub fn raise_fd_limit(wanted: u64) -> Result<u64, LoadError> {
    let soft = xunjian_collector::server::raise_fd_limit(wanted).map_err(LoadError::Rlimit)?;
    if soft < wanted {
        return Err(LoadError::FdLimit { wanted, hard: soft });
    }
    Ok(soft)
}

// ---------------------------------------------------------- enrollment

/// Simulated agents enrolled in one batch, and where the time went.
#[derive(Debug)]
pub struct Enrolled {
    pub agents: Vec<Credentials>,
    /// Generating keys and CSRs and signing certificates (all cores).
    pub keys_and_certs: Duration,
    /// The one database transaction that registers them.
    pub database: Duration,
}

impl Enrolled {
    pub fn total(&self) -> Duration {
        self.keys_and_certs + self.database
    }
}

/// Enrolls `count` simulated agents with the collector whose data directory
/// is `collector_data_dir`, fast enough for 10,000 agents.
///
/// This bypasses the Enroll RPC on purpose: the RPC has its own tests, and
/// 10,000 round trips through it would make every scale run start with
/// minutes of enrollment. Everything else is the real path: each agent gets
/// its own ECDSA P-256 key (rcgen's `KeyPair::generate`, as the real agent
/// makes it) and a CSR, the collector's own CA signs it with
/// [`Pki::sign_agent`], and the agents are registered with
/// [`store::enroll_agent`] (the function the Enroll RPC's writer job runs),
/// consuming one use each of a token created for the batch, all in one
/// transaction. The collector may be running: SQLite's busy timeout lets the
/// transaction wait for its writer, and new agents are seen on connect.
pub fn enroll_batch(
    collector_data_dir: &Path,
    collector_url: &str,
    count: usize,
    now_ms: i64,
) -> Result<Enrolled, LoadError> {
    let config = collector_paths(collector_data_dir);
    let pki = Pki::load_or_create(&config.pki_dir())?;
    let started = Instant::now();
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let per_thread = count.div_ceil(threads.max(1)).max(1);
    let made: Vec<Result<Vec<(Credentials, NewAgent)>, LoadError>> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..count)
            .step_by(per_thread)
            .map(|first| {
                let last = (first + per_thread).min(count);
                let pki = &pki;
                s.spawn(move || {
                    (first..last)
                        .map(|_| make_agent(pki, collector_url))
                        .collect::<Result<Vec<_>, _>>()
                })
            })
            .collect();
        workers
            .into_iter()
            // A worker only panics on a bug in rcgen; surface it as such.
            .map(|w| w.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect()
    });
    let mut made_all = Vec::with_capacity(count);
    for batch in made {
        made_all.extend(batch?);
    }
    let keys_and_certs = started.elapsed();

    let started = Instant::now();
    let mut conn = store::open(&config.database_path())?;
    let uses = u32::try_from(count).unwrap_or(u32::MAX);
    let token = store::create_token(
        &mut conn,
        now_ms,
        3_600_000,
        uses,
        "loadsim",
        "batch enrollment of simulated agents",
    )?;
    let tx = conn
        .transaction()
        .map_err(sqlite("starting the enrollment transaction"))?;
    for (_, agent) in &made_all {
        store::enroll_agent(&tx, &token.secret, agent, now_ms)?.map_err(LoadError::Refused)?;
    }
    tx.commit()
        .map_err(sqlite("committing the enrollment transaction"))?;
    let database = started.elapsed();
    Ok(Enrolled {
        agents: made_all.into_iter().map(|(c, _)| c).collect(),
        keys_and_certs,
        database,
    })
}

/// The collector's file layout for a data directory.
fn collector_paths(data_dir: &Path) -> CollectorConfig {
    let mut config = CollectorConfig::default();
    config.storage.data_dir = data_dir.to_owned();
    config
}

fn make_agent(pki: &Pki, collector_url: &str) -> Result<(Credentials, NewAgent), LoadError> {
    let agent_id = Uuid::new_v4();
    let hostname = sim_hostname(agent_id);
    let key = KeyPair::generate().map_err(LoadError::Key)?;
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, hostname.clone());
    params.distinguished_name = dn;
    let csr = params.serialize_request(&key).map_err(LoadError::Key)?;
    let signed = pki.sign_agent(csr.der(), agent_id)?;
    let agent = NewAgent {
        agent_id,
        hostname,
        agent_version: sim_version(),
        cert_serial: signed.serial_hex,
        cert_sha256: signed.sha256_hex,
    };
    let creds = Credentials {
        agent_id,
        collector_url: collector_url.to_owned(),
        key_pem: key.serialize_pem(),
        cert_pem: signed.pem,
        ca_pem: pki.ca_pem().to_owned(),
    };
    Ok((creds, agent))
}

fn sim_hostname(agent_id: Uuid) -> String {
    format!("sim-{}", &agent_id.simple().to_string()[..12])
}

fn sim_version() -> String {
    format!("{}-loadsim", xunjian_agent::VERSION)
}

/// Simulated agents' credentials as `loadsim --enroll` saves them, so later
/// runs can stream as the same agents.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct AgentsFile {
    ca_pem: String,
    agents: Vec<StoredAgent>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StoredAgent {
    agent_id: Uuid,
    key_pem: String,
    cert_pem: String,
}

/// Writes the agents' credentials (private keys included: test identities
/// only) to `path`, readable by the owner only.
pub fn save_agents(path: &Path, agents: &[Credentials]) -> Result<(), LoadError> {
    let file = AgentsFile {
        ca_pem: agents.first().map(|a| a.ca_pem.clone()).unwrap_or_default(),
        agents: agents
            .iter()
            .map(|a| StoredAgent {
                agent_id: a.agent_id,
                key_pem: a.key_pem.clone(),
                cert_pem: a.cert_pem.clone(),
            })
            .collect(),
    };
    let text = serde_json::to_vec(&file).map_err(|e| LoadError::AgentsFile {
        path: path.to_owned(),
        reason: e.to_string(),
    })?;
    xunjian_agent::fsutil::write_atomic(path, &text, 0o600).map_err(|source| LoadError::Io {
        what: "cannot write",
        path: path.to_owned(),
        source,
    })
}

/// Reads the first `count` agents saved by [`save_agents`].
pub fn load_agents(
    path: &Path,
    count: usize,
    collector_url: &str,
) -> Result<Vec<Credentials>, LoadError> {
    let text = std::fs::read(path).map_err(|source| LoadError::Io {
        what: "cannot read (enroll agents first with --enroll)",
        path: path.to_owned(),
        source,
    })?;
    let file: AgentsFile = serde_json::from_slice(&text).map_err(|e| LoadError::AgentsFile {
        path: path.to_owned(),
        reason: e.to_string(),
    })?;
    if file.agents.len() < count {
        return Err(LoadError::AgentsFile {
            path: path.to_owned(),
            reason: format!(
                "holds {} agents, {count} asked for: enroll more with --enroll",
                file.agents.len()
            ),
        });
    }
    Ok(file
        .agents
        .into_iter()
        .take(count)
        .map(|a| Credentials {
            agent_id: a.agent_id,
            collector_url: collector_url.to_owned(),
            key_pem: a.key_pem,
            cert_pem: a.cert_pem,
            ca_pem: file.ca_pem.clone(),
        })
        .collect())
}

// ------------------------------------------------------------ workload

/// How a simulated metric moves from one report to the next.
#[derive(Debug, Clone, Copy)]
enum Shape {
    /// Wanders between the bounds (utilisation, temperatures).
    Gauge { lo: f64, hi: f64 },
    /// Only grows, by about this much per second (bytes, packets).
    Counter { per_s: f64 },
    /// Stays where it started (totals, sizes).
    Fixed(f64),
}

/// One series a simulated host reports: its name and labels, and how its
/// value moves.
#[derive(Debug, Clone)]
pub struct SeriesSpec {
    /// The metric with its name and labels (value 0).
    pub metric: Metric,
    shape: Shape,
}

const MOUNTS: [(&str, &str, &str); 6] = [
    ("/", "/dev/sda2", "ext4"),
    ("/boot", "/dev/sda1", "ext4"),
    ("/var", "/dev/sda3", "xfs"),
    ("/var/log", "/dev/sda5", "xfs"),
    ("/home", "/dev/sdb1", "ext4"),
    ("/data", "/dev/nvme0n1p1", "xfs"),
];
const INTERFACES: [&str; 3] = ["eth0", "eth1", "lo"];
const DISKS: [&str; 3] = ["sda", "sdb", "nvme0n1"];
const PROCESSES: [(&str, u32); 5] = [
    ("java", 2211),
    ("postgres", 1187),
    ("nginx", 954),
    ("xunjian-agent", 731),
    ("sshd", 612),
];

/// The series a simulated host reports, `count` of them: what a Linux
/// server's agent sends (CPU, memory, per-mount filesystem, per-interface
/// network, per-disk I/O, top processes, SMART, patches, time), topped up
/// with application counters when more are asked for. The same names and
/// labels for every host, so the collector's series cardinality is
/// agents × `count`.
pub fn host_series(count: usize) -> Vec<SeriesSpec> {
    let mut out: Vec<SeriesSpec> = Vec::with_capacity(count.max(100));
    let mut add = |name: &str, labels: &[(&str, &str)], shape: Shape| {
        out.push(SeriesSpec {
            metric: Metric {
                name: name.to_owned(),
                labels: labels
                    .iter()
                    .map(|(n, v)| Label {
                        name: (*n).to_owned(),
                        value: (*v).to_owned(),
                    })
                    .collect(),
                value: 0.0,
                at_unix_ms: 0,
            },
            shape,
        })
    };
    let gauge = |lo, hi| Shape::Gauge { lo, hi };
    add("cpu.usage_pct", &[], gauge(2.0, 45.0));
    add("cpu.load1", &[], gauge(0.1, 3.0));
    add("cpu.load5", &[], gauge(0.1, 2.5));
    add("cpu.load15", &[], gauge(0.1, 2.0));
    for cpu in ["0", "1", "2", "3", "4", "5", "6", "7"] {
        add("cpu.core.usage_pct", &[("cpu", cpu)], gauge(0.0, 60.0));
    }
    add("memory.total_bytes", &[], Shape::Fixed(64.0 * GIB));
    add("memory.available_bytes", &[], gauge(16.0 * GIB, 40.0 * GIB));
    add("memory.used_pct", &[], gauge(35.0, 75.0));
    add("swap.total_bytes", &[], Shape::Fixed(8.0 * GIB));
    add("swap.used_bytes", &[], gauge(0.0, 0.5 * GIB));
    add("swap.used_pct", &[], gauge(0.0, 6.0));
    add("system.uptime_s", &[], Shape::Counter { per_s: 1.0 });
    for (mount, device, fstype) in MOUNTS {
        let labels = [("mount", mount), ("device", device), ("fstype", fstype)];
        add("fs.total_bytes", &labels, Shape::Fixed(500.0 * GIB));
        add("fs.free_bytes", &labels, gauge(150.0 * GIB, 350.0 * GIB));
        add("fs.used_pct", &labels, gauge(30.0, 70.0));
        add("fs.inodes_used_pct", &labels, gauge(1.0, 20.0));
    }
    for interface in INTERFACES {
        let labels = [("interface", interface)];
        for (name, per_s) in [
            ("net.rx_bytes", 2.0e6),
            ("net.tx_bytes", 1.5e6),
            ("net.rx_packets", 2.0e3),
            ("net.tx_packets", 1.5e3),
            ("net.rx_errors", 0.0),
            ("net.tx_errors", 0.0),
            ("net.rx_dropped", 0.01),
            ("net.tx_dropped", 0.0),
        ] {
            add(name, &labels, Shape::Counter { per_s });
        }
    }
    for disk in DISKS {
        let labels = [("device", disk)];
        add("disk.read_bytes", &labels, Shape::Counter { per_s: 4.0e6 });
        add("disk.write_bytes", &labels, Shape::Counter { per_s: 6.0e6 });
        add("disk.io_time_ms", &labels, Shape::Counter { per_s: 150.0 });
    }
    for (process, pid) in PROCESSES {
        let pid = pid.to_string();
        add(
            "proc.cpu_pct",
            &[("name", process), ("pid", &pid)],
            gauge(0.0, 80.0),
        );
    }
    for (process, pid) in PROCESSES {
        let pid = pid.to_string();
        add(
            "proc.rss_bytes",
            &[("name", process), ("pid", &pid)],
            gauge(50.0e6, 4.0 * GIB),
        );
    }
    for disk in ["sda", "sdb"] {
        add(
            "disk.smart.temperature_c",
            &[("device", disk)],
            gauge(30.0, 45.0),
        );
        add(
            "disk.smart.power_on_hours",
            &[("device", disk)],
            Shape::Counter {
                per_s: 1.0 / 3600.0,
            },
        );
    }
    add("time.offset_s", &[("source", "chrony")], gauge(-0.01, 0.01));
    add("net.listening_sockets", &[], gauge(12.0, 20.0));
    add("patch.pending_count", &[], gauge(0.0, 30.0));
    add("patch.security_pending_count", &[], Shape::Fixed(0.0));
    add("system.procs", &[], gauge(180.0, 400.0));
    add("system.logged_in_users", &[], gauge(0.0, 3.0));
    add("net.tcp.established", &[], gauge(20.0, 400.0));
    add("net.tcp.time_wait", &[], gauge(0.0, 200.0));
    add(
        "system.context_switches",
        &[],
        Shape::Counter { per_s: 20_000.0 },
    );
    add("system.interrupts", &[], Shape::Counter { per_s: 8_000.0 });
    let mut extra = 0;
    while out.len() < count {
        let endpoint = format!("/api/v1/endpoint{extra}");
        out.push(SeriesSpec {
            metric: Metric {
                name: "app.requests_total".into(),
                labels: vec![
                    Label {
                        name: "app".into(),
                        value: "orders".into(),
                    },
                    Label {
                        name: "endpoint".into(),
                        value: endpoint,
                    },
                ],
                value: 0.0,
                at_unix_ms: 0,
            },
            shape: Shape::Counter { per_s: 5.0 },
        });
        extra += 1;
    }
    out.truncate(count);
    out
}

const GIB: f64 = 1024.0 * 1024.0 * 1024.0;

/// The check results a simulated host reports, `count` of them, all OK (so
/// the run measures ingest, not incident handling).
pub fn host_checks(count: usize) -> Vec<CheckResult> {
    let known: [(&str, &str, &str, &str); 10] = [
        (
            "disk.smart.health:sda",
            "SMART health of sda",
            "PASSED",
            "PASSED",
        ),
        ("disk.raid.state:md0", "RAID md0", "clean [UU]", "clean"),
        (
            "av.status",
            "Antivirus protection",
            "clamav: active",
            "active",
        ),
        (
            "patch.security_pending",
            "Pending security updates",
            "0",
            "0",
        ),
        ("os.reboot_required", "Reboot required", "no", "no"),
        (
            "baseline.ssh.permit_root_login",
            "SSH root login",
            "no",
            "no or prohibit-password",
        ),
        (
            "baseline.ssh.password_authentication",
            "SSH password authentication",
            "no",
            "no",
        ),
        (
            "baseline.firewall.active",
            "Host firewall",
            "nftables: 14 rules",
            "active",
        ),
        (
            "service.failed_units",
            "Failed services",
            "0",
            "no failed units",
        ),
        (
            "time.sync",
            "Time synchronisation",
            "synchronised, offset 0.002 s",
            "|offset| < 1 s",
        ),
    ];
    (0..count)
        .map(|i| {
            let (id, title, value, threshold) =
                known
                    .get(i)
                    .copied()
                    .unwrap_or(("custom.check", "Custom check", "ok", "ok"));
            let check_id = if i < known.len() {
                id.to_owned()
            } else {
                format!("custom.check_{i}")
            };
            CheckResult {
                check_id,
                title: title.into(),
                status: CheckStatus::Ok as i32,
                value: value.into(),
                threshold: threshold.into(),
                evidence: format!("loadsim: simulated result of {id}"),
                reason: String::new(),
            }
        })
        .collect()
}

/// Installed packages in a simulated inventory: about what this machine's
/// Debian image has (773 `dpkg -l` entries), a modest server. The inventory
/// then encodes to about 40 KB, above `INLINE_REPORT_MAX_BYTES`, so it goes
/// by `Submit` as a real agent's does.
const PACKAGES: usize = 800;

fn host_packages() -> Vec<Package> {
    (0..PACKAGES)
        .map(|i| Package {
            name: format!("package-{i:03}"),
            version: format!("1.{}.{}-1+deb12u1", i % 17, i % 5),
            arch: "amd64".into(),
            source: "dpkg".into(),
        })
        .collect()
}

fn host_inventory(hostname: &str, agent_id: Uuid, packages: &[Package]) -> Inventory {
    let id = agent_id.simple().to_string();
    let mac = |n: u8| format!("52:54:00:{}:{}:{n:02x}", &id[0..2], &id[2..4]);
    Inventory {
        hostname: hostname.to_owned(),
        os_name: "Debian GNU/Linux".into(),
        os_version: "12".into(),
        kernel_version: "6.1.0-18-amd64".into(),
        arch: "x86_64".into(),
        boot_time_unix_s: 1_700_000_000,
        cpu_model: "Intel(R) Xeon(R) Gold 6338 CPU @ 2.00GHz".into(),
        cpu_logical: 8,
        cpu_physical: 4,
        memory_total_bytes: 64 << 30,
        swap_total_bytes: 8 << 30,
        filesystems: MOUNTS
            .iter()
            .map(|(mount, device, fstype)| Filesystem {
                mount_point: (*mount).into(),
                device: (*device).into(),
                fs_type: (*fstype).into(),
                total_bytes: 500 << 30,
            })
            .collect(),
        hardware: Some(Hardware {
            system_vendor: "QEMU".into(),
            system_model: "Standard PC (Q35 + ICH9, 2009)".into(),
            serial_number: format!("SN{}", &id[..10]),
            system_uuid: agent_id.to_string(),
            bios_vendor: "SeaBIOS".into(),
            bios_version: "1.16.2-debian-1.16.2-1".into(),
            bios_date: "04/01/2014".into(),
            ..Default::default()
        }),
        interfaces: (0..2u8)
            .map(|n| NetworkInterface {
                name: format!("eth{n}"),
                mac: mac(n),
                addresses: vec![format!(
                    "10.{n}.{}.{}/16",
                    agent_id.as_bytes()[0],
                    agent_id.as_bytes()[1]
                )],
                mtu: 1500,
            })
            .collect(),
        virtualization: "kvm".into(),
        packages: packages.to_vec(),
        cpu_sockets: 1,
        block_devices: DISKS
            .iter()
            .map(|d| BlockDevice {
                name: (*d).into(),
                size_bytes: 500 << 30,
                model: "QEMU HARDDISK".into(),
                serial: format!("{d}-{}", &id[..8]),
                rotational: false,
                kind: "disk".into(),
            })
            .collect(),
    }
}

/// One simulated host's current metric values.
struct HostValues {
    values: Vec<f64>,
    rng: SmallRng,
}

impl HostValues {
    fn new(series: &[SeriesSpec], seed: u64) -> Self {
        let mut rng = SmallRng::seed_from_u64(seed);
        let values = series
            .iter()
            .map(|s| match s.shape {
                Shape::Gauge { lo, hi } => rng.random_range(lo..=hi),
                Shape::Counter { per_s } => per_s * rng.random_range(1_000.0..1_000_000.0),
                Shape::Fixed(v) => v,
            })
            .collect();
        Self { values, rng }
    }

    /// Moves every value as `interval` of time would.
    fn advance(&mut self, series: &[SeriesSpec], interval: Duration) {
        let secs = interval.as_secs_f64();
        for (v, s) in self.values.iter_mut().zip(series) {
            match s.shape {
                Shape::Gauge { lo, hi } => {
                    let step = (hi - lo) * 0.05;
                    *v = (*v + self.rng.random_range(-step..=step)).clamp(lo, hi);
                }
                Shape::Counter { per_s } => *v += per_s * secs * self.rng.random_range(0.5..1.5),
                Shape::Fixed(_) => {}
            }
        }
    }
}

fn now_unix_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

// ----------------------------------------------------------- simulator

/// What to simulate.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// The collector, e.g. `https://127.0.0.1:7443`.
    pub collector_url: String,
    /// Time between one agent's metric reports.
    pub interval: Duration,
    /// How long the steady state is measured, after every agent's first
    /// connection attempt (the ramp-up) is done.
    pub duration: Duration,
    /// Metric samples per report.
    pub samples: usize,
    /// Check results per report.
    pub checks: usize,
    /// New connections started per second during the ramp-up, so the TLS
    /// handshakes do not all land at once.
    pub ramp_rate: u32,
    /// After the window, how long agents wait for their last acks.
    pub drain: Duration,
    /// How often [`SimEvent::Progress`] is raised.
    pub progress_every: Duration,
}

impl SimConfig {
    /// Reports per second the simulated fleet offers in steady state.
    pub fn offered_reports_per_s(&self, agents: usize) -> f64 {
        agents as f64 / self.interval.as_secs_f64().max(f64::MIN_POSITIVE)
    }
}

/// Reports one agent may have unacknowledged, as the real agent's window.
const WINDOW: usize = 64;
/// Messages queued for one agent's request stream.
const OUT_CAPACITY: usize = 16;
/// Limits matching the real agent's.
const MAX_DECODE: usize = 1024 * 1024;
const MAX_ENCODE: usize = 4 * 1024 * 1024;
/// How long opening a stream, and then the collector's Resume, may take.
const OPEN_TIMEOUT: Duration = Duration::from_secs(30);
const RESUME_TIMEOUT: Duration = Duration::from_secs(60);
/// Reconnect backoff after a failed or broken stream.
const BACKOFF_BASE: Duration = Duration::from_millis(500);
const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// Latencies are kept in microseconds up to an hour, 3 significant digits.
const LATENCY_MAX_US: u64 = 3_600_000_000;

/// Something the simulator tells its caller while it runs.
#[derive(Debug)]
pub enum SimEvent<'a> {
    /// Every agent has made its first connection attempt: the measured
    /// window starts now.
    SteadyStart,
    /// A periodic progress line.
    Progress(&'a Progress),
    /// The measured window ends now; agents stop sending and drain.
    SteadyEnd,
}

/// The state of a run, every [`SimConfig::progress_every`].
#[derive(Debug, Clone)]
pub struct Progress {
    pub elapsed: Duration,
    pub phase: &'static str,
    pub agents: usize,
    pub connected: usize,
    pub reports_sent: u64,
    pub reports_acked: u64,
    /// Over the last progress period.
    pub reports_per_s: f64,
    pub samples_per_s: f64,
    pub latency: LatencySummary,
    pub errors: u64,
}

impl fmt::Display for Progress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "[{:>5.0}s {:<7}] connected {}/{}  sent {}  acked {}  {:.0} reports/s  {:.0} samples/s  ack p50 {:.1} ms p99 {:.1} ms max {:.1} ms  errors {}",
            self.elapsed.as_secs_f64(),
            self.phase,
            self.connected,
            self.agents,
            self.reports_sent,
            self.reports_acked,
            self.reports_per_s,
            self.samples_per_s,
            self.latency.p50_ms,
            self.latency.p99_ms,
            self.latency.max_ms,
            self.errors
        )
    }
}

/// Ack latency percentiles, milliseconds.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct LatencySummary {
    pub count: u64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

impl LatencySummary {
    fn of(h: &Histogram<u64>) -> Self {
        if h.is_empty() {
            return Self::default();
        }
        let ms = |us: u64| us as f64 / 1_000.0;
        Self {
            count: h.len(),
            p50_ms: ms(h.value_at_quantile(0.50)),
            p90_ms: ms(h.value_at_quantile(0.90)),
            p99_ms: ms(h.value_at_quantile(0.99)),
            max_ms: ms(h.max()),
        }
    }
}

/// How often one kind of error happened, with its first occurrence.
#[derive(Debug, Clone, Serialize)]
pub struct ErrorCount {
    pub count: u64,
    pub example: String,
}

/// The outcome of a run.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub agents: usize,
    pub samples_per_report: usize,
    pub checks_per_report: usize,
    pub interval_s: f64,
    /// From the first connection to the last agent's first attempt.
    pub ramp_s: f64,
    /// The measured steady-state window.
    pub window_s: f64,
    pub connected_peak: usize,
    /// Connected when the window ended.
    pub connected_at_end: usize,
    pub streams_opened: u64,
    pub reports_sent: u64,
    pub reports_acked: u64,
    pub inventories_acked: u64,
    /// Sample rows in all acknowledged reports (window or not).
    pub sample_rows_acked: u64,
    pub run_now_answered: u64,
    /// What the fleet sends in steady state: agents / interval.
    pub offered_reports_per_s: f64,
    pub offered_sample_rows_per_s: f64,
    /// Acknowledged within the window, per second.
    pub reports_per_s: f64,
    pub sample_rows_per_s: f64,
    pub check_rows_per_s: f64,
    /// Ack latency of the reports sent within the window.
    pub latency: LatencySummary,
    /// The p99 of each progress interval of the window, in order: the
    /// window opens when the last agent has connected, so its first
    /// intervals can still be working off the ramp-up's backlog, which the
    /// window's p99 mixes in.
    pub interval_p99_ms: Vec<f64>,
    pub errors: BTreeMap<String, ErrorCount>,
}

impl Summary {
    pub fn error_total(&self) -> u64 {
        self.errors.values().map(|e| e.count).sum()
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "agents            {} ({} samples + {} checks per report, every {:.0} s)",
            self.agents, self.samples_per_report, self.checks_per_report, self.interval_s
        )?;
        writeln!(
            f,
            "connected         peak {}, at end of window {}, streams opened {}",
            self.connected_peak, self.connected_at_end, self.streams_opened
        )?;
        writeln!(
            f,
            "ramp-up           {:.1} s; steady window {:.1} s",
            self.ramp_s, self.window_s
        )?;
        writeln!(
            f,
            "reports           sent {}, acked {} (inventories {}, run-now answers {})",
            self.reports_sent, self.reports_acked, self.inventories_acked, self.run_now_answered
        )?;
        writeln!(
            f,
            "sustained         {:.0} reports/s, {:.0} sample rows/s, {:.0} check rows/s (offered {:.0} reports/s, {:.0} sample rows/s)",
            self.reports_per_s,
            self.sample_rows_per_s,
            self.check_rows_per_s,
            self.offered_reports_per_s,
            self.offered_sample_rows_per_s
        )?;
        writeln!(
            f,
            "ack latency       p50 {:.1} ms, p90 {:.1} ms, p99 {:.1} ms, max {:.1} ms ({} reports)",
            self.latency.p50_ms,
            self.latency.p90_ms,
            self.latency.p99_ms,
            self.latency.max_ms,
            self.latency.count
        )?;
        if !self.interval_p99_ms.is_empty() {
            let each: Vec<String> = self
                .interval_p99_ms
                .iter()
                .map(|ms| format!("{ms:.0}"))
                .collect();
            writeln!(f, "p99 by interval   {} ms", each.join(", "))?;
        }
        if self.errors.is_empty() {
            write!(f, "errors            none")
        } else {
            write!(f, "errors            {}", self.error_total())?;
            for (kind, e) in &self.errors {
                write!(f, "\n  {kind}: {} (first: {})", e.count, e.example)?;
            }
            Ok(())
        }
    }
}

/// Counters and histograms the agents update and the coordinator reads.
struct SimShared {
    config: SimConfig,
    series: Vec<SeriesSpec>,
    checks: Vec<CheckResult>,
    packages: Vec<Package>,
    /// Cancelled when the window ends: agents stop sending and drain.
    stop_sending: CancellationToken,
    steady_start: OnceLock<Instant>,
    steady_end: OnceLock<Instant>,
    connected: AtomicUsize,
    connected_peak: AtomicUsize,
    first_attempts: AtomicUsize,
    streams_opened: AtomicU64,
    reports_sent: AtomicU64,
    reports_acked: AtomicU64,
    samples_acked: AtomicU64,
    checks_acked: AtomicU64,
    inventories_acked: AtomicU64,
    run_now_answered: AtomicU64,
    latency: Mutex<Latencies>,
    errors: Mutex<BTreeMap<String, ErrorCount>>,
}

struct Latencies {
    /// Reports sent within the steady window.
    window: Histogram<u64>,
    /// Since the last progress line.
    recent: Histogram<u64>,
}

/// Locks shared counters; a panicking agent task cannot leave a histogram or
/// a count half-updated in a way that matters, so a poisoned lock is used.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl SimShared {
    fn error(&self, kind: &str, detail: &str, count: u64) {
        if count == 0 {
            return;
        }
        let mut errors = lock(&self.errors);
        errors
            .entry(kind.to_owned())
            .or_insert_with(|| ErrorCount {
                count: 0,
                example: detail.to_owned(),
            })
            .count += count;
    }

    fn error_total(&self) -> u64 {
        lock(&self.errors).values().map(|e| e.count).sum()
    }

    fn in_window(&self, sent_at: Instant) -> bool {
        self.steady_start.get().is_some_and(|s| sent_at >= *s)
            && self.steady_end.get().is_none_or(|e| sent_at < *e)
    }

    fn acked(&self, report: &InFlight, now: Instant) {
        self.reports_acked.fetch_add(1, Ordering::Relaxed);
        self.samples_acked
            .fetch_add(report.samples, Ordering::Relaxed);
        self.checks_acked
            .fetch_add(report.checks, Ordering::Relaxed);
        if report.inventory {
            self.inventories_acked.fetch_add(1, Ordering::Relaxed);
        }
        let us = u64::try_from(now.duration_since(report.sent_at).as_micros()).unwrap_or(u64::MAX);
        let mut latency = lock(&self.latency);
        latency.recent.saturating_record(us);
        if self.in_window(report.sent_at) {
            latency.window.saturating_record(us);
        }
    }

    fn counts(&self) -> Counts {
        Counts {
            at: Instant::now(),
            reports: self.reports_acked.load(Ordering::Relaxed),
            samples: self.samples_acked.load(Ordering::Relaxed),
            checks: self.checks_acked.load(Ordering::Relaxed),
        }
    }
}

/// Acknowledged totals at one instant.
#[derive(Debug, Clone, Copy)]
struct Counts {
    at: Instant,
    reports: u64,
    samples: u64,
    checks: u64,
}

impl Counts {
    fn rates_since(&self, earlier: &Counts) -> (f64, f64, f64) {
        let secs = self
            .at
            .duration_since(earlier.at)
            .as_secs_f64()
            .max(f64::MIN_POSITIVE);
        (
            (self.reports - earlier.reports) as f64 / secs,
            (self.samples - earlier.samples) as f64 / secs,
            (self.checks - earlier.checks) as f64 / secs,
        )
    }
}

/// Runs the simulated fleet: connects every agent (at `ramp_rate` per
/// second), measures the steady state for `duration`, drains, and sums up.
/// Cancelling `cancel` ends the window early (the summary still comes).
pub async fn simulate(
    config: SimConfig,
    agents: Vec<Credentials>,
    cancel: CancellationToken,
    mut on_event: impl FnMut(SimEvent<'_>),
) -> Summary {
    let count = agents.len();
    let window_histogram = || {
        // Bounds are constants well inside hdrhistogram's range (1 µs to
        // an hour, 3 digits), so creation cannot fail.
        Histogram::new_with_bounds(1, LATENCY_MAX_US, 3).expect("valid histogram bounds")
    };
    let shared = Arc::new(SimShared {
        series: host_series(config.samples),
        checks: host_checks(config.checks),
        packages: host_packages(),
        config: config.clone(),
        stop_sending: CancellationToken::new(),
        steady_start: OnceLock::new(),
        steady_end: OnceLock::new(),
        connected: AtomicUsize::new(0),
        connected_peak: AtomicUsize::new(0),
        first_attempts: AtomicUsize::new(0),
        streams_opened: AtomicU64::new(0),
        reports_sent: AtomicU64::new(0),
        reports_acked: AtomicU64::new(0),
        samples_acked: AtomicU64::new(0),
        checks_acked: AtomicU64::new(0),
        inventories_acked: AtomicU64::new(0),
        run_now_answered: AtomicU64::new(0),
        latency: Mutex::new(Latencies {
            window: window_histogram(),
            recent: window_histogram(),
        }),
        errors: Mutex::new(BTreeMap::new()),
    });

    let started = Instant::now();
    let ramp = tokio::spawn(ramp_up(shared.clone(), agents));
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    let mut window_start: Option<Counts> = None;
    let mut window_ends_at: Option<Instant> = None;
    let mut last_progress = shared.counts();
    let mut next_progress = started + config.progress_every;
    let mut interval_p99_ms = Vec::new();
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = cancel.cancelled() => break,
        }
        let now = Instant::now();
        if window_start.is_none() && shared.first_attempts.load(Ordering::Relaxed) >= count {
            // Set once, here only.
            let _ = shared.steady_start.set(now);
            window_start = Some(shared.counts());
            window_ends_at = Some(now + config.duration);
            on_event(SimEvent::SteadyStart);
        }
        if window_ends_at.is_some_and(|end| now >= end) {
            break;
        }
        if now >= next_progress {
            let counts = shared.counts();
            let (reports_per_s, samples_per_s, _) = counts.rates_since(&last_progress);
            last_progress = counts;
            next_progress += config.progress_every;
            let latency = {
                let mut l = lock(&shared.latency);
                let summary = LatencySummary::of(&l.recent);
                l.recent.reset();
                summary
            };
            if window_start.is_some() {
                interval_p99_ms.push(latency.p99_ms);
            }
            let progress = Progress {
                elapsed: started.elapsed(),
                phase: if window_start.is_some() {
                    "steady"
                } else {
                    "ramp-up"
                },
                agents: count,
                connected: shared.connected.load(Ordering::Relaxed),
                reports_sent: shared.reports_sent.load(Ordering::Relaxed),
                reports_acked: counts.reports,
                reports_per_s,
                samples_per_s,
                latency,
                errors: shared.error_total(),
            };
            on_event(SimEvent::Progress(&progress));
        }
    }
    let window_end = shared.counts();
    let _ = shared.steady_end.set(window_end.at);
    let connected_at_end = shared.connected.load(Ordering::Relaxed);
    on_event(SimEvent::SteadyEnd);
    shared.stop_sending.cancel();

    // Agents end by themselves within the drain time; the margin covers a
    // connection attempt that was under way when the window closed.
    let deadline = tokio::time::Instant::now() + config.drain + OPEN_TIMEOUT + RESUME_TIMEOUT;
    if let Ok(Ok(tasks)) = tokio::time::timeout_at(deadline, ramp).await {
        for task in tasks {
            if tokio::time::timeout_at(deadline, task).await.is_err() {
                shared.error("agent task did not end", "still running after the drain", 1);
            }
        }
    }

    let window_start = window_start.unwrap_or(window_end);
    let (reports_per_s, sample_rows_per_s, check_rows_per_s) =
        window_end.rates_since(&window_start);
    let ramp_s = shared
        .steady_start
        .get()
        .map_or(0.0, |s| s.duration_since(started).as_secs_f64());
    let latency = LatencySummary::of(&lock(&shared.latency).window);
    let offered_reports_per_s = config.offered_reports_per_s(count);
    Summary {
        agents: count,
        samples_per_report: config.samples,
        checks_per_report: config.checks,
        interval_s: config.interval.as_secs_f64(),
        ramp_s,
        window_s: window_end.at.duration_since(window_start.at).as_secs_f64(),
        connected_peak: shared.connected_peak.load(Ordering::Relaxed),
        connected_at_end,
        streams_opened: shared.streams_opened.load(Ordering::Relaxed),
        reports_sent: shared.reports_sent.load(Ordering::Relaxed),
        reports_acked: shared.reports_acked.load(Ordering::Relaxed),
        inventories_acked: shared.inventories_acked.load(Ordering::Relaxed),
        sample_rows_acked: shared.samples_acked.load(Ordering::Relaxed),
        run_now_answered: shared.run_now_answered.load(Ordering::Relaxed),
        offered_reports_per_s,
        offered_sample_rows_per_s: offered_reports_per_s * config.samples as f64,
        reports_per_s,
        sample_rows_per_s,
        check_rows_per_s,
        latency,
        interval_p99_ms,
        errors: lock(&shared.errors).clone(),
    }
}

/// Starts one agent task every 1/`ramp_rate` s; returns their handles.
async fn ramp_up(shared: Arc<SimShared>, agents: Vec<Credentials>) -> Vec<JoinHandle<()>> {
    let rate = f64::from(shared.config.ramp_rate.max(1));
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
    // Catch up after a slow tick rather than fall behind the intended rate.
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut tasks = Vec::with_capacity(agents.len());
    for (index, creds) in agents.into_iter().enumerate() {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shared.stop_sending.cancelled() => break,
        }
        tasks.push(tokio::spawn(run_agent(shared.clone(), index, creds)));
    }
    tasks
}

/// A report sent and not yet acknowledged.
struct InFlight {
    sequence: u64,
    sent_at: Instant,
    samples: u64,
    checks: u64,
    inventory: bool,
}

/// Why a stream ended early, for the error table.
struct Failure {
    kind: String,
    detail: String,
}

impl Failure {
    fn new(kind: impl Into<String>, detail: impl Into<String>) -> Self {
        Self {
            kind: kind.into(),
            detail: detail.into(),
        }
    }

    fn status(during: &str, status: &tonic::Status) -> Self {
        Self::new(
            format!("{during}: {:?}", status.code()),
            status.message().to_owned(),
        )
    }
}

/// One simulated agent across reconnects.
struct SimAgent {
    shared: Arc<SimShared>,
    creds: Credentials,
    hostname: String,
    values: HostValues,
    /// The next report's sequence; raised by the collector's Resume.
    next_sequence: u64,
    /// Where in the interval this agent's reports fall.
    phase: Duration,
    first_attempt_done: bool,
}

async fn run_agent(shared: Arc<SimShared>, index: usize, creds: Credentials) {
    let seed = u64::from_le_bytes(creds.agent_id.as_bytes()[..8].try_into().unwrap_or([0; 8]))
        ^ index as u64;
    let values = HostValues::new(&shared.series, seed);
    let interval_ms = u64::try_from(shared.config.interval.as_millis())
        .unwrap_or(u64::MAX)
        .max(1);
    let phase = Duration::from_millis(seed % interval_ms);
    let mut agent = SimAgent {
        hostname: sim_hostname(creds.agent_id),
        shared,
        creds,
        values,
        next_sequence: 1,
        phase,
        first_attempt_done: false,
    };
    let mut backoff = Backoff::new(BACKOFF_BASE, BACKOFF_MAX);
    loop {
        match agent.session(&mut backoff).await {
            Ok(()) => break,
            Err(failure) => {
                agent.shared.error(&failure.kind, &failure.detail, 1);
                agent.first_attempt_finished();
            }
        }
        let stop = agent.shared.stop_sending.clone();
        tokio::select! {
            _ = tokio::time::sleep(backoff.next_delay()) => {}
            _ = stop.cancelled() => break,
        }
    }
    agent.first_attempt_finished();
}

/// Decrements the connected gauge when a session ends, however it ends.
struct ConnectedGuard<'a>(&'a AtomicUsize);

impl Drop for ConnectedGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl SimAgent {
    fn first_attempt_finished(&mut self) {
        if !self.first_attempt_done {
            self.first_attempt_done = true;
            self.shared.first_attempts.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// One stream: connect, Hello, wait for Resume, send the inventory, then
    /// a report every interval until the window ends, then drain. `Ok` only
    /// for the orderly end.
    async fn session(&mut self, backoff: &mut Backoff) -> Result<(), Failure> {
        let shared = self.shared.clone();
        let url = shared.config.collector_url.clone();
        let channel = transport::connect(&self.creds, &url, None)
            .await
            .map_err(|e| Failure::new("connect", e.to_string()))?;
        let (tx, rx) = mpsc::channel(OUT_CAPACITY);
        let hello = Hello {
            agent_version: sim_version(),
            capabilities: vec!["metrics".into(), "inventory".into(), "checks".into()],
            spool: Some(SpoolStatus {
                max_bytes: 64 << 20,
                ..Default::default()
            }),
            claimed_agent_id: self.creds.agent_id.to_string(),
        };
        send_message(&tx, agent_message::Kind::Hello(hello)).await?;
        let mut client = IngestClient::new(channel)
            .max_decoding_message_size(MAX_DECODE)
            .max_encoding_message_size(MAX_ENCODE);
        let open = client.stream(ReceiverStream::new(rx));
        let mut inbound = tokio::time::timeout(OPEN_TIMEOUT, open)
            .await
            .map_err(|_| Failure::new("open timeout", "no response headers within 30 s"))?
            .map_err(|s| Failure::status("open", &s))?
            .into_inner();
        shared.streams_opened.fetch_add(1, Ordering::Relaxed);
        let resume = loop {
            let message = tokio::time::timeout(RESUME_TIMEOUT, inbound.message())
                .await
                .map_err(|_| Failure::new("resume timeout", "no Resume within 60 s of Hello"))?
                .map_err(|s| Failure::status("before resume", &s))?
                .ok_or_else(|| Failure::new("closed before resume", "stream ended"))?;
            if let Some(collector_message::Kind::Resume(r)) = message.kind {
                break r;
            }
        };
        self.next_sequence = self.next_sequence.max(resume.last_stored_sequence + 1);
        let now_connected = shared.connected.fetch_add(1, Ordering::Relaxed) + 1;
        let _connected = ConnectedGuard(&shared.connected);
        shared
            .connected_peak
            .fetch_max(now_connected, Ordering::Relaxed);
        self.first_attempt_finished();
        backoff.reset();

        let mut in_flight: VecDeque<InFlight> = VecDeque::with_capacity(WINDOW);
        let inventory = host_inventory(&self.hostname, self.creds.agent_id, &shared.packages);
        let report = self.report(vec![Section {
            kind: Some(section::Kind::Inventory(inventory)),
        }]);
        if report.encoded_len() > INLINE_REPORT_MAX_BYTES {
            // As the agent does: alone, by Submit, before anything else.
            let sent = InFlight {
                sequence: report.sequence,
                sent_at: Instant::now(),
                samples: 0,
                checks: 0,
                inventory: true,
            };
            shared.reports_sent.fetch_add(1, Ordering::Relaxed);
            client
                .submit(report)
                .await
                .map_err(|s| Failure::status("submit", &s))?;
            shared.acked(&sent, Instant::now());
        } else {
            self.send_report(&tx, &mut in_flight, report, true).await?;
        }

        let first_due = tokio::time::Instant::now() + self.phase;
        let mut ticker = tokio::time::interval_at(first_due, shared.config.interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let mut drain_until: Option<tokio::time::Instant> = None;
        let result = loop {
            if drain_until.is_some() && in_flight.is_empty() {
                break Ok(());
            }
            let drain_deadline = async {
                match drain_until {
                    Some(d) => tokio::time::sleep_until(d).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = shared.stop_sending.cancelled(), if drain_until.is_none() => {
                    drain_until = Some(tokio::time::Instant::now() + shared.config.drain);
                }
                _ = drain_deadline => {
                    shared.error(
                        "unacked at end",
                        "no ack within the drain time",
                        in_flight.len() as u64,
                    );
                    in_flight.clear();
                    break Ok(());
                }
                _ = ticker.tick(), if drain_until.is_none() => {
                    if in_flight.len() >= WINDOW {
                        shared.error("window full", "64 reports unacknowledged; report skipped", 1);
                        continue;
                    }
                    let report = self.metrics_report(String::new());
                    if let Err(failure) = self.send_report(&tx, &mut in_flight, report, false).await {
                        break Err(failure);
                    }
                }
                message = inbound.message() => match message {
                    Ok(Some(m)) => {
                        if let Err(failure) = self.handle(m, &tx, &mut in_flight, drain_until.is_some()).await {
                            break Err(failure);
                        }
                    }
                    Ok(None) => break Err(Failure::new("closed by collector", "the response stream ended")),
                    Err(status) => break Err(Failure::status("stream", &status)),
                },
            }
        };
        if result.is_err() && !in_flight.is_empty() {
            shared.error(
                "unacked when stream broke",
                "in flight when the stream failed",
                in_flight.len() as u64,
            );
        }
        result
    }

    async fn handle(
        &mut self,
        message: CollectorMessage,
        tx: &mpsc::Sender<AgentMessage>,
        in_flight: &mut VecDeque<InFlight>,
        draining: bool,
    ) -> Result<(), Failure> {
        match message.kind {
            Some(collector_message::Kind::Ack(ack)) => {
                let now = Instant::now();
                while in_flight
                    .front()
                    .is_some_and(|r| r.sequence <= ack.sequence)
                {
                    if let Some(report) = in_flight.pop_front() {
                        self.shared.acked(&report, now);
                    }
                }
            }
            Some(collector_message::Kind::RunNow(r)) if !draining => {
                let report = self.metrics_report(r.request_id);
                self.send_report(tx, in_flight, report, false).await?;
                self.shared.run_now_answered.fetch_add(1, Ordering::Relaxed);
            }
            // Policy (intervals are the simulator's to choose), a late
            // Resume, RunNow while draining, or a newer message kind.
            _ => {}
        }
        Ok(())
    }

    fn report(&mut self, sections: Vec<Section>) -> Report {
        let sequence = self.next_sequence;
        self.next_sequence += 1;
        Report {
            sequence,
            collected_at_unix_ms: now_unix_ms(),
            claimed_agent_id: String::new(),
            spool: Some(SpoolStatus {
                max_bytes: 64 << 20,
                ..Default::default()
            }),
            sections,
            run_now_request_id: String::new(),
        }
    }

    fn metrics_report(&mut self, run_now_request_id: String) -> Report {
        let shared = self.shared.clone();
        self.values.advance(&shared.series, shared.config.interval);
        let metrics = shared
            .series
            .iter()
            .zip(&self.values.values)
            .map(|(s, v)| Metric {
                value: *v,
                ..s.metric.clone()
            })
            .collect();
        let mut sections = vec![Section {
            kind: Some(section::Kind::Metrics(MetricBatch { metrics })),
        }];
        if !shared.checks.is_empty() {
            sections.push(Section {
                kind: Some(section::Kind::Checks(xunjian_proto::CheckResults {
                    results: shared.checks.clone(),
                })),
            });
        }
        let mut report = self.report(sections);
        report.run_now_request_id = run_now_request_id;
        report
    }

    async fn send_report(
        &self,
        tx: &mpsc::Sender<AgentMessage>,
        in_flight: &mut VecDeque<InFlight>,
        report: Report,
        inventory: bool,
    ) -> Result<(), Failure> {
        let (samples, checks) = if inventory {
            (0, 0)
        } else {
            (
                self.shared.series.len() as u64,
                self.shared.checks.len() as u64,
            )
        };
        in_flight.push_back(InFlight {
            sequence: report.sequence,
            sent_at: Instant::now(),
            samples,
            checks,
            inventory,
        });
        send_message(tx, agent_message::Kind::Report(report)).await?;
        self.shared.reports_sent.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

async fn send_message(
    tx: &mpsc::Sender<AgentMessage>,
    kind: agent_message::Kind,
) -> Result<(), Failure> {
    tx.send(AgentMessage { kind: Some(kind) })
        .await
        .map_err(|_| Failure::new("send", "the request stream is closed"))
}

// ------------------------------------------------------------- ceiling

/// Batch sizes (sample rows per transaction) the ceiling tries.
pub const CEILING_BATCHES: [usize; 3] = [1_000, 10_000, 50_000];

/// One ceiling measurement: `rows` sample rows inserted `batch_rows` per
/// transaction into a fresh database.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct CeilingRun {
    pub batch_rows: usize,
    pub rows: usize,
    pub seconds: f64,
}

impl CeilingRun {
    pub fn rows_per_s(&self) -> f64 {
        self.rows as f64 / self.seconds.max(f64::MIN_POSITIVE)
    }
}

/// The fastest of a set of runs.
pub fn best_ceiling(runs: &[CeilingRun]) -> Option<CeilingRun> {
    runs.iter()
        .copied()
        .max_by(|a, b| a.rows_per_s().total_cmp(&b.rows_per_s()))
}

/// Sample rows each ceiling run inserts: `rounds` reports of every agent,
/// at least 200,000 so small fleets still measure more than start-up.
pub fn ceiling_rows(agents: usize, samples: usize, rounds: usize) -> usize {
    (agents * samples * rounds).max(200_000)
}

/// The raw SQLite ceiling for samples: the fastest the collector's own
/// schema and pragmas ([`store::open`]: WAL, synchronous=FULL, foreign
/// keys) take the samples `agents` simulated hosts of `samples` series each
/// send, stored as the collector stores them (one block per report), in
/// rounds (every agent's report, then the next round), with one prepared
/// statement and one transaction per `batch_rows` samples. The agents and
/// series exist beforehand (not timed), so this is the bound for the sample
/// inserts alone, without the per-report work ingest also does.
/// Each batch size gets a fresh database in `dir`, removed afterwards.
pub fn sqlite_ceiling(
    dir: &Path,
    agents: usize,
    samples: usize,
    rows: usize,
    batch_sizes: &[usize],
) -> Result<Vec<CeilingRun>, LoadError> {
    let series = host_series(samples);
    let labels: Vec<String> = series
        .iter()
        .map(|s| store::writer::labels_json(&s.metric.labels))
        .collect();
    let mut runs = Vec::with_capacity(batch_sizes.len());
    for &batch_rows in batch_sizes {
        let path = dir.join(format!("ceiling-{batch_rows}.db"));
        let mut conn = store::open(&path)?;
        let fleet = ceiling_setup(&mut conn, agents, &series, &labels)?;
        let started = Instant::now();
        ceiling_insert(&mut conn, &fleet, rows, batch_rows.max(1))?;
        runs.push(CeilingRun {
            batch_rows,
            rows,
            seconds: started.elapsed().as_secs_f64(),
        });
        drop(conn);
        for suffix in ["", "-wal", "-shm"] {
            let mut file = path.clone().into_os_string();
            file.push(suffix);
            let _ = std::fs::remove_file(file);
        }
    }
    Ok(runs)
}

/// A benchmark setting from the environment, or `default` when unset; a
/// value that does not parse stops the run naming the variable.
pub fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    match std::env::var(name) {
        Ok(v) => v
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v:?} is not a valid number")),
        Err(_) => default,
    }
}

/// Registers `agents` simulated agents straight in the database (no
/// certificates: for benchmarks that bypass TLS).
fn insert_agents(tx: &rusqlite::Transaction, agents: usize) -> Result<Vec<Uuid>, LoadError> {
    let mut agent_insert = tx
        .prepare(
            "INSERT INTO agents (agent_id, hostname, enrolled_at, enrolled_with_token, cert_serial, cert_sha256)
             VALUES (?1, ?2, 0, 'bench', '', '')",
        )
        .map_err(sqlite("preparing the agents insert"))?;
    (0..agents)
        .map(|_| {
            let agent_id = Uuid::new_v4();
            agent_insert
                .execute(params![agent_id.to_string(), sim_hostname(agent_id)])
                .map_err(sqlite("inserting an agent"))?;
            Ok(agent_id)
        })
        .collect()
}

/// Creates a collector database at `path` with `agents` simulated agents
/// registered; returns their ids.
pub fn insert_sim_agents(path: &Path, agents: usize) -> Result<Vec<Uuid>, LoadError> {
    let mut conn = store::open(path)?;
    let tx = conn.transaction().map_err(sqlite("starting setup"))?;
    let ids = insert_agents(&tx, agents)?;
    tx.commit().map_err(sqlite("committing setup"))?;
    Ok(ids)
}

/// Creates the agents and their series; returns each agent's id and its
/// series ids in template order.
fn ceiling_setup(
    conn: &mut rusqlite::Connection,
    agents: usize,
    series: &[SeriesSpec],
    labels: &[String],
) -> Result<Vec<(String, Vec<i64>)>, LoadError> {
    let tx = conn.transaction().map_err(sqlite("starting setup"))?;
    let mut out = Vec::with_capacity(agents);
    {
        let agent_ids = insert_agents(&tx, agents)?;
        let mut series_insert = tx
            .prepare("INSERT INTO series (agent_id, name, labels) VALUES (?1, ?2, ?3)")
            .map_err(sqlite("preparing the series insert"))?;
        for agent_id in agent_ids {
            let agent = agent_id.to_string();
            let mut ids = Vec::with_capacity(series.len());
            for (s, l) in series.iter().zip(labels) {
                series_insert
                    .execute(params![agent, s.metric.name, l])
                    .map_err(sqlite("inserting a series"))?;
                ids.push(tx.last_insert_rowid());
            }
            out.push((agent, ids));
        }
    }
    tx.commit().map_err(sqlite("committing setup"))?;
    Ok(out)
}

/// Inserts `rows` samples as the collector stores them (a block per
/// report: every agent's report, then the next round), `batch_rows` samples
/// per transaction, one prepared statement.
fn ceiling_insert(
    conn: &mut rusqlite::Connection,
    agents: &[(String, Vec<i64>)],
    rows: usize,
    batch_rows: usize,
) -> Result<(), LoadError> {
    let base_ms = now_unix_ms();
    let per_block = agents.first().map_or(1, |(_, s)| s.len().max(1));
    let blocks = rows.div_ceil(per_block);
    let per_tx = (batch_rows / per_block).max(1);
    let mut done = 0;
    let mut values = Vec::with_capacity(per_block);
    while done < blocks {
        let end = (done + per_tx).min(blocks);
        let tx = conn.transaction().map_err(sqlite("starting a batch"))?;
        for block in done..end {
            let round = (block / agents.len().max(1)) as i64;
            let (agent, series) = &agents[block % agents.len().max(1)];
            values.clear();
            values.extend(
                series
                    .iter()
                    .enumerate()
                    .map(|(i, &id)| (id, ((block * 7919 + i) % 10_000) as f64 / 100.0)),
            );
            store::samples::insert_block(&tx, agent, round + 1, base_ms + round * 10_000, &values)
                .map_err(sqlite("inserting a block"))?;
        }
        tx.commit().map_err(sqlite("committing a batch"))?;
        done = end;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_series_has_the_asked_count_and_unique_series() {
        for count in [10, 100, 130] {
            let series = host_series(count);
            assert_eq!(series.len(), count);
            let keys: std::collections::HashSet<String> = series
                .iter()
                .map(|s| {
                    format!(
                        "{}{}",
                        s.metric.name,
                        store::writer::labels_json(&s.metric.labels)
                    )
                })
                .collect();
            assert_eq!(keys.len(), count, "series are unique per host");
        }
    }

    #[test]
    fn checks_have_unique_ids() {
        let checks = host_checks(15);
        let ids: std::collections::HashSet<&str> =
            checks.iter().map(|c| c.check_id.as_str()).collect();
        assert_eq!(ids.len(), 15);
    }

    #[test]
    fn batch_enrolled_agents_are_registered_as_the_enroll_rpc_would() {
        let dir = tempfile::tempdir().unwrap();
        let enrolled = enroll_batch(dir.path(), "https://127.0.0.1:1", 20, 1_000).unwrap();
        assert_eq!(enrolled.agents.len(), 20);
        let conn = store::open_read_only(&dir.path().join("xunjian.db")).unwrap();
        for creds in &enrolled.agents {
            let auth = store::agent_auth(&conn, creds.agent_id).unwrap().unwrap();
            assert!(!auth.revoked);
        }
        let uses: i64 = conn
            .query_row("SELECT sum(uses) FROM enrollment_tokens", [], |r| r.get(0))
            .unwrap();
        assert_eq!(uses, 20, "one token use per agent, as the RPC consumes");
        let audited: i64 = conn
            .query_row(
                "SELECT count(*) FROM audit_log WHERE action = 'agent.enroll'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(audited, 20);
    }

    /// The whole path on a real collector: batch-enrolled identities open
    /// mTLS streams, every report is acked, and every acked sample is stored
    /// exactly once.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn simulated_fleet_streams_and_every_acked_sample_is_stored() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("collector");
        let collector = crate::TestCollector::start(&data).await;
        let enrolled = enroll_batch(&data, &collector.url(), 5, now_unix_ms()).unwrap();
        let config = SimConfig {
            collector_url: collector.url(),
            interval: Duration::from_millis(200),
            duration: Duration::from_secs(1),
            samples: 20,
            checks: 3,
            ramp_rate: 100,
            drain: Duration::from_secs(20),
            progress_every: Duration::from_millis(500),
        };
        let mut steady_events = 0;
        let summary = simulate(config, enrolled.agents, CancellationToken::new(), |e| {
            if matches!(e, SimEvent::SteadyStart | SimEvent::SteadyEnd) {
                steady_events += 1;
            }
        })
        .await;
        collector.stop().await;
        assert!(summary.errors.is_empty(), "{summary}");
        assert_eq!(steady_events, 2);
        assert_eq!(summary.connected_peak, 5);
        assert_eq!(summary.inventories_acked, 5);
        assert_eq!(summary.reports_sent, summary.reports_acked, "{summary}");
        let metric_reports = summary.reports_acked - summary.inventories_acked;
        assert!(metric_reports >= 5, "{summary}");
        assert!(
            summary.latency.count > 0 && summary.reports_per_s > 0.0,
            "{summary}"
        );
        let conn = crate::db(&data);
        assert_eq!(
            crate::count(&conn, "SELECT count(*) FROM reports") as u64,
            summary.reports_acked
        );
        assert_eq!(
            crate::count(&conn, "SELECT sum(samples) FROM sample_blocks") as u64,
            metric_reports * 20
        );
        assert_eq!(summary.sample_rows_acked, metric_reports * 20);
        assert_eq!(
            crate::count(&conn, "SELECT count(*) FROM series"),
            5 * 20,
            "cardinality is agents x samples"
        );
        assert_eq!(
            crate::count(&conn, "SELECT coalesce(sum(results), 0) FROM check_blocks") as u64,
            metric_reports * 3
        );
    }

    #[test]
    fn saved_agents_load_back() {
        let dir = tempfile::tempdir().unwrap();
        let enrolled = enroll_batch(dir.path(), "https://127.0.0.1:1", 3, 1_000).unwrap();
        let path = dir.path().join("agents.json");
        save_agents(&path, &enrolled.agents).unwrap();
        let back = load_agents(&path, 2, "https://127.0.0.1:2").unwrap();
        assert_eq!(back.len(), 2);
        assert_eq!(back[0].agent_id, enrolled.agents[0].agent_id);
        assert_eq!(back[0].collector_url, "https://127.0.0.1:2");
        assert_eq!(back[1].ca_pem, enrolled.agents[1].ca_pem);
        let err = load_agents(&path, 4, "https://127.0.0.1:2").unwrap_err();
        assert!(err.to_string().contains("holds 3 agents"), "{err}");
    }

    #[test]
    fn ceiling_inserts_every_row() {
        let dir = tempfile::tempdir().unwrap();
        let runs = sqlite_ceiling(dir.path(), 3, 10, 95, &[10, 40]).unwrap();
        assert_eq!(runs.len(), 2);
        assert!(runs.iter().all(|r| r.rows == 95 && r.seconds > 0.0));
        assert!(best_ceiling(&runs).is_some());
    }
}
