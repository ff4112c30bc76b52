"""What creating, writing and removing a small file costs on this machine, per folder.

    .venv/bin/python benchmarks/file_create.py                  # a fresh folder under the system temp dir
    .venv/bin/python benchmarks/file_create.py /work/tmp /dev/shm

A webhook creates four files (the archive object and three analytics objects), the floor of
``ingest_live.py`` one. On ext4 without a journal, creating a file costs up to ~1 ms of CPU for 1-6
minutes after many files were deleted in the same block group (the kernel skips each recently freed
inode: ``recently_deleted`` in fs/ext4/ialloc.c), and about 20 µs otherwise. This prints the CPU time
of each system call, per folder. It deletes what it made, so the next run within minutes pays for it.
"""

import argparse
import os
import shutil
import tempfile
import time
from collections.abc import Callable

CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


def per_call_us(count: int, step: Callable[[int], object]) -> tuple[float, float]:
    cpu, wall = time.process_time(), time.perf_counter()
    for i in range(count):
        step(i)
    return (time.process_time() - cpu) / count * 1e6, (time.perf_counter() - wall) / count * 1e6


def measure(parent: str | None, count: int) -> None:
    folder = tempfile.mkdtemp(prefix="callvault-file-create-", dir=parent)
    body = b"x" * 2048
    writer = os.open(os.path.join(folder, "w"), CREATE, 0o600)
    try:
        steps: list[tuple[str, Callable[[int], object]]] = [
            ("create + close", lambda i: os.close(os.open(os.path.join(folder, f"a{i}"), CREATE, 0o600))),
            ("stat", lambda i: os.stat(os.path.join(folder, f"a{i}"))),
            ("write 2 KiB", lambda i: os.write(writer, body)),
            ("unlink", lambda i: os.unlink(os.path.join(folder, f"a{i}"))),
            ("mkdir", lambda i: os.mkdir(os.path.join(folder, f"d{i}"))),
        ]
        for label, step in steps:
            cpu, wall = per_call_us(count, step)
            print(f"| {folder} | {label} | {cpu:.1f} | {wall:.1f} |")
    finally:
        os.close(writer)
        shutil.rmtree(folder)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("parents", nargs="*", help="folders to create the test folder in [system temp]")
    parser.add_argument("--count", type=int, default=500, help="calls per step (10-100000) [500]")
    args = parser.parse_args()
    if not 10 <= args.count <= 100_000:
        parser.error("--count must be 10-100000")
    print("| folder | step | CPU µs per call | wall µs per call |\n|---|---|---:|---:|")
    for parent in args.parents or [None]:
        measure(parent, args.count)


if __name__ == "__main__":
    main()
