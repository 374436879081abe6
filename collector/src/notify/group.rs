//! Grouping: a host with ten problems sends one message, not ten.
//!
//! Notifications are buffered per (target, host). A group is released when
//! both hold:
//! - its first buffered notification has waited `group_wait` (so the rules
//!   tripped by one report travel together), and
//! - `group_interval` has passed since the group's previous message (so a
//!   host never produces more than one message per interval per target).
//!
//! Pure: the caller passes `now`, so tests move time by hand and never sleep.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use super::{Notification, NotificationKind};

/// Incidents listed in one message; the rest are counted in `omitted` so a
/// storm cannot produce an unbounded message (robots reject long ones) or
/// unbounded memory.
pub const MAX_PER_BATCH: usize = 20;

/// One message's worth: everything for one host and one target.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    pub target: String,
    pub host: String,
    /// In arrival order, at most one entry per incident.
    pub notifications: Vec<Notification>,
    /// Incidents left out because the batch was full.
    pub omitted: usize,
}

#[derive(Debug, Default)]
struct Group {
    pending: Vec<Notification>,
    omitted: usize,
    first_at: Option<Instant>,
    last_sent: Option<Instant>,
}

#[derive(Debug)]
pub struct Grouper {
    group_wait: Duration,
    group_interval: Duration,
    groups: BTreeMap<(String, String), Group>,
}

impl Grouper {
    pub fn new(group_wait: Duration, group_interval: Duration) -> Self {
        Self {
            group_wait,
            group_interval,
            groups: BTreeMap::new(),
        }
    }

    /// Buffers `n` for `target`. A later notification about an incident
    /// already in the batch replaces it (the message shows the latest value),
    /// except that "updated" does not hide why the incident is in the batch
    /// (opened, pre-breach, breach).
    pub fn push(&mut self, target: &str, n: Notification, now: Instant) {
        let g = self
            .groups
            .entry((target.to_owned(), n.host.clone()))
            .or_default();
        g.first_at.get_or_insert(now);
        if let Some(old) = g
            .pending
            .iter_mut()
            .find(|o| o.incident_id == n.incident_id)
        {
            let kind = if n.kind == NotificationKind::Updated {
                old.kind
            } else {
                n.kind
            };
            *old = Notification { kind, ..n };
        } else if g.pending.len() < MAX_PER_BATCH {
            g.pending.push(n);
        } else {
            g.omitted += 1;
        }
    }

    fn due_at(&self, g: &Group) -> Option<Instant> {
        let first = g.first_at? + self.group_wait;
        Some(match g.last_sent {
            Some(last) => first.max(last + self.group_interval),
            None => first,
        })
    }

    /// When the next group becomes due, if any is pending.
    pub fn next_due(&self) -> Option<Instant> {
        self.groups.values().filter_map(|g| self.due_at(g)).min()
    }

    /// Releases every group that is due at `now`, and forgets idle groups
    /// whose interval has run out (they would be released at once anyway).
    pub fn due(&mut self, now: Instant) -> Vec<Batch> {
        let mut out = Vec::new();
        let interval = self.group_interval;
        let ready: Vec<(String, String)> = self
            .groups
            .iter()
            .filter(|(_, g)| self.due_at(g).is_some_and(|d| d <= now))
            .map(|(k, _)| k.clone())
            .collect();
        for key in ready {
            if let Some(g) = self.groups.get_mut(&key) {
                out.push(Batch {
                    target: key.0.clone(),
                    host: key.1.clone(),
                    notifications: std::mem::take(&mut g.pending),
                    omitted: std::mem::take(&mut g.omitted),
                });
                g.first_at = None;
                g.last_sent = Some(now);
            }
        }
        self.groups
            .retain(|_, g| g.first_at.is_some() || g.last_sent.is_some_and(|l| l + interval > now));
        out
    }

    /// Everything still buffered, regardless of time (shutdown).
    pub fn drain_all(&mut self) -> Vec<Batch> {
        std::mem::take(&mut self.groups)
            .into_iter()
            .filter(|(_, g)| !g.pending.is_empty())
            .map(|((target, host), g)| Batch {
                target,
                host,
                notifications: g.pending,
                omitted: g.omitted,
            })
            .collect()
    }

    /// Groups held (pending or remembering their last message).
    pub fn len(&self) -> usize {
        self.groups.len()
    }

    pub fn is_empty(&self) -> bool {
        self.groups.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeZone, Utc};

    fn n(kind: NotificationKind, id: i64, host: &str, value: &str) -> Notification {
        Notification {
            kind,
            incident_id: id,
            severity: "II".into(),
            host: host.into(),
            title: format!("problem {id}"),
            value: value.into(),
            threshold: "90%".into(),
            at: Utc.with_ymd_and_hms(2025, 1, 2, 3, 4, 5).unwrap(),
        }
    }

