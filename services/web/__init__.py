"""The shared HTTP edge of CallVault's web faces (search API, memory API, review console).

Error envelope and request context (``edge``), API keys with roles (``auth``, ``credentials``,
``keystore``), the bounded body reader (``body``) and parsing of what people type (``params``).
Search, memory and console import from here and never from each other.
"""
