//! Collector configuration: TOML with unknown fields rejected, parsed into a
//! validated [`CollectorConfig`].

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// Why a configuration was refused. The message names the file and the field.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("invalid config file {path}: field `{field}`: {reason}")]
    Invalid {
        path: PathBuf,
        field: &'static str,
        reason: String,
    },
}

/// The validated collector configuration.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CollectorConfig {
    #[serde(default)]
    pub server: ServerConfig,
    #[serde(default)]
    pub storage: StorageConfig,
    #[serde(default)]
    pub policy: PolicyConfig,
    #[serde(default)]
    pub alerting: AlertingConfig,
    #[serde(default)]
    pub incidents: crate::incidents::lifecycle::LifecycleConfig,
    /// SLA budgets per severity and the calendars (7x24, 5x8 with holidays).
    #[serde(default)]
    pub sla: crate::sla::SlaConfig,
    /// Where incidents are announced (webhooks, WeCom, DingTalk, Slack, email).
    #[serde(default)]
    pub notify: crate::notify::NotifyConfig,
    /// How long raw data and hourly rollups are kept.
    #[serde(default)]
    pub retention: crate::maintenance::RetentionConfig,
    /// Inspection plans and security self-checks.
    #[serde(default)]
    pub inspection: crate::inspection::plan::InspectionConfig,
    /// Periodic ops reports and where scheduled ones are written.
    #[serde(default)]
    pub reports: crate::report::ReportsConfig,
}

/// Where the rules come from.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertingConfig {
    /// A rules file (TOML); unset = the built-in default rule set. Check it
    /// with `xunjian rules validate FILE`.
    #[serde(default)]
    pub rules_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// Address the gRPC/TLS listener binds, e.g. "0.0.0.0:7443".
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// Host names and IP addresses agents use to reach this collector; they
    /// go into the server certificate. "localhost" and "127.0.0.1" are always
    /// added.
    #[serde(default)]
    pub names: Vec<String>,
    /// Largest message accepted from an agent, bytes.
    #[serde(default = "default_max_message_bytes")]
    pub max_message_bytes: usize,
    /// Most agent streams held open at once; further agents get
    /// RESOURCE_EXHAUSTED and retry with backoff.
    #[serde(default = "default_max_agents")]
    pub max_agents: usize,
    /// HTTP/2 keepalive ping interval; a peer that does not answer within
    /// `keepalive_timeout` is disconnected (half-open connections).
    #[serde(default = "default_keepalive_interval", with = "humantime_serde")]
    pub keepalive_interval: Duration,
    #[serde(default = "default_keepalive_timeout", with = "humantime_serde")]
    pub keepalive_timeout: Duration,
    /// New metric series one agent may create per hour; samples that would
    /// create more are dropped, counted and raise an incident.
    #[serde(default = "default_max_new_series_per_hour")]
    pub max_new_series_per_hour: usize,
    /// How long an agent may leave the collector's messages (acks) unread
    /// while its response queue is full; then its stream is closed and its
    /// slot under `max_agents` freed.
    #[serde(default = "default_stall_timeout", with = "humantime_serde")]
    pub stall_timeout: Duration,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorageConfig {
    /// Directory holding the SQLite database and the PKI (CA and server keys).
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
    /// Largest size the database file may grow to, bytes (whole pages);
    /// unset = no limit but the disk's. At the limit ingest answers a
    /// retryable UNAVAILABLE ("database or disk is full") and agents keep
    /// their reports spooled until space is freed (retention, or a higher
    /// limit), exactly as on a full disk.
    #[serde(default)]
    pub max_db_bytes: Option<u64>,
    /// SQLite page cache of the storage writer's connection, MiB. More
    /// keeps more of the agents' index pages at hand (fewer slow batches
    /// at thousands of reports a second) at the cost of resident memory.
    #[serde(default = "default_writer_cache_mib")]
    pub writer_cache_mib: u32,
}

fn default_writer_cache_mib() -> u32 {
    crate::store::writer::DEFAULT_WRITER_CACHE_MIB
}

/// Range of `storage.writer_cache_mib`.
pub const WRITER_CACHE_MIB: std::ops::RangeInclusive<u32> = 2..=4096;

/// Collection settings pushed to every agent in a `Policy` message. Unset
/// means each agent keeps its own configured value.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyConfig {
    #[serde(default, with = "humantime_serde")]
    pub metrics_interval: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub inventory_interval: Option<Duration>,
    /// Collection areas agents may run (they never run more than their own
    /// config allows); empty = no restriction.
    #[serde(default)]
    pub areas: Vec<String>,
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([0, 0, 0, 0], 7443))
}
fn default_max_message_bytes() -> usize {
    4 * 1024 * 1024
}
fn default_max_agents() -> usize {
    20_000
}
fn default_keepalive_interval() -> Duration {
    Duration::from_secs(30)
}
fn default_max_new_series_per_hour() -> usize {
    crate::store::writer::DEFAULT_MAX_NEW_SERIES_PER_HOUR
}
fn default_keepalive_timeout() -> Duration {
    Duration::from_secs(20)
}
fn default_stall_timeout() -> Duration {
    Duration::from_secs(60)
}
/// Smallest `storage.max_db_bytes`: an empty schema already takes a good
/// part of a mebibyte.
pub const MIN_DB_BYTES: u64 = 1024 * 1024;
/// The agents' own default collection interval, assumed when the policy
/// does not set one (for deciding when a host is offline).
pub const AGENT_DEFAULT_INTERVAL: Duration = Duration::from_secs(30);

