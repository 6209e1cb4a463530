//! Pure schedule maths: parse a cron expression, find the next occurrence, compute a
//! schedule's next run after a tick. No I/O and no clock: every function takes the time it
//! works from, so it can be tested without Redis and without waiting.
//!
//! # Cron expressions
//!
//! Five fields, `minute hour day-of-month month day-of-week`, parsed by [`croner`] with
//! seconds and years disallowed: the same parser and settings `#[cron]` uses to check its
//! expression at compile time (`jobs-macros/src/schedule.rs`), so an expression the macro
//! accepts is one the runtime accepts. Each field takes `*`, `N`, `N-M`, `*/N`, `N-M/S` and
//! comma lists of those; months and weekdays also take names (`JAN`, `MON`); day-of-week 0
//! and 7 are both Sunday. croner's extensions (`L`, `W`, `#`, `?`, `@daily`…) are accepted
//! too.
//!
//! **Day of month and day of week** follow Vixie cron (the cron of most Linux systems):
//! when both fields are restricted, a day matches if *either* matches (`0 0 13 * 5` runs on
//! every 13th and on every Friday). When either field starts with `*` (`*`, `*/2`), a day
//! must match both (`0 0 */2 * 1` runs on odd-numbered days that are Mondays). croner on
//! its own treats only a bare `*` as unrestricted, so the parser is told to AND the fields
//! for a `*/N` field; this is Vixie's `DOM_STAR`/`DOW_STAR` rule exactly.
//!
//! # Time zones
//!
//! Expressions are evaluated in UTC unless a schedule names an IANA zone
//! (`Europe/Berlin`), in which case the fields are wall-clock times in that zone, and
//! daylight-saving changes are handled as croner handles them:
//!
//! * **Skipped hour** (spring forward, e.g. 02:00–03:00 in Berlin on the last Sunday of
//!   March): a *fixed-time* job (single minute and hour, such as `30 2 * * *`) runs once, at
//!   the first real instant after the gap (03:00 local). Wildcard or stepped jobs
//!   (`*/15 * * * *`) simply have no occurrences in the missing hour.
//! * **Repeated hour** (fall back, 02:00–03:00 twice in Berlin in October): a fixed-time job
//!   runs once, at the first (summer-time) instant; wildcard or stepped jobs run in both
//!   passes, since each is a distinct instant.
//!
//! Every occurrence is a distinct UTC instant, which is what makes a tick's job id
//! (`cron:<name>:<tick ms>`, plus the definition's generation once it has one) unique.

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};

use crate::error::{Error, Result};
use crate::schedule::{MisfirePolicy, ScheduleType};

/// The longest interval a schedule may have: ten years (a bound that keeps the
/// millisecond arithmetic far from overflow).
pub const MAX_INTERVAL_SECS: u64 = 10 * 365 * 86_400;

/// A parsed 5-field cron expression with its optional time zone.
///
/// ```
/// use chrono::{TimeZone, Utc};
/// use jobs_core::CronExpr;
///
/// let every_weekday_morning = CronExpr::parse("30 9 * * 1-5", Some("Europe/Berlin"))?;
/// // Friday 2024-03-08 10:00 UTC is 11:00 in Berlin: the next run is Monday 09:30 local.
/// let after = Utc.with_ymd_and_hms(2024, 3, 8, 10, 0, 0).unwrap();
/// let next = every_weekday_morning.next_after(after);
/// assert_eq!(next, Some(Utc.with_ymd_and_hms(2024, 3, 11, 8, 30, 0).unwrap()));
/// # Ok::<(), jobs_core::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct CronExpr {
    expression: String,
    timezone: Option<Tz>,
    cron: Cron,
}

impl PartialEq for CronExpr {
    fn eq(&self, other: &Self) -> bool {
        self.expression == other.expression && self.timezone == other.timezone
    }
}

