//! Metric samples, stored as blocks: one `sample_blocks` row per report and
//! sample time, holding the (series, value) pairs of every sample the
//! report took at that time, and the reads that unpack them.
//!
//! Why blocks and not a row per sample: with a `(series_id, at)` index, each
//! series' newest entry sits on its own index page once the series has some
//! history, so a report of 100 samples rewrites about 100 random pages.
//! Measured with 100,000 series in fleet order
//! (`tests/bench-scripts/sample_index_aging.py`): 583k rows/s on an empty
//! table, 146k after ten minutes of history, 44k after fifty. A block is one
//! append to the table and one entry at the end of its agent's run in
//! `sample_blocks_by_agent`, however old the table is.

use prost::Message;
use rusqlite::{Connection, params};

/// The stored body of a block (prost, so the format is a documented
/// protobuf message rather than a hand-made layout).
#[derive(Clone, PartialEq, prost::Message)]
struct BlockBody {
    /// Series ids, each as the difference from the previous one (the first
    /// from 0): an agent's series are created together, so mostly 1, one
    /// byte each.
    #[prost(sint64, repeated, tag = "1")]
    series_deltas: Vec<i64>,
    #[prost(double, repeated, tag = "2")]
    values: Vec<f64>,
}

/// The body of a block holding `samples` (series id, value), in order.
pub fn encode(samples: &[(i64, f64)]) -> Vec<u8> {
    let mut previous = 0i64;
    let body = BlockBody {
        series_deltas: samples
            .iter()
            .map(|&(id, _)| {
                let delta = id.wrapping_sub(previous);
                previous = id;
                delta
            })
            .collect(),
        values: samples.iter().map(|&(_, v)| v).collect(),
    };
    body.encode_to_vec()
}

/// The (series id, value) pairs of a block body. A body that does not
/// decode, or whose two lists differ in length, is an error: the database
/// was damaged, and guessing would report wrong values.
pub fn decode(body: &[u8]) -> rusqlite::Result<Vec<(i64, f64)>> {
    let damaged = |why: String| {
        rusqlite::Error::FromSqlConversionFailure(
            0,
            rusqlite::types::Type::Blob,
            format!("damaged sample block: {why}").into(),
        )
    };
    let b = BlockBody::decode(body).map_err(|e| damaged(e.to_string()))?;
    if b.series_deltas.len() != b.values.len() {
        return Err(damaged(format!(
            "{} series for {} values",
            b.series_deltas.len(),
            b.values.len()
        )));
    }
    let mut id = 0i64;
    Ok(b.series_deltas
        .into_iter()
        .zip(b.values)
        .map(|(delta, v)| {
            id = id.wrapping_add(delta);
            (id, v)
        })
        .collect())
}

/// Stores one block; returns its id.
pub fn insert_block(
    conn: &Connection,
    agent_id: &str,
    sequence: i64,
    at: i64,
    samples: &[(i64, f64)],
) -> rusqlite::Result<i64> {
    conn.prepare_cached(
        "INSERT INTO sample_blocks (agent_id, sequence, at, samples, body) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![
        agent_id,
        sequence,
        at,
        samples.len() as i64,
        encode(samples)
    ])?;
    Ok(conn.last_insert_rowid())
}

/// One stored sample of a series.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Point {
    pub at: i64,
    pub value: f64,
    pub sequence: i64,
}

fn series_agent(conn: &Connection, series_id: i64) -> rusqlite::Result<Option<String>> {
    use rusqlite::OptionalExtension;
    conn.prepare_cached("SELECT agent_id FROM series WHERE series_id = ?1")?
        .query_row([series_id], |r| r.get(0))
        .optional()
}

/// Calls `visit` with the samples of `series_id` taken in `from <= at < to`,
/// in time order (newest first when `newest_first`), until it returns false.
pub fn visit_points(
    conn: &Connection,
    series_id: i64,
    from: i64,
    to: i64,
    newest_first: bool,
    mut visit: impl FnMut(Point) -> bool,
) -> rusqlite::Result<()> {
    let Some(agent) = series_agent(conn, series_id)? else {
        return Ok(());
    };
    let sql = if newest_first {
        "SELECT at, sequence, body FROM sample_blocks
         WHERE agent_id = ?1 AND at >= ?2 AND at < ?3 ORDER BY at DESC, block_id DESC"
    } else {
        "SELECT at, sequence, body FROM sample_blocks
         WHERE agent_id = ?1 AND at >= ?2 AND at < ?3 ORDER BY at, block_id"
    };
    let mut stmt = conn.prepare_cached(sql)?;
    let mut rows = stmt.query(params![agent, from, to])?;
    while let Some(r) = rows.next()? {
        let (at, sequence): (i64, i64) = (r.get(0)?, r.get(1)?);
        let body = r.get_ref(2)?.as_blob()?;
        for (id, value) in decode(body)? {
            if id == series_id
                && !visit(Point {
                    at,
                    value,
                    sequence,
                })
            {
                return Ok(());
            }
        }
    }
    Ok(())
}

