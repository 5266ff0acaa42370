//! Metrics as Prometheus reads them: families of samples encoded in the text exposition
//! format 0.0.4, or in OpenMetrics 1.0.0 when the scraper asks for it (`Accept:
//! application/openmetrics-text`), and the text format read back ([`parse_text`], what
//! `lambkin top` reads).
//!
//! The two formats differ where OpenMetrics is stricter: a counter's family is named without
//! `_total` (its sample keeps it), bucket bounds are written canonically (`1.0`, not `1`), and
//! the exposition ends with `# EOF`.

use std::collections::BTreeMap;
use std::fmt::Write as _;

/// The exposition format of a scrape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Prometheus text format 0.0.4.
    Text,
    /// OpenMetrics 1.0.0 text.
    OpenMetrics,
}

impl Format {
    /// The format an `Accept` header asks for: OpenMetrics when it names
    /// `application/openmetrics-text` (with a non-zero quality), the text format otherwise.
    pub fn from_accept(accept: Option<&str>) -> Self {
        let asks = accept.is_some_and(|accept| {
            accept.split(',').any(|range| {
                let mut parts = range.split(';').map(str::trim);
                let media = parts.next().unwrap_or("");
                let refused = parts.any(|p| {
                    p.strip_prefix("q=")
                        .and_then(|q| q.parse::<f64>().ok())
                        .is_some_and(|q| q <= 0.0)
                });
                media.eq_ignore_ascii_case("application/openmetrics-text") && !refused
            })
        });
        if asks {
            Self::OpenMetrics
        } else {
            Self::Text
        }
    }

    /// The `Content-Type` of an exposition in this format.
    pub fn content_type(self) -> &'static str {
        match self {
            Self::Text => "text/plain; version=0.0.4; charset=utf-8",
            Self::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
        }
    }
}

/// What a family measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Self::Counter => "counter",
            Self::Gauge => "gauge",
            Self::Histogram => "histogram",
        }
    }
}

/// One sample's value, of its family's kind.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Counter(f64),
    Gauge(f64),
    /// Cumulative counts per upper bound (ascending, without `+Inf`), the count of every
    /// observation (the `+Inf` bucket) and their sum.
    Histogram {
        buckets: Vec<(f64, u64)>,
        count: u64,
        sum: f64,
    },
}

/// A sample: its labels (name, value) and its value.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub labels: Vec<(&'static str, String)>,
    pub value: Value,
}

/// A metric family. A counter's `name` ends in `_total` (the sample's name in both formats).
#[derive(Debug, Clone, PartialEq)]
pub struct Family {
    pub name: &'static str,
    pub help: &'static str,
    pub kind: Kind,
    pub samples: Vec<Sample>,
}

impl Family {
    pub fn new(name: &'static str, help: &'static str, kind: Kind) -> Self {
        Self {
            name,
            help,
            kind,
            samples: Vec::new(),
        }
    }

