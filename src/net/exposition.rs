//! The one reader of the Prometheus text format (0.0.4), for llama-server's `/metrics` (names
//! with colons: `llamacpp:prompt_tokens_total`) and other llmtop hosts' (label values with
//! escapes: a device named `a"b,c=d\e` must come back as itself).
//!
//! On `openmetrics-parser`, which takes both; `prometheus-parse` kept label values escaped, so
//! a `,` or `=` in one mislabelled a row. Counters, gauges and untyped series are read;
//! histograms and summaries are skipped (nobody here reads them back).

use openmetrics_parser::{PrometheusType, PrometheusValue};
use std::collections::BTreeMap;

/// One series: its family's name, its labels (unescaped) and its value.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

impl Series {
    /// A label's value, `""` when the series has none.
    pub fn label(&self, key: &str) -> &str {
        self.labels.get(key).map_or("", String::as_str)
    }
}

/// A parsed exposition.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Exposition {
    /// Every family's name, sorted (those without readable series too).
    pub families: Vec<String>,
    /// Every counter, gauge and untyped series, family by family.
    pub series: Vec<Series>,
}

impl Exposition {
    /// The series of family `name`.
    pub fn family<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Series> + 'a {
        self.series.iter().filter(move |s| s.name == name)
    }

    /// The sum of family `name`'s finite values; `None` when it has none.
    pub fn sum(&self, name: &str) -> Option<f64> {
        self.family(name)
            .map(|s| s.value)
            .filter(|v| v.is_finite())
            .fold(None, |acc, v| Some(acc.unwrap_or(0.0) + v))
    }
}

/// Parse `text`; `Err` is one line saying why it is not Prometheus text (sanitised: it may
/// quote the input).
pub fn parse(text: &str) -> Result<Exposition, String> {
    let exp = openmetrics_parser::prometheus::parse_prometheus(text).map_err(|e| {
        // The parser's message quotes the input over several lines: its first will do.
        let first: String = e
            .to_string()
            .lines()
            .next()
            .unwrap_or("")
            .chars()
            .take(120)
            .collect();
        format!(
            "not Prometheus text ({})",
            crate::util::sanitize::terminal(first.trim())
        )
    })?;
    let mut families: Vec<String> = exp.families.keys().cloned().collect();
    families.sort_unstable();
    let mut series = Vec::new();
    for name in &families {
        let Some(f) = exp.families.get(name) else {
            continue;
        };
        if !matches!(
            f.family_type,
            PrometheusType::Counter | PrometheusType::Gauge | PrometheusType::Unknown
        ) {
            continue;
        }
        for s in f.iter_samples() {
            let value = match &s.value {
                PrometheusValue::Counter(c) => c.value.as_f64(),
                PrometheusValue::Gauge(g) | PrometheusValue::Unknown(g) => g.as_f64(),
                _ => continue,
            };
            let labels = s
                .get_labelset()
                .map(|l| {
                    l.iter()
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect::<BTreeMap<_, _>>()
                })
                .unwrap_or_default();
            series.push(Series {
                name: name.clone(),
                labels,
                value,
            });
        }
    }
    Ok(Exposition { families, series })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_colons_in_names_and_unescapes_label_values() {
        let text = "# TYPE llamacpp:prompt_tokens_total counter\nllamacpp:prompt_tokens_total 33\n\
                    # TYPE d gauge\nd{device=\"a\\\"b,c=d\\\\e\\nf\",x=\"y\"} 2.5\nd{device=\"z\",x=\"\"} NaN\n\
                    # TYPE h histogram\nh_bucket{le=\"+Inf\"} 1\nh_sum 1\nh_count 1\n";
        let e = parse(text).expect("parse");
        assert_eq!(e.families, ["d", "h", "llamacpp:prompt_tokens_total"]);
        assert_eq!(e.sum("llamacpp:prompt_tokens_total"), Some(33.0));
        let d: Vec<&Series> = e.family("d").collect();
        assert_eq!(d[0].label("device"), "a\"b,c=d\\e\nf");
        assert_eq!(d[0].label("x"), "y");
        assert_eq!(d[0].label("missing"), "");
        assert_eq!(d[0].value, 2.5);
        // NaN is a value, not a number to add.
        assert_eq!(e.sum("d"), Some(2.5));
        assert_eq!(e.family("h").count(), 0);
        assert_eq!(e.sum("nothing"), None);
    }

    #[test]
    fn what_is_not_prometheus_text_is_one_clean_line() {
        let e = parse("<html>\x1b[31mhello</html>").expect_err("html");
        assert!(e.starts_with("not Prometheus text ("), "{e}");
        assert!(!e.contains('\n') && !e.contains('\x1b'), "{e}");
    }
}
