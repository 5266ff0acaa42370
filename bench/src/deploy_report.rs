//! The deployment benchmark's samples and its markdown table.

use std::path::PathBuf;
use std::time::Duration;

/// The generic components' steps (run with `sh -c`, by Lambkin and by the baseline alike).
pub const INSTALL: &str = "true";
pub const RUN: &str = "echo started; exec sleep 3600";

/// The interpreter the Lambda components run with, and how it was chosen.
#[derive(Debug, Clone)]
pub struct Python {
    /// The executable the baseline runs (the one Lambkin runs, too).
    pub interpreter: PathBuf,
    /// The recipes' `AWS_GREENGRASS_LAMBDA_RUNTIME`, `python3.MINOR`.
    pub runtime: String,
    /// `python --version`.
    pub version: String,
    /// Whether Lambkin was told to use it (`--python`), rather than finding it itself.
    pub configured: bool,
}

/// Target: `lambkin deploy` to every component RUNNING.
const DEPLOY_TARGET: Duration = Duration::from_secs(2);
/// Target: a restart to every component RUNNING, beyond the components' own start time.
const RESTART_TARGET: Duration = Duration::from_secs(1);

/// The components started directly by the bench, without Lambkin.
#[derive(Debug, Clone, Copy)]
pub struct Baseline {
    /// Until every Run is started and every handler imported.
    pub total: Duration,
    /// The Install scripts run and the Run scripts spawned, one component after the other.
    pub generic: Duration,
    /// Every Python handler import done (they run side by side).
    pub python: Duration,
}

/// `lambkin deploy`, timed from the command's start.
#[derive(Debug, Clone, Copy)]
pub struct DeploySample {
    pub exit: Duration,
    /// The first `lambkin list` with every component RUNNING.
    pub all_running: Duration,
    /// Every pinned function's process has imported its handler.
    pub handlers: Duration,
    /// Components in that list (ours and the built-in ones).
    pub listed: usize,
    /// Live processes under the host once everything ran.
    pub host_processes: usize,
    pub phases: Option<Phases>,
}

/// When the generic components came up, from their logs, in ms since the measurement's start.
#[derive(Debug, Clone, Copy)]
pub struct Phases {
    /// The first generic component INSTALLED (its Install step done).
    pub first_installed_ms: f64,
    /// The last generic component RUNNING.
    pub last_running_ms: f64,
}

/// The host stopped with SIGTERM.
#[derive(Debug, Clone, Copy, Default)]
pub struct Stopped {
    /// From the signal to the exit.
    pub took: Duration,
    /// Processes the host had started that were still alive after it exited.
    pub left: usize,
    /// Whether it needed SIGKILL.
    pub killed: bool,
    pub clean_exit: bool,
}

/// `lambkin run` again on the same root, timed from its spawn.
#[derive(Debug, Clone, Copy)]
pub struct RestartSample {
    /// `ROOT/state/api.addr` written (the host is ready).
    pub addr: Duration,
    pub all_running: Duration,
    pub handlers: Duration,
    pub phases: Option<Phases>,
}

#[derive(Debug, Clone, Copy)]
pub struct Rep {
    pub baseline: Baseline,
    pub deploy: DeploySample,
    /// The SIGTERM before the restart.
    pub stop: Stopped,
    pub restart: RestartSample,
    /// The SIGTERM at the end of the repetition.
    pub final_stop: Stopped,
}

