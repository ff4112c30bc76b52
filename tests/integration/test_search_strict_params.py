"""Strict query parameters on the search API (issue #14): a parameter a route does not take is a 400
naming it (``from=`` must not quietly return every call), and ``call_successful`` and ``status`` are one
of their few values (``status=bogus`` must not answer an empty list, as if no call had it). The CLI takes
the same times everywhere (``report --since`` like ``calls --since``)."""

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from services.cli.main import cli
from tests.integration.conftest import SearchApp
from tests.support import FIXTURES, TRANSCRIPTION, TRANSCRIPTION_OUTBOUND


@pytest.fixture
def app(search_app: SearchApp) -> SearchApp:
    for name in (TRANSCRIPTION, TRANSCRIPTION_OUTBOUND):
        search_app.ingest(name)
    return search_app


@pytest.mark.parametrize(
    ("query", "named"),
    [
        ("/calls?from=2025-07-07", "'from'"),
        ("/calls?phone=%2B16125550142&to=2025-07-08&sinse=1", "'sinse', 'to'"),
        ("/calls/conv_01jzfrjvcce0vsea1fcbpp9p04?verbose=1", "'verbose'"),
        ("/search?q=maria&page=2", "'page'"),
    ],
)
def test_unknown_query_parameters_are_400_naming_them(app: SearchApp, query: str, named: str) -> None:
    response = app.client.get(query, headers=app.auth)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == "unknown_parameter"
    assert f"parameter{'s' if ',' in named else ''} {named};" in error["message"]


def test_the_message_lists_what_the_route_takes(app: SearchApp) -> None:
    message = app.client.get("/calls?from=2025-07-07", headers=app.auth).json()["error"]["message"]
    assert message == (
        "unknown query parameter 'from'; /calls takes: agent_id, call_successful, cursor, limit, phone, since, "
        "status, until"
    )


def test_known_parameters_still_filter(app: SearchApp) -> None:
    response = app.client.get("/calls?since=2025-07-07&call_successful=failure", headers=app.auth)
    assert response.status_code == 200, response.text
    assert [c["conversation_id"] for c in response.json()["items"]] == ["conv_01jzfrjvcce0vsea1fcbpp9p05"]
    none = app.client.get("/calls?call_successful=success", headers=app.auth)
    assert none.status_code == 200 and none.json()["items"] == []


@pytest.mark.parametrize("value", ["yes", "SUCCESS", "true", ""])
def test_call_successful_is_one_of_three(app: SearchApp, value: str) -> None:
    response = app.client.get("/calls", params={"call_successful": value}, headers=app.auth)
    assert response.status_code == 422, response.text
    assert response.json()["error"] == {
        "code": "invalid_request",
        "message": "call_successful must be success, failure or unknown",
    }


def test_cli_outcome_is_one_of_three(app: SearchApp) -> None:
    result = CliRunner().invoke(cli, ["calls", "--outcome", "yes", "--data-dir", str(app.data_dir)])
    assert result.exit_code == 2 and "'yes' is not one of 'success', 'failure', 'unknown'" in result.output


STATUSES = "done, failed, initiation_failed, in-progress, processing or initiated"


@pytest.mark.parametrize("value", ["bogus", "DONE", "complete", "failed "])
def test_an_unknown_status_is_refused_like_a_reversed_range(app: SearchApp, value: str) -> None:
    response = app.client.get("/calls", params={"status": value}, headers=app.auth)
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["error"] == {"code": "invalid_request", "message": f"status must be {STATUSES}"}
    reversed_range = app.client.get("/calls?since=2025-07-07&until=2025-07-06", headers=app.auth)
    assert reversed_range.status_code == 422 and reversed_range.json().keys() == body.keys()


@pytest.mark.parametrize("value", ["done", "failed", "initiation_failed", "in-progress", "processing", "initiated"])
def test_every_status_the_message_names_is_accepted(app: SearchApp, value: str) -> None:
    response = app.client.get("/calls", params={"status": value}, headers=app.auth)
    assert response.status_code == 200, response.text
    assert bool(response.json()["items"]) == (value == "done")


def test_the_openapi_document_lists_the_statuses(app: SearchApp) -> None:
    parameters = app.client.get("/openapi.json").json()["paths"]["/calls"]["get"]["parameters"]
    status = next(p for p in parameters if p["name"] == "status")
    assert status["schema"]["enum"] == STATUSES.replace(" or ", ", ").split(", ")


def test_cli_status_is_one_of_the_statuses(app: SearchApp) -> None:
    result = CliRunner().invoke(cli, ["calls", "--status", "bogus", "--data-dir", str(app.data_dir)])
    assert result.exit_code == 2, result.output
    assert "'bogus' is not one of 'done', 'failed', 'initiation_failed', 'in-progress'" in result.output
    done = CliRunner().invoke(cli, ["calls", "--status", "done", "--json", "--data-dir", str(app.data_dir)])
    assert done.exit_code == 0 and len(json.loads(done.stdout)["items"]) == 2


