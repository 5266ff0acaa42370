//! Who depends on whom among the running components, as a sans-I/O state machine: told of each
//! state report, it returns what to do ([`GraphAction`]); the engine performs it on the
//! components' supervisors. Two rules (`greengrass-reference.md` §2.4):
//!
//! - a component held back because its dependencies were not up starts once they all are
//!   (`RUNNING`, or `FINISHED` for one that ran to its end);
//! - a component with a HARD dependency restarts when that dependency comes back `RUNNING`
//!   after being down (`STOPPING` or `ERRORED`).

use std::collections::{BTreeMap, BTreeSet};

use super::lifecycle::State;

/// What the engine is to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GraphAction {
    /// Start a held component: every dependency it waited for is up.
    Start(String),
    /// Restart `dependent`: its HARD dependency `dependency` is running again.
    Restart {
        dependent: String,
        dependency: String,
    },
}

#[derive(Debug, Default)]
pub struct DependencyGraph {
    /// By component: the components that depend on it HARD.
    hard_dependents: BTreeMap<String, Vec<String>>,
    /// Held components and the dependencies they wait for.
    waiting: BTreeMap<String, Vec<String>>,
    /// Components seen going down, until they run again.
    was_down: BTreeSet<String>,
}

impl DependencyGraph {
    /// The HARD dependencies of a deployment's plan: (component, its HARD dependencies).
    pub fn set_hard_dependencies<'a>(
        &mut self,
        components: impl IntoIterator<Item = (&'a str, Vec<&'a str>)>,
    ) {
        self.hard_dependents.clear();
        for (component, dependencies) in components {
            for dependency in dependencies {
                self.hard_dependents
                    .entry(dependency.to_owned())
                    .or_default()
                    .push(component.to_owned());
            }
        }
    }

    /// Holds `component` until `dependencies` are up; `up` says which are now (they may have
    /// come up since the engine looked).
    pub fn hold(
        &mut self,
        component: &str,
        dependencies: Vec<String>,
        up: impl Fn(&str) -> bool,
    ) -> Vec<GraphAction> {
        self.waiting.insert(component.to_owned(), dependencies);
        self.start_ready(up)
    }

    /// `component` is gone: nothing is held for it any more.
    pub fn forget(&mut self, component: &str) {
        self.waiting.remove(component);
        self.was_down.remove(component);
    }

    /// Whether `component` is held.
    #[cfg(test)]
    pub fn is_held(&self, component: &str) -> bool {
        self.waiting.contains_key(component)
    }

    /// `component` reported `state`; `up` says which components are up now, this report
    /// included.
    pub fn on_report(
        &mut self,
        component: &str,
        state: State,
        up: impl Fn(&str) -> bool,
    ) -> Vec<GraphAction> {
        let mut actions = Vec::new();
        match state {
            State::Stopping | State::Errored => {
                self.was_down.insert(component.to_owned());
            }
            State::Running if self.was_down.remove(component) => {
                for dependent in self.hard_dependents.get(component).into_iter().flatten() {
                    actions.push(GraphAction::Restart {
                        dependent: dependent.clone(),
                        dependency: component.to_owned(),
                    });
                }
            }
            _ => {}
        }
        if state.is_up() {
            actions.extend(self.start_ready(up));
        }
        actions
    }

    fn start_ready(&mut self, up: impl Fn(&str) -> bool) -> Vec<GraphAction> {
        let ready: Vec<String> = self
            .waiting
            .iter()
            .filter(|(_, dependencies)| dependencies.iter().all(|d| up(d)))
            .map(|(name, _)| name.clone())
            .collect();
        ready
            .into_iter()
            .map(|name| {
                self.waiting.remove(&name);
                GraphAction::Start(name)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use proptest::prelude::*;

    /// A random DAG: component i may depend on any j < i.
    fn dags() -> impl Strategy<Value = Vec<Vec<usize>>> {
        (1usize..8).prop_flat_map(|n| {
            (0..n)
                .map(|i| proptest::collection::btree_set(0..i.max(1), 0..=i.min(3)))
                .collect::<Vec<_>>()
                .prop_map(|sets| {
                    sets.into_iter()
                        .enumerate()
                        .map(|(i, s)| s.into_iter().filter(|d| *d < i).collect())
                        .collect()
                })
        })
    }

    fn name(i: usize) -> String {
        format!("c{i}")
    }

    proptest! {
        /// Whatever order started components come up in, each held one starts exactly once,
        /// only once all its dependencies are up, and every one starts.
        #[test]
        fn held_components_start_once_after_their_dependencies(
            dag in dags(),
            picks in proptest::collection::vec(any::<usize>(), 64),
        ) {
            let mut graph = DependencyGraph::default();
            let mut up: BTreeSet<String> = BTreeSet::new();
            let mut started: Vec<String> = Vec::new();
            // Started and not yet up, in no particular order.
            let mut pending: Vec<String> = Vec::new();
            for (i, deps) in dag.iter().enumerate() {
                let deps: Vec<String> = deps.iter().map(|d| name(*d)).collect();
                if deps.is_empty() {
                    started.push(name(i));
                    pending.push(name(i));
                } else {
                    for action in graph.hold(&name(i), deps, |d| up.contains(d)) {
                        let GraphAction::Start(n) = action else { panic!("{action:?}") };
                        started.push(n.clone());
                        pending.push(n);
                    }
                }
            }
            let mut picks = picks.into_iter();
            while !pending.is_empty() {
                let at = picks.next().unwrap_or(0) % pending.len();
                let component = pending.remove(at);
                up.insert(component.clone());
                for action in graph.on_report(&component, State::Running, |d| up.contains(d)) {
                    let GraphAction::Start(n) = action else { panic!("{action:?}") };
                    let i: usize = n[1..].parse().unwrap();
                    for d in &dag[i] {
                        prop_assert!(up.contains(&name(*d)), "{n} started before {}", name(*d));
                    }
                    prop_assert!(!started.contains(&n), "{n} started twice");
                    started.push(n.clone());
                    pending.push(n);
                }
            }
            prop_assert_eq!(started.len(), dag.len());
        }

        /// A HARD dependent restarts exactly when its dependency runs again after being down.
        #[test]
        fn hard_dependents_restart_when_their_dependency_comes_back(
            states in proptest::collection::vec(0u8..4, 1..20),
        ) {
            let mut graph = DependencyGraph::default();
            graph.set_hard_dependencies([("app", vec!["db"]), ("other", vec![])]);
            let mut down = false;
            for s in states {
                let state = [State::Running, State::Stopping, State::Errored, State::Finished][s as usize];
                let actions = graph.on_report("db", state, |_| true);
                let expected = if state == State::Running && down {
                    vec![GraphAction::Restart { dependent: "app".into(), dependency: "db".into() }]
                } else {
                    vec![]
                };
                prop_assert_eq!(actions, expected);
                match state {
                    State::Stopping | State::Errored => down = true,
                    State::Running => down = false,
                    _ => {}
                }
            }
        }
    }

    #[test]
    fn a_forgotten_component_is_not_started() {
        let mut graph = DependencyGraph::default();
        assert!(graph.hold("app", vec!["db".into()], |_| false).is_empty());
        assert!(graph.is_held("app"));
        graph.forget("app");
        assert!(graph.on_report("db", State::Running, |_| true).is_empty());
    }
}