/// Where `up` and the CLI look when neither `--data-dir` nor `--config` is
/// given: `$XDG_DATA_HOME/xunjian`, else `~/.local/share/xunjian`, else
/// `./xunjian-data`.
pub fn default_data_dir() -> PathBuf {
    if let Some(xdg) = std::env::var_os("XDG_DATA_HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(xdg).join("xunjian");
    }
    if let Some(home) = std::env::var_os("HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(home).join(".local/share/xunjian");
    }
    PathBuf::from("xunjian-data")
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: default_listen(),
            names: Vec::new(),
            max_message_bytes: default_max_message_bytes(),
            max_agents: default_max_agents(),
            keepalive_interval: default_keepalive_interval(),
            keepalive_timeout: default_keepalive_timeout(),
            max_new_series_per_hour: default_max_new_series_per_hour(),
            stall_timeout: default_stall_timeout(),
        }
    }
}

impl Default for StorageConfig {
    fn default() -> Self {
        Self {
            data_dir: default_data_dir(),
            max_db_bytes: None,
            writer_cache_mib: default_writer_cache_mib(),
        }
    }
}

impl CollectorConfig {
    /// Reads, parses and validates a config file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(path, &text)
    }

    /// Parses and validates config text; `path` is only used in messages.
    pub fn parse(path: &Path, text: &str) -> Result<Self, ConfigError> {
        let config: CollectorConfig = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
        config.validate(path)?;
        Ok(config)
    }

    /// Checks the values serde cannot: ranges and names.
    pub fn validate(&self, path: &Path) -> Result<(), ConfigError> {
        let invalid = |field: &'static str, reason: String| ConfigError::Invalid {
            path: path.to_owned(),
            field,
            reason,
        };
        let s = &self.server;
        if !(64 * 1024..=64 * 1024 * 1024).contains(&s.max_message_bytes) {
            return Err(invalid(
                "server.max_message_bytes",
                format!("{} is outside 65536..=67108864", s.max_message_bytes),
            ));
        }
        if !(100..=1_000_000).contains(&s.max_new_series_per_hour) {
            return Err(invalid(
                "server.max_new_series_per_hour",
                format!("{} is outside 100..=1000000", s.max_new_series_per_hour),
            ));
        }
        if s.max_agents == 0 {
            return Err(invalid("server.max_agents", "must be at least 1".into()));
        }
        for name in &s.names {
            if name.is_empty()
                || name.contains(['/', ' ', ':']) && name.parse::<std::net::IpAddr>().is_err()
            {
                return Err(invalid(
                    "server.names",
                    format!("{name:?} is not a host name or IP address"),
                ));
            }
        }
        if s.keepalive_interval < Duration::from_secs(1)
            || s.keepalive_timeout < Duration::from_secs(1)
        {
            return Err(invalid(
                "server.keepalive_interval",
                "keepalive interval and timeout must be at least 1s".into(),
            ));
        }
        if s.stall_timeout < Duration::from_secs(1) {
            return Err(invalid(
                "server.stall_timeout",
                "must be at least 1s".into(),
            ));
        }
        let p = &self.policy;
        for (field, value) in [
            ("policy.metrics_interval", p.metrics_interval),
            ("policy.inventory_interval", p.inventory_interval),
        ] {
            let Some(value) = value else { continue };
            if value < Duration::from_secs(1) || value > Duration::from_secs(86_400) {
                return Err(invalid(
                    field,
                    format!("{} is outside 1s..=24h", humantime::format_duration(value)),
                ));
            }
        }
        if let Some(bad) = p
            .areas
            .iter()
            .find(|a| !xunjian_agent::config::AREAS.contains(&a.as_str()))
        {
            return Err(invalid(
                "policy.areas",
                format!(
                    "unknown area {bad:?}; known: {}",
                    xunjian_agent::config::AREAS.join(", ")
                ),
            ));
        }
        if let Err(e) = self.incidents.validate() {
            return Err(invalid(e.field, e.reason));
        }
        if let Err(e) = self.sla.policy() {
            return Err(invalid(e.field, e.reason));
        }
        if let Err(e) = self.notify.validate() {
            return Err(ConfigError::Parse {
                path: path.to_owned(),
                message: e.to_string(),
            });
        }
        if let Some((field, reason)) = self.retention.problem() {
            return Err(invalid(field, reason));
        }
        if let Some((field, reason)) = self.inspection.problem() {
            return Err(invalid(field, reason));
        }
        if let Some((field, reason)) = self.reports.problem() {
            return Err(invalid(field, reason));
        }
        if self.storage.data_dir.as_os_str().is_empty() {
            return Err(invalid("storage.data_dir", "must not be empty".into()));
        }
        if let Some(max) = self.storage.max_db_bytes
            && max < MIN_DB_BYTES
        {
            return Err(invalid(
                "storage.max_db_bytes",
                format!("{max} is below the minimum of {MIN_DB_BYTES}"),
            ));
        }
        if !WRITER_CACHE_MIB.contains(&self.storage.writer_cache_mib) {
            return Err(invalid(
                "storage.writer_cache_mib",
                format!(
                    "{} is outside {}..={} (MiB)",
                    self.storage.writer_cache_mib,
                    WRITER_CACHE_MIB.start(),
                    WRITER_CACHE_MIB.end()
                ),
            ));
        }
        Ok(())
    }

    /// The SQLite database file.
    pub fn database_path(&self) -> PathBuf {
        self.storage.data_dir.join("xunjian.db")
    }

    /// Where scheduled reports are written.
    pub fn reports_dir(&self) -> PathBuf {
        self.reports
            .output_dir
            .clone()
            .unwrap_or_else(|| self.storage.data_dir.join("reports"))
    }

    /// The directory with the CA and server certificate.
    pub fn pki_dir(&self) -> PathBuf {
        self.storage.data_dir.join("pki")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<CollectorConfig, ConfigError> {
        CollectorConfig::parse(Path::new("collector.toml"), text)
    }

    #[test]
    fn empty_file_gives_defaults() {
        let c = parse("").unwrap();
        assert_eq!(c.server.listen.port(), 7443);
        assert_eq!(c.policy.metrics_interval, None);
    }

    #[test]
    fn full_file_parses() {
        let c = parse(
            r#"
            [server]
            listen = "127.0.0.1:9000"
            names = ["collector.example.com", "10.0.0.5"]
            [storage]
            data_dir = "/var/lib/xunjian"
            [policy]
            metrics_interval = "15s"
            "#,
        )
        .unwrap();
        assert_eq!(c.server.listen.port(), 9000);
        assert_eq!(c.server.names.len(), 2);
        assert_eq!(c.database_path(), Path::new("/var/lib/xunjian/xunjian.db"));
        assert_eq!(c.policy.metrics_interval, Some(Duration::from_secs(15)));
    }

    #[test]
    fn shipped_sample_config_is_valid() {
        let text = include_str!("../../deploy/config/collector.toml");
        let c = parse(text).unwrap();
        assert_eq!(c.storage.data_dir, Path::new("/var/lib/xunjian"));
    }

    #[test]
    fn policy_areas_are_checked_against_the_agents_areas() {
        let msg = parse("[policy]\nareas = [\"smrt\"]\n")
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("policy.areas") && msg.contains("smrt"),
            "{msg}"
        );
        assert_eq!(
            parse("[policy]\nareas = [\"system\"]\n")
                .unwrap()
                .policy
                .areas,
            vec!["system"]
        );
    }

    #[test]
    fn unknown_field_is_named() {
        let err = parse("[server]\nlisten = \"127.0.0.1:1\"\nlisen = 3\n").unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("lisen"), "{msg}");
        assert!(msg.contains("collector.toml"), "{msg}");
    }

    #[test]
    fn bad_values_are_named() {
        let msg = parse("[policy]\nmetrics_interval = \"0s\"\n")
            .unwrap_err()
            .to_string();
        assert!(msg.contains("policy.metrics_interval"), "{msg}");
        let msg = parse("[policy]\nareas = [\"smrt\"]\n")
            .unwrap_err()
            .to_string();
        assert!(msg.contains("policy.areas"), "{msg}");
        let msg = parse("[server]\nmax_message_bytes = 10\n")
            .unwrap_err()
            .to_string();
        assert!(msg.contains("server.max_message_bytes"), "{msg}");
        let msg = parse("[server]\nstall_timeout = \"100ms\"\n")
            .unwrap_err()
            .to_string();
        assert!(msg.contains("server.stall_timeout"), "{msg}");
        let msg = parse("[storage]\nmax_db_bytes = 4096\n")
            .unwrap_err()
            .to_string();
        assert!(msg.contains("storage.max_db_bytes"), "{msg}");
        for bad in ["0", "1", "4097"] {
            let msg = parse(&format!("[storage]\nwriter_cache_mib = {bad}\n"))
                .unwrap_err()
                .to_string();
            assert!(msg.contains("storage.writer_cache_mib"), "{msg}");
        }
        let msg = parse("[storage]\nwriter_cache_mib = -4\n")
            .unwrap_err()
            .to_string();
        assert!(msg.contains("writer_cache_mib"), "{msg}");
        let ok = parse("[storage]\nwriter_cache_mib = 64\n").unwrap();
        assert_eq!(ok.storage.writer_cache_mib, 64);
        let msg = parse("[server]\nlisten = \"nowhere\"\n")
            .unwrap_err()
            .to_string();
        assert!(msg.contains("listen"), "{msg}");
    }
}
