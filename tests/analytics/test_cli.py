"""``callvault report``, ``sql``, ``backfill-analytics`` and ``compact-analytics`` through click, on a
data dir filled by ``callvault import`` (which writes the analytics tables like the webhook does)."""

import csv
import importlib.util
import io
import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from services.analytics.rows import encode
from services.analytics.tables import CONTENT_TYPE, MESSAGES, object_key, parse_day_object_key
from services.cli.main import cli
from services.core.adapters.fs_blob_store import FsBlobStore
from tests.support import FIXTURES


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    target = tmp_path_factory.mktemp("data")
    result = CliRunner().invoke(cli, ["import", str(FIXTURES), "--data-dir", str(target)])
    assert result.exit_code == 0, result.output
    return target


def _run(*args: str) -> str:
    result = CliRunner().invoke(cli, list(args))
    assert result.exit_code == 0, result.output
    return result.stdout


def test_import_writes_the_tables_and_reports_read_them(data_dir: Path) -> None:
    assert sorted(p.name for p in (data_dir / "analytics").iterdir()) == ["calls", "evaluations", "messages"]
    rows = json.loads(_run("report", "calls-per-day", "--format", "json", "--data-dir", str(data_dir)))
    assert rows == [
        {
            "day": "2025-07-06",
            "calls": 3,
            "successful": 0,
            "avg_duration_secs": 4.7,
            "total_duration_secs": 14,
            "total_cost_usd": None,
            "total_cost_credits": 90,
        },
        {
            "day": "2025-07-07",
            "calls": 1,
            "successful": 0,
            "avg_duration_secs": 7.0,
            "total_duration_secs": 7,
            "total_cost_usd": None,
            "total_cost_credits": 45,
        },
    ]


def test_caller_history_accepts_any_phone_format(data_dir: Path) -> None:
    out = _run("report", "caller", "--phone", "(612) 555-0142", "--format", "csv", "--data-dir", str(data_dir))
    rows = list(csv.DictReader(io.StringIO(out)))
    assert [r["conversation_id"] for r in rows] == ["conv_01jzfrjvcce0vsea1fcbpp9p04"]
    assert rows[0]["has_audio"] == "True"  # the audio fixture was imported too


def test_keyword_table_output(data_dir: Path) -> None:
    out = _run("report", "keyword", "-k", "maria", "--no-cache", "--data-dir", str(data_dir))
    assert "conv_01jzfrjvcce0vsea1fcbpp9p04" in out and "3 row(s)" in out


def test_sql_uses_the_glue_table_names(data_dir: Path) -> None:
    out = _run(
        "sql",
        "SELECT kind, count(*) AS n FROM evaluations GROUP BY kind ORDER BY kind",
        "--format",
        "json",
        "--data-dir",
        str(data_dir),
    )
    assert json.loads(out) == [{"kind": "criterion", "n": 15}, {"kind": "data", "n": 15}]


def test_bad_sql_is_a_clean_error(data_dir: Path) -> None:
    result = CliRunner().invoke(cli, ["sql", "SELECT nope FROM calls", "--data-dir", str(data_dir)])
    assert result.exit_code == 1
    assert "nope" in result.output and "Traceback" not in result.output


@pytest.mark.parametrize("name", ["calls-per-day", "success-rate", "criteria"])
def test_chart_writes_a_png(data_dir: Path, tmp_path: Path, name: str) -> None:
    target = tmp_path / f"{name}.png"
    _run("report", name, "--chart", str(target), "--data-dir", str(data_dir))
    blob = target.read_bytes()
    assert blob[:8] == b"\x89PNG\r\n\x1a\n" and len(blob) > 10_000


def test_chart_without_matplotlib_says_how_to_install_it(
    data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`make serve` installs the runtime only; the PNG charts' matplotlib is the `charts` extra."""
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "matplotlib" else real_find_spec(name, *a)
    )
    target = tmp_path / "calls.png"
    result = CliRunner().invoke(cli, ["report", "calls-per-day", "--chart", str(target), "--data-dir", str(data_dir)])
    assert result.exit_code == 1, result.output
    assert (
        ".venv/bin/pip install -c constraints.txt -e '.[charts]'" in result.output and "Traceback" not in result.output
    )
    assert not target.exists()


