//! The components' status board and the dependency rules, with one owner: a task that takes
//! the engine's changes and the supervisors' state reports, applies them in order, lets the
//! rules ([`DependencyGraph`]) act on each report, and publishes every new board. Readers
//! (`lambkin list`, IPC, the engine waiting for a component) read the published board; no one
//! else writes it, so there is no lock and no lock order.
//!
//! The engine's own changes are numbered: [`Status::current`] waits until the owner has
//! applied every change the engine sent, so the engine reads its own writes. When both are
//! waiting, the engine's changes go first: a supervisor's first report then always finds the
//! entry the engine made for it.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Serialize;
use tokio::sync::{mpsc, watch};

use super::graph::{DependencyGraph, GraphAction};
use super::lifecycle::State;
use super::supervisor::{StateReport, SupervisorHandle};

/// What `lambkin list` shows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ComponentStatus {
    pub name: String,
    pub version: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub state: State,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// The supervisor whose reports this entry follows (generic components).
    #[serde(skip)]
    pub instance: Option<u64>,
}

/// The board as published: every component's status, and how many of the engine's changes
/// it includes.
#[derive(Debug, Clone, Default)]
pub struct Board {
    pub components: Arc<BTreeMap<String, ComponentStatus>>,
    /// Each component's restarts and errors while this host runs.
    pub counts: Arc<BTreeMap<String, ComponentCounts>>,
    applied: u64,
}

/// How often a component ran again and failed, while this host runs (`/metrics`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ComponentCounts {
    /// Entries into STARTING after it had run (been RUNNING, FINISHED or ERRORED): a restart
    /// goes RUNNING, STOPPING, INSTALLED, STARTING.
    pub restarts: u64,
    /// Failures: entries into ERRORED, and into BROKEN other than from ERRORED (the third
    /// error's BROKEN is that error's, counted once).
    pub errors: u64,
    /// Whether it has run since the host started.
    ran: bool,
}

impl ComponentCounts {
    fn on(&mut self, from: State, to: State) {
        if from == to {
            return;
        }
        match to {
            State::Errored => {
                self.errors += 1;
                self.ran = true;
            }
            State::Broken => {
                if from != State::Errored {
                    self.errors += 1;
                }
                self.ran = true;
            }
            State::Running | State::Finished => self.ran = true,
            State::Starting if self.ran => self.restarts += 1,
            _ => {}
        }
    }
}

impl Board {
    /// Whether `name` is up as a dependency: RUNNING or FINISHED.
    pub fn is_up(&self, name: &str) -> bool {
        self.components.get(name).is_some_and(|s| s.state.is_up())
    }
}

/// A change the engine makes.
#[derive(Debug)]
pub enum Change {
    /// A component's entry, new or replacing the one it had.
    Set(ComponentStatus),
    /// A generic component's supervisor: the entry follows its reports from now on, and it
    /// starts now, or once `hold`'s components are up.
    Supervised {
        name: String,
        handle: Arc<SupervisorHandle>,
        hold: Option<Vec<String>>,
    },
    /// The HARD dependencies of the plan being applied: (component, its HARD dependencies).
    HardDependencies(Vec<(String, Vec<String>)>),
    /// The component left the device.
    Remove(String),
}

/// The board, its rules and the supervisors they act on: what the owner task holds. Sans-I/O
/// apart from telling supervisors to start and restart.
#[derive(Debug, Default)]
struct Owner {
    components: BTreeMap<String, ComponentStatus>,
    rules: DependencyGraph,
    supervisors: BTreeMap<String, Arc<SupervisorHandle>>,
    counts: BTreeMap<String, ComponentCounts>,
}

impl Owner {
    fn change(&mut self, change: Change) {
        match change {
            Change::Set(status) => {
                self.components.insert(status.name.clone(), status);
            }
            Change::Supervised { name, handle, hold } => {
                if let Some(s) = self.components.get_mut(&name) {
                    s.instance = Some(handle.instance());
                }
                self.supervisors.insert(name.clone(), handle.clone());
                match hold {
                    Some(dependencies) => {
                        tracing::warn!(component = %name, ?dependencies, "waiting for its dependencies to come up");
                        let components = &self.components;
                        let actions = self.rules.hold(&name, dependencies, |n| {
                            components.get(n).is_some_and(|s| s.state.is_up())
                        });
                        self.perform(actions);
                    }
                    None => handle.start(),
                }
            }
            Change::HardDependencies(components) => {
                self.rules.set_hard_dependencies(
                    components
                        .iter()
                        .map(|(c, deps)| (c.as_str(), deps.iter().map(String::as_str).collect())),
                );
            }
            Change::Remove(name) => {
                self.components.remove(&name);
                self.counts.remove(&name);
                self.supervisors.remove(&name);
                self.rules.forget(&name);
            }
        }
    }

    fn report(&mut self, report: StateReport) {
        // A replaced supervisor's last reports may come after its successor's entry: they
        // are not the component's state.
        let Some(status) = self
            .components
            .get_mut(&report.name)
            .filter(|s| s.instance == Some(report.instance))
        else {
            return;
        };
        self.counts
            .entry(report.name.clone())
            .or_default()
            .on(status.state, report.state);
        status.state = report.state;
        status.detail = report.detail;
        let components = &self.components;
        let actions = self.rules.on_report(&report.name, report.state, |n| {
            components.get(n).is_some_and(|s| s.state.is_up())
        });
        self.perform(actions);
    }

