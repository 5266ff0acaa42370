"""Signature Version 4 on the Lambda API, with the real clients: boto3 and the AWS CLI sign
with the host's key and are accepted (every other test of the suite relies on it); with a key
the host never issued, a wrong secret or no signature at all they get AWS Lambda's 403 errors.
A component granted lambda:InvokeFunction on one function invokes it with an unmodified boto3
through the profile the host hands it, and is refused on another function and on management."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path

import boto3
import pytest
from botocore import UNSIGNED
from botocore.config import Config
from botocore.exceptions import ClientError

from support import REGION, component_python, unique_name, wait_active, zip_files

HERE = Path(__file__).parent / "lambda_api_components"
CALLER = "com.lambkin.conformance.LambdaCaller"
VERSION = "1.0.0"
HANDLER = b"def handler(event, context):\n    return {'name': context.function_name, 'event': event}\n"


def python_function(client, name: str, tmp: Path) -> None:
    client.create_function(
        FunctionName=name, Runtime="python3.11", Role="arn:aws:iam::123456789012:role/x",
        Handler="app.handler", Code={"ZipFile": zip_files({"app.py": HANDLER}, tmp / f"{name}.zip")})
    wait_active(client, name)


def error_code(call) -> tuple[str, int]:
    with pytest.raises(ClientError) as e:
        call()
    return e.value.response["Error"]["Code"], e.value.response["ResponseMetadata"]["HTTPStatusCode"]


def foreign_client(host, **kwargs):
    session = boto3.session.Session(region_name=REGION, **kwargs)
    return session.client("lambda", endpoint_url=host.endpoint,
                          config=Config(retries={"total_max_attempts": 1},
                                        **({"signature_version": UNSIGNED} if not kwargs else {})))


def test_boto3_without_the_hosts_key_is_refused_with_aws_codes(host, lambda_client, tmp_path):
    name = unique_name("signed")
    python_function(lambda_client, name, tmp_path)
    unsigned = foreign_client(host)
    assert error_code(lambda: unsigned.invoke(FunctionName=name)) == \
        ("MissingAuthenticationTokenException", 403)
    stranger = foreign_client(host, aws_access_key_id="AKIAIOSFODNN7EXAMPLE",
                              aws_secret_access_key="wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY")
    assert error_code(lambda: stranger.create_function(
        FunctionName=unique_name("planted"), Runtime="python3.11", Role="arn:aws:iam::1:role/x",
        Handler="app.handler", Code={"ZipFile": b"PK"})) == ("UnrecognizedClientException", 403)
    own_id = lambda_client._request_signer._credentials.access_key
    wrong_secret = foreign_client(host, aws_access_key_id=own_id,
                                  aws_secret_access_key="not-the-secret")
    code, status = error_code(lambda: wrong_secret.invoke(FunctionName=name))
    assert (code, status) == ("InvalidSignatureException", 403)
    # None of them defined anything; the signed client still works.
    names = [f["FunctionName"] for f in lambda_client.list_functions()["Functions"]]
    assert not any(n.startswith("planted") for n in names)
    assert json.loads(lambda_client.invoke(FunctionName=name)["Payload"].read())["name"] == name


def test_aws_cli_with_a_foreign_key_is_refused(aws_cli):
    env = dict(aws_cli.env)
    env.pop("AWS_PROFILE")
    env.pop("AWS_SHARED_CREDENTIALS_FILE")
    env.update(AWS_ACCESS_KEY_ID="AKIAIOSFODNN7EXAMPLE",
               AWS_SECRET_ACCESS_KEY="wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY")
    foreign = type(aws_cli)(aws_cli.endpoint, env, aws_cli.cwd)
    proc = foreign.run("lambda", "list-functions", check=False)
    assert proc.returncode != 0
    assert "UnrecognizedClientException" in proc.stderr, proc.stderr


def test_a_granted_component_invokes_its_function_with_boto3_and_nothing_else(
        host, lambkin_bin, lambda_client, tmp_path):
    allowed, denied = unique_name("granted"), unique_name("forbidden")
    python_function(lambda_client, allowed, tmp_path)
    python_function(lambda_client, denied, tmp_path)
    recipes, artifacts = tmp_path / "recipes", tmp_path / "artifacts" / CALLER / VERSION
    recipes.mkdir()
    artifacts.mkdir(parents=True)
    shutil.copy(HERE / "caller.py", artifacts / "caller.py")
    (recipes / f"{CALLER}-{VERSION}.json").write_text(json.dumps({
        "RecipeFormatVersion": "2020-01-25",
        "ComponentName": CALLER,
        "ComponentVersion": VERSION,
        "ComponentConfiguration": {"DefaultConfiguration": {"accessControl": {
            "lambkin.lambda": {f"{CALLER}:invoke": {
                "operations": ["lambda:InvokeFunction"], "resources": [allowed]}}}}},
        "Manifests": [{
            "Platform": {"os": "linux"},
            "Lifecycle": {"Run": f"{component_python()} -u {{artifacts:path}}/caller.py "
                                 f"{allowed} {denied} {{work:path}}/result.json"},
            "Artifacts": [{"URI": "s3://conformance/caller.py"}],
        }],
    }))
    deploy = subprocess.run(
        [str(lambkin_bin), "deploy", "--root", str(host.root), "-r", str(recipes),
         "-a", str(tmp_path / "artifacts"), "-m", f"{CALLER}={VERSION}"],
        capture_output=True, text=True, timeout=120)
    assert deploy.returncode == 0, deploy.stdout + deploy.stderr
    try:
        out = host.root / "work" / CALLER / "result.json"
        deadline = time.monotonic() + 60
        while not out.exists():
            if time.monotonic() > deadline:
                log = host.root / "logs" / f"{CALLER}.log"
                pytest.fail(f"no result from the component:\n{log.read_text(errors='replace')}")
            time.sleep(0.05)
        result = json.loads(out.read_text())
        assert result["allowed"] == {"ok": {"name": allowed, "event": {"from": "component"}}}, result
        assert result["denied"] == {"error": "AccessDeniedException", "status": 403}, result
        assert result["delete"] == {"error": "AccessDeniedException", "status": 403}, result
        assert result["default_chain"] not in ("config-file", "shared-credentials-file"), result
        assert result["config_file"] == str(host.root / "work" / CALLER / ".lambkin-aws-config")
        lambda_client.get_function(FunctionName=allowed)
    finally:
        subprocess.run([str(lambkin_bin), "deploy", "--root", str(host.root), "--remove", CALLER],
                       capture_output=True, text=True, timeout=120)
