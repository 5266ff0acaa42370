//! The results table (markdown) and the notes under it.

use std::fmt::Write;
use std::time::Duration;

use crate::client::{Latency, Throughput};
use crate::lambkin::Cold;
use crate::Plan;

/// Host overhead over the floor, p50, at most this (µs).
const TARGET_OVERHEAD_US: f64 = 100.0;
/// Lambkin's invocations/s at least this many times the emulator's.
const TARGET_THROUGHPUT_RATIO: f64 = 2.5;
/// Idle host RSS below this (MB, 10^6 bytes).
const TARGET_IDLE_RSS_MB: f64 = 10.0;
/// Signing (the client's signature and the host's verification) adds at most this to the
/// warm p50 (µs).
const TARGET_SIGNING_P50_US: f64 = 10.0;
/// Signing costs at most this share of the invocations/s at the highest concurrency (%).
const TARGET_SIGNING_LOSS_PCT: f64 = 5.0;

#[derive(Debug)]
pub struct RieThroughput {
    pub throughput: Throughput,
    /// The emulator exited during (or because of) this run.
    pub crashed: bool,
    /// A fresh emulator was started for this level because an earlier level brought it down.
    pub restarted: bool,
}

#[derive(Debug)]
pub struct Level {
    pub concurrency: usize,
    pub floor: Throughput,
    pub lambkin: Throughput,
    /// `Err` holds what the table says instead (unavailable, failed to start, ...).
    pub rie: Result<RieThroughput, String>,
}

#[derive(Debug)]
pub struct RieRss {
    /// The emulator's own process, warm, after the latency run.
    pub idle_kib: u64,
    /// After the last throughput level it survived: (concurrency, KiB).
    pub loaded_kib: Option<(usize, u64)>,
    /// The runtime process the emulator started.
    pub runtime_kib: u64,
}

#[derive(Debug)]
pub struct Results {
    pub plan: Plan,
    pub floor_latency: Latency,
    pub lambkin_latency: Latency,
    /// REPORT `Duration` of the warm sequential invokes (ms): event handed over → answer.
    pub function_durations_ms: Vec<f64>,
    /// The same function on tokio's multi-thread runtime, sequential.
    pub lambkin_mt_latency: Latency,
    /// A second host with `colocate_sequential = false`.
    pub colocation_off: Colocation,
    /// Signing's cost, from two more hosts.
    pub signing: Signing,
    pub rie_latency: Result<Latency, String>,
    pub levels: Vec<Level>,
    pub cold: Vec<Cold>,
    pub rie_cold: Result<Vec<Duration>, String>,
    pub host_rss_idle_kib: u64,
    pub host_rss_loaded_kib: u64,
    /// Instances after the last level: (processes, RSS sum in KiB).
    pub instances: (usize, u64),
    pub floor_rss_idle_kib: u64,
    pub floor_rss_loaded_kib: u64,
    pub rie_rss: Result<RieRss, String>,
    pub rie_version: Option<String>,
    pub loadavg_start: String,
    pub loadavg_end: String,
}

/// The same function on a host that leaves CPU placement to the kernel.
#[derive(Debug)]
pub struct Colocation {
    pub latency: Latency,
    pub c1: Throughput,
}

