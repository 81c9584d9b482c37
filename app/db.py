"""Engine, sessions and migrations. Engines are built lazily, once per process (rq forks)."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path
from typing import Generic, TypeVar

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, event, make_url
from sqlalchemy.orm import Session, sessionmaker


class DatabaseNotMigrated(RuntimeError):
    """The schema is missing or behind the code; the message says what to run."""


# Worker sessions on PostgreSQL (use_worker_sessions). A transaction left idle by a worker that
# froze, or that the network cut off with its socket half-open, ends after a minute and frees
# its row locks: far above the longest pause a job makes inside a transaction (a packet's PDF,
# a few seconds; one send, SENDGRID_TIMEOUT). A statement waits at most 10 s for a lock, then
# fails and rq retries the job, instead of holding a worker until its job's timeout.
WORKER_SESSION_OPTIONS = "-c idle_in_transaction_session_timeout=60s -c lock_timeout=10s"

_worker_sessions = False  # set by use_worker_sessions
_engines: dict[tuple[str, int, bool, bool], Engine] = {}


def _engine(url: str, autocommit: bool = False) -> Engine:
    # pid in the key: a forked rq work horse must not reuse its parent's connections.
    key = (url, os.getpid(), autocommit, _worker_sessions)
    engine = _engines.get(key)
    if engine is None:
        # Two threads may both build one: the first stays, and an engine connects only when used.
        engine = _engines.setdefault(key, _create_engine(url, autocommit, _worker_sessions))
    return engine


def _create_engine(url: str, autocommit: bool, worker: bool) -> Engine:
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 30}, **_autocommit(autocommit))
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    # No pre-ping: it costs a round trip per request on the webhook's hot path. A connection the
    # server dropped fails one request (a 5xx SendGrid retries) and is then replaced. A server
    # that does not answer fails a connect in 10 s, not the system's TCP timeout.
    connect_args: dict[str, object] = {"connect_timeout": 10}
    if worker:
        given = make_url(url).query.get("options", "")  # connect_args would replace the URL's
        connect_args["options"] = f"{given} {WORKER_SESSION_OPTIONS}".strip()
    return create_engine(
        url, pool_recycle=1800, connect_args=connect_args, **_autocommit(autocommit)
    )


def _autocommit(on: bool) -> dict[str, str]:
    # Set once per pooled connection: per checkout, SQLAlchemy would set and reset it every time.
    return {"isolation_level": "AUTOCOMMIT"} if on else {}


def _sqlite_pragmas(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")  # the web process and a worker may share the file
    cursor.close()


def engine_for(url: str) -> Engine:
    return _engine(url)


def autocommit_engine_for(url: str) -> Engine:
    """Connections where each statement is its own transaction: the webhook's one INSERT."""
    return _engine(url, True)


def use_worker_sessions() -> None:
    """Make this process a worker's (`roundtable worker`). Safe to call twice.

    Its PostgreSQL sessions, and its children's, get WORKER_SESSION_OPTIONS. And before it forks
    (rq's scheduler; with --fork, a work horse per job) it closes its pooled connections: a child
    that inherited one would keep the socket open after this process died, so the server would
    never see the client go, and a transaction in flight, with the row it claimed, would stay
    open forever. The process reconnects when it next needs to.
    """
    global _worker_sessions
    if not _worker_sessions:
        _worker_sessions = True
        os.register_at_fork(before=_close_pooled_connections)


def _close_pooled_connections() -> None:
    """Close this process's idle pooled connections. (Forks happen between jobs, when every
    connection is back in its pool.)"""
    pid = os.getpid()
    for (_url, engine_pid, _autocommit, _worker), engine in list(_engines.items()):
        if engine_pid == pid:
            engine.dispose()


def sessionmaker_for(url: str) -> sessionmaker[Session]:
    return sessionmaker(bind=engine_for(url), expire_on_commit=False)


@contextmanager
def session_scope(url: str) -> Iterator[Session]:
    """A session for one job or command; the caller commits, anything raised rolls back."""
    with sessionmaker_for(url)() as session:
        try:
            yield session
        except BaseException:
            session.rollback()
            raise


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(files("app") / "migrations"))
    config.set_main_option("sqlalchemy.url", url)
    config.attributes["engine"] = engine_for(url)
    return config


def upgrade(url: str) -> None:
    """Bring the schema to the newest migration. Safe to call twice."""
    command.upgrade(alembic_config(url), "head")


def head_revision(url: str) -> str | None:
    return ScriptDirectory.from_config(alembic_config(url)).get_current_head()


def check_migrated(url: str) -> None:
    """Raise DatabaseNotMigrated unless the database is at the newest migration."""
    with engine_for(url).connect() as connection:
        current = MigrationContext.configure(connection).get_current_revision()
    head = head_revision(url)
    if current != head:
        state = "has no Roundtable tables" if current is None else f"is at {current}, code needs {head}"
        raise DatabaseNotMigrated(
            f"The database ({_redacted(url)}) {state}. Run: roundtable db upgrade"
        )


