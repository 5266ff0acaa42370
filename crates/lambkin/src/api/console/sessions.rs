//! What the console keeps ([`Console`]): its login links and sessions, in memory only: a link is random, good once and
//! for [`LINK_LIFETIME`]; redeeming it opens a session (a random cookie value) good for
//! [`SESSION_LIFETIME`]. Both are bounded in number (the oldest goes first), and a host that
//! restarts forgets them all. A session's followed logs ([`LogStreams`]) and pub/sub tester
//! subscriptions ([`Subscriptions`]) are bounded too, and end with it. Time is passed in, so
//! the rules are tested without waiting.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::{Duration, Instant};

use lambkin_proto::lambda::sigv4::constant_time_eq;

use crate::mqtt::Mqtt;
use crate::pubsub::Subscription;

/// The console's state: login links, sessions, each session's followed logs and its pub/sub
/// subscription.
#[derive(Debug, Default)]
pub struct Console {
    pub(super) sessions: Arc<Sessions>,
    /// The logs sessions follow (at most [`MAX_LOG_STREAMS`] each).
    pub(super) streams: Arc<LogStreams>,
    /// One subscription per session (a new one replaces it), [`MAX_SUBSCRIPTIONS`] in all,
    /// each ended when unused for [`SUBSCRIPTION_IDLE`].
    pub(super) subscriptions: Arc<Subscriptions<Subscription>>,
    /// The broker connection, for its state and spool (`None` without `[mqtt]`).
    pub(super) mqtt: Option<Mqtt>,
}

impl Console {
    pub fn new(mqtt: Option<Mqtt>) -> Self {
        Self {
            mqtt,
            ..Self::default()
        }
    }

    /// A new login link's path (`/console/login?t=…`), for `lambkin console`.
    pub fn login_path(&self) -> String {
        format!(
            "/console/login?t={}",
            self.sessions.issue_link(Instant::now())
        )
    }
}

/// How long a printed login link may wait to be opened.
pub const LINK_LIFETIME: Duration = Duration::from_secs(5 * 60);
/// How long a session lasts after its login.
pub const SESSION_LIFETIME: Duration = Duration::from_secs(8 * 60 * 60);
/// Links and sessions kept at once; a new one past this pushes the oldest out.
const MAX_LIVE: usize = 32;

/// A session's id, as its cookie carries it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SessionId(String);

impl SessionId {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Login links not yet used and open sessions, each with its expiry.
#[derive(Debug, Default)]
pub struct Sessions {
    inner: Mutex<Live>,
}

#[derive(Debug, Default)]
struct Live {
    links: HashMap<String, Instant>,
    sessions: HashMap<String, Open>,
}

/// An open session: its expiry, and the key its page holds besides the cookie.
#[derive(Debug)]
struct Open {
    expires: Instant,
    /// Sent by the console's page as `X-Lambkin-Console` on every API call. The page keeps
    /// it in its origin's storage, which another port's pages cannot read, while a cookie is
    /// sent to every port of the host: the cookie alone opens no API.
    key: String,
}

trait Expires {
    fn expires(&self) -> Instant;
}

impl Expires for Instant {
    fn expires(&self) -> Instant {
        *self
    }
}

impl Expires for Open {
    fn expires(&self) -> Instant {
        self.expires
    }
}

impl Sessions {
    /// A new login link's token, good once until `now + LINK_LIFETIME`.
    pub fn issue_link(&self, now: Instant) -> String {
        let token = random_token();
        let mut live = self.lock();
        keep_room(&mut live.links, now);
        live.links.insert(token.clone(), now + LINK_LIFETIME);
        token
    }

    /// Spends a link: a new session, and its API key, if the link was issued, unused and
    /// unexpired.
    pub fn redeem(&self, link: &str, now: Instant) -> Option<(SessionId, String)> {
        let mut live = self.lock();
        // Removed whatever happens: an expired link is gone too.
        let expires = live.links.remove(link)?;
        if expires <= now {
            return None;
        }
        let session = random_token();
        let key = random_token();
        keep_room(&mut live.sessions, now);
        live.sessions.insert(
            session.clone(),
            Open {
                expires: now + SESSION_LIFETIME,
                key: key.clone(),
            },
        );
        Some((SessionId(session), key))
    }

    /// The open session a cookie value names, compared in constant time.
    pub fn session(&self, presented: &str, now: Instant) -> Option<SessionId> {
        let mut live = self.lock();
        live.sessions.retain(|_, open| open.expires > now);
        live.sessions
            .keys()
            .find(|id| constant_time_eq(id.as_bytes(), presented.as_bytes()))
            .map(|id| SessionId(id.clone()))
    }

    /// Whether `presented` is the API key of `session`, compared in constant time.
    pub fn key_matches(&self, session: &SessionId, presented: &str) -> bool {
        self.lock()
            .sessions
            .get(&session.0)
            .is_some_and(|open| constant_time_eq(open.key.as_bytes(), presented.as_bytes()))
    }

    /// Whether `session` is open at `now` (it was ended or expired otherwise).
    pub fn is_open(&self, session: &SessionId, now: Instant) -> bool {
        self.lock()
            .sessions
            .get(&session.0)
            .is_some_and(|open| open.expires > now)
    }

