//! SLA clocks for incidents (ITSS / GB/T 28827 service practice): per-severity
//! respond / plan / resolve budgets counted on a 7x24 or a 5x8 business
//! calendar, with pre-breach warnings, breaches and escalations each reported
//! exactly once by a serialisable [`SlaClock`].
//!
//! Everything here is pure: "now" is always a parameter. Times are handled
//! at millisecond precision, like storage.

use std::collections::BTreeSet;
use std::fmt;
use std::time::Duration;

use chrono::{DateTime, Datelike, NaiveDate, Utc};
use serde::{Deserialize, Deserializer, Serialize};

const MINUTE_MS: i64 = 60_000;
const DAY_MS: i64 = 86_400_000;
/// `NaiveDate::num_days_from_ce` of 1970-01-01, to turn dates into day numbers.
const EPOCH_DAYS_FROM_CE: i64 = 719_163;
/// Longest budget a config may set; anything longer is a typo, not an SLA.
const MAX_BUDGET: Duration = Duration::from_secs(366 * 86_400);
/// Real-world offsets span -12:00..=+14:00.
const MAX_OFFSET_MINUTES: i64 = 14 * 60;

/// Incident severity, I (most severe) to IV.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Severity {
    I,
    II,
    III,
    IV,
}

impl Severity {
    pub const ALL: [Severity; 4] = [Severity::I, Severity::II, Severity::III, Severity::IV];

    pub fn as_str(self) -> &'static str {
        match self {
            Severity::I => "I",
            Severity::II => "II",
            Severity::III => "III",
            Severity::IV => "IV",
        }
    }

    /// "I".."IV"; anything else is not a severity.
    pub fn parse(text: &str) -> Option<Severity> {
        Severity::ALL.into_iter().find(|s| s.as_str() == text)
    }

    fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What an SLA promises: a first response (acknowledgement), a plan
/// (处理方案), and resolution, each within its budget from opening.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Target {
    Respond,
    Plan,
    Resolve,
}

impl Target {
    pub const ALL: [Target; 3] = [Target::Respond, Target::Plan, Target::Resolve];

    pub fn as_str(self) -> &'static str {
        match self {
            Target::Respond => "respond",
            Target::Plan => "plan",
            Target::Resolve => "resolve",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which clock a budget runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub enum CalendarKind {
    /// Every minute counts.
    #[default]
    #[serde(rename = "7x24")]
    AllDay,
    /// Only working hours on working days count.
    #[serde(rename = "5x8")]
    Business,
}

impl CalendarKind {
    pub fn as_str(self) -> &'static str {
        match self {
            CalendarKind::AllDay => "7x24",
            CalendarKind::Business => "5x8",
        }
    }
}

/// Working hours in one fixed UTC offset: Monday to Friday between `start`
/// and `end`, except holidays, plus make-up working days (调休).
///
/// Built by [`SlaConfig::policy`] or [`BusinessHours::new`], which validate it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BusinessHours {
    offset_ms: i64,
    start_ms: i64,
    end_ms: i64,
    /// Local day numbers (days since 1970-01-01) so lookups need no dates.
    holidays: BTreeSet<i64>,
    workdays: BTreeSet<i64>,
}

impl BusinessHours {
    /// `utc_offset_minutes` east of UTC (+480 for China); `start_minute` and
    /// `end_minute` are minutes after local midnight (`end_minute` may be
    /// 1440). Errors name the config field the argument comes from.
    pub fn new(
        utc_offset_minutes: i32,
        start_minute: u32,
        end_minute: u32,
        holidays: &[NaiveDate],
        workdays: &[NaiveDate],
    ) -> Result<Self, SlaConfigError> {
        let offset = i64::from(utc_offset_minutes);
        if offset.abs() > MAX_OFFSET_MINUTES {
            return Err(SlaConfigError::new(
                FIELD_UTC_OFFSET,
                format!("{offset} minutes is outside -14:00..=+14:00"),
            ));
        }
        if start_minute >= 1440 {
            return Err(SlaConfigError::new(
                FIELD_START,
                format!("{} is not a time of day", fmt_minute(start_minute)),
            ));
        }
        if end_minute > 1440 || end_minute <= start_minute {
            return Err(SlaConfigError::new(
                FIELD_END,
                format!(
                    "{} must be after start {} on the same day (24:00 at the latest)",
                    fmt_minute(end_minute),
                    fmt_minute(start_minute)
                ),
            ));
        }
        let holidays: BTreeSet<i64> = holidays.iter().map(|d| day_number(*d)).collect();
        let mut days = BTreeSet::new();
        for date in workdays {
            let day = day_number(*date);
            if holidays.contains(&day) {
                return Err(SlaConfigError::new(
                    FIELD_WORKDAYS,
                    format!("{date} is also listed in holidays"),
                ));
            }
            if is_weekday(day) {
                return Err(SlaConfigError::new(
                    FIELD_WORKDAYS,
                    format!(
                        "{date} is a {:?}, already a working day; make-up working days are weekend days",
                        date.weekday()
                    ),
                ));
            }
            days.insert(day);
        }
        Ok(Self {
            offset_ms: offset * MINUTE_MS,
            start_ms: i64::from(start_minute) * MINUTE_MS,
            end_ms: i64::from(end_minute) * MINUTE_MS,
            holidays,
            workdays: days,
        })
    }

    /// Is `at` inside working hours on a working day?
    pub fn is_working_time(&self, at: DateTime<Utc>) -> bool {
        let t = at.timestamp_millis();
        let day = self.local_day(t);
        self.is_working_day(day)
            && self
                .window(day)
                .is_some_and(|(start, end)| start <= t && t < end)
    }

    fn local_day(&self, t_ms: i64) -> i64 {
        t_ms.saturating_add(self.offset_ms).div_euclid(DAY_MS)
    }

    fn is_working_day(&self, day: i64) -> bool {
        self.workdays.contains(&day) || (!self.holidays.contains(&day) && is_weekday(day))
    }

    /// The working window of a local day as UTC milliseconds.
    fn window(&self, day: i64) -> Option<(i64, i64)> {
        let midnight = day.checked_mul(DAY_MS)?.checked_sub(self.offset_ms)?;
        Some((
            midnight.checked_add(self.start_ms)?,
            midnight.checked_add(self.end_ms)?,
        ))
    }

    fn window_len(&self) -> i64 {
        self.end_ms - self.start_ms
    }

    /// Working days in `[from, to)`, by arithmetic rather than by walking
    /// the days, so that absurd spans cost nothing.
    fn working_days(&self, from: i64, to: i64) -> i64 {
        if to <= from {
            return 0;
        }
        let span = to - from;
        let full_weeks = span / 7;
        let mut count = full_weeks.saturating_mul(5);
        for day in (from + full_weeks * 7)..to {
            if is_weekday(day) {
                count += 1;
            }
        }
        let lost = self
            .holidays
            .range(from..to)
            .filter(|d| is_weekday(**d) && !self.workdays.contains(d))
            .count();
        let gained = self
            .workdays
            .range(from..to)
            .filter(|d| !is_weekday(**d))
            .count();
        count - lost as i64 + gained as i64
    }

    /// Working milliseconds of `day` that fall inside `[from, to)`.
    fn overlap(&self, day: i64, from: i64, to: i64) -> i64 {
        if !self.is_working_day(day) {
            return 0;
        }
        match self.window(day) {
            Some((start, end)) => (to.min(end) - from.max(start)).max(0),
            None => 0,
        }
    }

