//! Storage: the SQLite schema and its migrations, connection setup, and the
//! narrow interface the rest of the collector uses (reads here and in
//! `queries`, all writes of the running collector through `writer`).
//!
//! Times are stored as UTC milliseconds since the epoch (INTEGER).

pub mod checks;
pub mod incident_actions;
pub mod incidents;
pub mod queries;
pub mod samples;
mod series_cache;
pub mod writer;

use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

pub use queries::*;
pub use writer::{Stored, TaskError, WriteError, Writer, WriterHandle};

/// A storage failure, with what was being done.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    // The SQLite error is part of the message, not a `source`, so chains
    // printed with `{:#}` do not repeat it.
    #[error("{what}: {error}")]
    Sqlite {
        what: &'static str,
        error: rusqlite::Error,
    },
    #[error("cannot create data directory {path}: {source}")]
    Dir {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error(
        "the database at {path} has schema version {found}, newer than this build knows ({known}); upgrade xunjian"
    )]
    TooNew {
        path: std::path::PathBuf,
        found: i64,
        known: i64,
    },
    #[error("{0}")]
    NotFound(String),
}

pub(crate) fn sql(what: &'static str) -> impl FnOnce(rusqlite::Error) -> StoreError {
    move |error| StoreError::Sqlite { what, error }
}

