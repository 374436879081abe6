//! Operators' actions on stored incidents (acknowledge, assign, comment,
//! resolve with root cause, close). The transition rules live in
//! `incidents::lifecycle`; this module loads the row into that model, applies
//! the action there, and writes the result, its history entry and the audit
//! log in one transaction. A refused action changes nothing.

use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension, params};

use super::{StoreError, audit, sql};
use crate::incidents::lifecycle::{AuditEntry, Incident, LifecycleError, Resolution, State};
use crate::sla::Severity;

/// What an operator asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Acknowledge,
    Assign(String),
    Comment(String),
    Resolve {
        root_cause: String,
        actions_taken: String,
    },
    Close,
}

/// Why an action was not applied.
#[derive(Debug, thiserror::Error)]
pub enum ActionError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("no incident {0}")]
    NotFound(i64),
    #[error(transparent)]
    Refused(#[from] LifecycleError),
}

/// Applies `action` by `actor` at `now` to incident `id`.
pub fn act(
    conn: &mut Connection,
    id: i64,
    action: &Action,
    actor: &str,
    now: DateTime<Utc>,
) -> Result<AuditEntry, ActionError> {
    let tx = conn.transaction().map_err(sql("starting a transaction"))?;
    let mut incident = load(&tx, id)?.ok_or(ActionError::NotFound(id))?;
    let entry = match action {
        Action::Acknowledge => incident.acknowledge(actor, now)?,
        Action::Assign(who) => incident.assign(actor, who, now)?,
        Action::Comment(text) => incident.comment(actor, text, now)?,
        Action::Resolve {
            root_cause,
            actions_taken,
        } => incident.resolve_manual(actor, root_cause, actions_taken, now)?,
        Action::Close => incident.close(actor, now)?,
    };
    save(&tx, &incident)?;
    let at = entry.at.timestamp_millis();
    tx.execute(
        "INSERT INTO incident_events (incident_id, at, actor, action, detail) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![id, at, entry.actor, entry.action.as_str(), entry.detail],
    )
    .map_err(sql("recording the incident history"))?;
    audit(
        &tx,
        at,
        &entry.actor,
        &format!("incident.{}", entry.action.as_str()),
        &id.to_string(),
        &entry.detail,
    )?;
    tx.commit().map_err(sql("committing the incident action"))?;
    Ok(entry)
}

