//! Wall-clock formatting without a calendar dependency: ISO 8601 in UTC, as AWS prints it.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use lambkin_proto::calendar::civil_from_days;

fn since_epoch(t: SystemTime) -> Duration {
    t.duration_since(UNIX_EPOCH).unwrap_or_default()
}

/// `2026-11-22T03:57:00.123Z`
pub fn iso8601_millis(t: SystemTime) -> String {
    let d = since_epoch(t);
    let secs = d.as_secs() as i64;
    let (y, mo, da) = civil_from_days(secs.div_euclid(86_400));
    let rem = secs.rem_euclid(86_400);
    format!(
        "{y:04}-{mo:02}-{da:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60,
        d.subsec_millis()
    )
}

/// `2026-11-22T03:57:00.123+0000`, the form of Lambda's `LastModified`.
pub fn lambda_last_modified(t: SystemTime) -> String {
    let mut s = iso8601_millis(t);
    s.pop();
    s.push_str("+0000");
    s
}

/// `2026/11/22`, the date prefix of a Lambda log stream name.
pub fn log_stream_date(t: SystemTime) -> String {
    let (y, mo, da) = civil_from_days((since_epoch(t).as_secs() / 86_400) as i64);
    format!("{y:04}/{mo:02}/{da:02}")
}

pub fn epoch_millis(t: SystemTime) -> u64 {
    since_epoch(t).as_millis() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_known_instants() {
        let t = UNIX_EPOCH + Duration::from_millis(1_542_409_706_888);
        assert_eq!(iso8601_millis(t), "2018-11-16T23:08:26.888Z");
        assert_eq!(lambda_last_modified(t), "2018-11-16T23:08:26.888+0000");
        assert_eq!(log_stream_date(t), "2018/11/16");
        assert_eq!(iso8601_millis(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        // A leap day.
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400);
        assert_eq!(iso8601_millis(leap), "2000-02-29T00:00:00.000Z");
    }
}
