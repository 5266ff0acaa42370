//! The HTTP/1.1 listener loop the API and the token exchange service share: accept, one task
//! per connection (upgrades allowed), `TCP_NODELAY`, and the limits every listener keeps:
//!
//! - at most [`Limits::connections`] at once: past it the loop stops accepting (the kernel's
//!   backlog holds the rest) until one ends;
//! - a request's head must arrive within [`Limits::head_timeout`], which hyper also applies to
//!   a keep-alive connection waiting for its next request: a half-sent header (slowloris) and
//!   an idle connection are both closed then;
//! - an accept error (out of descriptors, say) backs off, doubling up to a second, and is
//!   logged once per burst with the count of the ones in between, so neither a core nor the
//!   log is spent on it.
//!
//! On shutdown: stop accepting, let each connection finish its request, wait for them all.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;

/// A request's connection, handed to the handler with it (not in the request's extensions,
/// which would cost a map and two boxes per request for what few routes read).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Conn {
    /// The client's address.
    pub peer: Option<std::net::SocketAddr>,
    /// The address the client reached (the connection's local end): a listener on `0.0.0.0`
    /// is reached through loopback or through the network.
    pub local: Option<std::net::SocketAddr>,
}

/// What one listener allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Connections open at once.
    pub connections: usize,
    /// Time for a request's head, and for an idle keep-alive connection's next request.
    pub head_timeout: Duration,
    /// Largest request head.
    pub max_head_bytes: usize,
}

impl Limits {
    /// The Lambda API: clients are the device's processes and tools.
    pub const API: Limits = Limits {
        connections: 4096,
        head_timeout: Duration::from_secs(30),
        max_head_bytes: 64 * 1024,
    };
    /// The token exchange service: one SDK client per component at a time, at most a few.
    pub const TOKEN_EXCHANGE: Limits = Limits {
        connections: 1024,
        head_timeout: Duration::from_secs(30),
        max_head_bytes: 16 * 1024,
    };
}

/// Accept errors are retried after this, doubling up to [`MAX_ACCEPT_BACKOFF`].
const MIN_ACCEPT_BACKOFF: Duration = Duration::from_millis(5);
const MAX_ACCEPT_BACKOFF: Duration = Duration::from_secs(1);

/// Serves `listener` with `handler` (given each request, its connection and the shared
/// `state`) within `limits` until `shutdown` turns true. `what` names the listener in log
/// lines.
pub async fn serve<S, F, Fut, B>(
    listener: TcpListener,
    what: &'static str,
    limits: Limits,
    state: Arc<S>,
    handler: F,
    mut shutdown: watch::Receiver<bool>,
) where
    S: Send + Sync + 'static,
    F: Fn(Request<Incoming>, Conn, Arc<S>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Response<B>> + Send + 'static,
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let mut connections = JoinSet::new();
    let slots = Arc::new(Semaphore::new(limits.connections));
    let mut backoff = AcceptBackoff::default();
    loop {
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => match slot {
                Ok(slot) => slot,
                Err(_) => break,
            },
            () = stopped(&mut shutdown) => break,
        };
        tokio::select! {
            accepted = listener.accept() => {
                let stream = match accepted {
                    Ok((stream, _)) => {
                        backoff.succeeded(what);
                        stream
                    }
                    Err(e) => {
                        let pause = backoff.failed(what, &e);
                        tokio::select! {
                            () = tokio::time::sleep(pause) => {}
                            () = stopped(&mut shutdown) => break,
                        }
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                while connections.try_join_next().is_some() {}
                let state = state.clone();
                let handler = handler.clone();
                let mut conn_shutdown = shutdown.clone();
                let ends = Conn {
                    peer: stream.peer_addr().ok(),
                    local: stream.local_addr().ok(),
                };
                connections.spawn(async move {
                    let _slot = slot;
                    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                        let answer = handler(req, ends, state.clone());
                        async move { Ok::<_, Infallible>(answer.await) }
                    });
                    let conn = hyper::server::conn::http1::Builder::new()
                        .writev(true)
                        .timer(TokioTimer::new())
                        .header_read_timeout(limits.head_timeout)
                        .max_buf_size(limits.max_head_bytes.max(8192))
                        .serve_connection(TokioIo::new(stream), service)
                        .with_upgrades();
                    tokio::pin!(conn);
                    tokio::select! {
                        _ = conn.as_mut() => {}
                        () = stopped(&mut conn_shutdown) => {
                            conn.as_mut().graceful_shutdown();
                            let _ = conn.await;
                        }
                    }
                });
            }
            () = stopped(&mut shutdown) => break,
        }
    }
    drop(listener);
    while connections.join_next().await.is_some() {}
}

/// Accept errors: a growing pause, one log line per burst. Shared by every accept loop of the
/// host (the HTTP listeners here, each instance's Runtime API).
#[derive(Debug, Default)]
pub(crate) struct AcceptBackoff {
    pause: Option<Duration>,
    /// Errors since the last line logged, and when that was.
    unlogged: u64,
    logged_at: Option<Instant>,
}

impl AcceptBackoff {
    pub(crate) fn failed(&mut self, what: &str, error: &std::io::Error) -> Duration {
        let pause = self
            .pause
            .map_or(MIN_ACCEPT_BACKOFF, |p| (p * 2).min(MAX_ACCEPT_BACKOFF));
        self.pause = Some(pause);
        let quiet = self
            .logged_at
            .is_some_and(|at| at.elapsed() < Duration::from_secs(10));
        if quiet {
            self.unlogged += 1;
        } else {
            tracing::warn!(
                error = %error,
                retry_in_ms = pause.as_millis() as u64,
                "{what}: accept failed (and {} more times since the last report)",
                self.unlogged
            );
            self.unlogged = 0;
            self.logged_at = Some(Instant::now());
        }
        pause
    }

    pub(crate) fn succeeded(&mut self, what: &str) {
        if self.pause.take().is_some() && self.unlogged > 0 {
            tracing::info!(
                "{what}: accepting again after {} more failed accepts",
                self.unlogged
            );
        }
        self.unlogged = 0;
    }
}

async fn stopped(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|stop| *stop).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_errors_back_off_and_log_once_per_burst() {
        let mut b = AcceptBackoff::default();
        let e = std::io::Error::from_raw_os_error(24);
        let pauses: Vec<Duration> = (0..12).map(|_| b.failed("test", &e)).collect();
        assert_eq!(pauses[0], MIN_ACCEPT_BACKOFF);
        assert_eq!(pauses[1], MIN_ACCEPT_BACKOFF * 2);
        assert_eq!(
            *pauses.last().unwrap_or(&Duration::ZERO),
            MAX_ACCEPT_BACKOFF
        );
        // One line for the first error; the other eleven are counted, not logged.
        assert_eq!(b.unlogged, 11);
        b.succeeded("test");
        assert_eq!(b.failed("test", &e), MIN_ACCEPT_BACKOFF);
    }
}