    fn elapsed_ms(&self, from: i64, to: i64) -> i64 {
        if to <= from {
            return 0;
        }
        let first = self.local_day(from);
        let last = self.local_day(to);
        if first == last {
            return self.overlap(first, from, to);
        }
        let middle = self
            .working_days(first + 1, last)
            .saturating_mul(self.window_len());
        self.overlap(first, from, to)
            .saturating_add(self.overlap(last, from, to))
            .saturating_add(middle)
    }

    /// `None` when the answer lies beyond what `DateTime<Utc>` can hold.
    fn deadline_ms(&self, start: i64, budget: i64) -> Option<i64> {
        if budget <= 0 {
            return Some(start);
        }
        let mut remaining = budget;
        let day = self.local_day(start);
        if self.is_working_day(day) {
            let (open, close) = self.window(day)?;
            let from = start.max(open);
            if from < close {
                if remaining <= close - from {
                    return Some(from + remaining);
                }
                remaining -= close - from;
            }
        }
        let len = self.window_len();
        // The deadline falls in the k-th following working day, at most a
        // full window into it: a budget ending exactly at closing time ends
        // that day rather than at the next opening.
        let whole_days = (remaining - 1) / len;
        let last_day = self.nth_working_day(day.checked_add(1)?, whole_days)?;
        let (open, _) = self.window(last_day)?;
        open.checked_add(remaining - whole_days * len)
    }

    /// The first working day `d >= from` with exactly `skip` working days in
    /// `[from, d)`. Jumps whole weeks while it can, so long budgets are cheap.
    fn nth_working_day(&self, from: i64, skip: i64) -> Option<i64> {
        let max_day = DateTime::<Utc>::MAX_UTC.timestamp_millis() / DAY_MS + 1;
        let mut day = from;
        let mut skip = skip;
        'outer: loop {
            if day > max_day {
                return None;
            }
            if skip >= 5 {
                let mut span = (skip / 5).checked_mul(7)?;
                while span >= 7 {
                    let to = day.checked_add(span)?;
                    if to > max_day {
                        return None;
                    }
                    let count = self.working_days(day, to);
                    if count <= skip {
                        skip -= count;
                        day = to;
                        continue 'outer;
                    }
                    // Make-up days outnumber holidays in this span.
                    span /= 2;
                }
            }
            if self.is_working_day(day) {
                if skip == 0 {
                    return Some(day);
                }
                skip -= 1;
            }
            day += 1;
        }
    }
}

impl Default for BusinessHours {
    /// 09:00–18:00 Beijing time (+08:00), Monday to Friday, no holidays.
    fn default() -> Self {
        Self {
            offset_ms: 8 * 60 * MINUTE_MS,
            start_ms: 9 * 60 * MINUTE_MS,
            end_ms: 18 * 60 * MINUTE_MS,
            holidays: BTreeSet::new(),
            workdays: BTreeSet::new(),
        }
    }
}

fn day_number(date: NaiveDate) -> i64 {
    i64::from(date.num_days_from_ce()) - EPOCH_DAYS_FROM_CE
}

/// Monday to Friday; day 0 (1970-01-01) was a Thursday.
fn is_weekday(day: i64) -> bool {
    (day + 3).rem_euclid(7) < 5
}

fn fmt_minute(minute: u32) -> String {
    format!("{:02}:{:02}", minute / 60, minute % 60)
}

/// A calendar that budgets are counted on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Calendar {
    AllDay,
    Business(BusinessHours),
}

static ALL_DAY: Calendar = Calendar::AllDay;

impl Calendar {
    pub fn kind(&self) -> CalendarKind {
        match self {
            Calendar::AllDay => CalendarKind::AllDay,
            Calendar::Business(_) => CalendarKind::Business,
        }
    }

    /// Does the SLA clock run at `at`?
    pub fn is_working_time(&self, at: DateTime<Utc>) -> bool {
        match self {
            Calendar::AllDay => true,
            Calendar::Business(hours) => hours.is_working_time(at),
        }
    }
}

fn to_ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

fn from_ms(ms: Option<i64>) -> DateTime<Utc> {
    ms.and_then(DateTime::from_timestamp_millis)
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// When a budget that starts at `start` runs out. On a business calendar
/// only working time is spent, so a budget started out of hours begins at
/// the next opening. Saturates at `DateTime::<Utc>::MAX_UTC`.
pub fn deadline(calendar: &Calendar, start: DateTime<Utc>, budget: Duration) -> DateTime<Utc> {
    let start_ms = start.timestamp_millis();
    let budget_ms = to_ms(budget);
    from_ms(match calendar {
        Calendar::AllDay => start_ms.checked_add(budget_ms),
        Calendar::Business(hours) => hours.deadline_ms(start_ms, budget_ms),
    })
}

/// Time on `calendar` between `from` and `to`: wall time for 7x24, working
/// time for 5x8; zero when `to` is not after `from`.
pub fn elapsed_business(calendar: &Calendar, from: DateTime<Utc>, to: DateTime<Utc>) -> Duration {
    let (from, to) = (from.timestamp_millis(), to.timestamp_millis());
    let ms = match calendar {
        Calendar::AllDay => to.saturating_sub(from).max(0),
        Calendar::Business(hours) => hours.elapsed_ms(from, to),
    };
    Duration::from_millis(u64::try_from(ms).unwrap_or(0))
}

/// The three budgets of one severity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Budgets {
    #[serde(with = "humantime_serde")]
    pub respond: Duration,
    #[serde(with = "humantime_serde")]
    pub plan: Duration,
    #[serde(with = "humantime_serde")]
    pub resolve: Duration,
}

impl Budgets {
    pub fn get(&self, target: Target) -> Duration {
        match target {
            Target::Respond => self.respond,
            Target::Plan => self.plan,
            Target::Resolve => self.resolve,
        }
    }
}

const fn budgets(respond_min: u64, plan_min: u64, resolve_h: u64) -> Budgets {
    Budgets {
        respond: Duration::from_secs(respond_min * 60),
        plan: Duration::from_secs(plan_min * 60),
        resolve: Duration::from_secs(resolve_h * 3600),
    }
}

/// Defaults from the product issue, indexed by severity.
pub const DEFAULT_BUDGETS: [Budgets; 4] = [
    budgets(30, 120, 12),
    budgets(30, 120, 24),
    budgets(30, 120, 48),
    budgets(30, 120, 48),
];

/// Budgets and calendar for one severity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SeverityPolicy {
    pub calendar: CalendarKind,
    pub budgets: Budgets,
}

/// Escalation level reached when a target is breached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Escalation {
    #[serde(default = "default_level_respond")]
    pub respond: u8,
    #[serde(default = "default_level_plan")]
    pub plan: u8,
    #[serde(default = "default_level_resolve")]
    pub resolve: u8,
}

fn default_level_respond() -> u8 {
    1
}
fn default_level_plan() -> u8 {
    2
}
fn default_level_resolve() -> u8 {
    3
}

impl Default for Escalation {
    fn default() -> Self {
        Self {
            respond: default_level_respond(),
            plan: default_level_plan(),
            resolve: default_level_resolve(),
        }
    }
}

impl Escalation {
    pub fn level(&self, target: Target) -> u8 {
        match target {
            Target::Respond => self.respond,
            Target::Plan => self.plan,
            Target::Resolve => self.resolve,
        }
    }
}

