//! A function's log frame: START/END/REPORT lines as AWS Lambda prints them (`interface.md`,
//! "Function logs"), and the per-invocation tail for `X-Amz-Log-Type: Tail`. The file itself
//! is a [`crate::logfile::LogFile`].

use std::time::Duration;

use base64::Engine;

use lambkin_proto::lambda::invoke::LOG_TAIL_BYTES;

/// The log of the invocation in progress, kept to its last [`LOG_TAIL_BYTES`].
#[derive(Debug, Default)]
pub struct LogTail {
    buf: Vec<u8>,
}

impl LogTail {
    pub fn push_line(&mut self, line: &[u8]) {
        self.buf.extend_from_slice(line);
        self.buf.push(b'\n');
        if self.buf.len() > 2 * LOG_TAIL_BYTES {
            let cut = self.buf.len() - LOG_TAIL_BYTES;
            self.buf.drain(..cut);
        }
    }

    pub fn into_base64(self) -> String {
        let start = self.buf.len().saturating_sub(LOG_TAIL_BYTES);
        base64::engine::general_purpose::STANDARD.encode(&self.buf[start..])
    }
}

pub fn start_line(request_id: &str, version: &str) -> String {
    format!("START RequestId: {request_id} Version: {version}")
}

pub fn end_line(request_id: &str) -> String {
    format!("END RequestId: {request_id}")
}

#[derive(Debug, Clone, Copy)]
pub struct Report {
    pub duration: Duration,
    pub memory_size_mb: u32,
    pub max_memory_used_mb: u64,
    pub init_duration: Option<Duration>,
    pub timed_out: bool,
}

pub fn report_line(request_id: &str, r: &Report) -> String {
    let (ms, billed) = report_durations(r);
    let mut line = format!(
        "REPORT RequestId: {request_id}\tDuration: {ms:.2} ms\tBilled Duration: {billed} ms\tMemory Size: {} MB\tMax Memory Used: {} MB",
        r.memory_size_mb, r.max_memory_used_mb
    );
    if let Some(init) = r.init_duration {
        line.push_str(&format!("\tInit Duration: {:.2} ms", millis_2dp(init)));
    }
    if r.timed_out {
        line.push_str("\tStatus: timeout");
    }
    line
}

/// A duration in milliseconds as the REPORT line prints it (two decimals).
pub fn millis_2dp(d: Duration) -> f64 {
    (d.as_micros() as f64 / 10.0).round() / 100.0
}

/// The REPORT line's `Duration` and `Billed Duration`, in milliseconds.
pub fn report_durations(r: &Report) -> (f64, u64) {
    let billed = (r.duration.as_micros().div_ceil(1000)).max(1) as u64;
    (millis_2dp(r.duration), billed)
}

/// Reads a process's peak resident memory (`VmHWM` of `/proc/PID/status`) with one `pread`
/// of a file kept open: this runs once per invocation.
#[derive(Debug)]
pub struct MemoryProbe {
    status: std::fs::File,
}

impl MemoryProbe {
    pub fn open(pid: u32) -> Option<Self> {
        std::fs::File::open(format!("/proc/{pid}/status"))
            .ok()
            .map(|status| Self { status })
    }

    /// Peak RSS in MB, 0 once the process is gone.
    pub fn peak_mb(&self) -> u64 {
        use std::os::unix::fs::FileExt;
        // `VmHWM` sits in the first kilobyte or so.
        let mut buf = [0u8; 4096];
        match self.status.read_at(&mut buf, 0) {
            Ok(n) => parse_vm_hwm_mb(&buf[..n]),
            Err(_) => 0,
        }
    }
}

/// `VmHWM` of a `/proc/PID/status` text, in MB rounded up (0 if absent); on bytes, with no
/// copy: it runs once per invocation.
fn parse_vm_hwm_mb(status: &[u8]) -> u64 {
    const KEY: &[u8] = b"\nVmHWM:";
    let Some(at) = status.windows(KEY.len()).position(|w| w == KEY) else {
        return 0;
    };
    status[at + KEY.len()..]
        .iter()
        .take_while(|b| **b != b'\n')
        .skip_while(|b| !b.is_ascii_digit())
        .take_while(|b| b.is_ascii_digit())
        .try_fold(0u64, |kb, b| {
            kb.checked_mul(10)?.checked_add(u64::from(b - b'0'))
        })
        .map_or(0, |kb| kb.div_ceil(1024))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_keeps_the_last_4_kb() {
        let mut tail = LogTail::default();
        for i in 0..1000 {
            tail.push_line(format!("line {i}").as_bytes());
        }
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(tail.into_base64())
            .unwrap();
        assert_eq!(decoded.len(), LOG_TAIL_BYTES);
        assert!(decoded.ends_with(b"line 999\n"));
    }

    #[test]
    fn report_has_every_field() {
        let line = report_line(
            "id",
            &Report {
                duration: Duration::from_micros(1500),
                memory_size_mb: 128,
                max_memory_used_mb: 20,
                init_duration: Some(Duration::from_millis(30)),
                timed_out: false,
            },
        );
        assert_eq!(line, "REPORT RequestId: id\tDuration: 1.50 ms\tBilled Duration: 2 ms\tMemory Size: 128 MB\tMax Memory Used: 20 MB\tInit Duration: 30.00 ms");
    }

    #[test]
    fn peak_memory_of_this_process_is_known() {
        let probe = MemoryProbe::open(std::process::id()).unwrap();
        assert!(probe.peak_mb() > 0);
        assert_eq!(parse_vm_hwm_mb(b"Name:\tx\nVmHWM:\t   2049 kB\n"), 3);
        assert_eq!(
            parse_vm_hwm_mb(b"Name:\tx\nVmHWM:\t   1024 kB\nVmRSS:\t 9 kB\n"),
            1
        );
        assert_eq!(parse_vm_hwm_mb(b"Name:\tx\nVmPeak:\t 5000 kB\n"), 0);
        assert_eq!(
            parse_vm_hwm_mb(b"Name:\tx\nVmHWM:\t kB\nVmRSS:\t 9000 kB\n"),
            0
        );
        assert_eq!(parse_vm_hwm_mb(b""), 0);
    }
}
