//! Check results, stored as blocks: one `check_blocks` row per report
//! holding every check result it carried, and `agent_checks`, each agent's
//! catalog of the check ids it has sent and when, so "the latest result of
//! each check before T" reads a few blocks instead of a host's history.
//!
//! Why blocks and not a row per result: with a row per result and two
//! indexes keyed by the agent id, check results were three quarters of the
//! bytes the writer wrote (ten rows a report in the `writer` benchmark). A
//! block is one append to the table and one entry at the end of its
//! agent's run in `check_blocks_by_agent`.

use prost::Message;
use rusqlite::{Connection, OptionalExtension, params};

use crate::rules::Status;

/// One check result as stored. Status is the stored spelling ("ok",
/// "warning", "critical", "unknown"); anything else in a body is damage.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct CheckResult {
    #[prost(string, tag = "1")]
    pub check_id: String,
    #[prost(string, tag = "2")]
    pub title: String,
    #[prost(string, tag = "3")]
    pub status: String,
    #[prost(string, tag = "4")]
    pub value: String,
    #[prost(string, tag = "5")]
    pub threshold: String,
    #[prost(string, tag = "6")]
    pub evidence: String,
    #[prost(string, tag = "7")]
    pub reason: String,
}

/// The stored body of a block (prost, so the format is a documented
/// protobuf message rather than a hand-made layout).
#[derive(Clone, PartialEq, prost::Message)]
struct CheckBlockBody {
    #[prost(message, repeated, tag = "1")]
    results: Vec<CheckResult>,
}

/// How far behind a check's newest result its catalog `last_at` may lag.
/// The writer moves `last_at` only when a result is at least this much
/// newer, so a host sending the same checks every few minutes updates its
/// catalog rows once an hour, not with every report. Invariant: every
/// stored result of a check was taken in `first_at <= at < last_at + CATALOG_LAG_MS`.
pub const CATALOG_LAG_MS: i64 = 3_600_000;

/// The body of a block holding `results`, in order.
pub fn encode(results: &[CheckResult]) -> Vec<u8> {
    CheckBlockBody {
        results: results.to_vec(),
    }
    .encode_to_vec()
}

/// The results of a block body. A body that does not decode, or holds a
/// status that is not a stored spelling, is an error: the database was
/// damaged, and guessing could report a failing check as passed.
pub fn decode(body: &[u8]) -> rusqlite::Result<Vec<CheckResult>> {
    let damaged = |why: String| {
        rusqlite::Error::FromSqlConversionFailure(
            0,
            rusqlite::types::Type::Blob,
            format!("damaged check block: {why}").into(),
        )
    };
    let b = CheckBlockBody::decode(body).map_err(|e| damaged(e.to_string()))?;
    if let Some(bad) = b
        .results
        .iter()
        .find(|c| Status::parse(&c.status).is_none())
    {
        return Err(damaged(format!(
            "check {:?} has status {:?}",
            bad.check_id, bad.status
        )));
    }
    Ok(b.results)
}

/// Stores the check results of one report (taken at `at`) as one block
/// and extends the agent's catalog; returns the block id. Nothing is
/// stored for an empty list.
pub fn insert_block(
    conn: &Connection,
    agent_id: &str,
    sequence: i64,
    at: i64,
    results: &[CheckResult],
) -> rusqlite::Result<Option<i64>> {
    if results.is_empty() {
        return Ok(None);
    }
    conn.prepare_cached(
        "INSERT INTO check_blocks (agent_id, sequence, at, results, body) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![
        agent_id,
        sequence,
        at,
        results.len() as i64,
        encode(results)
    ])?;
    let block = conn.last_insert_rowid();
    // Writes only when the check is new to the agent, older than its
    // first result, or CATALOG_LAG_MS newer than its recorded last one:
    // nearly always a read of a cached page.
    let mut catalog = conn.prepare_cached(
        "INSERT INTO agent_checks (agent_id, check_id, first_at, last_at) VALUES (?1, ?2, ?3, ?3)
         ON CONFLICT (agent_id, check_id) DO UPDATE SET
            first_at = min(first_at, excluded.first_at),
            last_at = max(last_at, excluded.last_at)
         WHERE excluded.first_at < agent_checks.first_at
            OR excluded.last_at >= agent_checks.last_at + ?4",
    )?;
    for c in results {
        catalog.execute(params![agent_id, c.check_id, at, CATALOG_LAG_MS])?;
    }
    Ok(Some(block))
}

