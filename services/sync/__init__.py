"""Completeness: sync the archive with the ElevenLabs Conversations API (docs/sync.md).

A feature sibling of ingest, search and memory: it meets them only through core's ports and the
``CallArchive`` port below, which the edges (CLI, ``callvault serve``, Lambda handlers) wire to the
ingest Archiver, so a call fetched from the API is written exactly as a webhook would write it.
"""
