//! Reading a Prometheus text endpoint (`/metrics`) as tests assert on it:
//! one scrape, then values by name and labels.

use std::collections::BTreeMap;

/// One scrape of a Prometheus text endpoint.
pub struct Metrics {
    pub text: String,
}

/// One sample line: metric name, labels, value.
struct Sample<'a> {
    name: &'a str,
    labels: BTreeMap<&'a str, &'a str>,
    value: f64,
}

impl Metrics {
    /// `GET <base>/metrics`; panics if it cannot be read.
    pub fn scrape(base: &str) -> Metrics {
        let text = reqwest::blocking::Client::builder()
            .timeout(std::time::Duration::from_secs(60))
            .build()
            .expect("http client")
            .get(format!("{base}/metrics"))
            .send()
            .and_then(|r| r.text())
            .unwrap_or_else(|e| panic!("scraping {base}/metrics: {e}"));
        Metrics { text }
    }

    /// The value of `name` with exactly these labels (0 when absent).
    pub fn get(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let wanted: BTreeMap<&str, &str> = labels.iter().copied().collect();
        self.samples()
            .find(|s| s.name == name && s.labels == wanted)
            .map_or(0.0, |s| s.value)
    }

    /// The value of `name` summed over all its label sets (0 when absent).
    pub fn sum(&self, name: &str) -> f64 {
        self.samples()
            .filter(|s| s.name == name)
            .map(|s| s.value)
            .sum()
    }

    /// `berth_edge_<name>` without labels, as an edge cache reports it.
    pub fn edge(&self, name: &str) -> f64 {
        self.get(&format!("berth_edge_{name}"), &[])
    }

    fn samples(&self) -> impl Iterator<Item = Sample<'_>> {
        self.text
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|line| {
                let (series, value) = line.rsplit_once(' ')?;
                let (name, label_text) = match series.split_once('{') {
                    Some((m, rest)) => (m, rest.trim_end_matches('}')),
                    None => (series, ""),
                };
                let labels = label_text
                    .split(',')
                    .filter(|p| !p.is_empty())
                    .filter_map(|p| p.split_once('='))
                    .map(|(k, v)| (k, v.trim_matches('"')))
                    .collect();
                Some(Sample {
                    name,
                    labels,
                    value: value.trim().parse().unwrap_or(0.0),
                })
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_by_exact_labels_and_summed() {
        let m = Metrics {
            text: "# TYPE x counter\n\
                   x_total{route=\"blob\",status=\"200\"} 3\n\
                   x_total{route=\"blob\",status=\"404\"} 2\n\
                   berth_edge_misses_total 7\n"
                .into(),
        };
        assert_eq!(
            m.get("x_total", &[("status", "200"), ("route", "blob")]),
            3.0
        );
        assert_eq!(m.get("x_total", &[("route", "blob")]), 0.0);
        assert_eq!(m.sum("x_total"), 5.0);
        assert_eq!(m.sum("y_total"), 0.0);
        assert_eq!(m.edge("misses_total"), 7.0);
    }
}
