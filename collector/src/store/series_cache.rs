//! The writer's memory of series ids: (agent, metric name, labels) → the
//! `series` row, so storing a sample costs a lookup in a small per-agent
//! map instead of a query, and the agent's hourly budget of new series.
//!
//! Why per agent: with one map over a fleet's million series, every lookup
//! was two cache misses into tens of megabytes (a quarter of the writer's
//! time in the `writer` benchmark). A report's lookups all fall in its
//! agent's map of a few KB.
//!
//! Ids of series created by the transaction in progress are staged, and
//! only known once it commits; a job rolled back to its savepoint takes
//! its staged ids with it (the rows are gone, and SQLite would give their
//! ids to the next series created).

use std::collections::{BTreeMap, HashMap};
use std::hash::{BuildHasherDefault, Hash, Hasher};

use siphasher::sip128::{Hasher128, SipHasher13};

use rusqlite::{Connection, OptionalExtension, params};
use xunjian_proto::Label;

/// Series ids remembered between transactions (about 40 bytes each);
/// cleared when it grows past this: twice 10,000 agents × 100 series.
const SERIES_CACHE_MAX: usize = 2_000_000;

/// Hashes a [`SeriesKey`] by its own bits: they are already the output of
/// SipHash under this process's random key, so hashing them again would
/// only cost time, and no client can aim collisions at them.
#[derive(Default)]
struct KeyBits(u64);

impl Hasher for KeyBits {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Not used by u128 keys; kept correct for any other input.
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u128(&mut self, n: u128) {
        self.0 = n as u64;
    }
}

/// A 128-bit key for (metric name, labels) within one agent: SipHash-1-3
/// with 128-bit output under a random key. Two series sharing a key would
/// share an id, so 64 bits would not do. (Two 64-bit runs over the same
/// strings, as before, cost twice the hashing: 9 % of the writer.)
type SeriesKey = u128;
type KeyMap = HashMap<SeriesKey, i64, BuildHasherDefault<KeyBits>>;

#[derive(Default)]
struct AgentSeries {
    known: KeyMap,
    staged: KeyMap,
}

pub struct SeriesCache {
    /// This process's SipHash key, random (no `Default`: a zero key would
    /// let a client aim collisions).
    keys: (u64, u64),
    /// Each agent's place in `agents`.
    slots: HashMap<String, usize>,
    agents: Vec<AgentSeries>,
    /// The agent of the last lookup and its place: a report's lookups are
    /// all one agent's, so the agent's map is found once a report rather
    /// than by hashing its id once a metric (a tenth of the writer).
    current: Option<(String, usize)>,
    known_len: usize,
    /// (agent's place, key) of every staged id, in the order staged.
    staged_log: Vec<(usize, SeriesKey)>,
    /// Where the current job's staged ids start in `staged_log`.
    job_start: usize,
    /// New series each agent may create per hour.
    new_per_hour: usize,
    /// Per agent: (hour, series created in it). Kept in memory: after a
    /// restart an agent may create one more hour's budget.
    created: HashMap<String, (i64, usize)>,
}

impl SeriesCache {
    pub fn new(new_per_hour: usize) -> Self {
        Self {
            keys: rand::random(),
            slots: HashMap::new(),
            agents: Vec::new(),
            current: None,
            known_len: 0,
            staged_log: Vec::new(),
            job_start: 0,
            new_per_hour,
            created: HashMap::new(),
        }
    }

    /// The key of a series of one agent. Labels count as the stored JSON
    /// does: sorted by name, the last of a repeated name winning.
    fn key(&self, name: &str, labels: &[Label]) -> SeriesKey {
        let mut h = SipHasher13::new_with_keys(self.keys.0, self.keys.1);
        name.hash(&mut h);
        if labels.is_sorted_by(|a, b| a.name < b.name) {
            labels.len().hash(&mut h);
            for l in labels {
                (&l.name, &l.value).hash(&mut h);
            }
        } else {
            let sorted: BTreeMap<&str, &str> = labels
                .iter()
                .map(|l| (l.name.as_str(), l.value.as_str()))
                .collect();
            sorted.len().hash(&mut h);
            for pair in sorted {
                pair.hash(&mut h);
            }
        }
        h.finish128().into()
    }

