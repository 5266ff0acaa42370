//! Wall-clock formatting without a calendar dependency: ISO 8601 in UTC, as AWS prints it.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use lambkin_proto::calendar::civil_from_days;

fn since_epoch(t: SystemTime) -> Duration {
    t.duration_since(UNIX_EPOCH).unwrap_or_default()
}

/// `2026-11-22T03:57:00.123Z`
pub fn iso8601_millis(t: SystemTime) -> String {
    String::from_utf8_lossy(&iso8601_millis_bytes(t)).into_owned()
}

/// [`iso8601_millis`] as bytes on the stack: every log line is stamped with it.
pub fn iso8601_millis_bytes(t: SystemTime) -> [u8; 24] {
    let d = since_epoch(t);
    let secs = d.as_secs() as i64;
    let (y, mo, da) = civil_from_days(secs.div_euclid(86_400));
    let rem = secs.rem_euclid(86_400);
    let mut out = *b"0000-00-00T00:00:00.000Z";
    let mut put = |at: usize, width: usize, mut value: u64| {
        for i in (at..at + width).rev() {
            out[i] = b'0' + (value % 10) as u8;
            value /= 10;
        }
    };
    put(0, 4, y.clamp(0, 9999) as u64);
    put(5, 2, u64::from(mo));
    put(8, 2, u64::from(da));
    put(11, 2, (rem / 3600) as u64);
    put(14, 2, (rem / 60 % 60) as u64);
    put(17, 2, (rem % 60) as u64);
    put(20, 3, u64::from(d.subsec_millis()));
    out
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
        let late = UNIX_EPOCH + Duration::from_millis(253_402_300_799_999);
        assert_eq!(iso8601_millis(late), "9999-12-31T23:59:59.999Z");
    }
}
