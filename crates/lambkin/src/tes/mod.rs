//! The token exchange service (`greengrass-reference.md` §7): AWS credentials for components
//! over loopback HTTP, in the ECS container-credentials shape every AWS SDK reads when it finds
//! `AWS_CONTAINER_CREDENTIALS_FULL_URI` and `AWS_CONTAINER_AUTHORIZATION_TOKEN`.
//!
//! - [`server`]: the listener and the route: `GET /2016-11-01/credentialprovider/` with the
//!   caller's `SVCUID` as `Authorization`; every error becomes a status in one place.
//! - [`source`]: where credentials come from (`[tes]` in `config.toml`): `static` keys, a
//!   `file`, or the AWS IoT credentials provider with the cache of its answers.
//! - [`iot`]: the AWS IoT credentials provider client (mutual TLS, `x-amzn-iot-thingname`).
//! - [`credentials`]: what they all share: the credentials and why none can be given.

pub mod credentials;
pub mod iot;
pub mod server;
pub mod source;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::TesConfig;
use crate::ipc::Tokens;

pub use credentials::{Credentials, FetchError};
pub use source::Source;

/// The one path the service answers (the nucleus's `HttpServerImpl.URL`).
pub const PATH: &str = "/2016-11-01/credentialprovider/";

/// A running token exchange service.
#[derive(Debug)]
pub struct Tes {
    addr: SocketAddr,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Tes {
    /// Serves on `listener` (bound to [`address`]) until [`Tes::shutdown`], answering from
    /// `source` (`Source::from_config`). Without `[tes]` it still answers, saying no source is
    /// configured.
    pub fn start(
        listener: TcpListener,
        source: Arc<Source>,
        tokens: Tokens,
    ) -> anyhow::Result<Self> {
        let addr = listener.local_addr()?;
        let (stop, stopped) = watch::channel(false);
        let state = Arc::new(server::State { tokens, source });
        let task = tokio::spawn(server::serve(listener, state, stopped));
        Ok(Self { addr, stop, task })
    }

    /// `AWS_CONTAINER_CREDENTIALS_FULL_URI`: `http://127.0.0.1:PORT/2016-11-01/credentialprovider/`.
    pub fn uri(&self) -> String {
        format!("http://{}{PATH}", self.addr)
    }

    /// Stops accepting, lets requests in progress finish, and returns when they have.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

/// Where the service listens: `127.0.0.1:<port>`, `[tes] port` or any free port by default.
pub fn address(config: Option<&TesConfig>) -> SocketAddr {
    SocketAddr::from((std::net::Ipv4Addr::LOCALHOST, config.map_or(0, |c| c.port)))
}

/// `2026-11-22T08:00:00Z`, the `Expiration` form of the ECS and IoT answers.
pub fn format_expiration(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
    let millis = crate::timestamp::iso8601_millis(UNIX_EPOCH + Duration::from_secs(secs));
    // `…:00.000Z` → `…:00Z`
    match millis.split_once('.') {
        Some((whole, _)) => format!("{whole}Z"),
        None => millis,
    }
}

/// Parses an ISO 8601 UTC time as AWS writes it: `2018-01-18T09:18:06Z`, optionally with
/// fractional seconds, `+00:00` or `+0000` for `Z`.
pub fn parse_expiration(s: &str) -> Option<SystemTime> {
    let s = s.trim();
    let body = s
        .strip_suffix('Z')
        .or_else(|| s.strip_suffix("+00:00"))
        .or_else(|| s.strip_suffix("+0000"))?;
    let (date, time) = body.split_once('T')?;
    let mut d = date.split('-');
    let year: i64 = d.next()?.parse().ok()?;
    let month: i64 = d.next()?.parse().ok()?;
    let day: i64 = d.next()?.parse().ok()?;
    // A year past 9999 is no expiration a provider means; it would only overflow.
    if d.next().is_some()
        || !(1970..=9999).contains(&year)
        || !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
    {
        return None;
    }
    let time = time.split_once('.').map_or(time, |(whole, _)| whole);
    let mut t = time.split(':');
    let hour: i64 = t.next()?.parse().ok()?;
    let minute: i64 = t.next()?.parse().ok()?;
    let second: i64 = t.next()?.parse().ok()?;
    if t.next().is_some() || hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let days = lambkin_proto::calendar::days_from_civil(
        year,
        u32::try_from(month).ok()?,
        u32::try_from(day).ok()?,
    );
    let secs = days * 86_400 + hour * 3600 + minute * 60 + second;
    UNIX_EPOCH.checked_add(Duration::from_secs(u64::try_from(secs).ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expirations_round_trip() {
        let t = parse_expiration("2018-01-18T09:18:06Z").unwrap();
        assert_eq!(
            t.duration_since(UNIX_EPOCH).unwrap().as_secs(),
            1_516_267_086
        );
        assert_eq!(format_expiration(t), "2018-01-18T09:18:06Z");
        assert_eq!(parse_expiration("2018-01-18T09:18:06.123+00:00"), Some(t));
        assert_eq!(
            parse_expiration("2024-02-29T00:00:00Z")
                .map(format_expiration)
                .as_deref(),
            Some("2024-02-29T00:00:00Z")
        );
        assert_eq!(parse_expiration("2018-01-18 09:18:06"), None);
        assert_eq!(parse_expiration("2018-13-18T09:18:06Z"), None);
        assert_eq!(parse_expiration("soon"), None);
    }
}
