"""Function URLs: their configurations through boto3 (Create/Get/Update/Delete/List
FunctionUrlConfig), and requests to them with `curl` and Python `requests`, in the path form
the configuration's `FunctionUrl` gives (`http://ADDR/lambda-url/URLID/`) and the AWS host form
(`Host: URLID.lambda-url.REGION.on.aws`); `AWS_IAM` URLs signed with botocore's signer."""

from __future__ import annotations

import base64
import http.client
import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests
from botocore.exceptions import ClientError

from support import REGION, ROLE, credentials_file, unique_name, wait_active, zip_files, PROFILE

APP = b'''
import base64

def handler(event, context):
    mode = (event.get("queryStringParameters") or {}).get("mode")
    if mode == "shaped":
        return {"statusCode": 201, "headers": {"x-answer": "yes", "content-type": "text/plain"},
                "cookies": ["a=1; Path=/", "b=2"], "body": "made"}
    if mode == "binary":
        return {"statusCode": 200, "headers": {"content-type": "application/octet-stream"},
                "body": base64.b64encode(bytes(range(256))).decode(), "isBase64Encoded": True}
    if mode == "fail":
        raise RuntimeError("boom")
    return event
'''


@pytest.fixture
def web_function(lambda_client, tmp_path):
    name = unique_name("conf-url")
    lambda_client.create_function(
        FunctionName=name, Runtime="python3.11", Role=ROLE, Handler="app.handler",
        Code={"ZipFile": zip_files({"app.py": APP}, tmp_path / "app.zip")}, Timeout=10,
    )
    wait_active(lambda_client, name)
    yield name
    try:
        lambda_client.delete_function(FunctionName=name)
    except ClientError:
        pass


def url_of(lambda_client, name: str, **config) -> str:
    config.setdefault("AuthType", "NONE")
    created = lambda_client.create_function_url_config(FunctionName=name, **config)
    return created["FunctionUrl"]


def url_id(url: str) -> str:
    return urlsplit(url).path.split("/")[2]


def host_key(root: Path) -> tuple[str, str]:
    values, section = {}, None
    for line in credentials_file(root).read_text().splitlines():
        line = line.strip()
        if line.startswith("["):
            section = line.strip("[]").strip()
        elif section == PROFILE and "=" in line:
            k, v = line.split("=", 1)
            values[k.strip()] = v.strip()
    return values["aws_access_key_id"], values["aws_secret_access_key"]


def signed(root: Path, method: str, url: str, body: bytes = b"", headers=None) -> requests.Response:
    """A request signed by botocore's SigV4 signer (service `lambda`) with the host's key."""
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    key, secret = host_key(root)
    aws = AWSRequest(method=method, url=url, data=body, headers=headers or {})
    SigV4Auth(Credentials(key, secret), "lambda", REGION).add_auth(aws)
    return requests.request(method, url, data=body or None, headers=dict(aws.headers.items()), timeout=30)


def test_configurations_through_boto3(lambda_client, web_function):
    c = lambda_client.create_function_url_config(
        FunctionName=web_function, AuthType="NONE",
        Cors={"AllowOrigins": ["https://app.example"], "AllowMethods": ["GET"]},
    )
    assert c["AuthType"] == "NONE" and c["InvokeMode"] == "BUFFERED"
    assert c["FunctionUrl"].endswith("/") and "/lambda-url/" in c["FunctionUrl"]
    assert c["FunctionArn"].endswith(f":function:{web_function}")
    assert c["Cors"]["AllowOrigins"] == ["https://app.example"]
    got = lambda_client.get_function_url_config(FunctionName=web_function)
    assert got["FunctionUrl"] == c["FunctionUrl"]
    up = lambda_client.update_function_url_config(
        FunctionName=web_function, AuthType="AWS_IAM", InvokeMode="RESPONSE_STREAM"
    )
    assert (up["AuthType"], up["InvokeMode"]) == ("AWS_IAM", "RESPONSE_STREAM")
    assert up["FunctionUrl"] == c["FunctionUrl"]
    listed = lambda_client.list_function_url_configs(FunctionName=web_function)["FunctionUrlConfigs"]
    assert [u["FunctionUrl"] for u in listed] == [c["FunctionUrl"]]
    with pytest.raises(ClientError) as err:
        lambda_client.create_function_url_config(FunctionName=web_function, AuthType="NONE")
    assert err.value.response["Error"]["Code"] == "ResourceConflictException"
    lambda_client.delete_function_url_config(FunctionName=web_function)
    with pytest.raises(ClientError) as err:
        lambda_client.get_function_url_config(FunctionName=web_function)
    assert err.value.response["Error"]["Code"] == "ResourceNotFoundException"
    assert requests.get(c["FunctionUrl"], timeout=30).status_code == 404


