//! One actor per function: it owns the [`Scheduler`] and the function's instances, takes
//! invocations from the API (bounded mailbox: callers wait when it is full) and reports from
//! its instances, and performs the scheduler's actions.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;

use super::delegate::{self, Outcome, Route};
use super::instance::{self, FunctionReport, InitFailure, InstanceHandle, InstanceMsg};
use super::invocation::{FunctionResponse, Invocation, InvocationAbort};
use super::scheduler::{Action, Event, InstanceId, Limits, Occupancy, Scheduler};
use super::spec::FunctionSpec;

/// Invocations that may wait for the actor before callers wait too.
const MAILBOX: usize = 256;
/// How long past the grace period shutdown waits for instances before giving up on them.
const SHUTDOWN_SLACK: Duration = Duration::from_secs(1);

impl FunctionSpec {
    fn limits(&self) -> Limits {
        let g = &self.config.greengrass;
        Limits {
            pinned: g.pinned,
            max_instances: g.max_instances_count,
            max_queue: g.max_queue_size,
            max_idle: Duration::from_secs(u64::from(g.max_idle_time_in_seconds)),
        }
    }
}

/// Why an invocation was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    QueueFull { max_queue: u32 },
    ShuttingDown,
}

enum Command {
    Submit {
        inv: Invocation,
        admitted: oneshot::Sender<Result<(), Refusal>>,
    },
    Resubmit(Invocation),
    Reconfigure(Arc<FunctionSpec>),
    Occupancy(oneshot::Sender<Occupancy>),
    Shutdown {
        why: InvocationAbort,
        done: oneshot::Sender<()>,
    },
}

/// A cloneable handle on a function actor.
#[derive(Debug, Clone)]
pub struct FunctionHandle {
    tx: mpsc::Sender<Command>,
}

impl FunctionHandle {
    pub fn spawn(spec: Arc<FunctionSpec>) -> Self {
        let (tx, rx) = mpsc::channel(MAILBOX);
        tokio::spawn(run(spec, rx));
        Self { tx }
    }

    /// Admits an invocation to the queue; its outcome goes to its [`Completion`].
    ///
    /// [`Completion`]: super::invocation::Completion
    pub async fn submit(&self, inv: Invocation) -> Result<(), Refusal> {
        let (admitted, rx) = oneshot::channel();
        self.tx
            .send(Command::Submit { inv, admitted })
            .await
            .map_err(|_| Refusal::ShuttingDown)?;
        rx.await.map_err(|_| Refusal::ShuttingDown)?
    }

    /// Queues an invocation accepted before a restart; never refused for a full queue.
    pub async fn resubmit(&self, inv: Invocation) {
        if let Err(e) = self.tx.send(Command::Resubmit(inv)).await {
            let Command::Resubmit(inv) = e.0 else { return };
            inv.abort(InvocationAbort::ShuttingDown).await;
        }
    }

    /// Its instances by state and its queue, for a scrape; `None` when the actor does not
    /// answer within `wait` (its mailbox is full) or has stopped.
    pub async fn occupancy(&self, wait: Duration) -> Option<Occupancy> {
        let (tx, rx) = oneshot::channel();
        let asked = async {
            self.tx.send(Command::Occupancy(tx)).await.ok()?;
            rx.await.ok()
        };
        tokio::time::timeout(wait, asked).await.ok().flatten()
    }

    pub async fn reconfigure(&self, spec: Arc<FunctionSpec>) {
        let _ = self.tx.send(Command::Reconfigure(spec)).await;
    }

    /// Stops every instance (SIGTERM, SIGKILL after the grace period) and waits for them.
    pub async fn shutdown(&self, why: InvocationAbort) {
        let (done, rx) = oneshot::channel();
        if self.tx.send(Command::Shutdown { why, done }).await.is_ok() {
            let _ = rx.await;
        }
    }
}

struct Actor {
    spec: Arc<FunctionSpec>,
    scheduler: Scheduler<Invocation>,
    instances: BTreeMap<InstanceId, InstanceHandle>,
    reports_tx: mpsc::UnboundedSender<FunctionReport>,
    abort_reason: InvocationAbort,
    /// Why the instance that exited last never became ready, for the invocation it fails.
    init_failure: Option<InitFailure>,
    /// Invocations on their way to the remote target (`delegate::run`); ended with the actor
    /// (a stored `Event` among them runs again at the next start).
    delegated: JoinSet<Outcome>,
    /// The delegation of the current configuration, which an `Event` waiting for its target
    /// reads again before each new attempt.
    delegation: tokio::sync::watch::Sender<Option<delegate::Delegation>>,
}

