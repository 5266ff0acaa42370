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

#[derive(Debug, Clone, Copy)]
pub struct Report {
    pub duration: Duration,
    pub memory_size_mb: u32,
    pub max_memory_used_mb: u64,
    pub init_duration: Option<Duration>,
    pub timed_out: bool,
}

/// The END and REPORT lines of an invocation, one after the other (`\n` between, none at the
/// end), appended to `out`: written once per invocation, with no text made in between.
pub fn push_end_lines(out: &mut String, request_id: &str, r: &Report) {
    use std::fmt::Write;
    let billed = report_durations(r).1;
    out.reserve(2 * request_id.len() + 128);
    out.push_str("END RequestId: ");
    out.push_str(request_id);
    out.push_str("\nREPORT RequestId: ");
    out.push_str(request_id);
    out.push_str("\tDuration: ");
    push_millis_2dp(out, r.duration);
    // Writing to a String cannot fail.
    let _ = write!(
        out,
        " ms\tBilled Duration: {billed} ms\tMemory Size: {} MB\tMax Memory Used: {} MB",
        r.memory_size_mb, r.max_memory_used_mb
    );
    if let Some(init) = r.init_duration {
        out.push_str("\tInit Duration: ");
        push_millis_2dp(out, init);
        out.push_str(" ms");
    }
    if r.timed_out {
        out.push_str("\tStatus: timeout");
    }
}

/// `d` in milliseconds with two decimals, rounded half up as [`millis_2dp`] and `{:.2}` print
/// it, in integer arithmetic.
fn push_millis_2dp(out: &mut String, d: Duration) {
    use std::fmt::Write;
    let hundredths = d.as_micros().saturating_add(5) / 10;
    let _ = write!(out, "{}.{:02}", hundredths / 100, hundredths % 100);
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

/// Reads a process's peak resident memory (`VmHWM` of `/proc/PID/status`), once per
/// invocation, from files kept open.
///
/// The status file is costly to read (the kernel formats some fifty fields for it), so it is
/// read again only when the peak may have moved: a process's resident set grows only by page
/// faults, which its fault counters (`/proc/PID/stat`, a few numbers) count, including those
/// of a peak reached and released within one invocation. Growth no fault of its own counts
/// (another process writing into its memory, the kernel merging its pages into huge ones) is
/// caught by a full reading at least every [`MemoryProbe::RECHECK`].
#[derive(Debug)]
pub struct MemoryProbe {
    status: std::fs::File,
    stat: std::fs::File,
    /// The fault count and peak at the last full reading, and when it was taken.
    seen: Option<(u64, u64, std::time::Instant)>,
}

impl MemoryProbe {
    /// The longest a peak is reused while the fault counters stand still.
    pub const RECHECK: Duration = Duration::from_secs(1);

    pub fn open(pid: u32) -> Option<Self> {
        let open = |name: &str| std::fs::File::open(format!("/proc/{pid}/{name}")).ok();
        Some(Self {
            status: open("status")?,
            stat: open("stat")?,
            seen: None,
        })
    }

    /// Peak RSS in MB, 0 once the process is gone.
    pub fn peak_mb(&mut self) -> u64 {
        let now = std::time::Instant::now();
        let faults = read_at_start(&self.stat, &mut [0u8; 1024]).and_then(parse_faults);
        if let (Some(faults), Some((seen_faults, peak, at))) = (faults, self.seen) {
            if faults == seen_faults && now.duration_since(at) < Self::RECHECK {
                return peak;
            }
        }
        // `VmHWM` sits in the first kilobyte or so.
        let peak = read_at_start(&self.status, &mut [0u8; 4096]).map_or(0, parse_vm_hwm_mb);
        self.seen = faults.map(|f| (f, peak, now));
        peak
    }
}

/// The start of a `/proc` file kept open (one `pread`), `None` once its process is gone.
fn read_at_start<'b>(file: &std::fs::File, buf: &'b mut [u8]) -> Option<&'b [u8]> {
    use std::os::unix::fs::FileExt;
    let n = file.read_at(buf, 0).ok().filter(|n| *n > 0)?;
    Some(&buf[..n])
}

