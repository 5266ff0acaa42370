//! The HTTP/1.1 listener loop the API and the token exchange service share: accept (an
//! accept error is logged and the loop goes on), `TCP_NODELAY`, one task per connection
//! (upgrades allowed), and on shutdown: stop accepting, let each connection finish its request,
//! wait for them all.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

/// Serves `listener` with `handler` (given each request and the shared `state`) until
/// `shutdown` turns true. `what` names the listener in log lines.
pub async fn serve<S, F, Fut>(
    listener: TcpListener,
    what: &'static str,
    state: Arc<S>,
    handler: F,
    mut shutdown: watch::Receiver<bool>,
) where
    S: Send + Sync + 'static,
    F: Fn(Request<Incoming>, Arc<S>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Response<Full<Bytes>>> + Send + 'static,
{
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let stream = match accepted {
                    Ok((stream, _)) => stream,
                    Err(e) => {
                        tracing::warn!(error = %e, "{what}: accept failed");
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                while connections.try_join_next().is_some() {}
                let state = state.clone();
                let handler = handler.clone();
                let mut conn_shutdown = shutdown.clone();
                connections.spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        let answer = handler(req, state.clone());
                        async move { Ok::<_, Infallible>(answer.await) }
                    });
                    let conn = hyper::server::conn::http1::Builder::new()
                        .writev(true)
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

async fn stopped(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|stop| *stop).await;
}
