"""Engine, sessions and migrations. Engines are built lazily, once per process (rq forks)."""

from __future__ import annotations

import math
import os
import socket
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
_engines: dict[tuple[str, int, bool, bool, float | None], Engine] = {}


def _engine(url: str, autocommit: bool = False, timeout_s: float | None = None) -> Engine:
    # pid in the key: a forked rq work horse must not reuse its parent's connections.
    key = (url, os.getpid(), autocommit, _worker_sessions, timeout_s)
    engine = _engines.get(key)
    if engine is None:
        # Two threads may both build one: the first stays, and an engine connects only when used.
        engine = _engines.setdefault(key, _create_engine(url, autocommit, _worker_sessions, timeout_s))
    return engine


def _create_engine(url: str, autocommit: bool, worker: bool, timeout_s: float | None = None) -> Engine:
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
    options = [make_url(url).query.get("options", "")]  # connect_args would replace the URL's
    if worker:
        options.append(WORKER_SESSION_OPTIONS)
    pool: dict[str, object] = {}
    if timeout_s is not None:  # a web session's limits: see engine_for
        connect_args["connect_timeout"] = max(2, math.ceil(timeout_s))  # whole seconds, 2 at least
        options.append(f"-c statement_timeout={math.ceil(timeout_s * 1000)}")
        pool["pool_timeout"] = timeout_s
    if given := " ".join(o for o in options if isinstance(o, str) and o).strip():
        connect_args["options"] = given
    return create_engine(
        url, pool_recycle=1800, connect_args=connect_args, **pool, **_autocommit(autocommit)
    )


def _autocommit(on: bool) -> dict[str, str]:
    # Set once per pooled connection: per checkout, SQLAlchemy would set and reset it every time.
    return {"isolation_level": "AUTOCOMMIT"} if on else {}