def test_bad_configurations_are_named(lambda_client, web_function):
    with pytest.raises(ClientError) as err:
        lambda_client.create_function_url_config(FunctionName=unique_name("missing"), AuthType="NONE")
    assert err.value.response["Error"]["Code"] == "ResourceNotFoundException"
    assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
    with pytest.raises(ClientError) as err:
        lambda_client.create_function_url_config(
            FunctionName=web_function, AuthType="NONE",
            Cors={"AllowOrigins": ["*", "example.com"], "AllowMethods": ["FETCH"], "MaxAge": 90000,
                  "AllowCredentials": True},
        )
    e = err.value.response["Error"]
    assert e["Code"] == "ValidationException"
    for part in ("example.com", "FETCH", "90000", "AllowCredentials"):
        assert part in e["Message"], e["Message"]
    with pytest.raises(ClientError) as err:
        lambda_client.create_function_url_config(FunctionName=web_function, AuthType="OPEN")
    assert err.value.response["Error"]["Code"] == "ValidationException"
    # Nothing was created by the refusals.
    with pytest.raises(ClientError):
        lambda_client.get_function_url_config(FunctionName=web_function)


def test_qualifiers_name_aliases_and_this_host_has_none(lambda_client, web_function):
    """A Qualifier is an alias name, as AWS's model has it; the host has no aliases, so a
    well-formed one is a missing alias (404), a version is refused (400), `$LATEST` is the
    unqualified URL where AWS's model allows it (Get, Update, Delete) and refused by Create
    (400), and the unqualified URL stays the only one."""
    calls = [
        lambda q: lambda_client.create_function_url_config(FunctionName=web_function, AuthType="NONE", Qualifier=q),
        lambda q: lambda_client.get_function_url_config(FunctionName=web_function, Qualifier=q),
        lambda q: lambda_client.update_function_url_config(FunctionName=web_function, AuthType="NONE", Qualifier=q),
        lambda q: lambda_client.delete_function_url_config(FunctionName=web_function, Qualifier=q),
    ]
    for call in calls:
        with pytest.raises(ClientError) as err:
            call("live")
        e = err.value.response["Error"]
        assert (e["Code"], err.value.response["ResponseMetadata"]["HTTPStatusCode"]) == (
            "ResourceNotFoundException", 404), e
        assert f"{web_function}:live" in e["Message"] and "alias" in e["Message"].lower(), e
        for bad in ("1", "$LATEST") if call is calls[0] else ("1",):
            with pytest.raises(ClientError) as err:
                call(bad)
            e = err.value.response["Error"]
            assert e["Code"] == "ValidationException" and bad in e["Message"], e
    # The qualifier after the name is the same qualifier.
    with pytest.raises(ClientError) as err:
        lambda_client.get_function_url_config(FunctionName=f"{web_function}:live")
    assert err.value.response["Error"]["Code"] == "ResourceNotFoundException"
    assert lambda_client.list_function_url_configs(FunctionName=web_function)["FunctionUrlConfigs"] == []
    url = url_of(lambda_client, web_function)
    assert lambda_client.get_function_url_config(FunctionName=web_function)["FunctionUrl"] == url
    latest = lambda_client.get_function_url_config(FunctionName=web_function, Qualifier="$LATEST")
    assert latest["FunctionUrl"] == url
    assert lambda_client.update_function_url_config(
        FunctionName=web_function, Qualifier="$LATEST", AuthType="NONE")["FunctionUrl"] == url


def test_url_configs_page_as_aws_pages_them(lambda_client, web_function):
    url = url_of(lambda_client, web_function)
    pages = list(lambda_client.get_paginator("list_function_url_configs").paginate(
        FunctionName=web_function, PaginationConfig={"PageSize": 1}))
    assert [u["FunctionUrl"] for p in pages for u in p["FunctionUrlConfigs"]] == [url]
    assert "NextMarker" not in pages[-1]
    # botocore itself refuses MaxItems under 1; past 50 is the host's to refuse.
    with pytest.raises(ClientError) as err:
        lambda_client.list_function_url_configs(FunctionName=web_function, MaxItems=51)
    e = err.value.response["Error"]
    assert e["Code"] == "InvalidParameterValueException" and "MaxItems" in e["Message"], e
    with pytest.raises(ClientError) as err:
        lambda_client.list_function_url_configs(FunctionName=web_function, Marker="not-a-marker!")
    e = err.value.response["Error"]
    assert e["Code"] == "InvalidParameterValueException" and "not-a-marker!" in e["Message"], e


