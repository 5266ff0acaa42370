//! A device that boots with no broker and no real-time clock: the host started with its
//! broker unreachable and its wall clock years behind (Debian's libfaketime, preloaded into
//! the host alone, monotonic time left true as it is on a board without an RTC) serves at
//! once: a function invoked through `lambkin invoke` (which, on the device, signs with the
//! device's clock), local pub/sub through `lambkin sub` and `lambkin pub`, messages for the
//! broker taken into the spool. Offline it does not spin (its CPU time over a few seconds
//! stays small). When the broker appears, the spool drains in order and nothing is lost.
//! Over `mqtts://`, the broker's certificate is checked against the clock at every
//! connection: refused while the clock says it is not valid yet, accepted once the clock is
//! set right, without a restart.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use http_body_util::Full;
use serde_json::json;
use support::broker::Broker;
use support::{wait_for, Host};

const PATIENCE: Duration = Duration::from_secs(30);
/// How far back the host's clock is set: libfaketime's "-3y" (a year is 365 days there).
const YEARS_BACK: u64 = 3;
const OFFSET: Duration = Duration::from_secs(YEARS_BACK * 365 * 86_400);
const PROBE: &str = "com.example.OfflineProbe";
/// Messages published for the broker while it is away.
const SPOOLED: usize = 20;

/// libfaketime's preload library, where Debian's faketime package puts it.
fn libfaketime() -> Option<PathBuf> {
    let mut dirs = vec![PathBuf::from("/usr/lib/faketime")];
    if let Ok(entries) = std::fs::read_dir("/usr/lib") {
        dirs.extend(entries.flatten().map(|e| e.path().join("faketime")));
    }
    dirs.into_iter()
        .map(|d| d.join("libfaketime.so.1"))
        .find(|p| p.exists())
}

/// The environment that sets a process's wall clock by libfaketime: from `clock`, a file
/// holding the offset (read again every second, so a test can set the clock right), with
/// monotonic time untouched.
fn fake_clock_env(lib: &Path, clock: &Path) -> Vec<(String, String)> {
    vec![
        ("LD_PRELOAD".into(), lib.display().to_string()),
        (
            "FAKETIME_TIMESTAMP_FILE".into(),
            clock.display().to_string(),
        ),
        ("FAKETIME_CACHE_DURATION".into(), "1".into()),
        ("DONT_FAKE_MONOTONIC".into(), "1".into()),
    ]
}

/// PEM files: a CA, the broker's certificate and key (valid from January 1st of last year,
/// by the true clock), and the device's certificate and key, both signed by the CA.
struct TlsFiles {
    ca: PathBuf,
    server_cert: PathBuf,
    server_key: PathBuf,
    device_cert: PathBuf,
    device_key: PathBuf,
}

fn tls_files(dir: &Path) -> TlsFiles {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, SanType};
    // Each its own name: a certificate whose subject is its issuer's looks self-signed to
    // OpenSSL (mosquitto), which then refuses it.
    let named = |names: Vec<String>, common_name: &str| {
        let mut params = CertificateParams::new(names).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params
    };
    std::fs::create_dir_all(dir).unwrap();
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = named(Vec::new(), "offline-boot test CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let server_key = KeyPair::generate().unwrap();
    let mut server_params = named(vec!["localhost".to_owned()], "localhost");
    server_params
        .subject_alt_names
        .push(SanType::IpAddress([127, 0, 0, 1].into()));
    let year = this_year() as i32;
    server_params.not_before = rcgen::date_time_ymd(year - 1, 1, 1);
    server_params.not_after = rcgen::date_time_ymd(year + 2, 1, 1);
    let server = server_params.signed_by(&server_key, &ca, &ca_key).unwrap();
    let device_key = KeyPair::generate().unwrap();
    let device = named(Vec::new(), "offline-gateway")
        .signed_by(&device_key, &ca, &ca_key)
        .unwrap();
    let files = TlsFiles {
        ca: dir.join("ca.pem"),
        server_cert: dir.join("server.pem"),
        server_key: dir.join("server.key"),
        device_cert: dir.join("device.pem.crt"),
        device_key: dir.join("private.pem.key"),
    };
    std::fs::write(&files.ca, ca.pem()).unwrap();
    std::fs::write(&files.server_cert, server.pem()).unwrap();
    std::fs::write(&files.server_key, server_key.serialize_pem()).unwrap();
    std::fs::write(&files.device_cert, device.pem()).unwrap();
    std::fs::write(&files.device_key, device_key.serialize_pem()).unwrap();
    files
}

