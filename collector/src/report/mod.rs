//! Periodic ops reports (monthly, quarterly, annual): the numbers
//! (`model`), how they are computed from the store (`compute`), and how they
//! are rendered (`render`).

pub mod charts;
pub mod compute;
pub mod i18n;
pub mod model;
pub mod render;
pub mod scheduled;
pub mod seed;

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

pub use model::{Lang, PeriodKind};

/// `[reports]` in the collector config.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReportsConfig {
    /// IANA time zone of the periods (a month starts at local midnight).
    #[serde(default = "default_timezone")]
    pub timezone: String,
    /// A host is patch-compliant when no security update has been pending
    /// longer than this.
    #[serde(default = "default_patch_max_age", with = "humantime_serde")]
    pub patch_max_age: Duration,
    /// Where scheduled reports go; default `<data_dir>/reports`.
    #[serde(default)]
    pub output_dir: Option<PathBuf>,
    /// Reports made automatically once their period has ended.
    #[serde(default)]
    pub schedule: Vec<ScheduledReport>,
}

/// One `[[reports.schedule]]`: e.g. the monthly report in Chinese as HTML
/// and CSV, made `delay` after each month ends.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduledReport {
    pub kind: PeriodKind,
    #[serde(default = "default_lang")]
    pub lang: Lang,
    #[serde(default = "default_formats")]
    pub formats: Vec<String>,
    /// Wait after the period ends, so late spooled data is in.
    #[serde(default = "default_delay", with = "humantime_serde")]
    pub delay: Duration,
}

fn default_timezone() -> String {
    "UTC".into()
}
fn default_patch_max_age() -> Duration {
    Duration::from_secs(14 * 86_400)
}
fn default_lang() -> Lang {
    Lang::ZhCn
}
fn default_formats() -> Vec<String> {
    vec!["html".into(), "json".into()]
}
fn default_delay() -> Duration {
    Duration::from_secs(3600)
}

impl Default for ReportsConfig {
    fn default() -> Self {
        Self {
            timezone: default_timezone(),
            patch_max_age: default_patch_max_age(),
            output_dir: None,
            schedule: Vec::new(),
        }
    }
}

impl ReportsConfig {
    /// Checks what serde cannot; the error names the field.
    pub fn problem(&self) -> Option<(&'static str, String)> {
        if self.timezone.parse::<chrono_tz::Tz>().is_err() {
            return Some((
                "reports.timezone",
                format!(
                    "unknown time zone `{}` (use an IANA name such as Asia/Shanghai)",
                    self.timezone
                ),
            ));
        }
        if self.patch_max_age < Duration::from_secs(86_400) {
            return Some(("reports.patch_max_age", "must be at least 1 day".into()));
        }
        for job in &self.schedule {
            if job.formats.is_empty() {
                return Some(("reports.schedule.formats", "lists no format".into()));
            }
            if let Some(bad) = job
                .formats
                .iter()
                .find(|f| f.parse::<render::Format>().is_err())
            {
                return Some((
                    "reports.schedule.formats",
                    format!("unknown format `{bad}` (html, csv, json)"),
                ));
            }
            if job.delay > Duration::from_secs(7 * 86_400) {
                return Some(("reports.schedule.delay", "must be at most 7 days".into()));
            }
        }
        None
    }
}

/// Why a report could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error(transparent)]
    Period(#[from] crate::schedule::ScheduleError),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error(transparent)]
    Render(#[from] render::RenderError),
    #[error("{0}")]
    Config(String),
}

/// The parameters of one period's report from the collector's settings.
pub fn params(
    config: &crate::config::CollectorConfig,
    kind: PeriodKind,
    period: &str,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<compute::ReportParams, ReportError> {
    let tz: chrono_tz::Tz = config.reports.timezone.parse().map_err(|_| {
        ReportError::Config(format!("unknown time zone `{}`", config.reports.timezone))
    })?;
    let period = crate::schedule::parse_period(kind, period)?;
    let (from, to) = period.bounds(tz);
    let (next_from, next_to) = period.next().bounds(tz);
    let sla = config
        .sla
        .policy()
        .map_err(|e| ReportError::Config(e.to_string()))?;
    Ok(compute::ReportParams {
        kind,
        period_label: period.label.clone(),
        from,
        to,
        next_period_days: (next_to - next_from).num_seconds() as f64 / 86_400.0,
        timezone: tz,
        days: period.days(tz),
        patch_max_age_days: (config.reports.patch_max_age.as_secs() / 86_400) as u32,
        sla,
        now,
    })
}

/// Computes and renders one report.
pub fn make(
    conn: &rusqlite::Connection,
    config: &crate::config::CollectorConfig,
    kind: PeriodKind,
    period: &str,
    lang: Lang,
    format: render::Format,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<Vec<u8>, ReportError> {
    let params = params(config, kind, period, now)?;
    let report = compute::compute(conn, &params)?;
    Ok(render::render_report(&report, lang, format)?)
}
