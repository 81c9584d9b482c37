"""`roundtable serve`: the real gunicorn (gevent workers) taking real webhook posts."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from sqlalchemy import select, text
from sqlalchemy.orm import Session

from app.jobs import DRAIN_JOB, queue
from app.models import InboundMessage
from app.settings import Settings
from tests.conftest import AUTH
from tests.mails import raw_mode, reply


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def post(port: int, body_and_type: tuple[bytes, str]) -> tuple[int, bytes]:
    body, content_type = body_and_type
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/inbound/sendgrid",
        data=body,
        headers={**AUTH, "Content-Type": content_type},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        with error:
            return error.code, error.read()


@pytest.fixture()
def server(redis_settings: Settings, tmp_path: Path):  # type: ignore[no-untyped-def]
    """`roundtable serve` in a process of its own, configured by the environment, until ready."""
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": redis_settings.database_url,
        "REDIS_URL": redis_settings.redis_url or "",
        "INBOUND_USERNAME": "sendgrid",
        "INBOUND_PASSWORD": "s3cret-inbound",
        "INBOUND_DOMAIN": redis_settings.inbound_domain,
        "MAIL_FROM": redis_settings.mail_from,
        "OUTBOX_DIR": str(tmp_path / "outbox"),
    }
    command = [sys.executable, "-m", "app.cli", "serve", "--port", str(port), "--workers", "2"]
    log = tmp_path / "serve.log"
    with log.open("wb") as output:
        process = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=output, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while True:
        assert process.poll() is None, log.read_text()
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as response:
                if response.status == 200:
                    break
        except OSError:
            pass
        assert time.monotonic() < deadline, "roundtable serve did not answer within 60 s"
        time.sleep(0.2)
    yield port, process
    process.send_signal(signal.SIGTERM)
    process.wait(timeout=30)


def test_serve_stores_concurrent_posts_once_each_and_nudges_a_drain(server, session: Session, redis_settings: Settings) -> None:  # type: ignore[no-untyped-def]
    port, process = server
    bodies = [raw_mode(reply(None, f"WINS\nPost {n}.", message_id=f"<serve-{n}@mail.example>")) for n in range(40)]
    postgresql = session.get_bind().dialect.name == "postgresql"
    engine = session.get_bind()
    with ThreadPoolExecutor(16) as pool, engine.connect() as blocker:
        if postgresql:
            # Hold every insert back until posts have queued up behind the first in each process.
            blocker.execute(text("LOCK TABLE inbound_messages IN SHARE MODE"))
        futures = [pool.submit(post, port, body) for body in bodies + bodies[:5]]
        if postgresql:
            waiting = "SELECT count(*) FROM pg_locks WHERE NOT granted AND relation = 'inbound_messages'::regclass"
            deadline = time.monotonic() + 30
            while session.scalar(text(waiting)) == 0:
                assert time.monotonic() < deadline, "no insert ever waited for the lock"
                time.sleep(0.05)
            session.rollback()
            time.sleep(0.5)  # the other posts in flight reach the writer and wait their turn
            blocker.rollback()
        answers = [future.result() for future in futures]
    assert [status for status, _ in answers] == [200] * 45
    assert sum(b'"duplicate": true' in text for _, text in answers) >= 5  # each message went in once
    stored = session.scalars(select(InboundMessage.message_id)).all()
    assert sorted(stored) == sorted(f"<serve-{n}@mail.example>" for n in range(40))
    if postgresql:
        # Posts that came while a write was held shared the next statement and commit
        # (db.GroupCommit): rows written by one transaction carry its id in xmin.
        transactions = session.scalar(text("SELECT count(DISTINCT xmin::text) FROM inbound_messages"))
        assert transactions < 40
    assert any(job.func_name == DRAIN_JOB for job in queue(redis_settings).get_jobs())
    assert process.poll() is None


def test_serve_answers_401_without_credentials(server) -> None:  # type: ignore[no-untyped-def]
    port, _process = server
    body, content_type = raw_mode(reply(None, "hello"))
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/inbound/sendgrid", data=body, headers={"Content-Type": content_type}, method="POST"
    )
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=30)
    refused.value.close()
    assert refused.value.code == 401


def test_serve_refuses_to_start_on_a_database_that_is_not_migrated(tmp_path: Path) -> None:
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{tmp_path / 'empty.db'}", "REDIS_URL": ""}
    finished = subprocess.run(
        [sys.executable, "-m", "app.cli", "serve", "--port", str(free_port())],
        env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert finished.returncode != 0
    assert "roundtable db upgrade" in finished.stderr
