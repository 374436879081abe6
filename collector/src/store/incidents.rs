//! Incident rows as the rules engine drives them: one incident per key
//! (rule, host, label set) while the problem lasts — a still-firing rule
//! updates it instead of opening another; a rule firing again soon after
//! resolution reopens it. Every change is appended to `incident_events`.

use rusqlite::{Connection, OptionalExtension, params};
use uuid::Uuid;

/// A rule started firing for a key.
#[derive(Debug, Clone, PartialEq)]
pub struct Firing {
    pub rule_id: String,
    pub agent_id: Uuid,
    pub key: String,
    /// "I".."IV".
    pub severity: String,
    pub title: String,
    pub description: String,
    pub value: String,
    pub numeric: Option<f64>,
    pub threshold: String,
    pub at_ms: i64,
    pub flapping: bool,
    /// The new incident's SLA clock, JSON; kept on reopen.
    pub sla_clock: String,
    /// A silence or maintenance window covers it: recorded, nobody notified,
    /// no escalation. The text says which.
    pub suppressed_by: Option<String>,
}

/// What the rules engine says about a key.
#[derive(Debug, Clone, PartialEq)]
pub enum IncidentUpdate {
    Firing(Firing),
    StillFiring {
        key: String,
        value: String,
        numeric: Option<f64>,
        at_ms: i64,
    },
    Resolved {
        key: String,
        value: String,
        at_ms: i64,
    },
    /// SLA events of an incident and its updated clock.
    Sla {
        incident_id: i64,
        clock: String,
        events: Vec<HistoryEntry>,
    },
}

/// One line of an incident's history: (at, action, detail).
pub type HistoryEntry = (i64, String, String);

/// An incident whose SLA clock is running.
#[derive(Debug, Clone)]
pub struct SlaPending {
    pub incident_id: i64,
    pub clock: String,
    pub acknowledged_at: Option<i64>,
    pub resolved_at: Option<i64>,
}

/// What applying an update did, for logs and notifications.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    Opened(i64),
    Reopened(i64),
    Updated(i64),
    Resolved(i64),
    /// Nothing to do (e.g. a resolution for a key with no open incident).
    Nothing,
}

const ACTOR: &str = "rules";