async fn run(spec: Arc<FunctionSpec>, mut rx: mpsc::Receiver<Command>) {
    // Unbounded, but bounded by construction: each instance sends one Ready per invocation
    // it finishes and one Exited.
    let (reports_tx, mut reports) = mpsc::unbounded_channel();
    let mut actor = Actor {
        scheduler: Scheduler::new(spec.limits()),
        spec,
        instances: BTreeMap::new(),
        reports_tx,
        abort_reason: InvocationAbort::ShuttingDown,
        init_failure: None,
        delegated: JoinSet::new(),
        delegation: tokio::sync::watch::Sender::new(None),
    };
    actor.delegation.send_replace(actor.spec.delegation.clone());
    // An on-demand container function's first instance starts from a waiting sandbox init
    // too: it is prepared as soon as the configuration is known.
    super::sandbox::refill_zygote(&actor.spec);
    let actions = actor.scheduler.start(Instant::now());
    actor.perform(actions, None).await;
    let mut shutdown: Option<(oneshot::Sender<()>, Instant)> = None;
    // The next reaping, on one timer for the loop's life (a sleep made on every turn would
    // register and drop a timer each time).
    let mut reaping = super::deadline::DeadlineTimer::new();
    loop {
        if let Some((_, deadline)) = &shutdown {
            if actor.instances.is_empty() || Instant::now() >= *deadline {
                break;
            }
        }
        let wakeup = actor.scheduler.next_wakeup();
        let shutdown_deadline = shutdown.as_ref().map(|(_, d)| *d);
        tokio::select! {
            biased;
            Some(report) = reports.recv() => actor.on_report(report).await,
            Some(done) = actor.delegated.join_next(), if !actor.delegated.is_empty() => {
                // Not run there: it runs here, admitted already (never refused for a full
                // queue, as a resubmitted one).
                match done {
                    Ok(Outcome::RunHere(inv)) => {
                        let actions = actor.scheduler.on(Event::Resubmitted(inv), Instant::now());
                        actor.perform(actions, None).await;
                    }
                    Ok(Outcome::Delegated) => {
                        if let Some(metrics) = &actor.spec.metrics {
                            metrics.delegated.inc();
                        }
                    }
                    Ok(Outcome::Done) | Err(_) => {}
                }
            }
            command = rx.recv(), if shutdown.is_none() => match command {
                Some(Command::Submit { inv, admitted }) => {
                    if let Some(delegation) = actor.remote_route() {
                        // On their way out, invocations wait as queued ones do: at most
                        // `MaxQueueSize` of them, so a target that is down or slow cannot
                        // make the host keep an unbounded number.
                        let max_queue = actor.spec.config.greengrass.max_queue_size;
                        if actor.delegated.len() >= max_queue as usize {
                            if let Some(metrics) = &actor.spec.metrics {
                                metrics.throttled.inc();
                            }
                            let _ = admitted.send(Err(Refusal::QueueFull { max_queue }));
                        } else {
                            actor.delegate(delegation, inv);
                            let _ = admitted.send(Ok(()));
                        }
                    } else {
                        let actions = actor.scheduler.on(Event::Submitted(inv), Instant::now());
                        actor.perform(actions, Some(admitted)).await;
                    }
                }
                Some(Command::Resubmit(inv)) => {
                    if let Some(delegation) = actor.remote_route() {
                        actor.delegate(delegation, inv);
                    } else {
                        let actions = actor.scheduler.on(Event::Resubmitted(inv), Instant::now());
                        actor.perform(actions, None).await;
                    }
                }
                Some(Command::Reconfigure(spec)) => {
                    let limits = spec.limits();
                    actor.spec.zygote.retire();
                    actor.spec = spec;
                    actor.delegation.send_replace(actor.spec.delegation.clone());
                    super::sandbox::refill_zygote(&actor.spec);
                    let actions = actor.scheduler.on(Event::Reconfigured(limits), Instant::now());
                    actor.perform(actions, None).await;
                }
                Some(Command::Occupancy(reply)) => {
                    let _ = reply.send(actor.scheduler.occupancy());
                }
                Some(Command::Shutdown { why, done }) => {
                    actor.delegated.abort_all();
                    actor.spec.zygote.retire();
                    actor.abort_reason = why;
                    let actions = actor.scheduler.on(Event::Shutdown, Instant::now());
                    actor.perform(actions, None).await;
                    shutdown = Some((done, Instant::now() + actor.spec.shutdown_grace + SHUTDOWN_SLACK));
                }
                None => {
                    actor.delegated.abort_all();
                    actor.spec.zygote.retire();
                    let actions = actor.scheduler.on(Event::Shutdown, Instant::now());
                    actor.perform(actions, None).await;
                    let (done, _) = oneshot::channel();
                    shutdown = Some((done, Instant::now() + actor.spec.shutdown_grace + SHUTDOWN_SLACK));
                }
            },
            () = reaping.wait(wakeup) => {
                let actions = actor.scheduler.on(Event::Tick, Instant::now());
                actor.perform(actions, None).await;
            }
            () = sleep_until(shutdown_deadline) => {}
        }
    }
    if !actor.instances.is_empty() {
        tracing::warn!(function = %actor.spec.name, left = actor.instances.len(), "instances did not stop in time");
    }
    if let Some((done, _)) = shutdown {
        let _ = done.send(());
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d.into()).await,
        None => std::future::pending().await,
    }
}

