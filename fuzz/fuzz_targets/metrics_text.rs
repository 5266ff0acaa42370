//! The metrics text parser (what `lambkin top` reads `/metrics` with) on arbitrary text: it
//! must not panic, a refusal names a line of the input, and every sample it reads, written
//! back with the encoder, reads back the same.

#![no_main]

use lambkin_proto::metrics::{encode, parse_text, quantile, Family, Format, Kind, Value};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match parse_text(text) {
        Err(e) => assert!(e.line >= 1 && e.line <= text.lines().count()),
        Ok(samples) => {
            let mut buckets: Vec<(f64, f64)> = Vec::new();
            for sample in &samples {
                buckets.push((sample.value, sample.value));
                // A value the encoder writes under a fixed name and label reads back.
                let Some((_, label)) = sample.labels.iter().next() else {
                    continue;
                };
                let family = Family::new("fuzz", "fuzz", Kind::Gauge)
                    .with(vec![("l", label.clone())], Value::Gauge(sample.value));
                let again = parse_text(&encode(&[family], Format::Text)).expect("own encoding");
                assert_eq!(again.len(), 1);
                assert_eq!(again[0].label("l"), Some(label.as_str()));
                assert!(
                    again[0].value == sample.value
                        || (again[0].value.is_nan() && sample.value.is_nan())
                );
            }
            let _ = quantile(0.5, &buckets);
        }
    }
});
