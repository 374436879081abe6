//! Reads for the CLI and the ingest service, and the administrative writes
//! (tokens, revocations, audit log) that the operators' CLI makes directly.

use std::collections::HashSet;

use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::{StoreError, sql};

/// A freshly created enrollment token. Only `secret_sha256` is stored.
#[derive(Debug, Clone)]
pub struct NewToken {
    pub token_id: String,
    pub secret: String,
    pub expires_at_ms: i64,
}

/// SHA-256 of a token secret, hex: the form tokens are stored and looked up in.
pub fn token_hash(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// Creates a one-time enrollment token and records it in the audit log.
pub fn create_token(
    conn: &mut Connection,
    now_ms: i64,
    ttl_ms: i64,
    uses: u32,
    actor: &str,
    note: &str,
) -> Result<NewToken, StoreError> {
    let secret = hex::encode(rand::random::<[u8; 16]>());
    let token_id = hex::encode(rand::random::<[u8; 4]>());
    let expires_at_ms = now_ms.saturating_add(ttl_ms);
    let tx = conn.transaction().map_err(sql("starting a transaction"))?;
    tx.execute(
        "INSERT INTO enrollment_tokens (token_id, secret_sha256, created_at, expires_at, uses_allowed, created_by, note)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![token_id, token_hash(&secret), now_ms, expires_at_ms, uses, actor, note],
    )
    .map_err(sql("storing the token"))?;
    audit(
        &tx,
        now_ms,
        actor,
        "token.create",
        &token_id,
        &format!("uses={uses} expires_at={}", fmt_time(expires_at_ms)),
    )?;
    tx.commit().map_err(sql("committing the token"))?;
    Ok(NewToken {
        token_id,
        secret,
        expires_at_ms,
    })
}

/// One row of `xunjian token list`.
#[derive(Debug, Clone, Serialize)]
pub struct TokenRow {
    pub token_id: String,
    pub created_at: i64,
    pub expires_at: i64,
    pub uses_allowed: i64,
    pub uses: i64,
    pub created_by: String,
    pub note: String,
}

pub fn list_tokens(conn: &Connection) -> Result<Vec<TokenRow>, StoreError> {
    let mut stmt = conn
        .prepare(
            "SELECT token_id, created_at, expires_at, uses_allowed, uses, created_by, note
             FROM enrollment_tokens ORDER BY created_at",
        )
        .map_err(sql("listing tokens"))?;
    let rows = stmt
        .query_map([], |r| {
            Ok(TokenRow {
                token_id: r.get(0)?,
                created_at: r.get(1)?,
                expires_at: r.get(2)?,
                uses_allowed: r.get(3)?,
                uses: r.get(4)?,
                created_by: r.get(5)?,
                note: r.get(6)?,
            })
        })
        .map_err(sql("listing tokens"))?;
    rows.collect::<Result<_, _>>()
        .map_err(sql("listing tokens"))
}

/// Why a token did not enroll an agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenRefusal {
    #[error("unknown enrollment token")]
    Unknown,
    #[error("enrollment token has expired")]
    Expired,
    #[error("enrollment token has no uses left")]
    UsedUp,
}

/// What enrollment stores about a new agent.
#[derive(Debug, Clone)]
pub struct NewAgent {
    pub agent_id: Uuid,
    pub hostname: String,
    pub agent_version: String,
    pub cert_serial: String,
    pub cert_sha256: String,
}

