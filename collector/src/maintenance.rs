//! Keeping a year of history small: hourly rollups of the raw samples,
//! hourly presence (availability) from the reports, and retention of raw
//! rows and old rollups.
//!
//! Rollups are incremental by rowid: each pass folds the samples added since
//! the last pass into `rollups_hourly`, merging min/avg/max/count with what
//! is there, so late data (a spool delivered after an outage) lands in its
//! own hour and no sample is counted twice. Presence works the same way on
//! the reports' receive time, bucketing each report by when it was
//! collected, as a 12-bit mask of the hour's 5-minute slots.
//!
//! Retention never deletes a raw sample that has not been rolled up. Every
//! step is one short writer job, so ingest interleaves with maintenance.

use std::collections::HashMap;
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, params};

use crate::store::TaskError;

pub const HOUR_MS: i64 = 3_600_000;
pub const SLOT_MS: i64 = 300_000;
/// Rows folded per rollup job, and deleted per retention job. Each job holds
/// the writer, so ingest waits behind it: 10,000 rows is about 30 ms on the
/// reference machine (50,000 put 400 ms on the ack p99 at 10,000 agents).
const CHUNK: i64 = 10_000;
/// Reports received this recently are left for the next pass: the writer
/// stamps `received_at` before a job waits in its queue, so a later commit
/// can carry a slightly earlier stamp.
const PRESENCE_LAG_MS: i64 = 60_000;

const WATERMARK_SAMPLES: &str = "rollup.samples_rowid";
const WATERMARK_PRESENCE: &str = "presence.received_at";

/// What `[retention]` keeps.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionConfig {
    /// Raw samples, check results and report rows.
    #[serde(default = "default_raw", with = "humantime_serde")]
    pub raw: Duration,
    /// Hourly rollups and presence; at least 400 days so an annual report
    /// always has its whole year plus the month before.
    #[serde(default = "default_rollups", with = "humantime_serde")]
    pub rollups: Duration,
}

fn default_raw() -> Duration {
    Duration::from_secs(30 * 86_400)
}
fn default_rollups() -> Duration {
    Duration::from_secs(400 * 86_400)
}

impl Default for RetentionConfig {
    fn default() -> Self {
        Self {
            raw: default_raw(),
            rollups: default_rollups(),
        }
    }
}

impl RetentionConfig {
    /// Why the settings cannot be used, with the field name.
    pub fn problem(&self) -> Option<(&'static str, String)> {
        if self.raw < Duration::from_secs(86_400) {
            return Some(("retention.raw", "must be at least 1 day".into()));
        }
        if self.rollups < Duration::from_secs(400 * 86_400) {
            return Some((
                "retention.rollups",
                "must be at least 400 days (annual reports read a year of rollups)".into(),
            ));
        }
        None
    }
}

/// What one step did; `more` = call again, there is a backlog.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Step {
    pub rows: u64,
    pub more: bool,
}

fn watermark(conn: &Connection, name: &str) -> rusqlite::Result<i64> {
    Ok(conn
        .prepare_cached("SELECT value FROM maintenance_state WHERE name = ?1")?
        .query_row([name], |r| r.get(0))
        .optional()?
        .unwrap_or(0))
}

fn set_watermark(conn: &Connection, name: &str, value: i64) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO maintenance_state (name, value) VALUES (?1, ?2)
         ON CONFLICT (name) DO UPDATE SET value = excluded.value",
    )?
    .execute(params![name, value])?;
    Ok(())
}

#[derive(Debug, Clone, Copy)]
struct Agg {
    min: f64,
    max: f64,
    sum: f64,
    count: i64,
}

