"""Structured JSON logs: Powertools Logger on Lambda and locally, so both have the same shape.

Callers pass ids and counts as fields; phone numbers go through ``phone.mask``; transcript text,
audio and secrets are never passed at all.
"""

import os

from aws_lambda_powertools import Logger


def get_logger(service: str, level: str | None = None) -> Logger:
    """``level`` wins; else ``CALLVAULT_LOG_LEVEL``, then Powertools' own ``POWERTOOLS_LOG_LEVEL``/``LOG_LEVEL``.

    Lambda handlers build their logger at import, before settings are read, hence the environment lookup.
    """
    return Logger(service=service, level=level or os.environ.get("CALLVAULT_LOG_LEVEL") or None)