/// The validated SLA settings. Build it with [`SlaConfig::policy`]; the
/// default equals an empty `[sla]` section.
#[derive(Debug, Clone, PartialEq)]
pub struct SlaPolicy {
    warn_fraction: f64,
    escalation: Escalation,
    business: Calendar,
    severities: [SeverityPolicy; 4],
}

impl Default for SlaPolicy {
    fn default() -> Self {
        Self {
            warn_fraction: DEFAULT_WARN_AT,
            escalation: Escalation::default(),
            business: Calendar::Business(BusinessHours::default()),
            severities: DEFAULT_BUDGETS.map(|budgets| SeverityPolicy {
                calendar: CalendarKind::AllDay,
                budgets,
            }),
        }
    }
}

impl SlaPolicy {
    /// Fraction of a budget after which a pre-breach warning fires.
    pub fn warn_fraction(&self) -> f64 {
        self.warn_fraction
    }

    pub fn escalation(&self) -> Escalation {
        self.escalation
    }

    pub fn severity(&self, severity: Severity) -> SeverityPolicy {
        self.severities[severity.index()]
    }

    pub fn calendar(&self, kind: CalendarKind) -> &Calendar {
        match kind {
            CalendarKind::AllDay => &ALL_DAY,
            CalendarKind::Business => &self.business,
        }
    }
}

/// One target's clock inside an [`SlaClock`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetClock {
    warn_at: DateTime<Utc>,
    due: DateTime<Utc>,
    escalate_to: u8,
    warned: bool,
    breached: bool,
    escalated: bool,
}

/// Something the SLA clock says should happen now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum SlaEvent {
    /// The target is still open and most of its budget is spent; `at` is
    /// when the warning threshold was crossed.
    PreBreachWarning { target: Target, at: DateTime<Utc> },
    /// The target was not met by its due time `at`.
    Breached { target: Target, at: DateTime<Utc> },
    /// A breached target is still open: hand it to `to_level`. `at` is the
    /// `now` at which this was decided.
    Escalate {
        target: Target,
        to_level: u8,
        at: DateTime<Utc>,
    },
}

impl SlaEvent {
    pub fn target(&self) -> Target {
        match self {
            SlaEvent::PreBreachWarning { target, .. }
            | SlaEvent::Breached { target, .. }
            | SlaEvent::Escalate { target, .. } => *target,
        }
    }

    fn at(&self) -> DateTime<Utc> {
        match self {
            SlaEvent::PreBreachWarning { at, .. }
            | SlaEvent::Breached { at, .. }
            | SlaEvent::Escalate { at, .. } => *at,
        }
    }
}

/// Where one target stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Running,
    /// Past the warning threshold, not yet due.
    Warning,
    /// Past due and still open.
    Breached,
    MetOnTime,
    MetLate,
}

impl Outcome {
    /// `None` while the target is still running.
    pub fn on_time(self) -> Option<bool> {
        match self {
            Outcome::Running | Outcome::Warning => None,
            Outcome::MetOnTime => Some(true),
            Outcome::Breached | Outcome::MetLate => Some(false),
        }
    }
}

/// How an incident did against its SLA; durations are on the clock's
/// calendar (working time for 5x8), `None` while the step has not happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Attainment {
    pub calendar: CalendarKind,
    pub time_to_acknowledge: Option<Duration>,
    pub time_to_plan: Option<Duration>,
    pub time_to_resolve: Option<Duration>,
    pub respond: Outcome,
    pub plan: Outcome,
    pub resolve: Outcome,
}

/// The SLA clock of one incident. Due times are fixed when it is created
/// (the SLA agreed at opening holds even if the calendar is edited later);
/// the fired-flags make every event happen once, so persist the clock after
/// each [`SlaClock::tick`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlaClock {
    severity: Severity,
    calendar: CalendarKind,
    opened_at: DateTime<Utc>,
    targets: [TargetClock; 3],
}

