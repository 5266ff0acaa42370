"""A Lambda function imported as a Greengrass component: boto3 with no configuration of its
own, as a function written for Greengrass uses it."""

import os

import boto3


def handler(event, context):
    credentials = boto3.Session().get_credentials()
    frozen = credentials.get_frozen_credentials()
    return {
        "method": credentials.method,
        "access_key": frozen.access_key,
        "token": frozen.token,
        "uri": os.environ.get("AWS_CONTAINER_CREDENTIALS_FULL_URI"),
    }