    /// Adds a sample; returns the family for chaining.
    pub fn with(mut self, labels: Vec<(&'static str, String)>, value: Value) -> Self {
        self.samples.push(Sample { labels, value });
        self
    }

    pub fn push(&mut self, labels: Vec<(&'static str, String)>, value: Value) {
        self.samples.push(Sample { labels, value });
    }
}

/// `families` in `format`, HELP and TYPE lines first in each.
pub fn encode(families: &[Family], format: Format) -> String {
    let mut out = String::with_capacity(families.len() * 256);
    for family in families {
        let declared = match (format, family.kind) {
            (Format::OpenMetrics, Kind::Counter) => {
                family.name.strip_suffix("_total").unwrap_or(family.name)
            }
            _ => family.name,
        };
        let _ = writeln!(out, "# HELP {declared} {}", escape_help(family.help));
        let _ = writeln!(out, "# TYPE {declared} {}", family.kind.as_str());
        for sample in &family.samples {
            match &sample.value {
                Value::Counter(v) => line(&mut out, family.name, &sample.labels, None, &number(*v)),
                Value::Gauge(v) => line(&mut out, family.name, &sample.labels, None, &number(*v)),
                Value::Histogram {
                    buckets,
                    count,
                    sum,
                } => {
                    let bucket = format!("{}_bucket", family.name);
                    for (bound, cumulative) in buckets {
                        let le = bound_label(*bound);
                        line(
                            &mut out,
                            &bucket,
                            &sample.labels,
                            Some(&le),
                            &cumulative.to_string(),
                        );
                    }
                    line(
                        &mut out,
                        &bucket,
                        &sample.labels,
                        Some("+Inf"),
                        &count.to_string(),
                    );
                    line(
                        &mut out,
                        &format!("{}_count", family.name),
                        &sample.labels,
                        None,
                        &count.to_string(),
                    );
                    line(
                        &mut out,
                        &format!("{}_sum", family.name),
                        &sample.labels,
                        None,
                        &number(*sum),
                    );
                }
            }
        }
    }
    if format == Format::OpenMetrics {
        out.push_str("# EOF\n");
    }
    out
}

fn line(out: &mut String, name: &str, labels: &[(&str, String)], le: Option<&str>, value: &str) {
    out.push_str(name);
    if !labels.is_empty() || le.is_some() {
        out.push('{');
        let mut first = true;
        for (k, v) in labels
            .iter()
            .map(|(k, v)| (*k, v.as_str()))
            .chain(le.map(|le| ("le", le)))
        {
            if !first {
                out.push(',');
            }
            first = false;
            out.push_str(k);
            out.push_str("=\"");
            escape_label_into(out, v);
            out.push('"');
        }
        out.push('}');
    }
    out.push(' ');
    out.push_str(value);
    out.push('\n');
}

/// A label value as both formats write it: `\`, `"` and newlines escaped.
fn escape_label_into(out: &mut String, value: &str) {
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// HELP text: `\` and newlines escaped.
fn escape_help(help: &str) -> String {
    help.replace('\\', "\\\\").replace('\n', "\\n")
}

/// A sample value: integers without a fraction, `NaN`, `+Inf`, `-Inf`.
fn number(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else {
        format!("{v}")
    }
}

/// A bucket bound, canonically (`0.005`, `1.0`), as OpenMetrics requires of `le`.
fn bound_label(v: f64) -> String {
    if v.is_infinite() {
        "+Inf".into()
    } else {
        format!("{v:?}")
    }
}

/// A sample read back from the text format.
#[derive(Debug, Clone, PartialEq)]
pub struct ParsedSample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

impl ParsedSample {
    pub fn label(&self, name: &str) -> Option<&str> {
        self.labels.get(name).map(String::as_str)
    }
}

/// A line of an exposition that is not a sample, comment or blank line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line} is not a metric sample: {text}")]
pub struct ParseError {
    pub line: usize,
    pub text: String,
}

/// The samples of an exposition in the text format (or OpenMetrics); comments are skipped.
pub fn parse_text(text: &str) -> Result<Vec<ParsedSample>, ParseError> {
    let mut samples = Vec::new();
    for (n, raw) in text.lines().enumerate() {
        let raw = raw.trim();
        if raw.is_empty() || raw.starts_with('#') {
            continue;
        }
        let bad = || ParseError {
            line: n + 1,
            text: raw.chars().take(200).collect(),
        };
        samples.push(parse_sample(raw).ok_or_else(bad)?);
    }
    Ok(samples)
}

fn parse_sample(line: &str) -> Option<ParsedSample> {
    let name_end = line.find(|c: char| c == '{' || c.is_whitespace())?;
    let name = &line[..name_end];
    if name.is_empty() {
        return None;
    }
    let mut rest = &line[name_end..];
    let mut labels = BTreeMap::new();
    if let Some(after) = rest.strip_prefix('{') {
        let mut chars = after.char_indices().peekable();
        loop {
            while chars.peek().is_some_and(|(_, c)| *c == ',' || *c == ' ') {
                chars.next();
            }
            let (start, c) = *chars.peek()?;
            if c == '}' {
                rest = &after[start + 1..];
                break;
            }
            let eq = after[start..].find('=')? + start;
            let key = after[start..eq].trim().to_owned();
            while chars.peek().is_some_and(|(i, _)| *i <= eq) {
                chars.next();
            }
            if chars.next()?.1 != '"' {
                return None;
            }
            let mut value = String::new();
            loop {
                match chars.next()?.1 {
                    '"' => break,
                    '\\' => match chars.next()?.1 {
                        'n' => value.push('\n'),
                        c => value.push(c),
                    },
                    c => value.push(c),
                }
            }
            labels.insert(key, value);
        }
    }
    let value = rest.split_whitespace().next()?;
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        "NaN" => f64::NAN,
        v => v.parse().ok()?,
    };
    Some(ParsedSample {
        name: name.to_owned(),
        labels,
        value,
    })
}

/// The value below which `q` (0..=1) of a histogram's observations fall, interpolated
/// linearly within the bucket it lands in, as PromQL's `histogram_quantile` does. `buckets`:
/// (upper bound, cumulative count), ascending, `+Inf` last. `None` without observations.
pub fn quantile(q: f64, buckets: &[(f64, f64)]) -> Option<f64> {
    let total = buckets.last()?.1;
    if total <= 0.0 {
        return None;
    }
    let rank = q * total;
    let mut lower = (0.0, 0.0);
    for &(bound, cumulative) in buckets {
        if cumulative >= rank {
            if bound.is_infinite() {
                // Past the last finite bound: the best answer is that bound.
                return Some(lower.0);
            }
            let within = cumulative - lower.1;
            if within <= 0.0 {
                return Some(bound);
            }
            return Some(lower.0 + (bound - lower.0) * (rank - lower.1) / within);
        }
        lower = (bound, cumulative);
    }
    Some(lower.0)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn families() -> Vec<Family> {
        vec![
            Family::new(
                "lambkin_invocations_total",
                "Invocations by outcome.",
                Kind::Counter,
            )
            .with(
                vec![
                    ("function", "f\"q\\x\ny".into()),
                    ("outcome", "success".into()),
                ],
                Value::Counter(3.0),
            ),
            Family::new("lambkin_up", "Whether\nit is up.", Kind::Gauge)
                .with(vec![], Value::Gauge(1.0)),
            Family::new("lambkin_d_seconds", "Durations.", Kind::Histogram).with(
                vec![("function", "f".into())],
                Value::Histogram {
                    buckets: vec![(0.005, 1), (1.0, 2)],
                    count: 3,
                    sum: 7.5,
                },
            ),
        ]
    }

    #[test]
    fn text_format_names_counters_with_total_and_escapes() {
        let text = encode(&families(), Format::Text);
        assert!(text.contains("# TYPE lambkin_invocations_total counter\n"));
        assert!(text.contains(
            "lambkin_invocations_total{function=\"f\\\"q\\\\x\\ny\",outcome=\"success\"} 3\n"
        ));
        assert!(text.contains("# HELP lambkin_up Whether\\nit is up.\n"));
        assert!(text.contains("lambkin_d_seconds_bucket{function=\"f\",le=\"0.005\"} 1\n"));
        assert!(text.contains("lambkin_d_seconds_bucket{function=\"f\",le=\"1.0\"} 2\n"));
        assert!(text.contains("lambkin_d_seconds_bucket{function=\"f\",le=\"+Inf\"} 3\n"));
        assert!(text.contains("lambkin_d_seconds_sum{function=\"f\"} 7.5\n"));
        assert!(!text.contains("# EOF"));
    }

    #[test]
    fn openmetrics_names_counter_families_without_total_and_ends_with_eof() {
        let text = encode(&families(), Format::OpenMetrics);
        assert!(text.contains("# TYPE lambkin_invocations counter\n"));
        assert!(text.contains("lambkin_invocations_total{"));
        assert!(text.ends_with("# EOF\n"));
    }

    #[test]
    fn parses_what_it_encodes() {
        let samples = parse_text(&encode(&families(), Format::Text)).unwrap();
        let first = &samples[0];
        assert_eq!(first.name, "lambkin_invocations_total");
        assert_eq!(first.label("function"), Some("f\"q\\x\ny"));
        assert_eq!(first.value, 3.0);
        let inf = samples
            .iter()
            .find(|s| s.label("le") == Some("+Inf"))
            .unwrap();
        assert_eq!(inf.value, 3.0);
        assert!(parse_text("bad line {").is_err());
    }

    #[test]
    fn accept_header_picks_the_format() {
        assert_eq!(Format::from_accept(None), Format::Text);
        assert_eq!(Format::from_accept(Some("text/plain")), Format::Text);
        assert_eq!(
            Format::from_accept(Some(
                "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"
            )),
            Format::OpenMetrics
        );
        assert_eq!(
            Format::from_accept(Some("application/openmetrics-text;q=0")),
            Format::Text
        );
    }

    proptest::proptest! {
        /// Whatever a label value holds (quotes, backslashes, newlines, braces, commas,
        /// any Unicode), the text format carries it and the parser reads it back.
        #[test]
        fn any_label_value_survives_encoding(value in "(?s).{0,40}", n in 0u32..1_000_000) {
            let family = Family::new("lambkin_x_total", "x", Kind::Counter)
                .with(vec![("component", value.clone())], Value::Counter(f64::from(n)));
            for format in [Format::Text, Format::OpenMetrics] {
                let samples = parse_text(&encode(std::slice::from_ref(&family), format)).unwrap();
                proptest::prop_assert_eq!(samples.len(), 1);
                proptest::prop_assert_eq!(samples[0].label("component"), Some(value.as_str()));
                proptest::prop_assert_eq!(samples[0].value, f64::from(n));
            }
        }

        /// The parser returns, never panics, on any text.
        #[test]
        fn any_text_is_parsed_or_refused(text in "(?s).{0,200}") {
            let _ = parse_text(&text);
        }
    }

    #[test]
    fn quantiles_interpolate_within_a_bucket() {
        let buckets = [(0.1, 50.0), (0.2, 100.0), (f64::INFINITY, 100.0)];
        assert_eq!(quantile(0.5, &buckets), Some(0.1));
        let p75 = quantile(0.75, &buckets).unwrap();
        assert!((p75 - 0.15).abs() < 1e-9);
        assert_eq!(quantile(0.5, &[(f64::INFINITY, 0.0)]), None);
    }
}
