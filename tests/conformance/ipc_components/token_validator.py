"""The component named aws.greengrass.StreamManager, the one caller the nucleus lets
validate IPC tokens: validates the manager's token (read from the manager's `token` file,
argv[1] its name) and a token nobody was given, and writes the answers to results.json."""

import json
import os
import sys
import time

from awsiot.greengrasscoreipc.clientv2 import GreengrassCoreIPCClientV2

token_file = os.path.join("..", sys.argv[1], "token")
deadline = time.monotonic() + 60
while not os.path.exists(token_file):
    if time.monotonic() > deadline:
        sys.exit("the manager never wrote its token")
    time.sleep(0.05)
with open(token_file) as f:
    token = f.read()

client = GreengrassCoreIPCClientV2()
results = {"valid": client.validate_authorization_token(token=token).is_valid}
try:
    client.validate_authorization_token(token="NOTATOKENTHEHOSTGAVEOUT00")
    results["unknown"] = None
except Exception as e:
    results["unknown"] = type(e).__name__
with open("results.json.tmp", "w") as f:
    json.dump(results, f)
os.rename("results.json.tmp", "results.json")
while True:
    time.sleep(3600)