/// The samples of `series_id` taken in `from <= at < to`, oldest first.
pub fn points(
    conn: &Connection,
    series_id: i64,
    from: i64,
    to: i64,
) -> rusqlite::Result<Vec<Point>> {
    let mut out = Vec::new();
    visit_points(conn, series_id, from, to, false, |p| {
        out.push(p);
        true
    })?;
    Ok(out)
}

/// The newest sample of `series_id` taken in `from <= at < to`.
pub fn latest_point(
    conn: &Connection,
    series_id: i64,
    from: i64,
    to: i64,
) -> rusqlite::Result<Option<Point>> {
    let mut found = None;
    visit_points(conn, series_id, from, to, true, |p| {
        found = Some(p);
        false
    })?;
    Ok(found)
}

/// Blocks `latest_by_names` looks through, newest first: an hour of reports
/// at the agent's default 10 s interval. A listing must not read a host's
/// whole history for a metric it stopped sending.
const LATEST_SCAN_BLOCKS: i64 = 400;

/// For each (metric name, since) asked for: the values of the agent's
/// series of that name in its newest block (`at >= since`, among the newest
/// [`LATEST_SCAN_BLOCKS`]) that has any; empty when none has. One pass over
/// the blocks serves every name.
pub fn latest_by_names(
    conn: &Connection,
    agent_id: &str,
    wanted: &[(&str, i64)],
) -> rusqlite::Result<Vec<Vec<f64>>> {
    let mut by_name =
        conn.prepare_cached("SELECT series_id FROM series WHERE agent_id = ?1 AND name = ?2")?;
    let mut ids: Vec<Vec<i64>> = Vec::with_capacity(wanted.len());
    for (name, _) in wanted {
        ids.push(
            by_name
                .query_map(params![agent_id, name], |r| r.get(0))?
                .collect::<rusqlite::Result<_>>()?,
        );
    }
    let mut out: Vec<Vec<f64>> = vec![Vec::new(); wanted.len()];
    // A name is settled once found, or when it has no series at all.
    let mut open: Vec<usize> = (0..wanted.len()).filter(|&i| !ids[i].is_empty()).collect();
    let Some(since) = open.iter().map(|&i| wanted[i].1).min() else {
        return Ok(out);
    };
    let mut stmt = conn.prepare_cached(
        "SELECT at, body FROM sample_blocks WHERE agent_id = ?1 AND at >= ?2
         ORDER BY at DESC, block_id DESC LIMIT ?3",
    )?;
    let mut rows = stmt.query(params![agent_id, since, LATEST_SCAN_BLOCKS])?;
    while let Some(r) = rows.next()? {
        let at: i64 = r.get(0)?;
        // Newest first: a name asked for since after this block finds
        // nothing in it or in any older one, so it is settled, empty.
        open.retain(|&i| at >= wanted[i].1);
        if open.is_empty() {
            break;
        }
        let samples = decode(r.get_ref(1)?.as_blob()?)?;
        open.retain(|&i| {
            out[i] = samples
                .iter()
                .filter(|(id, _)| ids[i].contains(id))
                .map(|&(_, v)| v)
                .collect();
            out[i].is_empty()
        });
        if open.is_empty() {
            break;
        }
    }
    Ok(out)
}

