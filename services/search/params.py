"""The filters of ``GET /calls`` (and the console's calls page, and ``callvault calls``), read from what
people type through ``services.web.params``."""

from dataclasses import asdict, dataclass

from services.core.domain import phone as phone_domain
from services.core.domain.errors import InvalidRequest
from services.core.domain.models import CALL_OUTCOMES, CALL_STATUSES
from services.web.params import parse_instant, parse_label, parse_phone


def parse_choice(name: str, raw: str, accepted: tuple[str, ...]) -> str:
    """One of a filter's few values, exactly as written; anything else is refused, naming them all
    (a typo must not answer an empty list, as if no call had that status)."""
    if raw not in accepted:
        raise InvalidRequest(f"{name} must be {', '.join(accepted[:-1])} or {accepted[-1]}")
    return raw


@dataclass(frozen=True)
class CallFilters:
    """Normalised filters of ``GET /calls``. The cursor fingerprint is computed from these, so two
    spellings of one number (``(612) 555-0142`` and ``+16125550142``) continue the same walk."""

    phone: str | None = None  # E.164
    agent_id: str | None = None
    since: int | None = None  # inclusive, unix seconds
    until: int | None = None  # exclusive, unix seconds
    status: str | None = None
    call_successful: str | None = None

    def as_dict(self) -> dict[str, str | int | None]:
        return asdict(self)

    def names(self) -> list[str]:
        """The filters in use, for logs (names only: values may be phone numbers)."""
        return [name for name, value in self.as_dict().items() if value is not None]


def parse_filters(
    *,
    phone: str | None = None,
    agent_id: str | None = None,
    since: str | None = None,
    until: str | None = None,
    status: str | None = None,
    call_successful: str | None = None,
    default_region: str = phone_domain.DEFAULT_REGION,
) -> CallFilters:
    """Turn raw parameters into ``CallFilters``; the first bad one raises ``InvalidRequest``."""
    filters = CallFilters(
        phone=parse_phone(phone, default_region) if phone is not None else None,
        agent_id=parse_label("agent_id", agent_id) if agent_id is not None else None,
        since=parse_instant("since", since) if since is not None else None,
        until=parse_instant("until", until) if until is not None else None,
        status=parse_choice("status", status, CALL_STATUSES) if status is not None else None,
        call_successful=parse_choice("call_successful", call_successful, CALL_OUTCOMES)
        if call_successful is not None
        else None,
    )
    if filters.since is not None and filters.until is not None and filters.until <= filters.since:
        raise InvalidRequest("until must be later than since (since is inclusive, until exclusive)")
    return filters
