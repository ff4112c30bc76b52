"""Strict query strings: a parameter a route does not take is refused, naming it, instead of being
ignored (``GET /calls?from=2025-07-01`` would otherwise answer every call as if unfiltered); so is a
parameter given twice (``?status=done&status=failed`` would otherwise answer the failed calls alone)."""

import re
from collections import Counter

from fastapi import Request
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute

from services.core.domain.errors import InvalidRequest, UnknownParameter
from services.web.edge import documented_error

# For the `responses` of every route that depends on `reject_unknown_query_params`, so /docs shows the 400.
UNKNOWN_PARAMETER = documented_error(
    "a query parameter the route does not take",
    "unknown_parameter",
    "unknown query parameter 'from'; /calls takes: agent_id, call_successful, cursor, limit, phone, since, ...",
)
_PRINTABLE_NAME = re.compile(r"^[A-Za-z0-9_.\-\[\]]{1,64}$")


def reject_unknown_query_params(request: Request) -> None:
    """A router dependency: ``UnknownParameter`` (400) for any query parameter the route does not declare,
    ``InvalidRequest`` (422) for one given more than once (every parameter of these routes takes one value)."""
    route = request.scope.get("route")
    if not request.query_params or not isinstance(route, APIRoute):
        return
    allowed = _query_names(route)
    given = Counter(name for name, _ in request.query_params.multi_items())
    unknown = sorted(set(given) - allowed)
    if not unknown:
        repeated = sorted(name for name, times in given.items() if times > 1)
        if repeated:
            # The framework would keep the last value silently: a reader who meant "done or failed"
            # would get the failed calls alone, as if they were all there is.
            raise InvalidRequest(f"{repeated[0]} is given more than once; give it once (it takes one value)")
        return
    names = ", ".join(repr(n) if _PRINTABLE_NAME.fullmatch(n) else "(unprintable)" for n in unknown[:5])
    takes = ", ".join(sorted(allowed)) or "no query parameters"
    plural = "s" if len(unknown) > 1 else ""
    raise UnknownParameter(f"unknown query parameter{plural} {names}; {route.path} takes: {takes}")


_NAMES: dict[int, tuple[APIRoute, frozenset[str]]] = {}  # by id(route): routes are unhashable


def _query_names(route: APIRoute) -> frozenset[str]:
    cached = _NAMES.get(id(route))
    if cached is None or cached[0] is not route:  # the route is kept, so its id is never reused
        cached = _NAMES[id(route)] = (route, frozenset(_walk(route.dependant)))
    return cached[1]


def _walk(dependant: Dependant) -> set[str]:
    names = {field.alias for field in dependant.query_params}
    for sub in dependant.dependencies:
        names |= _walk(sub)
    return names
