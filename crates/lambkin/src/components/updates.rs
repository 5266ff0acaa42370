//! Component update notices (`greengrass-reference.md` §3.2, §4.2): a deployment whose
//! `componentUpdatePolicy` is `NOTIFY_COMPONENTS` tells every component subscribed with
//! SubscribeToComponentUpdates that it is about to update (`preUpdateEvent`), waits until each
//! has answered with DeferComponentUpdate or its timeout has passed, waits again and asks again
//! while any defers (`recheckAfterMs` > 0), then updates; once done, it tells them
//! (`postUpdateEvent`). Local deployments skip this unless asked, as the nucleus's do.
//!
//! The IPC connections hold the subscriptions ([`ComponentUpdates::opened`]/`closed`) and
//! pass the answers on ([`ComponentUpdates::defer`]); the engine's deployment asks
//! ([`ComponentUpdates::ask`]). A host that stops ends the wait.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use lambkin_proto::ipc::IpcError;
use tokio::sync::{broadcast, watch, Notify};

/// Notices waiting for a slow connection before the oldest are lost.
const NOTICES: usize = 64;

/// What a subscribed component is told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpdateNotice {
    /// The deployment is about to update components.
    Pre(String),
    /// The deployment has updated them.
    Post(String),
}

#[derive(Debug, Default)]
struct State {
    /// Open SubscribeToComponentUpdates streams, by component.
    subscribers: BTreeMap<String, usize>,
    /// The question a deployment is waiting on.
    round: Option<Round>,
}

#[derive(Debug)]
struct Round {
    deployment_id: String,
    /// Subscribed components that have not answered yet.
    waiting: BTreeSet<String>,
    /// The longest deferral asked for, in ms.
    defer_ms: u64,
}

/// The subscriptions and the question in progress; shared by the engine and IPC.
#[derive(Debug)]
pub struct ComponentUpdates {
    notices: broadcast::Sender<UpdateNotice>,
    state: Mutex<State>,
    answered: Notify,
    stopping: watch::Sender<bool>,
}

impl Default for ComponentUpdates {
    fn default() -> Self {
        Self {
            notices: broadcast::channel(NOTICES).0,
            state: Mutex::default(),
            answered: Notify::new(),
            stopping: watch::channel(false).0,
        }
    }
}

impl ComponentUpdates {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The notices, for one connection.
    pub fn notices(&self) -> broadcast::Receiver<UpdateNotice> {
        self.notices.subscribe()
    }

    /// `component` opened a SubscribeToComponentUpdates stream.
    pub fn opened(&self, component: &str) {
        *self
            .state()
            .subscribers
            .entry(component.to_owned())
            .or_default() += 1;
    }

    /// One of `component`'s streams closed: with its last, it is no longer waited for.
    pub fn closed(&self, component: &str) {
        let mut state = self.state();
        let last = match state.subscribers.get_mut(component) {
            Some(n) if *n > 1 => {
                *n -= 1;
                false
            }
            Some(_) => true,
            None => false,
        };
        if last {
            state.subscribers.remove(component);
            if let Some(round) = &mut state.round {
                round.waiting.remove(component);
            }
            drop(state);
            self.answered.notify_waiters();
        }
    }

    /// DeferComponentUpdate from `component`: the answer to the question about
    /// `deployment_id`, deferring it by `recheck_ms` (0: go ahead).
    pub fn defer(
        &self,
        component: &str,
        deployment_id: &str,
        recheck_ms: u64,
        message: Option<&str>,
    ) -> Result<(), IpcError> {
        let mut state = self.state();
        let round = state
            .round
            .as_mut()
            .filter(|r| r.deployment_id == deployment_id)
            .ok_or_else(|| IpcError::InvalidArguments {
                message: format!(
                    "No update of deployment {deployment_id} is waiting for an answer"
                ),
            })?;
        round.waiting.remove(component);
        round.defer_ms = round.defer_ms.max(recheck_ms);
        if recheck_ms > 0 {
            tracing::info!(
                component,
                deployment = deployment_id,
                recheck_ms,
                message = message.unwrap_or(""),
                "a component defers the update"
            );
        }
        drop(state);
        self.answered.notify_waiters();
        Ok(())
    }

