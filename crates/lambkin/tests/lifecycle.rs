//! On-demand and pinned lifecycles, queues, durability and shutdown, against the real binary
//! with real runtime processes (Lambkin's own Python runtime).

mod support;

use std::os::unix::fs::PermissionsExt;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use support::{
    children_of, cpus_allowed, header, json, lines, process_alive, python_function, wait_for, Host,
};

/// Sleeps `sleep` seconds, appends `seq` to `$OUT` if set, answers with its pid.
const WORKER: &str = r#"
import os, time

def handler(event, context):
    time.sleep(event.get("sleep", 0))
    gate = event.get("gate")
    if gate is not None:
        # Hold the instance until the test opens the gate (up to a minute).
        deadline = time.time() + 60
        while not os.path.exists(gate) and time.time() < deadline:
            time.sleep(0.01)
    meet = event.get("meet")
    if meet is not None:
        # Wait (up to a minute) until `count` invocations have arrived here: they are then
        # all in flight at once, however long an instance took to start.
        open(os.path.join(meet["dir"], str(os.getpid())), "w").close()
        deadline = time.time() + 60
        while len(os.listdir(meet["dir"])) < meet["count"] and time.time() < deadline:
            time.sleep(0.01)
    out = os.environ.get("OUT")
    if out is not None and "seq" in event:
        with open(out, "a") as f:
            f.write("%s\n" % event["seq"])
    return {"pid": os.getpid(), "seq": event.get("seq")}
"#;

#[tokio::test(flavor = "multi_thread")]
async fn on_demand_serves_64_concurrent_invocations_with_at_most_8_instances() {
    let tmp = tempfile::tempdir().unwrap();
    let host = Host::start(tmp.path());
    let created = host
        .create(python_function(
            "burst",
            WORKER,
            json!({"Pinned": false, "MaxInstancesCount": 8}),
            BTreeMap::new(),
        ))
        .await;
    assert_eq!(
        created.status,
        201,
        "{}",
        String::from_utf8_lossy(&created.body)
    );

    // Count the host's child processes while the burst runs.
    let running = Arc::new(AtomicBool::new(true));
    let most = Arc::new(AtomicUsize::new(0));
    let sampler = {
        let (running, most, pid) = (running.clone(), most.clone(), host.pid());
        std::thread::spawn(move || {
            while running.load(Ordering::Relaxed) {
                most.fetch_max(children_of(pid).len(), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(5));
            }
        })
    };
    let host = Arc::new(host);
    let mut calls = tokio::task::JoinSet::new();
    for i in 0..64 {
        let host = host.clone();
        calls.spawn(async move { host.invoke("burst", &json!({"sleep": 0.2, "seq": i})).await });
    }
    let mut pids = BTreeSet::new();
    let mut ok = 0;
    while let Some(reply) = calls.join_next().await {
        let reply = reply.unwrap();
        assert_eq!(reply.status, 200);
        assert_eq!(
            header(&reply, "x-amz-function-error"),
            None,
            "{}",
            String::from_utf8_lossy(&reply.body)
        );
        pids.insert(json(&reply)["pid"].as_u64().unwrap());
        ok += 1;
    }
    running.store(false, Ordering::Relaxed);
    sampler.join().unwrap();
    assert_eq!(ok, 64);
    assert!(pids.len() <= 8, "{} instances served the burst", pids.len());
    assert!(
        pids.len() >= 2,
        "the burst should have been spread over instances"
    );
    let most = most.load(Ordering::Relaxed);
    assert!(most <= 8, "{most} processes at once");
}

