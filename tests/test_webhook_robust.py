"""The webhooks under odd posts and a database that hangs (issue 11, items 4 to 6).

Parsed-mode posts from members whose names are not ASCII are read as theirs; odd form parts,
odd attachment-info, line breaks in decoded fields and odd event JSON are stored (or refused
with a 4xx when they are not SendGrid's), never a 500; and a database that does not answer,
whether it never answers a connect, froze mid-connection or holds a lock, gets a 503 with
Retry-After within seconds, never a post that hangs.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import func, make_url, select, text
from sqlalchemy.orm import Session

from app import db
from app.db import GroupCommit, Watchdog
from app.models import Cycle, DeliveryEvent, InboundMessage, Update, UpdateRequest
from app.settings import ConfigError, Settings, configure
from tests.conftest import AUTH, make_cycle, make_group
from tests.mails import FORUM, multipart, parsed_mode, reply

ON_POSTGRES = os.environ.get("DATABASE_URL", "").startswith("postgresql")
needs_postgres = pytest.mark.skipif(not ON_POSTGRES, reason="needs PostgreSQL (CI runs this on it)")
TIMEOUT_S = 1.0  # DATABASE_TIMEOUT in these tests: connects give up after 2 s, libpq's floor
# A post's longest wait: a connect (2 s), or a statement and the watchdog's second and tick.
BOUND_S = 2 + 2.5


def post(client: Any, body_and_type: tuple[bytes, str], path: str = "/inbound/sendgrid") -> Any:
    body, content_type = body_and_type
    return client.post(path, data=body, headers={**AUTH, "Content-Type": content_type})


def requests_for(session: Session, settings: Settings, cycle: Cycle) -> dict[str, UpdateRequest]:
    from app.cycles import queue_requests

    queue_requests(session, settings, cycle)
    session.commit()
    return {r.member.email: r for r in cycle.requests}


def stored_row(session: Session, response: Any) -> InboundMessage:
    assert response.status_code == 200, response.data
    session.expire_all()
    return session.get_one(InboundMessage, response.get_json()["id"])


def parsed_fields(
    token: str, *, text_body: str = "WINS\nA strong month.", sender: str = "alice@northwind.example", **fields: Any
) -> dict[str, Any]:
    """A parsed-mode post's fields, built by hand: `headers` and the decoded fields as given."""
    return {
        "headers": f"Message-ID: <{os.urandom(6).hex()}@mail.example>\nTo: reply+{token}@{FORUM}\n",
        "text": text_body,
        "envelope": json.dumps({"to": [f"reply+{token}@{FORUM}"], "from": sender}),
        "charsets": json.dumps({"text": "UTF-8", "headers": "UTF-8", "from": "UTF-8", "subject": "UTF-8"}),
        "SPF": "pass",
        **fields,
    }


# --- 4. parsed mode: names that are not ASCII -----------------------------------------------------

NAMES = ["Tëss Tést", "Zoë Müller-Lüdenscheidt", "José Núñez, Jr.", "张伟"]


@pytest.mark.parametrize("name", NAMES)
def test_parsed_mode_reply_from_a_member_with_a_non_ascii_name_is_theirs(client, session, settings, name) -> None:  # type: ignore[no-untyped-def]
    """SendGrid's `headers` field brings the From field in raw UTF-8 (RFC 6532): the reply is
    read as the member's, not held as a stranger's."""
    address = "member@g.example"
    group = make_group(session, [(name, address, "Example Co")])
    cycle = make_cycle(session, group)
    session.commit()
    token = requests_for(session, settings, cycle)[address].token
    message = reply(token, "WINS\nWe opened the second plant.", sender=(name, address))
    assert name in parsed_mode(message)[0].decode()  # the name as UTF-8, not an encoded-word
    row = stored_row(session, post(client, parsed_mode(message)))
    assert (row.status, row.from_address) == ("accepted", address), row.reason
    update = session.scalars(select(Update)).one()
    assert update.sections["texts"]["wins"] == "We opened the second plant."
    assert f"From: {name}".encode() in row.raw or f'From: "{name}"'.encode() in row.raw


