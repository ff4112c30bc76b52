"""A memory worker process for the kill test: ``python -m tests.memory.worker_child DATA_DIR MARKER N``.

It claims one job with a 3-second lease and runs it against the real offline Mem0 store, but its
embedder stops for good on the N-th text: it writes MARKER (so the test knows the job is half done:
N-1 memories are in Qdrant) and sleeps until the test kills the process.
"""

import sys
import time
from pathlib import Path

from services.core.adapters.fs_blob_store import FsBlobStore
from services.core.adapters.sqlite_call_index import SqliteCallIndex
from services.memory.embedder import OnnxMiniLmEmbedder
from services.memory.jobs import JobProcessor, NullStatusSink
from services.memory.mem0_oss import Mem0OssMemoryStore
from services.memory.outbox import SqliteOutbox
from services.memory.worker import MemoryWorker


class StallingEmbedder(OnnxMiniLmEmbedder):
    def __init__(self, marker: Path, stall_at: int) -> None:
        super().__init__()
        self.marker, self.stall_at, self.seen = marker, stall_at, 0

    def embed(self, text: str, memory_action: str | None = None) -> list[float]:
        self.seen += 1
        if self.seen >= self.stall_at:
            self.marker.write_text("stalled mid-job\n")
            while True:
                time.sleep(60)
        return super().embed(text, memory_action)


def main() -> None:
    data_dir, marker, stall_at = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
    index = SqliteCallIndex(data_dir / "index.sqlite3")
    store = Mem0OssMemoryStore(data_dir / "memory", embedder=StallingEmbedder(marker, stall_at))
    outbox = SqliteOutbox(data_dir / "index.sqlite3")
    worker = MemoryWorker(outbox, JobProcessor(FsBlobStore(data_dir / "archive"), index, store), NullStatusSink())
    worker.lease_secs = 3.0
    worker.run_once()
    raise SystemExit("the job finished: the embedder should have stalled")


if __name__ == "__main__":
    main()