/// Schema migrations, applied in order; `PRAGMA user_version` holds how many
/// have run. Append only: never edit a released migration.
pub(crate) const MIGRATIONS: &[&str] = &[
    // 1: foundation.
    r#"
    CREATE TABLE agents (
        agent_id TEXT PRIMARY KEY,
        hostname TEXT NOT NULL DEFAULT '',
        enrolled_at INTEGER NOT NULL,
        enrolled_with_token TEXT NOT NULL,
        cert_serial TEXT NOT NULL,
        cert_sha256 TEXT NOT NULL,
        agent_version TEXT NOT NULL DEFAULT '',
        os_name TEXT NOT NULL DEFAULT '',
        os_version TEXT NOT NULL DEFAULT '',
        kernel_version TEXT NOT NULL DEFAULT '',
        arch TEXT NOT NULL DEFAULT '',
        inventory_sha256 TEXT,
        last_seen_at INTEGER,
        last_report_at INTEGER,
        last_sequence INTEGER NOT NULL DEFAULT 0,
        clock_skew_ms INTEGER,
        spool_pending_reports INTEGER NOT NULL DEFAULT 0,
        spool_dropped_reports_total INTEGER NOT NULL DEFAULT 0,
        spool_dropped_bytes_total INTEGER NOT NULL DEFAULT 0,
        revoked_at INTEGER
    );
    CREATE TABLE reports (
        agent_id TEXT NOT NULL REFERENCES agents(agent_id),
        sequence INTEGER NOT NULL,
        collected_at INTEGER NOT NULL,
        received_at INTEGER NOT NULL,
        bytes INTEGER NOT NULL,
        sections INTEGER NOT NULL,
        run_now_request_id TEXT NOT NULL DEFAULT '',
        PRIMARY KEY (agent_id, sequence)
    ) WITHOUT ROWID;
    CREATE TABLE series (
        series_id INTEGER PRIMARY KEY,
        agent_id TEXT NOT NULL REFERENCES agents(agent_id),
        name TEXT NOT NULL,
        labels TEXT NOT NULL,
        UNIQUE (agent_id, name, labels)
    );
    CREATE TABLE samples (
        series_id INTEGER NOT NULL REFERENCES series(series_id),
        at INTEGER NOT NULL,
        value REAL NOT NULL,
        sequence INTEGER NOT NULL
    );
    CREATE INDEX samples_by_series_time ON samples (series_id, at);
    CREATE VIEW metric_samples AS
        SELECT s.agent_id, s.name, s.labels, m.at, m.value, m.sequence
        FROM samples m JOIN series s USING (series_id);
    CREATE TABLE check_results (
        agent_id TEXT NOT NULL REFERENCES agents(agent_id),
        sequence INTEGER NOT NULL,
        at INTEGER NOT NULL,
        check_id TEXT NOT NULL,
        title TEXT NOT NULL,
        status TEXT NOT NULL CHECK (status IN ('ok', 'warning', 'critical', 'unknown')),
        value TEXT NOT NULL,
        threshold TEXT NOT NULL,
        evidence TEXT NOT NULL,
        reason TEXT NOT NULL
    );
    CREATE INDEX check_results_by_agent ON check_results (agent_id, check_id, at);
    CREATE TABLE inventory_snapshots (
        snapshot_id INTEGER PRIMARY KEY,
        agent_id TEXT NOT NULL REFERENCES agents(agent_id),
        sha256 TEXT NOT NULL,
        collected_at INTEGER NOT NULL,
        stored_at INTEGER NOT NULL,
        body TEXT NOT NULL
    );
    CREATE INDEX inventory_by_agent ON inventory_snapshots (agent_id, collected_at);
    CREATE TABLE enrollment_tokens (
        token_id TEXT PRIMARY KEY,
        secret_sha256 TEXT NOT NULL UNIQUE,
        created_at INTEGER NOT NULL,
        expires_at INTEGER NOT NULL,
        uses_allowed INTEGER NOT NULL,
        uses INTEGER NOT NULL DEFAULT 0,
        created_by TEXT NOT NULL,
        note TEXT NOT NULL DEFAULT ''
    );
    CREATE TABLE revocations (
        agent_id TEXT NOT NULL REFERENCES agents(agent_id),
        cert_sha256 TEXT NOT NULL,
        revoked_at INTEGER NOT NULL,
        revoked_by TEXT NOT NULL,
        reason TEXT NOT NULL
    );
    CREATE TABLE audit_log (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        at INTEGER NOT NULL,
        actor TEXT NOT NULL,
        action TEXT NOT NULL,
        target TEXT NOT NULL,
        detail TEXT NOT NULL
    );
    CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
        BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END;
    CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
        BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END;
    "#,
    // 2: configuration change records (CMDB): one row per changed fact
    // between two consecutive inventory snapshots of a host.
    r#"
    CREATE TABLE config_changes (
        change_id INTEGER PRIMARY KEY,
        agent_id TEXT NOT NULL REFERENCES agents(agent_id),
        snapshot_id INTEGER NOT NULL REFERENCES inventory_snapshots(snapshot_id),
        collected_at INTEGER NOT NULL,
        path TEXT NOT NULL,
        before TEXT NOT NULL,
        after TEXT NOT NULL
    );
    CREATE INDEX config_changes_by_agent ON config_changes (agent_id, collected_at);
    CREATE INDEX config_changes_by_time ON config_changes (collected_at);
    "#,
    // 3: incidents raised by the rules, and their append-only history.
    r#"
    CREATE TABLE incidents (
        incident_id INTEGER PRIMARY KEY,
        rule_id TEXT NOT NULL,
        agent_id TEXT NOT NULL REFERENCES agents(agent_id),
        incident_key TEXT NOT NULL,
        severity TEXT NOT NULL CHECK (severity IN ('I', 'II', 'III', 'IV')),
        title TEXT NOT NULL,
        description TEXT NOT NULL,
        state TEXT NOT NULL CHECK (state IN ('open', 'acknowledged', 'resolved', 'closed')),
        opened_at INTEGER NOT NULL,
        acknowledged_at INTEGER,
        resolved_at INTEGER,
        closed_at INTEGER,
        last_seen_at INTEGER NOT NULL,
        first_value TEXT NOT NULL,
        last_value TEXT NOT NULL,
        peak_value REAL,
        threshold TEXT NOT NULL,
        occurrences INTEGER NOT NULL DEFAULT 1,
        reopen_count INTEGER NOT NULL DEFAULT 0,
        flapping INTEGER NOT NULL DEFAULT 0,
        suppressed INTEGER NOT NULL DEFAULT 0,
        assignee TEXT NOT NULL DEFAULT '',
        root_cause TEXT NOT NULL DEFAULT '',
        actions_taken TEXT NOT NULL DEFAULT '',
        resolution TEXT NOT NULL DEFAULT ''
    );
    CREATE INDEX incidents_by_key ON incidents (incident_key, opened_at);
    CREATE INDEX incidents_by_state ON incidents (state, opened_at);
    CREATE TABLE incident_events (
        event_id INTEGER PRIMARY KEY AUTOINCREMENT,
        incident_id INTEGER NOT NULL REFERENCES incidents(incident_id),
        at INTEGER NOT NULL,
        actor TEXT NOT NULL,
        action TEXT NOT NULL,
        detail TEXT NOT NULL
    );
    CREATE INDEX incident_events_by_incident ON incident_events (incident_id, at);
    CREATE TRIGGER incident_events_no_update BEFORE UPDATE ON incident_events
        BEGIN SELECT RAISE(ABORT, 'incident_events is append-only'); END;
    CREATE TRIGGER incident_events_no_delete BEFORE DELETE ON incident_events
        BEGIN SELECT RAISE(ABORT, 'incident_events is append-only'); END;
    "#,
    // 4: who acknowledged and who resolved an incident.
    r#"
    ALTER TABLE incidents ADD COLUMN acknowledged_by TEXT NOT NULL DEFAULT '';
    ALTER TABLE incidents ADD COLUMN resolved_by TEXT NOT NULL DEFAULT '';
    "#,
    // 5: the incident's SLA clock (JSON of `sla::SlaClock`: due times and
    // which warnings/breaches were already recorded).
    r#"
    ALTER TABLE incidents ADD COLUMN sla_clock TEXT NOT NULL DEFAULT '';
    "#,
    // 6: silences and maintenance windows (a maintenance window is a silence
    // that starts later). Matching incidents are recorded but suppressed.
    r#"
    CREATE TABLE silences (
        silence_id INTEGER PRIMARY KEY,
        agent_id TEXT REFERENCES agents(agent_id),
        rule_id TEXT,
        starts_at INTEGER NOT NULL,
        ends_at INTEGER NOT NULL,
        reason TEXT NOT NULL,
        created_by TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        removed_at INTEGER,
        CHECK (ends_at > starts_at)
    );
    "#,
    // 7: operator-assigned host labels and groups (rule scopes, silences).
    r#"
    CREATE TABLE host_labels (
        agent_id TEXT NOT NULL REFERENCES agents(agent_id),
        name TEXT NOT NULL,
        value TEXT NOT NULL,
        PRIMARY KEY (agent_id, name)
    ) WITHOUT ROWID;
    CREATE TABLE host_groups (
        agent_id TEXT NOT NULL REFERENCES agents(agent_id),
        group_name TEXT NOT NULL,
        PRIMARY KEY (agent_id, group_name)
    ) WITHOUT ROWID;
    ALTER TABLE silences ADD COLUMN group_name TEXT;
    "#,
    // 8: history for reports (hourly rollups, presence), inspections and
    // self-checks, and the evidence chain.
    r#"
    -- min/avg/max of each series per UTC hour; kept far longer than samples.
    CREATE TABLE rollups_hourly (
        series_id INTEGER NOT NULL REFERENCES series(series_id),
        hour INTEGER NOT NULL,
        min REAL NOT NULL,
        avg REAL NOT NULL,
        max REAL NOT NULL,
        count INTEGER NOT NULL,
        PRIMARY KEY (series_id, hour)
    ) WITHOUT ROWID;
    CREATE INDEX rollups_by_hour ON rollups_hourly (hour);
    -- How many of the hour's twelve 5-minute slots had at least one report
    -- from the host (availability).
    CREATE TABLE presence_hourly (
        agent_id TEXT NOT NULL REFERENCES agents(agent_id),
        hour INTEGER NOT NULL,
        slots_seen INTEGER NOT NULL CHECK (slots_seen BETWEEN 0 AND 12),
        -- bit n = slot n seen; lets late reports merge into an hour
        slots_mask INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (agent_id, hour)
    ) WITHOUT ROWID;
    CREATE INDEX presence_by_hour ON presence_hourly (hour);
    -- Watermarks of the maintenance jobs (rollups done up to, ...).
    CREATE TABLE maintenance_state (
        name TEXT PRIMARY KEY,
        value INTEGER NOT NULL
    );
    CREATE INDEX reports_by_received ON reports (received_at);
    CREATE INDEX reports_by_run_now ON reports (run_now_request_id) WHERE run_now_request_id != '';
    -- An inspection reads the check results of one answering report.
    CREATE INDEX check_results_by_report ON check_results (agent_id, sequence);
    -- Highest sequence whose report row retention removed: replays of it
    -- or anything older are duplicates.
    ALTER TABLE agents ADD COLUMN reports_pruned_through INTEGER NOT NULL DEFAULT 0;
    -- Samples dropped because the agent created more new series in an hour
    -- than `server.max_new_series_per_hour` allows.
    ALTER TABLE agents ADD COLUMN series_refused_total INTEGER NOT NULL DEFAULT 0;
    -- One run of an inspection plan or a self-check. Requested by the
    -- scheduler or an operator (`xunjian inspect run`), carried out by the
    -- running collector, filed when every host answered or the wait ran out.
    CREATE TABLE inspection_runs (
        run_id INTEGER PRIMARY KEY,
        kind TEXT NOT NULL CHECK (kind IN ('inspection', 'selfcheck')),
        plan TEXT NOT NULL,
        full_fleet INTEGER NOT NULL DEFAULT 0,
        scope TEXT NOT NULL,
        request_id TEXT NOT NULL UNIQUE,
        requested_by TEXT NOT NULL,
        requested_at INTEGER NOT NULL,
        started_at INTEGER,
        filed_at INTEGER,
        state TEXT NOT NULL CHECK (state IN ('requested', 'running', 'filed', 'failed')),
        failure TEXT NOT NULL DEFAULT '',
        hosts_in_scope INTEGER NOT NULL DEFAULT 0,
        hosts_inspected INTEGER NOT NULL DEFAULT 0,
        hosts_abnormal INTEGER NOT NULL DEFAULT 0,
        hosts_not_reached INTEGER NOT NULL DEFAULT 0,
        -- canonical JSON of the filed record; its SHA-256 is in the chain
        body TEXT
    );
    CREATE INDEX inspection_runs_by_time ON inspection_runs (requested_at);
    CREATE TRIGGER inspection_runs_filed_is_final BEFORE UPDATE ON inspection_runs
        WHEN OLD.state IN ('filed', 'failed')
        BEGIN SELECT RAISE(ABORT, 'a filed inspection run cannot change'); END;
    CREATE TRIGGER inspection_runs_no_delete BEFORE DELETE ON inspection_runs
        BEGIN SELECT RAISE(ABORT, 'inspection_runs is append-only'); END;
    -- One host's record in a run; 'not_inspected' when it did not answer.
    CREATE TABLE inspection_records (
        record_id INTEGER PRIMARY KEY,
        run_id INTEGER NOT NULL REFERENCES inspection_runs(run_id),
        agent_id TEXT NOT NULL REFERENCES agents(agent_id),
        hostname TEXT NOT NULL,
        verdict TEXT NOT NULL CHECK (verdict IN ('normal', 'abnormal', 'unknown', 'not_inspected')),
        measured_at INTEGER,
        last_seen_at INTEGER,
        UNIQUE (run_id, agent_id)
    );
    CREATE TABLE inspection_items (
        record_id INTEGER NOT NULL REFERENCES inspection_records(record_id),
        item_id TEXT NOT NULL,
        title TEXT NOT NULL,
        value TEXT NOT NULL,
        threshold TEXT NOT NULL,
        verdict TEXT NOT NULL CHECK (verdict IN ('normal', 'abnormal', 'unknown')),
        measured_at INTEGER NOT NULL,
        detail TEXT NOT NULL,
        incident_id INTEGER REFERENCES incidents(incident_id),
        PRIMARY KEY (record_id, item_id)
    ) WITHOUT ROWID;
    CREATE TRIGGER inspection_records_no_update BEFORE UPDATE ON inspection_records
        BEGIN SELECT RAISE(ABORT, 'inspection_records is append-only'); END;
    CREATE TRIGGER inspection_records_no_delete BEFORE DELETE ON inspection_records
        BEGIN SELECT RAISE(ABORT, 'inspection_records is append-only'); END;
    CREATE TRIGGER inspection_items_no_update BEFORE UPDATE ON inspection_items
        BEGIN SELECT RAISE(ABORT, 'inspection_items is append-only'); END;
    CREATE TRIGGER inspection_items_no_delete BEFORE DELETE ON inspection_items
        BEGIN SELECT RAISE(ABORT, 'inspection_items is append-only'); END;
    -- The evidence chain: entry n holds the SHA-256 of a filed record's
    -- canonical encoding and of entry n-1. Heads are signed with the
    -- collector's Ed25519 key.
    CREATE TABLE evidence_chain (
        seq INTEGER PRIMARY KEY,
        appended_at INTEGER NOT NULL,
        kind TEXT NOT NULL,
        record_ref TEXT NOT NULL,
        record_sha256 TEXT NOT NULL,
        prev_sha256 TEXT NOT NULL,
        entry_sha256 TEXT NOT NULL UNIQUE
    );
    CREATE TABLE evidence_heads (
        head_id INTEGER PRIMARY KEY,
        seq INTEGER NOT NULL REFERENCES evidence_chain(seq),
        entry_sha256 TEXT NOT NULL,
        signed_at INTEGER NOT NULL,
        public_key TEXT NOT NULL,
        signature TEXT NOT NULL
    );
    CREATE TRIGGER evidence_chain_no_update BEFORE UPDATE ON evidence_chain
        BEGIN SELECT RAISE(ABORT, 'evidence_chain is append-only'); END;
    CREATE TRIGGER evidence_chain_no_delete BEFORE DELETE ON evidence_chain
        BEGIN SELECT RAISE(ABORT, 'evidence_chain is append-only'); END;
    CREATE TRIGGER evidence_heads_no_update BEFORE UPDATE ON evidence_heads
        BEGIN SELECT RAISE(ABORT, 'evidence_heads is append-only'); END;
    CREATE TRIGGER evidence_heads_no_delete BEFORE DELETE ON evidence_heads
        BEGIN SELECT RAISE(ABORT, 'evidence_heads is append-only'); END;
    -- Reports produced on a schedule, so each period is made once.
    CREATE TABLE reports_generated (
        kind TEXT NOT NULL,
        period TEXT NOT NULL,
        lang TEXT NOT NULL,
        format TEXT NOT NULL,
        path TEXT NOT NULL,
        sha256 TEXT NOT NULL,
        generated_at INTEGER NOT NULL,
        PRIMARY KEY (kind, period, lang, format)
    );
    "#,
    // 9: samples as blocks (see `samples`); `after_migration` moves the old
    // rows into them.
    r#"
    -- AUTOINCREMENT: block ids never go back, even when retention has
    -- emptied the table, so maintenance can track them by watermark.
    CREATE TABLE sample_blocks (
        block_id INTEGER PRIMARY KEY AUTOINCREMENT,
        agent_id TEXT NOT NULL REFERENCES agents(agent_id),
        sequence INTEGER NOT NULL,
        at INTEGER NOT NULL,
        samples INTEGER NOT NULL,
        body BLOB NOT NULL
    );
    CREATE INDEX sample_blocks_by_agent ON sample_blocks (agent_id, at);
    "#,
    // 10: check results as blocks and each agent's catalog of check ids
    // (see `checks`); `after_migration` moves the old rows into them.
    r#"
    CREATE TABLE check_blocks (
        block_id INTEGER PRIMARY KEY,
        agent_id TEXT NOT NULL REFERENCES agents(agent_id),
        sequence INTEGER NOT NULL,
        at INTEGER NOT NULL,
        results INTEGER NOT NULL,
        body BLOB NOT NULL
    );
    CREATE INDEX check_blocks_by_agent ON check_blocks (agent_id, at, sequence);
    -- Every stored result of a check lies in first_at <= at < last_at +
    -- checks::CATALOG_LAG_MS.
    CREATE TABLE agent_checks (
        agent_id TEXT NOT NULL REFERENCES agents(agent_id),
        check_id TEXT NOT NULL,
        first_at INTEGER NOT NULL,
        last_at INTEGER NOT NULL,
        PRIMARY KEY (agent_id, check_id)
    ) WITHOUT ROWID;
    "#,
    // 11: the presence rollup reads every report once through this index;
    // with the collection time in it (the agent is, as part of the key) it
    // needs no lookup in `reports` per row (at 5,000 reports/s its jobs
    // held the writer 100 ms and more).
    r#"
    DROP INDEX reports_by_received;
    CREATE INDEX reports_by_received ON reports (received_at, collected_at);
    "#,
];

