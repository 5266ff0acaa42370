"""Docker components against a real engine (engine.py: podman serving the Docker API, runc,
a local registry), driven by the real Docker CLI: no stand-in `docker` anywhere.

- The container component's recipe (tes_components/container-component-recipe.yaml, as the
  product brief gives it, unmodified) runs `docker run` with the IPC socket and the token
  handed in; the image's program uses awsiotsdk's IPC client (subscribe, publish) and gets
  credentials from the token exchange service with boto3, inside the container.
- `docker:` artifacts are pulled from the local registry before the deployment starts, by
  tag and by digest, and not pulled again when present; a missing image, a digest the
  registry does not have, or a manifest that does not match its pinned digest (served by a
  tampering mirror) fails the deployment with the engine's reason.
- A component's container does not outlive it: stopped, restarted, replaced by a deployment
  or stopped with the host, its container is gone within the stop grace, even though its
  PID 1 ignores SIGTERM."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml

import engine
from support import unique_name, until

HERE = Path(__file__).parent
RECIPE = HERE / "tes_components" / "container-component-recipe.yaml"
PROGRAM = HERE / "docker_components" / "container_subscriber.py"
REGION = "eu-central-1"
# The stop grace of the hosts here ([lambda] shutdown_grace_ms): SIGTERM, then SIGKILL.
GRACE = 3.0


class DockerHost:
    """A host on its own root whose `docker` reaches the test engine (DOCKER_HOST, which the
    host passes on to its components), with static credentials for its token exchange
    service."""

    def __init__(self, binary: Path, base: Path, eng: engine.Engine):
        self.binary, self.base, self.root, self.engine = binary, base, base / "root", eng
        self.keys = {"access_key": "AKIA" + secrets.token_hex(8).upper(),
                     "secret_key": secrets.token_urlsafe(30),
                     "token": secrets.token_urlsafe(60)}
        (self.root / "state").mkdir(parents=True)
        (self.root / "config.toml").write_text(
            f'region = "{REGION}"\n'
            '[tes]\nsource = "static"\n'
            f'access_key_id = "{self.keys["access_key"]}"\n'
            f'secret_access_key = "{self.keys["secret_key"]}"\n'
            f'session_token = "{self.keys["token"]}"\n'
            f'[lambda]\nshutdown_grace_ms = {int(GRACE * 1000)}\n')
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("AWS_", "DOCKER_", "CONTAINER"))}
        env["DOCKER_HOST"] = env["CONTAINER_HOST"] = eng.docker_host
        self.log = open(base / "host.log", "wb")
        self.proc = subprocess.Popen(
            [str(binary), "run", "--root", str(self.root), "--listen", "127.0.0.1:0"],
            stdin=subprocess.DEVNULL, stdout=self.log, stderr=self.log,
            start_new_session=True, env=env)
        until(lambda: (self.root / "state" / "api.addr").is_file() or self.proc.poll() is not None,
              "the host starting", self.output)
        assert self.proc.poll() is None, self.output()
        self.deployments = 0

    def output(self) -> str:
        logs = [(self.base / "host.log").read_text(errors="replace")]
        for log in sorted((self.root / "logs").glob("*.log")):
            logs.append(f"--- {log.name}\n" + log.read_text(errors="replace")[-6000:])
        return "\n".join(logs)

    def cli(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        return subprocess.run([str(self.binary), *args, "--root", str(self.root)],
                              capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL)

    def deploy(self, recipe: dict, *extra: str) -> subprocess.CompletedProcess:
        """`lambkin deploy` of `recipe` as root (`--run-with`: a component that runs
        containers needs root or the engine's group, as the Docker docs say)."""
        self.deployments += 1
        recipes = self.base / f"recipes-{self.deployments}"
        recipes.mkdir()
        (recipes / "recipe.json").write_text(json.dumps(recipe))
        name, version = recipe["ComponentName"], recipe["ComponentVersion"]
        return self.cli("deploy", "-r", str(recipes),
                        "-m", f"{name}={version}", "--run-with", f"{name}:posixUser=root",
                        *extra)

    def deployed(self, recipe: dict, *extra: str) -> None:
        result = self.deploy(recipe, *extra)
        assert result.returncode == 0, result.stdout + result.stderr + self.output()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            assert self.proc.wait(timeout=60) == 0, self.output()
        self.log.close()


@pytest.fixture
def docker_host(lambkin_bin, device_dir, container_engine):
    host = DockerHost(lambkin_bin, device_dir("docker"), container_engine)
    yield host
    host.stop()


class Subscription:
    """`lambkin sub FILTER`: the lines it prints, collected by a thread."""

    def __init__(self, host: DockerHost, topic_filter: str):
        self.lines: list[str] = []
        self.proc = subprocess.Popen(
            [str(host.binary), "sub", topic_filter, "--root", str(host.root)],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
            text=True)
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)


