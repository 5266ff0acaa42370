//! The host run in the test's own runtime (`host::run` on listeners the test binds: port 0 and
//! a socket in a temporary root), driven through the signed Invoke API and stopped through its
//! shutdown future; and a timing rule of the host's own timers checked on a paused clock.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::BTreeMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

use lambkin::config::HostConfig;
use lambkin::host::{self, IpcListener, Listeners, RunOptions};
use lambkin::layout::Layout;
use support::{json, wait_for_async, Host};

/// A host in this runtime: the client the other tests use (on its root and address, signing
/// with the host's key), and the sender that resolves its shutdown future.
struct InProcess {
    client: Host,
    stop: oneshot::Sender<()>,
}

/// Binds the host's listeners as a test does (port 0, the IPC socket under `root`) and returns
/// them with the future that runs the host until `stop` is sent.
async fn host_on(root: &Path) -> (InProcess, impl Future<Output = anyhow::Result<()>>) {
    std::fs::create_dir_all(root).unwrap();
    let ipc_path = root.join("ipc.socket");
    let listeners = Listeners {
        api: TcpListener::bind("127.0.0.1:0").await.unwrap(),
        token_exchange: TcpListener::bind("127.0.0.1:0").await.unwrap(),
        ipc: Some(IpcListener {
            listener: lambkin::ipc::bind(&ipc_path).unwrap(),
            path: ipc_path,
        }),
    };
    let addr = listeners.api.local_addr().unwrap().to_string();
    let opts = RunOptions {
        layout: Layout::new(root),
        config: HostConfig::default(),
        with_example: false,
    };
    let (stop, stopped) = oneshot::channel::<()>();
    let run = host::run(opts, listeners, async {
        let _ = stopped.await;
    });
    let client = Host {
        root: root.to_owned(),
        addr,
        child: None,
    };
    (InProcess { client, stop }, run)
}

/// Runs `steps` beside the host until they end; a host that stops before them fails the test
/// with its error.
async fn beside<T>(
    run: &mut std::pin::Pin<&mut impl Future<Output = anyhow::Result<()>>>,
    steps: impl Future<Output = T>,
) -> T {
    tokio::select! {
        ran = run.as_mut() => panic!("the host stopped by itself: {ran:?}"),
        out = steps => out,
    }
}

/// Waits (beside the host) until it has written its address, which it does once it serves.
async fn ready(host: &Host) {
    let addr_file = host.root.join("state/api.addr");
    let written = wait_for_async(Duration::from_secs(20), || {
        std::fs::read_to_string(&addr_file).ok()
    })
    .await
    .expect("the host did not become ready within 20 s");
    assert_eq!(
        written.trim(),
        host.addr,
        "the host reports the listener it was given"
    );
}

/// Live processes carrying the marker of the host of `root` (every process it starts does).
fn started_by(root: &Path) -> Vec<u32> {
    let wanted = format!("{}={}", lambkin::orphans::MARKER, root.display());
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_string_lossy().parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/environ"))
                .is_ok_and(|env| env.split(|b| *b == 0).any(|var| var == wanted.as_bytes()))
        })
        .collect()
}

/// Stops the host through its shutdown future and waits (30 s at most) for `run` to return.
async fn stop(
    host: InProcess,
    run: std::pin::Pin<&mut impl Future<Output = anyhow::Result<()>>>,
) -> PathBuf {
    host.stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(30), run)
        .await
        .expect("the host did not stop within 30 s")
        .expect("the host stopped with an error");
    host.client.root.clone()
}

const PID: &str = "import os\n\n\ndef handler(event, context):\n    return {\"pid\": os.getpid(), \"echo\": event}\n";