/// Work a migration needs beyond its SQL, in the same transaction.
fn after_migration(tx: &rusqlite::Transaction, version: usize) -> rusqlite::Result<()> {
    match version {
        9 => move_samples_into_blocks(tx),
        10 => {
            checks::convert_check_rows(tx)?;
            tx.execute_batch("DROP TABLE check_results;")
        }
        _ => Ok(()),
    }
}

/// Migration 9's work beyond its SQL.
fn move_samples_into_blocks(tx: &rusqlite::Transaction) -> rusqlite::Result<()> {
    samples::convert_sample_rows(tx)?;
    // Everything the old minute-ly rollups had not folded yet is folded
    // now, so every converted block counts as rolled up; blocks arriving
    // later for the hours up to the newest sample's are merged as late.
    let watermark: i64 = tx
        .query_row(
            "SELECT coalesce((SELECT value FROM maintenance_state WHERE name = 'rollup.samples_rowid'), 0)",
            [],
            |r| r.get(0),
        )?;
    tx.execute(
        "INSERT INTO rollups_hourly (series_id, hour, min, avg, max, count)
         SELECT series_id, (at / 3600000) * 3600000, min(value), avg(value), max(value), count(*)
         FROM samples WHERE rowid > ?1 GROUP BY 1, 2
         ON CONFLICT (series_id, hour) DO UPDATE SET
            min = min(min, excluded.min),
            max = max(max, excluded.max),
            avg = (avg * count + excluded.avg * excluded.count) / (count + excluded.count),
            count = count + excluded.count",
        [watermark],
    )?;
    tx.execute_batch(
        "INSERT INTO maintenance_state (name, value)
            SELECT 'rollup.hour_done', (max(at) / 3600000 + 1) * 3600000 FROM sample_blocks
            HAVING count(*) > 0;
         INSERT INTO maintenance_state (name, value)
            SELECT 'rollup.late_through_block', max(block_id) FROM sample_blocks
            HAVING count(*) > 0;
         DELETE FROM maintenance_state WHERE name = 'rollup.samples_rowid';
         DROP VIEW metric_samples;
         DROP TABLE samples;",
    )
}

