//! Injectable time: logic takes a [`Clock`] so tests control "now" instead
//! of sleeping. Storage time is UTC milliseconds since the epoch.

/// A source of the current time.
pub trait Clock: Send + Sync + 'static {
    /// Now, UTC milliseconds since the Unix epoch.
    fn now_ms(&self) -> i64;

    /// Now as a UTC time (what schedules and records take).
    fn now(&self) -> chrono::DateTime<chrono::Utc> {
        chrono::DateTime::from_timestamp_millis(self.now_ms()).unwrap_or_default()
    }
}

/// The real wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        chrono::Utc::now().timestamp_millis()
    }
}
