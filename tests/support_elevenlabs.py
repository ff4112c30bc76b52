"""A stand-in for the ElevenLabs Conversations API on 127.0.0.1: the three endpoints sync uses (and the
DELETE that erasure's ``--upstream`` sends), over real HTTP, with the paging, filters, statuses, chunked
audio, fault injection and request counts that the client's contract tests and the sync benchmarks need.

    with ElevenLabsStandIn() as api:                  # a free loopback port; stopped on exit
        ids = api.add_many(250)                       # documents are built from a template on demand
        api.add("conv_long", audio=SyntheticAudio(50 * 1024 * 1024, "long"))
        api.fail_next(2, 429, retry_after="3", kind="list")
        client = ElevenLabsClient(api.url, API_KEY)
        ...
        assert api.requests["list"] == 5

Documents have the shape of ``GET /v1/convai/conversations/{id}`` (the transcription webhook's
``data``, from tests/fixtures), list rows that of the SDK's ``ConversationSummaryResponseModel``. The
bounds ``call_start_after_unix`` and ``call_start_before_unix`` are exclusive, as the port says.
"""

import base64
import bisect
import hashlib
import random
import re
import socket
import sys
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Literal, cast
from urllib.parse import parse_qs, unquote, urlparse

import orjson

from tests.support import TRANSCRIPTION, fixture_json

API_KEY = "xi_standin_key_not_for_production"
AGENT_ID = "agent_01jxbrc1trfxev5sdp5xk4ra67"
AGENT_NAME = "Story Companion"
T0 = 1_751_802_015  # the fixture call's start
PHONE = "+16125550142"
CONVERSATIONS = "/v1/convai/conversations"
FINAL = frozenset({"done", "failed"})
BLOCK_BYTES = 64 * 1024

Kind = Literal["list", "get", "audio", "delete", "other"]
_ONE = re.compile(r"^/v1/convai/conversations/([^/]+)$")
_AUDIO = re.compile(r"^/v1/convai/conversations/([^/]+)/audio$")


def _template() -> dict[str, Any]:
    """The fixture call with every top-level field ``GetConversationResponseModel`` declares."""
    doc: dict[str, Any] = fixture_json(TRANSCRIPTION)["data"]
    doc.update(
        agent_name=AGENT_NAME,
        conversation_product="agents",
        branch_id=None,
        version_id=None,
        user_message_count=0,
        agent_message_count=1,
        visited_agents=[],
        environment="production",
        has_audio=True,
        has_user_audio=True,
        has_response_audio=True,
        has_auxiliary_audio=False,
        tag_ids=[],
        otlp_traces=None,
    )
    return doc


_TEMPLATE = _template()
_TEMPLATE_BYTES = orjson.dumps(_TEMPLATE)
_AGENT_TURN = _TEMPLATE["transcript"][0]
_USER_TURN = {**_AGENT_TURN, "role": "user", "message": "Yes, let's pick up where we left off.", "interrupted": False}


@dataclass(frozen=True, slots=True)
class SyntheticAudio:
    """Deterministic bytes of any size (an ID3 header, then noise from ``seed``), made block by block:
    a 50 MB call costs no memory on either side of the wire."""

    size: int
    seed: str

    def chunks(self) -> Iterator[bytes]:
        rng = random.Random(self.seed)
        left = self.size
        first = True
        while left > 0:
            block = rng.randbytes(BLOCK_BYTES)
            if first:
                block = b"ID3" + block[3:]
                first = False
            yield block[:left]
            left -= len(block)

    def sha256(self) -> str:
        digest = hashlib.sha256()
        for chunk in self.chunks():
            digest.update(chunk)
        return digest.hexdigest()

    def read(self) -> bytes:
        """Whole: for small audio only."""
        return b"".join(self.chunks())


def default_audio(conversation_id: str) -> SyntheticAudio:
    return SyntheticAudio(16 * 1024, conversation_id)