/// Opens (creating if needed) the database read-write, applies pending
/// migrations and the collector's pragmas: WAL, synchronous=FULL (an ack
/// must survive power loss, not only a crash), foreign keys, busy timeout.
pub fn open(path: &Path) -> Result<Connection, StoreError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|source| StoreError::Dir {
            path: dir.to_owned(),
            source,
        })?;
    }
    let mut conn = Connection::open(path).map_err(sql("opening the database"))?;
    pragmas(&conn)?;
    conn.pragma_update(None, "journal_mode", "WAL")
        .map_err(sql("enabling WAL"))?;
    migrate(&mut conn, path)?;
    Ok(conn)
}

/// Caps this connection's database at `max_bytes`, rounded down to whole
/// pages; returns the cap in effect. SQLite never lowers the cap below the
/// current size, so a database already larger simply cannot grow.
pub fn limit_size(conn: &Connection, max_bytes: u64) -> Result<u64, StoreError> {
    let page_size: i64 = conn
        .pragma_query_value(None, "page_size", |r| r.get(0))
        .map_err(sql("reading the page size"))?;
    let page_size = u64::try_from(page_size).unwrap_or(4096).max(1);
    let pages = i64::try_from(max_bytes / page_size).unwrap_or(i64::MAX);
    let set: i64 = conn
        .pragma_update_and_check(None, "max_page_count", pages, |r| r.get(0))
        .map_err(sql("setting max_page_count"))?;
    Ok(u64::try_from(set).unwrap_or(0) * page_size)
}

