//! The Telemetry API and the Logs API on each instance's Runtime API: an external extension
//! subscribes over HTTP or TCP and gets the platform records of each invocation with the
//! numbers of its REPORT line, and the function's own lines as `function` records; a bad
//! subscription is refused as AWS refuses it, and a destination outside the instance gets
//! nothing.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use serde_json::{json, Value};
use support::{json, python_function, zip, Host};

/// An external extension: listens on a loopback port (HTTP or TCP as `$TELEMETRY_PROTOCOL`
/// says), subscribes there with `$TELEMETRY_API` (`telemetry` or `logs`) and writes every record
/// it gets, one JSON object a line, to `$TELEMETRY_LOG`. With `$TELEMETRY_PROBE` it first makes
/// the bad subscriptions of the probe and writes their answers to `$EXTENSION_LOG`; with
/// `$TELEMETRY_URI` it subscribes that URI instead of its own listener.
const SUBSCRIBER: &str = r#"#!/usr/bin/env python3
import http.server, json, os, socketserver, sys, threading, time, urllib.request, urllib.error
api = os.environ["AWS_LAMBDA_RUNTIME_API"]
records = os.environ["TELEMETRY_LOG"]
lock = threading.Lock()
def keep(items):
    with lock, open(records, "a") as f:
        for item in items:
            f.write(json.dumps(item) + "\n")
def log(line):
    with open(os.environ["EXTENSION_LOG"], "a") as f:
        f.write(line + "\n")
