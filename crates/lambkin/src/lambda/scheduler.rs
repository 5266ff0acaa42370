//! The rules of a function's lifecycle, without I/O: which invocation goes to which instance,
//! when instances start and stop, and when the queue is full (`greengrass-reference.md` §1.3).
//!
//! *On-demand*: an invocation goes to the most recently idle warm instance; with none idle, it
//! waits in the queue while a new instance starts, up to `maxInstancesCount` processes (those
//! stopping included). Idle instances stop after `maxIdleTimeInSeconds`.
//! *Pinned*: exactly one instance, started at once and restarted whenever it exits (with
//! backoff after failed starts); invocations run one at a time in arrival order.
//! Both: at most `maxQueueSize` invocations wait; more are refused. An instance that dies
//! before it is ready fails the oldest waiting invocation with its init error, so a broken
//! function answers errors instead of looping forever.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct InstanceId(pub u64);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub pinned: bool,
    pub max_instances: u32,
    pub max_queue: u32,
    pub max_idle: Duration,
}

#[derive(Debug)]
pub enum Event<T> {
    /// A new invocation; refused when the queue is full.
    Submitted(T),
    /// An invocation accepted earlier (recovered from durable state): never refused.
    Resubmitted(T),
    /// The instance called `/next` and waits for work.
    Ready(InstanceId),
    /// The instance's process is gone. `before_ready` when it never reached `/next`.
    Exited { id: InstanceId, before_ready: bool },
    /// The instance's process could not be started at all (its program missing or not
    /// executable, say). Every queued invocation would meet the same failure: those no other
    /// starting instance is there for get it now, not one per backed-off start.
    LaunchFailed(InstanceId),
    /// Time passed (reaping).
    Tick,
    /// New settings: instances of the old configuration are replaced as they become free.
    Reconfigured(Limits),
    /// Stop everything; queued invocations are handed back.
    Shutdown,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Action<T> {
    /// Start a process for this instance, after `delay`.
    Start { id: InstanceId, delay: Duration },
    /// Hand this invocation to this ready instance.
    Assign(InstanceId, T),
    /// The queue is full.
    Refuse(T),
    /// The instance died before it was ready: this invocation gets its init error.
    FailWithInitError(T),
    /// Stop this instance's process.
    Stop(InstanceId),
    /// The invocation will not run now (shutdown).
    Abandon(T),
}

/// A function's instances by state and its queue's length, at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Occupancy {
    pub starting: usize,
    pub idle: usize,
    pub busy: usize,
    pub stopping: usize,
    pub queued: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Slot {
    Starting,
    Idle { since: Instant },
    Busy,
    Stopping,
}

#[derive(Debug, Clone, Copy)]
struct InstanceSlot {
    slot: Slot,
    generation: u64,
}

#[derive(Debug)]
pub struct Scheduler<T> {
    limits: Limits,
    queue: VecDeque<T>,
    instances: BTreeMap<InstanceId, InstanceSlot>,
    /// The idle instances by the time they became idle, and how many instances are starting:
    /// kept with every change of a slot ([`Scheduler::set_slot`]), so that choosing an
    /// instance and the next wakeup do not walk every instance at each event.
    idle: BTreeSet<(Instant, InstanceId)>,
    starting: usize,
    next_id: u64,
    generation: u64,
    failed_starts: u32,
    shut_down: bool,
}

/// Restart backoff of a pinned instance after `failures` consecutive failed starts.
fn backoff(failures: u32) -> Duration {
    if failures == 0 {
        return Duration::ZERO;
    }
    let millis = 250u64.saturating_mul(1 << failures.min(8).saturating_sub(1));
    Duration::from_millis(millis.min(30_000))
}

impl<T> Scheduler<T> {
    pub fn new(limits: Limits) -> Self {
        Self {
            limits,
            queue: VecDeque::new(),
            instances: BTreeMap::new(),
            idle: BTreeSet::new(),
            starting: 0,
            next_id: 0,
            generation: 0,
            failed_starts: 0,
            shut_down: false,
        }
    }

    /// Actions to take when the function comes up (a pinned function starts its instance).
    pub fn start(&mut self, now: Instant) -> Vec<Action<T>> {
        let mut actions = Vec::new();
        self.pump(now, &mut actions);
        actions
    }

