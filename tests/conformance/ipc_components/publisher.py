"""A Greengrass component written against the AWS IoT Device SDK v2: once the subscriber is
subscribed, publishes one JSON and one binary message to test/ipc."""

import os
import sys
import time

from awsiot.greengrasscoreipc.clientv2 import GreengrassCoreIPCClientV2
from awsiot.greengrasscoreipc.model import BinaryMessage, JsonMessage, PublishMessage

ready = os.path.join("..", sys.argv[1], "ready")
deadline = time.monotonic() + 30
while not os.path.exists(ready):
    if time.monotonic() > deadline:
        sys.exit("the subscriber never became ready")
    time.sleep(0.05)

client = GreengrassCoreIPCClientV2()
client.publish_to_topic(topic="test/ipc", publish_message=PublishMessage(
    json_message=JsonMessage(message={"hello": "world", "n": 1})))
client.publish_to_topic(topic="test/ipc", publish_message=PublishMessage(
    binary_message=BinaryMessage(message=b"\x00\x01binary\xff")))
open("published", "w").close()
while True:
    time.sleep(3600)