/// Migration 9: moves the rows of the old `samples` table into blocks (one
/// per agent, sequence and time), oldest first, and drops the table. Runs
/// inside the migration's transaction.
pub(crate) fn convert_sample_rows(conn: &Connection) -> rusqlite::Result<u64> {
    let mut read = conn.prepare(
        "SELECT s.agent_id, m.sequence, m.at, m.series_id, m.value
         FROM samples m JOIN series s USING (series_id)
         ORDER BY s.agent_id, m.sequence, m.at, m.rowid",
    )?;
    let mut rows = read.query([])?;
    /// (agent, sequence, at, samples)
    type Block = (String, i64, i64, Vec<(i64, f64)>);
    let mut blocks: Vec<Block> = Vec::new();
    let mut moved = 0u64;
    while let Some(r) = rows.next()? {
        let (agent, sequence, at, series, value): (String, i64, i64, i64, f64) =
            (r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?);
        moved += 1;
        match blocks.last_mut() {
            Some((a, s, t, samples)) if *a == agent && *s == sequence && *t == at => {
                samples.push((series, value))
            }
            _ => blocks.push((agent, sequence, at, vec![(series, value)])),
        }
    }
    drop(rows);
    // Block ids in time order, as the writer would have made them.
    blocks.sort_by_key(|(_, sequence, at, _)| (*at, *sequence));
    for (agent, sequence, at, samples) in &blocks {
        insert_block(conn, agent, *sequence, *at, samples)?;
    }
    Ok(moved)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_block_round_trips_ids_in_any_order_and_exact_values() {
        let samples = vec![
            (7, 1.5),
            (8, -0.0),
            (3, f64::MAX),
            (1 << 40, f64::MIN_POSITIVE),
            (9, 1e-300),
        ];
        let body = encode(&samples);
        let back = decode(&body).unwrap();
        assert_eq!(back.len(), samples.len());
        for ((id, v), (bid, bv)) in samples.iter().zip(&back) {
            assert_eq!(id, bid);
            assert_eq!(v.to_bits(), bv.to_bits());
        }
    }

    #[test]
    fn consecutive_series_cost_about_nine_bytes_a_sample() {
        let samples: Vec<(i64, f64)> = (1000..1100).map(|i| (i, i as f64 * 0.37)).collect();
        let body = encode(&samples);
        assert!(body.len() < 100 * 9 + 16, "{} bytes", body.len());
    }

    #[test]
    fn latest_values_of_several_names_come_from_one_pass_newest_first() {
        let (_dir, conn) = crate::store::test_db();
        conn.execute_batch(
            "INSERT INTO series (series_id, agent_id, name, labels) VALUES
                (1, 'a', 'cpu', '{}'), (2, 'a', 'fs', '{\"m\":\"/\"}'),
                (3, 'a', 'fs', '{\"m\":\"/old\"}'), (4, 'a', 'mem', '{}')",
        )
        .unwrap();
        // Report 1 at 100: every metric, and a volume unmounted since.
        insert_block(
            &conn,
            "a",
            1,
            100,
            &[(1, 10.0), (2, 50.0), (3, 99.0), (4, 70.0)],
        )
        .unwrap();
        // Report 2 at 200: cpu and the one volume left; no memory figure.
        insert_block(&conn, "a", 2, 200, &[(1, 20.0), (2, 60.0)]).unwrap();
        let got = latest_by_names(
            &conn,
            "a",
            &[
                ("cpu", i64::MIN),
                ("mem", i64::MIN),
                ("fs", 200),
                ("nope", i64::MIN),
            ],
        )
        .unwrap();
        assert_eq!(got, vec![vec![20.0], vec![70.0], vec![60.0], vec![]]);
        // Nothing at or after `since`: nothing, not an older value.
        let later = latest_by_names(&conn, "a", &[("fs", 201)]).unwrap();
        assert_eq!(later, vec![Vec::<f64>::new()]);
        // A name whose `since` is newer than the block at hand is settled
        // there: the scan goes no further back for it (a damaged block at
        // 50 is never read), while a name asked for from earlier is found.
        conn.execute(
            "INSERT INTO sample_blocks (agent_id, sequence, at, samples, body) VALUES ('a', 0, 50, 1, x'0aff')",
            [],
        )
        .unwrap();
        let got = latest_by_names(&conn, "a", &[("cpu", 250), ("mem", 0)]).unwrap();
        assert_eq!(got, vec![vec![], vec![70.0]]);
    }

    #[test]
    fn damaged_bodies_are_errors_not_values() {
        assert!(decode(b"\x0a\xff").is_err(), "truncated packed field");
        let lopsided = BlockBody {
            series_deltas: vec![1, 1],
            values: vec![2.0],
        }
        .encode_to_vec();
        let err = decode(&lopsided).unwrap_err().to_string();
        assert!(err.contains("2 series for 1 values"), "{err}");
    }
}
