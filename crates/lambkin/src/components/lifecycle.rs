//! The Greengrass component lifecycle as a state machine without I/O
//! (`greengrass-reference.md` §2.2, §2.5): which step runs next, which state the component
//! is in, and when it is BROKEN.
//!
//! NEW --install ok--> INSTALLED --start--> STARTING --startup ok--> RUNNING
//! (a `Run` step enters RUNNING at once and ends in FINISHED on exit 0). A failure or timeout
//! enters ERRORED: `Recover` runs, then the component is stopped and started again (from NEW:
//! installed again). The third ERRORED from the same state within `errorResetTime` makes it
//! BROKEN; a successful report from that state resets its count. BROKEN is left only by a new
//! deployment.

use std::collections::BTreeMap;
use std::fmt;
use std::time::{Duration, Instant};

/// A component's state, as the nucleus names it (serialized as `RUNNING`, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum State {
    New,
    Installed,
    Starting,
    Running,
    Stopping,
    Finished,
    Errored,
    Broken,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::New => "NEW",
            Self::Installed => "INSTALLED",
            Self::Starting => "STARTING",
            Self::Running => "RUNNING",
            Self::Stopping => "STOPPING",
            Self::Finished => "FINISHED",
            Self::Errored => "ERRORED",
            Self::Broken => "BROKEN",
        }
    }
}

impl State {
    /// Up as far as a deployment or a dependent needs: RUNNING, or FINISHED (a `Run` that
    /// exited 0).
    pub fn is_up(self) -> bool {
        matches!(self, Self::Running | Self::Finished)
    }
}

impl From<State> for lambkin_proto::ipc::shapes::components::LifecycleState {
    fn from(state: State) -> Self {
        match state {
            State::New => Self::New,
            State::Installed => Self::Installed,
            State::Starting => Self::Starting,
            State::Running => Self::Running,
            State::Stopping => Self::Stopping,
            State::Finished => Self::Finished,
            State::Errored => Self::Errored,
            State::Broken => Self::Broken,
        }
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Step {
    Install,
    Startup,
    Run,
    Shutdown,
    Recover,
}

/// Which steps the component's lifecycle defines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Steps {
    pub install: bool,
    pub startup: bool,
    pub run: bool,
    pub shutdown: bool,
    pub recover: bool,
}

/// How a step ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Succeeded,
    Failed(String),
    TimedOut,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// Bring the component up (its dependencies are up).
    Start,
    /// Bring it down and keep it down.
    Stop,
    /// Stop, then start again (a restart request, or a HARD dependency restarted).
    Restart,
    StepEnded(Step, Outcome),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    RunStep(Step),
    /// Kill the `Run` process (and anything it started).
    StopRun,
    Entered(State),
}

/// What the component is heading for after the current step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Goal {
    Up,
    Down,
    /// Down, then up again.
    Cycle,
}

#[derive(Debug)]
pub struct Lifecycle {
    state: State,
    steps: Steps,
    goal: Goal,
    /// The step running now, if any (`Run` counts while its process lives).
    running: Option<Step>,
    /// `StopRun` was asked for the live `Run` process.
    run_stop_sent: bool,
    /// `Shutdown` has run during the current stop.
    shutdown_done: bool,
    /// The state an ERRORED came from, while recovering from it.
    errored_from: Option<State>,
    errors: BTreeMap<State, Vec<Instant>>,
    error_reset: Duration,
    /// Installation succeeded: restarts do not install again.
    installed: bool,
}

/// Errors from one state before the component is BROKEN.
const BROKEN_AFTER: usize = 3;

impl Lifecycle {
    pub fn new(steps: Steps, error_reset: Duration) -> Self {
        Self {
            state: State::New,
            steps,
            goal: Goal::Down,
            running: None,
            run_stop_sent: false,
            shutdown_done: false,
            errored_from: None,
            errors: BTreeMap::new(),
            error_reset,
            installed: false,
        }
    }

    #[cfg(test)]
    pub fn state(&self) -> State {
        self.state
    }

