//! When inspection plans and scheduled reports run, and the calendar periods
//! (month, quarter, year) that reports cover, both in an IANA time zone.
//!
//! # Schedule forms
//!
//! Keywords and weekday names are case-insensitive; words are separated by
//! whitespace, and nothing may follow the form.
//!
//! | form                          | runs                                                  |
//! |-------------------------------|-------------------------------------------------------|
//! | `daily HH:MM`                 | every day                                             |
//! | `weekly DAY HH:MM`            | every DAY (`mon`..`sun` or `monday`..`sunday`)         |
//! | `monthly D HH:MM`             | day D (1-31 or `last`) of every month                 |
//! | `quarterly D HH:MM`           | day D of January, April, July and October             |
//! | `cron MIN HOUR DOM MON DOW`   | standard 5-field cron, evaluated by the `croner` crate |
//!
//! A month without day D runs on its last day: `monthly 31` runs on 28/29
//! February and 30 April, `monthly 30` on 28/29 February. So no month is
//! skipped, and `monthly last` is the last day of every month.
//!
//! # Daylight-saving time (keyword forms)
//!
//! A run belongs to a local date and a local wall-clock time; each scheduled
//! local time runs exactly once, and no scheduled day is skipped:
//!
//! - **Gap** (spring forward; the local time does not exist): the time is read
//!   with the UTC offset in force *before* the gap, i.e. it is shifted forward
//!   by the length of the gap. `daily 02:30` in America/New_York on 2026-03-08
//!   (02:00 → 03:00) runs at 03:30 EDT = 07:30Z, exactly 24 hours after the
//!   previous day's run. This is RFC 5545's rule (and Temporal's/jiff's
//!   "compatible" disambiguation); Vixie cron and croner instead run at the end
//!   of the gap (03:00), see below.
//! - **Overlap** (fall back; the local time happens twice): the run is at the
//!   first (earlier) occurrence only. `daily 01:30` in America/New_York on
//!   2026-11-01 runs at 01:30 EDT = 05:30Z, not again at 01:30 EST.
//!
//! # Daylight-saving time (`cron` form)
//!
//! The cron form keeps croner's own rules, which differ in one respect:
//!
//! - A *fixed-time* pattern (one minute and one hour, e.g. `cron 30 2 * * *`)
//!   whose time falls in a gap runs at the first instant after the gap:
//!   03:00 local on the New York change day, not 03:30 as `daily 02:30` does.
//!   In an overlap it runs once, at the earlier occurrence, like the keyword
//!   forms.
//! - An *interval* pattern (wildcards, steps, ranges or lists in the minute or
//!   hour, e.g. `cron */30 * * * *`) has no runs inside a gap (those times do
//!   not exist) and runs in both passes of an overlap, so it keeps its real
//!   spacing in elapsed time.
//!
//! # Periods
//!
//! A report period is a local calendar month, quarter or year. Its bounds, and
//! the bounds of each of its days, are the first instant of the local day, so
//! a day is 23 or 25 hours long when the clocks change on it. Where local
//! midnight falls in a gap, the day starts at the end of the gap.

use std::fmt;

use chrono::{
    DateTime, Datelike, LocalResult, NaiveDate, NaiveDateTime, NaiveTime, Offset, TimeDelta,
    TimeZone, Utc, Weekday,
};
use chrono_tz::Tz;
use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};

use crate::report::model::PeriodKind;

/// Returned by [`Schedule::next_after`] when no run can follow, which only
/// happens far beyond any real date: at the end of chrono's calendar, or
/// after the year 5000 for the cron form, where croner stops searching (a
/// cron pattern is checked to have runs when it is parsed).
pub const NEVER: DateTime<Utc> = DateTime::<Utc>::MAX_UTC;

const ACCEPTED_FORMS: &str = "\"daily HH:MM\", \"weekly DAY HH:MM\", \"monthly D HH:MM\", \
     \"quarterly D HH:MM\" (D = 1-31 or last) or \"cron MIN HOUR DOM MON DOW\"";

const CRON_FORM: &str = "\"cron MIN HOUR DOM MON DOW\", e.g. \"cron 0 8 * * 1-5\"";

/// Quarterly runs are at most 92 days apart; a year of local days is ample.
const SEARCH_DAYS: u32 = 400;

/// Why a schedule, time zone or period could not be parsed.
#[derive(Debug, thiserror::Error)]
pub enum ScheduleError {
    #[error("empty schedule; expected one of {ACCEPTED_FORMS}")]
    Empty,
    #[error("unknown schedule kind {kind:?} in {spec:?}; expected one of {ACCEPTED_FORMS}")]
    UnknownKind { spec: String, kind: String },
    #[error("schedule {spec:?} is missing the {missing}; expected {form:?}")]
    Missing {
        spec: String,
        missing: &'static str,
        form: &'static str,
    },
    #[error(
        "bad time {text:?} in schedule {spec:?}; expected HH:MM with HH 00-23 and MM 00-59, \
         e.g. \"08:30\""
    )]
    BadTime { spec: String, text: String },
    #[error(
        "bad weekday {text:?} in schedule {spec:?}; expected mon, tue, wed, thu, fri, sat or sun \
         (or the full name)"
    )]
    BadWeekday { spec: String, text: String },
    #[error("bad day of month {text:?} in schedule {spec:?}; expected 1-31 or \"last\"")]
    BadDayOfMonth { spec: String, text: String },
    #[error("unexpected {extra:?} after the schedule in {spec:?}; expected {form:?}")]
    TrailingInput {
        spec: String,
        extra: String,
        form: &'static str,
    },
    #[error("cron schedule {spec:?} has {found} fields; expected exactly 5: {CRON_FORM}")]
    CronFieldCount { spec: String, found: usize },
    #[error("bad cron pattern {pattern:?}: {reason}; expected {CRON_FORM}")]
    BadCron { pattern: String, reason: String },
    #[error("cron pattern {pattern:?} never matches a real date (e.g. 30 February)")]
    CronNeverRuns { pattern: String },
    #[error(
        "unknown time zone {name:?}; expected an IANA name such as \"Europe/Berlin\", \
         \"Asia/Shanghai\" or \"UTC\""
    )]
    UnknownTimeZone { name: String },
    #[error("bad {kind} period {text:?}; expected {expected}")]
    BadPeriod {
        kind: &'static str,
        text: String,
        expected: &'static str,
    },
}