@pytest.mark.parametrize(
    "from_line",
    [
        "José Núñez, Jr. <member@g.example>",  # decoded from an encoded-word: the comma unquoted
        '"José Núñez, Jr." <member@g.example>',
        "=?utf-8?q?Jos=C3=A9_N=C3=BA=C3=B1ez=2C_Jr=2E?= <member@g.example>",
        "member@g.example (José Núñez, Jr.)",
    ],
)
@pytest.mark.parametrize("where", ["headers", "from field"])
def test_parsed_mode_sender_with_a_comma_in_the_name_is_the_member(client, session, settings, from_line, where) -> None:  # type: ignore[no-untyped-def]
    address = "member@g.example"
    group = make_group(session, [("José Núñez, Jr.", address, "Example Co")])
    cycle = make_cycle(session, group)
    session.commit()
    token = requests_for(session, settings, cycle)[address].token
    fields = parsed_fields(token, sender=address)
    if where == "headers":
        fields["headers"] += f"From: {from_line}\n"
    else:
        fields["from"] = from_line
    row = stored_row(session, post(client, multipart(fields)))
    assert (row.status, row.from_address) == ("accepted", address), row.reason


def test_parsed_mode_latin1_headers_field_is_stored_as_utf8(client, session, settings, cycle) -> None:  # type: ignore[no-untyped-def]
    """The `headers` field in the charset `charsets` names, written back as UTF-8."""
    token = requests_for(session, settings, cycle)["alice@northwind.example"].token
    fields = parsed_fields(token)
    fields["headers"] = (fields["headers"] + "From: Alice Chén <alice@northwind.example>\nSubject: Grüße\n").encode("latin-1")
    fields["charsets"] = json.dumps({"text": "UTF-8", "headers": "iso-8859-1"})
    row = stored_row(session, post(client, multipart(fields)))
    assert "From: Alice Chén <alice@northwind.example>\r\n".encode() in row.raw
    assert (row.status, row.from_address, row.subject) == ("accepted", "alice@northwind.example", "Grüße")


# --- 6. odd posts: stored, never a 500 ------------------------------------------------------------


@pytest.mark.parametrize(
    "part",
    [
        'Content-Disposition: form-data\r\n\r\nno name at all',
        'Content-Disposition: form-data; filename="notes.txt"\r\nContent-Type: text/plain\r\n\r\nno name at all',
    ],
)
def test_a_nameless_form_part_is_stored_not_500(client, session, settings, cycle, part) -> None:  # type: ignore[no-untyped-def]
    token = requests_for(session, settings, cycle)["alice@northwind.example"].token
    body, content_type = multipart(parsed_fields(token, **{"from": "Alice Chen <alice@northwind.example>"}))
    boundary = content_type.split("boundary=")[1]
    row = stored_row(session, post(client, (f"--{boundary}\r\n{part}\r\n".encode() + body, content_type)))
    assert row.status == "accepted"
    files = session.scalars(select(Update)).one().attachments.get("files", [])
    if "filename" in part:  # a file: attached under its file name
        assert [f["filename"] for f in files] == ["notes.txt"]
    else:  # a field: kept with the others, under no name
        assert row.fields[""] == "no name at all" and files == []


@pytest.mark.parametrize(
    "info",
    [
        {"attachment1": {"filename": 5, "type": ["application/pdf"], "content-id": {"a": 1}}},
        {"attachment1": {"filename": None, "type": 3, "content-id": 7}},
        {"attachment1": {"filename": True, "type": "pdf", "content-id": "<a\r\nb>"}},
        {"attachment1": {"type": "application/pdf\r\nX-Injected: 1"}},
        {"attachment1": 5, "attachment2": {"filename": 5}},
        ["attachment1"],
        {"attachment1": {"filename": "Q4\r\nplan.pdf", "type": "application/pdf"}},
    ],
)
def test_attachment_info_with_values_that_are_not_strings_is_stored_not_500(client, session, settings, cycle, info) -> None:  # type: ignore[no-untyped-def]
    token = requests_for(session, settings, cycle)["alice@northwind.example"].token
    message = reply(token, "WINS\nThe plan is attached.")
    body, content_type = parsed_mode(message, attachments=[("Q4 plan.pdf", b"%PDF-1.4 fake", "application/pdf")])
    fields = json.dumps({"attachment1": {"filename": "Q4 plan.pdf", "type": "application/pdf"}}).encode()
    assert fields in body
    row = stored_row(session, post(client, (body.replace(fields, json.dumps(info).encode()), content_type)))
    assert row.status == "accepted"
    assert b"X-Injected" not in row.raw.split(b"\r\n\r\n", 1)[0]
    (attachment,) = session.scalars(select(Update)).one().attachments["files"]
    assert attachment["size"] == len(b"%PDF-1.4 fake")
    assert attachment["filename"] in ("Q4 plan.pdf", "Q4plan.pdf")  # a CR/LF in a name is dropped on reading
    assert attachment["content_type"] in ("application/pdf", "application/octet-stream")