fn time(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

fn severity(text: &str) -> Severity {
    Severity::parse(text).unwrap_or(Severity::IV)
}

fn state(text: &str) -> State {
    match text {
        "acknowledged" => State::Acknowledged,
        "resolved" => State::Resolved,
        "closed" => State::Closed,
        _ => State::Open,
    }
}

fn non_empty(s: String) -> Option<String> {
    (!s.is_empty()).then_some(s)
}

/// The stored incident in the lifecycle model.
pub fn load(conn: &Connection, id: i64) -> Result<Option<Incident>, StoreError> {
    conn.query_row(
        "SELECT incident_id, rule_id, agent_id, incident_key, severity, title, description, threshold, state,
                opened_at, acknowledged_at, acknowledged_by, resolved_at, resolution, resolved_by, closed_at,
                reopen_count, first_value, last_value, peak_value, occurrences, flapping, last_seen_at,
                assignee, root_cause, actions_taken, suppressed
         FROM incidents WHERE incident_id = ?1",
        [id],
        |r| {
            let resolution: String = r.get(13)?;
            Ok(Incident {
                id: r.get(0)?,
                rule_id: r.get(1)?,
                agent_id: r.get(2)?,
                key: r.get(3)?,
                severity: severity(&r.get::<_, String>(4)?),
                title: r.get(5)?,
                description: r.get(6)?,
                threshold: r.get(7)?,
                state: state(&r.get::<_, String>(8)?),
                opened_at: time(r.get(9)?),
                acknowledged_at: r.get::<_, Option<i64>>(10)?.map(time),
                acknowledged_by: non_empty(r.get(11)?),
                resolved_at: r.get::<_, Option<i64>>(12)?.map(time),
                resolution: if resolution.starts_with("automatic") {
                    Some(Resolution::Automatic)
                } else if resolution.starts_with("manual") {
                    Some(Resolution::Manual)
                } else {
                    None
                },
                resolved_by: non_empty(r.get(14)?),
                closed_at: r.get::<_, Option<i64>>(15)?.map(time),
                reopen_count: r.get(16)?,
                first_value: r.get(17)?,
                last_value: r.get(18)?,
                peak_value: r.get(19)?,
                recovery_value: None,
                occurrences: r.get::<_, i64>(20)?.max(0) as u64,
                flapping: r.get(21)?,
                last_fired_at: time(r.get(22)?),
                assignee: non_empty(r.get(23)?),
                root_cause: non_empty(r.get(24)?),
                actions_taken: non_empty(r.get(25)?),
                suppressed: r.get(26)?,
            })
        },
    )
    .optional()
    .map_err(sql("reading the incident"))
}

fn save(conn: &Connection, i: &Incident) -> Result<(), StoreError> {
    let ms = |t: Option<DateTime<Utc>>| t.map(|t| t.timestamp_millis());
    let resolution = match i.resolution {
        Some(Resolution::Manual) => "manual".to_owned(),
        Some(Resolution::Automatic) => "automatic: the recovery condition held".to_owned(),
        None => String::new(),
    };
    conn.execute(
        "UPDATE incidents SET state = ?2, acknowledged_at = ?3, acknowledged_by = ?4, resolved_at = ?5,
                resolution = ?6, resolved_by = ?7, closed_at = ?8, assignee = ?9, root_cause = ?10,
                actions_taken = ?11, suppressed = ?12
         WHERE incident_id = ?1",
        params![
            i.id,
            i.state.as_str(),
            ms(i.acknowledged_at),
            i.acknowledged_by.clone().unwrap_or_default(),
            ms(i.resolved_at),
            resolution,
            i.resolved_by.clone().unwrap_or_default(),
            ms(i.closed_at),
            i.assignee.clone().unwrap_or_default(),
            i.root_cause.clone().unwrap_or_default(),
            i.actions_taken.clone().unwrap_or_default(),
            i.suppressed
        ],
    )
    .map_err(sql("saving the incident"))?;
    Ok(())
}

/// An incident's history, oldest first: (at, actor, action, detail).
pub fn history(
    conn: &Connection,
    id: i64,
) -> Result<Vec<(i64, String, String, String)>, StoreError> {
    let mut stmt = conn
        .prepare("SELECT at, actor, action, detail FROM incident_events WHERE incident_id = ?1 ORDER BY event_id")
        .map_err(sql("reading incident history"))?;
    let rows = stmt
        .query_map([id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
        .map_err(sql("reading incident history"))?;
    rows.collect::<Result<_, _>>()
        .map_err(sql("reading incident history"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::incidents::{IncidentUpdate, apply, test_firing};
    use uuid::Uuid;

    fn setup() -> (tempfile::TempDir, Connection, i64) {
        let dir = tempfile::tempdir().unwrap();
        let conn = super::super::open(&dir.path().join("x.db")).unwrap();
        let agent = Uuid::new_v4();
        conn.execute(
            "INSERT INTO agents (agent_id, enrolled_at, enrolled_with_token, cert_serial, cert_sha256) VALUES (?1, 0, 't', 's', 'c')",
            [agent.to_string()],
        )
        .unwrap();
        let firing = IncidentUpdate::Firing(test_firing(agent, 1_000, 96.0));
        apply(&conn, &firing, 3_600_000).unwrap();
        (dir, conn, 1)
    }

    fn at(ms: i64) -> DateTime<Utc> {
        DateTime::from_timestamp_millis(ms).unwrap()
    }

    fn state_of(conn: &Connection) -> String {
        conn.query_row("SELECT state FROM incidents", [], |r| r.get(0))
            .unwrap()
    }

    #[test]
    fn operator_path_ack_assign_comment_resolve_close_is_recorded_and_audited() {
        let (_d, mut conn, id) = setup();
        act(&mut conn, id, &Action::Acknowledge, "cli:ops", at(2_000)).unwrap();
        assert_eq!(state_of(&conn), "acknowledged");
        act(
            &mut conn,
            id,
            &Action::Assign("wang".into()),
            "cli:ops",
            at(3_000),
        )
        .unwrap();
        act(
            &mut conn,
            id,
            &Action::Comment("looking".into()),
            "cli:ops",
            at(4_000),
        )
        .unwrap();
        // Manual resolution needs a root cause and what was done.
        let refused = act(
            &mut conn,
            id,
            &Action::Resolve {
                root_cause: String::new(),
                actions_taken: "cleaned".into(),
            },
            "cli:ops",
            at(5_000),
        );
        assert!(
            matches!(refused, Err(ActionError::Refused(_))),
            "{refused:?}"
        );
        assert_eq!(
            state_of(&conn),
            "acknowledged",
            "a refused action changes nothing"
        );
        // Closing is only possible once resolved.
        assert!(act(&mut conn, id, &Action::Close, "cli:ops", at(5_500)).is_err());
        act(
            &mut conn,
            id,
            &Action::Resolve {
                root_cause: "log rotation broken".into(),
                actions_taken: "fixed logrotate, removed old logs".into(),
            },
            "cli:ops",
            at(6_000),
        )
        .unwrap();
        act(&mut conn, id, &Action::Close, "cli:ops", at(7_000)).unwrap();
        assert_eq!(state_of(&conn), "closed");
        let (cause, who): (String, String) = conn
            .query_row("SELECT root_cause, assignee FROM incidents", [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .unwrap();
        assert_eq!(
            (cause.as_str(), who.as_str()),
            ("log rotation broken", "wang")
        );
        let actions: Vec<String> = history(&conn, id)
            .unwrap()
            .into_iter()
            .map(|h| h.2)
            .collect();
        assert_eq!(actions.len(), 6, "{actions:?}");
        let audited: i64 = conn
            .query_row(
                "SELECT count(*) FROM audit_log WHERE action LIKE 'incident.%'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(audited, 5);
        assert!(matches!(
            act(&mut conn, 99, &Action::Close, "x", at(1)),
            Err(ActionError::NotFound(99))
        ));
    }
}