/// A parsed schedule and the time zone its local times are in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    rule: Rule,
    timezone: Tz,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Rule {
    Calendar { days: RunDays, at: NaiveTime },
    // Boxed: a `Cron` is about 300 bytes, the calendar rule a few dozen.
    Cron { pattern: String, cron: Box<Cron> },
}

/// The local dates a keyword-form schedule runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RunDays {
    Daily,
    Weekly(Weekday),
    Monthly(DayOfMonth),
    Quarterly(DayOfMonth),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DayOfMonth {
    /// 1..=31; clamped to the month's last day.
    Day(u32),
    Last,
}

impl DayOfMonth {
    fn in_month(self, year: i32, month: u32) -> u32 {
        let last = days_in_month(year, month);
        match self {
            DayOfMonth::Day(day) => day.min(last),
            DayOfMonth::Last => last,
        }
    }
}

impl RunDays {
    fn includes(self, date: NaiveDate) -> bool {
        match self {
            RunDays::Daily => true,
            RunDays::Weekly(weekday) => date.weekday() == weekday,
            RunDays::Monthly(day) => date.day() == day.in_month(date.year(), date.month()),
            RunDays::Quarterly(day) => {
                date.month() % 3 == 1 && date.day() == day.in_month(date.year(), date.month())
            }
        }
    }
}

impl Schedule {
    /// Parses one of the forms in the module documentation; `timezone` is an
    /// IANA name such as "Asia/Shanghai".
    pub fn parse(spec: &str, timezone: &str) -> Result<Schedule, ScheduleError> {
        let timezone = parse_timezone(timezone)?;
        let words: Vec<&str> = spec.split_whitespace().collect();
        let Some((kind, args)) = words.split_first() else {
            return Err(ScheduleError::Empty);
        };
        let mut args = Args {
            spec,
            words: args.iter(),
        };
        let rule = match kind.to_ascii_lowercase().as_str() {
            "daily" => {
                const FORM: &str = "daily HH:MM";
                let at = parse_time(spec, args.next("time", FORM)?)?;
                args.finish(FORM)?;
                Rule::Calendar {
                    days: RunDays::Daily,
                    at,
                }
            }
            "weekly" => {
                const FORM: &str = "weekly DAY HH:MM";
                let weekday = parse_weekday(spec, args.next("day of the week", FORM)?)?;
                let at = parse_time(spec, args.next("time", FORM)?)?;
                args.finish(FORM)?;
                Rule::Calendar {
                    days: RunDays::Weekly(weekday),
                    at,
                }
            }
            "monthly" => {
                const FORM: &str = "monthly D HH:MM";
                let day = parse_day_of_month(spec, args.next("day of the month", FORM)?)?;
                let at = parse_time(spec, args.next("time", FORM)?)?;
                args.finish(FORM)?;
                Rule::Calendar {
                    days: RunDays::Monthly(day),
                    at,
                }
            }
            "quarterly" => {
                const FORM: &str = "quarterly D HH:MM";
                let day = parse_day_of_month(spec, args.next("day of the month", FORM)?)?;
                let at = parse_time(spec, args.next("time", FORM)?)?;
                args.finish(FORM)?;
                Rule::Calendar {
                    days: RunDays::Quarterly(day),
                    at,
                }
            }
            "cron" => parse_cron(spec, args.words.as_slice(), timezone)?,
            _ => {
                return Err(ScheduleError::UnknownKind {
                    spec: spec.to_owned(),
                    kind: (*kind).to_owned(),
                });
            }
        };
        Ok(Schedule { rule, timezone })
    }

    /// The first run strictly after `after` ([`NEVER`] if none can follow).
    pub fn next_after(&self, after: DateTime<Utc>) -> DateTime<Utc> {
        match &self.rule {
            Rule::Calendar { days, at } => self.next_calendar_run(*days, *at, after),
            Rule::Cron { cron, .. } => {
                // croner reads the local time without overflow checks.
                if local_date_time(self.timezone, after).is_none() {
                    return NEVER;
                }
                cron.find_next_occurrence(&after.with_timezone(&self.timezone), false)
                    .map_or(NEVER, |run| run.with_timezone(&Utc))
            }
        }
    }

    /// All runs in (`from`, `to`], oldest first, at most `limit` of them.
    pub fn runs_between(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        limit: usize,
    ) -> Vec<DateTime<Utc>> {
        let mut runs = Vec::new();
        let mut cursor = from;
        while runs.len() < limit {
            let run = self.next_after(cursor);
            // `run > cursor` always holds, so this loop advances; the NEVER
            // check stops it at the end of the calendar.
            if run > to || run == NEVER {
                break;
            }
            runs.push(run);
            cursor = run;
        }
        runs
    }

    pub fn timezone(&self) -> Tz {
        self.timezone
    }

    fn next_calendar_run(
        &self,
        days: RunDays,
        at: NaiveTime,
        after: DateTime<Utc>,
    ) -> DateTime<Utc> {
        let Some(local_day) = local_date_time(self.timezone, after).map(|local| local.date())
        else {
            return NEVER;
        };
        // A run shifted over a gap that spans midnight lands on the next
        // local day (Pacific/Apia skipped all of 2011-12-30), so the search
        // starts two days back to still see it.
        let mut day = local_day
            .checked_sub_days(chrono::Days::new(2))
            .unwrap_or(local_day);
        for _ in 0..SEARCH_DAYS {
            if days.includes(day) {
                let run = local_to_utc(self.timezone, day.and_time(at), Gap::ShiftForward);
                // Runs never decrease from one scheduled day to the next, so
                // the first one past `after` is the earliest.
                if run > after {
                    return run;
                }
            }
            match day.succ_opt() {
                Some(next) => day = next,
                None => break,
            }
        }
        NEVER
    }
}

impl fmt::Display for Schedule {
    /// The canonical spec and the time zone, e.g. "monthly 31 08:00 (Asia/Shanghai)".
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.rule {
            Rule::Calendar { days, at } => {
                match days {
                    RunDays::Daily => f.write_str("daily")?,
                    RunDays::Weekly(weekday) => {
                        write!(f, "weekly {}", weekday.to_string().to_ascii_lowercase())?
                    }
                    RunDays::Monthly(day) => write!(f, "monthly {day}")?,
                    RunDays::Quarterly(day) => write!(f, "quarterly {day}")?,
                }
                write!(f, " {}", at.format("%H:%M"))?;
            }
            Rule::Cron { pattern, .. } => write!(f, "cron {pattern}")?,
        }
        write!(f, " ({})", self.timezone.name())
    }
}