    /// Asks the subscribed components whether `deployment_id` may update them now, each
    /// answer awaited for at most `timeout` (no answer counts as yes), and again after each
    /// deferral, until none defers or the host stops.
    pub async fn ask(&self, deployment_id: &str, timeout: Duration) {
        let mut stopping = self.stopping.subscribe();
        loop {
            {
                let mut state = self.state();
                let waiting: BTreeSet<String> = state.subscribers.keys().cloned().collect();
                if waiting.is_empty() {
                    return;
                }
                state.round = Some(Round {
                    deployment_id: deployment_id.to_owned(),
                    waiting,
                    defer_ms: 0,
                });
            }
            let _ = self
                .notices
                .send(UpdateNotice::Pre(deployment_id.to_owned()));
            let deadline = tokio::time::Instant::now() + timeout;
            loop {
                let answered = self.answered.notified();
                tokio::pin!(answered);
                answered.as_mut().enable();
                if self
                    .state()
                    .round
                    .as_ref()
                    .is_none_or(|r| r.waiting.is_empty())
                {
                    break;
                }
                tokio::select! {
                    () = answered => {}
                    () = tokio::time::sleep_until(deadline) => break,
                    _ = stopping.wait_for(|s| *s) => break,
                }
            }
            let defer_ms = self.state().round.take().map_or(0, |r| r.defer_ms);
            if defer_ms == 0 || *stopping.borrow() {
                return;
            }
            tokio::select! {
                () = tokio::time::sleep(Duration::from_millis(defer_ms)) => {}
                _ = stopping.wait_for(|s| *s) => return,
            }
        }
    }

    /// Tells the subscribed components that `deployment_id` has updated them.
    pub fn done(&self, deployment_id: &str) {
        let _ = self
            .notices
            .send(UpdateNotice::Post(deployment_id.to_owned()));
    }

    /// The host is stopping: a deployment waiting on components waits no more.
    pub fn stop(&self) {
        self.stopping.send_replace(true);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use std::sync::Arc;

    #[tokio::test(start_paused = true)]
    async fn no_subscriber_no_wait() {
        let updates = ComponentUpdates::default();
        let mut notices = updates.notices();
        updates.ask("d", Duration::from_secs(60)).await;
        assert!(notices.try_recv().is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn a_deferral_asks_again_after_its_time_and_an_answer_ends_the_wait() {
        let updates = Arc::new(ComponentUpdates::default());
        updates.opened("a");
        updates.opened("b");
        let mut notices = updates.notices();
        let asking = tokio::spawn({
            let updates = updates.clone();
            async move { updates.ask("d", Duration::from_secs(60)).await }
        });
        assert_eq!(notices.recv().await.unwrap(), UpdateNotice::Pre("d".into()));
        updates.defer("a", "d", 0, None).unwrap();
        updates.defer("b", "d", 5_000, Some("busy")).unwrap();
        let started = tokio::time::Instant::now();
        assert_eq!(notices.recv().await.unwrap(), UpdateNotice::Pre("d".into()));
        assert_eq!(started.elapsed(), Duration::from_secs(5));
        // An answer for another deployment is refused.
        assert!(updates.defer("a", "other", 0, None).is_err());
        updates.defer("a", "d", 0, None).unwrap();
        assert!(!asking.is_finished());
        updates.defer("b", "d", 0, None).unwrap();
        asking.await.unwrap();
        updates.done("d");
        assert_eq!(
            notices.recv().await.unwrap(),
            UpdateNotice::Post("d".into())
        );
    }

    #[tokio::test(start_paused = true)]
    async fn silence_counts_as_yes_after_the_timeout_and_a_closed_stream_is_not_waited_for() {
        let updates = Arc::new(ComponentUpdates::default());
        updates.opened("quiet");
        let started = tokio::time::Instant::now();
        updates.ask("d", Duration::from_secs(7)).await;
        assert_eq!(started.elapsed(), Duration::from_secs(7));

        updates.opened("gone");
        let mut notices = updates.notices();
        let asking = tokio::spawn({
            let updates = updates.clone();
            async move { updates.ask("e", Duration::from_secs(60)).await }
        });
        assert_eq!(notices.recv().await.unwrap(), UpdateNotice::Pre("e".into()));
        updates.closed("gone");
        updates.defer("quiet", "e", 0, None).unwrap();
        asking.await.unwrap();
        assert!(started.elapsed() < Duration::from_secs(60));
    }

    #[tokio::test(start_paused = true)]
    async fn a_stopping_host_ends_an_endless_deferral() {
        let updates = Arc::new(ComponentUpdates::default());
        updates.opened("stubborn");
        let mut notices = updates.notices();
        let asking = tokio::spawn({
            let updates = updates.clone();
            async move { updates.ask("d", Duration::from_secs(60)).await }
        });
        notices.recv().await.unwrap();
        updates.defer("stubborn", "d", 3_600_000, None).unwrap();
        tokio::task::yield_now().await;
        updates.stop();
        asking.await.unwrap();
    }
}