impl CronExpr {
    /// Parses `expression` (5 fields) to be evaluated in `timezone` (an IANA name such as
    /// `America/New_York`; `None` is UTC).
    ///
    /// Errors: [`Error::InvalidSchedule`] for an expression croner rejects, an expression
    /// that never matches a real date (`0 0 31 4 *`), or an unknown zone.
    pub fn parse(expression: &str, timezone: Option<&str>) -> Result<Self> {
        let invalid = |reason: String| Error::InvalidSchedule { reason };
        let timezone = match timezone {
            None => None,
            Some(name) => Some(name.parse::<Tz>().map_err(|_| {
                invalid(format!(
                    "unknown time zone `{name}`; expected an IANA name such as `Europe/Berlin`"
                ))
            })?),
        };
        let cron = parser_for(expression)
            .parse(expression)
            .map_err(|e| invalid(format!("invalid cron expression `{expression}`: {e}")))?;
        let parsed = CronExpr { expression: expression.trim().to_owned(), timezone, cron };
        // An expression such as `0 0 31 4 *` parses but names no real date; refuse it here
        // rather than register a schedule that never fires. The calendar repeats every 400
        // years, but croner's search is bounded; any expression with a real date matches
        // within a few years of any start.
        let probe = DateTime::from_timestamp(946_684_800, 0).unwrap_or_default(); // 2000-01-01
        if parsed.next_after(probe).is_none() {
            return Err(invalid(format!("cron expression `{expression}` never matches a date")));
        }
        Ok(parsed)
    }

    /// The expression as given (trimmed).
    pub fn expression(&self) -> &str {
        &self.expression
    }

    /// The IANA zone it is evaluated in (`None`: UTC).
    pub fn timezone(&self) -> Option<&str> {
        self.timezone.as_ref().map(|tz| tz.name())
    }

    /// The first occurrence strictly after `t`, or `None` if there is none croner can find
    /// (only for expressions that name no real date).
    pub fn next_after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        // croner searches from the next whole second after `t` (sub-second parts dropped),
        // and occurrences fall on whole minutes, so every result is strictly after `t`.
        match &self.timezone {
            None => self.cron.find_next_occurrence(&t, false).ok(),
            Some(tz) => self
                .cron
                .find_next_occurrence(&t.with_timezone(tz), false)
                .ok()
                .map(|d| d.with_timezone(&Utc)),
        }
    }
}

/// The parser for one expression: croner with seconds and years disallowed (as the macros
/// use it), told to AND day-of-month and day-of-week when Vixie cron would (see the module
/// docs).
fn parser_for(expression: &str) -> CronParser {
    let fields: Vec<&str> = expression.split_whitespace().collect();
    let starred = |f: &str| f.starts_with('*') && f != "*";
    // A bare `*` is already unrestricted for croner; a `*/N` field is restricted for croner
    // but "starred" for Vixie, which then requires both fields to match.
    let and = fields.len() == 5 && (starred(fields[2]) || starred(fields[4]));
    CronParser::builder()
        .seconds(Seconds::Disallowed)
        .year(Year::Disallowed)
        .dom_and_dow(and)
        .build()
}

/// When a schedule fires, parsed once from its [`ScheduleType`], in Unix milliseconds.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Trigger {
    /// Every `every_ms`, counted from the first run.
    Interval { every_ms: i64 },
    /// On a cron expression (boxed: a parsed expression is a few hundred bytes).
    Cron(Box<CronExpr>),
    /// Once, at `at_ms`.
    Once { at_ms: i64 },
}

impl Trigger {
    /// Parses and checks a schedule type. Errors: [`Error::InvalidSchedule`].
    pub(crate) fn new(t: &ScheduleType) -> Result<Self> {
        match t {
            ScheduleType::Interval { seconds } => {
                if *seconds == 0 || *seconds > MAX_INTERVAL_SECS {
                    return Err(Error::InvalidSchedule {
                        reason: format!(
                            "interval must be between 1 and {MAX_INTERVAL_SECS} seconds, \
                             found {seconds}"
                        ),
                    });
                }
                // In range by the check above: at most 3.2e14 ms.
                Ok(Trigger::Interval {
                    every_ms: i64::try_from(seconds * 1000).unwrap_or(i64::MAX),
                })
            }
            ScheduleType::Cron { expression, timezone } => {
                Ok(Trigger::Cron(Box::new(CronExpr::parse(expression, timezone.as_deref())?)))
            }
            ScheduleType::Once { at } => Ok(Trigger::Once { at_ms: at.timestamp_millis() }),
        }
    }

