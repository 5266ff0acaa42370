"""A Greengrass component written against the AWS IoT Device SDK v2 as any user would:
subscribes to test/ipc and writes what it receives (JSON and binary) to received.jsonl in its
work directory; exercises configuration, UpdateState and a denied publish, and writes what
it saw to results.json."""

import base64
import concurrent.futures
import datetime
import json
import queue
import time

from awsiot.greengrasscoreipc.clientv2 import GreengrassCoreIPCClientV2
from awsiot.greengrasscoreipc.model import (
    BinaryMessage,
    JsonMessage,
    PublishMessage,
    ReceiveMode,
)


def append(line: dict) -> None:
    with open("received.jsonl", "a") as f:
        f.write(json.dumps(line) + "\n")


def on_message(event) -> None:
    if event.json_message is not None:
        append({"kind": "json", "message": event.json_message.message,
                "topic": event.json_message.context.topic})
    elif event.binary_message is not None:
        append({"kind": "binary",
                "message": base64.b64encode(event.binary_message.message).decode(),
                "topic": event.binary_message.context.topic})


def main() -> None:
    # One callback thread: the SDK's default pool runs callbacks side by side, so two events
    # that arrive together could be written in either order, whatever order the host kept.
    client = GreengrassCoreIPCClientV2(
        executor=concurrent.futures.ThreadPoolExecutor(max_workers=1))
    client.subscribe_to_topic(topic="test/ipc", receive_mode=ReceiveMode.RECEIVE_ALL_MESSAGES,
                              on_stream_event=on_message)
    open("ready", "w").close()

    results = {}
    results["get"] = client.get_configuration(key_path=["nested"]).value
    results["leaf"] = client.get_configuration(key_path=["greeting"]).value
    updates = queue.Queue()
    client.subscribe_to_configuration_update(
        key_path=["nested"],
        on_stream_event=lambda e: updates.put(list(e.configuration_update_event.key_path)))
    client.update_configuration(key_path=["nested"], timestamp=datetime.datetime.now(),
                                value_to_merge={"n": 2})
    results["event"] = updates.get(timeout=10)
    results["after"] = client.get_configuration(key_path=["nested"]).value
    client.update_state(state="RUNNING")
    results["state"] = "ok"
    try:
        client.publish_to_topic(topic="forbidden/x", publish_message=PublishMessage(
            json_message=JsonMessage(message={"no": True})))
        results["denied"] = None
    except Exception as e:  # the type is what the test checks
        results["denied"] = type(e).__name__
        results["denied_message"] = getattr(e, "message", str(e))
    # Its own publish, received back (RECEIVE_ALL_MESSAGES).
    client.publish_to_topic(topic="test/ipc", publish_message=PublishMessage(
        binary_message=BinaryMessage(message=b"self")))
    with open("results.json.new", "w") as f:
        json.dump(results, f)
    import os
    os.rename("results.json.new", "results.json")
    while True:
        time.sleep(3600)


main()
