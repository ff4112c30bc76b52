"""Mem0's process-wide settings, which it reads once at import: set them before the first ``import mem0``.

- ``MEM0_TELEMETRY=False``: by default Mem0 sends usage events to PostHog (and, in the open-source
  SDK, fetches a notice config from GitHub); offline that delays exit and can take a lock that makes
  a second process fail. CallVault never lets it on: a process that imported Mem0 with telemetry on
  gets ``MemoryUnavailable`` instead of a store.
- ``MEM0_DIR``: Mem0 writes a ``config.json`` there (default ``~/.mem0``, read-only on Lambda).
- Library log lines: the Mem0 SDK logs every HTTP error with its URL, and httpx every request's URL
  (info), and erasing a caller is ``DELETE /v2/entities/user/{number}/``; Mem0 open source logs memory
  texts (debug). They are kept below their loggers' levels: our own lines say what failed, with ids,
  error codes and masked numbers only.
"""

import logging
import os
import sys
import tempfile
from pathlib import Path

from .errors import MemoryUnavailable

DEFAULT_HOME = Path(tempfile.gettempdir()) / "callvault-mem0-home"


_QUIETED = {"mem0": logging.CRITICAL, "httpx": logging.WARNING, "httpcore": logging.WARNING}


def prepare_mem0_environment(mem0_dir: Path | None = None) -> None:
    os.environ["MEM0_TELEMETRY"] = "False"
    for name, level in _QUIETED.items():  # a caller's number or words must not reach a log through them
        logging.getLogger(name).setLevel(level)
    if "mem0" not in sys.modules:
        home = mem0_dir or DEFAULT_HOME
        home.mkdir(parents=True, exist_ok=True)
        os.environ["MEM0_DIR"] = str(home)


def check_telemetry_off() -> None:
    """After ``import mem0``: refuse to run if someone imported it earlier with telemetry on."""
    from mem0.memory import telemetry

    if telemetry.MEM0_TELEMETRY:
        raise MemoryUnavailable(
            "mem0 was imported with telemetry on; CallVault must import it first (MEM0_TELEMETRY=False)",
            retryable=False,
        )