@dataclass(frozen=True, slots=True)
class Conversation:
    """What the stand-in keeps per call; the document is built from the template when asked for."""

    conversation_id: str
    start: int
    agent_id: str = AGENT_ID
    agent_name: str | None = AGENT_NAME
    status: str = "done"  # initiated | in-progress | processing | done | failed
    call_successful: str = "success"
    duration: int = 7
    message_count: int = 1
    has_audio: bool = True
    audio: bytes | SyntheticAudio | None = None  # None: default_audio(conversation_id) when has_audio
    direction: str | None = "inbound"
    phone: str | None = PHONE
    extra: dict[str, Any] | None = None  # deep-merged into the document last (unknown fields, overrides)

    def document(self) -> dict[str, Any]:
        doc: dict[str, Any] = orjson.loads(_TEMPLATE_BYTES)
        cid = self.conversation_id
        agent_turns = self.message_count - self.message_count // 2
        doc.update(
            conversation_id=cid,
            agent_id=self.agent_id,
            agent_name=self.agent_name,
            status=self.status,
            has_audio=self.has_audio,
            has_user_audio=self.has_audio,
            has_response_audio=self.has_audio,
            user_message_count=self.message_count // 2,
            agent_message_count=agent_turns,
            transcript=[
                {**(_AGENT_TURN if i % 2 == 0 else _USER_TURN), "time_in_call_secs": i * 3}
                for i in range(self.message_count)
            ],
        )
        metadata = doc["metadata"]
        metadata.update(start_time_unix_secs=self.start, accepted_time_unix_secs=self.start)
        metadata["call_duration_secs"] = self.duration
        call = metadata["phone_call"]
        call.update(direction=self.direction, external_number=self.phone)
        variables = doc["conversation_initiation_client_data"]["dynamic_variables"]
        variables.update(system__agent_id=self.agent_id, system__conversation_id=cid, system__caller_id=self.phone)
        doc["analysis"]["call_successful"] = self.call_successful
        if self.extra:
            _deep_merge(doc, self.extra)
        return doc

    def summary(self) -> dict[str, Any]:
        """The list row. Cheap (no document) unless ``extra`` may have changed what the row shows."""
        if self.extra:
            return summary_of(self.document())
        analysis = _TEMPLATE["analysis"]
        return {
            "agent_id": self.agent_id,
            "branch_id": None,
            "version_id": None,
            "agent_name": self.agent_name,
            "conversation_id": self.conversation_id,
            "start_time_unix_secs": self.start,
            "call_duration_secs": self.duration,
            "cost": _TEMPLATE["metadata"]["cost"],
            "message_count": self.message_count,
            "user_message_count": self.message_count // 2,
            "agent_message_count": self.message_count - self.message_count // 2,
            "status": self.status,
            "termination_reason": _TEMPLATE["metadata"]["termination_reason"],
            "call_successful": self.call_successful,
            "transcript_summary": analysis.get("transcript_summary"),
            "call_summary_title": analysis.get("call_summary_title"),
            "main_language": _TEMPLATE["metadata"]["main_language"],
            "direction": self.direction,
            "rating": None,
            "tool_names": [],
            "tag_ids": [],
        }

    def audio_chunks(self) -> Iterator[bytes]:
        audio = self.audio if self.audio is not None else default_audio(self.conversation_id)
        if isinstance(audio, SyntheticAudio):
            yield from audio.chunks()
        else:
            for offset in range(0, len(audio), BLOCK_BYTES):
                yield audio[offset : offset + BLOCK_BYTES]

    def audio_sha256(self) -> str:
        digest = hashlib.sha256()
        for chunk in self.audio_chunks():
            digest.update(chunk)
        return digest.hexdigest()


def summary_of(doc: dict[str, Any]) -> dict[str, Any]:
    """A list row derived from a full document (the slow path, and the oracle for the fast one)."""
    metadata, analysis = doc.get("metadata") or {}, doc.get("analysis") or {}
    transcript = doc.get("transcript") or []
    return {
        "agent_id": doc.get("agent_id"),
        "branch_id": doc.get("branch_id"),
        "version_id": doc.get("version_id"),
        "agent_name": doc.get("agent_name"),
        "conversation_id": doc.get("conversation_id"),
        "start_time_unix_secs": metadata.get("start_time_unix_secs"),
        "call_duration_secs": metadata.get("call_duration_secs"),
        "cost": metadata.get("cost"),
        "message_count": len(transcript),
        "user_message_count": sum(1 for turn in transcript if turn.get("role") == "user"),
        "agent_message_count": sum(1 for turn in transcript if turn.get("role") == "agent"),
        "status": doc.get("status"),
        "termination_reason": metadata.get("termination_reason"),
        "call_successful": analysis.get("call_successful"),
        "transcript_summary": analysis.get("transcript_summary"),
        "call_summary_title": analysis.get("call_summary_title"),
        "main_language": metadata.get("main_language"),
        "direction": (metadata.get("phone_call") or {}).get("direction"),
        "rating": None,
        "tool_names": [],
        "tag_ids": doc.get("tag_ids") or [],
    }