/// Consumes one use of the token and registers the agent, or refuses without
/// writing anything. Call it inside a transaction (the writer always is).
pub fn enroll_agent(
    tx: &Connection,
    secret: &str,
    agent: &NewAgent,
    now_ms: i64,
) -> Result<Result<String, TokenRefusal>, StoreError> {
    let row: Option<(String, i64, i64, i64)> = tx
        .query_row(
            "SELECT token_id, expires_at, uses_allowed, uses FROM enrollment_tokens WHERE secret_sha256 = ?1",
            [token_hash(secret)],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .optional()
        .map_err(sql("looking up the token"))?;
    let Some((token_id, expires_at, allowed, uses)) = row else {
        return Ok(Err(TokenRefusal::Unknown));
    };
    if now_ms >= expires_at {
        return Ok(Err(TokenRefusal::Expired));
    }
    if uses >= allowed {
        return Ok(Err(TokenRefusal::UsedUp));
    }
    tx.execute(
        "UPDATE enrollment_tokens SET uses = uses + 1 WHERE token_id = ?1",
        [&token_id],
    )
    .map_err(sql("consuming the token"))?;
    tx.execute(
        "INSERT INTO agents (agent_id, hostname, enrolled_at, enrolled_with_token, cert_serial, cert_sha256, agent_version)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![
            agent.agent_id.to_string(),
            agent.hostname,
            now_ms,
            token_id,
            agent.cert_serial,
            agent.cert_sha256,
            agent.agent_version
        ],
    )
    .map_err(sql("registering the agent"))?;
    audit(
        tx,
        now_ms,
        &format!("agent:{}", agent.agent_id),
        "agent.enroll",
        &agent.agent_id.to_string(),
        &format!("token={token_id} hostname={}", agent.hostname),
    )?;
    Ok(Ok(token_id))
}

/// What the ingest service checks when an agent connects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentAuth {
    pub cert_sha256: String,
    pub revoked: bool,
}

pub fn agent_auth(conn: &Connection, agent_id: Uuid) -> Result<Option<AgentAuth>, StoreError> {
    conn.query_row(
        "SELECT cert_sha256, revoked_at IS NOT NULL FROM agents WHERE agent_id = ?1",
        [agent_id.to_string()],
        |r| {
            Ok(AgentAuth {
                cert_sha256: r.get(0)?,
                revoked: r.get(1)?,
            })
        },
    )
    .optional()
    .map_err(sql("looking up the agent"))
}

pub fn revoked_agents(conn: &Connection) -> Result<HashSet<Uuid>, StoreError> {
    let mut stmt = conn
        .prepare_cached("SELECT agent_id FROM agents WHERE revoked_at IS NOT NULL")
        .map_err(sql("listing revocations"))?;
    let ids = stmt
        .query_map([], |r| r.get::<_, String>(0))
        .map_err(sql("listing revocations"))?;
    let mut out = HashSet::new();
    for id in ids {
        if let Ok(id) = Uuid::parse_str(&id.map_err(sql("listing revocations"))?) {
            out.insert(id);
        }
    }
    Ok(out)
}

/// Resolves a full agent id or a unique prefix of one (as `hosts` prints).
pub fn resolve_agent(conn: &Connection, id_or_prefix: &str) -> Result<Uuid, StoreError> {
    let prefix = id_or_prefix.trim().to_ascii_lowercase();
    if prefix.len() < 4 || !prefix.chars().all(|c| c.is_ascii_hexdigit() || c == '-') {
        return Err(StoreError::NotFound(format!(
            "{id_or_prefix:?} is not an agent id (give the id or at least 4 of its first characters)"
        )));
    }
    let mut stmt = conn
        .prepare("SELECT agent_id FROM agents WHERE agent_id LIKE ?1 || '%'")
        .map_err(sql("looking up the agent"))?;
    let ids: Vec<String> = stmt
        .query_map([&prefix], |r| r.get(0))
        .map_err(sql("looking up the agent"))?
        .collect::<Result<_, _>>()
        .map_err(sql("looking up the agent"))?;
    match ids.as_slice() {
        [one] => Uuid::parse_str(one)
            .map_err(|_| StoreError::NotFound(format!("bad stored agent id {one}"))),
        [] => Err(StoreError::NotFound(format!(
            "no agent with id {id_or_prefix}"
        ))),
        many => Err(StoreError::NotFound(format!(
            "{id_or_prefix} matches {} agents; give more of the id",
            many.len()
        ))),
    }
}