@pytest.fixture(scope="module")
def imported(tmp_path_factory: pytest.TempPathFactory) -> Path:
    target = tmp_path_factory.mktemp("data")
    assert CliRunner().invoke(cli, ["import", str(FIXTURES), "--data-dir", str(target)]).exit_code == 0
    return target


@pytest.mark.parametrize("since", ["2025-07-07", "2025-07-07T08:00:00Z", "2025-07-07T10:00:00+02:00", "1751846400"])
def test_report_since_takes_what_calls_since_takes(imported: Path, since: str) -> None:
    args = ["report", "calls-per-day", "--since", since, "--format", "json", "--data-dir", str(imported)]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert [row["day"] for row in json.loads(result.stdout)] == ["2025-07-07"]
    calls = CliRunner().invoke(cli, ["calls", "--since", since, "--json", "--data-dir", str(imported)])
    assert calls.exit_code == 0, calls.output


def test_report_since_refuses_what_calls_since_refuses(imported: Path) -> None:
    result = CliRunner().invoke(cli, ["report", "agents", "--since", "last week", "--data-dir", str(imported)])
    assert result.exit_code == 2
    assert "since is neither ISO 8601 (2025-07-06 or 2025-07-06T11:40:15Z) nor unix seconds" in result.output


@pytest.mark.parametrize(
    ("query", "named"),
    [
        ("/calls?status=done&status=failed", "status"),
        ("/calls?phone=%2B16125550142&phone=%2B16125550177", "phone"),
        ("/calls?agent_id=agent_01jxbrc1trfxev5sdp5xk4ra67&limit=1&agent_id=agent_other", "agent_id"),
        ("/calls?limit=1&limit=2", "limit"),
        ("/calls/conv_01jzfrjvcce0vsea1fcbpp9p04", None),
        ("/search?q=maria&q=refund", "q"),
    ],
)
def test_a_parameter_given_twice_is_refused_not_read_as_its_last_value(
    app: SearchApp, query: str, named: str | None
) -> None:
    """``status=done&status=failed`` answered the failed calls alone (the last value won), as if there were
    no others; a reader meaning "either" was shown a wrong list without a word."""
    if named is None:
        query += "?verbose=1&verbose=2"  # unknown names are still named as unknown first
        response = app.client.get(query, headers=app.auth)
        assert (response.status_code, response.json()["error"]["code"]) == (400, "unknown_parameter")
        return
    response = app.client.get(query, headers=app.auth)
    assert response.status_code == 422, response.text
    assert response.json()["error"] == {
        "code": "invalid_request",
        "message": f"{named} is given more than once; give it once (it takes one value)",
    }


JULY_6, JULY_7 = "conv_01jzfrjvcce0vsea1fcbpp9p04", "conv_01jzfrjvcce0vsea1fcbpp9p05"  # 11:40:15 UTC each day


@pytest.mark.parametrize(
    ("period", "calls"),
    [
        ({"since": "2025-07-07"}, [JULY_7]),
        ({"since": "20250707"}, [JULY_7]),  # as GET /calls reads it: a date, never 1970-08-23
        ({"since": "2025-07-07T20:00:00Z"}, [JULY_7]),  # a time counts as its UTC day
        ({"since": "2025-07-07T01:00:00+02:00"}, [JULY_7, JULY_6]),  # 2025-07-06T23:00Z
        ({"since": "1751888415"}, [JULY_7]),  # unix seconds, not only a midnight's
        ({"until": "2025-07-06T08:00:00Z"}, [JULY_6]),
        ({"until": "20250706"}, [JULY_6]),
        ({"since": "2025-07-06", "until": "2025-07-07"}, [JULY_7, JULY_6]),
    ],
)
def test_search_reads_its_days_as_report_keyword_and_calls_do(
    app: SearchApp, period: dict[str, str], calls: list[str]
) -> None:
    """``/search?since=20250706`` was refused with the framework's 'Datetimes provided to dates should have
    zero time', and so was any time of day or unix seconds but a midnight's, while ``GET /calls`` and
    ``callvault report keyword --since`` take them all (one time parser, #14)."""
    response = app.client.get("/search", params={"q": "maria", **period}, headers=app.auth)
    assert response.status_code == 200, response.text
    assert list(dict.fromkeys(item["conversation_id"] for item in response.json()["items"])) == calls


@pytest.mark.parametrize(
    ("period", "message"),
    [
        ({"since": "2025"}, "since looks like a year; write a day, e.g. 2025-01-01, or unix seconds"),
        ({"until": "last week"}, "until is neither ISO 8601 (2025-07-06 or 2025-07-06T11:40:15Z) nor unix seconds"),
        ({"since": "2025-07-07", "until": "2025-07-06"}, "until must not be before since (both are UTC days, both"),
    ],
)
def test_search_refuses_a_day_it_cannot_read_saying_why(app: SearchApp, period: dict[str, str], message: str) -> None:
    response = app.client.get("/search", params={"q": "maria", **period}, headers=app.auth)
    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == "invalid_request"
    assert response.json()["error"]["message"].startswith(message)
