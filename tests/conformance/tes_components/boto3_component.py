"""A component that gets AWS credentials the way any SDK user's code does: boto3 with no
configuration of its own. It records what boto3 found, where from, whether the credentials
sign requests (a presigned S3 URL, no network), and what a wrong token gets, to result.json."""

import json
import os
import urllib.error
import urllib.request

import boto3
from botocore.exceptions import BotoCoreError

result = {"env": {k: os.environ.get(k) for k in (
    "AWS_CONTAINER_CREDENTIALS_FULL_URI", "AWS_REGION", "AWS_DEFAULT_REGION",
    "AWS_IOT_THING_NAME", "GGC_VERSION", "AWS_ACCESS_KEY_ID")}}
result["token_given"] = bool(os.environ.get("AWS_CONTAINER_AUTHORIZATION_TOKEN"))

creds = boto3.Session().get_credentials()
frozen = creds.get_frozen_credentials()
result["method"] = creds.method
result["access_key"] = frozen.access_key
result["secret_key"] = frozen.secret_key
result["token"] = frozen.token

url = boto3.client("s3", region_name=os.environ.get("AWS_REGION")).generate_presigned_url(
    "get_object", Params={"Bucket": "lambkin-conformance", "Key": "object"}, ExpiresIn=60)
result["presigned_url"] = url

request = urllib.request.Request(os.environ["AWS_CONTAINER_CREDENTIALS_FULL_URI"],
                                 headers={"Authorization": "NOT-A-COMPONENT-TOKEN"})
try:
    urllib.request.urlopen(request, timeout=10)
    result["wrong_token_status"] = 200
except urllib.error.HTTPError as e:
    result["wrong_token_status"] = e.code
    result["wrong_token_body"] = e.read().decode(errors="replace")

# The same SDK with a wrong token gets nothing.
os.environ["AWS_CONTAINER_AUTHORIZATION_TOKEN"] = "NOT-A-COMPONENT-TOKEN"
try:
    wrong = boto3.Session().get_credentials()
    result["wrong_token_sdk"] = "got " + (wrong.method if wrong else "none")
except BotoCoreError as e:
    result["wrong_token_sdk"] = type(e).__name__ + ": " + str(e)

with open("result.json.new", "w") as f:
    json.dump(result, f)
os.rename("result.json.new", "result.json")
