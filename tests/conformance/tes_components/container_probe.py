"""Stands in for the container of container-component-recipe.yaml: run with exactly the
variables its `docker run` line hands in (-e ..., -v socket:socket, -v work:work), it records
them and connects to the IPC socket with the AWS IoT Device SDK v2, as the containerised
subscriber would, subscribing to local/inference (allowed by the recipe's accessControl)."""

import json
import os
import stat
import sys

from awsiot.greengrasscoreipc.clientv2 import GreengrassCoreIPCClientV2

work = sys.argv[1]
names = ("SVCUID", "AWS_GG_NUCLEUS_DOMAIN_SOCKET_FILEPATH_FOR_COMPONENT",
         "AWS_CONTAINER_AUTHORIZATION_TOKEN", "AWS_CONTAINER_CREDENTIALS_FULL_URI",
         "MSG_COUNT_LIMIT")
result = {"env": {n: os.environ.get(n) for n in names}, "work": work}
socket_path = os.environ["AWS_GG_NUCLEUS_DOMAIN_SOCKET_FILEPATH_FOR_COMPONENT"]
result["socket_is_absolute"] = os.path.isabs(socket_path)
result["socket_is_a_socket"] = stat.S_ISSOCK(os.stat(socket_path).st_mode)
client = GreengrassCoreIPCClientV2()
client.subscribe_to_topic(topic="local/inference", on_stream_event=lambda event: None)
result["subscribed"] = True
client.close()
with open(os.path.join(work, "container.json.new"), "w") as f:
    json.dump(result, f)
os.rename(os.path.join(work, "container.json.new"), os.path.join(work, "container.json"))
