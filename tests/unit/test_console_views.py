"""The console's pure pieces: charts on a continuous day axis with whole-number ticks, visible 0% bars,
transcripts read tolerantly, and where sign-in may send people."""

import itertools
import json

import pytest

from services.console.session import SessionCodec, safe_next
from services.console.views import integer_ticks, per_day_chart, rate_rows, read_conversation


def test_console_views_per_day_chart_fills_days_without_calls() -> None:
    rows = [{"day": "2025-07-01", "calls": 3, "successful": 1}, {"day": "2025-07-05", "calls": 1, "successful": 1}]
    chart = per_day_chart(rows)
    assert chart is not None
    assert [b.label for b in chart.bars] == [f"2025-07-0{d}" for d in range(1, 6)]
    assert [b.value for b in chart.bars] == [3, 0, 0, 0, 1]
    assert chart.bars[1].height == 0 and chart.total == 4
    xs = [b.x for b in chart.bars]
    assert len({round(b - a, 6) for a, b in itertools.pairwise(xs)}) == 1  # evenly spaced: time is continuous
    assert per_day_chart([]) is None


def test_console_views_a_period_longer_than_the_chart_says_what_it_leaves_out() -> None:
    """The chart shows the last 400 days; the calls of the days before are counted, so the page can say
    so instead of a total for 'all time' that is not."""
    rows = [{"day": "2024-01-01", "calls": 7, "successful": 2}, {"day": "2025-07-01", "calls": 3, "successful": 1}]
    chart = per_day_chart(rows)
    assert chart is not None and len(chart.bars) == 400 and chart.first == "2024-05-28"
    assert (chart.total, chart.left_out, chart.left_out_from) == (3, 7, "2024-01-01")
    whole = per_day_chart(rows[1:])
    assert whole is not None and whole.left_out == 0


@pytest.mark.parametrize(
    ("top", "ticks"),
    [(0, [0, 1]), (1, [0, 1]), (3, [0, 1, 2, 3]), (6, [0, 2, 4, 6]), (7, [0, 2, 4, 6, 8]), (95, [0, 50, 100])],
)
def test_console_views_ticks_are_whole_numbers(top: int, ticks: list[int]) -> None:
    found = integer_ticks(top)
    assert found[0] == 0 and found[-1] >= top and all(isinstance(t, int) for t in found)
    assert found == ticks


def test_console_views_a_zero_rate_still_draws_a_bar() -> None:
    rows = rate_rows(
        [{"agent_id": "a", "success_rate": 0.0, "successful": 0, "failed": 4}, {"agent_id": "b", "success_rate": None}],
        label_keys=("agent_name", "agent_id"),
        rate_key="success_rate",
        count_keys=("successful", "failed"),
    )
    assert (rows[0].label, rows[0].rate, rows[0].count) == ("a", 0.0, 4)
    assert rows[0].bar_width > 0
    assert rows[1].rate is None


def test_console_views_read_conversation_pairs_tool_calls_with_results_and_survives_junk() -> None:
    raw = json.dumps(
        {
            "transcript": [
                {"role": "agent", "message": "hi", "time_in_call_secs": 0},
                {
                    "role": "agent",
                    "message": None,
                    "time_in_call_secs": 3,
                    "tool_calls": [{"request_id": "r", "tool_name": "t", "params_as_json": '{"a": 1}'}],
                    "tool_results": [{"request_id": "r", "result_value": "not json", "is_error": True}],
                },
                "junk",
            ],
            "analysis": {
                "evaluation_criteria_results": {"c": {"result": "success"}},
                "data_collection_results": {"d": {"value": 5}},
            },
        }
    ).encode()
    conversation = read_conversation(raw)
    assert [(t.role, t.time) for t in conversation.turns] == [("agent", 0.0), ("agent", 3.0)]
    ((_turn, call),) = conversation.tool_calls
    assert (call.name, call.arguments, call.result, call.is_error) == ("t", '{\n  "a": 1\n}', "not json", True)
    assert [(e.criterion, e.result) for e in conversation.evaluations] == [("c", "success")]
    assert [(d.name, d.value) for d in conversation.collected] == [("d", "5")]
    assert read_conversation(b"not json").turns == []