@pytest.mark.parametrize(
    "field, value",
    [
        ("subject", "Re: Your update\r\nfor December"),
        ("subject", "Re: Your update\r\n\r\nWINS\r\nnot the body"),
        ("subject", "Re: Your update\nBcc: someone@else.example"),
        ("subject", "Re: Your update\rfor December"),
        ("from", "Alice Chen\r\n <alice@northwind.example>"),
        ("from", "Alice Chen <alice@northwind.example>\r\n\r\nWINS\r\nnot the body"),
        ("from", "Alice Chen <alice@northwind.example>\nBcc: someone@else.example"),
    ],
)
def test_line_breaks_in_decoded_parsed_mode_fields_keep_the_body(client, session, settings, cycle, field, value) -> None:  # type: ignore[no-untyped-def]
    """SendGrid decodes `subject` and `from` (an encoded =0D=0A becomes a line break). Written
    into the header section as they came, the break ended it: the rest of the field became the
    body, and the real body (base64) was read after it as text."""
    token = requests_for(session, settings, cycle)["alice@northwind.example"].token
    fields = parsed_fields(token, text_body="WINS\nThe real body.", **{"from": "Alice Chen <alice@northwind.example>"})
    fields[field] = value
    row = stored_row(session, post(client, multipart(fields)))
    head, _, _ = row.raw.partition(b"\r\n\r\n")
    assert not any(line.startswith((b"Bcc:", b"WINS")) for line in head.split(b"\r\n"))
    assert (row.status, row.from_address) == ("accepted", "alice@northwind.example")
    update = session.scalars(select(Update)).one()
    assert update.sections["texts"]["wins"] == "The real body."
    if field == "subject":
        assert row.subject == " ".join(value.split())


def test_a_stray_line_break_in_the_headers_field_keeps_every_field(client, session, settings, cycle) -> None:  # type: ignore[no-untyped-def]
    token = requests_for(session, settings, cycle)["alice@northwind.example"].token
    fields = parsed_fields(token, text_body="WINS\nThe real body.")
    fields["headers"] += "Subject: Re: Your\rupdate\nX-Note: one\n\nFrom: Alice Chen <alice@northwind.example>\n"
    row = stored_row(session, post(client, multipart(fields)))
    assert (row.status, row.from_address, row.subject) == ("accepted", "alice@northwind.example", "Re: Your update")
    assert session.scalars(select(Update)).one().sections["texts"]["wins"] == "The real body."


@pytest.fixture()
def signed(settings):  # type: ignore[no-untyped-def]
    """A function that posts events signed as SendGrid signs them, to an app with the Event
    Webhook on (and `database_timeout_s` if given)."""
    from app.web import create_app

    key = ec.generate_private_key(ec.SECP256R1())
    public = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    value = dataclasses.replace(settings, sendgrid_webhook_public_key=base64.b64encode(public).decode())
    configure(value)
    clients: dict[float, Any] = {}

    def post_events(body: str, database_timeout_s: float = value.database_timeout_s) -> Any:
        if database_timeout_s not in clients:
            app = create_app(dataclasses.replace(value, database_timeout_s=database_timeout_s))
            clients[database_timeout_s] = app.test_client()
        stamp = str(int(time.time()))
        signature = key.sign((stamp + body).encode(), ec.ECDSA(hashes.SHA256()))
        headers = {
            "X-Twilio-Email-Event-Webhook-Signature": base64.b64encode(signature).decode(),
            "X-Twilio-Email-Event-Webhook-Timestamp": stamp,
            "Content-Type": "application/json",
        }
        return clients[database_timeout_s].post("/events/sendgrid", data=body, headers=headers)

    return post_events