    /// The first run of a schedule registered (or enabled) at `now_ms`: one interval from
    /// now, the next cron occurrence after now, or the instant of a one-time schedule (even
    /// a past one, which is then due at once).
    pub(crate) fn first(&self, now_ms: i64) -> Option<i64> {
        match self {
            Trigger::Interval { every_ms } => Some(now_ms.saturating_add(*every_ms)),
            Trigger::Cron(c) => next_cron(c, now_ms),
            Trigger::Once { at_ms } => Some(*at_ms),
        }
    }

    /// The run after the tick `expected`, fired at `now_ms` (`None`: the schedule is done).
    ///
    /// [`MisfirePolicy::CatchUp`] gives the very next occurrence, so every missed tick is
    /// fired in turn. [`MisfirePolicy::Coalesce`] gives the first occurrence after `now_ms`,
    /// so ticks missed while every scheduler was down are fired once, together; when the
    /// tick is on time both give the same answer. Always later than `expected`.
    pub(crate) fn after(&self, expected: i64, now_ms: i64, policy: MisfirePolicy) -> Option<i64> {
        let from = match policy {
            MisfirePolicy::CatchUp => expected,
            MisfirePolicy::Coalesce => expected.max(now_ms),
        };
        match self {
            Trigger::Interval { every_ms } => {
                // Fixed rate, anchored on the first run: the smallest expected + k·every
                // (k ≥ 1) that is later than `from`.
                let every = (*every_ms).max(1);
                let k = (from - expected) / every + 1;
                Some(expected.saturating_add(k.saturating_mul(every)))
            }
            Trigger::Cron(c) => next_cron(c, from),
            Trigger::Once { .. } => None,
        }
    }
}

fn next_cron(c: &CronExpr, after_ms: i64) -> Option<i64> {
    let t = DateTime::from_timestamp_millis(after_ms)?;
    c.next_after(t).map(|d| d.timestamp_millis())
}

#[cfg(test)]
mod tests {
    use chrono::{NaiveDate, TimeZone};

    use super::*;

