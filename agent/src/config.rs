//! Agent configuration: TOML with unknown fields rejected, parsed into a
//! validated [`AgentConfig`].

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// Why a configuration was refused. The message names the file and field.
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

/// The validated agent configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentConfig {
    /// The collector's URL, `https://HOST:PORT`. When absent, the URL used at
    /// enrollment is used.
    #[serde(default)]
    pub collector: Option<String>,
    /// The name to verify the collector's certificate against, when it
    /// differs from the URL's host.
    #[serde(default)]
    pub server_name: Option<String>,
    /// Holds the agent's key, certificate and spool.
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
    #[serde(default)]
    pub spool: SpoolConfig,
    #[serde(default)]
    pub collect: CollectConfig,
    /// Custom checks in the Monitoring Plugins convention (`[[checks]]`).
    #[serde(default)]
    pub checks: Vec<crate::collect::plugins::PluginCheck>,
    /// Other antivirus products to watch (`[[antivirus]]`).
    #[serde(default)]
    pub antivirus: Vec<crate::collect::antivirus::GenericAv>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpoolConfig {
    /// Bound of the on-disk spool, bytes. Past it the oldest reports are
    /// dropped, counted and reported.
    #[serde(default = "default_spool_max_bytes")]
    pub max_bytes: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CollectConfig {
    /// Seconds between metric collections, until the collector's policy says
    /// otherwise.
    #[serde(default = "default_metrics_interval", with = "humantime_serde")]
    pub metrics_interval: Duration,
    /// Between inventory collections.
    #[serde(default = "default_inventory_interval", with = "humantime_serde")]
    pub inventory_interval: Duration,
    /// Between runs of the periodic checks (services, antivirus, baseline,
    /// SMART).
    #[serde(default = "default_checks_interval", with = "humantime_serde")]
    pub checks_interval: Duration,
    /// Between package-manager queries (slow).
    #[serde(default = "default_patches_interval", with = "humantime_serde")]
    pub patches_interval: Duration,
    /// Collection areas to run (see [`AREAS`]); default all.
    #[serde(default = "default_areas")]
    pub areas: Vec<String>,
}

/// Every collection area the agent has.
pub const AREAS: &[&str] = &[
    "system",
    "disks",
    "services",
    "antivirus",
    "baseline",
    "smart",
    "patches",
    "plugins",
    "inventory",
];

fn default_areas() -> Vec<String> {
    AREAS.iter().map(|a| (*a).to_owned()).collect()
}
fn default_checks_interval() -> Duration {
    Duration::from_secs(300)
}
fn default_patches_interval() -> Duration {
    Duration::from_secs(6 * 3600)
}

impl CollectConfig {
    /// Whether an area is switched on.
    pub fn has(&self, area: &str) -> bool {
        self.areas.iter().any(|a| a == area)
    }
}

/// Where the agent keeps its credentials and spool unless configured.
pub fn default_data_dir() -> PathBuf {
    PathBuf::from("/var/lib/xunjian-agent")
}
fn default_spool_max_bytes() -> u64 {
    256 * 1024 * 1024
}
fn default_metrics_interval() -> Duration {
    Duration::from_secs(30)
}
fn default_inventory_interval() -> Duration {
    Duration::from_secs(3600)
}

impl Default for SpoolConfig {
    fn default() -> Self {
        Self {
            max_bytes: default_spool_max_bytes(),
        }
    }
}

impl Default for CollectConfig {
    fn default() -> Self {
        Self {
            metrics_interval: default_metrics_interval(),
            inventory_interval: default_inventory_interval(),
            checks_interval: default_checks_interval(),
            patches_interval: default_patches_interval(),
            areas: default_areas(),
        }
    }
}

impl AgentConfig {
    /// A configuration with defaults and the given data directory.
    pub fn with_data_dir(data_dir: PathBuf) -> Self {
        Self {
            collector: None,
            server_name: None,
            data_dir,
            spool: SpoolConfig::default(),
            collect: CollectConfig::default(),
            checks: Vec::new(),
            antivirus: Vec::new(),
        }
    }

    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(path, &text)
    }

    pub fn parse(path: &Path, text: &str) -> Result<Self, ConfigError> {
        let config: AgentConfig = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
        config.validate(path)?;
        Ok(config)
    }

    pub fn validate(&self, path: &Path) -> Result<(), ConfigError> {
        let invalid = |field: &'static str, reason: String| ConfigError::Invalid {
            path: path.to_owned(),
            field,
            reason,
        };
        if let Some(url) = &self.collector {
            parse_collector_url(url).map_err(|reason| invalid("collector", reason))?;
        }
        if self.spool.max_bytes < 1024 * 1024 {
            return Err(invalid(
                "spool.max_bytes",
                format!(
                    "{} is below the minimum of 1048576 (1 MiB)",
                    self.spool.max_bytes
                ),
            ));
        }
        if let Some(bad) = self
            .collect
            .areas
            .iter()
            .find(|a| !AREAS.contains(&a.as_str()))
        {
            return Err(invalid(
                "collect.areas",
                format!("unknown area {bad:?}; known: {}", AREAS.join(", ")),
            ));
        }
        for (field, value) in [
            ("collect.metrics_interval", self.collect.metrics_interval),
            (
                "collect.inventory_interval",
                self.collect.inventory_interval,
            ),
            ("collect.checks_interval", self.collect.checks_interval),
            ("collect.patches_interval", self.collect.patches_interval),
        ] {
            if value < Duration::from_millis(10) || value > Duration::from_secs(86_400) {
                return Err(invalid(
                    field,
                    format!(
                        "{} is outside 10ms..=24h",
                        humantime::format_duration(value)
                    ),
                ));
            }
        }
        if self.data_dir.as_os_str().is_empty() {
            return Err(invalid("data_dir", "must not be empty".into()));
        }
        let mut ids = std::collections::HashSet::new();
        for c in &self.checks {
            c.validate().map_err(|reason| invalid("checks", reason))?;
            if !ids.insert(c.id.as_str()) {
                return Err(invalid(
                    "checks",
                    format!("check id {:?} is used twice", c.id),
                ));
            }
        }
        Ok(())
    }
}