    /// The series id, creating the series if the agent's hourly budget
    /// allows; `None` when it is new and the budget is spent.
    pub fn id(
        &mut self,
        conn: &Connection,
        agent: &str,
        name: &str,
        labels: &[Label],
        now_ms: i64,
    ) -> rusqlite::Result<Option<i64>> {
        let key = self.key(name, labels);
        let slot = self.slot(agent);
        let series = &self.agents[slot];
        if let Some(id) = series.known.get(&key).or_else(|| series.staged.get(&key)) {
            return Ok(Some(*id));
        }
        let labels = super::writer::labels_json(labels);
        let existing: Option<i64> = conn
            .prepare_cached(
                "SELECT series_id FROM series WHERE agent_id = ?1 AND name = ?2 AND labels = ?3",
            )?
            .query_row(params![agent, name, labels], |r| r.get(0))
            .optional()?;
        let id = match existing {
            Some(id) => id,
            None => {
                let hour = now_ms.div_euclid(3_600_000);
                let budget = self.created.entry(agent.to_owned()).or_insert((hour, 0));
                if budget.0 != hour {
                    *budget = (hour, 0);
                }
                if budget.1 >= self.new_per_hour {
                    return Ok(None);
                }
                budget.1 += 1;
                conn.prepare_cached(
                    "INSERT INTO series (agent_id, name, labels) VALUES (?1, ?2, ?3)",
                )?
                .execute(params![agent, name, labels])?;
                conn.last_insert_rowid()
            }
        };
        self.agents[slot].staged.insert(key, id);
        self.staged_log.push((slot, key));
        Ok(Some(id))
    }

    /// The agent's place in `agents`, added if new.
    fn slot(&mut self, agent: &str) -> usize {
        if let Some((current, slot)) = &self.current
            && current == agent
        {
            return *slot;
        }
        let slot = match self.slots.get(agent) {
            Some(&slot) => slot,
            None => {
                self.agents.push(AgentSeries::default());
                self.slots.insert(agent.to_owned(), self.agents.len() - 1);
                self.agents.len() - 1
            }
        };
        match &mut self.current {
            Some((current, place)) => {
                current.clear();
                current.push_str(agent);
                *place = slot;
            }
            None => self.current = Some((agent.to_owned(), slot)),
        }
        slot
    }

    /// A job starts inside its own savepoint.
    pub fn job_started(&mut self) {
        self.job_start = self.staged_log.len();
    }

    /// The job was rolled back to its savepoint: the series it created are
    /// gone, and one it found may be too (created earlier in this job).
    pub fn job_rolled_back(&mut self) {
        for (slot, key) in self.staged_log.drain(self.job_start..) {
            self.agents[slot].staged.remove(&key);
        }
    }

    /// The transaction committed: staged ids are known from now on.
    pub fn committed(&mut self) {
        self.job_start = 0;
        if self.known_len + self.staged_log.len() > SERIES_CACHE_MAX {
            self.clear();
            return;
        }
        for (slot, key) in self.staged_log.drain(..) {
            let series = &mut self.agents[slot];
            if let Some(id) = series.staged.remove(&key)
                && series.known.insert(key, id).is_none()
            {
                self.known_len += 1;
            }
        }
    }