/// Opens an existing database read-only (the CLI's reports and listings).
pub fn open_read_only(path: &Path) -> Result<Connection, StoreError> {
    if !path.exists() {
        return Err(StoreError::NotFound(format!(
            "no database at {}: start the collector (`xunjian up` or `xunjian serve`) first, or pass --data-dir/--config",
            path.display()
        )));
    }
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
            | OpenFlags::SQLITE_OPEN_URI,
    )
    .map_err(sql("opening the database read-only"))?;
    conn.busy_timeout(Duration::from_secs(5))
        .map_err(sql("setting busy timeout"))?;
    let version: i64 = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .map_err(sql("reading schema version"))?;
    if version < schema_version() {
        return Err(StoreError::NotFound(format!(
            "the database at {} has schema version {version}, older than this build's {}: start this version's collector once to upgrade it",
            path.display(),
            schema_version()
        )));
    }
    Ok(conn)
}

fn pragmas(conn: &Connection) -> Result<(), StoreError> {
    conn.busy_timeout(Duration::from_secs(5))
        .map_err(sql("setting busy timeout"))?;
    conn.pragma_update(None, "synchronous", "FULL")
        .map_err(sql("setting synchronous"))?;
    conn.pragma_update(None, "foreign_keys", "ON")
        .map_err(sql("enabling foreign keys"))?;
    Ok(())
}