    pub fn queued(&self) -> usize {
        self.queue.len()
    }

    /// Instances with a process (starting, idle, busy or stopping).
    pub fn live_instances(&self) -> usize {
        self.instances.len()
    }

    /// Its instances by state, and the invocations waiting.
    pub fn occupancy(&self) -> Occupancy {
        let mut o = Occupancy {
            queued: self.queue.len(),
            ..Occupancy::default()
        };
        for i in self.instances.values() {
            match i.slot {
                Slot::Starting => o.starting += 1,
                Slot::Idle { .. } => o.idle += 1,
                Slot::Busy => o.busy += 1,
                Slot::Stopping => o.stopping += 1,
            }
        }
        o
    }

    /// How many invocations would wait for an instance if one more were submitted now: the
    /// queue and that one, less the idle instances, those starting, and those that may
    /// still start (what `overflow` delegation compares with its threshold).
    pub fn waiting_if_submitted(&self) -> usize {
        let idle_or_starting = self
            .instances
            .values()
            .filter(|i| match i.slot {
                Slot::Idle { .. } => i.generation == self.generation,
                Slot::Starting => true,
                Slot::Busy | Slot::Stopping => false,
            })
            .count();
        let max = if self.limits.pinned {
            1
        } else {
            self.limits.max_instances as usize
        };
        let room = max.saturating_sub(self.instances.len());
        (self.queue.len() + 1).saturating_sub(idle_or_starting + room)
    }

    /// Whether one more submitted invocation would be refused (the queue is full).
    pub fn would_refuse(&self) -> bool {
        self.queue.len() >= self.limits.max_queue as usize
    }

    /// When [`Event::Tick`] should next be sent (the earliest idle expiry).
    pub fn next_wakeup(&self) -> Option<Instant> {
        if self.limits.pinned {
            return None;
        }
        self.idle
            .first()
            .map(|(since, _)| *since + self.limits.max_idle)
    }

    /// Sets an instance's slot, keeping the idle and starting indexes.
    fn set_slot(&mut self, id: InstanceId, slot: Slot) {
        let Some(inst) = self.instances.get_mut(&id) else {
            return;
        };
        let was = std::mem::replace(&mut inst.slot, slot);
        Self::unindex(&mut self.idle, &mut self.starting, id, was);
        match slot {
            Slot::Idle { since } => {
                self.idle.insert((since, id));
            }
            Slot::Starting => self.starting += 1,
            Slot::Busy | Slot::Stopping => {}
        }
    }

    /// Forgets an instance (its process is gone), keeping the indexes.
    fn remove(&mut self, id: InstanceId) -> Option<InstanceSlot> {
        let was = self.instances.remove(&id)?;
        Self::unindex(&mut self.idle, &mut self.starting, id, was.slot);
        Some(was)
    }

    fn unindex(
        idle: &mut BTreeSet<(Instant, InstanceId)>,
        starting: &mut usize,
        id: InstanceId,
        was: Slot,
    ) {
        match was {
            Slot::Idle { since } => {
                idle.remove(&(since, id));
            }
            Slot::Starting => *starting = starting.saturating_sub(1),
            Slot::Busy | Slot::Stopping => {}
        }
    }