impl fmt::Display for DayOfMonth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DayOfMonth::Day(day) => write!(f, "{day}"),
            DayOfMonth::Last => f.write_str("last"),
        }
    }
}

/// The words after the schedule kind, consumed left to right.
struct Args<'a> {
    spec: &'a str,
    words: std::slice::Iter<'a, &'a str>,
}

impl<'a> Args<'a> {
    fn next(
        &mut self,
        missing: &'static str,
        form: &'static str,
    ) -> Result<&'a str, ScheduleError> {
        self.words.next().copied().ok_or(ScheduleError::Missing {
            spec: self.spec.to_owned(),
            missing,
            form,
        })
    }

    fn finish(self, form: &'static str) -> Result<(), ScheduleError> {
        let rest = self.words.as_slice();
        if rest.is_empty() {
            Ok(())
        } else {
            Err(ScheduleError::TrailingInput {
                spec: self.spec.to_owned(),
                extra: rest.join(" "),
                form,
            })
        }
    }
}

fn parse_timezone(name: &str) -> Result<Tz, ScheduleError> {
    name.trim()
        .parse::<Tz>()
        .map_err(|_| ScheduleError::UnknownTimeZone {
            name: name.to_owned(),
        })
}

fn all_digits(text: &str) -> bool {
    !text.is_empty() && text.bytes().all(|byte| byte.is_ascii_digit())
}

/// "H:MM" or "HH:MM".
fn parse_time(spec: &str, text: &str) -> Result<NaiveTime, ScheduleError> {
    let bad = || ScheduleError::BadTime {
        spec: spec.to_owned(),
        text: text.to_owned(),
    };
    let (hour, minute) = text.split_once(':').ok_or_else(bad)?;
    if !all_digits(hour) || hour.len() > 2 || !all_digits(minute) || minute.len() != 2 {
        return Err(bad());
    }
    let hour: u32 = hour.parse().map_err(|_| bad())?;
    let minute: u32 = minute.parse().map_err(|_| bad())?;
    // from_hms_opt rejects hour > 23 and minute > 59.
    NaiveTime::from_hms_opt(hour, minute, 0).ok_or_else(bad)
}

fn parse_weekday(spec: &str, text: &str) -> Result<Weekday, ScheduleError> {
    Ok(match text.to_ascii_lowercase().as_str() {
        "mon" | "monday" => Weekday::Mon,
        "tue" | "tuesday" => Weekday::Tue,
        "wed" | "wednesday" => Weekday::Wed,
        "thu" | "thursday" => Weekday::Thu,
        "fri" | "friday" => Weekday::Fri,
        "sat" | "saturday" => Weekday::Sat,
        "sun" | "sunday" => Weekday::Sun,
        _ => {
            return Err(ScheduleError::BadWeekday {
                spec: spec.to_owned(),
                text: text.to_owned(),
            });
        }
    })
}

fn parse_day_of_month(spec: &str, text: &str) -> Result<DayOfMonth, ScheduleError> {
    if text.eq_ignore_ascii_case("last") {
        return Ok(DayOfMonth::Last);
    }
    let day = if all_digits(text) && text.len() <= 2 {
        text.parse::<u32>().ok()
    } else {
        None
    };
    match day {
        Some(day @ 1..=31) => Ok(DayOfMonth::Day(day)),
        _ => Err(ScheduleError::BadDayOfMonth {
            spec: spec.to_owned(),
            text: text.to_owned(),
        }),
    }
}

fn parse_cron(spec: &str, fields: &[&str], timezone: Tz) -> Result<Rule, ScheduleError> {
    if fields.len() != 5 {
        return Err(ScheduleError::CronFieldCount {
            spec: spec.to_owned(),
            found: fields.len(),
        });
    }
    let pattern = fields.join(" ");
    let cron = CronParser::builder()
        .seconds(Seconds::Disallowed)
        .year(Year::Disallowed)
        .build()
        .parse(&pattern)
        .map_err(|error| ScheduleError::BadCron {
            pattern: pattern.clone(),
            reason: error.to_string(),
        })?;
    // croner accepts patterns such as "0 0 30 2 *" that can never match; one
    // search from a fixed point in the past turns them into a config error
    // rather than a job that silently never runs.
    if cron
        .find_next_occurrence(&DateTime::UNIX_EPOCH.with_timezone(&timezone), false)
        .is_err()
    {
        return Err(ScheduleError::CronNeverRuns { pattern });
    }
    Ok(Rule::Cron {
        pattern,
        cron: Box::new(cron),
    })
}

/// How a local time that falls in a DST gap is placed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Gap {
    /// Read with the offset in force before the gap (schedules).
    ShiftForward,
    /// The first instant after the gap (the start of a day).
    EndOfGap,
}

/// The UTC instant of a local wall-clock time in `tz`: the earlier one in
/// an overlap, and per `gap` in a gap.
fn local_to_utc(tz: Tz, local: NaiveDateTime, gap: Gap) -> DateTime<Utc> {
    match tz.from_local_datetime(&local) {
        LocalResult::Single(instant) => instant.with_timezone(&Utc),
        LocalResult::Ambiguous(earlier, _) => earlier.with_timezone(&Utc),
        LocalResult::None => {
            let Some(gap_end) = end_of_gap(tz, local) else {
                // Only reachable at the edge of chrono's calendar, where
                // nothing is scheduled; reading the time as UTC keeps this
                // function total.
                return local.and_utc();
            };
            match gap {
                Gap::EndOfGap => gap_end,
                Gap::ShiftForward => {
                    let just_before = gap_end - TimeDelta::seconds(1);
                    let offset_before = tz
                        .offset_from_utc_datetime(&just_before.naive_utc())
                        .fix()
                        .local_minus_utc();
                    (local - TimeDelta::seconds(i64::from(offset_before))).and_utc()
                }
            }
        }
    }
}

