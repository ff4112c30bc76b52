"""What handing a webhook's body to an ingest process costs, apart from storing it (#10).

    .venv/bin/python benchmarks/ingest_handoff.py                  # 3,000 bodies of 180 KB, 4 at a time
    .venv/bin/python benchmarks/ingest_handoff.py --count 5000 --bytes 400000

``callvault serve`` hands each verified body from its event loop to one of two spawned children
through a ``ProcessPoolExecutor`` (services/local/ingest_process.py): a queue-management thread and
a feeder thread in the parent, pickling, and a lock-guarded queue in each child. This measures that
hand-off alone, with a child that answers at once, against the leanest alternative the standard
library offers: a socketpair per child, written and read by the event loop itself
(``loop.sock_sendall`` / ``sock_recv_into``, length-prefixed frames), no threads. CPU per body of
the parent and of the children (utime + stime), and wall time, in the same run.
"""

import argparse
import asyncio
import multiprocessing
import os
import resource
import socket
import struct
import time
from concurrent.futures import ProcessPoolExecutor
from typing import Any

_REQUEST = struct.Struct("!II")  # body length, request id length
_ANSWER = struct.Struct("!I")


def answer(raw: bytes, signature: str | None, request_id: str) -> tuple[int, dict[str, Any], list[str]]:
    """What a child answers (the shape of ``_store_in_child``'s), without storing anything."""
    return 200, {"status": "stored", "request_id": request_id, "bytes": len(raw)}, []


def _own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _process_cpu(pid: int) -> float:
    with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _recv_exact(sock: socket.socket, size: int) -> bytearray | None:
    buffer = bytearray(size)
    view, got = memoryview(buffer), 0
    while got < size:
        count = sock.recv_into(view[got:])
        if not count:
            return None
        got += count
    return buffer


def socket_child(sock: socket.socket) -> None:
    import orjson

    while (header := _recv_exact(sock, _REQUEST.size)) is not None:
        body_length, id_length = _REQUEST.unpack(header)
        request_id, raw = _recv_exact(sock, id_length), _recv_exact(sock, body_length)
        if request_id is None or raw is None:
            return
        reply = orjson.dumps(answer(bytes(raw), None, request_id.decode()))
        sock.sendall(_ANSWER.pack(len(reply)) + reply)


async def through_pool(pool: ProcessPoolExecutor, body: bytes, count: int, concurrency: int) -> None:
    limit = asyncio.Semaphore(concurrency)

    async def one(n: int) -> None:
        async with limit:
            await asyncio.wrap_future(pool.submit(answer, body, None, f"req-{n}"))

    await asyncio.gather(*(one(n) for n in range(count)))


async def through_sockets(socks: list[socket.socket], body: bytes, count: int, concurrency: int) -> None:
    import orjson

    loop = asyncio.get_running_loop()
    idle, waiting = list(socks), list[asyncio.Future[socket.socket]]()
    limit = asyncio.Semaphore(concurrency)

    async def recv_exact(sock: socket.socket, size: int) -> bytearray:
        buffer = bytearray(size)
        view, got = memoryview(buffer), 0
        while got < size:
            received = await loop.sock_recv_into(sock, view[got:])
            if not received:
                raise EOFError("the child closed its socket")
            got += received
        return buffer

    async def one(n: int) -> None:
        async with limit:
            if idle:
                sock = idle.pop()
            else:
                turn: asyncio.Future[socket.socket] = loop.create_future()
                waiting.append(turn)
                sock = await turn
            request_id = f"req-{n}".encode()
            await loop.sock_sendall(sock, _REQUEST.pack(len(body), len(request_id)) + request_id + body)
            (size,) = _ANSWER.unpack(await recv_exact(sock, _ANSWER.size))
            orjson.loads(await recv_exact(sock, size))
            if waiting:
                waiting.pop(0).set_result(sock)
            else:
                idle.append(sock)

    await asyncio.gather(*(one(n) for n in range(count)))


def measure(label: str, pids: list[int], run: Any, count: int) -> None:
    own, children, wall = _own_cpu(), sum(map(_process_cpu, pids)), time.perf_counter()
    asyncio.run(run)
    own, children = _own_cpu() - own, sum(map(_process_cpu, pids)) - children
    wall = time.perf_counter() - wall
    per = 1000 / count
    print(f"| {label} | {own * per:.3f} | {children * per:.3f} | {(own + children) * per:.3f} | {wall * per:.3f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=3000, help="bodies per way (100-100000) [3000]")
    parser.add_argument("--bytes", type=int, default=180_000, help="body size (1-67108864) [180000]")
    parser.add_argument("--concurrency", type=int, default=4, help="bodies in flight (1-64) [4]")
    parser.add_argument("--processes", type=int, default=2, help="children (1-8) [2, as serve]")
    args = parser.parse_args()
    for name, low, high in (
        ("count", 100, 100_000),
        ("bytes", 1, 1 << 26),
        ("concurrency", 1, 64),
        ("processes", 1, 8),
    ):
        if not low <= getattr(args, name) <= high:
            parser.error(f"--{name} must be {low}-{high}")
    body = os.urandom(args.bytes)
    context = multiprocessing.get_context("spawn")
    print(f"{args.count} bodies of {args.bytes} bytes, {args.concurrency} in flight, {args.processes} children\n")
    print(
        "| hand-off | parent CPU ms/body | children CPU ms/body | together | wall ms/body |\n|---|---:|---:|---:|---:|"
    )

    with ProcessPoolExecutor(args.processes, mp_context=context) as pool:
        list(pool.map(abs, range(args.processes)))  # spawned and imported before the clock starts
        pids = list(pool._processes)  # the executor has no public accessor
        measure(
            "ProcessPoolExecutor (serve today)",
            pids,
            through_pool(pool, body, args.count, args.concurrency),
            args.count,
        )

    children, socks = [], []
    for _ in range(args.processes):
        parent_end, child_end = socket.socketpair()
        child = context.Process(target=socket_child, args=(child_end,))
        child.start()
        child_end.close()
        parent_end.setblocking(False)
        children.append(child)
        socks.append(parent_end)
    try:
        time.sleep(1.0)  # the children's interpreters start before the clock does
        pids = [child.pid for child in children if child.pid is not None]
        measure(
            "socketpair, event loop only", pids, through_sockets(socks, body, args.count, args.concurrency), args.count
        )
    finally:
        for sock in socks:
            sock.close()  # EOF: each child returns
        for child in children:
            child.join(timeout=10)


if __name__ == "__main__":
    main()
