"""Console test helpers: a rich call (many timed turns, a tool call, evaluations, collected data, audio)
whose every free-text field can carry hostile markup, and signing in over real HTTP."""

import copy
import json
import re
from typing import Any

import httpx

from tests.support import AUDIO, TRANSCRIPTION, fixture_json

RICH_ID = "conv_console_rich_0001"
RICH_PHONE = "+16125550199"
TURN_TIMES = (0.0, 0.8, 1.6, 2.4, 3.2)  # the shipped MP3 is ~4 s long
XSS = '<script>window.__xss=1</script><img src=x onerror="window.__xss=1">'


def rich_call(conversation_id: str = RICH_ID, *, hostile: str = "", phone: str = RICH_PHONE) -> bytes:
    """A transcription webhook with five timed turns; ``hostile`` is put into every free-text field."""
    envelope = copy.deepcopy(fixture_json(TRANSCRIPTION))
    data = envelope["data"]
    data["conversation_id"] = conversation_id
    data["agent_name"] = f"Support agent {hostile}"
    data["metadata"]["phone_call"]["external_number"] = phone
    variables = data["conversation_initiation_client_data"]["dynamic_variables"]
    variables.update(system__caller_id=phone, system__conversation_id=conversation_id)
    data["metadata"]["call_duration_secs"] = 4
    template = data["transcript"][0]
    turns = []
    for i, t in enumerate(TURN_TIMES):
        turn = copy.deepcopy(template)
        turn.update(
            role="agent" if i % 2 == 0 else "user",
            message=f"Turn {i} says hello {hostile}",
            time_in_call_secs=t,
            tool_calls=[],
            tool_results=[],
        )
        turns.append(turn)
    turns[2]["tool_calls"] = [
        {
            "request_id": "req_1",
            "tool_name": f"lookup_order{hostile}",
            "params_as_json": json.dumps({"order": f"A-17 {hostile}"}),
            "tool_has_been_called": True,
        }
    ]
    turns[2]["tool_results"] = [
        {"request_id": "req_1", "tool_name": "lookup_order", "result_value": f"shipped {hostile}", "is_error": False}
    ]
    data["transcript"] = turns
    analysis = data["analysis"]
    analysis["call_summary_title"] = f"Order status {hostile}"
    analysis["transcript_summary"] = f"The caller asked about an order. {hostile}"
    for result in analysis["evaluation_criteria_results"].values():
        result["rationale"] = f"Because {hostile}"
    for result in analysis["data_collection_results"].values():
        result["value"] = f"value {hostile}"
    return json.dumps(envelope).encode()


def rich_audio(conversation_id: str = RICH_ID) -> bytes:
    envelope = fixture_json(AUDIO)
    envelope["data"]["conversation_id"] = conversation_id
    return json.dumps(envelope).encode()


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found, "no CSRF field in the page"
    return found.group(1)


def sign_in(client: Any, key: str, next_path: str = "/console/calls") -> Any:
    """Sign in through the form (GET for the token and cookie, then POST); returns the POST's response."""
    form = client.get("/console/signin")
    assert form.status_code == 200
    return client.post(
        "/console/signin", data={"csrf": csrf_of(form.text), "key": key, "next": next_path}, follow_redirects=False
    )


def session_cookie(response: httpx.Response) -> str | None:
    return response.cookies.get("cv_session")


def dated_call(conversation_id: str, day: str, *, hour: int = 12) -> bytes:
    """``rich_call`` (five turns, each "Turn i says hello") started on ``day`` (YYYY-MM-DD) at ``hour`` UTC."""
    from datetime import UTC, datetime

    envelope = json.loads(rich_call(conversation_id, phone="+16125550177"))
    start = int(datetime.fromisoformat(day).replace(hour=hour, tzinfo=UTC).timestamp())
    envelope["data"]["metadata"]["start_time_unix_secs"] = start
    envelope["event_timestamp"] = start + 10
    return json.dumps(envelope).encode()