/// Revokes an agent: its next connection is refused and an open stream is
/// closed. Returns false when it was already revoked.
pub fn revoke_agent(
    conn: &mut Connection,
    agent_id: Uuid,
    actor: &str,
    reason: &str,
    now_ms: i64,
) -> Result<bool, StoreError> {
    let tx = conn.transaction().map_err(sql("starting a transaction"))?;
    let changed = tx
        .execute(
            "UPDATE agents SET revoked_at = ?2 WHERE agent_id = ?1 AND revoked_at IS NULL",
            params![agent_id.to_string(), now_ms],
        )
        .map_err(sql("revoking the agent"))?;
    if changed == 1 {
        tx.execute(
            "INSERT INTO revocations (agent_id, cert_sha256, revoked_at, revoked_by, reason)
             SELECT agent_id, cert_sha256, ?2, ?3, ?4 FROM agents WHERE agent_id = ?1",
            params![agent_id.to_string(), now_ms, actor, reason],
        )
        .map_err(sql("recording the revocation"))?;
        audit(
            &tx,
            now_ms,
            actor,
            "agent.revoke",
            &agent_id.to_string(),
            reason,
        )?;
    }
    tx.commit().map_err(sql("committing the revocation"))?;
    Ok(changed == 1)
}

/// Appends to the administrative audit log (append-only, enforced by
/// triggers).
pub fn audit(
    conn: &Connection,
    at_ms: i64,
    actor: &str,
    action: &str,
    target: &str,
    detail: &str,
) -> Result<(), StoreError> {
    conn.execute(
        "INSERT INTO audit_log (at, actor, action, target, detail) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![at_ms, actor, action, target, detail],
    )
    .map_err(sql("writing the audit log"))?;
    Ok(())
}

/// One host as `xunjian hosts` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct HostRow {
    pub agent_id: String,
    pub hostname: String,
    pub os: String,
    pub kernel_version: String,
    pub arch: String,
    pub agent_version: String,
    pub enrolled_at: i64,
    pub last_seen_at: Option<i64>,
    pub last_report_at: Option<i64>,
    pub last_sequence: i64,
    pub clock_skew_ms: Option<i64>,
    pub cpu_usage_pct: Option<f64>,
    pub memory_used_pct: Option<f64>,
    pub disk_max_used_pct: Option<f64>,
    pub spool_pending_reports: i64,
    pub spool_dropped_reports_total: i64,
    pub revoked: bool,
}

pub fn hosts(conn: &Connection) -> Result<Vec<HostRow>, StoreError> {
    let query = format!(
        "SELECT a.agent_id, a.hostname, trim(a.os_name || ' ' || a.os_version), a.kernel_version, a.arch,
                a.agent_version, a.enrolled_at, a.last_seen_at, a.last_report_at, a.last_sequence,
                a.clock_skew_ms, a.spool_pending_reports, a.spool_dropped_reports_total,
                a.revoked_at IS NOT NULL
         FROM agents a WHERE a.agent_id != '{fleet}' ORDER BY a.hostname, a.agent_id",
        fleet = crate::inspection::runner::FLEET_AGENT_ID,
    );
    let mut stmt = conn.prepare(&query).map_err(sql("listing hosts"))?;
    let rows = stmt
        .query_map([], |r| {
            Ok(HostRow {
                agent_id: r.get(0)?,
                hostname: r.get(1)?,
                os: r.get(2)?,
                kernel_version: r.get(3)?,
                arch: r.get(4)?,
                agent_version: r.get(5)?,
                enrolled_at: r.get(6)?,
                last_seen_at: r.get(7)?,
                last_report_at: r.get(8)?,
                last_sequence: r.get(9)?,
                clock_skew_ms: r.get(10)?,
                cpu_usage_pct: None,
                memory_used_pct: None,
                disk_max_used_pct: None,
                spool_pending_reports: r.get(11)?,
                spool_dropped_reports_total: r.get(12)?,
                revoked: r.get(13)?,
            })
        })
        .map_err(sql("listing hosts"))?;
    let mut hosts: Vec<HostRow> = rows
        .collect::<Result<_, _>>()
        .map_err(sql("listing hosts"))?;
    for h in &mut hosts {
        // Filesystems of the newest report only: a volume unmounted since
        // does not count.
        let fs_since = h.last_report_at.unwrap_or(i64::MAX);
        let [cpu, memory, fs]: [Vec<f64>; 3] = super::samples::latest_by_names(
            conn,
            &h.agent_id,
            &[
                ("cpu.usage_pct", i64::MIN),
                ("memory.used_pct", i64::MIN),
                ("fs.used_pct", fs_since),
            ],
        )
        .map_err(sql("reading latest samples"))?
        .try_into()
        .expect("one list per name asked for");
        h.cpu_usage_pct = cpu.first().copied();
        h.memory_used_pct = memory.first().copied();
        h.disk_max_used_pct = fs.into_iter().reduce(f64::max);
    }
    Ok(hosts)
}