/// Starts `lambkin run` on `root` with `env` added, and waits until it is ready.
fn start_host(root: &Path, env: &[(String, String)]) -> Host {
    let addr_file = root.join("state/api.addr");
    let child = Command::new(env!("CARGO_BIN_EXE_lambkin"))
        .args(["run", "--listen", "127.0.0.1:0", "--root"])
        .arg(root)
        .env("LAMBKIN_LOG", "info")
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let addr = wait_for(PATIENCE, || std::fs::read_to_string(&addr_file).ok())
        .expect("the host did not become ready");
    Host {
        root: root.to_owned(),
        addr: addr.trim().to_owned(),
        child: Some(child),
    }
}

/// The year of the host's first log line: its wall clock, as it logs it.
fn host_log_year(root: &Path) -> i64 {
    let log = std::fs::read_to_string(root.join("logs/lambkin.log")).unwrap();
    log.lines()
        .next()
        .and_then(|l| l.get(..4))
        .and_then(|y| y.parse().ok())
        .unwrap_or_else(|| panic!("no timestamp in the host's log: {log}"))
}

/// This year, by the test's own (true) clock.
fn this_year() -> i64 {
    let days = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        / 86_400;
    // Close enough for a comparison in whole years, a year apart at least.
    1970 + (days as f64 / 365.2425) as i64
}

/// The user CPU time plus system CPU time the process `pid` has used, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<&str> = stat.rsplit_once(") ").unwrap().1.split(' ').collect();
    // After the command: state (3) … utime (14), stime (15), counted from 1 at the pid.
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

/// Deploys a component allowed to publish to the broker, whose Run step writes its token;
/// returns the token.
fn deploy_probe(root: &Path, scratch: &Path) -> String {
    let recipe = json!({
        "RecipeFormatVersion": "2020-01-25",
        "ComponentName": PROBE,
        "ComponentVersion": "1.0.0",
        "ComponentConfiguration": { "DefaultConfiguration": { "accessControl": {
            "aws.greengrass.ipc.mqttproxy": { "probe:mqttproxy:1": {
                "operations": ["*"], "resources": ["dev/*"]
            }}
        }}},
        "Manifests": [{ "Platform": { "os": "linux" }, "Lifecycle": {
            "Run": "printf '%s' \"$SVCUID\" > token.new && mv token.new token && exec sleep 600"
        }}],
    });
    support::deployed(root, scratch, &[recipe], &["-m", &format!("{PROBE}=1.0.0")]);
    let token_file = root.join("work").join(PROBE).join("token");
    wait_for(PATIENCE, || {
        std::fs::read_to_string(&token_file)
            .ok()
            .filter(|t| !t.is_empty())
    })
    .expect("the component did not write its token")
}

/// PublishToIoTCore of `dev/offline/I` for each `i`, QoS 1: each one accepted (spooled).
fn publish_for_the_broker(root: &Path, token: &str, count: usize) {
    let mut ipc = support::IpcClient::authenticated(root, token);
    for i in 0..count {
        let payload = base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            format!("message {i}"),
        );
        let (failed, body) = ipc.call(
            "aws.greengrass#PublishToIoTCore",
            json!({"topicName": format!("dev/offline/{i}"), "qos": "1", "payload": payload}),
        );
        assert!(!failed, "PublishToIoTCore {i} while offline: {body}");
    }
}

/// The spool's message count, as another reader of its database sees it.
fn spooled(root: &Path) -> u64 {
    let spool = lambkin::mqtt::Spool::open(Some(&root.join("state/spool.db")), 1 << 20).unwrap();
    spool.usage().unwrap().0
}

/// Waits for `count` messages `dev/offline/0…` in that order at the broker.
fn drained_in_order(messages: &Receiver<(String, Vec<u8>)>, count: usize) {
    let deadline = Instant::now() + PATIENCE;
    let mut got = Vec::new();
    while got.len() < count {
        let left = deadline.saturating_duration_since(Instant::now());
        match messages.recv_timeout(left) {
            Ok(m) => got.push(m),
            Err(_) => panic!(
                "{} of {count} spooled messages reached the broker: {got:?}",
                got.len()
            ),
        }
    }
    for (i, (topic, payload)) in got.iter().enumerate() {
        assert_eq!(topic, &format!("dev/offline/{i}"), "order: {got:?}");
        assert_eq!(payload, format!("message {i}").as_bytes());
    }
}