/// When a target stops: its own milestone, or resolution, which ends every
/// clock (an incident that recovered before anyone acknowledged it has
/// nothing left to respond to).
fn met_at(
    target: Target,
    acknowledged_at: Option<DateTime<Utc>>,
    planned_at: Option<DateTime<Utc>>,
    resolved_at: Option<DateTime<Utc>>,
) -> Option<DateTime<Utc>> {
    let own = match target {
        Target::Respond => acknowledged_at,
        Target::Plan => planned_at,
        Target::Resolve => resolved_at,
    };
    match (own, resolved_at) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

impl SlaClock {
    pub fn new(severity: Severity, opened_at: DateTime<Utc>, policy: &SlaPolicy) -> Self {
        let sp = policy.severity(severity);
        let calendar = policy.calendar(sp.calendar);
        // Clamped again here because a policy is the one input this
        // function cannot refuse.
        let fraction = if policy.warn_fraction.is_finite() {
            policy.warn_fraction.clamp(0.0, 1.0)
        } else {
            DEFAULT_WARN_AT
        };
        let targets = Target::ALL.map(|target| {
            let budget = sp.budgets.get(target);
            let warn_ms = (to_ms(budget) as f64 * fraction).round() as i64;
            TargetClock {
                warn_at: deadline(
                    calendar,
                    opened_at,
                    Duration::from_millis(u64::try_from(warn_ms).unwrap_or(0)),
                ),
                due: deadline(calendar, opened_at, budget),
                escalate_to: policy.escalation.level(target),
                warned: false,
                breached: false,
                escalated: false,
            }
        });
        Self {
            severity,
            calendar: sp.calendar,
            opened_at,
            targets,
        }
    }

    pub fn severity(&self) -> Severity {
        self.severity
    }

    pub fn calendar(&self) -> CalendarKind {
        self.calendar
    }

    pub fn opened_at(&self) -> DateTime<Utc> {
        self.opened_at
    }

    pub fn due(&self, target: Target) -> DateTime<Utc> {
        self.targets[target.index()].due
    }

    pub fn warn_at(&self, target: Target) -> DateTime<Utc> {
        self.targets[target.index()].warn_at
    }

    /// Advances the clock to `now` and returns the events that became due
    /// since the last call, oldest first. Call it with non-decreasing `now`;
    /// each warning, breach and escalation is returned at most once.
    ///
    /// A warning is only sent while the target is open and not yet due (a
    /// warning after the breach is noise); a breach is reported even if the
    /// target was met late before this call saw it; an escalation only while
    /// the breached target is still open. Milestones later than `now` are
    /// ignored.
    pub fn tick(
        &mut self,
        now: DateTime<Utc>,
        acknowledged_at: Option<DateTime<Utc>>,
        planned_at: Option<DateTime<Utc>>,
        resolved_at: Option<DateTime<Utc>>,
    ) -> Vec<SlaEvent> {
        let mut events = Vec::new();
        for target in Target::ALL {
            let met =
                met_at(target, acknowledged_at, planned_at, resolved_at).filter(|m| *m <= now);
            let clock = &mut self.targets[target.index()];
            if !clock.warned && clock.warn_at <= now && now < clock.due && met.is_none() {
                clock.warned = true;
                events.push(SlaEvent::PreBreachWarning {
                    target,
                    at: clock.warn_at,
                });
            }
            if !clock.breached && clock.due <= now && met.is_none_or(|m| m > clock.due) {
                clock.breached = true;
                clock.warned = true;
                events.push(SlaEvent::Breached {
                    target,
                    at: clock.due,
                });
            }
            if clock.breached && !clock.escalated && met.is_none() {
                clock.escalated = true;
                events.push(SlaEvent::Escalate {
                    target,
                    to_level: clock.escalate_to,
                    at: now,
                });
            }
        }
        events.sort_by_key(|e| e.at());
        events
    }

    /// Where `target` stands at `now` given when it was met, without
    /// changing the clock.
    pub fn outcome(
        &self,
        target: Target,
        now: DateTime<Utc>,
        met_at: Option<DateTime<Utc>>,
    ) -> Outcome {
        let clock = &self.targets[target.index()];
        match met_at.filter(|m| *m <= now) {
            Some(m) if m <= clock.due => Outcome::MetOnTime,
            Some(_) => Outcome::MetLate,
            None if clock.due <= now => Outcome::Breached,
            None if clock.warn_at <= now => Outcome::Warning,
            None => Outcome::Running,
        }
    }

    /// Time to acknowledge / plan / resolve on the clock's calendar (taken
    /// from `policy`), and each target's outcome at `now`.
    pub fn attainment(
        &self,
        policy: &SlaPolicy,
        now: DateTime<Utc>,
        acknowledged_at: Option<DateTime<Utc>>,
        planned_at: Option<DateTime<Utc>>,
        resolved_at: Option<DateTime<Utc>>,
    ) -> Attainment {
        let calendar = policy.calendar(self.calendar);
        let took = |at: Option<DateTime<Utc>>| {
            at.filter(|at| *at <= now)
                .map(|at| elapsed_business(calendar, self.opened_at, at))
        };
        let outcome = |target| {
            self.outcome(
                target,
                now,
                met_at(target, acknowledged_at, planned_at, resolved_at),
            )
        };
        Attainment {
            calendar: self.calendar,
            time_to_acknowledge: took(acknowledged_at),
            time_to_plan: took(planned_at),
            time_to_resolve: took(resolved_at),
            respond: outcome(Target::Respond),
            plan: outcome(Target::Plan),
            resolve: outcome(Target::Resolve),
        }
    }
}

// ---------------------------------------------------------------------------
// Configuration

const DEFAULT_WARN_AT: f64 = 0.8;
const FIELD_WARN_AT: &str = "sla.warn_at";
const FIELD_UTC_OFFSET: &str = "sla.business_hours.utc_offset";
const FIELD_START: &str = "sla.business_hours.start";
const FIELD_END: &str = "sla.business_hours.end";
const FIELD_WORKDAYS: &str = "sla.business_hours.workdays";
const FIELD_ESCALATION: [&str; 3] = [
    "sla.escalation.respond",
    "sla.escalation.plan",
    "sla.escalation.resolve",
];
const FIELD_BUDGETS: [[&str; 3]; 4] = [
    [
        "sla.severity.I.respond",
        "sla.severity.I.plan",
        "sla.severity.I.resolve",
    ],
    [
        "sla.severity.II.respond",
        "sla.severity.II.plan",
        "sla.severity.II.resolve",
    ],
    [
        "sla.severity.III.respond",
        "sla.severity.III.plan",
        "sla.severity.III.resolve",
    ],
    [
        "sla.severity.IV.respond",
        "sla.severity.IV.plan",
        "sla.severity.IV.resolve",
    ],
];

/// Why an `[sla]` section was refused; `field` is its full dotted name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("field `{field}`: {reason}")]
pub struct SlaConfigError {
    pub field: &'static str,
    pub reason: String,
}

impl SlaConfigError {
    fn new(field: &'static str, reason: String) -> Self {
        Self { field, reason }
    }
}

/// The `[sla]` section as written. Turn it into an [`SlaPolicy`] with
/// [`SlaConfig::policy`], which validates it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlaConfig {
    /// Calendar for severities that do not set their own.
    #[serde(default)]
    pub calendar: CalendarKind,
    /// Fraction of each budget after which a pre-breach warning fires.
    #[serde(default = "default_warn_at")]
    pub warn_at: f64,
    #[serde(default)]
    pub business_hours: BusinessHoursConfig,
    #[serde(default)]
    pub escalation: Escalation,
    #[serde(default)]
    pub severity: SeverityTable,
}

fn default_warn_at() -> f64 {
    DEFAULT_WARN_AT
}