    /// The transaction rolled back, or the cache is full: start over from
    /// the database.
    pub fn clear(&mut self) {
        self.slots.clear();
        self.agents.clear();
        self.current = None;
        self.known_len = 0;
        self.staged_log.clear();
        self.job_start = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn label(name: &str, value: &str) -> Label {
        Label {
            name: name.into(),
            value: value.into(),
        }
    }

    #[test]
    fn label_order_does_not_matter_but_names_values_and_boundaries_do() {
        let cache = SeriesCache::new(10);
        let ab = [label("a", "1"), label("b", "2")];
        let ba = [label("b", "2"), label("a", "1")];
        assert_eq!(cache.key("m", &ab), cache.key("m", &ba));
        // The last of a repeated name wins, as in the stored JSON.
        let repeated = [label("b", "9"), label("a", "1"), label("b", "2")];
        assert_eq!(cache.key("m", &ab), cache.key("m", &repeated));
        assert_ne!(cache.key("m", &ab), cache.key("n", &ab));
        assert_ne!(cache.key("m", &ab), cache.key("m", &ab[..1]));
        assert_ne!(
            cache.key("m", &[label("ab", "")]),
            cache.key("m", &[label("a", "b")])
        );
        assert_ne!(cache.key("m", &[]), cache.key("m", &[label("", "")]));
    }

    #[test]
    fn a_series_created_by_a_job_rolled_back_is_forgotten_with_it() {
        let (_dir, conn) = crate::store::test_db();
        let mut cache = SeriesCache::new(100);
        conn.execute_batch("BEGIN").unwrap();
        cache.job_started();
        conn.execute_batch("SAVEPOINT job").unwrap();
        let kept = cache.id(&conn, "a", "kept", &[], 0).unwrap().unwrap();
        conn.execute_batch("RELEASE job").unwrap();
        cache.job_started();
        conn.execute_batch("SAVEPOINT job").unwrap();
        let lost = cache.id(&conn, "a", "lost", &[], 0).unwrap().unwrap();
        conn.execute_batch("ROLLBACK TO job; RELEASE job").unwrap();
        cache.job_rolled_back();
        // SQLite hands the rolled-back id to the next series: the cache
        // must not still map "lost" to it.
        cache.job_started();
        let next = cache.id(&conn, "a", "next", &[], 0).unwrap().unwrap();
        assert_eq!(next, lost);
        let again = cache.id(&conn, "a", "lost", &[], 0).unwrap().unwrap();
        assert_ne!(again, next);
        conn.execute_batch("COMMIT").unwrap();
        cache.committed();
        assert_eq!(cache.id(&conn, "a", "kept", &[], 0).unwrap(), Some(kept));
        assert_eq!(cache.id(&conn, "a", "next", &[], 0).unwrap(), Some(next));
        assert_eq!(cache.id(&conn, "a", "lost", &[], 0).unwrap(), Some(again));
        assert_eq!(cache.known_len, 3);
        let rows: i64 = conn
            .query_row("SELECT count(*) FROM series", [], |r| r.get(0))
            .unwrap();
        assert_eq!(rows, 3);
    }

    #[test]
    fn agents_taking_turns_keep_their_own_series() {
        let (_dir, conn) = crate::store::test_db();
        crate::store::test_agent(&conn, "b");
        let mut cache = SeriesCache::new(100);
        let a = cache.id(&conn, "a", "x", &[], 0).unwrap().unwrap();
        let b = cache.id(&conn, "b", "x", &[], 0).unwrap().unwrap();
        assert_ne!(a, b);
        cache.committed();
        for _ in 0..2 {
            assert_eq!(cache.id(&conn, "a", "x", &[], 0).unwrap(), Some(a));
            assert_eq!(cache.id(&conn, "b", "x", &[], 0).unwrap(), Some(b));
            // Emptied, the cache finds them again in the database.
            cache.clear();
        }
        assert_eq!(cache.known_len, 0);
    }

    #[test]
    fn the_hourly_budget_refuses_new_series_not_known_ones() {
        let (_dir, conn) = crate::store::test_db();
        let mut cache = SeriesCache::new(2);
        let hour = 3_600_000;
        assert!(cache.id(&conn, "a", "x", &[], 0).unwrap().is_some());
        assert!(cache.id(&conn, "a", "y", &[], 0).unwrap().is_some());
        assert_eq!(cache.id(&conn, "a", "z", &[], 0).unwrap(), None);
        assert!(cache.id(&conn, "a", "x", &[], 0).unwrap().is_some());
        assert!(cache.id(&conn, "a", "z", &[], hour).unwrap().is_some());
    }
}
