"""Conformance component: subscribes to component updates with awsiotsdk's
GreengrassCoreIPCClientV2 and writes one line per event to the file named by argv[1]:
`subscribed`, then `pre DEPLOYMENT N` (the Nth time it is asked about that deployment) and
`post DEPLOYMENT`. It defers each deployment once, by a second, then lets it go ahead."""

import sys
import threading
import time

from awsiot.greengrasscoreipc.clientv2 import GreengrassCoreIPCClientV2

OUT = sys.argv[1]
client = GreengrassCoreIPCClientV2()
asked = {}


def note(line: str) -> None:
    with open(OUT, "a") as f:
        f.write(line + "\n")


def answer(deployment_id: str, first: bool) -> None:
    if first:
        client.defer_component_update(
            deployment_id=deployment_id, message="busy", recheck_after_ms=1000)
    else:
        client.defer_component_update(deployment_id=deployment_id, recheck_after_ms=0)


def on_event(event) -> None:
    if event.pre_update_event is not None:
        deployment_id = event.pre_update_event.deployment_id
        asked[deployment_id] = asked.get(deployment_id, 0) + 1
        note(f"pre {deployment_id} {asked[deployment_id]}")
        # Not from the stream's callback thread: the client's answer arrives on it.
        threading.Thread(target=answer, args=(deployment_id, asked[deployment_id] == 1)).start()
    elif event.post_update_event is not None:
        note(f"post {event.post_update_event.deployment_id}")


client.subscribe_to_component_updates(on_stream_event=on_event)
note("subscribed")
while True:
    time.sleep(3600)