def image_of_the_recipe(eng: engine.Engine) -> str:
    """`container-subscriber:latest`, the image the recipe runs: this suite's Python with
    awsiotsdk and boto3, and the program of docker_components/container_subscriber.py."""
    tar = engine.python_rootfs(engine.image_cache(),
                               {"/app/container_subscriber.py": PROGRAM.read_bytes()})
    python = os.path.realpath(sys.executable)
    return eng.import_image(tar, "container-subscriber:latest",
                            f'CMD ["{python}", "-u", "/app/container_subscriber.py"]',
                            "ENV PYTHONPATH=/opt/site-packages")


def test_the_container_recipe_runs_the_sdk_inside_a_real_container(docker_host):
    host, eng = docker_host, docker_host.engine
    image = image_of_the_recipe(eng)
    recipe = yaml.safe_load(RECIPE.read_text())
    name = recipe["ComponentName"]
    # Its answers go to local/inference/results: a publish the deployment allows, next to
    # the recipe's own subscribe policy.
    config = {name: {"MERGE": {"accessControl": {"aws.greengrass.ipc.pubsub": {
        f"{name}:pubsub:results": {
            "policyDescription": "answers", "operations": ["aws.greengrass#PublishToTopic"],
            "resources": ["local/inference/results"]}}}}}}
    results = Subscription(host, "local/inference/results")
    try:
        host.deployed(recipe, "-c", json.dumps(config))

        def started():
            log = host.root / "logs" / f"{name}.log"
            if log.is_file() and "Run failed" in log.read_text(errors="replace"):
                pytest.fail(f"the component's docker run failed\n{host.output()}")
            return eng.containers(image=image)

        containers = until(started, "the component's container running", host.output)
        assert len(containers) == 1, containers

        # Each message on local/inference is answered; asked until the container has
        # subscribed (its subscription is made after the container starts).
        jobs = iter(range(1, 10_000))
        until(lambda: _answered_any(host, results, next(jobs)), "the container's answer",
              host.output, timeout=90)
        answer = json.loads(results.lines[-1].split(" ", 1)[1])
    finally:
        results.close()
    seen = answer["seen"]
    assert answer["echo"]["job"] >= 1 and answer["n"] >= 1, answer
    # In a container (PID 1 of its own PID namespace), with what `docker run` handed in and
    # none of the host's Greengrass variables it did not (PATH, HOSTNAME, HOME and the image's
    # PYTHONPATH come from the engine and the image).
    assert seen["pid"] == 1, seen
    assert all(seen["handed"].values()), seen
    assert seen["svcuid_is_the_token"], seen
    assert seen["msg_count_limit"] == "2000", seen
    assert seen["socket"] == str(host.root / "ipc.socket"), seen
    assert not any(k.startswith(("AWS_REGION", "AWS_IOT", "GGC_")) for k in seen["other_env"]), seen
    # boto3 in the container got the host's credentials from the token exchange service.
    creds = seen["credentials"]
    assert creds["method"] == "container-role", creds
    assert (creds["access_key"], creds["secret_key"], creds["token"]) == (
        host.keys["access_key"], host.keys["secret_key"], host.keys["token"])


def _answered_any(host: DockerHost, results: Subscription, job: int) -> bool:
    before = len(results.lines)
    host.cli("pub", "local/inference", json.dumps({"job": job}), timeout=30)
    deadline = time.monotonic() + 1.0
    while time.monotonic() < deadline:
        if len(results.lines) > before:
            return True
        time.sleep(0.02)
    return False


# ------------------------------------------------------------------ artifacts ----


def busybox_image(eng: engine.Engine, tmp: Path, ref: str, marker: str) -> str:
    """A busybox image `ref` whose /marker holds `marker` (so two such images differ);
    returns its id."""
    tar = engine.busybox_rootfs(tmp / f"{unique_name('rootfs')}.tar",
                                {"/marker": marker.encode()})
    return eng.import_image(tar, ref)