/// Minor plus major faults of a `/proc/PID/stat` text (fields 10 and 12, counted after the
/// command name's closing parenthesis, as the name itself may hold spaces and parentheses).
fn parse_faults(stat: &[u8]) -> Option<u64> {
    let after = stat.iter().rposition(|b| *b == b')')?;
    let mut fields = stat[after + 1..]
        .split(|b| *b == b' ')
        .filter(|f| !f.is_empty());
    // After the name: state, ppid, pgrp, session, tty_nr, tpgid, flags, minflt, cminflt, majflt.
    let number = |f: &[u8]| {
        f.iter().try_fold(0u64, |n, b| {
            let digit = b.checked_sub(b'0').filter(|d| *d < 10)?;
            n.checked_mul(10)?.checked_add(u64::from(digit))
        })
    };
    let minor = number(fields.nth(7)?)?;
    let major = number(fields.nth(1)?)?;
    minor.checked_add(major)
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
        let mut lines = String::new();
        push_end_lines(
            &mut lines,
            "id",
            &Report {
                duration: Duration::from_micros(1500),
                memory_size_mb: 128,
                max_memory_used_mb: 20,
                init_duration: Some(Duration::from_millis(30)),
                timed_out: false,
            },
        );
        assert_eq!(lines, "END RequestId: id\nREPORT RequestId: id\tDuration: 1.50 ms\tBilled Duration: 2 ms\tMemory Size: 128 MB\tMax Memory Used: 20 MB\tInit Duration: 30.00 ms");
        let mut lines = String::new();
        push_end_lines(
            &mut lines,
            "id",
            &Report {
                duration: Duration::from_micros(2_999_995),
                memory_size_mb: 128,
                max_memory_used_mb: 20,
                init_duration: None,
                timed_out: true,
            },
        );
        assert!(
            lines.ends_with("\tDuration: 3000.00 ms\tBilled Duration: 3000 ms\tMemory Size: 128 MB\tMax Memory Used: 20 MB\tStatus: timeout"),
            "{lines}"
        );
    }

    proptest::proptest! {
        /// The integer formatting prints what the float rounding and `{:.2}` print.
        #[test]
        fn durations_print_as_rounded_millis(micros in 0u64..10_000_000_000) {
            let d = Duration::from_micros(micros);
            let mut text = String::new();
            push_millis_2dp(&mut text, d);
            proptest::prop_assert_eq!(text, format!("{:.2}", millis_2dp(d)));
        }
    }

    #[test]
    fn a_peak_reached_and_released_between_readings_is_reported() {
        let mut probe = MemoryProbe::open(std::process::id()).unwrap();
        let before = probe.peak_mb();
        assert!(before > 0);
        // Touched, then given back to the system (an allocation this large is its own
        // mapping): the resident set is back down before the next reading, its peak is not.
        let size = (before as usize + 256) << 20;
        let mut block = vec![0u8; size];
        for page in block.chunks_mut(4096) {
            page[0] = 1;
        }
        std::hint::black_box(&block);
        drop(block);
        let after = probe.peak_mb();
        assert!(
            after >= before + 200,
            "peak {after} MB after touching {} MB from {before} MB",
            size >> 20
        );
    }

    #[test]
    fn fault_counts_are_read_past_any_command_name() {
        let stat = b"42 (a) b) (c) S 1 42 42 0 -1 4194560 1234 99 5 7 0 0";
        assert_eq!(parse_faults(stat), Some(1239));
        assert_eq!(parse_faults(b"42 (x) S 1 42"), None);
        assert_eq!(parse_faults(b""), None);
        assert_eq!(
            parse_faults(b"42 (x) S 1 42 42 0 -1 4194560 12a4 99 5"),
            None
        );
        assert_eq!(
            parse_faults(b"42 (x) S 1 42 42 0 -1 4194560 99999999999999999999 0 0"),
            None
        );
        let own = std::fs::read(format!("/proc/{}/stat", std::process::id())).unwrap();
        assert!(parse_faults(&own).unwrap() > 0);
    }

    #[test]
    fn peak_memory_of_this_process_is_known() {
        let mut probe = MemoryProbe::open(std::process::id()).unwrap();
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
