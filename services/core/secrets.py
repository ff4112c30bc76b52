"""Secrets on AWS: SSM SecureString parameters, read once per cold start and cached."""

from functools import lru_cache


@lru_cache(maxsize=8)
def read_ssm_secret(name: str) -> str:
    import boto3

    response = boto3.client("ssm").get_parameter(Name=name, WithDecryption=True)
    value: str = response["Parameter"]["Value"]
    return value