    /// Whether a step is in progress.
    pub fn busy(&self) -> bool {
        self.running.is_some()
    }

    pub fn on(&mut self, input: Input, now: Instant) -> Vec<Output> {
        let mut out = Vec::new();
        if self.state == State::Broken {
            if let Input::StepEnded(step, _) = input {
                if self.running == Some(step) {
                    self.running = None;
                }
            }
            return out;
        }
        match input {
            Input::Start => {
                self.goal = Goal::Up;
                if self.running.is_none() {
                    self.advance(now, &mut out);
                }
            }
            Input::Stop | Input::Restart => {
                self.goal = if input == Input::Stop {
                    Goal::Down
                } else {
                    Goal::Cycle
                };
                match self.running {
                    Some(Step::Run) => {
                        self.begin_stop(&mut out);
                        self.continue_stop(now, &mut out);
                    }
                    // The step in progress finishes (or times out) first.
                    Some(_) => {}
                    None => self.advance(now, &mut out),
                }
            }
            Input::StepEnded(step, outcome) => {
                if self.running == Some(step) {
                    self.running = None;
                }
                if step == Step::Run {
                    self.run_stop_sent = false;
                }
                self.step_ended(step, outcome == Outcome::Succeeded, now, &mut out);
            }
        }
        out
    }

    fn enter(&mut self, state: State, out: &mut Vec<Output>) {
        if self.state != state {
            self.state = state;
            out.push(Output::Entered(state));
        }
    }

    fn run(&mut self, step: Step, out: &mut Vec<Output>) {
        self.running = Some(step);
        out.push(Output::RunStep(step));
    }

    fn step_ended(&mut self, step: Step, ok: bool, now: Instant, out: &mut Vec<Output>) {
        match (step, ok) {
            (Step::Install, true) => {
                self.errors.remove(&State::New);
                self.installed = true;
                self.enter(State::Installed, out);
                self.advance(now, out);
            }
            (Step::Install, false) => self.error(State::New, now, out),
            (Step::Startup, true) => {
                self.errors.remove(&State::Starting);
                self.enter(State::Running, out);
                self.advance(now, out);
            }
            (Step::Startup, false) => self.error(State::Starting, now, out),
            // Stopped on purpose: not an error, whatever the exit status.
            (Step::Run, _) if self.state == State::Stopping => self.continue_stop(now, out),
            (Step::Run, true) => {
                self.errors.remove(&State::Running);
                self.enter(State::Finished, out);
                self.advance(now, out);
            }
            (Step::Run, false) => self.error(State::Running, now, out),
            (Step::Shutdown, _) => self.continue_stop(now, out),
            (Step::Recover, _) => {
                if self.errored_from.take() == Some(State::New) {
                    self.enter(State::New, out);
                    self.advance(now, out);
                } else {
                    if self.goal == Goal::Up {
                        self.goal = Goal::Cycle;
                    }
                    self.begin_stop(out);
                    self.continue_stop(now, out);
                }
            }
        }
    }

    fn error(&mut self, from: State, now: Instant, out: &mut Vec<Output>) {
        let window = self.error_reset;
        let times = self.errors.entry(from).or_default();
        times.retain(|t| now.duration_since(*t) < window);
        times.push(now);
        let count = times.len();
        self.enter(State::Errored, out);
        if count >= BROKEN_AFTER {
            self.enter(State::Broken, out);
            if self.running == Some(Step::Run) {
                out.push(Output::StopRun);
            }
            return;
        }
        self.errored_from = Some(from);
        if self.steps.recover {
            self.run(Step::Recover, out);
        } else {
            self.step_ended(Step::Recover, true, now, out);
        }
    }

    fn begin_stop(&mut self, out: &mut Vec<Output>) {
        if self.state != State::Stopping {
            self.shutdown_done = false;
            self.enter(State::Stopping, out);
        }
    }