/// A collector address: `https://HOST:PORT` split into its parts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CollectorUrl {
    pub url: String,
    pub host: String,
    pub port: u16,
}

/// Checks and splits a collector URL. Only `https` is accepted: the stream is
/// always TLS.
pub fn parse_collector_url(url: &str) -> Result<CollectorUrl, String> {
    let uri: tonic::transport::Uri = url
        .parse()
        .map_err(|e| format!("{url:?} is not a URL: {e}"))?;
    if uri.scheme_str() != Some("https") {
        return Err(format!("{url:?} must start with https://"));
    }
    let host = uri
        .host()
        .ok_or_else(|| format!("{url:?} has no host"))?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let port = uri
        .port_u16()
        .ok_or_else(|| format!("{url:?} has no port (https://HOST:PORT)"))?;
    if uri.path() != "/" && !uri.path().is_empty() {
        return Err(format!("{url:?} must not have a path"));
    }
    Ok(CollectorUrl {
        url: format!("https://{}:{port}", uri.host().unwrap_or_default()),
        host,
        port,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<AgentConfig, ConfigError> {
        AgentConfig::parse(Path::new("agent.toml"), text)
    }

    #[test]
    fn minimal_config_parses_with_defaults() {
        let c = parse("collector = \"https://collector.example.com:7443\"\n").unwrap();
        assert_eq!(c.spool.max_bytes, 256 * 1024 * 1024);
        assert_eq!(c.collect.metrics_interval, Duration::from_secs(30));
    }

    #[test]
    fn shipped_sample_config_is_valid() {
        let c = parse(include_str!("../../deploy/config/agent.toml")).unwrap();
        assert_eq!(c.data_dir, Path::new("/var/lib/xunjian-agent"));
    }

    #[test]
    fn bad_fields_are_named() {
        let msg = parse("colector = \"x\"\n").unwrap_err().to_string();
        assert!(
            msg.contains("colector") && msg.contains("agent.toml"),
            "{msg}"
        );
        let msg = parse("collector = \"http://x:1\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("`collector`") && msg.contains("https"),
            "{msg}"
        );
        let msg = parse("[spool]\nmax_bytes = 10\n").unwrap_err().to_string();
        assert!(msg.contains("spool.max_bytes"), "{msg}");
        let msg = parse("[collect]\nmetrics_interval = \"soon\"\n")
            .unwrap_err()
            .to_string();
        assert!(msg.contains("metrics_interval"), "{msg}");
    }

    #[test]
    fn unknown_area_is_named() {
        let msg = parse("[collect]\nareas = [\"system\", \"smrt\"]\n")
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("collect.areas") && msg.contains("smrt"),
            "{msg}"
        );
        let c = parse("[collect]\nareas = [\"system\"]\n").unwrap();
        assert!(c.collect.has("system") && !c.collect.has("patches"));
    }

    #[test]
    fn collector_url_is_split() {
        let u = parse_collector_url("https://127.0.0.1:7443").unwrap();
        assert_eq!((u.host.as_str(), u.port), ("127.0.0.1", 7443));
        assert!(parse_collector_url("https://host").is_err());
        assert!(parse_collector_url("https://host:1/path").is_err());
        let v6 = parse_collector_url("https://[::1]:7443").unwrap();
        assert_eq!(v6.host, "::1");
    }
}
