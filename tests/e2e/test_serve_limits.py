"""Bounded work per request and hostile input, against the real `callvault serve` process (issue #10).

Every server binds 127.0.0.1 and is started and stopped here through ``serve_archive``; every wait
is a loop bounded in count and in time; nothing asserts how long anything took. Memory is read from
``/proc/<pid>/status`` (a bound on bytes, not on time).
"""

import base64
import json
import os
import resource
import select
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing, contextmanager, suppress
from pathlib import Path
from typing import Any

import httpx
import pytest

from services.core.domain import signing
from tests.support import (
    AUDIO,
    TRANSCRIPTION,
    TRANSCRIPTION_WEB,
    ServedArchive,
    fixture_bytes,
    fixture_json,
    serve_archive,
    signed_headers,
)

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

WEBHOOK = "/webhooks/elevenlabs"
MB = 1024 * 1024
CONVERSATION = "conv_01jzfrjvcce0vsea1fcbpp9p04"  # the fixtures' call


# --- helpers -------------------------------------------------------------------------------------


def _post(served: ServedArchive, body: bytes, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.post(
        served.url + WEBHOOK, content=body, headers=signed_headers(body) if headers is None else headers, timeout=60
    )


def _forged_headers() -> dict[str, str]:
    """A well-formed, fresh signature that is wrong: only the whole body can tell."""
    return {signing.HEADER: f"t={int(time.time())},v0={'0' * 64}", "content-type": "application/json"}


def _files(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


def _index_rows(data_dir: Path) -> int:
    with closing(sqlite3.connect(data_dir / "index.sqlite3")) as conn:
        count: int = conn.execute("SELECT COUNT(*) FROM calls").fetchone()[0]
        return count


def _status_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(f"{field} not in /proc/{pid}/status")


def _port(served: ServedArchive) -> int:
    return int(served.url.rsplit(":", 1)[1])


def _connect(served: ServedArchive) -> socket.socket:
    return socket.create_connection(("127.0.0.1", _port(served)), timeout=5)


def _closed_by_peer(sock: socket.socket) -> bool:
    """True once the server has closed the connection (whatever it sent first is read and dropped)."""
    sock.setblocking(False)
    try:
        for _ in range(64):
            data = sock.recv(65536)
            if not data:
                return True
        return False
    except BlockingIOError:
        return False
    except OSError:  # reset
        return True
    finally:
        sock.setblocking(True)


def _send_quietly(sock: socket.socket, data: bytes) -> None:
    with suppress(OSError):  # closed by the server: _closed_by_peer will say so
        sock.sendall(data)


def _partial_body_request(served: ServedArchive, length: int) -> socket.socket:
    """A webhook whose (forged, fresh) signature header passes the pre-check and whose body never ends."""
    sock = _connect(served)
    head = (
        f"POST {WEBHOOK} HTTP/1.1\r\nHost: 127.0.0.1\r\ncontent-type: application/json\r\n"
        f"content-length: {length}\r\n{signing.HEADER}: t={int(time.time())},v0={'0' * 64}\r\n\r\n"
    )
    sock.sendall(head.encode() + b'{"type": "post_call_audio", ')
    return sock


@contextmanager
def _sockets() -> Iterator[list[socket.socket]]:
    opened: list[socket.socket] = []
    try:
        yield opened
    finally:
        for sock in opened:
            sock.close()


def _nested(levels: int) -> bytes:
    marker = "__nested__"
    envelope = fixture_json(TRANSCRIPTION)
    envelope["data"]["analysis"]["data_collection_results"] = {"x": {"value": marker}}
    return json.dumps(envelope).encode().replace(json.dumps(marker).encode(), b"[" * levels + b"]" * levels)


def _with_metadata(field: str, value: object) -> bytes:
    envelope = fixture_json(TRANSCRIPTION)
    envelope["data"]["metadata"][field] = value
    return json.dumps(envelope).encode()


# --- hostile values: 400, nothing written ---------------------------------------------------------

HOSTILE: list[tuple[str, bytes, str]] = [
    ("start-year-10000", _with_metadata("start_time_unix_secs", 253402300800), "start_time_unix_secs"),
    ("start-1e15", _with_metadata("start_time_unix_secs", 1e15), "start_time_unix_secs"),
    ("start-minus-1e15", _with_metadata("start_time_unix_secs", -1e15), "start_time_unix_secs"),
    ("duration-negative", _with_metadata("call_duration_secs", -1), "call_duration_secs"),
    ("cost-2^63", _with_metadata("cost", 2**63), "metadata.cost"),
    ("cost-fiat-1e300", _with_metadata("cost_fiat", 1e300), "cost_fiat"),
    ("nested-256", _nested(256), "deeper than 254"),
    ("nested-1000", _nested(1000), "deeper than 254"),  # decodable (orjson reads 1,024 levels), not encodable
    ("nested-100000", _nested(100_000), "deeper than 254"),
]


def test_serve_limits_values_no_store_can_hold_get_400_and_nothing_is_written(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    with serve_archive(data_dir) as served:
        for label, body, field in HOSTILE:
            response = _post(served, body)
            assert response.status_code == 400, (label, response.text)
            error = response.json()["error"]
            assert error["code"] == "invalid_payload", label
            assert field in error["message"], (label, error["message"])
        assert _files(data_dir / "archive") == []
        assert _files(data_dir / "analytics") == []
        assert _index_rows(data_dir) == 0
        # The reported crash came from the archived leftovers: a backfill now has nothing to choke on.
        backfill = subprocess.run(
            [sys.executable, "-m", "services.cli", "backfill-analytics", "--data-dir", str(data_dir)],
            capture_output=True,
            timeout=60,
            env={k: v for k, v in os.environ.items() if not k.startswith("CALLVAULT_")},
        )
        assert backfill.returncode == 0, backfill.stderr.decode()[-2000:]
        assert _post(served, fixture_bytes(TRANSCRIPTION)).status_code == 200


# --- memory: unauthenticated bodies cost a small buffer -------------------------------------------


def test_serve_limits_eight_unsigned_60mb_bodies_in_parallel_keep_memory_bounded(tmp_path: Path) -> None:
    body = b'{"type": "post_call_audio", "data": {"full_audio": "' + b"A" * (60 * MB) + b'"}}'
    with serve_archive(tmp_path / "data") as served:
        pid = served.process.pid
        Path(f"/proc/{pid}/clear_refs").write_text("5")  # resets VmHWM, the peak resident size
        baseline = _status_kb(pid, "VmRSS")
        sampled = [baseline]
        done = threading.Event()

        def sample() -> None:
            for _ in range(6000):  # bounded: at most ~2 minutes of sampling
                sampled.append(_status_kb(pid, "VmRSS"))
                if done.wait(0.02):
                    return

        def send(n: int) -> int:
            # Half carry no signature at all (refused before the body); half a forged one (streamed,
            # hashed, spooled to disk, refused at the end).
            headers = {"content-type": "application/json"} if n % 2 else _forged_headers()
            try:
                return _post(served, body, headers).status_code
            except httpx.TransportError:
                return -1

        sampler = threading.Thread(target=sample)
        sampler.start()
        try:
            with ThreadPoolExecutor(max_workers=8) as pool:
                statuses = list(pool.map(send, range(8)))
        finally:
            done.set()
            sampler.join()
        peak = max(max(sampled), _status_kb(pid, "VmHWM"))

        assert statuses == [401] * 8
        growth_mb = (peak - baseline) / 1024
        assert growth_mb < 150, f"server grew by {growth_mb:.0f} MB for 8 x 60 MB unauthenticated bodies"
        assert _post(served, fixture_bytes(TRANSCRIPTION)).status_code == 200  # and still serves


# --- slow clients --------------------------------------------------------------------------------

FAST_TIMEOUTS = {"CALLVAULT_HEADER_TIMEOUT_SECS": "2", "CALLVAULT_BODY_TIMEOUT_SECS": "2"}


def test_serve_limits_slow_headers_and_bodies_are_closed_while_others_are_served(tmp_path: Path) -> None:
    with serve_archive(tmp_path / "data", env=FAST_TIMEOUTS) as served, _sockets() as opened:
        idle = _connect(served)
        partial_head = _connect(served)
        partial_head.sendall(f"POST {WEBHOOK} HTTP/1.1\r\nHost: 127.0.0.1\r\n".encode())
        partial_body = _partial_body_request(served, 100_000)
        opened += [idle, partial_head, partial_body]
        drips = {id(partial_head): b"X-Slow: 1\r\n", id(partial_body): b"0000000000"}
        open_socks = {"idle": idle, "partial-head": partial_head, "partial-body": partial_body}
        served_meanwhile = False
        for tick in range(80):  # at most ~20 s of dripping, a byte or a header line at a time
            for name, sock in list(open_socks.items()):
                if id(sock) in drips:
                    _send_quietly(sock, drips[id(sock)])
                if _closed_by_peer(sock):
                    del open_socks[name]
            if tick == 2:  # while all three hold their connections, a real webhook goes through
                served_meanwhile = _post(served, fixture_bytes(TRANSCRIPTION)).status_code == 200
            if not open_socks and served_meanwhile:
                break
            time.sleep(0.25)
        assert served_meanwhile
        assert open_socks == {}, f"still open: {sorted(open_socks)}"
        assert "closed a slow connection" in served.logs()


# --- slow readers --------------------------------------------------------------------------------

SEND_TIMEOUT = {"CALLVAULT_SEND_TIMEOUT_SECS": "1"}


def _archive_long_call(served: ServedArchive) -> tuple[str, bytes]:
    """A long call archived with its recording (8 MiB: more than the kernel's socket buffers take in,
    so a client that stops reading leaves the rest waiting in the server); its signed link's path and
    the MP3."""
    envelope = fixture_json(AUDIO)
    frames = base64.b64decode(envelope["data"]["full_audio"])
    mp3 = frames * (8 * MB // len(frames) + 1)
    envelope["data"]["full_audio"] = base64.b64encode(mp3).decode()
    for body in (fixture_bytes(TRANSCRIPTION), json.dumps(envelope).encode()):
        assert _post(served, body).status_code == 200
    key = (served.data_dir / "api-key").read_text().strip()
    call = httpx.get(served.url + f"/calls/{CONVERSATION}", headers={"Authorization": f"Bearer {key}"}).json()
    assert call["links"]["audio"]["bytes"] == len(mp3)
    return call["links"]["audio"]["url"].removeprefix(served.url), mp3


def _request(served: ServedArchive, path: str, receive_buffer: int) -> socket.socket:
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)  # before connect: the window
    sock.settimeout(5)
    sock.connect(("127.0.0.1", _port(served)))
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
    return sock


def _reset_by_peer(sock: socket.socket) -> bool:
    """True once the server has reset the connection, told without reading (reading is what it waits for)."""
    poller = select.poll()
    poller.register(sock, select.POLLERR | select.POLLHUP)
    return any(events & (select.POLLERR | select.POLLHUP) for _fd, events in poller.poll(0))


def test_serve_limits_a_response_the_client_stops_reading_is_reset_and_others_are_served(tmp_path: Path) -> None:
    with serve_archive(tmp_path / "data", env=SEND_TIMEOUT) as served, _sockets() as opened:
        path, mp3 = _archive_long_call(served)
        logged_before = len(served.logs())
        stalled = _request(served, path, receive_buffer=4096)  # asks for the recording, never reads
        opened.append(stalled)
        served_meanwhile = reset = False
        for tick in range(80):  # at most ~20 s
            if tick == 2:  # while the reader holds its response, a webhook goes through
                served_meanwhile = _post(served, fixture_bytes(TRANSCRIPTION)).status_code == 200
            reset = _reset_by_peer(stalled)
            if reset and served_meanwhile:
                break
            time.sleep(0.25)
        assert served_meanwhile
        assert reset, "a client that reads nothing still holds its connection"
        with pytest.raises(ConnectionResetError):  # what it had not read is gone: the response was cut off
            while stalled.recv(65536):
                pass

        logs = served.logs()[logged_before:]
        assert '"phase":"response"' in logs and "closed a slow connection" in logs
        for _ in range(40):  # the app's task writing the response ended too (bounded: ~10 s)
            if '"route":"/files/{key:path}"' in served.logs()[logged_before:]:
                break
            time.sleep(0.25)
        (line,) = _file_log_lines(served.logs()[logged_before:])
        assert line["bytes_requested"] == len(mp3) and line["bytes_sent"] < len(mp3)  # the log says it was cut
        assert httpx.get(served.url + path, timeout=60).content == mp3  # and a reader that reads gets it all


def test_serve_limits_a_slow_but_steady_reader_gets_the_whole_response(tmp_path: Path) -> None:
    with serve_archive(tmp_path / "data", env=SEND_TIMEOUT) as served, _sockets() as opened:
        path, mp3 = _archive_long_call(served)
        reader = _request(served, path, receive_buffer=128 * 1024)
        opened.append(reader)
        received = b""
        head, separator, body = b"", b"", b""
        for _ in range(1000):  # a chunk every 0.3 s, the whole recording in ~15 s (bounded: ~5 min)
            time.sleep(0.3)  # longer than a quarter of the send timeout, shorter than all of it
            chunk = reader.recv(128 * 1024)
            assert chunk, f"closed after {len(received):,} bytes"
            received += chunk
            head, separator, body = received.partition(b"\r\n\r\n")
            if separator and len(body) >= len(mp3):
                break
        assert head.startswith(b"HTTP/1.1 200 ")
        assert body == mp3
        assert "closed a slow connection" not in served.logs()
        for _ in range(40):  # the log line is written once the response has ended (bounded: ~10 s)
            if _file_log_lines(served.logs()):
                break
            time.sleep(0.25)
        (line,) = _file_log_lines(served.logs())
        assert line["bytes_sent"] == line["bytes_requested"] == len(mp3)


def _file_log_lines(logs: str) -> list[dict[str, Any]]:
    return [
        json.loads(text)
        for text in logs.splitlines()
        if text.startswith("{") and '"route":"/files/{key:path}"' in text and '"method":"GET"' in text
    ]


# --- descriptor exhaustion -----------------------------------------------------------------------


def test_serve_limits_descriptor_exhaustion_logs_a_bounded_amount_and_serving_resumes(tmp_path: Path) -> None:
    with serve_archive(tmp_path / "data") as served, _sockets() as opened:
        pid = served.process.pid
        soft, hard = resource.prlimit(pid, resource.RLIMIT_NOFILE)
        in_use = len(os.listdir(f"/proc/{pid}/fd"))
        resource.prlimit(pid, resource.RLIMIT_NOFILE, (in_use + 16, hard))  # room for 16 more
        logged_before = len(served.logs())
        for _ in range(64):
            opened.append(_connect(served))  # idle: the kernel queues what the server cannot accept
        for _ in range(100):  # until the server has hit the limit (bounded: ~5 s)
            if "out of system resource" in served.logs()[logged_before:]:
                break
            time.sleep(0.05)
        assert "out of system resource" in served.logs()[logged_before:]
        time.sleep(3)  # asyncio retries accept() every second: three more rounds while still exhausted
        flood = served.logs()[logged_before:]

        for sock in opened:
            sock.close()
        opened.clear()
        resource.prlimit(pid, resource.RLIMIT_NOFILE, (soft, hard))

        # Unbounded before: every retry logged a traceback per pending connection slot (MBs per second).
        assert flood.count("out of system resource") <= 2, flood[:2000]
        assert len(flood) < 32 * 1024
        healthy = False
        for _ in range(100):  # bounded: the server accepts again once descriptors are free
            try:
                healthy = httpx.get(served.url + "/healthz", timeout=2).status_code == 200
            except httpx.TransportError:
                healthy = False
            if healthy:
                break
            time.sleep(0.1)
        assert healthy
        assert _post(served, fixture_bytes(TRANSCRIPTION)).status_code == 200


# --- bodies in flight ----------------------------------------------------------------------------


def test_serve_limits_bodies_beyond_the_cap_get_503_with_retry_after(tmp_path: Path) -> None:
    with serve_archive(tmp_path / "data", env={"CALLVAULT_MAX_BODIES_IN_FLIGHT": "2"}) as served, _sockets() as held:
        held += [_partial_body_request(served, 100_000) for _ in range(2)]  # two bodies that never end
        small = fixture_bytes(TRANSCRIPTION_WEB)
        busy: httpx.Response | None = None
        for _ in range(100):  # until both holders have their slots (bounded: ~5 s)
            response = _post(served, small, _forged_headers())  # 401 while a slot is free, 503 once none is
            if response.status_code == 503:
                busy = response
                break
            assert response.status_code == 401, response.text
            time.sleep(0.05)
        assert busy is not None, "a third body was taken while two were in flight"
        assert busy.headers["retry-after"] == "5"
        assert busy.headers["content-type"].startswith("application/json")
        assert busy.json()["error"]["code"] == "server_busy"
        assert busy.json()["request_id"]

        for sock in held:
            sock.close()
        stored = False
        for _ in range(100):  # the slots come back once the holders are gone (bounded: ~5 s)
            response = _post(served, small)
            stored = response.status_code == 200
            if stored:
                break
            assert response.status_code == 503, response.text
            time.sleep(0.05)
        assert stored