/// Forgets catalog entries of checks an agent stopped sending before
/// `cutoff` (a removed plugin's checks), at most `limit`; returns how many.
/// Only when none of the agent's stored check blocks falls in the entry's
/// range: a late old block not yet pruned keeps its entry, so every stored
/// result stays inside its catalog range (ARCHITECTURE invariant 14).
pub fn prune_catalog(conn: &Connection, cutoff: i64, limit: i64) -> rusqlite::Result<u64> {
    let n = conn
        .prepare_cached(
            "DELETE FROM agent_checks WHERE (agent_id, check_id) IN
                (SELECT c.agent_id, c.check_id FROM agent_checks c
                 WHERE c.last_at + ?2 <= ?1
                   AND NOT EXISTS (SELECT 1 FROM check_blocks b
                                   WHERE b.agent_id = c.agent_id AND b.at < c.last_at + ?2)
                 LIMIT ?3)",
        )?
        .execute(params![cutoff, CATALOG_LAG_MS, limit])?;
    Ok(n as u64)
}

/// The check results one report carried, sorted by check id; `at` is the
/// report's collection time (blocks are found through the agent's index).
pub fn of_report(
    conn: &Connection,
    agent_id: &str,
    sequence: i64,
    at: i64,
) -> rusqlite::Result<Vec<CheckResult>> {
    let mut stmt = conn.prepare_cached(
        "SELECT body FROM check_blocks WHERE agent_id = ?1 AND at = ?2 AND sequence = ?3 ORDER BY block_id",
    )?;
    let mut rows = stmt.query(params![agent_id, at, sequence])?;
    let mut out = Vec::new();
    while let Some(r) = rows.next()? {
        out.extend(decode(r.get_ref(0)?.as_blob()?)?);
    }
    out.sort_by(|a, b| a.check_id.cmp(&b.check_id));
    Ok(out)
}

/// A check result with the time it was taken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Taken {
    pub at: i64,
    pub result: CheckResult,
}

/// The newest result of `check_id` the agent took before `before`.
pub fn latest_before(
    conn: &Connection,
    agent_id: &str,
    check_id: &str,
    before: i64,
) -> rusqlite::Result<Option<Taken>> {
    let wanted: Option<Wanted> = conn
        .prepare_cached(
            "SELECT check_id, first_at, last_at FROM agent_checks
             WHERE agent_id = ?1 AND check_id = ?2 AND first_at < ?3",
        )?
        .query_row(params![agent_id, check_id, before], |r| {
            Wanted::read(r, before)
        })
        .optional()?;
    Ok(walk(conn, agent_id, wanted.into_iter().collect())?.pop())
}

/// The newest result before `before` of every check id starting with
/// `prefix` that the agent has sent, sorted by check id.
pub fn latest_with_prefix(
    conn: &Connection,
    agent_id: &str,
    prefix: &str,
    before: i64,
) -> rusqlite::Result<Vec<Taken>> {
    let wanted: Vec<Wanted> = conn
        .prepare_cached(
            "SELECT check_id, first_at, last_at FROM agent_checks
             WHERE agent_id = ?1 AND substr(check_id, 1, length(?2)) = ?2 AND first_at < ?3",
        )?
        .query_map(params![agent_id, prefix, before], |r| {
            Wanted::read(r, before)
        })?
        .collect::<rusqlite::Result<_>>()?;
    let mut found = walk(conn, agent_id, wanted)?;
    found.sort_by(|a, b| a.result.check_id.cmp(&b.result.check_id));
    Ok(found)
}

/// A check whose newest result before some time is still to be found.
struct Wanted {
    check_id: String,
    /// Its results before the time asked about all lie below this: the
    /// time itself, or the catalog's bound when the check stopped earlier.
    top: i64,
}

impl Wanted {
    fn read(r: &rusqlite::Row<'_>, before: i64) -> rusqlite::Result<Self> {
        let last_at: i64 = r.get(2)?;
        Ok(Self {
            check_id: r.get(0)?,
            top: before.min(last_at.saturating_add(CATALOG_LAG_MS)),
        })
    }
}

/// Reads the agent's blocks newest first from the highest `top` of the
/// checks still wanted, skipping straight down to the next one when all the
/// checks still wanted stopped before the block at hand, so a check retired
/// weeks ago costs one index seek, not a walk through the weeks between.
fn walk(
    conn: &Connection,
    agent_id: &str,
    mut wanted: Vec<Wanted>,
) -> rusqlite::Result<Vec<Taken>> {
    let mut found = Vec::new();
    let mut stmt = conn.prepare_cached(
        "SELECT at, body FROM check_blocks WHERE agent_id = ?1 AND at < ?2
         ORDER BY at DESC, sequence DESC, block_id DESC",
    )?;
    while let Some(top) = wanted.iter().map(|w| w.top).max() {
        let mut rows = stmt.query(params![agent_id, top])?;
        let mut skipped = false;
        while let Some(r) = rows.next()? {
            let at: i64 = r.get(0)?;
            let Some(still) = wanted.iter().map(|w| w.top).max() else {
                break;
            };
            if at >= still {
                skipped = true;
                break;
            }
            // The last of a check's results in one block wins, as the
            // latest row did when results were rows.
            for c in decode(r.get_ref(1)?.as_blob()?)?.into_iter().rev() {
                if let Some(i) = wanted
                    .iter()
                    .position(|w| w.check_id == c.check_id && at < w.top)
                {
                    wanted.swap_remove(i);
                    found.push(Taken { at, result: c });
                }
            }
            if wanted.is_empty() {
                break;
            }
        }
        if !skipped {
            // The agent's blocks ran out: what is still wanted was removed
            // by retention.
            break;
        }
    }
    Ok(found)
}