/// Signing's rows: a signed host and a signing-off one (called unsigned and signed), what
/// signing costs (signed − unsigned) against the targets, and that cost split into the
/// host's verifying (signed host − signing-off host, both called signed) and the client's
/// signing (signing-off host called signed − unsigned).
fn signing_rows(r: &Results, t: &mut Table, notes: &mut Vec<String>) {
    let s = &r.signing;
    let floor_p50 = us(r.floor_latency.p50);
    let [on, off, off_signed] = s.latency.each_ref().map(|l| us(l.p50));
    t.row([
        "Signing: warm latency p50, signed host / signing off / signing off called signed (µs)",
        &format!("{floor_p50:.0}"),
        &format!("{on:.0} / {off:.0} / {off_signed:.0}"),
        DASH,
        &format!("{:.1}× floor", on / floor_p50),
        "",
        "",
    ]);
    let (cost, host_cost) = (on - off, on - off_signed);
    t.row([
        "… signing's cost, p50: signed − unsigned (µs)",
        DASH,
        &format!("{cost:.0}"),
        DASH,
        "",
        &format!("≤ {TARGET_SIGNING_P50_US:.0}"),
        &yes_no(cost <= TARGET_SIGNING_P50_US),
    ]);
    t.row([
        "… of it, the host's verifying: signed − signing off, both called signed (µs)",
        DASH,
        &format!("{host_cost:.0}"),
        DASH,
        "",
        &format!("≤ {TARGET_SIGNING_P50_US:.0} (host alone)"),
        &yes_no(host_cost <= TARGET_SIGNING_P50_US),
    ]);
    t.row([
        "… of it, the client's signing: signing off called signed − unsigned (µs)",
        DASH,
        &format!("{:.0}", off_signed - off),
        DASH,
        "",
        "",
        "",
    ]);
    t.row([
        "… the client's time to sign one request, timed alone, p50 (µs)",
        DASH,
        &format!("{:.1}", us(s.client_signing)),
        DASH,
        "",
        "",
        "",
    ]);
    let last_c = r.levels.last().map_or(0, |l| l.concurrency);
    let mut cpu_cells = Vec::new();
    for [on, off, off_signed] in &s.levels {
        let c = on.concurrency;
        let floor = r
            .levels
            .iter()
            .find(|l| l.concurrency == c)
            .map_or_else(|| DASH.to_owned(), |l| grouped(l.floor.per_second()));
        let rates = [on, off, off_signed].map(Throughput::per_second);
        t.row([
            &format!(
                "Signing: invocations/s, concurrency {c}, signed host / signing off / signing off called signed"
            ),
            &floor,
            &rates.map(grouped).join(" / "),
            DASH,
            "",
            "",
            "",
        ]);
        let [on_rate, off_rate, off_signed_rate] = rates;
        // Shares of the unsigned rate, so the host's and the client's parts add up.
        let lost = |from: f64, to: f64| {
            if off_rate > 0.0 {
                (from - to) / off_rate * 100.0
            } else {
                f64::NAN
            }
        };
        let all = lost(off_rate, on_rate);
        let host = lost(off_signed_rate, on_rate);
        let client = lost(off_rate, off_signed_rate);
        let last = c == last_c;
        let target = |what: &str| {
            if last {
                format!("≤ {TARGET_SIGNING_LOSS_PCT:.0} %{what}")
            } else {
                String::new()
            }
        };
        let met = |loss: f64| {
            if last {
                yes_no(loss <= TARGET_SIGNING_LOSS_PCT)
            } else {
                String::new()
            }
        };
        t.row([
            &format!("… invocations/s lost to signing at concurrency {c} (%)"),
            DASH,
            &format!("{all:.1}"),
            DASH,
            "",
            &target(""),
            &met(all),
        ]);
        t.row([
            &format!(
                "… of it, the host's verifying / the client's signing (% of the unsigned rate, c={c})"
            ),
            DASH,
            &format!("{host:.1} / {client:.1}"),
            DASH,
            "",
            &target(" (host alone)"),
            &met(host),
        ]);
        let own = |t: &Throughput| t.cpu_per_invoke_us().map(|(own, _)| own);
        cpu_cells.push(match (own(on), own(off_signed)) {
            (Some(on), Some(off)) => format!("{:.0}", on - off),
            _ => "n/a".to_owned(),
        });
        for (what, run) in [
            ("signed host", on),
            ("signing off", off),
            ("signing off called signed", off_signed),
        ] {
            if let Some(e) = &run.first_error {
                notes.push(format!(
                    "Signing, {what}, concurrency {c}, first error: {e}"
                ));
            }
        }
    }
    let levels = s
        .levels
        .iter()
        .map(|[on, ..]| on.concurrency.to_string())
        .collect::<Vec<_>>()
        .join(" / ");
    t.row([
        &format!(
            "… host CPU per invocation, verifying: signed − signing off, both called signed, c={levels} (µs)"
        ),
        DASH,
        &cpu_cells.join(" / "),
        DASH,
        "",
        "",
        "",
    ]);
    let errors = s
        .levels
        .iter()
        .map(|runs| {
            runs.iter()
                .map(|t| t.errors.to_string())
                .collect::<Vec<_>>()
                .join(" / ")
        })
        .collect::<Vec<_>>()
        .join("; ");
    t.row([
        &format!(
            "Signing: errors at concurrency {levels} (each: signed / off / off called signed)"
        ),
        DASH,
        &errors,
        DASH,
        "",
        "",
        "",
    ]);
}