/// What rule scopes and offline detection need to know about an agent.
#[derive(Debug, Clone)]
pub struct HostFactsRow {
    pub agent_id: String,
    pub hostname: String,
    pub os_name: String,
    pub last_seen_at: Option<i64>,
    /// The agent's spool drop count as last stored.
    pub spool_dropped_total: i64,
    pub labels: std::collections::BTreeMap<String, String>,
    pub groups: Vec<String>,
}

/// Facts of every enrolled (not revoked) agent, or of one.
pub fn host_facts(conn: &Connection, one: Option<Uuid>) -> Result<Vec<HostFactsRow>, StoreError> {
    let mut stmt = conn
        .prepare_cached(
            "SELECT agent_id, hostname, os_name, last_seen_at, spool_dropped_reports_total FROM agents
             WHERE revoked_at IS NULL AND (?1 IS NULL OR agent_id = ?1)",
        )
        .map_err(sql("reading host facts"))?;
    let rows = stmt
        .query_map([one.map(|a| a.to_string())], |r| {
            Ok(HostFactsRow {
                agent_id: r.get(0)?,
                hostname: r.get(1)?,
                os_name: r.get(2)?,
                last_seen_at: r.get(3)?,
                spool_dropped_total: r.get(4)?,
                labels: Default::default(),
                groups: Vec::new(),
            })
        })
        .map_err(sql("reading host facts"))?;
    let mut rows: Vec<HostFactsRow> = rows
        .collect::<Result<_, _>>()
        .map_err(sql("reading host facts"))?;
    for row in &mut rows {
        let (labels, groups) = host_tags(conn, &row.agent_id)?;
        row.labels = labels;
        row.groups = groups;
    }
    Ok(rows)
}

/// Labels as name -> value.
pub type Labels = std::collections::BTreeMap<String, String>;

/// A host's operator-assigned labels and groups.
pub fn host_tags(conn: &Connection, agent_id: &str) -> Result<(Labels, Vec<String>), StoreError> {
    let mut stmt = conn
        .prepare_cached("SELECT name, value FROM host_labels WHERE agent_id = ?1 ORDER BY name")
        .map_err(sql("reading host labels"))?;
    let labels = stmt
        .query_map([agent_id], |r| Ok((r.get(0)?, r.get(1)?)))
        .map_err(sql("reading host labels"))?
        .collect::<Result<_, _>>()
        .map_err(sql("reading host labels"))?;
    let mut stmt = conn
        .prepare_cached(
            "SELECT group_name FROM host_groups WHERE agent_id = ?1 ORDER BY group_name",
        )
        .map_err(sql("reading host groups"))?;
    let groups = stmt
        .query_map([agent_id], |r| r.get(0))
        .map_err(sql("reading host groups"))?
        .collect::<Result<_, _>>()
        .map_err(sql("reading host groups"))?;
    Ok((labels, groups))
}

/// A change to a host's labels or groups.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostTag {
    /// An empty value removes the label.
    Label {
        name: String,
        value: String,
    },
    Group {
        name: String,
        member: bool,
    },
}