fn migrate(conn: &mut Connection, path: &Path) -> Result<(), StoreError> {
    let current: i64 = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .map_err(sql("reading schema version"))?;
    let known = MIGRATIONS.len() as i64;
    if current > known {
        return Err(StoreError::TooNew {
            path: path.to_owned(),
            found: current,
            known,
        });
    }
    for (i, script) in MIGRATIONS.iter().enumerate().skip(current as usize) {
        let tx = conn.transaction().map_err(sql("starting a migration"))?;
        tx.execute_batch(script)
            .map_err(sql("applying a migration"))?;
        after_migration(&tx, i + 1).map_err(sql("applying a migration"))?;
        tx.pragma_update(None, "user_version", i as i64 + 1)
            .map_err(sql("recording the schema version"))?;
        tx.commit().map_err(sql("committing a migration"))?;
        tracing::info!(version = i + 1, "applied schema migration");
    }
    Ok(())
}

/// The schema version this build writes.
pub fn schema_version() -> i64 {
    MIGRATIONS.len() as i64
}

/// A fresh database at the current schema in a temporary directory, with
/// agent `a` enrolled: what the storage and maintenance unit tests start
/// from.
#[cfg(test)]
pub(crate) fn test_db() -> (tempfile::TempDir, Connection) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let conn = open(&dir.path().join("test.db")).expect("a fresh database");
    test_agent(&conn, "a");
    (dir, conn)
}