def _deep_merge(target: dict[str, Any], changes: dict[str, Any]) -> None:
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(target.get(key), dict):
            _deep_merge(target[key], value)
        else:
            target[key] = value


def _from_document(conversation: Conversation) -> Conversation:
    """After ``extra`` changed the document, the fields listing and filtering read follow it."""
    doc = conversation.document()
    row = summary_of(doc)
    return replace(
        conversation,
        has_audio=bool(doc.get("has_audio")),
        start=int(row["start_time_unix_secs"]),
        agent_id=row["agent_id"],
        status=row["status"],
        call_successful=row["call_successful"],
        duration=int(row["call_duration_secs"]),
        message_count=int(row["message_count"]),
    )


@dataclass
class Fault:
    """Applies to the next ``times`` requests that match ``kind`` and ``path`` (a regex), then expires."""

    times: int
    action: Literal["status", "delay", "cut"]
    status: int = 503
    retry_after: str | None = None
    seconds: float = 0.0
    after_bytes: int = 0
    kind: Kind | None = None
    path: str | None = None

    def matches(self, kind: Kind, path: str) -> bool:
        return (
            self.times > 0
            and (self.kind is None or self.kind == kind)
            and (self.path is None or re.search(self.path, path) is not None)
        )


@dataclass(frozen=True, slots=True)
class Recorded:
    kind: Kind
    path: str
    query: dict[str, str]
    status: int


@dataclass
class _State:
    conversations: dict[str, Conversation] = field(default_factory=dict)
    order: list[tuple[int, str]] = field(default_factory=list)  # (-start, id): newest first
    faults: list[Fault] = field(default_factory=list)
    log: list[Recorded] = field(default_factory=list)
    arrived: Counter[str] = field(default_factory=Counter)
    in_flight: int = 0
    max_in_flight: int = 0