@pytest.mark.parametrize(
    "body",
    [
        '[{"event": "delivered", "sg_event_id": "e\\u0000v", "email": "a\\u0000@b.example", "timestamp": 1}]',
        '[{"event": "bounce\\u0000", "sg_event_id": "ev", "email": "a@b.example", "reason": "5.1.1\\u0000"}]',
        '[{"event": "delivered", "sg_event_id": "ev", "email": "a@b.example", "timestamp": NaN}]',
        '[{"event": "delivered", "sg_event_id": "ev", "email": "a@b.example", "timestamp": Infinity, "x": -Infinity}]',
        '[{"event": "delivered", "sg_event_id": "ev", "email": "a@b.example", "timestamp": 1e400}]',
        '[{"event": "delivered", "sg_event_id": "ev", "email": "a@b.example", "outbound_id": 1e300}]',
        '[{"event": "delivered", "sg_event_id": "ev", "email": "a@b.example", "outbound_id": 99999999999999999999}]',
        '[{"event": "delivered", "sg_event_id": "ev", "email": "a@b.example", "outbound_id": NaN}]',
        '[{"event": "delivered", "sg_event_id": "ev", "email": "a@b.example", "we\\u0000ird": [NaN, "\\u0000"]}]',
        '{"event": "delivered", "sg_event_id": "ev", "email": "a@b.example", "timestamp": -1e400}',
        '[{"event": "delivered", "sg_event_id": "ev", "email": "a@b.example", "deep": ' + "[" * 20 + "]" * 20 + "}]",
    ],
)
def test_signed_events_with_nul_or_nan_are_stored_not_500(session, signed, body) -> None:  # type: ignore[no-untyped-def]
    response = signed(body)
    assert response.status_code == 200, response.data
    event = session.scalars(select(DeliveryEvent)).one()
    assert "\x00" not in event.sg_event_id + event.email + event.event + json.dumps(event.payload)
    assert event.occurred_at is not None
    json.dumps(event.payload, allow_nan=False)  # only what JSON (and PostgreSQL) can hold


@pytest.mark.parametrize("body", ["[" * 100_000 + "]" * 100_000, "[" + '{"a": ' * 40 + "1" + "}" * 40 + "]", "NaN x"])
def test_signed_events_that_are_not_sendgrids_json_get_a_400_not_500(session, signed, body) -> None:  # type: ignore[no-untyped-def]
    assert signed(body).status_code == 400
    assert session.scalar(select(func.count(DeliveryEvent.id))) == 0


# --- 5. a database that does not answer -----------------------------------------------------------