def test_functions_page_with_markers(lambda_client, tmp_path):
    names = sorted(unique_name("conf-page") for _ in range(3))
    code = zip_files({"app.py": APP}, tmp_path / "page.zip")
    try:
        for name in names:
            lambda_client.create_function(FunctionName=name, Runtime="python3.11", Role=ROLE,
                                          Handler="app.handler", Code={"ZipFile": code})
        pages = list(lambda_client.get_paginator("list_functions").paginate(
            PaginationConfig={"PageSize": 2}))
        listed = [f["FunctionName"] for p in pages for f in p["Functions"]]
        assert all(len(p["Functions"]) <= 2 for p in pages)
        assert len(pages) >= 2 and all("NextMarker" in p for p in pages[:-1])
        assert len(listed) == len(set(listed)), "a function listed twice"
        assert set(names) <= set(listed)
        with pytest.raises(ClientError) as err:
            lambda_client.list_functions(Marker="%%%")
        e = err.value.response["Error"]
        assert e["Code"] == "InvalidParameterValueException" and "%%%" in e["Message"], e
        with pytest.raises(ClientError) as err:
            lambda_client.list_functions(MaxItems=10001)
        assert err.value.response["Error"]["Code"] == "InvalidParameterValueException"
    finally:
        for name in names:
            try:
                lambda_client.delete_function(FunctionName=name)
            except ClientError:
                pass


def test_get_with_query_and_cookies(lambda_client, web_function):
    url = url_of(lambda_client, web_function)
    r = requests.get(url + "some/path", params=[("a", "1"), ("a", "2"), ("b", "x y")],
                     cookies={"c1": "v1", "c2": "v2"}, headers={"X-Multi": "one"}, timeout=30)
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/json"
    event = r.json()
    assert event["version"] == "2.0" and event["routeKey"] == "$default"
    assert event["rawPath"] == "/some/path"
    assert event["rawQueryString"] == "a=1&a=2&b=x+y"
    assert event["queryStringParameters"] == {"a": "1,2", "b": "x y"}
    assert sorted(event["cookies"]) == ["c1=v1", "c2=v2"]
    assert event["headers"]["x-multi"] == "one" and "cookie" not in event["headers"]
    http = event["requestContext"]["http"]
    assert (http["method"], http["path"], http["sourceIp"]) == ("GET", "/some/path", "127.0.0.1")
    assert event["requestContext"]["accountId"] == "anonymous"
    assert event["requestContext"]["domainName"] == f"{url_id(url)}.lambda-url.{REGION}.on.aws"
    assert event["isBase64Encoded"] is False and "body" not in event


def test_source_ip_is_the_callers_address(lambda_client, web_function):
    # From 127.0.0.2 (loopback too): the event names that address, not a default.
    url = urlsplit(url_of(lambda_client, web_function))
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=30,
                                      source_address=("127.0.0.2", 0))
    try:
        conn.request("GET", url.path + "from/elsewhere")
        response = conn.getresponse()
        event = json.loads(response.read())
    finally:
        conn.close()
    assert response.status == 200, event
    assert event["requestContext"]["http"]["sourceIp"] == "127.0.0.2", event["requestContext"]


def test_curl_both_forms(lambda_client, web_function):
    url = url_of(lambda_client, web_function)
    out = subprocess.run(["curl", "-sS", "-b", "k=v", url + "p?q=1"], capture_output=True, check=True)
    event = json.loads(out.stdout)
    assert (event["rawPath"], event["cookies"], event["queryStringParameters"]) == ("/p", ["k=v"], {"q": "1"})
    # The host form, routed by Host alone (no DNS needed): the whole path is the function's.
    base = f"{urlsplit(url).scheme}://{urlsplit(url).netloc}"
    host = f"{url_id(url)}.lambda-url.{REGION}.on.aws"
    out = subprocess.run(["curl", "-sS", "-H", f"Host: {host}", base + "/2015-03-31/functions"],
                         capture_output=True, check=True)
    event = json.loads(out.stdout)
    assert event["rawPath"] == "/2015-03-31/functions", "the host form reached the management API"
    out = subprocess.run(["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "-H",
                          f"Host: {'0' * 32}.lambda-url.{REGION}.on.aws", base + "/"],
                         capture_output=True, check=True)
    assert out.stdout == b"404"


def test_post_binary_and_shaped_answers(lambda_client, web_function):
    url = url_of(lambda_client, web_function)
    data = bytes(range(256))
    event = requests.post(url, data=data, headers={"content-type": "application/octet-stream"}, timeout=30).json()
    assert event["isBase64Encoded"] is True
    assert base64.b64decode(event["body"]) == data
    event = requests.post(url, json={"x": 1}, timeout=30).json()
    assert event["isBase64Encoded"] is False and json.loads(event["body"]) == {"x": 1}
    r = requests.get(url, params={"mode": "shaped"}, timeout=30)
    assert (r.status_code, r.text, r.headers["x-answer"]) == (201, "made", "yes")
    assert r.headers["content-type"] == "text/plain"
    assert r.raw.headers.getlist("set-cookie") == ["a=1; Path=/", "b=2"]
    r = requests.get(url, params={"mode": "binary"}, timeout=30)
    assert r.content == data
    r = requests.get(url, params={"mode": "fail"}, timeout=30)
    assert r.status_code == 502


