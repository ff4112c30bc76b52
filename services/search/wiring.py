"""The search service's own adapter choice: which ``LinkSigner`` goes with which back end.

Kept next to ``core.wiring.build_storage`` in spirit (the back end decides, nothing else does); the
S3 signer needs the blob store ``build_storage`` made, the local one the signing key.
"""

from collections.abc import Callable

from services.core.config import Settings
from services.core.wiring import Storage

from .links import HmacLinkSigner, LinkSigner, Presigner, S3LinkSigner


def build_link_signer(
    settings: Settings, storage: Storage, signing_key: bytes, clock: Callable[[], float]
) -> LinkSigner:
    if settings.backend == "aws":
        if not isinstance(storage.blobs, Presigner):
            raise RuntimeError("the AWS back end needs a blob store that can presign (S3BlobStore)")
        return S3LinkSigner(storage.blobs, clock)
    return HmacLinkSigner(signing_key, clock)