/// Applies a label or group change to a host; audited. Names are 1-64 of
/// [a-z0-9_.-].
pub fn tag_host(
    conn: &mut Connection,
    agent: Uuid,
    change: &HostTag,
    actor: &str,
    now_ms: i64,
) -> Result<(), StoreError> {
    let valid = |n: &str| {
        !n.is_empty()
            && n.len() <= 64
            && n.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_.-".contains(&b))
    };
    let (name, detail) = match change {
        HostTag::Label { name, value } => (name, format!("label {name}={value}")),
        HostTag::Group { name, member } => (
            name,
            format!("group {name} {}", if *member { "added" } else { "removed" }),
        ),
    };
    if !valid(name) {
        return Err(StoreError::NotFound(format!(
            "{name:?} is not a valid name (use 1-64 of a-z 0-9 _ . -)"
        )));
    }
    let id = agent.to_string();
    let tx = conn.transaction().map_err(sql("starting a transaction"))?;
    match change {
        HostTag::Label { name, value } if value.is_empty() => tx.execute(
            "DELETE FROM host_labels WHERE agent_id = ?1 AND name = ?2",
            params![id, name],
        ),
        HostTag::Label { name, value } => tx.execute(
            "INSERT INTO host_labels (agent_id, name, value) VALUES (?1, ?2, ?3)
             ON CONFLICT (agent_id, name) DO UPDATE SET value = excluded.value",
            params![id, name, value],
        ),
        HostTag::Group { name, member: true } => tx.execute(
            "INSERT OR IGNORE INTO host_groups (agent_id, group_name) VALUES (?1, ?2)",
            params![id, name],
        ),
        HostTag::Group {
            name,
            member: false,
        } => tx.execute(
            "DELETE FROM host_groups WHERE agent_id = ?1 AND group_name = ?2",
            params![id, name],
        ),
    }
    .map_err(sql("tagging the host"))?;
    audit(&tx, now_ms, actor, "agent.tag", &id, &detail)?;
    tx.commit().map_err(sql("committing"))?;
    Ok(())
}

/// A silence or maintenance window.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Silence {
    pub silence_id: i64,
    /// Only this agent's incidents; `None` = every host.
    pub agent_id: Option<String>,
    /// Only this rule's incidents; `None` = every rule.
    pub rule_id: Option<String>,
    /// Only hosts in this group; `None` = any.
    pub group_name: Option<String>,
    pub starts_at: i64,
    pub ends_at: i64,
    pub reason: String,
    pub created_by: String,
}

impl Silence {
    /// Whether an incident of `rule_id` on `agent_id` (member of `groups`)
    /// firing at `at_ms` is silenced.
    pub fn matches(&self, agent_id: &str, groups: &[String], rule_id: &str, at_ms: i64) -> bool {
        (self.starts_at..self.ends_at).contains(&at_ms)
            && self.agent_id.as_deref().is_none_or(|a| a == agent_id)
            && self.rule_id.as_deref().is_none_or(|r| r == rule_id)
            && self
                .group_name
                .as_deref()
                .is_none_or(|g| groups.iter().any(|x| x == g))
    }
}

/// Adds a silence (audited). A silence must name a host or a rule, have a
/// reason, and end after it starts.
#[allow(clippy::too_many_arguments)]
pub fn add_silence(
    conn: &mut Connection,
    agent_id: Option<Uuid>,
    group_name: Option<&str>,
    rule_id: Option<&str>,
    starts_at: i64,
    ends_at: i64,
    reason: &str,
    actor: &str,
    now_ms: i64,
) -> Result<i64, StoreError> {
    if agent_id.is_none() && rule_id.is_none() && group_name.is_none() {
        return Err(StoreError::NotFound(
            "a silence needs --agent, --group or --rule (silencing everything is not allowed)"
                .into(),
        ));
    }
    if reason.trim().is_empty() {
        return Err(StoreError::NotFound("a silence needs a --reason".into()));
    }
    if ends_at <= starts_at || ends_at <= now_ms {
        return Err(StoreError::NotFound(
            "a silence must end after it starts and in the future".into(),
        ));
    }
    let tx = conn.transaction().map_err(sql("starting a transaction"))?;
    tx.execute(
        "INSERT INTO silences (agent_id, rule_id, starts_at, ends_at, reason, created_by, created_at, group_name)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        params![agent_id.map(|a| a.to_string()), rule_id, starts_at, ends_at, reason, actor, now_ms, group_name],
    )
    .map_err(sql("storing the silence"))?;
    let id = tx.last_insert_rowid();
    audit(
        &tx,
        now_ms,
        actor,
        "silence.add",
        &id.to_string(),
        &format!(
            "agent={} group={} rule={} from {} to {}: {reason}",
            agent_id
                .map(|a| a.to_string())
                .unwrap_or_else(|| "*".into()),
            group_name.unwrap_or("*"),
            rule_id.unwrap_or("*"),
            fmt_time(starts_at),
            fmt_time(ends_at)
        ),
    )?;
    tx.commit().map_err(sql("committing the silence"))?;
    Ok(id)
}