def artifact_recipe(name: str, version: str, uris: list[str], run: str) -> dict:
    return {
        "RecipeFormatVersion": "2020-01-25",
        "ComponentName": name,
        "ComponentVersion": version,
        "Manifests": [{
            "Platform": {"os": "linux"},
            "Lifecycle": {"Run": run},
            "Artifacts": [{"URI": uri} for uri in uris],
        }],
    }


def test_docker_artifacts_are_pulled_from_a_registry_by_tag_and_by_digest_and_not_again(
        docker_host, tmp_path):
    host, eng = docker_host, docker_host.engine
    repo_tag, repo_digest = unique_name("lambkin-tag"), unique_name("lambkin-digest")
    by_tag = eng.registry(f"{repo_tag}:1")
    busybox_image(eng, tmp_path, f"localhost/{repo_tag}:1", "tagged")
    eng.push(f"localhost/{repo_tag}:1", by_tag)
    busybox_image(eng, tmp_path, f"localhost/{repo_digest}:1", "digested")
    digest = eng.push(f"localhost/{repo_digest}:1", eng.registry(f"{repo_digest}:1"))
    assert digest.startswith("sha256:"), digest
    by_digest = eng.registry(f"{repo_digest}@{digest}")
    # Only the registry has them: what the deployment finds, it pulled.
    eng.podman("rmi", "--force", f"localhost/{repo_tag}:1", f"localhost/{repo_digest}:1")
    assert not eng.image_present(by_tag) and not eng.image_present(by_digest)

    name = unique_name("com.example.Pulled")
    # The Run step uses both images, as pulled: each prints its marker.
    run = (f"docker run --rm {by_tag} cat /marker > tag.out && "
           f"docker run --rm {by_digest} cat /marker > digest.out && sleep 600")
    host.deployed(artifact_recipe(name, "1.0.0", [f"docker:{by_tag}", f"docker:{by_digest}"],
                                  run))
    work = host.root / "work" / name
    until(lambda: (work / "digest.out").is_file() and (work / "digest.out").read_text(),
          "the component running both images", host.output)
    assert (work / "tag.out").read_text() == "tagged"
    assert (work / "digest.out").read_text() == "digested"
    assert eng.image_present(by_tag) and eng.image_present(by_digest)
    tag_pulls, digest_pulls = eng.manifest_requests(repo_tag), eng.manifest_requests(repo_digest)
    assert tag_pulls and digest_pulls, eng.registry_log.read_text()[-4000:]

    # A new version with the same artifacts: both present, neither asked of the registry.
    host.deployed(artifact_recipe(name, "1.0.1", [f"docker:{by_tag}", f"docker:{by_digest}"],
                                  "sleep 600"))
    assert eng.manifest_requests(repo_tag) == tag_pulls
    assert eng.manifest_requests(repo_digest) == digest_pulls


def test_a_missing_image_fails_the_deployment_with_the_engines_reason(docker_host):
    host, eng = docker_host, docker_host.engine
    name = unique_name("com.example.Missing")
    missing = eng.registry(f"{unique_name('lambkin-absent')}:1")
    result = host.deploy(artifact_recipe(name, "1.0.0", [f"docker:{missing}"],
                                         "touch ran; sleep 600"))
    assert result.returncode != 0, result.stdout
    assert f"{name}@1.0.0: artifact docker:{missing}: `docker pull` failed" in result.stderr, \
        result.stderr
    assert "manifest unknown" in result.stderr, result.stderr
    assert not (host.root / "work" / name / "ran").exists()
    assert not eng.image_present(missing)


def test_a_digest_the_registry_does_not_have_is_refused(docker_host, tmp_path):
    host, eng = docker_host, docker_host.engine
    repo = unique_name("lambkin-pinned")
    busybox_image(eng, tmp_path, f"localhost/{repo}:1", "v1")
    pushed = eng.push(f"localhost/{repo}:1", eng.registry(f"{repo}:1"))
    # The recipe pins a digest; the tag the registry serves is another image.
    busybox_image(eng, tmp_path, f"localhost/{repo}:2", "v2")
    other = eng.push(f"localhost/{repo}:2", eng.registry(f"{repo}:1"))
    assert other != pushed
    pinned = "sha256:" + "0" * 64
    name = unique_name("com.example.Pinned")
    ref = eng.registry(f"{repo}:1@{pinned}")
    result = host.deploy(artifact_recipe(name, "1.0.0", [f"docker:{ref}"],
                                         "touch ran; sleep 600"))
    assert result.returncode != 0, result.stdout
    assert f"{name}@1.0.0: artifact docker:{ref}: `docker pull` failed" in result.stderr, \
        result.stderr
    assert "manifest unknown" in result.stderr, result.stderr
    assert not (host.root / "work" / name / "ran").exists()