def test_csv_cells_a_spreadsheet_would_run_are_text(monkeypatch: pytest.MonkeyPatch, capsys: Any) -> None:
    """Agent names and transcript words come from callers: '=HYPERLINK(...)' must not run in Excel."""
    from services.analytics.result import QueryResult
    from services.cli.analytics_commands import print_result

    hostile = ['=HYPERLINK("http://x")', "+cmd|' /C calc'!A0", "-2+3", "@SUM(A1)", "\t=1"]
    harmless = ["+16125550142", "-3.5", "Support agent", "a=b"]
    result = QueryResult(["value", "n"], ["varchar", "bigint"], [(v, -1) for v in hostile + harmless])
    print_result(result, "csv")
    rows = list(csv.reader(io.StringIO(capsys.readouterr().out)))[1:]
    assert [r[0] for r in rows] == ["'" + v for v in hostile] + harmless
    assert {r[1] for r in rows} == {"-1"}  # numbers stay numbers


def test_table_output_prints_control_characters_as_question_marks(capsys: Any) -> None:
    """Transcript words come from callers: an escape sequence must not drive the operator's terminal."""
    from services.analytics.result import QueryResult
    from services.cli.analytics_commands import print_result

    result = QueryResult(["text"], ["varchar"], [("hi\x1b]0;owned\x07 there\x1b[2J",)])
    print_result(result, "table")
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\x07" not in out and "hi?]0;owned? there?[2J" in out


def test_usage_errors(data_dir: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    for args, message in [
        (["report", "keyword"], "keyword"),
        (["report", "caller", "--phone", "not a phone"], "phone has no digits; expected a phone number"),
        # refused as `calls --phone` refuses it, not answered with 0 rows: it can never match an archived call
        (["report", "caller", "--phone", "555-0142"], "local number without its area code"),
        (["report", "caller", "--phone", "555"], "too few digits"),
        (["report", "top-callers", "--chart", str(tmp_path / "x.png")], "has no chart"),
        (["report", "agents", "--since", "2025-07-07", "--until", "2025-07-01"], "after --until"),
        (["report", "nonsense"], "nonsense"),
    ]:
        result = runner.invoke(cli, [*args, "--data-dir", str(data_dir)])
        assert result.exit_code == 2, (args, result.output)
        assert message in result.output


def _tables(data_dir: Path) -> dict[str, bytes]:
    root = data_dir / "analytics"
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*.json.gz"))}


def test_backfill_rebuilds_deleted_tables(data_dir: Path, tmp_path: Path) -> None:
    # The import wrote per-call objects into closed days (2025); backfill ends with those days merged,
    # so compare with the import's tables after the merge that would follow it.
    _run("compact-analytics", "--data-dir", str(data_dir))
    before = _tables(data_dir)
    assert before and all(parse_day_object_key(key) for key in before)
    for path in (data_dir / "analytics").rglob("*.json.gz"):
        path.unlink()
    result = CliRunner().invoke(cli, ["backfill-analytics", "--data-dir", str(data_dir)])
    assert result.exit_code == 0, result.output
    assert "4 calls" in result.output
    assert _tables(data_dir) == before  # the same objects, byte for byte


def _put_open_day_objects(root: Path, dt: str, count: int) -> list[str]:
    """Per-call objects as the webhook writes them while a day is open (here: a day long closed)."""
    store = FsBlobStore(root)
    ids = [f"conv_late{i}" for i in range(count)]
    for conversation_id in ids:
        row = {"conversation_id": conversation_id, "turn_index": 0, "role": "user", "text": "refund please"}
        store.put_bytes(object_key(MESSAGES, dt, conversation_id), encode(MESSAGES, [row]), CONTENT_TYPE)
    return ids


def test_compact_analytics_merges_closed_days_and_keeps_every_row(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    root = data_dir / "analytics"
    ids = _put_open_day_objects(root, "2025-07-02", 4)
    result = CliRunner().invoke(cli, ["compact-analytics", "--data-dir", str(data_dir)])
    assert result.exit_code == 0, result.output
    assert "1 day objects written from 4 per-call objects" in result.output
    assert sorted(p.name for p in root.rglob("*.json.gz")) == ["day.compacted.json.gz"]
    out = _run("sql", "SELECT conversation_id FROM messages ORDER BY 1", "--format", "csv", "--data-dir", str(data_dir))
    assert out.split() == ["conversation_id", *ids]


def test_table_output_prints_values_as_text_not_rich_markup(data_dir: Path) -> None:
    """Agent messages carry audio tags such as "[laughs]": a table must show them, and a closing
    tag ("[/x]") must not crash the command."""
    out = _run("sql", "SELECT '[laughs] sure [/x]' AS said", "--data-dir", str(data_dir))
    assert "[laughs] sure [/x]" in out


def test_import_of_a_newer_version_into_a_merged_day_counts_the_call_once(tmp_path: Path) -> None:
    """The fixtures' days (July 2025) are closed: after a merge, importing a newer version of one call
    writes a per-call object beside the day object. The import folds it in before it ends, so no report
    reads the call twice until the next merge (nothing else would run one without `serve`)."""
    from tests.support import TRANSCRIPTION, fixture_json

    data = tmp_path / "data"
    assert CliRunner().invoke(cli, ["import", str(FIXTURES), "--data-dir", str(data)]).exit_code == 0
    assert CliRunner().invoke(cli, ["compact-analytics", "--data-dir", str(data)]).exit_code == 0
    newer = fixture_json(TRANSCRIPTION)
    newer["event_timestamp"] += 3600
    newer["data"]["analysis"]["call_successful"] = "success"
    folder = tmp_path / "newer"
    folder.mkdir()
    (folder / "call.json").write_text(json.dumps(newer))

    assert CliRunner().invoke(cli, ["import", str(folder), "--data-dir", str(data)]).exit_code == 0

    day = json.loads(_run("report", "calls-per-day", "--format", "json", "--no-cache", "--data-dir", str(data)))
    assert [(d["day"], d["calls"], d["successful"]) for d in day] == [("2025-07-06", 3, 1), ("2025-07-07", 1, 0)]
    leftover = [p.name for p in (data / "analytics").rglob("conv_*.json.gz")]
    assert leftover == []  # folded into the day objects


def test_import_says_when_it_found_nothing_and_skips_what_is_not_a_file(tmp_path: Path) -> None:
    import os

    empty = tmp_path / "empty"
    empty.mkdir()
    result = CliRunner().invoke(cli, ["import", str(empty), "--data-dir", str(tmp_path / "data")])
    assert result.exit_code == 0 and "no .json files found" in result.output
    os.mkfifo(empty / "pipe.json")  # reading it would block for ever
    result = CliRunner().invoke(cli, ["import", str(empty), "--data-dir", str(tmp_path / "data")])
    assert result.exit_code == 0 and "no .json files found" in result.output
    result = CliRunner().invoke(cli, ["import", str(empty / "pipe.json"), "--data-dir", str(tmp_path / "data")])
    assert result.exit_code == 1 and "not a regular file" in result.output


def test_keyword_pages_by_cursor_and_says_where_the_next_page_starts(data_dir: Path) -> None:
    base = ["report", "keyword", "-k", "maria", "--format", "json", "--no-cache", "--data-dir", str(data_dir)]
    runner = CliRunner()
    everything = json.loads(_run(*base))
    assert len(everything) == 3

    first = runner.invoke(cli, [*base, "--limit", "2"])
    assert first.exit_code == 0, first.output
    assert json.loads(first.stdout) == everything[:2]  # stdout stays the rows alone
    cursor = first.stderr.strip().rsplit("--after ", 1)[1]
    assert cursor == "{day}.{conversation_id}.{turn_index}".format(**everything[1])

    second = runner.invoke(cli, [*base, "--limit", "2", "--after", cursor])
    assert second.exit_code == 0, second.output
    assert json.loads(second.stdout) == everything[2:]
    assert "More turns match" not in second.stderr  # the last page says nothing more


def test_after_is_refused_where_it_cannot_page(data_dir: Path) -> None:
    runner = CliRunner()
    for args, message in [
        (["report", "agents", "--after", "2025-07-06.conv_x.1"], "keyword report only"),
        (["report", "keyword", "-k", "maria", "--after", "2025-07-06;DROP"], "not a cursor"),
    ]:
        result = runner.invoke(cli, [*args, "--data-dir", str(data_dir)])
        assert result.exit_code == 2, (args, result.output)
        assert message in result.output


def test_import_takes_a_file_with_a_byte_order_mark_and_refuses_one_beyond_the_body_bound(tmp_path: Path) -> None:
    """A file saved by a Windows editor starts with a UTF-8 BOM: archived as without it. A file larger
    than the webhook's bound is refused without being read whole."""
    source = FIXTURES / "post_call_transcription.json"
    with_bom = tmp_path / "in" / "saved-on-windows.json"
    with_bom.parent.mkdir()
    with_bom.write_bytes(b"\xef\xbb\xbf" + source.read_bytes())
    data_dir = ["--data-dir", str(tmp_path / "data")]
    result = CliRunner().invoke(cli, ["import", str(with_bom), "--json", *data_dir])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["stored"] == 1

    big = tmp_path / "in" / "big.json"
    big.write_bytes(b" " * (1024 * 1024 + 1) + source.read_bytes())
    refused = CliRunner().invoke(
        cli, ["import", str(big), *data_dir], env={"CALLVAULT_MAX_BODY_BYTES": str(1024 * 1024)}
    )
    assert refused.exit_code == 1 and "larger than 1 MiB" in refused.output
