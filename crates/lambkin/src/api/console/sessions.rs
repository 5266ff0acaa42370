//! What the console keeps ([`Console`]): its login links and sessions, in memory only: a link is random, good once and
//! for [`LINK_LIFETIME`]; redeeming it opens a session (a random cookie value) good for
//! [`SESSION_LIFETIME`]. Both are bounded in number (the oldest goes first), and a host that
//! restarts forgets them all. Time is passed in, so the rules are tested without waiting.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use lambkin_proto::lambda::sigv4::constant_time_eq;

use crate::mqtt::Mqtt;
use crate::pubsub::Subscription;

/// The console's state: login links, sessions, and each session's pub/sub subscription.
#[derive(Debug, Default)]
pub struct Console {
    pub(super) sessions: Sessions,
    /// One subscription per session (a new one replaces it), so bounded as sessions are.
    pub(super) subscriptions: Mutex<HashMap<SessionId, Arc<tokio::sync::Mutex<Subscription>>>>,
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
