"""The `roundtable` command, run as a user would, on its own SQLite file."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from app.cli import main
from app.settings import configure


@pytest.fixture()
def run(tmp_path: Path):  # type: ignore[no-untyped-def]
    env = {
        "DATABASE_URL": f"sqlite:///{tmp_path / 'cli.db'}",
        "OUTBOX_DIR": str(tmp_path / "outbox"),
        "PACKETS_DIR": str(tmp_path / "packets"),
        "REDIS_URL": "",
        "MAIL_TRANSPORT": "outbox",
    }

    def invoke(*args: str):  # type: ignore[no-untyped-def]
        configure(None)  # read the environment afresh, as a new process would
        result = CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)
        configure(None)
        return result

    return invoke


def test_unmigrated_database_is_refused_with_what_to_run(run) -> None:  # type: ignore[no-untyped-def]
    result = run("status")
    assert result.exit_code == 1
    assert "has no Roundtable tables. Run: roundtable db upgrade" in result.output


def test_a_cycle_from_the_command_line(run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    assert run("db", "upgrade").exit_code == 0
    assert run("db", "upgrade").exit_code == 0  # safe twice
    result = run("group", "create", "Hudson Valley CEO Forum", "--timezone", "America/New_York",
                 "--facilitator", "Dana Whitfield <dana@facilitation.example>", "--slug", "hudson")
    assert result.exit_code == 0, result.output
    bad = tmp_path / "bad.csv"
    bad.write_text("name,email,company,title\nAlice,alice@x.example,,\nBob,bob-at-x,,\n")
    result = run("member", "import", "hudson", str(bad))
    assert result.exit_code == 1
    assert "line 3: 'bob-at-x' is not an email address" in result.output
    good = tmp_path / "good.csv"
    good.write_text("name,email,company,title\nAlice Chen,alice@x.example,Northwind,CEO\nBob Diaz,bob@x.example,,\n")
    assert "imported 2 members" in run("member", "import", "hudson", str(good)).output
    result = run("cycle", "schedule", "hudson", "--date", "2030-03-12", "--time", "08:30")
    assert result.exit_code == 0, result.output
    assert "requests go out Tue 26 Feb, 09:00 EST" in result.output
    status = run("status", "hudson").output
    assert "Alice Chen" in status and "not asked yet" in status
    assert "0 of 0 asked have replied" in status
    assert run("group", "create", "Other", "--timezone", "Nowhere/City", "--facilitator", "d@x.example").exit_code == 1


def test_parse_prints_json(run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    eml = tmp_path / "reply.eml"
    eml.write_bytes(
        b"From: Alice <alice@x.example>\r\nTo: reply+0123456789abcdef0123456789abcdef@in.example.org\r\n"
        b"Subject: Re: update\r\nMessage-ID: <p1@x.example>\r\n\r\nWINS\r\nA great month.\r\n\r\n"
        b"On Tue, Nov 17, 2026 at 9:00 AM Roundtable <r@x.example> wrote:\r\n> WINS\r\n"
    )
    result = run("parse", str(eml), "--json")
    assert result.exit_code == 0
    data = json.loads(result.output)
    assert data["kind"] == "reply"
    assert data["token"] == "0123456789abcdef0123456789abcdef"
    assert data["text"] == "WINS\nA great month."
    assert data["sections"]["texts"] == {"wins": "A great month."}
    assert data["attachments"] == []


def test_inbound_list_shows_the_sender_before_and_after_the_worker_read_it(run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from sqlalchemy import update

    from app import db
    from app.inbound import Received, store
    from app.models import InboundMessage

    assert run("db", "upgrade").exit_code == 0
    assert run("inbound", "list").output.strip() == "no mail"
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    unread = store(url, Received(b"Message-ID: <a@x>\r\n\r\nhi", "raw", {}, "alice@x.example", ["in@x"]))
    read = store(url, Received(b"Message-ID: <b@x>\r\n\r\nhi", "raw", {}, "bounces@mta.example", ["in@x"]))
    assert unread is not None and read is not None
    with db.engine_for(url).begin() as connection:
        connection.execute(
            update(InboundMessage)
            .where(InboundMessage.id == read.id)
            .values(status="rejected", kind="reply", from_address="bob@x.example", reason="unknown sender")
        )
    db.engine_for(url).dispose()
    lines = run("inbound", "list").output.splitlines()
    assert lines[0].split() == ["id", "received", "(UTC)", "status", "kind", "sender", "reason"]
    newest, oldest = lines[1].split(), lines[2].split()
    assert newest[0] == str(read.id) and newest[3:] == ["rejected", "reply", "bob@x.example", "unknown", "sender"]
    assert oldest[0] == str(unread.id) and oldest[3:] == ["received", "-", "alice@x.example"]
    only = run("inbound", "list", "--status", "received").output.splitlines()
    assert len(only) == 2 and only[1].split()[0] == str(unread.id)
    assert run("inbound", "list", "--status", "held").output.strip() == "no mail with status held"


def test_a_worker_waits_for_redis_instead_of_exiting(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Found by bench/soak.py: a worker whose Redis went away exited, and nothing restarted it."""
    import socket
    import subprocess
    import sys
    import time

    from app import db

    url = f"sqlite:///{tmp_path / 'w.db'}"
    db.upgrade(url)
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "DATABASE_URL": url, "REDIS_URL": f"redis://127.0.0.1:{port}/0"}
    env.pop("CI", None)
    worker = subprocess.Popen([sys.executable, "-m", "app.cli", "worker"], env=env, stderr=subprocess.PIPE, text=True)
    try:
        lines = [worker.stderr.readline() for _ in range(2)]  # type: ignore[union-attr]
        assert all("Redis is unreachable" in line and "trying again" in line for line in lines), lines
        time.sleep(0.5)
        assert worker.poll() is None  # still waiting, not gone
    finally:
        worker.kill()
        worker.wait(10)
        worker.stderr.close()  # type: ignore[union-attr]
    burst = subprocess.run([sys.executable, "-m", "app.cli", "worker", "--burst"], env=env, capture_output=True, text=True, timeout=60)
    assert burst.returncode != 0 and "Redis is unreachable" in burst.stderr