    /// Ends a session at once.
    pub fn end(&self, session: &SessionId) {
        self.lock().sessions.remove(&session.0);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Live> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Drops what expired, then the oldest while the map is full.
fn keep_room<V: Expires>(map: &mut HashMap<String, V>, now: Instant) {
    map.retain(|_, v| v.expires() > now);
    while map.len() >= MAX_LIVE {
        let Some(oldest) = map
            .iter()
            .min_by_key(|(_, v)| v.expires())
            .map(|(k, _)| k.clone())
        else {
            break;
        };
        map.remove(&oldest);
    }
}

/// Logs one session follows at once; a view opened past this ends the session's oldest
/// stream (a page that went away without its connection closing holds none for long).
pub const MAX_LOG_STREAMS: usize = 4;

/// The logs each session follows, by stream id. A follower asks [`LogStreams::is_live`] at
/// each step and ends once its stream was pushed out or its session logged out.
#[derive(Debug, Default)]
pub struct LogStreams {
    next: AtomicU64,
    live: Mutex<HashMap<SessionId, VecDeque<u64>>>,
}

impl LogStreams {
    /// A new stream for `session`, ending its oldest past [`MAX_LOG_STREAMS`].
    pub fn open(&self, session: &SessionId) -> u64 {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let mut live = self.lock();
        let streams = live.entry(session.clone()).or_default();
        streams.push_back(id);
        while streams.len() > MAX_LOG_STREAMS {
            streams.pop_front();
        }
        id
    }

    pub fn is_live(&self, session: &SessionId, id: u64) -> bool {
        self.lock()
            .get(session)
            .is_some_and(|streams| streams.contains(&id))
    }

    /// A stream ended (its reader went away).
    pub fn close(&self, session: &SessionId, id: u64) {
        let mut live = self.lock();
        if let Some(streams) = live.get_mut(session) {
            streams.retain(|s| *s != id);
            if streams.is_empty() {
                live.remove(session);
            }
        }
    }

    /// Ends every stream of `session`.
    pub fn end_session(&self, session: &SessionId) {
        self.lock().remove(session);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<SessionId, VecDeque<u64>>> {
        self.live.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Pub/sub tester subscriptions open at once, all sessions together (each may queue up to
/// the local pub/sub's per-subscriber bound).
pub const MAX_SUBSCRIPTIONS: usize = 4;
/// A subscription nobody polled for this long is ended: its page went away.
pub const SUBSCRIPTION_IDLE: Duration = Duration::from_secs(60);

/// Why a subscription was not kept.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{MAX_SUBSCRIPTIONS} pub/sub tester subscriptions are open already (other console pages): close one, or wait {}s for an unused one to end", SUBSCRIPTION_IDLE.as_secs())]
pub struct TooManySubscriptions;

/// Each session's pub/sub subscription (`T`: the local pub/sub's), with when it was last used.
#[derive(Debug)]
pub struct Subscriptions<T> {
    live: Mutex<HashMap<SessionId, Used<T>>>,
}

#[derive(Debug)]
struct Used<T> {
    subscription: Arc<tokio::sync::Mutex<T>>,
    used: Instant,
}

impl<T> Default for Subscriptions<T> {
    fn default() -> Self {
        Self {
            live: Mutex::new(HashMap::new()),
        }
    }
}

impl<T> Subscriptions<T> {
    /// Keeps `subscription` as the session's (its previous one ends), after ending the idle
    /// ones and those of sessions no longer open; refused past [`MAX_SUBSCRIPTIONS`].
    pub fn insert(
        &self,
        session: SessionId,
        subscription: T,
        now: Instant,
        is_open: impl Fn(&SessionId) -> bool,
    ) -> Result<Arc<tokio::sync::Mutex<T>>, TooManySubscriptions> {
        let mut live = self.lock();
        sweep(&mut live, now, is_open);
        live.remove(&session);
        if live.len() >= MAX_SUBSCRIPTIONS {
            return Err(TooManySubscriptions);
        }
        let subscription = Arc::new(tokio::sync::Mutex::new(subscription));
        live.insert(
            session,
            Used {
                subscription: subscription.clone(),
                used: now,
            },
        );
        Ok(subscription)
    }

    /// The session's subscription, marked used at `now`.
    pub fn used(&self, session: &SessionId, now: Instant) -> Option<Arc<tokio::sync::Mutex<T>>> {
        let mut live = self.lock();
        let entry = live.get_mut(session)?;
        entry.used = entry.used.max(now);
        Some(entry.subscription.clone())
    }

    /// Ends the session's subscription.
    pub fn remove(&self, session: &SessionId) {
        self.lock().remove(session);
    }

    /// Ends the idle subscriptions and those of sessions no longer open; says whether
    /// `subscription` is still kept.
    pub fn sweep(
        &self,
        now: Instant,
        is_open: impl Fn(&SessionId) -> bool,
        subscription: &Weak<tokio::sync::Mutex<T>>,
    ) -> bool {
        let mut live = self.lock();
        sweep(&mut live, now, is_open);
        live.values()
            .any(|u| Weak::ptr_eq(&Arc::downgrade(&u.subscription), subscription))
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<SessionId, Used<T>>> {
        self.live.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn sweep<T>(
    live: &mut HashMap<SessionId, Used<T>>,
    now: Instant,
    is_open: impl Fn(&SessionId) -> bool,
) {
    live.retain(|session, u| {
        now.saturating_duration_since(u.used) < SUBSCRIPTION_IDLE && is_open(session)
    });
}

/// 64 hex digits: 256 random bits.
fn random_token() -> String {
    crate::secret::hex(32)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_link_opens_one_session_once() {
        let s = Sessions::default();
        let now = Instant::now();
        let link = s.issue_link(now);
        let (session, key) = s.redeem(&link, now).unwrap();
        assert_eq!(s.session(session.as_str(), now), Some(session.clone()));
        assert!(s.key_matches(&session, &key));
        assert!(
            !s.key_matches(&session, session.as_str()),
            "the cookie is not the key"
        );
        assert!(!s.key_matches(&session, ""));
        assert_eq!(s.redeem(&link, now), None, "a link is good once");
        assert_eq!(s.redeem("not-issued", now), None);
        assert_eq!(s.session("not-a-session", now), None);
        s.end(&session);
        assert_eq!(
            s.session(session.as_str(), now),
            None,
            "a session ended is gone"
        );
    }

    #[test]
    fn links_and_sessions_expire() {
        let s = Sessions::default();
        let now = Instant::now();
        let link = s.issue_link(now);
        assert_eq!(s.redeem(&link, now + LINK_LIFETIME), None);
        let link = s.issue_link(now);
        let (session, _) = s.redeem(&link, now).unwrap();
        assert!(s
            .session(
                session.as_str(),
                now + SESSION_LIFETIME - Duration::from_secs(1)
            )
            .is_some());
        assert_eq!(s.session(session.as_str(), now + SESSION_LIFETIME), None);
    }

    #[test]
    fn a_session_follows_at_most_max_log_streams_the_oldest_ending() {
        let streams = LogStreams::default();
        let (a, b) = (SessionId("a".into()), SessionId("b".into()));
        let first = streams.open(&a);
        let others: Vec<u64> = (0..MAX_LOG_STREAMS).map(|_| streams.open(&a)).collect();
        let theirs = streams.open(&b);
        assert!(!streams.is_live(&a, first), "the oldest is pushed out");
        assert!(others.iter().all(|id| streams.is_live(&a, *id)));
        assert!(streams.is_live(&b, theirs), "another session's are its own");
        assert!(!streams.is_live(&b, others[0]));
        streams.close(&a, others[0]);
        assert!(!streams.is_live(&a, others[0]));
        streams.end_session(&a);
        assert!(others.iter().all(|id| !streams.is_live(&a, *id)));
        assert!(streams.is_live(&b, theirs));
    }

    #[test]
    fn subscriptions_are_bounded_and_end_idle_or_with_their_session() {
        let subs = Subscriptions::<u32>::default();
        let now = Instant::now();
        let open = |_: &SessionId| true;
        let session = |i: usize| SessionId(format!("s{i}"));
        let kept: Vec<_> = (0..MAX_SUBSCRIPTIONS)
            .map(|i| subs.insert(session(i), 0, now, open).unwrap())
            .collect();
        assert_eq!(
            subs.insert(session(99), 0, now, open).unwrap_err(),
            TooManySubscriptions,
            "past the bound"
        );
        // A session's new subscription replaces its own: not refused.
        let again = subs.insert(session(0), 1, now, open).unwrap();
        assert!(
            !subs.sweep(now, open, &Arc::downgrade(&kept[0])),
            "the replaced one ended"
        );
        assert!(subs.sweep(now, open, &Arc::downgrade(&again)));
        // Used just before the idle time ends: kept; the others end.
        let late = now + SUBSCRIPTION_IDLE;
        assert!(subs
            .used(&session(1), late - Duration::from_secs(1))
            .is_some());
        assert!(subs.sweep(late, open, &Arc::downgrade(&kept[1])));
        assert!(
            !subs.sweep(late, open, &Arc::downgrade(&kept[2])),
            "idle: ended"
        );
        assert_eq!(subs.len(), 1);
        // Room again, and a session that ended takes its subscription with it.
        let other = subs.insert(session(99), 0, late, open).unwrap();
        assert!(!subs.sweep(late, |s| *s != session(99), &Arc::downgrade(&other)));
        assert!(subs.sweep(late, open, &Arc::downgrade(&kept[1])));
        subs.remove(&session(1));
        assert_eq!(subs.len(), 0);
    }

    #[test]
    fn at_most_max_live_links_the_oldest_going_first() {
        let s = Sessions::default();
        let now = Instant::now();
        let first = s.issue_link(now);
        for i in 1..=MAX_LIVE {
            s.issue_link(now + Duration::from_millis(i as u64));
        }
        assert_eq!(s.redeem(&first, now + Duration::from_secs(1)), None);
        assert_eq!(s.lock().links.len(), MAX_LIVE);
    }
}