/// Folds the next chunk of raw samples into the hourly rollups.
pub fn roll_up_samples(conn: &Connection) -> Result<Step, TaskError> {
    let mut from = watermark(conn, WATERMARK_SAMPLES)?;
    // Rowids restart when the table was emptied (or renumbered by VACUUM):
    // a watermark above the highest rowid would skip every new sample.
    let highest: i64 = conn
        .prepare_cached("SELECT coalesce(max(rowid), 0) FROM samples")?
        .query_row([], |r| r.get(0))?;
    if highest < from {
        tracing::warn!(
            watermark = from,
            highest,
            "sample rowids restarted; rollups start over from the first sample"
        );
        from = 0;
    }
    let mut hours: HashMap<(i64, i64), Agg> = HashMap::new();
    let mut last = from;
    let mut rows = 0i64;
    {
        let mut stmt = conn.prepare_cached(
            "SELECT rowid, series_id, at, value FROM samples WHERE rowid > ?1 ORDER BY rowid LIMIT ?2",
        )?;
        let mut q = stmt.query(params![from, CHUNK])?;
        while let Some(r) = q.next()? {
            let (rowid, series, at, value): (i64, i64, i64, f64) =
                (r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?);
            last = rowid;
            rows += 1;
            let agg = hours
                .entry((series, at.div_euclid(HOUR_MS) * HOUR_MS))
                .or_insert(Agg {
                    min: value,
                    max: value,
                    sum: 0.0,
                    count: 0,
                });
            agg.min = agg.min.min(value);
            agg.max = agg.max.max(value);
            agg.sum += value;
            agg.count += 1;
        }
    }
    let mut upsert = conn.prepare_cached(
        "INSERT INTO rollups_hourly (series_id, hour, min, avg, max, count) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
         ON CONFLICT (series_id, hour) DO UPDATE SET
            min = min(min, excluded.min),
            max = max(max, excluded.max),
            avg = (avg * count + excluded.avg * excluded.count) / (count + excluded.count),
            count = count + excluded.count",
    )?;
    // In key order, so consecutive upserts land on the same b-tree pages.
    let mut hours: Vec<((i64, i64), Agg)> = hours.into_iter().collect();
    hours.sort_unstable_by_key(|(key, _)| *key);
    for ((series, hour), a) in &hours {
        upsert.execute(params![
            series,
            hour,
            a.min,
            a.sum / a.count as f64,
            a.max,
            a.count
        ])?;
    }
    set_watermark(conn, WATERMARK_SAMPLES, last)?;
    Ok(Step {
        rows: rows as u64,
        more: rows == CHUNK,
    })
}

/// Marks the 5-minute slots in which each host reported, for reports
/// received since the last pass (up to `now` minus a short lag).
pub fn roll_up_presence(conn: &Connection, now_ms: i64) -> Result<Step, TaskError> {
    let from = watermark(conn, WATERMARK_PRESENCE)?;
    let until = now_ms - PRESENCE_LAG_MS;
    if until <= from {
        return Ok(Step::default());
    }
    let mut masks: HashMap<(String, i64), u16> = HashMap::new();
    let mut last = from;
    let mut rows = 0i64;
    {
        let mut stmt = conn.prepare_cached(
            "SELECT agent_id, collected_at, received_at FROM reports
             WHERE received_at > ?1 AND received_at <= ?2 ORDER BY received_at LIMIT ?3",
        )?;
        let mut q = stmt.query(params![from, until, CHUNK])?;
        while let Some(r) = q.next()? {
            let (agent, collected, received): (String, i64, i64) =
                (r.get(0)?, r.get(1)?, r.get(2)?);
            rows += 1;
            last = received;
            // A clock running ahead cannot make a host present in the future.
            let at = collected.min(received);
            let hour = at.div_euclid(HOUR_MS) * HOUR_MS;
            let slot = (at - hour) / SLOT_MS;
            *masks.entry((agent, hour)).or_default() |= 1 << slot;
        }
    }
    // A full chunk may end in the middle of one millisecond's reports: leave
    // that millisecond for the next pass (masks merge, so re-reading is safe).
    if rows == CHUNK && last > from + 1 {
        last -= 1;
    }
    let mut read = conn.prepare_cached(
        "SELECT slots_mask FROM presence_hourly WHERE agent_id = ?1 AND hour = ?2",
    )?;
    let mut upsert = conn.prepare_cached(
        "INSERT INTO presence_hourly (agent_id, hour, slots_seen, slots_mask) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (agent_id, hour) DO UPDATE SET slots_seen = excluded.slots_seen, slots_mask = excluded.slots_mask",
    )?;
    for ((agent, hour), mask) in &masks {
        let old: u16 = read
            .query_row(params![agent, hour], |r| r.get::<_, i64>(0))
            .optional()?
            .map(|m| (m & 0xfff) as u16)
            .unwrap_or(0);
        let merged = old | mask;
        upsert.execute(params![agent, hour, merged.count_ones(), merged])?;
    }
    set_watermark(conn, WATERMARK_PRESENCE, last)?;
    Ok(Step {
        rows: rows as u64,
        more: rows == CHUNK,
    })
}

