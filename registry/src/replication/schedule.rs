//! The schedule trigger's five-field cron expressions (minute, hour, day of
//! month, month, day of week; UTC), as crontab(5) reads them: `*`, numbers,
//! ranges `a-b`, steps `*/n` and `a-b/n`, lists `a,b`; day of week 0-7
//! with 0 and 7 both Sunday. When both day fields are restricted, a day
//! matching either is a match. Pure.

/// A parsed expression: the allowed values of each field as bit sets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    minutes: u64,
    hours: u64,
    days: u64,
    months: u64,
    weekdays: u64,
    days_restricted: bool,
    weekdays_restricted: bool,
}

const FIELDS: [(&str, u32, u32); 5] = [
    ("minute", 0, 59),
    ("hour", 0, 23),
    ("day of month", 1, 31),
    ("month", 1, 12),
    ("day of week", 0, 7),
];

impl Schedule {
    /// Parses `expr`; the error says which field is wrong and why.
    pub fn parse(expr: &str) -> Result<Self, String> {
        let parts: Vec<&str> = expr.split_whitespace().collect();
        if parts.len() != 5 {
            return Err(format!(
                "schedule {expr:?} must have five fields (minute hour day-of-month month \
                 day-of-week), e.g. \"*/30 * * * *\""
            ));
        }
        let mut sets = [0u64; 5];
        for (i, (part, (what, lo, hi))) in parts.iter().zip(FIELDS).enumerate() {
            sets[i] = field(part, lo, hi)
                .map_err(|why| format!("schedule {expr:?}: the {what} field {part:?} {why}"))?;
        }
        let mut weekdays = sets[4];
        if weekdays & (1 << 7) != 0 {
            weekdays |= 1;
        }
        Ok(Schedule {
            minutes: sets[0],
            hours: sets[1],
            days: sets[2],
            months: sets[3],
            weekdays,
            days_restricted: parts[2] != "*",
            weekdays_restricted: parts[4] != "*",
        })
    }

    /// The first matching minute strictly after `unix` (seconds), within
    /// about four years; None when the expression never matches (`0 0 31 2 *`).
    pub fn next_after(&self, unix: u64) -> Option<u64> {
        let start = unix / 60 + 1;
        (start..start + 4 * 366 * 1440)
            .find(|m| self.matches_minute(*m))
            .map(|m| m * 60)
    }

    fn matches_minute(&self, minute: u64) -> bool {
        let (min, hour, days) = (minute % 60, (minute / 60) % 24, minute / 1440);
        if self.minutes & (1 << min) == 0 || self.hours & (1 << hour) == 0 {
            return false;
        }
        let (_, month, day) = civil_from_days(days as i64);
        if self.months & (1 << month) == 0 {
            return false;
        }
        // 1970-01-01 was a Thursday (4).
        let weekday = (days + 4) % 7;
        let by_day = self.days & (1 << day) != 0;
        let by_weekday = self.weekdays & (1 << weekday) != 0;
        match (self.days_restricted, self.weekdays_restricted) {
            (true, true) => by_day || by_weekday,
            _ => by_day && by_weekday,
        }
    }
}

fn field(part: &str, lo: u32, hi: u32) -> Result<u64, String> {
    let mut set = 0u64;
    for item in part.split(',') {
        let (range, step) = match item.split_once('/') {
            Some((r, s)) => {
                let step: u32 = s.parse().map_err(|_| format!("has a bad step {s:?}"))?;
                if step == 0 {
                    return Err("has a step of 0".into());
                }
                (r, step)
            }
            None => (item, 1),
        };
        let (from, to) = if range == "*" {
            (lo, hi)
        } else if let Some((a, b)) = range.split_once('-') {
            (number(a, lo, hi)?, number(b, lo, hi)?)
        } else {
            let n = number(range, lo, hi)?;
            (n, if step > 1 { hi } else { n })
        };
        if from > to {
            return Err(format!("has a backwards range {range:?}"));
        }
        for v in (from..=to).step_by(step as usize) {
            set |= 1 << v;
        }
    }
    Ok(set)
}

fn number(s: &str, lo: u32, hi: u32) -> Result<u32, String> {
    match s.parse::<u32>() {
        Ok(n) if (lo..=hi).contains(&n) => Ok(n),
        Ok(n) => Err(format!("has {n}, outside {lo}-{hi}")),
        Err(_) => Err(format!("has {s:?}, which is not a number")),
    }
}

/// Days since 1970-01-01 → (year, month 1-12, day 1-31); Howard Hinnant's
/// civil_from_days.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    // 2026-03-02 10:07:30 UTC, a Monday.
    const T: u64 = 1_772_446_050;

    #[test]
    fn next_times() {
        let s = Schedule::parse("*/30 * * * *").expect("parse");
        // 10:30:00.
        assert_eq!(s.next_after(T), Some(T + 22 * 60 + 30));
        let s = Schedule::parse("0 3 * * *").expect("parse");
        let next = s.next_after(T).expect("next");
        assert_eq!(next % 86_400, 3 * 3600);
        assert!(next > T && next - T < 86_400);
        // Sundays only: 2026-03-08.
        let s = Schedule::parse("0 0 * * 7").expect("parse");
        assert_eq!(s.next_after(T), Some(1_772_928_000));
        let s = Schedule::parse("0 0 * * 0").expect("parse");
        assert_eq!(s.next_after(T), Some(1_772_928_000));
        assert_eq!(
            Schedule::parse("0 0 31 2 *").expect("parse").next_after(T),
            None
        );
    }

    #[test]
    fn civil_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days((T / 86_400) as i64), (2026, 3, 2));
    }

    #[test]
    fn bad_expressions_say_which_field() {
        for (expr, words) in [
            ("* * * *", "five fields"),
            ("60 * * * *", "minute field"),
            ("*/0 * * * *", "step of 0"),
            ("* * * jan *", "month field"),
            ("* 5-2 * * *", "backwards"),
        ] {
            let err = Schedule::parse(expr).expect_err(expr);
            assert!(err.contains(words), "{expr}: {err}");
        }
    }
}
