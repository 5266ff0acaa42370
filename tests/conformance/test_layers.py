"""Lambda layers through boto3 and the AWS CLI: publish, get by ARN, list, delete, and a
function created with Layers importing a layer's module."""

from __future__ import annotations

import re

import pytest
from botocore.exceptions import ClientError

from support import ROLE, REGION, invoke, sha256_b64, unique_name, wait_active, zip_files

LAYER_VERSION_ARN = re.compile(rf"^arn:aws:lambda:{REGION}:\d{{12}}:layer:([A-Za-z0-9_-]+):(\d+)$")


def layer_zip(tmp_path, module: str, value: str) -> bytes:
    return zip_files(
        {f"python/{module}.py": f"VALUE = {value!r}\n".encode()},
        tmp_path / f"{module}-{value}.zip",
    )


def test_boto3_layer_lifecycle_and_a_function_using_layers(lambda_client, tmp_path):
    name = unique_name("conf-layer")
    first_zip = layer_zip(tmp_path, "layered", "first")
    first = lambda_client.publish_layer_version(
        LayerName=name,
        Description="first",
        Content={"ZipFile": first_zip},
        CompatibleRuntimes=["python3.11"],
        CompatibleArchitectures=["x86_64"],
        LicenseInfo="MIT",
    )
    assert first["Version"] == 1
    match = LAYER_VERSION_ARN.match(first["LayerVersionArn"])
    assert match and match.group(1) == name and match.group(2) == "1", first["LayerVersionArn"]
    assert first["LayerArn"] == first["LayerVersionArn"].rsplit(":", 1)[0]
    assert first["Content"]["CodeSha256"] == sha256_b64(first_zip)
    assert first["Content"]["CodeSize"] == len(first_zip)
    assert first["CompatibleRuntimes"] == ["python3.11"]
    again = lambda_client.publish_layer_version(
        LayerName=name, Content={"ZipFile": layer_zip(tmp_path, "layered", "again")}
    )
    assert again["Version"] == 2

    got = lambda_client.get_layer_version_by_arn(Arn=first["LayerVersionArn"])
    assert got["Version"] == 1 and got["Description"] == "first"
    got = lambda_client.get_layer_version(LayerName=name, VersionNumber=2)
    assert got["LayerVersionArn"] == again["LayerVersionArn"]

    layers = {l["LayerName"]: l for l in lambda_client.list_layers()["Layers"]}
    assert layers[name]["LatestMatchingVersion"]["Version"] == 2
    for_python = {l["LayerName"]: l for l in lambda_client.list_layers(CompatibleRuntime="python3.11")["Layers"]}
    assert for_python[name]["LatestMatchingVersion"]["Version"] == 1
    versions = lambda_client.list_layer_versions(LayerName=name)["LayerVersions"]
    assert [v["Version"] for v in versions] == [2, 1]
    pages = list(
        lambda_client.get_paginator("list_layer_versions").paginate(
            LayerName=name, PaginationConfig={"PageSize": 1}
        )
    )
    assert len(pages) == 2, pages
    assert [v["Version"] for page in pages for v in page["LayerVersions"]] == [2, 1]
    layer_pages = lambda_client.get_paginator("list_layers").paginate(PaginationConfig={"PageSize": 1})
    assert name in [l["LayerName"] for page in layer_pages for l in page["Layers"]]
    lambda_client.delete_layer_version(LayerName=name, VersionNumber=2)

    # A function with two layers: the later one's module wins.
    other = unique_name("conf-layer-over")
    second = lambda_client.publish_layer_version(
        LayerName=other, Content={"ZipFile": layer_zip(tmp_path, "layered", "second")}
    )
    function = unique_name("conf-layered")
    code = (
        "import layered\n"
        "def handler(event, context):\n"
        "    return {'value': layered.VALUE, 'file': layered.__file__}\n"
    )
    created = lambda_client.create_function(
        FunctionName=function,
        Runtime="python3.11",
        Role=ROLE,
        Handler="app.handler",
        Code={"ZipFile": zip_files({"app.py": code.encode()}, tmp_path / "app.zip")},
        Layers=[first["LayerVersionArn"], second["LayerVersionArn"]],
        Timeout=10,
    )
    try:
        assert [l["Arn"] for l in created["Layers"]] == [first["LayerVersionArn"], second["LayerVersionArn"]]
        assert created["Layers"][0]["CodeSize"] == len(first_zip)
        wait_active(lambda_client, function)
        result = invoke(lambda_client, function)
        assert result.function_error is None, result.payload
        assert result.json()["value"] == "second"

        # Deleting a version in use keeps the function working, as AWS does.
        lambda_client.delete_layer_version(LayerName=other, VersionNumber=1)
        with pytest.raises(ClientError) as info:
            lambda_client.get_layer_version_by_arn(Arn=second["LayerVersionArn"])
        assert info.value.response["Error"]["Code"] == "ResourceNotFoundException"
        assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
        result = invoke(lambda_client, function)
        assert result.json()["value"] == "second"
        config = lambda_client.get_function_configuration(FunctionName=function)
        assert [l["Arn"] for l in config["Layers"]][1] == second["LayerVersionArn"]
    finally:
        lambda_client.delete_function(FunctionName=function)
        lambda_client.delete_layer_version(LayerName=name, VersionNumber=1)
    for layer in (name, other):
        assert lambda_client.list_layer_versions(LayerName=layer)["LayerVersions"] == []


