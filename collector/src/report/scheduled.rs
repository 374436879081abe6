//! Reports made on a schedule: after each period of a `[[reports.schedule]]`
//! job ends (plus its delay), the collector writes the report once per
//! language and format to the reports directory and records it, so a
//! restart never makes it twice and never skips it.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use rusqlite::params;
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;

use super::model::Lang;
use super::render::Format;
use crate::clock::Clock;
use crate::config::CollectorConfig;
use crate::schedule::Period;
use crate::store::WriterHandle;

const CHECK_EVERY: Duration = Duration::from_secs(60);
/// Ended periods looked at for each job (the latest and the two before).
const LOOK_BACK: usize = 3;

/// A report still to be made: (job index, period, format).
#[derive(Debug, Clone, PartialEq)]
pub struct Pending {
    pub kind: super::PeriodKind,
    pub period: String,
    pub lang: Lang,
    pub format: String,
}

/// What is due at `now` and not yet made. Periods that ended before the
/// first host enrolled are skipped (a new install has nothing to report).
pub fn due(
    conn: &rusqlite::Connection,
    config: &CollectorConfig,
    now: DateTime<Utc>,
) -> Result<Vec<Pending>, crate::store::StoreError> {
    let Ok(tz) = config.reports.timezone.parse::<chrono_tz::Tz>() else {
        return Ok(Vec::new());
    };
    let first_enrolled: Option<i64> = conn
        .query_row(
            "SELECT min(enrolled_at) FROM agents WHERE revoked_at IS NULL OR revoked_at > 0",
            [],
            |r| r.get(0),
        )
        .map_err(crate::store::sql("reading the first enrollment"))?;
    let Some(first_enrolled) = first_enrolled else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for job in &config.reports.schedule {
        let delay = chrono::Duration::from_std(job.delay).unwrap_or_default();
        let mut period = Period::containing(job.kind, now - delay, tz);
        // The last few ended periods, oldest first: a collector that was
        // down across a period's end (or failed to make it) catches up.
        let mut periods = Vec::new();
        for _ in 0..LOOK_BACK {
            period = period.previous();
            periods.push(period.clone());
        }
        for period in periods.into_iter().rev() {
            let (_, end) = period.bounds(tz);
            if end.timestamp_millis() <= first_enrolled {
                continue;
            }
            for format in &job.formats {
                let made: bool = conn
                .query_row(
                    "SELECT EXISTS (SELECT 1 FROM reports_generated WHERE kind = ?1 AND period = ?2 AND lang = ?3 AND format = ?4)",
                    params![job.kind.as_str(), period.label, job.lang.as_str(), format],
                    |r| r.get(0),
                )
                .map_err(crate::store::sql("reading generated reports"))?;
                if !made {
                    out.push(Pending {
                        kind: job.kind,
                        period: period.label.clone(),
                        lang: job.lang,
                        format: format.clone(),
                    });
                }
            }
        }
    }
    Ok(out)
}

/// Makes one pending report: renders, writes the file atomically, records it.
pub async fn make_one(
    config: &CollectorConfig,
    writer: &WriterHandle,
    pending: &Pending,
    now: DateTime<Utc>,
) -> anyhow::Result<std::path::PathBuf> {
    let format = pending
        .format
        .parse::<Format>()
        .ok()
        .ok_or_else(|| anyhow::anyhow!("unknown format {}", pending.format))?;
    // Computing a year for thousands of hosts takes seconds: off the runtime.
    let bytes = {
        let (config, p) = (config.clone(), pending.clone());
        tokio::task::spawn_blocking(move || -> anyhow::Result<Vec<u8>> {
            let conn = crate::store::open_read_only(&config.database_path())?;
            Ok(super::make(
                &conn, &config, p.kind, &p.period, p.lang, format, now,
            )?)
        })
        .await??
    };
    let dir = config.reports_dir();
    std::fs::create_dir_all(&dir)?;
    let path = dir.join(format!(
        "{}-{}.{}.{}",
        pending.kind.as_str(),
        pending.period,
        pending.lang.as_str(),
        pending.format
    ));
    xunjian_agent::fsutil::write_atomic(&path, &bytes, 0o644)?;
    let sha = hex::encode(Sha256::digest(&bytes));
    let (kind, period, lang, fmt, p) = (
        pending.kind.as_str(),
        pending.period.clone(),
        pending.lang.as_str(),
        pending.format.clone(),
        path.display().to_string(),
    );
    let at = now.timestamp_millis();
    writer
        .run(move |c| {
            c.execute(
                "INSERT OR REPLACE INTO reports_generated (kind, period, lang, format, path, sha256, generated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![kind, period, lang, fmt, p, sha, at],
            )?;
            Ok(())
        })
        .await?;
    Ok(path)
}

