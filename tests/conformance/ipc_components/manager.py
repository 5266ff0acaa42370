"""A Greengrass component that manages another through the AWS IoT Device SDK v2's
component and deployment operations (the aws.greengrass.Cli ones): lists, describes,
restarts, reconfigures by a local deployment, and stops the component named by argv[1]
(deploying, on the way, the gated component whose recipe is in argv[2]),
then writes what every call answered to results.json. It also writes its own IPC token to
`token`, for the StreamManager-named component to validate."""

import json
import os
import sys
import time

from awsiot.greengrasscoreipc.clientv2 import GreengrassCoreIPCClientV2

TARGET = sys.argv[1]
GATED_RECIPES = sys.argv[2]
DEADLINE = 60.0


def until(predicate, what):
    deadline = time.monotonic() + DEADLINE
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            sys.exit(f"{what} did not happen within {DEADLINE:.0f}s")
        time.sleep(0.05)


def runs():
    path = os.path.join("..", TARGET, "runs.txt")
    return open(path).read().splitlines() if os.path.exists(path) else []


def error_name(call):
    try:
        call()
        return None
    except Exception as e:  # the SDK raises the modelled error shape
        return type(e).__name__


def status_details(client, deployment_id):
    details = client.get_local_deployment_status(
        deployment_id=deployment_id).deployment.deployment_status_details
    return {"detailed": details.detailed_deployment_status,
            "stack": details.deployment_error_stack,
            "types": details.deployment_error_types,
            "cause": details.deployment_failure_cause}


def main() -> None:
    with open("token", "w") as f:
        f.write(os.environ["SVCUID"])
    client = GreengrassCoreIPCClientV2()
    results = {}

    listed = client.list_components().components
    results["listed"] = sorted(c.component_name for c in listed)
    details = client.get_component_details(component_name=TARGET).component_details
    results["details"] = {"name": details.component_name, "version": details.version,
                          "state": details.state,
                          "greeting": (details.configuration or {}).get("greeting")}
    results["details_unknown"] = error_name(
        lambda: client.get_component_details(component_name="com.example.NoSuch"))

    until(lambda: len(runs()) >= 1, "the target's first run")
    results["restart"] = client.restart_component(component_name=TARGET).restart_status
    until(lambda: len(runs()) >= 2, "the target's run after RestartComponent")

    deployment = client.create_local_deployment(
        component_to_configuration={TARGET: {"MERGE": {"greeting": "deployed"}}})
    results["deployment_id"] = deployment.deployment_id

    def finished():
        status = client.get_local_deployment_status(
            deployment_id=deployment.deployment_id).deployment.status
        return status if status in ("SUCCEEDED", "FAILED") else None

    results["deployment_status"] = until(finished, "the local deployment's end")
    results["deployment_details"] = status_details(client, deployment.deployment_id)

    # A deployment of a component no recipe on the device has fails before anything changes:
    # the SDK reads Greengrass's detailed status, error stack and types from the answer.
    refused = client.create_local_deployment(
        root_component_versions_to_add={"com.example.NoSuch": "1.0.0"})
    until(lambda: client.get_local_deployment_status(
        deployment_id=refused.deployment_id).deployment.status == "FAILED",
        "the refused deployment's end")
    results["refused_details"] = status_details(client, refused.deployment_id)
    listed = {d.deployment_id: d for d in client.list_local_deployments().local_deployments}
    results["refused_listed_stack"] = \
        listed[refused.deployment_id].deployment_status_details.deployment_error_stack

    # CreateLocalDeployment answers with the id at once: this deployment's component waits
    # in its install step for the gate file, written only after the answer.
    gated = client.create_local_deployment(
        recipe_directory_path=GATED_RECIPES,
        root_component_versions_to_add={"com.lambkin.conformance.Gated": "1.0.0"})
    results["gated_when_answered"] = client.get_local_deployment_status(
        deployment_id=gated.deployment_id).deployment.status
    open("gate", "w").close()

    def gated_finished():
        status = client.get_local_deployment_status(
            deployment_id=gated.deployment_id).deployment.status
        return status if status in ("SUCCEEDED", "FAILED") else None

    results["gated_status"] = until(gated_finished, "the gated deployment's end")
    results["deployment_unknown"] = error_name(
        lambda: client.get_local_deployment_status(deployment_id="no-such-deployment"))
    until(lambda: any(line.endswith(" deployed") for line in runs()),
          "the target's run with the deployed configuration")

    results["stop"] = client.stop_component(component_name=TARGET).stop_status
    results["validate_as_other"] = error_name(
        lambda: client.validate_authorization_token(token=os.environ["SVCUID"]))

    with open("results.json.tmp", "w") as f:
        json.dump(results, f)
    os.rename("results.json.tmp", "results.json")
    while True:
        time.sleep(3600)


main()