/// Migration 10: moves the rows of the old `check_results` table into
/// blocks (one per agent, sequence and time), oldest first, filling the
/// catalog as it goes. Runs inside the migration's transaction.
pub(crate) fn convert_check_rows(conn: &Connection) -> rusqlite::Result<u64> {
    let mut read = conn.prepare(
        "SELECT agent_id, sequence, at, check_id, title, status, value, threshold, evidence, reason
         FROM check_results ORDER BY at, agent_id, sequence, rowid",
    )?;
    let mut rows = read.query([])?;
    let mut block: Option<(String, i64, i64, Vec<CheckResult>)> = None;
    let mut moved = 0u64;
    while let Some(r) = rows.next()? {
        let (agent, sequence, at): (String, i64, i64) = (r.get(0)?, r.get(1)?, r.get(2)?);
        let result = CheckResult {
            check_id: r.get(3)?,
            title: r.get(4)?,
            status: r.get(5)?,
            value: r.get(6)?,
            threshold: r.get(7)?,
            evidence: r.get(8)?,
            reason: r.get(9)?,
        };
        moved += 1;
        match &mut block {
            Some((a, s, t, results)) if *a == agent && *s == sequence && *t == at => {
                results.push(result)
            }
            _ => {
                if let Some((a, s, t, results)) = block.take() {
                    insert_block(conn, &a, s, t, &results)?;
                }
                block = Some((agent, sequence, at, vec![result]));
            }
        }
    }
    if let Some((a, s, t, results)) = block.take() {
        insert_block(conn, &a, s, t, &results)?;
    }
    Ok(moved)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(id: &str, status: &str) -> CheckResult {
        CheckResult {
            check_id: id.into(),
            title: format!("title of {id}"),
            status: status.into(),
            value: "v".into(),
            threshold: "t".into(),
            evidence: "e".into(),
            reason: String::new(),
        }
    }

    #[test]
    fn a_block_round_trips_and_damage_is_an_error() {
        let results = vec![result("av.defender", "ok"), result("baseline.x", "unknown")];
        assert_eq!(decode(&encode(&results)).unwrap(), results);
        assert!(decode(b"\x0a\xff").is_err(), "truncated message");
        let err = decode(&encode(&[result("x", "fine")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("status \"fine\""), "{err}");
    }

    #[test]
    fn the_latest_result_of_each_check_is_found_before_any_time() {
        let (_dir, conn) = crate::store::test_db();
        let hour = CATALOG_LAG_MS;
        // Every 5 minutes for 10 hours: av and baseline.a; baseline.b stops
        // after hour 2; patch.pending only every 6 hours.
        for i in 0..120i64 {
            let at = 1_000_000 + i * 300_000;
            let mut results = vec![
                result("av", if i % 2 == 0 { "ok" } else { "warning" }),
                result("baseline.a", "ok"),
            ];
            if at < 1_000_000 + 2 * hour {
                results.push(result("baseline.b", "critical"));
            }
            if i % 72 == 0 {
                results.push(result("patch.pending", "ok"));
            }
            insert_block(&conn, "a", i + 1, at, &results).unwrap();
        }
        let at = |i: i64| 1_000_000 + i * 300_000;
        // Exactly at a block's time means before it: the previous one.
        let av = latest_before(&conn, "a", "av", at(7)).unwrap().unwrap();
        assert_eq!((av.at, av.result.status.as_str()), (at(6), "ok"));
        let av = latest_before(&conn, "a", "av", at(7) + 1).unwrap().unwrap();
        assert_eq!((av.at, av.result.status.as_str()), (at(7), "warning"));
        assert_eq!(latest_before(&conn, "a", "av", at(0)).unwrap(), None);
        assert_eq!(latest_before(&conn, "a", "nope", at(100)).unwrap(), None);
        let p = latest_before(&conn, "a", "patch.pending", at(119) + 1).unwrap();
        assert_eq!(p.unwrap().at, at(72));
        let base = latest_with_prefix(&conn, "a", "baseline.", at(119) + 1).unwrap();
        let got: Vec<(&str, i64)> = base
            .iter()
            .map(|t| (t.result.check_id.as_str(), t.at))
            .collect();
        // baseline.b's last result was at 2 h minus 5 min (block 23).
        assert_eq!(got, [("baseline.a", at(119)), ("baseline.b", at(23))]);
        // The catalog moved last_at only hourly, not with every block.
        let last: i64 = conn
            .query_row(
                "SELECT last_at FROM agent_checks WHERE check_id = 'av'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert!(last <= at(119) && last > at(119) - hour, "{last}");
    }

    #[test]
    fn a_late_result_older_than_the_first_is_still_found() {
        let (_dir, conn) = crate::store::test_db();
        insert_block(&conn, "a", 2, 10 * CATALOG_LAG_MS, &[result("av", "ok")]).unwrap();
        insert_block(&conn, "a", 1, CATALOG_LAG_MS, &[result("av", "critical")]).unwrap();
        let t = latest_before(&conn, "a", "av", 2 * CATALOG_LAG_MS)
            .unwrap()
            .unwrap();
        assert_eq!(
            (t.at, t.result.status.as_str()),
            (CATALOG_LAG_MS, "critical")
        );
        // And a late newer one than the catalog's last_at + lag.
        insert_block(
            &conn,
            "a",
            3,
            30 * CATALOG_LAG_MS,
            &[result("av", "warning")],
        )
        .unwrap();
        let t = latest_before(&conn, "a", "av", i64::MAX).unwrap().unwrap();
        assert_eq!(t.result.status, "warning");
    }

    #[test]
    fn check_rows_from_before_blocks_become_one_block_per_report() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.db");
        {
            // A database as the previous build left it: version 9, check
            // results as rows.
            let mut conn = Connection::open(&path).unwrap();
            let tx = conn.transaction().unwrap();
            for script in &crate::store::MIGRATIONS[..9] {
                tx.execute_batch(script).unwrap();
            }
            tx.pragma_update(None, "user_version", 9).unwrap();
            tx.execute(
                "INSERT INTO agents (agent_id, enrolled_at, enrolled_with_token, cert_serial, cert_sha256)
                    VALUES ('a', 0, 't', 's', 'h')",
                [],
            )
            .unwrap();
            // Inserted out of time order: report 2 before report 1.
            for (seq, at, id, status) in [
                (2, 200, "av", "critical"),
                (2, 200, "baseline.x", "ok"),
                (1, 100, "av", "ok"),
                (1, 100, "baseline.x", "unknown"),
                (1, 100, "baseline.y", "warning"),
            ] {
                tx.execute(
                    "INSERT INTO check_results (agent_id, sequence, at, check_id, title, status, value, threshold, evidence, reason)
                     VALUES ('a', ?1, ?2, ?3, 'T', ?4, 'v', 't', 'e', 'r')",
                    params![seq, at, id, status],
                )
                .unwrap();
            }
            tx.commit().unwrap();
        }
        let conn = crate::store::open(&path).unwrap();
        let blocks: Vec<(i64, i64, i64)> = conn
            .prepare("SELECT sequence, at, results FROM check_blocks ORDER BY block_id")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        // Block ids in time order, one block per report.
        assert_eq!(blocks, vec![(1, 100, 3), (2, 200, 2)]);
        let one = of_report(&conn, "a", 1, 100).unwrap();
        assert_eq!(
            one[2],
            CheckResult {
                check_id: "baseline.y".into(),
                title: "T".into(),
                status: "warning".into(),
                value: "v".into(),
                threshold: "t".into(),
                evidence: "e".into(),
                reason: "r".into(),
            }
        );
        let latest = latest_with_prefix(&conn, "a", "baseline.", 1000).unwrap();
        let got: Vec<(&str, i64, &str)> = latest
            .iter()
            .map(|t| (t.result.check_id.as_str(), t.at, t.result.status.as_str()))
            .collect();
        assert_eq!(
            got,
            [("baseline.x", 200, "ok"), ("baseline.y", 100, "warning")]
        );
        let gone: i64 = conn
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE name = 'check_results'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(gone, 0);
    }

    #[test]
    fn a_report_reads_back_its_own_results_sorted() {
        let (_dir, conn) = crate::store::test_db();
        insert_block(
            &conn,
            "a",
            1,
            5,
            &[result("z", "ok"), result("b", "unknown")],
        )
        .unwrap();
        insert_block(&conn, "a", 2, 5, &[result("c", "ok")]).unwrap();
        let ids: Vec<String> = of_report(&conn, "a", 1, 5)
            .unwrap()
            .into_iter()
            .map(|c| c.check_id)
            .collect();
        assert_eq!(ids, ["b", "z"]);
        assert!(of_report(&conn, "a", 1, 6).unwrap().is_empty());
        assert_eq!(insert_block(&conn, "a", 3, 5, &[]).unwrap(), None);
    }
}