/// Silences not removed and not yet over at `now_ms` (current and future).
pub fn active_silences(conn: &Connection, now_ms: i64) -> Result<Vec<Silence>, StoreError> {
    let mut stmt = conn
        .prepare_cached(
            "SELECT silence_id, agent_id, rule_id, starts_at, ends_at, reason, created_by, group_name FROM silences
             WHERE removed_at IS NULL AND ends_at > ?1 ORDER BY starts_at",
        )
        .map_err(sql("listing silences"))?;
    let rows = stmt
        .query_map([now_ms], |r| {
            Ok(Silence {
                silence_id: r.get(0)?,
                agent_id: r.get(1)?,
                rule_id: r.get(2)?,
                starts_at: r.get(3)?,
                ends_at: r.get(4)?,
                reason: r.get(5)?,
                created_by: r.get(6)?,
                group_name: r.get(7)?,
            })
        })
        .map_err(sql("listing silences"))?;
    rows.collect::<Result<_, _>>()
        .map_err(sql("listing silences"))
}

/// Removes a silence early (audited). False when there was none to remove.
pub fn remove_silence(
    conn: &mut Connection,
    id: i64,
    actor: &str,
    now_ms: i64,
) -> Result<bool, StoreError> {
    let tx = conn.transaction().map_err(sql("starting a transaction"))?;
    let changed = tx
        .execute(
            "UPDATE silences SET removed_at = ?2 WHERE silence_id = ?1 AND removed_at IS NULL",
            params![id, now_ms],
        )
        .map_err(sql("removing the silence"))?;
    if changed == 1 {
        audit(&tx, now_ms, actor, "silence.remove", &id.to_string(), "")?;
    }
    tx.commit().map_err(sql("committing"))?;
    Ok(changed == 1)
}

/// One incident as `xunjian incidents` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct IncidentRow {
    pub incident_id: i64,
    pub rule_id: String,
    pub agent_id: String,
    pub hostname: String,
    pub severity: String,
    pub state: String,
    pub title: String,
    pub opened_at: i64,
    pub resolved_at: Option<i64>,
    pub last_value: String,
    pub peak_value: Option<f64>,
    pub threshold: String,
    pub occurrences: i64,
    pub reopen_count: i64,
    pub flapping: bool,
}

/// What a notification about an incident needs.
#[derive(Debug, Clone)]
pub struct IncidentNotice {
    pub severity: String,
    pub hostname: String,
    pub title: String,
    pub last_value: String,
    pub threshold: String,
    pub suppressed: bool,
}

pub fn incident_for_notice(
    conn: &Connection,
    id: i64,
) -> Result<Option<IncidentNotice>, StoreError> {
    conn.prepare_cached(
        "SELECT i.severity, a.hostname, i.title, i.last_value, i.threshold, i.suppressed
         FROM incidents i JOIN agents a USING (agent_id) WHERE i.incident_id = ?1",
    )
    .map_err(sql("reading the incident"))?
    .query_row([id], |r| {
        Ok(IncidentNotice {
            severity: r.get(0)?,
            hostname: r.get(1)?,
            title: r.get(2)?,
            last_value: r.get(3)?,
            threshold: r.get(4)?,
            suppressed: r.get(5)?,
        })
    })
    .optional()
    .map_err(sql("reading the incident"))
}

/// Incidents, newest first; only open and acknowledged ones with `open_only`.
pub fn list_incidents(
    conn: &Connection,
    open_only: bool,
    limit: u32,
) -> Result<Vec<IncidentRow>, StoreError> {
    let mut stmt = conn
        .prepare(
            "SELECT i.incident_id, i.rule_id, i.agent_id, a.hostname, i.severity, i.state, i.title, i.opened_at,
                    i.resolved_at, i.last_value, i.peak_value, i.threshold, i.occurrences, i.reopen_count, i.flapping
             FROM incidents i JOIN agents a USING (agent_id)
             WHERE ?1 = 0 OR i.state IN ('open', 'acknowledged')
             ORDER BY i.opened_at DESC, i.incident_id DESC LIMIT ?2",
        )
        .map_err(sql("listing incidents"))?;
    let rows = stmt
        .query_map(params![open_only, limit], |r| {
            Ok(IncidentRow {
                incident_id: r.get(0)?,
                rule_id: r.get(1)?,
                agent_id: r.get(2)?,
                hostname: r.get(3)?,
                severity: r.get(4)?,
                state: r.get(5)?,
                title: r.get(6)?,
                opened_at: r.get(7)?,
                resolved_at: r.get(8)?,
                last_value: r.get(9)?,
                peak_value: r.get(10)?,
                threshold: r.get(11)?,
                occurrences: r.get(12)?,
                reopen_count: r.get(13)?,
                flapping: r.get(14)?,
            })
        })
        .map_err(sql("listing incidents"))?;
    rows.collect::<Result<_, _>>()
        .map_err(sql("listing incidents"))
}