/// The collector task: every minute, makes what is due.
pub async fn run(
    config: Arc<CollectorConfig>,
    writer: WriterHandle,
    clock: Arc<dyn Clock>,
    shutdown: CancellationToken,
) {
    if config.reports.schedule.is_empty() {
        return;
    }
    let mut tick = tokio::time::interval(CHECK_EVERY);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tick.tick() => {}
        }
        let now = clock.now();
        let pending = {
            let config = config.clone();
            tokio::task::spawn_blocking(move || {
                let conn = crate::store::open_read_only(&config.database_path())?;
                due(&conn, &config, now)
            })
            .await
        };
        let pending = match pending {
            Ok(Ok(p)) => p,
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "cannot tell which scheduled reports are due");
                continue;
            }
            Err(_) => continue,
        };
        for p in pending {
            match make_one(&config, &writer, &p, now).await {
                Ok(path) => {
                    tracing::info!(period = %p.period, path = %path.display(), "scheduled report written")
                }
                Err(e) => {
                    tracing::warn!(period = %p.period, format = %p.format, error = %e, "scheduled report failed; retried in a minute")
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::ScheduledReport;

    fn at(text: &str) -> DateTime<Utc> {
        text.parse().unwrap()
    }

    #[test]
    fn the_last_ended_period_is_due_once_after_its_delay() {
        let dir = tempfile::tempdir().unwrap();
        let conn = crate::store::open(&dir.path().join("x.db")).unwrap();
        let mut config = CollectorConfig::default();
        config.reports.timezone = "Asia/Shanghai".into();
        config.reports.schedule.push(ScheduledReport {
            kind: super::super::PeriodKind::Monthly,
            lang: Lang::ZhCn,
            formats: vec!["html".into(), "csv".into()],
            delay: Duration::from_secs(3600),
        });
        // Nothing enrolled yet: a new install has nothing to report.
        assert!(
            due(&conn, &config, at("2026-11-01T00:00:00Z"))
                .unwrap()
                .is_empty()
        );
        conn.execute(
            "INSERT INTO agents (agent_id, enrolled_at, enrolled_with_token, cert_serial, cert_sha256)
             VALUES ('a', ?1, 't', 's', 'h')",
            [at("2026-10-03T00:00:00Z").timestamp_millis()],
        )
        .unwrap();
        // November starts 2026-10-31T16:00Z in Shanghai; the delay is an hour.
        assert!(
            due(&conn, &config, at("2026-10-31T16:30:00Z"))
                .unwrap()
                .iter()
                .all(|p| p.period == "2026-09")
        );
        let pending = due(&conn, &config, at("2026-10-31T17:00:00Z")).unwrap();
        // September ended before the first enrollment: skipped.
        assert_eq!(
            pending
                .iter()
                .map(|p| (p.period.as_str(), p.format.as_str()))
                .collect::<Vec<_>>(),
            vec![("2026-10", "html"), ("2026-10", "csv")]
        );
        conn.execute(
            "INSERT INTO reports_generated (kind, period, lang, format, path, sha256, generated_at)
             VALUES ('monthly', '2026-10', 'zh-CN', 'html', '/x', 'h', 0)",
            [],
        )
        .unwrap();
        let pending = due(&conn, &config, at("2026-11-02T00:00:00Z")).unwrap();
        assert_eq!(pending.len(), 1);
        assert_eq!(pending[0].format, "csv");
    }
}
