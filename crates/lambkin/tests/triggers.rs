//! Local pub/sub from the shell (`lambkin pub`, `lambkin sub`) and the topics that trigger
//! Lambda components (`pubsubTopics` of type `PUB_SUB`, and `IOT_CORE` through a real
//! broker, mosquitto), against the real binary.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use base64::Engine as _;
use serde_json::{json, Value};
use sha2::Digest as _;
use support::broker::Broker;
use support::{lines, wait_for, Host};

const SEED_RECIPE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/components/seed-lambda-recipe.json"
);

/// How long anything in these tests may take to happen.
const PATIENCE: Duration = Duration::from_secs(30);

/// Appends the event and the topic it came on to `$OUT`, one JSON line per invocation.
const HANDLER: &str = r#"import json
import os


def lambda_handler(event, context):
    line = {"event": event, "subject": context.client_context.custom["subject"]}
    with open(os.environ["OUT"], "a") as f:
        f.write(json.dumps(line) + "\n")
    return {}
"#;

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn lambkin(root: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_lambkin"))
        .args(args)
        .arg("--root")
        .arg(root)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// `lambkin pub`, which must succeed; returns its stderr (the subscription count).
fn publish(root: &Path, topic: &str, message: &str) -> String {
    let out = lambkin(root, &["pub", topic, message]);
    assert!(
        out.status.success(),
        "pub {topic}: {}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stderr)
}

/// Deploys the seed Lambda recipe with its `pubsubTopics` replaced by `topics` and its
/// handler writing to `out`.
fn deploy_lambda(tmp: &Path, root: &Path, topics: Value, out: &Path) {
    let zip = support::zip_bytes(&[("lambda_function.py", HANDLER, 0o644)]);
    let artifacts = tmp.join("artifacts");
    let dir = artifacts.join("example-lambda-python/8.0.0");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("lambda-artifact.zip"), &zip).unwrap();
    let mut recipe: Value =
        serde_json::from_str(&std::fs::read_to_string(SEED_RECIPE).unwrap()).unwrap();
    recipe["Manifests"][0]["Artifacts"][0]["Digest"] =
        json!(base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(&zip)));
    let defaults = &mut recipe["ComponentConfiguration"]["DefaultConfiguration"];
    // The handler writes to the test's directory, which a container would not show it.
    defaults["containerMode"] = json!("NoContainer");
    defaults["pubsubTopics"] = topics;
    defaults["lambdaExecutionParameters"]["EnvironmentVariables"] =
        json!({ "OUT": out.to_str().unwrap() });
    support::deployed(root, tmp, &[recipe], &["-m", "example-lambda-python=8.0.0"]);
}

/// The JSON lines the handler wrote, once there are `count` of them.
fn wait_lines(path: &Path, count: usize) -> Vec<Value> {
    let mut last = Vec::new();
    wait_for(PATIENCE, || {
        last = lines(path);
        (last.len() >= count).then(|| last.clone())
    })
    .unwrap_or_else(|| panic!("the handler did not write {count} lines: {last:?}"))
    .iter()
    .map(|l| serde_json::from_str(l).unwrap())
    .collect()
}