/// One configuration change as `xunjian changes` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct ChangeRow {
    pub agent_id: String,
    pub hostname: String,
    pub collected_at: i64,
    pub path: String,
    pub before: String,
    pub after: String,
}

/// Configuration changes, newest first, optionally for one agent.
pub fn config_changes(
    conn: &Connection,
    agent: Option<Uuid>,
    limit: u32,
) -> Result<Vec<ChangeRow>, StoreError> {
    let mut stmt = conn
        .prepare(
            "SELECT c.agent_id, a.hostname, c.collected_at, c.path, c.before, c.after
             FROM config_changes c JOIN agents a USING (agent_id)
             WHERE ?1 IS NULL OR c.agent_id = ?1
             ORDER BY c.collected_at DESC, c.change_id LIMIT ?2",
        )
        .map_err(sql("listing configuration changes"))?;
    let rows = stmt
        .query_map(params![agent.map(|a| a.to_string()), limit], |r| {
            Ok(ChangeRow {
                agent_id: r.get(0)?,
                hostname: r.get(1)?,
                collected_at: r.get(2)?,
                path: r.get(3)?,
                before: r.get(4)?,
                after: r.get(5)?,
            })
        })
        .map_err(sql("listing configuration changes"))?;
    rows.collect::<Result<_, _>>()
        .map_err(sql("listing configuration changes"))
}