    pub fn on(&mut self, event: Event<T>, now: Instant) -> Vec<Action<T>> {
        let mut actions = Vec::new();
        match event {
            Event::Submitted(t) => {
                if self.shut_down {
                    actions.push(Action::Abandon(t));
                    return actions;
                }
                if self.queue.len() >= self.limits.max_queue as usize {
                    actions.push(Action::Refuse(t));
                    return actions;
                }
                self.queue.push_back(t);
            }
            Event::Resubmitted(t) => {
                if self.shut_down {
                    actions.push(Action::Abandon(t));
                    return actions;
                }
                self.queue.push_back(t);
            }
            Event::Ready(id) => {
                self.failed_starts = 0;
                let generation = self.generation;
                if let Some(inst) = self.instances.get(&id) {
                    if inst.generation != generation || self.shut_down {
                        self.set_slot(id, Slot::Stopping);
                        actions.push(Action::Stop(id));
                    } else if inst.slot != Slot::Stopping {
                        self.set_slot(id, Slot::Idle { since: now });
                    }
                }
            }
            Event::LaunchFailed(id) => {
                let was = self.remove(id);
                if !matches!(was.map(|i| i.slot), Some(Slot::Stopping)) {
                    self.failed_starts = self.failed_starts.saturating_add(1);
                    // Each instance still starting fails the oldest one when it fails too.
                    let keep = self.starting.min(self.queue.len());
                    let failed = self.queue.len() - keep;
                    actions.extend(self.queue.drain(..failed).map(Action::FailWithInitError));
                }
            }
            Event::Exited { id, before_ready } => {
                let was = self.remove(id);
                let stopped_on_purpose = matches!(was.map(|i| i.slot), Some(Slot::Stopping));
                if before_ready && !stopped_on_purpose {
                    self.failed_starts = self.failed_starts.saturating_add(1);
                    if let Some(t) = self.queue.pop_front() {
                        actions.push(Action::FailWithInitError(t));
                    }
                }
            }
            Event::Tick => {
                if !self.limits.pinned {
                    let max_idle = self.limits.max_idle;
                    let mut expired: Vec<InstanceId> = self
                        .idle
                        .iter()
                        .take_while(|(since, _)| *since + max_idle <= now)
                        .map(|(_, id)| *id)
                        .collect();
                    // In the order of their ids, as the instances are kept.
                    expired.sort_unstable();
                    for id in expired {
                        self.set_slot(id, Slot::Stopping);
                        actions.push(Action::Stop(id));
                    }
                }
            }
            Event::Reconfigured(limits) => {
                self.limits = limits;
                self.generation += 1;
                self.failed_starts = 0;
                let replaced: Vec<InstanceId> = self
                    .instances
                    .iter()
                    .filter(|(_, i)| matches!(i.slot, Slot::Idle { .. } | Slot::Starting))
                    .map(|(id, _)| *id)
                    .collect();
                for id in replaced {
                    self.set_slot(id, Slot::Stopping);
                    actions.push(Action::Stop(id));
                }
            }
            Event::Shutdown => {
                self.shut_down = true;
                actions.extend(self.queue.drain(..).map(Action::Abandon));
                let stopping: Vec<InstanceId> = self
                    .instances
                    .iter()
                    .filter(|(_, i)| i.slot != Slot::Stopping)
                    .map(|(id, _)| *id)
                    .collect();
                for id in stopping {
                    self.set_slot(id, Slot::Stopping);
                    actions.push(Action::Stop(id));
                }
                return actions;
            }
        }
        self.pump(now, &mut actions);
        actions
    }

    /// Hands queued work to idle instances and starts the instances still needed.
    fn pump(&mut self, _now: Instant, actions: &mut Vec<Action<T>>) {
        if self.shut_down {
            return;
        }
        while !self.queue.is_empty() {
            let Some(id) = self.most_recently_idle() else {
                break;
            };
            let Some(t) = self.queue.pop_front() else {
                break;
            };
            self.set_slot(id, Slot::Busy);
            actions.push(Action::Assign(id, t));
        }
        let max = if self.limits.pinned {
            1
        } else {
            self.limits.max_instances as usize
        };
        let starting = self.starting;
        let wanted = if self.limits.pinned {
            let serving = self
                .instances
                .values()
                .filter(|i| i.slot != Slot::Stopping)
                .count();
            usize::from(serving == 0)
        } else {
            self.queue.len().saturating_sub(starting)
        };
        let room = max.saturating_sub(self.instances.len());
        for _ in 0..wanted.min(room) {
            let id = InstanceId(self.next_id);
            self.next_id += 1;
            self.instances.insert(
                id,
                InstanceSlot {
                    slot: Slot::Starting,
                    generation: self.generation,
                },
            );
            self.starting += 1;
            actions.push(Action::Start {
                id,
                delay: backoff(self.failed_starts),
            });
        }
    }

    fn most_recently_idle(&self) -> Option<InstanceId> {
        self.idle.iter().rev().map(|(_, id)| *id).find(|id| {
            self.instances
                .get(id)
                .is_some_and(|i| i.generation == self.generation)
        })
    }