@pytest.mark.parametrize(
    ("turn", "analysis"),
    [
        ({"tool_calls": 5}, {}),
        ({"tool_results": 7}, {}),
        ({"tool_calls": [{"request_id": "r"}], "tool_results": [{"request_id": ["unhashable"]}]}, {}),
        ({"tool_calls": [{"request_id": {"a": 1}}], "tool_results": [{"request_id": "r"}]}, {}),
        ({"tool_calls": [{"request_id": "r"}], "tool_results": {"r": 1}}, {}),
        ({}, {"evaluation_criteria_results": [1, 2]}),
        ({}, {"evaluation_criteria_results": "x"}),
        ({}, {"data_collection_results": [{"value": "v"}]}),
        ({}, {"data_collection_results": 3}),
    ],
)
def test_console_views_read_conversation_survives_fields_of_the_wrong_type(
    turn: dict[str, object], analysis: dict[str, object]
) -> None:
    """The archive keeps whatever the webhook or the API sent; the call page must still render."""
    raw = json.dumps(
        {"transcript": [{"role": "user", "message": "hi", "time_in_call_secs": 1, **turn}], "analysis": analysis}
    ).encode()
    conversation = read_conversation(raw)
    assert [(t.role, t.text) for t in conversation.turns] == [("user", "hi")]
    assert conversation.evaluations == [] and conversation.collected == []


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("/console/calls?phone=%2B1", "/console/calls?phone=%2B1"),
        ("/console/dashboard", "/console/dashboard"),
        ("//evil.example", "/console/calls"),
        ("/\\evil.example", "/console/calls"),
        ("https://evil.example", "/console/calls"),
        ("/x\r\nLocation: //evil", "/console/calls"),
        ("/x y", "/console/calls"),
        (None, "/console/calls"),
    ],
)
def test_console_safe_next_only_allows_paths_on_this_site(target: str | None, expected: str) -> None:
    assert safe_next(target) == expected


def test_console_session_cookies_and_csrf_tokens() -> None:
    now = [1_000_000.0]
    codec = SessionCodec(b"s" * 32, clock=lambda: now[0])
    cookie, session = codec.issue("key_1")
    assert codec.read(cookie) == session
    assert SessionCodec(b"t" * 32, clock=lambda: now[0]).read(cookie) is None  # another server's key
    token = codec.csrf_token(session)
    tampered = token[:-1] + ("B" if token.endswith("A") else "A")  # "+ 'A'" alone is no change 1 time in 64
    assert codec.check_csrf(session, token) and not codec.check_csrf(session, tampered)
    other = codec.issue("key_1")[1]
    assert not codec.check_csrf(other, token)  # a token belongs to one session
    signin_cookie, form_token = codec.signin_token()
    assert codec.check_signin(signin_cookie, form_token)
    assert not codec.check_signin(signin_cookie, codec.signin_token()[1])
    again, same_token = codec.signin_token(signin_cookie)  # another tab's form: the browser's token is kept
    assert same_token == form_token and codec.check_signin(again, form_token)
    assert codec.signin_token(signin_cookie[:-2] + "xx")[1] != form_token  # not one it cannot verify
    now[0] += codec.ttl_secs + 1
    assert codec.read(cookie) is None
    assert not codec.check_signin(signin_cookie, form_token)


def test_console_search_marks_the_matching_words_even_after_letters_whose_lowercase_is_longer() -> None:
    from services.console.router import _highlight

    # "İ".lower() is two characters: positions in the lowered text are not positions in the text.
    assert _highlight("İİİ say hello there", "hello") == [("İİİ say ", False), ("hello", True), (" there", False)]
    assert _highlight("Hello, HELLO", "hello") == [("Hello", True), (", ", False), ("HELLO", True)]