def test_a_manifest_that_does_not_match_its_pinned_digest_is_refused(docker_host, tmp_path):
    host, eng = docker_host, docker_host.engine
    repo = unique_name("lambkin-tampered")
    busybox_image(eng, tmp_path, f"localhost/{repo}:1", "genuine")
    genuine = eng.push(f"localhost/{repo}:1", eng.registry(f"{repo}:1"))
    busybox_image(eng, tmp_path, f"localhost/{repo}:2", "forged")
    forged = eng.push(f"localhost/{repo}:2", eng.registry(f"{repo}:2"))
    eng.podman("rmi", "--force", f"localhost/{repo}:1", f"localhost/{repo}:2")
    # Between the engine and the registry, the pinned digest is answered with the other
    # image's manifest, claimed to be the one asked for.
    assert eng.mirror is not None
    eng.mirror.substitutes[genuine] = forged
    ref = f"127.0.0.1:{eng.mirror.port}/{repo}@{genuine}"
    name = unique_name("com.example.Tampered")
    result = host.deploy(artifact_recipe(name, "1.0.0", [f"docker:{ref}"],
                                         "touch ran; sleep 600"))
    assert result.returncode != 0, result.stdout
    assert f"{name}@1.0.0: artifact docker:{ref}: `docker pull` failed" in result.stderr, \
        result.stderr
    # The engine's reason (podman's words; Docker's say "verification failed").
    reason = result.stderr.split("`docker pull` failed", 1)[1]
    assert "does not match" in reason or "verification failed" in reason, reason
    assert not (host.root / "work" / name / "ran").exists()
    assert not eng.image_present(ref)
    # The same reference, passed through untouched, is pulled: the refusal was the forgery's.
    del eng.mirror.substitutes[genuine]
    host.deployed(artifact_recipe(name, "1.0.1", [f"docker:{ref}"], "touch ran; sleep 600"))
    assert eng.image_present(ref)


# ------------------------------------------------------------------ lifecycle ----

# PID 1 of a PID namespace ignores every signal it has no handler for; the trap says so
# explicitly. The engine's SIGKILL is the only way to end it.
STUBBORN = "sh -c 'trap \"\" TERM; while :; do sleep 1; done'"


def test_a_container_whose_pid_1_ignores_sigterm_goes_with_its_component_within_the_grace(
        docker_host, tmp_path):
    host, eng = docker_host, docker_host.engine
    image = f"localhost/{unique_name('lambkin-stubborn')}:1"
    busybox_image(eng, tmp_path, image, "stubborn")
    name = unique_name("com.example.Stubborn")
    label = f"lambkin.test={name}"

    def recipe(version: str) -> dict:
        return artifact_recipe(name, version, [], (
            f"docker run --rm --network=host -e SVCUID --label {label} {image} {STUBBORN}"))

    def running() -> list[str]:
        return eng.containers(label=label)

    def gone_within_grace(action, what: str, old: list[str]) -> float:
        start = time.monotonic()
        action()
        until(lambda: not set(old) & set(eng.containers(label=label, all_states=True)),
              f"the container going when the component {what}", host.output, timeout=GRACE)
        return time.monotonic() - start

    host.deployed(recipe("1.0.0"))
    first = until(running, "the container running", host.output)
    # Stopped: SIGTERM changes nothing in the container; the host has the engine stop it.
    took = {"stop": gone_within_grace(lambda: host.cli("stop", name), "stops", first)}
    assert not running()

    host.cli("restart", name)
    second = until(running, "the container running after a restart", host.output)
    took["restart"] = gone_within_grace(lambda: host.cli("restart", name), "restarts", second)
    third = until(lambda: [c for c in running() if c not in second],
                  "a new container after the restart", host.output)

    took["redeployment"] = gone_within_grace(lambda: host.deployed(recipe("1.0.1")),
                                             "is replaced by a deployment", third)
    fourth = until(running, "the new version's container", host.output)

    took["host shutdown"] = gone_within_grace(host.stop, "stops with the host", fourth)
    print(f"container gone after (s, grace {GRACE}): " +
          ", ".join(f"{k} {v:.2f}" for k, v in took.items()))
