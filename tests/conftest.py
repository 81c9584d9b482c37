"""Test fixtures. PostgreSQL and Redis are used when DATABASE_URL / REDIS_URL are set (CI sets
both); otherwise SQLite in a temporary folder and in-process jobs."""

from __future__ import annotations

import base64
import dataclasses
import json
import os
import threading
from collections.abc import Iterator
from datetime import date, datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import delete, inspect, text
from sqlalchemy.orm import Session

from app import clock, db, roster
from app.cycles import add_cycle, local_at
from app.models import Base, Cycle, Group
from app.settings import Settings, configure

AUTH = {"Authorization": "Basic " + base64.b64encode(b"sendgrid:s3cret-inbound").decode()}
# The tests' clock: the real time when the run started (so that `faketime` moves it, and with it
# every date the tests build), fixed for the whole run. Dates are built relative to it, never
# written out: the default meeting is 13 days ahead, so its requests are out and its deadline
# (T-2d 17:00) is 11 days away.
NOW = datetime.now(timezone.utc).replace(second=0, microsecond=0)
TZ = "America/New_York"
MEETING_DAY = NOW.astimezone(ZoneInfo(TZ)).date() + timedelta(days=13)


@pytest.fixture(autouse=True)
def fixed_clock() -> Iterator[datetime]:
    """Every test starts with the app's clock at NOW; `clock.set_now` moves it."""
    clock.set_now(NOW)
    yield NOW
    clock.set_now(None)


def _needs(name: str) -> str | None:
    """The URL of a real service, or None; in CI a missing URL is an error, not a skip."""
    url = os.environ.get(name)
    if not url and os.environ.get("CI"):
        raise RuntimeError(f"{name} must be set in CI: tests run against the real service")
    return url


@pytest.fixture(scope="session")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    url = _needs("DATABASE_URL") or f"sqlite:///{tmp_path_factory.mktemp('db') / 'test.db'}"
    engine = db.engine_for(url)
    if engine.dialect.name == "postgresql":
        # Start from an empty schema so the migrations themselves are under test.
        with engine.begin() as connection:
            connection.execute(text("DROP SCHEMA public CASCADE"))
            connection.execute(text("CREATE SCHEMA public"))
    db.upgrade(url)
    return url


@pytest.fixture()
def settings(database_url: str, tmp_path: Path) -> Iterator[Settings]:
    """Settings for one test: inline jobs, a fresh outbox, basic auth on the webhook."""
    value = Settings(
        database_url=database_url,
        redis_url=None,
        mail_transport="outbox",
        outbox_dir=tmp_path / "outbox",
        packets_dir=tmp_path / "packets",
        mail_from="Roundtable <roundtable@forum.example>",
        inbound_domain="in.forum.example",
        inbound_username="sendgrid",
        inbound_password="s3cret-inbound",
        base_url="https://roundtable.example",
    )
    configure(value)
    yield value
    configure(None)
    _empty_tables(database_url)


def _empty_tables(url: str) -> None:
    engine = db.engine_for(url)
    with engine.begin() as connection:
        if engine.dialect.name == "postgresql":
            names = ", ".join(t.name for t in Base.metadata.sorted_tables)
            connection.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
        else:
            for table in reversed(Base.metadata.sorted_tables):
                connection.execute(delete(table))
            if "sqlite_sequence" in inspect(connection).get_table_names():
                connection.execute(text("DELETE FROM sqlite_sequence"))


@pytest.fixture()
def session(settings: Settings) -> Iterator[Session]:
    with db.session_scope(settings.database_url) as session:
        yield session


@pytest.fixture()
def app(settings: Settings):  # type: ignore[no-untyped-def]
    from app.web import create_app

    return create_app(settings)


@pytest.fixture()
def client(app):  # type: ignore[no-untyped-def]
    return app.test_client()


@pytest.fixture()
def redis_settings(settings: Settings) -> Iterator[Settings]:
    """Settings with real Redis: jobs go to rq. Refuses a Redis database that holds keys."""
    url = _needs("REDIS_URL")
    if url is None:
        pytest.skip("REDIS_URL is not set (CI always sets it)")
    from app.jobs import redis_connection

    connection = redis_connection(url)
    connection.flushdb()
    value = dataclasses.replace(settings, redis_url=url)
    configure(value)
    yield value
    connection.flushdb()
    configure(settings)


# --- building a group --------------------------------------------------------------------------

MEMBERS = [
    ("Alice Chen", "alice@northwind.example", "Northwind Robotics"),
    ("Ben Okafor", "ben@okafor.example", "Okafor Logistics"),
    ("Carmen Ruiz", "carmen@ruizfoods.example", "Ruiz Foods"),
]


def make_group(session: Session, members: list[tuple[str, str, str]] | None = None, tz: str = TZ) -> Group:
    group = roster.create_group(
        session,
        name="Hudson Valley CEO Forum",
        timezone=tz,
        facilitator_name="Dana Whitfield",
        facilitator_email="dana@facilitation.example",
        location="Beacon Hotel, Main St",
    )
    for name, email, company in MEMBERS if members is None else members:
        roster.add_member(session, group, name=name, email=email, company=company)
    return group


def make_cycle(session: Session, group: Group, day: date = MEETING_DAY, start: str = "08:30") -> Cycle:
    """A cycle as a test needs it, past or future, checked against nothing (app.cycles.add_cycle)."""
    return add_cycle(session, group, starts_at=local_at(day, start, group.timezone))


@pytest.fixture()
def group(session: Session) -> Group:
    group = make_group(session)
    session.commit()
    return group


@pytest.fixture()
def cycle(session: Session, group: Group) -> Cycle:
    cycle = make_cycle(session, group)
    session.commit()
    return cycle


# --- a stand-in for the SendGrid API ------------------------------------------------------------


@dataclasses.dataclass
class Recorded:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]


class SendGridStandIn:
    """A local HTTP server that answers like SendGrid's v3 API and records every call."""

    def __init__(self) -> None:
        self.calls: list[Recorded] = []
        self.statuses: list[int] = []  # answered in order; 202 once they run out
        self.delay_s = 0.0
        # Call number `hold_call` (1-based) waits for `release`; `holding` is set when it arrives.
        self.hold_call: int | None = None
        self.holding = threading.Event()
        self.release = threading.Event()
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                stand_in.calls.append(Recorded(self.path, dict(self.headers), body))
                if len(stand_in.calls) == stand_in.hold_call:
                    stand_in.holding.set()
                    stand_in.release.wait(30)
                if stand_in.delay_s:
                    threading.Event().wait(stand_in.delay_s)
                status = stand_in.statuses.pop(0) if stand_in.statuses else 202
                payload = b"" if status == 202 else json.dumps({"errors": [{"message": f"status {status}"}]}).encode()
                try:
                    self.send_response(status)
                    if status == 202:
                        self.send_header("X-Message-Id", f"sg-{len(stand_in.calls)}")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (a timeout) or was killed

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture()
def sendgrid_api() -> Iterator[SendGridStandIn]:
    stand_in = SendGridStandIn()
    yield stand_in
    stand_in.close()


@pytest.fixture()
def sendgrid_settings(settings: Settings, sendgrid_api: SendGridStandIn) -> Settings:
    value = dataclasses.replace(
        settings,
        mail_transport="sendgrid",
        sendgrid_api_key="SG.test-key",
        sendgrid_api_host=sendgrid_api.url,
        sendgrid_timeout_s=2.0,
    )
    configure(value)
    return value