def _sqlite_pragmas(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")  # the web process and a worker may share the file
    cursor.close()


# Web sessions on PostgreSQL (`timeout_s` given: the web app's DATABASE_TIMEOUT). A post that
# hangs helps nobody, and SendGrid retries a 503 for three days. So a connect gives up after
# timeout_s (in whole seconds, 2 at least, libpq's floor), a statement after timeout_s
# (statement_timeout, which also ends a wait for a lock), and a wait for a pooled connection
# after timeout_s (pool_timeout). A server that stops answering altogether (frozen, or cut off
# by the network) cannot end a statement itself: `Watchdog` ends the webhook's wait for it.
# Worker sessions have limits of their own (WORKER_SESSION_OPTIONS); commands have none.


def engine_for(url: str, timeout_s: float | None = None) -> Engine:
    """The process's engine for `url`; `timeout_s` for a web session's limits."""
    return _engine(url, timeout_s=timeout_s)


def autocommit_engine_for(url: str, timeout_s: float | None = None) -> Engine:
    """Connections where each statement is its own transaction: the webhook's one INSERT."""
    return _engine(url, True, timeout_s)


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
    for (_url, engine_pid, *_flavour), engine in list(_engines.items()):
        if engine_pid == pid:
            engine.dispose()


def sessionmaker_for(url: str, timeout_s: float | None = None) -> sessionmaker[Session]:
    return sessionmaker(bind=engine_for(url, timeout_s), expire_on_commit=False)


class Watchdog:
    """Ends a wait for a database server that stopped answering.

    A statement sent to a server that froze (stopped, a hung disk) or that the network lost
    after the connection was made is never answered: the server's statement_timeout cannot end
    it, and TCP keeps the socket open, for hours. `watch` gives a connection's wait a deadline;
    past it, a thread of the watchdog's shuts the socket down, so the wait ends at once with a
    connection error (and the connection is thrown away). Its thread starts on first use; a
    deadline costs a dict entry, no thread and no round trip.

    Make one in the process that uses it (a forked child has no thread of its parent's): the
    webhook's writer, built once per process, has one.
    """

    TICK_S = 0.1  # how late past its deadline a wait may end

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._deadlines: dict[Watched, float] = {}
        self._started = False

    @contextmanager
    def watch(self, fileno: int, seconds: float) -> Iterator[Watched]:
        """Shut socket `fileno` down if this block is still running `seconds` from now; the
        yielded object's `cut` says whether it was. The socket must stay open inside."""
        watched = Watched(fileno)
        with self._lock:
            if not self._started:
                self._started = True
                threading.Thread(target=self._run, name="db-watchdog", daemon=True).start()
            self._deadlines[watched] = time.monotonic() + seconds
        try:
            yield watched
        finally:
            with self._lock:  # from here on the watchdog will not touch the socket
                self._deadlines.pop(watched, None)

    def _run(self) -> None:
        while True:
            time.sleep(self.TICK_S)
            now = time.monotonic()
            with self._lock:  # held while cutting: `watch` cannot leave and close the socket
                late = [w for w, deadline in self._deadlines.items() if deadline <= now]
                for watched in late:
                    del self._deadlines[watched]
                    watched.cut = True
                    _shut_down(watched.fileno)


@dataclass(eq=False)
class Watched:
    """A socket under a `Watchdog`'s watch; `cut` once the watchdog shut it down."""

    fileno: int
    cut: bool = False


def _shut_down(fileno: int) -> None:
    """Shut a socket down (both ways) without closing its descriptor, which its owner closes."""
    try:
        sock = socket.socket(fileno=fileno)
    except OSError:
        return
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass  # already closed by the peer
    finally:
        sock.detach()


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
    scripts = ScriptDirectory.from_config(alembic_config(url))
    head = scripts.get_current_head()
    if current == head:
        return
    if current is not None and current not in {script.revision for script in scripts.walk_revisions()}:
        raise DatabaseNotMigrated(
            f"The database ({redacted(url)}) is at migration {current}, newer than this code knows (up to {head}):"
            " run the Roundtable version that upgraded it, or upgrade this one"
        )
    state = "has no Roundtable tables" if current is None else f"is at {current}, code needs {head}"
    raise DatabaseNotMigrated(f"The database ({redacted(url)}) {state}. Run: roundtable db upgrade")


def redacted(url: str) -> str:
    """`url` with its password hidden, for messages (a database's or Redis's)."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - a URL too broken to parse is shown without its credentials
        return url.rpartition("@")[2]


# What a failed connection's error says, and what to tell the operator (first match wins).
_CONNECTION_PROBLEMS = (
    (("could not translate host name",), "its host {host} is unknown: check the host name in DATABASE_URL"),
    (("failed to resolve host",), "its host {host} is unknown: check the host name in DATABASE_URL"),
    (("name or service not known",), "its host {host} is unknown: check the host name in DATABASE_URL"),
    (("connection refused",),
     "nothing answers at {host}:{port}: is PostgreSQL running there, on that port?"),
    (("timeout expired",), "{host}:{port} did not answer in time: check the host, the port and any firewall"),
    (("timed out",), "{host}:{port} did not answer in time: check the host, the port and any firewall"),
    (("database \"", "does not exist"),
     "the server has no database {database}: create it (createdb {database}) or fix its name in DATABASE_URL"),
    (("role \"", "does not exist"),
     "the server has no role {user}: fix the user in DATABASE_URL or create the role"),
    (("password authentication failed",),
     "the server refused the password for {user}: fix DATABASE_URL"),
    (("no password supplied",),
     "the server wants a password for {user}: add it to DATABASE_URL"),
    (("unable to open database file",),
     "the SQLite file {database} cannot be opened: does its folder exist and can we write there?"),
)


def connection_problem(url: str, error: BaseException) -> str:
    """One line for a database we could not use: what is wrong and what to do. Pure."""
    said = str(getattr(error, "orig", None) or error)
    lowered = said.lower()
    try:
        parsed = make_url(url)
        fields = {"host": parsed.host or "localhost", "port": parsed.port or 5432,
                  "database": parsed.database or "", "user": parsed.username or "(none)"}
    except Exception:  # noqa: BLE001 - the URL itself is the problem
        return f"DATABASE_URL is not a database URL ({redacted(url)}): use postgresql://user@host:5432/name or sqlite:///path"
    for needles, advice in _CONNECTION_PROBLEMS:
        if all(needle in lowered for needle in needles):
            return f"cannot use the database {redacted(url)}: " + advice.format(**fields)
    first = said.strip().splitlines()[0] if said.strip() else type(error).__name__
    return f"cannot use the database {redacted(url)}: {first}"


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

    With `wait_s`, a caller that has waited that long for its turn or its result (behind a
    write that is stuck, or a queue of them) stops waiting and raises TimeoutError; its item
    may still be written, by a batch that took it.
    """

    def __init__(
        self, write: Callable[[list[Item]], list[Result]], *, max_items: int = 16, wait_s: float | None = None
    ) -> None:
        self._write, self._max_items, self._wait_s = write, max_items, wait_s
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
                woken = slot.wake.wait(self._wait_s)
            except BaseException:  # a timeout or kill while waiting: leave no lead unheld
                self._abandon(slot)
                raise
            if not woken:
                self._abandon(slot)
                if not slot.done:  # (done just now: the result is in)
                    raise TimeoutError(f"waited {self._wait_s} s for the write")
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