/// The first instant whose local time in `tz` is at or after `local`, for a
/// `local` inside a gap: the instant the clocks jumped.
fn end_of_gap(tz: Tz, local: NaiveDateTime) -> Option<DateTime<Utc>> {
    // No zone is 16 hours or more from UTC, so `local` read as UTC, moved 16
    // hours either way, brackets the jump; a window that small holds only
    // the one transition, which makes the search below a plain bisection.
    const WINDOW_SECONDS: i64 = 16 * 3600;
    let local_at = |seconds: i64| {
        DateTime::from_timestamp(seconds, 0).and_then(|instant| local_date_time(tz, instant))
    };
    let centre = local.and_utc().timestamp();
    let mut before = centre.checked_sub(WINDOW_SECONDS)?;
    let mut after = centre.checked_add(WINDOW_SECONDS)?;
    while after - before > 1 {
        let middle = before + (after - before) / 2;
        if local_at(middle)? >= local {
            after = middle;
        } else {
            before = middle;
        }
    }
    DateTime::from_timestamp(after, 0)
}

/// The local wall-clock time of `at` in `tz`; `None` only where it falls
/// outside chrono's calendar, which `DateTime::naive_local` would panic on.
fn local_date_time(tz: Tz, at: DateTime<Utc>) -> Option<NaiveDateTime> {
    let offset = tz.offset_from_utc_datetime(&at.naive_utc()).fix();
    at.naive_utc().checked_add_offset(offset)
}

/// The first instant of local day `date` in `tz` (when clocks skip
/// midnight, the instant they jump to).
pub fn start_of_day(tz: Tz, date: NaiveDate) -> DateTime<Utc> {
    local_to_utc(tz, date.and_time(NaiveTime::MIN), Gap::EndOfGap)
}

/// The local calendar days `first..end` (end excluded), "YYYY-MM-DD", each
/// with its [start, end) UTC bounds (23 or 25 hours long when the clocks
/// change).
pub fn local_days(
    tz: Tz,
    first: NaiveDate,
    end: NaiveDate,
) -> Vec<(String, DateTime<Utc>, DateTime<Utc>)> {
    let mut day = first;
    let mut start = start_of_day(tz, day);
    let mut days = Vec::new();
    while day < end {
        let Some(next) = day.succ_opt() else { break };
        let next_start = start_of_day(tz, next);
        days.push((day.format("%Y-%m-%d").to_string(), start, next_start));
        day = next;
        start = next_start;
    }
    days
}

fn days_in_month(year: i32, month: u32) -> u32 {
    let (next_year, next_month) = if month == 12 {
        (year + 1, 1)
    } else {
        (year, month + 1)
    };
    NaiveDate::from_ymd_opt(next_year, next_month, 1)
        .and_then(|first_of_next| first_of_next.pred_opt())
        .map_or(31, |last| last.day())
}

/// A calendar month, quarter or year, e.g. "2026-11", "2026-Q4" or "2026".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Period {
    pub kind: PeriodKind,
    pub label: String,
    year: i32,
    /// Month 1-12, quarter 1-4, or 1 for a year.
    index: u32,
}

/// Parses "2026-11" (monthly), "2026-Q4" (quarterly) or "2026" (annual); the
/// form must match `kind`.
pub fn parse_period(kind: PeriodKind, text: &str) -> Result<Period, ScheduleError> {
    let bad = || ScheduleError::BadPeriod {
        kind: kind.as_str(),
        text: text.to_owned(),
        expected: match kind {
            PeriodKind::Monthly => "YYYY-MM, e.g. \"2026-11\"",
            PeriodKind::Quarterly => "YYYY-QN with N 1-4, e.g. \"2026-Q4\"",
            PeriodKind::Annual => "YYYY, e.g. \"2026\"",
        },
    };
    let trimmed = text.trim();
    let (year_text, rest) = match trimmed.split_once('-') {
        Some((year, rest)) => (year, Some(rest)),
        None => (trimmed, None),
    };
    if year_text.len() != 4 || !all_digits(year_text) {
        return Err(bad());
    }
    let year: i32 = year_text.parse().map_err(|_| bad())?;
    let index = match (kind, rest) {
        (PeriodKind::Annual, None) => Some(1),
        (PeriodKind::Monthly, Some(month)) if month.len() == 2 && all_digits(month) => {
            month.parse().ok().filter(|month| (1..=12).contains(month))
        }
        (PeriodKind::Quarterly, Some(quarter)) => quarter
            .strip_prefix(['Q', 'q'])
            .filter(|number| number.len() == 1 && all_digits(number))
            .and_then(|number| number.parse().ok())
            .filter(|quarter| (1..=4).contains(quarter)),
        _ => None,
    };
    index
        .map(|index| Period::new(kind, year, index))
        .ok_or_else(bad)
}

fn periods_per_year(kind: PeriodKind) -> u32 {
    match kind {
        PeriodKind::Monthly => 12,
        PeriodKind::Quarterly => 4,
        PeriodKind::Annual => 1,
    }
}

impl Period {
    fn new(kind: PeriodKind, year: i32, index: u32) -> Period {
        let label = match kind {
            PeriodKind::Monthly => format!("{year:04}-{index:02}"),
            PeriodKind::Quarterly => format!("{year:04}-Q{index}"),
            PeriodKind::Annual => format!("{year:04}"),
        };
        Period {
            kind,
            label,
            year,
            index,
        }
    }

    pub fn year(&self) -> i32 {
        self.year
    }

    /// Month 1-12, quarter 1-4, or 1 for a year.
    pub fn index(&self) -> u32 {
        self.index
    }

    /// [start, end) as the UTC instants that start the period's first local
    /// day and the next period's first local day.
    pub fn bounds(&self, tz: Tz) -> (DateTime<Utc>, DateTime<Utc>) {
        (
            start_of_day(tz, self.first_day()),
            start_of_day(tz, self.next().first_day()),
        )
    }

    pub fn next(&self) -> Period {
        if self.index >= periods_per_year(self.kind) {
            Period::new(self.kind, self.year + 1, 1)
        } else {
            Period::new(self.kind, self.year, self.index + 1)
        }
    }

    pub fn previous(&self) -> Period {
        if self.index <= 1 {
            Period::new(self.kind, self.year - 1, periods_per_year(self.kind))
        } else {
            Period::new(self.kind, self.year, self.index - 1)
        }
    }

