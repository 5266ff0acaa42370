"""Function management through boto3: create, get, list, update code and
configuration, delete."""

from __future__ import annotations

import re

import pytest
from botocore.exceptions import ClientError

from support import (
    FIXTURE_NAMES,
    ROLE,
    invoke,
    sha256_b64,
    unique_name,
    wait_active,
    wait_for,
    zip_files,
)


def versioned_python_zip(tmp_path, version: int) -> bytes:
    code = (
        "import os\n"
        "def handler(event, context):\n"
        f"    return {{'version': {version}, 'color': os.environ.get('FIXTURE_COLOR')}}\n"
    )
    return zip_files({"app.py": code.encode()}, tmp_path / f"v{version}.zip")


def error_code(info) -> tuple[str, int]:
    resp = info.value.response
    return resp["Error"]["Code"], resp["ResponseMetadata"]["HTTPStatusCode"]


def all_function_names(client) -> set[str]:
    names: set[str] = set()
    for page in client.get_paginator("list_functions").paginate():
        names.update(f["FunctionName"] for f in page["Functions"])
    return names


def test_create_get_list_delete(lambda_client, fixture_zip, host):
    name = unique_name("conf-crud")
    code = fixture_zip("python-handler")
    env = {"FIXTURE_COLOR": "teal", "OTHER": "x=y"}
    created = lambda_client.create_function(
        FunctionName=name,
        Runtime="python3.11",
        Role=ROLE,
        Handler="app.handler",
        Code={"ZipFile": code},
        Description="conformance",
        Timeout=7,
        MemorySize=192,
        Environment={"Variables": env},
    )
    try:
        assert created["ResponseMetadata"]["HTTPStatusCode"] == 201, created["ResponseMetadata"]
        assert created["FunctionName"] == name
        assert re.fullmatch(rf"arn:aws:lambda:us-east-1:\d{{12}}:function:{name}", created["FunctionArn"]), created
        assert created["Runtime"] == "python3.11"
        assert created["Handler"] == "app.handler"
        assert created["Role"] == ROLE
        assert created["Timeout"] == 7
        assert created["MemorySize"] == 192
        assert created["Environment"]["Variables"] == env
        assert created["CodeSize"] == len(code)
        assert created["CodeSha256"] == sha256_b64(code)

        config = wait_active(lambda_client, name)
        got = lambda_client.get_function(FunctionName=name)
        for key in ("FunctionName", "FunctionArn", "Runtime", "Handler", "Timeout", "MemorySize", "CodeSha256", "CodeSize"):
            assert got["Configuration"][key] == created[key], key
        assert got["Configuration"]["Environment"]["Variables"] == env
        assert config["FunctionName"] == name

        only_config = lambda_client.get_function_configuration(FunctionName=name)
        assert only_config["FunctionName"] == name
        assert only_config["Timeout"] == 7

        listed = [
            f
            for page in lambda_client.get_paginator("list_functions").paginate()
            for f in page["Functions"]
            if f["FunctionName"] == name
        ]
        assert len(listed) == 1, listed
        assert listed[0]["Runtime"] == "python3.11"
        assert listed[0]["FunctionArn"] == created["FunctionArn"]

        r = invoke(lambda_client, name, {"action": "context"})
        assert r.status == 200 and r.function_error is None, r.payload
        assert r.json()["env"]["FIXTURE_COLOR"] == "teal"
        assert host.function_processes(name), "no process of the host runs the invoked function"
    finally:
        deleted = lambda_client.delete_function(FunctionName=name)
    assert deleted["ResponseMetadata"]["HTTPStatusCode"] == 204, deleted["ResponseMetadata"]

    with pytest.raises(ClientError) as info:
        lambda_client.get_function(FunctionName=name)
    assert error_code(info) == ("ResourceNotFoundException", 404)
    with pytest.raises(ClientError) as info:
        lambda_client.invoke(FunctionName=name, Payload=b"{}")
    assert error_code(info) == ("ResourceNotFoundException", 404)
    assert name not in all_function_names(lambda_client)
    # Deleting a function stops its instances.
    wait_for(lambda: not host.function_processes(name), 10, f"the instances of {name} to stop")


