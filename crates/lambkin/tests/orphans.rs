//! What a component starts in the background does not outlive a host killed with SIGKILL by
//! more than the host's next start: that start ends it before running anything.

mod support;

use std::time::Duration;

use support::{process_alive, wait_for, Host};

const RECIPE: &str = r#"
RecipeFormatVersion: "2020-01-25"
ComponentName: com.example.Daemon
ComponentVersion: "1.0.0"
Manifests:
  - Platform:
      os: linux
    Lifecycle:
      Run: "sleep 300 & echo $! > {work:path}/daemon.pid; wait"
"#;

#[test]
fn a_restarted_host_ends_what_the_killed_one_left_running() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    let recipes = tmp.path().join("recipes");
    std::fs::create_dir_all(&recipes).unwrap();
    std::fs::write(recipes.join("daemon.yaml"), RECIPE).unwrap();
    let mut host = Host::start(&root);
    let out = support::deploy_dir(&root, &recipes, None, &["-m", "com.example.Daemon=1.0.0"]);
    assert!(out.status.success());
    let pid_file = root.join("work/com.example.Daemon/daemon.pid");
    let daemon: u32 = wait_for(Duration::from_secs(10), || {
        std::fs::read_to_string(&pid_file)
            .ok()
            .and_then(|s| s.trim().parse().ok())
    })
    .expect("the component never started its daemon");
    host.crash();
    // The shell died with the host; its background child did not.
    assert!(process_alive(daemon), "the daemon should still be running");
    let _host = Host::start(&root);
    assert!(
        wait_for(Duration::from_secs(10), || (!process_alive(daemon))
            .then_some(()))
        .is_some(),
        "the restarted host left the old daemon {daemon} running"
    );
    // And the component runs again, once.
    let again: u32 = wait_for(Duration::from_secs(10), || {
        std::fs::read_to_string(&pid_file)
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .filter(|p| *p != daemon)
    })
    .expect("the component did not start again");
    assert!(process_alive(again));
}