impl Actor {
    /// The delegation to send the next invocation out with, when the function's policy sends
    /// it to the remote target.
    fn remote_route(&self) -> Option<delegate::Delegation> {
        let delegation = self.spec.delegation.as_ref()?;
        let route = delegation.route(
            self.scheduler.waiting_if_submitted(),
            self.scheduler.would_refuse(),
        );
        (route == Route::Remote).then(|| delegation.clone())
    }

    /// Sends `inv` to the remote target, as a task of this actor.
    fn delegate(&mut self, delegation: delegate::Delegation, inv: Invocation) {
        let origin = delegate::Origin {
            name: self.spec.name.to_string(),
            log: self.spec.log.clone(),
            timeout: self.spec.config.timeout(),
        };
        let current = self.delegation.subscribe();
        self.delegated
            .spawn(delegate::run(origin, delegation, current, inv));
    }

    async fn on_report(&mut self, report: FunctionReport) {
        let now = Instant::now();
        match report {
            FunctionReport::InstanceReady(id) => {
                let actions = self.scheduler.on(Event::Ready(id), now);
                self.perform(actions, None).await;
            }
            FunctionReport::InstanceExited {
                id,
                before_ready,
                failure,
            } => {
                self.instances.remove(&id);
                let event = if matches!(failure, Some(InitFailure::LaunchFailed(_))) {
                    Event::LaunchFailed(id)
                } else {
                    Event::Exited { id, before_ready }
                };
                self.init_failure = failure;
                let actions = self.scheduler.on(event, now);
                self.perform(actions, None).await;
            }
        }
    }

    async fn perform(
        &mut self,
        actions: Vec<Action<Invocation>>,
        mut admitted: Option<oneshot::Sender<Result<(), Refusal>>>,
    ) {
        for action in actions {
            match action {
                Action::Start { id, delay } => {
                    let handle =
                        instance::spawn(id, self.spec.clone(), self.reports_tx.clone(), delay);
                    self.instances.insert(id, handle);
                }
                Action::Assign(id, inv) => match self.instances.get(&id) {
                    Some(handle) => {
                        if let Err(returned) = handle.send(InstanceMsg::Assign(inv)) {
                            if let InstanceMsg::Assign(inv) = *returned {
                                inv.abort(InvocationAbort::ShuttingDown).await;
                            }
                        }
                    }
                    None => inv.abort(InvocationAbort::ShuttingDown).await,
                },
                Action::Refuse(_inv) => {
                    if let Some(metrics) = &self.spec.metrics {
                        metrics.throttled.inc();
                    }
                    if let Some(tx) = admitted.take() {
                        let _ = tx.send(Err(Refusal::QueueFull {
                            max_queue: self.spec.config.greengrass.max_queue_size,
                        }));
                    }
                }
                Action::Abandon(inv) => {
                    if let Some(tx) = admitted.take() {
                        let _ = tx.send(Err(Refusal::ShuttingDown));
                    } else {
                        inv.abort(self.abort_reason.clone()).await;
                    }
                }
                Action::FailWithInitError(inv) => {
                    if let Some(metrics) = &self.spec.metrics {
                        metrics.function_error.inc();
                    }
                    let body = self
                        .init_failure
                        .clone()
                        .unwrap_or_else(|| {
                            InitFailure::Exited("runtime exited without providing a reason".into())
                        })
                        .render(inv.request_id.as_str());
                    inv.finish(FunctionResponse {
                        body,
                        content_type: None,
                        function_error: true,
                        log_tail: None,
                    })
                    .await;
                }
                Action::Stop(id) => {
                    if let Some(handle) = self.instances.get(&id) {
                        let _ = handle.send(InstanceMsg::Stop);
                    }
                }
            }
        }
        if let Some(tx) = admitted {
            let _ = tx.send(Ok(()));
        }
    }
}
