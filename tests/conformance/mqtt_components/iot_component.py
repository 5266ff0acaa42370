"""A Greengrass component written against the AWS IoT Device SDK v2 that talks to AWS IoT
Core through the host: it subscribes to `lambkin/down/#` and appends each message it receives
to received.jsonl, then, for each batch file `go-NAME` (holding a count) that appears in its
work directory, publishes that many QoS 1 messages {"batch": NAME, "seq": i} to
`lambkin/up/NAME` and writes `done-NAME`. A batch already done is not published again when
the component restarts. For each file `props-NAME` it publishes one message with MQTT 5
properties (a user property and a content type) to `lambkin/props/NAME` and writes
`done-props-NAME`."""

import json
import os
import time

from awsiot.greengrasscoreipc.clientv2 import GreengrassCoreIPCClientV2
from awsiot.greengrasscoreipc.model import QOS, UserProperty

client = GreengrassCoreIPCClientV2()


def on_message(event):
    message = event.message
    with open("received.jsonl", "a") as f:
        f.write(json.dumps({"topic": message.topic_name,
                            "payload": message.payload.decode()}) + "\n")


client.subscribe_to_iot_core(topic_name="lambkin/down/#", qos=QOS.AT_LEAST_ONCE,
                             on_stream_event=on_message)
open("subscribed", "w").close()

def publish_with_properties(name):
    errors = []
    try:
        client.publish_to_iot_core(
            topic_name=f"lambkin/props/{name}", qos=QOS.AT_LEAST_ONCE, payload=b"{}",
            user_properties=[UserProperty(key="origin", value="component")],
            content_type="application/json")
    except Exception as e:  # recorded for the test to show
        errors.append(f"{type(e).__name__}: {e}")
    with open(f"done-props-{name}.tmp", "w") as f:
        json.dump({"errors": errors}, f)
    os.rename(f"done-props-{name}.tmp", f"done-props-{name}")


while True:
    for name in sorted(os.listdir(".")):
        if name.startswith("props-") and not os.path.exists(f"done-{name}"):
            publish_with_properties(name[len("props-"):])
            continue
        if not name.startswith("go-"):
            continue
        batch = name[3:]
        if os.path.exists(f"done-{batch}"):
            continue
        with open(name) as f:
            count = int(f.read())
        errors = []
        for seq in range(count):
            try:
                client.publish_to_iot_core(
                    topic_name=f"lambkin/up/{batch}", qos=QOS.AT_LEAST_ONCE,
                    payload=json.dumps({"batch": batch, "seq": seq}).encode())
            except Exception as e:  # recorded for the test to show
                errors.append(f"{seq}: {type(e).__name__}: {e}")
        with open(f"done-{batch}.tmp", "w") as f:
            json.dump({"errors": errors}, f)
        os.rename(f"done-{batch}.tmp", f"done-{batch}")
    time.sleep(0.02)
