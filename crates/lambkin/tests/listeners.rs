//! The HTTP listeners under a client that holds connections, trickles its header, or leaves
//! the host with no file descriptor to accept with. The host keeps serving invocations, its
//! memory stays bounded, slow clients are closed after the head timeout, and a failing accept
//! neither spins a core nor floods the log.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use support::{wait_for, Host};

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap()
}

/// User + system CPU time of a process, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let rest = stat.rsplit_once(") ").unwrap().1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

fn echo_function() -> serde_json::Value {
    support::python_function(
        "echo",
        "def handler(event, context):\n    return event\n",
        json!({}),
        Default::default(),
    )
}

/// The token exchange service's address, from the environment a component gets.
fn tes_addr(root: &Path, host: &Host) -> String {
    let _ = host;
    let recipe = json!({
        "RecipeFormatVersion": "2020-01-25",
        "ComponentName": "com.example.Env",
        "ComponentVersion": "1.0.0",
        "Manifests": [{ "Platform": { "os": "linux" }, "Lifecycle": {
            "Run": "echo \"$AWS_CONTAINER_CREDENTIALS_FULL_URI\" > {work:path}/uri; exec sleep 600"
        }}],
    });
    support::deployed(
        root,
        root.parent().unwrap(),
        &[recipe],
        &["-m", "com.example.Env=1.0.0"],
    );
    let uri = wait_for(Duration::from_secs(20), || {
        std::fs::read_to_string(root.join("work/com.example.Env/uri"))
            .ok()
            .filter(|s| s.ends_with('\n'))
    })
    .unwrap();
    let authority = uri.trim().strip_prefix("http://").unwrap();
    authority.split('/').next().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_and_a_slow_header_do_not_stop_invocations() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    let host = Host::start(&root);
    assert_eq!(host.create(echo_function()).await.status, 201);
    assert_eq!(host.invoke("echo", &json!({"warm": 1})).await.status, 200);
    let tes = tes_addr(&root, &host);
    let before = rss_kib(host.pid());

    let mut held = Vec::new();
    for addr in [host.addr.as_str(), tes.as_str()] {
        // A slowloris client: half a header, one byte at a time.
        let mut slow = TcpStream::connect(addr).unwrap();
        slow.write_all(
            b"POST /2015-03-31/functions/echo/invocations HTTP/1.1\r\nHost: x\r\nX-Slow: ",
        )
        .unwrap();
        held.push(slow);
        // Past a listener's cap (the token exchange service takes 1,024) connections wait in
        // the kernel's backlog, or are not even taken by it: a connect that does not complete
        // within a moment is that.
        let target: std::net::SocketAddr = addr.parse().unwrap();
        let mut failed_in_a_row = 0;
        for _ in 0..2000 {
            // A SYN the kernel dropped while the queue was full is sent again after a second.
            match TcpStream::connect_timeout(&target, Duration::from_secs(3)) {
                Ok(stream) => {
                    held.push(stream);
                    failed_in_a_row = 0;
                }
                // The backlog stays full: more would only wait the same way.
                Err(_) if failed_in_a_row == 2 => break,
                Err(_) => failed_in_a_row += 1,
            }
        }
    }
    // With 2,000 connections held against each listener, invocations are still served, each on
    // a new connection.
    let mut latencies = Vec::new();
    for i in 0..20 {
        let started = Instant::now();
        let r = host.invoke("echo", &json!({ "i": i })).await;
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        latencies.push(started.elapsed());
    }
    latencies.sort();
    let after = rss_kib(host.pid());
    println!(
        "{} connections held: host RSS {before} -> {after} KiB; invoke p50 {:?}, max {:?}",
        held.len(),
        latencies[latencies.len() / 2],
        latencies[latencies.len() - 1]
    );
    // Bounded by the caps: at most 4,096 + 1,024 connections of a few kB each.
    assert!(
        after.saturating_sub(before) < 128 * 1024,
        "RSS grew by {} KiB",
        after - before
    );
    drop(held);
}

