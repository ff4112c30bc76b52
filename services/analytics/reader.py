"""Reports for the web faces (the console's dashboard, ``GET /search``): the CLI's report code
(``reports.run_report``) over an engine opened per use, one use at a time per process.

Locally an engine is DuckDB over ``DATA_DIR/analytics`` (through the same cache file as the CLI, so
only new partitions are read); on AWS it is Athena, whose queries take seconds and cost per byte read.
"""

import contextlib
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path

from services.core.domain.errors import StorageUnavailable

from .reports import Engine, ReportArgs, run_report
from .result import QueryResult

CACHE_FILE = "analytics-cache.duckdb"


class AnalyticsReader:
    def __init__(self, open_engine: Callable[[], AbstractContextManager[Engine]], *, engine_name: str) -> None:
        self._open = open_engine
        self._lock = threading.Lock()
        self.engine_name = engine_name  # "duckdb" or "athena": the console says which it waits for

    @classmethod
    def local(cls, data_dir: Path) -> "AnalyticsReader":
        @contextlib.contextmanager
        def open_engine() -> Iterator[Engine]:
            from .duckdb_engine import DuckDbEngine

            engine = DuckDbEngine.local(data_dir / "analytics", data_dir / CACHE_FILE)
            try:
                yield engine
            finally:
                engine.close()  # the cache file stays free for the CLI between uses

        return cls(open_engine, engine_name="duckdb")

    @classmethod
    def athena(cls, workgroup: str, database: str, *, timeout_secs: float = 300.0) -> "AnalyticsReader":
        """``timeout_secs`` bounds each query: on Lambda it must end (and be stopped) before the function does."""
        engine: list[Engine] = []  # one client per process, made on first use

        def open_engine() -> AbstractContextManager[Engine]:
            if not engine:
                from .athena_engine import AthenaEngine

                engine.append(AthenaEngine(workgroup, database, timeout_secs=timeout_secs))
            return contextlib.nullcontext(engine[0])

        return cls(open_engine, engine_name="athena")

    def run(self, name: str, args: ReportArgs) -> QueryResult:
        """The report's rows; an engine that fails or times out raises ``StorageUnavailable`` (a 503 on
        the API, a message on the console) naming the query and how it ended, not Athena's reason: that
        may quote the results bucket or a value read, and the console shows it to reviewers. The query
        id finds the reason in Athena's history."""
        from .athena_engine import AthenaQueryFailed

        with self._lock, self._open() as engine:
            try:
                return run_report(engine, name, args)
            except AthenaQueryFailed as exc:
                reason = f"{exc.summary}; its reason is in Athena's query history"
                raise StorageUnavailable(f"the {self.engine_name} query did not finish ({reason})") from exc
