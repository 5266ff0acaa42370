"""A component that calls the host's Lambda API with boto3 as any SDK user does: the profile
`lambkin` of the AWS config file the host named in AWS_CONFIG_FILE (its own key, the host's
endpoint). It records each call's outcome, and what boto3's default chain finds."""

import json
import os
import sys

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

allowed, denied, out = sys.argv[1], sys.argv[2], sys.argv[3]
client = boto3.Session(profile_name="lambkin").client(
    "lambda", config=Config(retries={"total_max_attempts": 1}))
result = {"config_file": os.environ.get("AWS_CONFIG_FILE")}


def attempt(name, call):
    try:
        response = call()
        payload = response.get("Payload")
        result[name] = {"ok": json.loads(payload.read()) if payload else True}
    except ClientError as e:
        result[name] = {"error": e.response["Error"]["Code"],
                        "status": e.response["ResponseMetadata"]["HTTPStatusCode"]}


attempt("allowed", lambda: client.invoke(FunctionName=allowed, Payload=b'{"from":"component"}'))
attempt("denied", lambda: client.invoke(FunctionName=denied, Payload=b"{}"))
attempt("delete", lambda: client.delete_function(FunctionName=allowed))
# The default chain (no profile) is not displaced by the host's file: no default profile.
try:
    default = boto3.Session().get_credentials()
    result["default_chain"] = None if default is None else default.method
except Exception as e:  # the container provider may answer with an error: not our file
    result["default_chain"] = f"error: {type(e).__name__}"
with open(out + ".part", "w") as f:
    json.dump(result, f)
os.rename(out + ".part", out)
