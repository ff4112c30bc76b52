"""FastAPI dependencies as ``Annotated`` aliases. Each is also the test seam: tests replace one with
``app.dependency_overrides[get_index] = lambda: fake`` and leave the rest real."""

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated, Literal

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from services.analytics.reader import AnalyticsReader
from services.core.ports import CallIndex
from services.web.auth import ApiKeys, Principal, iam_caller
from services.web.edge import add_log_fields

from .cursor import CursorCodec
from .files import LocalFiles
from .links import HmacLinkSigner, LinkSigner


@dataclass
class SearchContext:
    """Everything the routes need, built once per process by ``create_app``."""

    index: CallIndex
    links: LinkSigner
    cursors: CursorCodec
    api_keys: ApiKeys
    link_ttl_secs: int
    default_region: str
    clock: Callable[[], float]
    public_url: str | None = None
    auth: Literal["key", "iam"] = "key"
    # Local back end only: the /files route's verifier and the archive folder it serves.
    file_links: HmacLinkSigner | None = None
    files: LocalFiles | None = field(default=None)
    # Keyword search over transcripts (GET /search): DuckDB locally, Athena on AWS; None: not offered.
    analytics: AnalyticsReader | None = None


def get_context(request: Request) -> SearchContext:
    context: SearchContext = request.app.state.search
    return context


Context = Annotated[SearchContext, Depends(get_context)]


def get_index(context: Context) -> CallIndex:
    return context.index


def get_link_signer(context: Context) -> LinkSigner:
    return context.links


def get_cursor_codec(context: Context) -> CursorCodec:
    return context.cursors


def get_api_keys(context: Context) -> ApiKeys:
    return context.api_keys


def get_base_url(request: Request, context: Context) -> str:
    """Where relative (local) links point: the configured public URL, else this request's own origin."""
    return context.public_url or str(request.base_url)


Index = Annotated[CallIndex, Depends(get_index)]
Links = Annotated[LinkSigner, Depends(get_link_signer)]
Cursors = Annotated[CursorCodec, Depends(get_cursor_codec)]
Keys = Annotated[ApiKeys, Depends(get_api_keys)]
BaseUrl = Annotated[str, Depends(get_base_url)]

# In the OpenAPI document (the "Authorize" button of /docs); the check itself is ours, so a missing or
# malformed header is a 401 in our envelope rather than the framework's 403.
bearer_scheme = HTTPBearer(
    auto_error=False,
    scheme_name="ApiKey",
    description="`Authorization: Bearer <key>` with a key from CALLVAULT_API_KEYS (locally: DATA_DIR/api-key).",
)


def require_api_key(
    request: Request,
    context: Context,
    keys: Keys,
    _: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)],
) -> Principal:
    """The gate of every data route: a configured API key (its role decides what it may do), or
    (``api_auth=iam``) an IAM caller that API Gateway authenticated (admin: IAM policy is the gate)."""
    if context.auth == "iam":
        caller = iam_caller(request.scope)
        add_log_fields(request, caller=caller)
        return Principal("iam", "admin", caller)
    principal = keys.check_header(request.headers.get("authorization"))
    add_log_fields(request, key_id=principal.key_id, role=principal.role)
    return principal


Caller = Annotated[Principal, Depends(require_api_key)]
