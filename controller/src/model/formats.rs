//! The two value formats Kubernetes parses from strings: cron schedules and
//! resource quantities.
//!
//! Owns: checking them, with messages that show a valid example. Must not
//! touch: what the values mean at run time.

/// A standard 5-field cron schedule (minute hour day-of-month month day-of-week),
/// or one of the macros Kubernetes accepts (`@hourly`, `@daily`, ...).
pub fn validate_cron(expr: &str) -> Result<(), String> {
    let expr = expr.trim();
    if expr.starts_with("TZ=") || expr.starts_with("CRON_TZ=") {
        return Err(
            "time zones in the schedule are not supported by Kubernetes CronJobs; remove TZ=..."
                .into(),
        );
    }
    if expr.starts_with('@') {
        return match expr {
            "@yearly" | "@annually" | "@monthly" | "@weekly" | "@daily" | "@midnight"
            | "@hourly" => Ok(()),
            _ => Err(format!(
                "{expr:?} is not a known macro; use @yearly, @monthly, @weekly, @daily, @hourly \
                 or five fields"
            )),
        };
    }
    let fields: Vec<&str> = expr.split_whitespace().collect();
    if fields.len() != 5 {
        return Err(format!(
            "{expr:?} has {} fields; a schedule has 5: minute hour day-of-month month \
             day-of-week (e.g. \"*/15 * * * *\")",
            fields.len()
        ));
    }
    const MONTHS: [&str; 12] = [
        "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
    ];
    const DAYS: [&str; 7] = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];
    let specs: [(&str, u32, u32, &[&str], u32); 5] = [
        ("minute", 0, 59, &[], 0),
        ("hour", 0, 23, &[], 0),
        ("day-of-month", 1, 31, &[], 0),
        ("month", 1, 12, &MONTHS, 1),
        ("day-of-week", 0, 7, &DAYS, 0),
    ];
    for (field, (name, min, max, names, name_base)) in fields.iter().zip(specs) {
        validate_cron_field(field, min, max, names, name_base)
            .map_err(|m| format!("{name} field {field:?}: {m}"))?;
    }
    Ok(())
}

fn validate_cron_field(
    field: &str,
    min: u32,
    max: u32,
    names: &[&str],
    name_base: u32,
) -> Result<(), String> {
    let value = |s: &str| -> Result<u32, String> {
        if let Ok(n) = s.parse::<u32>() {
            if n < min || n > max {
                return Err(format!("{n} is outside {min}-{max}"));
            }
            return Ok(n);
        }
        let lower = s.to_ascii_lowercase();
        match names.iter().position(|n| *n == lower) {
            Some(i) => Ok(i as u32 + name_base),
            None => Err(format!("{s:?} is not a number in {min}-{max}")),
        }
    };
    for item in field.split(',') {
        let (range, step) = match item.split_once('/') {
            Some((r, s)) => (r, Some(s)),
            None => (item, None),
        };
        if let Some(step) = step {
            match step.parse::<u32>() {
                Ok(n) if n >= 1 && n <= max.max(1) => {}
                _ => return Err(format!("step {step:?} must be a number from 1 to {max}")),
            }
        }
        if range == "*" || range == "?" {
            continue;
        }
        match range.split_once('-') {
            Some((a, b)) => {
                let (a, b) = (value(a)?, value(b)?);
                if a > b {
                    return Err(format!("range {range:?} goes backwards"));
                }
            }
            None => {
                value(range)?;
            }
        }
    }
    Ok(())
}

/// A Kubernetes resource quantity such as `250m`, `1.5`, `128Mi`, `1e3`.
pub fn validate_quantity(q: &str) -> Result<(), String> {
    let err = || {
        format!("{q:?} is not a quantity: write e.g. \"250m\" or \"0.5\" for CPU, \"128Mi\" or \"1Gi\" for memory")
    };
    let s = q.strip_prefix(['+', '-']).unwrap_or(q);
    let num_end = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, suffix) = s.split_at(num_end);
    if num.is_empty() || num == "." || num.matches('.').count() > 1 {
        return Err(err());
    }
    let suffix_ok = matches!(
        suffix,
        "" | "Ki"
            | "Mi"
            | "Gi"
            | "Ti"
            | "Pi"
            | "Ei"
            | "n"
            | "u"
            | "m"
            | "k"
            | "M"
            | "G"
            | "T"
            | "P"
            | "E"
    ) || {
        let exp = suffix.strip_prefix(['e', 'E']);
        exp.is_some_and(|e| {
            let e = e.strip_prefix(['+', '-']).unwrap_or(e);
            !e.is_empty() && e.bytes().all(|b| b.is_ascii_digit())
        })
    };
    if suffix_ok {
        Ok(())
    } else {
        Err(err())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cron() {
        for ok in [
            "*/5 * * * *",
            "0 3 * * 1-5",
            "0,30 8-18/2 1 jan-jun sun",
            "@daily",
            "0 0 ? * 7",
        ] {
            assert!(validate_cron(ok).is_ok(), "{ok}: {:?}", validate_cron(ok));
        }
        assert!(validate_cron("* * * *")
            .expect_err("must be refused")
            .contains("4 fields"));
        assert!(validate_cron("60 * * * *")
            .expect_err("must be refused")
            .contains("outside 0-59"));
        assert!(validate_cron("* 5-2 * * *")
            .expect_err("must be refused")
            .contains("backwards"));
        assert!(validate_cron("*/0 * * * *")
            .expect_err("must be refused")
            .contains("step"));
        assert!(validate_cron("* * * foo *").is_err());
        assert!(validate_cron("@sometimes").is_err());
        assert!(validate_cron("TZ=UTC 0 * * * *").is_err());
    }

    #[test]
    fn quantities() {
        for ok in ["1", "250m", "0.5", "128Mi", "1Gi", "1e3", "+2"] {
            assert!(validate_quantity(ok).is_ok(), "{ok}");
        }
        for bad in ["", "abc", "1.2.3", "12 Mi", "1MB", "."] {
            assert!(validate_quantity(bad).is_err(), "{bad}");
        }
    }
}