impl Default for SlaConfig {
    fn default() -> Self {
        Self {
            calendar: CalendarKind::AllDay,
            warn_at: DEFAULT_WARN_AT,
            business_hours: BusinessHoursConfig::default(),
            escalation: Escalation::default(),
            severity: SeverityTable::default(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BusinessHoursConfig {
    /// "+08:00", "-05:30", "Z" or "UTC".
    #[serde(default = "default_utc_offset")]
    pub utc_offset: String,
    /// "HH:MM" local time.
    #[serde(default = "default_start")]
    pub start: String,
    /// "HH:MM" local time, after `start`; "24:00" allowed.
    #[serde(default = "default_end")]
    pub end: String,
    /// Public holidays: no working time even on a weekday.
    #[serde(default, deserialize_with = "deserialize_dates")]
    pub holidays: Vec<NaiveDate>,
    /// Make-up working days (调休): weekend days worked as normal days.
    #[serde(default, deserialize_with = "deserialize_dates")]
    pub workdays: Vec<NaiveDate>,
}

fn default_utc_offset() -> String {
    "+08:00".into()
}
fn default_start() -> String {
    "09:00".into()
}
fn default_end() -> String {
    "18:00".into()
}

impl Default for BusinessHoursConfig {
    fn default() -> Self {
        Self {
            utc_offset: default_utc_offset(),
            start: default_start(),
            end: default_end(),
            holidays: Vec::new(),
            workdays: Vec::new(),
        }
    }
}

/// `[sla.severity.I]` … `[sla.severity.IV]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeverityTable {
    #[serde(rename = "I", default)]
    pub i: SeverityConfig,
    #[serde(rename = "II", default)]
    pub ii: SeverityConfig,
    #[serde(rename = "III", default)]
    pub iii: SeverityConfig,
    #[serde(rename = "IV", default)]
    pub iv: SeverityConfig,
}

/// Unset values keep the severity's default (and the section's calendar).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeverityConfig {
    #[serde(default)]
    pub calendar: Option<CalendarKind>,
    #[serde(default, with = "humantime_serde")]
    pub respond: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub plan: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub resolve: Option<Duration>,
}

impl SeverityConfig {
    fn get(&self, target: Target) -> Option<Duration> {
        match target {
            Target::Respond => self.respond,
            Target::Plan => self.plan,
            Target::Resolve => self.resolve,
        }
    }
}

impl SlaConfig {
    /// Validates the section and resolves defaults. Errors name the field.
    pub fn policy(&self) -> Result<SlaPolicy, SlaConfigError> {
        if !(self.warn_at.is_finite() && self.warn_at > 0.0 && self.warn_at < 1.0) {
            return Err(SlaConfigError::new(
                FIELD_WARN_AT,
                format!(
                    "{} must be a fraction between 0 and 1, e.g. 0.8",
                    self.warn_at
                ),
            ));
        }
        for target in Target::ALL {
            if self.escalation.level(target) == 0 {
                return Err(SlaConfigError::new(
                    FIELD_ESCALATION[target.index()],
                    "levels start at 1".into(),
                ));
            }
        }
        let bh = &self.business_hours;
        let offset = parse_offset(&bh.utc_offset).ok_or_else(|| {
            SlaConfigError::new(
                FIELD_UTC_OFFSET,
                format!("{:?} is not an offset like \"+08:00\"", bh.utc_offset),
            )
        })?;
        let start = parse_clock(&bh.start, false).ok_or_else(|| {
            SlaConfigError::new(
                FIELD_START,
                format!("{:?} is not a time like \"09:00\"", bh.start),
            )
        })?;
        let end = parse_clock(&bh.end, true).ok_or_else(|| {
            SlaConfigError::new(
                FIELD_END,
                format!("{:?} is not a time like \"18:00\"", bh.end),
            )
        })?;
        let hours = BusinessHours::new(offset, start, end, &bh.holidays, &bh.workdays)?;

        let table = [
            &self.severity.i,
            &self.severity.ii,
            &self.severity.iii,
            &self.severity.iv,
        ];
        let mut severities = [SeverityPolicy {
            calendar: CalendarKind::AllDay,
            budgets: DEFAULT_BUDGETS[0],
        }; 4];
        for severity in Severity::ALL {
            let s = severity.index();
            let given = table[s];
            let mut chosen = [Duration::ZERO; 3];
            let mut previous: Option<(Target, Duration)> = None;
            for target in Target::ALL {
                let field = FIELD_BUDGETS[s][target.index()];
                let value = given
                    .get(target)
                    .unwrap_or_else(|| DEFAULT_BUDGETS[s].get(target));
                if value < Duration::from_secs(60) || value > MAX_BUDGET {
                    return Err(SlaConfigError::new(
                        field,
                        format!(
                            "{} is outside 1m..=366days",
                            humantime::format_duration(value)
                        ),
                    ));
                }
                if let Some((before, limit)) = previous.filter(|(_, limit)| value < *limit) {
                    return Err(SlaConfigError::new(
                        field,
                        format!(
                            "{} is shorter than {before} ({}); targets come in the order respond, plan, resolve",
                            humantime::format_duration(value),
                            humantime::format_duration(limit)
                        ),
                    ));
                }
                previous = Some((target, value));
                chosen[target.index()] = value;
            }
            severities[s] = SeverityPolicy {
                calendar: given.calendar.unwrap_or(self.calendar),
                budgets: Budgets {
                    respond: chosen[0],
                    plan: chosen[1],
                    resolve: chosen[2],
                },
            };
        }
        Ok(SlaPolicy {
            warn_fraction: self.warn_at,
            escalation: self.escalation,
            business: Calendar::Business(hours),
            severities,
        })
    }
}

/// Minutes east of UTC.
fn parse_offset(text: &str) -> Option<i32> {
    let text = text.trim();
    if text.eq_ignore_ascii_case("z") || text.eq_ignore_ascii_case("utc") {
        return Some(0);
    }
    let (sign, rest) = match text.as_bytes().first()? {
        b'+' => (1, &text[1..]),
        b'-' => (-1, &text[1..]),
        _ => return None,
    };
    let minutes = parse_clock(rest, false)?;
    i32::try_from(minutes).ok().map(|m| sign * m)
}

/// Minutes after midnight of "HH:MM"; "24:00" only when `allow_24`.
fn parse_clock(text: &str, allow_24: bool) -> Option<u32> {
    let (h, m) = text.trim().split_once(':')?;
    if h.is_empty() || h.len() > 2 || m.len() != 2 {
        return None;
    }
    if !h.bytes().chain(m.bytes()).all(|b| b.is_ascii_digit()) {
        return None;
    }
    let (h, m): (u32, u32) = (h.parse().ok()?, m.parse().ok()?);
    match (h, m) {
        (24, 0) if allow_24 => Some(1440),
        (0..=23, 0..=59) => Some(h * 60 + m),
        _ => None,
    }
}

/// Dates as quoted strings ("2025-10-01") or TOML local dates (2025-10-01),
/// since people will write either.
fn deserialize_dates<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<NaiveDate>, D::Error> {
    struct Date(NaiveDate);

    struct DateVisitor;

    impl<'de> serde::de::Visitor<'de> for DateVisitor {
        type Value = Date;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a date like 2025-10-01")
        }

        fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Date, E> {
            NaiveDate::parse_from_str(v.trim(), "%Y-%m-%d")
                .map(Date)
                .map_err(|_| E::custom(format!("{v:?} is not a date like 2025-10-01")))
        }

        // TOML hands its date values over as a one-entry map.
        fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Date, A::Error> {
            let Some((_, value)) = map.next_entry::<serde::de::IgnoredAny, String>()? else {
                return Err(serde::de::Error::custom("expected a date like 2025-10-01"));
            };
            self.visit_str(&value)
        }
    }

    impl<'de> Deserialize<'de> for Date {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            d.deserialize_any(DateVisitor)
        }
    }

