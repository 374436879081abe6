//! Keeping a year of history small: hourly rollups of the metric samples,
//! hourly presence (availability) from the reports, and retention of raw
//! rows and old rollups.
//!
//! Rollups are made once per closed hour, agent by agent: each agent's
//! sample blocks of the hour, read through its index, are folded into one
//! `rollups_hourly` row per series. Blocks that arrive for an hour whose
//! rollup has already started (a spool delivered after an outage) are
//! merged on their own, found by a watermark on block ids: every block is
//! counted exactly once, and each step records its progress in its own
//! transaction. Folding every minute instead (as before) rewrote each
//! series' rollup row six times a minute: at 10,000 agents, a million
//! random-page upserts a minute. Presence works on the reports' receive
//! time, bucketing each report by when it was collected, as a 12-bit mask
//! of the hour's 5-minute slots.
//!
//! Retention never deletes a block that has not been rolled up. Every step
//! is one short writer job, so ingest interleaves with maintenance.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use rusqlite::{Connection, OptionalExtension, params};

use crate::store::{TaskError, samples};

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

/// Sample blocks looked at per late-merge job, and deleted per retention
/// job (a block is a report's samples, about 1 KB).
const BLOCK_CHUNK: i64 = 2_000;
/// Agents whose hour is rolled up in one job at most: at a report every
/// 10 s, 20 agents are 7,200 blocks, a few tens of ms (a job also ends
/// once it has read [`BLOCK_CHUNK`] blocks).
const AGENTS_PER_JOB: i64 = 20;
/// An hour is rolled up once it has been closed this long, so reports on
/// their way (in agents' send windows, in the writer's queue) are in it
/// rather than merged late.
const ROLLUP_LAG_MS: i64 = 5 * 60_000;

/// All hours before this one are rolled up.
const HOUR_DONE: &str = "rollup.hour_done";
/// Blocks up to this id have been looked at by `merge_late_blocks`.
const LATE_THROUGH: &str = "rollup.late_through_block";
/// While an hour is being rolled up: it counts blocks with smaller ids
/// (0: no hour is being rolled up).
const ROLLING_BELOW: &str = "rollup.rolling_below_block";
/// While an hour is being rolled up: agents up to this rowid are done.
const ROLLING_CURSOR: &str = "rollup.rolling_agent_rowid";
const WATERMARK_PRESENCE: &str = "presence.received_at";
/// When check catalogs were last pruned (`store::checks::prune_catalog`).
const CATALOG_PRUNED_AT: &str = "checks.catalog_pruned_at";
/// How often check catalogs are pruned: each time reads the whole catalog.
const CATALOG_PRUNE_EVERY_MS: i64 = 86_400_000;

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