    /// The period containing instant `at` in `tz`; the last complete month
    /// is `containing(PeriodKind::Monthly, now, tz).previous()`.
    pub fn containing(kind: PeriodKind, at: DateTime<Utc>, tz: Tz) -> Period {
        // Beyond chrono's calendar the UTC date stands in for the local one.
        let date = local_date_time(tz, at).unwrap_or(at.naive_utc()).date();
        let index = match kind {
            PeriodKind::Monthly => date.month(),
            PeriodKind::Quarterly => (date.month() - 1) / 3 + 1,
            PeriodKind::Annual => 1,
        };
        Period::new(kind, date.year(), index)
    }

    /// The period's local calendar days, "YYYY-MM-DD", each with its
    /// [start, end) UTC bounds (23 or 25 hours long when the clocks change).
    pub fn days(&self, tz: Tz) -> Vec<(String, DateTime<Utc>, DateTime<Utc>)> {
        local_days(tz, self.first_day(), self.next().first_day())
    }

    fn first_day(&self) -> NaiveDate {
        let month = match self.kind {
            PeriodKind::Monthly => self.index,
            PeriodKind::Quarterly => (self.index - 1) * 3 + 1,
            PeriodKind::Annual => 1,
        };
        // Only a year beyond chrono's calendar (±262,143) fails; saturating
        // there keeps bounds ordered without a panic.
        NaiveDate::from_ymd_opt(self.year, month, 1).unwrap_or(if self.year > 0 {
            NaiveDate::MAX
        } else {
            NaiveDate::MIN
        })
    }
}

