"""Staging's day partitions loaded in parallel on worker connections (a first publish).

Each worker is its own DuckDB connection with the lake attached at the snapshot being
published and Postgres attached; each day is one transaction of its worker, loaded into a
standalone table the publish transaction attaches (staging.py holds the day's table, load and
statements).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager

import duckdb
import psycopg

from .catalog import attach_lake
from .duck import quote_literal
from .pgext import connect_for_postgres, end_transaction, load_postgres_extension, pg_execute
from .settings import Settings
from .staging import (
    LOADING_COMMENT,
    MAX_WORKERS,
    SILVER_SOURCE,
    DayLoad,
    LoadedPartition,
    PartitionTemplate,
    load_day,
    partition_name,
)

log = logging.getLogger(__name__)


class _Cancelled(Exception):
    pass


class PartitionLoads:
    """Loads days into standalone partition tables on worker connections, in parallel.

    Workers connect as soon as it is created; they load once `start()` has created the
    days' tables (marked by LOADING_COMMENT) from the partition template, which the publish
    transaction reads after its DDL. Each day is one transaction of its worker. Use through
    `load_partitions`: leaving it cancels the loads still running and waits for every
    worker, so no worker outlives the publish.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        dsn: str,
        schema: str,
        lake_snapshot: int,
        session_sql: str,
        days: Sequence[DayLoad],
        workers: int,
    ) -> None:
        # One DuckDB thread per worker: its COPY is a single stream anyway.
        self._settings = settings.with_(threads=1)
        self._dsn = dsn
        self._schema = schema
        self._lake_snapshot = lake_snapshot
        self._session_sql = session_sql
        self._template: PartitionTemplate | None = None
        self._days = list(days)
        self._queue: queue.SimpleQueue[DayLoad] = queue.SimpleQueue()
        for day in days:
            self._queue.put(day)
        self._ready = threading.Event()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._running: list[duckdb.DuckDBPyConnection] = []
        count = min(workers, MAX_WORKERS, len(days))
        self._pool = ThreadPoolExecutor(
            max_workers=max(1, count), thread_name_prefix="publish-load"
        )
        self._futures: list[Future[list[LoadedPartition]]] = [
            self._pool.submit(self._work) for _ in range(count)
        ]

    def start(self, template: PartitionTemplate) -> None:
        """Create every day's table, marked, in one committed transaction; then load.

        Created up front so that each worker's DuckDB reads Postgres's catalog once, not
        once per day (75 ms each).
        """
        if self._futures and not self._stop.is_set():
            with (
                psycopg.connect(self._dsn, autocommit=True, connect_timeout=10) as conn,
                conn.transaction(),
            ):
                conn.execute(self._session_sql)
                for day in self._days:
                    name = partition_name(day.day)
                    conn.execute(template.create_table(self._schema, day.day))
                    conn.execute(
                        f"comment on table {self._schema}.{name} "
                        f"is {quote_literal(LOADING_COMMENT)}"
                    )
        self._template = template
        self._ready.set()

    def raise_if_failed(self) -> None:
        """Raise a worker's error now rather than at `wait()`, if one has failed already."""
        for future in self._futures:
            if future.done() and future.exception() is not None:
                self.wait()

    def wait(self) -> list[LoadedPartition]:
        """Every loaded partition, by day; raises the error that stopped the loads."""
        loaded: list[LoadedPartition] = []
        error: BaseException | None = None
        for future in self._futures:
            try:
                loaded.extend(future.result())
            except BaseException as exc:
                # The first real error, not the interrupts it sent the other workers.
                if error is None or isinstance(error, duckdb.InterruptException):
                    error = exc
        self._pool.shutdown()
        if error is not None:
            raise error
        return sorted(loaded, key=lambda p: p.day)

    def cancel(self) -> None:
        """Stop every load (each rolls back its day) and wait for the workers."""
        self._halt()
        self._pool.shutdown(wait=True, cancel_futures=True)

    def _halt(self) -> None:
        self._stop.set()
        self._ready.set()
        with self._lock:
            for con in self._running:
                con.interrupt()

    def _check(self) -> None:
        if self._stop.is_set():
            raise _Cancelled

    def _work(self) -> list[LoadedPartition]:
        loaded: list[LoadedPartition] = []
        if self._stop.is_set():
            return loaded
        con = connect_for_postgres(self._settings)
        with self._lock:
            self._running.append(con)
        try:
            load_postgres_extension(con)
            # The snapshot the publish reads: never a newer one committed meanwhile.
            attach_lake(con, self._settings, as_of=self._lake_snapshot)
            con.execute(f"attach {quote_literal(self._dsn)} as pg (type postgres)")
            self._ready.wait()
            self._check()
            con.execute("call pg_clear_cache()")  # the tables start() created
            while not self._stop.is_set():
                try:
                    day = self._queue.get_nowait()
                except queue.Empty:
                    break
                loaded.append(self._load(con, day))
        except _Cancelled:
            pass
        except duckdb.InterruptException:
            if not self._stop.is_set():
                raise
        except BaseException:
            self._halt()  # the publish fails: the other workers need not finish
            raise
        finally:
            with self._lock:
                self._running.remove(con)
            con.close()
        return loaded

    def _load(self, con: duckdb.DuckDBPyConnection, load: DayLoad) -> LoadedPartition:
        assert self._template is not None  # set before _ready
        t0 = time.perf_counter()
        name = partition_name(load.day)
        self._check()
        con.execute("begin transaction")
        try:
            # Days load in parallel already: no parallel workers inside a day's index
            # builds, and a day's sorts need little memory. No waiting for the WAL flush
            # at each day's commit: the publish transaction's own commit flushes the WAL
            # up to it, this day's included, and if the server crashed first, the publish
            # never happened and the day is a leftover either way.
            pg_execute(
                con,
                f"{self._session_sql}; set local max_parallel_maintenance_workers = 0; "
                "set local maintenance_work_mem = '64MB'; set local synchronous_commit = off",
            )
            rows = load_day(
                con,
                schema=self._schema,
                template=self._template,
                source=SILVER_SOURCE,
                load=load,
                create=False,
                check=self._check,
            )
            self._check()
            con.execute("commit")
        except BaseException:
            # Never leave it open: `_work` closes the connection next (pgext.py).
            end_transaction(con)
            raise
        log.debug("loaded %s: %d rows in %.2fs", name, rows, time.perf_counter() - t0)
        return LoadedPartition(load.day, rows, time.perf_counter() - t0)


@contextmanager
def load_partitions(
    settings: Settings,
    *,
    dsn: str,
    schema: str,
    lake_snapshot: int,
    session_sql: str,
    days: Sequence[DayLoad],
    workers: int,
) -> Iterator[PartitionLoads]:
    """Start loading `days` from silver at lake snapshot `lake_snapshot` on worker connections.

    Workers connect at once; the body of the `with` calls `start(template)`, does its own
    work meanwhile, then calls `wait()`.
    """
    loads = PartitionLoads(
        settings,
        dsn=dsn,
        schema=schema,
        lake_snapshot=lake_snapshot,
        session_sql=session_sql,
        days=days,
        workers=workers,
    )
    try:
        yield loads
    finally:
        loads.cancel()  # stops what still runs after an error; a no-op once wait() returned