class BlackHole:
    """A TCP port that accepts connections and never answers: a database server that froze."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.accepted: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                connection, _ = self.listener.accept()
            except OSError:
                return
            self.accepted.append(connection)  # kept open, never read

    def close(self) -> None:
        self.listener.close()
        for connection in self.accepted:
            connection.close()


class FreezingProxy:
    """Forwards TCP connections to PostgreSQL until `freeze()`: from then on it forwards
    nothing either way and answers no new connection, yet closes no socket (a server that
    froze, or a network that lost it mid-connection). `thaw()` lets everything through again."""

    def __init__(self, port: int) -> None:
        self.target = port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.running = threading.Event()
        self.running.set()
        self.sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def freeze(self) -> None:
        self.running.clear()

    def thaw(self) -> None:
        self.running.set()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            self.sockets.append(client)
            threading.Thread(target=self._connect, args=(client,), daemon=True).start()

    def _connect(self, client: socket.socket) -> None:
        self.running.wait()
        server = socket.create_connection(("127.0.0.1", self.target))
        self.sockets.append(server)
        for source, sink in ((client, server), (server, client)):
            threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                self.running.wait()
                sink.sendall(data)
        except OSError:
            pass
        for end in (source, sink):
            try:
                end.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def close(self) -> None:
        self.thaw()
        self.listener.close()
        for end in self.sockets:
            end.close()


@pytest.fixture()
def black_hole() -> Iterator[BlackHole]:
    hole = BlackHole()
    yield hole
    hole.close()


@pytest.fixture()
def proxy(database_url: str) -> Iterator[FreezingProxy]:
    if not database_url.startswith("postgresql"):
        pytest.skip("freezes a connection to PostgreSQL (CI runs this on it)")
    through = FreezingProxy(make_url(database_url).port or 5432)
    yield through
    through.close()


def via(url: str, port: int) -> str:
    """`url` with its host and port replaced by 127.0.0.1:`port`."""
    return make_url(url).set(host="127.0.0.1", port=port).render_as_string(hide_password=False)


def timed(call: Any) -> tuple[Any, float]:
    started = time.monotonic()
    result = call()
    return result, time.monotonic() - started


def assert_retry_later(response: Any, elapsed: float) -> None:
    assert (response.status_code, response.headers.get("Retry-After")) == (503, "60"), response.data
    assert elapsed < BOUND_S, f"answered after {elapsed:.1f} s"


def test_a_database_that_never_answers_a_connect_gets_503_within_seconds(settings, black_hole) -> None:  # type: ignore[no-untyped-def]
    from app.web import create_app

    hanging = dataclasses.replace(
        settings, database_url=f"postgresql://roundtable@127.0.0.1:{black_hole.port}/roundtable", database_timeout_s=TIMEOUT_S
    )
    client = create_app(hanging, check_schema=False).test_client()
    for _ in range(2):
        assert_retry_later(*timed(lambda: post(client, parsed_mode(reply(None, "hello")))))
    # Many at once: one connects while the others wait their turn; nobody waits for ever.
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda n: timed(lambda: post(client, parsed_mode(reply(None, f"{n}")))), range(8)))
    for response, elapsed in answers:
        assert_retry_later(response, elapsed)
    response, elapsed = timed(lambda: client.get("/healthz"))
    assert response.status_code == 503 and elapsed < BOUND_S


def test_a_database_that_froze_mid_connection_gets_503_within_seconds_then_recovers(settings, session, proxy) -> None:  # type: ignore[no-untyped-def]
    """The writer's kept connection stops being answered: the watchdog cuts it, the posts
    waiting behind it give up, and once the database answers again posts are stored."""
    from app.web import create_app

    frozen = dataclasses.replace(settings, database_url=via(settings.database_url, proxy.port), database_timeout_s=TIMEOUT_S)
    client = create_app(frozen).test_client()
    assert post(client, parsed_mode(reply(None, "before", message_id="<before@x>"))).status_code == 200
    proxy.freeze()
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda n: timed(lambda: post(client, parsed_mode(reply(None, f"{n}")))), range(8)))
    for response, elapsed in answers:
        assert_retry_later(response, elapsed)
    assert_retry_later(*timed(lambda: post(client, parsed_mode(reply(None, "while frozen")))))
    proxy.thaw()
    after = post(client, parsed_mode(reply(None, "after", message_id="<after@x>")))
    assert after.status_code == 200, after.data
    assert session.scalar(select(func.count()).select_from(InboundMessage).where(
        InboundMessage.message_id.in_(["<before@x>", "<after@x>"])
    )) == 2  # fmt: skip


@needs_postgres
def test_a_post_blocked_by_a_lock_gets_503_within_seconds(settings, session) -> None:  # type: ignore[no-untyped-def]
    from app.web import create_app

    quick = dataclasses.replace(settings, database_timeout_s=TIMEOUT_S)
    client = create_app(quick).test_client()
    with db.engine_for(settings.database_url).connect() as blocker:
        blocker.execute(text("LOCK TABLE inbound_messages IN SHARE MODE"))
        response, elapsed = timed(lambda: post(client, parsed_mode(reply(None, "locked out", message_id="<l@x>"))))
        blocker.rollback()
    assert_retry_later(response, elapsed)
    assert elapsed >= TIMEOUT_S  # it was statement_timeout that ended it
    again = post(client, parsed_mode(reply(None, "locked out", message_id="<l@x>")))  # SendGrid's retry
    assert again.status_code == 200 and again.get_json()["duplicate"] is False


@needs_postgres
def test_an_event_post_blocked_by_a_lock_or_a_full_pool_gets_503_within_seconds(settings, session, signed) -> None:  # type: ignore[no-untyped-def]
    """ORM web sessions: statement_timeout, then pool_timeout, end in the app's 503 handler."""
    body = json.dumps([{"event": "delivered", "sg_event_id": "ev-lock", "email": "a@b.example", "timestamp": 1}])
    with db.engine_for(settings.database_url).connect() as blocker:
        blocker.execute(text("LOCK TABLE delivery_events IN SHARE MODE"))
        response, elapsed = timed(lambda: signed(body, TIMEOUT_S))
        blocker.rollback()
    assert_retry_later(response, elapsed)
    engine = db.engine_for(settings.database_url, TIMEOUT_S)  # the web sessions' engine
    held = [engine.connect() for _ in range(engine.pool.size() + engine.pool._max_overflow)]  # type: ignore[attr-defined]
    try:
        assert_retry_later(*timed(lambda: signed(body, TIMEOUT_S)))
    finally:
        for connection in held:
            connection.close()
    assert signed(body, TIMEOUT_S).status_code == 200


