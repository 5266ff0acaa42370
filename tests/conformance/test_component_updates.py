"""SubscribeToComponentUpdates and DeferComponentUpdate with the real awsiotsdk: a component
that subscribed is told before a deployment that notifies components (`lambkin deploy
--notify-components`, a cloud deployment's NOTIFY_COMPONENTS) changes anything, defers it once
(the deployment waits, then asks again), lets it go ahead, and is told when it is done. A
local deployment without the flag does not ask, as the nucleus's local deployments do not."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from support import component_python, until

HERE = Path(__file__).parent / "ipc_components"
LISTENER = "com.lambkin.conformance.UpdateListener"
UPDATED = "com.lambkin.conformance.Updated"
VERSION = "1.0.0"


def recipe(name: str, run: str, artifact: str | None = None) -> dict:
    manifest = {"Platform": {"os": "linux"}, "Lifecycle": {"Run": run}}
    if artifact:
        manifest["Artifacts"] = [{"URI": f"s3://conformance/{artifact}"}]
    return {
        "RecipeFormatVersion": "2020-01-25",
        "ComponentName": name,
        "ComponentVersion": VERSION,
        "Manifests": [manifest],
    }


def deploy(lambkin_bin, host, *args: str) -> str:
    result = subprocess.run(
        [str(lambkin_bin), "deploy", "--root", str(host.root), *args],
        capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    found = re.search(r"Deployment (\S+): SUCCEEDED", result.stdout)
    assert found, result.stdout
    return found.group(1)


def test_a_subscribed_component_defers_an_update_then_hears_it_is_done(
    host, lambkin_bin, device_dir, tmp_path
):
    shared = device_dir("updates")
    shared.chmod(0o777)
    events = shared / "events"
    recipes, artifacts = tmp_path / "recipes", tmp_path / "artifacts"
    recipes.mkdir()
    (artifacts / LISTENER / VERSION).mkdir(parents=True)
    shutil.copy(HERE / "update_listener.py", artifacts / LISTENER / VERSION / "update_listener.py")
    (recipes / f"{LISTENER}.json").write_text(json.dumps(recipe(
        LISTENER, f"{component_python()} -u {{artifacts:path}}/update_listener.py {events}",
        "update_listener.py")))
    # The updated component notes when it starts, in the same file.
    (recipes / f"{UPDATED}.json").write_text(json.dumps(recipe(
        UPDATED, f"echo updated >> {events}; sleep 3600")))

    def lines() -> list[str]:
        return events.read_text().splitlines() if events.exists() else []

    def logs() -> str:
        log = host.root / "logs" / f"{LISTENER}.log"
        return str(lines()) + "\n" + (log.read_text(errors="replace") if log.exists() else "")

    common = ["-r", str(recipes), "-a", str(artifacts)]
    deploy(lambkin_bin, host, *common, "-m", f"{LISTENER}={VERSION}")
    until(lambda: lines() == ["subscribed"], "the listener subscribing", logs)

    deployment = deploy(
        lambkin_bin, host, *common, "-m", f"{UPDATED}={VERSION}", "--notify-components", "30")
    until(lambda: len(lines()) >= 5, "the post-update event", logs)
    assert lines() == [
        "subscribed",
        f"pre {deployment} 1",
        f"pre {deployment} 2",
        "updated",
        f"post {deployment}",
    ], logs()

    # Without --notify-components a local deployment asks nobody: the listener heard nothing
    # about it (a question would have been answered before the deployment could finish).
    quiet = deploy(lambkin_bin, host, "--remove", UPDATED)
    assert not any(quiet in line for line in lines()), lines()
    deploy(lambkin_bin, host, "--remove", LISTENER)
