//! The text the `berth app ...` commands print: sizes, times, the status
//! table with its progress lines, and the version history. Pure.

use crate::model::{Publication, PublicationState, TemplateVersion};

/// `1.5 MiB` style sizes.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// One line per node: state, and bytes for a prefetch, or the reason of a failure.
pub fn progress_line(p: &Publication) -> String {
    let what = match &p.state {
        PublicationState::Prefetching {
            bytes_done,
            bytes_total,
        } if *bytes_total > 0 => format!(
            "prefetching {} / {} ({}%)",
            human_bytes(*bytes_done),
            human_bytes(*bytes_total),
            bytes_done.saturating_mul(100) / bytes_total
        ),
        PublicationState::Failed { reason } => {
            format!("failed (attempt {}, retrying): {reason}", p.attempts)
        }
        other => other.label().to_string(),
    };
    format!("{:<16} v{:<4} {what}", p.node, p.version)
}

/// The status table of an app's publications.
pub fn format_status(pubs: &[Publication]) -> String {
    let mut s = String::new();
    for p in pubs {
        s.push_str(&progress_line(p));
        s.push('\n');
        if let Some(images) = &p.images {
            for i in images {
                s.push_str(&format!("    {} -> {}\n", i.reference, i.digest));
            }
        }
    }
    if s.is_empty() {
        s.push_str("not published on any node\n");
    }
    s
}

/// The version history, newest first.
pub fn format_history(versions: &[TemplateVersion]) -> String {
    let mut s = String::new();
    for v in versions.iter().rev() {
        s.push_str(&format!(
            "v{:<4} {}  {:<12} {}\n",
            v.version,
            format_time(v.created_at),
            v.author,
            v.summary
        ));
    }
    s
}

/// Unix seconds as `YYYY-MM-DD HH:MM:SS` UTC.
pub fn format_time(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(format_time(0), "1970-01-01 00:00:00");
        assert_eq!(format_time(1_700_000_000), "2023-11-14 22:13:20");
        let mut p = Publication::new("shop", "web", "n1", 2, 0);
        p.state = PublicationState::Prefetching {
            bytes_done: 512,
            bytes_total: 1024,
        };
        assert!(progress_line(&p).contains("prefetching 512 B / 1.0 KiB (50%)"));
    }
}