/// Signing's cost: a host as it comes (signed) and one with `[api] auth = "none"`, started side
/// by side with the same function and nothing else, the latter called unsigned and signed
/// (which it does not check); their runs take turns.
#[derive(Debug)]
pub struct Signing {
    /// Sequential: signed host, signing-off host, signing-off host called signed.
    pub latency: [Latency; 3],
    /// The same three at the first and the last concurrency level.
    pub levels: Vec<[Throughput; 3]>,
    /// The client's time to sign one invoke request, p50.
    pub client_signing: Duration,
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

#[allow(clippy::cast_precision_loss)]
fn mb(kib: u64) -> f64 {
    kib as f64 * 1024.0 / 1e6
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    match values.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => values[n / 2],
        n => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

/// `12345.6` → `12,346`.
fn grouped(value: f64) -> String {
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let n = value.max(0.0).round() as u64;
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn yes_no(met: bool) -> String {
    if met { "yes" } else { "**no**" }.to_owned()
}

const DASH: &str = "—";

struct Table {
    rows: Vec<[String; 7]>,
}

impl Table {
    fn row(&mut self, cells: [&str; 7]) {
        self.rows.push(cells.map(str::to_owned));
    }

    fn render(&self) -> String {
        let header = [
            "Metric",
            "Floor (echo)",
            "Lambkin",
            "RIE",
            "Lambkin ratio",
            "Target",
            "Met",
        ];
        markdown_table(
            header,
            [false, true, true, true, true, false, false],
            &self.rows,
        )
    }
}

/// A markdown table with aligned columns; `right` marks the right-aligned ones.
pub fn markdown_table<const N: usize>(
    header: [&str; N],
    right: [bool; N],
    rows: &[[String; N]],
) -> String {
    let mut widths = header.map(|h| h.chars().count());
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: &[String]| {
        let mut s = String::from("|");
        for ((cell, w), r) in cells.iter().zip(widths).zip(right) {
            let pad = " ".repeat(w.saturating_sub(cell.chars().count()));
            if r {
                let _ = write!(s, " {pad}{cell} |");
            } else {
                let _ = write!(s, " {cell}{pad} |");
            }
        }
        s
    };
    let mut out = line(&header.map(str::to_owned));
    out.push('\n');
    let mut sep = String::from("|");
    for (w, r) in widths.iter().zip(right) {
        let dashes = "-".repeat(w.saturating_sub(1));
        if r {
            let _ = write!(sep, " {dashes}: |");
        } else {
            let _ = write!(sep, " {dashes}- |");
        }
    }
    out.push_str(&sep);
    for row in rows {
        out.push('\n');
        out.push_str(&line(row));
    }
    out
}

fn rie_or<T>(value: &Result<T, String>, f: impl Fn(&T) -> String) -> String {
    match value {
        Ok(v) => f(v),
        Err(why) => short(why),
    }
}

/// A table cell says why in a few words; the notes carry the whole message.
fn short(why: &str) -> String {
    why.split(':').next().unwrap_or(why).trim().to_owned()
}

pub fn render(r: &Results) -> String {
    let mut t = Table { rows: Vec::new() };
    let mut notes: Vec<String> = Vec::new();
    let floor_p50 = us(r.floor_latency.p50);

    // Latency.
    for (label, pick) in [
        ("Warm latency p50, sequential (µs)", 0),
        ("Warm latency p99, sequential (µs)", 1),
    ] {
        let get = |l: &Latency| us(if pick == 0 { l.p50 } else { l.p99 });
        let f = get(&r.floor_latency);
        let l = get(&r.lambkin_latency);
        t.row([
            label,
            &format!("{f:.0}"),
            &format!("{l:.0}"),
            &rie_or(&r.rie_latency, |x| format!("{:.0}", get(x))),
            &format!("{:.1}× floor", l / f),
            "",
            "",
        ]);
    }
    let overhead = us(r.lambkin_latency.p50) - floor_p50;
    t.row([
        "Host overhead over the floor, p50 (µs)",
        DASH,
        &format!("{overhead:.0}"),
        &rie_or(&r.rie_latency, |x| format!("{:.0}", us(x.p50) - floor_p50)),
        "",
        &format!("≤ {TARGET_OVERHEAD_US:.0}"),
        &yes_no(overhead <= TARGET_OVERHEAD_US),
    ]);
    let inside_us = median(&mut r.function_durations_ms.clone()) * 1000.0;
    t.row([
        "… of which inside the function: REPORT Duration, p50 (µs)",
        DASH,
        &format!("{inside_us:.0}"),
        DASH,
        "",
        "",
        "",
    ]);
    t.row([
        "… the host's own part: overhead − Duration p50 (µs)",
        DASH,
        &format!("{:.0}", overhead - inside_us),
        DASH,
        "",
        "",
        "",
    ]);
    let mt = us(r.lambkin_mt_latency.p50);
    t.row([
        "Warm latency p50, the function on tokio's multi-thread runtime (µs)",
        &format!("{floor_p50:.0}"),
        &format!("{mt:.0}"),
        DASH,
        &format!("{:.1}× floor", mt / floor_p50),
        "",
        "",
    ]);

    // Throughput.
    let rie_c1 = r.levels.first().and_then(|l| match &l.rie {
        Ok(x) if !x.crashed && x.throughput.errors == 0 && x.throughput.ok > 0 => {
            Some(x.throughput.per_second())
        }
        _ => None,
    });
    let off = &r.colocation_off;
    let off_p50 = us(off.latency.p50);
    t.row([
        "Warm latency p50, host with co-location off (µs)",
        &format!("{floor_p50:.0}"),
        &format!("{off_p50:.0}"),
        DASH,
        &format!("{:.1}× floor", off_p50 / floor_p50),
        "",
        "",
    ]);
    t.row([
        "… its overhead over the floor, p50 (µs)",
        DASH,
        &format!("{:.0}", off_p50 - floor_p50),
        DASH,
        "",
        "",
        "",
    ]);
    let off_c1 = off.c1.per_second();
    t.row([
        "Invocations/s, concurrency 1, host with co-location off",
        &r.levels
            .first()
            .map_or_else(|| DASH.to_owned(), |l| grouped(l.floor.per_second())),
        &grouped(off_c1),
        DASH,
        &rie_c1.map_or_else(
            || DASH.to_owned(),
            |rie| format!("{:.2}× RIE", off_c1 / rie),
        ),
        "",
        "",
    ]);
    let mut serial_reference = false;
    for level in &r.levels {
        let c = level.concurrency;
        let lambkin = level.lambkin.per_second();
        let rie_cell = rie_or(&level.rie, |x| {
            let mut cell = grouped(x.throughput.per_second());
            if x.crashed {
                let _ = write!(cell, " (crashed, {} errors)", x.throughput.errors);
            } else if x.throughput.errors > 0 {
                let _ = write!(cell, " ({} errors)", x.throughput.errors);
            }
            cell
        });
        let clean_rie = match &level.rie {
            Ok(x) if !x.crashed && x.throughput.errors == 0 && x.throughput.ok > 0 => {
                Some(x.throughput.per_second())
            }
            _ => None,
        };
        let (ratio, met) = match (clean_rie, rie_c1) {
            (Some(rie), _) => (
                format!("{:.2}× RIE", lambkin / rie),
                yes_no(lambkin / rie >= TARGET_THROUGHPUT_RATIO),
            ),
            (None, Some(rie)) => {
                serial_reference = true;
                (
                    format!("{:.2}× RIE c=1 *", lambkin / rie),
                    yes_no(lambkin / rie >= TARGET_THROUGHPUT_RATIO),
                )
            }
            (None, None) => (DASH.to_owned(), DASH.to_owned()),
        };
        t.row([
            &format!("Invocations/s, concurrency {c}"),
            &grouped(level.floor.per_second()),
            &grouped(lambkin),
            &rie_cell,
            &ratio,
            &format!("≥ {TARGET_THROUGHPUT_RATIO}× RIE"),
            &met,
        ]);
        if let Some(e) = &level.lambkin.first_error {
            notes.push(format!("Lambkin, concurrency {c}, first error: {e}"));
        }
        if let Some(e) = &level.floor.first_error {
            notes.push(format!("Floor, concurrency {c}, first error: {e}"));
        }
        if let Ok(x) = &level.rie {
            if let Some(e) = &x.throughput.first_error {
                notes.push(format!("RIE, concurrency {c}, first error: {e}"));
            }
            if x.crashed {
                notes.push(format!(
                    "RIE exited during the concurrency-{c} run (it serves one invoke at a time \
                     and does not survive concurrent ones)."
                ));
            }
            if x.restarted {
                notes.push(format!("RIE was restarted before the concurrency-{c} run."));
            }
        }
    }
    let errors = |pick: &dyn Fn(&Level) -> Option<u64>| {
        r.levels
            .iter()
            .map(|l| pick(l).map_or_else(|| DASH.to_owned(), |e| e.to_string()))
            .collect::<Vec<_>>()
            .join(" / ")
    };
    let levels_label = r
        .levels
        .iter()
        .map(|l| l.concurrency.to_string())
        .collect::<Vec<_>>()
        .join(" / ");
    t.row([
        &format!("Errors at concurrency {levels_label}"),
        &errors(&|l| Some(l.floor.errors)),
        &errors(&|l| Some(l.lambkin.errors)),
        &errors(&|l| l.rie.as_ref().ok().map(|x| x.throughput.errors)),
        "",
        "",
        "",
    ]);

    signing_rows(r, &mut t, &mut notes);

    // CPU per invocation, from /proc/PID/stat over each whole throughput run.
    let cpu_cell = |t: &Throughput, with_children: bool| match t.cpu_per_invoke_us() {
        Some((own, children)) if with_children => format!("{own:.0} / {children:.0}"),
        Some((own, _)) => format!("{own:.0} / {DASH}"),
        None => "n/a".to_owned(),
    };
    let cpu_levels: Vec<&Level> = match (r.levels.first(), r.levels.last()) {
        (Some(first), Some(last)) if first.concurrency != last.concurrency => vec![first, last],
        (Some(first), _) => vec![first],
        _ => Vec::new(),
    };
    for level in cpu_levels {
        t.row([
            &format!(
                "CPU per invocation at concurrency {}: server / function processes (µs)",
                level.concurrency
            ),
            &cpu_cell(&level.floor, false),
            &cpu_cell(&level.lambkin, true),
            &rie_or(&level.rie, |x| {
                if x.crashed {
                    "n/a (crashed)".to_owned()
                } else {
                    cpu_cell(&x.throughput, true)
                }
            }),
            "",
            "",
            "",
        ]);
    }

    // Cold start.
    let reps = r.cold.len();
    let mut totals: Vec<f64> = r.cold.iter().map(|c| ms(c.total)).collect();
    let mut inits: Vec<f64> = r.cold.iter().map(|c| c.init_ms).collect();
    let warm_ms = ms(r.lambkin_latency.p50);
    let mut host_parts: Vec<f64> = r
        .cold
        .iter()
        .map(|c| ms(c.total) - c.init_ms - warm_ms)
        .collect();
    t.row([
        &format!("Cold start: first invoke, total (ms, median of {reps})"),
        DASH,
        &format!("{:.2}", median(&mut totals)),
        &rie_or(&r.rie_cold, |v| {
            let mut v: Vec<f64> = v.iter().copied().map(ms).collect();
            format!("{:.2}", median(&mut v))
        }),
        "",
        "",
        "",
    ]);
    t.row([
        "Cold start: runtime init, Init Duration (ms, median)",
        DASH,
        &format!("{:.2}", median(&mut inits)),
        DASH,
        "",
        "",
        "",
    ]);
    t.row([
        "Cold start: host overhead = total − init − warm p50 (ms, median)",
        DASH,
        &format!("{:.2}", median(&mut host_parts)),
        DASH,
        "",
        "",
        "",
    ]);

    // Memory.
    let idle = mb(r.host_rss_idle_kib);
    t.row([
        "RSS idle, function created, no instance (MB)",
        &format!("{:.1}", mb(r.floor_rss_idle_kib)),
        &format!("{idle:.1}"),
        &rie_or(&r.rie_rss, |x| format!("{:.1}", mb(x.idle_kib))),
        "",
        &format!("< {TARGET_IDLE_RSS_MB:.0}"),
        &yes_no(idle < TARGET_IDLE_RSS_MB),
    ]);
    let last_c = r.levels.last().map_or(0, |l| l.concurrency);
    t.row([
        &format!("RSS after the concurrency-{last_c} run (MB)"),
        &format!("{:.1}", mb(r.floor_rss_loaded_kib)),
        &format!("{:.1}", mb(r.host_rss_loaded_kib)),
        &rie_or(&r.rie_rss, |x| match x.loaded_kib {
            Some((c, kib)) if c == last_c => format!("{:.1}", mb(kib)),
            Some((c, kib)) => format!("{:.1} (after c={c})", mb(kib)),
            None => "n/a (crashed)".to_owned(),
        }),
        "",
        "",
        "",
    ]);
    t.row([
        "Function processes: count, RSS sum (MB)",
        DASH,
        &format!("{}, {:.1}", r.instances.0, mb(r.instances.1)),
        &rie_or(&r.rie_rss, |x| format!("1, {:.1}", mb(x.runtime_kib))),
        "",
        "",
        "",
    ]);

    for (name, latency) in [
        ("Floor", Ok(&r.floor_latency)),
        ("Lambkin", Ok(&r.lambkin_latency)),
        ("Lambkin (multi-thread function)", Ok(&r.lambkin_mt_latency)),
        ("Lambkin (co-location off)", Ok(&r.colocation_off.latency)),
        ("Lambkin (signing: signed host)", Ok(&r.signing.latency[0])),
        ("Lambkin (signing off)", Ok(&r.signing.latency[1])),
        (
            "Lambkin (signing off, called signed)",
            Ok(&r.signing.latency[2]),
        ),
        ("RIE", r.rie_latency.as_ref()),
    ] {
        if let Ok(l) = latency {
            if l.errors > 0 {
                notes.push(format!(
                    "{name}: {} errors during the sequential latency run",
                    l.errors
                ));
            }
        }
    }
    let p = &r.plan;
    let mut out = t.render();
    out.push_str("\n\n");
    let _ = writeln!(
        out,
        "- Run: {}; payload {} bytes of JSON; latency over {} sequential invokes after {} warm-up \
         ones, one keep-alive connection; throughput {:?} per level after {:?} of warm-up, one \
         keep-alive connection per worker; cold starts: {} (first invoke after create, then \
         after each configuration update), RIE: first invoke on a fresh emulator.",
        if p.quick { "quick" } else { "full" },
        p.payload_len,
        p.latency_count,
        p.latency_warmup,
        p.duration,
        p.warmup,
        p.cold_reps
    );
    let _ = writeln!(
        out,
        "- Lambkin's function: on demand, up to 64 instances; its RSS row is the host process \
         alone, the function processes are counted apart. MB = 10^6 bytes of VmRSS."
    );
    let _ = writeln!(
        out,
        "- The echo function (`tests/functions/rust-fixture`) runs on tokio's current-thread \
         runtime, as every row but the multi-thread one: an instance gets one event at a time. \
         REPORT `Duration` runs from handing the event to the runtime to its answer (both \
         loopback transfers and the function's own work), in the log's 10 µs steps."
    );
    let _ = writeln!(
        out,
        "- Co-location: while one instance is busy at a time and its invocations are short \
         (under 1 ms), the host pins its thread and that instance to one CPU, so each \
         hand-over is a switch on that CPU instead of a wake-up of an idle one (`[lambda] \
         colocate_sequential`, on by default). The co-location-off rows come from a second \
         host with it off, the same function and client, in the same run; its concurrency-1 \
         run has {} errors.",
        off.c1.errors
    );
    let _ = writeln!(
        out,
        "- Signing: every request to a Lambkin host carries a Signature Version 4 made by the \
         client per request at the current time over the payload's hash (`lambkin-proto`'s \
         `sign_request`, i.e. `aws-sigv4`, as the AWS SDKs sign), and the host verifies it \
         before the invoke. The signing rows come from two more hosts started side by side and \
         given the same function and nothing else: one as it comes (signed), one with `[api] \
         auth = \"none\"`, called by the same client unsigned and signed (a host in \
         development mode takes a signature without checking it). Their runs take turns: 20 in \
         the sequential run, 4 of a quarter of the window each in the throughput runs at the \
         first and last concurrency (later turns warm up for 0.2 s). Signed − signing off, \
         both called signed, is the host's verifying; signing off called signed − unsigned is \
         the client's signing (client and hosts share this machine's CPUs). The client's time \
         to sign one request is also timed alone (p50 of 2,000, caches warm)."
    );
    if serial_reference {
        let _ = writeln!(
            out,
            "- * RIE has no clean result at this concurrency; the ratio is against its \
             concurrency-1 rate, the most it serves."
        );
    }
    let _ = writeln!(
        out,
        "- CPU per invocation: user + system time of the server process and of its child \
         processes over the whole throughput run (warm-up included), divided by the invokes \
         it served; the client's own CPU is not counted."
    );
    let _ = writeln!(
        out,
        "- Machine load (/proc/loadavg) at the start: {}; at the end: {} (the bench itself \
         keeps both cores busy during the throughput runs; other work on the machine shows up \
         in every column).",
        r.loadavg_start, r.loadavg_end
    );
    if let Some(v) = &r.rie_version {
        let _ = writeln!(out, "- RIE: {v}.");
    }
    for (what, value) in [("latency", r.rie_latency.as_ref().err())]
        .into_iter()
        .chain([("cold start", r.rie_cold.as_ref().err())])
    {
        if let Some(why) = value {
            let _ = writeln!(out, "- RIE {what}: {why}.");
        }
    }
    for note in notes {
        let _ = writeln!(out, "- {note}");
    }
    out.trim_end().to_owned()
}

#[cfg(test)]
mod tests {
    use super::{grouped, median};

    #[test]
    fn groups_thousands() {
        assert_eq!(grouped(0.4), "0");
        assert_eq!(grouped(999.0), "999");
        assert_eq!(grouped(1234.0), "1,234");
        assert_eq!(grouped(1_234_567.0), "1,234,567");
    }

    #[test]
    fn medians() {
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&mut [4.0, 1.0, 2.0, 3.0]), 2.5);
    }
}