    Ok(Vec::<Date>::deserialize(d)?
        .into_iter()
        .map(|Date(d)| d)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    /// Beijing local time → UTC.
    fn bj(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> DateTime<Utc> {
        chrono::FixedOffset::east_opt(8 * 3600)
            .and_then(|o| o.with_ymd_and_hms(y, mo, d, h, mi, 0).single())
            .map(|t| t.with_timezone(&Utc))
            .expect("valid test time")
    }

    fn date(y: i32, m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, d).expect("valid test date")
    }

    fn mins(m: u64) -> Duration {
        Duration::from_secs(m * 60)
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct File {
        #[serde(default)]
        sla: SlaConfig,
    }

    fn policy(toml_text: &str) -> Result<SlaPolicy, String> {
        let file: File = toml::from_str(toml_text).map_err(|e| e.to_string())?;
        file.sla.policy().map_err(|e| e.to_string())
    }

    /// 2025 National Day: Oct 1–8 off, Sun Sep 28 and Sat Oct 11 worked.
    const NATIONAL_DAY: &str = r#"
        [sla]
        calendar = "5x8"
        [sla.business_hours]
        utc_offset = "+08:00"
        start = "09:00"
        end = "18:00"
        holidays = [2025-10-01, 2025-10-02, 2025-10-03, 2025-10-04,
                    "2025-10-05", "2025-10-06", "2025-10-07", "2025-10-08"]
        workdays = ["2025-09-28", 2025-10-11]
    "#;

    fn business() -> SlaPolicy {
        policy(NATIONAL_DAY).expect("sample config is valid")
    }

    fn biz_calendar() -> Calendar {
        business().calendar(CalendarKind::Business).clone()
    }

    #[test]
    fn defaults_match_the_issue() {
        let p = SlaPolicy::default();
        assert_eq!(policy("").unwrap(), p);
        let expect = [
            (Severity::I, 12),
            (Severity::II, 24),
            (Severity::III, 48),
            (Severity::IV, 48),
        ];
        for (s, hours) in expect {
            let b = p.severity(s).budgets;
            assert_eq!(b.respond, mins(30), "{s}");
            assert_eq!(b.plan, mins(120), "{s}");
            assert_eq!(b.resolve, mins(60 * hours), "{s}");
            assert_eq!(p.severity(s).calendar, CalendarKind::AllDay);
        }
        assert_eq!(p.warn_fraction(), 0.8);
    }

    #[test]
    fn full_config_parses_with_per_severity_overrides() {
        let p = policy(
            r#"
            [sla]
            calendar = "5x8"
            warn_at = 0.75
            [sla.escalation]
            resolve = 4
            [sla.severity.I]
            calendar = "7x24"
            resolve = "8h"
            [sla.severity.III]
            respond = "1h"
            plan = "4h"
            resolve = "3days"
            "#,
        )
        .unwrap();
        assert_eq!(p.warn_fraction(), 0.75);
        assert_eq!(p.escalation().level(Target::Resolve), 4);
        assert_eq!(p.escalation().level(Target::Respond), 1);
        assert_eq!(p.severity(Severity::I).calendar, CalendarKind::AllDay);
        assert_eq!(p.severity(Severity::I).budgets.resolve, mins(8 * 60));
        assert_eq!(p.severity(Severity::I).budgets.respond, mins(30));
        assert_eq!(p.severity(Severity::II).calendar, CalendarKind::Business);
        assert_eq!(p.severity(Severity::III).budgets.plan, mins(240));
        assert_eq!(p.severity(Severity::III).budgets.resolve, mins(72 * 60));
    }

    #[test]
    fn config_errors_name_the_field() {
        let cases = [
            ("[sla]\nwarn_at = 1.0\n", "sla.warn_at"),
            ("[sla]\nwarn_at = 0.0\n", "sla.warn_at"),
            (
                "[sla.severity.II]\nresolve = \"0s\"\n",
                "sla.severity.II.resolve",
            ),
            (
                "[sla.severity.IV]\nrespond = \"400days\"\n",
                "sla.severity.IV.respond",
            ),
            ("[sla.severity.I]\nplan = \"10m\"\n", "sla.severity.I.plan"),
            (
                "[sla.severity.III]\nresolve = \"1h\"\n",
                "sla.severity.III.resolve",
            ),
            (
                "[sla.business_hours]\nutc_offset = \"Asia/Shanghai\"\n",
                "sla.business_hours.utc_offset",
            ),
            (
                "[sla.business_hours]\nutc_offset = \"+15:00\"\n",
                "sla.business_hours.utc_offset",
            ),
            (
                "[sla.business_hours]\nstart = \"9am\"\n",
                "sla.business_hours.start",
            ),
            (
                "[sla.business_hours]\nend = \"08:00\"\n",
                "sla.business_hours.end",
            ),
            (
                "[sla.business_hours]\nend = \"25:00\"\n",
                "sla.business_hours.end",
            ),
            (
                "[sla.business_hours]\nholidays = [\"2025-10-11\"]\nworkdays = [\"2025-10-11\"]\n",
                "sla.business_hours.workdays",
            ),
            (
                "[sla.business_hours]\nworkdays = [\"2025-10-09\"]\n",
                "sla.business_hours.workdays",
            ),
            ("[sla.escalation]\nplan = 0\n", "sla.escalation.plan"),
        ];
        for (text, field) in cases {
            let msg = policy(text).unwrap_err();
            assert!(msg.contains(&format!("`{field}`")), "{text:?} gave {msg}");
        }
    }

    #[test]
    fn unknown_and_malformed_fields_are_named_by_the_parser() {
        for (text, needle) in [
            ("[sla]\nwarn = 0.5\n", "warn"),
            ("[sla.severity.V]\nrespond = \"1h\"\n", "V"),
            ("[sla.severity.I]\nrespnd = \"1h\"\n", "respnd"),
            ("[sla]\ncalendar = \"24x7\"\n", "24x7"),
            (
                "[sla.business_hours]\nholidays = [\"2025-13-01\"]\n",
                "2025-13-01",
            ),
            ("[sla.business_hours]\nholiday = []\n", "holiday"),
            ("[sla.severity.II]\nplan = \"soon\"\n", "plan"),
        ] {
            let msg = policy(text).unwrap_err();
            assert!(msg.contains(needle), "{text:?} gave {msg}");
        }
    }

    #[test]
    fn business_hours_can_be_built_directly() {
        let round_the_clock = BusinessHours::new(480, 0, 1440, &[date(2025, 10, 1)], &[]).unwrap();
        let cal = Calendar::Business(round_the_clock);
        // Wednesday 1 Oct is off; Thursday counts from midnight.
        assert_eq!(
            deadline(&cal, bj(2025, 9, 30, 23, 0), mins(120)),
            bj(2025, 10, 2, 1, 0)
        );
        let err = BusinessHours::new(480, 600, 600, &[], &[]).unwrap_err();
        assert_eq!(err.field, "sla.business_hours.end");
        let err = BusinessHours::new(-900, 540, 1080, &[], &[]).unwrap_err();
        assert_eq!(err.field, "sla.business_hours.utc_offset");
        let err = BusinessHours::new(480, 1440, 1440, &[], &[]).unwrap_err();
        assert_eq!(err.field, "sla.business_hours.start");
    }

    #[test]
    fn all_day_deadline_crosses_midnight() {
        let opened = bj(2025, 3, 4, 23, 50);
        assert_eq!(
            deadline(&Calendar::AllDay, opened, mins(30)),
            bj(2025, 3, 5, 0, 20)
        );
        assert_eq!(
            elapsed_business(&Calendar::AllDay, opened, bj(2025, 3, 5, 0, 20)),
            mins(30)
        );
        assert_eq!(
            elapsed_business(&Calendar::AllDay, bj(2025, 3, 5, 0, 20), opened),
            Duration::ZERO
        );
    }

    #[test]
    fn business_deadline_friday_evening_crosses_the_weekend() {
        let cal = biz_calendar();
        let opened = bj(2025, 3, 7, 17, 30); // Friday
        assert_eq!(deadline(&cal, opened, mins(30)), bj(2025, 3, 7, 18, 0));
        assert_eq!(deadline(&cal, opened, mins(120)), bj(2025, 3, 10, 10, 30));
        // 12 working hours: 0.5 Fri + 9 Mon + 2.5 Tue.
        assert_eq!(
            deadline(&cal, opened, mins(12 * 60)),
            bj(2025, 3, 11, 11, 30)
        );
        assert_eq!(
            elapsed_business(&cal, opened, bj(2025, 3, 10, 10, 30)),
            mins(120)
        );
        // Saturday, and Monday before opening, count nothing.
        assert_eq!(
            elapsed_business(&cal, bj(2025, 3, 8, 10, 0), bj(2025, 3, 10, 8, 0)),
            Duration::ZERO
        );
    }

    #[test]
    fn business_deadline_skips_holidays() {
        let cal = biz_calendar();
        // Tuesday 30 Sep 17:00: Oct 1–8 are holidays (8 Oct is a Wednesday).
        let opened = bj(2025, 9, 30, 17, 0);
        assert_eq!(deadline(&cal, opened, mins(120)), bj(2025, 10, 9, 10, 0));
        assert_eq!(
            elapsed_business(&cal, opened, bj(2025, 10, 9, 10, 0)),
            mins(120)
        );
        // Opened during the holiday: the clock starts on the 9th.
        assert_eq!(
            deadline(&cal, bj(2025, 10, 3, 11, 0), mins(30)),
            bj(2025, 10, 9, 9, 30)
        );
    }

    #[test]
    fn business_deadline_counts_make_up_saturday() {
        let cal = biz_calendar();
        // Friday 10 Oct 17:30; Saturday 11 Oct is a make-up working day.
        let opened = bj(2025, 10, 10, 17, 30);
        assert_eq!(deadline(&cal, opened, mins(120)), bj(2025, 10, 11, 10, 30));
        // An incident opened on the make-up Saturday itself.
        assert_eq!(
            deadline(&cal, bj(2025, 10, 11, 9, 0), mins(30)),
            bj(2025, 10, 11, 9, 30)
        );
        // An ordinary Saturday (18 Oct) counts nothing.
        assert_eq!(
            deadline(&cal, bj(2025, 10, 18, 9, 0), mins(30)),
            bj(2025, 10, 20, 9, 30)
        );
        assert!(cal.is_working_time(bj(2025, 10, 11, 12, 0)));
        assert!(!cal.is_working_time(bj(2025, 10, 18, 12, 0)));
        assert!(!cal.is_working_time(bj(2025, 10, 1, 12, 0)));
        assert!(!cal.is_working_time(bj(2025, 10, 9, 18, 0)));
    }

    #[test]
    fn budget_ending_at_closing_time_ends_that_day() {
        let cal = biz_calendar();
        assert_eq!(
            deadline(&cal, bj(2025, 3, 3, 9, 0), mins(9 * 60)),
            bj(2025, 3, 3, 18, 0)
        );
        assert_eq!(
            deadline(&cal, bj(2025, 3, 3, 9, 0), mins(18 * 60)),
            bj(2025, 3, 4, 18, 0)
        );
    }

    #[test]
    fn deadline_and_elapsed_agree_over_long_spans() {
        let cal = biz_calendar();
        let opened = bj(2025, 9, 1, 13, 7);
        for m in [1, 59, 540, 541, 2700, 5000, 40_000, 400_000] {
            let due = deadline(&cal, opened, mins(m));
            assert_eq!(elapsed_business(&cal, opened, due), mins(m), "{m} min");
            assert!(cal.is_working_time(due - chrono::Duration::milliseconds(1)));
        }
        // 50 working days from Mon 1 Sep: 23 in September (with Sun 28),
        // 18 in October (23 weekdays, 6 lost to the holiday, Sat 11 gained),
        // then 3–7 and 10–13 November.
        let due = deadline(&cal, bj(2025, 9, 1, 9, 0), mins(50 * 9 * 60));
        assert_eq!(due, bj(2025, 11, 13, 18, 0));
    }

    #[test]
    fn absurd_inputs_saturate_instead_of_panicking() {
        let cal = biz_calendar();
        let max = DateTime::<Utc>::MAX_UTC;
        assert_eq!(deadline(&cal, bj(2025, 1, 1, 0, 0), Duration::MAX), max);
        assert_eq!(deadline(&Calendar::AllDay, max, mins(1)), max);
        assert_eq!(deadline(&cal, max, mins(1)), max);
        let _ = deadline(&cal, DateTime::<Utc>::MIN_UTC, mins(1));
        let span = elapsed_business(&cal, DateTime::<Utc>::MIN_UTC, max);
        assert!(span > Duration::from_secs(86_400 * 365 * 100_000));
        let all = elapsed_business(&Calendar::AllDay, DateTime::<Utc>::MIN_UTC, max);
        assert!(all > span);
        assert_eq!(
            deadline(&cal, bj(2025, 3, 8, 10, 0), Duration::ZERO),
            bj(2025, 3, 8, 10, 0)
        );
    }

    #[test]
    fn clock_warns_breaches_and_escalates_each_once_on_all_day() {
        let p = SlaPolicy::default();
        let opened = bj(2025, 3, 4, 23, 40);
        let mut clock = SlaClock::new(Severity::I, opened, &p);
        assert_eq!(clock.warn_at(Target::Respond), bj(2025, 3, 5, 0, 4));
        assert_eq!(clock.due(Target::Respond), bj(2025, 3, 5, 0, 10));
        assert_eq!(clock.due(Target::Resolve), bj(2025, 3, 5, 11, 40));

        assert!(
            clock
                .tick(bj(2025, 3, 5, 0, 3), None, None, None)
                .is_empty()
        );
        let warn = clock.tick(bj(2025, 3, 5, 0, 4), None, None, None);
        assert_eq!(
            warn,
            vec![SlaEvent::PreBreachWarning {
                target: Target::Respond,
                at: bj(2025, 3, 5, 0, 4)
            }]
        );
        assert!(
            clock
                .tick(bj(2025, 3, 5, 0, 5), None, None, None)
                .is_empty()
        );
        let now = bj(2025, 3, 5, 0, 10);
        assert_eq!(
            clock.tick(now, None, None, None),
            vec![
                SlaEvent::Breached {
                    target: Target::Respond,
                    at: now
                },
                SlaEvent::Escalate {
                    target: Target::Respond,
                    to_level: 1,
                    at: now
                },
            ]
        );
        assert!(
            clock
                .tick(bj(2025, 3, 5, 0, 11), None, None, None)
                .is_empty()
        );
        assert_eq!(
            clock.outcome(Target::Respond, bj(2025, 3, 5, 0, 11), None),
            Outcome::Breached
        );
    }

    #[test]
    fn met_target_stops_its_clock() {
        let p = SlaPolicy::default();
        let opened = bj(2025, 3, 4, 10, 0);
        let mut clock = SlaClock::new(Severity::II, opened, &p);
        let ack = Some(bj(2025, 3, 4, 10, 20));
        // Acknowledged before the warning: respond never fires; plan warns.
        let events = clock.tick(bj(2025, 3, 4, 11, 40), ack, None, None);
        assert_eq!(
            events,
            vec![SlaEvent::PreBreachWarning {
                target: Target::Plan,
                at: bj(2025, 3, 4, 11, 36)
            }]
        );
        let planned = Some(bj(2025, 3, 4, 11, 50));
        assert_eq!(
            clock.tick(bj(2025, 3, 5, 9, 0), ack, planned, None),
            vec![SlaEvent::PreBreachWarning {
                target: Target::Resolve,
                at: bj(2025, 3, 5, 5, 12)
            }]
        );
        let resolved = Some(bj(2025, 3, 5, 9, 30));
        assert!(
            clock
                .tick(bj(2025, 3, 9, 0, 0), ack, planned, resolved)
                .is_empty()
        );
        let a = clock.attainment(&p, bj(2025, 3, 9, 0, 0), ack, planned, resolved);
        assert_eq!(a.time_to_acknowledge, Some(mins(20)));
        assert_eq!(a.time_to_plan, Some(mins(110)));
        assert_eq!(a.time_to_resolve, Some(mins(23 * 60 + 30)));
        assert_eq!(
            (a.respond, a.plan, a.resolve),
            (Outcome::MetOnTime, Outcome::MetOnTime, Outcome::MetOnTime)
        );
        assert_eq!(a.resolve.on_time(), Some(true));
    }

    #[test]
    fn resolution_stops_every_clock() {
        let p = SlaPolicy::default();
        let opened = bj(2025, 3, 4, 10, 0);
        let mut clock = SlaClock::new(Severity::I, opened, &p);
        let resolved = Some(bj(2025, 3, 4, 10, 5));
        assert!(
            clock
                .tick(bj(2025, 3, 6, 0, 0), None, None, resolved)
                .is_empty()
        );
        let a = clock.attainment(&p, bj(2025, 3, 6, 0, 0), None, None, resolved);
        assert_eq!(a.time_to_acknowledge, None);
        assert_eq!(a.respond, Outcome::MetOnTime);
        assert_eq!(a.time_to_resolve, Some(mins(5)));
    }

    #[test]
    fn late_target_is_breached_once_but_not_escalated_once_met() {
        let p = SlaPolicy::default();
        let opened = bj(2025, 3, 4, 10, 0);
        let mut clock = SlaClock::new(Severity::III, opened, &p);
        // The collector was down: first tick after a late acknowledgement.
        let ack = Some(bj(2025, 3, 4, 10, 45));
        let events = clock.tick(bj(2025, 3, 4, 10, 50), ack, None, None);
        assert_eq!(
            events,
            vec![SlaEvent::Breached {
                target: Target::Respond,
                at: bj(2025, 3, 4, 10, 30)
            }]
        );
        assert!(
            clock
                .tick(bj(2025, 3, 4, 10, 55), ack, None, None)
                .is_empty()
        );
        let a = clock.attainment(&p, bj(2025, 3, 4, 10, 55), ack, None, None);
        assert_eq!(a.respond, Outcome::MetLate);
        assert_eq!(a.respond.on_time(), Some(false));
        assert_eq!(a.plan, Outcome::Running);
        assert_eq!(a.plan.on_time(), None);
    }

    #[test]
    fn jumping_past_due_breaches_without_a_stale_warning() {
        let p = SlaPolicy::default();
        let mut clock = SlaClock::new(Severity::IV, bj(2025, 3, 4, 10, 0), &p);
        let events = clock.tick(bj(2025, 3, 4, 12, 30), None, None, None);
        let kinds: Vec<_> = events
            .iter()
            .map(|e| match e {
                SlaEvent::PreBreachWarning { .. } => ("warn", e.target()),
                SlaEvent::Breached { .. } => ("breach", e.target()),
                SlaEvent::Escalate { .. } => ("escalate", e.target()),
            })
            .collect();
        assert_eq!(
            kinds,
            vec![
                ("breach", Target::Respond),
                ("breach", Target::Plan),
                ("escalate", Target::Respond),
                ("escalate", Target::Plan),
            ]
        );
        assert!(
            clock
                .tick(bj(2025, 3, 4, 12, 31), None, None, None)
                .is_empty()
        );
    }

    #[test]
    fn business_clock_friday_evening_full_sequence() {
        let p = business();
        let opened = bj(2025, 3, 7, 17, 30);
        let mut clock = SlaClock::new(Severity::II, opened, &p);
        assert_eq!(clock.calendar(), CalendarKind::Business);
        // respond: 24 min → Fri 17:54, due 18:00. plan: 96 min → Mon 10:06,
        // due Mon 10:30. resolve 24h working = 0.5 + 9 + 9 + 5.5 → Wed 14:30,
        // warned at 19.2h → Wed 09:42.
        assert_eq!(clock.warn_at(Target::Respond), bj(2025, 3, 7, 17, 54));
        assert_eq!(clock.due(Target::Respond), bj(2025, 3, 7, 18, 0));
        assert_eq!(clock.warn_at(Target::Plan), bj(2025, 3, 10, 10, 6));
        assert_eq!(clock.due(Target::Plan), bj(2025, 3, 10, 10, 30));
        assert_eq!(clock.due(Target::Resolve), bj(2025, 3, 12, 14, 30));

        let mut all = Vec::new();
        // Tick every minute from opening to Thursday, acknowledging on
        // Saturday (late) and never planning or resolving.
        let ack = bj(2025, 3, 8, 11, 0);
        let mut now = opened;
        while now < bj(2025, 3, 13, 12, 0) {
            let a = Some(ack).filter(|a| *a <= now);
            all.extend(clock.tick(now, a, None, None));
            now += chrono::Duration::minutes(1);
        }
        let fmt: Vec<String> = all
            .iter()
            .map(|e| match e {
                SlaEvent::PreBreachWarning { target, at } => format!("warn {target} {at}"),
                SlaEvent::Breached { target, at } => format!("breach {target} {at}"),
                SlaEvent::Escalate {
                    target,
                    to_level,
                    at,
                } => format!("escalate {target} {to_level} {at}"),
            })
            .collect();
        assert_eq!(
            fmt,
            vec![
                "warn respond 2025-03-07 09:54:00 UTC",
                "breach respond 2025-03-07 10:00:00 UTC",
                "escalate respond 1 2025-03-07 10:00:00 UTC",
                "warn plan 2025-03-10 02:06:00 UTC",
                "breach plan 2025-03-10 02:30:00 UTC",
                "escalate plan 2 2025-03-10 02:30:00 UTC",
                "warn resolve 2025-03-12 01:42:00 UTC",
                "breach resolve 2025-03-12 06:30:00 UTC",
                "escalate resolve 3 2025-03-12 06:30:00 UTC",
            ]
        );
        let a = clock.attainment(&p, now, Some(ack), None, None);
        // Acknowledged on Saturday: 30 working minutes on Friday only.
        assert_eq!(a.time_to_acknowledge, Some(mins(30)));
        assert_eq!(a.respond, Outcome::MetLate);
        assert_eq!(a.resolve, Outcome::Breached);
    }

    #[test]
    fn business_clock_across_holiday_and_make_up_day() {
        let p = business();
        // Tuesday 30 Sep 17:00, severity I: resolve in 12 working hours.
        let opened = bj(2025, 9, 30, 17, 0);
        let mut clock = SlaClock::new(Severity::I, opened, &p);
        assert_eq!(clock.due(Target::Respond), bj(2025, 9, 30, 17, 30));
        assert_eq!(clock.due(Target::Plan), bj(2025, 10, 9, 10, 0));
        // 1 + 9 (Oct 9) + 2 (Oct 10) → Fri 10 Oct 11:00.
        assert_eq!(clock.due(Target::Resolve), bj(2025, 10, 10, 11, 0));
        let ack = Some(bj(2025, 9, 30, 17, 10));
        assert!(
            clock
                .tick(bj(2025, 10, 5, 12, 0), ack, None, None)
                .is_empty()
        );
        let events = clock.tick(bj(2025, 10, 9, 9, 50), ack, None, None);
        assert_eq!(
            events,
            vec![SlaEvent::PreBreachWarning {
                target: Target::Plan,
                at: bj(2025, 10, 9, 9, 36)
            }]
        );
        let planned = Some(bj(2025, 10, 9, 9, 55));
        let resolved = Some(bj(2025, 10, 11, 10, 0)); // the make-up Saturday
        let events = clock.tick(bj(2025, 10, 11, 10, 0), ack, planned, resolved);
        // Past due when resolved: the breach is reported, the stale warning
        // and the escalation are not.
        assert_eq!(
            events,
            vec![SlaEvent::Breached {
                target: Target::Resolve,
                at: bj(2025, 10, 10, 11, 0)
            }]
        );
        let a = clock.attainment(&p, bj(2025, 10, 12, 0, 0), ack, planned, resolved);
        // 1h on Sep 30 + 9 + 9 + 1 on the make-up Saturday = 20 working hours.
        assert_eq!(a.time_to_resolve, Some(mins(20 * 60)));
        assert_eq!(a.time_to_plan, Some(mins(60 + 55)));
        assert_eq!(a.resolve, Outcome::MetLate);
        assert_eq!(a.plan, Outcome::MetOnTime);
    }

    #[test]
    fn clock_survives_serialisation_without_repeating_events() {
        let p = SlaPolicy::default();
        let opened = bj(2025, 3, 4, 10, 0);
        let mut clock = SlaClock::new(Severity::I, opened, &p);
        assert_eq!(
            clock.tick(bj(2025, 3, 4, 10, 25), None, None, None).len(),
            1
        );
        let json = serde_json::to_string(&clock).unwrap();
        let mut back: SlaClock = serde_json::from_str(&json).unwrap();
        assert_eq!(back, clock);
        assert!(
            back.tick(bj(2025, 3, 4, 10, 26), None, None, None)
                .is_empty()
        );
        assert_eq!(back.tick(bj(2025, 3, 4, 10, 30), None, None, None).len(), 2);
    }
}