/// Applies one engine transition. Call inside a transaction (the writer
/// always is).
pub fn apply(
    conn: &Connection,
    update: &IncidentUpdate,
    reopen_window_ms: i64,
) -> rusqlite::Result<Applied> {
    match update {
        IncidentUpdate::Firing(f) => {
            let latest: Option<(i64, String, Option<i64>)> = conn
                .prepare_cached(
                    "SELECT incident_id, state, resolved_at FROM incidents WHERE incident_key = ?1
                     ORDER BY opened_at DESC, incident_id DESC LIMIT 1",
                )?
                .query_row([&f.key], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                .optional()?;
            match latest {
                Some((id, state, _)) if state == "open" || state == "acknowledged" => {
                    update_value(conn, id, &f.value, f.numeric, f.at_ms)?;
                    Ok(Applied::Updated(id))
                }
                Some((id, state, Some(resolved_at)))
                    if state == "resolved"
                        && f.at_ms.saturating_sub(resolved_at) <= reopen_window_ms =>
                {
                    conn.prepare_cached(
                        "UPDATE incidents SET state = 'open', resolved_at = NULL, acknowledged_at = NULL,
                                reopen_count = reopen_count + 1, resolution = '', last_seen_at = ?2,
                                last_value = ?3, peak_value = max(coalesce(peak_value, ?4), coalesce(?4, peak_value)),
                                occurrences = occurrences + 1, flapping = ?5
                         WHERE incident_id = ?1",
                    )?
                    .execute(params![id, f.at_ms, f.value, f.numeric, f.flapping])?;
                    event(
                        conn,
                        id,
                        f.at_ms,
                        "reopen",
                        &format!("fired again: {}", f.value),
                    )?;
                    Ok(Applied::Reopened(id))
                }
                _ => {
                    conn.prepare_cached(
                        "INSERT INTO incidents (rule_id, agent_id, incident_key, severity, title, description, state,
                                opened_at, last_seen_at, first_value, last_value, peak_value, threshold, flapping, sla_clock,
                                suppressed)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'open', ?7, ?7, ?8, ?8, ?9, ?10, ?11, ?12, ?13)",
                    )?
                    .execute(params![
                        f.rule_id,
                        f.agent_id.to_string(),
                        f.key,
                        f.severity,
                        f.title,
                        f.description,
                        f.at_ms,
                        f.value,
                        f.numeric,
                        f.threshold,
                        f.flapping,
                        f.sla_clock,
                        f.suppressed_by.is_some()
                    ])?;
                    let id = conn.last_insert_rowid();
                    if let Some(why) = &f.suppressed_by {
                        event(conn, id, f.at_ms, "suppressed", why)?;
                    }
                    event(
                        conn,
                        id,
                        f.at_ms,
                        "open",
                        &format!("{} (value {}, threshold {})", f.title, f.value, f.threshold),
                    )?;
                    Ok(Applied::Opened(id))
                }
            }
        }
        IncidentUpdate::StillFiring {
            key,
            value,
            numeric,
            at_ms,
        } => match open_incident(conn, key)? {
            Some(id) => {
                update_value(conn, id, value, *numeric, *at_ms)?;
                Ok(Applied::Updated(id))
            }
            None => Ok(Applied::Nothing),
        },
        IncidentUpdate::Resolved { key, value, at_ms } => match open_incident(conn, key)? {
            Some(id) => {
                conn.prepare_cached(
                    "UPDATE incidents SET state = 'resolved', resolved_at = ?2, last_value = ?3, last_seen_at = ?2,
                            resolution = 'automatic: the recovery condition held'
                     WHERE incident_id = ?1",
                )?
                .execute(params![id, at_ms, value])?;
                event(
                    conn,
                    id,
                    *at_ms,
                    "auto-resolve",
                    &format!("recovered: {value}"),
                )?;
                Ok(Applied::Resolved(id))
            }
            None => Ok(Applied::Nothing),
        },
        IncidentUpdate::Sla {
            incident_id,
            clock,
            events,
        } => {
            conn.prepare_cached("UPDATE incidents SET sla_clock = ?2 WHERE incident_id = ?1")?
                .execute(params![incident_id, clock])?;
            for (at, action, detail) in events {
                event(conn, *incident_id, *at, action, detail)?;
            }
            Ok(Applied::Updated(*incident_id))
        }
    }
}

/// Open and acknowledged incidents with an SLA clock: (id, clock JSON,
/// acknowledged at, resolved at).
pub fn sla_pending(conn: &Connection) -> rusqlite::Result<Vec<SlaPending>> {
    let mut stmt = conn.prepare_cached(
        "SELECT incident_id, sla_clock, acknowledged_at, resolved_at FROM incidents
         WHERE state IN ('open', 'acknowledged') AND sla_clock != '' AND suppressed = 0",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok(SlaPending {
            incident_id: r.get(0)?,
            clock: r.get(1)?,
            acknowledged_at: r.get(2)?,
            resolved_at: r.get(3)?,
        })
    })?;
    rows.collect()
}

fn open_incident(conn: &Connection, key: &str) -> rusqlite::Result<Option<i64>> {
    conn.prepare_cached(
        "SELECT incident_id FROM incidents WHERE incident_key = ?1 AND state IN ('open', 'acknowledged')
         ORDER BY opened_at DESC LIMIT 1",
    )?
    .query_row([key], |r| r.get(0))
    .optional()
}

fn update_value(
    conn: &Connection,
    id: i64,
    value: &str,
    numeric: Option<f64>,
    at_ms: i64,
) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "UPDATE incidents SET last_value = ?2, last_seen_at = ?4, occurrences = occurrences + 1,
                peak_value = CASE WHEN ?3 IS NULL THEN peak_value
                                  WHEN peak_value IS NULL OR ?3 > peak_value THEN ?3 ELSE peak_value END
         WHERE incident_id = ?1",
    )?
    .execute(params![id, value, numeric, at_ms])?;
    Ok(())
}

/// Appends to an incident's history.
pub fn event(
    conn: &Connection,
    incident_id: i64,
    at_ms: i64,
    action: &str,
    detail: &str,
) -> rusqlite::Result<()> {
    conn.prepare_cached("INSERT INTO incident_events (incident_id, at, actor, action, detail) VALUES (?1, ?2, ?3, ?4, ?5)")?
        .execute(params![incident_id, at_ms, ACTOR, action, detail])?;
    Ok(())
}