def test_boto3_layer_errors_are_named_as_aws_names_them(lambda_client, tmp_path):
    name = unique_name("conf-layer-bad")
    arn = lambda_client.publish_layer_version(
        LayerName=name, Content={"ZipFile": layer_zip(tmp_path, "bad", "x")}
    )["LayerVersionArn"]
    missing = arn.rsplit(":", 1)[0] + ":99"
    code = zip_files({"app.py": b"def handler(e, c):\n    return 1\n"}, tmp_path / "app.zip")

    def create(layers):
        return lambda_client.create_function(
            FunctionName=unique_name("conf-layer-bad"),
            Runtime="python3.11",
            Role=ROLE,
            Handler="app.handler",
            Code={"ZipFile": code},
            Layers=layers,
        )

    with pytest.raises(ClientError) as info:
        create([missing])
    error = info.value.response["Error"]
    assert error["Code"] == "InvalidParameterValueException"
    assert error["Message"] == f"Layer version {missing} does not exist."
    with pytest.raises(ClientError) as info:
        create([arn] * 6)
    error = info.value.response["Error"]
    assert (error["Code"], error["Message"]) == (
        "InvalidParameterValueException",
        "Cannot reference more than 5 layers.",
    )
    escape = zip_files({"../../escaped.py": b"X = 1\n"}, tmp_path / "escape.zip")
    with pytest.raises(ClientError) as info:
        lambda_client.publish_layer_version(LayerName=name, Content={"ZipFile": escape})
    assert info.value.response["Error"]["Code"] == "InvalidParameterValueException"
    with pytest.raises(ClientError) as info:
        lambda_client.get_layer_version(LayerName=name, VersionNumber=99)
    assert info.value.response["Error"]["Code"] == "ResourceNotFoundException"
    # The refusals left the layer as it was.
    assert [v["Version"] for v in lambda_client.list_layer_versions(LayerName=name)["LayerVersions"]] == [1]
    lambda_client.delete_layer_version(LayerName=name, VersionNumber=1)


def test_cli_publishes_a_layer_from_a_zip_file(aws_cli, tmp_path):
    name = unique_name("conf-cli-layer")
    zip_path = tmp_path / "layer.zip"
    zip_path.write_bytes(layer_zip(tmp_path, "cli", "from the cli"))
    published = aws_cli.json(
        "lambda", "publish-layer-version",
        "--layer-name", name,
        "--zip-file", f"fileb://{zip_path}",
        "--compatible-runtimes", "python3.11",
    )  # fmt: skip
    assert published["Version"] == 1
    assert LAYER_VERSION_ARN.match(published["LayerVersionArn"])
    assert published["Content"]["CodeSha256"] == sha256_b64(zip_path.read_bytes())
    listed = aws_cli.json("lambda", "list-layer-versions", "--layer-name", name)
    assert [v["Version"] for v in listed["LayerVersions"]] == [1]
    aws_cli.run("lambda", "delete-layer-version", "--layer-name", name, "--version-number", "1")
    gone = aws_cli.run(
        "lambda", "get-layer-version", "--layer-name", name, "--version-number", "1", check=False
    )  # fmt: skip
    assert gone.returncode != 0
    assert "ResourceNotFoundException" in gone.stderr
