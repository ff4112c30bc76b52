import pytest

from services.core.domain.errors import InvalidRequest
from services.core.domain.models import MAX_PAGE_SIZE, CallQuery


@pytest.mark.parametrize("limit", [0, -1, MAX_PAGE_SIZE + 1])
def test_call_query_refuses_a_page_size_out_of_range(limit: int) -> None:
    with pytest.raises(InvalidRequest):
        CallQuery(limit=limit)


@pytest.mark.parametrize("limit", [1, 25, MAX_PAGE_SIZE])
def test_call_query_accepts_a_page_size_in_range(limit: int) -> None:
    assert CallQuery(limit=limit).limit == limit