/// A Lambda API request signed as a client on the device signs it: with the host's key and
/// the device's clock (the host's, `OFFSET` behind).
fn on_device_clock(host: &Host, method: &str, path: &str, body: String) -> (u16, String) {
    let key = lambkin::keys::load(&host.root.join("state/credentials")).unwrap();
    let mut req = hyper::Request::builder()
        .method(method)
        .uri(path)
        .header("host", &host.addr)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.clone())))
        .unwrap();
    lambkin_proto::lambda::sigv4::sign_request(
        &mut req,
        body.as_bytes(),
        &lambkin_proto::lambda::sigv4::Key {
            access_key_id: &key.access_key_id,
            secret: &key.secret,
        },
        "us-east-1",
        SystemTime::now() - OFFSET,
    )
    .unwrap();
    let reply = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(lambkin::cli::request(&host.addr, req))
        .unwrap();
    (
        reply.status,
        String::from_utf8_lossy(&reply.body).into_owned(),
    )
}

/// `lambkin ARGS` on `root`, on the device's (fake) clock.
fn cli(root: &Path, clock_env: &[(String, String)], args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_lambkin"));
    command
        .args(args)
        .arg("--root")
        .arg(root)
        .envs(clock_env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null());
    command
}

#[test]
fn offline_on_a_clock_years_behind_the_host_serves_at_once_and_drains_its_spool_later() {
    let Some(lib) = libfaketime() else {
        support::skipped("libfaketime is not installed (scripts/install-test-deps: faketime)");
        return;
    };
    if support::mosquitto().is_none() {
        support::skipped("mosquitto is not installed (scripts/install-test-deps)");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let broker_dir = tmp.path().join("broker");
    std::fs::create_dir_all(&broker_dir).unwrap();
    let port = support::free_port();
    // The test's own session at the broker, made before the broker goes: what the host sends
    // once the broker is back waits there for the test, however fast the host is.
    let broker = Broker::in_dir(&broker_dir)
        .port(port)
        .persistent()
        .start()
        .unwrap();
    drop(support::mqtt_subscriber(
        port,
        "dev/#",
        "offline-boot-watcher",
        false,
    ));
    broker.stop();

    let root = tmp.path().join("root");
    std::fs::create_dir_all(&root).unwrap();
    std::fs::write(
        root.join("config.toml"),
        format!(
            "[mqtt]\nurl = \"mqtt://127.0.0.1:{port}\"\nreconnect_min_ms = 100\n\
             reconnect_max_ms = 1000\n"
        ),
    )
    .unwrap();
    let clock = tmp.path().join("clock");
    std::fs::write(&clock, format!("-{YEARS_BACK}y\n")).unwrap();
    let clock_env = fake_clock_env(&lib, &clock);
    let mut host = start_host(&root, &clock_env);
    let year = host_log_year(&root);
    assert!(
        year <= this_year() - (YEARS_BACK as i64) + 1,
        "the host's clock says {year}: libfaketime did not set it back"
    );

    // A function, made and invoked on the device's clock.
    let code = support::zip(&[(
        "app.py",
        "def handler(event, context):\n    return {'echo': event}\n",
        0o644,
    )]);
    let (status, body) = on_device_clock(
        &host,
        "POST",
        "/2015-03-31/functions",
        json!({
            "FunctionName": "offline-echo",
            "Runtime": "python3.11",
            "Role": "arn:aws:iam::000000000000:role/test",
            "Handler": "app.handler",
            "Code": { "ZipFile": code },
        })
        .to_string(),
    );
    assert_eq!(status, 201, "CreateFunction: {body}");
    let out = cli(&root, &clock_env, &["invoke", "offline-echo", r#"{"n":1}"#])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "lambkin invoke: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let answer: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(answer, json!({"echo": {"n": 1}}));

    // Local pub/sub from the shell.
    let mut sub = cli(&root, &clock_env, &["sub", "local/#"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut sub_err = BufReader::new(sub.stderr.take().unwrap());
    let mut line = String::new();
    sub_err.read_line(&mut line).unwrap();
    assert!(
        line.starts_with("subscribed to local/#"),
        "lambkin sub: {line}"
    );
    let out = cli(&root, &clock_env, &["pub", "local/hello", r#"{"n":2}"#])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut sub_out = BufReader::new(sub.stdout.take().unwrap());
    let mut line = String::new();
    sub_out.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), r#"local/hello {"n":2}"#);
    let _ = sub.kill();
    let _ = sub.wait();

    // Messages for the broker: spooled.
    let token = deploy_probe(&root, tmp.path());
    publish_for_the_broker(&root, &token, SPOOLED);
    assert_eq!(spooled(&root), SPOOLED as u64);

    // Offline, the host waits between connection attempts rather than spinning: over a few
    // seconds (a measuring window) it uses at most a twentieth of one CPU (an idle host uses
    // next to nothing; one that retries without pausing, several times this).
    let ticks_per_second = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .unwrap()
        .unwrap() as u64;
    let window = Duration::from_secs(3);
    let before = cpu_ticks(host.pid());
    let started = Instant::now();
    std::thread::sleep(window);
    let used = cpu_ticks(host.pid()) - before;
    let elapsed = started.elapsed();
    let limit = ticks_per_second * elapsed.as_millis() as u64 / 1000 / 20;
    assert!(
        used <= limit,
        "offline, the host used {used} ticks of CPU in {elapsed:?} (limit {limit}: 5%)"
    );
    assert_eq!(
        spooled(&root),
        SPOOLED as u64,
        "offline, the spool lost messages"
    );

    // The broker appears: the spool drains, in order, and is empty.
    let _broker = Broker::in_dir(&broker_dir)
        .port(port)
        .persistent()
        .start()
        .unwrap();
    let messages = support::mqtt_subscriber(port, "dev/#", "offline-boot-watcher", false);
    drained_in_order(&messages, SPOOLED);
    assert!(
        wait_for(PATIENCE, || (spooled(&root) == 0).then_some(())).is_some(),
        "the spool still holds messages"
    );
    assert_eq!(host.stop(), Some(0));
}

#[test]
fn the_brokers_certificate_is_checked_again_once_the_clock_is_set_right() {
    let Some(lib) = libfaketime() else {
        support::skipped("libfaketime is not installed (scripts/install-test-deps: faketime)");
        return;
    };
    if support::mosquitto().is_none() {
        support::skipped("mosquitto is not installed (scripts/install-test-deps)");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let files = tls_files(&tmp.path().join("tls"));
    let broker_dir = tmp.path().join("broker");
    std::fs::create_dir_all(&broker_dir).unwrap();
    let (port, tls_port) = (support::free_port(), support::free_port());
    // A second listener, with TLS, mutual.
    let tls = format!(
        "listener {tls_port} 127.0.0.1\ncafile {}\ncertfile {}\nkeyfile {}\n\
         require_certificate true\n",
        files.ca.display(),
        files.server_cert.display(),
        files.server_key.display()
    );
    let _broker = Broker::in_dir(&broker_dir)
        .port(port)
        .persistent()
        .config(&tls, Some(tls_port))
        .start()
        .unwrap();
    let messages = support::mqtt_subscriber(port, "dev/#", "offline-boot-watcher", false);

    let root = tmp.path().join("root");
    std::fs::create_dir_all(&root).unwrap();
    std::fs::write(
        root.join("config.toml"),
        format!(
            "[mqtt]\nurl = \"mqtts://127.0.0.1:{tls_port}\"\nca = {:?}\ncert = {:?}\nkey = {:?}\n\
             reconnect_min_ms = 100\nreconnect_max_ms = 1000\n",
            files.ca.display().to_string(),
            files.device_cert.display().to_string(),
            files.device_key.display().to_string(),
        ),
    )
    .unwrap();
    // Three years back, the broker's certificate is not valid yet.
    let clock = tmp.path().join("clock");
    std::fs::write(&clock, format!("-{YEARS_BACK}y\n")).unwrap();
    let mut host = start_host(&root, &fake_clock_env(&lib, &clock));
    let token = deploy_probe(&root, tmp.path());
    publish_for_the_broker(&root, &token, 5);
    let log = root.join("logs/lambkin.log");
    let refused = wait_for(PATIENCE, || {
        std::fs::read_to_string(&log).ok().and_then(|l| {
            l.lines()
                .find(|l| l.contains("NotValidYet"))
                .map(str::to_owned)
        })
    });
    assert!(
        refused.is_some(),
        "the host did not refuse the broker's certificate on its wrong clock: {}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    assert!(
        messages.try_recv().is_err(),
        "a message reached the broker through a certificate the host's clock calls not valid yet"
    );
    assert_eq!(spooled(&root), 5);

    // The clock set right (as NTP would, once the network is there): the next connection
    // checks the certificate again, now valid, and the spool drains; no restart.
    std::fs::write(&clock, "+0\n").unwrap();
    drained_in_order(&messages, 5);
    assert!(
        wait_for(PATIENCE, || (spooled(&root) == 0).then_some(())).is_some(),
        "the spool still holds messages"
    );
    assert_eq!(host.stop(), Some(0));
}