    type TestResult = std::result::Result<(), Box<dyn std::error::Error>>;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).map(|d| d.with_timezone(&Utc)).unwrap_or_default()
    }

    /// Each row: expression, zone, start, the next occurrences after start (RFC 3339, UTC).
    const TABLE: &[(&str, Option<&str>, &str, &[&str])] = &[
        // Basics.
        (
            "* * * * *",
            None,
            "2024-01-01T00:00:00Z",
            &["2024-01-01T00:01:00Z", "2024-01-01T00:02:00Z"],
        ),
        ("* * * * *", None, "2024-01-01T00:00:30.5Z", &["2024-01-01T00:01:00Z"]),
        (
            "0 8 * * *",
            None,
            "2024-01-01T08:00:00Z",
            &["2024-01-02T08:00:00Z", "2024-01-03T08:00:00Z"],
        ),
        (
            "*/15 * * * *",
            None,
            "2024-01-01T00:07:00Z",
            &[
                "2024-01-01T00:15:00Z",
                "2024-01-01T00:30:00Z",
                "2024-01-01T00:45:00Z",
                "2024-01-01T01:00:00Z",
            ],
        ),
        (
            "10-20/5 3 * * *",
            None,
            "2024-01-01T00:00:00Z",
            &[
                "2024-01-01T03:10:00Z",
                "2024-01-01T03:15:00Z",
                "2024-01-01T03:20:00Z",
                "2024-01-02T03:10:00Z",
            ],
        ),
        (
            "0 1,13 * * *",
            None,
            "2024-01-01T02:00:00Z",
            &["2024-01-01T13:00:00Z", "2024-01-02T01:00:00Z"],
        ),
        (
            "5 4 * * 1-3",
            None,
            "2024-01-05T00:00:00Z",
            &[
                "2024-01-08T04:05:00Z",
                "2024-01-09T04:05:00Z",
                "2024-01-10T04:05:00Z",
                "2024-01-15T04:05:00Z",
            ],
        ),
        // 0 and 7 are both Sunday (2024-01-07 is a Sunday).
        ("0 4 * * 0", None, "2024-01-01T00:00:00Z", &["2024-01-07T04:00:00Z"]),
        ("0 4 * * 7", None, "2024-01-01T00:00:00Z", &["2024-01-07T04:00:00Z"]),
        ("0 4 * * SUN", None, "2024-01-01T00:00:00Z", &["2024-01-07T04:00:00Z"]),
        // Month ends: the 31st skips 30-day months and February.
        (
            "0 0 31 * *",
            None,
            "2024-01-31T00:00:00Z",
            &[
                "2024-03-31T00:00:00Z",
                "2024-05-31T00:00:00Z",
                "2024-07-31T00:00:00Z",
                "2024-08-31T00:00:00Z",
            ],
        ),
        ("0 0 30 * *", None, "2024-01-30T00:00:00Z", &["2024-03-30T00:00:00Z"]),
        (
            "59 23 31 12 *",
            None,
            "2024-06-01T00:00:00Z",
            &["2024-12-31T23:59:00Z", "2025-12-31T23:59:00Z"],
        ),
        // Leap years: Feb 29 only in 2024 and 2028 (2100 is not a leap year).
        (
            "0 12 29 2 *",
            None,
            "2023-01-01T00:00:00Z",
            &["2024-02-29T12:00:00Z", "2028-02-29T12:00:00Z"],
        ),
        ("0 12 29 2 *", None, "2096-03-01T00:00:00Z", &["2104-02-29T12:00:00Z"]),
        (
            "0 0 28-29 2 *",
            None,
            "2023-02-01T00:00:00Z",
            &["2023-02-28T00:00:00Z", "2024-02-28T00:00:00Z", "2024-02-29T00:00:00Z"],
        ),
        // DOM and DOW both restricted: either matches (Vixie). 2024-09-13 is a Friday.
        (
            "0 0 13 * 5",
            None,
            "2024-09-01T00:00:00Z",
            &[
                "2024-09-06T00:00:00Z",
                "2024-09-13T00:00:00Z",
                "2024-09-20T00:00:00Z",
                "2024-09-27T00:00:00Z",
                "2024-10-04T00:00:00Z",
                "2024-10-11T00:00:00Z",
                "2024-10-13T00:00:00Z",
            ],
        ),
        (
            "0 0 1 * MON",
            None,
            "2024-06-25T00:00:00Z",
            &["2024-07-01T00:00:00Z", "2024-07-08T00:00:00Z"],
        ),
        // One field starred: only the other restricts.
        (
            "0 0 * * 5",
            None,
            "2024-09-01T00:00:00Z",
            &["2024-09-06T00:00:00Z", "2024-09-13T00:00:00Z"],
        ),
        (
            "0 0 13 * *",
            None,
            "2024-09-01T00:00:00Z",
            &["2024-09-13T00:00:00Z", "2024-10-13T00:00:00Z"],
        ),
        // A `*/N` field is "starred" for Vixie: both must match. Odd days that are Mondays.
        (
            "0 0 */2 * 1",
            None,
            "2024-07-01T00:00:00Z",
            &["2024-07-15T00:00:00Z", "2024-07-29T00:00:00Z", "2024-08-05T00:00:00Z"],
        ),
        // Europe/Berlin, spring forward 2024-03-31 02:00 CET -> 03:00 CEST.
        // A fixed 02:30 falls in the gap: it runs at the first instant after (03:00 CEST).
        (
            "30 2 * * *",
            Some("Europe/Berlin"),
            "2024-03-30T12:00:00Z",
            &["2024-03-31T01:00:00Z", "2024-04-01T00:30:00Z"],
        ),
        // Stepped minutes have no occurrences in the missing hour.
        (
            "*/30 * * * *",
            Some("Europe/Berlin"),
            "2024-03-31T00:00:00Z",
            &["2024-03-31T00:30:00Z", "2024-03-31T01:00:00Z", "2024-03-31T01:30:00Z"],
        ),
        // Fall back 2024-10-27 03:00 CEST -> 02:00 CET: 02:00-03:00 happens twice.
        // A fixed 02:30 runs once, in the first (summer-time) pass.
        (
            "30 2 * * *",
            Some("Europe/Berlin"),
            "2024-10-26T12:00:00Z",
            &["2024-10-27T00:30:00Z", "2024-10-28T01:30:00Z"],
        ),
        // Stepped minutes run in both passes: 02:00, 02:30 CEST, then 02:00, 02:30 CET.
        (
            "*/30 2 * * *",
            Some("Europe/Berlin"),
            "2024-10-26T12:00:00Z",
            &[
                "2024-10-27T00:00:00Z",
                "2024-10-27T00:30:00Z",
                "2024-10-27T01:00:00Z",
                "2024-10-27T01:30:00Z",
                "2024-10-28T01:00:00Z",
            ],
        ),
        // America/New_York, spring forward 2024-03-10 02:00 EST -> 03:00 EDT.
        (
            "30 2 * * *",
            Some("America/New_York"),
            "2024-03-09T12:00:00Z",
            &["2024-03-10T07:00:00Z", "2024-03-11T06:30:00Z"],
        ),
        // A daily 08:00 keeps its wall-clock time across the change (UTC moves by an hour).
        (
            "0 8 * * *",
            Some("America/New_York"),
            "2024-03-09T00:00:00Z",
            &["2024-03-09T13:00:00Z", "2024-03-10T12:00:00Z"],
        ),
        // Fall back 2024-11-03 02:00 EDT -> 01:00 EST: a fixed 01:30 runs once (EDT pass).
        (
            "30 1 * * *",
            Some("America/New_York"),
            "2024-11-02T12:00:00Z",
            &["2024-11-03T05:30:00Z", "2024-11-04T06:30:00Z"],
        ),
        // Hourly runs both passes of 01:00 (05:00Z and 06:00Z), no gap, no duplicate.
        (
            "0 * * * *",
            Some("America/New_York"),
            "2024-11-03T04:30:00Z",
            &["2024-11-03T05:00:00Z", "2024-11-03T06:00:00Z", "2024-11-03T07:00:00Z"],
        ),
    ];

    #[test]
    fn next_occurrences_follow_the_table() -> TestResult {
        for (expr, tz, start, want) in TABLE {
            let c = CronExpr::parse(expr, *tz)?;
            let mut t = utc(start);
            for w in *want {
                let next = c.next_after(t).ok_or_else(|| format!("{expr}: no next after {t}"))?;
                assert_eq!(next, utc(w), "`{expr}` in {tz:?} after {t}");
                t = next;
            }
        }
        Ok(())
    }

    #[test]
    fn occurrences_are_strictly_increasing_through_a_dst_year() -> TestResult {
        // Every 15 minutes in Berlin for all of 2024. Berlin's offsets are whole hours, so
        // in UTC the runs stay exactly 15 minutes apart through both changes: the skipped
        // local hour has no runs and the repeated one has two passes.
        let c = CronExpr::parse("*/15 * * * *", Some("Europe/Berlin"))?;
        let mut t = utc("2024-01-01T00:00:00Z");
        let end = utc("2025-01-01T00:00:00Z");
        let mut n = 0u32;
        while let Some(next) = c.next_after(t) {
            if next >= end {
                break;
            }
            assert!(next > t);
            assert_eq!((next - t).num_minutes(), 15, "spacing at {t}");
            t = next;
            n += 1;
        }
        // 366 days × 96, minus the first instant (00:00 itself is not "after").
        assert_eq!(n, 366 * 96 - 1);
        Ok(())
    }

    #[test]
    fn bad_expressions_and_zones_are_invalid_schedules() {
        for (expr, tz) in [
            ("61 * * * *", None),
            ("* * * *", None),
            ("0 * * * * *", None),
            ("0 0 * * * * 2025", None),
            ("a b c d e", None),
            ("", None),
            ("0 25 * * *", None),
            ("0 0 0 * *", None),
            ("0 0 * 13 *", None),
            ("0 0 * * 8", None),
            ("0 0 31 4 *", None),
            ("0 0 30 2 *", None),
            ("0 0 * * *", Some("Mars/Olympus")),
            ("0 0 * * *", Some("")),
        ] {
            let r = CronExpr::parse(expr, tz);
            assert!(
                matches!(r, Err(Error::InvalidSchedule { .. })),
                "`{expr}` in {tz:?} should be invalid, got {r:?}"
            );
        }
    }

    #[test]
    fn the_runtime_accepts_what_the_macro_accepts() -> TestResult {
        // The macro's check (jobs-macros/src/schedule.rs) is croner with seconds and years
        // disallowed; the DOM/DOW switch changes matching, never acceptance.
        let macro_parser =
            CronParser::builder().seconds(Seconds::Disallowed).year(Year::Disallowed).build();
        for expr in ["*/5 * * * *", "0 3 * * *", "0 4 * * 0", "0 0 */2 * 1", "30 9 * * MON-FRI"] {
            assert!(macro_parser.parse(expr).is_ok());
            CronExpr::parse(expr, None)?;
        }
        Ok(())
    }

    #[test]
    fn interval_after_coalesces_or_catches_up() -> TestResult {
        let t = Trigger::new(&ScheduleType::Interval { seconds: 10 })?;
        assert_eq!(t.first(1_000), Some(11_000));
        // On time: the next tick.
        assert_eq!(t.after(11_000, 11_005, MisfirePolicy::Coalesce), Some(21_000));
        assert_eq!(t.after(11_000, 11_005, MisfirePolicy::CatchUp), Some(21_000));
        // 35 s late: coalesce skips to the first tick after now, on the same grid.
        assert_eq!(t.after(11_000, 46_000, MisfirePolicy::Coalesce), Some(51_000));
        assert_eq!(t.after(11_000, 51_000, MisfirePolicy::Coalesce), Some(61_000));
        assert_eq!(t.after(11_000, 46_000, MisfirePolicy::CatchUp), Some(21_000));
        assert!(Trigger::new(&ScheduleType::Interval { seconds: 0 }).is_err());
        Ok(())
    }

    #[test]
    fn cron_after_coalesces_or_catches_up() -> TestResult {
        let t =
            Trigger::new(&ScheduleType::Cron { expression: "0 * * * *".into(), timezone: None })?;
        let h = |hour: u32| {
            Utc.from_utc_datetime(
                &NaiveDate::from_ymd_opt(2024, 1, 1)
                    .and_then(|d| d.and_hms_opt(hour, 0, 0))
                    .unwrap_or_default(),
            )
            .timestamp_millis()
        };
        assert_eq!(t.after(h(1), h(1) + 30, MisfirePolicy::Coalesce), Some(h(2)));
        assert_eq!(t.after(h(1), h(5) + 30, MisfirePolicy::Coalesce), Some(h(6)));
        assert_eq!(t.after(h(1), h(5) + 30, MisfirePolicy::CatchUp), Some(h(2)));
        let once = Trigger::new(&ScheduleType::Once { at: utc("2024-01-01T00:00:00Z") })?;
        assert_eq!(once.first(h(3)), Some(h(0)));
        assert_eq!(once.after(h(0), h(3), MisfirePolicy::Coalesce), None);
        Ok(())
    }
}