#[tokio::test]
async fn a_host_in_this_runtime_serves_a_signed_invoke_and_stops_leaving_no_process() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    let (host, run) = host_on(&root).await;
    tokio::pin!(run);

    let pid = beside(&mut run, async {
        ready(&host.client).await;
        let created = host
            .client
            .create(support::python_function(
                "pid",
                PID,
                json!({}),
                BTreeMap::new(),
            ))
            .await;
        assert_eq!(
            created.status,
            201,
            "{}",
            String::from_utf8_lossy(&created.body)
        );
        let reply = host.client.invoke("pid", &json!({"n": 7})).await;
        assert_eq!(
            reply.status,
            200,
            "{}",
            String::from_utf8_lossy(&reply.body)
        );
        let body = json(&reply);
        assert_eq!(body["echo"], json!({"n": 7}));
        // An unsigned call is refused: the listener given is the host's signed API.
        let unsigned = host
            .client
            .call_unsigned("POST", "/2015-03-31/functions/pid/invocations", &[], "{}")
            .await;
        assert_eq!(unsigned.status, 403);
        u32::try_from(body["pid"].as_u64().unwrap()).unwrap()
    })
    .await;
    assert!(
        support::process_alive(pid),
        "the function's instance is warm"
    );
    assert!(started_by(&root).contains(&pid));

    let root = stop(host, run).await;
    assert!(
        !support::process_alive(pid),
        "instance {pid} outlived the host"
    );
    assert_eq!(
        started_by(&root),
        Vec::<u32>::new(),
        "processes outlived the host"
    );
    assert!(!root.join("state/api.addr").exists());
    assert!(!root.join("ipc.socket").exists());
}

/// The Lambda API's head timeout (`http::Limits::API`: 30 s) on the host's own listener, on a
/// paused clock: a client that sends half a request head, and one that sends nothing, are
/// closed 30 s after they connected, not before. Only the host's timers are involved (no
/// function, no child process), so the paused clock is the only clock that matters; it is
/// paused once the host is ready and resumed before it stops.
#[tokio::test]
async fn the_api_closes_a_slow_head_at_its_timeout_on_a_paused_clock() {
    /// The rule under test, written out: the test must fail if the limit changes.
    const HEAD_TIMEOUT: Duration = Duration::from_secs(30);
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    let (host, run) = host_on(&root).await;
    tokio::pin!(run);

    let closed_after = beside(&mut run, async {
        ready(&host.client).await;
        tokio::time::pause();
        let start = tokio::time::Instant::now();
        let mut slow = TcpStream::connect(&host.client.addr).await.unwrap();
        slow.write_all(b"POST /2015-03-31/functions/pid/invocations HTTP/1.1\r\nHost: ")
            .await
            .unwrap();
        let mut silent = TcpStream::connect(&host.client.addr).await.unwrap();
        let mut closed_after = Vec::new();
        for stream in [&mut slow, &mut silent] {
            // A deadline on the paused clock: twice the limit, reached at once if nothing else
            // is due.
            let mut buf = Vec::new();
            tokio::time::timeout(HEAD_TIMEOUT * 2, stream.read_to_end(&mut buf))
                .await
                .expect("the connection was not closed within twice the head timeout")
                .ok();
            closed_after.push(start.elapsed());
        }
        tokio::time::resume();
        closed_after
    })
    .await;
    for took in &closed_after {
        assert!(
            *took >= HEAD_TIMEOUT && *took < HEAD_TIMEOUT + Duration::from_secs(1),
            "closed after {took:?} on the paused clock, not at the {HEAD_TIMEOUT:?} head timeout"
        );
    }
    stop(host, run).await;
}

/// What the binary binds before the host runs: a taken API address is refused naming it, the
/// IPC socket is at `ROOT/ipc.socket` (absolute) and open to every user, and the token
/// exchange service is on loopback.
#[tokio::test]
async fn the_binary_binds_the_configured_listeners_or_names_the_taken_address() {
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    std::fs::create_dir_all(&root).unwrap();
    let layout = Layout::new(&root);
    let config = HostConfig::default();

    let taken = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = taken.local_addr().unwrap();
    let refused = Listeners::bind(&layout, &config, Some(addr))
        .await
        .expect_err("a taken address is refused");
    let message = format!("{:#}", anyhow::Error::from(refused));
    assert!(
        message.starts_with(&format!("cannot listen on {addr}: ")),
        "{message}"
    );
    assert!(
        !root.join("ipc.socket").exists(),
        "nothing is bound once an address is refused"
    );

    let bound = Listeners::bind(&layout, &config, Some("127.0.0.1:0".parse().unwrap()))
        .await
        .unwrap();
    assert!(bound.api.local_addr().unwrap().ip().is_loopback());
    assert!(bound
        .token_exchange
        .local_addr()
        .unwrap()
        .ip()
        .is_loopback());
    let ipc = bound.ipc.as_ref().expect("the IPC socket is bound");
    assert_eq!(ipc.path, root.join("ipc.socket"));
    let meta = std::fs::symlink_metadata(&ipc.path).unwrap();
    assert!(meta.file_type().is_socket());
    assert_eq!(meta.permissions().mode() & 0o777, 0o666);
}
