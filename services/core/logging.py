"""Structured JSON logs: Powertools Logger on Lambda and locally, so both have the same shape.

Callers pass ids and counts as fields; phone numbers go through ``phone.mask``; transcript text,
audio and secrets are never passed at all.
"""

from aws_lambda_powertools import Logger


def get_logger(service: str, level: str = "INFO") -> Logger:
    return Logger(service=service, level=level)