/// RFC 3339 UTC, seconds precision, for messages and tables.
pub fn fmt_time(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_else(|| format!("@{ms}ms"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db() -> (tempfile::TempDir, Connection) {
        let dir = tempfile::tempdir().unwrap();
        let conn = super::super::open(&dir.path().join("x.db")).unwrap();
        (dir, conn)
    }

    fn agent() -> NewAgent {
        NewAgent {
            agent_id: Uuid::new_v4(),
            hostname: "web-1".into(),
            agent_version: "0.1.0".into(),
            cert_serial: "01".into(),
            cert_sha256: "ab".into(),
        }
    }

    fn count(conn: &Connection, table: &str) -> i64 {
        conn.query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))
            .unwrap()
    }

    #[test]
    fn token_is_stored_hashed_and_counts_uses() {
        let (_d, mut conn) = db();
        let t = create_token(&mut conn, 1_000, 60_000, 1, "tester", "").unwrap();
        let stored: String = conn
            .query_row("SELECT secret_sha256 FROM enrollment_tokens", [], |r| {
                r.get(0)
            })
            .unwrap();
        assert_ne!(stored, t.secret);
        assert_eq!(stored, token_hash(&t.secret));

        let tx = conn.transaction().unwrap();
        assert!(
            enroll_agent(&tx, &t.secret, &agent(), 2_000)
                .unwrap()
                .is_ok()
        );
        tx.commit().unwrap();
        let tx = conn.transaction().unwrap();
        assert_eq!(
            enroll_agent(&tx, &t.secret, &agent(), 3_000).unwrap(),
            Err(TokenRefusal::UsedUp)
        );
        drop(tx);
        assert_eq!(count(&conn, "agents"), 1);
    }

    #[test]
    fn expired_and_unknown_tokens_are_refused() {
        let (_d, mut conn) = db();
        let t = create_token(&mut conn, 1_000, 60_000, 5, "tester", "").unwrap();
        let tx = conn.transaction().unwrap();
        assert_eq!(
            enroll_agent(&tx, &t.secret, &agent(), 61_000).unwrap(),
            Err(TokenRefusal::Expired)
        );
        assert_eq!(
            enroll_agent(&tx, "nope", &agent(), 2_000).unwrap(),
            Err(TokenRefusal::Unknown)
        );
        drop(tx);
        assert_eq!(count(&conn, "agents"), 0);
    }

    #[test]
    fn silences_match_by_host_rule_and_time_and_are_audited() {
        let (_d, mut conn) = db();
        let t = create_token(&mut conn, 1_000, 60_000, 1, "tester", "").unwrap();
        let a = agent();
        let tx = conn.transaction().unwrap();
        enroll_agent(&tx, &t.secret, &a, 2_000).unwrap().unwrap();
        tx.commit().unwrap();
        let none: Option<&str> = None;
        assert!(
            add_silence(&mut conn, None, none, none, 0, 10, "x", "ops", 0).is_err(),
            "must name a target"
        );
        assert!(
            add_silence(&mut conn, None, none, Some("r"), 0, 10, " ", "ops", 0).is_err(),
            "needs a reason"
        );
        let id = add_silence(
            &mut conn,
            Some(a.agent_id),
            none,
            none,
            5_000,
            9_000,
            "disk swap",
            "ops",
            3_000,
        )
        .unwrap();
        let s = &active_silences(&conn, 4_000).unwrap()[0];
        let agent = a.agent_id.to_string();
        assert!(s.matches(&agent, &[], "any.rule", 5_000));
        assert!(
            !s.matches(&agent, &[], "any.rule", 4_999),
            "a maintenance window starts later"
        );
        assert!(!s.matches(&agent, &[], "any.rule", 9_000));
        assert!(!s.matches("other", &[], "any.rule", 6_000));
        assert!(remove_silence(&mut conn, id, "ops", 6_000).unwrap());
        assert!(active_silences(&conn, 6_000).unwrap().is_empty());

        let g = add_silence(
            &mut conn,
            None,
            Some("db"),
            none,
            7_000,
            9_000,
            "db patching",
            "ops",
            6_500,
        )
        .unwrap();
        let gs = active_silences(&conn, 6_500)
            .unwrap()
            .into_iter()
            .find(|s| s.silence_id == g)
            .unwrap();
        assert!(gs.matches("other", &["db".into()], "r", 8_000));
        assert!(!gs.matches("other", &["web".into()], "r", 8_000));
        assert_eq!(count(&conn, "audit_log WHERE action LIKE 'silence.%'"), 3);

        let label = HostTag::Label {
            name: "env".into(),
            value: "prod".into(),
        };
        tag_host(&mut conn, a.agent_id, &label, "ops", 7_000).unwrap();
        let group = HostTag::Group {
            name: "db".into(),
            member: true,
        };
        tag_host(&mut conn, a.agent_id, &group, "ops", 7_000).unwrap();
        let facts = host_facts(&conn, Some(a.agent_id)).unwrap();
        assert_eq!(facts[0].labels.get("env").map(String::as_str), Some("prod"));
        assert_eq!(facts[0].groups, vec!["db".to_string()]);
        let bad = HostTag::Group {
            name: "Bad Name".into(),
            member: true,
        };
        assert!(tag_host(&mut conn, a.agent_id, &bad, "ops", 7_000).is_err());
    }

    #[test]
    fn revoke_is_recorded_once_and_audited() {
        let (_d, mut conn) = db();
        let t = create_token(&mut conn, 1_000, 60_000, 1, "tester", "").unwrap();
        let a = agent();
        let tx = conn.transaction().unwrap();
        enroll_agent(&tx, &t.secret, &a, 2_000).unwrap().unwrap();
        tx.commit().unwrap();
        let prefix = &a.agent_id.to_string()[..8];
        assert_eq!(resolve_agent(&conn, prefix).unwrap(), a.agent_id);
        assert!(revoke_agent(&mut conn, a.agent_id, "ops", "laptop stolen", 5_000).unwrap());
        assert!(!revoke_agent(&mut conn, a.agent_id, "ops", "again", 6_000).unwrap());
        assert!(revoked_agents(&conn).unwrap().contains(&a.agent_id));
        assert!(agent_auth(&conn, a.agent_id).unwrap().unwrap().revoked);
        assert_eq!(count(&conn, "revocations"), 1);
        // token.create, agent.enroll, agent.revoke
        assert_eq!(count(&conn, "audit_log"), 3);
        assert!(resolve_agent(&conn, "zz").is_err());
    }
}