#[tokio::test(flavor = "multi_thread")]
async fn pinned_function_processes_200_queued_events_in_order() {
    let tmp = tempfile::tempdir().unwrap();
    let host = Host::start(&tmp.path().join("root"));
    let out = support::dir_for_components(tmp.path(), "out").join("order.txt");
    let env = BTreeMap::from([("OUT", out.display().to_string())]);
    let created = host
        .create(python_function(
            "ordered",
            WORKER,
            json!({"Pinned": true}),
            env,
        ))
        .await;
    assert_eq!(
        created.status,
        201,
        "{}",
        String::from_utf8_lossy(&created.body)
    );
    for seq in 0..200 {
        let reply = host.invoke_event("ordered", &json!({"seq": seq})).await;
        assert_eq!(reply.status, 202);
        assert!(header(&reply, "x-amzn-requestid").is_some());
    }
    let done = wait_for(Duration::from_secs(60), || {
        let l = lines(&out);
        (l.len() >= 200).then_some(l)
    })
    .expect("200 events did not run");
    let expected: Vec<String> = (0..200).map(|i| i.to_string()).collect();
    assert_eq!(done, expected);
    // A pinned function runs on one process.
    assert_eq!(children_of(host.pid()).len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_full_queue_answers_429_and_loses_nothing_it_accepted() {
    let tmp = tempfile::tempdir().unwrap();
    let host = Host::start(&tmp.path().join("root"));
    let out = support::dir_for_components(tmp.path(), "out").join("ran.txt");
    let env = BTreeMap::from([("OUT", out.display().to_string())]);
    let created = host
        .create(python_function(
            "small",
            WORKER,
            json!({"Pinned": true, "MaxQueueSize": 5}),
            env,
        ))
        .await;
    assert_eq!(created.status, 201);
    let mut accepted = Vec::new();
    let mut throttled = 0;
    for seq in 0..40 {
        let reply = host
            .invoke_event("small", &json!({"seq": seq, "sleep": 0.05}))
            .await;
        match reply.status {
            202 => accepted.push(seq.to_string()),
            429 => {
                throttled += 1;
                assert_eq!(
                    header(&reply, "x-amzn-errortype"),
                    Some("TooManyRequestsException")
                );
                assert!(header(&reply, "retry-after").is_some());
                assert_eq!(json(&reply)["Reason"], "ConcurrentInvocationLimitExceeded");
            }
            other => panic!("unexpected status {other}"),
        }
    }
    assert!(
        throttled > 0,
        "a queue of 5 must overflow under 40 quick events"
    );
    // A synchronous call is throttled the same way while the queue is full, or runs.
    let ran = wait_for(Duration::from_secs(30), || {
        let l = lines(&out);
        (l.len() >= accepted.len()).then_some(l)
    })
    .expect("accepted events did not all run");
    assert_eq!(ran, accepted, "exactly the accepted events ran, in order");
}

#[tokio::test(flavor = "multi_thread")]
async fn idle_on_demand_instances_are_reaped() {
    let tmp = tempfile::tempdir().unwrap();
    let host = Host::start(tmp.path());
    let created = host
        .create(python_function(
            "idle",
            WORKER,
            json!({"Pinned": false, "MaxIdleTimeInSeconds": 3}),
            BTreeMap::new(),
        ))
        .await;
    assert_eq!(created.status, 201);
    let first = host.invoke("idle", &json!({})).await;
    let pid = json(&first)["pid"].as_u64().unwrap() as u32;
    // Warm: the same instance answers again.
    let second = host.invoke("idle", &json!({})).await;
    assert_eq!(json(&second)["pid"].as_u64().unwrap() as u32, pid);
    assert!(
        wait_for(Duration::from_secs(10), || (!process_alive(pid))
            .then_some(()))
        .is_some(),
        "idle instance {pid} was not reaped"
    );
    // And a new one starts on demand.
    let third = host.invoke("idle", &json!({})).await;
    assert_eq!(third.status, 200);
    assert_ne!(json(&third)["pid"].as_u64().unwrap() as u32, pid);
}

#[tokio::test(flavor = "multi_thread")]
async fn events_accepted_before_a_sigkill_all_run_after_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    let mut host = Host::start(&root);
    let out = support::dir_for_components(tmp.path(), "out").join("ran.txt");
    let env = BTreeMap::from([("OUT", out.display().to_string())]);
    let created = host
        .create(python_function(
            "durable",
            WORKER,
            json!({"Pinned": true}),
            env,
        ))
        .await;
    assert_eq!(created.status, 201);
    // The first event holds the one instance until the gate opens, after the crash: the
    // crash finds every event still queued or in flight, however fast the machine.
    let gate = out.with_file_name("gate");
    let mut accepted = BTreeSet::new();
    for seq in 0..150 {
        let event = if seq == 0 {
            json!({"seq": seq, "gate": gate})
        } else {
            json!({"seq": seq, "sleep": 0.01})
        };
        let reply = host.invoke_event("durable", &event).await;
        assert_eq!(reply.status, 202);
        accepted.insert(seq.to_string());
    }
    let instances = children_of(host.pid());
    host.crash();
    assert_eq!(
        lines(&out),
        Vec::<String>::new(),
        "nothing ran before the crash"
    );
    // The killed host's runtime processes die with it.
    for pid in instances {
        assert!(
            wait_for(Duration::from_secs(5), || (!process_alive(pid))
                .then_some(()))
            .is_some(),
            "instance {pid} outlived its host"
        );
    }
    std::fs::write(&gate, "").unwrap();
    let _host = Host::start(&root);
    let ran = wait_for(Duration::from_secs(60), || {
        let ran: BTreeSet<String> = lines(&out).into_iter().collect();
        (ran.len() >= accepted.len()).then_some(ran)
    })
    .expect("events accepted before the crash did not all run after restart");
    assert_eq!(ran, accepted);
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_stops_every_instance_and_exits_cleanly() {
    let tmp = tempfile::tempdir().unwrap();
    let mut host = Host::start(tmp.path());
    let created = host
        .create(python_function(
            "many",
            WORKER,
            json!({"Pinned": false}),
            BTreeMap::new(),
        ))
        .await;
    assert_eq!(created.status, 201);
    let event = json!({"sleep": 0.3});
    let (a, b, c) = tokio::join!(
        host.invoke("many", &event),
        host.invoke("many", &event),
        host.invoke("many", &event)
    );
    assert!([a, b, c].iter().all(|r| r.status == 200));
    let instances = children_of(host.pid());
    assert!(!instances.is_empty());
    assert_eq!(host.stop(), Some(0));
    for pid in instances {
        assert!(!process_alive(pid), "instance {pid} outlived the host");
    }
    assert!(!tmp.path().join("state/api.addr").exists());
}

#[tokio::test(flavor = "multi_thread")]
async fn sequential_short_invocations_share_the_host_cpu_until_they_run_concurrently() {
    let host_cpus = cpus_allowed(std::process::id(), std::process::id());
    if !host_cpus.contains([',', '-']) {
        eprintln!("skipped: one CPU ({host_cpus})");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let host = Host::start(tmp.path());
    let created = host
        .create(python_function(
            "chatty",
            WORKER,
            json!({"Pinned": false, "MaxInstancesCount": 4}),
            BTreeMap::new(),
        ))
        .await;
    assert_eq!(created.status, 201);
    // Quick invocations one after another: the instance ends up on the host thread's CPU.
    // Placement pins only after a streak of short (< 1 ms) events: on a busy machine a streak
    // takes longer to come, so the test keeps invoking until one does, within a minute.
    let mut pid = 0;
    let mut shared = None;
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while std::time::Instant::now() < deadline {
        let reply = host.invoke("chatty", &json!({})).await;
        assert_eq!(reply.status, 200);
        pid = json(&reply)["pid"].as_u64().unwrap() as u32;
        let instance = cpus_allowed(pid, pid);
        if !instance.contains([',', '-']) {
            shared = Some(instance);
            break;
        }
    }
    let cpu = shared.expect("the instance never shared the host's CPU");
    assert_eq!(
        cpus_allowed(host.pid(), host.pid()),
        cpu,
        "the host's thread is on the instance's CPU"
    );
    // Two at once: the warm instance takes one, an instance started while the host's thread
    // is still pinned takes the other (it gets every CPU, not the pin); the second busy
    // instance, or the events' length, gives the first and the host every CPU back.
    // Each waits for the other inside the handler, so they are served at once by two
    // instances whatever the time a new instance takes to start.
    let meeting = tmp.path().join("meeting");
    std::fs::create_dir_all(&meeting).unwrap();
    std::fs::set_permissions(&meeting, std::fs::Permissions::from_mode(0o1777)).unwrap();
    let slow = json!({"meet": {"dir": meeting, "count": 2}});
    let (a, b) = tokio::join!(host.invoke("chatty", &slow), host.invoke("chatty", &slow));
    assert_eq!((a.status, b.status), (200, 200));
    let pids = [
        json(&a)["pid"].as_u64().unwrap(),
        json(&b)["pid"].as_u64().unwrap(),
    ];
    assert_ne!(pids[0], pids[1], "two instances served them");
    assert!(
        pids.contains(&u64::from(pid)),
        "the warm instance served one"
    );
    for instance in pids {
        let instance = instance as u32;
        assert_eq!(
            cpus_allowed(instance, instance),
            host_cpus,
            "instance {instance}"
        );
    }
    assert_eq!(cpus_allowed(host.pid(), host.pid()), host_cpus);
}

/// A pinned function's instance killed from outside comes back by itself, before any
/// invocation asks for it, and answers the next one.
#[tokio::test(flavor = "multi_thread")]
async fn a_killed_pinned_instance_comes_back_without_being_asked() {
    let tmp = tempfile::tempdir().unwrap();
    let host = Host::start(tmp.path());
    let created = host
        .create(python_function(
            "pinned",
            WORKER,
            json!({"Pinned": true}),
            BTreeMap::new(),
        ))
        .await;
    assert_eq!(created.status, 201);
    let first = host.invoke("pinned", &json!({})).await;
    assert_eq!(first.status, 200);
    let pid = json(&first)["pid"].as_u64().unwrap() as u32;
    let before = children_of(host.pid());
    support::signal(pid, "KILL");
    let back = wait_for(Duration::from_secs(30), || {
        children_of(host.pid())
            .into_iter()
            .find(|p| !before.contains(p) && process_alive(*p))
    })
    .expect("no new instance after the pinned one was killed");
    let next = host.invoke("pinned", &json!({})).await;
    assert_eq!(next.status, 200);
    let answered = json(&next)["pid"].as_u64().unwrap() as u32;
    assert_ne!(answered, pid);
    assert!(
        answered == back || children_of(back).contains(&answered),
        "the instance that came back ({back}) answered, not {answered}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn invocations_queued_for_a_function_that_cannot_start_all_get_its_error() {
    let tmp = tempfile::tempdir().unwrap();
    let host = Host::start(&tmp.path().join("root"));
    // Its program names an interpreter that is not there: the process cannot be started.
    host.created(json!({
        "FunctionName": "broken",
        "Runtime": "provided.al2023",
        "Role": "arn:aws:iam::000000000000:role/test",
        "Handler": "bootstrap",
        "Code": { "ZipFile": support::zip(&[("bootstrap", "#!/nonexistent/sh\nexit 0\n", 0o755)]) },
        "Timeout": 30,
        "Greengrass": {"Pinned": false, "MaxInstancesCount": 1},
    }))
    .await;
    let first = host.invoke("broken", &json!({})).await;
    assert_eq!(header(&first, "x-amz-function-error"), Some("Unhandled"));
    let launches = |host: &Host| {
        std::fs::read_to_string(host.root.join("logs/broken.log"))
            .unwrap_or_default()
            .matches("cannot start")
            .count()
    };
    // A function's log lines reach its file just after the answer.
    let logged = |host: &Host, at_least: usize| {
        wait_for(Duration::from_secs(10), || {
            (launches(host) >= at_least).then_some(())
        })
    };
    assert!(logged(&host, 1).is_some());
    assert_eq!(launches(&host), 1);
    // The next start waits out a backoff (250 ms after one failure): six invocations sent at
    // once queue behind it, and its one failure answers all six, instead of one per start
    // with a doubling backoff in between (250 ms, 0.5 s, 1 s... for the last).
    let host = Arc::new(host);
    let calls: Vec<_> = (0..6)
        .map(|_| {
            let host = host.clone();
            tokio::spawn(async move { host.invoke("broken", &json!({})).await })
        })
        .collect();
    for call in calls {
        let reply = call.await.unwrap();
        assert_eq!(
            reply.status,
            200,
            "{}",
            String::from_utf8_lossy(&reply.body)
        );
        assert_eq!(header(&reply, "x-amz-function-error"), Some("Unhandled"));
    }
    assert!(logged(&host, 2).is_some());
    assert_eq!(
        launches(&host),
        2,
        "one start for the six queued invocations"
    );
}