/// Deletes one chunk of data past retention: raw samples already rolled
/// up, check results and report rows older than `raw`, rollups and
/// presence older than `rollups`.
pub fn enforce_retention(
    conn: &Connection,
    now_ms: i64,
    retention: &RetentionConfig,
) -> Result<Step, TaskError> {
    let raw_cutoff = now_ms - retention.raw.as_millis() as i64;
    let rollup_cutoff = now_ms - retention.rollups.as_millis() as i64;
    let rolled_through = watermark(conn, WATERMARK_SAMPLES)?;
    let mut rows = 0u64;
    let mut more = false;
    let mut chunk = |sql: &str, args: &[&dyn rusqlite::ToSql]| -> rusqlite::Result<()> {
        let n = conn.prepare_cached(sql)?.execute(args)? as u64;
        rows += n;
        more |= n as i64 == CHUNK;
        Ok(())
    };
    // Samples and check results are appended in (nearly) time order, so the
    // oldest are at the front: each step looks only at the first CHUNK
    // rowids, never scans the table. A late old row behind newer ones waits
    // until the front reaches it.
    let front_is_old = |table: &str| -> rusqlite::Result<bool> {
        let sql = format!("SELECT at FROM {table} ORDER BY rowid LIMIT 1");
        let at: Option<i64> = conn
            .prepare_cached(&sql)?
            .query_row([], |r| r.get(0))
            .optional()?;
        Ok(at.is_some_and(|at| at < raw_cutoff))
    };
    if front_is_old("samples")? {
        chunk(
            "DELETE FROM samples WHERE rowid IN
                (SELECT rowid FROM samples WHERE rowid <= ?1 ORDER BY rowid LIMIT ?3) AND at < ?2",
            &[&rolled_through, &raw_cutoff, &CHUNK],
        )?;
    }
    if front_is_old("check_results")? {
        chunk(
            "DELETE FROM check_results WHERE rowid IN
                (SELECT rowid FROM check_results ORDER BY rowid LIMIT ?2) AND at < ?1",
            &[&raw_cutoff, &CHUNK],
        )?;
    }
    // Report rows (by the receive-time index): remember the highest
    // sequence removed per agent first, so a replay of a pruned report is
    // still a duplicate.
    let presence_through = watermark(conn, WATERMARK_PRESENCE)?;
    let report_cutoff = raw_cutoff.min(presence_through + 1);
    conn.prepare_cached(
        "CREATE TEMP TABLE IF NOT EXISTS pruning (agent_id TEXT NOT NULL, sequence INTEGER NOT NULL)",
    )?
    .execute([])?;
    conn.prepare_cached("DELETE FROM temp.pruning")?
        .execute([])?;
    conn.prepare_cached(
        "INSERT INTO temp.pruning SELECT agent_id, sequence FROM reports
         WHERE received_at < ?1 ORDER BY received_at LIMIT ?2",
    )?
    .execute(params![report_cutoff, CHUNK])?;
    conn.prepare_cached(
        "UPDATE agents SET reports_pruned_through = max(reports_pruned_through,
            (SELECT max(sequence) FROM temp.pruning p WHERE p.agent_id = agents.agent_id))
         WHERE agent_id IN (SELECT agent_id FROM temp.pruning)",
    )?
    .execute([])?;
    chunk(
        "DELETE FROM reports WHERE (agent_id, sequence) IN (SELECT agent_id, sequence FROM temp.pruning)",
        &[],
    )?;
    chunk(
        "DELETE FROM rollups_hourly WHERE (series_id, hour) IN
            (SELECT series_id, hour FROM rollups_hourly WHERE hour < ?1 LIMIT ?2)",
        &[&rollup_cutoff, &CHUNK],
    )?;
    chunk(
        "DELETE FROM presence_hourly WHERE (agent_id, hour) IN
            (SELECT agent_id, hour FROM presence_hourly WHERE hour < ?1 LIMIT ?2)",
        &[&rollup_cutoff, &CHUNK],
    )?;
    Ok(Step { rows, more })
}