    /// Carries out what the rules decided.
    fn perform(&self, actions: Vec<GraphAction>) {
        for action in actions {
            match action {
                GraphAction::Start(name) => {
                    if let Some(h) = self.supervisors.get(&name) {
                        tracing::info!(component = %name, "starting now that its dependencies are up");
                        h.start();
                    }
                }
                GraphAction::Restart {
                    dependent,
                    dependency,
                } => {
                    if let Some(h) = self.supervisors.get(&dependent) {
                        tracing::info!(component = %dependent, %dependency, "restarting after its HARD dependency restarted");
                        h.restart();
                    }
                }
            }
        }
    }
}

/// The engine's side: sends changes, reads the board.
#[derive(Debug)]
pub struct Status {
    changes: mpsc::UnboundedSender<(u64, Change)>,
    sent: u64,
    board: watch::Receiver<Board>,
}

/// Starts the owner task. Returns the engine's side, where supervisors send their reports, and
/// the board for readers. The task ends when both senders are gone.
pub fn spawn() -> (
    Status,
    mpsc::UnboundedSender<StateReport>,
    watch::Receiver<Board>,
) {
    let (changes_tx, changes) = mpsc::unbounded_channel();
    let (reports_tx, reports) = mpsc::unbounded_channel();
    let (board_tx, board) = watch::channel(Board::default());
    tokio::spawn(run(changes, reports, board_tx));
    let status = Status {
        changes: changes_tx,
        sent: 0,
        board: board.clone(),
    };
    (status, reports_tx, board)
}

async fn run(
    mut changes: mpsc::UnboundedReceiver<(u64, Change)>,
    mut reports: mpsc::UnboundedReceiver<StateReport>,
    board: watch::Sender<Board>,
) {
    let mut owner = Owner::default();
    let mut applied = 0;
    loop {
        tokio::select! {
            biased;
            Some((n, change)) = changes.recv() => {
                owner.change(change);
                applied = n;
            }
            Some(report) = reports.recv() => owner.report(report),
            else => return,
        }
        board.send_replace(Board {
            components: Arc::new(owner.components.clone()),
            counts: Arc::new(owner.counts.clone()),
            applied,
        });
    }
}

impl Status {
    pub fn change(&mut self, change: Change) {
        self.sent += 1;
        // The owner outlives the engine's actor (it ends when the actor's side is dropped).
        let _ = self.changes.send((self.sent, change));
    }

    /// The board with every change sent so far applied.
    pub async fn current(&mut self) -> Board {
        let sent = self.sent;
        if let Ok(board) = self.board.wait_for(|b| b.applied >= sent).await {
            return board.clone();
        }
        // The owner is gone (the host is stopping): the last board it published.
        self.board.borrow().clone()
    }

    /// Waits for the next board.
    pub async fn changed(&mut self) {
        let _ = self.board.changed().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restarts_and_errors_are_counted_from_transitions() {
        let mut c = ComponentCounts::default();
        for (from, to) in [
            (State::New, State::Installed),
            (State::Installed, State::Starting),
            (State::Starting, State::Running),
            (State::Running, State::Errored),
            (State::Errored, State::Errored),
            (State::Errored, State::Starting),
            (State::Starting, State::Running),
            // `lambkin restart`.
            (State::Running, State::Stopping),
            (State::Stopping, State::Installed),
            (State::Installed, State::Starting),
            (State::Starting, State::Broken),
            // The third error's BROKEN is that error's.
            (State::Broken, State::Starting),
            (State::Starting, State::Errored),
            (State::Errored, State::Broken),
        ] {
            c.on(from, to);
        }
        assert_eq!((c.restarts, c.errors), (3, 3));
    }

    fn status(state: State) -> ComponentStatus {
        ComponentStatus {
            name: "com.example.C".into(),
            version: "1.0.0".into(),
            kind: "generic".into(),
            state,
            detail: None,
            instance: None,
        }
    }

    fn report(state: State, instance: u64) -> StateReport {
        StateReport {
            name: "com.example.C".into(),
            instance,
            state,
            detail: None,
        }
    }

    #[tokio::test]
    async fn the_last_reports_of_a_replaced_supervisor_leave_its_successor_alone() {
        let mut owner = Owner::default();
        let mut entry = status(State::New);
        entry.instance = Some(2);
        owner.change(Change::Set(entry));
        let state = |o: &Owner| o.components["com.example.C"].state;

        // Supervisor 1 was shut down for a deployment; its FINISHED arrives late.
        owner.report(report(State::Finished, 1));
        assert_eq!(
            state(&owner),
            State::New,
            "a deployment waiting for 2 must not see 1's FINISHED"
        );
        owner.report(report(State::Installed, 2));
        assert_eq!(state(&owner), State::Installed);
    }

    #[tokio::test]
    async fn the_engine_reads_its_own_changes() {
        let (mut status_side, _reports, board) = spawn();
        for state in [State::New, State::Installed, State::Running] {
            status_side.change(Change::Set(status(state)));
        }
        let current = status_side.current().await;
        assert_eq!(current.components["com.example.C"].state, State::Running);
        assert!(current.is_up("com.example.C"));
        status_side.change(Change::Remove("com.example.C".into()));
        assert!(status_side.current().await.components.is_empty());
        assert!(board.borrow().components.is_empty());
    }
}
