//! The metrics text parser (`lambkin_proto::metrics::parse_text`, what `lambkin top` reads
//! `/metrics` with) on the committed corpus in `tests/corpus/metrics/` (which the
//! `metrics_text` fuzz target grows): `ok-*` files parse, `bad-*` files are refused naming a
//! line, and nothing panics.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

use lambkin_proto::metrics::{parse_text, quantile};

fn corpus() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus/metrics");
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    entries
}

#[test]
fn the_corpus_parses_as_its_names_say() {
    let entries = corpus();
    assert!(entries.len() >= 7, "corpus shrank to {}", entries.len());
    for path in entries {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let bytes = std::fs::read(&path).unwrap();
        let Ok(text) = std::str::from_utf8(&bytes) else {
            assert!(!name.starts_with("ok-"), "{name} is not UTF-8");
            continue;
        };
        let parsed = parse_text(text);
        if name.starts_with("ok-") {
            let samples = parsed.unwrap_or_else(|e| panic!("{name}: {e}"));
            assert!(!samples.is_empty(), "{name}");
        } else if name.starts_with("bad-") {
            let e = parsed.expect_err(&name);
            assert!(e.line >= 1, "{name}: {e}");
        }
    }
}

#[test]
fn a_scrape_of_the_host_reads_back() {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus/metrics/ok-host-text-0.0.4.txt");
    let samples = parse_text(&std::fs::read_to_string(path).unwrap()).unwrap();
    let value = |name: &str, outcome: &str| {
        samples
            .iter()
            .find(|s| s.name == name && s.label("outcome") == Some(outcome))
            .map(|s| s.value)
    };
    assert_eq!(
        value("lambkin_function_invocations_total", "success"),
        Some(3.0)
    );
    let buckets: Vec<(f64, f64)> = samples
        .iter()
        .filter(|s| s.name == "lambkin_function_duration_seconds_bucket")
        .map(|s| {
            let le = s.label("le").unwrap();
            let le = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().unwrap()
            };
            (le, s.value)
        })
        .collect();
    let p50 = quantile(0.5, &buckets).unwrap();
    assert!(p50 > 0.0 && p50 <= 0.0005, "{p50}");
}

#[test]
fn escaped_label_values_read_back_as_written() {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus/metrics/ok-escaped-labels.txt");
    let samples = parse_text(&std::fs::read_to_string(path).unwrap()).unwrap();
    assert_eq!(samples[0].label("component"), Some("a\"b\\c\nd"));
    assert_eq!(samples[1].label("outcome"), Some("x,y}"));
    assert_eq!(samples[1].value, 2000.0);
    assert!(samples[2].value.is_nan());
    assert_eq!(samples[3].value, f64::INFINITY);
}
