//! Cron schedules as CronJobs write them: five fields (minute, hour, day of
//! month, month, day of week) with `*`, `*/n`, `a-b`, `a-b/n`, lists and
//! names (`jan`, `mon`), or `@yearly`, `@monthly`, `@weekly`, `@daily`,
//! `@midnight`, `@hourly`; times in UTC. Day of month and day of week, when
//! both are restricted, match either (as cron does).

use std::collections::BTreeSet;

/// A parsed schedule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Schedule {
    minutes: BTreeSet<u32>,
    hours: BTreeSet<u32>,
    days: BTreeSet<u32>,
    months: BTreeSet<u32>,
    weekdays: BTreeSet<u32>,
    any_day: bool,
    any_weekday: bool,
}

const MONTHS: [&str; 12] = [
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];
const DAYS: [&str; 7] = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];

fn value(text: &str, names: &[&str], base: u32) -> Option<u32> {
    let lower = text.to_ascii_lowercase();
    names
        .iter()
        .position(|n| *n == lower)
        .map(|i| i as u32 + base)
        .or_else(|| text.parse().ok())
}

fn field(text: &str, min: u32, max: u32, names: &[&str], base: u32) -> Option<BTreeSet<u32>> {
    let mut out = BTreeSet::new();
    for part in text.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((r, s)) => (r, s.parse::<u32>().ok().filter(|s| *s > 0)?),
            None => (part, 1),
        };
        let (lo, hi) = if range == "*" || range == "?" {
            (min, max)
        } else if let Some((a, b)) = range.split_once('-') {
            (value(a, names, base)?, value(b, names, base)?)
        } else {
            let v = value(range, names, base)?;
            (v, if part.contains('/') { max } else { v })
        };
        if lo < min || hi > max || lo > hi {
            return None;
        }
        out.extend((lo..=hi).step_by(step as usize));
    }
    Some(out)
}

impl Schedule {
    /// Parses a schedule; `None` when it is not valid.
    pub(crate) fn parse(text: &str) -> Option<Self> {
        let text = match text.trim() {
            "@yearly" | "@annually" => "0 0 1 1 *",
            "@monthly" => "0 0 1 * *",
            "@weekly" => "0 0 * * 0",
            "@daily" | "@midnight" => "0 0 * * *",
            "@hourly" => "0 * * * *",
            other => other,
        };
        let f: Vec<&str> = text.split_whitespace().collect();
        if f.len() != 5 {
            return None;
        }
        let mut weekdays = field(f[4], 0, 7, &DAYS, 0)?;
        if weekdays.remove(&7) {
            weekdays.insert(0);
        }
        Some(Schedule {
            minutes: field(f[0], 0, 59, &[], 0)?,
            hours: field(f[1], 0, 23, &[], 0)?,
            days: field(f[2], 1, 31, &[], 0)?,
            months: field(f[3], 1, 12, &MONTHS, 1)?,
            weekdays,
            any_day: f[2] == "*" || f[2] == "?",
            any_weekday: f[4] == "*" || f[4] == "?",
        })
    }

    fn day_matches(&self, day: u32, weekday: u32) -> bool {
        let by_day = self.days.contains(&day);
        let by_weekday = self.weekdays.contains(&weekday);
        match (self.any_day, self.any_weekday) {
            (true, true) => true,
            (true, false) => by_weekday,
            (false, true) => by_day,
            (false, false) => by_day || by_weekday,
        }
    }

    /// The first time strictly after `after` (seconds since the epoch, UTC)
    /// that the schedule fires, within eight years.
    pub(crate) fn next_after(&self, after: i64) -> Option<i64> {
        use jiff::{civil::DateTime, tz::TimeZone, Timestamp, ToSpan};
        let start = Timestamp::from_second(after - after.rem_euclid(60) + 60).ok()?;
        let mut t: DateTime = start.to_zoned(TimeZone::UTC).datetime();
        let limit = t.checked_add(8.years()).ok()?;
        while t < limit {
            if !self.months.contains(&(t.month() as u32)) {
                t = DateTime::new(t.year(), t.month(), 1, 0, 0, 0, 0)
                    .ok()?
                    .checked_add(1.month())
                    .ok()?;
                continue;
            }
            let weekday = t.weekday().to_sunday_zero_offset() as u32;
            if !self.day_matches(t.day() as u32, weekday) {
                t = t
                    .date()
                    .checked_add(1.day())
                    .ok()?
                    .to_datetime(jiff::civil::Time::midnight());
                continue;
            }
            if !self.hours.contains(&(t.hour() as u32)) {
                t = DateTime::new(t.year(), t.month(), t.day(), t.hour(), 0, 0, 0)
                    .ok()?
                    .checked_add(1.hour())
                    .ok()?;
                continue;
            }
            if !self.minutes.contains(&(t.minute() as u32)) {
                t = t.checked_add(1.minute()).ok()?;
                continue;
            }
            return t
                .to_zoned(TimeZone::UTC)
                .ok()
                .map(|z| z.timestamp().as_second());
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> i64 {
        text.parse::<jiff::Timestamp>().unwrap().as_second()
    }

    #[test]
    fn schedules_should_fire_when_cron_would() {
        let every5 = Schedule::parse("*/5 * * * *").unwrap();
        assert_eq!(
            every5.next_after(at("2024-01-01T00:02:00Z")),
            Some(at("2024-01-01T00:05:00Z"))
        );
        assert_eq!(
            every5.next_after(at("2024-01-01T00:05:00Z")),
            Some(at("2024-01-01T00:10:00Z"))
        );
        let nightly = Schedule::parse("30 2 * * mon-fri").unwrap();
        // 2024-01-06 is a Saturday: next is Monday the 8th.
        assert_eq!(
            nightly.next_after(at("2024-01-05T03:00:00Z")),
            Some(at("2024-01-08T02:30:00Z"))
        );
        let leap = Schedule::parse("0 0 29 feb *").unwrap();
        assert_eq!(
            leap.next_after(at("2024-03-01T00:00:00Z")),
            Some(at("2028-02-29T00:00:00Z"))
        );
        assert_eq!(
            Schedule::parse("@hourly")
                .unwrap()
                .next_after(at("2024-01-01T00:59:59Z")),
            Some(at("2024-01-01T01:00:00Z"))
        );
        // Both day fields restricted: either matches.
        let either = Schedule::parse("0 0 1 * sun").unwrap();
        assert_eq!(
            either.next_after(at("2024-01-02T00:00:00Z")),
            Some(at("2024-01-07T00:00:00Z"))
        );
        for bad in [
            "* * *",
            "61 * * * *",
            "*/0 * * * *",
            "5-1 * * * *",
            "x * * * *",
        ] {
            assert!(Schedule::parse(bad).is_none(), "{bad}");
        }
    }
}