/// One full pass through the writer: rollups and presence until caught up,
/// then retention until nothing is left to delete. Each step is its own
/// writer job.
pub async fn run_pass(
    writer: &crate::store::WriterHandle,
    now_ms: i64,
    retention: &RetentionConfig,
) -> Result<Step, crate::store::WriteError> {
    let mut total = Step::default();
    loop {
        let step = writer.run(roll_up_samples).await?;
        total.rows += step.rows;
        if !step.more {
            break;
        }
    }
    loop {
        let step = writer.run(move |c| roll_up_presence(c, now_ms)).await?;
        total.rows += step.rows;
        if !step.more {
            break;
        }
    }
    loop {
        let retention = retention.clone();
        let step = writer
            .run(move |c| enforce_retention(c, now_ms, &retention))
            .await?;
        total.rows += step.rows;
        if !step.more {
            break;
        }
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db() -> (tempfile::TempDir, Connection) {
        let dir = tempfile::tempdir().unwrap();
        let conn = crate::store::open(&dir.path().join("x.db")).unwrap();
        conn.execute(
            "INSERT INTO agents (agent_id, enrolled_at, enrolled_with_token, cert_serial, cert_sha256)
             VALUES ('a', 0, 't', 's', 'h')",
            [],
        )
        .unwrap();
        conn.execute(
            "INSERT INTO series (series_id, agent_id, name, labels) VALUES (1, 'a', 'cpu', '{}')",
            [],
        )
        .unwrap();
        (dir, conn)
    }

    fn sample(conn: &Connection, at: i64, value: f64) {
        conn.execute(
            "INSERT INTO samples (series_id, at, value, sequence) VALUES (1, ?1, ?2, 1)",
            params![at, value],
        )
        .unwrap();
    }

    fn rollup(conn: &Connection, hour: i64) -> (f64, f64, f64, i64) {
        conn.query_row(
            "SELECT min, avg, max, count FROM rollups_hourly WHERE series_id = 1 AND hour = ?1",
            [hour],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .unwrap()
    }

    #[test]
    fn rollups_merge_late_samples_into_their_hour_once() {
        let (_d, conn) = db();
        let h = 100 * HOUR_MS;
        sample(&conn, h + 1, 10.0);
        sample(&conn, h + 2, 20.0);
        sample(&conn, h + HOUR_MS, 5.0);
        roll_up_samples(&conn).unwrap();
        assert_eq!(rollup(&conn, h), (10.0, 15.0, 20.0, 2));
        // A late sample for the first hour, then a pass with nothing new.
        sample(&conn, h + 3, 60.0);
        roll_up_samples(&conn).unwrap();
        roll_up_samples(&conn).unwrap();
        assert_eq!(rollup(&conn, h), (10.0, 30.0, 60.0, 3));
        assert_eq!(rollup(&conn, h + HOUR_MS), (5.0, 5.0, 5.0, 1));
    }

    #[test]
    fn rollups_start_over_when_sample_rowids_restart() {
        let (_d, conn) = db();
        let h = 100 * HOUR_MS;
        for i in 0..3 {
            sample(&conn, h + i, 1.0);
        }
        roll_up_samples(&conn).unwrap();
        conn.execute("DELETE FROM samples", []).unwrap();
        // The emptied table hands out rowid 1 again.
        sample(&conn, h + 2 * HOUR_MS, 7.0);
        roll_up_samples(&conn).unwrap();
        assert_eq!(rollup(&conn, h + 2 * HOUR_MS), (7.0, 7.0, 7.0, 1));
    }

    #[test]
    fn presence_counts_distinct_slots_by_collection_time() {
        let (_d, conn) = db();
        let h = 10 * HOUR_MS;
        let report = |seq: i64, collected: i64, received: i64| {
            conn.execute(
                "INSERT INTO reports (agent_id, sequence, collected_at, received_at, bytes, sections)
                 VALUES ('a', ?1, ?2, ?3, 1, 1)",
                params![seq, collected, received],
            )
            .unwrap();
        };
        report(1, h + 1_000, h + 1_000);
        report(2, h + 2_000, h + 2_000); // same slot
        report(3, h + 11 * SLOT_MS, h + 11 * SLOT_MS);
        // Collected in slot 5 but delivered an hour later from the spool.
        report(4, h + 5 * SLOT_MS, h + 2 * HOUR_MS);
        let seen = |conn: &Connection| -> i64 {
            conn.query_row(
                "SELECT slots_seen FROM presence_hourly WHERE agent_id = 'a' AND hour = ?1",
                [h],
                |r| r.get(0),
            )
            .unwrap()
        };
        roll_up_presence(&conn, h + HOUR_MS + PRESENCE_LAG_MS).unwrap();
        assert_eq!(seen(&conn), 2);
        roll_up_presence(&conn, h + 3 * HOUR_MS).unwrap();
        assert_eq!(seen(&conn), 3);
    }

    #[test]
    fn retention_keeps_unrolled_samples_and_remembers_pruned_sequences() {
        let (_d, conn) = db();
        let day = 86_400_000;
        let now = 100 * day;
        sample(&conn, day, 1.0); // old, not yet rolled up
        conn.execute(
            "INSERT INTO reports (agent_id, sequence, collected_at, received_at, bytes, sections)
             VALUES ('a', 7, ?1, ?1, 1, 1)",
            [day],
        )
        .unwrap();
        let cfg = RetentionConfig::default();
        enforce_retention(&conn, now, &cfg).unwrap();
        let samples: i64 = conn
            .query_row("SELECT count(*) FROM samples", [], |r| r.get(0))
            .unwrap();
        assert_eq!(samples, 1, "a sample not rolled up is never deleted");
        roll_up_samples(&conn).unwrap();
        roll_up_presence(&conn, now).unwrap();
        enforce_retention(&conn, now, &cfg).unwrap();
        let (samples, reports, pruned): (i64, i64, i64) = conn
            .query_row(
                "SELECT (SELECT count(*) FROM samples), (SELECT count(*) FROM reports),
                        (SELECT reports_pruned_through FROM agents)",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .unwrap();
        assert_eq!((samples, reports, pruned), (0, 0, 7));
        assert_eq!(rollup(&conn, 24 * HOUR_MS).3, 1, "the rollup stays");
        // 401 days later the rollup goes too.
        enforce_retention(&conn, day + 401 * day, &cfg).unwrap();
        let rollups: i64 = conn
            .query_row("SELECT count(*) FROM rollups_hourly", [], |r| r.get(0))
            .unwrap();
        assert_eq!(rollups, 0);
    }

    #[test]
    fn retention_below_limits_is_refused() {
        let cfg = RetentionConfig {
            raw: Duration::from_secs(3600),
            ..Default::default()
        };
        assert_eq!(cfg.problem().unwrap().0, "retention.raw");
        let cfg = RetentionConfig {
            rollups: Duration::from_secs(30 * 86_400),
            ..Default::default()
        };
        assert_eq!(cfg.problem().unwrap().0, "retention.rollups");
        assert!(RetentionConfig::default().problem().is_none());
    }
}
