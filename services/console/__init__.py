"""The review console: server-rendered pages for people who review calls (``/`` and ``/console/...``).

A sibling of search and memory: it reaches their use cases through the small ports in ``ports.py``,
which the composition roots (``services.local.app``, the search function's handler) fill in.
"""