/// A severity II filesystem rule firing at `at` with value `v`, for tests.
#[cfg(test)]
pub(crate) fn test_firing(agent: Uuid, at: i64, v: f64) -> Firing {
    Firing {
        rule_id: "fs.used.critical".into(),
        agent_id: agent,
        key: format!("fs.used.critical|{agent}|mount=/"),
        severity: "II".into(),
        title: "Filesystem / almost full".into(),
        description: String::new(),
        value: format!("{v}%"),
        numeric: Some(v),
        threshold: "> 95%".into(),
        at_ms: at,
        flapping: false,
        sla_clock: String::new(),
        suppressed_by: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db() -> (tempfile::TempDir, Connection, Uuid) {
        let dir = tempfile::tempdir().unwrap();
        let conn = super::super::open(&dir.path().join("x.db")).unwrap();
        let agent = Uuid::new_v4();
        conn.execute(
            "INSERT INTO agents (agent_id, enrolled_at, enrolled_with_token, cert_serial, cert_sha256) VALUES (?1, 0, 't', 's', 'c')",
            [agent.to_string()],
        )
        .unwrap();
        (dir, conn, agent)
    }

    fn firing(agent: Uuid, at: i64, v: f64) -> IncidentUpdate {
        IncidentUpdate::Firing(test_firing(agent, at, v))
    }

    fn state(conn: &Connection) -> Vec<(i64, String, i64, Option<f64>, i64)> {
        let mut stmt = conn
            .prepare("SELECT incident_id, state, occurrences, peak_value, reopen_count FROM incidents ORDER BY incident_id")
            .unwrap();
        stmt.query_map([], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
        })
        .unwrap()
        .map(Result::unwrap)
        .collect()
    }

    #[test]
    fn one_incident_per_key_while_firing_then_resolved_and_reopened_within_the_window() {
        let (_d, conn, agent) = db();
        let key = format!("fs.used.critical|{agent}|mount=/");
        assert_eq!(
            apply(&conn, &firing(agent, 1_000, 96.0), 3_600_000).unwrap(),
            Applied::Opened(1)
        );
        assert_eq!(
            apply(&conn, &firing(agent, 2_000, 98.0), 3_600_000).unwrap(),
            Applied::Updated(1)
        );
        let still = IncidentUpdate::StillFiring {
            key: key.clone(),
            value: "97%".into(),
            numeric: Some(97.0),
            at_ms: 3_000,
        };
        assert_eq!(
            apply(&conn, &still, 3_600_000).unwrap(),
            Applied::Updated(1)
        );
        assert_eq!(state(&conn), vec![(1, "open".into(), 3, Some(98.0), 0)]);
        let resolved = IncidentUpdate::Resolved {
            key: key.clone(),
            value: "70%".into(),
            at_ms: 10_000,
        };
        assert_eq!(
            apply(&conn, &resolved, 3_600_000).unwrap(),
            Applied::Resolved(1)
        );
        assert_eq!(
            apply(&conn, &resolved, 3_600_000).unwrap(),
            Applied::Nothing
        );
        assert_eq!(
            apply(&conn, &firing(agent, 20_000, 96.0), 3_600_000).unwrap(),
            Applied::Reopened(1)
        );
        assert_eq!(state(&conn)[0].1, "open");
        assert_eq!(state(&conn)[0].4, 1);
        // Resolved again, and fires after the window: a new incident.
        apply(
            &conn,
            &IncidentUpdate::Resolved {
                key,
                value: "70%".into(),
                at_ms: 30_000,
            },
            3_600_000,
        )
        .unwrap();
        assert_eq!(
            apply(&conn, &firing(agent, 30_000 + 3_600_001, 99.0), 3_600_000).unwrap(),
            Applied::Opened(2)
        );
        let events: i64 = conn
            .query_row("SELECT count(*) FROM incident_events", [], |r| r.get(0))
            .unwrap();
        assert_eq!(events, 5, "open, auto-resolve, reopen, auto-resolve, open");
        assert!(
            conn.execute("DELETE FROM incident_events", []).is_err(),
            "history is append-only"
        );
    }
}