    const S: Duration = Duration::from_secs(1);
    use NotificationKind::*;

    #[test]
    fn ten_problems_on_one_host_make_one_message() {
        let t0 = Instant::now();
        let mut g = Grouper::new(5 * S, 30 * S);
        for i in 0..10 {
            g.push(
                "ops",
                n(Opened, i, "web-1", "95%"),
                t0 + S * (i as u32) / 10,
            );
        }
        g.push("ops", n(Opened, 100, "db-1", "1"), t0 + 2 * S);
        assert_eq!(g.next_due(), Some(t0 + 5 * S));
        assert!(g.due(t0 + 4 * S).is_empty(), "group_wait not over");
        let out = g.due(t0 + 5 * S);
        assert_eq!(out.len(), 1);
        assert_eq!(
            (out[0].target.as_str(), out[0].host.as_str()),
            ("ops", "web-1")
        );
        assert_eq!(out[0].notifications.len(), 10);
        let out = g.due(t0 + 7 * S);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].host, "db-1");
        assert_eq!(g.next_due(), None);
    }

    #[test]
    fn at_most_one_message_per_host_per_interval() {
        let t0 = Instant::now();
        let mut g = Grouper::new(5 * S, 30 * S);
        g.push("ops", n(Opened, 1, "web-1", "95%"), t0);
        assert_eq!(g.due(t0 + 5 * S).len(), 1);
        // Arrives 1 s after the message: waits until 30 s after it.
        g.push("ops", n(Opened, 2, "web-1", "96%"), t0 + 6 * S);
        assert_eq!(g.next_due(), Some(t0 + 35 * S));
        assert!(g.due(t0 + 34 * S).is_empty());
        let out = g.due(t0 + 35 * S);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].notifications[0].incident_id, 2);
        // After a quiet interval a new problem only waits group_wait.
        g.push("ops", n(Opened, 3, "web-1", "1"), t0 + 100 * S);
        assert_eq!(g.next_due(), Some(t0 + 105 * S));
    }

    #[test]
    fn targets_are_grouped_separately() {
        let t0 = Instant::now();
        let mut g = Grouper::new(Duration::ZERO, 30 * S);
        g.push("a", n(Opened, 1, "web-1", "1"), t0);
        g.push("b", n(Opened, 1, "web-1", "1"), t0);
        let mut out = g.due(t0);
        out.sort_by(|x, y| x.target.cmp(&y.target));
        assert_eq!(out.len(), 2);
        assert_eq!((out[0].target.as_str(), out[1].target.as_str()), ("a", "b"));
    }

    #[test]
    fn later_news_about_an_incident_replaces_the_earlier() {
        let t0 = Instant::now();
        let mut g = Grouper::new(5 * S, 30 * S);
        g.push("ops", n(Opened, 1, "web-1", "91%"), t0);
        g.push("ops", n(Updated, 1, "web-1", "97%"), t0 + S);
        g.push("ops", n(Breach, 2, "web-1", "x"), t0 + S);
        g.push("ops", n(Updated, 2, "web-1", "y"), t0 + S);
        g.push("ops", n(Opened, 3, "web-1", "1"), t0 + S);
        g.push("ops", n(Resolved, 3, "web-1", "0"), t0 + 2 * S);
        let out = g.due(t0 + 10 * S);
        let got: Vec<_> = out[0]
            .notifications
            .iter()
            .map(|x| (x.incident_id, x.kind, x.value.as_str()))
            .collect();
        assert_eq!(
            got,
            [(1, Opened, "97%"), (2, Breach, "y"), (3, Resolved, "0")]
        );
    }

    #[test]
    fn a_storm_is_capped_and_counted() {
        let t0 = Instant::now();
        let mut g = Grouper::new(Duration::ZERO, 30 * S);
        for i in 0..(MAX_PER_BATCH as i64 + 7) {
            g.push("ops", n(Opened, i, "web-1", "1"), t0);
        }
        let out = g.due(t0);
        assert_eq!(out[0].notifications.len(), MAX_PER_BATCH);
        assert_eq!(out[0].omitted, 7);
    }

    #[test]
    fn idle_groups_are_forgotten_and_drain_all_flushes() {
        let t0 = Instant::now();
        let mut g = Grouper::new(5 * S, 30 * S);
        g.push("ops", n(Opened, 1, "web-1", "1"), t0);
        g.due(t0 + 5 * S);
        assert_eq!(g.len(), 1, "remembers the last message for the interval");
        g.due(t0 + 35 * S);
        assert!(g.is_empty());
        g.push("ops", n(Opened, 2, "web-2", "1"), t0 + 40 * S);
        let out = g.drain_all();
        assert_eq!(out.len(), 1);
        assert!(g.is_empty());
    }
}
