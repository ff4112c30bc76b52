"""Caller memory: what CallVault learned about each caller, stored in Mem0 after the call is archived.

Nothing in this package runs on the webhook's request path except ``jobs.MemoryJobs.submit`` (it
only records a job). The modules that import ``mem0`` (``mem0_oss``, ``mem0_platform``) are imported
lazily by ``wiring`` so the ingest and search packages never load it.
"""
