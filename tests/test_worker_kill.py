"""A worker killed with SIGKILL in the middle of a drain leaves no message locked (issue 11).

A real `roundtable worker` in a process of its own, on PostgreSQL and Redis (CI sets both; the
`redis_settings` fixture skips without Redis, and these tests skip on SQLite, which has no row
locks). The processes are read from /proc, so this runs on Linux, as CI does.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from flask.testing import FlaskClient
from sqlalchemy import make_url, select, text
from sqlalchemy.orm import Session

from app import clock, db, jobs
from app.cycles import queue_requests
from app.models import Cycle, InboundMessage, InboundStatus, Member, UpdateRequest
from app.settings import Settings
from app.web import create_app
from tests.conftest import AUTH
from tests.mails import raw_mode, reply


@pytest.fixture()
def postgresql(settings: Settings) -> None:
    if db.engine_for(settings.database_url).dialect.name != "postgresql":
        pytest.skip("row locks and sessions need PostgreSQL (CI runs this on it)")


def worker_process(
    settings: Settings, folder: Path, name: str, *options: str
) -> subprocess.Popen[bytes]:
    """`roundtable worker` in a process of its own; its database sessions are named `name`, its
    output goes to folder/name.log (not a pipe, which a child that outlived it would hold open)."""
    env = {
        **os.environ,
        "DATABASE_URL": settings.database_url,
        "REDIS_URL": settings.redis_url or "",
        "MAIL_FROM": settings.mail_from,
        "INBOUND_DOMAIN": settings.inbound_domain,
        "BASE_URL": settings.base_url,
        "PGAPPNAME": name,  # libpq's: pg_stat_activity.application_name
    }
    with (folder / f"{name}.log").open("wb") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "app.cli", "worker", *options],
            cwd=folder,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )


def wait_for(condition: Callable[[], object], seconds: float, failure: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, failure
        time.sleep(0.1)


def children_of(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()  # after "pid (name)"
        except OSError:
            continue  # ended while we looked
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def is_running(pid: int) -> bool:
    """True while `pid` runs; a zombie (dead, not yet reaped by whoever adopted it) is not."""
    try:
        return (Path("/proc") / str(pid) / "stat").read_text().rpartition(")")[2].split()[0] != "Z"
    except OSError:
        return False


def sockets_to_port(pid: int, port: int) -> int:
    """How many of the process's open files are TCP connections to `port` (the database)."""
    inodes = set()
    for fd in (Path("/proc") / str(pid) / "fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[len("socket:[") : -1])
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            remote_port = int(fields[2].rpartition(":")[2], 16)
            count += remote_port == port and fields[9] in inodes
    return count


def sessions_named(session: Session, name: str, where: str = "true") -> int:
    count = session.scalar(
        text(f"SELECT count(*) FROM pg_stat_activity WHERE application_name = :name AND {where}"),
        {"name": name},
    )
    session.rollback()  # no snapshot kept: the next look sees the server as it is then
    return count or 0


# rq's SimpleWorker runs jobs in the worker's process (the default); with --fork, a work horse
# runs each job, and holds the one connection the worker's children may hold: its own.
@pytest.mark.parametrize(
    ("options", "connections_in_children"), [((), 0), (("--fork",), 1)], ids=["in-process", "fork"]
)
def test_a_worker_killed_mid_drain_leaves_no_message_locked(
    options: tuple[str, ...],
    connections_in_children: int,
    redis_settings: Settings,
    postgresql: None,
    session: Session,
    cycle: Cycle,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    """SIGKILL while the worker's drain holds its claim on a message: the worker's children die
    with it (and none holds a database connection), its session ends with it, and a new worker
    reads every message."""
    queue_requests(session, redis_settings, cycle)
    session.commit()
    monkeypatch.setattr(
        jobs, "_coalesced_nudges", {os.getpid(): jobs.Coalesced(jobs.nudge_inbound, 0.0)}
    )
    web: FlaskClient = create_app(redis_settings).test_client()
    tokens = session.execute(
        select(Member.email, UpdateRequest.token).join(UpdateRequest.member).order_by(Member.id)
    ).all()
    ids = []
    for email, token in tokens:
        data, content_type = raw_mode(reply(token, "WINS\nA good month.", sender=("", email)))
        response = web.post(
            "/inbound/sendgrid", data=data, headers={**AUTH, "Content-Type": content_type}
        )
        assert response.status_code == 200
        ids.append(response.get_json()["id"])
    assert [job.func_name for job in jobs.queue(redis_settings).get_jobs()] == [jobs.DRAIN_JOB]

    name = f"killed-worker-{secrets.token_hex(4)}"
    children: list[int] = []
    try:
        with db.engine_for(redis_settings.database_url).connect() as blocker:
            # Hold the drain in the middle of its first message: it has claimed the row (FOR
            # UPDATE) and waits to write the update.
            blocker.execute(text("LOCK TABLE updates IN SHARE MODE"))
            worker = worker_process(redis_settings, tmp_path, name, *options)
            try:
                wait_for(
                    lambda: (
                        worker.poll() is not None
                        or sessions_named(session, name, "wait_event_type = 'Lock'")
                    ),
                    60,
                    "the worker's drain never reached the update",
                )
                assert worker.poll() is None, (tmp_path / f"{name}.log").read_text()
                # The claim: the first message is locked, the others free.
                free = session.scalars(
                    select(InboundMessage.id)
                    .order_by(InboundMessage.id)
                    .with_for_update(skip_locked=True)
                ).all()
                session.rollback()
                assert free == ids[1:]
                assert children_of(worker.pid), "rq's scheduler runs in a child process"
                port = make_url(redis_settings.database_url).port or 5432
                connections = sum(sockets_to_port(child, port) for child in children_of(worker.pid))
                assert connections == connections_in_children, "a child inherited a connection"
            finally:
                children = children_of(worker.pid)  # while it lives: then init adopts them
                worker.kill()
                worker.wait(timeout=30)
            wait_for(
                lambda: not any(is_running(child) for child in children),
                10,
                "the killed worker's children outlived it",
            )
            blocker.rollback()  # the dead worker's statement goes on, with nobody to answer
        wait_for(
            lambda: sessions_named(session, name) == 0,
            30,
            "the killed worker's database session outlived it, and with it its claim",
        )
    finally:
        end_leftovers(session, children, name)

    # The sweep finds what was left unread, and a new worker reads it all.
    assert jobs.sweep(redis_settings, now=clock.now() + 2 * jobs.SWEEP_GRACE)[0] == len(ids)
    restarted = worker_process(redis_settings, tmp_path, f"{name}-restarted", "--burst")
    assert restarted.wait(timeout=120) == 0, (tmp_path / f"{name}-restarted.log").read_text()
    statuses = session.scalars(select(InboundMessage.status).order_by(InboundMessage.id)).all()
    assert statuses == [InboundStatus.ACCEPTED] * len(ids)


def end_leftovers(session: Session, pids: list[int], name: str) -> None:
    """What a failure of the test above would leave behind, ended so that the suite goes on: the
    killed worker's children, and its session, which would hold its locks for good (the tables
    could never be emptied after the test)."""
    for pid in pids:
        try:
            ours = (
                is_running(pid)
                and b"app.cli" in (Path("/proc") / str(pid) / "cmdline").read_bytes()
            )
        except OSError:
            continue  # it ended
        if ours:
            os.kill(pid, signal.SIGKILL)
    session.rollback()
    session.execute(
        text(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = :name"
        ),
        {"name": name},
    )
    session.rollback()


def test_worker_sessions_give_up_waiting_for_locks_and_idling_in_transactions(
    settings: Settings, postgresql: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker's sessions end an abandoned transaction and stop waiting for a lock; others
    keep PostgreSQL's defaults (a migration may wait for its lock as long as it takes)."""

    def session_settings() -> tuple[str, str]:
        with db.engine_for(settings.database_url).connect() as connection:
            return (
                connection.scalar(text("SHOW lock_timeout")),
                connection.scalar(text("SHOW idle_in_transaction_session_timeout")),
            )

    assert session_settings() == ("0", "0")
    monkeypatch.setattr(db, "_worker_sessions", True)  # as db.use_worker_sessions() leaves it
    worker_engine = db.engine_for(settings.database_url)
    try:
        assert session_settings() == ("10s", "1min")
    finally:
        worker_engine.dispose()  # no connection of it left open
