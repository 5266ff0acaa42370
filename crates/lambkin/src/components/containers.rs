//! The Docker containers a component's `Run` step started (`greengrass-reference.md` §5): a
//! `docker run` is a client of the engine, and the container is the engine's child, not the
//! step's, so ending the step's processes does not end it. A container whose PID 1 ignores
//! SIGTERM (PID 1 ignores every signal it has no handler for) would outlive its component,
//! as the client's forwarded SIGTERM changes nothing and its SIGKILL only kills the client.
//!
//! So when a component whose `Run` step calls `docker` is stopped, the host asks the engine
//! to stop the containers it can tell are the component's: those handed the component's
//! token (`-e SVCUID` or `-e AWS_CONTAINER_AUTHORIZATION_TOKEN`, as every container that uses
//! IPC or the token exchange service is). The engine gives them SIGTERM, then SIGKILL once
//! the step's grace is nearly over. A container given neither is not found; its recipe needs
//! a `Shutdown` step that stops it by name.

use std::time::{Duration, Instant};

/// How long `docker ps` or `docker inspect` may take.
const LIST_TIMEOUT: Duration = Duration::from_secs(10);
/// What of the grace the engine keeps for itself: SIGKILL, then removing a `--rm` container.
const ENGINE_MARGIN: Duration = Duration::from_secs(1);

/// Whether a step's script runs the Docker client, so that stopping it may leave containers.
pub fn uses_docker(script: &str) -> bool {
    script
        .split(|c: char| c.is_whitespace() || matches!(c, ';' | '&' | '|' | '(' | ')' | '`'))
        .any(|word| word == "docker" || word.ends_with("/docker"))
}

/// The ids of the containers in `inspect` (lines of `ID ["NAME=VALUE",…]`, as
/// `INSPECT_FORMAT` prints them) whose environment holds `token` as the component's
/// `SVCUID` or `AWS_CONTAINER_AUTHORIZATION_TOKEN`.
pub fn handed_the_token(inspect: &str, token: &str) -> Vec<String> {
    if token.is_empty() {
        return Vec::new();
    }
    let wanted = [
        format!("SVCUID={token}"),
        format!("AWS_CONTAINER_AUTHORIZATION_TOKEN={token}"),
    ];
    inspect
        .lines()
        .filter_map(|line| line.split_once(' '))
        .filter(|(id, _)| !id.is_empty() && id.bytes().all(|b| b.is_ascii_hexdigit()))
        .filter(|(_, env)| {
            serde_json::from_str::<Vec<String>>(env)
                .is_ok_and(|env| env.iter().any(|v| wanted.contains(v)))
        })
        .map(|(id, _)| id.to_owned())
        .collect()
}

/// `docker inspect --format`: a container's full id and its environment as JSON (which
/// escapes the newlines and spaces a value may hold), one line per container.
const INSPECT_FORMAT: &str = "{{.Id}} {{json .Config.Env}}";

/// Stops the running containers handed `token` by `deadline` (the end of the stop grace):
/// SIGTERM, then SIGKILL after what is left of the grace once they are found, less the
/// engine's margin, in whole seconds (`docker stop -t`). Returns the ids it stopped, or why
/// it could not.
pub async fn stop_handed(token: &str, deadline: Instant) -> Result<Vec<String>, String> {
    let running = docker(&["ps", "-q", "--no-trunc"], LIST_TIMEOUT).await?;
    let ids: Vec<&str> = running.split_whitespace().collect();
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let mut args = vec!["inspect", "--format", INSPECT_FORMAT];
    args.extend(&ids);
    // A container that ended between the two calls makes `inspect` fail for it alone: the
    // others are still printed.
    let inspect = match docker(&args, LIST_TIMEOUT).await {
        Ok(out) | Err(DockerFailed::Status { out, .. }) => out,
        Err(e) => return Err(e.to_string()),
    };
    let ours = handed_the_token(&inspect, token);
    if ours.is_empty() {
        return Ok(ours);
    }
    let left = deadline.saturating_duration_since(Instant::now());
    let seconds = left.saturating_sub(ENGINE_MARGIN).as_secs().to_string();
    let mut args = vec!["stop", "-t", seconds.as_str()];
    args.extend(ours.iter().map(String::as_str));
    docker(&args, left + LIST_TIMEOUT).await?;
    Ok(ours)
}

#[derive(Debug, thiserror::Error)]
enum DockerFailed {
    #[error("cannot run docker: {0}")]
    Spawn(std::io::Error),
    #[error("docker gave no answer within {} s", .0.as_secs())]
    Timeout(Duration),
    #[error("docker {status}: {err}")]
    Status {
        status: std::process::ExitStatus,
        out: String,
        err: String,
    },
}

impl From<DockerFailed> for String {
    fn from(e: DockerFailed) -> Self {
        e.to_string()
    }
}

/// Runs `docker ARGS…` with the host's environment (the engine the host pulls `docker:`
/// artifacts into) and returns what it printed.
async fn docker(args: &[&str], limit: Duration) -> Result<String, DockerFailed> {
    let mut command = tokio::process::Command::new("docker");
    command
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    let output = tokio::time::timeout(limit, command.output())
        .await
        .map_err(|_| DockerFailed::Timeout(limit))?
        .map_err(DockerFailed::Spawn)?;
    let out = String::from_utf8_lossy(&output.stdout).into_owned();
    if output.status.success() {
        return Ok(out);
    }
    Err(DockerFailed::Status {
        status: output.status,
        out,
        err: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_script_that_runs_docker_is_told_from_one_that_mentions_it() {
        assert!(uses_docker("docker run --rm image:1"));
        assert!(uses_docker("exec /usr/bin/docker run image"));
        assert!(uses_docker("cd x && docker run image"));
        assert!(uses_docker("echo start;docker run image"));
        assert!(!uses_docker("python3 -u main.py --docker-free"));
        assert!(!uses_docker("echo dockerd"));
        assert!(!uses_docker(""));
    }

    #[test]
    fn only_containers_handed_the_token_are_found() {
        let token = "ABCDEFGHIJKLMNOPQRSTUVWXYZ";
        let inspect = [
            format!("aa11 [\"PATH=/bin\",\"SVCUID={token}\"]"),
            format!("bb22 [\"AWS_CONTAINER_AUTHORIZATION_TOKEN={token}\"]"),
            // Another component's token, a prefix of ours, a name that only ends like ours.
            "cc33 [\"SVCUID=OTHERTOKEN\"]".to_owned(),
            format!("dd44 [\"SVCUID={}\"]", &token[..10]),
            format!("ee55 [\"NOT_SVCUID={token}\"]"),
            // A value holding our token after a newline cannot pass as a line of its own.
            format!("ff66 [\"X=1\\nSVCUID={token}\"]"),
            // Not an id; not JSON.
            format!("zz!! [\"SVCUID={token}\"]"),
            format!("0a0a SVCUID={token}"),
        ]
        .join("\n");
        assert_eq!(handed_the_token(&inspect, token), ["aa11", "bb22"]);
        assert!(handed_the_token(&inspect, "").is_empty());
    }
}