/// Registers agent `id` directly (no token, no writer).
#[cfg(test)]
pub(crate) fn test_agent(conn: &Connection, id: &str) {
    conn.execute(
        "INSERT INTO agents (agent_id, hostname, enrolled_at, enrolled_with_token, cert_serial, cert_sha256)
         VALUES (?1, ?1, 0, 't', 's', 'h')",
        [id],
    )
    .expect("a test agent");
}

/// A report of one `fs.used_pct` sample of `mount`, collected at
/// 1,700,000,000,000 + `seq` ms.
#[cfg(test)]
pub(crate) fn fs_report(seq: u64, mount: &str, used_pct: f64) -> xunjian_proto::Report {
    use xunjian_proto::{Label, Metric, MetricBatch, Section, section};
    xunjian_proto::Report {
        sequence: seq,
        collected_at_unix_ms: 1_700_000_000_000 + seq as i64,
        sections: vec![Section {
            kind: Some(section::Kind::Metrics(MetricBatch {
                metrics: vec![Metric {
                    name: "fs.used_pct".into(),
                    labels: vec![Label {
                        name: "mount".into(),
                        value: mount.into(),
                    }],
                    value: used_pct,
                    at_unix_ms: 0,
                }],
            })),
        }],
        ..Default::default()
    }
}

