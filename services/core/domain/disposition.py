"""How a download link presents its file, the same for S3 presigned URLs and local ``/files`` links: audio
``inline`` (a browser opening the link plays it), everything else an ``attachment``; both carry the name.
``filename`` must already be safe for a quoted header value (the link signers make it so)."""

INLINE_SUFFIXES = (".mp3",)


def content_disposition(filename: str) -> str:
    kind = "inline" if filename.lower().endswith(INLINE_SUFFIXES) else "attachment"
    return f'{kind}; filename="{filename}"'