class ElevenLabsStandIn:
    """The API's state and its controls; every method is thread-safe and works while serving."""

    def __init__(self, api_key: str = API_KEY) -> None:
        self.api_key = api_key
        self._state = _State()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._serial = 0

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self) -> "ElevenLabsStandIn":
        server = _Server(("127.0.0.1", 0), _Handler)
        server.stand_in = self
        self._server = server
        # A short poll: stop() waits for the serving loop to notice, once per test.
        self._thread = threading.Thread(
            target=server.serve_forever, args=(0.02,), name="elevenlabs-stand-in", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()  # cuts injected delays short
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(5)

    def __enter__(self) -> "ElevenLabsStandIn":
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def url(self) -> str:
        assert self._server is not None, "start() the stand-in first"
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    # -- conversations ----------------------------------------------------------------------------

    def add(self, conversation_id: str | None = None, *, start: int | None = None, **fields: Any) -> str:
        """One conversation (fields: those of ``Conversation``); returns its id."""
        with self._lock:
            self._serial += 1
            serial = self._serial
        cid = conversation_id or f"conv_standin_{serial:06d}"
        conversation = Conversation(cid, T0 + serial * 60 if start is None else start, **fields)
        if conversation.extra:
            conversation = _from_document(conversation)
        with self._lock:
            self._remove_locked(cid)
            self._state.conversations[cid] = conversation
            bisect.insort(self._state.order, (-conversation.start, cid))
        return cid

    def add_many(
        self,
        count: int,
        *,
        start: int = T0,
        step: int = 60,
        id_prefix: str = "conv_standin_",
        phone_of: Callable[[int], str | None] | None = None,
        **fields: Any,
    ) -> list[str]:
        """``count`` conversations starting ``step`` seconds apart, oldest first; 10,000 take milliseconds."""
        with self._lock:
            first = self._serial + 1
            self._serial += count
        made = [
            Conversation(f"{id_prefix}{first + n:06d}", start + n * step, **fields)
            if phone_of is None
            else Conversation(f"{id_prefix}{first + n:06d}", start + n * step, phone=phone_of(n), **fields)
            for n in range(count)
        ]
        if fields.get("extra"):
            made = [_from_document(conversation) for conversation in made]
        with self._lock:
            for conversation in made:
                self._remove_locked(conversation.conversation_id)
                self._state.conversations[conversation.conversation_id] = conversation
            self._state.order.extend((-c.start, c.conversation_id) for c in made)
            self._state.order.sort()
        return [c.conversation_id for c in made]

    def update(self, conversation_id: str, **changes: Any) -> None:
        """Change fields (e.g. ``status="done"``); ``extra`` is merged into the earlier extra."""
        with self._lock:  # read, change and write back as one step: concurrent updates all land
            current = self._state.conversations[conversation_id]
            if "extra" in changes and current.extra:
                merged = orjson.loads(orjson.dumps(current.extra))
                _deep_merge(merged, changes["extra"] or {})
                changes["extra"] = merged
            changed = replace(current, **changes)
            if changed.extra:
                changed = _from_document(changed)
            self._remove_locked(conversation_id)
            self._state.conversations[conversation_id] = changed
            bisect.insort(self._state.order, (-changed.start, conversation_id))

    def remove(self, conversation_id: str) -> None:
        """Deleted upstream: GET and audio answer 404 from now on."""
        with self._lock:
            self._remove_locked(conversation_id)

    def _remove_locked(self, conversation_id: str) -> None:
        old = self._state.conversations.pop(conversation_id, None)
        if old is not None:
            position = bisect.bisect_left(self._state.order, (-old.start, conversation_id))
            del self._state.order[position]

    def conversation(self, conversation_id: str) -> Conversation:
        with self._lock:
            return self._state.conversations[conversation_id]

    def document(self, conversation_id: str) -> dict[str, Any]:
        """The document exactly as GET serves it."""
        return self.conversation(conversation_id).document()

    def ids(self) -> list[str]:
        """Every conversation id, newest first (the list order)."""
        with self._lock:
            return [cid for _neg_start, cid in self._state.order]

    # -- faults -----------------------------------------------------------------------------------

    def fail_next(
        self,
        times: int = 1,
        status: int = 503,
        *,
        retry_after: str | None = None,
        kind: Kind | None = None,
        path: str | None = None,
    ) -> None:
        """Answer ``status`` (JSON ``detail``; 200 makes a JSON body where audio was due), with ``Retry-After``."""
        self._add_fault(Fault(times, "status", status=status, retry_after=retry_after, kind=kind, path=path))

    def delay_next(self, times: int, seconds: float, *, kind: Kind | None = None, path: str | None = None) -> None:
        """Wait ``seconds`` before answering normally (the stand-in's stop cuts the wait short)."""
        self._add_fault(Fault(times, "delay", seconds=seconds, kind=kind, path=path))

    def cut_audio_next(self, times: int = 1, *, after_bytes: int = 100_000, path: str | None = None) -> None:
        """Drop the connection after ``after_bytes`` of the audio, without the chunked terminator."""
        self._add_fault(Fault(times, "cut", after_bytes=after_bytes, kind="audio", path=path))

    def clear_faults(self) -> None:
        with self._lock:
            self._state.faults.clear()

    def _add_fault(self, fault: Fault) -> None:
        with self._lock:
            self._state.faults.append(fault)

    def _take_fault(self, kind: Kind, path: str) -> Fault | None:
        with self._lock:
            for fault in self._state.faults:
                if fault.matches(kind, path):
                    fault.times -= 1
                    return fault
        return None

    # -- what was asked ---------------------------------------------------------------------------

    @property
    def requests(self) -> dict[str, int]:
        """Requests received per kind (list, get, audio, delete, other), counted on arrival: faulted,
        refused and still unanswered ones included."""
        with self._lock:
            counts = self._state.arrived
            return {kind: counts[kind] for kind in ("list", "get", "audio", "delete", "other")}

    @property
    def log(self) -> list[Recorded]:
        """The requests answered, in the order their answers went out, with the status sent."""
        with self._lock:
            return list(self._state.log)

    @property
    def max_in_flight(self) -> int:
        """The most requests the stand-in was answering at once since the last ``reset_counts``."""
        with self._lock:
            return self._state.max_in_flight

    def reset_counts(self) -> None:
        with self._lock:
            self._state.log.clear()
            self._state.arrived.clear()
            self._state.max_in_flight = self._state.in_flight

    def _enter(self, kind: Kind) -> None:
        with self._lock:
            self._state.arrived[kind] += 1
            self._state.in_flight += 1
            self._state.max_in_flight = max(self._state.max_in_flight, self._state.in_flight)

    def _leave(self, record: Recorded) -> None:
        with self._lock:
            self._state.in_flight -= 1
            self._state.log.append(record)

    # -- the endpoints ----------------------------------------------------------------------------

    def _list(self, query: dict[str, str]) -> tuple[int, dict[str, Any]]:
        try:
            size = int(query.get("page_size", "30"))
            after = int(query["call_start_after_unix"]) if "call_start_after_unix" in query else None
            before = int(query["call_start_before_unix"]) if "call_start_before_unix" in query else None
            cursor = _read_cursor(query["cursor"]) if query.get("cursor") else None
        except ValueError as exc:
            return 422, _detail("invalid_parameters", str(exc))
        if not 1 <= size <= 100:
            return 422, _detail("invalid_parameters", "page_size must be between 1 and 100")
        agent_id = query.get("agent_id")
        page: list[Conversation] = []
        has_more = False
        with self._lock:
            order = self._state.order
            position = bisect.bisect_left(order, (-(before - 1), "")) if before is not None else 0
            if cursor is not None:
                position = max(position, bisect.bisect_right(order, cursor))
            while position < len(order):
                neg_start, cid = order[position]
                position += 1
                if after is not None and -neg_start <= after:
                    break
                conversation = self._state.conversations[cid]
                if agent_id is not None and conversation.agent_id != agent_id:
                    continue
                if len(page) == size:
                    has_more = True
                    break
                page.append(conversation)
        last = page[-1] if page else None
        return 200, {
            "conversations": [conversation.summary() for conversation in page],
            "next_cursor": _write_cursor(last) if has_more and last is not None else None,
            "has_more": has_more,
        }

    def _get(self, conversation_id: str) -> tuple[int, dict[str, Any]]:
        with self._lock:
            conversation = self._state.conversations.get(conversation_id)
        if conversation is None:
            return 404, _detail("conversation_not_found", f"Conversation {conversation_id} not found")
        return 200, conversation.document()

    def _delete(self, conversation_id: str) -> tuple[int, dict[str, Any]]:
        """As the API: 200 and the conversation (with its audio) is gone; 404 when there is none."""
        with self._lock:
            if conversation_id not in self._state.conversations:
                return 404, _detail("conversation_not_found", f"Conversation {conversation_id} not found")
            self._remove_locked(conversation_id)
        return 200, {}

    def _audio(self, conversation_id: str) -> Conversation | tuple[int, dict[str, Any]]:
        with self._lock:
            conversation = self._state.conversations.get(conversation_id)
        if conversation is None or not conversation.has_audio or conversation.status not in FINAL:
            return 404, _detail("audio_not_found", f"Audio for conversation {conversation_id} not found")
        return conversation


def _detail(status: str, message: str) -> dict[str, Any]:
    return {"detail": {"status": status, "message": message}}


def _write_cursor(conversation: Conversation) -> str:
    raw = f"{conversation.start}|{conversation.conversation_id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _read_cursor(cursor: str) -> tuple[int, str]:
    try:
        start, cid = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode().split("|", 1)
        return -int(start), cid
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValueError("invalid cursor") from exc


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    stand_in: ElevenLabsStandIn

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], OSError):  # a client that hung up (timeouts, cut streams): expected
            return
        super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive and chunked transfer, as the real API
    timeout = 30  # an idle keep-alive connection's thread ends eventually
    _request: tuple[Kind, str, dict[str, str]]
    _left = False

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in separate writes: without this, Nagle and the client's delayed
        # ACK add ~40 ms to every keep-alive response.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: Any) -> None:
        return

    def do_GET(self) -> None:
        api = cast(_Server, self.server).stand_in
        url = urlparse(self.path)
        path = url.path
        query = {name: values[-1] for name, values in parse_qs(url.query).items()}
        one, audio = _ONE.match(path), _AUDIO.match(path)
        kind: Kind = "list" if path == CONVERSATIONS else "get" if one else "audio" if audio else "other"
        self._request = (kind, path, query)
        self._left = False
        api._enter(kind)
        try:
            self._answer(api, kind, path, query, one, audio)
        finally:
            self._leave(api, 0)  # only if an error cut the answer short

    def do_DELETE(self) -> None:
        api = cast(_Server, self.server).stand_in
        path = urlparse(self.path).path
        one = _ONE.match(path)
        kind: Kind = "delete" if one else "other"
        self._request = (kind, path, {})
        self._left = False
        api._enter(kind)
        try:
            fault = api._take_fault(kind, path)
            if fault is not None and fault.action == "delay":
                api._stopping.wait(fault.seconds)
            if fault is not None and fault.action == "status":
                headers = {"retry-after": fault.retry_after} if fault.retry_after is not None else {}
                self._json(api, fault.status, _detail("injected", f"injected HTTP {fault.status}"), headers)
            elif self.headers.get("xi-api-key") != api.api_key:
                self._json(api, 401, _detail("invalid_api_key", "Invalid API key"))
            elif one is None:
                self._json(api, 405, {"detail": "Method Not Allowed"})
            else:
                self._json(api, *api._delete(unquote(one.group(1))))
        finally:
            self._leave(api, 0)

    def _leave(self, api: ElevenLabsStandIn, status: int) -> None:
        """Once per request, before its last bytes go out: by the time a client has read a whole
        response, the stand-in has counted it and no longer counts it in flight."""
        if not self._left:
            self._left = True
            kind, path, query = self._request
            api._leave(Recorded(kind, path, query, status))

    def _answer(
        self,
        api: ElevenLabsStandIn,
        kind: Kind,
        path: str,
        query: dict[str, str],
        one: re.Match[str] | None,
        audio: re.Match[str] | None,
    ) -> int:
        fault = api._take_fault(kind, path)
        if fault is not None and fault.action == "delay":
            api._stopping.wait(fault.seconds)
        if fault is not None and fault.action == "status":
            headers = {"retry-after": fault.retry_after} if fault.retry_after is not None else {}
            return self._json(api, fault.status, _detail("injected", f"injected HTTP {fault.status}"), headers)
        if self.headers.get("xi-api-key") != api.api_key:
            return self._json(api, 401, _detail("invalid_api_key", "Invalid API key"))
        if kind == "list":
            return self._json(api, *api._list(query))
        if one is not None:
            return self._json(api, *api._get(unquote(one.group(1))))
        if audio is not None:
            found = api._audio(unquote(audio.group(1)))
            if isinstance(found, tuple):
                return self._json(api, *found)
            return self._stream(api, found, fault.after_bytes if fault is not None and fault.action == "cut" else None)
        return self._json(api, 404, {"detail": "Not Found"})

    def _json(self, api: ElevenLabsStandIn, status: int, body: Any, headers: dict[str, str] | None = None) -> int:
        data = orjson.dumps(body)
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self._leave(api, status)
        self.end_headers()
        self.wfile.write(data)
        return status

    def _stream(self, api: ElevenLabsStandIn, conversation: Conversation, cut_after: int | None) -> int:
        self.send_response(200)
        self.send_header("content-type", "audio/mpeg")
        self.send_header("transfer-encoding", "chunked")
        self.end_headers()
        sent = 0
        for chunk in conversation.audio_chunks():
            if cut_after is not None and sent + len(chunk) >= cut_after:
                part = chunk[: cut_after - sent]
                if part:
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
                self._leave(api, 200)
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)  # mid-body, no terminator: a dropped stream
                return 200
            self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            sent += len(chunk)
        self._leave(api, 200)
        self.wfile.write(b"0\r\n\r\n")
        return 200