/// A progress value; 0 when not recorded yet.
fn watermark(conn: &Connection, name: &str) -> rusqlite::Result<i64> {
    Ok(state(conn, name)?.unwrap_or(0))
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

/// Per (series, hour) aggregates of some blocks, to be merged into
/// `rollups_hourly`.
#[derive(Default)]
struct Fold(HashMap<(i64, i64), Agg>);

impl Fold {
    fn block(&mut self, at: i64, body: &[u8]) -> rusqlite::Result<u64> {
        let hour = at.div_euclid(HOUR_MS) * HOUR_MS;
        let samples = samples::decode(body)?;
        for &(series, value) in &samples {
            let agg = self.0.entry((series, hour)).or_insert(Agg {
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
        Ok(samples.len() as u64)
    }

    /// Merges into what `rollups_hourly` holds (min/max/avg/count), in key
    /// order so consecutive upserts land on the same b-tree pages.
    fn merge_into(self, conn: &Connection) -> rusqlite::Result<()> {
        let mut upsert = conn.prepare_cached(
            "INSERT INTO rollups_hourly (series_id, hour, min, avg, max, count) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT (series_id, hour) DO UPDATE SET
                min = min(min, excluded.min),
                max = max(max, excluded.max),
                avg = (avg * count + excluded.avg * excluded.count) / (count + excluded.count),
                count = count + excluded.count",
        )?;
        let mut hours: Vec<((i64, i64), Agg)> = self.0.into_iter().collect();
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
        Ok(())
    }
}

fn state(conn: &Connection, name: &str) -> rusqlite::Result<Option<i64>> {
    conn.prepare_cached("SELECT value FROM maintenance_state WHERE name = ?1")?
        .query_row([name], |r| r.get(0))
        .optional()
}

/// Merges blocks that arrived for hours whose rollup has already started
/// (a spool delivered after an outage; a report landing while its hour is
/// being rolled up), looking at the blocks added since the last call.
/// Blocks of later hours are left to their hour's rollup.
pub fn merge_late_blocks(conn: &Connection) -> Result<Step, TaskError> {
    let Some(hour_done) = first_hour(conn)? else {
        return Ok(Step::default());
    };
    let rolling = state(conn, ROLLING_BELOW)?.unwrap_or(0) != 0;
    let started = hour_done + if rolling { HOUR_MS } else { 0 };
    let from = watermark(conn, LATE_THROUGH)?;
    let mut fold = Fold::default();
    let mut last = from;
    let mut seen = 0i64;
    let mut rows = 0u64;
    {
        let mut stmt = conn.prepare_cached(
            "SELECT block_id, at, CASE WHEN at < ?2 THEN body END FROM sample_blocks
             WHERE block_id > ?1 ORDER BY block_id LIMIT ?3",
        )?;
        let mut q = stmt.query(params![from, started, BLOCK_CHUNK])?;
        while let Some(r) = q.next()? {
            last = r.get(0)?;
            seen += 1;
            if let Some(body) = r
                .get_ref(2)?
                .as_blob_or_null()
                .map_err(rusqlite::Error::from)?
            {
                rows += fold.block(r.get(1)?, body)?;
            }
        }
    }
    fold.merge_into(conn)?;
    set_watermark(conn, LATE_THROUGH, last)?;
    Ok(Step {
        rows,
        more: seen == BLOCK_CHUNK,
    })
}

/// Every sample taken before this time is in `rollups_hourly` (or about to
/// be merged as late); None before the first rollup.
pub fn rolled_up_before(conn: &Connection) -> rusqlite::Result<Option<i64>> {
    state(conn, HOUR_DONE)
}

/// The oldest hour not wholly rolled up; on the first call with data, the
/// hour of the first block.
fn first_hour(conn: &Connection) -> rusqlite::Result<Option<i64>> {
    if let Some(hour) = state(conn, HOUR_DONE)? {
        return Ok(Some(hour));
    }
    let first: Option<i64> = conn
        .prepare_cached("SELECT at FROM sample_blocks ORDER BY block_id LIMIT 1")?
        .query_row([], |r| r.get(0))
        .optional()?;
    let Some(at) = first else { return Ok(None) };
    let hour = at.div_euclid(HOUR_MS) * HOUR_MS;
    set_watermark(conn, HOUR_DONE, hour)?;
    Ok(Some(hour))
}

/// Rolls up the oldest closed hour, [`AGENTS_PER_JOB`] agents a call (fewer
/// when they have more than [`BLOCK_CHUNK`] blocks in it): each
/// agent's blocks of that hour, read through its index, folded and merged.
/// The blocks counted are those known when the hour's rollup started;
/// later ones are [`merge_late_blocks`]'s. Every step records where it got
/// to in the same transaction, so a crash resumes without counting twice.
pub fn roll_up_hour(conn: &Connection, now_ms: i64) -> Result<Step, TaskError> {
    let Some(hour) = first_hour(conn)? else {
        return Ok(Step::default());
    };
    let mut below = state(conn, ROLLING_BELOW)?.unwrap_or(0);
    if below == 0 {
        if now_ms - ROLLUP_LAG_MS < hour + HOUR_MS {
            return Ok(Step::default());
        }
        // Every block up to the late watermark has been looked at by
        // `merge_late_blocks` while this hour had not started: it is this
        // rollup's to count. Every later one will be looked at after.
        below = watermark(conn, LATE_THROUGH)? + 1;
        set_watermark(conn, ROLLING_BELOW, below)?;
        set_watermark(conn, ROLLING_CURSOR, 0)?;
    }
    let cursor = watermark(conn, ROLLING_CURSOR)?;
    let agents: Vec<(i64, String)> = conn
        .prepare_cached(
            "SELECT rowid, agent_id FROM agents WHERE rowid > ?1 ORDER BY rowid LIMIT ?2",
        )?
        .query_map(params![cursor, AGENTS_PER_JOB], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })?
        .collect::<rusqlite::Result<_>>()?;
    let mut fold = Fold::default();
    let mut rows = 0u64;
    // A job ends after the agent that takes it past BLOCK_CHUNK blocks, so
    // agents reporting every second (3,600 blocks an hour each) are one a
    // job, tens of ms, rather than 20 (the better part of a second).
    let mut done_through = cursor;
    let mut finished = 0usize;
    {
        let mut blocks = conn.prepare_cached(
            "SELECT at, body FROM sample_blocks
             WHERE agent_id = ?1 AND at >= ?2 AND at < ?3 AND block_id < ?4",
        )?;
        let mut read = 0i64;
        for (rowid, agent) in &agents {
            let mut q = blocks.query(params![agent, hour, hour + HOUR_MS, below])?;
            while let Some(r) = q.next()? {
                let body = r.get_ref(1)?.as_blob().map_err(rusqlite::Error::from)?;
                rows += fold.block(r.get(0)?, body)?;
                read += 1;
            }
            done_through = *rowid;
            finished += 1;
            if read >= BLOCK_CHUNK {
                break;
            }
        }
    }
    fold.merge_into(conn)?;
    if finished == agents.len() && agents.len() < AGENTS_PER_JOB as usize {
        set_watermark(conn, HOUR_DONE, hour + HOUR_MS)?;
        set_watermark(conn, ROLLING_BELOW, 0)?;
    } else {
        set_watermark(conn, ROLLING_CURSOR, done_through)?;
    }
    Ok(Step { rows, more: true })
}

/// The reports received in (?1, ?2], the oldest ?3.
const PRESENCE_READ: &str = "SELECT agent_id, collected_at, received_at FROM reports
     WHERE received_at > ?1 AND received_at <= ?2 ORDER BY received_at LIMIT ?3";

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
        let mut stmt = conn.prepare_cached(PRESENCE_READ)?;
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
        // Nearly every report falls in a slot already marked: writing the
        // row again would dirty a page per agent for nothing.
        if merged == old {
            continue;
        }
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
    let hour_done = state(conn, HOUR_DONE)?.unwrap_or(i64::MIN);
    let late_through = watermark(conn, LATE_THROUGH)?;
    let mut rows = 0u64;
    let mut more = false;
    // A block is rolled up once its hour is done and the late merge has
    // looked at it.
    let blocks_cutoff = raw_cutoff.min(hour_done);
    let blocks_old: Option<i64> = conn
        .prepare_cached("SELECT at FROM sample_blocks ORDER BY block_id LIMIT 1")?
        .query_row([], |r| r.get(0))
        .optional()?;
    if blocks_old.is_some_and(|at| at < blocks_cutoff) {
        let n = conn
            .prepare_cached(
                "DELETE FROM sample_blocks WHERE block_id IN
                    (SELECT block_id FROM sample_blocks WHERE block_id <= ?1 ORDER BY block_id LIMIT ?3)
                 AND at < ?2",
            )?
            .execute(params![late_through, blocks_cutoff, BLOCK_CHUNK])? as u64;
        rows += n;
        more |= n as i64 == BLOCK_CHUNK;
    }
    let mut chunk = |sql: &str, args: &[&dyn rusqlite::ToSql]| -> rusqlite::Result<()> {
        let n = conn.prepare_cached(sql)?.execute(args)? as u64;
        rows += n;
        more |= n as i64 == CHUNK;
        Ok(())
    };
    // Check blocks (like sample blocks) are appended in (nearly) time order, so the
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
    if front_is_old("check_blocks")? {
        chunk(
            "DELETE FROM check_blocks WHERE block_id IN
                (SELECT block_id FROM check_blocks ORDER BY block_id LIMIT ?2) AND at < ?1",
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
    // After the check blocks' step, so the entries of blocks it just
    // removed can go in the same pass.
    if now_ms - watermark(conn, CATALOG_PRUNED_AT)? >= CATALOG_PRUNE_EVERY_MS {
        let n = crate::store::checks::prune_catalog(conn, raw_cutoff, CHUNK)?;
        rows += n;
        if (n as i64) < CHUNK {
            set_watermark(conn, CATALOG_PRUNED_AT, now_ms)?;
        } else {
            more = true;
        }
    }
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
    // Per phase: jobs run and wall time (queueing behind ingest batches
    // included), for the debug log: each job holds the writer while it runs.
    let mut phases = [(0u32, Duration::ZERO); 4];
    let mut timed = |phase: usize, started: Instant, step: &Step| {
        phases[phase].0 += 1;
        phases[phase].1 += started.elapsed();
        total.rows += step.rows;
    };
    loop {
        loop {
            let started = Instant::now();
            let step = writer.run(merge_late_blocks).await?;
            timed(0, started, &step);
            if !step.more {
                break;
            }
        }
        let started = Instant::now();
        let step = writer.run(move |c| roll_up_hour(c, now_ms)).await?;
        timed(1, started, &step);
        if !step.more {
            break;
        }
    }
    loop {
        let started = Instant::now();
        let step = writer.run(move |c| roll_up_presence(c, now_ms)).await?;
        timed(2, started, &step);
        if !step.more {
            break;
        }
    }
    loop {
        let retention = retention.clone();
        let started = Instant::now();
        let step = writer
            .run(move |c| enforce_retention(c, now_ms, &retention))
            .await?;
        timed(3, started, &step);
        if !step.more {
            break;
        }
    }
    let [late, hour, presence, retained] = phases.map(|(jobs, d)| (jobs, d.as_millis() as u64));
    tracing::debug!(
        late_jobs = late.0,
        late_ms = late.1,
        rollup_jobs = hour.0,
        rollup_ms = hour.1,
        presence_jobs = presence.0,
        presence_ms = presence.1,
        retention_jobs = retained.0,
        retention_ms = retained.1,
        "maintenance phases"
    );
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db() -> (tempfile::TempDir, Connection) {
        let (dir, conn) = crate::store::test_db();
        conn.execute(
            "INSERT INTO series (series_id, agent_id, name, labels) VALUES (1, 'a', 'cpu', '{}')",
            [],
        )
        .unwrap();
        (dir, conn)
    }

    fn block(conn: &Connection, agent: &str, series: i64, at: i64, value: f64) {
        samples::insert_block(conn, agent, at, at, &[(series, value)]).unwrap();
    }

    fn sample(conn: &Connection, at: i64, value: f64) {
        block(conn, "a", 1, at, value);
    }

    fn rollup_of(conn: &Connection, series: i64, hour: i64) -> Option<(f64, f64, f64, i64)> {
        conn.query_row(
            "SELECT min, avg, max, count FROM rollups_hourly WHERE series_id = ?1 AND hour = ?2",
            [series, hour],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .optional()
        .unwrap()
    }

    fn rollup(conn: &Connection, hour: i64) -> (f64, f64, f64, i64) {
        rollup_of(conn, 1, hour).expect("a rollup row")
    }

    /// What `run_pass` does, on one connection.
    fn roll(conn: &Connection, now_ms: i64) {
        loop {
            while merge_late_blocks(conn).unwrap().more {}
            if !roll_up_hour(conn, now_ms).unwrap().more {
                break;
            }
        }
    }

    #[test]
    fn an_hour_is_rolled_up_once_closed_and_late_samples_merge_into_it_once() {
        let (_d, conn) = db();
        let h = 100 * HOUR_MS;
        sample(&conn, h + 1, 10.0);
        sample(&conn, h + 2, 20.0);
        sample(&conn, h + HOUR_MS, 5.0);
        roll(&conn, h + HOUR_MS + ROLLUP_LAG_MS - 1);
        assert_eq!(
            rollup_of(&conn, 1, h),
            None,
            "the hour has not been closed long enough"
        );
        roll(&conn, h + HOUR_MS + ROLLUP_LAG_MS);
        assert_eq!(rollup(&conn, h), (10.0, 15.0, 20.0, 2));
        assert_eq!(rollup_of(&conn, 1, h + HOUR_MS), None);
        // A late sample for the first hour, then passes with nothing new.
        sample(&conn, h + 3, 60.0);
        for _ in 0..3 {
            roll(&conn, h + HOUR_MS + ROLLUP_LAG_MS);
        }
        assert_eq!(rollup(&conn, h), (10.0, 30.0, 60.0, 3));
        roll(&conn, h + 2 * HOUR_MS + ROLLUP_LAG_MS);
        assert_eq!(rollup(&conn, h + HOUR_MS), (5.0, 5.0, 5.0, 1));
        assert_eq!(
            rolled_up_before(&conn).unwrap(),
            Some(h + 2 * HOUR_MS),
            "readers know where raw samples begin to matter"
        );
        // Retention may empty the table; block ids still never go back, so
        // the next late block is still seen.
        conn.execute("DELETE FROM sample_blocks", []).unwrap();
        sample(&conn, h + 4, 1.0);
        roll(&conn, h + 2 * HOUR_MS + ROLLUP_LAG_MS);
        assert_eq!(rollup(&conn, h), (1.0, 22.75, 60.0, 4));
    }

    /// Agents `agent-000`.. with one series each, ids 100...
    fn agents_with_a_series(conn: &Connection, agents: i64) {
        for i in 0..agents {
            let agent = format!("agent-{i:03}");
            conn.execute(
                "INSERT INTO agents (agent_id, enrolled_at, enrolled_with_token, cert_serial, cert_sha256)
                 VALUES (?1, 0, 't', 's', 'h')",
                [&agent],
            )
            .unwrap();
            conn.execute(
                "INSERT INTO series (series_id, agent_id, name, labels) VALUES (?1, ?2, 'cpu', '{}')",
                params![100 + i, agent],
            )
            .unwrap();
        }
    }

    #[test]
    fn a_block_arriving_while_its_hour_is_rolled_up_counts_once_whichever_agent() {
        let (_d, conn) = db();
        let agents = AGENTS_PER_JOB + 5;
        agents_with_a_series(&conn, agents);
        let h = 50 * HOUR_MS;
        let now = h + HOUR_MS + ROLLUP_LAG_MS;
        for i in 0..agents {
            block(&conn, &format!("agent-{i:03}"), 100 + i, h + 10, 1.0);
        }
        while merge_late_blocks(&conn).unwrap().more {}
        // The first job rolls up the first agents; then one block arrives
        // for an agent already done and one for an agent still to come.
        roll_up_hour(&conn, now).unwrap();
        assert!(rollup_of(&conn, 100, h).is_some());
        assert!(rollup_of(&conn, 100 + agents - 1, h).is_none());
        block(&conn, "agent-000", 100, h + 20, 3.0);
        block(
            &conn,
            &format!("agent-{:03}", agents - 1),
            100 + agents - 1,
            h + 20,
            3.0,
        );
        // A collector restarted here carries on from the recorded state.
        roll(&conn, now);
        roll(&conn, now);
        for i in [0, 1, agents - 1] {
            let want = if i == 1 { 1 } else { 2 };
            assert_eq!(rollup_of(&conn, 100 + i, h).unwrap().3, want, "agent {i}");
        }
    }

    #[test]
    fn an_agent_with_a_chunk_of_blocks_in_the_hour_is_a_rollup_job_of_its_own() {
        let (_d, conn) = db();
        agents_with_a_series(&conn, 3);
        let h = 60 * HOUR_MS;
        // Agent 0 reports every second: more blocks than one job reads.
        for i in 0..BLOCK_CHUNK {
            block(&conn, "agent-000", 100, h + i * 1000, 1.0);
        }
        block(&conn, "agent-001", 101, h + 5, 2.0);
        block(&conn, "agent-002", 102, h + 5, 3.0);
        let now = h + HOUR_MS + ROLLUP_LAG_MS;
        while merge_late_blocks(&conn).unwrap().more {}
        assert!(roll_up_hour(&conn, now).unwrap().more);
        assert_eq!(rollup_of(&conn, 100, h).unwrap().3, BLOCK_CHUNK);
        assert_eq!(
            rollup_of(&conn, 101, h),
            None,
            "the job ended with the agent that filled it"
        );
        roll(&conn, now);
        assert_eq!(
            rollup_of(&conn, 100, h).unwrap().3,
            BLOCK_CHUNK,
            "agent 0 counted once"
        );
        assert_eq!(rollup_of(&conn, 101, h).unwrap(), (2.0, 2.0, 2.0, 1));
        assert_eq!(rollup_of(&conn, 102, h).unwrap(), (3.0, 3.0, 3.0, 1));
        assert_eq!(rolled_up_before(&conn).unwrap(), Some(h + HOUR_MS));
    }

    #[test]
    fn samples_from_before_blocks_are_moved_into_blocks_and_counted_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.db");
        let h = 200 * HOUR_MS;
        {
            // A database as the previous build left it: version 8, samples
            // as rows, the first two rolled up by the minute-ly pass.
            let mut conn = Connection::open(&path).unwrap();
            let tx = conn.transaction().unwrap();
            for script in &crate::store::MIGRATIONS[..8] {
                tx.execute_batch(script).unwrap();
            }
            tx.pragma_update(None, "user_version", 8).unwrap();
            tx.execute_batch(
                "INSERT INTO agents (agent_id, enrolled_at, enrolled_with_token, cert_serial, cert_sha256)
                    VALUES ('a', 0, 't', 's', 'h');
                 INSERT INTO series (series_id, agent_id, name, labels) VALUES (1, 'a', 'cpu', '{}'), (2, 'a', 'mem', '{}');",
            )
            .unwrap();
            for (series, at, value, seq) in [
                (1, h + 1, 10.0, 1),
                (2, h + 1, 50.0, 1),
                (1, h + 2, 20.0, 2),
                (1, h + 3, 30.0, 3),
            ] {
                tx.execute(
                    "INSERT INTO samples (series_id, at, value, sequence) VALUES (?1, ?2, ?3, ?4)",
                    params![series, at, value, seq],
                )
                .unwrap();
            }
            tx.execute_batch(
                &format!("INSERT INTO rollups_hourly VALUES (1, {h}, 10, 10, 10, 1), (2, {h}, 50, 50, 50, 1);
                 INSERT INTO maintenance_state VALUES ('rollup.samples_rowid', 2);"),
            )
            .unwrap();
            tx.commit().unwrap();
        }
        let conn = crate::store::open(&path).unwrap();
        let blocks: Vec<(i64, i64, i64)> = conn
            .prepare("SELECT sequence, at, samples FROM sample_blocks ORDER BY block_id")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(blocks, vec![(1, h + 1, 2), (2, h + 2, 1), (3, h + 3, 1)]);
        let points = samples::points(&conn, 1, h, h + HOUR_MS).unwrap();
        let values: Vec<f64> = points.iter().map(|p| p.value).collect();
        assert_eq!(values, vec![10.0, 20.0, 30.0]);
        // The two samples the old pass had not reached were folded in by
        // the migration; later passes add nothing twice.
        assert_eq!(rollup(&conn, h), (10.0, 20.0, 30.0, 3));
        roll(&conn, h + 3 * HOUR_MS);
        assert_eq!(rollup(&conn, h), (10.0, 20.0, 30.0, 3));
        assert_eq!(rollup_of(&conn, 2, h).unwrap().3, 1);
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
        // Reports in slots already marked change no presence row: the
        // pass writes its watermark alone.
        report(5, h + 3_000, h + 3 * HOUR_MS);
        report(6, h + 11 * SLOT_MS + 1, h + 3 * HOUR_MS + 1);
        let before = conn.total_changes();
        roll_up_presence(&conn, h + 4 * HOUR_MS).unwrap();
        assert_eq!(conn.total_changes() - before, 1);
        assert_eq!(seen(&conn), 3);
    }

    #[test]
    fn presence_reads_reports_through_its_index_alone() {
        let (_d, conn) = db();
        let plan: String = conn
            .query_row(
                &format!("EXPLAIN QUERY PLAN {PRESENCE_READ}"),
                params![1, 2, 3],
                |r| r.get(3),
            )
            .unwrap();
        assert!(
            plan.contains("COVERING INDEX reports_by_received"),
            "{plan}"
        );
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
            .query_row("SELECT count(*) FROM sample_blocks", [], |r| r.get(0))
            .unwrap();
        assert_eq!(samples, 1, "a sample not rolled up is never deleted");
        roll(&conn, now);
        roll_up_presence(&conn, now).unwrap();
        enforce_retention(&conn, now, &cfg).unwrap();
        let (samples, reports, pruned): (i64, i64, i64) = conn
            .query_row(
                "SELECT (SELECT count(*) FROM sample_blocks), (SELECT count(*) FROM reports),
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
    fn retention_removes_old_check_blocks_and_keeps_recent_ones() {
        let (_d, conn) = db();
        let day = 86_400_000;
        let now = 100 * day;
        let result = |status: &str| crate::store::checks::CheckResult {
            check_id: "av".into(),
            status: status.into(),
            ..Default::default()
        };
        crate::store::checks::insert_block(&conn, "a", 1, day, &[result("critical")]).unwrap();
        crate::store::checks::insert_block(&conn, "a", 2, now - day, &[result("ok")]).unwrap();
        enforce_retention(&conn, now, &RetentionConfig::default()).unwrap();
        let kept: Vec<i64> = conn
            .prepare("SELECT sequence FROM check_blocks")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(kept, [2]);
        let latest = crate::store::checks::latest_before(&conn, "a", "av", now).unwrap();
        assert_eq!(latest.unwrap().result.status, "ok");
        // Before the kept block there is nothing left to find.
        let gone = crate::store::checks::latest_before(&conn, "a", "av", now - day).unwrap();
        assert_eq!(gone, None);
    }

    #[test]
    fn retention_forgets_checks_an_agent_stopped_reporting_once_their_blocks_are_gone() {
        let (_d, conn) = db();
        let day = 86_400_000;
        let now = 100 * day;
        let result = |id: &str| crate::store::checks::CheckResult {
            check_id: id.into(),
            status: "ok".into(),
            ..Default::default()
        };
        let catalog = |conn: &Connection| -> Vec<String> {
            conn.prepare("SELECT check_id FROM agent_checks ORDER BY check_id")
                .unwrap()
                .query_map([], |r| r.get(0))
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap()
        };
        crate::store::test_agent(&conn, "b");
        // "retired" and "old" were last reported 90 days ago, "current" yesterday.
        let checks = crate::store::checks::insert_block;
        checks(&conn, "a", 1, 10 * day, &[result("retired")]).unwrap();
        checks(&conn, "a", 2, now - day, &[result("current")]).unwrap();
        checks(&conn, "b", 1, 10 * day, &[result("old")]).unwrap();
        checks(&conn, "b", 2, now - day, &[result("current")]).unwrap();
        let all = ["current", "current", "old", "retired"];
        assert_eq!(catalog(&conn), all);
        // While an old block is still stored, its entry stays (the blocks'
        // own pruning goes from the front and may not have reached it).
        let cutoff = now - RetentionConfig::default().raw.as_millis() as i64;
        assert_eq!(
            crate::store::checks::prune_catalog(&conn, cutoff, CHUNK).unwrap(),
            0
        );
        assert_eq!(catalog(&conn), all);
        enforce_retention(&conn, now, &RetentionConfig::default()).unwrap();
        assert_eq!(catalog(&conn), ["current", "current"]);
        // A late old result lands behind newer blocks: the blocks' pruning
        // waits for the front to reach it, and its entry stays meanwhile.
        checks(&conn, "b", 3, 10 * day, &[result("late")]).unwrap();
        enforce_retention(&conn, now + day, &RetentionConfig::default()).unwrap();
        assert_eq!(catalog(&conn), ["current", "current", "late"]);
        let found = crate::store::checks::latest_before(&conn, "b", "late", now).unwrap();
        assert_eq!(
            found.map(|t| t.at),
            Some(10 * day),
            "a stored result stays findable"
        );
        // Once it is gone the entry goes, at the next daily pruning (it
        // reads the whole catalog, so not every pass).
        conn.execute("DELETE FROM check_blocks WHERE sequence = 3", [])
            .unwrap();
        enforce_retention(&conn, now + day + 1, &RetentionConfig::default()).unwrap();
        assert_eq!(catalog(&conn), ["current", "current", "late"]);
        enforce_retention(&conn, now + 2 * day, &RetentionConfig::default()).unwrap();
        assert_eq!(catalog(&conn), ["current", "current"]);
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
