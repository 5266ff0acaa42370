"""The token exchange service with real clients: a generic component running boto3, with no
AWS configuration of its own, gets the host's static credentials through
AWS_CONTAINER_CREDENTIALS_FULL_URI (botocore's container provider), and they sign requests;
the same endpoint refuses a wrong token (403) and boto3 with a wrong token gets nothing. A Lambda
function imported as a component (aws.greengrass.lambda) gets them the same way.

The Docker component recipe tes_components/container-component-recipe.yaml gets its
credentials the same way inside a real container (test_docker.py). HTTP-level details are in
crates/lambkin/tests/tes.rs."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import urllib.request
from pathlib import Path

import pytest

from support import PACKAGES, component_python, device_python, signed_request, until, zip_files

HERE = Path(__file__).parent / "tes_components"
BOTO = "com.lambkin.conformance.TesBoto3"
VERSION = "1.0.0"
REGION = "eu-central-1"
THING = "tes-conformance-thing"


class Host:
    """A host with a [tes] static source, on its own root."""

    def __init__(self, binary: Path, base: Path, keys: dict[str, str]):
        self.binary, self.base, self.root = binary, base, base / "root"
        (self.root / "state").mkdir(parents=True)
        (self.root / "config.toml").write_text(
            f'region = "{REGION}"\nthing_name = "{THING}"\n'
            '[tes]\nsource = "static"\n'
            f'access_key_id = "{keys["access_key"]}"\n'
            f'secret_access_key = "{keys["secret_key"]}"\n'
            f'session_token = "{keys["token"]}"\n'
            # Functions run with an interpreter their user may run; their recipe's
            # PYTHONPATH gives them boto3.
            f'[lambda]\npython = "{device_python()}"\n')
        # The host's own environment carries no AWS credentials or configuration, so what the
        # component finds can only come from the endpoint.
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        env["HOME"] = str(base / "home")
        (base / "home").mkdir()
        self.addr_file = self.root / "state" / "api.addr"
        self.log = open(base / "host.log", "wb")
        self.proc = subprocess.Popen(
            [str(binary), "run", "--root", str(self.root), "--listen", "127.0.0.1:0"],
            stdin=subprocess.DEVNULL, stdout=self.log, stderr=self.log,
            start_new_session=True, env=env)
        until(lambda: (self.root / "state" / "api.addr").is_file() or self.proc.poll() is not None,
              "the host starting", self.output)
        assert self.proc.poll() is None, self.output()

    def output(self) -> str:
        logs = [(self.base / "host.log").read_text(errors="replace")]
        for log in sorted((self.root / "logs").glob("*.log")):
            logs.append(f"--- {log.name}\n" + log.read_text(errors="replace"))
        return "\n".join(logs)

    def deploy(self, recipe: dict, script: str) -> None:
        name = recipe["ComponentName"]
        recipes, artifacts = self.base / f"recipes-{name}", self.base / f"artifacts-{name}"
        recipes.mkdir()
        d = artifacts / name / recipe["ComponentVersion"]
        d.mkdir(parents=True)
        if script.endswith(".zip"):
            zip_files({"handler.py": HERE / "lambda_handler.py"}, d / script)
        else:
            shutil.copy(HERE / script, d / script)
        (recipes / f"{name}.json").write_text(json.dumps(recipe))
        result = subprocess.run(
            [str(self.binary), "deploy", "--root", str(self.root), "-r", str(recipes),
             "-a", str(artifacts), "-m", f"{name}={recipe['ComponentVersion']}"],
            capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stdout + result.stderr + self.output()

    def stop(self) -> None:
        self.proc.terminate()
        assert self.proc.wait(timeout=30) == 0, self.output()
        self.log.close()


@pytest.fixture(scope="module")
def tes_host(lambkin_bin, device_dir):
    keys = {"access_key": "AKIA" + secrets.token_hex(8).upper(),
            "secret_key": secrets.token_urlsafe(30),
            "token": secrets.token_urlsafe(60)}
    host = Host(lambkin_bin, device_dir("tes"), keys)
    yield host, keys
    host.stop()


def test_boto3_in_a_component_gets_the_static_credentials_through_the_endpoint(tes_host):
    host, keys = tes_host
    host.deploy({
        "RecipeFormatVersion": "2020-01-25",
        "ComponentName": BOTO,
        "ComponentVersion": VERSION,
        "Manifests": [{
            "Platform": {"os": "linux"},
            "Lifecycle": {"Run": f"{component_python()} -u {{artifacts:path}}/boto3_component.py"},
            "Artifacts": [{"URI": "s3://conformance/boto3_component.py"}],
        }],
    }, "boto3_component.py")
    path = host.root / "work" / BOTO / "result.json"
    until(path.exists, "the component's result", host.output)
    result = json.loads(path.read_text())

    env = result["env"]
    assert env["AWS_CONTAINER_CREDENTIALS_FULL_URI"].startswith("http://127.0.0.1:")
    assert env["AWS_CONTAINER_CREDENTIALS_FULL_URI"].endswith("/2016-11-01/credentialprovider/")
    assert env["AWS_ACCESS_KEY_ID"] is None
    assert env["AWS_REGION"] == env["AWS_DEFAULT_REGION"] == REGION
    assert env["AWS_IOT_THING_NAME"] == THING
    assert env["GGC_VERSION"]
    assert result["token_given"]

    assert result["method"] == "container-role", result
    assert (result["access_key"], result["secret_key"], result["token"]) == (
        keys["access_key"], keys["secret_key"], keys["token"])
    url = result["presigned_url"]
    assert keys["access_key"] in url and "X-Amz-Security-Token=" in url, url

    assert result["wrong_token_status"] == 403, result
    assert keys["access_key"] not in result.get("wrong_token_body", "")
    assert not result["wrong_token_sdk"].startswith("got container-role"), result


def test_a_lambda_component_gets_the_credentials_the_same_way(tes_host):
    host, keys = tes_host
    name = "com.lambkin.conformance.TesLambda"
    host.deploy({
        "RecipeFormatVersion": "2020-01-25",
        "ComponentName": name,
        "ComponentVersion": VERSION,
        "ComponentType": "aws.greengrass.lambda",
        "ComponentConfiguration": {"DefaultConfiguration": {
            "containerMode": "NoContainer", "timeoutInSeconds": 30, "pinned": False,
            "inputPayloadEncodingType": "json",
            # boto3, where the function's user reads it.
            "lambdaExecutionParameters": {"EnvironmentVariables": {"PYTHONPATH": PACKAGES}}}},
        "ComponentDependencies": {"aws.greengrass.TokenExchangeService": {
            "VersionRequirement": ">=2.0.0 <3.0.0", "DependencyType": "HARD"}},
        "Manifests": [{"Platform": {"os": "linux"}, "Lifecycle": {}, "Artifacts": [{
            "Uri": "greengrass:lambda-artifact.zip", "Unarchive": "ZIP"}]}],
        "Lifecycle": {"setenv": {
            "AWS_GREENGRASS_LAMBDA_FUNCTION_HANDLER": "handler.handler",
            "AWS_GREENGRASS_LAMBDA_RUNTIME": "python3.11"}},
    }, "lambda-artifact.zip")
    addr = host.addr_file.read_text().strip()
    request = signed_request(
        host.root, "POST", f"http://{addr}/2015-03-31/functions/{name}/invocations", b"{}")
    with urllib.request.urlopen(request, timeout=60) as response:
        function_error = response.headers.get("X-Amz-Function-Error")
        result = json.loads(response.read())
    assert function_error is None, result
    assert result["method"] == "container-role", result
    assert (result["access_key"], result["token"]) == (keys["access_key"], keys["token"])
    assert result["uri"].endswith("/2016-11-01/credentialprovider/")
