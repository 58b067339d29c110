//! Five-field cron expressions (`minute hour day-of-month month day-of-week`,
//! in UTC), for schedules such as `[gc] schedule`. Each field is `*`, a
//! number, a range `a-b`, a step `*/n` or `a-b/n`, or a comma-separated list
//! of those; day-of-week runs 0-7 with 0 and 7 both Sunday. As in Vixie
//! cron, when both day fields are restricted a day matching either fires.
//! Pure: no clock is read here.

/// A parsed schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cron {
    minutes: u64,
    hours: u64,
    days: u64,
    months: u64,
    weekdays: u64,
    any_day: bool,
    any_weekday: bool,
}

impl Cron {
    pub fn parse(s: &str) -> Result<Cron, String> {
        let fields: Vec<&str> = s.split_whitespace().collect();
        let [mi, h, d, mo, w] = fields[..] else {
            return Err(format!(
                "{s:?} is not a cron expression: write five fields, minute hour \
                 day-of-month month day-of-week (e.g. \"0 3 * * *\": 03:00 UTC daily)"
            ));
        };
        let mut weekdays = field(w, 0, 7, "day-of-week")?;
        if weekdays & (1 << 7) != 0 {
            weekdays |= 1; // 7 is Sunday too
        }
        Ok(Cron {
            minutes: field(mi, 0, 59, "minute")?,
            hours: field(h, 0, 23, "hour")?,
            days: field(d, 1, 31, "day-of-month")?,
            months: field(mo, 1, 12, "month")?,
            weekdays,
            any_day: d == "*",
            any_weekday: w == "*",
        })
    }

    /// The first minute strictly after `after` (unix seconds) that the
    /// schedule fires at, as unix seconds; None when it never fires within
    /// five years (e.g. "0 0 31 2 *").
    pub fn next_after(&self, after: u64) -> Option<u64> {
        let mut t = (after / 60 + 1) * 60;
        let limit = after + 5 * 366 * 86_400;
        while t <= limit {
            let (days, secs) = (t / 86_400, t % 86_400);
            let (_, month, day) = civil_from_days(days as i64);
            let weekday = (days + 4) % 7; // 1970-01-01 was a Thursday
            let day_ok = match (self.any_day, self.any_weekday) {
                (true, true) => true,
                (false, true) => bit(self.days, day),
                (true, false) => bit(self.weekdays, weekday),
                (false, false) => bit(self.days, day) || bit(self.weekdays, weekday),
            };
            if !bit(self.months, month) || !day_ok {
                t = (days + 1) * 86_400;
                continue;
            }
            let (hour, minute) = (secs / 3600, secs % 3600 / 60);
            if !bit(self.hours, hour) {
                t = days * 86_400 + (hour + 1) * 3600;
                continue;
            }
            if bit(self.minutes, minute) {
                return Some(t);
            }
            t += 60;
        }
        None
    }
}

fn bit(set: u64, n: u64) -> bool {
    n < 64 && set & (1 << n) != 0
}

fn field(s: &str, lo: u64, hi: u64, what: &str) -> Result<u64, String> {
    let bad = |why: &str| format!("cron {what} field {s:?}: {why}");
    let mut set = 0u64;
    for part in s.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((r, st)) => (
                r,
                st.parse::<u64>()
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or_else(|| bad("the step must be a positive number"))?,
            ),
            None => (part, 1),
        };
        let num = |x: &str| -> Result<u64, String> {
            x.parse::<u64>()
                .ok()
                .filter(|n| (lo..=hi).contains(n))
                .ok_or_else(|| bad(&format!("{x:?} is not a number from {lo} to {hi}")))
        };
        let (a, b) = match range {
            "*" => (lo, hi),
            r => match r.split_once('-') {
                Some((a, b)) => (num(a)?, num(b)?),
                None if step > 1 => (num(r)?, hi),
                None => (num(r)?, num(r)?),
            },
        };
        if a > b {
            return Err(bad("a range must run from low to high"));
        }
        let mut n = a;
        while n <= b {
            set |= 1 << n;
            n += step;
        }
    }
    Ok(set)
}

/// (year, month 1-12, day 1-31) of a count of days since 1970-01-01
/// (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u64, u64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u64;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u64;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    // 2026-11-29 (a Sunday) 20:47:12 UTC.
    const NOW: u64 = 1_795_985_232;

    fn at(s: &str) -> u64 {
        Cron::parse(s).expect(s).next_after(NOW).expect("fires")
    }

    #[test]
    fn days_and_dates_are_civil() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days((NOW / 86_400) as i64), (2026, 11, 29));
        assert_eq!((NOW / 86_400 + 4) % 7, 0, "a Sunday");
    }

    #[test]
    fn next_times() {
        let day = NOW / 86_400 * 86_400;
        assert_eq!(at("* * * * *"), NOW - NOW % 60 + 60);
        assert_eq!(at("0 3 * * *"), day + 86_400 + 3 * 3600, "03:00 tomorrow");
        assert_eq!(at("*/15 * * * *"), day + 21 * 3600, "21:00");
        assert_eq!(at("30 21 * * *"), day + 21 * 3600 + 1800);
        assert_eq!(at("0 0 1 * *"), day + 2 * 86_400, "1 December");
        assert_eq!(at("0 4 * * 1"), day + 86_400 + 4 * 3600, "Monday");
        assert_eq!(at("0 4 * * 7"), day + 7 * 86_400 + 4 * 3600, "next Sunday");
        assert_eq!(
            at("0 4 15 * 1"),
            day + 86_400 + 4 * 3600,
            "either day field matches"
        );
        assert_eq!(at("0 1-2,5 * * *"), day + 86_400 + 3600);
        assert_eq!(
            Cron::parse("0 0 31 2 *").expect("parses").next_after(NOW),
            None
        );
    }

    #[test]
    fn bad_expressions_say_what_is_wrong() {
        for (s, says) in [
            ("0 3 * *", "five fields"),
            ("60 * * * *", "minute"),
            ("* 24 * * *", "hour"),
            ("* * 0 * *", "day-of-month"),
            ("* * * 13 *", "month"),
            ("* * * * 8", "day-of-week"),
            ("*/0 * * * *", "step"),
            ("5-1 * * * *", "low to high"),
            ("x * * * *", "minute"),
        ] {
            let e = Cron::parse(s).expect_err(s);
            assert!(e.contains(says), "{s}: {e}");
        }
    }
}