def test_web_sessions_have_limits_and_worker_sessions_keep_theirs(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    seen: dict[str, Any] = {}

    def fake_create_engine(url: str, **kwargs: Any) -> None:
        seen.clear()
        seen.update(kwargs)

    monkeypatch.setattr(db, "create_engine", fake_create_engine)
    url = "postgresql://u@h/d?options=-c%20search_path%3Dx"
    db._create_engine(url, autocommit=True, worker=False, timeout_s=2.5)
    assert seen["connect_args"] == {"connect_timeout": 3, "options": "-c search_path=x -c statement_timeout=2500"}
    assert (seen["pool_timeout"], seen["isolation_level"]) == (2.5, "AUTOCOMMIT")
    db._create_engine(url, autocommit=False, worker=True)
    assert seen["connect_args"] == {"connect_timeout": 10, "options": f"-c search_path=x {db.WORKER_SESSION_OPTIONS}"}
    assert "pool_timeout" not in seen
    db._create_engine("postgresql://u@h/d", autocommit=False, worker=False)
    assert seen["connect_args"] == {"connect_timeout": 10}


def test_database_timeout_setting() -> None:
    assert Settings.from_env({}).database_timeout_s == 5.0
    assert Settings.from_env({"DATABASE_TIMEOUT": "2.5"}).database_timeout_s == 2.5
    for bad in ("0", "soon"):
        with pytest.raises(ConfigError, match="DATABASE_TIMEOUT"):
            Settings.from_env({"DATABASE_TIMEOUT": bad})


def test_the_watchdog_cuts_a_wait_past_its_deadline_and_no_other() -> None:
    watchdog = Watchdog()
    ours, server = socket.socketpair()
    other, other_server = socket.socketpair()
    with ours, server, other, other_server:
        with watchdog.watch(other.fileno(), 0.05):
            pass  # left in time: never cut
        started = time.monotonic()
        with watchdog.watch(ours.fileno(), 0.2) as watched:
            assert ours.recv(1) == b""  # the server never answers; the cut ends the wait
        assert watched.cut and 0.2 <= time.monotonic() - started < 1
        time.sleep(0.3)
        other_server.sendall(b"x")
        assert other.recv(1) == b"x"


def test_a_caller_waiting_behind_a_stuck_write_gives_up_after_wait_s() -> None:
    release, entered = threading.Event(), threading.Event()

    def write(items: list[int]) -> list[int]:
        entered.set()
        assert release.wait(10)
        return [item * 10 for item in items]

    group: GroupCommit[int, int] = GroupCommit(write, wait_s=0.2)
    first: list[int] = []
    writer = threading.Thread(target=lambda: first.append(group(1)), daemon=True)
    writer.start()
    assert entered.wait(5)
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        group(2)
    assert 0.2 <= time.monotonic() - started < 1
    release.set()
    writer.join(5)
    assert first == [10] and group(3) == 30  # the stuck write ended, and the lead was not lost


# --- the real server: gunicorn's gevent workers ---------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def http_post(port: int, body_and_type: tuple[bytes, str]) -> tuple[int, dict[str, str], float]:
    body, content_type = body_and_type
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/inbound/sendgrid", data=body, headers={**AUTH, "Content-Type": content_type}, method="POST"
    )
    started = time.monotonic()
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, dict(response.headers), time.monotonic() - started
    except urllib.error.HTTPError as error:
        with error:
            return error.code, dict(error.headers), time.monotonic() - started


def test_serve_answers_503_within_seconds_when_the_database_freezes(settings, proxy, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """`roundtable serve` (gevent): the watchdog's thread is a greenlet there, and the cut
    wakes the greenlet waiting on the socket."""
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": via(settings.database_url, proxy.port),
        "DATABASE_TIMEOUT": str(TIMEOUT_S),
        "REDIS_URL": "",
        "INBOUND_USERNAME": "sendgrid",
        "INBOUND_PASSWORD": "s3cret-inbound",
        "OUTBOX_DIR": str(tmp_path / "outbox"),
    }
    log = tmp_path / "serve.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "app.cli", "serve", "--port", str(port), "--workers", "1"],
            cwd=tmp_path, env=env, stdout=output, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, log.read_text()
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5):
                    break
            except OSError:
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.2)
        assert http_post(port, parsed_mode(reply(None, "before")))[0] == 200
        proxy.freeze()
        with ThreadPoolExecutor(6) as pool:
            answers = list(pool.map(lambda n: http_post(port, parsed_mode(reply(None, f"{n}"))), range(6)))
        for status, headers, elapsed in answers:
            assert (status, headers.get("Retry-After")) == (503, "60")
            assert elapsed < BOUND_S, f"answered after {elapsed:.1f} s"
        proxy.thaw()
        assert http_post(port, parsed_mode(reply(None, "after")))[0] == 200, log.read_text()
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)