def _redacted(url: str) -> str:
    return engine_for(url).url.render_as_string(hide_password=True)


Item = TypeVar("Item")
Result = TypeVar("Result")


def _let_others_run() -> None:
    """Yield once (under gevent: every greenlet that is ready runs) so callers already on their
    way join the batch about to be written. No time passes: a lone caller still writes at once.
    Under bench/webhook.py's load it took batches from about 4 to about 6.5 messages."""
    time.sleep(0)


def _batch_failed(error: BaseException) -> RuntimeError:
    """What the other callers of a failed write raise: an exception of their own (one shared
    object would gather every caller's frames in its traceback), caused by the write's; never
    the writer's own kill or timeout."""
    failed = RuntimeError(f"the batch's write failed ({type(error).__name__})")
    failed.__cause__ = error
    return failed


@dataclass(eq=False)  # each slot is its own: equal items must not compare equal
class _Slot(Generic[Item, Result]):
    item: Item
    # Set when the slot is done, or when its caller is to write the next batch. Under gevent's
    # monkey-patching threading.Event is gevent's own, which costs a fraction of a Condition.
    # (Looked up per slot, so a module imported before the patching still gets gevent's.)
    wake: threading.Event = field(default_factory=lambda: threading.Event())
    lead: bool = False  # holds the lead: this caller writes the next batch
    done: bool = False
    result: Result | None = None
    error: BaseException | None = None

    def outcome(self) -> Result:
        if self.error is not None:
            raise self.error
        return self.result  # type: ignore[return-value]


class GroupCommit(Generic[Item, Result]):
    """Lets the threads (or gevent greenlets) of one process share a statement and a commit.

    A caller that finds nobody writing becomes the writer: it takes the items waiting (at most
    `max_items`, its own first), calls `write(items)` outside the lock, hands each caller its
    result and wakes it, and hands the lead to the first caller still waiting, if any. A lone
    caller writes its own item at once: before taking its batch a writer only yields once, so
    callers that are ready to run can join it; it never waits for time to pass. Each call
    returns only once its own item is written, so nothing is less durable than one statement
    per call. Each waiting caller is woken once, for its result or for the lead.

    `write` returns one result per item, in order. If it raises, the writer raises that error
    and each other caller of the batch a RuntimeError caused by it. A caller killed while it
    waits (a gevent timeout, a dropped client) holds up nobody (`_abandon`).
    """

    def __init__(self, write: Callable[[list[Item]], list[Result]], *, max_items: int = 16) -> None:
        self._write, self._max_items = write, max_items
        self._lock = threading.Lock()
        self._waiting: list[_Slot[Item, Result]] = []
        self._writing = False

    def __call__(self, item: Item) -> Result:
        slot: _Slot[Item, Result] = _Slot(item)
        with self._lock:
            lead = not self._writing
            if lead:
                self._writing = slot.lead = True
            else:
                self._waiting.append(slot)
        if not lead:
            try:
                slot.wake.wait()
            except BaseException:  # a timeout or kill while waiting: leave no lead unheld
                self._abandon(slot)
                raise
            if slot.done:
                return slot.outcome()
        try:
            _let_others_run()
        except BaseException:  # killed before it wrote: the lead goes on, nobody is stranded
            self._abandon(slot)
            raise
        with self._lock:  # this caller leads: its slot is out of the queue
            take = self._max_items - 1
            batch, self._waiting = [slot, *self._waiting[:take]], self._waiting[take:]
        error: BaseException | None = None
        try:
            results: list[Result | None] = list(self._write([s.item for s in batch]))
            if len(results) != len(batch):
                raise RuntimeError(f"write returned {len(results)} results for {len(batch)} items")
        except BaseException as raised:  # handed to every caller of the batch, never lost
            results, error = [None] * len(batch), raised
        for waiting, result in zip(batch, results, strict=True):
            waiting.result, waiting.done = result, True
            if error is not None:
                waiting.error = error if waiting is slot else _batch_failed(error)
        with self._lock:
            successor = self._next_lead()
        if successor is not None:  # first, so the next write starts while these answer
            successor.wake.set()
        for waiting in batch[1:]:
            waiting.wake.set()
        return slot.outcome()

    def _next_lead(self) -> _Slot[Item, Result] | None:
        """Under the lock: the caller that writes next, or None, and nobody is writing."""
        successor = self._waiting.pop(0) if self._waiting else None
        if successor is not None:
            successor.lead = True
        self._writing = successor is not None
        return successor

    def _abandon(self, slot: _Slot[Item, Result]) -> None:
        """A caller gives up before its item is written. Still queued: it leaves the queue.
        Holding the lead: the lead goes to the next caller waiting. In a batch being written,
        or done: nothing to do (its item is written all the same)."""
        with self._lock:
            if slot in self._waiting:
                self._waiting.remove(slot)
                return
            if not slot.lead:
                return
            successor = self._next_lead()
        if successor is not None:
            successor.wake.set()