/// Enrolls a fresh agent through the writer, as the Enroll RPC does.
#[cfg(test)]
pub(crate) async fn enrolled_agent(handle: &WriterHandle, db: &Path) -> uuid::Uuid {
    let agent = uuid::Uuid::new_v4();
    let mut conn = open(db).expect("the database");
    let t = create_token(&mut conn, 0, i64::MAX / 2, 1, "t", "").expect("a token");
    let new = NewAgent {
        agent_id: agent,
        hostname: "h".into(),
        agent_version: "v".into(),
        cert_serial: "s".into(),
        cert_sha256: "c".into(),
    };
    let enrolled = handle.enroll(t.secret, new, 1).await;
    assert!(matches!(enrolled, Ok(Ok(_))), "{enrolled:?}");
    agent
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_apply_once_and_enable_wal() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.db");
        drop(open(&path).unwrap());
        let conn = open(&path).unwrap();
        let v: i64 = conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap();
        assert_eq!(v, schema_version());
        let mode: String = conn
            .pragma_query_value(None, "journal_mode", |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
    }

    #[test]
    fn newer_schema_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.db");
        let conn = open(&path).unwrap();
        conn.pragma_update(None, "user_version", 999).unwrap();
        drop(conn);
        assert!(matches!(
            open(&path),
            Err(StoreError::TooNew { found: 999, .. })
        ));
    }

    #[test]
    fn audit_log_is_append_only() {
        let dir = tempfile::tempdir().unwrap();
        let conn = open(&dir.path().join("x.db")).unwrap();
        conn.execute(
            "INSERT INTO audit_log (at, actor, action, target, detail) VALUES (1, 'a', 'b', 'c', 'd')",
            [],
        )
        .unwrap();
        assert!(
            conn.execute("UPDATE audit_log SET actor = 'x'", [])
                .is_err()
        );
        assert!(conn.execute("DELETE FROM audit_log", []).is_err());
    }

    #[test]
    fn missing_database_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let err = open_read_only(&dir.path().join("none.db")).unwrap_err();
        assert!(err.to_string().contains("start the collector"), "{err}");
    }
}