def test_cors_preflight_is_answered_by_the_host(lambda_client, web_function):
    url = url_of(lambda_client, web_function, Cors={
        "AllowOrigins": ["https://app.example"], "AllowMethods": ["GET", "POST"],
        "AllowHeaders": ["x-custom"], "ExposeHeaders": ["x-answer"], "MaxAge": 300,
    })
    r = requests.options(url, headers={"Origin": "https://app.example",
                                       "Access-Control-Request-Method": "POST",
                                       "Access-Control-Request-Headers": "x-custom"}, timeout=30)
    assert r.status_code == 200 and r.content == b""
    assert r.headers["access-control-allow-origin"] == "https://app.example"
    assert r.headers["access-control-allow-methods"] == "GET,POST"
    assert r.headers["access-control-allow-headers"] == "x-custom"
    assert r.headers["access-control-max-age"] == "300"
    r = requests.options(url, headers={"Origin": "https://evil.example",
                                       "Access-Control-Request-Method": "POST"}, timeout=30)
    assert "access-control-allow-origin" not in r.headers
    r = requests.get(url, headers={"Origin": "https://app.example"}, timeout=30)
    assert r.headers["access-control-allow-origin"] == "https://app.example"
    assert r.headers["access-control-expose-headers"] == "x-answer"
    r = requests.get(url, headers={"Origin": "https://evil.example"}, timeout=30)
    assert "access-control-allow-origin" not in r.headers


def test_aws_iam_urls_take_only_signed_requests(lambda_client, web_function, host):
    url = url_of(lambda_client, web_function, AuthType="AWS_IAM",
                 Cors={"AllowOrigins": ["*"], "AllowMethods": ["*"]})
    r = requests.get(url, timeout=30)
    assert r.status_code == 403
    assert r.headers["x-amzn-errortype"] == "MissingAuthenticationTokenException"
    # A web page in the device's browser: CORS lets it send, but it cannot sign.
    r = requests.get(url, headers={"Origin": "https://page.example", "Sec-Fetch-Site": "cross-site"}, timeout=30)
    assert r.status_code == 403
    r = signed(host.root, "GET", url + "deep?x=1")
    assert r.status_code == 200, r.text
    event = r.json()
    assert event["rawPath"] == "/deep"
    assert event["requestContext"]["accountId"] != "anonymous"
    assert event["requestContext"]["authorizer"]["iam"]["accessKey"] == host_key(host.root)[0]
    r = signed(host.root, "POST", url, b'{"a":1}', {"content-type": "application/json"})
    assert r.status_code == 200 and json.loads(r.json()["body"]) == {"a": 1}
    # A signature over another body is refused.
    key, secret = host_key(host.root)
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    aws = AWSRequest(method="POST", url=url, data=b"signed", headers={})
    SigV4Auth(Credentials(key, secret), "lambda", REGION).add_auth(aws)
    r = requests.post(url, data=b"tampered", headers=dict(aws.headers.items()), timeout=30)
    assert r.status_code == 403


@pytest.fixture
def gate():
    d = Path(tempfile.mkdtemp(prefix="lambkin-url-gate-"))
    os.chmod(d, 0o777)
    yield d
    shutil.rmtree(d, ignore_errors=True)


def test_streaming_url_delivers_chunks_as_written(lambda_client, functions, fixture_zip, gate):
    fn = functions.create("rust-fixture", prefix="conf-url-stream",
                          zip_bytes=fixture_zip("rust-stream"), timeout=20)
    url = url_of(lambda_client, fn.name, InvokeMode="RESPONSE_STREAM")
    chunks = [f"part-{i};" for i in range(3)]
    # The fixture streams when the event says so; a URL's event is the request, so the
    # function reads its instructions from the body.
    instructions = {"action": "stream", "chunks": chunks, "gate": str(gate), "status": 202,
                    "headers": {"content-type": "text/plain", "x-stream": "yes"}, "cookies": ["s=1"]}
    r = requests.post(url, json=instructions, stream=True, timeout=30)
    assert r.status_code == 202
    assert r.headers["x-stream"] == "yes" and r.headers["content-type"] == "text/plain"
    assert r.raw.headers.getlist("set-cookie") == ["s=1"]
    body = b""
    seen = 0
    for piece in r.iter_content(chunk_size=None):
        body += piece
        while seen < len(chunks) and chunks[seen].encode() in body:
            (gate / f"ack-{seen}").touch()
            seen += 1
    assert body == "".join(chunks).encode()