def test_create_existing_conflicts(lambda_client, functions, fixture_zip):
    fn = functions.create("python-handler", prefix="conf-dup")
    with pytest.raises(ClientError) as info:
        lambda_client.create_function(
            FunctionName=fn.name,
            Runtime="python3.11",
            Role=ROLE,
            Handler="app.handler",
            Code={"ZipFile": fixture_zip("python-handler")},
        )
    assert error_code(info) == ("ResourceConflictException", 409)


def test_unknown_function_management(lambda_client, tmp_path):
    name = "conf-never-created"
    calls = [
        lambda: lambda_client.get_function(FunctionName=name),
        lambda: lambda_client.get_function_configuration(FunctionName=name),
        lambda: lambda_client.delete_function(FunctionName=name),
        lambda: lambda_client.update_function_code(FunctionName=name, ZipFile=versioned_python_zip(tmp_path, 1)),
        lambda: lambda_client.update_function_configuration(FunctionName=name, Timeout=3),
    ]
    for call in calls:
        with pytest.raises(ClientError) as info:
            call()
        assert error_code(info) == ("ResourceNotFoundException", 404)


def test_update_function_code(lambda_client, functions, tmp_path):
    v1 = versioned_python_zip(tmp_path, 1)
    v2 = versioned_python_zip(tmp_path, 2)
    fn = functions.create("python-handler", prefix="conf-code", zip_bytes=v1, environment={"FIXTURE_COLOR": "red"})

    r = invoke(lambda_client, fn.name, {})
    assert r.function_error is None, r.payload
    assert r.json() == {"version": 1, "color": "red"}

    updated = lambda_client.update_function_code(FunctionName=fn.name, ZipFile=v2)
    assert updated["CodeSha256"] == sha256_b64(v2)
    assert updated["CodeSize"] == len(v2)
    wait_active(lambda_client, fn.name)
    assert lambda_client.get_function(FunctionName=fn.name)["Configuration"]["CodeSha256"] == sha256_b64(v2)

    # The warm instance of v1 is not reused: the next invocation runs v2.
    r = invoke(lambda_client, fn.name, {})
    assert r.function_error is None, r.payload
    assert r.json() == {"version": 2, "color": "red"}


@pytest.mark.parametrize("fixture", FIXTURE_NAMES)
def test_update_function_configuration(lambda_client, functions, fixture):
    fn = functions.create(fixture, prefix=f"conf-config-{fixture}", timeout=10, environment={"FIXTURE_COLOR": "blue"})

    r = invoke(lambda_client, fn.name, {"action": "context"})
    assert r.function_error is None, r.payload
    before = r.json()
    assert before["env"].get("FIXTURE_COLOR") == "blue", before
    assert 2000 < before["remaining_ms"] <= 10000, before

    updated = lambda_client.update_function_configuration(
        FunctionName=fn.name,
        Timeout=2,
        MemorySize=512,
        Environment={"Variables": {"FIXTURE_COLOR": "green", "FIXTURE_EXTRA": "1"}},
    )
    assert updated["Timeout"] == 2
    assert updated["MemorySize"] == 512
    assert updated["Environment"]["Variables"] == {"FIXTURE_COLOR": "green", "FIXTURE_EXTRA": "1"}
    config = wait_active(lambda_client, fn.name)
    assert config["Timeout"] == 2
    assert config["Environment"]["Variables"]["FIXTURE_COLOR"] == "green"
    # Unchanged settings stay.
    assert config["Runtime"] == fn.spec.runtime
    assert config["Handler"] == fn.spec.handler

    # The next cold start sees the new settings.
    r = invoke(lambda_client, fn.name, {"action": "context"})
    assert r.function_error is None, r.payload
    after = r.json()
    assert after["env"].get("FIXTURE_COLOR") == "green", after
    assert after["env"].get("FIXTURE_EXTRA") == "1", after
    assert 0 < after["remaining_ms"] <= 2000, after
