"""The function of the MQTT → function measurement of `lambkin-bench pubsub`: a Greengrass
Lambda component triggered by an IOT_CORE topic. It notes the wall clock as soon as it is
called and publishes it back to the broker over Greengrass IPC (PublishToIoTCore, QoS 0),
with the event's sequence number and send time."""

import json
import time

from awsiot.greengrasscoreipc.clientv2 import GreengrassCoreIPCClientV2
from awsiot.greengrasscoreipc.model import QOS

_client = None


def handler(event, context):
    called_ns = time.time_ns()
    global _client
    if _client is None:
        _client = GreengrassCoreIPCClientV2()
    answer = {"seq": event["seq"], "sent_ns": event["sent_ns"], "handler_ns": called_ns}
    _client.publish_to_iot_core(topic_name="lambkin-bench/fn/out", qos=QOS.AT_MOST_ONCE,
                                payload=json.dumps(answer).encode())
