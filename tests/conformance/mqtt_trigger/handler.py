"""A Lambda function deployed as a Greengrass Lambda component, triggered by an IOT_CORE
topic. Every event carries an "id"; the handler answers over Greengrass IPC with the AWS IoT
Device SDK v2 (PublishToIoTCore, as the component), on lambkin/trigger/result/<device>,
where <device> is the second level of the topic that triggered it (the client context's
"subject"). What it does depends on the event:

- {"id", "value": n}: publishes n doubled;
- {"id", "op": "update", "state": {...}}: merges `state` into its configuration's "state"
  with UpdateConfiguration;
- {"id", "op": "get"}: publishes its configuration's "state" (GetConfiguration).
"""

import datetime
import json

from awsiot.greengrasscoreipc.clientv2 import GreengrassCoreIPCClientV2
from awsiot.greengrasscoreipc.model import QOS

_client = None


def ipc() -> GreengrassCoreIPCClientV2:
    global _client
    if _client is None:
        _client = GreengrassCoreIPCClientV2()
    return _client


def handler(event, context):
    subject = context.client_context.custom["subject"]
    device = subject.split("/")[2]
    result = {"id": event["id"], "subject": subject}
    if event.get("op") == "update":
        ipc().update_configuration(key_path=["state"], timestamp=datetime.datetime.now(),
                                   value_to_merge=event["state"])
        result["updated"] = True
    elif event.get("op") == "get":
        result["state"] = ipc().get_configuration(key_path=["state"]).value
    else:
        result["doubled"] = event["value"] * 2
    ipc().publish_to_iot_core(topic_name=f"lambkin/trigger/result/{device}",
                              qos=QOS.AT_LEAST_ONCE, payload=json.dumps(result).encode())
    return result
