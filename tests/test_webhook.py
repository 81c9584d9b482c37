"""The inbound webhooks: real multipart bodies in both SendGrid modes, stored before 200."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.models import Cycle, InboundMessage, Update, UpdateRequest
from app.settings import Settings
from tests.conftest import AUTH
from tests.mails import multipart, parsed_mode, raw_mode, reply


def post(client, body_and_type, path="/inbound/sendgrid", headers=AUTH):  # type: ignore[no-untyped-def]
    body, content_type = body_and_type
    return client.post(path, data=body, headers={**headers, "Content-Type": content_type})


def send_requests(session: Session, settings: Settings, cycle: Cycle) -> dict[str, UpdateRequest]:
    from app.cycles import queue_requests

    queue_requests(session, settings, cycle)
    session.commit()
    return {r.member.email: r for r in cycle.requests}


def test_webhook_requires_basic_auth(client) -> None:  # type: ignore[no-untyped-def]
    message = reply("0" * 32, "hello")
    assert post(client, raw_mode(message), headers={}).status_code == 401
    wrong = {"Authorization": "Basic c2VuZGdyaWQ6d3Jvbmc="}  # sendgrid:wrong
    assert post(client, raw_mode(message), headers=wrong).status_code == 401


def test_raw_mode_reply_is_stored_processed_and_answered_200(client, session, settings, cycle) -> None:  # type: ignore[no-untyped-def]
    requests = send_requests(session, settings, cycle)
    token = requests["alice@northwind.example"].token
    message = reply(token, "WINS\nClosed the Series A.\n\nCHALLENGES\nHiring a CFO.")
    response = post(client, raw_mode(message))
    assert response.status_code == 200
    row = session.scalars(select(InboundMessage)).one()
    assert row.source == "sendgrid-raw"
    assert row.raw == bytes(message)
    assert row.status == "accepted"
    update = session.scalars(select(Update)).one()
    assert update.sections["texts"]["wins"] == "Closed the Series A."
    assert update.sections["texts"]["challenges"] == "Hiring a CFO."


def test_parsed_mode_with_latin1_text_and_attachment(client, session, settings, cycle) -> None:  # type: ignore[no-untyped-def]
    requests = send_requests(session, settings, cycle)
    token = requests["alice@northwind.example"].token
    message = reply(token, "WINS\nDer Umsatz ist gestiegen, schön für Müller & Söhne.")
    pdf = b"%PDF-1.4 fake"
    response = post(
        client,
        parsed_mode(message, text_charset="ISO-8859-1", attachments=[("../../etc/Q4 plan.pdf", pdf, "application/pdf")]),
    )
    assert response.status_code == 200
    row = session.scalars(select(InboundMessage)).one()
    assert row.source == "sendgrid-parsed"
    update = session.scalars(select(Update)).one()
    # Latin-1 bytes decoded with the `charsets` field, not replaced by U+FFFD.
    assert "schön für Müller & Söhne" in update.sections["texts"]["wins"]
    assert update.attachments["files"] == [
        {"filename": "Q4 plan.pdf", "content_type": "application/pdf", "size": len(pdf), "is_too_large": False}
    ]


def test_raw_mode_8bit_latin1_message_keeps_its_bytes(client, session, settings, cycle) -> None:  # type: ignore[no-untyped-def]
    requests = send_requests(session, settings, cycle)
    token = requests["alice@northwind.example"].token
    raw = (
        f"From: Alice Chen <alice@northwind.example>\r\nTo: reply+{token}@in.forum.example\r\n"
        "Subject: Re: update\r\nMessage-ID: <latin1@mail.example>\r\nMIME-Version: 1.0\r\n"
        "Content-Type: text/plain; charset=iso-8859-1\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
        "WINS\r\nGr\xfc\xdfe aus M\xfcnchen: the caf\xe9 chain signed.\r\n"
    ).encode("latin-1")
    assert post(client, raw_mode(raw, [f"reply+{token}@in.forum.example"])).status_code == 200
    row = session.scalars(select(InboundMessage)).one()
    assert row.raw == raw
    update = session.scalars(select(Update)).one()
    assert "Grüße aus München: the café chain signed." in update.sections["texts"]["wins"]


def test_duplicate_posts_are_stored_once(client, session, settings, cycle) -> None:  # type: ignore[no-untyped-def]
    requests = send_requests(session, settings, cycle)
    message = reply(requests["alice@northwind.example"].token, "WINS\nA good month.", message_id="<same@mail.example>")
    first = post(client, raw_mode(message))
    second = post(client, raw_mode(message))
    assert first.status_code == second.status_code == 200
    assert json.loads(second.data) == {"id": json.loads(first.data)["id"], "duplicate": True}
    assert session.scalar(select(func.count(InboundMessage.id))) == 1
    assert session.scalar(select(func.count(Update.id))) == 1


def test_without_message_id_duplicates_collapse_by_content(client, session) -> None:  # type: ignore[no-untyped-def]
    message = reply(None, "no id here")
    del message["Message-ID"]
    post(client, raw_mode(message))
    post(client, raw_mode(message))
    rows = session.scalars(select(InboundMessage)).all()
    assert len(rows) == 1 and rows[0].dedupe_key.startswith("sha256:")


def test_large_message_is_accepted_not_413(client, session) -> None:  # type: ignore[no-untyped-def]
    message = reply(None, "big attachment follows")
    message.add_attachment(b"\0" * (3 * 1024 * 1024), maintype="application", subtype="octet-stream", filename="big.bin")
    response = post(client, raw_mode(message))
    assert response.status_code == 200
    assert len(session.scalars(select(InboundMessage)).one().raw) > 3 * 1024 * 1024


def test_over_the_cap_is_413(app, client) -> None:  # type: ignore[no-untyped-def]
    app.config["MAX_CONTENT_LENGTH"] = 1024
    response = post(client, raw_mode(reply(None, "x" * 4000)))
    assert response.status_code == 413


def test_raw_endpoint_takes_rfc822_with_envelope(client, session, settings, cycle) -> None:  # type: ignore[no-untyped-def]
    requests = send_requests(session, settings, cycle)
    token = requests["ben@okafor.example"].token
    message = reply(None, "WINS\nRenewed both contracts.", sender=("Ben Okafor", "ben@okafor.example"))
    response = client.post(
        f"/inbound/raw?to=reply%2B{token}%40in.forum.example",
        data=bytes(message),
        headers={**AUTH, "Content-Type": "message/rfc822"},
    )
    assert response.status_code == 200
    row = session.scalars(select(InboundMessage)).one()
    assert row.source == "raw" and row.status == "accepted"
    assert row.update_request_id == requests["ben@okafor.example"].id


def test_storage_failure_answers_503_and_logs(settings, tmp_path, caplog) -> None:  # type: ignore[no-untyped-def]
    """A database that will not take the row (here: one with no tables) gives a 503 SendGrid retries."""
    from dataclasses import replace

    from app.web import create_app

    broken = replace(settings, database_url=f"sqlite:///{tmp_path / 'no-tables.db'}")
    client = create_app(broken, check_schema=False).test_client()
    response = post(client, raw_mode(reply(None, "hello")))
    assert (response.status_code, response.headers["Retry-After"]) == (503, "60")
    assert "could not store 1 inbound message" in caplog.text


def test_a_connection_the_server_dropped_fails_no_request(client, session, settings) -> None:  # type: ignore[no-untyped-def]
    import os

    from sqlalchemy import text

    from app import db, inbound

    if db.engine_for(settings.database_url).dialect.name != "postgresql":
        pytest.skip("terminating a server connection needs PostgreSQL (CI runs this on it)")
    assert post(client, raw_mode(reply(None, "first", message_id="<a@x>"))).status_code == 200
    writer = inbound._writer(settings.database_url, os.getpid())._write

    def writers_backend() -> int:
        return writer._connection.connection.driver_connection.info.backend_pid  # type: ignore[attr-defined, union-attr]

    dropped = writers_backend()
    with db.engine_for(settings.database_url).begin() as admin:
        assert admin.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": dropped}).scalar()
    response = post(client, raw_mode(reply(None, "second", message_id="<b@x>")))
    assert response.status_code == 200 and response.get_json()["duplicate"] is False
    assert writers_backend() != dropped
    assert session.scalar(select(func.count()).select_from(InboundMessage)) == 2


def test_raw_mail_is_compressed_with_lz4_where_postgresql_has_it(client, session, settings) -> None:  # type: ignore[no-untyped-def]
    from sqlalchemy import text

    from app import db

    if db.engine_for(settings.database_url).dialect.name != "postgresql":
        pytest.skip("column compression is PostgreSQL's (CI runs this on it)")
    if int(session.scalar(text("SHOW server_version_num"))) < 140000:
        pytest.skip("PostgreSQL before 14 has neither lz4 nor pg_column_compression")
    message = reply(None, "Our quarter in detail. " * 400, message_id="<long@x>")  # about 9 KB
    assert post(client, raw_mode(message)).status_code == 200
    has_lz4 = session.scalar(
        text("SELECT 'lz4' = ANY(enumvals) FROM pg_settings WHERE name = 'default_toast_compression'")
    )
    method, raw = session.execute(text("SELECT pg_column_compression(raw), raw FROM inbound_messages")).one()
    assert method == ("lz4" if has_lz4 else "pglz")
    assert bytes(raw) == bytes(message)
    session.rollback()

    def column_compression() -> str:
        query = "SELECT attcompression FROM pg_attribute WHERE attrelid = 'inbound_messages'::regclass AND attname = 'raw'"
        with db.engine_for(settings.database_url).connect() as connection:
            return connection.scalar(text(query))

    assert column_compression() == ("l" if has_lz4 else "")
    from alembic import command

    try:
        command.downgrade(db.alembic_config(settings.database_url), "0001")
        assert column_compression() == ""  # the server's default again
    finally:
        db.upgrade(settings.database_url)
    assert column_compression() == ("l" if has_lz4 else "")


def test_a_sender_address_with_8bit_bytes_is_read_and_stored_as_text(client, session) -> None:  # type: ignore[no-untyped-def]
    """Raw UTF-8 in From, a name with a comma left unquoted: the worker reads it, never leaves the
    message unprocessed for want of a storable address."""
    for n, sender in enumerate((b"M\xc3\xbcller, Hans <hans@x.example>", b"J\xc3\xb6rg <j\xc3\xb6rg@ex\xc3\xa4mple.de>")):
        raw = b"Message-ID: <sender-%d@x>\r\nFrom: " % n + sender + b"\r\nSubject: hi\r\n\r\nWINS\r\nhello\r\n"
        data, content_type = multipart({"email": raw})
        response = client.post("/inbound/sendgrid", data=data, headers={**AUTH, "Content-Type": content_type})
        assert response.status_code == 200
        row = session.get(InboundMessage, response.get_json()["id"])
        assert row.status != "received" and row.reason
        assert row.from_address == ("hans@x.example" if n == 0 else "jörg@exämple.de")


def test_not_a_form_is_still_stored(client, session) -> None:  # type: ignore[no-untyped-def]
    response = client.post("/inbound/sendgrid", data=b"garbage", headers={**AUTH, "Content-Type": "text/plain"})
    assert response.status_code == 200
    row = session.scalars(select(InboundMessage)).one()
    assert row.raw == b"garbage" and row.status != "received"


def test_healthz_reports_database_and_redis(client) -> None:  # type: ignore[no-untyped-def]
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json == {"status": "ok", "database": "ok", "redis": "not configured (jobs run in-process)"}


def test_multipart_helper_roundtrip() -> None:
    from app.inbound import form_parts

    body, content_type = multipart({"a": "1", "email": b"\xff\xfe raw", "f": ("x.txt", b"data", "text/plain")})
    parts = form_parts(body, content_type)
    assert parts["a"].data == b"1"
    assert parts["email"].data == b"\xff\xfe raw"
    assert parts["f"].filename == "x.txt" and parts["f"].data == b"data"



HEADERS = (
    b"Received: from mx.example by in.example\r\n\tfor <reply+tok@in.example>\r\n"
    b"Message-ID:\r\n <folded@mail.example>\r\n"
    b"from: =?utf-8?q?Ren=C3=A9_Dubois?= <Rene@Dubois.example>\r\n"
    b"Subject: Re: caf\xc3\xa9 \r\n\tnumbers\r\n"
    b"X-Note: Message-ID: <not-this@x>\r\n"
    b"\r\n"
    b"Message-ID: <in-the-body@x>\r\nSubject: not a header\r\n"
)


def test_header_fields_are_read_from_the_header_block_only(client, session) -> None:  # type: ignore[no-untyped-def]
    """Folded lines, any case, 8-bit bytes; never a look-alike in the body or inside a value."""
    from app.inbound import header_block, header_value

    block = header_block(HEADERS)
    assert header_value(block, "Message-ID") == "<folded@mail.example>"
    assert header_value(block, "Cc") is None
    assert header_block(b"Subject: no body at all") == b"Subject: no body at all"

    data, content_type = multipart({"email": HEADERS, "envelope": json.dumps({"to": ["x@in.example"]})})
    response = client.post("/inbound/sendgrid", data=data, headers={**AUTH, "Content-Type": content_type})
    assert response.status_code == 200
    row = session.get(InboundMessage, response.get_json()["id"])
    assert (row.message_id, row.dedupe_key) == ("<folded@mail.example>", "mid:folded@mail.example")
    # Read by the worker (in-process here), which parses the whole message.
    assert row.from_address == "rene@dubois.example"
    assert row.subject == "Re: café numbers"


def test_store_writes_once_on_either_database(settings, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """PostgreSQL takes the insert straight through psycopg, SQLite through SQLAlchemy: CI runs
    the suite on PostgreSQL, so the SQLite path is checked here on a file of its own."""
    from app import db
    from app.inbound import Received, store

    raw = b"Message-ID: <once@mail.example>\r\nFrom: Alice <alice@northwind.example>\r\nSubject: Hi\r\n\r\nWINS\r\n"
    received = Received(raw, "raw", {"spam_score": "0.1"}, "alice@northwind.example", ["reply+t@in.example"])
    for url in (settings.database_url, f"sqlite:///{tmp_path / 'other.db'}"):
        db.upgrade(url)
        first, again = store(url, received), store(url, received)
        assert first is not None and again is not None
        assert (first.created, again.created, again.id, again.pending) == (True, False, first.id, True)
        with db.session_scope(url) as session:
            row = session.get_one(InboundMessage, first.id)
            assert (row.raw, row.fields, row.envelope_from, row.envelope_to) == (
                raw, {"spam_score": "0.1"}, "alice@northwind.example", "reply+t@in.example"
            )
            assert (row.message_id, row.from_address) == ("<once@mail.example>", None)  # the worker reads From
            assert row.received_at.tzinfo is not None and row.status == "received"


def test_a_batch_is_one_statement_that_sorts_out_duplicates_and_bad_rows(settings, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """What one writer stores for several requests at once: the same message twice in the batch
    goes in once, a message stored before is found, and a row the database refuses fails only
    its own request."""
    from sqlalchemy import event

    from app import db
    from app.inbound import Received, _row, _Writer

    def received(n: int) -> Received:
        return Received(f"Message-ID: <m{n}@x>\r\n\r\nhi {n}\r\n".encode(), "raw", {}, None, [])

    for url in (settings.database_url, f"sqlite:///{tmp_path / 'other.db'}"):
        db.upgrade(url)
        write = _Writer(url)
        (before,) = write([_row(received(0))])
        inserts: list[str] = []

        def count_inserts(_conn, _cursor, statement, *_rest) -> None:  # type: ignore[no-untyped-def]
            inserts.extend([statement] if statement.startswith("INSERT") else [])

        listen = (db.autocommit_engine_for(url), "before_cursor_execute", count_inserts)
        if url.startswith("sqlite"):  # on PostgreSQL the insert bypasses SQLAlchemy's events
            event.listen(*listen)
        rows = [_row(received(1)), _row(received(0)), _row(received(1)), _row(received(2))]
        one, zero, one_again, two = write(rows)
        assert [s.created for s in (one, zero, one_again, two)] == [True, False, False, True]
        assert (zero.id, one_again.id) == (before.id, one.id) and len({before.id, one.id, two.id}) == 3
        if url.startswith("sqlite"):
            event.remove(*listen)
            assert len(inserts) == 1
        refused = {**_row(received(4)), "source": None}  # NOT NULL
        results = write([_row(received(3)), refused, _row(received(5))])
        assert results[1] is None and results[0] is not None and results[2] is not None
        with db.session_scope(url) as session:
            keys = session.scalars(select(InboundMessage.dedupe_key).order_by(InboundMessage.id)).all()
        assert keys == ["mid:m0@x", "mid:m1@x", "mid:m2@x", "mid:m3@x", "mid:m5@x"]


def test_header_fields_with_bytes_that_are_not_utf8_are_stored_as_text(client, session) -> None:  # type: ignore[no-untyped-def]
    raw = b"Message-ID: <\x80odd@mail.example>\r\nFrom: M\xfcller <m@x.example>\r\nSubject: \x80\xff\r\n\r\nWINS\r\n"
    data, content_type = multipart({"email": raw})
    response = client.post("/inbound/sendgrid", data=data, headers={**AUTH, "Content-Type": content_type})
    assert response.status_code == 200
    row = session.get(InboundMessage, response.get_json()["id"])
    assert (row.message_id, row.from_address, row.subject) == ("<\x80odd@mail.example>", "m@x.example", "\x80ÿ")
    assert row.raw == raw