    /// Stopping: end `Run`, then run `Shutdown` once, then settle by the goal.
    fn continue_stop(&mut self, now: Instant, out: &mut Vec<Output>) {
        if self.running == Some(Step::Run) {
            if !self.run_stop_sent {
                self.run_stop_sent = true;
                out.push(Output::StopRun);
            }
            return;
        }
        if self.running.is_some() {
            return;
        }
        if self.steps.shutdown && !self.shutdown_done {
            self.shutdown_done = true;
            self.run(Step::Shutdown, out);
            return;
        }
        match self.goal {
            Goal::Down => self.enter(State::Finished, out),
            Goal::Up | Goal::Cycle => {
                self.goal = Goal::Up;
                self.enter(State::Installed, out);
                self.advance(now, out);
            }
        }
    }

    /// Takes the next step towards the goal from the current state.
    fn advance(&mut self, now: Instant, out: &mut Vec<Output>) {
        match (self.goal, self.state) {
            (Goal::Up, State::New) => {
                if self.steps.install && !self.installed {
                    self.run(Step::Install, out);
                } else {
                    self.installed = true;
                    self.enter(State::Installed, out);
                    self.advance(now, out);
                }
            }
            (Goal::Up, State::Installed) => {
                self.enter(State::Starting, out);
                if self.steps.startup {
                    self.run(Step::Startup, out);
                } else if self.steps.run {
                    self.enter(State::Running, out);
                    self.run(Step::Run, out);
                } else {
                    self.enter(State::Finished, out);
                }
            }
            (Goal::Down | Goal::Cycle, State::Running | State::Starting | State::Finished) => {
                self.begin_stop(out);
                self.continue_stop(now, out);
            }
            (Goal::Cycle, State::New | State::Installed) => {
                self.goal = Goal::Up;
                self.advance(now, out);
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: Duration = Duration::from_secs(3600);

    fn states(out: &[Output]) -> Vec<State> {
        out.iter()
            .filter_map(|o| match o {
                Output::Entered(s) => Some(*s),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn install_then_startup_reaches_running() {
        let now = Instant::now();
        let steps = Steps {
            install: true,
            startup: true,
            shutdown: true,
            ..Steps::default()
        };
        let mut l = Lifecycle::new(steps, HOUR);
        assert_eq!(
            l.on(Input::Start, now),
            vec![Output::RunStep(Step::Install)]
        );
        let out = l.on(Input::StepEnded(Step::Install, Outcome::Succeeded), now);
        assert_eq!(states(&out), vec![State::Installed, State::Starting]);
        assert!(out.contains(&Output::RunStep(Step::Startup)));
        let out = l.on(Input::StepEnded(Step::Startup, Outcome::Succeeded), now);
        assert_eq!(states(&out), vec![State::Running]);
        // Stop runs Shutdown, then FINISHED.
        let out = l.on(Input::Stop, now);
        assert_eq!(
            out,
            vec![
                Output::Entered(State::Stopping),
                Output::RunStep(Step::Shutdown)
            ]
        );
        let out = l.on(Input::StepEnded(Step::Shutdown, Outcome::Succeeded), now);
        assert_eq!(states(&out), vec![State::Finished]);
    }

    #[test]
    fn run_enters_running_at_once_and_finishes_on_exit_zero() {
        let now = Instant::now();
        let mut l = Lifecycle::new(
            Steps {
                run: true,
                ..Steps::default()
            },
            HOUR,
        );
        let out = l.on(Input::Start, now);
        assert_eq!(
            states(&out),
            vec![State::Installed, State::Starting, State::Running]
        );
        assert_eq!(out.last(), Some(&Output::RunStep(Step::Run)));
        let out = l.on(Input::StepEnded(Step::Run, Outcome::Succeeded), now);
        assert_eq!(states(&out), vec![State::Finished]);
    }

    #[test]
    fn a_crashing_run_is_restarted_then_broken_on_the_third_error() {
        let now = Instant::now();
        let mut l = Lifecycle::new(
            Steps {
                run: true,
                recover: true,
                ..Steps::default()
            },
            HOUR,
        );
        l.on(Input::Start, now);
        for round in 1..=2 {
            let out = l.on(
                Input::StepEnded(Step::Run, Outcome::Failed("exit 1".into())),
                now,
            );
            assert_eq!(out[0], Output::Entered(State::Errored), "round {round}");
            assert_eq!(out[1], Output::RunStep(Step::Recover));
            let out = l.on(Input::StepEnded(Step::Recover, Outcome::Succeeded), now);
            assert!(
                out.contains(&Output::RunStep(Step::Run)),
                "restarted in round {round}: {out:?}"
            );
            assert_eq!(l.state(), State::Running);
        }
        let out = l.on(
            Input::StepEnded(Step::Run, Outcome::Failed("exit 1".into())),
            now,
        );
        assert_eq!(states(&out), vec![State::Errored, State::Broken]);
        assert!(
            l.on(Input::Start, now).is_empty(),
            "BROKEN is not restarted"
        );
        assert_eq!(l.state(), State::Broken);
    }

    #[test]
    fn errors_outside_the_reset_window_do_not_count() {
        let t0 = Instant::now();
        let mut l = Lifecycle::new(
            Steps {
                run: true,
                ..Steps::default()
            },
            Duration::from_secs(10),
        );
        l.on(Input::Start, t0);
        for i in 0..5u64 {
            let t = t0 + Duration::from_secs(6 * i);
            l.on(Input::StepEnded(Step::Run, Outcome::Failed("x".into())), t);
            assert_eq!(l.state(), State::Running, "error {i} restarts");
        }
    }

    #[test]
    fn failed_install_reinstalls_then_breaks() {
        let now = Instant::now();
        let mut l = Lifecycle::new(
            Steps {
                install: true,
                run: true,
                ..Steps::default()
            },
            HOUR,
        );
        l.on(Input::Start, now);
        for _ in 0..2 {
            let out = l.on(
                Input::StepEnded(Step::Install, Outcome::Failed("exit 1".into())),
                now,
            );
            assert_eq!(states(&out), vec![State::Errored, State::New]);
            assert_eq!(out.last(), Some(&Output::RunStep(Step::Install)));
        }
        let out = l.on(Input::StepEnded(Step::Install, Outcome::TimedOut), now);
        assert_eq!(states(&out), vec![State::Errored, State::Broken]);
    }

    #[test]
    fn restart_stops_run_runs_shutdown_and_starts_again_without_installing() {
        let now = Instant::now();
        let steps = Steps {
            install: true,
            run: true,
            shutdown: true,
            ..Steps::default()
        };
        let mut l = Lifecycle::new(steps, HOUR);
        l.on(Input::Start, now);
        l.on(Input::StepEnded(Step::Install, Outcome::Succeeded), now);
        assert_eq!(l.state(), State::Running);
        let out = l.on(Input::Restart, now);
        assert_eq!(out, vec![Output::Entered(State::Stopping), Output::StopRun]);
        // The killed Run is not an error.
        let out = l.on(
            Input::StepEnded(Step::Run, Outcome::Failed("signal: terminated".into())),
            now,
        );
        assert_eq!(out, vec![Output::RunStep(Step::Shutdown)]);
        let out = l.on(Input::StepEnded(Step::Shutdown, Outcome::Succeeded), now);
        assert_eq!(
            states(&out),
            vec![State::Installed, State::Starting, State::Running]
        );
        assert!(!out.contains(&Output::RunStep(Step::Install)));
    }

    #[test]
    fn stop_during_startup_waits_for_it() {
        let now = Instant::now();
        let mut l = Lifecycle::new(
            Steps {
                startup: true,
                ..Steps::default()
            },
            HOUR,
        );
        l.on(Input::Start, now);
        assert!(l.on(Input::Stop, now).is_empty());
        let out = l.on(Input::StepEnded(Step::Startup, Outcome::Succeeded), now);
        assert_eq!(
            states(&out),
            vec![State::Running, State::Stopping, State::Finished]
        );
    }
}