impl fmt::Display for Period {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.label)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .expect("test instant is RFC 3339")
            .with_timezone(&Utc)
    }

    fn schedule(spec: &str, tz: &str) -> Schedule {
        Schedule::parse(spec, tz).expect("test schedule parses")
    }

    fn runs(spec: &str, tz: &str, from: &str, to: &str) -> Vec<DateTime<Utc>> {
        schedule(spec, tz).runs_between(utc(from), utc(to), 100)
    }

    fn instants(texts: &[&str]) -> Vec<DateTime<Utc>> {
        texts.iter().map(|text| utc(text)).collect()
    }

    fn error(spec: &str, tz: &str) -> String {
        Schedule::parse(spec, tz)
            .expect_err("test schedule must be rejected")
            .to_string()
    }

    #[test]
    fn monthly_31_clamps_to_short_months_in_leap_and_common_years() {
        assert_eq!(
            runs(
                "monthly 31 08:00",
                "Asia/Shanghai",
                "2027-01-01T00:00:00Z",
                "2027-05-01T00:00:00Z"
            ),
            instants(&[
                "2027-01-31T00:00:00Z",
                "2027-02-28T00:00:00Z",
                "2027-03-31T00:00:00Z",
                "2027-04-30T00:00:00Z",
            ])
        );
        assert_eq!(
            runs(
                "monthly 31 08:00",
                "Asia/Shanghai",
                "2028-02-01T00:00:00Z",
                "2028-03-01T00:00:00Z"
            ),
            instants(&["2028-02-29T00:00:00Z"])
        );
    }

    #[test]
    fn monthly_29_is_leap_day_or_feb_28() {
        assert_eq!(
            runs(
                "monthly 29 12:00",
                "UTC",
                "2027-02-01T00:00:00Z",
                "2027-03-31T00:00:00Z"
            ),
            instants(&["2027-02-28T12:00:00Z", "2027-03-29T12:00:00Z"])
        );
        assert_eq!(
            runs(
                "monthly 29 12:00",
                "UTC",
                "2028-02-01T00:00:00Z",
                "2028-03-01T00:00:00Z"
            ),
            instants(&["2028-02-29T12:00:00Z"])
        );
    }

    #[test]
    fn monthly_last_is_each_months_last_day() {
        assert_eq!(
            runs(
                "MONTHLY LAST 23:00",
                "UTC",
                "2027-12-31T23:00:00Z",
                "2028-04-30T23:00:00Z"
            ),
            instants(&[
                "2028-01-31T23:00:00Z",
                "2028-02-29T23:00:00Z",
                "2028-03-31T23:00:00Z",
                "2028-04-30T23:00:00Z",
            ])
        );
    }

    #[test]
    fn quarterly_runs_in_first_month_of_each_quarter_across_year_end() {
        assert_eq!(
            runs(
                "quarterly 1 06:00",
                "Asia/Shanghai",
                "2026-08-01T00:00:00Z",
                "2027-04-02T00:00:00Z"
            ),
            instants(&[
                "2026-09-30T22:00:00Z",
                "2026-12-31T22:00:00Z",
                "2027-03-31T22:00:00Z",
            ])
        );
        assert_eq!(
            runs(
                "quarterly 31 00:00",
                "UTC",
                "2026-10-31T00:00:00Z",
                "2027-11-01T00:00:00Z"
            ),
            instants(&[
                "2027-01-31T00:00:00Z",
                "2027-04-30T00:00:00Z",
                "2027-07-31T00:00:00Z",
                "2027-10-31T00:00:00Z",
            ])
        );
    }

    #[test]
    fn weekly_runs_on_the_given_weekday() {
        // 2026-06-03 is a Wednesday.
        assert_eq!(
            runs(
                "weekly Wednesday 9:05",
                "Europe/Berlin",
                "2026-06-01T00:00:00Z",
                "2026-06-20T00:00:00Z"
            ),
            instants(&[
                "2026-06-03T07:05:00Z",
                "2026-06-10T07:05:00Z",
                "2026-06-17T07:05:00Z",
            ])
        );
        let weekly = schedule("weekly sun 00:00", "UTC");
        let next = weekly.next_after(utc("2026-06-03T12:00:00Z"));
        assert_eq!(next, utc("2026-06-07T00:00:00Z"));
        assert_eq!(next.weekday(), Weekday::Sun);
    }

    #[test]
    fn daily_in_new_york_across_spring_forward_shifts_by_the_gap() {
        // 2026-03-08 02:00 EST -> 03:00 EDT: 02:30 does not exist and runs
        // at 03:30 EDT, 24 hours after the previous run.
        assert_eq!(
            runs(
                "daily 02:30",
                "America/New_York",
                "2026-03-06T12:00:00Z",
                "2026-03-10T12:00:00Z"
            ),
            instants(&[
                "2026-03-07T07:30:00Z",
                "2026-03-08T07:30:00Z",
                "2026-03-09T06:30:00Z",
                "2026-03-10T06:30:00Z",
            ])
        );
        let gap_run = utc("2026-03-08T07:30:00Z")
            .with_timezone(&chrono_tz::America::New_York)
            .naive_local();
        assert_eq!(gap_run.to_string(), "2026-03-08 03:30:00");
    }

    #[test]
    fn daily_in_new_york_across_fall_back_runs_once_at_first_occurrence() {
        // 2026-11-01 02:00 EDT -> 01:00 EST: 01:30 happens twice.
        let daily = schedule("daily 01:30", "America/New_York");
        assert_eq!(
            daily.runs_between(utc("2026-10-30T12:00:00Z"), utc("2026-11-03T12:00:00Z"), 10),
            instants(&[
                "2026-10-31T05:30:00Z",
                "2026-11-01T05:30:00Z",
                "2026-11-02T06:30:00Z",
                "2026-11-03T06:30:00Z",
            ])
        );
        // Not again at the second 01:30 (06:30Z).
        assert_eq!(
            daily.next_after(utc("2026-11-01T05:30:00Z")),
            utc("2026-11-02T06:30:00Z")
        );
    }

    #[test]
    fn daily_in_berlin_across_both_changes() {
        // 2026-03-29 02:00 CET -> 03:00 CEST; 2026-10-25 03:00 CEST -> 02:00 CET.
        assert_eq!(
            runs(
                "daily 02:30",
                "Europe/Berlin",
                "2026-03-27T12:00:00Z",
                "2026-03-31T12:00:00Z"
            ),
            instants(&[
                "2026-03-28T01:30:00Z",
                "2026-03-29T01:30:00Z",
                "2026-03-30T00:30:00Z",
                "2026-03-31T00:30:00Z",
            ])
        );
        assert_eq!(
            runs(
                "daily 02:30",
                "Europe/Berlin",
                "2026-10-23T12:00:00Z",
                "2026-10-27T12:00:00Z"
            ),
            instants(&[
                "2026-10-24T00:30:00Z",
                "2026-10-25T00:30:00Z",
                "2026-10-26T01:30:00Z",
                "2026-10-27T01:30:00Z",
            ])
        );
    }

    #[test]
    fn daily_in_shanghai_is_eight_hours_ahead() {
        assert_eq!(
            runs(
                "daily 08:00",
                "Asia/Shanghai",
                "2025-12-31T23:00:00Z",
                "2026-01-02T00:00:00Z"
            ),
            instants(&["2026-01-01T00:00:00Z", "2026-01-02T00:00:00Z"])
        );
        assert_eq!(
            schedule("daily 07:59", "Asia/Shanghai").next_after(utc("2026-01-01T00:00:00Z")),
            utc("2026-01-01T23:59:00Z")
        );
    }

    #[test]
    fn daily_in_lord_howe_half_hour_dst() {
        // 2026-10-04 02:00 +10:30 -> 02:30 +11: 02:15 shifts to 02:45 +11.
        assert_eq!(
            runs(
                "daily 02:15",
                "Australia/Lord_Howe",
                "2026-10-02T00:00:00Z",
                "2026-10-05T00:00:00Z"
            ),
            instants(&[
                "2026-10-02T15:45:00Z",
                "2026-10-03T15:45:00Z",
                "2026-10-04T15:15:00Z",
            ])
        );
        // 2026-04-05 02:00 +11 -> 01:30 +10:30: 01:45 runs at the +11 one.
        assert_eq!(
            runs(
                "daily 01:45",
                "Australia/Lord_Howe",
                "2026-04-03T00:00:00Z",
                "2026-04-06T00:00:00Z"
            ),
            instants(&[
                "2026-04-03T14:45:00Z",
                "2026-04-04T14:45:00Z",
                "2026-04-05T15:15:00Z",
            ])
        );
    }

    #[test]
    fn daily_when_a_whole_day_is_skipped_runs_once_per_instant() {
        // Pacific/Apia jumped from 2011-12-29 23:59:59 -10 to 2011-12-31
        // 00:00 +14; the 30th's run shifts onto the 31st's instant and the
        // two merge rather than running twice.
        assert_eq!(
            runs(
                "daily 08:00",
                "Pacific/Apia",
                "2011-12-28T00:00:00Z",
                "2012-01-01T00:00:00Z"
            ),
            instants(&[
                "2011-12-28T18:00:00Z",
                "2011-12-29T18:00:00Z",
                "2011-12-30T18:00:00Z",
                "2011-12-31T18:00:00Z",
            ])
        );
    }

    #[test]
    fn cron_weekdays_across_dst_in_berlin() {
        // Fri 2026-03-27 (CET), Mon-Tue 2026-03-30/31 (CEST); weekend skipped.
        assert_eq!(
            runs(
                "cron 0 8 * * 1-5",
                "Europe/Berlin",
                "2026-03-27T00:00:00Z",
                "2026-03-31T12:00:00Z"
            ),
            instants(&[
                "2026-03-27T07:00:00Z",
                "2026-03-30T06:00:00Z",
                "2026-03-31T06:00:00Z",
            ])
        );
    }

    #[test]
    fn cron_fixed_time_in_gap_runs_at_end_of_gap_unlike_daily() {
        assert_eq!(
            runs(
                "cron 30 2 * * *",
                "America/New_York",
                "2026-03-07T00:00:00Z",
                "2026-03-09T12:00:00Z"
            ),
            instants(&[
                "2026-03-07T07:30:00Z",
                "2026-03-08T07:00:00Z",
                "2026-03-09T06:30:00Z",
            ])
        );
    }

    #[test]
    fn cron_fixed_time_in_overlap_runs_once() {
        assert_eq!(
            runs(
                "cron 30 1 * * *",
                "America/New_York",
                "2026-10-31T12:00:00Z",
                "2026-11-02T12:00:00Z"
            ),
            instants(&["2026-11-01T05:30:00Z", "2026-11-02T06:30:00Z"])
        );
    }

    #[test]
    fn cron_interval_keeps_elapsed_spacing_through_overlap_and_skips_gap() {
        assert_eq!(
            runs(
                "cron */30 * * * *",
                "America/New_York",
                "2026-11-01T04:45:00Z",
                "2026-11-01T07:00:00Z"
            ),
            instants(&[
                "2026-11-01T05:00:00Z",
                "2026-11-01T05:30:00Z",
                "2026-11-01T06:00:00Z",
                "2026-11-01T06:30:00Z",
                "2026-11-01T07:00:00Z",
            ])
        );
        // 01:30, 02:30 (does not exist), 03:30 local on the spring-forward day.
        assert_eq!(
            runs(
                "cron 30 1-3 * * *",
                "America/New_York",
                "2026-03-08T05:00:00Z",
                "2026-03-08T12:00:00Z"
            ),
            instants(&["2026-03-08T06:30:00Z", "2026-03-08T07:30:00Z"])
        );
    }

    #[test]
    fn next_after_is_strictly_after() {
        let daily = schedule("daily 08:00", "UTC");
        assert_eq!(
            daily.next_after(utc("2026-05-01T08:00:00Z")),
            utc("2026-05-02T08:00:00Z")
        );
        assert_eq!(
            daily.next_after(utc("2026-05-01T07:59:59.999Z")),
            utc("2026-05-01T08:00:00Z")
        );
        let cron = schedule("cron 0 8 * * *", "UTC");
        assert_eq!(
            cron.next_after(utc("2026-05-01T08:00:00Z")),
            utc("2026-05-02T08:00:00Z")
        );
        assert_eq!(
            cron.next_after(utc("2026-05-01T07:59:59.500Z")),
            utc("2026-05-01T08:00:00Z")
        );
        assert_eq!(
            cron.next_after(utc("2026-05-01T08:00:00.500Z")),
            utc("2026-05-02T08:00:00Z")
        );
    }

    #[test]
    fn runs_between_is_half_open_and_limited() {
        let daily = schedule("daily 08:00", "UTC");
        assert_eq!(
            daily.runs_between(utc("2026-05-01T08:00:00Z"), utc("2026-05-03T08:00:00Z"), 10),
            instants(&["2026-05-02T08:00:00Z", "2026-05-03T08:00:00Z"])
        );
        assert_eq!(
            daily.runs_between(utc("2026-05-01T00:00:00Z"), utc("2026-06-01T00:00:00Z"), 3),
            instants(&[
                "2026-05-01T08:00:00Z",
                "2026-05-02T08:00:00Z",
                "2026-05-03T08:00:00Z",
            ])
        );
        assert!(
            daily
                .runs_between(utc("2026-05-01T00:00:00Z"), utc("2026-06-01T00:00:00Z"), 0)
                .is_empty()
        );
    }

    #[test]
    fn end_of_calendar_returns_never_without_panicking() {
        let extremes = [
            NEVER,
            NEVER - TimeDelta::days(1),
            DateTime::<Utc>::MIN_UTC,
            DateTime::<Utc>::MIN_UTC + TimeDelta::days(1),
        ];
        for tz in ["Asia/Shanghai", "America/New_York", "UTC"] {
            for spec in ["daily 08:00", "monthly last 23:59", "cron 0 8 * * *"] {
                let schedule = schedule(spec, tz);
                assert_eq!(schedule.next_after(NEVER), NEVER, "{spec} {tz}");
                for at in extremes {
                    let next = schedule.next_after(at);
                    assert!(next > at || next == NEVER, "{spec} {tz} {at}: {next}");
                }
            }
            let tz: Tz = tz.parse().expect("test zone");
            for at in extremes {
                for kind in [
                    PeriodKind::Monthly,
                    PeriodKind::Quarterly,
                    PeriodKind::Annual,
                ] {
                    let period = Period::containing(kind, at, tz);
                    let (start, end) = period.bounds(tz);
                    assert!(start <= end, "{period} {tz}");
                }
            }
        }
        // croner stops searching in the year 5000.
        assert_eq!(
            schedule("cron 0 8 * * *", "UTC").next_after(utc("5001-06-01T00:00:00Z")),
            NEVER
        );
    }

    #[test]
    fn display_is_canonical() {
        let cases = [
            (
                "monthly 31 8:00",
                "Asia/Shanghai",
                "monthly 31 08:00 (Asia/Shanghai)",
            ),
            ("  Weekly  MONDAY 07:30 ", "UTC", "weekly mon 07:30 (UTC)"),
            (
                "daily 23:59",
                "Europe/Berlin",
                "daily 23:59 (Europe/Berlin)",
            ),
            ("quarterly LAST 00:00", "UTC", "quarterly last 00:00 (UTC)"),
            (
                "CRON 0  8 * *  1-5",
                "America/New_York",
                "cron 0 8 * * 1-5 (America/New_York)",
            ),
        ];
        for (spec, tz, canonical) in cases {
            assert_eq!(schedule(spec, tz).to_string(), canonical);
        }
        assert_eq!(
            schedule("daily 08:00", "Asia/Shanghai").timezone(),
            chrono_tz::Asia::Shanghai
        );
    }

    #[test]
    fn parse_errors_name_the_bad_part() {
        let cases = [
            ("daily 24:00", "UTC", "\"24:00\""),
            ("daily 08:60", "UTC", "\"08:60\""),
            ("daily 8", "UTC", "\"8\""),
            ("daily 08:0", "UTC", "\"08:0\""),
            ("daily 08:00", "Mars/Olympus", "\"Mars/Olympus\""),
            ("daily 08:00 now", "UTC", "\"now\""),
            ("daily", "UTC", "missing the time"),
            ("weekly 08:00", "UTC", "\"08:00\""),
            ("weekly mon", "UTC", "missing the time"),
            ("weekly funday 08:00", "UTC", "\"funday\""),
            ("monthly 32 08:00", "UTC", "\"32\""),
            ("monthly 0 08:00", "UTC", "\"0\""),
            ("quarterly first 08:00", "UTC", "\"first\""),
            ("monthly 1 08:00 08:00", "UTC", "unexpected \"08:00\""),
            ("hourly 5", "UTC", "\"hourly\""),
            ("cron 0 8 * *", "UTC", "has 4 fields"),
            ("cron 0 0 8 * * *", "UTC", "has 6 fields"),
            ("cron 61 8 * * *", "UTC", "\"61 8 * * *\""),
            ("cron 0 0 30 2 *", "UTC", "never matches"),
        ];
        for (spec, tz, named) in cases {
            let message = error(spec, tz);
            assert!(message.contains(named), "{spec:?}: {message}");
        }
        assert!(error("", "UTC").contains("\"daily HH:MM\""));
        assert!(error("hourly 5", "UTC").contains("\"cron MIN HOUR DOM MON DOW\""));
        assert!(error("daily 24:00", "UTC").contains("HH 00-23"));
        assert!(error("weekly mon", "UTC").contains("\"weekly DAY HH:MM\""));
    }

    fn period(kind: PeriodKind, text: &str) -> Period {
        parse_period(kind, text).expect("test period parses")
    }

    #[test]
    fn period_parsing_checks_the_form_against_the_kind() {
        assert_eq!(period(PeriodKind::Monthly, "2026-11").label, "2026-11");
        assert_eq!(period(PeriodKind::Quarterly, "2026-q4").label, "2026-Q4");
        assert_eq!(period(PeriodKind::Annual, "2026").label, "2026");
        let cases = [
            (
                PeriodKind::Monthly,
                "2026-Q4",
                "bad monthly period \"2026-Q4\"; expected YYYY-MM",
            ),
            (PeriodKind::Monthly, "2026-13", "\"2026-13\""),
            (PeriodKind::Monthly, "2026-1", "\"2026-1\""),
            (PeriodKind::Monthly, "2026", "\"2026\""),
            (PeriodKind::Quarterly, "2026-Q5", "\"2026-Q5\""),
            (PeriodKind::Quarterly, "2026-11", "expected YYYY-QN"),
            (PeriodKind::Annual, "26", "\"26\""),
            (
                PeriodKind::Annual,
                "2026-11",
                "bad annual period \"2026-11\"",
            ),
        ];
        for (kind, text, named) in cases {
            let message = parse_period(kind, text)
                .expect_err("test period must be rejected")
                .to_string();
            assert!(message.contains(named), "{text:?}: {message}");
        }
    }

    #[test]
    fn quarter_bounds_in_shanghai() {
        let q4 = period(PeriodKind::Quarterly, "2026-Q4");
        assert_eq!(
            q4.bounds(chrono_tz::Asia::Shanghai),
            (utc("2026-09-30T16:00:00Z"), utc("2026-12-31T16:00:00Z"))
        );
        assert_eq!(q4.days(chrono_tz::Asia::Shanghai).len(), 92);
    }

    #[test]
    fn next_and_previous_cross_year_ends() {
        assert_eq!(
            period(PeriodKind::Quarterly, "2026-Q4").next().label,
            "2027-Q1"
        );
        assert_eq!(
            period(PeriodKind::Quarterly, "2027-Q1").previous().label,
            "2026-Q4"
        );
        assert_eq!(
            period(PeriodKind::Monthly, "2026-01").previous().label,
            "2025-12"
        );
        assert_eq!(
            period(PeriodKind::Monthly, "2026-12").next().label,
            "2027-01"
        );
        assert_eq!(period(PeriodKind::Annual, "2026").next().label, "2027");
        assert_eq!(period(PeriodKind::Annual, "2026").previous().label, "2025");
    }

    #[test]
    fn containing_uses_the_local_date() {
        let at = utc("2026-09-30T16:30:00Z");
        assert_eq!(
            Period::containing(PeriodKind::Quarterly, at, chrono_tz::Asia::Shanghai).label,
            "2026-Q4"
        );
        assert_eq!(
            Period::containing(PeriodKind::Quarterly, at, chrono_tz::UTC).label,
            "2026-Q3"
        );
        assert_eq!(
            Period::containing(PeriodKind::Monthly, at, chrono_tz::Asia::Shanghai)
                .previous()
                .label,
            "2026-09"
        );
        assert_eq!(
            Period::containing(PeriodKind::Annual, at, chrono_tz::UTC).label,
            "2026"
        );
    }

    #[test]
    fn annual_days_count_leap_years() {
        let leap = period(PeriodKind::Annual, "2024").days(chrono_tz::UTC);
        assert_eq!(leap.len(), 366);
        assert_eq!(
            leap[59],
            (
                "2024-02-29".to_owned(),
                utc("2024-02-29T00:00:00Z"),
                utc("2024-03-01T00:00:00Z")
            )
        );
        assert_eq!(
            period(PeriodKind::Annual, "2025")
                .days(chrono_tz::UTC)
                .len(),
            365
        );
        assert_eq!(
            period(PeriodKind::Annual, "2024").bounds(chrono_tz::Europe::Berlin),
            (utc("2023-12-31T23:00:00Z"), utc("2024-12-31T23:00:00Z"))
        );
    }

    #[test]
    fn days_around_dst_are_23_or_25_hours() {
        let berlin = chrono_tz::Europe::Berlin;
        let march = period(PeriodKind::Monthly, "2026-03").days(berlin);
        assert_eq!(march.len(), 31);
        assert_eq!(
            march[28],
            (
                "2026-03-29".to_owned(),
                utc("2026-03-28T23:00:00Z"),
                utc("2026-03-29T22:00:00Z")
            )
        );
        let october = period(PeriodKind::Monthly, "2026-10").days(berlin);
        assert_eq!(
            october[24],
            (
                "2026-10-25".to_owned(),
                utc("2026-10-24T22:00:00Z"),
                utc("2026-10-25T23:00:00Z")
            )
        );
        let long_days: Vec<_> = october
            .iter()
            .filter(|(_, start, end)| *end - *start != TimeDelta::hours(24))
            .map(|(date, _, _)| date.as_str())
            .collect();
        assert_eq!(long_days, ["2026-10-25"]);
        // Days tile the month exactly.
        assert_eq!(
            period(PeriodKind::Monthly, "2026-10").bounds(berlin),
            (october[0].1, october[30].2)
        );
        let new_york = period(PeriodKind::Monthly, "2026-11").days(chrono_tz::America::New_York);
        assert_eq!(
            new_york[0],
            (
                "2026-11-01".to_owned(),
                utc("2026-11-01T04:00:00Z"),
                utc("2026-11-02T05:00:00Z")
            )
        );
    }

    #[test]
    fn day_whose_midnight_is_skipped_starts_at_the_jump() {
        // America/Havana springs forward at 00:00 -> 01:00 (2026-03-08).
        let havana = period(PeriodKind::Monthly, "2026-03").days(chrono_tz::America::Havana);
        assert_eq!(
            havana[7],
            (
                "2026-03-08".to_owned(),
                utc("2026-03-08T05:00:00Z"),
                utc("2026-03-09T04:00:00Z")
            )
        );
    }
}