#[cfg(test)]
mod fuzz {
    use chrono::{TimeZone, Utc};
    use proptest::prelude::*;

    use super::*;

    fn field() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("*".to_owned()),
            (0u32..100).prop_map(|n| n.to_string()),
            (0u32..70, 0u32..70).prop_map(|(a, b)| format!("{a}-{b}")),
            (1u32..70).prop_map(|n| format!("*/{n}")),
            (0u32..70, 0u32..70, 0u32..20).prop_map(|(a, b, s)| format!("{a}-{b}/{s}")),
            (0u32..70, 0u32..70).prop_map(|(a, b)| format!("{a},{b}")),
            "[A-Za-z?#L/,*-]{1,4}".prop_map(|s| s),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 1500, failure_persistence: None, ..ProptestConfig::default() })]

        /// Cron-like input of any shape parses or is refused with an error; a parsed
        /// expression's next occurrence is always later than the instant asked about.
        #[test]
        fn arbitrary_expressions_never_panic(
            fields in proptest::collection::vec(field(), 0..8),
            tz in prop_oneof![Just(None), Just(Some("Europe/Berlin".to_owned())), "[A-Za-z/_]{0,20}".prop_map(Some)],
            secs in 0i64..4_102_444_800,
        ) {
            let expr = fields.join(" ");
            if let Ok(c) = CronExpr::parse(&expr, tz.as_deref()) {
                let t = Utc.timestamp_opt(secs, 0).single().unwrap_or_default();
                if let Some(next) = c.next_after(t) {
                    prop_assert!(next > t, "{expr}: {next} is not after {t}");
                }
            }
        }

        /// Arbitrary text, too.
        #[test]
        fn arbitrary_text_never_panics(s in "\\PC{0,40}") {
            let _ = CronExpr::parse(&s, None);
        }
    }
}