slow = [float(os.environ.get("TELEMETRY_SLOW", "0"))]
class Http(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        # With $TELEMETRY_SLOW, the first batch takes that many seconds.
        time.sleep(slow[0])
        slow[0] = 0
        body = self.rfile.read(int(self.headers["Content-Length"]))
        keep(json.loads(body))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()
    def log_message(self, *args):
        pass
class Tcp(socketserver.StreamRequestHandler):
    def handle(self):
        for line in self.rfile:
            keep([json.loads(line)])
protocol = os.environ.get("TELEMETRY_PROTOCOL", "HTTP")
server_class = http.server.ThreadingHTTPServer if protocol == "HTTP" else socketserver.ThreadingTCPServer
server = server_class(("127.0.0.1", 0), Http if protocol == "HTTP" else Tcp)
threading.Thread(target=server.serve_forever, daemon=True).start()
port = server.server_address[1]
register = urllib.request.Request(
    "http://%s/2020-01-01/extension/register" % api, method="POST",
    data=json.dumps({"events": ["INVOKE", "SHUTDOWN"]}).encode(),
    headers={"Lambda-Extension-Name": os.path.basename(__file__)})
with urllib.request.urlopen(register) as r:
    ident = r.headers["Lambda-Extension-Identifier"]
def subscribe(path, body):
    request = urllib.request.Request(
        "http://%s%s" % (api, path), method="PUT", data=json.dumps(body).encode(),
        headers={"Lambda-Extension-Identifier": ident, "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request) as r:
            return [r.status, r.read().decode()]
    except urllib.error.HTTPError as e:
        answer = json.load(e)
        return [e.code, answer["errorType"], answer["errorMessage"]]
scheme = "http" if protocol == "HTTP" else "tcp"
uri = os.environ.get("TELEMETRY_URI", "%s://sandbox.localdomain:%d" % (scheme, port))
types = os.environ.get("TELEMETRY_TYPES", "platform,function").split(",")
good = {"schemaVersion": "2022-12-13", "types": types,
        "buffering": {"maxItems": 1000, "maxBytes": 262144, "timeoutMs": 25},
        "destination": {"protocol": protocol, "URI": uri}}
if os.environ.get("TELEMETRY_PROBE"):
    bad = dict(good, buffering={"maxItems": 5, "maxBytes": 262144, "timeoutMs": 25})
    log(json.dumps({"out_of_range": subscribe("/2022-07-01/telemetry", bad)}))
    far = dict(good, destination={"protocol": "HTTP", "URI": "http://192.168.1.1:80/"})
    log(json.dumps({"far": subscribe("/2022-07-01/telemetry", far)}))
    log(json.dumps({"logs": subscribe("/2020-08-15/logs", good)}))
    log(json.dumps({"then_telemetry": subscribe("/2022-07-01/telemetry", good)}))
else:
    path = "/2020-08-15/logs" if os.environ.get("TELEMETRY_API") == "logs" else "/2022-07-01/telemetry"
    log(json.dumps({"subscribed": subscribe(path, good)}))
while True:
    with urllib.request.urlopen(urllib.request.Request(
            "http://%s/2020-01-01/extension/event/next" % api,
            headers={"Lambda-Extension-Identifier": ident})) as r:
        event = json.load(r)
    if event["eventType"] == "INVOKE":
        log("INVOKE %s" % event["requestId"])
        # Written a piece at a time, as the runtime may write at the same moment.
        sys.stdout.write("extension saw ")
        sys.stdout.flush()
        print(event["requestId"], flush=True)
    else:
        log("SHUTDOWN %s" % event["shutdownReason"])
        sys.exit(0)
"#;

/// The handler prints a line naming its request, and `event["lines"]` more.
const HANDLER: &str = r#"
import sys
def handler(event, context):
    print("hello from %s" % context.aws_request_id, flush=True)
    sys.stdout.write("".join("line %d\n" % i for i in range(event.get("lines", 0))))
    sys.stdout.flush()
    return "done"
"#;

async fn publish_subscriber(host: &Host) -> String {
    let reply = host
        .call(
            "POST",
            "/2018-10-31/layers/subscriber/versions",
            &[("content-type", "application/json")],
            json!({"Content": {"ZipFile": zip(&[("extensions/subscriber", SUBSCRIBER, 0o755)])}})
                .to_string(),
        )
        .await;
    assert_eq!(
        reply.status,
        201,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    json(&reply)["LayerVersionArn"].as_str().unwrap().to_owned()
}

struct Setup {
    _tmp: tempfile::TempDir,
    host: Host,
    records: std::path::PathBuf,
    extension: std::path::PathBuf,
    function_log: std::path::PathBuf,
}

async fn setup(name: &str, env: &[(&str, &str)]) -> Setup {
    let tmp = tempfile::tempdir().unwrap();
    let host = Host::start(&tmp.path().join("root"));
    let shared = support::dir_for_components(tmp.path(), "shared");
    let records = shared.join("records.jsonl");
    let extension = shared.join("extension.log");
    let layer = publish_subscriber(&host).await;
    let mut vars = BTreeMap::from([
        ("TELEMETRY_LOG", records.display().to_string()),
        ("EXTENSION_LOG", extension.display().to_string()),
    ]);
    for (k, v) in env {
        vars.insert(k, (*v).to_owned());
    }
    // One instance: the records are counted per instance's init, and a second invocation
    // sent while the extension has not yet asked for its next event would otherwise start
    // another.
    let mut spec = python_function(
        name,
        HANDLER,
        json!({"Pinned": false, "MaxInstancesCount": 1}),
        vars,
    );
    spec["Layers"] = json!([layer]);
    assert_eq!(host.create(spec).await.status, 201);
    let function_log = tmp.path().join(format!("root/logs/{name}.log"));
    Setup {
        _tmp: tmp,
        host,
        records,
        extension,
        function_log,
    }
}

fn records(path: &Path) -> Vec<Value> {
    support::lines(path)
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn of_type<'a>(records: &'a [Value], kind: &str) -> Vec<&'a Value> {
    records.iter().filter(|r| r["type"] == kind).collect()
}

/// The fields of the function log's REPORT line for `request_id`.
fn report_line(log: &Path, request_id: &str) -> Option<BTreeMap<String, String>> {
    let prefix = format!("REPORT RequestId: {request_id}");
    let line = support::lines(log)
        .into_iter()
        .find_map(|l| l.find(&prefix).map(|at| l[at..].to_owned()))?;
    Some(
        line.split('\t')
            .skip(1)
            .filter_map(|f| f.split_once(": "))
            .map(|(k, v)| (k.to_owned(), v.split(' ').next().unwrap_or("").to_owned()))
            .collect(),
    )
}

async fn invoke_twice(s: &Setup, name: &str) -> Vec<String> {
    let mut ids = Vec::new();
    for _ in 0..2 {
        let reply = s.host.invoke(name, &json!({})).await;
        assert_eq!(reply.status, 200);
        assert_eq!(json(&reply), "done");
        ids.push(
            support::header(&reply, "x-amzn-requestid")
                .unwrap()
                .to_owned(),
        );
    }
    ids
}

/// Every invocation's `platform.start`, `platform.runtimeDone` and `platform.report` arrive,
/// the report with the REPORT line's numbers, and the function's line as a `function` record.
fn check_invocations(s: &Setup, ids: &[String]) {
    let got = support::wait_for(Duration::from_secs(10), || {
        let all = records(&s.records);
        let reports = of_type(&all, "platform.report").len();
        let lines = ids
            .iter()
            .all(|id| report_line(&s.function_log, id).is_some());
        (reports >= ids.len() && lines).then_some(all)
    })
    .unwrap_or_else(|| {
        panic!(
            "records: {:?}\nlog: {:?}",
            support::lines(&s.records),
            support::lines(&s.function_log)
        )
    });
    for id in ids {
        let mine = |kind: &str| -> Vec<Value> {
            of_type(&got, kind)
                .into_iter()
                .filter(|r| r["record"]["requestId"] == id.as_str())
                .cloned()
                .collect()
        };
        assert_eq!(mine("platform.start").len(), 1, "{got:?}");
        assert_eq!(mine("platform.start")[0]["record"]["version"], "$LATEST");
        let done = mine("platform.runtimeDone");
        assert_eq!(done.len(), 1, "{got:?}");
        assert_eq!(done[0]["record"]["status"], "success");
        // Its spans: the wait for the runtime's answer, then the answer, which together
        // take no longer than the invocation, the first starting with it.
        let spans = done[0]["record"]["spans"].as_array().expect("spans");
        let names: Vec<&str> = spans.iter().filter_map(|s| s["name"].as_str()).collect();
        assert_eq!(names, ["responseLatency", "responseDuration"], "{spans:?}");
        let total: f64 = spans
            .iter()
            .map(|s| s["durationMs"].as_f64().unwrap())
            .sum();
        let done_ms = done[0]["record"]["metrics"]["durationMs"].as_f64().unwrap();
        assert!(total <= done_ms + 0.02, "{spans:?} against {done_ms} ms");
        assert!(
            spans
                .iter()
                .all(|s| s["start"].as_str().is_some_and(|t| t.ends_with('Z'))),
            "{spans:?}"
        );
        assert!(spans[0]["start"].as_str() <= spans[1]["start"].as_str());
        let report = mine("platform.report");
        assert_eq!(report.len(), 1, "{got:?}");
        let metrics = &report[0]["record"]["metrics"];
        let line = report_line(&s.function_log, id).unwrap();
        assert_eq!(
            format!("{:.2}", metrics["durationMs"].as_f64().unwrap()),
            line["Duration"],
            "{metrics} {line:?}"
        );
        assert_eq!(
            metrics["billedDurationMs"].to_string(),
            line["Billed Duration"]
        );
        assert_eq!(metrics["memorySizeMB"].to_string(), line["Memory Size"]);
        assert_eq!(
            metrics["maxMemoryUsedMB"].to_string(),
            line["Max Memory Used"]
        );
        match line.get("Init Duration") {
            Some(init) => assert_eq!(
                &format!("{:.2}", metrics["initDurationMs"].as_f64().unwrap()),
                init
            ),
            None => assert!(metrics.get("initDurationMs").is_none(), "{metrics}"),
        }
        let said = format!("hello from {id}");
        assert!(
            of_type(&got, "function")
                .iter()
                .any(|r| r["record"].as_str() == Some(said.as_str())),
            "{got:?}"
        );
        // Every record has AWS's time format.
        for r in &got {
            let time = r["time"].as_str().unwrap();
            assert!(time.len() == 24 && time.ends_with('Z'), "{time}");
        }
    }
}

#[tokio::test]
async fn an_http_subscriber_gets_the_platform_records_and_the_function_lines() {
    let s = setup("observed", &[]).await;
    let ids = invoke_twice(&s, "observed").await;
    check_invocations(&s, &ids);
    let all = records(&s.records);
    // The init's records came too, once the extension had subscribed.
    for kind in [
        "platform.initStart",
        "platform.telemetrySubscription",
        "platform.extension",
        "platform.initRuntimeDone",
        "platform.initReport",
    ] {
        assert_eq!(of_type(&all, kind).len(), 1, "{kind}: {all:?}");
    }
    assert_eq!(
        of_type(&all, "platform.telemetrySubscription")[0]["record"],
        json!({"name": "subscriber", "state": "Subscribed", "types": ["platform", "function"]})
    );
    let extension = support::lines(&s.extension);
    assert_eq!(
        extension[0], r#"{"subscribed": [200, "OK"]}"#,
        "{extension:?}"
    );
    // While the first instance waits for its extension's next call, a busy machine may start
    // a second instance for the next invocation: its extension subscribes too. Every
    // subscription succeeds and every INVOKE arrives, in order.
    let (invokes, others): (Vec<&String>, Vec<&String>) = extension[1..]
        .iter()
        .partition(|line| line.starts_with("INVOKE "));
    assert!(
        others
            .iter()
            .all(|l| *l == r#"{"subscribed": [200, "OK"]}"#),
        "{extension:?}"
    );
    assert_eq!(
        invokes.iter().map(|l| l.as_str()).collect::<Vec<_>>(),
        ids.iter()
            .map(|id| format!("INVOKE {id}"))
            .collect::<Vec<_>>()
    );
}

/// What an extension writes arrives as `extension` records (and in the function's log), not as
/// the function's, even when both write at once.
#[tokio::test]
async fn an_extensions_own_lines_are_extension_records() {
    let s = setup(
        "talkative",
        &[("TELEMETRY_TYPES", "platform,function,extension")],
    )
    .await;
    let ids = invoke_twice(&s, "talkative").await;
    check_invocations(&s, &ids);
    let said: Vec<String> = ids.iter().map(|id| format!("extension saw {id}")).collect();
    let got = support::wait_for(Duration::from_secs(10), || {
        let all = records(&s.records);
        let lines: Vec<String> = of_type(&all, "extension")
            .iter()
            .filter_map(|r| r["record"].as_str().map(str::to_owned))
            .collect();
        said.iter().all(|l| lines.contains(l)).then_some(all)
    })
    .unwrap_or_else(|| panic!("records: {:?}", support::lines(&s.records)));
    for line in &said {
        assert!(
            !of_type(&got, "function")
                .iter()
                .any(|r| r["record"].as_str() == Some(line.as_str())),
            "an extension's line came as a function record: {got:?}"
        );
        assert!(
            support::lines(&s.function_log)
                .iter()
                .any(|l| l.ends_with(&format!("] {line}"))),
            "{:?}",
            support::lines(&s.function_log)
        );
    }
    assert_eq!(
        of_type(&got, "platform.telemetrySubscription")[0]["record"]["types"],
        json!(["platform", "function", "extension"])
    );
}

#[tokio::test]
async fn a_tcp_subscriber_gets_one_record_a_line() {
    let s = setup("observed_tcp", &[("TELEMETRY_PROTOCOL", "TCP")]).await;
    let ids = invoke_twice(&s, "observed_tcp").await;
    check_invocations(&s, &ids);
}

#[tokio::test]
async fn a_logs_api_subscriber_gets_its_own_record_names() {
    let s = setup("observed_logs", &[("TELEMETRY_API", "logs")]).await;
    let ids = invoke_twice(&s, "observed_logs").await;
    let got = support::wait_for(Duration::from_secs(10), || {
        let all = records(&s.records);
        (of_type(&all, "platform.report").len() >= 2).then_some(all)
    })
    .unwrap_or_else(|| panic!("records: {:?}", support::lines(&s.records)));
    let ends: Vec<&Value> = of_type(&got, "platform.end");
    assert_eq!(
        ends.iter()
            .map(|r| r["record"]["requestId"].as_str().unwrap())
            .collect::<Vec<_>>(),
        ids.iter().map(String::as_str).collect::<Vec<_>>()
    );
    assert!(of_type(&got, "platform.runtimeDone").is_empty());
    assert!(of_type(&got, "platform.initStart").is_empty());
    assert_eq!(
        of_type(&got, "platform.logsSubscription").len(),
        1,
        "{got:?}"
    );
}

#[tokio::test]
async fn bad_subscriptions_are_refused_as_aws_refuses_them() {
    let s = setup("probed", &[("TELEMETRY_PROBE", "1")]).await;
    let reply = s.host.invoke("probed", &json!({})).await;
    assert_eq!(json(&reply), "done");
    let answers: Vec<Value> = support::lines(&s.extension)
        .iter()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(answers.len(), 4, "{answers:?}");
    assert_eq!(answers[0]["out_of_range"][0], 400);
    assert_eq!(answers[0]["out_of_range"][1], "ValidationError");
    assert!(
        answers[0]["out_of_range"][2]
            .as_str()
            .unwrap()
            .contains("maxItems"),
        "{answers:?}"
    );
    assert_eq!(answers[1]["far"][1], "ValidationError", "{answers:?}");
    assert_eq!(answers[2]["logs"], json!([200, "OK"]));
    assert_eq!(answers[3]["then_telemetry"][0], 400, "{answers:?}");
    // The host is unaffected: the function answers again.
    assert_eq!(json(&s.host.invoke("probed", &json!({})).await), "done");
}

/// A destination on the loopback that no process of the instance listens on (here, another
/// program of the device) never gets a connection from the host.
#[tokio::test]
async fn a_destination_outside_the_instance_gets_nothing() {
    let stranger = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    stranger.set_nonblocking(true).unwrap();
    let uri = format!(
        "http://127.0.0.1:{}/",
        stranger.local_addr().unwrap().port()
    );
    let s = setup("misdirected", &[("TELEMETRY_URI", &uri)]).await;
    let reply = s.host.invoke("misdirected", &json!({})).await;
    assert_eq!(json(&reply), "done");
    let extension = support::lines(&s.extension);
    assert_eq!(
        extension[0], r#"{"subscribed": [200, "OK"]}"#,
        "{extension:?}"
    );
    // The subscription's batches (every 25 ms) would have connected long before this.
    let connected = support::wait_for(Duration::from_secs(2), || stranger.accept().ok());
    assert!(connected.is_none(), "the host connected to a stranger");
}

/// A destination that falls behind loses records, counted in a `platform.logsDropped` record,
/// and never holds up an invocation.
#[tokio::test]
async fn a_slow_destination_loses_records_not_invocations() {
    let s = setup("flooded", &[("TELEMETRY_SLOW", "3")]).await;
    // The first batch (the init's records) keeps the destination busy for 3 seconds.
    assert_eq!(json(&s.host.invoke("flooded", &json!({})).await), "done");
    let started = std::time::Instant::now();
    let reply = s.host.invoke("flooded", &json!({"lines": 5000})).await;
    assert_eq!(json(&reply), "done");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "the invocation waited for the destination: {:?}",
        started.elapsed()
    );
    let dropped = support::wait_for(Duration::from_secs(15), || {
        let all = records(&s.records);
        of_type(&all, "platform.logsDropped")
            .first()
            .map(|r| (*r).clone())
    })
    .unwrap_or_else(|| panic!("records: {}", support::lines(&s.records).len()));
    let lost = dropped["record"]["droppedRecords"].as_u64().unwrap();
    assert!(lost >= 1000, "{dropped}");
    assert!(dropped["record"]["droppedBytes"].as_u64().unwrap() > 0);
    assert!(dropped["record"]["reason"]
        .as_str()
        .unwrap()
        .contains("dropped"));
    // What was queued before the queue (maxItems records) filled still arrives.
    let queued = support::wait_for(Duration::from_secs(10), || {
        let n = of_type(&records(&s.records), "function").len();
        (n >= 990).then_some(n)
    });
    assert!(queued.is_some(), "{}", records(&s.records).len());
}

/// In a GreengrassContainer (a Lambda component's), the extension's listener is one of the
/// container's processes: it subscribes and gets the same records.
#[tokio::test]
async fn a_container_instances_subscriber_gets_the_records() {
    if let Some(why) = support::containers_unavailable() {
        support::skipped(&why);
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    let host = Host::start(&root);
    let shared = support::dir_for_components(tmp.path(), "shared");
    let layer = publish_subscriber(&host).await;
    let name = "com.example.Observed";
    let handler = HANDLER.replace("def handler(", "def lambda_handler(");
    let recipe = support::lambda_component(
        tmp.path(),
        name,
        &[("lambda_function.py", handler.as_str(), 0o644)],
        json!({
            "containerMode": "GreengrassContainer",
            "containerParams": {
                "memorySize": 131072,
                "volumes": {"0": {
                    "sourcePath": shared, "destinationPath": "/shared",
                    "permission": "rw", "addGroupOwner": false
                }},
            },
            "pinned": false,
            "layers": [layer],
            "lambdaExecutionParameters": {"EnvironmentVariables": {
                "TELEMETRY_LOG": "/shared/records.jsonl",
                "EXTENSION_LOG": "/shared/extension.log",
            }},
        }),
    );
    support::deployed(
        &root,
        tmp.path(),
        &[recipe],
        &["-m", &format!("{name}=1.0.0")],
    );
    let s = Setup {
        function_log: root.join(format!("logs/{name}.log")),
        records: shared.join("records.jsonl"),
        extension: shared.join("extension.log"),
        host,
        _tmp: tmp,
    };
    let ids = invoke_twice(&s, name).await;
    check_invocations(&s, &ids);
    assert_eq!(
        support::lines(&s.extension)[0],
        r#"{"subscribed": [200, "OK"]}"#
    );
}
