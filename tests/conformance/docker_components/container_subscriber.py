"""The program of the image `container-subscriber:latest` that the container component's
recipe runs (container-component-recipe.yaml, unmodified): in the container, with only what
its `docker run` hands in, it connects to the IPC socket mounted at the same path with the
AWS IoT Device SDK v2 and its SVCUID, subscribes to local/inference (the recipe's
accessControl), asks boto3 for credentials (the token exchange service, through
AWS_CONTAINER_CREDENTIALS_FULL_URI and AWS_CONTAINER_AUTHORIZATION_TOKEN), and answers each
message it receives on local/inference/results with what it saw."""

import os
import socket
import threading

import boto3
from awsiot.greengrasscoreipc.clientv2 import GreengrassCoreIPCClientV2
from awsiot.greengrasscoreipc.model import JsonMessage, PublishMessage

RESULTS = "local/inference/results"
HANDED = ("SVCUID", "AWS_GG_NUCLEUS_DOMAIN_SOCKET_FILEPATH_FOR_COMPONENT",
          "AWS_CONTAINER_AUTHORIZATION_TOKEN", "AWS_CONTAINER_CREDENTIALS_FULL_URI",
          "MSG_COUNT_LIMIT")


def credentials() -> dict:
    found = boto3.Session(region_name="eu-central-1").get_credentials()
    if found is None:
        return {"method": None}
    frozen = found.get_frozen_credentials()
    return {"method": found.method, "access_key": frozen.access_key,
            "secret_key": frozen.secret_key, "token": frozen.token}


seen = {
    "pid": os.getpid(),
    "hostname": socket.gethostname(),
    "handed": {name: name in os.environ for name in HANDED},
    "other_env": sorted(k for k in os.environ if k not in HANDED),
    "svcuid_is_the_token":
        os.environ.get("SVCUID") == os.environ.get("AWS_CONTAINER_AUTHORIZATION_TOKEN"),
    "msg_count_limit": os.environ.get("MSG_COUNT_LIMIT"),
    "socket": os.environ.get("AWS_GG_NUCLEUS_DOMAIN_SOCKET_FILEPATH_FOR_COMPONENT"),
    "credentials": credentials(),
}
client = GreengrassCoreIPCClientV2()
lock = threading.Lock()
count = 0


def on_message(event) -> None:
    global count
    with lock:
        count += 1
        n = count
    message = event.json_message.message if event.json_message is not None else None
    client.publish_to_topic(topic=RESULTS, publish_message=PublishMessage(
        json_message=JsonMessage(message={"echo": message, "n": n, "seen": seen})))


client.subscribe_to_topic(topic="local/inference", on_stream_event=on_message)
threading.Event().wait()