#[test]
fn a_pub_sub_topic_with_a_wildcard_triggers_the_lambda_component() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    let _host = Host::start(&root);
    let out = support::dir_for_components(tmp.path(), "out").join("events.jsonl");
    deploy_lambda(
        tmp.path(),
        &root,
        json!({
            "0": { "topic": "core/topic", "type": "IOT_CORE" },
            "1": { "topic": "sensors/+/temp", "type": "PUB_SUB" },
            "2": { "topic": "#", "type": "IOT_CORE" },
        }),
        &out,
    );

    // Not matching: never delivered. The function is pinned and takes its invocations in
    // order, so if it had been, it would be written before the next one.
    assert!(publish(&root, "sensors/kitchen/humidity", r#"{"rh":40}"#).contains(" 0 "));
    assert!(publish(&root, "sensors/kitchen/temp", r#"{"c":21}"#).contains(" 1 "));
    let written = wait_lines(&out, 1);
    assert_eq!(
        written,
        vec![json!({"event": {"c": 21}, "subject": "sensors/kitchen/temp"})]
    );

    // Messages invoke the function in the order they were published.
    for i in 0..5 {
        publish(
            &root,
            &format!("sensors/room{i}/temp"),
            &format!(r#"{{"c":{i}}}"#),
        );
    }
    let written = wait_lines(&out, 6);
    let subjects: Vec<&str> = written[1..]
        .iter()
        .map(|l| l["subject"].as_str().unwrap())
        .collect();
    assert_eq!(
        subjects,
        (0..5)
            .map(|i| format!("sensors/room{i}/temp"))
            .collect::<Vec<_>>()
    );
    assert_eq!(written[5]["event"], json!({"c": 4}));

    // Removing the component ends its subscription.
    let removed = lambkin(&root, &["deploy", "--remove", "example-lambda-python"]);
    assert!(removed.status.success(), "{}", text(&removed.stderr));
    assert!(publish(&root, "sensors/kitchen/temp", r#"{"c":22}"#).contains(" 0 "));
}

/// A `lambkin sub` child, its stdout lines arriving on a channel.
struct Subscriber {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Subscriber {
    fn start(root: &Path, filter: &str) -> Subscriber {
        let mut child = Command::new(env!("CARGO_BIN_EXE_lambkin"))
            .args(["sub", filter, "--root"])
            .arg(root)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // Live once it says so on stderr.
        let mut stderr = BufReader::new(child.stderr.take().unwrap());
        let (ready_tx, ready_rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = stderr.read_line(&mut line);
            let _ = ready_tx.send(line);
        });
        let ready = ready_rx.recv_timeout(PATIENCE).unwrap();
        assert!(ready.starts_with("subscribed to"), "{ready:?}");
        let stdout = BufReader::new(child.stdout.take().unwrap());
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in stdout.lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Subscriber { child, lines }
    }

    fn next(&self) -> String {
        self.lines.recv_timeout(PATIENCE).unwrap()
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn sub_prints_what_pub_publishes() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    let _host = Host::start(&root);
    let sub = Subscriber::start(&root, "sensors/#");

    assert!(publish(&root, "sensors/kitchen/temp", r#"{"c": 21}"#).contains(" 1 "));
    publish(&root, "elsewhere", "ignored");
    publish(&root, "sensors/door", "open");
    assert_eq!(sub.next(), r#"sensors/kitchen/temp {"c":21}"#);
    assert_eq!(sub.next(), "sensors/door open");

    // Bad input is refused with the reason.
    let out = lambkin(&root, &["pub", "sensors/+", "x"]);
    assert_eq!(out.status.code(), Some(1));
    let out = lambkin(&root, &["sub", "a/#/b"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));

    // A subscriber that goes away is unsubscribed.
    drop(sub);
    let mut last = String::new();
    wait_for(PATIENCE, || {
        last = publish(&root, "sensors/door", "closed");
        last.contains(" 0 ").then_some(())
    })
    .unwrap_or_else(|| panic!("the subscription outlived its subscriber: {last}"));
}

/// The numbers `n` of the events the handler has written, once every one of `wanted` is
/// among them (redelivered ones may come twice).
/// The `n` of every event the function wrote to `path`, in the order it ran them.
fn numbers(path: &Path) -> Vec<u64> {
    lines(path)
        .iter()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter_map(|l| l["event"]["n"].as_u64())
        .collect()
}

/// A broker, a host at it (started with `env`) under `base/root`, and the recording Lambda
/// component deployed with an `IOT_CORE` trigger on `dev/+/in`, its subscription made; the
/// file its events go to. `None` (the test skipped) when mosquitto is not installed.
fn iot_core_function(base: &Path, env: &[(&str, &str)]) -> Option<(Broker, Host, PathBuf)> {
    let Some(broker) = Broker::start(base) else {
        support::skipped("mosquitto is not installed (scripts/install-test-deps)");
        return None;
    };
    let root = base.join("root");
    broker_config(&root, broker.port);
    let host = Host::start_with_env(&root, env);
    let out = support::dir_for_components(base, "out").join("events.jsonl");
    deploy_lambda(
        base,
        &root,
        json!({ "0": { "topic": "dev/+/in", "type": "IOT_CORE" } }),
        &out,
    );
    broker.logged("dev/+/in (QoS 1)");
    Some((broker, host, out))
}

fn wait_numbers(path: &Path, wanted: std::ops::Range<u64>) -> std::collections::BTreeSet<u64> {
    let mut seen = std::collections::BTreeSet::new();
    wait_for(PATIENCE, || {
        seen = numbers(path).into_iter().collect();
        wanted.clone().all(|n| seen.contains(&n)).then_some(())
    })
    .unwrap_or_else(|| {
        let missing: Vec<u64> = wanted.clone().filter(|n| !seen.contains(n)).collect();
        panic!("the function never got {missing:?}")
    });
    seen
}

/// A config.toml for a host at the broker on `port`, with a persistent session.
fn broker_config(root: &Path, port: u16) {
    std::fs::create_dir_all(root).unwrap();
    std::fs::write(
        root.join("config.toml"),
        format!(
            "[mqtt]\nurl = \"mqtt://127.0.0.1:{port}\"\nclient_id = \"lambkin-under-test\"\n\
             reconnect_min_ms = 100\nreconnect_max_ms = 500\n"
        ),
    )
    .unwrap();
}

/// Messages `{"n": N}` for `dev/N/in`.
fn batch(range: std::ops::Range<u64>) -> Vec<(String, String)> {
    range
        .map(|n| (format!("dev/{n}/in"), format!(r#"{{"n":{n}}}"#)))
        .collect()
}

/// The store fails (as on a full disk) for the first 140 broker messages that trigger the
/// function, more than the broker lets the host hold unacknowledged (the receive maximum,
/// 128; past it the broker sends the connection no more QoS 1): each is rejected,
/// and the host connects again so that the broker sends them again, until the store heals.
/// Every message reaches the function, and messages after the failures keep flowing.
#[test]
fn iot_core_messages_the_store_could_not_keep_are_delivered_once_it_heals() {
    let tmp = tempfile::tempdir().unwrap();
    let Some((broker, _host, out)) = iot_core_function(
        tmp.path(),
        &[("LAMBKIN_FAILPOINT", "store-persist-event*140")],
    ) else {
        return;
    };

    broker.publish(&batch(0..200));
    wait_numbers(&out, 0..200);
    // The store works again: later messages flow at once.
    broker.publish(&batch(200..210));
    let seen = wait_numbers(&out, 0..210);
    assert_eq!(seen.len(), 210, "{seen:?}");
}

/// Messages the broker keeps for the host's session while the host is stopped come as soon as
/// it connects again, before its components (and their triggers' subscriptions) are started:
/// the host holds them unacknowledged and gives them to the trigger that claims them. Each
/// runs once.
#[test]
fn iot_core_messages_kept_while_the_host_was_stopped_run_once_after_it_starts() {
    let tmp = tempfile::tempdir().unwrap();
    let Some((broker, mut host, out)) = iot_core_function(tmp.path(), &[]) else {
        return;
    };
    broker.publish(&batch(0..5));
    wait_numbers(&out, 0..5);

    host.stop();
    broker.publish(&batch(5..60));
    let _host = Host::start(&tmp.path().join("root"));
    wait_numbers(&out, 0..60);
    let runs = numbers(&out);
    let mut once = runs.clone();
    once.sort_unstable();
    once.dedup();
    assert_eq!(once.len(), runs.len(), "a message ran twice: {runs:?}");
}
