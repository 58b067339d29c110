//! The results table: one row per figure, the median of each server's runs,
//! their ratio (berth / distribution) and, where the issue sets one, the
//! target and whether berth meets it. A row may compare berth against
//! another server than distribution ([`Row::versus`]: nginx in workload 2);
//! its figure then stands in the distribution column, named.

use std::fmt::Write as _;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Better {
    Higher,
    Lower,
}

#[derive(Clone, Debug)]
pub enum Target {
    /// berth / distribution must be at least this.
    RatioAtLeast(f64),
    /// berth / distribution must be at most this.
    RatioAtMost(f64),
    /// berth's own figure must be below this.
    BerthBelow(f64, &'static str),
    /// Decided by the workload (e.g. "origin sent each layer once").
    Check(&'static str),
}

#[derive(Clone, Debug)]
pub struct Row {
    pub workload: String,
    pub metric: String,
    pub unit: &'static str,
    pub berth: Vec<f64>,
    /// distribution's figures, or those of the server named by `versus`.
    pub distribution: Vec<f64>,
    /// The server compared against when it is not distribution.
    pub versus: Option<&'static str>,
    pub better: Better,
    pub target: Option<Target>,
    /// For `Target::Check`: whether every run met it.
    pub check: Option<bool>,
    pub note: String,
}

impl Row {
    pub fn new(workload: &str, metric: &str, unit: &'static str, better: Better) -> Row {
        Row {
            workload: workload.to_owned(),
            metric: metric.to_owned(),
            unit,
            berth: Vec::new(),
            distribution: Vec::new(),
            versus: None,
            better,
            target: None,
            check: None,
            note: String::new(),
        }
    }
    pub fn target(mut self, t: Target) -> Row {
        self.target = Some(t);
        self
    }
    pub fn note(mut self, n: &str) -> Row {
        self.note = n.to_owned();
        self
    }
    /// Compares berth against `server` instead of distribution; its figures
    /// go in with [`Row::push_versus`].
    pub fn versus(mut self, server: &'static str) -> Row {
        self.versus = Some(server);
        self
    }
    /// Records one run's figure of the server named by [`Row::versus`].
    pub fn push_versus(&mut self, v: f64) {
        debug_assert!(self.versus.is_some(), "push_versus on a row without versus");
        self.distribution.push(v);
    }
    /// Records one run's figure for the server `kind`.
    pub fn push(&mut self, kind: crate::setup::Kind, v: f64) {
        match kind {
            crate::setup::Kind::Berth => self.berth.push(v),
            crate::setup::Kind::Distribution => self.distribution.push(v),
        }
    }
    pub fn ratio(&self) -> Option<f64> {
        let (b, d) = (median(&self.berth)?, median(&self.distribution)?);
        (d != 0.0).then_some(b / d)
    }
    fn verdict(&self) -> String {
        let Some(t) = &self.target else {
            return String::new();
        };
        let yes_no = |ok: bool| if ok { "yes" } else { "**no**" };
        match t {
            Target::RatioAtLeast(x) => match self.ratio() {
                Some(r) => format!("≥ {x}x: {}", yes_no(r >= *x)),
                None => format!("≥ {x}x: ?"),
            },
            Target::RatioAtMost(x) => match self.ratio() {
                Some(r) => format!("≤ {x}x: {}", yes_no(r <= *x)),
                None => format!("≤ {x}x: ?"),
            },
            Target::BerthBelow(x, label) => match median(&self.berth) {
                Some(b) => format!("< {label}: {}", yes_no(b < *x)),
                None => format!("< {label}: ?"),
            },
            Target::Check(what) => match self.check {
                Some(ok) => format!("{what}: {}", yes_no(ok)),
                None => format!("{what}: ?"),
            },
        }
    }
}

pub fn median(v: &[f64]) -> Option<f64> {
    let mut v: Vec<f64> = v.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

/// A figure with three significant digits (at least).
pub fn fmt_num(x: f64) -> String {
    if !x.is_finite() {
        return "–".into();
    }
    let a = x.abs();
    if a >= 1000.0 {
        let s = format!("{:.0}", x);
        // Thousands separators for readability.
        let (sign, digits) = s.strip_prefix('-').map_or(("", s.as_str()), |d| ("-", d));
        let mut out = String::new();
        for (i, c) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i) % 3 == 0 {
                out.push(',');
            }
            out.push(c);
        }
        format!("{sign}{out}")
    } else if a >= 100.0 {
        format!("{x:.0}")
    } else if a >= 10.0 {
        format!("{x:.1}")
    } else if a >= 1.0 {
        format!("{x:.2}")
    } else if a == 0.0 {
        "0".into()
    } else {
        format!("{x:.3}")
    }
}

fn cell(v: &[f64], unit: &str) -> String {
    match median(v) {
        Some(m) if unit.is_empty() => fmt_num(m),
        Some(m) => format!("{} {unit}", fmt_num(m)),
        None => "–".into(),
    }
}

fn runs(v: &[f64]) -> String {
    v.iter()
        .map(|x| fmt_num(*x))
        .collect::<Vec<_>>()
        .join(" / ")
}

/// A figure of the server a row compares against, named when it is not distribution.
fn named(figure: String, versus: Option<&str>) -> String {
    match versus {
        Some(server) => format!("{figure} ({server})"),
        None => figure,
    }
}

/// The main table (markdown).
pub fn table(rows: &[Row]) -> String {
    let mut s = String::new();
    s.push_str("| workload | figure | berth | distribution | berth/dist | target | note |\n");
    s.push_str("|---|---|---:|---:|---:|---|---|\n");
    for r in rows {
        let ratio = r
            .ratio()
            .map(|x| format!("{}x", fmt_num(x)))
            .unwrap_or_else(|| "–".into());
        let better = match r.better {
            Better::Higher => "↑",
            Better::Lower => "↓",
        };
        let _ = writeln!(
            s,
            "| {} | {} {} | {} | {} | {} | {} | {} |",
            r.workload,
            r.metric,
            better,
            cell(&r.berth, r.unit),
            named(cell(&r.distribution, r.unit), r.versus),
            ratio,
            r.verdict(),
            r.note
        );
    }
    s
}

/// Every run's figure, for the record.
pub fn runs_table(rows: &[Row]) -> String {
    let mut s = String::new();
    s.push_str("| workload | figure | berth runs | distribution runs |\n|---|---|---|---|\n");
    for r in rows {
        let unit = if r.unit.is_empty() {
            String::new()
        } else {
            format!(" ({})", r.unit)
        };
        let _ = writeln!(
            s,
            "| {} | {}{unit} | {} | {} |",
            r.workload,
            r.metric,
            runs(&r.berth),
            named(runs(&r.distribution), r.versus)
        );
    }
    s
}