    /// Whether the indexes say what the instances say.
    #[cfg(test)]
    fn indexes_agree(&self) -> bool {
        let idle: BTreeSet<(Instant, InstanceId)> = self
            .instances
            .iter()
            .filter_map(|(id, i)| match i.slot {
                Slot::Idle { since } => Some((since, *id)),
                _ => None,
            })
            .collect();
        let starting = self
            .instances
            .values()
            .filter(|i| i.slot == Slot::Starting)
            .count();
        idle == self.idle && starting == self.starting
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn on_demand(max_instances: u32, max_queue: u32) -> Limits {
        Limits {
            pinned: false,
            max_instances,
            max_queue,
            max_idle: Duration::from_secs(60),
        }
    }

    fn starts<T>(actions: &[Action<T>]) -> Vec<InstanceId> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::Start { id, .. } => Some(*id),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn occupancy_counts_instances_by_state_and_the_queue() {
        let now = Instant::now();
        let mut s = Scheduler::new(on_demand(1, 10));
        let started = starts(&s.on(Event::Submitted(1), now));
        s.on(Event::Submitted(2), now);
        assert_eq!(
            s.occupancy(),
            Occupancy {
                starting: 1,
                queued: 2,
                ..Occupancy::default()
            }
        );
        s.on(Event::Ready(started[0]), now);
        assert_eq!(
            s.occupancy(),
            Occupancy {
                busy: 1,
                queued: 1,
                ..Occupancy::default()
            }
        );
    }

    #[test]
    fn waiting_counts_what_no_instance_can_take() {
        let now = Instant::now();
        let mut s = Scheduler::new(on_demand(2, 10));
        // Room to start two: nothing would wait.
        assert_eq!(s.waiting_if_submitted(), 0);
        let a = s.on(Event::Submitted(1), now);
        s.on(Event::Submitted(2), now);
        // Both starting, both taken: the third would wait.
        assert_eq!(s.waiting_if_submitted(), 1);
        let first = starts(&a)[0];
        s.on(Event::Ready(first), now);
        assert_eq!(s.waiting_if_submitted(), 1);
        s.on(Event::Ready(first), now);
        // `first` took 2; the second, still starting, would take one more.
        assert_eq!(s.waiting_if_submitted(), 0);
        assert!(!s.would_refuse());
    }

    #[test]
    fn on_demand_starts_one_instance_per_waiting_invocation_up_to_the_limit() {
        let now = Instant::now();
        let mut s = Scheduler::new(on_demand(2, 10));
        assert!(s.start(now).is_empty());
        let a1 = s.on(Event::Submitted(1), now);
        let a2 = s.on(Event::Submitted(2), now);
        let a3 = s.on(Event::Submitted(3), now);
        assert_eq!(starts(&a1).len() + starts(&a2).len() + starts(&a3).len(), 2);
        assert_eq!(s.queued(), 3);
        let first = starts(&a1)[0];
        assert_eq!(
            s.on(Event::Ready(first), now),
            vec![Action::Assign(first, 1)]
        );
        // The instance finished 1 and is ready again: it takes 2 (FIFO).
        assert_eq!(
            s.on(Event::Ready(first), now),
            vec![Action::Assign(first, 2)]
        );
    }

    #[test]
    fn warm_instance_is_reused_and_reaped_when_idle() {
        let t0 = Instant::now();
        let mut s = Scheduler::new(on_demand(8, 10));
        let a = s.on(Event::Submitted(1), t0);
        let id = starts(&a)[0];
        assert_eq!(s.on(Event::Ready(id), t0), vec![Action::Assign(id, 1)]);
        s.on(Event::Ready(id), t0);
        assert_eq!(s.on(Event::Submitted(2), t0), vec![Action::Assign(id, 2)]);
        let t1 = t0 + Duration::from_secs(1);
        s.on(Event::Ready(id), t1);
        assert_eq!(s.next_wakeup(), Some(t1 + Duration::from_secs(60)));
        assert!(s.on(Event::Tick, t1 + Duration::from_secs(59)).is_empty());
        assert_eq!(
            s.on(Event::Tick, t1 + Duration::from_secs(60)),
            vec![Action::Stop(id)]
        );
        assert!(s
            .on(
                Event::Exited {
                    id,
                    before_ready: false
                },
                t1
            )
            .is_empty());
        assert_eq!(s.live_instances(), 0);
    }

    #[test]
    fn full_queue_refuses_but_resubmissions_always_enter() {
        let now = Instant::now();
        let mut s = Scheduler::new(Limits {
            pinned: true,
            max_instances: 1,
            max_queue: 2,
            max_idle: Duration::from_secs(60),
        });
        assert_eq!(starts(&s.start(now)).len(), 1);
        s.on(Event::Submitted(1), now);
        s.on(Event::Submitted(2), now);
        assert_eq!(s.on(Event::Submitted(3), now), vec![Action::Refuse(3)]);
        s.on(Event::Resubmitted(4), now);
        assert_eq!(s.queued(), 3);
    }

    #[test]
    fn pinned_restarts_with_backoff_and_fails_the_head_on_init_errors() {
        let now = Instant::now();
        let mut s = Scheduler::new(Limits {
            pinned: true,
            max_instances: 100,
            max_queue: 10,
            max_idle: Duration::from_secs(60),
        });
        let id = starts(&s.start(now))[0];
        s.on(Event::Submitted(7), now);
        let a = s.on(
            Event::Exited {
                id,
                before_ready: true,
            },
            now,
        );
        assert_eq!(a[0], Action::FailWithInitError(7));
        let Action::Start { delay, .. } = a[1] else {
            panic!("expected a restart, got {a:?}");
        };
        assert!(delay > Duration::ZERO);
        assert_eq!(s.live_instances(), 1);
    }

    /// A pinned instance that keeps dying before it is ready comes back after 250 ms, then
    /// twice as long each time up to 30 s, where it stays; one that becomes ready resets the
    /// delay, and one killed once it was ready comes back at once.
    #[test]
    fn a_pinned_instance_comes_back_with_doubling_backoff_up_to_its_cap() {
        let now = Instant::now();
        let mut s: Scheduler<u32> = Scheduler::new(Limits {
            pinned: true,
            max_instances: 100,
            max_queue: 10,
            max_idle: Duration::from_secs(60),
        });
        let restart = |actions: &[Action<u32>]| -> (InstanceId, Duration) {
            let found: Vec<_> = actions
                .iter()
                .filter_map(|a| match a {
                    Action::Start { id, delay } => Some((*id, *delay)),
                    _ => None,
                })
                .collect();
            assert_eq!(found.len(), 1, "one instance comes back: {actions:?}");
            found[0]
        };
        let (mut id, first) = restart(&s.start(now));
        assert_eq!(first, Duration::ZERO);
        let mut delays = Vec::new();
        for _ in 0..10 {
            let back = s.on(
                Event::Exited {
                    id,
                    before_ready: true,
                },
                now,
            );
            let (next, delay) = restart(&back);
            delays.push(delay.as_millis());
            id = next;
        }
        assert_eq!(
            delays,
            [250, 500, 1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000]
        );
        assert_eq!(s.live_instances(), 1);

        // Ready: the count starts again. Killed while ready, it comes back at once.
        s.on(Event::Ready(id), now);
        let (id, delay) = restart(&s.on(
            Event::Exited {
                id,
                before_ready: false,
            },
            now,
        ));
        assert_eq!(delay, Duration::ZERO);
        let (_, delay) = restart(&s.on(
            Event::Exited {
                id,
                before_ready: true,
            },
            now,
        ));
        assert_eq!(delay, Duration::from_millis(250));
    }

    #[test]
    fn pinned_runs_in_order_on_one_instance() {
        let now = Instant::now();
        let mut s = Scheduler::new(Limits {
            pinned: true,
            max_instances: 100,
            max_queue: 1000,
            max_idle: Duration::from_secs(1),
        });
        let id = starts(&s.start(now))[0];
        for i in 0..5 {
            assert!(starts(&s.on(Event::Submitted(i), now)).is_empty());
        }
        let mut order = Vec::new();
        for _ in 0..5 {
            for a in s.on(Event::Ready(id), now) {
                if let Action::Assign(_, t) = a {
                    order.push(t);
                }
            }
        }
        assert_eq!(order, vec![0, 1, 2, 3, 4]);
        // Pinned instances are never reaped.
        assert!(s
            .on(Event::Tick, now + Duration::from_secs(3600))
            .is_empty());
    }

    #[test]
    fn reconfiguration_replaces_instances_as_they_free_up() {
        let now = Instant::now();
        let limits = on_demand(4, 10);
        let mut s = Scheduler::new(limits);
        let id = starts(&s.on(Event::Submitted(1), now))[0];
        s.on(Event::Ready(id), now);
        let a = s.on(Event::Reconfigured(limits), now);
        assert!(a.is_empty(), "busy instance keeps running: {a:?}");
        assert_eq!(s.on(Event::Ready(id), now), vec![Action::Stop(id)]);
        let a = s.on(Event::Submitted(2), now);
        assert_eq!(starts(&a).len(), 1);
    }

    #[test]
    fn shutdown_abandons_the_queue_and_stops_everything() {
        let now = Instant::now();
        let mut s = Scheduler::new(on_demand(1, 10));
        let id = starts(&s.on(Event::Submitted(1), now))[0];
        s.on(Event::Submitted(2), now);
        let a = s.on(Event::Shutdown, now);
        assert_eq!(
            a,
            vec![Action::Abandon(1), Action::Abandon(2), Action::Stop(id)]
        );
        assert_eq!(s.on(Event::Submitted(3), now), vec![Action::Abandon(3)]);
    }

    proptest::proptest! {
        /// Whatever happens, on-demand never has more processes than `maxInstancesCount`,
        /// never queues more than `maxQueueSize` new invocations, and never loses one.
        #[test]
        fn limits_hold_and_nothing_is_lost(ops in proptest::collection::vec(0u8..5, 1..200)) {
            let now = Instant::now();
            let mut s = Scheduler::new(on_demand(3, 5));
            let mut next = 0u32;
            let mut submitted = 0u32;
            let mut settled = 0u32;
            let mut busy: Vec<InstanceId> = Vec::new();
            let mut starting: Vec<InstanceId> = Vec::new();
            let mut idle: Vec<InstanceId> = Vec::new();
            for op in ops {
                let actions = match op {
                    0 | 1 => { submitted += 1; next += 1; s.on(Event::Submitted(next), now) }
                    2 => match starting.pop() { Some(id) => s.on(Event::Ready(id), now), None => vec![] },
                    3 => match busy.pop() { Some(id) => { settled += 1; s.on(Event::Ready(id), now) } None => vec![] },
                    _ => match starting.pop() { Some(id) => s.on(Event::Exited { id, before_ready: true }, now), None => vec![] },
                };
                for a in actions {
                    match a {
                        Action::Start { id, .. } => starting.push(id),
                        Action::Assign(id, _) => { idle.retain(|i| *i != id); busy.push(id) }
                        Action::Refuse(_) | Action::FailWithInitError(_) | Action::Abandon(_) => settled += 1,
                        Action::Stop(_) => {}
                    }
                }
                proptest::prop_assert!(s.live_instances() <= 3);
                proptest::prop_assert!(s.queued() <= 5);
            }
            proptest::prop_assert_eq!(submitted, settled + s.queued() as u32 + busy.len() as u32);
        }

        /// Whatever happens (time passing, reaping, reconfiguring, exits in any state,
        /// shutdown), the idle and starting indexes agree with the instances, and work goes
        /// to the instance that became idle last.
        #[test]
        fn the_indexes_follow_every_change(ops in proptest::collection::vec(0u8..10, 1..300)) {
            let start = Instant::now();
            let mut now = start;
            let mut s = Scheduler::new(on_demand(4, 6));
            let mut next = 0u32;
            let mut live: Vec<InstanceId> = Vec::new();
            let mut idle_since: Vec<(Instant, InstanceId)> = Vec::new();
            for op in ops {
                let pick = |v: &Vec<InstanceId>| v.get(usize::from(op) % v.len().max(1)).copied();
                let actions = match op {
                    0 | 1 => { next += 1; s.on(Event::Submitted(next), now) }
                    2 | 3 => match pick(&live) {
                        Some(id) => {
                            idle_since.retain(|(_, i)| *i != id);
                            idle_since.push((now, id));
                            s.on(Event::Ready(id), now)
                        }
                        None => vec![],
                    },
                    4 => match pick(&live) {
                        Some(id) => {
                            live.retain(|i| *i != id);
                            idle_since.retain(|(_, i)| *i != id);
                            s.on(Event::Exited { id, before_ready: op % 2 == 0 }, now)
                        }
                        None => vec![],
                    },
                    5 => { now += Duration::from_secs(25); s.on(Event::Tick, now) }
                    6 => { now += Duration::from_millis(1); s.on(Event::Tick, now) }
                    7 => s.on(Event::Reconfigured(on_demand(4, 6)), now),
                    9 => match pick(&live) {
                        Some(id) => {
                            live.retain(|i| *i != id);
                            idle_since.retain(|(_, i)| *i != id);
                            s.on(Event::LaunchFailed(id), now)
                        }
                        None => vec![],
                    },
                    _ => s.on(Event::Shutdown, now),
                };
                for a in &actions {
                    match a {
                        Action::Start { id, .. } => live.push(*id),
                        Action::Assign(id, _) => {
                            // The most recently idle instance of those the model knows idle.
                            let idle_now: Vec<(Instant, InstanceId)> = idle_since
                                .iter()
                                .copied()
                                .filter(|(_, i)| s.instances.get(i).is_some_and(|x| x.slot == Slot::Busy))
                                .collect();
                            proptest::prop_assert!(idle_now.iter().any(|(_, i)| i == id), "{id:?} was not idle");
                            idle_since.retain(|(_, i)| i != id);
                        }
                        Action::Stop(id) => idle_since.retain(|(_, i)| i != id),
                        _ => {}
                    }
                }
                proptest::prop_assert!(s.indexes_agree(), "after {op}: {:?}", s);
                proptest::prop_assert!(s.live_instances() <= 4);
                if let Some(wakeup) = s.next_wakeup() {
                    proptest::prop_assert!(wakeup > now, "a Tick at {now:?} left an expired idle instance");
                }
            }
        }
    }

    #[test]
    fn a_launch_failure_fails_every_invocation_no_starting_instance_is_there_for() {
        let now = Instant::now();
        let mut s = Scheduler::new(on_demand(1, 10));
        let id = starts(&s.on(Event::Submitted(1), now))[0];
        for t in 2..=4 {
            assert!(s.on(Event::Submitted(t), now).is_empty());
        }
        // One instance, unable to start: all four learn it at once.
        assert_eq!(
            s.on(Event::LaunchFailed(id), now),
            (1..=4).map(Action::FailWithInitError).collect::<Vec<_>>()
        );
        assert_eq!(s.queued(), 0);
        // The next one starts an instance again, after the backoff.
        let a = s.on(Event::Submitted(5), now);
        assert!(
            matches!(a[..], [Action::Start { delay, .. }] if delay > Duration::ZERO),
            "{a:?}"
        );

        // Two starting: the one that fails leaves the other an invocation to fail or run.
        let mut s = Scheduler::new(on_demand(2, 10));
        let a = starts(&s.on(Event::Submitted(1), now))[0];
        let b = starts(&s.on(Event::Submitted(2), now))[0];
        s.on(Event::Submitted(3), now);
        assert_eq!(
            s.on(Event::LaunchFailed(a), now),
            vec![Action::FailWithInitError(1), Action::FailWithInitError(2)]
        );
        assert_eq!(
            s.on(Event::LaunchFailed(b), now),
            vec![Action::FailWithInitError(3)]
        );
    }

    #[test]
    fn work_goes_to_the_instance_idle_last() {
        let t0 = Instant::now();
        let mut s = Scheduler::new(on_demand(3, 10));
        let a = starts(&s.on(Event::Submitted(1), t0))[0];
        let b = starts(&s.on(Event::Submitted(2), t0))[0];
        let c = starts(&s.on(Event::Submitted(3), t0))[0];
        // Each takes one of the three queued invocations as it comes up.
        s.on(Event::Ready(a), t0);
        s.on(Event::Ready(b), t0);
        s.on(Event::Ready(c), t0);
        // Then they finish: c first, a last.
        s.on(Event::Ready(c), t0 + Duration::from_millis(1));
        s.on(Event::Ready(b), t0 + Duration::from_millis(2));
        s.on(Event::Ready(a), t0 + Duration::from_millis(3));
        let later = t0 + Duration::from_millis(4);
        assert_eq!(s.on(Event::Submitted(4), later), vec![Action::Assign(a, 4)]);
        assert_eq!(s.on(Event::Submitted(5), later), vec![Action::Assign(b, 5)]);
        // Reaping goes oldest first: c, idle since 1 ms, expires first.
        assert_eq!(
            s.next_wakeup(),
            Some(t0 + Duration::from_millis(1) + Duration::from_secs(60))
        );
        assert_eq!(
            s.on(Event::Tick, t0 + Duration::from_secs(61)),
            vec![Action::Stop(c)]
        );
    }
}