/// A listener with a one-second head timeout, in-process: the slow client is closed after it,
/// an idle keep-alive connection too, and a prompt one is answered.
#[tokio::test]
async fn slow_headers_and_idle_connections_are_closed_after_the_head_timeout() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let limits = lambkin::http::Limits {
        connections: 8,
        head_timeout: Duration::from_secs(1),
        max_head_bytes: 8192,
    };
    let server = tokio::spawn(lambkin::http::serve(
        listener,
        "test",
        limits,
        Arc::new(()),
        |_req, _conn, _state| async {
            hyper::Response::new(http_body_util::Full::new(bytes::Bytes::from_static(b"ok")))
        },
        stop_rx,
    ));
    let closed_within = |mut stream: TcpStream, limit: Duration| {
        stream.set_read_timeout(Some(limit)).unwrap();
        let started = Instant::now();
        let mut sink = Vec::new();
        // EOF (0) or a reset both mean the server closed it.
        let _ = stream.read_to_end(&mut sink);
        (
            started.elapsed(),
            String::from_utf8_lossy(&sink).into_owned(),
        )
    };
    let blocking = tokio::task::spawn_blocking(move || {
        let mut slow = TcpStream::connect(addr).unwrap();
        slow.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: a")
            .unwrap();
        let (took, _) = closed_within(slow, Duration::from_secs(10));
        assert!(
            took < Duration::from_secs(5),
            "slow header kept for {took:?}"
        );

        let mut idle = TcpStream::connect(addr).unwrap();
        idle.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        let (took, answered) = closed_within(idle, Duration::from_secs(10));
        assert!(answered.ends_with("ok"), "{answered}");
        assert!(
            took < Duration::from_secs(5),
            "idle connection kept for {took:?}"
        );
    });
    blocking.await.unwrap();
    stop_tx.send(true).unwrap();
    server.await.unwrap();
}

#[test]
fn out_of_descriptors_the_host_neither_spins_nor_floods_its_log() {
    if Command::new("prlimit").arg("--version").output().is_err() {
        support::skipped("prlimit is not installed");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    // A host allowed few descriptors, so a client can use them all up.
    let child = Command::new("prlimit")
        .args([
            "--nofile=96:96",
            env!("CARGO_BIN_EXE_lambkin"),
            "run",
            "--listen",
            "127.0.0.1:0",
            "--root",
        ])
        .arg(&root)
        .env("LAMBKIN_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Killed however the test ends (prlimit execs the host: same process).
    let host = Host {
        root: root.clone(),
        addr: String::new(),
        child: Some(child),
    };
    let addr = wait_for(Duration::from_secs(20), || {
        std::fs::read_to_string(root.join("state/api.addr")).ok()
    })
    .expect("host did not start");
    let addr = addr.trim().to_owned();
    let pid = host.pid();
    let mut held = Vec::new();
    for _ in 0..200 {
        if let Ok(s) = TcpStream::connect(&addr) {
            held.push(s);
        }
    }
    // Let the host run into the limit, then watch it for two seconds.
    let log = root.join("logs/lambkin.log");
    let size = |p: &Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
    std::thread::sleep(Duration::from_millis(300));
    let (ticks0, log0, t0) = (cpu_ticks(pid), size(&log), Instant::now());
    std::thread::sleep(Duration::from_secs(2));
    let ticks = cpu_ticks(pid) - ticks0;
    let grown = size(&log) - log0;
    let hz = 100.0;
    let busy = ticks as f64 / hz / t0.elapsed().as_secs_f64();
    println!(
        "out of descriptors: host CPU {:.1}% of a core, log +{grown} bytes in 2 s",
        busy * 100.0
    );
    assert!(busy < 0.25, "the host spun: {:.0}% of a core", busy * 100.0);
    assert!(grown < 16 * 1024, "the log grew by {grown} bytes");
    assert!(
        std::fs::read_to_string(&log)
            .unwrap()
            .contains("accept failed"),
        "the failure was not reported at all"
    );
    // Descriptors back: the host accepts again.
    drop(held);
    let served = wait_for(Duration::from_secs(10), || {
        let mut s = TcpStream::connect(&addr).ok()?;
        s.write_all(b"GET /lambkin/v1/health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .ok()?;
        let mut answer = String::new();
        s.read_to_string(&mut answer).ok()?;
        answer.starts_with("HTTP/1.1").then_some(())
    });
    assert!(served.is_some(), "the host did not accept again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_strangers_on_a_runtime_api_does_not_stop_its_function() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    let host = Host::start(&root);
    let created = host
        .create(support::python_function(
            "exposed",
            "import os\n\ndef handler(event, context):\n    return os.environ['AWS_LAMBDA_RUNTIME_API']\n",
            json!({"Pinned": true}),
            Default::default(),
        ))
        .await;
    assert_eq!(created.status, 201);
    let r = host.invoke("exposed", &json!({})).await;
    let api: String = serde_json::from_slice(&r.body).unwrap();
    // A thousand connections that send nothing, and a slowloris, from a process that is not
    // the runtime: each is refused and closed within seconds, and the function is served.
    let mut held: Vec<TcpStream> = (0..1000)
        .filter_map(|_| TcpStream::connect(&api).ok())
        .collect();
    let mut slow = TcpStream::connect(&api).unwrap();
    slow.write_all(b"GET /2018-06-01/runtime/invocation/next HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        .unwrap();
    held.push(slow);
    for i in 0..5 {
        let r = host.invoke("exposed", &json!({ "i": i })).await;
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    }
    let first = held.remove(0);
    let last = held.pop().unwrap();
    for mut stream in [first, last] {
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        let mut sink = Vec::new();
        let started = Instant::now();
        let _ = stream.read_to_end(&mut sink);
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "kept {:?}",
            started.elapsed()
        );
    }
}