#[derive(Debug)]
pub struct Report {
    pub generic: usize,
    pub lambdas: usize,
    pub python: Python,
    pub reps: Vec<Rep>,
    pub loadavg_start: String,
    pub loadavg_end: String,
    pub kept: Option<PathBuf>,
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    match values.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => values[n / 2],
        n => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

/// `1234.5` → `1,235`.
fn grouped(value: f64) -> String {
    let negative = value < 0.0;
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let n = value.abs().round() as u64;
    let digits = n.to_string();
    let mut out = String::new();
    if negative && n > 0 {
        out.push('−');
    }
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

/// One timed quantity over the repetitions.
struct Series(Vec<f64>);

impl Series {
    fn of(reps: &[Rep], f: impl Fn(&Rep) -> Duration) -> Self {
        Self(reps.iter().map(|r| ms(f(r))).collect())
    }

    /// A quantity read for every repetition, or `None` if one of them lacks it.
    fn read(reps: &[Rep], f: impl Fn(&Rep) -> Option<f64>) -> Option<Self> {
        reps.iter().map(f).collect::<Option<Vec<f64>>>().map(Self)
    }

    fn median(&self) -> f64 {
        median(&mut self.0.clone())
    }

    fn samples(&self) -> String {
        self.0
            .iter()
            .map(|v| grouped(*v))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

struct Table {
    rows: Vec<[String; 7]>,
}

impl Table {
    /// A Lambkin row read against the baseline, with an optional target on it.
    fn compared(&mut self, metric: &str, base: f64, lambkin: f64, target: &str, met: Option<bool>) {
        self.rows.push([
            metric.to_owned(),
            grouped(base),
            grouped(lambkin),
            grouped(lambkin - base),
            format!("{:.2}×", lambkin / base),
            target.to_owned(),
            met.map(yes_no).unwrap_or_default(),
        ]);
    }

    fn plain(&mut self, metric: &str, base: Option<f64>, lambkin: Option<f64>) {
        let cell = |v: Option<f64>| v.map_or_else(|| DASH.to_owned(), grouped);
        self.rows.push([
            metric.to_owned(),
            cell(base),
            cell(lambkin),
            String::new(),
            String::new(),
            String::new(),
            String::new(),
        ]);
    }

    fn render(&self) -> String {
        let header = [
            "Metric (ms, median)",
            "Baseline (direct)",
            "Lambkin",
            "Lambkin − baseline",
            "Ratio",
            "Target",
            "Met",
        ];
        crate::report::markdown_table(
            header,
            [false, true, true, true, true, false, false],
            &self.rows,
        )
    }
}

pub fn render(r: &Report) -> String {
    let reps = &r.reps;
    let base = Series::of(reps, |x| x.baseline.total);
    let base_generic = Series::of(reps, |x| x.baseline.generic);
    let base_python = Series::of(reps, |x| x.baseline.python);
    let deploy_exit = Series::of(reps, |x| x.deploy.exit);
    let deploy_running = Series::of(reps, |x| x.deploy.all_running);
    let deploy_handlers = Series::of(reps, |x| x.deploy.handlers);
    let stop = Series::of(reps, |x| x.stop.took);
    let restart_addr = Series::of(reps, |x| x.restart.addr);
    let restart_running = Series::of(reps, |x| x.restart.all_running);
    let restart_handlers = Series::of(reps, |x| x.restart.handlers);
    let listed = reps.first().map_or(0, |x| x.deploy.listed);
    let components = r.generic + r.lambdas;
    let b = base.median();
    let deploy_target = ms(DEPLOY_TARGET);
    let restart_target = ms(RESTART_TARGET);

    let mut t = Table { rows: Vec::new() };
    t.compared(
        "Deploy: `lambkin deploy` start to its exit",
        b,
        deploy_exit.median(),
        "",
        None,
    );
    t.compared(
        &format!("Deploy: start to all {listed} RUNNING in `lambkin list`"),
        b,
        deploy_running.median(),
        &format!("< {}", grouped(deploy_target)),
        Some(deploy_running.median() < deploy_target),
    );
    if r.lambdas > 0 {
        t.compared(
            &format!(
                "Deploy: start to all {} Lambda handlers imported",
                r.lambdas
            ),
            b,
            deploy_handlers.median(),
            &format!("< {}", grouped(deploy_target)),
            Some(deploy_handlers.median() < deploy_target),
        );
    }
    t.plain(
        "Restart: SIGTERM to the host's exit",
        None,
        Some(stop.median()),
    );
    t.plain(
        "Restart: `lambkin run` to the API up (`api.addr`)",
        None,
        Some(restart_addr.median()),
    );
    t.compared(
        &format!("Restart: `lambkin run` to all {listed} RUNNING"),
        b,
        restart_running.median(),
        &format!("≤ baseline + {}", grouped(restart_target)),
        Some(restart_running.median() - b <= restart_target),
    );
    if r.lambdas > 0 {
        t.compared(
            &format!(
                "Restart: `lambkin run` to all {} Lambda handlers imported",
                r.lambdas
            ),
            b,
            restart_handlers.median(),
            &format!("≤ baseline + {}", grouped(restart_target)),
            Some(restart_handlers.median() - b <= restart_target),
        );
    }
    if r.generic > 0 && r.lambdas > 0 {
        t.plain(
            &format!(
                "Baseline part: {} Install + Run scripts, one after another",
                r.generic
            ),
            Some(base_generic.median()),
            None,
        );
        t.plain(
            &format!(
                "Baseline part: {} Python handler imports, side by side",
                r.lambdas
            ),
            Some(base_python.median()),
            None,
        );
    }

    let mut out = t.render();
    out.push_str("\n\n");
    let mut note = |line: String| {
        out.push_str("- ");
        out.push_str(&line);
        out.push('\n');
    };
    note(format!(
        "Run: {} repetitions, each on a fresh root: the baseline, `lambkin run`, `lambkin deploy` \
         of all {components} components in one deployment, a restart (SIGTERM, wait for the \
         exit, `lambkin run` again), the host stopped; medians.",
        reps.len()
    ));
    note(format!(
        "Components: {} generic (Install `{INSTALL}`, Run `{RUN}`, both `sh -c`) and {} pinned \
         Lambda components (`aws.greengrass.lambda` recipes, runtime `{}`, a one-function handler \
         module in `lambda-artifact.zip`, no Digest); `lambkin list` holds {listed} (with the \
         built-in ones), all RUNNING.",
        r.generic, r.lambdas, r.python.runtime
    ));
    note(format!(
        "Python: {} ({}){}.",
        r.python.interpreter.display(),
        r.python.version,
        if r.python.configured {
            ", given to Lambkin as `[lambda] python`"
        } else {
            ", the one Lambkin picks itself from PATH"
        }
    ));
    note(format!(
        "Baseline: the bench spawns the {} Python processes (`python -c 'import lambda_function'` \
         in the module's directory), then runs each Install to its end and spawns its Run, one \
         component after the other; done when every Run is spawned and every import has \
         completed. A handler counts as imported when its module has dropped a marker file (the \
         same module under Lambkin).",
        r.lambdas
    ));
    note(format!(
        "Samples (ms): deploy to all RUNNING {}; deploy to handlers imported {}; restart to all \
         RUNNING {}; restart to handlers imported {}; baseline {}.",
        deploy_running.samples(),
        deploy_handlers.samples(),
        restart_running.samples(),
        restart_handlers.samples(),
        base.samples()
    ));
    let phase = |f: fn(&Rep) -> Option<Phases>| {
        let first = Series::read(reps, |x| f(x).map(|p| p.first_installed_ms))?;
        let chain = Series::read(reps, |x| {
            f(x).map(|p| p.last_running_ms - p.first_installed_ms)
        })?;
        let last = Series::read(reps, |x| f(x).map(|p| p.last_running_ms))?;
        Some((first.median(), chain.median(), last))
    };
    let each = |chain: f64| {
        #[allow(clippy::cast_precision_loss)]
        let n = r.generic.saturating_sub(1).max(1) as f64;
        chain / n
    };
    if let Some((first, chain, last)) = phase(|x| x.deploy.phases) {
        let to_exit = Series(
            reps.iter()
                .zip(&last.0)
                .map(|(x, last)| ms(x.deploy.exit) - last)
                .collect(),
        );
        note(format!(
            "Where the deployment's time goes (medians, from the generic components' `state:` \
             log lines, ms timestamps): {} ms from the start to the first generic component \
             INSTALLED (the command, the recipes, the artifacts, and the Lambda components, first \
             in the start order by name), {} ms from there to the last of the {} generic \
             components RUNNING (they depend on nothing, so they start side by side: one every \
             {:.1} ms), {} ms from the last RUNNING to the command's exit.",
            grouped(first),
            grouped(chain),
            r.generic,
            each(chain),
            grouped(to_exit.median())
        ));
    }
    if let Some((first, chain, last)) = phase(|x| x.restart.phases) {
        let to_addr = Series(
            reps.iter()
                .zip(&last.0)
                .map(|(x, last)| ms(x.restart.addr) - last)
                .collect(),
        );
        note(format!(
            "Where the restart's time goes (medians, the same way): {} ms from `lambkin run` to \
             the first generic component INSTALLED, {} ms for the {} generic components ({:.1} ms \
             each), {} ms from the last RUNNING to `api.addr` (the host starts its components \
             before it serves).",
            grouped(first),
            grouped(chain),
            r.generic,
            each(chain),
            grouped(to_addr.median())
        ));
    }
    let host_processes: Vec<String> = reps
        .iter()
        .map(|x| x.deploy.host_processes.to_string())
        .collect();
    note(format!(
        "Processes under the host after the deployment: {}.",
        host_processes.join(", ")
    ));
    let stops = reps.iter().flat_map(|x| [x.stop, x.final_stop]);
    let (mut unclean, mut killed, mut left) = (0, 0, 0);
    for s in stops {
        unclean += usize::from(!s.clean_exit);
        killed += usize::from(s.killed);
        left += s.left;
    }
    note(format!(
        "Host stops: {} with SIGTERM; {unclean} not exiting 0, {killed} needing SIGKILL, {left} \
         processes left behind in all.",
        reps.len() * 2
    ));
    note(format!(
        "Machine load (/proc/loadavg) at the start: {}; at the end: {}.",
        r.loadavg_start, r.loadavg_end
    ));
    if let Some(dir) = &r.kept {
        note(format!("Work directory kept: {}", dir.display()));
    }
    out.truncate(out.trim_end().len());
    out
}
